#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "hosts.h"
#include "url.h"

typedef struct host_state {
    double denied_until; /* sc_monotonic() seconds; 0: never denied */
    int role;            /* SC_ROLE_* */
    int was_denied;      /* a denial not yet followed by a good connect (host_restored) */
    unsigned last_code;  /* the code of its last failure */
    unsigned long denials;
    unsigned long connects;
    unsigned long failovers_from;
    int open;
    int ncodes;
    unsigned code[SC_HOSTS_CODES];
    unsigned long code_count[SC_HOSTS_CODES];
} host_state;

struct sc_hosts {
    pthread_mutex_t mu;
    int n;
    int ha_mode;
    double deny_timeout;
    unsigned long rr; /* round_robin: checkouts begun */
    int last;         /* the host of the last new connection, -1 none yet */
    /* the event ring: ev_seq events recorded so far, ev_taken taken */
    unsigned long ev_seq, ev_taken;
    sc_host_event ev[SC_HOSTS_RING];
    host_state host[];
};

static void event_locked(sc_hosts *h, int type, int host, int from, unsigned code, double until)
{
    sc_host_event *e = &h->ev[h->ev_seq % SC_HOSTS_RING];
    e->type = type;
    e->host = host;
    e->from = from;
    e->code = code;
    e->until = until;
    h->ev_seq++;
}

static void count_code_locked(host_state *s, unsigned code)
{
    int k;
    for (k = 0; k < s->ncodes; k++)
        if (s->code[k] == code)
            break;
    if (k == s->ncodes) {
        if (s->ncodes < SC_HOSTS_CODES) {
            s->code[s->ncodes] = code;
            s->code_count[s->ncodes] = 0;
            s->ncodes++;
        } else {
            /* the last slot keeps the others, under code 0 */
            k = SC_HOSTS_CODES - 1;
            s->code[k] = 0;
        }
    }
    s->code_count[k]++;
}

sc_hosts *sc_hosts_new(int n, int ha_mode, double deny_timeout)
{
    if (n < 1 || n > SC_HOSTS_MAX || deny_timeout < 0)
        return NULL;
    sc_hosts *h = calloc(1, sizeof *h + (size_t)n * sizeof h->host[0]);
    if (h == NULL)
        return NULL;
    if (pthread_mutex_init(&h->mu, NULL) != 0) {
        free(h);
        return NULL;
    }
    h->n = n;
    h->ha_mode = ha_mode;
    h->deny_timeout = deny_timeout;
    h->last = -1;
    return h;
}

void sc_hosts_free(sc_hosts *h)
{
    if (h == NULL)
        return;
    pthread_mutex_destroy(&h->mu);
    free(h);
}

void sc_hosts_begin(sc_hosts *h, sc_hosts_try *t, int prefer_ro)
{
    t->tried = 0;
    t->prefer_ro = prefer_ro;
    t->start = 0;
    if (h->ha_mode == SC_HA_ROUND_ROBIN) {
        pthread_mutex_lock(&h->mu);
        t->start = (int)(h->rr++ % (unsigned long)h->n);
        pthread_mutex_unlock(&h->mu);
    }
}

int sc_hosts_next(sc_hosts *h, sc_hosts_try *t, double now)
{
    int pick = -1;
    pthread_mutex_lock(&h->mu);
    /* pass 0: not denied (and, with prefer_ro, not known read-write);
     * pass 1: not denied; then the denied ones */
    for (int pass = t->prefer_ro ? 0 : 1; pass <= 1 && pick < 0; pass++) {
        for (int k = 0; k < h->n; k++) {
            int i = (t->start + k) % h->n;
            const host_state *s = &h->host[i];
            if ((t->tried >> i) & 1u)
                continue;
            if (now < s->denied_until)
                continue;
            if (pass == 0 && s->role == SC_ROLE_READ_WRITE)
                continue;
            pick = i;
            break;
        }
    }
    if (pick < 0) {
        for (int k = 0; k < h->n; k++) {
            int i = (t->start + k) % h->n;
            if ((t->tried >> i) & 1u)
                continue;
            if (pick < 0 || h->host[i].denied_until < h->host[pick].denied_until)
                pick = i;
        }
    }
    if (pick >= 0)
        t->tried |= (uint64_t)1 << pick;
    pthread_mutex_unlock(&h->mu);
    return pick;
}

void sc_hosts_fail(sc_hosts *h, int i, double now, unsigned code, int deny)
{
    if (i < 0 || i >= h->n)
        return;
    pthread_mutex_lock(&h->mu);
    host_state *s = &h->host[i];
    if (code != 0) {
        count_code_locked(s, code);
        s->last_code = code;
    }
    if (deny) {
        s->denied_until = now + h->deny_timeout;
        s->denials++;
        s->was_denied = 1;
        event_locked(h, SC_HOST_DENIED, i, -1, code, s->denied_until);
    }
    pthread_mutex_unlock(&h->mu);
}

void sc_hosts_deny(sc_hosts *h, int i, double now)
{
    sc_hosts_fail(h, i, now, 0, 1);
}

