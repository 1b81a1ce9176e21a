/* The per-message arena: alignment, growth, large allocations, strings,
 * cleanups (once, newest first, on free and on reset), reuse after reset and
 * NULL safety. Built twice (CMakeLists.txt): unit_test_arena against the
 * arena of shopd_core, unit_test_arena_alt against its own copy built the
 * other way, so every build runs both the chunked and the malloc arena. The
 * checks that only hold for one of them say so. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <hiredis/hiredis.h>
#include <libpq-fe.h>

#include "shopd/arena.h"

#define ALIGN _Alignof(max_align_t)

static void
test_mode(void **state)
{
    print_message("arena build: %s\n", arena_malloc_mode() ? "malloc" : "chunked");
#ifdef SHOPD_ARENA_MALLOC
    /* The _alt executable: its own arena.c, built the way it asked. */
    assert_int_equal(arena_malloc_mode(), SHOPD_ARENA_MALLOC);
#endif
}

static void
test_alignment(void **state)
{
    arena_t *a = arena_new(0);
    for (size_t n = 0; n < 200; n++) {
        unsigned char *p = arena_alloc(a, n);
        assert_non_null(p);
        assert_int_equal((uintptr_t)p % ALIGN, 0);
        memset(p, 0xab, n); /* the whole allocation is ours (ASan checks in malloc mode) */
    }
    long double *ld = arena_alloc(a, sizeof(long double) * 3);
    ld[2] = 1.5L;
    assert_true(ld[2] == 1.5L);
    unsigned char *z = arena_calloc(a, 37, 3);
    assert_int_equal((uintptr_t)z % ALIGN, 0);
    for (size_t i = 0; i < 37 * 3; i++)
        assert_int_equal(z[i], 0);
    /* Two zero-size allocations are still two pointers. */
    assert_ptr_not_equal(arena_alloc(a, 0), arena_alloc(a, 0));
    arena_free(a);
}

/* Many allocations, each filled with its own byte, all still intact at the end:
 * no two overlap across chunk boundaries. */
static void
test_growth(void **state)
{
    enum { N = 500 };
    arena_t *a = arena_new(0);
    unsigned char *ps[N];
    size_t ns[N];
    arena_stats_t st;
    arena_stats(a, &st);
    size_t reserved0 = st.reserved;
    for (int i = 0; i < N; i++) {
        ns[i] = 1 + (size_t)(i * 37) % 300;
        ps[i] = arena_alloc(a, ns[i]);
        memset(ps[i], i & 0xff, ns[i]);
    }
    for (int i = 0; i < N; i++)
        for (size_t k = 0; k < ns[i]; k++)
            assert_int_equal(ps[i][k], i & 0xff);
    arena_stats(a, &st);
    assert_true(st.reserved > reserved0);
    assert_true(st.used >= 500);
    if (arena_malloc_mode()) {
        assert_int_equal(st.blocks, N);
    } else {
        /* ~75 KiB handed out from chunks of 4, 8, 16, 32, 64 KiB: a handful, not hundreds. */
        assert_true(st.blocks > 1);
        assert_true(st.blocks <= 8);
        assert_true(st.reserved >= st.used);
    }
    arena_free(a);
}

static void
test_large(void **state)
{
    arena_t *a = arena_new(0);
    unsigned char *small1 = arena_alloc(a, 8);
    size_t big_n = 1 << 20;
    unsigned char *big = arena_alloc(a, big_n);
    memset(big, 0x5a, big_n);
    assert_int_equal(big[big_n - 1], 0x5a);
    assert_int_equal((uintptr_t)big % ALIGN, 0);
    unsigned char *small2 = arena_alloc(a, 8);
    arena_stats_t st;
    arena_stats(a, &st);
    assert_true(st.reserved >= big_n);
    if (!arena_malloc_mode()) {
        /* The big one got a chunk of its own: the first chunk keeps serving. */
        assert_ptr_equal(small2, small1 + ALIGN);
        assert_int_equal(st.blocks, 2);
        /* Too big for what is left of the first chunk and above a quarter of the
         * next one (8 KiB): a chunk of its own too, the first keeps its tail. */
        unsigned char *mid = arena_alloc(a, 3000);
        assert_ptr_equal(mid, small2 + ALIGN);
        arena_alloc(a, 2100);
        unsigned char *small3 = arena_alloc(a, 8);
        assert_ptr_equal(small3, mid + 3008);
        arena_stats(a, &st);
        assert_int_equal(st.blocks, 3);
    }
    /* Several large ones, all usable at once. */
    unsigned char *l[4];
    for (int i = 0; i < 4; i++) {
        l[i] = arena_alloc(a, 100000);
        memset(l[i], i, 100000);
    }
    for (int i = 0; i < 4; i++)
        assert_int_equal(l[i][99999], i);
    arena_free(a);
}

