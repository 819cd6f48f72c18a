/* conn.h - one accepted TCP connection: libuv socket ⇄ OpenSSL (memory
 * BIOs) ⇄ the pure gRPC layer (grpc/grpc.h).
 *
 *   socket --uv_read--> rbio --SSL_read--> grpc_conn_recv
 *   grpc_conn_send --SSL_write--> wbio --uv_write--> socket
 *
 * The transport (this file) never parses HTTP/2; the gRPC layer never sees
 * a socket (the nghttp2 libevent-server split, and dqlite's gateway/conn).
 *
 * Lifecycle, a state machine with an explicit transition table (conn.c):
 *
 *   HANDSHAKE ──► OPEN ──► DRAINING ──► FLUSHING ──► CLOSING
 *       │          │  └──────────────────►│             ▲
 *       └──────────┴──────────────────────┴─────────────┘
 *
 *   HANDSHAKE  TLS handshake under the handshake timeout.
 *   OPEN       serving gRPC; the idle timer runs.
 *   DRAINING   GOAWAY sent (node shutdown or idle); in-flight calls finish
 *              under a drain deadline.
 *   FLUSHING   final bytes (GOAWAY, alert, close_notify) are written, then
 *              the write side is shut down, under a linger timeout.
 *   CLOSING    handles closing; memory is freed in the last close callback.
 *
 * A failing connection only ever closes itself: nothing here touches
 * another connection. */
#ifndef WARDEN_SERVER_CONN_H
#define WARDEN_SERVER_CONN_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>
#include <uv.h>

#include "../common/err.h"
#include "../grpc/grpc.h"

/* Bytes handed to uv_write and not yet completed, per connection. Above it
 * we stop pulling frames from the gRPC layer and stop reading the socket
 * (a client that does not read cannot make us buffer); below half of it we
 * resume. 256 KiB keeps a fast link busy (several TLS records in flight)
 * while 1024 stuck connections pin at most 256 MiB. */
#define CONN_WRITE_QUEUE_MAX ((size_t)256 << 10)
/* Plaintext gathered from grpc_conn_send() before one SSL_write: one full
 * TLS record (RFC 8446 §5.1), so many small HTTP/2 frames share a record. */
#define CONN_TLS_RECORD_MAX 16384
/* Socket read buffer, shared by all connections of a host: every read is
 * consumed inside the read callback (decrypted and fed to gRPC). */
#define CONN_READ_BUF 65536
/* Time to finish a TLS handshake. A peer that connects and stalls holds a
 * socket and an SSL object; this bounds how long. */
#define CONN_HANDSHAKE_TIMEOUT_MS_DEFAULT 10000u
/* A connection with no call and no bytes read for this long is sent GOAWAY
 * and closed, so abandoned clients do not hold slots forever. */
#define CONN_IDLE_TIMEOUT_MS_DEFAULT 300000u
/* How long an idle connection's GOAWAY may take to drain before we close. */
#define CONN_IDLE_DRAIN_MS 5000u
/* After the last bytes are queued (alert, GOAWAY, close_notify): how long
 * we wait for the peer to take them before closing hard. */
#define CONN_LINGER_MS 2000u
/* Longest printable peer address "[v6]:port". */
#define CONN_ADDR_MAX 64

/* Intrusive doubly linked list node. */
struct conn_link {
    struct conn_link *prev, *next;
};

/* TLS handshake steps (SSL_do_handshake calls that have new bytes) run per
 * loop iteration. A handshake costs a signature and a certificate check,
 * ~1-2 ms of the loop thread; 10,000 clients reconnecting at once used to
 * hold the loop for seconds at a time, and established streams waited
 * behind them (p99 6.2 s, bench/RESULTS.md scenario 6). Beyond the budget
 * a connection's handshake bytes wait in its TLS input BIO, its reads
 * pause, and it is served first in the next iteration (FIFO), after the
 * established connections have had their turn. */
#define CONN_HANDSHAKES_PER_ITER 8u

/* Everything connections share; owned by the node (node.c). */
struct conn_host {
    uv_loop_t *loop;                  /* borrowed */
    SSL_CTX *ssl_ctx;                 /* borrowed */
    const struct grpc_router *router; /* borrowed; outlives every conn */
    struct grpc_conn_config grpc_cfg; /* wakeup fields are set per conn */
    uint64_t handshake_timeout_ms;
    uint64_t idle_timeout_ms;
    size_t write_queue_max;
    size_t max_conns;

    struct conn_link conns;           /* every conn not yet freed */
    struct conn_link dirty;           /* conns with output to pump */
    struct conn_link hs_wait;         /* handshakes over the budget, FIFO */
    unsigned hs_left;                 /* handshake steps left this iteration */
    uint64_t n_hs_deferred;           /* handshake steps that had to wait */
    size_t n_conns;
    /* Called after a connection's memory was freed (last close callback). */
    void (*on_conn_freed)(struct conn_host *h);

    char read_buf[CONN_READ_BUF];
};

struct conn;

/* Set up the lists. Fields above must be filled by the caller. */
void conn_host_init(struct conn_host *h);

/* Accept one pending connection from server. Over max_conns the connection
 * is accepted and closed at once (logged), so the backlog does not fill.
 * Returns 0 or a WERR code (the listener stays usable either way). */
int conn_accept(struct conn_host *h, uv_stream_t *server, struct werr *e);

/* Pump output for every connection whose gRPC layer asked for it outside a
 * read (async replies, health updates), and run the handshakes that waited
 * for this iteration's budget (CONN_HANDSHAKES_PER_ITER). Call once per
 * loop iteration, before polling (a uv_prepare_t). Returns 1 when
 * handshakes are still waiting: the caller must keep the loop from
 * blocking in poll (a uv_idle_t), since those connections are not reading. */
int conn_host_flush(struct conn_host *h);

/* Graceful: GOAWAY, keep serving in-flight calls; close when they are done.
 * A connection still in its handshake is closed at once. */
void conn_shutdown(struct conn *c);
/* Abort: close now (in-flight calls are cancelled). reason is logged. */
void conn_close(struct conn *c, const char *reason);

/* Iterate host->conns. */
struct conn *conn_from_link(struct conn_link *l);

#endif
