/* test_consensus_fsm_access.c - issue 5 through the replicated state
 * machine: encoded Commands applied with wfsm_apply over real LMDB in
 * mkdtemp dirs, cluster time advanced by Tick commands. M-of-N counting,
 * self-approval, double votes, deny wins, pending expiry, the grant window
 * starting at approval, uses consumed exactly once (idempotent retry),
 * expiry, every lock kind (label lock catching a device enrolled later),
 * blast radius, stale lock views, the revocation log (commit order,
 * resume, retention), quarantine revoking grants in the same txn, and the
 * admin-only audited policy. */
#include "consensus/fsm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "domain/access.h"
#include "domain/audit.h"
#include "domain/inventory.h"
#include "storage/store.h"
#include "fsm_testutil.h"
#include "unit.h"

#define S_ACTIVE WARDEN__V1__DEVICE_STATE__DEVICE_STATE_ACTIVE
#define S_QUAR WARDEN__V1__DEVICE_STATE__DEVICE_STATE_QUARANTINED
#define P_(x) WARDEN__V1__ACCESS_PURPOSE__ACCESS_PURPOSE_##x
#define R_(x) WARDEN__V1__ACCESS_DENY_REASON__ACCESS_DENY_REASON_##x
#define K_(x) WARDEN__V1__LOCK_TARGET_KIND__LOCK_TARGET_KIND_##x
#define RS_(x) WARDEN__V1__ACCESS_REQUEST_STATE__ACCESS_REQUEST_STATE_##x
#define GS_(x) WARDEN__V1__ACCESS_GRANT_STATE__ACCESS_GRANT_STATE_##x
#define ALLOW WARDEN__V1__ACCESS_DECISION__ACCESS_DECISION_ALLOW
#define DENY WARDEN__V1__ACCESS_DECISION__ACCESS_DECISION_DENY
#define HOUR ((uint64_t)3600 * 1000)

static char tmp_root[256];
static unsigned dir_seq;
static uint64_t now_ms = 1000000;
static uint8_t digest[32];
static uint8_t pub[32];

static struct wfsm *fsm_new(void)
{
    return ftu_fsm_new(tmp_root, &dir_seq);
}

static void cmd_init(Warden__V1__Command *c, const char *who, unsigned role)
{
    ftu_cmd_init(c, who, role, now_ms);
}

/* Apply c at the next index. Returns the command's code, -1000 on a node
 * error. res may be NULL; otherwise the caller frees it. */
static int run(struct wfsm *f, const Warden__V1__Command *c,
               struct wfsm_result *res)
{
    char msg[WERR_MSG_MAX];
    int code = ftu_run(f, c, res, msg, sizeof msg);
    if (code != 0 && code != FTU_NODE_ERROR && getenv("ACC_TEST_VERBOSE")) {
        fprintf(stderr, "  [%d] %s\n", code, msg);
    }
    return code;
}

static void tick(struct wfsm *f, uint64_t advance)
{
    now_ms += advance;
    Warden__V1__Command c;
    cmd_init(&c, "leader", WROLE_PEER);
    Warden__V1__Tick tk = WARDEN__V1__TICK__INIT;
    c.op_case = WARDEN__V1__COMMAND__OP_TICK;
    c.tick = &tk;
    run(f, &c, NULL);
}

static int enroll(struct wfsm *f, const char *id, const char *gw,
                  const char *lkey, const char *lval)
{
    Warden__V1__Command c;
    cmd_init(&c, "root", WROLE_ADMIN);
    Warden__V1__EnrollDeviceRequest r = WARDEN__V1__ENROLL_DEVICE_REQUEST__INIT;
    Warden__V1__Label l = WARDEN__V1__LABEL__INIT;
    Warden__V1__Label *ls[1] = {&l};
    r.device_id = (char *)id;
    r.key_algorithm = WARDEN__V1__KEY_ALGORITHM__KEY_ALGORITHM_ED25519;
    r.public_key.data = pub;
    r.public_key.len = sizeof pub;
    r.attestation_digest.data = digest;
    r.attestation_digest.len = sizeof digest;
    r.gateway_id = (char *)gw;
    if (lkey != NULL) {
        l.key = (char *)lkey;
        l.value = (char *)lval;
        r.n_labels = 1;
        r.labels = ls;
    }
    c.op_case = WARDEN__V1__COMMAND__OP_ENROLL_DEVICE;
    c.enroll_device = &r;
    return run(f, &c, NULL);
}

static int set_state(struct wfsm *f, const char *id, int to)
{
    Warden__V1__Command c;
    cmd_init(&c, "olga", WROLE_OPERATOR);
    Warden__V1__SetDeviceStateRequest r = WARDEN__V1__SET_DEVICE_STATE_REQUEST__INIT;
    r.device_id = (char *)id;
    r.state = (Warden__V1__DeviceState)to;
    r.reason = (char *)"test";
    c.op_case = WARDEN__V1__COMMAND__OP_SET_DEVICE_STATE;
    c.set_device_state = &r;
    return run(f, &c, NULL);
}

static int device(struct wfsm *f, const char *id, const char *gw)
{
    int rc = enroll(f, id, gw, "site", "plant1");
    return rc ? rc : set_state(f, id, S_ACTIVE);
}

/* RequestAccess for one device (or a selector when dev == NULL); the id
 * goes to id_out. */
static int request(struct wfsm *f, const char *who, const char *dev, int purpose,
                   uint64_t dur, uint32_t sessions, char *id_out)
{
    Warden__V1__Command c;
    cmd_init(&c, who, WROLE_OPERATOR);
    Warden__V1__RequestAccessRequest r = WARDEN__V1__REQUEST_ACCESS_REQUEST__INIT;
    Warden__V1__AccessScope sc = WARDEN__V1__ACCESS_SCOPE__INIT;
    char *protos[1] = {(char *)"ssh"};
    uint32_t ports[1] = {22};
    char *ids[1] = {(char *)dev};
    Warden__V1__Label l = WARDEN__V1__LABEL__INIT;
    Warden__V1__Label *ls[1] = {&l};
    sc.n_protocols = 1;
    sc.protocols = protos;
    sc.n_ports = 1;
    sc.ports = ports;
    if (dev != NULL) {
        r.n_device_ids = 1;
        r.device_ids = ids;
    } else {
        l.key = (char *)"site";
        l.value = (char *)"plant1";
        r.n_selector = 1;
        r.selector = ls;
    }
    r.purpose = (Warden__V1__AccessPurpose)purpose;
    r.reason = (char *)"fix the pump";
    r.scope = &sc;
    r.duration_ms = dur;
    r.max_sessions = sessions;
    c.op_case = WARDEN__V1__COMMAND__OP_REQUEST_ACCESS;
    c.request_access = &r;
    struct wfsm_result res;
    int rc = run(f, &c, &res);
    if (rc == 0 && id_out != NULL) {
        Warden__V1__RequestAccessResponse *m =
            warden__v1__request_access_response__unpack(NULL, res.resp_len, res.resp);
        snprintf(id_out, ACC_ID_MAX + 1, "%s", m ? m->request->request_id : "?");
        warden__v1__request_access_response__free_unpacked(m, NULL);
    }
    wfsm_result_free(&res);
    return rc;
}

