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
    "ha_mode", "target_session_attrs", "galera", "deny_timeout",
};

static const char *const ha_modes[] = {"sequential", "round_robin", NULL};
static const char *const session_attrs[] = {"any", "read-write", "read-only", "prefer-read-only", NULL};
static const char *const galera_values[] = {"false", "true", "0", "1", NULL};

static int find_word(const char *const *words, const char *v)
{
    for (int i = 0; words[i]; i++)
        if (strcmp(words[i], v) == 0)
            return i;
    return -1;
}

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
    case SC_URL_WRITE_TIMEOUT:
    case SC_URL_DENY_TIMEOUT: {
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
    case SC_URL_HA_MODE:
        if (find_word(ha_modes, value) >= 0)
            return 0;
        url_error(err, "invalid URL: ha_mode must be sequential or round_robin, got '%.40s'", value);
        return -1;
    case SC_URL_TARGET_SESSION_ATTRS:
        if (find_word(session_attrs, value) >= 0)
            return 0;
        url_error(err,
                  "invalid URL: target_session_attrs must be one of any, read-write, read-only, "
                  "prefer-read-only, got '%.40s'", value);
        return -1;
    case SC_URL_GALERA:
        if (find_word(galera_values, value) >= 0)
            return 0;
        url_error(err, "invalid URL: galera must be true or false, got '%.40s'", value);
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

int sc_url_ha_mode(const sc_url *u)
{
    const char *v = u->params[SC_URL_HA_MODE];
    return v && strcmp(v, "round_robin") == 0 ? SC_HA_ROUND_ROBIN : SC_HA_SEQUENTIAL;
}

int sc_url_target_session_attrs(const sc_url *u)
{
    const char *v = u->params[SC_URL_TARGET_SESSION_ATTRS];
    int i = v ? find_word(session_attrs, v) : -1;
    return i < 0 ? SC_TSA_ANY : i; /* the enum follows session_attrs */
}

int sc_url_galera(const sc_url *u)
{
    const char *v = u->params[SC_URL_GALERA];
    return v != NULL && (strcmp(v, "true") == 0 || strcmp(v, "1") == 0);
}

int sc_url_deny_timeout(const sc_url *u)
{
    const char *v = u->params[SC_URL_DENY_TIMEOUT];
    return v ? atoi(v) : 30;
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
    for (int i = 0; i < u->nhosts; i++)
        free(u->hosts[i].host);
    free(u->hosts);
    memset(u, 0, sizeof *u);
}

int sc_url_check(const sc_url *u, sc_error *err)
{
    if (u->nhosts != 0 && (u->nhosts < 2 || u->nhosts > SC_URL_MAX_HOSTS || u->hosts == NULL)) {
        url_error(err, "invalid URL: from 2 to %d hosts in a host list", SC_URL_MAX_HOSTS);
        return -1;
    }
    if (u->nhosts > 1 && u->params[SC_URL_UNIX_SOCKET] != NULL) {
        url_error(err, "invalid URL: unix_socket cannot be given with several hosts");
        return -1;
    }
    if (u->host != NULL && strchr(u->host, ',') != NULL) {
        url_error(err, "invalid URL: a host name cannot contain ','");
        return -1;
    }
    for (int i = 0; i < u->nhosts; i++) {
        if (u->hosts[i].host == NULL || u->hosts[i].host[0] == '\0') {
            url_error(err, "invalid URL: empty host in the host list");
            return -1;
        }
        if (strchr(u->hosts[i].host, ',') != NULL) {
            url_error(err, "invalid URL: a host name cannot contain ','");
            return -1;
        }
        if (u->hosts[i].port < 0 || u->hosts[i].port > 65535) {
            url_error(err, "invalid URL: the port is not a number from 1 to 65535");
            return -1;
        }
    }
    return 0;
}

/* s[0..n) as a port: never echoed (it may be a password whose '@host' was
 * left out: "mysql://user:secret/db", "mysql://user:123456/db"). */
static int parse_port(const char *s, size_t n, int *port, sc_error *err)
{
    long v = 0;
    if (n == 0) {
        url_error(err, "invalid URL: empty port");
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9' || v > 65535) {
            v = -1;
            break;
        }
        v = v * 10 + (s[i] - '0');
    }
    if (v <= 0 || v > 65535) {
        url_error(err, "invalid URL: the port is not a number from 1 to 65535");
        return -1;
    }
    *port = (int)v;
    return 0;
}

/* One host[:port] of s[0..n): "[v6]", "[v6]:port", "name", "name:port";
 * with bare_v6, a bare name with several ':' is an IPv6 address (a ?host=
 * value). The host is percent-decoded when decode_it, else copied. An
 * empty host leaves out->host NULL (a lone ":port" in the authority). */
