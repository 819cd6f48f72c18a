/* call.c - the handler-facing side of a call: accessors, replies, and the
 * HTTP/2 response they turn into.
 *
 * PROTOCOL-HTTP2: Response → (Response-Headers *Length-Prefixed-Message
 * Trailers) / Trailers-Only. We send Trailers-Only whenever the call ends
 * before its first message, else HEADERS, DATA via a deferred data
 * provider, and a trailing HEADERS frame (nghttp2_submit_trailer). */
#include "internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NV(n, v, vlen)                                                   \
    ((nghttp2_nv){(uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, (vlen), \
                  NGHTTP2_NV_FLAG_NONE})

static const char content_type[] = "application/grpc+proto";

struct grpc_call *grpc__call_new(struct grpc_conn *conn, int32_t stream_id)
{
    struct grpc_call *call = calloc(1, sizeof *call);
    if (call == NULL) {
        return NULL;
    }
    call->conn = conn;
    call->stream_id = stream_id;
    call->state = GRPC__CALL_HEADERS;
    call->encoding_identity = 1;
    call->start_ms = conn->now_ms;
    grpc_frame_dec_init(&call->dec, conn->max_msg);
    call->next = conn->calls;
    if (conn->calls != NULL) {
        conn->calls->prev = call;
    }
    conn->calls = call;
    conn->ncalls++;
    return call;
}

void grpc__call_free(struct grpc_call *call)
{
    struct grpc_conn *conn = call->conn;
    /* The one place every call dies (nghttp2's stream_close habit), so the
     * completion report is exactly once, whatever ended the call. */
    if (call->headers_complete && conn->on_call_done != NULL) {
        int status = call->http_refused  ? -1
                     : call->final_set   ? call->final_status
                                         : GRPC_STATUS_CANCELLED;
        conn->on_call_done(conn->on_call_done_arg, &conn->peer, call->path,
                           status, call->start_ms, call->admitted);
    }
    if (call->prev != NULL) {
        call->prev->next = call->next;
    } else {
        conn->calls = call->next;
    }
    if (call->next != NULL) {
        call->next->prev = call->prev;
    }
    conn->ncalls--;
    conn->rx_buffered -= call->rx_counted;
    grpc_frame_dec_close(&call->dec);
    free(call->msg);
    if (call->req != NULL) {
        protobuf_c_message_free_unpacked(call->req, NULL);
    }
    free(call->out);
    free(call);
}

void grpc__call_cancel(struct grpc_call *call)
{
    if (call->state != GRPC__CALL_HANDLER) {
        return; /* the handler never saw it, or already finished it */
    }
    /* CLOSING first: a grpc_call_* from inside the callback is refused. */
    call->state = GRPC__CALL_CLOSING;
    grpc_cancel_fn cb = call->cancel_cb;
    call->cancel_cb = NULL;
    if (cb != NULL) {
        cb(call, call->cancel_arg);
    }
}

/* ---- accessors ---------------------------------------------------------- */
const char *grpc_call_path(const struct grpc_call *c)
{
    return c->path;
}

const struct principal *grpc_call_principal(const struct grpc_call *c)
{
    return &c->conn->peer;
}

uint64_t grpc_call_deadline(const struct grpc_call *c)
{
    return c->deadline;
}

const char *grpc_call_metadata(const struct grpc_call *c, const char *name)
{
    for (size_t i = 0; i < c->n_md; i++) {
        if (strcmp(c->md_name[i], name) == 0) {
            return c->md_val[i];
        }
    }
    return NULL;
}

void grpc_call_set_userdata(struct grpc_call *c, void *ud)
{
    c->userdata = ud;
}

void *grpc_call_userdata(const struct grpc_call *c)
{
    return c->userdata;
}

void grpc_call_on_cancel(struct grpc_call *c, grpc_cancel_fn cb, void *arg)
{
    c->cancel_cb = cb;
    c->cancel_arg = arg;
}

/* ---- trailers ----------------------------------------------------------- */
static int trailer_name_ok(const char *name, size_t len)
{
    if (len == 0 || len > GRPC__MD_NAME_MAX) {
        return 0;
    }
    /* PROTOCOL-HTTP2: "grpc-" names are reserved for the protocol. */
    if (len >= 5 && memcmp(name, "grpc-", 5) == 0) {
        return 0;
    }
    for (size_t i = 0; i < len; i++) {
        char ch = name[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
              ch == '-' || ch == '_' || ch == '.')) {
            return 0;
        }
    }
    return 1;
}

int grpc_call_add_trailer(struct grpc_call *c, const char *name,
                          const char *value)
{
    if (c->state == GRPC__CALL_CLOSING) {
        return WERR_INVALID;
    }
    size_t nlen = strlen(name);
    size_t vlen = strlen(value);
    if (!trailer_name_ok(name, nlen) || vlen > GRPC_METADATA_VALUE_MAX) {
        return WERR_INVALID;
    }
    for (size_t i = 0; i < vlen; i++) {
        if (value[i] < 0x20 || value[i] > 0x7E) {
            return WERR_INVALID;
        }
    }
    if (c->n_tr >= GRPC_CALL_TRAILERS_MAX) {
        return WERR_LIMIT;
    }
    memcpy(c->tr_name[c->n_tr], name, nlen + 1);
    memcpy(c->tr_val[c->n_tr], value, vlen + 1);
    c->n_tr++;
    return 0;
}

