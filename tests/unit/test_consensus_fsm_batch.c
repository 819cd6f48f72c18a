/* test_consensus_fsm_batch.c - batched apply in the state machine
 * (wfsm_batch_*, consensus/fsm.c) over real LMDB in mkdtemp directories,
 * without raft, processes or sockets:
 *   - N entries in one batch are one durable LMDB commit (store_commits),
 *     invisible to read txns until it;
 *   - a failing op inside a batch drops only its own writes, and its
 *     failure and index are recorded;
 *   - an idempotency key repeated inside one batch replays the first
 *     result;
 *   - the same entries applied batched (several batch sizes) and unbatched
 *     end in the same state: per-entry results, audit head, devices,
 *     idempotency records, applied index and cluster time;
 *   - a batch dropped by a crash (close without commit, reopen) or by
 *     wfsm_batch_abort is re-applied exactly once;
 *   - a store failure (full map) in the middle of a batch, then a restart
 *     with a larger map, ends in the same state as well;
 *   - snapshot and restore refuse to run over an open batch. */
#include "consensus/fsm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "domain/audit.h"
#include "domain/inventory.h"
#include "storage/store.h"
#include "fsm_testutil.h"
#include "unit.h"

static char tmp_root[256];
static unsigned dir_seq;
static uint8_t ed_pub[32];
static uint8_t digest[32];

/* Entries in the scripted log (see entry_make). */
#define N_ENTRIES 60
/* The op of this entry fails after its writes (wfsm_test_fail_op_at). */
#define FAIL_AT 7
/* Largest state dump we compare. */
#define DUMP_MAX (256u << 10)

static void new_dir(char *out, size_t cap)
{
    snprintf(out, cap, "%s/b%u", tmp_root, dir_seq++);
}

static struct wfsm *fsm_open_at(const char *dir, size_t map_size)
{
    struct werr e = {0};
    struct wfsm *f = NULL;
    if (wfsm_open(&f, dir, map_size, &e) != 0) {
        fprintf(stderr, "wfsm_open %s: %s\n", dir, e.msg);
        return NULL;
    }
    wfsm_test_fail_op_at(f, FAIL_AT); /* not persisted: set at every open */
    return f;
}

/* ---- the scripted log ----------------------------------------------------*/

struct entry {
    uint8_t *b;
    size_t n;
};

static struct entry LOG[N_ENTRIES + 1]; /* 1-based, like raft indexes */

static int enroll_bytes(const char *who, const char *key, const char *id,
                        uint64_t time_ms, struct entry *out)
{
    Warden__V1__Command c = WARDEN__V1__COMMAND__INIT;
    Warden__V1__EnrollDeviceRequest r = WARDEN__V1__ENROLL_DEVICE_REQUEST__INIT;
    struct werr e = {0};
    c.cluster_time_ms = time_ms;
    c.principal_name = (char *)who;
    c.principal_role = WROLE_ADMIN;
    c.idempotency_key = (char *)key;
    c.op_case = WARDEN__V1__COMMAND__OP_ENROLL_DEVICE;
    c.enroll_device = &r;
    r.device_id = (char *)id;
    r.key_algorithm = WARDEN__V1__KEY_ALGORITHM__KEY_ALGORITHM_ED25519;
    r.public_key.data = ed_pub;
    r.public_key.len = sizeof ed_pub;
    r.attestation_digest.data = digest;
    r.attestation_digest.len = sizeof digest;
    r.hardware_model = (char *)"rpi-cm4";
    r.firmware_version = (char *)"1.0.0";
    r.gateway_id = (char *)"gw-a";
    if (wfsm_cmd_encode(&c, &out->b, &out->n, &e) != 0) {
        fprintf(stderr, "encode: %s\n", e.msg);
        return -1;
    }
    return 0;
}

static int tick_bytes(uint64_t time_ms, struct entry *out)
{
    Warden__V1__Command c = WARDEN__V1__COMMAND__INIT;
    Warden__V1__Tick t = WARDEN__V1__TICK__INIT;
    struct werr e = {0};
    c.cluster_time_ms = time_ms;
    c.op_case = WARDEN__V1__COMMAND__OP_TICK;
    c.tick = &t;
    c.principal_name = (char *)"warden-node";
    return wfsm_cmd_encode(&c, &out->b, &out->n, &e) == 0 ? 0 : -1;
}

