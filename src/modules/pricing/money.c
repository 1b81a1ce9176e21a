/*
 * money.c: the arithmetic of a checkout's totals: tax inside or on top of an
 * amount, what a discount takes off, and the discount refusal codes. Pure
 * functions on int64 minor units; products are taken in 128 bits so no int64
 * amount can overflow. The rounding rule is stated in include/shopd/pricing.h.
 */
#include "shopd/pricing.h"

/* round_half_up(n / d) for n >= 0, d > 0: floor(n/d + 1/2) = floor((2n + d) / 2d). */
static __int128
div_half_up(__int128 n, __int128 d)
{
    return (2 * n + d) / (2 * d);
}

static int64_t
clamp64(__int128 x)
{
    if (x > INT64_MAX)
        return INT64_MAX;
    if (x < -INT64_MAX)
        return -INT64_MAX;
    return (int64_t)x;
}

int64_t
pricing_tax_amount(int64_t amount, int bps, bool inclusive)
{
    if (bps <= 0 || amount == 0)
        return 0;
    if (bps > 10000)
        bps = 10000; /* the column's bound; a larger rate is nobody's tax */
    /* A negative amount (a refund) rounds as its mirror: -x.5 -> -(x+1). */
    __int128 a = amount < 0 ? -(__int128)amount : (__int128)amount;
    __int128 tax;
    if (inclusive)
        tax = a - div_half_up(a * 10000, 10000 + bps);
    else
        tax = div_half_up(a * bps, 10000);
    return clamp64(amount < 0 ? -tax : tax);
}

int64_t
pricing_discount_amount(const pricing_discount_t *d, int64_t subtotal)
{
    if (d == NULL || subtotal <= 0 || d->value <= 0)
        return 0;
    __int128 off;
    if (d->percent) {
        int64_t bps = d->value > 10000 ? 10000 : d->value;
        off = div_half_up((__int128)subtotal * bps, 10000);
    } else {
        off = d->value;
    }
    return off > subtotal ? subtotal : (int64_t)off;
}

const char *
pricing_discount_code(pricing_discount_why_t why)
{
    switch (why) {
    case PRICING_DISCOUNT_OK:
        return NULL;
    case PRICING_DISCOUNT_UNKNOWN:
        return "discount_not_found";
    case PRICING_DISCOUNT_NOT_STARTED:
        return "discount_not_active";
    case PRICING_DISCOUNT_EXPIRED:
        return "discount_expired";
    case PRICING_DISCOUNT_MIN_SUBTOTAL:
        return "discount_min_subtotal";
    case PRICING_DISCOUNT_USED_UP:
        return "discount_used_up";
    }
    return "discount_not_found";
}
