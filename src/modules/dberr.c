/*
 * dberr.c: the one mapping from a failed statement to an answer.
 *
 * PostgreSQL names the constraint a write broke; this table says what that
 * means to a client (result, error code, field). Every module's constraints
 * are rows here, so a new table's unique key is one line, and no module keeps
 * a mapper of its own. What no row names falls back on the statement's class:
 * a lost connection is 503 with Retry-After, an unnamed conflict 409, a check
 * violation 422, anything else 500 with a log line (never the SQL text).
 */
#include <stdio.h>
#include <string.h>

#include "shopd/api.h"

typedef struct api_constraint_s {
    const char *constraint; /* PostgreSQL's name for it (defaults of sql/) */
    shopd_rc_t rc;
    const char *code, *message, *field, *issue;
} api_constraint_t;

/* One row per line: a table to read across. */
/* clang-format off */
static const api_constraint_t api_constraints[] = {
    /* stores (sql/0001) */
    {"stores_slug_key", SHOPD_CONFLICT, "slug_taken", "another store uses this slug", "slug", "already taken"},
    {"stores_domain_key", SHOPD_CONFLICT, "domain_taken", "another store uses this domain", "domain", "already taken"},
    {"stores_timezone_check", SHOPD_INVALID, "validation_failed", "the request has invalid fields", "settings.timezone", "must be an IANA time zone PostgreSQL knows, like Europe/Paris (sql/0011)"},
    /* users (sql/0002) */
    {"users_store_email_uq", SHOPD_CONFLICT, "email_taken", "an account with this e-mail already exists", "email", "already taken"},
    {"users_platform_email_uq", SHOPD_CONFLICT, "email_taken", "an account with this e-mail already exists", "email", "already taken"},
    /* catalog (sql/0003) */
    {"categories_store_id_slug_key", SHOPD_CONFLICT, "slug_taken", "another category uses this slug", "slug", "already taken"},
    {"categories_store_id_parent_id_fkey", SHOPD_INVALID, "validation_failed", "the request has invalid fields", "parent_id", "no such category"},
    {"products_store_id_slug_key", SHOPD_CONFLICT, "slug_taken", "another product uses this slug", "slug", "already taken"},
    {"products_store_id_category_id_fkey", SHOPD_INVALID, "validation_failed", "the request has invalid fields", "category_id", "no such category"},
    {"product_variants_store_id_sku_key", SHOPD_CONFLICT, "sku_taken", "another variant uses this SKU", "sku", "already taken"},
    {"product_variants_store_id_product_id_options_key", SHOPD_CONFLICT, "variant_exists", "the product already has a variant with these options", "options", "already used"},
    {"product_variants_stock_check", SHOPD_CONFLICT, "insufficient_stock", "not enough stock", "stock", "would become negative"},
    {"attributes_store_id_name_key", SHOPD_CONFLICT, "name_taken", "another attribute has this name", "name", "already taken"},
    {"attribute_values_store_id_attribute_id_value_key", SHOPD_CONFLICT, "value_taken", "the attribute already has this value", "value", "already taken"},
    {"product_option_values_store_id_value_id_fkey", SHOPD_INVALID, "validation_failed", "the request has invalid fields", "option_value_ids", "no such attribute value"},
    /* pricing (sql/0007) */
    {"addresses_default_shipping_uq", SHOPD_CONFLICT, "default_address_conflict", "another address became the default at the same time", "is_default_shipping", "already set on another address"},
    {"addresses_default_billing_uq", SHOPD_CONFLICT, "default_address_conflict", "another address became the default at the same time", "is_default_billing", "already set on another address"},
    {"addresses_store_id_user_id_fkey", SHOPD_NOTFOUND, "user_not_found", "no such user", "user_id", "no such user in this store"},
    {"shipping_zones_name_uq", SHOPD_CONFLICT, "zone_name_taken", "another shipping zone has this name", "name", "already taken"},
    {"shipping_zone_countries_pkey", SHOPD_CONFLICT, "country_in_other_zone", "a country can be in one shipping zone only", "countries", "already in another zone"},
    {"shipping_rates_band_check", SHOPD_INVALID, "validation_failed", "the request has invalid fields", "max_weight_g", "must be above min_weight_g (weight bands only)"},
    {"tax_rates_region_uq", SHOPD_CONFLICT, "tax_rate_exists", "the store already has a rate for this country and region", "region", "already has a rate"},
    {"discounts_code_uq", SHOPD_CONFLICT, "discount_code_taken", "another discount uses this code", "code", "already taken"},
    {"discounts_value_check", SHOPD_INVALID, "validation_failed", "the request has invalid fields", "value", "out of range for the kind"},
    {"discounts_window_check", SHOPD_INVALID, "validation_failed", "the request has invalid fields", "ends_at", "must be after starts_at"},
    {"discount_uses_order_uq", SHOPD_CONFLICT, "discount_already_used", "this order already used a discount code", "order_id", "already has a discount"},
};
/* clang-format on */

const char *
api_constraint_code(const char *constraint)
{
    for (size_t i = 0; constraint && i < SHOPD_ARRAY_LEN(api_constraints); i++)
        if (strcmp(constraint, api_constraints[i].constraint) == 0)
            return api_constraints[i].code;
    return NULL;
}

net_reply_t *
api_db_error(api_ctx_t *ctx, PGresult *r, const char *what)
{
    shopd_rc_t rc = db_result_rc(r);
    if (rc == SHOPD_UNAVAILABLE)
        return api_unavailable("the database");
    const char *cons = r ? PQresultErrorField(r, PG_DIAG_CONSTRAINT_NAME) : NULL;
    for (size_t i = 0; cons && i < SHOPD_ARRAY_LEN(api_constraints); i++) {
        const api_constraint_t *c = &api_constraints[i];
        if (strcmp(cons, c->constraint) == 0)
            return api_fail_field(c->rc, c->code, c->message, c->field, c->issue);
    }
    if (rc == SHOPD_CONFLICT)
        return api_fail(SHOPD_CONFLICT, "conflict", "the change conflicts with existing data");
    if (rc == SHOPD_INVALID)
        return api_fail(SHOPD_INVALID, "validation_failed",
                        r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : "invalid");
    char msg[256];
    snprintf(msg, sizeof(msg), "%s: %s", what, r ? PQresultErrorMessage(r) : "no result");
    return api_internal(ctx, msg);
}
