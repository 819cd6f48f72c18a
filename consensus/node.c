/* node.c - the Raft node: raft 0.22 + raft_uv + transport_tls + wfsm.
 * Contract in node.h; design notes and raft 0.22 findings in
 * docs/consensus.md ("The node"). */
#include "consensus/node.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <raft.h>
#include <raft/uv.h>

#include "common/log.h"
#include "consensus/transport_tls.h"
#include "storage/store.h"

/* data_dir + "/raft" or "/db", NUL included. */
#define NODE_PATH_MAX 512
/* Tick timer period never below this (ms): a tiny tick_idle_ms in a test
 * must not turn the timer into a busy loop. */
#define NODE_TICK_PERIOD_MIN_MS 10

/* One proposal, born in wnode_propose() and freed in prop_finish(), which
 * calls its callback exactly once. */
struct prop {
    struct raft_apply req;          /* req.data = this */
    struct wnode *n;
    struct prop *prev, *next;
    uint8_t *buf;                   /* ours until raft_apply succeeds */
    size_t len;
    raft_index index;               /* raft's index, once submitted */
    raft_term term;                 /* term at submit */
    struct wfsm_result *res;        /* set by the fsm adapter at apply */
    int status;                     /* for its callback, once resolved */
    wnode_propose_cb cb;
    void *arg;
};

struct plist {
    struct prop *head, *tail;
    unsigned n;
};

struct reader {
    struct reader *next;
    int status;                     /* for its callback, once resolved */
    wnode_barrier_cb cb;
    void *arg;
};

struct rlist {
    struct reader *head, *tail;
    unsigned n;
};

enum change_stage { CH_IDLE, CH_RUNNING, CH_PROMOTE_PENDING, CH_PROMOTING };

struct wnode {
    uv_loop_t *loop;
    unsigned id;
    char address[WNODE_ADDR_MAX];
    char raft_dir[NODE_PATH_MAX];
    char db_dir[NODE_PATH_MAX];

    struct wfsm *fsm;
    struct raft_uv_transport transport;
    struct raft_io io;
    struct raft_fsm rfsm;
    struct raft raft;
    int transport_ok, io_ok, raft_ok;

    uv_idle_t flush;                /* group commit + deferred work */
    uv_timer_t tick;                /* idle Tick */
    uv_check_t settle;              /* commits the apply batch after poll */
    uv_timer_t commit_timer;        /* commits it at its deadline */
    unsigned handles_open;

    struct plist queued;            /* accepted, not yet given to raft */
    struct plist inflight;          /* given to raft, callback pending */

    /* Batched apply ("Batched apply" in docs/consensus.md). Proposals
     * applied into the open LMDB batch are ready at once (ready_props);
     * readers whose barrier saw the batch open wait in wait_readers until
     * it commits. Both fire from the loop (settle), never from inside
     * raft's fsm callbacks. */
    struct plist ready_props;
    struct rlist wait_readers, ready_readers;
    uint64_t batch_bytes;           /* entry bytes in the open batch */
    uint64_t batch_opened_ms;       /* monotonic */
    unsigned apply_commit_ms;       /* WNODE_APPLY_COMMIT_MS or configured */
    int hold_batch;                 /* test hook: wnode_test_hold_batch() */

    struct rlist next_readers;      /* wait for the next barrier */
    struct rlist cur_readers;       /* served by the barrier in flight */
    struct raft_barrier barrier;
    int barrier_busy;

    struct raft_change change;
    enum change_stage change_stage;
    unsigned change_id;
    wnode_change_cb change_cb;
    void *change_arg;

    struct raft_transfer transfer;
    int transfer_busy;
    wnode_change_cb transfer_cb;
    void *transfer_arg;

    /* Cluster time (docs/consensus.md, "Cluster time"). ct_base_ms and
     * ct_applied_at_ms: the fsm's cluster time after the last apply and
     * the monotonic ms at which we applied it (the fallback stamp before a
     * term's anchor exists). The per-term anchor: once this leader has
     * applied its own barrier of term anchor_term (so every entry of
     * earlier terms that will ever commit is applied), stamps are
     * anchor_ct + (now - anchor_mono) for the rest of the term. */
    uint64_t ct_base_ms;
    uint64_t ct_applied_at_ms;
    uint64_t stamp_max;             /* highest stamp this node issued */
    raft_term anchor_term;          /* 0: no anchor */
    uint64_t anchor_ct, anchor_mono;
    struct raft_barrier anchor_barrier;
    raft_term anchor_barrier_term;  /* term the barrier was issued in */
    int anchor_busy;                /* anchor_barrier in flight */
    uint64_t n_anchors;
    uint64_t last_propose_ms;       /* monotonic */
    unsigned tick_idle_ms;

    int wall_offset_known;
    int64_t wall_offset_ms;

    int failed;
    int starting;                   /* inside raft_start (rfsm_restore) */
    uint64_t start_skip_index;      /* snapshot_skip_cb's last yes, or 0 */
    int first_election;             /* short election timeout until a leader is known */
    unsigned election_timeout_ms;   /* the configured one */
    int fatal_pending;              /* on_fatal not yet called */
    struct werr fatal;
    wnode_fatal_cb on_fatal;
    void *on_fatal_arg;

    int closing;
    int start_failed;
    wnode_close_cb close_cb;
    void *close_arg;

    uint64_t n_proposals, n_flushes, n_ticks, n_barriers, n_readers;
    uint64_t n_restores, n_restores_skipped, n_snapshots;
    /* The image raft_uv is writing (rfsm_snapshot), released by
     * rfsm_snapshot_finalize; raft takes one snapshot at a time. */
    struct store_image *snap_img;
    /* The snapshot rule's inputs (wnode_snapshot_threshold) and raft's
     * threshold as last set. */
    unsigned snap_entries;          /* configured entry threshold */
    uint64_t snap_log_bytes;        /* entry bytes applied since the last */
    uint64_t snap_image_bytes;      /* its image, or LMDB's size at start */
    unsigned snap_threshold_set;
    uint64_t n_apply_batches;
#ifdef WARDEN_FAULTS
    int fault_ack_before_commit;    /* wnode_config: negative control */
#endif
};

/* ---- small helpers ---------------------------------------------------------- */

static uint64_t mono_ms(void)
{
    return uv_hrtime() / 1000000u;
}

static uint64_t mono_us(void)
{
    return uv_hrtime() / 1000u;
}

/* Display only (Tick.leader_wall_ms and the offset); never reaches apply. */
static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int raft_to_werr(int rv)
{
    switch (rv) {
    case 0: return 0;
    case RAFT_NOMEM: return WERR_NOMEM;
    case RAFT_NOTLEADER:
    case RAFT_LEADERSHIPLOST: return WERR_UNAVAIL;
    case RAFT_SHUTDOWN:
    case RAFT_CANCELED: return WERR_CANCELLED;
    case RAFT_CANTCHANGE:
    case RAFT_BUSY: return WERR_BUSY;
    case RAFT_DUPLICATEID:
    case RAFT_DUPLICATEADDRESS: return WERR_EXISTS;
    case RAFT_NOTFOUND: return WERR_NOTFOUND;
    case RAFT_BADID:
    case RAFT_INVALID:
    case RAFT_MALFORMED: return WERR_INVALID;
    case RAFT_BADROLE: return WERR_PRECOND;
    case RAFT_NOCONNECTION: return WERR_ABORTED;
    case RAFT_CORRUPT: return WERR_CORRUPT;
    case RAFT_IOERR: return WERR_IO;
    case RAFT_NOSPACE: return WERR_FULL;
    case RAFT_TOOMANY:
    case RAFT_TOOBIG: return WERR_LIMIT;
    default: return WERR_INTERNAL;
    }
}

static void plist_push(struct plist *l, struct prop *p)
{
    p->next = NULL;
    p->prev = l->tail;
    if (l->tail != NULL)
        l->tail->next = p;
    else
        l->head = p;
    l->tail = p;
    l->n++;
}

static void plist_remove(struct plist *l, struct prop *p)
{
    if (p->prev != NULL)
        p->prev->next = p->next;
    else
        l->head = p->next;
    if (p->next != NULL)
        p->next->prev = p->prev;
    else
        l->tail = p->prev;
    p->prev = p->next = NULL;
    l->n--;
}

static void rlist_push(struct rlist *l, struct reader *r)
{
    r->next = NULL;
    if (l->tail != NULL)
        l->tail->next = r;
    else
        l->head = r;
    l->tail = r;
    l->n++;
}

