/* test_server_admission.c - token bucket and admission (admission.h). */
#include <string.h>

#include "../../grpc/grpc.h"
#include "../../server/admission.h"
#include "unit.h"

TEST(bucket_burst_then_refill)
{
    struct tbucket b;
    tbucket_init(&b, 3, 1000);
    CHECK_EQ_INT(tbucket_take(&b, 2, 3, 1000), 1);
    CHECK_EQ_INT(tbucket_take(&b, 2, 3, 1000), 1);
    CHECK_EQ_INT(tbucket_take(&b, 2, 3, 1000), 1);
    CHECK_EQ_INT(tbucket_take(&b, 2, 3, 1000), 0);
    CHECK_EQ_INT(tbucket_wait_ms(&b, 2), 500);
    CHECK_EQ_INT(tbucket_take(&b, 2, 3, 1499), 0); /* 0.998 tokens */
    CHECK_EQ_INT(tbucket_take(&b, 2, 3, 1500), 1);
    /* A long idle refills to the burst, never beyond. */
    CHECK_EQ_INT(tbucket_take(&b, 2, 3, 1000000), 1);
    CHECK_EQ_INT(b.tokens_milli, 2 * ADMISSION_MILLI);
    /* A clock going backwards adds nothing. */
    CHECK_EQ_INT(tbucket_take(&b, 2, 3, 5), 1);
    CHECK_EQ_INT(tbucket_take(&b, 2, 3, 5), 1);
    CHECK_EQ_INT(tbucket_take(&b, 2, 3, 5), 0);
    /* Extreme rates do not overflow. */
    tbucket_init(&b, ADMISSION_BURST_MAX, 0);
    CHECK_EQ_INT(tbucket_take(&b, ADMISSION_RATE_MAX, ADMISSION_BURST_MAX, UINT64_MAX / 2), 1);
}

static struct principal who(unsigned role, const char *name)
{
    struct principal p;
    memset(&p, 0, sizeof p);
    p.role = role;
    snprintf(p.name, sizeof p.name, "%s", name);
    return p;
}

TEST(per_principal_and_health_exempt)
{
    static struct admission a;
    char msg[GRPC_MESSAGE_MAX + 1];
    admission_init(&a, 1, 2, 100);
    struct principal g1 = who(WROLE_GATEWAY, "g1"), g2 = who(WROLE_GATEWAY, "g2");
    const char *m = "/warden.v1.Inventory/GetDevice";
    CHECK_EQ_INT(admission_check(&a, &g1, m, 0, msg, sizeof msg), 0);
    CHECK_EQ_INT(admission_check(&a, &g1, m, 0, msg, sizeof msg), 0);
    CHECK_EQ_INT(admission_check(&a, &g1, m, 0, msg, sizeof msg),
                 GRPC_STATUS_RESOURCE_EXHAUSTED);
    CHECK(strstr(msg, "rate limit exceeded for gateway/g1") != NULL);
    CHECK_EQ_INT(a.rejected[ADMISSION_RATE_LIMIT], 1);
    /* Same name, other role: another principal. */
    struct principal o1 = who(WROLE_OPERATOR, "g1");
    CHECK_EQ_INT(admission_check(&a, &o1, m, 0, msg, sizeof msg), 0);
    CHECK_EQ_INT(admission_check(&a, &g2, m, 0, msg, sizeof msg), 0);
    CHECK_EQ_INT(admission_check(&a, &g1, "/grpc.health.v1.Health/Check", 0, msg,
                                 sizeof msg),
                 0);
    CHECK_EQ_INT(admission_check(&a, &g1, m, 1000, msg, sizeof msg), 0);
    CHECK_EQ_INT(a.inflight, 6);
    for (int i = 0; i < 6; i++) {
        admission_release(&a);
    }
    CHECK_EQ_INT(a.inflight, 0);
    admission_release(&a); /* never below zero */
    CHECK_EQ_INT(a.inflight, 0);
}

TEST(inflight_cap)
{
    static struct admission a;
    char msg[GRPC_MESSAGE_MAX + 1];
    admission_init(&a, 0, 1, 2); /* rate 0: no rate limit */
    struct principal p = who(WROLE_ADMIN, "a");
    CHECK_EQ_INT(admission_check(&a, &p, "/x/y", 0, msg, sizeof msg), 0);
    CHECK_EQ_INT(admission_check(&a, &p, "/x/y", 0, msg, sizeof msg), 0);
    CHECK_EQ_INT(admission_check(&a, &p, "/x/y", 0, msg, sizeof msg),
                 GRPC_STATUS_RESOURCE_EXHAUSTED);
    CHECK(strstr(msg, "in flight") != NULL);
    CHECK_EQ_INT(a.rejected[ADMISSION_INFLIGHT], 1);
    admission_release(&a);
    CHECK_EQ_INT(admission_check(&a, &p, "/x/y", 0, msg, sizeof msg), 0);
}

TEST(table_full_reuses_oldest)
{
    static struct admission a;
    char msg[GRPC_MESSAGE_MAX + 1];
    admission_init(&a, 1, 1, ADMISSION_PRINCIPALS_MAX * 4);
    for (unsigned i = 0; i < ADMISSION_PRINCIPALS_MAX + 10; i++) {
        char name[32];
        snprintf(name, sizeof name, "gw%u", i);
        struct principal p = who(WROLE_GATEWAY, name);
        CHECK_EQ_INT(admission_check(&a, &p, "/x/y", i, msg, sizeof msg), 0);
    }
    CHECK_EQ_INT(a.n, ADMISSION_PRINCIPALS_MAX);
}

int main(void)
{
    RUN(bucket_burst_then_refill);
    RUN(per_principal_and_health_exempt);
    RUN(inflight_cap);
    RUN(table_full_reuses_oldest);
    return unit_done();
}
