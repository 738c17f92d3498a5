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

/* Introspection (tests, later engine:hosts()). */
int sc_hosts_count(const sc_hosts *h);
int sc_hosts_is_denied(sc_hosts *h, int i, double now);
int sc_hosts_role(sc_hosts *h, int i);
unsigned long sc_hosts_denials(sc_hosts *h, int i);

#endif
