/*
 * cart.c: loading, pricing and showing carts (see cart.h), and the cart
 * writes of one actor turn (cart_b_write).
 *
 * A guest cart is the Redis hash shopd:cart:<store>:<id>: fields "v<variant>"
 * -> quantity, "d" -> discount code, "o" -> the order it became (a tombstone:
 * no lines then). Every write refreshes its TTL (SHOPD_CART_TTL, 7 days).
 * A user's cart is carts + cart_items.
 *
 * A turn's writes: each request is parsed, the carts they touch are loaded
 * once (one pipeline of HGETALLs, one query per user cart), the catalog rows of
 * every line are read in one query, the operations apply in arrival order to
 * the carts in memory (so two adds to one cart in a turn see each other), and
 * the carts that changed are saved together: one Redis pipeline, one
 * transaction. A request's answer is its cart as its own operation left it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cart_priv.h"
#include "shopd/log.h"
#include "shopd/pricing.h"

/* ---------------------------------------------------------------- keys */

bool
cart_caller_is_user(const api_ctx_t *ctx)
{
    const msg_caller_t *c = ctx->caller;
    return c && c->user_id != 0 && c->store_id == ctx->store_id &&
           (c->role == MSG_ROLE_CUSTOMER || c->role == MSG_ROLE_STORE_ADMIN);
}

bool
cart_guest_id_valid(const char *p, size_t n)
{
    if (n != CART_ID_LEN)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((p[i] >= '0' && p[i] <= '9') || (p[i] >= 'a' && p[i] <= 'f')))
            return false;
    return true;
}

void
cart_guest_key(uint64_t store_id, const char *id, char *buf, size_t n)
{
    snprintf(buf, n, "shopd:cart:%llu:%s", (unsigned long long)store_id, id);
}

const char *
cart_ref(const cart_t *cart, char *buf)
{
    if (cart->user)
        snprintf(buf, 48, "u:%llu", (unsigned long long)cart->row_id);
    else
        snprintf(buf, 48, "g:%s", cart->guest_id);
    return buf;
}

/* ---------------------------------------------------------------- loading */

static int
line_cmp(const void *a, const void *b)
{
    const cart_line_t *x = a, *y = b;
    return x->variant_id < y->variant_id ? -1 : x->variant_id > y->variant_id;
}

shopd_rc_t
cart_parse_guest(const redisReply *r, cart_t *out)
{
    if (r == NULL)
        return SHOPD_UNAVAILABLE;
    if (r->type != REDIS_REPLY_ARRAY)
        return r->type == REDIS_REPLY_ERROR ? SHOPD_ERR : SHOPD_OK;
    out->exists = r->elements > 0;
    for (size_t i = 0; i + 1 < r->elements; i += 2) {
        const redisReply *k = r->element[i], *v = r->element[i + 1];
        if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
            continue;
        if (k->len > 1 && k->str[0] == 'v' && out->n < CART_MAX_LINES) {
            uint64_t id;
            long q = strtol(v->str, NULL, 10);
            if (shopd_id_parse(k->str + 1, k->len - 1, &id) && q > 0 && q <= CART_MAX_QTY) {
                out->lines[out->n].variant_id = id;
                out->lines[out->n].quantity = (int)q;
                out->n++;
            }
        } else if (k->len == 1 && k->str[0] == 'd') {
            snprintf(out->discount, sizeof(out->discount), "%.*s", (int)v->len, v->str);
        } else if (k->len == 1 && k->str[0] == 'o') {
            out->ordered = strtoull(v->str, NULL, 10);
        }
    }
    qsort(out->lines, out->n, sizeof(out->lines[0]), line_cmp);
    return SHOPD_OK;
}

shopd_rc_t
cart_load_user(db_conn_t *c, uint64_t store_id, uint64_t user_id, cart_t *out)
{
    char sid[24], uid[24];
    snprintf(sid, sizeof(sid), "%llu", (unsigned long long)store_id);
    snprintf(uid, sizeof(uid), "%llu", (unsigned long long)user_id);
    const char *p[] = {sid, uid};
    PGresult *r = db_exec(c, "cart_load_user",
                          "SELECT c.id, coalesce(c.discount_code, ''), i.variant_id, i.quantity "
                          "FROM carts c LEFT JOIN cart_items i ON i.store_id = c.store_id AND "
                          "i.cart_id = c.id WHERE c.store_id = $1 AND c.user_id = $2 "
                          "ORDER BY i.variant_id",
                          2, p);
    shopd_rc_t rc = db_result_rc(r);
    out->user = true;
    out->user_id = user_id;
    if (rc == SHOPD_OK && PQntuples(r) > 0) {
        out->exists = true;
        out->row_id = strtoull(PQgetvalue(r, 0, 0), NULL, 10);
        snprintf(out->discount, sizeof(out->discount), "%s", PQgetvalue(r, 0, 1));
        for (int i = 0; i < PQntuples(r) && out->n < CART_MAX_LINES; i++) {
            if (PQgetisnull(r, i, 2))
                continue;
            out->lines[out->n].variant_id = strtoull(PQgetvalue(r, i, 2), NULL, 10);
            out->lines[out->n].quantity = atoi(PQgetvalue(r, i, 3));
            out->n++;
        }
    }
    PQclear(r);
    return rc;
}

