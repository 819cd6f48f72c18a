/* pubkey.h - turn a PEM public key into warden's wire form.
 *
 * warden.v1.KeyAlgorithm fixes the encoding: Ed25519 keys travel as the raw
 * 32-byte key, P-256 keys as a DER SubjectPublicKeyInfo. The algorithm the
 * user named must match the key in the file; a mismatch is an error, never a
 * silent conversion. */
#ifndef WARDEN_CLI_PUBKEY_H
#define WARDEN_CLI_PUBKEY_H

#include <stddef.h>
#include <stdint.h>

#include "../common/err.h"
#include "args.h"

/* Largest PEM file read: a public key PEM is a few hundred bytes. */
#define CLI_PEM_FILE_MAX (16u << 10)

/* Convert PEM text (len bytes) holding a "PUBLIC KEY" into the wire form
 * for alg, written to out (cap bytes). Returns 0 with *out_len set, or
 * WERR_INVALID (not a public key, wrong algorithm or curve) or WERR_LIMIT,
 * with e->msg saying which. */
int cli_pubkey_from_pem(const char *pem, size_t len, enum cli_key_alg alg,
                        uint8_t *out, size_t cap, size_t *out_len,
                        struct werr *e);

/* Same, reading the PEM from path (at most CLI_PEM_FILE_MAX bytes).
 * WERR_IO when the file cannot be read. */
int cli_pubkey_from_file(const char *path, enum cli_key_alg alg, uint8_t *out,
                         size_t cap, size_t *out_len, struct werr *e);

#endif
