/* A connection pool in plain C: no Lua here, so C tests can drive it from
 * many threads. It mirrors SQLAlchemy's QueuePool (pool_size, max_overflow,
 * timeout, recycle, pre-ping, LIFO) and serves waiters in arrival order.
 *
 * The pool knows nothing of MySQL: it is generic over a connector (open,
 * close, discard, ping). Resetting a connection on return is the caller's
 * business (it knows whether a transaction is open); the pool only keeps or
 * closes what it is given back. */
#ifndef SCOPED_POOL_H
#define SCOPED_POOL_H

#include <stddef.h>
#include <sys/types.h>

#include "error.h"

typedef struct sc_connector {
    /* Open a new connection; NULL on failure with err filled (an empty
     * message: the pool says "could not open a connection"). */
    void *(*open)(void *ud, sc_error *err);
    /* Close a connection politely (it may talk to the server). */
    void (*close)(void *ud, void *conn);
    /* Free a connection without talking to the server: used for those
     * inherited across fork(), whose socket belongs to the parent. */
    void (*discard)(void *ud, void *conn);
    /* 0 when the connection answers; anything else when it is dead. */
    int (*ping)(void *ud, void *conn);
    /* Frees ud when the pool is destroyed; may be NULL. */
    void (*free_ud)(void *ud);
    void *ud;
    /* Non-zero when a connection given back for discarding died of a
     * disconnect (the server went away), as opposed to being invalidated by
     * its user; may be NULL. A disconnect invalidates the whole pool, as in
     * SQLAlchemy (with host_down below: its host's connections only): idle
     * connections opened before it are closed at once, checked-out ones
     * when they come back, so the next checkout opens a fresh one instead
     * of trying every stale one in turn. */
    int (*broken)(void *ud, void *conn);
    /* Ends, from a connection of its own, the server session of a checked-out
     * connection whose statement was abandoned mid-reply (non-blocking
     * driver), so that the server stops running it; may be NULL. */
    void (*kill)(void *ud, void *conn);
    /* Starts opening a connection without blocking (sc_conn_nb_open: the
     * caller drives it); may be NULL. *st as sc_conn_nb_open's. */
    void *(*open_nb)(void *ud, int *st, sc_error *err);
    /* Goes on with an open open_nb started, after its wait (ready as
     * sc_conn_nb_cont's); returns as open_nb's *st. It may put another
     * connection in *conn (the next host, to wait on next); on -1 *conn is
     * NULL and nothing is left to free. May be NULL only when open_nb is. */
    int (*open_cont)(void *ud, void **conn, int ready, sc_error *err);
    /* Gives up an open still waiting (open_nb or open_cont returned a
     * wait) and frees what it holds; may be NULL only when open_nb is. */
    void (*open_abort)(void *ud, void *conn);
    /* Several hosts (one pool per host under one capacity): host_of and
     * retire NULL for a connector with one host, which keeps the whole-pool behaviour
     * of broken above. host_down: a connection given back broken; the
     * connector counts it against its host (and may deny the host) and
     * returns the host's index (0..SC_POOL_MAX_HOSTS-1): only the
     * connections to that host are invalidated (-1: the whole pool; may be
     * set with one host, for the counts). host_of: the host index of
     * a connection. retire: non-zero when an idle connection should be
     * replaced at checkout, as an old one is for recycle (fail-back to an
     * earlier host). */
    int (*host_down)(void *ud, void *conn);
    int (*host_of)(void *ud, void *conn);
    int (*retire)(void *ud, void *conn);
} sc_connector;

/* the most hosts a connector may number (hosts.h's SC_HOSTS_MAX) */
#define SC_POOL_MAX_HOSTS 64

typedef struct sc_pool_config {
    int pool_size;      /* idle connections kept; SQLAlchemy default 5; 0: no limit at all */
    int max_overflow;   /* extra connections beyond pool_size; -1 unbounded */
    double timeout;     /* seconds a checkout may wait */
    double recycle;     /* seconds since connect before replacement; < 0 off */
    int pre_ping;       /* ping idle connections at checkout */
    int use_lifo;       /* hand out the most recently returned first */
    int null_pool;      /* NullPool: keep no idle connection, close each on checkin */
} sc_pool_config;

