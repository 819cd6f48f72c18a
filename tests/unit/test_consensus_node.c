/* test_consensus_node.c - consensus/node over real raft_uv, the mutual-TLS
 * transport and real LMDB in temp dirs: 3 nodes (then a 4th) in one process
 * and one uv loop on 127.0.0.1.
 *
 * One scripted run, step by step (enum step), each step polled every
 * POLL_MS; the whole run is bounded by one uv timer (TEST_DEADLINE_MS). On
 * failure it prints the step, the reason and every node's status.
 * Batched apply is checked along the way: every successful proposal and
 * barrier callback finds its state durable and readable, and the write
 * bursts cost far fewer LMDB commits than entries. */
#include <signal.h>
#include <stdint.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/evp.h>
#include <raft.h>

#include "common/principal.h"
#include "consensus/node.h"
#include "domain/inventory.h"
#include "storage/store.h"
#include "consensus_testutil.h"
#include "unit.h"

#define N_MAX 4
#define TEST_DEADLINE_MS 60000
#define POLL_MS 20
#define N_FIRST 20        /* enrolls proposed in one loop iteration */
#define N_SNAP 120        /* entries written while a node is down */
/* Tiny snapshot settings so that N_SNAP entries force a snapshot and a log
 * truncation past the stopped node. */
#define SNAP_THRESHOLD 32
#define SNAP_TRAILING 8
/* Cluster time under a write stream (docs/consensus.md, "Cluster time"):
 * CT_FLOOD_MS of loop time, CT_PER_POLL proposals per poll, then the loop
 * is blocked CT_DELAY_MS so every round's commit takes at least that long.
 * Losing each round's latency (the pre-anchor stamp) costs >= CT_DELAY_MS
 * per round, ~1 s here; the anchor must stay within CT_SLACK_MS. */
#define CT_FLOOD_MS 2000
#define CT_PER_POLL 3
#define CT_DELAY_MS 30
#define CT_SLACK_MS 150
/* The start point ct0 is the *committed* cluster time, which trails the
 * leader's stamps by up to one commit round; under ASan on a loaded 2-core
 * machine that round has been measured at ~150 ms. "Ahead" therefore gets
 * a wider bound than "behind": it still catches a clock that runs fast
 * (a 10% fast clock is 200 ms over 2 s), not the start-point skew. */
#define CT_AHEAD_SLACK_MS 400
#define CT_RETRIES 3      /* leadership moved mid-flood (ctest -j): redo */

enum step {
    S_ELECT, S_PROPOSE, S_WAIT_PROPOSE, S_CONVERGE, S_FOLLOWER, S_BARRIER,
    S_WAIT_BARRIER, S_CT_ANCHOR, S_CT_FLOOD, S_CT_WAIT, S_TRANSFER, S_WAIT_TRANSFER, S_ADD, S_WAIT_ADD,
    S_REMOVE, S_WAIT_REMOVE, S_STOP_ONE, S_WAIT_STOPPED, S_WRITE_MORE,
    S_WAIT_MORE, S_RESTART, S_WAIT_CATCHUP, S_CANCEL, S_CLOSING, S_DONE
};

struct tnode {
    struct world *w;
    unsigned id;
    int port_peer, port_client;
    char peer[32], client[32];
    char dir[256];
    struct wnode *n;
    int running;
};

struct world {
    uv_loop_t loop;
    uv_timer_t deadline, poll;
    uv_check_t check;
    enum step step;
    char why[512];
    int failed;
    char base[64];
    struct tnode nodes[N_MAX];
    unsigned n_nodes;          /* started at least once */
    unsigned leader;           /* index into nodes */
    unsigned seq;              /* device ids */
    unsigned n_cb, n_ok, n_bad;
    int last_status;
    uint64_t last_index;       /* highest index a proposal was applied at */
    uint64_t flushes_before, proposals_before;
    uint64_t flushes_after, proposals_after;
    uint64_t barriers_before, barriers_after;
    unsigned barrier_cb, barrier_bad, barrier_late;
    int change_status, change_done;
    unsigned target;
    unsigned removed, stopped;
    uint64_t restores_before;
    unsigned cancel_cb, cancel_status_ok;
    unsigned closing_left;
    /* Batched apply: durable LMDB commits on the leader around the two
     * write bursts, and callbacks that ran before their state was
     * durable and readable (must stay 0). */
    uint64_t commits_before, commits_after, batches_before, batches_after;
    uint64_t more_commits_before, more_commits_after;
    unsigned undurable;
    int held;                  /* batch held open: 1 proposing, 2 reading */
    unsigned held_cb;          /* proposals answered while it was held */
    unsigned held_readers;     /* readers answered while it was held */
    uint64_t held_applied, held_committed;
    uint8_t ed_pub[32];
    uint8_t digest[32];      /* an attestation digest (SHA-256 sized) */
    /* Cluster time: per node, the highest committed cluster time seen
     * (must never go down); the flood's start/end and its result. */
    uint64_t ct_seen[N_MAX];
    uint64_t ct_mono0, ct_mono_last, ct0, ct_end;
    unsigned ct_proposed, ct_tries;
    uint64_t ct_before_transfer;
};

