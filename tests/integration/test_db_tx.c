/*
 * test_db_tx.c: db_tx_batch (and its nesting with db_tx) against a real
 * PostgreSQL: items that fail alone while the others commit, a forced
 * serialization failure and a real deadlock between two connections that
 * re-run the whole batch and commit it once, savepoints inside items and
 * batches inside transactions, and a connection lost mid-batch.
 *
 * Reads SHOPD_TEST_DATABASE_URL (scripts/test.sh sets it) and fails without
 * it. Tables are TEMP, except the deadlock's, which lives in a schema named
 * after this process and is dropped at the end.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "shopd/common.h"
#include "shopd/db.h"

static const char *db_url;
static char tag[64];

static long
count_key(db_conn_t *c, const char *key)
{
    const char *p[] = {key};
    PGresult *r = db_exec(c, "bt_count", "SELECT count(*) FROM bt WHERE k = $1", 1, p);
    assert_int_equal(db_result_rc(r), SHOPD_OK);
    long n = atol(PQgetvalue(r, 0, 0));
    PQclear(r);
    return n;
}

/* What one item does. */
typedef enum {
    DO_INSERT,       /* insert key; return ret */
    DO_NOTHING,      /* no statement at all; return ret */
    DO_SWALLOW,      /* insert key, then a failing statement, then return OK anyway */
    DO_RAISE_FIRST,  /* insert key; on the first `fail_first` runs raise raise_state */
    DO_NESTED_TX,    /* a nested db_tx that fails, then insert key; return OK */
    DO_KILL_SESSION, /* the server ends this session */
} item_kind_t;

typedef struct item_s {
    item_kind_t kind;
    const char *key;
    shopd_rc_t ret;
    int fail_first;
    const char *raise_state;
    int calls; /* runs of this item, over every attempt */
} item_t;

static shopd_rc_t
insert_key(db_conn_t *c, const char *key)
{
    const char *p[] = {key};
    /* Named: its first use prepares it inside the item's pipeline. */
    PGresult *r = db_exec(c, "bt_ins", "INSERT INTO bt (k) VALUES ($1)", 1, p);
    shopd_rc_t rc = db_result_rc(r);
    PQclear(r);
    return rc;
}

static shopd_rc_t
run_sql(db_conn_t *c, const char *sql)
{
    PGresult *r = db_exec(c, NULL, sql, 0, NULL);
    shopd_rc_t rc = db_result_rc(r);
    PQclear(r);
    return rc;
}

static shopd_rc_t
nested_fail(db_conn_t *c, void *arg)
{
    (void)arg;
    insert_key(c, "nested_inner");
    return SHOPD_INVALID;
}

static shopd_rc_t
item_fn(db_conn_t *c, size_t i, void *arg)
{
    item_t *it = &((item_t *)arg)[i];
    it->calls++;
    shopd_rc_t rc;
    switch (it->kind) {
    case DO_NOTHING:
        return it->ret;
    case DO_KILL_SESSION:
        return run_sql(c, "SELECT pg_terminate_backend(pg_backend_pid())");
    default:
        break;
    }
    if (it->kind == DO_NESTED_TX) {
        /* First thing in the item (so possibly right after a failed item whose rollback
         * is still pending): a savepoint inside the item's; its failure stays inside. */
        if (db_tx(c, nested_fail, NULL) != SHOPD_INVALID)
            return SHOPD_ERR;
    }
    if ((rc = insert_key(c, it->key)) != SHOPD_OK)
        return rc;
    switch (it->kind) {
    case DO_SWALLOW:
        run_sql(c, "SELECT 1/0");
        return SHOPD_OK;
    case DO_RAISE_FIRST:
        if (it->calls <= it->fail_first) {
            char sql[160];
            snprintf(sql, sizeof(sql),
                     "DO $$ BEGIN RAISE EXCEPTION 'injected' USING ERRCODE = '%s'; END $$",
                     it->raise_state);
            /* What the item reports does not matter: the batch runs again. */
            run_sql(c, sql);
            return SHOPD_OK;
        }
        return SHOPD_OK;
    default:
        return it->ret;
    }
}

