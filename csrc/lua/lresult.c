/* The Result of one statement. Every row of every result set is decoded
 * into Lua before execute returns, as mysqlclient's default cursor does
 * (it converts all rows at execute time): rows are read one by one off the
 * connection (mysql_use_result: no second, client-side copy of the rows
 * as mysql_store_result makes) and the MYSQL_RES is freed at once. So a
 * Result holds no C resource and needs no finalizer (a finalizer is much
 * of what a small result costs the garbage collector), the connection is
 * free again at once ("Commands out of sync" cannot happen), and rows stay
 * readable after the connection went back to the pool.
 *
 * Where the rows live: Lua 5.4: user value 1 is the rows list and user value
 * 2 the column info of a single result set; with several sets (a CALL) user
 * value 1 is {rows1, cols1, rows2, cols2, ...}. Lua 5.1/LuaJIT: the
 * environment table is that list, except for a single set: then it is the
 * rows list itself, with the cols hidden after the last row (a table of its
 * own per statement cost LuaJIT ~700 instructions), until all() hands the
 * list over and the cols become the environment. The column info ("cols") is a
 * table {row metatable, names, names blob} shared by every result with the
 * same column names (see push_cols). */
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lrow.h"

/* ---- where the sets are kept ---------------------------------------------- */

/* The values rows1, cols1, ..., rowsN, colsN on top of the stack (2n of
 * them) become the Result's (at ud) and are popped. */
static void store_sets(lua_State *L, int ud, const lresult *r)
{
    int nsets = r->nsets;
    if (nsets == 0)
        return;
#if LUA_VERSION_NUM >= 504
    if (nsets == 1) {
        lua_setiuservalue(L, ud, 2);
        lua_setiuservalue(L, ud, 1);
        return;
    }
#else
    if (nsets == 1) {
        lua_rawseti(L, -2, r->nrows + 1); /* rows[n + 1] = cols */
        lua_setfenv(L, ud);
        return;
    }
#endif
    lua_createtable(L, 2 * nsets, 0);
    lua_insert(L, -(2 * nsets) - 1);
    for (int i = 2 * nsets; i >= 1; i--)
        lua_rawseti(L, -(i + 1), i); /* the list sits below the i values left */
    scl_setuservalue(L, ud);
}

/* Pushes the rows list (part 0) or the cols (part 1) of set i. */
static void push_set_part(lua_State *L, int ud, const lresult *r, int i, int part)
{
#if LUA_VERSION_NUM >= 504
    if (r->nsets == 1) {
        lua_getiuservalue(L, ud, 1 + part);
        return;
    }
#else
    if (r->nsets == 1) {
        lua_getfenv(L, ud); /* the rows with the cols after them, or the cols once handed over */
        if (part == 1 && !r->handed) {
            lua_rawgeti(L, -1, r->nrows + 1);
            lua_remove(L, -2);
        }
        return;
    }
#endif
    scl_getuservalue(L, ud);
    lua_rawgeti(L, -1, 2 * i + 1 + part);
    lua_remove(L, -2);
}

static void drop_sets(lua_State *L, int ud, lresult *r)
{
    if (r->nsets > 0) {
#if LUA_VERSION_NUM >= 504
        lua_pushnil(L);
        lua_setiuservalue(L, ud, 1);
        lua_pushnil(L);
        lua_setiuservalue(L, ud, 2);
#else
        if (r->nsets == 1)
            push_set_part(L, ud, r, 0, 1); /* the shared cols: no new table */
        else
            lua_newtable(L); /* an environment must be a table */
        lua_setfenv(L, ud);
#endif
    }
    r->nsets = 0;
    r->cur = 0;
    r->pos = 1;
    r->nrows = 0;
}

/* Pushes the metatable for rows of the current set: __index maps a column
 * name to its position, and _fields / _asdict. */
static int row_index(lua_State *L)
{
    lua_pushvalue(L, 2);
    lua_rawget(L, lua_upvalueindex(1));
    if (lua_type(L, -1) == LUA_TNUMBER) {
        if (lua_type(L, 1) != LUA_TTABLE) /* getmetatable(row).__index(something else, name) */
            return scl_argerror(L, "__index of a row called with a %s", luaL_typename(L, 1));
        lua_rawget(L, 1); /* the column's position: the value */
    }
    return 1;
}