static struct world W;

/* What a proposal's callback checks: the device it enrolled, on the node
 * that proposed it. One per device id (W.seq). */
#define PCTX_MAX 512
struct pctx {
    struct tnode *t;
    char id[32];
};
static struct pctx PCTX[PCTX_MAX];

#define FAIL(...)                                                         \
    do {                                                                  \
        snprintf(W.why, sizeof W.why, __VA_ARGS__);                       \
        W.failed = 1;                                                     \
        begin_close();                                                    \
        return;                                                           \
    } while (0)

static void begin_close(void);

/* ---- helpers -------------------------------------------------------------- */

static int node_start(struct tnode *t, int bootstrap)
{
    struct wnode_config c;
    char ca[128], cert[128], key[128];
    struct werr e = {0};

    memset(&c, 0, sizeof c);
    snprintf(ca, sizeof ca, "%s/ca.pem", W.base);
    snprintf(cert, sizeof cert, "%s/n%u.pem", W.base, t->id);
    snprintf(key, sizeof key, "%s/n%u-key.pem", W.base, t->id);
    c.id = t->id;
    c.data_dir = t->dir;
    c.loop = &W.loop;
    c.peer_addr = t->peer;
    c.client_addr = t->client;
    c.bootstrap = bootstrap;
    for (unsigned i = 0; i < 3; i++) {
        c.peers[i].id = W.nodes[i].id;
        snprintf(c.peers[i].peer_addr, sizeof c.peers[i].peer_addr, "%s",
                 W.nodes[i].peer);
        snprintf(c.peers[i].client_addr, sizeof c.peers[i].client_addr, "%s",
                 W.nodes[i].client);
    }
    c.n_peers = 3;
    c.ca_file = ca;
    c.cert_file = cert;
    c.key_file = key;
    c.election_timeout_ms = 300;
    c.heartbeat_timeout_ms = 50;
    c.snapshot_threshold = SNAP_THRESHOLD;
    c.snapshot_trailing = SNAP_TRAILING;
    c.tick_idle_ms = 200;
    c.connect_retry_ms = 100;
    c.map_size = (size_t)64 << 20;
    if (wnode_start(&t->n, &c, &e) != 0) {
        fprintf(stderr, "node %u start: %s\n", t->id, e.msg);
        return -1;
    }
    t->running = 1;
    return 0;
}

static void node_closed_cb(void *arg)
{
    struct tnode *t = arg;
    t->n = NULL;
    if (W.closing_left > 0 && --W.closing_left == 0 && W.step == S_CLOSING) {
        W.step = S_DONE;
        uv_close((uv_handle_t *)&W.deadline, NULL);
        uv_close((uv_handle_t *)&W.poll, NULL);
        uv_close((uv_handle_t *)&W.check, NULL);
    }
}

static void node_stop(struct tnode *t)
{
    if (!t->running)
        return;
    t->running = 0;
    wnode_close(t->n, node_closed_cb, t);
}

static int find_leader(void)
{
    for (unsigned i = 0; i < W.n_nodes; i++)
        if (W.nodes[i].running && wnode_is_leader(W.nodes[i].n)) {
            W.leader = i;
            return 1;
        }
    return 0;
}

static void make_enroll(Warden__V1__Command *c, Warden__V1__EnrollDeviceRequest *r,
                        char *id, size_t cap)
{
    Warden__V1__Command ci = WARDEN__V1__COMMAND__INIT;
    Warden__V1__EnrollDeviceRequest ri = WARDEN__V1__ENROLL_DEVICE_REQUEST__INIT;
    *c = ci;
    *r = ri;
    snprintf(id, cap, "dev-%04u", W.seq++);
    c->principal_name = (char *)"admin";
    c->principal_role = WROLE_ADMIN;
    c->op_case = WARDEN__V1__COMMAND__OP_ENROLL_DEVICE;
    c->enroll_device = r;
    r->device_id = id;
    r->key_algorithm = WARDEN__V1__KEY_ALGORITHM__KEY_ALGORITHM_ED25519;
    r->public_key.data = W.ed_pub;
    r->public_key.len = sizeof W.ed_pub;
    r->hardware_model = (char *)"rpi-cm4";
    r->firmware_version = (char *)"1.0.0";
    r->gateway_id = (char *)"gw-a";
    r->attestation_digest.data = W.digest;
    r->attestation_digest.len = sizeof W.digest;
}

static int has_device(struct tnode *t, const char *id);

/* A reply must never acknowledge state that is not durable in LMDB and
 * readable by a read txn (batched apply, docs/consensus.md): when the
 * callback runs, no batch holds unapplied-to-disk entries and the device
 * is in a fresh read txn. */
