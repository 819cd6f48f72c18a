/* follow.h - leader following and failover for wardenctl: after a failed
 * attempt, decide whether to try again, where, and after how long.
 *
 * Pure: no I/O, no clock, no sleeping. cli/cmd.c runs the loop (call →
 * cli_follow_decide → sleep delay_ms → reconnect → call), and
 * tests/unit/test_cli_follow.c checks every rule without sockets.
 *
 * The rules (docs/cli.md, "Leader following and retries"), first match wins:
 *   1. OK, or any status except UNAVAILABLE and DEADLINE_EXCEEDED: stop,
 *      the answer is final.
 *   2. hops == CLI_FOLLOW_HOPS_MAX: stop.
 *   3. UNAVAILABLE answered by the server with a `warden-leader` trailer
 *      (and without `warden-outcome: unknown`, see cli/resp.h): the node
 *      is not the leader and did not carry the call out
 *      (proto/warden/v1/cluster.proto), so every call, keyed or not, is
 *      retried at that address at once. A hint that is not HOST:PORT, or
 *      that names the endpoint that just answered, stops the loop.
 *   4. NOT_SENT or REFUSED (the server cannot have acted on the request):
 *      retry at the next endpoint of the list after a backoff; stop when
 *      the whole list just failed to connect, or when there is no other
 *      endpoint to go to.
 *   5. Anything else is ambiguous (no answer before the deadline, the
 *      connection broke after the request left, or the server said
 *      UNAVAILABLE/DEADLINE_EXCEEDED without naming a leader, e.g. during
 *      an election or when it lost leadership with the command in flight):
 *      reads and writes with an idempotency key are retried, at the leader
 *      hint when there is a usable one, else at the next endpoint after a
 *      backoff (the server deduplicates the key, issue 3);
 *      a write without a key stops, because a second try could apply it
 *      twice. */
#ifndef WARDEN_CLI_FOLLOW_H
#define WARDEN_CLI_FOLLOW_H

#include <stddef.h>

#include "args.h"
#include "resp.h"

/* Retries after the first attempt, for every reason together (leader
 * redirects, failover, ambiguous-failure retries). Three covers "follower →
 * leader" plus one leader change during the call; a longer chain means the
 * cluster is electing or misconfigured, and a person should look. */
#define CLI_FOLLOW_HOPS_MAX 3u
/* Backoff before a retry that has no leader hint: BASE << hops, at most
 * MAX. A Raft election takes about one election timeout (around a
 * second), so waiting longer than that per hop buys nothing. */
#define CLI_FOLLOW_BACKOFF_BASE_MS 100u
#define CLI_FOLLOW_BACKOFF_MAX_MS 1000u

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
    unsigned hops;                 /* retries already made */
    const char (*endpoints)[CLI_ENDPOINT_LEN_MAX + 1]; /* configured list */
    size_t n_endpoints;
};

enum cli_follow_action {
    CLI_FOLLOW_STOP = 0,
    CLI_FOLLOW_RETRY,
};

struct cli_follow_out {
    enum cli_follow_action action;
    /* RETRY: connect here (NUL-terminated copy). */
    char endpoint[CLI_ENDPOINT_LEN_MAX + 1];
    /* RETRY: wait this long first. */
    unsigned delay_ms;
    /* Why, for --verbose and for the final error (static text). */
    const char *why;
    /* STOP because rule 5 refused an unkeyed write (the caller says how
     * to make it safe), or because the hop limit was hit. */
    int unsafe;
    int exhausted;
};

/* Apply the rules above to one attempt. Always fills *out. */
void cli_follow_decide(const struct cli_follow_in *in,
                       struct cli_follow_out *out);

#endif
