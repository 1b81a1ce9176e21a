/*
 * module.c: the cart module's descriptor. Reads run on any worker; every
 * write runs on the store's actor and goes through one batch handler, so a
 * turn's writes to guest carts are one Redis pipeline and those to users'
 * carts one transaction.
 */
#include "cart_priv.h"

/* One row per line: a table to read across. */
/* clang-format off */
static const api_route_t cart_routes[] = {
    /* method, path, name, access, run class, flags, inline handler, worker handler, batch handler, query */
    {"GET", "/api/v1/cart", "cart.get", API_PUBLIC, API_ANY, API_STORE, NULL, cart_h_get, NULL, NULL},
    {"POST", "/api/v1/cart/add", "cart.add", API_PUBLIC, API_ORDERED, API_STORE | API_BODY, NULL, NULL, cart_b_write, NULL},
    {"PATCH", "/api/v1/cart/item/:id", "cart.item_update", API_PUBLIC, API_ORDERED, API_STORE | API_BODY, NULL, NULL, cart_b_write, NULL},
    {"DELETE", "/api/v1/cart/item/:id", "cart.item_delete", API_PUBLIC, API_ORDERED, API_STORE, NULL, NULL, cart_b_write, NULL},
    {"DELETE", "/api/v1/cart", "cart.clear", API_PUBLIC, API_ORDERED, API_STORE, NULL, NULL, cart_b_write, NULL},
    {"POST", "/api/v1/cart/discount", "cart.discount_set", API_PUBLIC, API_ORDERED, API_STORE | API_BODY, NULL, NULL, cart_b_write, NULL},
    {"DELETE", "/api/v1/cart/discount", "cart.discount_delete", API_PUBLIC, API_ORDERED, API_STORE, NULL, NULL, cart_b_write, NULL},
};
/* clang-format on */

const api_module_t cart_module = {
    .name = "cart",
    .routes = cart_routes,
    .nroutes = SHOPD_ARRAY_LEN(cart_routes),
};
