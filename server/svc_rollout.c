/* svc_rollout.c - warden.v1.Rollouts: glue between the gRPC layer and the
 * rollout engine of the replicated state machine (issue 6; design:
 * docs/rollouts.md; ops: consensus/fsm_rollout.c; domain: domain/rollout.h).
 *
 * Writes. Every write RPC - RegisterReleaseKey, RevokeReleaseKey,
 * CreateRelease, CreateRollout, Start/Pause/Resume/Advance/AbortRollout,
 * GetDesiredState and ReportUpdateStatus - becomes exactly one
 * warden.v1.Command (ops 50-60) proposed on the leader through
 * svc_propose_reply() (svc_propose.h): the reply is sent after a majority
 * fsynced the entry and this node applied it. Not the leader: UNAVAILABLE
 * with warden-leader / warden-leader-id. Leadership lost with the command in
 * flight: UNAVAILABLE + warden-outcome: unknown; retry with the same
 * idempotency key (every request but ReportUpdateStatus carries one; a
 * report needs none: its RFC 6479 window turns a committed first attempt's
 * retry into a REPLAY verdict, so it is never counted twice).
 *
 * GetDesiredState is a write, not a read: it may record an assignment and
 * it takes the device's next control sequence (docs/rollouts.md). Its
 * answer, like a report's verdict (ACCEPTED, REPLAY, ... in
 * ReportUpdateStatusResponse.result), is an OK reply: only malformed
 * requests, callers not allowed and node trouble are gRPC errors.
 *
 * Reads. GetRollout and GetRelease: LINEARIZABLE (default) on the leader
 * after a shared Raft barrier (Raft §6.4), SERIALIZABLE on any node from
 * local state. GetRollout evaluates the gates at the committed cluster
 * time (wfsm_committed_cluster_time), never at a local clock: the
 * explanation it gives is the one apply would reach at that time.
 *
 * Authorization. The method's role mask (table at the end, documented in
 * docs/rollouts.md "Server glue") is the first gate; apply checks roles
 * again from the Command's principal, including the admin-only variants
 * (Advance with force, Abort with rollback, CreateRelease with
 * rollback_of), which are therefore audited DENIED when refused. A gateway
 * naming a device bound to another gateway is refused before proposing
 * (svc_gateway_refuse: PERMISSION_DENIED, counted in the aggregated denial
 * table); apply checks the binding again against committed state.
 *
 * Limits. Requests whose variable-size fields exceed the domain's caps
 * (manifest, signature, key, reasons, detail, stages, labels) are refused
 * here with INVALID_ARGUMENT, so oversize input never reaches the Raft log.
 * Everything else (exact lengths, empty fields, charset) is left to apply,
 * which refuses it and audits the refusal (REJECTED). */
#include <stdio.h>
#include <string.h>

#include "warden/v1/command.pb-c.h"
#include "warden/v1/rollout.pb-c.h"

#include "../common/principal.h"
#include "../consensus/fsm.h"
#include "../consensus/fsm_rollout.h"
#include "../consensus/node.h"
#include "../domain/rollout.h"
#include "../storage/store.h"
#include "svc.h"
#include "svc_propose.h"

#define OP_(x) WARDEN__V1__COMMAND__OP_##x

/* A signed manifest, its signature and the rollback request embedded in
 * Abort are the only sizeable inputs. Bounds mirror the domain's checks:
 * refusing here keeps them out of the log. */
static int check_release_req(struct grpc_call *call,
                             const Warden__V1__CreateReleaseRequest *r)
{
    if (r->manifest.len > RO_MANIFEST_MAX) {
        grpc_call_fail(call, GRPC_STATUS_INVALID_ARGUMENT,
                       "manifest is %zu bytes, at most %zu", r->manifest.len,
                       (size_t)RO_MANIFEST_MAX);
        return -1;
    }
    if (r->signature.len > RO_SIG_LEN) {
        grpc_call_fail(call, GRPC_STATUS_INVALID_ARGUMENT,
                       "signature is %zu bytes, at most %d (Ed25519)",
                       r->signature.len, RO_SIG_LEN);
        return -1;
    }
    if (r->reason != NULL && strlen(r->reason) > RO_REASON_MAX) {
        grpc_call_fail(call, GRPC_STATUS_INVALID_ARGUMENT,
                       "reason is longer than %d bytes", RO_REASON_MAX);
        return -1;
    }
    return 0;
}

