/* fsm_int.h - internals shared by consensus/fsm.c (open, apply),
 * consensus/fsm_idem.c (idempotency records) and consensus/fsm_snap.c
 * (snapshot, restore, crash recovery of an interrupted restore). Not a
 * public header: only consensus/fsm*.c include it.
 *
 * Storage layout (docs/storage.md):
 *   db "fsm.meta":          "schema"        -> u32 BE (WFSM_SCHEMA_VERSION)
 *                           "applied_index" -> u64 BE
 *                           "cluster_time"  -> u64 BE, ms since the epoch
 *   db "fsm.idem":          principal_name 0x00 key
 *                             -> u64 BE index || packed warden.v1.CommandResult
 *   db "fsm.idem_by_index": u64 BE index -> the fsm.idem key written then
 * The by-index db orders records by age, so expiry walks the oldest few
 * without scanning the whole table. */
#ifndef WARDEN_CONSENSUS_FSM_INT_H
#define WARDEN_CONSENSUS_FSM_INT_H

#include <stddef.h>
#include <stdint.h>

#include "../common/err.h"
#include "../common/principal.h"
#include "../domain/audit.h"
#include "../domain/inventory.h"
#include "../storage/store.h"
#include "fsm.h"

#define WFSM_SCHEMA_VERSION 1u

/* Longest db_dir: store.c keeps the path in 4096 bytes, and we append the
 * longest suffix below plus "/data.mdb". */
#define WFSM_PATH_MAX 4096
#define WFSM_SUFFIX_RESTORE ".restore.tmp"
#define WFSM_SUFFIX_OLD ".old"
#define WFSM_SUFFIX_SNAPSHOT ".snapshot.tmp"
#define WFSM_SUFFIX_MAX 16 /* longest of the above, with margin */

/* An fsm.idem key: principal name, a 0x00 separator, the client's key.
 * Both parts are bounded (PRINCIPAL_NAME_MAX, INV_IDEMPOTENCY_KEY_MAX) so a
 * key always fits LMDB's STORE_KEY_MAX. */
#define WFSM_IDEM_KEY_MAX (PRINCIPAL_NAME_MAX + 1 + INV_IDEMPOTENCY_KEY_MAX)
_Static_assert(WFSM_IDEM_KEY_MAX <= STORE_KEY_MAX, "idem key fits LMDB");

struct wfsm {
    struct store *s;  /* NULL after a restore failed half-way: unusable */
    struct inv *inv;
    struct audit *audit;   /* issue 4: the ledger, in the same env */
    struct ro *ro;         /* issue 6: rollouts (domain/rollout.h) */
    unsigned dbi_meta;
    unsigned dbi_idem;
    unsigned dbi_idem_idx;
    /* Mirrors of fsm.meta applied_index and cluster_time as applied: with
     * a batch open they include entries not yet committed (fsm.h). */
    uint64_t applied;
    uint64_t ctime;
    /* The applied index and cluster time of the last durable commit, i.e.
     * what LMDB (and a read txn) holds; equal to the two above whenever no
     * batch is open. A batch abort rolls the mirrors back to these. */
    uint64_t durable_applied;
    uint64_t durable_ctime;
    struct store_txn *batch; /* the open batch txn (fsm.h), or NULL */
    uint64_t batch_entries;  /* entries applied into it (skips excluded) */
    uint64_t idem_window;  /* entries; WFSM_IDEM_WINDOW by default */
    uint64_t fail_op_at;   /* test hook, see wfsm_test_fail_op_at() */
    size_t map_size;       /* in effect (0 resolved to the default) */
    unsigned pinned;       /* snapshot images not yet released */
    char dir[WFSM_PATH_MAX];
    char parent[WFSM_PATH_MAX];
};

/* ---- fsm.c ---------------------------------------------------------------*/
/* Open store, dbs, inventory and load the meta values into f. On failure
 * nothing stays open (f->s and f->inv are NULL). */
int wfsm__state_open(struct wfsm *f, struct werr *e);
void wfsm__state_close(struct wfsm *f);

void wfsm__put_be64(uint8_t *p, uint64_t v);
uint64_t wfsm__get_be64(const uint8_t *p);

/* Helpers the op files (fsm.c, fsm_access.c, fsm_rollout.c) share. */

/* An op's return when the command itself failed (res->code/msg say how):
 * fsm.c rolls the op's txn back and records the failure in a second txn. */
#define WFSM__OP_FAILED 1

/* 1 for failures that depend on this node (its disk, memory, build), not
 * on the log: they must stop the node rather than become a result. */
