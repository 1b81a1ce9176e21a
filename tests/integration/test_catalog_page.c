/*
 * The product page rendered in C (page.c) against the same product rendered by
 * PostgreSQL (CAT_PRODUCT_JSON, catalog_product_json_sql, what the write routes
 * answer with), byte for byte after compaction, for products that exercise every
 * field: images with renditions on the product and on its variants (rows inserted
 * out of order, equal positions), a category, option values, attributes and names
 * with unicode, quotes, backslashes and control characters, null and non-null
 * optional fields, a product with no variants at all, and a draft (admin only).
 * Both statements (by id, by slug) run straight on PostgreSQL, and the pages are
 * read through shopd too (a store admin's uncached GET, and the public's), also from a
 * server whose sessions are in another DateStyle (it falls back to CAT_PRODUCT_JSON).
 */
#include <jansson.h>
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
#include "shopd/net.h"

static th_server_t *srv;
static PGconn *pg;
static long store;
static char sid[24];
static char *admin;

enum { P_FULL, P_BARE, P_DRAFT, P_IMAGES, P_N };
static char pids[P_N][24];
static const char *const slugs[P_N] = {"full", "bare", "draft", "images"};

static PGresult *
exec(const char *sql, int n, const char *const *params)
{
    PGresult *r = PQexecParams(pg, sql, n, NULL, params, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK)
        fail_msg("SQL failed: %s\n%s", PQresultErrorMessage(r), sql);
    return r;
}

static void
run(const char *sql)
{
    const char *p[1] = {sid};
    PQclear(exec(sql, 1, p));
}

static int
setup(void **state)
{
    (void)state;
    srv = th_start(NULL);
    pg = PQconnectdb(th_env("SHOPD_TEST_DATABASE_URL"));
    if (PQstatus(pg) != CONNECTION_OK)
        fail_msg("%s", PQerrorMessage(pg));
    store = th_create_store(srv, th_slug("page"), NULL);
    snprintf(sid, sizeof(sid), "%ld", store);
    admin = th_token(srv, "STORE_ADMIN", store);
    run("INSERT INTO categories (store_id, name, slug) VALUES ($1::bigint, 'Shoes \"&\" "
        "Chaussures é ☃', 'shoes')");
    run("INSERT INTO attributes (store_id, name) VALUES ($1::bigint, 'Size')");
    run("INSERT INTO attribute_values (store_id, attribute_id, value)"
        " SELECT $1::bigint, a.id, v FROM attributes a, unnest(ARRAY['S','M','L']) v"
        " WHERE a.store_id = $1::bigint");
    /* full: everything, with text that needs escaping */
    run("INSERT INTO products (store_id, category_id, name, slug, description, base_price, status,"
        " brand, attributes) SELECT $1::bigint, c.id, 'Bottes \"Été\" \\ ☃ 日本', 'full',"
        " E'line 1\\nline 2\\ttab \\x01 \\x1f \\b \\f \\r end', 4200, 'active', 'Acmé \"x\"',"
        " '{\"material\": \"cuir \\\"fin\\\"\", \"size\": [1, 2.5, null], \"ü\": {\"a\": true}}'"
        " FROM categories c WHERE c.store_id = $1::bigint");
    run("INSERT INTO products (store_id, name, slug, base_price, status) VALUES"
        " ($1::bigint, 'Bare', 'bare', 100, 'active'),"
        " ($1::bigint, 'Draft ☂', 'draft', 300, 'draft'),"
        " ($1::bigint, 'Images only', 'images', 500, 'active')");
    for (int i = 0; i < P_N; i++) {
        const char *p[3] = {sid, slugs[i], NULL};
        snprintf(pids[i], sizeof(pids[i]), "%s",
                 th_sql("SELECT id FROM products WHERE store_id = $1::bigint AND slug = $2", p));
    }
    run("INSERT INTO product_option_values (store_id, product_id, value_id)"
        " SELECT $1::bigint, p.id, v.id FROM products p, attribute_values v"
        " WHERE p.store_id = $1::bigint AND v.store_id = $1::bigint AND p.slug = 'full'"
        " ORDER BY v.id DESC");
    /* variants inserted in reverse order of position, two with the same position */
    run("INSERT INTO product_variants (store_id, product_id, sku, options, price, stock, weight_g,"
        " barcode, position) SELECT $1::bigint, p.id, x.sku, x.o::jsonb, x.price, x.stock, x.w,"
        " x.bc, x.pos FROM products p, (VALUES ('F-L', '{\"Size\": \"L\", \"Côté\": "
        "\"\\\"q\\\"\"}',"
        " 5000::bigint, 3, 900, 'BC \"1\"', 2), ('F-M', '{\"Size\": \"M\"}', NULL, 0, NULL, NULL, "
        "1),"
        " ('F-S2', '{\"Size\": \"S\", \"n\": 2}', NULL, 7, 10, NULL, 0),"
        " ('F-S', '{\"Size\": \"S\"}', 0, 1, 0, 'B-0', 0)) x(sku, o, price, stock, w, bc, pos)"
        " WHERE p.store_id = $1::bigint AND p.slug = 'full'"
        " ON CONFLICT DO NOTHING");
    run("INSERT INTO product_variants (store_id, product_id, sku, options, position)"
        " SELECT $1::bigint, p.id, 'D-1', '{}', 0 FROM products p"
        " WHERE p.store_id = $1::bigint AND p.slug = 'draft'");
    /* images: product-level and variant-level, positions out of id order, a tie */
    run("INSERT INTO product_images (store_id, product_id, variant_id, alt, position, state, key,"
        " sha256, mime, bytes, width, height, url)"
        " SELECT $1::bigint, p.id, v.id, x.alt, x.pos, x.state, 'k' || x.n, repeat('a', 64),"
        " 'image/jpeg', 1000 + x.n, 800, 600, 'https://cdn.example/i/' || x.n || '?a=1&b=\"2\"'"
        " FROM products p,"
        " (VALUES (1, 'front \"vue\" ☃', 5, 'ready', NULL), (2, '', 1, 'processing', 'F-M'),"
        " (3, E'tab\\there', 1, 'failed', NULL), (4, 'side', 0, 'ready', 'F-L'),"
        " (5, 'back', 9, 'ready', 'F-L')) x(n, alt, pos, state, sku)"
        " LEFT JOIN product_variants v ON v.store_id = $1::bigint AND v.sku = x.sku"
        " WHERE p.store_id = $1::bigint AND p.slug = 'full'");
    run("INSERT INTO product_images (store_id, product_id, alt, position, state, key, sha256,"
        " mime, bytes, width, height, url)"
        " SELECT $1::bigint, p.id, 'only ' || n, 3 - n, 'ready', 'ki' || n, repeat('b', 64),"
        " 'image/webp', 77, 10, 20, 'https://cdn.example/o/' || n FROM products p,"
        " generate_series(1, 3) n WHERE p.store_id = $1::bigint AND p.slug IN ('images', 'draft')");
    /* renditions, inserted out of (format, width) order; image 2 of full has none */
    run("INSERT INTO product_image_renditions (store_id, image_id, format, width, height, bytes,"
        " key, url) SELECT $1::bigint, i.id, f, w, w / 2, w * 3, i.key || f || w,"
        " 'https://cdn.example/r/' || i.id || '/' || w || '.' || f FROM product_images i,"
        " unnest(ARRAY['webp', 'jpeg']) f, unnest(ARRAY[640, 160, 1280]) w"
        " WHERE i.store_id = $1::bigint AND i.alt <> ''");
    PQclear(exec("ANALYZE product_images", 0, NULL));
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    if (store)
        run("DELETE FROM stores WHERE id = $1::bigint");
    free(admin);
    PQfinish(pg);
    if (srv == NULL)
        return -1;
    th_stop(srv);
    return 0;
}

