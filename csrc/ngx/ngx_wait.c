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
 * One wait (lua/scoped/ngx.lua, io_wait):
 *   arm     an ngx_connection_t taken from the worker's free list for the
 *           fd (never closed by nginx: the fd belongs to libmariadb), its
 *           read and/or write event added to epoll (edge-triggered, as
 *           nginx adds every event; the kernel reports a socket that is
 *           already ready at once)
 *   wait    the light thread waits on the wait's semaphore (with the timeout)
 *   handler the first event removes the fd from epoll, gives the
 *           ngx_connection_t back and posts the semaphore
 *   release after the semaphore returns (ready or timeout), the Lua side
 *           releases whatever the handler did not
 * A light thread killed while waiting (ngx.thread.kill, a client abort)
 * never runs its release: the Lua side keeps every armed wait in a table
 * and releases those whose semaphore has no waiter left from a later wait
 * (sweep, at most every 0.1 s). By then libmariadb may have closed the fd (discard and garbage
 * collection close it with no hook) and the number may be another file's:
 * a sweep's release compares the fd's inode with the one seen at arm time,
 * and when it differs does no epoll call at all (closing the socket took it
 * out of epoll already; a DEL now could remove someone else's registration).
 * The connection is marked idle, so a graceful shutdown (nginx -s quit,
 * reload) calls the handler with c->close set, which releases it too: no
 * "open socket ... left in connection" alert for a wait nobody swept.
 */
#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>

#include <poll.h>
#include <sys/stat.h>

/* lua-nginx-module, exported by ngx_http_lua_module.so (lua-resty-core's
 * ngx.semaphore calls it the same way) */
int ngx_http_lua_ffi_sema_post(void *sem, int n);

/* One wait. The Lua side allocates it (ffi.new: garbage-collected) and
 * keeps it reachable for as long as `c` is set; the C side points to it
 * (c->data) only while `c` is set. Keep in step with the cdef in
 * lua/scoped/ngx.lua. */
typedef struct {
    void *c;          /* the ngx_connection_t while armed, else NULL */
    void *sema;       /* the wait's ngx_http_lua_sema_t */
    uint64_t dev;     /* the socket's identity at arm time (fstat) */
    uint64_t ino;
    int fd;
    int fired;        /* the handler ran (posted the semaphore) */
} scoped_ngx_wait_t;

int scoped_ngx_wait_arm(scoped_ngx_wait_t *w, int fd, int events, void *sema);
void scoped_ngx_wait_release(scoped_ngx_wait_t *w, int check);
int scoped_ngx_wait_poll(int fd, int events, int ms);
int scoped_ngx_wait_abi(void);
int scoped_ngx_wait_check(void);

#define EV_READ 1
#define EV_WRITE 2

/* Takes the fd out of epoll (unless it is no longer the socket armed, see
 * above) and gives the connection back, its fd forgotten (never closed). */
void scoped_ngx_wait_release(scoped_ngx_wait_t *w, int check)
{
    ngx_connection_t *c = w->c;
    if (c == NULL) return;
    w->c = NULL;
    int same = 1;
    if (check) {
        struct stat st;
        same = fstat(w->fd, &st) == 0 && (uint64_t) st.st_dev == w->dev
            && (uint64_t) st.st_ino == w->ino;
    }
    if (same) {
        if (c->read->active) ngx_del_event(c->read, NGX_READ_EVENT, 0);
        if (c->write->active) ngx_del_event(c->write, NGX_WRITE_EVENT, 0);
    }
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

static void on_event(ngx_event_t *ev)
{
    ngx_connection_t *c = ev->data;
    scoped_ngx_wait_t *w = c->data;
    if (w == NULL) return;
    /* c->close: ngx_close_idle_connections at a graceful shutdown; the fd
     * may be closed by then if the waiter is gone */
    scoped_ngx_wait_release(w, c->close);
    if (!w->fired) {
        w->fired = 1;
        ngx_http_lua_ffi_sema_post(w->sema, 1);
    }
}

/* -> 0 armed; -1 no free connection in this worker (worker_connections);
 * -2 fstat or epoll refused the fd (errno set) */
int scoped_ngx_wait_arm(scoped_ngx_wait_t *w, int fd, int events, void *sema)
{
    struct stat st;
    if (fstat(fd, &st) != 0) return -2;
    ngx_log_t *log = ngx_cycle->log;
    ngx_connection_t *c = ngx_get_connection(fd, log);
    if (c == NULL) return -1;
    w->c = c;
    w->sema = sema;
    w->fd = fd;
    w->fired = 0;
    w->dev = (uint64_t) st.st_dev;
    w->ino = (uint64_t) st.st_ino;
    c->data = w;
    c->log = log;
    c->idle = 1;   /* a graceful shutdown calls on_event with c->close */
    c->read->log = log;
    c->write->log = log;
    c->read->handler = on_event;
    c->write->handler = on_event;
    if ((events & EV_READ) && ngx_handle_read_event(c->read, 0) != NGX_OK) goto fail;
    if ((events & EV_WRITE) && ngx_handle_write_event(c->write, 0) != NGX_OK) goto fail;
    return 0;
fail:
    scoped_ngx_wait_release(w, 0);
    return -2;
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