static void check_durable(struct tnode *t, const char *id, const char *what)
{
    struct wfsm *f;
    if (t == NULL || t->n == NULL)
        return;
    f = wnode_fsm(t->n);
    if (wfsm_batch_active(f) ||
        wfsm_committed_index(f) != wfsm_applied_index(f) ||
        (id != NULL && !has_device(t, id))) {
        W.undurable++;
        fprintf(stderr, "%s callback before its commit: batch %d committed "
                "%llu applied %llu device %s\n", what, wfsm_batch_active(f),
                (unsigned long long)wfsm_committed_index(f),
                (unsigned long long)wfsm_applied_index(f), id ? id : "-");
    }
}

static void prop_cb(void *arg, int status, struct wfsm_result *res)
{
    struct pctx *pc = arg;
    W.n_cb++;
    W.last_status = status;
    if (status == 0 && res != NULL && res->code == 0) {
        W.n_ok++;
        if (W.held) {
            W.held_cb++;
        } else if (pc != NULL && pc->t != NULL && pc->t->n != NULL) {
            /* Answered once applied, maybe before the batch commits; what
             * the service layer reads next (after wnode_commit_applied, as
             * svc_store does) must hold it. */
            wnode_commit_applied(pc->t->n);
            check_durable(pc->t, pc->id, "proposal");
        }
        /* Stealing the response is allowed by the contract. */
        free(res->resp);
        res->resp = NULL;
    } else {
        W.n_bad++;
        fprintf(stderr, "proposal: status %d code %d %s\n", status,
                res ? res->code : 0, res ? res->msg : "");
    }
}

static int propose_enrolls(struct tnode *t, unsigned k)
{
    for (unsigned i = 0; i < k; i++) {
        Warden__V1__Command c;
        Warden__V1__EnrollDeviceRequest r;
        char id[32];
        struct werr e = {0};
        struct pctx *pc = W.seq < PCTX_MAX ? &PCTX[W.seq] : NULL;
        make_enroll(&c, &r, id, sizeof id);
        if (pc != NULL) {
            pc->t = t;
            snprintf(pc->id, sizeof pc->id, "%s", id);
        }
        if (wnode_propose(t->n, &c, prop_cb, pc, &e) != 0) {
            fprintf(stderr, "propose: %s\n", e.msg);
            return -1;
        }
    }
    return 0;
}

static int has_device(struct tnode *t, const char *id)
{
    struct wfsm *f = wnode_fsm(t->n);
    struct store_txn *tx;
    Warden__V1__Device *d = NULL;
    struct werr e = {0};
    int rc;

    if (store_txn_begin(wfsm_store(f), 0, &tx, &e) != 0)
        return 0;
    rc = inv_get(wfsm_inv(f), tx, id, &d, &e);
    store_txn_abort(tx);
    if (rc == 0)
        inv_device_free(d);
    return rc == 0;
}

static void status_of(struct tnode *t, struct wnode_status *st)
{
    wnode_status(t->n, st);
}

/* Every running node applied at least `index` and holds the same fsm
 * applied index as the leader. */
static int converged(uint64_t index)
{
    struct wnode_status ls, st;
    status_of(&W.nodes[W.leader], &ls);
    if (ls.fsm_applied_index < index)
        return 0;
    for (unsigned i = 0; i < W.n_nodes; i++) {
        if (!W.nodes[i].running || i == W.removed - 1)
            continue;
        status_of(&W.nodes[i], &st);
        if (st.fsm_applied_index != ls.fsm_applied_index)
            return 0;
    }
    return 1;
}

static void dump(void)
{
    for (unsigned i = 0; i < W.n_nodes; i++) {
        struct wnode_status st;
        if (!W.nodes[i].running) {
            fprintf(stderr, "node %u: stopped\n", W.nodes[i].id);
            continue;
        }
        status_of(&W.nodes[i], &st);
        fprintf(stderr,
                "node %u: %s term %llu leader %u (%s) commit %llu applied "
                "%llu fsm %llu last %llu snap %llu/%llu members %u ct %llu "
                "offset %s%lld props %llu flushes %llu ticks %llu barriers "
                "%llu restores %llu (skipped %llu) snapshots %llu refused %lu\n",
                st.id, st.state_name, (unsigned long long)st.term,
                st.leader_id, st.leader_client_addr,
                (unsigned long long)st.commit_index,
                (unsigned long long)st.applied_index,
                (unsigned long long)st.fsm_applied_index,
                (unsigned long long)st.last_index,
                (unsigned long long)st.snapshot_index,
                (unsigned long long)st.snapshot_term, st.n_members,
                (unsigned long long)st.cluster_time_ms,
                st.wall_offset_known ? "" : "?", (long long)st.wall_offset_ms,
                (unsigned long long)st.proposals,
                (unsigned long long)st.flushes, (unsigned long long)st.ticks,
                (unsigned long long)st.barriers,
                (unsigned long long)st.restores,
                (unsigned long long)st.restores_skipped,
                (unsigned long long)st.snapshots, st.tls_refused);
        for (unsigned m = 0; m < st.n_members; m++)
            fprintf(stderr, "    member %u %s/%s %s match %s%llu\n",
                    st.members[m].id, st.members[m].peer_addr,
                    st.members[m].client_addr, st.members[m].role_name,
                    st.members[m].has_progress ? "" : "?",
                    (unsigned long long)st.members[m].match_index);
    }
}

