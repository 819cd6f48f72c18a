/* node.c - the wardend process on one libuv loop (node.h). */
#include "node.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>

#include "../common/log.h"
#include "../consensus/fsm_rollout.h"
#include "../domain/lifecycle.h"
#include "../domain/rollout.h"
#include "../storage/store.h"
#include "cluster_cfg.h"
#include "devcerts.h"
#include "tls.h"

void node_config_defaults(struct node_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->listen = NULL; /* resolved in node_init (resolve_cluster) */
    cfg->data_dir = NODE_DATA_DIR_DEFAULT;
    cfg->max_msg = GRPC_MAX_MSG_DEFAULT;
    cfg->shutdown_grace_ms = NODE_SHUTDOWN_GRACE_MS_DEFAULT;
    cfg->max_conns = NODE_MAX_CONNS_DEFAULT;
    cfg->handshake_timeout_ms = CONN_HANDSHAKE_TIMEOUT_MS_DEFAULT;
    cfg->idle_timeout_ms = CONN_IDLE_TIMEOUT_MS_DEFAULT;
    cfg->rate_limit_rps = ADMISSION_RATE_DEFAULT;
    cfg->rate_limit_burst = ADMISSION_BURST_DEFAULT;
    cfg->max_inflight = ADMISSION_INFLIGHT_DEFAULT;
    cfg->max_watchers = SVC_ACCESS_WATCH_MAX_DEFAULT;
}

int node_snapshot_check(unsigned threshold, unsigned trailing, struct werr *e)
{
    if (threshold != 0 &&
        (threshold < NODE_SNAPSHOT_THRESHOLD_MIN || threshold > NODE_SNAPSHOT_THRESHOLD_MAX)) {
        return werr_set(e, WERR_CONFIG, "--snapshot-threshold %u: want %u..%u", threshold,
                        NODE_SNAPSHOT_THRESHOLD_MIN, NODE_SNAPSHOT_THRESHOLD_MAX);
    }
    if (trailing != 0 &&
        (trailing < NODE_SNAPSHOT_TRAILING_MIN || trailing > NODE_SNAPSHOT_TRAILING_MAX)) {
        return werr_set(e, WERR_CONFIG, "--snapshot-trailing %u: want %u..%u", trailing,
                        NODE_SNAPSHOT_TRAILING_MIN, NODE_SNAPSHOT_TRAILING_MAX);
    }
    return 0;
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
            (rc = join(n->ca_path, sizeof n->ca_path, n->certs_dir, "ca.pem", e)) ||
            (rc = join(n->peer_cert_path, sizeof n->peer_cert_path, n->certs_dir,
                       DEVCERTS_DEV_PEER ".pem", e)) ||
            (rc = join(n->peer_key_path, sizeof n->peer_key_path, n->certs_dir,
                       DEVCERTS_DEV_PEER "-key.pem", e))) {
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
        /* One certificate for both ports (SAN IP + URI peer/n<id>). */
        snprintf(n->peer_cert_path, sizeof n->peer_cert_path, "%s", cfg->tls_cert);
        snprintf(n->peer_key_path, sizeof n->peer_key_path, "%s", cfg->tls_key);
        snprintf(n->ca_path, sizeof n->ca_path, "%s", cfg->tls_ca);
        /* Kept for SIGHUP (node_reload_tls). */
        snprintf(n->cert_path, sizeof n->cert_path, "%s", cfg->tls_cert);
        snprintf(n->key_path, sizeof n->key_path, "%s", cfg->tls_key);
    }
    return tls_server_ctx_new(&n->ssl_ctx, &tc, e);
}

/* Who this node is in the cluster: id, advertised client and peer
 * addresses, the bootstrap voters, and the address to bind for clients
 * (n->cfg.listen). Dev mode is a one-node cluster (node.h). A listen port
 * of 0 is fixed up after the bind (fix_client_port). */
