/*
 * Stores and tenant resolution against the real binary: platform auth,
 * CRUD with validation errors, pagination, resolution by X-Tenant-Id,
 * subdomain and custom domain, unknown and suspended stores, the cache
 * following every change, and a deleted store leaving no row and no media
 * object behind.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vips/vips.h>

#include <cmocka.h>

#include "harness.h"

static th_server_t *srv;
static char media_dir[256];

static int
setup(void **state)
{
    if (VIPS_INIT("test_stores") != 0)
        return -1;
    /* Media in a folder of this run; the sweep that purges a deleted store's
     * objects runs every 100 ms. */
    snprintf(media_dir, sizeof(media_dir), "/tmp/shopd-stores-media-%d", (int)getpid());
    static char md[300];
    snprintf(md, sizeof(md), "SHOPD_MEDIA_DIR=%s", media_dir);
    const char *env[] = {md, "SHOPD_SWEEP_INTERVAL_MS=100", "SHOPD_JOBS_POLL_MS=50",
                         "SHOPD_JOBS_RETRY_SCHEDULE=1", NULL};
    srv = th_start(env);
    return 0;
}

static int
teardown(void **state)
{
    if (srv == NULL)
        return -1;
    th_stop(srv); /* frees it: TH_STOP_TEST checked the exit status */
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", media_dir);
    if (system(cmd) != 0) {
    }
    return 0;
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

static void
test_platform_auth(void **state)
{
    th_resp_t r = th_req(srv, "GET", "/api/v1/stores", NULL, NULL);
    assert_int_equal(r.status, 401);
    assert_string_equal(th_error_code(&r), "unauthenticated");
    assert_non_null(th_header(&r, "WWW-Authenticate"));
    th_resp_free(&r);
    const char *wrong[] = {"Authorization: Bearer " TH_PLATFORM_TOKEN "x", NULL};
    r = th_req(srv, "GET", "/api/v1/stores", wrong, NULL);
    assert_int_equal(r.status, 401);
    th_resp_free(&r);
    const char *basic[] = {"Authorization: Basic dXNlcjpwYXNz", NULL};
    r = th_req(srv, "POST", "/api/v1/stores", basic, "{}");
    assert_int_equal(r.status, 401);
    th_resp_free(&r);
}

static void
test_create_validation(void **state)
{
    th_resp_t r = th_platform(srv, "POST", "/api/v1/stores", "{}");
    assert_int_equal(r.status, 422);
    assert_true(has_issue(&r, "slug"));
    assert_true(has_issue(&r, "name"));
    assert_true(has_issue(&r, "currency"));
    th_resp_free(&r);

    r = th_platform(
        srv, "POST", "/api/v1/stores",
        "{\"slug\":\"Bad Slug\",\"name\":\"\",\"currency\":\"usd\",\"domain\":\"not a host\","
        "\"settings\":[1],\"status\":\"closed\",\"color\":\"red\"}");
    assert_int_equal(r.status, 422);
    assert_string_equal(th_error_code(&r), "validation_failed");
    const char *fields[] = {"slug", "name", "currency", "domain", "settings", "status", "color"};
    for (size_t i = 0; i < 7; i++)
        if (!has_issue(&r, fields[i]))
            fail_msg("no issue for %s in %s", fields[i], r.body);
    th_resp_free(&r);

    r = th_platform(srv, "POST", "/api/v1/stores",
                    "{\"slug\":\"www\",\"name\":\"W\",\"currency\":\"USD\"}");
    assert_int_equal(r.status, 422);
    assert_true(has_issue(&r, "slug"));
    th_resp_free(&r);

    r = th_platform(srv, "POST", "/api/v1/stores",
                    "{\"slug\":\"abc-def\",\"name\":\"W\",\"currency\":\"XXX\"}");
    assert_int_equal(r.status, 422);
    assert_true(has_issue(&r, "currency"));
    th_resp_free(&r);

    r = th_platform(
        srv, "POST", "/api/v1/stores",
        "{\"slug\":\"abc-def\",\"name\":\"W\",\"currency\":\"USD\",\"domain\":\"x.shop.test\"}");
    assert_int_equal(r.status, 422);
    assert_true(has_issue(&r, "domain"));
    th_resp_free(&r);
}

static void
test_crud(void **state)
{
    char slug[64], body[512], path[128];
    snprintf(slug, sizeof(slug), "%s", th_slug("crud"));
    snprintf(body, sizeof(body),
             "{\"slug\":\"%s\",\"name\":\"Crud Shop "
             "\\u00e9\",\"currency\":\"EUR\",\"settings\":{\"theme\":\"dark\"}}",
             slug);
    th_resp_t r = th_platform(srv, "POST", "/api/v1/stores", body);
    if (r.status != 201)
        fail_msg("want 201, got %d: %s", r.status, r.body);
    long id = (long)json_integer_value(json_object_get(r.json, "id"));
    assert_true(id > 0);
    assert_string_equal(json_string_value(json_object_get(r.json, "slug")), slug);
    assert_string_equal(json_string_value(json_object_get(r.json, "currency")), "EUR");
    assert_string_equal(json_string_value(json_object_get(r.json, "status")), "active");
    assert_true(json_is_null(json_object_get(r.json, "domain")));
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(r.json, "settings"), "theme")), "dark");
    assert_non_null(json_object_get(r.json, "created_at"));
    snprintf(path, sizeof(path), "/api/v1/stores/%ld", id);
    assert_string_equal(th_header(&r, "Location"), path);
    th_resp_free(&r);

    /* Same slug again: 409. */
    r = th_platform(srv, "POST", "/api/v1/stores", body);
    assert_int_equal(r.status, 409);
    assert_string_equal(th_error_code(&r), "slug_taken");
    th_resp_free(&r);

    r = th_platform(srv, "GET", path, NULL);
    assert_int_equal(r.status, 200);
    assert_string_equal(json_string_value(json_object_get(r.json, "name")), "Crud Shop \xc3\xa9");
    th_resp_free(&r);
    char bys[128];
    snprintf(bys, sizeof(bys), "/api/v1/stores/%s", slug);
    r = th_platform(srv, "GET", bys, NULL);
    assert_int_equal(r.status, 200);
    assert_int_equal(json_integer_value(json_object_get(r.json, "id")), id);
    th_resp_free(&r);

    r = th_platform(srv, "PATCH", path, "{\"name\":\"Renamed\",\"settings\":{\"lang\":\"fr\"}}");
    assert_int_equal(r.status, 200);
    assert_string_equal(json_string_value(json_object_get(r.json, "name")), "Renamed");
    json_t *st = json_object_get(r.json, "settings");
    assert_string_equal(json_string_value(json_object_get(st, "theme")), "dark"); /* merged */
    assert_string_equal(json_string_value(json_object_get(st, "lang")), "fr");
    th_resp_free(&r);

    r = th_platform(srv, "PATCH", path, "{\"currency\":\"nope\"}");
    assert_int_equal(r.status, 422);
    th_resp_free(&r);

    r = th_platform(srv, "DELETE", path, NULL);
    assert_int_equal(r.status, 204);
    th_resp_free(&r);
    r = th_platform(srv, "GET", path, NULL);
    assert_int_equal(r.status, 404);
    assert_string_equal(th_error_code(&r), "store_not_found");
    th_resp_free(&r);
    r = th_platform(srv, "DELETE", path, NULL);
    assert_int_equal(r.status, 404);
    th_resp_free(&r);
    r = th_platform(srv, "PATCH", "/api/v1/stores/999999999999", "{\"name\":\"x\"}");
    assert_int_equal(r.status, 404);
    th_resp_free(&r);
}

