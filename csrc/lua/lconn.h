/* The Lua-facing connection: one sc_conn, either standalone (core.connect)
 * or checked out of a pool (then closing it checks it back in). Two files
 * make it: lconn.c the userdata (open, close, finish, ping, reset, the busy
 * mark and its owner), lexec.c the statements run on it (execute,
 * executemany, exec_driver_sql, render). What both need is here; the hot
 * parts of the busy guard are static inline, so that a statement costs
 * what it did when both were one file. */
#ifndef SCOPED_LCONN_H
#define SCOPED_LCONN_H

#include "lutil.h"
#include "pid.h"
#include "pool.h"

#define SC_CONN_MT "scoped.RawConnection"

/* Where lconn.c finds the thread of a busy call (see "busy" there). */
typedef struct lconn_owner {
    lua_State *main; /* that thread when it is the main one (it never goes) */
    int set;         /* it is in the registry's weak table under the userdata's address */
} lconn_owner;

typedef struct lconn {
    sc_conn *c;            /* NULL once closed */
    sc_pool *pool;         /* set when checked out of a pool */
    sc_pool_entry *entry;
    int reset_mode;        /* what checkin does (SC_RESET_*, conn.h) */
    int hide_parameters;   /* keep bind values out of errors */
    int invalidated;       /* discard on return, whatever the server says */
    int spare;             /* checked out for a Session's own use (pool:checkout_spare):
                            * finish() may keep the userdata for the next one */
    const char *busy;      /* the call running on it ("execute", ...), NULL when none:
                            * Lua code it runs (a params metamethod, a finalizer the
                            * collector runs while rows are built, a hook) must not
                            * touch the connection meanwhile (scl_lconn_check_idle) */
    lconn_owner owner;     /* the thread of its busy calls (lconn.c): belongs to the
                            * userdata, not to the connection, so whoever moves or
                            * clears the fields above keeps it as it was */
    int nb_asking;         /* lnb.c: the operation in flight asks the server's lexer
                            * mode for an execute, which is rendered and sent after */
    struct lstream *stream; /* the streaming Result open on it (lstream.c), or NULL.
                            * While set, busy is never NULL: SCL_STREAM_OPEN between
                            * reads, the reading method's name during one; every
                            * statement is refused (busy), and what ends the unit of
                            * work closes the stream first (scl_lconn_end_stream) */
} lconn;

/* The busy mark of a connection with a streaming Result open on it and no
 * read of it running (compared by address). */
extern const char SCL_STREAM_OPEN[];
/* The busy mark of a connection whose non-blocking operation (lnb.c) waits
 * for the server while its coroutine is suspended in io_wait: only that
 * coroutine may go on with it (_nb_cont) or give it up (_nb_abandon). A
 * mark whose coroutine is gone (collected, or dead of an error) is given up
 * by the next call that meets it: the connection is then invalidated. */
extern const char SCL_NB_WAITING[];

/* Slot of the pool's shared user-value table ({pool, spares}) holding the
 * list of idle RawConnection userdata that pool:checkout_spare reuses. */
#define SC_SPARES_SLOT 2
/* Slot of the same table holding the engine's function(raw) called when a
 * checked-out RawConnection is garbage-collected (pool:set_gc_hook): it
 * fires the reset and checkin events before the connection goes back. */
#define SC_GC_HOOK_SLOT 3
/* Slot of the same table holding the engine's URL table, read only to
 * write the hint of an error opening a connection (scl_raise_connect_error). */
#define SC_URL_SLOT 4

/* Pushes a new userdata for c. owner_idx (the pool's userdata, or 0): the
 * connection shares the owner's user value, a table holding the owner, so
 * the pool outlives its connections. mt_idx: where the RawConnection
 * metatable is on the stack (an upvalue of the caller), or 0 to look it up
 * in the registry. */
lconn *scl_lconn_push(lua_State *L, sc_conn *c, int owner_idx, int mt_idx);
/* Returns the connection to its pool (reset first) or closes it. Safe to
 * call twice. Returns the reset outcome: 0 fine, -1 discarded. */
int scl_lconn_release(lconn *lc);
/* SQLAlchemy 2.0's text for every "rollback first" refusal
 * (scoped/exc.lua's pending_rollback raises the same) */
#define PENDING_ROLLBACK_TEXT                                                                      \
    "Can't reconnect until invalid transaction is rolled back.  Please rollback() fully before "  \
    "proceeding"

