/* The RawConnection userdata (lconn.h): open (core.connect) and give
 * back, commit, rollback, finish, close, ping, reset, the busy mark and
 * the thread that owns it. The statements run on it are lexec.c's. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "connector.h"
#include "pid.h"
#include "lconn.h"

/* ---- the userdata -------------------------------------------------------- */

lconn *scl_lconn_push(lua_State *L, sc_conn *c, int owner_idx, int mt_idx)
{
    if (owner_idx < 0)
        owner_idx = lua_gettop(L) + owner_idx + 1;
    lconn *lc = scl_newuserdata(L, sizeof *lc);
    memset(lc, 0, sizeof *lc);
    lc->c = c;
    if (mt_idx != 0)
        lua_pushvalue(L, mt_idx); /* the checkout's upvalue: no registry lookup by name */
    else
        luaL_getmetatable(L, SC_CONN_MT);
    lua_setmetatable(L, -2);
    if (owner_idx) {
        /* the owner's own user value holds {owner}: one table shared by all
         * its connections (Lua 5.1 wants a table there), made once */
        scl_getuservalue(L, owner_idx);
        scl_setuservalue(L, -2);
    }
    return lc;
}

/* Makes the connection fit for the next user (sc_conn_reset: the reset rule
 * lives there). A connection whose reset fails is discarded, never handed
 * out mid-transaction. */
static int reset(lconn *lc)
{
    sc_error err;
    if (lc->invalidated)
        return -1;
    return sc_conn_reset(lc->c, lc->reset_mode, &err);
}

const char SCL_STREAM_OPEN[] = "a streaming Result";

int scl_lconn_release(lconn *lc)
{
    if (lc->entry != NULL && lc->entry->need != SC_NEED_NONE) {
        /* a deferred checkout never finished opening (or pinging): a
         * half-open connection is closed, the slot given back */
        if (lc->c != NULL && lc->c != lc->entry->conn)
            sc_pool_open_abort(lc->pool, lc->c); /* the connector's (its host loop too) */
        sc_pool_open_failed(lc->pool, lc->entry);
        lc->c = NULL;
        lc->pool = NULL;
        lc->entry = NULL;
        return -1;
    }
    if (lc->c == NULL)
        return 0;
    int rc = 0;
    if (lc->stream != NULL) /* every caller ended it first; a checkin never pools one */
        scl_stream_detach(lc, 1);
    if (lc->c->nb_step != SC_NB_NONE) /* mid-reply (every caller gave it up first) */
        scl_lnb_abandon(lc);
    if (lc->pool != NULL) {
        rc = reset(lc);
        if (lc->entry->pid != sc_getpid())
            rc = -1; /* the pool discards it without a word to the server */
        sc_pool_checkin(lc->pool, lc->entry, rc != 0);
        lc->pool = NULL;
        lc->entry = NULL;
    } else if (lc->c->pid != sc_getpid()) {
        sc_conn_discard(lc->c);
    } else {
        sc_conn_close(lc->c);
    }
    lc->c = NULL;
    return rc;
}

static lconn *check_conn(lua_State *L)
{
    return scl_check_self(L, "RawConnection");
}

static lconn *check_open(lua_State *L)
{
    lconn *lc = check_conn(L);
    scl_lconn_need_open(L, lc);
    return lc;
}

/* ---- busy: one call at a time on a connection ---------------------------
 *
 * A statement runs Lua code while it holds the connection's C state: a
 * params table's metamethods while the statement is rendered into the
 * connection's buffer, and whatever the garbage collector runs while rows
 * are built (finalizers: a __gc that runs a statement through the same
 * Session). Such code re-entering the connection freed the result being
 * read, grew the buffer being written, or closed the connection under the
 * caller's feet. So the calls that hold that state (execute, executemany,
 * exec_driver_sql, render: lexec.c, run through scl_lconn_guarded in
 * lconn.h) mark the connection busy for their whole run, and every call that would touch its C state (those, commit,
 * rollback, finish, close, ping, reset, _check_idle, core.lease and
 * lease_return, a __gc called by hand) raises InvalidRequestError on a busy
 * connection instead. Reading its flags (closed, in_transaction,
 * thread_id, is_invalidated, tostring, ...) and invalidate() stay allowed.
 *
 * An error raised half-way through a busy call (a bad bind, a metamethod's
 * error, out of memory, a finalizer's error, which LuaJIT propagates out of
 * the allocation that ran the collector) leaves the mark behind: no
 * lua_pcall per statement clears it, as that would cost the hot path
 * several hundred instructions. Instead the mark is checked when it is met
 * (is_busy): it stands only while the call that set it is still running,
 * that is while a guard_* frame (lexec.c) on this very connection is on
 * the stack of the thread that set it (lc->owner; a weak table in the
 * registry gives that thread back while it exists, and a thread that is
 * gone runs nothing). A mark whose call is gone is dropped, and the connection is
 * then as after any failed call (a result cut short is dropped by the next
 * statement). Calls that re-enter are nested in the busy call, on its
 * thread or on a coroutine resumed from inside it, so they find it. The
 * look at the stack happens only when a mark is met. */

