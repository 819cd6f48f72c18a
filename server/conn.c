/* conn.c - the TLS + gRPC connection pump (conn.h). */
#include "conn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>

#include "../common/log.h"
#include "tls.h"

enum conn_state {
    CONN_HANDSHAKE,
    CONN_OPEN,
    CONN_DRAINING,
    CONN_FLUSHING,
    CONN_CLOSING,
    CONN_N_STATES
};

static const char *const state_names[CONN_N_STATES] = {
    "handshake", "open", "draining", "flushing", "closing"};

/* allowed[from] is the set of states `from` may move to (conn.h diagram). */
static const unsigned allowed[CONN_N_STATES] = {
    [CONN_HANDSHAKE] = 1u << CONN_OPEN | 1u << CONN_FLUSHING | 1u << CONN_CLOSING,
    [CONN_OPEN] = 1u << CONN_DRAINING | 1u << CONN_FLUSHING | 1u << CONN_CLOSING,
    [CONN_DRAINING] = 1u << CONN_FLUSHING | 1u << CONN_CLOSING,
    [CONN_FLUSHING] = 1u << CONN_CLOSING,
    [CONN_CLOSING] = 0,
};

/* Handles whose close callbacks we wait for before freeing. */
#define CONN_N_HANDLES 3

struct conn {
    struct conn_host *host;
    struct conn_link link;   /* host->conns, until freed */
    struct conn_link dirty;  /* host->dirty when queued; self-linked if not */
    struct conn_link hs;          /* on host->hs_wait */
    enum conn_state state;

    uv_tcp_t tcp;
    uv_timer_t timer;        /* handshake / idle / drain / linger */
    uv_timer_t deadline;     /* next grpc-timeout expiry */
    uv_shutdown_t shutdown_req;
    int pending_closes;

    SSL *ssl;
    BIO *rbio, *wbio;        /* owned by ssl */
    struct tls_peer peer;
    struct grpc_conn *grpc;

    size_t wq_bytes;         /* written to uv_write, not yet completed */
    int reading;
    int in_pump;             /* ignore wakeups while we pump ourselves */
    int tls_ok;              /* handshake completed: SSL_shutdown allowed */
    uint64_t accepted_at;
    uint64_t last_read;
    uint64_t bytes_in, bytes_out;
    char remote[CONN_ADDR_MAX];
    char reason[WERR_MSG_MAX];   /* why it is closing */
};


struct write_req {
    uv_write_t req;
    struct conn *conn;
    size_t len;
    char data[];
};

/* ---- lists --------------------------------------------------------------- */

static void link_init(struct conn_link *l)
{
    l->prev = l->next = l;
}

static int link_linked(const struct conn_link *l)
{
    return l->next != l;
}

static void link_push(struct conn_link *head, struct conn_link *l)
{
    l->prev = head->prev;
    l->next = head;
    head->prev->next = l;
    head->prev = l;
}

static void link_remove(struct conn_link *l)
{
    l->prev->next = l->next;
    l->next->prev = l->prev;
    link_init(l);
}

struct conn *conn_from_link(struct conn_link *l)
{
    return (struct conn *)(void *)((char *)l - offsetof(struct conn, link));
}

static struct conn *conn_from_dirty(struct conn_link *l)
{
    return (struct conn *)(void *)((char *)l - offsetof(struct conn, dirty));
}

static struct conn *conn_from_hs(struct conn_link *l)
{
    return (struct conn *)(void *)((char *)l - offsetof(struct conn, hs));
}

void conn_host_init(struct conn_host *h)
{
    link_init(&h->conns);
    link_init(&h->dirty);
    link_init(&h->hs_wait);
    h->hs_left = CONN_HANDSHAKES_PER_ITER;
    h->n_hs_deferred = 0;
    h->n_conns = 0;
}

/* ---- helpers ------------------------------------------------------------- */

