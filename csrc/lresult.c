#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lresult.h"

enum { K_INT, K_UINT, K_FLOAT, K_STRING };

/* Most results have one set of a few columns: those live inside the Result
 * userdata itself, so a statement allocates nothing here beyond what
 * libmariadb does (a CALL's further sets, and wide rows, are malloc'd). */
#define SC_INLINE_KINDS 24

typedef struct rset {
    MYSQL_RES *res;
    unsigned nfields;
    unsigned char *heap_kinds;                  /* when nfields > SC_INLINE_KINDS */
    unsigned char inline_kinds[SC_INLINE_KINDS]; /* how each column becomes a Lua value */
} rset;

static inline unsigned char *set_kinds(rset *s)
{
    return s->nfields > SC_INLINE_KINDS ? s->heap_kinds : s->inline_kinds;
}

typedef struct lresult {
    rset *sets;  /* &first, or a malloc'd array once a CALL returns more sets */
    rset first;
    int nsets, cur;
    int mt_for;  /* the set whose row metatable is the user value; -1 none */
    int closed;  /* close() was called: its sets are freed */
    long long rowcount;
    unsigned long long lastrowid;
} lresult;

static void free_sets(lresult *r)
{
    for (int i = 0; i < r->nsets; i++) {
        mysql_free_result(r->sets[i].res);
        free(r->sets[i].heap_kinds);
    }
    if (r->sets != &r->first)
        free(r->sets);
    r->sets = NULL;
    r->nsets = 0;
}

static int add_set(lresult *r, MYSQL_RES *res)
{
    rset *s;
    if (r->nsets == 0) {
        r->sets = &r->first;
    } else {
        s = malloc((size_t)(r->nsets + 1) * sizeof *s);
        if (s == NULL)
            return -1;
        memcpy(s, r->sets, (size_t)r->nsets * sizeof *s);
        if (r->sets != &r->first)
            free(r->sets);
        r->sets = s;
    }
    s = &r->sets[r->nsets];
    s->res = res;
    s->nfields = mysql_num_fields(res);
    s->heap_kinds = NULL;
    if (s->nfields > SC_INLINE_KINDS && (s->heap_kinds = malloc(s->nfields)) == NULL)
        return -1;
    r->nsets++;
    unsigned char *kinds = set_kinds(s);
    MYSQL_FIELD *f = mysql_fetch_fields(res);
    for (unsigned i = 0; i < s->nfields; i++) {
        unsigned char k = K_STRING;
        switch (f[i].type) {
        case MYSQL_TYPE_TINY: case MYSQL_TYPE_SHORT: case MYSQL_TYPE_LONG:
        case MYSQL_TYPE_INT24: case MYSQL_TYPE_YEAR:
            k = K_INT;
            break;
        case MYSQL_TYPE_LONGLONG:
            k = (f[i].flags & UNSIGNED_FLAG) ? K_UINT : K_INT;
            break;
        case MYSQL_TYPE_FLOAT: case MYSQL_TYPE_DOUBLE:
            k = K_FLOAT;
            break;
        default: /* DECIMAL stays exact as text; dates are the server's text */
            break;
        }
        kinds[i] = k;
    }
    return 0;
}

int sc_result_collect(lua_State *L, sc_conn *c, sc_error *err)
{
    lresult *r = sc_newuserdata(L, sizeof *r);
    memset(r, 0, sizeof *r);
    luaL_getmetatable(L, SC_RESULT_MT);
    lua_setmetatable(L, -2);
    r->mt_for = -1;
    r->rowcount = -1;
    int first = 1;
    for (;;) {
        MYSQL_RES *res = sc_conn_store_result(c, err);
        if (res != NULL) {
            if (add_set(r, res) != 0) {
                mysql_free_result(res);
                lua_pop(L, 1);
                return luaL_error(L, "out of memory");
            }
            if (first)
                r->rowcount = (long long)mysql_num_rows(res);
        } else if (err->code != 0) {
            lua_pop(L, 1); /* the half-built result is collected */
            return -1;
        } else if (first) {
            r->rowcount = (long long)mysql_affected_rows(c->my);
            r->lastrowid = mysql_insert_id(c->my);
        }
        first = 0;
        int more = sc_conn_next_result(c, err);
        if (more < 0) {
            lua_pop(L, 1);
            return -1;
        }
        if (more == 0)
            break;
    }
    return 0;
}

void sc_result_set_counts(lua_State *L, int idx, long long rowcount, unsigned long long lastrowid)
{
    lresult *r = lua_touserdata(L, idx);
    r->rowcount = rowcount;
    r->lastrowid = lastrowid;
}