static void begin_close(void)
{
    if (W.step >= S_CLOSING)
        return;
    W.step = S_CLOSING;
    uv_timer_stop(&W.poll);
    uv_timer_stop(&W.deadline);
    uv_check_stop(&W.check);
    if (W.failed)
        dump();
    W.closing_left = 0;
    for (unsigned i = 0; i < W.n_nodes; i++)
        if (W.nodes[i].running)
            W.closing_left++;
    /* Also the ones stopped earlier but whose close has not completed. */
    for (unsigned i = 0; i < W.n_nodes; i++)
        if (!W.nodes[i].running && W.nodes[i].n != NULL)
            W.closing_left++;
    for (unsigned i = 0; i < W.n_nodes; i++)
        node_stop(&W.nodes[i]);
    if (W.closing_left == 0) {
        W.step = S_DONE;
        uv_close((uv_handle_t *)&W.deadline, NULL);
        uv_close((uv_handle_t *)&W.poll, NULL);
        uv_close((uv_handle_t *)&W.check, NULL);
    }
}

/* ---- callbacks for barriers, changes, cancel -------------------------------- */

static void reader_cb(void *arg, int status)
{
    (void)arg;
    W.barrier_cb++;
    if (status != 0)
        W.barrier_bad++;
    else
        check_durable(&W.nodes[W.leader], NULL, "barrier");
}

/* Runs after the poll phase of the iteration in which S_BARRIER queued the
 * first readers, i.e. after the node's idle flush issued their barrier:
 * these readers arrive while it is in flight and must share the next one. */
static void check_cb(uv_check_t *h)
{
    uv_check_stop(h);
    for (int i = 0; i < 3; i++)
        if (wnode_barrier(W.nodes[W.leader].n, reader_cb, NULL) == 0)
            W.barrier_late++;
}

static void change_cb(void *arg, int status)
{
    (void)arg;
    W.change_status = status;
    W.change_done = 1;
}

static void cancel_cb(void *arg, int status, struct wfsm_result *res)
{
    (void)arg;
    (void)res;
    W.cancel_cb++;
    if (status == WERR_CANCELLED)
        W.cancel_status_ok++;
}

/* ---- the script ------------------------------------------------------------------ */

