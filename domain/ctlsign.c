/* ctlsign.c - command key rotation and control-command issuing (contract:
 * ctlsign.h). */
#include "ctlsign.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>

#include "inv_int.h"
#include "lifecycle.h"

#define KEY_CURRENT "current"
#define KID_PREFIX "kid/"
#define KID_KEY_MAX (sizeof KID_PREFIX - 1 + CTL_KEY_ID_MAX)
#define REC_MAX 256 /* a packed CommandKeyRecord: two 32-byte keys + id */

static size_t kid_key(const char *kid, char out[KID_KEY_MAX + 1])
{
    size_t n = strlen(kid);
    memcpy(out, KID_PREFIX, sizeof KID_PREFIX - 1);
    memcpy(out + sizeof KID_PREFIX - 1, kid, n);
    return sizeof KID_PREFIX - 1 + n;
}

static int put_rec(struct inv *inv, struct store_txn *t, const char *k,
                   size_t klen, const Warden__V1__CommandKeyRecord *r,
                   unsigned flags, struct werr *e)
{
    uint8_t buf[REC_MAX];
    size_t n = warden__v1__command_key_record__get_packed_size(r);
    if (n > sizeof buf) {
        return werr_set(e, WERR_INTERNAL, "command key record of %zu bytes", n);
    }
    warden__v1__command_key_record__pack(r, buf);
    int rc = store_put(t, inv->ctl_keys, k, klen, buf, n, flags, e);
    OPENSSL_cleanse(buf, sizeof buf);
    return rc;
}

static int get_rec(struct inv *inv, struct store_txn *t, const char *k,
                   size_t klen, Warden__V1__CommandKeyRecord **out,
                   struct werr *e)
{
    struct store_val v;
    int rc = store_get(t, inv->ctl_keys, k, klen, &v, e);
    if (rc) {
        return rc;
    }
    *out = warden__v1__command_key_record__unpack(NULL, v.len, v.data);
    if (*out == NULL || (*out)->public_key.len != CTL_PUBKEY_LEN) {
        if (*out != NULL) {
            warden__v1__command_key_record__free_unpacked(*out, NULL);
        }
        return werr_set(e, WERR_CORRUPT, "command key record %.*s is corrupt",
                        (int)klen, k);
    }
    return 0;
}

static void rec_free(Warden__V1__CommandKeyRecord *r)
{
    if (r != NULL) {
        if (r->private_key.data != NULL) {
            OPENSSL_cleanse(r->private_key.data, r->private_key.len);
        }
        warden__v1__command_key_record__free_unpacked(r, NULL);
    }
}

int ctl_rotate_key(struct inv *inv, struct store_txn *t,
                   const struct dom_ctx *ctx,
                   const Warden__V1__RotateCommandKeyOp *op,
                   uint8_t pub[CTL_PUBKEY_LEN], struct werr *e)
{
    int rc;
    if ((rc = lc_may_act(ctx->who, NULL, WROLE_ADMIN | WROLE_PEER,
                         "rotate the command key", e)) != 0) {
        return rc;
    }
    if ((rc = inv__check_gateway("key_id", op->key_id, e)) != 0) {
        return rc;
    }
    if (op->private_key.len != CTL_PRIVKEY_LEN) {
        return werr_set(e, WERR_INVALID, "private_key must be %d bytes, got %zu",
                        CTL_PRIVKEY_LEN, op->private_key.len);
    }
    EVP_PKEY *pk = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL,
                                                op->private_key.data,
                                                op->private_key.len);
    size_t pl = CTL_PUBKEY_LEN;
    if (pk == NULL || EVP_PKEY_get_raw_public_key(pk, pub, &pl) != 1 ||
        pl != CTL_PUBKEY_LEN) {
        EVP_PKEY_free(pk);
        ERR_clear_error();
        return werr_set(e, WERR_INVALID, "private_key is not an Ed25519 key");
    }
    EVP_PKEY_free(pk);

    char kk[KID_KEY_MAX + 1];
    size_t kl = kid_key(op->key_id, kk);
    Warden__V1__CommandKeyRecord r = WARDEN__V1__COMMAND_KEY_RECORD__INIT;
    r.key_id = op->key_id;
    r.public_key.data = pub;
    r.public_key.len = CTL_PUBKEY_LEN;
    r.created_index = ctx->index;
    /* Public history first: NOOVERWRITE refuses a reused key id. */
    rc = put_rec(inv, t, kk, kl, &r, STORE_NOOVERWRITE, e);
    if (rc == WERR_EXISTS) {
        return werr_set(e, WERR_EXISTS, "command key id %s was used before",
                        op->key_id);
    }
    if (rc) {
        return rc;
    }
    r.private_key = op->private_key;
    return put_rec(inv, t, KEY_CURRENT, strlen(KEY_CURRENT), &r, 0, e);
}

