/* svc_control.c - warden.v1.Control: cloud -> device commands signed with
 * the cluster command key (domain/ctlsign.h, docs/freshness.md).
 *
 * IssueCommand (admin, operator, rollout): one Command (op issue_command);
 * apply signs the envelope with the replicated key (Ed25519 is
 * deterministic, so every node computes the same signature).
 *
 * RotateCommandKey (admin): the leader generates the 32-byte Ed25519 seed
 * here with RAND_bytes and proposes op rotate_command_key; apply only
 * stores it (it must stay deterministic, so it never draws randomness).
 * The seed is wiped from our stack once encoded; it still travels in the
 * Raft log and snapshots (docs/freshness.md, "at rest").
 *
 * GetCommandKey (every client role: gateways and devices verify with it):
 * the public half, linearizable (leader, after a barrier).
 *
 * Bootstrap: a leader, once per term, waits for a barrier (so it has
 * applied everything its predecessors committed) and, if no command key
 * exists, proposes rotate_command_key with id SVC_BOOTSTRAP_KEY_ID as its
 * own node principal (role peer). A concurrent or earlier bootstrap makes
 * the check find the key; a lost proposal is retried next tick. */
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "warden/v1/command.pb-c.h"
#include "warden/v1/control.pb-c.h"

#include "../common/log.h"
#include "../consensus/node.h"
#include "../domain/ctlsign.h"
#include "../storage/store.h"
#include "svc.h"
#include "svc_propose.h"

static void issue_cb(struct grpc_call *call, const ProtobufCMessage *msg,
                     void *data)
{
    struct svc_ctx *ctx = data;
    const Warden__V1__IssueCommandRequest *req =
        (const Warden__V1__IssueCommandRequest *)msg;
    if (req->payload.len > CTL_PAYLOAD_MAX) {
        grpc_call_fail(call, GRPC_STATUS_INVALID_ARGUMENT,
                       "payload is %zu bytes, at most %zu", req->payload.len,
                       CTL_PAYLOAD_MAX);
        return;
    }
    Warden__V1__Command cmd;
    svc_cmd_init(&cmd, grpc_call_principal(call), req->idempotency_key);
    cmd.op_case = WARDEN__V1__COMMAND__OP_ISSUE_COMMAND;
    cmd.issue_command = (Warden__V1__IssueCommandRequest *)req;
    svc_propose_reply(ctx, call, msg, &cmd, "issue command",
                      &warden__v1__issue_command_response__descriptor);
}

/* Propose a new command key. who: the author. Returns 0, or the error of
 * RAND_bytes (WERR_INTERNAL) when cb/reply never runs. With call != NULL
 * the call is answered; else it is an internal proposal. */
static int propose_key(struct svc_ctx *ctx, struct grpc_call *call,
                       const ProtobufCMessage *msg, const struct principal *who,
                       const char *key_id, svc_internal_cb cb)
{
    uint8_t seed[CTL_PRIVKEY_LEN];
    if (RAND_bytes(seed, sizeof seed) != 1) {
        wlog(WLOG_ERROR, "RAND_bytes failed", "what", "command key", NULL);
        if (call != NULL) {
            grpc_call_fail(call, GRPC_STATUS_INTERNAL, "no randomness");
        }
        return WERR_INTERNAL;
    }
    Warden__V1__RotateCommandKeyOp op = WARDEN__V1__ROTATE_COMMAND_KEY_OP__INIT;
    op.key_id = (char *)key_id;
    op.private_key.data = seed;
    op.private_key.len = sizeof seed;
    Warden__V1__Command cmd;
    svc_cmd_init(&cmd, who, NULL);
    cmd.op_case = WARDEN__V1__COMMAND__OP_ROTATE_COMMAND_KEY;
    cmd.rotate_command_key = &op;
    int rc = 0;
    if (call != NULL) {
        svc_propose_reply(ctx, call, msg, &cmd, "rotate command key",
                          &warden__v1__rotate_command_key_response__descriptor);
    } else {
        rc = svc_propose_internal(ctx, &cmd, "bootstrap command key", cb, NULL);
    }
    /* Encoded into the log entry by now; do not leave it on the stack. */
    OPENSSL_cleanse(seed, sizeof seed);
    return rc;
}

static void rotate_cb(struct grpc_call *call, const ProtobufCMessage *msg,
                      void *data)
{
    const Warden__V1__RotateCommandKeyRequest *req =
        (const Warden__V1__RotateCommandKeyRequest *)msg;
    if (req->key_id == NULL || req->key_id[0] == '\0' ||
        strlen(req->key_id) > CTL_KEY_ID_MAX) {
        grpc_call_fail(call, GRPC_STATUS_INVALID_ARGUMENT,
                       "key_id: 1..%d of [A-Za-z0-9._-]", CTL_KEY_ID_MAX);
        return;
    }
    wlog(WLOG_INFO, "command key rotation requested", "key_id", req->key_id,
         "principal", grpc_call_principal(call)->name, NULL);
    propose_key(data, call, msg, grpc_call_principal(call), req->key_id, NULL);
}

