/*
 * GET /api/v1/admin/inventory/low-stock (catalog module), against the real
 * binary: variants at or below the threshold, lowest stock first then by id,
 * archived products left out, limit honoured, bad parameters 422 / 400, store
 * admins only, and another store's variants never listed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "harness.h"

static th_server_t *srv;
static long store_a, store_b;
static char *admin_a, *admin_b, *customer_a;

static void
import(long store, const char *token, const char *body)
{
    th_resp_t r = th_store_req(srv, store, token, "POST", "/api/v1/imports/products", body);
    if (r.status != 200)
        fprintf(stderr, "import: %ld %.*s\n", r.status, (int)r.len, r.body);
    assert_int_equal(r.status, 200);
    assert_int_equal(json_array_size(json_object_get(r.json, "rejected")), 0);
    th_resp_free(&r);
}

static int
setup(void **state)
{
    srv = th_start(NULL);
    store_a = th_create_store(srv, th_slug("lowa"), NULL);
    store_b = th_create_store(srv, th_slug("lowb"), NULL);
    admin_a = th_token(srv, "STORE_ADMIN", store_a);
    admin_b = th_token(srv, "STORE_ADMIN", store_b);
    customer_a = th_token(srv, "CUSTOMER", store_a);
    import(store_a, admin_a,
           "{\"rows\":["
           "{\"name\":\"Tee\",\"base_price\":1000,\"status\":\"active\",\"variants\":["
           "{\"sku\":\"A-TEE-S\",\"options\":{\"Size\":\"S\"},\"stock\":0},"
           "{\"sku\":\"A-TEE-M\",\"options\":{\"Size\":\"M\"},\"stock\":3},"
           "{\"sku\":\"A-TEE-L\",\"options\":{\"Size\":\"L\"},\"stock\":40}]},"
           "{\"name\":\"Mug\",\"base_price\":900,\"status\":\"draft\",\"variants\":["
           "{\"sku\":\"A-MUG\",\"stock\":3}]},"
           "{\"name\":\"Old cap\",\"base_price\":500,\"status\":\"archived\",\"variants\":["
           "{\"sku\":\"A-CAP\",\"stock\":0}]}]}");
    import(store_b, admin_b,
           "{\"rows\":[{\"name\":\"B thing\",\"base_price\":100,\"status\":\"active\","
           "\"variants\":[{\"sku\":\"B-1\",\"stock\":1}]}]}");
    return 0;
}

static int
teardown(void **state)
{
    free(admin_a);
    free(admin_b);
    free(customer_a);
    return 0;
}

static th_resp_t
low(long store, const char *token, const char *query, long status)
{
    char path[256];
    snprintf(path, sizeof(path), "/api/v1/admin/inventory/low-stock%s", query);
    th_resp_t r = th_store_req(srv, store, token, "GET", path, NULL);
    if (r.status != status)
        fprintf(stderr, "%s: %ld %.*s\n", path, r.status, (int)r.len, r.body);
    assert_int_equal(r.status, status);
    return r;
}

static const char *
sku(const th_resp_t *r, size_t i)
{
    return json_string_value(
        json_object_get(json_array_get(json_object_get(r->json, "data"), i), "sku"));
}

static void
test_lists_lowest_first(void **state)
{
    th_resp_t r = low(store_a, admin_a, "", 200);
    json_t *data = json_object_get(r.json, "data");
    assert_int_equal(json_integer_value(json_object_get(r.json, "threshold")), 5);
    assert_int_equal(json_array_size(data), 3); /* S (0), M (3), mug (3); not L, not the cap */
    assert_string_equal(sku(&r, 0), "A-TEE-S");
    assert_string_equal(sku(&r, 1), "A-TEE-M");
    assert_string_equal(sku(&r, 2), "A-MUG");
    json_t *first = json_array_get(data, 0);
    assert_int_equal(json_integer_value(json_object_get(first, "stock")), 0);
    assert_string_equal(json_string_value(json_object_get(first, "product_name")), "Tee");
    assert_string_equal(json_string_value(json_object_get(first, "product_status")), "active");
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(first, "options"), "Size")), "S");
    th_resp_free(&r);

    r = low(store_a, admin_a, "?threshold=0", 200);
    assert_int_equal(json_array_size(json_object_get(r.json, "data")), 1);
    assert_string_equal(sku(&r, 0), "A-TEE-S");
    th_resp_free(&r);

    r = low(store_a, admin_a, "?threshold=100&limit=2", 200);
    assert_int_equal(json_array_size(json_object_get(r.json, "data")), 2);
    assert_int_equal(json_integer_value(json_object_get(r.json, "limit")), 2);
    th_resp_free(&r);

    r = low(store_a, admin_a, "?threshold=100", 200);
    assert_int_equal(json_array_size(json_object_get(r.json, "data")), 4);
    assert_string_equal(sku(&r, 3), "A-TEE-L");
    th_resp_free(&r);
}

static void
test_bad_input(void **state)
{
    static const char *const bad[] = {"?threshold=-1", "?threshold=x",   "?limit=0",
                                      "?limit=201",    "?threshold=1e3", "?limit="};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        th_resp_t r = low(store_a, admin_a, bad[i], 422);
        assert_string_equal(th_error_code(&r), "validation_failed");
        th_resp_free(&r);
    }
    th_resp_t r = low(store_a, admin_a, "?stock=1", 400);
    assert_string_equal(th_error_code(&r), "invalid_query");
    th_resp_free(&r);
}

static void
test_access_and_isolation(void **state)
{
    th_resp_t r = low(store_a, NULL, "", 401);
    th_resp_free(&r);
    r = low(store_a, customer_a, "", 403);
    th_resp_free(&r);
    r = low(store_a, admin_b, "", 403); /* B's admin on A */
    th_resp_free(&r);
    r = low(store_b, admin_b, "?threshold=100", 200);
    json_t *data = json_object_get(r.json, "data");
    assert_int_equal(json_array_size(data), 1);
    assert_string_equal(sku(&r, 0), "B-1");
    th_resp_free(&r);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lists_lowest_first),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_access_and_isolation),
        TH_STOP_TEST,
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
