/*
 * Catalog and inventory against the real binary: categories (tree, breadcrumb,
 * moves, cycle refusal, depth limit, delete rules), products (CRUD, slug,
 * visibility), attributes and values, variants (CRUD, generation idempotence
 * and cap), inventory (set/adjust, the guard, a concurrent burst with the
 * ledger identity and batching seen in /metrics), the list endpoint (filters,
 * sorts, cursor and page), the public cache (ETag, 304, invalidation) and
 * cross-tenant isolation.
 */
#include <curl/curl.h>
#include <pthread.h>
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
static char *admin_a, *admin_b, *customer_a;

/* One request to a store, as a caller (token may be NULL), body may be NULL. */
static th_resp_t
rq(long store, const char *token, const char *method, const char *path, const char *body)
{
    return th_store_req(srv, store, token, method, path, body);
}

static th_resp_t
rqf(long store, const char *token, const char *method, const char *body, const char *fmt, ...)
{
    char path[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(path, sizeof(path), fmt, ap);
    va_end(ap);
    return rq(store, token, method, path, body);
}

static long
jint(json_t *o, const char *k)
{
    return (long)json_integer_value(json_object_get(o, k));
}

static const char *
jstr(json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

static void
expect(th_resp_t *r, long status, const char *code)
{
    if (r->status != status)
        fail_msg("expected %ld, got %ld: %s", status, r->status, r->body);
    if (code && strcmp(th_error_code(r), code))
        fail_msg("expected code %s: %s", code, r->body);
}

static bool
has_issue(const th_resp_t *r, const char *field)
{
    json_t *d = json_object_get(json_object_get(r->json, "error"), "details");
    size_t i;
    json_t *x;
    json_array_foreach(
        d, i, x) if (!strcmp(json_string_value(json_object_get(x, "field")), field)) return true;
    return false;
}

/* POST and return the new id (asserts 201). */
static long
create(long store, const char *path, const char *body)
{
    th_resp_t r = rq(store, store == store_a ? admin_a : admin_b, "POST", path, body);
    if (r.status != 201)
        fail_msg("POST %s %s: %ld %s", path, body, r.status, r.body);
    long id = jint(r.json, "id");
    th_resp_free(&r);
    return id;
}

static long
create_category(long store, const char *name, long parent)
{
    char body[256];
    if (parent)
        snprintf(body, sizeof(body), "{\"name\":\"%s\",\"parent_id\":%ld}", name, parent);
    else
        snprintf(body, sizeof(body), "{\"name\":\"%s\"}", name);
    return create(store, "/api/v1/categories", body);
}

static long
create_product(long store, const char *name, long price, const char *extra)
{
    char body[1024];
    snprintf(body, sizeof(body), "{\"name\":\"%s\",\"base_price\":%ld%s%s}", name, price,
             extra ? "," : "", extra ? extra : "");
    return create(store, "/api/v1/products", body);
}

static long
create_variant(long store, long product, const char *sku, long stock)
{
    char body[256], path[128];
    snprintf(body, sizeof(body), "{\"sku\":\"%s\",\"stock\":%ld,\"options\":{\"n\":\"%s\"}}", sku,
             stock, sku);
    snprintf(path, sizeof(path), "/api/v1/products/%ld/variants", product);
    return create(store, path, body);
}

static int
setup(void **state)
{
    curl_global_init(CURL_GLOBAL_ALL);
    srv = th_start(NULL);
    char slug[64];
    snprintf(slug, sizeof(slug), "%s", th_slug("cat-a"));
    store_a = th_create_store(srv, slug, NULL);
    snprintf(slug, sizeof(slug), "%s", th_slug("cat-b"));
    store_b = th_create_store(srv, slug, NULL);
    admin_a = th_token(srv, "STORE_ADMIN", store_a);
    admin_b = th_token(srv, "STORE_ADMIN", store_b);
    customer_a = th_token(srv, "CUSTOMER", store_a);
    return 0;
}

static int
teardown(void **state)
{
    free(admin_a);
    free(admin_b);
    free(customer_a);
    if (srv == NULL)
        return -1;
    th_stop(srv); /* frees it: TH_STOP_TEST checked the exit status */
    curl_global_cleanup();
    return 0;
}

/* ------------------------------------------------------------ categories */

static void
test_categories(void **state)
{
    long clothing = create_category(store_a, "Clothing", 0);
    long shirts = create_category(store_a, "Shirts", clothing);
    long tees = create_category(store_a, "T-Shirts", shirts);
    long shoes = create_category(store_a, "Shoes", 0);

    /* Writes need a store admin. */
    th_resp_t r = rq(store_a, NULL, "POST", "/api/v1/categories", "{\"name\":\"X\"}");
    expect(&r, 401, NULL);
    th_resp_free(&r);
    r = rq(store_a, customer_a, "POST", "/api/v1/categories", "{\"name\":\"X\"}");
    expect(&r, 403, NULL);
    th_resp_free(&r);

    /* The tree, nested, public. */
    r = rq(store_a, NULL, "GET", "/api/v1/categories", NULL);
    expect(&r, 200, NULL);
    json_t *roots = json_object_get(r.json, "data");
    json_t *c0 = NULL, *c1 = NULL;
    size_t i;
    json_t *x;
    json_array_foreach(roots, i, x)
    {
        if (jint(x, "id") == clothing)
            c0 = x;
        if (jint(x, "id") == shoes)
            c1 = x;
    }
    assert_non_null(c0);
    assert_non_null(c1);
    json_t *kids = json_object_get(c0, "children");
    assert_int_equal(json_array_size(kids), 1);
    assert_int_equal(jint(json_array_get(kids, 0), "id"), shirts);
    json_t *gk = json_object_get(json_array_get(kids, 0), "children");
    assert_int_equal(jint(json_array_get(gk, 0), "id"), tees);
    assert_int_equal(jint(json_array_get(gk, 0), "depth"), 3);
    assert_string_equal(jstr(json_array_get(gk, 0), "slug"), "t-shirts");
    th_resp_free(&r);

    /* One category: breadcrumb root first, children. */
    r = rqf(store_a, NULL, "GET", NULL, "/api/v1/categories/%ld", shirts);
    expect(&r, 200, NULL);
    json_t *bc = json_object_get(r.json, "breadcrumb");
    assert_int_equal(json_array_size(bc), 2);
    assert_int_equal(jint(json_array_get(bc, 0), "id"), clothing);
    assert_int_equal(jint(json_array_get(bc, 1), "id"), shirts);
    assert_int_equal(jint(json_array_get(json_object_get(r.json, "children"), 0), "id"), tees);
    th_resp_free(&r);
    r = rq(store_a, NULL, "GET", "/api/v1/categories/999999999", NULL);
    expect(&r, 404, "category_not_found");
    th_resp_free(&r);
    r = rq(store_a, NULL, "GET", "/api/v1/categories/abc", NULL);
    expect(&r, 404, "category_not_found");
    th_resp_free(&r);

    /* Validation. */
    r = rq(store_a, admin_a, "POST", "/api/v1/categories",
           "{\"slug\":\"Bad Slug\",\"position\":\"x\",\"color\":1}");
    expect(&r, 422, "validation_failed");
    assert_true(has_issue(&r, "name"));
    assert_true(has_issue(&r, "slug"));
    assert_true(has_issue(&r, "position"));
    assert_true(has_issue(&r, "color"));
    th_resp_free(&r);
    r = rq(store_a, admin_a, "POST", "/api/v1/categories", "{\"name\":\"Clothing\"}");
    expect(&r, 409, "slug_taken");
    th_resp_free(&r);
    r = rq(store_a, admin_a, "POST", "/api/v1/categories",
           "{\"name\":\"Orphan\",\"parent_id\":999999999}");
    expect(&r, 422, "validation_failed");
    assert_true(has_issue(&r, "parent_id"));
    th_resp_free(&r);

    /* Moves: under a descendant or itself is a cycle. */
    r = rqf(store_a, admin_a, "PATCH", "{\"parent_id\":0}", "/api/v1/categories/%ld", clothing);
    expect(&r, 422, "validation_failed");
    th_resp_free(&r);
    char body[128];
    snprintf(body, sizeof(body), "{\"parent_id\":%ld}", tees);
    r = rqf(store_a, admin_a, "PATCH", body, "/api/v1/categories/%ld", clothing);
    expect(&r, 409, "category_cycle");
    th_resp_free(&r);
    snprintf(body, sizeof(body), "{\"parent_id\":%ld}", clothing);
    r = rqf(store_a, admin_a, "PATCH", body, "/api/v1/categories/%ld", clothing);
    expect(&r, 409, "category_cycle");
    th_resp_free(&r);
    /* A legal move, rename and reorder. */
    snprintf(body, sizeof(body), "{\"parent_id\":%ld,\"name\":\"Tees\",\"position\":5}", clothing);
    r = rqf(store_a, admin_a, "PATCH", body, "/api/v1/categories/%ld", tees);
    expect(&r, 200, NULL);
    assert_int_equal(jint(r.json, "parent_id"), clothing);
    assert_string_equal(jstr(r.json, "name"), "Tees");
    assert_int_equal(jint(r.json, "position"), 5);
    th_resp_free(&r);
    r = rqf(store_a, admin_a, "PATCH", "{\"parent_id\":null}", "/api/v1/categories/%ld", tees);
    expect(&r, 200, NULL);
    assert_true(json_is_null(json_object_get(r.json, "parent_id")));
    th_resp_free(&r);
    r = rq(store_a, admin_a, "PATCH", "/api/v1/categories/999999999", "{\"name\":\"x\"}");
    expect(&r, 404, "category_not_found");
    th_resp_free(&r);

    /* Depth: a chain of CATALOG_MAX_DEPTH (8) levels, a 9th is refused. */
    long chain[8];
    for (int d = 0; d < 8; d++) {
        char nm[32];
        snprintf(nm, sizeof(nm), "Level %d", d + 1);
        chain[d] = create_category(store_a, nm, d ? chain[d - 1] : 0);
    }
    snprintf(body, sizeof(body), "{\"name\":\"Level 9\",\"parent_id\":%ld}", chain[7]);
    r = rq(store_a, admin_a, "POST", "/api/v1/categories", body);
    expect(&r, 422, "category_too_deep");
    th_resp_free(&r);
    /* Moving the 2-level Clothing subtree under level 7 would make 9 levels. */
    snprintf(body, sizeof(body), "{\"parent_id\":%ld}", chain[6]);
    r = rqf(store_a, admin_a, "PATCH", body, "/api/v1/categories/%ld", clothing);
    expect(&r, 422, "category_too_deep");
    th_resp_free(&r);

    /* Delete: refused while not empty, unless told where things go. */
    char extra[64];
    snprintf(extra, sizeof(extra), "\"category_id\":%ld", shirts);
    long prod = create_product(store_a, "Shirt in Shirts", 1000, extra);
    r = rqf(store_a, admin_a, "DELETE", NULL, "/api/v1/categories/%ld", clothing);
    expect(&r, 409, "category_not_empty");
    th_resp_free(&r);
    r = rqf(store_a, admin_a, "DELETE", NULL, "/api/v1/categories/%ld?move_to=%ld", clothing,
            shirts);
    expect(&r, 409, "category_cycle");
    th_resp_free(&r);
    r = rqf(store_a, admin_a, "DELETE", NULL, "/api/v1/categories/%ld?move_to=abc", clothing);
    expect(&r, 422, "validation_failed");
    th_resp_free(&r);
    r = rqf(store_a, admin_a, "DELETE", NULL, "/api/v1/categories/%ld", shirts);
    expect(&r, 409, "category_not_empty");
    th_resp_free(&r);
    r = rqf(store_a, admin_a, "DELETE", NULL, "/api/v1/categories/%ld?move_to=%ld", shirts, shoes);
    expect(&r, 204, NULL);
    th_resp_free(&r);
    r = rqf(store_a, admin_a, "GET", NULL, "/api/v1/products/%ld", prod);
    expect(&r, 200, NULL);
    assert_int_equal(jint(r.json, "category_id"), shoes);
    th_resp_free(&r);
    r = rqf(store_a, admin_a, "DELETE", NULL, "/api/v1/categories/%ld?move_to=root", shoes);
    expect(&r, 204, NULL);
    th_resp_free(&r);
    r = rqf(store_a, admin_a, "GET", NULL, "/api/v1/products/%ld", prod);
    assert_true(json_is_null(json_object_get(r.json, "category_id")));
    th_resp_free(&r);
    r = rqf(store_a, admin_a, "DELETE", NULL, "/api/v1/categories/%ld", clothing);
    expect(&r, 204, NULL);
    th_resp_free(&r);
    r = rqf(store_a, admin_a, "DELETE", NULL, "/api/v1/categories/%ld", clothing);
    expect(&r, 404, "category_not_found");
    th_resp_free(&r);
}

/* ------------------------------------------------------------ products */

static void
test_products(void **state)
{
    th_resp_t r = rq(
        store_a, admin_a, "POST", "/api/v1/products",
        "{\"name\":\"Blue Mug\",\"base_price\":1299,\"brand\":\"Acme\",\"description\":\"A mug.\","
        "\"attributes\":{\"material\":\"ceramic\"}}");
    expect(&r, 201, NULL);
    long id = jint(r.json, "id");
    assert_string_equal(jstr(r.json, "slug"), "blue-mug");
    assert_string_equal(jstr(r.json, "status"), "draft");
    assert_int_equal(jint(r.json, "base_price"), 1299);
    assert_string_equal(jstr(json_object_get(r.json, "attributes"), "material"), "ceramic");
    assert_int_equal(json_array_size(json_object_get(r.json, "variants")), 0);
    assert_non_null(th_header(&r, "Location"));
    th_resp_free(&r);

    /* Drafts are invisible to the public and to customers, visible to admins. */
    r = rqf(store_a, NULL, "GET", NULL, "/api/v1/products/%ld", id);
    expect(&r, 404, "product_not_found");
    th_resp_free(&r);
    r = rqf(store_a, customer_a, "GET", NULL, "/api/v1/products/%ld", id);
    expect(&r, 404, "product_not_found");
    th_resp_free(&r);
    r = rqf(store_a, admin_a, "GET", NULL, "/api/v1/products/%ld", id);
    expect(&r, 200, NULL);
    assert_string_equal(th_header(&r, "Cache-Control"), "private, no-store");
    th_resp_free(&r);

    r = rqf(store_a, admin_a, "PATCH", "{\"status\":\"active\",\"base_price\":1499,\"brand\":null}",
            "/api/v1/products/%ld", id);
    expect(&r, 200, NULL);
    assert_int_equal(jint(r.json, "base_price"), 1499);
    assert_true(json_is_null(json_object_get(r.json, "brand")));
    th_resp_free(&r);
    r = rq(store_a, NULL, "GET", "/api/v1/products/blue-mug", NULL); /* by slug */
    expect(&r, 200, NULL);
    assert_int_equal(jint(r.json, "id"), id);
    assert_string_equal(jstr(r.json, "status"), "active");
    th_resp_free(&r);

    /* Validation. */
    r = rq(store_a, admin_a, "POST", "/api/v1/products", "{}");
    expect(&r, 422, "validation_failed");
    assert_true(has_issue(&r, "name"));
    assert_true(has_issue(&r, "base_price"));
    th_resp_free(&r);
    r = rq(store_a, admin_a, "POST", "/api/v1/products",
           "{\"name\":\"\",\"base_price\":-1,\"status\":\"gone\",\"attributes\":[],\"category_id\":"
           "\"x\","
           "\"option_value_ids\":[\"a\"],\"slug\":\"A B\",\"weight\":3}");
    expect(&r, 422, "validation_failed");
    const char *fields[] = {"name",        "base_price",       "status", "attributes",
                            "category_id", "option_value_ids", "slug",   "weight"};
    for (size_t i = 0; i < 8; i++)
        if (!has_issue(&r, fields[i]))
            fail_msg("no issue for %s: %s", fields[i], r.body);
    th_resp_free(&r);
    r = rq(store_a, admin_a, "POST", "/api/v1/products",
           "{\"name\":\"Blue Mug\",\"base_price\":1}");
    expect(&r, 409, "slug_taken");
    th_resp_free(&r);
    r = rq(store_a, admin_a, "POST", "/api/v1/products",
           "{\"name\":\"No Cat\",\"base_price\":1,\"category_id\":999999999}");
    expect(&r, 422, "validation_failed");
    assert_true(has_issue(&r, "category_id"));
    th_resp_free(&r);
    r = rq(store_a, admin_a, "POST", "/api/v1/products",
           "{\"name\":\"No Val\",\"base_price\":1,\"option_value_ids\":[999999999]}");
    expect(&r, 422, "validation_failed");
    assert_true(has_issue(&r, "option_value_ids"));
    th_resp_free(&r);
    r = rq(store_a, admin_a, "POST", "/api/v1/products", "[1]");
    expect(&r, 422, "validation_failed");
    th_resp_free(&r);
    r = rq(store_a, admin_a, "PATCH", "/api/v1/products/999999999", "{\"name\":\"x\"}");
    expect(&r, 404, "product_not_found");
    th_resp_free(&r);

    r = rqf(store_a, admin_a, "DELETE", NULL, "/api/v1/products/%ld", id);
    expect(&r, 204, NULL);
    th_resp_free(&r);
    r = rqf(store_a, admin_a, "GET", NULL, "/api/v1/products/%ld", id);
    expect(&r, 404, "product_not_found");
    th_resp_free(&r);
    r = rqf(store_a, admin_a, "DELETE", NULL, "/api/v1/products/%ld", id);
    expect(&r, 404, "product_not_found");
    th_resp_free(&r);
}

/* ------------------------------------------------------------ attributes, generation */

static long
value_id(json_t *attr, const char *value)
{
    size_t i;
    json_t *x;
    json_array_foreach(json_object_get(attr, "values"), i,
                       x) if (!strcmp(jstr(x, "value"), value)) return jint(x, "id");
    fail_msg("no value %s", value);
    return 0;
}

static void
test_attributes_and_generation(void **state)
{
    th_resp_t r = rq(store_a, admin_a, "POST", "/api/v1/attributes",
                     "{\"name\":\"Size\",\"values\":[\"S\",\"M\",\"L\"]}");
    expect(&r, 201, NULL);
    long size = jint(r.json, "id");
    assert_int_equal(json_array_size(json_object_get(r.json, "values")), 3);
    long s = value_id(r.json, "S"), m = value_id(r.json, "M"), l = value_id(r.json, "L");
    th_resp_free(&r);
    r = rq(store_a, admin_a, "POST", "/api/v1/attributes", "{\"name\":\"Color\",\"position\":1}");
    expect(&r, 201, NULL);
    long color = jint(r.json, "id");
    th_resp_free(&r);
    char path[128];
    snprintf(path, sizeof(path), "/api/v1/attributes/%ld/values", color);
    long red = create(store_a, path, "{\"value\":\"Red\"}");
    long blue = create(store_a, path, "{\"value\":\"Blue\"}");
    long green = create(store_a, path, "{\"value\":\"Green\"}");

    /* Attribute and value CRUD and validation. */
    r = rq(store_a, admin_a, "POST", "/api/v1/attributes", "{\"name\":\"Size\"}");
    expect(&r, 409, "name_taken");
    th_resp_free(&r);
    r = rq(store_a, admin_a, "POST", "/api/v1/attributes", "{\"name\":\"\",\"values\":[1]}");
    expect(&r, 422, "validation_failed");
    assert_true(has_issue(&r, "name"));
    assert_true(has_issue(&r, "values"));
    th_resp_free(&r);
    r = rq(store_a, admin_a, "POST", path, "{\"value\":\"Red\"}");
    expect(&r, 409, "value_taken");
    th_resp_free(&r);
    r = rq(store_a, admin_a, "POST", "/api/v1/attributes/999999999/values", "{\"value\":\"X\"}");
    expect(&r, 404, "attribute_not_found");
    th_resp_free(&r);
    r = rqf(store_a, admin_a, "PATCH", "{\"value\":\"Forest Green\"}",
            "/api/v1/attributes/%ld/values/%ld", color, green);
    expect(&r, 200, NULL);
    assert_string_equal(jstr(r.json, "value"), "Forest Green");
    th_resp_free(&r);
    r = rqf(store_a, admin_a, "PATCH", "{\"value\":\"X\"}", "/api/v1/attributes/%ld/values/%ld",
            size, green);
    expect(&r, 404, "attribute_value_not_found");
    th_resp_free(&r);
    r = rqf(store_a, admin_a, "DELETE", NULL, "/api/v1/attributes/%ld/values/%ld", color, green);
    expect(&r, 204, NULL);
    th_resp_free(&r);
    r = rqf(store_a, admin_a, "PATCH", "{\"name\":\"Colour\"}", "/api/v1/attributes/%ld", color);
    expect(&r, 200, NULL);
    assert_string_equal(jstr(r.json, "name"), "Colour");
    assert_int_equal(json_array_size(json_object_get(r.json, "values")), 2);
    th_resp_free(&r);
    r = rq(store_a, NULL, "GET", "/api/v1/attributes", NULL);
    expect(&r, 200, NULL);
    assert_true(json_array_size(json_object_get(r.json, "data")) >= 2);
    th_resp_free(&r);
    r = rqf(store_a, NULL, "GET", NULL, "/api/v1/attributes/%ld", size);
    expect(&r, 200, NULL);
    assert_string_equal(jstr(r.json, "name"), "Size");
    th_resp_free(&r);
    r = rqf(store_a, NULL, "GET", NULL, "/api/v1/attributes/%ld/values", color);
    expect(&r, 200, NULL);
    assert_int_equal(json_array_size(json_object_get(r.json, "data")), 2);
    th_resp_free(&r);

    /* A product choosing S, M x Red, Blue: 4 combinations. */
    char extra[256];
    snprintf(extra, sizeof(extra), "\"status\":\"active\",\"option_value_ids\":[%ld,%ld,%ld,%ld]",
             s, m, red, blue);
    long tee = create_product(store_a, "Gen Tee", 2000, extra);
    r = rqf(store_a, admin_a, "POST", NULL, "/api/v1/products/%ld/variants/generate", tee);
    expect(&r, 201, NULL);
    assert_int_equal(jint(r.json, "created"), 4);
    json_t *vs = json_object_get(r.json, "data");
    assert_int_equal(json_array_size(vs), 4);
    json_t *v0 = json_array_get(vs, 0);
    assert_string_equal(jstr(v0, "sku"), "GEN-TEE-S-RED");
    assert_string_equal(jstr(json_object_get(v0, "options"), "Size"), "S");
    assert_string_equal(jstr(json_object_get(v0, "options"), "Colour"), "Red");
    assert_int_equal(jint(v0, "price"), 2000);
    assert_int_equal(jint(v0, "stock"), 0);
    th_resp_free(&r);
    /* Idempotent. */
    r = rqf(store_a, admin_a, "POST", NULL, "/api/v1/products/%ld/variants/generate", tee);
    expect(&r, 200, NULL);
    assert_int_equal(jint(r.json, "created"), 0);
    assert_int_equal(json_array_size(json_object_get(r.json, "data")), 4);
    th_resp_free(&r);
    /* Adding L keeps the 4 and adds 2. */
    snprintf(extra, sizeof(extra), "{\"option_value_ids\":[%ld,%ld,%ld,%ld,%ld]}", s, m, l, red,
             blue);
    r = rqf(store_a, admin_a, "PATCH", extra, "/api/v1/products/%ld", tee);
    expect(&r, 200, NULL);
    assert_int_equal(json_array_size(json_object_get(r.json, "option_value_ids")), 5);
    th_resp_free(&r);
    r = rqf(store_a, admin_a, "POST", NULL, "/api/v1/products/%ld/variants/generate", tee);
    expect(&r, 201, NULL);
    assert_int_equal(jint(r.json, "created"), 2);
    assert_int_equal(json_array_size(json_object_get(r.json, "data")), 6);
    th_resp_free(&r);
    r = rqf(store_a, NULL, "GET", NULL, "/api/v1/products/%ld/variants", tee);
    expect(&r, 200, NULL);
    assert_int_equal(json_array_size(json_object_get(r.json, "data")), 6);
    th_resp_free(&r);

    /* No values chosen; unknown product; too many combinations (11 x 10 > 100). */
    long bare = create_product(store_a, "Bare", 100, NULL);
    r = rqf(store_a, admin_a, "POST", NULL, "/api/v1/products/%ld/variants/generate", bare);
    expect(&r, 422, "no_options");
    th_resp_free(&r);
    r = rq(store_a, admin_a, "POST", "/api/v1/products/999999999/variants/generate", NULL);
    expect(&r, 404, "product_not_found");
    th_resp_free(&r);
    r = rq(store_a, admin_a, "POST", "/api/v1/attributes",
           "{\"name\":\"Big1\",\"values\":[\"1\",\"2\",\"3\",\"4\",\"5\",\"6\",\"7\",\"8\",\"9\","
           "\"10\",\"11\"]}");
    expect(&r, 201, NULL);
    json_t *big1 = json_incref(r.json);
    th_resp_free(&r);
    r = rq(store_a, admin_a, "POST", "/api/v1/attributes",
           "{\"name\":\"Big2\",\"values\":[\"a\",\"b\",\"c\",\"d\",\"e\",\"f\",\"g\",\"h\",\"i\","
           "\"j\"]}");
    expect(&r, 201, NULL);
    json_t *big2 = json_incref(r.json);
    th_resp_free(&r);
    char ids[1024] = "{\"option_value_ids\":[";
    size_t i;
    json_t *x;
    json_array_foreach(json_object_get(big1, "values"), i, x)
        snprintf(ids + strlen(ids), sizeof(ids) - strlen(ids), "%ld,", jint(x, "id"));
    json_array_foreach(json_object_get(big2, "values"), i, x) snprintf(
        ids + strlen(ids), sizeof(ids) - strlen(ids), "%s%ld", i ? "," : "", jint(x, "id"));
    strcat(ids, "]}");
    json_decref(big1);
    json_decref(big2);
    r = rqf(store_a, admin_a, "PATCH", ids, "/api/v1/products/%ld", bare);
    expect(&r, 200, NULL);
    th_resp_free(&r);
    r = rqf(store_a, admin_a, "POST", NULL, "/api/v1/products/%ld/variants/generate", bare);
    expect(&r, 422, "too_many_variants");
    th_resp_free(&r);
    r = rqf(store_a, admin_a, "GET", NULL, "/api/v1/products/%ld/variants", bare);
    assert_int_equal(json_array_size(json_object_get(r.json, "data")), 0);
    th_resp_free(&r);

    /* Deleting an attribute drops it from products; variants keep their options. */
    r = rqf(store_a, admin_a, "DELETE", NULL, "/api/v1/attributes/%ld", size);
    expect(&r, 204, NULL);
    th_resp_free(&r);
    r = rqf(store_a, admin_a, "GET", NULL, "/api/v1/products/%ld", tee);
    assert_int_equal(json_array_size(json_object_get(r.json, "option_value_ids")), 2);
    assert_int_equal(json_array_size(json_object_get(r.json, "variants")), 6);
    th_resp_free(&r);
    r = rqf(store_a, admin_a, "DELETE", NULL, "/api/v1/attributes/%ld", size);
    expect(&r, 404, "attribute_not_found");
    th_resp_free(&r);
}

/* ------------------------------------------------------------ variants */

static void
test_variants(void **state)
{
    long prod = create_product(store_a, "Var Prod", 500, "\"status\":\"active\"");
    char path[128];
    snprintf(path, sizeof(path), "/api/v1/products/%ld/variants", prod);
    th_resp_t r = rq(store_a, admin_a, "POST", path,
                     "{\"sku\":\"VP-1\",\"options\":{\"Size\":\"M\"},\"price\":750,\"stock\":5,"
                     "\"weight_g\":200,\"barcode\":\"123\"}");
    expect(&r, 201, NULL);
    long v = jint(r.json, "id");
    assert_int_equal(jint(r.json, "price"), 750);
    assert_int_equal(jint(r.json, "stock"), 5);
    assert_int_equal(jint(r.json, "weight_g"), 200);
    th_resp_free(&r);
    /* The initial stock is in the ledger. */
    r = rqf(store_a, admin_a, "GET", NULL, "/api/v1/variants/%ld/movements", v);
    expect(&r, 200, NULL);
    assert_int_equal(jint(r.json, "stock"), 5);
    assert_int_equal(jint(r.json, "ledger_sum"), 5);
    assert_string_equal(jstr(json_array_get(json_object_get(r.json, "movements"), 0), "reason"),
                        "initial stock");
    th_resp_free(&r);

    r = rq(store_a, admin_a, "POST", path, "{\"sku\":\"VP-1\",\"options\":{\"Size\":\"L\"}}");
    expect(&r, 409, "sku_taken");
    th_resp_free(&r);
    r = rq(store_a, admin_a, "POST", path, "{\"sku\":\"VP-2\",\"options\":{\"Size\":\"M\"}}");
    expect(&r, 409, "variant_exists");
    th_resp_free(&r);
    r = rq(store_a, admin_a, "POST", path,
           "{\"options\":[1],\"price\":-5,\"stock\":-1,\"weight_g\":\"x\",\"size\":1}");
    expect(&r, 422, "validation_failed");
    const char *fields[] = {"sku", "options", "price", "stock", "weight_g", "size"};
    for (size_t i = 0; i < 6; i++)
        if (!has_issue(&r, fields[i]))
            fail_msg("no issue for %s: %s", fields[i], r.body);
    th_resp_free(&r);
    r = rq(store_a, admin_a, "POST", "/api/v1/products/999999999/variants", "{\"sku\":\"NOPE\"}");
    expect(&r, 404, "product_not_found");
    th_resp_free(&r);

    r = rqf(store_a, admin_a, "PATCH", "{\"stock\":9}", "/api/v1/variants/%ld", v);
    expect(&r, 422, "validation_failed");
    assert_true(has_issue(&r, "stock"));
    th_resp_free(&r);
    r = rqf(store_a, admin_a, "PATCH", "{\"price\":null,\"sku\":\"VP-1B\"}", "/api/v1/variants/%ld",
            v);
    expect(&r, 200, NULL);
    assert_int_equal(jint(r.json, "price"), 500); /* back to the base price */
    assert_true(json_is_null(json_object_get(r.json, "price_override")));
    assert_string_equal(jstr(r.json, "sku"), "VP-1B");
    th_resp_free(&r);
    r = rqf(store_a, NULL, "GET", NULL, "/api/v1/variants/%ld", v);
    expect(&r, 200, NULL);
    assert_string_equal(jstr(r.json, "sku"), "VP-1B");
    th_resp_free(&r);
    r = rqf(store_a, admin_a, "DELETE", NULL, "/api/v1/variants/%ld", v);
    expect(&r, 204, NULL);
    th_resp_free(&r);
    r = rqf(store_a, NULL, "GET", NULL, "/api/v1/variants/%ld", v);
    expect(&r, 404, "variant_not_found");
    th_resp_free(&r);
    r = rqf(store_a, admin_a, "PATCH", "{\"sku\":\"Z\"}", "/api/v1/variants/%ld", v);
    expect(&r, 404, "variant_not_found");
    th_resp_free(&r);
}

/* ------------------------------------------------------------ inventory */

static long
stock_of(long variant)
{
    th_resp_t r = rqf(store_a, admin_a, "GET", NULL, "/api/v1/variants/%ld/movements", variant);
    expect(&r, 200, NULL);
    long s = jint(r.json, "stock");
    if (s != jint(r.json, "ledger_sum"))
        fail_msg("stock %ld != ledger sum %ld", s, jint(r.json, "ledger_sum"));
    th_resp_free(&r);
    /* And straight from PostgreSQL. */
    char vid[24], sid[24];
    snprintf(vid, sizeof(vid), "%ld", variant);
    snprintf(sid, sizeof(sid), "%ld", store_a);
    const char *p[] = {sid, vid, NULL};
    long sum = atol(th_sql("SELECT coalesce(sum(delta), 0) FROM inventory_movements WHERE store_id "
                           "= $1 AND variant_id = $2",
                           p));
    assert_int_equal(sum, s);
    return s;
}

static void
test_inventory(void **state)
{
    long prod = create_product(store_a, "Inv Prod", 100, NULL);
    long v = create_variant(store_a, prod, "INV-1", 0);
    th_resp_t r =
        rqf(store_a, admin_a, "PATCH", "{\"set\":10}", "/api/v1/variants/%ld/inventory", v);
    expect(&r, 200, NULL);
    assert_int_equal(jint(r.json, "stock"), 10);
    assert_int_equal(jint(r.json, "delta"), 10);
    th_resp_free(&r);
    r = rqf(store_a, admin_a, "PATCH", "{\"adjust\":-3,\"reason\":\"damaged\"}",
            "/api/v1/variants/%ld/inventory", v);
    expect(&r, 200, NULL);
    assert_int_equal(jint(r.json, "stock"), 7);
    th_resp_free(&r);
    r = rqf(store_a, admin_a, "PATCH", "{\"adjust\":-8}", "/api/v1/variants/%ld/inventory", v);
    expect(&r, 409, "insufficient_stock");
    th_resp_free(&r);
    r = rqf(store_a, admin_a, "PATCH", "{\"set\":7}", "/api/v1/variants/%ld/inventory",
            v); /* no change: no movement */
    expect(&r, 200, NULL);
    assert_int_equal(jint(r.json, "delta"), 0);
    assert_true(json_is_null(json_object_get(r.json, "movement_id")));
    th_resp_free(&r);
    const char *bad[] = {"{}",
                         "{\"set\":1,\"adjust\":1}",
                         "{\"set\":-1}",
                         "{\"adjust\":0}",
                         "{\"adjust\":\"1\"}",
                         "{\"adjust\":1,\"reason\":\"\"}",
                         "{\"adjust\":1,\"why\":1}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        r = rqf(store_a, admin_a, "PATCH", bad[i], "/api/v1/variants/%ld/inventory", v);
        if (r.status != 422)
            fail_msg("%s: %ld %s", bad[i], r.status, r.body);
        th_resp_free(&r);
    }
    r = rq(store_a, admin_a, "PATCH", "/api/v1/variants/999999999/inventory", "{\"adjust\":1}");
    expect(&r, 404, "variant_not_found");
    th_resp_free(&r);
    r = rqf(store_a, customer_a, "PATCH", "{\"adjust\":1}", "/api/v1/variants/%ld/inventory", v);
    expect(&r, 403, NULL);
    th_resp_free(&r);
    assert_int_equal(stock_of(v), 7);
    /* The product is a draft: its variants are hidden from the public. */
    r = rqf(store_a, NULL, "GET", NULL, "/api/v1/variants/%ld", v);
    expect(&r, 404, "variant_not_found");
    th_resp_free(&r);
    r = rqf(store_a, customer_a, "GET", NULL, "/api/v1/products/%ld/variants", prod);
    expect(&r, 404, "product_not_found");
    th_resp_free(&r);
    r = rqf(store_a, admin_a, "GET", NULL, "/api/v1/variants/%ld/movements", v);
    assert_int_equal(json_array_size(json_object_get(r.json, "movements")), 2);
    assert_string_equal(jstr(json_array_get(json_object_get(r.json, "movements"), 0), "reason"),
                        "damaged");
    assert_true(jint(json_array_get(json_object_get(r.json, "movements"), 0), "actor_user_id") > 0);
    th_resp_free(&r);
}

typedef struct burst_s {
    long variant;
    int n;
    const char *body;
    int ok, refused, invalid, other;
} burst_t;

static void *
burst_thread(void *arg)
{
    burst_t *b = arg;
    for (int i = 0; i < b->n; i++) {
        th_resp_t r =
            rqf(store_a, admin_a, "PATCH", b->body, "/api/v1/variants/%ld/inventory", b->variant);
        if (r.status == 200)
            b->ok++;
        else if (r.status == 409)
            b->refused++;
        else if (r.status == 422)
            b->invalid++;
        else
            b->other++;
        th_resp_free(&r);
    }
    return NULL;
}

static double
metric(const char *name)
{
    th_resp_t r = th_req(srv, "GET", "/metrics", NULL, NULL);
    char pat[128];
    snprintf(pat, sizeof(pat), "\n%s ", name);
    const char *p = strstr(r.body, pat);
    double v = p ? atof(p + strlen(pat)) : -1;
    th_resp_free(&r);
    return v;
}

static void
run_burst(burst_t *bs, int nthreads)
{
    pthread_t t[32];
    assert_true(nthreads <= 32);
    for (int i = 0; i < nthreads; i++)
        assert_int_equal(pthread_create(&t[i], NULL, burst_thread, &bs[i]), 0);
    for (int i = 0; i < nthreads; i++)
        pthread_join(t[i], NULL);
}

static void
test_inventory_burst(void **state)
{
    long prod = create_product(store_a, "Hot Item", 100, "\"status\":\"active\"");
    long v = create_variant(store_a, prod, "HOT-1", 300);
    double turns0 = metric("shopd_actor_turns_total"), msgs0 = metric("shopd_actor_messages_total");

    /* 16 threads x 50 requests of -1 from 300: exactly 300 succeed. */
    burst_t bs[24];
    memset(bs, 0, sizeof(bs));
    for (int i = 0; i < 16; i++)
        bs[i] = (burst_t){.variant = v, .n = 50, .body = "{\"adjust\":-1,\"reason\":\"burst\"}"};
    run_burst(bs, 16);
    int ok = 0, refused = 0, other = 0;
    for (int i = 0; i < 16; i++) {
        ok += bs[i].ok;
        refused += bs[i].refused;
        other += bs[i].other;
    }
    assert_int_equal(other, 0);
    assert_int_equal(ok, 300);
    assert_int_equal(refused, 500);
    assert_int_equal(stock_of(v), 0);

    /* Mixed: 8 threads of +2 and 8 of -1, 25 each; stock never negative and
     * every successful change is in the ledger. */
    for (int i = 0; i < 16; i++)
        bs[i] =
            (burst_t){.variant = v, .n = 25, .body = i % 2 ? "{\"adjust\":2}" : "{\"adjust\":-1}"};
    /* Plus 6 huge increments: two fit in an int, the others fail inside their
     * batches (integer overflow: 422) without disturbing their neighbours. */
    for (int i = 16; i < 18; i++)
        bs[i] = (burst_t){.variant = v, .n = 3, .body = "{\"adjust\":1000000000}"};
    run_burst(bs, 18);
    long expect_stock = 0;
    other = 0;
    for (int i = 0; i < 16; i++) {
        expect_stock += (i % 2 ? 2 : -1) * bs[i].ok;
        other += bs[i].other + bs[i].invalid;
        if (i % 2)
            assert_int_equal(bs[i].ok, 25); /* increments always succeed */
    }
    assert_int_equal(other, 0);
    assert_int_equal(bs[16].ok + bs[17].ok, 2);
    assert_int_equal(bs[16].invalid + bs[17].invalid, 4);
    expect_stock += 2000000000L;
    assert_true(expect_stock >= 0);
    assert_int_equal(stock_of(v), expect_stock);

    double turns = metric("shopd_actor_turns_total") - turns0,
           msgs = metric("shopd_actor_messages_total") - msgs0;
    print_message("inventory burst: %.0f messages in %.0f actor turns (%.1f per turn)\n", msgs,
                  turns, msgs / turns);
    assert_true(msgs >= 1200);
    assert_true(turns < msgs); /* adjustments were committed in batches */
}

/* ------------------------------------------------------------ listing */

static void
test_listing(void **state)
{
    char slug[64];
    snprintf(slug, sizeof(slug), "%s", th_slug("cat-list"));
    long sc = th_create_store(srv, slug, NULL);
    char *admin_c = th_token(srv, "STORE_ADMIN", sc);
    long saved_a = store_a;
    char *saved_tok = admin_a;
    store_a = sc; /* create() uses admin_a for store_a */
    admin_a = admin_c;
    long top = create_category(sc, "Top", 0);
    long sub = create_category(sc, "Sub", top);
    long other = create_category(sc, "Other", 0);
    /* 30 active products: prices 100..3000, brands alternate, 10 per category;
     * plus 3 drafts. */
    for (int i = 1; i <= 30; i++) {
        char name[64], extra[256];
        snprintf(name, sizeof(name), "%s Item %02d", i % 3 == 0 ? "Woolly" : "Plain", i);
        snprintf(
            extra, sizeof(extra),
            "\"status\":\"active\",\"brand\":\"%s\",\"category_id\":%ld,\"description\":\"%s\"",
            i % 2 ? "Acme" : "Zenith",
            i <= 10   ? top
            : i <= 20 ? sub
                      : other,
            i == 7 ? "made of cashmere" : "plain");
        long p = create_product(sc, name, i * 100, extra);
        if (i == 1)
            create_variant(sc, p, "L-1", 3);
    }
    long drafts[3];
    for (int i = 0; i < 3; i++) {
        char name[64];
        snprintf(name, sizeof(name), "Draft %d", i);
        drafts[i] = create_product(sc, name, 50, NULL);
    }

    th_resp_t r = rq(sc, NULL, "GET", "/api/v1/products", NULL);
    expect(&r, 200, NULL);
    assert_int_equal(jint(r.json, "total"), 30);
    assert_int_equal(jint(r.json, "limit"), 20);
    json_t *d = json_object_get(r.json, "data");
    assert_int_equal(json_array_size(d), 20);
    assert_string_equal(jstr(json_array_get(d, 0), "name"), "Woolly Item 30"); /* newest first */
    /* The lean entry: what a product grid shows, nothing more. */
    json_t *lean = json_array_get(d, 0);
    assert_int_equal(json_object_size(lean), 8);
    assert_string_equal(jstr(lean, "slug"), "woolly-item-30");
    assert_int_equal(jint(lean, "price_min"), 3000);
    assert_int_equal(jint(lean, "price_max"), 3000);
    assert_true(json_is_false(json_object_get(lean, "in_stock"))); /* no variants */
    assert_int_equal(jint(lean, "variant_count"), 0);
    assert_true(json_is_null(json_object_get(lean, "image")));
    assert_null(json_object_get(lean, "variants"));
    assert_null(json_object_get(lean, "category"));
    assert_true(json_is_string(json_object_get(r.json, "next_cursor")));
    /* The body is compact: no space after a key's colon anywhere. */
    assert_null(strstr(r.body, "\" : "));
    assert_null(strstr(r.body, ", \""));
    th_resp_free(&r);
    /* ?expand=variants: the full products, as before. */
    r = rq(sc, NULL, "GET", "/api/v1/products?expand=variants&limit=1", NULL);
    expect(&r, 200, NULL);
    json_t *full = json_array_get(json_object_get(r.json, "data"), 0);
    assert_string_equal(jstr(json_object_get(full, "category"), "name"), "Other");
    assert_true(json_is_array(json_object_get(full, "variants")));
    assert_int_equal(jint(full, "base_price"), 3000);
    th_resp_free(&r);

    /* Category includes descendants: Top has 10 + Sub's 10. */
    r = rqf(sc, NULL, "GET", NULL, "/api/v1/products?category=%ld&limit=100", top);
    assert_int_equal(jint(r.json, "total"), 20);
    th_resp_free(&r);
    r = rqf(sc, NULL, "GET", NULL, "/api/v1/products?category=%ld", sub);
    assert_int_equal(jint(r.json, "total"), 10);
    th_resp_free(&r);
    /* Price range, brand, q (name or description, case-insensitive). */
    r = rq(sc, NULL, "GET", "/api/v1/products?min_price=1000&max_price=1500&sort=price", NULL);
    assert_int_equal(jint(r.json, "total"), 6);
    assert_int_equal(jint(json_array_get(json_object_get(r.json, "data"), 0), "price_min"), 1000);
    th_resp_free(&r);
    r = rq(sc, NULL, "GET", "/api/v1/products?brand=Zenith&limit=100", NULL);
    assert_int_equal(jint(r.json, "total"), 15);
    th_resp_free(&r);
    r = rq(sc, NULL, "GET", "/api/v1/products?q=WOOLLY", NULL);
    assert_int_equal(jint(r.json, "total"), 10);
    th_resp_free(&r);
    r = rq(sc, NULL, "GET", "/api/v1/products?q=cashmere", NULL);
    assert_int_equal(jint(r.json, "total"), 1);
    assert_string_equal(jstr(json_array_get(json_object_get(r.json, "data"), 0), "name"),
                        "Plain Item 07");
    th_resp_free(&r);
    r = rq(sc, NULL, "GET", "/api/v1/products?q=100%25", NULL); /* wildcards are literal */
    assert_int_equal(jint(r.json, "total"), 0);
    th_resp_free(&r);
    /* The variants' summary in the lean entry; the variants themselves on request. */
    r = rq(sc, NULL, "GET", "/api/v1/products?sort=price&limit=1", NULL);
    json_t *first = json_array_get(json_object_get(r.json, "data"), 0);
    assert_int_equal(jint(first, "price_min"), 100);
    assert_int_equal(jint(first, "variant_count"), 1);
    assert_true(json_is_true(json_object_get(first, "in_stock")));
    th_resp_free(&r);
    r = rq(sc, NULL, "GET", "/api/v1/products?sort=price&limit=1&expand=variants", NULL);
    first = json_array_get(json_object_get(r.json, "data"), 0);
    assert_int_equal(jint(first, "base_price"), 100);
    assert_int_equal(json_array_size(json_object_get(first, "variants")), 1);
    assert_int_equal(jint(json_array_get(json_object_get(first, "variants"), 0), "stock"), 3);
    th_resp_free(&r);
    r = rq(sc, NULL, "GET", "/api/v1/products?sort=-price&limit=2", NULL);
    assert_int_equal(jint(json_array_get(json_object_get(r.json, "data"), 0), "price_max"), 3000);
    th_resp_free(&r);
    r = rq(sc, NULL, "GET", "/api/v1/products?sort=name&limit=1", NULL);
    assert_string_equal(jstr(json_array_get(json_object_get(r.json, "data"), 0), "name"),
                        "Plain Item 01");
    th_resp_free(&r);
    r = rq(sc, NULL, "GET", "/api/v1/products?sort=-name&limit=1", NULL);
    assert_string_equal(jstr(json_array_get(json_object_get(r.json, "data"), 0), "name"),
                        "Woolly Item 30");
    th_resp_free(&r);

    /* Cursor walks: every sort visits each product once, in order. */
    const char *sortv[] = {"newest", "price", "-price", "name", "-name"};
    for (size_t s = 0; s < 5; s++) {
        char cursor[512] = "", path[700];
        int seen = 0, pages = 0;
        long prev_price = -1;
        for (;;) {
            snprintf(path, sizeof(path), "/api/v1/products?sort=%s&limit=7%s%s", sortv[s],
                     cursor[0] ? "&cursor=" : "", cursor);
            r = rq(sc, NULL, "GET", path, NULL);
            expect(&r, 200, NULL);
            json_t *x;
            size_t i;
            json_array_foreach(json_object_get(r.json, "data"), i, x)
            {
                long pr = jint(x, "price_min"); /* no variant overrides its price here */
                if (s == 1 && prev_price >= 0)
                    assert_true(pr > prev_price);
                if (s == 2 && prev_price >= 0)
                    assert_true(pr < prev_price);
                prev_price = pr;
                seen++;
            }
            pages++;
            json_t *nc = json_object_get(r.json, "next_cursor");
            if (!json_is_string(nc)) {
                th_resp_free(&r);
                break;
            }
            snprintf(cursor, sizeof(cursor), "%s", json_string_value(nc));
            th_resp_free(&r);
            assert_true(pages < 10);
        }
        if (seen != 30)
            fail_msg("sort %s saw %d products", sortv[s], seen);
    }
    /* Page mode. */
    r = rq(sc, NULL, "GET", "/api/v1/products?sort=price&limit=10&page=3", NULL);
    assert_int_equal(jint(r.json, "page"), 3);
    assert_int_equal(jint(json_array_get(json_object_get(r.json, "data"), 0), "price_min"), 2100);
    assert_true(json_is_null(json_object_get(r.json, "next_cursor")));
    th_resp_free(&r);

    /* Status: admins only. */
    r = rq(sc, NULL, "GET", "/api/v1/products?status=draft", NULL);
    expect(&r, 403, "forbidden");
    th_resp_free(&r);
    r = rq(sc, admin_c, "GET", "/api/v1/products?status=draft", NULL);
    expect(&r, 200, NULL);
    assert_int_equal(jint(r.json, "total"), 3);
    th_resp_free(&r);
    r = rq(sc, admin_c, "GET", "/api/v1/products", NULL);
    assert_int_equal(jint(r.json, "total"), 33);
    th_resp_free(&r);

    /* The kept counts (sql/0020) follow every edit: a draft published into Sub,
     * moved to Other, then deleted. */
    r = rqf(sc, admin_c, "PATCH", "{\"status\":\"active\"}", "/api/v1/products/%ld", drafts[0]);
    expect(&r, 200, NULL);
    th_resp_free(&r);
    char cbody[64];
    snprintf(cbody, sizeof(cbody), "{\"category_id\":%ld}", sub);
    r = rqf(sc, admin_c, "PATCH", cbody, "/api/v1/products/%ld", drafts[0]);
    expect(&r, 200, NULL);
    th_resp_free(&r);
    r = rq(sc, NULL, "GET", "/api/v1/products", NULL);
    assert_int_equal(jint(r.json, "total"), 31);
    th_resp_free(&r);
    r = rqf(sc, NULL, "GET", NULL, "/api/v1/products?category=%ld", top);
    assert_int_equal(jint(r.json, "total"), 21); /* Sub is under Top */
    th_resp_free(&r);
    snprintf(cbody, sizeof(cbody), "{\"category_id\":%ld}", other);
    r = rqf(sc, admin_c, "PATCH", cbody, "/api/v1/products/%ld", drafts[0]);
    expect(&r, 200, NULL);
    th_resp_free(&r);
    r = rqf(sc, NULL, "GET", NULL, "/api/v1/products?category=%ld", top);
    assert_int_equal(jint(r.json, "total"), 20);
    th_resp_free(&r);
    r = rqf(sc, NULL, "GET", NULL, "/api/v1/products?category=%ld", other);
    assert_int_equal(jint(r.json, "total"), 11);
    th_resp_free(&r);
    r = rqf(sc, admin_c, "GET", NULL, "/api/v1/products?status=draft");
    assert_int_equal(jint(r.json, "total"), 2);
    th_resp_free(&r);
    r = rqf(sc, admin_c, "DELETE", NULL, "/api/v1/products/%ld", drafts[0]);
    expect(&r, 204, NULL);
    th_resp_free(&r);
    r = rq(sc, NULL, "GET", "/api/v1/products", NULL);
    assert_int_equal(jint(r.json, "total"), 30);
    th_resp_free(&r);
    r = rq(sc, admin_c, "GET", "/api/v1/products", NULL);
    assert_int_equal(jint(r.json, "total"), 32);
    th_resp_free(&r);
    /* And every store's kept counts equal a fresh count of its products, after all
     * the writes of this program (imports, category deletes with move_to...). */
    assert_string_equal(
        th_sql("SELECT count(*) FROM (SELECT store_id, coalesce(category_id, 0) AS category_id,"
               " status, count(*) AS n FROM products GROUP BY 1, 2, 3) p FULL JOIN"
               " (SELECT * FROM catalog_counts WHERE n <> 0) k"
               " USING (store_id, category_id, status) WHERE p.n IS DISTINCT FROM k.n",
               NULL),
        "0");

    /* Bad parameters. */
    const char *bad[] = {"limit=0",
                         "limit=101",
                         "sort=cheap",
                         "min_price=-1",
                         "max_price=x",
                         "category=0",
                         "q=a",
                         "status=gone",
                         "cursor=zz",
                         "page=0",
                         "cursor=5&page=2",
                         "min_price=5&max_price=4",
                         "sort=price&cursor=12",
                         "expand=category"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        r = rqf(sc, NULL, "GET", NULL, "/api/v1/products?%s", bad[i]);
        if (r.status != 422)
            fail_msg("%s: %ld %s", bad[i], r.status, r.body);
        th_resp_free(&r);
    }
    store_a = saved_a;
    admin_a = saved_tok;
    free(admin_c);
}

/* ------------------------------------------------------------ cache */

static void
test_cache(void **state)
{
    long p = create_product(store_a, "Cached Lamp", 4000, "\"status\":\"active\"");
    char path[128];
    snprintf(path, sizeof(path), "/api/v1/products/%ld", p);
    th_resp_t r = rq(store_a, NULL, "GET", path, NULL);
    expect(&r, 200, NULL);
    char etag[64];
    snprintf(etag, sizeof(etag), "%s", th_header(&r, "ETag"));
    assert_string_equal(th_header(&r, "Cache-Control"), "public, no-cache");
    assert_string_equal(th_header(&r, "X-Cache"), "miss");
    th_resp_free(&r);
    r = rq(store_a, NULL, "GET", path, NULL);
    assert_string_equal(th_header(&r, "X-Cache"), "hit");
    assert_string_equal(th_header(&r, "ETag"), etag);
    assert_int_equal(jint(r.json, "base_price"), 4000);
    th_resp_free(&r);
    /* If-None-Match -> 304 without a body. */
    char inm[128], tenant[64];
    snprintf(inm, sizeof(inm), "If-None-Match: %s", etag);
    snprintf(tenant, sizeof(tenant), "X-Tenant-Id: %ld", store_a);
    const char *h[] = {tenant, inm, NULL};
    r = th_req(srv, "GET", path, h, NULL);
    expect(&r, 304, NULL);
    assert_int_equal(r.len, 0);
    th_resp_free(&r);
    /* The list, with its parameters in any order, is one entry. */
    r = rq(store_a, NULL, "GET", "/api/v1/products?limit=5&sort=price", NULL);
    th_resp_free(&r);
    r = rq(store_a, NULL, "GET", "/api/v1/products?sort=price&limit=5", NULL);
    assert_string_equal(th_header(&r, "X-Cache"), "hit");
    th_resp_free(&r);

    /* A write: the next GET shows it, with a new ETag, and the old one no longer 304s. */
    r = rq(store_a, admin_a, "PATCH", path, "{\"base_price\":4200}");
    expect(&r, 200, NULL);
    th_resp_free(&r);
    r = th_req(srv, "GET", path, h, NULL);
    expect(&r, 200, NULL);
    assert_int_equal(jint(r.json, "base_price"), 4200);
    assert_string_not_equal(th_header(&r, "ETag"), etag);
    th_resp_free(&r);
    r = rq(store_a, NULL, "GET", "/api/v1/products?sort=price&limit=5", NULL);
    assert_string_equal(th_header(&r, "X-Cache"), "miss");
    th_resp_free(&r);
    /* Stock changes show too. */
    long v = create_variant(store_a, p, "LAMP-1", 1);
    r = rq(store_a, NULL, "GET", path, NULL);
    assert_int_equal(jint(json_array_get(json_object_get(r.json, "variants"), 0), "stock"), 1);
    th_resp_free(&r);
    r = rqf(store_a, admin_a, "PATCH", "{\"adjust\":4}", "/api/v1/variants/%ld/inventory", v);
    th_resp_free(&r);
    r = rq(store_a, NULL, "GET", path, NULL);
    assert_int_equal(jint(json_array_get(json_object_get(r.json, "variants"), 0), "stock"), 5);
    th_resp_free(&r);
    /* Archiving hides it from the public at once. */
    r = rq(store_a, admin_a, "PATCH", path, "{\"status\":\"archived\"}");
    th_resp_free(&r);
    r = rq(store_a, NULL, "GET", path, NULL);
    expect(&r, 404, "product_not_found");
    th_resp_free(&r);
}

/* ------------------------------------------------------------ isolation */

static void
test_isolation(void **state)
{
    /* Store B's things. */
    long cat = create_category(store_b, "B Cat", 0);
    long draft = create_product(store_b, "B Draft", 100, NULL);
    long var = create_variant(store_b, draft, "B-1", 5);
    th_resp_t r = rq(store_b, admin_b, "POST", "/api/v1/attributes",
                     "{\"name\":\"B Attr\",\"values\":[\"x\"]}");
    expect(&r, 201, NULL); /* else the checks below would run against id 0 */
    long attr = jint(r.json, "id");
    long val = jint(json_array_get(json_object_get(r.json, "values"), 0), "id");
    assert_true(attr > 0);
    assert_true(val > 0);
    th_resp_free(&r);

    /* A's admin on B: the token is not B's. On a public route it counts for nothing
     * (an anonymous caller, who sees no draft: 404); on an admin route it is refused
     * with 403 forbidden ("this token belongs to another store"), as test_isolation
     * checks for every store-scoped route. */
    r = rqf(store_b, admin_a, "GET", NULL, "/api/v1/products/%ld", draft);
    expect(&r, 404, "product_not_found");
    th_resp_free(&r);
    r = rq(store_b, admin_a, "GET", "/api/v1/products?status=draft", NULL);
    expect(&r, 403, "forbidden");
    th_resp_free(&r);
    r = rqf(store_b, admin_a, "PATCH", "{\"name\":\"Hacked\"}", "/api/v1/categories/%ld", cat);
    expect(&r, 403, "forbidden");
    th_resp_free(&r);

    /* B's ids through store A (A's own token): nothing is found. */
    struct {
        const char *method, *fmt, *body;
        long id;
    } calls[] = {
        {"GET", "/api/v1/products/%ld", NULL, draft},
        {"PATCH", "/api/v1/products/%ld", "{\"name\":\"x\"}", draft},
        {"DELETE", "/api/v1/products/%ld", NULL, draft},
        {"GET", "/api/v1/categories/%ld", NULL, cat},
        {"PATCH", "/api/v1/categories/%ld", "{\"name\":\"x\"}", cat},
        {"DELETE", "/api/v1/categories/%ld", NULL, cat},
        {"GET", "/api/v1/variants/%ld", NULL, var},
        {"PATCH", "/api/v1/variants/%ld", "{\"sku\":\"x\"}", var},
        {"PATCH", "/api/v1/variants/%ld/inventory", "{\"adjust\":-1}", var},
        {"GET", "/api/v1/variants/%ld/movements", NULL, var},
        {"DELETE", "/api/v1/variants/%ld", NULL, var},
        {"POST", "/api/v1/products/%ld/variants", "{\"sku\":\"x\"}", draft},
        {"POST", "/api/v1/products/%ld/variants/generate", NULL, draft},
        {"GET", "/api/v1/products/%ld/variants", NULL, draft},
        {"GET", "/api/v1/attributes/%ld", NULL, attr},
        {"PATCH", "/api/v1/attributes/%ld", "{\"name\":\"x\"}", attr},
        {"POST", "/api/v1/attributes/%ld/values", "{\"value\":\"y\"}", attr},
        {"DELETE", "/api/v1/attributes/%ld", NULL, attr},
    };
    for (size_t i = 0; i < sizeof(calls) / sizeof(calls[0]); i++) {
        r = rqf(store_a, admin_a, calls[i].method, calls[i].body, calls[i].fmt, calls[i].id);
        if (r.status != 404)
            fail_msg("%s %s (B's id via A): %ld %s", calls[i].method, calls[i].fmt, r.status,
                     r.body);
        th_resp_free(&r);
    }
    r = rqf(store_a, admin_a, "PATCH", "{\"value\":\"z\"}", "/api/v1/attributes/%ld/values/%ld",
            attr, val);
    expect(&r, 404, NULL);
    th_resp_free(&r);
    /* A's product cannot point at B's category or B's attribute values. */
    char extra[128];
    snprintf(extra, sizeof(extra), "{\"name\":\"Cross\",\"base_price\":1,\"category_id\":%ld}",
             cat);
    r = rq(store_a, admin_a, "POST", "/api/v1/products", extra);
    expect(&r, 422, "validation_failed");
    th_resp_free(&r);
    snprintf(extra, sizeof(extra),
             "{\"name\":\"Cross2\",\"base_price\":1,\"option_value_ids\":[%ld]}", val);
    r = rq(store_a, admin_a, "POST", "/api/v1/products", extra);
    expect(&r, 422, "validation_failed");
    th_resp_free(&r);

    /* B's data is intact. */
    r = rqf(store_b, admin_b, "GET", NULL, "/api/v1/variants/%ld/movements", var);
    expect(&r, 200, NULL);
    assert_int_equal(jint(r.json, "stock"), 5);
    th_resp_free(&r);
    r = rqf(store_b, admin_b, "GET", NULL, "/api/v1/products/%ld", draft);
    expect(&r, 200, NULL);
    assert_string_equal(jstr(r.json, "name"), "B Draft");
    th_resp_free(&r);
    r = rqf(store_b, admin_b, "GET", NULL, "/api/v1/categories/%ld", cat);
    expect(&r, 200, NULL);
    assert_string_equal(jstr(r.json, "name"), "B Cat");
    th_resp_free(&r);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_categories),
        cmocka_unit_test(test_products),
        cmocka_unit_test(test_attributes_and_generation),
        cmocka_unit_test(test_variants),
        cmocka_unit_test(test_inventory),
        cmocka_unit_test(test_inventory_burst),
        cmocka_unit_test(test_listing),
        cmocka_unit_test(test_cache),
        cmocka_unit_test(test_isolation),
        TH_STOP_TEST, /* last: the server must exit 0 on SIGTERM */
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
