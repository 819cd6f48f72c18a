/* router.c - method table: "/pkg.Service/Method" → grpc_method.
 *
 * A flat array with a linear scan: GRPC_ROUTER_MAX_METHODS is small, the
 * table is built once at startup and read-only afterwards, and a memcmp
 * over a hundred short strings costs less than the HPACK decode that
 * produced the path. */
#include "grpc.h"

#include <string.h>

void grpc_router_init(struct grpc_router *r)
{
    memset(r, 0, sizeof *r);
}

int grpc_router_add(struct grpc_router *r, const struct grpc_method *m,
                    struct werr *e)
{
    size_t len = strnlen(m->path, GRPC_PATH_MAX);

    if (len == 0 || len == GRPC_PATH_MAX || m->path[0] != '/') {
        return werr_set(e, WERR_INVALID, "grpc router: bad method path");
    }
    if (m->handler == NULL || m->req_desc == NULL) {
        return werr_set(e, WERR_INVALID,
                        "grpc router: %s: handler and req_desc are required",
                        m->path);
    }
    if (grpc_router_find(r, m->path, len) != NULL) {
        return werr_set(e, WERR_EXISTS, "grpc router: %s registered twice",
                        m->path);
    }
    if (r->n >= GRPC_ROUTER_MAX_METHODS) {
        return werr_set(e, WERR_LIMIT,
                        "grpc router: more than %d methods at %s",
                        GRPC_ROUTER_MAX_METHODS, m->path);
    }
    r->methods[r->n++] = *m;
    return 0;
}

const struct grpc_method *grpc_router_find(const struct grpc_router *r,
                                           const char *path, size_t len)
{
    if (len == 0 || len >= GRPC_PATH_MAX) {
        return NULL;
    }
    for (size_t i = 0; i < r->n; i++) {
        const struct grpc_method *m = &r->methods[i];
        if (strnlen(m->path, GRPC_PATH_MAX) == len &&
            memcmp(m->path, path, len) == 0) {
            return m;
        }
    }
    return NULL;
}
