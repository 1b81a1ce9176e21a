/*
 * pricing.h: what a checkout asks of a store's setup: customer addresses,
 * shipping zones and rates, tax rates, discount codes, and the arithmetic that
 * turns a cart into totals. The admin and customer routes that edit them live
 * in src/modules/pricing/ (pricing_module); the checkout (src/modules/order/)
 * only calls the functions below, inside its own transaction.
 *
 * Money is integer minor units of the store's currency (int64_t), never
 * floating point. Rates are basis points (1 bp = 0.01 %: 20 % VAT is 2000).
 * Every function takes the store id first and every query filters by it.
 * The db_conn_t functions run on the caller's connection, inside the caller's
 * db_tx when it has one (they never BEGIN or COMMIT themselves).
 *
 * Rounding (the one rule, tested in tests/unit/test_pricing.c): tax is
 * computed per line (unit price x quantity, after that line's share of the
 * discount when the checkout spreads one), then the lines' taxes are summed;
 * each division rounds half up (x.5 goes to x+1; a negative amount, a refund,
 * rounds as its positive mirror, so -x.5 goes to -(x+1)). Exclusive prices:
 * tax = round(amount * bps / 10000). Inclusive prices: the net part is
 * round(amount * 10000 / (10000 + bps)) and the tax is what is left, so net +
 * tax is exactly the price paid. Intermediate products are 128-bit: no
 * overflow for any int64 amount.
 */
#ifndef SHOPD_PRICING_H
#define SHOPD_PRICING_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "shopd/api.h"
#include "shopd/common.h"
#include "shopd/db.h"

extern const api_module_t pricing_module;

/** The largest amount (minor units) an admin may enter as a price, threshold or
 *  fixed discount: 10^15, far beyond any cart, so sums of a few hundred lines
 *  stay far from int64 overflow. */
#define PRICING_MONEY_MAX 1000000000000000LL

/** True if s is an assigned ISO 3166-1 alpha-2 code, upper case ("DE", "US").
 *  Pure; any thread. */
bool pricing_country_valid(const char *s);

/* ---- addresses ---- */

/** Checks an address object (a request's inline shipping_address or
 *  billing_address, or a /me/addresses body): required name, line1, city,
 *  postal_code, country (ISO 3166-1 alpha-2, upper case, a real code);
 *  optional line2, region, phone, company; lengths bounded; no unknown keys.
 *  Issues go into v with field names prefixed by prefix ("shipping_address.").
 *  Returns true when addr is valid. */
bool pricing_address_check(api_val_t *v, json_t *addr, const char *prefix);

/** A customer's saved address as the JSON object that an order snapshots
 *  ({name, line1, line2, city, region, postal_code, country, phone, company};
 *  new reference, caller decrefs), or NULL with *rc = NOTFOUND when address_id
 *  is not this user's in this store (or UNAVAILABLE/ERR). */
json_t *pricing_address_load(db_conn_t *c, uint64_t store_id, uint64_t user_id, uint64_t address_id,
                             shopd_rc_t *rc);

/** The user's default shipping (or billing, when billing is true) address, or
 *  NULL with *rc = NOTFOUND when there is none. */
json_t *pricing_address_default(db_conn_t *c, uint64_t store_id, uint64_t user_id, bool billing,
                                shopd_rc_t *rc);

/* ---- shipping ---- */

#define PRICING_MAX_RATES 32

typedef struct pricing_rate_s {
    uint64_t id;    /**< shipping rate id (what a checkout names as shipping_rate_id) */
    char name[128]; /**< "Standard", "Express" */
    int64_t price;  /**< what the cart pays for it (0 when free above a subtotal applies) */
    uint64_t zone_id;
} pricing_rate_t;

/** The rates that apply to a cart going to country (alpha-2) with this
 *  subtotal (minor units, before discount) and total weight (grams): flat rates,
 *  weight bands whose range holds weight_g, with free_above applied. Ordered by
 *  price then id. *n set; OK, or UNAVAILABLE/ERR. No zone for the country: OK
 *  with *n = 0. */
