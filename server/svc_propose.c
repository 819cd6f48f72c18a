/* svc_propose.c - propose-and-reply and barrier-then-read (svc_propose.h). */
#include "svc_propose.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/log.h"
#include "../consensus/node.h"
#include "../domain/inventory.h"
#include "../storage/store.h"

struct store *svc_store(struct svc_ctx *ctx)
{
    /* Proposals are answered once applied, before the batch holding them
     * commits: commit it first, so every read here sees what this node has
     * answered (read-your-writes for pre-checks and serializable reads). */
    wnode_commit_applied(ctx->wn);
    return wfsm_store(wnode_fsm(ctx->wn));
}

struct inv *svc_inv(struct svc_ctx *ctx)
{
    return wfsm_inv(wnode_fsm(ctx->wn));
}

struct audit *svc_audit(struct svc_ctx *ctx)
{
    return wfsm_audit(wnode_fsm(ctx->wn));
}

void svc_fail(struct grpc_call *call, const struct werr *e)
{
    if (e->code == WERR_INTERNAL || e->code == WERR_IO ||
        e->code == WERR_CORRUPT) {
        wlog(WLOG_ERROR, "call failed", "method", grpc_call_path(call),
             "error", e->msg, NULL);
    }
    grpc_call_fail_err(call, e);
}

void svc_cmd_init(Warden__V1__Command *cmd, const struct principal *who,
                  const char *idempotency_key)
{
    warden__v1__command__init(cmd);
    cmd->principal_name = (char *)who->name;
    cmd->principal_role = who->role;
    if (idempotency_key != NULL && idempotency_key[0] != '\0') {
        cmd->idempotency_key = (char *)idempotency_key;
    }
}

/* The command was proposed and its fate is unknown: it may still commit
 * under the next leader. Tell the client so (docs/cli.md, rule 5). */
static void fail_ambiguous(struct svc_ctx *ctx, struct grpc_call *call,
                           int status, const char *what)
{
    grpc_call_add_trailer(call, "warden-outcome", "unknown");
    if (status == WERR_UNAVAIL) {
        /* UNAVAILABLE + leader hint, when one is known. */
        svc_fail_raft(ctx, call, status, what);
        return;
    }
    grpc_call_fail(call, GRPC_STATUS_UNAVAILABLE,
                   "%s: node shutting down with the command in flight; "
                   "outcome unknown (retry with the same idempotency key)",
                   what);
}

static void reply_done_cb(void *arg, int status, struct wfsm_result *res)
{
    struct svc_pending *p = arg;
    struct svc_ctx *ctx = p->ctx;
    const char *what = p->what;
    const ProtobufCMessageDescriptor *desc = p->resp_desc;
    struct grpc_call *call = svc_pending_end(p, NULL);
    if (call == NULL) {
        /* The client left; the command committed (or not) all the same. A
         * retry with the same idempotency key gets its result. */
        wlog(WLOG_DEBUG, "command finished after the call was cancelled",
             "what", what, NULL);
        return;
    }
    if (status == WERR_UNAVAIL || status == WERR_CANCELLED) {
        fail_ambiguous(ctx, call, status, what);
        return;
    }
    if (status != 0) {
        svc_fail_raft(ctx, call, status, what);
        return;
    }
    if (res->code != 0) {
        if (res->code == WERR_PERM) {
            /* Audited by apply as a DENIED entry (docs/audit.md). */
            wlog(WLOG_WARN, "command denied", "method", grpc_call_path(call),
                 "principal", grpc_call_principal(call)->name, "error",
                 res->msg, NULL);
        }
        grpc_call_fail(call, werr_grpc_status(res->code), "%s", res->msg);
        return;
    }
    ProtobufCMessage *resp =
        protobuf_c_message_unpack(desc, NULL, res->resp_len, res->resp);
    if (resp == NULL) {
        wlog(WLOG_ERROR, "state machine returned an undecodable response",
             "what", what, "type", desc->name, NULL);
        grpc_call_fail(call, GRPC_STATUS_INTERNAL, "%s: bad result", what);
        return;
    }
    if (res->replayed) {
        wlog(WLOG_INFO, "command replayed (idempotency key)", "what", what,
             "principal", grpc_call_principal(call)->name, NULL);
    }
    grpc_call_reply(call, resp);
    protobuf_c_message_free_unpacked(resp, NULL);
}

