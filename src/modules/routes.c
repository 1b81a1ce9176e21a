/*
 * routes.c: the route table. One row per endpoint; the router, the access
 * check, the metrics labels and the OpenAPI document all follow this table.
 * Keep docs/openapi.yaml in step with it (tests/unit/test_openapi.c checks).
 */
#include "shopd/api.h"

const api_route_t api_routes[] = {
    /* method, path, name, access, flags, inline handler, worker handler */
    {"GET", "/healthz", "healthz", API_PUBLIC, API_INLINE, api_healthz, NULL},
    {"GET", "/readyz", "readyz", API_PUBLIC, 0, NULL, api_readyz},
    {"GET", "/metrics", "metrics", API_PUBLIC, API_INLINE, api_metrics, NULL},

    {"POST", "/api/v1/stores", "stores.create", API_PLATFORM, API_BODY, NULL, store_h_create},
    {"GET", "/api/v1/stores", "stores.list", API_PLATFORM, 0, NULL, store_h_list},
    {"GET", "/api/v1/stores/:id", "stores.get", API_PLATFORM, 0, NULL, store_h_get},
    {"PATCH", "/api/v1/stores/:id", "stores.update", API_PLATFORM, API_BODY, NULL, store_h_update},
    {"DELETE", "/api/v1/stores/:id", "stores.delete", API_PLATFORM, 0, NULL, store_h_delete},

    {"GET", "/api/v1/store", "store.current", API_PUBLIC, API_STORE, NULL, store_h_current},
};

const size_t api_nroutes = sizeof(api_routes) / sizeof(api_routes[0]);
