/*
 * The public edge (issue 18), against the real binary with real PostgreSQL and
 * Redis: request budgets on every route (per client address, per signed-in
 * user, per store raised by its settings.rate_quota) with RateLimit headers and
 * 429 rate_limited + Retry-After beyond, the system endpoints exempt; CORS per
 * store (settings.cors_origins, wildcard subdomains, the platform's list for
 * routes without a store), preflights allowed and refused, simple requests
 * with and without an allowed Origin; the security headers on every answer and
 * Cache-Control: no-store on authenticated ones.
 *
 * Budgets are small (SHOPD_RATE_* of this test's servers) so each test takes a
 * few dozen requests; each store and each user has budgets of its own, so the
 * tests do not take from each other.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <cmocka.h>

#include "harness.h"

static th_server_t *srv;

static int
setup(void **state)
{
    static const char *const env[] = {"SHOPD_RATE_LIMIT=true",
                                      "SHOPD_RATE_READS_IP=100000",
                                      "SHOPD_RATE_READS_USER=3",
                                      "SHOPD_RATE_READS_STORE=5",
                                      "SHOPD_RATE_ADMIN_IP=100000",
                                      "SHOPD_RATE_ADMIN_USER=100000",
                                      "SHOPD_RATE_WRITES_IP=100000",
                                      "SHOPD_RATE_AUTH_IP=100000",
                                      "SHOPD_CORS_ORIGINS=https://app.platform.test",
                                      "SHOPD_CORS_MAX_AGE=321",
                                      NULL};
    srv = th_start(env);
    return 0;
}

static int
teardown(void **state)
{
    return 0;
}

/* GET /api/v1/store of store, with extra header lines (NULL-ended, may be NULL). */
static th_resp_t
store_get(th_server_t *s, long store, const char *const *extra)
{
    char tenant[64];
    snprintf(tenant, sizeof(tenant), "X-Tenant-Id: %ld", store);
    const char *h[8] = {tenant};
    size_t n = 1;
    for (const char *const *x = extra; x && *x && n < 7; x++)
        h[n++] = *x;
    h[n] = NULL;
    return th_req(s, "GET", "/api/v1/store", h, NULL);
}

static long
header_long(const th_resp_t *r, const char *name)
{
    const char *v = th_header(r, name);
    if (v == NULL)
        fail_msg("no %s header in: %s", name, r->headers);
    return strtol(v, NULL, 10);
}

/* True if the raw header block has the line "name: value" (any case, any of
 * several lines of that name). */
static bool
has_line(const th_resp_t *r, const char *name, const char *value)
{
    char want[256];
    snprintf(want, sizeof(want), "\r\n%s: %s\r\n", name, value);
    char *hay = malloc(strlen(r->headers) + 3);
    sprintf(hay, "\r\n%s", r->headers);
    bool found = strcasestr(hay, want) != NULL;
    free(hay);
    return found;
}

/* The store's budget: 5 reads a minute, its 6th refused with the headers; another
 * store's clients are untouched; a quota of 2 doubles a store's budget. */
