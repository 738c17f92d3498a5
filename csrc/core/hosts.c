#include <pthread.h>
#include <stdlib.h>

#include "hosts.h"
#include "url.h"

typedef struct host_state {
    double denied_until; /* sc_monotonic() seconds; 0: never denied */
    int role;            /* SC_ROLE_* */
    unsigned long denials;
} host_state;

struct sc_hosts {
    pthread_mutex_t mu;
    int n;
    int ha_mode;
    double deny_timeout;
    unsigned long rr; /* round_robin: checkouts begun */
    host_state host[];
};

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

void sc_hosts_deny(sc_hosts *h, int i, double now)
{
    if (i < 0 || i >= h->n)
        return;
    pthread_mutex_lock(&h->mu);
    h->host[i].denied_until = now + h->deny_timeout;
    h->host[i].denials++;
    pthread_mutex_unlock(&h->mu);
}

void sc_hosts_ok(sc_hosts *h, int i, int role)
{
    if (i < 0 || i >= h->n)
        return;
    pthread_mutex_lock(&h->mu);
    h->host[i].denied_until = 0;
    h->host[i].role = role;
    pthread_mutex_unlock(&h->mu);
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
