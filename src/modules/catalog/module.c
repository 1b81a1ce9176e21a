/*
 * module.c: the catalog module's descriptor: categories, products, variants,
 * attributes and inventory. Its process-wide state is the public page cache
 * (pagecache.c: catalog versions, pages, the Redis subscriber thread started and
 * stopped here); the second level of that cache lives in Redis.
 */
#include "shopd/api.h"
#include "shopd/catalog.h"

static const char *const q_products[] = {"category", "status", "min_price", "max_price",
                                         "brand",    "q",      "sort",      "limit",
                                         "page",     "cursor", "expand",    NULL};
static const char *const q_category_delete[] = {"move_to", NULL};
static const char *const q_low_stock[] = {"threshold", "limit", NULL};

/* One row per line: a table to read across. */
/* clang-format off */
static const api_route_t catalog_routes[] = {
    /* method, path, name, access, run class, flags, inline handler, worker handler, batch handler, query */
    {"GET", "/api/v1/categories", "categories.tree", API_PUBLIC, API_ANY, API_STORE | API_PAGE, NULL, catalog_h_category_tree, NULL, NULL},
    {"POST", "/api/v1/categories", "categories.create", API_STORE_ADMIN, API_ORDERED, API_STORE | API_BODY, NULL, catalog_h_category_create, NULL, NULL},
    {"GET", "/api/v1/categories/:id", "categories.get", API_PUBLIC, API_ANY, API_STORE | API_PAGE, NULL, catalog_h_category_get, NULL, NULL},
    {"PATCH", "/api/v1/categories/:id", "categories.update", API_STORE_ADMIN, API_ORDERED, API_STORE | API_BODY, NULL, catalog_h_category_update, NULL, NULL},
    {"DELETE", "/api/v1/categories/:id", "categories.delete", API_STORE_ADMIN, API_ORDERED, API_STORE, NULL, catalog_h_category_delete, NULL, q_category_delete},
    {"GET", "/api/v1/products", "products.list", API_PUBLIC, API_ANY, API_STORE | API_PAGE, NULL, catalog_h_product_list, catalog_b_product_list, q_products},
    {"POST", "/api/v1/products", "products.create", API_STORE_ADMIN, API_ORDERED, API_STORE | API_BODY, NULL, catalog_h_product_create, NULL, NULL},
    {"POST", "/api/v1/imports/products", "products.import", API_STORE_ADMIN, API_BLOCKING, API_STORE | API_BODY | API_ONE_LANE, NULL, catalog_h_product_import, NULL, NULL},
    {"GET", "/api/v1/products/:id", "products.get", API_PUBLIC, API_ANY, API_STORE | API_PAGE, NULL, catalog_h_product_get, catalog_b_product_get, NULL},
    {"PATCH", "/api/v1/products/:id", "products.update", API_STORE_ADMIN, API_ORDERED, API_STORE | API_BODY, NULL, catalog_h_product_update, NULL, NULL},
    {"DELETE", "/api/v1/products/:id", "products.delete", API_STORE_ADMIN, API_ORDERED, API_STORE, NULL, catalog_h_product_delete, NULL, NULL},
    {"GET", "/api/v1/products/:id/variants", "variants.list", API_PUBLIC, API_ANY, API_STORE | API_PAGE, NULL, catalog_h_variant_list, NULL, NULL},
    {"POST", "/api/v1/products/:id/variants", "variants.create", API_STORE_ADMIN, API_ORDERED, API_STORE | API_BODY, NULL, catalog_h_variant_create, NULL, NULL},
    {"POST", "/api/v1/products/:id/variants/generate", "variants.generate", API_STORE_ADMIN, API_ORDERED, API_STORE, NULL, catalog_h_variant_generate, NULL, NULL},
    {"GET", "/api/v1/variants/:id", "variants.get", API_PUBLIC, API_ANY, API_STORE | API_PAGE, NULL, catalog_h_variant_get, NULL, NULL},
    {"PATCH", "/api/v1/variants/:id", "variants.update", API_STORE_ADMIN, API_ORDERED, API_STORE | API_BODY, NULL, catalog_h_variant_update, NULL, NULL},
    {"DELETE", "/api/v1/variants/:id", "variants.delete", API_STORE_ADMIN, API_ORDERED, API_STORE, NULL, catalog_h_variant_delete, NULL, NULL},
    {"PATCH", "/api/v1/variants/:id/inventory", "inventory.adjust", API_STORE_ADMIN, API_ORDERED, API_STORE | API_BODY, NULL, NULL, catalog_b_inventory, NULL},
    {"GET", "/api/v1/variants/:id/movements", "inventory.movements", API_STORE_ADMIN, API_ANY, API_STORE, NULL, catalog_h_variant_movements, NULL, NULL},
    {"GET", "/api/v1/admin/inventory/low-stock", "inventory.low_stock", API_STORE_ADMIN, API_ANY, API_STORE, NULL, catalog_h_low_stock, NULL, q_low_stock},
    {"GET", "/api/v1/attributes", "attributes.list", API_PUBLIC, API_ANY, API_STORE | API_PAGE, NULL, catalog_h_attribute_list, NULL, NULL},
    {"POST", "/api/v1/attributes", "attributes.create", API_STORE_ADMIN, API_ORDERED, API_STORE | API_BODY, NULL, catalog_h_attribute_create, NULL, NULL},
    {"GET", "/api/v1/attributes/:id", "attributes.get", API_PUBLIC, API_ANY, API_STORE | API_PAGE, NULL, catalog_h_attribute_get, NULL, NULL},
    {"PATCH", "/api/v1/attributes/:id", "attributes.update", API_STORE_ADMIN, API_ORDERED, API_STORE | API_BODY, NULL, catalog_h_attribute_update, NULL, NULL},
    {"DELETE", "/api/v1/attributes/:id", "attributes.delete", API_STORE_ADMIN, API_ORDERED, API_STORE, NULL, catalog_h_attribute_delete, NULL, NULL},
    {"GET", "/api/v1/attributes/:id/values", "attribute_values.list", API_PUBLIC, API_ANY, API_STORE | API_PAGE, NULL, catalog_h_value_list, NULL, NULL},
    {"POST", "/api/v1/attributes/:id/values", "attribute_values.create", API_STORE_ADMIN, API_ORDERED, API_STORE | API_BODY, NULL, catalog_h_value_create, NULL, NULL},
    {"PATCH", "/api/v1/attributes/:id/values/:value_id", "attribute_values.update", API_STORE_ADMIN, API_ORDERED, API_STORE | API_BODY, NULL, catalog_h_value_update, NULL, NULL},
    {"DELETE", "/api/v1/attributes/:id/values/:value_id", "attribute_values.delete", API_STORE_ADMIN, API_ORDERED, API_STORE, NULL, catalog_h_value_delete, NULL, NULL},
};
/* clang-format on */

const api_module_t catalog_module = {
    .name = "catalog",
    .routes = catalog_routes,
    .nroutes = SHOPD_ARRAY_LEN(catalog_routes),
    .metrics = catalog_pages_metrics,
    .start = catalog_pages_start,
    .stop = catalog_pages_stop,
    .fini = catalog_pages_fini,
    /* The control flush: a version bump drops the store's pages here and, by
     * pub/sub and the version in Redis, in every other process. */
    .flush = catalog_changed,
};
