/* transport_tls.c - raft_uv transport over mutually authenticated TLS 1.3.
 *
 * One struct conn per peer connection, born in listen_cb/ctls_connect and
 * freed only in conn_finalize after every one of its handles has closed
 * (libuv: memory is released in or after the close callback).
 *
 *   raft_uv <-> raft_end (uv_pipe) ==socketpair== bridge (uv_pipe)
 *           <-> SSL (memory BIOs) <-> tcp (uv_tcp) <-> peer
 *
 * States: TCP_CONNECTING (outbound only) -> TLS_HANDSHAKE -> RAFT_HANDSHAKE
 * (inbound only: reading the raft_uv preamble inside TLS) -> OPEN; any
 * state -> CLOSING. Only OPEN connections have a raft_end, and raft owns it
 * from the moment it is handed over (raft uv_close()s and raft_free()s it).
 */
#include "consensus/transport_tls.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "common/log.h"

/* raft_uv handshake protocol number (upstream UV__TCP_HANDSHAKE_PROTOCOL). */
#define CTLS_RAFT_PROTOCOL 1
/* protocol, server id, address length: three little-endian u64. */
#define CTLS_PREAMBLE_LEN 24
/* Bytes read from a socket per read callback; also the most plaintext that
 * one read can add on top of CTLS_QUEUE_MAX before backpressure engages. */
#define CTLS_READ_CHUNK 65536
/* One TLS record's worth of plaintext per SSL_read call. */
#define CTLS_PLAIN_CHUNK 16384
/* Listen backlog: the kernel-side bound matching CTLS_PENDING_MAX. */
#define CTLS_BACKLOG CTLS_PENDING_MAX

enum conn_state {
    CONN_TCP_CONNECTING = 1,
    CONN_TLS_HANDSHAKE,
    CONN_RAFT_HANDSHAKE,
    CONN_OPEN,
    CONN_CLOSING,
};

struct ctls;

struct conn {
    struct ctls *x;
    struct conn *prev, *next;    /* x->conns */
    int outbound;
    enum conn_state state;
    raft_id id;                  /* outbound: dialled; inbound: claimed */
    char peer_addr[CTLS_ADDRESS_MAX];
    struct raft_uv_connect *req; /* outbound only */
    raft_uv_connect_cb cb;
    int cb_fired;
    int pending;                 /* counted in x->n_pending */
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_pipe_t bridge;
    int bridge_init;
    uv_connect_t connect_req;
    unsigned open_handles;       /* handles still to see their close cb */
    SSL *ssl;
    BIO *rbio;                   /* network -> SSL (owned by ssl) */
    BIO *wbio;                   /* SSL -> network (owned by ssl) */
    size_t tcp_queued;           /* bytes in flight to the peer */
    size_t bridge_queued;        /* bytes in flight to raft */
    int tcp_paused;              /* tcp reading stopped for backpressure */
    int bridge_paused;           /* bridge reading stopped */
    unsigned char hs[CTLS_PREAMBLE_LEN + CTLS_ADDRESS_MAX];
    size_t hs_have, hs_need;     /* inbound raft handshake progress */
    struct principal peer;
};

struct ctls {
    struct raft_uv_transport *t;
    uv_loop_t *loop;
    SSL_CTX *ctx;
    consensus_tls_authorize_fn authorize;
    void *authorize_arg;
    unsigned handshake_timeout_ms;
    raft_id id;
    char address[CTLS_ADDRESS_MAX];
    uv_tcp_t listener;
    int listener_init, listener_closed;
    /* Source address for outbound connections: the listen IP, port 0
     * (ctls_listen). Unset (have_source 0) before listen or when listening
     * on INADDR_ANY, where the kernel's route choice is as good as any. */
    struct sockaddr_in source;
    int have_source;
    raft_uv_accept_cb accept_cb;
    struct conn *conns;
    unsigned n_pending;
    int closing;
    raft_uv_transport_close_cb close_cb;
    unsigned long refused;
    /* Scratch buffers: read callbacks run one at a time on one thread and
     * consume their data before returning, so one of each suffices. */
    char rbuf[CTLS_READ_CHUNK];
    char plain[CTLS_PLAIN_CHUNK];
};