/* Fire and free every reader of l with status. The list is detached first,
 * so a callback may call wnode_barrier() again. */
static void rlist_fire(struct wnode *n, struct rlist *l, int status)
{
    struct reader *r = l->head;
    l->head = l->tail = NULL;
    l->n = 0;
    while (r != NULL) {
        struct reader *next = r->next;
        if (status == 0)
            n->n_readers++;
        r->cb(r->arg, status);
        free(r);
        r = next;
    }
}

/* Move every reader of from to the end of to, each with status. */
static void rlist_move(struct rlist *to, struct rlist *from, int status)
{
    struct reader *r = from->head;
    from->head = from->tail = NULL;
    from->n = 0;
    while (r != NULL) {
        struct reader *next = r->next;
        r->status = status;
        rlist_push(to, r);
        r = next;
    }
}

int wnode_addr_split(const char *address, char *peer, size_t peer_cap,
                     char *client, size_t client_cap)
{
    const char *slash;
    size_t pl, cl;

    if (address == NULL || (slash = strchr(address, '/')) == NULL)
        return WERR_INVALID;
    pl = (size_t)(slash - address);
    cl = strlen(slash + 1);
    if (pl == 0 || cl == 0 || pl >= WNODE_HOSTPORT_MAX ||
        cl >= WNODE_HOSTPORT_MAX || strchr(slash + 1, '/') != NULL ||
        memchr(address, ':', pl) == NULL || strchr(slash + 1, ':') == NULL)
        return WERR_INVALID;
    if (peer != NULL) {
        if (peer_cap <= pl)
            return WERR_INVALID;
        memcpy(peer, address, pl);
        peer[pl] = '\0';
    }
    if (client != NULL) {
        if (client_cap <= cl)
            return WERR_INVALID;
        memcpy(client, slash + 1, cl + 1);
    }
    return 0;
}

static int addr_join(char *out, size_t cap, const char *peer,
                     const char *client)
{
    int k;
    if (peer == NULL || client == NULL || strchr(peer, '/') != NULL ||
        strchr(client, '/') != NULL)
        return WERR_INVALID;
    k = snprintf(out, cap, "%s/%s", peer, client);
    if (k < 0 || (size_t)k >= cap)
        return WERR_INVALID;
    return wnode_addr_split(out, NULL, 0, NULL, 0);
}

static int leader_ready(struct wnode *n)
{
    return !n->closing && !n->failed && n->raft_ok &&
           raft_state(&n->raft) == RAFT_LEADER &&
           raft_transferee(&n->raft) == 0;
}

static int refuse_reason(struct wnode *n)
{
    if (n->closing)
        return WERR_CANCELLED;
    if (n->failed)
        return WERR_INTERNAL;
    return WERR_UNAVAIL;
}

static void flush_cb(uv_idle_t *h);
static void settle_cb(uv_check_t *h);
static void settle(struct wnode *n);
static void snapshot_policy(struct wnode *n);

/* Run flush_cb on this loop iteration (before the loop blocks in poll). */
static void kick(struct wnode *n)
{
    if (!n->closing)
        uv_idle_start(&n->flush, flush_cb);
}

/* ---- fatal errors ------------------------------------------------------------ */

/* The store failed under apply or restore. raft 0.22 has no way to stop
 * applying short of an error return, which its tick/recv paths assert on
 * (compiled out in our build: raft then carries on with a half-applied
 * batch). So the node poisons itself instead, like an LMDB txn after a
 * failure: every later apply is a no-op that writes nothing, snapshots are
 * refused (a snapshot labelled past the hole would skip it), proposals and
 * reads are refused. raft's last_applied moves on in memory only; the
 * applied index in LMDB stays at the last good entry, so a restart re-applies
 * from there. The embedder is told (on_fatal) from the loop, not from inside
 * raft. */
static void node_fail(struct wnode *n, const struct werr *e, raft_index index)
{
    char idx[24];
    if (n->failed)
        return;
    n->failed = 1;
    n->fatal = *e;
    werr_wrap(&n->fatal, "apply/restore at index %llu",
              (unsigned long long)index);
    snprintf(idx, sizeof idx, "%llu", (unsigned long long)index);
    wlog(WLOG_ERROR, "consensus: state machine failed; node stopped applying",
         "index", idx, "error", n->fatal.msg, NULL);
    n->fatal_pending = 1;
    kick(n);
}

static void report_fatal(struct wnode *n)
{
    if (!n->fatal_pending)
        return;
    n->fatal_pending = 0;
    if (n->on_fatal != NULL) {
        n->on_fatal(n, &n->fatal, n->on_fatal_arg);
        return;
    }
    /* Nobody to tell: stopping the process is the loud stop. */
    wlog(WLOG_ERROR, "consensus: no fatal handler; aborting", NULL);
    abort();
}

/* ---- batched apply ------------------------------------------------------------ */

/* Why and how: docs/consensus.md, "Batched apply". In short: raft_uv has
 * fsynced every entry before raft commits it, so LMDB need not sync each
 * one. The adapter opens a wfsm batch at the first entry it applies; the
 * batch commits (one LMDB commit, one fdatasync) when a reader waits on it,
 * when the service layer is about to read local state
 * (wnode_commit_applied), at WNODE_APPLY_BATCH_MAX/_BYTES, before a
 * snapshot or a restore, at close, and at the latest apply_commit_ms after
 * it opened (settle, commit_timer). A proposal is answered as soon as its
 * entry is applied: raft has it durable on a majority, and a crash before
 * the LMDB commit re-applies it from the log with the same result. */

static void prop_finish(struct prop *p, int status);

/* Resolve every reader waiting on the open batch: 0 when it committed,
 * WERR_INTERNAL when the commit failed (the node is failing). They fire
 * later, from settle(). */
static void waiters_resolve(struct wnode *n, int failed)
{
    rlist_move(&n->ready_readers, &n->wait_readers,
               failed ? WERR_INTERNAL : 0);
}

/* Commit the open batch, if any. Fires nothing, so it is safe inside
 * raft's fsm callbacks. A failure is fatal, like a failed apply: the node
 * stops applying (node_fail) and the waiting callbacks get WERR_INTERNAL.
 * Returns 0 or the store's error. */
static int batch_commit(struct wnode *n)
{
    struct werr e;
    uint64_t upto;
    int rv;

    if (n->fsm == NULL || !wfsm_batch_active(n->fsm))
        return 0;
    upto = wfsm_applied_index(n->fsm);
    werr_clear(&e);
    rv = wfsm_batch_commit(n->fsm, &e);
    n->batch_bytes = 0;
    if (rv != 0) {
        if (n->failed)
            wlog(WLOG_ERROR, "consensus: apply batch commit failed",
                 "error", e.msg, NULL);
        node_fail(n, &e, upto);
        waiters_resolve(n, 1);
        return rv;
    }
    n->n_apply_batches++;
    waiters_resolve(n, 0);
    return 0;
}

/* Open a batch for the entry at index. On failure the node fails. */
static int batch_open(struct wnode *n, raft_index index)
{
    struct werr e;

    werr_clear(&e);
    if (wfsm_batch_begin(n->fsm, &e) != 0) {
        node_fail(n, &e, index);
        return -1;
    }
    n->batch_bytes = 0;
    n->batch_opened_ms = mono_ms();
    /* The check handle answers the batch's proposals after this
     * iteration's poll phase, and commits it when due (settle); the timer
     * commits it at its deadline if no event comes first. The idle kick
     * runs settle before poll when the batch was opened before poll
     * (timers phase, or outside the loop). */
    uv_check_start(&n->settle, settle_cb);
    uv_timer_stop(&n->commit_timer);
    kick(n);
    return 0;
}

/* Fire the resolved callbacks, in order: proposals (log order), then
 * readers (their barrier came after those entries). Lists are detached
 * first, so a callback may propose, read or close the node. */
static void ready_fire(struct wnode *n)
{
    struct plist props = n->ready_props;
    struct reader *r = n->ready_readers.head;

    memset(&n->ready_props, 0, sizeof n->ready_props);
    memset(&n->ready_readers, 0, sizeof n->ready_readers);
    while (props.head != NULL) {
        struct prop *p = props.head;
        plist_remove(&props, p);
        prop_finish(p, p->status);
    }
    while (r != NULL) {
        struct reader *next = r->next;
        if (r->status == 0)
            n->n_readers++;
        r->cb(r->arg, r->status);
        free(r);
        r = next;
    }
}

/* Whether the open batch commits now: a reader waits on it (a linearizable
 * read must see every entry before its barrier), or it is old enough. The
 * caps (WNODE_APPLY_BATCH_MAX/_BYTES) commit it from apply. */
