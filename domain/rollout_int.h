/* rollout_int.h - internals shared by domain/rollout_*.c. Not a public
 * header.
 *
 * Storage layout (docs/rollouts.md, "Storage"):
 *   db "ro.meta": "k/" key_id              -> packed ReleaseKey
 *                 "r/" u64 BE release_id   -> packed Release
 *                 "m/" hardware_model      -> u64 BE highest release counter
 *                 "o/" u64 BE rollout_id   -> packed Rollout
 *                 "L/" u64 BE rollout_id   -> "" (RUNNING or PAUSED: live)
 *   db "ro.dev":  "d/" device_id           -> packed DeviceReleaseRecord
 *                 "a/" u64 BE rollout_id device_id -> packed AssignmentRecord
 *   db "ro.due":  u64 BE deadline_ms u64 BE rollout_id device_id -> ""
 * ro.due orders pending assignments by deadline, so timeouts are found
 * oldest first without scanning. */
#ifndef WARDEN_DOMAIN_ROLLOUT_INT_H
#define WARDEN_DOMAIN_ROLLOUT_INT_H

#include "rollout.h"

struct ro {
    struct store *s;      /* borrowed */
    struct inv *inv;      /* borrowed */
    struct audit *audit;  /* borrowed */
    unsigned meta, dev, due;
};

/* Largest key: "a/" + 8 + device id. */
#define RO__KEY_MAX (2 + 8 + INV_DEVICE_ID_MAX + 8)

size_t ro__key_u64(char prefix, uint64_t id, uint8_t out[RO__KEY_MAX]);
size_t ro__key_str(char prefix, const char *s, uint8_t out[RO__KEY_MAX]);
size_t ro__key_assign(uint64_t rollout_id, const char *device_id,
                      uint8_t out[RO__KEY_MAX]);
size_t ro__key_due(uint64_t deadline, uint64_t rollout_id,
                   const char *device_id, uint8_t out[RO__KEY_MAX]);

/* Pack m and put it under k in dbi. */
int ro__put_msg(struct ro *ro, struct store_txn *t, unsigned dbi,
                const uint8_t *k, size_t klen, const ProtobufCMessage *m,
                unsigned flags, struct werr *e);

int ro__rollout_load(struct ro *ro, struct store_txn *t, uint64_t id,
                     Warden__V1__Rollout **out, struct werr *e);
int ro__rollout_store(struct ro *ro, struct store_txn *t,
                      const Warden__V1__Rollout *r, struct werr *e);
void ro__rollout_free(Warden__V1__Rollout *r);
void ro__release_free(Warden__V1__Release *r);

/* Append one audit entry (outcome OK) in t. */
int ro__audit(struct ro *ro, struct store_txn *t, const struct dom_ctx *ctx,
              uint32_t action, const char *target, const char *detail,
              struct werr *e);
/* Target string of a rollout or release id: "rollout/N", "release/N". */
void ro__target(char *buf, size_t cap, const char *kind, uint64_t id);

/* 1 if s is at most max bytes with no control characters. */
int ro__text_ok(const char *s, size_t max);

/* Gate decisions for one RUNNING rollout at ctx->time_ms: abort, advance,
 * complete (bounded by RO_STAGES_MAX steps), audited ROLLOUT_GATE.
 * *changed = 1 when r was modified (the caller stores it; live-list
 * membership is updated here). */
int ro__evaluate(struct ro *ro, struct store_txn *t, const struct dom_ctx *ctx,
                 Warden__V1__Rollout *r, int *changed, struct werr *e);

/* Turn at most RO_TIMEOUTS_PER_APPLY assignments whose deadline <=
 * ctx->time_ms into TIMED_OUT (rollout_device.c). */
int ro__expire(struct ro *ro, struct store_txn *t, const struct dom_ctx *ctx,
               struct werr *e);

/* Live list. */
int ro__live_set(struct ro *ro, struct store_txn *t, uint64_t id, int live,
                 struct werr *e);
/* Live rollout ids in ascending order; at most RO_LIVE_MAX. */
int ro__live_list(struct ro *ro, struct store_txn *t,
                  uint64_t ids[RO_LIVE_MAX], size_t *n, struct werr *e);

/* Pure (rollout_member.c). */
int ro__selector_match(const Warden__V1__RolloutSelector *s,
                       const Warden__V1__Device *d);
int ro__release_has_model(const Warden__V1__Release *rel, const char *model);
/* The device's bucket is covered by stage `stage` of r. */
int ro__stage_covers(const Warden__V1__Rollout *r, uint32_t stage,
                     uint32_t bucket);
int ro__phase_terminal(int phase);

/* Counter cell of a phase in c (NULL for UNSPECIFIED). */
uint64_t *ro__counter_of(Warden__V1__StageCounters *c, int phase);

void ro__put_be64(uint8_t *p, uint64_t v);
uint64_t ro__get_be64(const uint8_t *p);

#endif
