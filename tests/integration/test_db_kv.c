/*
 * test_db_kv.c: the db/ and kv/ modules against a real PostgreSQL and Redis.
 * It needs SHOPD_TEST_DATABASE_URL and SHOPD_TEST_REDIS_URL (scripts/test.sh
 * sets both) and fails, saying why, when one is absent: a test that skips
 * would pass without checking anything.
 *
 * The harness gives this program a database of its own; Redis is shared with
 * other tests, possibly at the same time: keys carry a per-process prefix.
 * Tables here are TEMP (per session) or live in a schema named after this
 * process, and everything is removed.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shopd/common.h"
#include "shopd/db.h"
#include "shopd/kv.h"
#include "harness.h"

static const char *db_url;
static const char *redis_url;
static char tag[64]; /* unique per process: schema name and key prefix */

/* ---- PostgreSQL ------------------------------------------------------------ */

static void
test_exec_and_prepared_reuse(void **state)
{
    (void)state;
    db_pool_t *pool = th_pool_new(2);
    db_conn_t *c = db_acquire(pool, 2000);
    assert_non_null(c);

    const char *p1[] = {"41"};
    for (int i = 0; i < 3; i++) {
        PGresult *r = db_exec(c, "t_add_one", "SELECT $1::int + 1", 1, p1);
        assert_int_equal(db_result_rc(r), SHOPD_OK);
        assert_string_equal(PQgetvalue(r, 0, 0), "42");
        PQclear(r);
    }
    /* Prepared once on the session, whatever the number of calls. */
    assert_int_equal(th_query_long(c, "SELECT count(*) FROM pg_prepared_statements"
                                      " WHERE name = 't_add_one'"),
                     1);

    /* NULL parameters are SQL NULL. */
    const char *pn[] = {NULL};
    PGresult *r = db_exec(c, "t_is_null", "SELECT $1::text IS NULL", 1, pn);
    assert_int_equal(db_result_rc(r), SHOPD_OK);
    assert_string_equal(PQgetvalue(r, 0, 0), "t");
    PQclear(r);

    /* Unnamed statements are not prepared. */
    r = db_exec(c, NULL, "SELECT $1::int * 2", 1, p1);
    assert_string_equal(PQgetvalue(r, 0, 0), "82");
    PQclear(r);

    /* A bad statement under a name fails cleanly and leaves the session usable. */
    r = db_exec(c, "t_bad", "SELEC 1", 0, NULL);
    assert_int_equal(db_result_rc(r), SHOPD_ERR);
    assert_string_equal(db_sqlstate(r), "42601");
    PQclear(r);
    assert_int_equal(db_ping(c), SHOPD_OK);

    /* The statement is re-prepared if the session lost it behind our back. */
    th_exec_ok(c, "DEALLOCATE t_add_one");
    r = db_exec(c, "t_add_one", "SELECT $1::int + 1", 1, p1);
    assert_int_equal(db_result_rc(r), SHOPD_OK);
    assert_string_equal(PQgetvalue(r, 0, 0), "42");
    PQclear(r);

    db_pool_stats_t st;
    db_pool_stats(pool, &st);
    assert_int_equal(st.size, 2);
    assert_int_equal(st.in_use, 1);
    db_release(c);
    db_pool_free(pool);
}

/* Runs name/sql with one parameter and returns its integer answer, -1 on failure. */
static long
exec_long(db_conn_t *c, const char *name, const char *sql, const char *arg)
{
    const char *p[] = {arg};
    PGresult *r = db_exec(c, name, sql, 1, p);
    long v = db_result_rc(r) == SHOPD_OK ? atol(PQgetvalue(r, 0, 0)) : -1;
    PQclear(r);
    return v;
}

/* How many statements the session holds under name with exactly this text. */
static long
prepared_count(db_conn_t *c, const char *name, const char *text)
{
    char q[256];
    snprintf(q, sizeof(q),
             "SELECT count(*) FROM pg_prepared_statements WHERE name = '%s'"
             " AND ('%s' = '' OR statement = '%s')",
             name, text, text);
    return th_query_long(c, q);
}

/* One name with other SQL, as a caller that renders its SQL (or its name) into
 * a reused buffer could send: the pointers stay, the text changes. The pool
 * must run the other text (unprepared) rather than the statement it prepared
 * first, in db_exec and in a pipeline alike. */
