/* fsm_access.c - issue 5's Command ops (30-49) in the replicated state
 * machine: just-in-time access (domain/access.h; docs/access.md).
 *
 * Same shape as fsm.c's ops: the domain call runs in the apply txn, a
 * success is audited in that txn, and a failure is returned as OP_FAILED
 * (1) with res set, so fsm.c rolls the txn back and audits the rejection
 * in the second txn from the note wfsm__access_note() filled (docs/audit.md,
 * "How rejected actions are kept"). A CheckAccess DENY is a result, not a
 * failure: it commits, is audited, and replays for a retried key. */
#include "fsm_int.h"

#include <stdio.h>
#include <string.h>

#include "../domain/access.h"

#define A_(x) WARDEN__V1__AUDIT_ACTION__AUDIT_ACTION_##x
#define OK_ WARDEN__V1__AUDIT_OUTCOME__AUDIT_OUTCOME_OK
#define DENIED_ WARDEN__V1__AUDIT_OUTCOME__AUDIT_OUTCOME_DENIED

/* The op's request message, audit action and target; NULL for other ops. */
static const ProtobufCMessage *op_msg(const Warden__V1__Command *cmd,
                                      uint32_t *action, const char **target)
{
    switch (cmd->op_case) {
    case WARDEN__V1__COMMAND__OP_SET_ACCESS_POLICY:
        *action = A_(ACCESS_POLICY);
        *target = "access_policy";
        return &cmd->set_access_policy->base;
    case WARDEN__V1__COMMAND__OP_REQUEST_ACCESS:
        *action = A_(ACCESS_REQUEST);
        *target = cmd->request_access->n_device_ids
                      ? cmd->request_access->device_ids[0]
                      : "selector";
        return &cmd->request_access->base;
    case WARDEN__V1__COMMAND__OP_APPROVE_ACCESS:
        *action = A_(ACCESS_REVIEW);
        *target = cmd->approve_access->request_id;
        return &cmd->approve_access->base;
    case WARDEN__V1__COMMAND__OP_DENY_ACCESS:
        *action = A_(ACCESS_REVIEW);
        *target = cmd->deny_access->request_id;
        return &cmd->deny_access->base;
    case WARDEN__V1__COMMAND__OP_CHECK_ACCESS:
        *action = A_(ACCESS_CHECK);
        *target = cmd->check_access->device_id;
        return &cmd->check_access->base;
    case WARDEN__V1__COMMAND__OP_REVOKE_GRANT:
        *action = A_(ACCESS_REVOKE);
        *target = cmd->revoke_grant->grant_id;
        return &cmd->revoke_grant->base;
    case WARDEN__V1__COMMAND__OP_LOCK:
        *action = A_(ACCESS_LOCK);
        *target = cmd->lock->value[0] ? cmd->lock->value : "lock";
        return &cmd->lock->base;
    case WARDEN__V1__COMMAND__OP_UNLOCK:
        *action = A_(ACCESS_UNLOCK);
        *target = cmd->unlock->lock_id;
        return &cmd->unlock->base;
    default:
        return NULL;
    }
}

int wfsm__access_note(const Warden__V1__Command *cmd, uint32_t *action,
                      char *target, size_t cap, uint8_t digest[AUDIT_HASH_LEN],
                      struct werr *e)
{
    uint32_t a = 0;
    const char *tg = "";
    const ProtobufCMessage *m = op_msg(cmd, &a, &tg);
    if (m == NULL) {
        return 0;
    }
    *action = a;
    snprintf(target, cap, "%s", tg ? tg : "");
    return wfsm__msg_digest(m, digest, e);
}

/* ---- helpers ------------------------------------------------------------ */

/* wfsm__op_status() (which codes an uncoded failure with rc). */
static int status(int rc, const struct werr *oe, struct wfsm_result *res,
                  struct werr *e)
{
    return wfsm__op_status(rc, oe, res, e);
}