shopd_rc_t
cart_load(api_ctx_t *ctx, db_conn_t *c, cart_t *out)
{
    memset(out, 0, sizeof(*out));
    if (cart_caller_is_user(ctx)) {
        if (c == NULL)
            return SHOPD_ERR;
        return cart_load_user(c, ctx->store_id, ctx->caller->user_id, out);
    }
    const msg_str_t *id = &ctx->env->cart;
    if (id->n == 0 || !cart_guest_id_valid(id->p, id->n))
        return SHOPD_OK; /* no cart (a malformed id names none) */
    memcpy(out->guest_id, id->p, id->n);
    out->guest_id[id->n] = '\0';
    char key[96];
    cart_guest_key(ctx->store_id, out->guest_id, key, sizeof(key));
    redisReply *r = kv_command(ctx->worker->kv, "HGETALL %s", key);
    shopd_rc_t rc = cart_parse_guest(r, out);
    if (r)
        freeReplyObject(r);
    return rc;
}

shopd_rc_t
cart_price_ids(db_conn_t *c, uint64_t store_id, const uint64_t *ids, size_t n, cart_item_t *items)
{
    for (size_t i = 0; i < n; i++) {
        memset(&items[i], 0, sizeof(items[i]));
        items[i].variant_id = ids[i];
    }
    if (n == 0)
        return SHOPD_OK;
    char sid[24];
    snprintf(sid, sizeof(sid), "%llu", (unsigned long long)store_id);
    char *arr = shopd_malloc(n * 21 + 3), *w = arr;
    *w++ = '{';
    for (size_t i = 0; i < n; i++)
        w += sprintf(w, "%s%llu", i ? "," : "", (unsigned long long)ids[i]);
    *w++ = '}';
    *w = '\0';
    const char *p[] = {sid, arr};
    PGresult *r = db_exec(c, "cart_price",
                          "SELECT v.id, v.product_id, coalesce(v.price, p.base_price), "
                          "coalesce(v.weight_g, 0), v.stock, p.name, v.sku, v.options::text, "
                          "p.status = 'active' FROM product_variants v JOIN products p ON "
                          "p.store_id = v.store_id AND p.id = v.product_id "
                          "WHERE v.store_id = $1 AND v.id = ANY ($2::bigint[])",
                          2, p);
    shopd_free(arr);
    shopd_rc_t rc = db_result_rc(r);
    for (int row = 0; rc == SHOPD_OK && row < PQntuples(r); row++) {
        uint64_t id = strtoull(PQgetvalue(r, row, 0), NULL, 10);
        for (size_t i = 0; i < n; i++) {
            if (items[i].variant_id != id)
                continue;
            cart_item_t *it = &items[i];
            it->found = true;
            it->product_id = strtoull(PQgetvalue(r, row, 1), NULL, 10);
            it->unit_price = strtoll(PQgetvalue(r, row, 2), NULL, 10);
            it->weight_g = strtoll(PQgetvalue(r, row, 3), NULL, 10);
            it->stock = atoi(PQgetvalue(r, row, 4));
            snprintf(it->name, sizeof(it->name), "%s", PQgetvalue(r, row, 5));
            snprintf(it->sku, sizeof(it->sku), "%s", PQgetvalue(r, row, 6));
            snprintf(it->options, sizeof(it->options), "%s", PQgetvalue(r, row, 7));
            it->active = PQgetvalue(r, row, 8)[0] == 't';
        }
    }
    PQclear(r);
    return rc;
}

