/* histogram.h — latency histogram with ~1 % precision over nanoseconds to
 * hours (log-linear buckets, like HdrHistogram), fixed size, no allocation
 * per sample. */
#ifndef SOCKIT_HISTOGRAM_H
#define SOCKIT_HISTOGRAM_H

#include <stdint.h>

/* 64 sub-buckets per power of two: the bucket width is at most 1/64 of the
 * value, so a percentile is within ~1.6 % — and reported at the bucket's
 * midpoint, within ~0.8 %. */
#define HIST_SUB_BITS 6
#define HIST_SUB      (1u << HIST_SUB_BITS)
#define HIST_EXPS     42 /* up to 2^42 ns: over an hour */

typedef struct histogram {
    uint64_t count;
    uint64_t max;
    uint64_t min;
    long double sum;
    uint64_t buckets[HIST_EXPS * HIST_SUB];
} histogram;

void hist_init(histogram *h);
void hist_add(histogram *h, uint64_t value_ns);
void hist_merge(histogram *into, const histogram *from);
/* The value at percentile p (0..100), in nanoseconds; 0 if empty. */
uint64_t hist_percentile(const histogram *h, double p);
double hist_mean(const histogram *h);

#endif
