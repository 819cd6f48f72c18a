/* devcerts.c - generate the dev-mode PKI (devcerts.h). */
#include "devcerts.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "../common/principal.h"

const char *const devcerts_roles[] = {"admin", "operator", "gateway", "auditor",
                                      "rollout"};
const size_t devcerts_n_roles = sizeof devcerts_roles / sizeof devcerts_roles[0];

/* Longest path we build; data dirs are operator-chosen, keep room. */
#define DEVCERTS_PATH_MAX 1024
/* Random serial bits (RFC 5280 §4.1.2.2 allows up to 20 octets; CA/B
 * guidance is >= 64 bits of entropy). */
#define SERIAL_BITS 127

int devcerts_path(char *buf, size_t cap, const char *dir, const char *file)
{
    int n = snprintf(buf, cap, "%s/%s", dir, file);
    if (n < 0 || (size_t)n >= cap) {
        return WERR_LIMIT;
    }
    return 0;
}

static int tls_err(struct werr *e, const char *what)
{
    char buf[160] = "no detail";
    unsigned long err = ERR_get_error();
    if (err != 0) {
        ERR_error_string_n(err, buf, sizeof buf);
    }
    ERR_clear_error();
    return werr_set(e, WERR_TLS, "devcerts: %s: %s", what, buf);
}

static int file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* Write a PEM object to path atomically: a temp file, fsync, rename, so a
 * crash never leaves a half-written key that a restart would "reuse". */
static int write_pem(const char *path, mode_t mode, EVP_PKEY *key, X509 *cert,
                     struct werr *e)
{
    char tmp[DEVCERTS_PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp) {
        return werr_set(e, WERR_LIMIT, "devcerts: path too long: %s", path);
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0) {
        return werr_set(e, WERR_IO, "devcerts: open %s: %s", tmp, strerror(errno));
    }
    FILE *f = fdopen(fd, "w");
    if (f == NULL) {
        close(fd);
        unlink(tmp);
        return werr_set(e, WERR_IO, "devcerts: fdopen %s: %s", tmp, strerror(errno));
    }
    int ok = key != NULL ? PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL)
                         : PEM_write_X509(f, cert);
    if (!ok) {
        fclose(f);
        unlink(tmp);
        return tls_err(e, "PEM write");
    }
    if (fflush(f) != 0 || fsync(fileno(f)) != 0) {
        int err = errno;
        fclose(f);
        unlink(tmp);
        return werr_set(e, WERR_IO, "devcerts: write %s: %s", tmp, strerror(err));
    }
    if (fclose(f) != 0) {
        unlink(tmp);
        return werr_set(e, WERR_IO, "devcerts: close %s: %s", tmp, strerror(errno));
    }
    if (rename(tmp, path) != 0) {
        int err = errno;
        unlink(tmp);
        return werr_set(e, WERR_IO, "devcerts: rename %s: %s", path, strerror(err));
    }
    return 0;
}

static int add_ext(X509 *x, X509V3_CTX *ctx, int nid, const char *value,
                   struct werr *e)
{
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, ctx, nid, value);
    if (ext == NULL) {
        return tls_err(e, value);
    }
    int ok = X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    return ok ? 0 : tls_err(e, "X509_add_ext");
}

/* What kind of certificate to issue. */
struct leaf_spec {
    const char *cn;
    const char *san;   /* subjectAltName value, or NULL for the CA */
    const char *eku;   /* extendedKeyUsage, or NULL for the CA */
};

/* Issue a certificate for key, signed by (ca, ca_key); ca == NULL makes it
 * self-signed (the CA itself). */
