/* Tests for cli/units.c: durations, ratios, stage shares, reviewer roles,
 * enum names and progress bars. */
#include <stdint.h>
#include <string.h>

#include "cli/units.h"
#include "common/principal.h"
#include "unit.h"

TEST(durations)
{
    uint64_t ms = 0;
    CHECK_EQ_INT(cli_duration_parse("500ms", 0, CLI_DURATION_MAX_MS, &ms), 0);
    CHECK_EQ_INT(ms, 500);
    CHECK_EQ_INT(cli_duration_parse("30s", 0, CLI_DURATION_MAX_MS, &ms), 0);
    CHECK_EQ_INT(ms, 30000);
    CHECK_EQ_INT(cli_duration_parse("30", 0, CLI_DURATION_MAX_MS, &ms), 0);
    CHECK_EQ_INT(ms, 30000); /* bare number: seconds, like --timeout */
    CHECK_EQ_INT(cli_duration_parse("15m", 0, CLI_DURATION_MAX_MS, &ms), 0);
    CHECK_EQ_INT(ms, 900000);
    CHECK_EQ_INT(cli_duration_parse("4h", 0, CLI_DURATION_MAX_MS, &ms), 0);
    CHECK_EQ_INT(ms, 14400000);
    CHECK_EQ_INT(cli_duration_parse("0ms", 0, 10, &ms), 0);
    CHECK_EQ_INT(ms, 0);
    /* syntax */
    CHECK_EQ_INT(cli_duration_parse("", 0, 10, &ms), WERR_INVALID);
    CHECK_EQ_INT(cli_duration_parse("h", 0, 10, &ms), WERR_INVALID);
    CHECK_EQ_INT(cli_duration_parse("1d", 0, CLI_DURATION_MAX_MS, &ms), WERR_INVALID);
    CHECK_EQ_INT(cli_duration_parse("1.5h", 0, CLI_DURATION_MAX_MS, &ms), WERR_INVALID);
    CHECK_EQ_INT(cli_duration_parse("-1s", 0, CLI_DURATION_MAX_MS, &ms), WERR_INVALID);
    CHECK_EQ_INT(cli_duration_parse("1 s", 0, CLI_DURATION_MAX_MS, &ms), WERR_INVALID);
    /* bounds, named by the caller; overflow never wraps into range */
    CHECK_EQ_INT(cli_duration_parse("999ms", 1000, 2000, &ms), WERR_INVALID);
    CHECK_EQ_INT(cli_duration_parse("2001ms", 1000, 2000, &ms), WERR_INVALID);
    CHECK_EQ_INT(cli_duration_parse("2s", 1000, 2000, &ms), 0);
    CHECK_EQ_INT(cli_duration_parse("168h", 0, CLI_ACC_DURATION_MAX_MS, &ms), 0);
    CHECK_EQ_INT(cli_duration_parse("169h", 0, CLI_ACC_DURATION_MAX_MS, &ms),
                 WERR_INVALID);
    CHECK_EQ_INT(cli_duration_parse("721h", 0, UINT64_MAX, &ms), WERR_INVALID);
    CHECK_EQ_INT(cli_duration_parse("9999999999999h", 0, UINT64_MAX, &ms),
                 WERR_INVALID);
    CHECK_EQ_INT(cli_duration_parse("99999999999999", 0, UINT64_MAX, &ms),
                 WERR_INVALID);
}

TEST(duration_format)
{
    char b[CLI_DURATION_FMT_MAX];
    CHECK_EQ_STR(cli_duration_fmt(0, b), "0ms");
    CHECK_EQ_STR(cli_duration_fmt(1500, b), "1s500ms");
    CHECK_EQ_STR(cli_duration_fmt(5400000, b), "1h30m");
    CHECK_EQ_STR(cli_duration_fmt(90061001, b), "25h1m1s1ms");
    CHECK_EQ_STR(cli_duration_fmt(604800000, b), "168h");
    CHECK_EQ_STR(cli_duration_fmt(UINT64_MAX, b), "5124095576030h25m51s615ms");
}

TEST(ratios)
{
    uint32_t bp = 1;
    CHECK_EQ_INT(cli_ratio_parse("95%", &bp), 0);
    CHECK_EQ_INT(bp, 9500);
    CHECK_EQ_INT(cli_ratio_parse("99.5%", &bp), 0);
    CHECK_EQ_INT(bp, 9950);
    CHECK_EQ_INT(cli_ratio_parse("0.01%", &bp), 0);
    CHECK_EQ_INT(bp, 1);
    CHECK_EQ_INT(cli_ratio_parse("0.95", &bp), 0);
    CHECK_EQ_INT(bp, 9500);
    CHECK_EQ_INT(cli_ratio_parse("1", &bp), 0);
    CHECK_EQ_INT(bp, 10000);
    CHECK_EQ_INT(cli_ratio_parse("0", &bp), 0);
    CHECK_EQ_INT(bp, 0);
    CHECK_EQ_INT(cli_ratio_parse("0.0005", &bp), 0);
    CHECK_EQ_INT(bp, 5);
    CHECK_EQ_INT(cli_ratio_parse("2500bp", &bp), 0);
    CHECK_EQ_INT(bp, 2500);
    CHECK_EQ_INT(cli_ratio_parse("100.01%", &bp), WERR_INVALID);
    CHECK_EQ_INT(cli_ratio_parse("1.5", &bp), WERR_INVALID);
    CHECK_EQ_INT(cli_ratio_parse("10001bp", &bp), WERR_INVALID);
    CHECK_EQ_INT(cli_ratio_parse("0.001%", &bp), WERR_INVALID); /* finer than 1 bp */
    CHECK_EQ_INT(cli_ratio_parse("0.00001", &bp), WERR_INVALID);
    CHECK_EQ_INT(cli_ratio_parse("%", &bp), WERR_INVALID);
    CHECK_EQ_INT(cli_ratio_parse("5.%", &bp), WERR_INVALID);
    CHECK_EQ_INT(cli_ratio_parse("", &bp), WERR_INVALID);
    char b[CLI_BP_FMT_MAX];
    CHECK_EQ_STR(cli_bp_fmt(9500, b), "95%");
    CHECK_EQ_STR(cli_bp_fmt(9550, b), "95.5%");
    CHECK_EQ_STR(cli_bp_fmt(1, b), "0.01%");
    CHECK_EQ_STR(cli_bp_fmt(10000, b), "100%");
    CHECK_EQ_STR(cli_bp_fmt(0, b), "0%");
}

