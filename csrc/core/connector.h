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

/* The host list state of a connector made by sc_mysql_connector (its ud),
 * and its URL (*url, when url is not NULL): engine:hosts(). */
#include "hosts.h"
sc_hosts *sc_mysql_connector_hosts(void *ud, const sc_url **url);

/* One connection outside any pool (raw_connect): sc_conn_open, or with
 * several hosts, target_session_attrs or galera (issue 21) each host tried
 * once in the URL's order (round_robin: the same, as nothing is shared)
 * until one gives a connection of the wanted role; no deny list outlives
 * the call. NULL with err (the last host's error) on failure. */
sc_conn *sc_conn_open_any(const sc_url *url, const sc_conn_settings *settings, sc_error *err);

#endif
