/* One MySQL connection, in plain C (no Lua). Every blocking libmysqlclient
 * call the project makes goes through the functions here, so that MariaDB's
 * non-blocking _start/_cont pairs can replace them in one place. */
#ifndef SCOPED_CONN_H
#define SCOPED_CONN_H

#include <stddef.h>
#include <sys/types.h>
#include <mysql.h>

#include "buf.h"
#include "binds.h"
#include "url.h"

typedef struct sc_error {
    unsigned code;       /* server or client errno; 0 for our own errors */
    char sqlstate[6];
    char message[512];
} sc_error;

typedef struct sc_conn {
    MYSQL *my;
    pid_t pid;          /* process that opened it: a child must not use it */
    double created_at;  /* sc_monotonic() at connect */
    int broken;         /* a disconnect error was seen: discard, never reuse */
    sc_buf sql;         /* statement being built, reused */
    sc_bind_plan plan;  /* placeholders of the statement being built, reused */
    sc_bind_plan plan2; /* executemany: the VALUES tuple's placeholders */
    MYSQL_RES *pending; /* a result being decoded into Lua (csrc/lresult.c): a Lua
                         * error half-way (out of memory) leaves it here, and the
                         * next call on the connection frees it (sc_conn_drop_pending) */
} sc_conn;

/* Connects with the URL's parameters; multi-statements stay off, multiple
 * results (CALL) on. NULL on failure with err filled. */
sc_conn *sc_conn_open(const sc_url *url, sc_error *err);
/* Sends one statement. 0, or -1 with err filled (and broken set when the
 * error means the connection is gone). */
int sc_conn_query(sc_conn *c, const char *sql, size_t len, sc_error *err);
/* The current result, its rows read one by one with mysql_fetch_row (each
 * must be read before anything else is sent); NULL with err->code 0 when
 * the statement returns no rows. */
MYSQL_RES *sc_conn_use_result(sc_conn *c, sc_error *err);
/* After mysql_fetch_row returned NULL on a used result: 0 at the end of the
 * rows, -1 with err filled when the server or the connection failed. */
int sc_conn_fetch_error(sc_conn *c, sc_error *err);
/* 1 when another result follows (CALL), 0 when none, -1 on error. */
int sc_conn_next_result(sc_conn *c, sc_error *err);
int sc_conn_ping(sc_conn *c);
/* Frees a result whose decoding was cut short, and any further result sets
 * the server still has for it, so the connection is in sync again. */
void sc_conn_drop_pending(sc_conn *c);
/* Turns autocommit on or off (a round trip). 0, or -1 with err filled. */
int sc_conn_set_autocommit(sc_conn *c, int on, sc_error *err);
/* Closes politely (COM_QUIT) and frees. */
void sc_conn_close(sc_conn *c);
/* Frees without a word to the server: for a connection inherited across
 * fork(), whose socket is the parent's. */
void sc_conn_discard(sc_conn *c);
/* Whether a transaction is open, as the server last told us. */
int sc_conn_in_transaction(const sc_conn *c);
int sc_conn_no_backslash_escapes(const sc_conn *c);

/* MySQL codes that mean the connection is gone (SQLAlchemy's list). */
int sc_is_disconnect(unsigned code);
/* SQLAlchemy / DB-API exception class name for a server or client error. */
const char *sc_error_kind(unsigned code, const char *sqlstate);

#endif
