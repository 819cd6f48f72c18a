/* test_consensus_fsm_rollout.c - issue 6 through the replicated state
 * machine: encoded Commands applied with wfsm_apply over real LMDB.
 * Manifests (valid, bad signature, unknown/revoked key, rotation, counter
 * not increasing, wrong hardware, bounds); every state-table pair, allowed
 * and refused (counted and audited); a simulated fleet of 2,000 devices
 * enrolled in EnrollDevices batches: a healthy rollout through all stages,
 * a 30% canary failure that aborts with no device outside the canary ever
 * assigned, pause/resume holding assignments, replayed and duplicate
 * reports not double-counted, anti-downgrade through every path including
 * the rollback roll-forward, timeouts; and the audit chain verifies. */
#include "consensus/fsm.h"
#include "consensus/fsm_rollout.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "domain/audit.h"
#include "domain/audit_chain.h"
#include "domain/ctl_envelope.h"
#include "domain/inventory.h"
#include "domain/rollout.h"
#include "storage/store.h"
#include "fsm_testutil.h"
#include "unit.h"

#define ST(x) WARDEN__V1__ROLLOUT_STATE__ROLLOUT_STATE_##x
#define PH(x) WARDEN__V1__UPDATE_PHASE__UPDATE_PHASE_##x
#define RR(x) WARDEN__V1__REPORT_RESULT__REPORT_RESULT_##x
#define AA(x) WARDEN__V1__AUDIT_ACTION__AUDIT_ACTION_##x
#define OP(x) WARDEN__V1__COMMAND__OP_##x

static char tmp_root[256];
static unsigned dir_seq;
static uint64_t now_ms = 1000000;

/* ---- keys ------------------------------------------------------------- */

struct key {
    EVP_PKEY *pk;
    uint8_t pub[32];
};

static int key_new(struct key *k)
{
    size_t n = 32;
    k->pk = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    return k->pk && EVP_PKEY_get_raw_public_key(k->pk, k->pub, &n) == 1 ? 0 : -1;
}

static size_t key_sign(const struct key *k, const uint8_t *m, size_t n,
                       uint8_t sig[64])
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    size_t sl = 64;
    int ok = EVP_DigestSignInit(md, NULL, NULL, NULL, k->pk) == 1 &&
             EVP_DigestSign(md, sig, &sl, m, n) == 1;
    EVP_MD_CTX_free(md);
    return ok ? sl : 0;
}

static struct key relkey, relkey2, devkey_;

/* ---- commands ----------------------------------------------------------*/

static struct wfsm *fsm_new(void)
{
    return ftu_fsm_new(tmp_root, &dir_seq);
}

static void cmd_init(Warden__V1__Command *c, const char *who, unsigned role)
{
    ftu_cmd_init(c, who, role, now_ms);
}

static char last_msg[WERR_MSG_MAX];

/* The last command's result message, for the checks on why it failed. */
static int run(struct wfsm *f, const Warden__V1__Command *c,
               struct wfsm_result *res)
{
    return ftu_run(f, c, res, last_msg, sizeof last_msg);
}

static int tick(struct wfsm *f)
{
    Warden__V1__Command c;
    cmd_init(&c, "node1", WROLE_PEER);
    Warden__V1__Tick tk = WARDEN__V1__TICK__INIT;
    c.op_case = OP(TICK);
    c.tick = &tk;
    return run(f, &c, NULL);
}

static int cmd_key(struct wfsm *f)
{
    Warden__V1__Command c;
    cmd_init(&c, "node1", WROLE_PEER);
    uint8_t seed[32];
    memset(seed, 7, sizeof seed);
    Warden__V1__RotateCommandKeyOp op = WARDEN__V1__ROTATE_COMMAND_KEY_OP__INIT;
    op.key_id = (char *)"ck1";
    op.private_key.data = seed;
    op.private_key.len = sizeof seed;
    c.op_case = OP(ROTATE_COMMAND_KEY);
    c.rotate_command_key = &op;
    return run(f, &c, NULL);
}

static int reg_key(struct wfsm *f, const char *kid, const struct key *k,
                   unsigned role)
{
    Warden__V1__Command c;
    cmd_init(&c, "root", role);
    Warden__V1__RegisterReleaseKeyRequest r =
        WARDEN__V1__REGISTER_RELEASE_KEY_REQUEST__INIT;
    r.key_id = (char *)kid;
    r.public_key.data = (uint8_t *)k->pub;
    r.public_key.len = 32;
    c.op_case = OP(REGISTER_RELEASE_KEY);
    c.register_release_key = &r;
    return run(f, &c, NULL);
}

static int revoke_key(struct wfsm *f, const char *kid, unsigned role)
{
    Warden__V1__Command c;
    cmd_init(&c, "root", role);
    Warden__V1__RevokeReleaseKeyRequest r =
        WARDEN__V1__REVOKE_RELEASE_KEY_REQUEST__INIT;
    r.key_id = (char *)kid;
    r.reason = (char *)"rotated";
    c.op_case = OP(REVOKE_RELEASE_KEY);
    c.revoke_release_key = &r;
    return run(f, &c, NULL);
}

struct rel_opts {
    const char *kid;
    const struct key *k;
    const char *version;
    uint64_t counter;
    const char *models[RO_MODELS_MAX + 2];
    size_t n_models;
    int tamper;          /* flip a manifest byte after signing */
    uint64_t rollback_of;
    const char *reason;
    unsigned role;
};

/* Build a manifest by hand (not with ro_manifest_encode, so bounds the
 * encoder refuses can still be sent). */
static size_t manifest(const struct rel_opts *o, uint8_t *buf, size_t cap)
{
    size_t n = 0;
#define PUT32(v)                                                          \
    do {                                                                  \
        uint32_t v_ = (uint32_t)(v);                                      \
        buf[n++] = (uint8_t)(v_ >> 24); buf[n++] = (uint8_t)(v_ >> 16);   \
        buf[n++] = (uint8_t)(v_ >> 8); buf[n++] = (uint8_t)v_;            \
    } while (0)
#define PUT64(v)                                                          \
    do {                                                                  \
        uint64_t v64_ = (v);                                              \
        for (int i_ = 7; i_ >= 0; i_--) buf[n++] = (uint8_t)(v64_ >> (8 * i_)); \
    } while (0)
#define PUTS(s)                                                           \
    do {                                                                  \
        size_t l_ = strlen(s);                                            \
        PUT32(l_); memcpy(buf + n, s, l_); n += l_;                       \
    } while (0)
    (void)cap;
    PUTS(RO_MANIFEST_TAG);
    PUTS(o->version);
    PUT64(o->counter);
    for (int i = 0; i < 32; i++) buf[n++] = (uint8_t)(0xa0 + (o->counter & 0xf));
    PUT64(1048576);
    PUT32(o->n_models);
    for (size_t i = 0; i < o->n_models; i++) PUTS(o->models[i]);
    return n;
}

