/* fsm_rollout.h - the rollout engine of the replicated state machine
 * (issue 6; ops: consensus/fsm_rollout.c; domain: domain/rollout.h;
 * design: docs/rollouts.md).
 *
 * The read side for the server: open a store read txn on wfsm_store(f) and
 * call ro_rollout_status(wfsm_ro(f), t, id, wfsm_cluster_time(f), &st, e)
 * for GetRollout, ro_release_get() for GetRelease. The handle is borrowed,
 * with the same lifetime rules as wfsm_store()/wfsm_inv(). */
#ifndef WARDEN_CONSENSUS_FSM_ROLLOUT_H
#define WARDEN_CONSENSUS_FSM_ROLLOUT_H

#include "../domain/rollout.h"
#include "fsm.h"

struct ro *wfsm_ro(struct wfsm *f);

#endif
