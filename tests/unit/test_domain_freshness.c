/* test_domain_freshness.c - the RFC 6479 anti-replay window, pure: in
 * order, reordered within the window, exact replay, too old, the boundary
 * (highest - W + 1 accepted, highest - W too old), big jumps that clear
 * the ring, and a brute-force comparison with a naive set model. */
#include "domain/freshness.h"

#include <stdlib.h>
#include <string.h>

#include "unit.h"

#define ACC WARDEN__V1__TELEMETRY_RESULT__TELEMETRY_RESULT_ACCEPTED
#define REP WARDEN__V1__TELEMETRY_RESULT__TELEMETRY_RESULT_REPLAY
#define OLD WARDEN__V1__TELEMETRY_RESULT__TELEMETRY_RESULT_TOO_OLD

TEST(in_order_and_replay)
{
    struct fresh_window w;
    memset(&w, 0, sizeof w);
    for (uint64_t c = 1; c <= 3000; c++) {
        CHECK_EQ_INT(fresh_window_check(&w, c), ACC);
    }
    CHECK_EQ_INT(w.highest, 3000);
    CHECK_EQ_INT(fresh_window_check(&w, 3000), REP);
    CHECK_EQ_INT(fresh_window_check(&w, 2500), REP);
}

TEST(reordered_within_window)
{
    struct fresh_window w;
    memset(&w, 0, sizeof w);
    CHECK_EQ_INT(fresh_window_check(&w, 100), ACC);
    CHECK_EQ_INT(fresh_window_check(&w, 98), ACC);
    CHECK_EQ_INT(fresh_window_check(&w, 99), ACC);
    CHECK_EQ_INT(fresh_window_check(&w, 98), REP);
    CHECK_EQ_INT(fresh_window_check(&w, 99), REP);
    CHECK_EQ_INT(fresh_window_check(&w, 1), ACC);
    CHECK_EQ_INT(fresh_window_check(&w, 1), REP);
    CHECK_EQ_INT(w.highest, 100);
}

TEST(boundary)
{
    struct fresh_window w;
    memset(&w, 0, sizeof w);
    uint64_t h = 10000;
    CHECK_EQ_INT(fresh_window_check(&w, h), ACC);
    CHECK_EQ_INT(fresh_window_check(&w, h - FRESH_WINDOW), OLD);
    CHECK_EQ_INT(fresh_window_check(&w, h - FRESH_WINDOW + 1), ACC);
    CHECK_EQ_INT(fresh_window_check(&w, h - FRESH_WINDOW + 1), REP);
    CHECK_EQ_INT(fresh_window_check(&w, 0), OLD);
    /* The window slides: what was the oldest is now too old. */
    CHECK_EQ_INT(fresh_window_check(&w, h + 1), ACC);
    CHECK_EQ_INT(fresh_window_check(&w, h - FRESH_WINDOW + 1), OLD);
    CHECK_EQ_INT(fresh_window_check(&w, h - FRESH_WINDOW + 2), ACC);
}

TEST(jump_clears_ring)
{
    struct fresh_window w;
    memset(&w, 0, sizeof w);
    for (uint64_t c = 0; c < 1000; c++) {
        CHECK_EQ_INT(fresh_window_check(&w, c), ACC);
    }
    /* A jump of exactly one ring's worth must not leave stale bits that
     * would alias new counters as replays. */
    uint64_t j = 999 + 64u * FRESH_BLOCKS;
    CHECK_EQ_INT(fresh_window_check(&w, j), ACC);
    for (uint64_t c = j - FRESH_WINDOW + 1; c < j; c++) {
        CHECK_EQ_INT(fresh_window_check(&w, c), ACC);
    }
    CHECK_EQ_INT(fresh_window_check(&w, UINT64_MAX), ACC);
    CHECK_EQ_INT(fresh_window_check(&w, UINT64_MAX), REP);
    CHECK_EQ_INT(fresh_window_check(&w, UINT64_MAX - FRESH_WINDOW), OLD);
}

/* Naive model: a set of seen counters and the highest. Deterministic
 * pseudo-random walk (seed printed on failure). */
TEST(matches_naive_model)
{
    enum { N = 20000, SPAN = 6000 };
    static unsigned char seen[SPAN];
    memset(seen, 0, sizeof seen);
    struct fresh_window w;
    memset(&w, 0, sizeof w);
    uint64_t hi = 0;
    int any = 0;
    uint32_t x = 12345u; /* seed */
    for (int i = 0; i < N; i++) {
        x = x * 1103515245u + 12345u;
        uint64_t c = (x >> 8) % SPAN;
        int want;
        if (!any || c > hi) {
            want = ACC;
        } else if (hi - c >= FRESH_WINDOW) {
            want = OLD;
        } else {
            want = seen[c] ? REP : ACC;
        }
        int got = fresh_window_check(&w, c);
        if (got != want) {
            fprintf(stderr, "seed 12345 step %d counter %llu\n", i,
                    (unsigned long long)c);
        }
        CHECK_EQ_INT(got, want);
        if (want == ACC) {
            seen[c] = 1;
            if (!any || c > hi) {
                hi = c;
            }
            any = 1;
        }
    }
}

int main(void)
{
    RUN(in_order_and_replay);
    RUN(reordered_within_window);
    RUN(boundary);
    RUN(jump_clears_ring);
    RUN(matches_naive_model);
    return unit_done();
}