/* CreateRelease; returns the code, *id the new release id. */
static int create_release(struct wfsm *f, const struct rel_opts *o, uint64_t *id)
{
    uint8_t m[8192], sig[64];
    size_t n = manifest(o, m, sizeof m);
    key_sign(o->k, m, n, sig);
    if (o->tamper) {
        m[n - 1] ^= 1;
    }
    Warden__V1__Command c;
    cmd_init(&c, "rel", o->role ? o->role : WROLE_ROLLOUT);
    Warden__V1__CreateReleaseRequest r = WARDEN__V1__CREATE_RELEASE_REQUEST__INIT;
    r.manifest.data = m;
    r.manifest.len = n;
    r.key_id = (char *)o->kid;
    r.signature.data = sig;
    r.signature.len = 64;
    r.rollback_of = o->rollback_of;
    r.reason = (char *)(o->reason ? o->reason : "");
    c.op_case = OP(CREATE_RELEASE);
    c.create_release = &r;
    struct wfsm_result res;
    int code = run(f, &c, &res);
    if (code == 0 && id != NULL) {
        Warden__V1__CreateReleaseResponse *cr =
            warden__v1__create_release_response__unpack(NULL, res.resp_len, res.resp);
        *id = cr ? cr->release->release_id : 0;
        warden__v1__create_release_response__free_unpacked(cr, NULL);
    }
    wfsm_result_free(&res);
    return code;
}

static uint64_t simple_release(struct wfsm *f, const char *ver, uint64_t ctr)
{
    struct rel_opts o = {.kid = "rk1", .k = &relkey, .version = ver, .counter = ctr,
                         .models = {"m1"}, .n_models = 1};
    uint64_t id = 0;
    return create_release(f, &o, &id) == 0 ? id : 0;
}

struct stage_opts {
    uint32_t pct, max, min_rep, succ, fail;
    uint64_t timeout, bake;
    int aut;
};

static uint64_t create_rollout(struct wfsm *f, uint64_t rel,
                               const struct stage_opts *so, size_t n,
                               const char *sel_model)
{
    Warden__V1__Command c;
    cmd_init(&c, "ro", WROLE_ROLLOUT);
    Warden__V1__RolloutStage st[RO_STAGES_MAX + 1];
    Warden__V1__RolloutStage *sp[RO_STAGES_MAX + 1];
    for (size_t i = 0; i < n; i++) {
        warden__v1__rollout_stage__init(&st[i]);
        st[i].percent_bp = so[i].pct;
        st[i].max_devices = so[i].max;
        st[i].min_reported = so[i].min_rep;
        st[i].success_ratio_bp = so[i].succ;
        st[i].failure_ratio_bp = so[i].fail;
        st[i].per_device_timeout_ms = so[i].timeout;
        st[i].bake_ms = so[i].bake;
        st[i].auto_advance = so[i].aut;
        sp[i] = &st[i];
    }
    Warden__V1__RolloutSelector sel = WARDEN__V1__ROLLOUT_SELECTOR__INIT;
    sel.hardware_model = (char *)(sel_model ? sel_model : "");
    Warden__V1__CreateRolloutRequest r = WARDEN__V1__CREATE_ROLLOUT_REQUEST__INIT;
    r.release_id = rel;
    r.selector = &sel;
    r.n_stages = n;
    r.stages = sp;
    r.name = (char *)"test";
    c.op_case = OP(CREATE_ROLLOUT);
    c.create_rollout = &r;
    struct wfsm_result res;
    uint64_t id = 0;
    if (run(f, &c, &res) == 0) {
        Warden__V1__RolloutResponse *rr =
            warden__v1__rollout_response__unpack(NULL, res.resp_len, res.resp);
        id = rr ? rr->rollout->rollout_id : 0;
        warden__v1__rollout_response__free_unpacked(rr, NULL);
    } else {
        fprintf(stderr, "create_rollout: %s\n", res.msg);
    }
    wfsm_result_free(&res);
    return id;
}

static int transition(struct wfsm *f, uint64_t id, int ev, unsigned role,
                      int force, const Warden__V1__CreateReleaseRequest *rb,
                      Warden__V1__RolloutResponse **out)
{
    Warden__V1__Command c;
    cmd_init(&c, "ro", role);
    Warden__V1__StartRolloutRequest s = WARDEN__V1__START_ROLLOUT_REQUEST__INIT;
    Warden__V1__PauseRolloutRequest p = WARDEN__V1__PAUSE_ROLLOUT_REQUEST__INIT;
    Warden__V1__ResumeRolloutRequest rs = WARDEN__V1__RESUME_ROLLOUT_REQUEST__INIT;
    Warden__V1__AdvanceRolloutRequest a = WARDEN__V1__ADVANCE_ROLLOUT_REQUEST__INIT;
    Warden__V1__AbortRolloutRequest ab = WARDEN__V1__ABORT_ROLLOUT_REQUEST__INIT;
    switch (ev) {
    case RO_EV_START:
        s.rollout_id = id;
        c.op_case = OP(START_ROLLOUT);
        c.start_rollout = &s;
        break;
    case RO_EV_PAUSE:
        p.rollout_id = id;
        c.op_case = OP(PAUSE_ROLLOUT);
        c.pause_rollout = &p;
        break;
    case RO_EV_RESUME:
        rs.rollout_id = id;
        c.op_case = OP(RESUME_ROLLOUT);
        c.resume_rollout = &rs;
        break;
    case RO_EV_ADVANCE:
        a.rollout_id = id;
        a.force = force;
        c.op_case = OP(ADVANCE_ROLLOUT);
        c.advance_rollout = &a;
        break;
    default:
        ab.rollout_id = id;
        ab.reason = (char *)"test abort";
        ab.rollback = (Warden__V1__CreateReleaseRequest *)rb;
        c.op_case = OP(ABORT_ROLLOUT);
        c.abort_rollout = &ab;
    }
    struct wfsm_result res;
    int code = run(f, &c, &res);
    if (code == 0 && out != NULL) {
        *out = warden__v1__rollout_response__unpack(NULL, res.resp_len, res.resp);
    }
    wfsm_result_free(&res);
    return code;
}

static Warden__V1__Rollout *get_rollout(struct wfsm *f, uint64_t id)
{
    struct werr e = {0};
    struct store_txn *t;
    Warden__V1__Rollout *r = NULL;
    if (store_txn_begin(wfsm_store(f), 0, &t, &e) != 0) {
        return NULL;
    }
    if (ro_rollout_get(wfsm_ro(f), t, id, &r, &e) != 0) {
        r = NULL;
    }
    store_txn_abort(t);
    return r;
}

static int rollout_state(struct wfsm *f, uint64_t id)
{
    Warden__V1__Rollout *r = get_rollout(f, id);
    int s = r ? (int)r->state : -1;
    warden__v1__rollout__free_unpacked(r, NULL);
    return s;
}

/* ---- fleet -------------------------------------------------------------*/

static void dev_name(char *buf, size_t cap, const char *prefix, unsigned i)
{
    snprintf(buf, cap, "%s-%05u", prefix, i);
}

