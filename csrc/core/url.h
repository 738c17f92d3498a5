/* Database URLs as SQLAlchemy writes them, parsed in plain C (no Lua) so a
 * fuzzer can drive the parser directly:
 *   mysql[+driver]://[user[:password]@][host][:port][/database][?k=v&...]
 *   mariadb[+driver]://...
 * User, password, host, database and query values are percent-decoded.
 * Several hosts (issue 21) are a comma-separated list in the authority,
 *   mysql://u:p@db1:3306,db2,[fd00::1]:3306/shop
 * or repeated ?host=h[:port] parameters (SQLAlchemy's psycopg2 form), never
 * both; each host with its own port (0: the default). */
#ifndef SCOPED_URL_H
#define SCOPED_URL_H

#include <stddef.h>

#include "error.h"

/* Query parameters a URL may carry; anything else is refused. */
enum {
    SC_URL_CHARSET,
    SC_URL_UNIX_SOCKET,
    SC_URL_CONNECT_TIMEOUT,
    SC_URL_READ_TIMEOUT,
    SC_URL_WRITE_TIMEOUT,
    SC_URL_SSL_CA,
    SC_URL_SSL_CERT,
    SC_URL_SSL_KEY,
    SC_URL_SSL_MODE,
    SC_URL_INIT_COMMAND,
    SC_URL_HA_MODE,              /* sequential | round_robin */
    SC_URL_TARGET_SESSION_ATTRS, /* any | read-write | read-only | prefer-read-only */
    SC_URL_GALERA,               /* true | false (also 1 | 0) */
    SC_URL_DENY_TIMEOUT,         /* whole seconds a failed host is passed over (30) */
    SC_URL_NPARAMS
};

extern const char *const sc_url_param_names[SC_URL_NPARAMS];

/* At most this many hosts in one URL. */
#define SC_URL_MAX_HOSTS 64

typedef struct sc_url_host {
    char *host; /* never NULL */
    int port;   /* 0 when absent */
} sc_url_host;

typedef struct sc_url {
    char *drivername; /* "mysql", "mysql+pymysql", "mariadb", ... */
    char *username;   /* NULL when absent */
    char *password;   /* NULL when absent */
    char *host;       /* NULL when absent (then a unix socket is used); with
                       * several hosts, a copy of the first one's */
    int port;         /* 0 when absent; with several hosts, the first one's */
    char *database;   /* NULL when absent */
    char *params[SC_URL_NPARAMS]; /* NULL when absent */
    sc_url_host *hosts; /* NULL with one host or none; else all nhosts of them */
    int nhosts;         /* 0, or 2..SC_URL_MAX_HOSTS */
} sc_url;

/* Returns 0 on success; otherwise -1 with err->message naming what is wrong
 * (never the password). On failure *out holds nothing to free. */
int sc_url_parse(const char *s, size_t len, sc_url *out, sc_error *err);
/* Checks one query parameter's value (used for connect_args too). */
int sc_url_check_param(int which, const char *value, sc_error *err);
int sc_url_param_index(const char *name);
/* Checks what involves several fields (unix_socket with several hosts, a
 * host name with a ',' in it); sc_url_parse runs it, the binding runs it on
 * URL tables. */
int sc_url_check(const sc_url *u, sc_error *err);
/* Parses one "host", "host:port", "[v6]" or "[v6]:port" (already decoded:
 * a ?host= value, or an element of a URL table's host list); a bare name
 * with several ':' is an IPv6 address without a port. out->host is new. */
int sc_url_parse_host(const char *s, size_t len, sc_url_host *out, sc_error *err);
/* The numeric value of the option (ha_mode, target_session_attrs, galera,
 * deny_timeout) in u, its default when absent; values are checked already. */
enum { SC_HA_SEQUENTIAL, SC_HA_ROUND_ROBIN };
enum { SC_TSA_ANY, SC_TSA_READ_WRITE, SC_TSA_READ_ONLY, SC_TSA_PREFER_READ_ONLY };
int sc_url_ha_mode(const sc_url *u);
int sc_url_target_session_attrs(const sc_url *u);
int sc_url_galera(const sc_url *u);
int sc_url_deny_timeout(const sc_url *u);
void sc_url_free(sc_url *u);

#endif
