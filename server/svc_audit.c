/* svc_audit.c - warden.v1.Audit: the hash-chained ledger, read-only
 * (domain/audit.h, docs/audit.md). Roles: auditor, admin.
 *
 * Read{from_seq, max_entries}: one bounded page (at most
 * AUDIT_READ_MAX_ENTRIES entries and about AUDIT_READ_MAX_BYTES), with
 * next_seq and head_seq. Linearizable by default (leader, after a
 * barrier); request metadata "warden-consistency: serializable" reads this
 * node's ledger instead (any node; a prefix of the leader's).
 *
 * Head: this node's latest seq and hash with its applied index, on any
 * node. It is a report about one node (that is what applied_index is for):
 * comparing heads across nodes at equal applied_index is how the ledger's
 * replication is checked.
 *
 * Tail{from_seq}: server streaming from this node's ledger (any node;
 * entries are committed, so never retracted). Existing entries are sent in
 * chunks of SVC_AUDIT_TAIL_CHUNK entries / SVC_AUDIT_TAIL_CHUNK_BYTES per
 * pump, then new ones as they are applied; pumps run every SVC_TICK_MS
 * (svc_tick) and when the stream opens. Memory per watcher is the grpc
 * layer's GRPC_STREAM_OUT_MAX: when grpc_call_send() says WERR_BUSY we stop
 * and resend from that entry at the next pump; a watcher that stays full
 * for SVC_AUDIT_TAIL_STALL_MS is ended with RESOURCE_EXHAUSTED naming the
 * seq to resume from. At most SVC_AUDIT_TAIL_MAX streams. */
#include <stdio.h>
#include <string.h>

#include "warden/v1/audit.pb-c.h"

#include "../common/log.h"
#include "../consensus/node.h"
#include "../domain/audit.h"
#include "../storage/store.h"
#include "svc.h"
#include "svc_propose.h"

static const unsigned auditors = WROLE_AUDITOR | WROLE_ADMIN;

/* ---- Read / Head ------------------------------------------------------------ */

static void do_read(struct svc_ctx *ctx, struct grpc_call *call,
                    const ProtobufCMessage *msg)
{
    const Warden__V1__ReadAuditRequest *req =
        (const Warden__V1__ReadAuditRequest *)msg;
    struct werr e = {0};
    struct store_txn *t;
    if (store_txn_begin(svc_store(ctx), 0, &t, &e) != 0) {
        svc_fail(call, &e);
        return;
    }
    uint64_t head = 0;
    uint8_t hash[AUDIT_HASH_LEN];
    struct audit_page page = {0};
    int rc = audit_head(svc_audit(ctx), t, &head, hash, &e);
    if (rc == 0) {
        size_t max = req->max_entries > AUDIT_READ_MAX_ENTRIES
                         ? AUDIT_READ_MAX_ENTRIES
                         : req->max_entries;
        rc = audit_read(svc_audit(ctx), t, req->from_seq, max,
                        AUDIT_READ_MAX_BYTES, &page, &e);
    }
    store_txn_abort(t);
    if (rc != 0) {
        svc_fail(call, &e);
        return;
    }
    Warden__V1__ReadAuditResponse r = WARDEN__V1__READ_AUDIT_RESPONSE__INIT;
    r.n_entries = page.n;
    r.entries = page.entries;
    r.next_seq = page.n > 0 ? page.next_seq
                            : (req->from_seq == 0 ? 1 : req->from_seq);
    r.head_seq = head;
    grpc_call_reply(call, &r.base);
    audit_page_free(&page);
}

static void read_cb(struct grpc_call *call, const ProtobufCMessage *msg,
                    void *data)
{
    svc_read(data, call, msg, !svc_call_wants_serializable(call), do_read,
             "linearizable audit read");
}

