#include <fcntl.h>
#include <pthread.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <errmsg.h>
#include <mysqld_error.h>

#include "pid.h"
#include "clock.h"
#include "conn.h"

static pthread_once_t library_once = PTHREAD_ONCE_INIT;

/* mysql_library_init is not thread-safe; mysql_init calls it lazily, so a
 * first connect from two threads at once would race. */
static void library_init(void)
{
    mysql_library_init(0, NULL, NULL);
}

static void set_error(sc_error *err, MYSQL *my)
{
    err->code = mysql_errno(my);
    snprintf(err->sqlstate, sizeof err->sqlstate, "%s", mysql_sqlstate(my));
    snprintf(err->message, sizeof err->message, "%s", mysql_error(my));
}

/* Every failure of a call on an open connection comes here: the error for
 * the caller, broken when the connection is gone, and unclean, since the
 * server may have opened a transaction that no status flag will show
 * (sc_conn_needs_end). Returns -1. */
static int fail(sc_conn *c, sc_error *err)
{
    set_error(err, c->my);
    if ((sc_is_disconnect(err->code) || (c->galera && err->code == 1047)) && !c->broken) {
        c->broken = 1;
        c->gone = *err;
    }
    c->unclean = 1;
    return -1;
}

/* Whether c was opened by another process: inherited across fork(), its
 * socket is shared with the parent, and a byte sent or read here would go
 * into (or out of) the parent's conversation with the server. Fills err. */
static int foreign(const sc_conn *c, sc_error *err)
{
    pid_t me = sc_getpid();
    if (c->pid == me)
        return 0;
    err->code = 0;
    strcpy(err->sqlstate, "HY000");
    snprintf(err->message, sizeof err->message,
             "connection opened by process %ld cannot be used by process %ld (a fork): "
             "its socket is the parent's",
             (long)c->pid, (long)me);
    return 1;
}

/* settings.track_gtid: what the server tracks already (the server's
 * default keeps character_set_client among them, which sc_conn_charset
 * relies on) plus last_gtid, whose value COMMIT's OK packet then carries. */
static const char TRACK_GTID_SQL[] =
    "SET SESSION session_track_system_variables = "
    "CONCAT_WS(',', NULLIF(@@global.session_track_system_variables, ''), 'last_gtid')";

/* settings.track_gtid, after a COMMIT's OK packet: the value of last_gtid
 * among the system variables it reports (name, value pairs), or "". */
static void read_last_gtid(sc_conn *c)
{
    const char *data;
    size_t len;
    int is_name = 1, want = 0;
    c->last_gtid[0] = '\0';
    if (mysql_session_track_get_first(c->my, SESSION_TRACK_SYSTEM_VARIABLES, &data, &len) != 0)
        return;
    do {
        if (is_name) {
            want = len == 9 && memcmp(data, "last_gtid", 9) == 0;
        } else if (want) {
            if (len >= sizeof c->last_gtid)
                len = 0; /* not a GTID list we can hold: none rather than a cut one */
            memcpy(c->last_gtid, data, len);
            c->last_gtid[len] = '\0';
        }
        is_name = !is_name;
    } while (mysql_session_track_get_next(c->my, SESSION_TRACK_SYSTEM_VARIABLES, &data, &len) == 0);
}

static int apply_settings(sc_conn *c, sc_error *err)
{
    const sc_conn_settings *s = &c->settings;
    if (s->autocommit >= 0 && sc_conn_set_autocommit(c, s->autocommit, err) != 0)
        return -1;
    if (s->isolation[0]) {
        char sql[80];
        int n = snprintf(sql, sizeof sql, "SET SESSION TRANSACTION ISOLATION LEVEL %s", s->isolation);
        if (sc_conn_query(c, sql, (size_t)n, err) != 0)
            return -1;
    }
    if (s->track_gtid && sc_conn_query(c, TRACK_GTID_SQL, sizeof TRACK_GTID_SQL - 1, err) != 0)
        return -1;
    c->pristine = 1;
    return 0;
}

#define SAFE_CHARSETS "use utf8mb4, utf8mb3, latin1, ascii or binary"

static void charset_error(sc_error *err, const char *name, const char *how)
{
    err->code = 0;
    strcpy(err->sqlstate, "HY000");
    snprintf(err->message, sizeof err->message,
             "charset '%.40s'%s is not supported (" SAFE_CHARSETS "): bound values are "
             "only written for charsets in which no multibyte character holds an ASCII byte",
             name ? name : "?", how);
}

/* Frees a connection that never finished opening. */
static void open_abort(sc_conn *c)
{
    mysql_close(c->my);
    free(c->init_command);
    free(c->stored);
    free(c);
}

/* The first half of every open: c allocated and every option set, ready
 * for mysql_real_connect (or its _start); NULL on failure with err filled. */