static int row_asdict(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    int n = (int)scl_rawlen(L, lua_upvalueindex(1));
    lua_createtable(L, 0, n);
    for (int i = 1; i <= n; i++) {
        lua_rawgeti(L, lua_upvalueindex(1), i);
        lua_rawgeti(L, 1, i);
        lua_rawset(L, -3);
    }
    return 1;
}

/* ---- column info and row metatables ------------------------------------------
 * Rows of the same columns share one metatable: __index maps a column name
 * to its position, and _fields / _asdict. The registry keeps them in a
 * direct-mapped cache of SC_COLS_SLOTS slots (so ad hoc column lists cannot
 * grow it), found by a hash of the names computed in C and confirmed by one
 * comparison with the entry's names blob: a statement run again costs a
 * hash, two table reads and a memcmp. */
#define SC_COLS_SLOTS 1024

static char cols_cache_key; /* its address keys the cache in the registry */
static char result_mt_key;  /* and this one the Result metatable (also under SC_RESULT_MT) */

static uint32_t names_hash(const scl_column *f, unsigned n)
{
    uint32_t h = 2166136261u; /* FNV-1a over each length and name */
    for (unsigned i = 0; i < n; i++) {
        h = (h ^ (uint32_t)f[i].name_length) * 16777619u;
        for (unsigned j = 0; j < f[i].name_length; j++)
            h = (h ^ (unsigned char)f[i].name[j]) * 16777619u;
    }
    return h;
}

/* The blob is each name as a 4-byte length and its bytes: a name may hold
 * any byte, and no two lists of names give the same blob. */
static int blob_matches(const char *b, size_t blen, const scl_column *f, unsigned n)
{
    size_t p = 0;
    for (unsigned i = 0; i < n; i++) {
        uint32_t len = (uint32_t)f[i].name_length, stored;
        if (blen - p < 4 + (size_t)len)
            return 0;
        memcpy(&stored, b + p, 4);
        if (stored != len || memcmp(b + p + 4, f[i].name, len) != 0)
            return 0;
        p += 4 + (size_t)len;
    }
    return p == blen;
}