/* grpc-status, grpc-message, grpc-accept-encoding, custom trailers. */
static size_t trailers_nv(struct grpc_call *c, nghttp2_nv *nv)
{
    size_t n = 0;
    nv[n++] = NV("grpc-status", c->status_str, strlen(c->status_str));
    if (c->final_msg[0] != '\0') {
        nv[n++] = NV("grpc-message", c->final_msg, strlen(c->final_msg));
    }
    if (c->accept_encoding) {
        nv[n++] = NV("grpc-accept-encoding", "identity", 8);
    }
    for (size_t i = 0; i < c->n_tr; i++) {
        nv[n++] = (nghttp2_nv){(uint8_t *)c->tr_name[i], (uint8_t *)c->tr_val[i],
                               strlen(c->tr_name[i]), strlen(c->tr_val[i]),
                               NGHTTP2_NV_FLAG_NONE};
    }
    return n;
}

/* ---- output ------------------------------------------------------------- */
/* nghttp2 pulls DATA from here. An empty queue defers the stream until
 * grpc_call_send()/finish resumes it; an empty queue with a final status
 * ends the DATA and submits the trailers from inside the callback, which
 * nghttp2 allows. */
static ssize_t read_cb(nghttp2_session *session, int32_t stream_id,
                       uint8_t *buf, size_t length, uint32_t *data_flags,
                       nghttp2_data_source *source, void *user_data)
{
    struct grpc_call *c = source->ptr;
    size_t avail = c->out_len - c->out_off;
    size_t n = avail < length ? avail : length;
    (void)user_data;

    if (n > 0) {
        memcpy(buf, c->out + c->out_off, n);
        c->out_off += n;
        if (c->out_off == c->out_len) {
            c->out_off = c->out_len = 0;
        }
    }
    if (c->out_len == 0) {
        if (!c->final_set) {
            if (n > 0) {
                return (ssize_t)n;
            }
            c->data_deferred = 1;
            return NGHTTP2_ERR_DEFERRED;
        }
        nghttp2_nv nv[GRPC__NV_MAX];
        size_t nnv = trailers_nv(c, nv);
        *data_flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
        if (nghttp2_submit_trailer(session, stream_id, nv, nnv) != 0) {
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* resets stream */
        }
    }
    return (ssize_t)n;
}

static int submit_headers(struct grpc_call *c)
{
    nghttp2_nv nv[] = {
        NV(":status", "200", 3),
        NV("content-type", content_type, sizeof content_type - 1),
    };
    nghttp2_data_provider prd;
    prd.source.ptr = c;
    prd.read_callback = read_cb;
    int rv = nghttp2_submit_response(c->conn->session, c->stream_id, nv,
                                     sizeof nv / sizeof nv[0], &prd);
    if (rv != 0) {
        return rv == NGHTTP2_ERR_NOMEM ? WERR_NOMEM : WERR_PROTO;
    }
    c->headers_sent = 1;
    return 0;
}

static void resume(struct grpc_call *c)
{
    if (c->data_deferred) {
        c->data_deferred = 0;
        (void)nghttp2_session_resume_data(c->conn->session, c->stream_id);
    }
    grpc__conn_kick(c->conn);
}

/* Pack msg behind a 5-byte prefix at the tail of the out queue. */
static int queue_msg(struct grpc_call *c, const ProtobufCMessage *msg,
                     int enforce_out_max)
{
    size_t size = protobuf_c_message_get_packed_size(msg);
    if (size > c->conn->max_msg || size > UINT32_MAX) {
        return WERR_LIMIT;
    }
    size_t pending = c->out_len - c->out_off;
    /* One message is always accepted into an empty queue, so a message
     * between GRPC_STREAM_OUT_MAX and max_msg can still be sent. */
    if (enforce_out_max && pending > 0 &&
        pending + GRPC_FRAME_HDR_LEN + size > GRPC_STREAM_OUT_MAX) {
        return WERR_BUSY;
    }
    if (c->out_off > 0) {
        memmove(c->out, c->out + c->out_off, pending);
        c->out_off = 0;
        c->out_len = pending;
    }
    size_t need = pending + GRPC_FRAME_HDR_LEN + size;
    if (need > c->out_cap) {
        /* Geometric growth: many small streamed messages must not cost a
         * copy of the whole queue each. Never past the bound that let this
         * message in (GRPC_STREAM_OUT_MAX, or one message of max_msg). */
        size_t cap = c->out_cap ? c->out_cap * 2 : 1024;
        while (cap < need) {
            cap *= 2;
        }
        size_t bound = need > GRPC_STREAM_OUT_MAX ? need : GRPC_STREAM_OUT_MAX;
        if (cap > bound) {
            cap = bound;
        }
        uint8_t *nb = realloc(c->out, cap);
        if (nb == NULL) {
            return WERR_NOMEM;
        }
        c->out = nb;
        c->out_cap = cap;
    }
    grpc_frame_hdr_encode(c->out + c->out_len, 0, (uint32_t)size);
    (void)protobuf_c_message_pack(msg, c->out + c->out_len + GRPC_FRAME_HDR_LEN);
    c->out_len = need;
    return 0;
}

