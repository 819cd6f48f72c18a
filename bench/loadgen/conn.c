/* conn.c - one load-generator connection: non-blocking TCP, OpenSSL
 * (mutual TLS, ALPN h2) and an nghttp2 client session in memory-buffer mode
 * (nghttp2 does no socket I/O: TLS plaintext goes in with mem_recv and comes
 * out with mem_send, as in the server, grpc/conn.c).
 *
 * Lifecycle: IDLE -> CONNECTING -> HANDSHAKE -> READY [-> DRAINING] and back
 * to IDLE on any failure (lg_conn_fail), from where loadgen.c reconnects
 * after a backoff. A stream is born in lg_conn_submit and dies in
 * on_stream_close_cb, or in lg_conn_fail when the whole connection goes. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "grpc/grpc.h"
#include "lg.h"

/* SSL_read calls per readiness event: a busy conn cannot starve others. */
#define READS_PER_EVENT 64
/* SSL_write rounds per flush, for the same reason. */
#define WRITES_PER_FLUSH 64
#define READ_CHUNK (16u << 10)

int lg_tls_init(struct lg *lg)
{
    static const unsigned char alpn[] = {2, 'h', '2'};
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL) {
        return -1;
    }
    /* Same TLS for warden and etcd: TLS 1.3, one AEAD, no resumption (warden
     * disables tickets; every connection is a full handshake on both). */
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) != 1 ||
        SSL_CTX_set_ciphersuites(ctx, "TLS_AES_128_GCM_SHA256") != 1 ||
        SSL_CTX_set_alpn_protos(ctx, alpn, sizeof alpn) != 0 ||
        SSL_CTX_load_verify_locations(ctx, lg->o.cacert, NULL) != 1 ||
        SSL_CTX_use_certificate_chain_file(ctx, lg->o.cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, lg->o.key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        char buf[256];
        ERR_error_string_n(ERR_get_error(), buf, sizeof buf);
        fprintf(stderr, "warden-loadgen: TLS setup: %s\n", buf);
        SSL_CTX_free(ctx);
        return -1;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    /* Idle conns of a reconnect storm should not each pin 2 x 16 KiB. */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                              SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    lg->ssl_ctx = ctx;
    return 0;
}

void lg_mark_dirty(struct lg_conn *c)
{
    if (!c->dirty) {
        c->dirty = 1;
        c->dirty_next = c->lg->dirty;
        c->lg->dirty = c;
    }
}

static void set_interest(struct lg_conn *c, uint32_t ev)
{
    if (c->fd >= 0 && ev != c->ev) {
        struct epoll_event e = {.events = ev, .data.ptr = c};
        if (epoll_ctl(c->lg->ep, EPOLL_CTL_MOD, c->fd, &e) == 0) {
            c->ev = ev;
        }
    }
}

static void unlink_stream(struct lg_conn *c, struct lg_stream *s)
{
    if (s->prev) {
        s->prev->next = s->next;
    } else {
        c->streams = s->next;
    }
    if (s->next) {
        s->next->prev = s->prev;
    }
    c->inflight--;
    c->lg->inflight--;
}

