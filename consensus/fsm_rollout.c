/* fsm_rollout.c - issue 6's Command ops (field numbers 50-69 of
 * warden.v1.Command) applied through domain/rollout.h, in the txn fsm.c
 * opened for the entry (contract: fsm_int.h; what each op audits:
 * docs/rollouts.md).
 *
 * Every rollout op first runs the bounded housekeeping (timeouts, then the
 * gates of live rollouts) so that it sees the rollout as of this entry's
 * cluster time; so does every Tick. A failed op is rolled back by fsm.c;
 * its rejection is audited there from the note filled in here, and a
 * transition refused by the state table is counted by
 * wfsm__rollout_failed() in that second txn. */
#include "fsm_int.h"
#include "fsm_rollout.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define A_(x) WARDEN__V1__AUDIT_ACTION__AUDIT_ACTION_##x
#define OP_(x) WARDEN__V1__COMMAND__OP_##x

struct ro *wfsm_ro(struct wfsm *f)
{
    return f->ro;
}

int wfsm__rollout_note(const Warden__V1__Command *cmd, uint32_t *action,
                       char *target, size_t cap, uint8_t digest[AUDIT_HASH_LEN],
                       int *perm_only, struct werr *e)
{
    const ProtobufCMessage *m = NULL;
    uint64_t rid = 0;
    const char *tgt = NULL;
    uint32_t a = 0;
    switch (cmd->op_case) {
    case OP_(REGISTER_RELEASE_KEY):
        a = A_(RELEASE_KEY_REGISTER);
        m = &cmd->register_release_key->base;
        tgt = cmd->register_release_key->key_id;
        break;
    case OP_(REVOKE_RELEASE_KEY):
        a = A_(RELEASE_KEY_REVOKE);
        m = &cmd->revoke_release_key->base;
        tgt = cmd->revoke_release_key->key_id;
        break;
    case OP_(CREATE_RELEASE):
        a = cmd->create_release->rollback_of ? A_(RELEASE_ROLLBACK)
                                             : A_(RELEASE_CREATE);
        m = &cmd->create_release->base;
        tgt = cmd->create_release->key_id;
        break;
    case OP_(CREATE_ROLLOUT):
        a = A_(ROLLOUT_CREATE);
        m = &cmd->create_rollout->base;
        snprintf(target, cap, "release/%llu",
                 (unsigned long long)cmd->create_rollout->release_id);
        break;
    case OP_(START_ROLLOUT):
        a = A_(ROLLOUT_TRANSITION);
        m = &cmd->start_rollout->base;
        rid = cmd->start_rollout->rollout_id;
        break;
    case OP_(PAUSE_ROLLOUT):
        a = A_(ROLLOUT_TRANSITION);
        m = &cmd->pause_rollout->base;
        rid = cmd->pause_rollout->rollout_id;
        break;
    case OP_(RESUME_ROLLOUT):
        a = A_(ROLLOUT_TRANSITION);
        m = &cmd->resume_rollout->base;
        rid = cmd->resume_rollout->rollout_id;
        break;
    case OP_(ADVANCE_ROLLOUT):
        a = A_(ROLLOUT_TRANSITION);
        m = &cmd->advance_rollout->base;
        rid = cmd->advance_rollout->rollout_id;
        break;
    case OP_(ABORT_ROLLOUT):
        a = A_(ROLLOUT_TRANSITION);
        m = &cmd->abort_rollout->base;
        rid = cmd->abort_rollout->rollout_id;
        break;
    case OP_(GET_DESIRED_STATE):
        /* Device traffic: only denials are audited (volume, like
         * telemetry); assignments are counted on the rollout. */
        a = A_(ROLLOUT_DEVICE);
        *perm_only = 1;
        m = &cmd->get_desired_state->base;
        tgt = cmd->get_desired_state->device_id;
        break;
    case OP_(REPORT_UPDATE_STATUS):
        a = A_(ROLLOUT_DEVICE);
        *perm_only = 1;
        m = &cmd->report_update_status->base;
        tgt = cmd->report_update_status->device_id;
        break;
    default:
        return 0;
    }
    *action = a;
    if (tgt != NULL) {
        snprintf(target, cap, "%s", tgt);
    } else if (rid != 0) {
        snprintf(target, cap, "rollout/%llu", (unsigned long long)rid);
    }
    return wfsm__msg_digest(m, digest, e);
}