static void
test_list_pagination(void **state)
{
    char prefix[32];
    snprintf(prefix, sizeof(prefix), "%s", th_slug("pg"));
    for (int i = 0; i < 5; i++) {
        char s[64];
        snprintf(s, sizeof(s), "%s-%d", prefix, i);
        th_create_store(srv, s, NULL);
    }
    th_resp_t r = th_platform(srv, "GET", "/api/v1/stores?limit=2", NULL);
    assert_int_equal(r.status, 200);
    assert_int_equal(json_array_size(json_object_get(r.json, "data")), 2);
    assert_true(json_integer_value(json_object_get(r.json, "total")) >= 5);
    const char *cur = json_string_value(json_object_get(r.json, "next_cursor"));
    assert_non_null(cur);
    long first_id = (long)json_integer_value(
        json_object_get(json_array_get(json_object_get(r.json, "data"), 1), "id"));
    char path[128];
    snprintf(path, sizeof(path), "/api/v1/stores?limit=2&cursor=%s", cur);
    th_resp_free(&r);
    r = th_platform(srv, "GET", path, NULL);
    assert_int_equal(r.status, 200);
    long next_id = (long)json_integer_value(
        json_object_get(json_array_get(json_object_get(r.json, "data"), 0), "id"));
    assert_true(next_id > first_id);
    th_resp_free(&r);

    r = th_platform(srv, "GET", "/api/v1/stores?page=2&limit=2", NULL);
    assert_int_equal(r.status, 200);
    assert_int_equal(json_integer_value(json_object_get(r.json, "page")), 2);
    th_resp_free(&r);

    r = th_platform(srv, "GET", "/api/v1/stores?limit=500", NULL);
    assert_int_equal(r.status, 422);
    th_resp_free(&r);
    r = th_platform(srv, "GET", "/api/v1/stores?cursor=abc", NULL);
    assert_int_equal(r.status, 422);
    th_resp_free(&r);
    /* The status filter: a suspended store among active ones is the only match (the
     * database is this program's own; other tests here suspend only stores they
     * reactivate or delete before this runs, so count what this test made). */
    char sus[64], spath[64];
    snprintf(sus, sizeof(sus), "%s-sus", prefix);
    long sus_id = th_create_store(srv, sus, NULL);
    snprintf(spath, sizeof(spath), "/api/v1/stores/%ld", sus_id);
    r = th_platform(srv, "PATCH", spath, "{\"status\":\"suspended\"}");
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
    r = th_platform(srv, "GET", "/api/v1/stores?status=suspended&limit=100", NULL);
    assert_int_equal(r.status, 200);
    size_t i, mine = 0;
    json_t *x, *data = json_object_get(r.json, "data");
    assert_true(json_array_size(data) >= 1);
    json_array_foreach(data, i, x)
    {
        assert_string_equal(json_string_value(json_object_get(x, "status")), "suspended");
        if (json_integer_value(json_object_get(x, "id")) == sus_id)
            mine++;
    }
    assert_int_equal(mine, 1);
    th_resp_free(&r);
    /* None of the five active stores of this test is listed as suspended. */
    r = th_platform(srv, "GET", "/api/v1/stores?status=active&limit=100", NULL);
    assert_int_equal(r.status, 200);
    size_t active = 0;
    json_array_foreach(json_object_get(r.json, "data"), i, x)
    {
        assert_string_equal(json_string_value(json_object_get(x, "status")), "active");
        const char *sl = json_string_value(json_object_get(x, "slug"));
        if (sl && !strncmp(sl, prefix, strlen(prefix)))
            active++;
    }
    assert_int_equal(active, 5);
    th_resp_free(&r);
}