/* The registry's weak-valued table: light userdata (an lconn) -> the thread
 * of its last busy call. Weak, so that no session of a dead coroutine is
 * kept (scoped_session's registry is weak-keyed by coroutine); a thread
 * that is gone runs no call. */
static char owners_key;

static void push_owners(lua_State *L)
{
    lua_pushlightuserdata(L, &owners_key);
    lua_rawget(L, LUA_REGISTRYINDEX);
}

/* The thread whose busy call marked lc, or NULL when it is gone. */
static lua_State *owner_of(lua_State *L, const lconn *lc)
{
    if (lc->owner.main != NULL)
        return lc->owner.main;
    push_owners(L);
    lua_pushlightuserdata(L, (void *)lc);
    lua_rawget(L, -2);
    lua_State *T = lua_tothread(L, -1); /* alive while in the table */
    lua_pop(L, 2);
    return T;
}

/* Whether the busy call that marked lc is still running (see above). */
static int busy_call_running(lua_State *L, const lconn *lc)
{
    lua_State *T = owner_of(L, lc);
    if (T == NULL)
        return 0; /* its thread was collected: nothing runs there */
    int st = lua_status(T);
    if (st != LUA_OK && st != LUA_YIELD)
        return 0; /* the thread died of an error: its frames are a corpse */
    lua_Debug ar;
    /* on the current thread, level 0 is the function asking */
    for (int level = T == L ? 1 : 0; lua_getstack(T, level, &ar); level++) {
        if (!lua_checkstack(T, 2))
            return 1; /* cannot look: refuse, the safe answer */
        if (!lua_getinfo(T, "f", &ar))
            continue;
        lua_CFunction f = lua_tocfunction(T, -1);
        int guard = scl_lexec_is_guard(f);
        int reader = !guard && lc->stream != NULL && scl_stream_is_reader(f);
        lua_pop(T, 1);
        if (!guard && !reader)
            continue;
        if (lua_getlocal(T, &ar, 1) == NULL) /* the frame's self */
            continue;
        int mine = guard ? lua_touserdata(T, -1) == (const void *)lc
                         : scl_stream_conn_at(T, -1) == lc;
        lua_pop(T, 1);
        if (mine)
            return 1;
    }
    return 0;
}

static void push_busy(lua_State *L, const lconn *lc, const char *what)
{
    if (lc->stream != NULL) {
        scl_push_error(L, "InvalidRequestError",
                      "This connection is busy: a streaming Result (stream_results) is open on "
                      "it, and %s() cannot use it until that Result is read to its end or closed "
                      "(result:close(); commit(), rollback() and close() of its Connection or "
                      "Session close it first)",
                      what);
        return;
    }
    if (lc->busy == SCL_NB_WAITING) {
        scl_push_error(L, "InvalidRequestError",
                      "This connection is busy: a statement started on it by another coroutine is "
                      "waiting for the server (io_wait), and %s() cannot use it until that "
                      "returns; use another connection (a Session per coroutine: scoped_session)",
                      what);
        return;
    }
    scl_push_error(L, "InvalidRequestError",
                  "This connection is busy: %s() is running on it, and %s() cannot use it until "
                  "that returns (it was called from inside: a finalizer, a metamethod of the "
                  "parameters, an event hook); use another connection",
                  lc->busy, what);
}

int scl_lconn_owned_by(lua_State *L, const lconn *lc)
{
    return owner_of(L, lc) == L;
}

/* Whether the coroutine of lc's waiting non-blocking operation can still
 * go on with it: suspended (in io_wait), or running (io_wait itself asked). */
