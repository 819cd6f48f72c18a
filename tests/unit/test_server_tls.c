/* Tests for server/devcerts.c and server/tls.c: the dev PKI chains and names
 * the right principals, and the TLS policy (TLS 1.3 only, client certificate
 * required and verified, one warden:// identity, ALPN h2) holds on an
 * in-memory client/server pair, with no sockets. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "server/devcerts.h"
#include "server/tls.h"
#include "unit.h"

static char dir_a[64]; /* dev PKI the server trusts */
static char dir_b[64]; /* an unrelated dev PKI */

static void path(char *buf, size_t cap, const char *dir, const char *file)
{
    devcerts_path(buf, cap, dir, file);
}

static X509 *load_cert(const char *dir, const char *file)
{
    char p[256];
    path(p, sizeof p, dir, file);
    FILE *f = fopen(p, "r");
    if (f == NULL) {
        return NULL;
    }
    X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    return x;
}

static EVP_PKEY *load_key(const char *dir, const char *file)
{
    char p[256];
    path(p, sizeof p, dir, file);
    FILE *f = fopen(p, "r");
    if (f == NULL) {
        return NULL;
    }
    EVP_PKEY *k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    return k;
}

/* X509_verify_cert of leaf against dir's ca.pem for a purpose. Returns the
 * X509_V_* result. */
static int verify_chain(const char *dir, X509 *leaf, int purpose)
{
    X509 *ca = load_cert(dir, "ca.pem");
    X509_STORE *st = X509_STORE_new();
    X509_STORE_CTX *xs = X509_STORE_CTX_new();
    X509_STORE_add_cert(st, ca);
    X509_STORE_CTX_init(xs, st, leaf, NULL);
    X509_STORE_CTX_set_purpose(xs, purpose);
    int ok = X509_verify_cert(xs);
    int err = ok == 1 ? X509_V_OK : X509_STORE_CTX_get_error(xs);
    X509_STORE_CTX_free(xs);
    X509_STORE_free(st);
    X509_free(ca);
    return err;
}

static long file_size(const char *dir, const char *file)
{
    char p[256];
    struct stat st;
    path(p, sizeof p, dir, file);
    return stat(p, &st) == 0 ? (long)st.st_size : -1;
}

TEST(devcerts_generate)
{
    int n = -1;
    struct werr e;
    werr_clear(&e);
    CHECK_EQ_INT(devcerts_ensure(dir_a, &n, &e), 0);
    /* ca + server + peer-n1 + 5 roles, a cert and a key each. */
    CHECK_EQ_INT(n, 2 * (3 + (int)devcerts_n_roles));
    char p[256];
    struct stat st;
    path(p, sizeof p, dir_a, "ca-key.pem");
    CHECK_EQ_INT(stat(p, &st), 0);
    CHECK_EQ_INT(st.st_mode & 0777, 0600);
    path(p, sizeof p, dir_a, "admin-key.pem");
    CHECK_EQ_INT(stat(p, &st), 0);
    CHECK_EQ_INT(st.st_mode & 0777, 0600);
    CHECK_EQ_INT(stat(dir_a, &st), 0);
    CHECK_EQ_INT(st.st_mode & 0777, 0700);
}

