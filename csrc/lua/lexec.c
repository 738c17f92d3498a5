/* Statements on a RawConnection (lconn.h): execute, executemany,
 * exec_driver_sql and render, from the text and parameters to a Result
 * (lresult.c) or a DBAPIError. Each runs through the busy guard
 * (scl_lconn_guarded, lconn.h): its guard_* wrapper is here, beside it, so
 * that the body is a direct call. The connection's userdata, its open and
 * close, finish and the busy mark itself are lconn.c's. */
#include <stdio.h>
#include <string.h>

#include "lconn.h"
#include "lresult.h"

static int l_executemany(lua_State *L, lconn *lc);

/* ---- errors ------------------------------------------------------------- */

/* Pushes the DBAPIError for err (scl_lconn_raise_dberror raises it). */
void scl_lconn_push_dberror(lua_State *L, lconn *lc, const sc_error *err, const char *sql,
                           size_t len, int params)
{
    int gone = lc->c->broken;
    if (gone)
        lc->invalidated = 1;
    /* a COMMIT whose connection died under it: the server may have
     * committed or not, nobody can tell (scoped.retry never redoes such a
     * unit of work unless it is idempotent) */
    int commit_unknown = gone && sql != NULL && len == 6 && memcmp(sql, "COMMIT", 6) == 0;
    const char *hidden = lc->hide_parameters && params ? sc_error_hidden_text(err->code) : NULL;
    if (hidden != NULL) {
        sc_error shown = *err;
        snprintf(shown.message, sizeof shown.message, "%s", hidden);
        scl_push_dberror(L, &shown, sql, len, 0, gone);
    } else {
        scl_push_dberror(L, err, sql, len, lc->hide_parameters ? 0 : params, gone);
    }
    if (commit_unknown) {
        lua_pushboolean(L, 1);
        lua_setfield(L, -2, "commit_unknown");
    }
    if (lc->hide_parameters && params) {
        /* the server's own message may quote bound values ("near '...'",
         * "Duplicate entry '...'"): scoped/exc.lua's scrubber takes them out */
        lua_pushboolean(L, 1);
        lua_setfield(L, -2, "hide_parameters");
        luaL_getmetatable(L, SC_ERROR_MT);
        lua_getfield(L, -1, "scrub");
        lua_remove(L, -2);
        if (lua_isfunction(L, -1)) {
            lua_pushvalue(L, -2);
            lua_pushvalue(L, params);
            if (lua_pcall(L, 2, 0, 0) != 0)
                lua_pop(L, 1);
        } else {
            lua_pop(L, 1);
        }
    }
}

int scl_lconn_raise_dberror(lua_State *L, lconn *lc, const sc_error *err, const char *sql,
                           size_t len, int params)
{
    scl_lconn_push_dberror(L, lc, err, sql, len, params);
    lc->busy = NULL; /* the statement is over (saves the next call a look at the stack) */
    return lua_error(L);
}

/* ---- running a statement ---------------------------------------------- */

/* After every statement: a SET NAMES or SET character_set_client (from
 * the user, a connect listener, a procedure) to a charset that is not
 * accepted leaves the connection refused: broken, so it is discarded and
 * its transaction goes with it, and the statement raises InterfaceError. */
void scl_lexec_check_charset(lua_State *L, lconn *lc, const char *sql, size_t len, int params)
{
    if (sc_conn_charset(lc->c) != SC_CS_UNSAFE)
        return;
    sc_error err;
    sc_conn_refuse_charset(lc->c, &err);
    scl_lconn_raise_dberror(L, lc, &err, sql, len, params);
}

/* The results of the statement just sent, collected into a Result. */
int scl_lexec_collect(lua_State *L, lconn *lc, const char *sql, size_t len, int params)
{
    sc_error err;
    if (scl_result_collect(L, lc->c, &err) != 0)
        return scl_lconn_raise_dberror(L, lc, &err, sql, len, params);
    scl_lexec_check_charset(L, lc, sql, len, params);
    return 1;
}