/* A log that exercises every path of apply: success, ALREADY_EXISTS,
 * idempotency replays (also within a few entries of each other, so within
 * one batch), a tick, a malformed entry, an injected failure after the
 * op's writes (FAIL_AT), a time that goes backwards, and plain enrolls. */
static int entry_make(unsigned i, struct entry *out)
{
    char id[32], key[32];
    uint64_t t = 1000u + 10u * i;
    switch (i) {
    case 1: return enroll_bytes("admin", "k1", "dev-a", t, out);
    case 2: return enroll_bytes("admin", "", "dev-b", t, out);
    case 3: return enroll_bytes("admin", "", "dev-a", t, out); /* EXISTS */
    case 4: return enroll_bytes("admin", "k1", "dev-c", t, out); /* replay */
    case 5: return tick_bytes(t + 5000, out);
    case 6: /* malformed: a length prefix that does not fit */
        out->n = 8;
        out->b = calloc(1, 8);
        if (out->b == NULL) {
            return -1;
        }
        out->b[3] = 200;
        return 0;
    case FAIL_AT: return enroll_bytes("admin", "k7", "dev-fail", t, out);
    case 8: return enroll_bytes("admin", "k7", "dev-fail", t, out); /* again */
    case 9: return enroll_bytes("ops", "k1", "dev-d", 1, out); /* time back */
    case 10: return enroll_bytes("ops", "k1", "dev-e", t, out); /* replay */
    default:
        snprintf(id, sizeof id, "dev-%03u", i);
        snprintf(key, sizeof key, "key-%u", i % 13 == 0 ? i - 1 : i);
        return enroll_bytes("admin", key, id, t, out);
    }
}

/* ---- observation ---------------------------------------------------------*/

struct rec {
    int code;
    int replayed;
    int skipped;
    uint8_t resp[2048];
    size_t resp_len;
};

static struct rec REF[N_ENTRIES + 1]; /* the unbatched run's results */

static void rec_of(const struct wfsm_result *r, struct rec *out)
{
    memset(out, 0, sizeof *out);
    out->code = r->code;
    out->replayed = r->replayed;
    out->skipped = r->skipped;
    if (r->resp != NULL && r->resp_len <= sizeof out->resp) {
        memcpy(out->resp, r->resp, r->resp_len);
        out->resp_len = r->resp_len;
    }
}

static int rec_eq(const struct rec *a, const struct rec *b)
{
    return a->code == b->code && a->replayed == b->replayed &&
           a->skipped == b->skipped && a->resp_len == b->resp_len &&
           memcmp(a->resp, b->resp, a->resp_len) == 0;
}

static int apply_one(struct wfsm *f, unsigned i, struct rec *out)
{
    struct werr e = {0};
    struct wfsm_result res;
    int rc = wfsm_apply(f, i, LOG[i].b, LOG[i].n, &res, &e);
    if (rc) {
        return rc;
    }
    if (out != NULL) {
        rec_of(&res, out);
    }
    wfsm_result_free(&res);
    return 0;
}

static uint64_t db_count(struct wfsm *f, const char *db)
{
    struct werr e = {0};
    unsigned dbi;
    struct store_txn *t;
    uint64_t n = (uint64_t)-1;
    if (store_dbi_find(wfsm_store(f), db, &dbi) != 0) {
        return n;
    }
    if (store_txn_begin(wfsm_store(f), 0, &t, &e) == 0) {
        if (store_count(t, dbi, &n, &e) != 0) {
            n = (uint64_t)-1;
        }
        store_txn_abort(t);
    }
    return n;
}

static int has_device(struct wfsm *f, const char *id)
{
    struct werr e = {0};
    struct store_txn *t;
    Warden__V1__Device *d = NULL;
    if (store_txn_begin(wfsm_store(f), 0, &t, &e) != 0) {
        return -1;
    }
    int rc = inv_get(wfsm_inv(f), t, id, &d, &e);
    store_txn_abort(t);
    if (rc == 0) {
        inv_device_free(d);
        return 1;
    }
    return rc == WERR_NOTFOUND ? 0 : -1;
}

