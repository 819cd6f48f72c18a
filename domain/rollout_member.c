/* rollout_member.c - the pure parts of rollouts (contract: rollout.h):
 * the state table, stage membership, selector and eligibility, gate
 * evaluation, and the canonical encodings (manifest, desired-state
 * payload, update report). No store calls except the key helpers. */
#include "rollout_int.h"

#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>

#include "canon.h"

#define S_(x) WARDEN__V1__ROLLOUT_STATE__ROLLOUT_STATE_##x
#define P_(x) WARDEN__V1__UPDATE_PHASE__UPDATE_PHASE_##x

void ro__put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)(v & 0xffu);
        v >>= 8;
    }
}

uint64_t ro__get_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) {
        v = (v << 8) | p[i];
    }
    return v;
}

size_t ro__key_u64(char prefix, uint64_t id, uint8_t out[RO__KEY_MAX])
{
    out[0] = (uint8_t)prefix;
    out[1] = '/';
    ro__put_be64(out + 2, id);
    return 10;
}

size_t ro__key_str(char prefix, const char *s, uint8_t out[RO__KEY_MAX])
{
    size_t n = strnlen(s, RO__KEY_MAX - 2);
    out[0] = (uint8_t)prefix;
    out[1] = '/';
    memcpy(out + 2, s, n);
    return 2 + n;
}

size_t ro__key_assign(uint64_t rollout_id, const char *device_id,
                      uint8_t out[RO__KEY_MAX])
{
    size_t n = strnlen(device_id, INV_DEVICE_ID_MAX);
    ro__key_u64('a', rollout_id, out);
    memcpy(out + 10, device_id, n);
    return 10 + n;
}

size_t ro__key_due(uint64_t deadline, uint64_t rollout_id,
                   const char *device_id, uint8_t out[RO__KEY_MAX])
{
    size_t n = strnlen(device_id, INV_DEVICE_ID_MAX);
    ro__put_be64(out, deadline);
    ro__put_be64(out + 8, rollout_id);
    memcpy(out + 16, device_id, n);
    return 16 + n;
}

int ro__text_ok(const char *s, size_t max)
{
    s = s ? s : "";
    size_t n = strnlen(s, max + 1);
    if (n > max) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f) {
            return 0;
        }
    }
    return 1;
}

void ro__target(char *buf, size_t cap, const char *kind, uint64_t id)
{
    snprintf(buf, cap, "%s/%llu", kind, (unsigned long long)id);
}

/* ---- the state table (dqlite sm.h habit: one table, checked in one place)
 *
 *             START    PAUSE    RESUME   ADVANCE  ABORT
 *   DRAFT     RUNNING  -        -        -        ABORTED
 *   RUNNING   -        PAUSED   -        RUNNING* ABORTED
 *   PAUSED    -        -        RUNNING  -        ABORTED
 *   COMPLETED -        -        -        -        -
 *   ABORTED   -        -        -        -        -
 * (* RUNNING(k+1), or COMPLETED from the last stage.) */
static const int table[RO_N_STATES][RO_N_EVENTS] = {
    [S_(DRAFT)] = {[RO_EV_START] = S_(RUNNING), [RO_EV_ABORT] = S_(ABORTED)},
    [S_(RUNNING)] = {[RO_EV_PAUSE] = S_(PAUSED), [RO_EV_ADVANCE] = S_(RUNNING),
                     [RO_EV_ABORT] = S_(ABORTED)},
    [S_(PAUSED)] = {[RO_EV_RESUME] = S_(RUNNING), [RO_EV_ABORT] = S_(ABORTED)},
};

int ro_transition_allowed(int from, int event, int *to)
{
    if (from < 0 || from >= RO_N_STATES || event <= 0 || event >= RO_N_EVENTS ||
        table[from][event] == 0) {
        return 0;
    }
    if (to != NULL) {
        *to = table[from][event];
    }
    return 1;
}

const char *ro_state_name(int s)
{
    switch (s) {
    case S_(DRAFT): return "DRAFT";
    case S_(RUNNING): return "RUNNING";
    case S_(PAUSED): return "PAUSED";
    case S_(COMPLETED): return "COMPLETED";
    case S_(ABORTED): return "ABORTED";
    default: return "UNSPECIFIED";
    }
}

