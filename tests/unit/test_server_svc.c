/* Tests for server/svc_*.c pieces that need no Raft node: the aggregated
 * denial table (svc_denials.c) and the method/role table every service
 * registers (svc_register_all). */
#include <stdio.h>
#include <string.h>

#include "server/svc.h"
#include "domain/audit.h"
#include "unit.h"

static struct svc_ctx ctx; /* large: static */

static struct principal who(unsigned role, const char *name)
{
    struct principal p = {.role = role};
    snprintf(p.name, sizeof p.name, "%s", name);
    return p;
}

TEST(denials_aggregate_by_principal_role_method)
{
    memset(&ctx, 0, sizeof ctx);
    struct principal op = who(WROLE_OPERATOR, "op1");
    struct principal gw = who(WROLE_GATEWAY, "op1"); /* same name, other role */
    for (int i = 0; i < 5; i++) {
        svc_denial_note(&ctx, &op, "/warden.v1.Inventory/ReEnrollDevice");
    }
    svc_denial_note(&ctx, &gw, "/warden.v1.Inventory/ReEnrollDevice");
    svc_denial_hook(&ctx, &op, "/warden.v1.Audit/Read");
    CHECK_EQ_INT(ctx.denials.n, 3);
    CHECK_EQ_INT(ctx.denials.rows[0].count, 5);
    CHECK_EQ_STR(ctx.denials.rows[0].who.name, "op1");
    CHECK_EQ_INT(ctx.denials.rows[0].who.role, WROLE_OPERATOR);
    CHECK_EQ_INT(ctx.denials.rows[1].count, 1);
    CHECK_EQ_INT(ctx.denials.rows[1].who.role, WROLE_GATEWAY);
    CHECK_EQ_STR(ctx.denials.rows[2].method, "/warden.v1.Audit/Read");
    CHECK_EQ_INT(ctx.denials.total, 7);
    CHECK_EQ_INT(ctx.denials.dropped, 0);
}

TEST(denials_table_full_counts_dropped)
{
    memset(&ctx, 0, sizeof ctx);
    char name[32];
    for (int i = 0; i < SVC_DENIAL_TABLE_MAX + 10; i++) {
        snprintf(name, sizeof name, "p%d", i);
        struct principal p = who(WROLE_AUDITOR, name);
        svc_denial_note(&ctx, &p, "/warden.v1.Control/IssueCommand");
    }
    CHECK_EQ_INT(ctx.denials.n, SVC_DENIAL_TABLE_MAX);
    CHECK_EQ_INT(ctx.denials.dropped, 10);
    /* A key already in the table still counts as itself when full. */
    struct principal p0 = who(WROLE_AUDITOR, "p0");
    svc_denial_note(&ctx, &p0, "/warden.v1.Control/IssueCommand");
    CHECK_EQ_INT(ctx.denials.rows[0].count, 2);
    CHECK_EQ_INT(ctx.denials.dropped, 10);
    CHECK_EQ_INT(ctx.denials.total, SVC_DENIAL_TABLE_MAX + 11);
    /* Flushing a full table takes at most this many commands. */
    CHECK((SVC_DENIAL_TABLE_MAX + AUDIT_DENIAL_ROWS_MAX - 1) /
              AUDIT_DENIAL_ROWS_MAX <= 4);
}

TEST(denials_long_method_is_cut_not_overflowed)
{
    memset(&ctx, 0, sizeof ctx);
    char path[GRPC_PATH_MAX * 2];
    memset(path, 'x', sizeof path - 1);
    path[sizeof path - 1] = '\0';
    struct principal p = who(WROLE_ADMIN, "a");
    svc_denial_note(&ctx, &p, path);
    CHECK_EQ_INT(strlen(ctx.denials.rows[0].method), GRPC_PATH_MAX - 1);
}

static const struct grpc_method *find(const struct grpc_router *r,
                                      const char *path)
{
    return grpc_router_find(r, path, strlen(path));
}

TEST(registered_methods_and_roles)
{
    static struct grpc_router r;
    memset(&ctx, 0, sizeof ctx);
    ctx.wn = (struct wnode *)&ctx; /* never dereferenced by registration */
    grpc_router_init(&r);
    struct werr e = {0};
    CHECK_EQ_INT(svc_register_all(&r, &ctx, &e), 0);
    static const struct {
        const char *path;
        unsigned roles;
        int streaming;
    } want[] = {
        {"/warden.v1.Inventory/EnrollDevice", WROLE_ADMIN | WROLE_OPERATOR, 0},
        {"/warden.v1.Inventory/EnrollDevices", WROLE_ADMIN | WROLE_OPERATOR, 0},
        {"/warden.v1.Inventory/SetDeviceState", WROLE_ADMIN | WROLE_OPERATOR, 0},
        {"/warden.v1.Inventory/ReEnrollDevice", WROLE_ADMIN, 0},
        {"/warden.v1.Inventory/RebindDevice", WROLE_ADMIN | WROLE_OPERATOR, 0},
        {"/warden.v1.Inventory/IssueRotationNonce",
         WROLE_ADMIN | WROLE_OPERATOR | WROLE_GATEWAY, 0},
        {"/warden.v1.Inventory/RotateDeviceKey",
         WROLE_ADMIN | WROLE_OPERATOR | WROLE_GATEWAY, 0},
        {"/warden.v1.Telemetry/Submit",
         WROLE_ADMIN | WROLE_OPERATOR | WROLE_GATEWAY, 0},
        {"/warden.v1.Control/IssueCommand",
         WROLE_ADMIN | WROLE_OPERATOR | WROLE_ROLLOUT, 0},
        {"/warden.v1.Control/RotateCommandKey", WROLE_ADMIN, 0},
        {"/warden.v1.Control/GetCommandKey", WROLE_ALL_CLIENTS, 0},
        {"/warden.v1.Audit/Read", WROLE_AUDITOR | WROLE_ADMIN, 0},
        {"/warden.v1.Audit/Head", WROLE_AUDITOR | WROLE_ADMIN, 0},
        {"/warden.v1.Audit/Tail", WROLE_AUDITOR | WROLE_ADMIN, 1},
        {"/warden.v1.Cluster/AddMember", WROLE_ADMIN, 0},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const struct grpc_method *m = find(&r, want[i].path);
        if (m == NULL) {
            fprintf(stderr, "missing %s\n", want[i].path);
        }
        CHECK(m != NULL);
        CHECK_EQ_INT(m->roles, want[i].roles);
        CHECK_EQ_INT(m->server_streaming, want[i].streaming);
        CHECK(m->data == &ctx);
        /* Servers never accept peers on the client port's methods. */
        CHECK((m->roles & WROLE_PEER) == 0);
    }
    /* Registering twice is refused (duplicate paths), not silently doubled. */
    CHECK(svc_register_all(&r, &ctx, &e) != 0);
}

int main(void)
{
    RUN(denials_aggregate_by_principal_role_method);
    RUN(denials_table_full_counts_dropped);
    RUN(denials_long_method_is_cut_not_overflowed);
    RUN(registered_methods_and_roles);
    return unit_done();
}
