/* follow.h - leader following and failover for wardenctl: after a failed
 * attempt, decide whether to try again, where, and after how long.
 *
 * Pure: no I/O, no clock, no sleeping. cli/cmd.c runs the loop (call →
 * cli_follow_decide → sleep delay_ms → reconnect → call), and
 * tests/unit/test_cli_follow.c checks every rule without sockets.
 *
 * Budgets: a retry at another endpoint is a *hop* (at most
 * CLI_FOLLOW_HOPS_MAX); a retry that sleeps first is a *wait* (at most
 * CLI_FOLLOW_WAITS_MAX). A failover after a backoff is both.
 *
 * The rules (docs/cli.md, "Leader following and retries"), first match wins:
 *   1. OK, or any status except UNAVAILABLE and DEADLINE_EXCEEDED: stop,
 *      the answer is final.
 *   2. UNAVAILABLE answered by the server with a `warden-leader` trailer
 *      (and without `warden-outcome: unknown`, see cli/resp.h): the node
 *      is not the leader and did not carry the call out
 *      (proto/warden/v1/cluster.proto), so every call, keyed or not, is
 *      retried at that address at once (a hop). A hint that is not
 *      HOST:PORT, or that names the endpoint that just answered, stops the
 *      loop. A hint naming an endpoint that failed to connect earlier in
 *      this call is stale (the followers have not yet noticed the leader
 *      died; that takes an election timeout): ask the same node again after
 *      a backoff (a wait).
 *   3. NOT_SENT or REFUSED (the server cannot have acted on the request):
 *      retry at the next endpoint of the list that has not failed to
 *      connect in this call, after a backoff; stop when the whole list just
 *      failed to connect, or when no endpoint is left.
 *   4. Anything else is ambiguous (no answer before the deadline, the
 *      connection broke after the request left, or the server said
 *      UNAVAILABLE/DEADLINE_EXCEEDED without naming a leader, e.g. during
 *      an election, or said `warden-outcome: unknown`):
 *      reads and writes with an idempotency key are retried, at the leader
 *      hint when there is a usable one, else at the next endpoint after a
 *      backoff (the server deduplicates the key, issue 3); a write without
 *      a key stops, because a second try could apply it twice.
 *   A retry the budgets do not allow stops the loop instead. */
#ifndef WARDEN_CLI_FOLLOW_H
#define WARDEN_CLI_FOLLOW_H

#include <stddef.h>

#include "args.h"
#include "resp.h"

/* Retries at another endpoint: leader redirects and failovers. Three
 * covers "follower → leader" plus one leader change during the call; a
 * longer chain means the cluster is misconfigured, and a person should
 * look. */
#define CLI_FOLLOW_HOPS_MAX 3u
/* Retries that wait first, and the wait: BASE << waits, at most MAX. Raft
 * notices a dead leader after an election timeout (1-2 s in wardend,
 * consensus/node.h) and then elects; the four waits (250+500+1000+1000 ms)
 * ride that out, and no more. */
#define CLI_FOLLOW_WAITS_MAX 4u
#define CLI_FOLLOW_BACKOFF_BASE_MS 250u
#define CLI_FOLLOW_BACKOFF_MAX_MS 1000u
/* Endpoints remembered as unreachable during one call: each one costs a
 * retry, so the budgets above bound how many can be found. */
#define CLI_FOLLOW_DEAD_MAX (CLI_FOLLOW_HOPS_MAX + CLI_FOLLOW_WAITS_MAX)

/* How safe a call is to send twice. */
enum cli_retry_class {
    CLI_RETRY_READ = 0,  /* no effects: Health, Get, List, Cluster.Status */
    CLI_RETRY_KEYED,     /* a mutation with an idempotency key */
    CLI_RETRY_UNKEYED,   /* a mutation without one */
};

/* One failed (or successful) attempt. All pointers are borrowed for the
 * call. */
struct cli_follow_in {
    int code;                      /* gRPC status of the attempt */
    enum cli_delivery delivery;    /* struct cli_status.delivery */
    const char *leader;            /* warden-leader trailer, "" if none */
    const char *endpoint;          /* where the attempt went; "" = the
                                    * whole list failed to connect */
    enum cli_retry_class cls;
    unsigned hops;                 /* hops already made */
    unsigned waits;                /* waits already made */
    const char (*endpoints)[CLI_ENDPOINT_LEN_MAX + 1]; /* configured list */
    size_t n_endpoints;
    /* Endpoints that failed to connect earlier in this call. */
    const char (*dead)[CLI_ENDPOINT_LEN_MAX + 1];
    size_t n_dead;
};

enum cli_follow_action {
    CLI_FOLLOW_STOP = 0,
    CLI_FOLLOW_RETRY,
};

struct cli_follow_out {
    enum cli_follow_action action;
    /* RETRY: connect here (NUL-terminated copy). */
    char endpoint[CLI_ENDPOINT_LEN_MAX + 1];
    /* RETRY: wait this long first (then it counts as a wait). */
    unsigned delay_ms;
    /* RETRY: endpoint differs from the one that answered (a hop). */
    int hop;
    /* Why, for --verbose and for the final error (static text). */
    const char *why;
    /* STOP because rule 4 refused an unkeyed write, or because a budget
     * was spent. */
    int unsafe;
    int exhausted;
};

/* Apply the rules above to one attempt. Always fills *out. */
void cli_follow_decide(const struct cli_follow_in *in,
                       struct cli_follow_out *out);

#endif
