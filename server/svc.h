/* svc.h - service modules registered into the gRPC router.
 *
 * Each svc_*.c decodes nothing by hand: the grpc layer hands it the unpacked
 * request; it calls into domain/ and replies. The context is owned by the
 * server (server/node.c) and outlives every registered method. */
#ifndef WARDEN_SERVER_SVC_H
#define WARDEN_SERVER_SVC_H

#include "../common/err.h"
#include "../common/principal.h"
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

/* Open Audit/Tail streams, over all connections (svc_audit.c). Each pins
 * an HTTP/2 stream, a slot here and up to GRPC_STREAM_OUT_MAX of queued
 * output; the cap bounds the total (RESOURCE_EXHAUSTED beyond it). */
#define SVC_AUDIT_TAIL_MAX 64
/* Entries read per watcher per pump: bounds the work of one loop pass
 * (pumps run every SVC_TICK_MS, and right after a Tail opens). */
#define SVC_AUDIT_TAIL_CHUNK 256
/* Bytes read per watcher per pump (about; at least one entry): a quarter
 * of GRPC_STREAM_OUT_MAX, so a watcher that reads keeps up without the
 * stream buffer ever holding more than a few chunks. */
#define SVC_AUDIT_TAIL_CHUNK_BYTES ((size_t)256 << 10)
/* Chunks per watcher per pump while its stream takes them: a catching-up
 * watcher gets up to 8 x 256 entries per SVC_TICK_MS (~20k entries/s)
 * while one pass of the loop stays bounded. */
#define SVC_AUDIT_TAIL_CHUNKS_PER_PUMP 8u
/* A watcher whose stream buffer stays full (grpc_call_send -> WERR_BUSY)
 * this long is cut off with RESOURCE_EXHAUSTED: it may resume with
 * from_seq. Bounds how long a stalled client pins its buffer and slot. */
#define SVC_AUDIT_TAIL_STALL_MS 30000u

struct svc_audit_tail {
    struct grpc_call *call;  /* NULL: free slot. Valid until the call ends. */
    uint64_t next_seq;       /* next entry to send */
    uint64_t stalled_ms;     /* uv_now when the buffer first filled; 0 */
};

/* Open Access/WatchRevocations streams per node (svc_access.c; wardend
 * --max-watchers, docs/configuration.md). Every gateway holds one; the
 * default fits a 1,000-gateway fleet with room for operators' tools. Each
 * costs a slot (sizeof struct svc_access_watch, ~130 bytes, allocated for
 * the configured count when the first stream opens), its HTTP/2 stream and
 * up to GRPC_STREAM_OUT_MAX of queued output, cut off after
 * SVC_ACCESS_WATCH_STALL_MS of not reading. The hard bound keeps the slot
 * array at a few MiB and one pump pass over every watcher within a few
 * tens of ms; beyond the configured count: RESOURCE_EXHAUSTED. */
#define SVC_ACCESS_WATCH_MAX_DEFAULT 2048u
#define SVC_ACCESS_WATCH_MAX_HARD 65536u

/* Aggregated authorization denials (svc_denials.c, docs/audit.md). Rows of
 * (principal, role, method) -> count held between flushes. 256 rows x
 * ~210 bytes = ~52 KiB. A denial for a new key while the table is full is
 * only counted in `dropped`. */
#define SVC_DENIAL_TABLE_MAX 256
/* The leader proposes the table (as `denials` commands of at most
 * AUDIT_DENIAL_ROWS_MAX rows) at most this often: a flood of denials costs
 * at most ceil(SVC_DENIAL_TABLE_MAX / AUDIT_DENIAL_ROWS_MAX) = 4 Raft
 * entries per interval, whatever the request rate. */
#define SVC_DENIAL_FLUSH_MS 1000u

struct svc_denial_row {
    struct principal who;
    char method[GRPC_PATH_MAX];
    uint64_t count;
};

struct svc_denials {
    struct svc_denial_row rows[SVC_DENIAL_TABLE_MAX];
    size_t n;
    uint64_t dropped;          /* not itemised since the last flush */
    uint64_t last_flush_ms;
    /* Counters since start (logged with every flush). */
    uint64_t total;            /* denials noted */
    uint64_t total_dropped;    /* of which not itemised */
    uint64_t proposed;         /* denials handed to Raft in `denials` ops */
    uint64_t lost;             /* of which the proposal failed */
    uint64_t local_only;       /* logged on a follower, never replicated */
};

/* The node's own periodic duties (svc_tick). */
#define SVC_TICK_MS 100u
/* The bootstrap command key id (docs/freshness.md). */
#define SVC_BOOTSTRAP_KEY_ID "k1"