/* Approve/deny; grant id (if this vote granted) into grant_out. */
static int review(struct wfsm *f, const char *who, unsigned role, const char *req,
                  int approve, char *grant_out, uint64_t *valid_from)
{
    Warden__V1__Command c;
    cmd_init(&c, who, role);
    Warden__V1__ReviewAccessRequest r = WARDEN__V1__REVIEW_ACCESS_REQUEST__INIT;
    r.request_id = (char *)req;
    r.comment = (char *)"ok";
    if (approve) {
        c.op_case = WARDEN__V1__COMMAND__OP_APPROVE_ACCESS;
        c.approve_access = &r;
    } else {
        c.op_case = WARDEN__V1__COMMAND__OP_DENY_ACCESS;
        c.deny_access = &r;
    }
    struct wfsm_result res;
    int rc = run(f, &c, &res);
    if (grant_out != NULL) {
        grant_out[0] = '\0';
    }
    if (rc == 0) {
        Warden__V1__ReviewAccessResponse *m =
            warden__v1__review_access_response__unpack(NULL, res.resp_len, res.resp);
        if (m && m->grant && grant_out) {
            snprintf(grant_out, ACC_ID_MAX + 1, "%s", m->grant->grant_id);
        }
        if (m && m->grant && valid_from) {
            *valid_from = m->grant->valid_from_ms;
        }
        warden__v1__review_access_response__free_unpacked(m, NULL);
    }
    wfsm_result_free(&res);
    return rc;
}

/* One approval suffices for INCIDENT: request + approve -> grant id. */
static int grant(struct wfsm *f, const char *who, const char *dev, uint64_t dur,
                 uint32_t sessions, char *gid)
{
    char rid[ACC_ID_MAX + 1];
    int rc = request(f, who, dev, P_(INCIDENT), dur, sessions, rid);
    return rc ? rc : review(f, "rita", WROLE_ADMIN, rid, 1, gid, NULL);
}

struct chk {
    int code, decision, reason, replayed;
    char grant[ACC_ID_MAX + 1];
    char lock[ACC_ID_MAX + 1];
    uint32_t uses;
    uint64_t remaining, revision;
};

static struct chk check_full(struct wfsm *f, const char *gw, const char *who,
                             const char *dev, const char *proto, uint32_t port,
                             uint64_t rev, const char *key)
{
    struct chk out;
    memset(&out, 0, sizeof out);
    Warden__V1__Command c;
    cmd_init(&c, gw, WROLE_GATEWAY);
    if (key != NULL) {
        c.idempotency_key = (char *)key;
    }
    Warden__V1__CheckAccessRequest r = WARDEN__V1__CHECK_ACCESS_REQUEST__INIT;
    r.principal = (char *)who;
    r.device_id = (char *)dev;
    r.protocol = (char *)proto;
    r.port = port;
    r.lock_revision = rev;
    c.op_case = WARDEN__V1__COMMAND__OP_CHECK_ACCESS;
    c.check_access = &r;
    struct wfsm_result res;
    out.code = run(f, &c, &res);
    out.replayed = res.replayed;
    if (out.code == 0) {
        Warden__V1__CheckAccessResponse *m =
            warden__v1__check_access_response__unpack(NULL, res.resp_len, res.resp);
        if (m != NULL) {
            out.decision = (int)m->decision;
            out.reason = (int)m->reason;
            snprintf(out.grant, sizeof out.grant, "%s", m->grant_id);
            snprintf(out.lock, sizeof out.lock, "%s", m->lock_id);
            out.uses = m->remaining_uses;
            out.remaining = m->remaining_ms;
            out.revision = m->revision;
        }
        warden__v1__check_access_response__free_unpacked(m, NULL);
    }
    wfsm_result_free(&res);
    return out;
}

static uint64_t revision(struct wfsm *f);

/* A check with an up-to-date lock view. */
static struct chk check(struct wfsm *f, const char *gw, const char *who,
                        const char *dev)
{
    return check_full(f, gw, who, dev, "ssh", 22, revision(f), NULL);
}

/* ---- reads ------------------------------------------------------------- */

static uint64_t revision(struct wfsm *f)
{
    struct werr e = {0};
    struct store_txn *t;
    struct access a;
    uint64_t rev = (uint64_t)-1;
    if (store_txn_begin(wfsm_store(f), 0, &t, &e) == 0) {
        if (acc_bind(&a, wfsm_store(f), wfsm_inv(f), &e) != 0 ||
            acc_revision(&a, t, &rev, &e) != 0) {
            rev = (uint64_t)-1;
        }
        store_txn_abort(t);
    }
    return rev;
}

static int grant_state(struct wfsm *f, const char *gid, uint32_t *uses)
{
    struct werr e = {0};
    struct store_txn *t;
    struct access a;
    int st = -1;
    if (store_txn_begin(wfsm_store(f), 0, &t, &e) == 0) {
        Warden__V1__AccessGrant *g;
        if (acc_bind(&a, wfsm_store(f), wfsm_inv(f), &e) == 0 &&
            acc_grant_get(&a, t, wfsm_cluster_time(f), gid, &g, &e) == 0) {
            st = (int)g->state;
            if (uses) {
                *uses = g->uses_left;
            }
            acc_msg_free(g);
        }
        store_txn_abort(t);
    }
    return st;
}

static int request_state(struct wfsm *f, const char *rid, size_t *votes)
{
    struct werr e = {0};
    struct store_txn *t;
    struct access a;
    int st = -1;
    if (store_txn_begin(wfsm_store(f), 0, &t, &e) == 0) {
        Warden__V1__AccessRequest *r;
        if (acc_bind(&a, wfsm_store(f), wfsm_inv(f), &e) == 0 &&
            acc_request_get(&a, t, wfsm_cluster_time(f), rid, &r, &e) == 0) {
            st = (int)r->state;
            if (votes) {
                *votes = r->n_votes;
            }
            acc_msg_free(r);
        }
        store_txn_abort(t);
    }
    return st;
}

