/* rollout_plan.c - rollouts: create, the state table's transitions, gate
 * decisions and bounded housekeeping (contract: rollout.h; policy:
 * docs/rollouts.md). Every state change is one audited write in the
 * caller's txn: manual ones ROLLOUT_TRANSITION, automatic ones (the gates)
 * ROLLOUT_GATE. */
#include "rollout_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "inv_int.h"
#include "lifecycle.h"

#define S_(x) WARDEN__V1__ROLLOUT_STATE__ROLLOUT_STATE_##x
#define A_(x) WARDEN__V1__AUDIT_ACTION__AUDIT_ACTION_##x
#define CTR_REJ "ro.rej"

void ro__rollout_free(Warden__V1__Rollout *r)
{
    if (r != NULL) {
        warden__v1__rollout__free_unpacked(r, NULL);
    }
}

int ro__rollout_load(struct ro *ro, struct store_txn *t, uint64_t id,
                     Warden__V1__Rollout **out, struct werr *e)
{
    uint8_t k[RO__KEY_MAX];
    size_t kl = ro__key_u64('o', id, k);
    struct store_val v;
    int rc = store_get(t, ro->meta, k, kl, &v, e);
    if (rc == WERR_NOTFOUND) {
        return werr_set(e, WERR_NOTFOUND, "no rollout %llu",
                        (unsigned long long)id);
    }
    if (rc) {
        return rc;
    }
    Warden__V1__Rollout *r = warden__v1__rollout__unpack(NULL, v.len, v.data);
    if (r == NULL || r->n_stages == 0 || r->n_stages > RO_STAGES_MAX ||
        r->n_counters != r->n_stages || r->current_stage >= r->n_stages) {
        ro__rollout_free(r);
        return werr_set(e, WERR_CORRUPT, "rollout %llu is corrupt",
                        (unsigned long long)id);
    }
    *out = r;
    return 0;
}

int ro_rollout_get(struct ro *ro, struct store_txn *t, uint64_t id,
                   Warden__V1__Rollout **out, struct werr *e)
{
    return ro__rollout_load(ro, t, id, out, e);
}

int ro__rollout_store(struct ro *ro, struct store_txn *t,
                      const Warden__V1__Rollout *r, struct werr *e)
{
    uint8_t k[RO__KEY_MAX];
    size_t kl = ro__key_u64('o', r->rollout_id, k);
    return ro__put_msg(ro, t, ro->meta, k, kl, &r->base, 0, e);
}

/* ---- live list --------------------------------------------------------------*/

int ro__live_set(struct ro *ro, struct store_txn *t, uint64_t id, int live,
                 struct werr *e)
{
    uint8_t k[RO__KEY_MAX];
    size_t kl = ro__key_u64('L', id, k);
    if (live) {
        return store_put(t, ro->meta, k, kl, "", 0, 0, e);
    }
    int rc = store_del(t, ro->meta, k, kl, e);
    return rc == WERR_NOTFOUND ? 0 : rc;
}

int ro__live_list(struct ro *ro, struct store_txn *t,
                  uint64_t ids[RO_LIVE_MAX], size_t *n, struct werr *e)
{
    *n = 0;
    struct store_cursor *c;
    int rc = store_cursor_open(t, ro->meta, &c, e);
    if (rc) {
        return rc;
    }
    struct store_val k, v;
    rc = store_cursor_seek(c, "L/", 2, &k, &v, e);
    while (rc == 0 && *n < RO_LIVE_MAX && k.len == 10 &&
           memcmp(k.data, "L/", 2) == 0) {
        ids[(*n)++] = ro__get_be64((const uint8_t *)k.data + 2);
        rc = store_cursor_next(c, &k, &v, e);
    }
    store_cursor_close(c);
    return rc == WERR_NOTFOUND ? 0 : rc;
}

/* ---- create -------------------------------------------------------------------*/