static int issue(const struct leaf_spec *spec, EVP_PKEY *key, X509 *ca,
                 EVP_PKEY *ca_key, X509 **out, struct werr *e)
{
    int rc;
    X509 *x = X509_new();
    BIGNUM *serial = BN_new();
    if (x == NULL || serial == NULL) {
        rc = tls_err(e, "X509_new");
        goto err_free;
    }
    if (!X509_set_version(x, X509_VERSION_3) ||
        !BN_rand(serial, SERIAL_BITS, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) ||
        !BN_to_ASN1_INTEGER(serial, X509_get_serialNumber(x))) {
        rc = tls_err(e, "serial");
        goto err_free;
    }
    long days = ca == NULL ? DEVCERTS_CA_DAYS : DEVCERTS_LEAF_DAYS;
    if (!X509_gmtime_adj(X509_getm_notBefore(x), -DEVCERTS_BACKDATE_SECS) ||
        !X509_time_adj_ex(X509_getm_notAfter(x), (int)days, 0, NULL)) {
        rc = tls_err(e, "validity");
        goto err_free;
    }
    X509_NAME *name = X509_get_subject_name(x);
    if (!X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC,
                                    (const unsigned char *)"warden dev", -1, -1, 0) ||
        !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                    (const unsigned char *)spec->cn, -1, -1, 0)) {
        rc = tls_err(e, "subject");
        goto err_free;
    }
    if (!X509_set_issuer_name(x, ca != NULL ? X509_get_subject_name(ca) : name) ||
        !X509_set_pubkey(x, key)) {
        rc = tls_err(e, "issuer");
        goto err_free;
    }
    X509V3_CTX v3;
    X509V3_set_ctx(&v3, ca != NULL ? ca : x, x, NULL, NULL, 0);
    if (ca == NULL) {
        /* pathlen:0 - the dev CA signs leaves only. */
        if ((rc = add_ext(x, &v3, NID_basic_constraints, "critical,CA:TRUE,pathlen:0", e)) ||
            (rc = add_ext(x, &v3, NID_key_usage, "critical,keyCertSign,cRLSign", e)) ||
            (rc = add_ext(x, &v3, NID_subject_key_identifier, "hash", e))) {
            goto err_free;
        }
    } else {
        if ((rc = add_ext(x, &v3, NID_basic_constraints, "critical,CA:FALSE", e)) ||
            (rc = add_ext(x, &v3, NID_key_usage, "critical,digitalSignature", e)) ||
            (rc = add_ext(x, &v3, NID_ext_key_usage, spec->eku, e)) ||
            (rc = add_ext(x, &v3, NID_subject_alt_name, spec->san, e)) ||
            (rc = add_ext(x, &v3, NID_subject_key_identifier, "hash", e)) ||
            (rc = add_ext(x, &v3, NID_authority_key_identifier, "keyid:always", e))) {
            goto err_free;
        }
    }
    if (X509_sign(x, ca != NULL ? ca_key : key, EVP_sha256()) <= 0) {
        rc = tls_err(e, "X509_sign");
        goto err_free;
    }
    BN_free(serial);
    *out = x;
    return 0;

err_free:
    BN_free(serial);
    X509_free(x);
    return rc;
}

static int load_pair(const char *cert_path, const char *key_path, X509 **cert,
                     EVP_PKEY **key, struct werr *e)
{
    FILE *f = fopen(cert_path, "r");
    if (f == NULL) {
        return werr_set(e, WERR_IO, "devcerts: open %s: %s", cert_path, strerror(errno));
    }
    *cert = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    if (*cert == NULL) {
        return tls_err(e, cert_path);
    }
    f = fopen(key_path, "r");
    if (f == NULL) {
        X509_free(*cert);
        return werr_set(e, WERR_IO, "devcerts: open %s: %s", key_path, strerror(errno));
    }
    *key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    if (*key == NULL) {
        X509_free(*cert);
        return tls_err(e, key_path);
    }
    return 0;
}

/* Generate key + certificate and write "<base>-key.pem" then "<base>.pem".
 * The key goes first: a certificate on disk implies its key is too. */
