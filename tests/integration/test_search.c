/*
 * test_search.c: GET /api/v1/search and /search/suggest against the real
 * binary, PostgreSQL and Redis, on a fixed corpus made through the catalog
 * API: ranking (an exact name first, a typo still finds its product), facet
 * counts checked against SQL over the same rows, combined filters, keyset
 * pages that neither repeat nor skip under ties, hostile and oversized input
 * answered with 4xx (never 500), drafts never found, one store never seeing
 * another's products, and edits searchable on the next request.
 */
#include <curl/curl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "harness.h"

static th_server_t *srv;
static long store_a, store_b;
static char *admin_a, *admin_b;
static long cat_clothing, cat_tees, cat_shoes;
static long p_tee, p_red_tee, p_blue_shirt, p_running, p_trail, p_socks1, p_socks2, p_draft, p_b;

static th_resp_t
get(long store, const char *fmt, ...)
{
    char path[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(path, sizeof(path), fmt, ap);
    va_end(ap);
    return th_store_req(srv, store, NULL, "GET", path, NULL);
}

static void
expect(th_resp_t *r, long status, const char *code)
{
    if (r->status != status)
        fail_msg("expected %ld, got %ld: %s", status, r->status, r->body);
    if (code && strcmp(th_error_code(r), code))
        fail_msg("expected code %s: %s", code, r->body);
}

static long
create(long store, const char *path, const char *body)
{
    th_resp_t r =
        th_store_req(srv, store, store == store_a ? admin_a : admin_b, "POST", path, body);
    if (r.status != 201)
        fail_msg("POST %s %s: %ld %s", path, body, r.status, r.body);
    long id = (long)json_integer_value(json_object_get(r.json, "id"));
    th_resp_free(&r);
    return id;
}

static long
product(long store, const char *fields)
{
    char body[1024];
    snprintf(body, sizeof(body), "{%s}", fields);
    return create(store, "/api/v1/products", body);
}

static void
variant(long store, long prod, const char *sku, const char *options, long stock)
{
    char body[256], path[128];
    snprintf(body, sizeof(body), "{\"sku\":\"%s\",\"stock\":%ld,\"options\":%s}", sku, stock,
             options);
    snprintf(path, sizeof(path), "/api/v1/products/%ld/variants", prod);
    create(store, path, body);
}

static long
sql_long(const char *fmt, ...)
{
    char q[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(q, sizeof(q), fmt, ap);
    va_end(ap);
    return atol(th_sql(q, NULL));
}

static long
hit_id(th_resp_t *r, size_t i)
{
    return (long)json_integer_value(
        json_object_get(json_array_get(json_object_get(r->json, "data"), i), "id"));
}

static size_t
nhits(th_resp_t *r)
{
    return json_array_size(json_object_get(r->json, "data"));
}

static long
total(th_resp_t *r)
{
    return (long)json_integer_value(json_object_get(r->json, "total"));
}

/* The count of value in a facet list (-1 if absent), matched on key. */
static long
facet_count(th_resp_t *r, const char *facet, const char *key, const char *value)
{
    json_t *list = json_object_get(json_object_get(r->json, "facets"), facet);
    size_t i;
    json_t *x;
    json_array_foreach(list, i, x)
    {
        json_t *k = json_object_get(x, key);
        char buf[64];
        const char *s = json_is_string(k) ? json_string_value(k) : buf;
        if (!json_is_string(k))
            snprintf(buf, sizeof(buf), "%lld", (long long)json_integer_value(k));
        if (!strcmp(s, value))
            return (long)json_integer_value(json_object_get(x, "count"));
    }
    return -1;
}

static long
attr_count(th_resp_t *r, const char *attr, const char *value)
{
    json_t *list =
        json_object_get(json_object_get(json_object_get(r->json, "facets"), "attributes"), attr);
    size_t i;
    json_t *x;
    json_array_foreach(
        list, i,
        x) if (!strcmp(json_string_value(json_object_get(x, "value")),
                       value)) return (long)json_integer_value(json_object_get(x, "count"));
    return -1;
}

static int
setup(void **state)
{
    (void)state;
    curl_global_init(CURL_GLOBAL_ALL);
    srv = th_start(NULL);
    char slug[64];
    snprintf(slug, sizeof(slug), "%s", th_slug("srch-a"));
    store_a = th_create_store(srv, slug, NULL);
    snprintf(slug, sizeof(slug), "%s", th_slug("srch-b"));
    store_b = th_create_store(srv, slug, NULL);
    admin_a = th_token(srv, "STORE_ADMIN", store_a);
    admin_b = th_token(srv, "STORE_ADMIN", store_b);

    cat_clothing = create(store_a, "/api/v1/categories", "{\"name\":\"Clothing\"}");
    char body[128];
    snprintf(body, sizeof(body), "{\"name\":\"Tees\",\"parent_id\":%ld}", cat_clothing);
    cat_tees = create(store_a, "/api/v1/categories", body);
    cat_shoes = create(store_a, "/api/v1/categories", "{\"name\":\"Shoes\"}");

    char f[1024];
    snprintf(f, sizeof(f),
             "\"name\":\"T-Shirt\",\"base_price\":1500,\"status\":\"active\",\"brand\":\"Acme\","
             "\"category_id\":%ld,\"attributes\":{\"color\":\"red\"},\"description\":\"Plain "
             "cotton tee\"",
             cat_tees);
    p_tee = product(store_a, f);
    variant(store_a, p_tee, "TS-RED-M", "{\"size\":\"M\"}", 5);
    snprintf(f, sizeof(f),
             "\"name\":\"Red T-Shirt Deluxe\",\"base_price\":3000,\"status\":\"active\","
             "\"brand\":\"Acme\",\"category_id\":%ld,\"attributes\":{\"color\":\"red\"},"
             "\"description\":\"A premium t-shirt <b>with</b> a story\"",
             cat_tees);
    p_red_tee = product(store_a, f);
    variant(store_a, p_red_tee, "TS-DLX-L", "{\"size\":\"L\"}", 0);
    snprintf(
        f, sizeof(f),
        "\"name\":\"Blue Shirt\",\"base_price\":2000,\"status\":\"active\",\"brand\":\"Bolt\","
        "\"category_id\":%ld,\"attributes\":{\"color\":\"blue\"},\"description\":\"Oxford shirt\"",
        cat_clothing);
    p_blue_shirt = product(store_a, f);
    variant(store_a, p_blue_shirt, "BS-M", "{\"size\":\"M\"}", 2);
    snprintf(
        f, sizeof(f),
        "\"name\":\"Running Shoes\",\"base_price\":8000,\"status\":\"active\",\"brand\":\"Bolt\","
        "\"category_id\":%ld,\"attributes\":{\"color\":\"blue\"},\"description\":\"Lightweight\"",
        cat_shoes);
    p_running = product(store_a, f);
    variant(store_a, p_running, "RUN-42", "{\"size\":\"42\"}", 3);
    snprintf(
        f, sizeof(f),
        "\"name\":\"Trail Shoes\",\"base_price\":12000,\"status\":\"active\",\"brand\":\"Zed\","
        "\"category_id\":%ld,\"attributes\":{\"color\":\"green\"}",
        cat_shoes);
    p_trail = product(store_a, f);
    /* Two at one price: the ties that pages must not repeat or skip. */
    p_socks1 = product(store_a, "\"name\":\"Wool Socks\",\"base_price\":500,\"status\":\"active\"");
    p_socks2 =
        product(store_a, "\"name\":\"Plain Socks\",\"base_price\":500,\"status\":\"active\"");
    p_draft =
        product(store_a, "\"name\":\"Secret Draft Shirt\",\"base_price\":999,\"brand\":\"Acme\","
                         "\"attributes\":{\"color\":\"red\"}");
    p_b = product(store_b, "\"name\":\"Bravo Shirt\",\"base_price\":700,\"status\":\"active\","
                           "\"brand\":\"Acme\",\"attributes\":{\"color\":\"red\"}");
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    free(admin_a);
    free(admin_b);
    if (srv == NULL)
        return -1;
    th_stop(srv);
    curl_global_cleanup();
    return 0;
}

static void
test_ranking(void **state)
{
    (void)state;
    /* The exact name first, then the other t-shirts. */
    th_resp_t r = get(store_a, "/api/v1/search?q=t-shirt");
    expect(&r, 200, NULL);
    assert_string_equal(json_string_value(json_object_get(r.json, "match")), "fulltext");
    assert_true(nhits(&r) >= 2);
    assert_int_equal(hit_id(&r, 0), p_tee);
    assert_int_equal(hit_id(&r, 1), p_red_tee);
    th_resp_free(&r);
    r = get(store_a, "/api/v1/search?q=red+t-shirt+deluxe");
    expect(&r, 200, NULL);
    assert_int_equal(hit_id(&r, 0), p_red_tee);
    th_resp_free(&r);
    /* A typo: full text finds nothing, trigrams find the T-Shirt. */
    r = get(store_a, "/api/v1/search?q=tshrit");
    expect(&r, 200, NULL);
    assert_string_equal(json_string_value(json_object_get(r.json, "match")), "fuzzy");
    assert_true(nhits(&r) >= 1);
    assert_int_equal(hit_id(&r, 0), p_tee);
    for (size_t i = 0; i < nhits(&r); i++)
        assert_true(hit_id(&r, i) == p_tee || hit_id(&r, i) == p_red_tee);
    th_resp_free(&r);
    /* A SKU and an option value are searchable; the snippet marks the words
     * and escapes the description's own markup. */
    r = get(store_a, "/api/v1/search?q=TS-RED-M");
    expect(&r, 200, NULL);
    assert_int_equal(total(&r), 1);
    assert_int_equal(hit_id(&r, 0), p_tee);
    th_resp_free(&r);
    r = get(store_a, "/api/v1/search?q=premium");
    expect(&r, 200, NULL);
    assert_int_equal(hit_id(&r, 0), p_red_tee);
    const char *snip = json_string_value(
        json_object_get(json_array_get(json_object_get(r.json, "data"), 0), "snippet"));
    assert_non_null(snip);
    assert_non_null(strstr(snip, "<mark>premium</mark>"));
    assert_null(strstr(snip, "<b>"));
    th_resp_free(&r);
    /* Nothing like it: an empty answer, not an error. */
    r = get(store_a, "/api/v1/search?q=zzqqxx");
    expect(&r, 200, NULL);
    assert_int_equal(total(&r), 0);
    th_resp_free(&r);
}

static void
test_facets(void **state)
{
    (void)state;
    char act[128];
    snprintf(act, sizeof(act), "store_id = %ld AND status = 'active'", store_a);
    /* No filter: every facet is a plain count of the active products. */
    th_resp_t r = get(store_a, "/api/v1/search");
    expect(&r, 200, NULL);
    assert_int_equal(total(&r), sql_long("SELECT count(*) FROM products WHERE %s", act));
    assert_int_equal(total(&r), 7);
    assert_int_equal(facet_count(&r, "brand", "value", "Acme"),
                     sql_long("SELECT count(*) FROM products WHERE %s AND brand = 'Acme'", act));
    assert_int_equal(facet_count(&r, "brand", "value", "Bolt"), 2);
    char idb[32];
    snprintf(idb, sizeof(idb), "%ld", cat_shoes);
    assert_int_equal(facet_count(&r, "category", "id", idb), 2);
    assert_int_equal(
        attr_count(&r, "color", "blue"),
        sql_long("SELECT count(*) FROM products WHERE %s AND attributes->>'color' = 'blue'", act));
    assert_int_equal(attr_count(&r, "size", "M"), 2); /* variant options count too */
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(r.json, "facets"), "in_stock")),
        sql_long("SELECT count(*) FROM products p WHERE %s AND EXISTS (SELECT 1 FROM "
                 "product_variants v WHERE v.store_id = p.store_id AND v.product_id = p.id "
                 "AND v.stock > 0)",
                 act));
    assert_int_equal(facet_count(&r, "price", "min", "0"), 2);
    assert_int_equal(facet_count(&r, "price", "min", "1000"), 2); /* 1500 and 2000 */
    assert_int_equal(facet_count(&r, "price", "min", "50000"), -1);
    th_resp_free(&r);

    /* color=red: the hits are red, but the color facet still counts blue
     * (its own filter waived) while brand counts only red products. */
    r = get(store_a, "/api/v1/search?attr.color=red");
    expect(&r, 200, NULL);
    assert_int_equal(total(&r), 2);
    assert_int_equal(attr_count(&r, "color", "red"), 2);
    assert_int_equal(attr_count(&r, "color", "blue"), 2);
    assert_int_equal(attr_count(&r, "color", "green"), 1);
    assert_int_equal(facet_count(&r, "brand", "value", "Acme"), 2);
    assert_int_equal(facet_count(&r, "brand", "value", "Bolt"), -1);
    assert_int_equal(attr_count(&r, "size", "L"), 1);
    th_resp_free(&r);

    /* brand=Bolt: the brand facet ignores it; color counts Bolt's products. */
    r = get(store_a, "/api/v1/search?brand=Bolt");
    expect(&r, 200, NULL);
    assert_int_equal(total(&r), 2);
    assert_int_equal(facet_count(&r, "brand", "value", "Acme"), 2);
    assert_int_equal(facet_count(&r, "brand", "value", "Bolt"), 2);
    assert_int_equal(attr_count(&r, "color", "blue"), 2);
    assert_int_equal(attr_count(&r, "color", "red"), -1);
    th_resp_free(&r);

    /* With q, the facets count the matches only. */
    r = get(store_a, "/api/v1/search?q=shoes");
    expect(&r, 200, NULL);
    assert_int_equal(total(&r), 2);
    assert_int_equal(facet_count(&r, "brand", "value", "Zed"), 1);
    assert_int_equal(facet_count(&r, "brand", "value", "Acme"), -1);
    th_resp_free(&r);
}

