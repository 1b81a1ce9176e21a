/*
 * Pure pieces of the pricing module: the tax arithmetic (exclusive and
 * inclusive, half-up rounding, refunds mirrored, no overflow up to int64),
 * what a discount takes off, the refusal codes, the ISO 3166-1 country check
 * and RFC 3339 parsing, and which shipping rate applies to a cart (the rules a
 * checkout batch applies in C, the same as the table provider's SQL). The rule
 * itself is stated in include/shopd/pricing.h.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "modules/pricing/pricing_priv.h"
#include "shopd/pricing.h"

/* An independent statement of "round half up" for a non-negative n / d. */
static int64_t
ref_div(int64_t n, int64_t d)
{
    int64_t q = n / d, r = n % d;
    return q + (2 * r >= d ? 1 : 0);
}

static void
test_tax_exclusive(void **state)
{
    assert_int_equal(pricing_tax_amount(1000, 2000, false), 200);
    assert_int_equal(pricing_tax_amount(1, 2000, false), 0);     /* 0.2 */
    assert_int_equal(pricing_tax_amount(3, 2000, false), 1);     /* 0.6 */
    assert_int_equal(pricing_tax_amount(5, 1000, false), 1);     /* 0.5: half goes up */
    assert_int_equal(pricing_tax_amount(15, 1000, false), 2);    /* 1.5 */
    assert_int_equal(pricing_tax_amount(14, 1000, false), 1);    /* 1.4 */
    assert_int_equal(pricing_tax_amount(1999, 825, false), 165); /* 164.9175 */
    assert_int_equal(pricing_tax_amount(1000, 0, false), 0);
    assert_int_equal(pricing_tax_amount(0, 2000, false), 0);
    assert_int_equal(pricing_tax_amount(1000, -5, false), 0);
    assert_int_equal(pricing_tax_amount(1000, 10000, false), 1000);
    assert_int_equal(pricing_tax_amount(1000, 20000, false), 1000); /* clamped to 100 % */
    /* a refund rounds as its mirror */
    assert_int_equal(pricing_tax_amount(-5, 1000, false), -1);
    assert_int_equal(pricing_tax_amount(-1000, 2000, false), -200);
    /* against the independent rounding for a grid of amounts and rates */
    for (int64_t a = 0; a < 3000; a += 7)
        for (int bps = 0; bps <= 10000; bps += 37)
            assert_int_equal(pricing_tax_amount(a, bps, false), ref_div(a * bps, 10000));
}

static void
test_tax_inclusive(void **state)
{
    assert_int_equal(pricing_tax_amount(1200, 2000, true), 200);
    assert_int_equal(pricing_tax_amount(119, 1900, true), 19);
    assert_int_equal(pricing_tax_amount(1000, 1900, true), 160); /* net 840.34 -> 840 */
    /* net 10.5 rounds up to 11, so the tax is 10 and net + tax is the price */
    assert_int_equal(pricing_tax_amount(21, 10000, true), 10);
    assert_int_equal(pricing_tax_amount(1000, 0, true), 0);
    assert_int_equal(pricing_tax_amount(-1200, 2000, true), -200);
    for (int64_t a = 0; a < 3000; a += 11)
        for (int bps = 0; bps <= 10000; bps += 53) {
            int64_t t = pricing_tax_amount(a, bps, true);
            assert_int_equal(t, a - ref_div(a * 10000, 10000 + bps));
            assert_true(t >= 0 && t <= a);
        }
}

static void
test_tax_no_overflow(void **state)
{
    const int64_t big = 1000000000000LL; /* 10^12 */
    assert_int_equal(pricing_tax_amount(big, 10000, false), big);
    assert_int_equal(pricing_tax_amount(big, 2000, false), 200000000000LL);
    assert_int_equal(pricing_tax_amount(big, 2000, true), 166666666667LL);
    assert_int_equal(pricing_tax_amount(big + 1, 1, false), 100000000LL);
    /* the whole int64 range: 128-bit products, results within the amount */
    assert_int_equal(pricing_tax_amount(INT64_MAX, 10000, false), INT64_MAX);
    int64_t t = pricing_tax_amount(INT64_MAX, 2000, true);
    assert_true(t > 0 && t < INT64_MAX);
    assert_int_equal(t, INT64_MAX - (int64_t)(((__int128)INT64_MAX * 20000 + 12000) / 24000));
    assert_int_equal(pricing_tax_amount(-INT64_MAX, 10000, false), -INT64_MAX);
}

