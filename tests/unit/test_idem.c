/*
 * Idempotency-Key, the pure parts (src/modules/idem.c): which keys and methods
 * count, which answers are kept, what the fingerprint tells apart (method and
 * route, path parameters, query, body, caller), and the reply helpers of
 * src/net/reply.c the replay is built with.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "shopd/api.h"
#include "shopd/idem.h"

static void
test_keys_and_methods(void **state)
{
    char k[300];
    memset(k, 'a', sizeof(k));
    assert_true(idem_key_valid("a", 1));
    assert_true(idem_key_valid(" ~!", 3));
    assert_true(idem_key_valid(k, 255));
    assert_false(idem_key_valid(k, 256));
    assert_false(idem_key_valid("", 0));
    assert_false(idem_key_valid(NULL, 0));
    assert_false(idem_key_valid("a\tb", 3));
    assert_false(idem_key_valid("a\x7f", 2));
    assert_false(idem_key_valid("caf\xc3\xa9", 5));
    assert_true(idem_method_mutates("POST"));
    assert_true(idem_method_mutates("PATCH"));
    assert_true(idem_method_mutates("PUT"));
    assert_true(idem_method_mutates("DELETE"));
    assert_false(idem_method_mutates("GET"));
    assert_false(idem_method_mutates("HEAD"));
    assert_false(idem_method_mutates(NULL));
}

static void
test_keeps(void **state)
{
    struct {
        net_reply_t *r;
        bool keep;
    } cases[] = {
        {api_empty(SHOPD_CREATED), true},
        {api_empty(SHOPD_NO_CONTENT), true},
        {api_fail(SHOPD_NOTFOUND, "product_not_found", "x"), true},
        {api_fail(SHOPD_CONFLICT, "slug_taken", "x"), true},
        {api_fail(SHOPD_ERR, "internal_error", "x"), true},
        {api_fail(SHOPD_INVALID, "category_too_deep", "x"), true},
        {api_fail(SHOPD_INVALID, "validation_failed", "x"), false},
        {api_fail(SHOPD_BAD_REQUEST, "malformed_json", "x"), false},
        {api_fail(SHOPD_UNAUTHENTICATED, "unauthenticated", "x"), false},
        {api_fail(SHOPD_FORBIDDEN, "forbidden", "x"), false},
        {api_fail(SHOPD_RATE_LIMITED, "rate_limited", "x"), false},
        {api_fail(SHOPD_BUSY, "store_busy", "x"), false},
        {api_fail(SHOPD_UNAVAILABLE, "service_unavailable", "x"), false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        if (idem_keeps(cases[i].r) != cases[i].keep)
            fail_msg("case %zu (%d %s)", i, cases[i].r->status, cases[i].r->body);
        net_reply_free(cases[i].r);
    }
}

static uint32_t
route_index(const char *name)
{
    for (size_t i = 0; i < api_nroutes; i++)
        if (!strcmp(api_routes[i].name, name))
            return (uint32_t)i;
    fail_msg("no route %s", name);
    return 0;
}

/* The fingerprint of a request built from these parts. */
static void
fp(const char *route, const char *id, const char *query, const char *body, uint64_t uid, int role,
   uint8_t out[IDEM_FP_LEN])
{
    msg_env_t env;
    memset(&env, 0, sizeof(env));
    env.type = msg_str(route);
    if (id) {
        env.param_names[0] = msg_str("id");
        env.param_values[0] = msg_str(id);
        env.nparams = 1;
    }
    env.query = msg_str(query);
    env.body = msg_str(body);
    env.caller.user_id = uid;
    env.caller.role = role;
    env.caller.store_id = 1;
    act_msg_t m = {.type = route_index(route)};
    api_ctx_t ctx = {.env = &env, .caller = &env.caller, .msg = &m};
    idem_fingerprint(&ctx, out);
}