static void poll_cb(uv_timer_t *timer)
{
    struct tnode *L;
    struct wnode_status st;
    (void)timer;

    /* Cluster time never goes backwards on any node, across the flood,
     * the leadership transfer, the membership changes and the restart. */
    for (unsigned i = 0; i < W.n_nodes && W.step < S_CLOSING; i++) {
        uint64_t ct;
        if (!W.nodes[i].running || W.nodes[i].n == NULL)
            continue;
        ct = wfsm_committed_cluster_time(wnode_fsm(W.nodes[i].n));
        if (ct < W.ct_seen[i])
            FAIL("node %u: cluster time went back from %llu to %llu",
                 W.nodes[i].id, (unsigned long long)W.ct_seen[i],
                 (unsigned long long)ct);
        W.ct_seen[i] = ct;
    }

    switch (W.step) {
    case S_ELECT:
        if (find_leader())
            W.step = S_PROPOSE;
        return;
    case S_PROPOSE:
        if (!find_leader())
            return;
        L = &W.nodes[W.leader];
        status_of(L, &st);
        W.flushes_before = st.flushes;
        W.proposals_before = st.proposals;
        W.commits_before = st.lmdb_commits;
        W.batches_before = st.apply_batches;
        W.n_cb = W.n_ok = W.n_bad = 0;
        /* Hold the leader's apply batch open: its entries get applied but
         * not committed. Their proposers are answered (raft committed
         * them); a reader is not, until the commit. */
        wnode_test_hold_batch(L->n, 1);
        W.held = 1;
        /* All in this one callback: one loop iteration. */
        if (propose_enrolls(L, N_FIRST) != 0)
            FAIL("propose on the leader failed");
        W.step = S_WAIT_PROPOSE;
        return;
    case S_WAIT_PROPOSE:
        if (W.held == 1) {
            struct wfsm *f = wnode_fsm(W.nodes[W.leader].n);
            if (W.n_cb < N_FIRST)
                return; /* not all answered yet */
            /* All N_FIRST are answered while the batch is open. */
            W.held_applied = wfsm_applied_index(f);
            W.held_committed = wfsm_committed_index(f);
            W.barrier_cb = W.barrier_bad = 0;
            if (wnode_barrier(W.nodes[W.leader].n, reader_cb, NULL) != 0)
                FAIL("barrier on the held leader refused");
            W.held = 2;
            return;
        }
        if (W.held == 2) {
            struct wfsm *f = wnode_fsm(W.nodes[W.leader].n);
            if (wfsm_applied_index(f) <= W.held_applied)
                return; /* the barrier's entry is not applied yet */
            /* Applied, still uncommitted: the reader must still wait. */
            W.held_readers = W.barrier_cb;
            W.held = 0;
            wnode_test_hold_batch(W.nodes[W.leader].n, 0);
            return;
        }
        if (W.barrier_cb < 1)
            return; /* the reader, after the commit */
        if (W.n_cb < N_FIRST)
            return;
        if (W.n_ok != N_FIRST)
            FAIL("%u of %u proposals failed (last status %d)", W.n_bad,
                 N_FIRST, W.last_status);
        status_of(&W.nodes[W.leader], &st);
        W.flushes_after = st.flushes;
        W.proposals_after = st.proposals;
        W.commits_after = st.lmdb_commits;
        W.batches_after = st.apply_batches;
        W.last_index = st.fsm_applied_index;
        W.step = S_CONVERGE;
        return;
    case S_CONVERGE:
        if (!converged(W.last_index))
            return;
        for (unsigned i = 0; i < 3; i++) {
            char id[32];
            snprintf(id, sizeof id, "dev-%04u", N_FIRST - 1);
            if (!has_device(&W.nodes[i], id) || !has_device(&W.nodes[i], "dev-0000"))
                FAIL("node %u lacks an enrolled device", W.nodes[i].id);
        }
        W.step = S_FOLLOWER;
        return;
    case S_FOLLOWER: {
        /* Under load (ctest -j) an election may have moved leadership since
         * S_ELECT: re-resolve the leader now, in this loop turn, so the
         * "follower" really is one when we propose (same thread: no race
         * between this check and wnode_propose). */
        unsigned cur = 3;
        for (unsigned i = 0; i < 3; i++)
            if (wnode_is_leader(W.nodes[i].n))
                cur = i;
        if (cur == 3)
            return; /* election in progress: poll again */
        W.leader = cur;
        struct tnode *F = &W.nodes[(W.leader + 1) % 3];
        Warden__V1__Command c;
        Warden__V1__EnrollDeviceRequest r;
        char id[32], hint[WNODE_HOSTPORT_MAX];
        unsigned lid = 0;
        struct werr e = {0};
        int rv;
        make_enroll(&c, &r, id, sizeof id);
        rv = wnode_propose(F->n, &c, prop_cb, NULL, &e);
        if (rv != WERR_UNAVAIL)
            FAIL("propose on follower %u returned %d, want UNAVAIL", F->id, rv);
        if (wnode_leader(F->n, &lid, hint, sizeof hint) != 0)
            return; /* hint not known yet: poll again */
        if (lid != W.nodes[W.leader].id || strcmp(hint, W.nodes[W.leader].client) != 0)
            FAIL("follower hint %u %s, want %u %s", lid, hint,
                 W.nodes[W.leader].id, W.nodes[W.leader].client);
        if (wnode_barrier(F->n, reader_cb, NULL) != WERR_UNAVAIL)
            FAIL("barrier on a follower did not refuse");
        W.step = S_BARRIER;
        return;
    }
    case S_BARRIER:
        L = &W.nodes[W.leader];
        status_of(L, &st);
        W.barriers_before = st.barriers;
        W.barrier_cb = W.barrier_bad = W.barrier_late = 0;
        for (int i = 0; i < 5; i++)
            if (wnode_barrier(L->n, reader_cb, NULL) != 0)
                FAIL("barrier on leader refused");
        uv_check_start(&W.check, check_cb);
        W.step = S_WAIT_BARRIER;
        return;
    case S_WAIT_BARRIER:
        if (W.barrier_cb < 5 + W.barrier_late)
            return;
        status_of(&W.nodes[W.leader], &st);
        W.barriers_after = st.barriers;
        if (W.barrier_bad != 0 || W.barrier_late != 3)
            FAIL("barriers: %u bad, %u late readers", W.barrier_bad,
                 W.barrier_late);
        W.step = S_CT_ANCHOR;
        return;
    case S_CT_ANCHOR:
        /* The flood measures the anchored regime: wait for this term's
         * anchor (the leader's own barrier applied). */
        if (!find_leader())
            return;
        status_of(&W.nodes[W.leader], &st);
        if (!st.anchored)
            return;
        W.n_cb = W.n_ok = W.n_bad = 0;
        W.ct_proposed = 0;
        W.ct_mono0 = uv_hrtime() / 1000000u;
        W.ct0 = st.cluster_time_ms;
        W.step = S_CT_FLOOD;
        return;
    case S_CT_FLOOD: {
        uint64_t now = uv_hrtime() / 1000000u;
        L = &W.nodes[W.leader];
        if (!wnode_is_leader(L->n) || now - W.ct_mono0 >= CT_FLOOD_MS) {
            W.step = S_CT_WAIT;
            return;
        }
        if (propose_enrolls(L, CT_PER_POLL) != 0)
            FAIL("flood: propose on the leader failed");
        W.ct_proposed += CT_PER_POLL;
        W.ct_mono_last = uv_hrtime() / 1000000u;
        /* Stamped just now; block the loop so this round commits (and
         * applies) no sooner than CT_DELAY_MS from now. */
        usleep(CT_DELAY_MS * 1000);
        return;
    }
    case S_CT_WAIT: {
        uint64_t elapsed, adv;
        if (W.n_cb < W.ct_proposed)
            return;
        if (W.n_ok != W.ct_proposed) {
            if (++W.ct_tries >= CT_RETRIES)
                FAIL("flood: %u of %u proposals failed", W.n_bad,
                     W.ct_proposed);
            W.step = S_CT_ANCHOR; /* leadership moved: measure again */
            return;
        }
        status_of(&W.nodes[W.leader], &st);
        W.ct_end = st.cluster_time_ms;
        elapsed = W.ct_mono_last - W.ct_mono0;
        adv = W.ct_end - W.ct0;
        fprintf(stderr, "cluster time: %u writes over %llu ms of loop time, "
                "cluster time advanced %llu ms (lag %lld ms)\n",
                W.ct_proposed, (unsigned long long)elapsed,
                (unsigned long long)adv, (long long)elapsed - (long long)adv);
        if (adv + CT_SLACK_MS < elapsed)
            FAIL("cluster time advanced %llu ms over %llu ms of writes "
                 "(commit latency lost)", (unsigned long long)adv,
                 (unsigned long long)elapsed);
        /* Nor may it run ahead of the leader's monotonic clock. */
        if (adv > uv_hrtime() / 1000000u - W.ct_mono0 + CT_AHEAD_SLACK_MS)
            FAIL("cluster time ran ahead: %llu ms in %llu ms",
                 (unsigned long long)adv,
                 (unsigned long long)(uv_hrtime() / 1000000u - W.ct_mono0));
        W.step = S_TRANSFER;
        return;
    }
    case S_TRANSFER:
        status_of(&W.nodes[W.leader], &st);
        W.ct_before_transfer = st.cluster_time_ms;
        W.target = W.nodes[(W.leader + 1) % 3].id;
        W.change_done = 0;
        if (wnode_transfer(W.nodes[W.leader].n, W.target, change_cb, NULL) != 0)
            FAIL("transfer refused");
        W.step = S_WAIT_TRANSFER;
        return;
    case S_WAIT_TRANSFER:
        if (!W.change_done)
            return;
        if (W.change_status != 0)
            FAIL("transfer status %d", W.change_status);
        if (!find_leader())
            return;
        if (W.nodes[W.leader].id != W.target)
            FAIL("leader is %u after transfer to %u", W.nodes[W.leader].id,
                 W.target);
        /* The new leader anchors at or above the old leader's time (its
         * own barrier applied every entry of the old term first). */
        status_of(&W.nodes[W.leader], &st);
        if (!st.anchored)
            return;
        if (st.cluster_time_ms < W.ct_before_transfer)
            FAIL("cluster time %llu after transfer, %llu before",
                 (unsigned long long)st.cluster_time_ms,
                 (unsigned long long)W.ct_before_transfer);
        W.step = S_ADD;
        return;
    case S_ADD: {
        struct tnode *t = &W.nodes[3];
        char addr[WNODE_ADDR_MAX];
        if (!find_leader())
            return;
        if (node_start(t, 0) != 0)
            FAIL("node 4 failed to start");
        W.n_nodes = 4;
        snprintf(addr, sizeof addr, "%s/%s", t->peer, t->client);
        W.change_done = 0;
        if (wnode_add(W.nodes[W.leader].n, t->id, addr, 1, change_cb, NULL) != 0)
            FAIL("add refused");
        W.step = S_WAIT_ADD;
        return;
    }
    case S_WAIT_ADD:
        if (!W.change_done)
            return;
        if (W.change_status != 0)
            FAIL("add/promote status %d", W.change_status);
        if (!find_leader())
            return;
        status_of(&W.nodes[W.leader], &st);
        {
            int voter = 0;
            for (unsigned m = 0; m < st.n_members; m++)
                if (st.members[m].id == 4 && st.members[m].role == RAFT_VOTER)
                    voter = 1;
            if (!voter)
                FAIL("node 4 is not a voter after promotion");
        }
        if (!converged(W.last_index) || !has_device(&W.nodes[3], "dev-0000"))
            return;
        W.step = S_REMOVE;
        return;
    case S_REMOVE:
        if (!find_leader())
            return;
        /* A follower among the first three. */
        for (unsigned i = 0; i < 3; i++)
            if (i != W.leader) {
                W.removed = i + 1;
                break;
            }
        W.change_done = 0;
        if (wnode_remove(W.nodes[W.leader].n, W.nodes[W.removed - 1].id,
                         change_cb, NULL) != 0)
            FAIL("remove refused");
        W.step = S_WAIT_REMOVE;
        return;
    case S_WAIT_REMOVE:
        if (!W.change_done)
            return;
        if (W.change_status != 0)
            FAIL("remove status %d", W.change_status);
        status_of(&W.nodes[W.leader], &st);
        if (st.n_members != 3)
            FAIL("%u members after remove", st.n_members);
        node_stop(&W.nodes[W.removed - 1]);
        W.step = S_STOP_ONE;
        return;
    case S_STOP_ONE:
        if (!find_leader())
            return;
        /* Stop a follower that is still a member: the other two keep a
         * quorum of the three voters. */
        for (unsigned i = 0; i < 4; i++)
            if (i != W.leader && i != W.removed - 1 && W.nodes[i].running) {
                W.stopped = i + 1;
                break;
            }
        status_of(&W.nodes[W.stopped - 1], &st);
        W.restores_before = 0;
        node_stop(&W.nodes[W.stopped - 1]);
        W.step = S_WAIT_STOPPED;
        return;
    case S_WAIT_STOPPED:
        if (W.nodes[W.stopped - 1].n != NULL)
            return;
        W.n_cb = W.n_ok = W.n_bad = 0;
        W.step = S_WRITE_MORE;
        return;
    case S_WRITE_MORE:
        if (!find_leader())
            return;
        status_of(&W.nodes[W.leader], &st);
        W.more_commits_before = st.lmdb_commits;
        if (propose_enrolls(&W.nodes[W.leader], N_SNAP) != 0)
            FAIL("proposing the snapshot batch failed");
        W.step = S_WAIT_MORE;
        return;
    case S_WAIT_MORE:
        if (W.n_cb < N_SNAP)
            return;
        if (W.n_ok != N_SNAP)
            FAIL("%u of %u proposals failed", W.n_bad, N_SNAP);
        status_of(&W.nodes[W.leader], &st);
        if (W.more_commits_after == 0)
            W.more_commits_after = st.lmdb_commits;
        W.last_index = st.fsm_applied_index;
        if (st.snapshot_index == 0 || st.snapshots == 0)
            return; /* the snapshot is taken after the commit */
        W.step = S_RESTART;
        return;
    case S_RESTART:
        if (node_start(&W.nodes[W.stopped - 1], 1) != 0)
            FAIL("restart of node %u failed", W.stopped);
        W.step = S_WAIT_CATCHUP;
        return;
    case S_WAIT_CATCHUP: {
        char id[32];
        if (!find_leader() || !converged(W.last_index))
            return;
        snprintf(id, sizeof id, "dev-%04u", W.seq - 1);
        if (!has_device(&W.nodes[W.stopped - 1], id))
            FAIL("restarted node lacks %s", id);
        status_of(&W.nodes[W.stopped - 1], &st);
        if (st.restores - st.restores_skipped < 1)
            FAIL("restarted node caught up without a snapshot install "
                 "(restores %llu, skipped %llu)",
                 (unsigned long long)st.restores,
                 (unsigned long long)st.restores_skipped);
        W.step = S_CANCEL;
        return;
    }
    case S_CANCEL: {
        /* Queued proposals get WERR_CANCELLED when the node closes before
         * the group-commit pass hands them to raft. */
        L = &W.nodes[W.leader];
        for (int i = 0; i < 3; i++) {
            Warden__V1__Command c;
            Warden__V1__EnrollDeviceRequest r;
            char id[32];
            struct werr e = {0};
            make_enroll(&c, &r, id, sizeof id);
            if (wnode_propose(L->n, &c, cancel_cb, NULL, &e) != 0)
                FAIL("propose before close: %s", e.msg);
        }
        dump();
        begin_close();
        return;
    }
    default:
        return;
    }
}