static void
test_discount_amount(void **state)
{
    pricing_discount_t pct = {.percent = true, .value = 1500};
    pricing_discount_t fix = {.percent = false, .value = 500};
    assert_int_equal(pricing_discount_amount(&pct, 1000), 150);
    pct.value = 1;
    assert_int_equal(pricing_discount_amount(&pct, 5000), 1); /* 0.5 -> 1 */
    assert_int_equal(pricing_discount_amount(&pct, 4999), 0); /* 0.4999 -> 0 */
    pct.value = 333;
    assert_int_equal(pricing_discount_amount(&pct, 150), 5); /* 4.995 -> 5 */
    pct.value = 10000;
    assert_int_equal(pricing_discount_amount(&pct, 999), 999);
    pct.value = 20000; /* never more than the subtotal */
    assert_int_equal(pricing_discount_amount(&pct, 999), 999);
    assert_int_equal(pricing_discount_amount(&fix, 300), 300); /* capped at the subtotal */
    assert_int_equal(pricing_discount_amount(&fix, 1300), 500);
    assert_int_equal(pricing_discount_amount(&fix, 0), 0);
    assert_int_equal(pricing_discount_amount(&fix, -10), 0);
    assert_int_equal(pricing_discount_amount(NULL, 100), 0);
    pct.value = 2500;
    assert_int_equal(pricing_discount_amount(&pct, 1000000000000LL), 250000000000LL);
    assert_int_equal(pricing_discount_amount(&pct, INT64_MAX),
                     (int64_t)(((__int128)INT64_MAX * 2500 * 2 + 10000) / 20000));
    fix.value = INT64_MAX;
    assert_int_equal(pricing_discount_amount(&fix, 1000000000000LL), 1000000000000LL);
}

static void
test_discount_codes(void **state)
{
    assert_null(pricing_discount_code(PRICING_DISCOUNT_OK));
    assert_string_equal(pricing_discount_code(PRICING_DISCOUNT_UNKNOWN), "discount_not_found");
    assert_string_equal(pricing_discount_code(PRICING_DISCOUNT_NOT_STARTED), "discount_not_active");
    assert_string_equal(pricing_discount_code(PRICING_DISCOUNT_EXPIRED), "discount_expired");
    assert_string_equal(pricing_discount_code(PRICING_DISCOUNT_MIN_SUBTOTAL),
                        "discount_min_subtotal");
    assert_string_equal(pricing_discount_code(PRICING_DISCOUNT_USED_UP), "discount_used_up");
}

static void
test_countries(void **state)
{
    assert_true(pricing_country_valid("DE"));
    assert_true(pricing_country_valid("US"));
    assert_true(pricing_country_valid("GB"));
    assert_true(pricing_country_valid("AD"));  /* first */
    assert_true(pricing_country_valid("ZW"));  /* last */
    assert_false(pricing_country_valid("UK")); /* not assigned: GB is */
    assert_false(pricing_country_valid("XX"));
    assert_false(pricing_country_valid("de"));
    assert_false(pricing_country_valid("De"));
    assert_false(pricing_country_valid("D"));
    assert_false(pricing_country_valid("DEU"));
    assert_false(pricing_country_valid(""));
    assert_false(pricing_country_valid(NULL));
    /* exactly the 249 assigned codes among all 676 pairs */
    int n = 0;
    char s[3] = {0};
    for (char a = 'A'; a <= 'Z'; a++)
        for (char b = 'A'; b <= 'Z'; b++) {
            s[0] = a;
            s[1] = b;
            n += pricing_country_valid(s);
        }
    assert_int_equal(n, 249);
}

