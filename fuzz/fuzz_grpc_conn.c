/* fuzz_grpc_conn.c - a whole server connection, fed client bytes.
 *
 * Input layout: byte 0 = chunk size (1..256); the rest are the bytes a
 * client would send (seeds begin with the HTTP/2 preface). Between chunks
 * we drain output, advance the clock and tick deadlines, answer pending
 * async calls, and shut down half way, so handler re-entrancy, async
 * replies, cancellation and GOAWAY all meet hostile input. */
#include <stdlib.h>
#include <string.h>

#include "grpc/grpc.h"
#include "grpc/health/v1/health.pb-c.h"

/* Async calls a handler may park; bounded like everything else. */
#define FUZZ_PENDING_MAX 16

static struct grpc_call *pending[FUZZ_PENDING_MAX];
static size_t npending;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void cancel_cb(struct grpc_call *c, void *arg)
{
    (void)arg;
    for (size_t i = 0; i < npending; i++) {
        if (pending[i] == c) {
            pending[i] = pending[--npending];
            return;
        }
    }
    abort(); /* cancel for a call we never parked */
}

static void reply(struct grpc_call *c, int streaming)
{
    Grpc__Health__V1__HealthCheckResponse resp =
        GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
    resp.status = 1;
    if (streaming) {
        (void)grpc_call_send(c, &resp.base);
        (void)grpc_call_send(c, &resp.base);
        (void)grpc_call_finish(c, GRPC_STATUS_OK, "done");
    } else {
        (void)grpc_call_add_trailer(c, "warden-leader", "n1");
        (void)grpc_call_reply(c, &resp.base);
    }
}

static void handler(struct grpc_call *c, const ProtobufCMessage *req,
                    void *data)
{
    const Grpc__Health__V1__HealthCheckRequest *r =
        (const Grpc__Health__V1__HealthCheckRequest *)req;
    int streaming = data != NULL;
    (void)grpc_call_metadata(c, "x-any");
    if (r->service[0] == 'a' && npending < FUZZ_PENDING_MAX) {
        grpc_call_on_cancel(c, cancel_cb, NULL);
        pending[npending++] = c;
        return;
    }
    if (r->service[0] == 'f') {
        (void)grpc_call_fail(c, GRPC_STATUS_NOT_FOUND, "%s", r->service);
        return;
    }
    reply(c, streaming);
}

static void drain(struct grpc_conn *conn)
{
    const uint8_t *d;
    for (int i = 0; i < 1000 && grpc_conn_send(conn, &d) > 0; i++) {
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct grpc_router router;
    static int init;
    if (!init) {
        struct grpc_method m;
        memset(&m, 0, sizeof m);
        m.req_desc = &grpc__health__v1__health_check_request__descriptor;
        m.roles = WROLE_ALL_CLIENTS;
        m.handler = handler;
        grpc_router_init(&router);
        strcpy(m.path, "/grpc.health.v1.Health/Check");
        grpc_router_add(&router, &m, NULL);
        strcpy(m.path, "/grpc.health.v1.Health/Watch");
        m.server_streaming = 1;
        m.data = &router;
        grpc_router_add(&router, &m, NULL);
        strcpy(m.path, "/w.A/Admin");
        m.server_streaming = 0;
        m.data = NULL;
        m.roles = WROLE_ADMIN;
        grpc_router_add(&router, &m, NULL);
        init = 1;
    }
    if (size < 1) {
        return 0;
    }
    size_t chunk = (size_t)data[0] + 1;
    data++, size--;

    struct principal p = {.role = WROLE_OPERATOR, .name = "fuzz"};
    struct grpc_conn_config cfg = {.max_msg = 1024};
    struct grpc_conn *conn;
    if (grpc_conn_new(&conn, &router, &cfg, &p, NULL) != 0) {
        return 0;
    }
    npending = 0;
    uint64_t now = 1;
    size_t off = 0, step = 0;
    while (off < size) {
        size_t n = size - off < chunk ? size - off : chunk;
        if (grpc_conn_recv(conn, data + off, n, now) != 0) {
            break;
        }
        off += n;
        drain(conn);
        now += 7;
        (void)grpc_conn_tick(conn, now);
        if (npending > 0 && (step & 1)) {
            struct grpc_call *c = pending[--npending];
            /* finish() ends unary and streaming calls alike. */
            if (grpc_call_finish(c, GRPC_STATUS_OK, NULL) != 0) {
                abort();
            }
        }
        if (++step == 8) {
            grpc_conn_shutdown(conn);
        }
        drain(conn);
    }
    grpc_conn_free(conn); /* cancels whatever is still parked */
    if (npending != 0) {
        abort();
    }
    return 0;
}