static void
test_fingerprint(void **state)
{
    uint8_t a[IDEM_FP_LEN], b[IDEM_FP_LEN];
    fp("products.update", "7", "", "{\"name\":\"x\"}", 5, MSG_ROLE_STORE_ADMIN, a);
    fp("products.update", "7", "", "{\"name\":\"x\"}", 5, MSG_ROLE_STORE_ADMIN, b);
    assert_memory_equal(a, b, IDEM_FP_LEN); /* deterministic */
    fp("products.update", "8", "", "{\"name\":\"x\"}", 5, MSG_ROLE_STORE_ADMIN, b);
    assert_memory_not_equal(a, b, IDEM_FP_LEN); /* path parameter */
    fp("products.update", "7", "", "{\"name\":\"y\"}", 5, MSG_ROLE_STORE_ADMIN, b);
    assert_memory_not_equal(a, b, IDEM_FP_LEN); /* body */
    fp("products.update", "7", "", "{\"name\":\"x\"}", 6, MSG_ROLE_STORE_ADMIN, b);
    assert_memory_not_equal(a, b, IDEM_FP_LEN); /* another user */
    fp("products.update", "7", "", "{\"name\":\"x\"}", 5, MSG_ROLE_SUPER_ADMIN, b);
    assert_memory_not_equal(a, b, IDEM_FP_LEN); /* another role */
    fp("products.delete", "7", "", "{\"name\":\"x\"}", 5, MSG_ROLE_STORE_ADMIN, b);
    assert_memory_not_equal(a, b, IDEM_FP_LEN); /* method and route */
    fp("categories.delete", "7", "", "", 5, MSG_ROLE_STORE_ADMIN, a);
    fp("categories.delete", "7", "move_to=root", "", 5, MSG_ROLE_STORE_ADMIN, b);
    assert_memory_not_equal(a, b, IDEM_FP_LEN); /* query */
    /* Field boundaries count: a byte moved from one field to the next differs. */
    fp("categories.delete", "7", "a", "b", 5, MSG_ROLE_STORE_ADMIN, a);
    fp("categories.delete", "7", "ab", "", 5, MSG_ROLE_STORE_ADMIN, b);
    assert_memory_not_equal(a, b, IDEM_FP_LEN);
}

static void
test_reply_helpers(void **state)
{
    net_reply_t *r = api_empty(SHOPD_CREATED);
    net_reply_set_body(r, "{\"id\":1}", 8);
    net_reply_add_header(r, "Location", "/api/v1/products/1");
    net_reply_add_header(r, "ETag", "\"abc\"");
    char v[64];
    assert_string_equal(net_reply_header(r, "location", v, sizeof(v)), "/api/v1/products/1");
    assert_string_equal(net_reply_header(r, "ETag", v, sizeof(v)), "\"abc\"");
    assert_null(net_reply_header(r, "Loc", v, sizeof(v)));
    assert_string_equal(net_reply_header(r, "Location", v, 5), "/api"); /* truncated */
    net_reply_set_content_type(r, "application/problem+json");
    net_reply_t *c = net_reply_copy(r);
    net_reply_free(r); /* the copy owns everything it says */
    assert_int_equal(c->status, 201);
    assert_int_equal(c->len, 8);
    assert_memory_equal(c->body, "{\"id\":1}", 8);
    assert_string_equal(c->content_type, "application/problem+json");
    assert_string_equal(net_reply_header(c, "ETag", v, sizeof(v)), "\"abc\"");
    net_reply_set_headers(c, "", 0);
    assert_null(c->headers);
    net_reply_set_content_type(c, NULL);
    assert_null(c->content_type);
    net_reply_free(c);

    idem_stored_t s = {.status = 201, .body = strdup("{}"), .len = 2};
    net_reply_t *rep = idem_reply_from_stored(&s);
    assert_string_equal(net_reply_header(rep, "Idempotent-Replayed", v, sizeof(v)), "true");
    assert_int_equal(rep->status, 201);
    net_reply_free(rep);
    free(s.body);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keys_and_methods),
        cmocka_unit_test(test_keeps),
        cmocka_unit_test(test_fingerprint),
        cmocka_unit_test(test_reply_helpers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
