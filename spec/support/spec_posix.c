/* spec_posix: fork, _exit and waitpid for the specs, on every runtime.
 * Debian packages lua-posix for the Lua 5.1 ABI only (LuaJIT); the fork
 * specs use this under Lua 5.4 (spec/support/posix.lua picks one). Built
 * next to the core as build/<lua>/spec_posix.so; not part of scoped. */
#include <errno.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>

/* fork() -> pid (0 in the child) | nil, message */
static int l_fork(lua_State *L)
{
    pid_t pid = fork();
    if (pid < 0) {
        lua_pushnil(L);
        lua_pushstring(L, strerror(errno));
        return 2;
    }
    lua_pushinteger(L, (lua_Integer)pid);
    return 1;
}

/* _exit(status): no atexit handlers, no stdio flush (the parent's buffers) */
static int l_exit(lua_State *L)
{
    _exit((int)luaL_optinteger(L, 1, 0));
    return 0;
}

/* wait(pid) -> "exited", status | "killed", signal | nil, message */
static int l_wait(lua_State *L)
{
    pid_t pid = (pid_t)luaL_checkinteger(L, 1);
    int status = 0;
    pid_t r;
    do {
        r = waitpid(pid, &status, 0);
    } while (r < 0 && errno == EINTR);
    if (r < 0) {
        lua_pushnil(L);
        lua_pushstring(L, strerror(errno));
        return 2;
    }
    if (WIFEXITED(status)) {
        lua_pushliteral(L, "exited");
        lua_pushinteger(L, WEXITSTATUS(status));
    } else {
        lua_pushliteral(L, "killed");
        lua_pushinteger(L, WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    }
    return 2;
}

int luaopen_spec_posix(lua_State *L)
{
    lua_newtable(L);
    lua_pushcfunction(L, l_fork);
    lua_setfield(L, -2, "fork");
    lua_pushcfunction(L, l_exit);
    lua_setfield(L, -2, "_exit");
    lua_pushcfunction(L, l_wait);
    lua_setfield(L, -2, "wait");
    return 1;
}