static th_resp_t
get_store(const char *hdr1, const char *hdr2)
{
    const char *h[] = {hdr1, hdr2, NULL};
    return th_req(srv, "GET", "/api/v1/store", h, NULL);
}

static void
test_tenant_resolution(void **state)
{
    char slug[64], domain[128], hdr[160], host[160];
    snprintf(slug, sizeof(slug), "%s", th_slug("ten"));
    snprintf(domain, sizeof(domain), "www.%s.example", slug);
    char extra[200];
    snprintf(extra, sizeof(extra), "\"domain\":\"%s\"", domain);
    long id = th_create_store(srv, slug, extra);

    snprintf(hdr, sizeof(hdr), "X-Tenant-Id: %s", slug);
    th_resp_t r = get_store(hdr, NULL);
    assert_int_equal(r.status, 200);
    assert_int_equal(json_integer_value(json_object_get(r.json, "id")), id);
    assert_string_equal(json_string_value(json_object_get(r.json, "slug")), slug);
    assert_string_equal(json_string_value(json_object_get(r.json, "currency")), "USD");
    assert_string_equal(json_string_value(json_object_get(r.json, "domain")), domain);
    assert_null(json_object_get(r.json, "settings")); /* public info only */
    th_resp_free(&r);
    /* Cached now: same answer. */
    r = get_store(hdr, NULL);
    assert_int_equal(r.status, 200);
    th_resp_free(&r);

    snprintf(hdr, sizeof(hdr), "X-Tenant-Id: %ld", id);
    r = get_store(hdr, NULL);
    assert_int_equal(r.status, 200);
    assert_string_equal(json_string_value(json_object_get(r.json, "slug")), slug);
    th_resp_free(&r);

    snprintf(host, sizeof(host), "Host: %s.%s:8080", slug, TH_BASE_DOMAIN);
    r = get_store(host, NULL);
    assert_int_equal(r.status, 200);
    assert_int_equal(json_integer_value(json_object_get(r.json, "id")), id);
    th_resp_free(&r);

    snprintf(host, sizeof(host), "Host: %s", domain);
    r = get_store(host, NULL);
    assert_int_equal(r.status, 200);
    assert_int_equal(json_integer_value(json_object_get(r.json, "id")), id);
    th_resp_free(&r);

    /* The header wins over Host. */
    snprintf(hdr, sizeof(hdr), "X-Tenant-Id: %s", slug);
    r = get_store(hdr, "Host: other-store.shop.test");
    assert_int_equal(json_integer_value(json_object_get(r.json, "id")), id);
    th_resp_free(&r);

    r = get_store("X-Tenant-Id: no-such-store-xyz", NULL);
    assert_int_equal(r.status, 404);
    assert_string_equal(th_error_code(&r), "store_not_found");
    th_resp_free(&r);
    r = get_store("Host: unknown.example.org", NULL);
    assert_int_equal(r.status, 404);
    assert_string_equal(th_error_code(&r), "store_not_found");
    th_resp_free(&r);
    r = get_store("Host: 127.0.0.1", NULL);
    assert_int_equal(r.status, 404);
    th_resp_free(&r);
    r = get_store("X-Tenant-Id: 999999999999", NULL);
    assert_int_equal(r.status, 404);
    th_resp_free(&r);
}

