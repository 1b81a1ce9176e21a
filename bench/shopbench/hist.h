/*
 * hist.h: shopbench's latency histogram, in the style of HdrHistogram. Values
 * are integers (microseconds here) kept to a fixed number of significant
 * decimal digits: each power of two is split into sub_bucket_count linear
 * sub-buckets (2048 for 3 digits), so the relative error of any recorded value
 * is below 1/1000 whatever its magnitude, and memory is fixed up front.
 *
 * A histogram belongs to one thread while it records; histograms of the same
 * geometry are merged after the threads are joined.
 */
#ifndef SHOPBENCH_HIST_H
#define SHOPBENCH_HIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct sb_hist_s {
    uint64_t highest;   /**< largest trackable value; larger ones are clamped */
    int sig_digits;     /**< significant decimal digits kept (1..5) */
    int sub_half_mag;   /**< log2(sub_bucket_count / 2) */
    uint32_t sub_count; /**< sub-buckets per power of two, a power of two */
    uint32_t sub_half;  /**< sub_count / 2 */
    uint64_t sub_mask;  /**< (sub_count - 1): values below it sit in bucket 0 */
    int bucket_count;   /**< powers of two covered */
    size_t counts_len;  /**< entries in counts */
    uint64_t total;     /**< values recorded */
    uint64_t clamped;   /**< values above highest, recorded as highest */
    uint64_t min;       /**< exact smallest value (UINT64_MAX when empty) */
    uint64_t max;       /**< exact largest value, before clamping */
    long double sum;    /**< exact sum, for the mean */
    long double sum_sq; /**< for the standard deviation */
    uint64_t *counts;   /**< counts_len counters, owned */
} sb_hist_t;

/** A new empty histogram tracking 0..highest (highest >= 2) with sig_digits
 *  significant digits (1..5). Never NULL (aborts on out-of-memory). */
sb_hist_t *sb_hist_new(uint64_t highest, int sig_digits);
/** Frees h; NULL is fine. */
void sb_hist_free(sb_hist_t *h);
/** Forgets every recorded value; geometry stays. */
void sb_hist_reset(sb_hist_t *h);
/** Records one value. Values above highest count as highest (and in clamped). */
void sb_hist_record(sb_hist_t *h, uint64_t v);
/** Adds every count of src into dst. Both must come from sb_hist_new with the
 *  same arguments; returns 0, or -1 (dst untouched) when the geometry differs. */
int sb_hist_merge(sb_hist_t *dst, const sb_hist_t *src);
/** The value at percentile p (0..100): the highest value equivalent to the
 *  bucket where the cumulative count first reaches ceil(p/100 * total), capped
 *  by the exact max. 0 when empty. p = 100 gives the exact max. */
uint64_t sb_hist_percentile(const sb_hist_t *h, double p);
/** Exact mean and population standard deviation; 0 when empty. */
double sb_hist_mean(const sb_hist_t *h);
double sb_hist_stddev(const sb_hist_t *h);

/** Lowest and highest values that land in the same counter as v. */
uint64_t sb_hist_lowest_equiv(const sb_hist_t *h, uint64_t v);
uint64_t sb_hist_highest_equiv(const sb_hist_t *h, uint64_t v);

/** Walks the percentile spectrum the way HdrHistogram's percentile output does:
 *  steps that halve the remaining distance to 100%, ticks_per_half steps per
 *  halving, ending at 100%. Calls fn(percentile, value, arg) for each step. */
void sb_hist_spectrum(const sb_hist_t *h, int ticks_per_half,
                      void (*fn)(double pct, uint64_t value, void *arg), void *arg);

#endif
