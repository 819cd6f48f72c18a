/* tls.h - OpenSSL 3 configuration for wardend: TLS 1.3 only, mutual TLS,
 * ALPN h2, and the caller's principal from the client certificate.
 *
 * Policy (docs/security.md):
 *   - TLS 1.3 is the minimum and the maximum we speak.
 *   - The client must present a certificate that chains to the configured CA
 *     (SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT) and carries exactly
 *     one SAN URI warden://role/<role>/<name> (common/principal.h). Anything
 *     else fails the handshake with an alert, before any HTTP/2 byte is read.
 *   - ALPN: a client that offers ALPN must offer "h2", or the handshake fails
 *     with no_application_protocol. A client that offers no ALPN at all is
 *     treated as HTTP/2 with prior knowledge (RFC 9113 §3.3), which is what
 *     h2load bridged through socat looks like.
 *   - No session tickets and no session cache: every connection performs a
 *     full handshake with a fresh certificate check.
 *
 * Only server/ includes OpenSSL. SSL error codes are translated to WERR_TLS
 * here, with the reason text in the werr message. */
#ifndef WARDEN_SERVER_TLS_H
#define WARDEN_SERVER_TLS_H

#include <openssl/ssl.h>

#include "../common/err.h"
#include "../common/principal.h"

/* Longest certificate chain a client may send (SSL_CTX_set_max_cert_list).
 * Our client chains are a leaf plus at most an intermediate, ~1-2 KiB;
 * OpenSSL's 100 KiB default would let every handshaking peer pin that much. */
#define TLS_MAX_CERT_LIST (32u << 10)
/* Maximum chain depth verified (leaf, intermediates, root). */
#define TLS_VERIFY_DEPTH 4

struct tls_config {
    const char *cert_file; /* server certificate chain, PEM. Borrowed. */
    const char *key_file;  /* server private key, PEM. Borrowed. */
    const char *ca_file;   /* CA(s) that sign client certificates, PEM. */
};

/* What the handshake learnt about the peer. Owned by the caller (one per
 * connection) and attached to the SSL by tls_ssl_new(); must outlive it. */
struct tls_peer {
    struct principal principal; /* valid when have_principal */
    int have_principal;
    int alpn_refused;           /* client offered ALPN without h2 */
    struct werr verify_err;     /* why the certificate was refused, if it was */
};

/* Build the server SSL_CTX from cfg. On success *out is owned by the caller
 * (SSL_CTX_free). Returns 0, WERR_CONFIG (a file is missing or unreadable,
 * or key and certificate do not match) or WERR_TLS/WERR_NOMEM. */
int tls_server_ctx_new(SSL_CTX **out, const struct tls_config *cfg,
                       struct werr *e);

/* Create a server-side SSL on two memory BIOs: bytes read from the socket go
 * into *rbio (BIO_write), bytes to send come out of *wbio (BIO_read). The
 * BIOs are owned by the SSL (freed by SSL_free). peer is borrowed and must
 * outlive the SSL. Returns 0 or WERR_NOMEM. */
int tls_ssl_new(SSL_CTX *ctx, struct tls_peer *peer, SSL **out, BIO **rbio,
                BIO **wbio, struct werr *e);

/* Extract the principal from a certificate: exactly one SAN URI that begins
 * with warden:// must be present and parse. Returns 0 or WERR_PERM with the
 * reason. */
int tls_cert_principal(X509 *cert, struct principal *out, struct werr *e);

/* The serial number (upper-case hex) and notAfter (OpenSSL's text form)
 * of the server certificate in ctx, for logs after a (re)load. Writes "?"
 * when unknown. */
void tls_ctx_cert_info(SSL_CTX *ctx, char *serial, size_t serial_cap,
                       char *not_after, size_t not_after_cap);

/* Describe why an SSL call that returned ret failed: pops the OpenSSL error
 * queue and adds the verify result / ALPN / principal reason from peer.
 * Always returns WERR_TLS (clears the error queue). peer may be NULL. */
int tls_failure(SSL *ssl, int ret, const struct tls_peer *peer,
                struct werr *e);

#endif
