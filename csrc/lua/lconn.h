/* The Lua-facing connection: one sc_conn, either standalone (core.connect)
 * or checked out of a pool (then closing it checks it back in). */
#ifndef SCOPED_LCONN_H
#define SCOPED_LCONN_H

#include "lutil.h"
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
                            * touch the connection meanwhile (sc_lconn_check_idle) */
    lconn_owner owner;     /* the thread of its busy calls (lconn.c): belongs to the
                            * userdata, not to the connection, so whoever moves or
                            * clears the fields above keeps it as it was */
} lconn;

/* Slot of the pool's shared user-value table ({pool, spares}) holding the
 * list of idle RawConnection userdata that pool:checkout_spare reuses. */
#define SC_SPARES_SLOT 2
/* Slot of the same table holding the engine's function(raw) called when a
 * checked-out RawConnection is garbage-collected (pool:set_gc_hook): it
 * fires the reset and checkin events before the connection goes back. */
#define SC_GC_HOOK_SLOT 3

/* Pushes a new userdata for c. owner_idx (the pool's userdata, or 0): the
 * connection shares the owner's user value, a table holding the owner, so
 * the pool outlives its connections. mt_idx: where the RawConnection
 * metatable is on the stack (an upvalue of the caller), or 0 to look it up
 * in the registry. */
lconn *sc_lconn_push(lua_State *L, sc_conn *c, int owner_idx, int mt_idx);
/* Returns the connection to its pool (reset first) or closes it. Safe to
 * call twice. Returns the reset outcome: 0 fine, -1 discarded. */
int sc_lconn_release(lconn *lc);
/* Raises InvalidRequestError ("This connection is busy: ...") when a call
 * is running on lc (lc->busy): what, the function that was refused, is
 * named in the message. Every call that touches the connection's C state
 * checks this first (csrc/llease.c too). */
void sc_lconn_check_idle(lua_State *L, lconn *lc, const char *what);

/* Appends sql, parsed into plan (see binds.h), rendered with the params at
 * index params (0: none) to b, strings written for a client charset of
 * class cs (SC_CS_*); raises ArgumentError naming a missing or unsupported
 * bind. */
void sc_render_plan(lua_State *L, sc_buf *b, const sc_bind_plan *plan, const char *sql, int params,
                    int cs);

/* Builds an sc_url from the Lua URL table at idx (fields as core.parse_url
 * returns them); raises ArgumentError on a bad field. */
void sc_url_from_lua(lua_State *L, int idx, sc_url *u);
/* Pushes an empty sc_url owned by a userdata that frees it when collected. */
sc_url *sc_url_push_owned(lua_State *L);

#endif