static int check_selector(const Warden__V1__RolloutSelector *s, struct werr *e)
{
    if (s == NULL) {
        return 0;
    }
    if (s->n_labels > RO_SELECTOR_LABELS_MAX) {
        return werr_set(e, WERR_INVALID, "selector: %zu labels, max %d",
                        s->n_labels, RO_SELECTOR_LABELS_MAX);
    }
    for (size_t i = 0; i < s->n_labels; i++) {
        const Warden__V1__Label *l = s->labels[i];
        if (l->key[0] == '\0' || !ro__text_ok(l->key, INV_LABEL_KEY_MAX) ||
            !ro__text_ok(l->value, INV_LABEL_VALUE_MAX)) {
            return werr_set(e, WERR_INVALID,
                            "selector: labels[%zu] needs a key of 1..%d and a "
                            "value of 0..%d printable bytes", i, INV_LABEL_KEY_MAX,
                            INV_LABEL_VALUE_MAX);
        }
    }
    if (!ro__text_ok(s->hardware_model, INV_MODEL_MAX) ||
        !ro__text_ok(s->gateway_id, INV_GATEWAY_MAX)) {
        return werr_set(e, WERR_INVALID, "selector: hardware_model or gateway_id "
                        "too long or not printable");
    }
    return 0;
}

static int check_stages(Warden__V1__RolloutStage *const *st, size_t n,
                        struct werr *e)
{
    if (n == 0 || n > RO_STAGES_MAX) {
        return werr_set(e, WERR_INVALID, "%zu stages, want 1..%d", n, RO_STAGES_MAX);
    }
    uint32_t prev = 0;
    for (size_t i = 0; i < n; i++) {
        const Warden__V1__RolloutStage *s = st[i];
        uint32_t pct = s->percent_bp == 0 && s->max_devices > 0 ? RO_BP : s->percent_bp;
        if (!ro__text_ok(s->name, RO_STAGE_NAME_MAX)) {
            return werr_set(e, WERR_INVALID, "stages[%zu]: name over %d bytes", i,
                            RO_STAGE_NAME_MAX);
        }
        if (pct == 0 || pct > RO_BP) {
            return werr_set(e, WERR_INVALID,
                            "stages[%zu]: percent_bp %u, want 1..%u (or a "
                            "max_devices count)", i, s->percent_bp, RO_BP);
        }
        if (pct < prev) {
            return werr_set(e, WERR_INVALID,
                            "stages[%zu]: percent_bp %u below the previous "
                            "stage's %u (shares are cumulative)", i, pct, prev);
        }
        if (s->success_ratio_bp > RO_BP || s->failure_ratio_bp > RO_BP ||
            s->failed_ratio_bp > RO_BP || s->rejected_ratio_bp > RO_BP ||
            s->timed_out_ratio_bp > RO_BP) {
            return werr_set(e, WERR_INVALID, "stages[%zu]: ratios are basis "
                            "points, at most %u", i, RO_BP);
        }
        prev = pct;
    }
    return 0;
}

/* Build and store a new rollout from borrowed parts. */
static int rollout_put_new(struct ro *ro, struct store_txn *t,
                           const struct dom_ctx *ctx, const char *name,
                           const Warden__V1__Release *rel,
                           Warden__V1__RolloutSelector *sel,
                           Warden__V1__RolloutStage **stages, size_t n_stages,
                           uint64_t only_installed, struct werr *e)
{
    Warden__V1__StageCounters ctr[RO_STAGES_MAX];
    Warden__V1__StageCounters *ctrp[RO_STAGES_MAX];
    for (size_t i = 0; i < n_stages; i++) {
        warden__v1__stage_counters__init(&ctr[i]);
        ctrp[i] = &ctr[i];
    }
    Warden__V1__Rollout r = WARDEN__V1__ROLLOUT__INIT;
    r.rollout_id = ctx->index;
    r.name = (char *)(name ? name : "");
    r.release_id = rel->release_id;
    r.release_counter = rel->release_counter;
    r.selector = sel;
    r.n_stages = n_stages;
    r.stages = stages;
    r.n_counters = n_stages;
    r.counters = ctrp;
    r.state = S_(DRAFT);
    r.reason = (char *)"created";
    r.created_index = r.updated_index = ctx->index;
    r.created_time_ms = r.updated_time_ms = ctx->time_ms;
    r.created_by = (char *)ctx->who->name;
    r.only_installed_release = only_installed;
    uint8_t k[RO__KEY_MAX];
    size_t kl = ro__key_u64('o', r.rollout_id, k);
    int rc = ro__put_msg(ro, t, ro->meta, k, kl, &r.base, STORE_NOOVERWRITE, e);
    if (rc == WERR_EXISTS) {
        return werr_set(e, WERR_EXISTS, "rollout %llu exists",
                        (unsigned long long)r.rollout_id);
    }
    if (rc) {
        return rc;
    }
    char target[48], detail[AUDIT_DETAIL_MAX + 1];
    ro__target(target, sizeof target, "rollout", r.rollout_id);
    snprintf(detail, sizeof detail, "release %llu (%s, counter %llu), %zu stage(s)%s",
             (unsigned long long)rel->release_id, rel->version,
             (unsigned long long)rel->release_counter, n_stages,
             only_installed ? ", rollback" : "");
    return ro__audit(ro, t, ctx, A_(ROLLOUT_CREATE), target, detail, e);
}

