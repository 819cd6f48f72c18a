/* test_grpc_timeout.c - grpc-timeout parse/format (PROTOCOL-HTTP2: Timeout). */
#include "grpc/grpc.h"

#include "unit.h"

static int parse(const char *s, uint64_t *ms)
{
    return grpc_timeout_parse(s, strlen(s), ms);
}

TEST(all_units)
{
    uint64_t ms = 0;
    CHECK_EQ_INT(parse("2H", &ms), 0);
    CHECK_EQ_INT(ms, 7200000);
    CHECK_EQ_INT(parse("3M", &ms), 0);
    CHECK_EQ_INT(ms, 180000);
    CHECK_EQ_INT(parse("5S", &ms), 0);
    CHECK_EQ_INT(ms, 5000);
    CHECK_EQ_INT(parse("100m", &ms), 0);
    CHECK_EQ_INT(ms, 100);
    CHECK_EQ_INT(parse("1500u", &ms), 0);
    CHECK_EQ_INT(ms, 2); /* rounds up */
    CHECK_EQ_INT(parse("1000u", &ms), 0);
    CHECK_EQ_INT(ms, 1);
    CHECK_EQ_INT(parse("1n", &ms), 0);
    CHECK_EQ_INT(ms, 1);
    CHECK_EQ_INT(parse("0m", &ms), 0);
    CHECK_EQ_INT(ms, 0);
    CHECK_EQ_INT(parse("99999999H", &ms), 0);
    CHECK_EQ_INT(ms, 99999999ull * 3600000ull);
    CHECK_EQ_INT(parse("00000001S", &ms), 0);
    CHECK_EQ_INT(ms, 1000);
}

TEST(bad_input)
{
    uint64_t ms = 42;
    const char *bad[] = {"", "m", "1", "100", "100x", "-1m", "1.5S", " 1S",
                         "1S ", "123456789m", "1h", "abcS", "1mm"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (parse(bad[i], &ms) != WERR_INVALID) {
            fprintf(stderr, "accepted bad timeout \"%s\"\n", bad[i]);
        }
        CHECK_EQ_INT(parse(bad[i], &ms), WERR_INVALID);
    }
    CHECK_EQ_INT(ms, 42); /* untouched on error */
    CHECK_EQ_INT(grpc_timeout_parse("1m", 1, &ms), WERR_INVALID); /* len */
    CHECK_EQ_INT(grpc_timeout_parse(NULL, 0, &ms), WERR_INVALID);
}

TEST(format)
{
    char buf[16];
    CHECK_EQ_INT(grpc_timeout_format(0, buf, sizeof buf), 0);
    CHECK_EQ_STR(buf, "0m");
    CHECK_EQ_INT(grpc_timeout_format(1500, buf, sizeof buf), 0);
    CHECK_EQ_STR(buf, "1500m");
    CHECK_EQ_INT(grpc_timeout_format(99999999, buf, sizeof buf), 0);
    CHECK_EQ_STR(buf, "99999999m");
    CHECK_EQ_INT(grpc_timeout_format(100000000, buf, sizeof buf), 0);
    CHECK_EQ_STR(buf, "100000S");
    CHECK_EQ_INT(grpc_timeout_format(100000001, buf, sizeof buf), 0);
    CHECK_EQ_STR(buf, "100001S"); /* rounded up, never shorter */
    CHECK_EQ_INT(grpc_timeout_format(UINT64_MAX, buf, sizeof buf), 0);
    CHECK_EQ_STR(buf, "99999999H"); /* saturates */
    CHECK_EQ_INT(grpc_timeout_format(1500, buf, 5), WERR_LIMIT);
    CHECK_EQ_INT(grpc_timeout_format(1500, buf, 6), 0);
}

TEST(round_trip)
{
    const uint64_t vals[] = {1, 999, 1000, 59999, 60000, 3600000, 123456789,
                             99999999ull * 1000};
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
        char buf[16];
        uint64_t back = 0;
        CHECK_EQ_INT(grpc_timeout_format(vals[i], buf, sizeof buf), 0);
        CHECK_EQ_INT(parse(buf, &back), 0);
        CHECK(back >= vals[i]);
    }
}

int main(void)
{
    RUN(all_units);
    RUN(bad_input);
    RUN(format);
    RUN(round_trip);
    return unit_done();
}
