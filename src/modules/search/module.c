/*
 * module.c: the search module: its two public routes, read-only, on any
 * worker (API_ANY: a read lane of the store, never behind its mutations).
 * The handlers read the query (parse.c) and hand it to the configured backend
 * (PostgreSQL today, see include/shopd/search.h).
 */
#include "shopd/catalog.h"
#include "shopd/search.h"

/* attr.* is a family: attr.color, attr.size (api_query_canon). */
static const char *const q_search[] = {"q",         "category", "brand", "price_min",
                                       "price_max", "in_stock", "sort",  "limit",
                                       "cursor",    "attr.*",   NULL};
static const char *const q_suggest[] = {"q", NULL};

static const search_backend_t *
backend(void)
{
    return &search_pg_backend;
}

static net_reply_t *
search_fresh(api_ctx_t *ctx)
{
    api_val_t v = {0};
    search_query_t q;
    search_parse(ctx->env->query.p, ctx->env->query.n, &q, &v);
    if (v.n)
        return api_val_reply(&v);
    return backend()->search(ctx, &q);
}

static net_reply_t *
suggest_fresh(api_ctx_t *ctx)
{
    api_val_t v = {0};
    char prefix[128];
    search_parse_prefix(ctx->env->query.p, ctx->env->query.n, prefix, sizeof(prefix), &v);
    if (v.n)
        return api_val_reply(&v);
    return backend()->suggest(ctx, prefix);
}

/* Both answers depend only on the store's catalog, which bumps its version on
 * every product, variant and stock change (catalog_changed): they are served
 * through the catalog's cache, so a repeated search (a landing page's facets
 * over the whole store) costs one Redis GET, and an edit is still seen on the
 * next request. */
static net_reply_t *
search_h_search(api_ctx_t *ctx)
{
    return catalog_cached(ctx, search_fresh);
}

static net_reply_t *
search_h_suggest(api_ctx_t *ctx)
{
    return catalog_cached(ctx, suggest_fresh);
}

/* clang-format off */
static const api_route_t search_routes[] = {
    /* method, path, name, access, run class, flags, inline handler, worker handler, batch handler, query */
    {"GET", "/api/v1/search", "search.products", API_PUBLIC, API_ANY, API_STORE, NULL, search_h_search, NULL, q_search},
    {"GET", "/api/v1/search/suggest", "search.suggest", API_PUBLIC, API_ANY, API_STORE, NULL, search_h_suggest, NULL, q_suggest},
};
/* clang-format on */

const api_module_t search_module = {
    .name = "search",
    .routes = search_routes,
    .nroutes = SHOPD_ARRAY_LEN(search_routes),
};
