/* test_consensus_fsm_labels.c - UpdateDeviceLabels (issue 7) through the
 * replicated state machine: encoded Commands applied with wfsm_apply over
 * real LMDB. updated_index becomes the entry's index; a version mismatch
 * is FAILED_PRECONDITION (WERR_PRECOND) and audited REJECTED; success is
 * audited OK (AUDIT_ACTION_LABELS, detail names the versions); the
 * response packs the device; an idempotent retry replays the first result
 * instead of failing on the moved version. */
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

#define A_LABELS WARDEN__V1__AUDIT_ACTION__AUDIT_ACTION_LABELS
#define O_(x) WARDEN__V1__AUDIT_OUTCOME__AUDIT_OUTCOME_##x

static char tmp_root[256];
static uint8_t ed_pub[32];
static uint8_t digest[32];

static int run(struct wfsm *f, const Warden__V1__Command *c,
               struct wfsm_result *res)
{
    return ftu_run(f, c, res, NULL, 0);
}

static void cmd_init(Warden__V1__Command *c, const char *who, unsigned role)
{
    ftu_cmd_init(c, who, role, 1000);
}

static int enroll(struct wfsm *f, const char *id)
{
    Warden__V1__Command c;
    cmd_init(&c, "alice", WROLE_ADMIN);
    Warden__V1__EnrollDeviceRequest r = WARDEN__V1__ENROLL_DEVICE_REQUEST__INIT;
    r.device_id = (char *)id;
    r.key_algorithm = WARDEN__V1__KEY_ALGORITHM__KEY_ALGORITHM_ED25519;
    r.public_key.data = ed_pub;
    r.public_key.len = sizeof ed_pub;
    r.attestation_digest.data = digest;
    r.attestation_digest.len = sizeof digest;
    r.gateway_id = (char *)"gw-a";
    c.op_case = WARDEN__V1__COMMAND__OP_ENROLL_DEVICE;
    c.enroll_device = &r;
    return run(f, &c, NULL);
}

/* One label site=<value>; returns the code, *dev (if non-NULL) the
 * response's device (caller frees). */
static int labels(struct wfsm *f, const char *id, const char *value,
                  uint64_t expected, const char *idem, unsigned role,
                  Warden__V1__Device **dev)
{
    Warden__V1__Command c;
    cmd_init(&c, "olga", role);
    Warden__V1__Label l = WARDEN__V1__LABEL__INIT;
    Warden__V1__Label *lp[] = {&l};
    l.key = (char *)"site";
    l.value = (char *)value;
    Warden__V1__UpdateDeviceLabelsRequest r =
        WARDEN__V1__UPDATE_DEVICE_LABELS_REQUEST__INIT;
    r.device_id = (char *)id;
    r.labels = lp;
    r.n_labels = 1;
    r.expected_updated_index = expected;
    r.idempotency_key = (char *)(idem ? idem : "");
    c.idempotency_key = r.idempotency_key;
    c.op_case = WARDEN__V1__COMMAND__OP_UPDATE_DEVICE_LABELS;
    c.update_device_labels = &r;
    struct wfsm_result res;
    int code = run(f, &c, &res);
    if (code == 0 && dev != NULL) {
        Warden__V1__UpdateDeviceLabelsResponse *resp =
            warden__v1__update_device_labels_response__unpack(NULL, res.resp_len,
                                                              res.resp);
        *dev = NULL;
        if (resp != NULL) {
            *dev = resp->device;
            resp->device = NULL;
            warden__v1__update_device_labels_response__free_unpacked(resp, NULL);
        }
    }
    if (code != -1000) {
        wfsm_result_free(&res);
    }
    return code;
}

