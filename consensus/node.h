/* node.h - the Raft node that wardend embeds: raft 0.22 + raft_uv on disk,
 * the mutual-TLS peer transport (transport_tls.h), and the replicated state
 * machine (fsm.h) behind a raft_fsm adapter (issue 3).
 *
 * What it adds on top of raft:
 *   - group commit: proposals are queued and submitted once per loop
 *     iteration (at most WNODE_BATCH_MAX per iteration), so raft_uv sees them
 *     back to back and coalesces them into few disk writes;
 *   - batched apply: the entries raft commits in one loop iteration are
 *     applied in one LMDB write txn (wfsm batches) committed once, after
 *     the poll phase; every proposal and barrier callback of those entries
 *     waits for that commit, so a reply never acknowledges state that a
 *     read txn cannot see or a crash could lose;
 *   - cluster time: once a leader has applied its own barrier of the term,
 *     it anchors (applied cluster time, its monotonic ms) and stamps every
 *     later command with anchor + monotonic ms elapsed since (never the
 *     wall clock), so commit latency is never lost from the chain; it
 *     proposes a Tick when idle for tick_idle_ms. Without a leader cluster
 *     time stands still (docs/consensus.md, "Cluster time");
 *   - shared barriers: one raft_barrier serves every linearizable read that
 *     is waiting when it is issued; later readers join the next one;
 *   - membership: add as spare, promote to voter after raft's own catch-up
 *     rounds, remove, transfer leadership;
 *   - status: role, term, leader, indexes, snapshot, members and progress,
 *     cluster time, and this node's wall-clock offset from the leader.
 *
 * Addresses. raft stores one opaque address per server. Warden encodes it as
 *   "PEERHOST:PEERPORT/CLIENTHOST:CLIENTPORT"
 * The transport dials and listens on the part before '/'; the part after it
 * is the gRPC address given to clients as a leader hint (wnode_leader()).
 * IPv4 literals only (the transport's limit).
 *
 * Peer identity. Server id N must present a certificate from the cluster CA
 * with exactly one SAN URI warden://role/peer/n<N>; the node installs that
 * rule as the transport's authorize hook.
 *
 * Threading and lifetime (libuv habits). Everything runs on cfg->loop, in
 * that loop's thread. wnode_start() -> use -> wnode_close(cb); the struct is
 * freed right after the close callback returns. If a function that takes a
 * callback returns an error, the callback is never called; if it returns 0,
 * the callback is called exactly once, including when leadership is lost
 * (WERR_UNAVAIL) and when the node closes first (WERR_CANCELLED).
 *
 * On disk: data_dir/raft holds raft_uv's metadata, segments and snapshots;
 * data_dir/db holds the LMDB environment of the state machine. */
#ifndef WARDEN_CONSENSUS_NODE_H
#define WARDEN_CONSENSUS_NODE_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "common/err.h"
#include "consensus/fsm.h"
#include "warden/v1/command.pb-c.h"

/* Servers in a configuration we report or bootstrap. Raft itself has no cap;
 * five voters plus a few spares is the largest cluster we deploy. */
#define WNODE_MEMBERS_MAX 16
/* "host:port" of one side of an address, NUL included ("255.255.255.255:
 * 65535" is 22 bytes; DNS names are not accepted by the transport). */
#define WNODE_HOSTPORT_MAX 64
/* A full raft address "peer/client", NUL included. Below the transport's
 * CTLS_ADDRESS_MAX. */
#define WNODE_ADDR_MAX (2 * WNODE_HOSTPORT_MAX)

/* Proposals accepted but not yet answered (queued + in raft). Beyond this
 * wnode_propose() returns WERR_BUSY (gRPC UNAVAILABLE, retryable): a flood
 * must not grow memory or the log without bound. 4096 x (command <= 4 MiB)
 * is still a lot; the gRPC layer's own caps keep real commands small. */
#define WNODE_PENDING_MAX 4096
/* Proposals handed to raft per loop iteration. Bounds the work of one
 * iteration (each raft_apply encodes and queues an append and sends
 * AppendEntries), so timers and peers are still served under load. */
#define WNODE_BATCH_MAX 256
/* Readers waiting for the next barrier. Beyond this wnode_barrier() returns
 * WERR_BUSY. */
