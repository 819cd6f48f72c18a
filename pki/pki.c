/* pki.c - the production CA behind `wardenctl certs` (pki.h). */
#include "pki.h"

#include <arpa/inet.h>
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

/* ---- pure checks --------------------------------------------------------- */

int pki_node_name_parse(const char *name, unsigned long *id)
{
    if (name == NULL || name[0] != 'n' || name[1] < '1' || name[1] > '9') {
        return WERR_INVALID;
    }
    unsigned long long v = 0;
    size_t i = 1;
    for (; name[i] != '\0'; i++) {
        if (name[i] < '0' || name[i] > '9' || i > 10) {
            return WERR_INVALID;
        }
        v = v * 10 + (unsigned)(name[i] - '0');
    }
    /* raft server ids are uint32 and 0 means "none" (consensus/node.h). */
    if (v == 0 || v > 4294967295ull) {
        return WERR_INVALID;
    }
    if (id != NULL) {
        *id = (unsigned long)v;
    }
    return 0;
}

static int dns_check(const char *s)
{
    size_t n = strlen(s), label = 0;
    if (n == 0 || n > PKI_DNS_NAME_MAX || s[0] == '.' || s[n - 1] == '.') {
        return WERR_INVALID;
    }
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '.') {
            if (label == 0 || s[i - 1] == '-') {
                return WERR_INVALID;
            }
            label = 0;
            continue;
        }
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                 (c >= '0' && c <= '9') || (c == '-' && label > 0);
        if (!ok || ++label > PKI_DNS_LABEL_MAX) {
            return WERR_INVALID;
        }
    }
    return s[n - 1] == '-' ? WERR_INVALID : 0;
}

static int ip_check(const char *s)
{
    unsigned char buf[16];
    return (inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1)
               ? 0
               : WERR_INVALID;
}

int pki_leaf_check(const struct pki_leaf_spec *s, struct werr *e)
{
    unsigned role;
    if (s->role == NULL || principal_role_parse(s->role, &role) != 0) {
        return werr_set(e, WERR_INVALID,
                        "role \"%s\": want admin, operator, gateway, auditor, "
                        "rollout or peer", s->role ? s->role : "");
    }
    if (s->name == NULL) {
        return werr_set(e, WERR_INVALID, "a name is required");
    }
    /* The principal rules are the server's (common/principal.c): format the
     * URI and parse it back, so what we issue is what the server accepts. */
    char uri[128];
    struct principal p;
    int n = snprintf(uri, sizeof uri, PRINCIPAL_URI_PREFIX "%s/%s", s->role, s->name);
    if (n < 0 || (size_t)n >= sizeof uri ||
        principal_parse_uri(uri, (size_t)n, &p, NULL) != 0) {
        return werr_set(e, WERR_INVALID,
                        "name \"%s\": want 1..%d bytes of [A-Za-z0-9._-]", s->name,
                        PRINCIPAL_NAME_MAX);
    }
    if (s->n_ips > PKI_SAN_IPS_MAX || s->n_dns > PKI_SAN_DNS_MAX) {
        return werr_set(e, WERR_INVALID, "at most %d --ip and %d --dns",
                        PKI_SAN_IPS_MAX, PKI_SAN_DNS_MAX);
    }
    if (role == WROLE_PEER) {
        if (pki_node_name_parse(s->name, NULL) != 0) {
            return werr_set(e, WERR_INVALID,
                            "peer name \"%s\": want n<ID> with the node's raft "
                            "id (n1, n2, ...)", s->name);
        }
        if (s->n_ips == 0 && s->n_dns == 0) {
            return werr_set(e, WERR_INVALID,
                            "peer certificate: at least one --ip or --dns (the "
                            "address clients dial) is required");
        }
    } else if (s->n_ips > 0 || s->n_dns > 0) {
        return werr_set(e, WERR_INVALID,
                        "--ip and --dns apply to role peer only (a client "
                        "certificate names a principal, not an address)");
    }
    for (size_t i = 0; i < s->n_ips; i++) {
        if (ip_check(s->ips[i]) != 0) {
            return werr_set(e, WERR_INVALID, "--ip \"%s\": not an IPv4 or IPv6 literal",
                            s->ips[i]);
        }
    }
    for (size_t i = 0; i < s->n_dns; i++) {
        if (dns_check(s->dns[i]) != 0) {
            return werr_set(e, WERR_INVALID, "--dns \"%s\": not a DNS name", s->dns[i]);
        }
    }
    if (s->days > PKI_LEAF_DAYS_MAX) {
        return werr_set(e, WERR_INVALID, "--days %u: at most %u", s->days,
                        PKI_LEAF_DAYS_MAX);
    }
    return 0;
}

