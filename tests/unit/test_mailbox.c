/*
 * test_mailbox.c: unit tests of the actor mailbox (src/actors/mailbox.c): FIFO
 * order, the was_empty / mark_empty token protocol, and many producers against
 * one consumer (every message exactly once, each producer's order kept), both
 * with a consumer that always owns the queue and with one that hands the token
 * back and forth the way the scheduler does.
 */
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <pthread.h>

#include "actors/mailbox.h"
#include "shopd/common.h"

#define PRODUCERS 8
#define PER_PRODUCER 100000u
#define STALL_US (60u * 1000000u) /* no progress for this long: fail, not hang */

static void
msgs_init(act_msg_t *m, size_t n, uint32_t type)
{
    memset(m, 0, n * sizeof(*m));
    for (size_t i = 0; i < n; i++) {
        m[i].type = type;
        m[i].store_id = i;
    }
}

static void
test_fifo_single_thread(void **state)
{
    (void)state;
    act_mailbox_t mb;
    act_msg_t m[64];
    msgs_init(m, 64, 0);
    act_mailbox_init(&mb);

    assert_null(act_mailbox_pop(&mb));
    for (size_t i = 0; i < 64; i++)
        act_mailbox_push(&mb, &m[i]);
    for (size_t i = 0; i < 64; i++)
        assert_ptr_equal(act_mailbox_pop(&mb), &m[i]);
    assert_null(act_mailbox_pop(&mb));

    /* Interleaved: the stub is re-inserted and stepped over many times. */
    size_t next_in = 0, next_out = 0;
    for (int round = 0; round < 200; round++) {
        size_t k = (size_t)(round % 5) + 1;
        for (size_t i = 0; i < k; i++)
            act_mailbox_push(&mb, &m[next_in++ % 64]);
        size_t take = (size_t)(round % 3) + 1;
        for (size_t i = 0; i < take && next_out < next_in; i++) {
            /* peek shows what pop returns next, and leaves it in place */
            assert_ptr_equal(act_mailbox_peek(&mb), &m[next_out % 64]);
            assert_ptr_equal(act_mailbox_peek(&mb), &m[next_out % 64]);
            assert_ptr_equal(act_mailbox_pop(&mb), &m[next_out++ % 64]);
        }
        if (next_in - next_out > 40) {
            while (next_out < next_in)
                assert_ptr_equal(act_mailbox_pop(&mb), &m[next_out++ % 64]);
        }
    }
    while (next_out < next_in)
        assert_ptr_equal(act_mailbox_pop(&mb), &m[next_out++ % 64]);
    assert_null(act_mailbox_peek(&mb));
    assert_null(act_mailbox_pop(&mb));
    assert_true(act_mailbox_mark_empty(&mb));
}

static void
test_was_empty(void **state)
{
    (void)state;
    act_mailbox_t mb;
    act_msg_t m[4];
    msgs_init(m, 4, 0);
    act_mailbox_init(&mb);

    /* A new mailbox has no owner: the first push must schedule. */
    assert_true(act_mailbox_is_marked_empty(&mb));
    assert_true(act_mailbox_push(&mb, &m[0]));
    assert_false(act_mailbox_is_marked_empty(&mb));
    assert_false(act_mailbox_push(&mb, &m[1]));

    /* Non-empty: marking must refuse, the owner keeps the token. */
    assert_false(act_mailbox_mark_empty(&mb));
    assert_ptr_equal(act_mailbox_pop(&mb), &m[0]);
    assert_false(act_mailbox_mark_empty(&mb));
    assert_ptr_equal(act_mailbox_pop(&mb), &m[1]);
    assert_null(act_mailbox_pop(&mb));

    /* Empty but not marked: the owner still holds the token, so a push must not
     * ask for another schedule (that would put the actor in two run queues). */
    assert_false(act_mailbox_push(&mb, &m[2]));
    assert_ptr_equal(act_mailbox_pop(&mb), &m[2]);
    assert_null(act_mailbox_pop(&mb));

    assert_true(act_mailbox_mark_empty(&mb));
    assert_true(act_mailbox_is_marked_empty(&mb));
    assert_null(act_mailbox_pop(&mb)); /* popping a marked mailbox is harmless */
    assert_true(act_mailbox_is_marked_empty(&mb));

    /* A popped message may be pushed again (a handler forwarding it). */
    assert_true(act_mailbox_push(&mb, &m[0]));
    assert_false(act_mailbox_push(&mb, &m[3]));
    assert_ptr_equal(act_mailbox_pop(&mb), &m[0]);
    assert_ptr_equal(act_mailbox_pop(&mb), &m[3]);
    assert_true(act_mailbox_mark_empty(&mb));
}