static void
test_store_budget(void **state)
{
    long a = th_create_store(srv, th_slug("rla"), NULL);
    long b = th_create_store(srv, th_slug("rlb"), NULL);
    /* The first request of a store the edge has not cached is not counted on the
     * store (its lookup runs on a worker): warm the cache. */
    th_resp_t r = store_get(srv, a, NULL);
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
    for (int i = 0; i < 5; i++) {
        r = store_get(srv, a, NULL);
        assert_int_equal(r.status, 200);
        assert_int_equal(header_long(&r, "RateLimit-Limit"), 5);
        assert_int_equal(header_long(&r, "RateLimit-Remaining"), 4 - i);
        assert_true(header_long(&r, "RateLimit-Reset") >= 1);
        assert_string_equal(th_header(&r, "RateLimit-Policy"), "5;w=60");
        th_resp_free(&r);
    }
    r = store_get(srv, a, NULL);
    assert_int_equal(r.status, 429);
    assert_string_equal(th_error_code(&r), "rate_limited");
    long retry = header_long(&r, "Retry-After");
    assert_true(retry >= 1 && retry <= 12); /* one read costs 60 s / 5 */
    assert_int_equal(header_long(&r, "RateLimit-Remaining"), 0);
    assert_int_equal(header_long(&r, "RateLimit-Limit"), 5);
    assert_non_null(strstr(r.body, "store"));
    th_resp_free(&r);

    /* Store A is flooded; store B's clients (the same address) are not limited. */
    r = store_get(srv, b, NULL);
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
    r = store_get(srv, b, NULL);
    assert_int_equal(r.status, 200);
    assert_int_equal(header_long(&r, "RateLimit-Remaining"), 4);
    th_resp_free(&r);

    /* A plan quota of 2 (settings.rate_quota, set by the platform): 10 a minute. */
    long q = th_create_store(srv, th_slug("rlq"), "\"settings\":{\"rate_quota\":2}");
    r = store_get(srv, q, NULL); /* warms the cache */
    th_resp_free(&r);
    for (int i = 0; i < 11; i++) {
        r = store_get(srv, q, NULL);
        assert_int_equal(r.status, i < 10 ? 200 : 429);
        assert_int_equal(header_long(&r, "RateLimit-Limit"), 10);
        th_resp_free(&r);
    }
    char path[64];
    snprintf(path, sizeof(path), "/api/v1/stores/%ld", b);
    /* A quota out of range is refused, and nothing is written. */
    r = th_platform(srv, "PATCH", path, "{\"settings\":{\"rate_quota\":0,\"x\":1}}");
    assert_int_equal(r.status, 422);
    assert_string_equal(th_error_code(&r), "validation_failed");
    assert_non_null(strstr(r.body, "settings.rate_quota"));
    th_resp_free(&r);
    char sid[24];
    snprintf(sid, sizeof(sid), "%ld", b);
    const char *p[] = {sid, NULL};
    assert_string_equal(
        th_sql("SELECT coalesce(settings->>'x', 'none') FROM stores WHERE id = $1", p), "none");
}

/* The user's budget: 3 reads a minute per signed-in user, below the store's 5. */
static void
test_user_budget(void **state)
{
    long c = th_create_store(srv, th_slug("rlc"), NULL);
    th_user_t u1 = th_user_new(srv, "CUSTOMER", c);
    th_user_t u2 = th_user_new(srv, "CUSTOMER", c);
    /* The users' logins made the edge cache the store: every read below counts. */
    th_resp_t r;
    for (int i = 0; i < 3; i++) {
        r = th_store_req(srv, c, u1.access, "GET", "/api/v1/me", NULL);
        assert_int_equal(r.status, 200);
        assert_int_equal(header_long(&r, "RateLimit-Limit"), 3);
        assert_int_equal(header_long(&r, "RateLimit-Remaining"), 2 - i);
        th_resp_free(&r);
    }
    r = th_store_req(srv, c, u1.access, "GET", "/api/v1/me", NULL);
    assert_int_equal(r.status, 429);
    assert_string_equal(th_error_code(&r), "rate_limited");
    assert_non_null(strstr(r.body, "user"));
    assert_true(header_long(&r, "Retry-After") >= 1);
    th_resp_free(&r);
    /* Another user of the same store still has a budget (and the refused request
     * did not take from the store's: 3 spent of 5, this is the 4th). */
    r = th_store_req(srv, c, u2.access, "GET", "/api/v1/me", NULL);
    assert_int_equal(r.status, 200);
    /* The headers show the tightest budget: the store's (1 of 5 left), not the
     * user's (2 of 3). */
    assert_int_equal(header_long(&r, "RateLimit-Limit"), 5);
    assert_int_equal(header_long(&r, "RateLimit-Remaining"), 1);
    th_resp_free(&r);
    r = store_get(srv, c, NULL);
    assert_int_equal(r.status, 200);
    assert_int_equal(header_long(&r, "RateLimit-Remaining"), 0); /* the store's 5th */
    th_resp_free(&r);
    th_user_free(&u1);
    th_user_free(&u2);
}

