#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "connector.h"
#include "hosts.h"

/* What every connection of a pool is opened with. */
typedef struct connect_spec {
    sc_url url;
    sc_conn_settings settings;
    int has_settings; /* 0: the server's defaults (sc_conn_open's NULL) */
    /* which host the next connect goes to, and what each host did
     * (engine:hosts()); with one host, just the counts */
    sc_hosts *hosts;
    /* several hosts, target_session_attrs or galera (issue 21): connects go
     * through open_hosts; 0 for one host and none of them */
    int multi;
} connect_spec;

/* A failed connect that says nothing against the credentials or the
 * request: the host is down, unreachable, hung, overloaded, shutting down
 * or not a usable Galera node, so the next host is tried and this one
 * denied. Client errors (CR_*, 2000..2999) are the network's and the
 * handshake's, except 2059 (an auth plugin that cannot load: ours to fix,
 * the same on every host). Server errors: 1040 too many connections, 1047
 * a Galera node not ready, 1053 shutdown in progress, 1129 host blocked,
 * 1152..1161 aborted connection and packet errors, 1927 connection
 * killed. Anything else (1045 access denied, 1044, 1049 unknown
 * database, 1698, ...) fails the checkout at once, denying nothing. */
static int host_failure(unsigned code)
{
    if (code >= 2000 && code < 3000)
        return code != 2059;
    switch (code) {
    case 1040: case 1047: case 1053: case 1129: case 1927:
        return 1;
    default:
        return code >= 1152 && code <= 1161;
    }
}

/* The role (and for Galera, readiness) of a new connection, in one round
 * trip: @@global.read_only, and wsrep_ready from the status. 0 with *role
 * set, or -1 with err (a failed query: err as the server gave it; wsrep
 * not ready: 1047, as the server gives statements then). */
static int check_server(sc_conn *c, int galera, const char *where, int *role, sc_error *err)
{
    static const char q_ro[] = "SELECT @@global.read_only";
    static const char q_galera[] = "SELECT @@global.read_only, (SELECT VARIABLE_VALUE FROM "
                                   "information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'WSREP_READY')";
    const char *q = galera ? q_galera : q_ro;
    size_t qlen = galera ? sizeof q_galera - 1 : sizeof q_ro - 1;
    MYSQL *my = c->my;
    MYSQL_RES *res = NULL;
    if (mysql_real_query(my, q, (unsigned long)qlen) != 0 || (res = mysql_store_result(my)) == NULL) {
        sc_error_set(err, mysql_errno(my), mysql_sqlstate(my), "%s", mysql_error(my));
        return -1;
    }
    MYSQL_ROW row = mysql_fetch_row(res);
    int ro = row && row[0] && strcmp(row[0], "0") != 0;
    int ready = !galera || (row && row[1] && strcmp(row[1], "ON") == 0);
    mysql_free_result(res);
    /* with autocommit off the SELECT may count as a transaction's start:
     * the connection is handed out as if no statement had run */
    unsigned int status = 0;
    if (mariadb_get_infov(my, MARIADB_CONNECTION_SERVER_STATUS, &status) == 0 &&
        (status & SERVER_STATUS_IN_TRANS))
        mysql_rollback(my);
    if (!ready) {
        sc_error_set(err, 1047, "08S01", "%s: Galera node not ready (wsrep_ready is not ON)", where);
        return -1;
    }
    *role = ro ? SC_ROLE_READ_ONLY : SC_ROLE_READ_WRITE;
    return 0;
}

static void host_name(const sc_url *u, char *out, size_t n)
{
    if (u->host == NULL)
        snprintf(out, n, "localhost");
    else if (strchr(u->host, ':') != NULL)
        snprintf(out, n, "[%.100s]:%d", u->host, u->port ? u->port : 3306);
    else
        snprintf(out, n, "%.100s:%d", u->host, u->port ? u->port : 3306);
}

