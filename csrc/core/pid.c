#include <pthread.h>
#include <unistd.h>

#include "pid.h"

static pthread_once_t pid_once = PTHREAD_ONCE_INIT;
static pid_t cached_pid;

static void refresh(void)
{
    __atomic_store_n(&cached_pid, getpid(), __ATOMIC_RELAXED);
}

static void init(void)
{
    refresh();
    pthread_atfork(NULL, NULL, refresh);
}

pid_t sc_getpid(void)
{
    pthread_once(&pid_once, init);
    return __atomic_load_n(&cached_pid, __ATOMIC_RELAXED);
}