TEST(stages)
{
    struct cli_stage s;
    struct werr e;
    CHECK_EQ_INT(cli_stage_parse("1%", &s, &e), 0);
    CHECK_EQ_INT(s.percent_bp, 100);
    CHECK_EQ_INT(s.max_devices, 0);
    CHECK_EQ_STR(s.name, "");
    CHECK_EQ_INT(cli_stage_parse("canary=0.5%", &s, &e), 0);
    CHECK_EQ_INT(s.percent_bp, 50);
    CHECK_EQ_STR(s.name, "canary");
    CHECK_EQ_INT(cli_stage_parse("first-wave=25", &s, &e), 0);
    CHECK_EQ_INT(s.percent_bp, 0);
    CHECK_EQ_INT(s.max_devices, 25);
    CHECK_EQ_INT(cli_stage_parse("100%", &s, &e), 0);
    CHECK_EQ_INT(s.percent_bp, 10000);
    CHECK_EQ_INT(cli_stage_parse("0%", &s, &e), WERR_INVALID);
    CHECK(strstr(e.msg, "0.01%..100%") != NULL);
    CHECK_EQ_INT(cli_stage_parse("101%", &s, &e), WERR_INVALID);
    CHECK_EQ_INT(cli_stage_parse("0", &s, &e), WERR_INVALID);
    CHECK_EQ_INT(cli_stage_parse("=5%", &s, &e), WERR_INVALID);
    CHECK_EQ_INT(cli_stage_parse("a b=5%", &s, &e), WERR_INVALID);
    CHECK_EQ_INT(cli_stage_parse("abcdefghijklmnopqrstuvwxyz0123456=5%", &s, &e),
                 WERR_INVALID);
    CHECK_EQ_INT(cli_stage_parse("5x", &s, &e), WERR_INVALID);
}

TEST(roles_and_enums)
{
    uint32_t m = 0;
    char b[64];
    CHECK_EQ_INT(cli_roles_parse("admin,operator", &m), 0);
    CHECK_EQ_INT(m, WROLE_ADMIN | WROLE_OPERATOR);
    CHECK_EQ_STR(cli_roles_fmt(m, b, sizeof b), "admin,operator");
    CHECK_EQ_INT(cli_roles_parse("Auditor", &m), 0);
    CHECK_EQ_INT(m, WROLE_AUDITOR);
    CHECK_EQ_INT(cli_roles_parse("gateway", &m), WERR_INVALID); /* machines never review */
    CHECK_EQ_INT(cli_roles_parse("admin,admin", &m), WERR_INVALID);
    CHECK_EQ_INT(cli_roles_parse("admin,", &m), WERR_INVALID);
    CHECK_EQ_INT(cli_roles_parse("", &m), WERR_INVALID);
    CHECK_EQ_STR(cli_roles_fmt(0, b, sizeof b), "-");
    CHECK_EQ_INT(cli_purpose_parse("incident"), 3);
    CHECK_EQ_INT(cli_purpose_parse("ACCESS_PURPOSE_MAINTENANCE"), 1);
    CHECK_EQ_INT(cli_purpose_parse("Diagnostics"), 2);
    CHECK_EQ_INT(cli_purpose_parse("unspecified"), WERR_INVALID);
    CHECK_EQ_INT(cli_purpose_parse("fun"), WERR_INVALID);
    CHECK_EQ_INT(cli_grant_state_parse("revoked"), 4);
    CHECK_EQ_INT(cli_phase_parse("rolled-back"), 5);
    CHECK_EQ_INT(cli_phase_parse("SUCCEEDED"), 3);
    CHECK_EQ_INT(cli_phase_parse("timed_out"), WERR_INVALID); /* warden's own */
}

TEST(progress_bars)
{
    char b[CLI_BAR_BUF];
    CHECK_EQ_STR(cli_progress_bar(5, 10, b), "[#####.....] 50%");
    CHECK_EQ_STR(cli_progress_bar(10, 10, b), "[##########] 100%");
    CHECK_EQ_STR(cli_progress_bar(99, 100, b), "[#########.] 99%");
    CHECK_EQ_STR(cli_progress_bar(0, 3, b), "[..........] 0%");
    CHECK_EQ_STR(cli_progress_bar(1, 3, b), "[###.......] 33%");
    CHECK_EQ_STR(cli_progress_bar(0, 0, b), "[..........] -");
    CHECK_EQ_STR(cli_progress_bar(7, 5, b), "[##########] 100%"); /* clamped */
}

int main(void)
{
    RUN(durations);
    RUN(duration_format);
    RUN(ratios);
    RUN(stages);
    RUN(roles_and_enums);
    RUN(progress_bars);
    return unit_done();
}
