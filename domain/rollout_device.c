/* rollout_device.c - the device side of rollouts: desired state (lazy,
 * bounded assignment), signed update reports checked against a per-device
 * RFC 6479 window, the installed release, and per-device timeouts
 * (contract: rollout.h; docs/rollouts.md). */
#include "rollout_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "devkey.h"
#include "freshness.h"
#include "inv_int.h"
#include "lifecycle.h"

#define S_(x) WARDEN__V1__ROLLOUT_STATE__ROLLOUT_STATE_##x
#define P_(x) WARDEN__V1__UPDATE_PHASE__UPDATE_PHASE_##x
#define R_(x) WARDEN__V1__REPORT_RESULT__REPORT_RESULT_##x
#define DS_(x) WARDEN__V1__DEVICE_STATE__DEVICE_STATE_##x
#define BITMAP_BYTES (FRESH_BLOCKS * 8u)
/* The principal ctl_issue() sees when warden signs a desired state: the
 * caller was authorised here (the device's gateway), and the envelope is
 * the rollout engine's, not an operator's command. */
#define RO_SIGNER_NAME "warden.rollout"

typedef Warden__V1__DeviceReleaseRecord DevRec;
typedef Warden__V1__AssignmentRecord Assign;

int ro_device_get(struct ro *ro, struct store_txn *t, const char *device_id,
                  DevRec **out, struct werr *e)
{
    uint8_t k[RO__KEY_MAX];
    size_t kl = ro__key_str('d', device_id, k);
    struct store_val v;
    int rc = store_get(t, ro->dev, k, kl, &v, e);
    if (rc) {
        return rc;
    }
    *out = warden__v1__device_release_record__unpack(NULL, v.len, v.data);
    if (*out == NULL ||
        ((*out)->bitmap.len != 0 && (*out)->bitmap.len != BITMAP_BYTES)) {
        if (*out != NULL) {
            warden__v1__device_release_record__free_unpacked(*out, NULL);
        }
        return werr_set(e, WERR_CORRUPT, "release record of %s is corrupt",
                        device_id);
    }
    return 0;
}

/* The record, or a fresh one (owned either way). */
static int rec_load(struct ro *ro, struct store_txn *t, const char *id,
                    DevRec **out, struct werr *e)
{
    int rc = ro_device_get(ro, t, id, out, e);
    if (rc != WERR_NOTFOUND) {
        return rc;
    }
    *out = malloc(sizeof **out);
    if (*out == NULL) {
        return werr_set(e, WERR_NOMEM, "release record");
    }
    warden__v1__device_release_record__init(*out);
    return 0;
}

static void rec_free(DevRec *r)
{
    if (r != NULL) {
        warden__v1__device_release_record__free_unpacked(r, NULL);
    }
}

static int rec_store(struct ro *ro, struct store_txn *t, const char *id,
                     const DevRec *r, struct werr *e)
{
    uint8_t k[RO__KEY_MAX];
    size_t kl = ro__key_str('d', id, k);
    return ro__put_msg(ro, t, ro->dev, k, kl, &r->base, 0, e);
}

int ro_assignment_get(struct ro *ro, struct store_txn *t, uint64_t rollout_id,
                      const char *device_id, Assign **out, struct werr *e)
{
    uint8_t k[RO__KEY_MAX];
    size_t kl = ro__key_assign(rollout_id, device_id, k);
    struct store_val v;
    int rc = store_get(t, ro->dev, k, kl, &v, e);
    if (rc) {
        return rc;
    }
    *out = warden__v1__assignment_record__unpack(NULL, v.len, v.data);
    if (*out == NULL) {
        return werr_set(e, WERR_CORRUPT, "assignment %llu/%s is corrupt",
                        (unsigned long long)rollout_id, device_id);
    }
    return 0;
}

static int assign_store(struct ro *ro, struct store_txn *t, const char *id,
                        const Assign *a, unsigned flags, struct werr *e)
{
    uint8_t k[RO__KEY_MAX];
    size_t kl = ro__key_assign(a->rollout_id, id, k);
    return ro__put_msg(ro, t, ro->dev, k, kl, &a->base, flags, e);
}