static int resolve_cluster(struct node *n, struct werr *e)
{
    struct node_config *cfg = &n->cfg;
    struct wnode_config *w = &n->wcfg;
    char host[16];
    unsigned port;
    int rc;

    memset(w, 0, sizeof *w);
    if (cfg->peer_listen != NULL &&
        (rc = cluster_hostport_parse(cfg->peer_listen, cfg->dev, host, sizeof host,
                                     &port, e)) != 0) {
        return werr_wrap(e, "--peer-listen");
    }
    if (cfg->dev) {
        if (cfg->node_id != 0 || cfg->peers != NULL || cfg->join) {
            return werr_set(e, WERR_CONFIG,
                            "--dev is a one-node cluster (id %u); do not combine it "
                            "with --node-id/--peers/--join",
                            DEVCERTS_DEV_NODE_ID);
        }
        if (cfg->listen == NULL) {
            cfg->listen = NODE_LISTEN_DEFAULT;
        }
        n->id = DEVCERTS_DEV_NODE_ID;
        snprintf(n->client_addr, sizeof n->client_addr, "%s", cfg->listen);
        if (cfg->peer_listen != NULL) {
            snprintf(n->peer_addr, sizeof n->peer_addr, "%s", cfg->peer_listen);
        } else if (cluster_hostport_parse(cfg->listen, 1, host, sizeof host, &port,
                                          NULL) == 0) {
            /* Client port + 1; an ephemeral client port (0) gets an
             * ephemeral peer port: nobody dials a one-node cluster. */
            snprintf(n->peer_addr, sizeof n->peer_addr, "%s:%u", host,
                     port == 0 ? 0u : port + 1);
        } else {
            /* IPv6 client listener: the peer transport is IPv4 only. */
            return werr_set(e, WERR_CONFIG,
                            "--listen %s is not IPv4: pass --peer-listen a.b.c.d:PORT "
                            "(the Raft transport is IPv4 only)",
                            cfg->listen);
        }
        w->bootstrap = 1;
        w->n_peers = 1;
        w->peers[0].id = n->id;
        snprintf(w->peers[0].peer_addr, sizeof w->peers[0].peer_addr, "%s", n->peer_addr);
        snprintf(w->peers[0].client_addr, sizeof w->peers[0].client_addr, "%s",
                 n->client_addr);
        return 0;
    }

    if (cfg->node_id == 0) {
        return werr_set(e, WERR_CONFIG,
                        "--node-id is required (or --dev for a one-node dev cluster)");
    }
    n->id = cfg->node_id;
    if (cfg->peers == NULL && !cfg->join) {
        return werr_set(e, WERR_CONFIG,
                        "pass --peers ID=PEER[/CLIENT],... (bootstrap; ignored once the "
                        "data dir has a raft log) or --join (wait for AddMember)");
    }
    const struct wnode_peer *self = NULL;
    if (cfg->peers != NULL) {
        if ((rc = cluster_peers_parse(cfg->peers, w->peers, WNODE_MEMBERS_MAX,
                                      &w->n_peers, e)) != 0) {
            return rc;
        }
        self = cluster_peers_find(w->peers, w->n_peers, n->id);
        if (self == NULL && !cfg->join) {
            return werr_set(e, WERR_CONFIG, "--node-id %u is not in --peers", n->id);
        }
        w->bootstrap = !cfg->join;
    }
    if (self != NULL) {
        if (cfg->peer_listen != NULL && strcmp(cfg->peer_listen, self->peer_addr) != 0) {
            return werr_set(e, WERR_CONFIG,
                            "--peer-listen %s differs from --peers entry %u=%s",
                            cfg->peer_listen, n->id, self->peer_addr);
        }
        snprintf(n->peer_addr, sizeof n->peer_addr, "%s", self->peer_addr);
        snprintf(n->client_addr, sizeof n->client_addr, "%s", self->client_addr);
    } else {
        if (cfg->peer_listen == NULL) {
            return werr_set(e, WERR_CONFIG, "--join needs --peer-listen a.b.c.d:PORT");
        }
        snprintf(n->peer_addr, sizeof n->peer_addr, "%s", cfg->peer_listen);
        if (cfg->listen != NULL &&
            cluster_hostport_parse(cfg->listen, 0, host, sizeof host, &port, NULL) == 0 &&
            strcmp(host, "0.0.0.0") != 0) {
            snprintf(n->client_addr, sizeof n->client_addr, "%s", cfg->listen);
        } else if ((rc = cluster_addr_shift(n->peer_addr, -1, n->client_addr,
                                            sizeof n->client_addr, e)) != 0) {
            return werr_wrap(e, "client address (peer port - 1)");
        }
    }
    if (cfg->listen == NULL) {
        cfg->listen = n->client_addr;
    }
    return 0;
}

