/*
 * The bulk import (POST /api/v1/imports/products, products.import) against
 * the real binary: three batches of 1000 rows with their variants and stock,
 * some rows bad in every way the import checks (a field, a variant field,
 * twins in the batch, a slug and a SKU taken by an earlier batch, an unknown
 * category, the same options twice, not an object). Checked: the counts and
 * each rejection's index and code, that a rejected row left nothing (not its
 * product, not its other variants), the stock of every variant and the ledger
 * identity (stock = sum of its movements, one "initial stock" row each), the
 * categories named by slug made once, the public catalog showing the rows,
 * and the body's own bounds.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "harness.h"

#define BATCH 1000
#define BATCHES 3

static th_server_t *srv;
static long store;
static char *admin;
static char sid[32];

static int
setup(void **state)
{
    (void)state;
    srv = th_start(NULL);
    store = th_create_store(srv, th_slug("imp"), NULL);
    snprintf(sid, sizeof(sid), "%ld", store);
    admin = th_token(srv, "STORE_ADMIN", store);
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    free(admin);
    if (srv == NULL)
        return -1;
    th_stop(srv);
    return 0;
}

static const char *
count(const char *sql)
{
    return th_sql(sql, (const char *[]){sid, NULL});
}

/* Row g (0-based over the whole import): product imp-g with 2 variants of
 * stock g % 7 and g % 5, in category imp-cat-(g % 3) by slug. */
static json_t *
good_row(int g)
{
    char name[64], slug[64], sku1[64], sku2[64], cat[32];
    snprintf(name, sizeof(name), "Imported %d", g);
    snprintf(slug, sizeof(slug), "imp-%d", g);
    snprintf(sku1, sizeof(sku1), "IMP-%d-A", g);
    snprintf(sku2, sizeof(sku2), "IMP-%d-B", g);
    snprintf(cat, sizeof(cat), "imp-cat-%d", g % 3);
    return json_pack("{s:s,s:s,s:i,s:s,s:s,s:[{s:s,s:{s:s},s:i},{s:s,s:{s:s},s:i,s:i}]}", "name",
                     name, "slug", slug, "base_price", 100 + g, "status", "active", "category", cat,
                     "variants", "sku", sku1, "options", "size", "A", "stock", g % 7, "sku", sku2,
                     "options", "size", "B", "stock", g % 5, "price", 999);
}

typedef struct bad_s {
    int g;            /* the row's place in the whole import */
    const char *code; /* the rejection expected */
} bad_t;

/* The bad rows: each replaces good_row(g) (its slug is not imported). */
static const bad_t bads[] = {
    {10, "validation_failed"},   /* base_price not an integer */
    {20, "validation_failed"},   /* a variant's stock below 0: the product is not made either */
    {30, "slug_taken"},          /* the slug of row 5, same batch */
    {40, "sku_taken"},           /* a SKU of row 6, same batch */
    {1010, "slug_taken"},        /* the slug of row 7, an earlier batch */
    {1020, "sku_taken"},         /* a SKU of row 8, an earlier batch */
    {1030, "validation_failed"}, /* no such category_id */
    {2040, "validation_failed"}, /* the same options twice */
    {2050, "validation_failed"}, /* not an object */
    {2060, "validation_failed"}, /* an unknown field */
};

static json_t *
bad_row(int g)
{
    json_t *r = good_row(g);
    json_t *v0 = json_array_get(json_object_get(r, "variants"), 0);
    switch (g) {
    case 10:
        json_object_set_new(r, "base_price", json_string("free"));
        break;
    case 20:
        json_object_set_new(json_array_get(json_object_get(r, "variants"), 1), "stock",
                            json_integer(-1));
        break;
    case 30:
        json_object_set_new(r, "slug", json_string("imp-5"));
        break;
    case 40:
        json_object_set_new(v0, "sku", json_string("IMP-6-A"));
        break;
    case 1010:
        json_object_set_new(r, "slug", json_string("imp-7"));
        break;
    case 1020:
        json_object_set_new(v0, "sku", json_string("IMP-8-B"));
        break;
    case 1030:
        json_object_del(r, "category");
        json_object_set_new(r, "category_id", json_integer(999999999));
        break;
    case 2040:
        json_object_set_new(v0, "options", json_pack("{s:s}", "size", "B"));
        break;
    case 2050:
        json_decref(r);
        return json_string("not a row");
    default:
        json_object_set_new(r, "colour", json_string("red"));
        break;
    }
    return r;
}

