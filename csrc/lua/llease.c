/* Leases: a checked-out connection lent by one lua_State to another of the
 * same process, one statement at a time.
 *
 * Why: under OpenResty a slow statement blocks the nginx worker, so the
 * offload mode (lua/scoped/ngx.lua) runs it in nginx's thread pool through
 * ngx.run_worker_thread, whose threads have lua_States of their own. The
 * session's connection -- and the transaction open on it -- must be the
 * same for every statement, and the pool must stay the worker's business
 * (its waits happen on an ngx.semaphore there), so the connection itself
 * travels: the worker parks it (core.lease(raw): the RawConnection is left
 * empty, as if closed), a pool thread borrows it by number
 * (core.lease_borrow(id)), runs the statement and gives it back
 * (core.lease_return(id, raw)), and the worker puts it back into the very
 * same RawConnection (lease:restore(raw)).
 *
 * Ownership never splits: the connection's contents (the lconn struct:
 * sc_conn, pool entry, reset mode, flags) are in exactly one place at a
 * time -- a RawConnection userdata or a slot here -- and whoever holds them
 * returns them to the pool if abandoned:
 *   - the Lease (worker) collected while the slot is parked: the slot's
 *     connection is released (reset, checked in) by the Lease's __gc;
 *   - collected while a thread has it: the slot is marked orphaned and the
 *     thread releases it when it gives it back (the request that lent it
 *     was aborted and its coroutine collected meanwhile);
 *   - a borrowed RawConnection collected before it is given back releases
 *     itself, as any RawConnection does.
 * The pool itself outlives the lease: the slot holds a reference to it (a C
 * one, sc_pool_retain: the thread's lua_State cannot hold the worker's pool
 * userdata), dropped when the slot is freed, after its connection went back.
 * So even when the request that lent the connection is gone and the pool's
 * userdata was collected meanwhile, the thread's lease_return (or the
 * collection of its RawConnection) checks the connection into a live pool,
 * which closes it when that last reference goes. The Lease also shares the
 * RawConnection's user value, which holds the pool userdata, and hands it on
 * to the RawConnection it restores into.
 *
 * Slots are process-wide, in a list under one mutex: there are never more
 * than the connections checked out, and each call does O(slots) work. A
 * forked child must not use its parent's leases (the pool's pid checks
 * discard such connections if it does). */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "lconn.h"

#define SC_LEASE_MT "scoped.Lease"

enum { SLOT_PARKED, SLOT_AWAY, SLOT_ORPHAN };

typedef struct lease_slot {
    struct lease_slot *next;
    double id;   /* a Lua number on every Lua: ids stay below 2^53 */
    int state;   /* SLOT_* */
    lconn held;  /* the connection while parked; zeroed while away */
    sc_pool *pool; /* the connection's pool, a reference held (NULL: none) */
} lease_slot;

typedef struct llease {
    lease_slot *slot; /* NULL once restored */
    double id;
} llease;

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static lease_slot *g_slots;
static double g_next_id = 1;

/* under g_mu */
static lease_slot *find_slot(double id, lease_slot ***link)
{
    lease_slot **pp = &g_slots;
    while (*pp != NULL && (*pp)->id != id)
        pp = &(*pp)->next;
    if (link != NULL)
        *link = pp;
    return *pp;
}

/* under g_mu */
static void unlink_slot(lease_slot *s)
{
    lease_slot **pp = &g_slots;
    while (*pp != NULL && *pp != s)
        pp = &(*pp)->next;
    if (*pp == s)
        *pp = s->next;
}

/* Frees an unlinked slot, its connection given back or moved out already,
 * and drops its reference to the pool (which may free the pool). */
static void slot_free(lease_slot *s)
{
    sc_pool *pool = s->pool;
    free(s);
    if (pool != NULL)
        sc_pool_free(pool);
}

/* Moves a connection's contents from one lconn to another, leaving the
 * source closed (c == NULL), so that a collected source releases nothing. */
static void move_conn(lconn *to, lconn *from)
{
    /* the owner record stays with each userdata (lconn.h) */
    lconn_owner to_owner = to->owner, from_owner = from->owner;
    *to = *from;
    to->owner = to_owner;
    memset(from, 0, sizeof *from);
    from->owner = from_owner;
}

