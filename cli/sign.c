#include "sign.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "../domain/canon.h"
#include "pubkey.h"

struct cli_privkey {
    EVP_PKEY *pk;
    enum cli_key_alg alg;
};

size_t cli_rotate_message(const char *device_id, uint64_t cur_key_epoch,
                          uint64_t new_key_epoch, const uint8_t *new_key,
                          size_t new_key_len,
                          const uint8_t nonce[CLI_NONCE_LEN], uint8_t *buf,
                          size_t cap)
{
    size_t n = strlen(device_id);
    if (n > CLI_DEVICE_ID_MAX || new_key_len > CLI_CANON_KEY_MAX) {
        return 0;
    }
    struct canon_w w;
    canon_w_init(&w, buf, cap);
    canon_raw(&w, CLI_ROTATE_TAG, sizeof CLI_ROTATE_TAG - 1);
    canon_bytes(&w, device_id, n);
    canon_u64(&w, cur_key_epoch);
    canon_u64(&w, new_key_epoch);
    canon_bytes(&w, new_key, new_key_len);
    canon_raw(&w, nonce, CLI_NONCE_LEN);
    return w.overflow ? 0 : w.len;
}

size_t cli_telemetry_message(const char *device_id, uint64_t key_epoch,
                             uint64_t counter, const uint8_t digest[32],
                             uint8_t *buf, size_t cap)
{
    size_t n = strlen(device_id);
    if (n > CLI_DEVICE_ID_MAX) {
        return 0;
    }
    struct canon_w w;
    canon_w_init(&w, buf, cap);
    canon_raw(&w, CLI_TELEMETRY_TAG, sizeof CLI_TELEMETRY_TAG - 1);
    canon_bytes(&w, device_id, n);
    canon_u64(&w, key_epoch);
    canon_u64(&w, counter);
    canon_raw(&w, digest, 32);
    return w.overflow ? 0 : w.len;
}

int cli_privkey_from_pem(const char *pem, size_t len, struct cli_privkey **out,
                         struct werr *e)
{
    *out = NULL;
    if (len > CLI_PEM_FILE_MAX) {
        return werr_set(e, WERR_LIMIT, "private key: larger than %u bytes",
                        CLI_PEM_FILE_MAX);
    }
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    if (bio == NULL) {
        return werr_set(e, WERR_NOMEM, "out of memory");
    }
    /* No passphrase callback: an encrypted key fails instead of prompting. */
    EVP_PKEY *pk = PEM_read_bio_PrivateKey(bio, NULL, NULL, (void *)"");
    BIO_free(bio);
    if (pk == NULL) {
        ERR_clear_error();
        return werr_set(e, WERR_INVALID,
                        "private key: no unencrypted PEM private key found");
    }
    enum cli_key_alg alg = CLI_KEY_ALG_NONE;
    if (EVP_PKEY_get_id(pk) == EVP_PKEY_ED25519) {
        alg = CLI_KEY_ALG_ED25519;
    } else if (EVP_PKEY_get_id(pk) == EVP_PKEY_EC) {
        char group[64] = "";
        size_t glen = 0;
        if (EVP_PKEY_get_utf8_string_param(pk, OSSL_PKEY_PARAM_GROUP_NAME, group,
                                           sizeof group, &glen) == 1 &&
            strcmp(group, "prime256v1") == 0) {
            alg = CLI_KEY_ALG_P256;
        }
    }
    if (alg == CLI_KEY_ALG_NONE) {
        EVP_PKEY_free(pk);
        return werr_set(e, WERR_INVALID,
                        "private key: not an Ed25519 or P-256 key");
    }
    struct cli_privkey *k = calloc(1, sizeof *k);
    if (k == NULL) {
        EVP_PKEY_free(pk);
        return werr_set(e, WERR_NOMEM, "out of memory");
    }
    k->pk = pk;
    k->alg = alg;
    *out = k;
    return 0;
}

int cli_privkey_from_file(const char *path, struct cli_privkey **out,
                          struct werr *e)
{
    static char buf[CLI_PEM_FILE_MAX + 1];
    *out = NULL;
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
    int rc = cli_privkey_from_pem(buf, n, out, e);
    OPENSSL_cleanse(buf, sizeof buf); /* the key's bytes, gone from memory */
    if (rc != 0) {
        werr_wrap(e, "%s", path);
    }
    return rc;
}

void cli_privkey_free(struct cli_privkey *k)
{
    if (k != NULL) {
        EVP_PKEY_free(k->pk);
        free(k);
    }
}

enum cli_key_alg cli_privkey_alg(const struct cli_privkey *k)
{
    return k->alg;
}

int cli_privkey_public(const struct cli_privkey *k, uint8_t *out, size_t cap,
                       size_t *len, struct werr *e)
{
    if (k->alg == CLI_KEY_ALG_ED25519) {
        size_t n = cap;
        if (EVP_PKEY_get_raw_public_key(k->pk, out, &n) != 1) {
            ERR_clear_error();
            return werr_set(e, WERR_LIMIT, "public key: does not fit");
        }
        *len = n;
        return 0;
    }
    int n = i2d_PUBKEY(k->pk, NULL);
    if (n <= 0 || (size_t)n > cap) {
        ERR_clear_error();
        return werr_set(e, WERR_LIMIT, "public key: does not fit");
    }
    unsigned char *p = out;
    if (i2d_PUBKEY(k->pk, &p) != n) {
        ERR_clear_error();
        return werr_set(e, WERR_INTERNAL, "public key: cannot encode");
    }
    *len = (size_t)n;
    return 0;
}

int cli_privkey_sign(const struct cli_privkey *k, const uint8_t *msg,
                     size_t len, uint8_t *sig, size_t cap, size_t *sig_len,
                     struct werr *e)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (md == NULL) {
        return werr_set(e, WERR_NOMEM, "out of memory");
    }
    /* Ed25519 is PureEdDSA: no digest (RFC 8032); ECDSA hashes with
     * SHA-256 and returns DER (RFC 3279 §2.2.3). */
    const EVP_MD *dg = k->alg == CLI_KEY_ALG_ED25519 ? NULL : EVP_sha256();
    size_t n = cap;
    int ok = EVP_DigestSignInit(md, NULL, dg, NULL, k->pk) == 1 &&
             EVP_DigestSign(md, sig, &n, msg, len) == 1;
    EVP_MD_CTX_free(md);
    if (!ok) {
        ERR_clear_error();
        return werr_set(e, WERR_INTERNAL, "signing failed");
    }
    *sig_len = n;
    return 0;
}

int cli_sha256(const uint8_t *data, size_t len, uint8_t out[32], struct werr *e)
{
    unsigned int n = 0;
    if (EVP_Digest(data, len, out, &n, EVP_sha256(), NULL) != 1 || n != 32) {
        ERR_clear_error();
        return werr_set(e, WERR_INTERNAL, "SHA-256 failed");
    }
    return 0;
}