/* Everything observable of the state, as committed: the audit head, every
 * device packed in id order, the sizes of the ledger and the idempotency
 * tables, the applied index and cluster time. Two fsms that applied the
 * same log must dump the same bytes. */
static int dump_state(struct wfsm *f, uint8_t *out, size_t cap, size_t *len)
{
    struct werr e = {0};
    struct store_txn *t;
    size_t n = 0;
    uint64_t seq = 0;
    uint8_t hash[AUDIT_HASH_LEN];
    if (store_txn_begin(wfsm_store(f), 0, &t, &e) != 0) {
        return -1;
    }
    if (audit_head(wfsm_audit(f), t, &seq, hash, &e) != 0) {
        store_txn_abort(t);
        return -1;
    }
    Warden__V1__ListDevicesRequest r = WARDEN__V1__LIST_DEVICES_REQUEST__INIT;
    r.page_size = INV_PAGE_SIZE_MAX;
    struct inv_page p = {0};
    int rc = inv_list(wfsm_inv(f), t, &r, &p, &e);
    store_txn_abort(t);
    if (rc || p.next_token[0] != '\0') {
        inv_page_free(&p);
        return -1;
    }
    uint64_t meta[6] = {seq,
                        db_count(f, "audit.log"),
                        db_count(f, "fsm.idem"),
                        db_count(f, "fsm.idem_by_index"),
                        wfsm_committed_index(f),
                        wfsm_cluster_time(f)};
    if (sizeof meta + sizeof hash > cap) {
        inv_page_free(&p);
        return -1;
    }
    memcpy(out, meta, sizeof meta);
    memcpy(out + sizeof meta, hash, sizeof hash);
    n = sizeof meta + sizeof hash;
    for (size_t i = 0; i < p.n; i++) {
        size_t sz = warden__v1__device__get_packed_size(p.devices[i]);
        if (n + sz > cap) {
            inv_page_free(&p);
            return -1;
        }
        n += warden__v1__device__pack(p.devices[i], out + n);
    }
    inv_page_free(&p);
    *len = n;
    return 0;
}

static uint8_t *REF_DUMP;
static size_t REF_DUMP_LEN;

/* Compare f's state with the unbatched reference; prints what differs. */
static int same_as_ref(struct wfsm *f, const char *what)
{
    uint8_t *d = malloc(DUMP_MAX);
    size_t n = 0;
    int ok = d != NULL && dump_state(f, d, DUMP_MAX, &n) == 0 &&
             n == REF_DUMP_LEN && memcmp(d, REF_DUMP, n) == 0;
    if (!ok) {
        fprintf(stderr, "%s: state differs from the unbatched run (%zu vs %zu "
                "bytes)\n", what, n, REF_DUMP_LEN);
    }
    free(d);
    return ok;
}

/* Apply LOG[from..to] in batches of `size` (0: unbatched), recording
 * results into recs (may be NULL). Returns 0 or the first error. */
static int apply_range(struct wfsm *f, unsigned from, unsigned to,
                       unsigned size, struct rec *recs)
{
    struct werr e = {0};
    for (unsigned i = from; i <= to; i++) {
        if (size > 0 && !wfsm_batch_active(f) &&
            wfsm_batch_begin(f, &e) != 0) {
            fprintf(stderr, "batch_begin: %s\n", e.msg);
            return -1;
        }
        int rc = apply_one(f, i, recs ? &recs[i] : NULL);
        if (rc) {
            return rc;
        }
        if (size > 0 && (wfsm_batch_entries(f) >= size || i == to) &&
            wfsm_batch_commit(f, &e) != 0) {
            fprintf(stderr, "batch_commit: %s\n", e.msg);
            return -1;
        }
    }
    return 0;
}

/* ---- tests ---------------------------------------------------------------*/

/* The reference: the scripted log applied entry by entry, each its own
 * durable commit (the behaviour before batching, and still the behaviour
 * without a batch). */
