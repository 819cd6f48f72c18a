/* conn.c - one server-side HTTP/2 connection carrying gRPC calls.
 *
 * nghttp2 in memory-buffer mode: grpc_conn_recv() feeds bytes to
 * nghttp2_session_mem_recv(), grpc_conn_send() drains
 * nghttp2_session_mem_send(). Per-stream state (struct grpc_call) is born
 * in on_begin_headers_cb and dies in on_stream_close_cb. */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

/* ---- HTTP/2 flood and resource limits ------------------------------------
 * Each constant names the attack it stops. */

/* Queued SETTINGS-ACK and PING-ACK frames: a peer that floods PING or
 * SETTINGS while never reading makes us queue one ACK each (CVE-2019-9512
 * "Ping Flood", CVE-2019-9515 "Settings Flood"). Past this, the session is
 * torn down. */
#define H2_MAX_OUTBOUND_ACK 1000
/* Entries accepted in one SETTINGS frame: there are only ~7 defined
 * settings; thousands of entries per frame just burn CPU. */
#define H2_MAX_SETTINGS 32
/* Our HPACK encoder's dynamic table, whatever the peer advertises: a peer
 * announcing a 4 GiB SETTINGS_HEADER_TABLE_SIZE must not make us keep one. */
#define H2_MAX_DEFLATE_TABLE 4096
/* Largest header block we send. Our biggest is Trailers-Only with a 1.5 KiB
 * grpc-message and four custom trailers; anything larger is a bug. */
#define H2_MAX_SEND_HEADER_BLOCK (16u << 10)
/* RST_STREAM token bucket: "Rapid Reset" (CVE-2023-44487) opens and resets
 * streams in a loop so the server does handler work for free. 1000 resets
 * in a burst, then 33 per second, else GOAWAY. */
#define H2_RST_BURST 1000
#define H2_RST_RATE 33
/* CONTINUATION frames after one HEADERS: a never-ending header block held
 * the server in header parsing (CVE-2024-27316 family). */
#define H2_MAX_CONTINUATIONS 8

/* PROTOCOL-HTTP2: Content-Type → "application/grpc" [("+proto" / "+json" /
 * {custom})]. */
static const char grpc_ctype[] = "application/grpc";

void grpc__conn_kick(struct grpc_conn *conn)
{
    /* Inside recv/send the transport is pumping anyway and will call
     * grpc_conn_send() before it sleeps. */
    if (conn->in_io == 0 && conn->wakeup != NULL &&
        nghttp2_session_want_write(conn->session)) {
        conn->wakeup(conn->wakeup_arg);
    }
}

static struct grpc_call *stream_call(nghttp2_session *s, int32_t sid)
{
    return nghttp2_session_get_stream_user_data(s, sid);
}

