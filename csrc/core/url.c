#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chars.h"
#include "url.h"

/* A URL's errors are our own (code 0): the binding raises their text as an
 * ArgumentError. */
#define url_error(err, ...) sc_error_set((err), 0, "HY000", __VA_ARGS__)

const char *const sc_url_param_names[SC_URL_NPARAMS] = {
    "charset", "unix_socket", "connect_timeout", "read_timeout", "write_timeout",
    "ssl_ca", "ssl_cert", "ssl_key", "ssl_mode", "init_command",
};

static const char *const ssl_modes[] = {
    "DISABLED", "PREFERRED", "REQUIRED", "VERIFY_CA", "VERIFY_IDENTITY", NULL,
};

int sc_url_param_index(const char *name)
{
    for (int i = 0; i < SC_URL_NPARAMS; i++)
        if (strcmp(name, sc_url_param_names[i]) == 0)
            return i;
    return -1;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Percent-decodes s[0..n) into a new NUL-terminated string. A NUL byte in
 * the result is refused: every consumer is a C string API. */
static char *decode(const char *s, size_t n, const char *what, sc_error *err)
{
    char *out = malloc(n + 1);
    size_t j = 0;
    if (out == NULL) {
        url_error(err, "out of memory");
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%') {
            int hi = i + 1 < n ? hexval((unsigned char)s[i + 1]) : -1;
            int lo = i + 2 < n ? hexval((unsigned char)s[i + 2]) : -1;
            if (hi < 0 || lo < 0) {
                url_error(err, "invalid URL: bad percent-escape in the %s", what);
                free(out);
                return NULL;
            }
            out[j] = (char)(hi * 16 + lo);
            i += 2;
        } else {
            out[j] = s[i];
        }
        if (out[j] == '\0') {
            url_error(err, "invalid URL: the %s contains a NUL byte", what);
            free(out);
            return NULL;
        }
        j++;
    }
    out[j] = '\0';
    return out;
}

int sc_url_check_param(int which, const char *value, sc_error *err)
{
    switch (which) {
    case SC_URL_CONNECT_TIMEOUT:
    case SC_URL_READ_TIMEOUT:
    case SC_URL_WRITE_TIMEOUT: {
        const char *p = value;
        long v = 0;
        if (*p == '\0')
            goto bad_number;
        for (; *p; p++) {
            if (*p < '0' || *p > '9')
                goto bad_number;
            v = v * 10 + (*p - '0');
            if (v > 31536000)
                goto bad_number;
        }
        return 0;
    bad_number:
        url_error(err, "invalid URL: %s must be a whole number of seconds, got '%.40s'",
                 sc_url_param_names[which], value);
        return -1;
    }
    case SC_URL_SSL_MODE:
        for (int i = 0; ssl_modes[i]; i++)
            if (strcmp(value, ssl_modes[i]) == 0)
                return 0;
        url_error(err,
                 "invalid URL: ssl_mode must be one of DISABLED, PREFERRED, REQUIRED, "
                 "VERIFY_CA, VERIFY_IDENTITY, got '%.40s'", value);
        return -1;
    case SC_URL_CHARSET:
        for (const char *p = value; *p; p++)
            if (!sc_word_char((unsigned char)*p)) {
                url_error(err, "invalid URL: bad charset name '%.40s'", value);
                return -1;
            }
        return 0;
    default:
        return 0;
    }
}

void sc_url_free(sc_url *u)
{
    free(u->drivername);
    free(u->username);
    free(u->password);
    free(u->host);
    free(u->database);
    for (int i = 0; i < SC_URL_NPARAMS; i++)
        free(u->params[i]);
    memset(u, 0, sizeof *u);
}

static const char *memfind(const char *s, const char *end, const char *set)
{
    for (; s < end; s++)
        if (strchr(set, *s) != NULL && *s != '\0')
            return s;
    return end;
}

static int parse_query(const char *q, const char *end, sc_url *u, sc_error *err)
{
    while (q < end) {
        const char *amp = memfind(q, end, "&");
        const char *eq = memfind(q, amp, "=");
        if (amp == q) { /* tolerate "a=1&&b=2" and a trailing '&' */
            q++;
            continue;
        }
        if (eq == amp) {
            url_error(err, "invalid URL: query parameter '%.*s' has no value",
                     (int)(amp - q > 40 ? 40 : amp - q), q);
            return -1;
        }
        char *key = decode(q, (size_t)(eq - q), "query", err);
        if (key == NULL)
            return -1;
        int which = sc_url_param_index(key);
        if (which < 0) {
            url_error(err, "invalid URL: unknown query parameter '%.40s'", key);
            free(key);
            return -1;
        }
        free(key);
        if (u->params[which] != NULL) {
            url_error(err, "invalid URL: query parameter '%s' given twice",
                     sc_url_param_names[which]);
            return -1;
        }
        char *val = decode(eq + 1, (size_t)(amp - eq - 1), "query", err);
        if (val == NULL)
            return -1;
        u->params[which] = val;
        if (sc_url_check_param(which, val, err) != 0)
            return -1;
        q = amp;
    }
    return 0;
}

