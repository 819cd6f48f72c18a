/* node.h - one wardend process: the listener, connections, services, store,
 * signals and graceful shutdown, on one libuv loop.
 *
 * Lifecycle (libuv's habit): node_init → node_start → (loop runs) →
 * node_stop (from SIGTERM/SIGINT, or by a caller) → the loop ends once every
 * handle is closed → node_close frees what is left. Memory behind a handle
 * is freed only in or after its close callback.
 *
 * Shutdown order (SIGTERM/SIGINT):
 *   1. health → NOT_SERVING; Watch streams get it and end, so load balancers
 *      stop routing here first;
 *   2. the listener closes: no new connections;
 *   3. every connection gets GOAWAY (grpc_conn_shutdown) and in-flight calls
 *      drain, bounded by shutdown_grace_ms; then the rest are closed hard;
 *   4. the loop's own handles close, uv_run returns, main exits 0.
 * A second signal during the drain skips straight to the hard close. */
#ifndef WARDEN_SERVER_NODE_H
#define WARDEN_SERVER_NODE_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>
#include <uv.h>

#include "../common/err.h"
#include "../grpc/grpc.h"
#include "conn.h"
#include "svc.h"

#define NODE_LISTEN_DEFAULT "127.0.0.1:7443"
#define NODE_DATA_DIR_DEFAULT "./warden-data"
/* Concurrent connections (including ones in their handshake). Each costs a
 * socket, an SSL (~40 KiB while busy) and an nghttp2 session, plus up to
 * CONN_WRITE_QUEUE_MAX of output: the bound keeps a connection flood from
 * exhausting memory or descriptors. */
#define NODE_MAX_CONNS_DEFAULT 1024u
/* listen(2) backlog: SOMAXCONN-sized; the kernel clamps it. */
#define NODE_LISTEN_BACKLOG 511
/* Drain budget on SIGTERM. Kubernetes' default terminationGracePeriod is
 * 30 s; 10 s leaves room for the hard close and exit. */
#define NODE_SHUTDOWN_GRACE_MS_DEFAULT 10000u
/* Longest path we build under the data dir. */
#define NODE_PATH_MAX 1024

struct node_config {
    const char *listen;          /* "ADDR:PORT" or "[V6]:PORT"; port 0 = any */
    const char *data_dir;
    int dev;                     /* generate/reuse DIR/dev-certs */
    const char *tls_cert;        /* required unless dev */
    const char *tls_key;
    const char *tls_ca;
    size_t max_msg;              /* 0 = GRPC_MAX_MSG_DEFAULT */
    uint64_t shutdown_grace_ms;
    size_t max_conns;
    uint64_t handshake_timeout_ms;
    uint64_t idle_timeout_ms;
};

/* Fill cfg with the defaults above. */
void node_config_defaults(struct node_config *cfg);

enum node_state {
    NODE_INIT,
    NODE_RUNNING,
    NODE_DRAINING,
    NODE_CLOSING,
};

struct node {
    struct node_config cfg;      /* strings borrowed from the caller */
    uv_loop_t *loop;             /* borrowed */
    enum node_state state;

    uv_tcp_t listener;
    uv_signal_t sig_term, sig_int;
    uv_timer_t grace;
    uv_prepare_t flush;          /* pumps connections' async output */
    int open_handles;            /* node handles not yet closed */
    int listener_open;

    char certs_dir[NODE_PATH_MAX];
    char cert_path[NODE_PATH_MAX], key_path[NODE_PATH_MAX], ca_path[NODE_PATH_MAX];
    SSL_CTX *ssl_ctx;
    struct store *store;
    struct inv *inv;
    struct grpc_router router;
    struct svc_ctx svc;
    struct conn_host host;
};

/* Prepare certificates (dev mode), TLS, the store, the inventory and the
 * router, and bind the listener. n must stay at a fixed address until
 * node_close. On failure everything is undone (the loop may need one
 * uv_run to finish closing handles) and a WERR code is returned: WERR_CONFIG
 * for bad flags, files or addresses. */
int node_init(struct node *n, uv_loop_t *loop, const struct node_config *cfg,
              struct werr *e);
/* Listen, install signal handlers, report SERVING. */
int node_start(struct node *n, struct werr *e);
/* Begin graceful shutdown (see above). Idempotent; a second call forces. */
void node_stop(struct node *n);
/* The bound TCP port (useful with --listen ADDR:0), or -1. Valid between
 * node_init and the listener's close. */
int node_port(const struct node *n);
/* After uv_run returned: close the inventory and store, free TLS. */
void node_close(struct node *n);

#endif