static void
test_cache_follows_changes(void **state)
{
    char slug[64], slug2[80], hdr[160], hdr2[160], path[96], body[256];
    snprintf(slug, sizeof(slug), "%s", th_slug("chg"));
    snprintf(slug2, sizeof(slug2), "%s-new", slug);
    long id = th_create_store(srv, slug, NULL);
    snprintf(path, sizeof(path), "/api/v1/stores/%ld", id);
    snprintf(hdr, sizeof(hdr), "X-Tenant-Id: %s", slug);
    snprintf(hdr2, sizeof(hdr2), "X-Tenant-Id: %s", slug2);

    /* A negative answer for the future slug is cached... */
    th_resp_t r = get_store(hdr2, NULL);
    assert_int_equal(r.status, 404);
    th_resp_free(&r);
    r = get_store(hdr, NULL);
    assert_int_equal(r.status, 200);
    th_resp_free(&r);

    /* Suspend: the next request sees it at once. */
    r = th_platform(srv, "PATCH", path, "{\"status\":\"suspended\"}");
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
    r = get_store(hdr, NULL);
    assert_int_equal(r.status, 403);
    assert_string_equal(th_error_code(&r), "store_suspended");
    th_resp_free(&r);

    /* Rename and reactivate: the old slug is gone, the new one answers (the cached
     * negative was dropped), the new name shows. */
    snprintf(body, sizeof(body), "{\"status\":\"active\",\"slug\":\"%s\",\"name\":\"New Name\"}",
             slug2);
    r = th_platform(srv, "PATCH", path, body);
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
    r = get_store(hdr, NULL);
    assert_int_equal(r.status, 404);
    th_resp_free(&r);
    r = get_store(hdr2, NULL);
    assert_int_equal(r.status, 200);
    assert_string_equal(json_string_value(json_object_get(r.json, "name")), "New Name");
    th_resp_free(&r);

    /* Domains are unique across stores. */
    char other[64], dom[128];
    snprintf(other, sizeof(other), "%s", th_slug("dom"));
    snprintf(dom, sizeof(dom), "{\"domain\":\"shop.%s.example\"}", other);
    r = th_platform(srv, "PATCH", path, dom);
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
    snprintf(body, sizeof(body),
             "{\"slug\":\"%s\",\"name\":\"D\",\"currency\":\"USD\",\"domain\":\"shop.%s.example\"}",
             other, other);
    r = th_platform(srv, "POST", "/api/v1/stores", body);
    assert_int_equal(r.status, 409);
    assert_string_equal(th_error_code(&r), "domain_taken");
    th_resp_free(&r);
    /* Removing the domain frees it. */
    r = th_platform(srv, "PATCH", path, "{\"domain\":null}");
    assert_int_equal(r.status, 200);
    assert_true(json_is_null(json_object_get(r.json, "domain")));
    th_resp_free(&r);

    /* Delete: the store stops answering at once. */
    r = th_platform(srv, "DELETE", path, NULL);
    assert_int_equal(r.status, 204);
    th_resp_free(&r);
    r = get_store(hdr2, NULL);
    assert_int_equal(r.status, 404);
    th_resp_free(&r);
}

