/* Tests for cli/sign.c: the key-rotation and telemetry messages the
 * CLI signs must be byte-for-byte the documented canonical forms
 * (docs/freshness.md), equal to the domain's own builders, and signatures
 * made with a PEM private key must verify with the domain's verifier
 * (devkey_verify), for Ed25519 and P-256. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "cli/sign.h"
#include "domain/devkey.h"
#include "domain/freshness.h"
#include "domain/lifecycle.h"
#include "unit.h"

/* A fresh key of alg as PEM text (PKCS#8) in buf. */
static size_t gen_pem(enum cli_key_alg alg, char *buf, size_t cap)
{
    EVP_PKEY *pk = alg == CLI_KEY_ALG_ED25519 ? EVP_PKEY_Q_keygen(NULL, NULL, "ED25519")
                                              : EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    BIO *b = BIO_new(BIO_s_mem());
    PEM_write_bio_PrivateKey(b, pk, NULL, NULL, 0, NULL, NULL);
    char *p;
    long n = BIO_get_mem_data(b, &p);
    size_t len = (size_t)n < cap ? (size_t)n : 0;
    memcpy(buf, p, len);
    BIO_free(b);
    EVP_PKEY_free(pk);
    return len;
}

TEST(rotate_message_is_the_documented_form)
{
    uint8_t nonce[CLI_NONCE_LEN], key[32];
    for (size_t i = 0; i < sizeof nonce; i++) {
        nonce[i] = (uint8_t)(0xa0 + i);
    }
    for (size_t i = 0; i < sizeof key; i++) {
        key[i] = (uint8_t)(0x10 + i);
    }
    uint8_t got[CLI_ROTATE_MSG_MAX], want[256];
    size_t n = cli_rotate_message("plc-7", 0x0102030405060707ull,
                                  0x0102030405060708ull, key, sizeof key, nonce,
                                  got, sizeof got);
    /* By hand, from the doc: raw tag || u32 BE len || id || u64 BE current
     * epoch || u64 BE new epoch || u32 BE len || key || nonce */
    size_t w = 0;
    memcpy(want, "warden.rotate.v2", 16);
    w = 16;
    memcpy(want + w, "\x00\x00\x00\x05plc-7", 9);
    w += 9;
    memcpy(want + w, "\x01\x02\x03\x04\x05\x06\x07\x07", 8);
    w += 8;
    memcpy(want + w, "\x01\x02\x03\x04\x05\x06\x07\x08", 8);
    w += 8;
    memcpy(want + w, "\x00\x00\x00\x20", 4);
    w += 4;
    memcpy(want + w, key, 32);
    w += 32;
    memcpy(want + w, nonce, 32);
    w += 32;
    CHECK_EQ_INT(n, w);
    CHECK(memcmp(got, want, w) == 0);
    /* And the domain's builder agrees, for several ids, epochs and key
     * lengths (Ed25519 32, P-256 65). */
    static const char *const ids[] = {"", "a", "plc-0001", "x/y z"};
    uint8_t point[65];
    memset(point, 0x04, sizeof point);
    for (size_t i = 0; i < 4; i++) {
        uint8_t dom[LC_ROTATE_MSG_MAX];
        size_t kl = i % 2 ? sizeof point : sizeof key;
        const uint8_t *kp = i % 2 ? point : key;
        size_t dn = lc_rotate_message(ids[i], i * 1000 + 1, i * 1000 + 2, kp, kl,
                                      nonce, dom, sizeof dom);
        n = cli_rotate_message(ids[i], i * 1000 + 1, i * 1000 + 2, kp, kl, nonce,
                               got, sizeof got);
        CHECK(n > 0);
        CHECK_EQ_INT(n, dn);
        CHECK(memcmp(got, dom, n) == 0);
    }
    char longid[CLI_DEVICE_ID_MAX + 2];
    memset(longid, 'a', sizeof longid - 1);
    longid[sizeof longid - 1] = '\0';
    CHECK_EQ_INT(cli_rotate_message(longid, 1, 2, key, sizeof key, nonce, got,
                                    sizeof got), 0);
    /* The longest id with the longest key fits the declared maximum. */
    longid[CLI_DEVICE_ID_MAX] = '\0';
    CHECK_EQ_INT(cli_rotate_message(longid, 1, 2, point, sizeof point, nonce,
                                    got, sizeof got), CLI_ROTATE_MSG_MAX);
    uint8_t big[DEVKEY_CANON_MAX + 1] = {0};
    CHECK_EQ_INT(cli_rotate_message("a", 1, 2, big, sizeof big, nonce, got,
                                    sizeof got), 0);
}

