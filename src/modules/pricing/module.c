/*
 * module.c: the pricing module's descriptor: customers' addresses, shipping
 * zones and rates, tax rates and settings, discount codes. Reads run on any
 * read lane (API_ANY), writes in order on the store's actor (API_ORDERED),
 * as the catalog's do. No process-wide state beyond the shipping provider
 * (shipping.c), chosen before threads start.
 */
#include "pricing_priv.h"

/* One row per line: a table to read across. */
/* clang-format off */
static const api_route_t pricing_routes[] = {
    /* method, path, name, access, run class, flags, inline handler, worker handler, batch handler, query */
    {"GET", "/api/v1/me/addresses", "addresses.list", API_CUSTOMER, API_ANY, API_STORE, NULL, pricing_h_address_list, NULL, NULL},
    {"POST", "/api/v1/me/addresses", "addresses.create", API_CUSTOMER, API_ORDERED, API_STORE | API_BODY, NULL, pricing_h_address_create, NULL, NULL},
    {"GET", "/api/v1/me/addresses/:id", "addresses.get", API_CUSTOMER, API_ANY, API_STORE, NULL, pricing_h_address_get, NULL, NULL},
    {"PATCH", "/api/v1/me/addresses/:id", "addresses.update", API_CUSTOMER, API_ORDERED, API_STORE | API_BODY, NULL, pricing_h_address_update, NULL, NULL},
    {"DELETE", "/api/v1/me/addresses/:id", "addresses.delete", API_CUSTOMER, API_ORDERED, API_STORE, NULL, pricing_h_address_delete, NULL, NULL},
    {"GET", "/api/v1/admin/shipping-zones", "shipping_zones.list", API_STORE_ADMIN, API_ANY, API_STORE, NULL, pricing_h_zone_list, NULL, NULL},
    {"POST", "/api/v1/admin/shipping-zones", "shipping_zones.create", API_STORE_ADMIN, API_ORDERED, API_STORE | API_BODY, NULL, pricing_h_zone_create, NULL, NULL},
    {"GET", "/api/v1/admin/shipping-zones/:id", "shipping_zones.get", API_STORE_ADMIN, API_ANY, API_STORE, NULL, pricing_h_zone_get, NULL, NULL},
    {"PATCH", "/api/v1/admin/shipping-zones/:id", "shipping_zones.update", API_STORE_ADMIN, API_ORDERED, API_STORE | API_BODY, NULL, pricing_h_zone_update, NULL, NULL},
    {"DELETE", "/api/v1/admin/shipping-zones/:id", "shipping_zones.delete", API_STORE_ADMIN, API_ORDERED, API_STORE, NULL, pricing_h_zone_delete, NULL, NULL},
    {"GET", "/api/v1/admin/shipping-zones/:id/rates", "shipping_rates.list", API_STORE_ADMIN, API_ANY, API_STORE, NULL, pricing_h_rate_list, NULL, NULL},
    {"POST", "/api/v1/admin/shipping-zones/:id/rates", "shipping_rates.create", API_STORE_ADMIN, API_ORDERED, API_STORE | API_BODY, NULL, pricing_h_rate_create, NULL, NULL},
    {"PATCH", "/api/v1/admin/shipping-rates/:id", "shipping_rates.update", API_STORE_ADMIN, API_ORDERED, API_STORE | API_BODY, NULL, pricing_h_rate_update, NULL, NULL},
    {"DELETE", "/api/v1/admin/shipping-rates/:id", "shipping_rates.delete", API_STORE_ADMIN, API_ORDERED, API_STORE, NULL, pricing_h_rate_delete, NULL, NULL},
    {"GET", "/api/v1/admin/tax-rates", "tax_rates.list", API_STORE_ADMIN, API_ANY, API_STORE, NULL, pricing_h_tax_list, NULL, NULL},
    {"POST", "/api/v1/admin/tax-rates", "tax_rates.create", API_STORE_ADMIN, API_ORDERED, API_STORE | API_BODY, NULL, pricing_h_tax_create, NULL, NULL},
    {"PATCH", "/api/v1/admin/tax-rates/:id", "tax_rates.update", API_STORE_ADMIN, API_ORDERED, API_STORE | API_BODY, NULL, pricing_h_tax_update, NULL, NULL},
    {"DELETE", "/api/v1/admin/tax-rates/:id", "tax_rates.delete", API_STORE_ADMIN, API_ORDERED, API_STORE, NULL, pricing_h_tax_delete, NULL, NULL},
    {"GET", "/api/v1/admin/tax-settings", "tax_settings.get", API_STORE_ADMIN, API_ANY, API_STORE, NULL, pricing_h_tax_settings_get, NULL, NULL},
    {"PATCH", "/api/v1/admin/tax-settings", "tax_settings.update", API_STORE_ADMIN, API_ORDERED, API_STORE | API_BODY, NULL, pricing_h_tax_settings_update, NULL, NULL},
    {"GET", "/api/v1/admin/discounts", "discounts.list", API_STORE_ADMIN, API_ANY, API_STORE, NULL, pricing_h_discount_list, NULL, NULL},
    {"POST", "/api/v1/admin/discounts", "discounts.create", API_STORE_ADMIN, API_ORDERED, API_STORE | API_BODY, NULL, pricing_h_discount_create, NULL, NULL},
    {"GET", "/api/v1/admin/discounts/:id", "discounts.get", API_STORE_ADMIN, API_ANY, API_STORE, NULL, pricing_h_discount_get, NULL, NULL},
    {"PATCH", "/api/v1/admin/discounts/:id", "discounts.update", API_STORE_ADMIN, API_ORDERED, API_STORE | API_BODY, NULL, pricing_h_discount_update, NULL, NULL},
    {"DELETE", "/api/v1/admin/discounts/:id", "discounts.delete", API_STORE_ADMIN, API_ORDERED, API_STORE, NULL, pricing_h_discount_delete, NULL, NULL},
};
/* clang-format on */

const api_module_t pricing_module = {
    .name = "pricing",
    .routes = pricing_routes,
    .nroutes = SHOPD_ARRAY_LEN(pricing_routes),
};
