/* devkey.c - device public key validation (contract: devkey.h). */
#include "devkey.h"

#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

/* Fail with WERR_INVALID, appending OpenSSL's first queued reason (if any)
 * and clearing the thread's error queue so it cannot leak into an unrelated
 * later report. */
static int fail_ssl(struct werr *e, int code, const char *what)
{
    unsigned long ssl = ERR_get_error();
    char reason[128] = "no detail";
    if (ssl != 0) {
        ERR_error_string_n(ssl, reason, sizeof reason);
    }
    ERR_clear_error();
    return werr_set(e, code, "%s (%s)", what, reason);
}

static int sha256(const uint8_t *d, size_t n, uint8_t out[32], struct werr *e)
{
    unsigned int olen = 0;
    if (EVP_Digest(d, n, out, &olen, EVP_sha256(), NULL) != 1 || olen != 32) {
        return fail_ssl(e, WERR_INTERNAL, "SHA-256 failed");
    }
    return 0;
}

static int parse_ed25519(const uint8_t *key, size_t len, struct devkey *out,
                         struct werr *e)
{
    if (len != DEVKEY_ED25519_LEN) {
        return werr_set(e, WERR_INVALID,
                        "Ed25519 public key must be %d raw bytes, got %zu",
                        DEVKEY_ED25519_LEN, len);
    }
    /* No EVP_PKEY here. OpenSSL 3's raw Ed25519 import copies the 32 bytes
     * without decoding the point, so it never refused a 32-byte key (100,000
     * patterned keys, all-0xff ones included, were all accepted), while its
     * provider fetch and allocations were ~9% of the leader's CPU per
     * EnrollDevice, on every node, inside apply. A key that is not a curve
     * point is refused where it matters: every signature made with it
     * fails EVP_DigestVerify (devkey_verify). */
    memcpy(out->canon, key, len);
    out->canon_len = len;
    return 0;
}

/* Load a 65-byte SEC1 uncompressed point as a P-256 key. */
static EVP_PKEY *p256_from_point(const uint8_t *pt, size_t len)
{
    EVP_PKEY *pk = NULL;
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    if (ctx == NULL) {
        return NULL;
    }
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME,
                                         (char *)"prime256v1", 0),
        OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, (void *)pt,
                                          len),
        OSSL_PARAM_construct_end(),
    };
    if (EVP_PKEY_fromdata_init(ctx) != 1 ||
        EVP_PKEY_fromdata(ctx, &pk, EVP_PKEY_PUBLIC_KEY, params) != 1) {
        pk = NULL;
    }
    EVP_PKEY_CTX_free(ctx);
    return pk;
}

static int parse_p256(const uint8_t *key, size_t len, struct devkey *out,
                      struct werr *e)
{
    EVP_PKEY *pk = NULL;
    int rc;
    if (len == DEVKEY_P256_POINT_LEN && key[0] == 0x04) {
        pk = p256_from_point(key, len);
        if (pk == NULL) {
            return fail_ssl(e, WERR_INVALID,
                            "ECDSA P-256 point does not decode on the curve");
        }
    } else if (len > 0 && key[0] == 0x30) { /* DER SEQUENCE */
        const unsigned char *p = key;
        pk = d2i_PUBKEY(NULL, &p, (long)len);
        if (pk == NULL) {
            return fail_ssl(e, WERR_INVALID,
                            "ECDSA P-256 key is not a valid DER SubjectPublicKeyInfo");
        }
        if ((size_t)(p - key) != len) {
            rc = werr_set(e, WERR_INVALID,
                          "ECDSA P-256 SubjectPublicKeyInfo has %zu trailing bytes",
                          len - (size_t)(p - key));
            goto out_free;
        }
        if (!EVP_PKEY_is_a(pk, "EC")) {
            rc = werr_set(e, WERR_INVALID,
                          "ECDSA P-256 SubjectPublicKeyInfo holds a %s key, not EC",
                          EVP_PKEY_get0_type_name(pk) ? EVP_PKEY_get0_type_name(pk)
                                                      : "unknown");
            goto out_free;
        }
        char group[64];
        size_t glen = 0;
        if (EVP_PKEY_get_utf8_string_param(pk, OSSL_PKEY_PARAM_GROUP_NAME, group,
                                           sizeof group, &glen) != 1) {
            ERR_clear_error();
            rc = werr_set(e, WERR_INVALID,
                          "ECDSA key has no named curve (explicit parameters are not accepted)");
            goto out_free;
        }
        if (strcmp(group, "prime256v1") != 0) {
            rc = werr_set(e, WERR_INVALID, "ECDSA key is on curve %s, want P-256",
                          group);
            goto out_free;
        }
    } else {
        return werr_set(e, WERR_INVALID,
                        "ECDSA P-256 public key must be a 65-byte uncompressed "
                        "point (0x04||X||Y) or DER SubjectPublicKeyInfo, got %zu bytes",
                        len);
    }

