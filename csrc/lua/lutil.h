/* Helpers shared by the Lua-facing files: argument checks that raise
 * scoped's ArgumentError, and the error tables every failure is raised as. */
#ifndef SCOPED_LUTIL_H
#define SCOPED_LUTIL_H

#include "compat.h"
#include "conn.h"

/* Registry keys */
#define SC_ERROR_MT "scoped.Error"

/* Raises {kind = kind, message = ...} with the error metatable. */
int scl_raise(lua_State *L, const char *kind, const char *fmt, ...);
/* Pushes that error table without raising it. */
void scl_push_error(lua_State *L, const char *kind, const char *fmt, ...);
#define scl_argerror(L, ...) scl_raise((L), "ArgumentError", __VA_ARGS__)

/* Pushes a database error table: kind from the code, code, sqlstate,
 * message, statement, params (the value at params_idx unless 0),
 * connection_invalidated. */
void scl_push_dberror(lua_State *L, const sc_error *e, const char *statement, size_t stmtlen,
                     int params_idx, int invalidated);

/* Raises the database error of a failed connect, with its one-line hint
 * (bad credentials, server down, unknown database) written by the function
 * exc.lua registers (core.set_hinter), which gets the error table and the
 * URL table at url_idx (0: none); it never puts the password anywhere. */
int scl_raise_connect_error(lua_State *L, const sc_error *e, int url_idx);
/* Calls that function on the error table at the top of the stack (a pool
 * TimeoutError: its fields say the counts). */
void scl_add_hint(lua_State *L, int url_idx);

/* Argument checks raising ArgumentError that names the argument. */
const char *scl_check_string(lua_State *L, int i, const char *what, size_t *len);
lua_Number scl_check_number(lua_State *L, int i, const char *what);
void scl_check_table(lua_State *L, int i, const char *what);
/* Returns the userdata at i if it has metatable tname, else raises. */
void *scl_check_udata(lua_State *L, int i, const char *tname, const char *what);

/* Sets the functions of l into the table at the top of the stack as
 * closures over the metatable at mt_idx, for scl_check_self. */
void scl_setmethods(lua_State *L, int mt_idx, const luaL_Reg *l);
/* The method's self (argument 1) if its metatable is the one the method
 * closes over: an identity check, where luaL_testudata hashes the type name
 * into the registry on every call (the hot path calls this per statement).
 * Else ArgumentError "use a colon: what:method(...)" (a call with a dot). */
void *scl_check_self(lua_State *L, const char *what);
/* The same, naming the method (NULL: found as scl_check_self finds it). */
void *scl_check_self_as(lua_State *L, const char *what, const char *name);
/* The same identity check for a metamethod (__gc, __index, ...), which
 * getmetatable() hands to anyone: the userdata at 1 if its metatable is
 * upvalue 1, else ArgumentError naming the metamethod. A finalizer passes
 * on its own type whatever state the object is in. */
void *scl_check_meta_self(lua_State *L, const char *mm, const char *what);

/* URL tables (lurl.c). Builds an sc_url from the Lua URL table at idx
 * (fields as core.parse_url returns them); raises ArgumentError on a bad
 * field. */
void scl_url_from_lua(lua_State *L, int idx, sc_url *u);
/* Pushes an empty sc_url owned by a userdata that frees it when collected
 * (reading a URL table may raise half-way). */
sc_url *scl_url_push_owned(lua_State *L);

/* The NULL lightuserdata: scoped.null == ngx.null == cjson.null */
static inline int scl_isnull(lua_State *L, int i)
{
    return lua_islightuserdata(L, i) && lua_touserdata(L, i) == NULL;
}

/* Each binding file's part of scoped.core, run in order by the table in
 * lcore.c (where a new file registers). */
int scl_open_url(lua_State *L);
int scl_open_conn(lua_State *L);
int scl_open_result(lua_State *L);
int scl_open_stream(lua_State *L);
int scl_open_pool(lua_State *L);
int scl_open_registry(lua_State *L);
int scl_open_lease(lua_State *L);
int scl_open_hints(lua_State *L);

#endif
