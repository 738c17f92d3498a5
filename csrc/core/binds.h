/* Bind parameters, in plain C so a fuzzer can drive them: finding `:name`
 * and `?` placeholders in a statement with a lexer that follows MariaDB's,
 * and writing values as SQL literals.
 *
 * Values are interpolated client-side (as mysqlclient does for SQLAlchemy):
 * one round trip per statement, where a server-side prepared statement
 * costs two (prepare + execute) unless cached. A string is written so that
 * no sql_mode and no ASCII-compatible charset reads it differently: '...'
 * with quotes doubled when it holds no backslash, no control byte and no
 * star-slash (and
 * no byte >= 0x80 unless it is UTF-8 text on a utf8mb4, utf8mb3 or latin1
 * connection), else a hex literal with an introducer (_utf8mb4 X'...',
 * _binary X'...'). Nothing in it depends on NO_BACKSLASH_ESCAPES or on the
 * status flag the server reports for it. */
#ifndef SCOPED_BINDS_H
#define SCOPED_BINDS_H

#include <stddef.h>

#include "buf.h"

enum { SC_TOK_SQL, SC_TOK_NAMED, SC_TOK_POSITIONAL };

typedef struct sc_bind_token {
    int kind;
    size_t start, len; /* SQL: a slice of the statement; NAMED: the name */
} sc_bind_token;

/* What the server's lexer depends on. */
typedef struct sc_lex_mode {
    int no_backslash;             /* sql_mode has NO_BACKSLASH_ESCAPES */
    int ansi_quotes;              /* sql_mode has ANSI_QUOTES: "..." is a name */
    int latin1;                   /* client charset latin1: "--" then 0xA0 is a comment */
    unsigned long server_version; /* e.g. 101119: which versioned comments run */
} sc_lex_mode;

/* sc_bind_plan.flags */
enum {
    /* a backslash inside '...' or "...": where that run ends, so where the
     * placeholders are, depends on NO_BACKSLASH_ESCAPES and ANSI_QUOTES */
    SC_PLAN_MODE_DEPENDENT = 1,
    /* what the server's charset, if not the one the client knows, would
     * lex differently (only a server that ignores the client's charset
     * could: see sc_conn_ask_lex_mode): a byte >= 0x80 right before a
     * backslash or a backtick (one character in gbk, big5 or sjis), "--"
     * then 0xA0 (a comment in latin1 only) */
    SC_PLAN_CHARSET_DEPENDENT = 2,
};

typedef struct sc_bind_plan {
    sc_bind_token *toks;
    size_t n, cap;
    size_t nnamed, npositional;
    int flags;            /* SC_PLAN_* */
    sc_lex_mode mode;     /* what it was parsed with */
    int rows_known;       /* executemany: rows_start/rows_end computed */
    size_t rows_start, rows_end;
    char *src;            /* the statement this plan was made from */
    size_t srclen, srccap;
} sc_bind_plan;

/* Splits sql into literal slices and placeholders, lexing it as MariaDB
 * does in mode m: '...' (and "..." unless ANSI_QUOTES) are strings where a
 * backslash escapes the next byte unless NO_BACKSLASH_ESCAPES, a doubled
 * quote stands for itself; `...` (and "..." under ANSI_QUOTES) are names;
 * `#` and `--` followed by a space, a control byte or the end (latin1: also
 * 0xA0) start comments ending at a newline; C comments end at the first
 * star-slash; executable comments (slash-star-bang, slash-star-M-bang) are SQL (placeholders in them count)
 * when they have no version or one the server runs (m->server_version),
 * else skipped (one nested C comment allowed inside). In code,
 * `::` stands for a literal ':'; `:name` counts only when not preceded by a
 * word character or a colon (so `a:b` and `x := 1` stay as they are); `?`
 * is positional. Sets plan->flags. Returns 0, or -1 when out of memory.
 * The plan may be reused: parsing the statement it was made from again
 * costs one memcmp when the modes agree or the plan depends on neither
 * NO_BACKSLASH_ESCAPES nor ANSI_QUOTES. */
int sc_binds_parse(const char *sql, size_t len, const sc_lex_mode *m, sc_bind_plan *plan);
void sc_bind_plan_free(sc_bind_plan *plan);

/* For executemany: when sql (lexed in mode m) is INSERT ... VALUES (or
 * VALUE) followed by one or more parenthesised row tuples separated by
 * commas, and after them nothing but comments and a ';', or ON DUPLICATE
 * KEY UPDATE ..., sets [*start, *end) to the tuples (from the first '(' to
 * the last ')') and returns 1; otherwise 0. Only code counts: nothing in a
 * string, a name or a comment. */
int sc_binds_values_rows(const char *sql, size_t len, const sc_lex_mode *m, size_t *start,
                         size_t *end);
/* Copies into dst the tokens of src that lie in [start, end) of the same
 * statement (SQL slices clipped), offsets unchanged. 0, or -1 when out of
 * memory. */
int sc_bind_plan_slice(const sc_bind_plan *src, size_t start, size_t end, sc_bind_plan *dst);

/* Client charsets, as sc_charset_class names them; only the first five
 * are accepted. */
enum { SC_CS_UTF8MB4, SC_CS_UTF8MB3, SC_CS_LATIN1, SC_CS_ASCII, SC_CS_BINARY, SC_CS_UNSAFE };
/* The class of a charset name as Connector/C reports it ("utf8mb4",
 * "utf8", "latin1", ...); SC_CS_UNSAFE for any other (gbk, sjis, ...). */
int sc_charset_class(const char *name);

/* Appends a string literal for a connection whose client charset is of
 * class cs (not SC_CS_UNSAFE):
 *   '...', quotes doubled, when the bytes are 0x20-0x7E without a
 *   backslash or a star-slash, or also bytes >= 0x80 forming valid UTF-8 when cs is
 *   utf8mb4, utf8mb3 or latin1 (what comes back is what was sent, as
 *   before: today's common case costs one scan and a copy);
 *   otherwise <introducer> X'<hex>', the introducer being _binary when the
 *   bytes are not valid UTF-8 (or hold a 4-byte sequence and cs is
 *   utf8mb3, which would refuse it), else the connection's own
 *   (_utf8mb4, _utf8mb3, _latin1, _ascii, _binary): text stays text of
 *   the connection's charset, as a '...' literal would be.
 * Either form reads the same under every sql_mode. Returns 0, or -1 when
 * out of memory. */
int sc_render_string(sc_buf *b, const char *s, size_t len, int cs);
/* Appends a number literal. Floats are written with an exponent so that
 * the server reads a DOUBLE (not a DECIMAL) and the shortest digits that
 * read back as the same double. Returns -1 for inf and nan (SQL has none),
 * -2 when out of memory. */
int sc_format_integer(sc_buf *b, long long v);
int sc_format_float(sc_buf *b, double v);

int sc_utf8_valid(const char *s, size_t len);

#endif
