/* svc_inventory.c - warden.v1.Inventory: glue between the gRPC layer and
 * the Raft node (consensus/node.h) that owns the inventory.
 *
 * Writes (EnrollDevice) become one warden.v1.Command - principal, the
 * request's idempotency key, the op - proposed with wnode_propose() on the
 * leader. The reply is sent from the propose callback, i.e. after the entry
 * is committed by a majority (each of which fsynced it) and applied here:
 * an acknowledged enroll survives crashes and leader changes. Not the
 * leader: UNAVAILABLE with trailers warden-leader / warden-leader-id, and
 * the client retries there (docs/operations-cluster.md); an ambiguous
 * failure (leadership lost mid-proposal) is safe to retry with the same
 * idempotency key.
 *
 * Reads: consistency LINEARIZABLE (the default) is served by the leader
 * only, after a shared Raft barrier (wnode_barrier: every entry committed
 * before the read is applied and we were still leader when it committed,
 * Raft §6.4); SERIALIZABLE reads this node's local state, on any node, and
 * may be stale. The store is fetched after each barrier, never cached: a
 * snapshot restore replaces it.
 *
 * Authorization: the grpc layer enforces each method's role set. On top of
 * it, a gateway principal only sees devices bound to it (gateway_id == its
 * principal name), which bounds the blast radius of a compromised gateway
 * (issue 4). For Get it receives PERMISSION_DENIED both for a device bound
 * elsewhere and for an id that does not exist, so it cannot probe which
 * device ids exist; its List is forced to its own gateway filter. */
#include <stdio.h>
#include <string.h>

#include "warden/v1/command.pb-c.h"
#include "warden/v1/inventory.pb-c.h"

#include "../common/log.h"
#include "../common/principal.h"
#include "../consensus/fsm.h"
#include "../consensus/node.h"
#include "../domain/inventory.h"
#include "../storage/store.h"
#include "svc.h"

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

static void enroll_done_cb(void *arg, int status, struct wfsm_result *res)
{
    struct svc_pending *p = arg;
    struct svc_ctx *ctx = p->ctx;
    struct grpc_call *call = svc_pending_end(p, NULL);
    if (call == NULL) {
        /* The client left; the command committed (or not) all the same. A
         * retry with the same idempotency key gets its result. */
        wlog(WLOG_DEBUG, "enroll finished after the call was cancelled", NULL);
        return;
    }
    if (status != 0) {
        svc_fail_raft(ctx, call, status, "enroll");
        return;
    }
    if (res->code != 0) {
        grpc_call_fail(call, werr_grpc_status(res->code), "%s", res->msg);
        return;
    }
    Warden__V1__EnrollDeviceResponse *resp =
        warden__v1__enroll_device_response__unpack(NULL, res->resp_len, res->resp);
    if (resp == NULL) {
        wlog(WLOG_ERROR, "enroll: state machine returned an undecodable response",
             NULL);
        grpc_call_fail(call, GRPC_STATUS_INTERNAL, "enroll: bad result");
        return;
    }
    if (resp->device != NULL) {
        wlog(WLOG_INFO, res->replayed ? "enroll replayed (idempotency key)"
                                      : "device enrolled",
             "device", resp->device->device_id, "gateway",
             resp->device->gateway_id, "principal",
             grpc_call_principal(call)->name, NULL);
    }
    grpc_call_reply(call, &resp->base);
    warden__v1__enroll_device_response__free_unpacked(resp, NULL);
}

static void enroll_cb(struct grpc_call *call, const ProtobufCMessage *msg,
                      void *data)
{
    struct svc_ctx *ctx = data;
    const Warden__V1__EnrollDeviceRequest *req =
        (const Warden__V1__EnrollDeviceRequest *)msg;
    const struct principal *who = grpc_call_principal(call);

    if (!wnode_is_leader(ctx->wn)) {
        svc_fail_raft(ctx, call, WERR_UNAVAIL, "enroll");
        return;
    }
    Warden__V1__Command cmd = WARDEN__V1__COMMAND__INIT;
    cmd.principal_name = (char *)who->name;
    cmd.principal_role = who->role;
    cmd.idempotency_key = req->idempotency_key;
    cmd.op_case = WARDEN__V1__COMMAND__OP_ENROLL_DEVICE;
    cmd.enroll_device = (Warden__V1__EnrollDeviceRequest *)req;

    struct svc_pending *p = svc_pending_new(ctx, call, msg);
    if (p == NULL) {
        return;
    }
    struct werr e = {0};
    int rc = wnode_propose(ctx->wn, &cmd, enroll_done_cb, p, &e);
    if (rc != 0) {
        call = svc_pending_end(p, NULL);
        if (rc == WERR_LIMIT || rc == WERR_NOMEM) {
            grpc_call_fail_err(call, &e);
        } else {
            svc_fail_raft(ctx, call, rc, "enroll");
        }
    }
}