/* The client address budget, and the system endpoints outside every budget. */
static void
test_address_budget_and_exempt(void **state)
{
    static const char *const env[] = {"SHOPD_RATE_LIMIT=true", "SHOPD_RATE_READS_IP=2", NULL};
    th_server_t *s = th_start(env); /* its /healthz polls are not counted either */
    long d = th_create_store(s, th_slug("rld"), NULL);
    for (int i = 0; i < 20; i++) {
        th_resp_t r = th_req(s, "GET",
                             i % 3 == 0   ? "/healthz"
                             : i % 3 == 1 ? "/readyz"
                                          : "/metrics",
                             NULL, NULL);
        assert_int_equal(r.status, 200);
        assert_null(th_header(&r, "RateLimit-Limit"));
        th_resp_free(&r);
    }
    th_resp_t r = store_get(s, d, NULL);
    assert_int_equal(r.status, 200);
    assert_int_equal(header_long(&r, "RateLimit-Limit"), 2);
    th_resp_free(&r);
    r = store_get(s, d, NULL);
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
    r = store_get(s, d, NULL);
    assert_int_equal(r.status, 429);
    assert_non_null(strstr(r.body, "client address"));
    assert_non_null(th_header(&r, "Retry-After"));
    th_resp_free(&r);
    /* Requests that would be refused anyway (no token: 401) count too. */
    r = th_store_req(s, d, NULL, "GET", "/api/v1/me", NULL);
    assert_int_equal(r.status, 429);
    th_resp_free(&r);
    /* Admin routes are another class with budgets of their own. */
    r = th_platform(s, "POST", "/api/v1/stores", "{}");
    assert_int_equal(r.status, 422);
    th_resp_free(&r);
    assert_int_equal(th_stop(s), 0);
}

/* Two processes on one Redis share a store's budget: what one spent, the other
 * refuses once a sync has passed (SHOPD_RATE_SYNC_MS). */
static void
test_shared_budget(void **state)
{
    static const char *const env[] = {"SHOPD_RATE_LIMIT=true", "SHOPD_RATE_READS_IP=100000",
                                      "SHOPD_RATE_READS_STORE=6", "SHOPD_RATE_SYNC_MS=50", NULL};
    th_server_t *s1 = th_start(env), *s2 = th_start(env);
    long st = th_create_store(s1, th_slug("rls"), NULL);
    th_resp_t r;
    /* Each edge caches the store (not counted), then both spend: 3 here, 1 there. */
    th_server_t *order[] = {s1, s2, s1, s1, s1, s2};
    for (int i = 0; i < 6; i++) {
        r = store_get(order[i], st, NULL);
        assert_int_equal(r.status, 200);
        th_resp_free(&r);
    }
    usleep(400 * 1000); /* several syncs */
    /* 4 of 6 are spent across the two: s2 has 2 left, not the 5 it saw alone. */
    int ok = 0;
    for (int i = 0; i < 4; i++) {
        r = store_get(s2, st, NULL);
        ok += r.status == 200;
        th_resp_free(&r);
    }
    assert_int_equal(ok, 2);
    usleep(400 * 1000);
    /* And s1, which spent 3 itself, now knows all 6 are gone. */
    r = store_get(s1, st, NULL);
    assert_int_equal(r.status, 429);
    th_resp_free(&r);
    r = th_req(s1, "GET", "/metrics", NULL, NULL);
    assert_int_equal(r.status, 200);
    const char *m = strstr(r.body, "\nshopd_rate_synced_total ");
    assert_non_null(m);
    assert_true(strtol(m + strlen("\nshopd_rate_synced_total "), NULL, 10) > 0);
    assert_non_null(strstr(r.body, "\nshopd_rate_sync_failures_total 0\n"));
    th_resp_free(&r);
    assert_int_equal(th_stop(s1), 0);
    assert_int_equal(th_stop(s2), 0);
}

