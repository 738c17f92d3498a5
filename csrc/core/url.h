/* Database URLs as SQLAlchemy writes them, parsed in plain C (no Lua) so a
 * fuzzer can drive the parser directly:
 *   mysql[+driver]://[user[:password]@][host][:port][/database][?k=v&...]
 *   mariadb[+driver]://...
 * User, password, database and query values are percent-decoded. */
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
    SC_URL_NPARAMS
};

extern const char *const sc_url_param_names[SC_URL_NPARAMS];

typedef struct sc_url {
    char *drivername; /* "mysql", "mysql+pymysql", "mariadb", ... */
    char *username;   /* NULL when absent */
    char *password;   /* NULL when absent */
    char *host;       /* NULL when absent (then a unix socket is used) */
    int port;         /* 0 when absent */
    char *database;   /* NULL when absent */
    char *params[SC_URL_NPARAMS]; /* NULL when absent */
} sc_url;

/* Returns 0 on success; otherwise -1 with err->message naming what is wrong
 * (never the password). On failure *out holds nothing to free. */
int sc_url_parse(const char *s, size_t len, sc_url *out, sc_error *err);
/* Checks one query parameter's value (used for connect_args too). */
int sc_url_check_param(int which, const char *value, sc_error *err);
int sc_url_param_index(const char *name);
void sc_url_free(sc_url *u);

#endif
