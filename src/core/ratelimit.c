/*
 * ratelimit.c: GCRA budgets and the in-process table that holds them (see
 * include/shopd/ratelimit.h for the algorithm and the sharing through Redis). The table is a fixed
 * array of (key hash, TAT) pairs cut into shards, each under its own mutex: an I/O thread holds one
 * shard for a few dozen instructions per budget, so threads meet only when they touch the same
 * shard at the same moment.
 */
#include "shopd/ratelimit.h"

#include <pthread.h>
#include <string.h>

#include "shopd/common.h"

#define RL_SHARDS 64
#define RL_PROBE 8 /* slots of a key's window; a full window evicts its nearest-to-full budget */

static uint32_t
ceil_s(uint64_t us)
{
    uint64_t s = (us + 999999u) / 1000000u;
    return s > UINT32_MAX ? UINT32_MAX : (uint32_t)s;
}

void
rl_gcra_take(uint64_t *tat, uint64_t now_us, uint64_t period_us, uint32_t limit, rl_result_t *out)
{
    /* The emission interval: the time one request costs. Integer division makes
     * it at most 1 us short, so a burst can exceed the limit by limit^2 / period_us
     * requests at worst (0 for any limit below 1000 per second): remaining is
     * clamped so the headers never show more than the limit. */
    uint64_t iv = period_us / limit;
    if (iv == 0)
        iv = 1;
    uint64_t base = *tat > now_us ? *tat : now_us;
    uint64_t next = base + iv;
    out->limit = limit;
    if (next > now_us + period_us) {
        /* Allowed again once next - period_us has come. */
        out->allowed = false;
        out->remaining = 0;
        uint32_t r = ceil_s(next - period_us - now_us);
        out->retry_s = r ? r : 1;
        out->reset_s = ceil_s(base - now_us);
        return;
    }
    *tat = next;
    uint64_t left = (now_us + period_us - next) / iv;
    out->allowed = true;
    out->remaining = left >= limit ? limit - 1 : (uint32_t)left;
    out->reset_s = ceil_s(next - now_us);
    out->retry_s = 0;
}

typedef struct rl_slot_s {
    uint64_t key; /* hash of the key, never 0; 0: empty */
    uint64_t tat;
    uint64_t shared;  /* rl_shared_key of the key: its name in Redis */
    uint32_t pending; /* requests allowed here since the last rl_table_collect */
    uint32_t limit;
    uint32_t period_ms;
    uint32_t dirty; /* the slot's index is in its shard's dirty list */
} rl_slot_t;

typedef struct rl_shard_s {
    pthread_mutex_t lock;
    rl_slot_t *slots;
    /* Indexes of the slots with pending requests: a collection visits these,
     * not the whole table. At most per_shard entries (one per slot). */
    uint32_t *dirty;
    size_t ndirty;
} rl_shard_t;

struct rl_table_s {
    uint64_t seed;
    size_t per_shard; /* power of two */
    rl_shard_t shards[RL_SHARDS];
};

rl_table_t *
rl_table_new(size_t slots)
{
    rl_table_t *t = shopd_calloc(1, sizeof(*t));
    size_t per = 16;
    while (per * RL_SHARDS < slots)
        per *= 2;
    t->per_shard = per;
    shopd_random(&t->seed, sizeof(t->seed));
    for (int i = 0; i < RL_SHARDS; i++) {
        pthread_mutex_init(&t->shards[i].lock, NULL);
        t->shards[i].slots = shopd_calloc(per, sizeof(rl_slot_t));
        t->shards[i].dirty = shopd_calloc(per, sizeof(uint32_t));
    }
    return t;
}

void
rl_table_free(rl_table_t *t)
{
    if (t == NULL)
        return;
    for (int i = 0; i < RL_SHARDS; i++) {
        pthread_mutex_destroy(&t->shards[i].lock);
        shopd_free(t->shards[i].slots);
        shopd_free(t->shards[i].dirty);
    }
    shopd_free(t);
}

/* FNV-1a from a starting point (secret for the table's slots), then a 64-bit
 * finaliser (murmur3's) so every bit of the key moves the shard and slot bits. */
static uint64_t
key_hash(uint64_t seed, const char *k, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull ^ seed;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)k[i];
        h *= 0x100000001b3ull;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return h ? h : 1;
}

