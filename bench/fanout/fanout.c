/* fanout.c - warden-fanout: revocation fan-out latency, warden vs etcd
 * (issue 8, scenario 7; bench/scenarios/fanout.sh drives it).
 *
 * N watchers (one gRPC stream each, S per HTTP/2 connection, connections
 * spread round-robin over --endpoints, over P forked processes), then K
 * events written one after another by a writer on its own connection:
 *
 *   warden  watcher: /warden.v1.Access/WatchRevocations (server streaming)
 *           writer:  /warden.v1.Access/RevokeGrant{grant_id from --ids}
 *   etcd    watcher: /etcdserverpb.Watch/Watch (bidi), one WatchCreateRequest
 *                    on the prefix, the stream kept open
 *           writer:  /etcdserverpb.KV/Put{prefix + "e<j>", value}
 *
 * For each event: t_ack = CLOCK_MONOTONIC when the writer's call ended with
 * grpc-status 0; every watcher process records, per event, how many of its
 * watchers received it and the first and last receive time (CLOCK_MONOTONIC
 * in the callback that completed the gRPC message; the clock is shared by
 * every process on the host). Latency = last receive - t_ack over all
 * processes. The writer waits until every watcher has the event (or
 * --event-timeout-ms), then --gap-ms, then writes the next, so events never
 * overlap; the pause is --gap-ms plus a uniform random 0..--gap-jitter-ms
 * (default 100) so writes do not phase-lock to a server timer. A watcher
 * is "ready" when its first message arrives (warden's
 * first progress message, etcd's `created` response); events start once
 * all are ready.
 *
 * Output: one JSON object (--out, else stdout) with every event and
 * p50/p99/max. Progress on stderr.
 *
 * Limits: every loop is bounded (--events, timeouts); the stream receive
 * buffer is capped (FO_MSG_MAX); each watcher process handles its streams on
 * one thread, so with P processes on C cores the client's own receive cost
 * is part of what is measured: the JSON records cpu_count, procs and the
 * client's CPU time so the reader can judge. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <nghttp2/nghttp2.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

/* ---- limits ------------------------------------------------------------- */
#define FO_ENDPOINTS_MAX 8
#define FO_ENDPOINT_LEN 64
#define FO_WATCHERS_MAX 65536u
#define FO_STREAMS_MAX 128u      /* warden's GRPC_MAX_STREAMS_DEFAULT */
#define FO_PROCS_MAX 16u
#define FO_EVENTS_MAX 1000u
#define FO_ID_LEN 64
/* One gRPC message we accept on a watch stream (warden sends at most 64
 * events of ~5 KiB; etcd one event here). */
#define FO_MSG_MAX ((size_t)4 << 20)
#define FO_READ_CHUNK (64u << 10)
#define FO_READS_PER_EVENT 64
#define FO_EPOLL_BATCH 256
#define FO_READY_TIMEOUT_S_MAX 600
#define FO_EVENT_TIMEOUT_MS_MAX 60000u
#define FO_GAP_MS_MAX 10000u
#define FO_H2_WINDOW (1u << 20)
#define FO_ERRMSG 160

enum fo_system { SYS_WARDEN, SYS_ETCD };

struct fo_opts {
    enum fo_system sys;
    char eps[FO_ENDPOINTS_MAX][FO_ENDPOINT_LEN];
    unsigned n_eps;
    const char *cacert, *cert, *key;
    char writer[FO_ENDPOINT_LEN];
    const char *wcert, *wkey;
    unsigned watchers, streams, procs, events;
    const char *ids_file;
    char ids[FO_EVENTS_MAX][FO_ID_LEN];
    const char *prefix;
    unsigned value_size;
    unsigned gap_ms, gap_jitter_ms, event_timeout_ms, ready_timeout_s;
    const char *label, *out;
};

static struct fo_opts O;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "warden-fanout: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(2);
}

/* ---- protobuf: just enough to build requests and find our events ------- */
struct pb {
    uint8_t *p;
    size_t len, cap;
};

static void pb_byte(struct pb *b, uint8_t v)
{
    if (b->len == b->cap) {
        b->cap = b->cap ? b->cap * 2 : 256;
        b->p = realloc(b->p, b->cap);
        if (b->p == NULL) {
            die("out of memory");
        }
    }
    b->p[b->len++] = v;
}

static void pb_varint(struct pb *b, uint64_t v)
{
    while (v >= 0x80) {
        pb_byte(b, (uint8_t)(v | 0x80));
        v >>= 7;
    }
    pb_byte(b, (uint8_t)v);
}

static void pb_bytes(struct pb *b, unsigned field, const void *d, size_t n)
{
    pb_varint(b, (uint64_t)field << 3 | 2);
    pb_varint(b, n);
    for (size_t i = 0; i < n; i++) {
        pb_byte(b, ((const uint8_t *)d)[i]);
    }
}

/* Wrap a message in the 5-byte gRPC prefix. */
static void grpc_frame(struct pb *out, const struct pb *msg)
{
    pb_byte(out, 0);
    for (int s = 24; s >= 0; s -= 8) {
        pb_byte(out, (uint8_t)(msg->len >> s));
    }
    for (size_t i = 0; i < msg->len; i++) {
        pb_byte(out, msg->p[i]);
    }
}

/* Read one field; 1 ok, 0 end, -1 malformed. For wire type 2, d and n give the
 * payload; for varints, v. */
static int pb_next(const uint8_t **p, const uint8_t *end, unsigned *field,
                   unsigned *wt, uint64_t *v, const uint8_t **d, size_t *n)
{
    if (*p >= end) {
        return 0;
    }
    uint64_t key = 0;
    for (int s = 0;; s += 7) {
        if (*p >= end || s > 63) {
            return -1;
        }
        uint8_t c = *(*p)++;
        key |= (uint64_t)(c & 0x7f) << s;
        if (!(c & 0x80)) {
            break;
        }
    }
    *field = (unsigned)(key >> 3);
    *wt = (unsigned)(key & 7);
    switch (*wt) {
    case 0:
        *v = 0;
        for (int s = 0;; s += 7) {
            if (*p >= end || s > 63) {
                return -1;
            }
            uint8_t c = *(*p)++;
            *v |= (uint64_t)(c & 0x7f) << s;
            if (!(c & 0x80)) {
                break;
            }
        }
        return 1;
    case 1:
        if (end - *p < 8) {
            return -1;
        }
        *p += 8;
        return 1;
    case 5:
        if (end - *p < 4) {
            return -1;
        }
        *p += 4;
        return 1;
    case 2: {
        uint64_t l = 0;
        for (int s = 0;; s += 7) {
            if (*p >= end || s > 63) {
                return -1;
            }
            uint8_t c = *(*p)++;
            l |= (uint64_t)(c & 0x7f) << s;
            if (!(c & 0x80)) {
                break;
            }
        }
        if (l > (uint64_t)(end - *p)) {
            return -1;
        }
        *d = *p;
        *n = (size_t)l;
        *p += l;
        return 1;
    }
    default:
        return -1;
    }
}