static void deadline_cb(uv_timer_t *t)
{
    (void)t;
    snprintf(W.why, sizeof W.why, "deadline %d ms hit in step %d",
             TEST_DEADLINE_MS, (int)W.step);
    W.failed = 1;
    begin_close();
}

TEST(three_nodes_then_four)
{
    static const char *const names[] = {"n1", "n2", "n3", "n4"};
    static const char *const uris[] = {
        "warden://role/peer/n1", "warden://role/peer/n2",
        "warden://role/peer/n3", "warden://role/peer/n4"};
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    size_t publen = sizeof W.ed_pub;

    memset(&W, 0, sizeof W);
    /* libuv writes with write(2): a peer that closed must not kill us
     * (wardend ignores SIGPIPE the same way). */
    signal(SIGPIPE, SIG_IGN);
    CHECK(k != NULL);
    CHECK(EVP_PKEY_get_raw_public_key(k, W.ed_pub, &publen) == 1);
    EVP_PKEY_free(k);
    memset(W.digest, 0xa5, sizeof W.digest);
    snprintf(W.base, sizeof W.base, "/tmp/warden-node-XXXXXX");
    CHECK(mkdtemp(W.base) != NULL);
    CHECK_EQ_INT(ctu_make_pki(W.base, "ca", names, uris, 4), 0);
    CHECK_EQ_INT(uv_loop_init(&W.loop), 0);
    uv_timer_init(&W.loop, &W.deadline);
    uv_timer_init(&W.loop, &W.poll);
    uv_check_init(&W.loop, &W.check);
    for (unsigned i = 0; i < N_MAX; i++) {
        struct tnode *t = &W.nodes[i];
        t->w = &W;
        t->id = i + 1;
        t->port_peer = ctu_free_port();
        t->port_client = ctu_free_port();
        CHECK(t->port_peer > 0 && t->port_client > 0);
        snprintf(t->peer, sizeof t->peer, "127.0.0.1:%d", t->port_peer);
        snprintf(t->client, sizeof t->client, "127.0.0.1:%d", t->port_client);
        snprintf(t->dir, sizeof t->dir, "%s/node%u", W.base, t->id);
    }
    W.n_nodes = 3;
    for (unsigned i = 0; i < 3; i++)
        CHECK_EQ_INT(node_start(&W.nodes[i], 1), 0);

    uv_timer_start(&W.deadline, deadline_cb, TEST_DEADLINE_MS, 0);
    uv_timer_start(&W.poll, poll_cb, POLL_MS, POLL_MS);
    uv_run(&W.loop, UV_RUN_DEFAULT);

    if (W.failed)
        fprintf(stderr, "FAILED: %s (base %s)\n", W.why, W.base);
    CHECK_EQ_INT(W.step, S_DONE);
    CHECK_EQ_INT(uv_loop_close(&W.loop), 0); /* no leaked handles */
    CHECK(!W.failed);
    ctu_rm_rf(W.base);

    /* Group commit: N_FIRST proposals from one loop iteration went to raft
     * in fewer passes than proposals (here: one). */
    fprintf(stderr, "group commit: %llu proposals in %llu batches; barriers: "
                    "%llu for %u readers\n",
            (unsigned long long)(W.proposals_after - W.proposals_before),
            (unsigned long long)(W.flushes_after - W.flushes_before),
            (unsigned long long)(W.barriers_after - W.barriers_before),
            W.barrier_cb);
    CHECK(W.proposals_after - W.proposals_before >= N_FIRST);
    CHECK(W.flushes_after - W.flushes_before < N_FIRST);
    /* 5 readers shared one barrier, the 3 that came while it was in flight
     * shared the next. */
    CHECK_EQ_INT(W.barriers_after - W.barriers_before, 2);
    CHECK_EQ_INT(W.barrier_cb, 8);
    CHECK_EQ_INT(W.cancel_cb, 3);
    CHECK_EQ_INT(W.cancel_status_ok, 3);

    /* Batched apply: the N_FIRST entries (plus any Tick) cost the leader far
     * fewer durable LMDB commits than entries, and so did the N_SNAP burst
     * (which also includes the snapshot's own commit-before-copy). No
     * callback ran before its entry was durable and readable. */
    fprintf(stderr, "batched apply: %u entries in %llu LMDB commits (%llu "
                    "batches); %u entries in %llu commits; %u early "
                    "callbacks\n", N_FIRST,
            (unsigned long long)(W.commits_after - W.commits_before),
            (unsigned long long)(W.batches_after - W.batches_before), N_SNAP,
            (unsigned long long)(W.more_commits_after - W.more_commits_before),
            W.undurable);
    CHECK(W.commits_after > W.commits_before);
    CHECK(W.commits_after - W.commits_before <= N_FIRST / 2);
    CHECK(W.batches_after - W.batches_before <= N_FIRST / 2);
    CHECK(W.more_commits_after - W.more_commits_before <= N_SNAP / 4);
    CHECK_EQ_INT(W.undurable, 0);
    fprintf(stderr, "held batch: applied %llu committed %llu, %u proposals "
                    "and %u readers answered while held\n",
            (unsigned long long)W.held_applied,
            (unsigned long long)W.held_committed, W.held_cb, W.held_readers);
    CHECK(W.held_applied >= W.held_committed + N_FIRST);
    CHECK_EQ_INT(W.held_cb, N_FIRST);
    CHECK_EQ_INT(W.held_readers, 0);
}