static db_conn_t *
setup_conn(db_pool_t *pool)
{
    db_conn_t *c = db_acquire(pool, 2000);
    assert_non_null(c);
    th_exec_ok(c, "CREATE TEMP TABLE IF NOT EXISTS bt (k text PRIMARY KEY)");
    th_exec_ok(c, "TRUNCATE bt");
    return c;
}

static void
test_batch_items_fail_alone(void **state)
{
    (void)state;
    db_pool_t *pool = th_pool_new(1);
    db_conn_t *c = setup_conn(pool);
    th_exec_ok(c, "INSERT INTO bt (k) VALUES ('taken')");

    item_t items[] = {
        {.kind = DO_INSERT, .key = "a", .ret = SHOPD_OK},
        {.kind = DO_INSERT, .key = "taken", .ret = SHOPD_OK}, /* unique violation */
        {.kind = DO_INSERT, .key = "b", .ret = SHOPD_OK},     /* right after a failed item */
        {.kind = DO_INSERT, .key = "refused", .ret = SHOPD_NOTFOUND}, /* its own no */
        {.kind = DO_NOTHING, .ret = SHOPD_INVALID}, /* fails without a statement */
        {.kind = DO_NOTHING, .ret = SHOPD_OK},
        {.kind = DO_SWALLOW, .key = "swallowed"}, /* OK after a failed statement */
        {.kind = DO_INSERT, .key = "c", .ret = SHOPD_OK},
        {.kind = DO_INSERT, .key = "c", .ret = SHOPD_OK}, /* the batch's own duplicate */
    };
    size_t n = SHOPD_ARRAY_LEN(items);
    shopd_rc_t res[SHOPD_ARRAY_LEN(items)];
    assert_int_equal(db_tx_batch(c, n, item_fn, items, res), SHOPD_OK);
    shopd_rc_t want[] = {SHOPD_OK, SHOPD_CONFLICT, SHOPD_OK, SHOPD_NOTFOUND, SHOPD_INVALID,
                         SHOPD_OK, SHOPD_ERR,      SHOPD_OK, SHOPD_CONFLICT};
    for (size_t i = 0; i < n; i++) {
        if (res[i] != want[i])
            print_error("item %zu: rc %d, want %d\n", i, res[i], want[i]);
        assert_int_equal(res[i], want[i]);
        assert_int_equal(items[i].calls, 1);
    }
    assert_int_equal(PQtransactionStatus(db_pg(c)), PQTRANS_IDLE);
    assert_int_equal(count_key(c, "a"), 1);
    assert_int_equal(count_key(c, "b"), 1);
    assert_int_equal(count_key(c, "c"), 1);
    assert_int_equal(count_key(c, "refused"), 0);
    assert_int_equal(count_key(c, "swallowed"), 0);
    assert_int_equal(th_query_long(c, "SELECT count(*) FROM bt"), 4); /* taken, a, b, c */

    /* The last item failing: its rollback must happen before the COMMIT. */
    item_t last[] = {
        {.kind = DO_INSERT, .key = "d", .ret = SHOPD_OK},
        {.kind = DO_INSERT, .key = "d", .ret = SHOPD_OK},
    };
    assert_int_equal(db_tx_batch(c, 2, item_fn, last, res), SHOPD_OK);
    assert_int_equal(res[0], SHOPD_OK);
    assert_int_equal(res[1], SHOPD_CONFLICT);
    assert_int_equal(count_key(c, "d"), 1);

    /* Nothing to do: no transaction at all. */
    assert_int_equal(db_tx_batch(c, 0, item_fn, NULL, NULL), SHOPD_OK);
    db_release(c);
    db_pool_free(pool);
}

