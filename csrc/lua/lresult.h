/* The Result of one statement: every row of every result set read and
 * decoded into Lua before execute returns (so the connection is free
 * again at once, "Commands out of sync" cannot happen, and the Result holds
 * no C resource: it has no finalizer). */
#ifndef SCOPED_LRESULT_H
#define SCOPED_LRESULT_H

#include "lutil.h"

#define SC_RESULT_MT "scoped.Result"

/* Reads every result of the statement already sent on c and pushes a
 * Result holding all its rows; on error pushes nothing and fills err. */
int sc_result_collect(lua_State *L, sc_conn *c, sc_error *err);
/* Sets the rowcount and lastrowid a Result reports (executemany's totals). */
void sc_result_set_counts(lua_State *L, int idx, long long rowcount, unsigned long long lastrowid);

#endif