void svc_propose_reply(struct svc_ctx *ctx, struct grpc_call *call,
                       const ProtobufCMessage *req,
                       const Warden__V1__Command *cmd, const char *what,
                       const ProtobufCMessageDescriptor *resp_desc)
{
    if (!wnode_is_leader(ctx->wn)) {
        svc_fail_raft(ctx, call, WERR_UNAVAIL, what);
        return;
    }
    struct svc_pending *p = svc_pending_new(ctx, call, req);
    if (p == NULL) {
        return;
    }
    p->what = what;
    p->resp_desc = resp_desc;
    struct werr e = {0};
    int rc = wnode_propose(ctx->wn, cmd, reply_done_cb, p, &e);
    if (rc != 0) {
        /* Not proposed: nothing is ambiguous. */
        call = svc_pending_end(p, NULL);
        if (rc == WERR_LIMIT || rc == WERR_NOMEM || rc == WERR_INVALID) {
            grpc_call_fail_err(call, &e);
        } else {
            svc_fail_raft(ctx, call, rc, what);
        }
    }
}

/* ---- internal proposals ---------------------------------------------------- */

struct internal {
    struct svc_ctx *ctx;
    const char *what;
    svc_internal_cb cb;
    void *arg;
};

static void internal_done_cb(void *arg, int status, struct wfsm_result *res)
{
    struct internal *in = arg;
    if (status != 0) {
        wlog(WLOG_WARN, "server proposal not applied", "what", in->what,
             "status", werr_str(status), NULL);
    } else if (res->code != 0) {
        wlog(WLOG_WARN, "server proposal failed", "what", in->what, "error",
             res->msg, NULL);
    }
    if (in->cb != NULL) {
        in->cb(in->ctx, in->arg, status, res);
    }
    free(in);
}

int svc_propose_internal(struct svc_ctx *ctx, const Warden__V1__Command *cmd,
                         const char *what, svc_internal_cb cb, void *arg)
{
    struct internal *in = calloc(1, sizeof *in);
    if (in == NULL) {
        return WERR_NOMEM;
    }
    in->ctx = ctx;
    in->what = what;
    in->cb = cb;
    in->arg = arg;
    struct werr e = {0};
    int rc = wnode_propose(ctx->wn, cmd, internal_done_cb, in, &e);
    if (rc != 0) {
        if (rc != WERR_UNAVAIL) {
            wlog(WLOG_WARN, "server proposal refused", "what", what, "error",
                 e.code != 0 ? e.msg : werr_str(rc), NULL);
        }
        free(in);
    }
    return rc;
}

/* ---- reads ------------------------------------------------------------------- */

static void read_barrier_cb(void *arg, int status)
{
    struct svc_pending *p = arg;
    struct svc_ctx *ctx = p->ctx;
    svc_read_fn fn = p->read;
    const char *what = p->what;
    const ProtobufCMessage *req;
    struct grpc_call *call = svc_pending_end(p, &req);
    if (call == NULL) {
        return;
    }
    if (status != 0) {
        /* A read has no effect: nothing is ambiguous, retry anywhere. */
        svc_fail_raft(ctx, call, status, what);
        return;
    }
    fn(ctx, call, req);
}

void svc_read(struct svc_ctx *ctx, struct grpc_call *call,
              const ProtobufCMessage *req, int linearizable, svc_read_fn fn,
              const char *what)
{
    if (!linearizable) {
        fn(ctx, call, req);
        return;
    }
    if (!wnode_is_leader(ctx->wn)) {
        svc_fail_raft(ctx, call, WERR_UNAVAIL, what);
        return;
    }
    struct svc_pending *p = svc_pending_new(ctx, call, req);
    if (p == NULL) {
        return;
    }
    p->read = fn;
    p->what = what;
    int rc = wnode_barrier(ctx->wn, read_barrier_cb, p);
    if (rc != 0) {
        call = svc_pending_end(p, NULL);
        svc_fail_raft(ctx, call, rc, what);
    }
}

int svc_call_wants_serializable(const struct grpc_call *call)
{
    const char *v = grpc_call_metadata(call, "warden-consistency");
    return v != NULL && strcmp(v, "serializable") == 0;
}

/* ---- gateway binding ------------------------------------------------------------ */

int svc_gateway_refuse(struct svc_ctx *ctx, struct grpc_call *call,
                       const char *device_id)
{
    const struct principal *who = grpc_call_principal(call);
    if (who->role != WROLE_GATEWAY || device_id == NULL) {
        return 0;
    }
    struct werr e = {0};
    struct store_txn *t;
    if (store_txn_begin(svc_store(ctx), 0, &t, &e) != 0) {
        return 0; /* apply decides */
    }
    Warden__V1__Device *dev = NULL;
    int rc = inv_get(svc_inv(ctx), t, device_id, &dev, &e);
    store_txn_abort(t);
    int refuse = rc == 0 && strcmp(dev->gateway_id, who->name) != 0;
    inv_device_free(dev);
    if (!refuse) {
        return 0;
    }
    svc_denial_note(ctx, who, grpc_call_path(call));
    wlog(WLOG_WARN, "gateway denied device access", "method",
         grpc_call_path(call), "principal", who->name, "device", device_id,
         NULL);
    grpc_call_fail(call, GRPC_STATUS_PERMISSION_DENIED,
                   "device %s is not bound to gateway %s", device_id, who->name);
    return 1;
}