static void set_state(struct conn *c, enum conn_state to)
{
    /* Invariant: only the transitions drawn in conn.h. A violation is a bug
     * in this file, not a peer's doing: stop before it corrupts anything. */
    if (!(allowed[c->state] & (1u << to))) {
        wlog(WLOG_ERROR, "BUG: bad connection state transition", "from",
             state_names[c->state], "to", state_names[to], NULL);
        abort();
    }
    wlog(WLOG_DEBUG, "connection state", "remote", c->remote, "from",
         state_names[c->state], "to", state_names[to], NULL);
    c->state = to;
}

static int serving(const struct conn *c)
{
    return c->state == CONN_OPEN || c->state == CONN_DRAINING;
}

static uint64_t now_ms(const struct conn *c)
{
    return uv_now(c->host->loop);
}

static const char *principal_str(const struct conn *c, char *buf, size_t cap)
{
    if (!c->peer.have_principal ||
        principal_format_uri(&c->peer.principal, buf, cap) != 0) {
        snprintf(buf, cap, "-");
    }
    return buf;
}

static void finish(struct conn *c, const char *reason);
static void pump(struct conn *c);
static void timer_cb(uv_timer_t *t);

static void timer_set(struct conn *c, uint64_t ms)
{
    uv_timer_start(&c->timer, timer_cb, ms, 0);
}

/* ---- close --------------------------------------------------------------- */

static void close_cb(uv_handle_t *h)
{
    struct conn *c = h->data;
    if (--c->pending_closes > 0) {
        return;
    }
    struct conn_host *host = c->host;
    link_remove(&c->link);
    host->n_conns--;
    SSL_free(c->ssl);
    free(c);
    if (host->on_conn_freed != NULL) {
        host->on_conn_freed(host);
    }
}

void conn_close(struct conn *c, const char *reason)
{
    if (c->state == CONN_CLOSING) {
        return;
    }
    if (reason != NULL && c->reason[0] == '\0') {
        snprintf(c->reason, sizeof c->reason, "%s", reason);
    }
    int was_handshake = c->state == CONN_HANDSHAKE || !c->tls_ok;
    set_state(c, CONN_CLOSING);
    if (link_linked(&c->dirty)) {
        link_remove(&c->dirty);
    }
    if (link_linked(&c->hs)) {
        link_remove(&c->hs);
    }
    /* Cancel in-flight calls now, while every handler's data is alive;
     * their cancel callbacks drop references to the calls. */
    grpc_conn_free(c->grpc);
    c->grpc = NULL;

    char pbuf[PRINCIPAL_NAME_MAX + 32], dur[24], bin[24], bout[24];
    snprintf(dur, sizeof dur, "%llu", (unsigned long long)(now_ms(c) - c->accepted_at));
    snprintf(bin, sizeof bin, "%llu", (unsigned long long)c->bytes_in);
    snprintf(bout, sizeof bout, "%llu", (unsigned long long)c->bytes_out);
    if (!was_handshake) {
        wlog(WLOG_INFO, "connection closed", "remote", c->remote, "principal",
             principal_str(c, pbuf, sizeof pbuf), "reason",
             c->reason[0] ? c->reason : "closed", "duration_ms", dur, "bytes_in",
             bin, "bytes_out", bout, NULL);
    } else {
        wlog(WLOG_DEBUG, "connection closed", "remote", c->remote, "reason",
             c->reason[0] ? c->reason : "closed", "duration_ms", dur, NULL);
    }
    if (c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = 0;
    }
    /* Pending writes complete with UV_ECANCELED before close_cb runs. */
    c->pending_closes = CONN_N_HANDLES;
    uv_close((uv_handle_t *)&c->tcp, close_cb);
    uv_close((uv_handle_t *)&c->timer, close_cb);
    uv_close((uv_handle_t *)&c->deadline, close_cb);
}

/* ---- writing ------------------------------------------------------------- */

static void update_reading(struct conn *c);
static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void resume_handshake(struct conn *c);