/* A new connection on host i (counted); a failover when host `failed` (or
 * -1) did not give one in the same connect, or the last one went to a host
 * denied since (sc_hosts_landed). */
static void landed(sc_hosts *hosts, int i, int failed, unsigned failed_code)
{
    sc_hosts_landed(hosts, i, failed, failed_code, sc_monotonic());
    sc_hosts_open_count(hosts, i, 1);
}

/* Several hosts: one attempt per host at most, in the order sc_hosts gives;
 * the last error when none gave a connection of the wanted role. With
 * prefer-read-only a read-write connection is kept aside while the other
 * hosts are tried, and used when no read-only one comes. */
static sc_conn *open_hosts(const sc_url *url, const sc_conn_settings *settings, sc_hosts *hosts, sc_error *err)
{
    int tsa = sc_url_target_session_attrs(url), galera = sc_url_galera(url);
    sc_hosts_try t;
    sc_conn *fallback = NULL;
    int i, failed = -1, fallback_host = -1;
    unsigned failed_code = 0;
    sc_hosts_begin(hosts, &t, tsa == SC_TSA_PREFER_READ_ONLY);
    while ((i = sc_hosts_next(hosts, &t, sc_monotonic())) >= 0) {
        sc_url u = *url; /* a shallow copy: only host and port differ */
        if (url->nhosts > 0) {
            u.host = url->hosts[i].host;
            u.port = url->hosts[i].port;
        }
        char where[128];
        host_name(&u, where, sizeof where);
        sc_conn *c = sc_conn_open(&u, settings, err);
        if (c == NULL) {
            int denied = host_failure(err->code);
            sc_hosts_fail(hosts, i, sc_monotonic(), err->code, denied);
            if (!denied)
                break; /* credentials, database, ...: the same on every host */
            if (failed < 0) {
                failed = i;
                failed_code = err->code;
            }
            continue;
        }
        c->host = i;
        c->galera = galera;
        int role = SC_ROLE_UNKNOWN;
        if (tsa != SC_TSA_ANY || galera) {
            if (check_server(c, galera, where, &role, err) != 0) {
                int denied = host_failure(err->code);
                sc_conn_close(c);
                sc_hosts_fail(hosts, i, sc_monotonic(), err->code, denied);
                if (!denied)
                    break;
                if (failed < 0) {
                    failed = i;
                    failed_code = err->code;
                }
                continue;
            }
            if ((tsa == SC_TSA_READ_WRITE && role != SC_ROLE_READ_WRITE) ||
                (tsa == SC_TSA_READ_ONLY && role != SC_ROLE_READ_ONLY)) {
                sc_hosts_set_role(hosts, i, role);
                sc_hosts_deny(hosts, i, sc_monotonic());
                sc_conn_close(c);
                if (failed < 0)
                    failed = i;
                sc_error_set(err, SC_ERR_CANNOT_CONNECT, "08001", "%s is %s (target_session_attrs=%s)", where,
                             role == SC_ROLE_READ_ONLY ? "read-only" : "read-write",
                             url->params[SC_URL_TARGET_SESSION_ATTRS]);
                continue;
            }
            if (tsa == SC_TSA_PREFER_READ_ONLY && role == SC_ROLE_READ_WRITE) {
                sc_hosts_ok(hosts, i, role);
                if (fallback == NULL) {
                    fallback = c;
                    fallback_host = i;
                } else {
                    sc_conn_close(c);
                }
                continue;
            }
        }
        sc_hosts_ok(hosts, i, role);
        if (fallback != NULL)
            sc_conn_close(fallback);
        landed(hosts, i, failed, failed_code);
        return c;
    }
    if (fallback != NULL) {
        sc_error_clear(err);
        landed(hosts, fallback_host, failed, failed_code);
        return fallback;
    }
    return NULL;
}