TEST(devcerts_chain_and_principals)
{
    static const unsigned bits[] = {WROLE_ADMIN, WROLE_OPERATOR, WROLE_GATEWAY,
                                    WROLE_AUDITOR, WROLE_ROLLOUT};
    for (size_t i = 0; i < devcerts_n_roles; i++) {
        char file[64], want[64];
        snprintf(file, sizeof file, "%s.pem", devcerts_roles[i]);
        X509 *leaf = load_cert(dir_a, file);
        CHECK(leaf != NULL);
        int v = verify_chain(dir_a, leaf, X509_PURPOSE_SSL_CLIENT);
        struct principal p;
        struct werr e;
        int rc = tls_cert_principal(leaf, &p, &e);
        EVP_PKEY *pub = X509_get0_pubkey(leaf);
        int is_p256 = EVP_PKEY_is_a(pub, "EC");
        int sig_nid = X509_get_signature_nid(leaf);
        X509_free(leaf);
        CHECK_EQ_INT(v, X509_V_OK);
        CHECK_EQ_INT(rc, 0);
        CHECK_EQ_INT(p.role, bits[i]);
        snprintf(want, sizeof want, "dev-%s", devcerts_roles[i]);
        CHECK_EQ_STR(p.name, want);
        CHECK(is_p256);
        CHECK_EQ_INT(sig_nid, NID_ecdsa_with_SHA256);
        /* And the key on disk is the one in the certificate. */
        snprintf(file, sizeof file, "%s-key.pem", devcerts_roles[i]);
        EVP_PKEY *key = load_key(dir_a, file);
        CHECK(key != NULL);
        leaf = NULL;
        snprintf(file, sizeof file, "%s.pem", devcerts_roles[i]);
        leaf = load_cert(dir_a, file);
        int match = X509_check_private_key(leaf, key);
        X509_free(leaf);
        EVP_PKEY_free(key);
        CHECK_EQ_INT(match, 1);
    }
    /* The server certificate is a TLS server cert for loopback. */
    X509 *srv = load_cert(dir_a, "server.pem");
    CHECK(srv != NULL);
    int v = verify_chain(dir_a, srv, X509_PURPOSE_SSL_SERVER);
    int host = X509_check_host(srv, "localhost", 0, 0, NULL);
    int ip = X509_check_ip_asc(srv, "127.0.0.1", 0);
    struct principal p;
    struct werr e;
    int rc = tls_cert_principal(srv, &p, &e); /* no warden:// URI */
    X509_free(srv);
    CHECK_EQ_INT(v, X509_V_OK);
    CHECK_EQ_INT(host, 1);
    CHECK_EQ_INT(ip, 1);
    CHECK_EQ_INT(rc, WERR_PERM);
    /* Chains to A's CA only. */
    X509 *foreign = load_cert(dir_b, "admin.pem");
    CHECK(foreign != NULL);
    v = verify_chain(dir_a, foreign, X509_PURPOSE_SSL_CLIENT);
    X509_free(foreign);
    CHECK(v != X509_V_OK);
}

TEST(devcerts_reuse)
{
    int n = -1;
    struct werr e;
    long ca_size = file_size(dir_a, "ca.pem");
    X509 *before = load_cert(dir_a, "ca.pem");
    CHECK(before != NULL);
    CHECK_EQ_INT(devcerts_ensure(dir_a, &n, &e), 0);
    X509 *after = load_cert(dir_a, "ca.pem");
    int same = after != NULL && X509_cmp(before, after) == 0;
    X509_free(after);
    CHECK_EQ_INT(n, 0);
    CHECK(same);
    CHECK_EQ_INT(file_size(dir_a, "ca.pem"), ca_size);

    /* A missing leaf is re-issued under the existing CA. */
    char p[256];
    path(p, sizeof p, dir_a, "operator.pem");
    CHECK_EQ_INT(unlink(p), 0);
    CHECK_EQ_INT(devcerts_ensure(dir_a, &n, &e), 0);
    CHECK_EQ_INT(n, 2);
    after = load_cert(dir_a, "ca.pem");
    same = after != NULL && X509_cmp(before, after) == 0;
    X509_free(after);
    X509_free(before);
    CHECK(same);
    X509 *op = load_cert(dir_a, "operator.pem");
    CHECK(op != NULL);
    int v = verify_chain(dir_a, op, X509_PURPOSE_SSL_CLIENT);
    X509_free(op);
    CHECK_EQ_INT(v, X509_V_OK);
}

/* ---- an in-memory TLS pair --------------------------------------------- */

struct pair {
    SSL *srv, *cli;
    BIO *srv_in, *srv_out; /* server's memory BIOs (tls_ssl_new) */
    BIO *cli_in, *cli_out;
    struct tls_peer peer;
    int srv_rc, cli_rc;    /* last SSL_do_handshake results */
};

static void shuttle(BIO *from, BIO *to)
{
    char buf[4096];
    int n;
    while ((n = BIO_read(from, buf, sizeof buf)) > 0) {
        BIO_write(to, buf, n);
    }
}

/* Run both handshakes to completion or failure. Returns 1 when the server
 * accepted the client, 0 when it refused. err gets the server's reason. */