/* Find a length-delimited field in a message; 1 found, 0 not, -1 bad. */
static int pb_find(const uint8_t *p, size_t len, unsigned want, const uint8_t **d,
                   size_t *n)
{
    const uint8_t *end = p + len;
    unsigned f, wt;
    uint64_t v;
    int r;
    while ((r = pb_next(&p, end, &f, &wt, &v, d, n)) == 1) {
        if (f == want && wt == 2) {
            return 1;
        }
    }
    return r;
}

/* ---- events: id -> index ------------------------------------------------ */
struct id_ix {
    const char *id;
    unsigned ix;
};
static struct id_ix *id_sorted;

static int id_cmp(const void *a, const void *b)
{
    return strcmp(((const struct id_ix *)a)->id, ((const struct id_ix *)b)->id);
}

static void ids_index(void)
{
    id_sorted = calloc(O.events, sizeof *id_sorted);
    if (id_sorted == NULL) {
        die("out of memory");
    }
    for (unsigned i = 0; i < O.events; i++) {
        id_sorted[i].id = O.ids[i];
        id_sorted[i].ix = i;
    }
    qsort(id_sorted, O.events, sizeof *id_sorted, id_cmp);
}

/* Event index of an id (length n, not NUL-terminated), or -1. */
static int id_lookup(const uint8_t *d, size_t n)
{
    char key[FO_ID_LEN];
    if (n == 0 || n >= sizeof key) {
        return -1;
    }
    memcpy(key, d, n);
    key[n] = '\0';
    struct id_ix k = {.id = key};
    const struct id_ix *hit = bsearch(&k, id_sorted, O.events, sizeof *id_sorted, id_cmp);
    return hit ? (int)hit->ix : -1;
}

/* ---- connections -------------------------------------------------------- */
struct conn;

enum { ST_WATCH, ST_UNARY };

struct stream {
    struct conn *c;
    int kind;
    int32_t id;
    int ready;             /* first message seen */
    int closed;
    int grpc_status;       /* -1 until the trailers */
    char msg[FO_ERRMSG];
    const struct pb *body; /* request (framed), borrowed */
    size_t body_off;
    int body_eof;          /* half-close after the body (unary, server stream) */
    uint8_t *buf;          /* partial gRPC message */
    size_t len, cap;
};

struct conn {
    int fd;
    unsigned ep;           /* endpoint index (per-node breakdown) */
    SSL *ssl;
    nghttp2_session *h2;
    uint8_t *out;          /* pending TLS plaintext not yet written */
    size_t out_len, out_off, out_cap;
    uint32_t ev;
    int dead;
    struct stream *streams;
    unsigned n_streams;
};

/* Per-process watcher state. */
struct evstat {
    uint64_t count;
    uint64_t tmin, tmax;
    uint64_t ep_tmax[FO_ENDPOINTS_MAX];
    uint64_t ep_count[FO_ENDPOINTS_MAX];
};

struct wproc {
    int ep;                /* epoll fd */
    struct conn *conns;
    unsigned n_conns;
    unsigned n_watchers;
    unsigned ready;
    unsigned errors;
    char first_err[FO_ERRMSG];
    struct evstat ev[FO_EVENTS_MAX];
    int ev_done[FO_EVENTS_MAX];
    uint64_t msgs, bytes, unknown_events;
    int to_parent, from_parent;
};

static struct wproc W;
static SSL_CTX *ssl_ctx;
static struct pb watch_body;

static SSL_CTX *tls_ctx(const char *cert, const char *key)
{
    static const unsigned char alpn[] = {2, 'h', '2'};
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL ||
        /* The same TLS as warden-loadgen offers both systems. */
        SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) != 1 ||
        SSL_CTX_set_ciphersuites(ctx, "TLS_AES_128_GCM_SHA256") != 1 ||
        SSL_CTX_set_alpn_protos(ctx, alpn, sizeof alpn) != 0 ||
        SSL_CTX_load_verify_locations(ctx, O.cacert, NULL) != 1 ||
        SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        char buf[256];
        ERR_error_string_n(ERR_get_error(), buf, sizeof buf);
        die("TLS setup (%s): %s", cert, buf);
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
                              SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    return ctx;
}

static void stream_fail(struct stream *s, const char *why);

static void out_append(struct conn *c, const uint8_t *d, size_t n)
{
    if (c->out_off > 0 && c->out_off == c->out_len) {
        c->out_off = c->out_len = 0;
    }
    if (c->out_len + n > c->out_cap) {
        size_t cap = c->out_cap ? c->out_cap : 65536;
        while (cap < c->out_len + n) {
            cap *= 2;
        }
        c->out = realloc(c->out, cap);
        if (c->out == NULL) {
            die("out of memory");
        }
        c->out_cap = cap;
    }
    memcpy(c->out + c->out_len, d, n);
    c->out_len += n;
}

static void set_ev(int ep, struct conn *c, uint32_t ev)
{
    if (ev != c->ev) {
        struct epoll_event e = {.events = ev, .data.ptr = c};
        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &e);
        c->ev = ev;
    }
}

static void conn_dead(struct conn *c, const char *why)
{
    if (c->dead) {
        return;
    }
    c->dead = 1;
    for (unsigned i = 0; i < c->n_streams; i++) {
        if (!c->streams[i].closed) {
            stream_fail(&c->streams[i], why);
        }
    }
}

/* nghttp2 output -> TLS, as far as the socket takes it. */
static void conn_flush(int ep, struct conn *c)
{
    if (c->dead) {
        return;
    }
    for (;;) {
        const uint8_t *d;
        ssize_t n = nghttp2_session_mem_send(c->h2, &d);
        if (n < 0) {
            conn_dead(c, nghttp2_strerror((int)n));
            return;
        }
        if (n == 0) {
            break;
        }
        out_append(c, d, (size_t)n);
    }
    while (c->out_off < c->out_len) {
        size_t want = c->out_len - c->out_off;
        int r = SSL_write(c->ssl, c->out + c->out_off, want > INT32_MAX ? INT32_MAX : (int)want);
        if (r > 0) {
            c->out_off += (size_t)r;
            continue;
        }
        int err = SSL_get_error(c->ssl, r);
        if (err == SSL_ERROR_WANT_WRITE || err == SSL_ERROR_WANT_READ) {
            set_ev(ep, c, EPOLLIN | EPOLLOUT);
            return;
        }
        conn_dead(c, "TLS write failed");
        return;
    }
    c->out_off = c->out_len = 0;
    set_ev(ep, c, EPOLLIN);
}

