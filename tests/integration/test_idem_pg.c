/*
 * test_idem_pg.c: the PostgreSQL path of Idempotency-Key (idem_pg_claim,
 * idem_pg_save, idem_pg_sweep, idem_reply_from_stored) against a real
 * PostgreSQL with the migrations applied: a claim commits with its answer and
 * replays it (binary body, Content-Type, header lines), another fingerprint
 * mismatches, a rolled-back claim leaves nothing, keys are per store, two
 * concurrent claimers of one key (the second waits on the first's row, then
 * replays its answer, or claims the key itself after a rollback), and the
 * sweep of keys older than 24 h.
 *
 * Reads SHOPD_TEST_DATABASE_URL and SHOPD_SQL_DIR and fails without them.
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
#include "shopd/idem.h"

static db_pool_t *pool;

static const char body_bin[] = {'{', '"', 'a', '"', ':', 0, 1, 2, '}'}; /* NUL inside */

/* A fresh key of its own (th_slug's buffer is reused by its next call). */
static const char *
new_key(const char *prefix)
{
    static char ring[16][96];
    static unsigned next;
    char *k = ring[next++ % 16];
    snprintf(k, 96, "%s", th_slug(prefix));
    return k;
}

static void
fp_of(uint8_t fp[IDEM_FP_LEN], int seed)
{
    for (int i = 0; i < IDEM_FP_LEN; i++)
        fp[i] = (uint8_t)(seed * 31 + i);
}

/* What one transaction does with a key. */
typedef struct tx_s {
    uint64_t store;
    const char *key;
    uint8_t fp[IDEM_FP_LEN];
    bool save;       /* on NEW: save the answer */
    bool commit;     /* return OK (commit) or ERR (roll back) */
    bool full_reply; /* save with idem_pg_save_reply (headers, Content-Type) */
    /* Called between the claim and the end of the transaction (may be NULL). */
    void (*between)(struct tx_s *t);
    idem_claim_rc_t rc;
    idem_stored_t got;
} tx_t;

static shopd_rc_t
tx_fn(db_conn_t *c, void *arg)
{
    tx_t *t = arg;
    idem_stored_clear(&t->got); /* a retried attempt starts from nothing */
    t->rc = idem_pg_claim(c, t->store, t->key, t->fp, &t->got);
    if (t->rc == IDEM_UNAVAILABLE)
        return SHOPD_UNAVAILABLE;
    if (t->rc == IDEM_NEW && t->between)
        t->between(t);
    if (t->rc == IDEM_NEW && t->save) {
        shopd_rc_t rc;
        if (t->full_reply) {
            net_reply_t *r = net_reply_new(201);
            net_reply_set_body(r, body_bin, sizeof(body_bin));
            net_reply_add_header(r, "Location", "/api/v1/orders/7");
            net_reply_set_content_type(r, "application/json; charset=utf-8");
            rc = idem_pg_save_reply(c, t->store, t->key, r);
            net_reply_free(r);
        } else {
            rc = idem_pg_save(c, t->store, t->key, SHOPD_CREATED, NULL, body_bin, sizeof(body_bin));
        }
        if (rc != SHOPD_OK)
            return rc;
    }
    return t->commit ? SHOPD_OK : SHOPD_ERR;
}

static idem_claim_rc_t
run_tx(tx_t *t)
{
    db_conn_t *c = db_acquire(pool, 5000);
    assert_non_null(c);
    shopd_rc_t rc = db_tx(c, tx_fn, t);
    db_release(c);
    if (t->commit)
        assert_int_equal(rc, SHOPD_OK);
    return t->rc;
}

static long
rows(uint64_t store, const char *key)
{
    db_conn_t *c = db_acquire(pool, 5000);
    char sid[24];
    snprintf(sid, sizeof(sid), "%llu", (unsigned long long)store);
    const char *p[] = {sid, key};
    PGresult *r = db_exec(
        c, NULL, "SELECT count(*) FROM idempotency_keys WHERE store_id = $1 AND key = $2", 2, p);
    assert_int_equal(db_result_rc(r), SHOPD_OK);
    long n = atol(PQgetvalue(r, 0, 0));
    PQclear(r);
    db_release(c);
    return n;
}

