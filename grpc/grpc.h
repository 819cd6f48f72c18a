/* grpc.h - warden's gRPC-over-HTTP/2 layer. Pure: bytes in, bytes out.
 *
 * No sockets, no libuv, no OpenSSL, no clock reads: the transport feeds the
 * decrypted bytes it reads with grpc_conn_recv(), drains bytes to encrypt and
 * write with grpc_conn_send(), and passes the monotonic time in. That makes
 * the whole layer unit-testable and fuzzable (fuzz/fuzz_grpc_conn.c).
 *
 * Wire protocol: gRPC's PROTOCOL-HTTP2.md. HTTP/2 is nghttp2 in
 * memory-buffer mode (nghttp2_session_mem_recv / mem_send; the *2 variants
 * arrived after the 1.52 we build against).
 *
 * How requests are refused (checked in this order, all before the body is
 * decoded; "T-O" = Trailers-Only response, HTTP 200):
 *   :method not POST                → HTTP 405
 *   content-type not application/grpc[+...|;...] → HTTP 415 (PROTOCOL-HTTP2)
 *   :path not in the router         → T-O UNIMPLEMENTED "unknown method <path>"
 *   peer role not in method->roles  → T-O PERMISSION_DENIED
 *   malformed grpc-timeout          → T-O INVALID_ARGUMENT (client's fault;
 *                                     grpc-go says INTERNAL)
 * and while reading the body:
 *   prefix announces > max_msg      → RESOURCE_EXHAUSTED, decided at the
 *                                     5-byte prefix, nothing buffered
 *   compressed flag, no/identity grpc-encoding → INTERNAL (as grpc-go/core)
 *   compressed flag, other encoding → UNIMPLEMENTED + grpc-accept-encoding
 *   0 or >1 messages, truncated prefix/body at END_STREAM → INVALID_ARGUMENT
 *   protobuf_c_message_unpack fails → INVALID_ARGUMENT "malformed protobuf
 *                                     for <full type name>"
 * A response completed while the client is still sending is followed by
 * RST_STREAM(NO_ERROR) (RFC 9113 §8.1); a deadline by DEADLINE_EXCEEDED then
 * RST_STREAM(CANCEL).
 *
 * Handlers never see frames. They get a struct grpc_call carrying the method,
 * the caller's principal, the deadline and the decoded protobuf request, and
 * answer with grpc_call_reply()/grpc_call_fail(), possibly asynchronously
 * (a later loop iteration, e.g. after a Raft commit). */
#ifndef WARDEN_GRPC_GRPC_H
#define WARDEN_GRPC_GRPC_H

#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "../common/err.h"
#include "../common/principal.h"

/* ---- status codes (grpc/doc/statuscodes.md) ---------------------------- */
enum grpc_status {
    GRPC_STATUS_OK = 0,
    GRPC_STATUS_CANCELLED = 1,
    GRPC_STATUS_UNKNOWN = 2,
    GRPC_STATUS_INVALID_ARGUMENT = 3,
    GRPC_STATUS_DEADLINE_EXCEEDED = 4,
    GRPC_STATUS_NOT_FOUND = 5,
    GRPC_STATUS_ALREADY_EXISTS = 6,
    GRPC_STATUS_PERMISSION_DENIED = 7,
    GRPC_STATUS_RESOURCE_EXHAUSTED = 8,
    GRPC_STATUS_FAILED_PRECONDITION = 9,
    GRPC_STATUS_ABORTED = 10,
    GRPC_STATUS_OUT_OF_RANGE = 11,
    GRPC_STATUS_UNIMPLEMENTED = 12,
    GRPC_STATUS_INTERNAL = 13,
    GRPC_STATUS_UNAVAILABLE = 14,
    GRPC_STATUS_DATA_LOSS = 15,
    GRPC_STATUS_UNAUTHENTICATED = 16,
};
/* "OK", "CANCELLED", ...; "UNKNOWN" for out-of-range values. */
const char *grpc_status_name(int status);

/* ---- limits ------------------------------------------------------------- */
/* Default max message size, both directions (gRPC's own default). */
#define GRPC_MAX_MSG_DEFAULT ((size_t)4 << 20)
/* Concurrent streams per connection (SETTINGS_MAX_CONCURRENT_STREAMS). Caps
 * per-connection memory: each open stream may buffer one request. */
