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
 * and the body's own bounds. Then, in a store of its own, imported products
 * beside products made through the API: their search columns are what the
 * trigger computes (sql/0021: the import writes them itself), search finds
 * them by name, SKU and option value as it finds the API's, the catalog counts
 * and the list totals count both, and a batch whose rows hit a slug and a SKU
 * the API took refuses those rows alone, with nothing of them written.
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

/* ------------------------------------------------------------ search and counts */

static long store2;
static char *admin2;
static char sid2[32];

static const char *
q2(const char *sql)
{
    return th_sql(sql, (const char *[]){sid2, NULL});
}

static th_resp_t
post2(const char *path, const char *body)
{
    return th_store_req(srv, store2, admin2, "POST", path, body);
}

static long
api_create(const char *path, const char *body)
{
    th_resp_t r = post2(path, body);
    if (r.status != 201)
        fail_msg("POST %s %s: %ld %s", path, body, r.status, r.body);
    long id = (long)json_integer_value(json_object_get(r.json, "id"));
    th_resp_free(&r);
    return id;
}

/* An API product with variants, as products.create then variants.create make it. */
static void
api_product(const char *fields, const char *const *variants)
{
    char body[1024], path[96];
    snprintf(body, sizeof(body), "{%s}", fields);
    long id = api_create("/api/v1/products", body);
    snprintf(path, sizeof(path), "/api/v1/products/%ld/variants", id);
    for (size_t i = 0; variants && variants[i]; i++)
        api_create(path, variants[i]);
}

static json_t *
import2(const char *rows_json)
{
    char *body = NULL;
    size_t n = strlen(rows_json) + 16;
    body = malloc(n);
    snprintf(body, n, "{\"rows\":%s}", rows_json);
    th_resp_t r = post2("/api/v1/imports/products", body);
    free(body);
    if (r.status != 200)
        fail_msg("import: %ld %s", r.status, r.body);
    json_t *j = json_incref(r.json);
    th_resp_free(&r);
    return j;
}

static long
search_total(const char *query)
{
    char path[256];
    snprintf(path, sizeof(path), "/api/v1/search?%s", query);
    th_resp_t r = th_store_req(srv, store2, NULL, "GET", path, NULL);
    if (r.status != 200)
        fail_msg("GET %s: %ld %s", path, r.status, r.body);
    long n = (long)json_integer_value(json_object_get(r.json, "total"));
    th_resp_free(&r);
    return n;
}

/* The slugs a search answers, sorted and comma-joined. */
static char *
search_slugs(const char *query)
{
    char path[256];
    snprintf(path, sizeof(path), "/api/v1/search?%s", query);
    th_resp_t r = th_store_req(srv, store2, NULL, "GET", path, NULL);
    if (r.status != 200)
        fail_msg("GET %s: %ld %s", path, r.status, r.body);
    json_t *d = json_object_get(r.json, "data");
    char *out = calloc(1, 4096);
    size_t n = json_array_size(d);
    const char **s = calloc(n ? n : 1, sizeof(*s));
    for (size_t i = 0; i < n; i++)
        s[i] = json_string_value(json_object_get(json_array_get(d, i), "slug"));
    for (size_t i = 1; i < n; i++) /* insertion sort: a handful */
        for (size_t j = i; j > 0 && strcmp(s[j - 1], s[j]) > 0; j--) {
            const char *t = s[j];
            s[j] = s[j - 1];
            s[j - 1] = t;
        }
    for (size_t i = 0; i < n; i++) {
        strcat(out, i ? "," : "");
        strncat(out, s[i] ? s[i] : "?", 4000 - strlen(out));
    }
    free(s);
    th_resp_free(&r);
    return out;
}

static void
expect_slugs(const char *query, const char *want)
{
    char *got = search_slugs(query);
    if (strcmp(got, want) != 0)
        fail_msg("search %s: got [%s], want [%s]", query, got, want);
    free(got);
}

/* Pairs of twins, one made through the API, one imported: same fields but the
 * slug, SKUs and a word of the name, so every search below must find exactly
 * the pair (or one of it) whatever path made the product. */