    /* Belt and braces: both import paths check the point, but make the
     * on-curve requirement explicit rather than an OpenSSL implementation
     * detail. */
    EVP_PKEY_CTX *cctx = EVP_PKEY_CTX_new_from_pkey(NULL, pk, NULL);
    if (cctx == NULL) {
        rc = fail_ssl(e, WERR_NOMEM, "EVP_PKEY_CTX_new_from_pkey");
        goto out_free;
    }
    int ok = EVP_PKEY_public_check(cctx);
    EVP_PKEY_CTX_free(cctx);
    if (ok != 1) {
        rc = fail_ssl(e, WERR_INVALID, "ECDSA P-256 public key fails the curve check");
        goto out_free;
    }

    BIGNUM *x = NULL, *y = NULL;
    if (EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_EC_PUB_X, &x) != 1 ||
        EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_EC_PUB_Y, &y) != 1 ||
        BN_bn2binpad(x, out->canon + 1, 32) != 32 ||
        BN_bn2binpad(y, out->canon + 33, 32) != 32) {
        BN_free(x);
        BN_free(y);
        rc = fail_ssl(e, WERR_INTERNAL, "extracting P-256 coordinates");
        goto out_free;
    }
    BN_free(x);
    BN_free(y);
    out->canon[0] = 0x04;
    out->canon_len = DEVKEY_P256_POINT_LEN;
    rc = 0;
out_free:
    EVP_PKEY_free(pk);
    return rc;
}

int devkey_parse(int alg, const uint8_t *key, size_t len, struct devkey *out,
                 struct werr *e)
{
    int rc;
    memset(out, 0, sizeof *out);
    if (key == NULL && len != 0) {
        return werr_set(e, WERR_INVALID, "public key: NULL data");
    }
    if (len == 0) {
        return werr_set(e, WERR_INVALID, "public key is required");
    }
    if (len > DEVKEY_INPUT_MAX) {
        return werr_set(e, WERR_INVALID, "public key is %zu bytes, max %d", len,
                        DEVKEY_INPUT_MAX);
    }
    switch (alg) {
    case DEVKEY_ED25519:
        rc = parse_ed25519(key, len, out, e);
        break;
    case DEVKEY_ECDSA_P256:
        rc = parse_p256(key, len, out, e);
        break;
    default:
        return werr_set(e, WERR_INVALID,
                        "key_algorithm %d is not supported (want ED25519 or ECDSA_P256)",
                        alg);
    }
    if (rc != 0) {
        return rc;
    }
    out->alg = alg;
    return sha256(out->canon, out->canon_len, out->fingerprint, e);
}

/* ---- issue 4: signatures ---------------------------------------------------*/

static EVP_PKEY *load_canon(int alg, const uint8_t *canon, size_t len)
{
    if (alg == DEVKEY_ED25519 && len == DEVKEY_ED25519_LEN) {
        return EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, canon, len);
    }
    if (alg == DEVKEY_ECDSA_P256 && len == DEVKEY_P256_POINT_LEN &&
        canon[0] == 0x04) {
        return p256_from_point(canon, len);
    }
    return NULL;
}

int devkey_verify(int alg, const uint8_t *canon, size_t canon_len,
                  const uint8_t *msg, size_t msg_len, const uint8_t *sig,
                  size_t sig_len, struct werr *e)
{
    if (sig == NULL || sig_len == 0) {
        return werr_set(e, WERR_PERM, "signature is missing");
    }
    if (sig_len > DEVKEY_SIG_MAX) {
        return werr_set(e, WERR_PERM, "signature is %zu bytes, max %d",
                        sig_len, DEVKEY_SIG_MAX);
    }
    if (alg == DEVKEY_ED25519 && sig_len != 64) {
        return werr_set(e, WERR_PERM, "Ed25519 signature must be 64 bytes, got %zu",
                        sig_len);
    }
    EVP_PKEY *pk = load_canon(alg, canon, canon_len);
    if (pk == NULL) {
        return fail_ssl(e, WERR_INVALID, "stored public key does not load");
    }
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (md == NULL) {
        EVP_PKEY_free(pk);
        return fail_ssl(e, WERR_NOMEM, "EVP_MD_CTX_new");
    }
    /* Ed25519 hashes internally (PureEdDSA): the digest must be NULL. */
    const EVP_MD *h = alg == DEVKEY_ED25519 ? NULL : EVP_sha256();
    int rc;
    if (EVP_DigestVerifyInit(md, NULL, h, NULL, pk) != 1) {
        rc = fail_ssl(e, WERR_NOMEM, "EVP_DigestVerifyInit");
    } else if (EVP_DigestVerify(md, sig, sig_len, msg, msg_len) == 1) {
        rc = 0;
    } else {
        /* 0 (mismatch) and -1 (e.g. DER that does not parse) alike: the
         * signature is not valid. The reason is input-determined, so every
         * node reaches the same verdict. */
        ERR_clear_error();
        rc = werr_set(e, WERR_PERM, "signature does not verify");
    }
    EVP_MD_CTX_free(md);
    EVP_PKEY_free(pk);
    return rc;
}

int devkey_equal(const struct devkey *k, int alg, const uint8_t *canon,
                 size_t canon_len)
{
    return k->alg == alg && k->canon_len == canon_len &&
           memcmp(k->canon, canon, canon_len) == 0;
}
