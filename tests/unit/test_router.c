/* Router: static and parameterised paths, 404 vs 405 with Allow, trailing slash. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <cmocka.h>

#include "shopd/net.h"

static const net_route_t routes[] = {
    {"GET", "/healthz"},
    {"POST", "/api/v1/stores"},
    {"GET", "/api/v1/stores"},
    {"GET", "/api/v1/stores/:id"},
    {"PATCH", "/api/v1/stores/:id"},
    {"GET", "/api/v1/stores/:id/users/:uid"},
    {"GET", "/api/v1/store"},
};
#define N (sizeof(routes) / sizeof(routes[0]))

static net_match_rc_t
match(const char *m, const char *p, net_match_t *out)
{
    return net_route_match(routes, N, m, p, strlen(p), out);
}

static void
test_static(void **state)
{
    net_match_t m;
    assert_int_equal(match("GET", "/healthz", &m), NET_MATCH_OK);
    assert_int_equal(m.route, 0);
    assert_int_equal(m.nparams, 0);
    assert_int_equal(match("GET", "/api/v1/store", &m), NET_MATCH_OK);
    assert_int_equal(m.route, 6);
    assert_int_equal(match("GET", "/api/v1/stores", &m), NET_MATCH_OK);
    assert_int_equal(m.route, 2);
    assert_int_equal(match("POST", "/api/v1/stores", &m), NET_MATCH_OK);
    assert_int_equal(m.route, 1);
}

static void
test_params(void **state)
{
    net_match_t m;
    assert_int_equal(match("GET", "/api/v1/stores/42", &m), NET_MATCH_OK);
    assert_int_equal(m.route, 3);
    assert_int_equal(m.nparams, 1);
    assert_int_equal(m.param_name_lens[0], 2);
    assert_memory_equal(m.param_names[0], "id", 2);
    assert_int_equal(m.param_value_lens[0], 2);
    assert_memory_equal(m.param_values[0], "42", 2);

    assert_int_equal(match("GET", "/api/v1/stores/7/users/abc", &m), NET_MATCH_OK);
    assert_int_equal(m.route, 5);
    assert_int_equal(m.nparams, 2);
    assert_memory_equal(m.param_values[1], "abc", 3);
}

static void
test_not_found(void **state)
{
    net_match_t m;
    assert_int_equal(match("GET", "/nope", &m), NET_MATCH_NOT_FOUND);
    assert_int_equal(match("GET", "/api/v1/stores/", &m), NET_MATCH_OK); /* trailing slash */
    assert_int_equal(m.route, 2);
    assert_int_equal(match("GET", "/api/v1/stores//users/x", &m), NET_MATCH_NOT_FOUND);
    assert_int_equal(match("GET", "/api/v1/stores/1/2", &m), NET_MATCH_NOT_FOUND);
    assert_int_equal(match("GET", "/api/v1", &m), NET_MATCH_NOT_FOUND);
    assert_int_equal(match("GET", "", &m), NET_MATCH_NOT_FOUND);
    assert_int_equal(match("GET", "/healthzz", &m), NET_MATCH_NOT_FOUND);
}

static void
test_method_not_allowed(void **state)
{
    net_match_t m;
    assert_int_equal(match("DELETE", "/api/v1/stores/9", &m), NET_MATCH_BAD_METHOD);
    assert_string_equal(m.allow, "GET, PATCH");
    assert_int_equal(match("PUT", "/api/v1/stores", &m), NET_MATCH_BAD_METHOD);
    assert_string_equal(m.allow, "POST, GET");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_static),
        cmocka_unit_test(test_params),
        cmocka_unit_test(test_not_found),
        cmocka_unit_test(test_method_not_allowed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