static void
test_filters(void **state)
{
    (void)state;
    th_resp_t r = get(store_a, "/api/v1/search?brand=Bolt&price_min=5000&in_stock=true");
    expect(&r, 200, NULL);
    assert_int_equal(total(&r), 1);
    assert_int_equal(hit_id(&r, 0), p_running);
    th_resp_free(&r);
    /* A category includes its descendants (Tees under Clothing). */
    r = get(store_a, "/api/v1/search?category=%ld", cat_clothing);
    expect(&r, 200, NULL);
    assert_int_equal(total(&r), 3);
    th_resp_free(&r);
    r = get(store_a, "/api/v1/search?category=%ld&attr.color=red&in_stock=true", cat_clothing);
    expect(&r, 200, NULL);
    assert_int_equal(total(&r), 1);
    assert_int_equal(hit_id(&r, 0), p_tee);
    th_resp_free(&r);
    r = get(store_a, "/api/v1/search?attr.color=blue&attr.size=42");
    expect(&r, 200, NULL);
    assert_int_equal(total(&r), 1);
    assert_int_equal(hit_id(&r, 0), p_running);
    th_resp_free(&r);
    /* "shirt" is a word of "T-Shirt" too; the price drops the deluxe one. */
    r = get(store_a, "/api/v1/search?q=shirt&price_max=2000&sort=-price");
    expect(&r, 200, NULL);
    assert_int_equal(total(&r), 2);
    assert_int_equal(hit_id(&r, 0), p_blue_shirt);
    assert_int_equal(hit_id(&r, 1), p_tee);
    th_resp_free(&r);
}