/* --listen ADDR:0 in dev: advertise the port the kernel picked. */
static void fix_client_port(struct node *n)
{
    char host[16];
    unsigned port;
    if (cluster_hostport_parse(n->client_addr, 1, host, sizeof host, &port, NULL) != 0 ||
        port != 0) {
        return;
    }
    int bound = node_port(n);
    if (bound > 0) {
        snprintf(n->client_addr, sizeof n->client_addr, "%s:%d", host, bound);
        for (unsigned i = 0; i < n->wcfg.n_peers; i++) {
            if (n->wcfg.peers[i].id == n->id) {
                snprintf(n->wcfg.peers[i].client_addr,
                         sizeof n->wcfg.peers[i].client_addr, "%s", n->client_addr);
            }
        }
    }
}

static void raft_fatal_cb(struct wnode *wn, const struct werr *e, void *arg)
{
    struct node *n = arg;
    (void)wn;
    wlog(WLOG_ERROR, "raft node failed; shutting down", "error", e->msg, NULL);
    n->exit_code = 1;
    node_stop(n);
}

static void listener_close_cb(uv_handle_t *h)
{
    struct node *n = h->data;
    n->listener_open = 0;
}

/* ---- grpc hooks: denials, admission, per-call metrics ---------------------- */

static void denied_cb(void *arg, const struct principal *who, const char *path)
{
    struct node *n = arg;
    n->metrics.denials_role++;
    svc_denial_hook(&n->svc, who, path);
}

static int admit_cb(void *arg, const struct principal *who, const char *path,
                    char *msg, size_t cap)
{
    struct node *n = arg;
    return admission_check(&n->adm, who, path, uv_now(n->loop), msg, cap);
}