struct wreq {
    uv_write_t w;
    struct conn *c;
    int to_tcp;
    size_t len;
    char data[];
};

static void conn_close(struct conn *c, const char *reason);
static void conn_pump_tls(struct conn *c);

/* ---- small helpers --------------------------------------------------------- */

static void put64le(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get64le(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

/* "a.b.c.d:port" or "a.b.c.d:port/<anything>" -> sockaddr. The raft
 * address of a warden server is "PEERHOST:PEERPORT/CLIENTHOST:CLIENTPORT"
 * (consensus/node.h); the transport dials and listens on the peer part
 * only. Returns 0 or -1. */
static int parse_ipv4(const char *address, struct sockaddr_in *out)
{
    char hostport[80];
    char *end, *colon;
    const char *slash = strchr(address, '/');
    size_t len = slash != NULL ? (size_t)(slash - address) : strlen(address);
    unsigned long port;

    if (len == 0 || len >= sizeof hostport)
        return -1;
    memcpy(hostport, address, len);
    hostport[len] = '\0';
    colon = strrchr(hostport, ':');
    if (colon == NULL || colon == hostport)
        return -1;
    *colon = '\0';
    errno = 0;
    port = strtoul(colon + 1, &end, 10);
    if (errno != 0 || *end != '\0' || end == colon + 1 || port > 65535)
        return -1;
    return uv_ip4_addr(hostport, (int)port, out) == 0 ? 0 : -1;
}

static void ssl_reason(char *buf, size_t cap, const char *what)
{
    unsigned long e = ERR_get_error();
    char es[160];
    if (e == 0) {
        snprintf(buf, cap, "%s", what);
    } else {
        ERR_error_string_n(e, es, sizeof es);
        snprintf(buf, cap, "%s: %s", what, es);
    }
    ERR_clear_error();
}

static void maybe_fire_close(struct ctls *x)
{
    raft_uv_transport_close_cb cb;
    if (!x->closing || x->conns != NULL || !x->listener_closed ||
        x->close_cb == NULL)
        return;
    cb = x->close_cb;
    x->close_cb = NULL;
    cb(x->t);
}

/* ---- writes and backpressure --------------------------------------------- */

static void resume_reading(struct conn *c);

static void write_cb(uv_write_t *w, int status)
{
    struct wreq *r = (struct wreq *)w;
    struct conn *c = r->c;

    if (r->to_tcp)
        c->tcp_queued -= r->len;
    else
        c->bridge_queued -= r->len;
    free(r);
    if (c->state == CONN_CLOSING)
        return;
    if (status != 0) {
        conn_close(c, status == UV_EPIPE ? "peer went away" : "write failed");
        return;
    }
    resume_reading(c);
}

/* Copy n bytes and queue them on the tcp (to_tcp) or bridge stream. */
static int conn_write(struct conn *c, int to_tcp, const void *p, size_t n)
{
    struct wreq *r;
    uv_buf_t b;
    uv_stream_t *s = to_tcp ? (uv_stream_t *)&c->tcp : (uv_stream_t *)&c->bridge;

    if (n == 0)
        return 0;
    r = malloc(sizeof *r + n);
    if (r == NULL)
        return WERR_NOMEM;
    r->c = c;
    r->to_tcp = to_tcp;
    r->len = n;
    memcpy(r->data, p, n);
    b = uv_buf_init(r->data, (unsigned)n);
    if (uv_write(&r->w, s, &b, 1, write_cb) != 0) {
        free(r);
        return WERR_IO;
    }
    if (to_tcp)
        c->tcp_queued += n;
    else
        c->bridge_queued += n;
    return 0;
}

/* Move whatever OpenSSL produced for the network onto the tcp stream. */
static int flush_wbio(struct conn *c)
{
    struct ctls *x = c->x;
    int n, rv;

    while (BIO_ctrl_pending(c->wbio) > 0) {
        n = BIO_read(c->wbio, x->rbuf, (int)sizeof x->rbuf);
        if (n <= 0)
            break;
        rv = conn_write(c, 1, x->rbuf, (size_t)n);
        if (rv != 0)
            return rv;
    }
    return 0;
}

static void tcp_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void tcp_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void bridge_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

/* Backpressure: the peer-to-raft direction is paused while raft's side has
 * more than CTLS_QUEUE_MAX queued, and vice versa; each resumes at half. */
static void apply_backpressure(struct conn *c)
{
    if (!c->tcp_paused && c->bridge_queued > CTLS_QUEUE_MAX) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->tcp_paused = 1;
    }
    if (c->bridge_init && !c->bridge_paused && c->tcp_queued > CTLS_QUEUE_MAX) {
        uv_read_stop((uv_stream_t *)&c->bridge);
        c->bridge_paused = 1;
    }
}

static void resume_reading(struct conn *c)
{
    if (c->tcp_paused && c->bridge_queued <= CTLS_QUEUE_MAX / 2) {
        c->tcp_paused = 0;
        if (uv_read_start((uv_stream_t *)&c->tcp, tcp_alloc_cb, tcp_read_cb) != 0) {
            conn_close(c, "resume tcp read");
            return;
        }
    }
    if (c->bridge_paused && c->tcp_queued <= CTLS_QUEUE_MAX / 2) {
        c->bridge_paused = 0;
        if (uv_read_start((uv_stream_t *)&c->bridge, tcp_alloc_cb,
                          bridge_read_cb) != 0)
            conn_close(c, "resume bridge read");
    }
}

/* ---- close ----------------------------------------------------------------- */

static void conn_finalize(struct conn *c)
{
    struct ctls *x = c->x;

    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        x->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;

    /* raft_uv contract: a connect request completes exactly once; once the
     * transport is closing, with RAFT_CANCELED (uvSendClose has already put
     * the client in its CLOSING state and asserts on anything else). */
    if (c->outbound && !c->cb_fired) {
        c->cb_fired = 1;
        c->cb(c->req, NULL, x->closing ? RAFT_CANCELED : RAFT_NOCONNECTION);
    }
    SSL_free(c->ssl);
    free(c);
    maybe_fire_close(x);
}

static void conn_handle_close_cb(uv_handle_t *h)
{
    struct conn *c = h->data;
    if (--c->open_handles == 0)
        conn_finalize(c);
}

static void close_handle(struct conn *c, uv_handle_t *h)
{
    h->data = c;
    c->open_handles++;
    uv_close(h, conn_handle_close_cb);
}

/* Close the connection. reason is logged when the connection never reached
 * OPEN (a refusal) or when it drops unexpectedly. */
static void conn_close(struct conn *c, const char *reason)
{
    struct ctls *x = c->x;

    if (c->state == CONN_CLOSING)
        return;
    if (c->state != CONN_OPEN && !x->closing) {
        x->refused++;
        wlog(WLOG_WARN, "raft peer connection refused", "reason", reason,
             "direction", c->outbound ? "outbound" : "inbound", "peer",
             c->peer_addr, NULL);
    } else if (!x->closing) {
        wlog(WLOG_INFO, "raft peer connection closed", "reason", reason,
             "peer", c->peer_addr, NULL);
    }
    if (c->pending) {
        c->pending = 0;
        x->n_pending--;
    }
    c->state = CONN_CLOSING;
    close_handle(c, (uv_handle_t *)&c->tcp);
    close_handle(c, (uv_handle_t *)&c->timer);
    if (c->bridge_init)
        close_handle(c, (uv_handle_t *)&c->bridge);
}

/* ---- peer verification ----------------------------------------------------- */

/* After the TLS handshake: the chain verified against the cluster CA
 * (SSL_VERIFY_PEER already aborts otherwise), and the certificate names
 * exactly one warden principal whose role is peer. */
static int conn_verify_peer(struct conn *c, char *why, size_t cap)
{
    X509 *cert = SSL_get0_peer_certificate(c->ssl);
    GENERAL_NAMES *sans;
    struct werr e;
    int found = 0, rv = -1;
    long vr;

    if (cert == NULL) {
        snprintf(why, cap, "peer presented no certificate");
        return -1;
    }
    vr = SSL_get_verify_result(c->ssl);
    if (vr != X509_V_OK) {
        snprintf(why, cap, "certificate: %s", X509_verify_cert_error_string(vr));
        return -1;
    }
    sans = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
    if (sans == NULL) {
        snprintf(why, cap, "certificate has no subjectAltName");
        return -1;
    }
    for (int i = 0; i < sk_GENERAL_NAME_num(sans); i++) {
        const GENERAL_NAME *gn = sk_GENERAL_NAME_value(sans, i);
        const unsigned char *s;
        int len;
        if (gn->type != GEN_URI)
            continue;
        s = ASN1_STRING_get0_data(gn->d.uniformResourceIdentifier);
        len = ASN1_STRING_length(gn->d.uniformResourceIdentifier);
        if (len < (int)strlen(PRINCIPAL_URI_PREFIX) ||
            memcmp(s, PRINCIPAL_URI_PREFIX, strlen(PRINCIPAL_URI_PREFIX)) != 0)
            continue;
        if (++found > 1) {
            snprintf(why, cap, "certificate names more than one principal");
            goto out;
        }
        if (principal_parse_uri((const char *)s, (size_t)len, &c->peer, &e) != 0) {
            /* why is bounded; a truncated reason is still a reason. */
            if (snprintf(why, cap, "certificate principal: %s", e.msg) >= (int)cap)
                why[cap - 1] = '\0';
            goto out;
        }
    }
    if (found == 0) {
        snprintf(why, cap, "certificate names no warden principal");
        goto out;
    }
    if (c->peer.role != WROLE_PEER) {
        snprintf(why, cap, "certificate role %s is not peer",
                 principal_role_name(c->peer.role));
        goto out;
    }
    rv = 0;
out:
    GENERAL_NAMES_free(sans);
    return rv;
}

static int conn_authorize(struct conn *c)
{
    struct ctls *x = c->x;
    if (x->authorize == NULL)
        return 1;
    return x->authorize(x->authorize_arg, c->id, &c->peer);
}

/* ---- the bridge to raft ---------------------------------------------------- */

static void bridge_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct conn *c = s->data;
    char why[192];
    int n;

    if (nread == 0 || c->state == CONN_CLOSING)
        return;
    if (nread < 0) {
        conn_close(c, nread == UV_EOF ? "raft closed the stream" : "bridge read");
        return;
    }
    ERR_clear_error();
    n = SSL_write(c->ssl, buf->base, (int)nread);
    if (n != (int)nread) {
        ssl_reason(why, sizeof why, "tls write");
        conn_close(c, why);
        return;
    }
    if (flush_wbio(c) != 0) {
        conn_close(c, "queue to peer");
        return;
    }
    apply_backpressure(c);
}