/* Read the revocation log after `after` for gw. Returns the code. */
static int revlog(struct wfsm *f, const char *gw, uint64_t after, size_t max,
                  struct acc_rev_page *p)
{
    struct werr e = {0};
    struct store_txn *t;
    struct access a;
    int rc = store_txn_begin(wfsm_store(f), 0, &t, &e);
    if (rc == 0) {
        rc = acc_bind(&a, wfsm_store(f), wfsm_inv(f), &e);
        if (rc == 0) {
            rc = acc_revlog_read(&a, t, gw, after, max, p, &e);
        }
        store_txn_abort(t);
    }
    return rc;
}

static int lock(struct wfsm *f, int kind, const char *value, const char *lkey,
                const char *lval, uint64_t expires, char *id_out)
{
    Warden__V1__Command c;
    cmd_init(&c, "sec", WROLE_ADMIN);
    Warden__V1__LockRequest r = WARDEN__V1__LOCK_REQUEST__INIT;
    Warden__V1__Label l = WARDEN__V1__LABEL__INIT;
    Warden__V1__Label *ls[1] = {&l};
    r.kind = (Warden__V1__LockTargetKind)kind;
    r.value = (char *)(value ? value : "");
    if (lkey != NULL) {
        l.key = (char *)lkey;
        l.value = (char *)lval;
        r.n_selector = 1;
        r.selector = ls;
    }
    r.reason = (char *)"incident 42";
    r.expires_ms = expires;
    c.op_case = WARDEN__V1__COMMAND__OP_LOCK;
    c.lock = &r;
    struct wfsm_result res;
    int rc = run(f, &c, &res);
    if (rc == 0 && id_out) {
        Warden__V1__LockResponse *m =
            warden__v1__lock_response__unpack(NULL, res.resp_len, res.resp);
        snprintf(id_out, ACC_ID_MAX + 1, "%s", m ? m->lock->lock_id : "?");
        warden__v1__lock_response__free_unpacked(m, NULL);
    }
    wfsm_result_free(&res);
    return rc;
}

static int unlock(struct wfsm *f, const char *id)
{
    Warden__V1__Command c;
    cmd_init(&c, "sec", WROLE_ADMIN);
    Warden__V1__UnlockRequest r = WARDEN__V1__UNLOCK_REQUEST__INIT;
    r.lock_id = (char *)id;
    r.reason = (char *)"over";
    c.op_case = WARDEN__V1__COMMAND__OP_UNLOCK;
    c.unlock = &r;
    return run(f, &c, NULL);
}

static int revoke(struct wfsm *f, const char *gid, unsigned role)
{
    Warden__V1__Command c;
    cmd_init(&c, "sec", role);
    Warden__V1__RevokeGrantRequest r = WARDEN__V1__REVOKE_GRANT_REQUEST__INIT;
    r.grant_id = (char *)gid;
    r.reason = (char *)"done";
    c.op_case = WARDEN__V1__COMMAND__OP_REVOKE_GRANT;
    c.revoke_grant = &r;
    return run(f, &c, NULL);
}

static int set_policy(struct wfsm *f, unsigned role, uint32_t maint_m,
                      uint64_t lag, uint64_t retention)
{
    Warden__V1__Command c;
    cmd_init(&c, "root", role);
    Warden__V1__SetAccessPolicyRequest r = WARDEN__V1__SET_ACCESS_POLICY_REQUEST__INIT;
    Warden__V1__AccessPurposeRule rule = WARDEN__V1__ACCESS_PURPOSE_RULE__INIT;
    Warden__V1__AccessPurposeRule *rules[1] = {&rule};
    if (maint_m != (uint32_t)-1) {
        rule.purpose = P_(MAINTENANCE);
        rule.approvals_required = maint_m;
        rule.reviewer_roles = WROLE_ADMIN;
        rule.max_duration_ms = 8 * HOUR;
        rule.max_uses = 3;
        rule.pending_ttl_ms = HOUR;
        r.n_rules = 1;
        r.rules = rules;
    }
    r.lock_view_max_lag = lag;
    r.revlog_retention = retention;
    c.op_case = WARDEN__V1__COMMAND__OP_SET_ACCESS_POLICY;
    c.set_access_policy = &r;
    return run(f, &c, NULL);
}

/* ---- tests -------------------------------------------------------------- */

TEST(m_of_n_self_approval_double_vote_deny)
{
    struct wfsm *f = fsm_new();
    CHECK(f != NULL);
    CHECK_EQ_INT(device(f, "dev1", "gw1"), 0);
    char rid[ACC_ID_MAX + 1], gid[ACC_ID_MAX + 1];
    /* MAINTENANCE needs 2 (default policy). */
    CHECK_EQ_INT(request(f, "alice", "dev1", P_(MAINTENANCE), HOUR, 3, rid), 0);
    CHECK(strncmp(rid, "req-", 4) == 0);
    CHECK_EQ_INT(request_state(f, rid, NULL), RS_(PENDING));
    /* No self-approval: refused and audited DENIED. */
    CHECK_EQ_INT(review(f, "alice", WROLE_OPERATOR, rid, 1, gid, NULL), WERR_PERM);
    struct audit_rec ar;
    CHECK_EQ_INT(ftu_last_audit(f, &ar), 0);
    CHECK_EQ_INT(ar.action, WARDEN__V1__AUDIT_ACTION__AUDIT_ACTION_ACCESS_REVIEW);
    CHECK_EQ_INT(ar.outcome, WARDEN__V1__AUDIT_OUTCOME__AUDIT_OUTCOME_DENIED);
    /* A gateway or auditor is not a reviewer of maintenance. */
    CHECK_EQ_INT(review(f, "gw1", WROLE_GATEWAY, rid, 1, gid, NULL), WERR_PERM);
    CHECK_EQ_INT(review(f, "aud", WROLE_AUDITOR, rid, 1, gid, NULL), WERR_PERM);
    /* First approval: still pending. */
    CHECK_EQ_INT(review(f, "bob", WROLE_OPERATOR, rid, 1, gid, NULL), 0);
    CHECK_EQ_INT(gid[0], 0);
    size_t votes = 0;
    CHECK_EQ_INT(request_state(f, rid, &votes), RS_(PENDING));
    CHECK_EQ_INT(votes, 1);
    /* Bob again: counted once (refused, nothing changes). */
    CHECK_EQ_INT(review(f, "bob", WROLE_OPERATOR, rid, 1, gid, NULL), WERR_PRECOND);
    CHECK_EQ_INT(request_state(f, rid, &votes), RS_(PENDING));
    CHECK_EQ_INT(votes, 1);
    /* The window starts at the approval, not at the request. */
    tick(f, 10 * 60 * 1000);
    uint64_t from = 0;
    uint64_t approved_at = now_ms;
    CHECK_EQ_INT(review(f, "carol", WROLE_ADMIN, rid, 1, gid, &from), 0);
    CHECK(strncmp(gid, "grt-", 4) == 0);
    CHECK_EQ_INT(from, approved_at);
    CHECK_EQ_INT(request_state(f, rid, NULL), RS_(GRANTED));
    struct chk k = check(f, "gw1", "alice", "dev1");
    CHECK_EQ_INT(k.code, 0);
    CHECK_EQ_INT(k.decision, ALLOW);
    CHECK_EQ_INT(k.remaining, HOUR);
    /* A decided request takes no more votes. */
    CHECK_EQ_INT(review(f, "dave", WROLE_ADMIN, rid, 1, NULL, NULL), WERR_PRECOND);

    /* Deny wins: one approval then one deny -> DENIED. */
    CHECK_EQ_INT(request(f, "alice", "dev1", P_(MAINTENANCE), HOUR, 1, rid), 0);
    CHECK_EQ_INT(review(f, "bob", WROLE_OPERATOR, rid, 1, gid, NULL), 0);
    CHECK_EQ_INT(review(f, "carol", WROLE_ADMIN, rid, 0, gid, NULL), 0);
    CHECK_EQ_INT(request_state(f, rid, NULL), RS_(DENIED));
    CHECK_EQ_INT(review(f, "dave", WROLE_ADMIN, rid, 1, gid, NULL), WERR_PRECOND);
    /* INCIDENT needs 1. */
    CHECK_EQ_INT(request(f, "alice", "dev1", P_(INCIDENT), HOUR, 1, rid), 0);
    CHECK_EQ_INT(review(f, "bob", WROLE_OPERATOR, rid, 1, gid, NULL), 0);
    CHECK(gid[0] != 0);
    /* Requests beyond the policy are refused. */
    CHECK_EQ_INT(request(f, "alice", "dev1", P_(INCIDENT), 100 * HOUR, 1, rid),
                 WERR_INVALID);
    CHECK_EQ_INT(request(f, "alice", "dev1", P_(INCIDENT), HOUR, 1000, rid),
                 WERR_INVALID);
    CHECK_EQ_INT(request(f, "alice", "nope", P_(INCIDENT), HOUR, 1, rid),
                 WERR_NOTFOUND);
    /* A selector resolves to the devices carrying the label now. */
    CHECK_EQ_INT(device(f, "dev2", "gw1"), 0);
    CHECK_EQ_INT(request(f, "alice", NULL, P_(INCIDENT), HOUR, 1, rid), 0);
    CHECK_EQ_INT(review(f, "bob", WROLE_OPERATOR, rid, 1, gid, NULL), 0);
    CHECK_EQ_INT(check(f, "gw1", "alice", "dev2").decision, ALLOW);
    wfsm_close(f);
}

