/* svc_cluster.c - warden.v1.Cluster (proto/warden/v1/cluster.proto) over
 * the Raft node (consensus/node.h).
 *
 * Status: admin, operator, auditor; any node answers from its own view.
 * AddMember, RemoveMember, TransferLeadership: admin only, on the leader
 * (elsewhere UNAVAILABLE with warden-leader trailers, svc_fail_raft). They
 * reply only after the node's change callback: for AddMember that is after
 * the promotion to voter has committed (raft's catch-up rounds first), or
 * after the add alone with spare_only; for TransferLeadership after another
 * node is known to lead. A cancelled call does not stop the change.
 *
 * Audit (docs/audit.md, "Membership changes"): after an add or remove
 * finishes, the leader proposes audit_note {MEMBERSHIP, "<id>@<address>",
 * OK | REJECTED} as the calling admin, and replies once the note is
 * applied (a failed note is logged; the change itself stands). A transfer
 * is noted BEFORE it starts ("transfer leadership requested"), because a
 * successful transfer leaves this node unable to propose; a transfer that
 * then times out (WERR_ABORTED, still leader) or is refused at once (not a
 * voter, ...) gets a second, REJECTED note.
 * A removed leader steps down, so removing the leader itself is noted only
 * in the logs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "warden/v1/cluster.pb-c.h"

#include "../common/log.h"
#include "../common/principal.h"
#include "../consensus/node.h"
#include "warden/v1/audit.pb-c.h"
#include "warden/v1/command.pb-c.h"
#include "cluster_cfg.h"
#include "svc.h"
#include "svc_propose.h"

static Warden__V1__MemberRole wire_role(const char *role_name)
{
    /* raft's role names ("voter", "stand-by", "spare"): server/ does not
     * include raft.h (only consensus/ sees raft). */
    if (role_name == NULL) {
        return WARDEN__V1__MEMBER_ROLE__MEMBER_ROLE_UNSPECIFIED;
    }
    if (strcmp(role_name, "voter") == 0) {
        return WARDEN__V1__MEMBER_ROLE__MEMBER_ROLE_VOTER;
    }
    if (strcmp(role_name, "spare") == 0) {
        return WARDEN__V1__MEMBER_ROLE__MEMBER_ROLE_SPARE;
    }
    return WARDEN__V1__MEMBER_ROLE__MEMBER_ROLE_STANDBY;
}

/* Fill members (caller's arrays, WNODE_MEMBERS_MAX each) from st. Strings
 * point into st. */
static size_t fill_members(struct wnode_status *st, Warden__V1__Member *mem,
                           Warden__V1__Member **ptrs)
{
    for (unsigned i = 0; i < st->n_members; i++) {
        struct wnode_member *m = &st->members[i];
        warden__v1__member__init(&mem[i]);
        mem[i].id = m->id;
        mem[i].peer_address = m->peer_addr;
        mem[i].client_address = m->client_addr;
        mem[i].role = wire_role(m->role_name);
        mem[i].has_progress = m->has_progress != 0;
        mem[i].match_index = m->match_index;
        ptrs[i] = &mem[i];
    }
    return st->n_members;
}

static void status_cb(struct grpc_call *call, const ProtobufCMessage *msg,
                      void *data)
{
    struct svc_ctx *ctx = data;
    (void)msg;
    struct wnode_status st;
    Warden__V1__Member mem[WNODE_MEMBERS_MAX];
    Warden__V1__Member *ptrs[WNODE_MEMBERS_MAX];
    wnode_status(ctx->wn, &st);

    Warden__V1__ClusterStatusResponse r = WARDEN__V1__CLUSTER_STATUS_RESPONSE__INIT;
    r.id = st.id;
    r.state = (char *)(st.failed ? "failed" : st.state_name);
    r.term = st.term;
    r.leader_id = st.leader_id;
    r.leader_address = st.leader_client_addr;
    r.commit_index = st.commit_index;
    r.applied_index = st.applied_index;
    r.fsm_applied_index = st.fsm_applied_index;
    r.last_index = st.last_index;
    r.snapshot_index = st.snapshot_index;
    r.snapshot_term = st.snapshot_term;
    r.n_members = fill_members(&st, mem, ptrs);
    r.members = ptrs;
    r.cluster_time_ms = st.cluster_time_ms;
    r.wall_offset_known = st.wall_offset_known != 0;
    r.wall_offset_ms = st.wall_offset_ms;
    r.proposals = st.proposals;
    r.flushes = st.flushes;
    r.restores = st.restores;
    r.restores_skipped = st.restores_skipped;
    r.snapshots = st.snapshots;
    r.tls_refused = st.tls_refused;
    grpc_call_reply(call, &r.base);
}

/* ---- membership --------------------------------------------------------- */

