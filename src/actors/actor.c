/*
 * actor.c: the actor runtime: the registry (store id -> actor), the run queue
 * of ready actors, the worker threads that run actor turns, idle reclaim, stats
 * and shutdown. Messages live in each actor's mailbox (mailbox.c).
 *
 * Ownership of an actor ("the token"): an actor is either idle (mailbox marked
 * empty, in no run queue, touched by no worker) or owned by exactly one party:
 * first the sender whose push found the mailbox marked (it appends the actor to
 * the run queue), then the run queue, then the worker that took it, until that
 * worker either re-queues it or marks the mailbox empty again. So an actor is
 * never in the run queue twice and never runs on two workers at once.
 *
 * Locks, always taken in this order: a registry shard lock, then rq_lock. A
 * worker never holds rq_lock while taking a shard lock (sweeps run unlocked).
 */
#include "shopd/actors.h"

#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "actors/mailbox.h"
#include "shopd/log.h"

#define ACT_SHARDS 64u /* power of two */
#define ACT_SHARD_BUCKETS0 16u
#define ACT_MAX_WORKERS 1024
#define ACT_MAX_BATCH 65536u
#define ACT_SWEEP_MIN_US 5000u    /* never sweep more often than this */
#define ACT_SWEEP_MAX_US 1000000u /* nor less often, so long idle periods still shrink */

typedef struct act_actor_s act_actor_t;
struct act_actor_s {
    act_mailbox_t mb;
    uint64_t store_id;
    /** Messages accepted and not yet taken by a turn; enforces mailbox_cap. */
    _Atomic size_t depth;
    /** Monotonic time the last turn ended (creation time before any turn). */
    _Atomic uint64_t idle_since_us;
    /** Statistics for act_system_visit: written only by the worker running the
     *  actor's turn (one at a time: the scheduling token), read anywhere;
     *  relaxed, approximate by contract. */
    _Atomic uint64_t turns, processed;
    _Atomic uint32_t last_batch;
    act_actor_t *hnext;   /**< registry chain; under the shard lock */
    act_actor_t *rq_next; /**< run queue link; under rq_lock */
};

typedef struct act_shard_s {
    pthread_mutex_t lock;
    act_actor_t **buckets; /**< nbuckets chains, nbuckets a power of two */
    size_t nbuckets;
    size_t count;
    /* Keeps neighbouring shards' mutexes on different cache lines. */
    char pad_[64];
} act_shard_t;

struct act_worker_s {
    act_system_t *sys;
    int index;
    bool started;
    pthread_t thread;
    void *state;       /**< from worker_init */
    act_msg_t **batch; /**< batch_max slots for one turn */
    /* Written only by this worker, read by act_system_stats. */
    _Atomic uint64_t processed;
    _Atomic uint64_t turns;
    _Atomic int busy;
    /* Under rq_lock: the group of the actor this worker runs (for group_cap). */
    bool running;
    uint64_t group;
    char pad_[64]; /* workers are separate allocations; keep their counters apart */
};

struct act_system_s {
    act_config_t cfg;
    act_shard_t shards[ACT_SHARDS];

    /* Run queue: FIFO of actors whose token it holds. */
    pthread_mutex_t rq_lock;
    pthread_cond_t rq_cond;    /**< work appended, or quit */
    pthread_cond_t drain_cond; /**< queued may have reached 0 while draining */
    act_actor_t *rq_head;
    act_actor_t *rq_tail;
    int rq_waiting; /**< workers blocked on rq_cond */
    bool draining;  /**< act_system_stop waits on drain_cond */
    bool quit;      /**< workers must exit */

    /** Set once by stop; read by senders under their shard lock. */
    _Atomic bool stopping;
    bool started; /* caller thread only (start/stop/free) */
    bool stopped;

    _Atomic uint64_t queued; /**< sum of all actors' depth */
    _Atomic uint64_t rejected;
    _Atomic uint64_t reclaimed;
    _Atomic uint64_t next_sweep_us; /**< claim ticket for the next idle sweep */
    uint64_t sweep_every_us;
    uint64_t idle_us;

    act_worker_t **workers; /**< cfg.workers entries */
};

/* ---- messages ---- */

act_msg_t *
act_msg_new(uint32_t type, uint64_t store_id, char *data, size_t len)
{
    act_msg_t *m = shopd_calloc(1, sizeof(*m));
    atomic_init(&m->next, NULL);
    m->type = type;
    m->store_id = store_id;
    m->data = data;
    m->len = len;
    return m;
}

