/* The streaming Result (stream_results, yield_per): a Result whose rows
 * are read off the connection as the caller asks for them: the MYSQL_RES stays open in the connection (sc_conn_stream_open,
 * c->pending) and each row is built by the same push_cell, with the row
 * metatable of the same cols cache, as a buffered Result's. Its userdata
 * starts with an lresult, so the fields (rowcount, ...) read alike, and
 * its methods table falls back on the buffered one's, so that what
 * scoped/result.lua adds (first, one, scalar, iter, scalars, mappings,
 * partitions) works on both. It holds a C resource, so it alone has a
 * finalizer (and __close): whoever drops it unread gives the connection
 * back in sync (the rest drained).
 *
 * User values: 1 the RawConnection (kept alive while the stream is), 2 the
 * cols entry of the current result set, 3 the statement's text (for
 * errors), 4 the kinds of a later result set wider than the first (CALL).
 * Lua 5.1: a table {...} as the environment.
 *
 * A CALL's result sets are read one after the other: at the end of one,
 * the next one's header is read and it waits in c->pending (set_ended);
 * nextset() moves to it (reading and dropping what is left of the current
 * one first). The connection stays busy until the last set's end. Under
 * the non-blocking driver that header was read with the set's end by the
 * read ahead (sc_conn_nb_fetch, through io_wait): sc_conn_stream_next then
 * takes it without a read of its own.
 *
 * While it is open its connection is busy (lc->busy: SCL_STREAM_OPEN; the
 * reading method's name during a read, so that a finalizer or hook run
 * while a row is built can neither read nor close it: scl_lconn_end_stream
 * and scl_lconn_read_running tell a running read from one cut short by an
 * error, as for any busy call). */
#include <string.h>

#include "lconn.h"
#include "lrow.h"

#define SC_STREAM_MT "scoped.StreamResult"

typedef struct lstream {
    lresult r;         /* first: nsets 1 while rows may come, 0 once closed;
                        * r.rowcount -1 until the end of the first set is read */
    lconn *lc;         /* the connection while the stream is open on it, else NULL */
    long long count;   /* rows read of the current set */
    int yield_per;     /* the execution option (partitions' default size), 0 none */
    int set_no;        /* the current result set, 0 the first */
    int set_ended;     /* its rows are all read; the next set waits in c->pending */
    unsigned ncols;    /* the current set's */
    unsigned room;     /* kinds' size */
    unsigned char *kinds;         /* SC_KIND_* of each column: first_kinds, or user value 4 */
    unsigned char first_kinds[];  /* the first set's */
} lstream;

static char stream_mt_key;

static void stream_set_uv(lua_State *L, int ud, int i)
{
#if LUA_VERSION_NUM >= 504
    lua_setiuservalue(L, ud, i);
#else
    lua_getfenv(L, ud);
    lua_insert(L, -2);
    lua_rawseti(L, -2, i);
    lua_pop(L, 1);
#endif
}

static void stream_get_uv(lua_State *L, int ud, int i)
{
#if LUA_VERSION_NUM >= 504
    lua_getiuservalue(L, ud, i);
#else
    lua_getfenv(L, ud);
    lua_rawgeti(L, -1, i);
    lua_remove(L, -2);
#endif
}

/* The current set becomes res's columns: their kinds, and its cols entry
 * as user value 2 of the stream at ud. May raise (memory): s is unchanged
 * then, but for kinds' room. */
static void set_columns(lua_State *L, int ud, lstream *s, MYSQL_RES *res)
{
    unsigned n = mysql_num_fields(res);
    const MYSQL_FIELD *f = mysql_fetch_fields(res);
    if (n > s->room) { /* a later set with more columns than any before */
        s->kinds = lua_newuserdata(L, n);
        s->room = n;
        stream_set_uv(L, ud, 4);
    }
    scl_column on_stack[SC_COLS_ON_STACK];
    scl_column *cols = on_stack;
    if (n > SC_COLS_ON_STACK)
        cols = lua_newuserdata(L, n * sizeof *cols);
    for (unsigned i = 0; i < n; i++) {
        cols[i].name = f[i].name;
        cols[i].name_length = f[i].name_length;
        cols[i].kind = scl_kind_of(&f[i]);
    }
    scl_push_cols(L, cols, n);
    stream_set_uv(L, ud, 2);
    for (unsigned i = 0; i < n; i++)
        s->kinds[i] = cols[i].kind;
    if (cols != on_stack)
        lua_pop(L, 1);
    s->ncols = n;
}

