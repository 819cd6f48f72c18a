/* test_consensus_fsm_i4.c - issue 4 through the replicated state machine:
 * encoded Commands applied with wfsm_apply over real LMDB in mkdtemp dirs.
 * Every lifecycle transition, allowed and forbidden (counted and audited);
 * re-enroll (admin only); key rotation with proof of possession for
 * Ed25519 and P-256 (OpenSSL keys made here), wrong/reused/expired nonce;
 * telemetry freshness and stale epochs after rotation; gateway binding;
 * control commands verified with the device-side verifier; EnrollDevices
 * all-or-nothing; the audit ledger: one entry per action, denial rows,
 * chain verification, identical heads on two fsms, snapshot/restore. */
#include "consensus/fsm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>

#include "domain/audit.h"
#include "domain/ctl_envelope.h"
#include "domain/freshness.h"
#include "domain/inventory.h"
#include "domain/lifecycle.h"
#include "storage/store.h"
#include "fsm_testutil.h"
#include "unit.h"

#define S_UNSPEC WARDEN__V1__DEVICE_STATE__DEVICE_STATE_UNSPECIFIED
#define S_PROV WARDEN__V1__DEVICE_STATE__DEVICE_STATE_PROVISIONED
#define S_ACTIVE WARDEN__V1__DEVICE_STATE__DEVICE_STATE_ACTIVE
#define S_QUAR WARDEN__V1__DEVICE_STATE__DEVICE_STATE_QUARANTINED
#define S_REVOKED WARDEN__V1__DEVICE_STATE__DEVICE_STATE_REVOKED
#define ED WARDEN__V1__KEY_ALGORITHM__KEY_ALGORITHM_ED25519
#define P256 WARDEN__V1__KEY_ALGORITHM__KEY_ALGORITHM_ECDSA_P256
#define T_(x) WARDEN__V1__TELEMETRY_RESULT__TELEMETRY_RESULT_##x

static char tmp_root[256];
static unsigned dir_seq;
static uint8_t digest[32];

/* ---- keys ------------------------------------------------------------- */

struct key {
    EVP_PKEY *pk;
    int alg;
    uint8_t pub[65];
    size_t pub_len;
};

static int key_new(struct key *k, int alg)
{
    k->alg = alg;
    if (alg == ED) {
        k->pk = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
        k->pub_len = 32;
        return k->pk && EVP_PKEY_get_raw_public_key(k->pk, k->pub, &k->pub_len) == 1
                   ? 0
                   : -1;
    }
    k->pk = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    return k->pk && EVP_PKEY_get_octet_string_param(
                        k->pk, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, k->pub,
                        sizeof k->pub, &k->pub_len) == 1
               ? 0
               : -1;
}

static size_t key_sign(const struct key *k, const uint8_t *m, size_t n,
                       uint8_t *sig, size_t cap)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    size_t sl = cap;
    int ok = EVP_DigestSignInit(md, NULL, k->alg == ED ? NULL : EVP_sha256(),
                                NULL, k->pk) == 1 &&
             EVP_DigestSign(md, sig, &sl, m, n) == 1;
    EVP_MD_CTX_free(md);
    return ok ? sl : 0;
}

/* ---- commands ----------------------------------------------------------*/

static struct wfsm *fsm_new(void)
{
    return ftu_fsm_new(tmp_root, &dir_seq);
}

static void cmd_init(Warden__V1__Command *c, const char *who, unsigned role)
{
    ftu_cmd_init(c, who, role, 1000);
}

/* Apply c at the next index of f (the fsm's applied index + 1). Returns the
 * command's code (0 or WERR_*), or -1000 on a node error. res may be NULL;
 * otherwise the caller frees it. */
static int run(struct wfsm *f, const Warden__V1__Command *c,
               struct wfsm_result *res)
{
    return ftu_run(f, c, res, NULL, 0);
}

static int enroll(struct wfsm *f, const char *id, const struct key *k,
                  const char *gw)
{
    Warden__V1__Command c;
    cmd_init(&c, "alice", WROLE_ADMIN);
    Warden__V1__EnrollDeviceRequest r = WARDEN__V1__ENROLL_DEVICE_REQUEST__INIT;
    r.device_id = (char *)id;
    r.key_algorithm = (Warden__V1__KeyAlgorithm)k->alg;
    r.public_key.data = (uint8_t *)k->pub;
    r.public_key.len = k->pub_len;
    r.attestation_digest.data = digest;
    r.attestation_digest.len = sizeof digest;
    r.gateway_id = (char *)gw;
    c.op_case = WARDEN__V1__COMMAND__OP_ENROLL_DEVICE;
    c.enroll_device = &r;
    return run(f, &c, NULL);
}

static int set_state(struct wfsm *f, const char *id, int to, unsigned role)
{
    Warden__V1__Command c;
    cmd_init(&c, "olga", role);
    Warden__V1__SetDeviceStateRequest r = WARDEN__V1__SET_DEVICE_STATE_REQUEST__INIT;
    r.device_id = (char *)id;
    r.state = (Warden__V1__DeviceState)to;
    r.reason = (char *)"test";
    c.op_case = WARDEN__V1__COMMAND__OP_SET_DEVICE_STATE;
    c.set_device_state = &r;
    return run(f, &c, NULL);
}

static Warden__V1__Device *get_dev(struct wfsm *f, const char *id)
{
    struct werr e = {0};
    struct store_txn *t;
    Warden__V1__Device *d = NULL;
    if (store_txn_begin(wfsm_store(f), 0, &t, &e) != 0) {
        return NULL;
    }
    if (inv_get(wfsm_inv(f), t, id, &d, &e) != 0) {
        d = NULL;
    }
    store_txn_abort(t);
    return d;
}

static int dev_state(struct wfsm *f, const char *id)
{
    Warden__V1__Device *d = get_dev(f, id);
    int s = d ? (int)d->state : -1;
    inv_device_free(d);
    return s;
}

static uint64_t head(struct wfsm *f, uint8_t hash[AUDIT_HASH_LEN])
{
    struct werr e = {0};
    struct store_txn *t;
    uint64_t seq = (uint64_t)-1;
    uint8_t h[AUDIT_HASH_LEN];
    if (store_txn_begin(wfsm_store(f), 0, &t, &e) == 0) {
        if (audit_head(wfsm_audit(f), t, &seq, hash ? hash : h, &e) != 0) {
            seq = (uint64_t)-1;
        }
        store_txn_abort(t);
    }
    return seq;
}

static uint64_t reject_count(struct wfsm *f, int from, int to)
{
    struct werr e = {0};
    struct store_txn *t;
    uint64_t n = (uint64_t)-1;
    if (store_txn_begin(wfsm_store(f), 0, &t, &e) == 0) {
        if (lc_reject_count(wfsm_inv(f), t, from, to, &n, &e) != 0) {
            n = (uint64_t)-1;
        }
        store_txn_abort(t);
    }
    return n;
}

