/* svc_health.c - grpc.health.v1.Health (grpc/doc/health-checking.md).
 *
 * Check: service "" (the whole server) or a service we serve answers the
 * current status; any other name is NOT_FOUND, as the spec requires.
 * Watch: server streaming. The current status is sent at once, then every
 * change. For an unknown name the spec wants SERVICE_UNKNOWN (not an error)
 * and the stream kept open, since the service could appear later.
 *
 * Status follows Raft (server/node.c polls it): SERVING while the node is
 * running and knows a leader, so it can answer writes (the leader) or point
 * clients at one (a follower); NOT_SERVING during an election, on a node
 * cut off from the majority, on a --join node not yet added, and while
 * shutting down. */
#include <string.h>

#include "grpc/health/v1/health.pb-c.h"

#include "../common/log.h"
#include "../common/principal.h"
#include "svc.h"

/* Names Check and Watch know. "" means the server as a whole. */
static const char *const known_services[] = {
    "",
    "warden.v1.Inventory",
    "warden.v1.Cluster",
    "warden.v1.Telemetry",
    "warden.v1.Control",
    "warden.v1.Audit",
};

static int service_known(const char *name)
{
    if (name == NULL) {
        name = "";
    }
    for (size_t i = 0; i < sizeof known_services / sizeof known_services[0]; i++) {
        if (strcmp(known_services[i], name) == 0) {
            return 1;
        }
    }
    return 0;
}

static Grpc__Health__V1__HealthCheckResponse__ServingStatus
wire_status(enum svc_health_status st)
{
    return st == SVC_HEALTH_SERVING
               ? GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
               : GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING;
}

static void check_cb(struct grpc_call *call, const ProtobufCMessage *msg, void *data)
{
    struct svc_ctx *ctx = data;
    const Grpc__Health__V1__HealthCheckRequest *req =
        (const Grpc__Health__V1__HealthCheckRequest *)msg;
    if (!service_known(req->service)) {
        grpc_call_fail(call, GRPC_STATUS_NOT_FOUND, "unknown service \"%s\"",
                       req->service);
        return;
    }
    Grpc__Health__V1__HealthCheckResponse resp =
        GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
    resp.status = wire_status(ctx->health);
    grpc_call_reply(call, &resp.base);
}

static void watch_free(struct svc_ctx *ctx, struct svc_health_watch *w)
{
    w->call = NULL;
    w->known = 0;
    ctx->n_watch--;
}

/* The client went away (RST_STREAM, connection closed, deadline): the call
 * pointer dies when we return, so drop the slot. */
static void watch_cancel_cb(struct grpc_call *call, void *arg)
{
    (void)call;
    struct svc_health_watch *w = arg;
    struct svc_ctx *ctx = grpc_call_userdata(call);
    watch_free(ctx, w);
}

/* Send one status on a watch. A watcher that has let GRPC_STREAM_OUT_MAX
 * bytes of updates pile up is not reading; end its stream rather than
 * buffer more. Returns 0, or nonzero when the watch was ended. */
static int watch_send(struct svc_ctx *ctx, struct svc_health_watch *w)
{
    Grpc__Health__V1__HealthCheckResponse resp =
        GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
    resp.status = w->known
                      ? wire_status(ctx->health)
                      : GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN;
    int rc = grpc_call_send(w->call, &resp.base);
    if (rc == 0) {
        return 0;
    }
    struct grpc_call *call = w->call;
    watch_free(ctx, w);
    grpc_call_finish(call, GRPC_STATUS_RESOURCE_EXHAUSTED,
                     "health watcher is not reading its updates");
    return rc;
}

static void watch_cb(struct grpc_call *call, const ProtobufCMessage *msg, void *data)
{
    struct svc_ctx *ctx = data;
    const Grpc__Health__V1__HealthCheckRequest *req =
        (const Grpc__Health__V1__HealthCheckRequest *)msg;
    struct svc_health_watch *w = NULL;
    for (size_t i = 0; i < SVC_HEALTH_WATCH_MAX; i++) {
        if (ctx->watch[i].call == NULL) {
            w = &ctx->watch[i];
            break;
        }
    }
    if (w == NULL) {
        grpc_call_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED,
                       "too many health watchers (max %d)", SVC_HEALTH_WATCH_MAX);
        return;
    }
    w->call = call;
    w->known = service_known(req->service);
    ctx->n_watch++;
    grpc_call_set_userdata(call, ctx);
    grpc_call_on_cancel(call, watch_cancel_cb, w);
    watch_send(ctx, w);
}

int svc_health_register(struct grpc_router *r, struct svc_ctx *ctx, struct werr *e)
{
    struct grpc_method m;
    memset(&m, 0, sizeof m);
    strcpy(m.path, "/grpc.health.v1.Health/Check");
    /* Every client role: probes run with whatever identity they have. */
    m.roles = WROLE_ALL_CLIENTS;
    m.req_desc = &grpc__health__v1__health_check_request__descriptor;
    m.server_streaming = 0;
    m.handler = check_cb;
    m.data = ctx;
    int rc = grpc_router_add(r, &m, e);
    if (rc != 0) {
        return werr_wrap(e, "health");
    }
    strcpy(m.path, "/grpc.health.v1.Health/Watch");
    m.server_streaming = 1;
    m.handler = watch_cb;
    rc = grpc_router_add(r, &m, e);
    if (rc != 0) {
        return werr_wrap(e, "health");
    }
    return 0;
}

void svc_health_set(struct svc_ctx *ctx, enum svc_health_status st)
{
    if (ctx->health == st) {
        return;
    }
    ctx->health = st;
    wlog(WLOG_INFO, "health status changed", "status",
         st == SVC_HEALTH_SERVING ? "SERVING" : "NOT_SERVING", NULL);
    for (size_t i = 0; i < SVC_HEALTH_WATCH_MAX && ctx->n_watch > 0; i++) {
        struct svc_health_watch *w = &ctx->watch[i];
        if (w->call != NULL && w->known) {
            watch_send(ctx, w);
        }
    }
}

void svc_health_shutdown(struct svc_ctx *ctx)
{
    svc_health_set(ctx, SVC_HEALTH_NOT_SERVING);
    for (size_t i = 0; i < SVC_HEALTH_WATCH_MAX && ctx->n_watch > 0; i++) {
        struct svc_health_watch *w = &ctx->watch[i];
        if (w->call != NULL) {
            struct grpc_call *call = w->call;
            watch_free(ctx, w);
            grpc_call_finish(call, GRPC_STATUS_UNAVAILABLE, "server shutting down");
        }
    }
}
