/* The Result of one statement: every row of every result set read and
 * decoded into Lua before execute returns (so the connection is free
 * again at once, "Commands out of sync" cannot happen, and the Result holds
 * no C resource: it has no finalizer). */
#ifndef SCOPED_LRESULT_H
#define SCOPED_LRESULT_H

#include "lutil.h"

#define SC_RESULT_MT "scoped.Result"

/* How the cells of a column are decoded from the server's text. */
enum { SC_KIND_INT, SC_KIND_UINT, SC_KIND_FLOAT, SC_KIND_STRING };

/* One column of a result set as the row builder takes it: what names the
 * rows' fields and how its cells are decoded. Made from a MYSQL_FIELD when
 * rows are read off a connection, from a name alone when they were decoded
 * elsewhere (core.result_from_tables: the offload path). Either way the
 * Result, its row metatables and its errors come from lresult.c. */
typedef struct scl_column {
    const char *name;
    size_t name_length;
    unsigned char kind; /* SC_KIND_* */
} scl_column;

/* Reads every result of the statement already sent on c and pushes a
 * Result holding all its rows; on error pushes nothing and fills err. */
int scl_result_collect(lua_State *L, sc_conn *c, sc_error *err);
/* Sets the rowcount and lastrowid a Result reports (executemany's totals). */
void scl_result_set_counts(lua_State *L, int idx, long long rowcount, unsigned long long lastrowid);

#endif
