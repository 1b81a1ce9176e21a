/*
 * catalog.h: the catalog and inventory module: nested categories, products,
 * variants, store-level attributes with variant generation, the stock ledger
 * and the cached public listing. Every handler runs on a worker inside the
 * store's actor (routes.c lists them); every query filters by store_id first.
 *
 * Limits (documented here, enforced by the handlers):
 *  - categories nest at most CATALOG_MAX_DEPTH levels (a root is level 1);
 *  - a product has at most CATALOG_MAX_VARIANTS variants (generation included);
 *  - a list page holds at most 100 products (limit), q is 2 to 100 characters;
 *  - the list's total is exact when the filter is only status and category (counts kept
 *    by triggers, sql/0020), else exact up to CATALOG_COUNT_CAP (then total_capped).
 *
 * Caching: public GETs (anonymous or customer callers) are cached under the store's
 * catalog version, which every catalog write bumps (INCR + PUBLISH) after its commit:
 * in process (pagecache.c; anonymous hits answered on the I/O thread, a gzip copy
 * per page) and in Redis for the other processes. Admins always read fresh data
 * (Cache-Control: private, no-store).
 */
#ifndef SHOPD_CATALOG_H
#define SHOPD_CATALOG_H

#include <stdbool.h>
#include <stdint.h>

#include "shopd/api.h"

#define CATALOG_MAX_DEPTH 8
#define CATALOG_MAX_VARIANTS 100
#define CATALOG_MAX_LIMIT 100
/** The list's total counts up to this many products; beyond, total is this number and
 *  total_capped is true (an exact count would scan most of a big store per page). */
#define CATALOG_COUNT_CAP 10000

/** Retries the catalog version bumps that failed while Redis was down (a no-op,
 *  one relaxed load, when there are none). Called by every catalog request and
 *  by /readyz. Workers only (kv is the worker's connection). */
void catalog_cache_recover(kv_conn_t *kv);
/** True while store_id has a write whose version bump has not reached Redis yet
 *  (its public pages bypass the cache). Any thread. */
bool catalog_cache_dirty(uint64_t store_id);

/* ---- categories (categories.c) ---- */
/** A change of the store's catalog made elsewhere (checkout took stock, a cancel
 *  returned it): bumps the store's catalog version after the commit, so no cached
 *  page shows the old stock. Store's actor or any worker. */
void catalog_changed(api_ctx_t *ctx);

/** Serves a public GET of another module whose answer depends only on the
 *  store's catalog (search) through the catalog's cache: keyed by route and
 *  canonical query, valid while the store's catalog version stands, with ETag,
 *  304 and X-Cache as for the catalog's own pages; fn builds the answer on a
 *  miss (only a 200 is kept). Admin callers bypass it. Worker thread. */
net_reply_t *catalog_cached(api_ctx_t *ctx, net_reply_t *(*fn)(api_ctx_t *ctx));

net_reply_t *catalog_h_category_tree(api_ctx_t *ctx);
net_reply_t *catalog_h_category_get(api_ctx_t *ctx);
net_reply_t *catalog_h_category_create(api_ctx_t *ctx);
net_reply_t *catalog_h_category_update(api_ctx_t *ctx);
/** DELETE /categories/:id[?move_to=<id>|root]: refused (409 category_not_empty) while the
 *  category has children or products, unless move_to says where they go. */
net_reply_t *catalog_h_category_delete(api_ctx_t *ctx);

/* ---- products (products.c) ---- */
net_reply_t *catalog_h_product_list(api_ctx_t *ctx);
/** The same for the list pages of one read-lane turn, read in pipelines. */
void catalog_b_product_list(api_ctx_t *ctxs, size_t n, net_reply_t **replies);
/** GET /products/:id where :id is a numeric id or a slug. */
net_reply_t *catalog_h_product_get(api_ctx_t *ctx);
/** The same for the product pages of one read-lane turn: the pages to build are
 *  read in one pipeline (an api_batch_fn). */
