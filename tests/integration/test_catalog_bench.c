/*
 * The catalog scenarios of shopbench against the real server: `browse` seeds
 * bench-product-1..200 through the API with the platform token and reads
 * lists, product pages and searches; `stock-mix` adjusts and reads four hot
 * variants. Both must finish without a failed request, and afterwards every
 * hot variant's stock equals its ledger sum. `seed --products` fills the
 * catalogs of bench-000001..2 and `tenants` browses them. Never a speed
 * assertion.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "harness.h"

static void
test_browse_and_hot_stock(void **state)
{
    const char *bin = th_env("SHOPBENCH_BIN"); /* required: a missing one is a failure */
    th_server_t *srv = th_start(NULL);
    char slug[64], cmd[1024], sid[24];
    snprintf(slug, sizeof(slug), "%s", th_slug("bench-cat"));
    snprintf(sid, sizeof(sid), "%ld", th_create_store(srv, slug, NULL));

    snprintf(cmd, sizeof(cmd), "%s -t 1 -c 4 -d 1 -w 0 --tenant %s --token %s %s browse", bin, slug,
             TH_PLATFORM_TOKEN, srv->url);
    th_run(cmd);
    const char *p[] = {sid, NULL};
    assert_int_equal(
        atoi(th_sql(
            "SELECT count(*) FROM products WHERE store_id = $1::bigint AND status = 'active'", p)),
        200);
    /* A second run finds the catalog seeded and creates nothing. */
    th_run(cmd);
    assert_int_equal(atoi(th_sql("SELECT count(*) FROM products WHERE store_id = $1::bigint", p)),
                     200);

    snprintf(cmd, sizeof(cmd), "%s -t 1 -c 8 -d 1 -w 0 --tenant %s --token %s %s stock-mix", bin,
             slug, TH_PLATFORM_TOKEN, srv->url);
    th_run(cmd);
    assert_true(atoi(th_sql("SELECT count(*) FROM inventory_movements WHERE store_id = $1::bigint "
                            "AND reason = 'shopbench'",
                            p)) > 0);

    /* hot-stock sells one variant out and checks it through the API itself (exit 1 on
     * oversell or a ledger mismatch); run it twice: the second starts from a fresh set. */
    for (int i = 0; i < 2; i++) {
        snprintf(cmd, sizeof(cmd),
                 "%s -t 1 -c 16 -d 20 -w 0 --stock 300 --tenant %s --token %s %s hot-stock", bin,
                 slug, TH_PLATFORM_TOKEN, srv->url);
        th_run(cmd);
    }
    assert_int_equal(
        atoi(th_sql("SELECT count(*) FROM inventory_movements WHERE store_id = $1::bigint "
                    "AND reason = 'shopbench hot-stock'",
                    p)),
        600);
    assert_int_equal(atoi(th_sql("SELECT min(stock) FROM product_variants WHERE store_id = "
                                 "$1::bigint AND sku = 'BENCH-HOT'",
                                 p)),
                     0);
    assert_int_equal(
        atoi(th_sql(
            "SELECT count(*) FROM product_variants v WHERE v.store_id = $1::bigint AND v.stock <>"
            " (SELECT coalesce(sum(delta), 0) FROM inventory_movements m"
            "  WHERE m.store_id = v.store_id AND m.variant_id = v.id)",
            p)),
        0);
    assert_int_equal(th_stop(srv), 0);
}

/* `seed --products` bulk-loads bench-000001..2 with 3 products of 2 variants each
 * in two categories (a repeat creates nothing); `seed --per-request` does the
 * same for bench-000003 one object per request, with a store admin, and skips
 * the stores that have their products; `tenants -k 3` then runs the browse mix
 * over them without a failed request. */
static void
test_seed_catalogs_and_tenants_browse(void **state)
{
    const char *bin = th_env("SHOPBENCH_BIN"); /* required: a missing one is a failure */
    th_server_t *srv = th_start(NULL);
    char cmd[1024], out[64];
    snprintf(out, sizeof(out), "/tmp/shopbench-tenants-%d.txt", (int)getpid());
    snprintf(cmd, sizeof(cmd), "%s seed -k 2 --products 3 --variants 2 --token %s %s", bin,
             TH_PLATFORM_TOKEN, srv->url);
    th_run(cmd);
    th_run(cmd);
    snprintf(cmd, sizeof(cmd), "%s seed -k 3 --products 3 --variants 2 --per-request --token %s %s",
             bin, TH_PLATFORM_TOKEN, srv->url);
    th_run(cmd);
    for (int i = 1; i <= 3; i++) {
        char slug[32];
        snprintf(slug, sizeof(slug), "bench-%06d", i);
        const char *p[] = {slug, NULL};
        /* Exactly: the database is this program's own, and the second seed added nothing. */
        assert_int_equal(
            atoi(th_sql(
                "SELECT count(*) FROM products p JOIN stores s ON s.id = p.store_id"
                " WHERE s.slug = $1 AND p.status = 'active' AND p.slug LIKE 'bench-product-%'",
                p)),
            3);
        /* Each of the three has exactly two variants: "count min max". */
        assert_string_equal(
            th_sql("SELECT count(*) || ' ' || min(n) || ' ' || max(n) FROM (SELECT count(v.id) AS n"
                   " FROM products p JOIN stores s ON s.id = p.store_id"
                   " LEFT JOIN product_variants v ON v.product_id = p.id"
                   " WHERE s.slug = $1 AND p.slug IN ('bench-product-1', 'bench-product-2', "
                   "'bench-product-3')"
                   " GROUP BY p.id) x",
                   p),
            "3 2 2");
        /* The two categories, each with products (by slug in the bulk rows). */
        assert_string_equal(
            th_sql("SELECT count(DISTINCT c.id) FROM categories c JOIN stores s ON s.id = "
                   "c.store_id JOIN products p ON p.store_id = c.store_id AND p.category_id = c.id"
                   " WHERE s.slug = $1 AND c.slug IN ('bench-cat-1', 'bench-cat-2')",
                   p),
            "2");
        /* Only the per-request path makes a store admin. */
        assert_int_equal(
            atoi(th_sql("SELECT count(*) FROM users u JOIN stores s ON s.id = u.store_id"
                        " WHERE s.slug = $1 AND u.role = 'STORE_ADMIN' AND u.email = 'admin@' || "
                        "$1 || '.test'",
                        p)),
            i == 3 ? 1 : 0);
        /* Stock = ledger, for every variant seeded. */
        assert_string_equal(
            th_sql("SELECT count(*) FROM product_variants v JOIN stores s ON s.id = v.store_id"
                   " WHERE s.slug = $1 AND v.stock <> (SELECT coalesce(sum(delta), 0) FROM "
                   "inventory_movements m WHERE m.store_id = v.store_id AND m.variant_id = v.id)",
                   p),
            "0");
    }
    snprintf(cmd, sizeof(cmd), "%s -t 1 -c 4 -d 1 -w 0 -k 3 %s tenants >%s", bin, srv->url, out);
    th_run(cmd);
    FILE *f = fopen(out, "r");
    assert_non_null(f);
    char text[4096];
    size_t n = fread(text, 1, sizeof(text) - 1, f);
    text[n] = '\0';
    fclose(f);
    unlink(out);
    if (strstr(text, "tenants: browse mode") == NULL)
        fail_msg("tenants did not browse:\n%s", text);
    assert_int_equal(th_stop(srv), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_browse_and_hot_stock),
                                       cmocka_unit_test(test_seed_catalogs_and_tenants_browse)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
