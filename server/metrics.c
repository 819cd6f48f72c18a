/* metrics.c - Prometheus registry, renderer and the /metrics listener
 * (metrics.h). */
#include "metrics.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/log.h"

/* Latency buckets (ms): 1 ms .. 10 s. A local write is an fsync (~1-10 ms);
 * a cluster write one more round trip; anything near the top is a stuck
 * leader or a deadline. */
static const uint64_t bucket_le_ms[METRICS_N_BUCKETS] = {
    1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000};

uint64_t metrics_bucket_le_ms(size_t i)
{
    return i < METRICS_N_BUCKETS ? bucket_le_ms[i] : UINT64_MAX;
}

void metrics_init(struct metrics *m)
{
    memset(m, 0, sizeof *m);
}

void metrics_observe(struct metrics *m, const char *method, int status,
                     uint64_t duration_ms)
{
    struct metrics_req_row *r = NULL;
    for (size_t i = 0; i < m->n_req; i++) {
        if (m->req[i].status == status &&
            strncmp(m->req[i].method, method, METRICS_LABEL_MAX - 1) == 0) {
            r = &m->req[i];
            break;
        }
    }
    if (r == NULL) {
        if (m->n_req >= METRICS_REQ_ROWS) {
            m->series_dropped++;
            return;
        }
        r = &m->req[m->n_req++];
        snprintf(r->method, sizeof r->method, "%s", method);
        r->status = status;
    }
    r->count++;
    r->sum_ms += duration_ms;
    for (size_t i = 0; i < METRICS_N_BUCKETS; i++) {
        if (duration_ms <= bucket_le_ms[i]) {
            r->bucket[i]++;
            break;
        }
    }
}

/* ---- buffer -------------------------------------------------------------- */

void metrics_buf_init(struct metrics_buf *b, size_t max)
{
    memset(b, 0, sizeof *b);
    b->max = max;
}

