/* A growable byte buffer for building statements outside Lua: it belongs to
 * a connection and is reused, so building SQL allocates nothing in steady
 * state, and an error raised half-way through leaks nothing. */
#ifndef SCOPED_BUF_H
#define SCOPED_BUF_H

#include <stddef.h>
#include <string.h>

typedef struct sc_buf {
    char *data;
    size_t len, cap;
} sc_buf;

/* Makes room for n more bytes; returns 0, or -1 when out of memory. */
int sc_buf_grow(sc_buf *b, size_t n);
void sc_buf_free(sc_buf *b);

static inline int sc_buf_add(sc_buf *b, const char *s, size_t n)
{
    if (b->cap - b->len < n && sc_buf_grow(b, n) != 0)
        return -1;
    memcpy(b->data + b->len, s, n);
    b->len += n;
    return 0;
}

#endif