static void conn_read(int ep, struct conn *c)
{
    static uint8_t buf[FO_READ_CHUNK];
    for (int i = 0; i < FO_READS_PER_EVENT && !c->dead; i++) {
        int r = SSL_read(c->ssl, buf, sizeof buf);
        if (r > 0) {
            W.bytes += (uint64_t)r;
            ssize_t rv = nghttp2_session_mem_recv(c->h2, buf, (size_t)r);
            if (rv < 0) {
                conn_dead(c, nghttp2_strerror((int)rv));
            }
            continue;
        }
        int err = SSL_get_error(c->ssl, r);
        if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
            break;
        }
        conn_dead(c, err == SSL_ERROR_ZERO_RETURN ? "connection closed" : "TLS read failed");
    }
    conn_flush(ep, c);
}

/* ---- watcher side: messages --------------------------------------------- */
static void note_event(struct stream *s, int ix, uint64_t t)
{
    if (ix < 0) {
        W.unknown_events++;
        return;
    }
    struct evstat *e = &W.ev[ix];
    unsigned ep = s->c->ep;
    e->count++;
    if (e->tmin == 0 || t < e->tmin) {
        e->tmin = t;
    }
    if (t > e->tmax) {
        e->tmax = t;
    }
    if (t > e->ep_tmax[ep]) {
        e->ep_tmax[ep] = t;
    }
    e->ep_count[ep]++;
}

/* One complete gRPC message on a watch stream. */
static void on_watch_msg(struct stream *s, const uint8_t *m, size_t n, uint64_t t)
{
    W.msgs++;
    if (!s->ready) {
        s->ready = 1;
        W.ready++;
    }
    const uint8_t *p = m, *end = m + n, *d;
    size_t dn;
    unsigned f, wt;
    uint64_t v;
    if (O.sys == SYS_WARDEN) {
        /* WatchRevocationsResponse{1: RevocationEvent{8: grant_id}, 2: rev} */
        while (pb_next(&p, end, &f, &wt, &v, &d, &dn) == 1) {
            if (f == 1 && wt == 2) {
                const uint8_t *g;
                size_t gn;
                if (pb_find(d, dn, 8, &g, &gn) == 1) {
                    note_event(s, id_lookup(g, gn), t);
                }
            }
        }
        return;
    }
    /* etcd WatchResponse{3: created, 4: canceled, 6: cancel_reason,
     * 11: Event{2: KeyValue{1: key}}} */
    while (pb_next(&p, end, &f, &wt, &v, &d, &dn) == 1) {
        if (f == 4 && wt == 0 && v != 0) {
            stream_fail(s, "etcd watch canceled");
            return;
        }
        if (f == 11 && wt == 2) {
            const uint8_t *kv, *key;
            size_t kvn, keyn;
            if (pb_find(d, dn, 2, &kv, &kvn) == 1 && pb_find(kv, kvn, 1, &key, &keyn) == 1) {
                note_event(s, id_lookup(key, keyn), t);
            }
        }
    }
}

static void stream_fail(struct stream *s, const char *why)
{
    if (s->closed) {
        return;
    }
    s->closed = 1;
    if (s->kind == ST_WATCH) {
        if (W.errors++ == 0) {
            snprintf(W.first_err, sizeof W.first_err, "%.*s", FO_ERRMSG - 1, why);
        }
    }
}

static int on_data_cb(nghttp2_session *h2, uint8_t flags, int32_t id,
                      const uint8_t *data, size_t len, void *ud)
{
    (void)flags;
    (void)ud;
    struct stream *s = nghttp2_session_get_stream_user_data(h2, id);
    if (s == NULL) {
        return 0;
    }
    uint64_t t = now_ns();
    if (s->len + len > s->cap) {
        size_t cap = s->cap ? s->cap : 1024;
        while (cap < s->len + len) {
            cap *= 2;
        }
        if (cap > FO_MSG_MAX + 5) {
            stream_fail(s, "message too large");
            return NGHTTP2_ERR_CALLBACK_FAILURE;
        }
        s->buf = realloc(s->buf, cap);
        if (s->buf == NULL) {
            die("out of memory");
        }
        s->cap = cap;
    }
    memcpy(s->buf + s->len, data, len);
    s->len += len;
    size_t off = 0;
    while (s->len - off >= 5) {
        const uint8_t *h = s->buf + off;
        size_t mlen = (size_t)h[1] << 24 | (size_t)h[2] << 16 | (size_t)h[3] << 8 | h[4];
        if (mlen > FO_MSG_MAX) {
            stream_fail(s, "message too large");
            return NGHTTP2_ERR_CALLBACK_FAILURE;
        }
        if (s->len - off < 5 + mlen) {
            break;
        }
        if (s->kind == ST_WATCH) {
            on_watch_msg(s, h + 5, mlen, t);
        }
        off += 5 + mlen;
    }
    if (off > 0) {
        memmove(s->buf, s->buf + off, s->len - off);
        s->len -= off;
    }
    return 0;
}

static int on_header_cb(nghttp2_session *h2, const nghttp2_frame *fr, const uint8_t *name,
                        size_t namelen, const uint8_t *value, size_t valuelen,
                        uint8_t flags, void *ud)
{
    (void)flags;
    (void)ud;
    struct stream *s = nghttp2_session_get_stream_user_data(h2, fr->hd.stream_id);
    if (s == NULL) {
        return 0;
    }
    if (namelen == 11 && memcmp(name, "grpc-status", 11) == 0) {
        s->grpc_status = atoi((const char *)value);
    } else if (namelen == 12 && memcmp(name, "grpc-message", 12) == 0) {
        snprintf(s->msg, sizeof s->msg, "%.*s", (int)valuelen, (const char *)value);
    }
    return 0;
}

/* Set by the writer's stream close (parent only). */
static struct stream *unary_done;
static uint64_t unary_t;