enum change_kind { CHANGE_ADD, CHANGE_REMOVE, CHANGE_TRANSFER };

static const char *change_name(unsigned kind)
{
    return kind == CHANGE_ADD      ? "add member"
           : kind == CHANGE_REMOVE ? "remove member"
                                   : "transfer leadership";
}

/* One membership change in flight: the parked call plus what the audit
 * note needs once the call may be gone. Owned by the pending's arg. */
struct change {
    struct principal who;              /* the caller, copied */
    unsigned id;
    char target[WNODE_ADDR_MAX + 16];  /* "<id>@<address>" */
    int status;                        /* the change's outcome */
    const char *detail;                /* static: "add as voter", ... */
};

static void change_reply(struct svc_pending *p)
{
    struct svc_ctx *ctx = p->ctx;
    unsigned kind = p->u;
    struct change *ch = p->arg;
    int status = ch->status;
    struct grpc_call *call = svc_pending_end(p, NULL);
    free(ch);
    if (call == NULL) {
        return;
    }
    if (status != 0) {
        svc_fail_raft(ctx, call, status, change_name(kind));
        return;
    }
    struct wnode_status st;
    Warden__V1__Member mem[WNODE_MEMBERS_MAX];
    Warden__V1__Member *ptrs[WNODE_MEMBERS_MAX];
    wnode_status(ctx->wn, &st);
    size_t n = fill_members(&st, mem, ptrs);
    if (kind == CHANGE_ADD) {
        Warden__V1__AddMemberResponse r = WARDEN__V1__ADD_MEMBER_RESPONSE__INIT;
        r.n_members = n;
        r.members = ptrs;
        grpc_call_reply(call, &r.base);
    } else {
        Warden__V1__RemoveMemberResponse r = WARDEN__V1__REMOVE_MEMBER_RESPONSE__INIT;
        r.n_members = n;
        r.members = ptrs;
        grpc_call_reply(call, &r.base);
    }
}

/* Propose the MEMBERSHIP note for ch; cb runs when it is applied (or not).
 * Returns the wnode_propose error when cb will not run. */
static int propose_note(struct svc_ctx *ctx, const struct change *ch,
                        const char *detail, int status, svc_internal_cb cb,
                        void *arg)
{
    Warden__V1__AuditNote note = WARDEN__V1__AUDIT_NOTE__INIT;
    note.action = WARDEN__V1__AUDIT_ACTION__AUDIT_ACTION_MEMBERSHIP;
    note.target = (char *)ch->target;
    note.outcome = status == 0 ? WARDEN__V1__AUDIT_OUTCOME__AUDIT_OUTCOME_OK
                               : WARDEN__V1__AUDIT_OUTCOME__AUDIT_OUTCOME_REJECTED;
    note.code = status;
    note.detail = (char *)detail;
    Warden__V1__Command cmd;
    svc_cmd_init(&cmd, &ch->who, NULL);
    cmd.op_case = WARDEN__V1__COMMAND__OP_AUDIT_NOTE;
    cmd.audit_note = &note;
    return svc_propose_internal(ctx, &cmd, "membership audit note", cb, arg);
}

static void change_noted_cb(struct svc_ctx *ctx, void *arg, int status,
                            const struct wfsm_result *res)
{
    (void)ctx;
    (void)status;
    (void)res; /* failures are logged by svc_propose_internal */
    change_reply(arg);
}

static void change_done_cb(void *arg, int status)
{
    struct svc_pending *p = arg;
    struct svc_ctx *ctx = p->ctx;
    unsigned kind = p->u;
    struct change *ch = p->arg;
    ch->status = status;
    wlog(status == 0 ? WLOG_INFO : WLOG_WARN, "membership change finished",
         "change", change_name(kind), "target", ch->target, "status",
         status == 0 ? "ok" : werr_str(status), NULL);
    if (status == WERR_UNAVAIL || status == WERR_CANCELLED ||
        !wnode_is_leader(ctx->wn)) {
        if (status == 0) {
            wlog(WLOG_WARN, "membership change not audited: no longer the leader",
                 "change", change_name(kind), "target", ch->target, NULL);
        }
        change_reply(p);
        return;
    }
    if (propose_note(ctx, ch, ch->detail, status, change_noted_cb, p) != 0) {
        change_reply(p);
    }
}

/* Park call with a struct change; NULL when out of memory (call failed). */
static struct svc_pending *change_new(struct svc_ctx *ctx,
                                      struct grpc_call *call,
                                      const ProtobufCMessage *msg,
                                      unsigned kind, unsigned id,
                                      const char *address, const char *detail)
{
    struct change *ch = calloc(1, sizeof *ch);
    if (ch == NULL) {
        grpc_call_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return NULL;
    }
    struct svc_pending *p = svc_pending_new(ctx, call, msg);
    if (p == NULL) {
        free(ch);
        return NULL;
    }
    ch->who = *grpc_call_principal(call);
    ch->id = id;
    ch->detail = detail;
    snprintf(ch->target, sizeof ch->target, "%u@%s", id, address);
    p->u = kind;
    p->arg = ch;
    return p;
}

