/* svc_inventory.c - warden.v1.Inventory: glue between the gRPC layer and
 * the Raft node (consensus/node.h) that owns the inventory.
 *
 * Writes (EnrollDevice, EnrollDevices, SetDeviceState, ReEnrollDevice,
 * RebindDevice, IssueRotationNonce, RotateDeviceKey) become one
 * warden.v1.Command - principal, the request's idempotency key, the op -
 * proposed on the leader through svc_propose_reply() (svc_propose.h). The reply is sent from the propose callback, i.e. after the entry
 * is committed by a majority (each of which fsynced it) and applied here:
 * an acknowledged enroll survives crashes and leader changes. Not the
 * leader: UNAVAILABLE with trailers warden-leader / warden-leader-id, and
 * the client retries there (docs/operations-cluster.md); an ambiguous
 * failure (leadership lost mid-proposal, node closing) carries the trailer
 * warden-outcome: unknown and is safe to retry with the same idempotency
 * key. IssueRotationNonce's nonce is leader-filled: 32 bytes from
 * RAND_bytes here, never from the client, never in apply (apply must stay
 * deterministic).
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
 * device ids exist; its List is forced to its own gateway filter. For the
 * writes a gateway may call (IssueRotationNonce, RotateDeviceKey) a device
 * bound elsewhere is refused here before proposing (svc_gateway_refuse);
 * apply checks the binding again and audits what gets past. Every
 * PERMISSION_DENIED decided here is counted for the ledger (svc_denials.c).
 *
 * Roles (the method's role set is the first gate; apply checks again):
 * EnrollDevice(s), SetDeviceState, RebindDevice, UpdateDeviceLabels:
 * admin, operator;
 * ReEnrollDevice: admin; IssueRotationNonce, RotateDeviceKey: admin,
 * operator, gateway (bound); reads: admin, operator, auditor, gateway. */
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "warden/v1/command.pb-c.h"
#include "warden/v1/inventory.pb-c.h"

#include "../common/log.h"
#include "../common/principal.h"
#include "../consensus/fsm.h"
#include "../consensus/node.h"
#include "../domain/inventory.h"
#include "../domain/lifecycle.h"
#include "../storage/store.h"
#include "svc.h"
#include "svc_propose.h"

static int is_gateway(const struct principal *p)
{
    return p->role == WROLE_GATEWAY;
}

static void deny_gateway(struct svc_ctx *ctx, struct grpc_call *call,
                         const struct principal *who, const char *device_id)
{
    svc_denial_note(ctx, who, grpc_call_path(call));
    wlog(WLOG_WARN, "gateway denied device access", "method",
         grpc_call_path(call), "principal", who->name, "device", device_id,
         NULL);
    grpc_call_fail(call, GRPC_STATUS_PERMISSION_DENIED,
                   "device %s is not bound to gateway %s", device_id, who->name);
}

/* ---- writes ------------------------------------------------------------------ */

