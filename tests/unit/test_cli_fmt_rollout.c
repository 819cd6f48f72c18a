/* Tests for cli/fmt_ops.c, rollouts: the status table with a progress bar
 * per stage, counts by phase, the gate evaluation, and the JSON form. The
 * GetRolloutResponse is built here, field by field. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/fmt_ops.h"
#include "unit.h"

static char *out_buf;
static size_t out_len;
static FILE *out_open(void)
{
    free(out_buf);
    out_buf = NULL;
    return open_memstream(&out_buf, &out_len);
}

static Warden__V1__Rollout ro;
static Warden__V1__Release rel;
static Warden__V1__RolloutSelector sel;
static Warden__V1__Label lab;
static Warden__V1__Label *labp[1] = {&lab};
static Warden__V1__RolloutStage st[4];
static Warden__V1__RolloutStage *stp[4] = {&st[0], &st[1], &st[2], &st[3]};
static Warden__V1__StageCounters ct[4];
static Warden__V1__StageCounters *ctp[4] = {&ct[0], &ct[1], &ct[2], &ct[3]};
static Warden__V1__StageGate gt[2];
static Warden__V1__StageGate *gtp[2] = {&gt[0], &gt[1]};
static Warden__V1__GetRolloutResponse resp;
static char *models[] = {"plc-x"};

/* Rollout 42 running in stage 1 of 4: the canary (1%) passed with 20 of
 * 20, stage 1 (10%) has 10 assigned and 5 reported, baking. */
static void mk(void)
{
    static const uint32_t pct[4] = {100, 1000, 5000, 10000};
    warden__v1__rollout__init(&ro);
    warden__v1__release__init(&rel);
    warden__v1__rollout_selector__init(&sel);
    warden__v1__label__init(&lab);
    warden__v1__get_rollout_response__init(&resp);
    lab.key = "site";
    lab.value = "plant-1";
    sel.labels = labp;
    sel.n_labels = 1;
    sel.hardware_model = "plc-x";
    for (int i = 0; i < 4; i++) {
        warden__v1__rollout_stage__init(&st[i]);
        warden__v1__stage_counters__init(&ct[i]);
        st[i].percent_bp = pct[i];
        st[i].min_reported = 10;
        st[i].success_ratio_bp = 9500;
        st[i].failure_ratio_bp = 500;
        st[i].bake_ms = 300000;
        st[i].auto_advance = 1;
    }
    st[0].name = "canary";
    ct[0].assigned = 20;
    ct[0].succeeded = 20;
    ct[0].started_time_ms = 1000;
    ct[1].assigned = 10;
    ct[1].downloading = 2;
    ct[1].installing = 1;
    ct[1].succeeded = 5;
    ct[1].started_time_ms = 400000;
    ro.rollout_id = 42;
    ro.name = "fw-2.1";
    ro.release_id = 17;
    ro.release_counter = 210;
    ro.selector = &sel;
    ro.stages = stp;
    ro.n_stages = 4;
    ro.counters = ctp;
    ro.n_counters = 4;
    ro.state = WARDEN__V1__ROLLOUT_STATE__ROLLOUT_STATE_RUNNING;
    ro.current_stage = 1;
    ro.reason = "auto advance: stage 0 passed";
    ro.created_index = 42;
    ro.created_time_ms = 900;
    ro.created_by = "rollout-1";
    ro.updated_index = 90;
    ro.updated_time_ms = 400000;
    rel.release_id = 17;
    rel.version = "2.1.0";
    rel.release_counter = 210;
    rel.hardware_models = models;
    rel.n_hardware_models = 1;
    for (int i = 0; i < 2; i++) {
        warden__v1__stage_gate__init(&gt[i]);
    }
    gt[0].stage = 0;
    gt[0].reported = 20;
    gt[0].min_reported_ok = 1;
    gt[0].success_bp = 10000;
    gt[0].success_ok = 1;
    gt[0].bake_ok = 1;
    gt[0].advance_ready = 1;
    gt[0].explain = "stage 0: gates pass";
    gt[1].stage = 1;
    gt[1].reported = 5;
    gt[1].success_bp = 10000;
    gt[1].success_ok = 1;
    gt[1].bake_remaining_ms = 240000;
    gt[1].explain = "stage 1: 5 of 10 reports";
    resp.rollout = &ro;
    resp.release = &rel;
    resp.gates = gtp;
    resp.n_gates = 2;
}

