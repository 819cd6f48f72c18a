/* admission.c - token buckets and the in-flight cap (admission.h). */
#include "admission.h"

#include <stdio.h>
#include <string.h>

#include "../grpc/grpc.h"

/* Calls under this prefix skip the rate limit (admission.h). */
static const char health_prefix[] = "/grpc.health.v1.Health/";

void tbucket_init(struct tbucket *b, unsigned burst, uint64_t now_ms)
{
    b->tokens_milli = (uint64_t)burst * ADMISSION_MILLI;
    b->last_ms = now_ms;
}

int tbucket_take(struct tbucket *b, unsigned rate, unsigned burst, uint64_t now_ms)
{
    uint64_t cap = (uint64_t)burst * ADMISSION_MILLI;
    if (now_ms > b->last_ms) {
        /* rate tokens per 1000 ms = rate milli-tokens per ms. The elapsed
         * time is clamped so the product cannot overflow after a long
         * idle: a full refill needs at most burst*1000/rate ms. */
        uint64_t dt = now_ms - b->last_ms;
        uint64_t full_ms = rate ? cap / rate + 1 : 0;
        if (dt > full_ms) {
            dt = full_ms;
        }
        b->tokens_milli += dt * rate;
        if (b->tokens_milli > cap) {
            b->tokens_milli = cap;
        }
        b->last_ms = now_ms;
    }
    /* now_ms < last_ms (a clock going backwards): no refill. */
    if (b->tokens_milli < ADMISSION_MILLI) {
        return 0;
    }
    b->tokens_milli -= ADMISSION_MILLI;
    return 1;
}

uint64_t tbucket_wait_ms(const struct tbucket *b, unsigned rate)
{
    if (b->tokens_milli >= ADMISSION_MILLI) {
        return 0;
    }
    if (rate == 0) {
        return UINT64_MAX;
    }
    uint64_t need = ADMISSION_MILLI - b->tokens_milli;
    return (need + rate - 1) / rate;
}

const char *admission_reason_name(enum admission_reason r)
{
    switch (r) {
    case ADMISSION_RATE_LIMIT: return "rate_limit";
    case ADMISSION_INFLIGHT: return "inflight";
    default: return "unknown";
    }
}

void admission_init(struct admission *a, unsigned rate, unsigned burst,
                    size_t max_inflight)
{
    memset(a, 0, sizeof *a);
    a->rate = rate;
    a->burst = burst ? burst : 1;
    a->max_inflight = max_inflight ? max_inflight : ADMISSION_INFLIGHT_DEFAULT;
}

static struct admission_entry *bucket_for(struct admission *a, const struct principal *who,
                                          uint64_t now_ms)
{
    struct admission_entry *free_slot = NULL, *oldest = NULL;
    for (size_t i = 0; i < ADMISSION_PRINCIPALS_MAX; i++) {
        struct admission_entry *x = &a->e[i];
        if (!x->used) {
            if (free_slot == NULL) {
                free_slot = x;
            }
            continue;
        }
        if (x->who.role == who->role && strcmp(x->who.name, who->name) == 0) {
            return x;
        }
        if (oldest == NULL || x->seen_ms < oldest->seen_ms) {
            oldest = x;
        }
    }
    struct admission_entry *x = free_slot != NULL ? free_slot : oldest;
    if (free_slot != NULL) {
        a->n++;
    }
    x->used = 1;
    x->who = *who;
    tbucket_init(&x->b, a->burst, now_ms);
    return x;
}

int admission_check(struct admission *a, const struct principal *who,
                    const char *path, uint64_t now_ms, char *msg, size_t cap)
{
    if (a->inflight >= a->max_inflight) {
        a->rejected[ADMISSION_INFLIGHT]++;
        snprintf(msg, cap,
                 "server overloaded: %zu calls in flight (max_inflight); retry with "
                 "backoff",
                 a->inflight);
        return GRPC_STATUS_RESOURCE_EXHAUSTED;
    }
    int exempt = strncmp(path, health_prefix, sizeof health_prefix - 1) == 0;
    if (a->rate != 0 && !exempt) {
        struct admission_entry *x = bucket_for(a, who, now_ms);
        x->seen_ms = now_ms;
        if (!tbucket_take(&x->b, a->rate, a->burst, now_ms)) {
            a->rejected[ADMISSION_RATE_LIMIT]++;
            snprintf(msg, cap,
                     "rate limit exceeded for %s/%s: %u calls/s, burst %u; retry in "
                     "%llu ms",
                     principal_role_name(who->role), who->name, a->rate, a->burst,
                     (unsigned long long)tbucket_wait_ms(&x->b, a->rate));
            return GRPC_STATUS_RESOURCE_EXHAUSTED;
        }
    }
    a->inflight++;
    a->admitted++;
    return 0;
}

void admission_release(struct admission *a)
{
    if (a->inflight > 0) {
        a->inflight--;
    }
}
