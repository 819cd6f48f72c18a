/* test_consensus_fsm.c - the replicated state machine (consensus/fsm.c)
 * over real LMDB in mkdtemp directories, driven entry by entry without
 * raft, processes or sockets: apply, skip on re-apply, reopen, idempotency
 * replay and expiry, cluster time, failed commands, malformed entries,
 * snapshot/restore and recovery of an interrupted restore. */
#include "consensus/fsm.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "domain/inventory.h"
#include "storage/store.h"
#include "fsm_testutil.h"
#include "unit.h"

static char tmp_root[256];
static unsigned dir_seq;
static uint8_t ed_pub[32];
static uint8_t digest[32];

static void new_dir(char *out, size_t cap)
{
    snprintf(out, cap, "%s/f%u", tmp_root, dir_seq++);
}

static struct wfsm *fsm_open_at(const char *dir)
{
    struct werr e = {0};
    struct wfsm *f = NULL;
    if (wfsm_open(&f, dir, 0, &e) != 0) {
        fprintf(stderr, "wfsm_open %s: %s\n", dir, e.msg);
        return NULL;
    }
    return f;
}

/* A command; fields not given are left empty. */
struct cmd {
    Warden__V1__Command c;
    Warden__V1__Tick tick;
    Warden__V1__EnrollDeviceRequest enr;
};

static void cmd_tick(struct cmd *m, uint64_t time_ms)
{
    Warden__V1__Command c = WARDEN__V1__COMMAND__INIT;
    Warden__V1__Tick t = WARDEN__V1__TICK__INIT;
    m->c = c;
    m->tick = t;
    m->c.cluster_time_ms = time_ms;
    m->c.op_case = WARDEN__V1__COMMAND__OP_TICK;
    m->c.tick = &m->tick;
}

static void cmd_enroll(struct cmd *m, const char *who, const char *key,
                       const char *id, const char *gw, uint64_t time_ms)
{
    Warden__V1__Command c = WARDEN__V1__COMMAND__INIT;
    Warden__V1__EnrollDeviceRequest r = WARDEN__V1__ENROLL_DEVICE_REQUEST__INIT;
    m->c = c;
    m->enr = r;
    m->c.cluster_time_ms = time_ms;
    m->c.principal_name = (char *)who;
    m->c.principal_role = WROLE_ADMIN;
    m->c.idempotency_key = (char *)key;
    m->c.op_case = WARDEN__V1__COMMAND__OP_ENROLL_DEVICE;
    m->c.enroll_device = &m->enr;
    m->enr.device_id = (char *)id;
    m->enr.key_algorithm = WARDEN__V1__KEY_ALGORITHM__KEY_ALGORITHM_ED25519;
    m->enr.public_key.data = ed_pub;
    m->enr.public_key.len = sizeof ed_pub;
    m->enr.attestation_digest.data = digest;
    m->enr.attestation_digest.len = sizeof digest;
    m->enr.hardware_model = (char *)"rpi-cm4";
    m->enr.firmware_version = (char *)"1.0.0";
    m->enr.gateway_id = (char *)gw;
}

/* Encode and apply; prints the context of any failure. */
static int apply(struct wfsm *f, uint64_t index, const struct cmd *m,
                 struct wfsm_result *res)
{
    struct werr e = {0};
    uint8_t *b;
    size_t n;
    if (wfsm_cmd_encode(&m->c, &b, &n, &e) != 0) {
        fprintf(stderr, "encode: %s\n", e.msg);
        return -100;
    }
    int rc = wfsm_apply(f, index, b, n, res, &e);
    free(b);
    if (rc) {
        fprintf(stderr, "apply %llu: %s\n", (unsigned long long)index, e.msg);
    }
    return rc;
}

static int apply_raw(struct wfsm *f, uint64_t index, const void *b, size_t n,
                     struct wfsm_result *res)
{
    struct werr e = {0};
    int rc = wfsm_apply(f, index, b, n, res, &e);
    if (rc) {
        fprintf(stderr, "apply %llu: %s\n", (unsigned long long)index, e.msg);
    }
    return rc;
}

/* Device `id` as stored, or NULL (and *rc the error). */
static Warden__V1__Device *get_dev(struct wfsm *f, const char *id, int *rc)
{
    struct werr e = {0};
    struct store_txn *t;
    Warden__V1__Device *d = NULL;
    *rc = store_txn_begin(wfsm_store(f), 0, &t, &e);
    if (*rc) {
        return NULL;
    }
    *rc = inv_get(wfsm_inv(f), t, id, &d, &e);
    store_txn_abort(t);
    return *rc ? NULL : d;
}

static uint64_t db_count(struct wfsm *f, const char *db)
{
    struct werr e = {0};
    unsigned dbi;
    if (store_dbi_find(wfsm_store(f), db, &dbi) != 0) {
        return (uint64_t)-1;
    }
    struct store_txn *t;
    uint64_t n = (uint64_t)-1;
    if (store_txn_begin(wfsm_store(f), 0, &t, &e) == 0) {
        if (store_count(t, dbi, &n, &e) != 0) {
            n = (uint64_t)-1;
        }
        store_txn_abort(t);
    }
    return n;
}

