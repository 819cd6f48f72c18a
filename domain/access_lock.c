/* access_lock.c - locks (emergency disable), eager and lazy revocation of
 * the grants they cover, and the device lifecycle hook (contract:
 * access.h; rules: docs/access.md, "Locks").
 *
 * Eager vs lazy. A lock revokes the live grants it covers in its own
 * apply, but one apply must do bounded work: it examines at most
 * ACC_REVOKE_SCAN_MAX live grants and revokes at most
 * ACC_REVOKE_INLINE_MAX. If it could not finish, the lock record is marked
 * `lazy`: CheckAccess then revokes any grant created at or before the lock
 * that the lock covers before it may be used (fence_check in
 * access_check.c), so such a grant never ALLOWs. A lazy record outlives
 * Unlock (as an unlocked fence) until every grant it could cover has
 * expired: created_time + ACC_DURATION_HARD_MAX_MS. */
#include "access_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void acc__locks_free(struct acc_locks *ls)
{
    for (size_t i = 0; i < ls->n; i++) {
        acc_msg_free(ls->l[i]);
    }
    free(ls->l);
    free(ls->no);
    memset(ls, 0, sizeof *ls);
}

int acc__locks_load(struct access *a, struct store_txn *t,
                    struct acc_locks *out, struct werr *e)
{
    memset(out, 0, sizeof *out);
    struct store_cursor *c;
    int rc = store_cursor_open(t, a->lock, &c, e);
    if (rc) {
        return rc;
    }
    size_t cap = 0;
    struct store_val k, v;
    rc = store_cursor_seek(c, NULL, 0, &k, &v, e);
    while (rc == 0) {
        if (out->n == cap) {
            size_t nc = cap ? cap * 2 : 16;
            Warden__V1__AccessLock **nl = realloc(out->l, nc * sizeof *nl);
            if (nl != NULL) {
                out->l = nl;
            }
            uint64_t *nn = realloc(out->no, nc * sizeof *nn);
            if (nn != NULL) {
                out->no = nn;
            }
            if (nl == NULL || nn == NULL) {
                rc = werr_set(e, WERR_NOMEM, "lock table");
                break;
            }
            cap = nc;
        }
        Warden__V1__AccessLock *l =
            warden__v1__access_lock__unpack(NULL, v.len, v.data);
        if (l == NULL || k.len != 8) {
            acc_msg_free(l);
            rc = werr_set(e, WERR_CORRUPT, "lock record does not decode");
            break;
        }
        out->no[out->n] = acc__get64(k.data);
        out->l[out->n++] = l;
        rc = store_cursor_next(c, &k, &v, e);
    }
    store_cursor_close(c);
    if (rc && rc != WERR_NOTFOUND) {
        acc__locks_free(out);
        return rc;
    }
    return 0;
}

int acc__target_covers(struct access *a, struct store_txn *t,
                       const struct acc_target *tg,
                       const Warden__V1__AccessGrant *gr, int *covers,
                       struct werr *e)
{
    *covers = 0;
    switch (tg->kind) {
    case ACC_K(ALL):
        *covers = 1;
        return 0;
    case ACC_K(PRINCIPAL):
        *covers = strcmp(tg->value, gr->principal) == 0;
        return 0;
    case ACC_K(DEVICE):
        for (size_t i = 0; i < gr->n_device_ids && !*covers; i++) {
            *covers = strcmp(tg->value, gr->device_ids[i]) == 0;
        }
        return 0;
    case ACC_K(GATEWAY):
    case ACC_K(LABEL_SELECTOR):
        break;
    default:
        return 0;
    }
    /* Gateway and label targets: the devices as they are now. */
    for (size_t i = 0; i < gr->n_device_ids && !*covers; i++) {
        Warden__V1__Device *d = NULL;
        struct werr le = {0};
        int rc = inv_get(a->inv, t, gr->device_ids[i], &d, &le);
        if (rc == WERR_NOTFOUND) {
            continue;
        }
        if (rc) {
            *e = le;
            return rc;
        }
        *covers = tg->kind == ACC_K(GATEWAY)
                      ? strcmp(tg->value, d->gateway_id) == 0
                      : acc__selector_match(tg->sel, tg->n_sel, d);
        inv_device_free(d);
    }
    return 0;
}

