/* luaopen_scoped_core: registers every Lua-facing piece of the C core. The
 * friendly API is the lua/scoped/ files, thin over this. */
#include "clock.h"
#include "lutil.h"

/* Every binding file's part of scoped.core, grouped by file as luv.c lists
 * its functions: each open function gets the core table at the top of the
 * stack and sets its functions and metatables into it. A new binding file
 * (csrc/lua/lfoo.c) declares its open function in lutil.h and registers
 * here, after the files whose metatables it uses. */
static const struct {
    const char *file;
    int (*open)(lua_State *L);
} parts[] = {
    {"lurl.c", scl_open_url},           /* parse_url, check_url_param */
    {"lconn.c", scl_open_conn},         /* connect, conn_methods: the RawConnection metatable,
                                        * with lexec.c's statement methods */
    {"lresult.c", scl_open_result},     /* result_methods: the Result metatable */
    {"lstream.c", scl_open_stream},     /* stream_result_mt: after lresult.c, whose
                                        * methods the streaming Result falls back on */
    {"lpool.c", scl_open_pool},         /* pool_new, pool_methods: after lconn.c, as its
                                        * checkouts hold the RawConnection metatable */
    {"lregistry.c", scl_open_registry}, /* thread_registry, current_thread */
    {"llease.c", scl_open_lease},       /* lease, lease_borrow, lease_return, lease_count */
    {"lutil.c", scl_open_hints},        /* set_hinter: exc.lua's writer of error hints */
};

/* core.monotonic() -> seconds on the clock the pool measures ages with */
static int l_monotonic(lua_State *L)
{
    lua_pushnumber(L, sc_monotonic());
    return 1;
}

int luaopen_scoped_core(lua_State *L)
{
    lua_newtable(L);
    lua_pushlightuserdata(L, NULL);
    lua_setfield(L, -2, "null");
    luaL_newmetatable(L, SC_ERROR_MT); /* scoped/exc.lua fills it */
    lua_setfield(L, -2, "error_mt");
    lua_pushstring(L, mysql_get_client_info());
    lua_setfield(L, -2, "client_info");
    lua_pushcfunction(L, l_monotonic);
    lua_setfield(L, -2, "monotonic");
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++)
        parts[i].open(L);
    return 1;
}
