/*
 * module.c: the analytics module's descriptor: two read-only routes for store
 * admins, on any worker (API_ANY: a read lane, never behind the store's
 * checkouts), and the rebuild of one store's rollups for super admins, on the
 * blocking pool (it reads every order of the store). The rollups are kept by
 * the jobs relay (analytics_relay_apply); the admin op analytics.rebuild
 * rebuilds one store or all.
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
    {"POST", "/api/v1/admin/analytics/rebuild", "analytics.rebuild_store", API_SUPER_ADMIN, API_BLOCKING, API_STORE, NULL, analytics_h_rebuild, NULL, NULL},
};
/* clang-format on */

const api_module_t analytics_module = {
    .name = "analytics",
    .routes = analytics_routes,
    .nroutes = SHOPD_ARRAY_LEN(analytics_routes),
};