int pki_san_format(const struct pki_leaf_spec *s, char *buf, size_t cap,
                   struct werr *e)
{
    int rc = pki_leaf_check(s, e);
    if (rc != 0) {
        return rc;
    }
    size_t len = 0;
    buf[0] = '\0';
#define APPEND(...)                                                     \
    do {                                                                \
        int n_ = snprintf(buf + len, cap - len, __VA_ARGS__);           \
        if (n_ < 0 || (size_t)n_ >= cap - len) {                        \
            return werr_set(e, WERR_LIMIT, "subjectAltName too long");  \
        }                                                               \
        len += (size_t)n_;                                              \
    } while (0)
    for (size_t i = 0; i < s->n_ips; i++) {
        APPEND("IP:%s,", s->ips[i]);
    }
    for (size_t i = 0; i < s->n_dns; i++) {
        APPEND("DNS:%s,", s->dns[i]);
    }
    APPEND("URI:" PRINCIPAL_URI_PREFIX "%s/%s", s->role, s->name);
#undef APPEND
    return 0;
}

const char *pki_leaf_eku(const char *role)
{
    return strcmp(role, "peer") == 0 ? "serverAuth,clientAuth" : "clientAuth";
}

/* ---- OpenSSL and files ----------------------------------------------------- */

static int tls_err(struct werr *e, const char *what)
{
    char buf[160] = "no detail";
    unsigned long err = ERR_get_error();
    if (err != 0) {
        ERR_error_string_n(err, buf, sizeof buf);
    }
    ERR_clear_error();
    return werr_set(e, WERR_TLS, "%s: %s", what, buf);
}

static int join(char *buf, const char *a, const char *b, struct werr *e)
{
    int n = snprintf(buf, PKI_PATH_MAX, "%s%s", a, b);
    if (n < 0 || n >= PKI_PATH_MAX) {
        return werr_set(e, WERR_LIMIT, "path too long: %s%s", a, b);
    }
    return 0;
}

static int refuse_existing(const char *path, struct werr *e)
{
    struct stat st;
    if (lstat(path, &st) == 0) {
        return werr_set(e, WERR_EXISTS, "%s exists; refusing to overwrite it", path);
    }
    return 0;
}

/* Write one PEM object to path without ever replacing a file: temp file
 * (mode), fsync, link() into place (EEXIST if taken), unlink the temp. A
 * crash leaves at most a stray .tmp, never half a key under the real name. */
static int write_pem_new(const char *path, mode_t mode, EVP_PKEY *key, X509 *cert,
                         struct werr *e)
{
    char tmp[PKI_PATH_MAX];
    int n = snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    if (n < 0 || (size_t)n >= sizeof tmp) {
        return werr_set(e, WERR_LIMIT, "path too long: %s", path);
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0) {
        return werr_set(e, WERR_IO, "open %s: %s", tmp, strerror(errno));
    }
    /* The umask may have narrowed mode; a key must be exactly 0600. */
    if (fchmod(fd, mode) != 0) {
        int err = errno;
        close(fd);
        unlink(tmp);
        return werr_set(e, WERR_IO, "chmod %s: %s", tmp, strerror(err));
    }
    FILE *f = fdopen(fd, "w");
    if (f == NULL) {
        int err = errno;
        close(fd);
        unlink(tmp);
        return werr_set(e, WERR_IO, "fdopen %s: %s", tmp, strerror(err));
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
        return werr_set(e, WERR_IO, "write %s: %s", tmp, strerror(err));
    }
    if (fclose(f) != 0) {
        int err = errno;
        unlink(tmp);
        return werr_set(e, WERR_IO, "close %s: %s", tmp, strerror(err));
    }
    if (link(tmp, path) != 0) {
        int err = errno;
        unlink(tmp);
        if (err == EEXIST) {
            return werr_set(e, WERR_EXISTS, "%s exists; refusing to overwrite it", path);
        }
        return werr_set(e, WERR_IO, "link %s: %s", path, strerror(err));
    }
    unlink(tmp);
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

/* The common part of CA and leaf: version, random serial, validity,
 * subject O=warden CN=cn, issuer, public key. */
static int cert_base(X509 *x, const char *cn, unsigned days, X509 *ca,
                     EVP_PKEY *key, struct werr *e)
{
    BIGNUM *serial = BN_new();
    if (serial == NULL) {
        return tls_err(e, "BN_new");
    }
    /* BN_RAND_TOP_ONE: exactly 128 bits, so every serial has one length. */
    int ok = X509_set_version(x, X509_VERSION_3) &&
             BN_rand(serial, PKI_SERIAL_BITS, BN_RAND_TOP_ONE, BN_RAND_BOTTOM_ANY) &&
             BN_to_ASN1_INTEGER(serial, X509_get_serialNumber(x)) != NULL;
    BN_free(serial);
    if (!ok) {
        return tls_err(e, "serial");
    }
    if (!X509_gmtime_adj(X509_getm_notBefore(x), -PKI_BACKDATE_SECS) ||
        !X509_time_adj_ex(X509_getm_notAfter(x), (int)days, 0, NULL)) {
        return tls_err(e, "validity");
    }
    X509_NAME *name = X509_get_subject_name(x);
    if (!X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8,
                                    (const unsigned char *)"warden", -1, -1, 0) ||
        !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                                    (const unsigned char *)cn, -1, -1, 0)) {
        return tls_err(e, "subject");
    }
    if (!X509_set_issuer_name(x, ca != NULL ? X509_get_subject_name(ca) : name) ||
        !X509_set_pubkey(x, key)) {
        return tls_err(e, "issuer");
    }
    return 0;
}