static int run(lua_State *L, lconn *lc, const char *q, size_t qlen, const char *sql, size_t len,
               int params)
{
    sc_error err;
    if (sc_conn_query(lc->c, q, qlen, &err) != 0)
        return scl_lconn_raise_dberror(L, lc, &err, sql, len, params);
    return scl_lexec_collect(L, lc, sql, len, params);
}

/* Parses sql into plan as the server will lex it; returns the class of the
 * client charset to write values for. The lexer needs NO_BACKSLASH_ESCAPES
 * and ANSI_QUOTES only for a statement with a backslash inside a quoted
 * run (SC_PLAN_MODE_DEPENDENT): those, and a statement the server's own
 * charset could read differently (SC_PLAN_CHARSET_DEPENDENT), cost one
 * round trip to ask the server; every other statement lexes the same in
 * every mode. Raises on a refused charset. */
static int prepare_plan_as(lua_State *L, lconn *lc, sc_bind_plan *plan, const char *sql,
                           size_t len, int params, const sc_lex_mode *asked, int *must_ask);

static int prepare_plan(lua_State *L, lconn *lc, sc_bind_plan *plan, const char *sql, size_t len,
                        int params)
{
    return prepare_plan_as(L, lc, plan, sql, len, params, NULL, NULL);
}

/* prepare_plan, for the non-blocking driver: where the server must be
 * asked, must_ask is set and nothing more is done (lnb.c asks without
 * blocking, then calls again with the answer in asked). */
static int prepare_plan_as(lua_State *L, lconn *lc, sc_bind_plan *plan, const char *sql,
                           size_t len, int params, const sc_lex_mode *asked, int *must_ask)
{
    sc_error err;
    sc_conn *c = lc->c;
    int cs = sc_conn_charset(c);
    if (cs == SC_CS_UNSAFE) {
        sc_conn_refuse_charset(c, &err);
        scl_lconn_raise_dberror(L, lc, &err, sql, len, params);
    }
    sc_lex_mode m = {0, 0, cs == SC_CS_LATIN1, c->server_version};
    if (sc_binds_parse(sql, len, &m, plan) != 0)
        luaL_error(L, "out of memory building a statement");
    if (plan->flags & (SC_PLAN_MODE_DEPENDENT | SC_PLAN_CHARSET_DEPENDENT)) {
        if (asked != NULL) {
            m = *asked;
        } else if (must_ask != NULL) {
            *must_ask = 1;
            return cs;
        } else if (sc_conn_ask_lex_mode(c, &m, &err) != 0) {
            scl_lconn_raise_dberror(L, lc, &err, sql, len, params);
        }
        if (sc_binds_parse(sql, len, &m, plan) != 0) /* in the server's mode */
            luaL_error(L, "out of memory building a statement");
    }
    if (plan->nnamed && plan->npositional)
        scl_argerror(L, "a statement cannot mix :name and ? bind parameters");
    return cs;
}

int scl_lexec_render_nb(lua_State *L, lconn *lc, const char *sql, size_t len, int params,
                        const sc_lex_mode *asked, const char **q, size_t *qlen)
{
    *q = sql;
    *qlen = len;
    if (params || memchr(sql, ':', len) != NULL || memchr(sql, '?', len) != NULL) {
        int must_ask = 0;
        int cs = prepare_plan_as(L, lc, &lc->c->plan, sql, len, params, asked, &must_ask);
        if (must_ask)
            return 1;
        lc->c->sql.len = 0;
        scl_render_plan(L, &lc->c->sql, &lc->c->plan, sql, params, cs);
        *q = lc->c->sql.data;
        *qlen = lc->c->sql.len;
    }
    return 0;
}

void scl_lexec_render(lua_State *L, lconn *lc, const char *sql, size_t len, int params,
                      const char **q, size_t *qlen)
{
    *q = sql;
    *qlen = len;
    if (params || memchr(sql, ':', len) != NULL || memchr(sql, '?', len) != NULL) {
        int cs = prepare_plan(L, lc, &lc->c->plan, sql, len, params);
        lc->c->sql.len = 0;
        scl_render_plan(L, &lc->c->sql, &lc->c->plan, sql, params, cs);
        *q = lc->c->sql.data;
        *qlen = lc->c->sql.len;
    }
}

