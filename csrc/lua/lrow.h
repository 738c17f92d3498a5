/* What the buffered Result (lresult.c) and the streaming one (lstream.c)
 * share: the fields every Result reports, the cell decoders of their row
 * loops, and the column info (row metatables) of one cache. Internal to
 * those two files. */
#ifndef SCOPED_LROW_H
#define SCOPED_LROW_H

#include <stdlib.h>
#include <string.h>

#include "lresult.h"

typedef struct lresult {
    long long rowcount;
    unsigned long long lastrowid;
    int nsets;  /* result sets that return rows; 0 once closed */
    int cur;    /* the current one (0-based); cur >= nsets: none left */
    int pos;    /* next row of the current set (1-based) */
    int nrows;  /* rows in the current set */
    int closed; /* close() was called: rowcount and lastrowid stay readable */
    int handed; /* Lua 5.1, one set: all() handed its list over; the env is the cols */
} lresult;

/* Columns up to this many are described on the C stack; more in a
 * userdata (collected with the rest if a Lua error cuts the read short). */
#define SC_COLS_ON_STACK 64

/* ---- row decoding: the hot path of every fetch ------------------------- */

/* The cell decoders are inlined into both row loops (the buffered one in
 * push_rows, the streaming one in stream_read): with two callers GCC stops
 * inlining them, and the calls cost W3 ~70 instructions a row for
 * push_cell, ~30 for parse_int and parse_double (bench/profile.sh w3). */
#if defined(__GNUC__)
#define SC_INLINE_CELL static inline __attribute__((always_inline))
#else
#define SC_INLINE_CELL static inline
#endif

SC_INLINE_CELL int parse_int(const char *s, unsigned long len, long long *out)
{
    unsigned long i = 0;
    int neg = 0;
    unsigned long long v = 0;
    if (len > 0 && (s[0] == '-' || s[0] == '+')) {
        neg = s[0] == '-';
        i = 1;
    }
    if (i == len || len - i > 19)
        return -1;
    for (; i < len; i++) {
        unsigned d = (unsigned)(s[i] - '0');
        if (d > 9)
            return -1;
        v = v * 10 + d;
    }
    if (neg ? v > 9223372036854775808ULL : v > 9223372036854775807ULL)
        return -1;
    *out = neg ? (long long)(0 - v) : (long long)v;
    return 0;
}

/* The server's text of a DOUBLE as a double. Most values have at most 15
 * significant digits and a small exponent: then the digits as an integer
 * and the power of ten are both exact doubles, and one multiplication or
 * division rounds correctly (Clinger's fast path). Anything else goes to
 * strtod, which is exact but several times slower. */
SC_INLINE_CELL double parse_double(const char *s, unsigned long len)
{
    static const double pow10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                   1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                   1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
    unsigned long i = 0;
    int neg = 0, digits = 0, exp10 = 0;
    unsigned long long m = 0;
    if (i < len && (s[i] == '-' || s[i] == '+'))
        neg = s[i++] == '-';
    for (; i < len && s[i] >= '0' && s[i] <= '9'; i++, digits++)
        m = m * 10 + (unsigned)(s[i] - '0');
    if (i < len && s[i] == '.') {
        for (i++; i < len && s[i] >= '0' && s[i] <= '9'; i++, digits++, exp10--)
            m = m * 10 + (unsigned)(s[i] - '0');
    }
    if (i < len && (s[i] == 'e' || s[i] == 'E')) {
        int eneg = 0, e = 0;
        i++;
        if (i < len && (s[i] == '-' || s[i] == '+'))
            eneg = s[i++] == '-';
        for (; i < len && s[i] >= '0' && s[i] <= '9' && e < 10000; i++)
            e = e * 10 + (s[i] - '0');
        exp10 += eneg ? -e : e;
    }
    if (i != len || digits == 0 || digits > 15 || exp10 < -22 || exp10 > 22)
        return strtod(s, NULL); /* the row buffer is NUL-terminated */
    double v = (double)m;
    v = exp10 < 0 ? v / pow10[-exp10] : v * pow10[exp10];
    return neg ? -v : v;
}

SC_INLINE_CELL void push_cell(lua_State *L, unsigned char kind, const char *s, unsigned long len)
{
    if (s == NULL) {
        lua_pushlightuserdata(L, NULL);
        return;
    }
    switch (kind) {
    case SC_KIND_INT:
    case SC_KIND_UINT: {
        long long v;
        if (parse_int(s, len, &v) == 0) {
#if SC_HAS_INTEGERS
            lua_pushinteger(L, (lua_Integer)v);
            return;
#else
            /* a double holds integers exactly up to 2^53 */
            if (v <= 9007199254740992LL && v >= -9007199254740992LL) {
                lua_pushnumber(L, (lua_Number)v);
                return;
            }
#endif
        }
        break; /* BIGINT UNSIGNED past 2^63-1, or past 2^53 on LuaJIT */
    }
    case SC_KIND_FLOAT:
        lua_pushnumber(L, parse_double(s, len));
        return;
    default:
        break;
    }
    lua_pushlstring(L, s, len);
}

/* lresult.c: pushes the cols entry {row metatable, names, names blob} for
 * these columns, from the cache every Result shares. */
void scl_push_cols(lua_State *L, const scl_column *f, unsigned n);
/* lresult.c: how the cells of a column of this type are decoded (SC_KIND_*). */
unsigned char scl_kind_of(const MYSQL_FIELD *f);
/* lresult.c: a new buffered Result with no sets (an empty, closed-for-rows
 * one), on top of the stack. */
lresult *scl_push_result(lua_State *L);

#endif