const char *ro_event_name(int ev)
{
    switch (ev) {
    case RO_EV_START: return "START";
    case RO_EV_PAUSE: return "PAUSE";
    case RO_EV_RESUME: return "RESUME";
    case RO_EV_ADVANCE: return "ADVANCE";
    case RO_EV_ABORT: return "ABORT";
    default: return "UNKNOWN";
    }
}

const char *ro_phase_name(int p)
{
    switch (p) {
    case P_(DOWNLOADING): return "DOWNLOADING";
    case P_(INSTALLING): return "INSTALLING";
    case P_(SUCCEEDED): return "SUCCEEDED";
    case P_(FAILED): return "FAILED";
    case P_(ROLLED_BACK): return "ROLLED_BACK";
    case P_(REJECTED): return "REJECTED";
    case P_(TIMED_OUT): return "TIMED_OUT";
    default: return "ASSIGNED";
    }
}

int ro__phase_terminal(int p)
{
    return p == P_(SUCCEEDED) || p == P_(FAILED) || p == P_(ROLLED_BACK) ||
           p == P_(REJECTED) || p == P_(TIMED_OUT);
}

uint64_t *ro__counter_of(Warden__V1__StageCounters *c, int p)
{
    switch (p) {
    case P_(DOWNLOADING): return &c->downloading;
    case P_(INSTALLING): return &c->installing;
    case P_(SUCCEEDED): return &c->succeeded;
    case P_(FAILED): return &c->failed;
    case P_(ROLLED_BACK): return &c->rolled_back;
    case P_(REJECTED): return &c->rejected;
    case P_(TIMED_OUT): return &c->timed_out;
    default: return NULL;
    }
}

/* ---- membership ---------------------------------------------------------*/

uint32_t ro_bucket(uint64_t rollout_id, const char *device_id)
{
    uint8_t in[8 + INV_DEVICE_ID_MAX];
    size_t n = strnlen(device_id, INV_DEVICE_ID_MAX);
    ro__put_be64(in, rollout_id);
    memcpy(in + 8, device_id, n);
    uint8_t h[32];
    unsigned int hl = 0;
    if (EVP_Digest(in, 8 + n, h, &hl, EVP_sha256(), NULL) != 1) {
        /* SHA-256 over a stack buffer does not fail short of a broken
         * library; bucket 0 would over-include, RO_BUCKETS - 1 excludes
         * the device from every stage but a 100% one. */
        ERR_clear_error();
        return RO_BUCKETS - 1;
    }
    return (uint32_t)(ro__get_be64(h) % RO_BUCKETS);
}

static uint32_t stage_pct(const Warden__V1__RolloutStage *s)
{
    if (s->percent_bp == 0 && s->max_devices > 0) {
        return RO_BP;
    }
    return s->percent_bp > RO_BP ? RO_BP : s->percent_bp;
}

int ro__stage_covers(const Warden__V1__Rollout *r, uint32_t stage,
                     uint32_t bucket)
{
    if (stage >= r->n_stages || stage >= r->n_counters) {
        return 0;
    }
    const Warden__V1__RolloutStage *s = r->stages[stage];
    if (bucket >= stage_pct(s)) {
        return 0;
    }
    if (s->max_devices > 0 && r->counters[stage]->assigned >= s->max_devices) {
        return 0;
    }
    return 1;
}

int ro__selector_match(const Warden__V1__RolloutSelector *s,
                       const Warden__V1__Device *d)
{
    if (s == NULL) {
        return 1;
    }
    if (s->hardware_model && s->hardware_model[0] &&
        strcmp(s->hardware_model, d->hardware_model ? d->hardware_model : "") != 0) {
        return 0;
    }
    if (s->gateway_id && s->gateway_id[0] &&
        strcmp(s->gateway_id, d->gateway_id ? d->gateway_id : "") != 0) {
        return 0;
    }
    for (size_t i = 0; i < s->n_labels; i++) {
        const Warden__V1__Label *want = s->labels[i];
        int found = 0;
        for (size_t j = 0; j < d->n_labels && !found; j++) {
            const Warden__V1__Label *have = d->labels[j];
            if (strcmp(want->key, have->key) == 0 &&
                (want->value[0] == '\0' || strcmp(want->value, have->value) == 0)) {
                found = 1;
            }
        }
        if (!found) {
            return 0;
        }
    }
    return 1;
}