/* Verify the whole ledger with the pure verifier. Returns 0 if it holds. */
static int verify_all(struct wfsm *f, uint64_t *n_out)
{
    struct werr e = {0};
    struct store_txn *t;
    if (store_txn_begin(wfsm_store(f), 0, &t, &e) != 0) {
        return -1;
    }
    size_t cap = 4096, n = 0;
    struct audit_rec *recs = calloc(cap, sizeof *recs);
    uint64_t from = 1;
    int rc = 0;
    for (;;) {
        struct audit_page p;
        if ((rc = audit_read(wfsm_audit(f), t, from, 0, 0, &p, &e)) != 0) {
            break;
        }
        for (size_t i = 0; i < p.n && n < cap && rc == 0; i++) {
            rc = audit_rec_from_proto(p.entries[i], &recs[n++], &e);
        }
        from = p.next_seq;
        size_t got = p.n;
        audit_page_free(&p);
        if (got == 0 || rc) {
            break;
        }
    }
    store_txn_abort(t);
    size_t bad = 0;
    if (rc == 0) {
        rc = audit_verify_chain(recs, n, NULL, &bad, &e);
        if (rc) {
            fprintf(stderr, "verify: %s at %zu\n", e.msg, bad);
        }
    }
    free(recs);
    *n_out = n;
    return rc;
}

/* ---- lifecycle ----------------------------------------------------------*/

/* Drive a fresh device to `state` through allowed transitions. */
static int reach(struct wfsm *f, const char *id, int state)
{
    if (state == S_PROV) {
        return 0;
    }
    if (state == S_REVOKED) {
        return set_state(f, id, S_REVOKED, WROLE_OPERATOR);
    }
    int rc = set_state(f, id, S_ACTIVE, WROLE_OPERATOR);
    if (rc == 0 && state == S_QUAR) {
        rc = set_state(f, id, S_QUAR, WROLE_OPERATOR);
    }
    return rc;
}

TEST(every_transition)
{
    struct wfsm *f = fsm_new();
    CHECK(f != NULL);
    struct key k;
    CHECK_EQ_INT(key_new(&k, ED), 0);
    static const int allowed[5][5] = {
        [S_PROV] = {[S_ACTIVE] = 1, [S_REVOKED] = 1},
        [S_ACTIVE] = {[S_QUAR] = 1, [S_REVOKED] = 1},
        [S_QUAR] = {[S_ACTIVE] = 1, [S_REVOKED] = 1},
    };
    unsigned n = 0;
    for (int from = S_PROV; from <= S_REVOKED; from++) {
        for (int to = S_UNSPEC; to <= S_REVOKED; to++) {
            char id[32];
            snprintf(id, sizeof id, "lc-%d-%d", from, to);
            CHECK_EQ_INT(enroll(f, id, &k, "gw-a"), 0);
            CHECK_EQ_INT(reach(f, id, from), 0);
            CHECK_EQ_INT(dev_state(f, id), from);
            uint64_t before = head(f, NULL);
            uint64_t rej = reject_count(f, from, to);
            int rc = set_state(f, id, to, WROLE_OPERATOR);
            CHECK_EQ_INT(lc_transition_allowed(from, to), allowed[from][to]);
            struct audit_rec r;
            CHECK_EQ_INT(head(f, NULL), before + 1); /* exactly one entry */
            CHECK_EQ_INT(ftu_last_audit(f, &r), 0);
            CHECK_EQ_INT(r.action, WARDEN__V1__AUDIT_ACTION__AUDIT_ACTION_STATE_CHANGE);
            CHECK_EQ_STR(r.target, id);
            CHECK_EQ_STR(r.principal, "olga");
            if (allowed[from][to]) {
                CHECK_EQ_INT(rc, 0);
                CHECK_EQ_INT(dev_state(f, id), to);
                CHECK_EQ_INT(r.outcome, WARDEN__V1__AUDIT_OUTCOME__AUDIT_OUTCOME_OK);
                CHECK_EQ_INT(reject_count(f, from, to), rej);
            } else {
                if (rc != WERR_PRECOND) {
                    fprintf(stderr, "%d -> %d gave %d\n", from, to, rc);
                }
                CHECK_EQ_INT(rc, WERR_PRECOND);
                CHECK_EQ_INT(dev_state(f, id), from);
                CHECK_EQ_INT(r.outcome,
                             WARDEN__V1__AUDIT_OUTCOME__AUDIT_OUTCOME_REJECTED);
                CHECK_EQ_INT(r.code, WERR_PRECOND);
                CHECK(strstr(r.detail, "not allowed") != NULL);
                CHECK_EQ_INT(reject_count(f, from, to), rej + 1);
            }
            n++;
        }
    }
    CHECK_EQ_INT(n, 20);
    /* roles: a gateway or an auditor may not change state (denied, audited) */
    CHECK_EQ_INT(enroll(f, "lc-role", &k, "gw-a"), 0);
    uint64_t before = head(f, NULL);
    CHECK_EQ_INT(set_state(f, "lc-role", S_ACTIVE, WROLE_GATEWAY), WERR_PERM);
    CHECK_EQ_INT(set_state(f, "lc-role", S_ACTIVE, WROLE_AUDITOR), WERR_PERM);
    CHECK_EQ_INT(head(f, NULL), before + 2);
    struct audit_rec r;
    CHECK_EQ_INT(ftu_last_audit(f, &r), 0);
    CHECK_EQ_INT(r.outcome, WARDEN__V1__AUDIT_OUTCOME__AUDIT_OUTCOME_DENIED);
    CHECK_EQ_INT(dev_state(f, "lc-role"), S_PROV);
    /* unknown device: rejected, audited */
    CHECK_EQ_INT(set_state(f, "nope", S_ACTIVE, WROLE_ADMIN), WERR_NOTFOUND);
    CHECK_EQ_INT(head(f, NULL), before + 3);
    uint64_t total;
    CHECK_EQ_INT(verify_all(f, &total), 0);
    CHECK_EQ_INT(total, head(f, NULL));
    EVP_PKEY_free(k.pk);
    wfsm_close(f);
}

static int reenroll(struct wfsm *f, const char *id, const struct key *k,
                    unsigned role)
{
    Warden__V1__Command c;
    cmd_init(&c, "root", role);
    Warden__V1__ReEnrollDeviceRequest r = WARDEN__V1__RE_ENROLL_DEVICE_REQUEST__INIT;
    r.device_id = (char *)id;
    r.key_algorithm = (Warden__V1__KeyAlgorithm)k->alg;
    r.public_key.data = (uint8_t *)k->pub;
    r.public_key.len = k->pub_len;
    r.attestation_digest.data = digest;
    r.attestation_digest.len = sizeof digest;
    c.op_case = WARDEN__V1__COMMAND__OP_REENROLL_DEVICE;
    c.reenroll_device = &r;
    return run(f, &c, NULL);
}

