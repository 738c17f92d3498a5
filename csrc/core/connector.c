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

/* The role (and for Galera, readiness) check of a new connection, in one
 * round trip: @@global.read_only, and wsrep_ready from the status. The
 * blocking loop sends it with mysql_real_query, the non-blocking one with
 * sc_conn_nb_query; check_reply reads the answer either way. */
static const char q_ro[] = "SELECT @@global.read_only";
static const char q_galera[] = "SELECT @@global.read_only, (SELECT VARIABLE_VALUE FROM "
                               "information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'WSREP_READY')";

static const char *check_query(int galera, unsigned long *len)
{
    *len = galera ? sizeof q_galera - 1 : sizeof q_ro - 1;
    return galera ? q_galera : q_ro;
}

/* The check's reply (res, freed here; NULL: it could not be read, err
 * filled): 0 with *role set and *in_trans telling whether the SELECT began
 * a transaction (autocommit off: the caller rolls it back, so that the
 * connection is handed out as if no statement had run), or -1 with err
 * (wsrep not ready: 1047, as the server gives statements then). */
static int check_reply(sc_conn *c, MYSQL_RES *res, int galera, const char *where, int *role,
                       int *in_trans, sc_error *err)
{
    if (res == NULL)
        return -1;
    MYSQL_ROW row = mysql_fetch_row(res);
    int ro = row && row[0] && strcmp(row[0], "0") != 0;
    int ready = !galera || (row && row[1] && strcmp(row[1], "ON") == 0);
    mysql_free_result(res);
    unsigned int status = 0;
    *in_trans = mariadb_get_infov(c->my, MARIADB_CONNECTION_SERVER_STATUS, &status) == 0 &&
                (status & SERVER_STATUS_IN_TRANS);
    if (!ready) {
        sc_error_set(err, 1047, "08S01", "%s: Galera node not ready (wsrep_ready is not ON)", where);
        return -1;
    }
    *role = ro ? SC_ROLE_READ_ONLY : SC_ROLE_READ_WRITE;
    return 0;
}