static void
test_prepared_name_reused(void **state)
{
    (void)state;
    db_pool_t *pool = th_pool_new(1);
    db_conn_t *c = db_acquire(pool, 2000);
    assert_non_null(c);
    char name[16], sql[64];

    snprintf(name, sizeof(name), "t_reuse");
    snprintf(sql, sizeof(sql), "SELECT $1::int + 1");
    assert_int_equal(exec_long(c, name, sql, "41"), 42);
    snprintf(sql, sizeof(sql), "SELECT $1::int + 2");
    assert_int_equal(exec_long(c, name, sql, "41"), 43);
    snprintf(sql, sizeof(sql), "SELECT $1::int + 10"); /* the prepared text and more */
    assert_int_equal(exec_long(c, name, sql, "41"), 51);
    snprintf(sql, sizeof(sql), "SELECT $1::int +"); /* a prefix of it */
    assert_int_equal(exec_long(c, name, sql, "41"), -1);
    snprintf(sql, sizeof(sql), "SELECT $1::int + 1");
    assert_int_equal(exec_long(c, name, sql, "41"), 42);
    /* The session kept the first text under the name, prepared once. */
    assert_int_equal(prepared_count(c, "t_reuse", ""), 1);
    assert_int_equal(prepared_count(c, "t_reuse", "SELECT $1::int + 1"), 1);

    /* The name's buffer changes too: another name is another statement. */
    snprintf(name, sizeof(name), "t_reuse2");
    snprintf(sql, sizeof(sql), "SELECT $1::int * 3");
    assert_int_equal(exec_long(c, name, sql, "41"), 123);
    assert_int_equal(exec_long(c, name, sql, "2"), 6);
    assert_int_equal(prepared_count(c, "t_reuse2", "SELECT $1::int * 3"), 1);
    snprintf(name, sizeof(name), "t_reuse");
    assert_int_equal(exec_long(c, name, sql, "41"), 123);
    assert_int_equal(prepared_count(c, "t_reuse", "SELECT $1::int + 1"), 1);

    /* In a pipeline: each known name checked against its text. */
    const char *p[] = {"41"};
    char other[64];
    snprintf(other, sizeof(other), "SELECT $1::int + 5");
    db_query_t qs[3] = {
        {"t_reuse", other, 1, p},
        {"t_reuse2", "SELECT $1::int * 3", 1, p},
        {"t_reuse", "SELECT $1::int + 1", 1, p},
    };
    PGresult *res[3];
    assert_int_equal(db_pipeline(c, qs, 3, res), SHOPD_OK);
    assert_string_equal(PQgetvalue(res[0], 0, 0), "46");
    assert_string_equal(PQgetvalue(res[1], 0, 0), "123");
    assert_string_equal(PQgetvalue(res[2], 0, 0), "42");
    for (int i = 0; i < 3; i++)
        PQclear(res[i]);
    assert_int_equal(prepared_count(c, "t_reuse", "SELECT $1::int + 1"), 1);

    /* A statement prepared in a pipeline keeps its own text for db_exec. */
    db_query_t fresh[1] = {{"t_reuse3", "SELECT $1::int - 1", 1, p}};
    assert_int_equal(db_pipeline(c, fresh, 1, res), SHOPD_OK);
    assert_string_equal(PQgetvalue(res[0], 0, 0), "40");
    PQclear(res[0]);
    assert_int_equal(exec_long(c, "t_reuse3", "SELECT $1::int - 2", "41"), 39);
    assert_int_equal(exec_long(c, "t_reuse3", "SELECT $1::int - 1", "41"), 40);
    assert_int_equal(prepared_count(c, "t_reuse3", "SELECT $1::int - 1"), 1);

    /* A name new to the session twice in one pipeline, with two texts: the
     * first is prepared, the second runs as itself. */
    db_query_t twice[3] = {
        {"t_reuse4", "SELECT $1::int * 10", 1, p},
        {"t_reuse4", "SELECT $1::int * 100", 1, p},
        {"t_reuse4", "SELECT $1::int * 10", 1, p},
    };
    assert_int_equal(db_pipeline(c, twice, 3, res), SHOPD_OK);
    assert_string_equal(PQgetvalue(res[0], 0, 0), "410");
    assert_string_equal(PQgetvalue(res[1], 0, 0), "4100");
    assert_string_equal(PQgetvalue(res[2], 0, 0), "410");
    for (int i = 0; i < 3; i++)
        PQclear(res[i]);
    assert_int_equal(prepared_count(c, "t_reuse4", "SELECT $1::int * 10"), 1);

    db_release(c);
    db_pool_free(pool);
}

static void
test_result_rc(void **state)
{
    (void)state;
    db_pool_t *pool = th_pool_new(1);
    db_conn_t *c = db_acquire(pool, 2000);
    assert_non_null(c);
    th_exec_ok(c, "CREATE TEMP TABLE rc_parent (id int PRIMARY KEY)");
    th_exec_ok(c, "CREATE TEMP TABLE rc_t (k int PRIMARY KEY, v text NOT NULL,"
                  " n int CHECK (n > 0), p int REFERENCES rc_parent (id))");
    th_exec_ok(c, "INSERT INTO rc_t (k, v) VALUES (1, 'a')");

    const char *dup[] = {"1"};
    PGresult *r = db_exec(c, "rc_ins", "INSERT INTO rc_t (k, v) VALUES ($1, 'b')", 1, dup);
    assert_int_equal(db_result_rc(r), SHOPD_CONFLICT);
    assert_string_equal(db_sqlstate(r), "23505");
    PQclear(r);

    struct {
        const char *sql;
        shopd_rc_t rc;
        const char *state;
    } cases[] = {
        {"INSERT INTO rc_t (k, v) VALUES (2, NULL)", SHOPD_INVALID, "23502"},
        {"INSERT INTO rc_t (k, v, n) VALUES (3, 'x', 0)", SHOPD_INVALID, "23514"},
        {"SELECT 'abc'::int", SHOPD_INVALID, "22P02"},
        {"INSERT INTO rc_t (k, v, p) VALUES (4, 'x', 99)", SHOPD_NOTFOUND, "23503"},
        {"SELECT * FROM rc_no_such_table", SHOPD_ERR, "42P01"},
        {"SELECT 1", SHOPD_OK, ""},
    };
    for (size_t i = 0; i < SHOPD_ARRAY_LEN(cases); i++) {
        r = db_exec(c, NULL, cases[i].sql, 0, NULL);
        assert_non_null(r);
        assert_int_equal(db_result_rc(r), cases[i].rc);
        assert_string_equal(db_sqlstate(r), cases[i].state);
        PQclear(r);
    }
    assert_int_equal(db_result_rc(NULL), SHOPD_UNAVAILABLE);
    assert_string_equal(db_sqlstate(NULL), "");
    db_release(c);
    db_pool_free(pool);
}

typedef struct tx_arg_s {
    const char *key;
    shopd_rc_t ret; /* what fn returns after its insert */
    int fail_first; /* attempts that raise this SQLSTATE before succeeding */
    const char *raise_state;
    int calls;
} tx_arg_t;

