/* access_req.c - access requests and their M-of-N review (contract:
 * access.h; rules: docs/access.md, "Requests and approval").
 *
 * The rule of the request's purpose IN FORCE AT THE VOTE applies (mask,
 * M): tightening the policy tightens pending requests too. The grant's
 * window starts at the approving vote's cluster time, not at the request. */
#include "access_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int proto_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
}

static int class_char(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
           (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
}

static int check_chars(const char *field, const char *s, size_t min, size_t max,
                       int (*ok)(unsigned char), struct werr *e)
{
    size_t n = strnlen(s, max + 1);
    if (n < min || n > max) {
        return werr_set(e, WERR_INVALID, "%s must be %zu..%zu bytes", field, min,
                        max);
    }
    for (size_t i = 0; i < n; i++) {
        if (!ok((unsigned char)s[i])) {
            return werr_set(e, WERR_INVALID, "%s has a byte 0x%02x not allowed",
                            field, (unsigned char)s[i]);
        }
    }
    return 0;
}

int acc__check_protocol(const char *s, struct werr *e)
{
    return check_chars("protocol", s, 1, ACC_PROTOCOL_LEN_MAX, proto_char, e);
}

int acc__check_class(const char *s, struct werr *e)
{
    return check_chars("command_class", s, 0, ACC_COMMAND_CLASS_MAX, class_char,
                       e);
}

static int check_scope(const Warden__V1__AccessScope *sc, struct werr *e)
{
    if (sc == NULL) {
        return werr_set(e, WERR_INVALID, "scope is required");
    }
    int rc;
    if (sc->n_protocols > ACC_PROTOCOLS_MAX || sc->n_ports > ACC_PORTS_MAX) {
        return werr_set(e, WERR_INVALID, "scope: at most %d protocols and %d ports",
                        ACC_PROTOCOLS_MAX, ACC_PORTS_MAX);
    }
    for (size_t i = 0; i < sc->n_protocols; i++) {
        if ((rc = acc__check_protocol(sc->protocols[i], e)) != 0) {
            return werr_wrap(e, "scope.protocols[%zu]", i);
        }
    }
    for (size_t i = 0; i < sc->n_ports; i++) {
        if (sc->ports[i] < 1 || sc->ports[i] > 65535) {
            return werr_set(e, WERR_INVALID, "scope.ports[%zu] = %u is not 1..65535",
                            i, sc->ports[i]);
        }
    }
    if ((rc = acc__check_class(sc->command_class, e)) != 0) {
        return werr_wrap(e, "scope");
    }
    if (sc->n_protocols == 0 && sc->command_class[0] == '\0') {
        return werr_set(e, WERR_INVALID,
                        "scope needs protocols or a command_class");
    }
    if (sc->n_ports > 0 && sc->n_protocols == 0) {
        return werr_set(e, WERR_INVALID, "scope.ports need scope.protocols");
    }
    return 0;
}

static int cmp_str(const void *x, const void *y)
{
    return strcmp(*(char *const *)x, *(char *const *)y);
}

/* Resolve the targets into ids[] (owned strings, sorted, unique). */
static int resolve(struct access *a, struct store_txn *t,
                   const Warden__V1__RequestAccessRequest *req, char **ids,
                   size_t *n_ids, struct werr *e)
{
    int rc = 0;
    *n_ids = 0;
    if (req->n_device_ids > 0) {
        if (req->n_selector > 0) {
            return werr_set(e, WERR_INVALID,
                            "device_ids and selector are exclusive");
        }
        if (req->n_device_ids > ACC_TARGETS_MAX) {
            return werr_set(e, WERR_INVALID, "%zu device_ids, max %d",
                            req->n_device_ids, ACC_TARGETS_MAX);
        }
        for (size_t i = 0; i < req->n_device_ids; i++) {
            Warden__V1__Device *d;
            if ((rc = inv_get(a->inv, t, req->device_ids[i], &d, e)) != 0) {
                return werr_wrap(e, "device_ids[%zu]", i);
            }
            inv_device_free(d);
            for (size_t j = 0; j < i; j++) {
                if (strcmp(req->device_ids[j], req->device_ids[i]) == 0) {
                    return werr_set(e, WERR_INVALID,
                                    "device_ids[%zu]: duplicate %s", i,
                                    req->device_ids[i]);
                }
            }
            if ((ids[(*n_ids)++] = strdup(req->device_ids[i])) == NULL) {
                return werr_set(e, WERR_NOMEM, "device id");
            }
        }
    } else {
        if ((rc = acc__check_selector(req->selector, req->n_selector, 1, e)) != 0) {
            return werr_set(e, WERR_INVALID,
                            "targets: give device_ids or a selector (%s)", e->msg);
        }
        /* Inventory filters on the first label; we check the rest. The
         * scan is bounded (ACC_SELECTOR_SCAN_MAX) and deterministic. */
        Warden__V1__ListDevicesRequest lr = WARDEN__V1__LIST_DEVICES_REQUEST__INIT;
        lr.page_size = INV_PAGE_SIZE_MAX;
        lr.label = req->selector[0];
        char token[INV_PAGE_TOKEN_MAX + 1] = "";
        uint64_t scanned = 0;
        do {
            struct inv_page pg;
            lr.page_token = token;
            if ((rc = inv_list(a->inv, t, &lr, &pg, e)) != 0) {
                return rc;
            }
            scanned += pg.scanned;
            for (size_t i = 0; i < pg.n && rc == 0; i++) {
                if (!acc__selector_match(req->selector, req->n_selector,
                                         pg.devices[i])) {
                    continue;
                }
                if (*n_ids == ACC_TARGETS_MAX) {
                    rc = werr_set(e, WERR_LIMIT,
                                  "selector matches more than %d devices",
                                  ACC_TARGETS_MAX);
                } else if ((ids[(*n_ids)++] = strdup(pg.devices[i]->device_id)) ==
                           NULL) {
                    rc = werr_set(e, WERR_NOMEM, "device id");
                }
            }
            snprintf(token, sizeof token, "%s", pg.next_token);
            inv_page_free(&pg);
            if (rc == 0 && token[0] && scanned >= ACC_SELECTOR_SCAN_MAX) {
                rc = werr_set(e, WERR_LIMIT,
                              "selector: more than %u devices to examine; name "
                              "devices or narrow the selector",
                              ACC_SELECTOR_SCAN_MAX);
            }
        } while (rc == 0 && token[0]);
        if (rc) {
            return rc;
        }
        if (*n_ids == 0) {
            return werr_set(e, WERR_NOTFOUND, "selector matches no device");
        }
    }
    qsort(ids, *n_ids, sizeof *ids, cmp_str);
    return 0;
}

/* Pack m, store it under n in dbi and hand back a heap copy in *out. */
static int put_copy(struct store_txn *t, unsigned dbi, uint64_t n,
                    const ProtobufCMessage *m, ProtobufCMessage **out,
                    struct werr *e)
{
    size_t len = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(len ? len : 1);
    if (buf == NULL) {
        return werr_set(e, WERR_NOMEM, "access record: %zu bytes", len);
    }
    protobuf_c_message_pack(m, buf);
    uint8_t k[8];
    acc__be64(k, n);
    int rc = store_put(t, dbi, k, sizeof k, buf, len, 0, e);
    if (rc == 0 && out != NULL) {
        *out = protobuf_c_message_unpack(m->descriptor, NULL, len, buf);
        if (*out == NULL) {
            rc = werr_set(e, WERR_NOMEM, "access record: copying result");
        }
    }
    free(buf);
    return rc;
}

int acc_request(struct access *a, struct store_txn *t,
                const struct dom_ctx *ctx,
                const Warden__V1__RequestAccessRequest *req,
                Warden__V1__AccessRequest **out, struct werr *e)
{
    int rc = acc__may(ctx, WROLE_ADMIN | WROLE_OPERATOR, "request access", e);
    if (rc) {
        return rc;
    }
    if (req->purpose < 1 || req->purpose > 4) {
        return werr_set(e, WERR_INVALID, "purpose %d is not a purpose",
                        (int)req->purpose);
    }
    if ((rc = acc__check_text("reason", req->reason, ACC_REASON_MAX, 1, e)) != 0 ||
        (rc = check_scope(req->scope, e)) != 0) {
        return rc;
    }
    Warden__V1__AccessPolicy *p;
    if ((rc = acc_policy_get(a, t, &p, e)) != 0) {
        return rc;
    }
    const Warden__V1__AccessPurposeRule *r = acc_policy_rule(p, (int)req->purpose);
    uint64_t max_ms = r ? r->max_duration_ms : 0, ttl = r ? r->pending_ttl_ms : 0;
    uint32_t max_uses = r ? r->max_uses : 0;
    acc_msg_free(p);
    if (req->duration_ms < ACC_DURATION_MIN_MS || req->duration_ms > max_ms) {
        return werr_set(e, WERR_INVALID,
                        "duration_ms %llu: %s allows %u..%llu",
                        (unsigned long long)req->duration_ms,
                        acc_purpose_name((int)req->purpose), ACC_DURATION_MIN_MS,
                        (unsigned long long)max_ms);
    }
    if (req->max_sessions < 1 || req->max_sessions > max_uses) {
        return werr_set(e, WERR_INVALID, "max_sessions %u: %s allows 1..%u",
                        req->max_sessions, acc_purpose_name((int)req->purpose),
                        max_uses);
    }
    /* Open requests + grants kept for this principal (access_int.h). */
    const char *me = ctx->who->name;
    uint8_t k[ACC_IDX_KEY_MAX];
    uint64_t n_pend, n_grants;
    size_t kl = acc__key_str64(k, ACC_IDX_PEND, me, 0, 0);
    if ((rc = acc__idx_count(a, t, k, kl, ACC_PRINCIPAL_LIVE_MAX, &n_pend, e)) != 0) {
        return rc;
    }
    kl = acc__key_str64(k, ACC_IDX_PRIN, me, 0, 0);
    if ((rc = acc__idx_count(a, t, k, kl, ACC_PRINCIPAL_LIVE_MAX, &n_grants, e)) !=
        0) {
        return rc;
    }
    if (n_pend + n_grants >= ACC_PRINCIPAL_LIVE_MAX) {
        return werr_set(e, WERR_LIMIT,
                        "%s holds %llu open requests and %llu recent grants "
                        "(max %u together)", me, (unsigned long long)n_pend,
                        (unsigned long long)n_grants, ACC_PRINCIPAL_LIVE_MAX);
    }
    char *ids[ACC_TARGETS_MAX];
    size_t n_ids = 0;
    rc = resolve(a, t, req, ids, &n_ids, e);
    if (rc == 0) {
        char id[ACC_ID_MAX + 1];
        acc__id(id, ACC_REQ_PREFIX, ctx->index);
        Warden__V1__AccessRequest ar = WARDEN__V1__ACCESS_REQUEST__INIT;
        ar.request_id = id;
        ar.requester = (char *)me;
        ar.requester_role = ctx->who->role;
        ar.n_device_ids = n_ids;
        ar.device_ids = ids;
        ar.n_selector = req->n_selector;
        ar.selector = req->selector;
        ar.purpose = req->purpose;
        ar.reason = req->reason;
        ar.scope = req->scope;
        ar.duration_ms = req->duration_ms;
        ar.max_sessions = req->max_sessions;
        ar.state = ACC_S(PENDING);
        ar.created_index = ctx->index;
        ar.created_time_ms = ctx->time_ms;
        ar.expires_time_ms = ctx->time_ms + ttl;
        rc = put_copy(t, a->req, ctx->index, &ar.base, (ProtobufCMessage **)out,
                      e);
        if (rc == 0) {
            kl = acc__key_str64(k, ACC_IDX_PEND, me, 1, ctx->index);
            rc = acc__idx_put(a, t, k, kl, e);
        }
        if (rc == 0) {
            kl = acc__key_64_64(k, ACC_IDX_PEXP, ar.expires_time_ms, ctx->index);
            rc = acc__idx_put(a, t, k, kl, e);
        }
        if (rc && out != NULL) {
            acc_msg_free(*out);
            *out = NULL;
        }
    }
    for (size_t i = 0; i < n_ids; i++) {
        free(ids[i]);
    }
    return rc;
}

static int request_load(struct access *a, struct store_txn *t, const char *id,
                        uint64_t *no, Warden__V1__AccessRequest **out,
                        struct werr *e)
{
    int rc = acc__id_parse(id, ACC_REQ_PREFIX, no, e);
    if (rc) {
        return rc;
    }
    rc = acc__get_msg(t, a->req, *no, &warden__v1__access_request__descriptor,
                      (ProtobufCMessage **)out, e);
    if (rc == WERR_NOTFOUND) {
        return werr_set(e, WERR_NOTFOUND, "request %s not found", id);
    }
    return rc;
}

/* Take request r (number no) out of the open indexes. */
static int close_open(struct access *a, struct store_txn *t, uint64_t no,
                      const Warden__V1__AccessRequest *r, struct werr *e)
{
    uint8_t k[ACC_IDX_KEY_MAX];
    size_t kl = acc__key_str64(k, ACC_IDX_PEND, r->requester, 1, no);
    int rc = acc__idx_del(a, t, k, kl, e);
    if (rc == 0) {
        kl = acc__key_64_64(k, ACC_IDX_PEXP, r->expires_time_ms, no);
        rc = acc__idx_del(a, t, k, kl, e);
    }
    return rc;
}

static const char *req_state_name(int s)
{
    switch (s) {
    case ACC_S(PENDING):
        return "PENDING";
    case ACC_S(GRANTED):
        return "GRANTED";
    case ACC_S(DENIED):
        return "DENIED";
    case ACC_S(EXPIRED):
        return "EXPIRED";
    default:
        return "UNSPECIFIED";
    }
}

int acc_review(struct access *a, struct store_txn *t,
               const struct dom_ctx *ctx,
               const Warden__V1__ReviewAccessRequest *req, int approve,
               Warden__V1__AccessRequest **req_out,
               Warden__V1__AccessGrant **grant_out, struct werr *e)
{
    *req_out = NULL;
    *grant_out = NULL;
    int rc = acc__check_text("comment", req->comment, ACC_COMMENT_MAX, 0, e);
    if (rc) {
        return rc;
    }
    uint64_t no;
    Warden__V1__AccessRequest *r;
    if ((rc = request_load(a, t, req->request_id, &no, &r, e)) != 0) {
        return rc;
    }
    Warden__V1__AccessPolicy *p = NULL;
    if (r->state == ACC_S(PENDING) && ctx->time_ms >= r->expires_time_ms) {
        rc = werr_set(e, WERR_PRECOND, "request %s expired at %llu (now %llu)",
                      req->request_id, (unsigned long long)r->expires_time_ms,
                      (unsigned long long)ctx->time_ms);
        goto out;
    }
    if (r->state != ACC_S(PENDING)) {
        rc = werr_set(e, WERR_PRECOND, "request %s is %s", req->request_id,
                      req_state_name((int)r->state));
        goto out;
    }
    if ((rc = acc_policy_get(a, t, &p, e)) != 0) {
        goto out;
    }
    const Warden__V1__AccessPurposeRule *rule = acc_policy_rule(p, (int)r->purpose);
    if (rule == NULL) {
        rc = werr_set(e, WERR_CORRUPT, "request %s: purpose %d has no rule",
                      req->request_id, (int)r->purpose);
        goto out;
    }
    const struct principal *w = ctx->who;
    if ((rc = acc__may(ctx, rule->reviewer_roles, "review this purpose", e)) != 0) {
        goto out;
    }
    if (strcmp(w->name, r->requester) == 0) {
        rc = werr_set(e, WERR_PERM, "%s may not review their own request %s",
                      w->name, req->request_id);
        goto out;
    }
    uint32_t approvals = 0;
    for (size_t i = 0; i < r->n_votes; i++) {
        if (strcmp(r->votes[i]->reviewer, w->name) == 0) {
            rc = werr_set(e, WERR_PRECOND,
                          "%s already voted on %s; a reviewer counts once",
                          w->name, req->request_id);
            goto out;
        }
        approvals += r->votes[i]->approve ? 1u : 0u;
    }
    if (r->n_votes >= ACC_APPROVALS_MAX) { /* cannot happen: M <= max */
        rc = werr_set(e, WERR_PRECOND, "request %s has %zu votes", req->request_id,
                      r->n_votes);
        goto out;
    }
    /* Append the vote (heap, default allocator: free_unpacked frees it). */
    Warden__V1__AccessVote **vs = realloc(r->votes, (r->n_votes + 1) * sizeof *vs);
    Warden__V1__AccessVote *v = calloc(1, sizeof *v);
    if (vs != NULL) {
        r->votes = vs;
    }
    if (vs == NULL || v == NULL) {
        free(v);
        rc = werr_set(e, WERR_NOMEM, "vote");
        goto out;
    }
    warden__v1__access_vote__init(v);
    r->votes[r->n_votes++] = v;
    v->approve = approve ? 1 : 0;
    v->reviewer_role = w->role;
    v->index = ctx->index;
    v->time_ms = ctx->time_ms;
    if ((rc = inv__set_str(&v->reviewer, w->name, e)) != 0 ||
        (rc = inv__set_str(&v->comment, req->comment, e)) != 0) {
        goto out;
    }
    approvals += approve ? 1u : 0u;
    Warden__V1__AccessGrant *g = NULL;
    if (!approve || approvals >= rule->approvals_required) {
        r->state = approve ? ACC_S(GRANTED) : ACC_S(DENIED);
        r->decided_index = ctx->index;
        r->decided_time_ms = ctx->time_ms;
        if ((rc = close_open(a, t, no, r, e)) != 0) {
            goto out;
        }
        if (approve) {
            if ((rc = acc__grant_create(a, t, ctx, r, &g, e)) != 0 ||
                (rc = inv__set_str(&r->grant_id, g->grant_id, e)) != 0) {
                acc_msg_free(g);
                goto out;
            }
        }
    }
    rc = put_copy(t, a->req, no, &r->base, (ProtobufCMessage **)req_out, e);
    if (rc) {
        acc_msg_free(g);
        goto out;
    }
    *grant_out = g;
out:
    acc_msg_free(p);
    acc_msg_free(r);
    return rc;
}

int acc_request_get(struct access *a, struct store_txn *t, uint64_t now_ms,
                    const char *request_id, Warden__V1__AccessRequest **out,
                    struct werr *e)
{
    uint64_t no;
    int rc = request_load(a, t, request_id, &no, out, e);
    if (rc == 0 && (*out)->state == ACC_S(PENDING) &&
        now_ms >= (*out)->expires_time_ms) {
        (*out)->state = ACC_S(EXPIRED);
    }
    return rc;
}

/* Pending requests past their TTL become EXPIRED (at most ACC_SWEEP_MAX
 * per call). Their keys are collected first, then changed, so no cursor
 * is open across a write. */
int acc__sweep_requests(struct access *a, struct store_txn *t, uint64_t now,
                        struct werr *e)
{
    uint64_t nos[ACC_SWEEP_MAX];
    size_t n = 0;
    struct store_cursor *c;
    int rc = store_cursor_open(t, a->idx, &c, e);
    if (rc) {
        return rc;
    }
    uint8_t k0 = ACC_IDX_PEXP;
    struct store_val k, v;
    rc = store_cursor_seek(c, &k0, 1, &k, &v, e);
    while (rc == 0 && n < ACC_SWEEP_MAX && k.len == 17 &&
           ((const uint8_t *)k.data)[0] == ACC_IDX_PEXP &&
           acc__get64((const uint8_t *)k.data + 1) <= now) {
        nos[n++] = acc__get64((const uint8_t *)k.data + 9);
        rc = store_cursor_next(c, &k, &v, e);
    }
    store_cursor_close(c);
    if (rc && rc != WERR_NOTFOUND) {
        return rc;
    }
    for (size_t i = 0; i < n; i++) {
        Warden__V1__AccessRequest *r;
        rc = acc__get_msg(t, a->req, nos[i], &warden__v1__access_request__descriptor,
                          (ProtobufCMessage **)&r, e);
        if (rc) {
            return rc;
        }
        if (r->state == ACC_S(PENDING)) {
            r->state = ACC_S(EXPIRED);
            r->decided_time_ms = r->expires_time_ms;
            rc = acc__put_msg(t, a->req, nos[i], &r->base, e);
        }
        if (rc == 0) {
            rc = close_open(a, t, nos[i], r, e);
        }
        acc_msg_free(r);
        if (rc) {
            return rc;
        }
    }
    return 0;
}