TEST(pending_expiry_by_cluster_time)
{
    struct wfsm *f = fsm_new();
    CHECK(f != NULL);
    CHECK_EQ_INT(device(f, "dev1", "gw1"), 0);
    char rid[ACC_ID_MAX + 1], rid2[ACC_ID_MAX + 1];
    CHECK_EQ_INT(request(f, "alice", "dev1", P_(INCIDENT), HOUR, 1, rid), 0);
    /* INCIDENT's pending TTL is 15 minutes of cluster time. */
    tick(f, 15 * 60 * 1000 - 1);
    CHECK_EQ_INT(request_state(f, rid, NULL), RS_(PENDING));
    CHECK_EQ_INT(request(f, "alice", "dev1", P_(INCIDENT), HOUR, 1, rid2), 0);
    tick(f, 1);
    CHECK_EQ_INT(request_state(f, rid, NULL), RS_(EXPIRED));
    CHECK_EQ_INT(review(f, "bob", WROLE_OPERATOR, rid, 1, NULL, NULL), WERR_PRECOND);
    /* The other one is still pending and approvable. */
    CHECK_EQ_INT(request_state(f, rid2, NULL), RS_(PENDING));
    char gid[ACC_ID_MAX + 1];
    CHECK_EQ_INT(review(f, "bob", WROLE_OPERATOR, rid2, 1, gid, NULL), 0);
    CHECK(gid[0] != 0);
    wfsm_close(f);
}

TEST(uses_exactly_once_and_expiry)
{
    struct wfsm *f = fsm_new();
    CHECK(f != NULL);
    CHECK_EQ_INT(device(f, "dev1", "gw1"), 0);
    char gid[ACC_ID_MAX + 1];
    CHECK_EQ_INT(grant(f, "alice", "dev1", HOUR, 2, gid), 0);
    uint64_t rev = revision(f);
    struct chk a = check_full(f, "gw1", "alice", "dev1", "ssh", 22, rev, "k1");
    CHECK_EQ_INT(a.decision, ALLOW);
    CHECK_EQ_STR(a.grant, gid);
    CHECK_EQ_INT(a.uses, 1);
    /* Retry with the same key: the stored result, no second use. */
    struct chk b = check_full(f, "gw1", "alice", "dev1", "ssh", 22, rev, "k1");
    CHECK_EQ_INT(b.replayed, 1);
    CHECK_EQ_INT(b.decision, ALLOW);
    CHECK_EQ_INT(b.uses, 1);
    uint32_t uses = 0;
    CHECK_EQ_INT(grant_state(f, gid, &uses), GS_(ACTIVE));
    CHECK_EQ_INT(uses, 1);
    /* Scope: another protocol or port is not covered. */
    CHECK_EQ_INT(check_full(f, "gw1", "alice", "dev1", "rdp", 22, rev, NULL).reason,
                 R_(OUT_OF_SCOPE));
    CHECK_EQ_INT(check_full(f, "gw1", "alice", "dev1", "ssh", 2222, rev, NULL).reason,
                 R_(OUT_OF_SCOPE));
    CHECK_EQ_INT(check(f, "gw1", "mallory", "dev1").reason, R_(NO_GRANT));
    struct chk c = check_full(f, "gw1", "alice", "dev1", "ssh", 22, rev, "k2");
    CHECK_EQ_INT(c.decision, ALLOW);
    CHECK_EQ_INT(c.uses, 0);
    struct chk d = check(f, "gw1", "alice", "dev1");
    CHECK_EQ_INT(d.decision, DENY);
    CHECK_EQ_INT(d.reason, R_(USES_EXHAUSTED));
    struct audit_rec ar;
    CHECK_EQ_INT(ftu_last_audit(f, &ar), 0);
    CHECK_EQ_INT(ar.action, WARDEN__V1__AUDIT_ACTION__AUDIT_ACTION_ACCESS_CHECK);
    CHECK_EQ_INT(ar.outcome, WARDEN__V1__AUDIT_OUTCOME__AUDIT_OUTCOME_DENIED);
    CHECK(strstr(ar.detail, "USES_EXHAUSTED") != NULL);

    /* Expiry against cluster time: valid up to, not at, expires_ms. */
    CHECK_EQ_INT(grant(f, "bob", "dev1", HOUR, 5, gid), 0);
    tick(f, HOUR - 1);
    struct chk e1 = check(f, "gw1", "bob", "dev1");
    CHECK_EQ_INT(e1.decision, ALLOW);
    CHECK_EQ_INT(e1.remaining, 1);
    tick(f, 1);
    CHECK_EQ_INT(check(f, "gw1", "bob", "dev1").reason, R_(EXPIRED));
    CHECK_EQ_INT(grant_state(f, gid, NULL), GS_(EXPIRED));
    /* Revoke: admin/operator only, then GRANT_REVOKED. */
    CHECK_EQ_INT(grant(f, "carl", "dev1", HOUR, 5, gid), 0);
    CHECK_EQ_INT(revoke(f, gid, WROLE_GATEWAY), WERR_PERM);
    CHECK_EQ_INT(revoke(f, gid, WROLE_OPERATOR), 0);
    CHECK_EQ_INT(revoke(f, gid, WROLE_OPERATOR), WERR_PRECOND);
    CHECK_EQ_INT(check(f, "gw1", "carl", "dev1").reason, R_(GRANT_REVOKED));
    /* Dead grants are swept ACC_GRANT_KEEP_MS after expiry. */
    tick(f, ACC_GRANT_KEEP_MS + HOUR);
    CHECK_EQ_INT(check(f, "gw1", "carl", "dev1").reason, R_(NO_GRANT));
    CHECK_EQ_INT(grant_state(f, gid, NULL), -1);
    wfsm_close(f);
}

