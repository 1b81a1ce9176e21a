/* Error bodies follow DESIGN.md's format; statuses map once from internal codes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <jansson.h>

#include "shopd/net.h"

static void
test_error_body(void **state)
{
    const char *fields[] = {"slug", "currency"};
    const char *issues[] = {"is required", "must be \"ISO\""};
    size_t len;
    char *s = net_error_body("validation_failed", "bad input", fields, issues, 2, &len);
    assert_int_equal(strlen(s), len);
    json_error_t e;
    json_t *doc = json_loads(s, 0, &e);
    assert_non_null(doc);
    json_t *err = json_object_get(doc, "error");
    assert_string_equal(json_string_value(json_object_get(err, "code")), "validation_failed");
    assert_string_equal(json_string_value(json_object_get(err, "message")), "bad input");
    json_t *d = json_object_get(err, "details");
    assert_int_equal(json_array_size(d), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(d, 1), "field")),
                        "currency");
    assert_string_equal(json_string_value(json_object_get(json_array_get(d, 1), "issue")),
                        "must be \"ISO\"");
    json_decref(doc);
    free(s);
}

static void
test_reply_helpers(void **state)
{
    net_reply_t *r =
        net_reply_error_field(422, "validation_failed", "m", "body", "must be a JSON object");
    assert_int_equal(r->status, 422);
    assert_non_null(strstr(r->body, "\"field\":\"body\""));
    net_reply_add_header(r, "Retry-After", "1");
    net_reply_add_header(r, "Allow", "GET");
    assert_string_equal(r->headers, "Retry-After: 1\r\nAllow: GET\r\n");
    net_reply_free(r);
    r = net_reply_error(404, "not_found", "no such endpoint");
    assert_non_null(strstr(r->body, "\"details\":[]"));
    net_reply_free(r);
    net_reply_free(NULL);
}

static void
test_status_map(void **state)
{
    assert_int_equal(net_status_for_rc(SHOPD_OK), 200);
    assert_int_equal(net_status_for_rc(SHOPD_NOTFOUND), 404);
    assert_int_equal(net_status_for_rc(SHOPD_CONFLICT), 409);
    assert_int_equal(net_status_for_rc(SHOPD_INVALID), 422);
    assert_int_equal(net_status_for_rc(SHOPD_FORBIDDEN), 403);
    assert_int_equal(net_status_for_rc(SHOPD_BUSY), 503);
    assert_int_equal(net_status_for_rc(SHOPD_UNAVAILABLE), 503);
    assert_int_equal(net_status_for_rc(SHOPD_ERR), 500);
    assert_string_equal(net_reason(431), "Request Header Fields Too Large");
    assert_string_equal(net_reason(413), "Content Too Large");
}

/* PostgreSQL's spacing goes; whitespace, quotes and backslashes inside strings stay. */
static void
test_json_compact(void **state)
{
    (void)state;
    const char in[] =
        "{\"id\" : 1, \"name\" : \"a b\\\" : c\\\\\", \"v\" : [{\"x\" : 1}, \n {\"x\" : 2}]}";
    const char want[] = "{\"id\":1,\"name\":\"a b\\\" : c\\\\\",\"v\":[{\"x\":1},{\"x\":2}]}";
    char out[sizeof(in)];
    size_t n = net_json_compact(out, in, sizeof(in) - 1);
    out[n] = '\0';
    assert_string_equal(out, want);
    /* In place, as api_raw_json may use it. */
    char buf[sizeof(in)];
    memcpy(buf, in, sizeof(in));
    n = net_json_compact(buf, buf, sizeof(in) - 1);
    buf[n] = '\0';
    assert_string_equal(buf, want);
    json_t *doc = json_loads(out, 0, NULL);
    assert_non_null(doc);
    assert_string_equal(json_string_value(json_object_get(doc, "name")), "a b\" : c\\");
    json_decref(doc);
}

static void
test_accepts_gzip(void **state)
{
    (void)state;
    assert_true(net_accepts_gzip("gzip"));
    assert_true(net_accepts_gzip("br, gzip, deflate"));
    assert_true(net_accepts_gzip("deflate, GZIP;q=0.5"));
    assert_true(net_accepts_gzip("x-gzip"));
    assert_true(net_accepts_gzip("*"));
    assert_true(net_accepts_gzip("gzip;q=0.001"));
    assert_false(net_accepts_gzip(NULL));
    assert_false(net_accepts_gzip(""));
    assert_false(net_accepts_gzip("identity"));
    assert_false(net_accepts_gzip("br, deflate"));
    assert_false(net_accepts_gzip("gzip;q=0"));
    assert_false(net_accepts_gzip("gzip; q=0.000, br"));
    assert_false(net_accepts_gzip("gzip;q=0, *")); /* the explicit refusal wins */
    assert_false(net_accepts_gzip("*;q=0"));
    assert_false(net_accepts_gzip("gzipped"));
}

/* A borrowed body is released once, whether it was sent or not. */
static int released;
static void
count_release(const void *body, size_t len, void *ud)
{
    assert_string_equal(body, "page");
    assert_int_equal(len, 4);
    assert_ptr_equal(ud, &released);
    released++;
}

static void
test_borrowed_body(void **state)
{
    (void)state;
    static const char page[] = "page";
    net_reply_t *r = net_reply_new(200);
    net_reply_borrow_body(r, page, 4, count_release, &released);
    net_reply_t *c = net_reply_copy(r); /* a copy owns its bytes */
    net_reply_free(r);
    assert_int_equal(released, 1);
    assert_string_equal(c->body, "page");
    net_reply_free(c);
    assert_int_equal(released, 1);
    r = net_reply_new(200);
    net_reply_borrow_body(r, page, 4, count_release, &released);
    net_reply_set_body(r, "x", 1); /* replaced: released too */
    assert_int_equal(released, 2);
    net_reply_free(r);
    assert_int_equal(released, 2);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_error_body),    cmocka_unit_test(test_json_compact),
        cmocka_unit_test(test_accepts_gzip),  cmocka_unit_test(test_borrowed_body),
        cmocka_unit_test(test_reply_helpers), cmocka_unit_test(test_status_map),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