static int on_close_cb(nghttp2_session *h2, int32_t id, uint32_t code, void *ud)
{
    (void)ud;
    struct stream *s = nghttp2_session_get_stream_user_data(h2, id);
    if (s == NULL) {
        return 0;
    }
    if (s->kind == ST_UNARY) {
        unary_t = now_ns();
        s->closed = 1;
        unary_done = s;
        return 0;
    }
    char why[FO_ERRMSG + 64];
    snprintf(why, sizeof why, "stream ended: grpc-status %d %s (h2 code %u)",
             s->grpc_status, s->msg, code);
    stream_fail(s, why);
    return 0;
}

static ssize_t body_cb(nghttp2_session *h2, int32_t id, uint8_t *buf, size_t len,
                       uint32_t *flags, nghttp2_data_source *src, void *ud)
{
    (void)h2;
    (void)id;
    (void)ud;
    struct stream *s = src->ptr;
    size_t left = s->body->len - s->body_off;
    if (left == 0) {
        if (s->body_eof) {
            *flags |= NGHTTP2_DATA_FLAG_EOF;
            return 0;
        }
        return NGHTTP2_ERR_DEFERRED; /* etcd: keep the bidi stream open */
    }
    size_t n = left < len ? left : len;
    memcpy(buf, s->body->p + s->body_off, n);
    s->body_off += n;
    if (s->body_off == s->body->len && s->body_eof) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    }
    return (ssize_t)n;
}

static int tcp_connect(const char *ep)
{
    char host[FO_ENDPOINT_LEN];
    snprintf(host, sizeof host, "%s", ep);
    char *colon = strrchr(host, ':');
    if (colon == NULL) {
        die("endpoint %s: want IP:PORT", ep);
    }
    *colon = '\0';
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(colon + 1))};
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        die("endpoint %s: want an IPv4 address", ep);
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        die("socket: %s", strerror(errno));
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    /* Blocking connect and handshake at set-up: loopback, bounded by the
     * kernel's SYN retries and the socket timeouts below. */
    struct timeval tv = {.tv_sec = 30};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        die("connect %s: %s", ep, strerror(errno));
    }
    return fd;
}

static void conn_open(int ep, struct conn *c, SSL_CTX *ctx, const char *endpoint,
                      unsigned ep_ix)
{
    memset(c, 0, sizeof *c);
    c->ep = ep_ix;
    c->fd = tcp_connect(endpoint);
    c->ssl = SSL_new(ctx);
    SSL_set_fd(c->ssl, c->fd);
    if (SSL_connect(c->ssl) != 1) {
        char buf[256];
        ERR_error_string_n(ERR_get_error(), buf, sizeof buf);
        die("TLS handshake with %s: %s", endpoint, buf);
    }
    const unsigned char *alpn;
    unsigned alpn_len;
    SSL_get0_alpn_selected(c->ssl, &alpn, &alpn_len);
    if (alpn_len != 2 || memcmp(alpn, "h2", 2) != 0) {
        die("%s did not select ALPN h2", endpoint);
    }
    int fl = fcntl(c->fd, F_GETFL);
    fcntl(c->fd, F_SETFL, fl | O_NONBLOCK);
    nghttp2_session_callbacks *cb;
    nghttp2_session_callbacks_new(&cb);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data_cb);
    nghttp2_session_callbacks_set_on_header_callback(cb, on_header_cb);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_close_cb);
    nghttp2_option *opt;
    nghttp2_option_new(&opt);
    /* gRPC servers may send more than 100 streams' worth of SETTINGS. */
    nghttp2_option_set_peer_max_concurrent_streams(opt, FO_STREAMS_MAX);
    if (nghttp2_session_client_new2(&c->h2, cb, c, opt) != 0) {
        die("nghttp2 session");
    }
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cb);
    nghttp2_settings_entry set[] = {
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, FO_H2_WINDOW},
    };
    nghttp2_submit_settings(c->h2, NGHTTP2_FLAG_NONE, set, 2);
    nghttp2_session_set_local_window_size(c->h2, NGHTTP2_FLAG_NONE, 0, 16 * FO_H2_WINDOW);
    struct epoll_event e = {.events = EPOLLIN, .data.ptr = c};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &e) != 0) {
        die("epoll_ctl: %s", strerror(errno));
    }
    c->ev = EPOLLIN;
}

static int submit(struct conn *c, struct stream *s, const char *path, const struct pb *body,
                  int eof)
{
    const char *ep = O.sys == SYS_WARDEN ? "warden" : "etcd";
#define NV(n, v) {(uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, strlen(v), NGHTTP2_NV_FLAG_NONE}
    nghttp2_nv hdrs[] = {
        NV(":method", "POST"),
        NV(":scheme", "https"),
        NV(":path", path),
        NV(":authority", ep),
        NV("content-type", "application/grpc"),
        NV("te", "trailers"),
    };
#undef NV
    s->c = c;
    s->body = body;
    s->body_off = 0;
    s->body_eof = eof;
    s->grpc_status = -1;
    nghttp2_data_provider prd = {.source.ptr = s, .read_callback = body_cb};
    s->id = nghttp2_submit_request(c->h2, NULL, hdrs, sizeof hdrs / sizeof hdrs[0], &prd, s);
    return s->id < 0 ? -1 : 0;
}

/* ---- parent <-> watcher process messages ---------------------------------- */
enum { PM_READY = 1, PM_DONE, PM_FINAL, PM_STATS };

struct pmsg {
    uint32_t type, ev;
    uint64_t a, b;               /* READY: ready, errors; STATS: msgs, unknown */
    struct evstat st;            /* DONE/FINAL */
    char err[FO_ERRMSG];
};

static void pm_send(int fd, const struct pmsg *m)
{
    const char *p = (const char *)m;
    size_t left = sizeof *m;
    while (left > 0) {
        ssize_t r = write(fd, p, left);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r <= 0) {
            _exit(3);
        }
        p += r;
        left -= (size_t)r;
    }
}