#define PROPOSE(ctx, call, msg, cmd, what, resp)                               \
    svc_propose_reply((ctx), (call), (msg), (cmd), (what),                     \
                      &warden__v1__##resp##__descriptor)

static void enroll_cb(struct grpc_call *call, const ProtobufCMessage *msg,
                      void *data)
{
    const Warden__V1__EnrollDeviceRequest *req =
        (const Warden__V1__EnrollDeviceRequest *)msg;
    Warden__V1__Command cmd;
    svc_cmd_init(&cmd, grpc_call_principal(call), req->idempotency_key);
    cmd.op_case = WARDEN__V1__COMMAND__OP_ENROLL_DEVICE;
    cmd.enroll_device = (Warden__V1__EnrollDeviceRequest *)req;
    PROPOSE(data, call, msg, &cmd, "enroll", enroll_device_response);
}

static void enroll_batch_cb(struct grpc_call *call, const ProtobufCMessage *msg,
                            void *data)
{
    const Warden__V1__EnrollDevicesRequest *req =
        (const Warden__V1__EnrollDevicesRequest *)msg;
    /* Checked here too so an oversized burst never reaches the log. */
    if (req->n_devices == 0 || req->n_devices > WFSM_ENROLL_BATCH_MAX) {
        grpc_call_fail(call, GRPC_STATUS_INVALID_ARGUMENT,
                       "EnrollDevices takes 1..%u devices, got %zu",
                       WFSM_ENROLL_BATCH_MAX, req->n_devices);
        return;
    }
    Warden__V1__Command cmd;
    svc_cmd_init(&cmd, grpc_call_principal(call), req->idempotency_key);
    cmd.op_case = WARDEN__V1__COMMAND__OP_ENROLL_DEVICES;
    cmd.enroll_devices = (Warden__V1__EnrollDevicesRequest *)req;
    PROPOSE(data, call, msg, &cmd, "enroll devices", enroll_devices_response);
}

static void set_state_cb(struct grpc_call *call, const ProtobufCMessage *msg,
                         void *data)
{
    const Warden__V1__SetDeviceStateRequest *req =
        (const Warden__V1__SetDeviceStateRequest *)msg;
    Warden__V1__Command cmd;
    svc_cmd_init(&cmd, grpc_call_principal(call), req->idempotency_key);
    cmd.op_case = WARDEN__V1__COMMAND__OP_SET_DEVICE_STATE;
    cmd.set_device_state = (Warden__V1__SetDeviceStateRequest *)req;
    PROPOSE(data, call, msg, &cmd, "set device state", set_device_state_response);
}

static void reenroll_cb(struct grpc_call *call, const ProtobufCMessage *msg,
                        void *data)
{
    const Warden__V1__ReEnrollDeviceRequest *req =
        (const Warden__V1__ReEnrollDeviceRequest *)msg;
    Warden__V1__Command cmd;
    svc_cmd_init(&cmd, grpc_call_principal(call), req->idempotency_key);
    cmd.op_case = WARDEN__V1__COMMAND__OP_REENROLL_DEVICE;
    cmd.reenroll_device = (Warden__V1__ReEnrollDeviceRequest *)req;
    PROPOSE(data, call, msg, &cmd, "re-enroll device", re_enroll_device_response);
}

static void rebind_cb(struct grpc_call *call, const ProtobufCMessage *msg,
                      void *data)
{
    const Warden__V1__RebindDeviceRequest *req =
        (const Warden__V1__RebindDeviceRequest *)msg;
    Warden__V1__Command cmd;
    svc_cmd_init(&cmd, grpc_call_principal(call), req->idempotency_key);
    cmd.op_case = WARDEN__V1__COMMAND__OP_REBIND_DEVICE;
    cmd.rebind_device = (Warden__V1__RebindDeviceRequest *)req;
    PROPOSE(data, call, msg, &cmd, "rebind device", rebind_device_response);
}

/* UpdateDeviceLabels (issue 7): validation, the role and the version
 * check all happen in apply (inv_update_labels), against the state the
 * entry is applied to, which is what makes it a compare-and-set. */
static void labels_cb(struct grpc_call *call, const ProtobufCMessage *msg,
                      void *data)
{
    const Warden__V1__UpdateDeviceLabelsRequest *req =
        (const Warden__V1__UpdateDeviceLabelsRequest *)msg;
    Warden__V1__Command cmd;
    svc_cmd_init(&cmd, grpc_call_principal(call), req->idempotency_key);
    cmd.op_case = WARDEN__V1__COMMAND__OP_UPDATE_DEVICE_LABELS;
    cmd.update_device_labels = (Warden__V1__UpdateDeviceLabelsRequest *)req;
    PROPOSE(data, call, msg, &cmd, "update device labels",
            update_device_labels_response);
}

static void nonce_cb(struct grpc_call *call, const ProtobufCMessage *msg,
                     void *data)
{
    struct svc_ctx *ctx = data;
    const Warden__V1__IssueRotationNonceRequest *req =
        (const Warden__V1__IssueRotationNonceRequest *)msg;
    if (svc_gateway_refuse(ctx, call, req->device_id)) {
        return;
    }
    if (!wnode_is_leader(ctx->wn)) {
        svc_fail_raft(ctx, call, WERR_UNAVAIL, "issue rotation nonce");
        return;
    }
    /* Leader-filled (inventory.proto): whatever the client sent in nonce
     * is overwritten. Shallow copy: the borrowed request stays intact. */
    Warden__V1__IssueRotationNonceRequest op = *req;
    uint8_t nonce[LC_NONCE_LEN];
    if (RAND_bytes(nonce, sizeof nonce) != 1) {
        wlog(WLOG_ERROR, "RAND_bytes failed", "what", "rotation nonce", NULL);
        grpc_call_fail(call, GRPC_STATUS_INTERNAL, "no randomness");
        return;
    }
    op.nonce.data = nonce;
    op.nonce.len = sizeof nonce;
    Warden__V1__Command cmd;
    svc_cmd_init(&cmd, grpc_call_principal(call), NULL);
    cmd.op_case = WARDEN__V1__COMMAND__OP_ISSUE_ROTATION_NONCE;
    cmd.issue_rotation_nonce = &op;
    PROPOSE(ctx, call, msg, &cmd, "issue rotation nonce",
            issue_rotation_nonce_response);
}

static void rotate_cb(struct grpc_call *call, const ProtobufCMessage *msg,
                      void *data)
{
    struct svc_ctx *ctx = data;
    const Warden__V1__RotateDeviceKeyRequest *req =
        (const Warden__V1__RotateDeviceKeyRequest *)msg;
    if (svc_gateway_refuse(ctx, call, req->device_id)) {
        return;
    }
    Warden__V1__Command cmd;
    svc_cmd_init(&cmd, grpc_call_principal(call), req->idempotency_key);
    cmd.op_case = WARDEN__V1__COMMAND__OP_ROTATE_DEVICE_KEY;
    cmd.rotate_device_key = (Warden__V1__RotateDeviceKeyRequest *)req;
    PROPOSE(ctx, call, msg, &cmd, "rotate device key", rotate_device_key_response);
}

/* ---- reads -------------------------------------------------------------------- */

static void do_get(struct svc_ctx *ctx, struct grpc_call *call,
                   const ProtobufCMessage *msg)
{
    const Warden__V1__GetDeviceRequest *req =
        (const Warden__V1__GetDeviceRequest *)msg;
    const struct principal *who = grpc_call_principal(call);
    struct werr e = {0};
    struct store_txn *t;
    Warden__V1__Device *dev = NULL;

    if (store_txn_begin(svc_store(ctx), 0, &t, &e) != 0) {
        svc_fail(call, &e);
        return;
    }
    int rc = inv_get(svc_inv(ctx), t, req->device_id, &dev, &e);
    store_txn_abort(t);
    if (is_gateway(who) && (rc == WERR_NOTFOUND ||
                            (rc == 0 && strcmp(dev->gateway_id, who->name) != 0))) {
        inv_device_free(dev);
        deny_gateway(ctx, call, who, req->device_id ? req->device_id : "");
        return;
    }
    if (rc != 0) {
        svc_fail(call, &e);
        return;
    }
    Warden__V1__GetDeviceResponse resp = WARDEN__V1__GET_DEVICE_RESPONSE__INIT;
    resp.device = dev;
    grpc_call_reply(call, &resp.base);
    inv_device_free(dev);
}

static void do_list(struct svc_ctx *ctx, struct grpc_call *call,
                    const ProtobufCMessage *msg)
{
    const Warden__V1__ListDevicesRequest *borrowed =
        (const Warden__V1__ListDevicesRequest *)msg;
    const struct principal *who = grpc_call_principal(call);
    /* Shallow copy: we may override the gateway filter, the borrowed
     * request stays untouched. */
    Warden__V1__ListDevicesRequest req = *borrowed;
    if (is_gateway(who)) {
        if (req.gateway_id != NULL && req.gateway_id[0] != '\0' &&
            strcmp(req.gateway_id, who->name) != 0) {
            svc_denial_note(ctx, who, grpc_call_path(call));
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
    if (store_txn_begin(svc_store(ctx), 0, &t, &e) != 0) {
        svc_fail(call, &e);
        return;
    }
    struct inv_page page;
    int rc = inv_list(svc_inv(ctx), t, &req, &page, &e);
    store_txn_abort(t);
    if (rc != 0) {
        svc_fail(call, &e);
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

static void get_cb(struct grpc_call *call, const ProtobufCMessage *msg,
                   void *data)
{
    const Warden__V1__GetDeviceRequest *req =
        (const Warden__V1__GetDeviceRequest *)msg;
    svc_read(data, call, msg,
             req->consistency !=
                 WARDEN__V1__READ_CONSISTENCY__READ_CONSISTENCY_SERIALIZABLE,
             do_get, "linearizable read");
}

static void list_cb(struct grpc_call *call, const ProtobufCMessage *msg,
                    void *data)
{
    const Warden__V1__ListDevicesRequest *req =
        (const Warden__V1__ListDevicesRequest *)msg;
    svc_read(data, call, msg,
             req->consistency !=
                 WARDEN__V1__READ_CONSISTENCY__READ_CONSISTENCY_SERIALIZABLE,
             do_list, "linearizable read");
}

int svc_inventory_register(struct grpc_router *r, struct svc_ctx *ctx,
                           struct werr *e)
{
    const unsigned readers =
        WROLE_ADMIN | WROLE_OPERATOR | WROLE_AUDITOR | WROLE_GATEWAY;
    const unsigned writers = WROLE_ADMIN | WROLE_OPERATOR;
    const unsigned device_side = WROLE_ADMIN | WROLE_OPERATOR | WROLE_GATEWAY;
#define M(name, roles_, req, fn)                                               \
    {.path = "/warden.v1.Inventory/" name,                                     \
     .roles = (roles_),                                                        \
     .req_desc = &warden__v1__##req##__descriptor,                             \
     .handler = (fn)}
    const struct grpc_method methods[] = {
        M("EnrollDevice", writers, enroll_device_request, enroll_cb),
        M("GetDevice", readers, get_device_request, get_cb),
        M("ListDevices", readers, list_devices_request, list_cb),
        M("EnrollDevices", writers, enroll_devices_request, enroll_batch_cb),
        M("SetDeviceState", writers, set_device_state_request, set_state_cb),
        M("ReEnrollDevice", WROLE_ADMIN, re_enroll_device_request, reenroll_cb),
        M("RebindDevice", writers, rebind_device_request, rebind_cb),
        M("IssueRotationNonce", device_side, issue_rotation_nonce_request,
          nonce_cb),
        M("RotateDeviceKey", device_side, rotate_device_key_request, rotate_cb),
        M("UpdateDeviceLabels", writers, update_device_labels_request,
          labels_cb),
    };
#undef M
    return svc_register_methods(r, ctx, methods,
                                sizeof methods / sizeof methods[0],
                                "svc_inventory_register", e);
}
