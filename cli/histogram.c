/* histogram.c — the log-linear latency histogram of `sockit bench`. */
#include "histogram.h"

#include <string.h>

void hist_init(histogram *h)
{
    memset(h, 0, sizeof *h);
    h->min = UINT64_MAX;
}

/* Values below HIST_SUB get exact buckets (exponent 0); above, the exponent
 * is the position of the top bit and the sub-bucket the next HIST_SUB_BITS
 * bits below it. */
static unsigned bucket_of(uint64_t v)
{
    if (v < HIST_SUB)
        return (unsigned)v;
    unsigned top = 63u - (unsigned)__builtin_clzll(v);
    unsigned exp = top - HIST_SUB_BITS + 1u;
    if (exp >= HIST_EXPS)
        return HIST_EXPS * HIST_SUB - 1u;
    unsigned sub = (unsigned)(v >> (top - HIST_SUB_BITS)) & (HIST_SUB - 1u);
    return exp * HIST_SUB + sub;
}

/* The midpoint of a bucket's value range. */
static uint64_t value_of(unsigned b)
{
    unsigned exp = b / HIST_SUB, sub = b % HIST_SUB;
    if (exp == 0)
        return sub;
    unsigned shift = exp - 1u;
    uint64_t low = ((uint64_t)(HIST_SUB + sub)) << shift;
    return low + (((uint64_t)1 << shift) >> 1);
}

void hist_add(histogram *h, uint64_t v)
{
    h->buckets[bucket_of(v)]++;
    h->count++;
    h->sum += (long double)v;
    if (v > h->max)
        h->max = v;
    if (v < h->min)
        h->min = v;
}

void hist_merge(histogram *into, const histogram *from)
{
    for (unsigned i = 0; i < HIST_EXPS * HIST_SUB; i++)
        into->buckets[i] += from->buckets[i];
    into->count += from->count;
    into->sum += from->sum;
    if (from->max > into->max)
        into->max = from->max;
    if (from->min < into->min)
        into->min = from->min;
}

uint64_t hist_percentile(const histogram *h, double p)
{
    if (h->count == 0)
        return 0;
    if (p >= 100.0)
        return h->max;
    uint64_t rank = (uint64_t)((p / 100.0) * (double)h->count + 0.5);
    if (rank == 0)
        rank = 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < HIST_EXPS * HIST_SUB; i++) {
        seen += h->buckets[i];
        if (seen >= rank) {
            uint64_t v = value_of(i);
            return v > h->max ? h->max : (v < h->min ? h->min : v);
        }
    }
    return h->max;
}

double hist_mean(const histogram *h)
{
    return h->count ? (double)(h->sum / (long double)h->count) : 0.0;
}