/* ---- request headers ---------------------------------------------------- */
static int begin_headers_cb(nghttp2_session *session,
                            const nghttp2_frame *frame, void *user_data)
{
    struct grpc_conn *conn = user_data;
    if (frame->hd.type != NGHTTP2_HEADERS ||
        frame->headers.cat != NGHTTP2_HCAT_REQUEST) {
        return 0;
    }
    struct grpc_call *call = grpc__call_new(conn, frame->hd.stream_id);
    if (call == NULL) {
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* RST this stream */
    }
    if (nghttp2_session_set_stream_user_data(session, frame->hd.stream_id,
                                             call) != 0) {
        grpc__call_free(call);
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    return 0;
}

static int str_eq(const uint8_t *a, size_t alen, const char *b)
{
    size_t blen = strlen(b);
    return alen == blen && memcmp(a, b, blen) == 0;
}

static void keep_metadata(struct grpc_call *call, const uint8_t *name,
                          size_t namelen, const uint8_t *value,
                          size_t valuelen)
{
    if (call->n_md >= GRPC_CALL_METADATA_MAX ||
        namelen > GRPC__MD_NAME_MAX || valuelen > GRPC_METADATA_VALUE_MAX ||
        memchr(value, '\0', valuelen) != NULL) {
        return; /* documented in grpc.h: only small values, only a few */
    }
    memcpy(call->md_name[call->n_md], name, namelen);
    call->md_name[call->n_md][namelen] = '\0';
    memcpy(call->md_val[call->n_md], value, valuelen);
    call->md_val[call->n_md][valuelen] = '\0';
    call->n_md++;
}

static int header_cb(nghttp2_session *session, const nghttp2_frame *frame,
                     const uint8_t *name, size_t namelen, const uint8_t *value,
                     size_t valuelen, uint8_t flags, void *user_data)
{
    struct grpc_conn *conn = user_data;
    struct grpc_call *call = stream_call(session, frame->hd.stream_id);
    (void)flags;

    if (call == NULL || frame->hd.type != NGHTTP2_HEADERS ||
        frame->headers.cat != NGHTTP2_HCAT_REQUEST ||
        call->state != GRPC__CALL_HEADERS) {
        return 0; /* client trailers carry nothing we use */
    }
    /* RFC 9113 §6.5.2: list size = sum of name + value + 32 per field. We
     * advertised SETTINGS_MAX_HEADER_LIST_SIZE; enforce it. */
    call->header_bytes += namelen + valuelen + 32;
    if (call->header_bytes > conn->max_header_list) {
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    if (str_eq(name, namelen, ":method")) {
        call->method_post = str_eq(value, valuelen, "POST");
    } else if (str_eq(name, namelen, ":path")) {
        if (valuelen >= GRPC_PATH_MAX) {
            call->path_bad = 1;
            valuelen = GRPC_PATH_MAX - 1; /* kept for the error message */
        }
        memcpy(call->path, value, valuelen);
        call->path[valuelen] = '\0';
    } else if (str_eq(name, namelen, "content-type")) {
        size_t pl = sizeof grpc_ctype - 1;
        /* "application/grpc" alone, or followed by '+' or ';' params. */
        call->ctype_ok = valuelen >= pl && memcmp(value, grpc_ctype, pl) == 0 &&
                         (valuelen == pl || value[pl] == '+' ||
                          value[pl] == ';');
    } else if (str_eq(name, namelen, "grpc-timeout")) {
        call->timeout_seen = 1;
        call->timeout_bad = grpc_timeout_parse((const char *)value, valuelen,
                                               &call->timeout_ms) != 0;
    } else if (str_eq(name, namelen, "grpc-encoding")) {
        call->encoding_identity = str_eq(value, valuelen, "identity");
        size_t n = valuelen < sizeof call->encoding - 1
                       ? valuelen
                       : sizeof call->encoding - 1;
        memcpy(call->encoding, value, n);
        call->encoding[n] = '\0';
    } else if (namelen > 0 && name[0] != ':' && !str_eq(name, namelen, "te")) {
        keep_metadata(call, name, namelen, value, valuelen);
    }
    return 0;
}

/* All request headers are in: refuse early, in the order of the
 * cheapest-and-most-general check first, and before touching the body. */
static void headers_done(struct grpc_conn *conn, struct grpc_call *call)
{
    call->headers_complete = 1;
    if (!call->method_post) {
        /* PROTOCOL-HTTP2: Method → ":method POST". */
        grpc__call_http_error(call, "405");
        return;
    }
    if (!call->ctype_ok) {
        /* PROTOCOL-HTTP2: "If Content-Type does not begin with
         * application/grpc, gRPC servers SHOULD respond with HTTP status of
         * 415 (Unsupported Media Type)". */
        grpc__call_http_error(call, "415");
        return;
    }
    call->method = call->path_bad
                       ? NULL
                       : grpc_router_find(conn->router, call->path,
                                          strlen(call->path));
    if (call->method == NULL) {
        grpc__call_endf(call, GRPC_STATUS_UNIMPLEMENTED, "unknown method %s%s",
                        call->path, call->path_bad ? "..." : "");
        return;
    }
    /* Authorization before a single body byte is decoded. */
    if ((call->method->roles & conn->peer.role) == 0) {
        if (conn->on_denied != NULL) {
            conn->on_denied(conn->on_denied_arg, &conn->peer, call->path);
        }
        grpc__call_endf(call, GRPC_STATUS_PERMISSION_DENIED,
                        "role %s may not call %s",
                        principal_role_name(conn->peer.role), call->path);
        return;
    }
    /* A malformed grpc-timeout is the client's error, not ours: grpc-go
     * answers INTERNAL, we choose INVALID_ARGUMENT since nothing inside the
     * server went wrong (issue 2: malformed framing → INVALID_ARGUMENT). */
    if (call->timeout_bad) {
        grpc__call_endf(call, GRPC_STATUS_INVALID_ARGUMENT,
                        "malformed grpc-timeout");
        return;
    }
    if (call->timeout_seen) {
        uint64_t d = conn->now_ms + call->timeout_ms;
        /* 0 means "no deadline"; the parser saturates at UINT64_MAX/2, so
         * this sum cannot wrap for any sane clock. */
        call->deadline = d == 0 ? 1 : d;
        if (call->conn->next_deadline == 0 || call->deadline < call->conn->next_deadline) {
            call->conn->next_deadline = call->deadline;
        }
    }
    /* Admission last: only calls that could run take a rate-limit token
     * or an in-flight slot, and before any body byte is buffered. */
    if (conn->on_admit != NULL) {
        char msg[GRPC_MESSAGE_MAX + 1];
        msg[0] = '\0';
        int st = conn->on_admit(conn->on_admit_arg, &conn->peer, call->path,
                                msg, sizeof msg);
        if (st != GRPC_STATUS_OK) {
            grpc__call_end(call, st, msg[0] ? msg : "request refused", 0);
            return;
        }
        call->admitted = 1;
    }
    call->state = GRPC__CALL_BODY;
}

/* ---- request body ------------------------------------------------------- */
/* Bring conn->rx_buffered up to date with this call's decoder buffer. */
static void rx_account(struct grpc_call *call)
{
    struct grpc_conn *conn = call->conn;

    conn->rx_buffered -= call->rx_counted;
    call->rx_counted = call->dec.cap;
    conn->rx_buffered += call->rx_counted;
}

static void take_message(struct grpc_call *call)
{
    uint8_t *msg;
    size_t len;
    int compressed;

    grpc_frame_dec_take(&call->dec, &msg, &len, &compressed);
    rx_account(call); /* the message is the call's now, not the decoder's */
    call->nmsgs++;
    if (call->nmsgs > 1) {
        free(msg);
        grpc__call_endf(call, GRPC_STATUS_INVALID_ARGUMENT,
                        "%s takes exactly one request message, got more",
                        call->path);
        return;
    }
    if (compressed) {
        free(msg);
        if (call->encoding_identity) {
            /* PROTOCOL-HTTP2: Compressed-Flag 1 means "compressed using the
             * mechanism declared by the Message-Encoding header"; with none
             * declared the message cannot be read. INTERNAL, as grpc-go and
             * grpc-core answer. */
            grpc__call_endf(call, GRPC_STATUS_INTERNAL,
                            "compressed flag set but grpc-encoding is %s",
                            call->encoding[0] ? call->encoding : "absent");
        } else {
            /* PROTOCOL-HTTP2 / compression.md: unsupported encoding →
             * UNIMPLEMENTED and tell the client what we accept. */
            call->accept_encoding = 1;
            grpc__call_endf(call, GRPC_STATUS_UNIMPLEMENTED,
                            "grpc-encoding %s is not supported",
                            call->encoding);
        }
        return;
    }
    call->msg = msg;
    call->msg_len = len;
}

static int data_chunk_cb(nghttp2_session *session, uint8_t flags,
                         int32_t stream_id, const uint8_t *data, size_t len,
                         void *user_data)
{
    struct grpc_call *call = stream_call(session, stream_id);
    (void)flags;
    (void)user_data;

    while (call != NULL && call->state == GRPC__CALL_BODY && len > 0) {
        size_t used;
        int rv = grpc_frame_dec_feed(&call->dec, data, len, &used);
        data += used;
        len -= used;
        rx_account(call);
        if (rv == 0 && call->conn->rx_buffered > call->conn->rx_budget) {
            size_t over = call->conn->rx_buffered;
            grpc_frame_dec_close(&call->dec);
            rx_account(call);
            grpc__call_endf(call, GRPC_STATUS_RESOURCE_EXHAUSTED,
                            "this connection holds %zu bytes of partly received "
                            "requests, limit %zu; send fewer large requests at "
                            "once",
                            over, call->conn->rx_budget);
        } else if (rv == WERR_LIMIT) {
            const uint8_t *h = call->dec.hdr;
            unsigned long n = (unsigned long)h[1] << 24 |
                              (unsigned long)h[2] << 16 |
                              (unsigned long)h[3] << 8 | h[4];
            grpc__call_endf(call, GRPC_STATUS_RESOURCE_EXHAUSTED,
                            "request message of %lu bytes exceeds the limit "
                            "of %zu",
                            n, call->conn->max_msg);
        } else if (rv < 0) {
            grpc__call_endf(call, GRPC_STATUS_RESOURCE_EXHAUSTED,
                            "out of memory receiving the request");
        } else if (rv == 1) {
            take_message(call);
        }
    }
    /* Bytes after a refusal are dropped; nghttp2 still credits the window. */
    return 0;
}

/* END_STREAM from the client: the request is complete. */
static void request_end(struct grpc_call *call)
{
    if (call->state != GRPC__CALL_BODY) {
        return;
    }
    if (grpc_frame_dec_partial(&call->dec)) {
        if (call->dec.hdr_have < GRPC_FRAME_HDR_LEN) {
            grpc__call_endf(call, GRPC_STATUS_INVALID_ARGUMENT,
                            "truncated message: stream ended after %zu of the "
                            "5 prefix bytes",
                            call->dec.hdr_have);
        } else {
            grpc__call_endf(call, GRPC_STATUS_INVALID_ARGUMENT,
                            "truncated message: stream ended after %zu of "
                            "%zu bytes",
                            call->dec.have, call->dec.need);
        }
        return;
    }
    if (call->nmsgs == 0) {
        grpc__call_endf(call, GRPC_STATUS_INVALID_ARGUMENT,
                        "%s takes exactly one request message, got none",
                        call->path);
        return;
    }
    const ProtobufCMessageDescriptor *desc = call->method->req_desc;
    static const uint8_t empty[1];
    call->req = protobuf_c_message_unpack(
        desc, NULL, call->msg_len, call->msg != NULL ? call->msg : empty);
    free(call->msg);
    call->msg = NULL;
    if (call->req == NULL) {
        grpc__call_endf(call, GRPC_STATUS_INVALID_ARGUMENT,
                        "malformed protobuf for %s", desc->name);
        return;
    }
    call->state = GRPC__CALL_HANDLER;
    call->method->handler(call, call->req, call->method->data);
}

static int frame_recv_cb(nghttp2_session *session, const nghttp2_frame *frame,
                         void *user_data)
{
    struct grpc_conn *conn = user_data;
    struct grpc_call *call;

    switch (frame->hd.type) {
    case NGHTTP2_HEADERS:
    case NGHTTP2_DATA:
        call = stream_call(session, frame->hd.stream_id);
        if (call == NULL) {
            return 0;
        }
        if (frame->hd.type == NGHTTP2_HEADERS &&
            frame->headers.cat == NGHTTP2_HCAT_REQUEST &&
            call->state == GRPC__CALL_HEADERS) {
            headers_done(conn, call);
        }
        if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) {
            request_end(call);
        }
        break;
    default:
        break;
    }
    return 0;
}

/* ---- response side ------------------------------------------------------ */
static int frame_send_cb(nghttp2_session *session, const nghttp2_frame *frame,
                         void *user_data)
{
    struct grpc_conn *conn = user_data;

    if (frame->hd.type == NGHTTP2_GOAWAY) {
        if (conn->shutdown_state == 1) {
            /* The notice (last id 2^31-1) is out; now the real GOAWAY with
             * the last stream we processed. Streams above it are refused and
             * safe for the client to retry elsewhere. */
            conn->shutdown_state = 2;
            (void)nghttp2_submit_goaway(
                session, NGHTTP2_FLAG_NONE,
                nghttp2_session_get_last_proc_stream_id(session),
                NGHTTP2_NO_ERROR, NULL, 0);
        }
        return 0;
    }
    if ((frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA) ||
        !(frame->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
        return 0;
    }
    struct grpc_call *call = stream_call(session, frame->hd.stream_id);
    if (call == NULL) {
        return 0;
    }
    if (call->rst_after) {
        /* Deadline: DEADLINE_EXCEEDED then RST_STREAM(CANCEL), as grpc-core
         * does, so the client stops sending the request body too. */
        (void)nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE,
                                        call->stream_id, call->rst_code);
    } else if (!nghttp2_session_get_stream_remote_close(session,
                                                        call->stream_id)) {
        /* RFC 9113 §8.1: a complete response before the request is done
         * may be followed by RST_STREAM(NO_ERROR), so the client stops
         * sending (e.g. the rest of an oversize message). */
        (void)nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE,
                                        call->stream_id, NGHTTP2_NO_ERROR);
    }
    return 0;
}