void sc_hosts_ok(sc_hosts *h, int i, int role)
{
    if (i < 0 || i >= h->n)
        return;
    pthread_mutex_lock(&h->mu);
    host_state *s = &h->host[i];
    s->denied_until = 0;
    s->role = role;
    if (s->was_denied) {
        s->was_denied = 0;
        event_locked(h, SC_HOST_RESTORED, i, -1, 0, 0);
    }
    pthread_mutex_unlock(&h->mu);
}

void sc_hosts_landed(sc_hosts *h, int i, int failed, unsigned failed_code, double now)
{
    if (i < 0 || i >= h->n)
        return;
    pthread_mutex_lock(&h->mu);
    h->host[i].connects++;
    int from = -1;
    unsigned code = 0;
    if (failed >= 0 && failed < h->n && failed != i) {
        from = failed;
        code = failed_code;
    } else if (h->last >= 0 && h->last != i && now < h->host[h->last].denied_until) {
        from = h->last;
        code = h->host[from].last_code;
    }
    if (from >= 0) {
        h->host[from].failovers_from++;
        event_locked(h, SC_HOST_FAILOVER, i, from, code, 0);
    }
    h->last = i;
    pthread_mutex_unlock(&h->mu);
}

void sc_hosts_open_count(sc_hosts *h, int i, int delta)
{
    if (i < 0 || i >= h->n)
        return;
    pthread_mutex_lock(&h->mu);
    h->host[i].open += delta;
    pthread_mutex_unlock(&h->mu);
}

int sc_hosts_failback(sc_hosts *h, int i, int tsa, double now)
{
    if (i <= 0 || i >= h->n || h->ha_mode != SC_HA_SEQUENTIAL)
        return 0;
    int r = 0;
    pthread_mutex_lock(&h->mu);
    int mine = h->host[i].role;
    for (int j = 0; j < i && !r; j++) {
        const host_state *s = &h->host[j];
        if (now < s->denied_until)
            continue;
        switch (tsa) {
        case SC_TSA_READ_WRITE:
            r = s->role != SC_ROLE_READ_ONLY;
            break;
        case SC_TSA_READ_ONLY:
            r = s->role != SC_ROLE_READ_WRITE;
            break;
        case SC_TSA_PREFER_READ_ONLY:
            /* a read-only connection stays; a read-write one goes back to
             * an earlier host that is not known read-write */
            r = mine == SC_ROLE_READ_WRITE && s->role != SC_ROLE_READ_WRITE;
            break;
        default:
            r = 1;
        }
    }
    pthread_mutex_unlock(&h->mu);
    return r;
}

void sc_hosts_info(sc_hosts *h, int i, double now, sc_host_info *out)
{
    memset(out, 0, sizeof *out);
    if (i < 0 || i >= h->n)
        return;
    pthread_mutex_lock(&h->mu);
    const host_state *s = &h->host[i];
    out->denied = now < s->denied_until;
    out->restored_in = out->denied ? s->denied_until - now : 0;
    out->role = s->role;
    out->connects = s->connects;
    out->denials = s->denials;
    out->failovers_from = s->failovers_from;
    out->open = s->open;
    out->ncodes = s->ncodes;
    memcpy(out->code, s->code, sizeof out->code);
    memcpy(out->code_count, s->code_count, sizeof out->code_count);
    pthread_mutex_unlock(&h->mu);
}

int sc_hosts_events(sc_hosts *h, sc_host_event *out, int max, unsigned long *dropped)
{
    int n = 0;
    pthread_mutex_lock(&h->mu);
    unsigned long lost = 0;
    if (h->ev_seq - h->ev_taken > SC_HOSTS_RING) {
        lost = h->ev_seq - h->ev_taken - SC_HOSTS_RING;
        h->ev_taken = h->ev_seq - SC_HOSTS_RING;
    }
    while (n < max && h->ev_taken < h->ev_seq) {
        out[n++] = h->ev[h->ev_taken % SC_HOSTS_RING];
        h->ev_taken++;
    }
    pthread_mutex_unlock(&h->mu);
    if (dropped != NULL)
        *dropped = lost;
    return n;
}

unsigned long sc_hosts_event_seq(sc_hosts *h)
{
    pthread_mutex_lock(&h->mu);
    unsigned long r = h->ev_seq;
    pthread_mutex_unlock(&h->mu);
    return r;
}

void sc_hosts_set_role(sc_hosts *h, int i, int role)
{
    if (i < 0 || i >= h->n)
        return;
    pthread_mutex_lock(&h->mu);
    h->host[i].role = role;
    pthread_mutex_unlock(&h->mu);
}

int sc_hosts_count(const sc_hosts *h) { return h->n; }

int sc_hosts_is_denied(sc_hosts *h, int i, double now)
{
    pthread_mutex_lock(&h->mu);
    int r = i >= 0 && i < h->n && now < h->host[i].denied_until;
    pthread_mutex_unlock(&h->mu);
    return r;
}

int sc_hosts_role(sc_hosts *h, int i)
{
    pthread_mutex_lock(&h->mu);
    int r = i >= 0 && i < h->n ? h->host[i].role : SC_ROLE_UNKNOWN;
    pthread_mutex_unlock(&h->mu);
    return r;
}

unsigned long sc_hosts_denials(sc_hosts *h, int i)
{
    pthread_mutex_lock(&h->mu);
    unsigned long r = i >= 0 && i < h->n ? h->host[i].denials : 0;
    pthread_mutex_unlock(&h->mu);
    return r;
}
