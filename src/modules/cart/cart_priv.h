/*
 * cart_priv.h: what the cart module's files share (cart.c: loading, pricing,
 * the view; write.c: a turn's writes; module.c: the routes).
 */
#ifndef SHOPD_CART_PRIV_H
#define SHOPD_CART_PRIV_H

#include "shopd/cart.h"

/** True if p (n bytes) has the form of a guest cart id (32 lower-case hex). */
bool cart_guest_id_valid(const char *p, size_t n);
/** The Redis key of a guest cart. */
void cart_guest_key(uint64_t store_id, const char *id, char *buf, size_t n);
/** Parses an HGETALL reply into out (lines sorted); OK, UNAVAILABLE (r NULL) or ERR. */
shopd_rc_t cart_parse_guest(const redisReply *r, cart_t *out);
/** Loads user_id's cart from PostgreSQL into out (exists false when none). */
shopd_rc_t cart_load_user(db_conn_t *c, uint64_t store_id, uint64_t user_id, cart_t *out);
/** Prices n variants (items[i] for ids[i]) in one query. */
shopd_rc_t cart_price_ids(db_conn_t *c, uint64_t store_id, const uint64_t *ids, size_t n,
                          cart_item_t *items);
/** The cart's JSON answer (new reference). c may be NULL (no discount check then). */
json_t *cart_view(api_ctx_t *ctx, db_conn_t *c, const cart_t *cart, const cart_item_t *items);

net_reply_t *cart_h_get(api_ctx_t *ctx);
void cart_b_write(api_ctx_t *ctxs, size_t n, net_reply_t **replies);

#endif
