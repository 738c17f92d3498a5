#include <stdlib.h>

#include "buf.h"

int sc_buf_grow(sc_buf *b, size_t n)
{
    if (b->cap - b->len >= n)
        return 0;
    if (n > ((size_t)-1) / 2 - b->len)
        return -1;
    size_t cap = b->cap ? b->cap : 256;
    while (cap - b->len < n)
        cap *= 2;
    char *d = realloc(b->data, cap);
    if (d == NULL)
        return -1;
    b->data = d;
    b->cap = cap;
    return 0;
}

void sc_buf_free(sc_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}