/* A store's request with an optional token and cart (NULL: none). */
static th_resp_t
sreq(long store, const char *token, const char *cart, const char *method, const char *path,
     const char *body)
{
    char t[64], a[600], c[128];
    const char *h[4] = {t, NULL, NULL, NULL};
    int k = 1;
    snprintf(t, sizeof(t), "X-Tenant-Id: %ld", store);
    if (token) {
        th_auth_header(a, sizeof(a), token);
        h[k++] = a;
    }
    if (cart) {
        snprintf(c, sizeof(c), "X-Cart-Id: %s", cart);
        h[k++] = c;
    }
    return th_req(srv, method, path, h, body);
}

static long
created_id(th_resp_t r)
{
    if (r.status != 201)
        fail_msg("want 201, got %d: %s", r.status, r.body);
    long id = (long)json_integer_value(json_object_get(r.json, "id"));
    th_resp_free(&r);
    return id;
}

/* Deleting a store leaves no row of it in any table: every tenant table is
 * reached by a cascade, directly or through its parent's composite key
 * (sql/0017 dropped the store keys the composite ones imply). Nor any media
 * object: its folder s<store>/ (an original and its renditions) is deleted
 * by the purge the deletion asks for (sql/0019, run in the background), and
 * the purge's own row goes when it is done. */