void
act_msg_free(act_msg_t *m)
{
    if (m == NULL)
        return;
    shopd_free(m->data);
    shopd_free(m);
}

/* ---- registry ---- */

/* splitmix64 finaliser: store ids are sequential, so spread them before using
 * the low bits for the shard and bucket. */
static inline uint64_t
hash_id(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    return x;
}

static inline act_shard_t *
shard_of(act_system_t *sys, uint64_t h)
{
    return &sys->shards[h & (ACT_SHARDS - 1)];
}

static inline size_t
bucket_of(const act_shard_t *sh, uint64_t h)
{
    /* The low bits chose the shard; use the next ones for the bucket. */
    return (size_t)(h >> 6) & (sh->nbuckets - 1);
}

/* Shard lock held. */
static act_actor_t *
shard_find(act_shard_t *sh, uint64_t id, uint64_t h)
{
    for (act_actor_t *a = sh->buckets[bucket_of(sh, h)]; a != NULL; a = a->hnext) {
        if (a->store_id == id)
            return a;
    }
    return NULL;
}

/* Shard lock held. Doubles the table when it averages one actor per bucket. */
static void
shard_grow(act_shard_t *sh)
{
    size_t old_n = sh->nbuckets;
    act_actor_t **old = sh->buckets;
    sh->nbuckets = old_n * 2;
    sh->buckets = shopd_calloc(sh->nbuckets, sizeof(*sh->buckets));
    for (size_t i = 0; i < old_n; i++) {
        act_actor_t *a = old[i];
        while (a != NULL) {
            act_actor_t *next = a->hnext;
            size_t b = bucket_of(sh, hash_id(a->store_id));
            a->hnext = sh->buckets[b];
            sh->buckets[b] = a;
            a = next;
        }
    }
    shopd_free(old);
}

/* Shard lock held. The new actor's mailbox starts marked empty, so the push
 * that follows creation gets the token and schedules it. */
static act_actor_t *
shard_add(act_shard_t *sh, uint64_t id, uint64_t h)
{
    if (sh->count >= sh->nbuckets)
        shard_grow(sh);
    act_actor_t *a = shopd_calloc(1, sizeof(*a));
    act_mailbox_init(&a->mb);
    a->store_id = id;
    atomic_init(&a->depth, 0);
    atomic_init(&a->idle_since_us, shopd_now_us());
    atomic_init(&a->turns, 0);
    atomic_init(&a->processed, 0);
    atomic_init(&a->last_batch, 0);
    size_t b = bucket_of(sh, h);
    a->hnext = sh->buckets[b];
    sh->buckets[b] = a;
    sh->count++;
    return a;
}

/* ---- run queue ---- */

/* rq_lock held. The caller passes the actor's token to the queue. */
static void
rq_append_locked(act_system_t *sys, act_actor_t *a)
{
    a->rq_next = NULL;
    if (sys->rq_tail != NULL)
        sys->rq_tail->rq_next = a;
    else
        sys->rq_head = a;
    sys->rq_tail = a;
}

/* rq_lock held. Workers running an actor of group g now. */
static unsigned
group_running_locked(const act_system_t *sys, uint64_t g)
{
    unsigned n = 0;
    for (int i = 0; i < sys->cfg.workers; i++)
        if (sys->workers[i]->running && sys->workers[i]->group == g)
            n++;
    return n;
}

/* rq_lock held. The next actor to run: the head, or with group_cap the first
 * whose group is under its cap (the head when none is: work-conserving). The
 * scan is bounded, so a long queue of one store costs a bounded look. */
static act_actor_t *
rq_take_locked(act_system_t *sys)
{
    act_actor_t *a = sys->rq_head, *prev = NULL;
    if (a != NULL && sys->cfg.group_of != NULL && sys->cfg.group_cap > 0) {
        act_actor_t *p = NULL, *c = a;
        for (int look = 0; c != NULL && look < 64; look++, p = c, c = c->rq_next) {
            if (group_running_locked(sys, sys->cfg.group_of(c->store_id)) < sys->cfg.group_cap) {
                a = c;
                prev = p;
                break;
            }
        }
    }
    if (a != NULL) {
        if (prev != NULL)
            prev->rq_next = a->rq_next;
        else
            sys->rq_head = a->rq_next;
        if (sys->rq_tail == a)
            sys->rq_tail = prev;
        a->rq_next = NULL;
    }
    return a;
}