static void assign_free(Assign *a)
{
    if (a != NULL) {
        warden__v1__assignment_record__free_unpacked(a, NULL);
    }
}

/* Move a (device, rollout) from phase `from` to `to` in its stage's
 * counters: the in-progress gauges follow the latest phase, terminal
 * counters only grow, and each (device, rollout) reaches one terminal
 * phase at most once (the callers check). */
static void count_move(Warden__V1__Rollout *r, uint32_t stage, int from, int to)
{
    if (stage >= r->n_counters) {
        return;
    }
    Warden__V1__StageCounters *c = r->counters[stage];
    uint64_t *f = ro__counter_of(c, from), *n = ro__counter_of(c, to);
    if (f != NULL && *f > 0) {
        (*f)--;
    }
    if (n != NULL) {
        (*n)++;
    }
}

void ro_desired_free(struct ro_desired *d)
{
    if (d != NULL) {
        ctl_issued_free(&d->ci);
        ro__release_free(d->release);
        d->release = NULL;
    }
}

/* Is live rollout r a candidate for device d? (Eligibility,
 * docs/rollouts.md: selector, compatible model, installed < counter,
 * rollback filter, and the current stage covers the device's bucket.) */
static int candidate(struct ro *ro, struct store_txn *t,
                     const Warden__V1__Rollout *r, const Warden__V1__Device *d,
                     const DevRec *rec, int *ok, struct werr *e)
{
    *ok = 0;
    if (r->state != S_(RUNNING) || r->release_counter <= rec->installed_counter ||
        (r->only_installed_release != 0 &&
         r->only_installed_release != rec->installed_release_id) ||
        !ro__selector_match(r->selector, d) ||
        !ro__stage_covers(r, r->current_stage, ro_bucket(r->rollout_id, d->device_id))) {
        return 0;
    }
    Assign *a = NULL;
    int rc = ro_assignment_get(ro, t, r->rollout_id, d->device_id, &a, e);
    if (rc == 0) {
        assign_free(a); /* each (device, rollout) is assigned at most once */
        return 0;
    }
    if (rc != WERR_NOTFOUND) {
        return rc;
    }
    Warden__V1__Release *rel;
    if ((rc = ro_release_get(ro, t, r->release_id, &rel, e)) != 0) {
        return rc;
    }
    *ok = ro__release_has_model(rel, d->hardware_model);
    ro__release_free(rel);
    return 0;
}

static int record_assignment(struct ro *ro, struct store_txn *t,
                             const struct dom_ctx *ctx, Warden__V1__Rollout *r,
                             const char *id, DevRec *rec, struct werr *e)
{
    uint32_t k = r->current_stage;
    Assign a = WARDEN__V1__ASSIGNMENT_RECORD__INIT;
    a.rollout_id = r->rollout_id;
    a.stage = k;
    a.assigned_index = ctx->index;
    a.assigned_time_ms = ctx->time_ms;
    uint64_t to = r->stages[k]->per_device_timeout_ms;
    a.deadline_ms = to ? ctx->time_ms + to : 0;
    int rc = assign_store(ro, t, id, &a, STORE_NOOVERWRITE, e);
    if (rc == 0 && a.deadline_ms) {
        uint8_t dk[RO__KEY_MAX];
        size_t dl = ro__key_due(a.deadline_ms, r->rollout_id, id, dk);
        rc = store_put(t, ro->due, dk, dl, "", 0, 0, e);
    }
    if (rc) {
        return rc;
    }
    r->counters[k]->assigned++;
    rec->current_rollout_id = r->rollout_id;
    return ro__rollout_store(ro, t, r, e);
}

