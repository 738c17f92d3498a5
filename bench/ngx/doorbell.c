/*
 * doorbell.c -- design (b) of issue 19, a prototype kept for the
 * measurements only (bench/ngx/doorbell.lua; not part of scoped): a helper
 * thread per nginx worker polls the MariaDB sockets and rings a "doorbell",
 * a unix-socket connection the waiting light thread reads from with an
 * ordinary cosocket. Needs no nginx header at all.
 *
 * Protocol on a doorbell connection: the light thread writes one
 * registration (struct reg: fd, events); the helper adds the fd to its own
 * epoll (EPOLLONESHOT) and, when it is ready, deletes it and writes one byte
 * back. A light thread that gives up (timeout) closes its connection: the
 * helper deletes the registration on EOF.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

struct reg { int32_t fd; int32_t events; };

/* one per doorbell connection; epoll data points to it for the connection
 * itself (kind 0) and for the watched fd (kind 1, via watch) */
typedef struct conn {
    int kind;
    int sock;            /* the doorbell connection */
    int fd;              /* the watched fd, -1 when none */
    struct conn *self;   /* kind 0: itself */
    struct { int kind; struct conn *c; } watch;
} conn_t;

static int ep = -1, lsock = -1;

static void unwatch(conn_t *c)
{
    if (c->fd >= 0) {
        epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL); /* ENOENT/EBADF when closed: fine */
        c->fd = -1;
    }
}

static void *loop(void *arg)
{
    (void) arg;
    struct epoll_event evs[64];
    for (;;) {
        int n = epoll_wait(ep, evs, 64, -1);
        if (n < 0) { if (errno == EINTR) continue; return NULL; }
        for (int i = 0; i < n; i++) {
            int *kind = evs[i].data.ptr;
            if (kind == NULL) { /* the listening socket */
                int s = accept4(lsock, NULL, NULL, SOCK_CLOEXEC);
                if (s < 0) continue;
                conn_t *c = calloc(1, sizeof *c);
                if (c == NULL) { close(s); continue; }
                c->kind = 0; c->sock = s; c->fd = -1; c->watch.kind = 1; c->watch.c = c;
                struct epoll_event e = {.events = EPOLLIN, .data.ptr = c};
                if (epoll_ctl(ep, EPOLL_CTL_ADD, s, &e) != 0) { close(s); free(c); }
            } else if (*kind == 0) { /* a registration, or EOF */
                conn_t *c = (conn_t *) kind;
                struct reg r;
                ssize_t k = read(c->sock, &r, sizeof r);
                if (k == (ssize_t) sizeof r) {
                    unwatch(c);
                    struct epoll_event e = {.events = EPOLLONESHOT
                        | ((r.events & 1) ? EPOLLIN : 0) | ((r.events & 2) ? EPOLLOUT : 0),
                        .data.ptr = &c->watch};
                    if (epoll_ctl(ep, EPOLL_CTL_ADD, r.fd, &e) == 0) c->fd = r.fd;
                    else { char b = 'e'; (void) !write(c->sock, &b, 1); }
                } else if (k == 0 || (k < 0 && errno != EAGAIN && errno != EINTR)) {
                    unwatch(c);
                    epoll_ctl(ep, EPOLL_CTL_DEL, c->sock, NULL);
                    close(c->sock);
                    free(c);
                }
            } else { /* a watched fd is ready */
                conn_t *c = ((struct { int kind; conn_t *c; } *) kind)->c;
                unwatch(c);
                char b = 'r';
                (void) !write(c->sock, &b, 1);
            }
        }
    }
}

/* -> 0 started (or already), -1 error */
int scoped_doorbell_start(const char *path)
{
    if (ep >= 0) return 0;
    struct sockaddr_un a;
    memset(&a, 0, sizeof a);
    a.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof a.sun_path) return -1;
    strcpy(a.sun_path, path);
    unlink(path);
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0) return -1;
    if (bind(s, (struct sockaddr *) &a, sizeof a) != 0 || listen(s, 512) != 0) { close(s); return -1; }
    int e = epoll_create1(EPOLL_CLOEXEC);
    if (e < 0) { close(s); return -1; }
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(e, EPOLL_CTL_ADD, s, &ev);
    ep = e; lsock = s;
    pthread_t t;
    if (pthread_create(&t, NULL, loop, NULL) != 0) return -1;
    pthread_detach(t);
    return 0;
}
