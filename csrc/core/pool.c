/* The connection pool: SQLAlchemy's QueuePool in C, with waiters served in
 * arrival order.
 *
 * State, all guarded by the pool's mutex:
 *   - idle:  connections checked in and kept (at most pool_size);
 *   - open:  connections of the current generation that exist or are being
 *            opened or closed -- a slot is reserved before the connector is
 *            called and released only after it has closed, so the server
 *            never sees more than pool_size + max_overflow at once;
 *   - queue: one FIFO of waiters, blocking (a condition variable each) and
 *            polling (heap tickets) alike;
 *   - resv:  tickets that were granted something (an entry or a slot) and
 *            whose holders have not come back for it yet.
 *
 * Fairness comes from never letting a returned connection or a freed slot
 * touch the shared state while someone is queued: it is handed to the head
 * waiter directly, and a newcomer may only help itself when the queue is
 * empty. Invariant: while a live waiter is queued there is no idle
 * connection and no free slot.
 *
 * Nothing slow runs under the mutex: open, close, discard (except in a
 * freshly forked child), ping all happen outside it. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "pid.h"
#include "clock.h"
#include "pool.h"

/* A timeout beyond this is "forever"; capping keeps the deadline arithmetic
 * and the conversion to time_t defined for huge or infinite timeouts. */
#define SC_MAX_WAIT 1e9

enum { W_QUEUED, W_ENTRY, W_SLOT, W_EXPIRED };
enum { L_NONE, L_QUEUE, L_RESV };

struct sc_waiter {
    struct sc_waiter *next, *prev;
    double deadline;
    int state;            /* W_* */
    int where;            /* L_*: which of the pool's lists links it */
    int blocking;         /* on a thread's stack, woken through cond */
    unsigned slot_gen;    /* generation a W_SLOT grant was counted in */
    unsigned epoch;       /* pool's fork epoch when queued */
    sc_pool_entry *entry; /* W_ENTRY */
    pthread_cond_t cond;  /* blocking waiters only */
};

struct sc_pool {
    sc_pool_config cfg;   /* immutable after sc_pool_new: read without lock */
    sc_connector c;       /* idem */
    pthread_mutex_t mu;
    pthread_condattr_t cattr;
    pid_t pid;            /* process the state below belongs to */
    unsigned generation;  /* bumped by dispose and fork */
    unsigned epoch;       /* bumped by fork only: tickets survive dispose */
    double invalid_before; /* entries opened at or before this are stale (a disconnect) */
    /* the same per host, with the connector's host_of (several hosts) */
    double host_invalid_before[SC_POOL_MAX_HOSTS];
    sc_pool_entry *idle_head, *idle_tail;
    int nidle;
    int open;
    sc_waiter *q_head, *q_tail;
    int nwait;
    int nblocking;
    sc_waiter *r_head;
    /* process-wide list (g_mu): atfork locking and the shared registry */
    sc_pool *g_next, *g_prev;
    int g_linked;
    sc_pool_counters n;   /* what stats() reports beside the state above */
    sc_pool_host_wait hw[SC_POOL_MAX_HOSTS]; /* checkout waits by the host they ended on */
    char *name, *key;     /* shared pools only */
    int refs;             /* owners (g_mu): engines sharing it, leases away with a connection */
};

/* ---- small helpers ------------------------------------------------------ */

/* The pool's own failures: no errno of their own (error.h). */
#define pool_error(err, ...) sc_error_set((err), SC_ERR_CANNOT_CONNECT, "HY000", __VA_ARGS__)

static char *dupstr(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d != NULL)
        memcpy(d, s, n);
    return d;
}

static void free_ud(const sc_connector *c)
{
    if (c != NULL && c->free_ud != NULL)
        c->free_ud(c->ud);
}

static struct timespec to_timespec(double t)
{
    struct timespec ts;
    if (!(t > 0))
        t = 0;
    ts.tv_sec = (time_t)t;
    long ns = (long)((t - (double)ts.tv_sec) * 1e9);
    if (ns < 0)
        ns = 0;
    if (ns > 999999999L)
        ns = 999999999L;
    ts.tv_nsec = ns;
    return ts;
}

/* SQLAlchemy 2.0 (its issue 8523): pool_size 0 means no limit at all, the
 * overflow included; max_overflow -1 likewise. */
static int under_limit(const sc_pool *p)
{
    if (p->cfg.max_overflow < 0 || p->cfg.pool_size == 0)
        return 1;
    return (long long)p->open < (long long)p->cfg.pool_size + p->cfg.max_overflow;
}

/* SQLAlchemy: pool_size 0 means no limit on the idle connections kept
 * (NullPool is the way to keep none). */
static int idle_has_room(const sc_pool *p)
{
    if (p->cfg.null_pool)
        return 0;
    return p->cfg.pool_size <= 0 || p->nidle < p->cfg.pool_size;
}

/* ---- the process-wide list of pools ------------------------------------- */

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t g_mu;
static sc_pool *g_pools;

/* fork() in a threaded program copies mutexes in whatever state they were,
 * held by threads that do not exist in the child. Holding every pool's
 * mutex (and the registry's) across fork() means the child starts with
 * consistent pool state and locks its only thread can release; the lazy
 * per-call pid check then drops what belonged to the parent. Pool code never
 * takes g_mu while holding a pool mutex, so this order cannot deadlock. */
static void atfork_prepare(void)
{
    pthread_mutex_lock(&g_mu);
    for (sc_pool *p = g_pools; p != NULL; p = p->g_next)
        pthread_mutex_lock(&p->mu);
}