static sc_conn *open_prepare(const sc_url *url, const sc_conn_settings *settings, int nonblocking,
                             sc_error *err)
{
    const char *const *prm = (const char *const *)url->params;
    const char *charset = prm[SC_URL_CHARSET] ? prm[SC_URL_CHARSET] : "utf8mb4";
    memset(err, 0, sizeof *err);
    if (sc_charset_class(charset) == SC_CS_UNSAFE) {
        /* client-side escaping is unsafe where a multibyte character may
         * hold a backslash or quote byte (sjis, gbk, big5, ...) */
        charset_error(err, charset, "");
        return NULL;
    }
    pthread_once(&library_once, library_init);
    sc_conn *c = calloc(1, sizeof *c);
    if (c == NULL || (c->my = mysql_init(NULL)) == NULL ||
        (prm[SC_URL_INIT_COMMAND] && (c->init_command = strdup(prm[SC_URL_INIT_COMMAND])) == NULL) ||
        (nonblocking && sc_conn_nb_enable(c) != 0)) {
        if (c != NULL && c->my != NULL)
            mysql_close(c->my);
        if (c != NULL)
            free(c->init_command);
        free(c);
        snprintf(err->message, sizeof err->message, "out of memory");
        return NULL;
    }
    c->pid = sc_getpid(); /* ours from the start: closing a half-open one is ours too */
    c->settings.autocommit = -1;
    if (settings != NULL)
        c->settings = *settings;
    MYSQL *my = c->my;
    unsigned timeout = prm[SC_URL_CONNECT_TIMEOUT] ? (unsigned)atoi(prm[SC_URL_CONNECT_TIMEOUT]) : 10;
    mysql_options(my, MYSQL_OPT_CONNECT_TIMEOUT, &timeout);
    if (prm[SC_URL_READ_TIMEOUT]) {
        unsigned t = (unsigned)atoi(prm[SC_URL_READ_TIMEOUT]);
        mysql_options(my, MYSQL_OPT_READ_TIMEOUT, &t);
    }
    if (prm[SC_URL_WRITE_TIMEOUT]) {
        unsigned t = (unsigned)atoi(prm[SC_URL_WRITE_TIMEOUT]);
        mysql_options(my, MYSQL_OPT_WRITE_TIMEOUT, &t);
    }
    mysql_options(my, MYSQL_SET_CHARSET_NAME, charset);
    if (prm[SC_URL_INIT_COMMAND])
        mysql_options(my, MYSQL_INIT_COMMAND, prm[SC_URL_INIT_COMMAND]);
    /* TLS. MariaDB Connector/C 3.3 has no ssl_mode: MYSQL_OPT_SSL_ENFORCE
     * only asks for TLS (it goes on in clear when the server has none),
     * the CA chain is verified whenever ssl_ca is set, and
     * MYSQL_OPT_SSL_VERIFY_SERVER_CERT adds the host name check and makes a
     * server without TLS an error. So: DISABLED uses no TLS whatever else is
     * given; PREFERRED asks for it; REQUIRED, VERIFY_CA, VERIFY_IDENTITY
     * (and certificate files without a mode) insist on it, checked below
     * once connected; VERIFY_CA needs ssl_ca, VERIFY_IDENTITY also checks
     * the name. */
    const char *mode = prm[SC_URL_SSL_MODE];
    int files = prm[SC_URL_SSL_CA] || prm[SC_URL_SSL_CERT] || prm[SC_URL_SSL_KEY];
    int disabled = mode && strcmp(mode, "DISABLED") == 0;
    int preferred = mode && strcmp(mode, "PREFERRED") == 0;
    int tls_required = !disabled && !preferred && (files || mode);
    if (mode && strcmp(mode, "VERIFY_CA") == 0 && !prm[SC_URL_SSL_CA]) {
        err->code = 2026; /* CR_SSL_CONNECTION_ERROR */
        strcpy(err->sqlstate, "HY000");
        snprintf(err->message, sizeof err->message,
                 "ssl_mode=VERIFY_CA needs ssl_ca, the CA to verify the server's certificate against");
        open_abort(c);
        return NULL;
    }
    if (!disabled && (files || mode)) {
        my_bool on = 1;
        mysql_ssl_set(my, prm[SC_URL_SSL_KEY], prm[SC_URL_SSL_CERT], prm[SC_URL_SSL_CA], NULL, NULL);
        mysql_options(my, MYSQL_OPT_SSL_ENFORCE, &on);
        my_bool verify = mode && (strcmp(mode, "VERIFY_IDENTITY") == 0);
        mysql_options(my, MYSQL_OPT_SSL_VERIFY_SERVER_CERT, &verify);
        /* TLS stripping: Connector/C 3.3 refuses a server without TLS before
         * sending any authentication data only when it verifies the server
         * certificate (VERIFY_IDENTITY). Otherwise it logs in in clear, and
         * believing the connection secure (TLS was asked for), it answers a
         * switch to mysql_clear_password, dialog, sha256_password or
         * caching_sha2_password's full authentication with the password
         * itself; the check after connecting comes too late. So where TLS
         * is required but cannot be known to be up before the login, only
         * the methods that never put the password on the wire may run. */
        if (tls_required && !verify)
            mysql_optionsv(my, MARIADB_OPT_RESTRICTED_AUTH, "mysql_native_password,client_ed25519");
    }
    c->tls_required = tls_required;
    snprintf(c->ssl_mode, sizeof c->ssl_mode, "%s", mode ? mode : "REQUIRED");
    /* never reconnect behind our back: a silent reconnect loses the
     * transaction and session state the caller believes it has */
    my_bool reconnect = 0;
    mysql_options(my, MYSQL_OPT_RECONNECT, &reconnect);
    return c;
}

/* The flags every connection is opened with: multi-statements stay off,
 * multiple results (CALL) on. */
#define OPEN_FLAGS (CLIENT_MULTI_RESULTS | CLIENT_FOUND_ROWS)

/* After the handshake: what must hold for the connection to be kept. 0, or
 * -1 with err filled (the caller frees c with open_abort). */
static int open_check(sc_conn *c, sc_error *err)
{
    if (c->tls_required && mysql_get_ssl_cipher(c->my) == NULL) {
        /* Connector/C went on in clear: refuse the connection. (The login
         * exchange has happened by now, but REQUIRED verifies no certificate,
         * so it never stood against an active attacker; VERIFY_IDENTITY
         * fails before the login.) */
        err->code = 2026; /* CR_SSL_CONNECTION_ERROR */
        strcpy(err->sqlstate, "HY000");
        snprintf(err->message, sizeof err->message,
                 "TLS is required (ssl_mode=%s) but the server does not support it", c->ssl_mode);
        return -1;
    }
    if (sc_conn_charset(c) == SC_CS_UNSAFE) {
        /* init_command ran SET NAMES or SET character_set_client */
        charset_error(err, c->csname, " (set by init_command)");
        return -1;
    }
    c->tls = mysql_get_ssl_cipher(c->my) != NULL;
    c->server_version = mysql_get_server_version(c->my);
    c->pid = sc_getpid();
    c->created_at = sc_monotonic();
    return 0;
}

sc_conn *sc_conn_open(const sc_url *url, const sc_conn_settings *settings, sc_error *err)
{
    sc_conn *c = open_prepare(url, settings, 0, err);
    if (c == NULL)
        return NULL;
    const char *const *prm = (const char *const *)url->params;
    if (!mysql_real_connect(c->my, url->host, url->username ? url->username : "root",
                            url->password, url->database, (unsigned)url->port,
                            prm[SC_URL_UNIX_SOCKET], OPEN_FLAGS)) {
        set_error(err, c->my);
        open_abort(c);
        return NULL;
    }
    if (open_check(c, err) != 0) {
        open_abort(c);
        return NULL;
    }
    if (apply_settings(c, err) != 0) {
        sc_conn_close(c);
        return NULL;
    }
    return c;
}

