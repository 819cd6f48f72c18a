/* manifest.h - the release manifest a release key signs, built from
 * wardenctl's flags (`rollout release manifest`, docs/cli.md).
 *
 * The bytes are the canonical encoding of docs/rollouts.md ("Releases and
 * the signed manifest"), produced by the domain's own encoder
 * ro_manifest_encode(), so the tool can never sign something the state
 * machine would read differently. What this file adds is the mapping from
 * flags: hex decoding, the bounds, and sorting the model list (the encoding
 * wants it strictly ascending by bytes; people list models in any order).
 * Pure. tests/unit/test_cli_manifest.c. */
#ifndef WARDEN_CLI_MANIFEST_H
#define WARDEN_CLI_MANIFEST_H

#include <stddef.h>
#include <stdint.h>

#include "../common/err.h"
#include "../domain/rollout.h"

/* Fill m from flag values. models (n of them, borrowed) may come in any
 * order; they are sorted, and a repeated model is an error. Returns 0, or
 * WERR_INVALID naming the flag (version empty, longer than RO_VERSION_MAX or
 * with control bytes; counter or size 0; sha not 32 bytes of hex; no model,
 * more than RO_MODELS_MAX, one longer than INV_MODEL_MAX). */
int cli_manifest_build(const char *version, uint64_t counter,
                       const char *sha256_hex, uint64_t size,
                       const char *const *models, size_t n,
                       struct ro_manifest *m, struct werr *e);

/* The canonical bytes of m into buf (at least RO_MANIFEST_MAX bytes).
 * Returns the length, or 0 if the encoder refused m. */
size_t cli_manifest_encode(const struct ro_manifest *m, uint8_t *buf, size_t cap);

#endif