int ro_desired_state(struct ro *ro, struct store_txn *t,
                     const struct dom_ctx *ctx,
                     const Warden__V1__GetDesiredStateRequest *req,
                     struct ro_desired *out, struct werr *e)
{
    memset(out, 0, sizeof *out);
    int rc;
    if ((rc = inv_device_id_check(req->device_id, e)) != 0) {
        return rc;
    }
    Warden__V1__Device *d;
    if ((rc = inv__load(ro->inv, t, req->device_id, &d, e)) != 0) {
        return rc;
    }
    DevRec *rec = NULL;
    Warden__V1__Rollout *tr = NULL;
    if ((rc = lc_may_act(ctx->who, d, WROLE_GATEWAY | WROLE_ADMIN | WROLE_OPERATOR,
                         "get desired state", e)) != 0) {
        goto out;
    }
    if (d->state != DS_(ACTIVE) && d->state != DS_(QUARANTINED)) {
        rc = werr_set(e, WERR_PRECOND, "device %s is %s, not ACTIVE",
                      d->device_id, lc_state_name((int)d->state));
        goto out;
    }
    if ((rc = rec_load(ro, t, d->device_id, &rec, e)) != 0) {
        goto out;
    }
    if (d->state == DS_(ACTIVE) && rec->current_rollout_id != 0) {
        /* An existing assignment holds while its rollout is RUNNING or
         * PAUSED, the outcome is not terminal, and it is still an upgrade. */
        Warden__V1__Rollout *r = NULL;
        Assign *a = NULL;
        rc = ro__rollout_load(ro, t, rec->current_rollout_id, &r, e);
        if (rc == 0) {
            rc = ro_assignment_get(ro, t, r->rollout_id, d->device_id, &a, e);
        }
        if (rc != 0 && rc != WERR_NOTFOUND) {
            ro__rollout_free(r);
            goto out;
        }
        rc = 0;
        if (a != NULL &&
            (r->state == S_(RUNNING) || r->state == S_(PAUSED)) &&
            !ro__phase_terminal((int)a->phase) &&
            r->release_counter > rec->installed_counter) {
            tr = r;
            r = NULL;
        }
        assign_free(a);
        ro__rollout_free(r);
    }
    if (d->state == DS_(ACTIVE) && tr == NULL) {
        uint64_t ids[RO_LIVE_MAX];
        size_t n;
        if ((rc = ro__live_list(ro, t, ids, &n, e)) != 0) {
            goto out;
        }
        for (size_t i = 0; i < n; i++) {
            Warden__V1__Rollout *r;
            int ok;
            if ((rc = ro__rollout_load(ro, t, ids[i], &r, e)) != 0) {
                goto out;
            }
            if ((rc = candidate(ro, t, r, d, rec, &ok, e)) != 0) {
                ro__rollout_free(r);
                goto out;
            }
            /* Highest counter wins; ties go to the older rollout. */
            if (ok && (tr == NULL || r->release_counter > tr->release_counter)) {
                ro__rollout_free(tr);
                tr = r;
            } else {
                ro__rollout_free(r);
            }
        }
        if (tr != NULL &&
            ((rc = record_assignment(ro, t, ctx, tr, d->device_id, rec, e)) != 0 ||
             (rc = rec_store(ro, t, d->device_id, rec, e)) != 0)) {
            goto out;
        }
    }
    if (tr != NULL && (rc = ro_release_get(ro, t, tr->release_id, &out->release,
                                           e)) != 0) {
        goto out;
    }
    /* The signed answer: the release manifest (so the device can check the
     * release key's signature itself) inside a control envelope. */
    struct ro_desired_view v;
    memset(&v, 0, sizeof v);
    snprintf(v.device_id, sizeof v.device_id, "%s", d->device_id);
    v.installed_counter = rec->installed_counter;
    if (tr != NULL) {
        v.rollout_id = tr->rollout_id;
        v.release_id = out->release->release_id;
        v.manifest = out->release->manifest.data;
        v.manifest_len = out->release->manifest.len;
        snprintf(v.key_id, sizeof v.key_id, "%s", out->release->key_id);
        v.signature = out->release->signature.data;
        v.signature_len = out->release->signature.len;
    }
    uint8_t *payload = malloc(RO_DESIRED_MAX);
    if (payload == NULL) {
        rc = werr_set(e, WERR_NOMEM, "desired-state payload");
        goto out;
    }
    size_t plen = ro_desired_encode(&v, payload, RO_DESIRED_MAX);
    Warden__V1__IssueCommandRequest ic = WARDEN__V1__ISSUE_COMMAND_REQUEST__INIT;
    ic.device_id = d->device_id;
    ic.payload.data = payload;
    ic.payload.len = plen;
    struct principal signer = {.role = WROLE_ROLLOUT, .name = RO_SIGNER_NAME};
    struct dom_ctx sctx = *ctx;
    sctx.who = &signer;
    rc = plen == 0 ? werr_set(e, WERR_INTERNAL, "desired-state payload encoding")
                   : ctl_issue(ro->inv, t, &sctx, &ic, &out->ci, e);
    free(payload);
    if (rc) {
        goto out;
    }
    out->has_target = tr != NULL;
    out->rollout_id = tr ? tr->rollout_id : 0;
    out->installed_counter = rec->installed_counter;
out:
    if (rc) {
        ro_desired_free(out);
    }
    ro__rollout_free(tr);
    rec_free(rec);
    inv_device_free(d);
    return rc;
}