static const char status_want[] =
    "rollout             42  fw-2.1\n"
    "state               RUNNING, stage 1 of 4 (10%)\n"
    "release             17  version 2.1.0  counter 210\n"
    "selector            labels site=plant-1  model plc-x\n"
    "reason              auto advance: stage 0 passed\n"
    "created             index 42  time_ms 900  by rollout-1\n"
    "updated             index 90  time_ms 400000\n"
    "refused_transitions 0\n"
    "\n"
    "STAGE  NAME    SHARE  STATUS   PROGRESS           ASSIGNED  PENDING  "
    "DOWNLOADING  INSTALLING  SUCCEEDED  FAILED  REJECTED  ROLLED_BACK  TIMED_OUT\n"
    "0      canary  1%     done     [##########] 100%  20        0        "
    "0            0           20         0       0         0            0\n"
    "1      -       10%    current  [#####.....] 50%   10        2        "
    "2            1           5          0       0         0            0\n"
    "2      -       50%    waiting  [..........] -     0         0        "
    "0            0           0          0       0         0            0\n"
    "3      -       100%   waiting  [..........] -     0         0        "
    "0            0           0          0       0         0            0\n"
    "\n"
    "GATE  REPORTED  MIN_REPORTED     SUCCESS             FAILURE                "
    "       BAKE                  ADVANCE       EXPLAIN\n"
    "0     20        pass (20 >= 10)  pass (100% >= 95%)  ok (0% <= 5%)          "
    "       pass (5m)             ready (auto)  stage 0: gates pass\n"
    "1     5         FAIL (5 < 10)    pass (100% >= 95%)  not judged (5 of 10 "
    "reports)  FAIL (4m of 5m left)  no            stage 1: 5 of 10 reports\n";

TEST(status_table)
{
    mk();
    FILE *f = out_open();
    cli_fmt_rollout_status(f, &resp, 0);
    fclose(f);
    CHECK_EQ_STR(out_buf, status_want);
}

/* An aborted canary: 3 of 10 failed against a 20% abort line, a count
 * stage after it, manual advance; the gate says EXCEEDED and why. */
TEST(status_aborted_gate_exceeded)
{
    mk();
    ro.state = WARDEN__V1__ROLLOUT_STATE__ROLLOUT_STATE_ABORTED;
    ro.current_stage = 0;
    ro.reason = "auto abort: stage 0 failure ratio 3000 bp > 2000 bp (3 of 10)";
    ro.n_stages = 2;
    ro.n_counters = 2;
    st[0].failure_ratio_bp = 2000;
    st[0].auto_advance = 0;
    st[1].max_devices = 50;
    st[1].percent_bp = 0;
    ct[0].assigned = 12;
    ct[0].succeeded = 7;
    ct[0].failed = 2;
    ct[0].timed_out = 1;
    ct[1].assigned = 0;
    ct[1].downloading = ct[1].installing = ct[1].succeeded = 0;
    ct[1].started_time_ms = 0;
    gt[0].reported = 10;
    gt[0].success_bp = 7000;
    gt[0].success_ok = 0;
    gt[0].failure_bp = 3000;
    gt[0].failure_exceeded = 1;
    gt[0].advance_ready = 0;
    gt[0].explain = "stage 0 failure ratio 3000 bp > 2000 bp (3 of 10)";
    resp.n_gates = 1;
    resp.release = NULL;
    FILE *f = out_open();
    cli_fmt_rollout_status(f, &resp, 0);
    fclose(f);
    CHECK_EQ_STR(out_buf,
        "rollout             42  fw-2.1\n"
        "state               ABORTED, stage 0 of 2 (1%)\n"
        "release             17  counter 210\n"
        "selector            labels site=plant-1  model plc-x\n"
        "reason              auto abort: stage 0 failure ratio 3000 bp > 2000 bp (3 of 10)\n"
        "created             index 42  time_ms 900  by rollout-1\n"
        "updated             index 90  time_ms 400000\n"
        "refused_transitions 0\n"
        "\n"
        "STAGE  NAME    SHARE       STATUS   PROGRESS          ASSIGNED  PENDING  "
        "DOWNLOADING  INSTALLING  SUCCEEDED  FAILED  REJECTED  ROLLED_BACK  TIMED_OUT\n"
        "0      canary  1%          aborted  [########..] 83%  12        2        "
        "0            0           7          2       0         0            1\n"
        "1      -       50 devices  waiting  [..........] -    0         0        "
        "0            0           0          0       0         0            0\n"
        "\n"
        "GATE  REPORTED  MIN_REPORTED     SUCCESS           FAILURE                       "
        "   BAKE       ADVANCE  EXPLAIN\n"
        "0     10        pass (10 >= 10)  FAIL (70% < 95%)  EXCEEDED (30%, abort above 20%)"
        "  pass (5m)  no       stage 0 failure ratio 3000 bp > 2000 bp (3 of 10)\n");
}

