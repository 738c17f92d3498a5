/* The scope registry behind scoped_session: one value per coroutine.
 *
 * Keyed by the coroutine object itself (lua_pushthread), never by its
 * lua_State address, which the allocator reuses for the next coroutine. The
 * table is weak-keyed, so a dead coroutine's entry goes with it and its
 * session (and the connection that session holds) is collected. LuaJIT has
 * no ephemerons: a value that referred back to its coroutine would keep it
 * alive forever, so callers store nothing that does.
 *
 * core.thread_registry() -> get, set, clear: three C closures over one weak
 * table, so that Session() on an existing scope is one C call and one table
 * lookup. */
#include "lutil.h"

static int reg_get(lua_State *L)
{
    lua_pushthread(L);
    lua_rawget(L, lua_upvalueindex(1));
    return 1;
}

static int reg_set(lua_State *L)
{
    lua_settop(L, 1);
    lua_pushthread(L);
    lua_pushvalue(L, 1);
    lua_rawset(L, lua_upvalueindex(1));
    return 0;
}

static int reg_clear(lua_State *L)
{
    lua_pushthread(L);
    lua_pushnil(L);
    lua_rawset(L, lua_upvalueindex(1));
    return 0;
}

/* core.current_thread() -> the running coroutine, the main thread included
 * (LuaJIT's coroutine.running() returns nil there). */
static int current_thread(lua_State *L)
{
    lua_pushthread(L);
    return 1;
}

static int thread_registry(lua_State *L)
{
    lua_newtable(L);
    lua_createtable(L, 0, 1);
    lua_pushliteral(L, "k");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    int map = lua_gettop(L);
    lua_pushvalue(L, map);
    lua_pushcclosure(L, reg_get, 1);
    lua_pushvalue(L, map);
    lua_pushcclosure(L, reg_set, 1);
    lua_pushvalue(L, map);
    lua_pushcclosure(L, reg_clear, 1);
    lua_pushvalue(L, map);
    return 4; /* get, set, clear, and the map for introspection */
}

int sc_open_registry(lua_State *L)
{
    lua_pushcfunction(L, thread_registry);
    lua_setfield(L, -2, "thread_registry");
    lua_pushcfunction(L, current_thread);
    lua_setfield(L, -2, "current_thread");
    return 0;
}