/* Walks every page of path (limit 1 or 2) and checks the ids against want. */
static void
walk(const char *path, const long *want, size_t nwant)
{
    char cursor[256] = "";
    size_t got = 0;
    for (int guard = 0; guard < 20; guard++) {
        th_resp_t r =
            cursor[0] ? get(store_a, "%s&cursor=%s", path, cursor) : get(store_a, "%s", path);
        expect(&r, 200, NULL);
        for (size_t i = 0; i < nhits(&r); i++) {
            if (got >= nwant)
                fail_msg("%s: more hits than %zu", path, nwant);
            if (hit_id(&r, i) != want[got])
                fail_msg("%s: hit %zu is %ld, want %ld", path, got, hit_id(&r, i), want[got]);
            got++;
        }
        json_t *nc = json_object_get(r.json, "next_cursor");
        if (!json_is_string(nc)) {
            th_resp_free(&r);
            break;
        }
        snprintf(cursor, sizeof(cursor), "%s", json_string_value(nc));
        th_resp_free(&r);
    }
    assert_int_equal(got, nwant);
}

static void
test_pages(void **state)
{
    (void)state;
    long ids[16];
    size_t n = 0;
    char q[256];
    snprintf(
        q, sizeof(q),
        "SELECT string_agg(id::text, ',' ORDER BY base_price, id) FROM products WHERE store_id = "
        "%ld AND status = 'active'",
        store_a);
    char list[256];
    snprintf(list, sizeof(list), "%s", th_sql(q, NULL));
    for (char *t = strtok(list, ","); t; t = strtok(NULL, ","))
        ids[n++] = atol(t);
    assert_int_equal(n, 7);
    walk("/api/v1/search?sort=price&limit=1", ids, n);
    walk("/api/v1/search?sort=price&limit=2", ids, n);
    long rev[16];
    snprintf(
        q, sizeof(q),
        "SELECT string_agg(id::text, ',' ORDER BY base_price DESC, id DESC) FROM products WHERE "
        "store_id = %ld AND status = 'active'",
        store_a);
    snprintf(list, sizeof(list), "%s", th_sql(q, NULL));
    n = 0;
    for (char *t = strtok(list, ","); t; t = strtok(NULL, ","))
        rev[n++] = atol(t);
    walk("/api/v1/search?sort=-price&limit=2", rev, n);
    long newest[16];
    for (size_t i = 0; i < n; i++)
        newest[i] = 0;
    snprintf(
        q, sizeof(q),
        "SELECT string_agg(id::text, ',' ORDER BY id DESC) FROM products WHERE store_id = %ld AND "
        "status = 'active'",
        store_a);
    snprintf(list, sizeof(list), "%s", th_sql(q, NULL));
    n = 0;
    for (char *t = strtok(list, ","); t; t = strtok(NULL, ","))
        newest[n++] = atol(t);
    walk("/api/v1/search?sort=newest&limit=3", newest, n);
    /* Relevance: the unpaged order, one page at a time (socks tie at score). */
    th_resp_t r = get(store_a, "/api/v1/search?q=shirt+OR+socks&limit=100");
    expect(&r, 200, NULL);
    long rel[16];
    size_t nr = nhits(&r);
    assert_true(nr >= 4);
    for (size_t i = 0; i < nr; i++)
        rel[i] = hit_id(&r, i);
    th_resp_free(&r);
    walk("/api/v1/search?q=shirt+OR+socks&limit=1", rel, nr);
    /* A cursor of one sort is refused under another. */
    r = get(store_a, "/api/v1/search?sort=price&limit=1");
    char cur[256];
    snprintf(cur, sizeof(cur), "%s", json_string_value(json_object_get(r.json, "next_cursor")));
    th_resp_free(&r);
    r = get(store_a, "/api/v1/search?sort=newest&cursor=%s", cur);
    expect(&r, 422, "validation_failed");
    th_resp_free(&r);
}

