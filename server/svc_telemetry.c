/* svc_telemetry.c - warden.v1.Telemetry/Submit: device -> cloud messages
 * checked against the replicated anti-replay window (domain/freshness.h,
 * docs/freshness.md).
 *
 * Callers: a gateway, for devices bound to it; admin and operator (tests,
 * back-fills). Each submission is one Command (op submit_telemetry) on the
 * leader: the window lives in replicated state, so a failover cannot
 * reopen it. The verdict (ACCEPTED, REPLAY, TOO_OLD, BAD_SIGNATURE,
 * STALE_EPOCH, UNKNOWN_DEVICE, NOT_ACTIVE) is an OK reply carrying the
 * result enum, not a gRPC error: the gateway must see it per message.
 * Errors are only for malformed requests (INVALID_ARGUMENT), callers not
 * allowed for the device (PERMISSION_DENIED) and the node (UNAVAILABLE...).
 *
 * A gateway naming a device bound to another gateway is refused before
 * proposing (svc_gateway_refuse: counted, aggregated into the ledger); one
 * that gets past a stale local view is refused and audited by apply.
 * Submissions carry no idempotency key: the window itself makes a retry
 * harmless (a committed first attempt makes the retry a REPLAY). */
#include "warden/v1/command.pb-c.h"
#include "warden/v1/telemetry.pb-c.h"

#include "../domain/freshness.h"
#include "svc.h"
#include "svc_propose.h"

static void submit_cb(struct grpc_call *call, const ProtobufCMessage *msg,
                      void *data)
{
    struct svc_ctx *ctx = data;
    const Warden__V1__SubmitTelemetryRequest *req =
        (const Warden__V1__SubmitTelemetryRequest *)msg;
    /* The payload rides in the Raft log: refuse oversize ones before they
     * get there (apply refuses them too). */
    if (req->payload.len > FRESH_PAYLOAD_MAX) {
        grpc_call_fail(call, GRPC_STATUS_INVALID_ARGUMENT,
                       "payload is %zu bytes, at most %zu", req->payload.len,
                       FRESH_PAYLOAD_MAX);
        return;
    }
    if (svc_gateway_refuse(ctx, call, req->device_id)) {
        return;
    }
    Warden__V1__Command cmd;
    svc_cmd_init(&cmd, grpc_call_principal(call), NULL);
    cmd.op_case = WARDEN__V1__COMMAND__OP_SUBMIT_TELEMETRY;
    cmd.submit_telemetry = (Warden__V1__SubmitTelemetryRequest *)req;
    svc_propose_reply(ctx, call, msg, &cmd, "submit telemetry",
                      &warden__v1__submit_telemetry_response__descriptor);
}

int svc_telemetry_register(struct grpc_router *r, struct svc_ctx *ctx,
                           struct werr *e)
{
    const struct grpc_method methods[] = {
        {.path = "/warden.v1.Telemetry/Submit",
         .roles = WROLE_GATEWAY | WROLE_ADMIN | WROLE_OPERATOR,
         .req_desc = &warden__v1__submit_telemetry_request__descriptor,
         .handler = submit_cb},
    };
    return svc_register_methods(r, ctx, methods,
                                sizeof methods / sizeof methods[0],
                                "svc_telemetry_register", e);
}