/* A producer frozen between its exchange of head and its link store: the two
 * halves of act_mailbox_push done by hand (white box: knows head's encoding). */
static uintptr_t
half_push(act_mailbox_t *mb, act_msg_t *m)
{
    atomic_store(&m->next, NULL);
    return atomic_exchange(&mb->head, (uintptr_t)m);
}

static void
finish_push(uintptr_t prev, act_msg_t *m)
{
    atomic_store(&((act_msg_t *)(prev & ~(uintptr_t)1))->next, m);
}

static void
test_push_gap(void **state)
{
    (void)state;
    act_mailbox_t mb;
    act_msg_t m[4];
    msgs_init(m, 4, 0);
    act_mailbox_init(&mb);

    /* Owned and empty, a push in flight: nothing to pop yet, and the owner
     * must not give the token up (the pusher saw was_empty == false). */
    assert_true(act_mailbox_push(&mb, &m[0]));
    assert_ptr_equal(act_mailbox_pop(&mb), &m[0]);
    uintptr_t prev = half_push(&mb, &m[1]);
    assert_int_equal(prev & 1, 0);
    assert_null(act_mailbox_pop(&mb));
    assert_false(act_mailbox_mark_empty(&mb));
    finish_push(prev, &m[1]);
    assert_ptr_equal(act_mailbox_pop(&mb), &m[1]);
    assert_null(act_mailbox_pop(&mb));
    assert_true(act_mailbox_mark_empty(&mb));

    /* One message linked, the next in flight behind it. The linked one cannot
     * be handed out yet (it is the last linked node and head has moved on), and
     * popping again during the gap must not insert the stub a second time. */
    assert_true(act_mailbox_push(&mb, &m[0]));
    prev = half_push(&mb, &m[1]);
    assert_ptr_equal((act_msg_t *)(prev & ~(uintptr_t)1), &m[0]);
    for (int i = 0; i < 3; i++)
        assert_null(act_mailbox_pop(&mb));
    assert_false(act_mailbox_mark_empty(&mb));
    finish_push(prev, &m[1]);
    assert_ptr_equal(act_mailbox_pop(&mb), &m[0]);
    assert_ptr_equal(act_mailbox_pop(&mb), &m[1]);
    assert_null(act_mailbox_pop(&mb));
    assert_true(act_mailbox_mark_empty(&mb));

    /* Two producers in flight on a marked mailbox: only the first gets the
     * token, whatever order they link in. */
    prev = half_push(&mb, &m[2]);
    assert_int_equal(prev & 1, 1);
    uintptr_t prev2 = half_push(&mb, &m[3]);
    assert_int_equal(prev2 & 1, 0);
    finish_push(prev2, &m[3]); /* the second links first */
    assert_null(act_mailbox_pop(&mb));
    assert_false(act_mailbox_mark_empty(&mb));
    finish_push(prev, &m[2]);
    assert_ptr_equal(act_mailbox_pop(&mb), &m[2]);
    assert_ptr_equal(act_mailbox_pop(&mb), &m[3]);
    assert_null(act_mailbox_pop(&mb));
    assert_true(act_mailbox_mark_empty(&mb));
}

/* ---- many producers, one consumer ---- */

typedef struct mpsc_s {
    act_mailbox_t mb;
    act_msg_t *msgs[PRODUCERS];
    /* Token protocol: 1 while someone owns the mailbox. */
    _Atomic int tokens;
    _Atomic int token_errors;
    _Atomic int go;
    bool use_tokens;
} mpsc_t;

typedef struct prod_arg_s {
    mpsc_t *q;
    int id;
} prod_arg_t;

