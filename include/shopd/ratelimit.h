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
/** rl_gcra_take on the budget of key (keylen bytes). Any thread. */
void rl_table_take(rl_table_t *t, const char *key, size_t keylen, uint64_t now_us,
                   uint64_t period_us, uint32_t limit, rl_result_t *out);

#endif
