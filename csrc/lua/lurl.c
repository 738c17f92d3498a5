/* core.parse_url(s) -> {drivername, username, password, host, port,
 * database, query = {...}}; the Lua layer (scoped/url.lua) makes the URL
 * object around it. */
#include "lutil.h"
#include "url.h"

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
