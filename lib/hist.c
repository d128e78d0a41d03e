/*
 * hist.c — log-linear histogram; the layout is described in hist.h.
 *
 * Index of v: for v < 128 the index is v. Otherwise let m be the position of
 * v's highest set bit (7..63); v lies in [2^m, 2^(m+1)) whose sub-buckets are
 * 2^(m-7) wide, so the top 8 bits of v (a number in 128..255) pick the
 * sub-bucket: index = (m - 6) * 128 + ((v >> (m - 7)) - 128). Group m - 6 = 1
 * (m = 7) still has width-1 buckets, so indices are contiguous and monotonic
 * in v.
 */
#include "lib/hist.h"

#include <string.h>

void hist_init(struct hist *h)
{
    memset(h, 0, sizeof *h);
    h->min = UINT64_MAX;
}

void hist_reset(struct hist *h)
{
    hist_init(h);
}

uint32_t hist_bucket_of(uint64_t v)
{
    if (v < HIST_SUB)
        return (uint32_t)v;
    unsigned m = 63u - (unsigned)__builtin_clzll(v);
    unsigned shift = m - HIST_SUB_BITS;
    return (uint32_t)((m - HIST_SUB_BITS + 1) * HIST_SUB + ((v >> shift) - HIST_SUB));
}

void hist_bucket_bounds(uint32_t index, uint64_t *lo, uint64_t *hi)
{
    if (index < HIST_SUB) {
        *lo = *hi = index;
        return;
    }
    unsigned group = index / HIST_SUB; /* 1..57 */
    unsigned sub = index % HIST_SUB;
    unsigned shift = group - 1; /* = m - 7 */
    uint64_t l = ((uint64_t)HIST_SUB + sub) << shift;
    *lo = l;
    /* Written as l + (width - 1) so the very last bucket ends at UINT64_MAX
     * without overflowing. */
    *hi = l + ((((uint64_t)1) << shift) - 1);
}

void hist_record_n(struct hist *h, uint64_t v, uint64_t n)
{
    if (n == 0)
        return;
    h->buckets[hist_bucket_of(v)] += n;
    h->count += n;
    h->sum += (unsigned __int128)v * n;
    if (v < h->min)
        h->min = v;
    if (v > h->max)
        h->max = v;
}

void hist_record(struct hist *h, uint64_t v)
{
    hist_record_n(h, v, 1);
}

void hist_merge(struct hist *dst, const struct hist *src)
{
    if (src->count == 0)
        return;
    for (size_t i = 0; i < HIST_NBUCKETS; i++)
        dst->buckets[i] += src->buckets[i];
    dst->count += src->count;
    dst->sum += src->sum;
    if (src->min < dst->min)
        dst->min = src->min;
    if (src->max > dst->max)
        dst->max = src->max;
}

uint64_t hist_count(const struct hist *h)
{
    return h->count;
}

uint64_t hist_min(const struct hist *h)
{
    return h->count ? h->min : 0;
}

uint64_t hist_max(const struct hist *h)
{
    return h->max;
}

double hist_mean(const struct hist *h)
{
    return h->count ? (double)h->sum / (double)h->count : 0.0;
}

uint64_t hist_percentile(const struct hist *h, double pct)
{
    if (h->count == 0)
        return 0;
    if (!(pct > 0.0)) /* also catches NaN */
        return h->min;
    if (pct >= 100.0)
        return h->max;
    /* rank = ceil(pct% of count), at least 1. long double keeps the product
     * exact enough for counts far beyond what a run records. */
    long double want = (long double)pct / 100.0L * (long double)h->count;
    uint64_t rank = (uint64_t)want;
    if ((long double)rank < want)
        rank++;
    if (rank < 1)
        rank = 1;
    if (rank > h->count)
        rank = h->count;
    uint64_t seen = 0;
    for (uint32_t i = 0; i < HIST_NBUCKETS; i++) {
        seen += h->buckets[i];
        if (seen >= rank) {
            uint64_t lo, hi;
            hist_bucket_bounds(i, &lo, &hi);
            uint64_t mid = lo + (hi - lo) / 2;
            if (mid < h->min)
                mid = h->min;
            if (mid > h->max)
                mid = h->max;
            return mid;
        }
    }
    return h->max; /* unreachable while counts are consistent */
}

size_t hist_export(const struct hist *h, struct hist_bucket *out, size_t cap)
{
    size_t n = 0;
    for (uint32_t i = 0; i < HIST_NBUCKETS; i++) {
        if (!h->buckets[i])
            continue;
        if (n < cap) {
            out[n].index = i;
            hist_bucket_bounds(i, &out[n].lo, &out[n].hi);
            out[n].count = h->buckets[i];
        }
        n++;
    }
    return n;
}