/* ---- row decoding: the hot path of every fetch ------------------------- */

static int parse_int(const char *s, unsigned long len, long long *out)
{
    unsigned long i = 0;
    int neg = 0;
    unsigned long long v = 0;
    if (len > 0 && (s[0] == '-' || s[0] == '+')) {
        neg = s[0] == '-';
        i = 1;
    }
    if (i == len || len - i > 19)
        return -1;
    for (; i < len; i++) {
        unsigned d = (unsigned)(s[i] - '0');
        if (d > 9)
            return -1;
        v = v * 10 + d;
    }
    if (neg ? v > 9223372036854775808ULL : v > 9223372036854775807ULL)
        return -1;
    *out = neg ? (long long)(0 - v) : (long long)v;
    return 0;
}

/* The server's text of a DOUBLE as a double. Most values have at most 15
 * significant digits and a small exponent: then the digits as an integer
 * and the power of ten are both exact doubles, and one multiplication or
 * division rounds correctly (Clinger's fast path). Anything else goes to
 * strtod, which is exact but several times slower. */
static double parse_double(const char *s, unsigned long len)
{
    static const double pow10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                   1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                   1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
    unsigned long i = 0;
    int neg = 0, digits = 0, exp10 = 0;
    unsigned long long m = 0;
    if (i < len && (s[i] == '-' || s[i] == '+'))
        neg = s[i++] == '-';
    for (; i < len && s[i] >= '0' && s[i] <= '9'; i++, digits++)
        m = m * 10 + (unsigned)(s[i] - '0');
    if (i < len && s[i] == '.') {
        for (i++; i < len && s[i] >= '0' && s[i] <= '9'; i++, digits++, exp10--)
            m = m * 10 + (unsigned)(s[i] - '0');
    }
    if (i < len && (s[i] == 'e' || s[i] == 'E')) {
        int eneg = 0, e = 0;
        i++;
        if (i < len && (s[i] == '-' || s[i] == '+'))
            eneg = s[i++] == '-';
        for (; i < len && s[i] >= '0' && s[i] <= '9' && e < 10000; i++)
            e = e * 10 + (s[i] - '0');
        exp10 += eneg ? -e : e;
    }
    if (i != len || digits == 0 || digits > 15 || exp10 < -22 || exp10 > 22)
        return strtod(s, NULL); /* the row buffer is NUL-terminated */
    double v = (double)m;
    v = exp10 < 0 ? v / pow10[-exp10] : v * pow10[exp10];
    return neg ? -v : v;
}

static void push_cell(lua_State *L, unsigned char kind, const char *s, unsigned long len)
{
    if (s == NULL) {
        lua_pushlightuserdata(L, NULL);
        return;
    }
    switch (kind) {
    case K_INT:
    case K_UINT: {
        long long v;
        if (parse_int(s, len, &v) == 0) {
#if SC_HAS_INTEGERS
            lua_pushinteger(L, (lua_Integer)v);
            return;
#else
            /* a double holds integers exactly up to 2^53 */
            if (v <= 9007199254740992LL && v >= -9007199254740992LL) {
                lua_pushnumber(L, (lua_Number)v);
                return;
            }
#endif
        }
        break; /* BIGINT UNSIGNED past 2^63-1, or past 2^53 on LuaJIT */
    }
    case K_FLOAT:
        lua_pushnumber(L, parse_double(s, len));
        return;
    default:
        break;
    }
    lua_pushlstring(L, s, len);
}

/* Pushes the metatable for rows of the current set: __index maps a column
 * name to its position, and _fields / _asdict. */
static int row_index(lua_State *L)
{
    lua_pushvalue(L, 2);
    lua_rawget(L, lua_upvalueindex(1));
    if (lua_type(L, -1) == LUA_TNUMBER)
        lua_rawget(L, 1); /* the column's position: the value */
    return 1;
}

static int row_asdict(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    int n = (int)sc_rawlen(L, lua_upvalueindex(1));
    lua_createtable(L, 0, n);
    for (int i = 1; i <= n; i++) {
        lua_rawgeti(L, lua_upvalueindex(1), i);
        lua_rawgeti(L, 1, i);
        lua_rawset(L, -3);
    }
    return 1;
}

/* Row metatables are shared by every result with the same columns: the
 * registry keeps them by a key made of the column names, so a statement run
 * again costs one string lookup instead of three tables and two closures.
 * The cache is dropped when it grows past SC_ROWMT_CACHE (ad hoc column
 * lists must not grow it forever). */
#define SC_ROWMT_CACHE_KEY "scoped.rowmt_cache"
#define SC_ROWMT_CACHE 512