static void forget_pending(sc_conn *c);

/* Frees what is left of a reply the non-blocking driver stored. */
static void stored_clear(sc_conn *c)
{
    for (int i = c->stored_cur; i < c->nstored; i++) {
        if (c->stored[i].res != NULL)
            mysql_free_result(c->stored[i].res);
        c->stored[i].res = NULL;
    }
    c->nstored = 0;
    c->stored_cur = 0;
    c->replay = 0;
}

void sc_conn_drop_pending(sc_conn *c)
{
    int next_read = c->ahead_next; /* the next result's header was read ahead */
    c->ahead = 0;
    c->ahead_next = 0;
    if (c->replay)
        stored_clear(c);
    if (c->pending == NULL)
        return;
    sc_error ignored;
    if (foreign(c, &ignored)) {
        forget_pending(c); /* the rest of the rows are the parent's to read */
        return;
    }
    mysql_free_result(c->pending);
    c->pending = NULL;
    c->unclean = 1; /* a reply cut short: what the server did is not known */
    if (next_read == 2) {
        /* reading the next result's header failed: the reply ends there */
        if (sc_is_disconnect(mysql_errno(c->my)))
            c->broken = 1;
        return;
    }
    while (!c->broken && (next_read || mysql_more_results(c->my))) {
        if (!next_read && mysql_next_result(c->my) > 0) {
            if (sc_is_disconnect(mysql_errno(c->my)))
                c->broken = 1;
            break;
        }
        next_read = 0;
        MYSQL_RES *res = mysql_store_result(c->my);
        if (res != NULL)
            mysql_free_result(res);
    }
}

int sc_conn_query(sc_conn *c, const char *sql, size_t len, sc_error *err)
{
    if (foreign(c, err))
        return -1;
    if (c->pending != NULL || c->replay)
        sc_conn_drop_pending(c);
    c->pristine = 0;
    if (mysql_real_query(c->my, sql, (unsigned long)len) != 0)
        return fail(c, err);
    return 0;
}

MYSQL_RES *sc_conn_use_result(sc_conn *c, sc_error *err)
{
    err->code = 0;
    if (c->replay) {
        /* a reply the non-blocking driver read in full: its next set */
        MYSQL_RES *stored = c->stored[c->stored_cur].res;
        c->stored[c->stored_cur].res = NULL; /* the caller frees it */
        return stored;
    }
    MYSQL_RES *res = mysql_use_result(c->my);
    if (res == NULL && mysql_field_count(c->my) != 0)
        fail(c, err);
    return res;
}

int sc_conn_fetch_error(sc_conn *c, sc_error *err)
{
    if (mysql_errno(c->my) == 0)
        return 0;
    return fail(c, err);
}

int sc_conn_next_result(sc_conn *c, sc_error *err)
{
    if (c->replay) {
        if (++c->stored_cur < c->nstored)
            return 1;
        stored_clear(c);
        return 0;
    }
    if (!mysql_more_results(c->my))
        return 0;
    int rc = mysql_next_result(c->my);
    if (rc > 0)
        return fail(c, err);
    return rc == 0 ? 1 : 0;
}

/* ---- streaming ------------------------------------------------------------ */

MYSQL_RES *sc_conn_stream_open(sc_conn *c, sc_error *err)
{
    MYSQL_RES *res = sc_conn_use_result(c, err);
    c->pending = res; /* held while the caller reads; freed by the calls below */
    return res;
}

int sc_conn_returns_rows(const sc_conn *c)
{
    return mysql_field_count(c->my) != 0;
}

int sc_conn_stream_next(sc_conn *c, MYSQL_ROW *row, unsigned long **lens, sc_error *err)
{
    MYSQL_RES *res = c->pending;
    if (res == NULL) {
        err->code = 0;
        return 0;
    }
    MYSQL_ROW r;
    int next_read = 0;
    if (c->ahead == 1) {
        /* read ahead by the non-blocking driver (sc_conn_nb_fetch) */
        c->ahead = 0;
        *row = c->ahead_row;
        *lens = c->ahead_lens;
        return 1;
    }
    if (c->ahead == 2) {
        c->ahead = 0; /* the end (or an error) was read ahead */
        next_read = c->ahead_next; /* and the next result's header with it */
        c->ahead_next = 0;
        r = NULL;
    } else {
        r = mysql_fetch_row(res);
    }
    if (r != NULL) {
        *row = r;
        *lens = mysql_fetch_lengths(res);
        return 1;
    }
    /* the end, or an error the server sent after some rows (the next
     * result's header is read only after an end without error) */
    int failed = next_read ? 0 : sc_conn_fetch_error(c, err);
    c->pending = NULL;
    mysql_free_result(res);
    if (failed)
        return -1;
    err->code = 0;
    for (;;) {
        int more;
        if (next_read == 2)
            more = fail(c, err); /* what mysql_next_result_start/_cont reported */
        else if (next_read == 1)
            more = 1;            /* its header is read: the result is there */
        else
            more = sc_conn_next_result(c, err);
        next_read = 0;
        if (more < 0)
            return -1;
        if (more == 0)
            return 0;
        MYSQL_RES *next = sc_conn_use_result(c, err);
        if (next != NULL) {
            c->pending = next; /* a CALL's next result set: the caller's to read or drop */
            return 2;
        }
        if (err->code != 0)
            return -1;
        /* a result without rows (a CALL's status): nothing to read */
    }
}

void sc_conn_stream_close(sc_conn *c, int discard)
{
    if (c->nb_step != SC_NB_NONE) {
        sc_conn_nb_abandon(c); /* a read ahead left waiting: out of sync */
        discard = 1;
    }
    c->ahead = 0; /* (ahead_next: sc_conn_drop_pending reads it) */
    if (c->pending == NULL) {
        c->ahead_next = 0;
        return;
    }
    sc_error ignored;
    if (discard || c->broken || foreign(c, &ignored)) {
        forget_pending(c); /* nothing read: out of sync, so never reused */
        c->broken = 1;
        c->unclean = 1;
        return;
    }
    sc_conn_drop_pending(c);
    if (mysql_errno(c->my) != 0 && sc_is_disconnect(mysql_errno(c->my)))
        c->broken = 1;
}