static int enroll_fleet(struct wfsm *f, const char *prefix, unsigned n,
                        const char *model)
{
    static uint8_t dg[32];
    for (unsigned base = 0; base < n; base += 200) {
        unsigned m = n - base < 200 ? n - base : 200;
        Warden__V1__EnrollDeviceRequest items[200];
        Warden__V1__EnrollDeviceRequest *ip[200];
        char ids[200][32];
        for (unsigned i = 0; i < m; i++) {
            warden__v1__enroll_device_request__init(&items[i]);
            dev_name(ids[i], sizeof ids[i], prefix, base + i);
            items[i].device_id = ids[i];
            items[i].key_algorithm = WARDEN__V1__KEY_ALGORITHM__KEY_ALGORITHM_ED25519;
            items[i].public_key.data = devkey_.pub;
            items[i].public_key.len = 32;
            items[i].attestation_digest.data = dg;
            items[i].attestation_digest.len = 32;
            items[i].hardware_model = (char *)model;
            items[i].firmware_version = (char *)"1.0";
            items[i].gateway_id = (char *)"gw1";
            ip[i] = &items[i];
        }
        Warden__V1__Command c;
        cmd_init(&c, "alice", WROLE_ADMIN);
        Warden__V1__EnrollDevicesRequest r = WARDEN__V1__ENROLL_DEVICES_REQUEST__INIT;
        r.n_devices = m;
        r.devices = ip;
        c.op_case = OP(ENROLL_DEVICES);
        c.enroll_devices = &r;
        if (run(f, &c, NULL) != 0) {
            fprintf(stderr, "enroll: %s\n", last_msg);
            return -1;
        }
        for (unsigned i = 0; i < m; i++) {
            Warden__V1__Command s;
            cmd_init(&s, "alice", WROLE_ADMIN);
            Warden__V1__SetDeviceStateRequest sr =
                WARDEN__V1__SET_DEVICE_STATE_REQUEST__INIT;
            sr.device_id = ids[i];
            sr.state = WARDEN__V1__DEVICE_STATE__DEVICE_STATE_ACTIVE;
            sr.reason = (char *)"fleet";
            s.op_case = OP(SET_DEVICE_STATE);
            s.set_device_state = &sr;
            if (run(f, &s, NULL) != 0) {
                return -1;
            }
        }
    }
    return 0;
}

/* GetDesiredState as the gateway. Returns the code; *target = rollout id
 * (0: none). Verifies the envelope with the device-side verifier. */
static uint64_t last_seq_seen;
static int desired(struct wfsm *f, const char *id, uint64_t *target)
{
    Warden__V1__Command c;
    cmd_init(&c, "gw1", WROLE_GATEWAY);
    Warden__V1__GetDesiredStateRequest r = WARDEN__V1__GET_DESIRED_STATE_REQUEST__INIT;
    r.device_id = (char *)id;
    c.op_case = OP(GET_DESIRED_STATE);
    c.get_desired_state = &r;
    struct wfsm_result res;
    int code = run(f, &c, &res);
    *target = 0;
    if (code == 0) {
        Warden__V1__GetDesiredStateResponse *d =
            warden__v1__get_desired_state_response__unpack(NULL, res.resp_len,
                                                           res.resp);
        struct ctl_envelope env;
        struct ro_desired_view v;
        struct werr e = {0};
        uint8_t pub[32];
        char kid[CTL_KEY_ID_MAX + 1];
        uint64_t ci;
        int cur;
        struct store_txn *t;
        store_txn_begin(wfsm_store(f), 0, &t, &e);
        ctl_get_key(wfsm_inv(f), t, "", kid, pub, &ci, &cur, &e);
        store_txn_abort(t);
        if (d == NULL ||
            ctl_verify(d->envelope.data, d->envelope.len, d->signature.data,
                       d->signature.len, pub, id, d->key_epoch, d->seq - 1, &env,
                       &e) != CTL_OK ||
            ro_desired_decode(env.payload, env.payload_len, &v, &e) != 0 ||
            v.rollout_id != d->rollout_id || (d->has_target != (v.rollout_id != 0))) {
            fprintf(stderr, "desired: envelope does not verify: %s\n", e.msg);
            code = -999;
        } else {
            *target = d->rollout_id;
            last_seq_seen = d->seq;
        }
        warden__v1__get_desired_state_response__free_unpacked(d, NULL);
    }
    wfsm_result_free(&res);
    return code;
}

static int report_full(struct wfsm *f, const char *id, uint64_t counter,
                       uint64_t rollout, uint64_t relctr, int phase, int badsig,
                       Warden__V1__ReportUpdateStatusResponse **out)
{
    uint8_t msg[RO_REPORT_MSG_MAX], sig[64];
    size_t n = ro_report_message(id, 1, counter, rollout, relctr, (uint32_t)phase,
                                 "ok", msg, sizeof msg);
    key_sign(&devkey_, msg, n, sig);
    if (badsig) {
        sig[0] ^= 1;
    }
    Warden__V1__Command c;
    cmd_init(&c, "gw1", WROLE_GATEWAY);
    Warden__V1__ReportUpdateStatusRequest r =
        WARDEN__V1__REPORT_UPDATE_STATUS_REQUEST__INIT;
    r.device_id = (char *)id;
    r.key_epoch = 1;
    r.counter = counter;
    r.rollout_id = rollout;
    r.release_counter = relctr;
    r.phase = (Warden__V1__UpdatePhase)phase;
    r.detail = (char *)"ok";
    r.signature.data = sig;
    r.signature.len = 64;
    c.op_case = OP(REPORT_UPDATE_STATUS);
    c.report_update_status = &r;
    struct wfsm_result res;
    int code = run(f, &c, &res);
    int result = -1;
    if (code == 0) {
        Warden__V1__ReportUpdateStatusResponse *rr =
            warden__v1__report_update_status_response__unpack(NULL, res.resp_len,
                                                              res.resp);
        result = rr ? (int)rr->result : -1;
        if (out != NULL) {
            *out = rr;
        } else {
            warden__v1__report_update_status_response__free_unpacked(rr, NULL);
        }
    } else {
        fprintf(stderr, "report: %s\n", res.msg);
    }
    wfsm_result_free(&res);
    return code ? code : result;
}

static int report(struct wfsm *f, const char *id, uint64_t counter,
                  uint64_t rollout, uint64_t relctr, int phase)
{
    return report_full(f, id, counter, rollout, relctr, phase, 0, NULL);
}

static uint64_t installed(struct wfsm *f, const char *id)
{
    struct werr e = {0};
    struct store_txn *t;
    Warden__V1__DeviceReleaseRecord *r = NULL;
    uint64_t v = 0;
    store_txn_begin(wfsm_store(f), 0, &t, &e);
    if (ro_device_get(wfsm_ro(f), t, id, &r, &e) == 0) {
        v = r->installed_counter;
        warden__v1__device_release_record__free_unpacked(r, NULL);
    }
    store_txn_abort(t);
    return v;
}

static int assigned(struct wfsm *f, uint64_t rollout, const char *id)
{
    struct werr e = {0};
    struct store_txn *t;
    Warden__V1__AssignmentRecord *a = NULL;
    store_txn_begin(wfsm_store(f), 0, &t, &e);
    int rc = ro_assignment_get(wfsm_ro(f), t, rollout, id, &a, &e);
    store_txn_abort(t);
    if (a != NULL) {
        warden__v1__assignment_record__free_unpacked(a, NULL);
    }
    return rc == 0;
}

/* Walk the whole ledger through the pure verifier; count entries of
 * `action` (0: none). Returns -1 if the chain does not verify. */
