#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "binds.h"

static int push_tok(sc_bind_plan *p, int kind, size_t start, size_t len)
{
    if (kind == SC_TOK_SQL && len == 0)
        return 0;
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 16;
        sc_bind_token *t = realloc(p->toks, cap * sizeof *t);
        if (t == NULL)
            return -1;
        p->toks = t;
        p->cap = cap;
    }
    p->toks[p->n].kind = kind;
    p->toks[p->n].start = start;
    p->toks[p->n].len = len;
    p->n++;
    if (kind == SC_TOK_NAMED)
        p->nnamed++;
    else if (kind == SC_TOK_POSITIONAL)
        p->npositional++;
    return 0;
}

static int word_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c >= 0x80;
}

/* Index just past a quoted run that starts at sql[i] == q. A backslash
 * escapes the next byte in '...' and "..." (the server's default mode); in
 * every kind a doubled quote stands for itself. Unterminated: the end. */
static size_t skip_quoted(const char *sql, size_t len, size_t i, char q)
{
    for (i++; i < len; i++) {
        if (sql[i] == '\\' && q != '`') {
            i++;
        } else if (sql[i] == q) {
            if (i + 1 < len && sql[i + 1] == q)
                i++;
            else
                return i + 1;
        }
    }
    return len;
}

/* Remembers sql as the plan's source; on failure the plan has none. */
static int keep_source(sc_bind_plan *plan, const char *sql, size_t len)
{
    if (plan->srccap < len + 1) {
        char *p = realloc(plan->src, len + 1);
        if (p == NULL) {
            plan->srclen = (size_t)-1;
            return -1;
        }
        plan->src = p;
        plan->srccap = len + 1;
    }
    memcpy(plan->src, sql, len);
    plan->srclen = len;
    return 0;
}

int sc_binds_parse(const char *sql, size_t len, sc_bind_plan *plan)
{
    size_t seg = 0, i = 0;
    if (plan->src != NULL && plan->srclen == len && memcmp(plan->src, sql, len) == 0)
        return 0;
    plan->srclen = (size_t)-1; /* no valid source until this parse succeeds */
    plan->n = plan->nnamed = plan->npositional = 0;
    while (i < len) {
        char c = sql[i];
        if (c == '\'' || c == '"' || c == '`') {
            i = skip_quoted(sql, len, i, c);
        } else if (c == '#' || (c == '-' && i + 1 < len && sql[i + 1] == '-' &&
                                (i + 2 == len || (unsigned char)sql[i + 2] <= ' '))) {
            /* MySQL wants a space or control character after "--" */
            while (i < len && sql[i] != '\n')
                i++;
        } else if (c == '/' && i + 1 < len && sql[i + 1] == '*') {
            const char *e = NULL;
            for (size_t k = i + 2; k + 1 < len; k++)
                if (sql[k] == '*' && sql[k + 1] == '/') {
                    e = sql + k;
                    break;
                }
            i = e ? (size_t)(e - sql) + 2 : len;
        } else if (c == ':' && i + 1 < len && sql[i + 1] == ':') {
            /* "::" is one literal colon: keep the first, drop the second */
            if (push_tok(plan, SC_TOK_SQL, seg, i + 1 - seg) != 0)
                return -1;
            i += 2;
            seg = i;
        } else if (c == ':' && i + 1 < len && word_char((unsigned char)sql[i + 1]) &&
                   (unsigned char)sql[i + 1] < 0x80 && !(sql[i + 1] >= '0' && sql[i + 1] <= '9') &&
                   (i == 0 || (!word_char((unsigned char)sql[i - 1]) && sql[i - 1] != ':'))) {
            size_t k = i + 1;
            while (k < len && word_char((unsigned char)sql[k]) && (unsigned char)sql[k] < 0x80)
                k++;
            if (push_tok(plan, SC_TOK_SQL, seg, i - seg) != 0 ||
                push_tok(plan, SC_TOK_NAMED, i + 1, k - i - 1) != 0)
                return -1;
            i = k;
            seg = i;
        } else if (c == '?') {
            if (push_tok(plan, SC_TOK_SQL, seg, i - seg) != 0 ||
                push_tok(plan, SC_TOK_POSITIONAL, i, 1) != 0)
                return -1;
            i++;
            seg = i;
        } else {
            i++;
        }
    }
    if (push_tok(plan, SC_TOK_SQL, seg, len - seg) != 0)
        return -1;
    return keep_source(plan, sql, len);
}

