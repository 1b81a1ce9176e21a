/*
 * catalog_priv.h: helpers shared by the catalog handlers (common.c): who may
 * see what, path ids, field validation, mapping PostgreSQL errors to API
 * errors by constraint name, writes as transactions (db_tx), and the public response cache
 * keyed by the store's catalog version.
 */
#ifndef SHOPD_CATALOG_PRIV_H
#define SHOPD_CATALOG_PRIV_H

#include <stdbool.h>
#include <stdint.h>

#include "shopd/api.h"
#include "shopd/catalog.h"
#include "shopd/media.h"

/* JSON of a variant row v of product p (PostgreSQL renders it). */
#define CAT_VARIANT_JSON(v, p)                                                                     \
    "json_build_object('id', " v ".id, 'product_id', " v ".product_id, 'sku', " v ".sku, "         \
    "'options', " v ".options, 'price', coalesce(" v ".price, " p ".base_price), "                 \
    "'price_override', " v ".price, 'stock', " v ".stock, 'weight_g', " v ".weight_g, "            \
    "'barcode', " v ".barcode, 'position', " v ".position, 'created_at', " v ".created_at, "       \
    "'updated_at', " v ".updated_at, "                                                             \
    "'images', (SELECT coalesce(json_agg(" MEDIA_IMAGE_JSON(                                       \
        "vi") " ORDER BY vi.position, vi.id), "                                                    \
              "'[]') FROM product_images vi WHERE vi.store_id = " v                                \
              ".store_id AND vi.variant_id = " v ".id))"

/* JSON of a product row p with its category, variants and images (all of the
 * product's, each with its variant_id). */
#define CAT_PRODUCT_JSON(p)                                                                        \
    "json_build_object('id', " p ".id, 'category_id', " p ".category_id, 'name', " p ".name, "     \
    "'slug', " p ".slug, 'description', " p ".description, 'base_price', " p ".base_price, "       \
    "'status', " p ".status, 'brand', " p ".brand, 'attributes', " p ".attributes, "               \
    "'created_at', " p ".created_at, 'updated_at', " p ".updated_at, "                             \
    "'images', (SELECT coalesce(json_agg(" MEDIA_IMAGE_JSON(                                       \
        "pi") " ORDER BY pi.position, pi.id), "                                                    \
              "'[]') FROM product_images pi WHERE pi.store_id = " p                                \
              ".store_id AND pi.product_id = " p ".id), "                                          \
              "'category', (SELECT json_build_object('id', c.id, 'name', c.name, 'slug', c.slug) " \
              "FROM categories c WHERE c.store_id = " p ".store_id AND c.id = " p                  \
              ".category_id), "                                                                    \
              "'option_value_ids', (SELECT coalesce(json_agg(o.value_id ORDER BY o.value_id), "    \
              "'[]') "                                                                             \
              "FROM product_option_values o WHERE o.store_id = " p                                 \
              ".store_id AND o.product_id = " p ".id), "                                           \
              "'variants', (SELECT coalesce(json_agg(" CAT_VARIANT_JSON(                           \
                  "v", p) " ORDER BY v.position, v.id), '[]') "                                    \
                          "FROM product_variants v WHERE v.store_id = " p                          \
                          ".store_id AND v.product_id = " p ".id))"

/* The lean list entry of a product row p, s being its variants' summary (list_page's
 * LATERAL): what a product grid shows, as columns (slug, sort key, id, name, price_min,
 * price_max, in_stock, variant_count, main image; the key and id where CAT_PRODUCT_JSON's page has
 * them) that list_page renders as JSON itself: json_build_object was a third of the
 * database's time for a page. The full product (CAT_PRODUCT_JSON) is on the product
 * page and in the list with ?expand=variants. A product without variants has its base
 * price as its range and is not in stock. */
#define CAT_PRODUCT_LEAN_COLS(p, s)                                                                \
    p ".name, coalesce(" s ".pmin, " p ".base_price), coalesce(" s ".pmax, " p ".base_price), " s  \
      ".in_stock, " s ".n, " CAT_MAIN_IMAGE(p)
/* The main image of product row p (the first by position) as JSON text, or NULL: what
 * a grid shows of it (its URL, size, alt text and renditions). One index probe. */