static int handshake(SSL_CTX *sctx, SSL_CTX *cctx, struct pair *p, struct werr *err)
{
    memset(p, 0, sizeof *p);
    werr_clear(err);
    if (tls_ssl_new(sctx, &p->peer, &p->srv, &p->srv_in, &p->srv_out, err) != 0) {
        return -1;
    }
    p->cli = SSL_new(cctx);
    p->cli_in = BIO_new(BIO_s_mem());
    p->cli_out = BIO_new(BIO_s_mem());
    BIO_set_mem_eof_return(p->cli_in, -1);
    SSL_set_bio(p->cli, p->cli_in, p->cli_out);
    SSL_set_connect_state(p->cli);
    SSL_set_tlsext_host_name(p->cli, "localhost");
    int srv_done = 0, srv_failed = 0;
    /* A TLS 1.3 handshake is 1.5 round trips; 16 rounds is plenty and
     * bounds the loop if something stalls. */
    for (int round = 0; round < 16 && !srv_done && !srv_failed; round++) {
        p->cli_rc = SSL_do_handshake(p->cli);
        shuttle(p->cli_out, p->srv_in);
        p->srv_rc = SSL_do_handshake(p->srv);
        if (p->srv_rc == 1) {
            srv_done = 1;
        } else if (SSL_get_error(p->srv, p->srv_rc) != SSL_ERROR_WANT_READ) {
            tls_failure(p->srv, p->srv_rc, &p->peer, err);
            srv_failed = 1;
        }
        shuttle(p->srv_out, p->cli_in);
    }
    ERR_clear_error();
    return srv_done;
}

static void pair_free(struct pair *p)
{
    SSL_free(p->srv);
    SSL_free(p->cli);
}

/* Let the client read what the server sent last (e.g. an alert). Returns
 * SSL_read's result. */
static int client_read(struct pair *p)
{
    char buf[64];
    SSL_do_handshake(p->cli);
    int r = SSL_read(p->cli, buf, sizeof buf);
    ERR_clear_error();
    return r;
}

static SSL_CTX *client_ctx(const char *dir, const char *role, int max_version,
                           const unsigned char *alpn, unsigned alpn_len)
{
    SSL_CTX *c = SSL_CTX_new(TLS_client_method());
    char p[256], k[256];
    path(p, sizeof p, dir_a, "ca.pem");
    SSL_CTX_load_verify_locations(c, p, NULL);
    SSL_CTX_set_verify(c, SSL_VERIFY_PEER, NULL);
    if (max_version != 0) {
        SSL_CTX_set_max_proto_version(c, max_version);
    }
    if (role != NULL) {
        char f[64];
        snprintf(f, sizeof f, "%s.pem", role);
        path(p, sizeof p, dir, f);
        snprintf(f, sizeof f, "%s-key.pem", role);
        path(k, sizeof k, dir, f);
        SSL_CTX_use_certificate_file(c, p, SSL_FILETYPE_PEM);
        SSL_CTX_use_PrivateKey_file(c, k, SSL_FILETYPE_PEM);
    }
    if (alpn != NULL) {
        SSL_CTX_set_alpn_protos(c, alpn, alpn_len);
    }
    return c;
}

static SSL_CTX *server_ctx(void)
{
    char cert[256], key[256], ca[256];
    path(cert, sizeof cert, dir_a, "server.pem");
    path(key, sizeof key, dir_a, "server-key.pem");
    path(ca, sizeof ca, dir_a, "ca.pem");
    struct tls_config cfg = {.cert_file = cert, .key_file = key, .ca_file = ca};
    SSL_CTX *s = NULL;
    struct werr e;
    if (tls_server_ctx_new(&s, &cfg, &e) != 0) {
        fprintf(stderr, "tls_server_ctx_new: %s\n", e.msg);
        return NULL;
    }
    return s;
}

static const unsigned char alpn_h2[] = {2, 'h', '2'};
static const unsigned char alpn_h2_http11[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1',
                                               2,  'h', '2'};
static const unsigned char alpn_http11[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};