/* ---- reports ----------------------------------------------------------------*/

/* SUCCEEDED: the device now runs rel. Never lowers the installed counter. */
static int install(struct ro *ro, struct store_txn *t, const struct dom_ctx *ctx,
                   Warden__V1__Device *d, DevRec *rec, uint64_t release_id,
                   struct werr *e)
{
    Warden__V1__Release *rel;
    int rc = ro_release_get(ro, t, release_id, &rel, e);
    if (rc) {
        return rc;
    }
    if (rel->release_counter > rec->installed_counter) {
        rec->installed_counter = rel->release_counter;
        rec->installed_release_id = rel->release_id;
        if ((rc = inv__set_str(&rec->installed_version, rel->version, e)) == 0 &&
            (rc = inv__set_str(&d->firmware_version, rel->version, e)) == 0) {
            d->updated_index = ctx->index;
            d->updated_time_ms = ctx->time_ms;
            rc = inv__store(ro->inv, t, d, e);
        }
    }
    ro__release_free(rel);
    return rc;
}

static int apply_report(struct ro *ro, struct store_txn *t,
                        const struct dom_ctx *ctx, Warden__V1__Device *d,
                        DevRec *rec,
                        const Warden__V1__ReportUpdateStatusRequest *req,
                        Warden__V1__ReportUpdateStatusResponse *out,
                        struct werr *e)
{
    Assign *a = NULL;
    Warden__V1__Rollout *r = NULL;
    int rc = ro_assignment_get(ro, t, req->rollout_id, d->device_id, &a, e);
    if (rc == 0) {
        rc = ro__rollout_load(ro, t, req->rollout_id, &r, e);
    }
    if (rc == WERR_NOTFOUND) {
        out->result = R_(NOT_ASSIGNED);
        rc = 0;
        goto out;
    }
    if (rc) {
        goto out;
    }
    out->rollout_state = r->state;
    out->current_stage = r->current_stage;
    if (req->release_counter != r->release_counter) {
        out->result = R_(WRONG_RELEASE);
        goto out;
    }
    int from = (int)a->phase, to = (int)req->phase;
    if (ro__phase_terminal(from)) {
        /* Counted once per (device, rollout): a duplicate terminal report
         * changes nothing. A success after a timeout is still the truth
         * about the device, so it moves the installed counter. */
        if (from == P_(TIMED_OUT) && to == P_(SUCCEEDED)) {
            out->result = R_(LATE);
            rc = install(ro, t, ctx, d, rec, r->release_id, e);
        } else {
            out->result = R_(DUPLICATE);
        }
        goto out;
    }
    if (to == from || (!ro__phase_terminal(to) && to < from)) {
        out->result = R_(DUPLICATE); /* same phase, or an older one reordered */
        goto out;
    }
    count_move(r, a->stage, from, to);
    a->phase = (Warden__V1__UpdatePhase)to;
    if ((rc = inv__set_str(&a->detail, req->detail, e)) != 0) {
        goto out;
    }
    if (ro__phase_terminal(to) && a->deadline_ms != 0) {
        uint8_t dk[RO__KEY_MAX];
        size_t dl = ro__key_due(a->deadline_ms, r->rollout_id, d->device_id, dk);
        rc = store_del(t, ro->due, dk, dl, e);
        if (rc != 0 && rc != WERR_NOTFOUND) {
            goto out;
        }
        rc = 0;
    }
    if (to == P_(SUCCEEDED) &&
        (rc = install(ro, t, ctx, d, rec, r->release_id, e)) != 0) {
        goto out;
    }
    int changed = 0;
    if ((rc = assign_store(ro, t, d->device_id, a, 0, e)) != 0 ||
        (rc = ro__evaluate(ro, t, ctx, r, &changed, e)) != 0 ||
        (rc = ro__rollout_store(ro, t, r, e)) != 0) {
        goto out;
    }
    out->result = R_(ACCEPTED);
    out->rollout_state = r->state;
    out->current_stage = r->current_stage;
out:
    assign_free(a);
    ro__rollout_free(r);
    return rc;
}