TEST(telemetry_message_matches_domain)
{
    uint8_t d[32], got[CLI_TELEMETRY_MSG_MAX], dom[FRESH_MSG_MAX];
    memset(d, 0x5a, sizeof d);
    size_t n = cli_telemetry_message("dev-1", 3, 99, d, got, sizeof got);
    size_t dn = fresh_message("dev-1", 3, 99, d, dom, sizeof dom);
    CHECK(n > 0);
    CHECK_EQ_INT(n, dn);
    CHECK(memcmp(got, dom, n) == 0);
    CHECK(memcmp(got, "warden.telemetry.v1\x00\x00\x00\x05" "dev-1", 28) == 0);
}

/* The two rotation signatures, as `device rotate-key` makes them: the new
 * key (a PEM of alg) proves possession and the current key (a PEM of
 * cur_alg) consents, both over the message binding the new key's
 * canonical form. The domain verifier accepts each with its own key over
 * the domain's message, and refuses them for another epoch, nonce or new
 * key. */
static void pop_roundtrip(enum cli_key_alg alg, enum cli_key_alg cur_alg)
{
    char pem[4096], cpem[4096];
    size_t pl = gen_pem(alg, pem, sizeof pem);
    size_t cpl = gen_pem(cur_alg, cpem, sizeof cpem);
    CHECK(pl > 0 && cpl > 0);
    struct cli_privkey *k = NULL, *cur = NULL;
    struct werr e;
    CHECK_EQ_INT(cli_privkey_from_pem(pem, pl, &k, &e), 0);
    CHECK_EQ_INT(cli_privkey_from_pem(cpem, cpl, &cur, &e), 0);
    CHECK_EQ_INT(cli_privkey_alg(k), alg);
    uint8_t pub[CLI_PUBKEY_MAX], cpub[CLI_PUBKEY_MAX], sig[CLI_SIG_MAX],
        csig[CLI_SIG_MAX], msg[CLI_ROTATE_MSG_MAX];
    size_t publen = 0, cpublen = 0, siglen = 0, csiglen = 0;
    CHECK_EQ_INT(cli_privkey_public(k, pub, sizeof pub, &publen, &e), 0);
    CHECK_EQ_INT(cli_privkey_public(cur, cpub, sizeof cpub, &cpublen, &e), 0);
    struct devkey dk, ck;
    CHECK_EQ_INT(devkey_parse((int)alg, pub, publen, &dk, &e), 0);
    CHECK_EQ_INT(devkey_parse((int)cur_alg, cpub, cpublen, &ck, &e), 0);
    uint8_t nonce[32];
    memset(nonce, 7, sizeof nonce);
    size_t ml = cli_rotate_message("plc-9", 1, 2, dk.canon, dk.canon_len, nonce,
                                   msg, sizeof msg);
    CHECK(ml > 0);
    CHECK_EQ_INT(cli_privkey_sign(k, msg, ml, sig, sizeof sig, &siglen, &e), 0);
    CHECK_EQ_INT(cli_privkey_sign(cur, msg, ml, csig, sizeof csig, &csiglen, &e),
                 0);
    /* What the server checks: the domain's message for epochs 1 -> 2. */
    uint8_t dom[LC_ROTATE_MSG_MAX];
    size_t dl = lc_rotate_message("plc-9", 1, 2, dk.canon, dk.canon_len, nonce,
                                  dom, sizeof dom);
    CHECK_EQ_INT(devkey_verify(dk.alg, dk.canon, dk.canon_len, dom, dl, sig,
                               siglen, &e), 0);
    CHECK_EQ_INT(devkey_verify(ck.alg, ck.canon, ck.canon_len, dom, dl, csig,
                               csiglen, &e), 0);
    /* Each signature is its own key's: swapped, both refused. */
    CHECK_EQ_INT(devkey_verify(ck.alg, ck.canon, ck.canon_len, dom, dl, sig,
                               siglen, &e), WERR_PERM);
    CHECK_EQ_INT(devkey_verify(dk.alg, dk.canon, dk.canon_len, dom, dl, csig,
                               csiglen, &e), WERR_PERM);
    /* Another epoch, another new key (the current key's consent names the
     * new key), or another nonce: refused. */
    dl = lc_rotate_message("plc-9", 2, 3, dk.canon, dk.canon_len, nonce, dom,
                           sizeof dom);
    CHECK_EQ_INT(devkey_verify(dk.alg, dk.canon, dk.canon_len, dom, dl, sig,
                               siglen, &e), WERR_PERM);
    dl = lc_rotate_message("plc-9", 1, 2, ck.canon, ck.canon_len, nonce, dom,
                           sizeof dom);
    CHECK_EQ_INT(devkey_verify(ck.alg, ck.canon, ck.canon_len, dom, dl, csig,
                               csiglen, &e), WERR_PERM);
    nonce[0] ^= 1;
    dl = lc_rotate_message("plc-9", 1, 2, dk.canon, dk.canon_len, nonce, dom,
                           sizeof dom);
    CHECK_EQ_INT(devkey_verify(dk.alg, dk.canon, dk.canon_len, dom, dl, sig,
                               siglen, &e), WERR_PERM);
    CHECK_EQ_INT(devkey_verify(ck.alg, ck.canon, ck.canon_len, dom, dl, csig,
                               csiglen, &e), WERR_PERM);
    /* Telemetry too. */
    uint8_t dg[32], tm[CLI_TELEMETRY_MSG_MAX];
    CHECK_EQ_INT(cli_sha256((const uint8_t *)"hello", 5, dg, &e), 0);
    size_t tl = cli_telemetry_message("plc-9", 2, 41, dg, tm, sizeof tm);
    CHECK_EQ_INT(cli_privkey_sign(k, tm, tl, sig, sizeof sig, &siglen, &e), 0);
    CHECK_EQ_INT(devkey_verify(dk.alg, dk.canon, dk.canon_len, tm, tl, sig,
                               siglen, &e), 0);
    cli_privkey_free(cur);
    cli_privkey_free(k);
}

