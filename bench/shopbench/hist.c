/*
 * hist.c: the log-bucketed latency histogram (see hist.h). The index math is
 * HdrHistogram's with a unit of 1: values below sub_count map to themselves;
 * above that, bucket b (b >= 1) covers [sub_count/2 << b, sub_count << b) in
 * sub_count/2 steps of 2^b. Each bucket after the first reuses only the upper
 * half of its sub-buckets because the lower half is covered by bucket b-1,
 * which is why counts_len is (bucket_count + 1) * sub_half.
 */
#include "hist.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void *
hist_calloc(size_t n, size_t size)
{
    void *p = calloc(n, size);
    if (p == NULL) {
        fprintf(stderr, "shopbench: out of memory\n");
        abort();
    }
    return p;
}

sb_hist_t *
sb_hist_new(uint64_t highest, int sig_digits)
{
    if (sig_digits < 1)
        sig_digits = 1;
    if (sig_digits > 5)
        sig_digits = 5;
    if (highest < 2)
        highest = 2;
    sb_hist_t *h = hist_calloc(1, sizeof(*h));
    h->highest = highest;
    h->sig_digits = sig_digits;

    /* The smallest power of two that holds 2 * 10^digits distinct steps keeps
     * every value to `digits` significant digits. */
    uint64_t single_unit = 2;
    for (int i = 0; i < sig_digits; i++)
        single_unit *= 10;
    int mag = 0;
    while ((1ULL << mag) < single_unit)
        mag++;
    h->sub_half_mag = (mag > 1 ? mag : 1) - 1;
    h->sub_count = 1U << (h->sub_half_mag + 1);
    h->sub_half = h->sub_count / 2;
    h->sub_mask = (uint64_t)h->sub_count - 1;

    uint64_t untrackable = h->sub_count;
    int buckets = 1;
    while (untrackable <= highest) {
        if (untrackable > UINT64_MAX / 2) {
            buckets++;
            break;
        }
        untrackable <<= 1;
        buckets++;
    }
    h->bucket_count = buckets;
    h->counts_len = (size_t)(buckets + 1) * h->sub_half;
    h->counts = hist_calloc(h->counts_len, sizeof(uint64_t));
    h->min = UINT64_MAX;
    return h;
}

void
sb_hist_free(sb_hist_t *h)
{
    if (h == NULL)
        return;
    free(h->counts);
    free(h);
}

void
sb_hist_reset(sb_hist_t *h)
{
    memset(h->counts, 0, h->counts_len * sizeof(uint64_t));
    h->total = 0;
    h->clamped = 0;
    h->min = UINT64_MAX;
    h->max = 0;
    h->sum = 0;
    h->sum_sq = 0;
}

/* Power-of-two bucket of v: 0 for v < sub_count. */
static int
bucket_of(const sb_hist_t *h, uint64_t v)
{
    int pow2ceiling = 64 - __builtin_clzll(v | h->sub_mask);
    return pow2ceiling - (h->sub_half_mag + 1);
}

static size_t
index_of(const sb_hist_t *h, uint64_t v)
{
    int b = bucket_of(h, v);
    uint64_t sub = v >> b;
    return ((size_t)(b + 1) << h->sub_half_mag) + (size_t)(sub - h->sub_half);
}

static uint64_t
value_at_index(const sb_hist_t *h, size_t i)
{
    int b = (int)(i >> h->sub_half_mag) - 1;
    uint64_t sub = (i & (h->sub_half - 1)) + h->sub_half;
    if (b < 0) {
        sub -= h->sub_half;
        b = 0;
    }
    return sub << b;
}

uint64_t
sb_hist_lowest_equiv(const sb_hist_t *h, uint64_t v)
{
    int b = bucket_of(h, v);
    return (v >> b) << b;
}

uint64_t
sb_hist_highest_equiv(const sb_hist_t *h, uint64_t v)
{
    int b = bucket_of(h, v);
    return sb_hist_lowest_equiv(h, v) + (1ULL << b) - 1;
}

void
sb_hist_record(sb_hist_t *h, uint64_t v)
{
    if (v < h->min)
        h->min = v;
    if (v > h->max)
        h->max = v;
    h->sum += (long double)v;
    h->sum_sq += (long double)v * (long double)v;
    h->total++;
    if (v > h->highest) {
        h->clamped++;
        v = h->highest;
    }
    h->counts[index_of(h, v)]++;
}

int
sb_hist_merge(sb_hist_t *dst, const sb_hist_t *src)
{
    if (dst->counts_len != src->counts_len || dst->sub_count != src->sub_count)
        return -1;
    for (size_t i = 0; i < src->counts_len; i++)
        dst->counts[i] += src->counts[i];
    dst->total += src->total;
    dst->clamped += src->clamped;
    dst->sum += src->sum;
    dst->sum_sq += src->sum_sq;
    if (src->min < dst->min)
        dst->min = src->min;
    if (src->max > dst->max)
        dst->max = src->max;
    return 0;
}

uint64_t
sb_hist_percentile(const sb_hist_t *h, double p)
{
    if (h->total == 0)
        return 0;
    if (p >= 100.0)
        return h->max;
    if (p < 0)
        p = 0;
    uint64_t want = (uint64_t)(p / 100.0 * (double)h->total + 0.5);
    if (want < 1)
        want = 1;
    uint64_t seen = 0;
    for (size_t i = 0; i < h->counts_len; i++) {
        seen += h->counts[i];
        if (seen >= want) {
            uint64_t v = sb_hist_highest_equiv(h, value_at_index(h, i));
            /* The bucket's top may exceed what was actually seen. */
            if (v > h->max)
                v = h->max;
            if (v < h->min)
                v = h->min;
            return v;
        }
    }
    return h->max;
}

double
sb_hist_mean(const sb_hist_t *h)
{
    if (h->total == 0)
        return 0;
    return (double)(h->sum / (long double)h->total);
}

double
sb_hist_stddev(const sb_hist_t *h)
{
    if (h->total == 0)
        return 0;
    long double n = (long double)h->total;
    long double mean = h->sum / n;
    long double var = h->sum_sq / n - mean * mean;
    return var > 0 ? sqrt((double)var) : 0;
}

void
sb_hist_spectrum(const sb_hist_t *h, int ticks_per_half,
                 void (*fn)(double pct, uint64_t value, void *arg), void *arg)
{
    if (h->total == 0)
        return;
    if (ticks_per_half < 1)
        ticks_per_half = 1;
    for (int k = 0;; k++) {
        double pct = 100.0 * (1.0 - pow(0.5, (double)k / ticks_per_half));
        /* Stop once the step would ask for every value: the rest is the max. */
        if (pct / 100.0 * (double)h->total + 0.5 >= (double)h->total || k > 60 * ticks_per_half)
            break;
        fn(pct, sb_hist_percentile(h, pct), arg);
    }
    fn(100.0, h->max, arg);
}