void lg_conn_fail(struct lg_conn *c, const char *why)
{
    struct lg *lg = c->lg;
    if (c->st == LG_C_READY || c->st == LG_C_DRAINING) {
        lg->conn_lost++;
    } else if (lg->conn_fail_msg[0] == '\0') {
        snprintf(lg->conn_fail_msg, sizeof lg->conn_fail_msg, "%s: %s", c->endpoint, why);
    }
    if (c->st != LG_C_READY && c->st != LG_C_DRAINING && c->st != LG_C_IDLE) {
        c->ep_idx++;  /* this endpoint is down: try the next one */
    }
    if (!lg->stopping && lg->leader[0] && strcmp(c->endpoint, lg->leader) == 0 &&
        strcmp(why, "draining") != 0 && strcmp(why, "run finished") != 0) {
        /* The leader we were sent to is gone (killed, partitioned): forget
         * it, rotate through --endpoint, and let the next warden-leader
         * trailer name its successor. */
        lg->leader[0] = '\0';
    }
    while (c->streams) {
        struct lg_stream *s = c->streams;
        unlink_stream(c, s);
        if (c->h2) {
            (void)nghttp2_session_set_stream_user_data(c->h2, s->id, NULL);
        }
        snprintf(s->msg, sizeof s->msg, "connection: %s", why);
        lg_on_call_done(lg, s, LG_ST_TRANSPORT);
        free(s);
    }
    if (c->h2) {
        nghttp2_session_del(c->h2);
        c->h2 = NULL;
    }
    if (c->ssl) {
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
    if (c->fd >= 0) {
        (void)epoll_ctl(lg->ep, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
        c->fd = -1;
    }
    free(c->out);
    c->out = NULL;
    c->out_len = c->out_off = 0;
    c->want_write = 0;
    c->ev = 0;
    c->st = LG_C_IDLE;
    if (!lg->stopping) {
        c->reconnect_at = lg_now() + (uint64_t)c->backoff_ms * 1000000u;
        c->backoff_ms = c->backoff_ms * 2 > LG_RECONNECT_MAX_MS
                            ? LG_RECONNECT_MAX_MS
                            : c->backoff_ms * 2;
    } else {
        c->reconnect_at = 0;
    }
}

/* Graceful: GOAWAY then close_notify, best effort, then as a failure with
 * no streams left. */
static void conn_close(struct lg_conn *c, const char *why)
{
    if (c->h2 && c->ssl && (c->st == LG_C_READY || c->st == LG_C_DRAINING)) {
        (void)nghttp2_session_terminate_session(c->h2, NGHTTP2_NO_ERROR);
        const uint8_t *d;
        ssize_t n;
        int rounds = 0;
        while (rounds++ < 8 && (n = nghttp2_session_mem_send(c->h2, &d)) > 0) {
            if (SSL_write(c->ssl, d, (int)n) <= 0) {
                break;
            }
        }
        (void)SSL_shutdown(c->ssl);
    }
    unsigned lost = c->st == LG_C_READY || c->st == LG_C_DRAINING;
    lg_conn_fail(c, why);
    if (lost) {
        c->lg->conn_lost--;  /* closed by us: not a loss */
    }
}

void lg_conn_close_all(struct lg *lg)
{
    for (unsigned i = 0; i < lg->n_conns; i++) {
        if (lg->conns[i].st != LG_C_IDLE) {
            conn_close(&lg->conns[i], "run finished");
        }
    }
}

/* ---- nghttp2 callbacks ------------------------------------------------------ */

static ssize_t body_read_cb(nghttp2_session *h2, int32_t id, uint8_t *buf,
                            size_t len, uint32_t *flags,
                            nghttp2_data_source *src, void *user)
{
    (void)h2;
    (void)id;
    (void)user;
    struct lg_stream *s = src->ptr;
    size_t n = s->body_len - s->body_off;
    if (n > len) {
        n = len;
    }
    memcpy(buf, s->body + s->body_off, n);
    s->body_off += n;
    if (s->body_off == s->body_len) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    }
    return (ssize_t)n;
}

static int eq(const uint8_t *a, size_t alen, const char *lit)
{
    size_t l = strlen(lit);
    return alen == l && memcmp(a, lit, l) == 0;
}

static int on_header_cb(nghttp2_session *h2, const nghttp2_frame *frame,
                        const uint8_t *name, size_t namelen,
                        const uint8_t *value, size_t valuelen, uint8_t flags,
                        void *user)
{
    (void)flags;
    (void)user;
    if (frame->hd.type != NGHTTP2_HEADERS) {
        return 0;
    }
    struct lg_stream *s = nghttp2_session_get_stream_user_data(h2, frame->hd.stream_id);
    if (s == NULL) {
        return 0;
    }
    char v[LG_ERRMSG_MAX];
    size_t n = valuelen < sizeof v - 1 ? valuelen : sizeof v - 1;
    memcpy(v, value, n);
    v[n] = '\0';
    if (eq(name, namelen, ":status")) {
        s->http_status = atoi(v);
    } else if (eq(name, namelen, "grpc-status")) {
        s->grpc_status = atoi(v);
    } else if (eq(name, namelen, "grpc-message")) {
        (void)grpc_pct_decode(v, n, s->msg, sizeof s->msg);
    } else if (eq(name, namelen, "warden-leader") && n < sizeof s->leader) {
        memcpy(s->leader, v, n + 1);
    }
    return 0;
}

/* PROTOCOL-HTTP2: "HTTP status codes to gRPC status" mapping, for replies
 * that carry no grpc-status. */
static int http_to_grpc(int http)
{
    switch (http) {
    case 400: return GRPC_STATUS_INTERNAL;
    case 401: return GRPC_STATUS_UNAUTHENTICATED;
    case 403: return GRPC_STATUS_PERMISSION_DENIED;
    case 404: return GRPC_STATUS_UNIMPLEMENTED;
    case 429: case 502: case 503: case 504: return GRPC_STATUS_UNAVAILABLE;
    default: return GRPC_STATUS_UNKNOWN;
    }
}

static int on_stream_close_cb(nghttp2_session *h2, int32_t id, uint32_t err,
                              void *user)
{
    struct lg_conn *c = user;
    struct lg_stream *s = nghttp2_session_get_stream_user_data(h2, id);
    if (s == NULL) {
        return 0;
    }
    unlink_stream(c, s);
    int st;
    if (s->grpc_status >= 0 && s->grpc_status <= 16) {
        st = s->grpc_status;
    } else if (s->grpc_status > 16) {
        st = GRPC_STATUS_UNKNOWN;
    } else if (s->http_status != 0 && s->http_status != 200) {
        st = http_to_grpc(s->http_status);
        snprintf(s->msg, sizeof s->msg, "HTTP %d", s->http_status);
    } else {
        st = LG_ST_TRANSPORT;
        snprintf(s->msg, sizeof s->msg, "stream closed without status: %s",
                 nghttp2_http2_strerror(err));
    }
    lg_on_call_done(c->lg, s, st);
    free(s);
    lg_mark_dirty(c);
    return 0;
}

static int on_frame_recv_cb(nghttp2_session *h2, const nghttp2_frame *frame,
                            void *user)
{
    (void)h2;
    struct lg_conn *c = user;
    if (frame->hd.type == NGHTTP2_GOAWAY) {
        c->lg->goaways++;
        if (c->st == LG_C_READY) {
            c->st = LG_C_DRAINING;
        }
    }
    return 0;
}

/* ---- connection setup ------------------------------------------------------- */

static int parse_hostport(const char *ep, struct sockaddr_in *sa, char *host,
                          size_t hcap)
{
    const char *colon = strrchr(ep, ':');
    if (colon == NULL || (size_t)(colon - ep) >= hcap) {
        return -1;
    }
    memcpy(host, ep, (size_t)(colon - ep));
    host[colon - ep] = '\0';
    long port = strtol(colon + 1, NULL, 10);
    memset(sa, 0, sizeof *sa);
    sa->sin_family = AF_INET;
    sa->sin_port = htons((uint16_t)port);
    if (port <= 0 || port > 65535 || inet_pton(AF_INET, host, &sa->sin_addr) != 1) {
        return -1;
    }
    return 0;
}

static void start_h2(struct lg_conn *c)
{
    nghttp2_session_callbacks *cbs;
    if (nghttp2_session_callbacks_new(&cbs) != 0) {
        lg_conn_fail(c, "nghttp2 callbacks");
        return;
    }
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header_cb);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close_cb);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv_cb);
    int rc = nghttp2_session_client_new(&c->h2, cbs, c);
    nghttp2_session_callbacks_del(cbs);
    if (rc != 0) {
        lg_conn_fail(c, "nghttp2 session");
        return;
    }
    const nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, LG_H2_WINDOW},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, 16u << 10},
    };
    if (nghttp2_submit_settings(c->h2, NGHTTP2_FLAG_NONE, iv,
                                sizeof iv / sizeof iv[0]) != 0 ||
        nghttp2_session_set_local_window_size(c->h2, NGHTTP2_FLAG_NONE, 0,
                                              (int32_t)(LG_H2_WINDOW * 4u)) != 0) {
        lg_conn_fail(c, "nghttp2 settings");
        return;
    }
    c->st = LG_C_READY;
    c->backoff_ms = LG_RECONNECT_MIN_MS;
    lg_on_ready(c->lg, c);
    lg_mark_dirty(c);
}

