/*
 * ngx_wait.c -- the OpenResty io_wait's C half: waits for a MariaDB socket
 * in nginx's own event loop (epoll) and wakes the waiting light thread
 * through its ngx.semaphore.
 *
 * Not part of scoped.core: built against nginx's headers (Debian's
 * nginx-dev, configured as Debian built nginx: spec/support/ngx-headers.sh)
 * into build/luajit/scoped/ngx_wait.so, and loaded only inside an nginx
 * worker by lua/scoped/ngx.lua through LuaJIT's FFI. Every symbol it uses
 * that is not its own (ngx_get_connection, ngx_free_connection,
 * ngx_event_actions, ngx_posted_events, ngx_cycle,
 * ngx_http_lua_ffi_sema_post) is resolved in the nginx process that loads
 * it, so it cannot load anywhere else -- and core.so does not need it.
 *
 * A socket is registered once, on its first wait, and stays registered
 * (edge-triggered, for reading and writing: nginx's ngx_add_conn) for as
 * long as it is the same socket: a wait on a socket already registered
 * makes no epoll call at all. Per wait: one fstat (is this fd still the
 * socket we registered?), and a poll(2) with no timeout only when an event
 * came while nobody waited (is it still ready?).
 *   begin   (lua/scoped/ngx.lua, io_wait) registers the fd if it is not
 *           yet (an ngx_connection_t of the worker's free list, never
 *           closed by nginx: the fd belongs to libmariadb); returns 1 when
 *           the socket is ready already, else records what the light
 *           thread waits for, which then waits on the registration's
 *           ngx.semaphore (with the timeout)
 *   handler each event records the readiness; when it is what the light
 *           thread waits for, it posts the semaphore (once per wait)
 * libmariadb closes its sockets with no hook (discard, recycle, garbage
 * collection): closing the socket takes it out of epoll (the kernel does),
 * and what is left is our ngx_connection_t, freed without any epoll call
 * when the fd's identity (device and inode, seen at registration) no longer
 * matches: by the next begin on that fd number, by a sweep (lua, at most
 * every second from a wait) or at a graceful shutdown: the connection is
 * marked idle, so nginx -s quit and reload call the handler with c->close
 * set, which releases it. While nginx is exiting the Lua side releases the
 * registration after each wait, so no "open socket ... left in connection"
 * alert is possible for a socket registered after that.
 * A light thread killed while waiting leaves the registration waiting: the
 * next event posts a semaphore nobody waits on (its count goes to 1; the
 * next wait on that registration returns at once, a spurious wake-up the
 * caller's retry absorbs).
 */
#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>

#include <poll.h>
#include <sys/stat.h>

/* lua-nginx-module, exported by ngx_http_lua_module.so (lua-resty-core's
 * ngx.semaphore calls it the same way) */
int ngx_http_lua_ffi_sema_post(void *sem, int n);

/* One socket's registration. The Lua side allocates it (ffi.new:
 * garbage-collected) with its semaphore and keeps both reachable for as
 * long as `c` is set; the C side points to it (c->data) only while `c` is
 * set. Keep in step with the cdef in lua/scoped/ngx.lua. */
typedef struct {
    void *c;          /* the ngx_connection_t while registered, else NULL */
    void *sema;       /* the registration's ngx_http_lua_sema_t */
    uint64_t dev;     /* the socket's identity at registration (fstat) */
    uint64_t ino;
    int fd;
    int ready;        /* EV_* seen since a wait last took them */
    int want;         /* EV_* the waiting light thread waits for, 0: none */
    int posted;       /* the handler posted the semaphore for this wait */
} scoped_ngx_wait_t;

int scoped_ngx_wait_begin(scoped_ngx_wait_t *w, int fd, int events, void *sema);
int scoped_ngx_wait_sweep(scoped_ngx_wait_t *w);
int scoped_ngx_wait_stale(const scoped_ngx_wait_t *w);
void scoped_ngx_wait_release(scoped_ngx_wait_t *w, int check);
int scoped_ngx_wait_poll(int fd, int events, int ms);
int scoped_ngx_wait_abi(void);
int scoped_ngx_wait_check(void);

#define EV_READ 1
#define EV_WRITE 2

/* Whether fd is still the socket w registered. */
static int same_socket(const scoped_ngx_wait_t *w, int fd)
{
    struct stat st;
    return fstat(fd, &st) == 0 && (uint64_t) st.st_dev == w->dev && (uint64_t) st.st_ino == w->ino;
}

static void forget(ngx_connection_t *c)
{
    c->read->active = 0;
    c->write->active = 0;
    /* braces: nginx's macro is two statements */
    if (c->read->posted) {
        ngx_delete_posted_event(c->read);
    }
    if (c->write->posted) {
        ngx_delete_posted_event(c->write);
    }
    c->data = NULL;
    c->idle = 0;
    c->close = 0;
    c->fd = (ngx_socket_t) -1;
    ngx_free_connection(c);
}

/* Takes the fd out of epoll (unless, with check, it is no longer the socket
 * registered: then closing it did, and a DEL now could remove another
 * file's registration) and gives the connection back, its fd forgotten
 * (never closed). */
