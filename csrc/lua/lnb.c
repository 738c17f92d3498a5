/* The non-blocking driver's Lua face: a statement, COMMIT, ROLLBACK or
 * ping run as a resumable operation (csrc/core/conn.h, "non-blocking"),
 * for an engine with io_wait. scoped/nonblocking.lua drives it: C never
 * yields (Lua 5.1 and LuaJIT cannot yield across a C call), so each call
 * here returns
 *   true, value                  done: a Result, a ping's answer, or nothing
 *   false, fd, events, timeout   waiting: events "r", "w" or "rw" on fd, for
 *                                at most timeout seconds (nil: no limit)
 * and raises the DBAPIError the blocking method would. Between the two the
 * connection is busy (SCL_NB_WAITING, lconn.h): only _nb_cont from the
 * coroutine that started the operation, or _nb_abandon, touches it.
 *
 *   raw:_nb(op, sql [, params [, text]])  starts op: "execute",
 *       "exec_driver_sql", "batch" (text: one statement of an executemany,
 *       errors quoting sql and params), "stream" (text: yield_per; a
 *       streaming Result), "fetch" (the open stream's next row read ahead;
 *       at the end of a CALL's set, the next result's header too),
 *       "commit", "rollback", "ping", "reset", "open"
 *   raw:_nb_cont(ready, op, sql [, params [, text]])  goes on after the wait;
 *       ready false: it timed out
 *   raw:_nb_abandon()  gives it up (the wait raised)
 *   raw:_nb_plan_many(sql, sets)  executemany's statements, {text1, row1, ...}
 *
 * The rows are decoded by the same row builder as the blocking path's
 * (lresult.c): the operation reads the whole reply into memory first. */
#include <string.h>

#include "lconn.h"
#include "lresult.h"

const char SCL_NB_WAITING[] = "a statement waiting for the server";

enum { OP_EXECUTE, OP_DRIVER_SQL, OP_BATCH, OP_COMMIT, OP_ROLLBACK, OP_PING, OP_OPEN, OP_RESET,
       OP_STREAM, OP_FETCH };

static const char *const op_names[] = {"execute", "exec_driver_sql", "batch", "commit",
                                       "rollback", "ping", "open", "reset", "stream", "fetch",
                                       NULL};

/* The name the busy error shows for an operation. */
static const char *const op_busy[] = {"execute", "exec_driver_sql", "executemany", "commit",
                                      "rollback", "ping", "connect", "reset", "execute", "fetch"};

/* Whether lc is a deferred checkout still to be opened or pinged. */
static int opening(const lconn *lc)
{
    return lc->entry != NULL && lc->entry->need != SC_NEED_NONE;
}

/* An open that failed: the half-open connection closed, the slot given
 * back, the error raised as a checkout's (with its hint). */
static int open_failed(lua_State *L, lconn *lc, const sc_error *err)
{
    sc_pool_open_abort(lc->pool, lc->c); /* NULL when the connector freed it */
    lc->c = NULL;
    sc_pool_open_failed(lc->pool, lc->entry);
    lc->pool = NULL;
    lc->entry = NULL;
    lc->busy = NULL;
    scl_getuservalue(L, 1); /* the pool's {pool, spares, hook, url} */
    if (lua_istable(L, -1))
        lua_rawgeti(L, -1, SC_URL_SLOT);
    else
        lua_pushnil(L);
    return scl_raise_connect_error(L, err, lua_istable(L, -1) ? -1 : 0);
}

static int check_op(lua_State *L, int i)
{
    return luaL_checkoption(L, i, NULL, op_names);
}

/* The busy mark after a call here: waiting, or free. */
static void mark(lconn *lc)
{
    if (lc->c != NULL && lc->c->nb_step != SC_NB_NONE)
        lc->busy = SCL_NB_WAITING;
    else
        lc->busy = lc->stream != NULL ? SCL_STREAM_OPEN : NULL;
}

