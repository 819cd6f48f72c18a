/* consensus_testutil.h - helpers shared by the consensus tests: a throwaway
 * PKI (EC P-256 CA and leaves with one SAN URI each), a free loopback port,
 * and recursive removal of a temp directory. Static inline functions: each
 * test file is its own program and uses only some of them. */
#ifndef WARDEN_TESTS_CONSENSUS_TESTUTIL_H
#define WARDEN_TESTS_CONSENSUS_TESTUTIL_H

#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <uv.h>

static inline int ctu_add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX v;
    X509_EXTENSION *ext;
    X509V3_set_ctx_nodb(&v);
    X509V3_set_ctx(&v, issuer, cert, NULL, NULL, 0);
    ext = X509V3_EXT_conf_nid(NULL, &v, nid, value);
    if (ext == NULL)
        return -1;
    X509_add_ext(cert, ext, -1);
    X509_EXTENSION_free(ext);
    return 0;
}

/* Self-signed CA when issuer is NULL; otherwise a leaf signed by issuer. */
static inline X509 *ctu_make_cert(EVP_PKEY *key, const char *cn, const char *uri,
                           X509 *issuer, EVP_PKEY *issuer_key, long serial)
{
    X509 *x = X509_new();
    X509_NAME *name;
    int ok = 1;

    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_set_pubkey(x, key);
    name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                               (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name);
    if (issuer == NULL) {
        ok &= ctu_add_ext(x, x, NID_basic_constraints, "critical,CA:TRUE") == 0;
        ok &= ctu_add_ext(x, x, NID_key_usage, "critical,keyCertSign,cRLSign") == 0;
        ok &= ctu_add_ext(x, x, NID_subject_key_identifier, "hash") == 0;
    } else {
        ok &= ctu_add_ext(x, issuer, NID_basic_constraints, "critical,CA:FALSE") == 0;
        ok &= ctu_add_ext(x, issuer, NID_key_usage, "critical,digitalSignature") == 0;
        ok &= ctu_add_ext(x, issuer, NID_ext_key_usage, "serverAuth,clientAuth") == 0;
        ok &= ctu_add_ext(x, issuer, NID_authority_key_identifier, "keyid") == 0;
    }
    if (uri != NULL) {
        char san[128];
        snprintf(san, sizeof san, "URI:%s", uri);
        ok &= ctu_add_ext(x, issuer ? issuer : x, NID_subject_alt_name, san) == 0;
    }
    ok &= X509_sign(x, issuer_key ? issuer_key : key, EVP_sha256()) > 0;
    if (!ok) {
        X509_free(x);
        return NULL;
    }
    return x;
}

static inline int ctu_write_pem(const char *dir, const char *base, X509 *cert,
                         EVP_PKEY *key)
{
    char path[256];
    FILE *f;
    int ok = 1;

    snprintf(path, sizeof path, "%s/%s.pem", dir, base);
    if ((f = fopen(path, "w")) == NULL)
        return -1;
    ok &= PEM_write_X509(f, cert) == 1;
    fclose(f);
    if (key != NULL) {
        snprintf(path, sizeof path, "%s/%s-key.pem", dir, base);
        if ((f = fopen(path, "w")) == NULL)
            return -1;
        ok &= PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL) == 1;
        fclose(f);
    }
    return ok ? 0 : -1;
}

/* dir/<ca_base>.pem, and dir/<bases[i]>.pem + -key.pem with SAN uris[i]. */
static inline int ctu_make_pki(const char *dir, const char *ca_base,
                        const char *const *bases, const char *const *uris,
                        int n)
{
    EVP_PKEY *ca_key = EVP_EC_gen("P-256");
    X509 *ca = ca_key ? ctu_make_cert(ca_key, ca_base, NULL, NULL, NULL, 1) : NULL;
    int rv = -1;

    if (ca == NULL || ctu_write_pem(dir, ca_base, ca, NULL) != 0)
        goto out;
    for (int i = 0; i < n; i++) {
        EVP_PKEY *k = EVP_EC_gen("P-256");
        X509 *x = k ? ctu_make_cert(k, bases[i], uris[i], ca, ca_key, 100 + i) : NULL;
        int bad = x == NULL || ctu_write_pem(dir, bases[i], x, k) != 0;
        X509_free(x);
        EVP_PKEY_free(k);
        if (bad)
            goto out;
    }
    rv = 0;
out:
    X509_free(ca);
    EVP_PKEY_free(ca_key);
    return rv;
}

/* Bind :0 on loopback to learn a free port. Racy against other processes
 * on this host only, and then the test fails loudly. */
static inline int ctu_free_port(void)
{
    uv_loop_t loop;
    uv_tcp_t tcp;
    struct sockaddr_in a;
    struct sockaddr_storage got;
    int len = (int)sizeof got;
    int port = -1;

    if (uv_loop_init(&loop) != 0)
        return -1;
    uv_tcp_init(&loop, &tcp);
    uv_ip4_addr("127.0.0.1", 0, &a);
    if (uv_tcp_bind(&tcp, (const struct sockaddr *)&a, 0) == 0 &&
        uv_tcp_getsockname(&tcp, (struct sockaddr *)&got, &len) == 0)
        port = ntohs(((struct sockaddr_in *)&got)->sin_port);
    uv_close((uv_handle_t *)&tcp, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    return port;
}

/* rm -rf dir (depth first; symlinks are unlinked, not followed). */
static inline void ctu_rm_rf(const char *dir)
{
    char path[1024];
    struct dirent *de;
    struct stat sb;
    DIR *d = opendir(dir);

    if (d != NULL) {
        while ((de = readdir(d)) != NULL) {
            if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                continue;
            int n = snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
            if (n < 0 || (size_t)n >= sizeof path)
                continue; /* too long to be one of ours: leave it */
            if (lstat(path, &sb) == 0 && S_ISDIR(sb.st_mode))
                ctu_rm_rf(path);
            else
                unlink(path);
        }
        closedir(d);
    }
    rmdir(dir);
}

#endif
