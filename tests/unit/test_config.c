/* Configuration: defaults, environment, flags overriding the environment, errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "shopd/config.h"

static void
clear_env(void)
{
    unsetenv("SHOPD_LISTEN");
    unsetenv("SHOPD_WORKERS");
    unsetenv("SHOPD_MAX_BODY");
    unsetenv("SHOPD_MIGRATE");
    unsetenv("SHOPD_REDIS_URL");
}

static void
test_defaults(void **state)
{
    clear_env();
    cfg_t c;
    char err[256];
    char *argv[] = {"shopd"};
    assert_int_equal(cfg_load(&c, 1, argv, 1, err, sizeof(err)), 0);
    assert_string_equal(c.listen_host, "127.0.0.1");
    assert_int_equal(c.listen_port, 8080);
    assert_true(c.io_threads >= 1);
    assert_true(c.workers >= 1);
    assert_int_equal(c.db_pool_size, c.workers + c.blocking_threads + 2);
    assert_true(c.blocking_threads >= 1);
    assert_int_equal(c.read_batch, 1);
    assert_int_equal(c.store_workers, c.workers > 1 ? c.workers - 1 : 1);
    assert_int_equal(c.blocking_nice, 10);
    assert_int_equal(c.max_body, 1048576);
    assert_true(c.migrate);
    cfg_free(&c);
}

static void
test_env_and_flags(void **state)
{
    clear_env();
    setenv("SHOPD_LISTEN", "0.0.0.0:9000", 1);
    setenv("SHOPD_WORKERS", "3", 1);
    setenv("SHOPD_MIGRATE", "false", 1);
    cfg_t c;
    char err[256];
    char *argv[] = {"shopd", "serve", "--workers", "5", "--max-body=2048", "--no-access-log"};
    assert_int_equal(cfg_load(&c, 6, argv, 2, err, sizeof(err)), 0);
    assert_string_equal(c.listen_host, "0.0.0.0");
    assert_int_equal(c.listen_port, 9000);
    assert_int_equal(c.workers, 5); /* the flag wins over the environment */
    assert_int_equal(c.max_body, 2048);
    assert_false(c.migrate);
    assert_false(c.access_log);
    cfg_free(&c);
    clear_env();
}

static void
expect_error(int argc, char **argv, const char *needle)
{
    cfg_t c;
    char err[256] = "";
    assert_int_equal(cfg_load(&c, argc, argv, 1, err, sizeof(err)), -1);
    if (strstr(err, needle) == NULL)
        fail_msg("error '%s' lacks '%s'", err, needle);
    assert_null(strchr(err, '\n'));
    cfg_free(&c);
}

static void
test_errors(void **state)
{
    clear_env();
    char *a1[] = {"shopd", "--workers", "abc"};
    expect_error(3, a1, "not an integer");
    char *a2[] = {"shopd", "--workers=-1"};
    expect_error(2, a2, "out of range");
    char *a3[] = {"shopd", "--bogus", "1"};
    expect_error(3, a3, "unknown flag");
    char *a4[] = {"shopd", "--listen", "nohostport"};
    expect_error(3, a4, "listen address");
    char *a5[] = {"shopd", "--max-body"};
    expect_error(2, a5, "needs a value");
    char *a6[] = {"shopd", "--migrate=maybe"};
    expect_error(2, a6, "not a boolean");
    char *a7[] = {"shopd", "--redis-url", "http://x"};
    expect_error(3, a7, "redis://");
    setenv("SHOPD_WORKERS", "lots", 1);
    char *a8[] = {"shopd"};
    expect_error(1, a8, "SHOPD_WORKERS");
    clear_env();
    unsetenv("SHOPD_WORKERS");
}

static void
test_listen_parse(void **state)
{
    char h[64];
    int p;
    assert_int_equal(cfg_parse_listen("[::1]:8080", h, sizeof(h), &p), 0);
    assert_string_equal(h, "::1");
    assert_int_equal(p, 8080);
    assert_int_equal(cfg_parse_listen("localhost:0", h, sizeof(h), &p), 0);
    assert_int_equal(cfg_parse_listen(":80", h, sizeof(h), &p), -1);
    assert_int_equal(cfg_parse_listen("a:70000", h, sizeof(h), &p), -1);
    assert_int_equal(cfg_parse_listen("a:", h, sizeof(h), &p), -1);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_env_and_flags),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_listen_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
