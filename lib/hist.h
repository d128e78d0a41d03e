/*
 * hist.h — a log-linear latency histogram (HdrHistogram-style) over uint64 values.
 *
 * Purpose: record latencies (nanoseconds, by convention) cheaply and report
 * percentiles with a bounded relative error, so that one thread's histogram
 * can be merged with others' and stored (the canary sink keeps the non-empty
 * buckets).
 *
 * Layout (fixed, the same in every build, so exported buckets stay
 * comparable): values 0..127 each have their own bucket; every power-of-two
 * range [2^m, 2^(m+1)) with m >= 7 is split into 128 equal sub-buckets of
 * width 2^(m-7). A bucket's width is therefore at most 1/128 of its lower
 * bound, and a percentile is reported as the midpoint of its bucket (clamped
 * to the observed min and max), which is within 1/256 (0.4 %) of the exact
 * value. The whole uint64 range is covered: HIST_NBUCKETS counters, about
 * 58 KiB, no allocation after hist_init.
 *
 * Costs: hist_record is O(1) (a count-leading-zeros and an increment);
 * hist_percentile and hist_export walk the buckets, O(HIST_NBUCKETS).
 *
 * Ownership: struct hist is a plain value the caller owns (embed it or
 * allocate it); no function keeps a pointer to it.
 *
 * Errors: none of these functions can fail, except hist_export, which reports
 * how many buckets it would have written.
 *
 * Thread-safety: none. Use one histogram per thread and hist_merge them at the
 * end; hist_merge only reads its source.
 */
#ifndef NINES_HIST_H
#define NINES_HIST_H

#include <stddef.h>
#include <stdint.h>

#define HIST_SUB_BITS 7
#define HIST_SUB (1u << HIST_SUB_BITS)                      /* 128 sub-buckets */
#define HIST_NBUCKETS ((64 - HIST_SUB_BITS + 1) * HIST_SUB) /* 7424 */

struct hist {
    uint64_t count;
    uint64_t min;          /* UINT64_MAX while empty */
    uint64_t max;          /* 0 while empty */
    unsigned __int128 sum; /* exact: 2^64 values of 2^64 cannot overflow it */
    uint64_t buckets[HIST_NBUCKETS];
};

/* One non-empty bucket: every value v recorded into it has lo <= v <= hi. */
struct hist_bucket {
    uint32_t index;
    uint64_t lo, hi;
    uint64_t count;
};

/* Makes h empty. */
void hist_init(struct hist *h);
/* Same as hist_init; named for readers who reuse a histogram per interval. */
void hist_reset(struct hist *h);

/* Records one value / n occurrences of value v (n == 0 is a no-op). */
void hist_record(struct hist *h, uint64_t v);
void hist_record_n(struct hist *h, uint64_t v, uint64_t n);

/* Adds every value of src into dst (dst == src is allowed and doubles it). */
void hist_merge(struct hist *dst, const struct hist *src);

/* The value at percentile pct, 0 <= pct <= 100 (clamped): the smallest
 * recorded value v such that at least pct % of the values are <= v, reported
 * within 0.4 % (see above). pct 0 gives hist_min, 100 gives hist_max exactly.
 * Returns 0 on an empty histogram. */
uint64_t hist_percentile(const struct hist *h, double pct);

uint64_t hist_count(const struct hist *h);
uint64_t hist_min(const struct hist *h); /* 0 when empty */
uint64_t hist_max(const struct hist *h); /* 0 when empty */
double hist_mean(const struct hist *h);  /* 0.0 when empty */

/* The bucket a value falls into, and the bounds of a bucket index
 * (index < HIST_NBUCKETS). Exposed so that stored buckets can be decoded. */
uint32_t hist_bucket_of(uint64_t v);
void hist_bucket_bounds(uint32_t index, uint64_t *lo, uint64_t *hi);

/* Writes the non-empty buckets in increasing order into out[0..cap) and
 * returns how many non-empty buckets there are (which may exceed cap: call
 * with cap 0 to size the array). To rebuild a histogram from stored buckets,
 * hist_record_n(h, lo, count) for each: every percentile then falls in the
 * same bucket as the original's (min and max become the buckets' lower bounds). */
size_t hist_export(const struct hist *h, struct hist_bucket *out, size_t cap);

#endif
