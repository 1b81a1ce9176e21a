/*
 * The edge's budgets (src/core/ratelimit.c): the GCRA arithmetic behind the
 * RateLimit headers and Retry-After, the shared table, the rate class a route
 * row gets when it leaves the column out, and the CORS origin rules
 * (src/modules/store/tenant.c).
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "shopd/api.h"
#include "shopd/ratelimit.h"
#include "shopd/store.h"

#define S 1000000ull /* one second in microseconds */

/* 3 per minute: the whole budget at once, then one per 20 s. */
static void
test_gcra_burst_then_spacing(void **state)
{
    uint64_t tat = 0, now = 1000 * S;
    rl_result_t r;
    for (uint32_t i = 0; i < 3; i++) {
        rl_gcra_take(&tat, now, 60 * S, 3, &r);
        assert_true(r.allowed);
        assert_int_equal(r.limit, 3);
        assert_int_equal(r.remaining, 2 - i);
        assert_int_equal(r.reset_s, 20 * (i + 1));
    }
    uint64_t before = tat;
    rl_gcra_take(&tat, now, 60 * S, 3, &r);
    assert_false(r.allowed);
    assert_int_equal(r.remaining, 0);
    assert_int_equal(r.retry_s, 20);
    assert_int_equal(r.reset_s, 60);
    assert_int_equal(tat, before); /* a refused request costs nothing */

    /* 19.5 s later: still refused, and Retry-After rounds the half second up. */
    rl_gcra_take(&tat, now + 19 * S + S / 2, 60 * S, 3, &r);
    assert_false(r.allowed);
    assert_int_equal(r.retry_s, 1);
    /* 20 s later exactly one more. */
    rl_gcra_take(&tat, now + 20 * S, 60 * S, 3, &r);
    assert_true(r.allowed);
    assert_int_equal(r.remaining, 0);
    rl_gcra_take(&tat, now + 20 * S, 60 * S, 3, &r);
    assert_false(r.allowed);
    /* After a whole window idle the budget is full again. */
    rl_gcra_take(&tat, now + 200 * S, 60 * S, 3, &r);
    assert_true(r.allowed);
    assert_int_equal(r.remaining, 2);
}

/* A limit that does not divide the window never lets a burst past it. */
static void
test_gcra_uneven_limit(void **state)
{
    uint64_t tat = 0, now = 5 * S;
    rl_result_t r;
    int allowed = 0;
    for (int i = 0; i < 20; i++) {
        rl_gcra_take(&tat, now, 60 * S, 7, &r);
        allowed += r.allowed;
        assert_true(r.remaining < 7);
    }
    assert_int_equal(allowed, 7);
    /* One refused for at least a second. */
    assert_true(r.retry_s >= 1);
}

static void
test_table_keys_apart(void **state)
{
    rl_table_t *t = rl_table_new(1024);
    rl_result_t r;
    uint64_t now = 50 * S;
    rl_table_take(t, "a", 1, now, 60 * S, 2, &r);
    rl_table_take(t, "a", 1, now, 60 * S, 2, &r);
    assert_true(r.allowed);
    rl_table_take(t, "a", 1, now, 60 * S, 2, &r);
    assert_false(r.allowed);
    /* Another key has its own budget. */
    rl_table_take(t, "b", 1, now, 60 * S, 2, &r);
    assert_true(r.allowed);
    assert_int_equal(r.remaining, 1);
    /* Many more keys than slots: the table stays its size and keeps working. */
    char k[32];
    for (int i = 0; i < 20000; i++) {
        int n = snprintf(k, sizeof(k), "k%d", i);
        rl_table_take(t, k, (size_t)n, now, 60 * S, 5, &r);
        assert_true(r.allowed);
    }
    rl_table_free(t);
    rl_table_free(NULL);
}

/* What a sync takes and gives back: the requests allowed since the last
 * collection, budgets still in debt with none, and a shared TAT that makes
 * this process refuse what others spent. */
static void
test_collect_and_merge(void **state)
{
    rl_table_t *t = rl_table_new(1024);
    rl_result_t r;
    uint64_t now = 100 * S;
    rl_pending_t *p = NULL;
    size_t cap = 0;
    assert_int_equal(rl_table_collect(t, now, &p, &cap), 0);
    rl_table_take(t, "store:1", 7, now, 60 * S, 6, &r);
    rl_table_take(t, "store:1", 7, now, 60 * S, 6, &r);
    rl_table_take(t, "ip:a", 4, now, 60 * S, 6, &r);
    size_t n = rl_table_collect(t, now, &p, &cap);
    assert_int_equal(n, 2);
    size_t si = p[0].shared == rl_shared_key("store:1", 7) ? 0 : 1;
    assert_int_equal(p[si].shared, rl_shared_key("store:1", 7));
    assert_int_equal(p[si].n, 2);
    assert_int_equal(p[si].limit, 6);
    assert_int_equal(p[si].period_us, 60 * S);
    assert_int_equal(p[1 - si].n, 1);
    /* Nothing new, but both are in debt: listed with n = 0. */
    n = rl_table_collect(t, now, &p, &cap);
    assert_int_equal(n, 2);
    assert_int_equal(p[0].n + p[1].n, 0);
    /* Others spent the rest: the merged TAT refuses here. */
    uint64_t key = p[si].key;
    rl_table_merge(t, key, now + 60 * S);
    rl_table_take(t, "store:1", 7, now, 60 * S, 6, &r);
    assert_false(r.allowed);
    /* An older shared TAT never gives back what was spent here. */
    rl_table_merge(t, key, now);
    rl_table_take(t, "store:1", 7, now, 60 * S, 6, &r);
    assert_false(r.allowed);
    /* A refused request is not pending; a budget back to full leaves the list. */
    n = rl_table_collect(t, now + 3600 * S, &p, &cap);
    assert_int_equal(n, 0);
    shopd_free(p);
    rl_table_free(t);
}