static int waiter_alive(lua_State *L, const lconn *lc)
{
    lua_State *T = owner_of(L, lc);
    if (T == NULL)
        return 0; /* collected */
    if (T == L || T == lc->owner.main)
        return 1;
    int st = lua_status(T);
    lua_Debug ar;
    return st == LUA_YIELD || (st == LUA_OK && lua_getstack(T, 0, &ar));
}

/* 1 when a running call holds lc (the caller must not touch it); a mark
 * left by a call cut short by an error is dropped here. */
static int is_busy(lua_State *L, lconn *lc)
{
    if (lc->busy == NULL)
        return 0;
    if (lc->stream != NULL)
        return 1; /* a streaming Result is open on it: busy until it is closed */
    if (lc->busy == SCL_NB_WAITING) {
        if (waiter_alive(L, lc))
            return 1;
        scl_lnb_abandon(lc); /* its coroutine is gone: nobody will go on */
        return 0;
    }
    if (busy_call_running(L, lc))
        return 1;
    lc->busy = NULL;
    return 0;
}

void scl_lconn_check_busy(lua_State *L, lconn *lc, const char *what)
{
    if (is_busy(L, lc)) {
        push_busy(L, lc, what);
        lua_error(L);
    }
}

int scl_lconn_read_running(lua_State *L, lconn *lc)
{
    return busy_call_running(L, lc);
}

int scl_lconn_end_stream(lua_State *L, lconn *lc)
{
    if (lc->stream == NULL)
        return 0;
    if (lc->busy != SCL_STREAM_OPEN && busy_call_running(L, lc))
        return -1; /* called from inside a read of it */
    scl_stream_detach(lc, lc->invalidated);
    return 0;
}

void scl_lconn_set_read_owner(lua_State *L, lconn *lc)
{
    push_owners(L);
    scl_lconn_set_owner(L, lc, lua_gettop(L));
    lua_pop(L, 1);
}

/* An open connection that no call is running on. */
static lconn *check_idle(lua_State *L, const char *what)
{
    lconn *lc = check_open(L);
    scl_lconn_check_idle(L, lc, what);
    return lc;
}

static void drop_owner(lua_State *L, lconn *lc)
{
    if (!lc->owner.set)
        return;
    push_owners(L);
    lua_pushlightuserdata(L, lc);
    lua_pushnil(L);
    lua_rawset(L, -3);
    lua_pop(L, 1);
    lc->owner.main = NULL;
    lc->owner.set = 0;
}

/* What a child meets when it runs a statement on a connection it inherited:
 * the connection is invalidated (given back, it is discarded without a word
 * to the server; a Connection or Session then checks out a new one). */
static int raise_forked_pid(lua_State *L, pid_t owner)
{
    return scl_raise(L, "InvalidRequestError",
                    "This connection belongs to process %d, and this is process %d, a fork of it: "
                    "the child must not use the parent's connection (they share its socket). "
                    "In the child, let it go (rollback(), close(), Session:close(): nothing is sent), "
                    "then call engine:dispose() or create a new engine there, and check out a new "
                    "connection",
                    (int)owner, (int)sc_getpid());
}

int scl_lconn_raise_forked(lua_State *L, lconn *lc)
{
    lc->invalidated = 1;
    return raise_forked_pid(L, lc->c->pid);
}

static lconn *check_live(lua_State *L)
{
    lconn *lc = check_conn(L);
    scl_lconn_need_live(L, lc);
    return lc;
}

/* conn:commit() / conn:rollback(): the statement alone, with no Result to
 * build and collect (they end every unit of work). rollback() sends
 * nothing when the reset rule (sc_conn_needs_end) proves there is no
 * transaction to roll back. */
static int end_transaction(lua_State *L, int commit)
{
    lconn *lc = check_idle(L, commit ? "commit" : "rollback");
    if (!commit && scl_lconn_forked(lc)) {
        /* the parent's transaction is the parent's: the child lets it go */
        lc->invalidated = 1;
        return 0;
    }
    check_live(L);
    sc_error err;
    if (sc_conn_end(lc->c, commit, &err) != 0)
        return scl_lconn_raise_dberror(L, lc, &err, commit ? "COMMIT" : "ROLLBACK", commit ? 6 : 8, 0);
    return 0;
}

