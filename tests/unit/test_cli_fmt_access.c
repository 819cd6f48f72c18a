/* Tests for cli/fmt_ops.c, access: check (ALLOW/DENY), grant, grants
 * table, lock, policy, request with votes, watch lines, exact JSON. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/fmt_ops.h"
#include "common/principal.h"
#include "unit.h"

static char *out_buf;
static size_t out_len;
static FILE *out_open(void)
{
    free(out_buf);
    out_buf = NULL;
    return open_memstream(&out_buf, &out_len);
}

TEST(check_allow_and_deny)
{
    Warden__V1__CheckAccessResponse c = WARDEN__V1__CHECK_ACCESS_RESPONSE__INIT;
    c.decision = WARDEN__V1__ACCESS_DECISION__ACCESS_DECISION_ALLOW;
    c.grant_id = "grt-21";
    c.remaining_ms = 1799978;
    c.remaining_uses = 1;
    c.revision = 4;
    c.lock_id = "";
    FILE *f = out_open();
    cli_fmt_access_check(f, &c, 0);
    fclose(f);
    CHECK_EQ_STR(out_buf, "ALLOW\n"
                          "grant_id            grt-21\n"
                          "remaining           29m59s978ms (1799978 ms)\n"
                          "remaining_uses      1\n"
                          "revision            4\n");
    warden__v1__check_access_response__init(&c);
    c.decision = WARDEN__V1__ACCESS_DECISION__ACCESS_DECISION_DENY;
    c.reason = WARDEN__V1__ACCESS_DENY_REASON__ACCESS_DENY_REASON_DEVICE_LOCKED;
    c.lock_id = "lck-27";
    c.revision = 9;
    f = out_open();
    cli_fmt_access_check(f, &c, 0);
    fclose(f);
    CHECK_EQ_STR(out_buf, "DENY DEVICE_LOCKED\n"
                          "grant_id            -\n"
                          "lock_id             lck-27\n"
                          "revision            9\n");
    f = out_open();
    cli_fmt_access_check(f, &c, 1);
    fclose(f);
    CHECK_EQ_STR(out_buf, "{\"decision\":\"ACCESS_DECISION_DENY\","
                          "\"reason\":\"ACCESS_DENY_REASON_DEVICE_LOCKED\","
                          "\"grant_id\":\"\",\"remaining_ms\":0,\"remaining_uses\":0,"
                          "\"revision\":9,\"lock_id\":\"lck-27\"}\n");
}

static char *devs[] = {"plc-1", "plc-2"};
static char *protos[] = {"ssh"};
static uint32_t ports[] = {22, 2222};

static void mkgrant(Warden__V1__AccessGrant *g, Warden__V1__AccessScope *s)
{
    warden__v1__access_grant__init(g);
    warden__v1__access_scope__init(s);
    s->protocols = protos;
    s->n_protocols = 1;
    s->ports = ports;
    s->n_ports = 2;
    g->grant_id = "grt-21";
    g->request_id = "req-20";
    g->principal = "dev-operator";
    g->device_ids = devs;
    g->n_device_ids = 2;
    g->purpose = WARDEN__V1__ACCESS_PURPOSE__ACCESS_PURPOSE_INCIDENT;
    g->scope = s;
    g->valid_from_ms = 14924;
    g->expires_ms = 1814924;
    g->max_uses = 2;
    g->uses_left = 1;
    g->state = WARDEN__V1__ACCESS_GRANT_STATE__ACCESS_GRANT_STATE_REVOKED;
    g->created_index = 21;
    g->revoked_by = "dev-admin";
    g->revoke_reason = "done\x1b[2J";
    g->revoked_index = 25;
}

TEST(grant_and_grants)
{
    Warden__V1__AccessGrant g, g2;
    Warden__V1__AccessScope s, s2;
    mkgrant(&g, &s);
    FILE *f = out_open();
    cli_fmt_access_grant(f, &g, 0);
    fclose(f);
    CHECK_EQ_STR(out_buf, "grant_id            grt-21\n"
                          "state               REVOKED\n"
                          "principal           dev-operator\n"
                          "request_id          req-20\n"
                          "devices             plc-1,plc-2\n"
                          "purpose             INCIDENT\n"
                          "scope               ssh ports 22,2222\n"
                          "valid_from_ms       14924\n"
                          "expires_ms          1814924\n"
                          "uses                1 of 2 left\n"
                          "created_index       21\n"
                          /* an escape in server text prints as '?' */
                          "revoked             by dev-admin at index 25: done?[2J\n");
    mkgrant(&g2, &s2);
    g2.grant_id = "grt-100";
    g2.state = WARDEN__V1__ACCESS_GRANT_STATE__ACCESS_GRANT_STATE_ACTIVE;
    g2.n_device_ids = 1;
    g2.uses_left = 2;
    Warden__V1__AccessGrant *list[] = {&g, &g2};
    f = out_open();
    cli_fmt_access_grants(f, list, 2, "tok", 0);
    fclose(f);
    CHECK_EQ_STR(out_buf,
                 "GRANT_ID  STATE    PRINCIPAL     PURPOSE   DEVICES      USES_LEFT  EXPIRES_MS\n"
                 "grt-21    REVOKED  dev-operator  INCIDENT  plc-1,plc-2  1/2        1814924\n"
                 "grt-100   ACTIVE   dev-operator  INCIDENT  plc-1        2/2        1814924\n"
                 "(more: --page-token tok, or --all)\n");
    f = out_open();
    cli_fmt_access_grants(f, list, 0, "", 1);
    fclose(f);
    CHECK_EQ_STR(out_buf, "{\"grants\":[],\"next_page_token\":\"\"}\n");
    f = out_open();
    cli_fmt_access_grants(f, list + 1, 1, "", 1);
    fclose(f);
    CHECK_EQ_STR(out_buf,
                 "{\"grants\":[{\"grant_id\":\"grt-100\",\"request_id\":\"req-20\","
                 "\"principal\":\"dev-operator\",\"device_ids\":[\"plc-1\"],"
                 "\"purpose\":\"ACCESS_PURPOSE_INCIDENT\",\"scope\":{\"protocols\":"
                 "[\"ssh\"],\"ports\":[22,2222],\"command_class\":\"\"},"
                 "\"valid_from_ms\":14924,\"expires_ms\":1814924,\"max_uses\":2,"
                 "\"uses_left\":2,\"state\":\"ACCESS_GRANT_STATE_ACTIVE\","
                 "\"created_index\":21,\"revoked_by\":\"dev-admin\","
                 "\"revoke_reason\":\"done\\u001b[2J\",\"revoked_index\":25}],"
                 "\"next_page_token\":\"\"}\n");
}