int sc_conn_set_autocommit(sc_conn *c, int on, sc_error *err)
{
    if (foreign(c, err))
        return -1;
    sc_conn_drop_pending(c);
    if (mysql_autocommit(c->my, (my_bool)(on != 0)) != 0)
        return fail(c, err);
    return 0;
}

int sc_conn_ping(sc_conn *c)
{
    sc_error ignored;
    if (foreign(c, &ignored))
        return -1; /* not ours to ask: the answer would be the parent's */
    sc_conn_drop_pending(c);
    int rc = mysql_ping(c->my);
    if (rc != 0)
        c->broken = 1;
    return rc;
}

/* A result cut short, freed without reading the rest of its rows: before
 * closing (they would be read for nothing) or discarding (the socket is the
 * parent's). Its handle is what makes mysql_free_result drain the rows. */
static void forget_pending(sc_conn *c)
{
    c->ahead = 0;
    c->ahead_next = 0;
    if (c->pending == NULL)
        return;
    c->pending->handle = NULL;
    mysql_free_result(c->pending);
    c->pending = NULL;
}

static void conn_free(sc_conn *c)
{
    free(c->stored);
    free(c->init_command);
    sc_buf_free(&c->sql);
    sc_bind_plan_free(&c->plan);
    sc_bind_plan_free(&c->plan2);
    free(c);
}

void sc_conn_close(sc_conn *c)
{
    if (c == NULL)
        return;
    sc_error ignored;
    if (foreign(c, &ignored)) {
        sc_conn_discard(c); /* a COM_QUIT would close the parent's session */
        return;
    }
    if (c->nb_step != SC_NB_NONE)
        sc_conn_nb_abandon(c); /* mid-protocol: nothing polite can be said */
    forget_pending(c);
    stored_clear(c);
    mysql_close(c->my);
    conn_free(c);
}

void sc_conn_discard(sc_conn *c)
{
    if (c == NULL)
        return;
    /* mysql_close would send COM_QUIT (and a TLS close) on a socket the
     * parent still uses (SQLAlchemy issue #7815). Point our descriptor at
     * /dev/null first: what mysql_close writes goes nowhere, and closing
     * our copy of the descriptor leaves the parent's socket open. */
    forget_pending(c);
    stored_clear(c);
    int fd = (int)mysql_get_socket(c->my);
    int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (fd >= 0 && devnull >= 0 && dup2(devnull, fd) >= 0) {
        mysql_close(c->my);
    }
    /* else: leak the handle rather than talk on the parent's socket */
    if (devnull >= 0)
        close(devnull);
    conn_free(c);
}

/* ---- the non-blocking driver ------------------------------------------------ */

int sc_conn_nb_enable(sc_conn *c)
{
    if (c->nb_enabled)
        return 0;
    if (mysql_options(c->my, MYSQL_OPT_NONBLOCK, 0) != 0)
        return -1;
    c->nb_enabled = 1;
    return 0;
}

/* For an operation about to start: c is ours and in sync. */
static int nb_ready(sc_conn *c, sc_error *err)
{
    if (foreign(c, err))
        return -1;
    if (sc_conn_nb_enable(c) != 0) {
        err->code = 2008; /* CR_OUT_OF_MEMORY */
        strcpy(err->sqlstate, "HY000");
        snprintf(err->message, sizeof err->message, "out of memory (non-blocking context)");
        return -1;
    }
    if (c->pending != NULL || c->replay)
        sc_conn_drop_pending(c);
    return 0;
}

int sc_conn_nb_fd(const sc_conn *c)
{
    return (int)mysql_get_socket(c->my);
}

unsigned sc_conn_nb_timeout_ms(const sc_conn *c)
{
    return mysql_get_timeout_value_ms(c->my);
}

unsigned long long sc_conn_affected_rows(const sc_conn *c)
{
    return c->replay ? c->stored[c->stored_cur].affected : (unsigned long long)mysql_affected_rows(c->my);
}

unsigned long long sc_conn_insert_id(const sc_conn *c)
{
    return c->replay ? c->stored[c->stored_cur].insert_id : (unsigned long long)mysql_insert_id(c->my);
}

/* The operation failed at its current call: what it stored so far goes. */
static int nb_fail(sc_conn *c, sc_error *err)
{
    c->nb_step = SC_NB_NONE;
    c->nb_opening = 0;
    c->stored_cur = 0;
    stored_clear(c);
    return fail(c, err);
}

static int stored_push(sc_conn *c, MYSQL_RES *res)
{
    if (c->nstored == c->stored_cap) {
        int cap = c->stored_cap ? c->stored_cap * 2 : 4;
        sc_stored *grown = realloc(c->stored, (size_t)cap * sizeof *grown);
        if (grown == NULL)
            return -1;
        c->stored = grown;
        c->stored_cap = cap;
    }
    sc_stored *s = &c->stored[c->nstored++];
    s->res = res;
    s->affected = (unsigned long long)mysql_affected_rows(c->my);
    s->insert_id = (unsigned long long)mysql_insert_id(c->my);
    return 0;
}

/* sc_conn_nb_open after the handshake: the settings sc_conn_open applies
 * (apply_settings), each a statement of its own, started here (kept in
 * c->nb_sql: Connector/C may read it after the start call returns). Sets
 * *done when none is left; otherwise returns what the start returned. */
