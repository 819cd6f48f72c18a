/* test_domain_rollout.c - the pure parts of domain/rollout: the manifest
 * codec (round trip, strictness), stage buckets (stable, spread), the state
 * table, gate evaluation at its boundaries, and the report and
 * desired-state encodings. */
#include "domain/rollout.h"

#include <stdio.h>
#include <string.h>

#include "unit.h"

#define ST(x) WARDEN__V1__ROLLOUT_STATE__ROLLOUT_STATE_##x

static void manifest_fill(struct ro_manifest *m)
{
    memset(m, 0, sizeof *m);
    snprintf(m->version, sizeof m->version, "1.2.3");
    m->counter = 42;
    memset(m->sha256, 0xab, sizeof m->sha256);
    m->size = 1000;
    m->n_models = 2;
    snprintf(m->models[0], sizeof m->models[0], "a");
    snprintf(m->models[1], sizeof m->models[1], "b");
}

TEST(manifest_codec)
{
    struct ro_manifest m, d;
    struct werr e = {0};
    uint8_t buf[RO_MANIFEST_MAX];
    manifest_fill(&m);
    size_t n = ro_manifest_encode(&m, buf, sizeof buf);
    CHECK(n > 0);
    CHECK_EQ_INT(ro_manifest_decode(buf, n, &d, &e), 0);
    CHECK_EQ_STR(d.version, "1.2.3");
    CHECK_EQ_INT(d.counter, 42);
    CHECK_EQ_INT(d.n_models, 2);
    CHECK_EQ_STR(d.models[1], "b");
    /* Every truncation fails; a trailing byte fails. */
    for (size_t i = 0; i < n; i++) {
        CHECK_EQ_INT(ro_manifest_decode(buf, i, &d, &e), WERR_INVALID);
    }
    buf[n] = 0;
    CHECK_EQ_INT(ro_manifest_decode(buf, n + 1, &d, &e), WERR_INVALID);
    /* Unsorted or duplicate models are not canonical. */
    snprintf(m.models[1], sizeof m.models[1], "a");
    CHECK_EQ_INT(ro_manifest_encode(&m, buf, sizeof buf), 0);
    m.n_models = 0;
    CHECK_EQ_INT(ro_manifest_encode(&m, buf, sizeof buf), 0);
    /* Counter 0 is refused. */
    manifest_fill(&m);
    m.counter = 0;
    n = ro_manifest_encode(&m, buf, sizeof buf);
    CHECK_EQ_INT(ro_manifest_decode(buf, n, &d, &e), WERR_INVALID);
}

TEST(buckets)
{
    /* Stable, and spread: about 1% of 20,000 ids land under 100. */
    CHECK_EQ_INT(ro_bucket(7, "dev-1"), ro_bucket(7, "dev-1"));
    unsigned under = 0, differ = 0;
    for (unsigned i = 0; i < 20000; i++) {
        char id[32];
        snprintf(id, sizeof id, "dev-%u", i);
        uint32_t b = ro_bucket(7, id);
        CHECK(b < RO_BUCKETS);
        under += b < 100;
        differ += b != ro_bucket(8, id); /* another rollout reshuffles */
    }
    CHECK(under > 120 && under < 290);
    CHECK(differ > 19000);
}

TEST(table)
{
    int to;
    CHECK(ro_transition_allowed(ST(DRAFT), RO_EV_START, &to) && to == ST(RUNNING));
    CHECK(ro_transition_allowed(ST(RUNNING), RO_EV_PAUSE, &to) && to == ST(PAUSED));
    CHECK(ro_transition_allowed(ST(PAUSED), RO_EV_RESUME, &to) && to == ST(RUNNING));
    CHECK(ro_transition_allowed(ST(PAUSED), RO_EV_ABORT, &to) && to == ST(ABORTED));
    CHECK(!ro_transition_allowed(ST(PAUSED), RO_EV_ADVANCE, &to));
    CHECK(!ro_transition_allowed(ST(COMPLETED), RO_EV_ABORT, &to));
    CHECK(!ro_transition_allowed(ST(ABORTED), RO_EV_START, &to));
    CHECK(!ro_transition_allowed(ST(DRAFT), 0, &to));
    CHECK(!ro_transition_allowed(99, RO_EV_START, &to));
}