static int stream_close_cb(nghttp2_session *session, int32_t stream_id,
                           uint32_t error_code, void *user_data)
{
    struct grpc_call *call = stream_call(session, stream_id);
    (void)error_code;
    (void)user_data;

    if (call == NULL) {
        return 0;
    }
    (void)nghttp2_session_set_stream_user_data(session, stream_id, NULL);
    grpc__call_cancel(call); /* only if the handler still owns it */
    grpc__call_free(call);
    return 0;
}

/* ---- public API --------------------------------------------------------- */
int grpc_conn_new(struct grpc_conn **out, const struct grpc_router *router,
                  const struct grpc_conn_config *cfg,
                  const struct principal *peer, struct werr *e)
{
    static const struct grpc_conn_config defaults;
    nghttp2_session_callbacks *cbs = NULL;
    nghttp2_option *opt = NULL;
    int rv;

    if (cfg == NULL) {
        cfg = &defaults;
    }
    struct grpc_conn *conn = calloc(1, sizeof *conn);
    if (conn == NULL) {
        return werr_set(e, WERR_NOMEM, "grpc conn: out of memory");
    }
    conn->router = router;
    conn->peer = *peer;
    conn->max_msg = cfg->max_msg ? cfg->max_msg : GRPC_MAX_MSG_DEFAULT;
    conn->rx_budget = cfg->max_conn_buffered ? cfg->max_conn_buffered
                                             : GRPC_CONN_RX_BUFFER_DEFAULT;
    if (conn->rx_budget < conn->max_msg)
        conn->rx_budget = conn->max_msg;
    conn->max_header_list =
        cfg->max_header_list ? cfg->max_header_list : GRPC_MAX_HEADER_LIST_DEFAULT;
    conn->wakeup = cfg->wakeup;
    conn->wakeup_arg = cfg->wakeup_arg;
    conn->on_denied = cfg->on_denied;
    conn->on_denied_arg = cfg->on_denied_arg;
    conn->on_admit = cfg->on_admit;
    conn->on_admit_arg = cfg->on_admit_arg;
    conn->on_call_done = cfg->on_call_done;
    conn->on_call_done_arg = cfg->on_call_done_arg;
    uint32_t max_streams =
        cfg->max_streams ? cfg->max_streams : GRPC_MAX_STREAMS_DEFAULT;
    uint32_t stream_window =
        cfg->stream_window ? cfg->stream_window : GRPC_STREAM_WINDOW_DEFAULT;
    uint32_t conn_window =
        cfg->conn_window ? cfg->conn_window : GRPC_CONN_WINDOW_DEFAULT;
    if (stream_window > NGHTTP2_MAX_WINDOW_SIZE ||
        conn_window > NGHTTP2_MAX_WINDOW_SIZE) {
        rv = werr_set(e, WERR_CONFIG, "grpc conn: window above 2^31-1");
        goto err_free_conn;
    }

    if (nghttp2_session_callbacks_new(&cbs) != 0) {
        rv = werr_set(e, WERR_NOMEM, "grpc conn: out of memory");
        goto err_free_conn;
    }
    nghttp2_session_callbacks_set_on_begin_headers_callback(cbs,
                                                            begin_headers_cb);
    nghttp2_session_callbacks_set_on_header_callback(cbs, header_cb);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, frame_recv_cb);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs,
                                                              data_chunk_cb);
    nghttp2_session_callbacks_set_on_frame_send_callback(cbs, frame_send_cb);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs,
                                                           stream_close_cb);

    if (nghttp2_option_new(&opt) != 0) {
        rv = werr_set(e, WERR_NOMEM, "grpc conn: out of memory");
        goto err_del_callbacks;
    }
    nghttp2_option_set_max_outbound_ack(opt, H2_MAX_OUTBOUND_ACK);
    nghttp2_option_set_max_settings(opt, H2_MAX_SETTINGS);
    nghttp2_option_set_max_deflate_dynamic_table_size(opt,
                                                      H2_MAX_DEFLATE_TABLE);
    nghttp2_option_set_max_send_header_block_length(opt,
                                                    H2_MAX_SEND_HEADER_BLOCK);
    nghttp2_option_set_stream_reset_rate_limit(opt, H2_RST_BURST, H2_RST_RATE);
    nghttp2_option_set_max_continuations(opt, H2_MAX_CONTINUATIONS);
    /* We never use the RFC 7540 priority tree; don't keep closed streams
     * around for it (memory a reset loop could otherwise pin). */
    nghttp2_option_set_no_closed_streams(opt, 1);

    if (nghttp2_session_server_new2(&conn->session, cbs, conn, opt) != 0) {
        rv = werr_set(e, WERR_NOMEM, "grpc conn: nghttp2 session");
        goto err_del_option;
    }
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cbs);

    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, max_streams},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, conn->max_header_list},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, stream_window},
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
    };
    if (nghttp2_submit_settings(conn->session, NGHTTP2_FLAG_NONE, iv,
                                sizeof iv / sizeof iv[0]) != 0 ||
        nghttp2_session_set_local_window_size(conn->session, NGHTTP2_FLAG_NONE,
                                              0, (int32_t)conn_window) != 0) {
        rv = werr_set(e, WERR_INTERNAL, "grpc conn: submit settings");
        goto err_del_session;
    }
    *out = conn;
    return 0;