/* The slow half of scl_lconn_check_idle (lconn.c): lc->busy is set; raises
 * unless the call that set it is gone (see "busy" in lconn.c). */
void scl_lconn_check_busy(lua_State *L, lconn *lc, const char *what);

/* Raises InvalidRequestError ("This connection is busy: ...") when a call
 * is running on lc (lc->busy): what, the function that was refused, is
 * named in the message. Every call that touches the connection's C state
 * checks this first (csrc/lua/llease.c too). Inline: one load when idle. */
static inline void scl_lconn_check_idle(lua_State *L, lconn *lc, const char *what)
{
    if (lc->busy != NULL)
        scl_lconn_check_busy(L, lc, what);
}

/* Raises ResourceClosedError on a closed connection. */
static inline void scl_lconn_need_open(lua_State *L, const lconn *lc)
{
    if (lc->c == NULL)
        scl_raise(L, "ResourceClosedError", "This Connection is closed");
}

/* Whether the connection was opened by another process: this is a child
 * of the process that checked it out (fork), and the socket is shared with
 * the parent, which may be using it right now. sc_getpid is a cached load. */
static inline int scl_lconn_forked(const lconn *lc)
{
    return lc->c->pid != sc_getpid();
}

/* What a child meets when it runs a statement on a connection it
 * inherited (lconn.c): the connection is invalidated, InvalidRequestError
 * says what to do. */
int scl_lconn_raise_forked(lua_State *L, lconn *lc);

/* For statements: an open connection that has not died, of this process.
 * A statement on a dead one would fail anyway; this error says what to do
 * instead (the SQLAlchemy rule the Connection in engine.lua follows: roll
 * back, then the next statement gets a new connection). */
static inline void scl_lconn_need_live(lua_State *L, lconn *lc)
{
    scl_lconn_need_open(L, lc);
    if (scl_lconn_forked(lc))
        scl_lconn_raise_forked(L, lc);
    if (lc->invalidated || lc->c->broken)
        scl_raise(L, "PendingRollbackError", PENDING_ROLLBACK_TEXT);
}

/* ---- the busy guard (the design is under "busy" in lconn.c) --------------
 *
 * The calls that hold the connection's C state while they may run Lua code
 * (lexec.c: execute, executemany, exec_driver_sql, render) each have a
 * wrapper of their own (guard_*, in lexec.c next to its body, so that the
 * body is a direct call the compiler may inline) that runs the body
 * through scl_lconn_guarded. lconn.c registers them (scl_lexec_methods) as
 * closures with upvalue 1 the RawConnection metatable and upvalue 2 the
 * weak table of owners, and recognises their frames on a stack
 * (scl_lexec_is_guard) to tell a running busy call from a dead one. */

/* Records L as the thread of lc's busy call, before it starts: one write
 * into the weak table (at index owners) for a coroutine; for the main
 * thread, which never goes, once. */
static inline void scl_lconn_set_owner(lua_State *L, lconn *lc, int owners)
{
    lua_pushlightuserdata(L, lc);
    int main = lua_pushthread(L);
    lua_rawset(L, owners);
    lc->owner.main = main ? L : NULL;
    lc->owner.set = 1;
}

typedef int (*scl_guarded_body)(lua_State *L, lconn *lc);

/* Runs body on the connection at 1, marked busy with name (the method's
 * name, for the busy error) for the whole run. statement: the connection
 * must be live (scl_lconn_need_live), else only open. No lua_pcall clears
 * the mark on an error: lconn.c's is_busy drops a mark whose call is gone. */
static inline int scl_lconn_guarded(lua_State *L, const char *name, int statement,
                                   scl_guarded_body body)
{
    lconn *lc = scl_check_self_as(L, "RawConnection", name);
    scl_lconn_check_idle(L, lc, name);
    if (lc->owner.main != L)
        scl_lconn_set_owner(L, lc, lua_upvalueindex(2)); /* no allocation once the key is there */
    if (statement)
        scl_lconn_need_live(L, lc);
    else
        scl_lconn_need_open(L, lc);
    lc->busy = name;
    int n = body(L, lc);
    lc->busy = NULL;
    return n;
}

/* Closes the streaming Result open on lc, if any (its rest read and
 * dropped; on an invalidated connection discarded), so that a commit,
 * rollback, close or checkin can go on: 0. -1 when a read of that Result
 * is running (this was called from inside it: a finalizer, a hook): then
 * nothing is done and the caller's busy check refuses. */