static void
test_import_search_like_api(void **state)
{
    (void)state;
    store2 = th_create_store(srv, th_slug("imps"), NULL);
    snprintf(sid2, sizeof(sid2), "%ld", store2);
    admin2 = th_token(srv, "STORE_ADMIN", store2);
    long cat = api_create("/api/v1/categories", "{\"name\":\"Shoes\",\"slug\":\"shoes\"}");
    char f[512];
    /* Several option keys and values, attributes (an array among them), a brand. */
    snprintf(f, sizeof(f),
             "\"name\":\"Trail Runner Apiside\",\"slug\":\"trail-api\",\"base_price\":9900,"
             "\"status\":\"active\",\"brand\":\"Zephyr\",\"category_id\":%ld,"
             "\"description\":\"Grippy <b>trail</b> shoe for wet rock.\","
             "\"attributes\":{\"material\":\"mesh\",\"season\":[\"spring\",\"autumn\"]}",
             cat);
    api_product(f, (const char *const[]){
                       "{\"sku\":\"TR-API-40-TEAL\",\"options\":{\"size\":\"40\",\"colour\":"
                       "\"teal\"},\"stock\":3}",
                       "{\"sku\":\"TR-API-41-TEAL\",\"options\":{\"size\":\"41\",\"colour\":"
                       "\"teal\"},\"stock\":0}",
                       "{\"sku\":\"TR-API-41-ONYX\",\"options\":{\"size\":\"41\",\"colour\":"
                       "\"onyx\"},\"price\":10900,\"stock\":5}",
                       NULL});
    /* No brand, no description, no options: the sparse case. */
    api_product("\"name\":\"Plain Sock Apiside\",\"slug\":\"sock-api\",\"base_price\":500,"
                "\"status\":\"active\"",
                (const char *const[]){"{\"sku\":\"SOCK-API\",\"stock\":7}", NULL});
    /* A draft, and a product without variants. */
    api_product(
        "\"name\":\"Draft Boot Apiside\",\"slug\":\"boot-api\",\"base_price\":15000,"
        "\"status\":\"draft\",\"brand\":\"Zephyr\"",
        (const char *const[]){"{\"sku\":\"BOOT-API\",\"options\":{\"size\":\"44\"}}", NULL});
    api_product("\"name\":\"Lace Set Apiside\",\"slug\":\"lace-api\",\"base_price\":300,"
                "\"status\":\"active\",\"attributes\":{\"material\":\"cotton\"}",
                NULL);

    char rows[4096];
    snprintf(rows, sizeof(rows),
             "[{\"name\":\"Trail Runner Bulkside\",\"slug\":\"trail-bulk\",\"base_price\":9900,"
             "\"status\":\"active\",\"brand\":\"Zephyr\",\"category_id\":%ld,"
             "\"description\":\"Grippy <b>trail</b> shoe for wet rock.\","
             "\"attributes\":{\"material\":\"mesh\",\"season\":[\"spring\",\"autumn\"]},"
             "\"variants\":[{\"sku\":\"TR-BULK-40-TEAL\",\"options\":{\"size\":\"40\","
             "\"colour\":\"teal\"},\"stock\":3},"
             "{\"sku\":\"TR-BULK-41-TEAL\",\"options\":{\"size\":\"41\",\"colour\":\"teal\"},"
             "\"stock\":0},"
             "{\"sku\":\"TR-BULK-41-ONYX\",\"options\":{\"colour\":\"onyx\",\"size\":\"41\"},"
             "\"price\":10900,\"stock\":5}]},"
             "{\"name\":\"Plain Sock Bulkside\",\"slug\":\"sock-bulk\",\"base_price\":500,"
             "\"status\":\"active\",\"variants\":[{\"sku\":\"SOCK-BULK\",\"stock\":7}]},"
             "{\"name\":\"Draft Boot Bulkside\",\"slug\":\"boot-bulk\",\"base_price\":15000,"
             "\"status\":\"draft\",\"brand\":\"Zephyr\","
             "\"variants\":[{\"sku\":\"BOOT-BULK\",\"options\":{\"size\":\"44\"}}]},"
             "{\"name\":\"Lace Set Bulkside\",\"slug\":\"lace-bulk\",\"base_price\":300,"
             "\"status\":\"active\",\"attributes\":{\"material\":\"cotton\"}}]",
             cat);
    json_t *a = import2(rows);
    assert_int_equal(json_integer_value(json_object_get(a, "imported")), 4);
    assert_int_equal(json_array_size(json_object_get(a, "rejected")), 0);
    json_decref(a);

    /* The columns the import wrote are the trigger's, term for term: an update
     * that re-indexes each row (search_doc in its SET list fires the trigger,
     * which reads the variants back) changes none of them. */
    assert_string_equal(
        q2("WITH u AS (UPDATE products p SET search_doc = '' WHERE p.store_id = $1::bigint"
           " RETURNING p.id, p.search_doc, p.search_attrs, p.search_name)"
           " SELECT count(*) FROM u JOIN products o ON o.store_id = $1::bigint AND o.id = u.id"
           " WHERE o.slug LIKE '%-bulk' AND (o.search_doc <> u.search_doc"
           " OR o.search_attrs <> u.search_attrs OR o.search_name <> u.search_name)"),
        "0");
    /* And twin for twin they match the API's once the one word that differs
     * is swapped (in the name, "Apiside", and in the SKUs, "API"): the same
     * lexemes with the same positions and weights. */
    assert_string_equal(
        q2("SELECT count(*) FROM products a JOIN products b ON b.store_id = a.store_id"
           " AND b.slug = replace(a.slug, '-api', '-bulk')"
           " WHERE a.store_id = $1::bigint AND a.slug LIKE '%-api'"
           " AND (a.search_attrs <> b.search_attrs"
           " OR replace(a.search_name, 'apiside', 'bulkside') <> b.search_name"
           " OR (SELECT array_agg(t ORDER BY t) FROM (SELECT replace(l.lexeme, 'api', 'bulk')"
           "  || l.positions::text || l.weights::text AS t FROM unnest(a.search_doc) l) x)"
           " IS DISTINCT FROM (SELECT array_agg(t ORDER BY t) FROM (SELECT l.lexeme"
           "  || l.positions::text || l.weights::text AS t FROM unnest(b.search_doc) l) y))"),
        "0");
    assert_string_equal(
        q2("SELECT count(*) FROM products WHERE store_id = $1::bigint AND slug LIKE '%-bulk'"),
        "4");

    /* Search finds each pair by a name word, a SKU, an option value, an
     * attribute value, a brand and a typo; drafts are not found. */
    expect_slugs("q=runner", "trail-api,trail-bulk");
    expect_slugs("q=TR-BULK-41-ONYX", "trail-bulk");
    expect_slugs("q=TR-API-41-ONYX", "trail-api");
    expect_slugs("q=onyx", "trail-api,trail-bulk");
    expect_slugs("q=autumn", "trail-api,trail-bulk");
    expect_slugs("q=SOCK-BULK", "sock-bulk");
    expect_slugs("q=bulkside", "lace-bulk,sock-bulk,trail-bulk");
    expect_slugs("q=zephyr", "trail-api,trail-bulk");
    expect_slugs("q=boot", "");
    expect_slugs("q=runnr", "trail-api,trail-bulk");
    expect_slugs("attr.colour=teal", "trail-api,trail-bulk");
    expect_slugs("attr.size=41&attr.colour=onyx", "trail-api,trail-bulk");
    expect_slugs("attr.material=cotton", "lace-api,lace-bulk");
    char qcat[64];
    snprintf(qcat, sizeof(qcat), "category=%ld", cat);
    expect_slugs(qcat, "trail-api,trail-bulk");
    assert_int_equal(search_total("q=lace"), 2);

    /* The counts: the triggers' table equals a recount, and the list totals
     * (read from it) count imported and API products alike. */
    assert_string_equal(
        q2("SELECT count(*) FROM (SELECT coalesce(category_id, 0) AS c, status, count(*) AS n"
           " FROM products WHERE store_id = $1::bigint GROUP BY 1, 2) a"
           " FULL JOIN (SELECT category_id AS c, status, n FROM catalog_counts"
           " WHERE store_id = $1::bigint AND n <> 0) k ON k.c = a.c AND k.status = a.status"
           " WHERE a.n IS DISTINCT FROM k.n"),
        "0");
    assert_string_equal(q2("SELECT n FROM catalog_counts WHERE store_id = $1::bigint"
                           " AND category_id = 0 AND status = 'active'"),
                        "4");
    assert_string_equal(q2("SELECT n FROM catalog_counts WHERE store_id = $1::bigint"
                           " AND category_id = (SELECT id FROM categories WHERE store_id ="
                           " $1::bigint AND slug = 'shoes') AND status = 'active'"),
                        "2");
    th_resp_t r = th_store_req(srv, store2, NULL, "GET", "/api/v1/products", NULL);
    assert_int_equal(r.status, 200);
    assert_int_equal(json_integer_value(json_object_get(r.json, "total")), 6);
    th_resp_free(&r);
    char path[96];
    snprintf(path, sizeof(path), "/api/v1/products?category=%ld", cat);
    r = th_store_req(srv, store2, NULL, "GET", path, NULL);
    assert_int_equal(r.status, 200);
    assert_int_equal(json_integer_value(json_object_get(r.json, "total")), 2);
    th_resp_free(&r);
    r = th_store_req(srv, store2, admin2, "GET", "/api/v1/products?status=draft", NULL);
    assert_int_equal(r.status, 200);
    assert_int_equal(json_integer_value(json_object_get(r.json, "total")), 2);
    th_resp_free(&r);

    /* The import's setting stays in its transaction: a product made through the
     * API afterwards is indexed by the triggers as before. */
    api_product(
        "\"name\":\"After Import Apiside\",\"slug\":\"after-api\",\"base_price\":100,"
        "\"status\":\"active\"",
        (const char *const[]){"{\"sku\":\"AFTER-API\",\"options\":{\"size\":\"9\"}}", NULL});
    expect_slugs("q=AFTER-API", "after-api");
    expect_slugs("attr.size=9", "after-api");
}

