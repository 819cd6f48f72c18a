/* rollout.h - staged firmware rollouts as a deterministic state machine over
 * a store txn (issue 6; design, encodings and gates: docs/rollouts.md;
 * messages: proto/warden/v1/rollout.proto).
 *
 * Files: rollout_release.c (release keys, the signed manifest, releases and
 * the per-hardware-model counter), rollout_plan.c (rollouts, the state
 * table, gates and their decisions, bounded housekeeping), rollout_member.c
 * (pure: buckets, selector, eligibility) and rollout_device.c (desired
 * state, update reports, installed release, per-device timeouts).
 *
 * Contract, as for every domain module (dom.h): no clock, no randomness, no
 * network. Cluster time (bake periods, per-device timeouts) and the log
 * index (ids) come from dom_ctx. Every write runs in the caller's write txn
 * together with its audit entries; on any error the caller aborts the txn.
 * Roles are checked here as well as in the server (the principal travels in
 * the Command).
 *
 * Bounded work: no operation walks the fleet. A desired-state call looks at
 * most RO_LIVE_MAX rollouts; a report touches one device, one assignment
 * and one rollout; housekeeping handles at most RO_TIMEOUTS_PER_APPLY
 * expired assignments and RO_LIVE_MAX gate evaluations per apply.
 *
 * Ownership: protobuf messages handed out are heap-allocated with the
 * default allocator and owned by the caller (free with the matching
 * warden__v1__*__free_unpacked(m, NULL), or ro_status_free()). Requests
 * are borrowed for the call. */
#ifndef WARDEN_DOMAIN_ROLLOUT_H
#define WARDEN_DOMAIN_ROLLOUT_H

#include <stddef.h>
#include <stdint.h>

#include "warden/v1/rollout.pb-c.h"

#include "../common/err.h"
#include "../storage/store.h"
#include "ctlsign.h"
#include "dom.h"
#include "inventory.h"

/* ---- limits -------------------------------------------------------------*/
/* Release key ids are LMDB keys and audit targets (same charset and bound
 * as command key ids). */
#define RO_KEY_ID_MAX 64
#define RO_PUBKEY_LEN 32 /* Ed25519 raw */
#define RO_SIG_LEN 64    /* Ed25519 (RFC 8032 §5.1.6) */
#define RO_VERSION_MAX 64 /* == INV_FIRMWARE_MAX: it becomes firmware_version */
/* Compatible hardware models per release: bounds the manifest, and the
 * per-model counter checks one CreateRelease does. */
#define RO_MODELS_MAX 16
#define RO_SHA256_LEN 32
#define RO_MANIFEST_TAG "warden.release.v1"
/* tag + version + counter + sha + size + n + models: ~2.3 KiB at the bounds. */
#define RO_MANIFEST_MAX                                                   \
    (4 + sizeof RO_MANIFEST_TAG + 4 + RO_VERSION_MAX + 8 + RO_SHA256_LEN + 8 + \
     4 + RO_MODELS_MAX * (4 + INV_MODEL_MAX))
/* Stages per rollout (canary, 10%, 50%, 100% and some room). */
#define RO_STAGES_MAX 8
#define RO_STAGE_NAME_MAX 32
#define RO_SELECTOR_LABELS_MAX 8
#define RO_NAME_MAX 64
#define RO_REASON_MAX 256
#define RO_DETAIL_MAX 256
/* Basis points: ratios and shares are integers so that every node computes
 * the same gate verdict (no floating point in apply). */
#define RO_BP 10000u
/* Buckets a device hashes into (docs/rollouts.md, "Membership"). */
#define RO_BUCKETS 10000u
/* Rollouts RUNNING or PAUSED at once. Each desired-state call and each
 * housekeeping pass looks at every one of them, so this bounds that work;
 * Start beyond it is WERR_LIMIT. */
#define RO_LIVE_MAX 16
/* Expired assignments turned TIMED_OUT per apply (oldest deadline first).
 * The backlog drains over later applies; each stays bounded. */
