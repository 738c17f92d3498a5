#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "binds.h"
#include "chars.h"

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

/* ---- the lexer ------------------------------------------------------------
 *
 * What follows MariaDB's Lex_input_stream::lex_one_token (sql/sql_lex.cc)
 * where it decides what is code: get_text for strings, scan_ident_delimited
 * for quoted names, MY_LEX_COMMENT, MY_LEX_MINUS_OR_COMMENT,
 * MY_LEX_LONG_COMMENT with consume_comment, MY_LEX_END_LONG_COMMENT. Bytes
 * are read one at a time: in the charsets a connection accepts (utf8mb4,
 * utf8mb3, latin1, ascii, binary) no multibyte character holds an ASCII
 * byte, so that is what the server's my_ismbchar comes to. Statements the
 * server cannot parse (an unterminated string, a NUL outside a string)
 * may be cut differently: the server runs nothing of them. */

static int high_before(const char *s, size_t i)
{
    return i > 0 && (unsigned char)s[i - 1] >= 0x80;
}

/* '...' or "..." starting at s[i] == q: the index just past it (the end
 * when it never closes, as get_text reads to the end). */
static size_t skip_string(const char *s, size_t len, size_t i, char q, const sc_lex_mode *m,
                          int *flags)
{
    for (i++; i < len; i++) {
        char c = s[i];
        if (c == '\\') {
            *flags |= SC_PLAN_MODE_DEPENDENT;
            if (high_before(s, i))
                *flags |= SC_PLAN_CHARSET_DEPENDENT;
            if (!m->no_backslash)
                i++;
        } else if (c == '`') {
            if (high_before(s, i))
                *flags |= SC_PLAN_CHARSET_DEPENDENT;
        } else if (c == q) {
            if (i + 1 < len && s[i + 1] == q)
                i++;
            else
                return i + 1;
        } else if (c == '\0' && q == '"') {
            *flags |= SC_PLAN_MODE_DEPENDENT; /* where a name would stop, under ANSI_QUOTES */
        }
    }
    if (q == '"')
        *flags |= SC_PLAN_MODE_DEPENDENT; /* never closes: a name would not swallow the rest */
    return len;
}

/* `...` (or "..." under ANSI_QUOTES) starting at s[i] == q: the index just
 * past it. A NUL or the end before it closes: the server returns the quote
 * alone (a syntax error) and goes on right after it, so do we. */
static size_t skip_name(const char *s, size_t len, size_t i, char q, int *flags)
{
    for (size_t k = i + 1; k < len; k++) {
        char c = s[k];
        if (c == '\0') {
            if (q == '"')
                *flags |= SC_PLAN_MODE_DEPENDENT;
            break;
        }
        if ((c == '`' || c == '\\') && high_before(s, k))
            *flags |= SC_PLAN_CHARSET_DEPENDENT;
        if (c == '\\' && q == '"')
            *flags |= SC_PLAN_MODE_DEPENDENT; /* a string's escape without ANSI_QUOTES */
        if (c == q) {
            if (k + 1 < len && s[k + 1] == q)
                k++;
            else
                return k + 1;
        }
    }
    if (q == '"')
        *flags |= SC_PLAN_MODE_DEPENDENT;
    return i + 1;
}

/* A # or -- comment's text from i: the index of the newline (or NUL) that
 * ends it, or the end. */
static size_t skip_line(const char *s, size_t len, size_t i)
{
    while (i < len && s[i] != '\n' && s[i] != '\0')
        i++;
    return i;
}

/* "--" at s[i]: a comment when followed by a space or a control byte
 * (my_isspace || my_iscntrl in the client charset; the end of the
 * statement reads as NUL, a control byte). */
static int dash_comment(const char *s, size_t len, size_t i, const sc_lex_mode *m)
{
    if (i + 1 >= len || s[i + 1] != '-')
        return 0;
    if (i + 2 == len)
        return 1;
    unsigned char c = (unsigned char)s[i + 2];
    return c <= ' ' || c == 0x7F || (m->latin1 && c == 0xA0);
}

