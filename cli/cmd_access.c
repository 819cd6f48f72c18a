/* cmd_access.c - wardenctl access ...: warden.v1.Access (issue 5,
 * docs/access.md). Requests are built from cli_args here; output goes
 * through cli/fmt_ops.h. */
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "../grpc/grpc.h"
#include "cmd.h"
#include "cmd_int.h"
#include "fmt_ops.h"
#include "warden/v1/access.pb-c.h"
#include "warden/v1/cluster.pb-c.h"

#define SVC "/warden.v1.Access/"

/* Labels of a selector as proto messages (borrowing the args' strings). */
struct sel {
    Warden__V1__Label l[CLI_SELECTOR_MAX];
    Warden__V1__Label *p[CLI_SELECTOR_MAX];
};

static void sel_fill(struct sel *s, const struct cli_args *a)
{
    for (size_t i = 0; i < a->n_selector; i++) {
        warden__v1__label__init(&s->l[i]);
        s->l[i].key = (char *)a->selector[i].key;
        s->l[i].value = (char *)a->selector[i].value;
        s->p[i] = &s->l[i];
    }
}

static Warden__V1__ReadConsistency consistency(const struct cli_args *a)
{
    return a->serializable
               ? WARDEN__V1__READ_CONSISTENCY__READ_CONSISTENCY_SERIALIZABLE
               : WARDEN__V1__READ_CONSISTENCY__READ_CONSISTENCY_LINEARIZABLE;
}

static int get_policy(const struct cli_args *a, struct cli_client *c,
                      Warden__V1__GetAccessPolicyResponse **out, FILE *err)
{
    Warden__V1__GetAccessPolicyRequest req = WARDEN__V1__GET_ACCESS_POLICY_REQUEST__INIT;
    ProtobufCMessage *m = NULL;
    int rc = cli__call(a, c, CLI_RETRY_READ, SVC "GetAccessPolicy", &req.base,
                       &warden__v1__get_access_policy_response__descriptor, &m,
                       NULL, err);
    *out = (void *)m;
    if (rc == 0 && (*out)->policy == NULL) {
        protobuf_c_message_free_unpacked(m, NULL);
        *out = NULL;
        return cli__report(err, GRPC_STATUS_INTERNAL, "response without a policy");
    }
    return rc;
}

static int cmd_policy_get(const struct cli_args *a, struct cli_client *c,
                          FILE *out, FILE *err)
{
    Warden__V1__GetAccessPolicyResponse *r = NULL;
    int rc = get_policy(a, c, &r, err);
    if (rc == 0) {
        cli_fmt_access_policy(out, r->policy, a->json);
        protobuf_c_message_free_unpacked(&r->base, NULL);
    }
    return rc;
}

/* SetAccessPolicy replaces the whole rule of each purpose it lists, so the
 * rule is read first and only the flags given change it. Between the read
 * and the write another admin may change the same rule; the last write
 * wins, and both are in the audit ledger. */