/* A DRAFT rollout has no gates yet; a release with no reports gets
 * "no reports" in the success column. */
TEST(status_draft_and_no_reports)
{
    mk();
    ro.state = WARDEN__V1__ROLLOUT_STATE__ROLLOUT_STATE_DRAFT;
    ro.current_stage = 0;
    ro.n_stages = 1;
    ro.n_counters = 1;
    ro.selector = NULL;
    ro.name = "";
    ct[0].assigned = 0;
    ct[0].succeeded = 0;
    ct[0].started_time_ms = 0;
    gt[0].reported = 0;
    gt[0].min_reported_ok = 0;
    gt[0].success_bp = 0;
    gt[0].success_ok = 0;
    gt[0].bake_ok = 0;
    gt[0].bake_remaining_ms = 300000;
    gt[0].advance_ready = 0;
    gt[0].explain = "stage 0: 0 of 10 reports";
    resp.n_gates = 1;
    FILE *f = out_open();
    cli_fmt_rollout_status(f, &resp, 0);
    fclose(f);
    CHECK(strstr(out_buf, "rollout             42\n") != NULL);
    CHECK(strstr(out_buf, "state               DRAFT\n") != NULL);
    CHECK(strstr(out_buf, "selector            every compatible device\n") != NULL);
    CHECK(strstr(out_buf, "0      canary  1%     waiting  [..........] -  0         0") !=
          NULL);
    CHECK(strstr(out_buf, "FAIL (0 < 10)  FAIL (no reports; need 95%)  "
                          "not judged (0 of 10 reports)  FAIL (not started; 5m)  no"
                          "       stage 0: 0 of 10 reports\n") != NULL);
}

TEST(status_json)
{
    mk();
    resp.n_gates = 1;
    FILE *f = out_open();
    cli_fmt_rollout_status(f, &resp, 1);
    fclose(f);
    /* One document, one line. */
    CHECK(out_len > 0 && out_buf[out_len - 1] == '\n');
    CHECK(strchr(out_buf, '\n') == out_buf + out_len - 1);
    CHECK(strncmp(out_buf, "{\"rollout\":{\"rollout_id\":42,\"name\":\"fw-2.1\","
                           "\"release_id\":17,\"release_counter\":210,\"selector\":"
                           "{\"labels\":[{\"key\":\"site\",\"value\":\"plant-1\"}],"
                           "\"hardware_model\":\"plc-x\",\"gateway_id\":\"\"},"
                           "\"stages\":[{\"name\":\"canary\",\"percent_bp\":100,",
                  190) == 0);
    CHECK(strstr(out_buf, "\"state\":\"ROLLOUT_STATE_RUNNING\",\"current_stage\":1,")
          != NULL);
    CHECK(strstr(out_buf, ",\"gates\":[{\"stage\":0,\"reported\":20,"
                          "\"min_reported_ok\":true,\"success_bp\":10000,"
                          "\"success_ok\":true,\"failure_bp\":0,"
                          "\"failure_exceeded\":false,\"bake_remaining_ms\":0,"
                          "\"bake_ok\":true,\"advance_ready\":true,"
                          "\"explain\":\"stage 0: gates pass\"}]}\n") != NULL);
}

