/* svc.h - service modules registered into the gRPC router.
 *
 * Each svc_*.c decodes nothing by hand: the grpc layer hands it the unpacked
 * request; it calls into domain/ and replies. The context is owned by the
 * server (server/node.c) and outlives every registered method. */
#ifndef WARDEN_SERVER_SVC_H
#define WARDEN_SERVER_SVC_H

#include "../common/err.h"
#include "../grpc/grpc.h"

struct store;
struct inv;

/* Health status values mirror grpc.health.v1.HealthCheckResponse. */
enum svc_health_status {
    SVC_HEALTH_SERVING = 1,
    SVC_HEALTH_NOT_SERVING = 2,
};

struct svc_ctx {
    struct store *store;   /* borrowed */
    struct inv *inv;       /* borrowed; domain inventory handle */
    enum svc_health_status health;
};

int svc_health_register(struct grpc_router *r, struct svc_ctx *ctx,
                        struct werr *e);
/* Push a health change to open Watch streams. */
void svc_health_set(struct svc_ctx *ctx, enum svc_health_status st);

int svc_inventory_register(struct grpc_router *r, struct svc_ctx *ctx,
                           struct werr *e);

#endif