static int rebind(struct wfsm *f, const char *id, const char *gw, unsigned role)
{
    Warden__V1__Command c;
    cmd_init(&c, "olga", role);
    Warden__V1__RebindDeviceRequest r = WARDEN__V1__REBIND_DEVICE_REQUEST__INIT;
    r.device_id = (char *)id;
    r.gateway_id = (char *)gw;
    c.op_case = WARDEN__V1__COMMAND__OP_REBIND_DEVICE;
    c.rebind_device = &r;
    return run(f, &c, NULL);
}

TEST(reenroll_and_rebind)
{
    struct wfsm *f = fsm_new();
    CHECK(f != NULL);
    struct key k1, k2;
    CHECK_EQ_INT(key_new(&k1, ED), 0);
    CHECK_EQ_INT(key_new(&k2, P256), 0);
    CHECK_EQ_INT(enroll(f, "re-1", &k1, "gw-a"), 0);
    CHECK_EQ_INT(set_state(f, "re-1", S_REVOKED, WROLE_ADMIN), 0);
    uint64_t h0 = head(f, NULL);
    CHECK_EQ_INT(reenroll(f, "re-1", &k2, WROLE_OPERATOR), WERR_PERM);
    CHECK_EQ_INT(head(f, NULL), h0 + 1);
    struct audit_rec r;
    CHECK_EQ_INT(ftu_last_audit(f, &r), 0);
    CHECK_EQ_INT(r.action, WARDEN__V1__AUDIT_ACTION__AUDIT_ACTION_REENROLL);
    CHECK_EQ_INT(r.outcome, WARDEN__V1__AUDIT_OUTCOME__AUDIT_OUTCOME_DENIED);
    CHECK_EQ_INT(dev_state(f, "re-1"), S_REVOKED);
    CHECK_EQ_INT(reenroll(f, "re-1", &k2, WROLE_ADMIN), 0);
    CHECK_EQ_INT(head(f, NULL), h0 + 2);
    Warden__V1__Device *d = get_dev(f, "re-1");
    CHECK(d != NULL);
    CHECK_EQ_INT(d->identity_epoch, 2);
    CHECK_EQ_INT(d->key_epoch, 1);
    CHECK_EQ_INT(d->state, S_PROV);
    CHECK_EQ_INT(d->key_algorithm, P256);
    CHECK_EQ_INT(d->public_key.len, 65);
    CHECK(memcmp(d->public_key.data, k2.pub, 65) == 0);
    inv_device_free(d);
    /* the new identity lives its own lifecycle */
    CHECK_EQ_INT(set_state(f, "re-1", S_ACTIVE, WROLE_OPERATOR), 0);

    CHECK_EQ_INT(rebind(f, "re-1", "gw-b", WROLE_GATEWAY), WERR_PERM);
    CHECK_EQ_INT(rebind(f, "re-1", "gw-b", WROLE_OPERATOR), 0);
    CHECK_EQ_INT(ftu_last_audit(f, &r), 0);
    CHECK_EQ_INT(r.action, WARDEN__V1__AUDIT_ACTION__AUDIT_ACTION_REBIND);
    CHECK_EQ_INT(r.outcome, WARDEN__V1__AUDIT_OUTCOME__AUDIT_OUTCOME_OK);
    d = get_dev(f, "re-1");
    CHECK(d != NULL);
    CHECK_EQ_STR(d->gateway_id, "gw-b");
    inv_device_free(d);
    CHECK_EQ_INT(rebind(f, "re-1", "bad gw", WROLE_OPERATOR), WERR_INVALID);
    EVP_PKEY_free(k1.pk);
    EVP_PKEY_free(k2.pk);
    wfsm_close(f);
}

/* ---- rotation and telemetry ---------------------------------------------*/

static int issue_nonce(struct wfsm *f, const char *id, uint8_t nonce[32],
                       uint8_t fill)
{
    memset(nonce, fill, 32);
    Warden__V1__Command c;
    cmd_init(&c, "gw-a", WROLE_GATEWAY);
    Warden__V1__IssueRotationNonceRequest r =
        WARDEN__V1__ISSUE_ROTATION_NONCE_REQUEST__INIT;
    r.device_id = (char *)id;
    r.nonce.data = nonce;
    r.nonce.len = 32;
    c.op_case = WARDEN__V1__COMMAND__OP_ISSUE_ROTATION_NONCE;
    c.issue_rotation_nonce = &r;
    return run(f, &c, NULL);
}

/* Sign the v2 rotation message (id, cur_epoch, new_epoch, bound's public
 * key, nonce) with signer. Test keys hold their public key in canonical
 * form already (Ed25519 raw, P-256 uncompressed point). 0 on failure. */
static size_t rot_sign(const struct key *signer, const char *id,
                       uint64_t cur_epoch, uint64_t new_epoch,
                       const struct key *bound, const uint8_t nonce[32],
                       uint8_t *sig, size_t cap)
{
    uint8_t msg[LC_ROTATE_MSG_MAX];
    size_t ml = lc_rotate_message(id, cur_epoch, new_epoch, bound->pub,
                                  bound->pub_len, nonce, msg, sizeof msg);
    return ml == 0 ? 0 : key_sign(signer, msg, ml, sig, cap);
}

/* RotateDeviceKey to newk as gw-a, with the given signatures (either may
 * be empty). */
static int rotate_sigs(struct wfsm *f, const char *id, const struct key *newk,
                       const uint8_t *new_sig, size_t new_len,
                       const uint8_t *cur_sig, size_t cur_len)
{
    Warden__V1__Command c;
    cmd_init(&c, "gw-a", WROLE_GATEWAY);
    Warden__V1__RotateDeviceKeyRequest r = WARDEN__V1__ROTATE_DEVICE_KEY_REQUEST__INIT;
    r.device_id = (char *)id;
    r.key_algorithm = (Warden__V1__KeyAlgorithm)newk->alg;
    r.public_key.data = (uint8_t *)newk->pub;
    r.public_key.len = newk->pub_len;
    r.new_key_signature.data = (uint8_t *)new_sig;
    r.new_key_signature.len = new_len;
    r.current_key_signature.data = (uint8_t *)cur_sig;
    r.current_key_signature.len = cur_len;
    c.op_case = WARDEN__V1__COMMAND__OP_ROTATE_DEVICE_KEY;
    c.rotate_device_key = &r;
    return run(f, &c, NULL);
}

/* The honest rotation: newk proves possession and curk (the device's
 * current key) consents, both over (id, new_epoch - 1, new_epoch, newk,
 * nonce). */
static int rotate(struct wfsm *f, const char *id, const struct key *newk,
                  const struct key *curk, uint64_t new_epoch,
                  const uint8_t nonce[32])
{
    uint8_t ns[128], cs[128];
    size_t nl = rot_sign(newk, id, new_epoch - 1, new_epoch, newk, nonce, ns,
                         sizeof ns);
    size_t cl = rot_sign(curk, id, new_epoch - 1, new_epoch, newk, nonce, cs,
                         sizeof cs);
    if (nl == 0 || cl == 0) {
        return -2000;
    }
    return rotate_sigs(f, id, newk, ns, nl, cs, cl);
}