TEST(blast_radius_gateway_not_bound)
{
    struct wfsm *f = fsm_new();
    CHECK(f != NULL);
    CHECK_EQ_INT(device(f, "dev1", "gw1"), 0);
    char gid[ACC_ID_MAX + 1];
    CHECK_EQ_INT(grant(f, "alice", "dev1", HOUR, 5, gid), 0);
    struct chk k = check(f, "gw2", "alice", "dev1");
    CHECK_EQ_INT(k.code, WERR_PERM);
    struct audit_rec ar;
    CHECK_EQ_INT(ftu_last_audit(f, &ar), 0);
    CHECK_EQ_INT(ar.action, WARDEN__V1__AUDIT_ACTION__AUDIT_ACTION_ACCESS_CHECK);
    CHECK_EQ_INT(ar.outcome, WARDEN__V1__AUDIT_OUTCOME__AUDIT_OUTCOME_DENIED);
    CHECK_EQ_STR(ar.principal, "gw2");
    CHECK(strstr(ar.detail, "GATEWAY_NOT_BOUND") != NULL);
    /* Unknown device: the same answer (no existence oracle). */
    CHECK_EQ_INT(check(f, "gw2", "alice", "ghost").code, WERR_PERM);
    /* No use was consumed by the refusals. */
    uint32_t uses = 0;
    CHECK_EQ_INT(grant_state(f, gid, &uses), GS_(ACTIVE));
    CHECK_EQ_INT(uses, 5);
    /* Only gateways check. */
    Warden__V1__Command c;
    cmd_init(&c, "gw1", WROLE_OPERATOR);
    Warden__V1__CheckAccessRequest r = WARDEN__V1__CHECK_ACCESS_REQUEST__INIT;
    r.principal = (char *)"alice";
    r.device_id = (char *)"dev1";
    r.protocol = (char *)"ssh";
    c.op_case = WARDEN__V1__COMMAND__OP_CHECK_ACCESS;
    c.check_access = &r;
    CHECK_EQ_INT(run(f, &c, NULL), WERR_PERM);
    CHECK_EQ_INT(check(f, "gw1", "alice", "dev1").decision, ALLOW);
    wfsm_close(f);
}

TEST(locks_each_kind)
{
    struct wfsm *f = fsm_new();
    CHECK(f != NULL);
    CHECK_EQ_INT(device(f, "dev1", "gw1"), 0);
    CHECK_EQ_INT(device(f, "dev2", "gw2"), 0);
    char g1[ACC_ID_MAX + 1], g2[ACC_ID_MAX + 1], lid[ACC_ID_MAX + 1];
    static const struct {
        int kind;
        const char *value;
        int reason;
    } cases[] = {
        {K_(DEVICE), "dev1", R_(DEVICE_LOCKED)},
        {K_(PRINCIPAL), "alice", R_(PRINCIPAL_LOCKED)},
        {K_(GATEWAY), "gw1", R_(GATEWAY_LOCKED)},
        {K_(LABEL_SELECTOR), NULL, R_(DEVICE_LOCKED)},
        {K_(ALL), NULL, R_(ALL_LOCKED)},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        CHECK_EQ_INT(grant(f, "alice", "dev1", HOUR, 5, g1), 0);
        CHECK_EQ_INT(grant(f, "bob", "dev2", HOUR, 5, g2), 0);
        int label = cases[i].kind == K_(LABEL_SELECTOR);
        CHECK_EQ_INT(lock(f, cases[i].kind, cases[i].value, label ? "site" : NULL,
                          "plant1", 0, lid), 0);
        struct chk k = check(f, "gw1", "alice", "dev1");
        CHECK_EQ_INT(k.decision, DENY);
        CHECK_EQ_INT(k.reason, cases[i].reason);
        CHECK_EQ_STR(k.lock, lid);
        /* The matching grant was revoked on commit; bob's on dev2 only by
         * the kinds that cover dev2. */
        CHECK_EQ_INT(grant_state(f, g1, NULL), GS_(REVOKED));
        int covers2 = cases[i].kind == K_(LABEL_SELECTOR) || cases[i].kind == K_(ALL);
        CHECK_EQ_INT(grant_state(f, g2, NULL), covers2 ? GS_(REVOKED) : GS_(ACTIVE));
        CHECK_EQ_INT(unlock(f, lid), 0);
        CHECK_EQ_INT(unlock(f, lid), WERR_NOTFOUND);
        /* Unlocked: the revoked grant stays revoked... */
        CHECK_EQ_INT(check(f, "gw1", "alice", "dev1").reason, R_(GRANT_REVOKED));
        /* ...and a new one works. */
        CHECK_EQ_INT(grant(f, "alice", "dev1", HOUR, 5, g1), 0);
        CHECK_EQ_INT(check(f, "gw1", "alice", "dev1").decision, ALLOW);
        CHECK_EQ_INT(revoke(f, g1, WROLE_ADMIN), 0);
        if (!covers2) {
            CHECK_EQ_INT(revoke(f, g2, WROLE_ADMIN), 0);
        }
    }
    /* A label lock catches a device that gains the label later (enrolled
     * with it after the lock). */
    CHECK_EQ_INT(lock(f, K_(LABEL_SELECTOR), NULL, "zone", "red", 0, lid), 0);
    CHECK_EQ_INT(enroll(f, "dev9", "gw1", "zone", "red"), 0);
    CHECK_EQ_INT(set_state(f, "dev9", S_ACTIVE), 0);
    CHECK_EQ_INT(grant(f, "alice", "dev9", HOUR, 5, g1), 0);
    struct chk k9 = check(f, "gw1", "alice", "dev9");
    CHECK_EQ_INT(k9.reason, R_(DEVICE_LOCKED));
    CHECK_EQ_STR(k9.lock, lid);
    CHECK_EQ_INT(check(f, "gw1", "alice", "dev1").reason, R_(GRANT_REVOKED));
    CHECK_EQ_INT(unlock(f, lid), 0);
    CHECK_EQ_INT(check(f, "gw1", "alice", "dev9").decision, ALLOW);
    /* A lock with an expiry in cluster time lapses by itself. */
    CHECK_EQ_INT(lock(f, K_(PRINCIPAL), "zed", NULL, NULL, now_ms + 5000, lid), 0);
    CHECK_EQ_INT(grant(f, "zed", "dev9", HOUR, 5, g1), 0);
    CHECK_EQ_INT(check(f, "gw1", "zed", "dev9").reason, R_(PRINCIPAL_LOCKED));
    tick(f, 5000);
    CHECK_EQ_INT(check(f, "gw1", "zed", "dev9").decision, ALLOW);
    /* Validation and roles. */
    CHECK_EQ_INT(lock(f, K_(ALL), "x", NULL, NULL, 0, lid), WERR_INVALID);
    CHECK_EQ_INT(lock(f, K_(DEVICE), "dev1", NULL, NULL, now_ms, lid), WERR_INVALID);
    Warden__V1__Command c;
    cmd_init(&c, "gw1", WROLE_GATEWAY);
    Warden__V1__LockRequest r = WARDEN__V1__LOCK_REQUEST__INIT;
    r.kind = K_(ALL);
    r.reason = (char *)"x";
    c.op_case = WARDEN__V1__COMMAND__OP_LOCK;
    c.lock = &r;
    CHECK_EQ_INT(run(f, &c, NULL), WERR_PERM);
    wfsm_close(f);
}