/* Fail a parked change that never started. */
static void change_abort(struct svc_pending *p, int rc)
{
    struct svc_ctx *ctx = p->ctx;
    unsigned kind = p->u;
    free(p->arg);
    struct grpc_call *call = svc_pending_end(p, NULL);
    if (call != NULL) {
        svc_fail_raft(ctx, call, rc, change_name(kind));
    }
}

/* The address a member id has in the current configuration, or "?". */
static void member_addr(struct svc_ctx *ctx, unsigned id, char *out, size_t cap)
{
    struct wnode_status st;
    wnode_status(ctx->wn, &st);
    snprintf(out, cap, "?");
    for (unsigned i = 0; i < st.n_members; i++) {
        if (st.members[i].id == id) {
            snprintf(out, cap, "%s/%s", st.members[i].peer_addr,
                     st.members[i].client_addr);
        }
    }
}

static void add_cb(struct grpc_call *call, const ProtobufCMessage *msg, void *data)
{
    struct svc_ctx *ctx = data;
    const Warden__V1__AddMemberRequest *req = (const Warden__V1__AddMemberRequest *)msg;
    struct werr e = {0};
    char host[16], client[WNODE_HOSTPORT_MAX], addr[WNODE_ADDR_MAX];
    unsigned port;

    if (req->id == 0) {
        grpc_call_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "id must be > 0");
        return;
    }
    if (cluster_hostport_parse(req->peer_address, 0, host, sizeof host, &port, &e) != 0) {
        grpc_call_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "peer_address: %s", e.msg);
        return;
    }
    if (req->client_address != NULL && req->client_address[0] != '\0') {
        if (cluster_hostport_parse(req->client_address, 0, host, sizeof host, &port,
                                   &e) != 0) {
            grpc_call_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "client_address: %s",
                           e.msg);
            return;
        }
        snprintf(client, sizeof client, "%s", req->client_address);
    } else if (cluster_addr_shift(req->peer_address, -1, client, sizeof client, &e) != 0) {
        grpc_call_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "client_address: %s", e.msg);
        return;
    }
    int k = snprintf(addr, sizeof addr, "%s/%s", req->peer_address, client);
    if (k < 0 || (size_t)k >= sizeof addr) {
        grpc_call_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "address too long");
        return;
    }
    if (!wnode_is_leader(ctx->wn)) {
        svc_fail_raft(ctx, call, WERR_UNAVAIL, "add member");
        return;
    }
    struct svc_pending *p = change_new(ctx, call, msg, CHANGE_ADD, req->id, addr,
                                      req->spare_only ? "add as spare" : "add as voter");
    if (p == NULL) {
        return;
    }
    char ids[16];
    snprintf(ids, sizeof ids, "%u", req->id);
    wlog(WLOG_INFO, "membership change requested", "change", "add member", "id", ids,
         "address", addr, "promote", req->spare_only ? "no" : "yes", "principal",
         grpc_call_principal(call)->name, NULL);
    int rc = wnode_add(ctx->wn, req->id, addr, !req->spare_only, change_done_cb, p);
    if (rc != 0) {
        change_abort(p, rc);
    }
}

static void remove_cb(struct grpc_call *call, const ProtobufCMessage *msg, void *data)
{
    struct svc_ctx *ctx = data;
    const Warden__V1__RemoveMemberRequest *req =
        (const Warden__V1__RemoveMemberRequest *)msg;
    if (req->id == 0) {
        grpc_call_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "id must be > 0");
        return;
    }
    if (!wnode_is_leader(ctx->wn)) {
        svc_fail_raft(ctx, call, WERR_UNAVAIL, "remove member");
        return;
    }
    char addr[WNODE_ADDR_MAX];
    member_addr(ctx, req->id, addr, sizeof addr);
    struct svc_pending *p = change_new(ctx, call, msg, CHANGE_REMOVE, req->id, addr,
                                      "remove");
    if (p == NULL) {
        return;
    }
    char ids[16];
    snprintf(ids, sizeof ids, "%u", req->id);
    wlog(WLOG_INFO, "membership change requested", "change", "remove member", "id",
         ids, "principal", grpc_call_principal(call)->name, NULL);
    int rc = wnode_remove(ctx->wn, req->id, change_done_cb, p);
    if (rc != 0) {
        change_abort(p, rc);
    }
}