static int make_pair(const char *dir, const char *base, const struct leaf_spec *spec,
                     X509 *ca, EVP_PKEY *ca_key, X509 **cert_out,
                     EVP_PKEY **key_out, struct werr *e)
{
    char cpath[DEVCERTS_PATH_MAX], kpath[DEVCERTS_PATH_MAX], file[64];
    snprintf(file, sizeof file, "%s.pem", base);
    if (devcerts_path(cpath, sizeof cpath, dir, file) != 0) {
        return werr_set(e, WERR_LIMIT, "devcerts: path too long: %s", dir);
    }
    snprintf(file, sizeof file, "%s-key.pem", base);
    if (devcerts_path(kpath, sizeof kpath, dir, file) != 0) {
        return werr_set(e, WERR_LIMIT, "devcerts: path too long: %s", dir);
    }
    EVP_PKEY *key = EVP_EC_gen("P-256");
    if (key == NULL) {
        return tls_err(e, "EC P-256 key");
    }
    X509 *cert = NULL;
    int rc = issue(spec, key, ca, ca_key, &cert, e);
    if (rc == 0) {
        rc = write_pem(kpath, 0600, key, NULL, e);
    }
    if (rc == 0) {
        rc = write_pem(cpath, 0644, NULL, cert, e);
    }
    if (rc != 0 || cert_out == NULL) {
        X509_free(cert);
        EVP_PKEY_free(key);
    } else {
        *cert_out = cert;
        *key_out = key;
    }
    return rc;
}

static int pair_exists(const char *dir, const char *base)
{
    char path[DEVCERTS_PATH_MAX], file[64];
    snprintf(file, sizeof file, "%s.pem", base);
    if (devcerts_path(path, sizeof path, dir, file) != 0 || !file_exists(path)) {
        return 0;
    }
    snprintf(file, sizeof file, "%s-key.pem", base);
    return devcerts_path(path, sizeof path, dir, file) == 0 && file_exists(path);
}

/* Load the CA in dir, or create it. *fresh is set when it was created (so
 * every leaf must be issued again: old ones would not chain to it). */
static int ensure_ca(const char *dir, const char *cn, X509 **ca, EVP_PKEY **ca_key,
                     int *fresh, int *n, struct werr *e)
{
    *fresh = 0;
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        return werr_set(e, WERR_IO, "devcerts: mkdir %s: %s", dir, strerror(errno));
    }
    if (pair_exists(dir, "ca")) {
        char cpath[DEVCERTS_PATH_MAX], kpath[DEVCERTS_PATH_MAX];
        if (devcerts_path(cpath, sizeof cpath, dir, "ca.pem") != 0 ||
            devcerts_path(kpath, sizeof kpath, dir, "ca-key.pem") != 0) {
            return werr_set(e, WERR_LIMIT, "devcerts: path too long: %s", dir);
        }
        return load_pair(cpath, kpath, ca, ca_key, e);
    }
    const struct leaf_spec spec = {.cn = cn};
    int rc = make_pair(dir, "ca", &spec, NULL, NULL, ca, ca_key, e);
    if (rc != 0) {
        return rc;
    }
    *fresh = 1;
    *n += 2;
    return 0;
}

/* Issue base.pem/base-key.pem unless both exist and the CA is not new. */
static int ensure_leaf(const char *dir, const char *base, const struct leaf_spec *spec,
                       X509 *ca, EVP_PKEY *ca_key, int fresh_ca, int *n,
                       struct werr *e)
{
    if (!fresh_ca && pair_exists(dir, base)) {
        return 0;
    }
    int rc = make_pair(dir, base, spec, ca, ca_key, NULL, NULL, e);
    if (rc == 0) {
        *n += 2;
    }
    return rc;
}

