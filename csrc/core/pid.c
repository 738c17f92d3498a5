#include <pthread.h>
#include <unistd.h>

#include "pid.h"

static pthread_once_t pid_once = PTHREAD_ONCE_INIT;
static pid_t cached_pid; /* 0 until init has run */

static void refresh(void)
{
    __atomic_store_n(&cached_pid, getpid(), __ATOMIC_RELEASE);
}

static void init(void)
{
    /* the handler first: a fork between the two still refreshes the child */
    pthread_atfork(NULL, NULL, refresh);
    refresh();
}

pid_t sc_getpid(void)
{
    /* every statement asks (the fork check): a load, and pthread_once only
     * until the first answer is there */
    pid_t pid = __atomic_load_n(&cached_pid, __ATOMIC_ACQUIRE);
    if (pid != 0)
        return pid;
    pthread_once(&pid_once, init);
    return __atomic_load_n(&cached_pid, __ATOMIC_ACQUIRE);
}