static int cmd_policy_set(const struct cli_args *a, struct cli_client *c,
                          FILE *out, FILE *err)
{
    Warden__V1__SetAccessPolicyRequest req = WARDEN__V1__SET_ACCESS_POLICY_REQUEST__INIT;
    Warden__V1__AccessPurposeRule rule = WARDEN__V1__ACCESS_PURPOSE_RULE__INIT;
    Warden__V1__AccessPurposeRule *rp = &rule;
    Warden__V1__GetAccessPolicyResponse *cur = NULL;
    int rc;
    if (a->purpose != 0) {
        rc = get_policy(a, c, &cur, err);
        if (rc != 0) {
            return rc;
        }
        int found = 0;
        for (size_t i = 0; i < cur->policy->n_rules; i++) {
            if ((int)cur->policy->rules[i]->purpose == a->purpose) {
                const Warden__V1__AccessPurposeRule *r = cur->policy->rules[i];
                rule.approvals_required = r->approvals_required;
                rule.reviewer_roles = r->reviewer_roles;
                rule.max_duration_ms = r->max_duration_ms;
                rule.max_uses = r->max_uses;
                rule.pending_ttl_ms = r->pending_ttl_ms;
                found = 1;
            }
        }
        protobuf_c_message_free_unpacked(&cur->base, NULL);
        rule.purpose = (Warden__V1__AccessPurpose)a->purpose;
        if (a->approvals) {
            rule.approvals_required = a->approvals;
        }
        if (a->reviewer_roles) {
            rule.reviewer_roles = a->reviewer_roles;
        }
        if (a->max_duration_ms) {
            rule.max_duration_ms = a->max_duration_ms;
        }
        if (a->max_uses) {
            rule.max_uses = a->max_uses;
        }
        if (a->pending_ttl_ms) {
            rule.pending_ttl_ms = a->pending_ttl_ms;
        }
        if (!found && (!rule.approvals_required || !rule.reviewer_roles ||
                       !rule.max_duration_ms || !rule.max_uses ||
                       !rule.pending_ttl_ms)) {
            return cli__report(err, GRPC_STATUS_FAILED_PRECONDITION,
                               "the policy has no rule for this purpose yet: give "
                               "--approvals, --reviewer-roles, --max-duration, "
                               "--max-uses and --pending-ttl");
        }
        req.rules = &rp;
        req.n_rules = 1;
    }
    req.lock_view_max_lag = a->lock_view_max_lag;
    req.revlog_retention = a->revlog_retention;
    req.idempotency_key = cli__idem(a);
    ProtobufCMessage *m = NULL;
    rc = cli__call(a, c, cli__mut_class(a), SVC "SetAccessPolicy", &req.base,
                   &warden__v1__set_access_policy_response__descriptor, &m, NULL,
                   err);
    if (rc != 0) {
        return rc;
    }
    Warden__V1__SetAccessPolicyResponse *r = (void *)m;
    if (r->policy != NULL) {
        cli_fmt_access_policy(out, r->policy, a->json);
    }
    protobuf_c_message_free_unpacked(m, NULL);
    return 0;
}

static int cmd_request(const struct cli_args *a, struct cli_client *c, FILE *out,
                       FILE *err)
{
    Warden__V1__RequestAccessRequest req = WARDEN__V1__REQUEST_ACCESS_REQUEST__INIT;
    Warden__V1__AccessScope scope = WARDEN__V1__ACCESS_SCOPE__INIT;
    struct sel s;
    sel_fill(&s, a);
    scope.protocols = (char **)a->protocols;
    scope.n_protocols = a->n_protocols;
    scope.ports = (uint32_t *)a->ports;
    scope.n_ports = a->n_ports;
    scope.command_class = (char *)(a->command_class ? a->command_class : "");
    req.device_ids = (char **)a->devices;
    req.n_device_ids = a->n_devices;
    req.selector = s.p;
    req.n_selector = a->n_selector;
    req.purpose = (Warden__V1__AccessPurpose)a->purpose;
    req.reason = (char *)a->reason;
    req.scope = &scope;
    req.duration_ms = a->duration_ms;
    req.max_sessions = a->max_sessions ? a->max_sessions : 1;
    req.idempotency_key = cli__idem(a);
    ProtobufCMessage *m = NULL;
    int rc = cli__call(a, c, cli__mut_class(a), SVC "RequestAccess", &req.base,
                       &warden__v1__request_access_response__descriptor, &m, NULL,
                       err);
    if (rc == 0) {
        cli_fmt_access_request(out, ((Warden__V1__RequestAccessResponse *)(void *)m)
                                        ->request,
                               NULL, a->json);
        protobuf_c_message_free_unpacked(m, NULL);
    }
    return rc;
}

static int cmd_review(const struct cli_args *a, struct cli_client *c, FILE *out,
                      FILE *err)
{
    Warden__V1__ReviewAccessRequest req = WARDEN__V1__REVIEW_ACCESS_REQUEST__INIT;
    req.request_id = (char *)a->target;
    req.comment = (char *)(a->comment ? a->comment : "");
    req.idempotency_key = cli__idem(a);
    ProtobufCMessage *m = NULL;
    int rc = cli__call(a, c, cli__mut_class(a),
                       a->cmd == CLI_CMD_ACCESS_APPROVE ? SVC "ApproveAccess"
                                                        : SVC "DenyAccess",
                       &req.base, &warden__v1__review_access_response__descriptor,
                       &m, NULL, err);
    if (rc == 0) {
        Warden__V1__ReviewAccessResponse *r = (void *)m;
        cli_fmt_access_request(out, r->request, r->grant, a->json);
        protobuf_c_message_free_unpacked(m, NULL);
    }
    return rc;
}