/* Create the socketpair, keep one end (bridge), wrap the other (raft_end)
 * for raft. On success *out is raft's, allocated with raft_malloc because
 * raft releases it with raft_free after uv_close. */
static int conn_bridge_start(struct conn *c, uv_stream_t **out)
{
    struct ctls *x = c->x;
    uv_pipe_t *raft_end;
    int fds[2];

    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0)
        return WERR_IO;
    raft_end = raft_malloc(sizeof *raft_end);
    if (raft_end == NULL)
        goto err_close_fds;
    if (uv_pipe_init(x->loop, &c->bridge, 0) != 0)
        goto err_free_end;
    c->bridge.data = c;
    c->bridge_init = 1;
    if (uv_pipe_open(&c->bridge, fds[0]) != 0) {
        close(fds[0]);
        fds[0] = -1;
        goto err_free_end;
    }
    fds[0] = -1; /* owned by c->bridge now */
    if (uv_pipe_init(x->loop, raft_end, 0) != 0)
        goto err_free_end;
    if (uv_pipe_open(raft_end, fds[1]) != 0) {
        /* The handle is initialised: it must be closed, not just freed. */
        uv_close((uv_handle_t *)raft_end, (uv_close_cb)raft_free);
        close(fds[1]);
        return WERR_IO;
    }
    if (uv_read_start((uv_stream_t *)&c->bridge, tcp_alloc_cb, bridge_read_cb) != 0) {
        uv_close((uv_handle_t *)raft_end, (uv_close_cb)raft_free);
        return WERR_IO;
    }
    *out = (uv_stream_t *)raft_end;
    return 0;