int ro_report(struct ro *ro, struct store_txn *t, const struct dom_ctx *ctx,
              const Warden__V1__ReportUpdateStatusRequest *req,
              Warden__V1__ReportUpdateStatusResponse *out, struct werr *e)
{
    warden__v1__report_update_status_response__init(out);
    int rc;
    if ((rc = inv_device_id_check(req->device_id, e)) != 0) {
        return rc;
    }
    if (!ro__text_ok(req->detail, RO_DETAIL_MAX)) {
        return werr_set(e, WERR_INVALID, "detail: at most %d printable bytes",
                        RO_DETAIL_MAX);
    }
    if (req->phase < P_(DOWNLOADING) || req->phase > P_(REJECTED)) {
        return werr_set(e, WERR_INVALID, "phase %d: devices report DOWNLOADING.."
                        "REJECTED", (int)req->phase);
    }
    if (req->signature.len > DEVKEY_SIG_MAX) {
        return werr_set(e, WERR_INVALID, "signature of %zu bytes, max %d",
                        req->signature.len, DEVKEY_SIG_MAX);
    }
    Warden__V1__Device *d;
    if ((rc = inv__load(ro->inv, t, req->device_id, &d, e)) != 0) {
        return rc;
    }
    DevRec *rec = NULL;
    if ((rc = lc_may_act(ctx->who, d, WROLE_GATEWAY | WROLE_ADMIN | WROLE_OPERATOR,
                         "report update status", e)) != 0 ||
        (rc = rec_load(ro, t, d->device_id, &rec, e)) != 0) {
        goto out;
    }
    /* The report window: its own namespace (not telemetry's), reset with
     * the identity epoch like telemetry's (docs/rollouts.md). */
    struct fresh_window win;
    memset(&win, 0, sizeof win);
    if (rec->identity_epoch == d->identity_epoch && rec->bitmap.len == BITMAP_BYTES) {
        win.highest = rec->highest;
        for (unsigned i = 0; i < FRESH_BLOCKS; i++) {
            win.bitmap[i] = ro__get_be64(rec->bitmap.data + 8u * i);
        }
    }
    rec->identity_epoch = d->identity_epoch;
    if (d->state != DS_(ACTIVE) && d->state != DS_(QUARANTINED)) {
        out->result = R_(NOT_ACTIVE);
        rec->not_active++;
    } else if (req->key_epoch != d->key_epoch) {
        out->result = R_(STALE_EPOCH);
        rec->stale_epoch++;
    } else {
        uint8_t msg[RO_REPORT_MSG_MAX];
        size_t mlen = ro_report_message(req->device_id, req->key_epoch,
                                        req->counter, req->rollout_id,
                                        req->release_counter, (uint32_t)req->phase,
                                        req->detail, msg, sizeof msg);
        struct werr ve = {0};
        int vrc = devkey_verify((int)d->key_algorithm, d->public_key.data,
                                d->public_key.len, msg, mlen, req->signature.data,
                                req->signature.len, &ve);
        if (vrc == WERR_NOMEM) {
            rc = werr_set(e, WERR_NOMEM, "%s", ve.msg);
            goto out;
        }
        if (vrc != 0 || mlen == 0) {
            out->result = R_(BAD_SIGNATURE);
            rec->bad_signature++;
        } else {
            int w = fresh_window_check(&win, req->counter);
            if (w == WARDEN__V1__TELEMETRY_RESULT__TELEMETRY_RESULT_REPLAY) {
                out->result = R_(REPLAY);
                rec->replayed++;
            } else if (w == WARDEN__V1__TELEMETRY_RESULT__TELEMETRY_RESULT_TOO_OLD) {
                out->result = R_(TOO_OLD);
                rec->too_old++;
            } else {
                rec->accepted++;
                if ((rc = apply_report(ro, t, ctx, d, rec, req, out, e)) != 0) {
                    goto out;
                }
            }
        }
    }
    uint8_t bm[BITMAP_BYTES];
    for (unsigned i = 0; i < FRESH_BLOCKS; i++) {
        ro__put_be64(bm + 8u * i, win.bitmap[i]);
    }
    ProtobufCBinaryData saved = rec->bitmap;
    rec->highest = win.highest;
    rec->bitmap.data = bm;
    rec->bitmap.len = sizeof bm;
    rc = rec_store(ro, t, d->device_id, rec, e);
    rec->bitmap = saved;
    out->highest_counter = win.highest;
out:
    rec_free(rec);
    inv_device_free(d);
    return rc;
}

