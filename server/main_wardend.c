/* main_wardend.c - wardend: flags, then one node on the default loop; or
 * `wardend gen-certs`, which writes a cluster PKI and exits.
 *
 * Settings: flags > WARDEN_<KEY> environment > --config FILE > defaults
 * (config.h, docs/configuration.md).
 *
 * Exit codes: 0 after a graceful shutdown (SIGTERM/SIGINT), 2 for a usage or
 * configuration error, 1 for any other start-up failure or a fatal Raft
 * error while running. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "../common/log.h"
#include "admin_offline.h"
#include "cluster_cfg.h"
#include "config.h"
#include "devcerts.h"
#include "node.h"
#ifdef WARDEN_FAULTS
#include "../domain/freshness.h"

/* --unsafe-fault NAME[,NAME...], repeatable (TESTING ONLY). Enables each
 * named fault; *ack_before_commit is set for ack-before-commit (it goes to
 * the node's config). Returns 0, or -1 after logging an unknown name. */
static int unsafe_faults_parse(const char *arg, int *ack_before_commit)
{
    const char *p = arg;
    while (1) {
        size_t len = strcspn(p, ",");
        if (len == strlen("fresh-window-volatile") &&
            strncmp(p, "fresh-window-volatile", len) == 0) {
            fresh_fault_volatile_window(1);
        } else if (len == strlen("ack-before-commit") &&
                   strncmp(p, "ack-before-commit", len) == 0) {
            *ack_before_commit = 1;
        } else {
            wlog(WLOG_ERROR, "unknown --unsafe-fault (fresh-window-volatile, "
                 "ack-before-commit)", "fault", arg, NULL);
            return -1;
        }
        if (p[len] == '\0')
            return 0;
        p += len + 1;
    }
}
#endif

static void usage(FILE *f)
{
    fprintf(f,
            "usage: wardend [--dev] [options]\n"
            "       wardend --node-id N (--peers ID=PEER[/CLIENT],... | --join)\n"
            "               --tls-ca CA --tls-cert CERT --tls-key KEY [options]\n"
            "       wardend gen-certs --out DIR --node ID=IP [--node ID=IP ...]\n"
            "       wardend recover|backup|restore ... (offline tools, docs/ops/;\n"
            "               wardend recover --help)\n"
            "\n"
            "  --dev                     development mode: a one-node cluster (id 1);\n"
            "                            generate (first start) or reuse a CA, server,\n"
            "                            peer-n1 and per-role client certificates\n"
            "                            under DATA-DIR/dev-certs\n"
            "  --data-dir DIR            state directory: DIR/db, DIR/raft (default %s)\n"
            "  --listen ADDR:PORT        client (gRPC) address (default %s in dev mode,\n"
            "                            else this node's --peers client address;\n"
            "                            [V6]:PORT for IPv6)\n"
            "  --node-id N               this node's raft id (1..4294967295)\n"
            "  --peers ID=PEER[/CLIENT],...\n"
            "                            initial voters, a.b.c.d:PORT each; CLIENT\n"
            "                            defaults to PEER's host, port - 1. Bootstraps a\n"
            "                            fresh data dir; ignored once the raft log exists\n"
            "  --join                    start without bootstrapping; wait to be added\n"
            "                            (Cluster.AddMember on the leader)\n"
            "  --peer-listen ADDR:PORT   raft peer address (default: from --peers; dev:\n"
            "                            the client host, port + 1)\n"
            "  --election-timeout-ms N   raft election timeout (default %u)\n"
            "  --snapshot-threshold N    snapshot after N applied entries (%u..%u,\n"
            "                            default %u)\n"
            "  --snapshot-trailing N     entries kept in the log after a snapshot\n"
            "                            (%u..%u, default %u)\n"
            "  --tls-cert FILE           node certificate chain (PEM; required without\n"
            "                            --dev); serves clients and raft peers, so it\n"
            "                            carries SAN URI warden://role/peer/n<N>\n"
            "  --tls-key FILE            its private key (PEM; required without --dev)\n"
            "  --tls-ca FILE             cluster CA for client and peer certificates\n"
            "  --log-level LEVEL         debug|info|warn|error (default info)\n"
            "  --max-msg-bytes N         largest gRPC message, both directions (default %zu)\n"
            "  --shutdown-grace-ms N     drain budget on SIGTERM (default %u)\n"
            "  --max-conns N             concurrent connections (default %u)\n"
            "  --handshake-timeout-ms N  TLS handshake budget (default %u)\n"
            "  --idle-timeout-ms N       close connections idle this long (default %u)\n"
            "  --metrics-listen ADDR:PORT  Prometheus /metrics + /healthz, plain HTTP\n"
            "                            (default 127.0.0.1:<client port + 2>, best\n"
            "                            effort; \"off\" disables)\n"
            "  --rate-limit-rps N        calls/s per principal, 0 = off (default %u)\n"
            "  --rate-limit-burst N      token bucket size per principal (default %u)\n"
            "  --max-inflight N          calls in flight per node (default %u)\n"
            "  --max-watchers N          Access/WatchRevocations streams per node\n"
            "                            (1..%u, default %u)\n"
            "  --config FILE             key = value settings (docs/configuration.md);\n"
            "                            flags > WARDEN_<KEY> environment > file > defaults\n"
#ifdef WARDEN_FAULTS
            "  --unsafe-fault NAME       TESTING ONLY (a -DWARDEN_FAULTS=ON build):\n"
            "                            break a guarantee on purpose, for the Jepsen\n"
            "                            negative controls. NAME: fresh-window-volatile\n"
            "                            (telemetry anti-replay window kept in process\n"
            "                            memory, lost on restart; docs/freshness.md),\n"
            "                            ack-before-commit (writes acknowledged once\n"
            "                            handed to raft, before commit; docs/consensus.md).\n"
            "                            Repeatable, or a comma list\n"
#endif
            "  -h, --help\n",
            NODE_DATA_DIR_DEFAULT, NODE_LISTEN_DEFAULT, WNODE_ELECTION_TIMEOUT_MS,
            NODE_SNAPSHOT_THRESHOLD_MIN, NODE_SNAPSHOT_THRESHOLD_MAX,
            (unsigned)WNODE_SNAPSHOT_THRESHOLD, NODE_SNAPSHOT_TRAILING_MIN,
            NODE_SNAPSHOT_TRAILING_MAX, (unsigned)WNODE_SNAPSHOT_TRAILING,
            GRPC_MAX_MSG_DEFAULT,
            NODE_SHUTDOWN_GRACE_MS_DEFAULT, NODE_MAX_CONNS_DEFAULT,
            CONN_HANDSHAKE_TIMEOUT_MS_DEFAULT, CONN_IDLE_TIMEOUT_MS_DEFAULT,
            ADMISSION_RATE_DEFAULT, ADMISSION_BURST_DEFAULT, ADMISSION_INFLIGHT_DEFAULT,
            SVC_ACCESS_WATCH_MAX_HARD, SVC_ACCESS_WATCH_MAX_DEFAULT);
}