void metrics_buf_free(struct metrics_buf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

void metrics_buf_printf(struct metrics_buf *b, const char *fmt, ...)
{
    if (b->overflow) {
        return;
    }
    for (;;) {
        size_t room = b->cap - b->len;
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p != NULL ? b->p + b->len : NULL, room, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->overflow = 1;
            return;
        }
        if ((size_t)n < room) {
            b->len += (size_t)n;
            return;
        }
        size_t need = b->len + (size_t)n + 1;
        if (need > b->max) {
            b->overflow = 1;
            return;
        }
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < need) {
            cap *= 2;
        }
        if (cap > b->max) {
            cap = b->max;
        }
        char *np = realloc(b->p, cap);
        if (np == NULL) {
            b->overflow = 1;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
}

size_t metrics_escape_label(const char *in, char *out, size_t cap)
{
    size_t o = 0;
    if (cap == 0) {
        return 0;
    }
    for (; *in != '\0'; in++) {
        const char *rep = NULL;
        char one[2] = {*in, '\0'};
        switch (*in) {
        case '\\': rep = "\\\\"; break;
        case '"': rep = "\\\""; break;
        case '\n': rep = "\\n"; break;
        default: rep = one; break;
        }
        size_t rl = strlen(rep);
        if (o + rl >= cap) {
            break;
        }
        memcpy(out + o, rep, rl);
        o += rl;
    }
    out[o] = '\0';
    return o;
}

/* ---- rendering ----------------------------------------------------------- */

static void header(struct metrics_buf *b, const char *name, const char *type,
                   const char *help)
{
    metrics_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void gauge_u(struct metrics_buf *b, const char *name, const char *help,
                    uint64_t v)
{
    header(b, name, "gauge", help);
    metrics_buf_printf(b, "%s %" PRIu64 "\n", name, v);
}

static void counter_u(struct metrics_buf *b, const char *name, const char *help,
                      uint64_t v)
{
    header(b, name, "counter", help);
    metrics_buf_printf(b, "%s %" PRIu64 "\n", name, v);
}

static const char *status_label(int status, char *buf, size_t cap)
{
    if (status < 0) {
        return "HTTP_REFUSED";
    }
    snprintf(buf, cap, "%s", grpc_status_name(status));
    return buf;
}

static void render_requests(const struct metrics *m, struct metrics_buf *b)
{
    char meth[METRICS_LABEL_MAX * 2 + 1], st[32];
    header(b, "warden_grpc_requests_total", "counter",
           "gRPC calls finished, by method and final status.");
    for (size_t i = 0; i < m->n_req; i++) {
        const struct metrics_req_row *r = &m->req[i];
        metrics_escape_label(r->method, meth, sizeof meth);
        metrics_buf_printf(b, "warden_grpc_requests_total{method=\"%s\",status=\"%s\"} %" PRIu64
                              "\n",
                           meth, status_label(r->status, st, sizeof st), r->count);
    }
    header(b, "warden_grpc_request_duration_seconds", "histogram",
           "gRPC call latency from request headers to stream close, by method and status.");
    for (size_t i = 0; i < m->n_req; i++) {
        const struct metrics_req_row *r = &m->req[i];
        metrics_escape_label(r->method, meth, sizeof meth);
        status_label(r->status, st, sizeof st);
        uint64_t cum = 0;
        for (size_t k = 0; k < METRICS_N_BUCKETS; k++) {
            cum += r->bucket[k];
            metrics_buf_printf(b,
                               "warden_grpc_request_duration_seconds_bucket{method=\"%s\","
                               "status=\"%s\",le=\"%" PRIu64 ".%03" PRIu64 "\"} %" PRIu64 "\n",
                               meth, st, bucket_le_ms[k] / 1000, bucket_le_ms[k] % 1000, cum);
        }
        metrics_buf_printf(b,
                           "warden_grpc_request_duration_seconds_bucket{method=\"%s\","
                           "status=\"%s\",le=\"+Inf\"} %" PRIu64 "\n",
                           meth, st, r->count);
        metrics_buf_printf(b,
                           "warden_grpc_request_duration_seconds_sum{method=\"%s\",status=\"%s\"} "
                           "%" PRIu64 ".%03" PRIu64 "\n",
                           meth, st, r->sum_ms / 1000, r->sum_ms % 1000);
        metrics_buf_printf(b,
                           "warden_grpc_request_duration_seconds_count{method=\"%s\",status=\"%s\"} "
                           "%" PRIu64 "\n",
                           meth, st, r->count);
    }
    counter_u(b, "warden_metrics_series_dropped_total",
              "Observations not recorded because the request series table was full.",
              m->series_dropped);
}

static void render_reasons(struct metrics_buf *b, const char *name, const char *help,
                           const struct metrics_reason *r, size_t n)
{
    header(b, name, "counter", help);
    char lab[64];
    for (size_t i = 0; i < n; i++) {
        metrics_escape_label(r[i].reason, lab, sizeof lab);
        metrics_buf_printf(b, "%s{reason=\"%s\"} %" PRIu64 "\n", name, lab, r[i].value);
    }
}

int metrics_render(const struct metrics *m, const struct metrics_snapshot *s,
                   struct metrics_buf *out)
{
    struct metrics_buf *b = out;
    char lab[64];
    render_requests(m, b);
    render_reasons(b, "warden_authz_denials_total",
                   "Authorization denials decided by the server without a Raft write, by reason.",
                   s->denials, s->n_denials);
    render_reasons(b, "warden_admission_rejections_total",
                   "Calls refused with RESOURCE_EXHAUSTED by admission control, by reason.",
                   s->admission, s->n_admission);
    counter_u(b, "warden_admission_admitted_total", "Calls admitted by admission control.",
              s->admitted);
    gauge_u(b, "warden_inflight_calls", "Calls admitted and not yet finished.", s->inflight);
    gauge_u(b, "warden_inflight_calls_max", "Configured cap on in-flight calls (max_inflight).",
            s->max_inflight);
    gauge_u(b, "warden_connections", "Open client connections (including handshakes).",
            s->connections);
    counter_u(b, "warden_tls_handshakes_deferred_total",
              "TLS handshake steps that waited for a later loop iteration "
              "(CONN_HANDSHAKES_PER_ITER).",
              s->handshakes_deferred);

    if (s->transitions_known) {
        header(b, "warden_rejected_transitions_total", "counter",
               "Refused state-machine transitions recorded in the replicated state "
               "(expected 0 in normal operation), by kind, from and to/event.");
        for (size_t i = 0; i < s->n_transitions; i++) {
            const struct metrics_transition *t = &s->transitions[i];
            char f[64], to[64];
            metrics_escape_label(t->kind, lab, sizeof lab);
            metrics_escape_label(t->from, f, sizeof f);
            metrics_escape_label(t->to, to, sizeof to);
            metrics_buf_printf(b,
                               "warden_rejected_transitions_total{kind=\"%s\",from=\"%s\","
                               "to=\"%s\"} %" PRIu64 "\n",
                               lab, f, to, t->count);
        }
    }

    header(b, "warden_raft_state", "gauge",
           "1 for this node's current Raft role (label state).");
    metrics_escape_label(s->raft_state_name ? s->raft_state_name : "unknown", lab, sizeof lab);
    metrics_buf_printf(b, "warden_raft_state{state=\"%s\"} 1\n", lab);
    gauge_u(b, "warden_raft_node_id", "This node's Raft server id.", s->node_id);
    gauge_u(b, "warden_raft_term", "Current Raft term.", s->term);
    gauge_u(b, "warden_raft_commit_index", "Highest Raft log index known committed.",
            s->commit_index);
    gauge_u(b, "warden_raft_applied_index", "Highest Raft log index applied here.",
            s->applied_index);
    gauge_u(b, "warden_raft_last_index", "Last index in the local Raft log.", s->last_index);
    gauge_u(b, "warden_raft_snapshot_index", "Index of the last snapshot (0: none).",
            s->snapshot_index);
    gauge_u(b, "warden_raft_leader_known", "1 when this node knows a leader.",
            (uint64_t)(s->leader_known != 0));
    counter_u(b, "warden_raft_leader_changes_total",
              "Leader changes observed by this node (polled every 100 ms).", s->leader_changes);
    counter_u(b, "warden_raft_snapshots_total", "Snapshots taken by this node since start.",
              s->snapshots);
    counter_u(b, "warden_raft_snapshot_restores_total",
              "Snapshot restores (installs) run by this node since start.", s->restores);
    counter_u(b, "warden_raft_proposals_total", "Commands handed to Raft since start.",
              s->proposals);
    counter_u(b, "warden_raft_peer_tls_refused_total",
              "Raft peer connections refused by the transport.", s->peer_tls_refused);
    if (s->snapshot_bytes_known) {
        gauge_u(b, "warden_raft_snapshot_bytes", "Size on disk of the newest snapshot.",
                s->snapshot_bytes);
    }
    if (s->wall_offset_known) {
        header(b, "warden_wall_clock_offset_seconds", "gauge",
               "Local wall clock minus the leader's, from the newest committed Tick "
               "(includes one commit latency).");
        int64_t v = s->wall_offset_ms;
        uint64_t a = v < 0 ? (uint64_t)(-(v + 1)) + 1 : (uint64_t)v;
        metrics_buf_printf(b, "warden_wall_clock_offset_seconds %s%" PRIu64 ".%03" PRIu64 "\n",
                           v < 0 ? "-" : "", a / 1000, a % 1000);
    }
    if (s->lmdb_known) {
        gauge_u(b, "warden_lmdb_map_size_bytes", "Configured LMDB map size.",
                s->lmdb_map_bytes);
        gauge_u(b, "warden_lmdb_file_bytes",
                "Size on disk of the LMDB data file (pages ever used).", s->lmdb_file_bytes);
    }
    counter_u(b, "warden_tls_reloads_total", "Successful certificate reloads (SIGHUP).",
              s->tls_reloads_ok);
    counter_u(b, "warden_tls_reload_failures_total",
              "Certificate reloads refused (the old certificate stays in use).",
              s->tls_reloads_failed);
    return b->overflow ? WERR_LIMIT : 0;
}

/* ---- HTTP listener ------------------------------------------------------- */

struct metrics_conn {
    struct metrics_server *srv;
    struct metrics_conn *prev, *next;
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_write_t wreq;
    int pending_closes;
    int closing;
    int responded;
    size_t len;
    char *resp;                     /* owned while the write is pending */
    char buf[METRICS_REQ_MAX];
};

static void srv_maybe_closed(struct metrics_server *s)
{
    if (!s->open && s->n_conns == 0 && s->on_closed != NULL) {
        void (*cb)(struct metrics_server *) = s->on_closed;
        s->on_closed = NULL;
        cb(s);
    }
}

static void mconn_close_cb(uv_handle_t *h)
{
    struct metrics_conn *c = h->data;
    if (--c->pending_closes > 0) {
        return;
    }
    struct metrics_server *s = c->srv;
    if (c->prev != NULL) {
        c->prev->next = c->next;
    } else {
        s->conns = c->next;
    }
    if (c->next != NULL) {
        c->next->prev = c->prev;
    }
    s->n_conns--;
    free(c->resp);
    free(c);
    srv_maybe_closed(s);
}

static void mconn_close(struct metrics_conn *c)
{
    if (c->closing) {
        return;
    }
    c->closing = 1;
    c->pending_closes = 2;
    uv_close((uv_handle_t *)&c->tcp, mconn_close_cb);
    uv_close((uv_handle_t *)&c->timer, mconn_close_cb);
}

static void write_cb(uv_write_t *req, int status)
{
    struct metrics_conn *c = req->data;
    (void)status;
    /* One request per connection (Connection: close). */
    mconn_close(c);
}

static void respond(struct metrics_conn *c, const char *status, const char *ctype,
                    const char *body, size_t blen)
{
    if (c->responded) {
        return;
    }
    c->responded = 1;
    uv_read_stop((uv_stream_t *)&c->tcp);
    char head[256];
    int hl = snprintf(head, sizeof head,
                      "HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                      "Connection: close\r\n\r\n",
                      status, ctype, blen);
    c->resp = malloc((size_t)hl + blen);
    if (c->resp == NULL) {
        mconn_close(c);
        return;
    }
    memcpy(c->resp, head, (size_t)hl);
    if (blen > 0) {
        memcpy(c->resp + hl, body, blen);
    }
    uv_buf_t ub = uv_buf_init(c->resp, (unsigned)((size_t)hl + blen));
    c->wreq.data = c;
    if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &ub, 1, write_cb) != 0) {
        mconn_close(c);
    }
}

