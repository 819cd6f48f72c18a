/* err.h - warden's project-wide error codes.
 *
 * Every function that can fail returns 0 or a negative WERR_* code. Codes
 * coming from errno, LMDB, OpenSSL and nghttp2 are translated where they
 * enter (storage/, server/, grpc/), never passed through raw. Mapping to a
 * gRPC status happens only in the server layer (see werr_grpc_status()).
 *
 * A struct werr carries a code plus a message with context; each layer may
 * prefix its own context with werr_wrap() as the error rises, the way
 * canonical/raft builds its errmsg. */
#ifndef WARDEN_COMMON_ERR_H
#define WARDEN_COMMON_ERR_H

#include <stddef.h>

/* X(name, value, text, grpc_status) */
#define WERR_TABLE(X)                                                          \
    X(WERR_NOMEM, -1, "out of memory", 8 /* RESOURCE_EXHAUSTED */)            \
    X(WERR_INVALID, -2, "invalid argument", 3 /* INVALID_ARGUMENT */)         \
    X(WERR_NOTFOUND, -3, "not found", 5 /* NOT_FOUND */)                      \
    X(WERR_EXISTS, -4, "already exists", 6 /* ALREADY_EXISTS */)              \
    X(WERR_IO, -5, "I/O error", 13 /* INTERNAL */)                            \
    X(WERR_CORRUPT, -6, "data corruption detected", 15 /* DATA_LOSS */)       \
    X(WERR_FULL, -7, "storage full", 8 /* RESOURCE_EXHAUSTED */)              \
    X(WERR_LIMIT, -8, "limit exceeded", 8 /* RESOURCE_EXHAUSTED */)           \
    X(WERR_PROTO, -9, "protocol error", 3 /* INVALID_ARGUMENT */)             \
    X(WERR_TLS, -10, "TLS error", 14 /* UNAVAILABLE */)                       \
    X(WERR_PERM, -11, "permission denied", 7 /* PERMISSION_DENIED */)         \
    X(WERR_PRECOND, -12, "failed precondition", 9 /* FAILED_PRECONDITION */)  \
    X(WERR_UNAVAIL, -13, "unavailable", 14 /* UNAVAILABLE */)                 \
    X(WERR_DEADLINE, -14, "deadline exceeded", 4 /* DEADLINE_EXCEEDED */)     \
    X(WERR_INTERNAL, -15, "internal error", 13 /* INTERNAL */)                \
    X(WERR_UNSUPPORTED, -16, "unsupported", 12 /* UNIMPLEMENTED */)           \
    X(WERR_CANCELLED, -17, "cancelled", 1 /* CANCELLED */)                    \
    X(WERR_CONFIG, -18, "configuration error", 3 /* INVALID_ARGUMENT */)      \
    X(WERR_BUSY, -19, "busy", 14 /* UNAVAILABLE */)                           \
    X(WERR_ABORTED, -20, "aborted", 10 /* ABORTED */)                         \
    X(WERR_RANGE, -21, "out of range", 11 /* OUT_OF_RANGE */)

enum werr_code {
#define WERR_ENUM(name, value, text, grpc) name = value,
    WERR_TABLE(WERR_ENUM)
#undef WERR_ENUM
    WERR_OK = 0
};

/* Longest error message kept, including context added by every layer. */
#define WERR_MSG_MAX 256

struct werr {
    int code;                 /* 0 or a WERR_* value */
    char msg[WERR_MSG_MAX];   /* NUL-terminated, human readable, with context */
};

/* Static text of a code; never NULL ("unknown error" for unknown codes). */
const char *werr_str(int code);

/* gRPC status code (PROTOCOL-HTTP2 / grpc status codes) for a WERR code. */
int werr_grpc_status(int code);

/* Set e->code and format e->msg. Returns code, so callers can write
 * `return werr_set(e, WERR_INVALID, "bad %s", x);`. e may be NULL. */
int werr_set(struct werr *e, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prefix e->msg with "<context>: ". Returns e->code. e may be NULL. */
int werr_wrap(struct werr *e, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

void werr_clear(struct werr *e);

#endif