int sc_url_parse(const char *s, size_t len, sc_url *out, sc_error *err)
{
    const char *end = s + len, *p = s;
    sc_url u;
    memset(&u, 0, sizeof u);
    memset(out, 0, sizeof *out);
    if (memchr(s, '\0', len) != NULL) {
        url_error(err, "invalid URL: it contains a NUL byte");
        return -1;
    }

    /* scheme: mysql | mariadb, optionally +driver (ignored, as the seed's
     * mysql+pymysql:// must parse as is) */
    while (p < end && (sc_word_char((unsigned char)*p) || *p == '+'))
        p++;
    if (end - p < 3 || memcmp(p, "://", 3) != 0 || p == s) {
        url_error(err, "invalid URL: expected 'mysql://...' or 'mariadb://...'");
        return -1;
    }
    size_t dlen = (size_t)(p - s);
    size_t base = dlen;
    const char *plus = memchr(s, '+', dlen);
    if (plus != NULL)
        base = (size_t)(plus - s);
    if (!((base == 5 && memcmp(s, "mysql", 5) == 0) || (base == 7 && memcmp(s, "mariadb", 7) == 0))) {
        url_error(err, "invalid URL: unsupported dialect '%.*s' (use mysql:// or mariadb://)",
                 (int)(base > 40 ? 40 : base), s);
        return -1;
    }
    if (plus != NULL && (memchr(plus + 1, '+', dlen - base - 1) != NULL || base + 1 == dlen)) {
        url_error(err, "invalid URL: bad driver name in the scheme");
        return -1;
    }
    u.drivername = malloc(dlen + 1);
    if (u.drivername == NULL)
        goto oom;
    memcpy(u.drivername, s, dlen);
    u.drivername[dlen] = '\0';
    p += 3;

    /* user[:password]@ — the user stops at ':' or '/'; the password runs
     * to the last '@' before the host's end (the first '/' or '?' after the
     * first '@'): an '@' left unescaped in a password (it should be written
     * %40) then stays in the password instead of putting the password's
     * tail into the host, where tostring(url) and errors would show it */
    const char *q = p;
    while (q < end && *q != ':' && *q != '/' && *q != '@')
        q++;
    const char *at = NULL, *colon = NULL;
    if (q < end && *q == '@') {
        at = q;
    } else if (q < end && *q == ':') {
        const char *r = memchr(q, '@', (size_t)(end - q));
        if (r != NULL) {
            colon = q;
            at = r;
            const char *host_end = memfind(r + 1, end, "/?");
            for (const char *t = r + 1; t < host_end; t++)
                if (*t == '@')
                    at = t;
        }
    }
    if (at != NULL) {
        u.username = decode(p, (size_t)((colon ? colon : at) - p), "user name", err);
        if (u.username == NULL)
            goto fail;
        if (colon != NULL) {
            u.password = decode(colon + 1, (size_t)(at - colon - 1), "password", err);
            if (u.password == NULL)
                goto fail;
        }
        p = at + 1;
    }

    /* host: [ipv6] or a name up to ':', '/' or '?' */
    if (p < end && *p == '[') {
        const char *rb = memfind(p, end, "]");
        if (rb == end) {
            url_error(err, "invalid URL: unterminated '[' in the host");
            goto fail;
        }
        if (rb == p + 1) {
            /* "[]" would make an empty host where a left-out one is NULL */
            url_error(err, "invalid URL: empty '[]' host");
            goto fail;
        }
        u.host = decode(p + 1, (size_t)(rb - p - 1), "host", err);
        if (u.host == NULL)
            goto fail;
        p = rb + 1;
    } else {
        q = memfind(p, end, ":/?");
        if (q > p) {
            u.host = decode(p, (size_t)(q - p), "host", err);
            if (u.host == NULL)
                goto fail;
        }
        p = q;
    }
    if (p < end && *p == ':') {
        long port = 0;
        p++;
        q = memfind(p, end, "/?");
        if (q == p) {
            url_error(err, "invalid URL: empty port");
            goto fail;
        }
        for (const char *r = p; r < q; r++) {
            if (*r < '0' || *r > '9' || port > 65535) {
                port = -1;
                break;
            }
            port = port * 10 + (*r - '0');
        }
        if (port == -1) {
            /* not digits: never echo it, it may be a password whose '@host'
             * was left out ("mysql://user:secret/db") */
            url_error(err, "invalid URL: the port is not a number from 1 to 65535");
            goto fail;
        }
        if (port <= 0 || port > 65535) {
            /* digits, but never echoed either: a password of digits whose
             * '@host' was left out ("mysql://user:123456/db") lands here */
            url_error(err, "invalid URL: the port is not a number from 1 to 65535");
            goto fail;
        }
        u.port = (int)port;
        p = q;
    }
    if (p < end && *p == '/') {
        p++;
        q = memfind(p, end, "?");
        if (q > p) {
            u.database = decode(p, (size_t)(q - p), "database", err);
            if (u.database == NULL)
                goto fail;
        }
        p = q;
    }
    if (p < end && *p == '?') {
        if (parse_query(p + 1, end, &u, err) != 0)
            goto fail;
        p = end;
    }
    if (p != end) {
        url_error(err, "invalid URL: unexpected text after the host");
        goto fail;
    }
    *out = u;
    return 0;
oom:
    url_error(err, "out of memory");
fail:
    sc_url_free(&u);
    return -1;
}
