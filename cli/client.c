#include "client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <nghttp2/nghttp2.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

/* Past the deadline we wait this long more for the server's own
 * DEADLINE_EXCEEDED (it enforces the grpc-timeout we sent, and its status
 * says more than ours). */
#define CLI_DEADLINE_GRACE_MS 250u
/* Longest host part of an endpoint. */
#define HOST_MAX CLI_ENDPOINT_LEN_MAX

/* One in-flight unary call: born in cli_client_call, ends with it. */
struct call {
    int32_t stream_id;
    const uint8_t *req;    /* borrowed: 5-byte prefix + message */
    size_t req_len;
    size_t req_off;
    struct cli_resp resp;
    int done;              /* on_stream_close ran for stream_id */
};

struct cli_client {
    struct cli_client_config cfg;
    SSL_CTX *ctx;
    /* The connection; fd < 0 when none. */
    int fd;
    SSL *ssl;
    nghttp2_session *h2;
    char endpoint[CLI_ENDPOINT_LEN_MAX + 1];
    struct call *call;     /* current call, or NULL */
};

static int st_set(struct cli_status *st, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int st_set(struct cli_status *st, int code, const char *fmt, ...)
{
    va_list ap;
    st->code = code;
    va_start(ap, fmt);
    vsnprintf(st->msg, sizeof st->msg, fmt, ap);
    va_end(ap);
    return code;
}

/* The most useful OpenSSL error text, or `fallback`. Drains the queue. */
static const char *ssl_reason(char *buf, size_t cap, const char *fallback)
{
    unsigned long err = ERR_peek_last_error();
    if (err == 0) {
        snprintf(buf, cap, "%s", fallback);
    } else {
        ERR_error_string_n(err, buf, cap);
    }
    ERR_clear_error();
    return buf;
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int remaining_ms(uint64_t deadline)
{
    uint64_t now = now_ms();
    if (now >= deadline) {
        return 0;
    }
    uint64_t left = deadline - now;
    return left > 1000000000u ? 1000000000 : (int)left;
}

static void set_io_timeout(int fd, int ms)
{
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
    if (ms <= 0) {
        tv.tv_usec = 1000; /* 0 would mean "block forever" */
    }
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    (void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

/* ---- nghttp2 callbacks ---------------------------------------------------- */

static ssize_t req_read_cb(nghttp2_session *s, int32_t stream_id, uint8_t *buf,
                           size_t length, uint32_t *flags,
                           nghttp2_data_source *src, void *user_data)
{
    (void)s;
    (void)stream_id;
    (void)user_data;
    struct call *call = src->ptr;
    size_t n = call->req_len - call->req_off;
    if (n > length) {
        n = length;
    }
    memcpy(buf, call->req + call->req_off, n);
    call->req_off += n;
    if (call->req_off == call->req_len) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    }
    return (ssize_t)n;
}

static struct call *stream_call(struct cli_client *c, int32_t stream_id)
{
    if (c->call != NULL && c->call->stream_id == stream_id) {
        return c->call;
    }
    return NULL;
}

static int on_header_cb(nghttp2_session *s, const nghttp2_frame *frame,
                        const uint8_t *name, size_t nlen, const uint8_t *value,
                        size_t vlen, uint8_t flags, void *user_data)
{
    (void)s;
    (void)flags;
    struct call *call = stream_call(user_data, frame->hd.stream_id);
    if (call == NULL || frame->hd.type != NGHTTP2_HEADERS) {
        return 0;
    }
    /* The first block is HCAT_RESPONSE (Trailers-Only carries grpc-status in
     * it); a later block with END_STREAM is the trailers (HCAT_HEADERS). */
    int trailer = frame->headers.cat == NGHTTP2_HCAT_HEADERS;
    cli_resp_on_header(&call->resp, (const char *)name, nlen,
                       (const char *)value, vlen, trailer);
    return 0;
}

static int on_data_chunk_cb(nghttp2_session *s, uint8_t flags, int32_t stream_id,
                            const uint8_t *data, size_t len, void *user_data)
{
    (void)flags;
    struct call *call = stream_call(user_data, stream_id);
    if (call == NULL) {
        return 0;
    }
    if (cli_resp_on_data(&call->resp, data, len) != 0) {
        /* Over the limit or malformed: stop the server sending more. The
         * status recorded in resp wins over the CANCEL we send. */
        (void)nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, stream_id,
                                        NGHTTP2_CANCEL);
    }
    return 0;
}

static int on_stream_close_cb(nghttp2_session *s, int32_t stream_id,
                              uint32_t error_code, void *user_data)
{
    (void)s;
    struct call *call = stream_call(user_data, stream_id);
    if (call != NULL) {
        cli_resp_on_close(&call->resp, error_code);
        call->done = 1;
    }
    return 0;
}

/* ---- connection ------------------------------------------------------------ */

static void conn_drop(struct cli_client *c, int graceful)
{
    if (c->h2 != NULL) {
        if (graceful && c->ssl != NULL) {
            (void)nghttp2_session_terminate_session(c->h2, NGHTTP2_NO_ERROR);
            const uint8_t *data;
            ssize_t n;
            while ((n = nghttp2_session_mem_send(c->h2, &data)) > 0) {
                if (SSL_write(c->ssl, data, (int)n) <= 0) {
                    break;
                }
            }
        }
        nghttp2_session_del(c->h2);
        c->h2 = NULL;
    }
    if (c->ssl != NULL) {
        if (graceful) {
            (void)SSL_shutdown(c->ssl);
        }
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
    if (c->fd >= 0) {
        close(c->fd);
        c->fd = -1;
    }
    ERR_clear_error();
}

static int split_endpoint(const char *ep, char *host, char *port)
{
    const char *colon = strrchr(ep, ':');
    if (colon == NULL) {
        return -1;
    }
    const char *h = ep;
    size_t hlen = (size_t)(colon - ep);
    if (hlen >= 2 && h[0] == '[' && h[hlen - 1] == ']') {
        h++;
        hlen -= 2;
    }
    if (hlen == 0 || hlen > HOST_MAX || strlen(colon + 1) > 5) {
        return -1;
    }
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    strcpy(port, colon + 1);
    return 0;
}

static int tcp_connect(const char *ep, const char *host, const char *port,
                       uint64_t deadline, int *out, struct cli_status *st)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    int gai = getaddrinfo(host, port, &hints, &res);
    if (gai != 0) {
        return st_set(st, GRPC_STATUS_UNAVAILABLE, "resolve %s: %s", ep,
                      gai_strerror(gai));
    }
    int err = ETIMEDOUT;
    for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC,
                        ai->ai_protocol);
        if (fd < 0) {
            err = errno;
            continue;
        }
        /* Non-blocking connect so the attempt is bounded by the deadline;
         * blocking again afterwards (TLS and HTTP/2 run with SO_RCVTIMEO
         * plus poll). */
        int fl = fcntl(fd, F_GETFL);
        (void)fcntl(fd, F_SETFL, fl | O_NONBLOCK);
        int rc = connect(fd, ai->ai_addr, ai->ai_addrlen);
        if (rc != 0 && errno == EINPROGRESS) {
            struct pollfd pfd = {.fd = fd, .events = POLLOUT};
            int pr;
            do {
                pr = poll(&pfd, 1, remaining_ms(deadline));
            } while (pr < 0 && errno == EINTR);
            if (pr == 0) {
                err = ETIMEDOUT;
                rc = -1;
            } else {
                socklen_t len = sizeof err;
                err = 0;
                (void)getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
                rc = err == 0 ? 0 : -1;
            }
        } else if (rc != 0) {
            err = errno;
        }
        if (rc == 0) {
            (void)fcntl(fd, F_SETFL, fl);
            int one = 1;
            (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            freeaddrinfo(res);
            *out = fd;
            return 0;
        }
        close(fd);
    }
    freeaddrinfo(res);
    return st_set(st, GRPC_STATUS_UNAVAILABLE, "connect %s: %s", ep,
                  strerror(err));
}

static int write_all(struct cli_client *c, const uint8_t *data, size_t len,
                     struct cli_status *st)
{
    while (len > 0) {
        int chunk = len > (1u << 30) ? (1 << 30) : (int)len;
        errno = 0;
        int n = SSL_write(c->ssl, data, chunk);
        if (n <= 0) {
            char buf[160];
            int wr_errno = errno;
            ERR_clear_error();
            /* In TLS 1.3 the server judges our certificate after our
             * handshake finished, so its refusal (an alert) is usually
             * what broke the write: read it for a better message. */
            uint8_t junk[256];
            set_io_timeout(c->fd, 100);
            if (SSL_read(c->ssl, junk, sizeof junk) <= 0 &&
                ERR_peek_last_error() != 0) {
                return st_set(st, GRPC_STATUS_UNAVAILABLE,
                              "%s refused the connection: %s", c->endpoint,
                              ssl_reason(buf, sizeof buf, "TLS alert"));
            }
            ERR_clear_error();
            return st_set(st, GRPC_STATUS_UNAVAILABLE, "write to %s: %s",
                          c->endpoint, wr_errno ? strerror(wr_errno) : "closed");
        }
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Send everything nghttp2 has queued. */
static int flush(struct cli_client *c, struct cli_status *st)
{
    for (;;) {
        const uint8_t *data;
        ssize_t n = nghttp2_session_mem_send(c->h2, &data);
        if (n < 0) {
            return st_set(st, GRPC_STATUS_INTERNAL, "HTTP/2: %s",
                          nghttp2_strerror((int)n));
        }
        if (n == 0) {
            return 0;
        }
        int rc = write_all(c, data, (size_t)n, st);
        if (rc != 0) {
            return rc;
        }
    }
}

static int tls_handshake(struct cli_client *c, const char *host,
                         struct cli_status *st)
{
    char buf[256];
    c->ssl = SSL_new(c->ctx);
    if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1) {
        return st_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, "TLS: %s",
                      ssl_reason(buf, sizeof buf, "SSL_new failed"));
    }
    /* Verify the server's certificate names what we dialled: an IP SAN for an
     * address, a DNS SAN (and SNI) for a name. */
    X509_VERIFY_PARAM *vp = SSL_get0_param(c->ssl);
    unsigned char ipbuf[sizeof(struct in6_addr)];
    int is_ip = inet_pton(AF_INET, host, ipbuf) == 1 ||
                inet_pton(AF_INET6, host, ipbuf) == 1;
    int ok = is_ip ? X509_VERIFY_PARAM_set1_ip_asc(vp, host)
                   : X509_VERIFY_PARAM_set1_host(vp, host, 0);
    if (ok != 1 || (!is_ip && SSL_set_tlsext_host_name(c->ssl, host) != 1)) {
        return st_set(st, GRPC_STATUS_INVALID_ARGUMENT,
                      "TLS: cannot verify against host \"%s\"", host);
    }
    errno = 0;
    if (SSL_connect(c->ssl) != 1) {
        long vr = SSL_get_verify_result(c->ssl);
        if (vr != X509_V_OK) {
            ERR_clear_error();
            return st_set(st, GRPC_STATUS_UNAVAILABLE,
                          "TLS handshake with %s: server certificate: %s",
                          c->endpoint, X509_verify_cert_error_string(vr));
        }
        return st_set(st, GRPC_STATUS_UNAVAILABLE, "TLS handshake with %s: %s",
                      c->endpoint,
                      ssl_reason(buf, sizeof buf,
                                 errno == EAGAIN ? "timed out"
                                                 : "connection closed"));
    }
    const unsigned char *alpn = NULL;
    unsigned alpn_len = 0;
    SSL_get0_alpn_selected(c->ssl, &alpn, &alpn_len);
    if (alpn_len != 2 || memcmp(alpn, "h2", 2) != 0) {
        return st_set(st, GRPC_STATUS_UNAVAILABLE,
                      "TLS handshake with %s: server did not select ALPN h2",
                      c->endpoint);
    }
    return 0;
}

static int h2_start(struct cli_client *c, struct cli_status *st)
{
    nghttp2_session_callbacks *cbs;
    if (nghttp2_session_callbacks_new(&cbs) != 0) {
        return st_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
    }
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header_cb);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs,
                                                              on_data_chunk_cb);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs,
                                                           on_stream_close_cb);
    int rc = nghttp2_session_client_new(&c->h2, cbs, c);
    nghttp2_session_callbacks_del(cbs);
    if (rc != 0) {
        c->h2 = NULL;
        return st_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, "HTTP/2: %s",
                      nghttp2_strerror(rc));
    }
    const nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, CLI_H2_WINDOW},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, CLI_H2_MAX_HEADER_LIST},
    };
    rc = nghttp2_submit_settings(c->h2, NGHTTP2_FLAG_NONE, iv,
                                 sizeof iv / sizeof iv[0]);
    if (rc == 0) {
        rc = nghttp2_session_set_local_window_size(c->h2, NGHTTP2_FLAG_NONE, 0,
                                                   (int32_t)CLI_H2_WINDOW);
    }
    if (rc != 0) {
        return st_set(st, GRPC_STATUS_INTERNAL, "HTTP/2: %s",
                      nghttp2_strerror(rc));
    }
    return flush(c, st);
}