err_del_session:
    nghttp2_session_del(conn->session);
    free(conn);
    return rv;
err_del_option:
    nghttp2_option_del(opt);
err_del_callbacks:
    nghttp2_session_callbacks_del(cbs);
err_free_conn:
    free(conn);
    return rv;
}

static int h2_err(long rv)
{
    switch (rv) {
    case NGHTTP2_ERR_NOMEM:
        return WERR_NOMEM;
    case NGHTTP2_ERR_FLOODED:
        return WERR_LIMIT;
    case NGHTTP2_ERR_CALLBACK_FAILURE:
        return WERR_INTERNAL;
    default:
        return WERR_PROTO;
    }
}

int grpc_conn_recv(struct grpc_conn *c, const uint8_t *data, size_t len,
                   uint64_t now_ms)
{
    c->now_ms = now_ms;
    c->in_io++;
    ssize_t rv = nghttp2_session_mem_recv(c->session, data, len);
    c->in_io--;
    if (rv < 0) {
        return h2_err(rv);
    }
    return 0;
}

long grpc_conn_send(struct grpc_conn *c, const uint8_t **data)
{
    c->in_io++;
    ssize_t rv = nghttp2_session_mem_send(c->session, data);
    c->in_io--;
    if (rv < 0) {
        return h2_err(rv);
    }
    return (long)rv;
}