static shopd_rc_t
tx_insert(db_conn_t *c, void *arg)
{
    tx_arg_t *a = arg;
    a->calls++;
    const char *p[] = {a->key};
    PGresult *r = db_exec(c, "tx_ins", "INSERT INTO tx_t (k) VALUES ($1)", 1, p);
    shopd_rc_t rc = db_result_rc(r);
    PQclear(r);
    if (rc != SHOPD_OK)
        return rc;
    if (a->calls <= a->fail_first) {
        char sql[160];
        snprintf(sql, sizeof(sql),
                 "DO $$ BEGIN RAISE EXCEPTION 'injected' USING ERRCODE = '%s'; END $$",
                 a->raise_state);
        r = db_exec(c, NULL, sql, 0, NULL);
        rc = db_result_rc(r);
        PQclear(r);
        return rc;
    }
    return a->ret;
}

static long
count_key(db_conn_t *c, const char *key)
{
    const char *p[] = {key};
    PGresult *r = db_exec(c, "tx_count", "SELECT count(*) FROM tx_t WHERE k = $1", 1, p);
    assert_int_equal(db_result_rc(r), SHOPD_OK);
    long n = atol(PQgetvalue(r, 0, 0));
    PQclear(r);
    return n;
}

static shopd_rc_t
tx_outer(db_conn_t *c, void *arg)
{
    tx_arg_t *inner = arg;
    const char *p[] = {"outer"};
    PGresult *r = db_exec(c, "tx_ins", "INSERT INTO tx_t (k) VALUES ($1)", 1, p);
    PQclear(r);
    /* The nested db_tx is a savepoint: its failure does not undo "outer". */
    shopd_rc_t rc = db_tx(c, tx_insert, inner);
    return rc == SHOPD_INVALID ? SHOPD_OK : SHOPD_ERR;
}

/* A nested db_tx as the first thing an outer one does, before any statement has
 * carried the outer BEGIN; then the outer one fails. */
static shopd_rc_t
tx_nested_first(db_conn_t *c, void *arg)
{
    tx_arg_t *inner = arg;
    if (db_tx(c, tx_insert, inner) != SHOPD_OK)
        return SHOPD_ERR;
    return SHOPD_INVALID;
}

/* Sends nothing at all. */
static shopd_rc_t
tx_nothing(db_conn_t *c, void *arg)
{
    (void)c;
    int *calls = arg;
    (*calls)++;
    return *calls == 1 ? SHOPD_OK : SHOPD_INVALID;
}

static shopd_rc_t
tx_nested_nothing(db_conn_t *c, void *arg)
{
    int *calls = arg;
    if (db_tx(c, tx_nothing, calls) != SHOPD_OK || db_tx(c, tx_nothing, calls) != SHOPD_INVALID)
        return SHOPD_ERR;
    tx_arg_t after = {.key = "after_empty_savepoints", .ret = SHOPD_OK};
    return tx_insert(c, &after);
}

/* BEGIN and the savepoint commands go out with the next statement (pending):
 * a transaction whose BEGIN has not left yet is still one to a nested db_tx, and
 * savepoints that carried nothing leave no trace. */
static void
test_tx_lazy_begin(void **state)
{
    (void)state;
    db_pool_t *pool = th_pool_new(1);
    db_conn_t *c = db_acquire(pool, 2000);
    assert_non_null(c);
    th_exec_ok(c, "CREATE TEMP TABLE tx_t (k text PRIMARY KEY)");

    /* The inner insert is a savepoint of the outer transaction: undone with it. */
    tx_arg_t inner = {.key = "nested_first", .ret = SHOPD_OK};
    assert_int_equal(db_tx(c, tx_nested_first, &inner), SHOPD_INVALID);
    assert_int_equal(inner.calls, 1);
    assert_int_equal(count_key(c, "nested_first"), 0);
    assert_int_equal(PQtransactionStatus(db_pg(c)), PQTRANS_IDLE);

    /* Empty transactions and empty savepoints, ok or failed, then a statement. */
    int calls = 0;
    assert_int_equal(db_tx(c, tx_nothing, &calls), SHOPD_OK);
    assert_int_equal(db_tx(c, tx_nothing, &calls), SHOPD_INVALID);
    assert_int_equal(PQtransactionStatus(db_pg(c)), PQTRANS_IDLE);
    calls = 0;
    assert_int_equal(db_tx(c, tx_nested_nothing, &calls), SHOPD_OK);
    assert_int_equal(count_key(c, "after_empty_savepoints"), 1);
    assert_int_equal(PQtransactionStatus(db_pg(c)), PQTRANS_IDLE);

    /* A nested failure after a released one: only the failed one is undone. */
    tx_arg_t in2 = {.key = "inner_failed", .ret = SHOPD_INVALID};
    assert_int_equal(db_tx(c, tx_outer, &in2), SHOPD_OK);
    assert_int_equal(count_key(c, "outer"), 1);
    assert_int_equal(count_key(c, "inner_failed"), 0);
    db_release(c);
    db_pool_free(pool);
}