err_free_end:
    raft_free(raft_end);
err_close_fds:
    if (fds[0] >= 0)
        close(fds[0]);
    close(fds[1]);
    return WERR_IO;
}

static void conn_mark_open(struct conn *c)
{
    c->state = CONN_OPEN;
    if (c->pending) {
        c->pending = 0;
        c->x->n_pending--;
    }
    uv_timer_stop(&c->timer);
}

/* Outbound: TLS is up and the server is verified. Send raft_uv's handshake
 * inside TLS, then hand raft its end of the bridge. */
static void conn_outbound_ready(struct conn *c)
{
    struct ctls *x = c->x;
    unsigned char hs[CTLS_PREAMBLE_LEN + CTLS_ADDRESS_MAX];
    size_t alen = strlen(x->address) + 1;
    size_t padded = (alen + 7) & ~(size_t)7;
    uv_stream_t *stream;

    memset(hs, 0, sizeof hs);
    put64le(hs, CTLS_RAFT_PROTOCOL);
    put64le(hs + 8, x->id);
    put64le(hs + 16, padded);
    memcpy(hs + CTLS_PREAMBLE_LEN, x->address, alen);
    ERR_clear_error();
    if (SSL_write(c->ssl, hs, (int)(CTLS_PREAMBLE_LEN + padded)) <= 0 ||
        flush_wbio(c) != 0) {
        conn_close(c, "send raft handshake");
        return;
    }
    if (conn_bridge_start(c, &stream) != 0) {
        conn_close(c, "bridge setup");
        return;
    }
    conn_mark_open(c);
    c->cb_fired = 1;
    c->cb(c->req, stream, 0);
}