/* The tail of an op whose domain call filled `owned`, a message of its own
 * inside the response `resp`: the call's status, then resp packed and
 * owned freed. */
static int reply(int rc, const struct werr *oe, const ProtobufCMessage *resp,
                 ProtobufCMessage *owned, struct wfsm_result *res,
                 struct werr *e)
{
    if ((rc = wfsm__op_status(rc, oe, res, e)) != 0) {
        return rc;
    }
    rc = wfsm__pack_resp(res, resp, e);
    if (owned != NULL) {
        protobuf_c_message_free_unpacked(owned, NULL);
    }
    return rc;
}

static int run_transition(struct wfsm *f, struct store_txn *t,
                          const struct dom_ctx *ctx,
                          const struct ro_transition_req *tr,
                          struct wfsm__ro_note *rn, struct wfsm_result *res,
                          struct werr *e)
{
    struct werr oe = {0};
    struct ro_transition_out out;
    int rc = ro_rollout_transition(f->ro, t, ctx, tr, &out, &oe);
    if (rc == WERR_PRECOND && out.refused) {
        rn->refused = 1;
        rn->from = out.from;
        rn->event = tr->event;
        rn->rollout_id = tr->rollout_id;
    }
    if ((rc = wfsm__op_status(rc, &oe, res, e)) != 0) {
        return rc; /* out is not filled */
    }
    Warden__V1__RolloutResponse r = WARDEN__V1__ROLLOUT_RESPONSE__INIT;
    r.rollout = out.rollout;
    r.rollback_release_id = out.rollback_release_id;
    r.rollback_rollout_id = out.rollback_rollout_id;
    return reply(0, &oe, &r.base, (ProtobufCMessage *)out.rollout, res, e);
}

static int run_desired(struct wfsm *f, struct store_txn *t,
                       const struct dom_ctx *ctx,
                       const Warden__V1__GetDesiredStateRequest *req,
                       struct wfsm_result *res, struct werr *e)
{
    struct werr oe = {0};
    struct ro_desired d;
    int rc = wfsm__op_status(ro_desired_state(f->ro, t, ctx, req, &d, &oe), &oe,
                             res, e);
    if (rc) {
        return rc;
    }
    Warden__V1__GetDesiredStateResponse r =
        WARDEN__V1__GET_DESIRED_STATE_RESPONSE__INIT;
    r.envelope.data = d.ci.envelope;
    r.envelope.len = d.ci.envelope_len;
    r.signature.data = d.ci.sig;
    r.signature.len = sizeof d.ci.sig;
    r.key_id = d.ci.key_id;
    r.seq = d.ci.seq;
    r.key_epoch = d.ci.key_epoch;
    r.has_target = d.has_target;
    r.rollout_id = d.rollout_id;
    r.release = d.release;
    r.installed_counter = d.installed_counter;
    rc = wfsm__pack_resp(res, &r.base, e);
    ro_desired_free(&d);
    return rc;
}

