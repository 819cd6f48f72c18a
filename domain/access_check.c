/* access_check.c - grants: creation, CheckAccess, RevokeGrant, ListGrants
 * and the bounded sweep (contract: access.h; layout: access_int.h).
 *
 * A grant's lifetime is measured only in cluster time (dom_ctx.time_ms):
 * valid in [valid_from_ms, expires_ms). An ACTIVE grant past expires_ms
 * reads EXPIRED; no write is needed for it to die. */
#include "access_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int acc__grant_load(struct access *a, struct store_txn *t, uint64_t g,
                    Warden__V1__AccessGrant **out, struct werr *e)
{
    return acc__get_msg(t, a->grant, g, &warden__v1__access_grant__descriptor,
                        (ProtobufCMessage **)out, e);
}

int acc__grant_store(struct access *a, struct store_txn *t, uint64_t g,
                     const Warden__V1__AccessGrant *gr, struct werr *e)
{
    return acc__put_msg(t, a->grant, g, &gr->base, e);
}

int acc__grant_state(const Warden__V1__AccessGrant *g, uint64_t now)
{
    if (g->state == ACC_G(ACTIVE) && now >= g->expires_ms) {
        return ACC_G(EXPIRED);
    }
    return (int)g->state;
}

static int live_del(struct access *a, struct store_txn *t, uint64_t g,
                    struct werr *e)
{
    uint8_t k[9];
    k[0] = ACC_IDX_LIVE;
    acc__be64(k + 1, g);
    return acc__idx_del(a, t, k, sizeof k, e);
}

int acc__grant_revoke(struct access *a, struct store_txn *t,
                      const struct dom_ctx *ctx, uint64_t g,
                      Warden__V1__AccessGrant *gr, const char *by,
                      const char *reason, struct werr *e)
{
    int rc;
    gr->state = ACC_G(REVOKED);
    gr->revoked_index = ctx->index;
    if ((rc = inv__set_str(&gr->revoked_by, by, e)) != 0 ||
        (rc = inv__set_str(&gr->revoke_reason, reason, e)) != 0 ||
        (rc = acc__grant_store(a, t, g, gr, e)) != 0) {
        return rc;
    }
    return live_del(a, t, g, e);
}

int acc__grant_create(struct access *a, struct store_txn *t,
                      const struct dom_ctx *ctx,
                      const Warden__V1__AccessRequest *r,
                      Warden__V1__AccessGrant **out, struct werr *e)
{
    Warden__V1__AccessPolicy *p;
    int rc = acc_policy_get(a, t, &p, e);
    if (rc) {
        return rc;
    }
    /* The policy may have been tightened since the request: the rule in
     * force now caps duration and uses. */
    const Warden__V1__AccessPurposeRule *rule = acc_policy_rule(p, (int)r->purpose);
    uint64_t dur = r->duration_ms;
    uint32_t uses = r->max_sessions;
    if (rule != NULL && dur > rule->max_duration_ms) {
        dur = rule->max_duration_ms;
    }
    if (rule != NULL && uses > rule->max_uses) {
        uses = rule->max_uses;
    }
    acc_msg_free(p);
    uint64_t g = ctx->index;
    char id[ACC_ID_MAX + 1];
    acc__id(id, ACC_GRANT_PREFIX, g);
    Warden__V1__AccessGrant gr = WARDEN__V1__ACCESS_GRANT__INIT;
    gr.grant_id = id;
    gr.request_id = r->request_id;
    gr.principal = r->requester;
    gr.n_device_ids = r->n_device_ids;
    gr.device_ids = r->device_ids;
    gr.purpose = r->purpose;
    gr.scope = r->scope;
    gr.valid_from_ms = ctx->time_ms; /* the window starts at approval */
    gr.expires_ms = ctx->time_ms + dur;
    gr.max_uses = uses;
    gr.uses_left = uses;
    gr.state = ACC_G(ACTIVE);
    gr.created_index = g;
    if ((rc = acc__grant_store(a, t, g, &gr, e)) != 0) {
        return rc;
    }
    uint8_t k[ACC_IDX_KEY_MAX];
    size_t kl;
    for (size_t i = 0; i < r->n_device_ids && rc == 0; i++) {
        kl = acc__key_dev(k, r->device_ids[i], r->requester, 1, g);
        rc = acc__idx_put(a, t, k, kl, e);
    }
    if (rc == 0) {
        kl = acc__key_str64(k, ACC_IDX_PRIN, r->requester, 1, g);
        rc = acc__idx_put(a, t, k, kl, e);
    }
    if (rc == 0) {
        kl = acc__key_64_64(k, ACC_IDX_GEXP, gr.expires_ms, g);
        rc = acc__idx_put(a, t, k, kl, e);
    }
    if (rc == 0) {
        k[0] = ACC_IDX_LIVE;
        acc__be64(k + 1, g);
        rc = acc__idx_put(a, t, k, 9, e);
    }
    if (rc == 0) {
        rc = acc__grant_load(a, t, g, out, e);
    }
    return rc;
}

