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
#include "error.h"
#include "url.h"

/* What a pooled connection's server session is set up with at connect,
 * and again after a COM_RESET_CONNECTION (sc_conn_reset). */
typedef struct sc_conn_settings {
    int autocommit;      /* 0 or 1: set at connect, restored by sc_conn_reset;
                          * -1: the server's default, never touched (raw_connect) */
    char isolation[24];  /* SET SESSION TRANSACTION ISOLATION LEVEL ...; "" none */
    int track_gtid;      /* 1: last_gtid added to session_track_system_variables at
                          * connect (and after a session reset), and each COMMIT
                          * sc_conn_end sends reads it into sc_conn.last_gtid */
} sc_conn_settings;

/* What a connection's reset on return does (pool_reset_on_return). */
enum { SC_RESET_ROLLBACK, SC_RESET_COMMIT, SC_RESET_NONE, SC_RESET_CONNECTION };

typedef struct sc_conn {
    MYSQL *my;
    pid_t pid;          /* process that opened it: a child must not use it */
    double created_at;  /* sc_monotonic() at connect */
    int broken;         /* a disconnect error was seen: discard, never reuse */
    int host;           /* index of its host in the URL's host list (0 with one host) */
    int galera;         /* galera=true: a statement's 1047 (node not ready) breaks it */
    int unclean;        /* an error, or a reply not read to its end, since the last
                         * COMMIT or ROLLBACK sent by sc_conn_end: the server may have
                         * opened a transaction the status flags do not show (an ERR
                         * packet carries no status), see sc_conn_needs_end */
    int pristine;       /* no statement since connect or COM_RESET_CONNECTION */
    int session_reset;  /* COM_RESET_CONNECTION since the last checkout: what connect
                         * listeners set is gone (the checkout reports it as fresh) */
    sc_error gone;      /* the disconnect error that set broken (for invalidate events) */
    sc_conn_settings settings;
    char last_gtid[96]; /* settings.track_gtid: the GTID of the last COMMIT sent by
                         * sc_conn_end (or the non-blocking one) as its OK packet
                         * carried it; "" when none was (no binlog, nothing written) */
    char *init_command; /* the URL's init_command, run again after a session reset */
    sc_buf sql;         /* statement being built, reused */
    sc_bind_plan plan;  /* placeholders of the statement being built, reused */
    sc_bind_plan plan2; /* executemany: the placeholders of the VALUES row tuples */
    const char *csname; /* the client charset's name as Connector/C last reported it */
    int cs;             /* its class (SC_CS_*, binds.h) */
    unsigned long server_version; /* mysql_get_server_version: which versioned comments run */
    MYSQL_RES *pending; /* a result being decoded into Lua (csrc/lua/lresult.c): a Lua
                         * error half-way (out of memory) leaves it here, and the
                         * next call on the connection frees it (sc_conn_drop_pending);
                         * and a streamed result (stream_results, sc_conn_stream_open)
                         * while its caller reads it row by row */
    /* the non-blocking driver (see "non-blocking" below) */
    int tls;            /* the connection runs over TLS (then nothing is non-blocking:
                         * Connector/C 3.3's TLS handshake and reads block) */
    int tls_required;   /* ssl_mode insists on TLS: checked once connected */
    char ssl_mode[20];  /* for the error saying so */
    int nb_opening;     /* sc_conn_nb_open and _reset: 1 connecting (or init_command
                         * after a reset), 2 autocommit, 3 isolation, 4 track_gtid */
    MYSQL *nb_my;       /* what mysql_real_connect_start/_cont returned */
    char nb_sql[160];    /* the setting sc_conn_nb_open sends (read after the start returns) */
    MYSQL_ROW nb_row;   /* what mysql_fetch_row_start/_cont returned */
    int nb_stream;      /* the open stream was started by the non-blocking driver: its
                         * readers read only what sc_conn_nb_fetch read ahead */
    int ahead;          /* sc_conn_nb_fetch: 1 a row read ahead, 2 its end (or an
                         * error), 0 nothing; sc_conn_stream_next takes it first */
    int ahead_next;     /* with ahead 2 at a CALL's set end: 1 the next result's header
                         * read too (mysql_next_result, past any result without rows),
                         * 2 that read failed (the error in mysql_errno), 0 not read */
    MYSQL_ROW ahead_row;
    unsigned long *ahead_lens;
    int nb_enabled;     /* MYSQL_OPT_NONBLOCK is set (its context made once) */
    int nb_step;        /* the Connector/C call in flight (SC_NB_*), SC_NB_NONE when none */
    int nb_end;         /* the operation is our COMMIT (2) or ROLLBACK (1), 0 otherwise */
    int nb_ret;         /* what the int-returning call in flight returned */
    MYSQL_RES *nb_res;  /* what mysql_store_result_start/_cont returned */
    struct sc_stored *stored; /* the reply read in full by sc_conn_nb_query: every
                         * result set, replayed by sc_conn_use_result and
                         * sc_conn_next_result as if read off the socket */
    int nstored, stored_cap, stored_cur;
    int replay;         /* stored is being replayed (until its last set is taken) */
    void *opener;       /* the connector's host loop (connector.c) while a non-blocking
                         * open through it waits on this connection, else NULL */
} sc_conn;