static void do_get_key(struct svc_ctx *ctx, struct grpc_call *call,
                       const ProtobufCMessage *msg)
{
    const Warden__V1__GetCommandKeyRequest *req =
        (const Warden__V1__GetCommandKeyRequest *)msg;
    struct werr e = {0};
    struct store_txn *t;
    if (store_txn_begin(svc_store(ctx), 0, &t, &e) != 0) {
        svc_fail(call, &e);
        return;
    }
    char kid[CTL_KEY_ID_MAX + 1];
    uint8_t pub[CTL_PUBKEY_LEN];
    uint64_t created = 0;
    int current = 0;
    int rc = ctl_get_key(svc_inv(ctx), t, req->key_id, kid, pub, &created,
                         &current, &e);
    store_txn_abort(t);
    if (rc != 0) {
        svc_fail(call, &e);
        return;
    }
    Warden__V1__GetCommandKeyResponse r = WARDEN__V1__GET_COMMAND_KEY_RESPONSE__INIT;
    r.key_id = kid;
    r.public_key.data = pub;
    r.public_key.len = sizeof pub;
    r.created_index = created;
    r.current = current != 0;
    grpc_call_reply(call, &r.base);
}

static void get_key_cb(struct grpc_call *call, const ProtobufCMessage *msg,
                       void *data)
{
    svc_read(data, call, msg, !svc_call_wants_serializable(call), do_get_key,
             "linearizable read");
}

/* ---- bootstrap ------------------------------------------------------------------ */

static void bootstrap_done_cb(struct svc_ctx *ctx, void *arg, int status,
                              const struct wfsm_result *res)
{
    (void)arg;
    ctx->ckey_busy = 0;
    if (status == 0 && (res->code == 0 || res->code == WERR_EXISTS)) {
        if (res->code == 0) {
            wlog(WLOG_INFO, "command key bootstrapped", "key_id",
                 SVC_BOOTSTRAP_KEY_ID, "by", ctx->self.name, NULL);
        }
        return;
    }
    if (status != 0) {
        /* Not applied (leadership lost, closing): the next leader, or we
         * in a later term, checks again. Not retried in this term. */
        return;
    }
    /* Applied and refused (and audited): do not retry in this term, or a
     * persistent refusal would append an entry every tick. */
    wlog(WLOG_ERROR, "command key bootstrap refused", "error", res->msg, NULL);
}

static void bootstrap_barrier_cb(void *arg, int status)
{
    struct svc_ctx *ctx = arg;
    if (status != 0) {
        ctx->ckey_busy = 0;
        ctx->ckey_term = 0;
        return;
    }
    struct werr e = {0};
    struct store_txn *t;
    if (store_txn_begin(svc_store(ctx), 0, &t, &e) != 0) {
        wlog(WLOG_WARN, "command key check failed", "error", e.msg, NULL);
        ctx->ckey_busy = 0;
        ctx->ckey_term = 0;
        return;
    }
    char kid[CTL_KEY_ID_MAX + 1];
    uint8_t pub[CTL_PUBKEY_LEN];
    uint64_t created = 0;
    int current = 0;
    int rc = ctl_get_key(svc_inv(ctx), t, NULL, kid, pub, &created, &current, &e);
    store_txn_abort(t);
    if (rc == 0) {
        ctx->ckey_busy = 0; /* a key exists: nothing to do this term */
        return;
    }
    if (rc != WERR_NOTFOUND) {
        wlog(WLOG_WARN, "command key check failed", "error", e.msg, NULL);
        ctx->ckey_busy = 0;
        ctx->ckey_term = 0;
        return;
    }
    if (propose_key(ctx, NULL, NULL, &ctx->self, SVC_BOOTSTRAP_KEY_ID,
                    bootstrap_done_cb) != 0) {
        ctx->ckey_busy = 0;
        ctx->ckey_term = 0;
    }
}

void svc_control__bootstrap_key(struct svc_ctx *ctx)
{
    if (ctx->ckey_busy || !wnode_is_leader(ctx->wn)) {
        return;
    }
    struct wnode_status st;
    wnode_status(ctx->wn, &st);
    if (st.failed || st.term == 0 || st.term == ctx->ckey_term) {
        return;
    }
    ctx->ckey_term = st.term;
    ctx->ckey_busy = 1;
    if (wnode_barrier(ctx->wn, bootstrap_barrier_cb, ctx) != 0) {
        ctx->ckey_busy = 0;
        ctx->ckey_term = 0;
    }
}

int svc_control_register(struct grpc_router *r, struct svc_ctx *ctx,
                         struct werr *e)
{
    const struct grpc_method methods[] = {
        {.path = "/warden.v1.Control/IssueCommand",
         .roles = WROLE_ADMIN | WROLE_OPERATOR | WROLE_ROLLOUT,
         .req_desc = &warden__v1__issue_command_request__descriptor,
         .handler = issue_cb},
        {.path = "/warden.v1.Control/RotateCommandKey",
         .roles = WROLE_ADMIN,
         .req_desc = &warden__v1__rotate_command_key_request__descriptor,
         .handler = rotate_cb},
        {.path = "/warden.v1.Control/GetCommandKey",
         .roles = WROLE_ALL_CLIENTS,
         .req_desc = &warden__v1__get_command_key_request__descriptor,
         .handler = get_key_cb},
    };
    return svc_register_methods(r, ctx, methods,
                                sizeof methods / sizeof methods[0],
                                "svc_control_register", e);
}
