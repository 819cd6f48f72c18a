/* test_server_metrics.c - Prometheus text rendering (metrics.h). */
#include <string.h>

#include "../../server/metrics.h"
#include "unit.h"

TEST(escape_label)
{
    char out[64];
    CHECK_EQ_INT(metrics_escape_label("a\\b\"c\nd", out, sizeof out), 10);
    CHECK_EQ_STR(out, "a\\\\b\\\"c\\nd");
    /* Truncation at a whole escape. */
    metrics_escape_label("ab\"", out, 4);
    CHECK_EQ_STR(out, "ab");
}

TEST(histogram_and_counters)
{
    static struct metrics m;
    metrics_init(&m);
    const char *p = "/warden.v1.Inventory/GetDevice";
    metrics_observe(&m, p, 0, 0);
    metrics_observe(&m, p, 0, 3);
    metrics_observe(&m, p, 0, 40000); /* beyond the last finite bucket */
    metrics_observe(&m, p, 5, 7);
    metrics_observe(&m, "weird\"path\n", -1, 1);
    static struct metrics_snapshot s;
    memset(&s, 0, sizeof s);
    s.raft_state_name = "leader";
    s.term = 3;
    s.wall_offset_known = 1;
    s.wall_offset_ms = -1500;
    s.admission[0].reason = "rate_limit";
    s.admission[0].value = 4;
    s.n_admission = 1;
    struct metrics_buf b;
    metrics_buf_init(&b, METRICS_BODY_MAX);
    CHECK_EQ_INT(metrics_render(&m, &s, &b), 0);
    metrics_buf_printf(&b, "%c", '\0');
    const char *t = b.p;
    CHECK(strstr(t, "# HELP warden_grpc_requests_total ") != NULL);
    CHECK(strstr(t, "# TYPE warden_grpc_requests_total counter\n") != NULL);
    CHECK(strstr(t, "# TYPE warden_grpc_request_duration_seconds histogram\n") != NULL);
    CHECK(strstr(t, "warden_grpc_requests_total{method=\"/warden.v1.Inventory/GetDevice\","
                    "status=\"OK\"} 3\n") != NULL);
    CHECK(strstr(t, "warden_grpc_requests_total{method=\"/warden.v1.Inventory/GetDevice\","
                    "status=\"NOT_FOUND\"} 1\n") != NULL);
    /* Cumulative buckets. */
    CHECK(strstr(t, "warden_grpc_request_duration_seconds_bucket{method=\"/warden.v1."
                    "Inventory/GetDevice\",status=\"OK\",le=\"0.001\"} 1\n") != NULL);
    CHECK(strstr(t, "warden_grpc_request_duration_seconds_bucket{method=\"/warden.v1."
                    "Inventory/GetDevice\",status=\"OK\",le=\"0.005\"} 2\n") != NULL);
    CHECK(strstr(t, "warden_grpc_request_duration_seconds_bucket{method=\"/warden.v1."
                    "Inventory/GetDevice\",status=\"OK\",le=\"30.000\"} 2\n") != NULL);
    CHECK(strstr(t, "warden_grpc_request_duration_seconds_bucket{method=\"/warden.v1."
                    "Inventory/GetDevice\",status=\"OK\",le=\"+Inf\"} 3\n") != NULL);
    CHECK(strstr(t, "warden_grpc_request_duration_seconds_sum{method=\"/warden.v1."
                    "Inventory/GetDevice\",status=\"OK\"} 40.003\n") != NULL);
    CHECK(strstr(t, "warden_grpc_request_duration_seconds_count{method=\"/warden.v1."
                    "Inventory/GetDevice\",status=\"OK\"} 3\n") != NULL);
    /* Escaped label values. */
    CHECK(strstr(t, "method=\"weird\\\"path\\n\",status=\"HTTP_REFUSED\"") != NULL);
    CHECK(strstr(t, "warden_admission_rejections_total{reason=\"rate_limit\"} 4\n") != NULL);
    CHECK(strstr(t, "warden_raft_term 3\n") != NULL);
    CHECK(strstr(t, "warden_raft_state{state=\"leader\"} 1\n") != NULL);
    CHECK(strstr(t, "warden_wall_clock_offset_seconds -1.500\n") != NULL);
    /* Unknown gauges are omitted, not rendered as 0. */
    CHECK(strstr(t, "warden_lmdb_map_size_bytes") == NULL);
    /* Every TYPE line is preceded by its HELP line; every line ends in \n. */
    for (const char *q = strstr(t, "# TYPE "); q != NULL; q = strstr(q + 1, "# TYPE ")) {
        const char *prev = q - 1;
        while (prev > t && prev[-1] != '\n') {
            prev--;
        }
        CHECK(strncmp(prev, "# HELP ", 7) == 0);
    }
    CHECK(t[strlen(t) - 1] == '\n');
    metrics_buf_free(&b);
}

TEST(bounded_series_and_body)
{
    static struct metrics m;
    metrics_init(&m);
    for (int i = 0; i < METRICS_REQ_ROWS + 5; i++) {
        metrics_observe(&m, "/a/b", i, 1);
    }
    CHECK_EQ_INT(m.n_req, METRICS_REQ_ROWS);
    CHECK_EQ_INT(m.series_dropped, 5);
    static struct metrics_snapshot s;
    memset(&s, 0, sizeof s);
    struct metrics_buf b;
    metrics_buf_init(&b, 1024); /* far too small */
    CHECK_EQ_INT(metrics_render(&m, &s, &b), WERR_LIMIT);
    CHECK(b.overflow);
    CHECK(b.len <= 1024);
    metrics_buf_free(&b);
}

int main(void)
{
    RUN(escape_label);
    RUN(histogram_and_counters);
    RUN(bounded_series_and_body);
    return unit_done();
}