int ro__release_has_model(const Warden__V1__Release *rel, const char *model)
{
    for (size_t i = 0; i < rel->n_hardware_models; i++) {
        if (strcmp(rel->hardware_models[i], model ? model : "") == 0) {
            return 1;
        }
    }
    return 0;
}

/* ---- gates ----------------------------------------------------------------*/

static int over(uint64_t part, uint64_t whole, uint32_t bp)
{
    return part * RO_BP > (uint64_t)bp * whole;
}

void ro_gate_eval(const Warden__V1__Rollout *r, uint32_t stage, uint64_t now,
                  struct ro_gate *g)
{
    memset(g, 0, sizeof *g);
    if (stage >= r->n_stages || stage >= r->n_counters) {
        snprintf(g->why, sizeof g->why, "no stage %u", stage);
        return;
    }
    const Warden__V1__RolloutStage *s = r->stages[stage];
    const Warden__V1__StageCounters *c = r->counters[stage];
    uint64_t fails = c->failed + c->rejected + c->rolled_back + c->timed_out;
    uint64_t rep = c->succeeded + fails;
    g->reported = rep;
    g->success_bp = rep ? (uint32_t)(c->succeeded * RO_BP / rep) : 0;
    g->failure_bp = rep ? (uint32_t)(fails * RO_BP / rep) : 0;
    g->min_reported_ok = rep >= s->min_reported;
    g->success_ok = rep ? c->succeeded * RO_BP >= (uint64_t)s->success_ratio_bp * rep
                        : s->success_ratio_bp == 0;
    /* Abort criteria are judged only on enough evidence: at least
     * min_reported (and at least one) terminal outcomes, like AWS IoT
     * Jobs' minNumberOfExecutedThings. Per-type thresholds are checked
     * separately from the total (failed, rejected, timed out). */
    uint64_t need = s->min_reported > 0 ? s->min_reported : 1;
    if (rep >= need) {
        if (s->failure_ratio_bp < RO_BP && over(fails, rep, s->failure_ratio_bp)) {
            g->failure_exceeded = 1;
            snprintf(g->why, sizeof g->why,
                     "stage %u failure ratio %u bp > %u bp (%llu of %llu)", stage,
                     g->failure_bp, s->failure_ratio_bp,
                     (unsigned long long)fails, (unsigned long long)rep);
        } else if (s->failed_ratio_bp && over(c->failed, rep, s->failed_ratio_bp)) {
            g->failure_exceeded = 1;
            snprintf(g->why, sizeof g->why, "stage %u FAILED %llu of %llu > %u bp",
                     stage, (unsigned long long)c->failed,
                     (unsigned long long)rep, s->failed_ratio_bp);
        } else if (s->rejected_ratio_bp &&
                   over(c->rejected, rep, s->rejected_ratio_bp)) {
            g->failure_exceeded = 1;
            snprintf(g->why, sizeof g->why,
                     "stage %u REJECTED %llu of %llu > %u bp", stage,
                     (unsigned long long)c->rejected, (unsigned long long)rep,
                     s->rejected_ratio_bp);
        } else if (s->timed_out_ratio_bp &&
                   over(c->timed_out, rep, s->timed_out_ratio_bp)) {
            g->failure_exceeded = 1;
            snprintf(g->why, sizeof g->why,
                     "stage %u TIMED_OUT %llu of %llu > %u bp", stage,
                     (unsigned long long)c->timed_out, (unsigned long long)rep,
                     s->timed_out_ratio_bp);
        }
    }
    uint64_t start = c->started_time_ms;
    uint64_t el = now > start ? now - start : 0;
    g->bake_ok = start != 0 && el >= s->bake_ms;
    g->bake_remaining_ms = g->bake_ok ? 0 : (start == 0 ? s->bake_ms : s->bake_ms - el);
    g->advance_ready = g->min_reported_ok && g->success_ok && g->bake_ok &&
                       !g->failure_exceeded;
    if (g->failure_exceeded) {
        return;
    }
    if (!g->min_reported_ok) {
        snprintf(g->why, sizeof g->why, "stage %u: %llu of %u reports", stage,
                 (unsigned long long)rep, s->min_reported);
    } else if (!g->success_ok) {
        snprintf(g->why, sizeof g->why, "stage %u: success %u bp < %u bp", stage,
                 g->success_bp, s->success_ratio_bp);
    } else if (!g->bake_ok) {
        snprintf(g->why, sizeof g->why, "stage %u: baking, %llu ms left", stage,
                 (unsigned long long)g->bake_remaining_ms);
    } else if (!s->auto_advance) {
        snprintf(g->why, sizeof g->why,
                 "stage %u: gates pass, waiting for a manual Advance", stage);
    } else {
        snprintf(g->why, sizeof g->why, "stage %u: gates pass", stage);
    }
}

