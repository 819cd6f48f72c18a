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

/* Open health Watch streams, over all connections. Each pins an HTTP/2
 * stream and a slot here until the client cancels or we shut down; the cap
 * stops a client from parking unbounded watches (RESOURCE_EXHAUSTED beyond
 * it). Kubernetes and load balancers hold one per probe target. */
#define SVC_HEALTH_WATCH_MAX 256

struct svc_health_watch {
    struct grpc_call *call;  /* NULL: free slot. Valid until the call ends. */
    int known;               /* watching a service we serve */
};

struct svc_ctx {
    struct store *store;   /* borrowed */
    struct inv *inv;       /* borrowed; domain inventory handle */
    enum svc_health_status health;
    /* Owned by svc_health.c. */
    struct svc_health_watch watch[SVC_HEALTH_WATCH_MAX];
    size_t n_watch;
};

int svc_health_register(struct grpc_router *r, struct svc_ctx *ctx,
                        struct werr *e);
/* Push a health change to open Watch streams. */
void svc_health_set(struct svc_ctx *ctx, enum svc_health_status st);
/* Shutdown: set NOT_SERVING, send it to every watcher, then end each Watch
 * stream with UNAVAILABLE so graceful drain does not wait on them. */
void svc_health_shutdown(struct svc_ctx *ctx);

int svc_inventory_register(struct grpc_router *r, struct svc_ctx *ctx,
                           struct werr *e);

#endif
