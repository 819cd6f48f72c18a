/* sign.h - what a device signs, built and signed on the operator's side:
 * the key-rotation message (signed by the new key and by the current one)
 * and telemetry envelopes
 * (docs/freshness.md). `wardenctl device rotate-key` and `telemetry
 * submit` use it; tests/unit/test_cli_sign.c checks the bytes against the
 * domain's own builders and the signatures with the domain's verifier.
 *
 * Messages (integers big-endian, len = u32 BE byte length; the tag is raw
 * bytes, not length-prefixed):
 *   rotation   "warden.rotate.v2"    || len || device_id
 *              || u64 current_key_epoch || u64 new_key_epoch
 *              || len || new public key, canonical (Ed25519 32 raw bytes,
 *                 P-256 the 65-byte uncompressed point) || nonce (32)
 *   telemetry  "warden.telemetry.v1" || len || device_id || u64 key_epoch
 *              || u64 counter || SHA-256(payload) (32)
 * Signatures: Ed25519 (PureEdDSA, 64 raw bytes) or ECDSA P-256 with SHA-256
 * (DER), by the key's type. */
#ifndef WARDEN_CLI_SIGN_H
#define WARDEN_CLI_SIGN_H

#include <stddef.h>
#include <stdint.h>

#include "../common/err.h"
#include "args.h"

#define CLI_ROTATE_TAG "warden.rotate.v2"
#define CLI_TELEMETRY_TAG "warden.telemetry.v1"
#define CLI_NONCE_LEN 32
/* Device ids, as the server bounds them (INV_DEVICE_ID_MAX). */
#define CLI_DEVICE_ID_MAX 128
/* Longest canonical public key (the P-256 point; DEVKEY_CANON_MAX). */
#define CLI_CANON_KEY_MAX 65
#define CLI_ROTATE_MSG_MAX                                                 \
    (sizeof CLI_ROTATE_TAG - 1 + 4 + CLI_DEVICE_ID_MAX + 8 + 8 + 4 +       \
     CLI_CANON_KEY_MAX + CLI_NONCE_LEN)
#define CLI_TELEMETRY_MSG_MAX \
    (sizeof CLI_TELEMETRY_TAG - 1 + 4 + CLI_DEVICE_ID_MAX + 8 + 8 + 32)
/* Ed25519 64, ECDSA P-256 DER at most 72. */
#define CLI_SIG_MAX 80

/* Build a message into buf (cap bytes). Return its length, or 0 when the
 * device id is over CLI_DEVICE_ID_MAX, the key over CLI_CANON_KEY_MAX, or
 * cap is too small. new_key (borrowed) must already be canonical. */
size_t cli_rotate_message(const char *device_id, uint64_t cur_key_epoch,
                          uint64_t new_key_epoch, const uint8_t *new_key,
                          size_t new_key_len,
                          const uint8_t nonce[CLI_NONCE_LEN], uint8_t *buf,
                          size_t cap);
size_t cli_telemetry_message(const char *device_id, uint64_t key_epoch,
                             uint64_t counter, const uint8_t digest[32],
                             uint8_t *buf, size_t cap);

/* A device private key (Ed25519 or P-256), loaded from PEM ("PRIVATE KEY",
 * PKCS#8, or "EC PRIVATE KEY"; unencrypted). */
struct cli_privkey;

/* Load from PEM text / a file (at most CLI_PEM_FILE_MAX bytes). 0, or
 * WERR_INVALID (not a private key, another algorithm or curve), WERR_IO.
 * Free with cli_privkey_free. */
int cli_privkey_from_pem(const char *pem, size_t len, struct cli_privkey **out,
                         struct werr *e);
int cli_privkey_from_file(const char *path, struct cli_privkey **out,
                          struct werr *e);
void cli_privkey_free(struct cli_privkey *k);

enum cli_key_alg cli_privkey_alg(const struct cli_privkey *k);

/* The public half in warden's wire form (Ed25519 raw 32 bytes, P-256 DER
 * SPKI, like cli/pubkey.h). 0 or WERR_LIMIT. */
int cli_privkey_public(const struct cli_privkey *k, uint8_t *out, size_t cap,
                       size_t *len, struct werr *e);

/* Sign msg. sig holds at least CLI_SIG_MAX bytes. 0 or WERR_INTERNAL. */
int cli_privkey_sign(const struct cli_privkey *k, const uint8_t *msg,
                     size_t len, uint8_t *sig, size_t cap, size_t *sig_len,
                     struct werr *e);

/* SHA-256 of data, for payload digests. 0 or WERR_INTERNAL. */
int cli_sha256(const uint8_t *data, size_t len, uint8_t out[32],
               struct werr *e);

#endif
