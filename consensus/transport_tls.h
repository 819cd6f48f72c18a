/* transport_tls.h - a raft_uv transport whose every peer connection is
 * mutually authenticated TLS 1.3 (issue 3, "Peers authenticate with mutual
 * TLS").
 *
 * raft_uv hands the accept/connect callbacks a uv_stream_t and then reads and
 * writes raw Raft RPC bytes on it. TLS therefore sits *below* that stream:
 * for each peer connection the transport creates socketpair(AF_UNIX,
 * SOCK_STREAM), gives raft one end as a uv_pipe_t, and pumps bytes between
 * the other end and the TLS-over-TCP socket (OpenSSL with memory BIOs) on the
 * same loop, with bounded queues and backpressure. See docs/consensus.md.
 *
 * The raft_uv connection handshake (protocol version, server id, address) is
 * the *transport's* job in raft_uv (upstream src/uv_tcp_connect.c writes it,
 * src/uv_tcp_listen.c reads it before calling accept_cb). This transport
 * sends and reads it inside the TLS channel, after the peer certificate has
 * been verified, and checks the claimed id against the certificate.
 *
 * Lifecycle (libuv habit): consensus_tls_transport_init() fills a
 * struct raft_uv_transport that is then passed to raft_uv_init(); raft_uv
 * calls init/listen/connect/close. After raft_close()'s callback has fired,
 * release it with consensus_tls_transport_close().
 *
 * Single-threaded: everything runs on the loop given at init. */
#ifndef WARDEN_CONSENSUS_TRANSPORT_TLS_H
#define WARDEN_CONSENSUS_TRANSPORT_TLS_H

#include <openssl/ssl.h>
#include <raft.h>
#include <raft/uv.h>
#include <uv.h>

#include "common/err.h"
#include "common/principal.h"

/* A TLS + raft handshake must finish within this long or the connection is
 * dropped: a peer that opens a socket and stalls must not hold a slot. */
#define CTLS_HANDSHAKE_TIMEOUT_MS 5000

/* Queued-but-unwritten bytes per direction per connection before the pump
 * stops reading the other side. 1 MiB covers a few AppendEntries batches;
 * a slow peer then stalls raft's stream instead of growing our memory. */
#define CTLS_QUEUE_MAX (1u << 20)

/* Longest peer address accepted in the raft handshake ("host:port" plus NUL,
 * padded to 8). Upstream raft_uv allocates whatever length the peer claims;
 * we cap it. */
#define CTLS_ADDRESS_MAX 256

/* Connections in the TLS or raft handshake at once. Bounds what an
 * unauthenticated client can make us allocate. */
#define CTLS_PENDING_MAX 64

/* Decides whether the authenticated peer may speak as raft server `id`.
 * Called after certificate verification (chain ok, exactly one SAN URI
 * warden://role/peer/<name>). Outbound: id is the server we dialled;
 * inbound: the id the peer claims in its raft handshake. Return 1 to allow,
 * 0 to refuse (the connection is closed and logged). */
typedef int (*consensus_tls_authorize_fn)(void *arg, raft_id id,
                                          const struct principal *peer);

struct consensus_tls_config {
    /* Borrowed; the transport takes its own reference (SSL_CTX_up_ref).
     * Build it with consensus_tls_ctx_new(). */
    SSL_CTX *ctx;
    /* NULL: any certificate with role peer may claim any id. Production
     * wiring binds names to ids (docs/consensus.md). */
    consensus_tls_authorize_fn authorize;
    void *authorize_arg;
    /* 0 means CTLS_HANDSHAKE_TIMEOUT_MS. */
    unsigned handshake_timeout_ms;
};

/* Build an SSL_CTX for peer traffic: TLS 1.3 only, our certificate and key
 * (PEM files), the cluster CA (PEM file) as the only trust anchor, and
 * mandatory peer certificates on both sides. Paths are borrowed for the call.
 * On success *out owns one reference (SSL_CTX_free it).
 * Returns 0, WERR_TLS (with OpenSSL's reason in e) or WERR_NOMEM. */
int consensus_tls_ctx_new(const char *ca_file, const char *cert_file,
                          const char *key_file, SSL_CTX **out, struct werr *e);

/* Fill t as a raft_uv transport bound to loop. cfg is copied; cfg->ctx is
 * up-ref'd. Returns 0, WERR_INVALID or WERR_NOMEM. On error nothing needs
 * releasing. */
int consensus_tls_transport_init(struct raft_uv_transport *t, uv_loop_t *loop,
                                 const struct consensus_tls_config *cfg,
                                 struct werr *e);

/* Release memory after raft_uv has closed the transport (i.e. after the
 * raft_close callback). */
void consensus_tls_transport_close(struct raft_uv_transport *t);

/* Counters for tests and Status: connections refused at the TLS or raft
 * handshake (bad cert, wrong role, unauthorized id, timeout, malformed). */
unsigned long consensus_tls_transport_refused(const struct raft_uv_transport *t);

#endif
