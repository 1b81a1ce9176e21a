/*
 * Regression tests for the defects of issue 8 that live above the HTTP layer,
 * against the real binary with real PostgreSQL and Redis:
 *  - a token is accepted only while its claims (role, store, token version)
 *    still describe its user, however warm the user cache is: a demoted admin
 *    does not get admin rights back, forged role and store claims are refused,
 *    a password change retires old tokens;
 *  - ids past the int64 range are 404 (path, header) or 422 (query, cursor),
 *    never a 5xx or a database round trip;
 *  - the query is read once, canonically: a repeated or unknown parameter is
 *    400, and the cache can never serve one query's page for another;
 *  - each auth request takes exactly one token from each rate-limit bucket;
 *  - a write made while Redis was down is visible as soon as Redis is back.
 * Each test failed against main at 33887a8.
 */
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "harness.h"

#define KEY "sec1"
#define SECRET "security-test-signing-secret-0123456789"

static th_server_t *srv;
static long store_a, store_b;

/* ------------------------------------------------------------ helpers */

static th_resp_t
rq(long store, const char *token, const char *method, const char *path, const char *body)
{
    return th_store_req(srv, store, token, method, path, body);
}

/* Status of one request, response freed. */
static long
st(long store, const char *token, const char *method, const char *path, const char *body)
{
    th_resp_t r = rq(store, token, method, path, body);
    long s = r.status;
    th_resp_free(&r);
    return s;
}

/* A token signed with the server's real key: what someone holding a signing key
 * (or a bug in token issuance) could present. payload is the claims JSON. */
