/*
 * module.c: the analytics module's descriptor: two read-only routes for store
 * admins, on any worker (API_ANY: a read lane, never behind the store's
 * checkouts). The rollups they read are kept by the jobs relay
 * (analytics_relay_apply) and rebuilt by the admin op analytics.rebuild.
 */
#include "shopd/analytics.h"

static const char *const q_sales[] = {"from", "to", "interval", NULL};
static const char *const q_top[] = {"from", "to", "limit", "by", NULL};

/* One row per line: a table to read across. */
/* clang-format off */
static const api_route_t analytics_routes[] = {
    /* method, path, name, access, run class, flags, inline handler, worker handler, batch handler, query */
    {"GET", "/api/v1/admin/analytics/sales", "analytics.sales", API_STORE_ADMIN, API_ANY, API_STORE, NULL, analytics_h_sales, NULL, q_sales},
    {"GET", "/api/v1/admin/analytics/top-products", "analytics.top_products", API_STORE_ADMIN, API_ANY, API_STORE, NULL, analytics_h_top_products, NULL, q_top},
};
/* clang-format on */

const api_module_t analytics_module = {
    .name = "analytics",
    .routes = analytics_routes,
    .nroutes = SHOPD_ARRAY_LEN(analytics_routes),
};