static void
test_hostile_input(void **state)
{
    (void)state;
    static const char *const ok[] = {
        "q=%27%3B+DROP+TABLE+products%3B+--",
        "q=%27+OR+1%3D1+--",
        "q=a+%26+b+%7C+%21c%3A*",
        "q=%28%28%28%28",
        "q=%22unterminated",
        "q=%5C%5C%25%25__",
        "q=-",
        "brand=%27%3B+SELECT+pg_sleep%2810%29%3B--",
        "attr.color=%27%29+OR+%28%271%27%3D%271",
        "q=%E2%9C%93+%C3%A9t%C3%A9",
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        th_resp_t r = get(store_a, "/api/v1/search?%s", ok[i]);
        if (r.status != 200)
            fail_msg("%s: %ld %s", ok[i], r.status, r.body);
        th_resp_free(&r);
    }
    assert_int_equal(sql_long("SELECT count(*) FROM products WHERE store_id = %ld", store_a), 8);
    static const struct {
        const char *q;
        long status;
        const char *code;
    } bad[] = {
        {"q=%00abc", 422, "validation_failed"},
        {"q=%FF%FE", 422, "validation_failed"},
        {"q=abc%0Adef", 422, "validation_failed"},
        {"q=", 422, "validation_failed"},
        {"sort=cheapest", 422, "validation_failed"},
        {"limit=0", 422, "validation_failed"},
        {"limit=101", 422, "validation_failed"},
        {"price_min=-1", 422, "validation_failed"},
        {"price_min=10&price_max=5", 422, "validation_failed"},
        {"category=abc", 422, "validation_failed"},
        {"in_stock=yes", 422, "validation_failed"},
        {"cursor=zz", 422, "validation_failed"},
        {"cursor=r41.1", 422, "validation_failed"},
        {"cursor=p2731.1", 422, "validation_failed"},
        {"sort=price&cursor=p2d31.1", 422, "validation_failed"},
        {"q=x&q=y", 400, "invalid_query"},
        {"attr.color=a&attr.color=b", 400, "invalid_query"},
        {"attr.co%6Cor=a", 400, "invalid_query"},
        {"attr.=x", 400, "invalid_query"},
        {"unknown=1", 400, "invalid_query"},
        {"attr.a=1&attr.b=1&attr.c=1&attr.d=1&attr.e=1&attr.f=1&attr.g=1&attr.h=1&attr.i=1", 422,
         "validation_failed"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        th_resp_t r = get(store_a, "/api/v1/search?%s", bad[i].q);
        if (r.status != bad[i].status || strcmp(th_error_code(&r), bad[i].code))
            fail_msg("%s: want %ld %s, got %ld %s", bad[i].q, bad[i].status, bad[i].code, r.status,
                     r.body);
        th_resp_free(&r);
    }
    /* Long queries: just over the bound is a clear 422; far over it the edge
     * refuses the request line; neither is ever a 500. */
    char q[6000];
    memset(q, 'a', 201);
    q[201] = '\0';
    th_resp_t r = get(store_a, "/api/v1/search?q=%s", q);
    expect(&r, 422, "validation_failed");
    th_resp_free(&r);
    memset(q, 'a', 200);
    q[200] = '\0';
    r = get(store_a, "/api/v1/search?q=%s", q);
    expect(&r, 200, NULL);
    th_resp_free(&r);
    for (int i = 0; i < 1000; i++)
        memcpy(q + 5 * i, "ab+c+", 5);
    q[5000] = '\0';
    r = get(store_a, "/api/v1/search?q=%s", q);
    assert_true(r.status >= 400 && r.status < 500);
    th_resp_free(&r);
    r = get(store_a, "/api/v1/search/suggest?q=%s", q);
    assert_true(r.status >= 400 && r.status < 500);
    th_resp_free(&r);
    r = get(store_a, "/api/v1/search/suggest");
    expect(&r, 422, "validation_failed");
    th_resp_free(&r);
    r = get(store_a, "/api/v1/search/suggest?q=%%25%%5F%%5C");
    expect(&r, 200, NULL);
    assert_int_equal(json_array_size(json_object_get(r.json, "products")), 0);
    th_resp_free(&r);
}

static void
test_drafts_and_isolation(void **state)
{
    (void)state;
    th_resp_t r = get(store_a, "/api/v1/search?q=secret");
    expect(&r, 200, NULL);
    assert_int_equal(total(&r), 0);
    th_resp_free(&r);
    r = get(store_a, "/api/v1/search?q=secret+draft+shirt");
    expect(&r, 200, NULL);
    for (size_t i = 0; i < nhits(&r); i++)
        assert_int_not_equal(hit_id(&r, i), p_draft);
    th_resp_free(&r);
    r = get(store_a, "/api/v1/search/suggest?q=secr");
    expect(&r, 200, NULL);
    assert_int_equal(json_array_size(json_object_get(r.json, "products")), 0);
    th_resp_free(&r);
    /* Store B sees its own shirt only; A never sees B's. */
    r = get(store_b, "/api/v1/search?q=shirt");
    expect(&r, 200, NULL);
    assert_int_equal(total(&r), 1);
    assert_int_equal(hit_id(&r, 0), p_b);
    assert_int_equal(facet_count(&r, "brand", "value", "Acme"), 1);
    th_resp_free(&r);
    r = get(store_b, "/api/v1/search?q=tshrit");
    expect(&r, 200, NULL);
    assert_int_equal(total(&r), 0);
    th_resp_free(&r);
    r = get(store_a, "/api/v1/search?q=bravo");
    expect(&r, 200, NULL);
    assert_int_equal(total(&r), 0);
    th_resp_free(&r);
    r = get(store_b, "/api/v1/search/suggest?q=t");
    expect(&r, 200, NULL);
    assert_int_equal(json_array_size(json_object_get(r.json, "products")), 0);
    assert_int_equal(json_array_size(json_object_get(r.json, "categories")), 0);
    th_resp_free(&r);
    r = get(store_b, "/api/v1/search?category=%ld", cat_clothing);
    expect(&r, 200, NULL);
    assert_int_equal(total(&r), 0);
    th_resp_free(&r);
}

static void
test_suggest(void **state)
{
    (void)state;
    th_resp_t r = get(store_a, "/api/v1/search/suggest?q=T-Sh");
    expect(&r, 200, NULL);
    json_t *ps = json_object_get(r.json, "products");
    assert_int_equal(json_array_size(ps), 1);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(ps, 0), "id")), p_tee);
    th_resp_free(&r);
    r = get(store_a, "/api/v1/search/suggest?q=sh");
    expect(&r, 200, NULL);
    json_t *cs = json_object_get(r.json, "categories");
    assert_int_equal(json_array_size(cs), 1);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(cs, 0), "id")), cat_shoes);
    th_resp_free(&r);
    r = get(store_a, "/api/v1/search/suggest?q=s");
    expect(&r, 200, NULL);
    assert_int_equal(json_array_size(json_object_get(r.json, "products")), 0);
    th_resp_free(&r);
    r = get(store_a, "/api/v1/search/suggest?q=w");
    expect(&r, 200, NULL);
    assert_int_equal(json_array_size(json_object_get(r.json, "products")), 1);
    th_resp_free(&r);
}