/* ---- one watcher process ---------------------------------------------------- */
static void watcher_main(unsigned proc, unsigned n)
{
    W.n_watchers = n;
    W.ep = epoll_create1(EPOLL_CLOEXEC);
    ssl_ctx = tls_ctx(O.cert, O.key);
    W.n_conns = (n + O.streams - 1) / O.streams;
    W.conns = calloc(W.n_conns ? W.n_conns : 1, sizeof *W.conns);
    if (W.conns == NULL) {
        die("out of memory");
    }
    const char *path = O.sys == SYS_WARDEN ? "/warden.v1.Access/WatchRevocations"
                                           : "/etcdserverpb.Watch/Watch";
    unsigned left = n;
    for (unsigned i = 0; i < W.n_conns; i++) {
        /* Global connection number proc + i * procs: the nodes get equal
         * shares however the watchers split over processes. */
        unsigned epi = (proc + i * O.procs) % O.n_eps;
        struct conn *c = &W.conns[i];
        conn_open(W.ep, c, ssl_ctx, O.eps[epi], epi);
        c->n_streams = left < O.streams ? left : O.streams;
        left -= c->n_streams;
        c->streams = calloc(c->n_streams, sizeof *c->streams);
        if (c->streams == NULL) {
            die("out of memory");
        }
        for (unsigned k = 0; k < c->n_streams; k++) {
            c->streams[k].kind = ST_WATCH;
            if (submit(c, &c->streams[k], path, &watch_body, O.sys == SYS_WARDEN) != 0) {
                die("submit watch");
            }
        }
        conn_flush(W.ep, c);
    }
    struct epoll_event pe = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(W.ep, EPOLL_CTL_ADD, W.from_parent, &pe);
    int ready_sent = 0;
    struct epoll_event evs[FO_EPOLL_BATCH];
    for (;;) {
        int k = epoll_wait(W.ep, evs, FO_EPOLL_BATCH, 1000);
        if (k < 0 && errno != EINTR) {
            die("epoll_wait: %s", strerror(errno));
        }
        int stop = 0;
        for (int i = 0; i < k; i++) {
            struct conn *c = evs[i].data.ptr;
            if (c == NULL) {
                stop = 1;
                continue;
            }
            if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
                conn_read(W.ep, c);
            }
            if (evs[i].events & EPOLLOUT) {
                conn_flush(W.ep, c);
            }
        }
        if (!ready_sent && W.ready + W.errors >= n) {
            struct pmsg m = {.type = PM_READY, .a = W.ready, .b = W.errors};
            snprintf(m.err, sizeof m.err, "%s", W.first_err);
            pm_send(W.to_parent, &m);
            ready_sent = 1;
        }
        for (unsigned e = 0; e < O.events; e++) {
            if (!W.ev_done[e] && W.ev[e].count >= n) {
                W.ev_done[e] = 1;
                struct pmsg m = {.type = PM_DONE, .ev = e, .st = W.ev[e]};
                pm_send(W.to_parent, &m);
            }
        }
        if (stop) {
            break;
        }
    }
    for (unsigned e = 0; e < O.events; e++) {
        struct pmsg m = {.type = PM_FINAL, .ev = e, .st = W.ev[e]};
        pm_send(W.to_parent, &m);
    }
    struct pmsg m = {.type = PM_STATS, .a = W.msgs, .b = W.unknown_events};
    m.st.count = W.errors;
    m.st.tmin = W.ready;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    m.st.tmax = (uint64_t)ru.ru_utime.tv_sec * 1000000u + (uint64_t)ru.ru_utime.tv_usec +
                (uint64_t)ru.ru_stime.tv_sec * 1000000u + (uint64_t)ru.ru_stime.tv_usec;
    snprintf(m.err, sizeof m.err, "%s", W.first_err);
    pm_send(W.to_parent, &m);
    _exit(0);
}

/* ---- parent: writer and aggregation ------------------------------------------ */
struct child {
    pid_t pid;
    int rfd, wfd;
    unsigned n;
    int ready;
    uint64_t ready_n, ready_err;
    int done[FO_EVENTS_MAX];
    struct evstat final[FO_EVENTS_MAX];
    int finals, stats;
    uint64_t msgs, unknown, errors, cpu_us;
    char err[FO_ERRMSG];
    uint8_t rbuf[sizeof(struct pmsg)];
    size_t rlen;
};

static struct child kids[FO_PROCS_MAX];

static void child_msg(struct child *k, const struct pmsg *m)
{
    switch (m->type) {
    case PM_READY:
        k->ready = 1;
        k->ready_n = m->a;
        k->ready_err = m->b;
        if (m->err[0]) {
            snprintf(k->err, sizeof k->err, "%s", m->err);
        }
        break;
    case PM_DONE:
        if (m->ev < O.events) {
            k->done[m->ev] = 1;
        }
        break;
    case PM_FINAL:
        if (m->ev < O.events) {
            k->final[m->ev] = m->st;
            k->finals++;
        }
        break;
    case PM_STATS:
        k->stats = 1;
        k->msgs = m->a;
        k->unknown = m->b;
        k->errors = m->st.count;
        k->cpu_us = m->st.tmax;
        if (m->err[0]) {
            snprintf(k->err, sizeof k->err, "%s", m->err);
        }
        break;
    default:
        break;
    }
}

static void child_read(struct child *k)
{
    for (;;) {
        ssize_t r = read(k->rfd, k->rbuf + k->rlen, sizeof k->rbuf - k->rlen);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r <= 0) {
            return;
        }
        k->rlen += (size_t)r;
        if (k->rlen == sizeof k->rbuf) {
            struct pmsg m;
            memcpy(&m, k->rbuf, sizeof m);
            k->rlen = 0;
            child_msg(k, &m);
        }
    }
}

/* Run the parent's loop until pred() or the deadline (ns). 1 if pred. */
static int run_until(int ep, struct conn *wc, int (*pred)(void), uint64_t deadline)
{
    struct epoll_event evs[FO_EPOLL_BATCH];
    while (!pred()) {
        uint64_t t = now_ns();
        if (t >= deadline) {
            return 0;
        }
        uint64_t ms = (deadline - t) / 1000000u + 1;
        int k = epoll_wait(ep, evs, FO_EPOLL_BATCH, ms > 1000 ? 1000 : (int)ms);
        for (int i = 0; i < k; i++) {
            void *p = evs[i].data.ptr;
            if (wc != NULL && p == wc) {
                if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
                    conn_read(ep, wc);
                }
                if (evs[i].events & EPOLLOUT) {
                    conn_flush(ep, wc);
                }
            } else if (p != NULL) {
                child_read(p);
            }
        }
        if (wc != NULL && wc->dead) {
            die("writer connection lost");
        }
    }
    return 1;
}

static unsigned n_kids;
static unsigned cur_ev;

static int all_ready(void)
{
    for (unsigned i = 0; i < n_kids; i++) {
        if (!kids[i].ready) {
            return 0;
        }
    }
    return 1;
}

static int unary_finished(void)
{
    return unary_done != NULL;
}

static int all_done(void)
{
    for (unsigned i = 0; i < n_kids; i++) {
        if (!kids[i].done[cur_ev]) {
            return 0;
        }
    }
    return 1;
}

static int never(void)
{
    return 0;
}

