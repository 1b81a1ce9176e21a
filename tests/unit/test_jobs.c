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

static char *
render(const char *tpl, const char *json, bool html)
{
    json_t *d = json_loads(json, 0, NULL);
    assert_non_null(d);
    char *out = jobs_tpl_render(tpl, d, html);
    json_decref(d);
    return out;
}

static void
expect(const char *tpl, const char *json, bool html, const char *want)
{
    char *got = render(tpl, json, html);
    assert_non_null(got);
    assert_string_equal(got, want);
    free(got);
}

static void
test_template(void **state)
{
    (void)state;
    expect("Hi {{name}}!", "{\"name\":\"Ada\"}", false, "Hi Ada!");
    expect("{{n}} x", "{\"n\":12}", false, "12 x");
    expect("[{{missing}}]", "{}", false, "[]");
    /* Escaping: HTML entities in the HTML part, control bytes in both. */
    expect("<b>{{v}}</b>", "{\"v\":\"<i>&\\\"'\"}", true, "<b>&lt;i&gt;&amp;&quot;&#39;</b>");
    expect("{{{v}}}", "{\"v\":\"<i>\"}", true, "<i>");
    expect("{{v}}", "{\"v\":\"a\\r\\nBcc: x\"}", false, "a  Bcc: x");
    expect("{{v}}", "{\"v\":\"<a>\"}", false, "<a>");
    /* Sections: arrays, objects, true values, inverted; names from outer contexts. */
    expect("{{#xs}}[{{v}}{{k}}]{{/xs}}", "{\"k\":\"!\",\"xs\":[{\"v\":1},{\"v\":2}]}", false,
           "[1!][2!]");
    expect("{{#o}}{{a}}{{/o}}", "{\"o\":{\"a\":\"x\"}}", false, "x");
    expect("{{#t}}yes{{/t}}{{^t}}no{{/t}}", "{\"t\":\"\"}", false, "no");
    expect("{{#t}}yes{{/t}}{{^t}}no{{/t}}", "{\"t\":0}", false, "no");
    expect("{{#t}}yes{{/t}}{{^t}}no{{/t}}", "{\"t\":[]}", false, "no");
    expect("{{#t}}yes{{/t}}{{^t}}no{{/t}}", "{\"t\":\"x\"}", false, "yes");
    expect("{{#a}}{{#a}}in{{/a}}{{/a}}", "{\"a\":true}", false, "in");
    expect("{{#xs}}{{.}},{{/xs}}", "{\"xs\":[\"a\",\"b\"]}", false, "a,b,");
    /* Standalone section lines leave no line behind. */
    expect("A\n{{#xs}}\n- {{v}}\n{{/xs}}\nB\n", "{\"xs\":[{\"v\":1},{\"v\":2}]}", false,
           "A\n- 1\n- 2\nB\n");
    expect("A\n  {{^xs}}  \nnone\n{{/xs}}\nB", "{}", false, "A\nnone\nB");
    /* Malformed templates are refused, not half-rendered. */
    assert_null(render("{{#a}}x", "{\"a\":true}", false));
    assert_null(render("x{{/a}}", "{}", false));
    assert_null(render("{{a", "{}", false));
    assert_null(render("{{{a}}", "{}", false));
    /* A value that looks like a tag stays text. */
    expect("{{v}}", "{\"v\":\"{{v}}\"}", false, "{{v}}");
}

/* Every embedded template renders: a subject line first in each .txt, and
 * each .html inside the layout. */
static void
test_embedded_templates(void **state)
{
    (void)state;
    static const char *const names[] = {"order_confirmation", "order_shipped",    "order_cancelled",
                                        "password_reset",     "webhook_disabled", NULL};
    const char *data = "{\"shop\":\"S\",\"number\":7,\"url\":\"https://x/r\",\"token\":\"t\","
                       "\"items\":[{\"quantity\":1,\"name\":\"N\",\"sku\":\"K\",\"line_total\":"
                       "\"1.00 EUR\"}],\"totals\":[{\"label\":\"Total\",\"amount\":\"1.00 EUR\"}],"
                       "\"tracking_number\":\"TN\",\"endpoint_url\":\"https://h\","
                       "\"endpoint_id\":3,\"content\":\"<p>c</p>\",\"subject\":\"s\"}";
    for (int i = 0; names[i]; i++) {
        char name[64];
        snprintf(name, sizeof(name), "%s.txt", names[i]);
        assert_non_null(jobs_template(name));
        char *t = render(jobs_template(name), data, false);
        assert_non_null(t);
        assert_int_equal(strncmp(t, "Subject: ", 9), 0);
        free(t);
        snprintf(name, sizeof(name), "%s.html", names[i]);
        assert_non_null(jobs_template(name));
        t = render(jobs_template(name), data, true);
        assert_non_null(t);
        free(t);
    }
    char *t = render(jobs_template("layout.html"), data, true);
    assert_non_null(strstr(t, "<p>c</p>"));
    free(t);
    assert_null(jobs_template("nope.txt"));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_signature),          cmocka_unit_test(test_schedule),
        cmocka_unit_test(test_mime_header),        cmocka_unit_test(test_template),
        cmocka_unit_test(test_embedded_templates),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