/* Pushes a new cols entry {mt, names, blob} for these columns. */
static void build_cols(lua_State *L, const scl_column *f, unsigned n)
{
    lua_createtable(L, 3, 0);          /* entry */
    lua_createtable(L, 0, 2);          /* mt */
    lua_createtable(L, 0, (int)n + 2); /* name -> position */
    lua_createtable(L, (int)n, 0);     /* names */
    for (unsigned i = 0; i < n; i++) {
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
    /* map._fields = names; map._asdict = closure(names), unless a column
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
    lua_pop(L, 1);
    lua_rawseti(L, -4, 2);             /* entry[2] = names */
    lua_pushcclosure(L, row_index, 1); /* consumes the map */
    lua_setfield(L, -2, "__index");
    lua_rawseti(L, -2, 1);             /* entry[1] = mt */
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (unsigned i = 0; i < n; i++) {
        uint32_t len = (uint32_t)f[i].name_length;
        luaL_addlstring(&b, (const char *)&len, 4);
        luaL_addlstring(&b, f[i].name, len);
    }
    luaL_pushresult(&b);
    lua_rawseti(L, -2, 3);             /* entry[3] = blob */
}

/* Pushes the cols entry for these columns, from the cache or made anew. */
static void push_cols(lua_State *L, const scl_column *f, unsigned n)
{
    int slot = (int)(names_hash(f, n) % SC_COLS_SLOTS) + 1;
    lua_pushlightuserdata(L, &cols_cache_key);
    lua_rawget(L, LUA_REGISTRYINDEX);
    if (!lua_istable(L, -1)) {
        lua_pop(L, 1);
        lua_createtable(L, SC_COLS_SLOTS, 0);
        lua_pushlightuserdata(L, &cols_cache_key);
        lua_pushvalue(L, -2);
        lua_rawset(L, LUA_REGISTRYINDEX);
    }
    lua_rawgeti(L, -1, slot); /* cache, entry? */
    if (lua_istable(L, -1)) {
        lua_rawgeti(L, -1, 3);
        size_t blen;
        const char *blob = lua_tolstring(L, -1, &blen);
        lua_pop(L, 1);
        if (blob != NULL && blob_matches(blob, blen, f, n)) {
            lua_remove(L, -2);
            return;
        }
    }
    lua_pop(L, 1);
    build_cols(L, f, n); /* cache, entry: it takes the slot */
    lua_pushvalue(L, -1);
    lua_rawseti(L, -3, slot);
    lua_remove(L, -2);
}

static unsigned char kind_of(const MYSQL_FIELD *f)
{
    switch (f->type) {
    case MYSQL_TYPE_TINY: case MYSQL_TYPE_SHORT: case MYSQL_TYPE_LONG:
    case MYSQL_TYPE_INT24: case MYSQL_TYPE_YEAR:
        return SC_KIND_INT;
    case MYSQL_TYPE_LONGLONG:
        return (f->flags & UNSIGNED_FLAG) ? SC_KIND_UINT : SC_KIND_INT;
    case MYSQL_TYPE_FLOAT: case MYSQL_TYPE_DOUBLE:
        return SC_KIND_FLOAT;
    default: /* DECIMAL stays exact as text; dates are the server's text */
        return SC_KIND_STRING;
    }
}

/* Pushes the list of every row of res, each with the metatable at mt. */
static int push_rows(lua_State *L, MYSQL_RES *res, const scl_column *cols, unsigned n, int mt)
{
    /* room for one row: mysql_use_result cannot tell how many will come,
     * and most statements a request runs return one (an empty list grows
     * on its first row anyway) */
    lua_createtable(L, 1, 0);
    int count = 0;
    MYSQL_ROW row;
    while ((row = mysql_fetch_row(res)) != NULL) {
        unsigned long *lens = mysql_fetch_lengths(res);
        lua_createtable(L, (int)n, 0);
        for (unsigned i = 0; i < n; i++) {
            push_cell(L, cols[i].kind, row[i], lens[i]);
            lua_rawseti(L, -2, (int)i + 1);
        }
        lua_pushvalue(L, mt);
        lua_setmetatable(L, -2);
        lua_rawseti(L, -2, ++count);
    }
    return count;
}

/* A new Result with no sets, on top of the stack. */
static lresult *push_result(lua_State *L)
{
#if LUA_VERSION_NUM >= 504
    lresult *r = lua_newuserdatauv(L, sizeof *r, 2);
#else
    lresult *r = lua_newuserdata(L, sizeof *r);
#endif
    memset(r, 0, sizeof *r);
    /* the metatable by a lightuserdata key: no string to hash on LuaJIT */
    lua_pushlightuserdata(L, &result_mt_key);
    lua_rawget(L, LUA_REGISTRYINDEX);
    lua_setmetatable(L, -2);
    r->rowcount = -1;
    r->pos = 1;
    return r;
}

/* ---- collecting a statement's results -------------------------------------- */

int scl_result_collect(lua_State *L, sc_conn *c, sc_error *err)
{
    /* The first result is taken before anything is allocated: a Lua error
     * in an allocation (out of memory, or on LuaJIT a finalizer's error,
     * which it propagates) must find the unread reply in c->pending, for
     * sc_conn_drop_pending, not left on the socket. */
    MYSQL_RES *res = sc_conn_use_result(c, err);
    c->pending = res;
    lresult *r = push_result(L);
    int ud = lua_gettop(L);
    int first = 1;
    for (;;) {
        if (!first)
            res = sc_conn_use_result(c, err);
        if (res != NULL) {
            /* until freed below, the connection owns it: a Lua error in
             * between (out of memory, a finalizer's on LuaJIT) leaves it,
             * and its unread rows, for sc_conn_drop_pending. (A finalizer
             * that uses this connection meanwhile finds it busy: see
             * scl_lconn_guarded in lconn.h.) */
            c->pending = res;
            luaL_checkstack(L, 8, "too many result sets");
            unsigned n = mysql_num_fields(res);
            const MYSQL_FIELD *f = mysql_fetch_fields(res);
            scl_column on_stack[SC_COLS_ON_STACK];
            scl_column *cols = on_stack;
            if (n > SC_COLS_ON_STACK)
                cols = lua_newuserdata(L, n * sizeof *cols);
            for (unsigned i = 0; i < n; i++) {
                cols[i].name = f[i].name;
                cols[i].name_length = f[i].name_length;
                cols[i].kind = kind_of(&f[i]);
            }
            push_cols(L, cols, n);
            lua_rawgeti(L, -1, 1); /* cols, mt */
            int count = push_rows(L, res, cols, n, lua_gettop(L));
            lua_remove(L, -2);     /* cols, rows */
            lua_insert(L, -2);     /* rows, cols */
            if (cols != on_stack)
                lua_remove(L, -3); /* the userdata under them */
            c->pending = NULL;
            int failed = sc_conn_fetch_error(c, err);
            mysql_free_result(res);
            if (failed) {
                lua_settop(L, ud - 1);
                return -1;
            }
            if (first)
                r->rowcount = count;
            if (r->nsets == 0)
                r->nrows = count;
            r->nsets++;
        } else if (err->code != 0) {
            lua_settop(L, ud - 1); /* the half-built result is collected */
            return -1;
        } else if (first) {
            r->rowcount = (long long)sc_conn_affected_rows(c);
            r->lastrowid = sc_conn_insert_id(c);
        }
        first = 0;
        int more = sc_conn_next_result(c, err);
        if (more < 0) {
            lua_settop(L, ud - 1);
            return -1;
        }
        if (more == 0)
            break;
    }
    store_sets(L, ud, r);
    return 0;
}

void scl_result_set_counts(lua_State *L, int idx, long long rowcount, unsigned long long lastrowid)
{
    lresult *r = lua_touserdata(L, idx);
    r->rowcount = rowcount;
    r->lastrowid = lastrowid;
}

/* ---- a Result from rows decoded elsewhere ------------------------------------ */

static lua_Number number_field(lua_State *L, int t, const char *name, lua_Number dflt)
{
    lua_getfield(L, t, name);
    lua_Number v = dflt;
    if (!lua_isnil(L, -1)) {
        if (lua_type(L, -1) != LUA_TNUMBER)
            scl_argerror(L, "%s must be a number, got %s", name, luaL_typename(L, -1));
        v = lua_tonumber(L, -1);
    }
    lua_pop(L, 1);
    return v;
}

/* core.result_from_tables{rowcount =, lastrowid =, sets = {{keys = {name, ...},
 * rows = {row, ...}}, ...}} -> Result. Rows decoded in another Lua state
 * arrive as plain tables (a pool thread of the offload path, scoped/ngx.lua:
 * only plain tables cross between states); this makes them the Result
 * scl_result_collect would have made, with the same row metatables (from
 * the same cache), methods and errors. The row tables are taken over (each
 * gets its metatable); the lists holding them are new. */
static int l_result_from_tables(lua_State *L)
{
    scl_check_table(L, 1, "result");
    lua_settop(L, 1);
    lresult *r = push_result(L); /* 2 */
    lua_Number rowcount = number_field(L, 1, "rowcount", -1);
    r->rowcount = rowcount < 0 ? -1 : (long long)rowcount;
    lua_getfield(L, 1, "lastrowid");
    if (!lua_isnil(L, -1) && lua_type(L, -1) != LUA_TNUMBER)
        return scl_argerror(L, "lastrowid must be a number, got %s", luaL_typename(L, -1));
    r->lastrowid = (unsigned long long)lua_tointeger(L, -1);
    lua_pop(L, 1);
    lua_getfield(L, 1, "sets"); /* 3 */
    int nsets = 0;
    if (!lua_isnil(L, 3)) {
        if (!lua_istable(L, 3))
            return scl_argerror(L, "sets must be a table, got %s", luaL_typename(L, 3));
        nsets = (int)scl_rawlen(L, 3);
    }
    luaL_checkstack(L, 2 * nsets + 8, "too many result sets");
    for (int s = 1; s <= nsets; s++) {
        lua_rawgeti(L, 3, s);
        int set = lua_gettop(L);
        if (!lua_istable(L, set))
            return scl_argerror(L, "set %d must be a table, got %s", s, luaL_typename(L, set));
        lua_getfield(L, set, "keys"); /* set + 1 */
        if (!lua_istable(L, set + 1))
            return scl_argerror(L, "set %d: keys must be a table, got %s", s,
                               luaL_typename(L, set + 1));
        unsigned n = (unsigned)scl_rawlen(L, set + 1);
        scl_column on_stack[SC_COLS_ON_STACK];
        scl_column *cols = on_stack;
        if (n > SC_COLS_ON_STACK)
            cols = lua_newuserdata(L, n * sizeof *cols);
        for (unsigned i = 0; i < n; i++) {
            lua_rawgeti(L, set + 1, (int)i + 1);
            if (lua_type(L, -1) != LUA_TSTRING)
                return scl_argerror(L, "set %d: column name %d must be a string, got %s", s, (int)i + 1,
                                   luaL_typename(L, -1));
            /* the keys table keeps the string alive while cols points into it */
            cols[i].name = lua_tolstring(L, -1, &cols[i].name_length);
            cols[i].kind = SC_KIND_STRING; /* the cells are decoded already */
            lua_pop(L, 1);
        }
        push_cols(L, cols, n);
        int entry = lua_gettop(L);
        lua_rawgeti(L, entry, 1); /* the row metatable */
        lua_getfield(L, set, "rows");
        if (!lua_istable(L, -1))
            return scl_argerror(L, "set %d: rows must be a table, got %s", s, luaL_typename(L, -1));
        int nrows = (int)scl_rawlen(L, -1);
        lua_createtable(L, nrows, 0);
        for (int j = 1; j <= nrows; j++) {
            lua_rawgeti(L, -2, j);
            if (!lua_istable(L, -1))
                return scl_argerror(L, "set %d: row %d must be a table, got %s", s, j,
                                   luaL_typename(L, -1));
            lua_pushvalue(L, entry + 1);
            lua_setmetatable(L, -2);
            lua_rawseti(L, -2, j);
        }
        /* leave rows, cols in the set's two slots, as scl_result_collect does */
        lua_pushvalue(L, entry);
        lua_replace(L, set + 1);
        lua_replace(L, set);
        lua_settop(L, set + 1);
        if (s == 1)
            r->nrows = nrows;
        r->nsets++;
    }
    store_sets(L, 2, r);
    lua_settop(L, 2);
    return 1;
}

/* ---- methods ------------------------------------------------------------------ */

static lresult *check_result(lua_State *L)
{
    return scl_check_self(L, "Result");
}

static void check_rows(lua_State *L, const lresult *r)
{
    if (r->cur < r->nsets)
        return;
    if (r->closed)
        scl_raise(L, "ResourceClosedError", "This result object is closed.");
    scl_raise(L, "ResourceClosedError",
             "This result object does not return rows. It has been closed automatically.");
}

static int l_fetchone(lua_State *L)
{
    lresult *r = check_result(L);
    check_rows(L, r);
    if (r->pos > r->nrows) {
        lua_pushnil(L);
        return 1;
    }
    push_set_part(L, 1, r, r->cur, 0);
    lua_rawgeti(L, -1, r->pos++);
    return 1;
}

/* The next limit rows (all when limit < 0) as a new list; all of an
 * untouched set is the set's own list, handed over as it is. */
static int fetch_many(lua_State *L, lresult *r, long long limit)
{
    check_rows(L, r);
    long long left = r->nrows - r->pos + 1;
    if (limit < 0 && r->pos == 1) {
        push_set_part(L, 1, r, r->cur, 0);
#if LUA_VERSION_NUM < 502
        if (r->nsets == 1) { /* the cols leave the list for the environment */
            lua_rawgeti(L, -1, r->nrows + 1);
            lua_setfenv(L, 1);
            lua_pushnil(L);
            lua_rawseti(L, -2, r->nrows + 1);
            r->handed = 1;
        }
#endif
        r->pos = r->nrows + 1;
        return 1;
    }
    int n = (int)(limit < 0 || limit > left ? left : limit);
    if (n <= 0) {
        lua_newtable(L);
        return 1;
    }
    push_set_part(L, 1, r, r->cur, 0);
    lua_createtable(L, n, 0);
    for (int i = 1; i <= n; i++) {
        lua_rawgeti(L, -2, r->pos++);
        lua_rawseti(L, -2, i);
    }
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
    lua_Number n = lua_isnoneornil(L, 2) ? 1 : scl_check_number(L, 2, "size");
    if (n < 0 || n != n)
        return scl_argerror(L, "size must be a non-negative number");
    return fetch_many(L, r, n > 1e15 ? -1 : (long long)n);
}

static int l_keys(lua_State *L)
{
    lresult *r = check_result(L);
    if (r->cur >= r->nsets) {
        lua_newtable(L);
        return 1;
    }
    push_set_part(L, 1, r, r->cur, 1);
    lua_rawgeti(L, -1, 2); /* the shared names: the caller gets a copy */
    int n = (int)scl_rawlen(L, -1);
    lua_createtable(L, n, 0);
    for (int i = 1; i <= n; i++) {
        lua_rawgeti(L, -2, i);
        lua_rawseti(L, -2, i);
    }
    return 1;
}

static int l_nextset(lua_State *L)
{
    lresult *r = check_result(L);
    if (r->cur + 1 < r->nsets) {
        r->cur++;
        r->pos = 1;
        push_set_part(L, 1, r, r->cur, 0);
        r->nrows = (int)scl_rawlen(L, -1);
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
    drop_sets(L, 1, r);
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
        r->pos = r->nrows + 1;
    else
        l_close(L);
    return 0;
}

/* Fields read as properties; everything else comes from the methods table,
 * which scoped/result.lua extends with the friendly API. */
static int l_index(lua_State *L)
{
    const char *k = lua_tostring(L, 2);
    lua_pushvalue(L, 2);
    lua_rawget(L, lua_upvalueindex(1));
    if (!lua_isnil(L, -1) || k == NULL)
        return 1; /* a method: it checks its own self when called */
    /* a field of this very Result (upvalue 2: the metatable), never of a
     * userdata of another type handed to getmetatable(result).__index */
    lresult *r = lua_touserdata(L, 1);
    int mine = r != NULL && lua_getmetatable(L, 1) && lua_rawequal(L, -1, lua_upvalueindex(2));
    if (!mine)
        return scl_argerror(L, "__index of a Result called with a %s", luaL_typename(L, 1));
    lua_pop(L, 1);
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


/* ---- for lstream.c: the same column info and Result fields -------------- */

void scl_push_cols(lua_State *L, const scl_column *f, unsigned n)
{
    push_cols(L, f, n);
}

unsigned char scl_kind_of(const MYSQL_FIELD *f)
{
    return kind_of(f);
}

lresult *scl_push_result(lua_State *L)
{
    return push_result(L);
}

int scl_open_result(lua_State *L)
{
    lua_pushcfunction(L, l_result_from_tables);
    lua_setfield(L, -2, "result_from_tables");
    luaL_newmetatable(L, SC_RESULT_MT);
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, "result_mt"); /* core.result_mt: result.lua checks self against it */
    lua_pushlightuserdata(L, &result_mt_key);
    lua_pushvalue(L, -2);
    lua_rawset(L, LUA_REGISTRYINDEX);
    lua_newtable(L);
    scl_setmethods(L, -2, result_methods);
    lua_pushvalue(L, -1);
    lua_setfield(L, -4, "result_methods"); /* core.result_methods */
    lua_pushvalue(L, -2);
    lua_pushcclosure(L, l_index, 2); /* the methods, and the metatable to check self against */
    lua_setfield(L, -2, "__index");
    lua_pushliteral(L, "Result"); /* no __gc: a Result holds no C resource */
    lua_setfield(L, -2, "__name");
    lua_pop(L, 1);
    return 0;
}
