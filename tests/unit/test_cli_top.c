/* test_cli_top.c - cli/top.c: rates, leader pick, exact frame text,
 * cluster.json endpoints, Prometheus denial counters, metrics URLs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/top.h"
#include "unit.h"

static char *out_buf;
static size_t out_len;

static FILE *cap_open(void)
{
    free(out_buf);
    out_buf = NULL;
    out_len = 0;
    return open_memstream(&out_buf, &out_len);
}

static struct cli_top_row row(const char *ep, uint32_t id, const char *state,
                              uint64_t term, uint32_t leader, uint64_t commit,
                              uint64_t applied)
{
    struct cli_top_row r;
    memset(&r, 0, sizeof r);
    snprintf(r.endpoint, sizeof r.endpoint, "%s", ep);
    snprintf(r.state, sizeof r.state, "%s", state);
    r.ok = 1;
    r.id = id;
    r.term = term;
    r.leader_id = leader;
    r.commit = commit;
    r.applied = applied;
    return r;
}

TEST(rate)
{
    char b[24];
    cli_top_rate(1500, 500, 1, 2000, b, sizeof b);
    CHECK_EQ_STR(b, "500.0");
    cli_top_rate(7, 0, 1, 2000, b, sizeof b);
    CHECK_EQ_STR(b, "3.5");
    cli_top_rate(1, 0, 1, 3000, b, sizeof b);
    CHECK_EQ_STR(b, "0.3"); /* truncated, not rounded */
    cli_top_rate(5, 5, 1, 1000, b, sizeof b);
    CHECK_EQ_STR(b, "0.0");
    cli_top_rate(5, 0, 0, 1000, b, sizeof b);
    CHECK_EQ_STR(b, "-"); /* first frame */
    cli_top_rate(4, 9, 1, 1000, b, sizeof b);
    CHECK_EQ_STR(b, "-"); /* restarted node */
    cli_top_rate(4, 0, 1, 0, b, sizeof b);
    CHECK_EQ_STR(b, "-");
    cli_top_rate(UINT64_MAX, 0, 1, 1000, b, sizeof b);
    CHECK(strcmp(b, "-") != 0); /* saturates, no wrap */
}

TEST(leader_pick)
{
    struct cli_top_row r[3] = {
        row("a:1", 1, "leader", 2, 1, 5, 5),
        row("b:1", 2, "leader", 3, 2, 6, 6), /* newer term wins */
        row("c:1", 3, "follower", 3, 2, 6, 6),
    };
    CHECK_EQ_INT(cli_top_leader(r, 3), 1);
    r[1].ok = 0;
    CHECK_EQ_INT(cli_top_leader(r, 3), 0);
    r[0].ok = 0;
    CHECK_EQ_INT(cli_top_leader(r, 3), -1);
}

TEST(frame)
{
    struct cli_top_row prev[3], cur[3];
    prev[0] = row("127.0.0.21:7443", 1, "leader", 2, 1, 100, 100);
    prev[0].proposals = 500;
    prev[0].flushes = 90;
    prev[0].at_ms = 1000;
    prev[1] = row("127.0.0.22:7443", 2, "follower", 2, 1, 99, 99);
    prev[1].at_ms = 1000;
    prev[2] = row("127.0.0.23:7443", 3, "follower", 2, 1, 99, 99);
    prev[2].at_ms = 1000;

    cur[0] = row("127.0.0.21:7443", 1, "leader", 2, 1, 120, 120);
    cur[0].proposals = 1000;
    cur[0].flushes = 100;
    cur[0].offset_known = 1;
    cur[0].has_denials = 1;
    cur[0].denials = 3;
    cur[0].at_ms = 3000;
    cur[1] = row("127.0.0.22:7443", 2, "follower", 2, 1, 118, 117);
    cur[1].offset_known = 1;
    cur[1].offset_ms = -12;
    cur[1].at_ms = 3000;
    memset(&cur[2], 0, sizeof cur[2]);
    snprintf(cur[2].endpoint, sizeof cur[2].endpoint, "127.0.0.23:7443");
    snprintf(cur[2].error, sizeof cur[2].error, "UNAVAILABLE: connection refused");

    FILE *f = cap_open();
    cli_top_render(f, cur, prev, 3, 2, 1000);
    fclose(f);
    CHECK_EQ_STR(out_buf,
        "warden top: 2/3 nodes answering, leader n1 at 127.0.0.21:7443 (term 2), every 1s, #2\n"
        "ID     ENDPOINT              STATE         TERM LEADER    COMMIT   APPLIED    LAG   OFFSET   PROP/s  FLUSH/s  DENIALS\n"
        "n1     127.0.0.21:7443       leader           2 n1           120       120      0     +0ms    250.0      5.0        3\n"
        "n2     127.0.0.22:7443       follower         2 n1           118       117      3    -12ms      0.0      0.0        -\n"
        "?      127.0.0.23:7443       UNAVAILABLE: connection refused\n");

    /* First frame: no rates; no leader: no lag, leader "-". */
    cur[0].state[0] = '\0';
    snprintf(cur[0].state, sizeof cur[0].state, "candidate");
    cur[0].leader_id = 0;
    cur[0].term = 3;
    f = cap_open();
    cli_top_render(f, cur, NULL, 2, 1, 250);
    fclose(f);
    CHECK_EQ_STR(out_buf,
        "warden top: 2/2 nodes answering, no leader, every 250ms, #1\n"
        "ID     ENDPOINT              STATE         TERM LEADER    COMMIT   APPLIED    LAG   OFFSET   PROP/s  FLUSH/s  DENIALS\n"
        "n1     127.0.0.21:7443       candidate        3 -            120       120      -     +0ms        -        -        3\n"
        "n2     127.0.0.22:7443       follower         2 n1           118       117      -    -12ms        -        -        -\n");
}

