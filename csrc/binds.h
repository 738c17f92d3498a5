/* Bind parameters, in plain C so a fuzzer can drive them: finding `:name`
 * and `?` placeholders in a statement, and writing values as SQL literals.
 *
 * Values are interpolated client-side, escaped for the connection (as
 * mysqlclient does for SQLAlchemy): one round trip per statement, where a
 * server-side prepared statement costs two (prepare + execute) unless cached.
 * Escaping is only safe for charsets in which no multibyte character holds
 * an ASCII byte (utf8mb4, utf8mb3, latin1, ascii, binary): the connection
 * refuses others. */
#ifndef SCOPED_BINDS_H
#define SCOPED_BINDS_H

#include <stddef.h>

#include "buf.h"

enum { SC_TOK_SQL, SC_TOK_NAMED, SC_TOK_POSITIONAL };

typedef struct sc_bind_token {
    int kind;
    size_t start, len; /* SQL: a slice of the statement; NAMED: the name */
} sc_bind_token;

typedef struct sc_bind_plan {
    sc_bind_token *toks;
    size_t n, cap;
    size_t nnamed, npositional;
    char *src;            /* the statement this plan was made from */
    size_t srclen, srccap;
} sc_bind_plan;

/* Splits sql into literal slices and placeholders. Text inside '...', "...",
 * `...`, -- and # comments and slash-star comments holds no placeholder;
 * `::` stands for a literal ':'; `:name` counts only when not preceded by a
 * word character or a colon (so `a:b` and `x := 1` stay as they are).
 * Returns 0, or -1 when out of memory. The plan may be reused: parsing the
 * statement it was made from again costs one memcmp (a loop of the same
 * INSERT is the common case). */
int sc_binds_parse(const char *sql, size_t len, sc_bind_plan *plan);
void sc_bind_plan_free(sc_bind_plan *plan);

/* Appends a string literal: '...' escaped, or _binary'...' when the bytes
 * are not valid UTF-8 (so a BLOB round-trips on a utf8mb4 connection).
 * no_backslash: the server runs with NO_BACKSLASH_ESCAPES, where only a
 * doubled quote escapes. Returns 0, or -1 when out of memory. */
int sc_escape_string(sc_buf *b, const char *s, size_t len, int no_backslash);
/* Appends a number literal. Floats are written with an exponent so that
 * the server reads a DOUBLE (not a DECIMAL) and the shortest digits that
 * read back as the same double. Returns -1 for inf and nan (SQL has none),
 * -2 when out of memory. */
int sc_format_integer(sc_buf *b, long long v);
int sc_format_float(sc_buf *b, double v);

int sc_utf8_valid(const char *s, size_t len);

#endif
