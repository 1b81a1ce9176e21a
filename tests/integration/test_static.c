/*
 * Static files (src/net/static.c through the pages module's mounts), against
 * the real binary: a tree made here in a temporary folder is served as the
 * pages (SHOPD_WEB_DIR, SHOPD_DOCS_DIR, SHOPD_VENDOR_DIR point at it).
 * Content-Type by extension; strong ETag, If-None-Match -> 304 (also W/ and
 * *), a rewrite changes the ETag; HEAD has GET's headers and no body; folders
 * redirect to their '/' and serve index.html; Cache-Control and the
 * Content-Security-Policy per mount; path traversal (raw "..", encoded dots
 * and slashes, NUL, symlinks out of the root) never reaches a file outside the
 * root; a missing root answers 404 and the API still starts.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "harness.h"

static th_server_t *srv;
static char dir[256];

#define SECRET "top-secret-outside-the-root"

static void
put(const char *rel, const char *text)
{
    char p[512];
    snprintf(p, sizeof(p), "%s/%s", dir, rel);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void
mk(const char *rel)
{
    char p[512];
    snprintf(p, sizeof(p), "%s/%s", dir, rel);
    assert_int_equal(mkdir(p, 0755), 0);
}

static int
setup(void **state)
{
    snprintf(dir, sizeof(dir), "/tmp/shopd-static.XXXXXX");
    assert_non_null(mkdtemp(dir));
    mk("web");
    mk("web/admin");
    mk("web/admin/sub");
    mk("web/docs");
    mk("docs");
    mk("vendor");
    mk("vendor/swagger-ui-dist");
    put("secret.txt", SECRET);
    put("web/admin/index.html", "<!doctype html><title>admin</title>");
    put("web/admin/app.js", "console.log('app');");
    put("web/admin/style.css", "body{color:red}");
    put("web/admin/pic.PNG", "\x89PNG fake");
    put("web/admin/data.bin", "raw");
    put("web/admin/.hidden", "hidden");
    put("web/admin/sub/index.html", "<p>sub</p>");
    put("web/docs/index.html", "<p>docs</p>");
    put("docs/openapi.yaml", "openapi: 3.1.0\n");
    put("vendor/swagger-ui-dist/swagger-ui.js", "/* swagger */");
    char from[512], to[512];
    snprintf(to, sizeof(to), "%s/secret.txt", dir);
    snprintf(from, sizeof(from), "%s/web/admin/escape", dir);
    assert_int_equal(symlink(to, from), 0); /* absolute, out of the root */
    snprintf(from, sizeof(from), "%s/web/admin/up", dir);
    assert_int_equal(symlink("../../secret.txt", from), 0); /* relative, out */
    snprintf(from, sizeof(from), "%s/web/admin/inside.js", dir);
    assert_int_equal(symlink("app.js", from), 0); /* stays inside: served */

    char web[300], docs[300], vendor[300];
    snprintf(web, sizeof(web), "SHOPD_WEB_DIR=%s/web", dir);
    snprintf(docs, sizeof(docs), "SHOPD_DOCS_DIR=%s/docs", dir);
    snprintf(vendor, sizeof(vendor), "SHOPD_VENDOR_DIR=%s/vendor", dir);
    const char *const env[] = {web, docs, vendor, NULL};
    srv = th_start(env);
    return 0;
}

static int
teardown(void **state)
{
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    return 0;
}

/* GET path; asserts the status and returns the answer (caller frees). */
static th_resp_t
get(const char *path, long status, const char *const *headers)
{
    th_resp_t r = th_req(srv, "GET", path, headers, NULL);
    if (r.status != status)
        fprintf(stderr, "GET %s: %ld %.*s\n", path, r.status, (int)r.len, r.body ? r.body : "");
    assert_int_equal(r.status, status);
    return r;
}