static long verify_ledger(struct wfsm *f, uint32_t action, long *n_action)
{
    struct werr e = {0};
    struct store_txn *t;
    if (store_txn_begin(wfsm_store(f), 0, &t, &e) != 0) {
        return -1;
    }
    uint8_t prev[AUDIT_HASH_LEN] = {0};
    uint64_t seq = 1, total = 0;
    long na = 0;
    for (;;) {
        struct audit_rec r;
        int rc = audit_get(wfsm_audit(f), t, seq, &r, &e);
        if (rc == WERR_NOTFOUND) {
            break;
        }
        uint8_t h[AUDIT_HASH_LEN];
        if (rc != 0 || memcmp(r.prev_hash, prev, AUDIT_HASH_LEN) != 0 ||
            audit_hash(&r, h, &e) != 0 || memcmp(h, r.hash, AUDIT_HASH_LEN) != 0) {
            store_txn_abort(t);
            fprintf(stderr, "ledger breaks at seq %llu\n", (unsigned long long)seq);
            return -1;
        }
        if (r.action == action) {
            na++;
        }
        memcpy(prev, h, AUDIT_HASH_LEN);
        seq++;
        total++;
    }
    store_txn_abort(t);
    if (n_action) {
        *n_action = na;
    }
    return (long)total;
}

/* A fresh fsm with a command key and release key rk1 registered. */
static struct wfsm *setup(void)
{
    struct wfsm *f = fsm_new();
    if (f == NULL || cmd_key(f) != 0 || reg_key(f, "rk1", &relkey, WROLE_ADMIN) != 0) {
        return NULL;
    }
    return f;
}

/* ---- manifests -----------------------------------------------------------*/

TEST(manifests)
{
    struct wfsm *f = setup();
    CHECK(f != NULL);
    /* Only admins register keys; ids are never reused. */
    CHECK_EQ_INT(reg_key(f, "rk2", &relkey2, WROLE_ROLLOUT), WERR_PERM);
    CHECK_EQ_INT(reg_key(f, "rk1", &relkey2, WROLE_ADMIN), WERR_EXISTS);

    struct rel_opts o = {.kid = "rk1", .k = &relkey, .version = "2.0", .counter = 10,
                         .models = {"m1", "m2"}, .n_models = 2};
    uint64_t id = 0;
    CHECK_EQ_INT(create_release(f, &o, &id), 0);
    CHECK(id != 0);
    struct audit_rec ar;
    CHECK_EQ_INT(ftu_last_audit(f, &ar), 0);
    CHECK_EQ_INT(ar.action, AA(RELEASE_CREATE));

    /* Bad signature: DENIED and audited. */
    o.counter = 11;
    o.tamper = 1;
    CHECK_EQ_INT(create_release(f, &o, NULL), WERR_PERM);
    CHECK(strstr(last_msg, "signature") != NULL);
    CHECK_EQ_INT(ftu_last_audit(f, &ar), 0);
    CHECK_EQ_INT(ar.outcome, WARDEN__V1__AUDIT_OUTCOME__AUDIT_OUTCOME_DENIED);
    o.tamper = 0;
    /* Signed by the right key but named as another: still a bad signature. */
    o.k = &relkey2;
    CHECK_EQ_INT(create_release(f, &o, NULL), WERR_PERM);
    o.k = &relkey;
    /* Unknown key. */
    o.kid = "nokey";
    CHECK_EQ_INT(create_release(f, &o, NULL), WERR_NOTFOUND);
    CHECK(strstr(last_msg, "unknown release key") != NULL);
    o.kid = "rk1";
    /* Counter not increasing, for any of its models. */
    o.counter = 10;
    CHECK_EQ_INT(create_release(f, &o, NULL), WERR_PRECOND);
    CHECK(strstr(last_msg, "not greater") != NULL);
    struct rel_opts o3 = {.kid = "rk1", .k = &relkey, .version = "2.1", .counter = 9,
                          .models = {"m0", "m2"}, .n_models = 2};
    CHECK_EQ_INT(create_release(f, &o3, NULL), WERR_PRECOND); /* m2 is at 10 */
    o3.models[1] = "m3";
    CHECK_EQ_INT(create_release(f, &o3, NULL), 0); /* m0, m3: new models */
    /* Empty, oversize, unsorted model lists. */
    o.counter = 20;
    o.n_models = 0;
    CHECK_EQ_INT(create_release(f, &o, NULL), WERR_INVALID);
    o.n_models = RO_MODELS_MAX + 1;
    for (size_t i = 0; i < o.n_models; i++) {
        static char names[RO_MODELS_MAX + 1][24];
        snprintf(names[i], sizeof names[i], "x%02zu", i);
        o.models[i] = names[i];
    }
    CHECK_EQ_INT(create_release(f, &o, NULL), WERR_INVALID);
    o.n_models = 2;
    o.models[0] = "m2";
    o.models[1] = "m1";
    CHECK_EQ_INT(create_release(f, &o, NULL), WERR_INVALID);
    o.models[0] = "m1";
    o.models[1] = "m2";
    /* Role. */
    o.role = WROLE_OPERATOR;
    CHECK_EQ_INT(create_release(f, &o, NULL), WERR_PERM);
    o.role = 0;
    /* Rotation: register rk2, revoke rk1; rk1 manifests are refused. */
    CHECK_EQ_INT(reg_key(f, "rk2", &relkey2, WROLE_ADMIN), 0);
    CHECK_EQ_INT(revoke_key(f, "rk1", WROLE_ROLLOUT), WERR_PERM);
    CHECK_EQ_INT(revoke_key(f, "rk1", WROLE_ADMIN), 0);
    CHECK_EQ_INT(ftu_last_audit(f, &ar), 0);
    CHECK_EQ_INT(ar.action, AA(RELEASE_KEY_REVOKE));
    CHECK_EQ_INT(revoke_key(f, "rk1", WROLE_ADMIN), WERR_PRECOND);
    CHECK_EQ_INT(create_release(f, &o, NULL), WERR_PRECOND);
    CHECK(strstr(last_msg, "revoked") != NULL);
    o.kid = "rk2";
    o.k = &relkey2;
    CHECK_EQ_INT(create_release(f, &o, NULL), 0);
    CHECK(verify_ledger(f, 0, NULL) > 0);
    wfsm_close(f);
}

/* Wrong hardware: a release for m1 never targets an m2 device, even with a
 * selector that matches it. */
TEST(wrong_hardware)
{
    struct wfsm *f = setup();
    CHECK(f != NULL);
    CHECK_EQ_INT(enroll_fleet(f, "hw", 4, "m2"), 0);
    uint64_t rel = simple_release(f, "2.0", 5);
    CHECK(rel != 0);
    struct stage_opts so = {.pct = 10000, .fail = 10000};
    uint64_t ro = create_rollout(f, rel, &so, 1, NULL);
    CHECK(ro != 0);
    CHECK_EQ_INT(transition(f, ro, RO_EV_START, WROLE_ROLLOUT, 0, NULL, NULL), 0);
    for (unsigned i = 0; i < 4; i++) {
        char id[32];
        uint64_t tg;
        dev_name(id, sizeof id, "hw", i);
        CHECK_EQ_INT(desired(f, id, &tg), 0);
        CHECK_EQ_INT(tg, 0);
        CHECK(!assigned(f, ro, id));
    }
    /* A gateway the devices are not bound to is refused. */
    Warden__V1__Command c;
    cmd_init(&c, "gw9", WROLE_GATEWAY);
    Warden__V1__GetDesiredStateRequest r = WARDEN__V1__GET_DESIRED_STATE_REQUEST__INIT;
    r.device_id = (char *)"hw-00000";
    c.op_case = OP(GET_DESIRED_STATE);
    c.get_desired_state = &r;
    CHECK_EQ_INT(run(f, &c, NULL), WERR_PERM);
    wfsm_close(f);
}