TEST(reference_unbatched_run)
{
    char dir[300];
    new_dir(dir, sizeof dir);
    struct wfsm *f = fsm_open_at(dir, 0);
    CHECK(f != NULL);
    uint64_t c0 = store_commits(wfsm_store(f));
    CHECK_EQ_INT(apply_range(f, 1, N_ENTRIES, 0, REF), 0);
    /* One durable commit per entry (a failed op's txn is aborted and its
     * failure committed in a second): the cost batching removes. */
    CHECK_EQ_INT(store_commits(wfsm_store(f)) - c0, N_ENTRIES);
    CHECK_EQ_INT(wfsm_applied_index(f), N_ENTRIES);
    CHECK_EQ_INT(wfsm_committed_index(f), N_ENTRIES);
    /* The script does what it says. */
    CHECK_EQ_INT(REF[1].code, 0);
    CHECK_EQ_INT(REF[3].code, WERR_EXISTS);
    CHECK_EQ_INT(REF[4].replayed, 1);
    CHECK_EQ_INT(REF[6].code, WERR_INVALID);
    CHECK_EQ_INT(REF[FAIL_AT].code, WERR_PRECOND);
    CHECK_EQ_INT(REF[8].replayed, 1);
    CHECK_EQ_INT(REF[8].code, WERR_PRECOND);
    CHECK_EQ_INT(REF[10].replayed, 1);
    CHECK_EQ_INT(REF[26].replayed, 1); /* key-25 again */
    CHECK_EQ_INT(has_device(f, "dev-fail"), 0);
    CHECK_EQ_INT(has_device(f, "dev-c"), 0);
    REF_DUMP = malloc(DUMP_MAX);
    CHECK(REF_DUMP != NULL);
    CHECK_EQ_INT(dump_state(f, REF_DUMP, DUMP_MAX, &REF_DUMP_LEN), 0);
    wfsm_close(f);
}

TEST(one_batch_is_one_commit_and_invisible_until_it)
{
    char dir[300];
    struct werr e = {0};
    new_dir(dir, sizeof dir);
    struct wfsm *f = fsm_open_at(dir, 0);
    CHECK(f != NULL);
    CHECK_EQ_INT(wfsm_batch_active(f), 0);
    CHECK_EQ_INT(wfsm_batch_commit(f, &e), 0); /* none open: nothing */
    uint64_t c0 = store_commits(wfsm_store(f));
    CHECK_EQ_INT(wfsm_batch_begin(f, &e), 0);
    CHECK_EQ_INT(wfsm_batch_begin(f, &e), WERR_PRECOND);
    CHECK_EQ_INT(wfsm_batch_active(f), 1);
    for (unsigned i = 1; i <= N_ENTRIES; i++) {
        struct rec r;
        CHECK_EQ_INT(apply_one(f, i, &r), 0);
        if (!rec_eq(&r, &REF[i])) {
            fprintf(stderr, "entry %u: code %d/%d replayed %d/%d\n", i,
                    r.code, REF[i].code, r.replayed, REF[i].replayed);
        }
        CHECK(rec_eq(&r, &REF[i]));
    }
    CHECK_EQ_INT(wfsm_batch_entries(f), N_ENTRIES);
    /* Applied in memory, not committed: the skip rule already knows... */
    CHECK_EQ_INT(wfsm_applied_index(f), N_ENTRIES);
    CHECK_EQ_INT(wfsm_committed_index(f), 0);
    struct wfsm_result res;
    CHECK_EQ_INT(wfsm_apply(f, 3, LOG[3].b, LOG[3].n, &res, &e), 0);
    CHECK_EQ_INT(res.skipped, 1);
    /* ...but a read txn sees nothing, and no durable commit happened. */
    CHECK_EQ_INT(has_device(f, "dev-a"), 0);
    CHECK_EQ_INT(store_commits(wfsm_store(f)), c0);
    CHECK_EQ_INT(wfsm_batch_commit(f, &e), 0);
    CHECK_EQ_INT(store_commits(wfsm_store(f)) - c0, 1);
    CHECK_EQ_INT(wfsm_batch_active(f), 0);
    CHECK_EQ_INT(wfsm_committed_index(f), N_ENTRIES);
    CHECK_EQ_INT(has_device(f, "dev-a"), 1);
    CHECK(same_as_ref(f, "one batch"));
    wfsm_close(f);
}