static void
test_types(void **state)
{
    static const struct {
        const char *path, *type, *body;
    } cases[] = {
        {"/admin/index.html", "text/html; charset=utf-8", "<!doctype html><title>admin</title>"},
        {"/admin/app.js", "text/javascript; charset=utf-8", "console.log('app');"},
        {"/admin/style.css", "text/css; charset=utf-8", "body{color:red}"},
        {"/admin/pic.PNG", "image/png", "\x89PNG fake"},
        {"/admin/data.bin", "application/octet-stream", "raw"},
        {"/openapi.yaml", "application/yaml; charset=utf-8", "openapi: 3.1.0\n"},
        {"/docs/vendor/swagger-ui.js", "text/javascript; charset=utf-8", "/* swagger */"},
        {"/admin/inside.js", "text/javascript; charset=utf-8", "console.log('app');"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        th_resp_t r = get(cases[i].path, 200, NULL);
        assert_string_equal(th_header(&r, "Content-Type"), cases[i].type);
        assert_int_equal(r.len, strlen(cases[i].body));
        assert_memory_equal(r.body, cases[i].body, r.len);
        char len[32];
        snprintf(len, sizeof(len), "%zu", strlen(cases[i].body));
        assert_string_equal(th_header(&r, "Content-Length"), len);
        assert_string_equal(th_header(&r, "X-Content-Type-Options"), "nosniff");
        assert_non_null(th_header(&r, "Last-Modified"));
        th_resp_free(&r);
    }
}

static void
test_etag_304(void **state)
{
    th_resp_t r = get("/admin/app.js", 200, NULL);
    char etag[128];
    snprintf(etag, sizeof(etag), "%s", th_header(&r, "ETag"));
    assert_true(etag[0] == '"' && etag[strlen(etag) - 1] == '"'); /* strong: no W/ */
    th_resp_free(&r);

    char h[200];
    snprintf(h, sizeof(h), "If-None-Match: %s", etag);
    const char *const inm[] = {h, NULL};
    r = get("/admin/app.js", 304, inm);
    assert_int_equal(r.len, 0);
    assert_string_equal(th_header(&r, "ETag"), etag);
    assert_string_equal(th_header(&r, "Cache-Control"), "no-cache");
    th_resp_free(&r);

    snprintf(h, sizeof(h), "If-None-Match: \"nope\", W/%s", etag);
    r = get("/admin/app.js", 304, inm);
    th_resp_free(&r);
    snprintf(h, sizeof(h), "If-None-Match: *");
    r = get("/admin/app.js", 304, inm);
    th_resp_free(&r);
    snprintf(h, sizeof(h), "If-None-Match: \"other\"");
    r = get("/admin/app.js", 200, inm);
    th_resp_free(&r);

    /* A rewrite (same size, new content) is a new ETag, and the old one gets the
     * new body. */
    usleep(20000);
    put("web/admin/app.js", "console.log('APP');");
    snprintf(h, sizeof(h), "If-None-Match: %s", etag);
    r = get("/admin/app.js", 200, inm);
    assert_memory_equal(r.body, "console.log('APP');", r.len);
    assert_string_not_equal(th_header(&r, "ETag"), etag);
    th_resp_free(&r);
}

static void
test_head(void **state)
{
    th_resp_t g = get("/admin/style.css", 200, NULL);
    char etag[128];
    snprintf(etag, sizeof(etag), "%s", th_header(&g, "ETag"));
    th_resp_free(&g);
    char out[4096];
    static const char req[] =
        "HEAD /admin/style.css HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    size_t n = th_raw(srv, req, sizeof(req) - 1, out, sizeof(out), 3000);
    assert_true(n > 0);
    assert_non_null(strstr(out, "HTTP/1.1 200 OK\r\n"));
    assert_non_null(strstr(out, "Content-Length: 15\r\n"));
    assert_non_null(strstr(out, "Content-Type: text/css; charset=utf-8\r\n"));
    assert_non_null(strstr(out, etag));
    /* Nothing after the header block. */
    const char *end = strstr(out, "\r\n\r\n");
    assert_non_null(end);
    assert_int_equal((size_t)(end + 4 - out), n);
}

static void
test_folders(void **state)
{
    th_resp_t r = get("/admin", 301, NULL);
    assert_string_equal(th_header(&r, "Location"), "/admin/");
    th_resp_free(&r);
    r = get("/admin/sub?x=1", 301, NULL);
    assert_string_equal(th_header(&r, "Location"), "/admin/sub/?x=1");
    th_resp_free(&r);
    r = get("/admin/", 200, NULL);
    assert_memory_equal(r.body, "<!doctype html><title>admin</title>", r.len);
    assert_string_equal(th_header(&r, "Content-Type"), "text/html; charset=utf-8");
    th_resp_free(&r);
    r = get("/admin/sub/", 200, NULL);
    assert_memory_equal(r.body, "<p>sub</p>", r.len);
    th_resp_free(&r);
    r = get("/docs/", 200, NULL);
    assert_memory_equal(r.body, "<p>docs</p>", r.len);
    th_resp_free(&r);
    r = get("/admin/missing.js", 404, NULL);
    assert_string_equal(th_error_code(&r), "not_found");
    th_resp_free(&r);
    /* A prefix owns its folder, not its look-alikes. */
    r = get("/administrator", 404, NULL);
    th_resp_free(&r);
    r = get("/openapi.yaml/x", 404, NULL);
    th_resp_free(&r);
}

static void
test_headers_per_mount(void **state)
{
    th_resp_t r = get("/admin/", 200, NULL);
    const char *csp = th_header(&r, "Content-Security-Policy");
    assert_non_null(csp);
    assert_non_null(strstr(csp, "script-src 'self'"));
    assert_non_null(strstr(csp, "frame-ancestors 'none'"));
    assert_null(strstr(csp, "unsafe-inline"));
    assert_null(strstr(csp, "unsafe-eval"));
    assert_string_equal(th_header(&r, "X-Frame-Options"), "DENY");
    assert_string_equal(th_header(&r, "Cache-Control"), "no-cache");
    /* One policy, not the edge's default beside the page's. */
    const char *first = strcasestr(r.headers, "Content-Security-Policy:");
    assert_null(strcasestr(first + 1, "Content-Security-Policy:"));
    th_resp_free(&r);

    r = get("/docs/vendor/swagger-ui.js", 200, NULL);
    assert_string_equal(th_header(&r, "Cache-Control"), "public, max-age=86400");
    th_resp_free(&r);

    /* The document is data, not a page: the API's policy. */
    r = get("/openapi.yaml", 200, NULL);
    assert_string_equal(th_header(&r, "Content-Security-Policy"),
                        "default-src 'none'; frame-ancestors 'none'");
    assert_string_equal(th_header(&r, "Cache-Control"), "no-cache");
    th_resp_free(&r);

    /* The API keeps its own. */
    r = get("/healthz", 200, NULL);
    assert_string_equal(th_header(&r, "Content-Security-Policy"),
                        "default-src 'none'; frame-ancestors 'none'");
    th_resp_free(&r);

    r = th_req(srv, "POST", "/admin/app.js", NULL, "{}");
    assert_int_equal(r.status, 405);
    assert_string_equal(th_header(&r, "Allow"), "GET, HEAD");
    th_resp_free(&r);
}

/* Sends "GET <path>" raw (no client normalises it) and returns the status. */
static int
raw_get(const char *path, char *out, size_t cap)
{
    char req[1024];
    int n =
        snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", path);
    size_t got = th_raw(srv, req, (size_t)n, out, cap, 3000);
    assert_true(got > 12);
    return atoi(out + 9);
}

static void
test_traversal(void **state)
{
    static const struct {
        const char *path;
        int status;
    } cases[] = {
        {"/admin/../secret.txt", 400},
        {"/admin/../../secret.txt", 400},
        {"/admin/sub/../../secret.txt", 400},
        {"/admin/%2e%2e/secret.txt", 400},
        {"/admin/%2E%2e/%2e%2e/secret.txt", 400},
        {"/admin/..%2fsecret.txt", 400},
        {"/admin/%2e%2e%2f%2e%2e%2fsecret.txt", 400},
        {"/admin/..%5csecret.txt", 400},
        {"/admin/./app.js", 400},
        {"/admin/app.js%00.html", 400},
        {"/admin/%00", 400},
        {"/admin/%zz", 400},
        {"/admin/%2", 400},
        {"/admin/escape", 404}, /* symlink to an absolute path out of the root */
        {"/admin/up", 404},     /* relative symlink out of the root */
        {"/admin/.hidden", 404},
        {"/admin/%2ehidden", 404},
    };
    char out[8192];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int st = raw_get(cases[i].path, out, sizeof(out));
        if (st != cases[i].status)
            fprintf(stderr, "%s: %s\n", cases[i].path, out);
        assert_int_equal(st, cases[i].status);
        assert_null(strstr(out, SECRET));
        assert_null(strstr(out, "hidden\n"));
    }
    /* Encoded ordinary bytes are fine: "app%2ejs" is app.js. */
    assert_int_equal(raw_get("/admin/app%2ejs", out, sizeof(out)), 200);
    assert_int_equal(raw_get("/admin//sub//", out, sizeof(out)), 200);
}