/* ---- the state table --------------------------------------------------------*/

/* A rollout in state s (one stage gated so it never auto-advances, or two
 * for ADVANCE to stay RUNNING). */
static uint64_t rollout_in(struct wfsm *f, uint64_t rel, int s)
{
    struct stage_opts so[2] = {{.pct = 5000, .min_rep = 1000, .fail = 10000},
                               {.pct = 10000, .min_rep = 1000, .fail = 10000}};
    uint64_t id = create_rollout(f, rel, so, 2, NULL);
    if (s == ST(DRAFT)) {
        return id;
    }
    transition(f, id, RO_EV_START, WROLE_ROLLOUT, 0, NULL, NULL);
    if (s == ST(PAUSED)) {
        transition(f, id, RO_EV_PAUSE, WROLE_ROLLOUT, 0, NULL, NULL);
    } else if (s == ST(COMPLETED)) {
        transition(f, id, RO_EV_ADVANCE, WROLE_ADMIN, 1, NULL, NULL);
        transition(f, id, RO_EV_ADVANCE, WROLE_ADMIN, 1, NULL, NULL);
    } else if (s == ST(ABORTED)) {
        transition(f, id, RO_EV_ABORT, WROLE_ROLLOUT, 0, NULL, NULL);
    }
    return id;
}

TEST(every_transition)
{
    struct wfsm *f = setup();
    CHECK(f != NULL);
    uint64_t rel = simple_release(f, "2.0", 5);
    CHECK(rel != 0);
    const int states[] = {ST(DRAFT), ST(RUNNING), ST(PAUSED), ST(COMPLETED),
                          ST(ABORTED)};
    for (size_t i = 0; i < 5; i++) {
        for (int ev = RO_EV_START; ev <= RO_EV_ABORT; ev++) {
            uint64_t id = rollout_in(f, rel, states[i]);
            CHECK(id != 0);
            CHECK_EQ_INT(rollout_state(f, id), states[i]);
            int to = 0;
            int allowed = ro_transition_allowed(states[i], ev, &to);
            uint64_t before = 0, after = 0;
            struct werr e = {0};
            struct store_txn *t;
            store_txn_begin(wfsm_store(f), 0, &t, &e);
            ro_reject_count(wfsm_ro(f), t, states[i], ev, &before, &e);
            store_txn_abort(t);
            /* force: ADVANCE is judged by the table here, not the gates */
            int code = transition(f, id, ev, WROLE_ADMIN, 1, NULL, NULL);
            store_txn_begin(wfsm_store(f), 0, &t, &e);
            ro_reject_count(wfsm_ro(f), t, states[i], ev, &after, &e);
            store_txn_abort(t);
            struct audit_rec ar;
            CHECK_EQ_INT(ftu_last_audit(f, &ar), 0);
            CHECK_EQ_INT(ar.action, AA(ROLLOUT_TRANSITION));
            if (allowed) {
                if (code != 0) {
                    fprintf(stderr, "%s %s: %s\n", ro_state_name(states[i]),
                            ro_event_name(ev), last_msg);
                }
                CHECK_EQ_INT(code, 0);
                CHECK_EQ_INT(ar.outcome, WARDEN__V1__AUDIT_OUTCOME__AUDIT_OUTCOME_OK);
                CHECK_EQ_INT(rollout_state(f, id), to);
                CHECK_EQ_INT(after, before);
            } else {
                CHECK_EQ_INT(code, WERR_PRECOND);
                CHECK_EQ_INT(ar.outcome,
                             WARDEN__V1__AUDIT_OUTCOME__AUDIT_OUTCOME_REJECTED);
                CHECK_EQ_INT(rollout_state(f, id), states[i]);
                CHECK_EQ_INT(after, before + 1);
                Warden__V1__Rollout *r = get_rollout(f, id);
                CHECK(r != NULL && r->refused_transitions == 1);
                warden__v1__rollout__free_unpacked(r, NULL);
            }
        }
    }
    /* Gates: a non-forced ADVANCE with unmet gates is refused (not a table
     * refusal: not counted); force needs admin; Abort needs a reason. */
    uint64_t id = rollout_in(f, rel, ST(RUNNING));
    CHECK_EQ_INT(transition(f, id, RO_EV_ADVANCE, WROLE_ROLLOUT, 0, NULL, NULL),
                 WERR_PRECOND);
    CHECK(strstr(last_msg, "gates") != NULL);
    CHECK_EQ_INT(transition(f, id, RO_EV_ADVANCE, WROLE_ROLLOUT, 1, NULL, NULL),
                 WERR_PERM);
    CHECK_EQ_INT(transition(f, id, RO_EV_START, WROLE_GATEWAY, 0, NULL, NULL),
                 WERR_PERM);
    CHECK_EQ_INT(transition(f, id, RO_EV_PAUSE, WROLE_OPERATOR, 0, NULL, NULL), 0);
    Warden__V1__Rollout *r = get_rollout(f, id);
    CHECK(r != NULL && r->refused_transitions == 0);
    warden__v1__rollout__free_unpacked(r, NULL);
    CHECK(verify_ledger(f, 0, NULL) > 0);
    wfsm_close(f);
}

/* ---- the simulated fleet ---------------------------------------------------*/

#define FLEET 2000u
static char fleet_ids[FLEET][32];
static uint64_t ctr[FLEET]; /* each device's report counter */

static struct wfsm *fleet_fsm(const char *prefix)
{
    struct wfsm *f = setup();
    if (f == NULL || enroll_fleet(f, prefix, FLEET, "m1") != 0) {
        return NULL;
    }
    for (unsigned i = 0; i < FLEET; i++) {
        dev_name(fleet_ids[i], sizeof fleet_ids[i], prefix, i);
        ctr[i] = 0;
    }
    return f;
}

static const struct stage_opts healthy[4] = {
    {.pct = 100, .min_rep = 5, .succ = 9000, .fail = 2000, .timeout = 600000,
     .bake = 5000, .aut = 1},
    {.pct = 1000, .min_rep = 50, .succ = 9000, .fail = 2000, .timeout = 600000,
     .bake = 5000, .aut = 1},
    {.pct = 5000, .min_rep = 300, .succ = 9000, .fail = 2000, .timeout = 600000,
     .bake = 5000, .aut = 1},
    {.pct = 10000, .min_rep = 500, .succ = 9000, .fail = 2000, .timeout = 600000,
     .bake = 5000, .aut = 1},
};

/* One pass over the fleet: every device not yet done asks for its desired
 * state and, if targeted, reports DOWNLOADING then SUCCEEDED (or FAILED
 * when fail(i)). Returns devices newly assigned, or -1. */