shopd_rc_t
cart_price(db_conn_t *c, uint64_t store_id, const cart_t *cart, cart_item_t *items)
{
    uint64_t ids[CART_MAX_LINES];
    for (size_t i = 0; i < cart->n; i++)
        ids[i] = cart->lines[i].variant_id;
    shopd_rc_t rc = cart_price_ids(c, store_id, ids, cart->n, items);
    for (size_t i = 0; i < cart->n; i++)
        items[i].quantity = cart->lines[i].quantity;
    return rc;
}

void
cart_load_many(api_ctx_t *const *ctxs, size_t n, db_conn_t *c, cart_t *const *out, shopd_rc_t *rcs)
{
    if (n == 0)
        return;
    kv_conn_t *kv = ctxs[0]->worker->kv;
    bool *asked = shopd_calloc(n, sizeof(*asked));
    for (size_t i = 0; i < n; i++) {
        api_ctx_t *ctx = ctxs[i];
        memset(out[i], 0, sizeof(*out[i]));
        rcs[i] = SHOPD_OK;
        if (cart_caller_is_user(ctx)) {
            rcs[i] = c ? cart_load_user(c, ctx->store_id, ctx->caller->user_id, out[i]) : SHOPD_ERR;
            continue;
        }
        const msg_str_t *id = &ctx->env->cart;
        if (id->n == 0 || !cart_guest_id_valid(id->p, id->n))
            continue;
        memcpy(out[i]->guest_id, id->p, id->n);
        out[i]->guest_id[id->n] = '\0';
        char key[96];
        cart_guest_key(ctx->store_id, out[i]->guest_id, key, sizeof(key));
        if (kv_append(kv, "HGETALL %s", key) == 0)
            asked[i] = true;
        else
            rcs[i] = SHOPD_UNAVAILABLE;
    }
    bool gone = false;
    for (size_t i = 0; i < n; i++) {
        if (!asked[i])
            continue;
        redisReply *r = gone ? NULL : kv_get_reply(kv);
        gone = gone || r == NULL;
        rcs[i] = cart_parse_guest(r, out[i]);
        if (r)
            freeReplyObject(r);
    }
    shopd_free(asked);
}

shopd_rc_t
cart_price_many(db_conn_t *c, uint64_t store_id, cart_t *const *carts, cart_item_t *const *items,
                size_t n)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += carts[i]->n;
    uint64_t *ids = shopd_calloc(total ? total : 1, sizeof(*ids));
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        for (size_t l = 0; l < carts[i]->n; l++)
            ids[k++] = carts[i]->lines[l].variant_id;
    cart_item_t *all = shopd_calloc(total ? total : 1, sizeof(*all));
    shopd_rc_t rc = cart_price_ids(c, store_id, ids, total, all);
    k = 0;
    for (size_t i = 0; i < n; i++)
        for (size_t l = 0; l < carts[i]->n; l++, k++) {
            items[i][l] = all[k];
            items[i][l].quantity = carts[i]->lines[l].quantity;
        }
    shopd_free(all);
    shopd_free(ids);
    return rc;
}

void
cart_retire_guests(api_ctx_t *ctx, const char *const *guest_ids, const uint64_t *order_ids,
                   size_t n)
{
    char ttl[24];
    snprintf(ttl, sizeof(ttl), "%d", ctx->app->cfg->cart_ttl);
    kv_conn_t *kv = ctx->worker->kv;
    size_t queued = 0;
    for (size_t i = 0; i < n; i++) {
        char key[96], oid[24];
        cart_guest_key(ctx->store_id, guest_ids[i], key, sizeof(key));
        snprintf(oid, sizeof(oid), "%llu", (unsigned long long)order_ids[i]);
        if (kv_append(kv, "DEL %s", key) || kv_append(kv, "HSET %s o %s", key, oid) ||
            kv_append(kv, "EXPIRE %s %s", key, ttl))
            break;
        queued += 3;
    }
    for (size_t i = 0; i < queued; i++) {
        redisReply *r = kv_get_reply(kv);
        if (r == NULL) {
            log_warn(
                "cart tombstones not written store=%llu (the orders' cart_ref still guard them)",
                (unsigned long long)ctx->store_id);
            break;
        }
        freeReplyObject(r);
    }
}

shopd_rc_t
cart_delete_user_cart(db_conn_t *c, uint64_t store_id, uint64_t row_id)
{
    char sid[24], id[24];
    snprintf(sid, sizeof(sid), "%llu", (unsigned long long)store_id);
    snprintf(id, sizeof(id), "%llu", (unsigned long long)row_id);
    const char *p[] = {sid, id};
    PGresult *r =
        db_exec(c, "cart_delete", "DELETE FROM carts WHERE store_id = $1 AND id = $2", 2, p);
    shopd_rc_t rc = db_result_rc(r);
    PQclear(r);
    return rc;
}