int acc__revoke_covered(struct access *a, struct store_txn *t,
                        const struct dom_ctx *ctx, const struct acc_target *tg,
                        const char *by, const char *reason, uint32_t *revoked,
                        int *lazy, struct werr *e)
{
    *revoked = 0;
    *lazy = 0;
    uint64_t *nos = calloc(ACC_REVOKE_SCAN_MAX, sizeof *nos);
    if (nos == NULL) {
        return werr_set(e, WERR_NOMEM, "revocation scan");
    }
    size_t n = 0;
    struct store_cursor *c;
    int rc = store_cursor_open(t, a->idx, &c, e);
    if (rc) {
        free(nos);
        return rc;
    }
    uint8_t k0 = ACC_IDX_LIVE;
    struct store_val k, v;
    rc = store_cursor_seek(c, &k0, 1, &k, &v, e);
    while (rc == 0 && k.len == 9 && ((const uint8_t *)k.data)[0] == ACC_IDX_LIVE) {
        if (n == ACC_REVOKE_SCAN_MAX) {
            *lazy = 1; /* more live grants than one apply examines */
            break;
        }
        nos[n++] = acc__get64((const uint8_t *)k.data + 1);
        rc = store_cursor_next(c, &k, &v, e);
    }
    store_cursor_close(c);
    if (rc && rc != WERR_NOTFOUND) {
        free(nos);
        return rc;
    }
    rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        Warden__V1__AccessGrant *gr;
        if ((rc = acc__grant_load(a, t, nos[i], &gr, e)) != 0) {
            break;
        }
        int covers = 0;
        if (acc__grant_state(gr, ctx->time_ms) == ACC_G(ACTIVE) &&
            gr->created_index <= ctx->index &&
            (rc = acc__target_covers(a, t, tg, gr, &covers, e)) == 0 && covers) {
            if (*revoked == ACC_REVOKE_INLINE_MAX) {
                *lazy = 1;
            } else {
                rc = acc__grant_revoke(a, t, ctx, nos[i], gr, by, reason, e);
                (*revoked)++;
            }
        }
        acc_msg_free(gr);
    }
    free(nos);
    return rc;
}

static int check_target(const Warden__V1__LockRequest *r, struct werr *e)
{
    switch ((int)r->kind) {
    case ACC_K(DEVICE):
        if (r->n_selector) {
            break;
        }
        return inv_device_id_check(r->value, e);
    case ACC_K(PRINCIPAL):
    case ACC_K(GATEWAY):
        if (r->n_selector) {
            break;
        }
        return acc__check_principal("value", r->value, e);
    case ACC_K(LABEL_SELECTOR):
        if (r->value[0]) {
            break;
        }
        return acc__check_selector(r->selector, r->n_selector, 1, e);
    case ACC_K(ALL):
        if (r->value[0] || r->n_selector) {
            break;
        }
        return 0;
    default:
        return werr_set(e, WERR_INVALID, "lock kind %d is not a target kind",
                        (int)r->kind);
    }
    return werr_set(e, WERR_INVALID,
                    "lock kind %d: value is for DEVICE/PRINCIPAL/GATEWAY, "
                    "selector for LABEL_SELECTOR, neither for ALL",
                    (int)r->kind);
}

/* Which gateways a lock event concerns. */
static int lock_gateways(struct access *a, struct store_txn *t,
                         const Warden__V1__AccessLock *l, char ***gws,
                         size_t *n, struct werr *e)
{
    if (l->kind == ACC_K(DEVICE)) {
        return acc__gateways_of(a, t, &l->value, 1, gws, n, e);
    }
    const char *one = l->kind == ACC_K(GATEWAY) ? l->value : "*";
    char **v = calloc(2, sizeof *v);
    if (v == NULL || (v[0] = strdup(one)) == NULL) {
        free(v);
        return werr_set(e, WERR_NOMEM, "lock gateways");
    }
    *gws = v;
    *n = 1;
    return 0;
}

