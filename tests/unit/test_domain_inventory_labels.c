/* test_domain_inventory_labels.c - inv_update_labels (issue 7): the
 * compare-and-set on Device.updated_index over a real LMDB store in a
 * mkdtemp directory. Version match, mismatch (message names both), 0 =
 * unconditional, unknown device, roles, label validation (enroll's bounds),
 * nothing written on failure, the label filter seeing the new labels, and
 * determinism (same request, same ctx, same bytes). The audit entry is the
 * state machine's: tests/unit/test_consensus_fsm_labels.c. */
#include "domain/inventory.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "unit.h"

static char tmp_root[256];
static unsigned dir_seq;
static uint8_t ed_pub[32];
static uint8_t digest[32];
static const struct principal admin = {.role = WROLE_ADMIN, .name = "alice"};
static const struct principal oper = {.role = WROLE_OPERATOR, .name = "olga"};
static const struct principal gw = {.role = WROLE_GATEWAY, .name = "gw-a"};
static const struct principal aud = {.role = WROLE_AUDITOR, .name = "audrey"};

struct fx {
    struct store *s;
    struct inv *inv;
    char dir[300];
};

static int fx_open(struct fx *f)
{
    struct werr e = {0};
    snprintf(f->dir, sizeof f->dir, "%s/s%u", tmp_root, dir_seq++);
    struct store_config cfg = {.path = f->dir};
    if (store_open(&f->s, &cfg, &e) != 0) {
        fprintf(stderr, "store_open: %s\n", e.msg);
        return -1;
    }
    if (inv_open(&f->inv, f->s, &e) != 0) {
        fprintf(stderr, "inv_open: %s\n", e.msg);
        store_close(f->s);
        return -1;
    }
    return 0;
}

static void fx_close(struct fx *f)
{
    inv_close(f->inv);
    store_close(f->s);
}

static int enroll(struct fx *f, const char *id, uint64_t index)
{
    struct werr e = {0};
    Warden__V1__EnrollDeviceRequest r = WARDEN__V1__ENROLL_DEVICE_REQUEST__INIT;
    Warden__V1__Label l = WARDEN__V1__LABEL__INIT;
    Warden__V1__Label *lp[] = {&l};
    l.key = (char *)"site";
    l.value = (char *)"plant-7";
    r.device_id = (char *)id;
    r.key_algorithm = WARDEN__V1__KEY_ALGORITHM__KEY_ALGORITHM_ED25519;
    r.public_key.data = ed_pub;
    r.public_key.len = sizeof ed_pub;
    r.attestation_digest.data = digest;
    r.attestation_digest.len = sizeof digest;
    r.gateway_id = (char *)"gw-a";
    r.labels = lp;
    r.n_labels = 1;
    struct dom_ctx ctx = {.index = index, .time_ms = 1000 * index, .who = &admin};
    struct store_txn *t;
    int rc = store_txn_begin(f->s, 1, &t, &e);
    if (rc == 0 && (rc = inv_enroll(f->inv, t, &ctx, &r, NULL, &e)) != 0) {
        store_txn_abort(t);
    } else if (rc == 0) {
        rc = store_txn_commit(t, &e);
    }
    if (rc) {
        fprintf(stderr, "enroll %s: %s\n", id, e.msg);
    }
    return rc;
}

/* A label request; kv is "k=v" strings. */
struct lreq {
    Warden__V1__UpdateDeviceLabelsRequest r;
    Warden__V1__Label l[INV_LABELS_MAX + 2];
    Warden__V1__Label *lp[INV_LABELS_MAX + 2];
    char buf[INV_LABELS_MAX + 2][400];
};

static void lreq_init(struct lreq *q, const char *id, uint64_t expected,
                      size_t n, const char *const *kv)
{
    Warden__V1__UpdateDeviceLabelsRequest r =
        WARDEN__V1__UPDATE_DEVICE_LABELS_REQUEST__INIT;
    q->r = r;
    q->r.device_id = (char *)id;
    q->r.expected_updated_index = expected;
    for (size_t i = 0; i < n; i++) {
        Warden__V1__Label l = WARDEN__V1__LABEL__INIT;
        q->l[i] = l;
        snprintf(q->buf[i], sizeof q->buf[i], "%s", kv[i]);
        char *eq = strchr(q->buf[i], '=');
        if (eq != NULL) {
            *eq = '\0';
            q->l[i].value = eq + 1;
        }
        q->l[i].key = q->buf[i];
        q->lp[i] = &q->l[i];
    }
    q->r.labels = q->lp;
    q->r.n_labels = n;
}

