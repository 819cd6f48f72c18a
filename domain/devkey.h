/* devkey.h - device public keys: parse, validate and canonicalize with
 * OpenSSL, and fingerprint.
 *
 * Pure and deterministic (no clock, no randomness): usable inside the state
 * machine. Accepted encodings (proto/warden/v1/inventory.proto KeyAlgorithm):
 *   ED25519     exactly 32 raw bytes (RFC 8032 §5.1.5), loadable by
 *               EVP_PKEY_new_raw_public_key().
 *   ECDSA_P256  DER SubjectPublicKeyInfo (RFC 5480) naming prime256v1, or a
 *               65-byte uncompressed SEC1 point 0x04||X||Y (SEC 1 §2.3.3).
 *               The point must decode on the curve (EVP_PKEY_public_check).
 * Canonical form, stored and fingerprinted: Ed25519 the 32 raw bytes; P-256
 * the 65-byte uncompressed point, whatever the input encoding, so one key
 * has one fingerprint. */
#ifndef WARDEN_DOMAIN_DEVKEY_H
#define WARDEN_DOMAIN_DEVKEY_H

#include <stddef.h>
#include <stdint.h>

#include "../common/err.h"

enum devkey_alg {
    DEVKEY_ED25519 = 1,    /* == WARDEN__V1__KEY_ALGORITHM__KEY_ALGORITHM_ED25519 */
    DEVKEY_ECDSA_P256 = 2, /* == ..._ECDSA_P256 */
};

/* Longest input accepted before OpenSSL sees it: a P-256 SPKI is 91 bytes;
 * anything much bigger is not a key we take, and parsing it is wasted work. */
#define DEVKEY_INPUT_MAX 256
/* Longest canonical key (the 65-byte SEC1 point). */
#define DEVKEY_CANON_MAX 65
#define DEVKEY_ED25519_LEN 32
#define DEVKEY_P256_POINT_LEN 65
#define DEVKEY_FINGERPRINT_LEN 32 /* SHA-256 */

struct devkey {
    int alg;                         /* enum devkey_alg */
    uint8_t canon[DEVKEY_CANON_MAX]; /* canonical public key */
    size_t canon_len;
    uint8_t fingerprint[DEVKEY_FINGERPRINT_LEN]; /* SHA-256(canon) */
};

/* Parse and validate `len` bytes of `alg` key into *out. Returns 0, or
 * WERR_INVALID with a message saying what is wrong (unknown algorithm, bad
 * length, not on the curve, wrong curve, trailing bytes), or WERR_NOMEM /
 * WERR_INTERNAL when OpenSSL fails for reasons unrelated to the input. */
int devkey_parse(int alg, const uint8_t *key, size_t len, struct devkey *out,
                 struct werr *e);

/* ---- issue 4: signatures ------------------------------------------------
 * Longest signature accepted: Ed25519 is 64 bytes (RFC 8032 §5.1.6); an
 * ECDSA P-256 DER signature is at most 72 (SEQUENCE of two INTEGERs of up
 * to 33 bytes). Anything longer is refused before OpenSSL parses it. */
#define DEVKEY_SIG_MAX 80

/* Verify sig over msg with a key in canonical form (devkey_parse()).
 * Ed25519: PureEdDSA (RFC 8032), EVP_DigestVerify with a NULL digest.
 * ECDSA_P256: ECDSA with SHA-256 (FIPS 186-4), sig DER-encoded
 * (RFC 3279 §2.2.3). Pure and deterministic.
 * Returns 0 if valid, WERR_PERM if not (any malformed or wrong signature),
 * WERR_INVALID for an unusable key, WERR_NOMEM when OpenSSL cannot
 * allocate. */
int devkey_verify(int alg, const uint8_t *canon, size_t canon_len,
                  const uint8_t *msg, size_t msg_len, const uint8_t *sig,
                  size_t sig_len, struct werr *e);

/* Does a parsed key equal the canonical key (alg, canon)? */
int devkey_equal(const struct devkey *k, int alg, const uint8_t *canon,
                 size_t canon_len);

#endif
