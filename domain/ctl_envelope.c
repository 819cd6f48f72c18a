/* ctl_envelope.c - control envelope codec and verifier (contract:
 * ctl_envelope.h). No store calls: cli/ links this file. */
#include "ctl_envelope.h"

#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>

#include "canon.h"

size_t ctl_envelope_encode(const struct ctl_envelope *env, uint8_t *buf,
                           size_t cap)
{
    size_t dn = strnlen(env->device_id, sizeof env->device_id);
    size_t kn = strnlen(env->key_id, sizeof env->key_id);
    if (dn == 0 || dn > CTL_DEVICE_ID_MAX || kn == 0 || kn > CTL_KEY_ID_MAX ||
        env->payload_len > CTL_PAYLOAD_MAX ||
        (env->payload == NULL && env->payload_len != 0)) {
        return 0;
    }
    struct canon_w w;
    canon_w_init(&w, buf, cap);
    canon_str(&w, CTL_TAG);
    canon_bytes(&w, env->device_id, dn);
    canon_bytes(&w, env->key_id, kn);
    canon_u64(&w, env->key_epoch);
    canon_u64(&w, env->seq);
    canon_u64(&w, env->time_ms);
    canon_bytes(&w, env->payload, env->payload_len);
    return w.overflow ? 0 : w.len;
}

static int get_str(struct canon_r *r, char *dst, size_t max)
{
    size_t n;
    const uint8_t *d = canon_get_bytes(r, max, &n);
    if (d == NULL || n == 0 || memchr(d, 0, n) != NULL) {
        r->bad = 1;
        return -1;
    }
    memcpy(dst, d, n);
    dst[n] = '\0';
    return 0;
}

int ctl_envelope_decode(const uint8_t *buf, size_t len,
                        struct ctl_envelope *out, struct werr *e)
{
    memset(out, 0, sizeof *out);
    struct canon_r r;
    canon_r_init(&r, buf, len);
    size_t tn;
    const uint8_t *tag = canon_get_bytes(&r, sizeof CTL_TAG, &tn);
    if (tag == NULL || tn != sizeof CTL_TAG - 1 ||
        memcmp(tag, CTL_TAG, tn) != 0) {
        return werr_set(e, WERR_INVALID, "envelope: not a %s envelope", CTL_TAG);
    }
    get_str(&r, out->device_id, CTL_DEVICE_ID_MAX);
    get_str(&r, out->key_id, CTL_KEY_ID_MAX);
    out->key_epoch = canon_get_u64(&r);
    out->seq = canon_get_u64(&r);
    out->time_ms = canon_get_u64(&r);
    out->payload = canon_get_bytes(&r, CTL_PAYLOAD_MAX, &out->payload_len);
    if (r.bad) {
        return werr_set(e, WERR_INVALID, "envelope: truncated or over a bound");
    }
    if (r.left != 0) {
        return werr_set(e, WERR_INVALID, "envelope: %zu trailing bytes", r.left);
    }
    return 0;
}

const char *ctl_verdict_name(int v)
{
    switch (v) {
    case CTL_OK:
        return "ok";
    case CTL_MALFORMED:
        return "malformed";
    case CTL_BAD_SIGNATURE:
        return "bad signature";
    case CTL_WRONG_DEVICE:
        return "wrong device";
    case CTL_STALE_EPOCH:
        return "stale key epoch";
    case CTL_REPLAY:
        return "replay";
    default:
        return "unknown";
    }
}

static int ed25519_ok(const uint8_t *msg, size_t n, const uint8_t *sig,
                      size_t sig_len, const uint8_t pub[CTL_PUBKEY_LEN])
{
    if (sig == NULL || sig_len != CTL_SIG_LEN) {
        return 0;
    }
    EVP_PKEY *pk =
        EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, pub, CTL_PUBKEY_LEN);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int ok = pk != NULL && md != NULL &&
             EVP_DigestVerifyInit(md, NULL, NULL, NULL, pk) == 1 &&
             EVP_DigestVerify(md, sig, sig_len, msg, n) == 1;
    EVP_MD_CTX_free(md);
    EVP_PKEY_free(pk);
    ERR_clear_error();
    return ok;
}

int ctl_verify(const uint8_t *env, size_t env_len, const uint8_t *sig,
               size_t sig_len, const uint8_t pubkey[CTL_PUBKEY_LEN],
               const char *expected_device_id, uint64_t current_key_epoch,
               uint64_t last_seen_seq, struct ctl_envelope *out,
               struct werr *e)
{
    struct ctl_envelope local;
    struct ctl_envelope *m = out ? out : &local;
    if (env == NULL || env_len > CTL_ENVELOPE_MAX ||
        ctl_envelope_decode(env, env_len, m, e) != 0) {
        if (env == NULL || env_len > CTL_ENVELOPE_MAX) {
            werr_set(e, WERR_INVALID, "envelope: missing or over %zu bytes",
                     (size_t)CTL_ENVELOPE_MAX);
        }
        return CTL_MALFORMED;
    }
    if (!ed25519_ok(env, env_len, sig, sig_len, pubkey)) {
        werr_set(e, WERR_PERM, "envelope signature does not verify");
        return CTL_BAD_SIGNATURE;
    }
    if (expected_device_id == NULL ||
        strcmp(m->device_id, expected_device_id) != 0) {
        werr_set(e, WERR_PERM, "envelope is for device %s", m->device_id);
        return CTL_WRONG_DEVICE;
    }
    if (m->key_epoch != current_key_epoch) {
        werr_set(e, WERR_PERM, "envelope is for key epoch %llu, current is %llu",
                 (unsigned long long)m->key_epoch,
                 (unsigned long long)current_key_epoch);
        return CTL_STALE_EPOCH;
    }
    if (m->seq <= last_seen_seq) {
        werr_set(e, WERR_PERM, "envelope seq %llu <= last seen %llu",
                 (unsigned long long)m->seq, (unsigned long long)last_seen_seq);
        return CTL_REPLAY;
    }
    return CTL_OK;
}