static void
test_tx_commit_rollback_retry(void **state)
{
    (void)state;
    db_pool_t *pool = th_pool_new(1);
    db_conn_t *c = db_acquire(pool, 2000);
    assert_non_null(c);
    th_exec_ok(c, "CREATE TEMP TABLE tx_t (k text PRIMARY KEY)");

    tx_arg_t commit = {.key = "committed", .ret = SHOPD_OK};
    assert_int_equal(db_tx(c, tx_insert, &commit), SHOPD_OK);
    assert_int_equal(count_key(c, "committed"), 1);
    assert_int_equal(PQtransactionStatus(db_pg(c)), PQTRANS_IDLE);

    tx_arg_t rollback = {.key = "rolled_back", .ret = SHOPD_INVALID};
    assert_int_equal(db_tx(c, tx_insert, &rollback), SHOPD_INVALID);
    assert_int_equal(count_key(c, "rolled_back"), 0);
    assert_int_equal(PQtransactionStatus(db_pg(c)), PQTRANS_IDLE);

    /* A failing statement inside fn: its status comes back, nothing stays. */
    tx_arg_t dup = {.key = "committed", .ret = SHOPD_OK};
    assert_int_equal(db_tx(c, tx_insert, &dup), SHOPD_CONFLICT);
    assert_int_equal(dup.calls, 1); /* a unique violation is not retried */

    /* Serialization failure twice, then success: retried, committed once. */
    tx_arg_t ser = {.key = "retried", .ret = SHOPD_OK, .fail_first = 2, .raise_state = "40001"};
    assert_int_equal(db_tx(c, tx_insert, &ser), SHOPD_OK);
    assert_int_equal(ser.calls, 3);
    assert_int_equal(count_key(c, "retried"), 1);

    /* Deadlock every time: 1 + 3 attempts, then the conflict is returned. */
    tx_arg_t dl = {.key = "deadlock", .ret = SHOPD_OK, .fail_first = 100, .raise_state = "40P01"};
    assert_int_equal(db_tx(c, tx_insert, &dl), SHOPD_CONFLICT);
    assert_int_equal(dl.calls, 4);
    assert_int_equal(count_key(c, "deadlock"), 0);

    /* Nested db_tx uses a savepoint. */
    tx_arg_t inner = {.key = "inner", .ret = SHOPD_INVALID};
    assert_int_equal(db_tx(c, tx_outer, &inner), SHOPD_OK);
    assert_int_equal(count_key(c, "outer"), 1);
    assert_int_equal(count_key(c, "inner"), 0);

    /* Releasing inside an open transaction rolls it back. */
    th_exec_ok(c, "BEGIN");
    th_exec_ok(c, "INSERT INTO tx_t (k) VALUES ('left_open')");
    db_release(c);
    c = db_acquire(pool, 2000);
    assert_non_null(c);
    assert_int_equal(PQtransactionStatus(db_pg(c)), PQTRANS_IDLE);
    assert_int_equal(count_key(c, "left_open"), 0);
    db_release(c);
    db_pool_free(pool);
}

static void
test_pipeline(void **state)
{
    (void)state;
    db_pool_t *pool = th_pool_new(1);
    db_conn_t *c = db_acquire(pool, 2000);
    assert_non_null(c);
    th_exec_ok(c, "CREATE TEMP TABLE pl_t (k int PRIMARY KEY)");

    const char *one[] = {"1"}, *two[] = {"2"};
    db_query_t ok[3] = {
        {"pl_ins", "INSERT INTO pl_t (k) VALUES ($1)", 1, one},
        {"pl_ins", "INSERT INTO pl_t (k) VALUES ($1)", 1, two},
        {NULL, "SELECT count(*) FROM pl_t", 0, NULL},
    };
    PGresult *res[3];
    assert_int_equal(db_pipeline(c, ok, 3, res), SHOPD_OK);
    for (int i = 0; i < 3; i++)
        assert_int_equal(db_result_rc(res[i]), SHOPD_OK);
    assert_string_equal(PQgetvalue(res[2], 0, 0), "2");
    for (int i = 0; i < 3; i++)
        PQclear(res[i]);
    /* The statement prepared inside the pipeline is reused by db_exec. */
    assert_int_equal(th_query_long(c, "SELECT count(*) FROM pg_prepared_statements"
                                      " WHERE name = 'pl_ins'"),
                     1);

    /* Three statements, the second fails: its error is reported, the third is
     * aborted, and the first is undone with it (one implicit transaction). */
    const char *three[] = {"3"};
    db_query_t bad[3] = {
        {"pl_ins", "INSERT INTO pl_t (k) VALUES ($1)", 1, three},
        {"pl_ins", "INSERT INTO pl_t (k) VALUES ($1)", 1, one},
        {NULL, "SELECT count(*) FROM pl_t", 0, NULL},
    };
    assert_int_equal(db_pipeline(c, bad, 3, res), SHOPD_CONFLICT);
    assert_int_equal(db_result_rc(res[0]), SHOPD_OK);
    assert_int_equal(db_result_rc(res[1]), SHOPD_CONFLICT);
    assert_string_equal(db_sqlstate(res[1]), "23505");
    assert_true(res[2] == NULL || PQresultStatus(res[2]) == PGRES_PIPELINE_ABORTED);
    for (int i = 0; i < 3; i++)
        PQclear(res[i]);
    assert_int_equal(th_query_long(c, "SELECT count(*) FROM pl_t"), 2);

    /* A syntax error in a statement prepared inside the pipeline. */
    db_query_t syn[2] = {
        {"pl_bad", "SELEC 1", 0, NULL},
        {NULL, "SELECT 1", 0, NULL},
    };
    assert_int_equal(db_pipeline(c, syn, 2, res), SHOPD_ERR);
    assert_string_equal(db_sqlstate(res[0]), "42601");
    PQclear(res[0]);
    PQclear(res[1]);

    /* The connection is back in normal mode and usable. */
    assert_int_equal(db_ping(c), SHOPD_OK);
    assert_int_equal(db_pipeline(c, NULL, 0, NULL), SHOPD_OK);
    db_release(c);
    db_pool_free(pool);
}

typedef struct releaser_s {
    db_pool_t *pool;
    db_conn_t *c;
} releaser_t;