int wfsm__rollout_run(struct wfsm *f, struct store_txn *t,
                      const struct dom_ctx *ctx, const Warden__V1__Command *cmd,
                      struct wfsm__ro_note *rn, struct wfsm_result *res,
                      struct werr *e)
{
    int rc = ro_housekeep(f->ro, t, ctx, e);
    if (rc) {
        return rc;
    }
    struct werr oe = {0};
    struct ro_transition_req tr = {0};
    switch (cmd->op_case) {
    case OP_(REGISTER_RELEASE_KEY): {
        Warden__V1__RegisterReleaseKeyResponse r =
            WARDEN__V1__REGISTER_RELEASE_KEY_RESPONSE__INIT;
        rc = ro_key_register(f->ro, t, ctx, cmd->register_release_key, &r.key,
                             &oe);
        return reply(rc, &oe, &r.base, (ProtobufCMessage *)r.key, res, e);
    }
    case OP_(REVOKE_RELEASE_KEY): {
        Warden__V1__RevokeReleaseKeyResponse r =
            WARDEN__V1__REVOKE_RELEASE_KEY_RESPONSE__INIT;
        rc = ro_key_revoke(f->ro, t, ctx, cmd->revoke_release_key, &r.key, &oe);
        return reply(rc, &oe, &r.base, (ProtobufCMessage *)r.key, res, e);
    }
    case OP_(CREATE_RELEASE): {
        Warden__V1__CreateReleaseResponse r =
            WARDEN__V1__CREATE_RELEASE_RESPONSE__INIT;
        rc = ro_release_create(f->ro, t, ctx, cmd->create_release, &r.release,
                               &oe);
        return reply(rc, &oe, &r.base, (ProtobufCMessage *)r.release, res, e);
    }
    case OP_(CREATE_ROLLOUT): {
        Warden__V1__RolloutResponse r = WARDEN__V1__ROLLOUT_RESPONSE__INIT;
        rc = ro_rollout_create(f->ro, t, ctx, cmd->create_rollout, &r.rollout,
                               &oe);
        return reply(rc, &oe, &r.base, (ProtobufCMessage *)r.rollout, res, e);
    }
    case OP_(START_ROLLOUT):
        tr.rollout_id = cmd->start_rollout->rollout_id;
        tr.event = RO_EV_START;
        tr.reason = cmd->start_rollout->reason;
        return run_transition(f, t, ctx, &tr, rn, res, e);
    case OP_(PAUSE_ROLLOUT):
        tr.rollout_id = cmd->pause_rollout->rollout_id;
        tr.event = RO_EV_PAUSE;
        tr.reason = cmd->pause_rollout->reason;
        return run_transition(f, t, ctx, &tr, rn, res, e);
    case OP_(RESUME_ROLLOUT):
        tr.rollout_id = cmd->resume_rollout->rollout_id;
        tr.event = RO_EV_RESUME;
        tr.reason = cmd->resume_rollout->reason;
        return run_transition(f, t, ctx, &tr, rn, res, e);
    case OP_(ADVANCE_ROLLOUT):
        tr.rollout_id = cmd->advance_rollout->rollout_id;
        tr.event = RO_EV_ADVANCE;
        tr.reason = cmd->advance_rollout->reason;
        tr.force = cmd->advance_rollout->force;
        return run_transition(f, t, ctx, &tr, rn, res, e);
    case OP_(ABORT_ROLLOUT):
        tr.rollout_id = cmd->abort_rollout->rollout_id;
        tr.event = RO_EV_ABORT;
        tr.reason = cmd->abort_rollout->reason;
        tr.rollback = cmd->abort_rollout->rollback;
        return run_transition(f, t, ctx, &tr, rn, res, e);
    case OP_(GET_DESIRED_STATE):
        return run_desired(f, t, ctx, cmd->get_desired_state, res, e);
    case OP_(REPORT_UPDATE_STATUS): {
        Warden__V1__ReportUpdateStatusResponse r;
        rc = wfsm__op_status(
            ro_report(f->ro, t, ctx, cmd->report_update_status, &r, &oe), &oe,
            res, e);
        return rc ? rc : wfsm__pack_resp(res, &r.base, e);
    }
    default:
        return werr_set(e, WERR_INTERNAL, "fsm_rollout: op %d is not a rollout op",
                        (int)cmd->op_case);
    }
}

int wfsm__rollout_tick(struct wfsm *f, struct store_txn *t,
                       const struct dom_ctx *ctx, struct werr *e)
{
    return ro_housekeep(f->ro, t, ctx, e);
}

int wfsm__rollout_failed(struct wfsm *f, struct store_txn *t,
                         const struct wfsm__ro_note *rn, struct werr *e)
{
    if (!rn->refused) {
        return 0;
    }
    return ro_reject_count_add(f->ro, t, rn->rollout_id, rn->from, rn->event, e);
}