TEST(labels_cas_through_the_fsm)
{
    char dir[300];
    snprintf(dir, sizeof dir, "%s/f0", tmp_root);
    struct werr e = {0};
    struct wfsm *f = NULL;
    CHECK_EQ_INT(wfsm_open(&f, dir, 0, &e), 0);
    CHECK_EQ_INT(enroll(f, "dev-1"), 0);
    uint64_t v0 = wfsm_applied_index(f);

    Warden__V1__Device *d = NULL;
    CHECK_EQ_INT(labels(f, "dev-1", "a", v0, NULL, WROLE_OPERATOR, &d), 0);
    CHECK(d != NULL);
    uint64_t v1 = wfsm_applied_index(f);
    CHECK_EQ_INT(d->updated_index, v1); /* the command's index */
    CHECK_EQ_STR(d->labels[0]->value, "a");
    inv_device_free(d);
    struct audit_rec r;
    CHECK_EQ_INT(ftu_last_audit(f, &r), 0);
    CHECK_EQ_INT(r.action, A_LABELS);
    CHECK_EQ_INT(r.outcome, O_(OK));
    CHECK_EQ_INT(r.raft_index, v1);
    CHECK_EQ_STR(r.target, "dev-1");
    CHECK_EQ_STR(r.principal, "olga");
    char want[128];
    snprintf(want, sizeof want, "1 labels, version %llu -> %llu",
             (unsigned long long)v0, (unsigned long long)v1);
    CHECK_EQ_STR(r.detail, want);

    /* stale version: rejected, audited, nothing changed */
    CHECK_EQ_INT(labels(f, "dev-1", "b", v0, NULL, WROLE_ADMIN, NULL),
                 WERR_PRECOND);
    CHECK_EQ_INT(ftu_last_audit(f, &r), 0);
    CHECK_EQ_INT(r.action, A_LABELS);
    CHECK_EQ_INT(r.outcome, O_(REJECTED));
    CHECK_EQ_INT(r.code, WERR_PRECOND);
    snprintf(want, sizeof want, "version mismatch: have %llu, expected %llu",
             (unsigned long long)v1, (unsigned long long)v0);
    CHECK(strstr(r.detail, want) != NULL);

    /* unknown device, and a role apply refuses (DENIED) */
    CHECK_EQ_INT(labels(f, "nope", "b", 0, NULL, WROLE_ADMIN, NULL),
                 WERR_NOTFOUND);
    CHECK_EQ_INT(labels(f, "dev-1", "b", 0, NULL, WROLE_GATEWAY, NULL), WERR_PERM);
    CHECK_EQ_INT(ftu_last_audit(f, &r), 0);
    CHECK_EQ_INT(r.outcome, O_(DENIED));

    /* unconditional */
    CHECK_EQ_INT(labels(f, "dev-1", "c", 0, "k1", WROLE_ADMIN, &d), 0);
    uint64_t v2 = wfsm_applied_index(f);
    CHECK_EQ_INT(d->updated_index, v2);
    inv_device_free(d);
    /* the same idempotency key replays the first answer, even though its
     * condition (0 here; any version) and the record moved on */
    CHECK_EQ_INT(labels(f, "dev-1", "d", v2, NULL, WROLE_ADMIN, NULL), 0);
    CHECK_EQ_INT(labels(f, "dev-1", "c", 0, "k1", WROLE_ADMIN, &d), 0);
    CHECK_EQ_INT(d->updated_index, v2);
    CHECK_EQ_STR(d->labels[0]->value, "c");
    inv_device_free(d);
    wfsm_close(f);
}

int main(void)
{
    if (ftu_setup(tmp_root, sizeof tmp_root, "/tmp/warden-test-fsmlabels-XXXXXX", ed_pub) != 0) {
        return 1;
    }
    for (size_t i = 0; i < sizeof digest; i++) {
        digest[i] = (uint8_t)i;
    }
    RUN(labels_cas_through_the_fsm);
    int rc = unit_done();
    if (rc == 0) {
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_root);
        if (system(cmd) != 0) {
            fprintf(stderr, "warning: could not remove %s\n", tmp_root);
        }
    }
    return rc;
}
