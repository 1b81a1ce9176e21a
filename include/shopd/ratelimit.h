/*
 * ratelimit.h: request budgets as GCRA (the generic cell rate algorithm, a
 * token bucket kept as one timestamp), and an in-process table of them shared
 * by the I/O threads.
 *
 * A budget of `limit` requests per `period` is one number per key, the
 * theoretical arrival time (TAT): each request moves it on by period / limit,
 * and a request is refused while the TAT would stand more than `period` ahead
 * of now. So a fresh key may spend its whole limit at once, then one request
 * per period / limit; a key whose TAT is in the past is the same as a key
 * never seen, which lets the table drop such entries at any time and stay a
 * fixed size.
 */
#ifndef SHOPD_RATELIMIT_H
#define SHOPD_RATELIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/** What one take said: allowed or not, and the figures the RateLimit headers show. */
typedef struct rl_result_s {
    bool allowed;
    uint32_t limit;     /**< the budget (requests per period) */
    uint32_t remaining; /**< requests still allowed right now after this one */
    uint32_t reset_s;   /**< seconds until the whole budget is back (ceiling) */
    uint32_t retry_s;   /**< when refused: seconds until one request is allowed (>= 1) */
} rl_result_t;

/** One GCRA step for a budget of limit (> 0) requests per period_us (> 0):
 *  reads the key's TAT *tat (0: never seen), decides at now_us, and on success
 *  moves *tat on. Fills *out. Pure. */
void rl_gcra_take(uint64_t *tat, uint64_t now_us, uint64_t period_us, uint32_t limit,
                  rl_result_t *out);

typedef struct rl_table_s rl_table_t;

/** A table of about `slots` budgets (rounded up to a power of two, at least 1024),
 *  sharded under one mutex per shard, so I/O threads rarely meet. Keys are
 *  hashed with a per-table random seed (a client cannot pick colliding keys);
 *  when a key's probe window is full of live budgets, the one nearest to full
 *  is dropped (the only way the table ever forgets a debt). */
rl_table_t *rl_table_new(size_t slots);
/** Accepts NULL. */
void rl_table_free(rl_table_t *t);
/** rl_gcra_take on the budget of key (keylen bytes). An allowed request is also
 *  counted as pending for the next rl_table_collect. Any thread. */
void rl_table_take(rl_table_t *t, const char *key, size_t keylen, uint64_t now_us,
                   uint64_t period_us, uint32_t limit, rl_result_t *out);

/* ---- sharing budgets between processes ----
 * Each process decides alone, from its table; a sync thread periodically takes
 * the requests each budget allowed since the last time (rl_table_collect),
 * adds them to the budget's TAT in Redis (one GCRA step of n requests, keyed
 * by rl_shared_key, so every process names a budget alike), and merges the
 * TAT Redis returns back (rl_table_merge), which then holds every process's
 * spending; a budget in debt here is read back every sync even when this
 * process does not spend from it. Between two syncs each process spends on
 * what it knows: while a budget is in debt in P processes it may be
 * overspent by at most (P - 1) x its rate x the sync interval; a process that
 * meets a budget it holds no debt on (first use, or full again) may let up
 * to one burst through before its next sync. TATs are wall-clock
 * microseconds, so the processes' clocks must agree (NTP): a skew of d
 * shifts a budget by d. */

/** A budget's requests since the last collection. */
typedef struct rl_pending_s {
    uint64_t key;    /**< the slot's key, for rl_table_merge */
    uint64_t shared; /**< the budget's name across processes */
    uint32_t n;      /**< requests allowed here since the last collection */
    uint32_t limit;
    uint64_t period_us;
} rl_pending_t;

/** The name of key's budget in every process (rl_table_take computes it too). Pure. */
uint64_t rl_shared_key(const char *key, size_t keylen);
/** Takes every budget's pending requests (and zeroes them) into *out, grown as
 *  needed (*cap entries; realloc'd, the caller frees), and also every budget
 *  still in debt at now_us with n = 0 (so its shared TAT is read back even
 *  while this process does not spend from it). Returns how many. Any thread. */
size_t rl_table_collect(rl_table_t *t, uint64_t now_us, rl_pending_t **out, size_t *cap);
/** Moves the budget of slot key on to the shared TAT tat, if that is later than
 *  its own (a budget no longer in the table is left alone). Any thread. */
void rl_table_merge(rl_table_t *t, uint64_t key, uint64_t tat);

#endif