shopd_rc_t pricing_shipping_rates(db_conn_t *c, uint64_t store_id, const char *country,
                                  int64_t subtotal, int64_t weight_g, pricing_rate_t *out,
                                  size_t max, size_t *n);

/** A source of shipping rates: the seam where a carrier API (Shippo, EasyPost)
 *  plugs in. rates() has the contract of pricing_shipping_rates. The table
 *  provider (pricing_table_provider: the zones and rates the admin routes edit)
 *  is the default; a carrier provider would run its outbound call on the
 *  blocking pool, never inside the checkout's transaction. */
typedef struct pricing_provider_s {
    const char *name; /**< "table" */
    shopd_rc_t (*rates)(db_conn_t *c, uint64_t store_id, const char *country, int64_t subtotal,
                        int64_t weight_g, pricing_rate_t *out, size_t max, size_t *n);
} pricing_provider_t;

extern const pricing_provider_t pricing_table_provider;

/** The provider pricing_shipping_rates asks (the table provider unless
 *  pricing_set_provider chose another). Any thread. */
const pricing_provider_t *pricing_provider(void);
/** Chooses the provider for the process (NULL: the table provider). Call at
 *  start-up, before any thread runs. */
void pricing_set_provider(const pricing_provider_t *p);

/** One rate by id, if it applies to this cart (same rules): OK with *out, or
 *  NOTFOUND (no such rate in this store, or it does not apply to the country,
 *  weight or subtotal). */
shopd_rc_t pricing_shipping_rate(db_conn_t *c, uint64_t store_id, uint64_t rate_id,
                                 const char *country, int64_t subtotal, int64_t weight_g,
                                 pricing_rate_t *out);

/** The table provider's rates for one country, loaded once (pricing_shipping_rules)
 *  so that the carts of a checkout batch going there are priced in C
 *  (pricing_rules_rate), one query for all of them instead of one per cart. */
typedef struct pricing_rule_s {
    pricing_rate_t rate;                            /**< id, name, zone; price before free_above */
    bool weight;                                    /**< a weight band (else flat) */
    int64_t min_weight_g, max_weight_g, free_above; /**< -1: none (NULL) */
} pricing_rule_t;

typedef struct pricing_rules_s {
    size_t n;
    pricing_rule_t r[PRICING_MAX_RATES];
} pricing_rules_t;

/** True when pricing_shipping_rates is the table provider's, so its rules can be
 *  loaded and applied in C. Any thread. */
bool pricing_rules_apply(void);
/** Every rate of the zone that holds country (n = 0 when none does, or the country
 *  is not valid). OK, or UNAVAILABLE/ERR. */
shopd_rc_t pricing_shipping_rules(db_conn_t *c, uint64_t store_id, const char *country,
                                  pricing_rules_t *out);
/** Pure: the rate rate_id of rules as it applies to a cart of this subtotal and
 *  weight, by the rules of pricing_shipping_rates (a weight band holds weight_g in
 *  [min, max), free from free_above on). OK with *out, or NOTFOUND. */
shopd_rc_t pricing_rules_rate(const pricing_rules_t *rules, uint64_t rate_id, int64_t subtotal,
                              int64_t weight_g, pricing_rate_t *out);

/* ---- taxes ---- */

typedef struct pricing_tax_s {
    int bps;          /**< the rate that applies (0 when none is configured) */
    bool inclusive;   /**< the store's prices include tax (store setting) */
    bool on_shipping; /**< shipping is taxed at the same rate (store setting) */
} pricing_tax_t;

/** The tax rate for an address in this store: the rate for (country, region)
 *  if one exists, else (country, no region), else 0; and the store's settings.
 *  Regions compare without case; NULL or "" region means none. OK, or
 *  UNAVAILABLE/ERR (ERR also when the store does not exist). */
