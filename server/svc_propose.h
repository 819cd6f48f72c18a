/* svc_propose.h - the two paths every Raft-backed handler takes: propose a
 * Command and reply from its commit, or read after a barrier (or locally).
 *
 * Writes. svc_propose_reply() completes the Command the handler built (its
 * op), stamps the caller's principal and the idempotency key, proposes it
 * with wnode_propose() (group commit) and replies from the propose
 * callback, i.e. after a majority fsynced the entry and this node applied
 * it. The reply maps:
 *   not the leader (before proposing) -> UNAVAILABLE + warden-leader,
 *                                        warden-leader-id (svc_fail_raft);
 *   res->code != 0                    -> werr_grpc_status(code), res->msg;
 *   res->code == 0                    -> resp unpacked with resp_desc;
 *   leadership lost with the command in flight (callback WERR_UNAVAIL),
 *   node closing (callback WERR_CANCELLED)
 *                                     -> UNAVAILABLE + trailer
 *                                        warden-outcome: unknown (the
 *                                        command may still commit; retry
 *                                        with the same idempotency key).
 * The client may leave at any time (svc_pending): the command goes on.
 *
 * Reads. svc_read(): serializable -> fn runs now on local state (any node,
 * may be stale); linearizable -> only on the leader, after a shared
 * barrier (Raft §6.4: every entry committed before the read is applied and
 * we were leader when the barrier committed), then fn runs. fn fetches the
 * store afresh (a snapshot restore replaces it).
 *
 * Internal proposals (no call): svc_propose_internal() proposes as given
 * (the caller sets the principal, usually ctx->self) and hands the result
 * to cb, or only logs failures when cb is NULL. */
#ifndef WARDEN_SERVER_SVC_PROPOSE_H
#define WARDEN_SERVER_SVC_PROPOSE_H

#include "warden/v1/command.pb-c.h"

#include "../consensus/fsm.h"
#include "svc.h"

struct store;
struct inv;
struct audit;

/* Fill the Command's envelope for a call: principal (borrowed from the
 * call; valid while the call lives), idempotency key (borrowed; NULL or
 * "" = none). The caller sets op_case and the op. */
void svc_cmd_init(Warden__V1__Command *cmd, const struct principal *who,
                  const char *idempotency_key);

/* Propose cmd (borrowed for the call: it is encoded at once) for call and
 * reply when it is applied. req is the call's request (kept with the
 * pending call). what: a static string, e.g. "set device state". The call
 * always ends (now or from the callback). */
void svc_propose_reply(struct svc_ctx *ctx, struct grpc_call *call,
                       const ProtobufCMessage *req,
                       const Warden__V1__Command *cmd, const char *what,
                       const ProtobufCMessageDescriptor *resp_desc);

/* Result of an internal proposal: status as wnode_propose_cb; res valid
 * only during the call (NULL when status != 0). */
typedef void (*svc_internal_cb)(struct svc_ctx *ctx, void *arg, int status,
                                const struct wfsm_result *res);
/* Returns 0 (cb will run exactly once) or the wnode_propose error (cb never
 * runs). what: a static string. */
int svc_propose_internal(struct svc_ctx *ctx, const Warden__V1__Command *cmd,
                         const char *what, svc_internal_cb cb, void *arg);

typedef void (*svc_read_fn)(struct svc_ctx *ctx, struct grpc_call *call,
                            const ProtobufCMessage *req);
/* Run fn for call: now if !linearizable, else after a barrier on the
 * leader (followers: UNAVAILABLE + leader trailers). The call ends in fn or
 * here. */
void svc_read(struct svc_ctx *ctx, struct grpc_call *call,
              const ProtobufCMessage *req, int linearizable, svc_read_fn fn,
              const char *what);

/* Request metadata "warden-consistency: serializable" asks for a local read
 * where the request message has no consistency field (Audit/Read). */
int svc_call_wants_serializable(const struct grpc_call *call);

/* The state machine's handles as they are now (never cache them). */
struct store *svc_store(struct svc_ctx *ctx);
struct inv *svc_inv(struct svc_ctx *ctx);
struct audit *svc_audit(struct svc_ctx *ctx);

/* Fail call from e, logging server-side failures (I/O, corrupt, internal). */
void svc_fail(struct grpc_call *call, const struct werr *e);

/* Gateway fast path: when the caller is a gateway and device_id exists here
 * bound to another gateway, refuse with PERMISSION_DENIED now (counted as a
 * denial, svc_denial_note) instead of proposing: a compromised gateway's
 * flood of foreign device ids then costs no Raft write. Returns 1 if the
 * call was refused (ended), else 0. Apply checks the binding again (the
 * local state may be stale); this is only the cheap first gate. */
int svc_gateway_refuse(struct svc_ctx *ctx, struct grpc_call *call,
                       const char *device_id);

#endif
