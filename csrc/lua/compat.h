/* One source for the Lua 5.1 ABI (LuaJIT, OpenResty) and Lua 5.4.
 * Only what the core uses is bridged here; everything else is written
 * against the common subset. */
#ifndef SCOPED_COMPAT_H
#define SCOPED_COMPAT_H

#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

#if LUA_VERSION_NUM < 502
/* Lua 5.1 / LuaJIT */
#define scl_rawlen(L, i) lua_objlen((L), (i))
#define scl_setfuncs(L, l) luaL_register((L), NULL, (l))
/* On 5.1 a userdata has an environment table instead of a user value. */
#define scl_setuservalue(L, i) lua_setfenv((L), (i))
#define scl_getuservalue(L, i) lua_getfenv((L), (i))
#define SC_HAS_INTEGERS 0
static inline void *scl_testudata(lua_State *L, int i, const char *tname)
{
    void *p = lua_touserdata(L, i);
    if (p == NULL || !lua_getmetatable(L, i))
        return NULL;
    luaL_getmetatable(L, tname);
    if (!lua_rawequal(L, -1, -2))
        p = NULL;
    lua_pop(L, 2);
    return p;
}
#else
#define scl_rawlen(L, i) lua_rawlen((L), (i))
#define scl_setfuncs(L, l) luaL_setfuncs((L), (l), 0)
#define scl_setuservalue(L, i) lua_setiuservalue((L), (i), 1)
#define scl_getuservalue(L, i) ((void)lua_getiuservalue((L), (i), 1))
#define SC_HAS_INTEGERS 1
#define scl_testudata(L, i, t) luaL_testudata((L), (i), (t))
#endif

/* A userdata with room for one user value on both ABIs. */
#if LUA_VERSION_NUM >= 504
#define scl_newuserdata(L, sz) lua_newuserdatauv((L), (sz), 1)
#else
#define scl_newuserdata(L, sz) lua_newuserdata((L), (sz))
#endif

#endif