static const bad_t *
bad_at(int g)
{
    for (size_t i = 0; i < sizeof(bads) / sizeof(bads[0]); i++)
        if (bads[i].g == g)
            return &bads[i];
    return NULL;
}

static void
test_import_batches(void **state)
{
    (void)state;
    long want_stock = 0, want_variants = 0, want_moves = 0;
    for (int b = 0; b < BATCHES; b++) {
        json_t *rows = json_array();
        for (int k = 0; k < BATCH; k++) {
            int g = b * BATCH + k;
            json_array_append_new(rows, bad_at(g) ? bad_row(g) : good_row(g));
            if (!bad_at(g)) {
                want_stock += g % 7 + g % 5;
                want_variants += 2;
                want_moves += (g % 7 > 0) + (g % 5 > 0);
            }
        }
        json_t *doc = json_pack("{s:o}", "rows", rows);
        char *body = json_dumps(doc, JSON_COMPACT);
        json_decref(doc);
        th_resp_t r = th_store_req(srv, store, admin, "POST", "/api/v1/imports/products", body);
        free(body);
        assert_int_equal(r.status, 200);
        json_t *rej = json_object_get(r.json, "rejected");
        size_t nbad = 0;
        for (int k = 0; k < BATCH; k++)
            nbad += bad_at(b * BATCH + k) != NULL;
        assert_int_equal(json_array_size(rej), nbad);
        assert_int_equal(json_integer_value(json_object_get(r.json, "imported")), BATCH - nbad);
        assert_int_equal(json_integer_value(json_object_get(r.json, "variants")),
                         2 * (BATCH - nbad));
        /* The three categories are made by the first batch, and only then. */
        assert_int_equal(json_integer_value(json_object_get(r.json, "categories_created")),
                         b == 0 ? 3 : 0);
        size_t i;
        json_t *x;
        json_array_foreach(rej, i, x)
        {
            int g = b * BATCH + (int)json_integer_value(json_object_get(x, "index"));
            const bad_t *want = bad_at(g);
            assert_non_null(want);
            assert_string_equal(json_string_value(json_object_get(x, "code")), want->code);
            assert_true(json_is_array(json_object_get(x, "details")));
        }
        th_resp_free(&r);
    }
    char buf[64];
    snprintf(buf, sizeof(buf), "%d", BATCHES * BATCH - (int)(sizeof(bads) / sizeof(bads[0])));
    assert_string_equal(count("SELECT count(*) FROM products WHERE store_id = $1::bigint"), buf);
    snprintf(buf, sizeof(buf), "%ld", want_variants);
    assert_string_equal(count("SELECT count(*) FROM product_variants WHERE store_id = $1::bigint"),
                        buf);
    snprintf(buf, sizeof(buf), "%ld", want_stock);
    assert_string_equal(
        count("SELECT sum(stock) FROM product_variants WHERE store_id = $1::bigint"), buf);
    snprintf(buf, sizeof(buf), "%ld", want_moves);
    assert_string_equal(count("SELECT count(*) FROM inventory_movements WHERE store_id = "
                              "$1::bigint AND reason = 'initial stock'"),
                        buf);
    /* The ledger identity, variant by variant. */
    assert_string_equal(
        count("SELECT count(*) FROM product_variants v WHERE v.store_id = $1::bigint AND v.stock "
              "<> (SELECT coalesce(sum(delta), 0) FROM inventory_movements m WHERE m.store_id = "
              "v.store_id AND m.variant_id = v.id)"),
        "0");
    /* Each variant has the stock its row gave it (imp-g: g % 7 and g % 5). */
    assert_string_equal(
        count("SELECT count(*) FROM product_variants v JOIN products p ON p.store_id = v.store_id "
              "AND p.id = v.product_id WHERE v.store_id = $1::bigint AND v.stock <> CASE WHEN "
              "v.sku LIKE '%-A' THEN substr(p.slug, 5)::int % 7 ELSE substr(p.slug, 5)::int % 5 "
              "END"),
        "0");
    /* Nothing of a rejected row: row 20's product (its first variant was fine). */
    assert_string_equal(
        count("SELECT count(*) FROM products WHERE store_id = $1::bigint AND slug = 'imp-20'"),
        "0");
    assert_string_equal(count("SELECT count(*) FROM product_variants WHERE store_id = $1::bigint "
                              "AND sku = 'IMP-20-A'"),
                        "0");
    /* The first writer keeps the slug: imp-5 is row 5's, not row 30's. */
    assert_string_equal(count("SELECT name FROM products WHERE store_id = $1::bigint AND slug = "
                              "'imp-5'"),
                        "Imported 5");
    assert_string_equal(count("SELECT count(*) FROM categories WHERE store_id = $1::bigint"), "3");
    assert_string_equal(
        count("SELECT count(*) FROM products p JOIN categories c ON c.store_id = p.store_id AND "
              "c.id = p.category_id WHERE p.store_id = $1::bigint AND c.slug = 'imp-cat-' || "
              "(substr(p.slug, 5)::int % 3)"),
        count("SELECT count(*) FROM products WHERE store_id = $1::bigint"));
    /* The public catalog shows an imported product with its variants and prices
     * (the catalog version was bumped, so no page cached before is served). */
    th_resp_t r = th_store_req(srv, store, NULL, "GET", "/api/v1/products/imp-2999", NULL);
    assert_int_equal(r.status, 200);
    json_t *vs = json_object_get(r.json, "variants");
    assert_int_equal(json_array_size(vs), 2);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(vs, 0), "price")),
                     100 + 2999);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(vs, 1), "price")), 999);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(r.json, "category"), "slug")),
        "imp-cat-2");
    th_resp_free(&r);
}

