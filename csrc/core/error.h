/* The one error type of the core: every core function that can fail fills
 * an sc_error (conn, pool, url, the connector), and the binding raises it
 * as it is (csrc/lua/lutil.c, scl_push_dberror), so no layer flattens an
 * error into text for another to parse back. */
#ifndef SCOPED_ERROR_H
#define SCOPED_ERROR_H

typedef struct sc_error {
    unsigned code;       /* server or client errno; 0 for our own errors */
    char sqlstate[6];
    char message[512];
} sc_error;

/* The code of a failure to produce a connection that has no errno of its
 * own (the pool out of memory, a connector that gave no reason): MySQL's
 * CR_CONN_HOST_ERROR, so that it is raised as the OperationalError a
 * failed connect is. The pool knows nothing of MySQL but this number. */
#define SC_ERR_CANNOT_CONNECT 2003

#if defined(__GNUC__)
#define SC_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define SC_PRINTF(f, a)
#endif

/* Fills e (NULL: nothing) with code, sqlstate (at most 5 characters) and
 * a printf-style message, truncated to fit. */
void sc_error_set(sc_error *e, unsigned code, const char *sqlstate, const char *fmt, ...)
    SC_PRINTF(4, 5);

/* No error: code 0, empty sqlstate and message. Three stores, as it runs
 * at the start of every checkout. */
static inline void sc_error_clear(sc_error *e)
{
    if (e != NULL) {
        e->code = 0;
        e->sqlstate[0] = '\0';
        e->message[0] = '\0';
    }
}

#endif