TEST(pop_ed25519)
{
    pop_roundtrip(CLI_KEY_ALG_ED25519, CLI_KEY_ALG_ED25519);
}

TEST(pop_p256)
{
    pop_roundtrip(CLI_KEY_ALG_P256, CLI_KEY_ALG_P256);
}

TEST(pop_across_algorithms)
{
    pop_roundtrip(CLI_KEY_ALG_P256, CLI_KEY_ALG_ED25519);
    pop_roundtrip(CLI_KEY_ALG_ED25519, CLI_KEY_ALG_P256);
}

TEST(privkey_rejects)
{
    struct cli_privkey *k = NULL;
    struct werr e;
    const char *junk = "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n";
    CHECK(cli_privkey_from_pem(junk, strlen(junk), &k, &e) != 0);
    CHECK(k == NULL);
    /* An RSA key is neither algorithm. */
    EVP_PKEY *rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
    BIO *b = BIO_new(BIO_s_mem());
    PEM_write_bio_PrivateKey(b, rsa, NULL, NULL, 0, NULL, NULL);
    char *p;
    long n = BIO_get_mem_data(b, &p);
    CHECK_EQ_INT(cli_privkey_from_pem(p, (size_t)n, &k, &e), WERR_INVALID);
    BIO_free(b);
    EVP_PKEY_free(rsa);
    CHECK(cli_privkey_from_file("/nonexistent/key.pem", &k, &e) == WERR_IO);
}

int main(void)
{
    RUN(rotate_message_is_the_documented_form);
    RUN(telemetry_message_matches_domain);
    RUN(pop_ed25519);
    RUN(pop_p256);
    RUN(pop_across_algorithms);
    RUN(privkey_rejects);
    return unit_done();
}
