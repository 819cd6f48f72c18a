/* internal.h - grpc/ module internals shared by call.c and conn.c. Not part
 * of the API: nothing outside grpc/ may include it. */
#ifndef WARDEN_GRPC_INTERNAL_H
#define WARDEN_GRPC_INTERNAL_H

#include <nghttp2/nghttp2.h>

#include "grpc.h"

/* Longest custom metadata / trailer name we keep. HTTP/2 puts no bound on
 * names; ours are fixed-size slots in struct grpc_call. */
#define GRPC__MD_NAME_MAX 64
/* grpc-message after percent-encoding: every byte may become "%XX". */
#define GRPC__MSG_ENC_MAX (GRPC_MESSAGE_MAX * 3 + 1)
/* Header entries in our largest HEADERS frame (trailers-only): :status,
 * content-type, grpc-status, grpc-message, grpc-accept-encoding and the
 * custom trailers. */
#define GRPC__NV_MAX (5 + GRPC_CALL_TRAILERS_MAX)

/* Call lifecycle (one per HTTP/2 stream). Allowed transitions:
 *   HEADERS → BODY      request headers valid, method authorized
 *   HEADERS → CLOSING   request refused before the body (415, UNIMPLEMENTED..)
 *   BODY    → HANDLER   exactly one message received and unpacked
 *   BODY    → CLOSING   framing / size / protobuf / deadline error
 *   HANDLER → CLOSING   handler replied/failed/finished, deadline, cancel
 * The struct itself lives from on_begin_headers to on_stream_close (or
 * grpc_conn_free), whatever the state: the handle is never freed inside
 * a grpc_call_* function, so a handler returning from reply() is safe. */
enum grpc__call_state {
    GRPC__CALL_HEADERS,
    GRPC__CALL_BODY,
    GRPC__CALL_HANDLER,
    GRPC__CALL_CLOSING,
};

struct grpc_call {
    struct grpc_conn *conn;
    struct grpc_call *prev, *next;   /* conn->calls */
    int32_t stream_id;
    enum grpc__call_state state;

    /* request headers */
    const struct grpc_method *method;
    char path[GRPC_PATH_MAX];
    int path_bad;                    /* longer than GRPC_PATH_MAX - 1 */
    int method_post;
    int ctype_ok;
    int timeout_seen, timeout_bad;
    uint64_t timeout_ms;
    uint64_t deadline;               /* 0 = none */
    int encoding_identity;           /* grpc-encoding absent or "identity" */
    char encoding[32];               /* for the error message */
    size_t header_bytes;             /* RFC 9113 §6.5.2 accounting */
    size_t n_md;
    char md_name[GRPC_CALL_METADATA_MAX][GRPC__MD_NAME_MAX + 1];
    char md_val[GRPC_CALL_METADATA_MAX][GRPC_METADATA_VALUE_MAX + 1];

    /* request body */
    struct grpc_frame_dec dec;
    size_t rx_counted;               /* dec.cap as last added to conn->rx_buffered */
    uint8_t *msg;                    /* the one request message, owned */
    size_t msg_len;
    unsigned nmsgs;
    ProtobufCMessage *req;           /* unpacked, owned */

    /* handler */
    void *userdata;
    grpc_cancel_fn cancel_cb;
    void *cancel_arg;

    /* response */
    size_t n_tr;
    char tr_name[GRPC_CALL_TRAILERS_MAX][GRPC__MD_NAME_MAX + 1];
    char tr_val[GRPC_CALL_TRAILERS_MAX][GRPC_METADATA_VALUE_MAX + 1];
    int accept_encoding;             /* add grpc-accept-encoding: identity */
    uint8_t *out;                    /* queued length-prefixed messages */
    size_t out_off, out_len, out_cap;
    int headers_sent;                /* response HEADERS submitted */
    int data_deferred;               /* read_cb returned ERR_DEFERRED */
    int final_set;
    int final_status;
    char status_str[4];
    char final_msg[GRPC__MSG_ENC_MAX];
    int rst_after;                   /* RST_STREAM(rst_code) after END_STREAM */
    uint32_t rst_code;

    /* completion report (on_call_done) */
    uint64_t start_ms;               /* conn->now_ms when the call began */
    int headers_complete;            /* headers_done ran: report at free */
    int http_refused;                /* 405/415: status -1 */
    int admitted;                    /* on_admit said yes */
};

struct grpc_conn {
    nghttp2_session *session;
    const struct grpc_router *router;
    struct principal peer;
    size_t max_msg;
    uint32_t max_header_list;
    void (*wakeup)(void *arg);
    void *wakeup_arg;
    void (*on_denied)(void *arg, const struct principal *who, const char *path);
    void *on_denied_arg;
    int (*on_admit)(void *arg, const struct principal *who, const char *path,
                    char *msg, size_t cap);
    void *on_admit_arg;
    void (*on_call_done)(void *arg, const struct principal *who,
                         const char *path, int status, uint64_t start_ms,
                         int admitted);
    void *on_call_done_arg;
    uint64_t now_ms;                 /* as of the last recv/tick */
    int in_io;                       /* inside mem_recv / mem_send */
    int shutdown_state;              /* 0, 1 notice queued, 2 final GOAWAY */
    struct grpc_call *calls;
    size_t ncalls;
    size_t rx_buffered;              /* sum of the calls' rx_counted */
    uint64_t next_deadline;          /* lower bound on live deadlines; 0 none */
    size_t rx_budget;                /* GRPC_CONN_RX_BUFFER_DEFAULT or config */
};

/* call.c */
struct grpc_call *grpc__call_new(struct grpc_conn *conn, int32_t stream_id);
void grpc__call_free(struct grpc_call *call);
/* End the call with status/message (message raw, may be NULL). discard drops
 * queued-but-unsent messages (deadline). Returns 0 or a WERR code. */
int grpc__call_end(struct grpc_call *call, int status, const char *message,
                   int discard);
int grpc__call_endf(struct grpc_call *call, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Refuse at the HTTP layer (405, 415) without gRPC framing. */
int grpc__call_http_error(struct grpc_call *call, const char *http_status);
/* Run and clear the cancel callback if the handler owns the call. */
void grpc__call_cancel(struct grpc_call *call);

/* conn.c */
/* Tell the transport output is pending, unless it is already pumping. */
void grpc__conn_kick(struct grpc_conn *conn);

#endif
