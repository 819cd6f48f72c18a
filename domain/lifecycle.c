/* lifecycle.c - the device lifecycle state table, re-enroll, rebind and
 * key rotation with proof of possession and current-key consent (contract:
 * lifecycle.h). */
#include "lifecycle.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "access.h"
#include "canon.h"
#include "devkey.h"
#include "inv_int.h"

#define S_PROV WARDEN__V1__DEVICE_STATE__DEVICE_STATE_PROVISIONED
#define S_ACTIVE WARDEN__V1__DEVICE_STATE__DEVICE_STATE_ACTIVE
#define S_QUAR WARDEN__V1__DEVICE_STATE__DEVICE_STATE_QUARANTINED
#define S_REVOKED WARDEN__V1__DEVICE_STATE__DEVICE_STATE_REVOKED
#define N_STATES 5 /* UNSPECIFIED .. REVOKED */

/* Nonce record: nonce || u64 BE issued index || u64 BE key epoch. */
#define NONCE_REC_LEN (LC_NONCE_LEN + 8 + 8)

/* allowed[from][to]: the whole table, in one place (issue 4). */
static const unsigned char allowed[N_STATES][N_STATES] = {
    [S_PROV] = {[S_ACTIVE] = 1, [S_REVOKED] = 1},
    [S_ACTIVE] = {[S_QUAR] = 1, [S_REVOKED] = 1},
    [S_QUAR] = {[S_ACTIVE] = 1, [S_REVOKED] = 1},
    /* REVOKED: terminal for the identity epoch. */
};

int lc_transition_allowed(int from, int to)
{
    if (from < 0 || from >= N_STATES || to < 0 || to >= N_STATES) {
        return 0;
    }
    return allowed[from][to];
}

const char *lc_state_name(int state)
{
    switch (state) {
    case 0:
        return "UNSPECIFIED";
    case S_PROV:
        return "PROVISIONED";
    case S_ACTIVE:
        return "ACTIVE";
    case S_QUAR:
        return "QUARANTINED";
    case S_REVOKED:
        return "REVOKED";
    default:
        return "UNKNOWN";
    }
}

int lc_may_act(const struct principal *who, const Warden__V1__Device *d,
               unsigned roles, const char *what, struct werr *e)
{
    if (who == NULL || (who->role & roles) == 0 ||
        (who->role & (who->role - 1)) != 0) {
        return werr_set(e, WERR_PERM, "role %s may not %s",
                        who ? principal_role_name(who->role) : "none", what);
    }
    /* A gateway acts only for devices bound to it: this bounds what a
     * compromised gateway can do (issue 4, "Gateway binding"). */
    if (who->role == WROLE_GATEWAY && d != NULL &&
        strcmp(who->name, d->gateway_id ? d->gateway_id : "") != 0) {
        return werr_set(e, WERR_PERM, "gateway %s is not bound to device %s",
                        who->name, d->device_id);
    }
    return 0;
}

static void touch(Warden__V1__Device *d, const struct dom_ctx *ctx)
{
    d->updated_index = ctx->index;
    d->updated_time_ms = ctx->time_ms;
}

static int finish(struct inv *inv, struct store_txn *t, Warden__V1__Device *d,
                  Warden__V1__Device **out, struct werr *e)
{
    int rc = inv__store(inv, t, d, e);
    if (rc == 0 && out != NULL) {
        *out = d;
        return 0;
    }
    inv_device_free(d);
    return rc;
}

/* ---- state changes --------------------------------------------------------*/

static int counter_name(int from, int to, uint8_t name[8])
{
    memcpy(name, "lc.rej", 6);
    name[6] = (uint8_t)from;
    name[7] = (uint8_t)to;
    return 8;
}

int lc_reject_count_add(struct inv *inv, struct store_txn *t, int from, int to,
                        struct werr *e)
{
    uint8_t n[8];
    if (from < 0 || from >= N_STATES || to < 0 || to > 255) {
        to = 0; /* unknown target states share one bucket */
    }
    return inv__counter_add(inv, t, n, (size_t)counter_name(from, to, n), 1, e);
}

int lc_reject_count(struct inv *inv, struct store_txn *t, int from, int to,
                    uint64_t *out, struct werr *e)
{
    uint8_t n[8];
    return inv__counter_get(inv, t, n, (size_t)counter_name(from, to, n), out,
                            e);
}

