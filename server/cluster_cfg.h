/* cluster_cfg.h - the pure part of wardend's cluster flags: parsing
 * --peers and IPv4 "host:port" addresses, and deriving one address from
 * another. No sockets, no libuv calls: tested by
 * tests/unit/test_server_cluster_cfg.c.
 *
 * Grammar (docs/operations-cluster.md):
 *   --peers  ID=PEER[/CLIENT](,ID=PEER[/CLIENT])*
 *   PEER, CLIENT  a.b.c.d:PORT   (IPv4 literals only: the peer transport's
 *                                 limit, consensus/node.h)
 * When CLIENT is omitted it is PEER's host with port - 1, the layout
 * deploy/local-cluster.sh and `wardend --dev` use (client P, peer P + 1). */
#ifndef WARDEN_SERVER_CLUSTER_CFG_H
#define WARDEN_SERVER_CLUSTER_CFG_H

#include <stddef.h>

#include "../common/err.h"
#include "../consensus/node.h"

/* Longest --peers value accepted: WNODE_MEMBERS_MAX entries of
 * "NN=PEER/CLIENT," with room to spare. Longer is a usage error. */
#define CLUSTER_PEERS_ARG_MAX 4096

/* Parse "a.b.c.d:port" (port 0..65535; 0 only when allow_zero). host
 * receives the dotted quad (cap >= 16). Returns 0 or WERR_CONFIG with the
 * reason in e. */
int cluster_hostport_parse(const char *s, int allow_zero, char *host,
                           size_t host_cap, unsigned *port, struct werr *e);

/* out = host of `hostport` with its port + delta ("127.0.0.11:7444", -1 ->
 * "127.0.0.11:7443"). Returns 0 or WERR_CONFIG (bad address, port out of
 * 1..65535 after the shift). cap >= WNODE_HOSTPORT_MAX. */
int cluster_addr_shift(const char *hostport, int delta, char *out, size_t cap,
                       struct werr *e);

/* Parse --peers into out[0..*n). Ids must be 1..UINT32_MAX and distinct,
 * peer addresses distinct, at most cap (<= WNODE_MEMBERS_MAX) entries.
 * Returns 0 or WERR_CONFIG. s is borrowed for the call. */
int cluster_peers_parse(const char *s, struct wnode_peer *out, unsigned cap,
                        unsigned *n, struct werr *e);

/* Find id in peers; NULL when absent. */
const struct wnode_peer *cluster_peers_find(const struct wnode_peer *peers,
                                            unsigned n, unsigned id);

/* Parse a --node-id value (1..UINT32_MAX). Returns 0 or WERR_CONFIG. */
int cluster_id_parse(const char *s, unsigned *id, struct werr *e);

#endif
