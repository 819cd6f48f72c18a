/* Tests for server/cluster_cfg.c: --peers, --node-id and address parsing;
 * and the snapshot policy bounds wardend checks (node_snapshot_check). */
#include <string.h>

#include "server/cluster_cfg.h"
#include "server/node.h"
#include "unit.h"

TEST(peers_with_and_without_client)
{
    struct wnode_peer p[WNODE_MEMBERS_MAX];
    unsigned n = 0;
    struct werr e = {0};
    int rc = cluster_peers_parse(
        "1=127.0.0.11:7444,2=127.0.0.12:7444/127.0.0.12:9000,3=10.0.0.3:2",
        p, WNODE_MEMBERS_MAX, &n, &e);
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_INT(n, 3);
    CHECK_EQ_INT(p[0].id, 1);
    CHECK_EQ_STR(p[0].peer_addr, "127.0.0.11:7444");
    CHECK_EQ_STR(p[0].client_addr, "127.0.0.11:7443");
    CHECK_EQ_INT(p[1].id, 2);
    CHECK_EQ_STR(p[1].peer_addr, "127.0.0.12:7444");
    CHECK_EQ_STR(p[1].client_addr, "127.0.0.12:9000");
    CHECK_EQ_STR(p[2].client_addr, "10.0.0.3:1");
    CHECK(cluster_peers_find(p, n, 2) == &p[1]);
    CHECK(cluster_peers_find(p, n, 4) == NULL);
}

TEST(peers_refused)
{
    static const char *const bad[] = {
        "",
        "1",
        "=127.0.0.1:1",
        "0=127.0.0.1:7444",
        "-1=127.0.0.1:7444",
        "x=127.0.0.1:7444",
        "4294967296=127.0.0.1:7444",
        "1=127.0.0.1",
        "1=localhost:7444",
        "1=[::1]:7444",
        "1=127.0.0.1:0",
        "1=127.0.0.1:65536",
        "1=127.0.0.1:7444x",
        "1=127.0.0.1:1",               /* derived client port 0 */
        "1=127.0.0.1:7444/",
        "1=127.0.0.1:7444/127.0.0.1",
        "1=127.0.0.1:7444,",
        "1=127.0.0.1:7444,,2=127.0.0.2:7444",
        "1=127.0.0.1:7444,1=127.0.0.2:7444",   /* duplicate id */
        "1=127.0.0.1:7444,2=127.0.0.1:7444",   /* duplicate peer addr */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct wnode_peer p[WNODE_MEMBERS_MAX];
        unsigned n = 99;
        struct werr e = {0};
        int rc = cluster_peers_parse(bad[i], p, WNODE_MEMBERS_MAX, &n, &e);
        if (rc != WERR_CONFIG) {
            fprintf(stderr, "  accepted \"%s\"\n", bad[i]);
        }
        CHECK_EQ_INT(rc, WERR_CONFIG);
        CHECK(e.msg[0] != '\0');
    }
}

TEST(peers_cap)
{
    char big[CLUSTER_PEERS_ARG_MAX];
    size_t off = 0;
    for (unsigned i = 1; i <= WNODE_MEMBERS_MAX + 1; i++) {
        off += (size_t)snprintf(big + off, sizeof big - off, "%s%u=127.0.0.%u:7444",
                                i > 1 ? "," : "", i, i);
    }
    struct wnode_peer p[WNODE_MEMBERS_MAX];
    unsigned n = 0;
    struct werr e = {0};
    CHECK_EQ_INT(cluster_peers_parse(big, p, WNODE_MEMBERS_MAX, &n, &e), WERR_CONFIG);
    CHECK(strstr(e.msg, "more than") != NULL);
    /* An over-long argument is refused before parsing. */
    char huge[CLUSTER_PEERS_ARG_MAX + 8];
    memset(huge, '1', sizeof huge - 1);
    huge[sizeof huge - 1] = '\0';
    CHECK_EQ_INT(cluster_peers_parse(huge, p, WNODE_MEMBERS_MAX, &n, &e), WERR_CONFIG);
}

TEST(addresses)
{
    char host[16], out[WNODE_HOSTPORT_MAX];
    unsigned port = 0;
    struct werr e = {0};
    CHECK_EQ_INT(cluster_hostport_parse("127.0.0.1:0", 1, host, sizeof host, &port, &e), 0);
    CHECK_EQ_INT(port, 0);
    CHECK_EQ_INT(cluster_hostport_parse("127.0.0.1:0", 0, host, sizeof host, &port, &e),
                 WERR_CONFIG);
    CHECK_EQ_INT(cluster_hostport_parse("1.2.3.4:65535", 0, host, sizeof host, &port, &e), 0);
    CHECK_EQ_STR(host, "1.2.3.4");
    CHECK_EQ_INT(port, 65535);
    CHECK_EQ_INT(cluster_addr_shift("127.0.0.1:7443", 1, out, sizeof out, &e), 0);
    CHECK_EQ_STR(out, "127.0.0.1:7444");
    CHECK_EQ_INT(cluster_addr_shift("127.0.0.1:65535", 1, out, sizeof out, &e),
                 WERR_CONFIG);
    unsigned id = 0;
    CHECK_EQ_INT(cluster_id_parse("7", &id, &e), 0);
    CHECK_EQ_INT(id, 7);
    CHECK_EQ_INT(cluster_id_parse("0", &id, &e), WERR_CONFIG);
    CHECK_EQ_INT(cluster_id_parse("+3", &id, &e), WERR_CONFIG);
    CHECK_EQ_INT(cluster_id_parse("3 ", &id, &e), WERR_CONFIG);
}

TEST(snapshot_bounds)
{
    struct werr e = {0};
    /* 0 = the WNODE_* default. */
    CHECK_EQ_INT(node_snapshot_check(0, 0, &e), 0);
    CHECK_EQ_INT(node_snapshot_check(NODE_SNAPSHOT_THRESHOLD_MIN, NODE_SNAPSHOT_TRAILING_MIN,
                                     &e), 0);
    CHECK_EQ_INT(node_snapshot_check(NODE_SNAPSHOT_THRESHOLD_MAX, NODE_SNAPSHOT_TRAILING_MAX,
                                     &e), 0);
    CHECK_EQ_INT(node_snapshot_check(64, 16, &e), 0);
    /* trailing may exceed threshold (documented). */
    CHECK_EQ_INT(node_snapshot_check(64, 4096, &e), 0);
    CHECK_EQ_INT(node_snapshot_check(NODE_SNAPSHOT_THRESHOLD_MIN - 1, 0, &e), WERR_CONFIG);
    CHECK(strstr(e.msg, "--snapshot-threshold") != NULL);
    CHECK_EQ_INT(node_snapshot_check(NODE_SNAPSHOT_THRESHOLD_MAX + 1, 0, &e), WERR_CONFIG);
    CHECK_EQ_INT(node_snapshot_check(0, NODE_SNAPSHOT_TRAILING_MAX + 1, &e), WERR_CONFIG);
    CHECK(strstr(e.msg, "--snapshot-trailing") != NULL);
    /* The defaults themselves are inside the bounds. */
    CHECK_EQ_INT(node_snapshot_check(WNODE_SNAPSHOT_THRESHOLD, WNODE_SNAPSHOT_TRAILING, &e), 0);
}

int main(void)
{
    RUN(peers_with_and_without_client);
    RUN(peers_refused);
    RUN(peers_cap);
    RUN(addresses);
    RUN(snapshot_bounds);
    return unit_done();
}
