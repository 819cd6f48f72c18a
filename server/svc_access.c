/* svc_access.c - warden.v1.Access: just-in-time access over gRPC (issue 5;
 * rules: docs/access.md; state machine: domain/access.h, consensus/
 * fsm_access.c).
 *
 * Writes. SetAccessPolicy, RequestAccess, ApproveAccess, DenyAccess,
 * CheckAccess, RevokeGrant, Lock and Unlock each become one Command (ops
 * 30-37) with the caller's principal and the request's idempotency key,
 * proposed on the leader and answered from its commit (svc_propose.h: not
 * the leader -> UNAVAILABLE + warden-leader; leadership lost in flight ->
 * UNAVAILABLE + warden-outcome: unknown, retry with the same key). Roles are
 * the method's role set here and checked again in apply.
 *
 * CheckAccess (gateway only) is proposed with the idempotency key the
 * gateway sent, never one we make up: the fsm's (principal, key) window then
 * replays the stored answer for a retry and consumes no second use. A
 * gateway that sends no key gets no such protection: a retry after an
 * ambiguous outcome may consume another use (docs/access.md). A device bound
 * to another gateway (or, to the gateway, indistinguishably, an unknown one)
 * is refused before proposing (svc_gateway_refuse: PERMISSION_DENIED,
 * counted in the denial table that the leader flushes to the ledger); what
 * gets past a stale local view is refused and audited by apply.
 *
 * RevokeGrant, Lock and Unlock reply through revoke_reply() instead of
 * svc_propose_reply(): once their entry is applied here, the open
 * WatchRevocations streams are pumped *before* the client gets its
 * acknowledgement, so a watcher on the leader has the event queued by the
 * time the revoker hears "done" (the fan-out benchmark measures from that
 * acknowledgement), and a raft barrier tells the followers of the commit at
 * once (nudge_followers). Other revocations (a quarantine through
 * Inventory) and every commit on a follower reach watchers in the loop
 * iteration after the node applied them (svc_access__poll).
 *
 * Reads. GetAccessPolicy and ListGrants: linearizable (leader, after a
 * barrier) unless asked for serializable (ListGrants' consistency field;
 * GetAccessPolicy's request metadata "warden-consistency: serializable").
 *
 * WatchRevocations (server streaming, any node: the log it reads is
 * committed, so never retracted). A gateway principal sees the events for
 * its own gateway and "*"; admin, operator and auditor see every event, or
 * one gateway's view with request metadata "warden-gateway: <name>". The
 * stream sends the events with revision > from_revision in commit order, in
 * messages of at most SVC_ACCESS_WATCH_CHUNK events, then follows new
 * commits. Every message carries `revision`: the stream's position, i.e.
 * every event at or below it that concerns the watcher has been sent (while
 * catching up that is below the latest revision; once caught up it is the
 * latest). An idle stream gets a progress message {[], revision} every
 * SVC_ACCESS_WATCH_HEARTBEAT_MS so the gateway can tell quiet from dead.
 * Errors: OUT_OF_RANGE when from_revision fell behind retention (resync);
 * UNAVAILABLE when from_revision is ahead of this node's log; memory per
 * watcher is the grpc layer's GRPC_STREAM_OUT_MAX, and a watcher whose
 * buffer stays full for SVC_ACCESS_WATCH_STALL_MS is ended with
 * RESOURCE_EXHAUSTED naming the revision to resume from. At most
 * svc_ctx.access_watch_max streams on the node (wardend --max-watchers,
 * default SVC_ACCESS_WATCH_MAX_DEFAULT, at most SVC_ACCESS_WATCH_MAX_HARD;
 * svc.h); one more is refused with RESOURCE_EXHAUSTED.
 *
 * Fan-out cost. One pump reads the log once per distinct (filter,
 * position) rather than once per watcher (struct page_cache): when a
 * revocation lands, every caught-up gateway watcher sits at the same
 * position with the same filter, so 10,000 watchers cost one log read and
 * 10,000 message encodes. A follower learns of a commit from the leader's
 * next AppendEntries and applies it in its own loop; svc_access__poll(),
 * run once per loop iteration, pumps as soon as the committed revocation
 * log moves, instead of waiting for the next SVC_TICK_MS pump. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "warden/v1/access.pb-c.h"
#include "warden/v1/command.pb-c.h"

#include "../common/log.h"
#include "../common/principal.h"
#include "../consensus/fsm.h"
#include "../consensus/node.h"
#include "../domain/access.h"
#include "../storage/store.h"
#include "svc.h"
#include "svc_propose.h"

/* ---- limits ------------------------------------------------------------------ */
/* Open WatchRevocations streams on this node: svc_ctx.access_watch_max
 * (--max-watchers; bounds and memory per watcher: svc.h). Note that one
 * connection carries at most GRPC_MAX_STREAMS_DEFAULT (128) streams and the
 * node at most --max-conns connections (NODE_MAX_CONNS_DEFAULT 1,024), so
 * 1,000 watchers need at least 8 connections and 10,000 at least 79. */
