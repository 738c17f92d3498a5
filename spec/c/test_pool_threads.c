/* Drives csrc/core/pool.c from many threads (and a fork) with a counted stand-in
 * connector: no database needed. Prints TAP lines and a summary; exits 1 if
 * anything failed. Meant to run clean under ThreadSanitizer and ASan+UBSan,
 * so the bookkeeping shared between threads uses relaxed atomics: they make
 * the counts exact without adding the happens-before edges a mutex would,
 * which could hide a missing synchronisation inside the pool. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "pool.h"

#define LOAD(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)
#define STORE(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELAXED)
#define ADD(x, v) __atomic_add_fetch(&(x), (v), __ATOMIC_RELAXED)
#define XCHG(x, v) __atomic_exchange_n(&(x), (v), __ATOMIC_RELAXED)

/* ---- TAP ------------------------------------------------------------------ */

static int n_tests, n_failed;

static int check(int cond, const char *fmt, ...)
{
    va_list ap;
    n_tests++;
    if (!cond)
        n_failed++;
    printf("%s %d - ", cond ? "ok" : "not ok", n_tests);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
    return cond;
}

static void sleep_s(double s)
{
    struct timespec ts;
    ts.tv_sec = (time_t)s;
    ts.tv_nsec = (long)((s - (double)ts.tv_sec) * 1e9);
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* ---- the stand-in connector ---------------------------------------------- */

#define MAX_IDS (1 << 18)
enum { ST_NONE, ST_OPEN, ST_CLOSED, ST_DISCARDED };

typedef struct fake_conn {
    int id;
    int in_use; /* set by the test while it holds the connection */
    int dead;   /* ping reports failure */
    int broken; /* died of a disconnect: the pool invalidates the others */
} fake_conn;

typedef struct fake_ud {
    int next_id;
    int open_now, max_open;
    int opens, closes, discards, pings;
    int fail_next;
    int *freed_counter;      /* bumped by free_ud */
    unsigned char *state;    /* ST_* by connection id */
} fake_ud;

static void *fake_open(void *ud, sc_error *err)
{
    fake_ud *u = ud;
    if (XCHG(u->fail_next, 0)) {
        sc_error_set(err, 0, "", "fake open failure");
        return NULL;
    }
    fake_conn *c = calloc(1, sizeof *c);
    if (c == NULL) {
        sc_error_set(err, 0, "", "out of memory");
        return NULL;
    }
    c->id = ADD(u->next_id, 1);
    if (c->id < MAX_IDS)
        STORE(u->state[c->id], ST_OPEN);
    ADD(u->opens, 1);
    int now = ADD(u->open_now, 1);
    int max = LOAD(u->max_open);
    while (now > max &&
           !__atomic_compare_exchange_n(&u->max_open, &max, now, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
        ;
    return c;
}

static void fake_gone(fake_ud *u, fake_conn *c, int how)
{
    if (c->id < MAX_IDS)
        STORE(u->state[c->id], how);
    ADD(u->open_now, -1);
    free(c);
}

static void fake_close(void *ud, void *conn)
{
    fake_ud *u = ud;
    ADD(u->closes, 1);
    fake_gone(u, conn, ST_CLOSED);
}

static void fake_discard(void *ud, void *conn)
{
    fake_ud *u = ud;
    ADD(u->discards, 1);
    fake_gone(u, conn, ST_DISCARDED);
}

static int fake_ping(void *ud, void *conn)
{
    fake_ud *u = ud;
    fake_conn *c = conn;
    ADD(u->pings, 1);
    return LOAD(c->dead) ? -1 : 0;
}

static int fake_broken(void *ud, void *conn)
{
    (void)ud;
    return LOAD(((fake_conn *)conn)->broken);
}

static void fake_free(void *ud)
{
    fake_ud *u = ud;
    if (u->freed_counter != NULL)
        ADD(*u->freed_counter, 1);
    free(u->state);
    free(u);
}

static sc_connector fake_connector(fake_ud **out, int *freed_counter)
{
    fake_ud *u = calloc(1, sizeof *u);
    if (u == NULL || (u->state = calloc(MAX_IDS, 1)) == NULL) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    u->freed_counter = freed_counter;
    sc_connector c = {fake_open, fake_close, fake_discard, fake_ping, fake_free, u, fake_broken,
                      NULL, NULL, NULL, NULL, NULL, NULL, NULL};
    *out = u;
    return c;
}

static sc_pool_config config(int size, int overflow, double timeout)
{
    sc_pool_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.pool_size = size;
    cfg.max_overflow = overflow;
    cfg.timeout = timeout;
    cfg.recycle = -1;
    return cfg;
}

static sc_pool *new_pool(sc_pool_config cfg, fake_ud **u)
{
    sc_connector c = fake_connector(u, NULL);
    sc_pool *p = sc_pool_new(&cfg, &c);
    if (p == NULL) {
        fprintf(stderr, "sc_pool_new failed\n");
        exit(2);
    }
    return p;
}

static int conn_id(const sc_pool_entry *e)
{
    return e != NULL ? ((const fake_conn *)e->conn)->id : -1;
}

static sc_pool_stats stats(sc_pool *p)
{
    sc_pool_stats st;
    sc_pool_stats_get(p, &st);
    return st;
}

/* Waits until `waiting` reaches n, so that threads join the queue in a
 * known order. */
static int wait_for_waiting(sc_pool *p, int n)
{
    double until = sc_monotonic() + 5;
    while (sc_monotonic() < until) {
        if (stats(p).waiting >= n)
            return 1;
        sleep_s(0.001);
    }
    return 0;
}

/* ---- a disconnect invalidates the pool (SQLAlchemy's pool._invalidate) ---- */

static void test_invalidate(void)
{
    sc_error err;
    fake_ud *u;
    sc_pool_entry *a, *b, *c, *d, *e;
    sc_pool *p = new_pool(config(3, 2, 1), &u);

    sc_pool_checkout(p, &a, &err);
    sc_pool_checkout(p, &b, &err);
    sc_pool_checkout(p, &c, &err);
    sc_pool_checkout(p, &d, &err);
    int bid = conn_id(b), cid = conn_id(c), did = conn_id(d);
    sc_pool_checkin(p, b, 0);
    sc_pool_checkin(p, c, 0);
    sc_pool_checkin(p, a, 1); /* a user's invalidate(): the others stay */
    check(stats(p).checkedin == 2 && LOAD(u->state[bid]) == ST_OPEN,
          "invalidate: discarding one connection keeps the idle ones");
    sc_pool_checkout(p, &a, &err);
    STORE(((fake_conn *)a->conn)->broken, 1);
    sleep_s(0.001);
    sc_pool_checkin(p, a, 1); /* died of a disconnect */
    sc_pool_stats st = stats(p);
    check(st.checkedin == 0 && st.checkedout == 1 && LOAD(u->state[bid]) == ST_CLOSED &&
              LOAD(u->state[cid]) == ST_CLOSED,
          "invalidate: a disconnect closes every idle connection at once (%d idle, %d out)",
          st.checkedin, st.checkedout);
    sc_pool_checkout(p, &e, &err);
    check(e != NULL && e->fresh == 1, "invalidate: the next checkout opens a fresh connection");
    sc_pool_checkin(p, d, 0); /* checked out before the disconnect */
    check(LOAD(u->state[did]) == ST_CLOSED && stats(p).checkedin == 0,
          "invalidate: one checked out before the disconnect is closed when it comes back");
    sc_pool_checkin(p, e, 0);
    st = stats(p);
    check(st.checkedin == 1 && st.open == 1 && st.checkedout == 0 && LOAD(u->open_now) == 1,
          "invalidate: one opened after it is kept; counts consistent");
    sc_pool_free(p);
}

/* ---- several hosts: a disconnect invalidates its host's connections only -- */

/* the stand-in's hosts: odd connection ids on host 1, even ones on host 0 */
static int fake_retire_host = -1;
static int fake_host_of(void *ud, void *conn)
{
    (void)ud;
    return ((fake_conn *)conn)->id & 1;
}

static int fake_host_down(void *ud, void *conn)
{
    return fake_host_of(ud, conn);
}

static int fake_retire(void *ud, void *conn)
{
    return fake_host_of(ud, conn) == LOAD(fake_retire_host);
}

static void test_hosts(void)
{
    sc_error err;
    fake_ud *u;
    sc_pool_entry *e[6];
    sc_connector c = fake_connector(&u, NULL);
    c.host_down = fake_host_down;
    c.host_of = fake_host_of;
    c.retire = fake_retire;
    sc_pool_config cfg = config(6, 0, 1);
    sc_pool *p = sc_pool_new(&cfg, &c);
    for (int i = 1; i <= 5; i++)
        sc_pool_checkout(p, &e[i], &err); /* ids 1..5: hosts 1 0 1 0 1 */
    int ids[6];
    for (int i = 1; i <= 5; i++)
        ids[i] = conn_id(e[i]);
    check(ids[1] == 1 && ids[5] == 5, "hosts: ids in order");
    sc_pool_checkin(p, e[2], 0); /* idle, host 0 */
    sc_pool_checkin(p, e[5], 0); /* idle, host 1 */
    STORE(((fake_conn *)e[1]->conn)->broken, 1);
    sleep_s(0.001);
    sc_pool_checkin(p, e[1], 1); /* host 1 went away */
    sc_pool_stats st = stats(p);
    check(st.checkedin == 1 && LOAD(u->state[ids[2]]) == ST_OPEN && LOAD(u->state[ids[5]]) == ST_CLOSED,
          "hosts: a disconnect closes the idle connections of its host only (%d idle)", st.checkedin);
    int idle_by[2];
    sc_pool_idle_by_host(p, idle_by, 2);
    check(idle_by[0] == 1 && idle_by[1] == 0, "hosts: idle per host");
    sc_pool_checkin(p, e[3], 0); /* host 1, opened before the disconnect */
    sc_pool_checkin(p, e[4], 0); /* host 0 */
    st = stats(p);
    check(LOAD(u->state[ids[3]]) == ST_CLOSED && LOAD(u->state[ids[4]]) == ST_OPEN && st.checkedin == 2 &&
              st.open == 2 && LOAD(u->open_now) == 2,
          "hosts: a checked-out one of that host is closed at checkin, the other host's kept");
    sc_pool_entry *x;
    sc_pool_checkout(p, &x, &err);
    check(x != NULL && x->fresh == 0 && conn_id(x) == ids[2] && stats(p).n.failbacks == 0,
          "hosts: no retire, the idle one is handed out");
    sc_pool_checkin(p, x, 0);
    STORE(fake_retire_host, 0);
    sc_pool_checkout(p, &x, &err);
    st = stats(p);
    check(x != NULL && x->fresh == 1 && LOAD(u->state[ids[4]]) == ST_CLOSED && st.n.failbacks == 1 &&
              st.open == 2,
          "hosts: retire replaces an idle connection at checkout, in its slot (failbacks %llu)",
          st.n.failbacks);
    STORE(fake_retire_host, -1);
    sc_pool_checkin(p, x, 0);
    sc_pool_free(p);
}

/* ---- 1. many threads ----------------------------------------------------- */

#define T1_THREADS 8
#define T1_ROUNDS 10000

typedef struct t1arg {
    sc_pool *p;
    unsigned seed;
    int ok, failed, doubled;
} t1arg;

static void *t1_worker(void *arg)
{
    t1arg *a = arg;
    for (int i = 0; i < T1_ROUNDS; i++) {
        sc_pool_entry *e = NULL;
        sc_error err;
        if (sc_pool_checkout(a->p, &e, &err) != SC_POOL_OK) {
            a->failed++;
            continue;
        }
        fake_conn *c = e->conn;
        if (XCHG(c->in_use, 1))
            a->doubled++;
        /* 0-50 us, spun: nanosleep would round every hold up to ~60 us
         * of timer slack and turn the test into a sleep benchmark */
        int hold = rand_r(&a->seed) % 51;
        double until = sc_monotonic() + hold / 1e6;
        while (sc_monotonic() < until)
            ;
        STORE(c->in_use, 0);
        sc_pool_checkin(a->p, e, 0);
        a->ok++;
    }
    return NULL;
}

static void test_threads(void)
{
    fake_ud *u;
    sc_pool *p = new_pool(config(3, 2, 30), &u);
    pthread_t th[T1_THREADS];
    t1arg args[T1_THREADS];
    double t0 = sc_monotonic();
    for (int i = 0; i < T1_THREADS; i++) {
        memset(&args[i], 0, sizeof args[i]);
        args[i].p = p;
        args[i].seed = 12345u + (unsigned)i * 7919u;
        pthread_create(&th[i], NULL, t1_worker, &args[i]);
    }
    int ok = 0, failed = 0, doubled = 0;
    for (int i = 0; i < T1_THREADS; i++) {
        pthread_join(th[i], NULL);
        ok += args[i].ok;
        failed += args[i].failed;
        doubled += args[i].doubled;
    }
    double took = sc_monotonic() - t0;
    sc_pool_stats st = stats(p);
    check(ok == T1_THREADS * T1_ROUNDS && failed == 0,
          "threads: all %d checkouts succeed (%d ok, %d failed, %.2f s, %d opens)",
          T1_THREADS * T1_ROUNDS, ok, failed, took, LOAD(u->opens));
    check(LOAD(u->max_open) <= 5, "threads: never more than 5 open at once (max %d)", LOAD(u->max_open));
    check(doubled == 0, "threads: no connection handed out twice (%d)", doubled);
    check(st.checkedout == 0 && st.open <= 5 && st.open == LOAD(u->open_now) && st.waiting == 0,
          "threads: at the end checkedout %d, open %d (connector %d), waiting %d",
          st.checkedout, st.open, LOAD(u->open_now), st.waiting);
    sc_pool_free(p);
}

/* ---- 1b. deferred checkouts (the non-blocking driver's) ------------------- */

#define TD_THREADS 6
#define TD_ROUNDS 3000

typedef struct tdarg {
    sc_pool *p;
    fake_ud *u;
    unsigned seed;
    int ok, opened, pinged, failed_opens, timeouts, doubled;
} tdarg;

/* What lnb.c does: a deferred checkout whose open or pre-ping is this
 * thread's (some opens fail, some idle connections died), waits polled. */
static void *td_worker(void *arg)
{
    tdarg *a = arg;
    for (int i = 0; i < TD_ROUNDS; i++) {
        sc_pool_entry *e = NULL;
        sc_waiter *w = NULL;
        sc_error err;
        int rc;
        while ((rc = sc_pool_try_checkout_deferred(a->p, &w, &e, &err)) == SC_POOL_WAIT)
            sleep_s(0.00002);
        if (rc == SC_POOL_TIMEOUT) {
            a->timeouts++;
            continue;
        }
        if (rc == SC_POOL_OPEN && e->need == SC_NEED_PING) {
            a->pinged++;
            if (!LOAD(((fake_conn *)e->conn)->dead)) {
                sc_pool_open_done(a->p, e, NULL);
                rc = SC_POOL_OK;
            } else {
                sc_pool_ping_failed(a->p, e);
            }
        }
        if (rc == SC_POOL_OPEN) {
            if (rand_r(&a->seed) % 5 == 0) {
                sc_pool_open_failed(a->p, e); /* a connect error, or the coroutine gone */
                a->failed_opens++;
                continue;
            }
            void *conn = fake_open(a->u, &err);
            sc_pool_open_done(a->p, e, conn);
            a->opened++;
        }
        fake_conn *c = e->conn;
        if (XCHG(c->in_use, 1))
            a->doubled++;
        int hold = rand_r(&a->seed) % 51; /* 0-50 us, spun (see t1_worker) */
        double until = sc_monotonic() + hold / 1e6;
        while (sc_monotonic() < until)
            ;
        if (rand_r(&a->seed) % 7 == 0)
            STORE(c->dead, 1); /* dies while idle: the next pre-ping finds out */
        STORE(c->in_use, 0);
        sc_pool_checkin(a->p, e, 0);
        a->ok++;
    }
    return NULL;
}

static void test_deferred(void)
{
    fake_ud *u;
    sc_pool_config cfg = config(2, 1, 30);
    cfg.pre_ping = 1;
    sc_pool *p = new_pool(cfg, &u);
    pthread_t th[TD_THREADS];
    tdarg args[TD_THREADS];
    for (int i = 0; i < TD_THREADS; i++) {
        memset(&args[i], 0, sizeof args[i]);
        args[i].p = p;
        args[i].u = u;
        args[i].seed = 777u + (unsigned)i * 131u;
        pthread_create(&th[i], NULL, td_worker, &args[i]);
    }
    int ok = 0, opened = 0, pinged = 0, failed = 0, timeouts = 0, doubled = 0;
    for (int i = 0; i < TD_THREADS; i++) {
        pthread_join(th[i], NULL);
        ok += args[i].ok;
        opened += args[i].opened;
        pinged += args[i].pinged;
        failed += args[i].failed_opens;
        timeouts += args[i].timeouts;
        doubled += args[i].doubled;
    }
    sc_pool_stats st = stats(p);
    check(ok + failed == TD_THREADS * TD_ROUNDS && timeouts == 0,
          "deferred: every checkout ends (%d ok, %d opens given up, %d timeouts)", ok, failed, timeouts);
    check(opened > 0 && pinged > 0 && st.n.preping_failures > 0,
          "deferred: opens (%d), pre-pings (%d) and replaced dead ones (%llu) all happened",
          opened, pinged, st.n.preping_failures);
    check(doubled == 0, "deferred: no connection handed out twice (%d)", doubled);
    check(LOAD(u->max_open) <= 3 && LOAD(u->max_open) >= 2,
          "deferred: several open at once, never more than 3 (max %d)", LOAD(u->max_open));
    check(st.checkedout == 0 && st.open == LOAD(u->open_now) && st.waiting == 0 &&
              st.n.connects == (unsigned long long)opened &&
              st.n.connect_failures == (unsigned long long)failed,
          "deferred: at the end checkedout %d, open %d (connector %d), waiting %d, connects %llu "
          "(%d), failures %llu (%d)",
          st.checkedout, st.open, LOAD(u->open_now), st.waiting, st.n.connects, opened,
          st.n.connect_failures, failed);
    sc_pool_free(p);
}

/* ---- 2. timeout ------------------------------------------------------------ */

typedef struct waiter_arg {
    sc_pool *p;
    int index;
    int rc;
    int id;
    double took;
    double hold;
    int *order;
    int *served;
    sc_error err;
} waiter_arg;

/* Checks out, records when and in which order it was served, holds for
 * a->hold seconds and checks in. */
static void *waiter_thread(void *arg)
{
    waiter_arg *a = arg;
    sc_pool_entry *e = NULL;
    double t0 = sc_monotonic();
    a->rc = sc_pool_checkout(a->p, &e, &a->err);
    a->took = sc_monotonic() - t0;
    if (a->rc == SC_POOL_OK) {
        a->id = conn_id(e);
        if (a->order != NULL)
            a->order[ADD(*a->served, 1) - 1] = a->index;
        if (a->hold > 0)
            sleep_s(a->hold);
        sc_pool_checkin(a->p, e, 0);
    }
    return NULL;
}

static void test_timeout(void)
{
    fake_ud *u;
    sc_pool *p = new_pool(config(1, 0, 0.2), &u);
    sc_pool_entry *held = NULL;
    sc_error err;
    sc_pool_checkout(p, &held, &err);
    waiter_arg a;
    memset(&a, 0, sizeof a);
    a.p = p;
    pthread_t th;
    pthread_create(&th, NULL, waiter_thread, &a);
    pthread_join(th, NULL);
    check(a.rc == SC_POOL_TIMEOUT && a.took >= 0.19 && a.took <= 0.3,
          "timeout: second checkout answers SC_POOL_TIMEOUT after %.3f s (rc %d)", a.took, a.rc);
    check(stats(p).waiting == 0, "timeout: the timed-out waiter left the queue");
    sc_pool_checkin(p, held, 0);
    sc_pool_free(p);
}

/* A thread blocked in checkout with a long pool_timeout gets a connection
 * as soon as another thread checks one in: not at its deadline (a lost
 * wakeup), and not a timeout (a checkin that went idle past the queue). */
static void test_wakeup(void)
{
    fake_ud *u;
    sc_pool *p = new_pool(config(1, 0, 5), &u);
    sc_pool_entry *held = NULL;
    sc_error err;
    sc_pool_checkout(p, &held, &err);
    waiter_arg a;
    memset(&a, 0, sizeof a);
    a.p = p;
    pthread_t th;
    pthread_create(&th, NULL, waiter_thread, &a);
    int queued = wait_for_waiting(p, 1);
    sleep_s(0.1);
    sc_pool_checkin(p, held, 0);
    pthread_join(th, NULL);
    check(queued && a.rc == SC_POOL_OK && a.took < 1.0,
          "wakeup: a waiter (pool_timeout 5 s) is served when another thread checks in "
          "after 0.1 s: rc %d (0 = ok) after %.3f s, want < 1 s",
          a.rc, a.took);
    check(stats(p).waiting == 0 && stats(p).checkedout == 0,
          "wakeup: nothing left queued or checked out");
    sc_pool_free(p);
}

/* ---- 3. FIFO fairness --------------------------------------------------------- */

static void test_fifo(void)
{
    enum { N = 5 };
    fake_ud *u;
    sc_pool *p = new_pool(config(1, 0, 5), &u);
    sc_pool_entry *held = NULL;
    sc_error err;
    sc_pool_checkout(p, &held, &err);
    pthread_t th[N];
    waiter_arg a[N];
    int order[N], served = 0, queued = 1;
    for (int i = 0; i < N; i++) {
        memset(&a[i], 0, sizeof a[i]);
        a[i].p = p;
        a[i].index = i;
        a[i].hold = 0.002;
        a[i].order = order;
        a[i].served = &served;
        pthread_create(&th[i], NULL, waiter_thread, &a[i]);
        queued &= wait_for_waiting(p, i + 1);
    }
    check(queued, "fifo: %d threads queued one after the other", N);
    sc_pool_checkin(p, held, 0);
    int all_ok = 1, in_order = 1;
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        all_ok &= a[i].rc == SC_POOL_OK;
    }
    for (int i = 0; i < N; i++)
        in_order &= order[i] == i;
    check(all_ok && served == N, "fifo: every waiter served");
    check(in_order, "fifo: served in arrival order (%d %d %d %d %d)",
          order[0], order[1], order[2], order[3], order[4]);
    sc_pool_free(p);
}

/* ---- 4. polling tickets -------------------------------------------------------- */

static void test_tickets(void)
{
    fake_ud *u;
    sc_pool *p = new_pool(config(1, 0, 0.3), &u);
    sc_error err;
    sc_pool_entry *a = NULL, *e = NULL;
    sc_waiter *t = NULL, *t2 = NULL;

    int rc = sc_pool_try_checkout(p, &t, &a, &err);
    check(rc == SC_POOL_OK && t == NULL && a != NULL && a->fresh == 1,
          "tickets: try_checkout on a free pool opens at once");
    int aid = conn_id(a);

    rc = sc_pool_try_checkout(p, &t, &e, &err);
    check(rc == SC_POOL_WAIT && t != NULL && e == NULL, "tickets: exhausted pool answers WAIT with a ticket");
    double rem = sc_waiter_remaining(t);
    check(rem > 0.2 && rem <= 0.3, "tickets: remaining %.3f s", rem);
    rc = sc_pool_try_checkout(p, &t, &e, &err);
    check(rc == SC_POOL_WAIT && t != NULL, "tickets: asking again keeps the place (WAIT)");

    sc_pool_checkin(p, a, 0);
    sc_pool_stats st = stats(p);
    check(st.checkedin == 0 && st.waiting == 0, "tickets: a checkin is reserved for the ticket, not idle");
    rc = sc_pool_try_checkout(p, &t2, &e, &err);
    check(rc == SC_POOL_WAIT && t2 != NULL, "tickets: a newcomer without ticket cannot take it (WAIT)");
    rc = sc_pool_try_checkout(p, &t, &e, &err);
    check(rc == SC_POOL_OK && t == NULL && conn_id(e) == aid && e->fresh == 0,
          "tickets: the ticket gets the reserved connection, ticket freed");

    sc_pool_checkin(p, e, 0); /* reserved for t2 now */
    sc_pool_cancel(p, t2);
    st = stats(p);
    check(st.checkedin == 1 && st.checkedout == 0 && st.waiting == 0,
          "tickets: cancel gives the reserved connection back (idle %d)", st.checkedin);

    /* expired ticket */
    sc_pool_checkout(p, &a, &err);
    sc_waiter *t3 = NULL;
    rc = sc_pool_try_checkout(p, &t3, &e, &err);
    sleep_s(0.35);
    check(sc_waiter_remaining(t3) < 0, "tickets: remaining goes negative past the deadline");
    rc = sc_pool_try_checkout(p, &t3, &e, &err);
    check(rc == SC_POOL_TIMEOUT && t3 == NULL, "tickets: an expired ticket answers TIMEOUT and is freed");

    /* abandoned queued ticket: a later blocking waiter is not stuck behind it */
    sc_waiter *t4 = NULL;
    rc = sc_pool_try_checkout(p, &t4, &e, &err);
    sleep_s(0.35);
    waiter_arg w;
    memset(&w, 0, sizeof w);
    w.p = p;
    pthread_t th;
    pthread_create(&th, NULL, waiter_thread, &w);
    wait_for_waiting(p, 1);
    sc_pool_checkin(p, a, 0);
    pthread_join(th, NULL);
    check(w.rc == SC_POOL_OK && w.id == aid && w.took < 0.25,
          "tickets: an abandoned expired ticket is skipped (waiter got it after %.3f s)", w.took);
    sc_pool_cancel(p, t4); /* its holder finally lets go: just freed */

    /* abandoned ticket holding a reservation: taken back at its deadline */
    sc_pool_checkout(p, &a, &err);
    sc_waiter *t5 = NULL;
    double t0 = sc_monotonic();
    rc = sc_pool_try_checkout(p, &t5, &e, &err);
    sleep_s(0.05);
    sc_pool_checkin(p, a, 0); /* reserved for t5, whose holder is gone */
    memset(&w, 0, sizeof w);
    w.p = p;
    pthread_create(&th, NULL, waiter_thread, &w);
    pthread_join(th, NULL);
    double since_ticket = sc_monotonic() - t0;
    check(w.rc == SC_POOL_OK && w.id == aid && since_ticket >= 0.29 && since_ticket < 0.4,
          "tickets: an abandoned reservation goes to the next waiter at the ticket's deadline "
          "(rc %d, %.3f s after the ticket)", w.rc, since_ticket);
    rc = sc_pool_try_checkout(p, &t5, &e, &err);
    check(rc == SC_POOL_TIMEOUT && t5 == NULL, "tickets: the reclaimed ticket then answers TIMEOUT");

    /* a late holder still gets what was kept for it if nobody needed it */
    sc_pool_checkout(p, &a, &err);
    sc_waiter *t6 = NULL;
    sc_pool_try_checkout(p, &t6, &e, &err);
    sc_pool_checkin(p, a, 0);
    sleep_s(0.35);
    rc = sc_pool_try_checkout(p, &t6, &e, &err);
    check(rc == SC_POOL_OK && t6 == NULL && conn_id(e) == aid,
          "tickets: past its deadline, a ticket with a reservation still answers OK");
    sc_pool_checkin(p, e, 0);

    /* a blocking waiter and a ticket share one queue, in arrival order */
    sc_pool_checkout(p, &a, &err);
    sc_waiter *t7 = NULL;
    sc_pool_try_checkout(p, &t7, &e, &err);
    memset(&w, 0, sizeof w);
    w.p = p;
    pthread_create(&th, NULL, waiter_thread, &w);
    wait_for_waiting(p, 2);
    sc_pool_checkin(p, a, 0); /* goes to t7, queued first */
    rc = sc_pool_try_checkout(p, &t7, &e, &err);
    int first = rc == SC_POOL_OK;
    sc_pool_checkin(p, e, 0); /* now to the blocking waiter */
    pthread_join(th, NULL);
    check(first && w.rc == SC_POOL_OK, "tickets: ticket and blocking waiter served in arrival order");

    st = stats(p);
    check(st.checkedout == 0 && st.waiting == 0 && st.checkedin == 1, "tickets: pool back to idle 1");
    sc_pool_free(p);
}

/* ---- 5. recycle, pre-ping, order, overflow, discard, dispose, stats -------------- */

static void test_behaviour(void)
{
    sc_error err;
    fake_ud *u;
    sc_pool *p;
    sc_pool_entry *a, *b, *c, *e;
    sc_pool_config cfg;

    /* recycle */
    cfg = config(1, 0, 1);
    cfg.recycle = 0.05;
    p = new_pool(cfg, &u);
    sc_pool_checkout(p, &a, &err);
    int aid = conn_id(a);
    sc_pool_checkin(p, a, 0);
    sc_pool_checkout(p, &e, &err);
    check(conn_id(e) == aid && e->fresh == 0, "recycle: a young connection is reused");
    sc_pool_checkin(p, e, 0);
    sleep_s(0.1);
    sc_pool_checkout(p, &e, &err);
    check(conn_id(e) != aid && e->fresh == 1 && LOAD(u->state[aid]) == ST_CLOSED,
          "recycle: an old one is closed and replaced by a fresh one");
    check(stats(p).open == 1 && LOAD(u->open_now) == 1, "recycle: in the same slot");
    sc_pool_checkin(p, e, 0);
    sc_pool_free(p);

    /* pre-ping */
    cfg = config(1, 0, 1);
    cfg.pre_ping = 1;
    p = new_pool(cfg, &u);
    sc_pool_checkout(p, &a, &err);
    aid = conn_id(a);
    check(LOAD(u->pings) == 0, "pre-ping: a freshly opened connection is not pinged");
    sc_pool_checkin(p, a, 0);
    sc_pool_checkout(p, &a, &err);
    check(conn_id(a) == aid && a->fresh == 0 && LOAD(u->pings) == 1, "pre-ping: a live one is pinged and kept");
    STORE(((fake_conn *)a->conn)->dead, 1);
    sc_pool_checkin(p, a, 0);
    sc_pool_checkout(p, &e, &err);
    check(conn_id(e) != aid && e->fresh == 1 && LOAD(u->state[aid]) == ST_CLOSED,
          "pre-ping: a dead one is closed and replaced (fresh=1)");
    sc_pool_checkin(p, e, 0);
    sc_pool_free(p);

    /* FIFO and LIFO */
    for (int lifo = 0; lifo <= 1; lifo++) {
        cfg = config(3, 0, 1);
        cfg.use_lifo = lifo;
        p = new_pool(cfg, &u);
        sc_pool_checkout(p, &a, &err);
        sc_pool_checkout(p, &b, &err);
        sc_pool_checkout(p, &c, &err);
        int ida = conn_id(a), idc = conn_id(c);
        sc_pool_checkin(p, a, 0);
        sc_pool_checkin(p, b, 0);
        sc_pool_checkin(p, c, 0);
        sc_pool_checkout(p, &e, &err);
        if (lifo)
            check(conn_id(e) == idc, "lifo: the last returned comes out first");
        else
            check(conn_id(e) == ida, "fifo: the first returned comes out first");
        sc_pool_checkin(p, e, 0);
        sc_pool_free(p);
    }

    /* overflow closed on checkin once pool_size are idle */
    p = new_pool(config(1, 2, 0.05), &u);
    sc_pool_checkout(p, &a, &err);
    sc_pool_checkout(p, &b, &err);
    sc_pool_checkout(p, &c, &err);
    sc_pool_stats st = stats(p);
    check(st.open == 3 && st.overflow == 2 && st.checkedout == 3, "overflow: 3 open, overflow 2");
    e = NULL;
    int rc = sc_pool_checkout(p, &e, &err);
    check(rc == SC_POOL_TIMEOUT, "overflow: a 4th waits and times out");
    int idb = conn_id(b);
    sc_pool_checkin(p, a, 0);
    sc_pool_checkin(p, b, 0);
    sc_pool_checkin(p, c, 0);
    st = stats(p);
    check(st.checkedin == 1 && st.open == 1 && LOAD(u->closes) == 2 && LOAD(u->state[idb]) == ST_CLOSED,
          "overflow: beyond pool_size idle, checked-in connections are closed (idle %d, open %d)",
          st.checkedin, st.open);
    sc_pool_free(p);

    /* discard frees the slot */
    p = new_pool(config(1, 0, 1), &u);
    sc_pool_checkout(p, &a, &err);
    aid = conn_id(a);
    sc_pool_checkin(p, a, 1);
    st = stats(p);
    check(st.open == 0 && LOAD(u->state[aid]) == ST_CLOSED, "discard: closes the connection, frees the slot");
    rc = sc_pool_checkout(p, &e, &err);
    check(rc == SC_POOL_OK && e->fresh == 1 && conn_id(e) != aid, "discard: the next checkout opens a new one");
    sc_pool_checkin(p, e, 0);
    sc_pool_free(p);

    /* dispose */
    p = new_pool(config(2, 0, 1), &u);
    sc_pool_checkout(p, &a, &err);
    sc_pool_checkout(p, &b, &err);
    aid = conn_id(a);
    idb = conn_id(b);
    sc_pool_checkin(p, b, 0);
    sc_pool_dispose(p);
    st = stats(p);
    check(LOAD(u->state[idb]) == ST_CLOSED && st.open == 0 && st.checkedin == 0,
          "dispose: idle connections closed, counts restart");
    sc_pool_checkout(p, &c, &err);
    sc_pool_checkin(p, a, 0);
    st = stats(p);
    check(LOAD(u->state[aid]) == ST_CLOSED && st.open == 1 && st.checkedout == 1,
          "dispose: an old-generation connection is closed at checkin, new counts untouched");
    sc_pool_checkin(p, c, 0);
    sc_pool_free(p);

    /* stats, as SQLAlchemy's QueuePool.status() */
    p = new_pool(config(5, 10, 1), &u);
    st = stats(p);
    check(st.size == 5 && st.overflow == -5 && st.checkedin == 0 && st.checkedout == 0 && st.open == 0,
          "stats: fresh pool has overflow -pool_size (%d)", st.overflow);
    sc_pool_checkout(p, &a, &err);
    st = stats(p);
    check(st.size == 5 && st.checkedin == 0 && st.overflow == -4 && st.checkedout == 1,
          "stats: after one checkout size 5, checkedin 0, overflow -4, checkedout 1");
    sc_pool_checkin(p, a, 0);
    st = stats(p);
    check(st.checkedin == 1 && st.checkedout == 0 && st.overflow == -4, "stats: after checkin checkedin 1");
    sc_pool_free(p);

    /* pool_size 0 keeps every connection (SQLAlchemy: "no limit") */
    p = new_pool(config(0, 2, 1), &u);
    sc_pool_checkout(p, &a, &err);
    sc_pool_checkout(p, &b, &err);
    sc_pool_checkin(p, a, 0);
    sc_pool_checkin(p, b, 0);
    st = stats(p);
    check(st.checkedin == 2 && LOAD(u->closes) == 0, "pool_size 0: idle connections are not limited");
    sc_pool_free(p);
}

/* ---- 6. fork ---------------------------------------------------------------- */

static void test_fork(void)
{
    sc_error err;
    fake_ud *u, *u2;
    sc_pool *p = new_pool(config(2, 0, 2), &u);
    sc_pool *p2 = new_pool(config(1, 0, 2), &u2);
    sc_pool_entry *a, *b, *d, *e;

    /* p: one checked out (a), one idle (b) */
    sc_pool_checkout(p, &a, &err);
    sc_pool_checkout(p, &b, &err);
    int ida = conn_id(a), idb = conn_id(b);
    sc_pool_checkin(p, b, 0);
    /* p2: its only connection reserved for a ticket */
    sc_pool_checkout(p2, &d, &err);
    int idd = conn_id(d);
    sc_waiter *t = NULL;
    sc_pool_try_checkout(p2, &t, &e, &err);
    sc_pool_checkin(p2, d, 0);

    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) {
        check(0, "fork: fork() failed");
        return;
    }
    if (pid == 0) {
        int bad = 0;
        e = NULL;
        int rc = sc_pool_checkout(p, &e, &err);
        if (!(rc == SC_POOL_OK && e->fresh == 1 && conn_id(e) != ida && conn_id(e) != idb))
            bad |= 1;
        if (!(LOAD(u->state[idb]) == ST_DISCARDED && LOAD(u->closes) == 0))
            bad |= 2;
        sc_pool_checkin(p, a, 0); /* carried over from the parent */
        if (!(LOAD(u->state[ida]) == ST_DISCARDED && LOAD(u->discards) == 2 && LOAD(u->closes) == 0))
            bad |= 4;
        sc_pool_stats st = stats(p);
        if (!(st.open == 1 && st.checkedout == 1 && st.checkedin == 0))
            bad |= 8;
        int ide = conn_id(e);
        sc_pool_checkin(p, e, 1);
        if (!(LOAD(u->state[ide]) == ST_CLOSED && LOAD(u->closes) == 1 && stats(p).open == 0))
            bad |= 16;
        sc_pool_free(p);
        /* ticket whose reservation is the parent's connection */
        sc_pool_entry *f = NULL;
        rc = sc_pool_try_checkout(p2, &t, &f, &err);
        if (!(rc == SC_POOL_OK && t == NULL && f->fresh == 1 && conn_id(f) != idd &&
              LOAD(u2->state[idd]) == ST_DISCARDED && LOAD(u2->closes) == 0))
            bad |= 32;
        sc_pool_checkin(p2, f, 0);
        sc_pool_free(p2);
        _exit(bad);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    int bad = WIFEXITED(status) ? WEXITSTATUS(status) : 255;
    check(!(bad & 1), "fork child: checkout gives a fresh connection");
    check(!(bad & 2), "fork child: the inherited idle connection was discarded, not closed");
    check(!(bad & 4), "fork child: a parent's connection checked in is discarded, not closed");
    check(!(bad & 8), "fork child: counts restart (open 1, checkedout 1)");
    check(!(bad & 16), "fork child: its own connections are closed normally");
    check(!(bad & 32), "fork child: an inherited ticket gets a fresh connection, the parent's is discarded");
    check(bad != 255, "fork child: exited normally (status %d)", status);

    sc_pool_stats st = stats(p);
    check(st.checkedin == 1 && st.checkedout == 1 && LOAD(u->closes) == 0 && LOAD(u->discards) == 0 &&
          LOAD(u->state[idb]) == ST_OPEN,
          "fork parent: idle connection still there, nothing closed or discarded");
    sc_pool_checkout(p, &e, &err);
    check(conn_id(e) == idb && e->fresh == 0, "fork parent: checkout reuses its idle connection");
    sc_pool_checkin(p, e, 0);
    sc_pool_checkin(p, a, 0);
    sc_pool_entry *f = NULL;
    int rc = sc_pool_try_checkout(p2, &t, &f, &err);
    check(rc == SC_POOL_OK && conn_id(f) == idd && f->fresh == 0 && LOAD(u2->discards) == 0,
          "fork parent: its ticket still gets the reserved connection");
    sc_pool_checkin(p2, f, 0);
    sc_pool_free(p);
    sc_pool_free(p2);
}

/* ---- 7. open failure ----------------------------------------------------------- */

static void test_open_failure(void)
{
    sc_error err;
    fake_ud *u;
    sc_pool *p = new_pool(config(1, 0, 2), &u);
    sc_pool_entry *e = NULL;

    STORE(u->fail_next, 1);
    int rc = sc_pool_checkout(p, &e, &err);
    check(rc == SC_POOL_ERROR && e == NULL && strcmp(err.message, "fake open failure") == 0,
          "open failure: SC_POOL_ERROR with the connector's message ('%s')", err.message);
    check(stats(p).open == 0, "open failure: the slot is released");
    rc = sc_pool_checkout(p, &e, &err);
    check(rc == SC_POOL_OK && e->fresh == 1, "open failure: the next checkout works");

    /* a failure in a slot granted to a waiter passes the slot on */
    pthread_t th[2];
    waiter_arg w[2];
    for (int i = 0; i < 2; i++) {
        memset(&w[i], 0, sizeof w[i]);
        w[i].p = p;
        pthread_create(&th[i], NULL, waiter_thread, &w[i]);
        wait_for_waiting(p, i + 1);
    }
    STORE(u->fail_next, 1);
    sc_pool_checkin(p, e, 1); /* discarded: its slot goes to the first waiter */
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    check(w[0].rc == SC_POOL_ERROR && strcmp(w[0].err.message, "fake open failure") == 0 && w[1].rc == SC_POOL_OK,
          "open failure: the waiter whose open failed gets the error, the next one the slot (%d, %d)",
          w[0].rc, w[1].rc);
    sc_pool_stats st = stats(p);
    check(st.open == 1 && st.checkedin == 1 && LOAD(u->open_now) == 1, "open failure: counts consistent after");

    /* failure while replacing a dead connection */
    sc_pool_free(p);
    sc_pool_config cfg = config(1, 0, 1);
    cfg.pre_ping = 1;
    p = new_pool(cfg, &u);
    sc_pool_checkout(p, &e, &err);
    STORE(((fake_conn *)e->conn)->dead, 1);
    sc_pool_checkin(p, e, 0);
    STORE(u->fail_next, 1);
    rc = sc_pool_checkout(p, &e, &err);
    st = stats(p);
    check(rc == SC_POOL_ERROR && st.open == 0 && LOAD(u->open_now) == 0,
          "open failure: replacing a dead connection fails cleanly, slot released");
    sc_pool_free(p);
}

/* ---- 8. shared registry ---------------------------------------------------------- */

static int shared_freed;

typedef struct share_arg {
    sc_pool *got;
} share_arg;

static void *share_thread(void *arg)
{
    share_arg *s = arg;
    fake_ud *u;
    sc_pool_config cfg = config(2, 0, 1);
    sc_connector c = fake_connector(&u, &shared_freed);
    sc_error err;
    s->got = sc_pool_shared_acquire("threads", "k", &cfg, &c, &err);
    return NULL;
}

static void test_shared(void)
{
    sc_error err;
    fake_ud *u1, *u2, *u3;
    sc_pool_config cfg = config(2, 0, 1);
    sc_connector c1 = fake_connector(&u1, &shared_freed);
    sc_connector c2 = fake_connector(&u2, &shared_freed);
    sc_connector c3 = fake_connector(&u3, &shared_freed);

    sc_pool *p1 = sc_pool_shared_acquire("db", "url|opts", &cfg, &c1, &err);
    check(p1 != NULL && LOAD(shared_freed) == 0, "shared: first acquire creates the pool");
    sc_pool *p2 = sc_pool_shared_acquire("db", "url|opts", &cfg, &c2, &err);
    check(p2 == p1 && LOAD(shared_freed) == 1, "shared: same name and key give the same pool, extra ud freed");
    sc_pool *p3 = sc_pool_shared_acquire("db", "other", &cfg, &c3, &err);
    check(p3 == NULL && strcmp(err.message, "shared engine 'db' exists with other options") == 0 &&
          LOAD(shared_freed) == 2, "shared: another key gets NULL and '%s'", err.message);

    sc_pool_entry *e;
    sc_pool_checkout(p1, &e, &err);
    sc_pool_checkin(p2, e, 0);
    sc_pool_shared_release(p1);
    check(LOAD(shared_freed) == 2 && stats(p2).checkedin == 1, "shared: first release keeps the pool");
    sc_pool_shared_release(p2);
    check(LOAD(shared_freed) == 3, "shared: last release frees the pool and its ud");

    enum { N = 4 };
    pthread_t th[N];
    share_arg s[N];
    for (int i = 0; i < N; i++)
        pthread_create(&th[i], NULL, share_thread, &s[i]);
    int same = 1;
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        same &= s[i].got != NULL && s[i].got == s[0].got;
    }
    check(same && LOAD(shared_freed) == 3 + N - 1, "shared: concurrent acquires from %d threads share one pool", N);
    for (int i = 0; i < N; i++)
        sc_pool_shared_release(s[i].got);
    check(LOAD(shared_freed) == 3 + N, "shared: released by all, freed once");
}

/* ---- the watchdog: a hang (a waiter nobody wakes) is a failure with output,
 * not a runner's timeout with no TAP line */

#define WATCHDOG_S 120
#define STR_(x) #x
#define STR(x) STR_(x)
static const char *volatile running = "start";

static void say(const char *s)
{
    ssize_t r = write(1, s, strlen(s));
    (void)r;
}

static void on_alarm(int sig)
{
    (void)sig;
    say("not ok - watchdog: still running after " STR(WATCHDOG_S) " s, in test_");
    say(running);
    say(" (a hang: a waiter never woken?)\n");
    _exit(1);
}

#define RUN(t)                                                                                     \
    do {                                                                                           \
        running = #t;                                                                              \
        test_##t();                                                                                \
    } while (0)

int main(void)
{
    double t0 = sc_monotonic();
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGALRM, &sa, NULL);
    alarm(WATCHDOG_S);
    RUN(wakeup); /* first: a lost wakeup hangs test_threads (the watchdog's case) */
    RUN(threads);
    RUN(deferred);
    RUN(timeout);
    RUN(fifo);
    RUN(tickets);
    RUN(behaviour);
    RUN(fork);
    RUN(open_failure);
    RUN(shared);
    RUN(invalidate);
    RUN(hosts);
    alarm(0);
    printf("1..%d\n", n_tests);
    printf("%d passed, %d failed (%.2f s)\n", n_tests - n_failed, n_failed, sc_monotonic() - t0);
    return n_failed ? 1 : 0;
}