static int batch_due(struct wnode *n)
{
    return n->wait_readers.head != NULL || n->closing ||
           mono_ms() - n->batch_opened_ms >= n->apply_commit_ms;
}

static void commit_timer_cb(uv_timer_t *t)
{
    settle(t->data);
}

/* Commit the batch if it is due, and fire what is ready. From the loop
 * only (check, idle and timer callbacks, close). */
static void settle(struct wnode *n)
{
    int open;

    if (!n->hold_batch && n->fsm != NULL && wfsm_batch_active(n->fsm) && batch_due(n))
        batch_commit(n);
    ready_fire(n);
    open = n->fsm != NULL && wfsm_batch_active(n->fsm) && !n->hold_batch;
    if (!open) {
        uv_check_stop(&n->settle);
        uv_timer_stop(&n->commit_timer);
    } else if (!uv_is_active((uv_handle_t *)&n->commit_timer) && !n->closing) {
        uint64_t age = mono_ms() - n->batch_opened_ms;
        uv_timer_start(&n->commit_timer, commit_timer_cb,
                       age >= n->apply_commit_ms ? 0 : n->apply_commit_ms - age, 0);
    }
}

void wnode_commit_applied(struct wnode *n)
{
    if (!n->hold_batch && !n->closing)
        batch_commit(n);
}

void wnode_test_hold_batch(struct wnode *n, int hold)
{
    n->hold_batch = hold != 0;
    if (!n->hold_batch && n->fsm != NULL && wfsm_batch_active(n->fsm) &&
        !n->closing) {
        uv_check_start(&n->settle, settle_cb);
        kick(n);
    }
}

static void settle_cb(uv_check_t *h)
{
    settle(h->data);
}

/* ---- the raft_fsm adapter ------------------------------------------------------ */

static struct prop *inflight_find(struct wnode *n, raft_index index)
{
    /* Only a proposal submitted by this leader in this term is the entry at
     * its index: after a leadership change the index may hold another
     * server's entry. */
    if (raft_state(&n->raft) != RAFT_LEADER)
        return NULL;
    for (struct prop *p = n->inflight.head; p != NULL; p = p->next)
        if (p->index == index)
            return p->term == raft_current_term(&n->raft) ? p : NULL;
    return NULL;
}

/* The offset probe: a Tick applied as the newest committed entry. */
static void probe_tick(struct wnode *n, raft_index index,
                       const struct raft_buffer *buf)
{
    const uint8_t *b = buf->base;
    Warden__V1__Command *c;
    size_t len;

    if (buf->len < 4 || buf->len > WNODE_TICK_PEEK_MAX ||
        index != raft_commit_index(&n->raft))
        return;
    len = (size_t)b[0] << 24 | (size_t)b[1] << 16 | (size_t)b[2] << 8 | b[3];
    if (len > buf->len - 4)
        return;
    c = warden__v1__command__unpack(NULL, len, b + 4);
    if (c == NULL)
        return;
    if (c->op_case == WARDEN__V1__COMMAND__OP_TICK && c->tick != NULL &&
        c->tick->leader_wall_ms != 0) {
        n->wall_offset_ms = (int64_t)wall_ms() - (int64_t)c->tick->leader_wall_ms;
        n->wall_offset_known = 1;
    }
    warden__v1__command__free_unpacked(c, NULL);
}

static int rfsm_apply(struct raft_fsm *rf, const struct raft_buffer *buf,
                      void **result)
{
    struct wnode *n = rf->data;
    /* raft 0.22 applies in log order; the entry being applied is the one
     * after the last applied (docs/consensus.md). */
    raft_index index = raft_last_applied(&n->raft) + 1;
    struct wfsm_result res;
    struct prop *p;
    struct werr e;
    int rv;

    /* The result reaches the proposer through its prop, not through raft's
     * result pointer: raft drops the result of every entry that has no
     * matching request (all of them on followers), so a heap result handed
     * to raft blindly would leak there. */
    *result = NULL;
    if (n->failed)
        return 0;
    n->snap_log_bytes += buf->len;
    snapshot_policy(n);
    /* Entries at or below the applied index are skipped by the fsm (the
     * replay after a restart): no batch for those. */
    if (index > wfsm_applied_index(n->fsm) && !wfsm_batch_active(n->fsm) &&
        batch_open(n, index) != 0)
        return 0;
    memset(&res, 0, sizeof res);
    werr_clear(&e);
    rv = wfsm_apply(n->fsm, index, buf->base, buf->len, &res, &e);
    if (rv < 0) {
        node_fail(n, &e, index);
        /* The batch holds whole entries before this one (wfsm runs each in
         * a child txn): keep them, as unbatched applies would have. */
        batch_commit(n);
        return 0;
    }
    if (!res.skipped && wfsm_batch_active(n->fsm)) {
        n->batch_bytes += buf->len;
        if (wfsm_batch_entries(n->fsm) >= WNODE_APPLY_BATCH_MAX ||
            n->batch_bytes >= WNODE_APPLY_BATCH_BYTES)
            batch_commit(n);
    }
    n->ct_base_ms = wfsm_cluster_time(n->fsm);
    n->ct_applied_at_ms = mono_ms();
    if (!res.skipped)
        probe_tick(n, index, buf);
    p = inflight_find(n, index);
    if (p != NULL && p->res == NULL &&
        (p->res = malloc(sizeof *p->res)) != NULL) {
        *p->res = res;
        *result = p->res;
        return 0;
    }
    wfsm_result_free(&res);
    return 0;
}

unsigned wnode_snapshot_threshold(uint64_t log_bytes, uint64_t image_bytes,
                                  unsigned entries)
{
    if (log_bytes >= WNODE_SNAPSHOT_LOG_BYTES_MAX)
        return 1;
    if (image_bytes >= WNODE_SNAPSHOT_SIZE_FLOOR &&
        log_bytes < image_bytes / WNODE_SNAPSHOT_LOG_RATIO)
        return WNODE_SNAPSHOT_NEVER;
    return entries;
}

/* Tell raft the threshold the rule gives now. raft checks it after each
 * apply step (legacyShouldTakeSnapshot), so this takes effect at once. */
static void snapshot_policy(struct wnode *n)
{
    unsigned t = wnode_snapshot_threshold(n->snap_log_bytes, n->snap_image_bytes,
                                          n->snap_entries);
    if (t != n->snap_threshold_set) {
        raft_set_snapshot_threshold(&n->raft, t);
        n->snap_threshold_set = t;
    }
}

static int rfsm_snapshot(struct raft_fsm *rf, struct raft_buffer *bufs[],
                         unsigned *n_bufs)
{
    struct wnode *n = rf->data;
    struct store_image *img = NULL;
    const struct store_image_part *pt;
    unsigned np = 0;
    struct werr e;
    uint64_t t0;
    char bytes[24], us[24], logb[24];

    if (n->failed)
        return RAFT_IOERR; /* see node_fail */
    /* raft takes one snapshot at a time (legacy snapshot_taking) and hands
     * each back to finalize; a second one here would be a raft bug. */
    if (n->snap_img != NULL)
        return RAFT_BUSY;
    /* raft labels the snapshot with its last applied index: the image must
     * hold every entry up to it, so the batch commits first (unless a test
     * holds it open: then no snapshot now, raft tries again later). */
    if (n->hold_batch && wfsm_batch_active(n->fsm))
        return RAFT_BUSY;
    t0 = mono_us();
    if (batch_commit(n) != 0)
        return RAFT_IOERR;
    werr_clear(&e);
    if (wfsm_snapshot(n->fsm, &img, &e) != 0) {
        wlog(WLOG_WARN, "consensus: snapshot failed", "error", e.msg, NULL);
        return RAFT_IOERR;
    }
    /* fsm version 2: the array and the parts stay ours; raft hands them
     * back to rfsm_snapshot_finalize once raft_uv has written them (or
     * failed to), which releases the image. Until then raft_uv's writer
     * thread reads the pages in place: the loop thread copied two pages. */
    pt = store_image_parts(img, &np);
    *bufs = raft_malloc(np * sizeof **bufs);
    if (*bufs == NULL) {
        wfsm_snapshot_release(n->fsm, img);
        return RAFT_NOMEM;
    }
    for (unsigned i = 0; i < np; i++) {
        /* raft_buffer.base is not const; raft_uv only reads it */
        (*bufs)[i].base = (void *)(uintptr_t)pt[i].base;
        (*bufs)[i].len = pt[i].len;
    }
    *n_bufs = np;
    n->snap_img = img;
    n->n_snapshots++;
    snprintf(bytes, sizeof bytes, "%zu", store_image_len(img));
    snprintf(us, sizeof us, "%llu", (unsigned long long)(mono_us() - t0));
    snprintf(logb, sizeof logb, "%" PRIu64, n->snap_log_bytes);
    wlog(WLOG_INFO, "consensus: snapshot taken", "bytes", bytes, "log_bytes", logb,
         "loop_us", us, NULL);
    n->snap_log_bytes = 0;
    n->snap_image_bytes = store_image_len(img);
    snapshot_policy(n);
    return 0;
}

