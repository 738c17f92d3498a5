/* The Lua face of the pool (pool.c): core.pool_new(url, opts) -> Pool, whose
 * checkouts are RawConnections that go back to the pool when closed or
 * collected. The Engine and Connection API is lua/scoped/engine.lua. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "connector.h"
#include "lconn.h"
#include "pool.h"

#define SC_POOL_MT "scoped.Pool"
#define SC_TICKET_MT "scoped.PoolTicket"

typedef struct lpool {
    sc_pool *pool;
    int shared;       /* from sc_pool_shared_acquire: release, never free */
    int reset_mode;
    int hide_parameters;
} lpool;

typedef struct lticket {
    sc_waiter *w;     /* NULL once answered or cancelled */
    sc_pool *pool;
} lticket;

static const char *const isolation_levels[] = {
    "READ COMMITTED", "REPEATABLE READ", "READ UNCOMMITTED", "SERIALIZABLE", "AUTOCOMMIT", NULL,
};

/* A checkout that could not open a connection: the connector's error as it
 * is (a server or client errno, or 0 for our own refusal), or the pool's
 * own failure (SC_ERR_CANNOT_CONNECT). */
static int raise_open_error(lua_State *L, const sc_error *err)
{
    scl_getuservalue(L, 1); /* the pool's {pool, spares, hook, url} */
    lua_rawgeti(L, -1, SC_URL_SLOT);
    return scl_raise_connect_error(L, err, -1);
}

/* ---- core.pool_new(url, opts) -------------------------------------------- */

static double opt_number(lua_State *L, int opts, const char *key, double dflt)
{
    lua_getfield(L, opts, key);
    double v = lua_isnil(L, -1) ? dflt : scl_check_number(L, -1, key);
    lua_pop(L, 1);
    return v;
}

/* A whole number that fits an int: a cast of anything else (inf, nan,
 * 2^40) would be undefined behaviour. create_engine checks this first;
 * this keeps core.pool_new safe on its own. */
static int opt_int(lua_State *L, int opts, const char *key, int dflt)
{
    double v = opt_number(L, opts, key, dflt);
    if (!(v >= -2147483648.0 && v <= 2147483647.0) || v != (double)(int)v)
        scl_argerror(L, "%s must be a whole number that fits an int", key);
    return (int)v;
}

static int opt_bool(lua_State *L, int opts, const char *key)
{
    lua_getfield(L, opts, key);
    int v = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return v;
}