TEST(failing_op_in_a_batch_drops_only_itself)
{
    char dir[300];
    struct werr e = {0};
    new_dir(dir, sizeof dir);
    struct wfsm *f = fsm_open_at(dir, 0);
    CHECK(f != NULL);
    CHECK_EQ_INT(wfsm_batch_begin(f, &e), 0);
    struct rec r;
    for (unsigned i = 1; i < FAIL_AT; i++) {
        CHECK_EQ_INT(apply_one(f, i, NULL), 0);
    }
    uint64_t audit_before = db_count(f, "audit.log");
    CHECK_EQ_INT(apply_one(f, FAIL_AT, &r), 0);
    /* The op wrote dev-fail before the injected failure: gone; its
     * failure is the result and is what the index records. */
    CHECK_EQ_INT(r.code, WERR_PRECOND);
    CHECK_EQ_INT(wfsm_applied_index(f), FAIL_AT);
    CHECK_EQ_INT(apply_one(f, FAIL_AT + 1, &r), 0);
    CHECK_EQ_INT(r.replayed, 1); /* the failure was recorded under k7 */
    CHECK_EQ_INT(wfsm_batch_commit(f, &e), 0);
    CHECK_EQ_INT(has_device(f, "dev-fail"), 0);
    /* Earlier entries of the same batch are intact. */
    CHECK_EQ_INT(has_device(f, "dev-a"), 1);
    CHECK_EQ_INT(has_device(f, "dev-b"), 1);
    /* The rejection is audited (committed with the batch; the txn count
     * is not visible before the commit, so compare after). */
    CHECK(db_count(f, "audit.log") > audit_before);
    CHECK_EQ_INT(wfsm_committed_index(f), FAIL_AT + 1);
    wfsm_close(f);
}

TEST(idempotency_replays_within_one_batch)
{
    char dir[300];
    struct werr e = {0};
    new_dir(dir, sizeof dir);
    struct wfsm *f = fsm_open_at(dir, 0);
    CHECK(f != NULL);
    CHECK_EQ_INT(wfsm_batch_begin(f, &e), 0);
    struct rec r1, r4;
    CHECK_EQ_INT(apply_one(f, 1, &r1), 0);
    CHECK_EQ_INT(apply_one(f, 2, NULL), 0);
    CHECK_EQ_INT(apply_one(f, 3, NULL), 0);
    CHECK_EQ_INT(apply_one(f, 4, &r4), 0);
    /* Entry 4 reuses entry 1's key in the same batch: the first result
     * comes back and dev-c is never enrolled. */
    CHECK_EQ_INT(r1.code, 0);
    CHECK_EQ_INT(r1.replayed, 0);
    CHECK_EQ_INT(r4.replayed, 1);
    CHECK_EQ_INT(r4.code, 0);
    CHECK(r1.resp_len > 0);
    CHECK_EQ_INT(r4.resp_len, r1.resp_len);
    CHECK(memcmp(r4.resp, r1.resp, r1.resp_len) == 0);
    CHECK_EQ_INT(wfsm_batch_commit(f, &e), 0);
    CHECK_EQ_INT(has_device(f, "dev-c"), 0);
    CHECK_EQ_INT(has_device(f, "dev-a"), 1);
    wfsm_close(f);
}

/* The same log in batches of several sizes, each ending in the reference
 * state with the reference results, in ceil(N/size) durable commits. */