static void atfork_release(void)
{
    for (sc_pool *p = g_pools; p != NULL; p = p->g_next)
        pthread_mutex_unlock(&p->mu);
    pthread_mutex_unlock(&g_mu);
}

static void g_init(void)
{
    pthread_mutex_init(&g_mu, NULL);
    /* If registration fails (ENOMEM), forking while another thread is inside
     * the pool could leave a lock held in the child; single-threaded forks
     * (the common prefork case) still work through the pid check. */
    (void)pthread_atfork(atfork_prepare, atfork_release, atfork_release);
}

static void g_link_locked(sc_pool *p)
{
    p->g_prev = NULL;
    p->g_next = g_pools;
    if (g_pools != NULL)
        g_pools->g_prev = p;
    g_pools = p;
    p->g_linked = 1;
}

static void g_unlink_locked(sc_pool *p)
{
    if (!p->g_linked)
        return;
    if (p->g_prev != NULL)
        p->g_prev->g_next = p->g_next;
    else
        g_pools = p->g_next;
    if (p->g_next != NULL)
        p->g_next->g_prev = p->g_prev;
    p->g_next = p->g_prev = NULL;
    p->g_linked = 0;
}

/* ---- lists --------------------------------------------------------------- */

static void idle_push(sc_pool *p, sc_pool_entry *e)
{
    e->next = NULL;
    e->prev = p->idle_tail;
    if (p->idle_tail != NULL)
        p->idle_tail->next = e;
    else
        p->idle_head = e;
    p->idle_tail = e;
    p->nidle++;
}

/* FIFO spreads use over all kept connections (SQLAlchemy's default); LIFO
 * lets the surplus ones idle long enough for the server to time them out. */
static void idle_unlink(sc_pool *p, sc_pool_entry *e)
{
    if (e->prev != NULL)
        e->prev->next = e->next;
    else
        p->idle_head = e->next;
    if (e->next != NULL)
        e->next->prev = e->prev;
    else
        p->idle_tail = e->prev;
    e->next = e->prev = NULL;
    p->nidle--;
}

/* Several hosts: e was opened before a disconnect on its host. */
static int host_stale(const sc_pool *p, const sc_pool_entry *e)
{
    int h = p->c.host_of(p->c.ud, e->conn);
    return h >= 0 && h < SC_POOL_MAX_HOSTS && e->created_at <= p->host_invalid_before[h];
}

static sc_pool_entry *idle_take(sc_pool *p)
{
    sc_pool_entry *e = p->cfg.use_lifo ? p->idle_tail : p->idle_head;
    if (e != NULL)
        idle_unlink(p, e);
    return e;
}

static void q_push(sc_pool *p, sc_waiter *w)
{
    w->next = NULL;
    w->prev = p->q_tail;
    if (p->q_tail != NULL)
        p->q_tail->next = w;
    else
        p->q_head = w;
    p->q_tail = w;
    w->where = L_QUEUE;
    p->nwait++;
}

static void r_push(sc_pool *p, sc_waiter *w)
{
    w->prev = NULL;
    w->next = p->r_head;
    if (p->r_head != NULL)
        p->r_head->prev = w;
    p->r_head = w;
    w->where = L_RESV;
}

static void w_unlink(sc_pool *p, sc_waiter *w)
{
    if (w->where == L_QUEUE) {
        if (w->prev != NULL)
            w->prev->next = w->next;
        else
            p->q_head = w->next;
        if (w->next != NULL)
            w->next->prev = w->prev;
        else
            p->q_tail = w->prev;
        p->nwait--;
    } else if (w->where == L_RESV) {
        if (w->prev != NULL)
            w->prev->next = w->next;
        else
            p->r_head = w->next;
        if (w->next != NULL)
            w->next->prev = w->prev;
    }
    w->next = w->prev = NULL;
    w->where = L_NONE;
}

/* ---- fork ---------------------------------------------------------------- */

/* Called with the mutex held, first thing in every public call. In a child
 * the idle connections' sockets are shared with the parent: discard frees
 * them without a COM_QUIT that would kill the parent's sessions. Waiters
 * are dropped unseen (blocking ones lived on the stacks of threads the
 * child does not have; tickets are recognised by their epoch when their
 * holder comes back). Entries still checked out carry the parent's pid and
 * are discarded at checkin. */
static void fork_check_locked(sc_pool *p, pid_t me)
{
    if (p->pid == me)
        return;
    sc_pool_entry *e = p->idle_head;
    while (e != NULL) {
        sc_pool_entry *next = e->next;
        if (p->c.discard != NULL)
            p->c.discard(p->c.ud, e->conn);
        free(e);
        e = next;
    }
    p->idle_head = p->idle_tail = NULL;
    p->nidle = 0;
    p->open = 0;
    p->q_head = p->q_tail = NULL;
    p->nwait = 0;
    p->nblocking = 0;
    p->r_head = NULL;
    p->generation++;
    p->epoch++;
    p->pid = me;
    memset(&p->n, 0, sizeof p->n); /* the child's pool counts its own */
}

static void lock_pool(sc_pool *p, pid_t me)
{
    pthread_mutex_lock(&p->mu);
    fork_check_locked(p, me);
}

static void unlock_pool(sc_pool *p)
{
    pthread_mutex_unlock(&p->mu);
}

/* ---- handing things to waiters ------------------------------------------- */

/* A queued ticket past its deadline holds nothing; dropping it lets the
 * next waiter in. Its holder learns SC_POOL_TIMEOUT when it comes back.
 * Blocking waiters are left alone: they wake at their deadline by
 * themselves, and one granted just as it times out still takes the grant. */