/* Delete grants dead for ACC_GRANT_KEEP_MS (at most ACC_SWEEP_MAX). */
static int sweep_grants(struct access *a, struct store_txn *t, uint64_t now,
                        struct werr *e)
{
    uint64_t nos[ACC_SWEEP_MAX], exps[ACC_SWEEP_MAX];
    size_t n = 0;
    struct store_cursor *c;
    int rc = store_cursor_open(t, a->idx, &c, e);
    if (rc) {
        return rc;
    }
    uint8_t k0 = ACC_IDX_GEXP;
    struct store_val k, v;
    rc = store_cursor_seek(c, &k0, 1, &k, &v, e);
    while (rc == 0 && n < ACC_SWEEP_MAX && k.len == 17 &&
           ((const uint8_t *)k.data)[0] == ACC_IDX_GEXP) {
        uint64_t exp = acc__get64((const uint8_t *)k.data + 1);
        if (now < ACC_GRANT_KEEP_MS || exp > now - ACC_GRANT_KEEP_MS) {
            break;
        }
        exps[n] = exp;
        nos[n++] = acc__get64((const uint8_t *)k.data + 9);
        rc = store_cursor_next(c, &k, &v, e);
    }
    store_cursor_close(c);
    if (rc && rc != WERR_NOTFOUND) {
        return rc;
    }
    for (size_t i = 0; i < n; i++) {
        Warden__V1__AccessGrant *gr;
        if ((rc = acc__grant_load(a, t, nos[i], &gr, e)) != 0) {
            return rc;
        }
        uint8_t kk[ACC_IDX_KEY_MAX];
        size_t kl;
        for (size_t j = 0; j < gr->n_device_ids && rc == 0; j++) {
            kl = acc__key_dev(kk, gr->device_ids[j], gr->principal, 1, nos[i]);
            rc = acc__idx_del(a, t, kk, kl, e);
        }
        if (rc == 0) {
            kl = acc__key_str64(kk, ACC_IDX_PRIN, gr->principal, 1, nos[i]);
            rc = acc__idx_del(a, t, kk, kl, e);
        }
        acc_msg_free(gr);
        if (rc == 0) {
            kl = acc__key_64_64(kk, ACC_IDX_GEXP, exps[i], nos[i]);
            rc = acc__idx_del(a, t, kk, kl, e);
        }
        if (rc == 0 && (rc = live_del(a, t, nos[i], e)) == 0) {
            uint8_t gk[8];
            acc__be64(gk, nos[i]);
            rc = store_del(t, a->grant, gk, sizeof gk, e);
        }
        if (rc) {
            return rc;
        }
    }
    return 0;
}

int acc_sweep(struct access *a, struct store_txn *t, uint64_t now,
               struct werr *e)
{
    int rc = acc__sweep_requests(a, t, now, e);
    return rc ? rc : sweep_grants(a, t, now, e);
}

/* ---- CheckAccess --------------------------------------------------------- */

static int scope_covers(const Warden__V1__AccessScope *sc,
                        const Warden__V1__CheckAccessRequest *q)
{
    if (sc == NULL) {
        return 0;
    }
    if (q->command_class[0] != '\0') {
        return strcmp(sc->command_class, q->command_class) == 0;
    }
    int proto = 0;
    for (size_t i = 0; i < sc->n_protocols && !proto; i++) {
        proto = strcmp(sc->protocols[i], q->protocol) == 0;
    }
    if (!proto) {
        return 0;
    }
    if (sc->n_ports == 0) {
        return 1;
    }
    for (size_t i = 0; i < sc->n_ports; i++) {
        if (sc->ports[i] == q->port) {
            return 1;
        }
    }
    return 0;
}