#define GRPC_MAX_STREAMS_DEFAULT 128u
/* SETTINGS_MAX_HEADER_LIST_SIZE: bounds HPACK-decoded header memory. */
#define GRPC_MAX_HEADER_LIST_DEFAULT (16u << 10)
/* Request bytes one connection may hold in partly received messages, over
 * all its streams. HTTP/2 flow control does not bound this: nghttp2 credits
 * the window as soon as a DATA chunk is handed to us, so without a budget a
 * peer could park max_msg bytes on each of max_streams streams (4 MiB x 128
 * = 512 MiB per connection). A stream whose bytes would take the
 * connection past the budget is refused with RESOURCE_EXHAUSTED. Never
 * below max_msg, so one largest message always fits. */
#define GRPC_CONN_RX_BUFFER_DEFAULT ((size_t)16 << 20)
/* Per-stream and connection receive windows. */
#define GRPC_STREAM_WINDOW_DEFAULT (1u << 20)
#define GRPC_CONN_WINDOW_DEFAULT (8u << 20)
/* Bytes a server-streaming call may have queued but not yet sent. Beyond
 * it grpc_call_send() returns WERR_BUSY: a slow reader never makes us buffer
 * without bound. */
#define GRPC_STREAM_OUT_MAX ((size_t)1 << 20)
/* Max length of one metadata value we copy out for handlers. */
#define GRPC_METADATA_VALUE_MAX 256
/* Longest grpc-message we send (after truncation, before %-encoding). */
#define GRPC_MESSAGE_MAX 512
/* Registered methods per router. */
#define GRPC_ROUTER_MAX_METHODS 128
/* Longest method path "/pkg.Service/Method". */
#define GRPC_PATH_MAX 128

/* ---- length-prefixed message framing (PROTOCOL-HTTP2: Length-Prefixed-Message) */
#define GRPC_FRAME_HDR_LEN 5

/* Write the 5-byte prefix: compressed flag, then big-endian length. */
void grpc_frame_hdr_encode(uint8_t out[GRPC_FRAME_HDR_LEN], int compressed,
                           uint32_t len);

/* Incremental decoder for a stream of length-prefixed messages. */
struct grpc_frame_dec {
    size_t max_msg;       /* limit on one message's length */
    uint8_t hdr[GRPC_FRAME_HDR_LEN];
    size_t hdr_have;
    uint8_t *buf;         /* owned; message being assembled */
    size_t need;          /* length from the prefix */
    size_t have;
    int compressed;
    size_t cap;           /* allocated size of buf; grows as bytes arrive */
};
void grpc_frame_dec_init(struct grpc_frame_dec *d, size_t max_msg);
void grpc_frame_dec_close(struct grpc_frame_dec *d);
/* Feed bytes. Consumes up to len bytes and sets *consumed. Returns:
 *   1  a whole message is ready: grpc_frame_dec_take() it before feeding more;
 *   0  need more bytes;
 *   WERR_LIMIT  the prefix announced more than max_msg (no allocation done);
 *   WERR_NOMEM. */
int grpc_frame_dec_feed(struct grpc_frame_dec *d, const uint8_t *data,
                        size_t len, size_t *consumed);
/* Take the completed message: ownership of *msg (malloc'd, may be NULL when
 * len is 0) passes to the caller. Resets the decoder for the next message. */
void grpc_frame_dec_take(struct grpc_frame_dec *d, uint8_t **msg, size_t *len,
                         int *compressed);
/* True when a prefix or body is partially received (truncated at END_STREAM). */
int grpc_frame_dec_partial(const struct grpc_frame_dec *d);

/* ---- grpc-timeout (PROTOCOL-HTTP2: Timeout → TimeoutValue TimeoutUnit) --- */
/* Parse e.g. "100m" into milliseconds (rounding up sub-ms units, saturating
 * at UINT64_MAX/2). 1..8 ASCII digits then one of H M S m u n. Returns 0 or
 * WERR_INVALID. */
int grpc_timeout_parse(const char *s, size_t len, uint64_t *ms);
/* Format ms as a grpc-timeout value into buf. Returns 0 or WERR_LIMIT. */
int grpc_timeout_format(uint64_t ms, char *buf, size_t cap);

/* ---- grpc-message percent-encoding (PROTOCOL-HTTP2: Status-Message) ------
 * Bytes outside 0x20..0x7E, and '%', become %XX. Returns the encoded length
 * (excluding NUL); output is truncated at a whole escape if cap is small and
 * always NUL-terminated when cap > 0. */
