/* node.c - the wardend process on one libuv loop (node.h). */
#include "node.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../common/log.h"
#include "../domain/inventory.h"
#include "../storage/store.h"
#include "devcerts.h"
#include "tls.h"

void node_config_defaults(struct node_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->listen = NODE_LISTEN_DEFAULT;
    cfg->data_dir = NODE_DATA_DIR_DEFAULT;
    cfg->max_msg = GRPC_MAX_MSG_DEFAULT;
    cfg->shutdown_grace_ms = NODE_SHUTDOWN_GRACE_MS_DEFAULT;
    cfg->max_conns = NODE_MAX_CONNS_DEFAULT;
    cfg->handshake_timeout_ms = CONN_HANDSHAKE_TIMEOUT_MS_DEFAULT;
    cfg->idle_timeout_ms = CONN_IDLE_TIMEOUT_MS_DEFAULT;
}

static struct node *node_of_host(struct conn_host *h)
{
    return (struct node *)(void *)((char *)h - offsetof(struct node, host));
}

/* "1.2.3.4:80" or "[::1]:80" into a sockaddr. */
static int parse_listen(const char *s, struct sockaddr_storage *ss, struct werr *e)
{
    char host[INET6_ADDRSTRLEN + 1];
    const char *colon = strrchr(s, ':');
    if (colon == NULL || colon == s) {
        return werr_set(e, WERR_CONFIG, "--listen %s: want ADDR:PORT", s);
    }
    const char *h = s;
    size_t hlen = (size_t)(colon - s);
    if (h[0] == '[') {
        if (hlen < 2 || h[hlen - 1] != ']') {
            return werr_set(e, WERR_CONFIG, "--listen %s: want [V6ADDR]:PORT", s);
        }
        h++;
        hlen -= 2;
    }
    if (hlen == 0 || hlen >= sizeof host) {
        return werr_set(e, WERR_CONFIG, "--listen %s: bad address", s);
    }
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    char *end = NULL;
    errno = 0;
    long port = strtol(colon + 1, &end, 10);
    if (errno != 0 || end == colon + 1 || *end != '\0' || port < 0 || port > 65535) {
        return werr_set(e, WERR_CONFIG, "--listen %s: port must be 0..65535", s);
    }
    memset(ss, 0, sizeof *ss);
    if (uv_ip4_addr(host, (int)port, (struct sockaddr_in *)ss) == 0 ||
        uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)ss) == 0) {
        return 0;
    }
    return werr_set(e, WERR_CONFIG, "--listen %s: \"%s\" is not an IP address", s, host);
}

static int join(char *buf, size_t cap, const char *a, const char *b, struct werr *e)
{
    int n = snprintf(buf, cap, "%s/%s", a, b);
    if (n < 0 || (size_t)n >= cap) {
        return werr_set(e, WERR_CONFIG, "path too long: %s/%s", a, b);
    }
    return 0;
}

/* Certificates: generated under DIR/dev-certs in dev mode, else the flags. */
static int setup_tls(struct node *n, struct werr *e)
{
    const struct node_config *cfg = &n->cfg;
    struct tls_config tc;
    if (cfg->dev) {
        if (cfg->tls_cert != NULL || cfg->tls_key != NULL || cfg->tls_ca != NULL) {
            return werr_set(e, WERR_CONFIG,
                            "--dev generates its own certificates; "
                            "do not combine it with --tls-cert/--tls-key/--tls-ca");
        }
        int rc;
        if ((rc = join(n->certs_dir, sizeof n->certs_dir, cfg->data_dir, "dev-certs", e)) ||
            (rc = join(n->cert_path, sizeof n->cert_path, n->certs_dir, "server.pem", e)) ||
            (rc = join(n->key_path, sizeof n->key_path, n->certs_dir, "server-key.pem", e)) ||
            (rc = join(n->ca_path, sizeof n->ca_path, n->certs_dir, "ca.pem", e))) {
            return rc;
        }
        int generated = 0;
        rc = devcerts_ensure(n->certs_dir, &generated, e);
        if (rc != 0) {
            return rc;
        }
        char gen[16];
        snprintf(gen, sizeof gen, "%d", generated);
        wlog(WLOG_INFO, generated ? "dev certificates generated" : "dev certificates reused",
             "dir", n->certs_dir, "files_written", gen, NULL);
        tc.cert_file = n->cert_path;
        tc.key_file = n->key_path;
        tc.ca_file = n->ca_path;
    } else {
        if (cfg->tls_cert == NULL || cfg->tls_key == NULL || cfg->tls_ca == NULL) {
            return werr_set(e, WERR_CONFIG,
                            "TLS is required: pass --tls-cert, --tls-key and --tls-ca "
                            "(or --dev for generated development certificates)");
        }
        tc.cert_file = cfg->tls_cert;
        tc.key_file = cfg->tls_key;
        tc.ca_file = cfg->tls_ca;
    }
    return tls_server_ctx_new(&n->ssl_ctx, &tc, e);
}