static int all_final(void)
{
    for (unsigned i = 0; i < n_kids; i++) {
        if (!kids[i].stats) {
            return 0;
        }
    }
    return 1;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(const double *sorted, size_t n, double q)
{
    if (n == 0) {
        return -1;
    }
    size_t i = (size_t)(q * (double)(n - 1) + 0.5);
    return sorted[i < n ? i : n - 1];
}

static void write_body(struct pb *b, unsigned j)
{
    struct pb m = {0};
    if (O.sys == SYS_WARDEN) {
        char key[48];
        snprintf(key, sizeof key, "fanout-%d-%u", (int)getpid(), j);
        pb_bytes(&m, 1, O.ids[j], strlen(O.ids[j]));
        pb_bytes(&m, 2, "fan-out benchmark", 17);
        pb_bytes(&m, 3, key, strlen(key));
    } else {
        char val[4096];
        size_t vn = O.value_size < sizeof val ? O.value_size : sizeof val;
        memset(val, 'v', vn);
        pb_bytes(&m, 1, O.ids[j], strlen(O.ids[j]));
        pb_bytes(&m, 2, val, vn);
    }
    b->len = 0;
    grpc_frame(b, &m);
    free(m.p);
}

static void split_eps(const char *s)
{
    char tmp[FO_ENDPOINTS_MAX * FO_ENDPOINT_LEN];
    snprintf(tmp, sizeof tmp, "%s", s);
    for (char *tok = strtok(tmp, ","); tok; tok = strtok(NULL, ",")) {
        if (O.n_eps == FO_ENDPOINTS_MAX) {
            die("at most %d endpoints", FO_ENDPOINTS_MAX);
        }
        snprintf(O.eps[O.n_eps++], FO_ENDPOINT_LEN, "%s", tok);
    }
}

static unsigned num(const char *flag, const char *v, unsigned lo, unsigned hi)
{
    char *end;
    unsigned long x = strtoul(v, &end, 10);
    if (*v == '\0' || *end != '\0' || x < lo || x > hi) {
        die("%s %s: want %u..%u", flag, v, lo, hi);
    }
    return (unsigned)x;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: warden-fanout --system warden|etcd --endpoints IP:PORT,...\n"
            "         --cacert F --cert F --key F            (watchers)\n"
            "         --writer IP:PORT --writer-cert F --writer-key F\n"
            "         [--watchers N] [--streams S] [--procs P] [--events K]\n"
            "         [--ids FILE (warden: grant ids)] [--prefix P (etcd)]\n"
            "         [--value-size B] [--gap-ms G] [--gap-jitter-ms J] [--event-timeout-ms T]\n"
            "         [--ready-timeout-s T] [--label TEXT] [--out FILE]\n");
    exit(2);
}

static void parse_args(int argc, char **argv)
{
    O.watchers = 1000;
    O.streams = 100;
    O.procs = 1;
    O.events = 30;
    O.prefix = "/fanout/";
    O.value_size = 128;
    O.gap_ms = 200;
    O.gap_jitter_ms = 100;
    O.event_timeout_ms = 10000;
    O.ready_timeout_s = 180;
    O.label = "";
    int have_sys = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (i + 1 >= argc) {
            usage();
        }
        const char *v = argv[++i];
        if (!strcmp(a, "--system")) {
            have_sys = 1;
            if (!strcmp(v, "warden")) {
                O.sys = SYS_WARDEN;
            } else if (!strcmp(v, "etcd")) {
                O.sys = SYS_ETCD;
            } else {
                usage();
            }
        } else if (!strcmp(a, "--endpoints")) {
            split_eps(v);
        } else if (!strcmp(a, "--cacert")) {
            O.cacert = v;
        } else if (!strcmp(a, "--cert")) {
            O.cert = v;
        } else if (!strcmp(a, "--key")) {
            O.key = v;
        } else if (!strcmp(a, "--writer")) {
            snprintf(O.writer, sizeof O.writer, "%s", v);
        } else if (!strcmp(a, "--writer-cert")) {
            O.wcert = v;
        } else if (!strcmp(a, "--writer-key")) {
            O.wkey = v;
        } else if (!strcmp(a, "--watchers")) {
            O.watchers = num(a, v, 1, FO_WATCHERS_MAX);
        } else if (!strcmp(a, "--streams")) {
            O.streams = num(a, v, 1, FO_STREAMS_MAX);
        } else if (!strcmp(a, "--procs")) {
            O.procs = num(a, v, 1, FO_PROCS_MAX);
        } else if (!strcmp(a, "--events")) {
            O.events = num(a, v, 1, FO_EVENTS_MAX);
        } else if (!strcmp(a, "--ids")) {
            O.ids_file = v;
        } else if (!strcmp(a, "--prefix")) {
            O.prefix = v;
        } else if (!strcmp(a, "--value-size")) {
            O.value_size = num(a, v, 1, 4096);
        } else if (!strcmp(a, "--gap-ms")) {
            O.gap_ms = num(a, v, 0, FO_GAP_MS_MAX);
        } else if (!strcmp(a, "--gap-jitter-ms")) {
            O.gap_jitter_ms = num(a, v, 0, FO_GAP_MS_MAX);
        } else if (!strcmp(a, "--event-timeout-ms")) {
            O.event_timeout_ms = num(a, v, 100, FO_EVENT_TIMEOUT_MS_MAX);
        } else if (!strcmp(a, "--ready-timeout-s")) {
            O.ready_timeout_s = num(a, v, 1, FO_READY_TIMEOUT_S_MAX);
        } else if (!strcmp(a, "--label")) {
            O.label = v;
        } else if (!strcmp(a, "--out")) {
            O.out = v;
        } else {
            usage();
        }
    }
    if (!have_sys || O.n_eps == 0 || !O.cacert || !O.cert || !O.key || !O.writer[0] ||
        !O.wcert || !O.wkey) {
        usage();
    }
    if (O.procs > O.watchers) {
        O.procs = O.watchers;
    }
    if (O.sys == SYS_WARDEN) {
        if (O.ids_file == NULL) {
            die("--system warden needs --ids FILE (grant ids, one per line)");
        }
        FILE *f = fopen(O.ids_file, "r");
        if (f == NULL) {
            die("%s: %s", O.ids_file, strerror(errno));
        }
        unsigned n = 0;
        char line[256];
        while (n < O.events && fgets(line, sizeof line, f)) {
            line[strcspn(line, "\r\n")] = '\0';
            if (line[0] == '\0') {
                continue;
            }
            if (strlen(line) >= FO_ID_LEN) {
                die("%s: id too long", O.ids_file);
            }
            memcpy(O.ids[n++], line, strlen(line) + 1);
        }
        fclose(f);
        if (n < O.events) {
            die("%s: %u ids for %u events", O.ids_file, n, O.events);
        }
    } else {
        if (strlen(O.prefix) == 0 || strlen(O.prefix) > 32) {
            die("--prefix: 1..32 bytes");
        }
        for (unsigned j = 0; j < O.events; j++) {
            snprintf(O.ids[j], FO_ID_LEN, "%se%04u", O.prefix, j);
        }
    }
}