static int lock_event(struct access *a, struct store_txn *t,
                      const struct dom_ctx *ctx, const Warden__V1__AccessLock *l,
                      int kind, struct werr *e)
{
    char **gws = NULL;
    size_t n = 0;
    int rc = lock_gateways(a, t, l, &gws, &n, e);
    if (rc) {
        return rc;
    }
    Warden__V1__RevocationEvent ev = WARDEN__V1__REVOCATION_EVENT__INIT;
    ev.kind = (Warden__V1__RevocationKind)kind;
    ev.n_gateways = n;
    ev.gateways = gws;
    char *dev = l->value;
    if (l->kind == ACC_K(DEVICE)) {
        ev.n_device_ids = 1;
        ev.device_ids = &dev;
    }
    if (l->kind == ACC_K(PRINCIPAL)) {
        ev.principal = l->value;
    }
    ev.lock_id = l->lock_id;
    ev.lock_kind = l->kind;
    ev.lock_value = l->value;
    ev.n_selector = l->n_selector;
    ev.selector = l->selector;
    ev.expires_ms = l->expires_ms;
    rc = acc__rev_append(a, t, ctx, &ev, NULL, e);
    acc__strv_free(gws, n);
    return rc;
}

/* Delete lock records that no longer do anything: unlocked or expired,
 * and (if lazy) past every grant they could cover. Returns the number
 * left in *left. */
static int locks_collect(struct access *a, struct store_txn *t, uint64_t now,
                         uint64_t *left, struct werr *e)
{
    struct acc_locks ls;
    int rc = acc__locks_load(a, t, &ls, e);
    if (rc) {
        return rc;
    }
    *left = 0;
    for (size_t i = 0; i < ls.n && rc == 0; i++) {
        const Warden__V1__AccessLock *l = ls.l[i];
        int inert = l->unlocked || (l->expires_ms != 0 && now >= l->expires_ms);
        int fencing = l->lazy &&
                      now < l->created_time_ms + ACC_DURATION_HARD_MAX_MS;
        if (inert && !fencing) {
            uint8_t k[8];
            acc__be64(k, ls.no[i]);
            rc = store_del(t, a->lock, k, sizeof k, e);
        } else {
            (*left)++;
        }
    }
    acc__locks_free(&ls);
    return rc;
}

int acc_lock(struct access *a, struct store_txn *t, const struct dom_ctx *ctx,
             const Warden__V1__LockRequest *req, Warden__V1__AccessLock **out,
             struct werr *e)
{
    int rc = acc__may(ctx, WROLE_ADMIN | WROLE_OPERATOR, "lock", e);
    if (rc || (rc = check_target(req, e)) != 0 ||
        (rc = acc__check_text("reason", req->reason, ACC_REASON_MAX, 1, e)) != 0) {
        return rc;
    }
    if (req->expires_ms != 0 && req->expires_ms <= ctx->time_ms) {
        return werr_set(e, WERR_INVALID,
                        "expires_ms %llu is not after the cluster time %llu",
                        (unsigned long long)req->expires_ms,
                        (unsigned long long)ctx->time_ms);
    }
    uint64_t n_locks;
    if ((rc = locks_collect(a, t, ctx->time_ms, &n_locks, e)) != 0) {
        return rc;
    }
    if (n_locks >= ACC_LOCKS_MAX) {
        return werr_set(e, WERR_LIMIT, "%llu locks in force (max %u): unlock some",
                        (unsigned long long)n_locks, ACC_LOCKS_MAX);
    }
    char id[ACC_ID_MAX + 1];
    acc__id(id, ACC_LOCK_PREFIX, ctx->index);
    char reason[ACC_REASON_MAX + 40];
    snprintf(reason, sizeof reason, "lock %s: %s", id, req->reason);
    struct acc_target tg = {.kind = (int)req->kind, .value = req->value,
                            .sel = req->selector, .n_sel = req->n_selector};
    uint32_t revoked = 0;
    int lazy = 0;
    if ((rc = acc__revoke_covered(a, t, ctx, &tg, ctx->who->name, reason,
                                  &revoked, &lazy, e)) != 0) {
        return rc;
    }
    Warden__V1__AccessLock l = WARDEN__V1__ACCESS_LOCK__INIT;
    l.lock_id = id;
    l.kind = req->kind;
    l.value = req->value;
    l.n_selector = req->n_selector;
    l.selector = req->selector;
    l.reason = req->reason;
    l.created_by = (char *)ctx->who->name;
    l.created_index = ctx->index;
    l.created_time_ms = ctx->time_ms;
    l.expires_ms = req->expires_ms;
    l.lazy = lazy ? 1 : 0;
    l.revoked_now = revoked;
    if ((rc = acc__put_msg(t, a->lock, ctx->index, &l.base, e)) != 0 ||
        (rc = lock_event(a, t, ctx, &l, ACC_EV(LOCK), e)) != 0) {
        return rc;
    }
    if (out != NULL) {
        rc = acc__get_msg(t, a->lock, ctx->index,
                          &warden__v1__access_lock__descriptor,
                          (ProtobufCMessage **)out, e);
    }
    return rc;
}