TEST(lock)
{
    Warden__V1__Label l = WARDEN__V1__LABEL__INIT;
    Warden__V1__Label *lp[] = {&l};
    l.key = "site";
    l.value = "plant-1";
    Warden__V1__AccessLock k = WARDEN__V1__ACCESS_LOCK__INIT;
    k.lock_id = "lck-27";
    k.kind = WARDEN__V1__LOCK_TARGET_KIND__LOCK_TARGET_KIND_LABEL_SELECTOR;
    k.selector = lp;
    k.n_selector = 1;
    k.reason = "incident 99";
    k.created_by = "dev-operator";
    k.created_index = 27;
    k.created_time_ms = 15087;
    k.lazy = 1;
    k.revoked_now = 3;
    FILE *f = out_open();
    cli_fmt_access_lock(f, &k, 0);
    fclose(f);
    CHECK_EQ_STR(out_buf, "lock_id             lck-27\n"
                          "kind                LABEL_SELECTOR\n"
                          "target              site=plant-1\n"
                          "reason              incident 99\n"
                          "created_by          dev-operator\n"
                          "created_index       27\n"
                          "created_time_ms     15087\n"
                          "expires_ms          none (until unlock)\n"
                          "lazy                yes\n"
                          "unlocked            no\n"
                          "revoked_now         3\n");
    k.kind = WARDEN__V1__LOCK_TARGET_KIND__LOCK_TARGET_KIND_ALL;
    k.expires_ms = 99;
    f = out_open();
    cli_fmt_access_lock(f, &k, 0);
    fclose(f);
    CHECK(strstr(out_buf, "kind                ALL\ntarget              *\n") != NULL);
    CHECK(strstr(out_buf, "expires_ms          99\n") != NULL);
}