static int audit_ok(struct wfsm *f, struct store_txn *t,
                    const struct dom_ctx *ctx, const Warden__V1__Command *cmd,
                    uint32_t outcome, const char *target, const char *detail,
                    struct werr *e)
{
    uint32_t action = 0;
    const char *tg = "";
    const ProtobufCMessage *m = op_msg(cmd, &action, &tg);
    uint8_t dg[AUDIT_HASH_LEN];
    int rc = wfsm__msg_digest(m, dg, e);
    if (rc) {
        return rc;
    }
    struct audit_event ev = {
        .action = action,
        .outcome = outcome,
        .target = target ? target : tg,
        .detail = detail,
        .request_digest = dg,
    };
    return audit_append(f->audit, t, ctx, &ev, NULL, e);
}

static const char *enum_name(const ProtobufCEnumDescriptor *d, int v)
{
    const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(d, v);
    return ev ? ev->name : "?";
}

/* ---- ops ------------------------------------------------------------------ */

static int op_policy(struct wfsm *f, struct store_txn *t, struct access *a,
                     const struct dom_ctx *ctx, const Warden__V1__Command *cmd,
                     struct wfsm_result *res, struct werr *e)
{
    struct werr oe = {0};
    Warden__V1__AccessPolicy *p = NULL;
    int rc = status(acc_policy_set(a, t, ctx, cmd->set_access_policy, &p, &oe),
                    &oe, res, e);
    if (rc) {
        return rc;
    }
    char detail[AUDIT_DETAIL_MAX + 1];
    int off = snprintf(detail, sizeof detail, "K %llu retention %llu;",
                       (unsigned long long)p->lock_view_max_lag,
                       (unsigned long long)p->revlog_retention);
    for (size_t i = 0; i < p->n_rules && off > 0 && (size_t)off < sizeof detail;
         i++) {
        const Warden__V1__AccessPurposeRule *r = p->rules[i];
        off += snprintf(detail + off, sizeof detail - (size_t)off,
                        " %s %u-of roles 0x%x max %llums uses %u ttl %llums;",
                        acc_purpose_name((int)r->purpose), r->approvals_required,
                        r->reviewer_roles, (unsigned long long)r->max_duration_ms,
                        r->max_uses, (unsigned long long)r->pending_ttl_ms);
    }
    if ((rc = audit_ok(f, t, ctx, cmd, OK_, NULL, detail, e)) == 0) {
        Warden__V1__SetAccessPolicyResponse r =
            WARDEN__V1__SET_ACCESS_POLICY_RESPONSE__INIT;
        r.policy = p;
        rc = wfsm__pack_resp(res, &r.base, e);
    }
    acc_msg_free(p);
    return rc;
}

static int op_request(struct wfsm *f, struct store_txn *t, struct access *a,
                      const struct dom_ctx *ctx, const Warden__V1__Command *cmd,
                      struct wfsm_result *res, struct werr *e)
{
    struct werr oe = {0};
    Warden__V1__AccessRequest *r = NULL;
    int rc = status(acc_request(a, t, ctx, cmd->request_access, &r, &oe), &oe,
                    res, e);
    if (rc) {
        return rc;
    }
    char detail[AUDIT_DETAIL_MAX + 1];
    snprintf(detail, sizeof detail, "%s, %zu device(s) from %s, %llums x %u: %s",
             acc_purpose_name((int)r->purpose), r->n_device_ids,
             r->n_device_ids ? r->device_ids[0] : "-",
             (unsigned long long)r->duration_ms, r->max_sessions, r->reason);
    if ((rc = audit_ok(f, t, ctx, cmd, OK_, r->request_id, detail, e)) == 0) {
        Warden__V1__RequestAccessResponse m =
            WARDEN__V1__REQUEST_ACCESS_RESPONSE__INIT;
        m.request = r;
        rc = wfsm__pack_resp(res, &m.base, e);
    }
    acc_msg_free(r);
    return rc;
}