static void transfer_done_cb(void *arg, int status)
{
    struct svc_pending *p = arg;
    struct svc_ctx *ctx = p->ctx;
    struct change *ch = p->arg;
    unsigned id = 0;
    char addr[WNODE_HOSTPORT_MAX], ids[16];
    wnode_leader(ctx->wn, &id, addr, sizeof addr);
    snprintf(ids, sizeof ids, "%u", id);
    wlog(status == 0 ? WLOG_INFO : WLOG_WARN, "leadership transfer finished",
         "status", status == 0 ? "ok" : werr_str(status), "leader_id", ids, NULL);
    if (status == WERR_ABORTED && wnode_is_leader(ctx->wn)) {
        /* The "requested" note is in the ledger; say it did not happen.
         * Fire and forget: the reply does not wait for it. */
        propose_note(ctx, ch, "transfer leadership timed out", status, NULL,
                     NULL);
    }
    free(ch);
    struct grpc_call *call = svc_pending_end(p, NULL);
    if (call == NULL) {
        return;
    }
    if (status != 0) {
        svc_fail_raft(ctx, call, status, "transfer leadership");
        return;
    }
    Warden__V1__TransferLeadershipResponse r =
        WARDEN__V1__TRANSFER_LEADERSHIP_RESPONSE__INIT;
    r.leader_id = id;
    grpc_call_reply(call, &r.base);
}

/* The "transfer requested" note is applied: start the transfer. */
static void transfer_noted_cb(struct svc_ctx *ctx, void *arg, int status,
                              const struct wfsm_result *res)
{
    struct svc_pending *p = arg;
    struct change *ch = p->arg;
    int rc = status;
    if (rc == 0 && res->code != 0) {
        rc = res->code;
    }
    if (rc == 0) {
        rc = wnode_transfer(ctx->wn, ch->id, transfer_done_cb, p);
        if (rc == 0) {
            return;
        }
        /* The "requested" note is in; say the transfer never started
         * (fire and forget, as for a timeout). */
        propose_note(ctx, ch, "transfer leadership refused", rc, NULL, NULL);
    }
    change_abort(p, rc);
}

static void transfer_cb(struct grpc_call *call, const ProtobufCMessage *msg,
                        void *data)
{
    struct svc_ctx *ctx = data;
    const Warden__V1__TransferLeadershipRequest *req =
        (const Warden__V1__TransferLeadershipRequest *)msg;
    if (!wnode_is_leader(ctx->wn)) {
        svc_fail_raft(ctx, call, WERR_UNAVAIL, "transfer leadership");
        return;
    }
    char addr[WNODE_ADDR_MAX];
    if (req->id == 0) {
        snprintf(addr, sizeof addr, "any");
    } else {
        member_addr(ctx, req->id, addr, sizeof addr);
        if (strcmp(addr, "?") == 0) {
            /* Refused before any note: nothing was attempted. */
            grpc_call_fail(call, GRPC_STATUS_NOT_FOUND,
                           "transfer leadership: %u is not a member", req->id);
            return;
        }
    }
    struct svc_pending *p =
        change_new(ctx, call, msg, CHANGE_TRANSFER, req->id, addr,
                   "transfer leadership requested");
    if (p == NULL) {
        return;
    }
    char ids[16];
    snprintf(ids, sizeof ids, "%u", req->id);
    wlog(WLOG_INFO, "leadership transfer requested", "to", ids, "principal",
         grpc_call_principal(call)->name, NULL);
    struct change *ch = p->arg;
    int rc = propose_note(ctx, ch, ch->detail, 0, transfer_noted_cb, p);
    if (rc != 0) {
        change_abort(p, rc);
    }
}

int svc_cluster_register(struct grpc_router *r, struct svc_ctx *ctx, struct werr *e)
{
    const struct grpc_method methods[] = {
        {.path = "/warden.v1.Cluster/Status",
         .roles = WROLE_ADMIN | WROLE_OPERATOR | WROLE_AUDITOR,
         .req_desc = &warden__v1__cluster_status_request__descriptor,
         .handler = status_cb},
        {.path = "/warden.v1.Cluster/AddMember",
         .roles = WROLE_ADMIN,
         .req_desc = &warden__v1__add_member_request__descriptor,
         .handler = add_cb},
        {.path = "/warden.v1.Cluster/RemoveMember",
         .roles = WROLE_ADMIN,
         .req_desc = &warden__v1__remove_member_request__descriptor,
         .handler = remove_cb},
        {.path = "/warden.v1.Cluster/TransferLeadership",
         .roles = WROLE_ADMIN,
         .req_desc = &warden__v1__transfer_leadership_request__descriptor,
         .handler = transfer_cb},
    };
    return svc_register_methods(r, ctx, methods,
                                sizeof methods / sizeof methods[0],
                                "svc_cluster_register", e);
}