/* One result set of a reply read in full by the non-blocking driver. */
typedef struct sc_stored {
    MYSQL_RES *res;     /* NULL for a statement that returns no rows */
    unsigned long long affected, insert_id;
} sc_stored;

/* The Connector/C call a non-blocking operation is in (sc_conn.nb_step). */
enum { SC_NB_NONE, SC_NB_QUERY, SC_NB_STORE, SC_NB_NEXT, SC_NB_PING, SC_NB_CONNECT, SC_NB_RESET,
       SC_NB_FETCH, SC_NB_FETCH_NEXT };

/* What a non-blocking operation waits for: Connector/C's MYSQL_WAIT_* bits. */
enum { SC_WAIT_READ = 1, SC_WAIT_WRITE = 2, SC_WAIT_EXCEPT = 4, SC_WAIT_TIMEOUT = 8 };

/* Connects with the URL's parameters and applies settings (NULL: the
 * server's defaults, as raw_connect wants); multi-statements stay off,
 * multiple results (CALL) on. NULL on failure with err filled. */
sc_conn *sc_conn_open(const sc_url *url, const sc_conn_settings *settings, sc_error *err);
/* Sends one statement. 0, or -1 with err filled (and broken set when the
 * error means the connection is gone). A connection opened by another
 * process (inherited across fork) is never talked to: this and every call
 * below that would send or read refuse it (err->code 0) in the child, and
 * sc_conn_close discards it without a word to the server. */
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
/* Streaming (stream_results): the current result, kept open in c->pending
 * while the caller reads its rows one by one; nothing else may be sent
 * meanwhile (the binding refuses it). NULL with err->code 0 when the
 * statement returns no rows (then nothing is held), NULL with err filled on
 * error. */
MYSQL_RES *sc_conn_stream_open(sc_conn *c, sc_error *err);
/* The next row of the open stream: 1 with *row and *lens set (valid until
 * the next call); 0 at the end of the statement's results; 2 at the end of
 * a result set when another follows (a CALL's next SELECT): that one is
 * now the open stream, in c->pending, its rows unread; -1 with err filled
 * when the server sent an error after some rows, or the connection failed.
 * On 0 and -1 the result is freed and the results without rows that
 * followed it (a CALL's status) are read: the connection is in sync again,
 * or broken. */
int sc_conn_stream_next(sc_conn *c, MYSQL_ROW *row, unsigned long **lens, sc_error *err);
/* Ends an open stream before its end: the rest of its rows are read and
 * dropped (mysql_free_result drains them) and the connection is in sync
 * again, unclean (a ROLLBACK is due, sc_conn_needs_end). discard, or a
 * connection that is broken or another process's: nothing is read, the
 * connection is marked broken (it must be discarded, never pooled). */
void sc_conn_stream_close(sc_conn *c, int discard);
/* Whether the statement just sent returns rows (a result set follows). */
int sc_conn_returns_rows(const sc_conn *c);
/* Turns autocommit on or off (a round trip). 0, or -1 with err filled. */
int sc_conn_set_autocommit(sc_conn *c, int on, sc_error *err);
/* Closes politely (COM_QUIT) and frees. */
void sc_conn_close(sc_conn *c);
/* Frees without a word to the server: for a connection inherited across
 * fork(), whose socket is the parent's. */