/* Which active lock denies this check, by priority (access.h). */
static int lock_verdict(const struct acc_locks *ls, uint64_t now,
                        const Warden__V1__Device *d, const char *principal,
                        char lock_id[ACC_ID_MAX + 1])
{
    static const int order[] = {ACC_K(ALL), ACC_K(GATEWAY), ACC_K(DEVICE),
                                ACC_K(PRINCIPAL)};
    for (size_t o = 0; o < sizeof order / sizeof order[0]; o++) {
        for (size_t i = 0; i < ls->n; i++) {
            const Warden__V1__AccessLock *l = ls->l[i];
            if (l->unlocked || (l->expires_ms != 0 && now >= l->expires_ms)) {
                continue;
            }
            int kind = (int)l->kind, hit = 0;
            if (kind == ACC_K(LABEL_SELECTOR)) {
                kind = ACC_K(DEVICE); /* a label lock locks devices */
            }
            if (kind != order[o]) {
                continue;
            }
            switch ((int)l->kind) {
            case ACC_K(ALL):
                hit = 1;
                break;
            case ACC_K(GATEWAY):
                hit = strcmp(l->value, d->gateway_id) == 0;
                break;
            case ACC_K(DEVICE):
                hit = strcmp(l->value, d->device_id) == 0;
                break;
            case ACC_K(LABEL_SELECTOR):
                /* Evaluated against the device's labels NOW: a device that
                 * gains the label after the lock is caught. */
                hit = l->n_selector > 0 &&
                      acc__selector_match(l->selector, l->n_selector, d);
                break;
            case ACC_K(PRINCIPAL):
                hit = strcmp(l->value, principal) == 0;
                break;
            default:
                break;
            }
            if (hit) {
                snprintf(lock_id, ACC_ID_MAX + 1, "%s", l->lock_id);
                switch (order[o]) {
                case ACC_K(ALL):
                    return ACC_R(ALL_LOCKED);
                case ACC_K(GATEWAY):
                    return ACC_R(GATEWAY_LOCKED);
                case ACC_K(DEVICE):
                    return ACC_R(DEVICE_LOCKED);
                default:
                    return ACC_R(PRINCIPAL_LOCKED);
                }
            }
        }
    }
    return 0;
}

/* Lazy revocation: a fence (lazy lock record, locked or not) created at or
 * after the grant that covers it revokes it now. *revoked = 1 if so. */
static int fence_check(struct access *a, struct store_txn *t,
                       const struct dom_ctx *ctx, const struct acc_locks *ls,
                       uint64_t g, Warden__V1__AccessGrant *gr, int *revoked,
                       struct werr *e)
{
    *revoked = 0;
    for (size_t i = 0; i < ls->n; i++) {
        const Warden__V1__AccessLock *l = ls->l[i];
        if (!l->lazy || l->created_index < gr->created_index) {
            continue;
        }
        struct acc_target tg = {.kind = (int)l->kind, .value = l->value,
                                .sel = l->selector, .n_sel = l->n_selector};
        int covers = 0;
        int rc = acc__target_covers(a, t, &tg, gr, &covers, e);
        if (rc) {
            return rc;
        }
        if (covers) {
            char reason[64];
            snprintf(reason, sizeof reason, "lock %s (applied at check)",
                     l->lock_id);
            *revoked = 1;
            return acc__grant_revoke(a, t, ctx, g, gr, l->created_by, reason, e);
        }
    }
    return 0;
}

static int check_request(const Warden__V1__CheckAccessRequest *q,
                         struct werr *e)
{
    int rc;
    if ((rc = acc__check_principal("principal", q->principal, e)) != 0 ||
        (rc = inv_device_id_check(q->device_id, e)) != 0 ||
        (rc = acc__check_class(q->command_class, e)) != 0) {
        return rc;
    }
    if (q->command_class[0] == '\0') {
        if ((rc = acc__check_protocol(q->protocol, e)) != 0) {
            return rc;
        }
        if (q->port > 65535) {
            return werr_set(e, WERR_INVALID, "port %u is not 0..65535", q->port);
        }
    }
    return 0;
}