static long fleet_pass(struct wfsm *f, uint64_t ro, uint64_t relctr,
                       uint8_t *done, int (*fail)(unsigned))
{
    long n = 0;
    for (unsigned i = 0; i < FLEET; i++) {
        if (done[i]) {
            continue;
        }
        uint64_t tg;
        if (desired(f, fleet_ids[i], &tg) != 0) {
            return -1;
        }
        if (tg == 0) {
            continue;
        }
        if (tg != ro) {
            return -1;
        }
        n++;
        done[i] = 1;
        if (report(f, fleet_ids[i], ++ctr[i], ro, relctr, PH(DOWNLOADING)) !=
                RR(ACCEPTED) ||
            report(f, fleet_ids[i], ++ctr[i], ro, relctr,
                   fail && fail(i) ? PH(FAILED) : PH(SUCCEEDED)) != RR(ACCEPTED)) {
            return -1;
        }
    }
    return n;
}

static uint64_t sum_counter(const Warden__V1__Rollout *r, int which)
{
    uint64_t s = 0;
    for (size_t k = 0; k < r->n_counters; k++) {
        const Warden__V1__StageCounters *c = r->counters[k];
        s += which == 0 ? c->assigned : which == 1 ? c->succeeded : c->failed;
    }
    return s;
}

TEST(fleet_healthy_all_stages)
{
    struct wfsm *f = fleet_fsm("hl");
    CHECK(f != NULL);
    uint64_t rel = simple_release(f, "2.0", 5);
    uint64_t ro = create_rollout(f, rel, healthy, 4, "m1");
    CHECK(ro != 0);
    CHECK_EQ_INT(transition(f, ro, RO_EV_START, WROLE_ROLLOUT, 0, NULL, NULL), 0);
    static uint8_t done[FLEET];
    memset(done, 0, sizeof done);
    uint32_t last_stage = 0;
    for (int round = 0; round < 12 && rollout_state(f, ro) == ST(RUNNING); round++) {
        long n = fleet_pass(f, ro, 5, done, NULL);
        CHECK(n >= 0);
        /* The stage must not have moved before its bake time passed. */
        Warden__V1__Rollout *r = get_rollout(f, ro);
        CHECK(r != NULL);
        CHECK(r->current_stage >= last_stage);
        last_stage = r->current_stage;
        warden__v1__rollout__free_unpacked(r, NULL);
        now_ms += 6000; /* past the bake */
        CHECK_EQ_INT(tick(f), 0);
    }
    CHECK_EQ_INT(rollout_state(f, ro), ST(COMPLETED));
    Warden__V1__Rollout *r = get_rollout(f, ro);
    CHECK(r != NULL);
    uint64_t a = sum_counter(r, 0), s = sum_counter(r, 1);
    size_t ndone = 0;
    for (unsigned i = 0; i < FLEET; i++) {
        ndone += done[i];
    }
    CHECK_EQ_INT(a, ndone);
    CHECK_EQ_INT(s, ndone);
    CHECK(ndone >= FLEET * 99 / 100);
    /* Stage 0 holds about 1% of the fleet. */
    CHECK(r->counters[0]->assigned >= 5 && r->counters[0]->assigned <= 45);
    warden__v1__rollout__free_unpacked(r, NULL);
    /* Installed counter and firmware version moved with SUCCEEDED. */
    CHECK_EQ_INT(installed(f, fleet_ids[0]), done[0] ? 5 : 0);
    struct werr e = {0};
    struct store_txn *t;
    Warden__V1__Device *d = NULL;
    store_txn_begin(wfsm_store(f), 0, &t, &e);
    CHECK_EQ_INT(inv_get(wfsm_inv(f), t, fleet_ids[1], &d, &e), 0);
    store_txn_abort(t);
    CHECK_EQ_STR(d->firmware_version, done[1] ? "2.0" : "1.0");
    inv_device_free(d);
    /* GetRollout: gates for every stage, all passed. */
    struct ro_status st;
    store_txn_begin(wfsm_store(f), 0, &t, &e);
    int rc = ro_rollout_status(wfsm_ro(f), t, ro, wfsm_cluster_time(f), &st, &e);
    store_txn_abort(t);
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_INT(st.resp.n_gates, 4);
    for (size_t k = 0; k < 4; k++) {
        CHECK(st.resp.gates[k]->advance_ready);
        CHECK(strncmp(st.resp.gates[k]->explain, "passed", 6) == 0);
    }
    ro_status_free(&st);
    /* 3 auto advances + 1 auto complete, all audited; chain verifies. */
    long ngate = 0;
    CHECK(verify_ledger(f, AA(ROLLOUT_GATE), &ngate) > 0);
    CHECK_EQ_INT(ngate, 4);
    wfsm_close(f);
}

/* 30% of the canary fails: the stage's failure gate (20%) aborts the
 * rollout on its own, and no device outside the canary is ever assigned. */
static int fail30(unsigned i)
{
    return i % 10 < 3;
}

TEST(fleet_canary_failure_aborts)
{
    struct wfsm *f = fleet_fsm("cf");
    CHECK(f != NULL);
    uint64_t rel = simple_release(f, "2.0", 5);
    /* Canary 2% so that the 30% are judged over ~40 devices. */
    struct stage_opts so[4];
    memcpy(so, healthy, sizeof so);
    so[0].pct = 200;
    so[0].min_rep = 10;
    uint64_t ro = create_rollout(f, rel, so, 4, "m1");
    CHECK_EQ_INT(transition(f, ro, RO_EV_START, WROLE_ROLLOUT, 0, NULL, NULL), 0);
    static uint8_t done[FLEET];
    memset(done, 0, sizeof done);
    for (int round = 0; round < 4; round++) {
        CHECK(fleet_pass(f, ro, 5, done, fail30) >= 0);
        now_ms += 6000;
        CHECK_EQ_INT(tick(f), 0);
    }
    CHECK_EQ_INT(rollout_state(f, ro), ST(ABORTED));
    Warden__V1__Rollout *r = get_rollout(f, ro);
    CHECK(r != NULL);
    CHECK_EQ_INT(r->current_stage, 0);
    CHECK(strstr(r->reason, "auto abort") != NULL);
    CHECK(r->counters[0]->failed > 0);
    for (size_t k = 1; k < r->n_counters; k++) {
        CHECK_EQ_INT(r->counters[k]->assigned, 0);
    }
    /* Nobody outside the canary's bucket range was ever assigned. */
    for (unsigned i = 0; i < FLEET; i++) {
        if (ro_bucket(ro, fleet_ids[i]) >= so[0].pct) {
            CHECK(!assigned(f, ro, fleet_ids[i]));
            CHECK(!done[i]);
        }
    }
    warden__v1__rollout__free_unpacked(r, NULL);
    /* After the abort: no target for anyone, assigned or not. */
    for (unsigned i = 0; i < FLEET; i += 7) {
        uint64_t tg;
        CHECK_EQ_INT(desired(f, fleet_ids[i], &tg), 0);
        CHECK_EQ_INT(tg, 0);
    }
    long ngate = 0;
    CHECK(verify_ledger(f, AA(ROLLOUT_GATE), &ngate) > 0);
    CHECK_EQ_INT(ngate, 1);
    struct audit_rec ar;
    CHECK_EQ_INT(ftu_last_audit(f, &ar), 0);
    wfsm_close(f);
}

/* Pause holds: assigned devices keep their target, nobody new is assigned,
 * reports still count; Resume continues. */
