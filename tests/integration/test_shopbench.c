/*
 * shopbench smoke test: the harness works end to end against the real server
 * (seed a few stores, run `store` and `tenants` for a moment). It asserts no
 * errors and a non-zero request count, never a speed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "harness.h"

static void
test_smoke(void **state)
{
    const char *bin = th_env("SHOPBENCH_BIN"); /* required: a missing one is a failure */
    th_server_t *srv = th_start(NULL);
    char slug[64], cmd[1024], json[128];
    snprintf(slug, sizeof(slug), "%s", th_slug("bench"));
    th_create_store(srv, slug, NULL);
    snprintf(json, sizeof(json), "/tmp/shopbench-smoke-%d.json", (int)getpid());

    snprintf(cmd, sizeof(cmd), "%s -t 1 -c 4 -d 1 -w 0 --tenant %s --json %s %s store", bin, slug,
             json, srv->url);
    th_run(cmd);
    json_error_t e;
    json_t *doc = json_load_file(json, 0, &e);
    assert_non_null(doc);
    /* results.requests is a count > 0 and results.failures is 0 (exit 0 said so too). */
    json_t *res = json_object_get(doc, "results");
    json_t *requests = json_object_get(res, "requests"),
           *failures = json_object_get(res, "failures");
    assert_true(json_is_integer(requests));
    assert_true(json_is_integer(failures));
    assert_true(json_integer_value(requests) > 0);
    assert_int_equal(json_integer_value(failures), 0);
    json_decref(doc);
    unlink(json);

    snprintf(cmd, sizeof(cmd), "SHOPD_PLATFORM_TOKEN=%s %s seed -k 3 %s", TH_PLATFORM_TOKEN, bin,
             srv->url);
    th_run(cmd);
    snprintf(cmd, sizeof(cmd), "%s -t 1 -c 4 -d 1 -w 0 -k 3 %s tenants", bin, srv->url);
    th_run(cmd);
    assert_int_equal(th_stop(srv), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_smoke)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