static int parse_host_item(const char *s, size_t n, int decode_it, int bare_v6, sc_url_host *out,
                           sc_error *err)
{
    const char *end = s + n, *h = s, *hend, *rest;
    out->host = NULL;
    out->port = 0;
    if (n > 0 && *s == '[') {
        const char *rb = memchr(s, ']', n);
        if (rb == NULL) {
            url_error(err, "invalid URL: unterminated '[' in the host");
            return -1;
        }
        if (rb == s + 1) {
            /* "[]" would make an empty host where a left-out one is NULL */
            url_error(err, "invalid URL: empty '[]' host");
            return -1;
        }
        h = s + 1;
        hend = rb;
        rest = rb + 1;
    } else {
        const char *colon = memchr(s, ':', n);
        if (bare_v6 && colon != NULL && memchr(colon + 1, ':', (size_t)(end - colon - 1)) != NULL)
            colon = NULL; /* "fd00::1": an address, no port */
        hend = colon ? colon : end;
        rest = hend;
    }
    if (rest < end && *rest != ':') {
        url_error(err, "invalid URL: unexpected text after the host");
        return -1;
    }
    if (rest < end && parse_port(rest + 1, (size_t)(end - rest - 1), &out->port, err) != 0)
        return -1;
    if (hend > h) {
        if (decode_it) {
            out->host = decode(h, (size_t)(hend - h), "host", err);
        } else {
            out->host = malloc((size_t)(hend - h) + 1);
            if (out->host == NULL) {
                url_error(err, "out of memory");
            } else {
                memcpy(out->host, h, (size_t)(hend - h));
                out->host[hend - h] = '\0';
            }
        }
        if (out->host == NULL)
            return -1;
    }
    return 0;
}

int sc_url_parse_host(const char *s, size_t len, sc_url_host *out, sc_error *err)
{
    if (memchr(s, '\0', len) != NULL) {
        url_error(err, "invalid URL: the host contains a NUL byte");
        return -1;
    }
    if (parse_host_item(s, len, 0, 1, out, err) != 0)
        return -1;
    if (out->host == NULL) {
        url_error(err, "invalid URL: empty host in the host list");
        return -1;
    }
    return 0;
}

/* Appends h to the list being built in u->hosts (u->nhosts long; capacity
 * SC_URL_MAX_HOSTS, allocated on the first). Takes h->host over, also on
 * failure. */
static int add_host(sc_url *u, sc_url_host *h, sc_error *err)
{
    if (u->hosts == NULL && (u->hosts = calloc(SC_URL_MAX_HOSTS, sizeof *u->hosts)) == NULL) {
        free(h->host);
        url_error(err, "out of memory");
        return -1;
    }
    if (u->nhosts == SC_URL_MAX_HOSTS) {
        free(h->host);
        url_error(err, "invalid URL: more than %d hosts", SC_URL_MAX_HOSTS);
        return -1;
    }
    u->hosts[u->nhosts++] = *h;
    return 0;
}

static const char *memfind(const char *s, const char *end, const char *set)
{
    for (; s < end; s++)
        if (strchr(set, *s) != NULL && *s != '\0')
            return s;
    return end;
}

static int parse_query(const char *q, const char *end, sc_url *u, int *nhosts, sc_error *err)
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
        if (strcmp(key, "host") == 0) {
            free(key);
            char *val = decode(eq + 1, (size_t)(amp - eq - 1), "host", err);
            if (val == NULL)
                return -1;
            sc_url_host h;
            int rc = sc_url_parse_host(val, strlen(val), &h, err);
            free(val);
            if (rc != 0 || add_host(u, &h, err) != 0)
                return -1;
            ++*nhosts;
            q = amp;
            continue;
        }
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

    /* hosts: a comma-separated list of [ipv6][:port] or name[:port], up to
     * the first '/' or '?'; a ',' inside brackets is part of the address */
    const char *auth_end = memfind(p, end, "/?");
    sc_url_host first = {NULL, 0};
    int nitems = 0;
    while (1) {
        const char *item = p;
        int depth = 0;
        while (p < auth_end && (depth || *p != ',')) {
            if (*p == '[')
                depth = 1;
            else if (*p == ']')
                depth = 0;
            p++;
        }
        sc_url_host h;
        if (parse_host_item(item, (size_t)(p - item), 1, 0, &h, err) != 0)
            goto fail_host;
        if (++nitems == 1) {
            first = h;
        } else {
            if ((nitems == 2 && first.host == NULL) || h.host == NULL) {
                free(h.host);
                url_error(err, "invalid URL: empty host in the host list");
                goto fail_host;
            }
            if (nitems == 2) {
                sc_url_host f = first;
                first.host = NULL;
                if (add_host(&u, &f, err) != 0) {
                    free(h.host);
                    goto fail;
                }
            }
            if (add_host(&u, &h, err) != 0)
                goto fail;
        }
        if (p == auth_end)
            break;
        p++; /* the ',' */
    }
    if (nitems == 1) {
        u.host = first.host;
        u.port = first.port;
        first.host = NULL;
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
        int in_authority = u.nhosts > 0 || u.host != NULL || u.port != 0, in_query = 0;
        if (parse_query(p + 1, end, &u, &in_query, err) != 0)
            goto fail;
        if (in_query > 0 && in_authority) {
            url_error(err, "invalid URL: give the hosts either in the authority or as ?host=, not both");
            goto fail;
        }
        if (in_query == 1) {
            u.host = u.hosts[0].host;
            u.port = u.hosts[0].port;
            free(u.hosts);
            u.hosts = NULL;
            u.nhosts = 0;
        }
        p = end;
    }
    if (u.nhosts > 1) {
        u.port = u.hosts[0].port;
        if ((u.host = strdup(u.hosts[0].host)) == NULL)
            goto oom;
    }
    if (sc_url_check(&u, err) != 0)
        goto fail;
    if (p != end) {
        url_error(err, "invalid URL: unexpected text after the host");
        goto fail;
    }
    *out = u;
    return 0;
oom:
    url_error(err, "out of memory");
    goto fail;
fail_host:
    free(first.host);
fail:
    sc_url_free(&u);
    return -1;
}