/* What a finished, failed or waiting operation returns (see the top). */
static int outcome(lua_State *L, lconn *lc, int op, int rc, const sc_error *err)
{
    const char *sql;
    size_t len = 0;
    int params = 0;
    if (op == OP_COMMIT || op == OP_ROLLBACK || op == OP_RESET) {
        sql = op == OP_COMMIT ? "COMMIT" : op == OP_ROLLBACK ? "ROLLBACK" : "COM_RESET_CONNECTION";
        len = strlen(sql);
    } else {
        sql = lua_tolstring(L, 3, &len);
        if (sql == NULL)
            sql = "";
        params = lua_istable(L, 4) ? 4 : 0;
    }
    if (rc > 0) {
        lua_pushboolean(L, 0);
        lua_pushinteger(L, sc_conn_nb_fd(lc->c));
        int rw = rc & (SC_WAIT_READ | SC_WAIT_WRITE);
        if (rw == (SC_WAIT_READ | SC_WAIT_WRITE))
            lua_pushliteral(L, "rw");
        else if (rw == SC_WAIT_WRITE)
            lua_pushliteral(L, "w");
        else
            lua_pushliteral(L, "r");
        if (rc & SC_WAIT_TIMEOUT)
            lua_pushnumber(L, sc_conn_nb_timeout_ms(lc->c) / 1000.0);
        else
            lua_pushnil(L);
        return 4;
    }
    if (op == OP_OPEN) {
        if (rc < 0)
            return open_failed(L, lc, err);
        sc_pool_open_done(lc->pool, lc->entry, lc->c);
        lua_pushboolean(L, 1);
        lua_pushboolean(L, 1); /* fresh */
        return 2;
    }
    if (op == OP_PING) {
        if (rc == 0 && opening(lc))
            sc_pool_open_done(lc->pool, lc->entry, NULL); /* the pre-ping answered */
        lua_pushboolean(L, 1);
        lua_pushboolean(L, rc == 0);
        return 2;
    }
    if (op == OP_FETCH) {
        lua_pushboolean(L, 1); /* read ahead: the stream's reader takes it */
        return 1;
    }
    if (lc->nb_asking) {
        /* the lexer mode came (or the asking failed): the statement itself */
        lc->nb_asking = 0;
        if (rc < 0)
            return scl_lconn_raise_dberror(L, lc, err, sql, len, params);
        sc_error e2;
        sc_lex_mode m;
        MYSQL_RES *res = sc_conn_use_result(lc->c, &e2);
        sc_conn_next_result(lc->c, &e2); /* the end of the replayed reply */
        if (sc_conn_lex_mode_from(lc->c, res, &m, &e2) != 0)
            return scl_lconn_raise_dberror(L, lc, &e2, sql, len, params);
        const char *q;
        size_t qlen;
        scl_lexec_render_nb(L, lc, sql, len, params, &m, &q, &qlen);
        rc = sc_conn_nb_query(lc->c, q, qlen, op == OP_STREAM ? 3 : 0, &e2);
        return outcome(L, lc, op, rc, &e2);
    }
    if (rc < 0)
        return scl_lconn_raise_dberror(L, lc, err, sql, len, params);
    lua_pushboolean(L, 1);
    if (op == OP_COMMIT || op == OP_ROLLBACK || op == OP_RESET)
        return 1;
    if (op == OP_STREAM && sc_conn_returns_rows(lc->c)) {
        /* the header is read, the rows wait on the socket: a streaming
         * Result whose reads take what _nb("fetch") read ahead */
        scl_lexec_check_charset(L, lc, sql, len, params);
        int yield_per = lua_isnumber(L, 5) ? (int)lua_tointeger(L, 5) : 0;
        scl_stream_push(L, lc, 3, yield_per);
        if (lc->stream != NULL)
            lc->c->nb_stream = 1;
        return 2;
    }
    scl_lexec_collect(L, lc, sql, len, params);
    return 2;
}