/* Inbound: consume plaintext until the raft_uv handshake is complete, then
 * hand raft its stream via accept_cb. Returns bytes of p consumed, or -1
 * after closing the connection. */
static long conn_inbound_handshake(struct conn *c, const char *p, size_t n)
{
    struct ctls *x = c->x;
    size_t take = c->hs_need - c->hs_have;
    uv_stream_t *stream;
    uint64_t proto, alen;

    if (take > n)
        take = n;
    memcpy(c->hs + c->hs_have, p, take);
    c->hs_have += take;
    if (c->hs_have < c->hs_need)
        return (long)take;
    if (c->hs_need == CTLS_PREAMBLE_LEN) {
        proto = get64le(c->hs);
        c->id = get64le(c->hs + 8);
        alen = get64le(c->hs + 16);
        if (proto != CTLS_RAFT_PROTOCOL) {
            conn_close(c, "raft handshake: unknown protocol");
            return -1;
        }
        if (c->id == 0 || alen == 0 || alen > CTLS_ADDRESS_MAX) {
            conn_close(c, "raft handshake: bad id or address length");
            return -1;
        }
        c->hs_need += (size_t)alen;
        return (long)take; /* caller loops for the address */
    }
    if (memchr(c->hs + CTLS_PREAMBLE_LEN, '\0', c->hs_need - CTLS_PREAMBLE_LEN) == NULL) {
        conn_close(c, "raft handshake: address not terminated");
        return -1;
    }
    if (!conn_authorize(c)) {
        conn_close(c, "peer certificate not authorized for claimed server id");
        return -1;
    }
    if (conn_bridge_start(c, &stream) != 0) {
        conn_close(c, "bridge setup");
        return -1;
    }
    conn_mark_open(c);
    x->accept_cb(x->t, c->id, (const char *)c->hs + CTLS_PREAMBLE_LEN, stream);
    return (long)take;
}

/* ---- the TLS pump ---------------------------------------------------------- */

