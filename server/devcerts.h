/* devcerts.h - the certificates `wardend --dev` generates on first start.
 *
 * Layout of DIR (normally <data-dir>/dev-certs, mode 0700):
 *   ca.pem, ca-key.pem                 dev CA (self-signed)
 *   server.pem, server-key.pem         SAN IP:127.0.0.1, DNS:localhost
 *   <role>.pem, <role>-key.pem         for admin, operator, gateway, auditor,
 *                                      rollout: SAN URI
 *                                      warden://role/<role>/dev-<role>
 *   peer-n1.pem, peer-n1-key.pem       the dev node's Raft identity (it is a
 *                                      one-node cluster, id 1): SAN
 *                                      IP:127.0.0.1, DNS:localhost, URI
 *                                      warden://role/peer/n1
 * Keys are ECDSA P-256 (PKCS#8 PEM, mode 0600), signatures SHA-256.
 * Existing files are reused; if the CA is missing every file is generated
 * again, since old leaves would not chain to a new CA.
 *
 * This is for development only: the CA key sits next to the certificates it
 * signed. Production certificates come from --tls-cert/--tls-key/--tls-ca. */
#ifndef WARDEN_SERVER_DEVCERTS_H
#define WARDEN_SERVER_DEVCERTS_H

#include <stddef.h>

#include "../common/err.h"

/* Validity. The CA outlives the leaves so leaves can be re-issued under it;
 * neither is long, since the keys are unprotected on disk. */
#define DEVCERTS_CA_DAYS 3650
#define DEVCERTS_LEAF_DAYS 825
/* notBefore is backdated so a peer whose clock is slightly behind accepts a
 * freshly generated certificate. */
#define DEVCERTS_BACKDATE_SECS 3600

/* Roles that get a client certificate, in generation order. */
extern const char *const devcerts_roles[];
extern const size_t devcerts_n_roles;

/* Create DIR (and missing parents' last component) and any missing files.
 * *generated (may be NULL) is set to the number of files written. Returns 0,
 * WERR_IO (with the path) or WERR_TLS. */
int devcerts_ensure(const char *dir, int *generated, struct werr *e);

/* The dev node's raft server id and its peer certificate's base name. */
#define DEVCERTS_DEV_NODE_ID 1u
#define DEVCERTS_DEV_PEER "peer-n1"

/* One node of `wardend gen-certs`: raft id and the IPv4 literal it serves on. */
struct devcerts_node {
    unsigned id;
    const char *ip;   /* borrowed */
};

/* Cluster PKI for `wardend gen-certs` (docs/operations-cluster.md): in dir,
 * create or reuse ca.pem/ca-key.pem ("warden cluster CA"), <role>.pem and
 * <role>-key.pem for every client role (SAN URI warden://role/<role>/<role>),
 * and node-<id>.pem/node-<id>-key.pem per node (SAN IP:<ip>, DNS:localhost,
 * URI warden://role/peer/n<id>; serverAuth + clientAuth, since the same cert
 * serves gRPC clients and both directions of Raft traffic). Same reuse rule
 * as devcerts_ensure. Returns 0, WERR_IO, WERR_LIMIT or WERR_TLS. */
int devcerts_cluster(const char *dir, const struct devcerts_node *nodes,
                     size_t n_nodes, int *generated, struct werr *e);

/* Join dir and file into buf. Returns 0 or WERR_LIMIT. */
int devcerts_path(char *buf, size_t cap, const char *dir, const char *file);

#endif