/* (After test_import_search_like_api, in its store.) A batch whose rows hit a
 * slug and a SKU the API took: those two rows are refused (slug_taken,
 * sku_taken), nothing of them is written (not the product of the SKU row, not
 * its other variant), the others go in whole, and search and the counts see
 * exactly the rows that went in. */
static void
test_import_taken_by_api(void **state)
{
    (void)state;
    long before = atol(q2("SELECT count(*) FROM products WHERE store_id = $1::bigint"));
    long moves = atol(q2("SELECT count(*) FROM inventory_movements WHERE store_id = $1::bigint"));
    json_t *a = import2(
        "[{\"name\":\"Fresh One\",\"slug\":\"fresh-one\",\"base_price\":1,\"status\":\"active\","
        "\"variants\":[{\"sku\":\"FRESH-1\",\"options\":{\"size\":\"1\"},\"stock\":2}]},"
        "{\"name\":\"Slug Thief\",\"slug\":\"trail-api\",\"base_price\":1,\"status\":\"active\","
        "\"variants\":[{\"sku\":\"THIEF-1\",\"stock\":1}]},"
        "{\"name\":\"Sku Thief\",\"slug\":\"sku-thief\",\"base_price\":1,\"status\":\"active\","
        "\"variants\":[{\"sku\":\"THIEF-2\",\"options\":{\"size\":\"1\"},\"stock\":4},"
        "{\"sku\":\"SOCK-API\",\"options\":{\"size\":\"2\"},\"stock\":4}]},"
        "{\"name\":\"Fresh Two\",\"slug\":\"fresh-two\",\"base_price\":1,\"status\":\"active\","
        "\"variants\":[{\"sku\":\"FRESH-2\",\"stock\":3}]}]");
    assert_int_equal(json_integer_value(json_object_get(a, "imported")), 2);
    assert_int_equal(json_integer_value(json_object_get(a, "variants")), 2);
    json_t *rej = json_object_get(a, "rejected");
    assert_int_equal(json_array_size(rej), 2);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(rej, 0), "index")), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(rej, 0), "code")),
                        "slug_taken");
    assert_int_equal(json_integer_value(json_object_get(json_array_get(rej, 1), "index")), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(rej, 1), "code")),
                        "sku_taken");
    json_decref(a);
    char buf[32];
    snprintf(buf, sizeof(buf), "%ld", before + 2);
    assert_string_equal(q2("SELECT count(*) FROM products WHERE store_id = $1::bigint"), buf);
    snprintf(buf, sizeof(buf), "%ld", moves + 2);
    assert_string_equal(q2("SELECT count(*) FROM inventory_movements WHERE store_id = $1::bigint"),
                        buf);
    assert_string_equal(q2("SELECT count(*) FROM products WHERE store_id = $1::bigint"
                           " AND slug IN ('sku-thief', 'slug-thief')"),
                        "0");
    assert_string_equal(q2("SELECT count(*) FROM product_variants WHERE store_id = $1::bigint"
                           " AND sku IN ('THIEF-1', 'THIEF-2')"),
                        "0");
    /* The API's rows are as they were. */
    assert_string_equal(
        q2("SELECT name FROM products WHERE store_id = $1::bigint AND slug = 'trail-api'"),
        "Trail Runner Apiside");
    assert_string_equal(q2("SELECT p.slug FROM product_variants v JOIN products p ON p.store_id"
                           " = v.store_id AND p.id = v.product_id WHERE v.store_id = $1::bigint"
                           " AND v.sku = 'SOCK-API'"),
                        "sock-api");
    expect_slugs("q=fresh", "fresh-one,fresh-two");
    expect_slugs("q=thief", "");
    expect_slugs("q=FRESH-1", "fresh-one");
    assert_string_equal(q2("SELECT n FROM catalog_counts WHERE store_id = $1::bigint"
                           " AND category_id = 0 AND status = 'active'"),
                        "7");
    assert_string_equal(
        q2("SELECT count(*) FROM product_variants v WHERE v.store_id = $1::bigint AND v.stock"
           " <> (SELECT coalesce(sum(delta), 0) FROM inventory_movements m WHERE m.store_id ="
           " v.store_id AND m.variant_id = v.id)"),
        "0");
    free(admin2);
    admin2 = NULL;
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_import_batches),      cmocka_unit_test(test_import_repeat),
        cmocka_unit_test(test_import_bounds),       cmocka_unit_test(test_import_search_like_api),
        cmocka_unit_test(test_import_taken_by_api), TH_STOP_TEST,
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
