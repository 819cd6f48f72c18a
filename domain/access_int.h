/* access_int.h - internals shared by domain/access*.c. Not a public
 * header.
 *
 * Storage layout (docs/storage.md, docs/access.md):
 *   "acc.meta":  "policy"   -> packed AccessPolicy (absent = defaults)
 *                "rev"      -> u64 BE latest revocation revision
 *   "acc.req":   u64 BE request no (its log index) -> packed AccessRequest
 *   "acc.grant": u64 BE grant no (approval index)  -> packed AccessGrant
 *   "acc.lock":  u64 BE lock no (its log index)    -> packed AccessLock
 *   "acc.rev":   u64 BE revision                   -> packed RevocationEvent
 *   "acc.idx":   secondary indexes, all with empty values:
 *     'D' device 0 principal 0 grant(8)  grants by (device, principal)
 *     'G' principal 0 grant(8)           grants of a principal
 *     'P' principal 0 request(8)         open (PENDING) requests
 *     'X' expires_ms(8) request(8)       pending expiry order
 *     'E' expires_ms(8) grant(8)         grant expiry order (sweep)
 *     'L' grant(8)                       live grants: ACTIVE, not yet known
 *                                        expired (eager revocation scans it)
 *   A grant's D/G/E entries live until the sweep deletes the grant
 *   (ACC_GRANT_KEEP_MS after it expires); its L entry until it dies. */
#ifndef WARDEN_DOMAIN_ACCESS_INT_H
#define WARDEN_DOMAIN_ACCESS_INT_H

#include "access.h"
#include "inv_int.h"

#define ACC_IDX_DEV 'D'
#define ACC_IDX_PRIN 'G'
#define ACC_IDX_PEND 'P'
#define ACC_IDX_PEXP 'X'
#define ACC_IDX_GEXP 'E'
#define ACC_IDX_LIVE 'L'
/* 1 + device + 0 + principal + 0 + 8 */
#define ACC_IDX_KEY_MAX (1 + INV_DEVICE_ID_MAX + 1 + PRINCIPAL_NAME_MAX + 1 + 8)
_Static_assert(ACC_IDX_KEY_MAX <= STORE_KEY_MAX, "index key fits LMDB");

#define ACC_REQ_PREFIX "req-"
#define ACC_GRANT_PREFIX "grt-"
#define ACC_LOCK_PREFIX "lck-"

#define ACC_S(x) WARDEN__V1__ACCESS_REQUEST_STATE__ACCESS_REQUEST_STATE_##x
#define ACC_G(x) WARDEN__V1__ACCESS_GRANT_STATE__ACCESS_GRANT_STATE_##x
#define ACC_R(x) WARDEN__V1__ACCESS_DENY_REASON__ACCESS_DENY_REASON_##x
#define ACC_K(x) WARDEN__V1__LOCK_TARGET_KIND__LOCK_TARGET_KIND_##x
#define ACC_EV(x) WARDEN__V1__REVOCATION_KIND__REVOCATION_KIND_##x

/* ---- access.c: ids, keys, records, validation ----------------------------- */
void acc__be64(uint8_t *p, uint64_t v);
uint64_t acc__get64(const uint8_t *p);
/* "<prefix><n>" into buf (ACC_ID_MAX + 1). */
void acc__id(char *buf, const char *prefix, uint64_t n);
/* Parse "<prefix><n>" (n >= 1, no leading zeros). 0 or WERR_INVALID. */
int acc__id_parse(const char *id, const char *prefix, uint64_t *n,
                  struct werr *e);

/* Get/put a packed message under u64 key n in db dbi. get: WERR_NOTFOUND
 * when absent; *out owned (acc_msg_free); WERR_CORRUPT if it does not
 * decode. */
int acc__get_msg(struct store_txn *t, unsigned dbi, uint64_t n,
                 const ProtobufCMessageDescriptor *d, ProtobufCMessage **out,
                 struct werr *e);
int acc__put_msg(struct store_txn *t, unsigned dbi, uint64_t n,
                 const ProtobufCMessage *m, struct werr *e);

/* Index keys; each returns the key length. */
size_t acc__key_dev(uint8_t *k, const char *device, const char *principal,
                    int with_grant, uint64_t grant);
size_t acc__key_str64(uint8_t *k, char kind, const char *s, int with_n,
                      uint64_t n);
size_t acc__key_64_64(uint8_t *k, char kind, uint64_t a, uint64_t b);
int acc__idx_put(struct access *a, struct store_txn *t, const uint8_t *k,
                 size_t n, struct werr *e);
/* Deleting an absent key is not an error. */
int acc__idx_del(struct access *a, struct store_txn *t, const uint8_t *k,
                 size_t n, struct werr *e);
/* Count keys with prefix k[0..n), stopping at `cap`. */
int acc__idx_count(struct access *a, struct store_txn *t, const uint8_t *k,
                   size_t n, uint64_t cap, uint64_t *out, struct werr *e);

