/*
 * module.c: the order module's descriptor: checkout (batched on the store's
 * actor), order reads on any worker, transitions, cancels and refunds in
 * order on the actor, the unpaid-order sweeper (tick) and checkout metrics.
 */
#include "order_priv.h"

static const char *const q_orders[] = {"status", "from",  "to",     "customer",
                                       "q",      "limit", "cursor", NULL};
static const char *const q_rates[] = {"country", NULL};

/* One row per line: a table to read across. */
/* clang-format off */
static const api_route_t order_routes[] = {
    /* method, path, name, access, run class, flags, inline handler, worker handler, batch handler, query */
    {"GET", "/api/v1/checkout/shipping-rates", "checkout.shipping_rates", API_PUBLIC, API_ANY, API_STORE, NULL, order_h_shipping_rates, NULL, q_rates},
    {"POST", "/api/v1/checkout", "checkout.create", API_PUBLIC, API_ORDERED, API_STORE | API_BODY | API_IDEM_SELF | API_BATCH_GATHER, NULL, NULL, order_b_checkout, NULL, API_RATE_CHECKOUT},
    {"GET", "/api/v1/orders", "orders.list", API_CUSTOMER, API_ANY, API_STORE, NULL, order_h_list, NULL, q_orders},
    {"GET", "/api/v1/orders/:id", "orders.get", API_CUSTOMER, API_ANY, API_STORE, NULL, order_h_get, NULL, NULL},
    {"POST", "/api/v1/orders/:id/transitions", "orders.transition", API_STORE_ADMIN, API_ORDERED, API_STORE | API_BODY, NULL, order_h_transition, NULL, NULL},
    {"POST", "/api/v1/orders/:id/cancel", "orders.cancel", API_CUSTOMER, API_ORDERED, API_STORE, NULL, order_h_cancel, NULL, NULL},
    {"POST", "/api/v1/orders/:id/capture", "orders.capture", API_STORE_ADMIN, API_ORDERED, API_STORE | API_BODY, NULL, order_h_capture, NULL, NULL},
    {"POST", "/api/v1/orders/:id/refunds", "orders.refund", API_STORE_ADMIN, API_ORDERED, API_STORE | API_BODY | API_IDEM_SELF, NULL, order_h_refund, NULL, NULL},
};
/* clang-format on */

const api_module_t order_module = {
    .name = "order",
    .routes = order_routes,
    .nroutes = SHOPD_ARRAY_LEN(order_routes),
    .tick = order_tick,
    .metrics = order_metrics,
};