/* The compacted JSON text of s (malloc'd). */
static char *
compact(const char *s, size_t n, size_t *out_len)
{
    char *d = malloc(n + 1);
    *out_len = net_json_compact(d, s, n);
    d[*out_len] = '\0';
    return d;
}

/* The product as CAT_PRODUCT_JSON renders it, compacted. */
static char *
old_json(int i, size_t *len)
{
    const char *p[2] = {sid, pids[i]};
    PGresult *r = exec(catalog_product_json_sql, 2, p);
    assert_int_equal(PQntuples(r), 1);
    char *s = compact(PQgetvalue(r, 0, 0), (size_t)PQgetlength(r, 0, 0), len);
    PQclear(r);
    return s;
}

/* The product as page.c renders it from the statement by id or slug, compacted;
 * NULL when the statement has no product for that caller. */
static char *
new_json(int i, bool by_slug, bool admin_caller, size_t *len)
{
    const char *p[3] = {sid, by_slug ? slugs[i] : pids[i], admin_caller ? "t" : "f"};
    PGresult *r = exec(by_slug ? catalog_page_slug_sql : catalog_page_id_sql, 3, p);
    size_t n;
    char *raw = catalog_page_render(r, &n);
    PQclear(r);
    if (raw == NULL)
        return NULL;
    char *s = compact(raw, n, len);
    free(raw);
    return s;
}

static void
same(const char *what, const char *a, size_t al, const char *b, size_t bl)
{
    if (al != bl || memcmp(a, b, al) != 0)
        fail_msg("%s differs:\n old %s\n new %.*s", what, a, (int)bl, b);
    json_error_t e;
    json_t *ja = json_loads(a, 0, &e), *jb = json_loadb(b, bl, 0, &e);
    assert_non_null(ja);
    assert_non_null(jb);
    assert_true(json_equal(ja, jb));
    json_decref(ja);
    json_decref(jb);
}