void scoped_ngx_wait_release(scoped_ngx_wait_t *w, int check)
{
    ngx_connection_t *c = w->c;
    if (c == NULL) return;
    w->c = NULL;
    w->ready = 0;
    if ((!check || same_socket(w, w->fd)) && (c->read->active || c->write->active))
        ngx_del_conn(c, 0);
    forget(c);
}

/* A sweep's visit: releases the registration when its fd is no longer its
 * socket (closed by libmariadb, the number maybe reused). -> 1 released. */
int scoped_ngx_wait_sweep(scoped_ngx_wait_t *w)
{
    if (w->c == NULL || same_socket(w, w->fd)) return 0;
    scoped_ngx_wait_release(w, 1);
    return 1;
}

/* For the specs: 1 when registered and its fd no longer its socket. */
int scoped_ngx_wait_stale(const scoped_ngx_wait_t *w)
{
    return w->c != NULL && !same_socket(w, w->fd);
}

static void on_event(ngx_event_t *ev)
{
    ngx_connection_t *c = ev->data;
    scoped_ngx_wait_t *w = c->data;
    if (w == NULL) return;
    if (c->close) {
        /* ngx_close_idle_connections at a graceful shutdown; the fd may be
         * closed by then. A light thread waiting wakes (spuriously) and
         * registers again if it waits again. */
        scoped_ngx_wait_release(w, 1);
        if (w->want && !w->posted) {
            w->want = 0;
            w->posted = 1;
            ngx_http_lua_ffi_sema_post(w->sema, 1);
        }
        return;
    }
    w->ready |= ev->write ? EV_WRITE : EV_READ;
    if (w->want & w->ready) {
        w->ready &= ~w->want;
        w->want = 0;
        w->posted = 1;
        ngx_http_lua_ffi_sema_post(w->sema, 1);
    }
}

static int do_register(scoped_ngx_wait_t *w, int fd, void *sema)
{
    struct stat st;
    if (fstat(fd, &st) != 0) return -2;
    if (ngx_event_actions.add_conn == NULL) {
        errno = ENOSYS; /* not epoll: no persistent registration here */
        return -2;
    }
    ngx_log_t *log = ngx_cycle->log;
    ngx_connection_t *c = ngx_get_connection(fd, log);
    if (c == NULL) return -1;
    w->c = c;
    w->sema = sema;
    w->fd = fd;
    w->ready = 0;
    w->want = 0;
    w->posted = 0;
    w->dev = (uint64_t) st.st_dev;
    w->ino = (uint64_t) st.st_ino;
    c->data = w;
    c->log = log;
    c->idle = 1;   /* a graceful shutdown calls on_event with c->close */
    c->read->log = log;
    c->write->log = log;
    c->read->handler = on_event;
    c->write->handler = on_event;
    if (ngx_add_conn(c) != NGX_OK) {
        int e = errno;
        forget(c);
        w->c = NULL;
        errno = e;
        return -2;
    }
    return 0;
}

/* -> 1 ready now (no wait); 0 registered and waiting for `events`: the
 * light thread waits on the semaphore; -1 no free connection in this worker
 * (worker_connections); -2 fstat or epoll refused the fd (errno set). */
int scoped_ngx_wait_begin(scoped_ngx_wait_t *w, int fd, int events, void *sema)
{
    if (w->c != NULL && (w->fd != fd || !same_socket(w, fd)))
        scoped_ngx_wait_release(w, 1);
    if (w->c == NULL) {
        int rc = do_register(w, fd, sema);
        if (rc != 0) return rc;
    } else if (w->ready & events) {
        /* an event came while nobody waited: the caller may have read what
         * it announced since; ask the socket (no timeout) */
        w->ready &= ~events;
        if (scoped_ngx_wait_poll(fd, events, 0) == 1) return 1;
    }
    w->want = events;
    w->posted = 0;
    return 0;
}

/* The fallback where a light thread cannot wait in the event loop (or no
 * connection was free): poll(2), blocking the worker. -> 1 ready, 0
 * timeout, -1 error (errno). ms < 0: no timeout. */
int scoped_ngx_wait_poll(int fd, int events, int ms)
{
    struct pollfd p;
    p.fd = fd;
    p.events = (short) (((events & EV_READ) ? POLLIN : 0) | ((events & EV_WRITE) ? POLLOUT : 0));
    p.revents = 0;
    for (;;) {
        int n = poll(&p, 1, ms);
        if (n >= 0) return n > 0;
        if (errno != EINTR) return -1;
    }
}

/* Whether the nginx that loaded us is the one whose headers we were built
 * with: nginx's own test for a dynamic module (ngx_add_module), its version
 * and its signature (the configure options that change structure layouts),
 * read from its core module. -> 1 the same. */
int scoped_ngx_wait_check(void)
{
    return ngx_core_module.version == nginx_version && ngx_core_module.signature != NULL
        && ngx_strcmp(ngx_core_module.signature, NGX_MODULE_SIGNATURE) == 0;
}

/* the layout version of scoped_ngx_wait_t, checked by the Lua side */
int scoped_ngx_wait_abi(void)
{
    return (int) sizeof(scoped_ngx_wait_t);
}