void sc_conn_discard(sc_conn *c);
/* THE reset rule, the one place it lives: whether a COMMIT or ROLLBACK must
 * be sent for the server to hold no transaction, lock or snapshot for this
 * connection. True when a statement failed (or was cut short) since the
 * last COMMIT/ROLLBACK that sc_conn_end sent successfully -- an ERR packet
 * does not update the client's copy of the server status, while InnoDB has
 * opened the transaction and keeps its locks (a duplicate key as the first
 * statement, a lock wait timeout, KILL QUERY, max_statement_time) -- or when
 * the last reply's status says a transaction is open. False only when
 * every reply since was read whole and the last one says none is open. */
int sc_conn_needs_end(const sc_conn *c);
/* Ends the transaction: COMMIT always (it is the caller's request);
 * ROLLBACK only when sc_conn_needs_end (a round trip saved where the rule
 * proves there is nothing to roll back). 0, or -1 with err filled. */
int sc_conn_end(sc_conn *c, int commit, sc_error *err);
/* Makes the connection fit for its next user (pool_reset_on_return):
 * SC_RESET_ROLLBACK / SC_RESET_COMMIT end the transaction by the rule above;
 * SC_RESET_CONNECTION sends COM_RESET_CONNECTION (temporary tables, user
 * variables, GET_LOCK locks, session variables and the transaction all go)
 * and applies the settings and init_command again; SC_RESET_NONE leaves the
 * transaction alone. Every mode restores autocommit when a statement changed
 * it (SET autocommit=1 would otherwise make the next user's rollback a
 * no-op). 0, or -1 when the connection must be discarded. */
int sc_conn_reset(sc_conn *c, int mode, sc_error *err);
/* Whether the server reported autocommit on in its last reply. */
int sc_conn_autocommit(const sc_conn *c);
/* The class (SC_CS_*) of the connection's client charset: Connector/C's
 * copy of it, which follows SET NAMES and SET character_set_client through
 * the server's session tracking. A pointer comparison when unchanged, so it
 * is checked after every statement. */
int sc_conn_charset(sc_conn *c);
/* Fills err for a connection whose client charset has become one that is
 * not accepted, and marks it broken (discarded, never reused; what the
 * caller sees is an invalidated connection). */
void sc_conn_refuse_charset(sc_conn *c, sc_error *err);
/* The lexer mode for the connection's next statement, asked of the server
 * (SELECT @@SESSION.sql_mode, @@SESSION.character_set_client: one round
 * trip) for a statement whose placeholders depend on it: the
 * NO_BACKSLASH_ESCAPES status flag the server sends is stale after SET
 * STATEMENT sql_mode=... FOR ..., and ANSI_QUOTES has no flag at all. The
 * server's character_set_client is checked too (one started with
 * --skip-character-set-client-handshake ignores ours). 0, or -1 with err
 * filled (a refused charset marks the connection broken). */
int sc_conn_ask_lex_mode(sc_conn *c, sc_lex_mode *m, sc_error *err);
/* The statement sc_conn_ask_lex_mode sends, and what makes the mode of its
 * reply (res, freed here; NULL: the reply could not be read): for the
 * non-blocking driver, which sends it with sc_conn_nb_query. */
extern const char SC_LEX_MODE_QUERY[];
int sc_conn_lex_mode_from(sc_conn *c, MYSQL_RES *res, sc_lex_mode *m, sc_error *err);

/* ---- non-blocking: the I/O seam -------------------------------------------
 *
 * Every round trip above blocks the calling thread. A connection switched
 * to the non-blocking driver (sc_conn_nb_enable) also runs the operations
 * below with MariaDB Connector/C's _start/_cont pairs: each returns 0 when
 * done, -1 when it failed (err filled, as the blocking call would), or the
 * events to wait for (SC_WAIT_* bits, never 0) on sc_conn_nb_fd, for at
 * most sc_conn_nb_timeout_ms when SC_WAIT_TIMEOUT is among them; the
 * caller waits however it likes (a coroutine yields to its event loop) and
 * calls sc_conn_nb_cont with what happened (the ready events, or
 * SC_WAIT_TIMEOUT) until it returns 0 or -1. While one is in flight
 * (c->nb_step != SC_NB_NONE) nothing but sc_conn_nb_cont and
 * sc_conn_nb_abandon may be called on c. The blocking calls keep working on
 * such a connection (Connector/C blocks in poll(2) when no non-blocking
 * call is active), so whatever cannot wait (a finalizer, the pool's checkin
 * reset, a caller that cannot yield) uses them as before. */

