/* access.h - just-in-time access as a deterministic state machine over a
 * store txn (issue 5; design and rules: docs/access.md; messages:
 * proto/warden/v1/access.proto).
 *
 *   policy      (access_policy.c)  per-purpose M-of-N rules, admin-only
 *   requests    (access_req.c)     RequestAccess, Approve/Deny -> grants
 *   checks      (access_check.c)   CheckAccess, RevokeGrant, ListGrants
 *   locks       (access_lock.c)    Lock/Unlock, matching, eager+lazy revoke
 *   revocations (access_revlog.c)  the revocation log read by gateways
 *
 * Determinism (dom.h): nothing here reads a clock or randomness. Every
 * expiry (pending request, grant, lock) is compared with ctx->time_ms, the
 * cluster time carried by the Command; ids are derived from ctx->index.
 *
 * Transactions: every write function runs in a caller-owned write txn and
 * on any error leaves it to be aborted (consensus/fsm.c rolls the command
 * back and audits the rejection). Auditing a success is the caller's job
 * (consensus/fsm_access.c), in the same txn.
 *
 * Roles are checked here (defence in depth: the principal travels inside
 * the Command), with WERR_PERM naming the rule.
 *
 * Ownership: messages returned through `**out` are heap protobuf-c
 * messages owned by the caller (acc_msg_free). Request messages are
 * borrowed for the call. A struct access is a plain value (db handles):
 * valid until the store is closed. */
#ifndef WARDEN_DOMAIN_ACCESS_H
#define WARDEN_DOMAIN_ACCESS_H

#include <stddef.h>
#include <stdint.h>

#include "warden/v1/access.pb-c.h"

#include "../common/err.h"
#include "../storage/store.h"
#include "dom.h"
#include "inventory.h"

/* ---- limits ------------------------------------------------------------- */
/* Targets of one request: reviewers must be able to read the list, and a
 * grant record stays small (32 x 128-byte ids). */
#define ACC_TARGETS_MAX 32
/* Labels in one selector (ANDed). */
#define ACC_SELECTOR_LABELS_MAX 4
/* Devices a selector resolution may examine in one apply (bounded CPU while
 * the writer lock is held); a bigger fleet must name devices or narrow the
 * selector (WERR_LIMIT). */
#define ACC_SELECTOR_SCAN_MAX 10000u
#define ACC_REASON_MAX 256
#define ACC_COMMENT_MAX 256
#define ACC_PROTOCOLS_MAX 8
#define ACC_PROTOCOL_LEN_MAX 16
#define ACC_PORTS_MAX 16
#define ACC_COMMAND_CLASS_MAX 64
/* "req-", "grt-", "lck-" + up to 20 decimal digits. */
#define ACC_ID_MAX 24
/* Open requests + live grants one principal may hold: bounds the grant
 * scan of a check (one index prefix per (device, principal)) and stops a
 * principal flooding reviewers. */
#define ACC_PRINCIPAL_LIVE_MAX 64u
/* Lock records (active locks plus fences kept after Unlock, see
 * docs/access.md). Every check evaluates all of them, so the table is
 * bounded; Lock fails with WERR_LIMIT when it is full of live locks. */
#define ACC_LOCKS_MAX 256u
/* Eager revocation at Lock/quarantine: live grants examined, and revoked,
 * in that one apply. Beyond either, the rest is revoked lazily at check
 * time by a fence (never ALLOWed meanwhile). */
#define ACC_REVOKE_SCAN_MAX 1024u
#define ACC_REVOKE_INLINE_MAX 256u
/* Hard caps no policy can exceed. */
#define ACC_APPROVALS_MAX 8u
#define ACC_DURATION_HARD_MAX_MS ((uint64_t)7 * 24 * 3600 * 1000)
#define ACC_DURATION_MIN_MS 1000u
#define ACC_USES_HARD_MAX 1000u
#define ACC_PENDING_TTL_MIN_MS 60000u
#define ACC_LOCK_VIEW_LAG_HARD_MAX 1000000u
#define ACC_REVLOG_RETAIN_MIN 8u
#define ACC_REVLOG_RETAIN_MAX 10000000u
/* Reviewers may only be humans' roles. */
#define ACC_REVIEWER_ROLES_ALLOWED (WROLE_ADMIN | WROLE_OPERATOR | WROLE_AUDITOR)
/* Defaults installed on first use (docs/access.md, "Policy"). */
#define ACC_LOCK_VIEW_LAG_DEFAULT 32u
#define ACC_REVLOG_RETAIN_DEFAULT 100000u
/* Dead grants (expired, exhausted, revoked) stay readable - and keep
 * their precise DENY reason - for this long after they expire; then a
 * sweep deletes them (the audit ledger keeps the history). */
#define ACC_GRANT_KEEP_MS ((uint64_t)24 * 3600 * 1000)
/* Records a sweep may retire per apply (pending expiry, dead grants): work
 * per apply stays bounded however many expire at once. */
#define ACC_SWEEP_MAX 8u
/* Revocation events pruned per append beyond the retention (drains: each
 * command appends at most a few). */
