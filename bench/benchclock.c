/* benchclock: a monotonic wall clock for the Lua benchmark programs (Lua 5.4
 * has no sub-second clock; os.clock is CPU time).
 *   local clock = require "benchclock"; clock.now() -> seconds (a float) */
#include <time.h>

#include <lauxlib.h>
#include <lua.h>

static int now(lua_State *L)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec / 1e9);
    return 1;
}

int luaopen_benchclock(lua_State *L)
{
    lua_newtable(L);
    lua_pushcfunction(L, now);
    lua_setfield(L, -2, "now");
    return 1;
}
