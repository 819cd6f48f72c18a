/* dom.h - what every domain state-machine operation takes as input besides
 * its request: the position in the Raft log, the cluster time and the
 * caller.
 *
 * Determinism contract for everything under domain/: given the same store
 * contents, the same dom_ctx and the same request, an operation produces the
 * same store writes and the same result on every node. So domain code never
 * reads a clock, a random source or the network; time and the log index come
 * in here. The Raft FSM (consensus/fsm.c) fills it from the entry being
 * applied: index = raft_last_applied(r) + 1, time = the cluster time
 * carried in the entry (leader-stamped from its monotonic clock, chained
 * through the log; never a wall clock). */
#ifndef WARDEN_DOMAIN_DOM_H
#define WARDEN_DOMAIN_DOM_H

#include <stdint.h>

#include "../common/principal.h"

struct dom_ctx {
    uint64_t index;              /* log index of the command being applied */
    uint64_t time_ms;            /* cluster time, ms since the cluster's first command */
    const struct principal *who; /* borrowed; the authenticated caller */
};

#endif
