#include <stdarg.h>
#include <stdio.h>

#include "error.h"

void sc_error_set(sc_error *e, unsigned code, const char *sqlstate, const char *fmt, ...)
{
    if (e == NULL)
        return;
    e->code = code;
    snprintf(e->sqlstate, sizeof e->sqlstate, "%s", sqlstate);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
}
