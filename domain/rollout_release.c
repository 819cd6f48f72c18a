/* rollout_release.c - release keys, signed manifests and releases
 * (contract: rollout.h; encodings: docs/rollouts.md). Uptane/TUF's lesson
 * is kept in two rules: a release is accepted only under a registered,
 * unrevoked key, and its counter must exceed every earlier release for each
 * hardware model it names, so no path can hand a device an older build
 * under a newer name. */
#include "rollout_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "devkey.h"
#include "inv_int.h"
#include "lifecycle.h"

#define DB_META "ro.meta"
#define DB_DEV "ro.dev"
#define DB_DUE "ro.due"

int ro_open(struct ro **out, struct store *s, struct inv *inv,
            struct audit *audit, struct werr *e)
{
    struct ro *ro = calloc(1, sizeof *ro);
    if (ro == NULL) {
        return werr_set(e, WERR_NOMEM, "ro_open");
    }
    ro->s = s;
    ro->inv = inv;
    ro->audit = audit;
    int rc;
    if ((rc = store_dbi(s, DB_META, &ro->meta, e)) != 0 ||
        (rc = store_dbi(s, DB_DEV, &ro->dev, e)) != 0 ||
        (rc = store_dbi(s, DB_DUE, &ro->due, e)) != 0) {
        free(ro);
        return rc;
    }
    *out = ro;
    return 0;
}

void ro_close(struct ro *ro)
{
    free(ro);
}

int ro__put_msg(struct ro *ro, struct store_txn *t, unsigned dbi,
                const uint8_t *k, size_t klen, const ProtobufCMessage *m,
                unsigned flags, struct werr *e)
{
    (void)ro;
    size_t n = protobuf_c_message_get_packed_size(m);
    uint8_t *b = malloc(n ? n : 1);
    if (b == NULL) {
        return werr_set(e, WERR_NOMEM, "packing a %zu-byte record", n);
    }
    protobuf_c_message_pack(m, b);
    int rc = store_put(t, dbi, k, klen, b, n, flags, e);
    free(b);
    return rc;
}

int ro__audit(struct ro *ro, struct store_txn *t, const struct dom_ctx *ctx,
              uint32_t action, const char *target, const char *detail,
              struct werr *e)
{
    struct audit_event ev = {
        .action = action,
        .outcome = WARDEN__V1__AUDIT_OUTCOME__AUDIT_OUTCOME_OK,
        .target = target,
        .detail = detail,
    };
    return audit_append(ro->audit, t, ctx, &ev, NULL, e);
}

void ro__release_free(Warden__V1__Release *r)
{
    if (r != NULL) {
        warden__v1__release__free_unpacked(r, NULL);
    }
}

/* ---- release keys ---------------------------------------------------------*/

static int key_id_check(const char *id, struct werr *e)
{
    int rc = inv__check_gateway("key_id", id, e); /* [A-Za-z0-9._-], 1..64 */
    if (rc == 0 && strlen(id) > RO_KEY_ID_MAX) {
        rc = werr_set(e, WERR_INVALID, "key_id longer than %d", RO_KEY_ID_MAX);
    }
    return rc;
}

int ro_key_get(struct ro *ro, struct store_txn *t, const char *key_id,
               Warden__V1__ReleaseKey **out, struct werr *e)
{
    uint8_t k[RO__KEY_MAX];
    size_t kl = ro__key_str('k', key_id, k);
    struct store_val v;
    int rc = store_get(t, ro->meta, k, kl, &v, e);
    if (rc == WERR_NOTFOUND) {
        return werr_set(e, WERR_NOTFOUND, "unknown release key %s", key_id);
    }
    if (rc) {
        return rc;
    }
    *out = warden__v1__release_key__unpack(NULL, v.len, v.data);
    if (*out == NULL || (*out)->public_key.len != RO_PUBKEY_LEN) {
        if (*out != NULL) {
            warden__v1__release_key__free_unpacked(*out, NULL);
        }
        return werr_set(e, WERR_CORRUPT, "release key %s is corrupt", key_id);
    }
    return 0;
}