static void write_cb(uv_write_t *req, int status)
{
    struct write_req *w = (struct write_req *)(void *)req;
    struct conn *c = w->conn;
    c->wq_bytes -= w->len;
    free(w);
    if (c->state == CONN_CLOSING) {
        return;
    }
    if (status < 0) {
        conn_close(c, uv_strerror(status));
        return;
    }
    /* Backpressure released: pull more from gRPC and read again. */
    if (serving(c) && c->wq_bytes <= c->host->write_queue_max / 2) {
        pump(c);
        if (c->state != CONN_CLOSING) {
            update_reading(c);
        }
    }
}

/* Move whatever TLS produced (records, alerts) from wbio to the socket.
 * Returns 0, or -1 if the connection was closed. */
static int flush_tls(struct conn *c)
{
    size_t pending = BIO_ctrl_pending(c->wbio);
    if (pending == 0) {
        return 0;
    }
    struct write_req *w = malloc(sizeof *w + pending);
    if (w == NULL) {
        conn_close(c, "out of memory for write");
        return -1;
    }
    int n = BIO_read(c->wbio, w->data, (int)pending);
    if (n <= 0) {
        free(w);
        conn_close(c, "TLS output BIO read failed");
        return -1;
    }
    w->conn = c;
    w->len = (size_t)n;
    uv_buf_t buf = uv_buf_init(w->data, (unsigned)n);
    int rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, &buf, 1, write_cb);
    if (rc < 0) {
        /* libuv: on error the callback is never called. */
        free(w);
        conn_close(c, uv_strerror(rc));
        return -1;
    }
    c->wq_bytes += (size_t)n;
    c->bytes_out += (uint64_t)n;
    return 0;
}

static int ssl_write_all(struct conn *c, const uint8_t *data, size_t len)
{
    if (len == 0) {
        return 0;
    }
    /* Memory BIOs grow, so SSL_write completes in full or fails. */
    int n = SSL_write(c->ssl, data, (int)len);
    if (n <= 0 || (size_t)n != len) {
        struct werr e;
        tls_failure(c->ssl, n, NULL, &e);
        conn_close(c, e.msg);
        return -1;
    }
    return 0;
}

static void deadline_cb(uv_timer_t *t)
{
    struct conn *c = t->data;
    if (serving(c)) {
        pump(c); /* pump ticks the gRPC layer with uv_now */
    }
}

/* Pull frames from gRPC, encrypt, write; stop at the write queue bound.
 * Then re-arm the deadline timer and notice a finished session. */
static void pump(struct conn *c)
{
    uint8_t stage[CONN_TLS_RECORD_MAX];
    size_t staged = 0;

    if (!serving(c)) {
        return;
    }
    if (link_linked(&c->dirty)) {
        link_remove(&c->dirty);
    }
    c->in_pump = 1;
    uint64_t now = now_ms(c);
    uint64_t next = grpc_conn_tick(c->grpc, now);
    while (c->wq_bytes < c->host->write_queue_max) {
        const uint8_t *data = NULL;
        long n = grpc_conn_send(c->grpc, &data);
        if (n < 0) {
            c->in_pump = 0;
            conn_close(c, werr_str((int)n));
            return;
        }
        if (n == 0) {
            break;
        }
        size_t len = (size_t)n;
        if (staged + len > sizeof stage) {
            if (ssl_write_all(c, stage, staged) != 0 || flush_tls(c) != 0) {
                return;
            }
            staged = 0;
        }
        if (len > sizeof stage) {
            if (ssl_write_all(c, data, len) != 0 || flush_tls(c) != 0) {
                return;
            }
        } else {
            memcpy(stage + staged, data, len);
            staged += len;
        }
    }
    if (ssl_write_all(c, stage, staged) != 0 || flush_tls(c) != 0) {
        return;
    }
    c->in_pump = 0;

    if (next != 0) {
        uv_timer_start(&c->deadline, deadline_cb, next > now ? next - now : 0, 0);
    } else {
        uv_timer_stop(&c->deadline);
    }
    /* RFC 9113 §6.8: after GOAWAY (either side) and the last stream closed,
     * the session is done; nghttp2 reports that as want neither. */
    if (!grpc_conn_want_read(c->grpc) && !grpc_conn_want_write(c->grpc)) {
        finish(c, c->state == CONN_DRAINING ? "drained" : "session ended");
    }
}