sc_conn *sc_conn_open_any(const sc_url *url, const sc_conn_settings *settings, sc_error *err)
{
    if (url->nhosts == 0 && sc_url_target_session_attrs(url) == SC_TSA_ANY && !sc_url_galera(url))
        return sc_conn_open(url, settings, err);
    sc_hosts *hosts = sc_hosts_new(url->nhosts > 0 ? url->nhosts : 1, sc_url_ha_mode(url), 0);
    if (hosts == NULL) {
        sc_error_set(err, SC_ERR_CANNOT_CONNECT, "HY000", "out of memory");
        return NULL;
    }
    sc_conn *c = open_hosts(url, settings, hosts, err);
    sc_hosts_free(hosts);
    return c;
}

/* The pool's errors are sc_conn_open's own (error.h): nothing to translate. */
static void *mysql_open(void *ud, sc_error *err)
{
    connect_spec *spec = ud;
    if (spec->multi)
        return open_hosts(&spec->url, spec->has_settings ? &spec->settings : NULL, spec->hosts, err);
    sc_conn *c = sc_conn_open(&spec->url, spec->has_settings ? &spec->settings : NULL, err);
    if (c != NULL)
        landed(spec->hosts, 0, -1, 0);
    else
        sc_hosts_fail(spec->hosts, 0, 0, err->code, 0);
    return c;
}

/* The non-blocking open (io_wait). Several hosts, a target role or Galera
 * go through open_hosts, blocking: its loop over the hosts, their denials
 * and the role check are not resumable yet (README, "Several servers"). */
static void *mysql_open_nb(void *ud, int *st, sc_error *err)
{
    connect_spec *spec = ud;
    if (spec->multi) {
        sc_conn *c = open_hosts(&spec->url, spec->has_settings ? &spec->settings : NULL, spec->hosts, err);
        *st = c != NULL ? 0 : -1;
        return c;
    }
    /* counted as a connect when it starts (its end is the driver's) */
    sc_conn *c = sc_conn_nb_open(&spec->url, spec->has_settings ? &spec->settings : NULL, st, err);
    if (c != NULL)
        landed(spec->hosts, 0, -1, 0);
    else
        sc_hosts_fail(spec->hosts, 0, 0, err->code, 0);
    return c;
}

static void mysql_close_cb(void *ud, void *conn)
{
    connect_spec *spec = ud;
    sc_hosts_open_count(spec->hosts, ((sc_conn *)conn)->host, -1);
    sc_conn_close(conn);
}

static void mysql_discard_cb(void *ud, void *conn)
{
    connect_spec *spec = ud;
    sc_hosts_open_count(spec->hosts, ((sc_conn *)conn)->host, -1);
    sc_conn_discard(conn);
}

static int mysql_ping_cb(void *ud, void *conn)
{
    (void)ud;
    return sc_conn_ping(conn);
}

/* a disconnect error was seen on it (sc_is_disconnect), not a user's invalidate() */
static int mysql_broken_cb(void *ud, void *conn)
{
    (void)ud;
    return ((sc_conn *)conn)->broken;
}

/* Several hosts: a connection given back broken (see mysql_broken_cb)
 * takes its host down with it when what broke it says the server is gone
 * (lost, gone away, shutting down; on Galera a statement's 1047, node not
 * ready): the host is denied. A connection killed on its own (1927 KILL,
 * 4031 idle timeout) or a protocol error (2014, 2045) says nothing of the
 * host and denies nothing. Either way the failure is counted, and only
 * that host's connections are invalidated (the pool's business). */
static int host_gone(unsigned code, int galera)
{
    switch (code) {
    case 1053: case 2006: case 2013: case 2055:
        return 1;
    case 1047:
        return galera;
    default:
        return 0;
    }
}

