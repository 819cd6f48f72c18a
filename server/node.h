/* node.h - one wardend process: the listener, connections, services, the
 * Raft node (consensus/node.h) that owns the store, signals and graceful
 * shutdown, on one libuv loop.
 *
 * Every wardend runs Raft (issue 3). `--dev` is a one-node cluster: id 1,
 * peer address = the client host with port + 1 (port 0 stays 0), peer
 * certificate DIR/dev-certs/peer-n1.pem. A cluster node takes --node-id,
 * --peers (bootstrap a pristine data dir with these voters) or --join
 * (start empty and wait for AddMember), --peer-listen, and one certificate
 * (SAN IP + URI warden://role/peer/n<id>) for both ports. Data dir layout:
 * DIR/db (LMDB, owned by the state machine), DIR/raft (raft_uv),
 * DIR/dev-certs (dev mode). See docs/operations-cluster.md.
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
#include "../consensus/node.h"
#include "admission.h"
#include "conn.h"
#include "metrics.h"
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
/* How often the node looks at Raft for leadership changes and refused
 * peers (logs, health), and runs the services' duties (svc_tick: audit
 * Tail pumps, the denial flush, the bootstrap command key). raft 0.22 has no state-change callback that
 * consensus/node.h exposes; 100 ms is well under the 1 s election timeout,
 * so health follows an election within one poll. */
#define NODE_RAFT_POLL_MS SVC_TICK_MS
/* The refused-peer summary line is logged at most this often: a dead or
 * misconfigured peer is retried every second or so, and the transport
 * already logs each refusal with its reason. */
#define NODE_REFUSED_LOG_MS 10000u
/* Peer redial delay after a refused or failed connection. raft_uv's
 * default is 1000 ms: after a full restart every node dialled peers that
 * were still loading their logs, and the cluster waited out that second
 * before it could elect (bench/RESULTS.md, scenario 5). A refused dial on
 * loopback or a LAN is cheap; refusals are logged in a summary line at
 * most every NODE_REFUSED_LOG_MS. */
#define NODE_PEER_CONNECT_RETRY_MS 100u
/* Snapshot policy bounds (--snapshot-threshold, --snapshot-trailing; 0 in
 * node_config selects WNODE_SNAPSHOT_THRESHOLD / _TRAILING).
 *  - threshold >= 16: every snapshot copies the whole LMDB env into memory
 *    and writes it to disk (wfsm_snapshot); a few entries apart, snapshots
 *    would cost more than the writes they compact. test_consensus_node
 *    runs at 32, SnapshotTest at 64.
 *  - threshold <= 1 Mi entries: raft 0.22 keeps every entry since the last
 *    snapshot in memory and raft_uv reloads them all at start-up; a million
 *    commands of a few hundred bytes is already hundreds of MiB.
 *  - trailing 1..1 Mi: entries kept after a snapshot, so a follower that
 *    far behind catches up from the log instead of a snapshot install. It
 *    may exceed the threshold (the log then holds up to threshold +
 *    trailing entries). */
#define NODE_SNAPSHOT_THRESHOLD_MIN 16u
#define NODE_SNAPSHOT_THRESHOLD_MAX (1u << 20)
#define NODE_SNAPSHOT_TRAILING_MIN 1u
#define NODE_SNAPSHOT_TRAILING_MAX (1u << 20)

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
    /* Cluster (ignored with dev, except peer_listen). */
    unsigned node_id;            /* 0: not given (required without dev) */
    const char *peers;           /* --peers value, or NULL */
    const char *peer_listen;     /* "a.b.c.d:PORT" or NULL */
    int join;                    /* start empty, wait for AddMember */
    unsigned election_timeout_ms;   /* 0 = WNODE_ELECTION_TIMEOUT_MS */
    unsigned snapshot_threshold;    /* 0 = WNODE_SNAPSHOT_THRESHOLD */
    unsigned snapshot_trailing;     /* 0 = WNODE_SNAPSHOT_TRAILING */
    /* Observability and admission (issue 9; docs/metrics.md). */
    const char *metrics_listen;  /* "ADDR:PORT", "off", or NULL: 127.0.0.1,
                                    client port + 2, best effort */
    unsigned rate_limit_rps;     /* per principal; 0 = no rate limit */
    unsigned rate_limit_burst;
    size_t max_inflight;
    /* Access/WatchRevocations streams (--max-watchers; svc.h
     * SVC_ACCESS_WATCH_MAX_*). */
    size_t max_watchers;
