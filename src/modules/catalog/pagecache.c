/*
 * pagecache.c: the in-process level of the public catalog cache, shared by every
 * thread of the process: the catalog version of each store, kept current by Redis
 * pub/sub, and a bounded cache of built pages (each with its gzip copy) that the
 * I/O threads answer from without a worker hop or a Redis round trip.
 *
 * Versions. Every catalog write INCRs its store's version in Redis and publishes
 * "<store> <version>" on shopd:cat:bump:<db> in the same script (cat_bump); the
 * subscriber thread here applies what it hears to the table. The table never goes
 * back: a bump lower than what the table holds (two processes' publishes crossing,
 * or Redis lost its counters) makes the store unknown, and an unknown store is
 * looked up in Redis by the next request of it (pc_version_learn). The writer's own
 * process applies its bump at once, so its next GET sees it whatever pub/sub does.
 *
 * Staleness bound. The subscriber PINGs every 250 ms; while it has heard from Redis
 * within page_stale_ms (default 1 s) the table is trusted. Otherwise a page is
 * served in process only if a worker checked its version against Redis within
 * page_stale_ms; older pages go to a worker, which asks Redis (and builds the page
 * uncached when Redis does not answer). After a reconnect the subscriber empties
 * the table (a full resync: a bump published while it was away is not lost, every
 * store's version is read again) and starts a new epoch, so a version read from
 * Redis before the resync cannot be learned after it. A Redis that lost its data
 * counts versions from 0 again: a random generation key (shopd:cat:gen, set once
 * per data set) tells, and a new generation also drops every page kept here.
 *
 * Pages. A page is immutable once built and reference counted: the cache holds
 * one reference, every answer being written holds one (released by libevent once
 * the bytes are sent: net_reply_borrow_body). The cache is sharded by key hash,
 * each shard with its own lock, byte budget (page_cache_mb / PC_SHARDS) and CLOCK
 * hand; entries also expire after CAT_CACHE_TTL_S like their Redis copies.
 *
 * Lock order: a shard lock or a version shard lock, never two at once.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "catalog_priv.h"
#include "shopd/config.h"
#include "shopd/kv.h"
#include "shopd/log.h"

#define PC_SHARDS 16
#define PV_SHARDS 16
#define PC_PING_MS 250
#define PC_MIN_GZIP 256 /* smaller bodies are sent as they are */

/* ------------------------------------------------------------ settings, state */

/* Set at start and stop while other threads run: atomics, relaxed (a thread that
 * caches one more page just after stop only delays its free to fini). */
static _Atomic size_t pc_budget_bytes; /* per shard; 0: pages are not kept */
static _Atomic uint64_t pc_stale_us = 1000000;
#define pc_budget atomic_load_explicit(&pc_budget_bytes, memory_order_relaxed)
#define pc_stale atomic_load_explicit(&pc_stale_us, memory_order_relaxed)
static char pc_channel[64] = "shopd:cat:bump:0";

/* The subscription: up (subscribed, table resynced) and when Redis was last heard
 * from. Relaxed loads: a reader acting on a value a few microseconds old is within
 * the bound this exists to keep (page_stale_ms). */
static _Atomic bool sub_up;
static _Atomic uint64_t sub_heard_us;
static _Atomic uint64_t pv_epoch = 1;

static _Atomic uint64_t st_io_hits, st_worker_hits, st_misses, st_evictions, st_resyncs,
    st_bumps_heard, st_bytes, st_pipelined;

/* ------------------------------------------------------------ versions */

typedef struct pv_ent_s {
    uint64_t store, ver;
    struct pv_ent_s *next;
} pv_ent_t;

typedef struct pv_shard_s {
    pthread_mutex_t mu;
    pv_ent_t **b;
    size_t nb, n;
} pv_shard_t;

static pv_shard_t pv[PV_SHARDS];
static pthread_once_t pc_once = PTHREAD_ONCE_INIT;

static uint64_t
mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return x;
}