/* The v1 message ("warden.rotate.v1" || len || id || u64 new epoch ||
 * nonce), built by hand: what a client of the old protocol signed. */
static size_t v1_sign(const struct key *signer, const char *id,
                      uint64_t new_epoch, const uint8_t nonce[32],
                      uint8_t *sig, size_t cap)
{
    uint8_t m[16 + 4 + 64 + 8 + 32];
    size_t n = strlen(id), w = 0;
    memcpy(m, "warden.rotate.v1", 16);
    w = 16;
    for (int i = 3; i >= 0; i--) {
        m[w++] = (uint8_t)(n >> (8 * i));
    }
    memcpy(m + w, id, n);
    w += n;
    for (int i = 7; i >= 0; i--) {
        m[w++] = (uint8_t)(new_epoch >> (8 * i));
    }
    memcpy(m + w, nonce, 32);
    w += 32;
    return key_sign(signer, m, w, sig, cap);
}

/* The last audit entry is a DENIED KEY_ROTATE whose detail names `what`,
 * and exactly one entry was added since h0. */
static void check_rotate_denied(struct wfsm *f, uint64_t h0, const char *what)
{
    struct audit_rec r;
    CHECK_EQ_INT(head(f, NULL), h0 + 1);
    CHECK_EQ_INT(ftu_last_audit(f, &r), 0);
    CHECK_EQ_INT(r.action, WARDEN__V1__AUDIT_ACTION__AUDIT_ACTION_KEY_ROTATE);
    CHECK_EQ_INT(r.outcome, WARDEN__V1__AUDIT_OUTCOME__AUDIT_OUTCOME_DENIED);
    if (strstr(r.detail, what) == NULL) {
        fprintf(stderr, "detail %s: no \"%s\"\n", r.detail, what);
        CHECK(0);
    }
}

/* Submit telemetry signed by k claiming `epoch`; returns the result enum
 * (or a negative command code). */
static int telemetry(struct wfsm *f, const char *id, const struct key *k,
                     uint64_t epoch, uint64_t counter, const char *who,
                     unsigned role)
{
    static const uint8_t payload[] = "{\"t\":21.5}";
    uint8_t dg[32];
    unsigned int dl;
    EVP_Digest(payload, sizeof payload - 1, dg, &dl, EVP_sha256(), NULL);
    uint8_t msg[FRESH_MSG_MAX], sig[128];
    size_t ml = fresh_message(id, epoch, counter, dg, msg, sizeof msg);
    size_t sl = key_sign(k, msg, ml, sig, sizeof sig);
    Warden__V1__Command c;
    cmd_init(&c, who, role);
    Warden__V1__SubmitTelemetryRequest r =
        WARDEN__V1__SUBMIT_TELEMETRY_REQUEST__INIT;
    r.device_id = (char *)id;
    r.key_epoch = epoch;
    r.counter = counter;
    r.payload_digest.data = dg;
    r.payload_digest.len = 32;
    r.signature.data = sig;
    r.signature.len = sl;
    r.payload.data = (uint8_t *)payload;
    r.payload.len = sizeof payload - 1;
    c.op_case = WARDEN__V1__COMMAND__OP_SUBMIT_TELEMETRY;
    c.submit_telemetry = &r;
    struct wfsm_result res;
    int code = run(f, &c, &res);
    if (code != 0) {
        wfsm_result_free(&res);
        return code;
    }
    Warden__V1__SubmitTelemetryResponse *resp =
        warden__v1__submit_telemetry_response__unpack(NULL, res.resp_len,
                                                      res.resp);
    int out = resp ? (int)resp->result : -3000;
    warden__v1__submit_telemetry_response__free_unpacked(resp, NULL);
    wfsm_result_free(&res);
    return out;
}

