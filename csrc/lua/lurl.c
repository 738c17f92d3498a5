/* URLs between Lua and the core: core.parse_url(s) -> {drivername,
 * username, password, host, port, database, query = {...}}, around which
 * the Lua layer (scoped/url.lua) makes the URL object; and back, such a
 * table to the sc_url that core.connect and core.pool_new open with. */
#include <stdlib.h>
#include <string.h>

#include "lutil.h"
#include "url.h"

/* ---- URL tables to sc_url ---------------------------------------------- */

static char *dup_field(lua_State *L, int idx, const char *key)
{
    lua_getfield(L, idx, key);
    char *v = NULL;
    if (lua_type(L, -1) == LUA_TSTRING) {
        size_t n;
        const char *s = lua_tolstring(L, -1, &n);
        if (memchr(s, '\0', n) != NULL) {
            lua_pop(L, 1);
            scl_argerror(L, "URL %s contains a NUL byte", key);
        }
        v = strdup(s);
    } else if (!lua_isnil(L, -1)) {
        lua_pop(L, 1);
        scl_argerror(L, "URL %s must be a string", key);
    }
    lua_pop(L, 1);
    return v;
}

/* Strings are copied one at a time into u, which the caller frees on every
 * path; a raise half-way leaves u holding only what it owns. */
void scl_url_from_lua(lua_State *L, int idx, sc_url *u)
{
    scl_check_table(L, idx, "url");
    u->username = dup_field(L, idx, "username");
    u->password = dup_field(L, idx, "password");
    u->host = dup_field(L, idx, "host");
    u->database = dup_field(L, idx, "database");
    lua_getfield(L, idx, "port");
    u->port = lua_type(L, -1) == LUA_TNUMBER ? (int)lua_tointeger(L, -1) : 0;
    lua_pop(L, 1);
    sc_error err;
    lua_getfield(L, idx, "query");
    if (lua_istable(L, -1)) {
        int q = lua_gettop(L);
        for (int i = 0; i < SC_URL_NPARAMS; i++) {
            u->params[i] = dup_field(L, q, sc_url_param_names[i]);
            if (u->params[i] && sc_url_check_param(i, u->params[i], &err) != 0)
                scl_argerror(L, "%s", err.message);
        }
    }
    lua_pop(L, 1);
    /* hosts: nil, or a list of 2..SC_URL_MAX_HOSTS {host = s, port = n|nil} */
    lua_getfield(L, idx, "hosts");
    if (!lua_isnil(L, -1)) {
        if (!lua_istable(L, -1))
            scl_argerror(L, "URL hosts must be a list of {host = ..., port = ...}");
        int t = lua_gettop(L);
        int n = (int)scl_rawlen(L, t);
        if (n < 2 || n > SC_URL_MAX_HOSTS)
            scl_argerror(L, "URL hosts must list from 2 to %d hosts", SC_URL_MAX_HOSTS);
        u->hosts = calloc((size_t)n, sizeof *u->hosts);
        if (u->hosts == NULL)
            scl_argerror(L, "out of memory");
        for (int i = 1; i <= n; i++) {
            lua_rawgeti(L, t, i);
            if (!lua_istable(L, -1))
                scl_argerror(L, "URL hosts[%d] must be a table {host = ..., port = ...}", i);
            char *h = dup_field(L, lua_gettop(L), "host");
            if (h == NULL)
                scl_argerror(L, "URL hosts[%d].host must be a string", i);
            u->hosts[u->nhosts++].host = h; /* owned by u from here */
            lua_getfield(L, -1, "port");
            if (!lua_isnil(L, -1)) {
                lua_Number pn = lua_type(L, -1) == LUA_TNUMBER ? lua_tonumber(L, -1) : 0;
                if (!(pn >= 1 && pn <= 65535 && pn == (lua_Number)(long)pn))
                    scl_argerror(L, "URL hosts[%d].port must be a whole number from 1 to 65535", i);
                u->hosts[u->nhosts - 1].port = (int)pn;
            }
            lua_pop(L, 2);
        }
        /* the first host is the one anything unaware of the list opens */
        free(u->host);
        u->port = u->hosts[0].port;
        if ((u->host = strdup(u->hosts[0].host)) == NULL)
            scl_argerror(L, "out of memory");
    }
    lua_pop(L, 1);
    if (sc_url_check(u, &err) != 0)
        scl_argerror(L, "%s", err.message);
}