static int mysql_host_down_cb(void *ud, void *conn)
{
    connect_spec *spec = ud;
    sc_conn *c = conn;
    if (sc_hosts_count(spec->hosts) == 1) {
        /* one host: counted; the whole pool goes, as it always did */
        sc_hosts_fail(spec->hosts, 0, 0, c->gone.code, 0);
        return -1;
    }
    sc_hosts_fail(spec->hosts, c->host, sc_monotonic(), c->gone.code, host_gone(c->gone.code, c->galera));
    return c->host;
}

static int mysql_host_of_cb(void *ud, void *conn)
{
    (void)ud;
    return ((sc_conn *)conn)->host;
}

/* Sequential fail-back: an idle connection on a later host than a new
 * connect would choose is replaced at checkout (as pool_recycle would). */
static int mysql_retire_cb(void *ud, void *conn)
{
    connect_spec *spec = ud;
    int i = ((sc_conn *)conn)->host;
    if (i == 0)
        return 0;
    return sc_hosts_failback(spec->hosts, i, sc_url_target_session_attrs(&spec->url), sc_monotonic());
}

sc_hosts *sc_mysql_connector_hosts(void *ud, const sc_url **url)
{
    connect_spec *spec = ud;
    if (url != NULL)
        *url = &spec->url;
    return spec->hosts;
}

/* KILL CONNECTION through a connection of its own, with the pool's URL and
 * the server's defaults; a failure leaves the statement running on the
 * server (the connection is discarded all the same). */
static void mysql_kill_cb(void *ud, void *conn)
{
    connect_spec *spec = ud;
    sc_error err;
    sc_url u = spec->url;
    MYSQL *my = ((sc_conn *)conn)->my;
    if (spec->url.nhosts > 0) {
        /* the host that connection is on (a shallow copy: host and port) */
        const char *host = NULL;
        unsigned int port = 0;
        if (mariadb_get_infov(my, MARIADB_CONNECTION_HOST, &host) == 0 && host != NULL &&
            mariadb_get_infov(my, MARIADB_CONNECTION_PORT, &port) == 0) {
            u.host = (char *)host;
            u.port = (int)port;
        }
    }
    sc_conn_kill(&u, mysql_thread_id(my), &err);
}

static void spec_free_cb(void *ud)
{
    connect_spec *spec = ud;
    sc_url_free(&spec->url);
    sc_hosts_free(spec->hosts);
    free(spec);
}

static int url_hosts(const sc_url *u)
{
    return u->nhosts > 0 ? u->nhosts : 1;
}

int sc_mysql_connector(sc_url *url, const sc_conn_settings *settings, sc_connector *out)
{
    connect_spec *spec = calloc(1, sizeof *spec);
    if (spec == NULL)
        return -1;
    spec->multi = url->nhosts > 0 || sc_url_target_session_attrs(url) != SC_TSA_ANY || sc_url_galera(url);
    spec->hosts = sc_hosts_new(url->nhosts > 0 ? url->nhosts : 1, sc_url_ha_mode(url),
                               spec->multi ? (double)sc_url_deny_timeout(url) : 0);
    if (spec->hosts == NULL) {
        free(spec);
        return -1;
    }
    spec->url = *url;
    memset(url, 0, sizeof *url);
    if (settings != NULL) {
        spec->settings = *settings;
        spec->has_settings = 1;
    }
    memset(out, 0, sizeof *out);
    out->open = mysql_open;
    out->close = mysql_close_cb;
    out->discard = mysql_discard_cb;
    out->ping = mysql_ping_cb;
    out->free_ud = spec_free_cb;
    out->ud = spec;
    out->broken = mysql_broken_cb;
    out->kill = mysql_kill_cb;
    out->open_nb = mysql_open_nb;
    out->host_down = mysql_host_down_cb;
    if (url_hosts(&spec->url) > 1) {
        /* one pool per host: a disconnect invalidates its host's
         * connections only; idle ones fail back (sequential) */
        out->host_of = mysql_host_of_cb;
        out->retire = mysql_retire_cb;
    }
    return 0;
}
