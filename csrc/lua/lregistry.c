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
 * lookup.
 *
 * core.thread_registry(true) is the same registry also recording, per
 * coroutine, the owner that set the value: under OpenResty the request
 * (its ngx.ctx), because ngx_lua hands a finished request's coroutine object
 * to the next request, and a registry keyed by the coroutine alone would
 * give request N+1 the session (and open transaction) of request N. */
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

/* clear() -> the value it cleared (nil if none): scoped_session's remove()
 * gets and clears in one call */
static int reg_clear(lua_State *L)
{
    lua_pushthread(L);
    lua_pushvalue(L, -1);
    lua_rawget(L, lua_upvalueindex(1)); /* thread, value */
    lua_pushvalue(L, -2);
    lua_pushnil(L);
    lua_rawset(L, lua_upvalueindex(1));
    return 1;
}

/* ---- the owned variant --------------------------------------------------
 * Upvalues: 1 = thread -> value (weak keys), 2 = thread -> owner (weak keys
 * and values). The owner is held weakly so that a request's ngx.ctx is never
 * kept alive by the registry; once collected, its sessions read as stale,
 * which they are (LuaJIT has no ephemerons: a strong owner that referred to
 * its coroutine, e.g. an ngx.thread kept in ngx.ctx, would pin both). */

/* get(owner) -> value when the running coroutine's value was set by owner
 * (rawequal: nil matches nil), else nil and the stale value, which the
 * caller disposes of; nothing is changed here. */
static int reg_get_owned(lua_State *L)
{
    lua_settop(L, 1);
    lua_pushthread(L);
    lua_rawget(L, lua_upvalueindex(1)); /* 2: value */
    if (lua_isnil(L, 2))
        return 1;
    lua_pushthread(L);
    lua_rawget(L, lua_upvalueindex(2)); /* 3: its owner */
    if (lua_rawequal(L, 1, 3)) {
        lua_pushvalue(L, 2);
        return 1;
    }
    lua_pushnil(L);
    lua_pushvalue(L, 2);
    return 2;
}

/* set(value, owner) */
static int reg_set_owned(lua_State *L)
{
    lua_settop(L, 2);
    lua_pushthread(L);
    lua_pushvalue(L, 1);
    lua_rawset(L, lua_upvalueindex(1));
    lua_pushthread(L);
    if (lua_isnil(L, 1))
        lua_pushnil(L);
    else
        lua_pushvalue(L, 2);
    lua_rawset(L, lua_upvalueindex(2));
    return 0;
}

static int reg_clear_owned(lua_State *L)
{
    lua_pushthread(L);
    lua_pushnil(L);
    lua_rawset(L, lua_upvalueindex(1));
    lua_pushthread(L);
    lua_pushnil(L);
    lua_rawset(L, lua_upvalueindex(2));
    return 0;
}

static void new_weak_table(lua_State *L, const char *mode)
{
    lua_newtable(L);
    lua_createtable(L, 0, 1);
    lua_pushstring(L, mode);
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
}

/* core.thread_registry(true) -> get, set, clear, map, owners */
static int thread_registry_owned(lua_State *L)
{
    new_weak_table(L, "k");
    int map = lua_gettop(L);
    new_weak_table(L, "kv");
    int owners = lua_gettop(L);
    lua_pushvalue(L, map);
    lua_pushvalue(L, owners);
    lua_pushcclosure(L, reg_get_owned, 2);
    lua_pushvalue(L, map);
    lua_pushvalue(L, owners);
    lua_pushcclosure(L, reg_set_owned, 2);
    lua_pushvalue(L, map);
    lua_pushvalue(L, owners);
    lua_pushcclosure(L, reg_clear_owned, 2);
    lua_pushvalue(L, map);
    lua_pushvalue(L, owners);
    return 5;
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
    if (!lua_isnoneornil(L, 1)) {
        if (lua_type(L, 1) != LUA_TBOOLEAN)
            return scl_argerror(L, "thread_registry: owned must be a boolean, got %s", luaL_typename(L, 1));
        if (lua_toboolean(L, 1))
            return thread_registry_owned(L);
    }
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

int scl_open_registry(lua_State *L)
{
    lua_pushcfunction(L, thread_registry);
    lua_setfield(L, -2, "thread_registry");
    lua_pushcfunction(L, current_thread);
    lua_setfield(L, -2, "current_thread");
    return 0;
}
