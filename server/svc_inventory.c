/* svc_inventory.c - warden.v1.Inventory: glue between the gRPC layer and
 * the domain state machine (domain/inventory.h).
 *
 * Each handler: open a store txn, fill a dom_ctx, call the domain, commit,
 * reply. Writes reply only after store_txn_commit() returned, i.e. after
 * fsync (docs/storage.md): an acknowledged enroll survives a crash.
 *
 * Until consensus lands (issue 3) the log index and the time that the
 * domain takes as input come from here, not from Raft: a local counter
 * persisted in its own database, bumped in the same write txn as the
 * command (so it is exactly-once with it), and the wall clock clamped so
 * it never goes backwards. Both are server concerns; domain/ never sees a
 * clock.
 *
 * Authorization: the grpc layer enforces each method's role set. On top of
 * it, a gateway principal only sees devices bound to it (gateway_id == its
 * principal name), which bounds the blast radius of a compromised gateway
 * (issue 4). For Get it receives PERMISSION_DENIED both for a device bound
 * elsewhere and for an id that does not exist, so it cannot probe which
 * device ids exist; its List is forced to its own gateway filter. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "warden/v1/inventory.pb-c.h"

#include "../common/log.h"
#include "../common/principal.h"
#include "../domain/inventory.h"
#include "../storage/store.h"
#include "svc.h"

/* Server-local stand-in for the Raft applied index and cluster time. */
#define LOCAL_DB "svc.local"
#define LOCAL_KEY "apply"     /* u64 index BE || u64 time_ms BE */
#define LOCAL_VAL_LEN 16

static uint64_t be64_get(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) {
        v = (v << 8) | p[i];
    }
    return v;
}

static void be64_put(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}

static uint64_t wall_ms(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_REALTIME, &ts) != 0) {
        return 0;
    }
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Allocate the next command index and a non-decreasing time inside write
 * txn t. The bump commits or aborts with the command. */
static int local_next(struct svc_ctx *ctx, struct store_txn *t,
                      struct dom_ctx *dc, struct werr *e)
{
    unsigned dbi;
    /* Opened by svc_inventory_register(); store_dbi() here could wait on
     * the writer lock that t itself holds. */
    int rc = store_dbi_find(ctx->store, LOCAL_DB, &dbi);
    if (rc != 0) {
        return werr_set(e, WERR_INTERNAL, "database %s not opened", LOCAL_DB);
    }
    uint64_t index = 0, time_ms = 0;
    struct store_val v;
    rc = store_get(t, dbi, LOCAL_KEY, strlen(LOCAL_KEY), &v, e);
    if (rc == 0) {
        if (v.len != LOCAL_VAL_LEN) {
            return werr_set(e, WERR_CORRUPT, "local apply record is %zu bytes",
                            v.len);
        }
        index = be64_get(v.data);
        time_ms = be64_get((const uint8_t *)v.data + 8);
    } else if (rc != WERR_NOTFOUND) {
        return rc;
    }
    uint64_t now = wall_ms();
    dc->index = index + 1;
    dc->time_ms = now > time_ms ? now : time_ms; /* never backwards */
    uint8_t buf[LOCAL_VAL_LEN];
    be64_put(buf, dc->index);
    be64_put(buf + 8, dc->time_ms);
    return store_put(t, dbi, LOCAL_KEY, strlen(LOCAL_KEY), buf, sizeof buf, 0,
                     e);
}

static int is_gateway(const struct principal *p)
{
    return p->role == WROLE_GATEWAY;
}

static void deny_gateway(struct grpc_call *call, const struct principal *who,
                         const char *device_id)
{
    wlog(WLOG_WARN, "gateway denied device access", "method",
         grpc_call_path(call), "principal", who->name, "device", device_id,
         NULL);
    grpc_call_fail(call, GRPC_STATUS_PERMISSION_DENIED,
                   "device %s is not bound to gateway %s", device_id, who->name);
}

static void fail(struct grpc_call *call, struct werr *e)
{
    if (e->code == WERR_INTERNAL || e->code == WERR_IO ||
        e->code == WERR_CORRUPT) {
        wlog(WLOG_ERROR, "inventory call failed", "method",
             grpc_call_path(call), "error", e->msg, NULL);
    }
    grpc_call_fail_err(call, e);
}

static void enroll_cb(struct grpc_call *call, const ProtobufCMessage *msg,
                      void *data)
{
    struct svc_ctx *ctx = data;
    const Warden__V1__EnrollDeviceRequest *req =
        (const Warden__V1__EnrollDeviceRequest *)msg;
    struct werr e = {0};
    struct store_txn *t;
    Warden__V1__Device *dev = NULL;
    struct dom_ctx dc = {.who = grpc_call_principal(call)};

    if (store_txn_begin(ctx->store, 1, &t, &e) != 0) {
        goto err_fail;
    }
    if (local_next(ctx, t, &dc, &e) != 0 ||
        inv_enroll(ctx->inv, t, &dc, req, &dev, &e) != 0) {
        goto err_abort_txn;
    }
    /* Commit (fsync) before replying: the ack means durable. */
    if (store_txn_commit(t, &e) != 0) {
        goto err_fail;
    }
    char idx[24];
    snprintf(idx, sizeof idx, "%" PRIu64, dc.index);
    wlog(WLOG_INFO, "device enrolled", "device", dev->device_id, "gateway",
         dev->gateway_id, "principal", dc.who->name, "index", idx, NULL);
    Warden__V1__EnrollDeviceResponse resp =
        WARDEN__V1__ENROLL_DEVICE_RESPONSE__INIT;
    resp.device = dev;
    grpc_call_reply(call, &resp.base);
    inv_device_free(dev);
    return;

err_abort_txn:
    store_txn_abort(t);
err_fail:
    inv_device_free(dev);
    fail(call, &e);
}

