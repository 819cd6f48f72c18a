/* access_policy.c - the replicated approval policy (contract: access.h).
 *
 * The policy lives in the replicated store and changes only through
 * SetAccessPolicy (admin, audited by consensus/fsm_access.c). Nothing
 * node-local (file, flag, environment) is consulted: a node cannot weaken
 * what the log says (issue 5, "config drift"). Absent record = the secure
 * defaults below, the same on every node. */
#include "access_int.h"

#include <stdlib.h>
#include <string.h>

#define META_POLICY "policy"
#define N_PURPOSES 4 /* MAINTENANCE .. UPDATE */

#define MIN_MS ((uint64_t)60 * 1000)
#define HOUR_MS ((uint64_t)3600 * 1000)

/* Defaults: humans review; incidents need one approval and die fast;
 * anything that changes a device needs two. */
static const struct {
    uint32_t m, roles, uses;
    uint64_t max_ms, ttl_ms;
} defaults[N_PURPOSES + 1] = {
    [WARDEN__V1__ACCESS_PURPOSE__ACCESS_PURPOSE_MAINTENANCE] =
        {2, WROLE_ADMIN | WROLE_OPERATOR, 10, 4 * HOUR_MS, HOUR_MS},
    [WARDEN__V1__ACCESS_PURPOSE__ACCESS_PURPOSE_DIAGNOSTICS] =
        {1, WROLE_ADMIN | WROLE_OPERATOR, 5, HOUR_MS, HOUR_MS},
    [WARDEN__V1__ACCESS_PURPOSE__ACCESS_PURPOSE_INCIDENT] =
        {1, WROLE_ADMIN | WROLE_OPERATOR, 20, 2 * HOUR_MS, 15 * MIN_MS},
    [WARDEN__V1__ACCESS_PURPOSE__ACCESS_PURPOSE_UPDATE] =
        {2, WROLE_ADMIN | WROLE_OPERATOR, 5, 2 * HOUR_MS, HOUR_MS},
};

const char *acc_purpose_name(int purpose)
{
    switch (purpose) {
    case WARDEN__V1__ACCESS_PURPOSE__ACCESS_PURPOSE_MAINTENANCE:
        return "maintenance";
    case WARDEN__V1__ACCESS_PURPOSE__ACCESS_PURPOSE_DIAGNOSTICS:
        return "diagnostics";
    case WARDEN__V1__ACCESS_PURPOSE__ACCESS_PURPOSE_INCIDENT:
        return "incident";
    case WARDEN__V1__ACCESS_PURPOSE__ACCESS_PURPOSE_UPDATE:
        return "update";
    default:
        return "unspecified";
    }
}

/* A heap policy with the defaults (freed by acc_msg_free). */
static int policy_defaults(Warden__V1__AccessPolicy **out, struct werr *e)
{
    Warden__V1__AccessPolicy *p = calloc(1, sizeof *p);
    Warden__V1__AccessPurposeRule **rules = calloc(N_PURPOSES, sizeof *rules);
    if (p == NULL || rules == NULL) {
        free(p);
        free(rules);
        return werr_set(e, WERR_NOMEM, "access policy defaults");
    }
    warden__v1__access_policy__init(p);
    p->rules = rules;
    for (int i = 1; i <= N_PURPOSES; i++) {
        Warden__V1__AccessPurposeRule *r = calloc(1, sizeof *r);
        if (r == NULL) {
            acc_msg_free(p);
            return werr_set(e, WERR_NOMEM, "access policy defaults");
        }
        warden__v1__access_purpose_rule__init(r);
        r->purpose = (Warden__V1__AccessPurpose)i;
        r->approvals_required = defaults[i].m;
        r->reviewer_roles = defaults[i].roles;
        r->max_duration_ms = defaults[i].max_ms;
        r->max_uses = defaults[i].uses;
        r->pending_ttl_ms = defaults[i].ttl_ms;
        p->rules[p->n_rules++] = r;
    }
    p->lock_view_max_lag = ACC_LOCK_VIEW_LAG_DEFAULT;
    p->revlog_retention = ACC_REVLOG_RETAIN_DEFAULT;
    /* Strings must be heap (free_unpacked frees them) or the shared
     * empty default. */
    p->updated_by = (char *)protobuf_c_empty_string;
    *out = p;
    return 0;
}

int acc_policy_get(struct access *a, struct store_txn *t,
                   Warden__V1__AccessPolicy **out, struct werr *e)
{
    struct store_val v;
    int rc = store_get(t, a->meta, META_POLICY, strlen(META_POLICY), &v, e);
    if (rc == WERR_NOTFOUND) {
        return policy_defaults(out, e);
    }
    if (rc) {
        return rc;
    }
    Warden__V1__AccessPolicy *p =
        warden__v1__access_policy__unpack(NULL, v.len, v.data);
    if (p == NULL) {
        return werr_set(e, WERR_CORRUPT, "access policy record does not decode");
    }
    if (p->n_rules != N_PURPOSES) {
        acc_msg_free(p);
        return werr_set(e, WERR_CORRUPT, "access policy has %zu rules", p->n_rules);
    }
    *out = p;
    return 0;
}

const Warden__V1__AccessPurposeRule *
acc_policy_rule(const Warden__V1__AccessPolicy *p, int purpose)
{
    for (size_t i = 0; i < p->n_rules; i++) {
        if ((int)p->rules[i]->purpose == purpose) {
            return p->rules[i];
        }
    }
    return NULL;
}

