/*
 * test_hist — lib/hist: layout, accuracy against exact percentiles, merge,
 * export/rebuild and the edges of the uint64 range.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "lib/hist.h"
#include "t/tap.h"

/* splitmix64: a seeded, reproducible stream. */
static uint64_t next_rand(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The exact value at percentile pct of sorted v[0..n): the smallest value with
 * at least pct % of the values <= it (the definition hist.h promises). */
static uint64_t exact_pct(const uint64_t *v, size_t n, double pct)
{
    if (pct <= 0)
        return v[0];
    double want = pct / 100.0 * (double)n;
    size_t rank = (size_t)ceil(want - 1e-9);
    if (rank < 1)
        rank = 1;
    if (rank > n)
        rank = n;
    return v[rank - 1];
}

static double rel_err(uint64_t got, uint64_t exact)
{
    if (exact == 0)
        return got == 0 ? 0.0 : 1.0;
    return fabs((double)got - (double)exact) / (double)exact;
}

static void test_layout(void)
{
    int contiguous = 1, self = 1, narrow = 1;
    uint64_t prev_hi = 0;
    for (uint32_t i = 0; i < HIST_NBUCKETS; i++) {
        uint64_t lo, hi;
        hist_bucket_bounds(i, &lo, &hi);
        if (i > 0 && lo != prev_hi + 1)
            contiguous = 0;
        if (hist_bucket_of(lo) != i || hist_bucket_of(hi) != i)
            self = 0;
        /* Width at most lo/128: what bounds the relative error. */
        if (i >= HIST_SUB && (hi - lo + 1) > lo / HIST_SUB)
            narrow = 0;
        prev_hi = hi;
    }
    uint64_t lo0, hi0;
    hist_bucket_bounds(0, &lo0, &hi0);
    ok(lo0 == 0 && hi0 == 0, "bucket 0 holds exactly the value 0");
    ok(contiguous, "buckets tile the range without gaps or overlaps");
    ok(self, "every bucket's bounds map back to that bucket");
    ok(narrow, "every bucket from 128 on is at most 1/128 of its lower bound wide");
    is_int(prev_hi == UINT64_MAX, 1, "the last bucket ends at UINT64_MAX");
    is_int(hist_bucket_of(UINT64_MAX), HIST_NBUCKETS - 1, "UINT64_MAX lands in the last bucket");
}

static void test_accuracy(void)
{
    enum { N = 200000 };
    uint64_t *v = malloc(N * sizeof *v);
    struct hist *h = malloc(sizeof *h);
    if (!v || !h)
        bail_out("out of memory");
    hist_init(h);
    uint64_t seed = 42;
    const double hour_ns = 3600e9;
    for (size_t i = 0; i < N; i++) {
        /* log-uniform over [1 ns, 1 h]: every power of ten gets samples. */
        double u = (double)(next_rand(&seed) >> 11) / 9007199254740992.0;
        uint64_t x = (uint64_t)exp(u * log(hour_ns));
        if (x < 1)
            x = 1;
        v[i] = x;
        hist_record(h, x);
    }
    qsort(v, N, sizeof *v, cmp_u64);
    is_int(hist_count(h), N, "count is the number of values recorded");
    is_int(hist_min(h), v[0], "min is exact");
    is_int(hist_max(h), v[N - 1], "max is exact");

    double worst = 0;
    int within = 1;
    static const double fine[] = {99.5, 99.9, 99.95, 99.99, 99.999};
    for (int p = 0; p <= 100; p++) {
        double e = rel_err(hist_percentile(h, p), exact_pct(v, N, p));
        if (e > worst)
            worst = e;
        if (e > 0.01)
            within = 0;
    }
    for (size_t i = 0; i < sizeof fine / sizeof fine[0]; i++) {
        double e = rel_err(hist_percentile(h, fine[i]), exact_pct(v, N, fine[i]));
        if (e > worst)
            worst = e;
        if (e > 0.01)
            within = 0;
    }
    ok(within, "percentiles 0..100 and 99.5..99.999 within 1%% of exact (worst %.4f%%)",
       worst * 100);
    ok(worst <= 1.0 / 256 + 1e-12, "worst error is within the half-bucket bound 1/256");

    long double exact_sum = 0;
    for (size_t i = 0; i < N; i++)
        exact_sum += v[i];
    double mean = (double)(exact_sum / N);
    ok(fabs(hist_mean(h) - mean) <= mean * 1e-9, "mean is exact (%.1f vs %.1f)", hist_mean(h),
       mean);

    /* Small values have width-1 buckets: exact. */
    hist_reset(h);
    for (uint64_t x = 0; x < 128; x++)
        hist_record(h, x);
    is_int(hist_percentile(h, 50), 63, "p50 of 0..127 is exactly 63");
    is_int(hist_percentile(h, 100), 127, "p100 of 0..127 is 127");
    is_int(hist_percentile(h, 1), 1, "p1 of 0..127 is 1 (rank 2)");
    free(v);
    free(h);
}

static void test_merge(void)
{
    struct hist *all = malloc(sizeof *all), *part = malloc(3 * sizeof *part);
    if (!all || !part)
        bail_out("out of memory");
    hist_init(all);
    for (int i = 0; i < 3; i++)
        hist_init(&part[i]);
    uint64_t seed = 7;
    for (int i = 0; i < 50000; i++) {
        uint64_t x = next_rand(&seed) >> (next_rand(&seed) % 64);
        hist_record(all, x);
        hist_record(&part[i % 3], x);
    }
    hist_merge(&part[0], &part[1]);
    hist_merge(&part[0], &part[2]);
    ok(memcmp(part[0].buckets, all->buckets, sizeof all->buckets) == 0,
       "merged buckets equal recording everything into one");
    ok(hist_count(&part[0]) == hist_count(all) && hist_min(&part[0]) == hist_min(all) &&
           hist_max(&part[0]) == hist_max(all) && hist_mean(&part[0]) == hist_mean(all),
       "merged count, min, max and mean equal the single histogram's");
    int same = 1;
    for (int p = 0; p <= 100; p++)
        if (hist_percentile(&part[0], p) != hist_percentile(all, p))
            same = 0;
    ok(same, "merged percentiles equal the single histogram's");

    struct hist *empty = malloc(sizeof *empty);
    if (!empty)
        bail_out("out of memory");
    hist_init(empty);
    hist_merge(all, empty);
    is_int(hist_count(all), 50000, "merging an empty histogram changes nothing");
    hist_merge(empty, all);
    is_int(hist_min(empty), hist_min(all), "merging into an empty histogram takes the min");

    /* Export, then rebuild from the exported buckets. */
    size_t n = hist_export(all, NULL, 0);
    struct hist_bucket *b = malloc(n * sizeof *b);
    if (!b)
        bail_out("out of memory");
    is_int(hist_export(all, b, n), n, "export reports the same bucket count when given room");
    uint64_t total = 0;
    int ordered = 1, inside = 1;
    for (size_t i = 0; i < n; i++) {
        total += b[i].count;
        if (i && b[i].index <= b[i - 1].index)
            ordered = 0;
        if (b[i].count == 0 || b[i].lo > b[i].hi)
            inside = 0;
    }
    is_int(total, hist_count(all), "exported counts add up to the total");
    ok(ordered && inside, "exported buckets are non-empty and in increasing order");
    struct hist *re = malloc(sizeof *re);
    if (!re)
        bail_out("out of memory");
    hist_init(re);
    for (size_t i = 0; i < n; i++)
        hist_record_n(re, b[i].lo, b[i].count);
    ok(memcmp(re->buckets, all->buckets, sizeof all->buckets) == 0,
       "a histogram rebuilt from the export has the same buckets");
    int same_bucket = 1;
    for (int p = 1; p < 100; p++)
        if (hist_bucket_of(hist_percentile(re, p)) != hist_bucket_of(hist_percentile(all, p)))
            same_bucket = 0;
    ok(same_bucket, "rebuilt percentiles fall in the original's buckets");
    free(re);
    free(b);
    free(empty);
    free(all);
    free(part);
}

static void test_edges(void)
{
    struct hist *h = malloc(sizeof *h);
    if (!h)
        bail_out("out of memory");
    hist_init(h);
    ok(hist_count(h) == 0 && hist_min(h) == 0 && hist_max(h) == 0 && hist_mean(h) == 0.0 &&
           hist_percentile(h, 50) == 0,
       "an empty histogram reports zeros");
    hist_record(h, 0);
    ok(hist_percentile(h, 50) == 0 && hist_min(h) == 0 && hist_max(h) == 0 && hist_count(h) == 1,
       "the value 0 is recorded and reported as 0");
    hist_reset(h);
    hist_record(h, UINT64_MAX);
    hist_record(h, UINT64_MAX);
    is_int(hist_max(h) == UINT64_MAX, 1, "max keeps UINT64_MAX");
    is_int(hist_percentile(h, 100) == UINT64_MAX, 1, "p100 is UINT64_MAX");
    ok(rel_err(hist_percentile(h, 50), UINT64_MAX) <= 0.01, "p50 near UINT64_MAX within 1%%");
    ok(hist_mean(h) == (double)UINT64_MAX, "mean of two UINT64_MAX does not overflow");
    hist_record(h, UINT64_MAX - 1);
    hist_record(h, (uint64_t)1 << 63);
    ok(rel_err(hist_percentile(h, 10), (uint64_t)1 << 63) <= 0.01, "p10 is 2^63 within 1%%");
    ok(hist_percentile(h, 10) >= hist_min(h), "percentiles never fall below min");
    hist_reset(h);
    hist_record_n(h, 1000, 0);
    is_int(hist_count(h), 0, "record_n with n = 0 records nothing");
    hist_record_n(h, 1000, 5);
    hist_record(h, 3);
    is_int(hist_count(h), 6, "record_n counts n values");
    is_int(hist_percentile(h, 50), 1000, "p50 after record_n(1000, 5) is 1000");
    is_int(hist_percentile(h, 0), 3, "p0 is the min");
    is_int(hist_percentile(h, -5), 3, "negative pct clamps to the min");
    is_int(hist_percentile(h, 250), 1000, "pct above 100 clamps to the max");
    hist_merge(h, h);
    is_int(hist_count(h), 12, "merging a histogram into itself doubles it");
    free(h);
}

int main(void)
{
    test_layout();
    test_accuracy();
    test_merge();
    test_edges();
    return done_testing();
}