/* consume_comment: from i (inside a C comment), the index just past the
 * closing star-slash, or the end; nested: one level of slash-star inside
 * is skipped whole (a skipped versioned comment). */
static size_t consume_comment(const char *s, size_t len, size_t i, int nested)
{
    while (i < len) {
        char c = s[i++];
        if (nested && c == '/' && i < len && s[i] == '*') {
            i = consume_comment(s, len, i + 1, 0);
            continue;
        }
        if (c == '*' && i < len && s[i] == '/')
            return i + 1;
    }
    return len;
}

static int digit(char c)
{
    return c >= '0' && c <= '9';
}

/* A C comment at s[i] ("/" "*"): the index where lexing goes on. An
 * executable comment whose content the server runs sets *in_exec and
 * returns the index of that content; its star-slash ends it (see the
 * '*' case of the lexers). */
static size_t open_comment(const char *s, size_t len, size_t i, const sc_lex_mode *m, int *in_exec)
{
    int maria = i + 3 < len && s[i + 2] == 'M' && s[i + 3] == '!';
    if (!maria && !(i + 2 < len && s[i + 2] == '!'))
        return consume_comment(s, len, i + 2, 0);
    size_t p = i + (maria ? 4 : 3);
    if (!(p + 4 < len && digit(s[p]) && digit(s[p + 1]) && digit(s[p + 2]) && digit(s[p + 3]) &&
          digit(s[p + 4]))) {
        *in_exec = 1; /* not a version comment: its content is SQL */
        return p;
    }
    size_t n = p + 5 < len && digit(s[p + 5]) ? 6 : 5;
    unsigned long version = 0;
    for (size_t k = 0; k < n; k++)
        version = version * 10 + (unsigned long)(s[p + k] - '0');
    if (version <= m->server_version && (version < 50700 || version > 99999 || maria)) {
        *in_exec = 1;
        return p + n;
    }
    return consume_comment(s, len, p, 1);
}

/* Whitespace and comments from i, in code: the index of the next byte of
 * code (or of a quoted run), or the end. The star-slash closing an
 * executable comment counts as space. */