TEST(release_and_key)
{
    static uint8_t sha[2] = {0xab, 0x01};
    static uint8_t sig[2] = {0xff, 0x00};
    mk();
    rel.artifact_sha256.data = sha;
    rel.artifact_sha256.len = 2;
    rel.signature.data = sig;
    rel.signature.len = 2;
    rel.key_id = "rk1";
    rel.artifact_size = 1048576;
    rel.created_index = 17;
    rel.created_by = "admin-1";
    FILE *f = out_open();
    cli_fmt_release(f, &rel, 0);
    fclose(f);
    CHECK_EQ_STR(out_buf,
                 "release_id          17\n"
                 "version             2.1.0\n"
                 "release_counter     210\n"
                 "artifact_sha256     ab01\n"
                 "artifact_size       1048576\n"
                 "hardware_models     plc-x\n"
                 "key_id              rk1\n"
                 "manifest            0 bytes\n"
                 "signature           ff00\n"
                 "rollback_of         -\n"
                 "created_index       17\n"
                 "created_time_ms     0\n"
                 "created_by          admin-1\n");
    f = out_open();
    cli_fmt_release(f, &rel, 1);
    fclose(f);
    CHECK_EQ_STR(out_buf,
                 "{\"release_id\":17,\"version\":\"2.1.0\",\"release_counter\":210,"
                 "\"artifact_sha256\":\"ab01\",\"artifact_size\":1048576,"
                 "\"hardware_models\":[\"plc-x\"],\"key_id\":\"rk1\",\"manifest\":\"\","
                 "\"signature\":\"ff00\",\"rollback_of\":0,\"reason\":\"\","
                 "\"created_index\":17,\"created_time_ms\":0,"
                 "\"created_by\":\"admin-1\"}\n");
    Warden__V1__ReleaseKey k = WARDEN__V1__RELEASE_KEY__INIT;
    k.key_id = "rk1";
    k.public_key.data = sha;
    k.public_key.len = 2;
    k.created_index = 5;
    k.created_by = "admin-1";
    k.revoked = 1;
    k.revoked_index = 9;
    k.revoked_by = "admin-2";
    k.revoke_reason = "rotated";
    f = out_open();
    cli_fmt_release_key(f, &k, 0);
    fclose(f);
    CHECK_EQ_STR(out_buf, "key_id              rk1\n"
                          "public_key          ab01\n"
                          "created_index       5\n"
                          "created_by          admin-1\n"
                          "revoked             yes, by admin-2 at index 9: rotated\n");
}

TEST(rollout_resp_rollback_and_report)
{
    mk();
    ro.n_stages = 1;
    ro.n_counters = 1;
    ro.state = WARDEN__V1__ROLLOUT_STATE__ROLLOUT_STATE_ABORTED;
    ro.current_stage = 0;
    ro.rollback_rollout_id = 51;
    Warden__V1__RolloutResponse r = WARDEN__V1__ROLLOUT_RESPONSE__INIT;
    r.rollout = &ro;
    r.rollback_release_id = 50;
    r.rollback_rollout_id = 51;
    FILE *f = out_open();
    cli_fmt_rollout_resp(f, &r, 0);
    fclose(f);
    CHECK(strstr(out_buf, "rollback_rollout    51\nrefused_transitions 0\n") != NULL);
    CHECK(strstr(out_buf, "0      canary  1%     aborted  [##########] 100%") != NULL);
    const char *tail = "\nrollback_release    50\nrollback_rollout    51\n";
    CHECK(out_len > strlen(tail) &&
          strcmp(out_buf + out_len - strlen(tail), tail) == 0);

    Warden__V1__ReportUpdateStatusResponse rep =
        WARDEN__V1__REPORT_UPDATE_STATUS_RESPONSE__INIT;
    rep.result = WARDEN__V1__REPORT_RESULT__REPORT_RESULT_REPLAY;
    rep.highest_counter = 7;
    rep.rollout_state = WARDEN__V1__ROLLOUT_STATE__ROLLOUT_STATE_RUNNING;
    rep.current_stage = 2;
    f = out_open();
    cli_fmt_report(f, &rep, 0);
    fclose(f);
    CHECK_EQ_STR(out_buf, "result              REPLAY\n"
                          "highest_counter     7\n"
                          "rollout_state       RUNNING\n"
                          "current_stage       2\n");
}

int main(void)
{
    RUN(status_table);
    RUN(status_aborted_gate_exceeded);
    RUN(status_draft_and_no_reports);
    RUN(status_json);
    RUN(release_and_key);
    RUN(rollout_resp_rollback_and_report);
    free(out_buf);
    return unit_done();
}