int lc_set_state(struct inv *inv, struct store_txn *t,
                 const struct dom_ctx *ctx,
                 const Warden__V1__SetDeviceStateRequest *req,
                 Warden__V1__Device **out, int *from_out, struct werr *e)
{
    int rc;
    if (from_out != NULL) {
        *from_out = 0;
    }
    if ((rc = inv__check_text("reason", req->reason, LC_REASON_MAX, e)) != 0) {
        return rc;
    }
    Warden__V1__Device *d;
    if ((rc = inv__load(inv, t, req->device_id, &d, e)) != 0) {
        return rc;
    }
    if (from_out != NULL) {
        *from_out = (int)d->state;
    }
    if ((rc = lc_may_act(ctx->who, d, WROLE_ADMIN | WROLE_OPERATOR,
                         "change device state", e)) != 0) {
        inv_device_free(d);
        return rc;
    }
    int from = (int)d->state, to = (int)req->state;
    if (!lc_transition_allowed(from, to)) {
        inv_device_free(d);
        return werr_set(e, WERR_PRECOND, "device %s: transition %s -> %s not allowed",
                        req->device_id, lc_state_name(from), lc_state_name(to));
    }
    d->state = req->state;
    touch(d, ctx);
    /* Issue 5: quarantining or revoking a device revokes its access grants
     * in this same txn (docs/access.md). */
    if (to == S_QUAR || to == S_REVOKED) {
        int kind = to == S_QUAR
                       ? WARDEN__V1__REVOCATION_KIND__REVOCATION_KIND_DEVICE_QUARANTINED
                       : WARDEN__V1__REVOCATION_KIND__REVOCATION_KIND_DEVICE_REVOKED;
        if ((rc = acc_on_device_state(inv, t, ctx, d, kind, e)) != 0) {
            inv_device_free(d);
            return rc;
        }
    }
    return finish(inv, t, d, out, e);
}

/* ---- re-enroll, rebind ----------------------------------------------------*/

int lc_reenroll(struct inv *inv, struct store_txn *t,
                const struct dom_ctx *ctx,
                const Warden__V1__ReEnrollDeviceRequest *req,
                Warden__V1__Device **out, struct werr *e)
{
    int rc;
    if (ctx->who == NULL || ctx->who->role != WROLE_ADMIN) {
        return werr_set(e, WERR_PERM, "only an admin may re-enroll a device");
    }
    if (req->attestation_digest.len != INV_ATTESTATION_DIGEST_LEN) {
        return werr_set(e, WERR_INVALID,
                        "attestation_digest must be %d bytes (SHA-256), got %zu",
                        INV_ATTESTATION_DIGEST_LEN, req->attestation_digest.len);
    }
    struct devkey key;
    if ((rc = devkey_parse((int)req->key_algorithm, req->public_key.data,
                           req->public_key.len, &key, e)) != 0) {
        return werr_wrap(e, "re-enroll %s: public_key", req->device_id);
    }
    Warden__V1__Device *d;
    if ((rc = inv__load(inv, t, req->device_id, &d, e)) != 0) {
        return rc;
    }
    if ((rc = inv__set_key(d, key.alg, key.canon, key.canon_len,
                           key.fingerprint, sizeof key.fingerprint, e)) != 0) {
        inv_device_free(d);
        return rc;
    }
    free(d->attestation_digest.data);
    d->attestation_digest.data = NULL;
    d->attestation_digest.len = 0;
    d->attestation_digest.data = malloc(INV_ATTESTATION_DIGEST_LEN);
    if (d->attestation_digest.data == NULL) {
        inv_device_free(d);
        return werr_set(e, WERR_NOMEM, "re-enroll: digest");
    }
    memcpy(d->attestation_digest.data, req->attestation_digest.data,
           INV_ATTESTATION_DIGEST_LEN);
    d->attestation_digest.len = INV_ATTESTATION_DIGEST_LEN;
    d->identity_epoch++;
    d->key_epoch = 1;
    d->state = S_PROV;
    touch(d, ctx);
    /* Issue 5: a new identity starts without the old one's grants. */
    if ((rc = acc_on_device_state(
             inv, t, ctx, d,
             WARDEN__V1__REVOCATION_KIND__REVOCATION_KIND_DEVICE_REENROLLED,
             e)) != 0) {
        inv_device_free(d);
        return rc;
    }
    rc = store_del(t, inv->nonces, req->device_id, strlen(req->device_id), e);
    if (rc != 0 && rc != WERR_NOTFOUND) {
        inv_device_free(d);
        return rc;
    }
    return finish(inv, t, d, out, e);
}

