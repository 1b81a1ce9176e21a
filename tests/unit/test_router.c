/* Router: static and parameterised paths, 404 vs 405 with Allow, trailing slash. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "shopd/api.h"
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

/* The index answers exactly as the scan: route, captures, 405 and its Allow list, for
 * every route of shopd's own table (parameters filled in, trailing slashes, HEAD, other
 * methods) and for paths that match nothing; also on the small table above, and with a
 * parameter in the first segments (the list every lookup reads). */
static void
same(const net_route_t *rt, size_t n, const net_router_t *ix, const char *method, const char *path)
{
    net_match_t a, b;
    net_match_rc_t ra = net_route_match(rt, n, method, path, strlen(path), &a);
    net_match_rc_t rb = net_router_match(ix, method, path, strlen(path), &b);
    if (ra != rb || a.route != b.route || a.nparams != b.nparams || strcmp(a.allow, b.allow))
        fail_msg("%s %s: scan %d route %d allow '%s', index %d route %d allow '%s'", method, path,
                 ra, a.route, a.allow, rb, b.route, b.allow);
    for (size_t i = 0; i < a.nparams; i++) {
        assert_int_equal(a.param_value_lens[i], b.param_value_lens[i]);
        assert_memory_equal(a.param_values[i], b.param_values[i], a.param_value_lens[i]);
    }
}

static void
check_table(const net_route_t *rt, size_t n)
{
    static const char *const methods[] = {"GET", "HEAD",   "POST",   "PATCH",
                                          "PUT", "DELETE", "OPTIONS"};
    static const char *const extra[] = {"/",
                                        "",
                                        "/api",
                                        "/api/v1",
                                        "/api/v1/",
                                        "/api/v1/nope",
                                        "/api/v1/products/12/nope/9",
                                        "/healthz/x",
                                        "//",
                                        "x",
                                        "/api/v2/products",
                                        "/api/v1/products//"};
    net_router_t *ix = net_router_new(rt, n);
    char path[512];
    for (size_t i = 0; i < n; i++) {
        /* The pattern with each ":name" replaced by a value, with and without a slash. */
        size_t o = 0;
        for (const char *p = rt[i].pattern; *p && o + 8 < sizeof(path);) {
            if (*p == ':') {
                memcpy(path + o, "12", 2);
                o += 2;
                while (*p && *p != '/')
                    p++;
            } else {
                path[o++] = *p++;
            }
        }
        path[o] = '\0';
        for (size_t m = 0; m < sizeof(methods) / sizeof(methods[0]); m++) {
            same(rt, n, ix, methods[m], path);
            same(rt, n, ix, methods[m], rt[i].pattern);
            path[o] = '/';
            path[o + 1] = '\0';
            same(rt, n, ix, methods[m], path);
            path[o] = '\0';
        }
    }
    for (size_t e = 0; e < sizeof(extra) / sizeof(extra[0]); e++)
        for (size_t m = 0; m < sizeof(methods) / sizeof(methods[0]); m++)
            same(rt, n, ix, methods[m], extra[e]);
    net_router_free(ix);
}

static void
test_index_matches_scan(void **state)
{
    (void)state;
    check_table(routes, N);
    assert_true(api_nroutes > 50);
    net_route_t *all = calloc(api_nroutes, sizeof(*all));
    for (size_t i = 0; i < api_nroutes; i++)
        all[i] = (net_route_t){api_routes[i].method, api_routes[i].pattern};
    check_table(all, api_nroutes);
    free(all);
    static const net_route_t wild[] = {
        {"GET", "/api/v1/products/:id"}, {"GET", "/:store/hooks"},
        {"POST", "/api/:v/x"},           {"GET", "/api/v1/x"},
        {"DELETE", "/:a/:b/:c/:d"},      {"GET", "/healthz"},
    };
    check_table(wild, sizeof(wild) / sizeof(wild[0]));
    net_router_t *ix = net_router_new(wild, sizeof(wild) / sizeof(wild[0]));
    net_match_t m;
    assert_int_equal(net_router_match(ix, "POST", "/api/v9/x", 9, &m), NET_MATCH_OK);
    assert_int_equal(m.route, 2);
    assert_int_equal(net_router_match(ix, "GET", "/api/v1/x", 9, &m), NET_MATCH_OK);
    assert_int_equal(m.route, 3);
    assert_int_equal(net_router_match(ix, "PUT", "/a/b/c/d", 8, &m), NET_MATCH_BAD_METHOD);
    assert_string_equal(m.allow, "DELETE");
    net_router_free(ix);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_static),
        cmocka_unit_test(test_params),
        cmocka_unit_test(test_not_found),
        cmocka_unit_test(test_method_not_allowed),
        cmocka_unit_test(test_index_matches_scan),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