uint64_t
rl_shared_key(const char *key, size_t keylen)
{
    /* The same in every process (no seed): it names the budget in Redis. */
    return key_hash(0x5eedf00dull, key, keylen);
}

void
rl_table_take(rl_table_t *t, const char *key, size_t keylen, uint64_t now_us, uint64_t period_us,
              uint32_t limit, rl_result_t *out)
{
    uint64_t h = key_hash(t->seed, key, keylen);
    rl_shard_t *sh = &t->shards[h % RL_SHARDS];
    size_t mask = t->per_shard - 1, start = (size_t)(h / RL_SHARDS) & mask;
    pthread_mutex_lock(&sh->lock);
    rl_slot_t *hit = NULL, *spare = NULL;
    for (size_t i = 0; i < RL_PROBE && hit == NULL; i++) {
        rl_slot_t *s = &sh->slots[(start + i) & mask];
        if (s->key == h)
            hit = s;
        else if (s->key == 0 || s->tat <= now_us) {
            /* Empty, or a budget back to full: the same as never seen. */
            if (spare == NULL || (spare->key != 0 && spare->tat > now_us))
                spare = s;
        } else if (spare == NULL || (spare->key != 0 && spare->tat > now_us && s->tat < spare->tat))
            spare = s; /* nearest to full so far: evicted only if nothing better turns up */
    }
    if (hit == NULL) {
        hit = spare;
        hit->key = h;
        hit->tat = 0;
        hit->pending = 0; /* an evicted budget's unsent requests are dropped */
        hit->shared = rl_shared_key(key, keylen);
    }
    rl_gcra_take(&hit->tat, now_us, period_us, limit, out);
    if (out->allowed) {
        hit->pending++;
        hit->limit = limit;
        hit->period_ms = (uint32_t)(period_us / 1000u);
        if (!hit->dirty) {
            hit->dirty = 1;
            sh->dirty[sh->ndirty++] = (uint32_t)(hit - sh->slots);
        }
    }
    pthread_mutex_unlock(&sh->lock);
}

size_t
rl_table_collect(rl_table_t *t, uint64_t now_us, rl_pending_t **out, size_t *cap)
{
    size_t n = 0;
    for (int i = 0; i < RL_SHARDS; i++) {
        rl_shard_t *sh = &t->shards[i];
        pthread_mutex_lock(&sh->lock);
        if (n + sh->ndirty > *cap) {
            while (n + sh->ndirty > *cap)
                *cap = *cap ? *cap * 2 : 256;
            *out = shopd_realloc(*out, *cap * sizeof(rl_pending_t));
        }
        size_t keep = 0;
        for (size_t d = 0; d < sh->ndirty; d++) {
            rl_slot_t *s = &sh->slots[sh->dirty[d]];
            bool live = s->key != 0 && s->tat > now_us;
            if (s->key != 0 && (s->pending > 0 || live))
                (*out)[n++] = (rl_pending_t){.key = s->key,
                                             .shared = s->shared,
                                             .n = s->pending,
                                             .limit = s->limit,
                                             .period_us = (uint64_t)s->period_ms * 1000u};
            s->pending = 0;
            /* A budget still in debt stays listed, so what other processes
             * spend from it keeps coming back while it matters here. */
            if (live)
                sh->dirty[keep++] = sh->dirty[d];
            else
                s->dirty = 0;
        }
        sh->ndirty = keep;
        pthread_mutex_unlock(&sh->lock);
    }
    return n;
}

void
rl_table_merge(rl_table_t *t, uint64_t key, uint64_t tat)
{
    rl_shard_t *sh = &t->shards[key % RL_SHARDS];
    size_t mask = t->per_shard - 1, start = (size_t)(key / RL_SHARDS) & mask;
    pthread_mutex_lock(&sh->lock);
    for (size_t i = 0; i < RL_PROBE; i++) {
        rl_slot_t *s = &sh->slots[(start + i) & mask];
        if (s->key == key) {
            /* The shared TAT has every process's requests up to the collection;
             * ours since then are in the local one (and in the next collection). */
            if (tat > s->tat)
                s->tat = tat;
            break;
        }
    }
    pthread_mutex_unlock(&sh->lock);
}
