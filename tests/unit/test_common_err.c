/* Tests for common/err.c and common/log.c's JSON escaping. */
#include "common/err.h"
#include "common/log.h"
#include "unit.h"

TEST(set_and_wrap)
{
    struct werr e;
    werr_clear(&e);
    CHECK_EQ_INT(werr_set(&e, WERR_NOTFOUND, "device %s", "d1"), WERR_NOTFOUND);
    CHECK_EQ_STR(e.msg, "device d1");
    CHECK_EQ_INT(werr_wrap(&e, "get"), WERR_NOTFOUND);
    CHECK_EQ_STR(e.msg, "get: device d1");
}

TEST(wrap_truncates_long_chains)
{
    struct werr e;
    char big[400];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    werr_set(&e, WERR_IO, "%s", big);
    CHECK_EQ_INT(strlen(e.msg), WERR_MSG_MAX - 1);
    werr_wrap(&e, "ctx");
    CHECK_EQ_INT(strlen(e.msg), WERR_MSG_MAX - 1);
    CHECK(strncmp(e.msg, "ctx: xxx", 8) == 0);
}

TEST(null_err_is_allowed)
{
    CHECK_EQ_INT(werr_set(NULL, WERR_IO, "x"), WERR_IO);
}

TEST(grpc_mapping)
{
    CHECK_EQ_INT(werr_grpc_status(0), 0);
    CHECK_EQ_INT(werr_grpc_status(WERR_NOTFOUND), 5);
    CHECK_EQ_INT(werr_grpc_status(WERR_PERM), 7);
    CHECK_EQ_INT(werr_grpc_status(WERR_LIMIT), 8);
    CHECK_EQ_INT(werr_grpc_status(WERR_PRECOND), 9);
    CHECK_EQ_INT(werr_grpc_status(-9999), 2);
    CHECK_EQ_STR(werr_str(WERR_EXISTS), "already exists");
    CHECK_EQ_STR(werr_str(-9999), "unknown error");
}

TEST(json_escape)
{
    char out[64];
    CHECK_EQ_INT(wlog_json_escape("a\"b\\c\n\x01", out, sizeof out), 15);
    CHECK_EQ_STR(out, "a\\\"b\\\\c\\n\\u0001");
    /* Truncation never splits an escape. */
    CHECK_EQ_INT(wlog_json_escape("ab\"", out, 4), 2);
    CHECK_EQ_STR(out, "ab");
}

TEST(level_parse)
{
    enum wlog_level l;
    CHECK_EQ_INT(wlog_level_parse("warn", &l), 0);
    CHECK_EQ_INT(l, WLOG_WARN);
    CHECK_EQ_INT(wlog_level_parse("loud", &l), -1);
}

int main(void)
{
    RUN(set_and_wrap);
    RUN(wrap_truncates_long_chains);
    RUN(null_err_is_allowed);
    RUN(grpc_mapping);
    RUN(json_escape);
    RUN(level_parse);
    return unit_done();
}