static sc_waiter *first_live(sc_pool *p, double now)
{
    sc_waiter *w;
    while ((w = p->q_head) != NULL && !w->blocking && now >= w->deadline) {
        w_unlink(p, w);
        w->state = W_EXPIRED;
    }
    return w;
}

/* A ticket's grant is only reclaimed when its deadline passes, and a
 * blocking waiter may be the only one around to notice: wake them so they
 * take the new deadline into their sleep. */
static void grant_done(sc_pool *p, sc_waiter *w)
{
    if (w->blocking) {
        pthread_cond_signal(&w->cond);
        return;
    }
    r_push(p, w);
    if (p->nblocking > 0)
        for (sc_waiter *b = p->q_head; b != NULL; b = b->next)
            if (b->blocking)
                pthread_cond_signal(&b->cond);
}

static void grant_entry(sc_pool *p, sc_waiter *w, sc_pool_entry *e)
{
    w_unlink(p, w);
    w->entry = e;
    w->state = W_ENTRY;
    grant_done(p, w);
}

/* The slot is counted as open from now on, on the waiter's behalf. */
static void grant_slot(sc_pool *p, sc_waiter *w)
{
    w_unlink(p, w);
    p->open++;
    w->slot_gen = p->generation;
    w->state = W_SLOT;
    grant_done(p, w);
}

/* Gives whatever is free to the queue, head first. */
static void pump(sc_pool *p, double now)
{
    sc_waiter *w;
    while ((w = first_live(p, now)) != NULL) {
        if (p->nidle > 0)
            grant_entry(p, w, idle_take(p));
        else if (under_limit(p))
            grant_slot(p, w);
        else
            break;
    }
}

/* A connection comes back (checkin, cancel, reclaim): straight to the head
 * waiter, else idle, else closed as overflow. Anything to close is pushed
 * on *to_close (linked through next) and closed after unlocking. */
static void release_entry_locked(sc_pool *p, sc_pool_entry *e, double now,
                                 sc_pool_entry **to_close)
{
    sc_waiter *w;
    if (e->generation != p->generation) {
        e->next = *to_close;
        *to_close = e;
    } else if ((w = first_live(p, now)) != NULL) {
        grant_entry(p, w, e);
    } else if (idle_has_room(p)) {
        idle_push(p, e);
    } else {
        e->next = *to_close;
        *to_close = e;
    }
}

/* Frees a slot counted in generation gen. */
static void release_slot_locked(sc_pool *p, unsigned gen, double now)
{
    if (gen != p->generation)
        return; /* dispose or fork already stopped counting it */
    p->open--;
    pump(p, now);
}

/* Drops expired queued tickets and takes back what was granted to tickets
 * whose deadline passed without their holder coming for it: a coroutine
 * that died without cancelling must not hold a connection for ever. */
static void sweep(sc_pool *p, double now, sc_pool_entry **to_close)
{
    sc_waiter *w, *next, *expired = NULL;
    for (w = p->q_head; w != NULL; w = next) {
        next = w->next;
        if (!w->blocking && now >= w->deadline) {
            w_unlink(p, w);
            w->state = W_EXPIRED;
        }
    }
    /* Detach first: giving back may grant to queued tickets, which joins
     * them to the list being walked. */
    for (w = p->r_head; w != NULL; w = next) {
        next = w->next;
        if (now >= w->deadline) {
            w_unlink(p, w);
            w->next = expired;
            expired = w;
        }
    }
    for (w = expired; w != NULL; w = next) {
        next = w->next;
        w->next = NULL;
        if (w->state == W_ENTRY) {
            sc_pool_entry *e = w->entry;
            w->entry = NULL;
            release_entry_locked(p, e, now, to_close);
        } else if (w->state == W_SLOT && w->slot_gen == p->generation) {
            p->open--;
        }
        w->state = W_EXPIRED;
    }
    pump(p, now);
}

static double next_resv_deadline(const sc_pool *p, double limit)
{
    for (const sc_waiter *w = p->r_head; w != NULL; w = w->next)
        if (w->deadline < limit)
            limit = w->deadline;
    return limit;
}

/* Closes entries outside the lock, then frees their slots. The slot is
 * released only after close() returns so that the count of open
 * connections never undercounts what the server sees (SQLAlchemy, too,
 * decrements its overflow after closing). */
static void close_entries(sc_pool *p, sc_pool_entry *list, pid_t me)
{
    while (list != NULL) {
        sc_pool_entry *e = list;
        list = e->next;
        unsigned gen = e->generation;
        p->c.close(p->c.ud, e->conn);
        free(e);
        lock_pool(p, me);
        release_slot_locked(p, gen, sc_monotonic());
        unlock_pool(p);
    }
}

/* ---- checkout ------------------------------------------------------------- */

/* What the locked part of a checkout obtained: an existing entry, or the
 * right to open one in a reserved slot. */
typedef struct grant {
    sc_pool_entry *entry;
    unsigned slot_gen;
} grant;

static int take_now(sc_pool *p, grant *g)
{
    if (p->nidle > 0) {
        g->entry = idle_take(p);
        return 1;
    }
    if (under_limit(p)) {
        p->open++;
        g->entry = NULL;
        g->slot_gen = p->generation;
        return 1;
    }
    return 0;
}

static int take_grant(sc_waiter *w, grant *g)
{
    if (w->state == W_ENTRY) {
        g->entry = w->entry;
        w->entry = NULL;
        return 1;
    }
    if (w->state == W_SLOT) {
        g->entry = NULL;
        g->slot_gen = w->slot_gen;
        return 1;
    }
    return 0;
}