TEST(tls_mtls_ok)
{
    SSL_CTX *s = server_ctx();
    CHECK(s != NULL);
    SSL_CTX *c = client_ctx(dir_a, "admin", 0, alpn_h2_http11, sizeof alpn_h2_http11);
    struct pair p;
    struct werr e;
    int ok = handshake(s, c, &p, &e);
    const unsigned char *sel = NULL;
    unsigned sel_len = 0;
    SSL_get0_alpn_selected(p.srv, &sel, &sel_len);
    int alpn_is_h2 = sel_len == 2 && memcmp(sel, "h2", 2) == 0;
    int version = SSL_version(p.srv);
    struct principal pr = p.peer.principal;
    int have = p.peer.have_principal;
    /* Application data flows both ways. */
    int w = SSL_write(p.cli, "PRI", 3);
    shuttle(p.cli_out, p.srv_in);
    char buf[8] = {0};
    int r = SSL_read(p.srv, buf, sizeof buf);
    pair_free(&p);
    SSL_CTX_free(c);
    SSL_CTX_free(s);
    if (!ok) {
        fprintf(stderr, "handshake refused: %s\n", e.msg);
    }
    CHECK_EQ_INT(ok, 1);
    CHECK_EQ_INT(version, TLS1_3_VERSION);
    CHECK(alpn_is_h2);
    CHECK(have);
    CHECK_EQ_INT(pr.role, WROLE_ADMIN);
    CHECK_EQ_STR(pr.name, "dev-admin");
    CHECK_EQ_INT(w, 3);
    CHECK_EQ_INT(r, 3);
    CHECK(memcmp(buf, "PRI", 3) == 0);
}

TEST(tls_no_alpn_is_prior_knowledge)
{
    SSL_CTX *s = server_ctx();
    CHECK(s != NULL);
    SSL_CTX *c = client_ctx(dir_a, "gateway", 0, NULL, 0);
    struct pair p;
    struct werr e;
    int ok = handshake(s, c, &p, &e);
    const unsigned char *sel = NULL;
    unsigned sel_len = 99;
    SSL_get0_alpn_selected(p.srv, &sel, &sel_len);
    unsigned role = p.peer.principal.role;
    pair_free(&p);
    SSL_CTX_free(c);
    SSL_CTX_free(s);
    CHECK_EQ_INT(ok, 1);
    CHECK_EQ_INT(sel_len, 0);
    CHECK_EQ_INT(role, WROLE_GATEWAY);
}

TEST(tls_alpn_without_h2_refused)
{
    SSL_CTX *s = server_ctx();
    CHECK(s != NULL);
    SSL_CTX *c = client_ctx(dir_a, "admin", 0, alpn_http11, sizeof alpn_http11);
    struct pair p;
    struct werr e;
    int ok = handshake(s, c, &p, &e);
    int cli = p.cli_rc;
    pair_free(&p);
    SSL_CTX_free(c);
    SSL_CTX_free(s);
    CHECK_EQ_INT(ok, 0);
    CHECK(cli != 1); /* the client sees the no_application_protocol alert */
    CHECK(strstr(e.msg, "ALPN") != NULL);
}

TEST(tls_client_without_cert_refused)
{
    SSL_CTX *s = server_ctx();
    CHECK(s != NULL);
    SSL_CTX *c = client_ctx(dir_a, NULL, 0, alpn_h2, sizeof alpn_h2);
    struct pair p;
    struct werr e;
    int ok = handshake(s, c, &p, &e);
    int r = client_read(&p); /* TLS 1.3: the client learns at its next read */
    int have = p.peer.have_principal;
    pair_free(&p);
    SSL_CTX_free(c);
    SSL_CTX_free(s);
    fprintf(stderr, "  reason: %s\n", e.msg);
    CHECK_EQ_INT(ok, 0);
    CHECK(r <= 0);
    CHECK(!have);
    CHECK(strstr(e.msg, "certificate") != NULL);
}

TEST(tls_untrusted_cert_refused)
{
    SSL_CTX *s = server_ctx();
    CHECK(s != NULL);
    SSL_CTX *c = client_ctx(dir_b, "admin", 0, alpn_h2, sizeof alpn_h2);
    struct pair p;
    struct werr e;
    int ok = handshake(s, c, &p, &e);
    int r = client_read(&p);
    pair_free(&p);
    SSL_CTX_free(c);
    SSL_CTX_free(s);
    fprintf(stderr, "  reason: %s\n", e.msg);
    CHECK_EQ_INT(ok, 0);
    CHECK(r <= 0);
    CHECK(strstr(e.msg, "depth") != NULL);
}

TEST(tls_server_cert_as_client_refused)
{
    /* Signed by the right CA, but a serverAuth certificate with no warden://
     * identity: not a client. */
    SSL_CTX *s = server_ctx();
    CHECK(s != NULL);
    SSL_CTX *c = client_ctx(dir_a, "server", 0, alpn_h2, sizeof alpn_h2);
    struct pair p;
    struct werr e;
    int ok = handshake(s, c, &p, &e);
    pair_free(&p);
    SSL_CTX_free(c);
    SSL_CTX_free(s);
    fprintf(stderr, "  reason: %s\n", e.msg);
    CHECK_EQ_INT(ok, 0);
}

