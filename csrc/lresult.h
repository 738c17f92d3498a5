/* The Result of one statement: every result set stored client-side (so the
 * connection is free again at once and "Commands out of sync" cannot
 * happen), decoded into Lua rows on demand. */
#ifndef SCOPED_LRESULT_H
#define SCOPED_LRESULT_H

#include "lutil.h"

#define SC_RESULT_MT "scoped.Result"

/* Runs the statement already sent on c and pushes a Result holding all its
 * result sets; on error pushes nothing and fills err. */
int sc_result_collect(lua_State *L, sc_conn *c, sc_error *err);
/* Sets the rowcount and lastrowid a Result reports (executemany's totals). */
void sc_result_set_counts(lua_State *L, int idx, long long rowcount, unsigned long long lastrowid);

#endif