static void wakeup_cb(void *arg)
{
    struct conn *c = arg;
    if (c->in_pump || !serving(c) || link_linked(&c->dirty)) {
        return;
    }
    link_push(&c->host->dirty, &c->dirty);
}

int conn_host_flush(struct conn_host *h)
{
    /* A new iteration: waiting handshakes first, in arrival order. */
    h->hs_left = CONN_HANDSHAKES_PER_ITER;
    while (h->hs_left > 0 && link_linked(&h->hs_wait)) {
        struct conn *c = conn_from_hs(h->hs_wait.next);
        link_remove(&c->hs);
        h->hs_left--;
        if (c->state == CONN_HANDSHAKE) {
            resume_handshake(c);
        }
    }
    /* pump() unlinks each conn; a conn re-queued during its own pump waits
     * for the next iteration, so this loop is bounded by the list length. */
    struct conn_link batch;
    link_init(&batch);
    if (link_linked(&h->dirty)) {
        batch.next = h->dirty.next;
        batch.prev = h->dirty.prev;
        batch.next->prev = &batch;
        batch.prev->next = &batch;
        link_init(&h->dirty);
    }
    while (link_linked(&batch)) {
        struct conn *c = conn_from_dirty(batch.next);
        link_remove(&c->dirty);
        pump(c);
    }
    return link_linked(&h->hs_wait);
}

/* ---- graceful end -------------------------------------------------------- */

static void shutdown_cb(uv_shutdown_t *req, int status)
{
    struct conn *c = req->data;
    if (status < 0 && c->state != CONN_CLOSING) {
        conn_close(c, NULL);
    }
    /* Otherwise our FIN is out; read_cb closes on the peer's EOF, or the
     * linger timer does. */
}

/* Queue the last bytes (close_notify after a good session; a failed
 * handshake's alert is already in wbio), shut down the write side once
 * they are written, and close when the peer closes too.
 *
 * Lingering close: we keep reading (and discarding) until the peer's EOF.
 * Closing a socket with unread bytes in its receive buffer makes the kernel
 * send RST instead of FIN (RFC 1122 §4.2.2.13), and an RST makes the
 * client's kernel drop what it has not read yet - our GOAWAY or alert. The
 * linger timer bounds the whole wait. */
static void finish(struct conn *c, const char *reason)
{
    if (c->state == CONN_FLUSHING || c->state == CONN_CLOSING) {
        return;
    }
    if (reason != NULL && c->reason[0] == '\0') {
        snprintf(c->reason, sizeof c->reason, "%s", reason);
    }
    set_state(c, CONN_FLUSHING);
    if (link_linked(&c->dirty)) {
        link_remove(&c->dirty);
    }
    uv_timer_stop(&c->deadline);
    update_reading(c); /* read and discard, whatever the write queue */
    if (c->state == CONN_CLOSING) {
        return;
    }
    if (c->tls_ok) {
        (void)SSL_shutdown(c->ssl); /* queues close_notify */
        ERR_clear_error();
    }
    if (flush_tls(c) != 0) {
        return;
    }
    timer_set(c, CONN_LINGER_MS);
    c->shutdown_req.data = c;
    if (uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp, shutdown_cb) != 0) {
        conn_close(c, NULL);
    }
}

