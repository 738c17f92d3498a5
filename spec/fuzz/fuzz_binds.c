/* libFuzzer target for the bind parser and the escaper (csrc/binds.c,
 * csrc/buf.c, pure C).
 *
 * Properties, for any bytes:
 *   - sc_binds_parse: tokens in order, inside the input, each placeholder
 *     what it claims to be (":name" of ASCII word characters, "?"), the
 *     bytes between tokens only the dropped half of a "::";
 *   - sc_escape_string, in both modes (backslash escapes, and
 *     NO_BACKSLASH_ESCAPES): a reference unescaper written from MySQL's
 *     string-literal grammar reads the literal back to exactly the input,
 *     and the literal ends exactly where the escaper says it does -- no
 *     input can close the quote early and change the statement's structure;
 *     _binary'...' exactly when the bytes are not valid UTF-8;
 *   - in backslash mode, sc_binds_parse run over "SELECT <literal>, ?, :n"
 *     sees exactly the two placeholders after the literal, none inside it;
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

static int word_ascii(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
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

/* MySQL's string literal, read by the book: returns the index just past the
 * closing quote, or -1 when the literal never closes; the value in out. */
static long read_literal(const char *s, size_t n, int no_backslash, char *out, size_t *outlen,
                         int *binary)
{
    size_t i = 0, o = 0;
    *binary = 0;
    if (n >= 7 && memcmp(s, "_binary", 7) == 0) {
        *binary = 1;
        i = 7;
    }
    if (i >= n || s[i] != '\'')
        return -1;
    for (i++; i < n;) {
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

static void check_escape(const char *data, size_t size, int no_backslash)
{
    sc_buf b = {NULL, 0, 0};
    const char *head = "SELECT ";
    const char *tail = ", ?, :n";
    CHECK(sc_buf_add(&b, head, strlen(head)) == 0);
    CHECK(sc_escape_string(&b, data, size, no_backslash) == 0);
    size_t lit_end = b.len;
    CHECK(sc_buf_add(&b, tail, strlen(tail)) == 0);

    const char *lit = b.data + strlen(head);
    size_t avail = b.len - strlen(head); /* the literal and everything after it */
    char *value = malloc(2 * size + 1);
    size_t vlen = 0;
    int binary;
    CHECK(value != NULL);
    long end = read_literal(lit, avail, no_backslash, value, &vlen, &binary);
    CHECK(end >= 0);                                         /* it closes... */
    CHECK((size_t)end == lit_end - strlen(head));             /* ...exactly where it should */
    CHECK(vlen == size && (size == 0 || memcmp(value, data, size) == 0)); /* the same bytes */
    CHECK(binary == !sc_utf8_valid(data, size));
    free(value);

    if (!no_backslash) {
        /* the bind parser agrees: no placeholder inside the value */
        sc_bind_plan plan = {NULL, 0, 0, 0, 0};
        CHECK(sc_binds_parse(b.data, b.len, &plan) == 0);
        CHECK(plan.npositional == 1 && plan.nnamed == 1);
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
    sc_bind_plan plan = {NULL, 0, 0, 0, 0};
    CHECK(sc_binds_parse(s, size, &plan) == 0);
    check_plan(s, size, &plan);
    sc_bind_plan_free(&plan);
    check_escape(s, size, 0);
    check_escape(s, size, 1);
    check_numbers(data, size);
    return 0;
}