static int rfsm_snapshot_finalize(struct raft_fsm *rf, struct raft_buffer *bufs[],
                                  unsigned *n_bufs)
{
    struct wnode *n = rf->data;

    raft_free(*bufs);
    *bufs = NULL;
    *n_bufs = 0;
    if (n->fsm != NULL)
        wfsm_snapshot_release(n->fsm, n->snap_img);
    n->snap_img = NULL;
    return 0;
}

/* raft_uv's start-up load asks this before reading a snapshot's data
 * (our raft patch, raft_uv_set_snapshot_skip): our own LMDB normally already
 * holds the newest snapshot's state (the snapshot was taken from it), and
 * reading a fleet-sized image only to discard it was most of a restart
 * (issue 8, scenario 5). True when our durable applied index is at or past
 * the snapshot: raft re-applies nothing at or below the snapshot index, and
 * our state is a later point of the same committed log. raft then hands
 * rfsm_restore an empty buffer; the index we said yes to is kept for it. */
static bool snapshot_skip_cb(void *arg, raft_index index, raft_term term)
{
    struct wnode *n = arg;

    (void)term;
    if (!n->starting || n->failed || n->fsm == NULL || wfsm_batch_active(n->fsm) ||
        index > wfsm_applied_index(n->fsm))
        return false;
    n->start_skip_index = index;
    return true;
}

/* raft 0.22 (raft_start and the legacy install path): on success the FSM
 * owns buf->base and must release it; on failure raft frees it. */
static int rfsm_restore(struct raft_fsm *rf, struct raft_buffer *buf)
{
    struct wnode *n = rf->data;
    int skipped = 0;
    struct werr e;

    if (n->failed)
        return RAFT_IOERR;
    /* The start-up snapshot snapshot_skip_cb said we already hold: raft_uv
     * did not read it. */
    if (buf->base == NULL && buf->len == 0) {
        char idx[24], si[24];
        if (!n->starting || n->start_skip_index == 0 || n->fsm == NULL ||
            n->start_skip_index > wfsm_applied_index(n->fsm)) {
            wlog(WLOG_ERROR, "consensus: raft handed us an empty snapshot we did "
                             "not agree to skip", NULL);
            return RAFT_CORRUPT;
        }
        n->n_restores++;
        n->n_restores_skipped++;
        n->ct_base_ms = wfsm_cluster_time(n->fsm);
        n->ct_applied_at_ms = mono_ms();
        snprintf(idx, sizeof idx, "%" PRIu64, wfsm_applied_index(n->fsm));
        snprintf(si, sizeof si, "%" PRIu64, n->start_skip_index);
        wlog(WLOG_INFO, "consensus: snapshot restored", "fsm_applied", idx,
             "skipped", "true", "why", "local state is at or past the snapshot",
             "snapshot_index", si, NULL);
        return 0;
    }
    /* Restore closes the env and compares with the applied index: both
     * need the batch committed. Its callbacks fire from settle(). */
    if (batch_commit(n) != 0)
        return RAFT_IOERR;
    werr_clear(&e);
    if (wfsm_restore(n->fsm, buf->base, buf->len, &skipped, &e) != 0) {
        node_fail(n, &e, raft_last_applied(&n->raft));
        return RAFT_IOERR;
    }
    raft_free(buf->base);
    n->n_restores++;
    if (skipped)
        n->n_restores_skipped++;
    n->ct_base_ms = wfsm_cluster_time(n->fsm);
    n->ct_applied_at_ms = mono_ms();
    {
        char idx[24];
        snprintf(idx, sizeof idx, "%" PRIu64, wfsm_applied_index(n->fsm));
        wlog(WLOG_INFO, "consensus: snapshot restored", "fsm_applied", idx,
             "skipped", skipped ? "true" : "false", NULL);
    }
    return 0;
}

/* ---- proposals ------------------------------------------------------------------- */

static void prop_finish(struct prop *p, int status)
{
    struct wfsm_result *res = p->res;
    p->cb(p->arg, status, status == 0 ? res : NULL);
    if (res != NULL) {
        wfsm_result_free(res);
        free(res);
    }
    free(p->buf);
    free(p);
}

static void apply_cb(struct raft_apply *req, int status, void *result)
{
    struct prop *p = req->data;
    struct wnode *n = p->n;
    int st;

    (void)result; /* == p->res when set; owned through p */
    plist_remove(&n->inflight, p);
    if (status == 0)
        st = p->res != NULL ? 0 : WERR_INTERNAL;
    else if (n->closing)
        st = WERR_CANCELLED;
    else
        st = raft_to_werr(status);
    if (status == 0 && p->res == NULL)
        wlog(WLOG_ERROR, "consensus: committed entry has no result",
             "reason", n->failed ? "node failed" : "no memory", NULL);
    if (st != 0 && st != WERR_UNAVAIL && st != WERR_CANCELLED &&
        st != WERR_INTERNAL)
        st = WERR_UNAVAIL;
    if (st == 0 && n->fsm != NULL && wfsm_batch_active(n->fsm)) {
        /* Applied into the open batch: committed in raft (durable on a
         * majority of logs) and its result computed, so the answer is
         * final even if LMDB's commit is still to come: a crash before it
         * re-applies the entry from the log, deterministically. Answered
         * from settle, in log order; a read that follows waits for the
         * commit (barrier_cb). */
        p->status = 0;
        plist_push(&n->ready_props, p);
        return;
    }
    /* No batch open: the entry is durable iff the last commit reached it.
     * It did not when its batch failed to commit (the node failed). */
    if (st == 0 && (n->fsm == NULL || p->index > wfsm_committed_index(n->fsm)))
        st = WERR_INTERNAL;
    prop_finish(p, st);
}

/* The stamp for a proposal made now (issue 3, docs/consensus.md "Cluster
 * time"). With this term's anchor: anchor_ct + monotonic ms since the
 * anchor, so commit latency is never dropped from the chain. Before the
 * anchor exists (the first moments of a term): the applied cluster time +
 * ms since that apply, which loses the commit latency of those few
 * entries only. Never below the applied cluster time (the fsm takes the
 * max anyway; the floor keeps the stamp meaningful). */
static uint64_t cluster_time_now(struct wnode *n)
{
    uint64_t now = mono_ms();
    uint64_t floor = n->fsm != NULL ? wfsm_cluster_time(n->fsm) : 0;
    uint64_t t;

    if (n->anchor_term != 0 && n->anchor_term == raft_current_term(&n->raft))
        t = n->anchor_ct + (now - n->anchor_mono);
    else
        t = n->ct_base_ms + (now - n->ct_applied_at_ms);
    return t > floor ? t : floor;
}

/* Every candidate below is a cluster time that was reached no later than
 * now in real (monotonic) time, so their max is too: the anchor never puts
 * cluster time ahead of real time, and never behind anything this leader
 * or an earlier one already stamped. */
static uint64_t anchor_base(struct wnode *n)
{
    uint64_t ct = wfsm_cluster_time(n->fsm);
    uint64_t fallback = n->ct_base_ms + (mono_ms() - n->ct_applied_at_ms);

    if (fallback > ct)
        ct = fallback;
    if (n->stamp_max > ct)
        ct = n->stamp_max;
    if (n->anchor_term != 0 && n->anchor_ct > ct)
        ct = n->anchor_ct;
    return ct;
}

static void anchor_barrier_cb(struct raft_barrier *req, int status)
{
    struct wnode *n = req->data;
    uint64_t ct;

    n->anchor_busy = 0;
    if (status != 0 || n->closing || n->failed || n->fsm == NULL ||
        raft_state(&n->raft) != RAFT_LEADER ||
        raft_current_term(&n->raft) != n->anchor_barrier_term) {
        kick(n); /* still leader in a later term: the flush tries again */
        return;
    }
    /* Our barrier is applied: so is every entry before it, including all
     * entries of earlier terms that can ever commit (Raft §5.4.2: they
     * commit only through an entry of this term). The applied cluster time
     * (batch included: those entries are committed in raft) is therefore
     * >= every stamp of a previous leader that took effect. */
    ct = anchor_base(n);
    n->anchor_ct = ct;
    n->anchor_mono = mono_ms();
    n->anchor_term = n->anchor_barrier_term;
    n->n_anchors++;
}