TEST(batched_equals_unbatched)
{
    static const unsigned sizes[] = {1, 2, 3, 7, 16, N_ENTRIES};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        char dir[300];
        static struct rec recs[N_ENTRIES + 1];
        new_dir(dir, sizeof dir);
        struct wfsm *f = fsm_open_at(dir, 0);
        CHECK(f != NULL);
        uint64_t c0 = store_commits(wfsm_store(f));
        CHECK_EQ_INT(apply_range(f, 1, N_ENTRIES, sizes[k], recs), 0);
        CHECK_EQ_INT(store_commits(wfsm_store(f)) - c0,
                     (N_ENTRIES + sizes[k] - 1) / sizes[k]);
        for (unsigned i = 1; i <= N_ENTRIES; i++) {
            if (!rec_eq(&recs[i], &REF[i])) {
                fprintf(stderr, "batch size %u, entry %u differs\n",
                        sizes[k], i);
            }
            CHECK(rec_eq(&recs[i], &REF[i]));
        }
        CHECK(same_as_ref(f, "batched"));
        wfsm_close(f);
    }
}

/* A crash between apply and the batch commit: the process dies (here:
 * close without commit), LMDB holds the previous commit, raft re-applies
 * every entry after the last snapshot on restart, and the skip rule plus
 * the batch's atomicity make it exactly once. */
TEST(crash_before_commit_reapplies_exactly_once)
{
    char dir[300];
    struct werr e = {0};
    new_dir(dir, sizeof dir);
    struct wfsm *f = fsm_open_at(dir, 0);
    CHECK(f != NULL);
    CHECK_EQ_INT(apply_range(f, 1, 20, 8, NULL), 0);
    uint64_t ct20 = wfsm_cluster_time(f);
    CHECK_EQ_INT(wfsm_committed_index(f), 20);
    CHECK_EQ_INT(wfsm_batch_begin(f, &e), 0);
    for (unsigned i = 21; i <= 40; i++) {
        CHECK_EQ_INT(apply_one(f, i, NULL), 0);
    }
    CHECK_EQ_INT(wfsm_applied_index(f), 40);
    wfsm_close(f); /* the crash: the open batch is dropped */

    f = fsm_open_at(dir, 0);
    CHECK(f != NULL);
    CHECK_EQ_INT(wfsm_applied_index(f), 20);
    CHECK_EQ_INT(wfsm_committed_index(f), 20);
    CHECK_EQ_INT(wfsm_cluster_time(f), ct20);
    CHECK_EQ_INT(wfsm_committed_cluster_time(f), ct20);
    CHECK_EQ_INT(has_device(f, "dev-021"), 0);
    /* Raft replays from its last snapshot (here: from 1). */
    static struct rec recs[N_ENTRIES + 1];
    CHECK_EQ_INT(apply_range(f, 1, N_ENTRIES, 16, recs), 0);
    for (unsigned i = 1; i <= 20; i++) {
        CHECK_EQ_INT(recs[i].skipped, 1);
    }
    for (unsigned i = 21; i <= N_ENTRIES; i++) {
        CHECK(rec_eq(&recs[i], &REF[i]));
    }
    CHECK(same_as_ref(f, "after crash and replay"));

    /* The same without a restart: wfsm_batch_abort rolls the in-memory
     * index and time back with the txn. */
    char dir2[300];
    new_dir(dir2, sizeof dir2);
    struct wfsm *g = fsm_open_at(dir2, 0);
    CHECK(g != NULL);
    CHECK_EQ_INT(apply_range(g, 1, 30, 30, NULL), 0);
    uint64_t ct30 = wfsm_cluster_time(g);
    CHECK_EQ_INT(wfsm_batch_begin(g, &e), 0);
    CHECK_EQ_INT(apply_range(g, 31, 45, 0, NULL), 0);
    CHECK_EQ_INT(wfsm_applied_index(g), 45);
    CHECK_EQ_INT(wfsm_committed_cluster_time(g), ct30);
    wfsm_batch_abort(g);
    CHECK_EQ_INT(wfsm_batch_active(g), 0);
    CHECK_EQ_INT(wfsm_applied_index(g), 30);
    CHECK_EQ_INT(wfsm_cluster_time(g), ct30);
    CHECK_EQ_INT(apply_range(g, 31, N_ENTRIES, 4, NULL), 0);
    CHECK(same_as_ref(g, "after abort and re-apply"));
    wfsm_close(g);
    wfsm_close(f);
}