static void respond_text(struct metrics_conn *c, const char *status, const char *text)
{
    respond(c, status, "text/plain; charset=utf-8", text, strlen(text));
}

/* A complete head is in buf: answer it. Only GET /metrics and GET /healthz
 * (query strings ignored); HEAD is not supported. */
static void handle(struct metrics_conn *c)
{
    struct metrics_server *s = c->srv;
    const char *sp1 = memchr(c->buf, ' ', c->len);
    if (sp1 == NULL) {
        respond_text(c, "400 Bad Request", "bad request\n");
        return;
    }
    size_t mlen = (size_t)(sp1 - c->buf);
    const char *target = sp1 + 1;
    const char *end = c->buf + c->len;
    const char *sp2 = memchr(target, ' ', (size_t)(end - target));
    if (sp2 == NULL || (size_t)(end - sp2) < 9 || memcmp(sp2 + 1, "HTTP/1.", 7) != 0) {
        respond_text(c, "400 Bad Request", "bad request\n");
        return;
    }
    size_t tlen = (size_t)(sp2 - target);
    const char *q = memchr(target, '?', tlen);
    if (q != NULL) {
        tlen = (size_t)(q - target);
    }
    int is_metrics = tlen == 8 && memcmp(target, "/metrics", 8) == 0;
    int is_health = tlen == 8 && memcmp(target, "/healthz", 8) == 0;
    if (!is_metrics && !is_health) {
        respond_text(c, "404 Not Found", "not found: try /metrics or /healthz\n");
        return;
    }
    if (mlen != 3 || memcmp(c->buf, "GET", 3) != 0) {
        respond_text(c, "405 Method Not Allowed", "only GET\n");
        return;
    }
    if (is_health) {
        int ok = s->healthy == NULL || s->healthy(s->arg);
        respond_text(c, ok ? "200 OK" : "503 Service Unavailable",
                     ok ? "ok\n" : "not serving\n");
        return;
    }
    struct metrics_snapshot *snap = calloc(1, sizeof *snap);
    if (snap == NULL) {
        respond_text(c, "503 Service Unavailable", "out of memory\n");
        return;
    }
    if (s->collect != NULL) {
        s->collect(s->arg, snap);
    }
    struct metrics_buf b;
    metrics_buf_init(&b, METRICS_BODY_MAX);
    int rc = metrics_render(s->m, snap, &b);
    free(snap);
    if (rc != 0) {
        metrics_buf_free(&b);
        respond_text(c, "500 Internal Server Error", "metrics body over its cap\n");
        return;
    }
    respond(c, "200 OK", "text/plain; version=0.0.4; charset=utf-8", b.p, b.len);
    metrics_buf_free(&b);
}