/* Issue this term's anchor barrier if we lead and have none. From the loop
 * (flush, tick, propose), never from inside raft. */
static void anchor_check(struct wnode *n)
{
    raft_term t;

    if (n->anchor_busy || !leader_ready(n))
        return;
    t = raft_current_term(&n->raft);
    if (n->anchor_term == t)
        return;
    n->anchor_barrier.data = n;
    if (raft_barrier(&n->raft, &n->anchor_barrier, anchor_barrier_cb) != 0)
        return; /* tried again at the next flush or tick */
    n->anchor_busy = 1;
    n->anchor_barrier_term = t;
}

int wnode_propose(struct wnode *n, const Warden__V1__Command *cmd,
                  wnode_propose_cb cb, void *arg, struct werr *e)
{
    Warden__V1__Command c;
    struct prop *p;
    int rv;

    if (cmd == NULL || cb == NULL)
        return werr_set(e, WERR_INVALID, "propose: no command or callback");
    if (!leader_ready(n))
        return werr_set(e, refuse_reason(n), "propose: not the leader");
    if (n->queued.n + n->inflight.n >= WNODE_PENDING_MAX)
        return werr_set(e, WERR_BUSY, "propose: %u proposals pending",
                        WNODE_PENDING_MAX);
    p = calloc(1, sizeof *p);
    if (p == NULL)
        return werr_set(e, WERR_NOMEM, "propose");
    /* Cluster time (issue 3): last committed + monotonic elapsed since we
     * applied it. A shallow copy: only the scalar changes. */
    c = *cmd;
    c.cluster_time_ms = cluster_time_now(n);
    if (c.cluster_time_ms > n->stamp_max)
        n->stamp_max = c.cluster_time_ms;
    rv = wfsm_cmd_encode(&c, &p->buf, &p->len, e);
    if (rv != 0) {
        free(p);
        return werr_wrap(e, "propose");
    }
    /* raft_uv rejects unaligned entries after it has already freed them
     * (docs/consensus.md): never hand it one. */
    if (p->len == 0 || p->len % 8 != 0) {
        size_t bad = p->len;
        free(p->buf);
        free(p);
        return werr_set(e, WERR_INTERNAL, "propose: encoded length %zu", bad);
    }
    p->n = n;
    p->cb = cb;
    p->arg = arg;
    p->req.data = p;
    plist_push(&n->queued, p);
    n->last_propose_ms = mono_ms();
    kick(n);
    return 0;
}

#ifdef WARDEN_FAULTS
static void fault_acked_cb(void *arg, int status, struct wfsm_result *res)
{
    (void)arg;
    (void)status;
    (void)res;
}

/* --unsafe-fault ack-before-commit (TESTING ONLY, the Jepsen negative
 * control, issue 7): answer the proposer with success and an empty result
 * as soon as raft has the entry, before it is replicated, committed or
 * applied. A write acknowledged this way and then lost to a kill is exactly
 * the anomaly the checkers must catch. The prop stays in flight for raft;
 * its real completion goes to a no-op callback. */
static void fault_ack_now(struct prop *p)
{
    struct wfsm_result empty;
    wnode_propose_cb cb = p->cb;
    void *arg = p->arg;

    memset(&empty, 0, sizeof empty);
    p->cb = fault_acked_cb;
    p->arg = NULL;
    cb(arg, 0, &empty);
    wfsm_result_free(&empty);
}
#endif

/* Group commit: every proposal queued since the last pass goes to raft
 * here, at most WNODE_BATCH_MAX per loop iteration, in ONE submission
 * (raft_apply_batch, scripts/patches/raft-0.22.1-apply-batch.patch): one
 * append request for the whole batch and one AppendEntries per follower,
 * instead of one of each per proposal. Each proposal is still its own log
 * entry, with its own index, result and callback. The payloads are copied
 * into one raft_malloc'd block (raft's legacy log copies each entry and
 * releases the block once); the proposals' own buffers are freed here. */
static void flush_proposals(struct wnode *n)
{
    struct prop *batch[WNODE_BATCH_MAX];
    struct raft_apply *reqs[WNODE_BATCH_MAX];
    struct raft_buffer bufs[WNODE_BATCH_MAX];
    unsigned k = 0, i;
    size_t total = 0, off = 0;
    uint8_t *block;
    int rv;

    while (n->queued.head != NULL && k < WNODE_BATCH_MAX) {
        struct prop *p = n->queued.head;

        plist_remove(&n->queued, p);
        if (!leader_ready(n)) {
            prop_finish(p, refuse_reason(n));
            continue;
        }
        batch[k++] = p;
        total += p->len;
    }
    if (k == 0)
        return;
    block = raft_malloc(total);
    if (block == NULL) {
        for (i = 0; i < k; i++)
            prop_finish(batch[i], WERR_NOMEM);
        return;
    }
    for (i = 0; i < k; i++) {
        struct prop *p = batch[i];

        memcpy(block + off, p->buf, p->len);
        bufs[i].base = block + off;
        bufs[i].len = p->len;
        off += p->len;
        free(p->buf);
        p->buf = NULL;
        reqs[i] = &p->req;
    }
    rv = raft_apply_batch(&n->raft, reqs, block, bufs, k, apply_cb);
    if (rv != 0) {
        /* Ownership of the block is unclear here: raft may release it
         * before some of its failure returns and not before others (as
         * raft_apply does, docs/consensus.md). Leaking one block on this
         * unexpected path (leadership and alignment are checked above) is
         * better than a double free. */
        wlog(WLOG_WARN, "consensus: raft_apply_batch failed", "error",
             raft_errmsg(&n->raft), NULL);
        for (i = 0; i < k; i++)
            prop_finish(batch[i], rv == RAFT_NOTLEADER ? WERR_UNAVAIL : WERR_INTERNAL);
        return;
    }
    for (i = 0; i < k; i++) {
        struct prop *p = batch[i];

        p->index = p->req.index;
        p->term = raft_current_term(&n->raft);
        plist_push(&n->inflight, p);
        n->n_proposals++;
#ifdef WARDEN_FAULTS
        if (n->fault_ack_before_commit)
            fault_ack_now(p);
#endif
    }
    n->n_flushes++;
}

/* ---- barriers ----------------------------------------------------------------------- */

static void barrier_cb(struct raft_barrier *req, int status)
{
    struct wnode *n = req->data;
    int st = status == 0 ? 0 : n->closing ? WERR_CANCELLED : WERR_UNAVAIL;
    n->barrier_busy = 0;
    if (st == 0 && n->fsm != NULL && wfsm_batch_active(n->fsm)) {
        /* The entries before the barrier are applied but not committed: a
         * read txn would not see them yet. Read after the commit. */
        rlist_move(&n->wait_readers, &n->cur_readers, 0);
        if (n->next_readers.head != NULL)
            kick(n);
        return;
    }
    if (st == 0 && n->failed)
        st = WERR_INTERNAL; /* applies stopped: local state is behind */
    rlist_fire(n, &n->cur_readers, st);
    if (n->next_readers.head != NULL)
        kick(n);
}

static void flush_barrier(struct wnode *n)
{
    int rv;

    if (n->barrier_busy || n->next_readers.head == NULL)
        return;
    if (!leader_ready(n)) {
        rlist_fire(n, &n->next_readers, refuse_reason(n));
        return;
    }
    /* Everyone waiting now shares this barrier; later arrivals queue in
     * next_readers for the one after. */
    n->cur_readers = n->next_readers;
    memset(&n->next_readers, 0, sizeof n->next_readers);
    n->barrier.data = n;
    rv = raft_barrier(&n->raft, &n->barrier, barrier_cb);
    if (rv != 0) {
        rlist_fire(n, &n->cur_readers, WERR_UNAVAIL);
        return;
    }
    n->barrier_busy = 1;
    n->n_barriers++;
}

int wnode_barrier(struct wnode *n, wnode_barrier_cb cb, void *arg)
{
    struct reader *r;

    if (cb == NULL)
        return WERR_INVALID;
    if (!leader_ready(n))
        return refuse_reason(n);
    if (n->next_readers.n >= WNODE_READERS_MAX)
        return WERR_BUSY;
    if ((r = calloc(1, sizeof *r)) == NULL)
        return WERR_NOMEM;
    r->cb = cb;
    r->arg = arg;
    rlist_push(&n->next_readers, r);
    kick(n);
    return 0;
}