/* ---------------------------------------------------------------- the view */

json_t *
cart_view(api_ctx_t *ctx, db_conn_t *c, const cart_t *cart, const cart_item_t *items)
{
    json_t *lines = json_array();
    int64_t subtotal = 0;
    long count = 0;
    bool ready = cart->n > 0;
    for (size_t i = 0; i < cart->n; i++) {
        const cart_item_t *it = &items[i];
        const char *why = !it->found                 ? "variant_deleted"
                          : !it->active              ? "product_unavailable"
                          : it->stock < it->quantity ? "insufficient_stock"
                                                     : NULL;
        ready = ready && why == NULL;
        int64_t line_total = it->found ? it->unit_price * it->quantity : 0;
        json_t *o = json_pack("{s:I, s:I, s:I, s:s, s:s, s:I, s:i, s:I, s:b, s:i}", "id",
                              (json_int_t)it->variant_id, "variant_id", (json_int_t)it->variant_id,
                              "product_id", (json_int_t)it->product_id, "name", it->name, "sku",
                              it->sku, "unit_price", (json_int_t)it->unit_price, "quantity",
                              it->quantity, "line_total", (json_int_t)line_total, "available",
                              why == NULL, "stock_available", it->found ? it->stock : 0);
        json_t *opts = it->found ? json_loads(it->options, 0, NULL) : NULL;
        json_object_set_new(o, "options", opts ? opts : json_object());
        json_object_set_new(o, "unavailable_reason", why ? json_string(why) : json_null());
        json_array_append_new(lines, o);
        if (why == NULL || (it->found && it->active)) {
            subtotal += line_total;
            count += it->quantity;
        }
    }
    json_t *v = json_object();
    json_object_set_new(v, "id", cart->user ? json_null() : json_string(cart->guest_id));
    json_object_set_new(v, "currency", json_string(ctx->store ? ctx->store->currency : ""));
    json_object_set_new(v, "items", lines);
    json_object_set_new(v, "item_count", json_integer(count));
    json_object_set_new(v, "subtotal", json_integer(subtotal));
    json_t *disc = json_null();
    if (cart->discount[0] && c) {
        pricing_discount_t d;
        pricing_discount_why_t why = PRICING_DISCOUNT_UNKNOWN;
        uint64_t uid = cart->user ? cart->user_id : 0;
        if (pricing_discount_find(c, ctx->store_id, cart->discount, subtotal, uid, NULL, &d,
                                  &why) == SHOPD_OK) {
            disc = json_pack("{s:s, s:b, s:I}", "code", cart->discount, "applies",
                             why == PRICING_DISCOUNT_OK, "amount",
                             (json_int_t)(why == PRICING_DISCOUNT_OK
                                              ? pricing_discount_amount(&d, subtotal)
                                              : 0));
            if (why != PRICING_DISCOUNT_OK)
                json_object_set_new(disc, "reason", json_string(pricing_discount_code(why)));
        }
    }
    json_object_set_new(v, "discount", disc);
    json_object_set_new(v, "checkout_ready", json_boolean(ready));
    return v;
}

net_reply_t *
cart_h_get(api_ctx_t *ctx)
{
    cart_t *cart = arena_calloc(ctx->arena, 1, sizeof(*cart));
    db_conn_t *c = db_acquire(ctx->app->db, 2000);
    if (c == NULL)
        return api_unavailable("the database");
    net_reply_t *reply = NULL;
    shopd_rc_t rc = cart_load(ctx, c, cart);
    if (rc == SHOPD_OK && cart->ordered)
        memset(cart->lines, 0, sizeof(cart->lines)), cart->n = 0;
    cart_item_t *items = arena_alloc(ctx->arena, sizeof(*items) * (cart->n ? cart->n : 1));
    if (rc == SHOPD_OK)
        rc = cart_price(c, ctx->store_id, cart, items);
    if (rc == SHOPD_OK) {
        if (!cart->exists && !cart->user)
            cart->guest_id[0] = '\0';
        json_t *v = cart_view(ctx, c, cart, items);
        if (!cart->user && cart->guest_id[0] == '\0')
            json_object_set_new(v, "id", json_null());
        reply = api_json(SHOPD_OK, v);
    } else {
        reply = rc == SHOPD_UNAVAILABLE ? api_unavailable("the cart store")
                                        : api_internal(ctx, "cart read failed");
    }
    db_release(c);
    return reply;
}