/* Events per message (and per acc_revlog_read): a RevocationEvent is at
 * most ~5 KiB (32 device ids), so a chunk stays well under
 * GRPC_STREAM_OUT_MAX and the page's event array is small. */
#define SVC_ACCESS_WATCH_CHUNK 64u
/* Chunks per watcher per pump: a catching-up watcher gets up to 4 x 64
 * events per pump while one pass over every watcher stays bounded. */
#define SVC_ACCESS_WATCH_CHUNKS_PER_PUMP 4u
/* Progress notification period for an idle stream. A gateway that misses
 * SVC_ACCESS_FAIL_CLOSED_HEARTBEATS of them must fail closed
 * (docs/access.md), so this bounds how long a dead stream goes unnoticed:
 * 3 x 500 ms = 1.5 s. Pumps run every SVC_TICK_MS (100 ms), so progress
 * arrives every 500..600 ms. */
#define SVC_ACCESS_WATCH_HEARTBEAT_MS 500u
/* Documented for gateways (docs/access.md): missed heartbeats before a
 * gateway must deny new sessions and close open ones. */
#define SVC_ACCESS_FAIL_CLOSED_HEARTBEATS 3u
/* A watcher whose stream buffer stays full (grpc_call_send -> WERR_BUSY)
 * this long is cut off with RESOURCE_EXHAUSTED. By then it has missed ten
 * heartbeats' worth of time, so a correct gateway has failed closed long
 * ago; keeping it would only pin its 1 MiB buffer and its slot. */
#define SVC_ACCESS_WATCH_STALL_MS 5000u
/* Request metadata naming the gateway whose view an admin, operator or
 * auditor wants. */
#define SVC_ACCESS_GATEWAY_MD "warden-gateway"

struct svc_access_watch {
    struct grpc_call *call;             /* NULL: free slot */
    struct svc_ctx *ctx;
    char gateway[PRINCIPAL_NAME_MAX + 1]; /* filter; "" = every event */
    uint64_t after;                     /* position: sent everything <= */
    uint64_t sent_ms;                   /* loop time of the last message */
    uint64_t stalled_ms;                /* when the buffer first filled; 0 */
};

/* Owned through svc_ctx.access: allocated on the first WatchRevocations
 * with room for svc_ctx.access_watch_max streams, freed by
 * svc_access__shutdown (after every stream ended). The slot array never
 * moves: a slot's address is the cancel callback's argument. */
struct svc_access {
    struct svc_access_watch *w;  /* cap slots, owned */
    size_t cap;
    size_t n;
    size_t hi;           /* slots [0, hi) may be in use: bounds the scans */
    size_t free_hint;    /* no free slot below it: opening is O(1) while
                            slots fill in order */
    uint64_t cut_off;    /* slow watchers ended since start (logged) */
    uint64_t seen_index; /* committed log index at the last poll */
    uint64_t pumped_rev; /* every watcher was pumped at this revision */
};

/* The page most recently read from the revocation log in one pump, keyed
 * by (filter, position): every watcher at the same position with the same
 * filter gets the same events, so they share one read (and one decode).
 * Valid for one read txn; owns its page. */
struct page_cache {
    int valid;
    char gateway[PRINCIPAL_NAME_MAX + 1];
    uint64_t after;
    struct acc_rev_page page;
};

static const unsigned humans = WROLE_ADMIN | WROLE_OPERATOR | WROLE_AUDITOR;
static const unsigned writers = WROLE_ADMIN | WROLE_OPERATOR;