int pki_ca_init(const char *dir, const char *cn, unsigned days, struct werr *e)
{
    if (cn == NULL) {
        cn = PKI_CA_CN_DEFAULT;
    }
    if (days == 0) {
        days = PKI_CA_DAYS_DEFAULT;
    }
    size_t cn_len = strlen(cn);
    if (cn_len == 0 || cn_len > PKI_CN_MAX) {
        return werr_set(e, WERR_INVALID, "--cn: 1..%d bytes", PKI_CN_MAX);
    }
    for (size_t i = 0; i < cn_len; i++) {
        if ((unsigned char)cn[i] < 0x20 || cn[i] == 0x7f) {
            return werr_set(e, WERR_INVALID, "--cn: control characters are not allowed");
        }
    }
    if (days > PKI_CA_DAYS_MAX) {
        return werr_set(e, WERR_INVALID, "--days %u: at most %u for a CA", days,
                        PKI_CA_DAYS_MAX);
    }
    char cpath[PKI_PATH_MAX], kpath[PKI_PATH_MAX];
    int rc;
    if ((rc = join(cpath, dir, "/ca.pem", e)) != 0 ||
        (rc = join(kpath, dir, "/ca-key.pem", e)) != 0) {
        return rc;
    }
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        return werr_set(e, WERR_IO, "mkdir %s: %s", dir, strerror(errno));
    }
    if ((rc = refuse_existing(kpath, e)) != 0 || (rc = refuse_existing(cpath, e)) != 0) {
        return rc;
    }
    EVP_PKEY *key = EVP_EC_gen("P-256");
    if (key == NULL) {
        return tls_err(e, "EC P-256 key");
    }
    X509 *x = X509_new();
    if (x == NULL) {
        rc = tls_err(e, "X509_new");
        goto err_free_key;
    }
    if ((rc = cert_base(x, cn, days, NULL, key, e)) != 0) {
        goto err_free_cert;
    }
    X509V3_CTX v3;
    X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
    /* pathlen:0 - this CA signs leaves only; an intermediate would need its
     * own tooling and revocation story. */
    if ((rc = add_ext(x, &v3, NID_basic_constraints, "critical,CA:TRUE,pathlen:0", e)) ||
        (rc = add_ext(x, &v3, NID_key_usage, "critical,keyCertSign,cRLSign", e)) ||
        (rc = add_ext(x, &v3, NID_subject_key_identifier, "hash", e))) {
        goto err_free_cert;
    }
    if (X509_sign(x, key, EVP_sha256()) <= 0) {
        rc = tls_err(e, "X509_sign");
        goto err_free_cert;
    }
    /* The key first: a certificate on disk implies its key is there. */
    if ((rc = write_pem_new(kpath, 0600, key, NULL, e)) != 0) {
        goto err_free_cert;
    }
    if ((rc = write_pem_new(cpath, 0644, NULL, x, e)) != 0) {
        unlink(kpath); /* ours: link() just created it */
        goto err_free_cert;
    }

err_free_cert:
    X509_free(x);
err_free_key:
    EVP_PKEY_free(key);
    return rc;
}

static int load_ca(const char *dir, X509 **ca, EVP_PKEY **ca_key, struct werr *e)
{
    char cpath[PKI_PATH_MAX], kpath[PKI_PATH_MAX];
    int rc;
    if ((rc = join(cpath, dir, "/ca.pem", e)) != 0 ||
        (rc = join(kpath, dir, "/ca-key.pem", e)) != 0) {
        return rc;
    }
    FILE *f = fopen(cpath, "r");
    if (f == NULL) {
        return werr_set(e, WERR_IO, "open %s: %s", cpath, strerror(errno));
    }
    *ca = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    if (*ca == NULL) {
        return tls_err(e, cpath);
    }
    f = fopen(kpath, "r");
    if (f == NULL) {
        rc = werr_set(e, WERR_IO, "open %s: %s", kpath, strerror(errno));
        goto err_free_ca;
    }
    *ca_key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    if (*ca_key == NULL) {
        rc = tls_err(e, kpath);
        goto err_free_ca;
    }
    if (X509_check_private_key(*ca, *ca_key) != 1) {
        ERR_clear_error();
        rc = werr_set(e, WERR_INVALID, "%s does not match %s", kpath, cpath);
        goto err_free_key;
    }
    return 0;

err_free_key:
    EVP_PKEY_free(*ca_key);
    *ca_key = NULL;
err_free_ca:
    X509_free(*ca);
    *ca = NULL;
    return rc;
}