/* Redis unreachable: budgets still hold, counted in the process alone, and the
 * failed syncs are a metric and a log line. */
static void
test_shared_budget_redis_down(void **state)
{
    char redis[64];
    snprintf(redis, sizeof(redis), "SHOPD_REDIS_URL=redis://127.0.0.1:%d/0", th_free_port());
    const char *env[] = {"SHOPD_RATE_LIMIT=true",
                         "SHOPD_RATE_READS_IP=100000",
                         "SHOPD_RATE_READS_STORE=3",
                         "SHOPD_RATE_SYNC_MS=50",
                         redis,
                         NULL};
    th_server_t *s = th_start(env);
    long st = th_create_store(s, th_slug("rlr"), NULL);
    th_resp_t r = store_get(s, st, NULL); /* caches the store */
    th_resp_free(&r);
    for (int i = 0; i < 4; i++) {
        r = store_get(s, st, NULL);
        assert_int_equal(r.status, i < 3 ? 200 : 429);
        th_resp_free(&r);
    }
    usleep(300 * 1000);
    r = th_req(s, "GET", "/metrics", NULL, NULL);
    const char *m = strstr(r.body, "\nshopd_rate_sync_failures_total ");
    assert_non_null(m);
    assert_true(strtol(m + strlen("\nshopd_rate_sync_failures_total "), NULL, 10) > 0);
    th_resp_free(&r);
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "grep -q 'rate budgets not shared' %s", s->log_path);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(th_stop(s), 0);
}

/* A preflight as a browser sends it: OPTIONS, the API's Host, Origin and the
 * method and header names it wants. */
static th_resp_t
preflight(const char *host, const char *path, const char *origin, const char *method)
{
    char h1[300], h2[300], h3[64];
    snprintf(h1, sizeof(h1), "Host: %s", host);
    snprintf(h2, sizeof(h2), "Origin: %s", origin);
    snprintf(h3, sizeof(h3), "Access-Control-Request-Method: %s", method);
    const char *h[] = {h1, h2, h3, "Access-Control-Request-Headers: x-cart-id, idempotency-key",
                       NULL};
    return th_req(srv, "OPTIONS", path, h, NULL);
}