static int url_owned_gc(lua_State *L)
{
    sc_url_free(scl_check_meta_self(L, "__gc", "URL being read"));
    return 0;
}

/* An sc_url inside a userdata that frees it when collected: reading a URL
 * table may raise half-way, and the strings copied so far must not leak. */
sc_url *scl_url_push_owned(lua_State *L)
{
    sc_url *u = scl_newuserdata(L, sizeof *u);
    memset(u, 0, sizeof *u);
    if (luaL_newmetatable(L, "scoped.OwnedURL")) {
        lua_pushvalue(L, -1); /* its own metatable: the finalizer checks its argument */
        lua_pushcclosure(L, url_owned_gc, 1);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    return u;
}

/* ---- core.parse_url ------------------------------------------------------- */

static void set_opt_string(lua_State *L, const char *key, const char *v)
{
    if (v != NULL) {
        lua_pushstring(L, v);
        lua_setfield(L, -2, key);
    }
}

static int l_parse_url(lua_State *L)
{
    size_t len;
    const char *s = scl_check_string(L, 1, "url", &len);
    sc_error err;
    sc_url u;
    if (sc_url_parse(s, len, &u, &err) != 0)
        return scl_argerror(L, "%s", err.message);
    lua_createtable(L, 0, 7);
    set_opt_string(L, "drivername", u.drivername);
    set_opt_string(L, "username", u.username);
    set_opt_string(L, "password", u.password);
    set_opt_string(L, "host", u.host);
    set_opt_string(L, "database", u.database);
    if (u.port) {
        lua_pushinteger(L, u.port);
        lua_setfield(L, -2, "port");
    }
    lua_newtable(L);
    for (int i = 0; i < SC_URL_NPARAMS; i++)
        set_opt_string(L, sc_url_param_names[i], u.params[i]);
    lua_setfield(L, -2, "query");
    if (u.nhosts > 1) {
        lua_createtable(L, u.nhosts, 0);
        for (int i = 0; i < u.nhosts; i++) {
            lua_createtable(L, 0, 2);
            set_opt_string(L, "host", u.hosts[i].host);
            if (u.hosts[i].port) {
                lua_pushinteger(L, u.hosts[i].port);
                lua_setfield(L, -2, "port");
            }
            lua_rawseti(L, -2, i + 1);
        }
        lua_setfield(L, -2, "hosts");
    }
    sc_url_free(&u);
    return 1;
}

/* core.check_url(url_table): the checks core.pool_new and core.connect
 * make, for URL:set() to raise at once */
static int l_check_url(lua_State *L)
{
    scl_check_table(L, 1, "url");
    sc_url *owned = scl_url_push_owned(L);
    scl_url_from_lua(L, 1, owned);
    sc_url_free(owned);
    return 0;
}

/* core.parse_host(s) -> host, port|nil: one "host[:port]" or "[v6][:port]" */
static int l_parse_host(lua_State *L)
{
    size_t len;
    const char *s = scl_check_string(L, 1, "host", &len);
    sc_error err;
    sc_url_host h;
    if (sc_url_parse_host(s, len, &h, &err) != 0)
        return scl_argerror(L, "%s", err.message);
    lua_pushstring(L, h.host);
    free(h.host);
    if (h.port)
        lua_pushinteger(L, h.port);
    else
        lua_pushnil(L);
    return 2;
}

/* core.check_url_param(name, value): connect_args go through the same
 * checks as the URL's query. */
static int l_check_url_param(lua_State *L)
{
    const char *name = scl_check_string(L, 1, "parameter name", NULL);
    const char *value = scl_check_string(L, 2, name, NULL);
    sc_error err;
    int which = sc_url_param_index(name);
    if (which < 0)
        return scl_argerror(L, "unknown connect argument '%s'", name);
    if (sc_url_check_param(which, value, &err) != 0)
        return scl_argerror(L, "%s", err.message);
    return 0;
}

int scl_open_url(lua_State *L)
{
    lua_pushcfunction(L, l_parse_url);
    lua_setfield(L, -2, "parse_url");
    lua_pushcfunction(L, l_check_url_param);
    lua_setfield(L, -2, "check_url_param");
    lua_pushcfunction(L, l_check_url);
    lua_setfield(L, -2, "check_url");
    lua_pushcfunction(L, l_parse_host);
    lua_setfield(L, -2, "parse_host");
    return 0;
}
