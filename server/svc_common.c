/* svc_common.c - what every Raft-backed handler needs: parking a call while
 * Raft works (svc_pending) and the not-the-leader refusal (svc.h). */
#include <stdio.h>
#include <stdlib.h>

#include "../common/log.h"
#include "../consensus/node.h"
#include "svc.h"

static void pending_cancel_cb(struct grpc_call *call, void *arg)
{
    struct svc_pending *p = arg;
    (void)call;
    /* The call pointer dies when we return; the Raft operation goes on and
     * its callback frees p (svc_pending_end). */
    p->call = NULL;
    p->req = NULL;
}

struct svc_pending *svc_pending_new(struct svc_ctx *ctx, struct grpc_call *call,
                                    const ProtobufCMessage *req)
{
    struct svc_pending *p = calloc(1, sizeof *p);
    if (p == NULL) {
        grpc_call_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return NULL;
    }
    p->call = call;
    p->req = req;
    p->ctx = ctx;
    grpc_call_on_cancel(call, pending_cancel_cb, p);
    return p;
}

struct grpc_call *svc_pending_end(struct svc_pending *p,
                                  const ProtobufCMessage **req)
{
    struct grpc_call *call = p->call;
    if (req != NULL) {
        *req = p->req;
    }
    if (call != NULL) {
        /* We are about to end the call ourselves: its cancel hook must not
         * reach p after the free below. */
        grpc_call_on_cancel(call, NULL, NULL);
    }
    free(p);
    return call;
}

void svc_fail_raft(struct svc_ctx *ctx, struct grpc_call *call, int rc,
                   const char *what)
{
    if (rc == WERR_UNAVAIL) {
        unsigned id = 0;
        char addr[WNODE_HOSTPORT_MAX];
        if (wnode_leader(ctx->wn, &id, addr, sizeof addr) == 0 && id != 0) {
            char ids[16];
            snprintf(ids, sizeof ids, "%u", id);
            grpc_call_add_trailer(call, "warden-leader", addr);
            grpc_call_add_trailer(call, "warden-leader-id", ids);
            grpc_call_fail(call, GRPC_STATUS_UNAVAILABLE,
                           "not the leader; leader is %u at %s", id, addr);
        } else {
            grpc_call_fail(call, GRPC_STATUS_UNAVAILABLE,
                           "not the leader; no leader known (election in progress?)");
        }
        return;
    }
    const char *why;
    switch (rc) {
    case WERR_CANCELLED: why = "node shutting down"; break;
    case WERR_BUSY: why = "too many requests in flight"; break;
    case WERR_INTERNAL: why = "node failed (see server log)"; break;
    case WERR_ABORTED: why = "aborted"; break;
    default: why = werr_str(rc); break;
    }
    if (rc == WERR_INTERNAL) {
        wlog(WLOG_ERROR, "raft operation failed", "method", grpc_call_path(call),
             "what", what, NULL);
    }
    grpc_call_fail(call, werr_grpc_status(rc), "%s: %s", what, why);
}

/* ---- registration ------------------------------------------------------------ */

int svc_register_methods(struct grpc_router *r, struct svc_ctx *ctx,
                         const struct grpc_method *m, size_t n,
                         const char *what, struct werr *e)
{
    if (ctx == NULL || ctx->wn == NULL) {
        return werr_set(e, WERR_INVALID, "%s: the raft node is required", what);
    }
    for (size_t i = 0; i < n; i++) {
        struct grpc_method copy = m[i];
        copy.data = ctx;
        int rc = grpc_router_add(r, &copy, e);
        if (rc != 0) {
            return werr_wrap(e, "%s", what);
        }
    }
    return 0;
}

int svc_register_all(struct grpc_router *r, struct svc_ctx *ctx,
                     struct werr *e)
{
    /* One line per service file; issue 5 (access) and 6 (rollouts) add
     * theirs here. */
    static const svc_register_fn services[] = {
        svc_health_register,
        svc_inventory_register,
        svc_cluster_register,
        svc_telemetry_register,
        svc_control_register,
        svc_audit_register,
        svc_rollout_register,
        svc_access_register,
    };
    for (size_t i = 0; i < sizeof services / sizeof services[0]; i++) {
        int rc = services[i](r, ctx, e);
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}

/* ---- periodic duties ------------------------------------------------------------ */

void svc_tick(struct svc_ctx *ctx, uint64_t now_ms)
{
    if (ctx->closing) {
        return;
    }
    ctx->now_ms = now_ms;
    svc_audit__pump(ctx, now_ms);
    svc_access__pump(ctx, now_ms);
    svc_denials__flush(ctx, now_ms, 0);
    svc_control__bootstrap_key(ctx);
}

void svc_shutdown(struct svc_ctx *ctx)
{
    ctx->closing = 1;
    svc_audit__shutdown(ctx);
    svc_access__shutdown(ctx);
    /* The leader tries one last flush; what cannot be proposed is logged. */
    svc_denials__flush(ctx, 0, 1);
}
