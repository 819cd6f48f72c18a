/* fsm.h - warden's replicated state machine: applies committed Raft entries
 * (warden.v1.Command) to LMDB, exactly once.
 *
 * Pure over LMDB: no raft types, no clock, no randomness, no network, so it
 * is tested deterministically without processes or sockets
 * (tests/unit/test_consensus_fsm.c). consensus/node.c adapts it to
 * struct raft_fsm.
 *
 * Exactly once (issue 3):
 *   - each apply runs in ONE write txn (a child of the batch txn when a
 *     batch is open, see "batches" below) that also stores the applied index
 *     (and the cluster time and the idempotency record), so the command's
 *     effects and the index commit together or not at all;
 *   - an entry whose index is <= the stored applied index is skipped (Raft
 *     re-applies entries after the last snapshot on every restart);
 *   - the applied index is inside every snapshot (it lives in the LMDB env
 *     that the snapshot copies); restore is skipped when LMDB is newer, and
 *     otherwise goes to a temporary env that is renamed into place.
 *
 * Idempotency: a command carrying idempotency_key records
 * (principal, key) -> CommandResult; a later command with the same
 * (principal, key) within WFSM_IDEM_WINDOW entries returns the stored result
 * without applying again. The window is counted in log entries, never in
 * seconds, so it is the same on every node.
 *
 * Lifetimes: the store and inv handles returned by wfsm_store()/wfsm_inv()
 * are borrowed and become invalid after wfsm_restore() or wfsm_close(). */
#ifndef WARDEN_CONSENSUS_FSM_H
#define WARDEN_CONSENSUS_FSM_H

#include <stddef.h>
#include <stdint.h>

#include "warden/v1/command.pb-c.h"

#include "../common/err.h"

struct store_image; /* storage/store.h */

struct store;
struct inv;
struct audit;
struct wfsm;

/* Idempotency window, in log entries. */
#define WFSM_IDEM_WINDOW 100000u
/* Largest encoded command accepted by apply/encode (the gRPC message cap
 * plus envelope). */
#define WFSM_CMD_MAX ((size_t)(4u << 20) + 4096u)
/* Devices per EnrollDevices command (issue 4, provisioning bursts): one
 * command is one LMDB txn and one Raft entry, so the batch bounds both the
 * entry size (~256 x 1 KiB) and the time one apply holds the writer. */
#define WFSM_ENROLL_BATCH_MAX 256u
/* raft 0.22 requires entry lengths to be multiples of 8 (docs/consensus.md). */
#define WFSM_ENTRY_ALIGN 8u

struct wfsm_result {
    int code;                 /* 0 or WERR_* of the command itself */
    char msg[WERR_MSG_MAX];
    uint8_t *resp;            /* packed response message; owned, may be NULL */
    size_t resp_len;
    int skipped;              /* 1: index <= applied index, nothing done */
    int replayed;             /* 1: idempotency hit, stored result returned */
};
void wfsm_result_free(struct wfsm_result *r);

/* Open (creating) the LMDB env at db_dir and the domain modules over it.
 * map_size 0 = default. *out owned by the caller until wfsm_close(). */
int wfsm_open(struct wfsm **out, const char *db_dir, size_t map_size,
              struct werr *e);
void wfsm_close(struct wfsm *f);

struct store *wfsm_store(struct wfsm *f);
struct inv *wfsm_inv(struct wfsm *f);
uint64_t wfsm_applied_index(const struct wfsm *f);
uint64_t wfsm_cluster_time(const struct wfsm *f);

/* Encode a command as a Raft entry payload: a 4-byte big-endian length, the
 * packed Command, zero padding to WFSM_ENTRY_ALIGN. *buf is malloc'd and
 * owned by the caller. */
int wfsm_cmd_encode(const Warden__V1__Command *cmd, uint8_t **buf,
                    size_t *len, struct werr *e);

/* Apply the committed entry at `index`. The command's own failure (e.g.
 * validation, ALREADY_EXISTS) is a result, not an error: it returns 0 with
 * res->code set, and the applied index still advances. A negative return
 * means the store failed (I/O, full, corrupt): the node must stop applying.
 * res is filled on 0 and must be freed with wfsm_result_free(). */
int wfsm_apply(struct wfsm *f, uint64_t index, const void *buf, size_t len,
               struct wfsm_result *res, struct werr *e);

/* Snapshot: a pinned point-in-time image of the env (store_image_pin; it
 * includes the applied index). O(1) here, whatever the env's size: only the
 * meta pages are copied; whoever reads the image's parts (raft_uv's writer
 * thread) pays for the bytes. Refused with a batch open (WERR_PRECOND).
 * *img is the caller's until wfsm_snapshot_release, which must come before
 * wfsm_restore (refused while an image is pinned) and wfsm_close. Its parts,
 * concatenated, are what wfsm_restore takes. */
int wfsm_snapshot(struct wfsm *f, struct store_image **img, struct werr *e);
void wfsm_snapshot_release(struct wfsm *f, struct store_image *img);
/* The same image copied into one malloc'd buffer (*buf, the caller's, freed
 * with free()): for offline tools (restore from backup) and tests, where
 * the bytes must outlive the fsm. O(env) on the caller's thread. */