int wfsm__node_fatal(int code);
/* The command's own failure: copy oe into res (dropping any response) and
 * return WFSM__OP_FAILED. */
int wfsm__cmd_fail(struct wfsm_result *res, const struct werr *oe);
/* A domain call's return rc with its error oe: 0, the command's failure
 * (WFSM__OP_FAILED, res set by wfsm__cmd_fail) or a node failure (rc
 * returned, oe copied into e). */
int wfsm__op_status(int rc, const struct werr *oe, struct wfsm_result *res,
                    struct werr *e);
/* SHA-256 of a packed message: the audit entry's request digest.
 * protobuf-c packs a decoded message the same way on every node of one
 * build, so the digest is deterministic across the cluster. */
int wfsm__msg_digest(const ProtobufCMessage *m, uint8_t out[AUDIT_HASH_LEN],
                     struct werr *e);
/* Pack m into res->resp (owned by res; wfsm_result_free() frees it). */
int wfsm__pack_resp(struct wfsm_result *res, const ProtobufCMessage *m,
                    struct werr *e);

/* ---- fsm_idem.c ----------------------------------------------------------*/
/* Build the fsm.idem key for (principal, key). Returns its length, or 0 if
 * either part is over its limit. */
size_t wfsm__idem_key(const char *principal, const char *key,
                      uint8_t out[WFSM_IDEM_KEY_MAX]);
/* Look (principal, key) up for the command at `index`. Returns 1 and fills
 * res (code, msg, resp copy; replayed = 1) when a record within the window
 * exists, 0 when there is none (or it has expired), negative on store or
 * decode failure (a stored record that does not decode is WERR_CORRUPT). */
int wfsm__idem_lookup(struct wfsm *f, struct store_txn *t, uint64_t index,
                      const uint8_t *k, size_t klen, struct wfsm_result *res,
                      struct werr *e);
/* Record res as the result of the command at `index` under key k. */
int wfsm__idem_record(struct wfsm *f, struct store_txn *t, uint64_t index,
                      const uint8_t *k, size_t klen,
                      const struct wfsm_result *res, struct werr *e);
/* Delete at most WFSM_IDEM_PRUNE_MAX records that expired by `index`. */
int wfsm__idem_prune(struct wfsm *f, struct store_txn *t, uint64_t index,
                     struct werr *e);

/* ---- fsm_rollout.c (issue 6) ---------------------------------------------*/
struct ro;
/* A rollout transition the state table refused, for the second txn. */
struct wfsm__ro_note {
    int refused;
    int from, event;
    uint64_t rollout_id;
};
/* note_of() for rollout ops: audit action, target, request digest and
 * perm_only; 0 and nothing set for other ops. */
int wfsm__rollout_note(const Warden__V1__Command *cmd, uint32_t *action,
                       char *target, size_t cap, uint8_t digest[AUDIT_HASH_LEN],
                       int *perm_only, struct werr *e);
/* Run a rollout op (ops 50-69) in t: 0, 1 (== OP_FAILED: res says how) or
 * negative (node failure). */
int wfsm__rollout_run(struct wfsm *f, struct store_txn *t,
                      const struct dom_ctx *ctx, const Warden__V1__Command *cmd,
                      struct wfsm__ro_note *rn, struct wfsm_result *res,
                      struct werr *e);
/* Tick: bounded rollout housekeeping (timeouts, gates). */
int wfsm__rollout_tick(struct wfsm *f, struct store_txn *t,
                       const struct dom_ctx *ctx, struct werr *e);
/* Second txn of a failed rollout op: count a refused transition. */
int wfsm__rollout_failed(struct wfsm *f, struct store_txn *t,
                         const struct wfsm__ro_note *rn, struct werr *e);

/* ---- fsm_access.c (issue 5, ops 30-49) ------------------------------------*/
/* note_of() for access ops: audit action, target and request digest; 0
 * and nothing set for other ops. */
int wfsm__access_note(const Warden__V1__Command *cmd, uint32_t *action,
                      char *target, size_t cap, uint8_t digest[AUDIT_HASH_LEN],
                      struct werr *e);
/* Run an access op in t: 0, 1 (== OP_FAILED: res says how) or negative
 * (node failure). */
int wfsm__access_run(struct wfsm *f, struct store_txn *t,
                     const struct dom_ctx *ctx, const Warden__V1__Command *cmd,
                     struct wfsm_result *res, struct werr *e);

/* ---- fsm_snap.c ----------------------------------------------------------*/
/* At open, before the store: finish or undo a restore a crash interrupted,
 * and remove a leftover snapshot directory. */
int wfsm__recover(struct wfsm *f, struct werr *e);

#endif