/* ALLOW and DENY are both answers (exit 0): a gateway script reads the
 * first word. Without --idempotency-key an ambiguous failure is not
 * retried, since an ALLOW consumes a use (docs/access.md). */
static int cmd_check(const struct cli_args *a, struct cli_client *c, FILE *out,
                     FILE *err)
{
    Warden__V1__CheckAccessRequest req = WARDEN__V1__CHECK_ACCESS_REQUEST__INIT;
    req.principal = (char *)a->principal;
    req.device_id = (char *)a->devices[0];
    req.protocol = (char *)(a->n_protocols ? a->protocols[0] : "");
    req.port = a->n_ports ? a->ports[0] : 0;
    req.command_class = (char *)(a->command_class ? a->command_class : "");
    req.lock_revision = a->revision;
    req.idempotency_key = cli__idem(a);
    ProtobufCMessage *m = NULL;
    int rc = cli__call(a, c, cli__mut_class(a), SVC "CheckAccess", &req.base,
                       &warden__v1__check_access_response__descriptor, &m, NULL,
                       err);
    if (rc == 0) {
        cli_fmt_access_check(out, (void *)m, a->json);
        protobuf_c_message_free_unpacked(m, NULL);
    }
    return rc;
}

static int cmd_revoke(const struct cli_args *a, struct cli_client *c, FILE *out,
                      FILE *err)
{
    Warden__V1__RevokeGrantRequest req = WARDEN__V1__REVOKE_GRANT_REQUEST__INIT;
    req.grant_id = (char *)a->target;
    req.reason = (char *)a->reason;
    req.idempotency_key = cli__idem(a);
    ProtobufCMessage *m = NULL;
    int rc = cli__call(a, c, cli__mut_class(a), SVC "RevokeGrant", &req.base,
                       &warden__v1__revoke_grant_response__descriptor, &m, NULL,
                       err);
    if (rc != 0) {
        return rc;
    }
    Warden__V1__RevokeGrantResponse *r = (void *)m;
    if (r->grant != NULL) {
        cli_fmt_access_grant(out, r->grant, a->json);
    }
    protobuf_c_message_free_unpacked(m, NULL);
    return 0;
}

/* ListGrants, one page or --all (at most CLI_LIST_MAX_PAGES), printed as
 * one table. */
static int cmd_grants(const struct cli_args *a, struct cli_client *c, FILE *out,
                      FILE *err)
{
    Warden__V1__ListGrantsRequest req = WARDEN__V1__LIST_GRANTS_REQUEST__INIT;
    req.device_id = (char *)(a->n_devices ? a->devices[0] : "");
    req.principal = (char *)(a->principal ? a->principal : "");
    req.state = (Warden__V1__AccessGrantState)a->grant_state;
    req.page_size = a->page_size;
    req.consistency = consistency(a);
    struct cli__pages pg;
    int rc = cli__list_pages(a, c, SVC "ListGrants", &req.base, &req.page_token,
                             &warden__v1__list_grants_response__descriptor,
                             "grants", &pg, err);
    if (pg.items != NULL) {
        cli_fmt_access_grants(out, (Warden__V1__AccessGrant **)pg.items,
                              pg.n_items, pg.next_token, a->json);
    }
    if (pg.limited) {
        cli__report(err, rc,
                    "--all stopped at the page limit; continue with --page-token");
    }
    cli__pages_free(&pg);
    return rc;
}

/* Cluster time now, as the answering node has applied it: the base for a
 * relative --expires (LockRequest.expires_ms is cluster time). */
static int cluster_time(const struct cli_args *a, struct cli_client *c,
                        uint64_t *now, FILE *err)
{
    Warden__V1__ClusterStatusRequest req = WARDEN__V1__CLUSTER_STATUS_REQUEST__INIT;
    ProtobufCMessage *m = NULL;
    int rc = cli__call(a, c, CLI_RETRY_READ, "/warden.v1.Cluster/Status", &req.base,
                       &warden__v1__cluster_status_response__descriptor, &m, NULL,
                       err);
    if (rc == 0) {
        *now = ((Warden__V1__ClusterStatusResponse *)(void *)m)->cluster_time_ms;
        protobuf_c_message_free_unpacked(m, NULL);
    }
    return rc;
}