static int l_pool_new(lua_State *L)
{
    scl_check_table(L, 1, "url");
    scl_check_table(L, 2, "options");
    sc_pool_config cfg;
    cfg.pool_size = opt_int(L, 2, "pool_size", 5);
    cfg.max_overflow = opt_int(L, 2, "max_overflow", 10);
    cfg.timeout = opt_number(L, 2, "pool_timeout", 30);
    cfg.recycle = opt_number(L, 2, "pool_recycle", -1);
    cfg.pre_ping = opt_bool(L, 2, "pool_pre_ping");
    cfg.use_lifo = opt_bool(L, 2, "pool_use_lifo");
    cfg.null_pool = opt_bool(L, 2, "null_pool");
    if (cfg.pool_size < 0)
        return scl_argerror(L, "pool_size must be >= 0");
    if (cfg.max_overflow < -1)
        return scl_argerror(L, "max_overflow must be >= -1");
    if (cfg.timeout < 0)
        return scl_argerror(L, "pool_timeout must be >= 0");
    lua_getfield(L, 2, "shared");
    const char *shared = lua_tostring(L, -1);
    lua_getfield(L, 2, "shared_key");
    const char *key = lua_tostring(L, -1);

    lpool *lp = scl_newuserdata(L, sizeof *lp);
    memset(lp, 0, sizeof *lp);
    luaL_getmetatable(L, SC_POOL_MT);
    lua_setmetatable(L, -2);
    /* {pool, spares}: the user value every checked-out connection shares,
     * so that the pool outlives its connections (see scl_lconn_push); slot 2
     * will hold the spare userdata of checkout_spare */
    lua_createtable(L, 4, 0);
    lua_pushvalue(L, -2);
    lua_rawseti(L, -2, 1);
    lua_pushvalue(L, 1);
    lua_rawseti(L, -2, SC_URL_SLOT);
    scl_setuservalue(L, -2);

    sc_url *owned = scl_url_push_owned(L);
    scl_url_from_lua(L, 1, owned);
    lua_getfield(L, 2, "isolation_level");
    const char *iso = lua_tostring(L, -1);
    int level = -1;
    for (int i = 0; iso && isolation_levels[i]; i++)
        if (strcmp(iso, isolation_levels[i]) == 0)
            level = i;
    if (iso != NULL && level < 0)
        return scl_argerror(L, "isolation_level must be one of READ COMMITTED, REPEATABLE READ, "
                              "READ UNCOMMITTED, SERIALIZABLE, AUTOCOMMIT");
    lua_pop(L, 1);
    /* Pooled connections run with autocommit off, as a DB-API connection
     * does: the first statement opens a transaction by itself (SQLAlchemy's
     * "BEGIN (implicit)"), so autobegin costs no round trip. Whether a
     * ROLLBACK is needed on return is sc_conn_needs_end's business (conn.h). */
    sc_conn_settings settings;
    memset(&settings, 0, sizeof settings);
    settings.autocommit = iso != NULL && strcmp(iso, "AUTOCOMMIT") == 0;
    if (iso != NULL && !settings.autocommit)
        snprintf(settings.isolation, sizeof settings.isolation, "%s", iso);
    lua_getfield(L, 2, "track_gtid");
    settings.track_gtid = lua_toboolean(L, -1);
    lua_pop(L, 1);
    sc_connector conn; /* it takes the URL's strings over: the pool frees them */
    if (sc_mysql_connector(owned, &settings, &conn) != 0)
        return luaL_error(L, "out of memory");
    lua_pop(L, 1);

    if (shared != NULL) {
        sc_error err;
        lp->pool = sc_pool_shared_acquire(shared, key ? key : "", &cfg, &conn, &err);
        if (lp->pool == NULL)
            return scl_argerror(L, "%s", err.message);
        lp->shared = 1;
    } else {
        lp->pool = sc_pool_new(&cfg, &conn);
        if (lp->pool == NULL)
            return luaL_error(L, "out of memory");
    }
    lua_getfield(L, 2, "pool_reset_on_return");
    const char *reset = lua_tostring(L, -1);
    if (lua_isnil(L, -1) || (reset && strcmp(reset, "rollback") == 0))
        lp->reset_mode = SC_RESET_ROLLBACK;
    else if (reset && strcmp(reset, "commit") == 0)
        lp->reset_mode = SC_RESET_COMMIT;
    else if (reset && strcmp(reset, "reset_connection") == 0)
        lp->reset_mode = SC_RESET_CONNECTION;
    else if (lua_type(L, -1) == LUA_TBOOLEAN && !lua_toboolean(L, -1))
        lp->reset_mode = SC_RESET_NONE;
    else
        return scl_argerror(L, "pool_reset_on_return must be 'rollback', 'commit', 'reset_connection' or false");
    lua_pop(L, 1);
    lp->hide_parameters = opt_bool(L, 2, "hide_parameters");
    return 1;
}

static lpool *check_pool(lua_State *L)
{
    lpool *lp = scl_check_self(L, "Pool");
    if (lp->pool == NULL)
        scl_raise(L, "InvalidRequestError", "This pool has been freed");
    return lp;
}

/* The RawConnection of a checkout, allocated before the pool hands out
 * anything: an error in the allocation (out of memory, or on LuaJIT a
 * finalizer's error, which it propagates out of the allocation that ran the
 * collector) must not lose a checked-out connection. Upvalue 2 of checkout
 * and try_checkout is the RawConnection metatable. */
static lconn *push_empty(lua_State *L)
{
    return scl_lconn_push(L, NULL, 1, lua_upvalueindex(2));
}

/* Fills lc (from push_empty) with the checked-out entry and pushes fresh. */
static void fill_checkout(lua_State *L, lconn *lc, lpool *lp, sc_pool_entry *e)
{
    lc->c = e->conn;
    lc->pool = lp->pool;
    lc->entry = e;
    lc->reset_mode = lp->reset_mode;
    lc->hide_parameters = lp->hide_parameters;
    /* a connection whose session was reset (pool_reset_on_return =
     * "reset_connection") lost what connect listeners set: fresh again */
    sc_conn *c = e->conn;
    lua_pushboolean(L, e->fresh || c->session_reset);
    c->session_reset = 0;
}