typedef struct race_s {
    rl_table_t *t;
    int allowed;
} race_t;

static void *
race_main(void *arg)
{
    race_t *r = arg;
    rl_result_t res;
    for (int i = 0; i < 5000; i++) {
        rl_table_take(r->t, "hot", 3, 7 * S, 60 * S, 1000, &res);
        r->allowed += res.allowed;
    }
    return NULL;
}

/* Four I/O threads on one hot budget: exactly its limit passes, no more. */
static void
test_table_threads(void **state)
{
    race_t r[4];
    pthread_t tid[4];
    rl_table_t *t = rl_table_new(1024);
    for (int i = 0; i < 4; i++) {
        r[i] = (race_t){.t = t};
        assert_int_equal(pthread_create(&tid[i], NULL, race_main, &r[i]), 0);
    }
    int total = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(tid[i], NULL);
        total += r[i].allowed;
    }
    assert_int_equal(total, 1000);
    rl_table_free(t);
}

static void
test_rate_class_derived(void **state)
{
    api_route_t get = {.method = "GET", .access = API_PUBLIC};
    api_route_t post = {.method = "POST", .access = API_CUSTOMER};
    api_route_t admin_get = {.method = "GET", .access = API_STORE_ADMIN};
    api_route_t login = {.method = "POST", .access = API_PUBLIC, .rate = API_RATE_AUTH};
    assert_int_equal(api_rate_class(&get), API_RATE_READS);
    assert_int_equal(api_rate_class(&post), API_RATE_WRITES);
    assert_int_equal(api_rate_class(&admin_get), API_RATE_ADMIN);
    assert_int_equal(api_rate_class(&login), API_RATE_AUTH);
    /* The system endpoints are exempt; the sign-in routes are auth. */
    for (size_t i = 0; i < api_nroutes; i++) {
        const api_route_t *r = &api_routes[i];
        if (!strcmp(r->name, "healthz") || !strcmp(r->name, "readyz") ||
            !strcmp(r->name, "metrics"))
            assert_int_equal(api_rate_class(r), API_RATE_EXEMPT);
        else
            assert_int_not_equal(api_rate_class(r), API_RATE_EXEMPT);
        if (!strcmp(r->name, "auth.login"))
            assert_int_equal(api_rate_class(r), API_RATE_AUTH);
    }
}

static bool
valid(const char *s)
{
    return store_origin_valid(s, strlen(s));
}

static void
test_origin_valid(void **state)
{
    assert_true(valid("https://shop.example.com"));
    assert_true(valid("http://localhost:3000"));
    assert_true(valid("http://127.0.0.1:8080"));
    assert_true(valid("https://*.example.com"));
    assert_false(valid("*"));
    assert_false(valid("null"));
    assert_false(valid("https://*"));
    assert_false(valid("https://*.com"));
    assert_false(valid("https://shop.example.com/"));
    assert_false(valid("https://shop.example.com/path"));
    assert_false(valid("ftp://shop.example.com"));
    assert_false(valid("https://Shop.Example.com"));
    assert_false(valid("https://shop.example.com:0"));
    assert_false(valid("https://shop.example.com:70000"));
    assert_false(valid("https://"));
    assert_false(valid("https://*.example.com:8443"));
}

static void
test_origin_allowed(void **state)
{
    const char *list = "https://shop.example.com,http://localhost:3000,https://*.brand.io";
    assert_true(store_origin_allowed(list, "https://shop.example.com"));
    assert_true(store_origin_allowed(list, "HTTPS://SHOP.EXAMPLE.COM"));
    assert_true(store_origin_allowed(list, "http://localhost:3000"));
    assert_true(store_origin_allowed(list, "https://eu.brand.io"));
    assert_true(store_origin_allowed(list, "https://a.b.brand.io"));
    assert_false(store_origin_allowed(list, "https://brand.io"));
    assert_false(store_origin_allowed(list, "http://eu.brand.io"));
    assert_false(store_origin_allowed(list, "https://evilbrand.io"));
    assert_false(store_origin_allowed(list, "https://eu.brand.io:8443"));
    assert_false(store_origin_allowed(list, "https://eu.brand.io.evil.com"));
    assert_false(store_origin_allowed(list, "http://localhost:3001"));
    assert_false(store_origin_allowed(list, "https://shop.example.com.evil.com"));
    assert_false(store_origin_allowed(list, "null"));
    assert_false(store_origin_allowed(list, ""));
    assert_false(store_origin_allowed(list, NULL));
    assert_false(store_origin_allowed("", "https://shop.example.com"));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gcra_burst_then_spacing),
        cmocka_unit_test(test_gcra_uneven_limit),
        cmocka_unit_test(test_table_keys_apart),
        cmocka_unit_test(test_collect_and_merge),
        cmocka_unit_test(test_table_threads),
        cmocka_unit_test(test_rate_class_derived),
        cmocka_unit_test(test_origin_valid),
        cmocka_unit_test(test_origin_allowed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