int main(int argc, char **argv)
{
    parse_args(argc, argv);
    ids_index();
    signal(SIGPIPE, SIG_IGN);
    srandom((unsigned)now_ns());
    /* The watch request every stream sends. */
    struct pb m = {0};
    if (O.sys == SYS_WARDEN) {
        /* WatchRevocationsRequest{from_revision: 0}: an empty message; events
         * from before the run have ids we do not know and are ignored. */
    } else {
        /* WatchRequest{1: WatchCreateRequest{1: key, 2: range_end}}: the
         * prefix, range_end = prefix with its last byte + 1. */
        struct pb cr = {0};
        size_t pl = strlen(O.prefix);
        char end[40];
        memcpy(end, O.prefix, pl);
        end[pl - 1] = (char)(end[pl - 1] + 1);
        pb_bytes(&cr, 1, O.prefix, pl);
        pb_bytes(&cr, 2, end, pl);
        pb_bytes(&m, 1, cr.p, cr.len);
        free(cr.p);
    }
    grpc_frame(&watch_body, &m);
    free(m.p);

    /* Fork the watcher processes before any TLS state exists here. */
    n_kids = O.procs;
    uint64_t t0 = now_ns();
    for (unsigned i = 0; i < n_kids; i++) {
        int up[2], down[2];
        if (pipe2(up, O_CLOEXEC) != 0 || pipe2(down, O_CLOEXEC) != 0) {
            die("pipe: %s", strerror(errno));
        }
        unsigned n = O.watchers / n_kids + (i < O.watchers % n_kids ? 1 : 0);
        pid_t pid = fork();
        if (pid < 0) {
            die("fork: %s", strerror(errno));
        }
        if (pid == 0) {
            close(up[0]);
            close(down[1]);
            for (unsigned j = 0; j < i; j++) {
                close(kids[j].rfd);
                close(kids[j].wfd);
            }
            W.to_parent = up[1];
            W.from_parent = down[0];
            watcher_main(i, n);
        }
        close(up[1]);
        close(down[0]);
        kids[i].pid = pid;
        kids[i].rfd = up[0];
        kids[i].wfd = down[1];
        kids[i].n = n;
        fcntl(up[0], F_SETFL, fcntl(up[0], F_GETFL) | O_NONBLOCK);
    }
    int ep = epoll_create1(EPOLL_CLOEXEC);
    for (unsigned i = 0; i < n_kids; i++) {
        struct epoll_event e = {.events = EPOLLIN, .data.ptr = &kids[i]};
        epoll_ctl(ep, EPOLL_CTL_ADD, kids[i].rfd, &e);
    }
    if (!run_until(ep, NULL, all_ready, t0 + (uint64_t)O.ready_timeout_s * 1000000000u)) {
        fprintf(stderr, "warden-fanout: watchers not ready within %u s\n", O.ready_timeout_s);
    }
    double ready_s = (double)(now_ns() - t0) / 1e9;
    uint64_t ready = 0, ready_err = 0;
    for (unsigned i = 0; i < n_kids; i++) {
        ready += kids[i].ready_n;
        ready_err += kids[i].ready_err;
        if (kids[i].err[0]) {
            fprintf(stderr, "warden-fanout: process %u: %s\n", i, kids[i].err);
        }
    }
    fprintf(stderr, "warden-fanout: %s: %llu/%u watchers ready in %.1f s (%llu failed)\n",
            O.sys == SYS_WARDEN ? "warden" : "etcd", (unsigned long long)ready, O.watchers,
            ready_s, (unsigned long long)ready_err);

    /* The writer. */
    SSL_CTX *wctx = tls_ctx(O.wcert, O.wkey);
    struct conn wc;
    conn_open(ep, &wc, wctx, O.writer, 0);
    const char *wpath = O.sys == SYS_WARDEN ? "/warden.v1.Access/RevokeGrant"
                                            : "/etcdserverpb.KV/Put";
    static uint64_t t_send[FO_EVENTS_MAX], t_ack[FO_EVENTS_MAX];
    static int ok[FO_EVENTS_MAX], complete[FO_EVENTS_MAX];
    static char werr[FO_EVENTS_MAX][FO_ERRMSG];
    struct pb body = {0};
    struct stream ws[FO_EVENTS_MAX];
    memset(ws, 0, sizeof ws);
    unsigned n_ok = 0;
    for (unsigned j = 0; j < O.events && ready > 0; j++) {
        cur_ev = j;
        write_body(&body, j);
        ws[j].kind = ST_UNARY;
        unary_done = NULL;
        if (submit(&wc, &ws[j], wpath, &body, 1) != 0) {
            die("submit write");
        }
        t_send[j] = now_ns();
        conn_flush(ep, &wc);
        if (!run_until(ep, &wc, unary_finished, t_send[j] + 30000000000u)) {
            die("write %u: no answer within 30 s", j);
        }
        t_ack[j] = unary_t;
        ok[j] = ws[j].grpc_status == 0;
        snprintf(werr[j], FO_ERRMSG, "%d %.*s", ws[j].grpc_status, FO_ERRMSG - 16, ws[j].msg);
        if (!ok[j]) {
            fprintf(stderr, "warden-fanout: write %u failed: grpc-status %s\n", j, werr[j]);
            continue;
        }
        n_ok++;
        complete[j] = run_until(ep, &wc, all_done,
                                t_ack[j] + (uint64_t)O.event_timeout_ms * 1000000u);
        /* A random extra pause: writes must not phase-lock to a periodic
         * timer of the server (raft's 100 ms heartbeat), which would make
         * every write see the same best or worst case. */
        uint64_t gap = O.gap_ms + (O.gap_jitter_ms ? (uint64_t)random() % (O.gap_jitter_ms + 1u) : 0);
        run_until(ep, &wc, never, now_ns() + gap * 1000000u);
    }
    /* Stop the watchers and collect their tallies. */
    for (unsigned i = 0; i < n_kids; i++) {
        if (write(kids[i].wfd, "q", 1) != 1) {
            fprintf(stderr, "warden-fanout: cannot stop process %u\n", i);
        }
    }
    run_until(ep, &wc, all_final, now_ns() + 30000000000u);
    for (unsigned i = 0; i < n_kids; i++) {
        int st;
        waitpid(kids[i].pid, &st, 0);
    }

    /* Aggregate. */
    static double lat[FO_EVENTS_MAX], first[FO_EVENTS_MAX];
    size_t n_lat = 0;
    uint64_t min_reached = UINT64_MAX;
    int all_got_all = 1;
    FILE *out = O.out ? fopen(O.out, "w") : stdout;
    if (out == NULL) {
        die("%s: %s", O.out, strerror(errno));
    }
    uint64_t msgs = 0, unknown = 0, errors = 0, cpu_us = 0;
    for (unsigned i = 0; i < n_kids; i++) {
        msgs += kids[i].msgs;
        unknown += kids[i].unknown;
        errors += kids[i].errors;
        cpu_us += kids[i].cpu_us;
    }
    fprintf(out, "{\n  \"bench\": \"fanout\", \"system\": \"%s\", \"label\": \"%s\",\n",
            O.sys == SYS_WARDEN ? "warden" : "etcd", O.label);
    fprintf(out, "  \"cpu_count\": %ld, \"watchers\": %u, \"watch_procs\": %u, "
                 "\"streams_per_conn\": %u, \"connections\": %u,\n",
            sysconf(_SC_NPROCESSORS_ONLN), O.watchers, n_kids, O.streams,
            (O.watchers + O.streams - 1) / O.streams);
    fprintf(out, "  \"endpoints\": [");
    for (unsigned i = 0; i < O.n_eps; i++) {
        fprintf(out, "%s\"%s\"", i ? ", " : "", O.eps[i]);
    }
    fprintf(out, "], \"writer\": \"%s\",\n", O.writer);
    fprintf(out, "  \"ready\": %llu, \"ready_s\": %.2f, \"watch_errors\": %llu, "
                 "\"messages\": %llu, \"unknown_events\": %llu, \"client_cpu_s\": %.2f,\n",
            (unsigned long long)ready, ready_s, (unsigned long long)errors,
            (unsigned long long)msgs, (unsigned long long)unknown, (double)cpu_us / 1e6);
    fprintf(out, "  \"events\": [\n");
    for (unsigned j = 0; j < O.events; j++) {
        struct evstat t = {0};
        for (unsigned i = 0; i < n_kids; i++) {
            struct evstat *s = &kids[i].final[j];
            t.count += s->count;
            if (s->tmin && (t.tmin == 0 || s->tmin < t.tmin)) {
                t.tmin = s->tmin;
            }
            if (s->tmax > t.tmax) {
                t.tmax = s->tmax;
            }
            for (unsigned e = 0; e < O.n_eps; e++) {
                if (s->ep_tmax[e] > t.ep_tmax[e]) {
                    t.ep_tmax[e] = s->ep_tmax[e];
                }
                t.ep_count[e] += s->ep_count[e];
            }
        }
        double l = t.tmax ? ((double)t.tmax - (double)t_ack[j]) / 1e6 : -1;
        double f = t.tmin ? ((double)t.tmin - (double)t_ack[j]) / 1e6 : -1;
        if (ok[j]) {
            if (t.count < min_reached) {
                min_reached = t.count;
            }
            if (t.count != O.watchers) {
                all_got_all = 0;
            }
            if (t.count > 0) {
                lat[n_lat] = l;
                first[n_lat] = f;
                n_lat++;
            }
        }
        fprintf(out, "    {\"id\": \"%s\", \"ok\": %s, \"write_ms\": %.3f, \"received\": %llu, "
                     "\"complete\": %s, \"last_ms\": %.3f, \"first_ms\": %.3f, \"last_ms_by_endpoint\": [",
                O.ids[j], ok[j] ? "true" : "false",
                ok[j] ? ((double)t_ack[j] - (double)t_send[j]) / 1e6 : -1.0,
                (unsigned long long)t.count, complete[j] ? "true" : "false", l, f);
        for (unsigned e = 0; e < O.n_eps; e++) {
            fprintf(out, "%s%.3f", e ? ", " : "",
                    t.ep_tmax[e] ? ((double)t.ep_tmax[e] - (double)t_ack[j]) / 1e6 : -1.0);
        }
        fprintf(out, "]%s%s%s}%s\n", ok[j] ? "" : ", \"error\": \"", ok[j] ? "" : werr[j],
                ok[j] ? "" : "\"", j + 1 < O.events ? "," : "");
    }
    fprintf(out, "  ],\n");
    qsort(lat, n_lat, sizeof lat[0], cmp_double);
    qsort(first, n_lat, sizeof first[0], cmp_double);
    fprintf(out, "  \"writes_ok\": %u, \"all_watchers_got_every_event\": %s, "
                 "\"min_watchers_reached\": %llu,\n",
            n_ok, all_got_all && n_ok == O.events ? "true" : "false",
            (unsigned long long)(min_reached == UINT64_MAX ? 0 : min_reached));
    fprintf(out, "  \"last_watcher_ms\": {\"p50\": %.3f, \"p99\": %.3f, \"max\": %.3f, \"n\": %zu},\n",
            pct(lat, n_lat, 0.5), pct(lat, n_lat, 0.99), n_lat ? lat[n_lat - 1] : -1.0, n_lat);
    fprintf(out, "  \"first_watcher_ms\": {\"p50\": %.3f, \"p99\": %.3f}\n}\n",
            pct(first, n_lat, 0.5), pct(first, n_lat, 0.99));
    if (out != stdout) {
        fclose(out);
    }
    fprintf(stderr, "warden-fanout: %s %u watchers: last watcher p50 %.2f ms p99 %.2f ms max %.2f ms"
                    " over %zu events; every watcher got every event: %s\n",
            O.sys == SYS_WARDEN ? "warden" : "etcd", O.watchers, pct(lat, n_lat, 0.5),
            pct(lat, n_lat, 0.99), n_lat ? lat[n_lat - 1] : -1.0, n_lat,
            all_got_all && n_ok == O.events ? "yes" : "NO");
    for (unsigned j = 0; j < O.events; j++) {
        free(ws[j].buf);
    }
    nghttp2_session_del(wc.h2);
    SSL_free(wc.ssl);
    close(wc.fd);
    free(wc.out);
    SSL_CTX_free(wctx);
    free(body.p);
    free(watch_body.p);
    free(id_sorted);
    close(ep);
    return 0;
}