/* The optional parameters argument at i: its index, or 0 when absent. */
static int opt_params(lua_State *L, int i)
{
    if (lua_isnoneornil(L, i))
        return 0;
    scl_check_table(L, i, "parameters");
    return i;
}

/* conn:execute(sql [, params]) -> Result */
static int l_execute(lua_State *L, lconn *lc) /* run by guard_* */
{
    size_t len;
    const char *sql = scl_check_string(L, 2, "statement", &len);
    int params = opt_params(L, 3);
    /* no binds and nothing that looks like one: send the text as it is */
    if (!params && memchr(sql, ':', len) == NULL && memchr(sql, '?', len) == NULL)
        return run(L, lc, sql, len, sql, len, 0);
    if (params) {
        /* a list of parameter tables for a :name statement is an
         * executemany, as SQLAlchemy's execute(text, [dict, dict]); with ?
         * binds a table in first place is an IN list, so no guessing there */
        lua_rawgeti(L, params, 1);
        int list = lua_istable(L, -1);
        lua_pop(L, 1);
        if (list) {
            prepare_plan(L, lc, &lc->c->plan, sql, len, params);
            if (lc->c->plan.nnamed > 0)
                return l_executemany(L, lc);
        }
    }
    int cs = prepare_plan(L, lc, &lc->c->plan, sql, len, params);
    lc->c->sql.len = 0;
    scl_render_plan(L, &lc->c->sql, &lc->c->plan, sql, params, cs);
    return run(L, lc, lc->c->sql.data, lc->c->sql.len, sql, len, params);
}

/* conn:stream(sql [, params [, yield_per]]) -> a streaming Result
 * (stream_results: lstream.c reads its rows as they are asked for), or a
 * buffered one for a statement that returns no rows. The connection stays
 * busy until that Result is closed (lconn.h, "stream"). */
static int l_stream(lua_State *L, lconn *lc) /* run by guard_stream */
{
    size_t len;
    const char *sql = scl_check_string(L, 2, "statement", &len);
    int params = opt_params(L, 3);
    int yield_per = 0;
    if (!lua_isnoneornil(L, 4)) {
        lua_Number n = scl_check_number(L, 4, "yield_per");
        if (!(n >= 1 && n <= 1e9) || n != (lua_Number)(int)n)
            return scl_argerror(L, "yield_per must be a positive integer");
        yield_per = (int)n;
    }
    const char *q;
    size_t qlen;
    scl_lexec_render(L, lc, sql, len, params, &q, &qlen);
    sc_error err;
    if (sc_conn_query(lc->c, q, qlen, &err) != 0)
        return scl_lconn_raise_dberror(L, lc, &err, sql, len, params);
    if (!sc_conn_returns_rows(lc->c))
        return scl_lexec_collect(L, lc, sql, len, params);
    scl_lexec_check_charset(L, lc, sql, len, params);
    return scl_stream_push(L, lc, 2, yield_per);
}

/* ---- executemany ------------------------------------------------------------ */

/* Statements of an executemany batch are cut at this size, well below the
 * server's default max_allowed_packet (16 MiB). */
#define SC_BATCH_BYTES (1 << 20)