static void do_handshake(struct lg_conn *c)
{
    struct lg *lg = c->lg;
    ERR_clear_error();
    int r = SSL_do_handshake(c->ssl);
    if (r == 1) {
        const unsigned char *alpn = NULL;
        unsigned alen = 0;
        SSL_get0_alpn_selected(c->ssl, &alpn, &alen);
        if (alen != 2 || memcmp(alpn, "h2", 2) != 0) {
            lg->handshake_fail++;
            lg_conn_fail(c, "server did not select ALPN h2");
            return;
        }
        uint64_t now = lg_now();
        lg->handshakes++;
        lg_hist_record(&lg->hs_hist, now - c->t_open);
        if (lg->hs_first == 0) {
            lg->hs_first = now;
        }
        lg->hs_last = now;
        size_t sec = (size_t)((now - lg->t_start) / 1000000000u);
        if (sec < lg->n_secs) {
            lg->secs[sec].handshakes++;
        }
        set_interest(c, EPOLLIN);
        start_h2(c);
        return;
    }
    int err = SSL_get_error(c->ssl, r);
    if (err == SSL_ERROR_WANT_READ) {
        set_interest(c, EPOLLIN);
    } else if (err == SSL_ERROR_WANT_WRITE) {
        set_interest(c, EPOLLIN | EPOLLOUT);
    } else {
        char buf[200];
        unsigned long e = ERR_get_error();
        if (e) {
            ERR_error_string_n(e, buf, sizeof buf);
        } else {
            snprintf(buf, sizeof buf, "TLS handshake: %s",
                     errno ? strerror(errno) : "peer closed");
        }
        lg->handshake_fail++;
        lg_conn_fail(c, buf);
    }
}