static int connect_one(struct cli_client *c, const char *ep, uint64_t deadline,
                       struct cli_status *st)
{
    char host[HOST_MAX + 1], port[6];
    if (split_endpoint(ep, host, port) != 0) {
        return st_set(st, GRPC_STATUS_INVALID_ARGUMENT, "bad endpoint \"%s\"", ep);
    }
    snprintf(c->endpoint, sizeof c->endpoint, "%s", ep);
    int rc = tcp_connect(ep, host, port, deadline, &c->fd, st);
    if (rc == 0) {
        set_io_timeout(c->fd, remaining_ms(deadline));
        rc = tls_handshake(c, host, st);
    }
    if (rc == 0) {
        rc = h2_start(c, st);
    }
    if (rc != 0) {
        conn_drop(c, 0);
    }
    return rc;
}

int cli_client_reconnect(struct cli_client *c, const char *endpoint,
                         struct cli_status *st)
{
    conn_drop(c, 1);
    uint64_t budget = c->cfg.timeout_ms < CLI_CONNECT_TIMEOUT_MS
                          ? c->cfg.timeout_ms
                          : CLI_CONNECT_TIMEOUT_MS;
    st->delivery = CLI_DELIVERY_NOT_SENT;
    st->leader[0] = '\0';
    st->leader_id = 0;
    if (endpoint != NULL) {
        snprintf(st->endpoint, sizeof st->endpoint, "%s", endpoint);
        return connect_one(c, endpoint, now_ms() + budget, st);
    }
    st->endpoint[0] = '\0';
    int rc = GRPC_STATUS_UNAVAILABLE;
    char first[sizeof st->msg] = "";
    for (size_t i = 0; i < c->cfg.n_endpoints; i++) {
        rc = connect_one(c, c->cfg.endpoints[i], now_ms() + budget, st);
        if (rc == 0) {
            return 0;
        }
        if (i == 0) {
            memcpy(first, st->msg, sizeof first);
        }
    }
    if (c->cfg.n_endpoints > 1) {
        /* Say what happened at the first endpoint; the rest are failover. */
        st_set(st, rc, "%s (and %zu more endpoint(s) failed)", first,
               c->cfg.n_endpoints - 1);
    }
    return rc;
}