static void
test_batch_retry_on_serialization_failure(void **state)
{
    (void)state;
    db_pool_t *pool = th_pool_new(1);
    db_conn_t *c = setup_conn(pool);

    /* Item 1 fails with 40001 on its first run: every item runs again, once. */
    item_t items[] = {
        {.kind = DO_INSERT, .key = "x", .ret = SHOPD_OK},
        {.kind = DO_RAISE_FIRST, .key = "y", .fail_first = 1, .raise_state = "40001"},
        {.kind = DO_INSERT, .key = "z", .ret = SHOPD_OK},
        {.kind = DO_INSERT, .key = "x", .ret = SHOPD_OK}, /* fails alone, in every attempt */
    };
    shopd_rc_t res[4];
    assert_int_equal(db_tx_batch(c, 4, item_fn, items, res), SHOPD_OK);
    assert_int_equal(items[0].calls, 2);
    assert_int_equal(items[1].calls, 2);
    assert_int_equal(items[2].calls, 1); /* the first attempt stopped at item 1 */
    assert_int_equal(items[3].calls, 1);
    assert_int_equal(res[0], SHOPD_OK);
    assert_int_equal(res[1], SHOPD_OK);
    assert_int_equal(res[2], SHOPD_OK);
    assert_int_equal(res[3], SHOPD_CONFLICT);
    assert_int_equal(count_key(c, "x"), 1);
    assert_int_equal(count_key(c, "y"), 1);
    assert_int_equal(count_key(c, "z"), 1);

    /* A deadlock every time: 1 + 3 attempts, then the whole batch is a CONFLICT. */
    item_t stuck[] = {
        {.kind = DO_INSERT, .key = "s1", .ret = SHOPD_OK},
        {.kind = DO_RAISE_FIRST, .key = "s2", .fail_first = 100, .raise_state = "40P01"},
    };
    assert_int_equal(db_tx_batch(c, 2, item_fn, stuck, res), SHOPD_CONFLICT);
    assert_int_equal(stuck[1].calls, 4);
    assert_int_equal(res[0], SHOPD_CONFLICT);
    assert_int_equal(res[1], SHOPD_CONFLICT);
    assert_int_equal(count_key(c, "s1"), 0);
    assert_int_equal(PQtransactionStatus(db_pg(c)), PQTRANS_IDLE);
    db_release(c);
    db_pool_free(pool);
}

/* ---- a real deadlock between two connections ---- */

typedef struct dl_side_s {
    db_pool_t *pool;
    const char *first, *second; /* rows to lock, in this order, one item each */
    pthread_barrier_t *both_locked;
    int runs[2];
    shopd_rc_t rc, res[2];
} dl_side_t;

static shopd_rc_t
dl_item(db_conn_t *c, size_t i, void *arg)
{
    dl_side_t *s = arg;
    s->runs[i]++;
    char sql[160];
    snprintf(sql, sizeof(sql), "UPDATE \"%s\".dl SET n = n + 1 WHERE k = $1", tag);
    const char *p[] = {i == 0 ? s->first : s->second};
    PGresult *r = db_exec(c, NULL, sql, 1, p);
    shopd_rc_t rc = db_result_rc(r);
    PQclear(r);
    /* Only the first attempt waits: both sides then hold one row and want the other. */
    if (i == 0 && s->runs[0] == 1)
        pthread_barrier_wait(s->both_locked);
    return rc;
}

static void *
dl_thread(void *arg)
{
    dl_side_t *s = arg;
    db_conn_t *c = db_acquire(s->pool, 5000);
    if (c == NULL) {
        s->rc = SHOPD_UNAVAILABLE;
        return NULL;
    }
    s->rc = db_tx_batch(c, 2, dl_item, s, s->res);
    db_release(c);
    return NULL;
}