int acc_check(struct access *a, struct store_txn *t, const struct dom_ctx *ctx,
              const Warden__V1__CheckAccessRequest *q,
              struct acc_check_result *out, struct werr *e)
{
    memset(out, 0, sizeof *out);
    out->decision = WARDEN__V1__ACCESS_DECISION__ACCESS_DECISION_DENY;
    int rc = acc__may(ctx, WROLE_GATEWAY, "check access", e);
    if (rc || (rc = check_request(q, e)) != 0) {
        return rc;
    }
    /* Blast radius: a gateway only ever asks about its own devices. An
     * unknown device gets the same answer (no existence oracle). */
    Warden__V1__Device *d = NULL;
    struct werr le = {0};
    rc = inv_get(a->inv, t, q->device_id, &d, &le);
    if (rc != 0 && rc != WERR_NOTFOUND) {
        *e = le;
        return rc;
    }
    if (rc == WERR_NOTFOUND || strcmp(d->gateway_id, ctx->who->name) != 0) {
        inv_device_free(d);
        return werr_set(e, WERR_PERM,
                        "GATEWAY_NOT_BOUND: gateway %s is not bound to device %s",
                        ctx->who->name, q->device_id);
    }
    Warden__V1__AccessPolicy *p = NULL;
    struct acc_locks ls = {0};
    uint64_t nos[ACC_PRINCIPAL_LIVE_MAX];
    size_t n = 0;
    if ((rc = acc_revision(a, t, &out->revision, e)) != 0 ||
        (rc = acc_policy_get(a, t, &p, e)) != 0) {
        goto out;
    }
    if (q->lock_revision > out->revision) {
        rc = werr_set(e, WERR_INVALID,
                      "lock_revision %llu is ahead of the log (%llu)",
                      (unsigned long long)q->lock_revision,
                      (unsigned long long)out->revision);
        goto out;
    }
    /* Fail closed on a stale view (docs/access.md, "Gateway rule"). */
    if (out->revision - q->lock_revision > p->lock_view_max_lag) {
        out->reason = ACC_R(LOCK_VIEW_STALE);
        goto out;
    }
    if ((rc = acc__locks_load(a, t, &ls, e)) != 0) {
        goto out;
    }
    if ((out->reason = lock_verdict(&ls, ctx->time_ms, d, q->principal,
                                    out->lock_id)) != 0) {
        goto out;
    }
    if (d->state != WARDEN__V1__DEVICE_STATE__DEVICE_STATE_ACTIVE) {
        out->reason = ACC_R(DEVICE_NOT_ACTIVE);
        goto out;
    }
    /* The principal's grants naming this device (bounded by
     * ACC_PRINCIPAL_LIVE_MAX). */
    uint8_t k[ACC_IDX_KEY_MAX];
    size_t kl = acc__key_dev(k, q->device_id, q->principal, 0, 0);
    struct store_cursor *c;
    if ((rc = store_cursor_open(t, a->idx, &c, e)) != 0) {
        goto out;
    }
    struct store_val kk, v;
    rc = store_cursor_seek(c, k, kl, &kk, &v, e);
    while (rc == 0 && n < ACC_PRINCIPAL_LIVE_MAX && kk.len == kl + 8 &&
           memcmp(kk.data, k, kl) == 0) {
        nos[n++] = acc__get64((const uint8_t *)kk.data + kl);
        rc = store_cursor_next(c, &kk, &v, e);
    }
    store_cursor_close(c);
    if (rc && rc != WERR_NOTFOUND) {
        goto out;
    }
    rc = 0;
    int seen_scope = 0, seen_used = 0, seen_exp = 0, seen_rev = 0;
    Warden__V1__AccessGrant *best = NULL;
    uint64_t best_no = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        Warden__V1__AccessGrant *gr;
        if ((rc = acc__grant_load(a, t, nos[i], &gr, e)) != 0) {
            break;
        }
        int st = acc__grant_state(gr, ctx->time_ms), fenced = 0;
        if (st == ACC_G(ACTIVE) &&
            (rc = fence_check(a, t, ctx, &ls, nos[i], gr, &fenced, e)) != 0) {
            acc_msg_free(gr);
            break;
        }
        if (fenced || st == ACC_G(REVOKED)) {
            seen_rev = 1;
        } else if (st == ACC_G(EXHAUSTED)) {
            seen_used = 1;
        } else if (st == ACC_G(EXPIRED)) {
            seen_exp = 1;
        } else if (!scope_covers(gr->scope, q)) {
            seen_scope = 1;
        } else if (best == NULL || gr->expires_ms < best->expires_ms) {
            /* Use the grant that dies first; ties go to the older (the
             * index order of the scan). */
            acc_msg_free(best);
            best = gr;
            best_no = nos[i];
            continue;
        }
        acc_msg_free(gr);
    }
    if (rc) {
        acc_msg_free(best);
        goto out;
    }
    if (best == NULL) {
        out->reason = seen_scope  ? ACC_R(OUT_OF_SCOPE)
                      : seen_used ? ACC_R(USES_EXHAUSTED)
                      : seen_exp  ? ACC_R(EXPIRED)
                      : seen_rev  ? ACC_R(GRANT_REVOKED)
                                  : ACC_R(NO_GRANT);
        goto out;
    }
    /* ALLOW: consume one use, in this txn (exactly once per command; a
     * retry with the same idempotency key replays this result). */
    best->uses_left--;
    if (best->uses_left == 0) {
        best->state = ACC_G(EXHAUSTED);
        rc = live_del(a, t, best_no, e);
    }
    if (rc == 0) {
        rc = acc__grant_store(a, t, best_no, best, e);
    }
    if (rc == 0) {
        out->decision = WARDEN__V1__ACCESS_DECISION__ACCESS_DECISION_ALLOW;
        out->reason = 0;
        snprintf(out->grant_id, sizeof out->grant_id, "%s", best->grant_id);
        out->remaining_ms = best->expires_ms - ctx->time_ms;
        out->remaining_uses = best->uses_left;
    }
    acc_msg_free(best);
