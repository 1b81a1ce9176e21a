/*
 * Tenant isolation and roles, generated from the route table itself: every
 * protected route of api_routes (so also every route added later) is called
 *   - without a token: 401 unauthenticated with WWW-Authenticate;
 *   - for store-scoped routes, with valid tokens of store A against store B:
 *     403 forbidden;
 *   - for STORE_ADMIN routes, with a customer token of the same store: 403;
 *   - for SUPER_ADMIN routes, with store admin and customer tokens: 403;
 * and, as a control, with a token that may call it: not refused by the
 * middleware. Path parameters get a dummy id no object has (the middleware
 * decides before any handler runs, so the checks do not depend on data).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "harness.h"
#include "shopd/api.h"

static th_server_t *srv;
static long store_a, store_b;
static char *super_tok, *a_admin, *a_cust, *b_admin, *b_cust;

static int
setup(void **state)
{
    srv = th_start(NULL);
    char s[64];
    snprintf(s, sizeof(s), "%s", th_slug("iso-a"));
    store_a = th_create_store(srv, s, NULL);
    snprintf(s, sizeof(s), "%s", th_slug("iso-b"));
    store_b = th_create_store(srv, s, NULL);
    super_tok = th_token(srv, "SUPER_ADMIN", 0);
    a_admin = th_token(srv, "STORE_ADMIN", store_a);
    a_cust = th_token(srv, "CUSTOMER", store_a);
    b_admin = th_token(srv, "STORE_ADMIN", store_b);
    b_cust = th_token(srv, "CUSTOMER", store_b);
    return 0;
}

static int
teardown(void **state)
{
    free(super_tok);
    free(a_admin);
    free(a_cust);
    free(b_admin);
    free(b_cust);
    if (srv == NULL)
        return -1;
    th_stop(srv); /* frees it: TH_STOP_TEST checked the exit status */
    return 0;
}

/* "/api/v1/x/:id/y/:other" -> "/api/v1/x/999999999/y/999999999" */
static void
fill_path(const char *pattern, char *out, size_t n)
{
    size_t o = 0;
    for (const char *p = pattern; *p && o + 12 < n;) {
        if (*p == ':') {
            o += (size_t)snprintf(out + o, n - o, "999999999");
            while (*p && *p != '/')
                p++;
        } else {
            out[o++] = *p++;
        }
    }
    out[o] = '\0';
}

/* Calls route r as token (NULL: none) against store (0: no tenant header). */
static th_resp_t
call(const api_route_t *r, const char *token, long store)
{
    char path[512], auth[1200], tenant[64];
    fill_path(r->pattern, path, sizeof(path));
    const char *h[4] = {NULL, NULL, NULL, NULL};
    int k = 0;
    if (token) {
        th_auth_header(auth, sizeof(auth), token);
        h[k++] = auth;
    }
    if (store) {
        snprintf(tenant, sizeof(tenant), "X-Tenant-Id: %ld", store);
        h[k++] = tenant;
    }
    return th_req(srv, r->method, path, h, (r->flags & API_BODY) ? "{}" : NULL);
}

static void
expect(const api_route_t *r, const char *who, const char *token, long store, long status,
       const char *code)
{
    th_resp_t x = call(r, token, store);
    if (x.status != status || strcmp(th_error_code(&x), code) != 0)
        fail_msg("%s %s as %s: want %ld %s, got %ld %s", r->method, r->pattern, who, status, code,
                 x.status, x.body);
    if (status == 401 && th_header(&x, "WWW-Authenticate") == NULL)
        fail_msg("%s %s: 401 without WWW-Authenticate", r->method, r->pattern);
    th_resp_free(&x);
}

/* The middleware lets this caller through (whatever the handler then says). */
static void
passes(const api_route_t *r, const char *who, const char *token, long store)
{
    th_resp_t x = call(r, token, store);
    const char *c = th_error_code(&x);
    if (x.status == 401 || (x.status == 403 && strcmp(c, "forbidden") == 0) || x.status >= 500)
        fail_msg("%s %s as %s: refused or failed: %ld %s", r->method, r->pattern, who, x.status,
                 x.body);
    th_resp_free(&x);
}

static void
test_every_protected_route(void **state)
{
    size_t checked = 0, store_scoped = 0;
    for (size_t i = 0; i < api_nroutes; i++) {
        const api_route_t *r = &api_routes[i];
        if (r->access == API_PUBLIC || r->access == API_PLATFORM)
            continue;
        bool scoped = (r->flags & API_STORE) != 0;
        long tenant = scoped ? store_b : 0;
        checked++;

        expect(r, "nobody", NULL, tenant, 401, "unauthenticated");
        expect(r, "a tampered token", "eyJhbGciOiJIUzI1NiJ9.e30.AAAA", tenant, 401,
               "unauthenticated");

        switch (r->access) {
        case API_SUPER_ADMIN:
            expect(r, "store admin", b_admin, tenant, 403, "forbidden");
            expect(r, "customer", b_cust, tenant, 403, "forbidden");
            passes(r, "super admin", super_tok, tenant);
            break;
        case API_STORE_ADMIN:
            expect(r, "customer of the store", b_cust, tenant, 403, "forbidden");
            if (scoped) {
                store_scoped++;
                expect(r, "admin of another store", a_admin, tenant, 403, "forbidden");
                expect(r, "customer of another store", a_cust, tenant, 403, "forbidden");
                passes(r, "admin of the store", b_admin, tenant);
            }
            passes(r, "super admin", super_tok, tenant);
            break;
        case API_CUSTOMER:
            if (scoped) {
                store_scoped++;
                expect(r, "admin of another store", a_admin, tenant, 403, "forbidden");
                expect(r, "customer of another store", a_cust, tenant, 403, "forbidden");
                passes(r, "customer of the store", b_cust, tenant);
                passes(r, "admin of the store", b_admin, tenant);
            } else {
                passes(r, "customer", b_cust, 0);
            }
            break;
        default:
            fail_msg("route %s has an unknown access level %d", r->name, r->access);
        }
    }
    /* The table has protected routes, and store-scoped ones among them. */
    assert_true(checked >= 10);
    assert_true(store_scoped >= 5);
    print_message("checked %zu protected routes (%zu store-scoped)\n", checked, store_scoped);
}

/* A super admin may act on any store; the platform token too (operator). */
static void
test_super_admin_any_store(void **state)
{
    char auth[1200], tenant[64];
    th_auth_header(auth, sizeof(auth), super_tok);
    snprintf(tenant, sizeof(tenant), "X-Tenant-Id: %ld", store_a);
    const char *h[] = {auth, tenant, NULL};
    th_resp_t r = th_req(srv, "GET", "/api/v1/admin/users", h, NULL);
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
    snprintf(tenant, sizeof(tenant), "X-Tenant-Id: %ld", store_b);
    r = th_req(srv, "GET", "/api/v1/admin/users", h, NULL);
    assert_int_equal(r.status, 200);
    /* Store B's list holds only store B's users. */
    size_t i;
    json_t *u;
    json_array_foreach(json_object_get(r.json, "data"), i, u)
        assert_int_equal(json_integer_value(json_object_get(u, "store_id")), store_b);
    th_resp_free(&r);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_protected_route), cmocka_unit_test(test_super_admin_any_store),
        TH_STOP_TEST, /* last: the server must exit 0 on SIGTERM */
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
