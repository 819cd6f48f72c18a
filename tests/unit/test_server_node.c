/* Tests for server/node.c + server/conn.c: a real node on a private libuv
 * loop, bound to 127.0.0.1:0, with OpenSSL clients on blocking sockets in a
 * second thread. Shows the pump end to end without HPACK: after an mTLS
 * handshake the server's HTTP/2 SETTINGS arrive; a client without a
 * certificate or with TLS 1.2 is refused while the good connection lives on;
 * node_stop sends GOAWAY, the idle connection drains and closes, the loop
 * ends well before the grace period, and no handle is left open. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <uv.h>

#include "server/devcerts.h"
#include "server/node.h"
#include "unit.h"

/* Grace period for the test node: the drain must finish well before it. */
#define TEST_GRACE_MS 3000u
/* Socket receive timeout in the client thread, so nothing hangs. */
#define CLIENT_TIMEOUT_S 5

#define H2_SETTINGS 0x4
#define H2_GOAWAY 0x7

static struct node node;
static uv_loop_t loop;
static uv_async_t stop_async;
static int port;
static char certs[128];

/* Results from the client thread, checked on the main thread. */
static struct {
    int good_handshake;
    int good_first_frame;    /* frame type of the server's first frame */
    int good_role_sane;
    int nocert_refused;
    int tls12_refused;
    int untrusted_refused;
    int good_still_alive;    /* after the bad clients: PING answered */
    int goaway_seen;
    int closed_after_goaway;
    char note[256];
} res = {.good_first_frame = -1};

static void stop_cb(uv_async_t *a)
{
    node_stop(&node);
    uv_close((uv_handle_t *)a, NULL);
}