static void run_batch(lua_State *L, lconn *lc, const char *sql, size_t len, int rows, int row,
                      long long *total, unsigned long long *first_id, int plan_only)
{
    sc_error err;
    if (plan_only) {
        /* the non-blocking driver sends them (lnb.c): slot 4 is the list
         * {text1, row1, text2, row2, ...} */
        int n = (int)scl_rawlen(L, 4);
        lua_pushlstring(L, lc->c->sql.data, lc->c->sql.len);
        lua_rawseti(L, 4, n + 1);
        lua_pushinteger(L, row);
        lua_rawseti(L, 4, n + 2);
        return;
    }
    if (sc_conn_query(lc->c, lc->c->sql.data, lc->c->sql.len, &err) != 0 ||
        scl_result_collect(L, lc->c, &err) != 0) {
        lua_rawgeti(L, rows, row); /* the parameter set that failed, for the error */
        scl_lconn_raise_dberror(L, lc, &err, sql, len, lua_gettop(L));
    }
    scl_lexec_check_charset(L, lc, sql, len, 0);
    lua_getfield(L, -1, "rowcount");
    lua_Integer n = lua_tointeger(L, -1);
    lua_getfield(L, -2, "lastrowid");
    if (*first_id == 0)
        *first_id = (unsigned long long)lua_tointeger(L, -1);
    lua_pop(L, 2);
    lua_replace(L, 4); /* slot 4 holds the latest Result */
    if (n > 0)
        *total += n;
}

/* conn:executemany(sql, {params1, params2, ...}) -> Result whose rowcount
 * is the total. An INSERT ... VALUES (...) [, (...)] [ON DUPLICATE KEY
 * UPDATE ...] whose placeholders are all in its row tuples becomes
 * multi-row INSERTs of up to SC_BATCH_BYTES each (what makes SQLAlchemy's
 * executemany fast with mysqlclient): the tuples are repeated once per
 * parameter set, what follows them (ON DUPLICATE KEY UPDATE b = VALUES(b))
 * is written once. The VALUES keyword and the tuples are found by the same
 * lexer as the placeholders: nothing in a string, a name or a comment
 * counts. Anything else runs once per parameter set. */
static int executemany(lua_State *L, lconn *lc, int plan_only)
{
    size_t len;
    const char *sql = scl_check_string(L, 2, "statement", &len);
    scl_check_table(L, 3, "parameter sets");
    if (plan_only == 2) {
        /* execute(sql, {{...}, ...}) with ? binds: an IN list, not a batch */
        prepare_plan(L, lc, &lc->c->plan, sql, len, 0);
        if (lc->c->plan.nnamed == 0)
            return 0;
    }
    int rows = 3;
    int n = (int)scl_rawlen(L, rows);
    if (n == 0)
        return scl_argerror(L, "executemany needs at least one parameter set");
    for (int i = 1; i <= n; i++) {
        lua_rawgeti(L, rows, i);
        if (!lua_istable(L, -1))
            return scl_argerror(L, "parameter set %d must be a table, got %s", i, luaL_typename(L, -1));
        lua_pop(L, 1);
    }
    lua_settop(L, 3);
    if (plan_only)
        lua_newtable(L); /* 4: the statements to send */
    else
        lua_pushnil(L); /* 4: the latest Result */
    sc_conn *c = lc->c;
    long long total = 0;
    unsigned long long first_id = 0;
    int cs = prepare_plan(L, lc, &c->plan, sql, len, 0);
    sc_bind_plan *plan = &c->plan;
    if (!plan->rows_known) {
        if (!sc_binds_values_rows(sql, len, &plan->mode, &plan->rows_start, &plan->rows_end))
            plan->rows_start = plan->rows_end = 0;
        plan->rows_known = 1;
    }
    size_t rs = plan->rows_start, re = plan->rows_end;
    int batch = re > 0;
    for (size_t t = 0; batch && t < plan->n; t++) {
        const sc_bind_token *k = &plan->toks[t];
        if (k->kind != SC_TOK_SQL && (k->start < rs || k->start >= re))
            batch = 0; /* a bind outside the row tuples: one statement per set */
    }
    if (batch) {
        if (sc_bind_plan_slice(plan, rs, re, &c->plan2) != 0)
            return luaL_error(L, "out of memory");
        int pending = 0;
        for (int i = 1; i <= n; i++) {
            if (pending == 0) {
                c->sql.len = 0;
                if (sc_buf_add(&c->sql, sql, rs) != 0)
                    return luaL_error(L, "out of memory");
            } else if (sc_buf_add(&c->sql, ",", 1) != 0) {
                return luaL_error(L, "out of memory");
            }
            lua_rawgeti(L, rows, i);
            scl_render_plan(L, &c->sql, &c->plan2, sql, lua_gettop(L), cs);
            lua_pop(L, 1);
            pending++;
            if (c->sql.len >= SC_BATCH_BYTES || i == n) {
                if (sc_buf_add(&c->sql, sql + re, len - re) != 0)
                    return luaL_error(L, "out of memory");
                run_batch(L, lc, sql, len, rows, i, &total, &first_id, plan_only);
                pending = 0;
            }
        }
    } else {
        for (int i = 1; i <= n; i++) {
            lua_rawgeti(L, rows, i);
            c->sql.len = 0;
            scl_render_plan(L, &c->sql, plan, sql, lua_gettop(L), cs);
            lua_pop(L, 1);
            run_batch(L, lc, sql, len, rows, i, &total, &first_id, plan_only);
        }
    }
    /* the last statement's Result, reporting the batch as a whole */
    if (!plan_only)
        scl_result_set_counts(L, 4, total, first_id);
    lua_settop(L, 4);
    return 1;
}