static void
abs_monotonic(struct timespec *ts, uint64_t us)
{
    ts->tv_sec = (time_t)(us / 1000000u);
    ts->tv_nsec = (long)(us % 1000000u) * 1000;
}

/* ---- idle reclaim ---- */

/* Frees every idle actor. Runs on a worker holding no lock.
 *
 * Why this cannot race with a send: act_send looks the actor up and pushes
 * while holding the shard lock, and so does this sweep when it tests and frees.
 * An actor whose mailbox is marked empty has no owner: no worker runs it (the
 * last one marked it as its final touch, with release; our acquire load sees
 * all it did), it is in no run queue, and nothing is queued. The only way to
 * clear the mark is a push, which needs the shard lock we hold. So between the
 * test and the free nobody can reach the actor, and a later send for the same
 * store simply creates a new one. */
static void
sweep_idle(act_system_t *sys)
{
    uint64_t freed = 0;
    for (size_t s = 0; s < ACT_SHARDS; s++) {
        act_shard_t *sh = &sys->shards[s];
        pthread_mutex_lock(&sh->lock);
        uint64_t now = shopd_now_us();
        for (size_t b = 0; b < sh->nbuckets; b++) {
            act_actor_t **pp = &sh->buckets[b];
            while (*pp != NULL) {
                act_actor_t *a = *pp;
                if (act_mailbox_is_marked_empty(&a->mb)) {
                    /* relaxed: ordered by the acquire in is_marked_empty. */
                    uint64_t since = atomic_load_explicit(&a->idle_since_us, memory_order_relaxed);
                    if (since <= now && now - since >= sys->idle_us) {
                        *pp = a->hnext;
                        sh->count--;
                        shopd_free(a);
                        freed++;
                        continue;
                    }
                }
                pp = &a->hnext;
            }
        }
        pthread_mutex_unlock(&sh->lock);
    }
    if (freed > 0) {
        /* relaxed: a statistic. */
        atomic_fetch_add_explicit(&sys->reclaimed, freed, memory_order_relaxed);
    }
}

/* Runs a sweep if one is due and no other worker claimed it. No lock held. */
static void
maybe_sweep(act_system_t *sys, uint64_t now)
{
    /* relaxed (load and CAS): the ticket only elects one sweeper per period;
     * the data the sweep touches is guarded by the shard locks. */
    uint64_t due = atomic_load_explicit(&sys->next_sweep_us, memory_order_relaxed);
    if (now < due)
        return;
    if (!atomic_compare_exchange_strong_explicit(&sys->next_sweep_us, &due,
                                                 now + sys->sweep_every_us, memory_order_relaxed,
                                                 memory_order_relaxed))
        return;
    sweep_idle(sys);
}

/* ---- workers ---- */

/* One turn of actor a, whose token this worker holds. Returns true when the
 * worker must re-queue it (more messages, or a push still in flight); false when
 * the mailbox was marked empty, after which a must not be touched. */
