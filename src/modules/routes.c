/*
 * routes.c: the route table. One row per endpoint; the router, the access
 * check, the metrics labels and the OpenAPI document all follow this table.
 * Keep docs/openapi.yaml in step with it (tests/unit/test_openapi.c checks).
 */
#include "shopd/api.h"

const api_route_t api_routes[] = {
    /* method, path, name, access, flags, inline handler, worker handler, batch handler */
    {"GET", "/healthz", "healthz", API_PUBLIC, API_INLINE, api_healthz, NULL, NULL},
    {"GET", "/readyz", "readyz", API_PUBLIC, 0, NULL, api_readyz, NULL},
    {"GET", "/metrics", "metrics", API_PUBLIC, API_INLINE, api_metrics, NULL, NULL},

    {"POST", "/api/v1/stores", "stores.create", API_PLATFORM, API_BODY, NULL, store_h_create, NULL},
    {"GET", "/api/v1/stores", "stores.list", API_PLATFORM, 0, NULL, store_h_list, NULL},
    {"GET", "/api/v1/stores/:id", "stores.get", API_PLATFORM, 0, NULL, store_h_get, NULL},
    {"PATCH", "/api/v1/stores/:id", "stores.update", API_PLATFORM, API_BODY, NULL, store_h_update, NULL},
    {"DELETE", "/api/v1/stores/:id", "stores.delete", API_PLATFORM, 0, NULL, store_h_delete, NULL},

    {"GET", "/api/v1/store", "store.current", API_PUBLIC, API_STORE, NULL, store_h_current, NULL},
};

const size_t api_nroutes = sizeof(api_routes) / sizeof(api_routes[0]);