static int open_next_phase(sc_conn *c, int *done)
{
    int n = 0;
    while (n == 0 && c->nb_opening <= 4) {
        c->nb_opening++;
        if (c->nb_opening == 1 && c->init_command) {
            /* after COM_RESET_CONNECTION (sc_conn_nb_reset): the URL's
             * init_command again, as reset_session runs it; read from
             * c->init_command itself, which lives as long as c */
            c->nb_end = 0;
            c->nb_step = SC_NB_QUERY;
            *done = 0;
            return mysql_real_query_start(&c->nb_ret, c->my, c->init_command,
                                          (unsigned long)strlen(c->init_command));
        }
        if (c->nb_opening == 2 && sc_conn_charset(c) == SC_CS_UNSAFE) {
            /* init_command ran SET NAMES or SET character_set_client */
            *done = -1;
            return 0;
        }
        if (c->nb_opening == 2 && c->settings.autocommit >= 0)
            n = snprintf(c->nb_sql, sizeof c->nb_sql, "SET autocommit=%d",
                         c->settings.autocommit ? 1 : 0);
        else if (c->nb_opening == 3 && c->settings.isolation[0])
            n = snprintf(c->nb_sql, sizeof c->nb_sql, "SET SESSION TRANSACTION ISOLATION LEVEL %s",
                         c->settings.isolation);
        else if (c->nb_opening == 4 && c->settings.track_gtid)
            n = snprintf(c->nb_sql, sizeof c->nb_sql, "%s", TRACK_GTID_SQL);
    }
    if (n == 0) {
        c->nb_opening = 0;
        c->pristine = 1;
        *done = 1;
        return 0;
    }
    *done = 0;
    c->nb_end = 0;
    c->nb_step = SC_NB_QUERY;
    return mysql_real_query_start(&c->nb_ret, c->my, c->nb_sql, (unsigned long)n);
}

/* Moves the operation on from a call that finished (st == 0) to the next
 * call of its sequence: query, then (store, next)* until no result is
 * left; ping alone. Returns as the sc_conn_nb_* calls do. */
static int nb_advance(sc_conn *c, int st, sc_error *err)
{
    while (st == 0) {
        switch (c->nb_step) {
        case SC_NB_QUERY:
            if (c->nb_ret != 0)
                return nb_fail(c, err);
            if (c->nb_end == 3) {
                /* streamed: the header is read, the rows are the reader's
                 * (sc_conn_stream_open, sc_conn_nb_fetch) */
                c->nb_step = SC_NB_NONE;
                err->code = 0;
                return 0;
            }
            c->nb_step = SC_NB_STORE;
            st = mysql_store_result_start(&c->nb_res, c->my);
            break;
        case SC_NB_STORE:
            if (c->nb_res == NULL && mysql_field_count(c->my) != 0)
                return nb_fail(c, err); /* the rows could not be read */
            if (stored_push(c, c->nb_res) != 0) {
                mysql_free_result(c->nb_res);
                c->nb_res = NULL;
                c->nb_step = SC_NB_NONE;
                stored_clear(c);
                c->broken = 1; /* the rest of the reply is still on the socket */
                c->unclean = 1;
                err->code = 2008; /* CR_OUT_OF_MEMORY */
                strcpy(err->sqlstate, "HY000");
                snprintf(err->message, sizeof err->message, "out of memory");
                c->gone = *err;
                return -1;
            }
            c->nb_res = NULL;
            if (mysql_more_results(c->my)) {
                c->nb_step = SC_NB_NEXT;
                st = mysql_next_result_start(&c->nb_ret, c->my);
                break;
            }
            c->nb_step = SC_NB_NONE;
            c->stored_cur = 0;
            c->replay = 1;
            if (c->nb_opening) {
                int done;
                stored_clear(c); /* a setting's OK packet: on to the next one */
                st = open_next_phase(c, &done);
                if (done < 0) {
                    c->nb_opening = 0;
                    sc_conn_refuse_charset(c, err);
                    return -1;
                }
                if (done) {
                    err->code = 0;
                    return 0;
                }
                break;
            }
            if (c->nb_end) {
                /* the OK packet of our own COMMIT/ROLLBACK (sc_conn_end) */
                stored_clear(c);
                c->unclean = 0;
                if (c->nb_end == 2 && c->settings.track_gtid)
                    read_last_gtid(c);
            }
            err->code = 0;
            return 0;
        case SC_NB_NEXT:
            if (c->nb_ret > 0)
                return nb_fail(c, err);
            c->nb_step = SC_NB_STORE;
            st = mysql_store_result_start(&c->nb_res, c->my);
            break;
        case SC_NB_CONNECT:
            c->nb_step = SC_NB_NONE;
            if (c->nb_my == NULL) {
                set_error(err, c->my);
                c->nb_opening = 0;
                c->broken = 1;
                return -1;
            }
            if (open_check(c, err) != 0) {
                c->nb_opening = 0;
                c->broken = 1;
                return -1;
            }
            {
                int done;
                st = open_next_phase(c, &done);
                if (done) {
                    err->code = 0;
                    return 0;
                }
            }
            break;
        case SC_NB_RESET:
            if (c->nb_ret != 0)
                return nb_fail(c, err);
            c->unclean = 0;
            c->session_reset = 1;
            c->nb_opening = 0; /* open_next_phase starts at the init_command */
            {
                int done;
                st = open_next_phase(c, &done);
                if (done) {
                    c->nb_step = SC_NB_NONE;
                    err->code = 0;
                    return 0;
                }
            }
            break;
        case SC_NB_FETCH:
            c->nb_step = SC_NB_NONE;
            if (c->nb_row != NULL) {
                c->ahead = 1;
                c->ahead_row = c->nb_row;
                c->ahead_lens = mysql_fetch_lengths(c->pending);
            } else {
                c->ahead = 2; /* sc_conn_stream_next tells the end from an error */
                if (mysql_errno(c->my) == 0 && mysql_more_results(c->my)) {
                    /* a CALL's set ended: its next result's header too,
                     * where the blocking mysql_next_result would wait */
                    c->nb_step = SC_NB_FETCH_NEXT;
                    st = mysql_next_result_start(&c->nb_ret, c->my);
                    break;
                }
            }
            err->code = 0;
            return 0;
        case SC_NB_FETCH_NEXT:
            if (c->nb_ret > 0) {
                c->nb_step = SC_NB_NONE;
                c->ahead_next = 2; /* sc_conn_stream_next reports it */
                err->code = 0;
                return 0;
            }
            if (mysql_field_count(c->my) == 0 && mysql_more_results(c->my)) {
                /* a result without rows (a statement of the procedure
                 * that returns none): on to the next one */
                st = mysql_next_result_start(&c->nb_ret, c->my);
                break;
            }
            c->nb_step = SC_NB_NONE;
            c->ahead_next = 1;
            err->code = 0;
            return 0;
        case SC_NB_PING:
            c->nb_step = SC_NB_NONE;
            if (c->nb_ret != 0) {
                fail(c, err);
                c->broken = 1;
                return -1;
            }
            err->code = 0;
            return 0;
        default:
            err->code = 0;
            return 0;
        }
    }
    return st;
}