/* The snapshot rule, pure (wnode_snapshot_threshold). */
TEST(snapshot_rule)
{
    const uint64_t MiB = (uint64_t)1 << 20;
    /* small state: the entry threshold alone */
    CHECK_EQ_INT(wnode_snapshot_threshold(0, 10 * MiB, 32), 32);
    CHECK_EQ_INT(wnode_snapshot_threshold(0, WNODE_SNAPSHOT_SIZE_FLOOR - 1, 32), 32);
    /* large state: wait for half its size in log, then the entries */
    CHECK_EQ_INT(wnode_snapshot_threshold(0, 400 * MiB, 32), WNODE_SNAPSHOT_NEVER);
    CHECK_EQ_INT(wnode_snapshot_threshold(199 * MiB, 400 * MiB, 32), WNODE_SNAPSHOT_NEVER);
    CHECK_EQ_INT(wnode_snapshot_threshold(200 * MiB, 400 * MiB, 32), 32);
    /* past the log cap: now, whatever the size or the entries */
    CHECK_EQ_INT(wnode_snapshot_threshold(WNODE_SNAPSHOT_LOG_BYTES_MAX, 4096 * MiB,
                                          65536), 1);
    CHECK_EQ_INT(wnode_snapshot_threshold(WNODE_SNAPSHOT_LOG_BYTES_MAX - 1, 4096 * MiB,
                                          65536), WNODE_SNAPSHOT_NEVER);
    CHECK_EQ_INT(wnode_snapshot_threshold(WNODE_SNAPSHOT_LOG_BYTES_MAX, 0, 65536), 1);
}

int main(void)
{
    RUN(snapshot_rule);
    RUN(three_nodes_then_four);
    return unit_done();
}