/* <role>.pem for every client role, SAN URI warden://role/<role>/<prefix><role>. */
static int ensure_roles(const char *dir, const char *prefix, X509 *ca,
                        EVP_PKEY *ca_key, int fresh_ca, int *n, struct werr *e)
{
    for (size_t i = 0; i < devcerts_n_roles; i++) {
        const char *role = devcerts_roles[i];
        char cn[64], san[128];
        snprintf(cn, sizeof cn, "%s%s", prefix, role);
        snprintf(san, sizeof san, "URI:" PRINCIPAL_URI_PREFIX "%s/%s%s", role,
                 prefix, role);
        const struct leaf_spec spec = {.cn = cn, .san = san, .eku = "clientAuth"};
        int rc = ensure_leaf(dir, role, &spec, ca, ca_key, fresh_ca, n, e);
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}

/* A node's certificate serves both its gRPC port (server) and Raft peer
 * traffic, where it is also the client side: SAN IP (+ DNS:localhost for
 * loopback) and the one SAN URI warden://role/peer/n<id> that the peer
 * transport binds to raft server id <id> (consensus/node.h). */
static int ensure_node(const char *dir, const char *base, unsigned id,
                       const char *ip, X509 *ca, EVP_PKEY *ca_key, int fresh_ca,
                       int *n, struct werr *e)
{
    char cn[64], san[192];
    snprintf(cn, sizeof cn, "wardend n%u", id);
    snprintf(san, sizeof san,
             "IP:%s,DNS:localhost,URI:" PRINCIPAL_URI_PREFIX "peer/n%u", ip, id);
    const struct leaf_spec spec = {.cn = cn, .san = san,
                                   .eku = "serverAuth,clientAuth"};
    return ensure_leaf(dir, base, &spec, ca, ca_key, fresh_ca, n, e);
}

int devcerts_ensure(const char *dir, int *generated, struct werr *e)
{
    int n = 0, fresh_ca = 0, rc;
    X509 *ca = NULL;
    EVP_PKEY *ca_key = NULL;
    if (generated != NULL) {
        *generated = 0;
    }
    if ((rc = ensure_ca(dir, "warden dev CA", &ca, &ca_key, &fresh_ca, &n, e)) != 0) {
        return rc;
    }
    const struct leaf_spec server = {
        .cn = "wardend dev server",
        .san = "IP:127.0.0.1,DNS:localhost",
        .eku = "serverAuth",
    };
    if ((rc = ensure_leaf(dir, "server", &server, ca, ca_key, fresh_ca, &n, e)) != 0 ||
        (rc = ensure_roles(dir, "dev-", ca, ca_key, fresh_ca, &n, e)) != 0 ||
        (rc = ensure_node(dir, DEVCERTS_DEV_PEER, DEVCERTS_DEV_NODE_ID, "127.0.0.1",
                          ca, ca_key, fresh_ca, &n, e)) != 0) {
        goto out_free_ca;
    }
    if (generated != NULL) {
        *generated = n;
    }

out_free_ca:
    X509_free(ca);
    EVP_PKEY_free(ca_key);
    return rc;
}

int devcerts_cluster(const char *dir, const struct devcerts_node *nodes,
                     size_t n_nodes, int *generated, struct werr *e)
{
    int n = 0, fresh_ca = 0, rc;
    X509 *ca = NULL;
    EVP_PKEY *ca_key = NULL;
    if (generated != NULL) {
        *generated = 0;
    }
    if ((rc = ensure_ca(dir, "warden cluster CA", &ca, &ca_key, &fresh_ca, &n, e)) != 0) {
        return rc;
    }
    if ((rc = ensure_roles(dir, "", ca, ca_key, fresh_ca, &n, e)) != 0) {
        goto out_free_ca;
    }
    for (size_t i = 0; i < n_nodes; i++) {
        char base[32];
        snprintf(base, sizeof base, "node-%u", nodes[i].id);
        if ((rc = ensure_node(dir, base, nodes[i].id, nodes[i].ip, ca, ca_key,
                              fresh_ca, &n, e)) != 0) {
            goto out_free_ca;
        }
    }
    if (generated != NULL) {
        *generated = n;
    }

out_free_ca:
    X509_free(ca);
    EVP_PKEY_free(ca_key);
    return rc;
}