/* A store failure in the middle of a batch (the map fills up) is a node
 * failure, not a result: wfsm_apply fails, the batch holds only whole
 * entries before it, and whether its commit then succeeds or fails too,
 * a restart with a larger map re-applies from the last commit to the
 * reference state. */
TEST(full_map_mid_batch_then_restart)
{
    char dir[300];
    struct werr e = {0};
    new_dir(dir, sizeof dir);
    /* Small enough that the scripted log cannot fit in it. */
    struct wfsm *f = fsm_open_at(dir, (size_t)128 << 10);
    CHECK(f != NULL);
    int rc = 0;
    unsigned i;
    for (i = 1; i <= N_ENTRIES && rc == 0; i++) {
        if (!wfsm_batch_active(f)) {
            CHECK_EQ_INT(wfsm_batch_begin(f, &e), 0);
        }
        uint64_t before = wfsm_applied_index(f);
        rc = apply_one(f, i, NULL);
        if (rc != 0) {
            /* Nothing of the failed entry is applied. */
            CHECK_EQ_INT(wfsm_applied_index(f), before);
            break;
        }
        if (wfsm_batch_entries(f) >= 5) {
            rc = wfsm_batch_commit(f, &e);
        }
    }
    CHECK(rc != 0);
    CHECK(rc == WERR_FULL || rc == WERR_ABORTED);
    uint64_t committed = wfsm_committed_index(f);
    int crc = wfsm_batch_commit(f, &e);
    CHECK(crc == 0 || crc == WERR_FULL);
    if (crc == 0) {
        CHECK(wfsm_committed_index(f) >= committed);
    }
    committed = wfsm_committed_index(f);
    fprintf(stderr, "  map full at entry %u (%s); last batch commit %d; "
            "committed through %llu\n", i, werr_str(rc), crc,
            (unsigned long long)committed);
    CHECK_EQ_INT(wfsm_applied_index(f), committed);
    CHECK(committed > 0 && committed < N_ENTRIES);
    wfsm_close(f);

    f = fsm_open_at(dir, (size_t)64 << 20);
    CHECK(f != NULL);
    CHECK_EQ_INT(wfsm_applied_index(f), committed);
    CHECK_EQ_INT(apply_range(f, 1, N_ENTRIES, 9, NULL), 0);
    CHECK(same_as_ref(f, "after a full map and a restart"));
    wfsm_close(f);
}

TEST(snapshot_and_restore_refuse_an_open_batch)
{
    char dir[300];
    struct werr e = {0};
    new_dir(dir, sizeof dir);
    struct wfsm *f = fsm_open_at(dir, 0);
    CHECK(f != NULL);
    CHECK_EQ_INT(apply_range(f, 1, 5, 5, NULL), 0);
    uint8_t *snap = NULL;
    size_t len = 0;
    CHECK_EQ_INT(wfsm_snapshot_copy(f, &snap, &len, &e), 0);
    CHECK_EQ_INT(wfsm_batch_begin(f, &e), 0);
    CHECK_EQ_INT(apply_one(f, 6, NULL), 0);
    uint8_t *snap2 = NULL;
    size_t len2 = 0;
    CHECK_EQ_INT(wfsm_snapshot_copy(f, &snap2, &len2, &e), WERR_PRECOND);
    int skipped = 0;
    CHECK_EQ_INT(wfsm_restore(f, snap, len, &skipped, &e), WERR_PRECOND);
    CHECK_EQ_INT(wfsm_batch_commit(f, &e), 0);
    CHECK_EQ_INT(wfsm_snapshot_copy(f, &snap2, &len2, &e), 0);
    CHECK_EQ_INT(wfsm_restore(f, snap, len, &skipped, &e), 0);
    CHECK_EQ_INT(skipped, 1); /* ours (6) is newer than the snapshot (5) */
    free(snap);
    free(snap2);
    wfsm_close(f);
}

/* The zero-copy image (wfsm_snapshot): it keeps showing the state at the
 * moment it was pinned while batches keep committing, restore refuses to
 * run while it is pinned (restore closes the env under it), and restoring
 * its bytes elsewhere gives exactly that state. */