/* Switches c to the non-blocking driver (MYSQL_OPT_NONBLOCK), once; the
 * operations below do it when it was not done. 0, or -1. */
int sc_conn_nb_enable(sc_conn *c);
/* Sends a statement and reads its whole reply, every result set stored
 * client-side (mysql_store_result: the rows are in memory when the
 * operation ends, so no row read can block); then sc_conn_use_result,
 * sc_conn_next_result, sc_conn_affected_rows and sc_conn_insert_id replay
 * them as the blocking path reads them off the socket, and the same row
 * builder decodes either. end: 0, or our own COMMIT (2) / ROLLBACK (1),
 * which on success clears unclean as sc_conn_end does. */
int sc_conn_nb_query(sc_conn *c, const char *sql, size_t len, int end, sc_error *err);
/* Opens a connection as sc_conn_open does, the handshake and the settings
 * run by the non-blocking driver: returns the connection at once (NULL
 * only when it could not even be made: *st -1, err filled), with *st as the
 * sc_conn_nb_* calls return; sc_conn_nb_cont goes on. On -1 (connect
 * error, timeout, refused TLS or charset) the caller frees it with
 * sc_conn_close. The URL's strings must outlive the operation. A TLS
 * handshake blocks even so (Connector/C 3.3). */
sc_conn *sc_conn_nb_open(const sc_url *url, const sc_conn_settings *settings, int *st,
                         sc_error *err);
/* sc_conn_reset's SC_RESET_CONNECTION (COM_RESET_CONNECTION, then the
 * init_command and the settings again), non-blocking; nothing when the
 * session is pristine. -1: discard the connection. */
int sc_conn_nb_reset(sc_conn *c, sc_error *err);
/* Reads the next row of the open stream (c->pending) ahead, for
 * sc_conn_stream_next to take (its end, or an error, too): 0 once read
 * (or when there is nothing to read), or the wait. A row read ahead stays
 * valid until the stream's next read. At the end of a set of a CALL the
 * next result's header is read too (mysql_next_result_start, past the
 * results without rows; c->ahead_next), so that sc_conn_stream_next moves
 * to it without a blocking read; an error there is reported by it. */
int sc_conn_nb_fetch(sc_conn *c, sc_error *err);
/* sc_conn_nb_query's end 3: the statement and its result header only; the
 * rows are left on the socket for a stream (sc_conn_stream_open). */
/* COM_PING; on failure the connection is broken. */
int sc_conn_nb_ping(sc_conn *c, sc_error *err);
int sc_conn_nb_cont(sc_conn *c, int ready, sc_error *err);
int sc_conn_nb_fd(const sc_conn *c);
unsigned sc_conn_nb_timeout_ms(const sc_conn *c);
/* Gives up the operation in flight (its waiter is gone or raised): the
 * socket is shut down, the suspended Connector/C call is run to its
 * failure (so that it frees what it holds), and c is broken: discard it.
 * The server may still be running the statement: see sc_conn_kill. */
void sc_conn_nb_abandon(sc_conn *c);
/* Asks the server, through a short-lived connection of its own opened
 * with url (blocking: connect_timeout bounds it), to end the session with
 * the given thread id (KILL CONNECTION): what an abandoned statement was
 * doing stops, and its locks go. 0, or -1 with err filled. */
int sc_conn_kill(const sc_url *url, unsigned long thread_id, sc_error *err);
/* The affected rows and insert id of the current result (the stored one
 * while a reply is replayed). */
unsigned long long sc_conn_affected_rows(const sc_conn *c);
unsigned long long sc_conn_insert_id(const sc_conn *c);

/* MySQL codes that mean the connection is gone (SQLAlchemy's list). */
int sc_is_disconnect(unsigned code);
/* SQLAlchemy / DB-API exception class name for a server or client error
 * code (0: InterfaceError), exactly as mysqlclient maps it. The one place
 * a code becomes a kind. */
const char *sc_error_kind(unsigned code);
/* hide_parameters: for the errors whose server text may quote a bound
 * value (or the statement around one), a text that says what went wrong
 * without it; NULL for the others. The server truncates and re-formats
 * what it quotes (64 bytes of a key, 'a-b' for a composite key, \xFF for a
 * byte, 0.10 for 0.1), so no scrubbing of the values can be relied on. */
const char *sc_error_hidden_text(unsigned code);

#endif