/* Apply one update at `index` as `who`; commit on success, abort on error.
 * *out (if non-NULL) gets the result. Returns the domain's code; e holds
 * its message. */
static int update(struct fx *f, const struct principal *who, uint64_t index,
                  const struct lreq *q, Warden__V1__Device **out,
                  uint64_t *prev, struct werr *e)
{
    struct dom_ctx ctx = {.index = index, .time_ms = 1000 * index, .who = who};
    struct store_txn *t;
    int rc = store_txn_begin(f->s, 1, &t, e);
    if (rc) {
        return rc;
    }
    rc = inv_update_labels(f->inv, t, &ctx, &q->r, out, prev, e);
    if (rc) {
        store_txn_abort(t);
        return rc;
    }
    return store_txn_commit(t, e);
}

static Warden__V1__Device *get(struct fx *f, const char *id)
{
    struct werr e = {0};
    struct store_txn *t;
    Warden__V1__Device *d = NULL;
    if (store_txn_begin(f->s, 0, &t, &e) != 0) {
        return NULL;
    }
    if (inv_get(f->inv, t, id, &d, &e) != 0) {
        d = NULL;
    }
    store_txn_abort(t);
    return d;
}

static const char *label_of(const Warden__V1__Device *d, const char *key)
{
    for (size_t i = 0; i < d->n_labels; i++) {
        if (strcmp(d->labels[i]->key, key) == 0) {
            return d->labels[i]->value;
        }
    }
    return NULL;
}

TEST(cas_match_mismatch_unconditional)
{
    struct fx f;
    CHECK_EQ_INT(fx_open(&f), 0);
    CHECK_EQ_INT(enroll(&f, "dev-1", 5), 0);
    struct werr e = {0};
    struct lreq q;
    Warden__V1__Device *d = NULL;
    uint64_t prev = 0;

    /* match: version 5 (the enroll index) -> 9 */
    static const char *const kv1[] = {"site=plant-8", "line=3"};
    lreq_init(&q, "dev-1", 5, 2, kv1);
    CHECK_EQ_INT(update(&f, &oper, 9, &q, &d, &prev, &e), 0);
    CHECK(d != NULL);
    CHECK_EQ_INT(prev, 5);
    CHECK_EQ_INT(d->updated_index, 9);
    CHECK_EQ_INT(d->updated_time_ms, 9000);
    CHECK_EQ_INT(d->created_index, 5);
    CHECK_EQ_INT(d->n_labels, 2);
    CHECK_EQ_STR(label_of(d, "site"), "plant-8");
    CHECK_EQ_STR(label_of(d, "line"), "3");
    CHECK_EQ_STR(d->gateway_id, "gw-a"); /* the rest of the record is kept */
    CHECK_EQ_INT(d->key_epoch, 1);
    CHECK_EQ_INT(d->public_key.len, 32);
    inv_device_free(d);
    d = get(&f, "dev-1");
    CHECK(d != NULL);
    CHECK_EQ_INT(d->updated_index, 9);
    CHECK_EQ_STR(label_of(d, "site"), "plant-8");
    inv_device_free(d);

    /* mismatch: the old version again; nothing written */
    static const char *const kv2[] = {"site=plant-9"};
    lreq_init(&q, "dev-1", 5, 1, kv2);
    d = NULL;
    CHECK_EQ_INT(update(&f, &admin, 10, &q, &d, NULL, &e), WERR_PRECOND);
    CHECK(d == NULL);
    CHECK_EQ_STR(e.msg, "version mismatch: have 9, expected 5");
    /* ...and a version from the future */
    lreq_init(&q, "dev-1", 11, 1, kv2);
    CHECK_EQ_INT(update(&f, &admin, 10, &q, NULL, NULL, &e), WERR_PRECOND);
    CHECK_EQ_STR(e.msg, "version mismatch: have 9, expected 11");
    d = get(&f, "dev-1");
    CHECK(d != NULL);
    CHECK_EQ_INT(d->updated_index, 9);
    CHECK_EQ_STR(label_of(d, "site"), "plant-8");
    inv_device_free(d);

    /* unconditional (0) overwrites whatever is there; an empty set clears */
    lreq_init(&q, "dev-1", 0, 1, kv2);
    CHECK_EQ_INT(update(&f, &admin, 12, &q, NULL, &prev, &e), 0);
    CHECK_EQ_INT(prev, 9);
    lreq_init(&q, "dev-1", 12, 0, NULL);
    CHECK_EQ_INT(update(&f, &admin, 13, &q, &d, NULL, &e), 0);
    CHECK_EQ_INT(d->n_labels, 0);
    CHECK_EQ_INT(d->updated_index, 13);
    inv_device_free(d);

    /* exactly one of two CAS writers holding the same version wins */
    lreq_init(&q, "dev-1", 13, 1, kv1);
    CHECK_EQ_INT(update(&f, &admin, 14, &q, NULL, NULL, &e), 0);
    CHECK_EQ_INT(update(&f, &oper, 15, &q, NULL, NULL, &e), WERR_PRECOND);
    fx_close(&f);
}