/* One pooled connection. The caller reads these fields and never writes them. */
typedef struct sc_pool_entry {
    void *conn;          /* what the connector opened */
    double created_at;   /* sc_monotonic() when opened */
    double checked_out_at;
    pid_t pid;           /* process that opened it */
    unsigned generation; /* pool generation it belongs to (dispose, fork) */
    int fresh;           /* 1 when opened by this very checkout */
    int need;            /* sc_pool_try_checkout_deferred: what the caller must do
                          * before using it (SC_NEED_*), 0 when nothing */
    int why;             /* pool-private: why it is being opened */
    double began;        /* pool-private: a deferred checkout's start, and */
    int waited;          /* whether it waited in the queue (sc_pool_host_waits) */
    struct sc_pool_entry *next, *prev; /* pool-private */
} sc_pool_entry;

typedef struct sc_pool sc_pool;
typedef struct sc_waiter sc_waiter; /* a place in the queue of a polling checkout */

enum {
    SC_POOL_OK = 0,
    SC_POOL_WAIT = 1,    /* try_checkout only: nothing free yet, keep the ticket */
    SC_POOL_TIMEOUT = 2, /* waited for the configured timeout */
    SC_POOL_ERROR = 3    /* the connector failed to open (its err), or the pool ran out of
                          * memory (SC_ERR_CANNOT_CONNECT) */
};

/* The pool takes ownership of connector->ud (freed with free_ud). The
 * caller holds the pool's one reference. */
sc_pool *sc_pool_new(const sc_pool_config *cfg, const sc_connector *connector);
/* Drops the caller's reference; the last one closes the idle connections
 * and frees the pool. Entries still checked out must not be checked in
 * after the last reference is gone: whoever may check one in later (a lease
 * carrying a connection to another lua_State) holds a reference of its own
 * (sc_pool_retain). */
void sc_pool_free(sc_pool *p);
/* Another reference to p, dropped with sc_pool_free (any pool) or
 * sc_pool_shared_release (a shared one: the two are the same). */
void sc_pool_retain(sc_pool *p);

/* Blocking checkout: waits on a condition variable, in arrival order, up to
 * cfg->timeout seconds. Recycles and pre-pings idle connections outside the
 * lock; a dead or too old one is replaced transparently. */
int sc_pool_checkout(sc_pool *p, sc_pool_entry **out, sc_error *err);

/* Non-blocking checkout for callers that wait elsewhere (a coroutine that
 * yields, an nginx semaphore). *ticket is NULL on the first call; when the
 * answer is SC_POOL_WAIT the caller keeps *ticket, waits in its own way and
 * calls again with it. The ticket holds the caller's place in the same FIFO
 * queue the blocking waiters use; it is freed by the pool when the call
 * answers anything but SC_POOL_WAIT, or by sc_pool_cancel. A ticket whose
 * deadline has passed answers SC_POOL_TIMEOUT. */
int sc_pool_try_checkout(sc_pool *p, sc_waiter **ticket, sc_pool_entry **out,
                         sc_error *err);
/* What a deferred checkout leaves to its caller (sc_pool_entry.need). */
enum { SC_NEED_NONE = 0, SC_NEED_OPEN = 1, SC_NEED_PING = 2 };
/* SC_POOL_OPEN: a deferred checkout got a slot or an entry whose connect,
 * or pre-ping, is the caller's to do. */
enum { SC_POOL_OPEN = 4 };

/* sc_pool_try_checkout for a caller that opens and pings connections
 * itself, without blocking (the non-blocking driver): where the pool would
 * open a connection (a free slot, one too old for recycle, one that failed
 * its pre-ping) or pre-ping one, it answers SC_POOL_OPEN with *out an
 * entry whose need says what to do: SC_NEED_OPEN (conn is NULL: open one)
 * or SC_NEED_PING (ping conn). The caller then calls exactly one of
 * sc_pool_open_done (conn opened into e->conn, or the ping answered),
 * sc_pool_ping_failed (then opens, need is SC_NEED_OPEN) or
 * sc_pool_open_failed; until then the slot is held. */
int sc_pool_try_checkout_deferred(sc_pool *p, sc_waiter **ticket, sc_pool_entry **out,
                                  sc_error *err);
/* The connector's open_nb: a connection for a deferred checkout, its open
 * started; NULL with *st -1 when the connector has none or it failed. */
void *sc_pool_open_nb(sc_pool *p, int *st, sc_error *err);
/* The connector's open_cont and open_abort (see sc_connector). */
int sc_pool_open_cont(sc_pool *p, void **conn, int ready, sc_error *err);
void sc_pool_open_abort(sc_pool *p, void *conn);
/* The connection opened for e (SC_NEED_OPEN), or NULL when e's pre-ping
 * succeeded: e is checked out as any other. */
void sc_pool_open_done(sc_pool *p, sc_pool_entry *e, void *conn);
/* e's pre-ping failed: its connection is closed; open a new one (e->need
 * becomes SC_NEED_OPEN). */
