/* luaopen_scoped_core: registers every Lua-facing piece of the C core. The
 * friendly API is the lua/scoped/ files, thin over this. */
#include "clock.h"
#include "lutil.h"

#define SC_VERSION "scm"

/* core.monotonic() -> seconds on the clock the pool measures ages with */
static int l_monotonic(lua_State *L)
{
    lua_pushnumber(L, sc_monotonic());
    return 1;
}

int luaopen_scoped_core(lua_State *L)
{
    lua_newtable(L);
    lua_pushliteral(L, SC_VERSION);
    lua_setfield(L, -2, "version");
    lua_pushlightuserdata(L, NULL);
    lua_setfield(L, -2, "null");
    luaL_newmetatable(L, SC_ERROR_MT); /* scoped/exc.lua fills it */
    lua_setfield(L, -2, "error_mt");
    lua_pushstring(L, mysql_get_client_info());
    lua_setfield(L, -2, "client_info");
    lua_pushcfunction(L, l_monotonic);
    lua_setfield(L, -2, "monotonic");
    sc_open_url(L);
    sc_open_conn(L);
    sc_open_result(L);
    sc_open_pool(L);
    sc_open_registry(L);
    sc_open_lease(L);
    return 1;
}