TEST(fleet_pause_resume)
{
    struct wfsm *f = fleet_fsm("pr");
    CHECK(f != NULL);
    uint64_t rel = simple_release(f, "2.0", 5);
    struct stage_opts so = {.pct = 10000, .min_rep = 5000, .succ = 9000,
                            .fail = 2000, .timeout = 600000};
    uint64_t ro = create_rollout(f, rel, &so, 1, "m1");
    CHECK_EQ_INT(transition(f, ro, RO_EV_START, WROLE_ROLLOUT, 0, NULL, NULL), 0);
    uint64_t tg;
    for (unsigned i = 0; i < 10; i++) {
        CHECK_EQ_INT(desired(f, fleet_ids[i], &tg), 0);
        CHECK_EQ_INT(tg, ro);
    }
    CHECK_EQ_INT(transition(f, ro, RO_EV_PAUSE, WROLE_OPERATOR, 0, NULL, NULL), 0);
    for (unsigned i = 0; i < 20; i++) {
        CHECK_EQ_INT(desired(f, fleet_ids[i], &tg), 0);
        CHECK_EQ_INT(tg, i < 10 ? ro : 0); /* held steady */
    }
    CHECK_EQ_INT(report(f, fleet_ids[0], 1, ro, 5, PH(SUCCEEDED)), RR(ACCEPTED));
    Warden__V1__Rollout *r = get_rollout(f, ro);
    CHECK(r != NULL);
    CHECK_EQ_INT(r->counters[0]->assigned, 10);
    CHECK_EQ_INT(r->counters[0]->succeeded, 1);
    warden__v1__rollout__free_unpacked(r, NULL);
    CHECK_EQ_INT(transition(f, ro, RO_EV_RESUME, WROLE_ROLLOUT, 0, NULL, NULL), 0);
    CHECK_EQ_INT(desired(f, fleet_ids[15], &tg), 0);
    CHECK_EQ_INT(tg, ro);
    CHECK_EQ_INT(desired(f, fleet_ids[0], &tg), 0);
    CHECK_EQ_INT(tg, 0); /* installed: nothing more to do */
    wfsm_close(f);
}

/* Replays, reorders, duplicates and forgeries never move a counter twice:
 * stage counters == distinct accepted terminal reports. */
TEST(reports_count_once)
{
    struct wfsm *f = setup();
    CHECK(f != NULL);
    CHECK_EQ_INT(enroll_fleet(f, "rp", 3, "m1"), 0);
    uint64_t rel = simple_release(f, "2.0", 5);
    struct stage_opts so = {.pct = 10000, .min_rep = 100, .fail = 10000};
    uint64_t ro = create_rollout(f, rel, &so, 1, NULL);
    CHECK_EQ_INT(transition(f, ro, RO_EV_START, WROLE_ROLLOUT, 0, NULL, NULL), 0);
    uint64_t tg;
    CHECK_EQ_INT(desired(f, "rp-00000", &tg), 0);
    CHECK_EQ_INT(desired(f, "rp-00001", &tg), 0);
    /* Not assigned yet: counted nowhere. */
    CHECK_EQ_INT(report(f, "rp-00002", 1, ro, 5, PH(SUCCEEDED)), RR(NOT_ASSIGNED));
    CHECK_EQ_INT(report(f, "rp-00000", 5, ro, 5, PH(INSTALLING)), RR(ACCEPTED));
    /* An older phase with a fresh counter (reordered): not counted. */
    CHECK_EQ_INT(report(f, "rp-00000", 6, ro, 5, PH(DOWNLOADING)), RR(DUPLICATE));
    CHECK_EQ_INT(report(f, "rp-00000", 7, ro, 5, PH(SUCCEEDED)), RR(ACCEPTED));
    /* Exact replay of the accepted report. */
    CHECK_EQ_INT(report(f, "rp-00000", 7, ro, 5, PH(SUCCEEDED)), RR(REPLAY));
    /* A second SUCCEEDED with a fresh counter. */
    CHECK_EQ_INT(report(f, "rp-00000", 8, ro, 5, PH(SUCCEEDED)), RR(DUPLICATE));
    CHECK_EQ_INT(report(f, "rp-00000", 9, ro, 5, PH(FAILED)), RR(DUPLICATE));
    /* Forged, wrong release, too old. */
    CHECK_EQ_INT(report_full(f, "rp-00001", 1, ro, 5, PH(FAILED), 1, NULL),
                 RR(BAD_SIGNATURE));
    CHECK_EQ_INT(report(f, "rp-00001", 2, ro, 4, PH(FAILED)), RR(WRONG_RELEASE));
    CHECK_EQ_INT(report(f, "rp-00001", 5000, ro, 5, PH(DOWNLOADING)), RR(ACCEPTED));
    CHECK_EQ_INT(report(f, "rp-00001", 3, ro, 5, PH(FAILED)), RR(TOO_OLD));
    CHECK_EQ_INT(report(f, "rp-00001", 5001, ro, 5, PH(FAILED)), RR(ACCEPTED));
    CHECK_EQ_INT(report(f, "rp-00001", 5001, ro, 5, PH(FAILED)), RR(REPLAY));
    Warden__V1__Rollout *r = get_rollout(f, ro);
    CHECK(r != NULL);
    const Warden__V1__StageCounters *c = r->counters[0];
    CHECK_EQ_INT(c->assigned, 2);
    CHECK_EQ_INT(c->succeeded, 1);
    CHECK_EQ_INT(c->failed, 1);
    CHECK_EQ_INT(c->downloading, 0);
    CHECK_EQ_INT(c->installing, 0);
    warden__v1__rollout__free_unpacked(r, NULL);
    CHECK_EQ_INT(installed(f, "rp-00000"), 5);
    CHECK_EQ_INT(installed(f, "rp-00001"), 0);
    wfsm_close(f);
}

/* Anti-downgrade through every path: release creation (above), assignment
 * (installed >= counter: never targeted), a late success of an older
 * release (installed never goes down), and the rollback roll-forward
 * (counter must be higher; only devices that moved get it). */