static void m_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct metrics_conn *c = h->data;
    (void)suggested;
    *buf = uv_buf_init(c->buf + c->len, (unsigned)(sizeof c->buf - c->len));
}

static void m_read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    struct metrics_conn *c = st->data;
    (void)buf;
    if (nread == 0) {
        return;
    }
    if (nread < 0) {
        mconn_close(c);
        return;
    }
    c->len += (size_t)nread;
    /* RFC 9112 §2.1: the head ends at the empty line. */
    for (size_t i = 3; i < c->len; i++) {
        if (c->buf[i - 3] == '\r' && c->buf[i - 2] == '\n' && c->buf[i - 1] == '\r' &&
            c->buf[i] == '\n') {
            uv_timer_stop(&c->timer);
            handle(c);
            return;
        }
    }
    if (c->len >= sizeof c->buf) {
        respond_text(c, "431 Request Header Fields Too Large", "request too large\n");
    }
}

static void m_timer_cb(uv_timer_t *t)
{
    mconn_close(t->data);
}

static void m_connection_cb(uv_stream_t *server, int status)
{
    struct metrics_server *s = server->data;
    if (status < 0) {
        return;
    }
    struct metrics_conn *c = calloc(1, sizeof *c);
    if (c == NULL) {
        return;
    }
    c->srv = s;
    if (uv_tcp_init(s->loop, &c->tcp) != 0) {
        free(c);
        return;
    }
    uv_timer_init(s->loop, &c->timer);
    c->tcp.data = c->timer.data = c;
    c->next = s->conns;
    if (s->conns != NULL) {
        s->conns->prev = c;
    }
    s->conns = c;
    s->n_conns++;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
        mconn_close(c);
        return;
    }
    if (s->n_conns > METRICS_CONNS_MAX) {
        mconn_close(c);
        return;
    }
    uv_timer_start(&c->timer, m_timer_cb, METRICS_READ_TIMEOUT_MS, 0);
    if (uv_read_start((uv_stream_t *)&c->tcp, m_alloc_cb, m_read_cb) != 0) {
        mconn_close(c);
    }
}

