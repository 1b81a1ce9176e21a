/*
 * test_actors.c: unit tests of the actor runtime (src/actors/actor.c): per-store
 * order and mutual exclusion under many producers (also with idle reclaim
 * racing the sends), batching, mailbox_cap back-pressure, forwarding from a
 * handler, clean shutdown (drain, deadline, never started) and idle reclaim.
 *
 * Handlers run on worker threads, where a cmocka assert cannot unwind, so they
 * count failures in atomics that the test thread checks.
 */
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <pthread.h>

#include "shopd/actors.h"
#include "shopd/common.h"

#define WAIT_US (30u * 1000000u) /* generous: TSan and valgrind are slow */

/* ---- helpers ---- */

typedef struct payload_s {
    uint32_t producer;
    uint64_t seq;
} payload_t;

static act_msg_t *
msg_make(uint64_t store, uint32_t producer, uint64_t seq)
{
    payload_t *p = shopd_malloc(sizeof(*p));
    p->producer = producer;
    p->seq = seq;
    return act_msg_new(1, store, (char *)p, sizeof(*p));
}

static uint64_t
stat_processed(act_system_t *sys)
{
    act_stats_t st;
    act_system_stats(sys, &st);
    return st.processed;
}

/* Polls until the runtime has handled `want` messages; false on timeout. */
static bool
wait_processed(act_system_t *sys, uint64_t want)
{
    uint64_t until = shopd_now_us() + WAIT_US;
    while (stat_processed(sys) < want) {
        if (shopd_now_us() > until)
            return false;
        usleep(1000);
    }
    return true;
}

/* A gate the handler can block on while the test piles messages up. */
typedef struct gate_s {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool open;
    _Atomic int entered;
} gate_t;

static void
gate_init(gate_t *g)
{
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv, NULL);
    g->open = false;
    atomic_init(&g->entered, 0);
}

static void
gate_wait(gate_t *g)
{
    atomic_fetch_add(&g->entered, 1);
    pthread_mutex_lock(&g->mu);
    while (!g->open)
        pthread_cond_wait(&g->cv, &g->mu);
    pthread_mutex_unlock(&g->mu);
}