int cli_client_new(struct cli_client **out, const struct cli_client_config *cfg,
                   struct cli_status *st)
{
    char buf[256];
    memset(st, 0, sizeof *st);
    struct cli_client *c = calloc(1, sizeof *c);
    if (c == NULL) {
        return st_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
    }
    c->cfg = *cfg;
    c->fd = -1;
    c->ctx = SSL_CTX_new(TLS_client_method());
    if (c->ctx == NULL) {
        st_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, "TLS: %s",
               ssl_reason(buf, sizeof buf, "SSL_CTX_new failed"));
        goto err_free;
    }
    /* TLS 1.3 only, like the server; mutual TLS; ALPN h2 (gRPC over HTTP/2
     * requires it: PROTOCOL-HTTP2 "Transport"). */
    static const unsigned char alpn[] = {2, 'h', '2'};
    if (SSL_CTX_set_min_proto_version(c->ctx, TLS1_3_VERSION) != 1 ||
        SSL_CTX_set_alpn_protos(c->ctx, alpn, sizeof alpn) != 0) {
        st_set(st, GRPC_STATUS_INTERNAL, "TLS: %s",
               ssl_reason(buf, sizeof buf, "setup failed"));
        goto err_free_ctx;
    }
    SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
    /* OpenSSL says only "system lib" for a missing file: check first. */
    const char *files[] = {cfg->ca, cfg->cert, cfg->key};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        if (access(files[i], R_OK) != 0) {
            st_set(st, GRPC_STATUS_INVALID_ARGUMENT, "%s: %s", files[i],
                   strerror(errno));
            goto err_free_ctx;
        }
    }
    if (SSL_CTX_load_verify_locations(c->ctx, cfg->ca, NULL) != 1) {
        st_set(st, GRPC_STATUS_INVALID_ARGUMENT, "CA file %s: %s", cfg->ca,
               ssl_reason(buf, sizeof buf, "cannot load"));
        goto err_free_ctx;
    }
    if (SSL_CTX_use_certificate_chain_file(c->ctx, cfg->cert) != 1) {
        st_set(st, GRPC_STATUS_INVALID_ARGUMENT, "certificate file %s: %s",
               cfg->cert, ssl_reason(buf, sizeof buf, "cannot load"));
        goto err_free_ctx;
    }
    if (SSL_CTX_use_PrivateKey_file(c->ctx, cfg->key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(c->ctx) != 1) {
        st_set(st, GRPC_STATUS_INVALID_ARGUMENT, "key file %s: %s", cfg->key,
               ssl_reason(buf, sizeof buf, "does not match the certificate"));
        goto err_free_ctx;
    }
    *out = c;
    return 0;

err_free_ctx:
    SSL_CTX_free(c->ctx);
err_free:
    free(c);
    *out = NULL;
    return st->code;
}

