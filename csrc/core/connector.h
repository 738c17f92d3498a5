/* The MySQL connector: how a pool (pool.h, which knows nothing of MySQL)
 * opens, closes, pings and discards sc_conn connections (conn.h). One
 * definition in plain C, so that the binding's pools (csrc/lua/lpool.c)
 * and the C tests (spec/c/) open connections the same way. */
#ifndef SCOPED_CONNECTOR_H
#define SCOPED_CONNECTOR_H

#include "conn.h"
#include "pool.h"

/* Fills *out with a connector whose connections are opened with url's
 * parameters and settings (NULL: the server's defaults, never touched).
 * It takes url's strings over on success (*url is left zeroed: the pool
 * frees them with the connector, through free_ud) and copies settings.
 * 0, or -1 out of memory with url left to the caller. */
int sc_mysql_connector(sc_url *url, const sc_conn_settings *settings, sc_connector *out);

#endif