static int raise_timeout(lua_State *L, lpool *lp)
{
    const sc_pool_config *cfg = sc_pool_get_config(lp->pool);
    char timeout[32]; /* lua_pushfstring has no precision on Lua 5.1 */
    snprintf(timeout, sizeof timeout, "%.2f", cfg->timeout);
    scl_push_error(L, "TimeoutError",
                   "QueuePool limit of size %d overflow %d reached, connection timed out, timeout %s",
                   cfg->pool_size, cfg->max_overflow, timeout);
    /* what the hint says (exc.lua): how many are out, against which limits */
    sc_pool_stats st;
    sc_pool_stats_get(lp->pool, &st);
    lua_pushinteger(L, st.checkedout);
    lua_setfield(L, -2, "checkedout");
    lua_pushinteger(L, cfg->pool_size);
    lua_setfield(L, -2, "pool_size");
    lua_pushinteger(L, cfg->max_overflow);
    lua_setfield(L, -2, "max_overflow");
    lua_pushnumber(L, cfg->timeout);
    lua_setfield(L, -2, "pool_timeout");
    scl_add_hint(L, 0);
    return lua_error(L);
}

/* pool:checkout() -> conn, fresh: waits on the pool's condition variable */
static int l_checkout(lua_State *L)
{
    lpool *lp = check_pool(L);
    sc_pool_entry *e = NULL;
    sc_error err; /* cleared by the pool */
    lconn *lc = push_empty(L);
    int rc = sc_pool_checkout(lp->pool, &e, &err);
    if (rc == SC_POOL_TIMEOUT)
        return raise_timeout(L, lp);
    if (rc != SC_POOL_OK)
        return raise_open_error(L, &err);
    fill_checkout(L, lc, lp, e);
    return 2;
}

/* pool:checkout_spare() -> conn: checkout() for a Session's fast path
 * (scoped/session.lua), which never lets the userdata reach user code
 * unpinned: a userdata that raw:finish(commit, true) put back in the spare
 * list is filled again instead of allocating one (and a finalizer) per
 * request. */
static int l_checkout_spare(lua_State *L)
{
    lpool *lp = check_pool(L);
    sc_pool_entry *e = NULL;
    sc_error err;
    /* the userdata first (see push_empty): a spare, or a new one */
    lconn *lc = NULL;
    scl_getuservalue(L, 1); /* {pool, spares} */
    lua_rawgeti(L, -1, SC_SPARES_SLOT);
    int n = lua_istable(L, -1) ? (int)scl_rawlen(L, -1) : 0;
    if (n > 0) {
        lua_rawgeti(L, -1, n);
        lc = lua_touserdata(L, -1);
    } else {
        lc = push_empty(L);
    }
    int rc = sc_pool_checkout(lp->pool, &e, &err);
    if (rc == SC_POOL_TIMEOUT)
        return raise_timeout(L, lp); /* a spare stays in the list */
    if (rc != SC_POOL_OK)
        return raise_open_error(L, &err);
    if (n > 0) {
        lua_pushnil(L);
        lua_rawseti(L, -3, n); /* taken off the list */
    }
    lconn_owner owner = lc->owner; /* the userdata's own (lconn.h) */
    memset(lc, 0, sizeof *lc);
    lc->owner = owner;
    lc->c = e->conn;
    lc->pool = lp->pool;
    lc->entry = e;
    lc->reset_mode = lp->reset_mode;
    lc->hide_parameters = lp->hide_parameters;
    lc->spare = 1;
    return 1;
}

static void ticket_cancel(lticket *t)
{
    if (t->w != NULL) {
        sc_pool_cancel(t->pool, t->w);
        t->w = NULL;
    }
}

static int ticket_gc(lua_State *L)
{
    ticket_cancel(scl_check_meta_self(L, "__gc", "pool ticket"));
    return 0;
}

/* pool:try_checkout([ticket [, defer]]) -> conn, fresh | nil, ticket. Never
 * blocks: the caller waits in Lua (a coroutine yield, an nginx semaphore)
 * and tries again with the ticket, which keeps its place in the queue.
 * defer: a connection to open or pre-ping is handed over as it is, with a
 * third value "open" or "ping" (sc_pool_try_checkout_deferred): the
 * non-blocking driver does it (scoped/nonblocking.lua). */