static void
gate_open(gate_t *g)
{
    pthread_mutex_lock(&g->mu);
    g->open = true;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

static void
gate_destroy(gate_t *g)
{
    pthread_cond_destroy(&g->cv);
    pthread_mutex_destroy(&g->mu);
}

static bool
wait_entered(gate_t *g, int n)
{
    uint64_t until = shopd_now_us() + WAIT_US;
    while (atomic_load(&g->entered) < n) {
        if (shopd_now_us() > until)
            return false;
        usleep(500);
    }
    return true;
}

/* ---- (1) per-store order and exclusion ---- */

#define ORD_PRODUCERS 8
#define ORD_PER_PRODUCER 20000u
#define ORD_STORES 100
#define ORD_WORKERS 4
#define ORD_BATCH 16

typedef struct order_ctx_s {
    _Atomic int running[ORD_STORES];
    /* Last seq + 1 per (store, producer). Touched only by the store's actor,
     * so only the runtime's own ordering makes this race-free (TSan checks). */
    uint64_t next_min[ORD_STORES][ORD_PRODUCERS];
    _Atomic uint64_t received;
    _Atomic int overlap;
    _Atomic int order_errors;
    _Atomic int batch_errors;
    _Atomic int state_errors;
    _Atomic int inits;
    _Atomic int finis;
    int wstate[ORD_WORKERS];
    act_system_t *sys;
    _Atomic int go;
} order_ctx_t;

static void *
order_worker_init(int index, void *ud)
{
    order_ctx_t *c = ud;
    atomic_fetch_add(&c->inits, 1);
    return &c->wstate[index];
}

static void
order_worker_fini(void *wstate, void *ud)
{
    order_ctx_t *c = ud;
    if (wstate != NULL)
        atomic_fetch_add(&c->finis, 1);
}

static void
order_handler(act_worker_t *w, uint64_t store, act_msg_t **msgs, size_t n, void *ud)
{
    order_ctx_t *c = ud;
    int idx = act_worker_index(w);
    if (idx < 0 || idx >= ORD_WORKERS || act_worker_state(w) != &c->wstate[idx] ||
        act_worker_system(w) != c->sys)
        atomic_fetch_add(&c->state_errors, 1);
    if (n < 1 || n > ORD_BATCH || store >= ORD_STORES) {
        atomic_fetch_add(&c->batch_errors, 1);
        for (size_t i = 0; i < n; i++)
            act_msg_free(msgs[i]);
        return;
    }
    if (atomic_exchange(&c->running[store], 1) != 0)
        atomic_fetch_add(&c->overlap, 1);
    for (size_t i = 0; i < n; i++) {
        act_msg_t *m = msgs[i];
        payload_t p;
        memcpy(&p, m->data, sizeof(p));
        if (m->store_id != store || p.producer >= ORD_PRODUCERS ||
            p.seq < c->next_min[store][p.producer])
            atomic_fetch_add(&c->order_errors, 1);
        else
            c->next_min[store][p.producer] = p.seq + 1;
        act_msg_free(m);
    }
    atomic_fetch_add(&c->received, n);
    atomic_store(&c->running[store], 0);
}

typedef struct order_prod_s {
    order_ctx_t *c;
    uint32_t id;
    uint64_t busy;
} order_prod_t;

static void *
order_producer(void *arg)
{
    order_prod_t *pa = arg;
    while (!atomic_load(&pa->c->go))
        sched_yield();
    for (uint64_t seq = 0; seq < ORD_PER_PRODUCER; seq++) {
        uint64_t store = (pa->id * 7u + seq * 13u) % ORD_STORES;
        act_msg_t *m = msg_make(store, pa->id, seq);
        shopd_rc_t rc;
        while ((rc = act_send(pa->c->sys, m)) == SHOPD_BUSY) {
            pa->busy++; /* still ours: retry, order is kept as we do not skip */
            sched_yield();
        }
        if (rc != SHOPD_OK)
            act_msg_free(m);
    }
    return NULL;
}

static void
run_ordering(unsigned idle_reclaim_ms)
{
    order_ctx_t *c = shopd_calloc(1, sizeof(*c));
    act_config_t cfg = {
        .workers = ORD_WORKERS,
        .mailbox_cap = 256,
        .batch_max = ORD_BATCH,
        .idle_reclaim_ms = idle_reclaim_ms,
        .handler = order_handler,
        .worker_init = order_worker_init,
        .worker_fini = order_worker_fini,
        .ud = c,
    };
    c->sys = act_system_new(&cfg);
    assert_non_null(c->sys);
    assert_int_equal(act_system_start(c->sys), 0);

    pthread_t th[ORD_PRODUCERS];
    order_prod_t pa[ORD_PRODUCERS];
    for (uint32_t p = 0; p < ORD_PRODUCERS; p++) {
        pa[p] = (order_prod_t){.c = c, .id = p};
        assert_int_equal(pthread_create(&th[p], NULL, order_producer, &pa[p]), 0);
    }
    atomic_store(&c->go, 1);
    for (int p = 0; p < ORD_PRODUCERS; p++)
        pthread_join(th[p], NULL);

    const uint64_t total = (uint64_t)ORD_PRODUCERS * ORD_PER_PRODUCER;
    assert_true(wait_processed(c->sys, total));
    act_stats_t st;
    act_system_stats(c->sys, &st);
    assert_int_equal(act_system_stop(c->sys, 5000), 0);

    assert_int_equal(atomic_load(&c->received), total);
    assert_int_equal(st.processed, total);
    assert_true(st.turns >= total / ORD_BATCH && st.turns <= total);
    assert_int_equal(st.queued, 0);
    assert_int_equal(st.workers, ORD_WORKERS);
    assert_int_equal(atomic_load(&c->overlap), 0);
    assert_int_equal(atomic_load(&c->order_errors), 0);
    assert_int_equal(atomic_load(&c->batch_errors), 0);
    assert_int_equal(atomic_load(&c->state_errors), 0);
    assert_int_equal(atomic_load(&c->inits), ORD_WORKERS);
    assert_int_equal(atomic_load(&c->finis), ORD_WORKERS);
    /* Each producer's last message to each store was the last one handled. */
    for (uint32_t p = 0; p < ORD_PRODUCERS; p++) {
        uint64_t last[ORD_STORES] = {0};
        for (uint64_t seq = 0; seq < ORD_PER_PRODUCER; seq++)
            last[(p * 7u + seq * 13u) % ORD_STORES] = seq + 1;
        for (int s = 0; s < ORD_STORES; s++)
            assert_int_equal(c->next_min[s][p], last[s]);
    }
    act_system_free(c->sys);
    shopd_free(c);
}

static void
test_ordering_per_store(void **state)
{
    (void)state;
    run_ordering(60000);
}

/* Same, with actors reclaimed as soon as they idle, so lookups and pushes race
 * the sweeper all the time. */
static void
test_ordering_with_reclaim(void **state)
{
    (void)state;
    run_ordering(0);
}

/* ---- (2) batches ---- */

#define BATCH_MAX 8
#define BATCH_MSGS 100

typedef struct batch_ctx_s {
    gate_t gate;
    _Atomic int calls;
    _Atomic size_t max_n;
    _Atomic int multi;
    _Atomic int too_big;
    _Atomic uint64_t received;
    _Atomic int order_errors;
    uint64_t next_seq; /* actor-serialised */
} batch_ctx_t;

static void
batch_handler(act_worker_t *w, uint64_t store, act_msg_t **msgs, size_t n, void *ud)
{
    batch_ctx_t *c = ud;
    (void)w;
    (void)store;
    if (atomic_fetch_add(&c->calls, 1) == 0)
        gate_wait(&c->gate);
    if (n > BATCH_MAX)
        atomic_fetch_add(&c->too_big, 1);
    if (n > 1)
        atomic_fetch_add(&c->multi, 1);
    size_t cur = atomic_load(&c->max_n);
    while (n > cur && !atomic_compare_exchange_weak(&c->max_n, &cur, n)) {
    }
    for (size_t i = 0; i < n; i++) {
        payload_t p;
        memcpy(&p, msgs[i]->data, sizeof(p));
        if (p.seq != c->next_seq)
            atomic_fetch_add(&c->order_errors, 1);
        c->next_seq = p.seq + 1;
        act_msg_free(msgs[i]);
    }
    atomic_fetch_add(&c->received, n);
}

static void
test_batches(void **state)
{
    (void)state;
    batch_ctx_t c;
    memset(&c, 0, sizeof(c));
    gate_init(&c.gate);
    act_config_t cfg = {
        .workers = 2,
        .mailbox_cap = 1000,
        .batch_max = BATCH_MAX,
        .idle_reclaim_ms = 60000,
        .handler = batch_handler,
        .ud = &c,
    };
    act_system_t *sys = act_system_new(&cfg);
    assert_non_null(sys);
    assert_int_equal(act_system_start(sys), 0);

    /* First message: the handler blocks on it, so the rest pile up. */
    assert_int_equal(act_send(sys, msg_make(42, 0, 0)), SHOPD_OK);
    assert_true(wait_entered(&c.gate, 1));
    for (uint64_t i = 1; i < BATCH_MSGS; i++)
        assert_int_equal(act_send(sys, msg_make(42, 0, i)), SHOPD_OK);
    act_stats_t st;
    act_system_stats(sys, &st);
    assert_int_equal(st.queued, BATCH_MSGS - 1);
    assert_int_equal(st.max_depth, BATCH_MSGS - 1);
    assert_int_equal(st.busy_workers, 1);
    assert_int_equal(st.actors, 1);
    gate_open(&c.gate);

    assert_true(wait_processed(sys, BATCH_MSGS));
    assert_int_equal(act_system_stop(sys, 5000), 0);
    assert_int_equal(atomic_load(&c.received), BATCH_MSGS);
    assert_int_equal(atomic_load(&c.too_big), 0);
    assert_int_equal(atomic_load(&c.order_errors), 0);
    assert_true(atomic_load(&c.multi) > 0);
    assert_int_equal(atomic_load(&c.max_n), BATCH_MAX);
    /* 1 lone first turn, then 99 queued messages in full batches of 8 (+3). */
    assert_int_equal(atomic_load(&c.calls), 1 + (BATCH_MSGS - 1 + BATCH_MAX - 1) / BATCH_MAX);
    act_system_free(sys);
    gate_destroy(&c.gate);
}

/* ---- (3) mailbox_cap ---- */

typedef struct cap_ctx_s {
    gate_t gate;
    _Atomic uint64_t received;
} cap_ctx_t;

static void
cap_handler(act_worker_t *w, uint64_t store, act_msg_t **msgs, size_t n, void *ud)
{
    cap_ctx_t *c = ud;
    (void)w;
    (void)store;
    gate_wait(&c->gate);
    for (size_t i = 0; i < n; i++)
        act_msg_free(msgs[i]);
    atomic_fetch_add(&c->received, n);
}

/* act_batch_fn: actor 42 (a "read lane") takes at most 3 per turn, every other
 * actor the runtime's batch_max. */
static size_t
lane_batch(uint64_t id, void *ud)
{
    (void)ud;
    return id == ACT_ID(42, 1) ? 3 : 1000000;
}

static void
test_batch_per_actor(void **state)
{
    (void)state;
    for (int round = 0; round < 2; round++) {
        uint64_t id = round == 0 ? ACT_ID(42, 1) : ACT_ID(42, 0);
        size_t want = round == 0 ? 3 : BATCH_MAX; /* clamped to batch_max */
        batch_ctx_t c;
        memset(&c, 0, sizeof(c));
        gate_init(&c.gate);
        act_config_t cfg = {
            .workers = 2,
            .mailbox_cap = 1000,
            .batch_max = BATCH_MAX,
            .idle_reclaim_ms = 60000,
            .handler = batch_handler,
            .batch_for = lane_batch,
            .ud = &c,
        };
        act_system_t *sys = act_system_new(&cfg);
        assert_int_equal(act_system_start(sys), 0);
        assert_int_equal(act_send(sys, msg_make(id, 0, 0)), SHOPD_OK);
        assert_true(wait_entered(&c.gate, 1));
        for (uint64_t i = 1; i < BATCH_MSGS; i++)
            assert_int_equal(act_send(sys, msg_make(id, 0, i)), SHOPD_OK);
        gate_open(&c.gate);
        assert_true(wait_processed(sys, BATCH_MSGS));
        assert_int_equal(act_system_stop(sys, 5000), 0);
        assert_int_equal(atomic_load(&c.received), BATCH_MSGS);
        assert_int_equal(atomic_load(&c.order_errors), 0);
        assert_int_equal(atomic_load(&c.max_n), want);
        assert_int_equal(atomic_load(&c.calls), 1 + (BATCH_MSGS - 1 + want - 1) / want);
        act_system_free(sys);
    }
    /* Lanes of one store are distinct actors with the store in the low bits. */
    assert_true(ACT_ID(42, 1) != ACT_ID(42, 0));
    assert_int_equal(ACT_STORE_OF(ACT_ID(42, 7)), 42);
    assert_int_equal(ACT_LANE_OF(ACT_ID(42, 7)), 7);
    assert_int_equal(ACT_ID(42, 0), 42);
}

/* act_more_fn: a read lane held to 1 message per turn by batch_for still takes
 * the messages of its first one's type queued right behind it, up to 4, and
 * stops at the first of another type. */
typedef struct more_ctx_s {
    gate_t gate;
    _Atomic int calls;
    _Atomic uint32_t sizes[16], types[16]; /* per turn: messages, type of the first */
    _Atomic int mixed;                     /* turns holding two types */
} more_ctx_t;

static void
more_handler(act_worker_t *w, uint64_t id, act_msg_t **msgs, size_t n, void *ud)
{
    more_ctx_t *c = ud;
    (void)w;
    (void)id;
    int k = atomic_fetch_add(&c->calls, 1);
    if (k == 0)
        gate_wait(&c->gate);
    if (k < 16) {
        atomic_store(&c->sizes[k], (uint32_t)n);
        atomic_store(&c->types[k], msgs[0]->type);
    }
    uint32_t first = msgs[0]->type;
    for (size_t i = 0; i < n; i++) {
        if (msgs[i]->type != first)
            atomic_fetch_add(&c->mixed, 1);
        act_msg_free(msgs[i]);
    }
}

static size_t
one_per_turn(uint64_t id, void *ud)
{
    (void)id;
    (void)ud;
    return 1;
}

static bool
more_same_type(uint64_t id, const act_msg_t *first, const act_msg_t *next, size_t n, void *ud)
{
    (void)id;
    (void)ud;
    return next->type == first->type && n < 4;
}

static void
test_more(void **state)
{
    (void)state;
    more_ctx_t c;
    memset(&c, 0, sizeof(c));
    gate_init(&c.gate);
    act_config_t cfg = {
        .workers = 1,
        .mailbox_cap = 1000,
        .batch_max = BATCH_MAX,
        .idle_reclaim_ms = 60000,
        .handler = more_handler,
        .batch_for = one_per_turn,
        .more = more_same_type,
        .ud = &c,
    };
    act_system_t *sys = act_system_new(&cfg);
    assert_int_equal(act_system_start(sys), 0);
    uint64_t id = ACT_ID(42, 1);
    assert_int_equal(act_send(sys, act_msg_new(1, id, NULL, 0)), SHOPD_OK);
    assert_true(wait_entered(&c.gate, 1));
    /* Queued behind the gate: six of type 1, two of type 2, one of type 1. */
    static const uint32_t types[] = {1, 1, 1, 1, 1, 1, 2, 2, 1};
    for (size_t i = 0; i < SHOPD_ARRAY_LEN(types); i++)
        assert_int_equal(act_send(sys, act_msg_new(types[i], id, NULL, 0)), SHOPD_OK);
    gate_open(&c.gate);
    assert_true(wait_processed(sys, 1 + SHOPD_ARRAY_LEN(types)));
    assert_int_equal(act_system_stop(sys, 5000), 0);
    static const uint32_t want_sizes[] = {1, 4, 2, 2, 1}, want_types[] = {1, 1, 1, 2, 1};
    assert_int_equal(atomic_load(&c.calls), 5);
    for (int k = 0; k < 5; k++) {
        assert_int_equal(atomic_load(&c.sizes[k]), want_sizes[k]);
        assert_int_equal(atomic_load(&c.types[k]), want_types[k]);
    }
    assert_int_equal(atomic_load(&c.mixed), 0);
    act_system_free(sys);
    gate_destroy(&c.gate);
}

/* group_cap: with store 42 already on one of two workers, the free worker takes
 * store 7's actor before store 42's second lane, although that lane was queued
 * first; and alone, one store still gets both workers (work-conserving). */
typedef struct fair_ctx_s {
    gate_t gate_a1, gate_c1;
    _Atomic int n;
    _Atomic uint64_t order[8]; /* actor ids in the order their turns began */
} fair_ctx_t;

static void
fair_handler(act_worker_t *w, uint64_t id, act_msg_t **msgs, size_t n, void *ud)
{
    fair_ctx_t *c = ud;
    (void)w;
    int k = atomic_fetch_add(&c->n, 1);
    if (k < 8)
        atomic_store(&c->order[k], id);
    if (id == ACT_ID(42, 1))
        gate_wait(&c->gate_a1);
    if (id == ACT_ID(9, 1))
        gate_wait(&c->gate_c1);
    for (size_t i = 0; i < n; i++)
        act_msg_free(msgs[i]);
}

static uint64_t
store_of(uint64_t id)
{
    return ACT_STORE_OF(id);
}

static void
test_group_cap(void **state)
{
    (void)state;
    fair_ctx_t c;
    memset(&c, 0, sizeof(c));
    gate_init(&c.gate_a1);
    gate_init(&c.gate_c1);
    act_config_t cfg = {
        .workers = 2,
        .mailbox_cap = 100,
        .batch_max = 1,
        .idle_reclaim_ms = 60000,
        .handler = fair_handler,
        .group_of = store_of,
        .group_cap = 1,
        .ud = &c,
    };
    act_system_t *sys = act_system_new(&cfg);
    assert_int_equal(act_system_start(sys), 0);
    /* Both workers held: store 42's lane 1 and store 9's lane 1. */
    assert_int_equal(act_send(sys, msg_make(ACT_ID(42, 1), 0, 0)), SHOPD_OK);
    assert_true(wait_entered(&c.gate_a1, 1));
    assert_int_equal(act_send(sys, msg_make(ACT_ID(9, 1), 0, 0)), SHOPD_OK);
    assert_true(wait_entered(&c.gate_c1, 1));
    /* Queued in this order: store 42's lane 2, then store 7. */
    assert_int_equal(act_send(sys, msg_make(ACT_ID(42, 2), 0, 0)), SHOPD_OK);
    assert_int_equal(act_send(sys, msg_make(ACT_ID(7, 1), 0, 0)), SHOPD_OK);
    gate_open(&c.gate_c1); /* one worker comes free while 42 still runs */
    assert_true(wait_processed(sys, 3));
    assert_true(atomic_load(&c.order[2]) == ACT_ID(7, 1)); /* store 7 first: 42 is at its cap */
    gate_open(&c.gate_a1);
    assert_true(wait_processed(sys, 4));
    assert_true(atomic_load(&c.order[3]) == ACT_ID(42, 2));

    /* Alone, store 42 gets both workers: lane 1 holds one, lane 2 runs on the other. */
    gate_t *g = &c.gate_a1;
    pthread_mutex_lock(&g->mu);
    g->open = false;
    pthread_mutex_unlock(&g->mu);
    atomic_store(&g->entered, 0);
    assert_int_equal(act_send(sys, msg_make(ACT_ID(42, 1), 0, 1)), SHOPD_OK);
    assert_true(wait_entered(g, 1));
    assert_int_equal(act_send(sys, msg_make(ACT_ID(42, 2), 0, 1)), SHOPD_OK);
    assert_true(wait_processed(sys, 5)); /* ran while lane 1 is still held */
    gate_open(g);
    assert_true(wait_processed(sys, 6));
    assert_int_equal(act_system_stop(sys, 5000), 0);
    act_system_free(sys);
    gate_destroy(&c.gate_a1);
    gate_destroy(&c.gate_c1);
}

static void
test_mailbox_cap(void **state)
{
    (void)state;
    cap_ctx_t c;
    memset(&c, 0, sizeof(c));
    gate_init(&c.gate);
    act_config_t cfg = {
        .workers = 1,
        .mailbox_cap = 4,
        .batch_max = 2,
        .idle_reclaim_ms = 60000,
        .handler = cap_handler,
        .ud = &c,
    };
    act_system_t *sys = act_system_new(&cfg);
    assert_non_null(sys);
    assert_int_equal(act_system_start(sys), 0);

    /* The single worker takes the first message and blocks in the handler. */
    assert_int_equal(act_send(sys, msg_make(7, 0, 0)), SHOPD_OK);
    assert_true(wait_entered(&c.gate, 1));

    for (uint64_t i = 1; i <= 4; i++)
        assert_int_equal(act_send(sys, msg_make(7, 0, i)), SHOPD_OK);
    act_msg_t *extra = msg_make(7, 0, 5);
    assert_int_equal(act_send(sys, extra), SHOPD_BUSY);
    assert_int_equal(act_send(sys, extra), SHOPD_BUSY);
    /* The cap is per actor: another store still accepts. */
    assert_int_equal(act_send(sys, msg_make(8, 0, 0)), SHOPD_OK);

    act_stats_t st;
    act_system_stats(sys, &st);
    assert_int_equal(st.rejected, 2);
    assert_int_equal(st.max_depth, 4);
    assert_int_equal(st.queued, 5);
    assert_int_equal(st.actors, 2);
    assert_int_equal(st.busy_workers, 1);

    gate_open(&c.gate);
    assert_true(wait_processed(sys, 6));
    /* Room again once the worker has taken the batch. */
    assert_int_equal(act_send(sys, extra), SHOPD_OK);
    assert_true(wait_processed(sys, 7));
    assert_int_equal(act_system_stop(sys, 5000), 0);
    assert_int_equal(atomic_load(&c.received), 7);
    act_system_free(sys);
    gate_destroy(&c.gate);
}

/* ---- forwarding from a handler ---- */

#define FWD_MSGS 2000u

typedef struct fwd_ctx_s {
    _Atomic uint64_t at_dest;
    _Atomic int errors;
    uint64_t next_seq; /* store 2's actor only */
} fwd_ctx_t;

static void
fwd_handler(act_worker_t *w, uint64_t store, act_msg_t **msgs, size_t n, void *ud)
{
    fwd_ctx_t *c = ud;
    for (size_t i = 0; i < n; i++) {
        act_msg_t *m = msgs[i];
        if (store == 1) {
            /* Forward to store 2, reusing the message: ownership moves on. */
            m->store_id = 2;
            shopd_rc_t rc;
            while ((rc = act_send(act_worker_system(w), m)) == SHOPD_BUSY)
                sched_yield();
            if (rc != SHOPD_OK) {
                atomic_fetch_add(&c->errors, 1);
                act_msg_free(m);
            }
        } else {
            payload_t p;
            memcpy(&p, m->data, sizeof(p));
            if (store != 2 || p.seq != c->next_seq)
                atomic_fetch_add(&c->errors, 1);
            c->next_seq = p.seq + 1;
            act_msg_free(m);
            atomic_fetch_add(&c->at_dest, 1);
        }
    }
}

static void
test_forward_from_handler(void **state)
{
    (void)state;
    fwd_ctx_t c;
    memset(&c, 0, sizeof(c));
    act_config_t cfg = {
        .workers = 3,
        .mailbox_cap = 64,
        .batch_max = 4,
        .idle_reclaim_ms = 60000,
        .handler = fwd_handler,
        .ud = &c,
    };
    act_system_t *sys = act_system_new(&cfg);
    assert_non_null(sys);
    assert_int_equal(act_system_start(sys), 0);
    for (uint64_t i = 0; i < FWD_MSGS; i++) {
        act_msg_t *m = msg_make(1, 0, i);
        while (act_send(sys, m) == SHOPD_BUSY)
            sched_yield();
    }
    assert_true(wait_processed(sys, 2 * FWD_MSGS));
    assert_int_equal(act_system_stop(sys, 5000), 0);
    assert_int_equal(atomic_load(&c.at_dest), FWD_MSGS);
    assert_int_equal(atomic_load(&c.errors), 0);
    act_system_free(sys);
}

/* ---- (4) clean shutdown ---- */

typedef struct slow_ctx_s {
    unsigned sleep_us;
    _Atomic uint64_t received;
    _Atomic int inits;
    _Atomic int finis;
} slow_ctx_t;

static void *
slow_init(int index, void *ud)
{
    slow_ctx_t *c = ud;
    (void)index;
    atomic_fetch_add(&c->inits, 1);
    return NULL;
}

static void
slow_fini(void *wstate, void *ud)
{
    slow_ctx_t *c = ud;
    (void)wstate;
    atomic_fetch_add(&c->finis, 1);
}

static void
slow_handler(act_worker_t *w, uint64_t store, act_msg_t **msgs, size_t n, void *ud)
{
    slow_ctx_t *c = ud;
    (void)w;
    (void)store;
    usleep(c->sleep_us);
    for (size_t i = 0; i < n; i++)
        act_msg_free(msgs[i]);
    atomic_fetch_add(&c->received, n);
}

static void
test_stop_drains(void **state)
{
    (void)state;
    slow_ctx_t c = {.sleep_us = 200};
    act_config_t cfg = {
        .workers = 2,
        .mailbox_cap = 1000,
        .batch_max = 4,
        .idle_reclaim_ms = 60000,
        .handler = slow_handler,
        .worker_init = slow_init,
        .worker_fini = slow_fini,
        .ud = &c,
    };
    act_system_t *sys = act_system_new(&cfg);
    assert_non_null(sys);
    assert_int_equal(act_system_start(sys), 0);
    assert_int_equal(act_system_start(sys), -1); /* only once */
    for (uint64_t i = 0; i < 2000; i++)
        assert_int_equal(act_send(sys, msg_make(i % 20, 0, i)), SHOPD_OK);

    /* Plenty of messages still queued: stop must let the workers finish them. */
    assert_int_equal(act_system_stop(sys, 20000), 0);
    assert_int_equal(atomic_load(&c.received), 2000);
    assert_int_equal(atomic_load(&c.inits), 2);
    assert_int_equal(atomic_load(&c.finis), 2);

    act_msg_t *late = msg_make(3, 0, 0);
    assert_int_equal(act_send(sys, late), SHOPD_UNAVAILABLE);
    act_msg_free(late);                           /* refused: still ours */
    assert_int_equal(act_system_stop(sys, 0), 0); /* second stop: nothing to do */

    act_stats_t st;
    act_system_stats(sys, &st);
    assert_int_equal(st.processed, 2000);
    assert_int_equal(st.queued, 0);
    assert_int_equal(st.busy_workers, 0);
    act_system_free(sys);
}

static void
test_stop_deadline(void **state)
{
    (void)state;
    slow_ctx_t c = {.sleep_us = 20000};
    act_config_t cfg = {
        .workers = 1,
        .mailbox_cap = 1000,
        .batch_max = 1,
        .idle_reclaim_ms = 60000,
        .handler = slow_handler,
        .ud = &c,
    };
    act_system_t *sys = act_system_new(&cfg);
    assert_non_null(sys);
    assert_int_equal(act_system_start(sys), 0);
    for (uint64_t i = 0; i < 50; i++)
        assert_int_equal(act_send(sys, msg_make(5, 0, i)), SHOPD_OK);

    uint64_t t0 = shopd_now_us();
    size_t dropped = act_system_stop(sys, 100);
    uint64_t took = shopd_now_us() - t0;
    /* 50 x 20 ms cannot finish in 100 ms: the rest is freed (ASan checks). */
    assert_true(dropped > 0);
    assert_int_equal(dropped + atomic_load(&c.received), 50);
    assert_true(took < 5u * 1000000u);
    act_stats_t st;
    act_system_stats(sys, &st);
    assert_int_equal(st.queued, 0);
    act_system_free(sys);
}

static void
test_never_started(void **state)
{
    (void)state;
    slow_ctx_t c = {0};
    act_config_t cfg = {
        .workers = 2,
        .mailbox_cap = 10,
        .batch_max = 4,
        .idle_reclaim_ms = 1000,
        .handler = slow_handler,
        .ud = &c,
    };
    act_system_t *sys = act_system_new(&cfg);
    assert_non_null(sys);
    for (uint64_t i = 0; i < 5; i++)
        assert_int_equal(act_send(sys, msg_make(i % 2, 0, i)), SHOPD_OK);
    assert_int_equal(act_system_stop(sys, 1000), 5);
    assert_int_equal(act_system_start(sys), -1);
    act_system_free(sys);

    /* Freed without stop, with messages queued: nothing may leak. */
    sys = act_system_new(&cfg);
    assert_non_null(sys);
    for (uint64_t i = 0; i < 5; i++)
        assert_int_equal(act_send(sys, msg_make(9, 0, i)), SHOPD_OK);
    act_system_free(sys);
    act_system_free(NULL);
    act_msg_free(NULL);
}

static void
test_invalid_config(void **state)
{
    (void)state;
    slow_ctx_t c = {0};
    act_config_t ok = {
        .workers = 1, .mailbox_cap = 1, .batch_max = 1, .handler = slow_handler, .ud = &c};
    act_config_t bad = ok;
    bad.workers = 0;
    assert_null(act_system_new(&bad));
    bad = ok;
    bad.handler = NULL;
    assert_null(act_system_new(&bad));
    bad = ok;
    bad.mailbox_cap = 0;
    assert_null(act_system_new(&bad));
    bad = ok;
    bad.batch_max = 0;
    assert_null(act_system_new(&bad));
    assert_null(act_system_new(NULL));
    act_system_t *sys = act_system_new(&ok);
    assert_non_null(sys);
    act_system_free(sys);
}

/* ---- (5) idle reclaim ---- */

static void
test_idle_reclaim(void **state)
{
    (void)state;
    slow_ctx_t c = {0};
    act_config_t cfg = {
        .workers = 2,
        .mailbox_cap = 10,
        .batch_max = 4,
        .idle_reclaim_ms = 100,
        .handler = slow_handler,
        .ud = &c,
    };
    act_system_t *sys = act_system_new(&cfg);
    assert_non_null(sys);
    assert_int_equal(act_system_start(sys), 0);

    for (uint64_t s = 1; s <= 10; s++)
        assert_int_equal(act_send(sys, msg_make(s, 0, s)), SHOPD_OK);
    act_stats_t st;
    act_system_stats(sys, &st);
    assert_int_equal(st.actors, 10); /* created on first send */
    assert_true(wait_processed(sys, 10));

    uint64_t until = shopd_now_us() + WAIT_US;
    do {
        usleep(10000);
        act_system_stats(sys, &st);
    } while (st.actors > 0 && shopd_now_us() < until);
    assert_int_equal(st.actors, 0);
    assert_int_equal(st.reclaimed, 10);

    /* A later send recreates the actor. */
    assert_int_equal(act_send(sys, msg_make(3, 0, 99)), SHOPD_OK);
    act_system_stats(sys, &st);
    assert_int_equal(st.actors, 1);
    assert_true(wait_processed(sys, 11));
    assert_int_equal(act_system_stop(sys, 5000), 0);
    assert_int_equal(atomic_load(&c.received), 11);
    act_system_free(sys);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_invalid_config),
        cmocka_unit_test(test_ordering_per_store),
        cmocka_unit_test(test_ordering_with_reclaim),
        cmocka_unit_test(test_batches),
        cmocka_unit_test(test_batch_per_actor),
        cmocka_unit_test(test_more),
        cmocka_unit_test(test_group_cap),
        cmocka_unit_test(test_mailbox_cap),
        cmocka_unit_test(test_forward_from_handler),
        cmocka_unit_test(test_stop_drains),
        cmocka_unit_test(test_stop_deadline),
        cmocka_unit_test(test_never_started),
        cmocka_unit_test(test_idle_reclaim),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