int wfsm_snapshot_copy(struct wfsm *f, uint8_t **buf, size_t *len,
                       struct werr *e);
/* Restore from snapshot bytes: if the snapshot's applied index <= the
 * current applied index, do nothing (*skipped = 1). Otherwise write a temp
 * env, fsync, rename it over the live one and reopen. */
int wfsm_restore(struct wfsm *f, const uint8_t *buf, size_t len, int *skipped,
                 struct werr *e);

/* ---- additions (compatible with the contract above) ------------------- */

/* Idempotency records older than the window are deleted at most this many
 * per apply (oldest first), so expiry is amortised and every apply does a
 * bounded amount of work however many keys expire at once. Each apply adds
 * at most one record, so the backlog still drains. A record that has
 * expired but is not yet deleted is never replayed (lookups check the
 * window), so pruning speed never changes results. */
#define WFSM_IDEM_PRUNE_MAX 8u

/* Set the idempotency window (in log entries, >= 1) of this fsm; the
 * default is WFSM_IDEM_WINDOW. For tests and operators: it decides which
 * retries replay, so every node of a cluster must use the same value from
 * the same log index on, or their states diverge. Not persisted. */
void wfsm_set_idem_window(struct wfsm *f, uint64_t entries);
uint64_t wfsm_idem_window(const struct wfsm *f);

/* The audit ledger (domain/audit.h) of this fsm: borrowed, same lifetime
 * rules as wfsm_store()/wfsm_inv(). Read it in a store read txn. */
struct audit *wfsm_audit(struct wfsm *f);

/* ---- batches: many entries, one durable commit ---------------------------
 * Without a batch every wfsm_apply() is one durable LMDB commit (two
 * fsyncs). The Raft log is already fsynced before an entry commits, so the
 * node applies the entries of one loop iteration in ONE LMDB write txn
 * (docs/consensus.md, "Batched apply"):
 *   - wfsm_batch_begin() opens the batch txn (it holds LMDB's writer lock
 *     until it ends). While it is open, wfsm_apply() runs each entry in a
 *     child txn of it (store_txn_begin_child): the op, the idempotency
 *     lookup and record, pruning, the applied index and the cluster time
 *     of that entry, and, if the op fails, the second child that records
 *     only the failure (audit, index, time). The batch therefore always
 *     holds a whole number of entries, each exactly as an unbatched apply
 *     would have written it. Entries later in the batch see the writes of
 *     earlier ones (an idempotency key repeated within a batch replays).
 *   - wfsm_batch_commit() commits it: one durable commit for all of them.
 *   - wfsm_batch_abort() (and wfsm_close() with a batch open) drops it: as
 *     if the process had crashed before the commit. The in-memory applied
 *     index and cluster time roll back to the last commit, so re-applying
 *     the same entries applies them again, exactly once.
 * While a batch is open, wfsm_applied_index() and wfsm_cluster_time()
 * include its uncommitted entries (that is what apply needs: skip rule,
 * cluster time), but read txns and snapshots see only the last commit:
 * wfsm_committed_index() says how far that is. The caller must not
 * acknowledge an entry to anyone before the batch holding it commits.
 * Snapshot and restore refuse to run with a batch open (WERR_PRECOND):
 * commit first. The store is borrowed by the batch: do not begin another
 * write txn on wfsm_store() while one is open (LMDB's writer lock is not
 * re-entrant: it would deadlock). */

/* Open a batch. WERR_PRECOND if one is open or the fsm is unusable;
 * otherwise the store's begin errors. */
int wfsm_batch_begin(struct wfsm *f, struct werr *e);
/* Commit the open batch (0 when none is open: nothing to do). On failure
 * the batch is gone (aborted), the mirrors roll back to the last commit,
 * and the caller must stop applying: the error is the store's (node
 * fatal). */
int wfsm_batch_commit(struct wfsm *f, struct werr *e);
/* Drop the open batch, if any, and roll the mirrors back. */
void wfsm_batch_abort(struct wfsm *f);
/* 1 while a batch is open. */
int wfsm_batch_active(const struct wfsm *f);
/* Entries applied (not skipped) into the open batch; 0 without one. */
uint64_t wfsm_batch_entries(const struct wfsm *f);
/* The applied index and cluster time of the last durable commit: what a
 * read txn sees. Readers that report an index or judge expiry next to data
 * they read (AuditHead, ListGrants, RolloutStatus) should use these; with
 * no batch open they equal wfsm_applied_index()/wfsm_cluster_time(). */
uint64_t wfsm_committed_index(const struct wfsm *f);
/* Bytes of LMDB's data file in use (store_used_bytes); 0 if unusable. */
uint64_t wfsm_store_bytes(struct wfsm *f);
uint64_t wfsm_committed_cluster_time(const struct wfsm *f);

/* Test-only fault injection: the op of the entry applied at `index` fails
 * with WERR_PRECOND after it has made its writes, the way a later step of
 * the same command (e.g. the audit append of issue 4) could fail. Shows
 * that a failed command leaves no partial writes. 0 disables. */
void wfsm_test_fail_op_at(struct wfsm *f, uint64_t index);

#endif