static bool
run_turn(act_worker_t *w, act_actor_t *a)
{
    act_system_t *sys = w->sys;
    size_t n = 0, lim = sys->cfg.batch_max;
    if (sys->cfg.batch_for) {
        size_t want = sys->cfg.batch_for(a->store_id, sys->cfg.ud);
        lim = want < 1 ? 1 : want < lim ? want : lim;
    }
    while (n < sys->cfg.batch_max) {
        if (n >= lim) {
            if (sys->cfg.more == NULL)
                break;
            const act_msg_t *next = act_mailbox_peek(&a->mb);
            if (next == NULL || !sys->cfg.more(a->store_id, w->batch[0], next, n, sys->cfg.ud))
                break;
        }
        act_msg_t *m = act_mailbox_pop(&a->mb);
        if (m == NULL)
            break;
        w->batch[n++] = m;
    }

    if (n > 0) {
        /* relaxed: counters only; the messages themselves were published by
         * the mailbox links. Decrement before the handler so senders get room
         * back as soon as the batch has left the mailbox. */
        atomic_fetch_sub_explicit(&a->depth, n, memory_order_relaxed);
        atomic_fetch_sub_explicit(&sys->queued, n, memory_order_relaxed);
        /* relaxed (busy, processed, turns): statistics, single writer. */
        atomic_store_explicit(&w->busy, 1, memory_order_relaxed);
        sys->cfg.handler(w, a->store_id, w->batch, n, sys->cfg.ud);
        atomic_store_explicit(&w->busy, 0, memory_order_relaxed);
        atomic_store_explicit(&w->processed,
                              atomic_load_explicit(&w->processed, memory_order_relaxed) + n,
                              memory_order_relaxed);
        atomic_store_explicit(&w->turns, atomic_load_explicit(&w->turns, memory_order_relaxed) + 1,
                              memory_order_relaxed);
        /* relaxed, single writer (this turn's worker): statistics. */
        atomic_store_explicit(&a->turns, atomic_load_explicit(&a->turns, memory_order_relaxed) + 1,
                              memory_order_relaxed);
        atomic_store_explicit(&a->processed,
                              atomic_load_explicit(&a->processed, memory_order_relaxed) + n,
                              memory_order_relaxed);
        atomic_store_explicit(&a->last_batch, (uint32_t)n, memory_order_relaxed);
    } else {
        /* A sender exchanged the head but has not linked its node yet (it is
         * inside act_send, maybe preempted). Let it run before we look again. */
        sched_yield();
    }

    /* relaxed: published by the release in mark_empty to the sweeper. Written
     * before marking because after a successful mark the actor is not ours. */
    atomic_store_explicit(&a->idle_since_us, shopd_now_us(), memory_order_relaxed);
    /* The classic race: a sender that pushed during our turn saw was_empty ==
     * false and relies on us. mark_empty only succeeds if nothing was pushed
     * since our last pop, atomically with the head word senders exchange, so
     * either we keep the token (and re-queue) or the next sender gets it. */
    return !act_mailbox_mark_empty(&a->mb);
}

static void *
worker_main(void *arg)
{
    act_worker_t *w = arg;
    act_system_t *sys = w->sys;
    act_actor_t *a = NULL;
    bool requeue = false;

    if (sys->cfg.worker_init != NULL)
        w->state = sys->cfg.worker_init(w->index, sys->cfg.ud);

    pthread_mutex_lock(&sys->rq_lock);
    for (;;) {
        /* Re-queue at the tail so the other ready actors get their turn first. */
        if (requeue)
            rq_append_locked(sys, a);
        a = NULL;
        /* relaxed: our own fetch_sub of queued came before this lock; stop reads
         * queued under the same lock, so the lock orders the two. */
        if (sys->draining && atomic_load_explicit(&sys->queued, memory_order_relaxed) == 0)
            pthread_cond_signal(&sys->drain_cond);

        while (!sys->quit && (a = rq_take_locked(sys)) == NULL) {
            uint64_t now = shopd_now_us();
            /* relaxed: see maybe_sweep. */
            uint64_t due = atomic_load_explicit(&sys->next_sweep_us, memory_order_relaxed);
            if (now >= due) {
                pthread_mutex_unlock(&sys->rq_lock);
                maybe_sweep(sys, now);
                pthread_mutex_lock(&sys->rq_lock);
                continue;
            }
            struct timespec ts;
            abs_monotonic(&ts, due);
            sys->rq_waiting++;
            pthread_cond_timedwait(&sys->rq_cond, &sys->rq_lock, &ts);
            sys->rq_waiting--;
        }
        if (a == NULL)
            break; /* quit */
        w->running = true;
        w->group = sys->cfg.group_of ? sys->cfg.group_of(a->store_id) : 0;
        /* We may have taken one actor and re-queued another: if more are ready
         * and a worker sleeps, wake it rather than leave the work to us. */
        if (sys->rq_head != NULL && sys->rq_waiting > 0)
            pthread_cond_signal(&sys->rq_cond);
        pthread_mutex_unlock(&sys->rq_lock);

        requeue = run_turn(w, a);
        maybe_sweep(sys, shopd_now_us());

        pthread_mutex_lock(&sys->rq_lock);
        w->running = false;
    }
    pthread_mutex_unlock(&sys->rq_lock);

    if (sys->cfg.worker_fini != NULL)
        sys->cfg.worker_fini(w->state, sys->cfg.ud);
    return NULL;
}

/* ---- system ---- */