static int path_exists(const char *p)
{
    struct stat st;
    return lstat(p, &st) == 0;
}

static int write_file(const char *path, const void *b, size_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) {
        return -1;
    }
    ssize_t w = write(fd, b, n);
    close(fd);
    return w == (ssize_t)n ? 0 : -1;
}

/* Every device, packed, in id order: the observable inventory state. */
static int dump_state(struct wfsm *f, uint8_t *out, size_t cap, size_t *len)
{
    struct werr e = {0};
    struct store_txn *t;
    if (store_txn_begin(wfsm_store(f), 0, &t, &e) != 0) {
        return -1;
    }
    Warden__V1__ListDevicesRequest r = WARDEN__V1__LIST_DEVICES_REQUEST__INIT;
    r.page_size = INV_PAGE_SIZE_MAX;
    struct inv_page p = {0};
    int rc = inv_list(wfsm_inv(f), t, &r, &p, &e);
    store_txn_abort(t);
    if (rc) {
        return -1;
    }
    size_t n = 0;
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

/* ---- tests --------------------------------------------------------------*/

TEST(apply_enrolls_and_reads_back)
{
    char dir[300];
    new_dir(dir, sizeof dir);
    struct wfsm *f = fsm_open_at(dir);
    CHECK(f != NULL);
    CHECK_EQ_INT(wfsm_applied_index(f), 0);
    for (unsigned i = 1; i <= 5; i++) {
        char id[32];
        snprintf(id, sizeof id, "dev-%u", i);
        struct cmd m;
        cmd_enroll(&m, "alice", "", id, "gw-a", 1000u * i);
        struct wfsm_result res;
        CHECK_EQ_INT(apply(f, i, &m, &res), 0);
        CHECK_EQ_INT(res.code, 0);
        CHECK_EQ_INT(res.skipped, 0);
        CHECK_EQ_INT(res.replayed, 0);
        CHECK(res.resp != NULL);
        Warden__V1__EnrollDeviceResponse *r =
            warden__v1__enroll_device_response__unpack(NULL, res.resp_len,
                                                       res.resp);
        CHECK(r != NULL && r->device != NULL);
        CHECK_EQ_STR(r->device->device_id, id);
        CHECK_EQ_INT(r->device->created_index, i);
        warden__v1__enroll_device_response__free_unpacked(r, NULL);
        wfsm_result_free(&res);
        CHECK_EQ_INT(wfsm_applied_index(f), i);
    }
    int rc;
    Warden__V1__Device *d = get_dev(f, "dev-3", &rc);
    CHECK(d != NULL);
    CHECK_EQ_INT(d->created_index, 3);
    CHECK_EQ_INT(d->created_time_ms, 3000);
    CHECK_EQ_STR(d->enrolled_by, "alice");
    inv_device_free(d);
    CHECK_EQ_INT(db_count(f, "inv.devices"), 5);
    CHECK_EQ_INT(wfsm_cluster_time(f), 5000);
    wfsm_close(f);
}

TEST(reapply_is_skipped_and_survives_reopen)
{
    char dir[300];
    new_dir(dir, sizeof dir);
    struct wfsm *f = fsm_open_at(dir);
    CHECK(f != NULL);
    struct cmd m;
    struct wfsm_result res;
    cmd_enroll(&m, "alice", "", "dev-1", "gw-a", 100);
    CHECK_EQ_INT(apply(f, 1, &m, &res), 0);
    wfsm_result_free(&res);
    cmd_enroll(&m, "alice", "", "dev-2", "gw-a", 200);
    CHECK_EQ_INT(apply(f, 2, &m, &res), 0);
    wfsm_result_free(&res);

    /* The same index again, even with another body: skipped, no effect. */
    cmd_enroll(&m, "alice", "", "dev-x", "gw-b", 999);
    CHECK_EQ_INT(apply(f, 2, &m, &res), 0);
    CHECK_EQ_INT(res.skipped, 1);
    CHECK(res.resp == NULL);
    CHECK_EQ_INT(apply(f, 1, &m, &res), 0);
    CHECK_EQ_INT(res.skipped, 1);
    CHECK_EQ_INT(db_count(f, "inv.devices"), 2);
    int rc;
    CHECK(get_dev(f, "dev-x", &rc) == NULL);
    CHECK_EQ_INT(rc, WERR_NOTFOUND);
    CHECK_EQ_INT(wfsm_applied_index(f), 2);
    CHECK_EQ_INT(wfsm_cluster_time(f), 200);

    /* Restart: Raft replays 1..2 after the last snapshot; all no-ops. */
    wfsm_close(f);
    f = fsm_open_at(dir);
    CHECK(f != NULL);
    CHECK_EQ_INT(wfsm_applied_index(f), 2);
    CHECK_EQ_INT(wfsm_cluster_time(f), 200);
    cmd_enroll(&m, "alice", "", "dev-1", "gw-a", 100);
    CHECK_EQ_INT(apply(f, 1, &m, &res), 0);
    CHECK_EQ_INT(res.skipped, 1);
    CHECK_EQ_INT(res.code, 0);
    cmd_enroll(&m, "alice", "", "dev-2", "gw-a", 200);
    CHECK_EQ_INT(apply(f, 2, &m, &res), 0);
    CHECK_EQ_INT(res.skipped, 1);
    Warden__V1__Device *d = get_dev(f, "dev-2", &rc);
    CHECK(d != NULL);
    CHECK_EQ_INT(d->updated_index, 2);
    inv_device_free(d);
    CHECK_EQ_INT(db_count(f, "inv.devices"), 2);
    /* and the next entry applies */
    cmd_enroll(&m, "alice", "", "dev-3", "gw-a", 300);
    CHECK_EQ_INT(apply(f, 3, &m, &res), 0);
    CHECK_EQ_INT(res.code, 0);
    CHECK_EQ_INT(res.skipped, 0);
    wfsm_result_free(&res);
    CHECK_EQ_INT(db_count(f, "inv.devices"), 3);
    wfsm_close(f);
}

TEST(idempotency_replays_first_result)
{
    char dir[300];
    new_dir(dir, sizeof dir);
    struct wfsm *f = fsm_open_at(dir);
    CHECK(f != NULL);
    struct cmd m;
    struct wfsm_result r1, r2, r3;
    cmd_enroll(&m, "alice", "k1", "dev-a", "gw-a", 10);
    CHECK_EQ_INT(apply(f, 1, &m, &r1), 0);
    CHECK_EQ_INT(r1.code, 0);
    CHECK_EQ_INT(r1.replayed, 0);
    CHECK(r1.resp != NULL);

    /* A retry with the same key - and, to prove nothing is re-applied, a
     * different body - gets the first response byte for byte. */
    cmd_enroll(&m, "alice", "k1", "dev-b", "gw-b", 20);
    CHECK_EQ_INT(apply(f, 2, &m, &r2), 0);
    CHECK_EQ_INT(r2.replayed, 1);
    CHECK_EQ_INT(r2.code, 0);
    CHECK_EQ_INT(r2.resp_len, r1.resp_len);
    CHECK(memcmp(r2.resp, r1.resp, r1.resp_len) == 0);
    wfsm_result_free(&r2);
    int rc;
    CHECK(get_dev(f, "dev-b", &rc) == NULL);
    CHECK_EQ_INT(rc, WERR_NOTFOUND);
    CHECK_EQ_INT(wfsm_applied_index(f), 2);
    CHECK_EQ_INT(wfsm_cluster_time(f), 20); /* time still advances */

    /* Another principal with the same key is its own command. */
    cmd_enroll(&m, "bob", "k1", "dev-b", "gw-b", 30);
    CHECK_EQ_INT(apply(f, 3, &m, &r3), 0);
    CHECK_EQ_INT(r3.replayed, 0);
    CHECK_EQ_INT(r3.code, 0);
    Warden__V1__Device *d = get_dev(f, "dev-b", &rc);
    CHECK(d != NULL);
    CHECK_EQ_STR(d->enrolled_by, "bob");
    inv_device_free(d);
    wfsm_result_free(&r3);

    /* A failed command's result is remembered too. */
    cmd_enroll(&m, "alice", "k2", "dev-a", "gw-a", 40);
    CHECK_EQ_INT(apply(f, 4, &m, &r3), 0);
    CHECK_EQ_INT(r3.code, WERR_EXISTS);
    CHECK_EQ_INT(r3.replayed, 0);
    cmd_enroll(&m, "alice", "k2", "dev-new", "gw-a", 50);
    CHECK_EQ_INT(apply(f, 5, &m, &r3), 0);
    CHECK_EQ_INT(r3.code, WERR_EXISTS);
    CHECK_EQ_INT(r3.replayed, 1);
    CHECK(strstr(r3.msg, "dev-a") != NULL);
    CHECK(get_dev(f, "dev-new", &rc) == NULL);

    /* Survives a restart. */
    wfsm_close(f);
    f = fsm_open_at(dir);
    CHECK(f != NULL);
    cmd_enroll(&m, "alice", "k1", "dev-c", "gw-c", 60);
    CHECK_EQ_INT(apply(f, 6, &m, &r2), 0);
    CHECK_EQ_INT(r2.replayed, 1);
    CHECK_EQ_INT(r2.resp_len, r1.resp_len);
    CHECK(memcmp(r2.resp, r1.resp, r1.resp_len) == 0);
    wfsm_result_free(&r2);
    wfsm_result_free(&r1);

    /* An over-long key is the command's error, and the index advances. */
    char longkey[INV_IDEMPOTENCY_KEY_MAX + 2];
    memset(longkey, 'k', sizeof longkey - 1);
    longkey[sizeof longkey - 1] = '\0';
    cmd_enroll(&m, "alice", longkey, "dev-long", "gw-a", 70);
    CHECK_EQ_INT(apply(f, 7, &m, &r2), 0);
    CHECK_EQ_INT(r2.code, WERR_INVALID);
    CHECK_EQ_INT(wfsm_applied_index(f), 7);
    CHECK(get_dev(f, "dev-long", &rc) == NULL);
    wfsm_close(f);
}

TEST(idempotency_window_expires_and_prunes)
{
    char dir[300];
    new_dir(dir, sizeof dir);
    struct wfsm *f = fsm_open_at(dir);
    CHECK(f != NULL);
    CHECK_EQ_INT(wfsm_idem_window(f), WFSM_IDEM_WINDOW);
    wfsm_set_idem_window(f, 5);
    struct cmd m;
    struct wfsm_result res;
    cmd_enroll(&m, "alice", "kx", "dev-x", "gw-a", 1);
    CHECK_EQ_INT(apply(f, 10, &m, &res), 0);
    CHECK_EQ_INT(res.code, 0);
    wfsm_result_free(&res);
    for (uint64_t i = 11; i <= 14; i++) {
        cmd_tick(&m, 1);
        CHECK_EQ_INT(apply(f, i, &m, &res), 0);
    }
    /* 15 - 10 = 5 = window: still replays */
    cmd_enroll(&m, "alice", "kx", "dev-x", "gw-a", 1);
    CHECK_EQ_INT(apply(f, 15, &m, &res), 0);
    CHECK_EQ_INT(res.replayed, 1);
    CHECK_EQ_INT(res.code, 0);
    wfsm_result_free(&res);
    /* 16 - 10 = 6: expired, so the command really runs (and fails, since
     * dev-x exists: proof that it was applied, not replayed). */
    CHECK_EQ_INT(apply(f, 16, &m, &res), 0);
    CHECK_EQ_INT(res.replayed, 0);
    CHECK_EQ_INT(res.code, WERR_EXISTS);
    /* ... and its result is now the one remembered */
    CHECK_EQ_INT(apply(f, 17, &m, &res), 0);
    CHECK_EQ_INT(res.replayed, 1);
    CHECK_EQ_INT(res.code, WERR_EXISTS);

    /* Pruning is bounded per apply but keeps up: 40 keyed commands, then
     * ticks; the table never holds much more than the window's worth. */
    for (uint64_t i = 18; i < 58; i++) {
        char key[16];
        snprintf(key, sizeof key, "b%llu", (unsigned long long)i);
        cmd_enroll(&m, "alice", key, "dev-x", "gw-a", 1);
        CHECK_EQ_INT(apply(f, i, &m, &res), 0);
        CHECK(db_count(f, "fsm.idem_by_index") <= 5 + 1);
    }
    for (uint64_t i = 58; i < 64; i++) {
        cmd_tick(&m, 1);
        CHECK_EQ_INT(apply(f, i, &m, &res), 0);
    }
    CHECK_EQ_INT(db_count(f, "fsm.idem_by_index"), 0);
    CHECK_EQ_INT(db_count(f, "fsm.idem"), 0);

    /* A burst bigger than WFSM_IDEM_PRUNE_MAX drains over several applies,
     * at most WFSM_IDEM_PRUNE_MAX per apply. */
    wfsm_set_idem_window(f, 1000);
    for (uint64_t i = 64; i < 64 + 3 * WFSM_IDEM_PRUNE_MAX; i++) {
        char key[16];
        snprintf(key, sizeof key, "c%llu", (unsigned long long)i);
        cmd_enroll(&m, "alice", key, "dev-x", "gw-a", 1);
        CHECK_EQ_INT(apply(f, i, &m, &res), 0);
    }
    uint64_t burst = 3 * WFSM_IDEM_PRUNE_MAX;
    CHECK_EQ_INT(db_count(f, "fsm.idem"), burst);
    wfsm_set_idem_window(f, 1);
    uint64_t next = 64 + burst + 5;
    cmd_tick(&m, 1);
    CHECK_EQ_INT(apply(f, next++, &m, &res), 0);
    CHECK_EQ_INT(db_count(f, "fsm.idem"), burst - WFSM_IDEM_PRUNE_MAX);
    CHECK_EQ_INT(apply(f, next++, &m, &res), 0);
    CHECK_EQ_INT(apply(f, next++, &m, &res), 0);
    CHECK_EQ_INT(db_count(f, "fsm.idem"), 0);
    CHECK_EQ_INT(db_count(f, "fsm.idem_by_index"), 0);
    wfsm_close(f);
}

TEST(cluster_time_is_monotonic)
{
    char dir[300];
    new_dir(dir, sizeof dir);
    struct wfsm *f = fsm_open_at(dir);
    CHECK(f != NULL);
    struct cmd m;
    struct wfsm_result res;
    cmd_tick(&m, 5000);
    CHECK_EQ_INT(apply(f, 1, &m, &res), 0);
    CHECK_EQ_INT(wfsm_cluster_time(f), 5000);
    cmd_tick(&m, 3000); /* a leader with a slower clock */
    CHECK_EQ_INT(apply(f, 2, &m, &res), 0);
    CHECK_EQ_INT(wfsm_cluster_time(f), 5000);
    /* the domain sees the max, not the proposal */
    cmd_enroll(&m, "alice", "", "dev-t", "gw-a", 4000);
    CHECK_EQ_INT(apply(f, 3, &m, &res), 0);
    CHECK_EQ_INT(res.code, 0);
    wfsm_result_free(&res);
    int rc;
    Warden__V1__Device *d = get_dev(f, "dev-t", &rc);
    CHECK(d != NULL);
    CHECK_EQ_INT(d->created_time_ms, 5000);
    inv_device_free(d);
    cmd_tick(&m, 7000);
    CHECK_EQ_INT(apply(f, 4, &m, &res), 0);
    CHECK_EQ_INT(wfsm_cluster_time(f), 7000);
    cmd_tick(&m, 0);
    CHECK_EQ_INT(apply(f, 5, &m, &res), 0);
    CHECK_EQ_INT(wfsm_cluster_time(f), 7000);
    wfsm_close(f);
    f = fsm_open_at(dir);
    CHECK(f != NULL);
    CHECK_EQ_INT(wfsm_cluster_time(f), 7000);
    wfsm_close(f);
}

TEST(failed_op_advances_index_without_partial_writes)
{
    char dir[300];
    new_dir(dir, sizeof dir);
    struct wfsm *f = fsm_open_at(dir);
    CHECK(f != NULL);
    struct cmd m;
    struct wfsm_result res;
    cmd_enroll(&m, "alice", "", "dup", "gw-a", 100);
    CHECK_EQ_INT(apply(f, 1, &m, &res), 0);
    wfsm_result_free(&res);

    /* duplicate enroll: the command fails, the index and time advance */
    cmd_enroll(&m, "bob", "", "dup", "gw-b", 200);
    CHECK_EQ_INT(apply(f, 2, &m, &res), 0);
    CHECK_EQ_INT(res.code, WERR_EXISTS);
    CHECK(res.resp == NULL);
    CHECK_EQ_INT(wfsm_applied_index(f), 2);
    CHECK_EQ_INT(wfsm_cluster_time(f), 200);
    int rc;
    Warden__V1__Device *d = get_dev(f, "dup", &rc);
    CHECK(d != NULL);
    CHECK_EQ_STR(d->gateway_id, "gw-a");
    CHECK_EQ_INT(d->updated_index, 1);
    inv_device_free(d);

    /* validation failure */
    cmd_enroll(&m, "alice", "", "bad id", "gw-a", 300);
    CHECK_EQ_INT(apply(f, 3, &m, &res), 0);
    CHECK_EQ_INT(res.code, WERR_INVALID);
    CHECK_EQ_INT(wfsm_applied_index(f), 3);

    /* An op that wrote and then failed (injected): its writes are gone,
     * but the index advanced and the failure is remembered for the key. */
    wfsm_test_fail_op_at(f, 4);
    cmd_enroll(&m, "alice", "kf", "dev-half", "gw-a", 400);
    CHECK_EQ_INT(apply(f, 4, &m, &res), 0);
    CHECK_EQ_INT(res.code, WERR_PRECOND);
    CHECK(res.resp == NULL);
    CHECK_EQ_INT(wfsm_applied_index(f), 4);
    CHECK_EQ_INT(wfsm_cluster_time(f), 400);
    CHECK(get_dev(f, "dev-half", &rc) == NULL);
    CHECK_EQ_INT(rc, WERR_NOTFOUND);
    CHECK_EQ_INT(db_count(f, "inv.devices"), 1);
    wfsm_test_fail_op_at(f, 0);
    CHECK_EQ_INT(apply(f, 5, &m, &res), 0);
    CHECK_EQ_INT(res.replayed, 1);
    CHECK_EQ_INT(res.code, WERR_PRECOND);
    CHECK(get_dev(f, "dev-half", &rc) == NULL);

    /* Re-delivery of the failed entry after a restart is skipped. */
    wfsm_close(f);
    f = fsm_open_at(dir);
    CHECK(f != NULL);
    CHECK_EQ_INT(apply(f, 4, &m, &res), 0);
    CHECK_EQ_INT(res.skipped, 1);
    CHECK(get_dev(f, "dev-half", &rc) == NULL);
    wfsm_close(f);
}

TEST(malformed_entries_advance_the_index)
{
    char dir[300];
    new_dir(dir, sizeof dir);
    struct wfsm *f = fsm_open_at(dir);
    CHECK(f != NULL);
    struct wfsm_result res;
    uint64_t idx = 1;

    uint8_t shorty[3] = {0, 0, 0};
    CHECK_EQ_INT(apply_raw(f, idx, shorty, sizeof shorty, &res), 0);
    CHECK_EQ_INT(res.code, WERR_INVALID);
    CHECK(strstr(res.msg, "malformed") != NULL);
    CHECK_EQ_INT(wfsm_applied_index(f), idx);
    idx++;

    CHECK_EQ_INT(apply_raw(f, idx, NULL, 0, &res), 0);
    CHECK_EQ_INT(res.code, WERR_INVALID);
    CHECK_EQ_INT(wfsm_applied_index(f), idx);
    idx++;

    /* length prefix beyond the entry */
    uint8_t big[8] = {0, 0, 1, 0, 0, 0, 0, 0};
    CHECK_EQ_INT(apply_raw(f, idx, big, sizeof big, &res), 0);
    CHECK_EQ_INT(res.code, WERR_INVALID);
    CHECK_EQ_INT(wfsm_applied_index(f), idx);
    idx++;

    /* bytes that are not a Command (field 2 declared as 127-byte string) */
    uint8_t junk[8] = {0, 0, 0, 2, 0x12, 0x7f, 0, 0};
    CHECK_EQ_INT(apply_raw(f, idx, junk, sizeof junk, &res), 0);
    CHECK_EQ_INT(res.code, WERR_INVALID);
    CHECK_EQ_INT(wfsm_applied_index(f), idx);
    idx++;

    /* a valid command with non-zero padding, and with padding missing */
    struct cmd m;
    cmd_tick(&m, 300); /* 5 packed bytes: the entry has 7 bytes of padding */
    struct werr e = {0};
    uint8_t *b;
    size_t n;
    CHECK_EQ_INT(wfsm_cmd_encode(&m.c, &b, &n, &e), 0);
    CHECK_EQ_INT(n % WFSM_ENTRY_ALIGN, 0);
    CHECK(n > 4 + warden__v1__command__get_packed_size(&m.c));
    b[n - 1] = 1;
    CHECK_EQ_INT(apply_raw(f, idx, b, n, &res), 0);
    CHECK_EQ_INT(res.code, WERR_INVALID);
    CHECK(strstr(res.msg, "padding") != NULL);
    idx++;
    b[n - 1] = 0;
    CHECK_EQ_INT(apply_raw(f, idx, b, n - 1, &res), 0);
    CHECK_EQ_INT(res.code, WERR_INVALID);
    idx++;
    CHECK_EQ_INT(wfsm_cluster_time(f), 0); /* no decoded time was applied */
    /* and the intact entry applies */
    CHECK_EQ_INT(apply_raw(f, idx, b, n, &res), 0);
    CHECK_EQ_INT(res.code, 0);
    CHECK_EQ_INT(wfsm_cluster_time(f), 300);
    free(b);
    idx++;

    /* a command with no op at all */
    Warden__V1__Command empty = WARDEN__V1__COMMAND__INIT;
    CHECK_EQ_INT(wfsm_cmd_encode(&empty, &b, &n, &e), 0);
    CHECK_EQ_INT(apply_raw(f, idx, b, n, &res), 0);
    CHECK_EQ_INT(res.code, WERR_INVALID);
    CHECK_EQ_INT(wfsm_applied_index(f), idx);
    free(b);
    idx++;

    /* An op from a newer build (unknown field 99): the node stops rather
     * than fork the state; the index does not advance. */
    uint8_t newer[8] = {0, 0, 0, 3, 0x98, 0x06, 0x01, 0};
    e.code = 0;
    CHECK(wfsm_apply(f, idx, newer, sizeof newer, &res, &e) == WERR_UNSUPPORTED);
    CHECK(strstr(e.msg, "does not know") != NULL);
    CHECK_EQ_INT(wfsm_applied_index(f), idx - 1);
    wfsm_close(f);
}

TEST(encode_limits)
{
    struct werr e = {0};
    uint8_t *b = NULL;
    size_t n = 0;
    CHECK_EQ_INT(wfsm_cmd_encode(NULL, &b, &n, &e), WERR_INVALID);
    struct cmd m;
    cmd_tick(&m, 1);
    char *huge = malloc(WFSM_CMD_MAX + 1);
    CHECK(huge != NULL);
    memset(huge, 'p', WFSM_CMD_MAX);
    huge[WFSM_CMD_MAX] = '\0';
    m.c.principal_name = huge;
    int rc = wfsm_cmd_encode(&m.c, &b, &n, &e);
    free(huge);
    CHECK_EQ_INT(rc, WERR_LIMIT);
    CHECK(strstr(e.msg, "limit") != NULL);
}

TEST(snapshot_restore_round_trip)
{
    char d1[300], d2[300];
    new_dir(d1, sizeof d1);
    new_dir(d2, sizeof d2);
    struct wfsm *a = fsm_open_at(d1);
    struct wfsm *b = fsm_open_at(d2);
    CHECK(a != NULL && b != NULL);
    struct cmd m;
    struct wfsm_result res, first;
    cmd_enroll(&m, "alice", "ks", "dev-s0", "gw-a", 11);
    CHECK_EQ_INT(apply(a, 1, &m, &first), 0);
    for (unsigned i = 2; i <= 20; i++) {
        char id[32];
        snprintf(id, sizeof id, "dev-s%u", i);
        cmd_enroll(&m, "alice", "", id, "gw-a", 10u + i);
        CHECK_EQ_INT(apply(a, i, &m, &res), 0);
        wfsm_result_free(&res);
    }
    struct werr e = {0};
    uint8_t *snap = NULL;
    size_t snap_len = 0;
    CHECK_EQ_INT(wfsm_snapshot_copy(a, &snap, &snap_len, &e), 0);
    CHECK(snap_len > 0);
    char sdir[320];
    snprintf(sdir, sizeof sdir, "%s.snapshot.tmp", d1);
    CHECK(!path_exists(sdir));

    int skipped = -1;
    CHECK_EQ_INT(wfsm_restore(b, snap, snap_len, &skipped, &e), 0);
    CHECK_EQ_INT(skipped, 0);
    CHECK_EQ_INT(wfsm_applied_index(b), 20);
    CHECK_EQ_INT(wfsm_cluster_time(b), 30);
    static uint8_t sa[1 << 16], sb[1 << 16];
    size_t la, lb;
    CHECK_EQ_INT(dump_state(a, sa, sizeof sa, &la), 0);
    CHECK_EQ_INT(dump_state(b, sb, sizeof sb, &lb), 0);
    CHECK(la > 0);
    CHECK_EQ_INT(la, lb);
    CHECK(memcmp(sa, sb, la) == 0);
    char aux[320];
    snprintf(aux, sizeof aux, "%s.restore.tmp", d2);
    CHECK(!path_exists(aux));
    snprintf(aux, sizeof aux, "%s.old", d2);
    CHECK(!path_exists(aux));

    /* Both continue identically: old entries skip, the idempotency record
     * came along, new entries apply. */
    cmd_enroll(&m, "alice", "", "dev-s5", "gw-a", 15);
    CHECK_EQ_INT(apply(b, 5, &m, &res), 0);
    CHECK_EQ_INT(res.skipped, 1);
    cmd_enroll(&m, "alice", "ks", "dev-other", "gw-z", 99);
    CHECK_EQ_INT(apply(b, 21, &m, &res), 0);
    CHECK_EQ_INT(res.replayed, 1);
    CHECK_EQ_INT(res.resp_len, first.resp_len);
    CHECK(memcmp(res.resp, first.resp, first.resp_len) == 0);
    wfsm_result_free(&res);
    wfsm_result_free(&first);

    /* and the restored env is the one that persists */
    wfsm_close(b);
    b = fsm_open_at(d2);
    CHECK(b != NULL);
    CHECK_EQ_INT(wfsm_applied_index(b), 21);
    CHECK_EQ_INT(db_count(b, "inv.devices"), 20);

    /* a snapshot that is not newer is skipped and changes nothing */
    CHECK_EQ_INT(wfsm_restore(b, snap, snap_len, &skipped, &e), 0);
    CHECK_EQ_INT(skipped, 1);
    CHECK_EQ_INT(wfsm_applied_index(b), 21);
    snprintf(aux, sizeof aux, "%s.restore.tmp", d2);
    CHECK(!path_exists(aux));

    /* equal index: skipped too (LMDB already holds it) */
    CHECK_EQ_INT(wfsm_restore(a, snap, snap_len, &skipped, &e), 0);
    CHECK_EQ_INT(skipped, 1);
    free(snap);
    wfsm_close(a);
    wfsm_close(b);
}

TEST(restore_rejects_garbage_and_keeps_state)
{
    char dir[300];
    new_dir(dir, sizeof dir);
    struct wfsm *f = fsm_open_at(dir);
    CHECK(f != NULL);
    struct cmd m;
    struct wfsm_result res;
    cmd_enroll(&m, "alice", "", "dev-g", "gw-a", 1);
    CHECK_EQ_INT(apply(f, 1, &m, &res), 0);
    wfsm_result_free(&res);
    static uint8_t junk[64 * 1024];
    for (size_t i = 0; i < sizeof junk; i++) {
        junk[i] = (uint8_t)(i * 31u + 7u);
    }
    struct werr e = {0};
    int skipped = -1;
    int rc = wfsm_restore(f, junk, sizeof junk, &skipped, &e);
    CHECK(rc == WERR_CORRUPT || rc == WERR_INVALID);
    CHECK(strstr(e.msg, "wfsm_restore") != NULL);
    CHECK_EQ_INT(skipped, 0);
    char aux[320];
    snprintf(aux, sizeof aux, "%s.restore.tmp", dir);
    CHECK(!path_exists(aux));
    /* still usable, state intact */
    CHECK_EQ_INT(wfsm_applied_index(f), 1);
    Warden__V1__Device *d = get_dev(f, "dev-g", &rc);
    CHECK(d != NULL);
    inv_device_free(d);
    cmd_tick(&m, 2);
    CHECK_EQ_INT(apply(f, 2, &m, &res), 0);
    CHECK_EQ_INT(wfsm_restore(f, junk, 0, &skipped, &e), WERR_INVALID);
    wfsm_close(f);
}

/* Build the files an interrupted restore leaves, then open. */
TEST(interrupted_restore_recovery)
{
    /* the snapshot source: 3 entries */
    char src[300];
    new_dir(src, sizeof src);
    struct wfsm *a = fsm_open_at(src);
    CHECK(a != NULL);
    struct cmd m;
    struct wfsm_result res;
    for (unsigned i = 1; i <= 3; i++) {
        char id[32];
        snprintf(id, sizeof id, "dev-r%u", i);
        cmd_enroll(&m, "alice", "", id, "gw-a", i);
        CHECK_EQ_INT(apply(a, i, &m, &res), 0);
        wfsm_result_free(&res);
    }
    struct werr e = {0};
    uint8_t *snap;
    size_t snap_len;
    CHECK_EQ_INT(wfsm_snapshot_copy(a, &snap, &snap_len, &e), 0);
    wfsm_close(a);

    char dir[300], tmp[320], old[320], p[400];
    int rc;
    for (int scenario = 0; scenario < 4; scenario++) {
        /* a local env at index 1 with its own device */
        new_dir(dir, sizeof dir);
        snprintf(tmp, sizeof tmp, "%s.restore.tmp", dir);
        snprintf(old, sizeof old, "%s.old", dir);
        struct wfsm *f = fsm_open_at(dir);
        CHECK(f != NULL);
        cmd_enroll(&m, "bob", "", "dev-local", "gw-b", 1);
        CHECK_EQ_INT(apply(f, 1, &m, &res), 0);
        wfsm_result_free(&res);
        wfsm_close(f);
        CHECK_EQ_INT(mkdir(tmp, 0700), 0);
        snprintf(p, sizeof p, "%s/data.mdb", tmp);
        uint64_t want;
        switch (scenario) {
        case 0: /* crash while writing tmp: torn file, db_dir untouched */
            CHECK_EQ_INT(write_file(p, snap, snap_len / 3), 0);
            want = 1;
            break;
        case 1: /* crash between the renames: finish the restore */
            CHECK_EQ_INT(write_file(p, snap, snap_len), 0);
            CHECK_EQ_INT(rename(dir, old), 0);
            want = 3;
            break;
        case 2: /* crash after the swap, before .old was removed */
            CHECK_EQ_INT(write_file(p, snap, snap_len), 0);
            CHECK_EQ_INT(rename(dir, old), 0);
            CHECK_EQ_INT(rename(tmp, dir), 0);
            want = 3;
            break;
        default: /* .old alone (files removed by hand): roll back */
            CHECK_EQ_INT(rmdir(tmp), 0);
            CHECK_EQ_INT(rename(dir, old), 0);
            want = 1;
            break;
        }
        f = fsm_open_at(dir);
        if (f == NULL) {
            fprintf(stderr, "scenario %d\n", scenario);
        }
        CHECK(f != NULL);
        CHECK_EQ_INT(wfsm_applied_index(f), want);
        CHECK(!path_exists(tmp));
        CHECK(!path_exists(old));
        Warden__V1__Device *d = get_dev(f, want == 3 ? "dev-r3" : "dev-local",
                                        &rc);
        CHECK(d != NULL);
        inv_device_free(d);
        CHECK(get_dev(f, want == 3 ? "dev-local" : "dev-r3", &rc) == NULL);
        wfsm_close(f);
    }

    /* A path that holds something other than LMDB files is never deleted. */
    new_dir(dir, sizeof dir);
    snprintf(tmp, sizeof tmp, "%s.restore.tmp", dir);
    CHECK_EQ_INT(mkdir(tmp, 0700), 0);
    snprintf(p, sizeof p, "%s/precious.txt", tmp);
    CHECK_EQ_INT(write_file(p, "x", 1), 0);
    struct wfsm *f = NULL;
    rc = wfsm_open(&f, dir, 0, &e);
    CHECK_EQ_INT(rc, WERR_PRECOND);
    CHECK(strstr(e.msg, "precious.txt") != NULL);
    CHECK(path_exists(p));
    free(snap);
}

int main(void)
{
    if (ftu_setup(tmp_root, sizeof tmp_root, "/tmp/warden-test-fsm-XXXXXX", ed_pub) != 0) {
        return 1;
    }
    for (size_t i = 0; i < sizeof digest; i++) {
        digest[i] = (uint8_t)i;
    }
    RUN(apply_enrolls_and_reads_back);
    RUN(reapply_is_skipped_and_survives_reopen);
    RUN(idempotency_replays_first_result);
    RUN(idempotency_window_expires_and_prunes);
    RUN(cluster_time_is_monotonic);
    RUN(failed_op_advances_index_without_partial_writes);
    RUN(malformed_entries_advance_the_index);
    RUN(encode_limits);
    RUN(snapshot_restore_round_trip);
    RUN(restore_rejects_garbage_and_keeps_state);
    RUN(interrupted_restore_recovery);
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