#define WNODE_READERS_MAX 4096
/* Ticks shorter than this are not examined for leader_wall_ms: a Tick
 * command is a few dozen bytes, anything longer is some other op, and this
 * keeps the offset probe from unpacking every entry. */
#define WNODE_TICK_PEEK_MAX 128
/* Batched apply (docs/consensus.md, "Batched apply"): committed entries are
 * applied into one LMDB write txn that commits once per loop iteration, or
 * as soon as it holds this many entries or this many entry bytes. The caps
 * bound what one commit costs and what a crash makes raft re-apply, the
 * dirty pages LMDB keeps in memory for the txn (a restarted node re-applies
 * its whole unsnapshotted log in one raft step), and how long the replies
 * waiting on the commit wait. 1024 is 4x the proposals one flush hands to
 * raft (WNODE_BATCH_MAX); 16 MiB is four of the largest commands
 * (WFSM_CMD_MAX). */
#define WNODE_APPLY_BATCH_MAX 1024u
/* An apply batch commits when a reader waits on it, when it reaches the
 * caps above, or at the latest this long after it opened. Proposals are
 * answered as soon as their entry is applied (raft has it durable on a
 * majority; apply is deterministic), so this bounds how stale LMDB's
 * committed state (serializable reads, watchers) may be, not write latency.
 * Fewer commits mean fewer fdatasyncs on a disk that every node shares. */
#define WNODE_APPLY_COMMIT_MS 10u
#define WNODE_APPLY_COMMIT_MS_MAX 1000u
#define WNODE_APPLY_BATCH_BYTES ((uint64_t)16 << 20)

/* Defaults (0 in the config selects them). */
#define WNODE_ELECTION_TIMEOUT_MS 1000   /* raft's own default */
#define WNODE_HEARTBEAT_TIMEOUT_MS 100   /* raft's own default */
/* Until a leader is known after start-up, the election timeout is the
 * configured one divided by this (never below two heartbeats). */
#define WNODE_FIRST_ELECTION_DIVISOR 4u
/* The leader proposes a Tick after this long without any proposal, so
 * cluster time (and each follower's wall-clock offset) stays fresh. */
#define WNODE_TICK_IDLE_MS 1000
/* Snapshot after 65536 entries since the last one and keep the last 8192
 * in the log: a follower less than 8192 entries behind catches up from the
 * log; one further behind gets the snapshot. etcd's default is 100,000.
 * The other side of the trade: raft keeps every entry since the last
 * snapshot in memory and raft_uv reloads them at start-up.
 *
 * Entries alone are the wrong measure once the state is large: a snapshot
 * costs a write of the whole LMDB image (hundreds of MiB at a million
 * devices), whatever it compacts. So for images of at least
 * WNODE_SNAPSHOT_SIZE_FLOOR, a snapshot also waits until the log written
 * since the last one is at least 1/WNODE_SNAPSHOT_LOG_RATIO of the image:
 * snapshot writes then cost at most that multiple of the log's own bytes.
 * Whatever the entries, the log since the last snapshot never exceeds
 * WNODE_SNAPSHOT_LOG_BYTES_MAX, which bounds raft's memory and the log a
 * restart loads (at raft's 2.9 GB/s CRC: ~0.1 s). wnode_snapshot_threshold
 * is the rule. */
#define WNODE_SNAPSHOT_THRESHOLD 65536
#define WNODE_SNAPSHOT_SIZE_FLOOR ((uint64_t)64 << 20)
#define WNODE_SNAPSHOT_LOG_RATIO 2u
#define WNODE_SNAPSHOT_LOG_BYTES_MAX ((uint64_t)256 << 20)
/* raft's threshold while a snapshot must wait (never reached). */
#define WNODE_SNAPSHOT_NEVER ((unsigned)-1)
#define WNODE_SNAPSHOT_TRAILING 8192

struct wnode;

struct wnode_peer {
    unsigned id;                           /* raft server id, > 0 */
    char peer_addr[WNODE_HOSTPORT_MAX];    /* "a.b.c.d:port", Raft traffic */
    char client_addr[WNODE_HOSTPORT_MAX];  /* "a.b.c.d:port", gRPC */
};

