/* admission.h - admission control before a handler runs (issue 9):
 * per-principal token buckets and a per-node cap on in-flight calls.
 *
 * Why: one misbehaving client (a gateway stuck in a retry loop, a script
 * without backoff) must not take the leader's whole Raft pipeline
 * (WNODE_PENDING_MAX) or its CPU from everyone else. A principal is the
 * (role, name) from its client certificate, so the buckets follow the
 * identity, not the TCP connection: opening more connections buys nothing.
 *
 * Pure: no clock reads. Time is the caller's monotonic ms (uv_now), and a
 * clock that goes backwards is treated as no time passing.
 *
 * Refusals are RESOURCE_EXHAUSTED (grpc/doc/statuscodes.md: "some resource
 * has been exhausted, perhaps a per-user quota"), counted by reason:
 *   rate_limit   the principal's bucket is empty;
 *   inflight     the node already runs max_inflight calls.
 * Health checks (/grpc.health.v1.Health/) are exempt from the rate limit,
 * so probes keep working while a principal is throttled, but they hold an
 * in-flight slot like any call. */
#ifndef WARDEN_SERVER_ADMISSION_H
#define WARDEN_SERVER_ADMISSION_H

#include <stddef.h>
#include <stdint.h>

#include "../common/principal.h"

/* Defaults (--rate-limit-rps, --rate-limit-burst, --max-inflight). 2000
 * calls/s per principal is far above what a gateway or an operator needs,
 * and about what one node commits per second (group commit); burst is two
 * seconds' worth, so a reconnecting client's backlog passes. 0 rps turns
 * the rate limit off. */
#define ADMISSION_RATE_DEFAULT 2000u
#define ADMISSION_BURST_DEFAULT 4000u
/* Calls admitted and not yet ended, node-wide. 4096 matches
 * WNODE_PENDING_MAX: beyond it proposals would be refused anyway, and each
 * call can buffer up to max_msg bytes. */
#define ADMISSION_INFLIGHT_DEFAULT 4096u
#define ADMISSION_RATE_MAX 1000000u
#define ADMISSION_BURST_MAX 1000000u
#define ADMISSION_INFLIGHT_MAX 1000000u
/* Distinct principals tracked. Principals come from CA-issued certificates,
 * so the set is small; when full, the least recently seen bucket is
 * reused (it has most likely refilled, so little is forgiven). 1024 x
 * ~100 bytes = ~100 KiB. */
#define ADMISSION_PRINCIPALS_MAX 1024
/* Token bucket arithmetic is in milli-tokens: integer, exact at 1 ms. */
#define ADMISSION_MILLI 1000u

/* One token bucket. Pure. */
struct tbucket {
    uint64_t tokens_milli;   /* current level, <= burst * ADMISSION_MILLI */
    uint64_t last_ms;        /* time of the last refill */
};
/* Start full at now_ms. */
void tbucket_init(struct tbucket *b, unsigned burst, uint64_t now_ms);
/* Refill for the time since the last call (rate tokens/s, capped at
 * burst), then take one token if there is one. Returns 1 if taken, 0 if
 * empty. */
int tbucket_take(struct tbucket *b, unsigned rate, unsigned burst,
                 uint64_t now_ms);
/* Milliseconds until one token is available (0 if one is). */
uint64_t tbucket_wait_ms(const struct tbucket *b, unsigned rate);

enum admission_reason {
    ADMISSION_RATE_LIMIT,
    ADMISSION_INFLIGHT,
    ADMISSION_N_REASONS
};
const char *admission_reason_name(enum admission_reason r);

struct admission_entry {
    struct principal who;
    struct tbucket b;
    uint64_t seen_ms;
    int used;
};

struct admission {
    unsigned rate, burst;          /* 0 rate = no rate limit */
    size_t max_inflight;
    size_t inflight;
    uint64_t rejected[ADMISSION_N_REASONS];
    uint64_t admitted;
    size_t n;                      /* entries in use */
    struct admission_entry e[ADMISSION_PRINCIPALS_MAX];
};

void admission_init(struct admission *a, unsigned rate, unsigned burst,
                    size_t max_inflight);
/* Decide on one call from who to path at now_ms. Returns 0 (admitted: the
 * caller must admission_release() when the call ends) or
 * GRPC_STATUS_RESOURCE_EXHAUSTED with a message in msg (cap bytes). */
int admission_check(struct admission *a, const struct principal *who,
                    const char *path, uint64_t now_ms, char *msg, size_t cap);
/* An admitted call ended. */
void admission_release(struct admission *a);

#endif