struct svc_ctx {
    /* Borrowed; the Raft node. Its store and inventory handles are fetched
     * through wfsm_store/wfsm_inv(wnode_fsm(wn)) at each read, never cached:
     * a snapshot restore replaces them (consensus/fsm.h). */
    struct wnode *wn;
    /* This node's principal (role peer, name n<id>): the author of the
     * commands the server proposes on its own (bootstrap key, denials). */
    struct principal self;
    enum svc_health_status health;
    int closing;             /* set by svc_shutdown: no new streams */
    uint64_t now_ms;         /* loop time of the last svc_tick */
    /* Owned by svc_health.c. */
    struct svc_health_watch watch[SVC_HEALTH_WATCH_MAX];
    size_t n_watch;
    /* Owned by svc_audit.c. */
    struct svc_audit_tail tail[SVC_AUDIT_TAIL_MAX];
    size_t n_tail;
    /* Owned by svc_denials.c. */
    struct svc_denials denials;
    /* Owned by svc_access.c: the WatchRevocations streams (allocated on
     * the first one, freed by svc_shutdown). */
    struct svc_access *access;
    /* WatchRevocations streams allowed on this node, 1..
     * SVC_ACCESS_WATCH_MAX_HARD; 0 = SVC_ACCESS_WATCH_MAX_DEFAULT. Read
     * when the first stream opens (node.c sets it from --max-watchers). */
    size_t access_watch_max;
    /* Owned by svc_control.c: the bootstrap command key check runs once per
     * leadership term (ckey_term), one at a time (ckey_busy). */
    uint64_t ckey_term;
    int ckey_busy;
};

int svc_health_register(struct grpc_router *r, struct svc_ctx *ctx,
                        struct werr *e);
/* Push a health change to open Watch streams. */
void svc_health_set(struct svc_ctx *ctx, enum svc_health_status st);
/* Shutdown: set NOT_SERVING, send it to every watcher, then end each Watch
 * stream with UNAVAILABLE so graceful drain does not wait on them. */
void svc_health_shutdown(struct svc_ctx *ctx);

/* Service registration: one function per service file, all with this
 * shape, called in order by node.c (svc_register_all). A new service
 * (access, rollouts) adds its file and one line to svc_register_all. */
typedef int (*svc_register_fn)(struct grpc_router *r, struct svc_ctx *ctx,
                               struct werr *e);
int svc_inventory_register(struct grpc_router *r, struct svc_ctx *ctx,
                           struct werr *e);
/* warden.v1.Cluster (svc_cluster.c). */
int svc_cluster_register(struct grpc_router *r, struct svc_ctx *ctx,
                         struct werr *e);
/* warden.v1.Telemetry (svc_telemetry.c). */
int svc_telemetry_register(struct grpc_router *r, struct svc_ctx *ctx,
                           struct werr *e);
/* warden.v1.Control (svc_control.c). */
int svc_control_register(struct grpc_router *r, struct svc_ctx *ctx,
                         struct werr *e);
/* warden.v1.Audit (svc_audit.c). */
int svc_audit_register(struct grpc_router *r, struct svc_ctx *ctx,
                       struct werr *e);
/* warden.v1.Access (svc_access.c). */
int svc_access_register(struct grpc_router *r, struct svc_ctx *ctx,
                        struct werr *e);
/* warden.v1.Rollouts (svc_rollout.c). */
int svc_rollout_register(struct grpc_router *r, struct svc_ctx *ctx,
                         struct werr *e);
/* Every service above, in order (svc_common.c). */
int svc_register_all(struct grpc_router *r, struct svc_ctx *ctx,
                     struct werr *e);
/* Register a table of methods (each .data is set to ctx). what names the
 * service in errors. */
int svc_register_methods(struct grpc_router *r, struct svc_ctx *ctx,
                         const struct grpc_method *m, size_t n,
                         const char *what, struct werr *e);

/* Periodic duties, every SVC_TICK_MS from node.c with the loop's now:
 * Tail pumps, the denial flush (leader proposes, follower logs), and the
 * bootstrap command key (leader, once per term). */
void svc_tick(struct svc_ctx *ctx, uint64_t now_ms);
/* Shutdown: end Tail streams with UNAVAILABLE, log unflushed denials. */
void svc_shutdown(struct svc_ctx *ctx);

/* ---- pieces of svc_tick (one file each) ---------------------------------- */
void svc_audit__pump(struct svc_ctx *ctx, uint64_t now_ms);
void svc_audit__shutdown(struct svc_ctx *ctx);
void svc_access__pump(struct svc_ctx *ctx, uint64_t now_ms);
void svc_access__shutdown(struct svc_ctx *ctx);
/* Once per loop iteration (node.c, prepare phase: after the previous
 * iteration's apply batch committed): pump every WatchRevocations stream
 * if the committed revocation log moved. A memory compare while nothing
 * commits. */
void svc_access__poll(struct svc_ctx *ctx, uint64_t now_ms);
void svc_denials__flush(struct svc_ctx *ctx, uint64_t now_ms, int force);
void svc_control__bootstrap_key(struct svc_ctx *ctx);

/* Count one authorization denial decided in the server (grpc role gate,
 * gateway binding). who and method are copied. Never fails. */
void svc_denial_note(struct svc_ctx *ctx, const struct principal *who,
                     const char *method);
/* grpc_conn_config.on_denied adapter; arg is the svc_ctx. */
void svc_denial_hook(void *arg, const struct principal *who, const char *path);

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
    void *arg;                       /* handler's own data (it frees it) */
    /* svc_propose.c: what the call does (messages, logs) and how to
     * decode the state machine's packed response. */
    const char *what;
    const ProtobufCMessageDescriptor *resp_desc;
    void (*read)(struct svc_ctx *ctx, struct grpc_call *call,
                 const ProtobufCMessage *req);
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