/* Releases r->c once the main thread is known to wait in db_acquire (the pool's
 * waiting gauge), so the wake-up itself is what the test sees. */
static void *
release_later(void *arg)
{
    releaser_t *r = arg;
    db_pool_stats_t st;
    for (int i = 0; i < 20000; i++) { /* a 20 s hang guard */
        db_pool_stats(r->pool, &st);
        if (st.waiting > 0)
            break;
        usleep(1000);
    }
    db_release(r->c);
    return NULL;
}

static void
test_pool_exhaustion(void **state)
{
    (void)state;
    db_pool_t *pool = th_pool_new(2);
    db_conn_t *a = db_acquire(pool, 1000), *b = db_acquire(pool, 1000);
    assert_non_null(a);
    assert_non_null(b);
    assert_ptr_not_equal(a, b);

    uint64_t t0 = shopd_now_us();
    assert_null(db_acquire(pool, 150));
    uint64_t waited = shopd_now_us() - t0;
    assert_true(waited >= 140000);
    assert_true(waited < 2000000);

    db_pool_stats_t st;
    db_pool_stats(pool, &st);
    assert_int_equal(st.in_use, 2);
    assert_int_equal(st.timeouts, 1);
    assert_int_equal(st.acquired, 2);

    /* A waiter is woken by a release from another thread. */
    releaser_t rel = {pool, b};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, release_later, &rel), 0);
    db_conn_t *c = db_acquire(pool, 5000);
    assert_ptr_equal(c, b);
    pthread_join(th, NULL);

    db_release(a);
    db_release(c);
    db_pool_stats(pool, &st);
    assert_int_equal(st.in_use, 0);
    assert_int_equal(st.acquired, 3);
    db_pool_free(pool);
}

static void
test_unreachable(void **state)
{
    (void)state;
    char err[256] = "";
    /* Port 1 on loopback: refused at once. */
    db_pool_t *pool = db_pool_new("postgresql://shopd@127.0.0.1:1/shopd", 2, err, sizeof(err));
    assert_null(pool);
    assert_non_null(strstr(err, "cannot connect to PostgreSQL"));
    assert_null(strchr(err, '\n'));

    pool = db_pool_new("postgresql://[bad", 2, err, sizeof(err));
    assert_null(pool);
    assert_non_null(strstr(err, "invalid database URL"));
    assert_int_equal(
        db_migrate("postgresql://shopd@127.0.0.1:1/shopd", "/nonexistent-dir", err, sizeof(err)),
        -1);

    kv_conn_t *kv = kv_conn_new("redis://127.0.0.1:1/0", 500);
    assert_non_null(kv);
    assert_null(kv_command(kv, "PING"));
    assert_int_equal(kv_ping(kv), SHOPD_UNAVAILABLE);
    assert_int_equal(kv_append(kv, "PING"), -1);
    assert_null(kv_get_reply(kv));
    kv_conn_free(kv);
    kv_conn_free(NULL);
    db_pool_free(NULL);
    db_release(NULL);
}

/* ---- migrations --------------------------------------------------------------- */

static void
write_file(const char *dir, const char *name, const char *text)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void
remove_dir(const char *dir)
{
    const char *names[] = {"0001_first.sql",  "0002_second.sql", "0003_third.sql",
                           "0004_broken.sql", "README.md",       "notes.txt"};
    char path[512];
    for (size_t i = 0; i < SHOPD_ARRAY_LEN(names); i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        unlink(path);
    }
    rmdir(dir);
}

static void
test_migrations(void **state)
{
    (void)state;
    char dir[] = "/tmp/shopd-mig-XXXXXX";
    assert_non_null(mkdtemp(dir));

    /* Everything happens in a schema of our own, picked by search_path. */
    char schema[96], url[1024], sql[256];
    snprintf(schema, sizeof(schema), "mig_%s", tag);
    snprintf(url, sizeof(url), "%s%soptions=-csearch_path%%3D%s", db_url,
             strchr(db_url, '?') ? "&" : "?", schema);
    db_pool_t *pool = th_pool_new(1);
    db_conn_t *c = db_acquire(pool, 2000);
    assert_non_null(c);
    snprintf(sql, sizeof(sql), "DROP SCHEMA IF EXISTS %s CASCADE", schema);
    th_exec_ok(c, sql);
    snprintf(sql, sizeof(sql), "CREATE SCHEMA %s", schema);
    th_exec_ok(c, sql);

    write_file(dir, "0001_first.sql",
               "CREATE TABLE widgets (id bigserial PRIMARY KEY, name text NOT NULL);\n"
               "INSERT INTO widgets (name) VALUES ('a'), ('b');\n");
    write_file(dir, "0002_second.sql",
               "-- several statements, one file, one transaction\n"
               "ALTER TABLE widgets ADD COLUMN price bigint NOT NULL DEFAULT 0;\n"
               "CREATE INDEX widgets_name ON widgets (name);\n");
    write_file(dir, "README.md", "not a migration\n");
    write_file(dir, "notes.txt", "not a migration either\n");

    char err[512] = "";
    assert_int_equal(db_migrate(url, dir, err, sizeof(err)), 2);
    assert_int_equal(db_migrate(url, dir, err, sizeof(err)), 0); /* idempotent */

    write_file(dir, "0003_third.sql", "UPDATE widgets SET price = 100;\n");
    assert_int_equal(db_migrate(url, dir, err, sizeof(err)), 1);
    assert_int_equal(db_migrate(url, dir, err, sizeof(err)), 0);

    /* A failing file: nothing of it stays, the error names file and line. */
    write_file(dir, "0004_broken.sql",
               "CREATE TABLE gadgets (id int);\n"
               "INSERT INTO widgets (name) VALUES ('c');\n"
               "SELEC oops;\n");
    assert_int_equal(db_migrate(url, dir, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "0004_broken.sql"));
    assert_non_null(strstr(err, "line 3"));
    assert_non_null(strstr(err, "42601"));

    snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s.schema_migrations", schema);
    assert_int_equal(th_query_long(c, sql), 3);
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s.widgets WHERE price = 100", schema);
    assert_int_equal(th_query_long(c, sql), 2);
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM pg_tables WHERE schemaname = '%s'"
             " AND tablename = 'gadgets'",
             schema);
    assert_int_equal(th_query_long(c, sql), 0);
    snprintf(sql, sizeof(sql),
             "SELECT string_agg(name, ',' ORDER BY version)"
             " FROM %s.schema_migrations",
             schema);
    PGresult *r = db_exec(c, NULL, sql, 0, NULL);
    assert_string_equal(PQgetvalue(r, 0, 0), "0001_first.sql,0002_second.sql,0003_third.sql");
    PQclear(r);

    /* Two versions with the same number are refused before anything runs. */
    write_file(dir, "0004_broken.sql", "SELECT 1;\n");
    char dup[512];
    snprintf(dup, sizeof(dup), "%s/0003_third.sql", dir);
    char dup2[512];
    snprintf(dup2, sizeof(dup2), "%s/0003_again.sql", dir);
    assert_int_equal(link(dup, dup2), 0);
    assert_int_equal(db_migrate(url, dir, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "share version 3"));
    unlink(dup2);

    snprintf(sql, sizeof(sql), "DROP SCHEMA %s CASCADE", schema);
    th_exec_ok(c, sql);
    db_release(c);
    db_pool_free(pool);
    remove_dir(dir);
}