void sc_bind_plan_free(sc_bind_plan *plan)
{
    free(plan->src);
    free(plan->toks);
    memset(plan, 0, sizeof *plan);
}

int sc_utf8_valid(const char *str, size_t len)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < len) {
        unsigned c = s[i];
        size_t n;
        unsigned min;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            n = 1, min = 0x80, c &= 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            n = 2, min = 0x800, c &= 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            n = 3, min = 0x10000, c &= 0x07;
        } else {
            return 0;
        }
        if (len - i <= n)
            return 0;
        for (size_t k = 1; k <= n; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return 0;
            c = (c << 6) | (s[i + k] & 0x3F);
        }
        if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
            return 0;
        i += n + 1;
    }
    return 1;
}

int sc_escape_string(sc_buf *b, const char *s, size_t len, int no_backslash)
{
    int binary = !sc_utf8_valid(s, len);
    /* worst case every byte doubles, plus _binary'' */
    if (len > ((size_t)-1) / 2 - 16 || sc_buf_grow(b, 2 * len + 10) != 0)
        return -1;
    char *o = b->data + b->len;
    if (binary) {
        memcpy(o, "_binary", 7);
        o += 7;
    }
    *o++ = '\'';
    if (no_backslash) {
        for (size_t i = 0; i < len; i++) {
            if (s[i] == '\'')
                *o++ = '\'';
            *o++ = s[i];
        }
    } else {
        for (size_t i = 0; i < len; i++) {
            char c = s[i], e = 0;
            switch (c) {
            case '\0': e = '0'; break;
            case '\n': e = 'n'; break;
            case '\r': e = 'r'; break;
            case '\\': e = '\\'; break;
            case '\'': e = '\''; break;
            case '"': e = '"'; break;
            case '\032': e = 'Z'; break;
            default: break;
            }
            if (e) {
                *o++ = '\\';
                *o++ = e;
            } else {
                *o++ = c;
            }
        }
    }
    *o++ = '\'';
    b->len = (size_t)(o - b->data);
    return 0;
}

int sc_format_integer(sc_buf *b, long long v)
{
    /* by hand: snprintf's format parsing was a tenth of a batch INSERT */
    char tmp[24];
    char *p = tmp + sizeof tmp;
    unsigned long long u = v < 0 ? 0 - (unsigned long long)v : (unsigned long long)v;
    do {
        *--p = (char)('0' + u % 10);
        u /= 10;
    } while (u != 0);
    if (v < 0)
        *--p = '-';
    return sc_buf_add(b, p, (size_t)(tmp + sizeof tmp - p)) == 0 ? 0 : -2;
}

int sc_format_float(sc_buf *b, double v)
{
    char tmp[40];
    int n = 0;
    if (!isfinite(v))
        return -1;
    /* the fewest digits that read back as the same double */
    for (int prec = 15; prec <= 17; prec++) {
        n = snprintf(tmp, sizeof tmp, "%.*g", prec, v);
        if (strtod(tmp, NULL) == v)
            break;
    }
    if (memchr(tmp, 'e', (size_t)n) == NULL) {
        /* "0.5" would be a DECIMAL literal; "0.5e0" is a DOUBLE */
        tmp[n++] = 'e';
        tmp[n++] = '0';
    }
    return sc_buf_add(b, tmp, (size_t)n) == 0 ? 0 : -2;
}