enum {
    OPT_DEV = 256,
    OPT_DATA_DIR,
    OPT_LISTEN,
    OPT_TLS_CERT,
    OPT_TLS_KEY,
    OPT_TLS_CA,
    OPT_LOG_LEVEL,
    OPT_MAX_MSG,
    OPT_GRACE,
    OPT_MAX_CONNS,
    OPT_HANDSHAKE,
    OPT_IDLE,
    OPT_NODE_ID,
    OPT_PEERS,
    OPT_PEER_LISTEN,
    OPT_JOIN,
    OPT_ELECTION,
    OPT_SNAP_THRESHOLD,
    OPT_SNAP_TRAILING,
    OPT_OUT,
    OPT_NODE,
    OPT_CONFIG,
    OPT_METRICS_LISTEN,
    OPT_RATE_RPS,
    OPT_RATE_BURST,
    OPT_MAX_INFLIGHT,
    OPT_MAX_WATCHERS,
    OPT_UNSAFE_FAULT,
};

static const char *env_getenv(const char *name, void *arg)
{
    (void)arg;
    return getenv(name);
}

/* The --config value, looked for before everything else: the file is the
 * lowest-precedence source, so it must be applied first. NULL if absent;
 * "" when the flag has no value (a usage error). */
static const char *find_config_flag(int argc, char **argv)
{
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) {
            break;
        }
        if (strcmp(argv[i], "--config") == 0) {
            path = i + 1 < argc ? argv[++i] : "";
        } else if (strncmp(argv[i], "--config=", 9) == 0) {
            path = argv[i] + 9;
        }
    }
    return path;
}

/* `wardend gen-certs --out DIR --node ID=IP ...`: the cluster PKI
 * (devcerts_cluster). Reuses what DIR already holds. */
