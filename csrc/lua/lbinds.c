/* Rendering binds into a statement: the Lua side of binds.c. */
#include <limits.h>
#include <math.h>
#include <string.h>

#include "lconn.h"

static void oom(lua_State *L)
{
    luaL_error(L, "out of memory building a statement");
}

/* lua_pushlstring returns nothing on Lua 5.1 */
static const char *push_name(lua_State *L, const char *name, size_t len)
{
    lua_pushlstring(L, name, len);
    return lua_tostring(L, -1);
}

static void bind_error(lua_State *L, const char *name, size_t namelen, int pos, const char *what)
{
    if (name != NULL)
        scl_argerror(L, "bind parameter '%s': %s", push_name(L, name, namelen), what);
    scl_argerror(L, "positional bind parameter %d: %s", pos, what);
}

static void append_number(lua_State *L, sc_buf *b, int idx, const char *name, size_t namelen,
                          int pos)
{
    int rc;
#if SC_HAS_INTEGERS
    if (lua_isinteger(L, idx))
        rc = sc_format_integer(b, (long long)lua_tointeger(L, idx));
    else
        rc = sc_format_float(b, (double)lua_tonumber(L, idx));
#else
    /* LuaJIT has one number type: integral values go as integers */
    double v = (double)lua_tonumber(L, idx);
    if (v == floor(v) && fabs(v) < 9.2e18)
        rc = sc_format_integer(b, (long long)v);
    else
        rc = sc_format_float(b, v);
#endif
    if (rc == -2)
        oom(L);
    if (rc == -1)
        bind_error(L, name, namelen, pos, "SQL has no inf or nan");
}

/* Whether the table at idx binds as an IN list: an array, its keys exactly
 * 1..#t, with no metatable or one without __index and __tostring (so
 * lua-cjson's array_mt passes, objects and classes do not). Anything else
 * in a bind slot -- a JSON object, an object with __tostring -- is an
 * error naming the bind, never NULL or an empty list by accident. */
static const char *not_a_list(lua_State *L, int idx, size_t n)
{
    if (lua_getmetatable(L, idx)) {
        lua_pushliteral(L, "__tostring");
        lua_rawget(L, -2);
        lua_pushliteral(L, "__index");
        lua_rawget(L, -3);
        int object = !lua_isnil(L, -1) || !lua_isnil(L, -2);
        lua_pop(L, 3);
        if (object)
            return "a table with a metatable (an object) cannot be bound; "
                   "pass a string, a number or an array (an IN list)";
    }
    size_t keys = 0;
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        lua_pop(L, 1);
        lua_Number k = lua_type(L, -1) == LUA_TNUMBER ? lua_tonumber(L, -1) : 0;
        if (!(k >= 1 && k <= (lua_Number)n && k == floor(k)) || ++keys > n) {
            lua_pop(L, 1);
            return "a table that is not an array (keys other than 1..n) cannot be bound; "
                   "an array binds as an IN list";
        }
    }
    return keys == n ? NULL : "a table that is not an array cannot be bound";
}

static void append_value(lua_State *L, sc_buf *b, int idx, int cs, const char *name,
                         size_t namelen, int pos, int in_list)
{
    int rc = 0;
    switch (lua_type(L, idx)) {
    case LUA_TNIL:
        rc = sc_buf_add(b, "NULL", 4);
        break;
    case LUA_TBOOLEAN:
        rc = sc_buf_add(b, lua_toboolean(L, idx) ? "1" : "0", 1);
        break;
    case LUA_TNUMBER:
        append_number(L, b, idx, name, namelen, pos);
        break;
    case LUA_TSTRING: {
        size_t len;
        const char *s = lua_tolstring(L, idx, &len);
        rc = sc_render_string(b, s, len, cs);
        break;
    }
    case LUA_TLIGHTUSERDATA:
        if (lua_touserdata(L, idx) != NULL)
            bind_error(L, name, namelen, pos, "unsupported value of type lightuserdata");
        rc = sc_buf_add(b, "NULL", 4);
        break;
    case LUA_TTABLE: {
        if (in_list)
            bind_error(L, name, namelen, pos, "a list inside a list cannot be bound");
        size_t len = scl_rawlen(L, idx);
        const char *why = len > INT_MAX ? "the list is too long" : not_a_list(L, idx, len);
        if (why != NULL)
            bind_error(L, name, namelen, pos, why);
        int n = (int)len;
        if (n == 0) {
            /* an always-empty set: `x IN :ids` is false and `x NOT IN :ids`
             * true, as SQLAlchemy's empty IN, and never a syntax error */
            rc = sc_buf_add(b, "(SELECT 1 FROM DUAL WHERE 1=0)", 30);
            break;
        }
        if (sc_buf_add(b, "(", 1) != 0)
            oom(L);
        for (int i = 1; i <= n; i++) {
            lua_rawgeti(L, idx, i);
            append_value(L, b, lua_gettop(L), cs, name, namelen, pos, 1);
            lua_pop(L, 1);
            if (sc_buf_add(b, i < n ? "," : ")", 1) != 0)
                oom(L);
        }
        break;
    }
    default:
        lua_pushfstring(L, "unsupported value of type %s", luaL_typename(L, idx));
        bind_error(L, name, namelen, pos, lua_tostring(L, -1));
    }
    if (rc != 0)
        oom(L);
}

void scl_render_plan(lua_State *L, sc_buf *b, const sc_bind_plan *plan, const char *sql, int params,
                    int cs)
{
    int arity = 0;
    if (plan->npositional) {
        if (params == 0)
            scl_argerror(L, "A value is required for positional bind parameter 1");
        lua_getfield(L, params, "n");
        if (lua_type(L, -1) == LUA_TNUMBER) {
            lua_Number n = lua_tonumber(L, -1);
            if (!(n >= 0 && n <= INT_MAX && n == floor(n)))
                scl_argerror(L, "params.n must be a whole number from 0 to %d", INT_MAX);
            arity = (int)n;
        } else {
            arity = (int)scl_rawlen(L, params);
        }
        lua_pop(L, 1);
        if ((size_t)arity < plan->npositional)
            scl_argerror(L, "A value is required for positional bind parameter %d", arity + 1);
        if ((size_t)arity > plan->npositional)
            scl_argerror(L, "%d positional bind values given for %d placeholders", arity,
                        (int)plan->npositional);
    }
    int pos = 0;
    for (size_t t = 0; t < plan->n; t++) {
        const sc_bind_token *tok = &plan->toks[t];
        if (tok->kind == SC_TOK_SQL) {
            if (sc_buf_add(b, sql + tok->start, tok->len) != 0)
                oom(L);
        } else if (tok->kind == SC_TOK_POSITIONAL) {
            pos++;
            lua_rawgeti(L, params, pos);
            append_value(L, b, lua_gettop(L), cs, NULL, 0, pos, 0);
            lua_pop(L, 1);
        } else {
            const char *name = sql + tok->start;
            if (params == 0)
                scl_argerror(L, "A value is required for bind parameter '%s'",
                            push_name(L, name, tok->len));
            lua_pushlstring(L, name, tok->len);
            lua_gettable(L, params);
            if (lua_isnil(L, -1))
                scl_argerror(L, "A value is required for bind parameter '%s'",
                            push_name(L, name, tok->len));
            append_value(L, b, lua_gettop(L), cs, name, tok->len, 0, 0);
            lua_pop(L, 1);
        }
    }
}