static void
test_batch_retry_on_real_deadlock(void **state)
{
    (void)state;
    db_pool_t *pool = th_pool_new(3);
    db_conn_t *c = db_acquire(pool, 2000);
    assert_non_null(c);
    char sql[512];
    snprintf(sql, sizeof(sql), "CREATE SCHEMA \"%s\"", tag);
    th_exec_ok(c, sql);
    snprintf(sql, sizeof(sql), "CREATE TABLE \"%s\".dl (k text PRIMARY KEY, n int NOT NULL)", tag);
    th_exec_ok(c, sql);
    snprintf(sql, sizeof(sql), "INSERT INTO \"%s\".dl VALUES ('A', 0), ('B', 0)", tag);
    th_exec_ok(c, sql);

    pthread_barrier_t b;
    pthread_barrier_init(&b, NULL, 2);
    dl_side_t s1 = {.pool = pool, .first = "A", .second = "B", .both_locked = &b};
    dl_side_t s2 = {.pool = pool, .first = "B", .second = "A", .both_locked = &b};
    pthread_t t1, t2;
    pthread_create(&t1, NULL, dl_thread, &s1);
    pthread_create(&t2, NULL, dl_thread, &s2);
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    pthread_barrier_destroy(&b);

    /* PostgreSQL broke the deadlock by failing one side; that side ran again. */
    assert_int_equal(s1.rc, SHOPD_OK);
    assert_int_equal(s2.rc, SHOPD_OK);
    assert_int_equal(s1.res[0], SHOPD_OK);
    assert_int_equal(s1.res[1], SHOPD_OK);
    assert_int_equal(s2.res[0], SHOPD_OK);
    assert_int_equal(s2.res[1], SHOPD_OK);
    int retried = (s1.runs[0] > 1) + (s2.runs[0] > 1);
    assert_int_equal(retried, 1);
    /* Each side committed exactly once: every row counted twice, not more. */
    snprintf(sql, sizeof(sql), "SELECT sum(n) FROM \"%s\".dl", tag);
    assert_int_equal(th_query_long(c, sql), 4);
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM \"%s\".dl WHERE n = 2", tag);
    assert_int_equal(th_query_long(c, sql), 2);

    snprintf(sql, sizeof(sql), "DROP SCHEMA \"%s\" CASCADE", tag);
    th_exec_ok(c, sql);
    db_release(c);
    db_pool_free(pool);
}

/* ---- nesting ---- */

typedef struct outer_s {
    item_t *items;
    size_t n;
    shopd_rc_t *res;
    shopd_rc_t batch_rc;
    shopd_rc_t ret;
} outer_t;

static shopd_rc_t
outer_fn(db_conn_t *c, void *arg)
{
    outer_t *o = arg;
    shopd_rc_t rc = insert_key(c, "outer");
    if (rc != SHOPD_OK)
        return rc;
    o->batch_rc = db_tx_batch(c, o->n, item_fn, o->items, o->res);
    if (o->batch_rc != SHOPD_OK)
        return o->batch_rc;
    /* The outer transaction goes on after the batch. */
    if ((rc = insert_key(c, "after")) != SHOPD_OK)
        return rc;
    return o->ret;
}

static void
test_batch_nesting(void **state)
{
    (void)state;
    db_pool_t *pool = th_pool_new(1);
    db_conn_t *c = setup_conn(pool);

    /* A db_tx inside an item is a savepoint inside the item's savepoint; and an item
     * right after a failed one may open a db_tx too. */
    item_t items[] = {
        {.kind = DO_NESTED_TX, .key = "n1"},
        {.kind = DO_INSERT, .key = "n1", .ret = SHOPD_OK}, /* fails: duplicate */
        {.kind = DO_NESTED_TX, .key = "n2"},
        {.kind = DO_INSERT, .key = "n3", .ret = SHOPD_OK},
    };
    shopd_rc_t res[4];
    assert_int_equal(db_tx_batch(c, 4, item_fn, items, res), SHOPD_OK);
    assert_int_equal(res[0], SHOPD_OK);
    assert_int_equal(res[1], SHOPD_CONFLICT);
    assert_int_equal(res[2], SHOPD_OK);
    assert_int_equal(res[3], SHOPD_OK);
    assert_int_equal(count_key(c, "n1"), 1);
    assert_int_equal(count_key(c, "n2"), 1);
    assert_int_equal(count_key(c, "n3"), 1);
    assert_int_equal(count_key(c, "nested_inner"), 0);

    /* A batch inside a db_tx: a savepoint of the outer transaction, committed by it. */
    th_exec_ok(c, "TRUNCATE bt");
    item_t in[] = {
        {.kind = DO_INSERT, .key = "i1", .ret = SHOPD_OK},
        {.kind = DO_INSERT, .key = "outer", .ret = SHOPD_OK}, /* fails: the outer row */
    };
    outer_t o = {.items = in, .n = 2, .res = res, .ret = SHOPD_OK};
    assert_int_equal(db_tx(c, outer_fn, &o), SHOPD_OK);
    assert_int_equal(o.batch_rc, SHOPD_OK);
    assert_int_equal(res[0], SHOPD_OK);
    assert_int_equal(res[1], SHOPD_CONFLICT);
    assert_int_equal(count_key(c, "outer"), 1);
    assert_int_equal(count_key(c, "i1"), 1);
    assert_int_equal(count_key(c, "after"), 1);

    /* The outer transaction failing after the batch undoes the batch too. */
    th_exec_ok(c, "TRUNCATE bt");
    item_t in2[] = {{.kind = DO_INSERT, .key = "j1", .ret = SHOPD_OK}};
    outer_t o2 = {.items = in2, .n = 1, .res = res, .ret = SHOPD_INVALID};
    assert_int_equal(db_tx(c, outer_fn, &o2), SHOPD_INVALID);
    assert_int_equal(o2.batch_rc, SHOPD_OK);
    assert_int_equal(th_query_long(c, "SELECT count(*) FROM bt"), 0);

    /* A serialization failure inside a nested batch re-runs the outer transaction. */
    item_t in3[] = {{.kind = DO_RAISE_FIRST, .key = "k1", .fail_first = 1, .raise_state = "40001"}};
    outer_t o3 = {.items = in3, .n = 1, .res = res, .ret = SHOPD_OK};
    assert_int_equal(db_tx(c, outer_fn, &o3), SHOPD_OK);
    assert_int_equal(in3[0].calls, 2);
    assert_int_equal(count_key(c, "outer"), 1);
    assert_int_equal(count_key(c, "k1"), 1);
    assert_int_equal(PQtransactionStatus(db_pg(c)), PQTRANS_IDLE);
    db_release(c);
    db_pool_free(pool);
}