static int check_reason(struct grpc_call *call, const char *reason)
{
    if (reason != NULL && strlen(reason) > RO_REASON_MAX) {
        grpc_call_fail(call, GRPC_STATUS_INVALID_ARGUMENT,
                       "reason is longer than %d bytes", RO_REASON_MAX);
        return -1;
    }
    return 0;
}

static void propose(struct svc_ctx *ctx, struct grpc_call *call,
                    const ProtobufCMessage *msg, Warden__V1__Command *cmd,
                    const char *what, const ProtobufCMessageDescriptor *resp)
{
    svc_propose_reply(ctx, call, msg, cmd, what, resp);
}

/* ---- release keys and releases ---------------------------------------------- */

static void register_key_cb(struct grpc_call *call, const ProtobufCMessage *msg,
                            void *data)
{
    const Warden__V1__RegisterReleaseKeyRequest *req =
        (const Warden__V1__RegisterReleaseKeyRequest *)msg;
    if (req->public_key.len > RO_PUBKEY_LEN) {
        grpc_call_fail(call, GRPC_STATUS_INVALID_ARGUMENT,
                       "public_key is %zu bytes, at most %d (Ed25519 raw)",
                       req->public_key.len, RO_PUBKEY_LEN);
        return;
    }
    Warden__V1__Command cmd;
    svc_cmd_init(&cmd, grpc_call_principal(call), req->idempotency_key);
    cmd.op_case = OP_(REGISTER_RELEASE_KEY);
    cmd.register_release_key = (Warden__V1__RegisterReleaseKeyRequest *)req;
    propose(data, call, msg, &cmd, "register release key",
            &warden__v1__register_release_key_response__descriptor);
}

static void revoke_key_cb(struct grpc_call *call, const ProtobufCMessage *msg,
                          void *data)
{
    const Warden__V1__RevokeReleaseKeyRequest *req =
        (const Warden__V1__RevokeReleaseKeyRequest *)msg;
    if (check_reason(call, req->reason) != 0) {
        return;
    }
    Warden__V1__Command cmd;
    svc_cmd_init(&cmd, grpc_call_principal(call), req->idempotency_key);
    cmd.op_case = OP_(REVOKE_RELEASE_KEY);
    cmd.revoke_release_key = (Warden__V1__RevokeReleaseKeyRequest *)req;
    propose(data, call, msg, &cmd, "revoke release key",
            &warden__v1__revoke_release_key_response__descriptor);
}

static void create_release_cb(struct grpc_call *call,
                              const ProtobufCMessage *msg, void *data)
{
    const Warden__V1__CreateReleaseRequest *req =
        (const Warden__V1__CreateReleaseRequest *)msg;
    if (check_release_req(call, req) != 0) {
        return;
    }
    Warden__V1__Command cmd;
    svc_cmd_init(&cmd, grpc_call_principal(call), req->idempotency_key);
    cmd.op_case = OP_(CREATE_RELEASE);
    cmd.create_release = (Warden__V1__CreateReleaseRequest *)req;
    propose(data, call, msg, &cmd, "create release",
            &warden__v1__create_release_response__descriptor);
}

/* ---- rollouts ------------------------------------------------------------------- */