int ro_rollout_create(struct ro *ro, struct store_txn *t,
                      const struct dom_ctx *ctx,
                      const Warden__V1__CreateRolloutRequest *req,
                      Warden__V1__Rollout **out, struct werr *e)
{
    int rc;
    if ((rc = lc_may_act(ctx->who, NULL, WROLE_ADMIN | WROLE_ROLLOUT,
                         "create rollouts", e)) != 0 ||
        (rc = check_selector(req->selector, e)) != 0 ||
        (rc = check_stages(req->stages, req->n_stages, e)) != 0) {
        return rc;
    }
    if (!ro__text_ok(req->name, RO_NAME_MAX)) {
        return werr_set(e, WERR_INVALID, "name: at most %d printable bytes",
                        RO_NAME_MAX);
    }
    Warden__V1__Release *rel;
    if ((rc = ro_release_get(ro, t, req->release_id, &rel, e)) != 0) {
        return rc;
    }
    Warden__V1__RolloutSelector empty = WARDEN__V1__ROLLOUT_SELECTOR__INIT;
    rc = rollout_put_new(ro, t, ctx, req->name, rel,
                         req->selector ? req->selector : &empty, req->stages,
                         req->n_stages, 0, e);
    ro__release_free(rel);
    if (rc == 0 && out != NULL) {
        rc = ro__rollout_load(ro, t, ctx->index, out, e);
    }
    return rc;
}

/* ---- transitions ----------------------------------------------------------*/

static int set_reason(Warden__V1__Rollout *r, const struct dom_ctx *ctx,
                      const char *reason, struct werr *e)
{
    r->updated_index = ctx->index;
    r->updated_time_ms = ctx->time_ms;
    return inv__set_str(&r->reason, reason, e);
}

static void stage_start(Warden__V1__Rollout *r, uint32_t k,
                        const struct dom_ctx *ctx)
{
    r->current_stage = k;
    /* Cluster time 0 would read as "not started"; it only happens in tests
     * that never set a time. */
    r->counters[k]->started_time_ms = ctx->time_ms ? ctx->time_ms : 1;
    r->counters[k]->started_index = ctx->index;
}

/* RUNNING(k) -> RUNNING(k+1), or COMPLETED from the last stage. */
static int advance(struct ro *ro, struct store_txn *t, const struct dom_ctx *ctx,
                   Warden__V1__Rollout *r, struct werr *e)
{
    if (r->current_stage + 1 < r->n_stages) {
        stage_start(r, r->current_stage + 1, ctx);
        return 0;
    }
    r->state = S_(COMPLETED);
    return ro__live_set(ro, t, r->rollout_id, 0, e);
}

int ro__evaluate(struct ro *ro, struct store_txn *t, const struct dom_ctx *ctx,
                 Warden__V1__Rollout *r, int *changed, struct werr *e)
{
    char target[48], detail[AUDIT_DETAIL_MAX + 1];
    ro__target(target, sizeof target, "rollout", r->rollout_id);
    /* At most one step per stage: bounded however the gates are set. */
    for (unsigned step = 0; step <= RO_STAGES_MAX && r->state == S_(RUNNING);
         step++) {
        struct ro_gate g;
        for (uint32_t j = 0; j <= r->current_stage; j++) {
            ro_gate_eval(r, j, ctx->time_ms, &g);
            if (g.failure_exceeded) {
                snprintf(detail, sizeof detail, "auto abort: %s", g.why);
                r->state = S_(ABORTED);
                int rc;
                if ((rc = set_reason(r, ctx, detail, e)) != 0 ||
                    (rc = ro__live_set(ro, t, r->rollout_id, 0, e)) != 0) {
                    return rc;
                }
                *changed = 1;
                return ro__audit(ro, t, ctx, A_(ROLLOUT_GATE), target, detail, e);
            }
        }
        uint32_t k = r->current_stage;
        ro_gate_eval(r, k, ctx->time_ms, &g);
        if (!g.advance_ready || !r->stages[k]->auto_advance) {
            return 0;
        }
        int rc = advance(ro, t, ctx, r, e);
        if (rc) {
            return rc;
        }
        if (r->state == S_(COMPLETED)) {
            snprintf(detail, sizeof detail,
                     "auto complete after stage %u: %llu reported, success %u bp",
                     k, (unsigned long long)g.reported, g.success_bp);
        } else {
            snprintf(detail, sizeof detail,
                     "auto advance stage %u -> %u: %llu reported, success %u bp, "
                     "failure %u bp, baked",
                     k, k + 1, (unsigned long long)g.reported, g.success_bp,
                     g.failure_bp);
        }
        if ((rc = set_reason(r, ctx, detail, e)) != 0 ||
            (rc = ro__audit(ro, t, ctx, A_(ROLLOUT_GATE), target, detail, e)) != 0) {
            return rc;
        }
        *changed = 1;
    }
    return 0;
}