static int open_conn(sc_pool *p, sc_pool_entry *e, pid_t me, sc_error *err)
{
    sc_error local;
    if (err == NULL)
        err = &local;
    sc_error_clear(err);
    e->conn = p->c.open(p->c.ud, err);
    if (e->conn == NULL) {
        if (err->message[0] == '\0')
            pool_error(err, "could not open a connection");
        return -1;
    }
    e->created_at = sc_monotonic();
    e->pid = me;
    return 0;
}

/* Why finish_checkout opened a connection, for the counters. */
enum { OPEN_NEW, OPEN_RECYCLED, OPEN_PING_FAILED, OPEN_FAILBACK };

static void count_replaced_locked(sc_pool *p, int why)
{
    if (why == OPEN_RECYCLED)
        p->n.recycles++;
    else if (why == OPEN_FAILBACK)
        p->n.failbacks++;
    else if (why == OPEN_PING_FAILED)
        p->n.preping_failures++;
}

/* A checkout that could not open its connection: the slot goes to the
 * next waiter, and the checkout counted when it was granted did not happen. */
static int fail_slot(sc_pool *p, unsigned gen, pid_t me, int why)
{
    lock_pool(p, me);
    release_slot_locked(p, gen, sc_monotonic());
    p->n.checkouts--;
    p->n.connect_failures++;
    count_replaced_locked(p, why);
    unlock_pool(p);
    return SC_POOL_ERROR;
}

static void count_open(sc_pool *p, pid_t me, int why)
{
    lock_pool(p, me);
    p->n.connects++;
    count_replaced_locked(p, why);
    unlock_pool(p);
}

/* The entry of a granted free slot, its connection still to open; NULL
 * out of memory (then the slot is released and err filled). */
static sc_pool_entry *slot_entry(sc_pool *p, grant g, pid_t me, sc_error *err)
{
    sc_pool_entry *e = calloc(1, sizeof *e);
    if (e == NULL) {
        pool_error(err, "out of memory");
        fail_slot(p, g.slot_gen, me, OPEN_NEW);
        return NULL;
    }
    e->generation = g.slot_gen;
    return e;
}

/* pool_recycle: whether an idle entry is too old to be handed out. */
static int too_old(const sc_pool *p, const sc_pool_entry *e)
{
    return p->cfg.recycle >= 0 && sc_monotonic() - e->created_at > p->cfg.recycle;
}

/* The unlocked half of every checkout: open what needs opening, recycle or
 * replace a dead connection (in the same slot, so the count is unchanged). */
/* A checkout that began at start and did not get an idle connection at
 * once (it waited in the queue, or a connection was opened for it) ended
 * now on e: its time is counted on e's host (sc_pool_host_waits). Never on
 * the fast path (an idle connection taken at once). */
static void count_host_wait(sc_pool *p, const sc_pool_entry *e, double start)
{
    double waited = e->checked_out_at - start;
    int h = p->c.host_of != NULL ? p->c.host_of(p->c.ud, e->conn) : 0;
    if (h < 0 || h >= SC_POOL_MAX_HOSTS)
        return;
    if (waited < 0)
        waited = 0;
    pthread_mutex_lock(&p->mu);
    sc_pool_host_wait *w = &p->hw[h];
    w->n++;
    w->seconds += waited;
    if (waited > w->max)
        w->max = waited;
    pthread_mutex_unlock(&p->mu);
}

void sc_pool_host_waits(sc_pool *p, int host, sc_pool_host_wait *out)
{
    memset(out, 0, sizeof *out);
    if (host < 0 || host >= SC_POOL_MAX_HOSTS)
        return;
    pthread_mutex_lock(&p->mu);
    *out = p->hw[host];
    pthread_mutex_unlock(&p->mu);
}

/* start: when the checkout began; waited: it waited in the queue. */
static int finish_checkout(sc_pool *p, grant g, pid_t me, sc_pool_entry **out,
                           sc_error *err, double start, int waited)
{
    sc_pool_entry *e = g.entry;
    int fresh = 0;
    if (e == NULL) {
        if ((e = slot_entry(p, g, me, err)) == NULL)
            return SC_POOL_ERROR;
        if (open_conn(p, e, me, err) != 0) {
            free(e);
            return fail_slot(p, g.slot_gen, me, OPEN_NEW);
        }
        count_open(p, me, OPEN_NEW);
        fresh = 1;
    } else {
        int why = OPEN_NEW;
        if (too_old(p, e))
            why = OPEN_RECYCLED;
        else if (p->c.retire != NULL && p->c.retire(p->c.ud, e->conn))
            why = OPEN_FAILBACK;
        else if (p->cfg.pre_ping && p->c.ping != NULL && p->c.ping(p->c.ud, e->conn) != 0)
            why = OPEN_PING_FAILED;
        if (why != OPEN_NEW) {
            p->c.close(p->c.ud, e->conn);
            e->conn = NULL;
            if (open_conn(p, e, me, err) != 0) {
                unsigned gen = e->generation;
                free(e);
                return fail_slot(p, gen, me, why);
            }
            count_open(p, me, why);
            fresh = 1;
        }
    }
    e->next = e->prev = NULL;
    e->fresh = fresh;
    e->checked_out_at = sc_monotonic();
    if (fresh || waited)
        count_host_wait(p, e, start);
    *out = e;
    return SC_POOL_OK;
}

/* finish_checkout for a deferred checkout: what would block is left to
 * the caller (SC_POOL_OPEN, e->need). */