TEST(lock_view_stale)
{
    struct wfsm *f = fsm_new();
    CHECK(f != NULL);
    CHECK_EQ_INT(device(f, "dev1", "gw1"), 0);
    CHECK_EQ_INT(set_policy(f, WROLE_ADMIN, (uint32_t)-1, 2, 0), 0);
    char gid[ACC_ID_MAX + 1], lid[ACC_ID_MAX + 1];
    CHECK_EQ_INT(grant(f, "alice", "dev1", HOUR, 5, gid), 0);
    uint64_t r0 = revision(f);
    for (int i = 0; i < 3; i++) {
        CHECK_EQ_INT(lock(f, K_(PRINCIPAL), "someone", NULL, NULL, 0, lid), 0);
    }
    CHECK_EQ_INT(revision(f), r0 + 3);
    struct chk k = check_full(f, "gw1", "alice", "dev1", "ssh", 22, r0, NULL);
    CHECK_EQ_INT(k.decision, DENY);
    CHECK_EQ_INT(k.reason, R_(LOCK_VIEW_STALE));
    CHECK_EQ_INT(k.revision, r0 + 3);
    CHECK_EQ_INT(check_full(f, "gw1", "alice", "dev1", "ssh", 22, r0 + 1, NULL).decision,
                 ALLOW);
    CHECK_EQ_INT(check_full(f, "gw1", "alice", "dev1", "ssh", 22, r0 + 9, NULL).code,
                 WERR_INVALID);
    wfsm_close(f);
}

TEST(revocation_log_order_resume_retention)
{
    struct wfsm *f = fsm_new();
    CHECK(f != NULL);
    CHECK_EQ_INT(device(f, "dev1", "gw1"), 0);
    CHECK_EQ_INT(device(f, "dev2", "gw2"), 0);
    char g1[ACC_ID_MAX + 1], lid[ACC_ID_MAX + 1];
    CHECK_EQ_INT(grant(f, "alice", "dev1", HOUR, 5, g1), 0);
    CHECK_EQ_INT(revoke(f, g1, WROLE_ADMIN), 0);                  /* rev 1: gw1 */
    CHECK_EQ_INT(lock(f, K_(DEVICE), "dev2", NULL, NULL, 0, lid), 0); /* 2: gw2 */
    CHECK_EQ_INT(lock(f, K_(ALL), NULL, NULL, NULL, 0, lid), 0);  /* 3: * */
    CHECK_EQ_INT(unlock(f, lid), 0);                              /* 4: * */
    CHECK_EQ_INT(set_state(f, "dev1", S_QUAR), 0);                /* 5: gw1 */
    struct acc_rev_page p;
    CHECK_EQ_INT(revlog(f, NULL, 0, 0, &p), 0);
    CHECK_EQ_INT(p.n, 5);
    CHECK_EQ_INT(p.latest, 5);
    static const int kinds[] = {
        WARDEN__V1__REVOCATION_KIND__REVOCATION_KIND_GRANT_REVOKED,
        WARDEN__V1__REVOCATION_KIND__REVOCATION_KIND_LOCK,
        WARDEN__V1__REVOCATION_KIND__REVOCATION_KIND_LOCK,
        WARDEN__V1__REVOCATION_KIND__REVOCATION_KIND_UNLOCK,
        WARDEN__V1__REVOCATION_KIND__REVOCATION_KIND_DEVICE_QUARANTINED};
    uint64_t prev_index = 0;
    for (size_t i = 0; i < p.n; i++) {
        CHECK_EQ_INT(p.events[i]->revision, i + 1);
        CHECK_EQ_INT(p.events[i]->kind, kinds[i]);
        CHECK(p.events[i]->index > prev_index); /* commit order */
        prev_index = p.events[i]->index;
    }
    CHECK_EQ_STR(p.events[0]->grant_id, g1);
    acc_rev_page_free(&p);
    /* gw1 sees its own and the "*" events. */
    CHECK_EQ_INT(revlog(f, "gw1", 0, 0, &p), 0);
    CHECK_EQ_INT(p.n, 4);
    CHECK_EQ_INT(p.events[0]->revision, 1);
    CHECK_EQ_INT(p.events[1]->revision, 3);
    CHECK_EQ_INT(p.next, 5);
    acc_rev_page_free(&p);
    /* Resume from a revision; max bounds the page. */
    CHECK_EQ_INT(revlog(f, "gw2", 2, 1, &p), 0);
    CHECK_EQ_INT(p.n, 1);
    CHECK_EQ_INT(p.events[0]->revision, 3);
    uint64_t next = p.next;
    acc_rev_page_free(&p);
    CHECK_EQ_INT(revlog(f, "gw2", next, 0, &p), 0);
    CHECK_EQ_INT(p.n, 1);
    CHECK_EQ_INT(p.events[0]->revision, 4);
    CHECK_EQ_INT(p.next, 5); /* rev 5 (gw1) examined, not returned */
    acc_rev_page_free(&p);
    /* Idle: a progress answer with the latest revision. */
    CHECK_EQ_INT(revlog(f, "gw2", 5, 0, &p), 0);
    CHECK_EQ_INT(p.n, 0);
    CHECK_EQ_INT(p.latest, 5);
    acc_rev_page_free(&p);
    CHECK_EQ_INT(revlog(f, "gw2", 6, 0, &p), WERR_UNAVAIL);
    /* Retention: keep the newest 8; a reader behind it gets OUT_OF_RANGE. */
    CHECK_EQ_INT(set_policy(f, WROLE_ADMIN, (uint32_t)-1, 0, 8), 0);
    for (int i = 0; i < 10; i++) {
        CHECK_EQ_INT(lock(f, K_(PRINCIPAL), "p", NULL, NULL, 0, lid), 0);
    }
    CHECK_EQ_INT(revision(f), 15);
    CHECK_EQ_INT(revlog(f, "gw1", 0, 0, &p), WERR_RANGE);
    CHECK_EQ_INT(revlog(f, "gw1", 6, 0, &p), WERR_RANGE);
    CHECK_EQ_INT(revlog(f, "gw1", 7, 0, &p), 0);
    CHECK_EQ_INT(p.n, 8);
    CHECK_EQ_INT(p.events[0]->revision, 8);
    acc_rev_page_free(&p);
    CHECK_EQ_INT(werr_grpc_status(WERR_RANGE), 11);
    wfsm_close(f);
}