#define RO_TIMEOUTS_PER_APPLY 64
#define RO_DESIRED_TAG "warden.desired.v1"
#define RO_REPORT_TAG "warden.update.v1"
/* "warden.update.v1" || len || id || epoch || ctr || rollout || relctr ||
 * phase || len || detail */
#define RO_REPORT_MSG_MAX                                                  \
    (sizeof RO_REPORT_TAG - 1 + 4 + INV_DEVICE_ID_MAX + 8 + 8 + 8 + 8 + 4 + 4 + \
     RO_DETAIL_MAX)
#define RO_DESIRED_MAX                                                     \
    (4 + sizeof RO_DESIRED_TAG + 4 + INV_DEVICE_ID_MAX + 8 + 8 + 8 + 4 +     \
     RO_MANIFEST_MAX + 4 + RO_KEY_ID_MAX + 4 + RO_SIG_LEN)

/* State-table events. */
enum ro_event {
    RO_EV_START = 1,
    RO_EV_PAUSE = 2,
    RO_EV_RESUME = 3,
    RO_EV_ADVANCE = 4,
    RO_EV_ABORT = 5,
};
#define RO_N_EVENTS 6
#define RO_N_STATES 6 /* RolloutState values 0..5 */

struct ro;
struct audit;

/* Open the rollout dbs in s (start-up only: store_dbi). s, inv and audit
 * are borrowed and must outlive the handle. */
int ro_open(struct ro **out, struct store *s, struct inv *inv,
            struct audit *audit, struct werr *e);
void ro_close(struct ro *ro);

/* ---- pure ---------------------------------------------------------------*/

struct ro_manifest {
    char version[RO_VERSION_MAX + 1];
    uint64_t counter;
    uint8_t sha256[RO_SHA256_LEN];
    uint64_t size;
    size_t n_models;
    char models[RO_MODELS_MAX][INV_MODEL_MAX + 1];
};

/* Canonical manifest bytes (docs/rollouts.md). Returns the length, or 0 if
 * a field is out of bounds (models must be 1..RO_MODELS_MAX, strictly
 * ascending by bytes) or cap is too small. */
size_t ro_manifest_encode(const struct ro_manifest *m, uint8_t *buf,
                          size_t cap);
/* Strict decode: exact tag, every bound, ascending unique models, no
 * trailing bytes. 0 or WERR_INVALID naming the field. */
int ro_manifest_decode(const uint8_t *buf, size_t len, struct ro_manifest *m,
                       struct werr *e);

/* 1 if from --event--> is in the table, else 0; *to the resulting state
 * (ADVANCE stays RUNNING or becomes COMPLETED: the caller decides). */
int ro_transition_allowed(int from, int event, int *to);
const char *ro_state_name(int state);
const char *ro_event_name(int event);
const char *ro_phase_name(int phase);

/* bucket = first 8 bytes of SHA-256(u64 BE rollout_id || device_id), as a
 * u64 BE, mod RO_BUCKETS. */
uint32_t ro_bucket(uint64_t rollout_id, const char *device_id);

/* The message a device signs for ReportUpdateStatus. Returns its length,
 * or 0 if a field is too long or cap too small. */
size_t ro_report_message(const char *device_id, uint64_t key_epoch,
                         uint64_t counter, uint64_t rollout_id,
                         uint64_t release_counter, uint32_t phase,
                         const char *detail, uint8_t *buf, size_t cap);

/* The desired-state payload inside the control envelope. */
struct ro_desired_view {
    char device_id[INV_DEVICE_ID_MAX + 1];
    uint64_t rollout_id;  /* 0: no target */
    uint64_t release_id;
    uint64_t installed_counter;
    const uint8_t *manifest; /* borrowed from the payload; 0 bytes: none */
    size_t manifest_len;
    char key_id[RO_KEY_ID_MAX + 1];
    const uint8_t *signature;
    size_t signature_len;
};
size_t ro_desired_encode(const struct ro_desired_view *v, uint8_t *buf,
                         size_t cap);