static void
test_batch_connection_lost(void **state)
{
    (void)state;
    db_pool_t *pool = th_pool_new(1);
    db_conn_t *c = db_acquire(pool, 2000);
    assert_non_null(c);
    /* A real table: the session that held a TEMP one is about to end. */
    char sql[512];
    snprintf(sql, sizeof(sql), "CREATE SCHEMA \"%s\"", tag);
    th_exec_ok(c, sql);
    snprintf(sql, sizeof(sql), "CREATE TABLE \"%s\".bt (k text PRIMARY KEY)", tag);
    th_exec_ok(c, sql);
    snprintf(sql, sizeof(sql), "SET search_path = \"%s\"", tag);
    th_exec_ok(c, sql);
    item_t items[] = {
        {.kind = DO_INSERT, .key = "lost", .ret = SHOPD_OK},
        {.kind = DO_KILL_SESSION},
        {.kind = DO_INSERT, .key = "never", .ret = SHOPD_OK},
    };
    shopd_rc_t res[3];
    assert_int_equal(db_tx_batch(c, 3, item_fn, items, res), SHOPD_UNAVAILABLE);
    for (int i = 0; i < 3; i++)
        assert_int_equal(res[i], SHOPD_UNAVAILABLE);
    assert_int_equal(items[2].calls, 0);
    db_release(c);

    c = db_acquire(pool, 2000); /* reconnects */
    assert_non_null(c);
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM \"%s\".bt", tag);
    assert_int_equal(th_query_long(c, sql), 0);
    snprintf(sql, sizeof(sql), "DROP SCHEMA \"%s\" CASCADE", tag);
    th_exec_ok(c, sql);
    db_release(c);
    db_pool_free(pool);
}

int
main(void)
{
    db_url = th_env("SHOPD_TEST_DATABASE_URL"); /* missing: a failure, never a skip */
    char rnd[9];
    shopd_random_hex(rnd, 4);
    snprintf(tag, sizeof(tag), "dbtx_%d_%s", (int)getpid(), rnd);

    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_batch_items_fail_alone),
        cmocka_unit_test(test_batch_retry_on_serialization_failure),
        cmocka_unit_test(test_batch_retry_on_real_deadlock),
        cmocka_unit_test(test_batch_nesting),
        cmocka_unit_test(test_batch_connection_lost),
    };
    return cmocka_run_group_tests_name("db_tx", tests, NULL, NULL);
}