shopd_rc_t pricing_tax_for(db_conn_t *c, uint64_t store_id, const char *country, const char *region,
                           pricing_tax_t *out);

/** The tax inside or on top of an amount: exclusive: round_half_up(amount * bps /
 *  10000); inclusive: amount - round_half_up(amount * 10000 / (10000 + bps)).
 *  Pure; tested. (Tax is computed per line, then summed.) */
int64_t pricing_tax_amount(int64_t amount, int bps, bool inclusive);

/* ---- discount codes ---- */

typedef struct pricing_discount_s {
    uint64_t id;
    char code[64];
    bool percent; /**< percent (value in bps: 1500 = 15 %) or fixed (value in minor units) */
    int64_t value;
    int64_t min_subtotal;
} pricing_discount_t;

/** Why a code does not apply (what the client is told, as the error code). */
typedef enum pricing_discount_why_e {
    PRICING_DISCOUNT_OK = 0,
    PRICING_DISCOUNT_UNKNOWN,      /**< discount_not_found */
    PRICING_DISCOUNT_NOT_STARTED,  /**< discount_not_active */
    PRICING_DISCOUNT_EXPIRED,      /**< discount_expired */
    PRICING_DISCOUNT_MIN_SUBTOTAL, /**< discount_min_subtotal */
    PRICING_DISCOUNT_USED_UP,      /**< discount_used_up (total or per customer) */
} pricing_discount_why_t;

/** The error code string for why (e.g. "discount_expired"), NULL for OK. */
const char *pricing_discount_code(pricing_discount_why_t why);

/** Looks a code up (case-insensitive) for a cart with this subtotal, bought by
 *  user_id (0 for a guest) or email (a guest's; may be NULL): active window,
 *  minimum subtotal, total and per-customer limits as they stand now. OK with
 *  *out and *why = PRICING_DISCOUNT_OK, OK with *why set when it does not apply,
 *  or UNAVAILABLE/ERR. */
shopd_rc_t pricing_discount_find(db_conn_t *c, uint64_t store_id, const char *code,
                                 int64_t subtotal, uint64_t user_id, const char *email,
                                 pricing_discount_t *out, pricing_discount_why_t *why);

/** What the discount takes off this subtotal: percent rounds half up, never more
 *  than the subtotal. Pure. */
int64_t pricing_discount_amount(const pricing_discount_t *d, int64_t subtotal);

/** Records one use, inside the checkout's transaction: a conditional increment
 *  (UPDATE ... SET used = used + 1 WHERE ... AND (usage_limit IS NULL OR used <
 *  usage_limit)) and a discount_uses row (order, user or email), checking the
 *  per-customer limit. OK; CONFLICT with *why = USED_UP when the last use went
 *  to someone else first (50 concurrent checkouts, one use: exactly one OK).
 *  Also: CONFLICT with *why = USED_UP for a per-customer limit reached (user_id,
 *  or email without case), NOT_STARTED (inactive or not yet started) or EXPIRED;
 *  NOTFOUND with *why = UNKNOWN (no such discount in this store); CONFLICT with
 *  *why = OK when order_id already used a code (one code per order; that is a
 *  failed statement, so the caller's transaction is aborted). It locks
 *  the discount's row (FOR UPDATE) before counting, so concurrent uses of one
 *  code queue until the caller's transaction ends: keep that transaction short.
 *  Nothing is written unless OK is returned. */
shopd_rc_t pricing_discount_use(db_conn_t *c, uint64_t store_id, uint64_t discount_id,
                                uint64_t order_id, uint64_t user_id, const char *email,
                                pricing_discount_why_t *why);

/** Gives a use back (a cancelled order): deletes its discount_uses row and
 *  decrements used. OK (also when there was none). */
shopd_rc_t pricing_discount_release(db_conn_t *c, uint64_t store_id, uint64_t order_id);

#endif