int ro_desired_decode(const uint8_t *buf, size_t len,
                      struct ro_desired_view *v, struct werr *e);

/* Gate evaluation of one stage of r at cluster time now (pure; the same
 * function the state machine decides with). */
struct ro_gate {
    uint64_t reported;
    uint32_t success_bp, failure_bp;
    int min_reported_ok, success_ok, bake_ok, advance_ready;
    int failure_exceeded;
    uint64_t bake_remaining_ms;
    char why[160]; /* the failing criterion, or "" */
};
void ro_gate_eval(const Warden__V1__Rollout *r, uint32_t stage, uint64_t now,
                  struct ro_gate *g);

/* ---- release keys and releases (rollout_release.c) ------------------------*/

/* Admin. Errors: WERR_PERM, WERR_INVALID, WERR_EXISTS (id used before). */
int ro_key_register(struct ro *ro, struct store_txn *t,
                    const struct dom_ctx *ctx,
                    const Warden__V1__RegisterReleaseKeyRequest *req,
                    Warden__V1__ReleaseKey **out, struct werr *e);
/* Admin. Errors: WERR_PERM, WERR_INVALID, WERR_NOTFOUND, WERR_PRECOND
 * (already revoked). */
int ro_key_revoke(struct ro *ro, struct store_txn *t,
                  const struct dom_ctx *ctx,
                  const Warden__V1__RevokeReleaseKeyRequest *req,
                  Warden__V1__ReleaseKey **out, struct werr *e);
int ro_key_get(struct ro *ro, struct store_txn *t, const char *key_id,
               Warden__V1__ReleaseKey **out, struct werr *e);

/* Rollout or admin (rollback_of: admin, reason required). Checks, in this
 * order: role; request bounds; the manifest decodes (WERR_INVALID: empty or
 * oversize model list, ...); the key exists (WERR_NOTFOUND) and is not
 * revoked (WERR_PRECOND); the signature verifies (WERR_PERM); rollback_of
 * names an existing release (WERR_NOTFOUND); for every model the counter
 * is greater than every earlier release's (WERR_PRECOND). Audited
 * RELEASE_CREATE or RELEASE_ROLLBACK. The release id is ctx->index. */
int ro_release_create(struct ro *ro, struct store_txn *t,
                      const struct dom_ctx *ctx,
                      const Warden__V1__CreateReleaseRequest *req,
                      Warden__V1__Release **out, struct werr *e);
int ro_release_get(struct ro *ro, struct store_txn *t, uint64_t release_id,
                   Warden__V1__Release **out, struct werr *e);
/* Highest release counter of a hardware model (0 if none). */
int ro_model_counter(struct ro *ro, struct store_txn *t, const char *model,
                     uint64_t *out, struct werr *e);

/* ---- rollouts (rollout_plan.c) -------------------------------------------*/

/* Rollout or admin. Validates selector and stages (WERR_INVALID), the
 * release exists (WERR_NOTFOUND). DRAFT; id = ctx->index. Audited. */
int ro_rollout_create(struct ro *ro, struct store_txn *t,
                      const struct dom_ctx *ctx,
                      const Warden__V1__CreateRolloutRequest *req,
                      Warden__V1__Rollout **out, struct werr *e);

struct ro_transition_req {
    uint64_t rollout_id;
    int event;            /* enum ro_event */
    const char *reason;   /* borrowed; bounded by RO_REASON_MAX */
    int force;            /* ADVANCE without gates (admin) */
    const Warden__V1__CreateReleaseRequest *rollback; /* ABORT; may be NULL */
};
struct ro_transition_out {
    Warden__V1__Rollout *rollout; /* owned */
    uint64_t rollback_release_id, rollback_rollout_id;
    /* Set on WERR_PRECOND from the state table (the caller counts it in
     * its second txn with ro_reject_count_add()). */
    int refused, from;
};
/* Manual transition. Errors: WERR_PERM, WERR_INVALID, WERR_NOTFOUND,
 * WERR_PRECOND (not in the table: out->refused = 1; or gates not passing
 * for a non-forced ADVANCE), WERR_LIMIT (Start beyond RO_LIVE_MAX).
 * Audited ROLLOUT_TRANSITION; gate decisions it triggers ROLLOUT_GATE. */