/* ---- reconnect --------------------------------------------------------------- */

static void
terminate_backend(int pid)
{
    PGconn *admin = PQconnectdb(db_url);
    assert_int_equal(PQstatus(admin), CONNECTION_OK);
    char pids[16];
    snprintf(pids, sizeof(pids), "%d", pid);
    const char *p[] = {pids};
    PGresult *r =
        PQexecParams(admin, "SELECT pg_terminate_backend($1::int)", 1, NULL, p, NULL, NULL, 0);
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    assert_string_equal(PQgetvalue(r, 0, 0), "t");
    PQclear(r);
    /* Wait until the backend is really gone, so the test does not race it. */
    for (int i = 0; i < 200; i++) {
        r = PQexecParams(admin, "SELECT count(*) FROM pg_stat_activity WHERE pid = $1::int", 1,
                         NULL, p, NULL, NULL, 0);
        int left = atoi(PQgetvalue(r, 0, 0));
        PQclear(r);
        if (left == 0)
            break;
        usleep(10000);
    }
    PQfinish(admin);
}

static void
test_reconnect_after_backend_killed(void **state)
{
    (void)state;
    db_pool_t *pool = th_pool_new(1);
    const char *p1[] = {"1"};

    /* An idle pooled connection killed by the server: the next acquire
     * notices and hands out a working one. */
    db_conn_t *c = db_acquire(pool, 2000);
    assert_non_null(c);
    int pid = PQbackendPID(db_pg(c));
    PGresult *r = db_exec(c, "rc_one", "SELECT $1::int", 1, p1);
    PQclear(r);
    db_release(c);
    terminate_backend(pid);

    c = db_acquire(pool, 2000);
    assert_non_null(c);
    assert_int_not_equal(PQbackendPID(db_pg(c)), pid);
    /* Prepared statements were forgotten with the old session. */
    r = db_exec(c, "rc_one", "SELECT $1::int", 1, p1);
    assert_int_equal(db_result_rc(r), SHOPD_OK);
    assert_string_equal(PQgetvalue(r, 0, 0), "1");
    PQclear(r);

    db_release(c);

    /* A borrowed connection killed mid-use: whatever runs first on it fails
     * (NULL / UNAVAILABLE, the caller answers 503) without a crash or a hang,
     * later calls fail fast, and the next acquire repairs it. */
    for (int first = 0; first < 5; first++) {
        c = db_acquire(pool, 2000);
        assert_non_null(c);
        terminate_backend(PQbackendPID(db_pg(c)));
        PGresult *res[2] = {NULL, NULL};
        db_query_t qs[2] = {{"rc_one", "SELECT $1::int", 1, p1}, {NULL, "SELECT 2", 0, NULL}};
        switch (first) {
        case 0:
            assert_null(db_exec(c, NULL, "SELECT 1", 0, NULL));
            break;
        case 1:
            assert_null(db_exec(c, "rc_one", "SELECT $1::int", 1, p1));
            break;
        case 2:
            assert_int_equal(db_pipeline(c, qs, 2, res), SHOPD_UNAVAILABLE);
            break;
        case 3: {
            tx_arg_t a = {.key = "never", .ret = SHOPD_OK};
            assert_int_equal(db_tx(c, tx_insert, &a), SHOPD_UNAVAILABLE);
            /* BEGIN rides with fn's first statement: fn runs once, that fails. */
            assert_int_equal(a.calls, 1);
            break;
        }
        case 4:
            assert_int_equal(db_ping(c), SHOPD_UNAVAILABLE);
            break;
        }
        assert_null(res[0]);
        assert_null(res[1]);
        assert_null(db_exec(c, "rc_one", "SELECT $1::int", 1, p1));
        assert_int_equal(db_ping(c), SHOPD_UNAVAILABLE);
        assert_int_equal(db_pipeline(c, qs, 2, res), SHOPD_UNAVAILABLE);
        db_release(c);

        c = db_acquire(pool, 2000);
        assert_non_null(c);
        assert_int_equal(db_pipeline(c, qs, 2, res), SHOPD_OK);
        assert_string_equal(PQgetvalue(res[1], 0, 0), "2");
        PQclear(res[0]);
        PQclear(res[1]);
        db_release(c);
    }

    db_pool_stats_t st;
    db_pool_stats(pool, &st);
    assert_int_equal(st.resets, 6);
    db_pool_free(pool);
}