/* ---- membership ------------------------------------------------------------------------ */

static void change_done(struct wnode *n, int status)
{
    wnode_change_cb cb = n->change_cb;
    void *arg = n->change_arg;
    n->change_stage = CH_IDLE;
    n->change_cb = NULL;
    cb(arg, status);
}

static void change_cb(struct raft_change *req, int status)
{
    struct wnode *n = req->data;

    if (status == 0 && n->change_stage == CH_RUNNING && n->change_id != 0) {
        /* The add committed; promote from the loop, not from inside raft's
         * completion queue. */
        n->change_stage = CH_PROMOTE_PENDING;
        kick(n);
        return;
    }
    change_done(n, status == 0 ? 0 : n->closing ? WERR_CANCELLED
                                                : raft_to_werr(status));
}

static void flush_change(struct wnode *n)
{
    int rv;

    if (n->change_stage != CH_PROMOTE_PENDING)
        return;
    if (!leader_ready(n)) {
        change_done(n, refuse_reason(n));
        return;
    }
    n->change_stage = CH_PROMOTING;
    n->change.data = n;
    /* raft_assign to voter runs raft's catch-up rounds first (RAFT_CATCH_UP,
     * raft_set_max_catch_up_rounds) and submits the new configuration only
     * once the server's log is current; a stalled server aborts it with
     * RAFT_NOCONNECTION. */
    rv = raft_assign(&n->raft, &n->change, n->change_id, RAFT_VOTER, change_cb);
    if (rv != 0)
        change_done(n, raft_to_werr(rv));
}

static int change_begin(struct wnode *n, wnode_change_cb cb, void *arg)
{
    if (cb == NULL)
        return WERR_INVALID;
    if (!leader_ready(n))
        return refuse_reason(n);
    if (n->change_stage != CH_IDLE)
        return WERR_BUSY;
    n->change_cb = cb;
    n->change_arg = arg;
    n->change_id = 0;
    n->change.data = n;
    return 0;
}

int wnode_add(struct wnode *n, unsigned id, const char *address, int promote,
              wnode_change_cb cb, void *arg)
{
    int rv;

    if (id == 0 || wnode_addr_split(address, NULL, 0, NULL, 0) != 0 ||
        strlen(address) >= WNODE_ADDR_MAX)
        return WERR_INVALID;
    if ((rv = change_begin(n, cb, arg)) != 0)
        return rv;
    for (unsigned i = 0; i < n->raft.configuration.n; i++) {
        const struct raft_server *s = &n->raft.configuration.servers[i];
        if (s->id != id)
            continue;
        /* A retried add: the first attempt added the server but did not
         * promote it (the caller's deadline, a leader change, or raft's
         * catch-up rounds ran out). Same address, not yet a voter: finish
         * the job instead of refusing, or the cluster keeps a spare it
         * meant as a voter and a retrying client can never fix it. */
        if (promote && s->role != RAFT_VOTER && s->address != NULL &&
            strcmp(s->address, address) == 0) {
            rv = raft_assign(&n->raft, &n->change, id, RAFT_VOTER, change_cb);
            if (rv != 0)
                return raft_to_werr(rv);
            n->change_stage = CH_PROMOTING;
            return 0;
        }
        return WERR_EXISTS;
    }
    rv = raft_add(&n->raft, &n->change, id, address, change_cb);
    if (rv != 0)
        return raft_to_werr(rv);
    n->change_stage = CH_RUNNING;
    n->change_id = promote ? id : 0;
    return 0;
}

int wnode_assign(struct wnode *n, unsigned id, int role, wnode_change_cb cb,
                 void *arg)
{
    int rv;

    if (role != RAFT_VOTER && role != RAFT_STANDBY && role != RAFT_SPARE)
        return WERR_INVALID;
    if ((rv = change_begin(n, cb, arg)) != 0)
        return rv;
    rv = raft_assign(&n->raft, &n->change, id, role, change_cb);
    if (rv != 0)
        return raft_to_werr(rv);
    n->change_stage = CH_PROMOTING;
    return 0;
}

int wnode_remove(struct wnode *n, unsigned id, wnode_change_cb cb, void *arg)
{
    int rv;

    if ((rv = change_begin(n, cb, arg)) != 0)
        return rv;
    rv = raft_remove(&n->raft, &n->change, id, change_cb);
    if (rv != 0)
        return raft_to_werr(rv);
    n->change_stage = CH_RUNNING;
    return 0;
}

static void transfer_cb(struct raft_transfer *req)
{
    struct wnode *n = req->data;
    wnode_change_cb cb = n->transfer_cb;
    raft_id lid = 0;
    const char *laddr = NULL;
    int st;

    n->transfer_busy = 0;
    raft_leader(&n->raft, &lid, &laddr);
    st = n->closing ? WERR_CANCELLED
                    : (lid != 0 && lid != n->id) ? 0 : WERR_ABORTED;
    cb(n->transfer_arg, st);
}

int wnode_transfer(struct wnode *n, unsigned id, wnode_change_cb cb, void *arg)
{
    int rv;

    if (cb == NULL)
        return WERR_INVALID;
    if (n->transfer_busy)
        return WERR_BUSY;
    if (!leader_ready(n))
        return refuse_reason(n);
    n->transfer.data = n;
    n->transfer_cb = cb;
    n->transfer_arg = arg;
    rv = raft_transfer(&n->raft, &n->transfer, id, transfer_cb);
    if (rv != 0)
        return raft_to_werr(rv);
    n->transfer_busy = 1;
    return 0;
}

/* ---- loop plumbing ------------------------------------------------------------------------ */

static void flush_cb(uv_idle_t *h)
{
    struct wnode *n = h->data;

    /* A batch opened before poll (see batch_open) commits here. */
    settle(n);
    report_fatal(n);
    if (n->closing)
        return;
    anchor_check(n);
    flush_proposals(n);
    flush_barrier(n);
    flush_change(n);
    if (n->queued.head == NULL &&
        (n->next_readers.head == NULL || n->barrier_busy) &&
        n->change_stage != CH_PROMOTE_PENDING && !n->fatal_pending &&
        (n->fsm == NULL || !wfsm_batch_active(n->fsm) || n->hold_batch ||
         !batch_due(n)))
        uv_idle_stop(h);
}

static void tick_done_cb(void *arg, int status, struct wfsm_result *res)
{
    (void)arg;
    (void)status;
    (void)res;
}

/* Issue 3: the leader commits a Tick when idle so that cluster time (and
 * every node's wall-clock offset) advances without client writes. */
/* Once a leader is known after start-up, the configured election timeout
 * applies again (see start_raft, "first election"). */
static void first_election_done(struct wnode *n)
{
    raft_id id = 0;
    const char *addr = NULL;

    if (!n->first_election)
        return;
    raft_leader(&n->raft, &id, &addr);
    if (id == 0)
        return;
    raft_set_election_timeout(&n->raft, n->election_timeout_ms);
    n->first_election = 0;
}

static void tick_cb(uv_timer_t *t)
{
    struct wnode *n = t->data;
    Warden__V1__Command cmd = WARDEN__V1__COMMAND__INIT;
    Warden__V1__Tick tick = WARDEN__V1__TICK__INIT;
    struct werr e;

    first_election_done(n);
    /* A node that just won an election learns it here at the latest. */
    anchor_check(n);
    if (!leader_ready(n) || n->queued.n + n->inflight.n > 0 ||
        mono_ms() - n->last_propose_ms < n->tick_idle_ms)
        return;
    tick.leader_wall_ms = wall_ms();
    cmd.op_case = WARDEN__V1__COMMAND__OP_TICK;
    cmd.tick = &tick;
    cmd.principal_name = (char *)"warden-node";
    if (wnode_propose(n, &cmd, tick_done_cb, NULL, &e) == 0)
        n->n_ticks++;
}

/* ---- start / close ------------------------------------------------------------------------------ */

/* Server id N must present warden://role/peer/n<N> (docs/consensus.md). */
static int authorize_by_name(void *arg, raft_id id, const struct principal *p)
{
    char want[32];
    (void)arg;
    snprintf(want, sizeof want, "n%llu", (unsigned long long)id);
    return strcmp(want, p->name) == 0;
}

