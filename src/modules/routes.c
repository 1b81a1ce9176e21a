/*
 * routes.c: the route table. One row per endpoint; the router, the access
 * check, the metrics labels and the OpenAPI document all follow this table.
 * Keep docs/openapi.yaml in step with it (tests/unit/test_openapi.c checks).
 */
#include "shopd/api.h"
#include "shopd/auth.h"
#include "shopd/catalog.h"

/* The query parameters each reading route understands (see api_route_t.query). */
static const char *const q_stores[] = {"limit", "cursor", "page", "status", NULL};
static const char *const q_users[] = {"limit", "cursor", "role", "status", NULL};
static const char *const q_products[] = {"category", "status", "min_price", "max_price", "brand", "q",
                                         "sort", "limit", "page", "cursor", NULL};
static const char *const q_category_delete[] = {"move_to", NULL};

const api_route_t api_routes[] = {
    /* method, path, name, access, run class, flags, inline handler, worker handler, batch handler, query */
    {"GET", "/healthz", "healthz", API_PUBLIC, API_ANY, API_INLINE, api_healthz, NULL, NULL, NULL},
    {"GET", "/readyz", "readyz", API_PUBLIC, API_ANY, 0, NULL, api_readyz, NULL, NULL},
    {"GET", "/metrics", "metrics", API_PUBLIC, API_ANY, API_INLINE, api_metrics, NULL, NULL, NULL},

    {"POST", "/api/v1/stores", "stores.create", API_SUPER_ADMIN, API_BLOCKING, API_BODY, NULL, store_h_create, NULL, NULL},
    {"GET", "/api/v1/stores", "stores.list", API_SUPER_ADMIN, API_ANY, 0, NULL, store_h_list, NULL, q_stores},
    {"GET", "/api/v1/stores/:id", "stores.get", API_SUPER_ADMIN, API_ANY, 0, NULL, store_h_get, NULL, NULL},
    {"PATCH", "/api/v1/stores/:id", "stores.update", API_SUPER_ADMIN, API_ORDERED, API_BODY, NULL, store_h_update, NULL, NULL},
    {"DELETE", "/api/v1/stores/:id", "stores.delete", API_SUPER_ADMIN, API_ORDERED, 0, NULL, store_h_delete, NULL, NULL},

    /* Users and authentication (the platform token also passes API_SUPER_ADMIN). */
    {"POST", "/api/v1/auth/register", "auth.register", API_PUBLIC, API_BLOCKING, API_STORE | API_BODY, NULL, auth_h_register, NULL, NULL},
    {"POST", "/api/v1/auth/login", "auth.login", API_PUBLIC, API_BLOCKING, API_STORE | API_BODY, NULL, auth_h_login, NULL, NULL},
    {"POST", "/api/v1/platform/auth/login", "auth.platform_login", API_PUBLIC, API_BLOCKING, API_BODY, NULL, auth_h_platform_login, NULL, NULL},
    {"POST", "/api/v1/auth/refresh", "auth.refresh", API_PUBLIC, API_ANY, API_BODY, NULL, auth_h_refresh, NULL, NULL},
    {"POST", "/api/v1/auth/logout", "auth.logout", API_PUBLIC, API_ANY, API_BODY, NULL, auth_h_logout, NULL, NULL},
    {"POST", "/api/v1/auth/forgot-password", "auth.forgot_password", API_PUBLIC, API_ANY, API_STORE | API_BODY, NULL, auth_h_forgot, NULL, NULL},
    {"POST", "/api/v1/auth/reset-password", "auth.reset_password", API_PUBLIC, API_BLOCKING, API_STORE | API_BODY, NULL, auth_h_reset, NULL, NULL},
    {"GET", "/api/v1/me", "me.get", API_CUSTOMER, API_ANY, API_STORE, NULL, auth_h_me, NULL, NULL},
    {"PATCH", "/api/v1/me", "me.update", API_CUSTOMER, API_BLOCKING, API_STORE | API_BODY, NULL, auth_h_me_update, NULL, NULL},
    {"GET", "/api/v1/admin/users", "users.list", API_STORE_ADMIN, API_ANY, API_STORE, NULL, auth_h_users_list, NULL, q_users},
    {"POST", "/api/v1/admin/users", "users.create", API_STORE_ADMIN, API_BLOCKING, API_STORE | API_BODY, NULL, auth_h_users_create, NULL, NULL},
    {"GET", "/api/v1/admin/users/:id", "users.get", API_STORE_ADMIN, API_ANY, API_STORE, NULL, auth_h_users_get, NULL, NULL},
    {"PATCH", "/api/v1/admin/users/:id", "users.update", API_STORE_ADMIN, API_BLOCKING, API_STORE | API_BODY, NULL, auth_h_users_update, NULL, NULL},
    {"DELETE", "/api/v1/admin/users/:id", "users.delete", API_STORE_ADMIN, API_ORDERED, API_STORE, NULL, auth_h_users_delete, NULL, NULL},

    {"GET", "/api/v1/store", "store.current", API_PUBLIC, API_ANY, API_STORE, NULL, store_h_current, NULL, NULL},

    /* catalog and inventory (src/modules/catalog) */
    {"GET", "/api/v1/categories", "categories.tree", API_PUBLIC, API_ANY, API_STORE, NULL, catalog_h_category_tree, NULL, NULL},
    {"POST", "/api/v1/categories", "categories.create", API_STORE_ADMIN, API_ORDERED, API_STORE | API_BODY, NULL, catalog_h_category_create, NULL, NULL},
    {"GET", "/api/v1/categories/:id", "categories.get", API_PUBLIC, API_ANY, API_STORE, NULL, catalog_h_category_get, NULL, NULL},
    {"PATCH", "/api/v1/categories/:id", "categories.update", API_STORE_ADMIN, API_ORDERED, API_STORE | API_BODY, NULL, catalog_h_category_update, NULL, NULL},
    {"DELETE", "/api/v1/categories/:id", "categories.delete", API_STORE_ADMIN, API_ORDERED, API_STORE, NULL, catalog_h_category_delete, NULL, q_category_delete},
    {"GET", "/api/v1/products", "products.list", API_PUBLIC, API_ANY, API_STORE, NULL, catalog_h_product_list, NULL, q_products},
    {"POST", "/api/v1/products", "products.create", API_STORE_ADMIN, API_ORDERED, API_STORE | API_BODY, NULL, catalog_h_product_create, NULL, NULL},
    {"GET", "/api/v1/products/:id", "products.get", API_PUBLIC, API_ANY, API_STORE, NULL, catalog_h_product_get, NULL, NULL},
    {"PATCH", "/api/v1/products/:id", "products.update", API_STORE_ADMIN, API_ORDERED, API_STORE | API_BODY, NULL, catalog_h_product_update, NULL, NULL},
    {"DELETE", "/api/v1/products/:id", "products.delete", API_STORE_ADMIN, API_ORDERED, API_STORE, NULL, catalog_h_product_delete, NULL, NULL},
    {"GET", "/api/v1/products/:id/variants", "variants.list", API_PUBLIC, API_ANY, API_STORE, NULL, catalog_h_variant_list, NULL, NULL},
    {"POST", "/api/v1/products/:id/variants", "variants.create", API_STORE_ADMIN, API_ORDERED, API_STORE | API_BODY, NULL, catalog_h_variant_create, NULL, NULL},
    {"POST", "/api/v1/products/:id/variants/generate", "variants.generate", API_STORE_ADMIN, API_ORDERED, API_STORE, NULL, catalog_h_variant_generate, NULL, NULL},
    {"GET", "/api/v1/variants/:id", "variants.get", API_PUBLIC, API_ANY, API_STORE, NULL, catalog_h_variant_get, NULL, NULL},
    {"PATCH", "/api/v1/variants/:id", "variants.update", API_STORE_ADMIN, API_ORDERED, API_STORE | API_BODY, NULL, catalog_h_variant_update, NULL, NULL},
    {"DELETE", "/api/v1/variants/:id", "variants.delete", API_STORE_ADMIN, API_ORDERED, API_STORE, NULL, catalog_h_variant_delete, NULL, NULL},
    {"PATCH", "/api/v1/variants/:id/inventory", "inventory.adjust", API_STORE_ADMIN, API_ORDERED, API_STORE | API_BODY, NULL, NULL, catalog_b_inventory, NULL},
    {"GET", "/api/v1/variants/:id/movements", "inventory.movements", API_STORE_ADMIN, API_ANY, API_STORE, NULL, catalog_h_variant_movements, NULL, NULL},
    {"GET", "/api/v1/attributes", "attributes.list", API_PUBLIC, API_ANY, API_STORE, NULL, catalog_h_attribute_list, NULL, NULL},
    {"POST", "/api/v1/attributes", "attributes.create", API_STORE_ADMIN, API_ORDERED, API_STORE | API_BODY, NULL, catalog_h_attribute_create, NULL, NULL},
    {"GET", "/api/v1/attributes/:id", "attributes.get", API_PUBLIC, API_ANY, API_STORE, NULL, catalog_h_attribute_get, NULL, NULL},
    {"PATCH", "/api/v1/attributes/:id", "attributes.update", API_STORE_ADMIN, API_ORDERED, API_STORE | API_BODY, NULL, catalog_h_attribute_update, NULL, NULL},
    {"DELETE", "/api/v1/attributes/:id", "attributes.delete", API_STORE_ADMIN, API_ORDERED, API_STORE, NULL, catalog_h_attribute_delete, NULL, NULL},
    {"GET", "/api/v1/attributes/:id/values", "attribute_values.list", API_PUBLIC, API_ANY, API_STORE, NULL, catalog_h_value_list, NULL, NULL},
    {"POST", "/api/v1/attributes/:id/values", "attribute_values.create", API_STORE_ADMIN, API_ORDERED, API_STORE | API_BODY, NULL, catalog_h_value_create, NULL, NULL},
    {"PATCH", "/api/v1/attributes/:id/values/:value_id", "attribute_values.update", API_STORE_ADMIN, API_ORDERED, API_STORE | API_BODY, NULL, catalog_h_value_update, NULL, NULL},
    {"DELETE", "/api/v1/attributes/:id/values/:value_id", "attribute_values.delete", API_STORE_ADMIN, API_ORDERED, API_STORE, NULL, catalog_h_value_delete, NULL, NULL},
};

const size_t api_nroutes = sizeof(api_routes) / sizeof(api_routes[0]);
