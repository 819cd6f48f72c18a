/* recover.h - offline maintenance of a node's raft directory (issue 9,
 * docs/ops/quorum-loss.md, docs/ops/backup-restore.md). The only other
 * file besides node.c that drives raft_uv.
 *
 * Everything here runs with the node STOPPED, on a private uv loop, in the
 * calling thread, and returns when the files are written and synced: raft_uv
 * does not lock its directory, so a running wardend on the same directory
 * would see its log rewritten under it. The caller (server/admin_offline.c)
 * checks that no process holds the data dir before calling.
 *
 * Addresses are warden's "PEER/CLIENT" raft addresses (node.h). */
#ifndef WARDEN_CONSENSUS_RECOVER_H
#define WARDEN_CONSENSUS_RECOVER_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "consensus/node.h"

/* Force the raft configuration of the log in raft_dir to exactly `peers`
 * (all voters) with raft_recover (raft.h): raft appends one configuration
 * entry after the last entry of the log. Raft's rules for this to be safe
 * (raft.h, raft_recover): every server of the cluster is stopped; it is run
 * ONCE, on the surviving server with the highest term and longest log;
 * every other survivor gets a copy of that directory or is wiped and
 * re-added. `id` must be in peers. peers/raft_dir borrowed for the call.
 * Returns 0, WERR_CONFIG (id not in peers, bad address), WERR_NOTFOUND
 * (raft_dir holds no log: nothing to recover), WERR_IO, WERR_CORRUPT. */
int wrecover_config(const char *raft_dir, unsigned id,
                    const struct wnode_peer *peers, unsigned n_peers,
                    struct werr *e);

/* Make the pristine raft_dir start from a snapshot: raft metadata at term 1
 * and one raft_uv snapshot labelled (index, term 1) whose configuration is
 * `peers` (voters, configuration index = index) and whose data is `data`
 * (borrowed; a wfsm_snapshot() image). raft_start then restores it through
 * the fsm and appends new entries from index + 1. This is how a restored
 * backup keeps its applied index: the fsm skips entries <= the applied
 * index stored in LMDB, so a log bootstrapped at index 1 would skip every
 * new write (docs/ops/backup-restore.md). index must be > 0.
 * Returns 0, WERR_PRECOND (raft_dir is not pristine), WERR_CONFIG, WERR_IO,
 * WERR_NOMEM. */
int wrecover_install_snapshot(const char *raft_dir, unsigned id,
                              const struct wnode_peer *peers,
                              unsigned n_peers, uint64_t index,
                              const void *data, size_t len, struct werr *e);

/* Bootstrap a pristine raft_dir with `peers` as voters (raft_bootstrap):
 * for a restored backup whose applied index is 0 (an empty state). */
int wrecover_bootstrap(const char *raft_dir, unsigned id,
                       const struct wnode_peer *peers, unsigned n_peers,
                       struct werr *e);

#endif