static void conn_pump_tls(struct conn *c)
{
    struct ctls *x = c->x;
    char why[192];
    int rv, err;

    if (c->state == CONN_TLS_HANDSHAKE) {
        ERR_clear_error();
        rv = SSL_do_handshake(c->ssl);
        if (flush_wbio(c) != 0) {
            conn_close(c, "queue to peer");
            return;
        }
        if (rv != 1) {
            err = SSL_get_error(c->ssl, rv);
            if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE)
                return;
            ssl_reason(why, sizeof why, "tls handshake");
            conn_close(c, why);
            return;
        }
        if (conn_verify_peer(c, why, sizeof why) != 0) {
            conn_close(c, why);
            return;
        }
        if (c->outbound) {
            if (!conn_authorize(c)) {
                conn_close(c, "server certificate not authorized for dialled id");
                return;
            }
            conn_outbound_ready(c);
            if (c->state == CONN_CLOSING)
                return;
        } else {
            c->state = CONN_RAFT_HANDSHAKE;
            c->hs_have = 0;
            c->hs_need = CTLS_PREAMBLE_LEN;
        }
    }

    /* RAFT_HANDSHAKE or OPEN: decrypt everything available. */
    for (;;) {
        size_t off = 0;
        ERR_clear_error();
        rv = SSL_read(c->ssl, x->plain, (int)sizeof x->plain);
        if (rv <= 0) {
            err = SSL_get_error(c->ssl, rv);
            if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE)
                break;
            if (err == SSL_ERROR_ZERO_RETURN) {
                conn_close(c, "peer sent close_notify");
                return;
            }
            ssl_reason(why, sizeof why, "tls read");
            conn_close(c, why);
            return;
        }
        while (c->state == CONN_RAFT_HANDSHAKE && off < (size_t)rv) {
            long used = conn_inbound_handshake(c, x->plain + off, (size_t)rv - off);
            if (used < 0)
                return;
            off += (size_t)used;
        }
        if (c->state != CONN_OPEN)
            continue;
        if (conn_write(c, 0, x->plain + off, (size_t)rv - off) != 0) {
            conn_close(c, "queue to raft");
            return;
        }
    }
    /* SSL_read may answer post-handshake messages (TLS 1.3 KeyUpdate). */
    if (flush_wbio(c) != 0) {
        conn_close(c, "queue to peer");
        return;
    }
    apply_backpressure(c);
}

static void tcp_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct conn *c = h->data;
    (void)suggested;
    *buf = uv_buf_init(c->x->rbuf, sizeof c->x->rbuf);
}

static void tcp_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct conn *c = s->data;

    if (nread == 0 || c->state == CONN_CLOSING)
        return;
    if (nread < 0) {
        conn_close(c, nread == UV_EOF ? "peer closed" : uv_strerror((int)nread));
        return;
    }
    if (BIO_write(c->rbio, buf->base, (int)nread) != (int)nread) {
        conn_close(c, "tls input buffer");
        return;
    }
    conn_pump_tls(c);
}

static void timer_cb(uv_timer_t *t)
{
    struct conn *c = t->data;
    conn_close(c, "handshake timeout");
}

/* ---- connection setup ------------------------------------------------------ */

static struct conn *conn_new(struct ctls *x, int outbound)
{
    struct conn *c = calloc(1, sizeof *c);
    if (c == NULL)
        return NULL;
    c->x = x;
    c->outbound = outbound;
    c->ssl = SSL_new(x->ctx);
    c->rbio = BIO_new(BIO_s_mem());
    c->wbio = BIO_new(BIO_s_mem());
    if (c->ssl == NULL || c->rbio == NULL || c->wbio == NULL) {
        BIO_free(c->rbio);
        BIO_free(c->wbio);
        SSL_free(c->ssl);
        free(c);
        return NULL;
    }
    SSL_set_bio(c->ssl, c->rbio, c->wbio);
    if (outbound)
        SSL_set_connect_state(c->ssl);
    else
        SSL_set_accept_state(c->ssl);
    uv_tcp_init(x->loop, &c->tcp);
    c->tcp.data = c;
    uv_timer_init(x->loop, &c->timer);
    c->timer.data = c;
    c->pending = 1;
    x->n_pending++;
    c->next = x->conns;
    if (x->conns != NULL)
        x->conns->prev = c;
    x->conns = c;
    return c;
}

