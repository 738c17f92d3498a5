#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "lutil.h"

static void set_error_mt(lua_State *L)
{
    luaL_getmetatable(L, SC_ERROR_MT);
    lua_setmetatable(L, -2);
}

static void push_verror(lua_State *L, const char *kind, const char *fmt, va_list ap)
{
    lua_createtable(L, 0, 3);
    lua_pushstring(L, kind);
    lua_setfield(L, -2, "kind");
    lua_pushvfstring(L, fmt, ap);
    lua_setfield(L, -2, "message");
    set_error_mt(L);
}

void scl_push_error(lua_State *L, const char *kind, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    push_verror(L, kind, fmt, ap);
    va_end(ap);
}

int scl_raise(lua_State *L, const char *kind, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    push_verror(L, kind, fmt, ap);
    va_end(ap);
    return lua_error(L);
}

void scl_push_dberror(lua_State *L, const sc_error *e, const char *statement, size_t stmtlen,
                     int params_idx, int invalidated)
{
    if (params_idx < 0)
        params_idx = lua_gettop(L) + params_idx + 1;
    lua_createtable(L, 0, 8);
    lua_pushstring(L, sc_error_kind(e->code));
    lua_setfield(L, -2, "kind");
    lua_pushinteger(L, (lua_Integer)e->code);
    lua_setfield(L, -2, "code");
    lua_pushstring(L, e->sqlstate);
    lua_setfield(L, -2, "sqlstate");
    lua_pushstring(L, e->message);
    lua_setfield(L, -2, "message");
    if (statement != NULL) {
        lua_pushlstring(L, statement, stmtlen);
        lua_setfield(L, -2, "statement");
    }
    if (params_idx > 0 && !lua_isnoneornil(L, params_idx)) {
        lua_pushvalue(L, params_idx);
        lua_setfield(L, -2, "params");
    }
    lua_pushboolean(L, invalidated);
    lua_setfield(L, -2, "connection_invalidated");
    set_error_mt(L);
}

/* The hint writer exc.lua registers (core.set_hinter), in the registry. */
static const char hinter_key = 'h';

static int l_set_hinter(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TFUNCTION);
    lua_pushlightuserdata(L, (void *)&hinter_key);
    lua_pushvalue(L, 1);
    lua_rawset(L, LUA_REGISTRYINDEX);
    return 0;
}

void scl_add_hint(lua_State *L, int url_idx)
{
    if (url_idx < 0)
        url_idx = lua_gettop(L) + url_idx + 1;
    int err = lua_gettop(L);
    lua_pushlightuserdata(L, (void *)&hinter_key);
    lua_rawget(L, LUA_REGISTRYINDEX);
    if (!lua_isfunction(L, -1)) {
        lua_pop(L, 1);
        return;
    }
    lua_pushvalue(L, err);
    if (url_idx > 0)
        lua_pushvalue(L, url_idx);
    else
        lua_pushnil(L);
    /* a hint must never replace the error it explains */
    if (lua_pcall(L, 2, 0, 0) != 0)
        lua_pop(L, 1);
}

int scl_raise_connect_error(lua_State *L, const sc_error *e, int url_idx)
{
    if (url_idx < 0)
        url_idx = lua_gettop(L) + url_idx + 1;
    scl_push_dberror(L, e, NULL, 0, 0, 0);
    scl_add_hint(L, url_idx);
    return lua_error(L);
}

int scl_open_hints(lua_State *L)
{
    lua_pushcfunction(L, l_set_hinter);
    lua_setfield(L, -2, "set_hinter");
    return 0;
}

static const char *type_of(lua_State *L, int i)
{
    return lua_typename(L, lua_type(L, i));
}

const char *scl_check_string(lua_State *L, int i, const char *what, size_t *len)
{
    if (lua_type(L, i) != LUA_TSTRING)
        scl_argerror(L, "%s must be a string, got %s", what, type_of(L, i));
    return lua_tolstring(L, i, len);
}

lua_Number scl_check_number(lua_State *L, int i, const char *what)
{
    if (lua_type(L, i) != LUA_TNUMBER)
        scl_argerror(L, "%s must be a number, got %s", what, type_of(L, i));
    return lua_tonumber(L, i);
}