static int l_commit(lua_State *L)
{
    return end_transaction(L, 1);
}

static int l_rollback(lua_State *L)
{
    return end_transaction(L, 0);
}

/* raw:finish(commit [, reuse]): ends the unit of work and gives the connection back
 * in one call (what a Session on a plain engine does at commit, rollback
 * and close). commit true: COMMIT; false: ROLLBACK by the reset rule
 * (sc_conn_end), whatever the pool's reset mode. Whatever happens, the
 * connection is released (a dead one discarded) before an error is raised,
 * so no path keeps it out of the pool. On a busy connection nothing happens
 * and the InvalidRequestError is raised, or with reuse returned (see
 * scoped/session.lua's finish). */
/* Puts the (released) userdata at 1 back in its pool's spare list: the next
 * pool:checkout_spare fills it instead of making a new one with a finalizer
 * (what a request costs the garbage collector, most of it). Only a userdata
 * that never left the Session's hands is kept: checkout_spare sets spare,
 * _pin clears it when user code gets hold of it. */
static void keep_spare(lua_State *L, lconn *lc)
{
    if (!lc->spare)
        return;
    lc->spare = 0;
    scl_getuservalue(L, 1); /* {pool, spares}, shared with the pool */
    if (!lua_istable(L, -1)) {
        lua_pop(L, 1);
        return;
    }
    lua_rawgeti(L, -1, SC_SPARES_SLOT);
    if (!lua_istable(L, -1)) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_rawseti(L, -3, SC_SPARES_SLOT);
    }
    lua_pushvalue(L, 1);
    lua_rawseti(L, -2, (int)scl_rawlen(L, -2) + 1);
    lua_pop(L, 2);
}

static int l_finish(lua_State *L)
{
    lconn *lc = check_open(L);
    int commit = lua_toboolean(L, 2);
    int reuse = lua_toboolean(L, 3);
    scl_lconn_end_stream(L, lc); /* an open streaming Result is closed first */
    if (is_busy(L, lc)) {
        /* nothing done. A Session's fast path (reuse) gets the error as a
         * value: it has let go of the connection in its own fields already,
         * puts them back, then raises it */
        push_busy(L, lc, "finish");
        if (reuse)
            return 1;
        return lua_error(L);
    }
    if (scl_lconn_forked(lc)) {
        /* a child ending a unit of work it inherited: nothing is sent, the
         * pool discards the connection; a COMMIT is refused */
        pid_t owner = lc->c->pid;
        scl_lconn_release(lc);
        if (reuse)
            keep_spare(L, lc);
        if (commit)
            raise_forked_pid(L, owner);
        return 0;
    }
    if (lc->invalidated || lc->c->broken) {
        /* the transaction died with the connection: nothing to roll back;
         * a COMMIT cannot succeed (SQLAlchemy's rule, as check_live) */
        scl_lconn_release(lc);
        if (reuse)
            keep_spare(L, lc);
        if (commit)
            scl_raise(L, "PendingRollbackError", PENDING_ROLLBACK_TEXT);
        return 0;
    }
    sc_error err;
    if (sc_conn_end(lc->c, commit, &err) != 0) {
        scl_lconn_push_dberror(L, lc, &err, commit ? "COMMIT" : "ROLLBACK", commit ? 6 : 8, 0);
        scl_lconn_release(lc);
        if (reuse)
            keep_spare(L, lc);
        return lua_error(L);
    }
    scl_lconn_release(lc);
    if (reuse)
        keep_spare(L, lc);
    return 0;
}

/* raw:_check_idle([what [, ends]]): raises the busy error, naming what (the call
 * about to be made, e.g. "commit"), when a call is running on the
 * connection: scoped/engine.lua and session.lua ask before they change a
 * Connection's or Session's own state for a call the C side would refuse.
 * ends true: what comes is a commit, rollback or close, which closes an open
 * streaming Result first (scl_lconn_end_stream): done here. */
static int l_check_idle(lua_State *L)
{
    lconn *lc = check_conn(L);
    const char *what = lua_tostring(L, 2);
    if (lua_toboolean(L, 3))
        scl_lconn_end_stream(L, lc);
    scl_lconn_check_idle(L, lc, what != NULL ? what : "_check_idle");
    return 0;
}

/* raw:_pin(): user code holds this userdata now (a Session handed it to a
 * Connection): it must never be reused for another checkout. */
