/* resp.h - the client side of one unary gRPC response, as a pure state
 * machine: header fields, DATA bytes and the stream's close go in, a gRPC
 * status, message and the single response payload come out.
 *
 * The transport (cli/client.c) forwards nghttp2 callbacks here; nothing in
 * this file knows about sockets, TLS or nghttp2 sessions, so the rules of
 * PROTOCOL-HTTP2 ("Responses") are unit-tested in tests/unit/test_cli_resp.c.
 *
 * Lifecycle: cli_resp_init → (on_header | on_data)* → on_close → read the
 * result → cli_resp_close. on_close is final: after it, status, message and
 * payload no longer change. */
#ifndef WARDEN_CLI_RESP_H
#define WARDEN_CLI_RESP_H

#include <stddef.h>
#include <stdint.h>

#include "../grpc/grpc.h"

/* Longest decoded grpc-message kept; longer ones are truncated. Bounds what a
 * server can make us print. */
#define CLI_RESP_MESSAGE_MAX 512
/* Longest warden-leader trailer kept (HOST:PORT of the Raft leader, for
 * following it; see cli/client.h). */
#define CLI_RESP_LEADER_MAX 256
/* Longest warden-leader-id value parsed (a Raft server id is a uint32,
 * at most 10 digits). */
#define CLI_RESP_LEADER_ID_DIGITS 10
/* Default bound on one response message (gRPC's own client default). */
#define CLI_RESP_MAX_MSG_DEFAULT GRPC_MAX_MSG_DEFAULT

/* Server streaming (cli_resp_set_stream): each complete message is handed
 * to the callback as it arrives, borrowed for the duration of the call.
 * Return 0 to go on, non-zero to stop: the caller then resets the stream
 * (CANCEL) and the call ends OK, since the caller chose to stop. */
typedef int (*cli_resp_msg_cb)(void *user, const uint8_t *msg, size_t len);

struct cli_resp {
    /* Inputs seen so far. */
    int http_status;          /* :status, 0 until seen */
    int content_type_ok;      /* content-type application/grpc[+...] seen */
    int content_type_seen;
    int has_grpc_status;
    int grpc_status_raw;      /* parsed grpc-status, or -1 when not a number */
    char message[CLI_RESP_MESSAGE_MAX + 1];   /* percent-decoded, NUL-term */
    char leader[CLI_RESP_LEADER_MAX + 1];     /* warden-leader, "" if none */
    uint32_t leader_id;       /* warden-leader-id; 0 if none or malformed */
    int outcome_unknown;      /* trailer warden-outcome: unknown */
    struct grpc_frame_dec dec;
    uint8_t *payload;         /* owned; the one message (malloc'd) */
    size_t payload_len;
    int n_msgs;               /* messages received (unary wants exactly 1) */
    int local_status;         /* non-zero: an error we detected (sticky) */
    cli_resp_msg_cb msg_cb;   /* streaming: per-message callback, or NULL */
    void *msg_user;
    int stopped;              /* streaming: we chose to end the stream */
    char local_msg[CLI_RESP_MESSAGE_MAX + 1];

    /* Result, set by cli_resp_on_close. */
    int closed;
    uint32_t h2_error;        /* on_close's h2_error */
    int status;               /* gRPC status code */
    const char *status_msg;   /* points at message or local_msg */
};

/* max_msg bounds one response message; 0 means CLI_RESP_MAX_MSG_DEFAULT. */
void cli_resp_init(struct cli_resp *r, size_t max_msg);
/* Switch r to server-streaming mode (before any DATA): messages go to cb
 * (any number of them, each bounded by max_msg), none is kept, and an OK
 * status no longer requires exactly one message. */
void cli_resp_set_stream(struct cli_resp *r, cli_resp_msg_cb cb, void *user);
/* Streaming: we end the stream ourselves (the callback asked to, or the
 * user pressed Ctrl-C); a close that follows our RST_STREAM is then OK,
 * not CANCELLED. */