int grpc_conn_want_read(const struct grpc_conn *c)
{
    return nghttp2_session_want_read(c->session);
}

int grpc_conn_want_write(const struct grpc_conn *c)
{
    return nghttp2_session_want_write(c->session);
}

uint64_t grpc_conn_tick(struct grpc_conn *c, uint64_t now_ms)
{
    uint64_t earliest = 0;

    if (now_ms > c->now_ms) {
        c->now_ms = now_ms;
    }
    /* Walk the calls only when the earliest deadline we know of is due.
     * next_deadline is a lower bound (a call that ended keeps it until the
     * next walk), never above a live deadline: it is lowered whenever a
     * deadline is set. The transport ticks on every pump, and a walk per
     * pump was O(streams) for each message sent (7% of the leader's
     * samples with 100 watch streams per connection, bench scenario 7). */
    if (c->next_deadline == 0 || now_ms < c->next_deadline) {
        grpc__conn_kick(c);
        return c->next_deadline;
    }
    /* Cancel callbacks and fail() only queue frames; calls are freed in
     * stream_close_cb, never here, so walking the list is safe. */
    for (struct grpc_call *call = c->calls; call != NULL; call = call->next) {
        if ((call->state != GRPC__CALL_BODY &&
             call->state != GRPC__CALL_HANDLER) ||
            call->deadline == 0) {
            continue;
        }
        if (now_ms >= call->deadline) {
            grpc__call_cancel(call);      /* the handler lets go first */
            call->state = GRPC__CALL_BODY; /* let end() run once */
            call->rst_after = 1;
            call->rst_code = NGHTTP2_CANCEL;
            grpc__call_end(call, GRPC_STATUS_DEADLINE_EXCEEDED,
                           "deadline exceeded", 1);
        } else if (earliest == 0 || call->deadline < earliest) {
            earliest = call->deadline;
        }
    }
    c->next_deadline = earliest;
    grpc__conn_kick(c);
    return earliest;
}

