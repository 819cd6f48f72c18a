/* hist.c - see hist.h. */
#include "hist.h"

#include <string.h>

void lg_hist_reset(struct lg_hist *h)
{
    memset(h, 0, sizeof *h);
}

static unsigned msb64(uint64_t v)
{
    return 63u - (unsigned)__builtin_clzll(v);
}

static unsigned index_of(uint64_t v)
{
    if (v < LG_HIST_SUB) {
        return (unsigned)v;
    }
    if (v >> LG_HIST_MAX_BITS) {
        return LG_HIST_BUCKETS - 1u;
    }
    /* shift k puts v >> k in [SUB/2, SUB): 64..127 for SUB = 128. */
    unsigned k = msb64(v) - 6u;
    return LG_HIST_SUB + (k - 1u) * (LG_HIST_SUB / 2u) +
           (unsigned)((v >> k) - LG_HIST_SUB / 2u);
}

/* Highest value that lands in bucket i. */
static uint64_t upper_of(unsigned i)
{
    if (i < LG_HIST_SUB) {
        return i;
    }
    unsigned j = i - LG_HIST_SUB;
    unsigned k = j / (LG_HIST_SUB / 2u) + 1u;
    uint64_t base = (uint64_t)(j % (LG_HIST_SUB / 2u) + LG_HIST_SUB / 2u) << k;
    return base + (((uint64_t)1 << k) - 1u);
}

void lg_hist_record(struct lg_hist *h, uint64_t ns)
{
    h->counts[index_of(ns)]++;
    h->n++;
    if (ns > h->max) {
        h->max = ns;
    }
    h->sum += (double)ns;
}

void lg_hist_merge(struct lg_hist *dst, const struct lg_hist *src)
{
    for (unsigned i = 0; i < LG_HIST_BUCKETS; i++) {
        dst->counts[i] += src->counts[i];
    }
    dst->n += src->n;
    if (src->max > dst->max) {
        dst->max = src->max;
    }
    dst->sum += src->sum;
}

uint64_t lg_hist_quantile(const struct lg_hist *h, double q)
{
    if (h->n == 0) {
        return 0;
    }
    if (q >= 1.0) {
        return h->max;
    }
    /* Rank of the wanted value, 1-based, rounded up (nearest rank). */
    double want_d = q * (double)h->n;
    uint64_t want = (uint64_t)want_d;
    if ((double)want < want_d || want == 0) {
        want++;
    }
    uint64_t seen = 0;
    for (unsigned i = 0; i < LG_HIST_BUCKETS; i++) {
        seen += h->counts[i];
        if (seen >= want) {
            uint64_t v = upper_of(i);
            return v < h->max ? v : h->max;
        }
    }
    return h->max;
}

double lg_hist_mean(const struct lg_hist *h)
{
    return h->n ? h->sum / (double)h->n : 0.0;
}