TEST(quarantine_revokes_grants_same_txn)
{
    struct wfsm *f = fsm_new();
    CHECK(f != NULL);
    CHECK_EQ_INT(device(f, "dev1", "gw1"), 0);
    CHECK_EQ_INT(device(f, "dev2", "gw1"), 0);
    char g1[ACC_ID_MAX + 1], g2[ACC_ID_MAX + 1];
    CHECK_EQ_INT(grant(f, "alice", "dev1", HOUR, 5, g1), 0);
    CHECK_EQ_INT(grant(f, "alice", "dev2", HOUR, 5, g2), 0);
    uint64_t idx = wfsm_applied_index(f);
    CHECK_EQ_INT(set_state(f, "dev1", S_QUAR), 0);
    CHECK_EQ_INT(grant_state(f, g1, NULL), GS_(REVOKED));
    CHECK_EQ_INT(grant_state(f, g2, NULL), GS_(ACTIVE));
    struct acc_rev_page p;
    CHECK_EQ_INT(revlog(f, "gw1", 0, 0, &p), 0);
    CHECK_EQ_INT(p.n, 1);
    CHECK_EQ_INT(p.events[0]->index, idx + 1); /* the same command */
    CHECK_EQ_STR(p.events[0]->device_ids[0], "dev1");
    acc_rev_page_free(&p);
    CHECK_EQ_INT(check(f, "gw1", "alice", "dev1").reason, R_(DEVICE_NOT_ACTIVE));
    /* Re-activated, the old grant stays revoked. */
    CHECK_EQ_INT(set_state(f, "dev1", S_ACTIVE), 0);
    CHECK_EQ_INT(check(f, "gw1", "alice", "dev1").reason, R_(GRANT_REVOKED));
    CHECK_EQ_INT(check(f, "gw1", "alice", "dev2").decision, ALLOW);
    /* A failed state change (refused transition) revokes nothing. */
    CHECK_EQ_INT(set_state(f, "dev2", S_ACTIVE), WERR_PRECOND);
    CHECK_EQ_INT(grant_state(f, g2, NULL), GS_(ACTIVE));
    wfsm_close(f);
}

TEST(policy_admin_only_and_audited)
{
    struct wfsm *f = fsm_new();
    CHECK(f != NULL);
    CHECK_EQ_INT(device(f, "dev1", "gw1"), 0);
    CHECK_EQ_INT(set_policy(f, WROLE_OPERATOR, 1, 0, 0), WERR_PERM);
    struct audit_rec ar;
    CHECK_EQ_INT(ftu_last_audit(f, &ar), 0);
    CHECK_EQ_INT(ar.action, WARDEN__V1__AUDIT_ACTION__AUDIT_ACTION_ACCESS_POLICY);
    CHECK_EQ_INT(ar.outcome, WARDEN__V1__AUDIT_OUTCOME__AUDIT_OUTCOME_DENIED);
    CHECK_EQ_INT(set_policy(f, WROLE_ADMIN, 0, 0, 0), WERR_INVALID);
    CHECK_EQ_INT(set_policy(f, WROLE_ADMIN, 99, 0, 0), WERR_INVALID);
    /* Maintenance: 3 approvals by admins only. */
    CHECK_EQ_INT(set_policy(f, WROLE_ADMIN, 3, 0, 0), 0);
    CHECK_EQ_INT(ftu_last_audit(f, &ar), 0);
    CHECK_EQ_INT(ar.action, WARDEN__V1__AUDIT_ACTION__AUDIT_ACTION_ACCESS_POLICY);
    CHECK_EQ_INT(ar.outcome, WARDEN__V1__AUDIT_OUTCOME__AUDIT_OUTCOME_OK);
    CHECK(strstr(ar.detail, "maintenance 3-of") != NULL);
    char rid[ACC_ID_MAX + 1], gid[ACC_ID_MAX + 1];
    CHECK_EQ_INT(request(f, "alice", "dev1", P_(MAINTENANCE), HOUR, 3, rid), 0);
    CHECK_EQ_INT(review(f, "bob", WROLE_OPERATOR, rid, 1, gid, NULL), WERR_PERM);
    CHECK_EQ_INT(review(f, "a1", WROLE_ADMIN, rid, 1, gid, NULL), 0);
    CHECK_EQ_INT(review(f, "a2", WROLE_ADMIN, rid, 1, gid, NULL), 0);
    CHECK_EQ_INT(gid[0], 0);
    CHECK_EQ_INT(review(f, "a3", WROLE_ADMIN, rid, 1, gid, NULL), 0);
    CHECK(gid[0] != 0);
    /* Policy read back. */
    struct werr e = {0};
    struct store_txn *t;
    struct access a;
    CHECK_EQ_INT(store_txn_begin(wfsm_store(f), 0, &t, &e), 0);
    Warden__V1__AccessPolicy *p = NULL;
    int rc = acc_bind(&a, wfsm_store(f), wfsm_inv(f), &e);
    if (rc == 0) {
        rc = acc_policy_get(&a, t, &p, &e);
    }
    store_txn_abort(t);
    CHECK_EQ_INT(rc, 0);
    const Warden__V1__AccessPurposeRule *r = acc_policy_rule(p, P_(MAINTENANCE));
    const Warden__V1__AccessPurposeRule *ri = acc_policy_rule(p, P_(INCIDENT));
    int m = r ? (int)r->approvals_required : -1;
    int mi = ri ? (int)ri->approvals_required : -1;
    acc_msg_free(p);
    CHECK_EQ_INT(m, 3);
    CHECK_EQ_INT(mi, 1); /* untouched purposes keep their rule */
    wfsm_close(f);
}