static lconn *check_conn_arg(lua_State *L, int i)
{
    return scl_check_udata(L, i, SC_CONN_MT, "connection");
}

static double check_id(lua_State *L, int i)
{
    double id = scl_check_number(L, i, "lease id");
    if (!(id >= 1 && id <= 9007199254740992.0) || id != (double)(long long)id)
        scl_argerror(L, "lease id must be a positive whole number");
    return id;
}

/* core.lease(raw) -> Lease: parks raw's connection; raw reads as closed
 * until lease:restore(raw). */
static int l_lease(lua_State *L)
{
    lconn *lc = check_conn_arg(L, 1);
    if (lc->c == NULL)
        return scl_raise(L, "ResourceClosedError", "This Connection is closed");
    scl_lconn_check_idle(L, lc, "lease");
    /* allocate everything before the connection moves: a raise after it
     * would lose it */
    llease *le = scl_newuserdata(L, sizeof *le);
    le->slot = NULL;
    le->id = 0;
    luaL_getmetatable(L, SC_LEASE_MT);
    lua_setmetatable(L, -2);
    scl_getuservalue(L, 1); /* {pool}: the pool outlives the lease */
    if (lua_istable(L, -1))
        scl_setuservalue(L, -2);
    else
        lua_pop(L, 1);
    lease_slot *s = calloc(1, sizeof *s);
    if (s == NULL)
        return luaL_error(L, "out of memory");
    if (lc->pool != NULL) {
        s->pool = lc->pool;
        sc_pool_retain(s->pool);
    }
    pthread_mutex_lock(&g_mu);
    s->id = g_next_id++;
    s->state = SLOT_PARKED;
    move_conn(&s->held, lc);
    s->next = g_slots;
    g_slots = s;
    pthread_mutex_unlock(&g_mu);
    le->slot = s;
    le->id = s->id;
    return 1;
}

static llease *check_lease(lua_State *L)
{
    return scl_check_self(L, "Lease");
}

static int l_lease_id(lua_State *L)
{
    llease *le = check_lease(L);
#if SC_HAS_INTEGERS
    lua_pushinteger(L, (lua_Integer)le->id);
#else
    lua_pushnumber(L, le->id);
#endif
    return 1;
}

/* lease:restore(raw): the connection back into raw (a closed RawConnection,
 * normally the one it was leased from). Raises InvalidRequestError while a
 * thread still has it. */
static int l_lease_restore(lua_State *L)
{
    llease *le = check_lease(L);
    lconn *lc = check_conn_arg(L, 2);
    if (le->slot == NULL)
        return scl_raise(L, "InvalidRequestError", "This lease has been restored already");
    if (lc->c != NULL)
        return scl_argerror(L, "lease:restore() needs a closed connection to restore into");
    pthread_mutex_lock(&g_mu);
    lease_slot *s = le->slot;
    if (s->state != SLOT_PARKED) {
        pthread_mutex_unlock(&g_mu);
        return scl_raise(L, "InvalidRequestError",
                        "This connection is busy: a statement is still running on it in a worker thread");
    }
    unlink_slot(s);
    pthread_mutex_unlock(&g_mu);
    /* the RawConnection restored into holds the pool from now on (the one
     * it was leased from holds it already; any other gets the Lease's) */
    scl_getuservalue(L, 1);
    if (lua_istable(L, -1))
        scl_setuservalue(L, 2);
    else
        lua_pop(L, 1);
    move_conn(lc, &s->held);
    slot_free(s);
    le->slot = NULL;
    return 0;
}

/* lease:busy() -> whether a thread has the connection now */
static int l_lease_busy(lua_State *L)
{
    llease *le = check_lease(L);
    int busy = 0;
    pthread_mutex_lock(&g_mu);
    if (le->slot != NULL)
        busy = le->slot->state != SLOT_PARKED;
    pthread_mutex_unlock(&g_mu);
    lua_pushboolean(L, busy);
    return 1;
}