int lc_rebind(struct inv *inv, struct store_txn *t, const struct dom_ctx *ctx,
              const Warden__V1__RebindDeviceRequest *req,
              Warden__V1__Device **out, struct werr *e)
{
    int rc;
    if ((rc = inv__check_gateway("gateway_id", req->gateway_id, e)) != 0) {
        return rc;
    }
    Warden__V1__Device *d;
    if ((rc = inv__load(inv, t, req->device_id, &d, e)) != 0) {
        return rc;
    }
    if ((rc = lc_may_act(ctx->who, d, WROLE_ADMIN | WROLE_OPERATOR,
                         "rebind a device", e)) != 0) {
        inv_device_free(d);
        return rc;
    }
    if (d->state == S_REVOKED) {
        inv_device_free(d);
        return werr_set(e, WERR_PRECOND, "device %s is REVOKED", req->device_id);
    }
    if ((rc = inv__set_str(&d->gateway_id, req->gateway_id, e)) != 0) {
        inv_device_free(d);
        return rc;
    }
    touch(d, ctx);
    return finish(inv, t, d, out, e);
}

/* ---- key rotation ---------------------------------------------------------*/

size_t lc_rotate_message(const char *device_id, uint64_t cur_epoch,
                         uint64_t new_epoch, const uint8_t *new_key,
                         size_t new_key_len, const uint8_t nonce[LC_NONCE_LEN],
                         uint8_t *buf, size_t cap)
{
    size_t n = strlen(device_id);
    if (n > INV_DEVICE_ID_MAX || new_key_len > DEVKEY_CANON_MAX) {
        return 0;
    }
    struct canon_w w;
    canon_w_init(&w, buf, cap);
    canon_raw(&w, LC_ROTATE_TAG, sizeof LC_ROTATE_TAG - 1);
    canon_bytes(&w, device_id, n);
    canon_u64(&w, cur_epoch);
    canon_u64(&w, new_epoch);
    /* The key's length also names its algorithm (32 Ed25519, 65 P-256),
     * so the message cannot be read as another algorithm's key. */
    canon_bytes(&w, new_key, new_key_len);
    canon_raw(&w, nonce, LC_NONCE_LEN);
    return w.overflow ? 0 : w.len;
}

#define ROTATE_ROLES (WROLE_ADMIN | WROLE_OPERATOR | WROLE_GATEWAY)

int lc_issue_nonce(struct inv *inv, struct store_txn *t,
                   const struct dom_ctx *ctx,
                   const Warden__V1__IssueRotationNonceRequest *req,
                   Warden__V1__IssueRotationNonceResponse *out,
                   struct werr *e)
{
    int rc;
    if (req->nonce.len != LC_NONCE_LEN) {
        return werr_set(e, WERR_INVALID, "nonce must be %d bytes, got %zu",
                        LC_NONCE_LEN, req->nonce.len);
    }
    Warden__V1__Device *d;
    if ((rc = inv__load(inv, t, req->device_id, &d, e)) != 0) {
        return rc;
    }
    if ((rc = lc_may_act(ctx->who, d, ROTATE_ROLES, "rotate device keys", e)) !=
        0) {
        inv_device_free(d);
        return rc;
    }
    if (d->state == S_REVOKED) {
        inv_device_free(d);
        return werr_set(e, WERR_PRECOND, "device %s is REVOKED", req->device_id);
    }
    uint8_t rec[NONCE_REC_LEN];
    memcpy(rec, req->nonce.data, LC_NONCE_LEN);
    inv__put_be64(rec + LC_NONCE_LEN, ctx->index);
    inv__put_be64(rec + LC_NONCE_LEN + 8, d->key_epoch);
    warden__v1__issue_rotation_nonce_response__init(out);
    out->nonce = req->nonce;
    out->issued_index = ctx->index;
    out->expires_index = ctx->index + LC_NONCE_TTL_ENTRIES;
    out->new_key_epoch = d->key_epoch + 1;
    inv_device_free(d);
    /* Single outstanding nonce: a new one replaces the old. */
    return store_put(t, inv->nonces, req->device_id, strlen(req->device_id),
                     rec, sizeof rec, 0, e);
}