static void build_row_mt(lua_State *L, rset *s)
{
    MYSQL_FIELD *f = mysql_fetch_fields(s->res);
    lua_createtable(L, 0, 2);                 /* mt */
    lua_createtable(L, 0, (int)s->nfields + 2); /* name -> position */
    lua_createtable(L, (int)s->nfields, 0);   /* names */
    for (unsigned i = 0; i < s->nfields; i++) {
        lua_pushlstring(L, f[i].name, f[i].name_length);
        lua_pushvalue(L, -1);
        lua_rawseti(L, -3, (int)i + 1);
        lua_pushvalue(L, -1);
        lua_rawget(L, -4);
        if (lua_isnil(L, -1)) { /* the first of duplicate names wins */
            lua_pop(L, 1);
            lua_pushinteger(L, (lua_Integer)i + 1);
            lua_rawset(L, -4);
        } else {
            lua_pop(L, 2);
        }
    }
    /* map._fields = names; map._asdict = closure(names) unless a column
     * already has that name */
    lua_getfield(L, -2, "_fields");
    if (lua_isnil(L, -1)) {
        lua_pushvalue(L, -2);
        lua_setfield(L, -4, "_fields");
    }
    lua_pop(L, 1);
    lua_getfield(L, -2, "_asdict");
    if (lua_isnil(L, -1)) {
        lua_pushvalue(L, -2);
        lua_pushcclosure(L, row_asdict, 1);
        lua_setfield(L, -4, "_asdict");
    }
    lua_pop(L, 2); /* nil, names */
    lua_pushcclosure(L, row_index, 1);
    lua_setfield(L, -2, "__index");
}

static void push_row_mt(lua_State *L, int ud, lresult *r)
{
    if (r->mt_for == r->cur) {
        sc_getuservalue(L, ud);
        return;
    }
    rset *s = &r->sets[r->cur];
    MYSQL_FIELD *f = mysql_fetch_fields(s->res);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (unsigned i = 0; i < s->nfields; i++) {
        luaL_addlstring(&b, f[i].name, f[i].name_length);
        luaL_addchar(&b, '\0'); /* a name may hold any byte but cannot end early */
    }
    luaL_pushresult(&b);
    lua_getfield(L, LUA_REGISTRYINDEX, SC_ROWMT_CACHE_KEY);
    if (!lua_istable(L, -1)) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_setfield(L, LUA_REGISTRYINDEX, SC_ROWMT_CACHE_KEY);
    }
    lua_pushvalue(L, -2);
    lua_rawget(L, -2); /* key, cache, mt? */
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_getfield(L, -1, "n");
        lua_Integer n = lua_tointeger(L, -1) + 1;
        lua_pop(L, 1);
        if (n > SC_ROWMT_CACHE) {
            lua_pop(L, 1);
            lua_newtable(L);
            lua_pushvalue(L, -1);
            lua_setfield(L, LUA_REGISTRYINDEX, SC_ROWMT_CACHE_KEY);
            n = 1;
        }
        lua_pushinteger(L, n);
        lua_setfield(L, -2, "n");
        build_row_mt(L, s);
        lua_pushvalue(L, -3);
        lua_pushvalue(L, -2);
        lua_rawset(L, -4);
    }
    lua_replace(L, -3); /* mt, cache */
    lua_pop(L, 1);
    lua_pushvalue(L, -1);
    sc_setuservalue(L, ud);
    r->mt_for = r->cur;
}

static int push_row(lua_State *L, rset *s, int mt)
{
    MYSQL_ROW row = mysql_fetch_row(s->res);
    if (row == NULL)
        return 0;
    unsigned long *lens = mysql_fetch_lengths(s->res);
    const unsigned char *kinds = set_kinds(s);
    lua_createtable(L, (int)s->nfields, 0);
    for (unsigned i = 0; i < s->nfields; i++) {
        push_cell(L, kinds[i], row[i], lens[i]);
        lua_rawseti(L, -2, (int)i + 1);
    }
    lua_pushvalue(L, mt);
    lua_setmetatable(L, -2);
    return 1;
}

static lresult *check_result(lua_State *L)
{
    return sc_check_self(L, "result");
}

static rset *current_set(lua_State *L, lresult *r)
{
    if (r->cur >= r->nsets) {
        if (r->closed)
            sc_raise(L, "ResourceClosedError", "This result object is closed.");
        sc_raise(L, "ResourceClosedError",
                 "This result object does not return rows. It has been closed automatically.");
    }
    return &r->sets[r->cur];
}