static int cmd_lock(const struct cli_args *a, struct cli_client *c, FILE *out,
                    FILE *err)
{
    Warden__V1__LockRequest req = WARDEN__V1__LOCK_REQUEST__INIT;
    struct sel s;
    sel_fill(&s, a);
    req.value = "";
    if (a->n_devices) {
        req.kind = WARDEN__V1__LOCK_TARGET_KIND__LOCK_TARGET_KIND_DEVICE;
        req.value = (char *)a->devices[0];
    } else if (a->principal) {
        req.kind = WARDEN__V1__LOCK_TARGET_KIND__LOCK_TARGET_KIND_PRINCIPAL;
        req.value = (char *)a->principal;
    } else if (a->gateway) {
        req.kind = WARDEN__V1__LOCK_TARGET_KIND__LOCK_TARGET_KIND_GATEWAY;
        req.value = (char *)a->gateway;
    } else if (a->n_selector) {
        req.kind = WARDEN__V1__LOCK_TARGET_KIND__LOCK_TARGET_KIND_LABEL_SELECTOR;
        req.selector = s.p;
        req.n_selector = a->n_selector;
    } else {
        req.kind = WARDEN__V1__LOCK_TARGET_KIND__LOCK_TARGET_KIND_ALL;
    }
    req.reason = (char *)a->reason;
    req.idempotency_key = cli__idem(a);
    if (a->expires_in_ms != 0) {
        uint64_t now = 0;
        int rc = cluster_time(a, c, &now, err);
        if (rc != 0) {
            return rc;
        }
        req.expires_ms = now + a->expires_in_ms;
    }
    ProtobufCMessage *m = NULL;
    int rc = cli__call(a, c, cli__mut_class(a), SVC "Lock", &req.base,
                       &warden__v1__lock_response__descriptor, &m, NULL, err);
    if (rc != 0) {
        return rc;
    }
    Warden__V1__LockResponse *r = (void *)m;
    if (r->lock != NULL) {
        cli_fmt_access_lock(out, r->lock, a->json);
    }
    protobuf_c_message_free_unpacked(m, NULL);
    return 0;
}

static int cmd_unlock(const struct cli_args *a, struct cli_client *c, FILE *out,
                      FILE *err)
{
    Warden__V1__UnlockRequest req = WARDEN__V1__UNLOCK_REQUEST__INIT;
    req.lock_id = (char *)a->target;
    req.reason = (char *)(a->reason ? a->reason : "");
    req.idempotency_key = cli__idem(a);
    ProtobufCMessage *m = NULL;
    int rc = cli__call(a, c, cli__mut_class(a), SVC "Unlock", &req.base,
                       &warden__v1__unlock_response__descriptor, &m, NULL, err);
    if (rc != 0) {
        return rc;
    }
    Warden__V1__UnlockResponse *r = (void *)m;
    if (r->lock != NULL) {
        cli_fmt_access_lock(out, r->lock, a->json);
    }
    protobuf_c_message_free_unpacked(m, NULL);
    return 0;
}

/* ---- watch ----------------------------------------------------------------- */

static volatile sig_atomic_t watch_stop;

static void on_sigint(int sig)
{
    (void)sig;
    watch_stop = 1;
}

/* Events a single message may carry and we re-list after --gateway
 * filtering (the server pages at most 1000 events). */
#define WATCH_EVENTS_MAX 1000u

struct watch_ctx {
    FILE *out;
    int json;
    const char *gateway;  /* client-side filter, or NULL */
    uint64_t max;         /* events to print; 0: no limit */
    uint64_t events;      /* events printed */
    uint64_t msgs;        /* messages received */
    uint64_t last;        /* highest revision seen (order check) */
    int bad;
};

static int for_gateway(const Warden__V1__RevocationEvent *ev, const char *gw)
{
    for (size_t i = 0; i < ev->n_gateways; i++) {
        if (strcmp(ev->gateways[i], gw) == 0 || strcmp(ev->gateways[i], "*") == 0) {
            return 1;
        }
    }
    return 0;
}