static void start_tls(struct lg_conn *c, const char *host)
{
    c->ssl = SSL_new(c->lg->ssl_ctx);
    if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1) {
        lg_conn_fail(c, "SSL_new");
        return;
    }
    /* Check the server certificate names the address we dialled. */
    X509_VERIFY_PARAM *vp = SSL_get0_param(c->ssl);
    if (X509_VERIFY_PARAM_set1_ip_asc(vp, host) != 1) {
        lg_conn_fail(c, "verify param");
        return;
    }
    SSL_set_connect_state(c->ssl);
    c->st = LG_C_HANDSHAKE;
    do_handshake(c);
}

void lg_conn_open(struct lg_conn *c)
{
    struct lg *lg = c->lg;
    const char *ep;
    if (lg->o.follow_leader && lg->leader[0]) {
        ep = lg->leader;
    } else {
        ep = lg->o.endpoints[c->ep_idx % lg->o.n_endpoints];
    }
    snprintf(c->endpoint, sizeof c->endpoint, "%s", ep);
    struct sockaddr_in sa;
    char host[LG_ENDPOINT_LEN];
    c->reconnect_at = 0;
    c->t_open = lg_now();
    if (parse_hostport(c->endpoint, &sa, host, sizeof host) != 0) {
        lg->connect_fail++;
        lg_conn_fail(c, "bad endpoint (want IPv4:PORT)");
        return;
    }
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        lg->connect_fail++;
        lg_conn_fail(c, strerror(errno));
        return;
    }
    int one = 1;
    (void)setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct epoll_event e = {.events = EPOLLOUT, .data.ptr = c};
    if (epoll_ctl(lg->ep, EPOLL_CTL_ADD, c->fd, &e) != 0) {
        lg->connect_fail++;
        lg_conn_fail(c, strerror(errno));
        return;
    }
    c->ev = EPOLLOUT;
    c->st = LG_C_CONNECTING;
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof sa) == 0) {
        start_tls(c, host);
    } else if (errno != EINPROGRESS) {
        lg->connect_fail++;
        lg_conn_fail(c, strerror(errno));
    }
}