struct wnode;
/* Called (once, from the loop, never from inside raft) when the node hits an
 * unrecoverable error: the state machine's store failed during apply or
 * restore. The node has stopped applying; the embedder should log, close the
 * node and exit non-zero. e is borrowed for the call. */
typedef void (*wnode_fatal_cb)(struct wnode *n, const struct werr *e,
                               void *arg);

struct wnode_config {
    unsigned id;                 /* this server's id, > 0 */
    const char *data_dir;        /* created if missing; borrowed for start */
    uv_loop_t *loop;             /* borrowed; must outlive the node */
    /* This server's own addresses (also needed when it joins and peers is
     * empty). */
    const char *peer_addr;
    const char *client_addr;
    /* The initial voters, used only when bootstrap is set and the raft
     * directory is pristine (raft_bootstrap), otherwise ignored: after the
     * first start, the configuration lives in the log. */
    struct wnode_peer peers[WNODE_MEMBERS_MAX];
    unsigned n_peers;
    int bootstrap;
    /* PEM files: the cluster CA, this node's peer/n<id> cert and key.
     * Borrowed for start. */
    const char *ca_file;
    const char *cert_file;
    const char *key_file;
    /* 0 = the WNODE_* default. */
    unsigned election_timeout_ms;
    unsigned heartbeat_timeout_ms;
    unsigned snapshot_threshold;
    unsigned snapshot_trailing;
    unsigned tick_idle_ms;
    unsigned handshake_timeout_ms;   /* 0 = CTLS_HANDSHAKE_TIMEOUT_MS */
    unsigned connect_retry_ms;       /* 0 = raft_uv's default */
    /* How long an apply batch may stay open (docs/consensus.md, "Batched
     * apply"): 0 = WNODE_APPLY_COMMIT_MS. */
    unsigned apply_commit_ms;
    size_t map_size;                 /* LMDB map size, 0 = wfsm default */
    wnode_fatal_cb on_fatal;         /* may be NULL: the error is logged */
    void *on_fatal_arg;
#ifdef WARDEN_FAULTS
    /* TESTING ONLY (wardend --unsafe-fault ack-before-commit, the Jepsen
     * negative control): wnode_propose's callback fires with status 0 and
     * an empty result (code 0, resp NULL) as soon as raft has the entry,
     * before commit and apply. Breaks durability of acknowledged writes on
     * purpose. Absent from normal builds. */
    int fault_ack_before_commit;
#endif
};

/* Open the state machine, the transport and raft_uv, bootstrap if asked and
 * pristine, and start raft. A corrupt raft log is an error here
 * (raft_uv_set_auto_recovery(false)): see docs/consensus.md for recovery.
 * cfg is copied; its strings are borrowed only for the call.
 * Returns 0 (*out owned by the caller until wnode_close's callback),
 * WERR_INVALID/WERR_CONFIG (bad config), WERR_TLS, WERR_IO, WERR_CORRUPT or
 * WERR_NOMEM. On error *out is NULL and part of the teardown may still be
 * pending on the loop: run it until uv_run() returns before closing it. */
int wnode_start(struct wnode **out, const struct wnode_config *cfg,
                struct werr *e);

typedef void (*wnode_close_cb)(void *arg);
/* Fail queued proposals and waiting readers with WERR_CANCELLED, close raft
 * (raft fails what it holds; those callbacks also see WERR_CANCELLED), then
 * raft_uv, the transport, the state machine and our handles. cb runs once
 * everything is closed; n is freed right after cb returns. Call once. */
void wnode_close(struct wnode *n, wnode_close_cb cb, void *arg);

/* ---- writes ---------------------------------------------------------------- */

/* status: 0 when the command was committed and applied; then res is
 * non-NULL and res->code is the command's own outcome (0, WERR_EXISTS...).
 * Otherwise res is NULL and status is
 *   WERR_UNAVAIL   not leader any more (the command may or may not commit
 *                  later: retry on the new leader with the same idempotency
 *                  key),
 *   WERR_CANCELLED the node is closing (same ambiguity),
 *   WERR_INTERNAL  the node failed (see wnode_fatal_cb).
 * res is valid only during the call; the callee may take res->resp (set it
 * to NULL) to keep the packed response; the node frees the rest. */
typedef void (*wnode_propose_cb)(void *arg, int status,
                                 struct wfsm_result *res);