void cli_client_free(struct cli_client *c)
{
    if (c == NULL) {
        return;
    }
    conn_drop(c, 1);
    SSL_CTX_free(c->ctx);
    free(c);
}

/* Read once from TLS (waiting at most until deadline) and feed nghttp2.
 * Returns 0, DEADLINE_EXCEEDED, or UNAVAILABLE when the connection broke. */
static int pump_read(struct cli_client *c, uint64_t deadline,
                     struct cli_status *st)
{
    uint8_t buf[CLI_READ_CHUNK];
    if (SSL_pending(c->ssl) == 0) {
        struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
        int pr;
        do {
            pr = poll(&pfd, 1, remaining_ms(deadline));
        } while (pr < 0 && errno == EINTR);
        if (pr == 0) {
            return st_set(st, GRPC_STATUS_DEADLINE_EXCEEDED,
                          "deadline exceeded (no answer from %s)", c->endpoint);
        }
    }
    /* A record that arrives only in part must not block past the deadline. */
    set_io_timeout(c->fd, remaining_ms(deadline));
    errno = 0;
    int n = SSL_read(c->ssl, buf, sizeof buf);
    if (n <= 0) {
        int err = SSL_get_error(c->ssl, n);
        char rbuf[160];
        if (err == SSL_ERROR_ZERO_RETURN ||
            (err == SSL_ERROR_SYSCALL && ERR_peek_error() == 0 && errno == 0)) {
            ERR_clear_error();
            return st_set(st, GRPC_STATUS_UNAVAILABLE,
                          "connection to %s closed by server", c->endpoint);
        }
        if (err == SSL_ERROR_SYSCALL && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return st_set(st, GRPC_STATUS_DEADLINE_EXCEEDED,
                          "deadline exceeded (reading from %s)", c->endpoint);
        }
        return st_set(st, GRPC_STATUS_UNAVAILABLE, "read from %s: %s",
                      c->endpoint,
                      ssl_reason(rbuf, sizeof rbuf,
                                 errno ? strerror(errno) : "TLS error"));
    }
    ssize_t used = nghttp2_session_mem_recv(c->h2, buf, (size_t)n);
    if (used < 0) {
        return st_set(st, GRPC_STATUS_INTERNAL, "HTTP/2 from %s: %s",
                      c->endpoint, nghttp2_strerror((int)used));
    }
    return 0;
}