static void
test_fresh(void **state)
{
    (void)state;
    char path[128];
    snprintf(path, sizeof(path), "/api/v1/products/%ld", p_trail);
    /* Asked twice before the edit: the second answer comes from the cache, and
     * the edit must still show on the next request. */
    th_resp_t r0 = get(store_a, "/api/v1/search?q=boots");
    expect(&r0, 200, NULL);
    assert_int_equal(total(&r0), 0);
    th_resp_free(&r0);
    r0 = get(store_a, "/api/v1/search?q=boots");
    expect(&r0, 200, NULL);
    assert_string_equal(th_header(&r0, "X-Cache"), "hit");
    th_resp_free(&r0);
    th_resp_t r =
        th_store_req(srv, store_a, admin_a, "PATCH", path, "{\"name\":\"Mountain Boots\"}");
    expect(&r, 200, NULL);
    th_resp_free(&r);
    r = get(store_a, "/api/v1/search?q=boots");
    expect(&r, 200, NULL);
    assert_int_equal(total(&r), 1);
    assert_int_equal(hit_id(&r, 0), p_trail);
    th_resp_free(&r);
    r = get(store_a, "/api/v1/search/suggest?q=mount");
    expect(&r, 200, NULL);
    assert_int_equal(json_array_size(json_object_get(r.json, "products")), 1);
    th_resp_free(&r);
    /* A new variant's SKU and option, on the next request. */
    variant(store_a, p_trail, "TRAIL-XW", "{\"width\":\"wide\"}", 1);
    r = get(store_a, "/api/v1/search?q=TRAIL-XW");
    expect(&r, 200, NULL);
    assert_int_equal(total(&r), 1);
    th_resp_free(&r);
    r = get(store_a, "/api/v1/search?attr.width=wide&in_stock=true");
    expect(&r, 200, NULL);
    assert_int_equal(total(&r), 1);
    th_resp_free(&r);
    /* Stock taken to 0 through the inventory API: in_stock follows at once. */
    r = get(store_a, "/api/v1/search?attr.size=42&in_stock=true");
    expect(&r, 200, NULL);
    assert_int_equal(total(&r), 1);
    th_resp_free(&r);
    long vid = atol(th_sql("SELECT id FROM product_variants WHERE sku = 'RUN-42'", NULL));
    snprintf(path, sizeof(path), "/api/v1/variants/%ld/inventory", vid);
    r = th_store_req(srv, store_a, admin_a, "PATCH", path, "{\"set\":0}");
    expect(&r, 200, NULL);
    th_resp_free(&r);
    r = get(store_a, "/api/v1/search?attr.size=42&in_stock=true");
    expect(&r, 200, NULL);
    assert_int_equal(total(&r), 0);
    th_resp_free(&r);
    snprintf(path, sizeof(path), "/api/v1/products/%ld", p_trail);
    /* Archived: gone from search. */
    r = th_store_req(srv, store_a, admin_a, "PATCH", path, "{\"status\":\"archived\"}");
    expect(&r, 200, NULL);
    th_resp_free(&r);
    r = get(store_a, "/api/v1/search?q=boots");
    expect(&r, 200, NULL);
    assert_int_equal(total(&r), 0);
    th_resp_free(&r);
    /* The store's language: english stems "runs" to "run" after the change. */
    r = get(store_a, "/api/v1/search?q=runnings");
    assert_int_equal(json_array_size(json_object_get(r.json, "data")) > 0 &&
                         !strcmp(json_string_value(json_object_get(r.json, "match")), "fulltext"),
                     0);
    th_resp_free(&r);
    char spath[64];
    snprintf(spath, sizeof(spath), "/api/v1/stores/%ld", store_a);
    r = th_platform(srv, "PATCH", spath, "{\"settings\":{\"search_language\":\"english\"}}");
    expect(&r, 200, NULL);
    th_resp_free(&r);
    r = get(store_a, "/api/v1/search?q=runnings");
    expect(&r, 200, NULL);
    assert_string_equal(json_string_value(json_object_get(r.json, "match")), "fulltext");
    assert_int_equal(hit_id(&r, 0), p_running);
    th_resp_free(&r);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ranking),
        cmocka_unit_test(test_facets),
        cmocka_unit_test(test_filters),
        cmocka_unit_test(test_pages),
        cmocka_unit_test(test_hostile_input),
        cmocka_unit_test(test_drafts_and_isolation),
        cmocka_unit_test(test_suggest),
        cmocka_unit_test(test_fresh),
        TH_STOP_TEST, /* last: the server must exit 0 on SIGTERM */
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