static int key_copy(const Warden__V1__ReleaseKey *k, Warden__V1__ReleaseKey **out,
                    struct werr *e)
{
    size_t n = warden__v1__release_key__get_packed_size(k);
    uint8_t *b = malloc(n ? n : 1);
    if (b == NULL) {
        return werr_set(e, WERR_NOMEM, "release key copy");
    }
    warden__v1__release_key__pack(k, b);
    *out = warden__v1__release_key__unpack(NULL, n, b);
    free(b);
    return *out ? 0 : werr_set(e, WERR_NOMEM, "release key copy");
}

int ro_key_register(struct ro *ro, struct store_txn *t,
                    const struct dom_ctx *ctx,
                    const Warden__V1__RegisterReleaseKeyRequest *req,
                    Warden__V1__ReleaseKey **out, struct werr *e)
{
    int rc;
    if ((rc = lc_may_act(ctx->who, NULL, WROLE_ADMIN, "register release keys",
                         e)) != 0 ||
        (rc = key_id_check(req->key_id, e)) != 0) {
        return rc;
    }
    struct devkey dk;
    if (req->public_key.len != RO_PUBKEY_LEN ||
        devkey_parse(DEVKEY_ED25519, req->public_key.data, req->public_key.len,
                     &dk, e) != 0) {
        return werr_set(e, WERR_INVALID,
                        "public_key must be a %d-byte Ed25519 key", RO_PUBKEY_LEN);
    }
    Warden__V1__ReleaseKey k = WARDEN__V1__RELEASE_KEY__INIT;
    k.key_id = req->key_id;
    k.public_key = req->public_key;
    k.created_index = ctx->index;
    k.created_by = (char *)ctx->who->name;
    uint8_t kk[RO__KEY_MAX];
    size_t kl = ro__key_str('k', req->key_id, kk);
    rc = ro__put_msg(ro, t, ro->meta, kk, kl, &k.base, STORE_NOOVERWRITE, e);
    if (rc == WERR_EXISTS) {
        return werr_set(e, WERR_EXISTS, "release key id %s was used before",
                        req->key_id);
    }
    if (rc == 0) {
        rc = ro__audit(ro, t, ctx,
                       WARDEN__V1__AUDIT_ACTION__AUDIT_ACTION_RELEASE_KEY_REGISTER,
                       req->key_id, "Ed25519", e);
    }
    if (rc == 0 && out != NULL) {
        rc = key_copy(&k, out, e);
    }
    return rc;
}

int ro_key_revoke(struct ro *ro, struct store_txn *t,
                  const struct dom_ctx *ctx,
                  const Warden__V1__RevokeReleaseKeyRequest *req,
                  Warden__V1__ReleaseKey **out, struct werr *e)
{
    int rc;
    if ((rc = lc_may_act(ctx->who, NULL, WROLE_ADMIN, "revoke release keys", e)) !=
            0 ||
        (rc = key_id_check(req->key_id, e)) != 0) {
        return rc;
    }
    if (!ro__text_ok(req->reason, RO_REASON_MAX)) {
        return werr_set(e, WERR_INVALID, "reason: at most %d printable bytes",
                        RO_REASON_MAX);
    }
    Warden__V1__ReleaseKey *k;
    if ((rc = ro_key_get(ro, t, req->key_id, &k, e)) != 0) {
        return rc;
    }
    if (k->revoked) {
        rc = werr_set(e, WERR_PRECOND, "release key %s was revoked at index %llu",
                      req->key_id, (unsigned long long)k->revoked_index);
        goto out;
    }
    /* Swap in borrowed strings; restore before freeing the unpacked copy. */
    char *old_by = k->revoked_by, *old_reason = k->revoke_reason;
    k->revoked = 1;
    k->revoked_index = ctx->index;
    k->revoked_by = (char *)ctx->who->name;
    k->revoke_reason = (char *)(req->reason ? req->reason : "");
    uint8_t kk[RO__KEY_MAX];
    size_t kl = ro__key_str('k', req->key_id, kk);
    rc = ro__put_msg(ro, t, ro->meta, kk, kl, &k->base, 0, e);
    if (rc == 0) {
        rc = ro__audit(ro, t, ctx,
                       WARDEN__V1__AUDIT_ACTION__AUDIT_ACTION_RELEASE_KEY_REVOKE,
                       req->key_id, req->reason, e);
    }
    if (rc == 0 && out != NULL) {
        rc = key_copy(k, out, e);
    }
    k->revoked_by = old_by;
    k->revoke_reason = old_reason;
out:
    warden__v1__release_key__free_unpacked(k, NULL);
    return rc;
}

