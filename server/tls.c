/* tls.c - server TLS policy (tls.h). */
#include "tls.h"

#include <stdio.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

/* ALPN protocol list in wire format (RFC 7301 §3.1): we speak only h2. */
static const unsigned char alpn_h2[] = {2, 'h', '2'};

/* ex_data slot holding the connection's struct tls_peer. */
static int peer_idx = -1;

static int ssl_err(struct werr *e, int code, const char *what)
{
    char buf[160] = "no detail";
    unsigned long err = ERR_get_error();
    if (err != 0) {
        ERR_error_string_n(err, buf, sizeof buf);
    }
    ERR_clear_error();
    return werr_set(e, code, "%s: %s", what, buf);
}

int tls_cert_principal(X509 *cert, struct principal *out, struct werr *e)
{
    static const char scheme[] = "warden://";
    GENERAL_NAMES *names = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
    if (names == NULL) {
        return werr_set(e, WERR_PERM, "client certificate has no subjectAltName");
    }
    int found = 0;
    int rc = 0;
    struct werr perr;
    werr_clear(&perr);
    for (int i = 0; i < sk_GENERAL_NAME_num(names); i++) {
        const GENERAL_NAME *gn = sk_GENERAL_NAME_value(names, i);
        if (gn->type != GEN_URI) {
            continue;
        }
        const unsigned char *u = ASN1_STRING_get0_data(gn->d.uniformResourceIdentifier);
        int ulen = ASN1_STRING_length(gn->d.uniformResourceIdentifier);
        if (ulen < (int)(sizeof scheme - 1) ||
            memcmp(u, scheme, sizeof scheme - 1) != 0) {
            continue; /* other URIs (e.g. SPIFFE IDs) are allowed alongside */
        }
        if (++found > 1) {
            break;
        }
        rc = principal_parse_uri((const char *)u, (size_t)ulen, out, &perr);
    }
    GENERAL_NAMES_free(names);
    if (found == 0) {
        return werr_set(e, WERR_PERM, "client certificate has no warden:// SAN URI");
    }
    if (found > 1) {
        return werr_set(e, WERR_PERM,
                        "client certificate has more than one warden:// SAN URI");
    }
    if (rc != 0) {
        return werr_set(e, WERR_PERM, "client certificate: %s", perr.msg);
    }
    return 0;
}

/* Runs for every certificate in the client's chain, root first. We keep
 * OpenSSL's verdict and add our own at depth 0 (the leaf): the identity must
 * parse, or the handshake fails with an alert the client can see, instead of
 * a connection that is accepted and then dropped. */
static int verify_cb(int preverify_ok, X509_STORE_CTX *xs)
{
    SSL *ssl = X509_STORE_CTX_get_ex_data(xs, SSL_get_ex_data_X509_STORE_CTX_idx());
    struct tls_peer *peer = ssl ? SSL_get_ex_data(ssl, peer_idx) : NULL;
    int depth = X509_STORE_CTX_get_error_depth(xs);

    if (!preverify_ok) {
        if (peer != NULL && peer->verify_err.code == 0) {
            int err = X509_STORE_CTX_get_error(xs);
            werr_set(&peer->verify_err, WERR_PERM,
                     "client certificate at depth %d: %s", depth,
                     X509_verify_cert_error_string(err));
        }
        return 0;
    }
    if (depth != 0 || peer == NULL) {
        return 1;
    }
    X509 *leaf = X509_STORE_CTX_get_current_cert(xs);
    if (tls_cert_principal(leaf, &peer->principal, &peer->verify_err) != 0) {
        X509_STORE_CTX_set_error(xs, X509_V_ERR_APPLICATION_VERIFICATION);
        return 0;
    }
    peer->have_principal = 1;
    return 1;
}

/* RFC 7301 §3.2: if none of the client's protocols is supported the server
 * answers no_application_protocol. Not called at all when the client sent
 * no ALPN extension: that client gets HTTP/2 with prior knowledge. */
