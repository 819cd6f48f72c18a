#include "resp.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* HTTP/2 error codes, RFC 9113 §7 (numbers, so this file needs no nghttp2). */
#define H2_REFUSED_STREAM 0x7u
#define H2_CANCEL 0x8u
#define H2_ENHANCE_YOUR_CALM 0xbu
#define H2_INADEQUATE_SECURITY 0xcu

void cli_resp_init(struct cli_resp *r, size_t max_msg)
{
    memset(r, 0, sizeof *r);
    grpc_frame_dec_init(&r->dec, max_msg ? max_msg : CLI_RESP_MAX_MSG_DEFAULT);
    r->grpc_status_raw = -1;
    r->status = GRPC_STATUS_UNKNOWN;
    r->status_msg = r->message;
}

void cli_resp_set_stream(struct cli_resp *r, cli_resp_msg_cb cb, void *user)
{
    r->msg_cb = cb;
    r->msg_user = user;
}

void cli_resp_stop(struct cli_resp *r)
{
    r->stopped = 1;
}

void cli_resp_close(struct cli_resp *r)
{
    grpc_frame_dec_close(&r->dec);
    free(r->payload);
    r->payload = NULL;
    r->payload_len = 0;
}

static void fail_local(struct cli_resp *r, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void fail_local(struct cli_resp *r, int status, const char *fmt, ...)
{
    if (r->local_status != 0) {
        return; /* the first error is the one worth reporting */
    }
    va_list ap;
    r->local_status = status;
    va_start(ap, fmt);
    vsnprintf(r->local_msg, sizeof r->local_msg, fmt, ap);
    va_end(ap);
}

static int name_is(const char *name, size_t nlen, const char *want)
{
    return strlen(want) == nlen && memcmp(name, want, nlen) == 0;
}

/* Parse a non-negative decimal of at most 9 digits; -1 otherwise. */
static int parse_small_uint(const char *v, size_t len)
{
    if (len == 0 || len > 9) {
        return -1;
    }
    int n = 0;
    for (size_t i = 0; i < len; i++) {
        if (v[i] < '0' || v[i] > '9') {
            return -1;
        }
        n = n * 10 + (v[i] - '0');
    }
    return n;
}

void cli_resp_on_header(struct cli_resp *r, const char *name, size_t nlen,
                        const char *value, size_t vlen, int trailer)
{
    if (r->closed) {
        return;
    }
    if (name_is(name, nlen, ":status")) {
        if (!trailer) {
            int s = parse_small_uint(value, vlen);
            r->http_status = s < 0 ? 0 : s;
            if (s < 0) {
                fail_local(r, GRPC_STATUS_INTERNAL, "malformed :status");
            }
        }
    } else if (name_is(name, nlen, "content-type")) {
        static const char ct[] = "application/grpc";
        const size_t ctlen = sizeof ct - 1;
        r->content_type_seen = 1;
        /* PROTOCOL-HTTP2: "application/grpc" [("+proto" / "+json" / {custom})] */
        r->content_type_ok = vlen >= ctlen && memcmp(value, ct, ctlen) == 0 &&
                             (vlen == ctlen || value[ctlen] == '+' ||
                              value[ctlen] == ';');
    } else if (name_is(name, nlen, "grpc-status")) {
        r->has_grpc_status = 1;
        r->grpc_status_raw = parse_small_uint(value, vlen);
    } else if (name_is(name, nlen, "grpc-message")) {
        /* grpc_pct_decode NUL-terminates and truncates at cap. */
        grpc_pct_decode(value, vlen, r->message, sizeof r->message);
    } else if (name_is(name, nlen, "warden-leader")) {
        size_t n = vlen < CLI_RESP_LEADER_MAX ? vlen : CLI_RESP_LEADER_MAX;
        memcpy(r->leader, value, n);
        r->leader[n] = '\0';
    } else if (name_is(name, nlen, "warden-outcome")) {
        r->outcome_unknown = vlen == 7 && memcmp(value, "unknown", 7) == 0;
    } else if (name_is(name, nlen, "warden-leader-id")) {
        /* Display only; a malformed id is ignored, not an error. */
        uint64_t id = 0;
        int ok = vlen > 0 && vlen <= CLI_RESP_LEADER_ID_DIGITS;
        for (size_t i = 0; ok && i < vlen; i++) {
            ok = value[i] >= '0' && value[i] <= '9';
            id = id * 10 + (uint64_t)(value[i] - '0');
        }
        r->leader_id = ok && id <= UINT32_MAX ? (uint32_t)id : 0;
    }
}

int cli_resp_on_data(struct cli_resp *r, const uint8_t *data, size_t len)
{
    if (r->stopped && r->local_status == 0) {
        return 0; /* DATA in flight when we reset the stream: ignore it */
    }
    if (r->closed || r->local_status != 0) {
        return WERR_PROTO;
    }
    while (len > 0) {
        size_t used = 0;
        int rc = grpc_frame_dec_feed(&r->dec, data, len, &used);
        if (rc == WERR_LIMIT) {
            fail_local(r, GRPC_STATUS_RESOURCE_EXHAUSTED,
                       "response message larger than %zu bytes",
                       r->dec.max_msg);
            return WERR_LIMIT;
        }
        if (rc < 0) {
            fail_local(r, GRPC_STATUS_RESOURCE_EXHAUSTED,
                       "out of memory receiving response");
            return rc;
        }
        data += used;
        len -= used;
        if (rc == 1) {
            uint8_t *msg = NULL;
            size_t mlen = 0;
            int compressed = 0;
            grpc_frame_dec_take(&r->dec, &msg, &mlen, &compressed);
            r->n_msgs++;
            if (compressed) {
                /* We send no grpc-accept-encoding, so the server may not
                 * compress (PROTOCOL-HTTP2: Message-Encoding). */
                free(msg);
                fail_local(r, GRPC_STATUS_INTERNAL,
                           "compressed response message, but no encoding was "
                           "negotiated");
                return WERR_PROTO;
            }
            if (r->msg_cb != NULL) {
                int stop = r->msg_cb(r->msg_user, msg, mlen);
                free(msg);
                if (stop != 0) {
                    r->stopped = 1;
                    return WERR_CANCELLED;
                }
                continue;
            }
            if (r->n_msgs > 1) {
                free(msg);
                fail_local(r, GRPC_STATUS_INTERNAL,
                           "more than one message in a unary response");
                return WERR_PROTO;
            }
            r->payload = msg;
            r->payload_len = mlen;
        } else if (used == 0) {
            /* Decoder made no progress without asking for more: defend
             * against an infinite loop on a decoder bug. */
            fail_local(r, GRPC_STATUS_INTERNAL, "response framing stalled");
            return WERR_INTERNAL;
        }
    }
    return 0;
}

int cli_http_to_grpc_status(int http_status)
{
    switch (http_status) {
    case 400:
        return GRPC_STATUS_INTERNAL;
    case 401:
        return GRPC_STATUS_UNAUTHENTICATED;
    case 403:
        return GRPC_STATUS_PERMISSION_DENIED;
    case 404:
        return GRPC_STATUS_UNIMPLEMENTED;
    case 429:
    case 502:
    case 503:
    case 504:
        return GRPC_STATUS_UNAVAILABLE;
    default:
        return GRPC_STATUS_UNKNOWN;
    }
}

int cli_h2_error_to_grpc_status(uint32_t h2_error)
{
    switch (h2_error) {
    case H2_REFUSED_STREAM:
        return GRPC_STATUS_UNAVAILABLE;
    case H2_CANCEL:
        return GRPC_STATUS_CANCELLED;
    case H2_ENHANCE_YOUR_CALM:
        return GRPC_STATUS_RESOURCE_EXHAUSTED;
    case H2_INADEQUATE_SECURITY:
        return GRPC_STATUS_PERMISSION_DENIED;
    default:
        return GRPC_STATUS_INTERNAL;
    }
}

static void set_result(struct cli_resp *r, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_result(struct cli_resp *r, int status, const char *fmt, ...)
{
    va_list ap;
    r->status = status;
    va_start(ap, fmt);
    vsnprintf(r->local_msg, sizeof r->local_msg, fmt, ap);
    va_end(ap);
    r->status_msg = r->local_msg;
}

void cli_resp_on_close(struct cli_resp *r, uint32_t h2_error)
{
    if (r->closed) {
        return;
    }
    r->closed = 1;
    r->h2_error = h2_error;
    r->status_msg = r->message;

    if (r->local_status != 0) {
        r->status = r->local_status;
        r->status_msg = r->local_msg;
    } else if (r->stopped) {
        /* We reset the stream on purpose; what came before it was fine. */
        r->status = GRPC_STATUS_OK;
        r->local_msg[0] = '\0';
        r->status_msg = r->local_msg;
        return;
    } else if (r->has_grpc_status) {
        if (r->grpc_status_raw < 0 || r->grpc_status_raw > 16) {
            set_result(r, GRPC_STATUS_UNKNOWN, "malformed grpc-status");
        } else {
            r->status = r->grpc_status_raw;
        }
    } else if (h2_error != 0) {
        set_result(r, cli_h2_error_to_grpc_status(h2_error),
                   "stream reset by server (HTTP/2 error 0x%x)", h2_error);
    } else if (r->http_status != 200) {
        if (r->http_status == 0) {
            set_result(r, GRPC_STATUS_INTERNAL, "response without :status");
        } else {
            set_result(r, cli_http_to_grpc_status(r->http_status),
                       "HTTP status %d", r->http_status);
        }
    } else {
        set_result(r, GRPC_STATUS_INTERNAL, "response without grpc-status");
    }

    if (r->status != GRPC_STATUS_OK) {
        return;
    }
    /* OK must be a well-formed gRPC response carrying one whole message. */
    if (r->http_status != 200) {
        set_result(r, cli_http_to_grpc_status(r->http_status),
                   "HTTP status %d", r->http_status);
    } else if (!r->content_type_ok) {
        set_result(r, GRPC_STATUS_INTERNAL, "%s content-type",
                   r->content_type_seen ? "unexpected" : "missing");
    } else if (grpc_frame_dec_partial(&r->dec)) {
        set_result(r, GRPC_STATUS_INTERNAL, "truncated response message");
    } else if (r->msg_cb == NULL && r->n_msgs != 1) {
        set_result(r, GRPC_STATUS_INTERNAL,
                   "no response message with status OK");
    }
}

enum cli_delivery cli_resp_delivery(const struct cli_resp *r)
{
    if (r->has_grpc_status) {
        return r->outcome_unknown ? CLI_DELIVERY_UNKNOWN : CLI_DELIVERY_ANSWERED;
    }
    if (r->closed && r->h2_error == H2_REFUSED_STREAM) {
        return CLI_DELIVERY_REFUSED;
    }
    return CLI_DELIVERY_UNKNOWN;
}

void cli_resp_take_payload(struct cli_resp *r, uint8_t **data, size_t *len)
{
    *data = r->payload;
    *len = r->payload_len;
    r->payload = NULL;
    r->payload_len = 0;
}
