/* The current process id, cached: getpid() is a real system call (about
 * 200 ns on these VMs, glibc stopped caching it), and the pool asks on every
 * checkout and checkin to notice a fork. A pthread_atfork child handler
 * refreshes the cache, so fork() (and everything built on it) is seen; a raw
 * clone(2) that skips the atfork handlers is not. */
#ifndef SCOPED_PID_H
#define SCOPED_PID_H

#include <sys/types.h>

pid_t sc_getpid(void);

#endif