void catalog_b_product_get(api_ctx_t *ctxs, size_t n, net_reply_t **replies);
net_reply_t *catalog_h_product_create(api_ctx_t *ctx);
net_reply_t *catalog_h_product_update(api_ctx_t *ctx);
net_reply_t *catalog_h_product_delete(api_ctx_t *ctx);

/* ---- bulk import (import.c) ---- */
/** Rows per POST /imports/products (and per batch of the admin import.products). */
#define CATALOG_IMPORT_MAX_ROWS 1000
/** POST /imports/products {rows: [product + variants]}: the valid rows in one
 *  transaction on the store's actor, each bad row reported with its reason;
 *  200 {imported, variants, categories_created, rejected: [{index, code,
 *  message, details}]}. */
net_reply_t *catalog_h_product_import(api_ctx_t *ctx);

/* ---- variants and inventory (variants.c) ---- */
net_reply_t *catalog_h_variant_list(api_ctx_t *ctx);
net_reply_t *catalog_h_variant_create(api_ctx_t *ctx);
/** Creates one variant per combination of the product's chosen attribute values that
 *  has none yet (idempotent); 201 if any was created, else 200. */
net_reply_t *catalog_h_variant_generate(api_ctx_t *ctx);
net_reply_t *catalog_h_variant_get(api_ctx_t *ctx);
net_reply_t *catalog_h_variant_update(api_ctx_t *ctx);
net_reply_t *catalog_h_variant_delete(api_ctx_t *ctx);
/** GET /variants/:id/movements: stock, ledger sum and the latest movements (admins). */
net_reply_t *catalog_h_variant_movements(api_ctx_t *ctx);
/** GET /admin/inventory/low-stock?threshold=&limit=: variants of draft and active
 *  products with stock <= threshold (default 5), lowest first, at most limit
 *  (default 50, up to 200) (admins). */
net_reply_t *catalog_h_low_stock(api_ctx_t *ctx);
/** PATCH /variants/:id/inventory, batched: one transaction per actor turn, a savepoint
 *  per request, the conditional UPDATE as the guard (409 insufficient_stock). */
void catalog_b_inventory(api_ctx_t *ctxs, size_t n, net_reply_t **replies);

/* ---- attributes (attributes.c) ---- */
net_reply_t *catalog_h_attribute_list(api_ctx_t *ctx);
net_reply_t *catalog_h_attribute_get(api_ctx_t *ctx);
net_reply_t *catalog_h_attribute_create(api_ctx_t *ctx);
net_reply_t *catalog_h_attribute_update(api_ctx_t *ctx);
net_reply_t *catalog_h_attribute_delete(api_ctx_t *ctx);
net_reply_t *catalog_h_value_list(api_ctx_t *ctx);
net_reply_t *catalog_h_value_create(api_ctx_t *ctx);
net_reply_t *catalog_h_value_update(api_ctx_t *ctx);
net_reply_t *catalog_h_value_delete(api_ctx_t *ctx);

/* ---- the product list query (products.c), public so tests can EXPLAIN it ---- */
typedef enum catalog_sort_e {
    CATALOG_SORT_NEWEST = 0,
    CATALOG_SORT_PRICE_ASC,
    CATALOG_SORT_PRICE_DESC,
    CATALOG_SORT_NAME_ASC,
    CATALOG_SORT_NAME_DESC,
} catalog_sort_t;

/** A validated product list request. Strings are borrowed. */
typedef struct catalog_filter_s {
    uint64_t store_id;
    bool admin;               /**< sees every status */
    const char *status;       /**< admins only; NULL = any (public: always active) */
    const char *category_ids; /**< NULL = any; else a PostgreSQL array text ("{4,9}") of a
                                  category and its descendants (catalog_descendants_sql) */
    long long min_price;      /**< -1 = none (minor units, on the base price) */
    long long max_price;      /**< -1 = none */
    const char *brand;        /**< exact match, NULL = any */
    const char *q;            /**< case-insensitive substring of name or description */
    int sort;                 /**< catalog_sort_t */
    const char *cursor_key;   /**< keyset cursor: sort value (NULL = first page) */
    uint64_t cursor_id;       /**< keyset cursor: product id */
    int limit;                /**< 1..CATALOG_MAX_LIMIT */
    long offset;              /**< page mode: (page - 1) * limit; 0 with a cursor */
    bool expand_variants;     /**< ?expand=variants: full products, not the lean entry */
} catalog_filter_t;