static void
test_rfc3339(void **state)
{
    int64_t a, b;
    assert_true(api_rfc3339("2026-12-01T00:00:00Z", &a));
    assert_int_equal(a, 1796083200LL * 1000000);
    assert_true(api_rfc3339("2026-12-01T01:00:00+01:00", &b));
    assert_int_equal(a, b);
    assert_true(api_rfc3339("2026-11-30T19:00:00-05:00", &b));
    assert_int_equal(a, b);
    assert_true(api_rfc3339("2026-12-01T00:00:00.25Z", &b));
    assert_int_equal(b - a, 250000);
    /* the form PostgreSQL's JSON gives back (a PATCH merges it) */
    assert_true(api_rfc3339("2026-12-01T20:28:16.668884+00:00", &b));
    assert_true(api_rfc3339("2024-02-29T12:00:00Z", &b));
    assert_false(api_rfc3339("2023-02-29T12:00:00Z", &b));
    assert_false(api_rfc3339("2026-02-30T00:00:00Z", &b));
    assert_false(api_rfc3339("2026-12-01T00:00:00", &b)); /* no offset */
    assert_false(api_rfc3339("2026-12-01", &b));
    assert_false(api_rfc3339("2026-12-01T24:00:00Z", &b));
    assert_false(api_rfc3339("2026-12-01T00:00:00Zjunk", &b));
    assert_false(api_rfc3339("2026-12-01T00:00:00.Z", &b));
    assert_false(api_rfc3339("tomorrow", &b));
    assert_false(api_rfc3339(NULL, &b));
}

static void
test_rules_rate(void **state)
{
    (void)state;
    pricing_rules_t rl = {0};
    /* 1: flat 500, free from 5000; 2: band [0, 1000) 700; 3: band [1000, none) 1200;
     * 4: a band with no lower bound (holds nothing, as NULL in SQL). */
    rl.r[rl.n++] = (pricing_rule_t){{1, "Standard", 500, 9}, false, -1, -1, 5000};
    rl.r[rl.n++] = (pricing_rule_t){{2, "Light", 700, 9}, true, 0, 1000, -1};
    rl.r[rl.n++] = (pricing_rule_t){{3, "Heavy", 1200, 9}, true, 1000, -1, 20000};
    rl.r[rl.n++] = (pricing_rule_t){{4, "Odd", 100, 9}, true, -1, 50, -1};
    pricing_rate_t out;
    assert_int_equal(pricing_rules_rate(&rl, 1, 4999, 123456, &out), SHOPD_OK);
    assert_int_equal(out.price, 500);
    assert_string_equal(out.name, "Standard");
    assert_int_equal(out.zone_id, 9);
    assert_int_equal(pricing_rules_rate(&rl, 1, 5000, 0, &out), SHOPD_OK);
    assert_int_equal(out.price, 0); /* free from free_above on */
    assert_int_equal(pricing_rules_rate(&rl, 2, 100, 0, &out), SHOPD_OK);
    assert_int_equal(out.price, 700);
    assert_int_equal(pricing_rules_rate(&rl, 2, 100, 999, &out), SHOPD_OK);
    assert_int_equal(pricing_rules_rate(&rl, 2, 100, 1000, &out), SHOPD_NOTFOUND); /* [min, max) */
    assert_int_equal(pricing_rules_rate(&rl, 3, 100, 999, &out), SHOPD_NOTFOUND);
    assert_int_equal(pricing_rules_rate(&rl, 3, 100, 1000, &out), SHOPD_OK);
    assert_int_equal(out.price, 1200);
    assert_int_equal(pricing_rules_rate(&rl, 3, 20000, INT64_MAX / 2, &out), SHOPD_OK);
    assert_int_equal(out.price, 0);
    assert_int_equal(pricing_rules_rate(&rl, 4, 0, 0, &out), SHOPD_NOTFOUND);
    assert_int_equal(pricing_rules_rate(&rl, 5, 0, 0, &out), SHOPD_NOTFOUND); /* not in the zone */
    pricing_rules_t none = {0};
    assert_int_equal(pricing_rules_rate(&none, 1, 0, 0, &out), SHOPD_NOTFOUND);
    assert_true(pricing_rules_apply()); /* the table provider, by default */
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tax_exclusive),   cmocka_unit_test(test_tax_inclusive),
        cmocka_unit_test(test_tax_no_overflow), cmocka_unit_test(test_discount_amount),
        cmocka_unit_test(test_discount_codes),  cmocka_unit_test(test_countries),
        cmocka_unit_test(test_rfc3339),         cmocka_unit_test(test_rules_rate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