static void handle_closed_cb(uv_handle_t *h)
{
    struct wnode *n = h->data;
    wnode_close_cb cb;
    void *arg;

    if (--n->handles_open > 0)
        return;
    cb = n->close_cb;
    arg = n->close_arg;
    free(n);
    if (cb != NULL)
        cb(arg);
}

/* Everything raft held is released; fail what is left and close handles. */
static void teardown_rest(struct wnode *n)
{
    if (n->io_ok)
        raft_uv_close(&n->io);
    if (n->transport_ok)
        consensus_tls_transport_close(&n->transport);
    n->io_ok = n->transport_ok = 0;
    /* raft fails its pending requests while closing; anything still here
     * (a promote not yet handed to raft, a request raft dropped) ends now. */
    while (n->inflight.head != NULL) {
        struct prop *p = n->inflight.head;
        plist_remove(&n->inflight, p);
        prop_finish(p, WERR_CANCELLED);
    }
    while (n->queued.head != NULL) {
        struct prop *p = n->queued.head;
        plist_remove(&n->queued, p);
        prop_finish(p, WERR_CANCELLED);
    }
    rlist_fire(n, &n->cur_readers, WERR_CANCELLED);
    rlist_fire(n, &n->next_readers, WERR_CANCELLED);
    if (n->change_stage != CH_IDLE)
        change_done(n, WERR_CANCELLED);
    if (n->transfer_busy) {
        n->transfer_busy = 0;
        n->transfer_cb(n->transfer_arg, WERR_CANCELLED);
    }
    /* raft is closed: nothing applies any more. Entries applied since
     * teardown() commit now (they are committed in raft; keeping them
     * spares a re-apply), and whoever waited on them is answered. */
    batch_commit(n);
    ready_fire(n);
    if (n->fsm != NULL) {
        /* raft_uv's close waits for its snapshot writer, and finalize runs
         * before raft's close callback: an image left here means raft
         * never finalized it, and nobody reads it any more. */
        wfsm_snapshot_release(n->fsm, n->snap_img);
        n->snap_img = NULL;
        wfsm_close(n->fsm);
    }
    n->fsm = NULL;
    uv_close((uv_handle_t *)&n->flush, handle_closed_cb);
    uv_close((uv_handle_t *)&n->tick, handle_closed_cb);
    uv_close((uv_handle_t *)&n->settle, handle_closed_cb);
    uv_close((uv_handle_t *)&n->commit_timer, handle_closed_cb);
}

static void raft_closed_cb(struct raft *r)
{
    struct wnode *n = r->data;
    n->raft_ok = 0;
    teardown_rest(n);
}

static void teardown(struct wnode *n)
{
    n->closing = 1;
    uv_idle_stop(&n->flush);
    uv_timer_stop(&n->tick);
    /* Applied entries commit and their callbacks fire with status 0: they
     * are committed in raft and now durable in LMDB. */
    batch_commit(n);
    ready_fire(n);
    /* Not yet given to raft: cancel now, in order. */
    while (n->queued.head != NULL) {
        struct prop *p = n->queued.head;
        plist_remove(&n->queued, p);
        prop_finish(p, WERR_CANCELLED);
    }
    rlist_fire(n, &n->next_readers, WERR_CANCELLED);
    if (n->change_stage == CH_PROMOTE_PENDING)
        change_done(n, WERR_CANCELLED);
    if (n->raft_ok) {
        raft_close(&n->raft, raft_closed_cb);
        return;
    }
    teardown_rest(n);
}

void wnode_close(struct wnode *n, wnode_close_cb cb, void *arg)
{
    if (n->closing)
        return;
    n->close_cb = cb;
    n->close_arg = arg;
    teardown(n);
}

static int mkdir_p1(const char *dir, struct werr *e)
{
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return werr_set(e, WERR_IO, "mkdir %s: %s", dir, strerror(errno));
    return 0;
}

static int start_raft(struct wnode *n, const struct wnode_config *cfg,
                      SSL_CTX *ctx, struct werr *e)
{
    struct consensus_tls_config tc;
    struct raft_configuration conf;
    unsigned et = cfg->election_timeout_ms ? cfg->election_timeout_ms
                                           : WNODE_ELECTION_TIMEOUT_MS;
    unsigned ht = cfg->heartbeat_timeout_ms ? cfg->heartbeat_timeout_ms
                                            : WNODE_HEARTBEAT_TIMEOUT_MS;
    int rv;

    memset(&tc, 0, sizeof tc);
    tc.ctx = ctx;
    tc.authorize = authorize_by_name;
    tc.handshake_timeout_ms = cfg->handshake_timeout_ms;
    if ((rv = consensus_tls_transport_init(&n->transport, n->loop, &tc, e)) != 0)
        return werr_wrap(e, "peer transport");
    n->transport_ok = 1;
    if ((rv = raft_uv_init(&n->io, n->loop, n->raft_dir, &n->transport)) != 0)
        return werr_set(e, raft_to_werr(rv), "raft_uv_init %s: %s",
                        n->raft_dir, raft_strerror(rv));
    n->io_ok = 1;
    /* Issue 3: a corrupt log is a loud start-up error, never silently
     * truncated (docs/consensus.md, "Recovery"). */
    raft_uv_set_auto_recovery(&n->io, false);
    raft_uv_set_snapshot_skip(&n->io, snapshot_skip_cb, n);
    if (cfg->connect_retry_ms)
        raft_uv_set_connect_retry_delay(&n->io, cfg->connect_retry_ms);

    n->rfsm.version = 2; /* snapshot_finalize releases our mapped image */
    n->rfsm.data = n;
    n->rfsm.apply = rfsm_apply;
    n->rfsm.snapshot = rfsm_snapshot;
    n->rfsm.restore = rfsm_restore;
    n->rfsm.snapshot_finalize = rfsm_snapshot_finalize;
    if ((rv = raft_init(&n->raft, &n->io, &n->rfsm, n->id, n->address)) != 0)
        return werr_set(e, raft_to_werr(rv), "raft_init: %s",
                        raft_errmsg(&n->raft));
    n->raft_ok = 1;
    n->raft.data = n;
    if (ht >= et)
        return werr_set(e, WERR_CONFIG, "heartbeat %u ms >= election %u ms",
                        ht, et);
    /* First election after start-up: a quarter of the configured timeout
     * (at least two heartbeats) until this node knows a leader, as etcd's
     * --initial-election-tick-advance does. After a full restart no node
     * has a leader to hear from, and the whole configured timeout was dead
     * time on top of loading the log (issue 8, scenario 5). A node that
     * restarts into a live cluster hears the leader's heartbeat well
     * within it; pre-vote keeps an early candidate from disturbing a
     * leader anyway. Liveness only: terms and votes are unaffected. */
    n->election_timeout_ms = et;
    {
        unsigned first = et / WNODE_FIRST_ELECTION_DIVISOR;
        if (first < 2 * ht + 1)
            first = 2 * ht + 1;
        if (first < et) {
            n->first_election = 1;
            et = first;
        }
    }
    raft_set_election_timeout(&n->raft, et);
    raft_set_heartbeat_timeout(&n->raft, ht);
    n->snap_entries = cfg->snapshot_threshold ? cfg->snapshot_threshold
                                              : WNODE_SNAPSHOT_THRESHOLD;
    n->snap_image_bytes = wfsm_store_bytes(n->fsm);
    n->snap_threshold_set = 0;
    snapshot_policy(n);
    raft_set_snapshot_trailing(&n->raft, cfg->snapshot_trailing
                                             ? cfg->snapshot_trailing
                                             : WNODE_SNAPSHOT_TRAILING);
    raft_set_pre_vote(&n->raft, true);

    if (cfg->bootstrap) {
        raft_configuration_init(&conf);
        for (unsigned i = 0; i < cfg->n_peers; i++) {
            char a[WNODE_ADDR_MAX];
            const struct wnode_peer *pp = &cfg->peers[i];
            if (pp->id == 0 || addr_join(a, sizeof a, pp->peer_addr,
                                         pp->client_addr) != 0) {
                raft_configuration_close(&conf);
                return werr_set(e, WERR_CONFIG, "peer %u: bad id or address",
                                pp->id);
            }
            rv = raft_configuration_add(&conf, pp->id, a, RAFT_VOTER);
            if (rv != 0) {
                raft_configuration_close(&conf);
                return werr_set(e, WERR_CONFIG, "peer %u: %s", pp->id,
                                raft_strerror(rv));
            }
        }
        rv = raft_bootstrap(&n->raft, &conf);
        raft_configuration_close(&conf);
        /* Not pristine: the configuration already lives in the log. */
        if (rv != 0 && rv != RAFT_CANTBOOTSTRAP)
            return werr_set(e, raft_to_werr(rv), "raft_bootstrap: %s",
                            raft_errmsg(&n->raft));
    }
    /* raft arms its election timer from the loop's cached time, which is
     * stale by however long start-up took so far (issue 8, scenario 5). */
    uv_update_time(n->loop);
    n->starting = 1;
    rv = raft_start(&n->raft);
    n->starting = 0;
    if (rv != 0) {
        rv = werr_set(e, raft_to_werr(rv), "raft_start: %s",
                      raft_errmsg(&n->raft));
        if (rv == WERR_CORRUPT)
            werr_wrap(e, "corrupt raft log in %s (see docs/consensus.md, "
                         "Recovery)", n->raft_dir);
        return rv;
    }
    return 0;
}