static int tcp_connect(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    struct timeval tv = {.tv_sec = CLIENT_TIMEOUT_S};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static SSL_CTX *client_ctx(const char *dir, const char *role, int max_version)
{
    SSL_CTX *c = SSL_CTX_new(TLS_client_method());
    char p[256], k[256];
    devcerts_path(p, sizeof p, certs, "ca.pem");
    SSL_CTX_load_verify_locations(c, p, NULL);
    SSL_CTX_set_verify(c, SSL_VERIFY_PEER, NULL);
    if (max_version) {
        SSL_CTX_set_max_proto_version(c, max_version);
    }
    if (role != NULL) {
        char f[64];
        snprintf(f, sizeof f, "%s.pem", role);
        devcerts_path(p, sizeof p, dir, f);
        snprintf(f, sizeof f, "%s-key.pem", role);
        devcerts_path(k, sizeof k, dir, f);
        SSL_CTX_use_certificate_file(c, p, SSL_FILETYPE_PEM);
        SSL_CTX_use_PrivateKey_file(c, k, SSL_FILETYPE_PEM);
    }
    static const unsigned char alpn[] = {2, 'h', '2'};
    SSL_CTX_set_alpn_protos(c, alpn, sizeof alpn);
    return c;
}

/* Connect and handshake. Returns the SSL (fd inside) or NULL. */
static SSL *tls_connect(SSL_CTX *ctx)
{
    int fd = tcp_connect();
    if (fd < 0) {
        return NULL;
    }
    SSL *s = SSL_new(ctx);
    SSL_set_fd(s, fd);
    SSL_set_tlsext_host_name(s, "localhost");
    if (SSL_connect(s) != 1) {
        ERR_clear_error();
        SSL_free(s);
        close(fd);
        return NULL;
    }
    return s;
}

static void tls_free(SSL *s)
{
    if (s != NULL) {
        int fd = SSL_get_fd(s);
        SSL_free(s);
        close(fd);
    }
}

static int read_exact(SSL *s, uint8_t *buf, size_t len)
{
    size_t have = 0;
    while (have < len) {
        int n = SSL_read(s, buf + have, (int)(len - have));
        if (n <= 0) {
            ERR_clear_error();
            return -1;
        }
        have += (size_t)n;
    }
    return 0;
}

/* Read one HTTP/2 frame header and skip its payload. Returns the type, or
 * -1 on EOF/error. */
static int read_frame(SSL *s, uint8_t *flags)
{
    uint8_t h[9], skip[16384];
    if (read_exact(s, h, sizeof h) != 0) {
        return -1;
    }
    size_t len = (size_t)h[0] << 16 | (size_t)h[1] << 8 | h[2];
    if (len > sizeof skip || read_exact(s, skip, len) != 0) {
        return -1;
    }
    if (flags != NULL) {
        *flags = h[4];
    }
    return h[3];
}

/* A refused client: the handshake fails, or (TLS 1.3, where the client
 * finishes first) the first read fails with the server's alert. */
static int refused(SSL_CTX *ctx)
{
    SSL *s = tls_connect(ctx);
    if (s == NULL) {
        return 1;
    }
    uint8_t b;
    int n = SSL_read(s, &b, 1);
    int err = SSL_get_error(s, n);
    ERR_clear_error();
    tls_free(s);
    return n <= 0 && err == SSL_ERROR_SSL;
}

static void *client_main(void *arg)
{
    (void)arg;
    char other[160];
    snprintf(other, sizeof other, "%s-other", certs);
    SSL_CTX *good = client_ctx(certs, "operator", 0);
    SSL_CTX *nocert = client_ctx(certs, NULL, 0);
    SSL_CTX *tls12 = client_ctx(certs, "admin", TLS1_2_VERSION);
    SSL_CTX *untrusted = client_ctx(other, "admin", 0);

    SSL *s = tls_connect(good);
    if (s == NULL) {
        snprintf(res.note, sizeof res.note, "good client handshake failed");
        goto out;
    }
    res.good_handshake = 1;
    /* RFC 9113 §3.4: client preface, then our (empty) SETTINGS. */
    static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    static const uint8_t settings[9] = {0, 0, 0, H2_SETTINGS, 0, 0, 0, 0, 0};
    SSL_write(s, preface, sizeof preface - 1);
    SSL_write(s, settings, sizeof settings);
    res.good_first_frame = read_frame(s, NULL);
    res.good_role_sane = 1;

    res.nocert_refused = refused(nocert);
    res.tls12_refused = refused(tls12);
    res.untrusted_refused = refused(untrusted);

    /* The good connection is unaffected: a PING is answered (RFC 9113 §6.7). */
    static const uint8_t ping[17] = {0, 0, 8, 0x6, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8};
    SSL_write(s, ping, sizeof ping);
    for (int i = 0; i < 8; i++) {
        uint8_t flags = 0;
        int t = read_frame(s, &flags);
        if (t == 0x6 && (flags & 0x1)) {
            res.good_still_alive = 1;
            break;
        }
        if (t < 0) {
            break;
        }
    }

    /* Graceful stop: GOAWAY arrives, then the server closes. */
    uv_async_send(&stop_async);
    for (int i = 0; i < 16; i++) {
        int t = read_frame(s, NULL);
        if (t == H2_GOAWAY) {
            res.goaway_seen = 1;
        }
        if (t < 0) {
            res.closed_after_goaway = res.goaway_seen;
            break;
        }
    }
    tls_free(s);
    s = NULL;
out:
    if (!res.goaway_seen) {
        uv_async_send(&stop_async); /* never leave the main loop running */
    }
    SSL_CTX_free(good);
    SSL_CTX_free(nocert);
    SSL_CTX_free(tls12);
    SSL_CTX_free(untrusted);
    return NULL;
}

static uint64_t elapsed_ms;
static int loop_close_rc = -1;
static int start_rc = -1;
static char start_err[WERR_MSG_MAX];

static void run_node(const char *dir)
{
    struct node_config cfg;
    node_config_defaults(&cfg);
    cfg.dev = 1;
    cfg.data_dir = dir;
    cfg.listen = "127.0.0.1:0";
    cfg.shutdown_grace_ms = TEST_GRACE_MS;
    struct werr e;
    werr_clear(&e);
    uv_loop_init(&loop);
    start_rc = node_init(&node, &loop, &cfg, &e);
    if (start_rc == 0) {
        start_rc = node_start(&node, &e);
        if (start_rc != 0) {
            node_close(&node);
        }
    }
    if (start_rc != 0) {
        snprintf(start_err, sizeof start_err, "%s", e.msg);
        uv_loop_close(&loop);
        return;
    }
    port = node_port(&node);
    uv_async_init(&loop, &stop_async, stop_cb);
    pthread_t th;
    pthread_create(&th, NULL, client_main, NULL);
    uint64_t t0 = uv_hrtime();
    uv_run(&loop, UV_RUN_DEFAULT);
    elapsed_ms = (uv_hrtime() - t0) / 1000000u;
    pthread_join(th, NULL);
    node_close(&node);
    loop_close_rc = uv_loop_close(&loop);
}

TEST(node_serves_refuses_and_drains)
{
    if (start_rc != 0) {
        fprintf(stderr, "  node start: %s\n", start_err);
    }
    CHECK_EQ_INT(start_rc, 0);
    if (res.note[0]) {
        fprintf(stderr, "  client: %s\n", res.note);
    }
    CHECK(res.good_handshake);
    CHECK_EQ_INT(res.good_first_frame, H2_SETTINGS);
    CHECK(res.nocert_refused);
    CHECK(res.tls12_refused);
    CHECK(res.untrusted_refused);
    CHECK(res.good_still_alive);
    CHECK(res.goaway_seen);
    CHECK(res.closed_after_goaway);
    /* An idle connection drains at once: nowhere near the grace period. */
    CHECK(elapsed_ms < TEST_GRACE_MS);
    /* libuv: every handle closed (a leak would be UV_EBUSY). */
    CHECK_EQ_INT(loop_close_rc, 0);
}

int main(void)
{
    char dir[] = "/tmp/warden-test-node-XXXXXX";
    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(certs, sizeof certs, "%s/dev-certs", dir);
    /* An unrelated PKI for the untrusted client. */
    char other[160];
    snprintf(other, sizeof other, "%s-other", certs);
    struct werr e;
    if (devcerts_ensure(other, NULL, &e) != 0) {
        fprintf(stderr, "devcerts_ensure: %s\n", e.msg);
        return 1;
    }
    run_node(dir);
    RUN(node_serves_refuses_and_drains);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) {
        fprintf(stderr, "cleanup of %s failed\n", dir);
    }
    return unit_done();
}