static int l_pin(lua_State *L)
{
    lconn *lc = check_conn(L);
    lc->spare = 0;
    return 0;
}

static int l_ping(lua_State *L)
{
    lconn *lc = check_idle(L, "ping");
    if (scl_lconn_forked(lc))
        return scl_lconn_raise_forked(L, lc);
    lua_pushboolean(L, sc_conn_ping(lc->c) == 0);
    return 1;
}

/* raw:close([rollback]): back to the pool (reset by the pool's mode) or
 * closed. rollback true: first end the transaction by the reset rule,
 * whatever the reset mode (a Connection's close() rolls back its own
 * transaction, as SQLAlchemy's does); a failed ROLLBACK discards it. */
static int l_close(lua_State *L)
{
    lconn *lc = check_conn(L);
    if (lc->entry != NULL && lc->entry->need != SC_NEED_NONE) {
        /* a deferred checkout given up before it was opened (lnb.c) */
        scl_lconn_check_idle(L, lc, "close");
        scl_lconn_release(lc);
        return 0;
    }
    if (lc->c == NULL)
        return 0;
    scl_lconn_end_stream(L, lc); /* an open streaming Result is closed first */
    scl_lconn_check_idle(L, lc, "close");
    if (lua_toboolean(L, 2) && !lc->invalidated && !lc->c->broken && !scl_lconn_forked(lc)) {
        sc_error err;
        if (sc_conn_end(lc->c, 0, &err) != 0)
            lc->invalidated = 1;
    }
    scl_lconn_release(lc);
    return 0;
}

/* raw:reset(): what the pool does with the connection on return
 * (pool_reset_on_return, sc_conn_reset), done now so that the reset event
 * comes before it and the checkin event after it, as in SQLAlchemy; the
 * checkin that follows finds nothing left to do. A failed reset
 * invalidates the connection. */
static int l_reset(lua_State *L)
{
    lconn *lc = check_idle(L, "reset");
    if (lc->pool != NULL && reset(lc) != 0)
        lc->invalidated = 1;
    return 0;
}

static int l_gc(lua_State *L)
{
    lconn *lc = scl_check_meta_self(L, "__gc", "connection");
    /* the collector never finalizes a busy connection (the busy call's
     * frame holds it): only a __gc called by hand meets this */
    scl_lconn_end_stream(L, lc);
    scl_lconn_check_idle(L, lc, "__gc");
    drop_owner(L, lc);
    if (lc->c != NULL && lc->pool != NULL && lc->entry->need == SC_NEED_NONE) {
        /* still checked out: the engine's hook, if any, fires its events
         * and gives the connection back (errors in a finalizer go nowhere) */
        scl_getuservalue(L, 1);
        if (lua_istable(L, -1)) {
            lua_rawgeti(L, -1, SC_GC_HOOK_SLOT);
            if (lua_isfunction(L, -1)) {
                lua_pushvalue(L, 1);
                lua_pcall(L, 1, 0, 0);
            }
        }
        lua_settop(L, 1);
    }
    scl_lconn_release(lc);
    return 0;
}

/* raw:invalidation_error() -> the disconnect error that made this connection
 * unusable (an error table), or nil */
static int l_invalidation_error(lua_State *L)
{
    lconn *lc = check_conn(L);
    if (lc->c == NULL || !lc->c->broken)
        return 0;
    scl_push_dberror(L, &lc->c->gone, NULL, 0, 0, 1);
    return 1;
}

static int l_closed(lua_State *L)
{
    lconn *lc = check_conn(L);
    lua_pushboolean(L, lc->c == NULL);
    return 1;
}

/* raw:in_transaction(): whether a transaction may be open on the server, by
 * the reset rule (sc_conn_needs_end): a rollback() would send ROLLBACK */
static int l_in_transaction(lua_State *L)
{
    lconn *lc = check_open(L);
    lua_pushboolean(L, sc_conn_needs_end(lc->c));
    return 1;
}

static int l_thread_id(lua_State *L)
{
    lconn *lc = check_open(L);
    lua_pushinteger(L, (lua_Integer)mysql_thread_id(lc->c->my));
    return 1;
}

/* raw:last_gtid(): the GTID of the last COMMIT this connection sent, as
 * its OK packet carried it (engine option track_gtid); nil when the flag is
 * off, no COMMIT was sent, or the server sent none (no binlog). */