static unsigned event_roles(int ev)
{
    /* Pause and Abort are brakes: operators may pull them too. */
    if (ev == RO_EV_PAUSE || ev == RO_EV_ABORT) {
        return WROLE_ADMIN | WROLE_ROLLOUT | WROLE_OPERATOR;
    }
    return WROLE_ADMIN | WROLE_ROLLOUT;
}

/* Abort's optional roll-forward: the signed rollback release and a RUNNING
 * rollout of it (one 100% stage) for devices that installed r's release. */
static int create_rollback(struct ro *ro, struct store_txn *t,
                           const struct dom_ctx *ctx, Warden__V1__Rollout *r,
                           const Warden__V1__CreateReleaseRequest *rb,
                           struct ro_transition_out *out, struct werr *e)
{
    if (rb->rollback_of != r->release_id) {
        return werr_set(e, WERR_INVALID,
                        "rollback.rollback_of is %llu, want the aborted "
                        "rollout's release %llu",
                        (unsigned long long)rb->rollback_of,
                        (unsigned long long)r->release_id);
    }
    Warden__V1__Release *rel = NULL;
    int rc = ro_release_create(ro, t, ctx, rb, &rel, e);
    if (rc) {
        return werr_wrap(e, "rollback release");
    }
    const Warden__V1__RolloutStage *cur = r->stages[r->current_stage];
    Warden__V1__RolloutStage st = WARDEN__V1__ROLLOUT_STAGE__INIT;
    st.name = (char *)"rollback";
    st.percent_bp = RO_BP;
    st.failure_ratio_bp = RO_BP; /* a rollback is never auto-aborted */
    st.per_device_timeout_ms = cur->per_device_timeout_ms;
    Warden__V1__RolloutStage *stp = &st;
    char name[RO_NAME_MAX + 1];
    snprintf(name, sizeof name, "rollback of rollout %llu",
             (unsigned long long)r->rollout_id);
    if ((rc = rollout_put_new(ro, t, ctx, name, rel, r->selector, &stp, 1,
                              r->release_id, e)) != 0) {
        goto out;
    }
    Warden__V1__Rollout *nr;
    if ((rc = ro__rollout_load(ro, t, ctx->index, &nr, e)) != 0) {
        goto out;
    }
    nr->state = S_(RUNNING);
    stage_start(nr, 0, ctx);
    char target[48];
    ro__target(target, sizeof target, "rollout", nr->rollout_id);
    if ((rc = set_reason(nr, ctx, "started by abort", e)) == 0 &&
        (rc = ro__rollout_store(ro, t, nr, e)) == 0 &&
        (rc = ro__live_set(ro, t, nr->rollout_id, 1, e)) == 0) {
        rc = ro__audit(ro, t, ctx, A_(ROLLOUT_TRANSITION), target,
                       "DRAFT -> RUNNING stage 0: rollback started by abort", e);
    }
    out->rollback_release_id = rel->release_id;
    out->rollback_rollout_id = nr->rollout_id;
    r->rollback_rollout_id = nr->rollout_id;
    ro__rollout_free(nr);
out:
    ro__release_free(rel);
    return rc;
}