TEST(policy_and_request)
{
    Warden__V1__AccessPurposeRule r[2];
    Warden__V1__AccessPurposeRule *rp[2] = {&r[0], &r[1]};
    for (int i = 0; i < 2; i++) {
        warden__v1__access_purpose_rule__init(&r[i]);
    }
    r[0].purpose = WARDEN__V1__ACCESS_PURPOSE__ACCESS_PURPOSE_MAINTENANCE;
    r[0].approvals_required = 2;
    r[0].reviewer_roles = WROLE_ADMIN | WROLE_OPERATOR;
    r[0].max_duration_ms = 14400000;
    r[0].max_uses = 10;
    r[0].pending_ttl_ms = 3600000;
    r[1].purpose = WARDEN__V1__ACCESS_PURPOSE__ACCESS_PURPOSE_INCIDENT;
    r[1].approvals_required = 1;
    r[1].reviewer_roles = WROLE_AUDITOR;
    r[1].max_duration_ms = 5400000;
    r[1].max_uses = 20;
    r[1].pending_ttl_ms = 900000;
    Warden__V1__AccessPolicy p = WARDEN__V1__ACCESS_POLICY__INIT;
    p.rules = rp;
    p.n_rules = 2;
    p.lock_view_max_lag = 32;
    p.revlog_retention = 100000;
    p.updated_index = 7;
    p.updated_by = "dev-admin";
    FILE *f = out_open();
    cli_fmt_access_policy(f, &p, 0);
    fclose(f);
    CHECK_EQ_STR(out_buf,
                 "PURPOSE      APPROVALS  REVIEWERS       MAX_DURATION  MAX_USES  PENDING_TTL\n"
                 "MAINTENANCE  2          admin,operator  4h            10        1h\n"
                 "INCIDENT     1          auditor         1h30m         20        15m\n"
                 "\n"
                 "lock_view_max_lag   32\n"
                 "revlog_retention    100000\n"
                 "updated_index       7\n"
                 "updated_by          dev-admin\n");

    Warden__V1__AccessVote v = WARDEN__V1__ACCESS_VOTE__INIT;
    Warden__V1__AccessVote *vp[] = {&v};
    v.reviewer = "dev-admin";
    v.reviewer_role = WROLE_ADMIN;
    v.approve = 1;
    v.comment = "ok";
    v.index = 21;
    Warden__V1__AccessRequest q = WARDEN__V1__ACCESS_REQUEST__INIT;
    q.request_id = "req-20";
    q.requester = "dev-operator";
    q.requester_role = WROLE_OPERATOR;
    q.device_ids = devs;
    q.n_device_ids = 1;
    q.purpose = WARDEN__V1__ACCESS_PURPOSE__ACCESS_PURPOSE_DIAGNOSTICS;
    q.reason = "ticket 4711";
    q.duration_ms = 1800000;
    q.max_sessions = 2;
    q.state = WARDEN__V1__ACCESS_REQUEST_STATE__ACCESS_REQUEST_STATE_PENDING;
    q.created_index = 20;
    q.created_time_ms = 14885;
    q.expires_time_ms = 3614885;
    q.votes = vp;
    q.n_votes = 1;
    f = out_open();
    cli_fmt_access_request(f, &q, NULL, 0);
    fclose(f);
    CHECK_EQ_STR(out_buf, "request_id          req-20\n"
                          "state               PENDING\n"
                          "requester           dev-operator (operator)\n"
                          "purpose             DIAGNOSTICS\n"
                          "devices             plc-1\n"
                          "selector            -\n"
                          "reason              ticket 4711\n"
                          "scope               -\n"
                          "duration            30m\n"
                          "max_sessions        2\n"
                          "created_index       20\n"
                          "created_time_ms     14885\n"
                          "expires_time_ms     3614885\n"
                          "vote                APPROVE dev-admin (admin) at index 21: ok\n"
                          "grant_id            -\n"
                          "decided_index       0\n");
    f = out_open();
    cli_fmt_access_request(f, &q, NULL, 1);
    fclose(f);
    CHECK(strncmp(out_buf, "{\"request\":{\"request_id\":\"req-20\",", 34) == 0);
    CHECK(strstr(out_buf, "\"scope\":null,") != NULL);
    CHECK(strstr(out_buf, "\"votes\":[{\"reviewer\":\"dev-admin\",\"reviewer_role\":1,"
                          "\"approve\":true,\"comment\":\"ok\",\"index\":21,"
                          "\"time_ms\":0}]") != NULL);
    const char *tail = "},\"grant\":null}\n";
    CHECK(strcmp(out_buf + out_len - strlen(tail), tail) == 0);
}

