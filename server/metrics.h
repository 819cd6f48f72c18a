/* metrics.h - Prometheus text exposition (issue 9; docs/metrics.md).
 *
 * Two halves:
 *   - pure: a fixed-size registry of request counters and latency
 *     histograms keyed by (method, status), counters by reason, and the
 *     renderer that turns them plus a snapshot of gauges into the text
 *     format (prometheus.io/docs/instrumenting/exposition_formats: HELP
 *     and TYPE lines, label values escaped \\ \" \n, histogram _bucket
 *     with cumulative le buckets ending in +Inf, _sum, _count);
 *   - the listener: a plain HTTP/1.1 server on its own (loopback by
 *     default) address that answers GET /metrics and GET /healthz only.
 *     Every request is bounded (METRICS_REQ_MAX bytes of head, one request
 *     per connection, METRICS_CONNS_MAX connections, METRICS_READ_TIMEOUT_MS)
 *     because it has no TLS and no authentication: it must not become a
 *     way to hold memory or sockets.
 * The registry never reads a clock; the node passes durations in. */
#ifndef WARDEN_SERVER_METRICS_H
#define WARDEN_SERVER_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "../common/err.h"
#include "../grpc/grpc.h"

/* (method, status) rows. 128 routed methods (GRPC_ROUTER_MAX_METHODS) x a
 * handful of statuses each in practice; a row beyond the table is counted
 * in warden_metrics_series_dropped_total instead (bounded memory whatever
 * clients send). Unrouted paths share the method label "unknown". */
#define METRICS_REQ_ROWS 512
/* Latency buckets, upper bounds in ms (rendered as seconds). */
#define METRICS_N_BUCKETS 14
/* Label value longest we render (a method path). */
#define METRICS_LABEL_MAX GRPC_PATH_MAX
/* Rendered body cap: the registry is bounded, so this is a safety net. */
#define METRICS_BODY_MAX ((size_t)1 << 20)
/* HTTP request head cap: "GET /metrics HTTP/1.1" plus a scraper's headers
 * fit in 1 KiB; 8 KiB leaves room, and more is answered 431 and closed. */
#define METRICS_REQ_MAX 8192
/* Concurrent scrape connections: Prometheus uses one per target; a few
 * more for humans with curl. Beyond it new connections are closed at once. */
#define METRICS_CONNS_MAX 16
/* A scrape connection must send its request head within this long. */
#define METRICS_READ_TIMEOUT_MS 5000u
/* Reasons per counter family (denials, admission). */
#define METRICS_REASONS_MAX 8

struct metrics_req_row {
    char method[METRICS_LABEL_MAX];
    int status;                        /* grpc status, or -1 for HTTP refusals */
    uint64_t count;
    uint64_t sum_ms;
    uint64_t bucket[METRICS_N_BUCKETS]; /* non-cumulative; +Inf is count */
};

struct metrics {
    struct metrics_req_row req[METRICS_REQ_ROWS];
    size_t n_req;
    uint64_t series_dropped;
    uint64_t denials_role;           /* on_denied: the gRPC role gate */
};

/* Upper bound in ms of bucket i. */
uint64_t metrics_bucket_le_ms(size_t i);

void metrics_init(struct metrics *m);
/* Count one finished call. method is copied (truncated to the label cap). */
void metrics_observe(struct metrics *m, const char *method, int status,
                     uint64_t duration_ms);

/* Gauges and counters owned elsewhere, gathered by the node at scrape
 * time. A field whose *_known is 0 is not rendered. */
struct metrics_reason {
    const char *reason;   /* static */
    uint64_t value;
};
struct metrics_transition {
    const char *kind;     /* "device_lifecycle", "rollout" */
    const char *from, *to; /* static state / event names */
    uint64_t count;
};
#define METRICS_TRANSITIONS_MAX 96
struct metrics_snapshot {
    unsigned node_id;
    int raft_state;                  /* enum wnode_state */
    const char *raft_state_name;
    uint64_t term, commit_index, applied_index, last_index;
    uint64_t snapshot_index;
    uint64_t snapshots, restores, proposals;
    uint64_t leader_changes;
    int leader_known;
    int snapshot_bytes_known;
    uint64_t snapshot_bytes;
    int wall_offset_known;
    int64_t wall_offset_ms;
    int lmdb_known;
    uint64_t lmdb_map_bytes, lmdb_file_bytes;
    uint64_t inflight, max_inflight, admitted;
    struct metrics_reason admission[METRICS_REASONS_MAX];
    size_t n_admission;
    struct metrics_reason denials[METRICS_REASONS_MAX];
    size_t n_denials;
    int transitions_known;
    struct metrics_transition transitions[METRICS_TRANSITIONS_MAX];
    size_t n_transitions;
    uint64_t connections;
    uint64_t handshakes_deferred;   /* conn_host.n_hs_deferred */
    uint64_t tls_reloads_ok, tls_reloads_failed;
    uint64_t peer_tls_refused;
};

/* A bounded output buffer: appends past max set overflow and are dropped. */
struct metrics_buf {
    char *p;
    size_t len, cap, max;
    int overflow;   /* 1: output truncated, or out of memory */
};
void metrics_buf_init(struct metrics_buf *b, size_t max);
void metrics_buf_free(struct metrics_buf *b);
void metrics_buf_printf(struct metrics_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Escape a label value (exposition format: backslash, double quote and
 * newline). Always NUL-terminates when cap > 0; truncates at a whole
 * escape. Returns the escaped length. */
size_t metrics_escape_label(const char *in, char *out, size_t cap);

/* Render everything. Returns 0, or WERR_LIMIT if the body hit its cap
 * (out->overflow). */
int metrics_render(const struct metrics *m, const struct metrics_snapshot *s,
                   struct metrics_buf *out);

/* ---- the HTTP listener ---------------------------------------------------- */
/* Called for each GET /metrics to fill a snapshot (s is zeroed first). */
typedef void (*metrics_collect_fn)(void *arg, struct metrics_snapshot *s);
/* 1 when /healthz should answer 200 (else 503). */
typedef int (*metrics_healthy_fn)(void *arg);

struct metrics_server {
    uv_loop_t *loop;                 /* borrowed */
    uv_tcp_t tcp;
    int open;                        /* listener handle not yet closed */
    size_t n_conns;
    const struct metrics *m;         /* borrowed */
    metrics_collect_fn collect;
    metrics_healthy_fn healthy;
    void *arg;
    void (*on_closed)(struct metrics_server *s); /* listener and conns gone */
    struct metrics_conn *conns;      /* open connections */
};

/* Bind addr ("ADDR:PORT", "[V6]:PORT") and listen. Returns 0, WERR_CONFIG
 * (bad address, in use) or WERR_IO. On error nothing is left open. */
int metrics_server_start(struct metrics_server *s, uv_loop_t *loop,
                         const char *addr, const struct metrics *m,
                         metrics_collect_fn collect, metrics_healthy_fn healthy,
                         void *arg, struct werr *e);
/* The bound port, or -1. */
int metrics_server_port(const struct metrics_server *s);
/* Close the listener and every connection; on_closed (if set) runs once
 * all handles are closed. */
void metrics_server_close(struct metrics_server *s,
                          void (*on_closed)(struct metrics_server *s));

#endif