#define ACC_REVLOG_PRUNE_MAX 8u
/* Revocation log reads. */
#define ACC_REVLOG_READ_DEFAULT 100u
#define ACC_REVLOG_READ_MAX 1000u
#define ACC_REVLOG_SCAN_MAX 4096u
/* ListGrants paging, as inventory's ListDevices. */
#define ACC_PAGE_SIZE_DEFAULT 100u
#define ACC_PAGE_SIZE_MAX 1000u
#define ACC_LIST_SCAN_MAX 10000u
#define ACC_PAGE_TOKEN_MAX 32

/* ---- handle -------------------------------------------------------------- */
struct access {
    struct store *s;  /* borrowed */
    struct inv *inv;  /* borrowed */
    unsigned meta;    /* "acc.meta":  policy, revision counters */
    unsigned req;     /* "acc.req":   u64 BE request no -> AccessRequest */
    unsigned grant;   /* "acc.grant": u64 BE grant no -> AccessGrant */
    unsigned idx;     /* "acc.idx":   secondary indexes (access_int.h) */
    unsigned lock;    /* "acc.lock":  u64 BE lock no -> AccessLock */
    unsigned rev;     /* "acc.rev":   u64 BE revision -> RevocationEvent */
};

/* Start-up only (store_dbi): create/open the access dbs in s. */
int acc_dbs_open(struct store *s, struct werr *e);
/* Fill *a from dbs already opened with acc_dbs_open (store_dbi_find: safe
 * while a write txn is open). WERR_NOTFOUND if they were never opened. */
int acc_bind(struct access *a, struct store *s, struct inv *inv,
             struct werr *e);

void acc_msg_free(void *protobuf_c_message); /* NULL ok */

/* ---- policy (access_policy.c) -------------------------------------------- */
/* The policy in force (stored, or the defaults). Any txn. */
int acc_policy_get(struct access *a, struct store_txn *t,
                   Warden__V1__AccessPolicy **out, struct werr *e);
/* The rule of `purpose` in p, or NULL (purpose not 1..4). Borrowed from p. */
const Warden__V1__AccessPurposeRule *
acc_policy_rule(const Warden__V1__AccessPolicy *p, int purpose);
/* SetAccessPolicy: admin only. Every field is validated against the hard
 * caps above; rules replace the current rule of their purpose. */
int acc_policy_set(struct access *a, struct store_txn *t,
                   const struct dom_ctx *ctx,
                   const Warden__V1__SetAccessPolicyRequest *req,
                   Warden__V1__AccessPolicy **out, struct werr *e);
const char *acc_purpose_name(int purpose);

/* ---- requests (access_req.c) --------------------------------------------- */
/* RequestAccess (admin, operator). id "req-<ctx->index>", PENDING until
 * ctx->time_ms + the purpose's pending TTL. Errors: WERR_INVALID,
 * WERR_NOTFOUND (unknown device), WERR_LIMIT (selector too broad, too many
 * open requests/grants), WERR_PERM. */
int acc_request(struct access *a, struct store_txn *t,
                const struct dom_ctx *ctx,
                const Warden__V1__RequestAccessRequest *req,
                Warden__V1__AccessRequest **out, struct werr *e);
/* Approve (approve = 1) or deny. The reviewer's role must be in the
 * purpose's reviewer mask and the reviewer must not be the requester
 * (WERR_PERM); a second vote by the same reviewer is WERR_PRECOND "already
 * voted" (the first stands); a request that is not PENDING (decided, or
 * expired by cluster time) is WERR_PRECOND. One deny -> DENIED; the M-th
 * approval -> GRANTED and *grant_out is the new grant (else NULL). */
int acc_review(struct access *a, struct store_txn *t,
               const struct dom_ctx *ctx,
               const Warden__V1__ReviewAccessRequest *req, int approve,
               Warden__V1__AccessRequest **req_out,
               Warden__V1__AccessGrant **grant_out, struct werr *e);
/* A request by id, with its effective state at now_ms. Any txn. */
int acc_request_get(struct access *a, struct store_txn *t, uint64_t now_ms,
                    const char *request_id, Warden__V1__AccessRequest **out,
                    struct werr *e);

/* ---- checks and grants (access_check.c) ----------------------------------- */
struct acc_check_result {
    int decision;               /* Warden__V1__AccessDecision */
    int reason;                 /* Warden__V1__AccessDenyReason, when DENY */
    char grant_id[ACC_ID_MAX + 1];
    char lock_id[ACC_ID_MAX + 1];
    uint64_t remaining_ms;
    uint32_t remaining_uses;
    uint64_t revision;
};
/* CheckAccess (gateway only). A gateway that is not the device's bound
 * gateway (or asks about an unknown device) gets WERR_PERM: the command
 * fails and is audited DENIED. Otherwise the answer is a result: ALLOW
 * consumes one use of the chosen grant (the one expiring first); DENY
 * names the first reason in this order: LOCK_VIEW_STALE, ALL_LOCKED,
 * GATEWAY_LOCKED, DEVICE_LOCKED, PRINCIPAL_LOCKED, DEVICE_NOT_ACTIVE, then
 * over the principal's grants for the device OUT_OF_SCOPE,
 * USES_EXHAUSTED, EXPIRED, GRANT_REVOKED, NO_GRANT. */