int sc_conn_nb_query(sc_conn *c, const char *sql, size_t len, int end, sc_error *err)
{
    if (nb_ready(c, err) != 0)
        return -1;
    c->pristine = 0;
    c->nb_end = end;
    c->nb_step = SC_NB_QUERY;
    return nb_advance(c, mysql_real_query_start(&c->nb_ret, c->my, sql, (unsigned long)len), err);
}

int sc_conn_nb_fetch(sc_conn *c, sc_error *err)
{
    err->code = 0;
    if (c->pending == NULL || c->ahead)
        return 0; /* nothing to read, or read already */
    if (foreign(c, err))
        return -1;
    if (sc_conn_nb_enable(c) != 0)
        return 0; /* the reader's blocking fetch will do */
    c->nb_step = SC_NB_FETCH;
    return nb_advance(c, mysql_fetch_row_start(&c->nb_row, c->pending), err);
}

int sc_conn_nb_reset(sc_conn *c, sc_error *err)
{
    if (c->broken) {
        err->code = 0;
        return -1; /* discard it */
    }
    if (c->pristine) {
        err->code = 0;
        return 0; /* nothing ran since connect or the last reset */
    }
    if (nb_ready(c, err) != 0)
        return -1;
    c->nb_step = SC_NB_RESET;
    return nb_advance(c, mysql_reset_connection_start(&c->nb_ret, c->my), err);
}

int sc_conn_nb_ping(sc_conn *c, sc_error *err)
{
    if (nb_ready(c, err) != 0)
        return -1;
    c->nb_step = SC_NB_PING;
    return nb_advance(c, mysql_ping_start(&c->nb_ret, c->my), err);
}

sc_conn *sc_conn_nb_open(const sc_url *url, const sc_conn_settings *settings, int *st,
                         sc_error *err)
{
    const char *const *tls = (const char *const *)url->params;
    const char *mode = tls[SC_URL_SSL_MODE];
    if ((mode && strcmp(mode, "DISABLED") != 0) || tls[SC_URL_SSL_CA] || tls[SC_URL_SSL_CERT] ||
        tls[SC_URL_SSL_KEY]) {
        /* TLS: Connector/C 3.3 cannot run its handshake, nor read a TLS
         * record, without blocking (and its blocking calls hang on a large
         * write once the socket was made non-blocking): such a connection
         * is opened, and used, the blocking way (c->tls) */
        sc_conn *c = sc_conn_open(url, settings, err);
        *st = c != NULL ? 0 : -1;
        return c;
    }
    sc_conn *c = open_prepare(url, settings, 1, err);
    if (c == NULL) {
        *st = -1;
        return NULL;
    }
    const char *const *prm = (const char *const *)url->params;
    c->nb_opening = 1;
    c->nb_step = SC_NB_CONNECT;
    *st = nb_advance(c, mysql_real_connect_start(&c->nb_my, c->my, url->host,
                                                 url->username ? url->username : "root",
                                                 url->password, url->database, (unsigned)url->port,
                                                 prm[SC_URL_UNIX_SOCKET], OPEN_FLAGS),
                     err);
    return c;
}

int sc_conn_nb_cont(sc_conn *c, int ready, sc_error *err)
{
    int st;
    switch (c->nb_step) {
    case SC_NB_QUERY:
        st = mysql_real_query_cont(&c->nb_ret, c->my, ready);
        break;
    case SC_NB_STORE:
        st = mysql_store_result_cont(&c->nb_res, c->my, ready);
        break;
    case SC_NB_NEXT:
        st = mysql_next_result_cont(&c->nb_ret, c->my, ready);
        break;
    case SC_NB_PING:
        st = mysql_ping_cont(&c->nb_ret, c->my, ready);
        break;
    case SC_NB_CONNECT:
        st = mysql_real_connect_cont(&c->nb_my, c->my, ready);
        break;
    case SC_NB_RESET:
        st = mysql_reset_connection_cont(&c->nb_ret, c->my, ready);
        break;
    case SC_NB_FETCH:
        st = mysql_fetch_row_cont(&c->nb_row, c->pending, ready);
        break;
    case SC_NB_FETCH_NEXT:
        st = mysql_next_result_cont(&c->nb_ret, c->my, ready);
        break;
    default:
        err->code = 0;
        return 0;
    }
    return nb_advance(c, st, err);
}

void sc_conn_nb_abandon(sc_conn *c)
{
    if (c->nb_step == SC_NB_NONE)
        return;
    /* Shut the socket down: each read or write of the suspended call then
     * fails at once, and run to its end it frees what it holds (a half-read
     * result). Bounded: a call that would still wait is left suspended,
     * and mysql_close frees its context. */
    int fd = (int)mysql_get_socket(c->my);
    if (fd >= 0)
        shutdown(fd, SHUT_RDWR);
    sc_error ignored;
    for (int i = 0; i < 64 && c->nb_step != SC_NB_NONE; i++) {
        if (sc_conn_nb_cont(c, SC_WAIT_READ | SC_WAIT_WRITE, &ignored) <= 0)
            break;
    }
    if (c->nb_res != NULL) {
        mysql_free_result(c->nb_res);
        c->nb_res = NULL;
    }
    c->nb_step = SC_NB_NONE;
    stored_clear(c);
    c->unclean = 1;
    if (!c->broken) {
        c->broken = 1;
        c->gone.code = 2013; /* CR_SERVER_LOST */
        strcpy(c->gone.sqlstate, "HY000");
        snprintf(c->gone.message, sizeof c->gone.message,
                 "statement abandoned while waiting for the server (its waiter raised or went away)");
    }
}