static void create_rollout_cb(struct grpc_call *call,
                              const ProtobufCMessage *msg, void *data)
{
    const Warden__V1__CreateRolloutRequest *req =
        (const Warden__V1__CreateRolloutRequest *)msg;
    if (req->n_stages > RO_STAGES_MAX) {
        grpc_call_fail(call, GRPC_STATUS_INVALID_ARGUMENT,
                       "a rollout has at most %d stages, got %zu", RO_STAGES_MAX,
                       req->n_stages);
        return;
    }
    if (req->selector != NULL &&
        req->selector->n_labels > RO_SELECTOR_LABELS_MAX) {
        grpc_call_fail(call, GRPC_STATUS_INVALID_ARGUMENT,
                       "selector has %zu labels, at most %d",
                       req->selector->n_labels, RO_SELECTOR_LABELS_MAX);
        return;
    }
    Warden__V1__Command cmd;
    svc_cmd_init(&cmd, grpc_call_principal(call), req->idempotency_key);
    cmd.op_case = OP_(CREATE_ROLLOUT);
    cmd.create_rollout = (Warden__V1__CreateRolloutRequest *)req;
    propose(data, call, msg, &cmd, "create rollout",
            &warden__v1__rollout_response__descriptor);
}

/* The five transitions share one reply type; each is one op. */
static void start_cb(struct grpc_call *call, const ProtobufCMessage *msg,
                     void *data)
{
    const Warden__V1__StartRolloutRequest *req =
        (const Warden__V1__StartRolloutRequest *)msg;
    if (check_reason(call, req->reason) != 0) {
        return;
    }
    Warden__V1__Command cmd;
    svc_cmd_init(&cmd, grpc_call_principal(call), req->idempotency_key);
    cmd.op_case = OP_(START_ROLLOUT);
    cmd.start_rollout = (Warden__V1__StartRolloutRequest *)req;
    propose(data, call, msg, &cmd, "start rollout",
            &warden__v1__rollout_response__descriptor);
}

static void pause_cb(struct grpc_call *call, const ProtobufCMessage *msg,
                     void *data)
{
    const Warden__V1__PauseRolloutRequest *req =
        (const Warden__V1__PauseRolloutRequest *)msg;
    if (check_reason(call, req->reason) != 0) {
        return;
    }
    Warden__V1__Command cmd;
    svc_cmd_init(&cmd, grpc_call_principal(call), req->idempotency_key);
    cmd.op_case = OP_(PAUSE_ROLLOUT);
    cmd.pause_rollout = (Warden__V1__PauseRolloutRequest *)req;
    propose(data, call, msg, &cmd, "pause rollout",
            &warden__v1__rollout_response__descriptor);
}

static void resume_cb(struct grpc_call *call, const ProtobufCMessage *msg,
                      void *data)
{
    const Warden__V1__ResumeRolloutRequest *req =
        (const Warden__V1__ResumeRolloutRequest *)msg;
    if (check_reason(call, req->reason) != 0) {
        return;
    }
    Warden__V1__Command cmd;
    svc_cmd_init(&cmd, grpc_call_principal(call), req->idempotency_key);
    cmd.op_case = OP_(RESUME_ROLLOUT);
    cmd.resume_rollout = (Warden__V1__ResumeRolloutRequest *)req;
    propose(data, call, msg, &cmd, "resume rollout",
            &warden__v1__rollout_response__descriptor);
}

static void advance_cb(struct grpc_call *call, const ProtobufCMessage *msg,
                       void *data)
{
    const Warden__V1__AdvanceRolloutRequest *req =
        (const Warden__V1__AdvanceRolloutRequest *)msg;
    if (check_reason(call, req->reason) != 0) {
        return;
    }
    /* force needs admin: apply decides (and audits a refusal as DENIED). */
    Warden__V1__Command cmd;
    svc_cmd_init(&cmd, grpc_call_principal(call), req->idempotency_key);
    cmd.op_case = OP_(ADVANCE_ROLLOUT);
    cmd.advance_rollout = (Warden__V1__AdvanceRolloutRequest *)req;
    propose(data, call, msg, &cmd, "advance rollout",
            &warden__v1__rollout_response__descriptor);
}

