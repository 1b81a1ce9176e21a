/*
 * test_analytics.c: the analytics module's pure part: reading a query's date
 * (analytics_date_parse) into days since 1970-01-01, which the range checks
 * and the statement rely on: real calendar days only, leap years right.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "shopd/analytics.h"

static void
test_dates(void **state)
{
    (void)state;
    long d = -1;
    assert_true(analytics_date_parse("1970-01-01", &d));
    assert_int_equal(d, 0);
    assert_true(analytics_date_parse("2026-12-02", &d));
    assert_int_equal(d, 20789);
    long a, b;
    assert_true(analytics_date_parse("2024-02-28", &a));
    assert_true(analytics_date_parse("2024-03-01", &b));
    assert_int_equal(b - a, 2); /* 2024 is a leap year */
    assert_true(analytics_date_parse("2023-02-28", &a));
    assert_true(analytics_date_parse("2023-03-01", &b));
    assert_int_equal(b - a, 1);
    assert_true(analytics_date_parse("2000-02-29", &a)); /* divisible by 400 */
    assert_true(analytics_date_parse("1900-01-01", &a));
    assert_true(analytics_date_parse("9999-12-31", &a));
}

static void
test_bad_dates(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",           "2026-1-01",   "2026-01-1",   "2026/01/01", "2026-01-01T00:00:00",
        "2026-00-10", "2026-13-01",  "2026-01-00",  "2026-01-32", "2026-02-29",
        "2100-02-29", "2026-04-31",  "1899-12-31",  "+026-01-01", "2026-0a-01",
        "20260101",   " 2026-01-01", "2026-01-01 ",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        long d = 7;
        if (analytics_date_parse(bad[i], &d))
            fail_msg("'%s' was read as a date", bad[i]);
        assert_int_equal(d, 7); /* untouched */
    }
    long d;
    assert_false(analytics_date_parse(NULL, &d));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dates),
        cmocka_unit_test(test_bad_dates),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