int sc_conn_kill(const sc_url *url, unsigned long thread_id, sc_error *err)
{
    sc_conn *side = sc_conn_open(url, NULL, err);
    if (side == NULL)
        return -1;
    char sql[48];
    int n = snprintf(sql, sizeof sql, "KILL CONNECTION %lu", thread_id);
    int rc = sc_conn_query(side, sql, (size_t)n, err);
    sc_conn_close(side);
    return rc;
}

int sc_conn_needs_end(const sc_conn *c)
{
    return c->unclean || c->pending != NULL || (c->my->server_status & SERVER_STATUS_IN_TRANS) != 0;
}

int sc_conn_autocommit(const sc_conn *c)
{
    return (c->my->server_status & SERVER_STATUS_AUTOCOMMIT) != 0;
}

int sc_conn_end(sc_conn *c, int commit, sc_error *err)
{
    if (!commit && !sc_conn_needs_end(c))
        return 0;
    if (sc_conn_query(c, commit ? "COMMIT" : "ROLLBACK", commit ? 6 : 8, err) != 0)
        return -1;
    /* the OK packet of our own COMMIT/ROLLBACK: whatever failed before is
     * over with the transaction */
    c->unclean = 0;
    if (commit && c->settings.track_gtid)
        read_last_gtid(c);
    return 0;
}

/* COM_RESET_CONNECTION, then what connect set up: the server forgets the
 * session (transaction, temporary tables, user variables, locks, session
 * variables) but not the connection's character set; autocommit,
 * isolation level and init_command are ours to apply again. */
static int reset_session(sc_conn *c, sc_error *err)
{
    sc_conn_drop_pending(c);
    if (mysql_reset_connection(c->my) != 0)
        return fail(c, err);
    c->unclean = 0;
    c->session_reset = 1;
    if (c->init_command && sc_conn_query(c, c->init_command, strlen(c->init_command), err) != 0)
        return -1;
    /* init_command may return rows: read them so the connection is in sync */
    for (;;) {
        MYSQL_RES *res = sc_conn_use_result(c, err);
        if (res != NULL) {
            while (mysql_fetch_row(res) != NULL) {
            }
            mysql_free_result(res);
        }
        if (err->code != 0 || sc_conn_fetch_error(c, err) != 0)
            return -1;
        int more = sc_conn_next_result(c, err);
        if (more < 0)
            return -1;
        if (more == 0)
            break;
    }
    if (sc_conn_charset(c) == SC_CS_UNSAFE) {
        sc_conn_refuse_charset(c, err);
        return -1;
    }
    return apply_settings(c, err);
}

int sc_conn_reset(sc_conn *c, int mode, sc_error *err)
{
    if (c->broken || foreign(c, err))
        return -1; /* discard it */
    err->code = 0;
    if (mode == SC_RESET_CONNECTION)
        return c->pristine ? 0 : reset_session(c, err);
    if (mode != SC_RESET_NONE && sc_conn_needs_end(c) &&
        sc_conn_end(c, mode == SC_RESET_COMMIT, err) != 0)
        return -1;
    /* a SET autocommit by the last user. The last reply's status is current
     * when nothing failed since (always so after the ROLLBACK/COMMIT above;
     * SC_RESET_NONE may leave an error standing, and then the connection is
     * left as its user left it, as that mode promises) */
    int want = c->settings.autocommit;
    if (want >= 0 && !c->unclean && sc_conn_autocommit(c) != want &&
        sc_conn_set_autocommit(c, want, err) != 0)
        return -1;
    return 0;
}

int sc_conn_charset(sc_conn *c)
{
    const char *name = mysql_character_set_name(c->my);
    if (name != c->csname) {
        c->csname = name;
        c->cs = sc_charset_class(name);
    }
    return c->cs;
}

void sc_conn_refuse_charset(sc_conn *c, sc_error *err)
{
    charset_error(err, c->csname, " (the connection's, after SET NAMES or SET character_set_client)");
    if (!c->broken) {
        c->broken = 1;
        c->gone = *err;
    }
}

/* Whether the comma-separated list holds the word w. */
static int has_word(const char *list, const char *w)
{
    size_t n = strlen(w);
    const char *p = list;
    for (;;) {
        if (strncmp(p, w, n) == 0 && (p[n] == ',' || p[n] == '\0'))
            return 1;
        p = strchr(p, ',');
        if (p == NULL)
            return 0;
        p++;
    }
}

const char SC_LEX_MODE_QUERY[] = "SELECT @@SESSION.sql_mode, @@SESSION.character_set_client";

/* The lexer mode before asking: what the connection's own charset says. */
static int lex_mode_start(sc_conn *c, sc_lex_mode *m, sc_error *err)
{
    int cs = sc_conn_charset(c);
    memset(m, 0, sizeof *m);
    if (cs == SC_CS_UNSAFE) {
        sc_conn_refuse_charset(c, err);
        return -1;
    }
    m->latin1 = cs == SC_CS_LATIN1;
    m->server_version = c->server_version;
    return 0;
}

int sc_conn_lex_mode_from(sc_conn *c, MYSQL_RES *res, sc_lex_mode *m, sc_error *err)
{
    if (lex_mode_start(c, m, err) != 0) {
        if (res != NULL)
            mysql_free_result(res);
        return -1;
    }
    if (res == NULL)
        return fail(c, err);
    MYSQL_ROW row = mysql_fetch_row(res);
    int unsafe = 0;
    if (row != NULL && row[0] != NULL) {
        m->no_backslash = has_word(row[0], "NO_BACKSLASH_ESCAPES");
        m->ansi_quotes = has_word(row[0], "ANSI_QUOTES");
    }
    if (row != NULL && row[1] != NULL) {
        int scs = sc_charset_class(row[1]);
        m->latin1 = scs == SC_CS_LATIN1; /* the server lexes in its own charset */
        if (scs == SC_CS_UNSAFE) {
            unsafe = 1;
            charset_error(err, row[1], " (the server's character_set_client, which ignores the client's)");
        }
    }
    mysql_free_result(res);
    if (unsafe) {
        if (!c->broken) {
            c->broken = 1;
            c->gone = *err;
        }
        return -1;
    }
    return 0;
}