static void
test_strings(void **state)
{
    arena_t *a = arena_new(0);
    char *s = arena_strdup(a, "hello");
    assert_string_equal(s, "hello");
    assert_int_equal((uintptr_t)s % ALIGN, 0);
    assert_string_equal(arena_strdup(a, ""), "");
    assert_null(arena_strdup(a, NULL));
    assert_null(arena_strndup(a, NULL, 3));
    assert_string_equal(arena_strndup(a, "abcdef", 3), "abc");
    assert_string_equal(arena_strndup(a, "ab", 10), "ab");
    const char raw[4] = {'x', 'y', 'z', 'w'}; /* not NUL-terminated */
    assert_string_equal(arena_strndup(a, raw, 4), "xyzw");

    char *f = arena_sprintf(a, "%s-%d-%llu", "store", 42, 18446744073709551615ull);
    assert_string_equal(f, "store-42-18446744073709551615");
    assert_string_equal(arena_sprintf(a, "%s", ""), "");
    /* Longer than the first chunk: the slow path (measure, allocate, print). */
    char *longs = arena_sprintf(a, "%09000d|", 7);
    assert_int_equal(strlen(longs), 9001);
    assert_int_equal(longs[8999], '7');
    assert_int_equal(longs[9000], '|');
    /* Strings printed one after another do not overwrite each other. */
    char *prev[300];
    for (int i = 0; i < 300; i++)
        prev[i] = arena_sprintf(a, "item %d of %d", i, 300);
    for (int i = 0; i < 300; i++) {
        char want[32];
        snprintf(want, sizeof(want), "item %d of %d", i, 300);
        assert_string_equal(prev[i], want);
    }
    arena_free(a);
}

/* ---- cleanups ---- */

typedef struct log_s {
    int order[16];
    int n;
} log_t;

typedef struct rec_s {
    log_t *log;
    int id;
} rec_t;

static void
record(void *p)
{
    rec_t *r = p;
    r->log->order[r->log->n++] = r->id;
}

static void
test_cleanups_on_free(void **state)
{
    log_t log = {0};
    rec_t recs[3] = {{&log, 1}, {&log, 2}, {&log, 3}};
    arena_t *a = arena_new(0);
    for (int i = 0; i < 3; i++)
        arena_cleanup(a, record, &recs[i]);
    arena_stats_t st;
    arena_stats(a, &st);
    assert_int_equal(st.cleanups, 3);
    assert_int_equal(log.n, 0); /* nothing runs before the arena goes */
    arena_free(a);
    assert_int_equal(log.n, 3);
    assert_int_equal(log.order[0], 3);
    assert_int_equal(log.order[1], 2);
    assert_int_equal(log.order[2], 1);
}

static void
test_cleanups_on_reset(void **state)
{
    log_t log = {0};
    rec_t recs[4] = {{&log, 1}, {&log, 2}, {&log, 3}, {&log, 4}};
    arena_t *a = arena_new(0);
    arena_cleanup(a, record, &recs[0]);
    arena_cleanup(a, record, &recs[1]);
    arena_reset(a);
    assert_int_equal(log.n, 2);
    assert_int_equal(log.order[0], 2);
    assert_int_equal(log.order[1], 1);
    arena_stats_t st;
    arena_stats(a, &st);
    assert_int_equal(st.cleanups, 0);
    arena_reset(a); /* a second reset runs nothing again */
    assert_int_equal(log.n, 2);
    arena_cleanup(a, record, &recs[2]);
    arena_cleanup(a, record, &recs[3]);
    arena_free(a); /* only the ones registered after the reset, once */
    assert_int_equal(log.n, 4);
    assert_int_equal(log.order[2], 4);
    assert_int_equal(log.order[3], 3);
}

/* A cleanup that registers another (and allocates) during the pass. */
typedef struct chain_s {
    arena_t *a;
    log_t *log;
    rec_t inner;
} chain_t;