static int defer_checkout(sc_pool *p, grant g, pid_t me, sc_pool_entry **out, sc_error *err,
                          double start, int waited)
{
    sc_pool_entry *e = g.entry;
    if (e == NULL) {
        if ((e = slot_entry(p, g, me, err)) == NULL)
            return SC_POOL_ERROR;
        e->need = SC_NEED_OPEN;
        e->why = OPEN_NEW;
    } else if (too_old(p, e) || (p->c.retire != NULL && p->c.retire(p->c.ud, e->conn))) {
        e->why = too_old(p, e) ? OPEN_RECYCLED : OPEN_FAILBACK;
        p->c.close(p->c.ud, e->conn);
        e->conn = NULL;
        e->need = SC_NEED_OPEN;
    } else if (p->cfg.pre_ping && p->c.ping != NULL) {
        e->need = SC_NEED_PING;
        e->why = OPEN_NEW;
    } else {
        e->next = e->prev = NULL;
        e->fresh = 0;
        e->need = SC_NEED_NONE;
        e->checked_out_at = sc_monotonic();
        if (waited)
            count_host_wait(p, e, start);
        *out = e;
        return SC_POOL_OK;
    }
    e->next = e->prev = NULL;
    e->began = start;
    e->waited = waited;
    *out = e;
    return SC_POOL_OPEN;
}

void *sc_pool_open_nb(sc_pool *p, int *st, sc_error *err)
{
    sc_error_clear(err);
    if (p->c.open_nb == NULL) {
        pool_error(err, "this pool cannot open connections without blocking");
        *st = -1;
        return NULL;
    }
    void *conn = p->c.open_nb(p->c.ud, st, err);
    if (*st < 0 && err->message[0] == '\0')
        pool_error(err, "could not open a connection");
    return conn;
}

int sc_pool_open_cont(sc_pool *p, void **conn, int ready, sc_error *err)
{
    sc_error_clear(err);
    int st = p->c.open_cont(p->c.ud, conn, ready, err);
    if (st < 0 && err->message[0] == '\0')
        pool_error(err, "could not open a connection");
    return st;
}

void sc_pool_open_abort(sc_pool *p, void *conn)
{
    if (conn != NULL)
        p->c.open_abort(p->c.ud, conn);
}

void sc_pool_open_done(sc_pool *p, sc_pool_entry *e, void *conn)
{
    pid_t me = sc_getpid();
    if (conn != NULL) {
        e->conn = conn;
        e->created_at = sc_monotonic();
        e->pid = me;
        e->fresh = 1;
        count_open(p, me, e->why);
    } else {
        e->fresh = 0; /* the pre-ping answered */
    }
    e->need = SC_NEED_NONE;
    e->checked_out_at = sc_monotonic();
    if (conn != NULL || e->waited)
        count_host_wait(p, e, e->began);
}

void sc_pool_ping_failed(sc_pool *p, sc_pool_entry *e)
{
    p->c.close(p->c.ud, e->conn);
    e->conn = NULL;
    e->need = SC_NEED_OPEN;
    e->why = OPEN_PING_FAILED;
}

int sc_pool_open_failed(sc_pool *p, sc_pool_entry *e)
{
    unsigned gen = e->generation;
    int why = e->why;
    if (e->conn != NULL)
        p->c.close(p->c.ud, e->conn);
    free(e);
    return fail_slot(p, gen, sc_getpid(), why);
}

/* Counts a checkout granted after waiting since start (locked). */
static void count_wait_locked(sc_pool *p, double start, double now)
{
    double waited = now - start;
    p->n.waits++;
    p->n.wait_seconds += waited;
    if (waited > p->n.wait_max)
        p->n.wait_max = waited;
}

int sc_pool_checkout(sc_pool *p, sc_pool_entry **out, sc_error *err)
{
    pid_t me = sc_getpid();
    sc_pool_entry *to_close = NULL;
    grant g = {NULL, 0};
    int rc;
    *out = NULL;
    sc_error_clear(err);

    lock_pool(p, me);
    double now = sc_monotonic();
    sweep(p, now, &to_close);
    if (p->q_head == NULL && take_now(p, &g)) {
        p->n.checkouts++;
        unlock_pool(p);
        close_entries(p, to_close, me);
        return finish_checkout(p, g, me, out, err, now, 0);
    }
    if (!(p->cfg.timeout > 0)) {
        p->n.timeouts++;
        unlock_pool(p);
        close_entries(p, to_close, me);
        return SC_POOL_TIMEOUT;
    }
    double start = now;

    sc_waiter w;
    memset(&w, 0, sizeof w);
    w.blocking = 1;
    w.state = W_QUEUED;
    w.epoch = p->epoch;
    w.deadline = now + p->cfg.timeout;
    pthread_cond_init(&w.cond, &p->cattr);
    q_push(p, &w);
    p->nblocking++;
    for (;;) {
        if (take_grant(&w, &g)) {
            p->n.checkouts++;
            count_wait_locked(p, start, sc_monotonic());
            rc = SC_POOL_OK;
            break;
        }
        if (to_close != NULL) {
            unlock_pool(p);
            close_entries(p, to_close, me);
            to_close = NULL;
            lock_pool(p, me);
            continue;
        }
        now = sc_monotonic();
        if (now >= w.deadline) {
            w_unlink(p, &w);
            p->n.timeouts++;
            rc = SC_POOL_TIMEOUT;
            break;
        }
        double wake = next_resv_deadline(p, w.deadline);
        if (wake <= now) {
            sweep(p, now, &to_close);
            continue;
        }
        struct timespec ts = to_timespec(wake);
        pthread_cond_timedwait(&w.cond, &p->mu, &ts);
    }
    p->nblocking--;
    unlock_pool(p);
    /* Nobody can signal it any more: it left the queue under the mutex. */
    pthread_cond_destroy(&w.cond);
    close_entries(p, to_close, me);
    if (rc != SC_POOL_OK)
        return rc;
    return finish_checkout(p, g, me, out, err, start, 1);
}