static void rotation_for(int alg_old, int alg_new)
{
    struct wfsm *f = fsm_new();
    CHECK(f != NULL);
    struct key k1, k2, k3;
    CHECK_EQ_INT(key_new(&k1, alg_old), 0);
    CHECK_EQ_INT(key_new(&k2, alg_new), 0);
    CHECK_EQ_INT(key_new(&k3, alg_new), 0);
    const char *id = "rot-1";
    CHECK_EQ_INT(enroll(f, id, &k1, "gw-a"), 0);
    CHECK_EQ_INT(set_state(f, id, S_ACTIVE, WROLE_OPERATOR), 0);
    CHECK_EQ_INT(telemetry(f, id, &k1, 1, 1, "gw-a", WROLE_GATEWAY), T_(ACCEPTED));

    uint8_t nonce[32], other[32];
    /* no nonce yet */
    CHECK_EQ_INT(rotate(f, id, &k2, &k1, 2, nonce), WERR_PRECOND);
    CHECK_EQ_INT(issue_nonce(f, id, nonce, 0xa5), 0);
    /* signed over the wrong nonce, or by a key other than the new one */
    memset(other, 0x5a, sizeof other);
    uint64_t h0 = head(f, NULL);
    CHECK_EQ_INT(rotate(f, id, &k2, &k1, 2, other), WERR_PERM);
    check_rotate_denied(f, h0, "proof of possession");
    struct audit_rec r;
    CHECK_EQ_INT(rotate(f, id, &k2, &k1, 3, nonce), WERR_PERM); /* wrong epoch */

    /* The compromised-gateway attack: the gateway generated k2 and proves
     * possession of it, but the device's current key k1 never consented.
     * Without a current-key signature, or with one by a key other than
     * k1 (the gateway's own k3), it is refused and audited. */
    uint8_t ns[128], cs[128], xs[128];
    size_t nl = rot_sign(&k2, id, 1, 2, &k2, nonce, ns, sizeof ns);
    CHECK(nl > 0);
    h0 = head(f, NULL);
    CHECK_EQ_INT(rotate_sigs(f, id, &k2, ns, nl, NULL, 0), WERR_PERM);
    check_rotate_denied(f, h0, "current_key_signature");
    size_t xl = rot_sign(&k3, id, 1, 2, &k2, nonce, xs, sizeof xs);
    h0 = head(f, NULL);
    CHECK_EQ_INT(rotate_sigs(f, id, &k2, ns, nl, xs, xl), WERR_PERM);
    check_rotate_denied(f, h0, "consent by the current key");
    /* No new-key signature at all: the current key alone is not enough. */
    size_t cl = rot_sign(&k1, id, 1, 2, &k2, nonce, cs, sizeof cs);
    CHECK(cl > 0);
    h0 = head(f, NULL);
    CHECK_EQ_INT(rotate_sigs(f, id, &k2, NULL, 0, cs, cl), WERR_PERM);
    check_rotate_denied(f, h0, "new_key_signature");
    /* The signatures swapped between the two fields. */
    CHECK_EQ_INT(rotate_sigs(f, id, &k2, cs, cl, ns, nl), WERR_PERM);
    /* The device consented to k3, and the gateway substitutes its own k2
     * (with a valid proof for k2): the consent binds the key, so no. */
    cl = rot_sign(&k1, id, 1, 2, &k3, nonce, cs, sizeof cs);
    CHECK(cl > 0);
    h0 = head(f, NULL);
    CHECK_EQ_INT(rotate_sigs(f, id, &k2, ns, nl, cs, cl), WERR_PERM);
    check_rotate_denied(f, h0, "consent by the current key");
    /* Consent for another epoch pair (the current epoch is bound too). */
    cl = rot_sign(&k1, id, 2, 2, &k2, nonce, cs, sizeof cs);
    CHECK_EQ_INT(rotate_sigs(f, id, &k2, ns, nl, cs, cl), WERR_PERM);
    /* A replayed v1 message ("warden.rotate.v1", new key only, the
     * pre-fix format), even with a v1 signature by the current key too. */
    nl = v1_sign(&k2, id, 2, nonce, ns, sizeof ns);
    cl = v1_sign(&k1, id, 2, nonce, cs, sizeof cs);
    CHECK(nl > 0 && cl > 0);
    h0 = head(f, NULL);
    CHECK_EQ_INT(rotate_sigs(f, id, &k2, ns, nl, NULL, 0), WERR_PERM);
    check_rotate_denied(f, h0, "rotate");
    CHECK_EQ_INT(rotate_sigs(f, id, &k2, ns, nl, cs, cl), WERR_PERM);
    /* None of the refusals rotated anything. */
    {
        Warden__V1__Device *d0 = get_dev(f, id);
        CHECK(d0 != NULL);
        CHECK_EQ_INT(d0->key_epoch, 1);
        CHECK_EQ_INT(d0->public_key.len, k1.pub_len);
        CHECK(memcmp(d0->public_key.data, k1.pub, k1.pub_len) == 0);
        inv_device_free(d0);
    }
    /* a gateway the device is not bound to */
    {
        Warden__V1__Command c;
        cmd_init(&c, "gw-evil", WROLE_GATEWAY);
        Warden__V1__IssueRotationNonceRequest q =
            WARDEN__V1__ISSUE_ROTATION_NONCE_REQUEST__INIT;
        q.device_id = (char *)id;
        q.nonce.data = other;
        q.nonce.len = 32;
        c.op_case = WARDEN__V1__COMMAND__OP_ISSUE_ROTATION_NONCE;
        c.issue_rotation_nonce = &q;
        uint64_t hb = head(f, NULL);
        CHECK_EQ_INT(run(f, &c, NULL), WERR_PERM);
        CHECK_EQ_INT(head(f, NULL), hb + 1); /* the denial is audited */
        CHECK_EQ_INT(ftu_last_audit(f, &r), 0);
        CHECK_EQ_INT(r.action, WARDEN__V1__AUDIT_ACTION__AUDIT_ACTION_AUTHZ_DENIAL);
        CHECK_EQ_STR(r.principal, "gw-evil");
    }
    /* the right proofs: the nonce survived every failed attempt */
    h0 = head(f, NULL);
    CHECK_EQ_INT(rotate(f, id, &k2, &k1, 2, nonce), 0);
    CHECK_EQ_INT(head(f, NULL), h0 + 1);
    CHECK_EQ_INT(ftu_last_audit(f, &r), 0);
    CHECK_EQ_INT(r.outcome, WARDEN__V1__AUDIT_OUTCOME__AUDIT_OUTCOME_OK);
    Warden__V1__Device *d = get_dev(f, id);
    CHECK(d != NULL);
    CHECK_EQ_INT(d->key_epoch, 2);
    CHECK_EQ_INT(d->key_algorithm, alg_new);
    inv_device_free(d);
    /* the nonce was consumed: reusing it fails */
    CHECK_EQ_INT(rotate(f, id, &k3, &k2, 3, nonce), WERR_PRECOND);

    /* telemetry: the old epoch is stale; the old key cannot claim the new
     * epoch; the new key works and the window carried over */
    CHECK_EQ_INT(telemetry(f, id, &k1, 1, 2, "gw-a", WROLE_GATEWAY), T_(STALE_EPOCH));
    CHECK_EQ_INT(telemetry(f, id, &k1, 2, 2, "gw-a", WROLE_GATEWAY),
                 T_(BAD_SIGNATURE));
    CHECK_EQ_INT(telemetry(f, id, &k2, 2, 1, "gw-a", WROLE_GATEWAY), T_(REPLAY));
    CHECK_EQ_INT(telemetry(f, id, &k2, 2, 2, "gw-a", WROLE_GATEWAY), T_(ACCEPTED));

    /* an expired nonce */
    CHECK_EQ_INT(issue_nonce(f, id, nonce, 0x11), 0);
    for (unsigned i = 0; i <= LC_NONCE_TTL_ENTRIES; i++) {
        Warden__V1__Command c;
        cmd_init(&c, "", 0);
        Warden__V1__Tick tk = WARDEN__V1__TICK__INIT;
        c.op_case = WARDEN__V1__COMMAND__OP_TICK;
        c.tick = &tk;
        CHECK_EQ_INT(run(f, &c, NULL), 0);
    }
    CHECK_EQ_INT(rotate(f, id, &k3, &k2, 3, nonce), WERR_PRECOND);
    CHECK_EQ_INT(ftu_last_audit(f, &r), 0);
    CHECK(strstr(r.detail, "expired") != NULL);
    /* A fresh nonce: the retired key k1 can no longer consent, k2 can. */
    CHECK_EQ_INT(issue_nonce(f, id, nonce, 0x22), 0);
    CHECK_EQ_INT(rotate(f, id, &k3, &k1, 3, nonce), WERR_PERM);
    CHECK_EQ_INT(rotate(f, id, &k3, &k2, 3, nonce), 0);
    EVP_PKEY_free(k1.pk);
    EVP_PKEY_free(k2.pk);
    EVP_PKEY_free(k3.pk);
    wfsm_close(f);
}

TEST(rotation_ed25519)
{
    rotation_for(ED, ED);
}

TEST(rotation_p256)
{
    rotation_for(P256, P256);
}

TEST(rotation_across_algorithms)
{
    rotation_for(ED, P256);
}

