#include "follow.h"

#include <stdio.h>
#include <string.h>

#include "../grpc/grpc.h"

static unsigned backoff_ms(unsigned hops)
{
    unsigned d = CLI_FOLLOW_BACKOFF_BASE_MS;
    for (unsigned i = 0; i < hops && d < CLI_FOLLOW_BACKOFF_MAX_MS; i++) {
        d *= 2;
    }
    return d < CLI_FOLLOW_BACKOFF_MAX_MS ? d : CLI_FOLLOW_BACKOFF_MAX_MS;
}

/* The list entry after `cur`, wrapping; the first entry when cur is not in
 * the list (we were following a leader hint). NULL for an empty list. */
static const char *next_endpoint(const struct cli_follow_in *in)
{
    if (in->n_endpoints == 0) {
        return NULL;
    }
    for (size_t i = 0; i < in->n_endpoints; i++) {
        if (strcmp(in->endpoints[i], in->endpoint) == 0) {
            return in->endpoints[(i + 1) % in->n_endpoints];
        }
    }
    return in->endpoints[0];
}

static void stop(struct cli_follow_out *out, const char *why)
{
    out->action = CLI_FOLLOW_STOP;
    out->why = why;
}

static void retry(struct cli_follow_out *out, const char *ep, unsigned delay,
                  const char *why)
{
    out->action = CLI_FOLLOW_RETRY;
    snprintf(out->endpoint, sizeof out->endpoint, "%s", ep);
    out->delay_ms = delay;
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
    /* Rule 2. */
    if (in->hops >= CLI_FOLLOW_HOPS_MAX) {
        out->exhausted = 1;
        stop(out, "hop limit reached");
        return;
    }
    /* Rule 3: a definite "not the leader, go there". */
    if (in->code == GRPC_STATUS_UNAVAILABLE &&
        in->delivery == CLI_DELIVERY_ANSWERED && leader[0] != '\0') {
        if (cli_endpoint_check(leader) != 0) {
            stop(out, "the leader hint is not HOST:PORT");
            return;
        }
        if (strcmp(leader, ep) == 0) {
            stop(out, "the node names itself as the leader");
            return;
        }
        retry(out, leader, 0, "not the leader; following the leader hint");
        return;
    }
    const char *next = next_endpoint(in);
    /* Rule 4: the server cannot have acted on it. */
    if (in->delivery == CLI_DELIVERY_NOT_SENT ||
        in->delivery == CLI_DELIVERY_REFUSED) {
        if (ep[0] == '\0') {
            stop(out, "no endpoint could be reached");
            return;
        }
        if (next == NULL || strcmp(next, ep) == 0) {
            stop(out, "no other endpoint to try");
            return;
        }
        retry(out, next, backoff_ms(in->hops),
              in->delivery == CLI_DELIVERY_REFUSED
                  ? "refused before processing; trying the next endpoint"
                  : "unreachable; trying the next endpoint");
        return;
    }
    /* Rule 5: ambiguous. */
    if (in->cls == CLI_RETRY_UNKEYED) {
        out->unsafe = 1;
        stop(out, "not retried: the write may have been applied and has no "
                  "idempotency key");
        return;
    }
    if (leader[0] != '\0' && strcmp(leader, ep) != 0 &&
        cli_endpoint_check(leader) == 0) {
        retry(out, leader, 0,
              in->cls == CLI_RETRY_KEYED
                  ? "outcome unknown; retrying at the leader with the same "
                    "idempotency key"
                  : "outcome unknown; retrying the read at the leader");
        return;
    }
    if (next == NULL) {
        stop(out, "no endpoint to retry at");
        return;
    }
    retry(out, next, backoff_ms(in->hops),
          in->cls == CLI_RETRY_KEYED
              ? "outcome unknown; retrying with the same idempotency key"
              : "outcome unknown; retrying the read");
}
