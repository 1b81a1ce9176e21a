/*
 * The pure parts of the jobs module (src/modules/jobs/): the webhook
 * signature against a vector computed with `openssl dgst -sha256 -hmac`, the
 * retry schedule and its jitter bounds, and MIME header encoding.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "shopd/jobs.h"

static void
test_signature(void **state)
{
    (void)state;
    char out[JOBS_SIG_MAX];
    /* echo -n '1700000000.{"a":1}' | openssl dgst -sha256 -hmac whsec_test */
    jobs_sign("whsec_test", 1700000000LL, "{\"a\":1}", 7, out);
    assert_string_equal(
        out, "t=1700000000,v1=38877139021993b830af32feea6e18a8da83eb2f6e49ee50bd9e4cf4ca4d3789");
    jobs_sign("whsec_tesT", 1700000000LL, "{\"a\":1}", 7, out);
    assert_null(strstr(out, "38877139"));
}

static void
test_schedule(void **state)
{
    (void)state;
    assert_true(jobs_schedule_valid("30"));
    assert_true(jobs_schedule_valid("1,1"));
    assert_false(jobs_schedule_valid(""));
    assert_false(jobs_schedule_valid(NULL));
    assert_false(jobs_schedule_valid("1,,2"));
    assert_false(jobs_schedule_valid("1,"));
    assert_false(jobs_schedule_valid("0"));
    assert_false(jobs_schedule_valid("604801"));
    assert_false(jobs_schedule_valid("5 ,6"));
    assert_false(jobs_schedule_valid("1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,"
                                     "23,24,25,26,27,28,29,30,31,32,33"));
    /* attempt n waits schedule[n-1] seconds, +-20 % */
    assert_int_equal(jobs_backoff_ms("10,60", 1, 0.5), 10000);
    assert_int_equal(jobs_backoff_ms("10,60", 2, 0.0), 48000);
    assert_true(jobs_backoff_ms("10,60", 2, 0.9999) <= 72000);
    assert_true(jobs_backoff_ms("10,60", 2, 0.9999) > 71000);
    assert_int_equal(jobs_backoff_ms("10,60", 3, 0.5), -1); /* a dead letter */
    assert_int_equal(jobs_backoff_ms("10,60", 0, 0.5), -1);
    assert_int_equal(jobs_backoff_ms("x", 1, 0.5), -1);
}

static void
test_mime_header(void **state)
{
    (void)state;
    char out[256];
    jobs_mime_header("Your order #1001 at Acme", out, sizeof(out));
    assert_string_equal(out, "Your order #1001 at Acme");
    jobs_mime_header("a\r\nBcc: evil@example.com", out, sizeof(out));
    assert_null(strchr(out, '\r'));
    assert_null(strchr(out, '\n'));
    jobs_mime_header("Bäckerei", out, sizeof(out));
    assert_string_equal(out, "=?UTF-8?B?QsOkY2tlcmVp?=");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_signature),
        cmocka_unit_test(test_schedule),
        cmocka_unit_test(test_mime_header),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