TEST(telemetry_window_and_binding)
{
    struct wfsm *f = fsm_new();
    CHECK(f != NULL);
    struct key k;
    CHECK_EQ_INT(key_new(&k, P256), 0);
    const char *id = "tl-1";
    CHECK_EQ_INT(enroll(f, id, &k, "gw-a"), 0);
    CHECK_EQ_INT(telemetry(f, id, &k, 1, 1, "gw-a", WROLE_GATEWAY), T_(NOT_ACTIVE));
    CHECK_EQ_INT(set_state(f, id, S_ACTIVE, WROLE_OPERATOR), 0);
    uint64_t h0 = head(f, NULL);
    CHECK_EQ_INT(telemetry(f, id, &k, 1, 2000, "gw-a", WROLE_GATEWAY), T_(ACCEPTED));
    CHECK_EQ_INT(telemetry(f, id, &k, 1, 1999, "gw-a", WROLE_GATEWAY), T_(ACCEPTED));
    CHECK_EQ_INT(telemetry(f, id, &k, 1, 2000, "gw-a", WROLE_GATEWAY), T_(REPLAY));
    CHECK_EQ_INT(telemetry(f, id, &k, 1, 2000 - FRESH_WINDOW + 1, "gw-a",
                           WROLE_GATEWAY),
                 T_(ACCEPTED));
    CHECK_EQ_INT(telemetry(f, id, &k, 1, 2000 - FRESH_WINDOW, "gw-a",
                           WROLE_GATEWAY),
                 T_(TOO_OLD));
    CHECK_EQ_INT(head(f, NULL), h0); /* telemetry is not audited */
    /* quarantined devices keep reporting */
    CHECK_EQ_INT(set_state(f, id, S_QUAR, WROLE_OPERATOR), 0);
    CHECK_EQ_INT(telemetry(f, id, &k, 1, 2001, "gw-a", WROLE_GATEWAY), T_(ACCEPTED));
    CHECK_EQ_INT(telemetry(f, "ghost", &k, 1, 1, "gw-a", WROLE_GATEWAY),
                 T_(UNKNOWN_DEVICE));
    /* another gateway may not submit for this device: denied, audited */
    h0 = head(f, NULL);
    CHECK_EQ_INT(telemetry(f, id, &k, 1, 2002, "gw-b", WROLE_GATEWAY), WERR_PERM);
    CHECK_EQ_INT(head(f, NULL), h0 + 1);
    struct audit_rec r;
    CHECK_EQ_INT(ftu_last_audit(f, &r), 0);
    CHECK_EQ_INT(r.outcome, WARDEN__V1__AUDIT_OUTCOME__AUDIT_OUTCOME_DENIED);
    CHECK_EQ_STR(r.target, id);
    /* the counter it tried is still fresh for the right gateway */
    CHECK_EQ_INT(telemetry(f, id, &k, 1, 2002, "gw-a", WROLE_GATEWAY), T_(ACCEPTED));
    /* rejections are counted per device */
    struct werr e = {0};
    struct store_txn *t;
    CHECK_EQ_INT(store_txn_begin(wfsm_store(f), 0, &t, &e), 0);
    Warden__V1__TelemetryWindow *w = NULL;
    CHECK_EQ_INT(fresh_get(wfsm_inv(f), t, id, &w, &e), 0);
    uint64_t unknown = 0;
    CHECK_EQ_INT(fresh_unknown_count(wfsm_inv(f), t, &unknown, &e), 0);
    store_txn_abort(t);
    CHECK_EQ_INT(w->accepted, 5);
    CHECK_EQ_INT(w->replayed, 1);
    CHECK_EQ_INT(w->too_old, 1);
    CHECK_EQ_INT(w->not_active, 1);
    CHECK_EQ_INT(w->highest, 2002);
    CHECK_EQ_INT(unknown, 1);
    warden__v1__telemetry_window__free_unpacked(w, NULL);
    EVP_PKEY_free(k.pk);
    wfsm_close(f);
}

/* ---- control commands ----------------------------------------------------*/

static int rotate_cmd_key(struct wfsm *f, const char *kid, uint8_t seed_fill,
                          uint8_t pub[32])
{
    uint8_t seed[32];
    memset(seed, seed_fill, sizeof seed);
    Warden__V1__Command c;
    cmd_init(&c, "node-1", WROLE_PEER);
    Warden__V1__RotateCommandKeyOp op = WARDEN__V1__ROTATE_COMMAND_KEY_OP__INIT;
    op.key_id = (char *)kid;
    op.private_key.data = seed;
    op.private_key.len = sizeof seed;
    c.op_case = WARDEN__V1__COMMAND__OP_ROTATE_COMMAND_KEY;
    c.rotate_command_key = &op;
    struct wfsm_result res;
    int code = run(f, &c, &res);
    if (code == 0) {
        Warden__V1__RotateCommandKeyResponse *r =
            warden__v1__rotate_command_key_response__unpack(NULL, res.resp_len,
                                                            res.resp);
        if (r == NULL || r->public_key.len != 32) {
            code = -4000;
        } else {
            memcpy(pub, r->public_key.data, 32);
        }
        warden__v1__rotate_command_key_response__free_unpacked(r, NULL);
    }
    wfsm_result_free(&res);
    return code;
}

static int issue_cmd(struct wfsm *f, const char *id, unsigned role,
                     Warden__V1__IssueCommandResponse **out)
{
    Warden__V1__Command c;
    cmd_init(&c, "rita", role);
    Warden__V1__IssueCommandRequest r = WARDEN__V1__ISSUE_COMMAND_REQUEST__INIT;
    r.device_id = (char *)id;
    r.payload.data = (uint8_t *)"fw-update 2.0";
    r.payload.len = 13;
    c.op_case = WARDEN__V1__COMMAND__OP_ISSUE_COMMAND;
    c.issue_command = &r;
    struct wfsm_result res;
    int code = run(f, &c, &res);
    *out = NULL;
    if (code == 0) {
        *out = warden__v1__issue_command_response__unpack(NULL, res.resp_len,
                                                          res.resp);
    }
    wfsm_result_free(&res);
    return code;
}

