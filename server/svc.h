/* svc.h - service modules registered into the gRPC router.
 *
 * Each svc_*.c decodes nothing by hand: the grpc layer hands it the unpacked
 * request; it calls into domain/ and replies. The context is owned by the
 * server (server/node.c) and outlives every registered method. */
#ifndef WARDEN_SERVER_SVC_H
#define WARDEN_SERVER_SVC_H

#include "../common/err.h"
#include "../grpc/grpc.h"

struct wnode;

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
    /* Borrowed; the Raft node. Its store and inventory handles are fetched
     * through wfsm_store/wfsm_inv(wnode_fsm(wn)) at each read, never cached:
     * a snapshot restore replaces them (consensus/fsm.h). */
    struct wnode *wn;
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
/* warden.v1.Cluster (svc_cluster.c). */
int svc_cluster_register(struct grpc_router *r, struct svc_ctx *ctx,
                         struct werr *e);

/* ---- asynchronous replies (svc_common.c) --------------------------------
 * A handler that waits for Raft (a proposal, a barrier, a membership change)
 * parks its call in a svc_pending. If the client goes away first (cancel,
 * deadline, connection closed) the pending loses its call; the Raft
 * operation still completes, and its callback then replies to nobody. */
struct svc_pending {
    struct grpc_call *call;          /* NULL once cancelled */
    const ProtobufCMessage *req;     /* borrowed from the call; valid only
                                        while call != NULL */
    struct svc_ctx *ctx;
    unsigned u;                      /* handler's own small value */
};
/* Allocate and hook the call's cancel callback. NULL on ENOMEM (the call
 * has then been failed with RESOURCE_EXHAUSTED). */
struct svc_pending *svc_pending_new(struct svc_ctx *ctx, struct grpc_call *call,
                                    const ProtobufCMessage *req);
/* Return the call (NULL if it was cancelled) and free p. */
struct grpc_call *svc_pending_end(struct svc_pending *p,
                                  const ProtobufCMessage **req);

/* Fail call for a Raft refusal rc (from wnode_* or its callback): for
 * WERR_UNAVAIL, UNAVAILABLE "not the leader" with trailers warden-leader
 * (leader's client address) and warden-leader-id when a leader is known;
 * otherwise the werr_grpc_status(rc) status with `what` in the message. */
void svc_fail_raft(struct svc_ctx *ctx, struct grpc_call *call, int rc,
                   const char *what);

#endif