int wnode_start(struct wnode **out, const struct wnode_config *cfg,
                struct werr *e)
{
    struct wnode *n;
    SSL_CTX *ctx = NULL;
    int rv;

    *out = NULL;
    if (cfg == NULL || cfg->loop == NULL || cfg->id == 0 ||
        cfg->data_dir == NULL || cfg->n_peers > WNODE_MEMBERS_MAX ||
        (cfg->bootstrap && cfg->n_peers == 0))
        return werr_set(e, WERR_CONFIG, "node: bad configuration");
    if ((n = calloc(1, sizeof *n)) == NULL)
        return werr_set(e, WERR_NOMEM, "node");
    n->loop = cfg->loop;
    n->id = cfg->id;
    n->on_fatal = cfg->on_fatal;
    n->on_fatal_arg = cfg->on_fatal_arg;
    n->tick_idle_ms = cfg->tick_idle_ms ? cfg->tick_idle_ms : WNODE_TICK_IDLE_MS;
#ifdef WARDEN_FAULTS
    n->fault_ack_before_commit = cfg->fault_ack_before_commit != 0;
    if (n->fault_ack_before_commit)
        wlog(WLOG_WARN, "UNSAFE FAULT: proposals acknowledged before commit "
             "(testing only)", NULL);
#endif
    if (addr_join(n->address, sizeof n->address, cfg->peer_addr,
                  cfg->client_addr) != 0) {
        free(n);
        return werr_set(e, WERR_CONFIG, "node: bad own address");
    }
    if (snprintf(n->raft_dir, sizeof n->raft_dir, "%s/raft", cfg->data_dir) >=
            (int)sizeof n->raft_dir ||
        snprintf(n->db_dir, sizeof n->db_dir, "%s/db", cfg->data_dir) >=
            (int)sizeof n->db_dir) {
        free(n);
        return werr_set(e, WERR_CONFIG, "node: data_dir too long");
    }
    uv_idle_init(n->loop, &n->flush);
    uv_timer_init(n->loop, &n->tick);
    uv_check_init(n->loop, &n->settle);
    uv_timer_init(n->loop, &n->commit_timer);
    n->flush.data = n;
    n->tick.data = n;
    n->settle.data = n;
    n->commit_timer.data = n;
    n->handles_open = 4;
    n->apply_commit_ms = cfg->apply_commit_ms == 0 ? WNODE_APPLY_COMMIT_MS
                         : cfg->apply_commit_ms > WNODE_APPLY_COMMIT_MS_MAX
                             ? WNODE_APPLY_COMMIT_MS_MAX
                             : cfg->apply_commit_ms;
    /* From here on every failure goes through teardown(), which frees n
     * from the loop once raft and the handles are closed. */
    n->start_failed = 1;

    if ((rv = mkdir_p1(cfg->data_dir, e)) != 0 ||
        (rv = mkdir_p1(n->raft_dir, e)) != 0 ||
        (rv = mkdir_p1(n->db_dir, e)) != 0)
        goto err_teardown;
    if ((rv = wfsm_open(&n->fsm, n->db_dir, cfg->map_size, e)) != 0) {
        werr_wrap(e, "state machine");
        goto err_teardown;
    }
    n->ct_base_ms = wfsm_cluster_time(n->fsm);
    n->ct_applied_at_ms = mono_ms();
    n->last_propose_ms = mono_ms();
    if ((rv = consensus_tls_ctx_new(cfg->ca_file, cfg->cert_file,
                                    cfg->key_file, &ctx, e)) != 0) {
        werr_wrap(e, "peer TLS");
        goto err_teardown;
    }
    rv = start_raft(n, cfg, ctx, e);
    SSL_CTX_free(ctx); /* the transport holds its own reference */
    if (rv != 0)
        goto err_teardown;
    n->start_failed = 0;
    {
        unsigned period = n->tick_idle_ms / 2;
        if (period < NODE_TICK_PERIOD_MIN_MS)
            period = NODE_TICK_PERIOD_MIN_MS;
        uv_timer_start(&n->tick, tick_cb, period, period);
    }
    *out = n;
    return 0;

err_teardown:
    werr_wrap(e, "node %u", cfg->id);
    teardown(n);
    return rv;
}

/* ---- observation --------------------------------------------------------------------------------- */

struct wfsm *wnode_fsm(struct wnode *n)
{
    return n->fsm;
}

int wnode_is_leader(struct wnode *n)
{
    return leader_ready(n);
}

int wnode_leader(struct wnode *n, unsigned *id, char *client_addr, size_t cap)
{
    raft_id lid = 0;
    const char *addr = NULL;

    *id = 0;
    if (cap > 0)
        client_addr[0] = '\0';
    if (n->closing || !n->raft_ok)
        return WERR_UNAVAIL;
    raft_leader(&n->raft, &lid, &addr);
    if (lid == 0 || addr == NULL)
        return WERR_UNAVAIL;
    if (wnode_addr_split(addr, NULL, 0, client_addr, cap) != 0)
        return WERR_UNAVAIL;
    *id = (unsigned)lid;
    return 0;
}

void wnode_status(struct wnode *n, struct wnode_status *st)
{
    struct raft *r = &n->raft;
    int leader;

    memset(st, 0, sizeof *st);
    st->id = n->id;
    st->failed = n->failed;
    st->proposals = n->n_proposals;
    st->flushes = n->n_flushes;
    st->ticks = n->n_ticks;
    st->barriers = n->n_barriers;
    st->barrier_readers = n->n_readers;
    st->restores = n->n_restores;
    st->restores_skipped = n->n_restores_skipped;
    st->snapshots = n->n_snapshots;
    st->apply_batches = n->n_apply_batches;
    st->wall_offset_known = n->wall_offset_known;
    st->wall_offset_ms = n->wall_offset_ms;
    st->state = WNODE_UNAVAILABLE;
    st->state_name = "unavailable";
    if (!n->raft_ok || n->closing)
        return;
    st->state = (enum wnode_state)raft_state(r);
    st->state_name = raft_state_name(raft_state(r));
    leader = raft_state(r) == RAFT_LEADER;
    st->term = raft_current_term(r);
    wnode_leader(n, &st->leader_id, st->leader_client_addr,
                 sizeof st->leader_client_addr);
    st->commit_index = raft_commit_index(r);
    st->applied_index = raft_last_applied(r);
    st->fsm_applied_index = n->fsm ? wfsm_committed_index(n->fsm) : 0;
    if (n->fsm != NULL && wfsm_store(n->fsm) != NULL)
        st->lmdb_commits = store_commits(wfsm_store(n->fsm));
    st->last_index = raft_last_index(r);
    st->snapshot_index = r->trail.snapshot.index;
    st->snapshot_term = r->trail.snapshot.term;
    st->cluster_time_ms = n->fsm ? wfsm_committed_cluster_time(n->fsm) : 0;
    st->anchored = n->anchor_term != 0 && n->anchor_term == st->term &&
                   leader;
    st->anchors = n->n_anchors;
    st->tls_refused = consensus_tls_transport_refused(&n->transport);
    for (unsigned i = 0; i < r->configuration.n && i < WNODE_MEMBERS_MAX; i++) {
        const struct raft_server *s = &r->configuration.servers[i];
        struct wnode_member *m = &st->members[st->n_members++];
        raft_index match = 0;
        m->id = (unsigned)s->id;
        m->role = s->role;
        m->role_name = raft_role_name(s->role);
        wnode_addr_split(s->address, m->peer_addr, sizeof m->peer_addr,
                         m->client_addr, sizeof m->client_addr);
        if (leader && raft_match_index(r, s->id, &match) == 0) {
            m->has_progress = 1;
            m->match_index = match;
        }
    }
}