static void start_tls(struct conn *c)
{
    c->state = CONN_TLS_HANDSHAKE;
    if (uv_read_start((uv_stream_t *)&c->tcp, tcp_alloc_cb, tcp_read_cb) != 0) {
        conn_close(c, "tcp read start");
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    if (c->outbound)
        conn_pump_tls(c); /* ClientHello */
}

static void connect_cb(uv_connect_t *req, int status)
{
    struct conn *c = req->data;
    if (c->state == CONN_CLOSING)
        return;
    if (status != 0) {
        conn_close(c, uv_strerror(status));
        return;
    }
    start_tls(c);
}

static void listen_cb(uv_stream_t *server, int status)
{
    struct ctls *x = server->data;
    struct conn *c;
    struct sockaddr_storage sa;
    int len = (int)sizeof sa;

    if (status != 0 || x->closing)
        return;
    if (x->n_pending >= CTLS_PENDING_MAX) {
        /* Accept and drop, so the backlog drains instead of growing: an
         * unauthenticated flood costs us one fd briefly, not a conn. */
        uv_tcp_t *drop = malloc(sizeof *drop);
        if (drop == NULL)
            return;
        uv_tcp_init(x->loop, drop);
        if (uv_accept(server, (uv_stream_t *)drop) == 0)
            x->refused++;
        uv_close((uv_handle_t *)drop, (uv_close_cb)free);
        wlog(WLOG_WARN, "raft peer connection refused", "reason",
             "too many pending handshakes", NULL);
        return;
    }
    c = conn_new(x, 0);
    if (c == NULL)
        return;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
        conn_close(c, "accept");
        return;
    }
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&sa, &len) == 0 &&
        sa.ss_family == AF_INET) {
        char ip[INET_ADDRSTRLEN] = "?";
        const struct sockaddr_in *in = (const struct sockaddr_in *)&sa;
        uv_ip4_name(in, ip, sizeof ip);
        snprintf(c->peer_addr, sizeof c->peer_addr, "%s:%u", ip,
                 (unsigned)ntohs(in->sin_port));
    }
    uv_timer_start(&c->timer, timer_cb, x->handshake_timeout_ms, 0);
    start_tls(c);
}

/* ---- raft_uv_transport methods --------------------------------------------- */

static int ctls_init(struct raft_uv_transport *t, raft_id id, const char *address)
{
    struct ctls *x = t->impl;
    if (strlen(address) >= sizeof x->address) {
        snprintf(t->errmsg, sizeof t->errmsg, "address too long");
        return RAFT_NAMETOOLONG;
    }
    x->id = id;
    snprintf(x->address, sizeof x->address, "%s", address);
    /* Initialised here so that close always has one async step. */
    if (!x->listener_init) {
        uv_tcp_init(x->loop, &x->listener);
        x->listener.data = x;
        x->listener_init = 1;
    }
    return 0;
}

static int ctls_listen(struct raft_uv_transport *t, raft_uv_accept_cb cb)
{
    struct ctls *x = t->impl;
    struct sockaddr_in sa;
    int rv;

    x->accept_cb = cb;
    if (parse_ipv4(x->address, &sa) != 0) {
        snprintf(t->errmsg, sizeof t->errmsg, "bad address %.64s", x->address);
        return RAFT_INVALID;
    }
    rv = uv_tcp_bind(&x->listener, (const struct sockaddr *)&sa, 0);
    if (rv == 0)
        rv = uv_listen((uv_stream_t *)&x->listener, CTLS_BACKLOG, listen_cb);
    if (rv != 0) {
        snprintf(t->errmsg, sizeof t->errmsg, "listen %.64s: %s", x->address,
                 uv_strerror(rv));
        return RAFT_IOERR;
    }
    if (sa.sin_addr.s_addr != htonl(INADDR_ANY)) {
        x->source = sa;
        x->source.sin_port = 0;
        x->have_source = 1;
    }
    return 0;
}

static int ctls_connect(struct raft_uv_transport *t, struct raft_uv_connect *req,
                        raft_id id, const char *address, raft_uv_connect_cb cb)
{
    struct ctls *x = t->impl;
    struct sockaddr_in sa;
    struct conn *c;
    int rv;

    if (x->closing)
        return RAFT_CANCELED;
    if (parse_ipv4(address, &sa) != 0) {
        snprintf(t->errmsg, sizeof t->errmsg, "bad address %.64s", address);
        return RAFT_INVALID;
    }
    c = conn_new(x, 1);
    if (c == NULL)
        return RAFT_NOMEM;
    c->id = id;
    c->req = req;
    c->cb = cb;
    snprintf(c->peer_addr, sizeof c->peer_addr, "%s", address);
    c->state = CONN_TCP_CONNECTING;
    c->connect_req.data = c;
    /* Leave from our own peer address, not whatever the route picks: with
     * several nodes on one host (127.0.0.11-15 in tests/jepsen) every
     * packet would otherwise come from 127.0.0.1, and per-address rules
     * (iptables -s/-d partitions, peer allow-lists) could not tell the
     * nodes apart. Port 0: the kernel picks an ephemeral port at bind
     * time (bind-before-connect; fine at our few peer connections). */
    rv = x->have_source ? uv_tcp_bind(&c->tcp,
                                      (const struct sockaddr *)&x->source, 0)
                        : 0;
    if (rv == 0)
        rv = uv_tcp_connect(&c->connect_req, &c->tcp,
                            (const struct sockaddr *)&sa, connect_cb);
    if (rv != 0) {
        /* The callback must not fire when connect returns an error. */
        c->cb_fired = 1;
        conn_close(c, uv_strerror(rv));
        return RAFT_NOCONNECTION;
    }
    uv_timer_start(&c->timer, timer_cb, x->handshake_timeout_ms, 0);
    return 0;
}