/* ---- polling checkout ------------------------------------------------------ */

/* A ticket carried across fork() points into the parent's queue, which the
 * child dropped; a connection reserved for it is the parent's. Rejoin the
 * child's queue with the same memory (the caller keeps the pointer across
 * SC_POOL_WAIT) and the same deadline. */
static sc_pool_entry *rebirth_ticket(sc_pool *p, sc_waiter *t)
{
    sc_pool_entry *inherited = (t->state == W_ENTRY) ? t->entry : NULL;
    t->entry = NULL;
    t->next = t->prev = NULL;
    t->where = L_NONE;
    t->state = W_QUEUED;
    t->epoch = p->epoch;
    return inherited;
}

static int try_checkout(sc_pool *p, sc_waiter **ticket, sc_pool_entry **out, sc_error *err,
                        int defer);

int sc_pool_try_checkout(sc_pool *p, sc_waiter **ticket, sc_pool_entry **out,
                         sc_error *err)
{
    return try_checkout(p, ticket, out, err, 0);
}

int sc_pool_try_checkout_deferred(sc_pool *p, sc_waiter **ticket, sc_pool_entry **out,
                                  sc_error *err)
{
    return try_checkout(p, ticket, out, err, 1);
}

static int try_checkout(sc_pool *p, sc_waiter **ticket, sc_pool_entry **out, sc_error *err,
                        int defer)
{
    pid_t me = sc_getpid();
    sc_pool_entry *to_close = NULL, *inherited = NULL;
    sc_waiter *t = *ticket;
    grant g = {NULL, 0};
    int rc;
    *out = NULL;
    sc_error_clear(err);

    lock_pool(p, me);
    double now = sc_monotonic();
    if (t != NULL && t->epoch != p->epoch) {
        inherited = rebirth_ticket(p, t);
        if (now < t->deadline) {
            sweep(p, now, &to_close);
            if (p->q_head == NULL && take_now(p, &g))
                goto take;
            q_push(p, t);
            rc = SC_POOL_WAIT;
            goto done;
        }
        t->state = W_EXPIRED;
    }
    if (t != NULL) {
        /* Its own grant first: the sweep would take back an expired one,
         * but a holder that came back late still gets what was kept for it. */
        if (t->state == W_QUEUED && now < t->deadline) {
            sweep(p, now, &to_close);
            if (t->state == W_QUEUED) {
                rc = SC_POOL_WAIT;
                goto done;
            }
        }
        if (take_grant(t, &g)) {
            w_unlink(p, t);
            goto take;
        }
        w_unlink(p, t); /* queued past its deadline, or already expired */
        free(t);
        *ticket = NULL;
        p->n.timeouts++;
        rc = SC_POOL_TIMEOUT;
        goto done;
    }

    sweep(p, now, &to_close);
    if (p->q_head == NULL && take_now(p, &g))
        goto take;
    if (!(p->cfg.timeout > 0)) {
        p->n.timeouts++;
        rc = SC_POOL_TIMEOUT;
        goto done;
    }
    t = calloc(1, sizeof *t);
    if (t == NULL) {
        pool_error(err, "out of memory");
        rc = SC_POOL_ERROR;
        goto done;
    }
    t->state = W_QUEUED;
    t->epoch = p->epoch;
    t->deadline = now + p->cfg.timeout;
    q_push(p, t);
    *ticket = t;
    rc = SC_POOL_WAIT;
    goto done;

take:
    p->n.checkouts++;
    double start = now;
    int waited = t != NULL;
    if (t != NULL) {
        /* the ticket was made pool_timeout before its deadline */
        start = t->deadline - p->cfg.timeout;
        count_wait_locked(p, start, now);
        free(t);
        *ticket = NULL;
    }
    unlock_pool(p);
    if (inherited != NULL && p->c.discard != NULL)
        p->c.discard(p->c.ud, inherited->conn);
    free(inherited);
    close_entries(p, to_close, me);
    if (defer)
        return defer_checkout(p, g, me, out, err, start, waited);
    return finish_checkout(p, g, me, out, err, start, waited);

done:
    unlock_pool(p);
    if (inherited != NULL && p->c.discard != NULL)
        p->c.discard(p->c.ud, inherited->conn);
    free(inherited);
    close_entries(p, to_close, me);
    return rc;
}

void sc_pool_cancel(sc_pool *p, sc_waiter *t)
{
    if (t == NULL)
        return;
    pid_t me = sc_getpid();
    sc_pool_entry *to_close = NULL, *inherited = NULL;
    lock_pool(p, me);
    double now = sc_monotonic();
    if (t->epoch != p->epoch) {
        inherited = rebirth_ticket(p, t);
    } else {
        w_unlink(p, t);
        if (t->state == W_ENTRY)
            release_entry_locked(p, t->entry, now, &to_close);
        else if (t->state == W_SLOT)
            release_slot_locked(p, t->slot_gen, now);
    }
    unlock_pool(p);
    free(t);
    if (inherited != NULL && p->c.discard != NULL)
        p->c.discard(p->c.ud, inherited->conn);
    free(inherited);
    close_entries(p, to_close, me);
}