int scl_stream_push(lua_State *L, lconn *lc, int sql_idx, int yield_per)
{
    sc_error err;
    size_t len;
    const char *sql = lua_tolstring(L, sql_idx, &len);
    /* as in scl_result_collect: the result is taken before anything is
     * allocated, and sits in c->pending until the stream holds it (a Lua
     * error in between leaves it there for the next call to drop) */
    MYSQL_RES *res = sc_conn_stream_open(lc->c, &err);
    if (res == NULL) {
        if (err.code != 0)
            return scl_lconn_raise_dberror(L, lc, &err, sql, len, 0);
        scl_push_result(L); /* no rows: an empty, closed-for-rows Result */
        return 1;
    }
    unsigned n = mysql_num_fields(res);
#if LUA_VERSION_NUM >= 504
    lstream *s = lua_newuserdatauv(L, sizeof *s + n, 4);
#else
    lstream *s = lua_newuserdata(L, sizeof *s + n);
#endif
    int ud = lua_gettop(L);
    memset(s, 0, sizeof *s);
    s->r.rowcount = -1;
    s->r.pos = 1;
    s->yield_per = yield_per;
    s->kinds = s->first_kinds;
    s->room = n;
#if LUA_VERSION_NUM < 504
    lua_createtable(L, 4, 0);
    lua_setfenv(L, ud);
#endif
    set_columns(L, ud, s, res);
    lua_pushvalue(L, 1); /* the RawConnection */
    stream_set_uv(L, ud, 1);
    lua_pushlstring(L, sql, len);
    stream_set_uv(L, ud, 3);
    lua_settop(L, ud);
    lua_pushlightuserdata(L, &stream_mt_key);
    lua_rawget(L, LUA_REGISTRYINDEX);
    lua_setmetatable(L, ud); /* the finalizer, once all is set */
    s->r.nsets = 1;
    s->lc = lc;
    lc->stream = s;
    return 1;
}

void scl_stream_detach(lconn *lc, int discard)
{
    lstream *s = lc->stream;
    if (s == NULL)
        return;
    if (lc->c != NULL) {
        if (lc->c->nb_step != SC_NB_NONE) {
            /* a read ahead (a row, or a CALL's next header) still waiting:
             * its coroutine is gone (the collector finalizes the stream).
             * As for any abandoned operation: the server session killed
             * (the procedure may sleep or hold locks), the connection
             * invalidated */
            scl_lnb_abandon(lc);
            discard = 1;
        }
        sc_conn_stream_close(lc->c, discard);
        lc->c->nb_stream = 0;
    }
    s->lc = NULL;
    s->r.nsets = 0; /* closed before its end: reading it raises ResourceClosedError */
    s->r.closed = 1;
    lc->stream = NULL;
    lc->busy = NULL;
}

static lstream *check_stream(lua_State *L)
{
    return scl_check_self(L, "result");
}

/* The connection of the streaming Result at idx of T, or NULL. */
lconn *scl_stream_conn_at(lua_State *T, int idx)
{
    lstream *s = lua_touserdata(T, idx);
    if (s == NULL || !lua_getmetatable(T, idx))
        return NULL;
    lua_pushlightuserdata(T, &stream_mt_key);
    lua_rawget(T, LUA_REGISTRYINDEX);
    int mine = lua_rawequal(T, -1, -2);
    lua_pop(T, 2);
    return mine ? s->lc : NULL;
}

static void check_stream_rows(lua_State *L, const lstream *s)
{
    if (s->r.nsets == 0)
        scl_raise(L, "ResourceClosedError", "This result object is closed.");
}

/* The end of the current set is read: the first set's row count becomes
 * the rowcount (DB-API's: -1 until then, as an unbuffered cursor's). */
static void end_of_set(lstream *s)
{
    if (s->set_no == 0)
        s->r.rowcount = s->count;
}

/* Checks that the stream at 1, open on lc, may be read now by the method
 * what (not from inside a read of it, not in a forked child) and marks lc
 * busy with what. */