/* ---- I/O -------------------------------------------------------------------- */

void lg_conn_flush(struct lg_conn *c)
{
    if (c->h2 == NULL || c->ssl == NULL) {
        return;
    }
    for (int round = 0; round < WRITES_PER_FLUSH; round++) {
        if (c->out_off == c->out_len) {
            c->out_off = c->out_len = 0;
            if (c->out == NULL && (c->out = malloc(LG_OUTBUF)) == NULL) {
                lg_conn_fail(c, "out of memory");
                return;
            }
            const uint8_t *d;
            ssize_t n;
            while (c->out_len < LG_OUTBUF / 2 &&
                   (n = nghttp2_session_mem_send(c->h2, &d)) != 0) {
                if (n < 0) {
                    lg_conn_fail(c, nghttp2_strerror((int)n));
                    return;
                }
                if ((size_t)n > LG_OUTBUF - c->out_len) {
                    /* One chunk never exceeds a frame plus header; a bigger
                     * one means our buffer assumption is wrong. */
                    lg_conn_fail(c, "nghttp2 chunk larger than output buffer");
                    return;
                }
                memcpy(c->out + c->out_len, d, (size_t)n);
                c->out_len += (size_t)n;
            }
            if (c->out_len == 0) {
                break;
            }
        }
        ERR_clear_error();
        int w = SSL_write(c->ssl, c->out + c->out_off, (int)(c->out_len - c->out_off));
        if (w > 0) {
            c->out_off += (size_t)w;
            c->lg->bytes_out += (uint64_t)w;
            continue;
        }
        int err = SSL_get_error(c->ssl, w);
        if (err == SSL_ERROR_WANT_WRITE || err == SSL_ERROR_WANT_READ) {
            c->want_write = 1;
            set_interest(c, EPOLLIN | EPOLLOUT);
            return;
        }
        lg_conn_fail(c, "write failed");
        return;
    }
    if (c->out_off == c->out_len) {
        c->want_write = 0;
        set_interest(c, EPOLLIN);
        if (c->inflight == 0) {
            /* An idle conn (10,000 of them in a storm) holds no buffer. */
            free(c->out);
            c->out = NULL;
            c->out_off = c->out_len = 0;
        }
    } else {
        lg_mark_dirty(c);  /* round cap reached; continue next iteration */
    }
    if (!nghttp2_session_want_read(c->h2) && !nghttp2_session_want_write(c->h2) &&
        c->out_off == c->out_len) {
        conn_close(c, "session ended");
        return;
    }
    if (c->st == LG_C_DRAINING && c->inflight == 0) {
        /* Follow the leader (or replace a GOAWAY'd conn): reopen. */
        conn_close(c, "draining");
        if (!c->lg->stopping) {
            c->lg->reconnects++;
            lg_conn_open(c);
        }
    }
}

static void do_read(struct lg_conn *c)
{
    static uint8_t buf[READ_CHUNK];
    for (int i = 0; i < READS_PER_EVENT; i++) {
        ERR_clear_error();
        int n = SSL_read(c->ssl, buf, (int)sizeof buf);
        if (n > 0) {
            c->lg->bytes_in += (uint64_t)n;
            ssize_t used = nghttp2_session_mem_recv(c->h2, buf, (size_t)n);
            if (used < 0) {
                lg_conn_fail(c, nghttp2_strerror((int)used));
                return;
            }
            if (c->h2 == NULL) {
                return;
            }
            continue;
        }
        int err = SSL_get_error(c->ssl, n);
        if (err == SSL_ERROR_WANT_READ) {
            break;
        }
        if (err == SSL_ERROR_WANT_WRITE) {
            set_interest(c, EPOLLIN | EPOLLOUT);
            break;
        }
        lg_conn_fail(c, err == SSL_ERROR_ZERO_RETURN ? "peer closed (close_notify)"
                        : "peer closed or reset");
        return;
    }
    lg_mark_dirty(c);
}