static int l_last_gtid(lua_State *L)
{
    lconn *lc = check_open(L);
    if (lc->c->last_gtid[0] == '\0')
        lua_pushnil(L);
    else
        lua_pushstring(L, lc->c->last_gtid);
    return 1;
}

/* conn:invalidate(): discard on return instead of pooling */
static int l_invalidate(lua_State *L)
{
    lconn *lc = check_conn(L);
    lc->invalidated = 1;
    return 0;
}

static int l_is_invalidated(lua_State *L)
{
    lconn *lc = check_conn(L);
    lua_pushboolean(L, lc->invalidated || (lc->c != NULL && lc->c->broken));
    return 1;
}

static int l_set_hide_parameters(lua_State *L)
{
    lconn *lc = check_conn(L);
    lc->hide_parameters = lua_toboolean(L, 2);
    return 0;
}

static int l_tostring(lua_State *L)
{
    lconn *lc = check_conn(L);
    if (lc->c == NULL)
        lua_pushliteral(L, "RawConnection(closed)");
    else
        lua_pushfstring(L, "RawConnection(%d)", (int)mysql_thread_id(lc->c->my));
    return 1;
}

/* core.connect(url_table) -> a standalone connection */
static int l_connect(lua_State *L)
{
    sc_error err;
    scl_check_table(L, 1, "url");
    sc_url *owned = scl_url_push_owned(L);
    scl_url_from_lua(L, 1, owned);
    sc_conn *c = sc_conn_open_any(owned, NULL, &err);
    sc_url_free(owned);
    if (c == NULL)
        return scl_raise_connect_error(L, &err, 1);
    scl_lconn_push(L, c, 0, 0);
    return 1;
}

static const luaL_Reg conn_methods[] = {
    {"commit", l_commit},
    {"rollback", l_rollback},
    {"finish", l_finish},
    {"_pin", l_pin},
    {"_check_idle", l_check_idle},
    {"ping", l_ping},
    {"close", l_close},
    {"closed", l_closed},
    {"in_transaction", l_in_transaction},
    {"thread_id", l_thread_id},
    {"last_gtid", l_last_gtid},
    {"invalidate", l_invalidate},
    {"is_invalidated", l_is_invalidated},
    {"invalidation_error", l_invalidation_error},
    {"reset", l_reset},
    {"set_hide_parameters", l_set_hide_parameters},
    {NULL, NULL},
};

int scl_open_conn(lua_State *L)
{
    luaL_newmetatable(L, SC_CONN_MT);
    lua_newtable(L);
    scl_setmethods(L, -2, conn_methods);
    lua_newtable(L); /* the owners of busy marks (guarded()), values weak */
    lua_createtable(L, 0, 1);
    lua_pushliteral(L, "v");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    lua_pushlightuserdata(L, &owners_key);
    lua_pushvalue(L, -2);
    lua_rawset(L, LUA_REGISTRYINDEX);
    for (const luaL_Reg *g = scl_lexec_methods; g->name != NULL; g++) {
        lua_pushvalue(L, -3);                     /* 1: the metatable */
        lua_pushvalue(L, -2);                     /* 2: the owners */
        lua_pushcclosure(L, g->func, 2);
        lua_setfield(L, -3, g->name);
    }
    for (const luaL_Reg *g = scl_lnb_methods; g->name != NULL; g++) {
        lua_pushvalue(L, -3);
        lua_pushvalue(L, -2);
        lua_pushcclosure(L, g->func, 2);
        lua_setfield(L, -3, g->name);
    }
    lua_pop(L, 1);
    lua_pushvalue(L, -1);
    lua_setfield(L, -4, "conn_methods"); /* core.conn_methods: engine.lua keeps hot ones as upvalues */
    lua_setfield(L, -2, "__index");
    lua_pushvalue(L, -1); /* every metamethod closes over the metatable to check its self */
    lua_pushcclosure(L, l_gc, 1);
    lua_setfield(L, -2, "__gc");
    lua_pushvalue(L, -1);
    lua_pushcclosure(L, l_close, 1);
    lua_setfield(L, -2, "__close");
    lua_pushvalue(L, -1);
    lua_pushcclosure(L, l_tostring, 1);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 1);
    lua_pushcfunction(L, l_connect);
    lua_setfield(L, -2, "connect");
    return 0;
}
