/*
 * module.c: the store module's descriptor: the platform's store routes and the
 * resolved store's public page, and the tenant cache it owns (created at start,
 * freed at stop).
 */
#include "shopd/api.h"
#include "shopd/store.h"

static const char *const q_stores[] = {"limit", "cursor", "page", "status", NULL};

/* One row per line: a table to read across. */
/* clang-format off */
static const api_route_t store_routes[] = {
    /* method, path, name, access, run class, flags, inline handler, worker handler, batch handler, query */
    {"POST", "/api/v1/stores", "stores.create", API_SUPER_ADMIN, API_BLOCKING, API_BODY, NULL, store_h_create, NULL, NULL},
    {"GET", "/api/v1/stores", "stores.list", API_SUPER_ADMIN, API_ANY, 0, NULL, store_h_list, NULL, q_stores},
    {"GET", "/api/v1/stores/:id", "stores.get", API_SUPER_ADMIN, API_ANY, 0, NULL, store_h_get, NULL, NULL},
    {"PATCH", "/api/v1/stores/:id", "stores.update", API_SUPER_ADMIN, API_ORDERED, API_BODY, NULL, store_h_update, NULL, NULL},
    {"DELETE", "/api/v1/stores/:id", "stores.delete", API_SUPER_ADMIN, API_ORDERED, 0, NULL, store_h_delete, NULL, NULL},
    {"GET", "/api/v1/store", "store.current", API_PUBLIC, API_ANY, API_STORE, NULL, store_h_current, NULL, NULL},
};
/* clang-format on */

static int
store_module_init(app_t *app, char *err, size_t errlen)
{
    app->stores = store_cache_new((unsigned)app->cfg->tenant_cache_ttl);
    return 0;
}

static void
store_module_fini(app_t *app)
{
    store_cache_free(app->stores);
    app->stores = NULL;
}

/* The control flush: the next request of the store reads its row again. */
static void
store_module_flush(api_ctx_t *ctx)
{
    store_cache_invalidate(ctx->app->stores, ctx->store_id);
}

const api_module_t store_module = {
    .name = "store",
    .routes = store_routes,
    .nroutes = SHOPD_ARRAY_LEN(store_routes),
    .init = store_module_init,
    .fini = store_module_fini,
    .flush = store_module_flush,
};