static void *
producer(void *arg)
{
    prod_arg_t *pa = arg;
    mpsc_t *q = pa->q;
    while (!atomic_load(&q->go))
        sched_yield();
    for (uint32_t i = 0; i < PER_PRODUCER; i++) {
        bool was_empty = act_mailbox_push(&q->mb, &q->msgs[pa->id][i]);
        if (q->use_tokens && was_empty) {
            /* We made it non-empty: the token must have been free. */
            if (atomic_fetch_add(&q->tokens, 1) != 0)
                atomic_fetch_add(&q->token_errors, 1);
        }
        if ((i & 1023) == 0)
            sched_yield(); /* vary the interleaving */
    }
    return NULL;
}

static void
run_mpsc(bool use_tokens)
{
    mpsc_t *q = shopd_calloc(1, sizeof(*q));
    pthread_t th[PRODUCERS];
    prod_arg_t args[PRODUCERS];
    uint64_t next_seq[PRODUCERS] = {0};
    act_msg_t boot = {.type = PRODUCERS};
    uint64_t received = 0, order_errors = 0, foreign = 0;
    const uint64_t total = (uint64_t)PRODUCERS * PER_PRODUCER;

    act_mailbox_init(&q->mb);
    q->use_tokens = use_tokens;
    if (!use_tokens) {
        /* The consumer owns the queue throughout: take the token once. */
        assert_true(act_mailbox_push(&q->mb, &boot));
    }
    for (int p = 0; p < PRODUCERS; p++) {
        q->msgs[p] = shopd_malloc(PER_PRODUCER * sizeof(act_msg_t));
        msgs_init(q->msgs[p], PER_PRODUCER, (uint32_t)p);
        args[p] = (prod_arg_t){.q = q, .id = p};
        assert_int_equal(pthread_create(&th[p], NULL, producer, &args[p]), 0);
    }
    atomic_store(&q->go, 1);

    uint64_t last_progress = shopd_now_us();
    bool own = !use_tokens;
    while (received < total) {
        if (!own) {
            /* Idle: wait for a producer to hand us the token. */
            if (atomic_load(&q->tokens) == 0) {
                if (shopd_now_us() - last_progress > STALL_US)
                    break;
                sched_yield();
                continue;
            }
            own = true;
        }
        act_msg_t *m = act_mailbox_pop(&q->mb);
        if (m == NULL) {
            if (use_tokens) {
                /* Give the token back before marking, as the scheduler does
                 * (a producer may take it the instant the mark lands). */
                atomic_fetch_sub(&q->tokens, 1);
                if (act_mailbox_mark_empty(&q->mb)) {
                    own = false;
                } else {
                    atomic_fetch_add(&q->tokens, 1); /* still ours: more is coming */
                }
            }
            if (shopd_now_us() - last_progress > STALL_US)
                break;
            sched_yield();
            continue;
        }
        last_progress = shopd_now_us();
        if (m->type >= PRODUCERS) {
            foreign++; /* the bootstrap message */
            continue;
        }
        if (m->store_id != next_seq[m->type])
            order_errors++;
        next_seq[m->type] = m->store_id + 1;
        received++;
    }

    for (int p = 0; p < PRODUCERS; p++)
        pthread_join(th[p], NULL);
    assert_int_equal(received, total);
    assert_int_equal(order_errors, 0);
    assert_int_equal(foreign, use_tokens ? 0 : 1);
    for (int p = 0; p < PRODUCERS; p++)
        assert_int_equal(next_seq[p], PER_PRODUCER);
    assert_null(act_mailbox_pop(&q->mb));
    assert_int_equal(atomic_load(&q->token_errors), 0);
    if (use_tokens) {
        if (own) {
            assert_true(act_mailbox_mark_empty(&q->mb));
        }
    }
    for (int p = 0; p < PRODUCERS; p++)
        shopd_free(q->msgs[p]);
    shopd_free(q);
}

static void
test_mpsc_owner_consumer(void **state)
{
    (void)state;
    run_mpsc(false);
}

static void
test_mpsc_token_protocol(void **state)
{
    (void)state;
    run_mpsc(true);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fifo_single_thread),
        cmocka_unit_test(test_was_empty),
        cmocka_unit_test(test_push_gap),
        cmocka_unit_test(test_mpsc_owner_consumer),
        cmocka_unit_test(test_mpsc_token_protocol),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