#define PROPOSE(ctx, call, msg, cmd, what, resp)                               \
    svc_propose_reply((ctx), (call), (msg), (cmd), (what),                     \
                      &warden__v1__##resp##__descriptor)

static void pump(struct svc_ctx *ctx, struct svc_access_watch *only,
                 uint64_t now_ms);

/* ---- writes ------------------------------------------------------------------ */

static void set_policy_cb(struct grpc_call *call, const ProtobufCMessage *msg,
                          void *data)
{
    const Warden__V1__SetAccessPolicyRequest *req =
        (const Warden__V1__SetAccessPolicyRequest *)msg;
    Warden__V1__Command cmd;
    svc_cmd_init(&cmd, grpc_call_principal(call), req->idempotency_key);
    cmd.op_case = WARDEN__V1__COMMAND__OP_SET_ACCESS_POLICY;
    cmd.set_access_policy = (Warden__V1__SetAccessPolicyRequest *)req;
    PROPOSE(data, call, msg, &cmd, "set access policy",
            set_access_policy_response);
}

static void request_cb(struct grpc_call *call, const ProtobufCMessage *msg,
                       void *data)
{
    const Warden__V1__RequestAccessRequest *req =
        (const Warden__V1__RequestAccessRequest *)msg;
    Warden__V1__Command cmd;
    svc_cmd_init(&cmd, grpc_call_principal(call), req->idempotency_key);
    cmd.op_case = WARDEN__V1__COMMAND__OP_REQUEST_ACCESS;
    cmd.request_access = (Warden__V1__RequestAccessRequest *)req;
    PROPOSE(data, call, msg, &cmd, "request access", request_access_response);
}

static void review(struct grpc_call *call, const ProtobufCMessage *msg,
                   void *data, int approve)
{
    const Warden__V1__ReviewAccessRequest *req =
        (const Warden__V1__ReviewAccessRequest *)msg;
    Warden__V1__Command cmd;
    svc_cmd_init(&cmd, grpc_call_principal(call), req->idempotency_key);
    if (approve) {
        cmd.op_case = WARDEN__V1__COMMAND__OP_APPROVE_ACCESS;
        cmd.approve_access = (Warden__V1__ReviewAccessRequest *)req;
    } else {
        cmd.op_case = WARDEN__V1__COMMAND__OP_DENY_ACCESS;
        cmd.deny_access = (Warden__V1__ReviewAccessRequest *)req;
    }
    PROPOSE(data, call, msg, &cmd, approve ? "approve access" : "deny access",
            review_access_response);
}

static void approve_cb(struct grpc_call *call, const ProtobufCMessage *msg,
                       void *data)
{
    review(call, msg, data, 1);
}

static void deny_cb(struct grpc_call *call, const ProtobufCMessage *msg,
                    void *data)
{
    review(call, msg, data, 0);
}

static void check_cb(struct grpc_call *call, const ProtobufCMessage *msg,
                     void *data)
{
    struct svc_ctx *ctx = data;
    const Warden__V1__CheckAccessRequest *req =
        (const Warden__V1__CheckAccessRequest *)msg;
    /* Cheap first gate: no Raft write for a foreign device id. */
    if (svc_gateway_refuse(ctx, call, req->device_id)) {
        return;
    }
    Warden__V1__Command cmd;
    /* The gateway's own key, always (see the file comment). */
    svc_cmd_init(&cmd, grpc_call_principal(call), req->idempotency_key);
    cmd.op_case = WARDEN__V1__COMMAND__OP_CHECK_ACCESS;
    cmd.check_access = (Warden__V1__CheckAccessRequest *)req;
    PROPOSE(ctx, call, msg, &cmd, "check access", check_access_response);
}

static void nudge_cb(void *arg, int status)
{
    (void)arg;
    (void)status; /* nothing waits on it: best effort */
}

/* Tell the followers now that a revocation committed. raft 0.22 sends the
 * leader's commit index only with an AppendEntries, and after an append it
 * waits a whole heartbeat interval (WNODE_HEARTBEAT_TIMEOUT_MS, 100 ms)
 * before the next one, so a follower (and every gateway watching it)
 * would learn of the revocation ~100 ms after the leader's watchers. A
 * barrier appends an entry, which raft replicates at once, carrying the
 * new commit index; the followers apply the revocation and pump their
 * watchers (svc_access__poll) within a round trip. Barriers are shared
 * (wnode_barrier: one raft barrier for every reader queued in a loop
 * iteration), so a burst of revocations costs one or a few entries; a
 * refusal (not the leader, WNODE_READERS_MAX) only loses the shortcut. The
 * proper fix belongs in consensus/ (send the commit index as soon as it
 * advances, as etcd's raft does); docs/access.md, "Gaps". */
static void nudge_followers(struct svc_ctx *ctx)
{
    if (wnode_is_leader(ctx->wn)) {
        (void)wnode_barrier(ctx->wn, nudge_cb, NULL);
    }
}

/* RevokeGrant, Lock, Unlock: as svc_propose_reply(), but the watchers are
 * pumped between apply and the reply (file comment), and the followers are
 * told of the commit at once (nudge_followers). The status mapping is
 * svc_propose.h's. */
static void revoke_done_cb(void *arg, int status, struct wfsm_result *res)
{
    struct svc_pending *p = arg;
    struct svc_ctx *ctx = p->ctx;
    const char *what = p->what;
    const ProtobufCMessageDescriptor *desc = p->resp_desc;
    struct grpc_call *call = svc_pending_end(p, NULL);
    if (status == 0 && res->code == 0 && !ctx->closing) {
        nudge_followers(ctx);
        if (ctx->access != NULL) {
            pump(ctx, NULL, ctx->now_ms);
        }
    }
    if (call == NULL) {
        return; /* the client left; the command went on all the same */
    }
    if (status == WERR_UNAVAIL || status == WERR_CANCELLED) {
        /* Proposed, fate unknown: it may still commit under the next
         * leader (svc_propose.h). */
        grpc_call_add_trailer(call, "warden-outcome", "unknown");
        if (status == WERR_UNAVAIL) {
            svc_fail_raft(ctx, call, status, what);
        } else {
            grpc_call_fail(call, GRPC_STATUS_UNAVAILABLE,
                           "%s: node shutting down with the command in "
                           "flight; outcome unknown (retry with the same "
                           "idempotency key)", what);
        }
        return;
    }
    if (status != 0) {
        svc_fail_raft(ctx, call, status, what);
        return;
    }
    if (res->code != 0) {
        grpc_call_fail(call, werr_grpc_status(res->code), "%s", res->msg);
        return;
    }
    ProtobufCMessage *resp =
        protobuf_c_message_unpack(desc, NULL, res->resp_len, res->resp);
    if (resp == NULL) {
        wlog(WLOG_ERROR, "state machine returned an undecodable response",
             "what", what, "type", desc->name, NULL);
        grpc_call_fail(call, GRPC_STATUS_INTERNAL, "%s: bad result", what);
        return;
    }
    grpc_call_reply(call, resp);
    protobuf_c_message_free_unpacked(resp, NULL);
}

static void revoke_reply(struct svc_ctx *ctx, struct grpc_call *call,
                         const ProtobufCMessage *req,
                         const Warden__V1__Command *cmd, const char *what,
                         const ProtobufCMessageDescriptor *resp_desc)
{
    if (!wnode_is_leader(ctx->wn)) {
        svc_fail_raft(ctx, call, WERR_UNAVAIL, what);
        return;
    }
    struct svc_pending *p = svc_pending_new(ctx, call, req);
    if (p == NULL) {
        return;
    }
    p->what = what;
    p->resp_desc = resp_desc;
    struct werr e = {0};
    int rc = wnode_propose(ctx->wn, cmd, revoke_done_cb, p, &e);
    if (rc != 0) {
        call = svc_pending_end(p, NULL);
        if (rc == WERR_LIMIT || rc == WERR_NOMEM || rc == WERR_INVALID) {
            grpc_call_fail_err(call, &e);
        } else {
            svc_fail_raft(ctx, call, rc, what);
        }
    }
}

static void revoke_cb(struct grpc_call *call, const ProtobufCMessage *msg,
                      void *data)
{
    const Warden__V1__RevokeGrantRequest *req =
        (const Warden__V1__RevokeGrantRequest *)msg;
    Warden__V1__Command cmd;
    svc_cmd_init(&cmd, grpc_call_principal(call), req->idempotency_key);
    cmd.op_case = WARDEN__V1__COMMAND__OP_REVOKE_GRANT;
    cmd.revoke_grant = (Warden__V1__RevokeGrantRequest *)req;
    revoke_reply(data, call, msg, &cmd, "revoke grant",
                 &warden__v1__revoke_grant_response__descriptor);
}

static void lock_cb(struct grpc_call *call, const ProtobufCMessage *msg,
                    void *data)
{
    const Warden__V1__LockRequest *req = (const Warden__V1__LockRequest *)msg;
    Warden__V1__Command cmd;
    svc_cmd_init(&cmd, grpc_call_principal(call), req->idempotency_key);
    cmd.op_case = WARDEN__V1__COMMAND__OP_LOCK;
    cmd.lock = (Warden__V1__LockRequest *)req;
    revoke_reply(data, call, msg, &cmd, "lock",
                 &warden__v1__lock_response__descriptor);
}

static void unlock_cb(struct grpc_call *call, const ProtobufCMessage *msg,
                      void *data)
{
    const Warden__V1__UnlockRequest *req = (const Warden__V1__UnlockRequest *)msg;
    Warden__V1__Command cmd;
    svc_cmd_init(&cmd, grpc_call_principal(call), req->idempotency_key);
    cmd.op_case = WARDEN__V1__COMMAND__OP_UNLOCK;
    cmd.unlock = (Warden__V1__UnlockRequest *)req;
    revoke_reply(data, call, msg, &cmd, "unlock",
                 &warden__v1__unlock_response__descriptor);
}

/* ---- reads -------------------------------------------------------------------- */

/* Begin a read txn and bind the access dbs. 0, or the call has failed. */
static int read_begin(struct svc_ctx *ctx, struct grpc_call *call,
                      struct access *a, struct store_txn **t)
{
    struct werr e = {0};
    if (store_txn_begin(svc_store(ctx), 0, t, &e) != 0) {
        svc_fail(call, &e);
        return -1;
    }
    if (acc_bind(a, svc_store(ctx), svc_inv(ctx), &e) != 0) {
        store_txn_abort(*t);
        svc_fail(call, &e);
        return -1;
    }
    return 0;
}

static void do_get_policy(struct svc_ctx *ctx, struct grpc_call *call,
                          const ProtobufCMessage *msg)
{
    (void)msg;
    struct access a;
    struct store_txn *t;
    if (read_begin(ctx, call, &a, &t) != 0) {
        return;
    }
    struct werr e = {0};
    Warden__V1__AccessPolicy *p = NULL;
    int rc = acc_policy_get(&a, t, &p, &e);
    store_txn_abort(t);
    if (rc != 0) {
        svc_fail(call, &e);
        return;
    }
    Warden__V1__GetAccessPolicyResponse r =
        WARDEN__V1__GET_ACCESS_POLICY_RESPONSE__INIT;
    r.policy = p;
    grpc_call_reply(call, &r.base);
    acc_msg_free(p);
}

static void get_policy_cb(struct grpc_call *call, const ProtobufCMessage *msg,
                          void *data)
{
    svc_read(data, call, msg, !svc_call_wants_serializable(call),
             do_get_policy, "linearizable read");
}

static void do_list(struct svc_ctx *ctx, struct grpc_call *call,
                    const ProtobufCMessage *msg)
{
    const Warden__V1__ListGrantsRequest *req =
        (const Warden__V1__ListGrantsRequest *)msg;
    struct access a;
    struct store_txn *t;
    if (read_begin(ctx, call, &a, &t) != 0) {
        return;
    }
    struct werr e = {0};
    struct acc_grant_page page = {0};
    /* Effective states (EXPIRED) are computed at the cluster time of the
     * last committed entry (the state the read txn sees, even while an
     * apply batch is open), never at this node's wall clock. */
    int rc = acc_list_grants(&a, t,
                             wfsm_committed_cluster_time(wnode_fsm(ctx->wn)),
                             req, &page, &e);
    store_txn_abort(t);
    if (rc != 0) {
        svc_fail(call, &e);
        return;
    }
    Warden__V1__ListGrantsResponse r = WARDEN__V1__LIST_GRANTS_RESPONSE__INIT;
    r.n_grants = page.n;
    r.grants = page.grants;
    r.next_page_token = page.next_token;
    grpc_call_reply(call, &r.base);
    acc_grant_page_free(&page);
}

static void list_cb(struct grpc_call *call, const ProtobufCMessage *msg,
                    void *data)
{
    const Warden__V1__ListGrantsRequest *req =
        (const Warden__V1__ListGrantsRequest *)msg;
    svc_read(data, call, msg,
             req->consistency !=
                 WARDEN__V1__READ_CONSISTENCY__READ_CONSISTENCY_SERIALIZABLE,
             do_list, "linearizable read");
}

/* ---- WatchRevocations ------------------------------------------------------------ */

static void watch_free(struct svc_ctx *ctx, struct svc_access_watch *w)
{
    struct svc_access *s = ctx->access;
    size_t i = (size_t)(w - s->w);
    memset(w, 0, sizeof *w);
    s->n--;
    if (i < s->free_hint) {
        s->free_hint = i;
    }
    while (s->hi > 0 && s->w[s->hi - 1].call == NULL) {
        s->hi--;
    }
}

static void watch_cancel_cb(struct grpc_call *call, void *arg)
{
    struct svc_access_watch *w = arg;
    (void)call;
    watch_free(w->ctx, w);
}

/* End w's stream with status (the slot is freed first). */
static void watch_end(struct svc_ctx *ctx, struct svc_access_watch *w,
                      int status, const char *msg)
{
    struct grpc_call *call = w->call;
    watch_free(ctx, w);
    grpc_call_on_cancel(call, NULL, NULL);
    grpc_call_finish(call, status, msg);
}

/* Send one message; 1 sent, 0 buffer full (stall accounting done; w may
 * have been ended), -1 w was ended. */
static int watch_send(struct svc_ctx *ctx, struct svc_access_watch *w,
                      Warden__V1__WatchRevocationsResponse *m, uint64_t now_ms)
{
    int rc = grpc_call_send(w->call, &m->base);
    if (rc == 0) {
        w->sent_ms = now_ms;
        w->stalled_ms = 0;
        return 1;
    }
    if (rc != WERR_BUSY) {
        watch_end(ctx, w, GRPC_STATUS_INTERNAL, "revocation watch: send failed");
        return -1;
    }
    if (w->stalled_ms == 0) {
        w->stalled_ms = now_ms == 0 ? 1 : now_ms;
        return 0;
    }
    if (now_ms - w->stalled_ms >= SVC_ACCESS_WATCH_STALL_MS) {
        char why[192];
        snprintf(why, sizeof why,
                 "revocation watch: client not reading for %u ms (stream "
                 "buffer full); fail closed and resume with "
                 "from_revision=%llu",
                 SVC_ACCESS_WATCH_STALL_MS, (unsigned long long)w->after);
        ctx->access->cut_off++;
        wlog(WLOG_WARN, "revocation watcher cut off (not reading)", "gateway",
             w->gateway[0] ? w->gateway : "*", NULL);
        watch_end(ctx, w, GRPC_STATUS_RESOURCE_EXHAUSTED, why);
        return -1;
    }
    return 0;
}

/* Bring one watcher forward from read txn t (latest = the log's latest
 * revision in t): at most SVC_ACCESS_WATCH_CHUNKS_PER_PUMP chunks, then a
 * progress message if it is caught up and quiet for a heartbeat. */
static int cache_read(struct page_cache *c, struct access *a,
                      struct store_txn *t, const struct svc_access_watch *w,
                      const struct acc_rev_page **out, struct werr *e)
{
    if (c->valid && c->after == w->after && strcmp(c->gateway, w->gateway) == 0) {
        *out = &c->page;
        return 0;
    }
    if (c->valid) {
        acc_rev_page_free(&c->page);
        c->valid = 0;
    }
    int rc = acc_revlog_read(a, t, w->gateway, w->after, SVC_ACCESS_WATCH_CHUNK,
                             &c->page, e);
    if (rc != 0) {
        acc_rev_page_free(&c->page);
        return rc;
    }
    c->valid = 1;
    c->after = w->after;
    snprintf(c->gateway, sizeof c->gateway, "%s", w->gateway);
    *out = &c->page;
    return 0;
}

static void cache_drop(struct page_cache *c)
{
    if (c->valid) {
        acc_rev_page_free(&c->page);
        c->valid = 0;
    }
}

static void pump_one(struct svc_ctx *ctx, struct access *a, struct store_txn *t,
                     struct page_cache *c, struct svc_access_watch *w,
                     uint64_t latest, uint64_t now_ms)
{
    for (unsigned k = 0; k < SVC_ACCESS_WATCH_CHUNKS_PER_PUMP && w->after < latest;
         k++) {
        struct werr e = {0};
        const struct acc_rev_page *page;
        int rc = cache_read(c, a, t, w, &page, &e);
        if (rc != 0) {
            /* WERR_RANGE: pruned under a watcher that fell behind
             * retention -> OUT_OF_RANGE, resync. */
            if (rc != WERR_RANGE) {
                wlog(WLOG_ERROR, "revocation watch read failed", "error", e.msg,
                     NULL);
            }
            watch_end(ctx, w, werr_grpc_status(rc), e.msg);
            return;
        }
        if (page->n == 0) {
            /* Everything examined was for other gateways: move on quietly
             * (the next heartbeat carries the position). */
            w->after = page->next;
            continue;
        }
        Warden__V1__WatchRevocationsResponse m =
            WARDEN__V1__WATCH_REVOCATIONS_RESPONSE__INIT;
        m.n_events = page->n;
        m.events = page->events; /* borrowed from the cache, not modified */
        m.revision = page->next;
        uint64_t next = page->next;
        int sent = watch_send(ctx, w, &m, now_ms);
        if (sent == 1) {
            w->after = next;
        }
        if (sent != 1) {
            return; /* full (resend from w->after next pump) or ended */
        }
    }
    if (w->after >= latest && now_ms - w->sent_ms >= SVC_ACCESS_WATCH_HEARTBEAT_MS) {
        Warden__V1__WatchRevocationsResponse m =
            WARDEN__V1__WATCH_REVOCATIONS_RESPONSE__INIT;
        m.revision = w->after;
        (void)watch_send(ctx, w, &m, now_ms);
    }
}

/* Pump one watcher (only) or all (only == NULL) from one read txn. With
 * if_moved, pump all only if the log's latest revision passed the one
 * every watcher was last pumped at (svc_access__poll). */
static void pump_txn(struct svc_ctx *ctx, struct svc_access_watch *only,
                     int if_moved, uint64_t now_ms)
{
    struct svc_access *s = ctx->access;
    if (s == NULL || s->n == 0) {
        return;
    }
    struct werr e = {0};
    struct store_txn *t;
    struct access a;
    if (store_txn_begin(svc_store(ctx), 0, &t, &e) != 0) {
        wlog(WLOG_WARN, "revocation watch: no read txn", "error", e.msg, NULL);
        return; /* next tick */
    }
    uint64_t latest = 0;
    if (acc_bind(&a, svc_store(ctx), svc_inv(ctx), &e) != 0 ||
        acc_revision(&a, t, &latest, &e) != 0) {
        store_txn_abort(t);
        wlog(WLOG_WARN, "revocation watch: no revision", "error", e.msg, NULL);
        return;
    }
    if (if_moved && latest <= s->pumped_rev) {
        store_txn_abort(t);
        return;
    }
    struct page_cache c;
    c.valid = 0;
    for (size_t i = 0; i < s->hi; i++) {
        struct svc_access_watch *w = &s->w[i];
        if (w->call != NULL && (only == NULL || only == w)) {
            pump_one(ctx, &a, t, &c, w, latest, now_ms);
        }
    }
    cache_drop(&c);
    store_txn_abort(t);
    if (only == NULL) {
        s->pumped_rev = latest;
    }
}

static void pump(struct svc_ctx *ctx, struct svc_access_watch *only,
                 uint64_t now_ms)
{
    pump_txn(ctx, only, 0, now_ms);
}

void svc_access__pump(struct svc_ctx *ctx, uint64_t now_ms)
{
    pump(ctx, NULL, now_ms);
}

void svc_access__poll(struct svc_ctx *ctx, uint64_t now_ms)
{
    struct svc_access *s = ctx->access;
    if (s == NULL || s->n == 0 || ctx->closing || ctx->wn == NULL) {
        return;
    }
    /* A memory read while nothing commits; a read txn per commit batch. */
    uint64_t ci = wfsm_committed_index(wnode_fsm(ctx->wn));
    if (ci == s->seen_index) {
        return;
    }
    s->seen_index = ci;
    pump_txn(ctx, NULL, 1, now_ms);
}

void svc_access__shutdown(struct svc_ctx *ctx)
{
    struct svc_access *s = ctx->access;
    if (s == NULL) {
        return;
    }
    for (size_t i = 0; i < s->hi; i++) {
        struct svc_access_watch *w = &s->w[i];
        if (w->call != NULL) {
            char msg[96];
            snprintf(msg, sizeof msg,
                     "server shutting down; resume with from_revision=%llu",
                     (unsigned long long)w->after);
            watch_end(ctx, w, GRPC_STATUS_UNAVAILABLE, msg);
        }
    }
    free(s->w);
    free(s);
    ctx->access = NULL;
}

/* The watcher table, sized once from svc_ctx.access_watch_max. 0 or -1
 * (out of memory). */
static int access_alloc(struct svc_ctx *ctx)
{
    size_t cap = ctx->access_watch_max;
    if (cap == 0) {
        cap = SVC_ACCESS_WATCH_MAX_DEFAULT;
    }
    if (cap > SVC_ACCESS_WATCH_MAX_HARD) {
        cap = SVC_ACCESS_WATCH_MAX_HARD;
    }
    struct svc_access *s = calloc(1, sizeof *s);
    if (s == NULL) {
        return -1;
    }
    s->w = calloc(cap, sizeof *s->w);
    if (s->w == NULL) {
        free(s);
        return -1;
    }
    s->cap = cap;
    ctx->access = s;
    return 0;
}

static void watch_cb(struct grpc_call *call, const ProtobufCMessage *msg,
                     void *data)
{
    struct svc_ctx *ctx = data;
    const Warden__V1__WatchRevocationsRequest *req =
        (const Warden__V1__WatchRevocationsRequest *)msg;
    const struct principal *who = grpc_call_principal(call);
    if (ctx->closing) {
        grpc_call_finish(call, GRPC_STATUS_UNAVAILABLE, "server shutting down");
        return;
    }
    /* Whose view: a gateway only ever its own. */
    const char *want = grpc_call_metadata(call, SVC_ACCESS_GATEWAY_MD);
    const char *gw = "";
    if (who->role == WROLE_GATEWAY) {
        if (want != NULL && want[0] != '\0' && strcmp(want, who->name) != 0) {
            svc_denial_note(ctx, who, grpc_call_path(call));
            grpc_call_finish(call, GRPC_STATUS_PERMISSION_DENIED,
                             "a gateway may only watch its own revocations");
            return;
        }
        gw = who->name;
    } else if (want != NULL) {
        gw = want;
    }
    if (strlen(gw) > PRINCIPAL_NAME_MAX) {
        grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT,
                         SVC_ACCESS_GATEWAY_MD " is longer than a principal name");
        return;
    }
    /* Validate from_revision now, so a stale gateway hears OUT_OF_RANGE
     * (or UNAVAILABLE: this node is behind) at once, not after a pump. */
    struct access a;
    struct store_txn *t;
    if (read_begin(ctx, call, &a, &t) != 0) {
        return;
    }
    struct werr e = {0};
    struct acc_rev_page page;
    int rc = acc_revlog_read(&a, t, gw, req->from_revision, 1, &page, &e);
    store_txn_abort(t);
    acc_rev_page_free(&page);
    if (rc != 0) {
        grpc_call_finish(call, werr_grpc_status(rc), e.msg);
        return;
    }
    if (ctx->access == NULL && access_alloc(ctx) != 0) {
        grpc_call_finish(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    struct svc_access *s = ctx->access;
    struct svc_access_watch *w = NULL;
    for (size_t i = s->free_hint; i < s->cap; i++) {
        if (s->w[i].call == NULL) {
            w = &s->w[i];
            s->free_hint = i + 1;
            if (i + 1 > s->hi) {
                s->hi = i + 1;
            }
            break;
        }
    }
    if (w == NULL) {
        s->free_hint = s->cap;
        char why[128];
        snprintf(why, sizeof why,
                 "too many revocation watchers on this node (max %zu, wardend "
                 "--max-watchers)", s->cap);
        grpc_call_finish(call, GRPC_STATUS_RESOURCE_EXHAUSTED, why);
        return;
    }
    w->call = call;
    w->ctx = ctx;
    snprintf(w->gateway, sizeof w->gateway, "%s", gw);
    w->after = req->from_revision;
    w->sent_ms = 0; /* the first pump sends progress at once */
    w->stalled_ms = 0;
    s->n++;
    grpc_call_set_userdata(call, ctx);
    grpc_call_on_cancel(call, watch_cancel_cb, w);
    wlog(WLOG_DEBUG, "revocation watch opened", "principal", who->name,
         "gateway", gw[0] ? gw : "*", NULL);
    pump(ctx, w, ctx->now_ms);
}

/* ---- registration ------------------------------------------------------------------ */

int svc_access_register(struct grpc_router *r, struct svc_ctx *ctx,
                        struct werr *e)
{
#define M(name, roles_, req, fn)                                               \
    {.path = "/warden.v1.Access/" name,                                        \
     .roles = (roles_),                                                        \
     .req_desc = &warden__v1__##req##__descriptor,                             \
     .handler = (fn)}
    const struct grpc_method methods[] = {
        M("SetAccessPolicy", WROLE_ADMIN, set_access_policy_request,
          set_policy_cb),
        /* Gateways read K (lock_view_max_lag) for their fail-closed rule. */
        M("GetAccessPolicy", humans | WROLE_GATEWAY, get_access_policy_request,
          get_policy_cb),
        M("RequestAccess", writers, request_access_request, request_cb),
        /* Reviewer roles are the purpose's policy (apply checks). */
        M("ApproveAccess", humans, review_access_request, approve_cb),
        M("DenyAccess", humans, review_access_request, deny_cb),
        M("CheckAccess", WROLE_GATEWAY, check_access_request, check_cb),
        M("RevokeGrant", writers, revoke_grant_request, revoke_cb),
        M("ListGrants", humans, list_grants_request, list_cb),
        M("Lock", writers, lock_request, lock_cb),
        M("Unlock", writers, unlock_request, unlock_cb),
        {.path = "/warden.v1.Access/WatchRevocations",
         .roles = humans | WROLE_GATEWAY,
         .req_desc = &warden__v1__watch_revocations_request__descriptor,
         .server_streaming = 1,
         .handler = watch_cb},
    };
#undef M
    return svc_register_methods(r, ctx, methods,
                                sizeof methods / sizeof methods[0],
                                "svc_access_register", e);
}