static void
chain(void *p)
{
    chain_t *c = p;
    c->log->order[c->log->n++] = 100;
    char *s = arena_strdup(c->a, "allocated while cleaning up");
    assert_string_equal(s, "allocated while cleaning up");
    arena_cleanup(c->a, record, &c->inner);
}

static void
test_cleanup_registers_cleanup(void **state)
{
    log_t log = {0};
    arena_t *a = arena_new(0);
    chain_t c = {.a = a, .log = &log, .inner = {&log, 7}};
    arena_cleanup(a, chain, &c);
    arena_reset(a);
    assert_int_equal(log.n, 2);
    assert_int_equal(log.order[0], 100);
    assert_int_equal(log.order[1], 7);
    arena_free(a);
    assert_int_equal(log.n, 2);
}

/* PGresult and redisReply: registered, freed by the arena (LeakSanitizer and the
 * malloc build would report a leak or a double free). */
static void
test_pgresult_and_reply(void **state)
{
    arena_t *a = arena_new(0);
    PGresult *r = PQmakeEmptyPGresult(NULL, PGRES_COMMAND_OK);
    assert_non_null(r);
    assert_ptr_equal(arena_pgresult(a, r), r);
    assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);

    redisReader *rd = redisReaderCreate();
    assert_non_null(rd);
    assert_int_equal(redisReaderFeed(rd, "*2\r\n+OK\r\n:42\r\n", 15), REDIS_OK);
    void *reply = NULL;
    assert_int_equal(redisReaderGetReply(rd, &reply), REDIS_OK);
    assert_non_null(reply);
    redisReaderFree(rd);
    redisReply *rr = arena_redis_reply(a, reply);
    assert_ptr_equal(rr, reply);
    assert_int_equal(rr->type, REDIS_REPLY_ARRAY);
    assert_int_equal(rr->element[1]->integer, 42);

    arena_stats_t st;
    arena_stats(a, &st);
    assert_int_equal(st.cleanups, 2);
    arena_reset(a);
    /* And once more after the reset, freed by arena_free this time. */
    arena_pgresult(a, PQmakeEmptyPGresult(NULL, PGRES_TUPLES_OK));
    arena_free(a);
}

static void
test_reset_reuse(void **state)
{
    arena_t *a = arena_new(0);
    arena_stats_t st0, st;
    arena_stats(a, &st0);
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 200; i++)
            memset(arena_alloc(a, 500), round, 500);
        arena_alloc(a, 1 << 18);
        arena_stats(a, &st);
        assert_true(st.blocks > st0.blocks);
        arena_reset(a);
        arena_stats(a, &st);
        assert_int_equal(st.used, 0);
        assert_int_equal(st.blocks, st0.blocks);
        assert_int_equal(st.reserved, st0.reserved);
    }
    if (!arena_malloc_mode()) {
        /* The first chunk is kept and starts over: the same first address. */
        void *p1 = arena_alloc(a, 64);
        arena_reset(a);
        void *p2 = arena_alloc(a, 64);
        assert_ptr_equal(p1, p2);
        assert_int_equal(st0.blocks, 1);
    } else {
        assert_int_equal(st0.blocks, 0);
    }
    assert_string_equal(arena_strdup(a, "after reset"), "after reset");
    arena_free(a);
}

static void
test_null_safety(void **state)
{
    arena_free(NULL);
    arena_reset(NULL);
    arena_t *a = arena_new(16); /* a tiny first chunk is fine */
    assert_null(arena_pgresult(a, NULL));
    assert_null(arena_redis_reply(a, NULL));
    assert_null(arena_strdup(a, NULL));
    arena_stats_t st;
    arena_stats(a, &st);
    assert_int_equal(st.cleanups, 0); /* NULL registered nothing */
    for (int i = 0; i < 100; i++)
        arena_strdup(a, "grows from a 16-byte first chunk");
    arena_free(a);
    /* An arena never used, and one only reset, free cleanly. */
    arena_free(arena_new(0));
    a = arena_new(0);
    arena_reset(a);
    arena_free(a);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mode),
        cmocka_unit_test(test_alignment),
        cmocka_unit_test(test_growth),
        cmocka_unit_test(test_large),
        cmocka_unit_test(test_strings),
        cmocka_unit_test(test_cleanups_on_free),
        cmocka_unit_test(test_cleanups_on_reset),
        cmocka_unit_test(test_cleanup_registers_cleanup),
        cmocka_unit_test(test_pgresult_and_reply),
        cmocka_unit_test(test_reset_reuse),
        cmocka_unit_test(test_null_safety),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