#define CATALOG_SQL_MAXP 16

/** The SQL of one list request: page_sql returns one row per product in order, its
 *  sort key text in column 1 and its id in column 2; column 0 is the product's JSON
 *  with expand_variants, else the lean entry's columns (slug, key, id, name, price_min,
 *  price_max, in_stock, variant_count) that products.c renders. count_sql the total.
 *  Params are text. */
typedef struct catalog_sql_s {
    char *page_sql;  /**< malloc'd */
    char *count_sql; /**< malloc'd */
    int nparams;     /**< of page_sql; count_sql uses the first count_nparams */
    int count_nparams;
    const char *params[CATALOG_SQL_MAXP];
    char buf[CATALOG_SQL_MAXP][32]; /**< storage for numeric params */
    char *pattern;                  /**< malloc'd ILIKE pattern of q */
    char *cursor_key;               /**< malloc'd copy of the cursor's sort value */
    bool count_exact; /**< count_sql reads the kept counts (sql/0020): exact, never capped */
} catalog_sql_t;

/** SQL giving the array text of category $2 and its descendants in store $1 ("{}" if
 *  none). Run first so the list query gets the ids as a constant the planner can size. */
extern const char catalog_descendants_sql[];

/** Builds the SQL for f into out (pure). Free with catalog_sql_free. */
void catalog_list_sql(const catalog_filter_t *f, catalog_sql_t *out);
void catalog_sql_free(catalog_sql_t *s);

/* ---- the product page (page.c), public so tests can run and compare it ---- */
/** The product page's statement by id and by slug: $1 the store, $2 the product id
 *  (bigint text) or slug, $3 "t" when the caller sees every status ("f": active only).
 *  Rows of text columns, column 0 saying what each is (0 the product with its
 *  category, 1 a variant, 2 an image with one of its renditions, 3 an option value id);
 *  no product row when there is no such product for the caller. */
extern const char catalog_page_id_sql[];
extern const char catalog_page_slug_sql[];
/** The product JSON (CAT_PRODUCT_JSON's document: same keys, order and values; jsonb
 *  columns as PostgreSQL prints them, so not compact) of a result of one of those
 *  statements, read on a connection in DateStyle ISO. malloc'd (shopd_free), its
 *  length in *len; NULL when the result has no product row. Pure, any thread. */
char *catalog_page_render(const PGresult *r, size_t *len);
/** The same product as PostgreSQL renders it ($1 store, $2 product id): what the write
 *  routes answer with, and what tests compare catalog_page_render against. */
extern const char catalog_product_json_sql[];

/** The module descriptor (routes, start and stop hooks); listed in src/modules/routes.c. */
typedef struct api_module_s api_module_t;
extern const api_module_t catalog_module;

/* ---- the in-process page cache (pagecache.c, README "The read path") ---- */
/** Module start: the page cache's settings and its Redis subscriber thread
 *  (catalog version bumps). 0, or -1 (logged). */
int catalog_pages_start(app_t *app);
/** Module stop: the subscriber ends and nothing more is cached. */
void catalog_pages_stop(app_t *app);
/** Module fini, once every thread has ended: frees the cache and the table. */
void catalog_pages_fini(app_t *app);
/** Prometheus lines of the page cache (hits on the I/O threads and on workers,
 *  misses, evictions, bytes, resyncs, subscription state). Any thread. */
size_t catalog_pages_metrics(char *buf, size_t cap);
/** I/O thread, never blocks: the answer to an anonymous GET of an API_PAGE route
 *  from the in-process cache (ETag/304, gzip per env->ae), or NULL when a worker
 *  must answer (no current page, a store whose bump was lost). env as api_submit
 *  packs it: store, route, path parameters, canonical query, If-None-Match. */
net_reply_t *catalog_page_answer(const msg_env_t *env);

#endif