/* How long a streaming call waits in poll() before looking at the stop
 * flag again: Ctrl-C ends `audit tail` within this. */
#define CLI_STOP_POLL_MS 200

/* Run one call to completion: the request is sent, and the response goes
 * into call->resp (unary or streaming, as the caller set it up). timeout_ms
 * 0 means no deadline (no grpc-timeout sent): only streams that run until
 * stopped use it. stop, if non-NULL, is polled while waiting: when it
 * becomes non-zero the stream is reset and the call ends OK. Returns the
 * call's status with st filled (code, msg, leader, delivery). */
static int run_call(struct cli_client *c, const char *path,
                    const ProtobufCMessage *req, struct call *call,
                    uint64_t timeout_ms, volatile sig_atomic_t *stop,
                    struct cli_status *st)
{
    size_t mlen = protobuf_c_message_get_packed_size(req);
    if (mlen > CLI_MAX_REQUEST) {
        return st_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED,
                      "request is %zu bytes, more than the %zu allowed", mlen,
                      (size_t)CLI_MAX_REQUEST);
    }
    uint8_t *frame = malloc(GRPC_FRAME_HDR_LEN + mlen);
    if (frame == NULL) {
        return st_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
    }
    grpc_frame_hdr_encode(frame, 0, (uint32_t)mlen);
    protobuf_c_message_pack(req, frame + GRPC_FRAME_HDR_LEN);

    int rc = 0;
    if (c->h2 == NULL || !nghttp2_session_want_read(c->h2)) {
        rc = cli_client_reconnect(c, NULL, st);
        if (rc != 0) {
            free(frame);
            return rc;
        }
    }
    snprintf(st->endpoint, sizeof st->endpoint, "%s", c->endpoint);

    /* From here on request bytes may reach the server. */
    st->delivery = CLI_DELIVERY_UNKNOWN;
    call->req = frame;
    call->req_len = GRPC_FRAME_HDR_LEN + mlen;
    call->req_off = 0;

    char timeout[16];
    if (grpc_timeout_format(timeout_ms, timeout, sizeof timeout) != 0) {
        snprintf(timeout, sizeof timeout, "%uS", 86400u);
    }