void cli_resp_stop(struct cli_resp *r);
/* Frees the payload (unless taken) and the frame decoder. */
void cli_resp_close(struct cli_resp *r);

/* One header field. trailer is 0 for the first (response) header block,
 * 1 for the trailing block. Lowercase names, as HTTP/2 requires. A
 * Trailers-Only response carries grpc-status in the first block. */
void cli_resp_on_header(struct cli_resp *r, const char *name, size_t nlen,
                        const char *value, size_t vlen, int trailer);

/* DATA bytes. Returns 0, or a negative WERR code when the stream must be
 * reset (a message over the limit, a second message, malloc failure); the
 * error is remembered and becomes the call's status. */
int cli_resp_on_data(struct cli_resp *r, const uint8_t *data, size_t len);

/* The stream ended. h2_error is the RST_STREAM/GOAWAY error code from
 * nghttp2's on_stream_close (0 = NO_ERROR after END_STREAM). Computes
 * status and status_msg by these rules, first match wins:
 *   1. a local error (limit, malformed frame)      → that status;
 *   2. grpc-status present                         → it (non-numeric → UNKNOWN);
 *   3. h2_error != 0                               → mapped (REFUSED_STREAM →
 *      UNAVAILABLE, CANCEL → CANCELLED, ENHANCE_YOUR_CALM →
 *      RESOURCE_EXHAUSTED, INADEQUATE_SECURITY → PERMISSION_DENIED, else
 *      INTERNAL);
 *   4. :status not 200                             → gRPC's HTTP mapping
 *      (400 INTERNAL, 401 UNAUTHENTICATED, 403 PERMISSION_DENIED,
 *      404 UNIMPLEMENTED, 429/502/503/504 UNAVAILABLE, else UNKNOWN);
 *   5. no grpc-status                              → INTERNAL;
 * and an OK status must come with content-type application/grpc and exactly
 * one whole, uncompressed message (streaming: any number of them), else
 * INTERNAL. A stream we stopped (cli_resp_stop) with no local error ends
 * OK whatever the reset said. */
void cli_resp_on_close(struct cli_resp *r, uint32_t h2_error);

/* What a failed call tells about its request, for deciding whether a retry
 * can apply it twice (cli/follow.h). */
enum cli_delivery {
    /* No byte of the request left us (connect, TLS, or encoding failed). */
    CLI_DELIVERY_NOT_SENT = 0,
    /* The server refused the stream (RST_STREAM or GOAWAY REFUSED_STREAM):
     * "the stream was closed before any processing", RFC 9113 §8.7. */
    CLI_DELIVERY_REFUSED,
    /* The server answered with a grpc-status. */
    CLI_DELIVERY_ANSWERED,
    /* Sent, then the connection broke or the deadline passed without a
     * status: the server may or may not have acted on it. */
    CLI_DELIVERY_UNKNOWN,
};

/* After on_close: ANSWERED when a grpc-status arrived, REFUSED for a
 * REFUSED_STREAM reset without one, UNKNOWN otherwise, and also UNKNOWN
 * when the server itself says `warden-outcome: unknown` (it had proposed
 * the command when it lost leadership, so the command may still commit;
 * the warden-leader hint alone would otherwise read as "not applied"). */
enum cli_delivery cli_resp_delivery(const struct cli_resp *r);

/* After on_close with status OK: take the payload (ownership passes to the
 * caller; free() it). May be NULL with len 0 for an empty message. */
void cli_resp_take_payload(struct cli_resp *r, uint8_t **data, size_t *len);

/* gRPC status for a non-200 HTTP status (grpc/doc/http-grpc-status-mapping). */
int cli_http_to_grpc_status(int http_status);
/* gRPC status for an HTTP/2 error code (RST_STREAM). */
int cli_h2_error_to_grpc_status(uint32_t h2_error);

#endif
