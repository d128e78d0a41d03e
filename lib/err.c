#include "lib/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *nerr_name(int code)
{
    switch (code) {
    case NERR_OK: return "NERR_OK";
    case NERR_NOMEM: return "NERR_NOMEM";
    case NERR_IO: return "NERR_IO";
    case NERR_CORRUPT: return "NERR_CORRUPT";
    case NERR_INVALID: return "NERR_INVALID";
    case NERR_NOTFOUND: return "NERR_NOTFOUND";
    case NERR_EXISTS: return "NERR_EXISTS";
    case NERR_CONDITION: return "NERR_CONDITION";
    case NERR_TIMEOUT: return "NERR_TIMEOUT";
    case NERR_AUTH: return "NERR_AUTH";
    case NERR_LIMIT: return "NERR_LIMIT";
    case NERR_INTERNAL: return "NERR_INTERNAL";
    case NERR_BUSY: return "NERR_BUSY";
    case NERR_CLOSED: return "NERR_CLOSED";
    case NERR_PARSE: return "NERR_PARSE";
    case NERR_UNSUPPORTED: return "NERR_UNSUPPORTED";
    }
    return "NERR_UNKNOWN";
}

int nerr_set(struct nerr *e, int code, const char *fmt, ...)
{
    if (e) {
        va_list ap;
        va_start(ap, fmt);
        e->code = code;
        vsnprintf(e->msg, sizeof e->msg, fmt, ap);
        va_end(ap);
    }
    return code;
}

int nerr_sys(struct nerr *e, int errno_value, const char *fmt, ...)
{
    if (e) {
        va_list ap;
        va_start(ap, fmt);
        e->code = NERR_IO;
        int n = vsnprintf(e->msg, sizeof e->msg, fmt, ap);
        va_end(ap);
        if (n >= 0 && (size_t)n < sizeof e->msg)
            snprintf(e->msg + n, sizeof e->msg - (size_t)n, ": %s", strerror(errno_value));
    }
    return NERR_IO;
}

void nerr_clear(struct nerr *e)
{
    if (e) {
        e->code = NERR_OK;
        e->msg[0] = '\0';
    }
}