#define NV(n, v)                                                            \
    {                                                                       \
        (uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, strlen(v),           \
            NGHTTP2_NV_FLAG_NO_COPY_NAME                                    \
    }
    /* PROTOCOL-HTTP2: Request-Headers. grpc-timeout last: left out when
     * the call has no deadline. */
    const nghttp2_nv nva[] = {
        NV(":method", "POST"),
        NV(":scheme", "https"),
        NV(":path", path),
        NV(":authority", c->endpoint),
        NV("te", "trailers"),
        NV("content-type", "application/grpc"),
        NV("user-agent", "wardenctl/0.1"),
        NV("grpc-timeout", timeout),
    };
#undef NV
    size_t nnv = sizeof nva / sizeof nva[0] - (timeout_ms == 0 ? 1u : 0u);
    nghttp2_data_provider prd = {.source.ptr = call, .read_callback = req_read_cb};
    c->call = call;
    int32_t sid = nghttp2_submit_request(c->h2, NULL, nva, nnv, &prd, call);
    if (sid < 0) {
        rc = st_set(st, GRPC_STATUS_INTERNAL, "HTTP/2: %s", nghttp2_strerror(sid));
        goto out;
    }
    call->stream_id = sid;

    /* No deadline: far enough that remaining_ms() saturates. */
    uint64_t deadline = timeout_ms == 0
                            ? now_ms() + CLI_TIMEOUT_MAX_MS
                            : now_ms() + timeout_ms + CLI_DEADLINE_GRACE_MS;
    int broken = 0, stopped = 0;
    while (!call->done) {
        rc = flush(c, st);
        if (rc != 0) {
            broken = 1;
            break;
        }
        if (call->done) {
            break;
        }
        if (stop != NULL) {
            if (*stop) {
                /* The user asked to stop: reset our stream, keep the
                 * connection. */
                cli_resp_stop(&call->resp);
                (void)nghttp2_submit_rst_stream(c->h2, NGHTTP2_FLAG_NONE, sid,
                                                NGHTTP2_CANCEL);
                struct cli_status ignored;
                (void)flush(c, &ignored);
                stopped = 1;
                rc = 0;
                break;
            }
            if (SSL_pending(c->ssl) == 0) {
                int left = remaining_ms(deadline);
                struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
                int pr = poll(&pfd, 1, left < CLI_STOP_POLL_MS ? left : CLI_STOP_POLL_MS);
                if ((pr == 0 && left > CLI_STOP_POLL_MS) || (pr < 0 && errno == EINTR)) {
                    continue; /* look at *stop again */
                }
            }
        }
        rc = pump_read(c, deadline, st);
        if (rc == GRPC_STATUS_DEADLINE_EXCEEDED) {
            /* Tell the server to stop; the connection stays usable. */
            (void)nghttp2_submit_rst_stream(c->h2, NGHTTP2_FLAG_NONE, sid,
                                            NGHTTP2_CANCEL);
            struct cli_status ignored;
            (void)flush(c, &ignored);
            break;
        }
        if (rc != 0) {
            broken = 1;
            break;
        }
    }
    if (call->done) {
        /* Send anything the close left (WINDOW_UPDATE, SETTINGS ack). */
        struct cli_status ignored;
        (void)flush(c, &ignored);
        rc = call->resp.status;
        snprintf(st->msg, sizeof st->msg, "%s", call->resp.status_msg);
        snprintf(st->leader, sizeof st->leader, "%s", call->resp.leader);
        st->leader_id = call->resp.leader_id;
        st->delivery = cli_resp_delivery(&call->resp);
        st->code = rc;
    } else if (stopped) {
        st->code = 0;
        st->msg[0] = '\0';
        st->delivery = CLI_DELIVERY_ANSWERED;
    }
    if (broken || (c->h2 != NULL && !nghttp2_session_want_read(c->h2) &&
                   !nghttp2_session_want_write(c->h2))) {
        conn_drop(c, 0);
    }
out:
    c->call = NULL;
    free(frame);
    call->req = NULL;
    return rc;
}