void lg_conn_event(struct lg_conn *c, uint32_t events)
{
    switch (c->st) {
    case LG_C_CONNECTING: {
        int soerr = 0;
        socklen_t sl = sizeof soerr;
        (void)getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
        if (soerr != 0) {
            c->lg->connect_fail++;
            lg_conn_fail(c, strerror(soerr));
            return;
        }
        if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
            return;
        }
        struct sockaddr_in sa;
        char host[LG_ENDPOINT_LEN];
        (void)parse_hostport(c->endpoint, &sa, host, sizeof host);
        start_tls(c, host);
        return;
    }
    case LG_C_HANDSHAKE:
        do_handshake(c);
        return;
    case LG_C_READY:
    case LG_C_DRAINING:
        if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
            do_read(c);
        }
        if (c->st != LG_C_IDLE && (events & EPOLLOUT)) {
            lg_mark_dirty(c);
        }
        return;
    default:
        return;
    }
}

int lg_conn_submit(struct lg_conn *c, int spec, uint64_t t_intended)
{
    struct lg *lg = c->lg;
    struct lg_call_spec *cs = &lg->o.calls[spec];
    uint8_t body[LG_BODY_MAX];
    uint64_t counter = 0;
    if (lg_tmpl_is_write(cs->tmpl)) {
        counter = lg->write_seq++;
    }
    size_t blen = lg_tmpl_build(cs->tmpl, &lg->o.tc, counter, &lg->rng, body, sizeof body);
    struct lg_stream *s = malloc(sizeof *s + GRPC_FRAME_HDR_LEN + blen);
    if (s == NULL) {
        return -1;
    }
    memset(s, 0, sizeof *s);
    s->c = c;
    s->spec = spec;
    s->t_intended = t_intended;
    s->grpc_status = -1;
    grpc_frame_hdr_encode(s->body, 0, (uint32_t)blen);
    memcpy(s->body + GRPC_FRAME_HDR_LEN, body, blen);
    s->body_len = GRPC_FRAME_HDR_LEN + blen;

    char tmo[16];
    size_t ntmo = 0;
    if (lg->o.timeout_ms && grpc_timeout_format(lg->o.timeout_ms, tmo, sizeof tmo) == 0) {
        ntmo = 1;
    }
#define NV(n, v) {(uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, strlen(v), \
                  NGHTTP2_NV_FLAG_NO_COPY_NAME}
    nghttp2_nv nva[] = {
        NV(":method", "POST"),
        NV(":scheme", "https"),
        NV(":path", cs->path),
        NV(":authority", c->endpoint),
        NV("content-type", "application/grpc"),
        NV("te", "trailers"),
        NV("grpc-timeout", tmo),
    };
#undef NV
    nghttp2_data_provider prd = {.source.ptr = s, .read_callback = body_read_cb};
    int32_t id = nghttp2_submit_request(c->h2, NULL, nva,
                                        sizeof nva / sizeof nva[0] - (ntmo ? 0 : 1),
                                        &prd, s);
    if (id < 0) {
        free(s);
        return -1;
    }
    s->id = id;
    s->next = c->streams;
    if (c->streams) {
        c->streams->prev = s;
    }
    c->streams = s;
    c->inflight++;
    lg->inflight++;
    if (lg->inflight > lg->max_inflight_seen) {
        lg->max_inflight_seen = lg->inflight;
    }
    lg->issued++;
    cs->sent++;
    lg_mark_dirty(c);
    return 0;
}