void sc_pool_ping_failed(sc_pool *p, sc_pool_entry *e);
/* The open failed (or was given up): e is freed and its slot goes to the
 * next waiter. Returns SC_POOL_ERROR. */
int sc_pool_open_failed(sc_pool *p, sc_pool_entry *e);

/* Gives up a place in the queue (the waiting coroutine died or was
 * cancelled); anything reserved for it goes to the next waiter. */
void sc_pool_cancel(sc_pool *p, sc_waiter *ticket);
/* Seconds left before the ticket's deadline (may be <= 0). */
double sc_waiter_remaining(const sc_waiter *ticket);
/* Whether a try_checkout with this ticket would now answer something other
 * than SC_POOL_WAIT: it was granted a connection or a slot, its deadline
 * passed, or the pool was forked under it. What lets a waker wake only the
 * waiters it served (scoped.ngx) instead of all of them. */
int sc_waiter_ready(sc_pool *p, const sc_waiter *ticket);

/* Returns an entry. discard != 0 closes it (an invalidated connection) and
 * frees its slot for the next waiter; when the connector's broken() says it
 * died of a disconnect, every connection opened before now goes too (see
 * sc_connector.broken). An entry from an older generation (dispose) or
 * another process (fork) is closed / discarded. */
void sc_pool_checkin(sc_pool *p, sc_pool_entry *e, int discard);

/* The connector's kill (see sc_connector) on a connection checked out of
 * p; nothing when it has none. Takes no lock: it blocks for a connect. */
void sc_pool_kill(sc_pool *p, void *conn);

/* Closes idle connections and starts a new generation: connections checked
 * out now are closed when they come back. */
void sc_pool_dispose(sc_pool *p);

/* Counts since the pool was made (in a forked child: since the fork),
 * kept under the pool's lock: the hot path adds one increment to a lock it
 * holds anyway; connects, recycles and pre-ping failures, which cost a
 * round trip or more, take the lock for their counts. */
typedef struct sc_pool_counters {
    unsigned long long checkouts;        /* connections handed out */
    unsigned long long waits;            /* of those, how many had to wait */
    double wait_seconds;                 /* their waits, summed */
    double wait_max;                     /* the longest */
    unsigned long long timeouts;         /* checkouts that gave up (SC_POOL_TIMEOUT) */
    unsigned long long connects;         /* connections opened */
    unsigned long long connect_failures; /* opens that failed */
    unsigned long long invalidations;    /* connections discarded as invalid */
    unsigned long long recycles;         /* replaced at checkout for being older than recycle */
    unsigned long long preping_failures; /* replaced at checkout for failing the pre-ping */
    unsigned long long failbacks;        /* replaced at checkout by the connector's retire */
} sc_pool_counters;

typedef struct sc_pool_stats {
    int size;        /* pool_size */
    int checkedin;   /* idle */
    int checkedout;  /* open and handed out */
    int overflow;    /* open - pool_size (negative on a fresh pool) */
    int open;        /* open connections of the current generation */
    int waiting;     /* callers queued */
    sc_pool_counters n;
} sc_pool_stats;
void sc_pool_stats_get(sc_pool *p, sc_pool_stats *st);
const sc_pool_config *sc_pool_get_config(const sc_pool *p);
/* Idle connections per host (the connector's host_of; all under host 0
 * without it): counts[0..n-1] filled. */
void sc_pool_idle_by_host(sc_pool *p, int *counts, int n);
/* Checkout waits by the host they ended on (host_of; host 0 without it):
 * checkouts that did not get an idle connection at once, because they
 * waited in the queue or a connection was opened for them (every host
 * tried before included), timed from their start until the connection was
 * handed out. Checkouts that failed are not counted. */
typedef struct sc_pool_host_wait {
    unsigned long long n;
    double seconds; /* summed */
    double max;
} sc_pool_host_wait;
void sc_pool_host_waits(sc_pool *p, int host, sc_pool_host_wait *out);
/* The connector's ud (the pool owns it). */
void *sc_pool_connector_ud(sc_pool *p);

/* Process-wide pools by name, for engines created with the same `shared`
 * name in several Lua states (one per OS thread). key describes the URL and
 * options: a second caller with another key gets NULL and err filled.
 * The pool takes ownership of connector->ud in every case: when the named
 * pool exists already (or on error) acquire frees the ud it was given.
 * Reference counted; sc_pool_shared_release frees the pool with the last. */
sc_pool *sc_pool_shared_acquire(const char *name, const char *key, const sc_pool_config *cfg,
                                const sc_connector *connector, sc_error *err);
void sc_pool_shared_release(sc_pool *p);

#endif