size_t grpc_pct_encode(const char *in, size_t len, char *out, size_t cap);
/* Decode; invalid escapes are kept verbatim (as the spec asks of receivers).
 * Returns decoded length; out NUL-terminated when cap > 0. */
size_t grpc_pct_decode(const char *in, size_t len, char *out, size_t cap);

/* ---- calls and methods -------------------------------------------------- */
struct grpc_call;

/* Handler. req is the unpacked request (a ProtobufCMessage of the method's
 * req_desc), borrowed and valid until the call ends (reply/fail/finish or
 * cancel). data is the grpc_method's data pointer. */
typedef void (*grpc_handler_fn)(struct grpc_call *call,
                                const ProtobufCMessage *req, void *data);

struct grpc_method {
    char path[GRPC_PATH_MAX];                /* "/warden.v1.Inventory/GetDevice" */
    unsigned roles;                          /* WROLE_* bits allowed to call */
    const ProtobufCMessageDescriptor *req_desc;
    int server_streaming;                    /* 0 unary, 1 server-streaming */
    grpc_handler_fn handler;
    void *data;                              /* borrowed, passed to handler */
};

struct grpc_router {
    struct grpc_method methods[GRPC_ROUTER_MAX_METHODS];
    size_t n;
};
void grpc_router_init(struct grpc_router *r);
/* Copy m into the router. WERR_LIMIT when full, WERR_EXISTS on duplicate. */
int grpc_router_add(struct grpc_router *r, const struct grpc_method *m,
                    struct werr *e);
/* NULL when absent. */
const struct grpc_method *grpc_router_find(const struct grpc_router *r,
                                           const char *path, size_t len);

/* Accessors. Pointers returned are valid until the call ends. */
const char *grpc_call_path(const struct grpc_call *c);
const struct principal *grpc_call_principal(const struct grpc_call *c);
/* Absolute deadline in the conn's monotonic ms, or 0 for none. */
uint64_t grpc_call_deadline(const struct grpc_call *c);
/* Copy of request metadata value for `name` (lowercase), or NULL. Only
 * values up to GRPC_METADATA_VALUE_MAX bytes are kept. At most
 * GRPC_CALL_METADATA_MAX custom headers are kept per call. */
#define GRPC_CALL_METADATA_MAX 8
const char *grpc_call_metadata(const struct grpc_call *c, const char *name);
/* Opaque per-call slot for async handlers (e.g. a pending Raft proposal). */
void grpc_call_set_userdata(struct grpc_call *c, void *ud);
void *grpc_call_userdata(const struct grpc_call *c);

/* Called at most once if the call is torn down (RST_STREAM from the client,
 * deadline expiry, connection close) before the handler finished it. After
 * the callback returns, the call pointer is invalid; the handler must drop
 * any reference to it. */
typedef void (*grpc_cancel_fn)(struct grpc_call *c, void *arg);
void grpc_call_on_cancel(struct grpc_call *c, grpc_cancel_fn cb, void *arg);

/* Add a trailing metadata entry (e.g. "warden-leader"). At most
 * GRPC_CALL_TRAILERS_MAX; name lowercase ASCII, value printable. */
#define GRPC_CALL_TRAILERS_MAX 4
int grpc_call_add_trailer(struct grpc_call *c, const char *name,
                          const char *value);

/* Unary: send msg then OK status. The call ends (pointer invalid) on
 * return, whatever the result. */