int ro_rollout_transition(struct ro *ro, struct store_txn *t,
                          const struct dom_ctx *ctx,
                          const struct ro_transition_req *req,
                          struct ro_transition_out *out, struct werr *e);
/* Count a refused (from, event) cluster-wide (inv.counters "ro.rej") and
 * on the rollout's record. Write txn. */
int ro_reject_count_add(struct ro *ro, struct store_txn *t,
                        uint64_t rollout_id, int from, int event,
                        struct werr *e);
int ro_reject_count(struct ro *ro, struct store_txn *t, int from, int event,
                    uint64_t *out, struct werr *e);

/* Bounded housekeeping at cluster time ctx->time_ms: expire at most
 * RO_TIMEOUTS_PER_APPLY assignments, then evaluate the gates of every live
 * rollout (advance, complete or abort; audited ROLLOUT_GATE). Called by the
 * fsm on every Tick and after every rollout op. */
int ro_housekeep(struct ro *ro, struct store_txn *t, const struct dom_ctx *ctx,
                 struct werr *e);

int ro_rollout_get(struct ro *ro, struct store_txn *t, uint64_t rollout_id,
                   Warden__V1__Rollout **out, struct werr *e);

/* GetRollout: the rollout, its release and the gates of stages
 * 0..current evaluated at `now` (the applied cluster time). Any txn.
 * resp points into st; free with ro_status_free(). */
struct ro_status {
    Warden__V1__GetRolloutResponse resp;
    Warden__V1__StageGate gates[RO_STAGES_MAX];
    Warden__V1__StageGate *gate_ptrs[RO_STAGES_MAX];
    char explain[RO_STAGES_MAX][200];
};
int ro_rollout_status(struct ro *ro, struct store_txn *t, uint64_t rollout_id,
                      uint64_t now, struct ro_status *st, struct werr *e);
void ro_status_free(struct ro_status *st);

/* ---- devices (rollout_device.c) ------------------------------------------*/

struct ro_desired {
    struct ctl_issued ci;          /* owned: ro_desired_free() */
    int has_target;
    uint64_t rollout_id;
    Warden__V1__Release *release;  /* owned; NULL without target */
    uint64_t installed_counter;
};
void ro_desired_free(struct ro_desired *d);

/* GetDesiredState (the device's gateway, admin, operator). The device must
 * be ACTIVE or QUARANTINED (QUARANTINED: never a target) and a command key
 * must exist (WERR_PRECOND). May record an assignment (docs/rollouts.md).
 * The target's counter is always > the installed counter. */
int ro_desired_state(struct ro *ro, struct store_txn *t,
                     const struct dom_ctx *ctx,
                     const Warden__V1__GetDesiredStateRequest *req,
                     struct ro_desired *out, struct werr *e);

/* ReportUpdateStatus (the device's gateway, admin, operator). The verdict
 * is out->result; errors are for malformed requests, WERR_NOTFOUND,
 * WERR_PERM and the store. */
int ro_report(struct ro *ro, struct store_txn *t, const struct dom_ctx *ctx,
              const Warden__V1__ReportUpdateStatusRequest *req,
              Warden__V1__ReportUpdateStatusResponse *out, struct werr *e);

/* WERR_NOTFOUND if the device never had a record / the assignment does
 * not exist. */
int ro_device_get(struct ro *ro, struct store_txn *t, const char *device_id,
                  Warden__V1__DeviceReleaseRecord **out, struct werr *e);
int ro_assignment_get(struct ro *ro, struct store_txn *t, uint64_t rollout_id,
                      const char *device_id,
                      Warden__V1__AssignmentRecord **out, struct werr *e);

#endif
