#include "pubkey.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

static int convert(EVP_PKEY *pk, enum cli_key_alg alg, uint8_t *out, size_t cap,
                   size_t *out_len, struct werr *e)
{
    if (alg == CLI_KEY_ALG_ED25519) {
        if (EVP_PKEY_get_id(pk) != EVP_PKEY_ED25519) {
            return werr_set(e, WERR_INVALID,
                            "public key file: not an Ed25519 key (--key-alg "
                            "ed25519)");
        }
        size_t n = cap;
        if (EVP_PKEY_get_raw_public_key(pk, out, &n) != 1) {
            return werr_set(e, WERR_LIMIT, "public key file: key too large");
        }
        *out_len = n;
        return 0;
    }
    if (alg == CLI_KEY_ALG_P256) {
        char group[64] = "";
        size_t glen = 0;
        if (EVP_PKEY_get_id(pk) != EVP_PKEY_EC ||
            EVP_PKEY_get_utf8_string_param(pk, OSSL_PKEY_PARAM_GROUP_NAME, group,
                                           sizeof group, &glen) != 1 ||
            strcmp(group, "prime256v1") != 0) {
            return werr_set(e, WERR_INVALID,
                            "public key file: not a P-256 EC key (--key-alg "
                            "p256)");
        }
        int n = i2d_PUBKEY(pk, NULL);
        if (n <= 0 || (size_t)n > cap) {
            return werr_set(e, WERR_LIMIT, "public key file: key too large");
        }
        unsigned char *p = out;
        if (i2d_PUBKEY(pk, &p) != n) {
            return werr_set(e, WERR_INVALID, "public key file: cannot encode");
        }
        *out_len = (size_t)n;
        return 0;
    }
    return werr_set(e, WERR_INVALID, "unknown key algorithm");
}

int cli_pubkey_from_pem(const char *pem, size_t len, enum cli_key_alg alg,
                        uint8_t *out, size_t cap, size_t *out_len,
                        struct werr *e)
{
    if (len > CLI_PEM_FILE_MAX) {
        return werr_set(e, WERR_LIMIT, "public key file: larger than %u bytes",
                        CLI_PEM_FILE_MAX);
    }
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    if (bio == NULL) {
        return werr_set(e, WERR_NOMEM, "out of memory");
    }
    EVP_PKEY *pk = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
    BIO_free(bio);
    if (pk == NULL) {
        ERR_clear_error();
        return werr_set(e, WERR_INVALID,
                        "public key file: no PEM \"PUBLIC KEY\" found");
    }
    int rc = convert(pk, alg, out, cap, out_len, e);
    EVP_PKEY_free(pk);
    return rc;
}

int cli_pubkey_from_file(const char *path, enum cli_key_alg alg, uint8_t *out,
                         size_t cap, size_t *out_len, struct werr *e)
{
    static char buf[CLI_PEM_FILE_MAX + 1];
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return werr_set(e, WERR_IO, "%s: %s", path, strerror(errno));
    }
    size_t n = fread(buf, 1, sizeof buf, f);
    int failed = ferror(f);
    fclose(f);
    if (failed) {
        return werr_set(e, WERR_IO, "%s: read error", path);
    }
    if (n > CLI_PEM_FILE_MAX) {
        return werr_set(e, WERR_LIMIT, "%s: larger than %u bytes", path,
                        CLI_PEM_FILE_MAX);
    }
    int rc = cli_pubkey_from_pem(buf, n, alg, out, cap, out_len, e);
    if (rc != 0) {
        werr_wrap(e, "%s", path);
    }
    return rc;
}