int grpc_call_reply(struct grpc_call *c, const ProtobufCMessage *msg);
/* End the call with a non-OK status and a formatted message. The call ends. */
int grpc_call_fail(struct grpc_call *c, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Fail from a werr: status from werr_grpc_status(e->code), message e->msg. */
int grpc_call_fail_err(struct grpc_call *c, const struct werr *e);
/* Server streaming: queue one message. WERR_BUSY if GRPC_STREAM_OUT_MAX
 * bytes are already queued. The call stays open. */
int grpc_call_send(struct grpc_call *c, const ProtobufCMessage *msg);
/* Server streaming: end with status (message may be NULL). The call ends. */
int grpc_call_finish(struct grpc_call *c, int status, const char *message);

/* ---- connection (server side) ------------------------------------------- */
struct grpc_conn;

struct grpc_conn_config {
    size_t max_msg;            /* 0 = GRPC_MAX_MSG_DEFAULT */
    uint32_t max_streams;      /* 0 = GRPC_MAX_STREAMS_DEFAULT */
    uint32_t max_header_list;  /* 0 = GRPC_MAX_HEADER_LIST_DEFAULT */
    uint32_t stream_window;    /* 0 = GRPC_STREAM_WINDOW_DEFAULT */
    uint32_t conn_window;      /* 0 = GRPC_CONN_WINDOW_DEFAULT */
    size_t max_conn_buffered;  /* 0 = GRPC_CONN_RX_BUFFER_DEFAULT; >= max_msg */
    /* Called when output became pending outside grpc_conn_recv(), e.g. an
     * async reply: the transport should schedule grpc_conn_send(). */
    void (*wakeup)(void *arg);
    void *wakeup_arg;
    /* Called when a call is refused with PERMISSION_DENIED because the
     * peer's role is not in the method's role set, just before the
     * refusal is queued. principal and path are borrowed for the call. May be NULL.
     * The server counts these for the audit ledger (docs/audit.md,
     * aggregated denials); it must not call back into the conn. */
    void (*on_denied)(void *arg, const struct principal *who, const char *path);
    void *on_denied_arg;
    /* Admission (issue 9): called once per call that passed routing, the
     * role gate and the grpc-timeout check, before a body byte is decoded
     * and so before the handler runs. Return 0 to admit, or a non-OK
     * grpc_status to refuse: the call ends with that status and the text
     * the hook wrote into msg (cap GRPC_MESSAGE_MAX + 1, NUL-terminated).
     * principal and path are borrowed for the call. May be NULL (admit
     * everything). Must not call back into the conn. */
    int (*on_admit)(void *arg, const struct principal *who, const char *path,
                    char *msg, size_t cap);
    void *on_admit_arg;
    /* Per-call completion (metrics): called exactly once for every call
     * whose request headers were complete, when the call's stream is freed
     * (its single death point: stream close, or grpc_conn_free). status is
     * the final grpc-status sent, GRPC_STATUS_CANCELLED for a call torn
     * down before it ended, or -1 for an HTTP-level refusal (405/415).
     * start_ms is the now_ms passed to grpc_conn_recv when its headers
     * arrived; the transport computes the duration with its own clock (the
     * layer reads none). admitted is 1 when on_admit admitted the call (so
     * the transport can release an in-flight slot). path is borrowed for
     * the call, and is the raw :path (possibly not a routed method: the
     * hook must bound label cardinality itself). May be NULL. Must not call
     * back into the conn. */
    void (*on_call_done)(void *arg, const struct principal *who,
                         const char *path, int status, uint64_t start_ms,
                         int admitted);
    void *on_call_done_arg;
};

/* Create a server connection. router and principal are borrowed and must
 * outlive the conn; principal is copied. Queues the server SETTINGS. */
int grpc_conn_new(struct grpc_conn **out, const struct grpc_router *router,
                  const struct grpc_conn_config *cfg,
                  const struct principal *peer, struct werr *e);
/* Feed decrypted bytes. now_ms is monotonic time (for grpc-timeout).
 * Handlers may run inside this call. Returns 0, or a negative WERR code when
 * the connection must be closed (HTTP/2 protocol violation, flood). */
int grpc_conn_recv(struct grpc_conn *c, const uint8_t *data, size_t len,
                   uint64_t now_ms);
/* Get the next chunk of bytes to send. Returns its length (0 when nothing is
 * pending); *data is owned by the conn and valid until the next call into the
 * conn. Negative WERR on fatal error. The transport bounds its own write
 * queue and stops calling this while the queue is full (backpressure). */
long grpc_conn_send(struct grpc_conn *c, const uint8_t **data);
/* Whether the session still wants to read or write; both 0 means the
 * connection is finished (after GOAWAY and all streams closed). */
int grpc_conn_want_read(const struct grpc_conn *c);
int grpc_conn_want_write(const struct grpc_conn *c);
/* Fail calls whose deadline passed with DEADLINE_EXCEEDED. Returns when to
 * tick again: never later than the earliest remaining deadline (it may be
 * earlier, after that call ended), or 0 if no call has one. Cheap until
 * then: the calls are walked only once a known deadline is due. */
uint64_t grpc_conn_tick(struct grpc_conn *c, uint64_t now_ms);
/* Graceful shutdown: GOAWAY with the last processed stream id; in-flight
 * calls continue. */
void grpc_conn_shutdown(struct grpc_conn *c);
/* Number of calls not yet ended. */
size_t grpc_conn_active_calls(const struct grpc_conn *c);
/* Cancel outstanding calls (cancel callbacks run) and free. */
void grpc_conn_free(struct grpc_conn *c);

#endif