int acc_unlock(struct access *a, struct store_txn *t, const struct dom_ctx *ctx,
               const Warden__V1__UnlockRequest *req,
               Warden__V1__AccessLock **out, struct werr *e)
{
    int rc = acc__may(ctx, WROLE_ADMIN | WROLE_OPERATOR, "unlock", e);
    uint64_t no;
    if (rc || (rc = acc__check_text("reason", req->reason, ACC_REASON_MAX, 0, e)) != 0 ||
        (rc = acc__id_parse(req->lock_id, ACC_LOCK_PREFIX, &no, e)) != 0) {
        return rc;
    }
    Warden__V1__AccessLock *l;
    rc = acc__get_msg(t, a->lock, no, &warden__v1__access_lock__descriptor,
                      (ProtobufCMessage **)&l, e);
    if (rc == WERR_NOTFOUND || (rc == 0 && l->unlocked)) {
        if (rc == 0) {
            acc_msg_free(l);
        }
        return werr_set(e, WERR_NOTFOUND, "lock %s is not in force", req->lock_id);
    }
    if (rc) {
        return rc;
    }
    l->unlocked = 1;
    if (l->lazy) {
        rc = acc__put_msg(t, a->lock, no, &l->base, e); /* stays as a fence */
    } else {
        uint8_t k[8];
        acc__be64(k, no);
        rc = store_del(t, a->lock, k, sizeof k, e);
    }
    if (rc == 0) {
        rc = lock_event(a, t, ctx, l, ACC_EV(UNLOCK), e);
    }
    if (rc == 0 && out != NULL) {
        *out = l;
        return 0;
    }
    acc_msg_free(l);
    return rc;
}

int acc__fence_add(struct access *a, struct store_txn *t,
                   const struct dom_ctx *ctx, const struct acc_target *tg,
                   const char *reason, struct werr *e)
{
    char id[ACC_ID_MAX + 1];
    acc__id(id, ACC_LOCK_PREFIX, ctx->index);
    Warden__V1__AccessLock l = WARDEN__V1__ACCESS_LOCK__INIT;
    l.lock_id = id;
    l.kind = (Warden__V1__LockTargetKind)tg->kind;
    l.value = (char *)tg->value;
    l.reason = (char *)reason;
    l.created_by = (char *)ctx->who->name;
    l.created_index = ctx->index;
    l.created_time_ms = ctx->time_ms;
    l.lazy = 1;
    l.unlocked = 1; /* a fence denies nothing by itself */
    return acc__put_msg(t, a->lock, ctx->index, &l.base, e);
}

int acc_on_device_state(struct inv *inv, struct store_txn *t,
                        const struct dom_ctx *ctx, const Warden__V1__Device *d,
                        int kind, struct werr *e)
{
    const char *why;
    switch (kind) {
    case ACC_EV(DEVICE_QUARANTINED):
        why = "device quarantined";
        break;
    case ACC_EV(DEVICE_REVOKED):
        why = "device revoked";
        break;
    case ACC_EV(DEVICE_REENROLLED):
        why = "device re-enrolled";
        break;
    default:
        return 0;
    }
    struct access a;
    if (acc_bind(&a, inv->s, inv, NULL) != 0) {
        return 0; /* access not in use on this store */
    }
    struct acc_target tg = {.kind = ACC_K(DEVICE), .value = d->device_id};
    uint32_t revoked = 0;
    int lazy = 0;
    int rc = acc__revoke_covered(&a, t, ctx, &tg, ctx->who->name, why, &revoked,
                                 &lazy, e);
    if (rc == 0 && lazy) {
        rc = acc__fence_add(&a, t, ctx, &tg, why, e);
    }
    if (rc) {
        return rc;
    }
    char *gw = d->gateway_id[0] ? d->gateway_id : (char *)"*";
    char *dev = d->device_id;
    Warden__V1__RevocationEvent ev = WARDEN__V1__REVOCATION_EVENT__INIT;
    ev.kind = (Warden__V1__RevocationKind)kind;
    ev.n_gateways = 1;
    ev.gateways = &gw;
    ev.n_device_ids = 1;
    ev.device_ids = &dev;
    return acc__rev_append(&a, t, ctx, &ev, NULL, e);
}