/* The check, blocking. 0 with *role set, or -1 with err. */
static int check_server(sc_conn *c, int galera, const char *where, int *role, sc_error *err)
{
    unsigned long qlen;
    const char *q = check_query(galera, &qlen);
    MYSQL *my = c->my;
    MYSQL_RES *res = NULL;
    int in_trans = 0;
    if (mysql_real_query(my, q, qlen) != 0 || (res = mysql_store_result(my)) == NULL) {
        sc_error_set(err, mysql_errno(my), mysql_sqlstate(my), "%s", mysql_error(my));
        return -1;
    }
    if (check_reply(c, res, galera, where, role, &in_trans, err) != 0)
        return -1;
    if (in_trans && mysql_rollback(my) != 0) {
        sc_error_set(err, mysql_errno(my), mysql_sqlstate(my), "%s", mysql_error(my));
        return -1;
    }
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

/* ---- the host loop -----------------------------------------------------------
 *
 * Several hosts: one attempt per host at most, in the order sc_hosts gives;
 * the last error when none gave a connection of the wanted role. With
 * prefer-read-only a read-write connection is kept aside while the other
 * hosts are tried, and used when no read-only one comes. The rules live in
 * the steps below (ho_next, ho_opened, ho_checked, ho_end), and two drivers
 * run them: open_hosts blocks (sc_conn_open, check_server), ho_run goes
 * through the non-blocking driver (sc_conn_nb_open, sc_conn_nb_query) and
 * stops wherever a socket must be waited for (an engine with io_wait). */
typedef struct hosts_open {
    const sc_url *url;
    const sc_conn_settings *settings;
    sc_hosts *hosts;
    int tsa, galera;
    sc_hosts_try t;
    int i;                 /* the host being tried */
    sc_url u;              /* url with that host's host and port (a shallow copy) */
    char where[128];       /* its name, for errors */
    int failed;            /* the first host that failed in this loop, -1 none */
    unsigned failed_code;
    sc_conn *fallback;     /* prefer-read-only: a read-write connection kept aside */
    int fallback_host;
    /* ho_run only */
    int phase;             /* HO_PH_* */
    int role;              /* the role checked, while its ROLLBACK runs */
    int pristine;          /* the connection's pristine before the check */
} hosts_open;

/* What a step makes of the loop. */
enum { HO_NEXT, HO_STOP, HO_CHECK, HO_LANDED };
/* Where ho_run is. */
enum { HO_PH_CONNECT, HO_PH_CHECK, HO_PH_ROLLBACK };

static void ho_begin(hosts_open *o, const sc_url *url, const sc_conn_settings *settings, sc_hosts *hosts)
{
    memset(o, 0, sizeof *o);
    o->url = url;
    o->settings = settings;
    o->hosts = hosts;
    o->tsa = sc_url_target_session_attrs(url);
    o->galera = sc_url_galera(url);
    o->failed = -1;
    o->fallback_host = -1;
    sc_hosts_begin(hosts, &o->t, o->tsa == SC_TSA_PREFER_READ_ONLY);
}

/* The next host to try (o->i, o->u, o->where): 0, or -1 when each has had
 * its attempt. */
static int ho_next(hosts_open *o)
{
    if ((o->i = sc_hosts_next(o->hosts, &o->t, sc_monotonic())) < 0)
        return -1;
    o->u = *o->url;
    if (o->url->nhosts > 0) {
        o->u.host = o->url->hosts[o->i].host;
        o->u.port = o->url->hosts[o->i].port;
    }
    host_name(&o->u, o->where, sizeof o->where);
    return 0;
}

/* Host o->i failed with err: counted, and denied when err says nothing
 * against the credentials or the request (host_failure). */
static int ho_failed(hosts_open *o, const sc_error *err)
{
    int denied = host_failure(err->code);
    sc_hosts_fail(o->hosts, o->i, sc_monotonic(), err->code, denied);
    if (!denied)
        return HO_STOP; /* credentials, database, ...: the same on every host */
    if (o->failed < 0) {
        o->failed = o->i;
        o->failed_code = err->code;
    }
    return HO_NEXT;
}

static int ho_land(hosts_open *o, int role)
{
    sc_hosts_ok(o->hosts, o->i, role);
    if (o->fallback != NULL) {
        sc_conn_close(o->fallback);
        o->fallback = NULL;
    }
    landed(o->hosts, o->i, o->failed, o->failed_code);
    return HO_LANDED;
}

/* The connect to host o->i gave c (NULL: failed, err filled). HO_CHECK:
 * run the role check on c, then ho_checked. */
static int ho_opened(hosts_open *o, sc_conn *c, const sc_error *err)
{
    if (c == NULL)
        return ho_failed(o, err);
    c->host = o->i;
    c->galera = o->galera;
    if (o->tsa != SC_TSA_ANY || o->galera)
        return HO_CHECK;
    return ho_land(o, SC_ROLE_UNKNOWN);
}

/* The role check on c gave rc (0 with role, or -1 with err). c is closed
 * unless it lands (HO_LANDED) or is kept aside (prefer-read-only). */
static int ho_checked(hosts_open *o, sc_conn *c, int rc, int role, sc_error *err)
{
    if (rc != 0) {
        sc_conn_close(c);
        return ho_failed(o, err);
    }
    if ((o->tsa == SC_TSA_READ_WRITE && role != SC_ROLE_READ_WRITE) ||
        (o->tsa == SC_TSA_READ_ONLY && role != SC_ROLE_READ_ONLY)) {
        sc_hosts_set_role(o->hosts, o->i, role);
        sc_hosts_deny(o->hosts, o->i, sc_monotonic());
        sc_conn_close(c);
        if (o->failed < 0)
            o->failed = o->i;
        sc_error_set(err, SC_ERR_CANNOT_CONNECT, "08001", "%s is %s (target_session_attrs=%s)", o->where,
                     role == SC_ROLE_READ_ONLY ? "read-only" : "read-write",
                     o->url->params[SC_URL_TARGET_SESSION_ATTRS]);
        return HO_NEXT;
    }
    if (o->tsa == SC_TSA_PREFER_READ_ONLY && role == SC_ROLE_READ_WRITE) {
        sc_hosts_ok(o->hosts, o->i, role);
        if (o->fallback == NULL) {
            o->fallback = c;
            o->fallback_host = o->i;
        } else {
            sc_conn_close(c);
        }
        return HO_NEXT;
    }
    return ho_land(o, role);
}

/* No host left to try, or a failure that stops the loop: the connection
 * kept aside (prefer-read-only), or NULL with err as the last host left it. */
static sc_conn *ho_end(hosts_open *o, sc_error *err)
{
    sc_conn *c = o->fallback;
    if (c != NULL) {
        o->fallback = NULL;
        sc_error_clear(err);
        landed(o->hosts, o->fallback_host, o->failed, o->failed_code);
    }
    return c;
}

/* The blocking driver. */
static sc_conn *open_hosts(const sc_url *url, const sc_conn_settings *settings, sc_hosts *hosts, sc_error *err)
{
    hosts_open o;
    ho_begin(&o, url, settings, hosts);
    while (ho_next(&o) == 0) {
        sc_conn *c = sc_conn_open(&o.u, settings, err);
        int r = ho_opened(&o, c, err);
        if (r == HO_CHECK) {
            int role = SC_ROLE_UNKNOWN;
            int rc = check_server(c, o.galera, o.where, &role, err);
            r = ho_checked(&o, c, rc, role, err);
        }
        if (r == HO_LANDED)
            return c;
        if (r == HO_STOP)
            break;
    }
    return ho_end(&o, err);
}

/* The non-blocking driver: goes on from st (what the last non-blocking
 * call on *cp returned, *cp NULL when a connect could not even start) until
 * a wait (returns its events, *cp the connection to wait on, which holds o
 * in its opener), the end (0: *cp the connection, landed; -1: NULL, err
 * filled). o is freed at the end. */
static int ho_run(hosts_open *o, sc_conn **cp, int st, sc_error *err)
{
    sc_conn *c = *cp;
    for (;;) {
        if (st > 0) {
            c->opener = o;
            *cp = c;
            return st;
        }
        if (c != NULL)
            c->opener = NULL;
        int r;
        if (o->phase == HO_PH_CONNECT) {
            if (st < 0 && c != NULL) {
                sc_conn_close(c);
                c = NULL;
            }
            r = ho_opened(o, c, err);
            if (r == HO_CHECK) {
                unsigned long qlen;
                const char *q = check_query(o->galera, &qlen);
                o->phase = HO_PH_CHECK;
                o->pristine = c->pristine;
                st = sc_conn_nb_query(c, q, qlen, 0, err);
                continue;
            }
        } else if (o->phase == HO_PH_CHECK) {
            int role = SC_ROLE_UNKNOWN, in_trans = 0, rc = -1;
            if (st == 0) {
                MYSQL_RES *res = sc_conn_use_result(c, err);
                sc_error ignored;
                sc_conn_next_result(c, &ignored); /* the end of the replayed reply */
                if (res == NULL && err->code == 0)
                    sc_error_set(err, SC_ERR_CANNOT_CONNECT, "HY000", "%s: no reply to the role check", o->where);
                rc = check_reply(c, res, o->galera, o->where, &role, &in_trans, err);
            }
            if (rc == 0 && in_trans) {
                o->phase = HO_PH_ROLLBACK;
                o->role = role;
                st = sc_conn_nb_query(c, "ROLLBACK", 8, 1, err);
                continue;
            }
            if (rc == 0)
                c->pristine = o->pristine;
            r = ho_checked(o, c, rc, role, err);
        } else {
            if (st == 0)
                c->pristine = o->pristine;
            r = ho_checked(o, c, st == 0 ? 0 : -1, o->role, err);
        }
        if (r == HO_LANDED) {
            free(o);
            *cp = c;
            return 0;
        }
        if (r == HO_STOP || ho_next(o) != 0) {
            c = ho_end(o, err);
            free(o);
            *cp = c;
            return c != NULL ? 0 : -1;
        }
        o->phase = HO_PH_CONNECT;
        c = sc_conn_nb_open(&o->u, o->settings, &st, err);
    }
}

/* Gives up a non-blocking host loop in flight on c (its waiter raised or
 * went away): c and any connection kept aside are closed, nothing counted. */
static void ho_abandon(sc_conn *c)
{
    hosts_open *o = c->opener;
    c->opener = NULL;
    if (o != NULL) {
        sc_conn_close(o->fallback);
        free(o);
    }
    sc_conn_close(c);
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

/* The non-blocking open (io_wait): sc_conn_nb_open, or with several hosts,
 * a target role or Galera the host loop (ho_run), through the non-blocking
 * driver either way. Returns the connection to wait on with *st as
 * sc_conn_nb_open's, or NULL with *st -1 (nothing left to free); counted
 * when it ends (mysql_open_cont). */
static void *mysql_open_nb(void *ud, int *st, sc_error *err)
{
    connect_spec *spec = ud;
    const sc_conn_settings *settings = spec->has_settings ? &spec->settings : NULL;
    sc_conn *c;
    if (spec->multi) {
        hosts_open *o = malloc(sizeof *o);
        if (o == NULL) {
            sc_error_set(err, SC_ERR_CANNOT_CONNECT, "HY000", "out of memory");
            *st = -1;
            return NULL;
        }
        ho_begin(o, &spec->url, settings, spec->hosts);
        if (ho_next(o) != 0) {
            free(o);
            sc_error_set(err, SC_ERR_CANNOT_CONNECT, "HY000", "no host to connect to");
            *st = -1;
            return NULL;
        }
        c = sc_conn_nb_open(&o->u, settings, st, err);
        *st = ho_run(o, &c, *st, err);
        return c;
    }
    c = sc_conn_nb_open(&spec->url, settings, st, err);
    if (*st > 0)
        return c;
    if (*st == 0) {
        landed(spec->hosts, 0, -1, 0);
        return c;
    }
    sc_conn_close(c);
    sc_hosts_fail(spec->hosts, 0, 0, err->code, 0);
    return NULL;
}

/* Goes on with an open that mysql_open_nb started (*conn: the connection
 * it waits on; with several hosts, the next host's when one failed). */
static int mysql_open_cont(void *ud, void **conn, int ready, sc_error *err)
{
    connect_spec *spec = ud;
    sc_conn *c = *conn;
    hosts_open *o = c->opener;
    int st = sc_conn_nb_cont(c, ready, err);
    if (o != NULL) {
        st = ho_run(o, &c, st, err);
        *conn = c;
        return st;
    }
    if (st == 0) {
        landed(spec->hosts, 0, -1, 0);
    } else if (st < 0) {
        sc_conn_close(c);
        *conn = NULL;
        sc_hosts_fail(spec->hosts, 0, 0, err->code, 0);
    }
    return st;
}

/* An open given up before it ended (its waiter raised or went away). */
static void mysql_open_abort(void *ud, void *conn)
{
    (void)ud;
    ho_abandon(conn);
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
    out->open_cont = mysql_open_cont;
    out->open_abort = mysql_open_abort;
    out->host_down = mysql_host_down_cb;
    if (url_hosts(&spec->url) > 1) {
        /* one pool per host: a disconnect invalidates its host's
         * connections only; idle ones fail back (sequential) */
        out->host_of = mysql_host_of_cb;
        out->retire = mysql_retire_cb;
    }
    return 0;
}