static void abort_cb(struct grpc_call *call, const ProtobufCMessage *msg,
                     void *data)
{
    const Warden__V1__AbortRolloutRequest *req =
        (const Warden__V1__AbortRolloutRequest *)msg;
    if (check_reason(call, req->reason) != 0) {
        return;
    }
    if (req->rollback != NULL && check_release_req(call, req->rollback) != 0) {
        return;
    }
    /* rollback needs admin: apply decides (audited DENIED when refused). */
    Warden__V1__Command cmd;
    svc_cmd_init(&cmd, grpc_call_principal(call), req->idempotency_key);
    cmd.op_case = OP_(ABORT_ROLLOUT);
    cmd.abort_rollout = (Warden__V1__AbortRolloutRequest *)req;
    propose(data, call, msg, &cmd, "abort rollout",
            &warden__v1__rollout_response__descriptor);
}

/* ---- devices --------------------------------------------------------------------- */

static void desired_cb(struct grpc_call *call, const ProtobufCMessage *msg,
                       void *data)
{
    struct svc_ctx *ctx = data;
    const Warden__V1__GetDesiredStateRequest *req =
        (const Warden__V1__GetDesiredStateRequest *)msg;
    if (svc_gateway_refuse(ctx, call, req->device_id)) {
        return;
    }
    Warden__V1__Command cmd;
    svc_cmd_init(&cmd, grpc_call_principal(call), req->idempotency_key);
    cmd.op_case = OP_(GET_DESIRED_STATE);
    cmd.get_desired_state = (Warden__V1__GetDesiredStateRequest *)req;
    propose(ctx, call, msg, &cmd, "get desired state",
            &warden__v1__get_desired_state_response__descriptor);
}

static void report_cb(struct grpc_call *call, const ProtobufCMessage *msg,
                      void *data)
{
    struct svc_ctx *ctx = data;
    const Warden__V1__ReportUpdateStatusRequest *req =
        (const Warden__V1__ReportUpdateStatusRequest *)msg;
    if (req->detail != NULL && strlen(req->detail) > RO_DETAIL_MAX) {
        grpc_call_fail(call, GRPC_STATUS_INVALID_ARGUMENT,
                       "detail is longer than %d bytes", RO_DETAIL_MAX);
        return;
    }
    if (svc_gateway_refuse(ctx, call, req->device_id)) {
        return;
    }
    /* No idempotency key: the report window makes a retry harmless (a
     * committed first attempt turns the retry into REPLAY). */
    Warden__V1__Command cmd;
    svc_cmd_init(&cmd, grpc_call_principal(call), NULL);
    cmd.op_case = OP_(REPORT_UPDATE_STATUS);
    cmd.report_update_status = (Warden__V1__ReportUpdateStatusRequest *)req;
    propose(ctx, call, msg, &cmd, "report update status",
            &warden__v1__report_update_status_response__descriptor);
}

/* ---- reads ------------------------------------------------------------------------ */

static void do_get_rollout(struct svc_ctx *ctx, struct grpc_call *call,
                           const ProtobufCMessage *msg)
{
    const Warden__V1__GetRolloutRequest *req =
        (const Warden__V1__GetRolloutRequest *)msg;
    struct wfsm *f = wnode_fsm(ctx->wn);
    struct werr e = {0};
    struct store_txn *t;
    if (store_txn_begin(svc_store(ctx), 0, &t, &e) != 0) {
        svc_fail(call, &e);
        return;
    }
    /* Gates are judged at the committed cluster time, as apply would: the
     * time of the state this read txn sees (an apply batch may be open). */
    struct ro_status st;
    int rc = ro_rollout_status(wfsm_ro(f), t, req->rollout_id,
                               wfsm_committed_cluster_time(f), &st, &e);
    store_txn_abort(t);
    if (rc != 0) {
        svc_fail(call, &e);
        return;
    }
    grpc_call_reply(call, &st.resp.base);
    ro_status_free(&st);
}

