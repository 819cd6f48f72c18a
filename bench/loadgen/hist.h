/* hist.h - an HDR-style log-linear latency histogram (after Gil Tene's
 * HdrHistogram: buckets double in width, each split into LG_HIST_SUB/2
 * equal sub-buckets, so the relative error is bounded by 2/LG_HIST_SUB
 * (~1.6%) at every magnitude and recording is O(1) with no allocation).
 *
 * Values are nanoseconds. Pure: no clock, no I/O. */
#ifndef WARDEN_BENCH_HIST_H
#define WARDEN_BENCH_HIST_H

#include <stdint.h>

/* Sub-buckets in the first (unit-width) bucket; later buckets use the upper
 * half of it. 128 gives ~1.6% worst-case relative error. */
#define LG_HIST_SUB 128u
/* Largest recordable value: 2^40 ns (~18 min), far above any --duration we
 * allow; larger values are clamped into the last bucket and still count. */
#define LG_HIST_MAX_BITS 40u
#define LG_HIST_BUCKETS (LG_HIST_SUB + (LG_HIST_MAX_BITS - 7u) * (LG_HIST_SUB / 2u))

struct lg_hist {
    uint64_t counts[LG_HIST_BUCKETS];
    uint64_t n;
    uint64_t max;   /* exact, ns */
    double sum;     /* ns, for the mean */
};

void lg_hist_reset(struct lg_hist *h);
void lg_hist_record(struct lg_hist *h, uint64_t ns);
/* Add every count of src into dst. */
void lg_hist_merge(struct lg_hist *dst, const struct lg_hist *src);
/* Value at quantile q (0..1): the highest value equivalent to the bucket
 * holding the q-th recorded value (HdrHistogram's convention), capped at the
 * exact max. 0 when empty. */
uint64_t lg_hist_quantile(const struct lg_hist *h, double q);
double lg_hist_mean(const struct lg_hist *h);

#endif
