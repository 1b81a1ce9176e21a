/*
 * Stores and tenant resolution against the real binary: platform auth,
 * CRUD with validation errors, pagination, resolution by X-Tenant-Id,
 * subdomain and custom domain, unknown and suspended stores, and the cache
 * following every change.
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

static int
setup(void **state)
{
    srv = th_start(NULL);
    return 0;
}

static int
teardown(void **state)
{
    if (srv == NULL)
        return -1;
    th_stop(srv); /* frees it: TH_STOP_TEST checked the exit status */
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
    assert_int_equal(r.status, 201);
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
        TH_STOP_TEST, /* last: the server must exit 0 on SIGTERM */
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
