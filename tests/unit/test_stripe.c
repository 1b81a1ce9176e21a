/*
 * test_stripe.c: the Stripe webhook signature check (pay_stripe_verify) and
 * the event parser, table by table as RELIABILITY.md 2.2 lists them. The
 * expected signatures are made by `openssl dgst -sha256 -hmac`, not by the
 * code under test.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "shopd/payment.h"

#define NOW 1733097600
static const char *const secrets[] = {"whsec_first_0123456789", "whsec_second_0123456789"};
static const char body[] = "{\"id\":\"evt_1\",\"type\":\"payment_intent.succeeded\",\"created\":"
                           "1733097600,\"data\":{\"object\":{\"id\":\"pi_1\",\"status\":"
                           "\"succeeded\",\"metadata\":{\"store_id\":\"7\",\"order_id\":\"42\"}}}}";

/* The hex HMAC-SHA256 of "<t>.<payload>" under secret, by openssl(1). */
static void
openssl_sig(const char *secret, long t, const char *payload, char out[65])
{
    char path[] = "/tmp/stripe-sig-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fprintf(f, "%ld.%s", t, payload);
    fclose(f);
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "openssl dgst -sha256 -hmac '%s' -r < %s", secret, path);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    char line[256] = "";
    assert_non_null(fgets(line, sizeof(line), p));
    pclose(p);
    unlink(path);
    memcpy(out, line, 64);
    out[64] = '\0';
}

static shopd_rc_t
verify(const char *header, const char *payload)
{
    return pay_stripe_verify(header, payload, strlen(payload), secrets, 2, NOW, 300);
}

static void
test_valid_and_rotation(void **state)
{
    (void)state;
    char sig[65], sig2[65], h[400];
    openssl_sig(secrets[0], NOW, body, sig);
    snprintf(h, sizeof(h), "t=%d,v1=%s", NOW, sig);
    assert_int_equal(verify(h, body), SHOPD_OK);
    /* Spaces after commas, a v0 beside it, upper-case hex: still Stripe's header. */
    for (char *p = sig; *p; p++)
        if (*p >= 'a' && *p <= 'f')
            *p = (char)(*p - 'a' + 'A');
    snprintf(h, sizeof(h), "t=%d, v0=abc, v1=%s", NOW, sig);
    assert_int_equal(verify(h, body), SHOPD_OK);
    /* Two v1s of which only the second is valid (rotation on Stripe's side). */
    openssl_sig(secrets[1], NOW, body, sig2);
    snprintf(h, sizeof(h), "t=%d,v1=%064d,v1=%s", NOW, 0, sig2);
    assert_int_equal(verify(h, body), SHOPD_OK);
    /* Signed with the second configured secret (rotation on ours). */
    snprintf(h, sizeof(h), "t=%d,v1=%s", NOW, sig2);
    assert_int_equal(verify(h, body), SHOPD_OK);
    /* At the edge of the tolerance. */
    openssl_sig(secrets[0], NOW - 300, body, sig);
    snprintf(h, sizeof(h), "t=%d,v1=%s", NOW - 300, sig);
    assert_int_equal(verify(h, body), SHOPD_OK);
}