TEST(cluster_json)
{
    char eps[CLI_ENDPOINTS_MAX][CLI_ENDPOINT_LEN_MAX + 1];
    size_t n = 0;
    struct werr e;
    const char *j =
        "{\"certs\": \"/x/certs\", \"nodes\": [{\"id\": 1, \"client\": \"127.0.0.11:7443\", "
        "\"peer\": \"127.0.0.11:7444\", \"pid\": 10, \"data_dir\": \"/x/n1\"}, "
        "{\"id\": 2, \"client\": \"127.0.0.12:7443\", \"peer\": \"127.0.0.12:7444\", "
        "\"pid\": 11, \"data_dir\": \"/x/{n2}\"}]}\n";
    CHECK_EQ_INT(cli_top_cluster_json(j, strlen(j), eps, CLI_ENDPOINTS_MAX, &n, &e), 0);
    CHECK_EQ_INT(n, 2);
    CHECK_EQ_STR(eps[0], "127.0.0.11:7443");
    CHECK_EQ_STR(eps[1], "127.0.0.12:7443");
    CHECK_EQ_INT(cli_top_cluster_json(j, strlen(j), eps, 1, &n, &e), WERR_LIMIT);
    const char *bad[] = {
        "{\"nodes\": []}",
        "{\"nodes\": {}}",
        "{\"certs\": \"x\"}",
        "{\"nodes\": [{\"id\": 1}]}",
        "{\"nodes\": [{\"client\": \"nohostport\"}]}",
        "{\"nodes\": [1]}",
        "not json",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_EQ_INT(cli_top_cluster_json(bad[i], strlen(bad[i]), eps, CLI_ENDPOINTS_MAX,
                                          &n, &e), WERR_INVALID);
    }
}

TEST(metrics)
{
    const char *page =
        "# HELP warden_authz_denials_total Authorization denials.\n"
        "# TYPE warden_authz_denials_total counter\n"
        "warden_authz_denials_total{reason=\"role\",method=\"/a{b}\"} 4\n"
        "warden_authz_denials_total{reason=\"binding\"} 2.0\n"
        "warden_requests_total{method=\"x\"} 1000\n"
        "warden_denials_created 17\n"
        "other_denials_total 99\n"
        "warden_rate_limit_denials_total 1\n";
    uint64_t sum = 0;
    CHECK_EQ_INT(cli_top_metrics_denials(page, strlen(page), &sum), 1);
    CHECK_EQ_INT(sum, 7);
    const char *none = "warden_requests_total 5\n";
    sum = 42;
    CHECK_EQ_INT(cli_top_metrics_denials(none, strlen(none), &sum), 0);
    CHECK_EQ_INT(sum, 42);
    CHECK_EQ_INT(cli_top_metrics_denials("", 0, &sum), 0);
}

TEST(urls)
{
    char h[CLI_TOP_HOST_MAX + 1], p[8], path[CLI_TOP_PATH_MAX + 1];
    CHECK_EQ_INT(cli_top_url_parse("http://127.0.0.1:9090", h, p, path), 0);
    CHECK_EQ_STR(h, "127.0.0.1");
    CHECK_EQ_STR(p, "9090");
    CHECK_EQ_STR(path, "/metrics");
    CHECK_EQ_INT(cli_top_url_parse("http://[::1]:9090/m", h, p, path), 0);
    CHECK_EQ_STR(h, "[::1]");
    CHECK_EQ_STR(path, "/m");
    const char *bad[] = {"https://a:1", "http://a", "http://a:0", "http://a:65536",
                         "http://:80", "http://a:80/x y", "http://a:8x"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_EQ_INT(cli_top_url_parse(bad[i], h, p, path), WERR_INVALID);
    }
    char list[CLI_ENDPOINTS_MAX][CLI_TOP_PATH_MAX + 1];
    size_t n = 0;
    CHECK_EQ_INT(cli_top_url_list("http://a:1,http://b:2/x", list, CLI_ENDPOINTS_MAX, &n), 0);
    CHECK_EQ_INT(n, 2);
    CHECK_EQ_STR(list[1], "http://b:2/x");
    CHECK_EQ_INT(cli_top_url_list("http://a:1,", list, CLI_ENDPOINTS_MAX, &n), WERR_INVALID);
    CHECK_EQ_INT(cli_top_url_list("http://a:1,http://b:2", list, 1, &n), WERR_LIMIT);
}

int main(void)
{
    RUN(rate);
    RUN(leader_pick);
    RUN(frame);
    RUN(cluster_json);
    RUN(metrics);
    RUN(urls);
    free(out_buf);
    return unit_done();
}