/* ---- timeouts ----------------------------------------------------------------*/

int ro__expire(struct ro *ro, struct store_txn *t, const struct dom_ctx *ctx,
               struct werr *e)
{
    /* Collect first, then write: no cursor stays open across the writes. */
    uint8_t keys[RO_TIMEOUTS_PER_APPLY][RO__KEY_MAX];
    size_t lens[RO_TIMEOUTS_PER_APPLY];
    size_t n = 0;
    struct store_cursor *c;
    int rc = store_cursor_open(t, ro->due, &c, e);
    if (rc) {
        return rc;
    }
    struct store_val k, v;
    rc = store_cursor_seek(c, NULL, 0, &k, &v, e);
    while (rc == 0 && n < RO_TIMEOUTS_PER_APPLY) {
        if (k.len < 17 || k.len > RO__KEY_MAX ||
            ro__get_be64(k.data) > ctx->time_ms) {
            break;
        }
        memcpy(keys[n], k.data, k.len);
        lens[n++] = k.len;
        rc = store_cursor_next(c, &k, &v, e);
    }
    store_cursor_close(c);
    if (rc != 0 && rc != WERR_NOTFOUND) {
        return rc;
    }
    for (size_t i = 0; i < n; i++) {
        uint64_t rid = ro__get_be64(keys[i] + 8);
        char id[INV_DEVICE_ID_MAX + 1];
        size_t idl = lens[i] - 16;
        if (idl > INV_DEVICE_ID_MAX) {
            idl = INV_DEVICE_ID_MAX;
        }
        memcpy(id, keys[i] + 16, idl);
        id[idl] = '\0';
        if ((rc = store_del(t, ro->due, keys[i], lens[i], e)) != 0) {
            return rc;
        }
        Assign *a = NULL;
        Warden__V1__Rollout *r = NULL;
        rc = ro_assignment_get(ro, t, rid, id, &a, e);
        if (rc == 0 && !ro__phase_terminal((int)a->phase)) {
            rc = ro__rollout_load(ro, t, rid, &r, e);
            if (rc == 0) {
                count_move(r, a->stage, (int)a->phase, P_(TIMED_OUT));
                a->phase = P_(TIMED_OUT);
                if ((rc = assign_store(ro, t, id, a, 0, e)) == 0) {
                    rc = ro__rollout_store(ro, t, r, e);
                }
            }
        }
        assign_free(a);
        ro__rollout_free(r);
        if (rc == WERR_NOTFOUND) {
            rc = 0;
        }
        if (rc) {
            return rc;
        }
    }
    return 0;
}