TEST(pinned_image_is_stable_and_blocks_restore)
{
    char dir[300], dir2[300];
    struct werr e = {0};
    struct store_image *img = NULL;
    const struct store_image_part *pt;
    unsigned np = 0;
    int skipped = -1;

    new_dir(dir, sizeof dir);
    new_dir(dir2, sizeof dir2);
    struct wfsm *f = fsm_open_at(dir, 0);
    struct wfsm *g = fsm_open_at(dir2, 0);
    CHECK(f != NULL && g != NULL);
    CHECK_EQ_INT(apply_range(f, 1, 20, 4, NULL), 0);
    CHECK_EQ_INT(wfsm_snapshot(f, &img, &e), 0);
    CHECK(img != NULL);
    CHECK_EQ_INT(apply_range(f, 21, N_ENTRIES, 7, NULL), 0);
    CHECK_EQ_INT(wfsm_applied_index(f), N_ENTRIES);

    uint8_t *other = NULL;
    size_t olen = 0;
    CHECK_EQ_INT(wfsm_snapshot_copy(f, &other, &olen, &e), 0);
    werr_clear(&e);
    CHECK_EQ_INT(wfsm_restore(f, other, olen, &skipped, &e), WERR_PRECOND);
    CHECK(strstr(e.msg, "pinned") != NULL);
    free(other);

    /* the pinned bytes, flattened after 40 more entries committed */
    size_t len = store_image_len(img), off = 0;
    uint8_t *buf = malloc(len);
    CHECK(buf != NULL);
    pt = store_image_parts(img, &np);
    for (unsigned i = 0; i < np; i++) {
        memcpy(buf + off, pt[i].base, pt[i].len);
        off += pt[i].len;
    }
    wfsm_snapshot_release(f, img);
    CHECK_EQ_INT(wfsm_restore(g, buf, len, &skipped, &e), 0);
    CHECK_EQ_INT(skipped, 0);
    CHECK_EQ_INT(wfsm_applied_index(g), 20);
    /* g continues from 21 and ends where f is */
    CHECK_EQ_INT(apply_range(g, 21, N_ENTRIES, 5, NULL), 0);
    CHECK(same_as_ref(g, "restored from a pinned image, then the rest"));
    /* released: restore runs again on f (and skips: f is newer) */
    CHECK_EQ_INT(wfsm_restore(f, buf, len, &skipped, &e), 0);
    CHECK_EQ_INT(skipped, 1);
    free(buf);
    wfsm_close(f);
    wfsm_close(g);
}

int main(void)
{
    if (ftu_setup(tmp_root, sizeof tmp_root, "/tmp/warden-test-fsmb-XXXXXX", ed_pub) != 0) {
        return 1;
    }
    for (size_t i = 0; i < sizeof digest; i++) {
        digest[i] = (uint8_t)i;
    }
    for (unsigned i = 1; i <= N_ENTRIES; i++) {
        if (entry_make(i, &LOG[i]) != 0) {
            fprintf(stderr, "building entry %u failed\n", i);
            return 1;
        }
    }
    RUN(reference_unbatched_run);
    if (REF_DUMP == NULL || REF_DUMP_LEN == 0) {
        fprintf(stderr, "no reference state: later tests cannot compare\n");
        return 1;
    }
    RUN(one_batch_is_one_commit_and_invisible_until_it);
    RUN(failing_op_in_a_batch_drops_only_itself);
    RUN(idempotency_replays_within_one_batch);
    RUN(batched_equals_unbatched);
    RUN(crash_before_commit_reapplies_exactly_once);
    RUN(full_map_mid_batch_then_restart);
    RUN(snapshot_and_restore_refuse_an_open_batch);
    RUN(pinned_image_is_stable_and_blocks_restore);
    for (unsigned i = 1; i <= N_ENTRIES; i++) {
        free(LOG[i].b);
    }
    free(REF_DUMP);
    int rc = unit_done();
    if (rc == 0) {
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_root);
        if (system(cmd) != 0) {
            fprintf(stderr, "warning: could not remove %s\n", tmp_root);
        }
    } else {
        fprintf(stderr, "test files kept in %s\n", tmp_root);
    }
    return rc;
}