/* Propose cmd (borrowed for the call: it is stamped and encoded at once;
 * cmd->cluster_time_ms is ignored and replaced by the leader's stamp).
 * Only on the leader. Returns 0, WERR_UNAVAIL (not the leader: use
 * wnode_leader() for the hint; also while a leadership transfer is under
 * way), WERR_BUSY (WNODE_PENDING_MAX), WERR_CANCELLED (closing),
 * WERR_INTERNAL (failed node), or the encoder's error (WERR_LIMIT,
 * WERR_NOMEM). */
int wnode_propose(struct wnode *n, const Warden__V1__Command *cmd,
                  wnode_propose_cb cb, void *arg, struct werr *e);

/* ---- linearizable reads ------------------------------------------------------ */

/* status 0: every entry committed before the call is applied locally and
 * this node was still the leader when the barrier committed, so a read of
 * local state now is linearizable (Raft §6.4, via a barrier entry rather
 * than a read index). Otherwise WERR_UNAVAIL or WERR_CANCELLED. */
typedef void (*wnode_barrier_cb)(void *arg, int status);
/* Only on the leader. Returns 0, WERR_UNAVAIL, WERR_BUSY
 * (WNODE_READERS_MAX), WERR_CANCELLED or WERR_INTERNAL. */
int wnode_barrier(struct wnode *n, wnode_barrier_cb cb, void *arg);

/* ---- membership ---------------------------------------------------------------- */

/* status 0 or WERR_UNAVAIL (leadership lost), WERR_ABORTED (catch-up gave
 * up: the new server was unreachable or too slow), WERR_CANCELLED. */
typedef void (*wnode_change_cb)(void *arg, int status);

/* Add server id at address ("peer/client", copied) as a spare. With
 * promote, once the add has committed the node asks raft to make it a voter
 * (raft_assign): raft replicates to it in catch-up rounds and commits the
 * promotion only when the new server's log has caught up; cb fires after
 * that (or after the add alone without promote). Only on the leader; one
 * membership change at a time. Returns 0, WERR_UNAVAIL, WERR_BUSY (another
 * change is in flight), WERR_INVALID (bad id/address), WERR_EXISTS. */
int wnode_add(struct wnode *n, unsigned id, const char *address, int promote,
              wnode_change_cb cb, void *arg);
/* role: RAFT_VOTER, RAFT_STANDBY or RAFT_SPARE (raft.h). Promotion to voter
 * waits for catch-up as above. Same returns, plus WERR_NOTFOUND and
 * WERR_PRECOND (already has that role). */
int wnode_assign(struct wnode *n, unsigned id, int role, wnode_change_cb cb,
                 void *arg);
/* Remove server id from the configuration. Same returns. */
int wnode_remove(struct wnode *n, unsigned id, wnode_change_cb cb, void *arg);

/* Transfer leadership to voter id (0: raft picks an up-to-date voter). cb's
 * status is 0 when a leader other than this node is known at completion,
 * WERR_ABORTED when the transfer timed out (election timeout) and this node
 * is still the leader. Returns 0, WERR_UNAVAIL, WERR_BUSY (a transfer is in
 * flight), WERR_NOTFOUND/WERR_INVALID (not a voter). */
int wnode_transfer(struct wnode *n, unsigned id, wnode_change_cb cb, void *arg);

/* ---- observation ------------------------------------------------------------------ */

/* The current leader as this node knows it. Returns 0 and fills *id and
 * client_addr (cap >= WNODE_HOSTPORT_MAX), or WERR_UNAVAIL when no leader
 * is known. */
int wnode_leader(struct wnode *n, unsigned *id, char *client_addr, size_t cap);
int wnode_is_leader(struct wnode *n);

/* The state machine. Borrowed; valid until wnode_close(). Its store/inv
 * handles change when a snapshot is restored (fsm.h): fetch them again after
 * every callback rather than caching them. */
struct wfsm *wnode_fsm(struct wnode *n);

enum wnode_state {
    WNODE_UNAVAILABLE, WNODE_FOLLOWER, WNODE_CANDIDATE, WNODE_LEADER
};