int ctl_get_key(struct inv *inv, struct store_txn *t, const char *key_id,
                char key_id_out[CTL_KEY_ID_MAX + 1],
                uint8_t pub[CTL_PUBKEY_LEN], uint64_t *created_index,
                int *current, struct werr *e)
{
    Warden__V1__CommandKeyRecord *cur = NULL, *r = NULL;
    int rc = get_rec(inv, t, KEY_CURRENT, strlen(KEY_CURRENT), &cur, e);
    if (rc != 0 && rc != WERR_NOTFOUND) {
        return rc;
    }
    if (key_id == NULL || key_id[0] == '\0') {
        if (cur == NULL) {
            return werr_set(e, WERR_NOTFOUND, "no command key yet");
        }
        r = cur;
    } else {
        if (strlen(key_id) > CTL_KEY_ID_MAX) {
            rec_free(cur);
            return werr_set(e, WERR_INVALID, "key_id longer than %d",
                            CTL_KEY_ID_MAX);
        }
        char kk[KID_KEY_MAX + 1];
        size_t kl = kid_key(key_id, kk);
        rc = get_rec(inv, t, kk, kl, &r, e);
        if (rc) {
            rec_free(cur);
            return rc == WERR_NOTFOUND
                       ? werr_set(e, WERR_NOTFOUND, "no command key %s", key_id)
                       : rc;
        }
    }
    snprintf(key_id_out, CTL_KEY_ID_MAX + 1, "%s", r->key_id);
    memcpy(pub, r->public_key.data, CTL_PUBKEY_LEN);
    *created_index = r->created_index;
    *current = cur != NULL && strcmp(cur->key_id, r->key_id) == 0;
    if (r != cur) {
        rec_free(r);
    }
    rec_free(cur);
    return 0;
}

int ctl_last_seq(struct inv *inv, struct store_txn *t, const char *device_id,
                 uint64_t *out, struct werr *e)
{
    struct store_val v;
    int rc = store_get(t, inv->ctl_seq, device_id, strlen(device_id), &v, e);
    if (rc == WERR_NOTFOUND) {
        *out = 0;
        return 0;
    }
    if (rc) {
        return rc;
    }
    if (v.len != 8) {
        return werr_set(e, WERR_CORRUPT, "ctl.seq record of %zu bytes", v.len);
    }
    *out = inv__get_be64(v.data);
    return 0;
}

void ctl_issued_free(struct ctl_issued *c)
{
    if (c != NULL) {
        free(c->envelope);
        c->envelope = NULL;
        c->envelope_len = 0;
    }
}

static int sign(const Warden__V1__CommandKeyRecord *k, const uint8_t *msg,
                size_t n, uint8_t sig[CTL_SIG_LEN], struct werr *e)
{
    EVP_PKEY *pk = EVP_PKEY_new_raw_private_key(
        EVP_PKEY_ED25519, NULL, k->private_key.data, k->private_key.len);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    size_t sl = CTL_SIG_LEN;
    int ok = pk != NULL && md != NULL &&
             EVP_DigestSignInit(md, NULL, NULL, NULL, pk) == 1 &&
             EVP_DigestSign(md, sig, &sl, msg, n) == 1 && sl == CTL_SIG_LEN;
    EVP_MD_CTX_free(md);
    EVP_PKEY_free(pk);
    if (!ok) {
        ERR_clear_error();
        return werr_set(e, WERR_INTERNAL, "signing with command key %s failed",
                        k->key_id);
    }
    return 0;
}