int ro_rollout_transition(struct ro *ro, struct store_txn *t,
                          const struct dom_ctx *ctx,
                          const struct ro_transition_req *req,
                          struct ro_transition_out *out, struct werr *e)
{
    memset(out, 0, sizeof *out);
    int ev = req->event;
    int rc = lc_may_act(ctx->who, NULL, event_roles(ev), "change rollouts", e);
    if (rc == 0 && req->force) {
        rc = lc_may_act(ctx->who, NULL, WROLE_ADMIN, "force an advance", e);
    }
    if (rc == 0 && req->rollback != NULL) {
        rc = lc_may_act(ctx->who, NULL, WROLE_ADMIN, "abort with a rollback", e);
    }
    if (rc) {
        return rc;
    }
    const char *reason = req->reason ? req->reason : "";
    if (!ro__text_ok(reason, RO_REASON_MAX)) {
        return werr_set(e, WERR_INVALID, "reason: at most %d printable bytes",
                        RO_REASON_MAX);
    }
    if (ev == RO_EV_ABORT && reason[0] == '\0') {
        return werr_set(e, WERR_INVALID, "Abort needs a reason");
    }
    Warden__V1__Rollout *r;
    if ((rc = ro__rollout_load(ro, t, req->rollout_id, &r, e)) != 0) {
        return rc;
    }
    int from = (int)r->state, to = 0;
    uint32_t k = r->current_stage;
    if (!ro_transition_allowed(from, ev, &to)) {
        out->refused = 1;
        out->from = from;
        rc = werr_set(e, WERR_PRECOND, "rollout %llu: %s not allowed in %s",
                      (unsigned long long)r->rollout_id, ro_event_name(ev),
                      ro_state_name(from));
        goto out;
    }
    switch (ev) {
    case RO_EV_START: {
        uint64_t ids[RO_LIVE_MAX];
        size_t n;
        if ((rc = ro__live_list(ro, t, ids, &n, e)) != 0) {
            goto out;
        }
        if (n >= RO_LIVE_MAX) {
            rc = werr_set(e, WERR_LIMIT, "%d rollouts are RUNNING or PAUSED "
                          "already (RO_LIVE_MAX)", RO_LIVE_MAX);
            goto out;
        }
        r->state = S_(RUNNING);
        stage_start(r, 0, ctx);
        rc = ro__live_set(ro, t, r->rollout_id, 1, e);
        break;
    }
    case RO_EV_PAUSE:
    case RO_EV_RESUME:
        r->state = (Warden__V1__RolloutState)to;
        break;
    case RO_EV_ADVANCE:
        if (!req->force) {
            struct ro_gate g;
            ro_gate_eval(r, k, ctx->time_ms, &g);
            if (!g.advance_ready) {
                rc = werr_set(e, WERR_PRECOND, "rollout %llu: gates do not pass: %s",
                              (unsigned long long)r->rollout_id, g.why);
                goto out;
            }
        }
        rc = advance(ro, t, ctx, r, e);
        break;
    case RO_EV_ABORT:
        r->state = S_(ABORTED);
        rc = ro__live_set(ro, t, r->rollout_id, 0, e);
        if (rc == 0 && req->rollback != NULL) {
            rc = create_rollback(ro, t, ctx, r, req->rollback, out, e);
        }
        break;
    default:
        rc = werr_set(e, WERR_INVALID, "unknown rollout event %d", ev);
    }
    if (rc) {
        goto out;
    }
    char target[48], detail[AUDIT_DETAIL_MAX + 1];
    ro__target(target, sizeof target, "rollout", r->rollout_id);
    snprintf(detail, sizeof detail, "%s: %s(%u) -> %s(%u)%s: %s", ro_event_name(ev),
             ro_state_name(from), k, ro_state_name((int)r->state), r->current_stage,
             req->force ? " forced" : "", reason);
    if ((rc = set_reason(r, ctx, detail, e)) != 0 ||
        (rc = ro__rollout_store(ro, t, r, e)) != 0 ||
        (rc = ro__audit(ro, t, ctx, A_(ROLLOUT_TRANSITION), target, detail, e)) !=
            0) {
        goto out;
    }
    out->rollout = r;
    return 0;
out:
    ro__rollout_free(r);
    return rc;
}

static size_t rej_name(int from, int event, uint8_t n[8])
{
    memcpy(n, CTR_REJ, 6);
    n[6] = (uint8_t)(from & 0xff);
    n[7] = (uint8_t)(event & 0xff);
    return 8;
}

