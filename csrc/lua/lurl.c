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
    lua_getfield(L, idx, "query");
    if (lua_istable(L, -1)) {
        int q = lua_gettop(L);
        sc_error err;
        for (int i = 0; i < SC_URL_NPARAMS; i++) {
            u->params[i] = dup_field(L, q, sc_url_param_names[i]);
            if (u->params[i] && sc_url_check_param(i, u->params[i], &err) != 0)
                scl_argerror(L, "%s", err.message);
        }
    }
    lua_pop(L, 1);
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
    sc_url_free(&u);
    return 1;
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
    return 0;
}
