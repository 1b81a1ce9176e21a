/*
 * Unit tests of the edge's number and query parsers: shopd_id_parse,
 * shopd_int_parse (src/core/common.c) and api_query_canon (src/modules/query.c).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "shopd/api.h"

static bool
id(const char *s, uint64_t *out)
{
    return shopd_id_parse(s, strlen(s), out);
}

static void
test_id_parse(void **state)
{
    uint64_t v = 0;
    assert_true(id("1", &v));
    assert_int_equal(v, 1);
    assert_true(id("9223372036854775807", &v));
    assert_true(v == (uint64_t)INT64_MAX);
    assert_true(id("0042", &v));
    assert_int_equal(v, 42);
    static const char *const bad[] = {"",
                                      "0",
                                      "00",
                                      "-1",
                                      "+1",
                                      " 1",
                                      "1 ",
                                      "1a",
                                      "0x10",
                                      "9223372036854775808",
                                      "9999999999999999999",
                                      "18446744073709551615",
                                      "18446744073709551616",
                                      "99999999999999999999999999"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_false(id(bad[i], &v));
    assert_true(shopd_id_parse("123abc", 3, &v)); /* length-bounded: not NUL-terminated input */
    assert_int_equal(v, 123);
}

static void
test_int_parse(void **state)
{
    long long v;
    assert_true(shopd_int_parse("100", 1, 100, &v));
    assert_int_equal(v, 100);
    assert_false(shopd_int_parse("101", 1, 100, &v));
    assert_false(shopd_int_parse("0", 1, 100, &v));
    assert_true(shopd_int_parse("-9223372036854775808", INT64_MIN, INT64_MAX, &v));
    assert_true(v == INT64_MIN);
    assert_true(shopd_int_parse("9223372036854775807", INT64_MIN, INT64_MAX, &v));
    assert_false(shopd_int_parse("9223372036854775808", INT64_MIN, INT64_MAX, &v));
    assert_false(shopd_int_parse("-9223372036854775809", INT64_MIN, INT64_MAX, &v));
    assert_false(shopd_int_parse("99999999999999999999", 0, INT64_MAX, &v));
    assert_false(shopd_int_parse("", 0, 10, &v));
    assert_false(shopd_int_parse("-", 0, 10, &v));
    assert_false(shopd_int_parse("5 ", 0, 10, &v));
    assert_false(shopd_int_parse(NULL, 0, 10, &v));
}

static const char *const allowed[] = {"sort", "limit", "brand", "q", NULL};

static char *
canon(const char *q, int *status)
{
    char *out = NULL;
    size_t n = 0;
    net_reply_t *r = api_query_canon(allowed, q, q ? strlen(q) : 0, &out, &n);
    *status = r ? r->status : 0;
    if (r) {
        assert_null(out);
        net_reply_free(r);
    } else if (out) {
        assert_int_equal(strlen(out), n);
    }
    return out;
}

static void
test_query_canon(void **state)
{
    int st;
    char *a = canon("sort=price&limit=5", &st), *b = canon("limit=5&sort=price", &st);
    assert_string_equal(a, "limit=5&sort=price");
    assert_string_equal(a, b);
    shopd_free(a);
    shopd_free(b);
    a = canon("sort=%2Dprice&brand=A+B%26C", &st);
    assert_string_equal(a, "brand=A%20B%26C&sort=-price");
    shopd_free(a);
    a = canon("&&q=&", &st);
    assert_string_equal(a, "q=");
    shopd_free(a);
    assert_null(canon("", &st));
    assert_int_equal(st, 0);
    assert_null(canon(NULL, &st));
    assert_int_equal(st, 0);

    assert_null(canon("sort=price&sort=-price", &st));
    assert_int_equal(st, 400);
    assert_null(canon("sort=price&junk=1", &st));
    assert_int_equal(st, 400);
    assert_null(canon("sor%74=price", &st)); /* names are taken as written */
    assert_int_equal(st, 400);
    /* A route that declares no parameters takes none. */
    char *out = NULL;
    size_t n;
    net_reply_t *r = api_query_canon(NULL, "x=1", 3, &out, &n);
    assert_non_null(r);
    assert_int_equal(r->status, 400);
    net_reply_free(r);
}

/* Every route's declared query fits the cap, and no name is declared twice. */
static void
test_route_queries(void **state)
{
    for (size_t i = 0; i < api_nroutes; i++) {
        const char *const *q = api_routes[i].query;
        size_t n = 0;
        for (; q && q[n]; n++)
            for (size_t k = 0; k < n; k++)
                assert_string_not_equal(q[k], q[n]);
        assert_true(n <= API_MAX_QUERY);
    }
}

/* The route table is the modules' routes one after another, with unique names
 * (a message's type is its index, its name the metrics label). */
static void
test_route_table_from_modules(void **state)
{
    size_t n = 0;
    for (size_t m = 0; m < api_nmodules; m++) {
        assert_non_null(api_modules[m]->name);
        for (size_t i = 0; i < api_modules[m]->nroutes; i++, n++)
            assert_string_equal(api_routes[n].name, api_modules[m]->routes[i].name);
    }
    assert_int_equal(n, api_nroutes);
    assert_true(api_nroutes >= 50);
    for (size_t i = 0; i < api_nroutes; i++)
        for (size_t k = 0; k < i; k++)
            assert_string_not_equal(api_routes[i].name, api_routes[k].name);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_id_parse),
        cmocka_unit_test(test_int_parse),
        cmocka_unit_test(test_query_canon),
        cmocka_unit_test(test_route_queries),
        cmocka_unit_test(test_route_table_from_modules),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