act_system_t *
act_system_new(const act_config_t *cfg)
{
    if (cfg == NULL || cfg->handler == NULL || cfg->workers < 1 || cfg->workers > ACT_MAX_WORKERS ||
        cfg->mailbox_cap < 1 || cfg->batch_max < 1 || cfg->batch_max > ACT_MAX_BATCH) {
        log_error("msg=\"actors: invalid config\"");
        return NULL;
    }

    act_system_t *sys = shopd_calloc(1, sizeof(*sys));
    sys->cfg = *cfg;
    for (size_t s = 0; s < ACT_SHARDS; s++) {
        pthread_mutex_init(&sys->shards[s].lock, NULL);
        sys->shards[s].nbuckets = ACT_SHARD_BUCKETS0;
        sys->shards[s].buckets = shopd_calloc(ACT_SHARD_BUCKETS0, sizeof(act_actor_t *));
    }

    /* The workers' timed waits use absolute CLOCK_MONOTONIC deadlines, immune
     * to wall-clock jumps. */
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&sys->rq_lock, NULL);
    pthread_cond_init(&sys->rq_cond, &ca);
    pthread_cond_init(&sys->drain_cond, &ca);
    pthread_condattr_destroy(&ca);

    sys->idle_us = (uint64_t)cfg->idle_reclaim_ms * 1000u;
    sys->sweep_every_us = sys->idle_us / 2;
    if (sys->sweep_every_us < ACT_SWEEP_MIN_US)
        sys->sweep_every_us = ACT_SWEEP_MIN_US;
    if (sys->sweep_every_us > ACT_SWEEP_MAX_US)
        sys->sweep_every_us = ACT_SWEEP_MAX_US;
    atomic_init(&sys->next_sweep_us, shopd_now_us() + sys->sweep_every_us);
    atomic_init(&sys->stopping, false);
    atomic_init(&sys->queued, 0);
    atomic_init(&sys->rejected, 0);
    atomic_init(&sys->reclaimed, 0);

    sys->workers = shopd_calloc((size_t)cfg->workers, sizeof(*sys->workers));
    for (int i = 0; i < cfg->workers; i++) {
        act_worker_t *w = shopd_calloc(1, sizeof(*w));
        w->sys = sys;
        w->index = i;
        w->batch = shopd_calloc(cfg->batch_max, sizeof(*w->batch));
        sys->workers[i] = w;
    }
    return sys;
}

/* Tells the workers to exit after their current turn and joins them. */
static void
quit_and_join(act_system_t *sys)
{
    pthread_mutex_lock(&sys->rq_lock);
    sys->quit = true;
    pthread_cond_broadcast(&sys->rq_cond);
    pthread_mutex_unlock(&sys->rq_lock);
    for (int i = 0; i < sys->cfg.workers; i++) {
        act_worker_t *w = sys->workers[i];
        if (w->started)
            pthread_join(w->thread, NULL);
        w->started = false;
    }
}

int
act_system_start(act_system_t *sys)
{
    if (sys == NULL || sys->started || sys->stopped || sys->quit)
        return -1;
    for (int i = 0; i < sys->cfg.workers; i++) {
        act_worker_t *w = sys->workers[i];
        int err = pthread_create(&w->thread, NULL, worker_main, w);
        if (err != 0) {
            log_error("msg=\"actors: cannot start worker\" index=%d err=\"%s\"", i, strerror(err));
            quit_and_join(sys); /* leaves quit set: this runtime cannot start again */
            return -1;
        }
        w->started = true;
    }
    sys->started = true;
    return 0;
}