static void
test_cors(void **state)
{
    const char *slug = th_slug("cors");
    long e = th_create_store(srv, slug, NULL);
    char host[200], path[64];
    snprintf(host, sizeof(host), "%s.%s", slug, TH_BASE_DOMAIN);
    snprintf(path, sizeof(path), "/api/v1/stores/%ld", e);

    /* Origins are validated: "*", paths and upper case are refused. */
    th_resp_t r = th_platform(srv, "PATCH", path, "{\"settings\":{\"cors_origins\":[\"*\"]}}");
    assert_int_equal(r.status, 422);
    assert_non_null(strstr(r.body, "settings.cors_origins"));
    th_resp_free(&r);
    r = th_platform(srv, "PATCH", path,
                    "{\"settings\":{\"cors_origins\":[\"https://shop.example.com/x\"]}}");
    assert_int_equal(r.status, 422);
    th_resp_free(&r);
    r = th_platform(srv, "PATCH", path,
                    "{\"settings\":{\"cors_origins\":[\"https://shop.example.com\","
                    "\"https://*.brand.test\"]}}");
    assert_int_equal(r.status, 200);
    th_resp_free(&r);

    /* Allowed, right after the PATCH cleared the cache (the preflight waits for
     * the store's lookup), then again from the cache. */
    for (int i = 0; i < 2; i++) {
        r = preflight(host, "/api/v1/store", "https://shop.example.com", "GET");
        assert_int_equal(r.status, 204);
        assert_string_equal(th_header(&r, "Access-Control-Allow-Origin"),
                            "https://shop.example.com");
        assert_non_null(strstr(th_header(&r, "Access-Control-Allow-Methods"), "GET"));
        const char *ah = th_header(&r, "Access-Control-Allow-Headers");
        assert_non_null(ah);
        assert_non_null(strstr(ah, "Idempotency-Key"));
        assert_non_null(strstr(ah, "X-Cart-Id"));
        assert_non_null(strstr(ah, "X-Tenant-Id"));
        assert_non_null(strstr(ah, "Authorization"));
        assert_non_null(strstr(ah, "Content-Type"));
        assert_int_equal(header_long(&r, "Access-Control-Max-Age"), 321);
        assert_non_null(strstr(th_header(&r, "Vary"), "Origin"));
        assert_int_equal(r.len, 0);
        th_resp_free(&r);
    }
    /* A subdomain of the wildcard; the methods are those of the path. */
    r = preflight(host, "/api/v1/products", "https://eu.brand.test", "POST");
    assert_int_equal(r.status, 204);
    assert_string_equal(th_header(&r, "Access-Control-Allow-Origin"), "https://eu.brand.test");
    const char *am = th_header(&r, "Access-Control-Allow-Methods");
    assert_non_null(strstr(am, "POST"));
    assert_non_null(strstr(am, "GET"));
    th_resp_free(&r);
    /* Refused: another origin, the bare wildcard domain, http for https. */
    const char *bad[] = {"https://evil.test", "https://brand.test", "http://shop.example.com",
                         "null"};
    for (size_t i = 0; i < 4; i++) {
        r = preflight(host, "/api/v1/store", bad[i], "GET");
        assert_int_equal(r.status, 403);
        assert_string_equal(th_error_code(&r), "cors_origin_denied");
        assert_null(th_header(&r, "Access-Control-Allow-Origin"));
        assert_null(th_header(&r, "Access-Control-Allow-Methods"));
        th_resp_free(&r);
    }
    /* Unknown paths and stores are not granted anything. */
    r = preflight(host, "/api/v1/nothing-here", "https://shop.example.com", "GET");
    assert_int_equal(r.status, 404);
    assert_null(th_header(&r, "Access-Control-Allow-Origin"));
    th_resp_free(&r);
    r = preflight("no-such-store." TH_BASE_DOMAIN, "/api/v1/store", "https://shop.example.com",
                  "GET");
    assert_int_equal(r.status, 404);
    assert_null(th_header(&r, "Access-Control-Allow-Origin"));
    th_resp_free(&r);
    /* A route of no store: the platform's list. */
    r = preflight("api." TH_BASE_DOMAIN, "/api/v1/auth/refresh", "https://app.platform.test",
                  "POST");
    assert_int_equal(r.status, 204);
    assert_string_equal(th_header(&r, "Access-Control-Allow-Origin"), "https://app.platform.test");
    th_resp_free(&r);
    r = preflight("api." TH_BASE_DOMAIN, "/api/v1/auth/refresh", "https://shop.example.com",
                  "POST");
    assert_int_equal(r.status, 403);
    th_resp_free(&r);

    /* Simple requests: the allowed origin is echoed with the exposed headers. */
    const char *ok[] = {"Origin: https://shop.example.com", NULL};
    r = store_get(srv, e, ok);
    assert_int_equal(r.status, 200);
    assert_string_equal(th_header(&r, "Access-Control-Allow-Origin"), "https://shop.example.com");
    const char *eh = th_header(&r, "Access-Control-Expose-Headers");
    assert_non_null(eh);
    assert_non_null(strstr(eh, "RateLimit-Remaining"));
    assert_non_null(strstr(eh, "Retry-After"));
    assert_non_null(strstr(eh, "X-Request-Id"));
    assert_non_null(strstr(eh, "ETag"));
    assert_true(has_line(&r, "Vary", "Origin"));
    assert_null(th_header(&r, "Access-Control-Allow-Credentials"));
    th_resp_free(&r);
    /* An error answer too (the browser must be able to read why). */
    r = th_store_req(srv, e, NULL, "GET", "/api/v1/me", NULL);
    th_resp_free(&r);
    const char *no[] = {"Origin: https://evil.test", NULL};
    r = store_get(srv, e, no);
    assert_int_equal(r.status, 200);
    assert_null(th_header(&r, "Access-Control-Allow-Origin"));
    assert_null(th_header(&r, "Access-Control-Expose-Headers"));
    assert_true(has_line(&r, "Vary", "Origin"));
    th_resp_free(&r);
    /* Another store does not inherit this one's origins. */
    long f = th_create_store(srv, th_slug("corsf"), NULL);
    r = store_get(srv, f, ok);
    assert_int_equal(r.status, 200);
    assert_null(th_header(&r, "Access-Control-Allow-Origin"));
    th_resp_free(&r);
    r = store_get(srv, f, ok);
    assert_null(th_header(&r, "Access-Control-Allow-Origin"));
    th_resp_free(&r);
}