/* ---- canonical encodings (docs/rollouts.md) -------------------------------*/

static int model_less(const char *a, const char *b)
{
    return strcmp(a, b) < 0;
}

size_t ro_manifest_encode(const struct ro_manifest *m, uint8_t *buf, size_t cap)
{
    if (m->n_models == 0 || m->n_models > RO_MODELS_MAX ||
        strlen(m->version) > RO_VERSION_MAX) {
        return 0;
    }
    struct canon_w w;
    canon_w_init(&w, buf, cap);
    canon_str(&w, RO_MANIFEST_TAG);
    canon_str(&w, m->version);
    canon_u64(&w, m->counter);
    canon_raw(&w, m->sha256, RO_SHA256_LEN);
    canon_u64(&w, m->size);
    canon_u32(&w, (uint32_t)m->n_models);
    for (size_t i = 0; i < m->n_models; i++) {
        if (strlen(m->models[i]) > INV_MODEL_MAX ||
            (i > 0 && !model_less(m->models[i - 1], m->models[i]))) {
            return 0;
        }
        canon_str(&w, m->models[i]);
    }
    return w.overflow ? 0 : w.len;
}

/* A string field of at most max bytes, printable, copied NUL-terminated. */
static int get_str(struct canon_r *r, size_t max, char *out, size_t min,
                   const char *field, struct werr *e)
{
    size_t n;
    const uint8_t *p = canon_get_bytes(r, max, &n);
    if (r->bad) {
        return werr_set(e, WERR_INVALID, "manifest: %s is truncated or longer "
                        "than %zu bytes", field, max);
    }
    if (n < min) {
        return werr_set(e, WERR_INVALID, "manifest: %s is empty", field);
    }
    memcpy(out, p, n);
    out[n] = '\0';
    if (strlen(out) != n || !ro__text_ok(out, max)) {
        return werr_set(e, WERR_INVALID, "manifest: %s has control bytes", field);
    }
    return 0;
}

int ro_manifest_decode(const uint8_t *buf, size_t len, struct ro_manifest *m,
                       struct werr *e)
{
    memset(m, 0, sizeof *m);
    if (len > RO_MANIFEST_MAX) {
        return werr_set(e, WERR_INVALID, "manifest is %zu bytes, max %zu", len,
                        (size_t)RO_MANIFEST_MAX);
    }
    struct canon_r r;
    canon_r_init(&r, buf, len);
    size_t tn;
    const uint8_t *tag = canon_get_bytes(&r, 64, &tn);
    if (r.bad || tn != sizeof RO_MANIFEST_TAG - 1 ||
        memcmp(tag, RO_MANIFEST_TAG, tn) != 0) {
        return werr_set(e, WERR_INVALID, "manifest: tag is not %s", RO_MANIFEST_TAG);
    }
    int rc;
    if ((rc = get_str(&r, RO_VERSION_MAX, m->version, 1, "version", e)) != 0) {
        return rc;
    }
    m->counter = canon_get_u64(&r);
    const uint8_t *sha = canon_take(&r, RO_SHA256_LEN);
    m->size = canon_get_u64(&r);
    uint32_t nm = canon_get_u32(&r);
    if (r.bad) {
        return werr_set(e, WERR_INVALID, "manifest: truncated before the models");
    }
    memcpy(m->sha256, sha, RO_SHA256_LEN);
    if (m->counter == 0) {
        return werr_set(e, WERR_INVALID, "manifest: release counter must be >= 1");
    }
    if (m->size == 0) {
        return werr_set(e, WERR_INVALID, "manifest: artifact size must be >= 1");
    }
    if (nm == 0 || nm > RO_MODELS_MAX) {
        return werr_set(e, WERR_INVALID,
                        "manifest: %u hardware models, want 1..%d", nm,
                        RO_MODELS_MAX);
    }
    m->n_models = nm;
    for (uint32_t i = 0; i < nm; i++) {
        if ((rc = get_str(&r, INV_MODEL_MAX, m->models[i], 1, "hardware model",
                          e)) != 0) {
            return werr_wrap(e, "models[%u]", i);
        }
        if (i > 0 && !model_less(m->models[i - 1], m->models[i])) {
            return werr_set(e, WERR_INVALID, "manifest: models[%u] is not in "
                            "strictly ascending order (canonical form)", i);
        }
    }
    if (r.left != 0) {
        return werr_set(e, WERR_INVALID, "manifest: %zu trailing bytes", r.left);
    }
    return 0;
}