/* ---- releases -------------------------------------------------------------*/

int ro_release_get(struct ro *ro, struct store_txn *t, uint64_t id,
                   Warden__V1__Release **out, struct werr *e)
{
    uint8_t k[RO__KEY_MAX];
    size_t kl = ro__key_u64('r', id, k);
    struct store_val v;
    int rc = store_get(t, ro->meta, k, kl, &v, e);
    if (rc == WERR_NOTFOUND) {
        return werr_set(e, WERR_NOTFOUND, "no release %llu",
                        (unsigned long long)id);
    }
    if (rc) {
        return rc;
    }
    *out = warden__v1__release__unpack(NULL, v.len, v.data);
    if (*out == NULL) {
        return werr_set(e, WERR_CORRUPT, "release %llu is corrupt",
                        (unsigned long long)id);
    }
    return 0;
}

int ro_model_counter(struct ro *ro, struct store_txn *t, const char *model,
                     uint64_t *out, struct werr *e)
{
    uint8_t k[RO__KEY_MAX];
    size_t kl = ro__key_str('m', model, k);
    struct store_val v;
    int rc = store_get(t, ro->meta, k, kl, &v, e);
    if (rc == WERR_NOTFOUND) {
        *out = 0;
        return 0;
    }
    if (rc) {
        return rc;
    }
    if (v.len != 8) {
        return werr_set(e, WERR_CORRUPT, "model counter of %zu bytes", v.len);
    }
    *out = ro__get_be64(v.data);
    return 0;
}