static void head_cb(struct grpc_call *call, const ProtobufCMessage *msg,
                    void *data)
{
    struct svc_ctx *ctx = data;
    (void)msg;
    struct werr e = {0};
    struct store_txn *t;
    if (store_txn_begin(svc_store(ctx), 0, &t, &e) != 0) {
        svc_fail(call, &e);
        return;
    }
    uint64_t seq = 0;
    uint8_t hash[AUDIT_HASH_LEN];
    int rc = audit_head(svc_audit(ctx), t, &seq, hash, &e);
    store_txn_abort(t);
    if (rc != 0) {
        svc_fail(call, &e);
        return;
    }
    Warden__V1__AuditHeadResponse r = WARDEN__V1__AUDIT_HEAD_RESPONSE__INIT;
    r.seq = seq;
    r.hash.data = hash;
    r.hash.len = sizeof hash;
    /* The applied index stored with the ledger, in the same LMDB env: the
     * head above is exactly the state at this index. The committed one: a
     * serializable read can run while an apply batch is open, and the read
     * txn above sees only what the last batch commit wrote
     * (docs/consensus.md, "Batched apply"). */
    r.applied_index = wfsm_committed_index(wnode_fsm(ctx->wn));
    grpc_call_reply(call, &r.base);
}

/* ---- Tail ------------------------------------------------------------------ */

static void tail_free(struct svc_ctx *ctx, struct svc_audit_tail *w)
{
    w->call = NULL;
    w->next_seq = 0;
    w->stalled_ms = 0;
    ctx->n_tail--;
}

static void tail_cancel_cb(struct grpc_call *call, void *arg)
{
    struct svc_audit_tail *w = arg;
    struct svc_ctx *ctx = grpc_call_userdata(call);
    tail_free(ctx, w);
}

/* End w's stream with status (the slot is freed first). */
static void tail_end(struct svc_ctx *ctx, struct svc_audit_tail *w, int status,
                     const char *msg)
{
    struct grpc_call *call = w->call;
    tail_free(ctx, w);
    grpc_call_on_cancel(call, NULL, NULL);
    grpc_call_finish(call, status, msg);
}

/* Send what w has not seen yet, at most one chunk, from read txn t.
 * Returns 1 when the chunk went out whole and more may follow. */
static int tail_pump_one(struct svc_ctx *ctx, struct store_txn *t,
                          struct svc_audit_tail *w, uint64_t head,
                          uint64_t now_ms)
{
    if (w->next_seq > head) {
        w->stalled_ms = 0;
        return 0;
    }
    struct werr e = {0};
    struct audit_page page = {0};
    if (audit_read(svc_audit(ctx), t, w->next_seq, SVC_AUDIT_TAIL_CHUNK,
                   SVC_AUDIT_TAIL_CHUNK_BYTES, &page, &e) != 0) {
        wlog(WLOG_ERROR, "audit tail read failed", "error", e.msg, NULL);
        tail_end(ctx, w, werr_grpc_status(e.code), "audit tail: read failed");
        return 0;
    }
    int busy = 0;
    for (size_t i = 0; i < page.n; i++) {
        int rc = grpc_call_send(w->call, &page.entries[i]->base);
        if (rc == WERR_BUSY) {
            busy = 1;
            break;
        }
        if (rc != 0) {
            audit_page_free(&page);
            tail_end(ctx, w, GRPC_STATUS_INTERNAL, "audit tail: send failed");
            return 0;
        }
        w->next_seq = page.entries[i]->seq + 1;
    }
    audit_page_free(&page);
    if (!busy) {
        w->stalled_ms = 0;
        return w->next_seq <= head;
    }
    if (w->stalled_ms == 0) {
        w->stalled_ms = now_ms == 0 ? 1 : now_ms;
    } else if (now_ms - w->stalled_ms >= SVC_AUDIT_TAIL_STALL_MS) {
        char msg[128];
        snprintf(msg, sizeof msg,
                 "audit tail: client not reading for %u ms; resume with "
                 "from_seq=%llu",
                 SVC_AUDIT_TAIL_STALL_MS, (unsigned long long)w->next_seq);
        wlog(WLOG_WARN, "audit tail watcher cut off (not reading)", NULL);
        tail_end(ctx, w, GRPC_STATUS_RESOURCE_EXHAUSTED, msg);
    }
    return 0;
}