static size_t skip_space(const char *s, size_t len, size_t i, const sc_lex_mode *m, int *in_exec)
{
    while (i < len) {
        unsigned char c = (unsigned char)s[i];
        if (c == ' ' || (c >= '\t' && c <= '\r') || (m->latin1 && c == 0xA0)) {
            i++;
        } else if (c == '#') {
            i = skip_line(s, len, i + 1);
        } else if (c == '-' && dash_comment(s, len, i, m)) {
            i = skip_line(s, len, i + 2);
        } else if (c == '/' && i + 1 < len && s[i + 1] == '*') {
            i = open_comment(s, len, i, m, in_exec); /* an executable one's content is code */
        } else if (c == '*' && *in_exec && i + 1 < len && s[i + 1] == '/') {
            *in_exec = 0;
            i += 2;
        } else {
            break;
        }
    }
    return i;
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

static int same_source(const sc_bind_plan *p, const char *sql, size_t len, const sc_lex_mode *m)
{
    if (p->src == NULL || p->srclen != len || memcmp(p->src, sql, len) != 0)
        return 0;
    if (p->mode.latin1 != m->latin1 || p->mode.server_version != m->server_version)
        return 0;
    return !(p->flags & SC_PLAN_MODE_DEPENDENT) ||
           (p->mode.no_backslash == m->no_backslash && p->mode.ansi_quotes == m->ansi_quotes);
}

int sc_binds_parse(const char *sql, size_t len, const sc_lex_mode *m, sc_bind_plan *plan)
{
    size_t seg = 0, i = 0;
    int in_exec = 0, flags = 0;
    if (same_source(plan, sql, len, m))
        return 0;
    plan->srclen = (size_t)-1; /* no valid source until this parse succeeds */
    plan->n = plan->nnamed = plan->npositional = 0;
    plan->rows_known = 0;
    while (i < len) {
        char c = sql[i];
        if (c == '\'') {
            i = skip_string(sql, len, i, c, m, &flags);
        } else if (c == '"') {
            i = m->ansi_quotes ? skip_name(sql, len, i, c, &flags)
                               : skip_string(sql, len, i, c, m, &flags);
        } else if (c == '`') {
            if (high_before(sql, i))
                flags |= SC_PLAN_CHARSET_DEPENDENT;
            i = skip_name(sql, len, i, c, &flags);
        } else if (c == '#') {
            i = skip_line(sql, len, i + 1);
        } else if (c == '-' && dash_comment(sql, len, i, m)) {
            if (i + 2 < len && (unsigned char)sql[i + 2] == 0xA0)
                flags |= SC_PLAN_CHARSET_DEPENDENT; /* a comment in latin1 only */
            i = skip_line(sql, len, i + 2);
        } else if (c == '/' && i + 1 < len && sql[i + 1] == '*') {
            i = open_comment(sql, len, i, m, &in_exec);
        } else if (c == '*' && in_exec && i + 1 < len && sql[i + 1] == '/') {
            in_exec = 0;
            i += 2;
        } else if (c == '-' && i + 2 < len && sql[i + 1] == '-' && (unsigned char)sql[i + 2] == 0xA0) {
            flags |= SC_PLAN_CHARSET_DEPENDENT; /* a comment in latin1 only */
            i++;
        } else if (c == ':' && i + 1 < len && sql[i + 1] == ':') {
            /* "::" is one literal colon: keep the first, drop the second */
            if (push_tok(plan, SC_TOK_SQL, seg, i + 1 - seg) != 0)
                return -1;
            i += 2;
            seg = i;
        } else if (c == ':' && i + 1 < len && sc_ident_char((unsigned char)sql[i + 1]) &&
                   (unsigned char)sql[i + 1] < 0x80 && !digit(sql[i + 1]) &&
                   (i == 0 || (!sc_ident_char((unsigned char)sql[i - 1]) && sql[i - 1] != ':'))) {
            size_t k = i + 1;
            while (k < len && sc_ident_char((unsigned char)sql[k]) && (unsigned char)sql[k] < 0x80)
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
            if (c == '\\' && high_before(sql, i))
                flags |= SC_PLAN_CHARSET_DEPENDENT;
            i++;
        }
    }
    if (push_tok(plan, SC_TOK_SQL, seg, len - seg) != 0)
        return -1;
    plan->flags = flags;
    plan->mode = *m;
    return keep_source(plan, sql, len);
}

/* ---- executemany's VALUES rows ---------------------------------------------- */

static int ieq(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char c = a[i];
        if (c >= 'a' && c <= 'z')
            c = (char)(c - 'a' + 'A');
        if (c != b[i])
            return 0;
    }
    return 1;
}

/* The word of code at i (ASCII letters, digits, _ and $, bytes >= 0x80):
 * its length. */
static size_t word_at(const char *s, size_t len, size_t i)
{
    size_t k = i;
    while (k < len && (sc_ident_char((unsigned char)s[k]) || s[k] == '$'))
        k++;
    return k - i;
}

static int is_word(const char *s, size_t len, size_t i, const char *w)
{
    size_t n = strlen(w);
    return word_at(s, len, i) == n && ieq(s + i, w, n);
}

/* One unit of code at i (not space): the index after it. Quoted runs are
 * skipped whole; a word is one unit; anything else one byte. */
static size_t code_unit(const char *s, size_t len, size_t i, const sc_lex_mode *m)
{
    int flags = 0;
    char c = s[i];
    if (c == '\'' || (c == '"' && !m->ansi_quotes))
        return skip_string(s, len, i, c, m, &flags);
    if (c == '`' || c == '"')
        return skip_name(s, len, i, c, &flags);
    size_t w = word_at(s, len, i);
    return i + (w ? w : 1);
}

/* A parenthesised group at s[i] == '(' : the index just past its ')', or 0
 * when it never closes. */
static size_t skip_group(const char *s, size_t len, size_t i, const sc_lex_mode *m, int *in_exec)
{
    int depth = 0;
    while (i < len) {
        i = skip_space(s, len, i, m, in_exec);
        if (i >= len)
            break;
        if (s[i] == '(') {
            depth++;
        } else if (s[i] == ')') {
            if (--depth == 0)
                return i + 1;
        }
        i = code_unit(s, len, i, m);
    }
    return 0;
}