int ro_release_create(struct ro *ro, struct store_txn *t,
                      const struct dom_ctx *ctx,
                      const Warden__V1__CreateReleaseRequest *req,
                      Warden__V1__Release **out, struct werr *e)
{
    int rc;
    int rollback = req->rollback_of != 0;
    if (rollback) {
        rc = lc_may_act(ctx->who, NULL, WROLE_ADMIN, "create rollback releases", e);
    } else {
        rc = lc_may_act(ctx->who, NULL, WROLE_ADMIN | WROLE_ROLLOUT,
                        "create releases", e);
    }
    if (rc) {
        return rc;
    }
    if ((rc = key_id_check(req->key_id, e)) != 0) {
        return rc;
    }
    if (!ro__text_ok(req->reason, RO_REASON_MAX)) {
        return werr_set(e, WERR_INVALID, "reason: at most %d printable bytes",
                        RO_REASON_MAX);
    }
    if (rollback && (req->reason == NULL || req->reason[0] == '\0')) {
        return werr_set(e, WERR_INVALID, "a rollback release needs a reason");
    }
    if (req->signature.len != RO_SIG_LEN) {
        return werr_set(e, WERR_INVALID, "signature must be %d bytes, got %zu",
                        RO_SIG_LEN, req->signature.len);
    }
    struct ro_manifest *m = malloc(sizeof *m);
    if (m == NULL) {
        return werr_set(e, WERR_NOMEM, "manifest");
    }
    Warden__V1__ReleaseKey *key = NULL;
    Warden__V1__Release *prev = NULL;
    if ((rc = ro_manifest_decode(req->manifest.data, req->manifest.len, m, e)) !=
        0) {
        goto out;
    }
    if ((rc = ro_key_get(ro, t, req->key_id, &key, e)) != 0) {
        goto out;
    }
    if (key->revoked) {
        rc = werr_set(e, WERR_PRECOND, "release key %s is revoked (index %llu)",
                      req->key_id, (unsigned long long)key->revoked_index);
        goto out;
    }
    struct werr ve = {0};
    rc = devkey_verify(DEVKEY_ED25519, key->public_key.data, key->public_key.len,
                       req->manifest.data, req->manifest.len, req->signature.data,
                       req->signature.len, &ve);
    if (rc == WERR_NOMEM) {
        rc = werr_set(e, WERR_NOMEM, "%s", ve.msg);
        goto out;
    }
    if (rc) {
        rc = werr_set(e, WERR_PERM,
                      "manifest signature does not verify with release key %s",
                      req->key_id);
        goto out;
    }
    if (rollback && (rc = ro_release_get(ro, t, req->rollback_of, &prev, e)) != 0) {
        werr_wrap(e, "rollback_of");
        goto out;
    }
    /* Anti-downgrade at the source (Uptane: release counters). */
    for (size_t i = 0; i < m->n_models; i++) {
        uint64_t hi = 0;
        if ((rc = ro_model_counter(ro, t, m->models[i], &hi, e)) != 0) {
            goto out;
        }
        if (m->counter <= hi) {
            rc = werr_set(e, WERR_PRECOND,
                          "release counter %llu is not greater than %llu, the "
                          "highest for hardware model \"%s\"",
                          (unsigned long long)m->counter, (unsigned long long)hi,
                          m->models[i]);
            goto out;
        }
    }
    for (size_t i = 0; i < m->n_models; i++) {
        uint8_t k[RO__KEY_MAX], b[8];
        size_t kl = ro__key_str('m', m->models[i], k);
        ro__put_be64(b, m->counter);
        if ((rc = store_put(t, ro->meta, k, kl, b, sizeof b, 0, e)) != 0) {
            goto out;
        }
    }
    char *models[RO_MODELS_MAX];
    for (size_t i = 0; i < m->n_models; i++) {
        models[i] = m->models[i];
    }
    Warden__V1__Release r = WARDEN__V1__RELEASE__INIT;
    r.release_id = ctx->index;
    r.version = m->version;
    r.release_counter = m->counter;
    r.artifact_sha256.data = m->sha256;
    r.artifact_sha256.len = RO_SHA256_LEN;
    r.artifact_size = m->size;
    r.n_hardware_models = m->n_models;
    r.hardware_models = models;
    r.key_id = req->key_id;
    r.manifest = req->manifest;
    r.signature = req->signature;
    r.rollback_of = req->rollback_of;
    r.reason = (char *)(req->reason ? req->reason : "");
    r.created_index = ctx->index;
    r.created_time_ms = ctx->time_ms;
    r.created_by = (char *)ctx->who->name;
    uint8_t k[RO__KEY_MAX];
    size_t kl = ro__key_u64('r', r.release_id, k);
    if ((rc = ro__put_msg(ro, t, ro->meta, k, kl, &r.base, STORE_NOOVERWRITE, e)) !=
        0) {
        goto out;
    }
    char target[48], detail[AUDIT_DETAIL_MAX + 1];
    ro__target(target, sizeof target, "release", r.release_id);
    if (rollback) {
        snprintf(detail, sizeof detail,
                 "rollback of release %llu (%s) as %s counter %llu key %s: %s",
                 (unsigned long long)req->rollback_of, prev->version, m->version,
                 (unsigned long long)m->counter, req->key_id, req->reason);
    } else {
        snprintf(detail, sizeof detail, "%s counter %llu key %s, %zu model(s)",
                 m->version, (unsigned long long)m->counter, req->key_id,
                 m->n_models);
    }
    rc = ro__audit(ro, t, ctx,
                   rollback ? WARDEN__V1__AUDIT_ACTION__AUDIT_ACTION_RELEASE_ROLLBACK
                            : WARDEN__V1__AUDIT_ACTION__AUDIT_ACTION_RELEASE_CREATE,
                   target, detail, e);
    if (rc == 0 && out != NULL) {
        rc = ro_release_get(ro, t, r.release_id, out, e);
    }
out:
    if (key != NULL) {
        warden__v1__release_key__free_unpacked(key, NULL);
    }
    ro__release_free(prev);
    free(m);
    return rc;
}