void conn_shutdown(struct conn *c)
{
    switch (c->state) {
    case CONN_HANDSHAKE:
        conn_close(c, "server shutting down during handshake");
        return;
    case CONN_OPEN:
        set_state(c, CONN_DRAINING);
        /* The node's grace timer bounds the drain, not the idle timer. */
        uv_timer_stop(&c->timer);
        grpc_conn_shutdown(c->grpc);
        pump(c);
        return;
    default:
        return;
    }
}

/* ---- timers -------------------------------------------------------------- */

static void timer_cb(uv_timer_t *t)
{
    struct conn *c = t->data;
    uint64_t now = now_ms(c);
    switch (c->state) {
    case CONN_HANDSHAKE: {
        char ms[24];
        snprintf(ms, sizeof ms, "%llu", (unsigned long long)c->host->handshake_timeout_ms);
        wlog(WLOG_WARN, "TLS handshake failed", "remote", c->remote, "reason",
             "handshake timeout", "timeout_ms", ms, NULL);
        conn_close(c, "handshake timeout");
        return;
    }
    case CONN_OPEN: {
        uint64_t idle = c->host->idle_timeout_ms;
        if (grpc_conn_active_calls(c->grpc) > 0 || now - c->last_read < idle) {
            uint64_t since = now - c->last_read;
            timer_set(c, since < idle ? idle - since : idle);
            return;
        }
        snprintf(c->reason, sizeof c->reason, "idle timeout");
        set_state(c, CONN_DRAINING);
        timer_set(c, CONN_IDLE_DRAIN_MS);
        grpc_conn_shutdown(c->grpc);
        pump(c);
        return;
    }
    case CONN_DRAINING:
        conn_close(c, "drain timeout");
        return;
    case CONN_FLUSHING:
        conn_close(c, NULL);
        return;
    default:
        return;
    }
}

/* ---- reading ------------------------------------------------------------- */

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct conn *c = h->data;
    (void)suggested;
    /* One buffer for all connections: read_cb consumes it before returning
     * (libuv allows this; see uv_read_start). */
    *buf = uv_buf_init(c->host->read_buf, sizeof c->host->read_buf);
}

/* Decrypt everything in rbio and hand it to gRPC. */
static void read_plaintext(struct conn *c)
{
    uint8_t plain[CONN_TLS_RECORD_MAX];
    while (serving(c)) {
        int n = SSL_read(c->ssl, plain, sizeof plain);
        if (n > 0) {
            int rc = grpc_conn_recv(c->grpc, plain, (size_t)n, now_ms(c));
            if (rc < 0) {
                char pbuf[PRINCIPAL_NAME_MAX + 32];
                wlog(WLOG_WARN, "HTTP/2 connection error", "remote", c->remote,
                     "principal", principal_str(c, pbuf, sizeof pbuf), "error",
                     werr_str(rc), NULL);
                /* nghttp2 has queued a GOAWAY with the error: send it. */
                snprintf(c->reason, sizeof c->reason, "HTTP/2 error: %s", werr_str(rc));
                pump(c);
                finish(c, NULL);
                return;
            }
            continue;
        }
        int err = SSL_get_error(c->ssl, n);
        if (err == SSL_ERROR_WANT_READ) {
            ERR_clear_error();
            return;
        }
        if (err == SSL_ERROR_ZERO_RETURN) {
            finish(c, "peer sent close_notify");
            return;
        }
        struct werr e;
        tls_failure(c->ssl, n, &c->peer, &e);
        conn_close(c, e.msg);
        return;
    }
}