static void listener_close_cb(uv_handle_t *h)
{
    struct node *n = h->data;
    n->listener_open = 0;
}

int node_init(struct node *n, uv_loop_t *loop, const struct node_config *cfg,
              struct werr *e)
{
    memset(n, 0, sizeof *n);
    n->cfg = *cfg;
    n->loop = loop;
    n->state = NODE_INIT;
    if (n->cfg.max_msg == 0) {
        n->cfg.max_msg = GRPC_MAX_MSG_DEFAULT;
    }
    int rc;
    struct sockaddr_storage addr;
    rc = parse_listen(cfg->listen, &addr, e);
    if (rc != 0) {
        return rc;
    }
    if (mkdir(cfg->data_dir, 0700) != 0 && errno != EEXIST) {
        return werr_set(e, WERR_CONFIG, "data dir %s: %s", cfg->data_dir, strerror(errno));
    }
    rc = setup_tls(n, e);
    if (rc != 0) {
        return rc;
    }

    char db[NODE_PATH_MAX];
    if ((rc = join(db, sizeof db, cfg->data_dir, "db", e)) != 0) {
        goto err_free_tls;
    }
    struct store_config sc = {.path = db};
    rc = store_open(&n->store, &sc, e);
    if (rc != 0) {
        werr_wrap(e, "store %s", db);
        goto err_free_tls;
    }
    rc = inv_open(&n->inv, n->store, e);
    if (rc != 0) {
        werr_wrap(e, "inventory");
        goto err_close_store;
    }

    n->svc.store = n->store;
    n->svc.inv = n->inv;
    n->svc.health = SVC_HEALTH_NOT_SERVING;
    grpc_router_init(&n->router);
    if ((rc = svc_health_register(&n->router, &n->svc, e)) != 0 ||
        (rc = svc_inventory_register(&n->router, &n->svc, e)) != 0) {
        goto err_close_inv;
    }

    n->host.loop = loop;
    n->host.ssl_ctx = n->ssl_ctx;
    n->host.router = &n->router;
    n->host.grpc_cfg.max_msg = n->cfg.max_msg;
    n->host.handshake_timeout_ms = n->cfg.handshake_timeout_ms;
    n->host.idle_timeout_ms = n->cfg.idle_timeout_ms;
    n->host.write_queue_max = CONN_WRITE_QUEUE_MAX;
    n->host.max_conns = n->cfg.max_conns;
    conn_host_init(&n->host);

    rc = uv_tcp_init(loop, &n->listener);
    if (rc != 0) {
        rc = werr_set(e, WERR_IO, "uv_tcp_init: %s", uv_strerror(rc));
        goto err_close_inv;
    }
    n->listener.data = n;
    n->listener_open = 1;
    rc = uv_tcp_bind(&n->listener, (const struct sockaddr *)&addr, 0);
    if (rc != 0) {
        /* uv_tcp_bind may defer EADDRINUSE to listen; node_start reports
         * it there with the same words. */
        rc = werr_set(e, WERR_CONFIG, "--listen %s: %s", cfg->listen, uv_strerror(rc));
        goto err_close_listener;
    }
    return 0;

err_close_listener:
    uv_close((uv_handle_t *)&n->listener, listener_close_cb);
    uv_run(loop, UV_RUN_DEFAULT); /* only this handle is open: runs its close */
err_close_inv:
    inv_close(n->inv);
    n->inv = NULL;
err_close_store:
    store_close(n->store);
    n->store = NULL;
err_free_tls:
    SSL_CTX_free(n->ssl_ctx);
    n->ssl_ctx = NULL;
    return rc;
}