TEST(control_commands)
{
    struct wfsm *f = fsm_new();
    CHECK(f != NULL);
    struct key k;
    CHECK_EQ_INT(key_new(&k, ED), 0);
    CHECK_EQ_INT(enroll(f, "cc-1", &k, "gw-a"), 0);
    Warden__V1__IssueCommandResponse *r;
    CHECK_EQ_INT(issue_cmd(f, "cc-1", WROLE_ROLLOUT, &r), WERR_PRECOND); /* PROV */
    CHECK_EQ_INT(set_state(f, "cc-1", S_ACTIVE, WROLE_OPERATOR), 0);
    CHECK_EQ_INT(issue_cmd(f, "cc-1", WROLE_ROLLOUT, &r), WERR_PRECOND); /* no key */
    uint8_t pub[32], pub2[32];
    CHECK_EQ_INT(rotate_cmd_key(f, "k1", 7, pub), 0);
    struct audit_rec ar;
    CHECK_EQ_INT(ftu_last_audit(f, &ar), 0);
    CHECK_EQ_INT(ar.action, WARDEN__V1__AUDIT_ACTION__AUDIT_ACTION_COMMAND_KEY_ROTATE);
    CHECK_EQ_STR(ar.target, "k1");
    CHECK_EQ_INT(rotate_cmd_key(f, "k1", 8, pub2), WERR_EXISTS); /* id reuse */
    CHECK_EQ_INT(issue_cmd(f, "cc-1", WROLE_GATEWAY, &r), WERR_PERM);
    uint64_t last = 0;
    for (uint64_t i = 1; i <= 3; i++) {
        uint64_t h0 = head(f, NULL);
        CHECK_EQ_INT(issue_cmd(f, "cc-1", WROLE_ROLLOUT, &r), 0);
        CHECK(r != NULL);
        CHECK_EQ_INT(head(f, NULL), h0 + 1);
        CHECK_EQ_INT(r->seq, i);
        CHECK_EQ_STR(r->key_id, "k1");
        struct werr e = {0};
        struct ctl_envelope env;
        CHECK_EQ_INT(ctl_verify(r->envelope.data, r->envelope.len,
                                r->signature.data, r->signature.len, pub, "cc-1",
                                1, last, &env, &e),
                     CTL_OK);
        CHECK_EQ_INT(env.time_ms, 1000);
        last = env.seq;
        CHECK_EQ_INT(ctl_verify(r->envelope.data, r->envelope.len,
                                r->signature.data, r->signature.len, pub, "cc-1",
                                1, last, NULL, &e),
                     CTL_REPLAY);
        warden__v1__issue_command_response__free_unpacked(r, NULL);
    }
    /* rotated: new envelopes are signed by k2, and the old key fails them */
    CHECK_EQ_INT(rotate_cmd_key(f, "k2", 9, pub2), 0);
    CHECK_EQ_INT(issue_cmd(f, "cc-1", WROLE_OPERATOR, &r), 0);
    CHECK_EQ_STR(r->key_id, "k2");
    CHECK_EQ_INT(r->seq, 4);
    struct werr e = {0};
    CHECK_EQ_INT(ctl_verify(r->envelope.data, r->envelope.len, r->signature.data,
                            r->signature.len, pub2, "cc-1", 1, last, NULL, &e),
                 CTL_OK);
    CHECK_EQ_INT(ctl_verify(r->envelope.data, r->envelope.len, r->signature.data,
                            r->signature.len, pub, "cc-1", 1, last, NULL, &e),
                 CTL_BAD_SIGNATURE);
    warden__v1__issue_command_response__free_unpacked(r, NULL);
    EVP_PKEY_free(k.pk);
    wfsm_close(f);
}

/* ---- EnrollDevices, notes, denials --------------------------------------*/

static int enroll_batch(struct wfsm *f, const char *prefix, size_t n,
                        const struct key *k, int dup_at)
{
    Warden__V1__EnrollDeviceRequest items[8], *ptrs[8];
    char ids[8][32];
    for (size_t i = 0; i < n; i++) {
        warden__v1__enroll_device_request__init(&items[i]);
        snprintf(ids[i], sizeof ids[i], "%s-%zu", prefix,
                 (int)i == dup_at ? (size_t)0 : i);
        items[i].device_id = ids[i];
        items[i].key_algorithm = (Warden__V1__KeyAlgorithm)k->alg;
        items[i].public_key.data = (uint8_t *)k->pub;
        items[i].public_key.len = k->pub_len;
        items[i].attestation_digest.data = digest;
        items[i].attestation_digest.len = sizeof digest;
        items[i].gateway_id = (char *)"gw-a";
        ptrs[i] = &items[i];
    }
    Warden__V1__Command c;
    cmd_init(&c, "alice", WROLE_OPERATOR);
    Warden__V1__EnrollDevicesRequest r = WARDEN__V1__ENROLL_DEVICES_REQUEST__INIT;
    r.n_devices = n;
    r.devices = ptrs;
    c.op_case = WARDEN__V1__COMMAND__OP_ENROLL_DEVICES;
    c.enroll_devices = &r;
    return run(f, &c, NULL);
}

TEST(enroll_devices_all_or_nothing)
{
    struct wfsm *f = fsm_new();
    CHECK(f != NULL);
    struct key k;
    CHECK_EQ_INT(key_new(&k, ED), 0);
    uint64_t h0 = head(f, NULL);
    CHECK_EQ_INT(enroll_batch(f, "b", 5, &k, -1), 0);
    CHECK_EQ_INT(head(f, NULL), h0 + 5);
    CHECK_EQ_INT(dev_state(f, "b-4"), S_PROV);
    /* item 3 duplicates item 0: nothing of the batch stays, one rejection */
    CHECK_EQ_INT(enroll_batch(f, "c", 5, &k, 3), WERR_EXISTS);
    CHECK_EQ_INT(head(f, NULL), h0 + 6);
    CHECK_EQ_INT(dev_state(f, "c-0"), -1);
    struct audit_rec r;
    CHECK_EQ_INT(ftu_last_audit(f, &r), 0);
    CHECK_EQ_INT(r.outcome, WARDEN__V1__AUDIT_OUTCOME__AUDIT_OUTCOME_REJECTED);
    CHECK_EQ_STR(r.target, "c-0");
    CHECK(strstr(r.detail, "devices[3]") != NULL);
    CHECK_EQ_INT(enroll_batch(f, "z", 0, &k, -1), WERR_INVALID);
    EVP_PKEY_free(k.pk);
    wfsm_close(f);
}