void grpc_conn_shutdown(struct grpc_conn *c)
{
    if (c->shutdown_state != 0) {
        return;
    }
    /* Two-step GOAWAY (RFC 9113 §6.8): a notice first so the client stops
     * opening streams, then the final one with the last processed id. */
    if (nghttp2_submit_shutdown_notice(c->session) == 0) {
        c->shutdown_state = 1;
    } else {
        c->shutdown_state = 2;
        (void)nghttp2_submit_goaway(
            c->session, NGHTTP2_FLAG_NONE,
            nghttp2_session_get_last_proc_stream_id(c->session),
            NGHTTP2_NO_ERROR, NULL, 0);
    }
    grpc__conn_kick(c);
}

size_t grpc_conn_active_calls(const struct grpc_conn *c)
{
    size_t n = 0;
    for (const struct grpc_call *call = c->calls; call != NULL;
         call = call->next) {
        if (call->state != GRPC__CALL_CLOSING) {
            n++;
        }
    }
    return n;
}

void grpc_conn_free(struct grpc_conn *c)
{
    if (c == NULL) {
        return;
    }
    while (c->calls != NULL) {
        struct grpc_call *call = c->calls;
        (void)nghttp2_session_set_stream_user_data(c->session, call->stream_id,
                                                   NULL);
        grpc__call_cancel(call);
        grpc__call_free(call);
    }
    nghttp2_session_del(c->session);
    free(c);
}