static void
test_refused(void **state)
{
    (void)state;
    char sig[65], h[400];
    openssl_sig(secrets[0], NOW, body, sig);
    /* One body byte flipped. */
    char changed[sizeof(body)];
    memcpy(changed, body, sizeof(body));
    changed[10] ^= 1;
    snprintf(h, sizeof(h), "t=%d,v1=%s", NOW, sig);
    assert_int_equal(verify(h, changed), SHOPD_FORBIDDEN);
    /* Another timestamp than the one signed. */
    snprintf(h, sizeof(h), "t=%d,v1=%s", NOW + 1, sig);
    assert_int_equal(verify(h, body), SHOPD_FORBIDDEN);
    /* Too old, too far ahead (properly signed for their t). */
    long ts[] = {NOW - 301, NOW + 301};
    for (int i = 0; i < 2; i++) {
        openssl_sig(secrets[0], ts[i], body, sig);
        snprintf(h, sizeof(h), "t=%ld,v1=%s", ts[i], sig);
        assert_int_equal(verify(h, body), SHOPD_FORBIDDEN);
    }
    /* Another secret. */
    openssl_sig("whsec_someone_else", NOW, body, sig);
    snprintf(h, sizeof(h), "t=%d,v1=%s", NOW, sig);
    assert_int_equal(verify(h, body), SHOPD_FORBIDDEN);
    /* Only v0; truncated or non-hex v1; no t; garbage; empty; NULL. */
    openssl_sig(secrets[0], NOW, body, sig);
    snprintf(h, sizeof(h), "t=%d,v0=%s", NOW, sig);
    assert_int_equal(verify(h, body), SHOPD_FORBIDDEN);
    snprintf(h, sizeof(h), "t=%d,v1=%.63s", NOW, sig);
    assert_int_equal(verify(h, body), SHOPD_FORBIDDEN);
    snprintf(h, sizeof(h), "t=%d,v1=%.63sg", NOW, sig);
    assert_int_equal(verify(h, body), SHOPD_FORBIDDEN);
    snprintf(h, sizeof(h), "v1=%s", sig);
    assert_int_equal(verify(h, body), SHOPD_FORBIDDEN);
    snprintf(h, sizeof(h), "t=-5,v1=%s", sig);
    assert_int_equal(verify(h, body), SHOPD_FORBIDDEN);
    assert_int_equal(verify("garbage", body), SHOPD_FORBIDDEN);
    assert_int_equal(verify(",,,=,t,v1", body), SHOPD_FORBIDDEN);
    assert_int_equal(verify("", body), SHOPD_FORBIDDEN);
    assert_int_equal(verify(NULL, body), SHOPD_FORBIDDEN);
    /* No secret configured: nothing is accepted. */
    snprintf(h, sizeof(h), "t=%d,v1=%s", NOW, sig);
    assert_int_equal(pay_stripe_verify(h, body, strlen(body), secrets, 0, NOW, 300),
                     SHOPD_FORBIDDEN);
}

static void
test_parse_event(void **state)
{
    (void)state;
    pay_event_t ev;
    assert_int_equal(pay_stripe_parse_event(body, strlen(body), &ev), SHOPD_OK);
    assert_string_equal(ev.id, "evt_1");
    assert_string_equal(ev.type, "payment_intent.succeeded");
    assert_string_equal(ev.ref, "pi_1");
    assert_int_equal(ev.status, PAY_SUCCEEDED);
    assert_int_equal(ev.store_id, 7);
    assert_int_equal(ev.order_id, 42);
    const char *failed =
        "{\"id\":\"evt_2\",\"type\":\"payment_intent.payment_failed\",\"data\":{\"object\":{\"id\":"
        "\"pi_2\",\"status\":\"requires_payment_method\",\"last_payment_error\":{\"code\":\"card_"
        "declined\",\"decline_code\":\"insufficient_funds\"},\"metadata\":{\"order_id\":\"x1\"}}}}";
    assert_int_equal(pay_stripe_parse_event(failed, strlen(failed), &ev), SHOPD_OK);
    assert_int_equal(ev.status, PAY_FAILED);
    assert_string_equal(ev.decline_code, "insufficient_funds");
    assert_int_equal(ev.order_id, 0); /* not a number: no order */
    const char *refunded = "{\"id\":\"evt_3\",\"type\":\"charge.refunded\",\"data\":{\"object\":{"
                           "\"payment_intent\":\"pi_3\",\"amount_refunded\":250}}}";
    assert_int_equal(pay_stripe_parse_event(refunded, strlen(refunded), &ev), SHOPD_OK);
    assert_string_equal(ev.ref, "pi_3");
    assert_int_equal(ev.amount_refunded, 250);
    const char *bad[] = {"",
                         "{",
                         "[]",
                         "{\"id\":\"e\"}",
                         "{\"id\":\"e\",\"type\":\"x\"}",
                         "{\"type\":\"x\",\"data\":{\"object\":{}}}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(pay_stripe_parse_event(bad[i], strlen(bad[i]), &ev), SHOPD_INVALID);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_and_rotation),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_parse_event),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