static pv_ent_t **
pv_find(pv_shard_t *s, uint64_t store)
{
    if (s->nb == 0)
        return NULL;
    pv_ent_t **pp = &s->b[mix64(store) / PV_SHARDS % s->nb];
    while (*pp && (*pp)->store != store)
        pp = &(*pp)->next;
    return pp;
}

static void
pv_grow(pv_shard_t *s)
{
    size_t nb = s->nb ? s->nb * 2 : 16;
    pv_ent_t **b = shopd_calloc(nb, sizeof(*b));
    for (size_t i = 0; i < s->nb; i++)
        for (pv_ent_t *e = s->b[i], *next; e; e = next) {
            next = e->next;
            size_t k = mix64(e->store) / PV_SHARDS % nb;
            e->next = b[k];
            b[k] = e;
        }
    shopd_free(s->b);
    s->b = b;
    s->nb = nb;
}

static pv_shard_t *
pv_shard(uint64_t store)
{
    return &pv[mix64(store) % PV_SHARDS];
}

/* How a new version meets the table: how = 0 a bump (heard or made here: higher
 * wins, lower makes the store unknown), 1 learned from a GET (only into an unknown
 * slot; a disagreement makes the store unknown too). */
static void
pv_apply(uint64_t store, uint64_t ver, int how)
{
    pv_shard_t *s = pv_shard(store);
    pthread_mutex_lock(&s->mu);
    pv_ent_t **pp = pv_find(s, store);
    if (pp && *pp) {
        pv_ent_t *e = *pp;
        if (how == 0 && ver > e->ver) {
            e->ver = ver;
        } else if (ver != e->ver) {
            *pp = e->next;
            shopd_free(e);
            s->n--;
        }
    } else {
        if (s->n >= s->nb)
            pv_grow(s);
        pp = pv_find(s, store);
        pv_ent_t *e = shopd_malloc(sizeof(*e));
        *e = (pv_ent_t){store, ver, *pp};
        *pp = e;
        s->n++;
    }
    pthread_mutex_unlock(&s->mu);
}

static void
pv_clear(void)
{
    for (size_t i = 0; i < PV_SHARDS; i++) {
        pv_shard_t *s = &pv[i];
        pthread_mutex_lock(&s->mu);
        for (size_t k = 0; k < s->nb; k++)
            for (pv_ent_t *e = s->b[k], *next; e; e = next) {
                next = e->next;
                shopd_free(e);
            }
        shopd_free(s->b);
        s->b = NULL;
        s->nb = s->n = 0;
        pthread_mutex_unlock(&s->mu);
    }
}

bool
pc_version(uint64_t store, uint64_t *ver)
{
    pv_shard_t *s = pv_shard(store);
    bool found = false;
    pthread_mutex_lock(&s->mu);
    pv_ent_t **pp = pv_find(s, store);
    if (pp && *pp) {
        *ver = (*pp)->ver;
        found = true;
    }
    pthread_mutex_unlock(&s->mu);
    return found;
}

bool
pc_sub_healthy(void)
{
    if (!atomic_load_explicit(&sub_up, memory_order_relaxed))
        return false;
    uint64_t heard = atomic_load_explicit(&sub_heard_us, memory_order_relaxed);
    return shopd_now_us() - heard < pc_stale;
}

uint64_t
pc_epoch(void)
{
    /* Acquire: pairs with the release in resync, so a reader that sees the new
     * epoch also sees the emptied table. */
    return atomic_load_explicit(&pv_epoch, memory_order_acquire);
}

void
pc_version_learn(uint64_t store, uint64_t ver, uint64_t epoch)
{
    if (epoch != pc_epoch())
        return; /* read before a resync: it may predate a bump the resync was for */
    pv_apply(store, ver, 1);
}

void
pc_version_bumped(uint64_t store, uint64_t ver)
{
    pv_apply(store, ver, 0);
}

/* ------------------------------------------------------------ pages */