/* ---- shutdown ------------------------------------------------------------- */

static void handle_close_cb(uv_handle_t *h)
{
    struct node *n = h->data;
    n->open_handles--;
}

/* Once the listener is closed and every connection freed, close the node's
 * own handles; uv_run then returns. */
static void maybe_done(struct node *n)
{
    if (n->state != NODE_DRAINING || n->listener_open || n->host.n_conns > 0) {
        return;
    }
    n->state = NODE_CLOSING;
    wlog(WLOG_INFO, "all connections closed", NULL);
    uv_close((uv_handle_t *)&n->sig_term, handle_close_cb);
    uv_close((uv_handle_t *)&n->sig_int, handle_close_cb);
    uv_close((uv_handle_t *)&n->grace, handle_close_cb);
    uv_close((uv_handle_t *)&n->flush, handle_close_cb);
}

static void conn_freed_cb(struct conn_host *h)
{
    maybe_done(node_of_host(h));
}

static void listener_closed_cb(uv_handle_t *h)
{
    struct node *n = h->data;
    n->listener_open = 0;
    maybe_done(n);
}

static void close_all(struct node *n, const char *reason)
{
    struct conn_link *l = n->host.conns.next;
    while (l != &n->host.conns) {
        struct conn_link *next = l->next;
        conn_close(conn_from_link(l), reason);
        l = next;
    }
}

static void grace_cb(uv_timer_t *t)
{
    struct node *n = t->data;
    char left[24];
    snprintf(left, sizeof left, "%zu", n->host.n_conns);
    wlog(WLOG_WARN, "shutdown grace period expired; closing connections",
         "connections", left, NULL);
    close_all(n, "shutdown grace period expired");
}

void node_stop(struct node *n)
{
    if (n->state == NODE_DRAINING) {
        wlog(WLOG_WARN, "second stop request: closing all connections now", NULL);
        close_all(n, "forced shutdown");
        return;
    }
    if (n->state != NODE_RUNNING) {
        return;
    }
    n->state = NODE_DRAINING;
    char grace[24], conns[24];
    snprintf(grace, sizeof grace, "%llu", (unsigned long long)n->cfg.shutdown_grace_ms);
    snprintf(conns, sizeof conns, "%zu", n->host.n_conns);
    wlog(WLOG_INFO, "shutting down", "grace_ms", grace, "connections", conns, NULL);
    /* 1. Tell health checkers first, so traffic moves elsewhere. Their
     * final NOT_SERVING and stream end are written before any GOAWAY:
     * nghttp2 sends control frames ahead of DATA, and some clients (e.g.
     * python-h2) stop processing frames once they see a GOAWAY. */
    svc_health_shutdown(&n->svc);
    conn_host_flush(&n->host);
    /* 2. No new connections. */
    uv_close((uv_handle_t *)&n->listener, listener_closed_cb);
    /* 3. GOAWAY everywhere; in-flight calls drain. */
    struct conn_link *l = n->host.conns.next;
    while (l != &n->host.conns) {
        struct conn_link *next = l->next;
        conn_shutdown(conn_from_link(l));
        l = next;
    }
    uv_timer_start(&n->grace, grace_cb, n->cfg.shutdown_grace_ms, 0);
    maybe_done(n);
}

static void signal_cb(uv_signal_t *s, int signum)
{
    struct node *n = s->data;
    wlog(WLOG_INFO, "signal received", "signal", signum == SIGTERM ? "SIGTERM" : "SIGINT",
         NULL);
    node_stop(n);
}

/* ---- serving ------------------------------------------------------------- */