static void listener_closed_cb(uv_handle_t *h)
{
    struct metrics_server *s = h->data;
    s->open = 0;
    srv_maybe_closed(s);
}

int metrics_server_start(struct metrics_server *s, uv_loop_t *loop,
                         const char *addr, const struct metrics *m,
                         metrics_collect_fn collect, metrics_healthy_fn healthy,
                         void *arg, struct werr *e)
{
    memset(s, 0, sizeof *s);
    s->loop = loop;
    s->m = m;
    s->collect = collect;
    s->healthy = healthy;
    s->arg = arg;
    struct sockaddr_storage ss;
    char host[64];
    const char *colon = strrchr(addr, ':');
    if (colon == NULL || colon == addr || (size_t)(colon - addr) >= sizeof host) {
        return werr_set(e, WERR_CONFIG, "--metrics-listen %s: want ADDR:PORT", addr);
    }
    const char *h = addr;
    size_t hlen = (size_t)(colon - addr);
    if (h[0] == '[' && hlen >= 2 && h[hlen - 1] == ']') {
        h++;
        hlen -= 2;
    }
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    char *end = NULL;
    errno = 0;
    long port = strtol(colon + 1, &end, 10);
    if (errno != 0 || end == colon + 1 || *end != '\0' || port < 0 || port > 65535) {
        return werr_set(e, WERR_CONFIG, "--metrics-listen %s: port must be 0..65535", addr);
    }
    memset(&ss, 0, sizeof ss);
    if (uv_ip4_addr(host, (int)port, (struct sockaddr_in *)&ss) != 0 &&
        uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)&ss) != 0) {
        return werr_set(e, WERR_CONFIG, "--metrics-listen %s: \"%s\" is not an IP address",
                        addr, host);
    }
    int rc = uv_tcp_init(loop, &s->tcp);
    if (rc != 0) {
        return werr_set(e, WERR_IO, "metrics listener: %s", uv_strerror(rc));
    }
    s->tcp.data = s;
    s->open = 1;
    rc = uv_tcp_bind(&s->tcp, (const struct sockaddr *)&ss, 0);
    if (rc == 0) {
        rc = uv_listen((uv_stream_t *)&s->tcp, 64, m_connection_cb);
    }
    if (rc != 0) {
        werr_set(e, WERR_CONFIG, "--metrics-listen %s: %s", addr, uv_strerror(rc));
        uv_close((uv_handle_t *)&s->tcp, listener_closed_cb);
        return WERR_CONFIG;
    }
    return 0;
}

int metrics_server_port(const struct metrics_server *s)
{
    struct sockaddr_storage ss;
    int len = sizeof ss;
    if (!s->open || uv_tcp_getsockname(&s->tcp, (struct sockaddr *)&ss, &len) != 0) {
        return -1;
    }
    if (ss.ss_family == AF_INET) {
        return ntohs(((const struct sockaddr_in *)&ss)->sin_port);
    }
    return ntohs(((const struct sockaddr_in6 *)&ss)->sin6_port);
}

void metrics_server_close(struct metrics_server *s,
                          void (*on_closed)(struct metrics_server *s))
{
    s->on_closed = on_closed;
    for (struct metrics_conn *c = s->conns; c != NULL; c = c->next) {
        mconn_close(c);
    }
    if (s->open && !uv_is_closing((uv_handle_t *)&s->tcp)) {
        uv_close((uv_handle_t *)&s->tcp, listener_closed_cb);
        return;
    }
    srv_maybe_closed(s);
}
