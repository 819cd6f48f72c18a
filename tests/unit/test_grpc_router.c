/* test_grpc_router.c - method table and status names. */
#include "grpc/grpc.h"
#include "grpc/health/v1/health.pb-c.h"

#include "unit.h"

static void h(struct grpc_call *c, const ProtobufCMessage *req, void *data)
{
    (void)c;
    (void)req;
    (void)data;
}

static struct grpc_method meth(const char *path)
{
    struct grpc_method m;
    memset(&m, 0, sizeof m);
    snprintf(m.path, sizeof m.path, "%s", path);
    m.roles = WROLE_ADMIN;
    m.req_desc = &grpc__health__v1__health_check_request__descriptor;
    m.handler = h;
    return m;
}

static struct grpc_router r; /* large: keep off the stack */

TEST(add_find)
{
    struct werr e = {0};
    grpc_router_init(&r);
    struct grpc_method a = meth("/a.S/M"), b = meth("/a.S/Mx");
    CHECK_EQ_INT(grpc_router_add(&r, &a, &e), 0);
    CHECK_EQ_INT(grpc_router_add(&r, &b, &e), 0);
    const struct grpc_method *f = grpc_router_find(&r, "/a.S/M", 6);
    CHECK(f != NULL);
    CHECK_EQ_STR(f->path, "/a.S/M");
    f = grpc_router_find(&r, "/a.S/Mxyz", 7); /* length-bounded lookup */
    CHECK(f != NULL);
    CHECK_EQ_STR(f->path, "/a.S/Mx");
    CHECK(grpc_router_find(&r, "/a.S/", 5) == NULL);
    CHECK(grpc_router_find(&r, "/a.S/Mxx", 8) == NULL);
    CHECK(grpc_router_find(&r, "", 0) == NULL);
}

TEST(duplicate_full_invalid)
{
    struct werr e = {0};
    grpc_router_init(&r);
    struct grpc_method a = meth("/a.S/M");
    CHECK_EQ_INT(grpc_router_add(&r, &a, &e), 0);
    CHECK_EQ_INT(grpc_router_add(&r, &a, &e), WERR_EXISTS);
    CHECK(strstr(e.msg, "/a.S/M") != NULL);
    struct grpc_method bad = meth("noslash");
    CHECK_EQ_INT(grpc_router_add(&r, &bad, &e), WERR_INVALID);
    bad = meth("/x.S/NoHandler");
    bad.handler = NULL;
    CHECK_EQ_INT(grpc_router_add(&r, &bad, &e), WERR_INVALID);
    for (int i = 1; i < GRPC_ROUTER_MAX_METHODS; i++) {
        char p[32];
        snprintf(p, sizeof p, "/a.S/M%d", i);
        struct grpc_method m = meth(p);
        CHECK_EQ_INT(grpc_router_add(&r, &m, &e), 0);
    }
    struct grpc_method over = meth("/a.S/Over");
    CHECK_EQ_INT(grpc_router_add(&r, &over, &e), WERR_LIMIT);
    CHECK(grpc_router_find(&r, "/a.S/M127", 9) != NULL);
}

TEST(status_names)
{
    CHECK_EQ_STR(grpc_status_name(GRPC_STATUS_OK), "OK");
    CHECK_EQ_STR(grpc_status_name(GRPC_STATUS_CANCELLED), "CANCELLED");
    CHECK_EQ_STR(grpc_status_name(GRPC_STATUS_DEADLINE_EXCEEDED),
                 "DEADLINE_EXCEEDED");
    CHECK_EQ_STR(grpc_status_name(GRPC_STATUS_RESOURCE_EXHAUSTED),
                 "RESOURCE_EXHAUSTED");
    CHECK_EQ_STR(grpc_status_name(GRPC_STATUS_UNIMPLEMENTED), "UNIMPLEMENTED");
    CHECK_EQ_STR(grpc_status_name(GRPC_STATUS_UNAUTHENTICATED),
                 "UNAUTHENTICATED");
    CHECK_EQ_STR(grpc_status_name(17), "UNKNOWN");
    CHECK_EQ_STR(grpc_status_name(-1), "UNKNOWN");
    for (int s = 0; s <= 16; s++) {
        CHECK(grpc_status_name(s) != NULL);
    }
}

int main(void)
{
    RUN(add_find);
    RUN(duplicate_full_invalid);
    RUN(status_names);
    return unit_done();
}