static void handshake_done(struct conn *c)
{
    char pbuf[PRINCIPAL_NAME_MAX + 32];
    if (!c->peer.have_principal) {
        /* verify_cb checks the identity; reaching here without one would
         * mean a resumed session or a callback bypass. Refuse. */
        wlog(WLOG_WARN, "TLS handshake failed", "remote", c->remote, "reason",
             "no principal after handshake", NULL);
        conn_close(c, "no principal");
        return;
    }
    c->tls_ok = 1;
    struct grpc_conn_config cfg = c->host->grpc_cfg;
    cfg.wakeup = wakeup_cb;
    cfg.wakeup_arg = c;
    struct werr e;
    if (grpc_conn_new(&c->grpc, c->host->router, &cfg, &c->peer.principal, &e) != 0) {
        wlog(WLOG_ERROR, "gRPC session setup failed", "remote", c->remote,
             "error", e.msg, NULL);
        conn_close(c, e.msg);
        return;
    }
    set_state(c, CONN_OPEN);
    const unsigned char *alpn = NULL;
    unsigned alpn_len = 0;
    SSL_get0_alpn_selected(c->ssl, &alpn, &alpn_len);
    wlog(WLOG_INFO, "connection accepted", "remote", c->remote, "principal",
         principal_str(c, pbuf, sizeof pbuf), "role",
         principal_role_name(c->peer.principal.role), "tls",
         SSL_get_version(c->ssl), "cipher", SSL_get_cipher_name(c->ssl), "alpn",
         alpn_len ? "h2" : "none (prior knowledge)", NULL);
    c->last_read = now_ms(c);
    timer_set(c, c->host->idle_timeout_ms);
}

static void do_handshake(struct conn *c)
{
    int r = SSL_do_handshake(c->ssl);
    if (r == 1) {
        if (flush_tls(c) != 0) {
            return;
        }
        handshake_done(c);
        return;
    }
    int err = SSL_get_error(c->ssl, r);
    if (err == SSL_ERROR_WANT_READ) {
        ERR_clear_error();
        flush_tls(c);
        return;
    }
    struct werr e;
    tls_failure(c->ssl, r, &c->peer, &e);
    wlog(WLOG_WARN, "TLS handshake failed", "remote", c->remote, "reason", e.msg,
         NULL);
    snprintf(c->reason, sizeof c->reason, "handshake failed: %.200s", e.msg);
    finish(c, NULL); /* the alert is in wbio: let the client read why */
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct conn *c = s->data;
    if (nread == 0) {
        return; /* EAGAIN */
    }
    if (nread < 0) {
        conn_close(c, nread == UV_EOF ? "peer closed" : uv_strerror((int)nread));
        return;
    }
    c->bytes_in += (uint64_t)nread;
    c->last_read = now_ms(c);
    if (c->state != CONN_HANDSHAKE && !serving(c)) {
        return; /* flushing: the peer's further bytes are moot */
    }
    if (BIO_write(c->rbio, buf->base, (int)nread) != (int)nread) {
        conn_close(c, "TLS input BIO write failed");
        return;
    }
    if (c->state == CONN_HANDSHAKE) {
        if (link_linked(&c->hs) || c->host->hs_left == 0) {
            /* Over this iteration's budget (CONN_HANDSHAKES_PER_ITER): the
             * bytes wait in rbio; conn_host_flush resumes it. */
            if (!link_linked(&c->hs)) {
                link_push(&c->host->hs_wait, &c->hs);
                c->host->n_hs_deferred++;
            }
            if (c->reading) {
                uv_read_stop((uv_stream_t *)&c->tcp);
                c->reading = 0;
            }
            return;
        }
        c->host->hs_left--;
        do_handshake(c);
        if (c->state != CONN_OPEN) {
            return;
        }
    }
    read_plaintext(c);
    pump(c);
    if (serving(c)) {
        update_reading(c);
    }
}

/* A handshake that waited for the budget: its bytes are in rbio. */
static void resume_handshake(struct conn *c)
{
    do_handshake(c);
    if (c->state == CONN_HANDSHAKE) {
        update_reading(c); /* the client's next flight */
        return;
    }
    if (c->state != CONN_OPEN) {
        return;
    }
    read_plaintext(c);
    pump(c);
    if (serving(c)) {
        update_reading(c);
    }
}

/* Read while the write queue is below its bound (with hysteresis: stop at
 * the bound, resume at half of it, see CONN_WRITE_QUEUE_MAX). */