TEST(notes_and_denials)
{
    struct wfsm *f = fsm_new();
    CHECK(f != NULL);
    Warden__V1__Command c;
    cmd_init(&c, "node-1", WROLE_PEER);
    Warden__V1__AuditNote n = WARDEN__V1__AUDIT_NOTE__INIT;
    n.action = WARDEN__V1__AUDIT_ACTION__AUDIT_ACTION_MEMBERSHIP;
    n.target = (char *)"node-4@10.0.0.4:7444";
    n.outcome = WARDEN__V1__AUDIT_OUTCOME__AUDIT_OUTCOME_OK;
    n.detail = (char *)"add as voter";
    c.op_case = WARDEN__V1__COMMAND__OP_AUDIT_NOTE;
    c.audit_note = &n;
    CHECK_EQ_INT(run(f, &c, NULL), 0);
    CHECK_EQ_INT(head(f, NULL), 1);
    struct audit_rec r;
    CHECK_EQ_INT(ftu_last_audit(f, &r), 0);
    CHECK_EQ_INT(r.action, WARDEN__V1__AUDIT_ACTION__AUDIT_ACTION_MEMBERSHIP);
    CHECK_EQ_STR(r.principal, "node-1");
    /* forging a critical action through a note is refused (and recorded) */
    n.action = WARDEN__V1__AUDIT_ACTION__AUDIT_ACTION_KEY_ROTATE;
    CHECK_EQ_INT(run(f, &c, NULL), WERR_INVALID);
    c.principal_role = WROLE_OPERATOR;
    n.action = WARDEN__V1__AUDIT_ACTION__AUDIT_ACTION_NOTE;
    CHECK_EQ_INT(run(f, &c, NULL), WERR_PERM);
    CHECK_EQ_INT(head(f, NULL), 3);

    Warden__V1__AuditDenialRow rows[3], *rp[AUDIT_DENIAL_ROWS_MAX + 1];
    const char *who[3] = {"mallory", "gw-x", "eve"};
    for (int i = 0; i < 3; i++) {
        warden__v1__audit_denial_row__init(&rows[i]);
        rows[i].principal_name = (char *)who[i];
        rows[i].principal_role = WROLE_GATEWAY;
        rows[i].method = (char *)"/warden.v1.Inventory/EnrollDevice";
        rows[i].count = 10u * (unsigned)(i + 1);
        rp[i] = &rows[i];
    }
    cmd_init(&c, "node-1", WROLE_PEER);
    Warden__V1__AuditDenials d = WARDEN__V1__AUDIT_DENIALS__INIT;
    d.n_rows = 3;
    d.rows = rp;
    d.dropped = 42;
    d.node = (char *)"node-1";
    c.op_case = WARDEN__V1__COMMAND__OP_DENIALS;
    c.denials = &d;
    CHECK_EQ_INT(run(f, &c, NULL), 0);
    CHECK_EQ_INT(head(f, NULL), 3 + 4);
    struct werr e = {0};
    struct store_txn *t;
    CHECK_EQ_INT(store_txn_begin(wfsm_store(f), 0, &t, &e), 0);
    for (uint64_t s = 4; s <= 6; s++) {
        CHECK_EQ_INT(audit_get(wfsm_audit(f), t, s, &r, &e), 0);
        CHECK_EQ_STR(r.principal, who[s - 4]);
        CHECK_EQ_INT(r.count, 10 * (s - 3));
        CHECK_EQ_INT(r.outcome, WARDEN__V1__AUDIT_OUTCOME__AUDIT_OUTCOME_DENIED);
        CHECK_EQ_INT(r.action, WARDEN__V1__AUDIT_ACTION__AUDIT_ACTION_AUTHZ_DENIAL);
    }
    CHECK_EQ_INT(audit_get(wfsm_audit(f), t, 7, &r, &e), 0);
    store_txn_abort(t);
    CHECK_EQ_STR(r.principal, "*");
    CHECK_EQ_INT(r.count, 42);
    /* over the row bound: refused, nothing itemised */
    for (int i = 0; i <= AUDIT_DENIAL_ROWS_MAX; i++) {
        rp[i] = &rows[0];
    }
    d.n_rows = AUDIT_DENIAL_ROWS_MAX + 1;
    CHECK_EQ_INT(run(f, &c, NULL), WERR_INVALID);
    CHECK_EQ_INT(head(f, NULL), 8);
    uint64_t total;
    CHECK_EQ_INT(verify_all(f, &total), 0);
    CHECK_EQ_INT(total, 8);
    wfsm_close(f);
}

/* ---- replication: same entries, same ledger; snapshots keep it ---------*/

TEST(identical_heads_and_snapshot)
{
    struct wfsm *a = fsm_new(), *b = fsm_new(), *c = fsm_new();
    CHECK(a != NULL && b != NULL && c != NULL);
    struct key k;
    CHECK_EQ_INT(key_new(&k, ED), 0);
    struct wfsm *both[2] = {a, b};
    uint8_t pub[32];
    for (int i = 0; i < 2; i++) {
        struct wfsm *f = both[i];
        CHECK_EQ_INT(enroll(f, "m-1", &k, "gw-a"), 0);
        CHECK_EQ_INT(enroll(f, "m-1", &k, "gw-a"), WERR_EXISTS);
        CHECK_EQ_INT(set_state(f, "m-1", S_ACTIVE, WROLE_OPERATOR), 0);
        CHECK_EQ_INT(set_state(f, "m-1", S_PROV, WROLE_OPERATOR), WERR_PRECOND);
        CHECK_EQ_INT(rotate_cmd_key(f, "k1", 3, pub), 0);
        Warden__V1__IssueCommandResponse *r;
        CHECK_EQ_INT(issue_cmd(f, "m-1", WROLE_ADMIN, &r), 0);
        warden__v1__issue_command_response__free_unpacked(r, NULL);
        CHECK_EQ_INT(telemetry(f, "m-1", &k, 1, 5, "gw-a", WROLE_GATEWAY),
                     T_(ACCEPTED));
    }
    uint8_t ha[AUDIT_HASH_LEN], hb[AUDIT_HASH_LEN], hc[AUDIT_HASH_LEN];
    CHECK_EQ_INT(head(a, ha), 6);
    CHECK_EQ_INT(head(b, hb), 6);
    CHECK(memcmp(ha, hb, sizeof ha) == 0);
    /* a different history gives a different head */
    CHECK_EQ_INT(enroll(c, "m-2", &k, "gw-a"), 0);
    for (int i = 0; i < 5; i++) {
        CHECK_EQ_INT(set_state(c, "m-2", S_PROV, WROLE_OPERATOR), WERR_PRECOND);
    }
    CHECK_EQ_INT(head(c, hc), 6);
    CHECK(memcmp(ha, hc, sizeof ha) != 0);

    /* snapshot a, restore into c: c's ledger is a's */
    struct werr e = {0};
    uint8_t *snap;
    size_t len;
    int skipped = -1;
    CHECK_EQ_INT(wfsm_snapshot_copy(a, &snap, &len, &e), 0);
    CHECK_EQ_INT(enroll(a, "m-3", &k, "gw-a"), 0); /* a moves on */
    /* c is at the same index (8 each... make c older) */
    CHECK(wfsm_applied_index(c) < wfsm_applied_index(a));
    CHECK_EQ_INT(wfsm_restore(c, snap, len, &skipped, &e), 0);
    free(snap);
    CHECK_EQ_INT(skipped, 0);
    CHECK_EQ_INT(head(c, hc), 6);
    CHECK(memcmp(ha, hc, sizeof ha) == 0);
    CHECK_EQ_INT(enroll(c, "m-3", &k, "gw-a"), 0);
    CHECK_EQ_INT(head(a, ha), 7);
    CHECK_EQ_INT(head(c, hc), 7);
    CHECK(memcmp(ha, hc, sizeof ha) == 0);
    uint64_t total;
    CHECK_EQ_INT(verify_all(c, &total), 0);
    EVP_PKEY_free(k.pk);
    wfsm_close(a);
    wfsm_close(b);
    wfsm_close(c);
}

int main(void)
{
    snprintf(tmp_root, sizeof tmp_root, "/tmp/warden-fsm-i4-XXXXXX");
    if (mkdtemp(tmp_root) == NULL) {
        return 1;
    }
    memset(digest, 0xd1, sizeof digest);
    RUN(every_transition);
    RUN(reenroll_and_rebind);
    RUN(rotation_ed25519);
    RUN(rotation_p256);
    RUN(rotation_across_algorithms);
    RUN(telemetry_window_and_binding);
    RUN(control_commands);
    RUN(enroll_devices_all_or_nothing);
    RUN(notes_and_denials);
    RUN(identical_heads_and_snapshot);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_root);
    if (!unit_failed_total && system(cmd) != 0) {
        fprintf(stderr, "cleanup failed\n");
    }
    return unit_done();
}
