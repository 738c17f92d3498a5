/* The host choice of csrc/core/hosts.c (issue 21), pure C with no server:
 * order (sequential, round_robin), one attempt per host per checkout, the
 * deny window (times are passed in, nothing sleeps), prefer-read-only, and
 * the same under several threads. Prints TAP lines and a summary. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "hosts.h"
#include "url.h"

static int n_tests, n_failed;

static void check(int cond, const char *what)
{
    n_tests++;
    if (!cond)
        n_failed++;
    printf("%s %d - %s\n", cond ? "ok" : "not ok", n_tests, what);
    fflush(stdout);
}

/* the order one checkout tries the hosts in, as a string of digits */
static void order(sc_hosts *h, int prefer_ro, double now, char *out)
{
    sc_hosts_try t;
    int i, k = 0;
    sc_hosts_begin(h, &t, prefer_ro);
    while ((i = sc_hosts_next(h, &t, now)) >= 0)
        out[k++] = (char)('0' + i);
    out[k] = '\0';
}

#define N_THREADS 4
#define N_ROUNDS 20000

static sc_hosts *shared;
static int counts[N_THREADS][3];

static void *worker(void *arg)
{
    int me = (int)(long)arg;
    for (int r = 0; r < N_ROUNDS; r++) {
        sc_hosts_try t;
        sc_hosts_begin(shared, &t, 0);
        int i = sc_hosts_next(shared, &t, 100.0);
        if (i >= 0 && i < 3)
            counts[me][i]++;
    }
    return NULL;
}