TEST(list_grants_filters_and_pages)
{
    struct wfsm *f = fsm_new();
    CHECK(f != NULL);
    CHECK_EQ_INT(device(f, "dev1", "gw1"), 0);
    CHECK_EQ_INT(device(f, "dev2", "gw1"), 0);
    char gid[ACC_ID_MAX + 1];
    for (int i = 0; i < 5; i++) {
        CHECK_EQ_INT(grant(f, i % 2 ? "bob" : "alice", i < 3 ? "dev1" : "dev2",
                           HOUR, 5, gid), 0);
    }
    CHECK_EQ_INT(revoke(f, gid, WROLE_ADMIN), 0); /* the last: alice, dev2 */
    struct werr e = {0};
    struct store_txn *t;
    struct access a;
    CHECK_EQ_INT(store_txn_begin(wfsm_store(f), 0, &t, &e), 0);
    CHECK_EQ_INT(acc_bind(&a, wfsm_store(f), wfsm_inv(f), &e), 0);
    Warden__V1__ListGrantsRequest q = WARDEN__V1__LIST_GRANTS_REQUEST__INIT;
    struct acc_grant_page pg;
    size_t total = 0, pages = 0;
    char token[ACC_PAGE_TOKEN_MAX + 1] = "";
    q.page_size = 2;
    do {
        q.page_token = token;
        if (acc_list_grants(&a, t, wfsm_cluster_time(f), &q, &pg, &e) != 0) {
            break;
        }
        total += pg.n;
        pages++;
        snprintf(token, sizeof token, "%s", pg.next_token);
        acc_grant_page_free(&pg);
    } while (token[0] && pages < 10);
    size_t n_alice = 0, n_dev2 = 0, n_revoked = 0;
    q.page_size = 0;
    q.page_token = (char *)"";
    q.principal = (char *)"alice";
    if (acc_list_grants(&a, t, wfsm_cluster_time(f), &q, &pg, &e) == 0) {
        n_alice = pg.n;
        acc_grant_page_free(&pg);
    }
    q.principal = (char *)"";
    q.device_id = (char *)"dev2";
    if (acc_list_grants(&a, t, wfsm_cluster_time(f), &q, &pg, &e) == 0) {
        n_dev2 = pg.n;
        acc_grant_page_free(&pg);
    }
    q.device_id = (char *)"";
    q.state = GS_(REVOKED);
    if (acc_list_grants(&a, t, wfsm_cluster_time(f), &q, &pg, &e) == 0) {
        n_revoked = pg.n;
        acc_grant_page_free(&pg);
    }
    q.state = 0;
    q.page_size = ACC_PAGE_SIZE_MAX + 1;
    int big = acc_list_grants(&a, t, wfsm_cluster_time(f), &q, &pg, &e);
    q.page_size = 0;
    q.page_token = (char *)"garbage";
    int bad = acc_list_grants(&a, t, wfsm_cluster_time(f), &q, &pg, &e);
    store_txn_abort(t);
    CHECK_EQ_INT(total, 5);
    CHECK_EQ_INT(pages, 3);
    CHECK_EQ_INT(n_alice, 3);
    CHECK_EQ_INT(n_dev2, 2);
    CHECK_EQ_INT(n_revoked, 1);
    CHECK_EQ_INT(big, WERR_INVALID);
    CHECK_EQ_INT(bad, WERR_INVALID);
    wfsm_close(f);
}

/* Two fsms fed the same commands end with the same ledger head: the
 * access ops are deterministic. */
TEST(deterministic_heads)
{
    uint8_t h[2][AUDIT_HASH_LEN];
    uint64_t seq[2];
    for (int n = 0; n < 2; n++) {
        now_ms = 5000000;
        struct wfsm *f = fsm_new();
        CHECK(f != NULL);
        char gid[ACC_ID_MAX + 1], lid[ACC_ID_MAX + 1];
        CHECK_EQ_INT(device(f, "dev1", "gw1"), 0);
        CHECK_EQ_INT(grant(f, "alice", "dev1", HOUR, 3, gid), 0);
        CHECK_EQ_INT(check(f, "gw1", "alice", "dev1").decision, ALLOW);
        CHECK_EQ_INT(lock(f, K_(ALL), NULL, NULL, NULL, 0, lid), 0);
        CHECK_EQ_INT(check(f, "gw1", "alice", "dev1").reason, R_(ALL_LOCKED));
        struct werr e = {0};
        struct store_txn *t;
        CHECK_EQ_INT(store_txn_begin(wfsm_store(f), 0, &t, &e), 0);
        int rc = audit_head(wfsm_audit(f), t, &seq[n], h[n], &e);
        store_txn_abort(t);
        CHECK_EQ_INT(rc, 0);
        wfsm_close(f);
    }
    CHECK_EQ_INT(seq[0], seq[1]);
    CHECK(memcmp(h[0], h[1], AUDIT_HASH_LEN) == 0);
}

static void rm_rf(const char *path)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
    if (system(cmd) != 0) {
        fprintf(stderr, "cleanup of %s failed\n", path);
    }
}

int main(void)
{
    if (ftu_setup(tmp_root, sizeof tmp_root, "/tmp/warden-acc-XXXXXX", pub) !=
        0) {
        return 1;
    }
    memset(digest, 0xab, sizeof digest);
    RUN(m_of_n_self_approval_double_vote_deny);
    RUN(pending_expiry_by_cluster_time);
    RUN(uses_exactly_once_and_expiry);
    RUN(blast_radius_gateway_not_bound);
    RUN(locks_each_kind);
    RUN(lock_view_stale);
    RUN(revocation_log_order_resume_retention);
    RUN(quarantine_revokes_grants_same_txn);
    RUN(policy_admin_only_and_audited);
    RUN(list_grants_filters_and_pages);
    RUN(deterministic_heads);
    rm_rf(tmp_root);
    return unit_done();
}