static int l_lease_gc(lua_State *L)
{
    llease *le = scl_check_meta_self(L, "__gc", "lease");
    lease_slot *s = le->slot;
    if (s == NULL)
        return 0;
    le->slot = NULL;
    lconn orphan;
    memset(&orphan, 0, sizeof orphan);
    pthread_mutex_lock(&g_mu);
    if (s->state == SLOT_PARKED) {
        unlink_slot(s);
        move_conn(&orphan, &s->held);
    } else {
        s->state = SLOT_ORPHAN; /* the borrowing thread releases it */
        s = NULL;
    }
    pthread_mutex_unlock(&g_mu);
    if (s != NULL) {
        scl_lconn_release(&orphan); /* reset and check in, outside the lock */
        slot_free(s);              /* then the pool may go */
    }
    return 0;
}

/* core.lease_borrow(id) -> RawConnection holding the parked connection
 * (in whatever lua_State calls it); core.lease_return must follow. */
static int l_borrow(lua_State *L)
{
    double id = check_id(L, 1);
    lconn *lc = scl_lconn_push(L, NULL, 0, 0); /* empty until the move below */
    pthread_mutex_lock(&g_mu);
    lease_slot *s = find_slot(id, NULL);
    if (s == NULL || s->state != SLOT_PARKED) {
        int state = s ? s->state : -1;
        pthread_mutex_unlock(&g_mu);
        if (state == SLOT_AWAY)
            return scl_raise(L, "InvalidRequestError", "lease %d is borrowed already", (int)id);
        return scl_raise(L, "InvalidRequestError", "no lease %d to borrow (given up by its owner?)", (int)id);
    }
    s->state = SLOT_AWAY;
    move_conn(lc, &s->held);
    pthread_mutex_unlock(&g_mu);
    return 1;
}

/* core.lease_return(id, raw): gives a borrowed connection back; raw reads
 * as closed afterwards. When the lease was given up meanwhile (its owner
 * collected), the connection goes back to the pool here. */
static int l_return(lua_State *L)
{
    double id = check_id(L, 1);
    lconn *lc = check_conn_arg(L, 2);
    scl_lconn_check_idle(L, lc, "lease_return");
    lconn orphan;
    memset(&orphan, 0, sizeof orphan);
    pthread_mutex_lock(&g_mu);
    lease_slot **link;
    lease_slot *s = find_slot(id, &link);
    if (s == NULL || s->state == SLOT_PARKED) {
        pthread_mutex_unlock(&g_mu);
        return scl_raise(L, "InvalidRequestError", "lease %d is not borrowed", (int)id);
    }
    if (s->state == SLOT_AWAY) {
        move_conn(&s->held, lc);
        s->state = SLOT_PARKED;
        s = NULL;
    } else {
        *link = s->next;
        move_conn(&orphan, lc);
    }
    pthread_mutex_unlock(&g_mu);
    if (s != NULL) {
        scl_lconn_release(&orphan); /* into the pool the slot kept alive */
        slot_free(s);
    }
    return 0;
}

/* core.lease_count() -> slots in use in this process (for tests) */
static int l_count(lua_State *L)
{
    int n = 0;
    pthread_mutex_lock(&g_mu);
    for (lease_slot *s = g_slots; s != NULL; s = s->next)
        n++;
    pthread_mutex_unlock(&g_mu);
    lua_pushinteger(L, n);
    return 1;
}

static const luaL_Reg lease_methods[] = {
    {"id", l_lease_id},
    {"restore", l_lease_restore},
    {"busy", l_lease_busy},
    {NULL, NULL},
};

int scl_open_lease(lua_State *L)
{
    luaL_newmetatable(L, SC_LEASE_MT);
    lua_newtable(L);
    scl_setmethods(L, -2, lease_methods);
    lua_setfield(L, -2, "__index");
    lua_pushvalue(L, -1); /* the finalizer checks its argument against it */
    lua_pushcclosure(L, l_lease_gc, 1);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
    lua_pushcfunction(L, l_lease);
    lua_setfield(L, -2, "lease");
    lua_pushcfunction(L, l_borrow);
    lua_setfield(L, -2, "lease_borrow");
    lua_pushcfunction(L, l_return);
    lua_setfield(L, -2, "lease_return");
    lua_pushcfunction(L, l_count);
    lua_setfield(L, -2, "lease_count");
    return 0;
}