static int alpn_select_cb(SSL *ssl, const unsigned char **out,
                          unsigned char *outlen, const unsigned char *in,
                          unsigned int inlen, void *arg)
{
    (void)arg;
    unsigned char *sel = NULL;
    if (SSL_select_next_proto(&sel, outlen, alpn_h2, sizeof alpn_h2, in, inlen) !=
        OPENSSL_NPN_NEGOTIATED) {
        struct tls_peer *peer = SSL_get_ex_data(ssl, peer_idx);
        if (peer != NULL) {
            peer->alpn_refused = 1;
        }
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    }
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

int tls_server_ctx_new(SSL_CTX **out, const struct tls_config *cfg,
                       struct werr *e)
{
    if (cfg->cert_file == NULL || cfg->key_file == NULL || cfg->ca_file == NULL) {
        return werr_set(e, WERR_CONFIG,
                        "TLS needs a certificate, a key and a client CA "
                        "(--tls-cert, --tls-key, --tls-ca, or --dev)");
    }
    if (peer_idx < 0) {
        peer_idx = SSL_get_ex_new_index(0, "warden tls_peer", NULL, NULL, NULL);
        if (peer_idx < 0) {
            return ssl_err(e, WERR_TLS, "SSL_get_ex_new_index");
        }
    }
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL) {
        return ssl_err(e, WERR_NOMEM, "SSL_CTX_new");
    }
    int rc;
    if (!SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION)) {
        rc = ssl_err(e, WERR_TLS, "TLS 1.3 minimum");
        goto err_free_ctx;
    }
    if (SSL_CTX_use_certificate_chain_file(ctx, cfg->cert_file) != 1) {
        rc = ssl_err(e, WERR_CONFIG, "server certificate");
        werr_wrap(e, "%s", cfg->cert_file);
        goto err_free_ctx;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, cfg->key_file, SSL_FILETYPE_PEM) != 1) {
        rc = ssl_err(e, WERR_CONFIG, "server key");
        werr_wrap(e, "%s", cfg->key_file);
        goto err_free_ctx;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        rc = ssl_err(e, WERR_CONFIG, "server key does not match certificate");
        goto err_free_ctx;
    }
    if (SSL_CTX_load_verify_locations(ctx, cfg->ca_file, NULL) != 1) {
        rc = ssl_err(e, WERR_CONFIG, "client CA");
        werr_wrap(e, "%s", cfg->ca_file);
        goto err_free_ctx;
    }
    /* Tell clients which CA we accept (CertificateRequest
     * certificate_authorities) so they pick the right certificate. */
    STACK_OF(X509_NAME) *cas = SSL_load_client_CA_file(cfg->ca_file);
    if (cas == NULL) {
        rc = ssl_err(e, WERR_CONFIG, "client CA names");
        werr_wrap(e, "%s", cfg->ca_file);
        goto err_free_ctx;
    }
    SSL_CTX_set_client_CA_list(ctx, cas); /* ctx takes ownership */

    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
                       verify_cb);
    SSL_CTX_set_verify_depth(ctx, TLS_VERIFY_DEPTH);
    SSL_CTX_set_max_cert_list(ctx, TLS_MAX_CERT_LIST);
    SSL_CTX_set_alpn_select_cb(ctx, alpn_select_cb, NULL);
    /* Full handshake every time: a resumed session would skip the
     * certificate check against the CA as it is *now*. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_num_tickets(ctx, 0);
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET | SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE);
    /* Idle connections give their 2x~34 KiB record buffers back. */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    *out = ctx;
    return 0;

err_free_ctx:
    SSL_CTX_free(ctx);
    return rc;
}

int tls_ssl_new(SSL_CTX *ctx, struct tls_peer *peer, SSL **out, BIO **rbio,
                BIO **wbio, struct werr *e)
{
    memset(peer, 0, sizeof *peer);
    SSL *ssl = SSL_new(ctx);
    if (ssl == NULL) {
        return ssl_err(e, WERR_NOMEM, "SSL_new");
    }
    BIO *r = BIO_new(BIO_s_mem());
    BIO *w = BIO_new(BIO_s_mem());
    if (r == NULL || w == NULL) {
        BIO_free(r);
        BIO_free(w);
        SSL_free(ssl);
        return ssl_err(e, WERR_NOMEM, "BIO_new");
    }
    /* An empty memory BIO reports "retry" rather than EOF, so SSL_read
     * returns SSL_ERROR_WANT_READ until more socket bytes are written in. */
    BIO_set_mem_eof_return(r, -1);
    BIO_set_mem_eof_return(w, -1);
    SSL_set_bio(ssl, r, w); /* ssl owns both */
    if (!SSL_set_ex_data(ssl, peer_idx, peer)) {
        SSL_free(ssl);
        return ssl_err(e, WERR_NOMEM, "SSL_set_ex_data");
    }
    SSL_set_accept_state(ssl);
    *out = ssl;
    *rbio = r;
    *wbio = w;
    return 0;
}

int tls_failure(SSL *ssl, int ret, const struct tls_peer *peer, struct werr *e)
{
    char lib[160] = "";
    int serr = SSL_get_error(ssl, ret);
    unsigned long err = ERR_get_error();
    if (err != 0) {
        ERR_error_string_n(err, lib, sizeof lib);
    }
    ERR_clear_error();
    if (peer != NULL && peer->alpn_refused) {
        return werr_set(e, WERR_TLS, "client ALPN list does not offer h2");
    }
    if (peer != NULL && peer->verify_err.code != 0) {
        return werr_set(e, WERR_TLS, "%s", peer->verify_err.msg);
    }
    if (lib[0] != '\0') {
        return werr_set(e, WERR_TLS, "%s", lib);
    }
    return werr_set(e, WERR_TLS, "SSL error %d", serr);
}

void tls_ctx_cert_info(SSL_CTX *ctx, char *serial, size_t serial_cap,
                       char *not_after, size_t not_after_cap)
{
    snprintf(serial, serial_cap, "?");
    snprintf(not_after, not_after_cap, "?");
    X509 *x = ctx != NULL ? SSL_CTX_get0_certificate(ctx) : NULL;
    if (x == NULL) {
        return;
    }
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
    char *hex = bn != NULL ? BN_bn2hex(bn) : NULL;
    if (hex != NULL) {
        snprintf(serial, serial_cap, "%s", hex);
    }
    OPENSSL_free(hex);
    BN_free(bn);
    BIO *b = BIO_new(BIO_s_mem());
    if (b != NULL && ASN1_TIME_print(b, X509_get0_notAfter(x)) == 1) {
        char buf[64];
        int n = BIO_read(b, buf, (int)sizeof buf - 1);
        if (n > 0) {
            buf[n] = '\0';
            snprintf(not_after, not_after_cap, "%s", buf);
        }
    }
    BIO_free(b);
    ERR_clear_error();
}