static int l_try_checkout(lua_State *L)
{
    lpool *lp = check_pool(L);
    int defer = lua_toboolean(L, 3);
    lticket *t = NULL;
    sc_waiter *w = NULL;
    if (!lua_isnoneornil(L, 2)) {
        t = scl_check_udata(L, 2, SC_TICKET_MT, "ticket");
        if (t->w == NULL)
            return scl_argerror(L, "this ticket has been used up");
        w = t->w;
    }
    sc_pool_entry *e = NULL;
    sc_error err;
    lconn *lc = push_empty(L); /* garbage when the caller has to wait */
    int rc = defer ? sc_pool_try_checkout_deferred(lp->pool, &w, &e, &err)
                   : sc_pool_try_checkout(lp->pool, &w, &e, &err);
    if (t != NULL && rc != SC_POOL_WAIT)
        t->w = NULL; /* the pool freed it */
    switch (rc) {
    case SC_POOL_OK:
        fill_checkout(L, lc, lp, e);
        return 2;
    case SC_POOL_OPEN:
        /* the caller opens or pings it without blocking (lnb.c, "open"
         * and "ping"); until then a finalizer gives the slot back */
        lc->c = e->conn;
        lc->pool = lp->pool;
        lc->entry = e;
        lc->reset_mode = lp->reset_mode;
        lc->hide_parameters = lp->hide_parameters;
        lua_pushboolean(L, e->need == SC_NEED_OPEN);
        lua_pushstring(L, e->need == SC_NEED_OPEN ? "open" : "ping");
        return 3;
    case SC_POOL_WAIT:
        if (t == NULL) {
            t = scl_newuserdata(L, sizeof *t);
            t->w = w;
            t->pool = lp->pool;
            luaL_getmetatable(L, SC_TICKET_MT);
            lua_setmetatable(L, -2);
            lua_createtable(L, 1, 0); /* the ticket keeps its pool alive */
            lua_pushvalue(L, 1);
            lua_rawseti(L, -2, 1);
            scl_setuservalue(L, -2);
        } else {
            lua_pushvalue(L, 2);
        }
        lua_pushnil(L);
        lua_insert(L, -2);
        return 2;
    case SC_POOL_TIMEOUT:
        return raise_timeout(L, lp);
    default:
        return raise_open_error(L, &err);
    }
}

static int l_ticket_remaining(lua_State *L)
{
    lticket *t = scl_check_udata(L, 1, SC_TICKET_MT, "ticket");
    lua_pushnumber(L, t->w ? sc_waiter_remaining(t->w) : 0);
    return 1;
}

/* ticket:ready() -> whether trying again would get something (a grant, the
 * timeout): see sc_waiter_ready. A cancelled ticket is ready (nothing to
 * wait for). */
static int l_ticket_ready(lua_State *L)
{
    lticket *t = scl_check_udata(L, 1, SC_TICKET_MT, "ticket");
    lua_pushboolean(L, t->w == NULL || sc_waiter_ready(t->pool, t->w));
    return 1;
}

static int l_ticket_cancel(lua_State *L)
{
    ticket_cancel(scl_check_udata(L, 1, SC_TICKET_MT, "ticket"));
    return 0;
}

static int l_status(lua_State *L)
{
    lpool *lp = check_pool(L);
    sc_pool_stats st;
    sc_pool_stats_get(lp->pool, &st);
    /* SQLAlchemy's QueuePool.status(), two spaces and all */
    lua_pushfstring(L, "Pool size: %d  Connections in pool: %d Current Overflow: %d "
                       "Current Checked out connections: %d",
                    st.size, st.checkedin, st.overflow, st.checkedout);
    return 1;
}

static int l_stats(lua_State *L)
{
    lpool *lp = check_pool(L);
    sc_pool_stats st;
    sc_pool_stats_get(lp->pool, &st);
    lua_createtable(L, 0, 16);
    lua_pushinteger(L, st.size);
    lua_setfield(L, -2, "size");
    lua_pushinteger(L, st.checkedin);
    lua_setfield(L, -2, "checkedin");
    lua_pushinteger(L, st.checkedout);
    lua_setfield(L, -2, "checkedout");
    lua_pushinteger(L, st.overflow);
    lua_setfield(L, -2, "overflow");
    lua_pushinteger(L, st.open);
    lua_setfield(L, -2, "open");
    lua_pushinteger(L, st.waiting);
    lua_setfield(L, -2, "waiting");
    /* the counters: integers (lua_Number on LuaJIT: exact to 2^53) */
    const struct {
        const char *name;
        unsigned long long v;
    } counts[] = {
        {"checkouts", st.n.checkouts},
        {"waits", st.n.waits},
        {"timeouts", st.n.timeouts},
        {"connects", st.n.connects},
        {"connect_failures", st.n.connect_failures},
        {"invalidations", st.n.invalidations},
        {"recycles", st.n.recycles},
        {"preping_failures", st.n.preping_failures},
        {"failbacks", st.n.failbacks},
    };
    for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++) {
        lua_pushinteger(L, (lua_Integer)counts[i].v);
        lua_setfield(L, -2, counts[i].name);
    }
    lua_pushnumber(L, st.n.wait_seconds);
    lua_setfield(L, -2, "wait_seconds");
    lua_pushnumber(L, st.n.wait_max);
    lua_setfield(L, -2, "wait_max");
    return 1;
}