void scl_check_table(lua_State *L, int i, const char *what)
{
    if (lua_type(L, i) != LUA_TTABLE)
        scl_argerror(L, "%s must be a table, got %s", what, type_of(L, i));
}

void *scl_check_udata(lua_State *L, int i, const char *tname, const char *what)
{
    void *p = scl_testudata(L, i, tname);
    if (p == NULL)
        scl_argerror(L, "%s must be a %s, got %s", what, tname, type_of(L, i));
    return p;
}

void scl_setmethods(lua_State *L, int mt_idx, const luaL_Reg *l)
{
    if (mt_idx < 0)
        mt_idx = lua_gettop(L) + mt_idx + 1;
    for (; l->name != NULL; l++) {
        lua_pushvalue(L, mt_idx);
        lua_pushcclosure(L, l->func, 1);
        lua_setfield(L, -2, l->name);
    }
}

/* The userdata at 1 if its metatable is upvalue 1 (the one the function
 * closes over), else NULL. */
static inline void *upvalue_self(lua_State *L)
{
    void *p = lua_touserdata(L, 1);
    if (p != NULL && lua_getmetatable(L, 1)) {
        int same = lua_rawequal(L, -1, lua_upvalueindex(1));
        lua_pop(L, 1);
        if (same)
            return p;
    }
    return NULL;
}

/* The key under which the method table at t holds the running function
 * (pushed at f), or NULL. */
static const char *key_of(lua_State *L, int t, int f)
{
    lua_pushnil(L);
    while (lua_next(L, t) != 0) {
        if (lua_rawequal(L, -1, f) && lua_type(L, -2) == LUA_TSTRING) {
            const char *k = lua_tostring(L, -2); /* the table holds the string */
            lua_pop(L, 2);
            return k;
        }
        lua_pop(L, 1);
    }
    return NULL;
}

/* The running method's name, found in its class's method table: the
 * __index of the metatable it closes over (upvalue 1), or the table a
 * function __index closes over (Result's). */
static const char *method_name(lua_State *L)
{
    lua_Debug ar;
    if (!lua_checkstack(L, 6) || !lua_getstack(L, 0, &ar) || !lua_getinfo(L, "f", &ar))
        return NULL;
    int f = lua_gettop(L);
    const char *name = NULL;
    if (lua_istable(L, lua_upvalueindex(1))) {
        lua_getfield(L, lua_upvalueindex(1), "__index");
        if (lua_iscfunction(L, -1) && lua_getupvalue(L, -1, 1) != NULL)
            lua_remove(L, -2);
        if (lua_istable(L, -1))
            name = key_of(L, lua_gettop(L), f);
    }
    return name; /* the strings stay on the stack until the error is raised */
}

/* The error of a method called with a dot (out of the checks' way: they
 * are on every statement's path). The method's name, looked up only here:
 * given, or found in its class's methods, or as its caller wrote it. */
static void not_self(lua_State *L, const char *what, const char *name)
{
    lua_Debug ar;
    /* what self is, before method_name pushes anything */
    int none = lua_isnoneornil(L, 1);
    const char *type = luaL_typename(L, 1);
    if (name == NULL)
        name = method_name(L);
    if (name == NULL && lua_getstack(L, 0, &ar) && lua_getinfo(L, "n", &ar))
        name = ar.name;
    scl_argerror(L, "use a colon: %s:%s(...) (self is %s%s, not %s %s)", what,
                 name != NULL ? name : "method", none ? "" : "a ", type,
                 strchr("AEIOU", what[0]) != NULL ? "an" : "a", what);
}

void *scl_check_self(lua_State *L, const char *what)
{
    void *p = upvalue_self(L);
    if (p == NULL)
        not_self(L, what, NULL);
    return p;
}

void *scl_check_self_as(lua_State *L, const char *what, const char *name)
{
    void *p = upvalue_self(L);
    if (p == NULL)
        not_self(L, what, name);
    return p;
}

void *scl_check_meta_self(lua_State *L, const char *mm, const char *what)
{
    void *p = upvalue_self(L);
    if (p == NULL)
        scl_argerror(L, "%s of a %s called with a %s", mm, what, luaL_typename(L, 1));
    return p;
}