int cli_client_call(struct cli_client *c, const char *path,
                    const ProtobufCMessage *req,
                    const ProtobufCMessageDescriptor *resp_desc,
                    ProtobufCMessage **resp, struct cli_status *st)
{
    memset(st, 0, sizeof *st);
    *resp = NULL;
    struct call call = {0};
    cli_resp_init(&call.resp, c->cfg.max_msg);
    int rc = run_call(c, path, req, &call, c->cfg.timeout_ms, NULL, st);
    if (rc == 0 && call.done) {
        uint8_t *payload;
        size_t plen;
        cli_resp_take_payload(&call.resp, &payload, &plen);
        *resp = protobuf_c_message_unpack(resp_desc, NULL, plen, payload);
        free(payload);
        if (*resp == NULL) {
            rc = st_set(st, GRPC_STATUS_INTERNAL, "cannot decode %s from %s",
                        resp_desc->name, c->endpoint);
        }
    }
    cli_resp_close(&call.resp);
    return rc;
}

int cli_client_stream(struct cli_client *c, const char *path,
                      const ProtobufCMessage *req, cli_resp_msg_cb cb,
                      void *user, uint64_t timeout_ms,
                      volatile sig_atomic_t *stop, struct cli_status *st)
{
    memset(st, 0, sizeof *st);
    struct call call = {0};
    cli_resp_init(&call.resp, c->cfg.max_msg);
    cli_resp_set_stream(&call.resp, cb, user);
    int rc = run_call(c, path, req, &call, timeout_ms, stop, st);
    cli_resp_close(&call.resp);
    return rc;
}