int grpc__call_end(struct grpc_call *c, int status, const char *message,
                   int discard)
{
    if (c->state == GRPC__CALL_CLOSING || c->final_set) {
        return WERR_INVALID;
    }
    c->state = GRPC__CALL_CLOSING;
    c->cancel_cb = NULL;
    if (status < 0 || status > GRPC_STATUS_UNAUTHENTICATED) {
        status = GRPC_STATUS_UNKNOWN;
    }
    c->final_set = 1;
    c->final_status = status;
    snprintf(c->status_str, sizeof c->status_str, "%d", status);
    c->final_msg[0] = '\0';
    if (message != NULL) {
        size_t len = strnlen(message, GRPC_MESSAGE_MAX);
        grpc_pct_encode(message, len, c->final_msg, sizeof c->final_msg);
    }
    if (discard) {
        c->out_off = c->out_len = 0;
    }
    if (c->headers_sent) {
        resume(c);
        return 0;
    }
    /* Trailers-Only: one HEADERS frame with END_STREAM. */
    nghttp2_nv nv[GRPC__NV_MAX + 2];
    nv[0] = NV(":status", "200", 3);
    nv[1] = NV("content-type", content_type, sizeof content_type - 1);
    size_t n = 2 + trailers_nv(c, nv + 2);
    c->headers_sent = 1;
    int rv = nghttp2_submit_response(c->conn->session, c->stream_id, nv, n,
                                     NULL);
    grpc__conn_kick(c->conn);
    if (rv != 0) {
        return rv == NGHTTP2_ERR_NOMEM ? WERR_NOMEM : WERR_PROTO;
    }
    return 0;
}

int grpc__call_endf(struct grpc_call *c, int status, const char *fmt, ...)
{
    char msg[GRPC_MESSAGE_MAX + 1];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return grpc__call_end(c, status, msg, 0);
}

int grpc__call_http_error(struct grpc_call *c, const char *http_status)
{
    nghttp2_nv nv[] = {
        NV(":status", http_status, strlen(http_status)),
        NV("content-type", "text/plain", 10),
    };
    c->state = GRPC__CALL_CLOSING;
    c->headers_sent = 1;
    c->final_set = 1;
    c->http_refused = 1;
    int rv = nghttp2_submit_response(c->conn->session, c->stream_id, nv,
                                     sizeof nv / sizeof nv[0], NULL);
    grpc__conn_kick(c->conn);
    return rv == 0 ? 0 : WERR_PROTO;
}

/* ---- handler API -------------------------------------------------------- */
int grpc_call_reply(struct grpc_call *c, const ProtobufCMessage *msg)
{
    if (c->state != GRPC__CALL_HANDLER || c->method->server_streaming) {
        return WERR_INVALID;
    }
    int rv = queue_msg(c, msg, 0);
    if (rv != 0) {
        grpc__call_endf(c, GRPC_STATUS_RESOURCE_EXHAUSTED,
                        "response message of %zu bytes exceeds the limit",
                        protobuf_c_message_get_packed_size(msg));
        return rv;
    }
    rv = submit_headers(c);
    if (rv != 0) {
        /* Could not even queue HEADERS: reset so the client is not left
         * waiting; the call ends as promised. */
        c->state = GRPC__CALL_CLOSING;
        (void)nghttp2_submit_rst_stream(c->conn->session, NGHTTP2_FLAG_NONE,
                                        c->stream_id, NGHTTP2_INTERNAL_ERROR);
        grpc__conn_kick(c->conn);
        return rv;
    }
    return grpc__call_end(c, GRPC_STATUS_OK, NULL, 0);
}

int grpc_call_send(struct grpc_call *c, const ProtobufCMessage *msg)
{
    if (c->state != GRPC__CALL_HANDLER || !c->method->server_streaming) {
        return WERR_INVALID;
    }
    int rv = queue_msg(c, msg, 1);
    if (rv != 0) {
        return rv;
    }
    if (!c->headers_sent) {
        return submit_headers(c);
    }
    resume(c);
    return 0;
}

int grpc_call_finish(struct grpc_call *c, int status, const char *message)
{
    if (c->state != GRPC__CALL_HANDLER) {
        return WERR_INVALID;
    }
    return grpc__call_end(c, status, message, 0);
}

int grpc_call_fail(struct grpc_call *c, int status, const char *fmt, ...)
{
    char msg[GRPC_MESSAGE_MAX + 1];
    va_list ap;

    if (c->state != GRPC__CALL_HANDLER) {
        return WERR_INVALID;
    }
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return grpc__call_end(c, status, msg, 0);
}

int grpc_call_fail_err(struct grpc_call *c, const struct werr *e)
{
    if (c->state != GRPC__CALL_HANDLER) {
        return WERR_INVALID;
    }
    return grpc__call_end(c, werr_grpc_status(e->code), e->msg, 0);
}