int scl_lconn_end_stream(lua_State *L, lconn *lc);
/* Whether the read marked on lc (busy set by a streaming Result's fetch) is
 * still running: its frame is on the stack of its thread (see "busy"). */
int scl_lconn_read_running(lua_State *L, lconn *lc);
/* Records L as the thread of a read of lc's stream (a coroutine). */
void scl_lconn_set_read_owner(lua_State *L, lconn *lc);

/* lstream.c: a streaming Result over the statement just sent on lc (the
 * user's text at index sql_idx, for errors; yield_per, 0 for none): pushes
 * it, or a buffered Result when the statement returns no rows. Raises the
 * DBAPIError on failure. */
int scl_stream_push(lua_State *L, lconn *lc, int sql_idx, int yield_per);
/* lstream.c: ends lc's stream in C (drained, or discarded), unlinks it
 * from lc and clears lc->busy. No read of it may be running. */
void scl_stream_detach(lconn *lc, int discard);
/* lstream.c: whether f is one of a streaming Result's reading methods; if
 * so, and the value at idx of T is a streaming Result, its connection. */
int scl_stream_is_reader(lua_CFunction f);
lconn *scl_stream_conn_at(lua_State *T, int idx);

/* lexec.c, for lnb.c: the results of the statement just sent (or replayed)
 * collected into a Result pushed on the stack (raises the DBAPIError);
 * the statement as it will be sent, rendered into lc's buffer when it has
 * binds (*q is sql itself otherwise); executemany's statements, as the
 * list {text1, row1, ...} (arguments as conn:executemany's; only_named:
 * nothing is pushed, 0 returned, for a statement without :name binds). */
int scl_lexec_collect(lua_State *L, lconn *lc, const char *sql, size_t len, int params);
void scl_lexec_render(lua_State *L, lconn *lc, const char *sql, size_t len, int params,
                      const char **q, size_t *qlen);
int scl_lexec_plan_many(lua_State *L, lconn *lc, int only_named);
/* lexec.c: after a statement, a charset that is not accepted refuses the
 * connection (raises InterfaceError, the connection broken). */
void scl_lexec_check_charset(lua_State *L, lconn *lc, const char *sql, size_t len, int params);
/* scl_lexec_render for the non-blocking driver: 1 (nothing rendered) when
 * the server's lexer mode must be asked first; then again with asked. */
int scl_lexec_render_nb(lua_State *L, lconn *lc, const char *sql, size_t len, int params,
                        const sc_lex_mode *asked, const char **q, size_t *qlen);

/* lnb.c: its methods (registered as lexec.c's, through the same closure
 * upvalues), whether f is one of them (a guard, for busy), and giving up
 * lc's operation in flight: the server session is killed (a pooled
 * connection's, through the pool's URL), the connection invalidated. */
extern const luaL_Reg scl_lnb_methods[];
int scl_lnb_is_guard(lua_CFunction f);
void scl_lnb_abandon(lconn *lc);

/* lconn.c: whether L is the thread whose call marked lc busy. */
int scl_lconn_owned_by(lua_State *L, const lconn *lc);

/* lexec.c: the guarded methods, {name, guard_*} ending with {NULL, NULL}. */
extern const luaL_Reg scl_lexec_methods[];
/* lexec.c: whether f is one of their guard_* wrappers. */
int scl_lexec_is_guard(lua_CFunction f);

/* lexec.c: pushes the DBAPIError for err on lc (invalidating lc when the
 * connection is gone; with hide_parameters, without the bound values), for
 * the statement sql[0..len) run with the parameters at index params (0:
 * none). scl_lconn_raise_dberror raises it, and clears lc->busy first (the
 * statement is over). */
void scl_lconn_push_dberror(lua_State *L, lconn *lc, const sc_error *err, const char *sql,
                           size_t len, int params);
int scl_lconn_raise_dberror(lua_State *L, lconn *lc, const sc_error *err, const char *sql,
                           size_t len, int params);

/* Appends sql, parsed into plan (see binds.h), rendered with the params at
 * index params (0: none) to b, strings written for a client charset of
 * class cs (SC_CS_*); raises ArgumentError naming a missing or unsupported
 * bind. */
void scl_render_plan(lua_State *L, sc_buf *b, const sc_bind_plan *plan, const char *sql, int params,
                    int cs);

#endif