shopd_rc_t
act_send(act_system_t *sys, act_msg_t *m)
{
    if (sys == NULL || m == NULL)
        return SHOPD_INVALID;
    shopd_rc_t rc = SHOPD_OK;
    uint64_t h = hash_id(m->store_id);
    act_shard_t *sh = shard_of(sys, h);

    m->enqueued_us = shopd_now_us();
    pthread_mutex_lock(&sh->lock);
    /* relaxed: stop sets the flag and then takes every shard lock once, so a
     * send that takes this lock after that barrier sees it through the lock. */
    if (atomic_load_explicit(&sys->stopping, memory_order_relaxed)) {
        rc = SHOPD_UNAVAILABLE;
        goto out;
    }
    act_actor_t *a = shard_find(sh, m->store_id, h);
    if (a == NULL)
        a = shard_add(sh, m->store_id, h);

    /* Reserve a slot first, give it back if that overfilled the mailbox.
     * relaxed: a bound, not a publication; the worker's decrement only ever
     * makes room, so a stale read errs towards BUSY for an instant. */
    size_t depth = atomic_fetch_add_explicit(&a->depth, 1, memory_order_relaxed);
    if (depth >= sys->cfg.mailbox_cap) {
        atomic_fetch_sub_explicit(&a->depth, 1, memory_order_relaxed);
        /* relaxed: a statistic. */
        atomic_fetch_add_explicit(&sys->rejected, 1, memory_order_relaxed);
        rc = SHOPD_BUSY;
        goto out;
    }
    /* relaxed: a counter; stop reads it under rq_lock after its shard barrier. */
    atomic_fetch_add_explicit(&sys->queued, 1, memory_order_relaxed);

    /* Pushing under the shard lock is what makes idle reclaim safe (see
     * sweep_idle). Scheduling under it too means that once stop's barrier has
     * passed, no sender is still on its way to the run queue. */
    if (act_mailbox_push(&a->mb, m)) {
        pthread_mutex_lock(&sys->rq_lock);
        rq_append_locked(sys, a);
        if (sys->rq_waiting > 0)
            pthread_cond_signal(&sys->rq_cond);
        pthread_mutex_unlock(&sys->rq_lock);
    }
out:
    pthread_mutex_unlock(&sh->lock);
    return rc;
}

/* Frees what is left in every mailbox; no worker may be running. Returns the count. */
static size_t
drop_queued(act_system_t *sys)
{
    size_t dropped = 0;
    for (size_t s = 0; s < ACT_SHARDS; s++) {
        act_shard_t *sh = &sys->shards[s];
        pthread_mutex_lock(&sh->lock);
        for (size_t b = 0; b < sh->nbuckets; b++) {
            for (act_actor_t *a = sh->buckets[b]; a != NULL; a = a->hnext) {
                /* With no workers left (joined) we are the only consumer. No
                 * push is in flight, so pop only returns NULL when empty. */
                size_t n = 0;
                act_msg_t *m;
                while ((m = act_mailbox_pop(&a->mb)) != NULL) {
                    if (m->on_drop)
                        m->on_drop(m);
                    act_msg_free(m);
                    n++;
                }
                /* relaxed: single-threaded now; keeps stats consistent. */
                atomic_fetch_sub_explicit(&a->depth, n, memory_order_relaxed);
                atomic_fetch_sub_explicit(&sys->queued, n, memory_order_relaxed);
                dropped += n;
            }
        }
        pthread_mutex_unlock(&sh->lock);
    }
    /* The run queue's actors stay in the registry; act_system_free frees them. */
    pthread_mutex_lock(&sys->rq_lock);
    sys->rq_head = sys->rq_tail = NULL;
    pthread_mutex_unlock(&sys->rq_lock);
    return dropped;
}

size_t
act_system_stop(act_system_t *sys, unsigned deadline_ms)
{
    if (sys == NULL || sys->stopped)
        return 0;
    sys->stopped = true;
    uint64_t deadline = shopd_now_us() + (uint64_t)deadline_ms * 1000u;

    /* relaxed: made visible to senders by the shard-lock barrier just below. */
    atomic_store_explicit(&sys->stopping, true, memory_order_relaxed);
    /* Barrier: a sender that got its shard lock before us has finished its push
     * and scheduling; every later one sees `stopping`. So from here on nothing
     * is added and `queued` only goes down. */
    for (size_t s = 0; s < ACT_SHARDS; s++) {
        pthread_mutex_lock(&sys->shards[s].lock);
        pthread_mutex_unlock(&sys->shards[s].lock);
    }

    if (sys->started) {
        pthread_mutex_lock(&sys->rq_lock);
        sys->draining = true;
        /* relaxed: workers decrement queued before taking rq_lock and signal
         * under it, so this check cannot miss the last decrement. */
        while (atomic_load_explicit(&sys->queued, memory_order_relaxed) != 0) {
            if (shopd_now_us() >= deadline)
                break;
            struct timespec ts;
            abs_monotonic(&ts, deadline);
            pthread_cond_timedwait(&sys->drain_cond, &sys->rq_lock, &ts);
        }
        sys->draining = false;
        pthread_mutex_unlock(&sys->rq_lock);
        quit_and_join(sys);
    }

    size_t dropped = drop_queued(sys);
    if (dropped > 0)
        log_warn("msg=\"actors: stopped with messages queued\" dropped=%zu", dropped);
    return dropped;
}

