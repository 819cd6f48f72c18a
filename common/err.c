#include "err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *werr_str(int code)
{
    switch (code) {
    case 0:
        return "ok";
#define WERR_CASE(name, value, text, grpc) \
    case name:                             \
        return text;
        WERR_TABLE(WERR_CASE)
#undef WERR_CASE
    default:
        return "unknown error";
    }
}

int werr_grpc_status(int code)
{
    switch (code) {
    case 0:
        return 0;
#define WERR_CASE(name, value, text, grpc) \
    case name:                             \
        return grpc;
        WERR_TABLE(WERR_CASE)
#undef WERR_CASE
    default:
        return 2; /* UNKNOWN */
    }
}

int werr_set(struct werr *e, int code, const char *fmt, ...)
{
    if (e == NULL) {
        return code;
    }
    va_list ap;
    e->code = code;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    return code;
}

int werr_wrap(struct werr *e, const char *fmt, ...)
{
    if (e == NULL) {
        return WERR_INTERNAL;
    }
    /* Build "<ctx>: <old>" in a scratch buffer, then truncate into msg:
     * the innermost detail is lost first only if the whole chain is long. */
    char buf[2 * WERR_MSG_MAX + 2];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, WERR_MSG_MAX, fmt, ap);
    va_end(ap);
    size_t len = n < 0 ? 0 : ((size_t)n >= WERR_MSG_MAX ? WERR_MSG_MAX - 1 : (size_t)n);
    buf[len++] = ':';
    buf[len++] = ' ';
    size_t old = strnlen(e->msg, sizeof e->msg - 1);
    memcpy(buf + len, e->msg, old);
    len += old;
    if (len >= sizeof e->msg) {
        len = sizeof e->msg - 1;
    }
    memcpy(e->msg, buf, len);
    e->msg[len] = '\0';
    return e->code;
}

void werr_clear(struct werr *e)
{
    if (e != NULL) {
        e->code = 0;
        e->msg[0] = '\0';
    }
}