size_t ro_report_message(const char *device_id, uint64_t key_epoch,
                         uint64_t counter, uint64_t rollout_id,
                         uint64_t release_counter, uint32_t phase,
                         const char *detail, uint8_t *buf, size_t cap)
{
    detail = detail ? detail : "";
    if (strlen(device_id) > INV_DEVICE_ID_MAX || strlen(detail) > RO_DETAIL_MAX) {
        return 0;
    }
    struct canon_w w;
    canon_w_init(&w, buf, cap);
    canon_raw(&w, RO_REPORT_TAG, sizeof RO_REPORT_TAG - 1);
    canon_str(&w, device_id);
    canon_u64(&w, key_epoch);
    canon_u64(&w, counter);
    canon_u64(&w, rollout_id);
    canon_u64(&w, release_counter);
    canon_u32(&w, phase);
    canon_str(&w, detail);
    return w.overflow ? 0 : w.len;
}

size_t ro_desired_encode(const struct ro_desired_view *v, uint8_t *buf,
                         size_t cap)
{
    struct canon_w w;
    canon_w_init(&w, buf, cap);
    canon_str(&w, RO_DESIRED_TAG);
    canon_str(&w, v->device_id);
    canon_u64(&w, v->rollout_id);
    canon_u64(&w, v->release_id);
    canon_u64(&w, v->installed_counter);
    canon_bytes(&w, v->manifest, v->manifest_len);
    canon_str(&w, v->key_id);
    canon_bytes(&w, v->signature, v->signature_len);
    return w.overflow ? 0 : w.len;
}

int ro_desired_decode(const uint8_t *buf, size_t len, struct ro_desired_view *v,
                      struct werr *e)
{
    memset(v, 0, sizeof *v);
    struct canon_r r;
    canon_r_init(&r, buf, len);
    size_t n;
    const uint8_t *p = canon_get_bytes(&r, 64, &n);
    if (r.bad || n != sizeof RO_DESIRED_TAG - 1 ||
        memcmp(p, RO_DESIRED_TAG, n) != 0) {
        return werr_set(e, WERR_INVALID, "desired state: tag is not %s",
                        RO_DESIRED_TAG);
    }
    p = canon_get_bytes(&r, INV_DEVICE_ID_MAX, &n);
    if (p != NULL) {
        memcpy(v->device_id, p, n);
    }
    v->rollout_id = canon_get_u64(&r);
    v->release_id = canon_get_u64(&r);
    v->installed_counter = canon_get_u64(&r);
    v->manifest = canon_get_bytes(&r, RO_MANIFEST_MAX, &v->manifest_len);
    p = canon_get_bytes(&r, RO_KEY_ID_MAX, &n);
    if (p != NULL) {
        memcpy(v->key_id, p, n);
    }
    v->signature = canon_get_bytes(&r, RO_SIG_LEN, &v->signature_len);
    if (r.bad || r.left != 0) {
        return werr_set(e, WERR_INVALID, "desired state: truncated or trailing bytes");
    }
    return 0;
}