static int l_fetchone(lua_State *L)
{
    lresult *r = check_result(L);
    rset *s = current_set(L, r);
    push_row_mt(L, 1, r);
    if (!push_row(L, s, lua_gettop(L)))
        lua_pushnil(L);
    return 1;
}

static int fetch_many(lua_State *L, lresult *r, long long limit)
{
    rset *s = current_set(L, r);
    push_row_mt(L, 1, r);
    int mt = lua_gettop(L);
    lua_createtable(L, limit > 0 && limit < 1024 ? (int)limit : 0, 0);
    int n = 0;
    while ((limit < 0 || n < limit) && push_row(L, s, mt))
        lua_rawseti(L, -2, ++n);
    return 1;
}

static int l_fetchall(lua_State *L)
{
    lresult *r = check_result(L);
    return fetch_many(L, r, -1);
}

static int l_fetchmany(lua_State *L)
{
    lresult *r = check_result(L);
    lua_Number n = lua_isnoneornil(L, 2) ? 1 : sc_check_number(L, 2, "size");
    if (n < 0 || n != n)
        return sc_argerror(L, "size must be a non-negative number");
    return fetch_many(L, r, n > 1e15 ? -1 : (long long)n);
}

static int l_keys(lua_State *L)
{
    lresult *r = check_result(L);
    if (r->cur >= r->nsets) {
        lua_newtable(L);
        return 1;
    }
    rset *s = &r->sets[r->cur];
    MYSQL_FIELD *f = mysql_fetch_fields(s->res);
    lua_createtable(L, (int)s->nfields, 0);
    for (unsigned i = 0; i < s->nfields; i++) {
        lua_pushlstring(L, f[i].name, f[i].name_length);
        lua_rawseti(L, -2, (int)i + 1);
    }
    return 1;
}

static int l_nextset(lua_State *L)
{
    lresult *r = check_result(L);
    if (r->cur + 1 < r->nsets) {
        r->cur++;
        lua_pushboolean(L, 1);
    } else {
        r->cur = r->nsets;
        lua_pushboolean(L, 0);
    }
    return 1;
}

static int l_close(lua_State *L)
{
    lresult *r = check_result(L);
    free_sets(r);
    r->cur = 0;
    r->closed = 1; /* rowcount and lastrowid stay readable, as SQLAlchemy's */
    return 0;
}

/* What first(), one() and scalar() do after reading: with more result sets
 * to come (CALL) only the current one is spent, so nextset() still works;
 * otherwise the result closes, as SQLAlchemy's does. */
static int l_soft_close(lua_State *L)
{
    lresult *r = check_result(L);
    if (r->cur + 1 < r->nsets)
        mysql_data_seek(r->sets[r->cur].res, mysql_num_rows(r->sets[r->cur].res));
    else
        l_close(L);
    return 0;
}

static int l_gc(lua_State *L)
{
    lresult *r = lua_touserdata(L, 1);
    free_sets(r);
    return 0;
}

/* Fields read as properties; everything else comes from the methods table,
 * which scoped/result.lua extends with the friendly API. */
static int l_index(lua_State *L)
{
    lresult *r = lua_touserdata(L, 1);
    const char *k = lua_tostring(L, 2);
    lua_pushvalue(L, 2);
    lua_rawget(L, lua_upvalueindex(1));
    if (!lua_isnil(L, -1) || k == NULL)
        return 1;
    if (strcmp(k, "rowcount") == 0) {
        lua_pushinteger(L, (lua_Integer)(r->rowcount < 0 ? -1 : r->rowcount));
    } else if (strcmp(k, "lastrowid") == 0) {
        lua_pushinteger(L, (lua_Integer)r->lastrowid);
    } else if (strcmp(k, "returns_rows") == 0) {
        lua_pushboolean(L, r->cur < r->nsets);
    } else {
        lua_pushnil(L);
    }
    return 1;
}

static const luaL_Reg result_methods[] = {
    {"fetchone", l_fetchone},
    {"fetchmany", l_fetchmany},
    {"fetchall", l_fetchall},
    {"all", l_fetchall},
    {"keys", l_keys},
    {"nextset", l_nextset},
    {"close", l_close},
    {"_soft_close", l_soft_close},
    {NULL, NULL},
};

int sc_open_result(lua_State *L)
{
    luaL_newmetatable(L, SC_RESULT_MT);
    lua_newtable(L);
    sc_setmethods(L, -2, result_methods);
    lua_pushvalue(L, -1);
    lua_setfield(L, -4, "result_methods"); /* core.result_methods */
    lua_pushcclosure(L, l_index, 1);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushliteral(L, "Result");
    lua_setfield(L, -2, "__name");
    lua_pop(L, 1);
    return 0;
}