/* Issue a clientAuth leaf under dir_a's CA with the given SAN, written to
 * dir_a/<base>.pem and <base>-key.pem. */
static int issue_custom(const char *base, const char *san)
{
    X509 *ca = load_cert(dir_a, "ca.pem");
    EVP_PKEY *ca_key = load_key(dir_a, "ca-key.pem");
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    X509_set_version(x, X509_VERSION_3);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 4242);
    X509_gmtime_adj(X509_getm_notBefore(x), -60);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                               (const unsigned char *)base, -1, -1, 0);
    X509_set_issuer_name(x, X509_get_subject_name(ca));
    X509_set_pubkey(x, key);
    X509V3_CTX v3;
    X509V3_set_ctx(&v3, ca, x, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name, san);
    X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    ext = X509V3_EXT_conf_nid(NULL, &v3, NID_ext_key_usage, "clientAuth");
    X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    int ok = X509_sign(x, ca_key, EVP_sha256()) > 0;
    char p[256], f[64];
    snprintf(f, sizeof f, "%s.pem", base);
    path(p, sizeof p, dir_a, f);
    FILE *fp = fopen(p, "w");
    ok = ok && fp != NULL && PEM_write_X509(fp, x);
    if (fp != NULL) {
        fclose(fp);
    }
    snprintf(f, sizeof f, "%s-key.pem", base);
    path(p, sizeof p, dir_a, f);
    fp = fopen(p, "w");
    ok = ok && fp != NULL && PEM_write_PrivateKey(fp, key, NULL, NULL, 0, NULL, NULL);
    if (fp != NULL) {
        fclose(fp);
    }
    X509_free(x);
    X509_free(ca);
    EVP_PKEY_free(key);
    EVP_PKEY_free(ca_key);
    return ok;
}

TEST(tls_identity_rules)
{
    static const struct {
        const char *base, *san;
        int accept;
        const char *reason;
    } cases[] = {
        {"c-good", "URI:warden://role/auditor/aud-1,DNS:example.org", 1, NULL},
        {"c-spiffe", "URI:spiffe://x/y,URI:warden://role/operator/op", 1, NULL},
        {"c-none", "DNS:client.example.org", 0, "no warden://"},
        {"c-two", "URI:warden://role/admin/a,URI:warden://role/auditor/b", 0,
         "more than one"},
        {"c-role", "URI:warden://role/root/a", 0, "unknown role"},
        {"c-name", "URI:warden://role/admin/a%20b", 0, "not in"},
    };
    SSL_CTX *s = server_ctx();
    CHECK(s != NULL);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        CHECK(issue_custom(cases[i].base, cases[i].san));
        SSL_CTX *c = client_ctx(dir_a, cases[i].base, 0, alpn_h2, sizeof alpn_h2);
        struct pair p;
        struct werr e;
        int ok = handshake(s, c, &p, &e);
        pair_free(&p);
        SSL_CTX_free(c);
        if (ok != cases[i].accept) {
            fprintf(stderr, "  case %s: ok=%d reason=%s\n", cases[i].base, ok, e.msg);
        }
        CHECK_EQ_INT(ok, cases[i].accept);
        if (cases[i].reason != NULL) {
            CHECK(strstr(e.msg, cases[i].reason) != NULL);
        }
    }
    SSL_CTX_free(s);
}

TEST(tls12_refused)
{
    SSL_CTX *s = server_ctx();
    CHECK(s != NULL);
    SSL_CTX *c = client_ctx(dir_a, "admin", TLS1_2_VERSION, alpn_h2, sizeof alpn_h2);
    struct pair p;
    struct werr e;
    int ok = handshake(s, c, &p, &e);
    int cli = p.cli_rc;
    pair_free(&p);
    SSL_CTX_free(c);
    SSL_CTX_free(s);
    fprintf(stderr, "  reason: %s\n", e.msg);
    CHECK_EQ_INT(ok, 0);
    CHECK(cli != 1);
    CHECK(strstr(e.msg, "version") != NULL || strstr(e.msg, "protocol") != NULL);
}