static int op_review(struct wfsm *f, struct store_txn *t, struct access *a,
                     const struct dom_ctx *ctx, const Warden__V1__Command *cmd,
                     int approve, struct wfsm_result *res, struct werr *e)
{
    struct werr oe = {0};
    Warden__V1__AccessRequest *r = NULL;
    Warden__V1__AccessGrant *g = NULL;
    const Warden__V1__ReviewAccessRequest *q =
        approve ? cmd->approve_access : cmd->deny_access;
    int rc = status(acc_review(a, t, ctx, q, approve, &r, &g, &oe), &oe, res, e);
    if (rc) {
        return rc;
    }
    size_t yes = 0;
    for (size_t i = 0; i < r->n_votes; i++) {
        yes += r->votes[i]->approve ? 1u : 0u;
    }
    char detail[AUDIT_DETAIL_MAX + 1];
    if (g != NULL) {
        snprintf(detail, sizeof detail,
                 "approve (%zu approvals) -> GRANTED %s until %llu: %s", yes,
                 g->grant_id, (unsigned long long)g->expires_ms, q->comment);
    } else {
        snprintf(detail, sizeof detail, "%s (%zu approvals) -> %s: %s",
                 approve ? "approve" : "deny", yes,
                 enum_name(&warden__v1__access_request_state__descriptor,
                           (int)r->state),
                 q->comment);
    }
    if ((rc = audit_ok(f, t, ctx, cmd, OK_, r->request_id, detail, e)) == 0) {
        Warden__V1__ReviewAccessResponse m =
            WARDEN__V1__REVIEW_ACCESS_RESPONSE__INIT;
        m.request = r;
        m.grant = g;
        rc = wfsm__pack_resp(res, &m.base, e);
    }
    acc_msg_free(g);
    acc_msg_free(r);
    return rc;
}

static int op_check(struct wfsm *f, struct store_txn *t, struct access *a,
                    const struct dom_ctx *ctx, const Warden__V1__Command *cmd,
                    struct wfsm_result *res, struct werr *e)
{
    struct werr oe = {0};
    struct acc_check_result cr;
    const Warden__V1__CheckAccessRequest *q = cmd->check_access;
    int rc = status(acc_check(a, t, ctx, q, &cr, &oe), &oe, res, e);
    if (rc) {
        return rc;
    }
    int allow = cr.decision == WARDEN__V1__ACCESS_DECISION__ACCESS_DECISION_ALLOW;
    char detail[AUDIT_DETAIL_MAX + 1];
    if (allow) {
        snprintf(detail, sizeof detail,
                 "ALLOW %s %s/%u%s%s grant %s uses left %u, %llums left",
                 q->principal, q->protocol, q->port,
                 q->command_class[0] ? " class " : "", q->command_class,
                 cr.grant_id, cr.remaining_uses,
                 (unsigned long long)cr.remaining_ms);
    } else {
        snprintf(detail, sizeof detail, "DENY %s %s %s/%u%s%s%s%s", q->principal,
                 enum_name(&warden__v1__access_deny_reason__descriptor, cr.reason),
                 q->protocol, q->port, q->command_class[0] ? " class " : "",
                 q->command_class, cr.lock_id[0] ? " lock " : "", cr.lock_id);
    }
    if ((rc = audit_ok(f, t, ctx, cmd, allow ? OK_ : DENIED_, NULL, detail, e)) !=
        0) {
        return rc;
    }
    Warden__V1__CheckAccessResponse m = WARDEN__V1__CHECK_ACCESS_RESPONSE__INIT;
    m.decision = (Warden__V1__AccessDecision)cr.decision;
    m.reason = (Warden__V1__AccessDenyReason)cr.reason;
    m.grant_id = cr.grant_id;
    m.remaining_ms = cr.remaining_ms;
    m.remaining_uses = cr.remaining_uses;
    m.revision = cr.revision;
    m.lock_id = cr.lock_id;
    return wfsm__pack_resp(res, &m.base, e);
}

static int op_revoke(struct wfsm *f, struct store_txn *t, struct access *a,
                     const struct dom_ctx *ctx, const Warden__V1__Command *cmd,
                     struct wfsm_result *res, struct werr *e)
{
    struct werr oe = {0};
    Warden__V1__AccessGrant *g = NULL;
    int rc = status(acc_revoke_grant(a, t, ctx, cmd->revoke_grant, &g, &oe), &oe,
                    res, e);
    if (rc) {
        return rc;
    }
    char detail[AUDIT_DETAIL_MAX + 1];
    snprintf(detail, sizeof detail, "principal %s, %zu device(s): %s",
             g->principal, g->n_device_ids, cmd->revoke_grant->reason);
    if ((rc = audit_ok(f, t, ctx, cmd, OK_, NULL, detail, e)) == 0) {
        Warden__V1__RevokeGrantResponse m = WARDEN__V1__REVOKE_GRANT_RESPONSE__INIT;
        m.grant = g;
        rc = wfsm__pack_resp(res, &m.base, e);
    }
    acc_msg_free(g);
    return rc;
}