double sc_waiter_remaining(const sc_waiter *t)
{
    /* deadline never changes after the ticket is made: no lock needed */
    return t != NULL ? t->deadline - sc_monotonic() : 0;
}

int sc_waiter_ready(sc_pool *p, const sc_waiter *t)
{
    if (t == NULL)
        return 1;
    lock_pool(p, sc_getpid());
    int ready = t->epoch != p->epoch || t->state != W_QUEUED || sc_monotonic() >= t->deadline;
    unlock_pool(p);
    return ready;
}

/* ---- checkin, dispose, stats ------------------------------------------------ */

void sc_pool_checkin(sc_pool *p, sc_pool_entry *e, int discard)
{
    if (e == NULL)
        return;
    pid_t me = sc_getpid();
    sc_pool_entry *to_close = NULL;
    int disconnect = discard && p->c.broken != NULL && p->c.broken(p->c.ud, e->conn);
    int host = -1;
    if (disconnect && p->c.host_down != NULL && e->pid == me)
        host = p->c.host_down(p->c.ud, e->conn);
    if (host >= SC_POOL_MAX_HOSTS)
        host = -1;
    lock_pool(p, me);
    if (e->pid != me) {
        /* opened by the parent: its socket is the parent's too */
        unlock_pool(p);
        if (p->c.discard != NULL)
            p->c.discard(p->c.ud, e->conn);
        free(e);
        return;
    }
    if (disconnect && host >= 0 && p->c.host_of != NULL) {
        /* Several hosts: that host went away; the others stay. */
        p->host_invalid_before[host] = sc_monotonic();
        sc_pool_entry *idle = p->idle_head, *next;
        for (; idle != NULL; idle = next) {
            next = idle->next;
            if (p->c.host_of(p->c.ud, idle->conn) != host)
                continue;
            idle_unlink(p, idle);
            idle->next = to_close;
            to_close = idle;
            p->n.invalidations++;
        }
    } else if (disconnect) {
        /* The server most likely went away for every connection: close the
         * idle ones now (their slots come free for fresh opens), and those
         * checked out when they come back. */
        sc_pool_entry *idle;
        p->invalid_before = sc_monotonic();
        while ((idle = idle_take(p)) != NULL) {
            idle->next = to_close;
            to_close = idle;
            p->n.invalidations++;
        }
    }
    if (discard)
        p->n.invalidations++;
    if (discard || e->generation != p->generation || e->created_at <= p->invalid_before ||
        (p->c.host_of != NULL && host_stale(p, e))) {
        /* close_entries frees the slot afterwards (old generations have
         * none left to free) */
        e->next = to_close;
        to_close = e;
    } else {
        release_entry_locked(p, e, sc_monotonic(), &to_close);
    }
    unlock_pool(p);
    close_entries(p, to_close, me);
}

void sc_pool_kill(sc_pool *p, void *conn)
{
    if (p->c.kill != NULL)
        p->c.kill(p->c.ud, conn);
}

void sc_pool_dispose(sc_pool *p)
{
    pid_t me = sc_getpid();
    lock_pool(p, me);
    sc_pool_entry *idle = p->idle_head;
    p->idle_head = p->idle_tail = NULL;
    p->nidle = 0;
    /* Connections still out belong to the old generation: no longer
     * counted, closed when they come back. Queued waiters may now open. */
    p->open = 0;
    p->generation++;
    pump(p, sc_monotonic());
    unlock_pool(p);
    while (idle != NULL) {
        sc_pool_entry *next = idle->next;
        p->c.close(p->c.ud, idle->conn);
        free(idle);
        idle = next;
    }
}

void sc_pool_stats_get(sc_pool *p, sc_pool_stats *st)
{
    pid_t me = sc_getpid();
    lock_pool(p, me);
    /* expired queued tickets hold nothing; they should not count as waiting */
    double now = sc_monotonic();
    sc_waiter *w, *next;
    for (w = p->q_head; w != NULL; w = next) {
        next = w->next;
        if (!w->blocking && now >= w->deadline) {
            w_unlink(p, w);
            w->state = W_EXPIRED;
        }
    }
    st->size = p->cfg.pool_size;
    st->checkedin = p->nidle;
    st->open = p->open;
    st->checkedout = p->open - p->nidle;
    st->overflow = p->open - p->cfg.pool_size;
    st->waiting = p->nwait;
    st->n = p->n;
    unlock_pool(p);
}

const sc_pool_config *sc_pool_get_config(const sc_pool *p)
{
    return &p->cfg;
}

void sc_pool_idle_by_host(sc_pool *p, int *counts, int n)
{
    pid_t me = sc_getpid();
    for (int i = 0; i < n; i++)
        counts[i] = 0;
    lock_pool(p, me);
    for (sc_pool_entry *e = p->idle_head; e != NULL; e = e->next) {
        int h = p->c.host_of != NULL ? p->c.host_of(p->c.ud, e->conn) : 0;
        if (h >= 0 && h < n)
            counts[h]++;
    }
    unlock_pool(p);
}

void *sc_pool_connector_ud(sc_pool *p)
{
    return p->c.ud;
}

/* ---- life cycle ------------------------------------------------------------- */