int lc_rotate_key(struct inv *inv, struct store_txn *t,
                  const struct dom_ctx *ctx,
                  const Warden__V1__RotateDeviceKeyRequest *req,
                  Warden__V1__Device **out, struct werr *e)
{
    int rc;
    Warden__V1__Device *d;
    if ((rc = inv__load(inv, t, req->device_id, &d, e)) != 0) {
        return rc;
    }
    if ((rc = lc_may_act(ctx->who, d, ROTATE_ROLES, "rotate device keys", e)) !=
        0) {
        goto err_free;
    }
    if (d->state == S_REVOKED) {
        rc = werr_set(e, WERR_PRECOND, "device %s is REVOKED", req->device_id);
        goto err_free;
    }
    struct store_val v;
    rc = store_get(t, inv->nonces, req->device_id, strlen(req->device_id), &v,
                   e);
    if (rc == WERR_NOTFOUND) {
        rc = werr_set(e, WERR_PRECOND,
                      "device %s has no outstanding rotation nonce",
                      req->device_id);
        goto err_free;
    }
    if (rc) {
        goto err_free;
    }
    if (v.len != NONCE_REC_LEN) {
        rc = werr_set(e, WERR_CORRUPT, "nonce record of %zu bytes", v.len);
        goto err_free;
    }
    uint8_t nonce[LC_NONCE_LEN];
    memcpy(nonce, v.data, LC_NONCE_LEN);
    uint64_t issued = inv__get_be64((const uint8_t *)v.data + LC_NONCE_LEN);
    uint64_t for_epoch =
        inv__get_be64((const uint8_t *)v.data + LC_NONCE_LEN + 8);
    if (ctx->index > issued + LC_NONCE_TTL_ENTRIES) {
        rc = werr_set(e, WERR_PRECOND,
                      "rotation nonce of device %s expired (issued at index "
                      "%llu, valid for %u entries)",
                      req->device_id, (unsigned long long)issued,
                      LC_NONCE_TTL_ENTRIES);
        goto err_free;
    }
    if (for_epoch != d->key_epoch) {
        rc = werr_set(e, WERR_PRECOND,
                      "rotation nonce of device %s was issued for key epoch %llu",
                      req->device_id, (unsigned long long)for_epoch);
        goto err_free;
    }
    struct devkey key;
    if ((rc = devkey_parse((int)req->key_algorithm, req->public_key.data,
                           req->public_key.len, &key, e)) != 0) {
        werr_wrap(e, "rotate %s: public_key", req->device_id);
        goto err_free;
    }
    if (devkey_equal(&key, (int)d->key_algorithm, d->public_key.data,
                     d->public_key.len)) {
        rc = werr_set(e, WERR_INVALID, "rotate %s: the new key is the current key",
                      req->device_id);
        goto err_free;
    }
    uint8_t msg[LC_ROTATE_MSG_MAX];
    size_t mlen =
        lc_rotate_message(req->device_id, d->key_epoch, d->key_epoch + 1,
                          key.canon, key.canon_len, nonce, msg, sizeof msg);
    if (mlen == 0) {
        rc = werr_set(e, WERR_INTERNAL, "rotate: message encoding");
        goto err_free;
    }
    /* Two signatures over the same message. The new key proves possession;
     * the current key consents. Without the second, any principal allowed
     * to rotate (a bound gateway, say) could swap in a key it generated
     * and then sign telemetry and reports as the device. Both are checked
     * even if the caller is an admin: a lost key is ReEnroll's job. */
    if (req->new_key_signature.len == 0) {
        rc = werr_set(e, WERR_PERM,
                      "rotate %s: new_key_signature (proof of possession) is "
                      "missing", req->device_id);
        goto err_free;
    }
    if (req->current_key_signature.len == 0) {
        rc = werr_set(e, WERR_PERM,
                      "rotate %s: current_key_signature (consent by the "
                      "device's key of epoch %llu) is missing",
                      req->device_id, (unsigned long long)d->key_epoch);
        goto err_free;
    }
    if ((rc = devkey_verify(key.alg, key.canon, key.canon_len, msg, mlen,
                            req->new_key_signature.data,
                            req->new_key_signature.len, e)) != 0) {
        werr_wrap(e, "rotate %s: proof of possession by the new key",
                  req->device_id);
        goto err_free;
    }
    if ((rc = devkey_verify((int)d->key_algorithm, d->public_key.data,
                            d->public_key.len, msg, mlen,
                            req->current_key_signature.data,
                            req->current_key_signature.len, e)) != 0) {
        werr_wrap(e, "rotate %s: consent by the current key (epoch %llu)",
                  req->device_id, (unsigned long long)d->key_epoch);
        goto err_free;
    }
    if ((rc = inv__set_key(d, key.alg, key.canon, key.canon_len,
                           key.fingerprint, sizeof key.fingerprint, e)) != 0) {
        goto err_free;
    }
    d->key_epoch++;
    touch(d, ctx);
    if ((rc = store_del(t, inv->nonces, req->device_id, strlen(req->device_id),
                        e)) != 0) {
        goto err_free;
    }
    return finish(inv, t, d, out, e);

err_free:
    inv_device_free(d);
    return rc;
}