static int watch_cb(void *user, const uint8_t *msg, size_t len)
{
    struct watch_ctx *w = user;
    Warden__V1__WatchRevocationsResponse *r =
        warden__v1__watch_revocations_response__unpack(NULL, len, msg);
    if (r == NULL || r->n_events > WATCH_EVENTS_MAX) {
        if (r != NULL) {
            protobuf_c_message_free_unpacked(&r->base, NULL);
        }
        w->bad = 1;
        return 1;
    }
    w->msgs++;
    static Warden__V1__RevocationEvent *keep[WATCH_EVENTS_MAX];
    size_t n = 0;
    int stop = 0;
    for (size_t i = 0; i < r->n_events; i++) {
        /* Revisions come in commit order without repeats. */
        if (r->events[i]->revision <= w->last) {
            w->bad = 1;
            stop = 1;
            break;
        }
        w->last = r->events[i]->revision;
        if (w->gateway == NULL || for_gateway(r->events[i], w->gateway)) {
            if (w->max != 0 && w->events + n >= w->max) {
                stop = 1;
                break;
            }
            keep[n++] = r->events[i];
        }
    }
    Warden__V1__WatchRevocationsResponse shown = *r;
    shown.events = keep;
    shown.n_events = n;
    /* A message whose events were all filtered out is not a progress
     * notification: print nothing for it. */
    if (n > 0 || r->n_events == 0) {
        cli_fmt_revocations(w->out, &shown, w->json);
        fflush(w->out); /* a watch is read as it happens */
    }
    w->events += n;
    protobuf_c_message_free_unpacked(&r->base, NULL);
    return stop || (w->max != 0 && w->events >= w->max);
}

static int cmd_watch(const struct cli_args *a, struct cli_client *c, FILE *out,
                     FILE *err)
{
    Warden__V1__WatchRevocationsRequest req =
        WARDEN__V1__WATCH_REVOCATIONS_REQUEST__INIT;
    req.from_revision = a->from_revision;
    struct watch_ctx w = {.out = out, .json = a->json, .gateway = a->gateway,
                          .max = a->max, .last = a->from_revision};
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    watch_stop = 0;
    (void)sigaction(SIGINT, &sa, &old);
    struct cli__stream_spec ss = {
        .cb = watch_cb,
        .user = &w,
        /* A watch runs until stopped: only an explicit --timeout ends it. */
        .timeout_ms = a->timeout_given ? a->timeout_ms : 0,
        .stop = &watch_stop,
        .n_received = &w.msgs,
    };
    int rc = cli__call(a, c, CLI_RETRY_READ, SVC "WatchRevocations", &req.base, NULL,
                       NULL, &ss, err);
    (void)sigaction(SIGINT, &old, NULL);
    if (rc == 0 && w.bad) {
        return cli__report(err, GRPC_STATUS_DATA_LOSS,
                           "watch: a message did not decode or revisions went "
                           "backwards");
    }
    return rc;
}

int cli__cmd_access(const struct cli_args *a, struct cli_client *c, FILE *out,
                    FILE *err)
{
    switch (a->cmd) {
    case CLI_CMD_ACCESS_POLICY_GET:
        return cmd_policy_get(a, c, out, err);
    case CLI_CMD_ACCESS_POLICY_SET:
        return cmd_policy_set(a, c, out, err);
    case CLI_CMD_ACCESS_REQUEST:
        return cmd_request(a, c, out, err);
    case CLI_CMD_ACCESS_APPROVE:
    case CLI_CMD_ACCESS_DENY:
        return cmd_review(a, c, out, err);
    case CLI_CMD_ACCESS_CHECK:
        return cmd_check(a, c, out, err);
    case CLI_CMD_ACCESS_REVOKE:
        return cmd_revoke(a, c, out, err);
    case CLI_CMD_ACCESS_GRANTS:
        return cmd_grants(a, c, out, err);
    case CLI_CMD_ACCESS_LOCK:
        return cmd_lock(a, c, out, err);
    case CLI_CMD_ACCESS_UNLOCK:
        return cmd_unlock(a, c, out, err);
    case CLI_CMD_ACCESS_WATCH:
        return cmd_watch(a, c, out, err);
    default:
        return cli__report(err, GRPC_STATUS_INTERNAL, "no such access command");
    }
}