static void
test_delete_leaves_nothing(void **state)
{
    (void)state;
    long id = th_create_store(srv, th_slug("gone"), NULL);
    th_user_t admin = th_user_new(srv, "STORE_ADMIN", id);
    const char *tok = admin.access;
    char path[128], body[512];
    created_id(sreq(id, tok, NULL, "POST", "/api/v1/attributes",
                    "{\"name\":\"Colour\",\"values\":[\"red\",\"blue\"]}"));
    long cat = created_id(sreq(id, tok, NULL, "POST", "/api/v1/categories", "{\"name\":\"Mugs\"}"));
    snprintf(body, sizeof(body),
             "{\"name\":\"Mug\",\"base_price\":1250,\"status\":\"active\",\"category_id\":%ld}",
             cat);
    long prod = created_id(sreq(id, tok, NULL, "POST", "/api/v1/products", body));
    snprintf(path, sizeof(path), "/api/v1/products/%ld/variants", prod);
    long var =
        created_id(sreq(id, tok, NULL, "POST", path,
                        "{\"sku\":\"MUG-R\",\"options\":{\"colour\":\"red\"},\"price\":1250}"));
    snprintf(path, sizeof(path), "/api/v1/variants/%ld/inventory", var);
    th_resp_t r = sreq(id, tok, NULL, "PATCH", path, "{\"adjust\":10,\"reason\":\"initial\"}");
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
    long zone = created_id(sreq(id, tok, NULL, "POST", "/api/v1/admin/shipping-zones",
                                "{\"name\":\"DE\",\"countries\":[\"DE\"]}"));
    snprintf(path, sizeof(path), "/api/v1/admin/shipping-zones/%ld/rates", zone);
    long rate = created_id(
        sreq(id, tok, NULL, "POST", path, "{\"name\":\"Std\",\"kind\":\"flat\",\"price\":490}"));
    snprintf(body, sizeof(body), "{\"variant_id\":%ld,\"quantity\":2}", var);
    r = sreq(id, NULL, NULL, "POST", "/api/v1/cart/add", body);
    assert_int_equal(r.status, 200);
    char cart[64];
    snprintf(cart, sizeof(cart), "%s", th_header(&r, "X-Cart-Id"));
    th_resp_free(&r);
    snprintf(body, sizeof(body),
             "{\"email\":\"%s\",\"shipping_address\":{\"name\":\"A\",\"line1\":\"B 1\",\"city\":"
             "\"Berlin\",\"postal_code\":\"10115\",\"country\":\"DE\"},\"shipping_rate_id\":%ld}",
             th_email("gone"), rate);
    long order = created_id(sreq(id, NULL, cart, "POST", "/api/v1/checkout", body));
    snprintf(path, sizeof(path), "/api/v1/orders/%ld/refunds", order);
    created_id(sreq(id, tok, NULL, "POST", path, "{\"amount\":100,\"reason\":\"test\"}"));
    created_id(sreq(id, tok, NULL, "POST", "/api/v1/admin/webhooks",
                    "{\"url\":\"https://hooks.example.com/x\",\"events\":[\"*\"]}"));
    /* An image of the product, with its renditions made. */
    VipsImage *img = NULL;
    assert_int_equal(vips_black(&img, 40, 30, "bands", 3, NULL), 0);
    void *png = NULL;
    size_t plen = 0;
    assert_int_equal(vips_pngsave_buffer(img, &png, &plen, NULL), 0);
    g_object_unref(img);
    char tenant[64], auth[2048];
    snprintf(path, sizeof(path), "/api/v1/products/%ld/images", prod);
    snprintf(tenant, sizeof(tenant), "X-Tenant-Id: %ld", id);
    th_auth_header(auth, sizeof(auth), tok);
    const char *ih[] = {tenant, auth, "Content-Type: image/png", NULL};
    r = th_req_n(srv, "POST", path, ih, png, plen);
    g_free(png);
    assert_int_equal(r.status, 201);
    th_resp_free(&r);
    char folder[400];
    snprintf(folder, sizeof(folder), "%s/s%ld", media_dir, id);
    int files = 0;
    for (int i = 0; i < 200 && files < 3; i++) {
        char cmd[512];
        snprintf(cmd, sizeof(cmd), "ls %s | wc -l", folder);
        FILE *ls = popen(cmd, "r");
        assert_non_null(ls);
        if (fscanf(ls, "%d", &files) != 1)
            files = 0;
        pclose(ls);
        if (files < 3)
            usleep(100000);
    }
    /* The original and two renditions (the default sizes, 160 and up, are all
     * made at its 40 px: one width, WebP and JPEG). */
    assert_int_equal(files, 3);

    snprintf(path, sizeof(path), "/api/v1/stores/%ld", id);
    r = th_platform(srv, "DELETE", path, NULL);
    assert_int_equal(r.status, 204);
    th_resp_free(&r);
    /* The purge deletes the folder, then its row. */
    char sql[1024], sid[24];
    snprintf(sid, sizeof(sid), "%ld", id);
    const char *p[] = {sid, NULL};
    struct stat st;
    const char *purge =
        "SELECT count(*) FROM media_store_purges WHERE deleted_store_id = $1::bigint";
    for (int i = 0; i < 200 && (stat(folder, &st) == 0 || strcmp(th_sql(purge, p), "0") != 0); i++)
        usleep(100000);
    if (stat(folder, &st) == 0)
        fail_msg("%s is still there after the store's deletion", folder);
    assert_string_equal(th_sql(purge, p), "0");
    /* Every table with a store_id column: nothing of the store is left. */
    snprintf(sql, sizeof(sql),
             "SELECT coalesce(string_agg(t, ', '), '') FROM (SELECT c.relname AS t, "
             "(xpath('/row/n/text()', query_to_xml(format('SELECT count(*) AS n FROM %%I "
             "WHERE store_id = %%s', c.relname, $1::bigint), false, true, '')))[1]::text::bigint "
             "AS n FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = "
             "'store_id' WHERE c.relkind = 'r' AND c.relnamespace = 'public'::regnamespace) x "
             "WHERE n > 0");
    assert_string_equal(th_sql(sql, p), "");
    th_user_free(&admin);
}