static char *
forge(const char *fmt, ...)
{
    char payload[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(payload, sizeof(payload), fmt, ap);
    va_end(ap);
    static const char hdr[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\",\"kid\":\"" KEY "\"}";
    return th_jwt_craft(hdr, payload, SECRET);
}

static char *
login(long store, const char *email, const char *password)
{
    char body[512];
    snprintf(body, sizeof(body), "{\"email\":\"%s\",\"password\":\"%s\"}", email, password);
    th_resp_t r = rq(store, NULL, "POST", "/api/v1/auth/login", body);
    if (r.status != 200)
        fail_msg("login %s: %ld %s", email, r.status, r.body);
    char *t = strdup(json_string_value(json_object_get(r.json, "access_token")));
    th_resp_free(&r);
    return t;
}

static int
setup(void **state)
{
    const char *env[] = {"SHOPD_JWT_KEYS=" KEY ":" SECRET, NULL};
    srv = th_start(env);
    store_a = th_create_store(srv, th_slug("seca"), NULL);
    store_b = th_create_store(srv, th_slug("secb"), NULL);
    return 0;
}

/* Frees srv; TH_STOP_TEST, the last test, has already stopped it and checked its
 * exit status. */
static int
teardown(void **state)
{
    if (srv)
        th_stop(srv);
    srv = NULL;
    return 0;
}

/* ------------------------------------------------------------ 1-3: tokens */

/* Issue 8.1: U is a STORE_ADMIN with token OLD; demoted to CUSTOMER, OLD is
 * refused; U signs in again (NEW, a customer token) and uses it, which used to
 * warm the cache with "active" and let OLD back in for seconds. */
static void
test_demoted_admin_stays_demoted(void **state)
{
    th_user_t admin = th_user_new(srv, "STORE_ADMIN", store_a);
    const char *email = th_email("demoted");
    char body[512], path[128];
    snprintf(body, sizeof(body), "{\"email\":\"%s\",\"password\":\"%s\",\"role\":\"STORE_ADMIN\"}",
             email, TH_PASSWORD);
    th_resp_t r = rq(store_a, admin.access, "POST", "/api/v1/admin/users", body);
    assert_int_equal(r.status, 201);
    long uid = (long)json_integer_value(json_object_get(r.json, "id"));
    th_resp_free(&r);
    char *old = login(store_a, email, TH_PASSWORD);
    assert_int_equal(st(store_a, old, "GET", "/api/v1/admin/users", NULL), 200);

    snprintf(path, sizeof(path), "/api/v1/admin/users/%ld", uid);
    assert_int_equal(st(store_a, admin.access, "PATCH", path, "{\"role\":\"CUSTOMER\"}"), 200);
    assert_int_equal(st(store_a, old, "GET", "/api/v1/admin/users", NULL), 401);

    char *fresh = login(store_a, email, TH_PASSWORD);
    assert_int_equal(st(store_a, fresh, "GET", "/api/v1/me", NULL), 200);
    /* The cache is warm with U's current state: OLD must still be refused. */
    assert_int_equal(st(store_a, old, "GET", "/api/v1/admin/users", NULL), 401);
    assert_int_equal(st(store_a, old, "POST", "/api/v1/categories", "{\"name\":\"Sneaky\"}"), 401);
    assert_int_equal(st(store_a, fresh, "GET", "/api/v1/admin/users", NULL), 403);

    /* Promoted again: neither old token comes back (the token version moved on). */
    assert_int_equal(st(store_a, admin.access, "PATCH", path, "{\"role\":\"STORE_ADMIN\"}"), 200);
    assert_int_equal(st(store_a, old, "GET", "/api/v1/admin/users", NULL), 401);
    assert_int_equal(st(store_a, fresh, "GET", "/api/v1/me", NULL), 401);
    char *again = login(store_a, email, TH_PASSWORD);
    assert_int_equal(st(store_a, again, "GET", "/api/v1/admin/users", NULL), 200);

    /* Disabled and enabled again: the tokens from before stay dead. */
    assert_int_equal(st(store_a, admin.access, "PATCH", path, "{\"status\":\"disabled\"}"), 200);
    assert_int_equal(st(store_a, admin.access, "PATCH", path, "{\"status\":\"active\"}"), 200);
    assert_int_equal(st(store_a, again, "GET", "/api/v1/admin/users", NULL), 401);
    free(old);
    free(fresh);
    free(again);
    th_user_free(&admin);
}

/* Issue 8.2: validly signed tokens whose role claim the user does not have are
 * refused, also right after a genuine request warmed the cache. */
static void
test_forged_role_refused(void **state)
{
    th_user_t cust = th_user_new(srv, "CUSTOMER", store_a);
    th_user_t admin = th_user_new(srv, "STORE_ADMIN", store_a);
    long long now = (long long)time(NULL);
    assert_int_equal(st(store_a, cust.access, "GET", "/api/v1/me", NULL), 200);
    char *as_admin =
        forge("{\"sub\":\"%ld\",\"store_id\":%ld,\"role\":\"STORE_ADMIN\",\"ver\":1,\"iat\":%lld,"
              "\"exp\":%lld,\"jti\":\"f1\"}",
              cust.id, store_a, now, now + 600);
    assert_int_equal(st(store_a, as_admin, "GET", "/api/v1/admin/users", NULL), 401);

    assert_int_equal(st(store_a, admin.access, "GET", "/api/v1/me", NULL), 200);
    char *as_super =
        forge("{\"sub\":\"%ld\",\"role\":\"SUPER_ADMIN\",\"ver\":1,\"iat\":%lld,\"exp\":%lld,"
              "\"jti\":\"f2\"}",
              admin.id, now, now + 600);
    char auth[2048];
    th_auth_header(auth, sizeof(auth), as_super);
    const char *h[] = {auth, NULL};
    th_resp_t r = th_req(srv, "GET", "/api/v1/stores", h, NULL);
    assert_int_equal(r.status, 401);
    assert_string_equal(th_error_code(&r), "unauthenticated");
    th_resp_free(&r);

    /* A token version the user never had (the future) is no better. */
    char *future =
        forge("{\"sub\":\"%ld\",\"store_id\":%ld,\"role\":\"CUSTOMER\",\"ver\":7,\"iat\":%lld,"
              "\"exp\":%lld,\"jti\":\"f3\"}",
              cust.id, store_a, now, now + 600);
    assert_int_equal(st(store_a, future, "GET", "/api/v1/me", NULL), 401);
    /* And one without a version is malformed. */
    char *nover =
        forge("{\"sub\":\"%ld\",\"store_id\":%ld,\"role\":\"CUSTOMER\",\"iat\":%lld,\"exp\":%lld,"
              "\"jti\":\"f4\"}",
              cust.id, store_a, now, now + 600);
    assert_int_equal(st(store_a, nover, "GET", "/api/v1/me", NULL), 401);
    /* The genuine claims, forged or issued, still work. */
    char *same =
        forge("{\"sub\":\"%ld\",\"store_id\":%ld,\"role\":\"CUSTOMER\",\"ver\":1,\"iat\":%lld,"
              "\"exp\":%lld,\"jti\":\"f5\"}",
              cust.id, store_a, now, now + 600);
    assert_int_equal(st(store_a, same, "GET", "/api/v1/me", NULL), 200);
    free(as_admin);
    free(as_super);
    free(future);
    free(nover);
    free(same);
    th_user_free(&cust);
    th_user_free(&admin);
}

/* Issue 8.3: the user's store comes from the database, never from the claim. */
static void
test_forged_store_refused(void **state)
{
    th_user_t admin = th_user_new(srv, "STORE_ADMIN", store_a);
    long long now = (long long)time(NULL);
    assert_int_equal(st(store_a, admin.access, "GET", "/api/v1/admin/users", NULL), 200);
    char *other =
        forge("{\"sub\":\"%ld\",\"store_id\":%ld,\"role\":\"STORE_ADMIN\",\"ver\":1,\"iat\":%lld,"
              "\"exp\":%lld,\"jti\":\"s1\"}",
              admin.id, store_b, now, now + 600);
    th_resp_t r = rq(store_b, other, "GET", "/api/v1/admin/users", NULL);
    assert_int_equal(r.status, 401);
    assert_null(strstr(r.body ? r.body : "", "@")); /* no user list of store B */
    th_resp_free(&r);
    assert_int_equal(st(store_b, other, "POST", "/api/v1/categories", "{\"name\":\"Nope\"}"), 401);
    free(other);
    th_user_free(&admin);
}

/* A password change retires every access token issued before it. */
static void
test_password_change_retires_tokens(void **state)
{
    th_user_t cust = th_user_new(srv, "CUSTOMER", store_a);
    char *second = login(store_a, cust.email, TH_PASSWORD);
    assert_int_equal(st(store_a, second, "GET", "/api/v1/me", NULL), 200);
    assert_int_equal(st(store_a, cust.access, "PATCH", "/api/v1/me",
                        "{\"password\":\"a-New-Passw0rd-42\",\"current_password\":\"" TH_PASSWORD
                        "\"}"),
                     200);
    assert_int_equal(st(store_a, second, "GET", "/api/v1/me", NULL), 401);
    assert_int_equal(st(store_a, cust.access, "GET", "/api/v1/me", NULL), 401);
    char *fresh = login(store_a, cust.email, "a-New-Passw0rd-42");
    assert_int_equal(st(store_a, fresh, "GET", "/api/v1/me", NULL), 200);
    free(second);
    free(fresh);
    th_user_free(&cust);
}

/* ------------------------------------------------------------ 4: numbers */

static void
expect(long store, const char *token, const char *path, long status, const char *code)
{
    th_resp_t r = rq(store, token, "GET", path, NULL);
    if (r.status != status || strcmp(th_error_code(&r), code) != 0)
        fail_msg("GET %s: %ld %s (want %ld %s)", path, r.status, r.body, status, code);
    th_resp_free(&r);
}

static void
test_ids_past_int64(void **state)
{
    static const char *const big[] = {"9999999999999999999", "9223372036854775808",
                                      "99999999999999999999999999", "18446744073709551616"};
    char path[256];
    th_user_t admin = th_user_new(srv, "STORE_ADMIN", store_a);
    for (size_t i = 0; i < sizeof(big) / sizeof(big[0]); i++) {
        snprintf(path, sizeof(path), "/api/v1/stores/%s", big[i]);
        th_resp_t r = th_platform(srv, "GET", path, NULL);
        assert_int_equal(r.status, 404);
        assert_string_equal(th_error_code(&r), "store_not_found");
        th_resp_free(&r);
        snprintf(path, sizeof(path), "/api/v1/stores?cursor=%s", big[i]);
        r = th_platform(srv, "GET", path, NULL);
        assert_int_equal(r.status, 422);
        assert_string_equal(th_error_code(&r), "validation_failed");
        th_resp_free(&r);

        char tenant[64];
        snprintf(tenant, sizeof(tenant), "X-Tenant-Id: %s", big[i]);
        const char *h[] = {tenant, NULL};
        r = th_req(srv, "GET", "/api/v1/store", h, NULL);
        assert_int_equal(r.status, 404);
        assert_string_equal(th_error_code(&r), "store_not_found");
        th_resp_free(&r);

        snprintf(path, sizeof(path), "/api/v1/admin/users/%s", big[i]);
        expect(store_a, admin.access, path, 404, "user_not_found");
        snprintf(path, sizeof(path), "/api/v1/admin/users?cursor=%s", big[i]);
        expect(store_a, admin.access, path, 422, "validation_failed");
        snprintf(path, sizeof(path), "/api/v1/products/%s", big[i]);
        expect(store_a, NULL, path, 404, "product_not_found");
        snprintf(path, sizeof(path), "/api/v1/variants/%s", big[i]);
        expect(store_a, NULL, path, 404, "variant_not_found");
        snprintf(path, sizeof(path), "/api/v1/categories/%s", big[i]);
        expect(store_a, NULL, path, 404, "category_not_found");
        snprintf(path, sizeof(path), "/api/v1/products?cursor=%s", big[i]);
        expect(store_a, NULL, path, 422, "validation_failed");
        snprintf(path, sizeof(path), "/api/v1/products?category=%s", big[i]);
        expect(store_a, NULL, path, 422, "validation_failed");
        snprintf(path, sizeof(path), "/api/v1/products?min_price=%s", big[i]);
        expect(store_a, NULL, path, 422, "validation_failed");
        snprintf(path, sizeof(path), "/api/v1/products?limit=%s", big[i]);
        expect(store_a, NULL, path, 422, "validation_failed");
    }
    /* The largest id that can exist goes to the database and is simply not there. */
    th_resp_t r = th_platform(srv, "GET", "/api/v1/stores/9223372036854775807", NULL);
    assert_int_equal(r.status, 404);
    th_resp_free(&r);
    expect(store_a, NULL, "/api/v1/products/9223372036854775807", 404, "product_not_found");

    /* A token whose subject is past the range is not a token. */
    long long now = (long long)time(NULL);
    char *t =
        forge("{\"sub\":\"99999999999999999999\",\"store_id\":%ld,\"role\":\"CUSTOMER\",\"ver\":1,"
              "\"iat\":%lld,\"exp\":%lld,\"jti\":\"n1\"}",
              store_a, now, now + 600);
    assert_int_equal(st(store_a, t, "GET", "/api/v1/me", NULL), 401);
    free(t);

    /* An all-digit slug would read as an id: refused at creation. */
    r = th_platform(srv, "POST", "/api/v1/stores",
                    "{\"slug\":\"12345\",\"name\":\"Digits\",\"currency\":\"EUR\"}");
    assert_int_equal(r.status, 422);
    th_resp_free(&r);

    /* None of it was an error on the server's side. */
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "grep -c 'level=error' %s", srv->log_path);
    FILE *p = popen(cmd, "r");
    int errors = -1;
    assert_int_equal(fscanf(p, "%d", &errors), 1);
    pclose(p);
    assert_int_equal(errors, 0);
    th_user_free(&admin);
}

/* ------------------------------------------------------------ 5: query */

static long
create_product(const char *token, const char *name, long price, const char *brand)
{
    char body[512];
    snprintf(body, sizeof(body),
             "{\"name\":\"%s\",\"base_price\":%ld,\"brand\":\"%s\",\"status\":\"active\"}", name,
             price, brand);
    th_resp_t r = rq(store_a, token, "POST", "/api/v1/products", body);
    if (r.status != 201)
        fail_msg("create product: %ld %s", r.status, r.body);
    long id = (long)json_integer_value(json_object_get(r.json, "id"));
    th_resp_free(&r);
    return id;
}

static long
first_price(const th_resp_t *r)
{
    json_t *data = json_object_get(r->json, "data");
    assert_true(json_array_size(data) > 0);
    return (long)json_integer_value(json_object_get(json_array_get(data, 0), "price_min"));
}

static void
test_query_read_once(void **state)
{
    th_user_t admin = th_user_new(srv, "STORE_ADMIN", store_a);
    const char *brand = th_slug("brand");
    create_product(admin.access, "Cheap Mug", 100, brand);
    create_product(admin.access, "Dear Mug", 900, brand);
    char path[4096];

    /* Warm the cache with the ascending page, then ask for the descending one. */
    snprintf(path, sizeof(path), "/api/v1/products?brand=%s&sort=price", brand);
    th_resp_t r = rq(store_a, NULL, "GET", path, NULL);
    assert_int_equal(r.status, 200);
    assert_int_equal(first_price(&r), 100);
    th_resp_free(&r);
    snprintf(path, sizeof(path), "/api/v1/products?sort=price&brand=%s", brand);
    r = rq(store_a, NULL, "GET", path, NULL);
    assert_int_equal(r.status, 200);
    assert_string_equal(th_header(&r, "X-Cache"), "hit"); /* the same page, spelled otherwise */
    /* Public and shared-cacheable, so it must say the store comes from headers. */
    assert_string_equal(th_header(&r, "Vary"), "X-Tenant-Id, Host, Accept-Encoding");
    th_resp_free(&r);
    snprintf(path, sizeof(path), "/api/v1/products?brand=%s&sort=%%2Dprice", brand);
    r = rq(store_a, NULL, "GET", path, NULL);
    assert_int_equal(r.status, 200);
    assert_int_equal(first_price(&r), 900); /* "-price" percent-encoded is still -price */
    th_resp_free(&r);

    /* A repeated parameter is refused, in either order. */
    snprintf(path, sizeof(path), "/api/v1/products?brand=%s&sort=-price&sort=price", brand);
    r = rq(store_a, NULL, "GET", path, NULL);
    assert_int_equal(r.status, 400);
    assert_string_equal(th_error_code(&r), "invalid_query");
    assert_non_null(strstr(r.body, "more than once"));
    th_resp_free(&r);
    snprintf(path, sizeof(path), "/api/v1/products?brand=%s&sort=price&sort=-price", brand);
    assert_int_equal(st(store_a, NULL, "GET", path, NULL), 400);

    /* 64 junk parameters before the real one: refused, not served the wrong page. */
    int o = snprintf(path, sizeof(path), "/api/v1/products?brand=%s", brand);
    for (int i = 0; i < 64; i++)
        o += snprintf(path + o, sizeof(path) - (size_t)o, "&j%02d=1", i);
    snprintf(path + o, sizeof(path) - (size_t)o, "&sort=-price");
    r = rq(store_a, NULL, "GET", path, NULL);
    assert_int_equal(r.status, 400);
    assert_string_equal(th_error_code(&r), "invalid_query");
    assert_non_null(strstr(r.body, "unknown query parameter"));
    th_resp_free(&r);

    /* Routes that take no query refuse one; empty pairs are nothing. */
    assert_int_equal(st(store_a, NULL, "GET", "/api/v1/store?x=1", NULL), 400);
    assert_int_equal(st(store_a, NULL, "GET", "/api/v1/store?&&", NULL), 200);
    th_user_free(&admin);
}

/* ------------------------------------------------------------ 6: rate limits */

/* Each request takes one token from each bucket it counts in: with 5 per
 * minute per address, the 6th request is the first refused. Every request here
 * comes from its own made-up address (through a trusted proxy), so parallel
 * test programs sharing Redis cannot take from these buckets. */
static void
test_rate_limit_exact(void **state)
{
    char outbox[64];
    snprintf(outbox, sizeof(outbox), "SHOPD_OUTBOX_DIR=/tmp/shopd-sec-outbox-%d", (int)getpid());
    const char *env[] = {"SHOPD_JWT_KEYS=" KEY ":" SECRET,
                         "SHOPD_AUTH_RATE_IP=5",
                         "SHOPD_AUTH_RATE_ACCOUNT=1000",
                         "SHOPD_TRUSTED_PROXIES=127.0.0.1",
                         outbox,
                         NULL};
    th_server_t *rl = th_start(env);
    char xff[64], tenant[64];
    snprintf(xff, sizeof(xff), "X-Forwarded-For: 198.51.100.%d", (int)(getpid() % 250) + 1);
    snprintf(tenant, sizeof(tenant), "X-Tenant-Id: %ld", store_a);
    const char *h[] = {tenant, xff, NULL};

    char body[512];
    char *refresh = NULL;
    for (int i = 0; i < 6; i++) {
        snprintf(body, sizeof(body), "{\"email\":\"%s\",\"password\":\"%s\"}", th_email("rl"),
                 TH_PASSWORD);
        th_resp_t r = th_req(rl, "POST", "/api/v1/auth/register", h, body);
        assert_int_equal(r.status, i < 5 ? 201 : 429);
        if (i == 0)
            refresh = strdup(json_string_value(json_object_get(r.json, "refresh_token")));
        if (i == 5)
            assert_non_null(th_header(&r, "Retry-After"));
        th_resp_free(&r);
    }
    snprintf(xff, sizeof(xff), "X-Forwarded-For: 203.0.113.%d", (int)(getpid() % 250) + 1);
    for (int i = 0; i < 6; i++) {
        snprintf(body, sizeof(body), "{\"refresh_token\":\"%s\"}", refresh);
        th_resp_t r = th_req(rl, "POST", "/api/v1/auth/refresh", h, body);
        assert_int_equal(r.status, i < 5 ? 200 : 429);
        if (r.status == 200) {
            free(refresh);
            refresh = strdup(json_string_value(json_object_get(r.json, "refresh_token")));
        }
        th_resp_free(&r);
    }
    snprintf(xff, sizeof(xff), "X-Forwarded-For: 192.0.2.%d", (int)(getpid() % 250) + 1);
    th_user_t u = th_user_new(rl, "CUSTOMER", store_a);
    snprintf(body, sizeof(body), "{\"email\":\"%s\",\"password\":\"%s\"}", u.email, TH_PASSWORD);
    for (int i = 0; i < 6; i++) {
        th_resp_t r = th_req(rl, "POST", "/api/v1/auth/login", h, body);
        assert_int_equal(r.status, i < 5 ? 200 : 429);
        th_resp_free(&r);
    }
    snprintf(xff, sizeof(xff), "X-Forwarded-For: 192.0.2.%d", (int)(getpid() % 250) + 2);
    snprintf(body, sizeof(body), "{\"email\":\"%s\"}", u.email);
    for (int i = 0; i < 6; i++) {
        th_resp_t r = th_req(rl, "POST", "/api/v1/auth/forgot-password", h, body);
        assert_int_equal(r.status, i < 5 ? 202 : 429);
        th_resp_free(&r);
    }
    free(refresh);
    th_user_free(&u);
    assert_int_equal(th_stop(rl), 0);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", outbox + strlen("SHOPD_OUTBOX_DIR="));
    assert_int_equal(system(cmd), 0);
}

/* ------------------------------------------------------------ 10: Redis outage */

static pid_t
redis_start(int port, const char *dir)
{
    /* Persistent, so that a restart brings back the old version and the old
     * pages, which is what a real outage of a real Redis does. */
    int pid = th_redis_start(port, dir);
    if (pid < 0)
        fail_msg("redis-server did not start on %d", port);
    return pid;
}

static void
redis_stop(int port, pid_t pid)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "redis-cli -p %d shutdown save >/dev/null 2>&1", port);
    if (system(cmd) != 0)
        kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
}