/* Validators (WERR_INVALID naming the field). */
int acc__check_principal(const char *field, const char *s, struct werr *e);
int acc__check_text(const char *field, const char *s, size_t max,
                    int required, struct werr *e);
int acc__check_selector(Warden__V1__Label *const *l, size_t n, int required,
                        struct werr *e);
/* Does device d carry every label of the selector (value "" = any)? */
int acc__selector_match(Warden__V1__Label *const *l, size_t n,
                        const Warden__V1__Device *d);
/* May who act with one of roles? 0 or WERR_PERM. */
int acc__may(const struct dom_ctx *ctx, unsigned roles, const char *what,
             struct werr *e);

/* ---- requests (access_req.c) ------------------------------------------------ */
int acc__check_protocol(const char *s, struct werr *e);
int acc__check_class(const char *s, struct werr *e);
/* Pending requests past their TTL become EXPIRED (<= ACC_SWEEP_MAX). */
int acc__sweep_requests(struct access *a, struct store_txn *t, uint64_t now,
                        struct werr *e);

/* ---- grants (access_check.c) ------------------------------------------------ */
int acc__grant_load(struct access *a, struct store_txn *t, uint64_t g,
                    Warden__V1__AccessGrant **out, struct werr *e);
int acc__grant_store(struct access *a, struct store_txn *t, uint64_t g,
                     const Warden__V1__AccessGrant *gr, struct werr *e);
/* Effective state at now (ACTIVE past its expiry reads EXPIRED). */
int acc__grant_state(const Warden__V1__AccessGrant *g, uint64_t now);
/* Mark grant g (loaded as gr) REVOKED in t: state, who, reason, index; the
 * live index entry goes. Does not append an event. */
int acc__grant_revoke(struct access *a, struct store_txn *t,
                      const struct dom_ctx *ctx, uint64_t g,
                      Warden__V1__AccessGrant *gr, const char *by,
                      const char *reason, struct werr *e);
/* Create the grant of an approved request in t (all its indexes). *out
 * owned. */
int acc__grant_create(struct access *a, struct store_txn *t,
                      const struct dom_ctx *ctx,
                      const Warden__V1__AccessRequest *r,
                      Warden__V1__AccessGrant **out, struct werr *e);

/* ---- locks (access_lock.c) --------------------------------------------------- */
/* What a lock or fence targets. */
struct acc_target {
    int kind;                          /* LockTargetKind */
    const char *value;                 /* device, principal, gateway */
    Warden__V1__Label *const *sel;     /* LABEL_SELECTOR */
    size_t n_sel;
};
/* Does target tg cover grant gr (any of its devices, as they are now)? */
int acc__target_covers(struct access *a, struct store_txn *t,
                       const struct acc_target *tg,
                       const Warden__V1__AccessGrant *gr, int *covers,
                       struct werr *e);
/* Revoke live grants covered by tg, created at or before ctx->index:
 * eagerly while within ACC_REVOKE_SCAN_MAX/ACC_REVOKE_INLINE_MAX;
 * *lazy = 1 when some may remain (the caller must keep a fence). */
int acc__revoke_covered(struct access *a, struct store_txn *t,
                        const struct dom_ctx *ctx, const struct acc_target *tg,
                        const char *by, const char *reason, uint32_t *revoked,
                        int *lazy, struct werr *e);
/* Lock records, loaded once per check. */
struct acc_locks {
    Warden__V1__AccessLock **l; /* owned */
    uint64_t *no;
    size_t n;
};
int acc__locks_load(struct access *a, struct store_txn *t,
                    struct acc_locks *out, struct werr *e);
void acc__locks_free(struct acc_locks *ls);
/* Store a fence (an unlocked lazy lock record) for tg at ctx->index. */
int acc__fence_add(struct access *a, struct store_txn *t,
                   const struct dom_ctx *ctx, const struct acc_target *tg,
                   const char *reason, struct werr *e);

/* ---- revocation log (access_revlog.c) ---------------------------------------- */
/* Append ev (revision, index, time are set here) and prune beyond the
 * policy's retention (at most ACC_REVLOG_PRUNE_MAX). *rev_out optional. */
int acc__rev_append(struct access *a, struct store_txn *t,
                    const struct dom_ctx *ctx, Warden__V1__RevocationEvent *ev,
                    uint64_t *rev_out, struct werr *e);
/* The gateways of devices ids[0..n) (sorted, unique; unknown devices and
 * devices without a gateway add "*"). *out is a NULL-terminated array of
 * owned strings (acc__strv_free). */
int acc__gateways_of(struct access *a, struct store_txn *t,
                     char *const *ids, size_t n, char ***out, size_t *n_out,
                     struct werr *e);
void acc__strv_free(char **v, size_t n);

#endif
