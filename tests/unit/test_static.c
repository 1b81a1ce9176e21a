/* Static files, the pure parts (src/net/static.c): URL path -> file below the
 * root (decoding, traversal and dot files refused), Content-Type by extension,
 * If-None-Match against an ETag, and which mount owns a path. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <cmocka.h>

#include "shopd/net.h"

static int
path(const char *p, char *out)
{
    return net_static_path(p, strlen(p), out, 256);
}

static void
test_path_ok(void **state)
{
    char out[256];
    assert_int_equal(path("", out), 0);
    assert_string_equal(out, "");
    assert_int_equal(path("/", out), 0);
    assert_string_equal(out, "");
    assert_int_equal(path("/a/b.js", out), 0);
    assert_string_equal(out, "a/b.js");
    assert_int_equal(path("//a///b//", out), 0);
    assert_string_equal(out, "a/b");
    assert_int_equal(path("/my%20file%2ejs", out), 0);
    assert_string_equal(out, "my file.js");
    assert_int_equal(path("/a..b/c...", out), 0); /* dots inside a name are a name */
    assert_string_equal(out, "a..b/c...");
    assert_int_equal(path("/caf%C3%A9", out), 0);
    assert_string_equal(out, "caf\xc3\xa9");
}

static void
test_path_refused(void **state)
{
    static const char *const bad[] = {
        "/..",     "/../x", "/a/../b", "/a/..",   "/.",     "/./a",   "/%2e%2e/x", "/%2E%2E",
        "/.%2e/x", "/%2e",  "/a%2fb",  "/a%2F..", "/..%2f", "/a%5cb", "/a%00b",    "/%00",
        "/a%0ab",  "/a%7f", "/%",      "/%2",     "/%zz",   "/a\x01", "/x%2",
    };
    char out[256];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (path(bad[i], out) != -1)
            fail_msg("accepted %s", bad[i]);
    }
    assert_int_equal(path("/.git/config", out), -2);
    assert_int_equal(path("/a/.env", out), -2);
    assert_int_equal(path("/%2eenv", out), -2);
    /* Too long for the buffer: refused, never truncated into another name. */
    char small[4];
    assert_int_equal(net_static_path("/abcd", 5, small, sizeof(small)), -1);
    assert_int_equal(net_static_path("/abc", 4, small, sizeof(small)), 0);
    /* Bytes past len are not read. */
    assert_int_equal(net_static_path("/ok/../x", 3, out, 256), 0);
    assert_string_equal(out, "ok");
}

static void
test_types(void **state)
{
    assert_string_equal(net_static_type("index.html"), "text/html; charset=utf-8");
    assert_string_equal(net_static_type("a/b/app.JS"), "text/javascript; charset=utf-8");
    assert_string_equal(net_static_type("x.css"), "text/css; charset=utf-8");
    assert_string_equal(net_static_type("openapi.yaml"), "application/yaml; charset=utf-8");
    assert_string_equal(net_static_type("p.webp"), "image/webp");
    assert_string_equal(net_static_type("i.svg"), "image/svg+xml");
    assert_string_equal(net_static_type("f.woff2"), "font/woff2");
    assert_string_equal(net_static_type("noext"), "application/octet-stream");
    assert_string_equal(net_static_type(".js"), "application/octet-stream");
    assert_string_equal(net_static_type("dir.js/file"), "application/octet-stream");
}

static void
test_etag(void **state)
{
    const char *e = "\"1f-abc-9\"";
    assert_true(net_static_etag_match("\"1f-abc-9\"", e));
    assert_true(net_static_etag_match("W/\"1f-abc-9\"", e));
    assert_true(net_static_etag_match("\"x\", \"1f-abc-9\"", e));
    assert_true(net_static_etag_match("\"x\",W/\"1f-abc-9\" ", e));
    assert_true(net_static_etag_match("*", e));
    assert_false(net_static_etag_match(NULL, e));
    assert_false(net_static_etag_match("", e));
    assert_false(net_static_etag_match("\"1f-abc-\"", e));
    assert_false(net_static_etag_match("\"1f-abc-9", e));
    assert_false(net_static_etag_match("1f-abc-9", e));
}

static void
test_find(void **state)
{
    const net_static_mount_t m[] = {
        {.prefix = "/docs", .root = "/nonexistent/a"},
        {.prefix = "/docs/vendor", .root = "/nonexistent/b"},
        {.prefix = "/openapi.yaml", .root = "/nonexistent/c", .file = true},
    };
    net_static_t *s = net_static_new(m, 3, 1);
    assert_non_null(s);
    const net_static_mount_t *f = net_static_find(s, "/docs/vendor/x.js", 17);
    assert_non_null(f);
    assert_string_equal(f->prefix, "/docs/vendor"); /* the longest prefix wins */
    f = net_static_find(s, "/docs/x", 7);
    assert_string_equal(f->prefix, "/docs");
    assert_string_equal(net_static_find(s, "/docs", 5)->prefix, "/docs");
    assert_null(net_static_find(s, "/docsx", 6));
    assert_null(net_static_find(s, "/doc", 4));
    assert_non_null(net_static_find(s, "/openapi.yaml", 13));
    assert_null(net_static_find(s, "/openapi.yaml/x", 15)); /* a file has nothing below it */
    assert_null(net_static_find(NULL, "/docs", 5));
    net_static_free(s);
    net_static_free(NULL);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_path_ok), cmocka_unit_test(test_path_refused),
        cmocka_unit_test(test_types),   cmocka_unit_test(test_etag),
        cmocka_unit_test(test_find),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
