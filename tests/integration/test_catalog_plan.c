/*
 * Query plans of the product list at scale: one store gets 100k products
 * (one INSERT ... SELECT generate_series, then VACUUM ANALYZE), and for each
 * list shape (every sort, category with descendants, price range, brand, q,
 * admin status, cursor pages, and the total count) the SQL the server runs
 * (catalog_list_sql) is EXPLAINed: no sequential scan of products, and q is
 * served by the trigram indexes. A plan check, not a timing.
 */
#include <libpq-fe.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "harness.h"
#include "shopd/catalog.h"

static th_server_t *srv;
static PGconn *pg;
static long store;
static char cat_root[256], cat_leaf[256]; /* array texts from catalog_descendants_sql */

static PGresult *
exec(const char *sql, int n, const char *const *params)
{
    PGresult *r = PQexecParams(pg, sql, n, NULL, params, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK)
        fail_msg("SQL failed: %s\n%s", PQresultErrorMessage(r), sql);
    return r;
}

static int
setup(void **state)
{
    srv = th_start(NULL); /* migrates */
    pg = PQconnectdb(th_env("SHOPD_TEST_DATABASE_URL"));
    if (PQstatus(pg) != CONNECTION_OK)
        fail_msg("%s", PQerrorMessage(pg));
    PQclear(exec("SET client_min_messages = warning", 0, NULL));
    char slug[64];
    snprintf(slug, sizeof(slug), "%s", th_slug("plan"));
    store = th_create_store(srv, slug, NULL);
    char sid[24];
    snprintf(sid, sizeof(sid), "%ld", store);
    const char *p[1] = {sid};
    /* 20 root categories with 2 children each. */
    PQclear(exec("INSERT INTO categories (store_id, name, slug, position)"
                 " SELECT $1::bigint, 'Cat ' || i, 'cat-' || i, i FROM generate_series(1, 20) i",
                 1, p));
    PQclear(exec("INSERT INTO categories (store_id, parent_id, name, slug, position)"
                 " SELECT $1::bigint, c.id, c.name || ' sub ' || j, c.slug || '-sub-' || j, j"
                 " FROM categories c, generate_series(1, 2) j WHERE c.store_id = $1::bigint",
                 1, p));
    PGresult *r = exec(
        "SELECT min(id)::text, max(id)::text FROM categories WHERE store_id = $1::bigint", 1, p);
    char root[24], leaf[24];
    snprintf(root, sizeof(root), "%s", PQgetvalue(r, 0, 0));
    snprintf(leaf, sizeof(leaf), "%s", PQgetvalue(r, 0, 1));
    PQclear(r);
    const char *pr[2] = {sid, root}, *pl[2] = {sid, leaf};
    r = exec(catalog_descendants_sql, 2, pr);
    snprintf(cat_root, sizeof(cat_root), "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    r = exec(catalog_descendants_sql, 2, pl);
    snprintf(cat_leaf, sizeof(cat_leaf), "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    assert_int_equal(strlen(cat_root) > 6, 1); /* the root and its two children */
    /* 100k products spread over the 60 categories, 50 brands, 10% drafts. */
    PQclear(exec("WITH cats AS (SELECT array_agg(id ORDER BY id) a FROM categories WHERE store_id "
                 "= $1::bigint)"
                 " INSERT INTO products (store_id, category_id, name, slug, description, "
                 "base_price, status, brand)"
                 " SELECT $1::bigint, cats.a[1 + i % 60], 'Product ' || i || ' ' || md5(i::text),"
                 " 'product-' || i, 'Description of item ' || i || ' ' || md5((i * 7)::text),"
                 " (i * 7919) % 100000, CASE WHEN i % 10 = 0 THEN 'draft' ELSE 'active' END, "
                 "'Brand ' || (i % 50)"
                 " FROM cats, generate_series(1, 100000) i",
                 1, p));
    PQclear(exec("VACUUM ANALYZE products", 0, NULL));
    PQclear(exec("ANALYZE categories", 0, NULL));
    return 0;
}

static int
teardown(void **state)
{
    if (store) {
        char sid[24];
        snprintf(sid, sizeof(sid), "%ld", store);
        const char *p[1] = {sid};
        PQclear(exec("DELETE FROM stores WHERE id = $1::bigint", 1, p));
    }
    PQfinish(pg);
    if (srv == NULL)
        return -1;
    th_stop(srv); /* frees it: TH_STOP_TEST checked the exit status */
    return 0;
}

/* EXPLAINs sql; fails on a sequential scan of products; returns the plan text (static). */
static const char *
plan_of(const char *what, const char *sql, int n, const char *const *params)
{
    static char text[16384];
    char *q;
    if (asprintf(&q, "EXPLAIN %s", sql) < 0)
        abort();
    PGresult *r = exec(q, n, params);
    free(q);
    size_t o = 0;
    for (int i = 0; i < PQntuples(r) && o < sizeof(text) - 1; i++)
        o += (size_t)snprintf(text + o, sizeof(text) - o, "%s\n", PQgetvalue(r, i, 0));
    PQclear(r);
    if (strstr(text, "Seq Scan on products"))
        fail_msg("%s: sequential scan of products:\n%s\n%s", what, sql, text);
    return text;
}

static void
check(const char *what, catalog_filter_t f, const char *must_use)
{
    f.store_id = (uint64_t)store;
    if (f.limit == 0)
        f.limit = 20;
    if (f.min_price == 0)
        f.min_price = -1;
    if (f.max_price == 0)
        f.max_price = -1;
    catalog_sql_t s;
    catalog_list_sql(&f, &s);
    const char *page = plan_of(what, s.page_sql, s.nparams, s.params);
    if (must_use && !strstr(page, must_use))
        fail_msg("%s: plan does not use %s:\n%s", what, must_use, page);
    const char *count = plan_of(what, s.count_sql, s.count_nparams, s.params);
    if (must_use && !strstr(count, must_use))
        fail_msg("%s (count): plan does not use %s:\n%s", what, must_use, count);
    catalog_sql_free(&s);
}

static void
test_list_plans(void **state)
{
    check("newest", (catalog_filter_t){.sort = CATALOG_SORT_NEWEST}, NULL);
    check("price asc", (catalog_filter_t){.sort = CATALOG_SORT_PRICE_ASC}, NULL);
    check("price desc", (catalog_filter_t){.sort = CATALOG_SORT_PRICE_DESC}, NULL);
    check("name", (catalog_filter_t){.sort = CATALOG_SORT_NAME_ASC}, NULL);
    check("name desc", (catalog_filter_t){.sort = CATALOG_SORT_NAME_DESC}, NULL);
    check("newest cursor", (catalog_filter_t){.sort = CATALOG_SORT_NEWEST, .cursor_id = 50000},
          NULL);
    check(
        "price cursor",
        (catalog_filter_t){.sort = CATALOG_SORT_PRICE_ASC, .cursor_key = "5000", .cursor_id = 123},
        NULL);
    check("name cursor",
          (catalog_filter_t){
              .sort = CATALOG_SORT_NAME_ASC, .cursor_key = "Product 5", .cursor_id = 1},
          NULL);
    check("page 50", (catalog_filter_t){.sort = CATALOG_SORT_PRICE_ASC, .offset = 1000}, NULL);
    check("category (descendants)", (catalog_filter_t){.category_ids = cat_root}, NULL);
    check("leaf category by price",
          (catalog_filter_t){.category_ids = cat_leaf, .sort = CATALOG_SORT_PRICE_ASC}, NULL);
    check("price range",
          (catalog_filter_t){.min_price = 1000, .max_price = 1200, .sort = CATALOG_SORT_PRICE_ASC},
          NULL);
    check("narrow price range, newest", (catalog_filter_t){.min_price = 1000, .max_price = 1100},
          NULL);
    check("brand", (catalog_filter_t){.brand = "Brand 7"}, NULL);
    check("q", (catalog_filter_t){.q = "abcde"}, "trgm");
    check("q by price", (catalog_filter_t){.q = "Product 4242", .sort = CATALOG_SORT_PRICE_ASC},
          "trgm");
    check("q + category", (catalog_filter_t){.q = "f00d", .category_ids = cat_root}, NULL);
    check("admin, all statuses", (catalog_filter_t){.admin = true}, NULL);
    check("admin, all by price", (catalog_filter_t){.admin = true, .sort = CATALOG_SORT_PRICE_ASC},
          NULL);
    check("admin, drafts", (catalog_filter_t){.admin = true, .status = "draft"}, NULL);
    check("admin, drafts by name",
          (catalog_filter_t){.admin = true, .status = "draft", .sort = CATALOG_SORT_NAME_ASC},
          NULL);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_list_plans),
        TH_STOP_TEST, /* last: the server must exit 0 on SIGTERM */
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
