#include <stdlib.h>
#include <string.h>

#include "connector.h"

/* What every connection of a pool is opened with. */
typedef struct connect_spec {
    sc_url url;
    sc_conn_settings settings;
    int has_settings; /* 0: the server's defaults (sc_conn_open's NULL) */
} connect_spec;

/* The pool's errors are sc_conn_open's own (error.h): nothing to translate. */
static void *mysql_open(void *ud, sc_error *err)
{
    connect_spec *spec = ud;
    return sc_conn_open(&spec->url, spec->has_settings ? &spec->settings : NULL, err);
}

static void *mysql_open_nb(void *ud, int *st, sc_error *err)
{
    connect_spec *spec = ud;
    return sc_conn_nb_open(&spec->url, spec->has_settings ? &spec->settings : NULL, st, err);
}

static void mysql_close_cb(void *ud, void *conn)
{
    (void)ud;
    sc_conn_close(conn);
}

static void mysql_discard_cb(void *ud, void *conn)
{
    (void)ud;
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

/* KILL CONNECTION through a connection of its own, with the pool's URL and
 * the server's defaults; a failure leaves the statement running on the
 * server (the connection is discarded all the same). */
static void mysql_kill_cb(void *ud, void *conn)
{
    connect_spec *spec = ud;
    sc_error err;
    sc_conn_kill(&spec->url, mysql_thread_id(((sc_conn *)conn)->my), &err);
}

static void spec_free_cb(void *ud)
{
    connect_spec *spec = ud;
    sc_url_free(&spec->url);
    free(spec);
}

int sc_mysql_connector(sc_url *url, const sc_conn_settings *settings, sc_connector *out)
{
    connect_spec *spec = calloc(1, sizeof *spec);
    if (spec == NULL)
        return -1;
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
    return 0;
}