/* Host i of the pool's URL: its name and port (never the credentials). */
static void push_host_name(lua_State *L, const sc_url *u, int i)
{
    const char *host = u->nhosts > 0 ? u->hosts[i].host : u->host;
    int port = u->nhosts > 0 ? u->hosts[i].port : u->port;
    lua_pushstring(L, host != NULL ? host : "localhost");
    lua_setfield(L, -2, "host");
    lua_pushinteger(L, port > 0 ? port : 3306);
    lua_setfield(L, -2, "port");
}

static const char *role_name(int role)
{
    return role == SC_ROLE_READ_WRITE ? "read-write" : role == SC_ROLE_READ_ONLY ? "read-only" : "unknown";
}

/* pool:hosts() -> a list, per host of the URL, of {host, port, state
 * ("up" | "denied"), restored_in (seconds), role, connects, failures
 * ({[code] = count}), denials, failovers (connects that went elsewhere
 * after it failed), open, checkedout, idle, checkout_waits, checkout_wait,
 * checkout_wait_max}. */
static int l_hosts(lua_State *L)
{
    lpool *lp = check_pool(L);
    const sc_url *u;
    sc_hosts *h = sc_mysql_connector_hosts(sc_pool_connector_ud(lp->pool), &u);
    int n = sc_hosts_count(h);
    int idle[SC_HOSTS_MAX];
    sc_pool_idle_by_host(lp->pool, idle, n);
    double now = sc_monotonic();
    lua_createtable(L, n, 0);
    for (int i = 0; i < n; i++) {
        sc_host_info info;
        sc_hosts_info(h, i, now, &info);
        lua_createtable(L, 0, 17);
        push_host_name(L, u, i);
        lua_pushstring(L, info.denied ? "denied" : "up");
        lua_setfield(L, -2, "state");
        lua_pushnumber(L, info.restored_in);
        lua_setfield(L, -2, "restored_in");
        lua_pushstring(L, role_name(info.role));
        lua_setfield(L, -2, "role");
        lua_pushinteger(L, (lua_Integer)info.connects);
        lua_setfield(L, -2, "connects");
        lua_pushinteger(L, (lua_Integer)info.denials);
        lua_setfield(L, -2, "denials");
        lua_pushinteger(L, (lua_Integer)info.failovers_from);
        lua_setfield(L, -2, "failovers");
        lua_createtable(L, 0, info.ncodes);
        for (int k = 0; k < info.ncodes; k++) {
            lua_pushinteger(L, (lua_Integer)info.code_count[k]);
            lua_rawseti(L, -2, (int)info.code[k]);
        }
        lua_setfield(L, -2, "failures");
        int open = info.open > 0 ? info.open : 0;
        int out = open - idle[i];
        lua_pushinteger(L, open);
        lua_setfield(L, -2, "open");
        lua_pushinteger(L, idle[i]);
        lua_setfield(L, -2, "idle");
        lua_pushinteger(L, out > 0 ? out : 0);
        lua_setfield(L, -2, "checkedout");
        sc_pool_host_wait hw;
        sc_pool_host_waits(lp->pool, i, &hw);
        lua_pushinteger(L, (lua_Integer)hw.n);
        lua_setfield(L, -2, "checkout_waits");
        lua_pushnumber(L, hw.seconds);
        lua_setfield(L, -2, "checkout_wait");
        lua_pushnumber(L, hw.max);
        lua_setfield(L, -2, "checkout_wait_max");
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}

/* pool:host_events() -> a list of the host events since the last call,
 * oldest first ({name, host, port, code, until (seconds from now),
 * from_host, from_port}), or nil when there were none; and how many were
 * lost to the ring's size. */
static int l_host_events(lua_State *L)
{
    lpool *lp = check_pool(L);
    const sc_url *u;
    sc_hosts *h = sc_mysql_connector_hosts(sc_pool_connector_ud(lp->pool), &u);
    sc_host_event ev[SC_HOSTS_RING];
    unsigned long dropped = 0;
    int n = sc_hosts_events(h, ev, SC_HOSTS_RING, &dropped);
    if (n == 0 && dropped == 0) {
        lua_pushnil(L);
        return 1;
    }
    double now = sc_monotonic();
    lua_createtable(L, n, 0);
    for (int k = 0; k < n; k++) {
        const sc_host_event *e = &ev[k];
        lua_createtable(L, 0, 8);
        lua_pushstring(L, e->type == SC_HOST_DENIED ? "host_denied"
                          : e->type == SC_HOST_RESTORED ? "host_restored" : "failover");
        lua_setfield(L, -2, "name");
        push_host_name(L, u, e->host);
        if (e->code != 0) {
            lua_pushinteger(L, (lua_Integer)e->code);
            lua_setfield(L, -2, "code");
        }
        if (e->type == SC_HOST_DENIED) {
            lua_pushnumber(L, e->until - now > 0 ? e->until - now : 0);
            lua_setfield(L, -2, "until");
        }
        if (e->from >= 0) {
            const char *host = u->nhosts > 0 ? u->hosts[e->from].host : u->host;
            int port = u->nhosts > 0 ? u->hosts[e->from].port : u->port;
            lua_pushstring(L, host != NULL ? host : "localhost");
            lua_setfield(L, -2, "from_host");
            lua_pushinteger(L, port > 0 ? port : 3306);
            lua_setfield(L, -2, "from_port");
        }
        lua_rawseti(L, -2, k + 1);
    }
    lua_pushinteger(L, (lua_Integer)dropped);
    return 2;
}

/* pool:set_gc_hook(fn | nil): fn(raw) runs when a checked-out connection of
 * this pool is garbage-collected, before it goes back (SC_GC_HOOK_SLOT) */
static int l_set_gc_hook(lua_State *L)
{
    check_pool(L);
    if (!lua_isnil(L, 2) && !lua_isfunction(L, 2))
        return scl_argerror(L, "gc hook must be a function or nil");
    scl_getuservalue(L, 1);
    lua_pushvalue(L, 2);
    lua_rawseti(L, -2, SC_GC_HOOK_SLOT);
    return 0;
}

static int l_dispose(lua_State *L)
{
    lpool *lp = check_pool(L);
    sc_pool_dispose(lp->pool);
    return 0;
}

static int l_pool_gc(lua_State *L)
{
    lpool *lp = scl_check_meta_self(L, "__gc", "pool");
    if (lp->pool != NULL) {
        if (lp->shared)
            sc_pool_shared_release(lp->pool);
        else
            sc_pool_free(lp->pool);
        lp->pool = NULL;
    }
    return 0;
}

static const luaL_Reg pool_methods[] = {
    {"status", l_status},
    {"stats", l_stats},
    {"hosts", l_hosts},
    {"host_events", l_host_events},
    {"dispose", l_dispose},
    {"set_gc_hook", l_set_gc_hook},
    {NULL, NULL},
};

static const luaL_Reg ticket_methods[] = {
    {"remaining", l_ticket_remaining},
    {"ready", l_ticket_ready},
    {"cancel", l_ticket_cancel},
    {NULL, NULL},
};

int scl_open_pool(lua_State *L)
{
    luaL_newmetatable(L, SC_POOL_MT);
    lua_newtable(L);
    scl_setmethods(L, -2, pool_methods);
    /* the three that make connections also hold the RawConnection metatable
     * (scl_open_conn ran first) */
    static const luaL_Reg checkouts[] = {
        {"checkout", l_checkout}, {"try_checkout", l_try_checkout}, {"checkout_spare", l_checkout_spare}};
    for (int i = 0; i < 3; i++) {
        lua_pushvalue(L, -2);
        luaL_getmetatable(L, SC_CONN_MT);
        lua_pushcclosure(L, checkouts[i].func, 2);
        lua_setfield(L, -2, checkouts[i].name);
    }
    lua_pushvalue(L, -1);
    lua_setfield(L, -4, "pool_methods"); /* core.pool_methods: engine.lua keeps checkout as an upvalue */
    lua_setfield(L, -2, "__index");
    lua_pushvalue(L, -1); /* the finalizers check their argument against their metatable */
    lua_pushcclosure(L, l_pool_gc, 1);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
    luaL_newmetatable(L, SC_TICKET_MT);
    lua_newtable(L);
    scl_setfuncs(L, ticket_methods);
    lua_setfield(L, -2, "__index");
    lua_pushvalue(L, -1);
    lua_pushcclosure(L, ticket_gc, 1);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
    lua_pushcfunction(L, l_pool_new);
    lua_setfield(L, -2, "pool_new");
    return 0;
}