#define CAT_MAIN_IMAGE(p)                                                                          \
    "(SELECT json_build_object('url', mi.url, 'width', mi.width, 'height', mi.height, 'alt', "     \
    "mi.alt, 'state', mi.state, 'renditions', (SELECT coalesce(json_agg(json_build_object("        \
    "'format', r.format, 'width', r.width, 'height', r.height, 'url', r.url) ORDER BY r.format, "  \
    "r.width), '[]') FROM product_image_renditions r WHERE r.store_id = mi.store_id AND "          \
    "r.image_id = mi.id))::text FROM product_images mi WHERE mi.store_id = " p ".store_id AND "    \
    "mi.product_id = " p ".id ORDER BY mi.position, mi.id LIMIT 1)"
/* The summary CAT_PRODUCT_LEAN_COLS reads, one index range per product. */
#define CAT_VARIANT_SUMMARY(p)                                                                     \
    "LEFT JOIN LATERAL (SELECT count(*) AS n, min(coalesce(v.price, " p ".base_price)) AS pmin, "  \
    "max(coalesce(v.price, " p ".base_price)) AS pmax, coalesce(bool_or(v.stock > 0), false) "     \
    "AS in_stock FROM product_variants v WHERE v.store_id = " p ".store_id AND v.product_id = " p  \
    ".id) vs ON true"

/** True if the caller administers this store (its STORE_ADMIN, or a SUPER_ADMIN). */
bool cat_is_admin(const api_ctx_t *ctx);
/** Path parameter `name` as a positive id; its decimal text goes to buf[24]. */
bool cat_id_param(const api_ctx_t *ctx, const char *name, char *buf);
/** The store id as text (buf[24]). */
const char *cat_sid(const api_ctx_t *ctx, char *buf);

/** Lower-case slug of s (a-z, 0-9, '-'), at most n-1 bytes; "item" if nothing is left. */
void cat_slugify(const char *s, char *out, size_t n);
bool cat_slug_valid(const char *s);

/** Borrows a connection; NULL after answering *reply with 503. */
db_conn_t *cat_acquire(api_ctx_t *ctx, net_reply_t **reply);
/** The body of a catalog write: runs inside db_tx on the handler's thread, and again
 *  after a deadlock or serialization failure, so it starts from nothing each time (frees
 *  or overwrites what an earlier attempt left in arg). Returns OK to commit, or the failure
 *  with *reply set to its answer (left NULL, the status picks a 503 or 500). */
typedef shopd_rc_t (*cat_tx_fn)(api_ctx_t *ctx, db_conn_t *c, void *arg, net_reply_t **reply);
/** Runs fn as one transaction (db_tx: retried, a savepoint when nested) on a connection it
 *  borrows and returns. NULL once committed: the caller answers from what fn left in arg
 *  and bumps the catalog version. Otherwise the answer to send (the caller owns it). */
net_reply_t *cat_tx(api_ctx_t *ctx, cat_tx_fn fn, void *arg);
/** One write statement as its own cat_tx. NULL when it committed, with its result in *out
 *  (caller PQclears); else the answer (api_db_error(what) for a failed statement), *out NULL. */
net_reply_t *cat_write_stmt(api_ctx_t *ctx, const char *what, const char *name, const char *sql,
                            int np, const char *const *p, PGresult **out);
/** The API error for a failed statement, chosen by constraint name when there is one. */
net_reply_t *api_db_error(api_ctx_t *ctx, PGresult *r, const char *what);
/** 200/201 with the JSON text of row 0 column col. */
net_reply_t *cat_row_json(shopd_rc_t rc, PGresult *r, int col);
/** The usual answer to a one-row query: the error for a failed result, 404 (nf_code,
 *  nf_message) for no row, else the row's first column as a 200 JSON body. Clears r. */
net_reply_t *cat_one_row(api_ctx_t *ctx, PGresult *r, const char *what, const char *nf_code,
                         const char *nf_message);

/** A product body, validated (cat_product_validate): strings point into the JSON
 *  it was read from, slug may point at slugbuf (so the struct is not to be
 *  copied); attributes and value_ids are owned (cat_product_input_free). */
typedef struct cat_prod_input_s {
    const char *name, *slug, *description, *status, *brand;
    char slugbuf[128];
    bool brand_given, category_given;
    char category[24]; /* "" = null */
    char price[24];    /* "" = not given */
    char *attributes;  /* JSON text (jansson malloc) */
    char *value_ids;   /* "{1,2}" PostgreSQL array text, NULL = not given */
} cat_prod_input_t;
/** Reads and checks a product body b (create: name and base_price required, the
 *  slug made from the name when absent) into in; problems go to v. */
void cat_product_validate(api_val_t *v, json_t *b, cat_prod_input_t *in, bool create);
void cat_product_input_free(cat_prod_input_t *in);