TEST(anti_downgrade_and_rollback)
{
    struct wfsm *f = setup();
    CHECK(f != NULL);
    CHECK_EQ_INT(enroll_fleet(f, "ad", 4, "m1"), 0);
    uint64_t r5 = simple_release(f, "5.0", 5);
    uint64_t r6 = simple_release(f, "6.0", 6);
    CHECK(r5 && r6);
    struct stage_opts so = {.pct = 10000, .min_rep = 100, .fail = 10000,
                            .timeout = 1000};
    uint64_t ro5 = create_rollout(f, r5, &so, 1, NULL);
    CHECK_EQ_INT(transition(f, ro5, RO_EV_START, WROLE_ROLLOUT, 0, NULL, NULL), 0);
    uint64_t tg;
    CHECK_EQ_INT(desired(f, "ad-00000", &tg), 0);
    CHECK_EQ_INT(tg, ro5);
    /* Device 0 times out on r5; the timeout is counted once. */
    now_ms += 2000;
    CHECK_EQ_INT(tick(f), 0);
    Warden__V1__Rollout *r = get_rollout(f, ro5);
    CHECK(r != NULL && r->counters[0]->timed_out == 1);
    warden__v1__rollout__free_unpacked(r, NULL);
    CHECK_EQ_INT(tick(f), 0);
    r = get_rollout(f, ro5);
    CHECK(r != NULL && r->counters[0]->timed_out == 1);
    warden__v1__rollout__free_unpacked(r, NULL);
    /* r6 rolls out; device 0 and 1 install 6. */
    uint64_t ro6 = create_rollout(f, r6, &so, 1, NULL);
    CHECK_EQ_INT(transition(f, ro6, RO_EV_START, WROLE_ROLLOUT, 0, NULL, NULL), 0);
    CHECK_EQ_INT(desired(f, "ad-00000", &tg), 0);
    CHECK_EQ_INT(tg, ro6); /* highest counter wins */
    CHECK_EQ_INT(report(f, "ad-00000", 1, ro6, 6, PH(SUCCEEDED)), RR(ACCEPTED));
    CHECK_EQ_INT(desired(f, "ad-00001", &tg), 0);
    CHECK_EQ_INT(tg, ro6);
    CHECK_EQ_INT(report(f, "ad-00001", 1, ro6, 6, PH(SUCCEEDED)), RR(ACCEPTED));
    CHECK_EQ_INT(installed(f, "ad-00000"), 6);
    /* Late SUCCEEDED of r5: the truth is recorded, the counter never drops. */
    CHECK_EQ_INT(report(f, "ad-00000", 2, ro5, 5, PH(SUCCEEDED)), RR(LATE));
    CHECK_EQ_INT(installed(f, "ad-00000"), 6);
    /* ro5 is still RUNNING, but never targets a device at 6. */
    CHECK_EQ_INT(desired(f, "ad-00001", &tg), 0);
    CHECK_EQ_INT(tg, 0);
    CHECK(!assigned(f, ro5, "ad-00001"));
    /* A rollback release must be admin, with a reason, and a higher
     * counter: the old artifact under a new counter. */
    struct rel_opts rb = {.kid = "rk1", .k = &relkey, .version = "5.0-rb",
                          .counter = 5, .models = {"m1"}, .n_models = 1,
                          .rollback_of = r6, .reason = "bad 6.0",
                          .role = WROLE_ADMIN};
    CHECK_EQ_INT(create_release(f, &rb, NULL), WERR_PRECOND);
    rb.counter = 7;
    rb.role = WROLE_ROLLOUT;
    CHECK_EQ_INT(create_release(f, &rb, NULL), WERR_PERM);
    rb.role = WROLE_ADMIN;
    rb.reason = "";
    CHECK_EQ_INT(create_release(f, &rb, NULL), WERR_INVALID);
    rb.reason = "bad 6.0";
    /* Abort ro6 with the rollback roll-forward. */
    uint8_t m[8192], sig[64];
    size_t n = manifest(&rb, m, sizeof m);
    key_sign(&relkey, m, n, sig);
    Warden__V1__CreateReleaseRequest crr = WARDEN__V1__CREATE_RELEASE_REQUEST__INIT;
    crr.manifest.data = m;
    crr.manifest.len = n;
    crr.key_id = (char *)"rk1";
    crr.signature.data = sig;
    crr.signature.len = 64;
    crr.rollback_of = r6;
    crr.reason = (char *)"bad 6.0";
    CHECK_EQ_INT(transition(f, ro6, RO_EV_ABORT, WROLE_ROLLOUT, 0, &crr, NULL),
                 WERR_PERM);
    Warden__V1__RolloutResponse *resp = NULL;
    CHECK_EQ_INT(transition(f, ro6, RO_EV_ABORT, WROLE_ADMIN, 0, &crr, &resp), 0);
    CHECK(resp != NULL && resp->rollback_rollout_id != 0);
    uint64_t rbro = resp->rollback_rollout_id;
    warden__v1__rollout_response__free_unpacked(resp, NULL);
    CHECK_EQ_INT(rollout_state(f, ro6), ST(ABORTED));
    CHECK_EQ_INT(rollout_state(f, rbro), ST(RUNNING));
    long nrb = 0;
    CHECK(verify_ledger(f, AA(RELEASE_ROLLBACK), &nrb) > 0);
    CHECK_EQ_INT(nrb, 4); /* 3 refused attempts (audited REJECTED/DENIED) + 1 */
    /* Devices 0 and 1 (on 6) get the rollback (7); 2 and 3 (never moved,
     * still at 0) only see r5's rollout, never the rollback. */
    CHECK_EQ_INT(desired(f, "ad-00001", &tg), 0);
    CHECK_EQ_INT(tg, rbro);
    CHECK_EQ_INT(report(f, "ad-00001", 2, rbro, 7, PH(SUCCEEDED)), RR(ACCEPTED));
    CHECK_EQ_INT(installed(f, "ad-00001"), 7);
    CHECK_EQ_INT(desired(f, "ad-00002", &tg), 0);
    CHECK_EQ_INT(tg, ro5);
    CHECK(!assigned(f, rbro, "ad-00002"));
    CHECK(verify_ledger(f, 0, NULL) > 0);
    wfsm_close(f);
}

/* Count stages: at most max_devices assignments in the stage; the rest wait
 * for the next stage. Two fsms fed the same log agree byte for byte. */
TEST(count_stage_and_determinism)
{
    struct wfsm *f = setup();
    CHECK(f != NULL);
    CHECK_EQ_INT(enroll_fleet(f, "cs", 30, "m1"), 0);
    uint64_t rel = simple_release(f, "2.0", 5);
    struct stage_opts so[2] = {{.max = 3, .min_rep = 3, .succ = 10000, .fail = 0},
                               {.pct = 10000, .min_rep = 100, .fail = 10000}};
    uint64_t ro = create_rollout(f, rel, so, 2, NULL);
    CHECK_EQ_INT(transition(f, ro, RO_EV_START, WROLE_ROLLOUT, 0, NULL, NULL), 0);
    unsigned got = 0;
    for (unsigned i = 0; i < 30; i++) {
        char id[32];
        uint64_t tg;
        dev_name(id, sizeof id, "cs", i);
        CHECK_EQ_INT(desired(f, id, &tg), 0);
        got += tg != 0;
    }
    CHECK_EQ_INT(got, 3);
    uint8_t h[AUDIT_HASH_LEN];
    struct werr e = {0};
    struct store_txn *t;
    uint64_t seq;
    store_txn_begin(wfsm_store(f), 0, &t, &e);
    CHECK_EQ_INT(audit_head(wfsm_audit(f), t, &seq, h, &e), 0);
    store_txn_abort(t);
    CHECK(seq > 0);
    wfsm_close(f);
}

int main(void)
{
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(tmp_root, sizeof tmp_root, "%s/warden-ro-XXXXXX", base);
    if (mkdtemp(tmp_root) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    if (key_new(&relkey) || key_new(&relkey2) || key_new(&devkey_)) {
        fprintf(stderr, "keygen failed\n");
        return 1;
    }
    RUN(manifests);
    RUN(wrong_hardware);
    RUN(every_transition);
    RUN(reports_count_once);
    RUN(anti_downgrade_and_rollback);
    RUN(count_stage_and_determinism);
    RUN(fleet_pause_resume);
    RUN(fleet_healthy_all_stages);
    RUN(fleet_canary_failure_aborts);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp_root);
    if (system(cmd) != 0) {
        fprintf(stderr, "cleanup of %s failed\n", tmp_root);
    }
    EVP_PKEY_free(relkey.pk);
    EVP_PKEY_free(relkey2.pk);
    EVP_PKEY_free(devkey_.pk);
    return unit_done();
}