static void begin_read(lua_State *L, lconn *lc, const char *what)
{
    if (lc->busy != SCL_STREAM_OPEN && scl_lconn_read_running(L, lc))
        scl_raise(L, "InvalidRequestError",
                  "This streaming Result is being read: %s() is running on it, and %s() "
                  "cannot be called from inside it (a finalizer, an event hook)",
                  lc->busy, what);
    if (scl_lconn_forked(lc))
        scl_lconn_raise_forked(L, lc);
    if (lc->owner.main != L)
        scl_lconn_set_read_owner(L, lc);
    lc->busy = what;
}

/* After sc_conn_stream_next failed (err): the stream is over, the
 * connection free (or broken); raises the DBAPIError. */
static int raise_read_error(lua_State *L, lconn *lc, sc_error *err)
{
    scl_stream_detach(lc, 0);
    stream_get_uv(L, 1, 3);
    size_t len;
    const char *sql = lua_tolstring(L, -1, &len);
    lc->busy = NULL;
    return scl_lconn_raise_dberror(L, lc, err, sql, len, 0);
}

/* Reads rows of the stream at 1: limit < 0 all that are left; list 0 the
 * next row (or nil), list 1 a new list of up to limit rows. what: the
 * method's name (the busy mark while it reads). */
static int stream_read(lua_State *L, lstream *s, long long limit, int list, const char *what)
{
    check_stream_rows(L, s);
    lconn *lc = s->lc;
    if (list)
        lua_createtable(L, limit > 0 && limit < 1024 ? (int)limit : 0, 0);
    if (lc == NULL || s->set_ended) { /* read to the end of the set already */
        if (!list)
            lua_pushnil(L);
        return 1;
    }
    stream_get_uv(L, 1, 2);
    lua_rawgeti(L, -1, 1); /* the row metatable */
    lua_remove(L, -2);
    int mt = lua_gettop(L);
    int out = mt - 1; /* the list (when list) */
    begin_read(L, lc, what);
    unsigned n = s->ncols;
    int i = 0;
    for (;;) {
        if (list && limit >= 0 && i >= limit)
            break;
        if (i > 0 && lc->c->nb_stream && !lc->c->ahead)
            break; /* non-blocking: only what was read ahead (scoped/nonblocking.lua) */
        MYSQL_ROW row;
        unsigned long *lens;
        sc_error err;
        int rc = sc_conn_stream_next(lc->c, &row, &lens, &err);
        if (rc == 1) {
            /* a finalizer run while the row is built finds the connection
             * busy with this read: nothing can free the row under it */
            lua_createtable(L, (int)n, 0);
            for (unsigned k = 0; k < n; k++) {
                push_cell(L, s->kinds[k], row[k], lens[k]);
                lua_rawseti(L, -2, (int)k + 1);
            }
            lua_pushvalue(L, mt);
            lua_setmetatable(L, -2);
            s->count++;
            if (!list)
                break;
            lua_rawseti(L, out, ++i);
            continue;
        }
        if (rc < 0)
            return raise_read_error(L, lc, &err);
        end_of_set(s);
        if (rc == 2) {
            s->set_ended = 1; /* a CALL's next set waits: the connection stays busy */
        } else {
            scl_stream_detach(lc, 0); /* read to its end: the connection is free */
            s->r.nsets = 1;           /* no more rows, not closed */
            s->r.closed = 0;
        }
        if (!list)
            lua_pushnil(L);
        break;
    }
    if (s->lc != NULL)
        lc->busy = SCL_STREAM_OPEN;
    if (list)
        lua_settop(L, out);
    return 1;
}

/* Reads and drops what is left of the current set (what: the busy mark
 * meanwhile). 2 when a next set waits (set_ended), 0 when the statement's
 * results are over (the stream detached, the connection free). An error
 * is raised when raise is set, else the stream just ends (as close()). */
static int skip_set(lua_State *L, lstream *s, const char *what, int raise)
{
    lconn *lc = s->lc;
    begin_read(L, lc, what);
    if (s->set_ended)
        return 2;
    for (;;) {
        MYSQL_ROW row;
        unsigned long *lens;
        sc_error err;
        int rc = sc_conn_stream_next(lc->c, &row, &lens, &err);
        if (rc == 1) {
            s->count++;
            continue;
        }
        if (rc < 0) {
            if (raise)
                return raise_read_error(L, lc, &err);
            scl_stream_detach(lc, 0);
            return 0;
        }
        end_of_set(s);
        if (rc == 2) {
            s->set_ended = 1;
            return 2;
        }
        scl_stream_detach(lc, 0);
        return 0;
    }
}

