/* svc_denials.c - aggregated authorization denials (docs/audit.md,
 * "Authorization denials: aggregated, bounded"; docs/operations-cluster.md).
 *
 * Every PERMISSION_DENIED the server decides without a Raft write - the
 * grpc layer's role gate (grpc_conn_config.on_denied) and the gateway
 * binding checks in svc_*.c - lands here as a count in a bounded table
 * (principal name, role, method) -> count. A denial for a new key while
 * the table is full only adds to `dropped`.
 *
 * Every SVC_DENIAL_FLUSH_MS the LEADER proposes the table as `denials`
 * commands of at most AUDIT_DENIAL_ROWS_MAX rows (the first one carries
 * `dropped`), authored by its node principal, and empties it. Denials that
 * apply itself finds are audited by apply and never counted here.
 *
 * A FOLLOWER (or a node with no leader) forwards nothing: it logs each row
 * at WARN ("authorization denials (not replicated)") and empties its
 * table, so its counts live only in its own log. A client that a follower
 * refused never reached the leader either; what it tried is in that
 * node's log.
 *
 * A proposal that fails (leadership lost, node closing) is not retried:
 * it may still commit, and retrying could count the same denials twice.
 * Its rows are logged, and counted in `lost`. */
#include <stdio.h>
#include <string.h>

#include "warden/v1/audit.pb-c.h"
#include "warden/v1/command.pb-c.h"

#include "../common/log.h"
#include "../consensus/node.h"
#include "../domain/audit.h"
#include "svc.h"
#include "svc_propose.h"

void svc_denial_note(struct svc_ctx *ctx, const struct principal *who,
                     const char *method)
{
    struct svc_denials *d = &ctx->denials;
    d->total++;
    for (size_t i = 0; i < d->n; i++) {
        struct svc_denial_row *r = &d->rows[i];
        if (r->who.role == who->role && strcmp(r->who.name, who->name) == 0 &&
            strcmp(r->method, method) == 0) {
            r->count++;
            return;
        }
    }
    if (d->n == SVC_DENIAL_TABLE_MAX) {
        d->dropped++;
        d->total_dropped++;
        return;
    }
    struct svc_denial_row *r = &d->rows[d->n++];
    r->who = *who;
    snprintf(r->method, sizeof r->method, "%s", method);
    r->count = 1;
}

void svc_denial_hook(void *arg, const struct principal *who, const char *path)
{
    svc_denial_note(arg, who, path);
}

static void log_row(const char *msg, const char *name, unsigned role,
                    const char *method, uint64_t count)
{
    char n[24];
    snprintf(n, sizeof n, "%llu", (unsigned long long)count);
    wlog(WLOG_WARN, msg, "principal", name, "role", principal_role_name(role),
         "method", method, "count", n, NULL);
}

static void log_counters(const struct svc_denials *d)
{
    char total[24], dropped[24], proposed[24], lost[24], local[24];
    snprintf(total, sizeof total, "%llu", (unsigned long long)d->total);
    snprintf(dropped, sizeof dropped, "%llu", (unsigned long long)d->total_dropped);
    snprintf(proposed, sizeof proposed, "%llu", (unsigned long long)d->proposed);
    snprintf(lost, sizeof lost, "%llu", (unsigned long long)d->lost);
    snprintf(local, sizeof local, "%llu", (unsigned long long)d->local_only);
    wlog(WLOG_INFO, "authorization denial counters", "total", total,
         "not_itemised", dropped, "proposed", proposed, "proposal_failed", lost,
         "logged_only", local, NULL);
}

/* arg carries the batch's total count, so a failure can be accounted. */
static void batch_done_cb(struct svc_ctx *ctx, void *arg, int status,
                          const struct wfsm_result *res)
{
    uint64_t count = (uint64_t)(uintptr_t)arg;
    if (status != 0 || res->code != 0) {
        ctx->denials.lost += count;
        char n[24];
        snprintf(n, sizeof n, "%llu", (unsigned long long)count);
        wlog(WLOG_WARN, "authorization denials not recorded in the ledger",
             "count", n, "status", status != 0 ? werr_str(status) : res->msg,
             NULL);
    }
}

/* Log and forget the whole table (follower, or the leader could not
 * propose at shutdown). */
static void log_table(struct svc_denials *d, const char *msg)
{
    for (size_t i = 0; i < d->n; i++) {
        log_row(msg, d->rows[i].who.name, d->rows[i].who.role,
                d->rows[i].method, d->rows[i].count);
        d->local_only += d->rows[i].count;
    }
    if (d->dropped > 0) {
        log_row(msg, "*", 0, "(not itemised: table full)", d->dropped);
        d->local_only += d->dropped;
    }
    d->n = 0;
    d->dropped = 0;
}

void svc_denials__flush(struct svc_ctx *ctx, uint64_t now_ms, int force)
{
    struct svc_denials *d = &ctx->denials;
    if (!force && now_ms - d->last_flush_ms < SVC_DENIAL_FLUSH_MS) {
        return;
    }
    d->last_flush_ms = now_ms;
    if (d->n == 0 && d->dropped == 0) {
        return;
    }
    if (!wnode_is_leader(ctx->wn)) {
        log_table(d, "authorization denials (not replicated: not the leader)");
        log_counters(d);
        return;
    }
    Warden__V1__AuditDenialRow rows[AUDIT_DENIAL_ROWS_MAX];
    Warden__V1__AuditDenialRow *ptrs[AUDIT_DENIAL_ROWS_MAX];
    /* Propose from the end of the table so the proposed rows can be cut
     * off by shrinking n; at most ceil(n / 64) commands. */
    while (d->n > 0 || d->dropped > 0) {
        size_t k = d->n < AUDIT_DENIAL_ROWS_MAX ? d->n : AUDIT_DENIAL_ROWS_MAX;
        size_t first = d->n - k;
        uint64_t count = d->dropped;
        for (size_t i = 0; i < k; i++) {
            const struct svc_denial_row *r = &d->rows[first + i];
            warden__v1__audit_denial_row__init(&rows[i]);
            rows[i].principal_name = (char *)r->who.name;
            rows[i].principal_role = r->who.role;
            rows[i].method = (char *)r->method;
            rows[i].count = r->count;
            ptrs[i] = &rows[i];
            count += r->count;
        }
        Warden__V1__AuditDenials op = WARDEN__V1__AUDIT_DENIALS__INIT;
        op.n_rows = k;
        op.rows = ptrs;
        op.dropped = d->dropped;
        op.node = ctx->self.name;
        Warden__V1__Command cmd;
        svc_cmd_init(&cmd, &ctx->self, NULL);
        cmd.op_case = WARDEN__V1__COMMAND__OP_DENIALS;
        cmd.denials = &op;
        int rc = svc_propose_internal(ctx, &cmd, "aggregated denials",
                                      batch_done_cb, (void *)(uintptr_t)count);
        if (rc != 0) {
            /* Not proposed (busy, lost leadership just now): keep the rows
             * for the next interval, or log them when closing. */
            if (force) {
                log_table(d, "authorization denials (not replicated: proposal refused)");
            }
            break;
        }
        d->proposed += count;
        d->n = first;
        d->dropped = 0;
    }
    log_counters(d);
}