static void
test_security_headers(void **state)
{
    const char *paths[] = {"/healthz", "/api/v1/store", "/no/such/path"};
    for (size_t i = 0; i < 3; i++) {
        th_resp_t r = th_req(srv, "GET", paths[i], NULL, NULL);
        assert_string_equal(th_header(&r, "X-Content-Type-Options"), "nosniff");
        assert_string_equal(th_header(&r, "X-Frame-Options"), "DENY");
        assert_string_equal(th_header(&r, "Referrer-Policy"), "no-referrer");
        assert_non_null(strstr(th_header(&r, "Content-Security-Policy"), "frame-ancestors 'none'"));
        assert_null(th_header(&r, "Server"));
        assert_null(th_header(&r, "Cache-Control")); /* nobody signed in */
        assert_true(has_line(&r, "Vary", "Origin")); /* even without an Origin */
        th_resp_free(&r);
    }
    long g = th_create_store(srv, th_slug("sec"), NULL);
    th_user_t u = th_user_new(srv, "CUSTOMER", g);
    th_resp_t r = th_store_req(srv, g, u.access, "GET", "/api/v1/me", NULL);
    assert_int_equal(r.status, 200);
    assert_string_equal(th_header(&r, "Cache-Control"), "no-store");
    assert_string_equal(th_header(&r, "X-Content-Type-Options"), "nosniff");
    th_resp_free(&r);
    /* Refused answers to a signed-in caller too. */
    r = th_store_req(srv, g, u.access, "GET", "/api/v1/admin/users", NULL);
    assert_int_equal(r.status, 403);
    assert_string_equal(th_header(&r, "Cache-Control"), "no-store");
    th_resp_free(&r);
    /* A framing error (431) still says nosniff. */
    char big[20000];
    memset(big, 'a', sizeof(big));
    int n = snprintf(big, 64, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ");
    big[n] = 'a';
    memcpy(big + sizeof(big) - 4, "\r\n\r\n", 4);
    char out[4096];
    th_raw(srv, big, sizeof(big), out, sizeof(out), 2000);
    assert_non_null(strstr(out, " 431 "));
    assert_non_null(strcasestr(out, "X-Content-Type-Options: nosniff"));
    th_user_free(&u);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_store_budget),
        cmocka_unit_test(test_user_budget),
        cmocka_unit_test(test_address_budget_and_exempt),
        cmocka_unit_test(test_shared_budget),
        cmocka_unit_test(test_shared_budget_redis_down),
        cmocka_unit_test(test_cors),
        cmocka_unit_test(test_security_headers),
        TH_STOP_TEST,
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