out:
    acc__locks_free(&ls);
    acc_msg_free(p);
    inv_device_free(d);
    return rc;
}

/* ---- RevokeGrant, reads -------------------------------------------------- */

int acc_revoke_grant(struct access *a, struct store_txn *t,
                     const struct dom_ctx *ctx,
                     const Warden__V1__RevokeGrantRequest *req,
                     Warden__V1__AccessGrant **out, struct werr *e)
{
    int rc = acc__may(ctx, WROLE_ADMIN | WROLE_OPERATOR, "revoke grants", e);
    uint64_t g;
    if (rc || (rc = acc__check_text("reason", req->reason, ACC_REASON_MAX, 1, e)) != 0 ||
        (rc = acc__id_parse(req->grant_id, ACC_GRANT_PREFIX, &g, e)) != 0) {
        return rc;
    }
    Warden__V1__AccessGrant *gr;
    rc = acc__grant_load(a, t, g, &gr, e);
    if (rc == WERR_NOTFOUND) {
        return werr_set(e, WERR_NOTFOUND, "grant %s not found", req->grant_id);
    }
    if (rc) {
        return rc;
    }
    int st = acc__grant_state(gr, ctx->time_ms);
    if (st != ACC_G(ACTIVE)) {
        acc_msg_free(gr);
        return werr_set(e, WERR_PRECOND, "grant %s is not ACTIVE (state %d)",
                        req->grant_id, st);
    }
    char **gws = NULL;
    size_t n_gws = 0;
    if ((rc = acc__grant_revoke(a, t, ctx, g, gr, ctx->who->name, req->reason,
                                e)) == 0 &&
        (rc = acc__gateways_of(a, t, gr->device_ids, gr->n_device_ids, &gws,
                               &n_gws, e)) == 0) {
        Warden__V1__RevocationEvent ev = WARDEN__V1__REVOCATION_EVENT__INIT;
        ev.kind = ACC_EV(GRANT_REVOKED);
        ev.n_gateways = n_gws;
        ev.gateways = gws;
        ev.n_device_ids = gr->n_device_ids;
        ev.device_ids = gr->device_ids;
        ev.principal = gr->principal;
        ev.grant_id = gr->grant_id;
        rc = acc__rev_append(a, t, ctx, &ev, NULL, e);
        acc__strv_free(gws, n_gws);
    }
    if (rc == 0 && out != NULL) {
        *out = gr;
        return 0;
    }
    acc_msg_free(gr);
    return rc;
}

int acc_grant_get(struct access *a, struct store_txn *t, uint64_t now_ms,
                  const char *grant_id, Warden__V1__AccessGrant **out,
                  struct werr *e)
{
    uint64_t g;
    int rc = acc__id_parse(grant_id, ACC_GRANT_PREFIX, &g, e);
    if (rc == 0) {
        rc = acc__grant_load(a, t, g, out, e);
        if (rc == WERR_NOTFOUND) {
            return werr_set(e, WERR_NOTFOUND, "grant %s not found", grant_id);
        }
    }
    if (rc == 0) {
        (*out)->state = (Warden__V1__AccessGrantState)acc__grant_state(*out, now_ms);
    }
    return rc;
}