static int gen_certs_main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"out", required_argument, NULL, OPT_OUT},
        {"node", required_argument, NULL, OPT_NODE},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct devcerts_node nodes[WNODE_MEMBERS_MAX];
    /* Parsed IPs live here; nodes[i].ip points into it. */
    static char ips[WNODE_MEMBERS_MAX][16];
    size_t n = 0;
    const char *out = NULL;
    int ch;
    struct werr e;
    werr_clear(&e);
    optind = 1;
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (ch) {
        case OPT_OUT:
            out = optarg;
            break;
        case OPT_NODE: {
            char buf[64], ipport[32];
            unsigned port;
            char *eq;
            if (n >= WNODE_MEMBERS_MAX) {
                wlog(WLOG_ERROR, "gen-certs: too many --node flags", NULL);
                return 2;
            }
            snprintf(buf, sizeof buf, "%s", optarg);
            eq = strchr(buf, '=');
            if (eq == NULL) {
                wlog(WLOG_ERROR, "gen-certs: --node wants ID=IP", "value", optarg, NULL);
                return 2;
            }
            *eq = '\0';
            snprintf(ipport, sizeof ipport, "%s:1", eq + 1);
            if (cluster_id_parse(buf, &nodes[n].id, &e) != 0 ||
                cluster_hostport_parse(ipport, 0, ips[n], sizeof ips[n], &port, &e) != 0) {
                wlog(WLOG_ERROR, "gen-certs: bad --node", "value", optarg, "error", e.msg,
                     NULL);
                return 2;
            }
            for (size_t i = 0; i < n; i++) {
                if (nodes[i].id == nodes[n].id) {
                    wlog(WLOG_ERROR, "gen-certs: node id listed twice", "value", optarg,
                         NULL);
                    return 2;
                }
            }
            nodes[n].ip = ips[n];
            n++;
            break;
        }
        case 'h':
            fprintf(stdout, "usage: wardend gen-certs --out DIR --node ID=IP [--node ID=IP ...]\n");
            return 0;
        default:
            fprintf(stderr, "usage: wardend gen-certs --out DIR --node ID=IP [--node ID=IP ...]\n");
            return 2;
        }
    }
    if (out == NULL || optind < argc) {
        fprintf(stderr, "usage: wardend gen-certs --out DIR --node ID=IP [--node ID=IP ...]\n");
        return 2;
    }
    int generated = 0;
    int rc = devcerts_cluster(out, nodes, n, &generated, &e);
    if (rc != 0) {
        wlog(WLOG_ERROR, "gen-certs failed", "error", e.msg, NULL);
        return 1;
    }
    char gen[24], nn[24];
    snprintf(gen, sizeof gen, "%d", generated);
    snprintf(nn, sizeof nn, "%zu", n);
    wlog(WLOG_INFO, "cluster certificates ready", "dir", out, "nodes", nn,
         "files_written", gen, "files",
         "ca.pem, node-<id>.pem, node-<id>-key.pem, <role>.pem, <role>-key.pem", NULL);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "gen-certs") == 0) {
        return gen_certs_main(argc - 1, argv + 1);
    }
    /* recover/backup/restore: offline tools (admin_offline.h). */
    if (argc > 1 && admin_offline_is_cmd(argv[1])) {
        return admin_offline_main(argc - 1, argv + 1);
    }
    static const struct option opts[] = {
        {"dev", no_argument, NULL, OPT_DEV},
        {"data-dir", required_argument, NULL, OPT_DATA_DIR},
        {"listen", required_argument, NULL, OPT_LISTEN},
        {"tls-cert", required_argument, NULL, OPT_TLS_CERT},
        {"tls-key", required_argument, NULL, OPT_TLS_KEY},
        {"tls-ca", required_argument, NULL, OPT_TLS_CA},
        {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
        {"max-msg-bytes", required_argument, NULL, OPT_MAX_MSG},
        {"shutdown-grace-ms", required_argument, NULL, OPT_GRACE},
        {"max-conns", required_argument, NULL, OPT_MAX_CONNS},
        {"handshake-timeout-ms", required_argument, NULL, OPT_HANDSHAKE},
        {"idle-timeout-ms", required_argument, NULL, OPT_IDLE},
        {"node-id", required_argument, NULL, OPT_NODE_ID},
        {"peers", required_argument, NULL, OPT_PEERS},
        {"peer-listen", required_argument, NULL, OPT_PEER_LISTEN},
        {"join", no_argument, NULL, OPT_JOIN},
        {"election-timeout-ms", required_argument, NULL, OPT_ELECTION},
        {"snapshot-threshold", required_argument, NULL, OPT_SNAP_THRESHOLD},
        {"snapshot-trailing", required_argument, NULL, OPT_SNAP_TRAILING},
        {"config", required_argument, NULL, OPT_CONFIG},
        {"metrics-listen", required_argument, NULL, OPT_METRICS_LISTEN},
        {"rate-limit-rps", required_argument, NULL, OPT_RATE_RPS},
        {"rate-limit-burst", required_argument, NULL, OPT_RATE_BURST},
        {"max-inflight", required_argument, NULL, OPT_MAX_INFLIGHT},
        {"max-watchers", required_argument, NULL, OPT_MAX_WATCHERS},
#ifdef WARDEN_FAULTS
        {"unsafe-fault", required_argument, NULL, OPT_UNSAFE_FAULT},
#endif
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    /* flags > environment (WARDEN_<KEY>) > config file > defaults
     * (config.h). The config owns every string node_config borrows, so it
     * lives as long as the process. */
    static struct config conf;
    config_init(&conf);
    struct werr ce;
    werr_clear(&ce);
    const char *conf_path = find_config_flag(argc, argv);
    if (conf_path != NULL) {
        if (conf_path[0] == '\0') {
            wlog(WLOG_ERROR, "--config wants a FILE", NULL);
            return 2;
        }
        if (config_load_file(&conf, conf_path, &ce) != 0) {
            wlog(WLOG_ERROR, "bad config file", "error", ce.msg, NULL);
            return 2;
        }
    }
    if (config_apply_env(&conf, env_getenv, NULL, &ce) != 0) {
        wlog(WLOG_ERROR, "bad environment setting", "error", ce.msg, NULL);
        return 2;
    }
    int ch, li = -1;
#ifdef WARDEN_FAULTS
    int fault_ack_before_commit = 0;
#endif
    optind = 1;
    while ((ch = getopt_long(argc, argv, "h", opts, &li)) != -1) {
        if (ch == 'h') {
            usage(stdout);
            return 0;
        }
        if (ch == OPT_CONFIG) {
            continue; /* applied above */
        }
#ifdef WARDEN_FAULTS
        if (ch == OPT_UNSAFE_FAULT) {
            if (unsafe_faults_parse(optarg, &fault_ack_before_commit) != 0) {
                return 2;
            }
            wlog(WLOG_WARN, "UNSAFE FAULT ENABLED: guarantees are broken on "
                 "purpose (testing only)", "fault", optarg, NULL);
            li = -1;
            continue;
        }
#endif
        if (ch == '?' || ch == ':' || li < 0) {
            usage(stderr);
            return 2;
        }
        const char *name = opts[li].name;
        int k = config_key_find(name, strlen(name));
        if (k < 0) {
            usage(stderr);
            return 2;
        }
        char flag[64];
        snprintf(flag, sizeof flag, "--%s", name);
        if (config_set(&conf, (enum config_key)k,
                       config_key_is_bool((enum config_key)k) ? "true" : optarg,
                       CONFIG_SRC_FLAG, &ce) != 0) {
            wlog(WLOG_ERROR, "bad flag value", "flag", flag, "error", ce.msg, NULL);
            return 2;
        }
        li = -1;
    }
    wlog_set_level(conf.log_level);
    struct node_config cfg = conf.node;
#ifdef WARDEN_FAULTS
    cfg.fault_ack_before_commit = fault_ack_before_commit;
#endif
    if (optind < argc) {
        wlog(WLOG_ERROR, "unexpected argument", "arg", argv[optind], NULL);
        usage(stderr);
        return 2;
    }

    /* A peer that resets mid-write must give us EPIPE, not kill us. */
    signal(SIGPIPE, SIG_IGN);

    uv_loop_t *loop = uv_default_loop();
    static struct node node; /* large (router, read buffer): not on the stack */
    struct werr e;
    werr_clear(&e);
    int rc = node_init(&node, loop, &cfg, &e);
    if (rc == 0) {
        rc = node_start(&node, &e);
        if (rc != 0) {
            node_close(&node);
        }
    }
    if (rc != 0) {
        wlog(WLOG_ERROR, "wardend failed to start", "error", e.msg, "code",
             werr_str(rc), NULL);
        uv_loop_close(loop);
        return rc == WERR_CONFIG ? 2 : 1;
    }
    uv_run(loop, UV_RUN_DEFAULT);
    node_close(&node);
    rc = uv_loop_close(loop);
    if (rc != 0) {
        /* A handle left open is a bug (libuv's test runner treats it so). */
        wlog(WLOG_ERROR, "event loop closed with handles still open", "error",
             uv_strerror(rc), NULL);
        return 1;
    }
    wlog(WLOG_INFO, "wardend stopped", NULL);
    return node.exit_code;
}
