/* dom.h - what every domain state-machine operation takes as input besides
 * its request: the position in the (future) Raft log, the cluster time and
 * the caller.
 *
 * Determinism contract for everything under domain/: given the same store
 * contents, the same dom_ctx and the same request, an operation produces the
 * same store writes and the same result on every node. So domain code never
 * reads a clock, a random source or the network; time and the log index come
 * in here. Today server/svc_inventory.c fills this from a local counter and
 * the local wall clock; once consensus lands, the Raft FSM fills it from the
 * entry being applied (issue 3: index = raft_last_applied(r) + 1, time =
 * the leader-stamped cluster time carried in the entry). */
#ifndef WARDEN_DOMAIN_DOM_H
#define WARDEN_DOMAIN_DOM_H

#include <stdint.h>

#include "../common/principal.h"

struct dom_ctx {
    uint64_t index;              /* log index of the command being applied */
    uint64_t time_ms;            /* cluster time, ms since the Unix epoch */
    const struct principal *who; /* borrowed; the authenticated caller */
};

#endif