struct pc_page_s {
    _Atomic uint32_t refs;
    uint64_t hash, store, ver;
    uint64_t born_us;
    _Atomic uint64_t checked_us; /* when its version was last confirmed by Redis */
    _Atomic bool used;           /* CLOCK reference bit */
    char *key;
    char etag[24], etag_gz[28];
    char *body, *gz;
    size_t len, gzlen;
    size_t cost;                   /* bytes counted against the budget */
    struct pc_page_s *hnext;       /* hash chain */
    struct pc_page_s *prev, *next; /* the shard's CLOCK ring */
};

typedef struct pc_shard_s {
    pthread_mutex_t mu;
    pc_page_t **b;
    size_t nb, n, bytes;
    pc_page_t *hand; /* CLOCK hand on the ring, NULL when empty */
} pc_shard_t;

static pc_shard_t pcs[PC_SHARDS];

static void
pc_init_locks(void)
{
    for (size_t i = 0; i < PC_SHARDS; i++)
        pthread_mutex_init(&pcs[i].mu, NULL);
    for (size_t i = 0; i < PV_SHARDS; i++)
        pthread_mutex_init(&pv[i].mu, NULL);
}

static void
pc_ensure_init(void)
{
    pthread_once(&pc_once, pc_init_locks);
}

void
pc_page_ref(pc_page_t *p)
{
    /* Relaxed: a new reference is taken from one already held. */
    atomic_fetch_add_explicit(&p->refs, 1, memory_order_relaxed);
}

void
pc_page_unref(pc_page_t *p)
{
    if (p == NULL)
        return;
    /* Release/acquire: the last owner must see every write the others made. */
    if (atomic_fetch_sub_explicit(&p->refs, 1, memory_order_acq_rel) != 1)
        return;
    shopd_free(p->key);
    shopd_free(p->body);
    shopd_free(p->gz);
    shopd_free(p);
}

const char *
pc_page_body(const pc_page_t *p, bool gz, size_t *len)
{
    if (gz && p->gz) {
        *len = p->gzlen;
        return p->gz;
    }
    *len = p->len;
    return p->body;
}

const char *
pc_page_etag(const pc_page_t *p, bool gz)
{
    return gz && p->gz ? p->etag_gz : p->etag;
}

bool
pc_page_has_gzip(const pc_page_t *p)
{
    return p->gz != NULL;
}

uint64_t
pc_page_version(const pc_page_t *p)
{
    return p->ver;
}

void
pc_page_checked(pc_page_t *p)
{
    atomic_store_explicit(&p->checked_us, shopd_now_us(), memory_order_relaxed);
}