TEST(unknown_device_roles_and_validation)
{
    struct fx f;
    CHECK_EQ_INT(fx_open(&f), 0);
    CHECK_EQ_INT(enroll(&f, "dev-2", 3), 0);
    struct werr e = {0};
    struct lreq q;
    static const char *const kv[] = {"site=a"};

    lreq_init(&q, "no-such", 0, 1, kv);
    CHECK_EQ_INT(update(&f, &admin, 4, &q, NULL, NULL, &e), WERR_NOTFOUND);
    CHECK(strstr(e.msg, "no-such") != NULL);
    lreq_init(&q, "no-such", 7, 1, kv);
    CHECK_EQ_INT(update(&f, &admin, 4, &q, NULL, NULL, &e), WERR_NOTFOUND);

    /* only admin and operator; refused before the device is looked up */
    lreq_init(&q, "dev-2", 0, 1, kv);
    CHECK_EQ_INT(update(&f, &gw, 4, &q, NULL, NULL, &e), WERR_PERM);
    CHECK_EQ_INT(update(&f, &aud, 4, &q, NULL, NULL, &e), WERR_PERM);
    lreq_init(&q, "no-such", 0, 1, kv);
    CHECK_EQ_INT(update(&f, &gw, 4, &q, NULL, NULL, &e), WERR_PERM);

    /* enroll's bounds */
    char longkey[INV_LABEL_KEY_MAX + 8], longval[INV_LABEL_VALUE_MAX + 8];
    memset(longkey, 'k', INV_LABEL_KEY_MAX + 1);
    snprintf(longkey + INV_LABEL_KEY_MAX + 1, 3, "=v");
    memset(longval, 'v', sizeof longval);
    memcpy(longval, "k=", 2);
    longval[INV_LABEL_VALUE_MAX + 3] = '\0'; /* value of MAX + 1 bytes */
    const char *bad[][2] = {
        {"=v", NULL},         /* empty key */
        {"a b=v", NULL},      /* key charset */
        {"k=\x01", NULL},     /* control byte in value */
        {"k=1", "k=2"},       /* duplicate key */
        {longkey, NULL},
        {longval, NULL},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        lreq_init(&q, "dev-2", 0, bad[i][1] ? 2 : 1, bad[i]);
        CHECK_EQ_INT(update(&f, &admin, 5, &q, NULL, NULL, &e), WERR_INVALID);
    }
    const char *many[INV_LABELS_MAX + 1];
    char mk[INV_LABELS_MAX + 1][16];
    for (size_t i = 0; i <= INV_LABELS_MAX; i++) {
        snprintf(mk[i], sizeof mk[i], "k%zu=v", i);
        many[i] = mk[i];
    }
    lreq_init(&q, "dev-2", 0, INV_LABELS_MAX + 1, many);
    CHECK_EQ_INT(update(&f, &admin, 5, &q, NULL, NULL, &e), WERR_INVALID);
    lreq_init(&q, "dev-2", 0, INV_LABELS_MAX, many); /* the maximum is fine */
    CHECK_EQ_INT(update(&f, &admin, 5, &q, NULL, NULL, &e), 0);
    lreq_init(&q, "bad id!", 0, 1, kv);
    CHECK_EQ_INT(update(&f, &admin, 6, &q, NULL, NULL, &e), WERR_INVALID);
    lreq_init(&q, "dev-2", 0, 1, kv);
    char key[INV_IDEMPOTENCY_KEY_MAX + 2];
    memset(key, 'x', sizeof key - 1);
    key[sizeof key - 1] = '\0';
    q.r.idempotency_key = key;
    CHECK_EQ_INT(update(&f, &admin, 6, &q, NULL, NULL, &e), WERR_INVALID);

    Warden__V1__Device *d = get(&f, "dev-2");
    CHECK(d != NULL);
    CHECK_EQ_INT(d->updated_index, 5);
    CHECK_EQ_INT(d->n_labels, INV_LABELS_MAX);
    inv_device_free(d);
    fx_close(&f);
}

