/* TEMPORARY (removed when the pricing module lands): weak stand-ins so the
 * order module links and can be exercised: no zones (one free rate id 1),
 * no tax, no discounts, inline addresses only. */
#include <string.h>
#include "shopd/pricing.h"
__attribute__((weak)) bool
pricing_address_check(api_val_t *v, json_t *a, const char *prefix)
{
    (void)prefix;
    const char *c = json_string_value(json_object_get(a, "country"));
    if (!c || strlen(c) != 2) {
        api_val_add(v, "shipping_address.country", "required");
        return false;
    }
    return true;
}
__attribute__((weak)) json_t *
pricing_address_load(db_conn_t *c, uint64_t s, uint64_t u, uint64_t a, shopd_rc_t *rc)
{
    (void)c;
    (void)s;
    (void)u;
    (void)a;
    *rc = SHOPD_NOTFOUND;
    return NULL;
}
__attribute__((weak)) json_t *
pricing_address_default(db_conn_t *c, uint64_t s, uint64_t u, bool b, shopd_rc_t *rc)
{
    (void)c;
    (void)s;
    (void)u;
    (void)b;
    *rc = SHOPD_NOTFOUND;
    return NULL;
}
__attribute__((weak)) shopd_rc_t
pricing_shipping_rates(db_conn_t *c, uint64_t s, const char *co, int64_t st, int64_t w,
                       pricing_rate_t *out, size_t max, size_t *n)
{
    (void)c;
    (void)s;
    (void)co;
    (void)st;
    (void)w;
    (void)max;
    memset(out, 0, sizeof(*out));
    out->id = 1;
    strcpy(out->name, "Standard");
    *n = 1;
    return SHOPD_OK;
}
__attribute__((weak)) shopd_rc_t
pricing_shipping_rate(db_conn_t *c, uint64_t s, uint64_t id, const char *co, int64_t st, int64_t w,
                      pricing_rate_t *out)
{
    size_t n;
    if (id != 1)
        return SHOPD_NOTFOUND;
    return pricing_shipping_rates(c, s, co, st, w, out, 1, &n);
}
__attribute__((weak)) shopd_rc_t
pricing_tax_for(db_conn_t *c, uint64_t s, const char *co, const char *r, pricing_tax_t *out)
{
    (void)c;
    (void)s;
    (void)co;
    (void)r;
    memset(out, 0, sizeof(*out));
    return SHOPD_OK;
}
__attribute__((weak)) int64_t
pricing_tax_amount(int64_t a, int bps, bool inc)
{
    (void)a;
    (void)bps;
    (void)inc;
    return 0;
}
__attribute__((weak)) const char *
pricing_discount_code(pricing_discount_why_t w)
{
    return w ? "discount_not_found" : NULL;
}
__attribute__((weak)) shopd_rc_t
pricing_discount_find(db_conn_t *c, uint64_t s, const char *code, int64_t st, uint64_t u,
                      const char *e, pricing_discount_t *out, pricing_discount_why_t *why)
{
    (void)c;
    (void)s;
    (void)code;
    (void)st;
    (void)u;
    (void)e;
    (void)out;
    *why = PRICING_DISCOUNT_UNKNOWN;
    return SHOPD_OK;
}
__attribute__((weak)) int64_t
pricing_discount_amount(const pricing_discount_t *d, int64_t st)
{
    (void)d;
    (void)st;
    return 0;
}
__attribute__((weak)) shopd_rc_t
pricing_discount_use(db_conn_t *c, uint64_t s, uint64_t d, uint64_t o, uint64_t u, const char *e,
                     pricing_discount_why_t *w)
{
    (void)c;
    (void)s;
    (void)d;
    (void)o;
    (void)u;
    (void)e;
    (void)w;
    return SHOPD_OK;
}
__attribute__((weak)) shopd_rc_t
pricing_discount_release(db_conn_t *c, uint64_t s, uint64_t o)
{
    (void)c;
    (void)s;
    (void)o;
    return SHOPD_OK;
}