void
act_system_free(act_system_t *sys)
{
    if (sys == NULL)
        return;
    /* Not stopped yet (or never started): stop now, dropping what is queued. */
    act_system_stop(sys, 0);

    for (size_t s = 0; s < ACT_SHARDS; s++) {
        act_shard_t *sh = &sys->shards[s];
        for (size_t b = 0; b < sh->nbuckets; b++) {
            act_actor_t *a = sh->buckets[b];
            while (a != NULL) {
                act_actor_t *next = a->hnext;
                shopd_free(a); /* mailboxes are empty: stop dropped the rest */
                a = next;
            }
        }
        shopd_free(sh->buckets);
        pthread_mutex_destroy(&sh->lock);
    }
    for (int i = 0; i < sys->cfg.workers; i++) {
        shopd_free(sys->workers[i]->batch);
        shopd_free(sys->workers[i]);
    }
    shopd_free(sys->workers);
    pthread_cond_destroy(&sys->drain_cond);
    pthread_cond_destroy(&sys->rq_cond);
    pthread_mutex_destroy(&sys->rq_lock);
    shopd_free(sys);
}

void
act_system_visit(act_system_t *sys, void (*fn)(void *ud, const act_actor_info_t *a), void *ud)
{
    if (sys == NULL)
        return;
    for (size_t s = 0; s < ACT_SHARDS; s++) {
        act_shard_t *sh = &sys->shards[s];
        pthread_mutex_lock(&sh->lock);
        for (size_t b = 0; b < sh->nbuckets; b++) {
            for (act_actor_t *a = sh->buckets[b]; a != NULL; a = a->hnext) {
                /* relaxed: approximate by contract; the shard lock keeps a alive. */
                act_actor_info_t i = {
                    .id = a->store_id,
                    .depth = atomic_load_explicit(&a->depth, memory_order_relaxed),
                    .idle_since_us = atomic_load_explicit(&a->idle_since_us, memory_order_relaxed),
                    .turns = atomic_load_explicit(&a->turns, memory_order_relaxed),
                    .processed = atomic_load_explicit(&a->processed, memory_order_relaxed),
                    .last_batch = atomic_load_explicit(&a->last_batch, memory_order_relaxed),
                };
                fn(ud, &i);
            }
        }
        pthread_mutex_unlock(&sh->lock);
    }
}

void
act_system_stats(act_system_t *sys, act_stats_t *out)
{
    memset(out, 0, sizeof(*out));
    if (sys == NULL)
        return;
    for (size_t s = 0; s < ACT_SHARDS; s++) {
        act_shard_t *sh = &sys->shards[s];
        pthread_mutex_lock(&sh->lock);
        out->actors += sh->count;
        for (size_t b = 0; b < sh->nbuckets; b++) {
            for (act_actor_t *a = sh->buckets[b]; a != NULL; a = a->hnext) {
                /* relaxed: approximate by contract. */
                size_t d = atomic_load_explicit(&a->depth, memory_order_relaxed);
                if (d > out->max_depth)
                    out->max_depth = d;
            }
        }
        pthread_mutex_unlock(&sh->lock);
    }
    /* relaxed throughout: statistics, approximate by contract. */
    out->queued = atomic_load_explicit(&sys->queued, memory_order_relaxed);
    out->rejected = atomic_load_explicit(&sys->rejected, memory_order_relaxed);
    out->reclaimed = atomic_load_explicit(&sys->reclaimed, memory_order_relaxed);
    for (int i = 0; i < sys->cfg.workers; i++) {
        act_worker_t *w = sys->workers[i];
        out->processed += atomic_load_explicit(&w->processed, memory_order_relaxed);
        out->turns += atomic_load_explicit(&w->turns, memory_order_relaxed);
        out->busy_workers += (uint64_t)atomic_load_explicit(&w->busy, memory_order_relaxed);
    }
    out->workers = sys->cfg.workers;
}

void *
act_worker_state(act_worker_t *w)
{
    return w->state;
}

int
act_worker_index(act_worker_t *w)
{
    return w->index;
}

act_system_t *
act_worker_system(act_worker_t *w)
{
    return w->sys;
}
