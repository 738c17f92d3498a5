/* Which host the next connect goes to (issue 21), in plain C: a URL's host
 * list, ha_mode, and a deny list. A host that failed (connect refused or
 * timed out, wrong role, wsrep not ready) is denied for deny_timeout seconds:
 * while denied, connects go to the other hosts, and it is tried again only
 * when every other host has been tried in the same checkout. One checkout
 * (sc_hosts_begin .. sc_hosts_next returning -1) tries each host at most
 * once. Safe to share between threads (one mutex inside). */
#ifndef SCOPED_HOSTS_H
#define SCOPED_HOSTS_H

#include <stdint.h>

/* at most this many hosts (SC_URL_MAX_HOSTS) */
#define SC_HOSTS_MAX 64

/* What a host was found to be at its last connect. */
enum { SC_ROLE_UNKNOWN, SC_ROLE_READ_WRITE, SC_ROLE_READ_ONLY };

typedef struct sc_hosts sc_hosts;

/* One checkout's attempts. */
typedef struct sc_hosts_try {
    uint64_t tried; /* bit i: host i attempted in this checkout */
    int start;      /* round_robin: where this checkout starts */
    int prefer_ro;  /* prefer-read-only: hosts not known read-write first */
} sc_hosts_try;

/* n hosts (1..SC_HOSTS_MAX), ha_mode SC_HA_SEQUENTIAL or SC_HA_ROUND_ROBIN
 * (url.h), deny_timeout in seconds (0: never denied). NULL out of memory or
 * for a bad n. */
sc_hosts *sc_hosts_new(int n, int ha_mode, double deny_timeout);
void sc_hosts_free(sc_hosts *h);

/* Starts one checkout's attempts (round_robin: the next start host). */
void sc_hosts_begin(sc_hosts *h, sc_hosts_try *t, int prefer_ro);
/* The host to try next, now (sc_monotonic()) deciding denials: first the
 * hosts not denied, in order (sequential: the URL's; round_robin: from
 * t->start on, wrapping); with prefer_ro those not known read-write before
 * those that are; then the denied ones, the soonest to be restored first.
 * Marks it tried. -1 when every host has been tried. */
int sc_hosts_next(sc_hosts *h, sc_hosts_try *t, double now);
/* Host i failed now: denied until now + deny_timeout (counted). */
void sc_hosts_deny(sc_hosts *h, int i, double now);
/* Host i gave a usable connection, of that role: its denial ends. */
void sc_hosts_ok(sc_hosts *h, int i, int role);
/* Host i's role as last seen (SC_ROLE_*): recorded also on a wrong role. */
void sc_hosts_set_role(sc_hosts *h, int i, int role);

/* Host i failed now with this error code (a connect, or a disconnect of
 * one of its connections): counted by code; with deny, denied as
 * sc_hosts_deny (which is this with code 0 and deny). */
void sc_hosts_fail(sc_hosts *h, int i, double now, unsigned code, int deny);
/* Host i gave a new connection (counted). A failover event when host
 * `failed` (or -1) failed in the same connect (with failed_code), or else
 * when the previous new connection went to another host, denied now. */
void sc_hosts_landed(sc_hosts *h, int i, int failed, unsigned failed_code, double now);
/* A connection to host i was opened (+1) or closed (-1): what is open on
 * each host (engine:hosts()). */
void sc_hosts_open_count(sc_hosts *h, int i, int delta);

/* Sequential fail-back: whether a connection to host i is on a later host
 * than the one a new connect would go to now (an earlier host whose denial
 * has ended and whose role, as last seen, fits tsa, SC_TSA_*). Always 0 in
 * round_robin and for host 0. */
int sc_hosts_failback(sc_hosts *h, int i, int tsa, double now);

/* Introspection (tests, engine:hosts()). */
int sc_hosts_count(const sc_hosts *h);
int sc_hosts_is_denied(sc_hosts *h, int i, double now);
int sc_hosts_role(sc_hosts *h, int i);
unsigned long sc_hosts_denials(sc_hosts *h, int i);

/* at most this many distinct error codes counted per host; the others
 * are counted under code 0 */
#define SC_HOSTS_CODES 16

typedef struct sc_host_info {
    int denied;                 /* denied now */
    double restored_in;         /* seconds until the denial ends (0 when not denied) */
    int role;                   /* SC_ROLE_* */
    unsigned long connects;     /* connections opened on it */
    unsigned long denials;
    unsigned long failovers_from; /* connects that went elsewhere after it failed */
    int open;                   /* connections to it open now */
    int ncodes;
    unsigned code[SC_HOSTS_CODES];          /* failures by error code */
    unsigned long code_count[SC_HOSTS_CODES];
} sc_host_info;
void sc_hosts_info(sc_hosts *h, int i, double now, sc_host_info *out);

/* Host events, kept in a small ring (the oldest are dropped when nobody
 * takes them) until sc_hosts_events takes them. */
enum { SC_HOST_DENIED = 1, SC_HOST_RESTORED = 2, SC_HOST_FAILOVER = 3 };
typedef struct sc_host_event {
    int type;      /* SC_HOST_* */
    int host;      /* denied, restored: the host; failover: where it went */
    int from;      /* failover: the host that failed; else -1 */
    unsigned code; /* denied, failover: the error code (0 unknown) */
    double until;  /* denied: sc_monotonic() when the denial ends */
} sc_host_event;
#define SC_HOSTS_RING 64
/* Events since the last call (up to max, oldest first); *dropped gets how
 * many were lost to the ring's size since the last call. A cheap check
 * first: sc_hosts_event_seq changes whenever an event is recorded. */
int sc_hosts_events(sc_hosts *h, sc_host_event *out, int max, unsigned long *dropped);
unsigned long sc_hosts_event_seq(sc_hosts *h);

#endif
