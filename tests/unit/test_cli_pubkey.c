/* Tests for cli/pubkey.c: PEM public keys to warden's wire form. */
#include <string.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "cli/pubkey.h"
#include "unit.h"

/* PEM text of a fresh public key of the given kind ("ED25519" or "EC"). */
static size_t gen_pem(const char *kind, char *pem, size_t cap, EVP_PKEY **out)
{
    EVP_PKEY *pk = strcmp(kind, "EC") == 0 ? EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256")
                                           : EVP_PKEY_Q_keygen(NULL, NULL, kind);
    BIO *b = BIO_new(BIO_s_mem());
    PEM_write_bio_PUBKEY(b, pk);
    int n = BIO_read(b, pem, (int)cap - 1);
    BIO_free(b);
    pem[n > 0 ? n : 0] = '\0';
    *out = pk;
    return n > 0 ? (size_t)n : 0;
}

TEST(ed25519_raw)
{
    char pem[1024];
    EVP_PKEY *pk;
    size_t n = gen_pem("ED25519", pem, sizeof pem, &pk);
    CHECK(n > 0);
    uint8_t out[CLI_PUBKEY_MAX], raw[32];
    size_t len = 0, rlen = sizeof raw;
    struct werr e;
    CHECK_EQ_INT(cli_pubkey_from_pem(pem, n, CLI_KEY_ALG_ED25519, out, sizeof out,
                                     &len, &e),
                 0);
    CHECK_EQ_INT(len, 32);
    EVP_PKEY_get_raw_public_key(pk, raw, &rlen);
    CHECK(memcmp(out, raw, 32) == 0);
    /* The wrong algorithm is refused, not converted. */
    CHECK_EQ_INT(cli_pubkey_from_pem(pem, n, CLI_KEY_ALG_P256, out, sizeof out,
                                     &len, &e),
                 WERR_INVALID);
    CHECK(strstr(e.msg, "P-256") != NULL);
    EVP_PKEY_free(pk);
}

TEST(p256_spki)
{
    char pem[1024];
    EVP_PKEY *pk;
    size_t n = gen_pem("EC", pem, sizeof pem, &pk);
    uint8_t out[CLI_PUBKEY_MAX];
    size_t len = 0;
    struct werr e;
    CHECK_EQ_INT(cli_pubkey_from_pem(pem, n, CLI_KEY_ALG_P256, out, sizeof out,
                                     &len, &e),
                 0);
    CHECK_EQ_INT(len, 91); /* DER SubjectPublicKeyInfo of a P-256 key */
    unsigned char *der = NULL;
    int dlen = i2d_PUBKEY(pk, &der);
    CHECK_EQ_INT(dlen, 91);
    CHECK(memcmp(out, der, 91) == 0);
    OPENSSL_free(der);
    CHECK_EQ_INT(cli_pubkey_from_pem(pem, n, CLI_KEY_ALG_ED25519, out, sizeof out,
                                     &len, &e),
                 WERR_INVALID);
    /* Too small an output buffer is a limit, not an overflow. */
    CHECK_EQ_INT(cli_pubkey_from_pem(pem, n, CLI_KEY_ALG_P256, out, 90, &len, &e),
                 WERR_LIMIT);
    EVP_PKEY_free(pk);
}

TEST(other_curve_and_garbage)
{
    EVP_PKEY *pk = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
    BIO *b = BIO_new(BIO_s_mem());
    PEM_write_bio_PUBKEY(b, pk);
    char pem[1024];
    int n = BIO_read(b, pem, sizeof pem - 1);
    BIO_free(b);
    EVP_PKEY_free(pk);
    uint8_t out[CLI_PUBKEY_MAX];
    size_t len;
    struct werr e;
    CHECK_EQ_INT(cli_pubkey_from_pem(pem, (size_t)n, CLI_KEY_ALG_P256, out,
                                     sizeof out, &len, &e),
                 WERR_INVALID);
    const char junk[] = "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n";
    CHECK_EQ_INT(cli_pubkey_from_pem(junk, sizeof junk - 1, CLI_KEY_ALG_P256, out,
                                     sizeof out, &len, &e),
                 WERR_INVALID);
    CHECK_EQ_INT(cli_pubkey_from_file("/nonexistent/key.pem", CLI_KEY_ALG_P256, out,
                                      sizeof out, &len, &e),
                 WERR_IO);
}

int main(void)
{
    RUN(ed25519_raw);
    RUN(p256_spki);
    RUN(other_curve_and_garbage);
    return unit_done();
}
