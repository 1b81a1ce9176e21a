/*
 * Results mapped once: every shopd_rc_t has its HTTP status in the one table
 * (net_status_for_rc), the constraint table knows the schema's named
 * constraints, and no file in src/modules names an HTTP status itself (the
 * edge does): a source scan, so a new handler cannot slip one in.
 */
#include <dirent.h>
#include <regex.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "shopd/api.h"

static void
test_status_table(void **state)
{
    static const struct {
        shopd_rc_t rc;
        int status;
    } want[] = {
        {SHOPD_NOT_MODIFIED, 304},
        {SHOPD_NO_CONTENT, 204},
        {SHOPD_ACCEPTED, 202},
        {SHOPD_CREATED, 201},
        {SHOPD_OK, 200},
        {SHOPD_ERR, 500},
        {SHOPD_AGAIN, 503},
        {SHOPD_NOTFOUND, 404},
        {SHOPD_BUSY, 503},
        {SHOPD_CONFLICT, 409},
        {SHOPD_INVALID, 422},
        {SHOPD_FORBIDDEN, 403},
        {SHOPD_UNAVAILABLE, 503},
        {SHOPD_UNAUTHENTICATED, 401},
        {SHOPD_BAD_REQUEST, 400},
        {SHOPD_RATE_LIMITED, 429},
        {SHOPD_UNSUPPORTED, 415},
        {SHOPD_NOT_ALLOWED, 405},
        {SHOPD_PAYMENT_FAILED, 402},
        {SHOPD_TOO_LARGE, 413},
    };
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        assert_int_equal(net_status_for_rc(want[i].rc), want[i].status);
        assert_string_not_equal(shopd_rc_name(want[i].rc), "unknown");
        net_reply_t *r = want[i].rc < 0 ? api_fail(want[i].rc, "x", "y") : api_empty(want[i].rc);
        assert_int_equal(r->status, want[i].status);
        assert_true(api_reply_ok(r) == (want[i].rc >= 0));
        net_reply_free(r);
    }
}

static void
test_constraint_table(void **state)
{
    assert_string_equal(api_constraint_code("stores_slug_key"), "slug_taken");
    assert_string_equal(api_constraint_code("stores_domain_key"), "domain_taken");
    assert_string_equal(api_constraint_code("users_store_email_uq"), "email_taken");
    assert_string_equal(api_constraint_code("product_variants_store_id_sku_key"), "sku_taken");
    assert_null(api_constraint_code("no_such_constraint"));
    assert_null(api_constraint_code(NULL));
}

/* Scans one file for reply constructors given a number: the shapes that wrote
 * statuses before the results were mapped at the edge. */
static int
scan(const char *path, regex_t *re)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char line[4096];
    int bad = 0, no = 0;
    while (fgets(line, sizeof(line), f)) {
        no++;
        if (regexec(re, line, 0, NULL, 0) == 0) {
            fprintf(stderr, "%s:%d names an HTTP status: %s", path, no, line);
            bad++;
        }
    }
    fclose(f);
    return bad;
}

static int
scan_dir(const char *dir, regex_t *re)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    int bad = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char p[1024];
        snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
        size_t n = strlen(e->d_name);
        if (e->d_type == DT_DIR)
            bad += scan_dir(p, re);
        else if (n > 2 && (!strcmp(e->d_name + n - 2, ".c") || !strcmp(e->d_name + n - 2, ".h")))
            bad += scan(p, re);
    }
    closedir(d);
    return bad;
}

static void
test_no_status_in_modules(void **state)
{
    regex_t re;
    assert_int_equal(
        regcomp(&re,
                "(net_reply_error(_field)?|net_reply_new|api_json|api_raw_json|cat_row_json)"
                "\\( *[1-5][0-9][0-9]|->status *[!=<>]=? *[1-5][0-9][0-9]",
                REG_EXTENDED | REG_NOSUB),
        0);
    assert_int_equal(scan_dir(SHOPD_SOURCE_DIR "/src/modules", &re), 0);
    regfree(&re);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status_table),
        cmocka_unit_test(test_constraint_table),
        cmocka_unit_test(test_no_status_in_modules),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