/* raw:_nb(op, sql [, params [, text]]): run by guard_nb. */
static int l_nb(lua_State *L, lconn *lc)
{
    int op = check_op(L, 2);
    sc_error err;
    int rc;
    lua_settop(L, 5);
    switch (op) {
    case OP_COMMIT:
    case OP_ROLLBACK:
        if (op == OP_ROLLBACK && !sc_conn_needs_end(lc->c)) {
            lua_pushboolean(L, 1); /* the reset rule: nothing to roll back */
            return 1;
        }
        if (lc->c->tls)
            rc = sc_conn_end(lc->c, op == OP_COMMIT, &err); /* TLS blocks (sc_conn_nb_open) */
        else
            rc = sc_conn_nb_query(lc->c, op == OP_COMMIT ? "COMMIT" : "ROLLBACK",
                                  op == OP_COMMIT ? 6 : 8, op == OP_COMMIT ? 2 : 1, &err);
        break;
    case OP_PING:
        if (lc->c->tls) {
            rc = sc_conn_ping(lc->c) == 0 ? 0 : -1;
            err.code = 0;
        } else {
            rc = sc_conn_nb_ping(lc->c, &err);
        }
        break;
    case OP_FETCH:
        rc = lc->c->tls || lc->stream == NULL ? 0 : sc_conn_nb_fetch(lc->c, &err);
        break;
    case OP_RESET:
        if (lc->c->tls)
            rc = sc_conn_reset(lc->c, SC_RESET_CONNECTION, &err); /* TLS blocks */
        else
            rc = sc_conn_nb_reset(lc->c, &err);
        break;
    case OP_OPEN: {
        if (lc->entry->need == SC_NEED_PING) {
            sc_pool_ping_failed(lc->pool, lc->entry); /* closes it: a new one replaces it */
            lc->c = NULL;
        }
        sc_conn *c = sc_pool_open_nb(lc->pool, &rc, &err);
        if (c == NULL)
            return open_failed(L, lc, &err);
        lc->c = c;
        break;
    }
    default: {
        size_t len;
        const char *sql = scl_check_string(L, 3, "statement", &len);
        const char *q = sql;
        size_t qlen = len;
        int params = 0;
        if (!lua_isnil(L, 4)) {
            scl_check_table(L, 4, "parameters");
            params = 4;
        }
        if (op == OP_BATCH)
            q = scl_check_string(L, 5, "statement text", &qlen);
        else if ((op == OP_EXECUTE || op == OP_STREAM) &&
                 scl_lexec_render_nb(L, lc, sql, len, params, NULL, &q, &qlen)) {
            /* the statement lexes by the server's sql_mode: ask it first,
             * without blocking; outcome renders and sends it then */
            lc->nb_asking = 1;
            q = SC_LEX_MODE_QUERY;
            qlen = strlen(SC_LEX_MODE_QUERY);
        }
        if (lc->c->tls)
            rc = sc_conn_query(lc->c, q, qlen, &err); /* TLS blocks (sc_conn_nb_open) */
        else
            rc = sc_conn_nb_query(lc->c, q, qlen, op == OP_STREAM && !lc->nb_asking ? 3 : 0, &err);
        break;
    }
    }
    return outcome(L, lc, op, rc, &err);
}

/* The guard for _nb: a statement needs a live connection; a rollback or a
 * ping an open one (as the blocking methods), and a rollback of a
 * connection whose transaction died with it is nothing to do. */
static int guard_nb(lua_State *L)
{
    const char *what = lua_tostring(L, 2);
    int op = what != NULL ? check_op(L, 2) : OP_EXECUTE;
    if (op == OP_FETCH) {
        /* a read ahead for the stream open on it: the stream is idle
         * (SCL_STREAM_OPEN) or over (nothing to do) */
        lconn *lc = scl_check_self_as(L, "RawConnection", "fetch");
        if (lc->stream == NULL || lc->c == NULL) {
            lua_pushboolean(L, 1);
            return 1;
        }
        if (lc->busy != SCL_STREAM_OPEN)
            scl_lconn_check_busy(L, lc, "fetch");
        if (lc->owner.main != L)
            scl_lconn_set_owner(L, lc, lua_upvalueindex(2));
        lc->busy = op_busy[op];
        lua_settop(L, 5);
        int n = l_nb(L, lc);
        mark(lc);
        return n;
    }
    if (op == OP_OPEN || (op == OP_PING && opening(lua_touserdata(L, 1)))) {
        /* a deferred checkout's connect or pre-ping: no open connection
         * needed yet (scl_lconn_guarded would refuse a closed one) */
        lconn *lc = scl_check_self_as(L, "RawConnection", op_busy[op]);
        scl_lconn_check_idle(L, lc, op_busy[op]);
        if (!opening(lc) || (op == OP_PING && lc->entry->need != SC_NEED_PING))
            return scl_raise(L, "InvalidRequestError",
                             "this connection has nothing to open or pre-ping (_nb %s)", op_busy[op]);
        if (lc->owner.main != L)
            scl_lconn_set_owner(L, lc, lua_upvalueindex(2));
        lc->busy = op_busy[op];
        int n = l_nb(L, lc);
        mark(lc);
        return n;
    }
    if (op == OP_ROLLBACK || op == OP_PING) {
        lconn *lc = scl_check_self_as(L, "RawConnection", op_busy[op]);
        if (lc->c != NULL && (lc->invalidated || lc->c->broken || scl_lconn_forked(lc))) {
            if (op == OP_ROLLBACK && scl_lconn_forked(lc))
                lc->invalidated = 1; /* the parent's transaction is the parent's */
            lua_pushboolean(L, 1);
            if (op == OP_PING)
                lua_pushboolean(L, 0);
            return op == OP_PING ? 2 : 1;
        }
    }
    int n = scl_lconn_guarded(L, op_busy[op], op != OP_ROLLBACK && op != OP_PING && op != OP_RESET,
                              l_nb);
    mark(lua_touserdata(L, 1));
    return n;
}

