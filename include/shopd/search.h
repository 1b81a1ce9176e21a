/*
 * search.h: product search for shoppers: full text with typo tolerance,
 * filters and facet counts (GET /api/v1/search), and prefix suggestions
 * (GET /api/v1/search/suggest).
 *
 * The module reads and validates the query (search_parse, pure) and hands a
 * search_query_t to a backend. The one backend today is PostgreSQL
 * (src/modules/search/pg.c: a tsvector and trigram columns kept by triggers
 * of sql/0015_search.sql, so an edit is searchable on the next request). A
 * Meilisearch backend would implement the same two functions over an index
 * kept in sync from the outbox.
 */
#ifndef SHOPD_SEARCH_H
#define SHOPD_SEARCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shopd/api.h"

#define SEARCH_MAX_Q 200        /**< bytes of q (UTF-8) */
#define SEARCH_MAX_ATTRS 8      /**< attr.<name> filters per request */
#define SEARCH_MAX_NAME 64      /**< bytes of an attribute name */
#define SEARCH_MAX_VALUE 100    /**< bytes of a brand or an attribute value */
#define SEARCH_MAX_LIMIT 100    /**< hits per page */
#define SEARCH_DEFAULT_LIMIT 20 /**< hits per page when limit is absent */
#define SEARCH_SUGGEST_LIMIT 8  /**< products (and categories) per suggestion answer */

typedef enum search_sort_e {
    SEARCH_SORT_RELEVANCE = 0, /**< best match first (newest without q) */
    SEARCH_SORT_PRICE,         /**< base_price ascending */
    SEARCH_SORT_PRICE_DESC,    /**< base_price descending */
    SEARCH_SORT_NEWEST,        /**< newest product first */
} search_sort_t;

/** One attr.<name>=<value> filter. */
typedef struct search_attr_s {
    char name[SEARCH_MAX_NAME + 1];
    char value[SEARCH_MAX_VALUE + 1];
} search_attr_t;

/** A validated search request. Strings are NUL-terminated, "" when absent;
 *  numbers -1 (or 0 for ids) when absent. Plain data: no ownership. */
typedef struct search_query_s {
    char q[SEARCH_MAX_Q + 1];
    uint64_t category_id; /**< 0: any; else this category and its descendants */
    char brand[SEARCH_MAX_VALUE + 1];
    long long price_min, price_max; /**< minor units, inclusive; -1: unbounded */
    size_t nattrs;
    search_attr_t attrs[SEARCH_MAX_ATTRS]; /**< sorted by name, names distinct */
    bool in_stock;                         /**< only products with a variant in stock */
    search_sort_t sort;
    int limit;
    /** The cursor (next_cursor of the previous page, same sort): the last hit's
     *  sort key as text (a score, a price; "" for newest) and its id. */
    bool has_cursor;
    char cursor_key[64];
    uint64_t cursor_id;
} search_query_t;

/** Reads the canonical query (api_query_canon's form: name=value pairs, values
 *  percent-encoded) into *out: q, category, brand, price_min, price_max,
 *  attr.<name>, in_stock, sort, limit, cursor. Every problem is recorded in v
 *  (field, issue); *out is only meaningful when v->n == 0. Pure, any thread. */
void search_parse(const char *query, size_t len, search_query_t *out, api_val_t *v);

/** Reads a suggestion prefix (the q of /search/suggest) into out (cap bytes):
 *  1 to 100 bytes of valid UTF-8 without control characters, or an issue
 *  recorded in v. Pure, any thread. */
void search_parse_prefix(const char *query, size_t len, char *out, size_t cap, api_val_t *v);

/** The cursor text for a hit: sort letter, hex of key, '.', id (into out, cap
 *  bytes; false if it does not fit). Pure. */
bool search_cursor_format(search_sort_t sort, const char *key, uint64_t id, char *out, size_t cap);
/** The reverse: false when s is not a cursor of sort. Pure. */
bool search_cursor_parse(search_sort_t sort, const char *s, char *key, size_t keycap, uint64_t *id);

/** True if s (n bytes) is valid UTF-8 without control characters. Pure. */
bool search_text_ok(const char *s, size_t n);

/** A search backend: both calls run on a worker inside the request's handler
 *  (store ctx->store_id) and return the answer (caller owns it), a 200 with the
 *  documented JSON or a failure. */
typedef struct search_backend_s {
    const char *name;
    net_reply_t *(*search)(api_ctx_t *ctx, const search_query_t *q);
    net_reply_t *(*suggest)(api_ctx_t *ctx, const char *prefix);
} search_backend_t;

/** The PostgreSQL backend. */
extern const search_backend_t search_pg_backend;

extern const api_module_t search_module;

#endif
