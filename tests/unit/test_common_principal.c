/* Tests for common/principal.c: the SAN URI that names a caller. */
#include "common/principal.h"
#include "unit.h"

static int parse(const char *s, struct principal *p, struct werr *e)
{
    memset(p, 0, sizeof *p);
    werr_clear(e);
    return principal_parse_uri(s, strlen(s), p, e);
}

TEST(good_every_role)
{
    static const struct {
        const char *uri;
        unsigned role;
        const char *name;
    } cases[] = {
        {"warden://role/admin/alice", WROLE_ADMIN, "alice"},
        {"warden://role/operator/op-1", WROLE_OPERATOR, "op-1"},
        {"warden://role/gateway/gw_7.site-a", WROLE_GATEWAY, "gw_7.site-a"},
        {"warden://role/auditor/A", WROLE_AUDITOR, "A"},
        {"warden://role/rollout/dev-rollout", WROLE_ROLLOUT, "dev-rollout"},
        {"warden://role/peer/node1", WROLE_PEER, "node1"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct principal p;
        struct werr e;
        CHECK_EQ_INT(parse(cases[i].uri, &p, &e), 0);
        CHECK_EQ_INT(p.role, cases[i].role);
        CHECK_EQ_STR(p.name, cases[i].name);
    }
}

TEST(length_not_nul_terminated)
{
    /* Only len bytes count: the tail after them must be ignored. */
    const char buf[] = "warden://role/admin/bobTRAILING";
    struct principal p;
    struct werr e;
    CHECK_EQ_INT(principal_parse_uri(buf, strlen("warden://role/admin/bob"), &p, &e), 0);
    CHECK_EQ_STR(p.name, "bob");
}

TEST(wrong_scheme)
{
    struct principal p;
    struct werr e;
    CHECK_EQ_INT(parse("https://role/admin/alice", &p, &e), WERR_INVALID);
    CHECK(strstr(e.msg, "warden://role/") != NULL);
    CHECK_EQ_INT(parse("WARDEN://role/admin/alice", &p, &e), WERR_INVALID);
    CHECK_EQ_INT(parse("warden://roles/admin/alice", &p, &e), WERR_INVALID);
    CHECK_EQ_INT(parse("warden://role", &p, &e), WERR_INVALID);
    CHECK_EQ_INT(parse("warden://role/", &p, &e), WERR_INVALID);
}

TEST(unknown_role)
{
    struct principal p;
    struct werr e;
    CHECK_EQ_INT(parse("warden://role/root/alice", &p, &e), WERR_INVALID);
    CHECK(strstr(e.msg, "unknown role") != NULL);
    CHECK_EQ_INT(parse("warden://role/Admin/alice", &p, &e), WERR_INVALID);
    CHECK_EQ_INT(parse("warden://role/administrator/alice", &p, &e), WERR_INVALID);
    CHECK_EQ_INT(parse("warden://role//alice", &p, &e), WERR_INVALID);
    CHECK_EQ_INT(parse("warden://role/admin", &p, &e), WERR_INVALID);
}

TEST(bad_name_chars)
{
    static const char *bad[] = {
        "warden://role/admin/al ice", "warden://role/admin/a/b",
        "warden://role/admin/a%2fb",  "warden://role/admin/a?x=1",
        "warden://role/admin/a#frag", "warden://role/admin/\xc3\xa9t\xc3\xa9",
        "warden://role/admin/a\"b",   "warden://role/admin/a\nb",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct principal p;
        struct werr e;
        CHECK_EQ_INT(parse(bad[i], &p, &e), WERR_INVALID);
    }
    /* An embedded NUL inside len is rejected, not treated as the end. */
    const char nul[] = "warden://role/admin/ab\0cd";
    struct principal p;
    struct werr e;
    CHECK_EQ_INT(principal_parse_uri(nul, sizeof nul - 1, &p, &e), WERR_INVALID);
}

TEST(too_long)
{
    char uri[256];
    char name[PRINCIPAL_NAME_MAX + 2];
    struct principal p;
    struct werr e;

    memset(name, 'n', PRINCIPAL_NAME_MAX);
    name[PRINCIPAL_NAME_MAX] = '\0';
    snprintf(uri, sizeof uri, "warden://role/operator/%s", name);
    CHECK_EQ_INT(parse(uri, &p, &e), 0); /* exactly the max is fine */
    CHECK_EQ_INT(strlen(p.name), PRINCIPAL_NAME_MAX);

    memset(name, 'n', PRINCIPAL_NAME_MAX + 1);
    name[PRINCIPAL_NAME_MAX + 1] = '\0';
    snprintf(uri, sizeof uri, "warden://role/operator/%s", name);
    CHECK_EQ_INT(parse(uri, &p, &e), WERR_INVALID);
    CHECK(strstr(e.msg, "longer") != NULL);
}

TEST(empty)
{
    struct principal p;
    struct werr e;
    CHECK_EQ_INT(parse("", &p, &e), WERR_INVALID);
    CHECK_EQ_INT(principal_parse_uri(NULL, 0, &p, &e), WERR_INVALID);
    CHECK_EQ_INT(parse("warden://role/admin/", &p, &e), WERR_INVALID);
    CHECK(strstr(e.msg, "empty name") != NULL);
}

TEST(format_round_trip)
{
    struct principal p = {.role = WROLE_GATEWAY};
    struct principal q;
    struct werr e;
    char buf[128];
    strcpy(p.name, "gw-1");
    CHECK_EQ_INT(principal_format_uri(&p, buf, sizeof buf), 0);
    CHECK_EQ_STR(buf, "warden://role/gateway/gw-1");
    CHECK_EQ_INT(parse(buf, &q, &e), 0);
    CHECK_EQ_INT(q.role, WROLE_GATEWAY);
    CHECK_EQ_STR(q.name, "gw-1");
    CHECK_EQ_INT(principal_format_uri(&p, buf, 10), WERR_LIMIT);
    p.role = WROLE_ADMIN | WROLE_PEER; /* not a single role */
    CHECK(principal_format_uri(&p, buf, sizeof buf) != 0);
}

TEST(role_names)
{
    unsigned r = 0;
    CHECK_EQ_INT(principal_role_parse("auditor", &r), 0);
    CHECK_EQ_INT(r, WROLE_AUDITOR);
    CHECK_EQ_STR(principal_role_name(WROLE_ROLLOUT), "rollout");
    CHECK_EQ_STR(principal_role_name(0), "unknown");
    CHECK_EQ_INT(principal_role_parse("nobody", &r), WERR_INVALID);
    CHECK_EQ_INT(principal_role_parse(NULL, &r), WERR_INVALID);
}

int main(void)
{
    RUN(good_every_role);
    RUN(length_not_nul_terminated);
    RUN(wrong_scheme);
    RUN(unknown_role);
    RUN(bad_name_chars);
    RUN(too_long);
    RUN(empty);
    RUN(format_round_trip);
    RUN(role_names);
    return unit_done();
}