/* raw:_nb_cont(ready, op, sql [, params]) */
static int l_nb_cont(lua_State *L, lconn *lc)
{
    int ready = lua_toboolean(L, 2);
    int op = check_op(L, 3);
    lua_remove(L, 2); /* sql, params and the text or yield_per where _nb has them: 3, 4, 5 */
    lua_settop(L, 5);
    sc_error err;
    int how = ready ? (SC_WAIT_READ | SC_WAIT_WRITE) : SC_WAIT_TIMEOUT, rc;
    if (op == OP_OPEN && opening(lc)) {
        /* the connector's: with several hosts it may go on with the next
         * host's connection (or end with none) */
        void *c = lc->c;
        rc = sc_pool_open_cont(lc->pool, &c, how, &err);
        lc->c = c;
    } else {
        rc = sc_conn_nb_cont(lc->c, how, &err);
    }
    return outcome(L, lc, op, rc, &err);
}

static void refuse_not_waiting(lua_State *L)
{
    scl_raise(L, "InvalidRequestError",
              "no statement of this coroutine is waiting on this connection (_nb_cont)");
}

static int guard_nb_cont(lua_State *L)
{
    lconn *lc = scl_check_self_as(L, "RawConnection", "_nb_cont");
    if (lc->busy != SCL_NB_WAITING || lc->c == NULL || lc->c->nb_step == SC_NB_NONE)
        refuse_not_waiting(L);
    if (!scl_lconn_owned_by(L, lc))
        scl_lconn_check_busy(L, lc, "_nb_cont"); /* another coroutine's: raises */
    const char *what = lua_tostring(L, 3);
    int op = what != NULL ? check_op(L, 3) : OP_EXECUTE;
    lc->busy = op_busy[op];
    int n = l_nb_cont(L, lc);
    mark(lc);
    return n;
}

void scl_lnb_abandon(lconn *lc)
{
    if (lc->c != NULL && lc->c->nb_step != SC_NB_NONE) {
        /* first the server: its session ends, and with it the statement
         * (a SLEEP, a lock wait) that would otherwise run on */
        if (lc->pool != NULL && lc->c->pid == sc_getpid() && !lc->c->nb_opening &&
            !(opening(lc) && lc->entry->need == SC_NEED_OPEN))
            sc_pool_kill(lc->pool, lc->c);
        sc_conn_nb_abandon(lc->c);
    }
    lc->invalidated = 1;
    lc->nb_asking = 0;
    if (lc->busy == SCL_NB_WAITING)
        lc->busy = NULL;
}

/* raw:_nb_abandon(): the wait raised; the connection is invalidated. */
static int l_nb_abandon(lua_State *L)
{
    lconn *lc = scl_check_self_as(L, "RawConnection", "_nb_abandon");
    if (lc->busy == SCL_NB_WAITING && !scl_lconn_owned_by(L, lc))
        scl_lconn_check_busy(L, lc, "_nb_abandon"); /* another coroutine's: raises */
    if (lc->busy == SCL_NB_WAITING)
        scl_lnb_abandon(lc);
    return 0;
}

/* raw:_nb_plan_many(sql, sets) -> {text1, row1, ...}, or nil for a :name
 * statement given a list that executemany would not take (not all tables) */
static int l_nb_plan_many(lua_State *L, lconn *lc)
{
    int only_named = lua_toboolean(L, 4);
    lua_settop(L, 3);
    return scl_lexec_plan_many(L, lc, only_named);
}

/* raw:_nb_counts(result, rowcount, lastrowid): an executemany's totals on
 * the Result of its last statement, as the blocking one reports them. */
static int l_nb_counts(lua_State *L)
{
    scl_check_self_as(L, "RawConnection", "_nb_counts");
    luaL_checkudata(L, 2, SC_RESULT_MT);
    long long total = (long long)luaL_checknumber(L, 3);
    unsigned long long first = (unsigned long long)luaL_checknumber(L, 4);
    scl_result_set_counts(L, 2, total, first);
    return 0;
}

static int guard_nb_plan_many(lua_State *L)
{
    return scl_lconn_guarded(L, "executemany", 1, l_nb_plan_many);
}

int scl_lnb_is_guard(lua_CFunction f)
{
    return f == guard_nb || f == guard_nb_cont || f == guard_nb_plan_many;
}

const luaL_Reg scl_lnb_methods[] = {
    {"_nb", guard_nb},
    {"_nb_cont", guard_nb_cont},
    {"_nb_abandon", l_nb_abandon},
    {"_nb_plan_many", guard_nb_plan_many},
    {"_nb_counts", l_nb_counts},
    {NULL, NULL},
};
