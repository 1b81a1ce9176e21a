/*
 * cart.h: shopping carts. A guest's cart lives in Redis under an unguessable
 * id (128 random bits, hex) that the server issues on the first add and the
 * client sends back in X-Cart-Id; a signed-in user's cart is a row in
 * PostgreSQL (carts, cart_items), found by the user. Cart writes run on the
 * store's actor (run class ordered) and a turn's writes are saved together:
 * one Redis pipeline for the guest carts, one transaction for the users'.
 * Reads run on any worker.
 *
 * What checkout needs is here: load the caller's cart, price its lines
 * against the catalog as it is now, and clear it once the order committed.
 */
#ifndef SHOPD_CART_H
#define SHOPD_CART_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "shopd/api.h"

#define CART_MAX_LINES 100 /**< lines per cart (422 beyond) */
#define CART_MAX_QTY 999   /**< quantity per line (422 beyond) */
#define CART_ID_LEN 32     /**< hex characters of a guest cart id */

extern const api_module_t cart_module;

typedef struct cart_line_s {
    uint64_t variant_id;
    int quantity;
} cart_line_t;

/** A cart as stored: who owns it and its lines (ascending variant id). */
typedef struct cart_s {
    bool exists;
    bool user;                      /**< a signed-in user's cart (PostgreSQL) */
    uint64_t user_id;               /**< when user */
    uint64_t row_id;                /**< carts.id when user and exists */
    char guest_id[CART_ID_LEN + 1]; /**< when !user */
    uint64_t ordered;               /**< a guest cart already checked out: its order id */
    char discount[65];              /**< applied discount code, "" if none */
    size_t n;
    cart_line_t lines[CART_MAX_LINES];
} cart_t;

/** A line priced against the catalog as it is now. */
typedef struct cart_item_s {
    uint64_t variant_id, product_id;
    int quantity;
    bool found;  /**< the variant exists */
    bool active; /**< its product is active (published) */
    int64_t unit_price;
    int64_t weight_g;
    int stock;
    char name[320];
    char sku[72];
    char options[512]; /**< JSON object text */
} cart_item_t;

/** True if the caller is a signed-in user of this store (a customer or a store
 *  admin): their cart is the persisted one, a guest's the one X-Cart-Id names. */
bool cart_caller_is_user(const api_ctx_t *ctx);

/** The caller's cart: the user's when a store user is signed in, else the guest
 *  cart that X-Cart-Id names. *out->exists is false when there is none (not an
 *  error). OK, UNAVAILABLE (PostgreSQL or Redis down) or ERR. c may be NULL when
 *  the caller is a guest. Any worker. */
shopd_rc_t cart_load(api_ctx_t *ctx, db_conn_t *c, cart_t *out);

/** cart_load for n requests of one store's turn in few round trips: one Redis
 *  pipeline for the guest carts, one query per user cart. rcs[i] per request. */
void cart_load_many(api_ctx_t *const *ctxs, size_t n, db_conn_t *c, cart_t *const *out,
                    shopd_rc_t *rcs);

/** cart_price for n carts of one store in one query: items[i][l] for
 *  carts[i]->lines[l]. OK or a failure (then no item is valid). */
shopd_rc_t cart_price_many(db_conn_t *c, uint64_t store_id, cart_t *const *carts,
                           cart_item_t *const *items, size_t n);

/** Prices cart's lines: items[i] for cart->lines[i]. One query. OK or a failure. */
shopd_rc_t cart_price(db_conn_t *c, uint64_t store_id, const cart_t *cart, cart_item_t *items);

/** The key that names the cart on its order (orders.cart_ref): "g:<id>" or
 *  "u:<row id>". buf of 48 bytes. */
const char *cart_ref(const cart_t *cart, char *buf);

/** Inside the checkout's transaction: removes a user's cart row (its lines go
 *  with it). OK when there was none. */
shopd_rc_t cart_delete_user_cart(db_conn_t *c, uint64_t store_id, uint64_t row_id);

/** After the checkout's commit: each guest cart guest_ids[i] becomes a tombstone
 *  naming its order order_ids[i] (kept for the cart's TTL), so a second checkout of
 *  it says so, and the next add with that id starts a new cart under a new id. One
 *  pipeline. Best effort: the orders' unique cart_ref already prevents a second
 *  order. Store's actor. */
void cart_retire_guests(api_ctx_t *ctx, const char *const *guest_ids, const uint64_t *order_ids,
                        size_t n);

/** At login (the handler of POST /auth/login, on the blocking pool): merges the
 *  guest cart named by X-Cart-Id into user_id's cart on the store's actor, then
 *  answers with login_reply (owned by the call). Quantities of a variant in both
 *  are summed, then capped at the stock and at 999; lines past 100 are dropped;
 *  the user's discount code wins, else the guest cart's is taken; the guest cart
 *  is deleted. A merge that fails (Redis or PostgreSQL down) leaves both carts as
 *  they were and the login still succeeds. Returns what the handler returns. */
net_reply_t *cart_login_merge(api_ctx_t *ctx, uint64_t user_id, net_reply_t *login_reply);

#endif