static int l_stream_fetchone(lua_State *L)
{
    lstream *s = check_stream(L);
    return stream_read(L, s, 1, 0, "fetchone");
}

static int l_stream_fetchall(lua_State *L)
{
    lstream *s = check_stream(L);
    return stream_read(L, s, -1, 1, "fetchall");
}

static int l_stream_fetchmany(lua_State *L)
{
    lstream *s = check_stream(L);
    lua_Number n = lua_isnoneornil(L, 2) ? 1 : scl_check_number(L, 2, "size");
    if (n < 0 || n != n)
        return scl_argerror(L, "size must be a non-negative number");
    return stream_read(L, s, n > 1e15 ? -1 : (long long)n, 1, "fetchmany");
}

/* The iterator iter() returns (upvalue 1: the stream). The generic for's
 * arguments are dropped and the stream goes to slot 1, where every
 * reader's frame has it (scl_lconn_read_running finds a read running by
 * it). */
static int l_stream_iter_next(lua_State *L)
{
    lua_settop(L, 0);
    lua_pushvalue(L, lua_upvalueindex(1));
    return stream_read(L, lua_touserdata(L, 1), 1, 0, "iter");
}

/* _iter(): what Result:iter() (result.lua) returns on a streaming Result:
 * a generic-for iterator over the rest of the current set, made in C (no
 * method lookup and no self check per row: W3 streamed, 5,886 -> 5,167
 * instructions a row on Lua 5.4, 4,414 -> 4,065 on LuaJIT). */
static int l_stream_iter(lua_State *L)
{
    check_stream(L);
    lua_settop(L, 1);
    lua_pushcclosure(L, l_stream_iter_next, 1);
    return 1;
}

static int l_stream_nextset(lua_State *L);
static int l_stream_soft_close(lua_State *L);

int scl_stream_is_reader(lua_CFunction f)
{
    return f == l_stream_fetchone || f == l_stream_fetchmany || f == l_stream_fetchall ||
           f == l_stream_nextset || f == l_stream_soft_close || f == l_stream_iter_next;
}

static int l_stream_keys(lua_State *L)
{
    lstream *s = check_stream(L);
    if (s->r.nsets == 0) {
        lua_newtable(L);
        return 1;
    }
    stream_get_uv(L, 1, 2);
    lua_rawgeti(L, -1, 2);
    int n = (int)scl_rawlen(L, -1);
    lua_createtable(L, n, 0);
    for (int i = 1; i <= n; i++) {
        lua_rawgeti(L, -2, i);
        lua_rawseti(L, -2, i);
    }
    return 1;
}

/* close(): the rest of the rows are read and dropped (the connection is in
 * sync again, usable); refused from inside a read of it. */
static int stream_close(lua_State *L, lstream *s)
{
    if (s->lc != NULL && scl_lconn_end_stream(L, s->lc) != 0)
        return scl_raise(L, "InvalidRequestError",
                         "This streaming Result is being read: close() cannot be called from "
                         "inside a read of it (a finalizer, an event hook)");
    s->r.nsets = 0;
    s->r.closed = 1;
    return 0;
}

static int l_stream_close(lua_State *L)
{
    return stream_close(L, check_stream(L));
}

/* nextset(): what is left of the current set is read and dropped, and
 * the next set of a CALL becomes the current one (true); false when there
 * is none (then the stream is over, the connection free, and reading it
 * raises ResourceClosedError, as a buffered Result past its last set). */
static int l_stream_nextset(lua_State *L)
{
    lstream *s = check_stream(L);
    lconn *lc = s->lc;
    if (lc == NULL || skip_set(L, s, "nextset", 1) == 0) {
        s->r.nsets = 0;
        lua_pushboolean(L, 0);
        return 1;
    }
    set_columns(L, 1, s, lc->c->pending); /* still busy with nextset: may raise */
    s->set_no++;
    s->count = 0;
    s->set_ended = 0;
    lc->busy = SCL_STREAM_OPEN;
    lua_pushboolean(L, 1);
    return 1;
}

/* What first(), one() and scalar() do after reading (see lresult.c's):
 * the rest of the current set is read and dropped; if a CALL's next set
 * follows, the stream stays open for nextset(), else it is closed. */