int sc_conn_ask_lex_mode(sc_conn *c, sc_lex_mode *m, sc_error *err)
{
    if (lex_mode_start(c, m, err) != 0)
        return -1;
    if (sc_conn_query(c, SC_LEX_MODE_QUERY, sizeof SC_LEX_MODE_QUERY - 1, err) != 0)
        return -1;
    return sc_conn_lex_mode_from(c, mysql_store_result(c->my), m, err);
}

int sc_is_disconnect(unsigned code)
{
    switch (code) {
    case 1927: /* ER_CONNECTION_KILLED */
    case 2006: /* CR_SERVER_GONE_ERROR */
    case 2013: /* CR_SERVER_LOST */
    case 2014: /* CR_COMMANDS_OUT_OF_SYNC: the protocol state is unknown */
    case 2045: /* CR_CONN_UNKNOW_PROTOCOL */
    case 2055: /* CR_SERVER_LOST_EXTENDED */
    case 4031: /* ER_CLIENT_INTERACTION_TIMEOUT */
    case 1053: /* ER_SERVER_SHUTDOWN */
        return 1;
    default:
        return 0;
    }
}

const char *sc_error_hidden_text(unsigned code)
{
    switch (code) {
    case 1062: /* ER_DUP_ENTRY: Duplicate entry '%s' for key '%s' */
    case 1586: /* ER_DUP_ENTRY_WITH_KEY_NAME */
        return "Duplicate entry for a unique key (the value is hidden: hide_parameters)";
    case 1064: /* ER_PARSE_ERROR: ... near '%s' at line %d */
    case 1149: /* ER_SYNTAX_ERROR */
        return "You have an error in your SQL syntax (the text near it is hidden: hide_parameters)";
    case 1264: /* ER_WARN_DATA_OUT_OF_RANGE */
    case 1690: /* ER_DATA_OUT_OF_RANGE: %s value is out of range in '%s' */
        return "Out of range value (the value is hidden: hide_parameters)";
    case 1265: /* WARN_DATA_TRUNCATED */
    case 1406: /* ER_DATA_TOO_LONG */
        return "Data too long or truncated for a column (the value is hidden: hide_parameters)";
    case 1292: /* ER_TRUNCATED_WRONG_VALUE: Truncated incorrect %s value: '%s' */
    case 1366: /* ER_TRUNCATED_WRONG_VALUE_FOR_FIELD: Incorrect %s value: '%s' for column ... */
    case 1367: /* ER_ILLEGAL_VALUE_FOR_TYPE */
    case 1411: /* ER_WRONG_VALUE_FOR_TYPE */
    case 1525: /* ER_WRONG_VALUE */
    case 1300: /* ER_INVALID_CHARACTER_STRING */
    case 1918: /* ER_BAD_DATA: Encountered illegal value '%s' when converting to %s */
        return "Incorrect value for its type (the value is hidden: hide_parameters)";
    case 1451: /* ER_ROW_IS_REFERENCED_2 */
    case 1452: /* ER_NO_REFERENCED_ROW_2 */
        return "A foreign key constraint fails (the value is hidden: hide_parameters)";
    default:
        return NULL;
    }
}

/* The DB-API class mysqlclient (MySQLdb) raises for an error, which is the
 * kind SQLAlchemy raises: mysqlclient 1.4.6 built against MariaDB
 * Connector/C (Debian 12's python3-mysqldb) lists these codes and maps every
 * other one by range alone: below 1000 InternalError, else OperationalError
 * (client errors included). It never looks at the SQLSTATE. The list is
 * the numbers that build compiled in (its ER_* names are MariaDB's), found
 * by raising each code 1-65535 through it (SIGNAL ... SET MYSQL_ERRNO) and
 * checked by spec/error_kinds_spec.lua; 0 (no server error) is an
 * InterfaceError there as here. */
const char *sc_error_kind(unsigned code)
{
    switch (code) {
    case 0:
        return "InterfaceError";
    case 1062: /* ER_DUP_ENTRY */
    case 1169: /* ER_DUP_UNIQUE */
    case 1215: /* ER_CANNOT_ADD_FOREIGN */
    case 1216: /* ER_NO_REFERENCED_ROW */
    case 1217: /* ER_ROW_IS_REFERENCED */
    case 1364: /* ER_NO_DEFAULT_FOR_FIELD */
    case 1451: /* ER_ROW_IS_REFERENCED_2 */
    case 1452: /* ER_NO_REFERENCED_ROW_2 */
        return "IntegrityError";
    case 1171: /* ER_PRIMARY_CANT_HAVE_NULL */
    case 1230: /* ER_NO_DEFAULT */
    case 1264: /* ER_WARN_DATA_OUT_OF_RANGE */
    case 1265: /* WARN_DATA_TRUNCATED */
    case 1406: /* ER_DATA_TOO_LONG */
    case 1441: /* ER_DATETIME_FUNCTION_OVERFLOW */
        return "DataError";
    case 1007: /* ER_DB_CREATE_EXISTS */
    case 1064: /* ER_PARSE_ERROR */
    case 1102: /* ER_WRONG_DB_NAME */
    case 1103: /* ER_WRONG_TABLE_NAME */
    case 1110: /* ER_FIELD_SPECIFIED_TWICE */
    case 1111: /* ER_INVALID_GROUP_FUNC_USE */
    case 1112: /* ER_UNSUPPORTED_EXTENSION */
    case 1113: /* ER_TABLE_MUST_HAVE_COLUMNS */
    case 1146: /* ER_NO_SUCH_TABLE */
    case 1149: /* ER_SYNTAX_ERROR */
    case 1179: /* ER_CANT_DO_THIS_DURING_AN_TRANSACTION */
    case 2014: /* CR_COMMANDS_OUT_OF_SYNC */
        return "ProgrammingError";
    case 1196: /* ER_WARNING_NOT_COMPLETE_ROLLBACK */
    case 1235: /* ER_NOT_SUPPORTED_YET */
    case 1286: /* ER_UNKNOWN_STORAGE_ENGINE */
    case 1289: /* ER_FEATURE_DISABLED */
        return "NotSupportedError";
    default:
        return code < 1000 ? "InternalError" : "OperationalError";
    }
}