int main(void)
{
    char o[SC_HOSTS_MAX + 1];

    check(sc_hosts_new(0, SC_HA_SEQUENTIAL, 30) == NULL, "no hosts: refused");
    check(sc_hosts_new(SC_HOSTS_MAX + 1, SC_HA_SEQUENTIAL, 30) == NULL, "65 hosts: refused");
    check(sc_hosts_new(2, SC_HA_SEQUENTIAL, -1) == NULL, "a negative deny_timeout: refused");

    sc_hosts *h = sc_hosts_new(3, SC_HA_SEQUENTIAL, 30);
    check(h != NULL && sc_hosts_count(h) == 3, "three hosts");
    order(h, 0, 100, o);
    check(strcmp(o, "012") == 0, "sequential: the URL's order, each host once");
    order(h, 0, 100, o);
    check(strcmp(o, "012") == 0, "sequential: every checkout starts at the first host");

    sc_hosts_deny(h, 0, 100);
    check(sc_hosts_is_denied(h, 0, 100) && sc_hosts_denials(h, 0) == 1, "host 0 denied at t=100");
    order(h, 0, 101, o);
    check(strcmp(o, "120") == 0, "a denied host goes last, tried only when the others were");
    int attempts_on_0 = 0;
    for (int k = 0; k < 100; k++) {
        sc_hosts_try t;
        sc_hosts_begin(h, &t, 0);
        if (sc_hosts_next(h, &t, 101 + k * 0.2) == 0) /* host 1 serves: no second attempt */
            attempts_on_0++;
    }
    check(attempts_on_0 == 0, "100 checkouts within the window: no attempt on the denied host");
    order(h, 0, 129.999, o);
    check(strcmp(o, "120") == 0, "still denied just before deny_timeout ends");
    order(h, 0, 130, o);
    check(strcmp(o, "012") == 0, "fail-back: first again once deny_timeout has passed");
    check(!sc_hosts_is_denied(h, 0, 130), "the denial has ended at t=130");

    sc_hosts_deny(h, 0, 200);
    sc_hosts_deny(h, 2, 205);
    sc_hosts_deny(h, 1, 210);
    order(h, 0, 211, o);
    check(strcmp(o, "021") == 0, "all denied: the soonest restored first");
    sc_hosts_ok(h, 1, SC_ROLE_READ_WRITE);
    check(!sc_hosts_is_denied(h, 1, 211) && sc_hosts_role(h, 1) == SC_ROLE_READ_WRITE,
          "a usable connection ends the denial and records the role");
    order(h, 0, 211, o);
    check(strcmp(o, "102") == 0, "the restored host first, then the denied ones");
    sc_hosts_free(h);

    h = sc_hosts_new(3, SC_HA_SEQUENTIAL, 0);
    sc_hosts_deny(h, 0, 50);
    order(h, 0, 50, o);
    check(strcmp(o, "012") == 0 && sc_hosts_denials(h, 0) == 1, "deny_timeout 0: counted, never passed over");
    sc_hosts_free(h);

    h = sc_hosts_new(3, SC_HA_ROUND_ROBIN, 30);
    char a[4], b[4], c[4], d[4];
    order(h, 0, 1, a);
    order(h, 0, 1, b);
    order(h, 0, 1, c);
    order(h, 0, 1, d);
    check(strcmp(a, "012") == 0 && strcmp(b, "120") == 0 && strcmp(c, "201") == 0 && strcmp(d, "012") == 0,
          "round_robin: each checkout starts one host further, each host once");
    sc_hosts_deny(h, 2, 1);
    order(h, 0, 2, a); /* starts at 1 */
    order(h, 0, 2, b); /* would start at 2: denied, so 0 */
    check(strcmp(a, "102") == 0 && strcmp(b, "012") == 0, "round_robin: a denied host is passed over");
    sc_hosts_free(h);

    h = sc_hosts_new(3, SC_HA_SEQUENTIAL, 30);
    order(h, 1, 1, o);
    check(strcmp(o, "012") == 0, "prefer-read-only, no role known: the URL's order");
    sc_hosts_set_role(h, 0, SC_ROLE_READ_WRITE);
    sc_hosts_set_role(h, 2, SC_ROLE_READ_ONLY);
    order(h, 1, 1, o);
    check(strcmp(o, "120") == 0, "prefer-read-only: hosts not known read-write first");
    order(h, 0, 1, o);
    check(strcmp(o, "012") == 0, "without it, roles change nothing");
    sc_hosts_deny(h, 2, 1);
    sc_hosts_deny(h, 1, 1);
    order(h, 1, 2, o);
    check(strcmp(o, "012") == 0, "prefer-read-only: a read-write host before denied ones");
    sc_hosts_free(h);

    h = sc_hosts_new(SC_HOSTS_MAX, SC_HA_SEQUENTIAL, 30);
    order(h, 0, 1, o);
    check(strlen(o) == SC_HOSTS_MAX, "64 hosts: each tried once");
    sc_hosts_free(h);

    /* what a host did (engine:hosts()) and the events */
    h = sc_hosts_new(3, SC_HA_SEQUENTIAL, 30);
    sc_host_event ev[SC_HOSTS_RING];
    unsigned long dropped = 9;
    sc_hosts_fail(h, 0, 10, 2002, 1);
    sc_hosts_fail(h, 0, 10, 2002, 1);
    sc_hosts_fail(h, 0, 10, 1045, 0);
    sc_host_info info;
    sc_hosts_info(h, 0, 11, &info);
    check(info.denied && info.restored_in > 28.9 && info.denials == 2 && info.ncodes == 2 &&
              info.code[0] == 2002 && info.code_count[0] == 2 && info.code[1] == 1045 && info.code_count[1] == 1,
          "failures counted by code; only those that deny are denials");
    sc_hosts_landed(h, 1, 0, 2002, 11);
    sc_hosts_open_count(h, 1, 1);
    int n = sc_hosts_events(h, ev, SC_HOSTS_RING, &dropped);
    check(n == 3 && dropped == 0 && ev[0].type == SC_HOST_DENIED && ev[0].host == 0 && ev[0].code == 2002 &&
              ev[0].until == 40 && ev[2].type == SC_HOST_FAILOVER && ev[2].from == 0 && ev[2].host == 1 &&
              ev[2].code == 2002,
          "events: denied twice, then a failover from host 0 to host 1");
    check(sc_hosts_events(h, ev, SC_HOSTS_RING, &dropped) == 0, "events are taken once");
    sc_hosts_landed(h, 1, -1, 0, 12);
    check(sc_hosts_events(h, ev, SC_HOSTS_RING, NULL) == 0, "another connect on the same host: no event");
    sc_hosts_landed(h, 0, -1, 0, 12);
    sc_hosts_landed(h, 1, -1, 0, 12);
    n = sc_hosts_events(h, ev, SC_HOSTS_RING, NULL);
    check(n == 1 && ev[0].type == SC_HOST_FAILOVER && ev[0].from == 0 && ev[0].code == 1045,
          "moving away from a denied host is a failover (its last code)");
    sc_hosts_ok(h, 0, SC_ROLE_READ_WRITE);
    sc_hosts_ok(h, 0, SC_ROLE_READ_WRITE);
    n = sc_hosts_events(h, ev, SC_HOSTS_RING, NULL);
    check(n == 1 && ev[0].type == SC_HOST_RESTORED && ev[0].host == 0, "restored once after a denial");
    sc_hosts_info(h, 1, 12, &info);
    check(!info.denied && info.connects == 3 && info.open == 1 && info.role == SC_ROLE_UNKNOWN,
          "connects and open connections per host");
    for (int k = 0; k < SC_HOSTS_RING + 5; k++)
        sc_hosts_fail(h, 2, 13, 2013, 1);
    n = sc_hosts_events(h, ev, SC_HOSTS_RING, &dropped);
    check(n == SC_HOSTS_RING && dropped == 5, "a full ring drops the oldest, counted");
    for (int k = 0; k < 20; k++)
        sc_hosts_fail(h, 1, 13, 3000 + (unsigned)k, 0);
    sc_hosts_info(h, 1, 13, &info);
    check(info.ncodes == SC_HOSTS_CODES && info.code[SC_HOSTS_CODES - 1] == 0 &&
              info.code_count[SC_HOSTS_CODES - 1] == 5,
          "past 16 codes, the rest under code 0");
    sc_hosts_free(h);

    /* fail-back: whether a connection on host i should move to an earlier one */
    h = sc_hosts_new(3, SC_HA_SEQUENTIAL, 30);
    sc_hosts_deny(h, 0, 100);
    check(!sc_hosts_failback(h, 1, SC_TSA_ANY, 101), "fail-back: not while host 0 is denied");
    check(sc_hosts_failback(h, 1, SC_TSA_ANY, 131), "fail-back: once its denial has ended");
    check(!sc_hosts_failback(h, 0, SC_TSA_ANY, 131), "fail-back: never from host 0");
    sc_hosts_set_role(h, 0, SC_ROLE_READ_ONLY);
    sc_hosts_set_role(h, 1, SC_ROLE_READ_WRITE);
    check(!sc_hosts_failback(h, 1, SC_TSA_READ_WRITE, 131), "read-write: not to a host last seen read-only");
    check(sc_hosts_failback(h, 2, SC_TSA_READ_WRITE, 131), "read-write: to host 1, read-write");
    sc_hosts_set_role(h, 2, SC_ROLE_READ_ONLY);
    check(!sc_hosts_failback(h, 2, SC_TSA_PREFER_READ_ONLY, 131), "prefer-read-only: a read-only one stays");
    check(sc_hosts_failback(h, 1, SC_TSA_PREFER_READ_ONLY, 131),
          "prefer-read-only: a read-write one goes back to a host not known read-write");
    sc_hosts_free(h);
    h = sc_hosts_new(3, SC_HA_ROUND_ROBIN, 30);
    check(!sc_hosts_failback(h, 2, SC_TSA_ANY, 1), "round_robin: no fail-back");
    sc_hosts_free(h);

    shared = sc_hosts_new(3, SC_HA_ROUND_ROBIN, 30);
    pthread_t th[N_THREADS];
    for (long k = 0; k < N_THREADS; k++)
        pthread_create(&th[k], NULL, worker, (void *)k);
    for (int k = 0; k < N_THREADS; k++)
        pthread_join(th[k], NULL);
    int per[3] = {0, 0, 0};
    for (int k = 0; k < N_THREADS; k++)
        for (int i = 0; i < 3; i++)
            per[i] += counts[k][i];
    int total = N_THREADS * N_ROUNDS;
    /* the counter is shared: 80000 checkouts start at hosts 0,1,2 in turn */
    check(per[0] + per[1] + per[2] == total && per[0] >= total / 3 && per[0] <= total / 3 + 1 &&
              per[1] >= total / 3 && per[2] >= total / 3 - 1,
          "round_robin under 4 threads: the first hosts spread exactly");
    sc_hosts_free(shared);

    printf("1..%d\n", n_tests);
    printf("%d passed, %d failed\n", n_tests - n_failed, n_failed);
    return n_failed != 0;
}
