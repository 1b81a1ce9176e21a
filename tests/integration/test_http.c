/*
 * HTTP edge against the real binary: health, request ids, 404/405, limits
 * (413, 431), malformed HTTP (400), content type (415), malformed JSON (400),
 * non-object bodies (422), keep-alive with pipelining, metrics.
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
    static const char *const env[] = {"SHOPD_MAX_BODY=4096", "SHOPD_MAX_HEADER=2048", NULL};
    srv = th_start(env);
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

static void
test_healthz_and_request_id(void **state)
{
    th_resp_t r = th_req(srv, "GET", "/healthz", NULL, NULL);
    assert_int_equal(r.status, 200);
    assert_string_equal(json_string_value(json_object_get(r.json, "status")), "ok");
    const char *rid = th_header(&r, "X-Request-Id");
    assert_non_null(rid);
    assert_true(strlen(rid) >= 8);
    assert_string_equal(th_header(&r, "Content-Type"), "application/json");
    th_resp_free(&r);

    const char *h[] = {"X-Request-Id: my-trace.42:abc", NULL};
    r = th_req(srv, "GET", "/healthz", h, NULL);
    assert_string_equal(th_header(&r, "X-Request-Id"), "my-trace.42:abc");
    th_resp_free(&r);

    /* An id with characters that could forge log fields is replaced. */
    const char *bad[] = {"X-Request-Id: a b\"c", NULL};
    r = th_req(srv, "GET", "/healthz", bad, NULL);
    assert_string_not_equal(th_header(&r, "X-Request-Id"), "a b\"c");
    th_resp_free(&r);

    /* The id also travels through an actor and back. */
    const char *h2[] = {"X-Request-Id: through-actor-1", "Authorization: Bearer " TH_PLATFORM_TOKEN,
                        NULL};
    r = th_req(srv, "GET", "/api/v1/stores?limit=1", h2, NULL);
    assert_int_equal(r.status, 200);
    assert_string_equal(th_header(&r, "X-Request-Id"), "through-actor-1");
    th_resp_free(&r);
}

static void
test_not_found_and_method(void **state)
{
    th_resp_t r = th_req(srv, "GET", "/api/v1/nothing-here", NULL, NULL);
    assert_int_equal(r.status, 404);
    assert_string_equal(th_error_code(&r), "not_found");
    assert_non_null(json_object_get(json_object_get(r.json, "error"), "details"));
    th_resp_free(&r);

    r = th_req(srv, "PUT", "/api/v1/stores", NULL, NULL);
    assert_int_equal(r.status, 405);
    assert_string_equal(th_error_code(&r), "method_not_allowed");
    assert_string_equal(th_header(&r, "Allow"), "POST, GET, HEAD");
    th_resp_free(&r);
}

static void
test_body_too_large(void **state)
{
    size_t n = 10000;
    char *big = malloc(n + 1);
    memset(big, 'a', n);
    big[0] = '"';
    big[n - 1] = '"';
    big[n] = '\0';
    th_resp_t r = th_platform(srv, "POST", "/api/v1/stores", big);
    assert_int_equal(r.status, 413);
    assert_string_equal(th_error_code(&r), "body_too_large");
    th_resp_free(&r);
    free(big);

    /* Chunked bodies are counted as they arrive. */
    char req[8192];
    int len = snprintf(req, sizeof(req),
                       "POST /api/v1/stores HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                       "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                       "1000\r\n",
                       TH_PLATFORM_TOKEN);
    memset(req + len, 'x', 4096);
    len += 4096;
    len +=
        snprintf(req + len, sizeof(req) - (size_t)len, "\r\n10\r\nxxxxxxxxxxxxxxxx\r\n0\r\n\r\n");
    char out[4096];
    th_raw(srv, req, (size_t)len, out, sizeof(out), 3000);
    assert_non_null(strstr(out, "HTTP/1.1 413"));
}

static void
test_header_too_large(void **state)
{
    char hdr[3000];
    memset(hdr, 'h', sizeof(hdr));
    memcpy(hdr, "X-Big: ", 7);
    hdr[sizeof(hdr) - 1] = '\0';
    const char *h[] = {hdr, NULL};
    th_resp_t r = th_req(srv, "GET", "/healthz", h, NULL);
    assert_int_equal(r.status, 431);
    assert_string_equal(th_error_code(&r), "header_too_large");
    th_resp_free(&r);

    /* Far beyond the limit too (http-parser's own cap): still 431, never a crash. */
    size_t n = 200000;
    char *req = malloc(n + 64);
    int k = snprintf(req, 64, "GET /healthz HTTP/1.1\r\nX-Huge: ");
    memset(req + k, 'z', n);
    memcpy(req + k + n, "\r\n\r\n", 4);
    char out[4096];
    th_raw(srv, req, (size_t)k + n + 4, out, sizeof(out), 3000);
    assert_non_null(strstr(out, "HTTP/1.1 431"));
    free(req);
}

