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
    char ctx[WERR_MSG_MAX];
    char old[WERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx, sizeof ctx, fmt, ap);
    va_end(ap);
    memcpy(old, e->msg, sizeof old);
    snprintf(e->msg, sizeof e->msg, "%s: %s", ctx, old);
    return e->code;
}

void werr_clear(struct werr *e)
{
    if (e != NULL) {
        e->code = 0;
        e->msg[0] = '\0';
    }
}
