/* lg.h - warden-loadgen's shared state: options, connections, streams,
 * counters. One thread, one epoll loop; nothing here is locked.
 *
 * Ownership: struct lg owns every struct lg_conn (array, fixed at start);
 * a conn owns its SSL, nghttp2 session, output buffer and the streams on
 * its list; a stream's body is owned by the stream and freed with it, in
 * on_stream_close or when the conn dies (lg_conn_fail). */
#ifndef WARDEN_BENCH_LG_H
#define WARDEN_BENCH_LG_H

#include <stddef.h>
#include <stdint.h>

#include <nghttp2/nghttp2.h>
#include <openssl/ssl.h>

#include "hist.h"
#include "tmpl.h"

/* ---- limits: every loop and buffer is bounded ---------------------------- */
#define LG_ENDPOINTS_MAX 16
#define LG_ENDPOINT_LEN 64
#define LG_CALLS_MAX 8            /* --call specs in one run (a mix) */
#define LG_PATH_MAX 128
#define LG_CONNS_MAX 65536        /* the reconnect storm opens 10,000 */
#define LG_STREAMS_MAX 1024       /* per connection; servers cap lower */
#define LG_DURATION_MAX_S 3600    /* also bounds the time series */
#define LG_WARMUP_MAX_S 120
/* Open loop: intended sends waiting for a free stream. Beyond it a send is
 * dropped and counted (BACKLOG), so an overloaded server cannot make the
 * generator's memory grow without bound. */
#define LG_BACKLOG_MAX (1u << 20)
/* After the run, in-flight calls get this long to finish. */
#define LG_DRAIN_MS 5000u
/* Reconnect backoff after a connection fails: doubles from MIN to MAX. */
#define LG_RECONNECT_MIN_MS 20u
#define LG_RECONNECT_MAX_MS 500u
/* Bytes of nghttp2 output gathered before one SSL_write. */
#define LG_OUTBUF 65536u
/* Per-stream/connection receive window we advertise: a reply never waits
 * on a WINDOW_UPDATE round trip. */
#define LG_H2_WINDOW (1u << 20)
#define LG_ERRMSG_MAX 160

/* Outcomes: gRPC codes 0..16, then the generator's own. */
enum {
    LG_ST_TRANSPORT = 17,   /* connection lost or stream reset, no status */
    LG_ST_BACKLOG = 18,     /* open loop: dropped, backlog full */
    LG_ST_N = 19,
};
const char *lg_status_name(int st);

struct lg_call_spec {
    char path[LG_PATH_MAX];
    int tmpl;
    unsigned weight;
    uint64_t sent, ok;
    uint64_t by_status[LG_ST_N];
    struct lg_hist hist;      /* OK latencies, measured window only */
};

struct lg_opts {
    char endpoints[LG_ENDPOINTS_MAX][LG_ENDPOINT_LEN];
    size_t n_endpoints;
    const char *cacert, *cert, *key;
    struct lg_call_spec calls[LG_CALLS_MAX];
    size_t n_calls;
    unsigned weight_total;
    struct lg_tmpl_cfg tc;
    unsigned conns, streams;  /* closed loop: conns * streams in flight */
    unsigned active_conns;    /* conns that carry calls (0 = all) */
    int idle;                 /* --idle: no conn carries calls (storms) */
    double rate;              /* > 0: open loop, calls/s */
    double duration_s, warmup_s;
    uint64_t max_requests;    /* 0 = unbounded (duration still applies) */
    uint64_t timeout_ms;      /* grpc-timeout per call */
    uint64_t connect_timeout_ms;
    double connect_rate;      /* conns/s opened at start; 0 = all at once */
    int follow_leader;
    const char *out, *svg, *label;
};

struct lg_conn;

struct lg_stream {
    struct lg_conn *c;
    struct lg_stream *prev, *next;  /* the conn's list of open streams */
    int32_t id;
    int spec;                       /* index into opts.calls */
    uint64_t t_intended;            /* ns, latency is measured from here */
    int http_status;
    int grpc_status;                /* -1 until seen */
    char leader[LG_ENDPOINT_LEN];   /* warden-leader trailer, or "" */
    char msg[LG_ERRMSG_MAX];        /* grpc-message, first bytes */
    size_t body_len, body_off;
    uint8_t body[];                 /* 5-byte prefix + message */
};

