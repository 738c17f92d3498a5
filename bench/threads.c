/* W5 for scoped with OS threads: NTHREADS pthreads, each with its own
 * lua_State (one per thread, as an embedding server would have), all on one
 * engine created with the same `shared` name (pool_size 4, max_overflow 0),
 * each running the seed's request (bench/thread_worker.lua).
 *
 *   threads-lua5.4|threads-luajit SOCKET NTHREADS REQUESTS_PER_THREAD
 *
 * prints RESULT requests/s over all threads (from the moment all threads
 * are ready to the last one's end), and EXTRA p50/p99 of the checkout wait
 * (Session:connection()) and p99 of the whole request, in microseconds.
 * LUA_PATH / LUA_CPATH must find scoped, scoped.core and benchclock. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

static const char *sock;
static long per;
static pthread_barrier_t ready;
static double *waits, *reqs; /* NTHREADS * per each */

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int l_barrier(lua_State *L)
{
    (void)L;
    pthread_barrier_wait(&ready);
    return 0;
}

static void read_array(lua_State *L, int idx, double *out)
{
    for (long i = 0; i < per; i++) {
        lua_rawgeti(L, idx, (int)i + 1);
        out[i] = lua_tonumber(L, -1);
        lua_pop(L, 1);
    }
}

static void *thread_main(void *arg)
{
    long t = (long)arg;
    lua_State *L = luaL_newstate();
    luaL_openlibs(L);
    lua_pushcfunction(L, l_barrier);
    lua_setglobal(L, "bench_barrier");
    if (luaL_loadfile(L, "bench/thread_worker.lua") != 0)
        goto fail;
    lua_pushstring(L, sock);
    lua_pushinteger(L, (lua_Integer)per);
    if (lua_pcall(L, 2, 2, 0) != 0)
        goto fail;
    read_array(L, -2, waits + t * per);
    read_array(L, -1, reqs + t * per);
    lua_close(L); /* the last state's engine releases the shared pool */
    return NULL;
fail:
    fprintf(stderr, "threads: thread %ld: %s\n", t, lua_tostring(L, -1));
    exit(1); /* the others wait at the barrier: no clean way out */
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(const double *v, long n, double p)
{
    long i = (long)((double)n * p) - 1;
    return v[i < 0 ? 0 : i];
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: threads SOCKET NTHREADS REQUESTS_PER_THREAD\n");
        return 2;
    }
    sock = argv[1];
    long nthreads = atol(argv[2]);
    per = atol(argv[3]);
    long total = nthreads * per;
    waits = calloc((size_t)total, sizeof *waits);
    reqs = calloc((size_t)total, sizeof *reqs);
    pthread_t *th = calloc((size_t)nthreads, sizeof *th);
    pthread_barrier_init(&ready, NULL, (unsigned)nthreads + 1);
    for (long t = 0; t < nthreads; t++)
        pthread_create(&th[t], NULL, thread_main, (void *)t);
    pthread_barrier_wait(&ready);
    double t0 = now();
    for (long t = 0; t < nthreads; t++)
        pthread_join(th[t], NULL);
    double dt = now() - t0;
    qsort(waits, (size_t)total, sizeof *waits, cmp);
    qsort(reqs, (size_t)total, sizeof *reqs, cmp);
    printf("RESULT %.0f\n", (double)total / dt);
    printf("EXTRA p50_wait_us %.3f\n", pct(waits, total, 0.50) * 1e6);
    printf("EXTRA p99_wait_us %.3f\n", pct(waits, total, 0.99) * 1e6);
    printf("EXTRA p99_request_us %.3f\n", pct(reqs, total, 0.99) * 1e6);
    return 0;
}