static void do_get_release(struct svc_ctx *ctx, struct grpc_call *call,
                           const ProtobufCMessage *msg)
{
    const Warden__V1__GetReleaseRequest *req =
        (const Warden__V1__GetReleaseRequest *)msg;
    struct werr e = {0};
    struct store_txn *t;
    if (store_txn_begin(svc_store(ctx), 0, &t, &e) != 0) {
        svc_fail(call, &e);
        return;
    }
    Warden__V1__GetReleaseResponse resp = WARDEN__V1__GET_RELEASE_RESPONSE__INIT;
    int rc = ro_release_get(wfsm_ro(wnode_fsm(ctx->wn)), t, req->release_id,
                            &resp.release, &e);
    store_txn_abort(t);
    if (rc != 0) {
        svc_fail(call, &e);
        return;
    }
    grpc_call_reply(call, &resp.base);
    warden__v1__release__free_unpacked(resp.release, NULL);
}

static void get_rollout_cb(struct grpc_call *call, const ProtobufCMessage *msg,
                           void *data)
{
    const Warden__V1__GetRolloutRequest *req =
        (const Warden__V1__GetRolloutRequest *)msg;
    svc_read(data, call, msg,
             req->consistency !=
                 WARDEN__V1__READ_CONSISTENCY__READ_CONSISTENCY_SERIALIZABLE,
             do_get_rollout, "linearizable read");
}

static void get_release_cb(struct grpc_call *call, const ProtobufCMessage *msg,
                           void *data)
{
    const Warden__V1__GetReleaseRequest *req =
        (const Warden__V1__GetReleaseRequest *)msg;
    svc_read(data, call, msg,
             req->consistency !=
                 WARDEN__V1__READ_CONSISTENCY__READ_CONSISTENCY_SERIALIZABLE,
             do_get_release, "linearizable read");
}

int svc_rollout_register(struct grpc_router *r, struct svc_ctx *ctx,
                         struct werr *e)
{
    /* docs/rollouts.md, "Server glue": the role mask of each method. */
    const unsigned admin = WROLE_ADMIN;
    const unsigned planners = WROLE_ADMIN | WROLE_ROLLOUT;
    /* Pause and Abort are brakes: operators may pull them too. */
    const unsigned brakes = WROLE_ADMIN | WROLE_ROLLOUT | WROLE_OPERATOR;
    const unsigned device_side = WROLE_GATEWAY | WROLE_ADMIN | WROLE_OPERATOR;
    const unsigned readers =
        WROLE_ADMIN | WROLE_ROLLOUT | WROLE_OPERATOR | WROLE_AUDITOR;
#define M(name, roles_, req, fn)                                               \
    {.path = "/warden.v1.Rollouts/" name,                                      \
     .roles = (roles_),                                                        \
     .req_desc = &warden__v1__##req##__descriptor,                             \
     .handler = (fn)}
    const struct grpc_method methods[] = {
        M("RegisterReleaseKey", admin, register_release_key_request,
          register_key_cb),
        M("RevokeReleaseKey", admin, revoke_release_key_request, revoke_key_cb),
        M("CreateRelease", planners, create_release_request, create_release_cb),
        M("GetRelease", readers, get_release_request, get_release_cb),
        M("CreateRollout", planners, create_rollout_request, create_rollout_cb),
        M("StartRollout", planners, start_rollout_request, start_cb),
        M("PauseRollout", brakes, pause_rollout_request, pause_cb),
        M("ResumeRollout", planners, resume_rollout_request, resume_cb),
        M("AdvanceRollout", planners, advance_rollout_request, advance_cb),
        M("AbortRollout", brakes, abort_rollout_request, abort_cb),
        M("GetRollout", readers, get_rollout_request, get_rollout_cb),
        M("GetDesiredState", device_side, get_desired_state_request,
          desired_cb),
        M("ReportUpdateStatus", device_side, report_update_status_request,
          report_cb),
    };
#undef M
    return svc_register_methods(r, ctx, methods,
                                sizeof methods / sizeof methods[0],
                                "svc_rollout_register", e);
}