/** A variant body, validated (cat_variant_validate); options is owned (free()). */
typedef struct cat_var_input_s {
    const char *sku, *barcode;
    char *options; /* JSON text (jansson malloc) */
    bool price_given, weight_given, barcode_given;
    char price[24], weight[24], stock[24], pos[24]; /* "" = null / not given */
} cat_var_input_t;
/** Reads and checks a variant body b (create: sku required, stock allowed). */
void cat_variant_validate(api_val_t *v, json_t *b, cat_var_input_t *in, bool create);

/** FNV-1a of the string s (names of prepared statements made from their SQL). Pure. */
uint64_t cat_hash(const char *s);

/* ---- the in-process page cache (pagecache.c) ---- */
#define CAT_CACHE_TTL_S 300 /* seconds a cached page lives, in Redis and in process */

/** A built public page: immutable, reference counted (any thread). */
typedef struct pc_page_s pc_page_t;
/** A new page (one reference, the caller's) of store's catalog version ver under
 *  key, with its gzip copy made now when smaller. Copies everything. */
pc_page_t *pc_page_new(uint64_t store, uint64_t ver, const char *key, const char *etag,
                       const char *body, size_t len);
void pc_page_ref(pc_page_t *p);
/** Drops a reference; the last one frees the page. Accepts NULL. */
void pc_page_unref(pc_page_t *p);
/** The body of the chosen representation (gzip when asked for and there is one). */
const char *pc_page_body(const pc_page_t *p, bool gz, size_t *len);
const char *pc_page_etag(const pc_page_t *p, bool gz);
bool pc_page_has_gzip(const pc_page_t *p);
uint64_t pc_page_version(const pc_page_t *p);
/** Redis has just confirmed p's version is current. */
void pc_page_checked(pc_page_t *p);
/** Keeps p in the shared cache (its own reference), replacing the page of the same
 *  key, evicting by CLOCK past the budget. No-op when the cache is off. */
void pc_insert(pc_page_t *p);
/** The cached page of key, with a reference for the caller, or NULL. */
pc_page_t *pc_lookup(const char *key);
/** True if p may be served without asking Redis: its version is the store's in the
 *  table, and the subscription is healthy or p was confirmed within page_stale_ms. */
bool pc_page_current(pc_page_t *p);
/** The store's version as the table knows it; false when unknown. */
bool pc_version(uint64_t store, uint64_t *ver);
/** True while the bump subscription is up and Redis was heard within page_stale_ms. */
bool pc_sub_healthy(void);
/** The resync epoch: read it before a version GET and hand it to pc_version_learn. */
uint64_t pc_epoch(void);
/** A version read from Redis (under epoch): kept unless a resync came between. */
void pc_version_learn(uint64_t store, uint64_t ver, uint64_t epoch);
/** A bump made by this process (the INCR's result): applied at once. */
void pc_version_bumped(uint64_t store, uint64_t ver);
/** The pub/sub channel bumps are published on ("shopd:cat:bump:<db>"). */
const char *pc_channel_name(void);
/** PC_PIPELINED: a page read from PostgreSQL in one pipeline with others. */
enum { PC_HIT_IO, PC_HIT_WORKER, PC_MISS, PC_PIPELINED };
void pc_count(int what);

/** Bumps the store's catalog version (after a committed write). */
void cat_bump(api_ctx_t *ctx);
/** Serves a public GET through the cache: fn builds the fresh reply on a miss.
 *  Admin callers bypass it. Adds ETag, Cache-Control, and answers 304 on a match. */
net_reply_t *cat_cached(api_ctx_t *ctx, net_reply_t *(*fn)(api_ctx_t *ctx));

/** cat_cached in two halves, for a batch handler that builds the pages of its
 *  misses together (one pipeline): cat_cache_begin answers a hit (freeing st's
 *  contents) or returns NULL, and then the caller builds the fresh reply and hands
 *  it to cat_cache_end, which keeps it (as cat_cached would) and returns the answer. */
enum { CAT_CACHE_FILL = 0, CAT_CACHE_ADMIN, CAT_CACHE_BYPASS };
typedef struct cat_cache_s {
    int mode; /**< FILL: a miss to keep; ADMIN, BYPASS: answered as built */
    char *key;
    uint64_t ver;
    bool have_ver, redis_ok;
    pc_page_t *local;
    struct redisReply *rv, *re;
} cat_cache_t;
net_reply_t *cat_cache_begin(api_ctx_t *ctx, cat_cache_t *st);
net_reply_t *cat_cache_end(api_ctx_t *ctx, cat_cache_t *st, net_reply_t *fresh);

#endif