static int check_rule(const Warden__V1__AccessPurposeRule *r, struct werr *e)
{
    const char *name = acc_purpose_name((int)r->purpose);
    if (r->purpose < 1 || r->purpose > N_PURPOSES) {
        return werr_set(e, WERR_INVALID, "rule purpose %d is not a purpose",
                        (int)r->purpose);
    }
    if (r->approvals_required < 1 || r->approvals_required > ACC_APPROVALS_MAX) {
        return werr_set(e, WERR_INVALID, "%s: approvals_required must be 1..%u",
                        name, ACC_APPROVALS_MAX);
    }
    if (r->reviewer_roles == 0 ||
        (r->reviewer_roles & ~(uint32_t)ACC_REVIEWER_ROLES_ALLOWED) != 0) {
        return werr_set(e, WERR_INVALID,
                        "%s: reviewer_roles 0x%x must be a non-empty subset of "
                        "admin|operator|auditor", name, r->reviewer_roles);
    }
    if (r->max_duration_ms < ACC_DURATION_MIN_MS ||
        r->max_duration_ms > ACC_DURATION_HARD_MAX_MS) {
        return werr_set(e, WERR_INVALID, "%s: max_duration_ms must be %u..%llu",
                        name, ACC_DURATION_MIN_MS,
                        (unsigned long long)ACC_DURATION_HARD_MAX_MS);
    }
    if (r->max_uses < 1 || r->max_uses > ACC_USES_HARD_MAX) {
        return werr_set(e, WERR_INVALID, "%s: max_uses must be 1..%u", name,
                        ACC_USES_HARD_MAX);
    }
    if (r->pending_ttl_ms < ACC_PENDING_TTL_MIN_MS ||
        r->pending_ttl_ms > ACC_DURATION_HARD_MAX_MS) {
        return werr_set(e, WERR_INVALID, "%s: pending_ttl_ms must be %u..%llu",
                        name, ACC_PENDING_TTL_MIN_MS,
                        (unsigned long long)ACC_DURATION_HARD_MAX_MS);
    }
    return 0;
}

int acc_policy_set(struct access *a, struct store_txn *t,
                   const struct dom_ctx *ctx,
                   const Warden__V1__SetAccessPolicyRequest *req,
                   Warden__V1__AccessPolicy **out, struct werr *e)
{
    int rc = acc__may(ctx, WROLE_ADMIN, "change the access policy", e);
    if (rc) {
        return rc;
    }
    if (req->n_rules == 0 && req->lock_view_max_lag == 0 &&
        req->revlog_retention == 0) {
        return werr_set(e, WERR_INVALID, "SetAccessPolicy changes nothing");
    }
    if (req->n_rules > N_PURPOSES) {
        return werr_set(e, WERR_INVALID, "%zu rules, at most one per purpose (%d)",
                        req->n_rules, N_PURPOSES);
    }
    for (size_t i = 0; i < req->n_rules; i++) {
        if ((rc = check_rule(req->rules[i], e)) != 0) {
            return werr_wrap(e, "rules[%zu]", i);
        }
        for (size_t j = 0; j < i; j++) {
            if (req->rules[j]->purpose == req->rules[i]->purpose) {
                return werr_set(e, WERR_INVALID, "rules[%zu]: duplicate purpose %s",
                                i, acc_purpose_name((int)req->rules[i]->purpose));
            }
        }
    }
    if (req->lock_view_max_lag > ACC_LOCK_VIEW_LAG_HARD_MAX) {
        return werr_set(e, WERR_INVALID, "lock_view_max_lag must be <= %u",
                        ACC_LOCK_VIEW_LAG_HARD_MAX);
    }
    if (req->revlog_retention != 0 &&
        (req->revlog_retention < ACC_REVLOG_RETAIN_MIN ||
         req->revlog_retention > ACC_REVLOG_RETAIN_MAX)) {
        return werr_set(e, WERR_INVALID, "revlog_retention must be %u..%u",
                        ACC_REVLOG_RETAIN_MIN, ACC_REVLOG_RETAIN_MAX);
    }
    Warden__V1__AccessPolicy *p;
    if ((rc = acc_policy_get(a, t, &p, e)) != 0) {
        return rc;
    }
    /* Build the new record on the stack, borrowing the request's rules for
     * the purposes it names. */
    Warden__V1__AccessPurposeRule *rules[N_PURPOSES];
    for (size_t i = 0; i < N_PURPOSES; i++) {
        rules[i] = p->rules[i];
        for (size_t j = 0; j < req->n_rules; j++) {
            if (req->rules[j]->purpose == p->rules[i]->purpose) {
                rules[i] = req->rules[j];
            }
        }
    }
    Warden__V1__AccessPolicy np = WARDEN__V1__ACCESS_POLICY__INIT;
    np.n_rules = N_PURPOSES;
    np.rules = rules;
    np.lock_view_max_lag =
        req->lock_view_max_lag ? req->lock_view_max_lag : p->lock_view_max_lag;
    np.revlog_retention =
        req->revlog_retention ? req->revlog_retention : p->revlog_retention;
    np.updated_index = ctx->index;
    np.updated_by = (char *)ctx->who->name;
    size_t len = warden__v1__access_policy__get_packed_size(&np);
    uint8_t *buf = malloc(len ? len : 1);
    if (buf == NULL) {
        acc_msg_free(p);
        return werr_set(e, WERR_NOMEM, "access policy: %zu bytes", len);
    }
    warden__v1__access_policy__pack(&np, buf);
    acc_msg_free(p);
    rc = store_put(t, a->meta, META_POLICY, strlen(META_POLICY), buf, len, 0, e);
    if (rc == 0 && out != NULL) {
        *out = warden__v1__access_policy__unpack(NULL, len, buf);
        if (*out == NULL) {
            rc = werr_set(e, WERR_NOMEM, "access policy: copying result");
        }
    }
    free(buf);
    return rc;
}
