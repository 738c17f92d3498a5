/* libFuzzer target for the URL parser (csrc/core/url.c, pure C).
 *
 *   make fuzz          runs it (and fuzz_binds) for FUZZ_TIME seconds each
 *   make fuzz-smoke    CI: the committed corpus spec/fuzz/corpus/url plus a
 *                      few seconds of fuzzing
 *
 * Properties, for any bytes:
 *   - no crash, leak, overflow or undefined behaviour (ASan + UBSan);
 *   - on failure: a NUL-terminated message, nothing to free (*out zeroed);
 *   - on success: a mysql or mariadb drivername, a port in 0..65535, every
 *     query parameter passing sc_url_check_param, a host list of 0 or 2..64
 *     hosts whose first is host/port, no ',' in a host, no unix_socket with
 *     several hosts, and a round trip: the URL rendered back (every field
 *     percent-encoded, the hosts as a list in the authority) parses to the
 *     same fields. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "url.h"

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (!(cond)) {                                                               \
            fprintf(stderr, "fuzz_url: property failed: %s (line %d)\n", #cond, __LINE__); \
            abort();                                                                 \
        }                                                                            \
    } while (0)

typedef struct out {
    char *s;
    size_t len, cap;
} out;

static void put(out *o, const char *s, size_t n)
{
    if (o->len + n + 1 > o->cap) {
        o->cap = (o->len + n + 1) * 2;
        o->s = realloc(o->s, o->cap);
        CHECK(o->s != NULL);
    }
    memcpy(o->s + o->len, s, n);
    o->len += n;
    o->s[o->len] = '\0';
}

static void puts_(out *o, const char *s) { put(o, s, strlen(s)); }

static void put_encoded(out *o, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
            c == '.' || c == '_' || c == '~') {
            put(o, s, 1);
        } else {
            char e[3] = {'%', hex[c >> 4], hex[c & 15]};
            put(o, e, 3);
        }
    }
}

static int same(const char *a, const char *b)
{
    if (a == NULL || b == NULL)
        return a == b;
    return strcmp(a, b) == 0;
}

static void check_zero(const sc_url *u)
{
    sc_url z;
    memset(&z, 0, sizeof z);
    CHECK(memcmp(u, &z, sizeof z) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sc_error err;
    sc_url u;
    memset(&err, 'x', sizeof err);
    if (sc_url_parse((const char *)data, size, &u, &err) != 0) {
        CHECK(memchr(err.message, '\0', sizeof err.message) != NULL);
        check_zero(&u);
        return 0;
    }
    CHECK(u.drivername != NULL);
    CHECK(strncmp(u.drivername, "mysql", 5) == 0 || strncmp(u.drivername, "mariadb", 7) == 0);
    CHECK(u.port >= 0 && u.port <= 65535);
    for (int i = 0; i < SC_URL_NPARAMS; i++)
        if (u.params[i] != NULL)
            CHECK(sc_url_check_param(i, u.params[i], &err) == 0);
    CHECK(u.nhosts == 0 || (u.nhosts >= 2 && u.nhosts <= SC_URL_MAX_HOSTS));
    CHECK(u.host == NULL || strchr(u.host, ',') == NULL);
    if (u.nhosts > 0) {
        CHECK(u.params[SC_URL_UNIX_SOCKET] == NULL);
        CHECK(same(u.host, u.hosts[0].host) && u.port == u.hosts[0].port);
        for (int i = 0; i < u.nhosts; i++) {
            CHECK(u.hosts[i].host != NULL && u.hosts[i].host[0] != '\0');
            CHECK(strchr(u.hosts[i].host, ',') == NULL);
            CHECK(u.hosts[i].port >= 0 && u.hosts[i].port <= 65535);
        }
    }

    /* render it back, every field encoded, and parse again */
    out o = {NULL, 0, 0};
    puts_(&o, u.drivername);
    puts_(&o, "://");
    if (u.username != NULL) {
        put_encoded(&o, u.username);
        if (u.password != NULL) {
            puts_(&o, ":");
            put_encoded(&o, u.password);
        }
        puts_(&o, "@");
    }
    for (int i = 0; i < (u.nhosts ? u.nhosts : 1); i++) {
        const char *h = u.nhosts ? u.hosts[i].host : u.host;
        int port = u.nhosts ? u.hosts[i].port : u.port;
        if (i > 0)
            puts_(&o, ",");
        if (h != NULL)
            put_encoded(&o, h);
        if (port != 0) {
            char p[16];
            snprintf(p, sizeof p, ":%d", port);
            puts_(&o, p);
        }
    }
    if (u.database != NULL) {
        puts_(&o, "/");
        put_encoded(&o, u.database);
    }
    int first = 1;
    for (int i = 0; i < SC_URL_NPARAMS; i++) {
        if (u.params[i] == NULL)
            continue;
        puts_(&o, first ? "?" : "&");
        first = 0;
        puts_(&o, sc_url_param_names[i]);
        puts_(&o, "=");
        put_encoded(&o, u.params[i]);
    }
    sc_url v;
    if (sc_url_parse(o.s, o.len, &v, &err) != 0) {
        fprintf(stderr, "fuzz_url: '%s' does not parse again: %s\n", o.s, err.message);
        abort();
    }
    CHECK(same(u.drivername, v.drivername));
    /* a user without a password that renders as "user@" is the same; a
     * password without a user cannot happen */
    CHECK(same(u.username, v.username));
    CHECK(same(u.password, v.password));
    CHECK(same(u.host, v.host));
    CHECK(u.port == v.port);
    CHECK(u.nhosts == v.nhosts);
    for (int i = 0; i < u.nhosts; i++)
        CHECK(same(u.hosts[i].host, v.hosts[i].host) && u.hosts[i].port == v.hosts[i].port);
    CHECK(same(u.database, v.database));
    for (int i = 0; i < SC_URL_NPARAMS; i++)
        CHECK(same(u.params[i], v.params[i]));
    sc_url_free(&v);
    sc_url_free(&u);
    free(o.s);
    return 0;
}