/* Selectors read the record as it is: ListDevices' label filter (the same
 * record access_check.c and rollout_member.c match against) finds the
 * device under its new label and no longer under the old one. */
TEST(label_filter_sees_new_labels)
{
    struct fx f;
    CHECK_EQ_INT(fx_open(&f), 0);
    CHECK_EQ_INT(enroll(&f, "dev-3", 2), 0);
    struct werr e = {0};
    struct lreq q;
    static const char *const kv[] = {"site=plant-9"};
    lreq_init(&q, "dev-3", 2, 1, kv);
    CHECK_EQ_INT(update(&f, &oper, 3, &q, NULL, NULL, &e), 0);

    Warden__V1__Label want = WARDEN__V1__LABEL__INIT;
    Warden__V1__ListDevicesRequest lr = WARDEN__V1__LIST_DEVICES_REQUEST__INIT;
    lr.label = &want;
    want.key = (char *)"site";
    struct store_txn *t;
    struct inv_page p;
    CHECK_EQ_INT(store_txn_begin(f.s, 0, &t, &e), 0);
    want.value = (char *)"plant-9";
    CHECK_EQ_INT(inv_list(f.inv, t, &lr, &p, &e), 0);
    CHECK_EQ_INT(p.n, 1);
    inv_page_free(&p);
    want.value = (char *)"plant-7";
    CHECK_EQ_INT(inv_list(f.inv, t, &lr, &p, &e), 0);
    CHECK_EQ_INT(p.n, 0);
    inv_page_free(&p);
    store_txn_abort(t);
    fx_close(&f);
}

/* Replicated-state-machine determinism: same request and ctx on two
 * stores give byte-identical records. */
TEST(deterministic)
{
    struct fx a, b;
    CHECK_EQ_INT(fx_open(&a), 0);
    CHECK_EQ_INT(fx_open(&b), 0);
    CHECK_EQ_INT(enroll(&a, "dev-4", 2), 0);
    CHECK_EQ_INT(enroll(&b, "dev-4", 2), 0);
    struct werr e = {0};
    struct lreq q;
    static const char *const kv[] = {"z=1", "a=2"};
    lreq_init(&q, "dev-4", 2, 2, kv);
    CHECK_EQ_INT(update(&a, &admin, 7, &q, NULL, NULL, &e), 0);
    CHECK_EQ_INT(update(&b, &admin, 7, &q, NULL, NULL, &e), 0);
    Warden__V1__Device *da = get(&a, "dev-4"), *db = get(&b, "dev-4");
    CHECK(da != NULL && db != NULL);
    uint8_t ba[4096], bb[4096];
    size_t na = warden__v1__device__pack(da, ba);
    size_t nb = warden__v1__device__pack(db, bb);
    CHECK_EQ_INT(na, nb);
    CHECK(memcmp(ba, bb, na) == 0);
    /* labels keep the request's order */
    CHECK_EQ_STR(da->labels[0]->key, "z");
    inv_device_free(da);
    inv_device_free(db);
    fx_close(&a);
    fx_close(&b);
}

int main(void)
{
    snprintf(tmp_root, sizeof tmp_root, "/tmp/warden-test-labels-XXXXXX");
    if (mkdtemp(tmp_root) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    EVP_PKEY *pk = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    size_t len = sizeof ed_pub;
    if (pk == NULL || EVP_PKEY_get_raw_public_key(pk, ed_pub, &len) != 1) {
        fprintf(stderr, "keygen failed\n");
        return 1;
    }
    EVP_PKEY_free(pk);
    for (size_t i = 0; i < sizeof digest; i++) {
        digest[i] = (uint8_t)i;
    }
    RUN(cas_match_mismatch_unconditional);
    RUN(unknown_device_roles_and_validation);
    RUN(label_filter_sees_new_labels);
    RUN(deterministic);
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