int acc_check(struct access *a, struct store_txn *t, const struct dom_ctx *ctx,
              const Warden__V1__CheckAccessRequest *req,
              struct acc_check_result *out, struct werr *e);
/* RevokeGrant (admin, operator, or the grant's own principal). Revoking a
 * grant that is not ACTIVE is WERR_PRECOND. Appends a GRANT_REVOKED event. */
int acc_revoke_grant(struct access *a, struct store_txn *t,
                     const struct dom_ctx *ctx,
                     const Warden__V1__RevokeGrantRequest *req,
                     Warden__V1__AccessGrant **out, struct werr *e);

struct acc_grant_page {
    Warden__V1__AccessGrant **grants; /* owned; n of them, oldest first */
    size_t n;
    char next_token[ACC_PAGE_TOKEN_MAX + 1]; /* "" = complete */
    uint64_t scanned;
};
/* ListGrants: filters (device, principal, effective state at now_ms) in
 * grant order, at most page_size (0 = default, > ACC_PAGE_SIZE_MAX =
 * WERR_INVALID), examining at most ACC_LIST_SCAN_MAX records (a partial,
 * possibly empty, page then carries a token). Any txn. */
int acc_list_grants(struct access *a, struct store_txn *t, uint64_t now_ms,
                    const Warden__V1__ListGrantsRequest *req,
                    struct acc_grant_page *page, struct werr *e);
void acc_grant_page_free(struct acc_grant_page *p);
/* A grant by id with its effective state at now_ms. Any txn. */
int acc_grant_get(struct access *a, struct store_txn *t, uint64_t now_ms,
                  const char *grant_id, Warden__V1__AccessGrant **out,
                  struct werr *e);

/* Bounded upkeep the state machine runs before every access op (write
 * txn): at most ACC_SWEEP_MAX pending requests past their TTL become
 * EXPIRED, and at most ACC_SWEEP_MAX grants dead for ACC_GRANT_KEEP_MS are
 * deleted with their indexes. Deterministic: depends on now and the store. */
int acc_sweep(struct access *a, struct store_txn *t, uint64_t now,
              struct werr *e);

/* ---- locks (access_lock.c) ------------------------------------------------ */
/* Lock (admin, operator): id "lck-<ctx->index>". Takes effect in this txn:
 * matching checks DENY, matching ACTIVE grants are revoked (eagerly up to
 * the bounds above, the rest lazily at check time), a LOCK event is
 * appended. expires_ms (cluster time) must be 0 or in the future. */
int acc_lock(struct access *a, struct store_txn *t, const struct dom_ctx *ctx,
             const Warden__V1__LockRequest *req, Warden__V1__AccessLock **out,
             struct werr *e);
/* Unlock (admin, operator). WERR_NOTFOUND for an unknown or already
 * unlocked lock. Appends an UNLOCK event. Grants the lock revoked stay
 * revoked. */
int acc_unlock(struct access *a, struct store_txn *t, const struct dom_ctx *ctx,
               const Warden__V1__UnlockRequest *req,
               Warden__V1__AccessLock **out, struct werr *e);

/* ---- device lifecycle hook (called by domain/lifecycle.c) ------------------ */
/* Device d (already in its new state `to`) was quarantined, revoked or
 * re-enrolled in write txn t: revoke every ACTIVE grant that names it
 * (whole grants; eagerly, or by a fence past the bounds) and append a
 * DEVICE_* revocation event for its gateway. Other transitions: nothing.
 * A store without the access dbs (acc_dbs_open never called): nothing. */
int acc_on_device_state(struct inv *inv, struct store_txn *t,
                        const struct dom_ctx *ctx, const Warden__V1__Device *d,
                        int kind, struct werr *e);

/* ---- revocation log (access_revlog.c) -------------------------------------- */
/* Latest revision (0 when none). Any txn. */
int acc_revision(struct access *a, struct store_txn *t, uint64_t *rev,
                 struct werr *e);

struct acc_rev_page {
    Warden__V1__RevocationEvent **events; /* owned; n, in revision order */
    size_t n;
    uint64_t latest;  /* latest revision when read */
    uint64_t next;    /* pass as `after` next time (last revision examined) */
};
/* Events with revision > after that concern `gateway` (listed, or "*"),
 * at most max (0 = default, capped at ACC_REVLOG_READ_MAX), examining at
 * most ACC_REVLOG_SCAN_MAX. gateway NULL or "" = every event.
 * Errors: WERR_RANGE (events after `after` were pruned: the gateway fell
 * behind retention and must resync), WERR_UNAVAIL (`after` is ahead of
 * this node's log: read from an up-to-date node), store errors. */
int acc_revlog_read(struct access *a, struct store_txn *t, const char *gateway,
                    uint64_t after, size_t max, struct acc_rev_page *out,
                    struct werr *e);
void acc_rev_page_free(struct acc_rev_page *p);

#endif