static void get_cb(struct grpc_call *call, const ProtobufCMessage *msg,
                   void *data)
{
    struct svc_ctx *ctx = data;
    const Warden__V1__GetDeviceRequest *req =
        (const Warden__V1__GetDeviceRequest *)msg;
    const struct principal *who = grpc_call_principal(call);
    struct werr e = {0};
    struct store_txn *t;
    Warden__V1__Device *dev = NULL;

    /* Single node: the local state is the latest committed state, so both
     * consistency levels are served locally (issue 3 adds the barrier). */
    if (store_txn_begin(ctx->store, 0, &t, &e) != 0) {
        fail(call, &e);
        return;
    }
    int rc = inv_get(ctx->inv, t, req->device_id, &dev, &e);
    store_txn_abort(t);
    if (is_gateway(who) && (rc == WERR_NOTFOUND ||
                            (rc == 0 && strcmp(dev->gateway_id, who->name) != 0))) {
        inv_device_free(dev);
        deny_gateway(call, who, req->device_id ? req->device_id : "");
        return;
    }
    if (rc != 0) {
        fail(call, &e);
        return;
    }
    Warden__V1__GetDeviceResponse resp = WARDEN__V1__GET_DEVICE_RESPONSE__INIT;
    resp.device = dev;
    grpc_call_reply(call, &resp.base);
    inv_device_free(dev);
}

static void list_cb(struct grpc_call *call, const ProtobufCMessage *msg,
                    void *data)
{
    struct svc_ctx *ctx = data;
    const struct principal *who = grpc_call_principal(call);
    /* Shallow copy: we may override the gateway filter, the borrowed
     * request stays untouched. */
    Warden__V1__ListDevicesRequest req =
        *(const Warden__V1__ListDevicesRequest *)msg;
    if (is_gateway(who)) {
        if (req.gateway_id != NULL && req.gateway_id[0] != '\0' &&
            strcmp(req.gateway_id, who->name) != 0) {
            wlog(WLOG_WARN, "gateway denied listing another gateway",
                 "principal", who->name, "gateway_filter", req.gateway_id,
                 NULL);
            grpc_call_fail(call, GRPC_STATUS_PERMISSION_DENIED,
                           "gateway %s may only list its own devices",
                           who->name);
            return;
        }
        req.gateway_id = (char *)who->name;
    }
    struct werr e = {0};
    struct store_txn *t;
    if (store_txn_begin(ctx->store, 0, &t, &e) != 0) {
        fail(call, &e);
        return;
    }
    struct inv_page page;
    int rc = inv_list(ctx->inv, t, &req, &page, &e);
    store_txn_abort(t);
    if (rc != 0) {
        fail(call, &e);
        return;
    }
    Warden__V1__ListDevicesResponse resp =
        WARDEN__V1__LIST_DEVICES_RESPONSE__INIT;
    resp.n_devices = page.n;
    resp.devices = page.devices;
    resp.next_page_token = page.next_token;
    grpc_call_reply(call, &resp.base);
    inv_page_free(&page);
}

int svc_inventory_register(struct grpc_router *r, struct svc_ctx *ctx,
                           struct werr *e)
{
    if (ctx == NULL || ctx->store == NULL || ctx->inv == NULL) {
        return werr_set(e, WERR_INVALID,
                        "svc_inventory_register: store and inv are required");
    }
    /* Open the local-counter database now, at start-up, as store_dbi()
     * requires; handlers find it with store_dbi_find(). */
    unsigned dbi;
    int rc = store_dbi(ctx->store, LOCAL_DB, &dbi, e);
    if (rc != 0) {
        return werr_wrap(e, "svc_inventory_register");
    }
    const unsigned readers =
        WROLE_ADMIN | WROLE_OPERATOR | WROLE_AUDITOR | WROLE_GATEWAY;
    const struct grpc_method methods[] = {
        {.path = "/warden.v1.Inventory/EnrollDevice",
         .roles = WROLE_ADMIN | WROLE_OPERATOR,
         .req_desc = &warden__v1__enroll_device_request__descriptor,
         .handler = enroll_cb,
         .data = ctx},
        {.path = "/warden.v1.Inventory/GetDevice",
         .roles = readers,
         .req_desc = &warden__v1__get_device_request__descriptor,
         .handler = get_cb,
         .data = ctx},
        {.path = "/warden.v1.Inventory/ListDevices",
         .roles = readers,
         .req_desc = &warden__v1__list_devices_request__descriptor,
         .handler = list_cb,
         .data = ctx},
    };
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++) {
        if ((rc = grpc_router_add(r, &methods[i], e)) != 0) {
            return werr_wrap(e, "svc_inventory_register");
        }
    }
    return 0;
}