static void call_done_cb(void *arg, const struct principal *who, const char *path,
                         int status, uint64_t start_ms, int admitted)
{
    struct node *n = arg;
    (void)who;
    if (admitted) {
        admission_release(&n->adm);
    }
    /* Only routed paths become label values: a client choosing :path must
     * not choose our series (cardinality bound, metrics.h). */
    const char *label = grpc_router_find(&n->router, path, strlen(path)) != NULL
                            ? path
                            : "unknown";
    uint64_t now = uv_now(n->loop);
    metrics_observe(&n->metrics, label, status, now > start_ms ? now - start_ms : 0);
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
    if ((rc = node_snapshot_check(cfg->snapshot_threshold, cfg->snapshot_trailing, e)) != 0) {
        return rc;
    }
    if ((rc = resolve_cluster(n, e)) != 0) {
        return rc;
    }
    rc = parse_listen(n->cfg.listen, &addr, e);
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

    rc = uv_tcp_init(loop, &n->listener);
    if (rc != 0) {
        rc = werr_set(e, WERR_IO, "uv_tcp_init: %s", uv_strerror(rc));
        goto err_free_tls;
    }
    n->listener.data = n;
    n->listener_open = 1;
    rc = uv_tcp_bind(&n->listener, (const struct sockaddr *)&addr, 0);
    if (rc != 0) {
        /* uv_tcp_bind may defer EADDRINUSE to listen; node_start reports
         * it there with the same words. */
        rc = werr_set(e, WERR_CONFIG, "--listen %s: %s", n->cfg.listen, uv_strerror(rc));
        goto err_close_listener;
    }
    fix_client_port(n);

    /* The Raft node opens DIR/db (the state machine) and DIR/raft. */
    struct wnode_config *w = &n->wcfg;
    w->id = n->id;
    w->data_dir = cfg->data_dir;
    w->loop = loop;
    w->peer_addr = n->peer_addr;
    w->client_addr = n->client_addr;
    w->ca_file = n->ca_path;
    w->cert_file = n->peer_cert_path;
    w->key_file = n->peer_key_path;
    w->election_timeout_ms = cfg->election_timeout_ms;
    w->connect_retry_ms = NODE_PEER_CONNECT_RETRY_MS;
    w->snapshot_threshold = cfg->snapshot_threshold;
    w->snapshot_trailing = cfg->snapshot_trailing;
    w->on_fatal = raft_fatal_cb;
    w->on_fatal_arg = n;
#ifdef WARDEN_FAULTS
    w->fault_ack_before_commit = cfg->fault_ack_before_commit;
#endif
    rc = wnode_start(&n->wn, w, e);
    if (rc != 0) {
        werr_wrap(e, "raft");
        if (rc != WERR_NOMEM && rc != WERR_IO && rc != WERR_CORRUPT && rc != WERR_TLS) {
            rc = WERR_CONFIG;
        }
        goto err_close_listener;
    }

    n->svc.wn = n->wn;
    n->svc.access_watch_max = n->cfg.max_watchers;
    n->svc.health = SVC_HEALTH_NOT_SERVING;
    /* The node's own principal, as its peer certificate names it
     * (warden://role/peer/n<id>): the author of server-proposed commands. */
    n->svc.self.role = WROLE_PEER;
    snprintf(n->svc.self.name, sizeof n->svc.self.name, "n%u", n->id);
    grpc_router_init(&n->router);
    if ((rc = svc_register_all(&n->router, &n->svc, e)) != 0) {
        goto err_close_wnode;
    }

    n->host.loop = loop;
    n->host.ssl_ctx = n->ssl_ctx;
    n->host.router = &n->router;
    n->host.grpc_cfg.max_msg = n->cfg.max_msg;
    /* Role-gate refusals are counted for the audit ledger (svc_denials.c)
     * and for /metrics. */
    n->host.grpc_cfg.on_denied = denied_cb;
    n->host.grpc_cfg.on_denied_arg = n;
    /* Admission control and per-call metrics (issue 9). */
    admission_init(&n->adm, n->cfg.rate_limit_rps, n->cfg.rate_limit_burst,
                   n->cfg.max_inflight);
    metrics_init(&n->metrics);
    n->host.grpc_cfg.on_admit = admit_cb;
    n->host.grpc_cfg.on_admit_arg = n;
    n->host.grpc_cfg.on_call_done = call_done_cb;
    n->host.grpc_cfg.on_call_done_arg = n;
    n->host.handshake_timeout_ms = n->cfg.handshake_timeout_ms;
    n->host.idle_timeout_ms = n->cfg.idle_timeout_ms;
    n->host.write_queue_max = CONN_WRITE_QUEUE_MAX;
    n->host.max_conns = n->cfg.max_conns;
    conn_host_init(&n->host);
    return 0;

err_close_wnode:
    wnode_close(n->wn, NULL, NULL);
    n->wn = NULL;
err_close_listener:
    uv_close((uv_handle_t *)&n->listener, listener_close_cb);
    /* Only the listener and the Raft node's teardown are pending: run them
     * to completion (consensus/node.h: wnode_start's error contract). */
    uv_run(loop, UV_RUN_DEFAULT);
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

static void wnode_closed_cb(void *arg)
{
    struct node *n = arg;
    n->wn = NULL;
    wlog(WLOG_INFO, "raft node closed", NULL);
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
    uv_close((uv_handle_t *)&n->hs_idle, handle_close_cb);
    uv_close((uv_handle_t *)&n->raft_poll, handle_close_cb);
    uv_close((uv_handle_t *)&n->sig_hup, handle_close_cb);
    if (n->metrics_on) {
        n->metrics_on = 0;
        metrics_server_close(&n->msrv, NULL);
    }
    /* Last, the Raft node: every call is gone, so its CANCELLED callbacks
     * reply to nobody. */
    if (n->wn != NULL) {
        wnode_close(n->wn, wnode_closed_cb, n);
    }
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
    /* Audit Tail streams end too (UNAVAILABLE with the seq to resume
     * from); unflushed denials get a last proposal or a log line. */
    svc_shutdown(&n->svc);
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

static void hs_idle_cb(uv_idle_t *h)
{
    (void)h; /* its being active is the point: poll does not block */
}

static void flush_cb(uv_prepare_t *p)
{
    struct node *n = p->data;
    /* Revocations committed in the last iteration reach watchers now, and
     * their output goes out with this flush (svc.h). */
    svc_access__poll(&n->svc, uv_now(n->loop));
    /* Handshakes over this iteration's budget (CONN_HANDSHAKES_PER_ITER)
     * are not reading: nothing would wake a blocked poll for them. */
    if (conn_host_flush(&n->host) && n->state != NODE_CLOSING)
        uv_idle_start(&n->hs_idle, hs_idle_cb);
    else
        uv_idle_stop(&n->hs_idle);
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

/* Leadership changes and refused peers, as JSON log lines; health follows
 * whether a leader is known (svc_health.c). */
static void raft_poll_cb(uv_timer_t *t)
{
    struct node *n = t->data;
    struct wnode_status st;
    if (n->wn == NULL) {
        return;
    }
    wnode_status(n->wn, &st);
    if (st.leader_id != n->seen_leader || (int)st.state != n->seen_state ||
        (st.state == WNODE_LEADER && st.term != n->seen_term)) {
        char term[24], lid[16], id[16];
        snprintf(term, sizeof term, "%llu", (unsigned long long)st.term);
        snprintf(lid, sizeof lid, "%u", st.leader_id);
        snprintf(id, sizeof id, "%u", st.id);
        wlog(st.leader_id == 0 ? WLOG_WARN : WLOG_INFO,
             st.leader_id == 0 ? "raft leader unknown" : "raft leadership changed",
             "node_id", id, "state", st.state_name, "term", term, "leader_id", lid,
             "leader_addr", st.leader_client_addr, NULL);
        if (st.leader_id != n->seen_leader && st.leader_id != 0) {
            n->leader_changes++;
        }
        n->seen_leader = st.leader_id;
        n->seen_state = (int)st.state;
        n->seen_term = st.term;
    }
    uint64_t now = uv_now(n->loop);
    if (st.tls_refused != n->seen_refused &&
        (n->refused_logged_ms == 0 || now - n->refused_logged_ms >= NODE_REFUSED_LOG_MS)) {
        n->refused_logged_ms = now;
        char delta[24], total[24];
        snprintf(delta, sizeof delta, "%lu", st.tls_refused - n->seen_refused);
        snprintf(total, sizeof total, "%lu", st.tls_refused);
        wlog(WLOG_WARN, "raft peer connections refused", "new", delta, "total", total,
             NULL);
        n->seen_refused = st.tls_refused;
    }
    if (n->state == NODE_RUNNING) {
        svc_health_set(&n->svc, st.leader_id != 0 && !st.failed ? SVC_HEALTH_SERVING
                                                                 : SVC_HEALTH_NOT_SERVING);
        /* Tail pumps, denial flush, bootstrap command key (svc.h). */
        if (!st.failed) {
            svc_tick(&n->svc, now);
        }
    }
}

/* ---- certificate reload (SIGHUP) ------------------------------------------ */

int node_reload_tls(struct node *n, struct werr *e)
{
    struct tls_config tc = {n->cert_path, n->key_path, n->ca_path};
    SSL_CTX *ctx = NULL;
    int rc = tls_server_ctx_new(&ctx, &tc, e);
    char serial[128], not_after[64];
    if (rc != 0) {
        n->tls_reloads_failed++;
        tls_ctx_cert_info(n->ssl_ctx, serial, sizeof serial, not_after, sizeof not_after);
        wlog(WLOG_ERROR, "TLS reload failed; keeping the current certificate", "error",
             e->msg, "cert", n->cert_path, "serial", serial, NULL);
        return rc;
    }
    /* Each established connection's SSL holds its own reference to the old
     * SSL_CTX (SSL_new takes one), so dropping ours leaves them running. */
    SSL_CTX *old = n->ssl_ctx;
    n->ssl_ctx = ctx;
    n->host.ssl_ctx = ctx;
    SSL_CTX_free(old);
    n->tls_reloads_ok++;
    tls_ctx_cert_info(ctx, serial, sizeof serial, not_after, sizeof not_after);
    wlog(WLOG_INFO, "TLS certificates reloaded for new connections", "cert", n->cert_path,
         "key", n->key_path, "ca", n->ca_path, "serial", serial, "not_after", not_after,
         "peer_transport", "unchanged until restart", NULL);
    return 0;
}

static void hup_cb(uv_signal_t *s, int signum)
{
    struct node *n = s->data;
    struct werr e;
    (void)signum;
    wlog(WLOG_INFO, "signal received", "signal", "SIGHUP", NULL);
    if (n->state == NODE_RUNNING) {
        (void)node_reload_tls(n, &e);
    }
}

/* ---- /metrics ---------------------------------------------------------------- */

/* Rejected-transition counters from the replicated state, one read txn.
 * Bounded: 5 x 5 lifecycle pairs + RO_N_STATES x RO_N_EVENTS rollout pairs;
 * only non-zero ones are rendered. */
static void collect_transitions(struct node *n, struct metrics_snapshot *s)
{
    struct wfsm *f = wnode_fsm(n->wn);
    struct store *st = f != NULL ? wfsm_store(f) : NULL;
    struct store_txn *t = NULL;
    struct werr e;
    if (st == NULL || store_txn_begin(st, 0, &t, &e) != 0) {
        return;
    }
    static const char *const ev_names[RO_N_EVENTS] = {"none",    "start",   "pause",
                                                      "resume",  "advance", "abort"};
    int ok = 1;
    for (int from = 0; from <= 4 && ok; from++) {
        for (int to = 0; to <= 4; to++) {
            uint64_t v = 0;
            if (lc_reject_count(wfsm_inv(f), t, from, to, &v, &e) != 0) {
                ok = 0;
                break;
            }
            if (v != 0 && s->n_transitions < METRICS_TRANSITIONS_MAX) {
                struct metrics_transition *x = &s->transitions[s->n_transitions++];
                x->kind = "device_lifecycle";
                x->from = lc_state_name(from);
                x->to = lc_state_name(to);
                x->count = v;
            }
        }
    }
    struct ro *ro = wfsm_ro(f);
    for (int from = 0; from < RO_N_STATES && ok && ro != NULL; from++) {
        for (int ev = 0; ev < RO_N_EVENTS; ev++) {
            uint64_t v = 0;
            if (ro_reject_count(ro, t, from, ev, &v, &e) != 0) {
                ok = 0;
                break;
            }
            if (v != 0 && s->n_transitions < METRICS_TRANSITIONS_MAX) {
                struct metrics_transition *x = &s->transitions[s->n_transitions++];
                x->kind = "rollout";
                x->from = ro_state_name(from);
                x->to = ev_names[ev];
                x->count = v;
            }
        }
    }
    store_txn_abort(t);
    s->transitions_known = ok;
}

/* Newest raft_uv snapshot file ("snapshot-TERM-INDEX-TIMESTAMP", not the
 * ".meta") under DIR/raft. Bounded scan. */
#define NODE_SNAPSHOT_SCAN_MAX 4096
static void collect_snapshot_size(struct node *n, struct metrics_snapshot *s)
{
    char dir[NODE_PATH_MAX], path[NODE_PATH_MAX + 256];
    snprintf(dir, sizeof dir, "%s/raft", n->cfg.data_dir);
    DIR *d = opendir(dir);
    if (d == NULL) {
        return;
    }
    struct dirent *de;
    time_t best = 0;
    unsigned scanned = 0;
    while ((de = readdir(d)) != NULL && scanned++ < NODE_SNAPSHOT_SCAN_MAX) {
        size_t len = strlen(de->d_name);
        if (strncmp(de->d_name, "snapshot-", 9) != 0 ||
            (len > 5 && strcmp(de->d_name + len - 5, ".meta") == 0)) {
            continue;
        }
        struct stat sb;
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        if (stat(path, &sb) == 0 && (!s->snapshot_bytes_known || sb.st_mtime >= best)) {
            best = sb.st_mtime;
            s->snapshot_bytes = (uint64_t)sb.st_size;
            s->snapshot_bytes_known = 1;
        }
    }
    closedir(d);
}

static void metrics_collect_cb(void *arg, struct metrics_snapshot *s)
{
    struct node *n = arg;
    s->connections = n->host.n_conns;
    s->handshakes_deferred = n->host.n_hs_deferred;
    s->inflight = n->adm.inflight;
    s->max_inflight = n->adm.max_inflight;
    s->admitted = n->adm.admitted;
    for (int r = 0; r < ADMISSION_N_REASONS; r++) {
        s->admission[s->n_admission].reason = admission_reason_name((enum admission_reason)r);
        s->admission[s->n_admission++].value = n->adm.rejected[r];
    }
    /* svc_denials counts every server-decided denial (role gate plus the
     * gateway-binding refusals); the role gate is counted here too. */
    uint64_t total = n->svc.denials.total;
    uint64_t role = n->metrics.denials_role;
    s->denials[s->n_denials].reason = "role_gate";
    s->denials[s->n_denials++].value = role;
    s->denials[s->n_denials].reason = "gateway_binding";
    s->denials[s->n_denials++].value = total > role ? total - role : 0;
    s->tls_reloads_ok = n->tls_reloads_ok;
    s->tls_reloads_failed = n->tls_reloads_failed;
    s->leader_changes = n->leader_changes;
    if (n->wn == NULL) {
        s->raft_state_name = "closed";
        return;
    }
    struct wnode_status *st = malloc(sizeof *st);
    if (st != NULL) {
        wnode_status(n->wn, st);
        s->node_id = st->id;
        s->raft_state = (int)st->state;
        s->raft_state_name = st->failed ? "failed" : st->state_name;
        s->term = st->term;
        s->commit_index = st->commit_index;
        s->applied_index = st->applied_index;
        s->last_index = st->last_index;
        s->snapshot_index = st->snapshot_index;
        s->snapshots = st->snapshots;
        s->restores = st->restores;
        s->proposals = st->proposals;
        s->leader_known = st->leader_id != 0;
        s->wall_offset_known = st->wall_offset_known;
        s->wall_offset_ms = st->wall_offset_ms;
        s->peer_tls_refused = st->tls_refused;
        free(st);
    }
    collect_transitions(n, s);
    collect_snapshot_size(n, s);
    /* LMDB: storage/ exposes no env info yet; the data file's size is the
     * high-water mark of pages used, against the configured map size. */
    char path[NODE_PATH_MAX + 16];
    struct stat sb;
    snprintf(path, sizeof path, "%s/db/data.mdb", n->cfg.data_dir);
    if (stat(path, &sb) == 0) {
        s->lmdb_known = 1;
        s->lmdb_file_bytes = (uint64_t)sb.st_size;
        s->lmdb_map_bytes = n->wcfg.map_size ? n->wcfg.map_size : STORE_MAP_SIZE_DEFAULT;
    }
}

static int metrics_healthy_cb(void *arg)
{
    struct node *n = arg;
    return n->state == NODE_RUNNING && n->svc.health == SVC_HEALTH_SERVING;
}

/* --metrics-listen, or by default 127.0.0.1 at the client port + 2 (dev:
 * client 7443, peer 7444, metrics 7445), best effort: a default that is
 * taken (several nodes on one host) is logged and skipped, an explicit
 * address that fails is a start-up error. */
static int start_metrics(struct node *n, struct werr *e)
{
    char addr[WNODE_HOSTPORT_MAX + 16];
    int explicit_addr = n->cfg.metrics_listen != NULL;
    if (explicit_addr && strcmp(n->cfg.metrics_listen, "off") == 0) {
        wlog(WLOG_INFO, "metrics listener disabled", "metrics_listen", "off", NULL);
        return 0;
    }
    if (explicit_addr) {
        snprintf(addr, sizeof addr, "%s", n->cfg.metrics_listen);
    } else {
        const char *colon = strrchr(n->cfg.listen, ':');
        long port = colon != NULL ? strtol(colon + 1, NULL, 10) : -1;
        if (port < 0 || port + 2 > 65535) {
            wlog(WLOG_WARN, "metrics listener disabled: no default port", "listen",
                 n->cfg.listen, NULL);
            return 0;
        }
        snprintf(addr, sizeof addr, "127.0.0.1:%ld", port == 0 ? 0 : port + 2);
    }
    struct werr me;
    int rc = metrics_server_start(&n->msrv, n->loop, addr, &n->metrics, metrics_collect_cb,
                                  metrics_healthy_cb, n, &me);
    if (rc != 0) {
        if (explicit_addr) {
            werr_set(e, rc, "%s", me.msg);
            return rc;
        }
        wlog(WLOG_WARN, "metrics listener disabled: default address unavailable", "addr",
             addr, "error", me.msg, NULL);
        return 0;
    }
    n->metrics_on = 1;
    char port[8];
    snprintf(port, sizeof port, "%d", metrics_server_port(&n->msrv));
    wlog(WLOG_INFO, "metrics listening", "addr", addr, "port", port, "paths",
         "GET /metrics, GET /healthz", NULL);
    return 0;
}

int node_metrics_port(const struct node *n)
{
    return n->metrics_on ? metrics_server_port(&n->msrv) : -1;
}

int node_start(struct node *n, struct werr *e)
{
    int rc = uv_listen((uv_stream_t *)&n->listener, NODE_LISTEN_BACKLOG, connection_cb);
    if (rc == 0) {
        rc = start_metrics(n, e);
    } else {
        rc = werr_set(e, WERR_CONFIG, "--listen %s: %s", n->cfg.listen, uv_strerror(rc));
    }
    if (rc != 0) {
        uv_close((uv_handle_t *)&n->listener, listener_close_cb);
        wnode_close(n->wn, NULL, NULL);
        n->wn = NULL;
        uv_run(n->loop, UV_RUN_DEFAULT); /* the listener and the Raft node */
        return rc;
    }
    uv_signal_init(n->loop, &n->sig_term);
    uv_signal_init(n->loop, &n->sig_int);
    uv_timer_init(n->loop, &n->grace);
    uv_prepare_init(n->loop, &n->flush);
    uv_idle_init(n->loop, &n->hs_idle);
    uv_timer_init(n->loop, &n->raft_poll);
    n->sig_term.data = n->sig_int.data = n->grace.data = n->flush.data = n;
    n->hs_idle.data = n;
    n->raft_poll.data = n;
    uv_signal_init(n->loop, &n->sig_hup);
    n->sig_hup.data = n;
    n->open_handles = 7;
    n->seen_state = -1;
    n->host.on_conn_freed = conn_freed_cb;
    uv_signal_start(&n->sig_term, signal_cb, SIGTERM);
    uv_signal_start(&n->sig_int, signal_cb, SIGINT);
    uv_signal_start(&n->sig_hup, hup_cb, SIGHUP);
    uv_prepare_start(&n->flush, flush_cb);
    n->state = NODE_RUNNING;

    char maxc[24], maxm[24], maxw[24], port[8];
    snprintf(port, sizeof port, "%d", node_port(n));
    snprintf(maxc, sizeof maxc, "%zu", n->cfg.max_conns);
    snprintf(maxm, sizeof maxm, "%zu", n->cfg.max_msg);
    snprintf(maxw, sizeof maxw, "%zu", n->cfg.max_watchers);
    wlog(WLOG_INFO, "listening", "addr", n->cfg.listen, "port", port,
         "data_dir", n->cfg.data_dir,
         "mode", n->cfg.dev ? "dev" : "production", "max_conns", maxc,
         "max_msg_bytes", maxm, "max_watchers", maxw, NULL);
    char id[16];
    snprintf(id, sizeof id, "%u", n->id);
    char snap_th[16], snap_tr[16];
    snprintf(snap_th, sizeof snap_th, "%u",
             n->wcfg.snapshot_threshold ? n->wcfg.snapshot_threshold
                                        : (unsigned)WNODE_SNAPSHOT_THRESHOLD);
    snprintf(snap_tr, sizeof snap_tr, "%u",
             n->wcfg.snapshot_trailing ? n->wcfg.snapshot_trailing
                                       : (unsigned)WNODE_SNAPSHOT_TRAILING);
    wlog(WLOG_INFO, "raft node started", "node_id", id, "client_addr", n->client_addr,
         "peer_addr", n->peer_addr,
         "bootstrap", n->wcfg.bootstrap ? "yes (ignored if the log exists)" : "no",
         "snapshot_threshold", snap_th, "snapshot_trailing", snap_tr, NULL);
    if (n->cfg.dev) {
        log_dev_usage(n);
    }
    /* Health: SERVING once a leader is known (a one-node cluster elects
     * itself at start); the poll keeps it current. */
    raft_poll_cb(&n->raft_poll);
    uv_timer_start(&n->raft_poll, raft_poll_cb, NODE_RAFT_POLL_MS, NODE_RAFT_POLL_MS);
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
    SSL_CTX_free(n->ssl_ctx);
    n->ssl_ctx = NULL;
}