TEST(gates)
{
    Warden__V1__RolloutStage s = WARDEN__V1__ROLLOUT_STAGE__INIT;
    Warden__V1__StageCounters c = WARDEN__V1__STAGE_COUNTERS__INIT;
    Warden__V1__RolloutStage *sp = &s;
    Warden__V1__StageCounters *cp = &c;
    Warden__V1__Rollout r = WARDEN__V1__ROLLOUT__INIT;
    r.n_stages = r.n_counters = 1;
    r.stages = &sp;
    r.counters = &cp;
    s.min_reported = 10;
    s.success_ratio_bp = 9000;
    s.failure_ratio_bp = 2000;
    s.bake_ms = 100;
    c.started_time_ms = 1000;
    struct ro_gate g;
    /* 9 reports, all failed: below min_reported, no verdict either way. */
    c.failed = 9;
    ro_gate_eval(&r, 0, 2000, &g);
    CHECK(!g.failure_exceeded && !g.advance_ready);
    /* 10 reports, 2 failed = 20%: not above 20%. */
    c.failed = 2;
    c.succeeded = 8;
    ro_gate_eval(&r, 0, 2000, &g);
    CHECK(!g.failure_exceeded);
    CHECK(!g.success_ok); /* 80% < 90% */
    /* 3 of 10 failed: above. */
    c.failed = 3;
    c.succeeded = 7;
    ro_gate_eval(&r, 0, 2000, &g);
    CHECK(g.failure_exceeded);
    CHECK_EQ_INT(g.failure_bp, 3000);
    /* Timed-out counts as a failure, and has its own threshold. */
    c.failed = 0;
    c.succeeded = 19;
    c.timed_out = 1;
    s.timed_out_ratio_bp = 400;
    ro_gate_eval(&r, 0, 2000, &g);
    CHECK(g.failure_exceeded && strstr(g.why, "TIMED_OUT") != NULL);
    s.timed_out_ratio_bp = 0;
    /* 19/20 = 95% success, baked at exactly bake_ms. */
    ro_gate_eval(&r, 0, 1099, &g);
    CHECK(!g.bake_ok && g.bake_remaining_ms == 1);
    ro_gate_eval(&r, 0, 1100, &g);
    CHECK(g.bake_ok && g.advance_ready);
}

TEST(encodings)
{
    uint8_t a[RO_REPORT_MSG_MAX], b[RO_REPORT_MSG_MAX];
    size_t na = ro_report_message("d", 1, 2, 3, 4, 5, "x", a, sizeof a);
    size_t nb = ro_report_message("d", 1, 2, 3, 4, 6, "x", b, sizeof b);
    CHECK(na > 0 && na == nb && memcmp(a, b, na) != 0);
    char big[RO_DETAIL_MAX + 2];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    CHECK_EQ_INT(ro_report_message("d", 1, 2, 3, 4, 5, big, a, sizeof a), 0);

    struct ro_desired_view v, w;
    struct werr e = {0};
    memset(&v, 0, sizeof v);
    snprintf(v.device_id, sizeof v.device_id, "dev");
    v.rollout_id = 9;
    v.installed_counter = 3;
    uint8_t buf[RO_DESIRED_MAX];
    size_t n = ro_desired_encode(&v, buf, sizeof buf);
    CHECK(n > 0);
    CHECK_EQ_INT(ro_desired_decode(buf, n, &w, &e), 0);
    CHECK_EQ_STR(w.device_id, "dev");
    CHECK_EQ_INT(w.rollout_id, 9);
    CHECK_EQ_INT(w.installed_counter, 3);
    CHECK_EQ_INT(ro_desired_decode(buf, n - 1, &w, &e), WERR_INVALID);
}

int main(void)
{
    RUN(manifest_codec);
    RUN(buckets);
    RUN(table);
    RUN(gates);
    RUN(encodings);
    return unit_done();
}
