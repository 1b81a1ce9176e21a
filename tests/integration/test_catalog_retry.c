/*
 * test_catalog_retry.c: catalog writes are transactions that run again after
 * a serialization failure or a deadlock, seen from outside. A trigger scoped
 * to this test's store raises 40001 or 40P01 on its first firings (a sequence
 * counts the firings, and sequences are not rolled back); the request still
 * succeeds, and the data shows it was applied exactly once. Past the retries
 * the client gets the conflict and nothing is left behind.
 *
 * Other tests share the database: the triggers do nothing for other stores
 * and are dropped at the end.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "harness.h"

static th_server_t *srv;
static long store;
static char *admin;

static th_resp_t
rq(const char *method, const char *path, const char *body)
{
    char tenant[64], auth[1024];
    th_auth_header(auth, sizeof(auth), admin);
    snprintf(tenant, sizeof(tenant), "X-Tenant-Id: %ld", store);
    const char *h[3] = {tenant, auth, NULL};
    return th_req(srv, method, path, h, body);
}

/* Makes `table`'s BEFORE INSERT trigger raise `state` on its first `times` firings
 * for this store. Returns the name of the sequence that counts the firings. */
static const char *
fail_inserts(const char *table, const char *state, int times)
{
    static char seq[96];
    char sql[1024];
    snprintf(seq, sizeof(seq), "shopd_test_retry_%ld_%s", store, table);
    snprintf(sql, sizeof(sql), "CREATE SEQUENCE %s", seq);
    th_sql(sql, NULL);
    snprintf(sql, sizeof(sql),
             "CREATE FUNCTION %s_f() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
             " IF NEW.store_id = %ld AND nextval('%s') <= %d THEN"
             " RAISE EXCEPTION 'injected by test_catalog_retry' USING ERRCODE = '%s'; END IF;"
             " RETURN NEW; END $$",
             seq, store, seq, times, state);
    th_sql(sql, NULL);
    snprintf(sql, sizeof(sql),
             "CREATE TRIGGER %s_t BEFORE INSERT ON %s FOR EACH ROW EXECUTE FUNCTION %s_f()", seq,
             table, seq);
    th_sql(sql, NULL);
    return seq;
}

static void
stop_failing(const char *table)
{
    char sql[512], seq[96];
    snprintf(seq, sizeof(seq), "shopd_test_retry_%ld_%s", store, table);
    snprintf(sql, sizeof(sql), "DROP TRIGGER %s_t ON %s", seq, table);
    th_sql(sql, NULL);
    snprintf(sql, sizeof(sql), "DROP FUNCTION %s_f()", seq);
    th_sql(sql, NULL);
    snprintf(sql, sizeof(sql), "DROP SEQUENCE %s", seq);
    th_sql(sql, NULL);
}

/* Firings counted by the sequence so far. */
static long
firings(const char *seq)
{
    char sql[256];
    snprintf(sql, sizeof(sql), "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM %s",
             seq);
    return atol(th_sql(sql, NULL));
}

static long
count_rows(const char *sql)
{
    char sid[24];
    snprintf(sid, sizeof(sid), "%ld", store);
    const char *p[] = {sid, NULL};
    return atol(th_sql(sql, p));
}

static int
setup(void **state)
{
    (void)state;
    srv = th_start(NULL);
    char slug[64];
    snprintf(slug, sizeof(slug), "%s", th_slug("retry"));
    store = th_create_store(srv, slug, NULL);
    admin = th_token(srv, "STORE_ADMIN", store);
    return 0;
}

/* Last in the list: a failed assertion in a group teardown does not fail the
 * program (cmocka 1.1.5), so the clean exit of the server is checked here. */
static void
test_server_stops_cleanly(void **state)
{
    (void)state;
    int rc = th_stop(srv);
    srv = NULL;
    assert_int_equal(rc, 0);
}

static int
teardown(void **state)
{
    (void)state;
    free(admin);
    if (srv != NULL)
        th_stop(srv); /* a test failed before the stop test */
    return 0;
}

static void
test_write_retried_after_serialization_failure(void **state)
{
    (void)state;
    const char *seq = fail_inserts("categories", "40001", 1);
    th_resp_t r = rq("POST", "/api/v1/categories", "{\"name\":\"Retried\"}");
    long fired = firings(seq);
    stop_failing("categories");
    if (r.status != 201)
        print_error("%s\n", r.body);
    assert_int_equal(r.status, 201);
    th_resp_free(&r);
    assert_int_equal(fired, 2); /* the failed attempt and the one that committed */
    assert_int_equal(
        count_rows(
            "SELECT count(*) FROM categories WHERE store_id = $1::bigint AND name = 'Retried'"),
        1);
}

static void
test_write_gives_up_after_retries(void **state)
{
    (void)state;
    const char *seq = fail_inserts("products", "40P01", 100);
    th_resp_t r = rq("POST", "/api/v1/products", "{\"name\":\"Never\",\"base_price\":100}");
    long fired = firings(seq);
    stop_failing("products");
    assert_int_equal(r.status, 409);
    th_resp_free(&r);
    assert_int_equal(fired, 4); /* 1 + 3 retries */
    assert_int_equal(
        count_rows("SELECT count(*) FROM products WHERE store_id = $1::bigint AND name = 'Never'"),
        0);
}

static void
test_inventory_batch_retried_after_deadlock(void **state)
{
    (void)state;
    th_resp_t r = rq("POST", "/api/v1/products", "{\"name\":\"Stocked\",\"base_price\":100}");
    assert_int_equal(r.status, 201);
    long pid = (long)json_integer_value(json_object_get(r.json, "id"));
    th_resp_free(&r);
    char path[128];
    snprintf(path, sizeof(path), "/api/v1/products/%ld/variants", pid);
    r = rq("POST", path, "{\"sku\":\"RETRY-1\",\"stock\":5}");
    assert_int_equal(r.status, 201);
    long vid = (long)json_integer_value(json_object_get(r.json, "id"));
    th_resp_free(&r);

    const char *seq = fail_inserts("inventory_movements", "40P01", 1);
    snprintf(path, sizeof(path), "/api/v1/variants/%ld/inventory", vid);
    r = rq("PATCH", path, "{\"adjust\":-2}");
    long fired = firings(seq);
    stop_failing("inventory_movements");
    if (r.status != 200)
        print_error("%s\n", r.body);
    assert_int_equal(r.status, 200);
    assert_int_equal(json_integer_value(json_object_get(r.json, "stock")), 3);
    th_resp_free(&r);
    assert_int_equal(fired, 2);
    /* Applied once: the initial-stock row and one adjustment, and stock matches. */
    char sid[24], v[24];
    snprintf(sid, sizeof(sid), "%ld", store);
    snprintf(v, sizeof(v), "%ld", vid);
    const char *p[] = {sid, v, NULL};
    assert_int_equal(
        atol(th_sql("SELECT count(*) FROM inventory_movements WHERE store_id = $1::bigint"
                    " AND variant_id = $2::bigint",
                    p)),
        2);
    assert_int_equal(atol(th_sql("SELECT stock FROM product_variants WHERE store_id = $1::bigint"
                                 " AND id = $2::bigint",
                                 p)),
                     3);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_write_retried_after_serialization_failure),
        cmocka_unit_test(test_write_gives_up_after_retries),
        cmocka_unit_test(test_inventory_batch_retried_after_deadlock),
        cmocka_unit_test(test_server_stops_cleanly),
    };
    return cmocka_run_group_tests_name("catalog_retry", tests, setup, teardown);
}