static int l_executemany(lua_State *L, lconn *lc) /* run by guard_* */
{
    return executemany(L, lc, 0);
}

int scl_lexec_plan_many(lua_State *L, lconn *lc, int only_named)
{
    return executemany(L, lc, only_named ? 2 : 1);
}

/* conn:exec_driver_sql(sql) -> Result: no bind parsing at all */
static int l_exec_driver_sql(lua_State *L, lconn *lc) /* run by guard_* */
{
    size_t len;
    const char *sql = scl_check_string(L, 2, "statement", &len);
    return run(L, lc, sql, len, sql, len, 0);
}

/* conn:render(sql [, params]) -> the statement as it would be sent */
static int l_render(lua_State *L, lconn *lc) /* run by guard_* */
{
    size_t len;
    const char *sql = scl_check_string(L, 2, "statement", &len);
    int params = opt_params(L, 3);
    int cs = prepare_plan(L, lc, &lc->c->plan, sql, len, params);
    lc->c->sql.len = 0;
    scl_render_plan(L, &lc->c->sql, &lc->c->plan, sql, params, cs);
    lua_pushlstring(L, lc->c->sql.data, lc->c->sql.len);
    return 1;
}

/* ---- the guarded methods ------------------------------------------------ */

/* Each statement method's own wrapper (lconn.h, "the busy guard"). */
static int guard_execute(lua_State *L)
{
    return scl_lconn_guarded(L, "execute", 1, l_execute);
}

static int guard_executemany(lua_State *L)
{
    return scl_lconn_guarded(L, "executemany", 1, l_executemany);
}

static int guard_exec_driver_sql(lua_State *L)
{
    return scl_lconn_guarded(L, "exec_driver_sql", 1, l_exec_driver_sql);
}

static int guard_render(lua_State *L)
{
    return scl_lconn_guarded(L, "render", 0, l_render);
}

/* The guard clears the busy mark when the body returns; a stream it opened
 * keeps the connection busy until it is closed. */
static int guard_stream(lua_State *L)
{
    int n = scl_lconn_guarded(L, "execute", 1, l_stream);
    lconn *lc = lua_touserdata(L, 1);
    if (lc->stream != NULL)
        lc->busy = SCL_STREAM_OPEN;
    return n;
}

int scl_lexec_is_guard(lua_CFunction f)
{
    return f == guard_execute || f == guard_executemany || f == guard_exec_driver_sql ||
           f == guard_render || f == guard_stream || scl_lnb_is_guard(f);
}

/* The calls that hold the connection's C state while they may run Lua
 * code: registered by scl_open_conn (lconn.c) through the guard (busy for
 * their whole run). */
const luaL_Reg scl_lexec_methods[] = {
    {"execute", guard_execute},
    {"exec_driver_sql", guard_exec_driver_sql},
    {"executemany", guard_executemany},
    {"render", guard_render},
    {"stream", guard_stream},
    {NULL, NULL},
};