static int l_stream_soft_close(lua_State *L)
{
    lstream *s = check_stream(L);
    if (s->lc != NULL && !s->lc->invalidated && skip_set(L, s, "_soft_close", 0) == 2) {
        s->lc->busy = SCL_STREAM_OPEN;
        return 0;
    }
    return stream_close(L, s);
}

static int l_stream_meta_close(lua_State *L) /* __close */
{
    return stream_close(L, scl_check_meta_self(L, "__close", "result"));
}

static int l_stream_gc(lua_State *L)
{
    lstream *s = scl_check_meta_self(L, "__gc", "result");
    /* the collector finalizes it only when no read of it runs (a read's
     * frame holds it): its connection goes on, in sync */
    if (s->lc != NULL)
        scl_stream_detach(s->lc, s->lc->invalidated);
    s->r.nsets = 0;
    s->r.closed = 1;
    return 0;
}

/* Methods from the streaming table, else the buffered Result's (what
 * scoped/result.lua adds there); fields as l_index, and yield_per. */
static int l_stream_index(lua_State *L)
{
    const char *k = lua_tostring(L, 2);
    lua_pushvalue(L, 2);
    lua_rawget(L, lua_upvalueindex(1));
    if (!lua_isnil(L, -1))
        return 1;
    lua_pop(L, 1);
    lua_pushvalue(L, 2);
    lua_rawget(L, lua_upvalueindex(3));
    if (!lua_isnil(L, -1) || k == NULL)
        return 1;
    lstream *s = lua_touserdata(L, 1);
    int mine = s != NULL && lua_getmetatable(L, 1) && lua_rawequal(L, -1, lua_upvalueindex(2));
    if (!mine)
        return scl_argerror(L, "__index of a Result called with a %s", luaL_typename(L, 1));
    lua_pop(L, 1);
    if (strcmp(k, "rowcount") == 0) {
        lua_pushinteger(L, (lua_Integer)(s->r.rowcount < 0 ? -1 : s->r.rowcount));
    } else if (strcmp(k, "lastrowid") == 0) {
        lua_pushinteger(L, 0);
    } else if (strcmp(k, "returns_rows") == 0) {
        lua_pushboolean(L, s->r.nsets > 0);
    } else if (strcmp(k, "yield_per") == 0) {
        if (s->yield_per > 0)
            lua_pushinteger(L, s->yield_per);
        else
            lua_pushnil(L);
    } else if (strcmp(k, "streaming") == 0) {
        lua_pushboolean(L, 1);
    } else {
        lua_pushnil(L);
    }
    return 1;
}

static const luaL_Reg stream_methods[] = {
    {"fetchone", l_stream_fetchone},
    {"fetchmany", l_stream_fetchmany},
    {"fetchall", l_stream_fetchall},
    {"all", l_stream_fetchall},
    {"keys", l_stream_keys},
    {"_iter", l_stream_iter},
    {"nextset", l_stream_nextset},
    {"close", l_stream_close},
    {"_soft_close", l_stream_soft_close},
    {NULL, NULL},
};

/* The streaming Result's metatable (core.stream_result_mt, for result.lua),
 * its methods falling back on the buffered Result's (core.result_methods:
 * lresult.c registers before this file). */
int scl_open_stream(lua_State *L)
{
    lua_getfield(L, -1, "result_methods");
    int methods = lua_gettop(L);
    luaL_newmetatable(L, SC_STREAM_MT);
    lua_pushvalue(L, -1);
    lua_setfield(L, methods - 1, "stream_result_mt");
    lua_pushlightuserdata(L, &stream_mt_key);
    lua_pushvalue(L, -2);
    lua_rawset(L, LUA_REGISTRYINDEX);
    lua_newtable(L);
    scl_setmethods(L, -2, stream_methods);
    lua_pushvalue(L, -2);
    lua_pushvalue(L, methods);
    lua_pushcclosure(L, l_stream_index, 3);
    lua_setfield(L, -2, "__index");
    lua_pushvalue(L, -1);
    lua_pushcclosure(L, l_stream_gc, 1);
    lua_setfield(L, -2, "__gc");
    lua_pushvalue(L, -1);
    lua_pushcclosure(L, l_stream_meta_close, 1);
    lua_setfield(L, -2, "__close");
    lua_pushliteral(L, "Result");
    lua_setfield(L, -2, "__name");
    lua_settop(L, methods - 1);
    return 0;
}
