#include "follow.h"

#include <stdio.h>
#include <string.h>

#include "../grpc/grpc.h"

static unsigned backoff_ms(unsigned waits)
{
    unsigned d = CLI_FOLLOW_BACKOFF_BASE_MS;
    for (unsigned i = 0; i < waits && d < CLI_FOLLOW_BACKOFF_MAX_MS; i++) {
        d *= 2;
    }
    return d < CLI_FOLLOW_BACKOFF_MAX_MS ? d : CLI_FOLLOW_BACKOFF_MAX_MS;
}

static int is_dead(const struct cli_follow_in *in, const char *ep)
{
    for (size_t i = 0; i < in->n_dead; i++) {
        if (strcmp(in->dead[i], ep) == 0) {
            return 1;
        }
    }
    return 0;
}

/* The first list entry after `cur` (wrapping; from the start when cur is
 * not in the list, e.g. a leader hint) that has not failed to connect in
 * this call. May be cur itself. NULL when every entry is dead. */
static const char *next_endpoint(const struct cli_follow_in *in, const char *cur)
{
    size_t n = in->n_endpoints, start = 0;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(in->endpoints[i], cur) == 0) {
            start = i + 1;
            break;
        }
    }
    for (size_t k = 0; k < n; k++) {
        const char *ep = in->endpoints[(start + k) % n];
        if (!is_dead(in, ep)) {
            return ep;
        }
    }
    return NULL;
}

static void stop(struct cli_follow_out *out, const char *why)
{
    out->action = CLI_FOLLOW_STOP;
    out->why = why;
}

/* Retry at ep (hop when it is not `from`) after delay, within budgets. */
static void retry(const struct cli_follow_in *in, struct cli_follow_out *out,
                  const char *from, const char *ep, unsigned delay,
                  const char *why)
{
    int hop = strcmp(ep, from) != 0;
    if ((hop && in->hops >= CLI_FOLLOW_HOPS_MAX) ||
        (delay > 0 && in->waits >= CLI_FOLLOW_WAITS_MAX)) {
        out->exhausted = 1;
        stop(out, hop && in->hops >= CLI_FOLLOW_HOPS_MAX ? "hop limit reached"
                                                         : "wait limit reached");
        return;
    }
    out->action = CLI_FOLLOW_RETRY;
    snprintf(out->endpoint, sizeof out->endpoint, "%s", ep);
    out->delay_ms = delay;
    out->hop = hop;
    out->why = why;
}

void cli_follow_decide(const struct cli_follow_in *in,
                       struct cli_follow_out *out)
{
    memset(out, 0, sizeof *out);
    const char *ep = in->endpoint ? in->endpoint : "";
    const char *leader = in->leader ? in->leader : "";

    /* Rule 1: only "try elsewhere or later" statuses are retried. */
    if (in->code == GRPC_STATUS_OK) {
        stop(out, "done");
        return;
    }
    if (in->code != GRPC_STATUS_UNAVAILABLE &&
        in->code != GRPC_STATUS_DEADLINE_EXCEEDED) {
        stop(out, "the server's answer is final");
        return;
    }
    int hint_ok = leader[0] != '\0' && cli_endpoint_check(leader) == 0 &&
                  strcmp(leader, ep) != 0;
    /* Rule 2: a definite "not the leader, go there". */
    if (in->code == GRPC_STATUS_UNAVAILABLE &&
        in->delivery == CLI_DELIVERY_ANSWERED && leader[0] != '\0') {
        if (cli_endpoint_check(leader) != 0) {
            stop(out, "the leader hint is not HOST:PORT");
        } else if (strcmp(leader, ep) == 0) {
            stop(out, "the node names itself as the leader");
        } else if (is_dead(in, leader)) {
            retry(in, out, ep, ep, backoff_ms(in->waits),
                  "the named leader is unreachable; waiting for an election");
        } else {
            retry(in, out, ep, leader, 0,
                  "not the leader; following the leader hint");
        }
        return;
    }
    /* Rule 3: the server cannot have acted on it. */
    if (in->delivery == CLI_DELIVERY_NOT_SENT ||
        in->delivery == CLI_DELIVERY_REFUSED) {
        if (ep[0] == '\0') {
            stop(out, "no endpoint could be reached");
            return;
        }
        const char *next = next_endpoint(in, ep);
        if (next == NULL || strcmp(next, ep) == 0) {
            stop(out, "no other endpoint to try");
            return;
        }
        retry(in, out, ep, next, backoff_ms(in->waits),
              in->delivery == CLI_DELIVERY_REFUSED
                  ? "refused before processing; trying the next endpoint"
                  : "unreachable; trying the next endpoint");
        return;
    }
    /* Rule 4: ambiguous. */
    if (in->cls == CLI_RETRY_UNKEYED) {
        out->unsafe = 1;
        stop(out, "not retried: the write may have been applied and has no "
                  "idempotency key");
        return;
    }
    if (hint_ok && !is_dead(in, leader)) {
        retry(in, out, ep, leader, 0,
              in->cls == CLI_RETRY_KEYED
                  ? "outcome unknown; retrying at the leader with the same "
                    "idempotency key"
                  : "outcome unknown; retrying the read at the leader");
        return;
    }
    const char *next = next_endpoint(in, ep);
    if (next == NULL) {
        stop(out, "no endpoint could be reached");
        return;
    }
    retry(in, out, ep, next, backoff_ms(in->waits),
          in->cls == CLI_RETRY_KEYED
              ? "outcome unknown; retrying with the same idempotency key"
              : "outcome unknown; retrying the read");
}
