/* libFuzzer target for the bind lexer and the literal writer (csrc/core/binds.c,
 * csrc/core/buf.c, pure C).
 *
 * Properties, for any bytes:
 *   - sc_binds_parse, in every mode (NO_BACKSLASH_ESCAPES, ANSI_QUOTES,
 *     latin1): tokens in order, inside the input, each placeholder what it
 *     claims to be (":name" of ASCII word characters, "?"), the bytes
 *     between tokens only the dropped half of a "::";
 *   - SC_PLAN_MODE_DEPENDENT is the same whatever mode the parse ran in,
 *     and without it the four modes give the same tokens: a statement
 *     without the flag needs no mode at all (what lets execute skip asking
 *     the server for sql_mode);
 *   - sc_render_string, for every accepted charset: either '...' -- no
 *     backslash, no control byte, no star-slash (a value ends no comment
 *     of any kind), bytes >= 0x80 only as valid UTF-8 on
 *     utf8mb4/utf8mb3/latin1 -- which a reference reader written from
 *     MariaDB's string grammar reads back to exactly the input and closed
 *     exactly at its end, with NO_BACKSLASH_ESCAPES and without; or
 *     <introducer> X'<hex>' decoding to the input, the introducer _binary
 *     exactly when the bytes are not UTF-8 text the charset accepts; and
 *     which form is written follows the documented rule;
 *   - "SELECT <literal>, ?, :n" lexes, in every mode, to exactly the two
 *     placeholders after the literal and is not mode dependent: no value
 *     can move a placeholder or a quote, whatever the session's sql_mode;
 *   - sc_binds_values_rows: row tuples inside the input, from '(' to ')',
 *     after an INSERT; sc_bind_plan_slice keeps exactly the placeholders
 *     inside them;
 *   - sc_format_float / sc_format_integer on the first 8 bytes: a number
 *     literal that reads back as the same value (inf and nan refused). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "binds.h"

#define CHECK(cond)                                                                    \
    do {                                                                               \
        if (!(cond)) {                                                                 \
            fprintf(stderr, "fuzz_binds: property failed: %s (line %d)\n", #cond, __LINE__); \
            abort();                                                                   \
        }                                                                              \
    } while (0)

#define SERVER_VERSION 101119UL

static int word_ascii(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

static sc_lex_mode mode_of(int bits)
{
    sc_lex_mode m;
    memset(&m, 0, sizeof m);
    m.no_backslash = bits & 1;
    m.ansi_quotes = (bits >> 1) & 1;
    m.latin1 = (bits >> 2) & 1;
    m.server_version = SERVER_VERSION;
    return m;
}

static void check_plan(const char *sql, size_t len, const sc_bind_plan *p)
{
    size_t cur = 0, named = 0, positional = 0;
    for (size_t t = 0; t < p->n; t++) {
        const sc_bind_token *k = &p->toks[t];
        size_t start = k->start;
        if (k->kind == SC_TOK_NAMED) {
            CHECK(start >= 1 && sql[start - 1] == ':');
            start--; /* the token's text begins at its colon */
            CHECK(k->len >= 1);
            CHECK(start + 1 + k->len <= len);
            for (size_t i = 0; i < k->len; i++)
                CHECK(word_ascii((unsigned char)sql[k->start + i]));
            named++;
        } else if (k->kind == SC_TOK_POSITIONAL) {
            CHECK(k->len == 1 && start < len && sql[start] == '?');
            positional++;
        } else {
            CHECK(k->kind == SC_TOK_SQL && k->len > 0 && start + k->len <= len);
        }
        /* between tokens: nothing, or the second colon of a "::" */
        CHECK(start >= cur);
        if (start > cur) {
            CHECK(start == cur + 1 && sql[cur] == ':' && cur >= 1 && sql[cur - 1] == ':');
        }
        cur = k->kind == SC_TOK_NAMED ? k->start + k->len : start + k->len;
    }
    CHECK(cur == len || (cur + 1 == len && sql[cur] == ':' && cur >= 1 && sql[cur - 1] == ':'));
    CHECK(named == p->nnamed && positional == p->npositional);
}

static int same_tokens(const sc_bind_plan *a, const sc_bind_plan *b)
{
    if (a->n != b->n)
        return 0;
    for (size_t t = 0; t < a->n; t++)
        if (a->toks[t].kind != b->toks[t].kind || a->toks[t].start != b->toks[t].start ||
            a->toks[t].len != b->toks[t].len)
            return 0;
    return 1;
}