#ifdef WARDEN_FAULTS
    /* TESTING ONLY: wardend --unsafe-fault ack-before-commit, copied to
     * wnode_config.fault_ack_before_commit (consensus/node.h). */
    int fault_ack_before_commit;
#endif
};

/* Fill cfg with the defaults above. */
void node_config_defaults(struct node_config *cfg);

/* Check a snapshot policy against the NODE_SNAPSHOT_* bounds; 0 stands for
 * the WNODE_* default and is accepted. Returns 0 or WERR_CONFIG (e names
 * the flag, the value and the range). node_init calls it too. */
int node_snapshot_check(unsigned threshold, unsigned trailing, struct werr *e);

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
    uv_idle_t hs_idle;           /* no blocking poll while handshakes wait */
    int open_handles;            /* node handles not yet closed */
    int listener_open;

    char certs_dir[NODE_PATH_MAX];
    char cert_path[NODE_PATH_MAX], key_path[NODE_PATH_MAX], ca_path[NODE_PATH_MAX];
    char peer_cert_path[NODE_PATH_MAX], peer_key_path[NODE_PATH_MAX];
    SSL_CTX *ssl_ctx;

    /* Raft. wn is owned from node_init until its close callback. */
    struct wnode *wn;
    struct wnode_config wcfg;
    unsigned id;
    char client_addr[WNODE_HOSTPORT_MAX];   /* advertised to clients */
    char peer_addr[WNODE_HOSTPORT_MAX];     /* Raft traffic */
    uv_timer_t raft_poll;
    unsigned seen_leader;                   /* for change logs */
    int seen_state;
    uint64_t seen_term;
    unsigned long seen_refused;
    uint64_t refused_logged_ms;             /* uv_now of the last summary */
    int exit_code;                          /* 1 after a fatal Raft error */
    struct grpc_router router;
    struct svc_ctx svc;
    struct conn_host host;

    /* Issue 9: admission control, metrics, certificate reload. */
    struct admission adm;
    struct metrics metrics;
    struct metrics_server msrv;
    int metrics_on;                         /* msrv listening */
    uv_signal_t sig_hup;                    /* reload TLS certificates */
    uint64_t leader_changes;
    uint64_t tls_reloads_ok, tls_reloads_failed;
};

/* Prepare certificates (dev mode), TLS, bind the listener, start the Raft
 * node (which opens the store) and register the services. n must stay at a
 * fixed address until node_close. On failure everything is undone (the
 * loop is run here until the Raft node's teardown has finished) and a WERR
 * code is returned: WERR_CONFIG for bad flags, files or addresses. */
int node_init(struct node *n, uv_loop_t *loop, const struct node_config *cfg,
              struct werr *e);
/* Listen, install signal handlers, report SERVING. */
int node_start(struct node *n, struct werr *e);
/* Begin graceful shutdown (see above). Idempotent; a second call forces. */
void node_stop(struct node *n);
/* The bound TCP port (useful with --listen ADDR:0), or -1. Valid between
 * node_init and the listener's close. */
int node_port(const struct node *n);
/* SIGHUP: build a new server SSL_CTX from the same certificate, key and
 * CA files and use it for connections accepted from now on; established
 * connections keep theirs (each SSL holds a reference to its SSL_CTX).
 * On failure the old context stays and the error is logged. Returns 0 or
 * the tls_server_ctx_new error. */
int node_reload_tls(struct node *n, struct werr *e);
/* The metrics listener's bound port, or -1 when it is not listening. */
int node_metrics_port(const struct node *n);
/* After uv_run returned: free TLS. (The Raft node and its store closed
 * during shutdown, before the loop ended.) */
void node_close(struct node *n);

#endif