int sc_binds_values_rows(const char *s, size_t len, const sc_lex_mode *m, size_t *start, size_t *end)
{
    int in_exec = 0, depth = 0;
    size_t i = skip_space(s, len, 0, m, &in_exec);
    if (!is_word(s, len, i, "INSERT"))
        return 0;
    i += 6;
    /* the VALUES keyword, at the top level, followed by '(' */
    for (;;) {
        i = skip_space(s, len, i, m, &in_exec);
        if (i >= len)
            return 0;
        if (s[i] == '(') {
            depth++;
        } else if (s[i] == ')') {
            depth--;
        } else if (depth == 0 && (is_word(s, len, i, "VALUES") || is_word(s, len, i, "VALUE"))) {
            size_t k = skip_space(s, len, i + word_at(s, len, i), m, &in_exec);
            if (k < len && s[k] == '(') {
                i = k;
                break;
            }
        }
        i = code_unit(s, len, i, m);
    }
    /* the row tuples: (...) [, (...)]... */
    *start = i;
    for (;;) {
        size_t e = skip_group(s, len, i, m, &in_exec);
        if (e == 0)
            return 0;
        *end = e;
        size_t k = skip_space(s, len, e, m, &in_exec);
        if (k < len && s[k] == ',') {
            k = skip_space(s, len, k + 1, m, &in_exec);
            if (k < len && s[k] == '(') {
                i = k;
                continue;
            }
            return 0;
        }
        i = k;
        break;
    }
    /* then nothing, a ';', or ON DUPLICATE KEY UPDATE ... */
    if (i < len && s[i] == ';')
        i = skip_space(s, len, i + 1, m, &in_exec);
    if (i >= len)
        return 1;
    static const char *const odku[] = {"ON", "DUPLICATE", "KEY", "UPDATE"};
    for (int w = 0; w < 4; w++) {
        if (i >= len || !is_word(s, len, i, odku[w]))
            return 0;
        i = skip_space(s, len, i + strlen(odku[w]), m, &in_exec);
    }
    return 1;
}

int sc_bind_plan_slice(const sc_bind_plan *src, size_t start, size_t end, sc_bind_plan *dst)
{
    dst->n = dst->nnamed = dst->npositional = 0;
    dst->srclen = (size_t)-1; /* never a cache hit: a slice has no source of its own */
    dst->flags = src->flags;
    dst->mode = src->mode;
    dst->rows_known = 0;
    for (size_t t = 0; t < src->n; t++) {
        const sc_bind_token *k = &src->toks[t];
        size_t a = k->start, b = k->start + k->len;
        if (k->kind == SC_TOK_NAMED)
            a--; /* the token's text begins at its colon */
        if (b <= start || a >= end)
            continue;
        if (k->kind != SC_TOK_SQL) {
            if (push_tok(dst, k->kind, k->start, k->len) != 0)
                return -1;
            continue;
        }
        if (a < start)
            a = start;
        if (b > end)
            b = end;
        if (push_tok(dst, SC_TOK_SQL, a, b - a) != 0)
            return -1;
    }
    return 0;
}

void sc_bind_plan_free(sc_bind_plan *plan)
{
    free(plan->src);
    free(plan->toks);
    memset(plan, 0, sizeof *plan);
}

/* UTF-8 validity of s: 1 valid, 0 not; *four set when it holds a 4-byte
 * sequence (utf8mb3 has none). */