static void
test_malformed_http(void **state)
{
    char out[4096];
    th_raw(srv, "GARBAGE\r\n\r\n", 11, out, sizeof(out), 3000);
    assert_non_null(strstr(out, "HTTP/1.1 400"));
    assert_non_null(strstr(out, "bad_request"));
    th_raw(srv, "GET / HTTP/1.1\r\nContent-Length: -5\r\n\r\n", 39, out, sizeof(out), 3000);
    assert_non_null(strstr(out, "HTTP/1.1 400"));
}

static void
test_json_errors(void **state)
{
    const char *plain[] = {"Authorization: Bearer " TH_PLATFORM_TOKEN, "Content-Type: text/plain",
                           NULL};
    th_resp_t r = th_req(srv, "POST", "/api/v1/stores", plain, "{}");
    assert_int_equal(r.status, 415);
    assert_string_equal(th_error_code(&r), "unsupported_media_type");
    th_resp_free(&r);

    r = th_platform(srv, "POST", "/api/v1/stores", "{\"slug\": \"abc\",");
    assert_int_equal(r.status, 400);
    assert_string_equal(th_error_code(&r), "malformed_json");
    th_resp_free(&r);

    r = th_platform(srv, "POST", "/api/v1/stores", "[1,2]");
    assert_int_equal(r.status, 422);
    assert_string_equal(th_error_code(&r), "validation_failed");
    json_t *d = json_array_get(json_object_get(json_object_get(r.json, "error"), "details"), 0);
    assert_string_equal(json_string_value(json_object_get(d, "field")), "body");
    th_resp_free(&r);

    r = th_platform(srv, "POST", "/api/v1/stores", "{\"a\":1,\"a\":2}");
    assert_int_equal(r.status, 400);
    th_resp_free(&r);

    const char *json_charset[] = {"Authorization: Bearer " TH_PLATFORM_TOKEN,
                                  "Content-Type: application/json; charset=utf-8", NULL};
    r = th_req(srv, "POST", "/api/v1/stores", json_charset, "{\"slug\": 5}");
    assert_int_equal(r.status, 422);
    d = json_array_get(json_object_get(json_object_get(r.json, "error"), "details"), 0);
    assert_string_equal(json_string_value(json_object_get(d, "field")), "slug");
    assert_string_equal(json_string_value(json_object_get(d, "issue")), "must be a string");
    th_resp_free(&r);
}

static void
test_pipelining(void **state)
{
    /* Three requests in one write: three answers, in order, on one connection. */
    const char *req =
        "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Request-Id: p1\r\n\r\n"
        "GET /nope HTTP/1.1\r\nHost: x\r\nX-Request-Id: p2\r\n\r\n"
        "GET /readyz HTTP/1.1\r\nHost: x\r\nX-Request-Id: p3\r\nConnection: close\r\n\r\n";
    char out[8192];
    th_raw(srv, req, strlen(req), out, sizeof(out), 5000);
    char *a = strstr(out, "X-Request-Id: p1");
    char *b = strstr(out, "X-Request-Id: p2");
    char *c = strstr(out, "X-Request-Id: p3");
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(c);
    assert_true(a < b && b < c);
    assert_non_null(strstr(out, "HTTP/1.1 404"));
}

static void
test_metrics(void **state)
{
    th_resp_t r = th_req(srv, "GET", "/metrics", NULL, NULL);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "shopd_http_requests_total{route=\"healthz\",status=\"200\"}"));
    assert_non_null(strstr(r.body, "shopd_http_request_duration_seconds_bucket{le=\"+Inf\"}"));
    assert_non_null(strstr(r.body, "shopd_mailbox_depth "));
    assert_non_null(strstr(r.body, "shopd_db_pool_size "));
    assert_non_null(strstr(r.body, "route=\"unmatched\",status=\"404\""));
    assert_non_null(strstr(th_header(&r, "Content-Type"), "text/plain"));
    th_resp_free(&r);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_healthz_and_request_id),
        cmocka_unit_test(test_not_found_and_method),
        cmocka_unit_test(test_body_too_large),
        cmocka_unit_test(test_header_too_large),
        cmocka_unit_test(test_malformed_http),
        cmocka_unit_test(test_json_errors),
        cmocka_unit_test(test_pipelining),
        cmocka_unit_test(test_metrics),
        TH_STOP_TEST, /* last: the server must exit 0 on SIGTERM */
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