static sc_pool *pool_create(const sc_pool_config *cfg, const sc_connector *connector)
{
    if (cfg == NULL || connector == NULL || connector->open == NULL || connector->close == NULL)
        return NULL;
    sc_pool *p = calloc(1, sizeof *p);
    if (p == NULL)
        return NULL;
    p->cfg = *cfg;
    p->c = *connector;
    if (!(p->cfg.timeout > 0))
        p->cfg.timeout = 0; /* also NaN */
    else if (p->cfg.timeout > SC_MAX_WAIT)
        p->cfg.timeout = SC_MAX_WAIT;
    if (!(p->cfg.recycle >= 0))
        p->cfg.recycle = -1; /* NaN: off */
    if (p->cfg.pool_size < 0)
        p->cfg.pool_size = 0;
    if (pthread_mutex_init(&p->mu, NULL) != 0) {
        free(p);
        return NULL;
    }
    /* waits are measured on the monotonic clock, like the deadlines */
    if (pthread_condattr_init(&p->cattr) != 0) {
        pthread_mutex_destroy(&p->mu);
        free(p);
        return NULL;
    }
    pthread_condattr_setclock(&p->cattr, CLOCK_MONOTONIC);
    p->pid = sc_getpid();
    p->refs = 1;
    return p;
}

sc_pool *sc_pool_new(const sc_pool_config *cfg, const sc_connector *connector)
{
    pthread_once(&g_once, g_init);
    sc_pool *p = pool_create(cfg, connector);
    if (p == NULL) {
        free_ud(connector); /* ownership was given either way */
        return NULL;
    }
    pthread_mutex_lock(&g_mu);
    g_link_locked(p);
    pthread_mutex_unlock(&g_mu);
    return p;
}

/* Tickets still outstanding die with the pool: nothing could be done with
 * them afterwards, and freeing them here keeps an abandoned one from
 * leaking. Their holders must not use them again. */
static void pool_destroy(sc_pool *p)
{
    pid_t me = sc_getpid();
    sc_pool_entry *closing = NULL;
    lock_pool(p, me);
    sc_pool_entry *idle = p->idle_head;
    p->idle_head = p->idle_tail = NULL;
    p->nidle = 0;
    sc_waiter *w, *next;
    for (w = p->r_head; w != NULL; w = next) {
        next = w->next;
        if (w->state == W_ENTRY && w->entry != NULL) {
            w->entry->next = closing;
            closing = w->entry;
        }
        free(w);
    }
    p->r_head = NULL;
    for (w = p->q_head; w != NULL; w = next) {
        next = w->next;
        if (!w->blocking) /* a blocking one here would be the caller's bug */
            free(w);
    }
    p->q_head = p->q_tail = NULL;
    unlock_pool(p);
    while (idle != NULL) {
        sc_pool_entry *n = idle->next;
        p->c.close(p->c.ud, idle->conn);
        free(idle);
        idle = n;
    }
    while (closing != NULL) {
        sc_pool_entry *n = closing->next;
        p->c.close(p->c.ud, closing->conn);
        free(closing);
        closing = n;
    }
    free_ud(&p->c);
    pthread_condattr_destroy(&p->cattr);
    pthread_mutex_destroy(&p->mu);
    free(p->name);
    free(p->key);
    free(p);
}

/* Drops one reference (g_mu guards refs); the last one unlinks the pool,
 * so no shared acquire can find it any more, and destroys it. */
static void pool_release(sc_pool *p)
{
    pthread_once(&g_once, g_init);
    pthread_mutex_lock(&g_mu);
    int last = --p->refs <= 0;
    if (last)
        g_unlink_locked(p);
    pthread_mutex_unlock(&g_mu);
    if (last)
        pool_destroy(p);
}

void sc_pool_free(sc_pool *p)
{
    if (p != NULL)
        pool_release(p);
}

void sc_pool_retain(sc_pool *p)
{
    pthread_once(&g_once, g_init);
    pthread_mutex_lock(&g_mu);
    p->refs++;
    pthread_mutex_unlock(&g_mu);
}

/* ---- shared pools -------------------------------------------------------------- */

/* A refused acquire is the caller's mistake, not a failed connect: code 0
 * (the binding raises the text as an ArgumentError). */
#define shared_error(err, ...) sc_error_set((err), 0, "HY000", __VA_ARGS__)

sc_pool *sc_pool_shared_acquire(const char *name, const char *key, const sc_pool_config *cfg,
                                const sc_connector *connector, sc_error *err)
{
    sc_error_clear(err);
    if (key == NULL)
        key = "";
    if (name == NULL) {
        shared_error(err, "shared engine needs a name");
        free_ud(connector);
        return NULL;
    }
    pthread_once(&g_once, g_init);
    pthread_mutex_lock(&g_mu);
    sc_pool *p;
    for (p = g_pools; p != NULL; p = p->g_next)
        if (p->name != NULL && strcmp(p->name, name) == 0)
            break;
    if (p != NULL) {
        if (strcmp(p->key, key) != 0) {
            shared_error(err, "shared engine '%s' exists with other options", name);
            p = NULL;
        } else {
            p->refs++;
        }
        pthread_mutex_unlock(&g_mu);
        free_ud(connector); /* the existing pool keeps its own */
        return p;
    }
    p = pool_create(cfg, connector);
    if (p == NULL) {
        pthread_mutex_unlock(&g_mu);
        shared_error(err, cfg == NULL || connector == NULL ? "invalid pool configuration"
                                                             : "could not create the pool");
        free_ud(connector);
        return NULL;
    }
    {
        p->name = dupstr(name);
        p->key = dupstr(key);
        if (p->name == NULL || p->key == NULL) {
            pthread_mutex_unlock(&g_mu);
            pool_destroy(p); /* frees the ud too */
            shared_error(err, "out of memory");
            return NULL;
        }
        p->refs = 1;
        g_link_locked(p);
    }
    pthread_mutex_unlock(&g_mu);
    return p;
}

void sc_pool_shared_release(sc_pool *p)
{
    if (p != NULL)
        pool_release(p);
}