static int utf8_scan(const unsigned char *s, size_t len, int *four)
{
    size_t i = 0;
    *four = 0;
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
            *four = 1;
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

int sc_utf8_valid(const char *str, size_t len)
{
    int four;
    return utf8_scan((const unsigned char *)str, len, &four);
}

int sc_charset_class(const char *name)
{
    if (name == NULL)
        return SC_CS_UNSAFE;
    if (strcmp(name, "utf8mb4") == 0)
        return SC_CS_UTF8MB4;
    if (strcmp(name, "utf8mb3") == 0 || strcmp(name, "utf8") == 0)
        return SC_CS_UTF8MB3;
    if (strcmp(name, "latin1") == 0)
        return SC_CS_LATIN1;
    if (strcmp(name, "ascii") == 0)
        return SC_CS_ASCII;
    if (strcmp(name, "binary") == 0)
        return SC_CS_BINARY;
    return SC_CS_UNSAFE;
}

/* What each byte asks of a string literal: 0 nothing, Q a quote (doubled),
 * H the hex form (a backslash: its meaning depends on NO_BACKSLASH_ESCAPES;
 * a control byte: NUL, ^Z and newlines are read as they are, but a value
 * holding one could end a -- or # comment if a lexer ever disagreed, and
 * logs and tools cut at NUL), S a star (the hex form when a slash follows:
 * a value never holds the end of a C comment either), U a byte >= 0x80
 * (UTF-8 text, or not). */
enum { B_Q = 1, B_H = 2, B_U = 3, B_S = 4 };
#define H4 B_H, B_H, B_H, B_H
#define U16 B_U, B_U, B_U, B_U, B_U, B_U, B_U, B_U, B_U, B_U, B_U, B_U, B_U, B_U, B_U, B_U
static const unsigned char byte_class[256] = {
    H4, H4, H4, H4, H4, H4, H4, H4,       /* 0x00-0x1F */
    0, 0, 0, 0, 0, 0, 0, B_Q, 0, 0, B_S, 0, 0, 0, 0, 0, /* 0x20-0x2F: ' * */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,   /* 0x30-0x3F */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,   /* 0x40-0x4F */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, B_H, 0, 0, 0, /* 0x50-0x5F: \ */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,   /* 0x60-0x6F */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, B_H, /* 0x70-0x7F: DEL */
    U16, U16, U16, U16, U16, U16, U16, U16,           /* 0x80-0xFF */
};
#undef H4
#undef U16

static const char *const introducers[] = {"_utf8mb4 X'", "_utf8mb3 X'", "_latin1 X'", "_ascii X'",
                                          "_binary X'"};

int sc_render_string(sc_buf *b, const char *str, size_t len, int cs)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t quotes = 0;
    int hex = 0, high = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned k = byte_class[s[i]];
        if (k == 0)
            continue;
        if (k == B_Q)
            quotes++;
        else if (k == B_U)
            high = 1;
        else if (k == B_H || (i + 1 < len && s[i + 1] == '/'))
            hex = 1;
    }
    int text = 1, four = 0;
    if (high) {
        text = utf8_scan(s, len, &four);
        if (!text || (cs != SC_CS_UTF8MB4 && cs != SC_CS_UTF8MB3 && cs != SC_CS_LATIN1))
            hex = 1;
    }
    if (!hex) {
        if (len > ((size_t)-1) / 2 - 16 || sc_buf_grow(b, len + quotes + 2) != 0)
            return -1;
        char *o = b->data + b->len;
        *o++ = '\'';
        if (quotes == 0) {
            memcpy(o, s, len);
            o += len;
        } else {
            for (size_t i = 0; i < len; i++) {
                if (s[i] == '\'')
                    *o++ = '\'';
                *o++ = (char)s[i];
            }
        }
        *o++ = '\'';
        b->len = (size_t)(o - b->data);
        return 0;
    }
    if (cs < SC_CS_UTF8MB4 || cs > SC_CS_BINARY || !text || (cs == SC_CS_UTF8MB3 && four))
        cs = SC_CS_BINARY;
    const char *intro = introducers[cs];
    size_t ilen = strlen(intro);
    if (len > ((size_t)-1) / 2 - 32 || sc_buf_grow(b, ilen + 2 * len + 1) != 0)
        return -1;
    static const char digits[] = "0123456789ABCDEF";
    char *o = b->data + b->len;
    memcpy(o, intro, ilen);
    o += ilen;
    for (size_t i = 0; i < len; i++) {
        *o++ = digits[s[i] >> 4];
        *o++ = digits[s[i] & 15];
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