int ro_reject_count_add(struct ro *ro, struct store_txn *t, uint64_t rollout_id,
                        int from, int event, struct werr *e)
{
    uint8_t n[8];
    int rc = inv__counter_add(ro->inv, t, n, rej_name(from, event, n), 1, e);
    if (rc) {
        return rc;
    }
    Warden__V1__Rollout *r;
    rc = ro__rollout_load(ro, t, rollout_id, &r, e);
    if (rc == WERR_NOTFOUND) {
        return 0;
    }
    if (rc) {
        return rc;
    }
    r->refused_transitions++;
    rc = ro__rollout_store(ro, t, r, e);
    ro__rollout_free(r);
    return rc;
}

int ro_reject_count(struct ro *ro, struct store_txn *t, int from, int event,
                    uint64_t *out, struct werr *e)
{
    uint8_t n[8];
    return inv__counter_get(ro->inv, t, n, rej_name(from, event, n), out, e);
}

/* ---- housekeeping -------------------------------------------------------------*/

int ro_housekeep(struct ro *ro, struct store_txn *t, const struct dom_ctx *ctx,
                 struct werr *e)
{
    int rc = ro__expire(ro, t, ctx, e);
    if (rc) {
        return rc;
    }
    uint64_t ids[RO_LIVE_MAX];
    size_t n;
    if ((rc = ro__live_list(ro, t, ids, &n, e)) != 0) {
        return rc;
    }
    for (size_t i = 0; i < n; i++) {
        Warden__V1__Rollout *r;
        if ((rc = ro__rollout_load(ro, t, ids[i], &r, e)) != 0) {
            return rc;
        }
        int changed = 0;
        rc = ro__evaluate(ro, t, ctx, r, &changed, e);
        if (rc == 0 && changed) {
            rc = ro__rollout_store(ro, t, r, e);
        }
        ro__rollout_free(r);
        if (rc) {
            return rc;
        }
    }
    return 0;
}

/* ---- status (GetRollout) ----------------------------------------------------*/

int ro_rollout_status(struct ro *ro, struct store_txn *t, uint64_t id,
                      uint64_t now, struct ro_status *st, struct werr *e)
{
    memset(st, 0, sizeof *st);
    warden__v1__get_rollout_response__init(&st->resp);
    int rc = ro__rollout_load(ro, t, id, &st->resp.rollout, e);
    if (rc) {
        return rc;
    }
    Warden__V1__Rollout *r = st->resp.rollout;
    if ((rc = ro_release_get(ro, t, r->release_id, &st->resp.release, e)) != 0) {
        ro_status_free(st);
        return rc;
    }
    size_t n = 0;
    if (r->state != S_(DRAFT)) {
        n = r->state == S_(COMPLETED) ? r->n_stages : r->current_stage + 1u;
    }
    for (size_t i = 0; i < n; i++) {
        struct ro_gate g;
        ro_gate_eval(r, (uint32_t)i, now, &g);
        Warden__V1__StageGate *sg = &st->gates[i];
        warden__v1__stage_gate__init(sg);
        sg->stage = (uint32_t)i;
        sg->reported = g.reported;
        sg->min_reported_ok = g.min_reported_ok;
        sg->success_bp = g.success_bp;
        sg->success_ok = g.success_ok;
        sg->failure_bp = g.failure_bp;
        sg->failure_exceeded = g.failure_exceeded;
        sg->bake_remaining_ms = g.bake_remaining_ms;
        sg->bake_ok = g.bake_ok;
        sg->advance_ready = g.advance_ready;
        if (i < r->current_stage || r->state == S_(COMPLETED)) {
            snprintf(st->explain[i], sizeof st->explain[i], "passed (%s)", g.why);
        } else if (r->state == S_(RUNNING)) {
            snprintf(st->explain[i], sizeof st->explain[i], "%s", g.why);
        } else {
            snprintf(st->explain[i], sizeof st->explain[i], "%s; %s",
                     ro_state_name((int)r->state), r->reason);
        }
        sg->explain = st->explain[i];
        st->gate_ptrs[i] = sg;
    }
    st->resp.n_gates = n;
    st->resp.gates = n ? st->gate_ptrs : NULL;
    return 0;
}

void ro_status_free(struct ro_status *st)
{
    if (st == NULL) {
        return;
    }
    ro__rollout_free(st->resp.rollout);
    ro__release_free(st->resp.release);
    st->resp.rollout = NULL;
    st->resp.release = NULL;
}