static void listener_close_cb(uv_handle_t *h)
{
    struct ctls *x = h->data;
    x->listener_closed = 1;
    maybe_fire_close(x);
}

static void ctls_close(struct raft_uv_transport *t, raft_uv_transport_close_cb cb)
{
    struct ctls *x = t->impl;
    struct conn *c, *next;

    x->closing = 1;
    x->close_cb = cb;
    for (c = x->conns; c != NULL; c = next) {
        next = c->next;
        conn_close(c, "transport closing");
    }
    if (x->listener_init)
        uv_close((uv_handle_t *)&x->listener, listener_close_cb);
    else
        x->listener_closed = 1;
    maybe_fire_close(x);
}

/* ---- public ------------------------------------------------------------- */

int consensus_tls_ctx_new(const char *ca_file, const char *cert_file,
                          const char *key_file, SSL_CTX **out, struct werr *e)
{
    char why[192];
    SSL_CTX *ctx = SSL_CTX_new(TLS_method());

    if (ctx == NULL)
        return werr_set(e, WERR_NOMEM, "SSL_CTX_new");
    /* Issue 3: peer traffic is TLS 1.3, nothing older. */
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) != 1)
        goto err_ssl;
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
        ssl_reason(why, sizeof why, "certificate");
        goto err_msg;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        ssl_reason(why, sizeof why, "private key");
        goto err_msg;
    }
    if (SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1) {
        ssl_reason(why, sizeof why, "cluster CA");
        goto err_msg;
    }
    /* Mutual: both sides must present a certificate from the cluster CA. */
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
                       NULL);
    /* Long-lived connections, no resumption: no tickets to manage. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_num_tickets(ctx, 0);
    *out = ctx;
    return 0;

err_ssl:
    ssl_reason(why, sizeof why, "tls setup");
err_msg:
    SSL_CTX_free(ctx);
    return werr_set(e, WERR_TLS, "peer tls: %s", why);
}

int consensus_tls_transport_init(struct raft_uv_transport *t, uv_loop_t *loop,
                                 const struct consensus_tls_config *cfg,
                                 struct werr *e)
{
    struct ctls *x;

    if (cfg == NULL || cfg->ctx == NULL || loop == NULL)
        return werr_set(e, WERR_INVALID, "tls transport: missing ctx or loop");
    x = calloc(1, sizeof *x);
    if (x == NULL)
        return werr_set(e, WERR_NOMEM, "tls transport");
    SSL_CTX_up_ref(cfg->ctx);
    x->t = t;
    x->loop = loop;
    x->ctx = cfg->ctx;
    x->authorize = cfg->authorize;
    x->authorize_arg = cfg->authorize_arg;
    x->handshake_timeout_ms = cfg->handshake_timeout_ms != 0
                                  ? cfg->handshake_timeout_ms
                                  : CTLS_HANDSHAKE_TIMEOUT_MS;
    memset(t, 0, sizeof *t);
    t->version = 1;
    t->impl = x;
    t->init = ctls_init;
    t->listen = ctls_listen;
    t->connect = ctls_connect;
    t->close = ctls_close;
    return 0;
}

void consensus_tls_transport_close(struct raft_uv_transport *t)
{
    struct ctls *x = t->impl;
    if (x == NULL)
        return;
    SSL_CTX_free(x->ctx);
    free(x);
    t->impl = NULL;
}

unsigned long consensus_tls_transport_refused(const struct raft_uv_transport *t)
{
    const struct ctls *x = t->impl;
    return x != NULL ? x->refused : 0;
}
