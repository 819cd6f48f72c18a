/* ctl_envelope.h - cloud -> device control envelopes: canonical encoding
 * and the verifier a device or gateway runs (issue 4; docs/freshness.md).
 * Pure: no store, no clock. cli/ links ctl_envelope.c for
 * `wardenctl verify-command`.
 *
 * Envelope v1 (integers big-endian, str/bytes = u32 BE length || bytes):
 *   str  "warden.ctl.v1"
 *   str  device_id
 *   str  key_id          (the command key that signs it)
 *   u64  key_epoch       (the device's key epoch when issued)
 *   u64  seq             (per device, 1, 2, 3, ...)
 *   u64  cluster_time_ms
 *   bytes payload
 * No trailing bytes. The signature is Ed25519 (RFC 8032) over exactly
 * these bytes, by the cluster command key named key_id. */
#ifndef WARDEN_DOMAIN_CTL_ENVELOPE_H
#define WARDEN_DOMAIN_CTL_ENVELOPE_H

#include <stddef.h>
#include <stdint.h>

#include "../common/err.h"

#define CTL_TAG "warden.ctl.v1"
#define CTL_DEVICE_ID_MAX 128 /* == INV_DEVICE_ID_MAX */
#define CTL_KEY_ID_MAX 64
/* Control payloads travel through Raft and to constrained devices. */
#define CTL_PAYLOAD_MAX ((size_t)16 << 10)
#define CTL_PUBKEY_LEN 32
#define CTL_PRIVKEY_LEN 32
#define CTL_SIG_LEN 64
#define CTL_ENVELOPE_MAX                                                   \
    (4 + sizeof CTL_TAG + 4 + CTL_DEVICE_ID_MAX + 4 + CTL_KEY_ID_MAX + 8 + \
     8 + 8 + 4 + CTL_PAYLOAD_MAX)

struct ctl_envelope {
    char device_id[CTL_DEVICE_ID_MAX + 1];
    char key_id[CTL_KEY_ID_MAX + 1];
    uint64_t key_epoch;
    uint64_t seq;
    uint64_t time_ms;
    const uint8_t *payload; /* borrowed (encode: from caller; decode: into
                               the envelope bytes) */
    size_t payload_len;
};

/* Encode into buf (cap bytes). Returns the length, or 0 if a field is over
 * its bound or cap is too small. */
size_t ctl_envelope_encode(const struct ctl_envelope *env, uint8_t *buf,
                           size_t cap);

/* Strict decode (exact tag, bounds, no trailing bytes). 0 or
 * WERR_INVALID. */
int ctl_envelope_decode(const uint8_t *buf, size_t len,
                        struct ctl_envelope *out, struct werr *e);

enum ctl_verdict {
    CTL_OK = 0,
    CTL_MALFORMED = 1,     /* does not decode */
    CTL_BAD_SIGNATURE = 2, /* not signed by this key */
    CTL_WRONG_DEVICE = 3,  /* signed, but for another device */
    CTL_STALE_EPOCH = 4,   /* signed for a key epoch that is not current */
    CTL_REPLAY = 5,        /* seq <= the last one this device accepted */
};
const char *ctl_verdict_name(int v);

/* What a device does with an envelope: decode, verify the Ed25519
 * signature with the command public key (CTL_PUBKEY_LEN raw bytes), then
 * check device id, key epoch and seq > last_seen_seq, in that order (no
 * field is trusted before the signature). Returns a ctl_verdict; on CTL_OK
 * *out (if non-NULL) holds the envelope (payload borrows env). e says why
 * on a rejection. The caller records seq as last seen only on CTL_OK. */
int ctl_verify(const uint8_t *env, size_t env_len, const uint8_t *sig,
               size_t sig_len, const uint8_t pubkey[CTL_PUBKEY_LEN],
               const char *expected_device_id, uint64_t current_key_epoch,
               uint64_t last_seen_seq, struct ctl_envelope *out,
               struct werr *e);

#endif