static void describe(X509 *x, struct pki_issued *out)
{
    out->serial_hex[0] = '\0';
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
    char *hex = bn != NULL ? BN_bn2hex(bn) : NULL;
    if (hex != NULL) {
        size_t i = 0;
        for (; hex[i] != '\0' && i + 1 < sizeof out->serial_hex; i++) {
            char c = hex[i];
            out->serial_hex[i] = (c >= 'A' && c <= 'F') ? (char)(c - 'A' + 'a') : c;
        }
        out->serial_hex[i] = '\0';
    }
    OPENSSL_free(hex);
    BN_free(bn);
    struct tm tm;
    out->not_after[0] = '\0';
    if (ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm) == 1) {
        strftime(out->not_after, sizeof out->not_after, "%Y-%m-%d %H:%M:%S UTC", &tm);
    }
}

int pki_issue(const char *ca_dir, const struct pki_leaf_spec *s,
              const char *out_prefix, struct pki_issued *out, struct werr *e)
{
    char san[PKI_SAN_MAX], cpath[PKI_PATH_MAX], kpath[PKI_PATH_MAX];
    int rc;
    if ((rc = pki_san_format(s, san, sizeof san, e)) != 0) {
        return rc;
    }
    if ((rc = join(cpath, out_prefix, ".pem", e)) != 0 ||
        (rc = join(kpath, out_prefix, "-key.pem", e)) != 0) {
        return rc;
    }
    if ((rc = refuse_existing(kpath, e)) != 0 || (rc = refuse_existing(cpath, e)) != 0) {
        return rc;
    }
    unsigned days = s->days != 0 ? s->days : PKI_LEAF_DAYS_DEFAULT;
    X509 *ca = NULL;
    EVP_PKEY *ca_key = NULL;
    if ((rc = load_ca(ca_dir, &ca, &ca_key, e)) != 0) {
        return rc;
    }
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    if (key == NULL || x == NULL) {
        rc = tls_err(e, "EC P-256 key");
        goto err_free;
    }
    if ((rc = cert_base(x, s->name, days, ca, key, e)) != 0) {
        goto err_free;
    }
    /* A leaf that outlives its CA would fail verification on the day the
     * CA expires, long after anyone remembers why. */
    if (ASN1_TIME_compare(X509_get0_notAfter(x), X509_get0_notAfter(ca)) > 0) {
        rc = werr_set(e, WERR_INVALID,
                      "--days %u: the certificate would outlive the CA in %s", days,
                      ca_dir);
        goto err_free;
    }
    X509V3_CTX v3;
    X509V3_set_ctx(&v3, ca, x, NULL, NULL, 0);
    if ((rc = add_ext(x, &v3, NID_basic_constraints, "critical,CA:FALSE", e)) ||
        (rc = add_ext(x, &v3, NID_key_usage, "critical,digitalSignature", e)) ||
        (rc = add_ext(x, &v3, NID_ext_key_usage, pki_leaf_eku(s->role), e)) ||
        (rc = add_ext(x, &v3, NID_subject_alt_name, san, e)) ||
        (rc = add_ext(x, &v3, NID_subject_key_identifier, "hash", e)) ||
        (rc = add_ext(x, &v3, NID_authority_key_identifier, "keyid:always", e))) {
        goto err_free;
    }
    if (X509_sign(x, ca_key, EVP_sha256()) <= 0) {
        rc = tls_err(e, "X509_sign");
        goto err_free;
    }
    if ((rc = write_pem_new(kpath, 0600, key, NULL, e)) != 0) {
        goto err_free;
    }
    if ((rc = write_pem_new(cpath, 0644, NULL, x, e)) != 0) {
        unlink(kpath);
        goto err_free;
    }
    if (out != NULL) {
        memset(out, 0, sizeof *out);
        snprintf(out->uri, sizeof out->uri, PRINCIPAL_URI_PREFIX "%s/%s", s->role,
                 s->name);
        memcpy(out->cert_path, cpath, sizeof cpath);
        memcpy(out->key_path, kpath, sizeof kpath);
        describe(x, out);
    }

err_free:
    X509_free(x);
    EVP_PKEY_free(key);
    X509_free(ca);
    EVP_PKEY_free(ca_key);
    return rc;
}