/* The state machine's store and inventory as they are now (a snapshot
 * restore replaces them, consensus/fsm.h). */
static struct store *cur_store(struct svc_ctx *ctx)
{
    return wfsm_store(wnode_fsm(ctx->wn));
}

static struct inv *cur_inv(struct svc_ctx *ctx)
{
    return wfsm_inv(wnode_fsm(ctx->wn));
}

static void do_get(struct svc_ctx *ctx, struct grpc_call *call,
                   const Warden__V1__GetDeviceRequest *req)
{
    const struct principal *who = grpc_call_principal(call);
    struct werr e = {0};
    struct store_txn *t;
    Warden__V1__Device *dev = NULL;

    if (store_txn_begin(cur_store(ctx), 0, &t, &e) != 0) {
        fail(call, &e);
        return;
    }
    int rc = inv_get(cur_inv(ctx), t, req->device_id, &dev, &e);
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

static void do_list(struct svc_ctx *ctx, struct grpc_call *call,
                    const Warden__V1__ListDevicesRequest *borrowed)
{
    const struct principal *who = grpc_call_principal(call);
    /* Shallow copy: we may override the gateway filter, the borrowed
     * request stays untouched. */
    Warden__V1__ListDevicesRequest req = *borrowed;
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
    if (store_txn_begin(cur_store(ctx), 0, &t, &e) != 0) {
        fail(call, &e);
        return;
    }
    struct inv_page page;
    int rc = inv_list(cur_inv(ctx), t, &req, &page, &e);
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

enum read_kind { READ_GET, READ_LIST };

static void read_barrier_cb(void *arg, int status)
{
    struct svc_pending *p = arg;
    struct svc_ctx *ctx = p->ctx;
    unsigned kind = p->u;
    const ProtobufCMessage *req;
    struct grpc_call *call = svc_pending_end(p, &req);
    if (call == NULL) {
        return;
    }
    if (status != 0) {
        svc_fail_raft(ctx, call, status, "linearizable read");
        return;
    }
    if (kind == READ_GET) {
        do_get(ctx, call, (const Warden__V1__GetDeviceRequest *)req);
    } else {
        do_list(ctx, call, (const Warden__V1__ListDevicesRequest *)req);
    }
}

/* LINEARIZABLE: on the leader, after a shared barrier. */
static void read_linearizable(struct svc_ctx *ctx, struct grpc_call *call,
                              const ProtobufCMessage *msg, enum read_kind kind)
{
    if (!wnode_is_leader(ctx->wn)) {
        svc_fail_raft(ctx, call, WERR_UNAVAIL, "linearizable read");
        return;
    }
    struct svc_pending *p = svc_pending_new(ctx, call, msg);
    if (p == NULL) {
        return;
    }
    p->u = kind;
    int rc = wnode_barrier(ctx->wn, read_barrier_cb, p);
    if (rc != 0) {
        call = svc_pending_end(p, NULL);
        svc_fail_raft(ctx, call, rc, "linearizable read");
    }
}

static void get_cb(struct grpc_call *call, const ProtobufCMessage *msg,
                   void *data)
{
    struct svc_ctx *ctx = data;
    const Warden__V1__GetDeviceRequest *req =
        (const Warden__V1__GetDeviceRequest *)msg;
    if (req->consistency == WARDEN__V1__READ_CONSISTENCY__READ_CONSISTENCY_SERIALIZABLE) {
        do_get(ctx, call, req);
        return;
    }
    read_linearizable(ctx, call, msg, READ_GET);
}

static void list_cb(struct grpc_call *call, const ProtobufCMessage *msg,
                    void *data)
{
    struct svc_ctx *ctx = data;
    const Warden__V1__ListDevicesRequest *req =
        (const Warden__V1__ListDevicesRequest *)msg;
    if (req->consistency == WARDEN__V1__READ_CONSISTENCY__READ_CONSISTENCY_SERIALIZABLE) {
        do_list(ctx, call, req);
        return;
    }
    read_linearizable(ctx, call, msg, READ_LIST);
}

int svc_inventory_register(struct grpc_router *r, struct svc_ctx *ctx,
                           struct werr *e)
{
    if (ctx == NULL || ctx->wn == NULL) {
        return werr_set(e, WERR_INVALID,
                        "svc_inventory_register: the raft node is required");
    }
    int rc;
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