/* Pump one watcher (only) or all (only == NULL). */
static void tail_pump(struct svc_ctx *ctx, struct svc_audit_tail *only,
                      uint64_t now_ms)
{
    if (ctx->n_tail == 0) {
        return;
    }
    struct werr e = {0};
    struct store_txn *t;
    if (store_txn_begin(svc_store(ctx), 0, &t, &e) != 0) {
        wlog(WLOG_WARN, "audit tail: no read txn", "error", e.msg, NULL);
        return; /* next tick */
    }
    uint64_t head = 0;
    uint8_t hash[AUDIT_HASH_LEN];
    if (audit_head(svc_audit(ctx), t, &head, hash, &e) != 0) {
        store_txn_abort(t);
        wlog(WLOG_WARN, "audit tail: head failed", "error", e.msg, NULL);
        return;
    }
    for (size_t i = 0; i < SVC_AUDIT_TAIL_MAX; i++) {
        struct svc_audit_tail *w = &ctx->tail[i];
        if (w->call != NULL && (only == NULL || only == w)) {
            for (unsigned k = 0; k < SVC_AUDIT_TAIL_CHUNKS_PER_PUMP; k++) {
                if (!tail_pump_one(ctx, t, w, head, now_ms)) {
                    break;
                }
            }
        }
    }
    store_txn_abort(t);
}

void svc_audit__pump(struct svc_ctx *ctx, uint64_t now_ms)
{
    tail_pump(ctx, NULL, now_ms);
}

void svc_audit__shutdown(struct svc_ctx *ctx)
{
    for (size_t i = 0; i < SVC_AUDIT_TAIL_MAX; i++) {
        if (ctx->tail[i].call != NULL) {
            char msg[96];
            snprintf(msg, sizeof msg,
                     "server shutting down; resume with from_seq=%llu",
                     (unsigned long long)ctx->tail[i].next_seq);
            tail_end(ctx, &ctx->tail[i], GRPC_STATUS_UNAVAILABLE, msg);
        }
    }
}

static void tail_cb(struct grpc_call *call, const ProtobufCMessage *msg,
                    void *data)
{
    struct svc_ctx *ctx = data;
    const Warden__V1__TailAuditRequest *req =
        (const Warden__V1__TailAuditRequest *)msg;
    if (ctx->closing) {
        grpc_call_finish(call, GRPC_STATUS_UNAVAILABLE, "server shutting down");
        return;
    }
    struct svc_audit_tail *w = NULL;
    for (size_t i = 0; i < SVC_AUDIT_TAIL_MAX; i++) {
        if (ctx->tail[i].call == NULL) {
            w = &ctx->tail[i];
            break;
        }
    }
    if (w == NULL) {
        grpc_call_finish(call, GRPC_STATUS_RESOURCE_EXHAUSTED,
                         "too many audit tail streams (max "
                         "SVC_AUDIT_TAIL_MAX = 64)");
        return;
    }
    w->call = call;
    w->next_seq = req->from_seq == 0 ? 1 : req->from_seq;
    w->stalled_ms = 0;
    ctx->n_tail++;
    grpc_call_set_userdata(call, ctx);
    grpc_call_on_cancel(call, tail_cancel_cb, w);
    wlog(WLOG_INFO, "audit tail opened", "principal",
         grpc_call_principal(call)->name, NULL);
    tail_pump(ctx, w, ctx->now_ms);
}

int svc_audit_register(struct grpc_router *r, struct svc_ctx *ctx,
                       struct werr *e)
{
    const struct grpc_method methods[] = {
        {.path = "/warden.v1.Audit/Read",
         .roles = auditors,
         .req_desc = &warden__v1__read_audit_request__descriptor,
         .handler = read_cb},
        {.path = "/warden.v1.Audit/Tail",
         .roles = auditors,
         .req_desc = &warden__v1__tail_audit_request__descriptor,
         .server_streaming = 1,
         .handler = tail_cb},
        {.path = "/warden.v1.Audit/Head",
         .roles = auditors,
         .req_desc = &warden__v1__audit_head_request__descriptor,
         .handler = head_cb},
    };
    return svc_register_methods(r, ctx, methods,
                                sizeof methods / sizeof methods[0],
                                "svc_audit_register", e);
}