enum lg_conn_state {
    LG_C_IDLE,        /* not yet opened, or waiting to reconnect */
    LG_C_CONNECTING,  /* TCP connect in progress */
    LG_C_HANDSHAKE,   /* TLS handshake in progress */
    LG_C_READY,
    LG_C_DRAINING,    /* no new calls; reconnects when empty */
};

struct lg_conn {
    struct lg *lg;
    unsigned idx;
    int fd;
    enum lg_conn_state st;
    SSL *ssl;
    nghttp2_session *h2;
    char endpoint[LG_ENDPOINT_LEN]; /* current target */
    unsigned ep_idx;                /* into opts.endpoints; advances on failure */
    unsigned inflight;
    struct lg_stream *streams;
    uint8_t *out;                   /* LG_OUTBUF bytes, owned */
    size_t out_len, out_off;
    int want_write;                 /* EPOLLOUT registered */
    uint32_t ev;                    /* current epoll interest */
    uint64_t t_open;                /* ns: connect() issued */
    uint64_t reconnect_at;          /* ns, LG_C_IDLE only; 0 = not scheduled */
    unsigned backoff_ms;
    int active;                     /* carries calls */
    int dirty;                      /* on lg->dirty list */
    struct lg_conn *dirty_next;
};

/* One second of the measured window. */
struct lg_second {
    uint64_t ok, err, handshakes;
    struct lg_hist *hist;           /* allocated on first OK in that second */
};

struct lg {
    struct lg_opts o;
    int ep;                         /* epoll fd */
    SSL_CTX *ssl_ctx;
    struct lg_conn *conns;
    unsigned n_conns;
    struct lg_conn **active;        /* conns with active=1, for dispatch */
    unsigned n_active, rr;
    struct lg_conn *dirty;
    uint64_t rng;
    char leader[LG_ENDPOINT_LEN];   /* learned from warden-leader, or "" */

    /* clock: monotonic ns; unix_ms = (mono - mono0)/1e6 + unix0_ms */
    uint64_t mono0, unix0_ms;
    uint64_t t_start;               /* after connections are opened */
    uint64_t t_measure;             /* warmup end */
    uint64_t t_end;                 /* stop issuing */
    int measuring, stopping;

    /* issue accounting */
    uint64_t issued, write_seq;
    unsigned inflight;              /* calls open on all conns */
    /* open loop */
    uint64_t *backlog;              /* ring of intended send times */
    size_t bl_head, bl_len;
    uint64_t next_due, n_due;

    /* results (measured window unless noted) */
    struct lg_hist hist;
    uint64_t ok, by_status[LG_ST_N];
    char first_msg[LG_ST_N][LG_ERRMSG_MAX];  /* a sample message per status */
    uint64_t bytes_in, bytes_out;
    struct lg_second *secs;
    size_t n_secs;
    /* all phases: connection lifecycle */
    uint64_t handshakes, handshake_fail, connect_fail, conn_lost, reconnects,
        redirects, goaways;
    char conn_fail_msg[LG_ERRMSG_MAX]; /* first connect/handshake failure */
    struct lg_hist hs_hist;         /* connect()+TLS handshake time */
    uint64_t hs_first, hs_last;     /* ns of the first / last handshake */
    /* availability: longest gap between OK completions (failover) */
    uint64_t last_ok, max_gap, gap_from, gap_to;
    uint64_t first_err, last_err;   /* ns, 0 = none */
    unsigned max_inflight_seen;
    uint64_t t_done;
};

/* clock.c-free helpers (loadgen.c) */
uint64_t lg_now(void);
uint64_t lg_unix_ms(const struct lg *lg, uint64_t mono_ns);

/* conn.c: transport */
int lg_tls_init(struct lg *lg);
void lg_conn_open(struct lg_conn *c);
void lg_conn_event(struct lg_conn *c, uint32_t events);
void lg_conn_flush(struct lg_conn *c);
void lg_conn_fail(struct lg_conn *c, const char *why);
void lg_conn_close_all(struct lg *lg);
/* Submit one call on a READY conn with free stream slots. 0 or -1. */
int lg_conn_submit(struct lg_conn *c, int spec, uint64_t t_intended);
void lg_mark_dirty(struct lg_conn *c);

/* loadgen.c: callbacks from conn.c */
void lg_on_call_done(struct lg *lg, struct lg_stream *s, int status);
void lg_on_ready(struct lg *lg, struct lg_conn *c);

/* report.c */
int lg_report_json(struct lg *lg, const char *path);
int lg_report_svg(struct lg *lg, const char *path);
void lg_report_text(struct lg *lg);

#endif