void acc_grant_page_free(struct acc_grant_page *p)
{
    for (size_t i = 0; i < p->n; i++) {
        acc_msg_free(p->grants[i]);
    }
    free(p->grants);
    memset(p, 0, sizeof *p);
}

#define TOKEN_PREFIX "g1."

static int grant_matches(const Warden__V1__AccessGrant *g,
                         const Warden__V1__ListGrantsRequest *r)
{
    if (r->principal[0] && strcmp(r->principal, g->principal) != 0) {
        return 0;
    }
    if (r->state && (int)r->state != (int)g->state) {
        return 0;
    }
    if (r->device_id[0] == '\0') {
        return 1;
    }
    for (size_t i = 0; i < g->n_device_ids; i++) {
        if (strcmp(g->device_ids[i], r->device_id) == 0) {
            return 1;
        }
    }
    return 0;
}

int acc_list_grants(struct access *a, struct store_txn *t, uint64_t now_ms,
                    const Warden__V1__ListGrantsRequest *req,
                    struct acc_grant_page *page, struct werr *e)
{
    memset(page, 0, sizeof *page);
    if (req->page_size > ACC_PAGE_SIZE_MAX) {
        return werr_set(e, WERR_INVALID, "page_size %u exceeds the maximum %u",
                        req->page_size, ACC_PAGE_SIZE_MAX);
    }
    if (req->state < 0 || req->state > ACC_G(REVOKED)) {
        return werr_set(e, WERR_INVALID, "state filter %d", (int)req->state);
    }
    int rc;
    if ((req->principal[0] &&
         (rc = acc__check_principal("principal", req->principal, e)) != 0) ||
        (req->device_id[0] && (rc = inv_device_id_check(req->device_id, e)) != 0)) {
        return rc;
    }
    uint64_t after = 0;
    if (req->page_token[0]) {
        const char *tk = req->page_token;
        char *end = NULL;
        if (strncmp(tk, TOKEN_PREFIX, 3) != 0 || tk[3] < '1' || tk[3] > '9' ||
            strlen(tk) > ACC_PAGE_TOKEN_MAX) {
            return werr_set(e, WERR_INVALID, "page_token is malformed");
        }
        after = strtoull(tk + 3, &end, 10);
        if (end == NULL || *end != '\0') {
            return werr_set(e, WERR_INVALID, "page_token is malformed");
        }
    }
    size_t size = req->page_size ? req->page_size : ACC_PAGE_SIZE_DEFAULT;
    page->grants = calloc(size, sizeof *page->grants);
    if (page->grants == NULL) {
        return werr_set(e, WERR_NOMEM, "grant page of %zu", size);
    }
    struct store_cursor *c;
    if ((rc = store_cursor_open(t, a->grant, &c, e)) != 0) {
        acc_grant_page_free(page);
        return rc;
    }
    uint8_t k0[8];
    acc__be64(k0, after + 1);
    struct store_val k, v;
    uint64_t last = 0;
    int more = 0;
    rc = store_cursor_seek(c, k0, sizeof k0, &k, &v, e);
    while (rc == 0) {
        if (page->n == size || page->scanned == ACC_LIST_SCAN_MAX) {
            more = 1;
            break;
        }
        Warden__V1__AccessGrant *g =
            warden__v1__access_grant__unpack(NULL, v.len, v.data);
        if (g == NULL || k.len != 8) {
            acc_msg_free(g);
            rc = werr_set(e, WERR_CORRUPT, "grant record does not decode");
            break;
        }
        page->scanned++;
        last = acc__get64(k.data);
        g->state = (Warden__V1__AccessGrantState)acc__grant_state(g, now_ms);
        if (grant_matches(g, req)) {
            page->grants[page->n++] = g;
        } else {
            acc_msg_free(g);
        }
        rc = store_cursor_next(c, &k, &v, e);
    }
    store_cursor_close(c);
    if (rc && rc != WERR_NOTFOUND) {
        acc_grant_page_free(page);
        return rc;
    }
    if (more && last > 0) {
        snprintf(page->next_token, sizeof page->next_token, TOKEN_PREFIX "%llu",
                 (unsigned long long)last);
    }
    return 0;
}