static void check_parse(const char *s, size_t size)
{
    sc_bind_plan plans[8];
    memset(plans, 0, sizeof plans);
    for (int bits = 0; bits < 8; bits++) {
        sc_lex_mode m = mode_of(bits);
        CHECK(sc_binds_parse(s, size, &m, &plans[bits]) == 0);
        check_plan(s, size, &plans[bits]);
        /* parsing again is a cache hit that changes nothing */
        CHECK(sc_binds_parse(s, size, &m, &plans[bits]) == 0);
        check_plan(s, size, &plans[bits]);
    }
    for (int bits = 0; bits < 8; bits++) {
        int base = bits & 4; /* same charset, mode bits cleared */
        int dep = plans[bits].flags & SC_PLAN_MODE_DEPENDENT;
        CHECK(dep == (plans[base].flags & SC_PLAN_MODE_DEPENDENT));
        if (!dep)
            CHECK(same_tokens(&plans[bits], &plans[base]));
    }
    /* executemany's row tuples */
    sc_lex_mode m0 = mode_of(0);
    size_t rs = 0, re = 0;
    if (sc_binds_values_rows(s, size, &m0, &rs, &re)) {
        CHECK(rs < re && re <= size && s[rs] == '(' && s[re - 1] == ')');
        size_t k = 0;
        while (k < size && (s[k] == ' ' || (s[k] >= '\t' && s[k] <= '\r')))
            k++;
        (void)k; /* comments may come first: INSERT is checked by the parser */
        sc_bind_plan slice;
        memset(&slice, 0, sizeof slice);
        CHECK(sc_bind_plan_slice(&plans[0], rs, re, &slice) == 0);
        size_t inside = 0;
        for (size_t t = 0; t < plans[0].n; t++)
            if (plans[0].toks[t].kind != SC_TOK_SQL && plans[0].toks[t].start >= rs &&
                plans[0].toks[t].start < re)
                inside++;
        CHECK(slice.nnamed + slice.npositional == inside);
        for (size_t t = 0; t < slice.n; t++) {
            CHECK(slice.toks[t].start >= rs && slice.toks[t].start + slice.toks[t].len <= re);
        }
        sc_bind_plan_free(&slice);
    }
    for (int bits = 0; bits < 8; bits++)
        sc_bind_plan_free(&plans[bits]);
}

/* MariaDB's '...' literal, read by the book: returns the index just past
 * the closing quote, or -1 when it never closes; the value in out. */