static void update_reading(struct conn *c)
{
    size_t max = c->host->write_queue_max;
    if (c->state == CONN_FLUSHING) {
        /* Lingering close: reading only discards, it cannot grow output. */
        if (!c->reading) {
            if (uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb) != 0) {
                conn_close(c, NULL);
                return;
            }
            c->reading = 1;
        }
        return;
    }
    if (c->reading && c->wq_bytes >= max) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = 0;
        wlog(WLOG_DEBUG, "backpressure: write queue full, reading paused",
             "remote", c->remote, NULL);
    } else if (!c->reading && c->wq_bytes <= max / 2 &&
               (c->state == CONN_HANDSHAKE || serving(c))) {
        int rc = uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb);
        if (rc != 0) {
            conn_close(c, uv_strerror(rc));
            return;
        }
        c->reading = 1;
    }
}

/* ---- accept -------------------------------------------------------------- */

static void peer_name(struct conn *c)
{
    struct sockaddr_storage ss;
    int len = sizeof ss;
    char ip[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    snprintf(c->remote, sizeof c->remote, "?");
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) != 0) {
        return;
    }
    if (ss.ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)&ss;
        uv_ip4_name(in, ip, sizeof ip);
        port = ntohs(in->sin_port);
        snprintf(c->remote, sizeof c->remote, "%s:%d", ip, port);
    } else if (ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&ss;
        uv_ip6_name(in6, ip, sizeof ip);
        port = ntohs(in6->sin6_port);
        snprintf(c->remote, sizeof c->remote, "[%s]:%d", ip, port);
    }
}

int conn_accept(struct conn_host *h, uv_stream_t *server, struct werr *e)
{
    struct conn *c = calloc(1, sizeof *c);
    if (c == NULL) {
        return werr_set(e, WERR_NOMEM, "accept: out of memory");
    }
    c->host = h;
    link_init(&c->dirty);
    link_init(&c->hs);
    c->state = CONN_HANDSHAKE;
    int rc = uv_tcp_init(h->loop, &c->tcp);
    if (rc != 0) {
        free(c);
        return werr_set(e, WERR_IO, "accept: uv_tcp_init: %s", uv_strerror(rc));
    }
    uv_timer_init(h->loop, &c->timer);
    uv_timer_init(h->loop, &c->deadline);
    c->tcp.data = c->timer.data = c->deadline.data = c;
    /* From here the conn is on the list and freed only by close_cb. */
    link_push(&h->conns, &c->link);
    h->n_conns++;
    c->accepted_at = now_ms(c);

    rc = uv_accept(server, (uv_stream_t *)&c->tcp);
    if (rc != 0) {
        werr_set(e, WERR_IO, "accept: %s", uv_strerror(rc));
        conn_close(c, "accept failed");
        return e->code;
    }
    peer_name(c);
    if (h->n_conns > h->max_conns) {
        char max[24];
        snprintf(max, sizeof max, "%zu", h->max_conns);
        wlog(WLOG_WARN, "connection refused: too many connections", "remote",
             c->remote, "max_conns", max, NULL);
        conn_close(c, "max connections");
        return 0;
    }
    /* gRPC is request/response over small frames: do not wait for Nagle. */
    uv_tcp_nodelay(&c->tcp, 1);
    uv_tcp_keepalive(&c->tcp, 1, 60);
    struct werr te;
    if (tls_ssl_new(h->ssl_ctx, &c->peer, &c->ssl, &c->rbio, &c->wbio, &te) != 0) {
        wlog(WLOG_ERROR, "TLS session setup failed", "remote", c->remote, "error",
             te.msg, NULL);
        conn_close(c, te.msg);
        return 0;
    }
    wlog(WLOG_DEBUG, "connection opened", "remote", c->remote, NULL);
    timer_set(c, h->handshake_timeout_ms);
    update_reading(c);
    return 0;
}