struct wnode_member {
    unsigned id;
    char peer_addr[WNODE_HOSTPORT_MAX];
    char client_addr[WNODE_HOSTPORT_MAX];
    int role;               /* RAFT_VOTER, RAFT_STANDBY, RAFT_SPARE */
    const char *role_name;  /* static string */
    /* Leader only: highest index known replicated on that server
     * (raft_match_index). raft 0.22 keeps next_index in an opaque struct and
     * has no accessor, so it is not reported. */
    int has_progress;
    uint64_t match_index;
};

struct wnode_status {
    unsigned id;
    enum wnode_state state;
    const char *state_name;         /* static string */
    int failed;                     /* the fsm failed; the node stopped */
    uint64_t term;
    unsigned leader_id;             /* 0: unknown */
    char leader_client_addr[WNODE_HOSTPORT_MAX];
    uint64_t commit_index;
    uint64_t applied_index;         /* raft_last_applied */
    uint64_t fsm_applied_index;     /* the applied index stored in LMDB
                                       (committed; wfsm_committed_index) */
    uint64_t last_index;            /* last entry in the local log */
    uint64_t snapshot_index, snapshot_term;   /* 0: none yet */
    unsigned n_members;
    struct wnode_member members[WNODE_MEMBERS_MAX];
    uint64_t cluster_time_ms;       /* last committed cluster time
                                       (wfsm_committed_cluster_time) */
    int anchored;                   /* leader with this term's anchor */
    uint64_t anchors;               /* anchors taken since start */
    /* Wall-clock offset from the leader, display only: local wall clock at
     * the apply of the newest committed Tick - the leader_wall_ms the leader
     * put in it. It includes one replication+commit latency (ms on a LAN),
     * and is taken only from a Tick applied as the newest committed entry,
     * never from a replay or a catch-up. */
    int wall_offset_known;
    int64_t wall_offset_ms;
    /* Counters since start. */
    uint64_t proposals;             /* commands handed to raft */
    uint64_t flushes;               /* group-commit batches (loop passes
                                       that handed >= 1 command to raft) */
    uint64_t ticks;                 /* Tick commands proposed */
    uint64_t barriers;              /* raft_barrier calls */
    uint64_t barrier_readers;       /* readers served by them */
    uint64_t restores;              /* snapshot restores run by raft */
    uint64_t restores_skipped;      /* ... skipped because LMDB was newer */
    uint64_t snapshots;             /* snapshots taken */
    uint64_t apply_batches;         /* apply batches committed */
    uint64_t lmdb_commits;          /* durable LMDB commits (store_commits) */
    unsigned long tls_refused;      /* peer connections refused */
};

/* Fill st. Never fails. */
void wnode_status(struct wnode *n, struct wnode_status *st);

/* Commit the open apply batch now (docs/consensus.md, "Batched apply"), so
 * that a read txn begun after this call sees every entry this node has
 * applied, including those whose proposers were already answered. No-op
 * when no batch is open. Fires no callback. From the loop thread; the
 * service layer calls it before every read of local state (svc_store). */
void wnode_commit_applied(struct wnode *n);

/* The snapshot rule (see WNODE_SNAPSHOT_THRESHOLD), pure: raft's snapshot
 * threshold given the log bytes applied since the last snapshot, the size
 * of the last image (or of LMDB at start-up) and the configured entry
 * threshold. 1 (snapshot now) past WNODE_SNAPSHOT_LOG_BYTES_MAX;
 * WNODE_SNAPSHOT_NEVER while a large image waits for enough log;
 * otherwise `entries`. */
unsigned wnode_snapshot_threshold(uint64_t log_bytes, uint64_t image_bytes,
                                  unsigned entries);

/* Test-only: while hold is set, the apply batch is not committed at the
 * end of a loop iteration (it still commits at its size caps, before a
 * restore and at close; snapshots are refused meanwhile, and raft retries
 * them), nor by wnode_commit_applied. Applied entries then stay
 * uncommitted across iterations, so a test can check that proposals are
 * answered and readers are not until the commit. Clearing it commits at
 * the next loop pass. */
void wnode_test_hold_batch(struct wnode *n, int hold);

/* Split "peer/client" into its parts (each cap >= WNODE_HOSTPORT_MAX).
 * Returns 0 or WERR_INVALID. Either output may be NULL. */
int wnode_addr_split(const char *address, char *peer, size_t peer_cap,
                     char *client, size_t client_cap);

#endif