static void
test_missing_root(void **state)
{
    char web[300];
    snprintf(web, sizeof(web), "SHOPD_WEB_DIR=%s/web", dir);
    const char *const env[] = {web, "SHOPD_VENDOR_DIR=/nonexistent/shopd-vendor",
                               "SHOPD_DOCS_DIR=/nonexistent/shopd-docs", NULL};
    th_server_t *s = th_start(env);
    th_resp_t r = th_req(s, "GET", "/docs/vendor/swagger-ui.js", NULL, NULL);
    assert_int_equal(r.status, 404);
    th_resp_free(&r);
    r = th_req(s, "GET", "/openapi.yaml", NULL, NULL);
    assert_int_equal(r.status, 404);
    th_resp_free(&r);
    r = th_req(s, "GET", "/admin/app.js", NULL, NULL);
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
    assert_int_equal(th_stop(s), 0);

    const char *const off[] = {web, "SHOPD_PAGES=false", NULL};
    s = th_start(off);
    r = th_req(s, "GET", "/admin/app.js", NULL, NULL);
    assert_int_equal(r.status, 404);
    assert_string_equal(th_error_code(&r), "not_found");
    th_resp_free(&r);
    assert_int_equal(th_stop(s), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_types),
        cmocka_unit_test(test_etag_304),
        cmocka_unit_test(test_head),
        cmocka_unit_test(test_folders),
        cmocka_unit_test(test_headers_per_mount),
        cmocka_unit_test(test_traversal),
        cmocka_unit_test(test_missing_root),
        TH_STOP_TEST,
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