static int
setup(void **state)
{
    char err[256] = "";
    if (db_migrate(th_env("SHOPD_TEST_DATABASE_URL"), th_env("SHOPD_SQL_DIR"), err, sizeof(err)) <
        0) {
        fprintf(stderr, "migrate: %s\n", err);
        return -1;
    }
    pool = th_pool_new(4);
    return 0;
}

static int
teardown(void **state)
{
    db_pool_free(pool);
    return 0;
}

static void
test_claim_save_replay(void **state)
{
    const char *key = new_key("pg-key");
    tx_t t = {.store = 5, .key = key, .save = true, .commit = true};
    fp_of(t.fp, 1);
    assert_int_equal(run_tx(&t), IDEM_NEW);
    assert_int_equal(rows(5, key), 1);

    /* The same request again: the kept answer, byte for byte. */
    tx_t r = {.store = 5, .key = key, .save = true, .commit = false};
    fp_of(r.fp, 1);
    assert_int_equal(run_tx(&r), IDEM_REPLAY);
    assert_int_equal(r.got.status, 201);
    assert_null(r.got.content_type);
    assert_int_equal(r.got.len, sizeof(body_bin));
    assert_memory_equal(r.got.body, body_bin, sizeof(body_bin));
    net_reply_t *rep = idem_reply_from_stored(&r.got);
    assert_int_equal(rep->status, 201);
    assert_int_equal(rep->len, sizeof(body_bin));
    assert_memory_equal(rep->body, body_bin, sizeof(body_bin));
    char v[64];
    assert_non_null(net_reply_header(rep, "Idempotent-Replayed", v, sizeof(v)));
    assert_string_equal(v, "true");
    assert_null(rep->content_type);
    net_reply_free(rep);
    idem_stored_clear(&r.got);

    /* Another request under the key: a mismatch, nothing changes. */
    tx_t m = {.store = 5, .key = key, .save = true, .commit = false};
    fp_of(m.fp, 2);
    assert_int_equal(run_tx(&m), IDEM_MISMATCH);
    assert_int_equal(rows(5, key), 1);

    /* The same key in another store is another key. */
    tx_t o = {.store = 6, .key = key, .save = true, .commit = true};
    fp_of(o.fp, 2);
    assert_int_equal(run_tx(&o), IDEM_NEW);
    assert_int_equal(rows(6, key), 1);
}

static void
test_full_reply(void **state)
{
    const char *key = new_key("pg-full");
    tx_t t = {.store = 0, .key = key, .save = true, .commit = true, .full_reply = true};
    fp_of(t.fp, 3);
    assert_int_equal(run_tx(&t), IDEM_NEW);
    tx_t r = {.store = 0, .key = key, .commit = false};
    fp_of(r.fp, 3);
    assert_int_equal(run_tx(&r), IDEM_REPLAY);
    net_reply_t *rep = idem_reply_from_stored(&r.got);
    assert_int_equal(rep->status, 201);
    assert_string_equal(rep->content_type, "application/json; charset=utf-8");
    char v[64];
    assert_non_null(net_reply_header(rep, "Location", v, sizeof(v)));
    assert_string_equal(v, "/api/v1/orders/7");
    assert_non_null(net_reply_header(rep, "idempotent-replayed", v, sizeof(v)));
    assert_memory_equal(rep->body, body_bin, sizeof(body_bin));
    net_reply_t *copy = net_reply_copy(rep); /* the copy owns its own Content-Type */
    net_reply_free(rep);
    assert_string_equal(copy->content_type, "application/json; charset=utf-8");
    assert_non_null(net_reply_header(copy, "Location", v, sizeof(v)));
    net_reply_free(copy);
    idem_stored_clear(&r.got);
}

static void
test_rollback_forgets(void **state)
{
    const char *key = new_key("pg-rb");
    tx_t t = {.store = 5, .key = key, .save = true, .commit = false};
    fp_of(t.fp, 4);
    assert_int_equal(run_tx(&t), IDEM_NEW);
    assert_int_equal(rows(5, key), 0); /* gone with the effect's rollback */
    tx_t again = {.store = 5, .key = key, .save = true, .commit = true};
    fp_of(again.fp, 5); /* even another request may take it now */
    assert_int_equal(run_tx(&again), IDEM_NEW);

    /* Saving a key never claimed saves nothing. */
    db_conn_t *c = db_acquire(pool, 5000);
    assert_int_equal(idem_pg_save(c, 5, new_key("pg-none"), 200, NULL, "{}", 2), SHOPD_NOTFOUND);
    db_release(c);
}