/* The gzip copy of body, or NULL when it would not be smaller. */
static char *
gzip_of(const char *body, size_t len, size_t *out_len)
{
    if (len < PC_MIN_GZIP)
        return NULL;
    z_stream z;
    memset(&z, 0, sizeof(z));
    /* 15 + 16: a gzip wrapper, which every client that sends Accept-Encoding: gzip
     * reads (a raw zlib stream confuses some). Level 6: compressed once per fill. */
    if (deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return NULL;
    size_t cap = deflateBound(&z, (uLong)len);
    char *out = shopd_malloc(cap);
    z.next_in = (Bytef *)(uintptr_t)body;
    z.avail_in = (uInt)len;
    z.next_out = (Bytef *)out;
    z.avail_out = (uInt)cap;
    int rc = deflate(&z, Z_FINISH);
    size_t n = cap - z.avail_out;
    deflateEnd(&z);
    if (rc != Z_STREAM_END || n >= len) {
        shopd_free(out);
        return NULL;
    }
    *out_len = n;
    return out;
}

pc_page_t *
pc_page_new(uint64_t store, uint64_t ver, const char *key, const char *etag, const char *body,
            size_t len)
{
    pc_page_t *p = shopd_calloc(1, sizeof(*p));
    atomic_init(&p->refs, 1);
    p->key = shopd_strdup(key);
    p->hash = cat_hash(key);
    p->store = store;
    p->ver = ver;
    p->born_us = shopd_now_us();
    atomic_init(&p->checked_us, p->born_us);
    snprintf(p->etag, sizeof(p->etag), "%s", etag);
    /* The same page compressed is another representation: its own ETag, so a
     * client (or a shared cache keying on Vary) never gets one for the other. */
    size_t el = strlen(p->etag);
    if (el >= 2 && p->etag[el - 1] == '"')
        snprintf(p->etag_gz, sizeof(p->etag_gz), "%.*s-gz\"", (int)(el - 1), p->etag);
    p->body = shopd_malloc(len + 1);
    memcpy(p->body, body, len);
    p->body[len] = '\0';
    p->len = len;
    p->gz = gzip_of(body, len, &p->gzlen);
    p->cost = sizeof(*p) + strlen(key) + len + p->gzlen;
    return p;
}

static pc_page_t **
pc_find(pc_shard_t *s, uint64_t hash, const char *key)
{
    if (s->nb == 0)
        return NULL;
    pc_page_t **pp = &s->b[hash / PC_SHARDS % s->nb];
    while (*pp && ((*pp)->hash != hash || strcmp((*pp)->key, key) != 0))
        pp = &(*pp)->hnext;
    return pp;
}

/* Unlinks p (in s, under its lock) from the hash and the ring; the caller drops
 * the cache's reference. */
static void
pc_unlink(pc_shard_t *s, pc_page_t *p)
{
    pc_page_t **pp = pc_find(s, p->hash, p->key);
    if (pp && *pp == p)
        *pp = p->hnext;
    if (p->next == p) {
        s->hand = NULL;
    } else {
        p->prev->next = p->next;
        p->next->prev = p->prev;
        if (s->hand == p)
            s->hand = p->next;
    }
    s->n--;
    s->bytes -= p->cost;
    atomic_fetch_sub_explicit(&st_bytes, p->cost, memory_order_relaxed);
}

static void
pc_grow(pc_shard_t *s)
{
    size_t nb = s->nb ? s->nb * 2 : 64;
    pc_page_t **b = shopd_calloc(nb, sizeof(*b));
    for (size_t i = 0; i < s->nb; i++)
        for (pc_page_t *e = s->b[i], *next; e; e = next) {
            next = e->hnext;
            size_t k = e->hash / PC_SHARDS % nb;
            e->hnext = b[k];
            b[k] = e;
        }
    shopd_free(s->b);
    s->b = b;
    s->nb = nb;
}

void
pc_insert(pc_page_t *p)
{
    if (pc_budget == 0 || p->cost > pc_budget)
        return;
    pc_ensure_init();
    pc_shard_t *s = &pcs[p->hash % PC_SHARDS];
    pc_page_t *evicted = NULL, *old = NULL;
    pthread_mutex_lock(&s->mu);
    pc_page_t **pp = pc_find(s, p->hash, p->key);
    if (pp && *pp) {
        old = *pp;
        pc_unlink(s, old);
    }
    /* CLOCK: pages used since the hand last passed get another round. */
    while (s->hand && s->bytes + p->cost > pc_budget) {
        pc_page_t *h = s->hand;
        if (atomic_exchange_explicit(&h->used, false, memory_order_relaxed)) {
            s->hand = h->next;
            continue;
        }
        pc_unlink(s, h);
        h->hnext = evicted; /* no longer in the chain: reused as the free list */
        evicted = h;
        atomic_fetch_add_explicit(&st_evictions, 1, memory_order_relaxed);
    }
    if (s->n >= s->nb)
        pc_grow(s);
    pp = pc_find(s, p->hash, p->key);
    p->hnext = *pp;
    *pp = p;
    if (s->hand == NULL) {
        p->prev = p->next = p;
        s->hand = p;
    } else { /* just behind the hand: the last to be looked at */
        p->next = s->hand;
        p->prev = s->hand->prev;
        s->hand->prev->next = p;
        s->hand->prev = p;
    }
    s->n++;
    s->bytes += p->cost;
    atomic_fetch_add_explicit(&st_bytes, p->cost, memory_order_relaxed);
    pc_page_ref(p); /* the cache's reference */
    pthread_mutex_unlock(&s->mu);
    pc_page_unref(old);
    while (evicted) {
        pc_page_t *next = evicted->hnext;
        pc_page_unref(evicted);
        evicted = next;
    }
}

pc_page_t *
pc_lookup(const char *key)
{
    if (pc_budget == 0)
        return NULL;
    pc_ensure_init();
    uint64_t hash = cat_hash(key);
    pc_shard_t *s = &pcs[hash % PC_SHARDS];
    pc_page_t *p = NULL, *expired = NULL;
    pthread_mutex_lock(&s->mu);
    pc_page_t **pp = pc_find(s, hash, key);
    if (pp && *pp) {
        p = *pp;
        if (shopd_now_us() - p->born_us >= (uint64_t)CAT_CACHE_TTL_S * 1000000u) {
            pc_unlink(s, p);
            expired = p;
            p = NULL;
        } else {
            atomic_store_explicit(&p->used, true, memory_order_relaxed);
            pc_page_ref(p);
        }
    }
    pthread_mutex_unlock(&s->mu);
    pc_page_unref(expired);
    return p;
}

bool
pc_page_current(pc_page_t *p)
{
    uint64_t ver;
    if (!pc_version(p->store, &ver) || ver != p->ver)
        return false;
    if (pc_sub_healthy())
        return true;
    uint64_t checked = atomic_load_explicit(&p->checked_us, memory_order_relaxed);
    return shopd_now_us() - checked < pc_stale;
}

void
pc_count(int what)
{
    _Atomic uint64_t *c = what == PC_HIT_IO       ? &st_io_hits
                          : what == PC_HIT_WORKER ? &st_worker_hits
                          : what == PC_PIPELINED  ? &st_pipelined
                                                  : &st_misses;
    atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

static void
pc_drop_all(void)
{
    for (size_t i = 0; i < PC_SHARDS; i++) {
        pc_shard_t *s = &pcs[i];
        pthread_mutex_lock(&s->mu);
        while (s->hand) {
            pc_page_t *p = s->hand;
            pc_unlink(s, p);
            pc_page_unref(p);
        }
        shopd_free(s->b);
        s->b = NULL;
        s->nb = 0;
        pthread_mutex_unlock(&s->mu);
    }
}

const char *
pc_channel_name(void)
{
    return pc_channel;
}

/* ------------------------------------------------------------ the subscriber */

static pthread_t sub_thread;
static bool sub_started;
static _Atomic bool sub_stop;
static char sub_host[256], sub_password[256];
static int sub_port, sub_db;
static char sub_gen[40]; /* the generation of Redis's data last seen (subscriber only) */

/* "<store> <version>" from a bump message. */
static void
apply_message(const redisReply *r)
{
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 3 ||
        r->element[0]->type != REDIS_REPLY_STRING)
        return;
    const redisReply *kind = r->element[0], *payload = r->element[2];
    if (kind->len != 7 || memcmp(kind->str, "message", 7) != 0 ||
        payload->type != REDIS_REPLY_STRING)
        return;
    char buf[64];
    snprintf(buf, sizeof(buf), "%.*s", (int)(payload->len < 63 ? payload->len : 63), payload->str);
    unsigned long long store, ver;
    if (sscanf(buf, "%llu %llu", &store, &ver) == 2) {
        pc_version_bumped(store, ver);
        atomic_fetch_add_explicit(&st_bumps_heard, 1, memory_order_relaxed);
    }
}

static bool
sub_wait(int ms)
{
    for (int waited = 0; waited < ms; waited += 50) {
        if (atomic_load_explicit(&sub_stop, memory_order_relaxed))
            return false;
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep(&ts, NULL);
    }
    return !atomic_load_explicit(&sub_stop, memory_order_relaxed);
}

/* One connection's life: connect, subscribe, resync, then read bumps and PING
 * until Redis stops answering or shopd stops. */
static void
sub_session(void)
{
    struct timeval tv = {1, 0};
    redisContext *c = redisConnectWithTimeout(sub_host, sub_port, tv);
    redisReply *r = NULL;
    if (c == NULL || c->err)
        goto out;
    redisSetTimeout(c, tv);
    if (sub_password[0]) {
        r = redisCommand(c, "AUTH %s", sub_password);
        if (r == NULL || r->type == REDIS_REPLY_ERROR)
            goto out;
        freeReplyObject(r);
    }
    /* Redis's generation: a random value set once per data set. A Redis that lost
     * its data (restarted without persistence, flushed) counts versions from 0
     * again, and a page kept here under an old number could then match a new one:
     * a new generation drops every page kept in process. */
    char gen[40];
    snprintf(gen, sizeof(gen), "%016llx%08x", (unsigned long long)shopd_now_us(),
             (unsigned)getpid());
    r = redisCommand(c, "SET shopd:cat:gen %s NX", gen);
    if (r == NULL || r->type == REDIS_REPLY_ERROR)
        goto out;
    freeReplyObject(r);
    r = redisCommand(c, "GET shopd:cat:gen");
    if (r == NULL || r->type != REDIS_REPLY_STRING)
        goto out;
    snprintf(gen, sizeof(gen), "%.*s", (int)(r->len < 39 ? r->len : 39), r->str);
    freeReplyObject(r);
    r = redisCommand(c, "SUBSCRIBE %s", pc_channel);
    if (r == NULL || r->type != REDIS_REPLY_ARRAY)
        goto out;
    freeReplyObject(r);
    r = NULL;
    /* Subscribed: from now on no bump is missed, so forget every version known
     * before (some bumps may have been published while nobody listened). The
     * release pairs with pc_epoch's acquire. */
    pv_clear();
    if (sub_gen[0] && strcmp(sub_gen, gen) != 0) {
        pc_drop_all();
        log_warn("Redis lost the catalog versions (a new generation): pages kept in process "
                 "dropped");
    }
    snprintf(sub_gen, sizeof(sub_gen), "%s", gen);
    atomic_fetch_add_explicit(&pv_epoch, 1, memory_order_release);
    atomic_fetch_add_explicit(&st_resyncs, 1, memory_order_relaxed);
    atomic_store_explicit(&sub_heard_us, shopd_now_us(), memory_order_relaxed);
    atomic_store_explicit(&sub_up, true, memory_order_relaxed);
    log_info("catalog version subscription up channel=%s", pc_channel);
    uint64_t pinged_us = 0;
    while (!atomic_load_explicit(&sub_stop, memory_order_relaxed)) {
        struct pollfd pfd = {c->fd, POLLIN, 0};
        int n = poll(&pfd, 1, PC_PING_MS);
        uint64_t now = shopd_now_us();
        if (n < 0 && errno != EINTR)
            break;
        if (n > 0) {
            if (redisBufferRead(c) != REDIS_OK)
                break;
            void *rep;
            while (redisGetReplyFromReader(c, &rep) == REDIS_OK && rep != NULL) {
                apply_message(rep);
                freeReplyObject(rep);
                atomic_store_explicit(&sub_heard_us, now, memory_order_relaxed);
            }
            if (c->err)
                break;
        }
        if (now - atomic_load_explicit(&sub_heard_us, memory_order_relaxed) >= pc_stale)
            break; /* Redis went quiet: past the bound, the table is not trusted */
        if (now - pinged_us >= PC_PING_MS * 1000u) {
            /* A subscribed connection answers PING with a "pong" message. */
            int done = 0;
            if (redisAppendCommand(c, "PING") != REDIS_OK)
                break;
            while (!done)
                if (redisBufferWrite(c, &done) != REDIS_OK)
                    break;
            if (!done)
                break;
            pinged_us = now;
        }
    }
out:
    if (atomic_exchange_explicit(&sub_up, false, memory_order_relaxed))
        log_warn("catalog version subscription lost; cached pages are checked against Redis "
                 "when older than %llu ms",
                 (unsigned long long)(pc_stale / 1000));
    if (r)
        freeReplyObject(r);
    if (c)
        redisFree(c);
}

static void *
sub_main(void *arg)
{
    (void)arg;
    while (!atomic_load_explicit(&sub_stop, memory_order_relaxed)) {
        sub_session();
        if (!sub_wait(200))
            break;
    }
    return NULL;
}

int
catalog_pages_start(app_t *app)
{
    pc_ensure_init();
    const cfg_t *cfg = app->cfg;
    size_t budget =
        cfg->page_cache_mb > 0 ? (size_t)cfg->page_cache_mb * 1024 * 1024 / PC_SHARDS : 0;
    atomic_store_explicit(&pc_budget_bytes, budget, memory_order_relaxed);
    uint64_t stale = (uint64_t)(cfg->page_stale_ms > 0 ? cfg->page_stale_ms : 1000) * 1000u;
    atomic_store_explicit(&pc_stale_us, stale, memory_order_relaxed);
    if (cfg->redis_url == NULL || cfg->redis_url[0] == '\0' ||
        kv_parse_url(cfg->redis_url, sub_host, sizeof(sub_host), &sub_port, &sub_db, sub_password,
                     sizeof(sub_password)) != 0) {
        log_warn("catalog version subscription off (no usable Redis URL)");
        return 0;
    }
    /* Pub/sub channels are shared by every database of a Redis server: the database
     * is in the name, so processes on other databases hear nothing of these stores. */
    snprintf(pc_channel, sizeof(pc_channel), "shopd:cat:bump:%d", sub_db);
    atomic_store(&sub_stop, false);
    if (pthread_create(&sub_thread, NULL, sub_main, NULL) != 0) {
        log_error("cannot start the catalog version subscriber");
        return -1;
    }
    sub_started = true;
    return 0;
}

void
catalog_pages_stop(app_t *app)
{
    (void)app;
    if (sub_started) {
        atomic_store(&sub_stop, true);
        pthread_join(sub_thread, NULL);
        sub_started = false;
    }
    atomic_store(&pc_budget_bytes, 0); /* nothing new is kept from here on */
}

void
catalog_pages_fini(app_t *app)
{
    (void)app;
    atomic_store(&pc_budget_bytes, 0);
    pc_drop_all(); /* every thread has ended: no answer holds a page any more */
    pv_clear();
}

size_t
catalog_pages_metrics(char *buf, size_t cap)
{
    int n = snprintf(
        buf, cap,
        "# TYPE shopd_page_cache_hits_total counter\n"
        "shopd_page_cache_hits_total{where=\"io\"} %llu\n"
        "shopd_page_cache_hits_total{where=\"worker\"} %llu\n"
        "# TYPE shopd_page_cache_misses_total counter\n"
        "shopd_page_cache_misses_total %llu\n"
        "# TYPE shopd_page_cache_evictions_total counter\n"
        "shopd_page_cache_evictions_total %llu\n"
        "# TYPE shopd_page_cache_bytes gauge\n"
        "shopd_page_cache_bytes %llu\n"
        "# TYPE shopd_catalog_version_resyncs_total counter\n"
        "shopd_catalog_version_resyncs_total %llu\n"
        "# TYPE shopd_catalog_version_bumps_heard_total counter\n"
        "shopd_catalog_version_bumps_heard_total %llu\n"
        "# TYPE shopd_catalog_version_subscription_up gauge\n"
        "shopd_catalog_version_subscription_up %d\n"
        "# TYPE shopd_catalog_pages_pipelined_total counter\n"
        "shopd_catalog_pages_pipelined_total %llu\n",
        (unsigned long long)atomic_load(&st_io_hits),
        (unsigned long long)atomic_load(&st_worker_hits),
        (unsigned long long)atomic_load(&st_misses), (unsigned long long)atomic_load(&st_evictions),
        (unsigned long long)atomic_load(&st_bytes), (unsigned long long)atomic_load(&st_resyncs),
        (unsigned long long)atomic_load(&st_bumps_heard), pc_sub_healthy() ? 1 : 0,
        (unsigned long long)atomic_load(&st_pipelined));
    return n < 0 ? 0 : (size_t)n >= cap ? cap - 1 : (size_t)n;
}