int ctl_issue(struct inv *inv, struct store_txn *t, const struct dom_ctx *ctx,
              const Warden__V1__IssueCommandRequest *req,
              struct ctl_issued *out, struct werr *e)
{
    int rc;
    memset(out, 0, sizeof *out);
    if (req->payload.len > CTL_PAYLOAD_MAX) {
        return werr_set(e, WERR_INVALID, "payload is %zu bytes, max %zu",
                        req->payload.len, CTL_PAYLOAD_MAX);
    }
    Warden__V1__Device *d;
    if ((rc = inv__load(inv, t, req->device_id, &d, e)) != 0) {
        return rc;
    }
    if ((rc = lc_may_act(ctx->who, d,
                         WROLE_ADMIN | WROLE_OPERATOR | WROLE_ROLLOUT,
                         "issue commands", e)) != 0) {
        inv_device_free(d);
        return rc;
    }
    if (d->state != WARDEN__V1__DEVICE_STATE__DEVICE_STATE_ACTIVE &&
        d->state != WARDEN__V1__DEVICE_STATE__DEVICE_STATE_QUARANTINED) {
        rc = werr_set(e, WERR_PRECOND, "device %s is %s, not ACTIVE or QUARANTINED",
                      d->device_id, lc_state_name((int)d->state));
        inv_device_free(d);
        return rc;
    }
    uint64_t key_epoch = d->key_epoch;
    inv_device_free(d);

    Warden__V1__CommandKeyRecord *k = NULL;
    rc = get_rec(inv, t, KEY_CURRENT, strlen(KEY_CURRENT), &k, e);
    if (rc == WERR_NOTFOUND) {
        return werr_set(e, WERR_PRECOND, "no command key: rotate one in first");
    }
    if (rc) {
        return rc;
    }
    uint64_t seq = 0;
    if ((rc = ctl_last_seq(inv, t, req->device_id, &seq, e)) != 0) {
        goto out_key;
    }
    seq++;
    struct ctl_envelope env;
    memset(&env, 0, sizeof env);
    snprintf(env.device_id, sizeof env.device_id, "%s", req->device_id);
    snprintf(env.key_id, sizeof env.key_id, "%s", k->key_id);
    env.key_epoch = key_epoch;
    env.seq = seq;
    env.time_ms = ctx->time_ms;
    env.payload = req->payload.data;
    env.payload_len = req->payload.len;
    size_t cap = CTL_ENVELOPE_MAX;
    out->envelope = malloc(cap);
    if (out->envelope == NULL) {
        rc = werr_set(e, WERR_NOMEM, "envelope of %zu bytes", cap);
        goto out_key;
    }
    out->envelope_len = ctl_envelope_encode(&env, out->envelope, cap);
    if (out->envelope_len == 0) {
        rc = werr_set(e, WERR_INTERNAL, "envelope encoding failed");
        goto out_free;
    }
    if ((rc = sign(k, out->envelope, out->envelope_len, out->sig, e)) != 0) {
        goto out_free;
    }
    uint8_t b[8];
    inv__put_be64(b, seq);
    if ((rc = store_put(t, inv->ctl_seq, req->device_id, strlen(req->device_id),
                        b, sizeof b, 0, e)) != 0) {
        goto out_free;
    }
    snprintf(out->key_id, sizeof out->key_id, "%s", k->key_id);
    out->seq = seq;
    out->key_epoch = key_epoch;
    rec_free(k);
    return 0;

out_free:
    ctl_issued_free(out);
out_key:
    rec_free(k);
    return rc;
}