/* ---- two claimers of one key at once ---- */

static tx_t second;

static void *
second_thread(void *arg)
{
    run_tx(&second);
    return NULL;
}

/* True once a session waits on a lock while claiming a key. */
static bool
someone_waits(void *arg)
{
    db_conn_t *c = db_acquire(pool, 5000);
    long n = th_query_long(c, "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = "
                              "'Lock' AND query LIKE 'INSERT INTO idempotency_keys%'");
    db_release(c);
    return n > 0;
}

static pthread_t second_tid;

/* Inside the first claimer's transaction, after its claim: start the second
 * claimer and wait until it blocks on the first's uncommitted row. */
static void
start_second_and_wait(tx_t *t)
{
    pthread_create(&second_tid, NULL, second_thread, NULL);
    assert_true(th_wait_until(someone_waits, NULL, 10000));
}

static void
concurrent(bool first_commits)
{
    const char *key = new_key("pg-conc");
    tx_t first = {.store = 9,
                  .key = key,
                  .save = true,
                  .commit = first_commits,
                  .between = start_second_and_wait};
    fp_of(first.fp, 7);
    second = (tx_t){.store = 9, .key = key, .save = true, .commit = true};
    fp_of(second.fp, 7);
    assert_int_equal(run_tx(&first), IDEM_NEW);
    pthread_join(second_tid, NULL);
    if (first_commits) {
        assert_int_equal(second.rc, IDEM_REPLAY); /* waited, then saw the answer */
        assert_int_equal(second.got.status, 201);
        assert_memory_equal(second.got.body, body_bin, sizeof(body_bin));
    } else {
        assert_int_equal(second.rc, IDEM_NEW); /* the first rolled back: its turn */
    }
    idem_stored_clear(&second.got);
    assert_int_equal(rows(9, key), 1);
}

static void
test_concurrent_claimers_commit(void **state)
{
    concurrent(true);
}

static void
test_concurrent_claimers_rollback(void **state)
{
    concurrent(false);
}

static void
test_sweep(void **state)
{
    const char *old = new_key("pg-old"), *fresh = new_key("pg-fresh");
    tx_t a = {.store = 11, .key = old, .save = true, .commit = true};
    tx_t b = {.store = 11, .key = fresh, .save = true, .commit = true};
    fp_of(a.fp, 8);
    fp_of(b.fp, 8);
    run_tx(&a);
    run_tx(&b);
    db_conn_t *c = db_acquire(pool, 5000);
    const char *p[] = {old};
    PGresult *r = db_exec(c, NULL,
                          "UPDATE idempotency_keys SET created_at = now() - interval '25 hours' "
                          "WHERE store_id = 11 AND key = $1",
                          1, p);
    assert_int_equal(db_result_rc(r), SHOPD_OK);
    PQclear(r);
    long total = th_query_long(c, "SELECT count(*) FROM idempotency_keys WHERE created_at < "
                                  "now() - interval '24 hours'");
    assert_int_equal(total, 1);
    assert_int_equal(idem_pg_sweep(c, IDEM_TTL_S, 100), 1);
    assert_int_equal(idem_pg_sweep(c, IDEM_TTL_S, 100), 0);
    db_release(c);
    assert_int_equal(rows(11, old), 0);
    assert_int_equal(rows(11, fresh), 1);
    /* Swept: the key is free again. */
    tx_t again = {.store = 11, .key = old, .commit = false};
    fp_of(again.fp, 9);
    assert_int_equal(run_tx(&again), IDEM_NEW);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_claim_save_replay),
        cmocka_unit_test(test_full_reply),
        cmocka_unit_test(test_rollback_forgets),
        cmocka_unit_test(test_concurrent_claimers_commit),
        cmocka_unit_test(test_concurrent_claimers_rollback),
        cmocka_unit_test(test_sweep),
    };
    return cmocka_run_group_tests_name("idem_pg", tests, setup, teardown);
}