static long read_literal(const char *s, size_t n, int no_backslash, char *out, size_t *outlen)
{
    size_t i = 0, o = 0;
    if (n == 0 || s[0] != '\'')
        return -1;
    for (i = 1; i < n;) {
        char c = s[i];
        if (c == '\\' && !no_backslash) {
            if (i + 1 >= n)
                return -1;
            char e = s[i + 1];
            switch (e) {
            case '0': out[o++] = '\0'; break;
            case 'n': out[o++] = '\n'; break;
            case 'r': out[o++] = '\r'; break;
            case 't': out[o++] = '\t'; break;
            case 'b': out[o++] = '\b'; break;
            case 'Z': out[o++] = '\032'; break;
            case '%': out[o++] = '\\'; out[o++] = '%'; break; /* kept for LIKE */
            case '_': out[o++] = '\\'; out[o++] = '_'; break;
            default: out[o++] = e; break;
            }
            i += 2;
        } else if (c == '\'') {
            if (i + 1 < n && s[i + 1] == '\'') {
                out[o++] = '\'';
                i += 2;
            } else {
                *outlen = o;
                return (long)(i + 1);
            }
        } else {
            out[o++] = c;
            i++;
        }
    }
    return -1;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static const char *const intro_of[] = {"_utf8mb4", "_utf8mb3", "_latin1", "_ascii", "_binary"};

/* Whether the bytes are UTF-8 with a 4-byte sequence (sc_utf8_valid says
 * whether they are UTF-8 at all). */
static int has_four(const unsigned char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((s[i] & 0xF8) == 0xF0)
            return 1;
    return 0;
}

static void check_render(const char *data, size_t size, int cs)
{
    const unsigned char *u = (const unsigned char *)data;
    int needs_hex = 0, high = 0;
    for (size_t i = 0; i < size; i++) {
        if (u[i] == '\\' || u[i] < 0x20 || u[i] == 0x7F || (u[i] == '*' && i + 1 < size && u[i + 1] == '/'))
            needs_hex = 1;
        if (u[i] >= 0x80)
            high = 1;
    }
    int utf8 = sc_utf8_valid(data, size);
    int plain_ok = !needs_hex &&
                   (!high || (utf8 && (cs == SC_CS_UTF8MB4 || cs == SC_CS_UTF8MB3 || cs == SC_CS_LATIN1)));

    sc_buf b = {NULL, 0, 0};
    const char *head = "SELECT ";
    const char *tail = ", ?, :n";
    CHECK(sc_buf_add(&b, head, strlen(head)) == 0);
    CHECK(sc_render_string(&b, data, size, cs) == 0);
    size_t lit_end = b.len;
    CHECK(sc_buf_add(&b, tail, strlen(tail)) == 0);
    const char *lit = b.data + strlen(head);
    size_t litlen = lit_end - strlen(head);

    if (plain_ok) {
        CHECK(litlen >= 2 && lit[0] == '\'');
        for (size_t i = 0; i < litlen; i++) {
            unsigned char c = (unsigned char)lit[i];
            CHECK(c != '\\' && c >= 0x20 && c != 0x7F);
            CHECK(!(c == '*' && i + 1 < litlen && lit[i + 1] == '/')); /* ends no C comment */
        }
        char *value = malloc(2 * size + 1);
        CHECK(value != NULL);
        for (int nbe = 0; nbe <= 1; nbe++) {
            size_t vlen = 0;
            long end = read_literal(lit, b.len - strlen(head), nbe, value, &vlen);
            CHECK(end >= 0 && (size_t)end == litlen); /* closes exactly at its end */
            CHECK(vlen == size && (size == 0 || memcmp(value, data, size) == 0));
        }
        free(value);
    } else {
        int want = !utf8 || (cs == SC_CS_UTF8MB3 && has_four(u, size)) ? SC_CS_BINARY : cs;
        size_t il = strlen(intro_of[want]);
        CHECK(litlen == il + 4 + 2 * size);
        CHECK(memcmp(lit, intro_of[want], il) == 0 && memcmp(lit + il, " X'", 3) == 0);
        CHECK(lit[litlen - 1] == '\'');
        for (size_t i = 0; i < size; i++) {
            int hi = hexval(lit[il + 3 + 2 * i]), lo = hexval(lit[il + 4 + 2 * i]);
            CHECK(hi >= 0 && lo >= 0 && (unsigned char)(hi * 16 + lo) == u[i]);
        }
    }

    /* the lexer, in every mode, sees exactly the two placeholders after it */
    for (int bits = 0; bits < 8; bits++) {
        sc_lex_mode m = mode_of(bits);
        sc_bind_plan plan;
        memset(&plan, 0, sizeof plan);
        CHECK(sc_binds_parse(b.data, b.len, &m, &plan) == 0);
        CHECK(plan.npositional == 1 && plan.nnamed == 1);
        CHECK(!(plan.flags & SC_PLAN_MODE_DEPENDENT));
        for (size_t t = 0; t < plan.n; t++)
            if (plan.toks[t].kind != SC_TOK_SQL)
                CHECK(plan.toks[t].start >= lit_end);
        check_plan(b.data, b.len, &plan);
        sc_bind_plan_free(&plan);
    }
    sc_buf_free(&b);
}

static void check_numbers(const uint8_t *data, size_t size)
{
    if (size < 8)
        return;
    double d;
    long long v;
    memcpy(&d, data, 8);
    memcpy(&v, data, 8);
    sc_buf b = {NULL, 0, 0};
    int rc = sc_format_float(&b, d);
    if (!isfinite(d)) {
        CHECK(rc == -1);
    } else {
        CHECK(rc == 0);
        char *s = malloc(b.len + 1);
        CHECK(s != NULL);
        memcpy(s, b.data, b.len);
        s[b.len] = '\0';
        CHECK(strspn(s, "0123456789+-.e") == b.len && strchr(s, 'e') != NULL);
        CHECK(strtod(s, NULL) == d);
        free(s);
    }
    b.len = 0;
    CHECK(sc_format_integer(&b, v) == 0);
    char want[32];
    int n = snprintf(want, sizeof want, "%lld", v);
    CHECK((size_t)n == b.len && memcmp(want, b.data, b.len) == 0);
    sc_buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    check_parse(s, size);
    for (int cs = SC_CS_UTF8MB4; cs <= SC_CS_BINARY; cs++)
        check_render(s, size, cs);
    check_numbers(data, size);
    return 0;
}