static int op_lock(struct wfsm *f, struct store_txn *t, struct access *a,
                   const struct dom_ctx *ctx, const Warden__V1__Command *cmd,
                   int lock, struct wfsm_result *res, struct werr *e)
{
    struct werr oe = {0};
    Warden__V1__AccessLock *l = NULL;
    int rc = lock ? acc_lock(a, t, ctx, cmd->lock, &l, &oe)
                  : acc_unlock(a, t, ctx, cmd->unlock, &l, &oe);
    if ((rc = status(rc, &oe, res, e)) != 0) {
        return rc;
    }
    char detail[AUDIT_DETAIL_MAX + 1];
    snprintf(detail, sizeof detail, "%s %s%s%s; revoked %u now%s; expires %llu: %s",
             enum_name(&warden__v1__lock_target_kind__descriptor, (int)l->kind),
             l->value, l->n_selector ? " selector " : "",
             l->n_selector ? l->selector[0]->key : "", l->revoked_now,
             l->lazy ? ", rest at check time" : "",
             (unsigned long long)l->expires_ms,
             lock ? l->reason : cmd->unlock->reason);
    if ((rc = audit_ok(f, t, ctx, cmd, OK_, l->lock_id, detail, e)) == 0) {
        if (lock) {
            Warden__V1__LockResponse m = WARDEN__V1__LOCK_RESPONSE__INIT;
            m.lock = l;
            rc = wfsm__pack_resp(res, &m.base, e);
        } else {
            Warden__V1__UnlockResponse m = WARDEN__V1__UNLOCK_RESPONSE__INIT;
            m.lock = l;
            rc = wfsm__pack_resp(res, &m.base, e);
        }
    }
    acc_msg_free(l);
    return rc;
}

int wfsm__access_run(struct wfsm *f, struct store_txn *t,
                     const struct dom_ctx *ctx, const Warden__V1__Command *cmd,
                     struct wfsm_result *res, struct werr *e)
{
    struct access a;
    int rc = acc_bind(&a, f->s, f->inv, e);
    if (rc) {
        return werr_set(e, WERR_INTERNAL, "access dbs are not open: %s", e->msg);
    }
    /* Bounded upkeep first (pending expiry, dead grants), so every op sees
     * the same cleaned state on every node. */
    if ((rc = acc_sweep(&a, t, ctx->time_ms, e)) != 0) {
        return rc;
    }
    switch (cmd->op_case) {
    case WARDEN__V1__COMMAND__OP_SET_ACCESS_POLICY:
        return op_policy(f, t, &a, ctx, cmd, res, e);
    case WARDEN__V1__COMMAND__OP_REQUEST_ACCESS:
        return op_request(f, t, &a, ctx, cmd, res, e);
    case WARDEN__V1__COMMAND__OP_APPROVE_ACCESS:
        return op_review(f, t, &a, ctx, cmd, 1, res, e);
    case WARDEN__V1__COMMAND__OP_DENY_ACCESS:
        return op_review(f, t, &a, ctx, cmd, 0, res, e);
    case WARDEN__V1__COMMAND__OP_CHECK_ACCESS:
        return op_check(f, t, &a, ctx, cmd, res, e);
    case WARDEN__V1__COMMAND__OP_REVOKE_GRANT:
        return op_revoke(f, t, &a, ctx, cmd, res, e);
    case WARDEN__V1__COMMAND__OP_LOCK:
        return op_lock(f, t, &a, ctx, cmd, 1, res, e);
    case WARDEN__V1__COMMAND__OP_UNLOCK:
        return op_lock(f, t, &a, ctx, cmd, 0, res, e);
    default:
        return werr_set(e, WERR_INTERNAL, "wfsm__access_run: op %d",
                        (int)cmd->op_case);
    }
}