static void connection_cb(uv_stream_t *server, int status)
{
    struct node *n = server->data;
    if (status < 0) {
        wlog(WLOG_WARN, "accept error", "error", uv_strerror(status), NULL);
        return;
    }
    if (n->state != NODE_RUNNING) {
        return;
    }
    struct werr e;
    if (conn_accept(&n->host, server, &e) != 0) {
        wlog(WLOG_WARN, "accept failed", "error", e.msg, NULL);
    }
}

static void flush_cb(uv_prepare_t *p)
{
    struct node *n = p->data;
    conn_host_flush(&n->host);
}

static void log_dev_usage(const struct node *n)
{
    char usage[NODE_PATH_MAX + 128];
    snprintf(usage, sizeof usage,
             "wardenctl --endpoint %s --dev-certs %s --role admin health",
             n->cfg.listen, n->certs_dir);
    wlog(WLOG_INFO, "dev mode: client certificates for every role are ready",
         "dir", n->certs_dir, "roles", "admin,operator,gateway,auditor,rollout",
         "usage", usage, "files", "ca.pem, <role>.pem, <role>-key.pem", NULL);
    const char *a = n->cfg.listen;
    if (strncmp(a, "127.", 4) != 0 && strncmp(a, "[::1]", 5) != 0 &&
        strncmp(a, "localhost", 9) != 0) {
        wlog(WLOG_WARN, "dev mode listening beyond loopback: the dev server "
                        "certificate only names 127.0.0.1 and localhost, and its "
                        "CA key is on disk",
             "listen", a, NULL);
    }
}

int node_start(struct node *n, struct werr *e)
{
    int rc = uv_listen((uv_stream_t *)&n->listener, NODE_LISTEN_BACKLOG, connection_cb);
    if (rc != 0) {
        rc = werr_set(e, WERR_CONFIG, "--listen %s: %s", n->cfg.listen, uv_strerror(rc));
        uv_close((uv_handle_t *)&n->listener, listener_close_cb);
        uv_run(n->loop, UV_RUN_DEFAULT); /* only the listener is open */
        return rc;
    }
    uv_signal_init(n->loop, &n->sig_term);
    uv_signal_init(n->loop, &n->sig_int);
    uv_timer_init(n->loop, &n->grace);
    uv_prepare_init(n->loop, &n->flush);
    n->sig_term.data = n->sig_int.data = n->grace.data = n->flush.data = n;
    n->open_handles = 4;
    n->host.on_conn_freed = conn_freed_cb;
    uv_signal_start(&n->sig_term, signal_cb, SIGTERM);
    uv_signal_start(&n->sig_int, signal_cb, SIGINT);
    uv_prepare_start(&n->flush, flush_cb);
    n->state = NODE_RUNNING;

    char maxc[24], maxm[24], port[8];
    snprintf(port, sizeof port, "%d", node_port(n));
    snprintf(maxc, sizeof maxc, "%zu", n->cfg.max_conns);
    snprintf(maxm, sizeof maxm, "%zu", n->cfg.max_msg);
    wlog(WLOG_INFO, "listening", "addr", n->cfg.listen, "port", port,
         "data_dir", n->cfg.data_dir,
         "mode", n->cfg.dev ? "dev" : "production", "max_conns", maxc,
         "max_msg_bytes", maxm, NULL);
    if (n->cfg.dev) {
        log_dev_usage(n);
    }
    svc_health_set(&n->svc, SVC_HEALTH_SERVING);
    return 0;
}

int node_port(const struct node *n)
{
    struct sockaddr_storage ss;
    int len = sizeof ss;
    if (uv_tcp_getsockname(&n->listener, (struct sockaddr *)&ss, &len) != 0) {
        return -1;
    }
    if (ss.ss_family == AF_INET) {
        return ntohs(((const struct sockaddr_in *)&ss)->sin_port);
    }
    return ntohs(((const struct sockaddr_in6 *)&ss)->sin6_port);
}

void node_close(struct node *n)
{
    inv_close(n->inv);
    n->inv = NULL;
    store_close(n->store);
    n->store = NULL;
    SSL_CTX_free(n->ssl_ctx);
    n->ssl_ctx = NULL;
}