/* The statements straight on PostgreSQL: every product, by id and by slug. */
static void
test_render_matches_sql(void **state)
{
    (void)state;
    for (int i = 0; i < P_N; i++) {
        size_t ol, nl;
        char *o = old_json(i, &ol);
        for (int slug = 0; slug < 2; slug++) {
            char *n = new_json(i, slug, true, &nl);
            assert_non_null(n);
            same(slugs[i], o, ol, n, nl);
            free(n);
            n = new_json(i, slug, false, &nl); /* the public sees the draft as nothing */
            if (i == P_DRAFT) {
                assert_null(n);
            } else {
                assert_non_null(n);
                same(slugs[i], o, ol, n, nl);
            }
            free(n);
        }
        free(o);
    }
    /* what the data was meant to hold, so the comparison is not of empty documents */
    size_t l;
    char *o = old_json(P_FULL, &l);
    json_t *j = json_loads(o, 0, NULL);
    assert_int_equal(json_array_size(json_object_get(j, "images")), 5);
    assert_int_equal(json_array_size(json_object_get(j, "variants")), 4);
    assert_int_equal(json_array_size(json_object_get(j, "option_value_ids")), 3);
    assert_true(json_is_object(json_object_get(j, "category")));
    json_t *im = json_array_get(json_object_get(j, "images"), 0);
    assert_int_equal(json_array_size(json_object_get(im, "renditions")), 6);
    json_t *vl = json_array_get(json_object_get(j, "variants"), 3);
    assert_string_equal(json_string_value(json_object_get(vl, "sku")), "F-L");
    assert_int_equal(json_array_size(json_object_get(vl, "images")), 2);
    json_decref(j);
    free(o);
    o = old_json(P_BARE, &l);
    assert_non_null(strstr(o, "\"variants\":[]"));
    assert_non_null(strstr(o, "\"category\":null"));
    free(o);
    /* no such product: nothing rendered */
    const char *p[3] = {sid, "999999999", "t"};
    PGresult *r = exec(catalog_page_id_sql, 3, p);
    size_t n;
    assert_null(catalog_page_render(r, &n));
    PQclear(r);
}

/* Through shopd: a store admin's GET (uncached) and the public's, by id and slug. */
static void
test_http_pages(void **state)
{
    (void)state;
    for (int i = 0; i < P_N; i++) {
        size_t ol;
        char *o = old_json(i, &ol);
        for (int slug = 0; slug < 2; slug++) {
            char path[128];
            snprintf(path, sizeof(path), "/api/v1/products/%s", slug ? slugs[i] : pids[i]);
            th_resp_t r = th_store_req(srv, store, admin, "GET", path, NULL);
            assert_int_equal(r.status, 200);
            same(path, o, ol, r.body, r.len);
            th_resp_free(&r);
            r = th_store_req(srv, store, NULL, "GET", path, NULL);
            if (i == P_DRAFT) {
                assert_int_equal(r.status, 404);
                assert_string_equal(th_error_code(&r), "product_not_found");
            } else {
                assert_int_equal(r.status, 200);
                same(path, o, ol, r.body, r.len);
            }
            th_resp_free(&r);
        }
        free(o);
    }
    th_resp_t r = th_store_req(srv, store, admin, "GET", "/api/v1/products/999999999", NULL);
    assert_int_equal(r.status, 404);
    assert_string_equal(th_error_code(&r), "product_not_found");
    th_resp_free(&r);
    r = th_store_req(srv, store, admin, "GET", "/api/v1/products/no-such-slug", NULL);
    assert_int_equal(r.status, 404);
    th_resp_free(&r);
}

/* A server whose sessions are not in DateStyle ISO (PGDATESTYLE reaches libpq) answers
 * with PostgreSQL's rendering instead (page.c reads ISO timestamps): the same JSON. */
static void
test_other_datestyle(void **state)
{
    (void)state;
    const char *env[] = {"PGDATESTYLE=SQL, DMY", NULL};
    th_server_t *other = th_start(env);
    for (int i = 0; i < P_N; i++) {
        size_t ol;
        char *o = old_json(i, &ol);
        char path[128];
        snprintf(path, sizeof(path), "/api/v1/products/%s", pids[i]);
        /* the platform token: a store admin's JWT is signed with the first server's key */
        th_resp_t r = th_store_req(other, store, TH_PLATFORM_TOKEN, "GET", path, NULL);
        assert_int_equal(r.status, 200);
        same(path, o, ol, r.body, r.len);
        th_resp_free(&r);
        free(o);
    }
    assert_int_equal(th_stop(other), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_render_matches_sql),
        cmocka_unit_test(test_http_pages),
        cmocka_unit_test(test_other_datestyle),
        TH_STOP_TEST,
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