/* Importing rows 0..49 again (fixed): the 46 that went in are refused
 * slug_taken and left as they are; the 4 refused the first time (10, 20, 30,
 * 40) go in now, with their variants. */
static void
test_import_repeat(void **state)
{
    (void)state;
    long before = atol(count("SELECT count(*) FROM product_variants WHERE store_id = $1::bigint"));
    json_t *rows = json_array();
    for (int g = 0; g < 50; g++)
        json_array_append_new(rows, good_row(g));
    json_t *doc = json_pack("{s:o}", "rows", rows);
    char *body = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    th_resp_t r = th_store_req(srv, store, admin, "POST", "/api/v1/imports/products", body);
    free(body);
    assert_int_equal(r.status, 200);
    assert_int_equal(json_integer_value(json_object_get(r.json, "imported")), 4);
    json_t *rej = json_object_get(r.json, "rejected");
    assert_int_equal(json_array_size(rej), 46);
    size_t i;
    json_t *x;
    json_array_foreach(rej, i, x)
    {
        assert_string_equal(json_string_value(json_object_get(x, "code")), "slug_taken");
        json_int_t g = json_integer_value(json_object_get(x, "index"));
        assert_true(g != 10 && g != 20 && g != 30 && g != 40);
    }
    th_resp_free(&r);
    assert_int_equal(
        atol(count("SELECT count(*) FROM product_variants WHERE store_id = $1::bigint")),
        before + 8);
    assert_string_equal(
        count("SELECT count(*) FROM product_variants v WHERE v.store_id = $1::bigint AND v.stock "
              "<> (SELECT coalesce(sum(delta), 0) FROM inventory_movements m WHERE m.store_id = "
              "v.store_id AND m.variant_id = v.id)"),
        "0");
}

/* The body's own bounds: rows required, 1 to 1000, nothing else; a customer may not. */
static void
test_import_bounds(void **state)
{
    (void)state;
    th_resp_t r = th_store_req(srv, store, admin, "POST", "/api/v1/imports/products", "{}");
    assert_int_equal(r.status, 422);
    assert_string_equal(th_error_code(&r), "validation_failed");
    th_resp_free(&r);
    r = th_store_req(srv, store, admin, "POST", "/api/v1/imports/products",
                     "{\"rows\":[],\"x\":1}");
    assert_int_equal(r.status, 422);
    th_resp_free(&r);
    json_t *rows = json_array();
    for (int i = 0; i < 1001; i++)
        json_array_append_new(rows, json_pack("{s:s,s:i}", "name", "x", "base_price", 1));
    json_t *doc = json_pack("{s:o}", "rows", rows);
    char *body = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    r = th_store_req(srv, store, admin, "POST", "/api/v1/imports/products", body);
    free(body);
    assert_int_equal(r.status, 422);
    th_resp_free(&r);
    char *cust = th_token(srv, "CUSTOMER", store);
    r = th_store_req(srv, store, cust, "POST", "/api/v1/imports/products",
                     "{\"rows\":[{\"name\":\"x\",\"base_price\":1}]}");
    assert_int_equal(r.status, 403);
    th_resp_free(&r);
    free(cust);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_import_batches),
        cmocka_unit_test(test_import_repeat),
        cmocka_unit_test(test_import_bounds),
        TH_STOP_TEST,
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