TEST(watch_lines)
{
    char *gws[] = {"gw-1"};
    char *star[] = {"*"};
    Warden__V1__RevocationEvent ev[2];
    Warden__V1__RevocationEvent *evp[] = {&ev[0], &ev[1]};
    for (int i = 0; i < 2; i++) {
        warden__v1__revocation_event__init(&ev[i]);
    }
    ev[0].revision = 1;
    ev[0].index = 25;
    ev[0].time_ms = 15023;
    ev[0].kind = WARDEN__V1__REVOCATION_KIND__REVOCATION_KIND_GRANT_REVOKED;
    ev[0].gateways = gws;
    ev[0].n_gateways = 1;
    ev[0].device_ids = devs;
    ev[0].n_device_ids = 1;
    ev[0].principal = "dev-operator";
    ev[0].grant_id = "grt-21";
    ev[1].revision = 2;
    ev[1].index = 27;
    ev[1].time_ms = 15087;
    ev[1].kind = WARDEN__V1__REVOCATION_KIND__REVOCATION_KIND_LOCK;
    ev[1].gateways = star;
    ev[1].n_gateways = 1;
    ev[1].lock_id = "lck-27";
    ev[1].lock_kind = WARDEN__V1__LOCK_TARGET_KIND__LOCK_TARGET_KIND_PRINCIPAL;
    ev[1].lock_value = "mallory";
    ev[1].expires_ms = 3615064;
    Warden__V1__WatchRevocationsResponse w = WARDEN__V1__WATCH_REVOCATIONS_RESPONSE__INIT;
    w.events = evp;
    w.n_events = 2;
    w.revision = 2;
    FILE *f = out_open();
    cli_fmt_revocations(f, &w, 0);
    w.n_events = 0;
    w.revision = 5;
    cli_fmt_revocations(f, &w, 0);
    cli_fmt_revocations(f, &w, 1);
    fclose(f);
    CHECK_EQ_STR(out_buf,
                 "revision 1  index 25  time_ms 15023  GRANT_REVOKED  gateways gw-1  "
                 "devices plc-1  principal dev-operator  grant grt-21\n"
                 "revision 2  index 27  time_ms 15087  LOCK  gateways *  lock lck-27 "
                 "PRINCIPAL mallory  expires_ms 3615064\n"
                 "progress  revision 5\n"
                 "{\"events\":[],\"revision\":5}\n");
}

int main(void)
{
    RUN(check_allow_and_deny);
    RUN(grant_and_grants);
    RUN(lock);
    RUN(policy_and_request);
    RUN(watch_lines);
    free(out_buf);
    return unit_done();
}