TEST(tls_config_errors)
{
    char cert[256], key[256], ca[256], other_key[256];
    path(cert, sizeof cert, dir_a, "server.pem");
    path(key, sizeof key, dir_a, "server-key.pem");
    path(ca, sizeof ca, dir_a, "ca.pem");
    path(other_key, sizeof other_key, dir_a, "admin-key.pem");
    SSL_CTX *s = NULL;
    struct werr e;
    struct tls_config none = {0};
    CHECK_EQ_INT(tls_server_ctx_new(&s, &none, &e), WERR_CONFIG);
    struct tls_config missing = {.cert_file = "/nonexistent/x.pem", .key_file = key,
                                 .ca_file = ca};
    CHECK_EQ_INT(tls_server_ctx_new(&s, &missing, &e), WERR_CONFIG);
    CHECK(strstr(e.msg, "/nonexistent/x.pem") != NULL);
    struct tls_config mismatch = {.cert_file = cert, .key_file = other_key, .ca_file = ca};
    CHECK_EQ_INT(tls_server_ctx_new(&s, &mismatch, &e), WERR_CONFIG);
    struct tls_config no_ca = {.cert_file = cert, .key_file = key,
                               .ca_file = "/nonexistent/ca.pem"};
    CHECK_EQ_INT(tls_server_ctx_new(&s, &no_ca, &e), WERR_CONFIG);
}

/* gen-certs: node certs carry SAN URI peer/n<id>, chain to the CA, serve
 * both TLS directions; a second run reuses everything. */
TEST(devcerts_cluster_nodes)
{
    char dir[96];
    snprintf(dir, sizeof dir, "%s-cluster", dir_a);
    const struct devcerts_node nodes[] = {{1, "127.0.0.11"}, {2, "127.0.0.12"}};
    int n = -1;
    struct werr e;
    werr_clear(&e);
    CHECK_EQ_INT(devcerts_cluster(dir, nodes, 2, &n, &e), 0);
    CHECK_EQ_INT(n, 2 * (1 + 2 + (int)devcerts_n_roles));
    X509 *x = load_cert(dir, "node-2.pem");
    CHECK(x != NULL);
    struct principal pr;
    int prc = tls_cert_principal(x, &pr, &e);
    int sv = verify_chain(dir, x, X509_PURPOSE_SSL_SERVER);
    int cl = verify_chain(dir, x, X509_PURPOSE_SSL_CLIENT);
    int ipok = X509_check_ip_asc(x, "127.0.0.12", 0);
    X509_free(x);
    CHECK_EQ_INT(prc, 0);
    CHECK_EQ_INT(pr.role, WROLE_PEER);
    CHECK_EQ_STR(pr.name, "n2");
    CHECK_EQ_INT(sv, X509_V_OK);
    CHECK_EQ_INT(cl, X509_V_OK);
    CHECK_EQ_INT(ipok, 1);
    x = load_cert(dir, "operator.pem");
    CHECK(x != NULL);
    prc = tls_cert_principal(x, &pr, &e);
    X509_free(x);
    CHECK_EQ_INT(prc, 0);
    CHECK_EQ_INT(pr.role, WROLE_OPERATOR);
    CHECK_EQ_INT(devcerts_cluster(dir, nodes, 2, &n, &e), 0);
    CHECK_EQ_INT(n, 0);
}

static void rm_rf(const char *dir)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) {
        fprintf(stderr, "cleanup of %s failed\n", dir);
    }
}

int main(void)
{
    char a[] = "/tmp/warden-test-tls-XXXXXX";
    char b[] = "/tmp/warden-test-tls-XXXXXX";
    if (mkdtemp(a) == NULL || mkdtemp(b) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(dir_a, sizeof dir_a, "%s/dev-certs", a);
    snprintf(dir_b, sizeof dir_b, "%s/dev-certs", b);
    struct werr e;
    if (devcerts_ensure(dir_b, NULL, &e) != 0) {
        fprintf(stderr, "devcerts_ensure(%s): %s\n", dir_b, e.msg);
        return 1;
    }
    RUN(devcerts_generate);
    RUN(devcerts_chain_and_principals);
    RUN(devcerts_reuse);
    RUN(devcerts_cluster_nodes);
    RUN(tls_mtls_ok);
    RUN(tls_no_alpn_is_prior_knowledge);
    RUN(tls_alpn_without_h2_refused);
    RUN(tls_client_without_cert_refused);
    RUN(tls_untrusted_cert_refused);
    RUN(tls_server_cert_as_client_refused);
    RUN(tls_identity_rules);
    RUN(tls12_refused);
    RUN(tls_config_errors);
    rm_rf(a);
    rm_rf(b);
    return unit_done();
}
