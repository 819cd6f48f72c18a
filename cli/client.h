/* client.h - a small blocking gRPC client: TCP, OpenSSL 3 (TLS 1.3, mutual
 * TLS, ALPN h2) and an nghttp2 client session in memory-buffer mode.
 *
 * One struct cli_client holds at most one connection, opened lazily by the
 * first call and reused by later ones (device list --all pages through one
 * connection). Calls are sequential: unary (cli_client_call) or server
 * streaming (cli_client_stream). Later commands (cluster
 * status/add/remove/transfer) reuse cli_client_call() with their own
 * messages.
 *
 * Endpoints: the config lists up to CLI_ENDPOINTS_MAX "HOST:PORT" strings,
 * tried in order until one connects and completes the TLS handshake. The
 * server may answer UNAVAILABLE with a `warden-leader` trailer naming the
 * Raft leader; it is reported in struct cli_status.leader, and
 * struct cli_status.delivery says whether the request can have been acted
 * on. This file does not retry: the caller (cli/cmd.c) asks
 * cli_follow_decide() (cli/follow.h) and reconnects with
 * cli_client_reconnect().
 *
 * Errors: every function reports a gRPC status code in struct cli_status
 * (connection and TLS failures are UNAVAILABLE, a local deadline is
 * DEADLINE_EXCEEDED, unreadable TLS files are INVALID_ARGUMENT) and returns
 * that code, so 0 means OK. */
#ifndef WARDEN_CLI_CLIENT_H
#define WARDEN_CLI_CLIENT_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "args.h"
#include "resp.h"

/* TCP connect plus TLS handshake, per endpoint; also capped by the call
 * timeout. A dead host should fail over quickly, not eat the deadline. */
#define CLI_CONNECT_TIMEOUT_MS 5000u
/* Bytes read from TLS per step; a TLS record is at most 16 KiB. */
#define CLI_READ_CHUNK (16u << 10)
/* HTTP/2 receive window we advertise, per stream: a whole max-size message
 * fits, so a unary reply never waits on WINDOW_UPDATE round trips. */
#define CLI_H2_WINDOW ((uint32_t)(GRPC_MAX_MSG_DEFAULT + (64u << 10)))
/* SETTINGS_MAX_HEADER_LIST_SIZE: bounds HPACK-decoded response headers. */
#define CLI_H2_MAX_HEADER_LIST (16u << 10)
/* Longest request we send (the server's default receive limit). */
#define CLI_MAX_REQUEST GRPC_MAX_MSG_DEFAULT

struct cli_status {
    int code;                              /* gRPC status */
    char msg[CLI_RESP_MESSAGE_MAX + 1];    /* human text, may be empty */
    char leader[CLI_RESP_LEADER_MAX + 1];  /* warden-leader trailer, or "" */
    uint32_t leader_id;                    /* warden-leader-id, 0 if none */
    /* The endpoint this call (or reconnect) went to; "" when connecting
     * to the configured list failed at every endpoint. */
    char endpoint[CLI_ENDPOINT_LEN_MAX + 1];
    enum cli_delivery delivery;            /* meaningful when code != 0 */
};

struct cli_client_config {
    const char (*endpoints)[CLI_ENDPOINT_LEN_MAX + 1]; /* borrowed */
    size_t n_endpoints;
    const char *ca, *cert, *key;     /* PEM paths, borrowed */
    uint64_t timeout_ms;             /* per call, sent as grpc-timeout */
    size_t max_msg;                  /* response bound; 0 = default */
};

struct cli_client;

/* Create a client (no I/O yet). cfg's strings are borrowed and must outlive
 * the client. Returns 0 or an RESOURCE_EXHAUSTED/INVALID_ARGUMENT status. */
int cli_client_new(struct cli_client **out, const struct cli_client_config *cfg,
                   struct cli_status *st);

/* Unary call. path is "/pkg.Service/Method". req is borrowed. On OK,
 * *resp is the unpacked reply (free with protobuf_c_message_free_unpacked
 * (*resp, NULL)); otherwise *resp is NULL. Connects first if needed; a
 * broken connection is closed so the next call reconnects. */
int cli_client_call(struct cli_client *c, const char *path,
                    const ProtobufCMessage *req,
                    const ProtobufCMessageDescriptor *resp_desc,
                    ProtobufCMessage **resp, struct cli_status *st);

/* Server-streaming call (e.g. Audit/Tail). Each response message, bounded
 * by cfg->max_msg, is passed to cb (borrowed for the callback only); cb
 * returns non-zero to end the stream, which then counts as OK. timeout_ms
 * is the whole stream's deadline, 0 for none (no grpc-timeout is sent).
 * stop (may be NULL) is checked at least every 200 ms while waiting: a
 * non-zero value (a SIGINT handler's flag) resets the stream and the call
 * returns OK. Otherwise the call ends with the server's status, as a unary
 * call does; st->delivery as in cli_client_call. Messages already passed
 * to cb stay delivered whatever the final status. */
int cli_client_stream(struct cli_client *c, const char *path,
                      const ProtobufCMessage *req, cli_resp_msg_cb cb,
                      void *user, uint64_t timeout_ms,
                      volatile sig_atomic_t *stop, struct cli_status *st);

/* Drop the current connection and connect to `endpoint` ("HOST:PORT",
 * borrowed for the call), or to the configured list in order when endpoint
 * is NULL. For leader following. On failure st->delivery is NOT_SENT and
 * st->endpoint is `endpoint` (or "" for the list). */
int cli_client_reconnect(struct cli_client *c, const char *endpoint,
                         struct cli_status *st);

/* Close the connection (GOAWAY, TLS close_notify) and free. NULL is fine. */
void cli_client_free(struct cli_client *c);

#endif