/* ---- Redis --------------------------------------------------------------------- */

static kv_conn_t *
new_kv(void)
{
    kv_conn_t *kv = kv_conn_new(redis_url, 2000);
    assert_non_null(kv);
    return kv;
}

static void
test_kv_parse_url(void **state)
{
    (void)state;
    char host[64], pw[64];
    int port, db;
    assert_int_equal(
        kv_parse_url("redis://127.0.0.1:6390/3", host, sizeof(host), &port, &db, pw, sizeof(pw)),
        0);
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(port, 6390);
    assert_int_equal(db, 3);
    assert_string_equal(pw, "");

    assert_int_equal(kv_parse_url("redis://:s%40cret@cache.local", host, sizeof(host), &port, &db,
                                  pw, sizeof(pw)),
                     0);
    assert_string_equal(host, "cache.local");
    assert_int_equal(port, 6379);
    assert_int_equal(db, 0);
    assert_string_equal(pw, "s@cret");

    assert_int_equal(
        kv_parse_url("redis://user:pw@[::1]:7000/", host, sizeof(host), &port, &db, pw, sizeof(pw)),
        0);
    assert_string_equal(host, "::1");
    assert_int_equal(port, 7000);
    assert_string_equal(pw, "pw");

    const char *bad[] = {
        "http://x",       "redis://",    "redis://:6379", "redis://h:0",  "redis://h:99999",
        "redis://h:12ab", "redis://h/x", "redis://h?x=1", "redis://[::1", NULL};
    for (int i = 0; bad[i]; i++) {
        if (kv_parse_url(bad[i], host, sizeof(host), &port, &db, pw, sizeof(pw)) != -1)
            fail_msg("accepted %s", bad[i]);
    }
    assert_null(kv_conn_new("nope", 100));
}

static void
test_kv_command(void **state)
{
    (void)state;
    kv_conn_t *kv = new_kv();
    assert_int_equal(kv_ping(kv), SHOPD_OK);

    char key[128];
    snprintf(key, sizeof(key), "test:%s:k", tag);
    redisReply *r = kv_command(kv, "SET %s %s EX 60", key, "hello");
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_STATUS);
    freeReplyObject(r);
    r = kv_command(kv, "GET %s", key);
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    assert_string_equal(r->str, "hello");
    freeReplyObject(r);

    /* An error reply is returned as is. */
    r = kv_command(kv, "INCR %s", key);
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_ERROR);
    freeReplyObject(r);

    /* Binary-safe argument vector. */
    const char bin[] = {'a', '\0', 'b'};
    const char *argv[] = {"SET", key, bin};
    size_t lens[] = {3, strlen(key), sizeof(bin)};
    r = kv_commandv(kv, 3, argv, lens);
    assert_int_equal(r->type, REDIS_REPLY_STATUS);
    freeReplyObject(r);
    r = kv_command(kv, "GET %s", key);
    assert_int_equal(r->len, 3);
    assert_memory_equal(r->str, bin, 3);
    freeReplyObject(r);

    r = kv_command(kv, "DEL %s", key);
    assert_int_equal(r->integer, 1);
    freeReplyObject(r);
    kv_conn_free(kv);
}

static void
test_kv_pipeline(void **state)
{
    (void)state;
    kv_conn_t *kv = new_kv();
    char key[128];
    snprintf(key, sizeof(key), "test:%s:pipe", tag);

    assert_int_equal(kv_append(kv, "DEL %s", key), 0);
    for (int i = 0; i < 5; i++)
        assert_int_equal(kv_append(kv, "RPUSH %s %d", key, i), 0);
    const char *argv[] = {"LRANGE", key, "0", "-1"};
    assert_int_equal(kv_appendv(kv, 4, argv, NULL), 0);
    assert_int_equal(kv_append(kv, "DEL %s", key), 0);

    redisReply *r = kv_get_reply(kv);
    assert_int_equal(r->type, REDIS_REPLY_INTEGER);
    freeReplyObject(r);
    for (int i = 0; i < 5; i++) {
        r = kv_get_reply(kv);
        assert_int_equal(r->type, REDIS_REPLY_INTEGER);
        assert_int_equal(r->integer, i + 1);
        freeReplyObject(r);
    }
    r = kv_get_reply(kv);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_int_equal(r->elements, 5);
    assert_string_equal(r->element[4]->str, "4");
    freeReplyObject(r);
    r = kv_get_reply(kv);
    assert_int_equal(r->integer, 1);
    freeReplyObject(r);
    assert_null(kv_get_reply(kv)); /* nothing pending */

    /* An abandoned pipeline does not leak replies into the next command. */
    assert_int_equal(kv_append(kv, "ECHO %s", "stale"), 0);
    r = kv_command(kv, "ECHO %s", "fresh");
    assert_string_equal(r->str, "fresh");
    freeReplyObject(r);
    kv_conn_free(kv);
}

static long long
client_id(kv_conn_t *kv)
{
    redisReply *r = kv_command(kv, "CLIENT ID");
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_INTEGER);
    long long id = r->integer;
    freeReplyObject(r);
    return id;
}