/* A purge that fails is retried (SHOPD_JOBS_RETRY_SCHEDULE=1: two attempts),
 * then stays dead with its error; once the cause is gone, an operator sets
 * the row ready again and the folder goes. The cause here: a folder inside
 * s<store>/, which shopd never makes, so the purge refuses to guess. */
static void
test_delete_purge_retried_then_dead(void **state)
{
    (void)state;
    long id = th_create_store(srv, th_slug("gone2"), NULL);
    char folder[400], sub[460], path[128], sid[24];
    snprintf(folder, sizeof(folder), "%s/s%ld", media_dir, id);
    snprintf(sub, sizeof(sub), "%s/not-ours", folder);
    mkdir(media_dir, 0755);
    assert_int_equal(mkdir(folder, 0755), 0);
    assert_int_equal(mkdir(sub, 0755), 0);
    /* An object beside it, as an upload would have left one. */
    char obj[560];
    snprintf(obj, sizeof(obj), "%s/%064d.png", folder, 7);
    FILE *f = fopen(obj, "w");
    assert_non_null(f);
    fputs("x", f);
    fclose(f);
    snprintf(path, sizeof(path), "/api/v1/stores/%ld", id);
    th_resp_t r = th_platform(srv, "DELETE", path, NULL);
    assert_int_equal(r.status, 204);
    th_resp_free(&r);
    snprintf(sid, sizeof(sid), "%ld", id);
    const char *p[] = {sid, NULL};
    const char *row = "SELECT state || ' ' || attempts || ' ' || coalesce(last_error, '') FROM "
                      "media_store_purges WHERE deleted_store_id = $1::bigint";
    char got[600] = "";
    for (int i = 0; i < 200; i++) {
        snprintf(got, sizeof(got), "%s", th_sql(row, p));
        if (strncmp(got, "dead ", 5) == 0)
            break;
        usleep(100000);
    }
    char want[160];
    snprintf(want, sizeof(want), "dead 2 cannot delete the objects under s%ld/", id);
    if (strncmp(got, want, strlen(want)) != 0)
        fail_msg("the purge row is \"%s\", not \"%s...\"", got, want);
    struct stat st;
    assert_int_equal(stat(folder, &st), 0); /* left: the purge failed */

    /* The cause removed, the row made ready again: the folder goes, then the row. */
    assert_int_equal(rmdir(sub), 0);
    th_sql("UPDATE media_store_purges SET state = 'ready', attempts = 0, next_at = now() WHERE "
           "deleted_store_id = $1::bigint",
           p);
    for (int i = 0; i < 200 && (stat(folder, &st) == 0 || th_sql(row, p)[0] != '\0'); i++)
        usleep(100000);
    assert_int_not_equal(stat(folder, &st), 0);
    assert_string_equal(th_sql(row, p), "");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_platform_auth),
        cmocka_unit_test(test_create_validation),
        cmocka_unit_test(test_crud),
        cmocka_unit_test(test_list_pagination),
        cmocka_unit_test(test_tenant_resolution),
        cmocka_unit_test(test_cache_follows_changes),
        cmocka_unit_test(test_delete_leaves_nothing),
        cmocka_unit_test(test_delete_purge_retried_then_dead),
        TH_STOP_TEST, /* last: the server must exit 0 on SIGTERM */
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