static long
public_price(th_server_t *s, long store, long id, char *xcache, size_t n)
{
    char tenant[64], path[128];
    snprintf(tenant, sizeof(tenant), "X-Tenant-Id: %ld", store);
    snprintf(path, sizeof(path), "/api/v1/products/%ld", id);
    const char *h[] = {tenant, NULL};
    th_resp_t r = th_req(s, "GET", path, h, NULL);
    assert_int_equal(r.status, 200);
    const char *xc = th_header(&r, "X-Cache");
    snprintf(xcache, n, "%s", xc ? xc : "");
    long p = (long)json_integer_value(json_object_get(r.json, "base_price"));
    th_resp_free(&r);
    return p;
}

static void
test_write_during_redis_outage(void **state)
{
    char dir[] = "/tmp/shopd-sec-redis-XXXXXX";
    assert_non_null(mkdtemp(dir));
    int port = th_free_port();
    pid_t redis = redis_start(port, dir);
    char url[64];
    snprintf(url, sizeof(url), "SHOPD_REDIS_URL=redis://127.0.0.1:%d/0", port);
    const char *env[] = {"SHOPD_JWT_KEYS=" KEY ":" SECRET, url, NULL};
    th_server_t *s = th_start(env);
    th_user_t admin = th_user_new(s, "STORE_ADMIN", store_a);
    char tenant[64], auth[2048], path[128], xc[32];
    snprintf(tenant, sizeof(tenant), "X-Tenant-Id: %ld", store_a);
    th_auth_header(auth, sizeof(auth), admin.access);
    const char *h[] = {tenant, auth, NULL};
    th_resp_t r = th_req(s, "POST", "/api/v1/products", h,
                         "{\"name\":\"Outage Mug\",\"base_price\":1000,\"status\":\"active\"}");
    assert_int_equal(r.status, 201);
    long id = (long)json_integer_value(json_object_get(r.json, "id"));
    th_resp_free(&r);

    /* Cached at 1000 (the second GET is a hit, on whichever worker). */
    assert_int_equal(public_price(s, store_a, id, xc, sizeof(xc)), 1000);
    for (int i = 0; i < 4; i++)
        assert_int_equal(public_price(s, store_a, id, xc, sizeof(xc)), 1000);
    assert_string_equal(xc, "hit");

    redis_stop(port, redis);
    snprintf(path, sizeof(path), "/api/v1/products/%ld", id);
    r = th_req(s, "PATCH", path, h, "{\"base_price\":2000}");
    assert_int_equal(r.status, 200); /* PostgreSQL took it; the version bump was lost */
    th_resp_free(&r);
    assert_int_equal(public_price(s, store_a, id, xc, sizeof(xc)), 2000);

    /* Redis comes back with the old version and the old page. */
    redis = redis_start(port, dir);
    for (int i = 0; i < 6; i++)
        assert_int_equal(public_price(s, store_a, id, xc, sizeof(xc)), 2000);
    /* The lost bump was made up for: caching works again, with the new price. */
    assert_string_equal(xc, "hit");

    th_user_free(&admin);
    assert_int_equal(th_stop(s), 0);
    redis_stop(port, redis);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_demoted_admin_stays_demoted),
        cmocka_unit_test(test_forged_role_refused),
        cmocka_unit_test(test_forged_store_refused),
        cmocka_unit_test(test_password_change_retires_tokens),
        cmocka_unit_test(test_ids_past_int64),
        cmocka_unit_test(test_query_read_once),
        cmocka_unit_test(test_rate_limit_exact),
        cmocka_unit_test(test_write_during_redis_outage),
        TH_STOP_TEST,
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