static void
kill_client(long long id)
{
    kv_conn_t *admin = new_kv();
    redisReply *r = kv_command(admin, "CLIENT KILL ID %lld", id);
    assert_non_null(r);
    assert_int_equal(r->integer, 1);
    freeReplyObject(r);
    /* Wait until Redis has really closed it (CLIENT KILL may only mark it), so the
     * next command meets a closed connection, not one being closed. */
    bool gone = false;
    for (int i = 0; i < 1000 && !gone; i++) {
        r = kv_command(admin, "CLIENT LIST ID %lld", id);
        assert_non_null(r);
        gone = r->str == NULL || r->str[0] == '\0';
        freeReplyObject(r);
        if (!gone)
            usleep(10000);
    }
    assert_true(gone);
    kv_conn_free(admin);
}

static void
test_kv_reconnect(void **state)
{
    (void)state;
    kv_conn_t *kv = new_kv();
    char key[128];
    snprintf(key, sizeof(key), "test:%s:re", tag);

    long long id = client_id(kv);
    kill_client(id);
    /* The killed connection is replaced transparently. */
    redisReply *r = kv_command(kv, "SET %s 1", key);
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_STATUS);
    freeReplyObject(r);
    long long id2 = client_id(kv);
    assert_true(id2 != id);

    /* Same for the argv form and for a pipeline. */
    kill_client(id2);
    const char *argv[] = {"GET", key};
    r = kv_commandv(kv, 2, argv, NULL);
    assert_non_null(r);
    assert_string_equal(r->str, "1");
    freeReplyObject(r);

    kill_client(client_id(kv));
    assert_int_equal(kv_append(kv, "INCR %s", key), 0);
    assert_int_equal(kv_append(kv, "DEL %s", key), 0);
    r = kv_get_reply(kv);
    assert_non_null(r);
    assert_int_equal(r->integer, 2);
    freeReplyObject(r);
    r = kv_get_reply(kv);
    assert_int_equal(r->integer, 1);
    freeReplyObject(r);
    assert_int_equal(kv_ping(kv), SHOPD_OK);
    kv_conn_free(kv);
}

/* How many BLPOP commands Redis has received, abandoned ones included (INFO
 * commandstats). Nothing but this test sends BLPOP (shopd does not). */
static long long
blpop_calls(void)
{
    kv_conn_t *admin = new_kv();
    redisReply *r = kv_command(admin, "INFO commandstats");
    assert_non_null(r);
    assert_non_null(r->str);
    const char *p = strstr(r->str, "cmdstat_blpop:calls=");
    long long n = p ? atoll(p + strlen("cmdstat_blpop:calls=")) : 0;
    freeReplyObject(r);
    kv_conn_free(admin);
    return n;
}

/* A command that outlives the timeout gives NULL once, is not sent again (the
 * server may still run it), and the next command gets a fresh connection. */
static void
test_kv_timeout(void **state)
{
    (void)state;
    kv_conn_t *kv = kv_conn_new(redis_url, 200);
    assert_non_null(kv);
    char key[128];
    snprintf(key, sizeof(key), "test:%s:never", tag);
    long long sent_before = blpop_calls();
    uint64_t t0 = shopd_now_us();
    assert_null(kv_command(kv, "BLPOP %s 60", key));
    uint64_t took = shopd_now_us() - t0;
    assert_true(took >= 180000);
    /* A hang guard only: without the timeout BLPOP would block for 60 s. That
     * it was not sent again is counted by Redis itself. */
    assert_true(took < 20000000);
    assert_int_equal(blpop_calls() - sent_before, 1);
    assert_int_equal(kv_ping(kv), SHOPD_OK);
    kv_conn_free(kv);
}

/* With a non-default db, SELECT happens on every (re)connect. */
static void
test_kv_select_db(void **state)
{
    (void)state;
    char host[256], pw[256], url[512];
    int port, db;
    assert_int_equal(kv_parse_url(redis_url, host, sizeof(host), &port, &db, pw, sizeof(pw)), 0);
    snprintf(url, sizeof(url), "redis://%s:%d/5", host, port);
    kv_conn_t *kv = kv_conn_new(url, 2000);
    assert_non_null(kv);
    redisReply *r = kv_command(kv, "CLIENT INFO");
    assert_non_null(r);
    assert_non_null(strstr(r->str, " db=5 "));
    freeReplyObject(r);
    kill_client(client_id(kv));
    r = kv_command(kv, "CLIENT INFO");
    assert_non_null(strstr(r->str, " db=5 "));
    freeReplyObject(r);
    kv_conn_free(kv);
}

int
main(void)
{
    db_url = th_env("SHOPD_TEST_DATABASE_URL");
    redis_url = th_env("SHOPD_TEST_REDIS_URL");
    char rnd[9];
    shopd_random_hex(rnd, 4);
    snprintf(tag, sizeof(tag), "%d_%s", (int)getpid(), rnd);

    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kv_parse_url),
        cmocka_unit_test(test_unreachable),
        cmocka_unit_test(test_exec_and_prepared_reuse),
        cmocka_unit_test(test_prepared_name_reused),
        cmocka_unit_test(test_result_rc),
        cmocka_unit_test(test_tx_commit_rollback_retry),
        cmocka_unit_test(test_tx_lazy_begin),
        cmocka_unit_test(test_pipeline),
        cmocka_unit_test(test_pool_exhaustion),
        cmocka_unit_test(test_migrations),
        cmocka_unit_test(test_reconnect_after_backend_killed),
        cmocka_unit_test(test_kv_command),
        cmocka_unit_test(test_kv_pipeline),
        cmocka_unit_test(test_kv_reconnect),
        cmocka_unit_test(test_kv_timeout),
        cmocka_unit_test(test_kv_select_db),
    };
    return cmocka_run_group_tests_name("db_kv", tests, NULL, NULL);
}
