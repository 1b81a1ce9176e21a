/*
 * checkout.c: POST /api/v1/checkout, batched on the store's actor.
 *
 * A turn's checkouts go through three steps:
 *   1. each is read and priced on its own (cart, catalog, addresses, shipping
 *      rate, tax, discount, totals, expected_total): reads only, so a refusal
 *      here has touched nothing;
 *   2. one transaction for all of them. The plain checkouts (no Idempotency-Key,
 *      no discount code) are written set-based, in two round trips whatever
 *      their number (apply_set): lock the batch's variants and read their stock,
 *      decide in arrival order which checkouts fit, then one statement writes all
 *      their orders, items, ledger rows, first events, outbox rows and payment
 *      rows, takes a block of order numbers and the stock. The others follow,
 *      each in a savepoint of its own: conditional decrements in ascending
 *      variant id, the order, the discount use, the key. A checkout that finds
 *      short stock or a used-up code fails alone; the stock an earlier checkout
 *      of the batch took counts for the later ones, since they share the
 *      transaction. The inline providers' answers are recorded in it too;
 *   3. after the commit, guest carts are retired and the payments created with
 *      the provider (order_pay_apply), then each answer is the order as it is.
 *
 * Correctness does not rest on the actor: the decrement is conditional and the
 * order's cart_ref is unique, so two processes serving one store cannot
 * oversell or turn one cart into two orders.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "order_priv.h"
#include "shopd/auth.h"
#include "shopd/catalog.h"
#include "shopd/idem.h"
#include "shopd/log.h"
#include "shopd/pricing.h"

typedef struct co_s {
    api_ctx_t *ctx;
    net_reply_t *reply; /* the answer, once known (a refusal, or set in step 3) */
    bool ready;         /* passed step 1 */
    cart_t cart;
    cart_item_t items[CART_MAX_LINES];
    int64_t line_total[CART_MAX_LINES], line_tax[CART_MAX_LINES];
    json_t *ship, *bill;
    char email[256];
    uint64_t user_id;
    pricing_rate_t rate;
    pricing_tax_t tax;
    bool has_discount;
    pricing_discount_t disc;
    int64_t subtotal, discount, shipping, tax_total, total, weight;
    int count;
    const pay_provider_t *provider;
    /* Idempotency-Key (PostgreSQL: in the transaction of the order) */
    bool keyed;
    char key[IDEM_KEY_MAX + 1];
    uint8_t fp[IDEM_FP_LEN];
    /* step 2's results, reset by every attempt */
    uint64_t order_id, payment_id, number;
    struct co_s *twin;  /* an earlier checkout of this batch with the same key */
    shopd_rc_t load_rc; /* loading the cart and pricing it (prefetch) */
    bool short_stock;   /* step 2 found a line short (SH001) */
    bool set_paid;      /* apply_set asked its (inline) provider: pay holds the answer */
    order_pay_t pay;
    char *rendered; /* the order's JSON after the payment step (render_all), malloc'd */
    size_t rendered_len;
    bool late; /* answered off the actor (late_run) */
} co_t;

/* Tax rates and shipping rates looked up in this batch: most checkouts of a turn
 * ship to a few places with carts alike. A rate is kept for its exact inputs. */
typedef struct tax_cache_s {
    size_t n;
    struct {
        char country[4], region[104];
        pricing_tax_t tax;
    } e[8];
    size_t nr;
    struct {
        uint64_t rate_id;
        char country[4];
        int64_t subtotal, weight;
        shopd_rc_t rc;
        pricing_rate_t rate;
    } r[16];
    /* With the table provider: the rates of each country, priced per cart in C,
     * since carts differ in subtotal and weight far more than in country. */
    size_t nz;
    struct {
        char country[4];
        pricing_rules_t rules;
    } z[4];
    /* the store's provider for a checkout that names none, and for "stripe" */
    bool have_prov[2];
    const pay_provider_t *prov[2];
} tax_cache_t;

static const pay_provider_t *
provider_for(tax_cache_t *tc, db_conn_t *c, uint64_t store_id, const char *name)
{
    if (name && strcmp(name, "stripe") != 0)
        return pay_provider_for_store(c, store_id, name); /* by name: no query */
    int k = name != NULL;
    if (!tc->have_prov[k]) {
        tc->prov[k] = pay_provider_for_store(c, store_id, name);
        tc->have_prov[k] = true;
    }
    return tc->prov[k];
}

static shopd_rc_t
rate_for(tax_cache_t *tc, db_conn_t *c, uint64_t store_id, uint64_t rate_id, const char *country,
         int64_t subtotal, int64_t weight, pricing_rate_t *out)
{
    const char *cc = country ? country : "";
    if (pricing_rules_apply()) {
        size_t i;
        for (i = 0; i < tc->nz && strcmp(tc->z[i].country, cc) != 0; i++)
            ;
        if (i == tc->nz) {
            /* The last slot is reused: a fifth country in one batch is rare. */
            i = tc->nz < SHOPD_ARRAY_LEN(tc->z) ? tc->nz : tc->nz - 1;
            shopd_rc_t rc = pricing_shipping_rules(c, store_id, country, &tc->z[i].rules);
            if (rc != SHOPD_OK) {
                tc->nz = i; /* the slot holds nothing usable */
                return rc;
            }
            snprintf(tc->z[i].country, sizeof(tc->z[0].country), "%s", cc);
            tc->nz = i + 1;
        }
        return pricing_rules_rate(&tc->z[i].rules, rate_id, subtotal, weight, out);
    }
    for (size_t i = 0; i < tc->nr; i++)
        if (tc->r[i].rate_id == rate_id && tc->r[i].subtotal == subtotal &&
            tc->r[i].weight == weight && strcmp(tc->r[i].country, cc) == 0) {
            *out = tc->r[i].rate;
            return tc->r[i].rc;
        }
    shopd_rc_t rc = pricing_shipping_rate(c, store_id, rate_id, country, subtotal, weight, out);
    if ((rc == SHOPD_OK || rc == SHOPD_NOTFOUND) && tc->nr < SHOPD_ARRAY_LEN(tc->r)) {
        tc->r[tc->nr].rate_id = rate_id;
        snprintf(tc->r[tc->nr].country, sizeof(tc->r[0].country), "%s", cc);
        tc->r[tc->nr].subtotal = subtotal;
        tc->r[tc->nr].weight = weight;
        tc->r[tc->nr].rc = rc;
        tc->r[tc->nr++].rate = *out;
    }
    return rc;
}

static shopd_rc_t
tax_for(tax_cache_t *tc, db_conn_t *c, uint64_t store_id, const char *country, const char *region,
        pricing_tax_t *out)
{
    const char *rg = region ? region : "";
    for (size_t i = 0; i < tc->n; i++)
        if (strcmp(tc->e[i].country, country ? country : "") == 0 &&
            strcmp(tc->e[i].region, rg) == 0) {
            *out = tc->e[i].tax;
            return SHOPD_OK;
        }
    shopd_rc_t rc = pricing_tax_for(c, store_id, country, region, out);
    if (rc == SHOPD_OK && tc->n < SHOPD_ARRAY_LEN(tc->e)) {
        snprintf(tc->e[tc->n].country, sizeof(tc->e[0].country), "%s", country ? country : "");
        snprintf(tc->e[tc->n].region, sizeof(tc->e[0].region), "%s", rg);
        tc->e[tc->n++].tax = *out;
    }
    return rc;
}

/* Loads every checkout's cart and prices every line in a few round trips (one
 * Redis pipeline, one catalog query), instead of two per checkout. */
static void
prefetch(co_t **cos, size_t n, db_conn_t *c)
{
    api_ctx_t **ctxs = shopd_calloc(n, sizeof(*ctxs));
    cart_t **carts = shopd_calloc(n, sizeof(*carts));
    cart_item_t **items = shopd_calloc(n, sizeof(*items));
    shopd_rc_t *rcs = shopd_calloc(n, sizeof(*rcs));
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (cos[i]->reply)
            continue;
        ctxs[k] = cos[i]->ctx;
        carts[k] = &cos[i]->cart;
        k++;
    }
    cart_load_many(ctxs, k, c, carts, rcs);
    size_t m = 0;
    for (size_t i = 0, j = 0; i < n; i++) {
        if (cos[i]->reply)
            continue;
        cos[i]->load_rc = rcs[j++];
        if (cos[i]->load_rc == SHOPD_OK && !cos[i]->cart.ordered && cos[i]->cart.n) {
            carts[m] = &cos[i]->cart;
            items[m] = cos[i]->items;
            m++;
        }
    }
    if (m && cart_price_many(c, cos[0]->ctx->store_id, carts, items, m) != SHOPD_OK)
        for (size_t i = 0; i < n; i++)
            if (cos[i]->load_rc == SHOPD_OK && cos[i]->cart.n)
                cos[i]->load_rc = SHOPD_UNAVAILABLE;
    shopd_free(rcs);
    shopd_free(items);
    shopd_free(carts);
    shopd_free(ctxs);
}

/* 409 with the totals as they are now, for a client whose expected_total is stale. */
static net_reply_t *
price_changed(const co_t *co)
{
    json_t *e =
        json_pack("{s:{s:s, s:s, s:[{s:s, s:s}], s:{s:I, s:I, s:I, s:I, s:I}}}", "error", "code",
                  "price_changed", "message", "the total changed since the client computed it",
                  "details", "field", "expected_total", "issue", "does not match the current total",
                  "totals", "subtotal", (json_int_t)co->subtotal, "discount_total",
                  (json_int_t)co->discount, "shipping_total", (json_int_t)co->shipping, "tax_total",
                  (json_int_t)co->tax_total, "total", (json_int_t)co->total);
    return api_json(SHOPD_CONFLICT, e);
}

static net_reply_t *
unavailable_lines(const co_t *co)
{
    json_t *d = json_array();
    for (size_t i = 0; i < co->cart.n; i++) {
        const cart_item_t *it = &co->items[i];
        const char *why = !it->found    ? "variant_deleted"
                          : !it->active ? "product_unavailable"
                                        : NULL;
        if (why)
            json_array_append_new(d, json_pack("{s:s, s:s, s:I}", "field", "items", "issue", why,
                                               "variant_id", (json_int_t)it->variant_id));
    }
    json_t *e = json_pack("{s:{s:s, s:s, s:o}}", "error", "code", "cart_unavailable", "message",
                          "some items of the cart can no longer be bought; remove them first",
                          "details", d);
    return api_json(SHOPD_CONFLICT, e);
}

/* The address from an inline object or a saved address id; NULL with *reply or
 * issues recorded when it is missing or wrong. */
static json_t *
address_of(co_t *co, db_conn_t *c, api_val_t *v, const char *inline_key, const char *id_key,
           bool billing, net_reply_t **reply)
{
    json_t *body = co->ctx->body;
    json_t *a = json_object_get(body, inline_key);
    json_t *id = json_object_get(body, id_key);
    char prefix[40];
    snprintf(prefix, sizeof(prefix), "%s.", inline_key);
    if (a && !json_is_null(a)) {
        if (!json_is_object(a)) {
            api_val_add(v, inline_key, "must be an object");
            return NULL;
        }
        return pricing_address_check(v, a, prefix) ? json_incref(a) : NULL;
    }
    shopd_rc_t rc = SHOPD_NOTFOUND;
    json_t *got = NULL;
    if (id && !json_is_null(id)) {
        if (!json_is_integer(id) || json_integer_value(id) < 1) {
            api_val_add(v, id_key, "must be a positive integer");
            return NULL;
        }
        if (co->user_id == 0) {
            api_val_add(v, id_key, "saved addresses need a signed-in customer");
            return NULL;
        }
        got = pricing_address_load(c, co->ctx->store_id, co->user_id,
                                   (uint64_t)json_integer_value(id), &rc);
        if (got == NULL && rc == SHOPD_NOTFOUND)
            *reply = api_fail_field(SHOPD_NOTFOUND, "address_not_found", "no such saved address",
                                    id_key, "is not one of your addresses");
    } else if (co->user_id) {
        got = pricing_address_default(c, co->ctx->store_id, co->user_id, billing, &rc);
    }
    if (got == NULL && rc != SHOPD_NOTFOUND && *reply == NULL)
        *reply = api_unavailable("the database");
    return got;
}

static bool
user_email(db_conn_t *c, uint64_t store_id, uint64_t user_id, char *out, size_t n)
{
    char sid[24], uid[24];
    snprintf(sid, sizeof(sid), "%llu", (unsigned long long)store_id);
    snprintf(uid, sizeof(uid), "%llu", (unsigned long long)user_id);
    const char *p[] = {sid, uid};
    PGresult *r = db_exec(c, "co_user_email",
                          "SELECT email FROM users WHERE tenant_id = $1 AND id = $2", 2, p);
    bool ok = db_result_rc(r) == SHOPD_OK && PQntuples(r) == 1;
    if (ok)
        snprintf(out, n, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    return ok;
}

/* Step 1 for one checkout: read, validate and price. Sets co->reply on refusal. */
static void
prepare(co_t *co, db_conn_t *c, tax_cache_t *tc)
{
    api_ctx_t *ctx = co->ctx;
    json_t *body = ctx->body;
    api_val_t v = {0};
    static const char *const allowed[] = {"email",
                                          "shipping_address",
                                          "address_id",
                                          "billing_address",
                                          "billing_address_id",
                                          "shipping_rate_id",
                                          "discount_code",
                                          "payment_provider",
                                          "expected_total",
                                          NULL};
    api_val_only(&v, body, allowed);
    if (cart_caller_is_user(ctx))
        co->user_id = ctx->caller->user_id;
    const char *email = api_val_string(&v, body, "email", co->user_id == 0, 3, 254);
    if (email && !auth_email_valid(email))
        api_val_add(&v, "email", "must be an e-mail address like name@example.com");
    long long rate_id = 0, expected = -1;
    if (api_val_int(&v, body, "shipping_rate_id", 1, INT64_MAX, &rate_id) == 0)
        api_val_add(&v, "shipping_rate_id", "is required");
    api_val_int(&v, body, "expected_total", 0, INT64_MAX, &expected);
    const char *code = api_val_string(&v, body, "discount_code", false, 1, 64);
    const char *prov = api_val_string(&v, body, "payment_provider", false, 1, 32);
    co->provider = provider_for(tc, c, ctx->store_id, prov);
    if (co->provider == NULL)
        api_val_add(&v, "payment_provider", "is not a payment provider of this store");
    co->ship = address_of(co, c, &v, "shipping_address", "address_id", false, &co->reply);
    if (co->ship == NULL && co->reply == NULL &&
        json_object_get(body, "shipping_address") == NULL && v.n == 0)
        api_val_add(&v, "shipping_address", "is required (or address_id)");
    if (co->reply)
        return;
    co->bill = address_of(co, c, &v, "billing_address", "billing_address_id", true, &co->reply);
    if (co->reply)
        return;
    if (co->bill == NULL && co->ship)
        co->bill = json_incref(co->ship);
    if (v.n) {
        co->reply = api_val_reply(&v);
        return;
    }
    if (co->user_id)
        user_email(c, ctx->store_id, co->user_id, co->email, sizeof(co->email));
    else
        snprintf(co->email, sizeof(co->email), "%s", email);

    /* The cart and its lines were loaded for the whole batch (prefetch). */
    shopd_rc_t rc = co->load_rc;
    if (rc != SHOPD_OK) {
        co->reply = api_unavailable("the cart store");
        return;
    }
    if (co->cart.ordered) {
        json_t *e =
            json_pack("{s:{s:s, s:s, s:[{s:s, s:s, s:I}]}}", "error", "code", "cart_checked_out",
                      "message", "this cart is already an order", "details", "field", "X-Cart-Id",
                      "issue", "already ordered", "order_id", (json_int_t)co->cart.ordered);
        co->reply = api_json(SHOPD_CONFLICT, e);
        return;
    }
    if (!co->cart.exists || co->cart.n == 0) {
        co->reply = api_fail(SHOPD_INVALID, "cart_empty", "the cart is empty");
        return;
    }
    for (size_t i = 0; i < co->cart.n; i++) {
        cart_item_t *it = &co->items[i];
        if (!it->found || !it->active) {
            co->reply = unavailable_lines(co);
            return;
        }
        co->line_total[i] = it->unit_price * it->quantity;
        co->subtotal += co->line_total[i];
        co->weight += it->weight_g * it->quantity;
        co->count += it->quantity;
    }
    /* The discount: the one named here, else the cart's; checked again in step 2. */
    const char *dcode = code ? code : (co->cart.discount[0] ? co->cart.discount : NULL);
    if (dcode) {
        pricing_discount_why_t why;
        if (pricing_discount_find(c, ctx->store_id, dcode, co->subtotal, co->user_id, co->email,
                                  &co->disc, &why) != SHOPD_OK) {
            co->reply = api_unavailable("the database");
            return;
        }
        if (why != PRICING_DISCOUNT_OK) {
            co->reply =
                api_fail_field(why == PRICING_DISCOUNT_UNKNOWN ? SHOPD_NOTFOUND : SHOPD_INVALID,
                               pricing_discount_code(why), "this code cannot be used",
                               "discount_code", pricing_discount_code(why));
            return;
        }
        co->has_discount = true;
        co->discount = pricing_discount_amount(&co->disc, co->subtotal);
    }
    const char *country = json_string_value(json_object_get(co->ship, "country"));
    const char *region = json_string_value(json_object_get(co->ship, "region"));
    rc = rate_for(tc, c, ctx->store_id, (uint64_t)rate_id, country, co->subtotal, co->weight,
                  &co->rate);
    if (rc == SHOPD_NOTFOUND) {
        co->reply = api_fail_field(SHOPD_INVALID, "shipping_rate_unavailable",
                                   "this shipping rate does not apply to this cart or address",
                                   "shipping_rate_id", "does not apply");
        return;
    }
    if (rc != SHOPD_OK || tax_for(tc, c, ctx->store_id, country, region, &co->tax) != SHOPD_OK) {
        co->reply = api_unavailable("the database");
        return;
    }
    co->shipping = co->rate.price;
    /* Tax per line on what the line costs after its share of the discount (shares
     * proportional to line totals, the remainder on the last line), half up. */
    int64_t left = co->discount;
    for (size_t i = 0; i < co->cart.n; i++) {
        int64_t share = i + 1 == co->cart.n || co->subtotal == 0
                            ? left
                            : (int64_t)((__int128)co->discount * co->line_total[i] / co->subtotal);
        if (share > left)
            share = left;
        left -= share;
        co->line_tax[i] =
            pricing_tax_amount(co->line_total[i] - share, co->tax.bps, co->tax.inclusive);
        co->tax_total += co->line_tax[i];
    }
    if (co->tax.on_shipping)
        co->tax_total += pricing_tax_amount(co->shipping, co->tax.bps, co->tax.inclusive);
    co->total =
        co->subtotal - co->discount + co->shipping + (co->tax.inclusive ? 0 : co->tax_total);
    if (expected >= 0 && expected != co->total) {
        co->reply = price_changed(co);
        return;
    }
    co->ready = true;
}

typedef struct batch_s {
    co_t **cos; /* the checkouts that passed step 1 */
    size_t n;
} batch_t;

static net_reply_t *
short_stock(db_conn_t *c, co_t *co)
{
    char sid[24];
    snprintf(sid, sizeof(sid), "%llu", (unsigned long long)co->ctx->store_id);
    char ids[CART_MAX_LINES * 21 + 3], *w = ids;
    *w++ = '{';
    for (size_t i = 0; i < co->cart.n; i++)
        w += sprintf(w, "%s%llu", i ? "," : "", (unsigned long long)co->items[i].variant_id);
    strcpy(w, "}");
    const char *p[] = {sid, ids};
    PGresult *r = db_exec(c, "co_stock",
                          "SELECT id, stock FROM product_variants WHERE store_id = $1 AND "
                          "id = ANY ($2::bigint[])",
                          2, p);
    json_t *d = json_array();
    for (size_t i = 0; i < co->cart.n; i++) {
        int stock = 0;
        for (int row = 0; db_result_rc(r) == SHOPD_OK && row < PQntuples(r); row++)
            if (strtoull(PQgetvalue(r, row, 0), NULL, 10) == co->items[i].variant_id)
                stock = atoi(PQgetvalue(r, row, 1));
        if (stock < co->items[i].quantity)
            json_array_append_new(d, json_pack("{s:s, s:s, s:I, s:i, s:i}", "field", "items",
                                               "issue", "insufficient_stock", "variant_id",
                                               (json_int_t)co->items[i].variant_id, "requested",
                                               co->items[i].quantity, "available", stock));
    }
    PQclear(r);
    json_t *e = json_pack("{s:{s:s, s:s, s:o}}", "error", "code", "insufficient_stock", "message",
                          "not enough stock for some items; nothing was ordered", "details", d);
    return api_json(SHOPD_CONFLICT, e);
}

static char *
items_json(const co_t *co)
{
    json_t *a = json_array();
    for (size_t i = 0; i < co->cart.n; i++) {
        const cart_item_t *it = &co->items[i];
        json_t *o = json_pack("{s:I, s:I, s:s, s:s, s:I, s:i, s:I, s:I}", "variant_id",
                              (json_int_t)it->variant_id, "product_id", (json_int_t)it->product_id,
                              "name", it->name, "sku", it->sku, "unit_price",
                              (json_int_t)it->unit_price, "quantity", it->quantity, "line_total",
                              (json_int_t)co->line_total[i], "tax", (json_int_t)co->line_tax[i]);
        json_t *opts = json_loads(it->options, 0, NULL);
        json_object_set_new(o, "options", opts ? opts : json_object());
        json_array_append_new(a, o);
    }
    char *s = json_dumps(a, JSON_COMPACT);
    json_decref(a);
    return s;
}

/* The answer for a placed order: 201 with the order and the payment's next
 * step, or 402 payment_declined carrying the order. py NULL: payment pending. */
static net_reply_t *
checkout_answer(db_conn_t *c, const co_t *co, const order_pay_t *py)
{
    return order_checkout_answer(c, co->ctx->store_id, co->order_id, co->number, co->rendered,
                                 co->rendered_len, py);
}

net_reply_t *
order_checkout_answer(db_conn_t *c, uint64_t store_id, uint64_t order_id, uint64_t number,
                      const char *rendered, size_t rendered_len, const order_pay_t *py)
{
    size_t len = rendered_len;
    shopd_rc_t rrc;
    /* No connection (late_drop): the answer names the order without its body. */
    char *text = rendered || c == NULL ? NULL : order_render(c, store_id, order_id, 0, &len, &rrc);
    const char *json = rendered ? rendered : text;
    pay_status_t status = py && py->rc == SHOPD_OK ? py->result.status : PAY_PENDING;
    const char *secret = py && py->result.client_secret[0] ? py->result.client_secret : NULL;
    const char *action = py && py->result.next_action[0] ? py->result.next_action : NULL;
    json_t *pay = json_pack("{s:s, s:s?, s:s?}", "status", pay_status_name(status), "client_secret",
                            secret, "next_action", action);
    if (json && status != PAY_FAILED) {
        /* The common answer: the order's JSON as PostgreSQL wrote it with "payment"
         * spliced in before its closing brace, compacted as GET /orders/:id sends
         * it; no parse and re-dump of the whole order. */
        char *ps = json_dumps(pay, JSON_COMPACT);
        size_t n = len;
        while (n && json[n - 1] != '}')
            n--;
        net_reply_t *r = NULL;
        if (n > 1 && json[0] == '{') {
            char *buf = shopd_malloc(len + strlen(ps) + 16);
            memcpy(buf, json, --n); /* without the closing brace */
            n += (size_t)sprintf(buf + n, ",\"payment\":%s}", ps);
            r = api_raw_json(SHOPD_CREATED, buf, n);
            shopd_free(buf);
        }
        free(ps);
        if (r) {
            json_decref(pay);
            free(text);
            return r;
        }
    }
    json_t *order = json ? json_loadb(json, len, 0, NULL) : NULL;
    free(text);
    if (order == NULL) /* the order exists; only its rendering failed */
        order = json_pack("{s:I, s:I}", "id", (json_int_t)order_id, "number", (json_int_t)number);
    json_object_set_new(order, "payment", pay);
    if (status == PAY_FAILED) {
        json_t *e = json_pack(
            "{s:{s:s, s:s, s:[{s:s, s:s}], s:o}}", "error", "code", "payment_declined", "message",
            py->result.message[0] ? py->result.message : "the payment was declined", "details",
            "field", "payment", "issue", py->result.decline_code, "order", order);
        return api_json(SHOPD_PAYMENT_FAILED, e);
    }
    return api_json(SHOPD_CREATED, order);
}

/* After the commit: the guest carts that became orders, in one pipeline. */
static void
retire_guest_carts(batch_t *b)
{
    const char **ids = shopd_calloc(b->n, sizeof(*ids));
    uint64_t *orders = shopd_calloc(b->n, sizeof(*orders));
    size_t k = 0;
    for (size_t i = 0; i < b->n; i++) {
        co_t *co = b->cos[i];
        if (co->order_id && !co->twin && !co->cart.user) {
            ids[k] = co->cart.guest_id;
            orders[k++] = co->order_id;
        }
    }
    if (k)
        cart_retire_guests(b->cos[0]->ctx, ids, orders, k);
    shopd_free(orders);
    shopd_free(ids);
}

/* The JSON of every order the batch placed and answers on the actor, as it stands
 * after the payment step. A checkout left without it renders its own
 * (checkout_answer). */
static void
render_all(db_conn_t *c, batch_t *b)
{
    uint64_t *ids = shopd_calloc(b->n, sizeof(*ids));
    co_t **of = shopd_calloc(b->n, sizeof(*of));
    char **out = shopd_calloc(b->n, sizeof(*out));
    size_t *lens = shopd_calloc(b->n, sizeof(*lens)), k = 0;
    shopd_rc_t rrc; /* an order left without its text renders its own */
    for (size_t i = 0; i < b->n; i++)
        if (b->cos[i]->order_id && !b->cos[i]->twin && !b->cos[i]->late) {
            of[k] = b->cos[i];
            ids[k++] = b->cos[i]->order_id;
        }
    order_render_many(c, b->cos[0]->ctx->store_id, ids, k, 0, out, lens, &rrc);
    for (size_t i = 0; i < k; i++) {
        of[i]->rendered = out[i];
        of[i]->rendered_len = lens[i];
    }
    shopd_free(lens);
    shopd_free(out);
    shopd_free(of);
    shopd_free(ids);
}

/* The answers of a batch's committed orders that need nothing more of the actor:
 * no Idempotency-Key to keep the answer under, no twin to copy it to, a payment
 * already made (an inline provider). Rendering them (a query and a copy of each
 * order's JSON, about a sixth of a batch's time on the actor) is done on a read
 * lane while the actor takes its next turn. */
typedef struct late_s {
    uint64_t store_id;
    size_t n;
    struct {
        api_later_t *later;
        order_pay_t pay;
    } o[];
} late_t;

/* Renders and sends every answer of lt with connection c (NULL: without the
 * orders' bodies), and frees lt. */
static void
late_answer(db_conn_t *c, late_t *lt)
{
    uint64_t *ids = shopd_calloc(lt->n, sizeof(*ids));
    char **out = shopd_calloc(lt->n, sizeof(*out));
    size_t *lens = shopd_calloc(lt->n, sizeof(*lens));
    for (size_t i = 0; i < lt->n; i++)
        ids[i] = lt->o[i].pay.order_id;
    shopd_rc_t rrc; /* an order left without its text is answered without its body */
    if (c)
        order_render_many(c, lt->store_id, ids, lt->n, 0, out, lens, &rrc);
    for (size_t i = 0; i < lt->n; i++) {
        const order_pay_t *py = &lt->o[i].pay;
        api_later_answer(lt->o[i].later, order_checkout_answer(c, lt->store_id, py->order_id,
                                                               py->number, out[i], lens[i], py));
        free(out[i]);
    }
    shopd_free(lens);
    shopd_free(out);
    shopd_free(ids);
    shopd_free(lt);
}

static void
late_run(api_ctx_t *ctx, void *arg)
{
    db_conn_t *c = db_acquire(ctx->app->db, 2000);
    late_answer(c, arg); /* without a connection the answers still name the orders */
    if (c)
        db_release(c);
}

static void
late_drop(void *arg)
{
    late_answer(NULL, arg);
}

/* The parameters of a checkout's order statement ($1..$21), and their buffers. */
typedef struct co_params_s {
    char sid[24], uid[24], ref[48], nums[6][24], did[24], rid[24], cart_row[24];
    char *ship, *bill, *items; /* malloc'd (jansson) */
    const char *p[21];
} co_params_t;

static void
co_params(const co_t *co, co_params_t *q)
{
    const api_ctx_t *ctx = co->ctx;
    memset(q, 0, sizeof(*q));
    snprintf(q->sid, sizeof(q->sid), "%llu", (unsigned long long)ctx->store_id);
    if (co->user_id)
        snprintf(q->uid, sizeof(q->uid), "%llu", (unsigned long long)co->user_id);
    cart_ref(&co->cart, q->ref);
    snprintf(q->nums[0], 24, "%lld", (long long)co->subtotal);
    snprintf(q->nums[1], 24, "%lld", (long long)co->discount);
    snprintf(q->nums[2], 24, "%lld", (long long)co->shipping);
    snprintf(q->nums[3], 24, "%lld", (long long)co->tax_total);
    snprintf(q->nums[4], 24, "%lld", (long long)co->total);
    snprintf(q->nums[5], 24, "%d", co->count);
    if (co->has_discount)
        snprintf(q->did, sizeof(q->did), "%llu", (unsigned long long)co->disc.id);
    snprintf(q->rid, sizeof(q->rid), "%llu", (unsigned long long)co->rate.id);
    if (co->cart.user && co->cart.row_id)
        snprintf(q->cart_row, sizeof(q->cart_row), "%llu", (unsigned long long)co->cart.row_id);
    q->ship = json_dumps(co->ship, JSON_COMPACT);
    q->bill = json_dumps(co->bill, JSON_COMPACT);
    q->items = items_json(co);
    const char *p[] = {q->sid,
                       q->uid,
                       co->email,
                       co->provider->name,
                       ctx->store ? ctx->store->currency : "",
                       co->tax.inclusive ? "true" : "false",
                       q->nums[0],
                       q->nums[1],
                       q->nums[2],
                       q->nums[3],
                       q->nums[4],
                       co->has_discount ? co->disc.code : "",
                       q->did,
                       q->rid,
                       co->rate.name,
                       q->ship,
                       q->bill,
                       q->ref,
                       q->nums[5],
                       q->items,
                       q->cart_row};
    memcpy(q->p, p, sizeof(p));
}

static void
co_params_free(co_params_t *q)
{
    free(q->ship);
    free(q->bill);
    free(q->items);
}

/* What writes an order once its stock is taken ($1..$21 of co_params; the CTE
 * "o" inserts the order, the rest hang off it). Shared by both paths below. */
#define CO_ORDER_TAIL                                                                              \
    "x AS (SELECT * FROM json_to_recordset($20::json) AS x (variant_id bigint, product_id "        \
    "bigint, name text, sku text, options jsonb, unit_price bigint, quantity int, line_total "     \
    "bigint, tax bigint)), "                                                                       \
    "i AS (INSERT INTO order_items (store_id, order_id, variant_id, product_id, name, sku, "       \
    "options, unit_price, quantity, line_total, tax) SELECT $1, o.id, x.variant_id, "              \
    "x.product_id, x.name, x.sku, x.options, x.unit_price, x.quantity, x.line_total, x.tax "       \
    "FROM o, x), "                                                                                 \
    "m AS (INSERT INTO inventory_movements (store_id, variant_id, delta, reason, "                 \
    "actor_user_id, order_id) SELECT $1, x.variant_id, -x.quantity, 'order placed', "              \
    "nullif($2, '')::bigint, o.id FROM o, x), "                                                    \
    "e AS (INSERT INTO order_events (store_id, order_id, from_status, to_status, "                 \
    "actor_user_id, actor, note) SELECT $1, o.id, NULL, 'PENDING', nullif($2, '')::bigint, "       \
    "'customer', 'order placed' FROM o), "                                                         \
    "ob AS (INSERT INTO outbox (store_id, kind, payload) SELECT $1, 'order.placed', "              \
    "json_build_object('order_id', o.id, 'number', o.number, 'email', $3::text, 'template', "      \
    "'order_confirmation') FROM o), "                                                              \
    "d AS (DELETE FROM carts WHERE store_id = $1 AND id = nullif($21, '')::bigint AND "            \
    "EXISTS (SELECT 1 FROM o)), "                                                                  \
    "p AS (INSERT INTO payments (store_id, order_id, provider, amount, currency) "                 \
    "SELECT $1, o.id, $4, o.total, o.currency FROM o RETURNING id) "

#define CO_ORDER_INSERT(from)                                                                      \
    "o AS (INSERT INTO orders (store_id, number, user_id, email, payment_provider, currency, "     \
    "prices_include_tax, subtotal, discount_total, shipping_total, tax_total, total, "             \
    "discount_code, discount_id, shipping_rate_id, shipping_name, shipping_address, "              \
    "billing_address, cart_ref, item_count) SELECT $1, n.last_number, nullif($2, '')::bigint, "    \
    "$3, $4, $5, $6::boolean, $7, $8, $9, $10, $11, nullif($12, ''), nullif($13, '')::bigint, "    \
    "$14, $15, $16::jsonb, $17::jsonb, $18, $19 FROM " from " RETURNING id, number, total, "       \
    "currency), "

/* The variants are named by "v.id = ANY (ARRAY(SELECT variant_id FROM x0))" and
 * not by a join or IN with x0: the planner takes a function over a JSON parameter
 * for 100 rows, so the join became a sequential scan of the store's variants
 * (0.3 ms at 3,000 variants, 1.1 ms under EXPLAIN ANALYZE, and growing with the
 * catalog) where the array is a few probes of the primary key (0.09 ms).
 *
 * The one-statement checkout (no Idempotency-Key, no discount code): locks the
 * lines' variants in ascending id, checks that every line is in stock, and only
 * then takes the order number, inserts the order (ON CONFLICT on its cart:
 * nothing), takes the stock and writes the rest. It never fails for short stock
 * or a cart already ordered (it says so in its first columns), so a turn's
 * checkouts are pipelined in one round trip without savepoints: each statement
 * is whole or nothing by itself. The CHECK (stock >= 0) on product_variants is
 * the last wall: were the check ever wrong, the statement would fail, and with
 * it the batch, never oversell. */
static const char co_one_sql[] =
    "WITH x0 AS (SELECT * FROM json_to_recordset($20::json) AS x0 (variant_id bigint, quantity "
    "int)), "
    "lk AS (SELECT v.id, v.stock FROM product_variants v WHERE v.store_id = $1 AND v.id = ANY "
    "(ARRAY(SELECT variant_id FROM x0)) ORDER BY v.id FOR UPDATE), "
    "ok AS (SELECT count(*) = (SELECT count(*) FROM x0) AND coalesce(bool_and(lk.stock >= "
    "x0.quantity), false) AS ok FROM x0 JOIN lk ON lk.id = x0.variant_id), "
    "n AS (INSERT INTO order_counters (store_id, last_number) SELECT $1, 1001 FROM ok WHERE "
    "ok.ok ON CONFLICT (store_id) DO UPDATE SET last_number = order_counters.last_number + 1 "
    "RETURNING last_number), " CO_ORDER_INSERT(
        "n ON CONFLICT (store_id, cart_ref) DO NOTHING") "dec AS (UPDATE product_variants v SET "
                                                         "stock = v.stock - x0.quantity, "
                                                         "updated_at = now() FROM "
                                                         "x0, o WHERE v.store_id = $1 AND v.id = "
                                                         "x0.variant_id AND v.id = ANY (ARRAY("
                                                         "SELECT variant_id FROM x0)) RETURNING "
                                                         "v.id), " CO_ORDER_TAIL
                                                         "SELECT (SELECT ok FROM ok), (SELECT id "
                                                         "FROM o), (SELECT number FROM o), (SELECT "
                                                         "id FROM p)";

/* Step 2 for the one-statement checkouts of a batch (simple[]), inside the
 * batch's transaction: one pipeline. Outcomes into each co. */
static shopd_rc_t
apply_simple(db_conn_t *c, co_t **simple, size_t n)
{
    if (n == 0)
        return SHOPD_OK;
    co_params_t *ps = shopd_calloc(n, sizeof(*ps));
    db_query_t *qs = shopd_calloc(n, sizeof(*qs));
    PGresult **rs = shopd_calloc(n, sizeof(*rs));
    for (size_t i = 0; i < n; i++) {
        co_t *co = simple[i];
        net_reply_free(co->reply);
        co->reply = NULL;
        co->order_id = co->payment_id = co->number = 0;
        co->short_stock = false;
        co_params(co, &ps[i]);
        qs[i] = (db_query_t){"co_one", co_one_sql, 21, ps[i].p};
    }
    shopd_rc_t rc = db_pipeline(c, qs, n, rs);
    for (size_t i = 0; i < n; i++) {
        co_t *co = simple[i];
        PGresult *r = rs[i];
        if (rc == SHOPD_OK && r && PQntuples(r) == 1) {
            if (PQgetvalue(r, 0, 0)[0] != 't') {
                co->short_stock = true;
            } else if (PQgetisnull(r, 0, 1)) {
                co->reply =
                    api_fail(SHOPD_CONFLICT, "cart_checked_out", "this cart is already an order");
            } else {
                co->order_id = strtoull(PQgetvalue(r, 0, 1), NULL, 10);
                co->number = strtoull(PQgetvalue(r, 0, 2), NULL, 10);
                co->payment_id = strtoull(PQgetvalue(r, 0, 3), NULL, 10);
            }
        }
        PQclear(r);
        co_params_free(&ps[i]);
    }
    shopd_free(rs);
    shopd_free(qs);
    shopd_free(ps);
    return rc;
}

/* ---- the set-based checkout of a batch ----
 *
 * The one-statement checkouts of a turn, written by two round trips whatever
 * their number: the first locks every variant the batch buys (ascending id, so
 * two processes cannot deadlock) and reads their stock, together with the
 * batch's carts that are orders already; C then walks the checkouts in arrival
 * order and keeps those whose lines fit in what is left, exactly as the
 * statements one by one would have; the second writes all the kept orders at
 * once (co_many). Per order, PostgreSQL then only inserts rows: it no longer
 * starts a statement of a dozen nodes, locks and re-reads the variants, nor
 * writes a new version of a hot variant's row for every order (one per batch).
 *
 * Anything unexpected in co_many (a cart that another process turned into an
 * order since the first round trip, say) rolls back to its savepoint, and the
 * batch goes the statement-per-order way (apply_simple), which handles it. */
typedef struct set_take_s {
    uint64_t id;
    int stock; /* what is left for the later checkouts of the batch */
} set_take_t;

static int
take_cmp(const void *a, const void *b)
{
    const set_take_t *x = a, *y = b;
    return x->id < y->id ? -1 : x->id > y->id;
}

static set_take_t *
take_find(set_take_t *t, size_t n, uint64_t id)
{
    set_take_t key = {id, 0};
    return bsearch(&key, t, n, sizeof(*t), take_cmp);
}

/* The kept checkouts as the JSON of co_many: one array of orders, one of lines. */
static void
set_json(co_t **keep, size_t n, char **orders, char **items)
{
    json_t *os = json_array(), *is = json_array();
    for (size_t i = 0; i < n; i++) {
        const co_t *co = keep[i];
        char ref[48];
        cart_ref(&co->cart, ref);
        json_t *o = json_pack(
            "{s:I, s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:s, s:O, s:O, s:s, s:i, s:b}", "ord",
            (json_int_t)(i + 1), "email", co->email, "provider", co->provider->name, "subtotal",
            (json_int_t)co->subtotal, "discount", (json_int_t)co->discount, "shipping",
            (json_int_t)co->shipping, "tax", (json_int_t)co->tax_total, "total",
            (json_int_t)co->total, "rate_id", (json_int_t)co->rate.id, "rate_name", co->rate.name,
            "ship", co->ship, "bill", co->bill, "cart_ref", ref, "item_count", co->count,
            "inclusive", co->tax.inclusive);
        const pay_result_t *pr = co->set_paid && co->pay.rc == SHOPD_OK ? &co->pay.result : NULL;
        pay_status_t st = pr ? pr->status : PAY_PENDING;
        json_object_set_new(o, "id", json_integer((json_int_t)co->order_id));
        json_object_set_new(o, "pay", json_string(pay_status_name(st)));
        json_object_set_new(o, "order_pay", json_string(order_pay_status(st)));
        json_object_set_new(o, "paid", json_boolean(st == PAY_SUCCEEDED));
        if (pr && pr->ref[0])
            json_object_set_new(o, "pay_ref", json_string(pr->ref));
        if (pr && pr->decline_code[0])
            json_object_set_new(o, "pay_decline", json_string(pr->decline_code));
        if (co->user_id)
            json_object_set_new(o, "user_id", json_integer((json_int_t)co->user_id));
        if (co->cart.user && co->cart.row_id)
            json_object_set_new(o, "cart_row", json_integer((json_int_t)co->cart.row_id));
        json_array_append_new(os, o);
        for (size_t l = 0; l < co->cart.n; l++) {
            const cart_item_t *it = &co->items[l];
            json_t *x = json_pack("{s:I, s:I, s:I, s:s, s:s, s:I, s:i, s:I, s:I}", "ord",
                                  (json_int_t)(i + 1), "variant_id", (json_int_t)it->variant_id,
                                  "product_id", (json_int_t)it->product_id, "name", it->name, "sku",
                                  it->sku, "unit_price", (json_int_t)it->unit_price, "quantity",
                                  it->quantity, "line_total", (json_int_t)co->line_total[l], "tax",
                                  (json_int_t)co->line_tax[l]);
            json_t *opts = json_loads(it->options, 0, NULL);
            json_object_set_new(x, "options", opts ? opts : json_object());
            json_array_append_new(is, x);
        }
    }
    *orders = json_dumps(os, JSON_COMPACT);
    *items = json_dumps(is, JSON_COMPACT);
    json_decref(os);
    json_decref(is);
}

/* $1 store, $2 the orders, $3 their lines, $4 how many, $5 the currency. The
 * orders' ids were drawn before (their inline providers were asked with them);
 * their numbers are a block of $4 from the store's counter, in batch order. An
 * order paid already is inserted PAID, with both its events in order (one
 * INSERT: the order of separate CTEs is not defined). */
static const char co_many_sql[] =
    "WITH xo AS (SELECT * FROM json_to_recordset($2::json) AS x (ord int, id bigint, user_id "
    "bigint, email text, provider text, subtotal bigint, discount bigint, shipping bigint, tax "
    "bigint, total bigint, rate_id bigint, rate_name text, ship jsonb, bill jsonb, cart_ref text, "
    "item_count int, cart_row bigint, inclusive boolean, pay text, order_pay text, paid boolean, "
    "pay_ref text, pay_decline text)), "
    "xi AS (SELECT * FROM json_to_recordset($3::json) AS x (ord int, variant_id bigint, "
    "product_id bigint, name text, sku text, options jsonb, unit_price bigint, quantity int, "
    "line_total bigint, tax bigint)), "
    "n AS (INSERT INTO order_counters (store_id, last_number) VALUES ($1, 1000 + $4::int) ON "
    "CONFLICT (store_id) DO UPDATE SET last_number = order_counters.last_number + $4::int "
    "RETURNING last_number), "
    "o AS (INSERT INTO orders (id, store_id, number, user_id, email, payment_provider, currency, "
    "prices_include_tax, subtotal, discount_total, shipping_total, tax_total, total, "
    "shipping_rate_id, shipping_name, shipping_address, billing_address, cart_ref, item_count, "
    "status, payment_status, paid_at) OVERRIDING SYSTEM VALUE "
    "SELECT xo.id, $1, n.last_number - $4::int + xo.ord, xo.user_id, xo.email, xo.provider, $5, "
    "xo.inclusive, xo.subtotal, xo.discount, xo.shipping, xo.tax, xo.total, xo.rate_id, "
    "xo.rate_name, xo.ship, xo.bill, xo.cart_ref, xo.item_count, CASE WHEN xo.paid THEN 'PAID' "
    "ELSE 'PENDING' END, xo.order_pay, CASE WHEN xo.paid THEN now() END FROM n, xo ORDER BY "
    "xo.ord RETURNING id, number, total, currency), "
    "om AS (SELECT xo.ord, xo.user_id, xo.email, xo.provider, xo.paid, xo.pay, xo.pay_ref, "
    "xo.pay_decline, o.id, o.number, o.total, o.currency FROM xo JOIN o ON o.id = xo.id), "
    "i AS (INSERT INTO order_items (store_id, order_id, variant_id, product_id, name, sku, "
    "options, unit_price, quantity, line_total, tax) SELECT $1, om.id, xi.variant_id, "
    "xi.product_id, xi.name, xi.sku, xi.options, xi.unit_price, xi.quantity, xi.line_total, "
    "xi.tax FROM om JOIN xi ON xi.ord = om.ord ORDER BY om.ord), "
    "m AS (INSERT INTO inventory_movements (store_id, variant_id, delta, reason, actor_user_id, "
    "order_id) SELECT $1, xi.variant_id, -xi.quantity, 'order placed', om.user_id, om.id FROM om "
    "JOIN xi ON xi.ord = om.ord ORDER BY om.ord), "
    "e AS (INSERT INTO order_events (store_id, order_id, from_status, to_status, actor_user_id, "
    "actor, note) SELECT $1, om.id, CASE ev.k WHEN 1 THEN NULL ELSE 'PENDING' END, CASE ev.k "
    "WHEN 1 THEN 'PENDING' ELSE 'PAID' END, CASE ev.k WHEN 1 THEN om.user_id END, CASE ev.k WHEN "
    "1 THEN 'customer' ELSE 'provider' END, CASE ev.k WHEN 1 THEN 'order placed' ELSE 'payment "
    "succeeded' END FROM om CROSS JOIN (VALUES (1), (2)) AS ev (k) WHERE ev.k = 1 OR om.paid "
    "ORDER BY om.ord, ev.k), "
    "ob AS (INSERT INTO outbox (store_id, kind, payload) SELECT $1, 'order.placed', "
    "json_build_object('order_id', om.id, 'number', om.number, 'email', om.email, 'template', "
    "'order_confirmation') FROM om ORDER BY om.ord), "
    "d AS (DELETE FROM carts WHERE store_id = $1 AND id = ANY (ARRAY(SELECT cart_row FROM xo "
    "WHERE cart_row IS NOT NULL))), "
    "dec AS (UPDATE product_variants v SET stock = v.stock - t.q, updated_at = now() FROM "
    "(SELECT variant_id, sum(quantity)::int AS q FROM xi GROUP BY variant_id) t WHERE v.store_id "
    "= $1 AND v.id = t.variant_id AND v.id = ANY (ARRAY(SELECT variant_id FROM xi))), "
    "p AS (INSERT INTO payments (store_id, order_id, provider, amount, currency, status, "
    "provider_ref, decline_code) SELECT $1, om.id, om.provider, om.total, om.currency, om.pay, "
    "nullif(om.pay_ref, ''), nullif(om.pay_decline, '') FROM om ORDER BY om.ord RETURNING id, "
    "order_id) "
    "SELECT om.ord, om.id, om.number, p.id FROM om JOIN p ON p.order_id = om.id";

typedef struct set_run_s {
    co_t **keep;
    size_t n;
    const char *p[5];
    bool retry; /* a deadlock or serialization failure: the whole batch runs again */
} set_run_t;

static shopd_rc_t
set_body(db_conn_t *c, void *arg)
{
    set_run_t *s = arg;
    PGresult *r = db_exec(c, "co_many", co_many_sql, 5, s->p);
    shopd_rc_t rc = db_result_rc(r);
    if (rc == SHOPD_OK && (size_t)PQntuples(r) != s->n)
        rc = SHOPD_ERR;
    for (int row = 0; rc == SHOPD_OK && row < PQntuples(r); row++) {
        long ord = strtol(PQgetvalue(r, row, 0), NULL, 10);
        if (ord < 1 || (size_t)ord > s->n) {
            rc = SHOPD_ERR;
            break;
        }
        co_t *co = s->keep[ord - 1];
        co->number = strtoull(PQgetvalue(r, row, 2), NULL, 10);
        co->payment_id = strtoull(PQgetvalue(r, row, 3), NULL, 10);
        co->pay.number = co->number;
        co->pay.payment_id = co->payment_id;
    }
    const char *st = db_sqlstate(r);
    s->retry = strcmp(st, "40001") == 0 || strcmp(st, "40P01") == 0;
    if (rc != SHOPD_OK && rc != SHOPD_UNAVAILABLE && !s->retry)
        log_warn("checkout: the set statement failed (%s %s); one statement per order instead",
                 db_sqlstate(r), r ? PQresultErrorMessage(r) : "");
    PQclear(r);
    return rc;
}

/* Step 2 for the one-statement checkouts of a batch, set-based (see above).
 * Returns OK with the outcomes in each co, AGAIN when the batch must go the
 * statement-per-order way instead, or UNAVAILABLE. */
static shopd_rc_t
apply_set(db_conn_t *c, co_t **simple, size_t n)
{
    if (n == 0)
        return SHOPD_OK;
    char sid[24];
    snprintf(sid, sizeof(sid), "%llu", (unsigned long long)simple[0]->ctx->store_id);
    size_t nv = 0, cap = 0;
    for (size_t i = 0; i < n; i++)
        cap += simple[i]->cart.n;
    set_take_t *t = shopd_calloc(cap ? cap : 1, sizeof(*t));
    char *vids = shopd_malloc(cap * 21 + 3), *w = vids;
    *w++ = '{';
    for (size_t i = 0; i < n; i++) {
        co_t *co = simple[i];
        net_reply_free(co->reply);
        co->reply = NULL;
        co->order_id = co->payment_id = co->number = 0;
        co->short_stock = false;
        co->set_paid = false;
        for (size_t l = 0; l < co->cart.n; l++)
            t[nv++].id = co->items[l].variant_id;
    }
    qsort(t, nv, sizeof(*t), take_cmp);
    size_t u = 0;
    for (size_t i = 0; i < nv; i++)
        if (u == 0 || t[u - 1].id != t[i].id) {
            w += sprintf(w, "%s%llu", u ? "," : "", (unsigned long long)t[i].id);
            t[u++] = t[i];
        }
    nv = u;
    strcpy(w, "}");
    char count[24];
    snprintf(count, sizeof(count), "%zu", n);
    const char *lp[] = {sid, vids}, *np[] = {count};
    db_query_t qs[2] = {
        {"co_lock",
         "SELECT id, stock FROM product_variants WHERE store_id = $1 AND id = ANY ($2::bigint[]) "
         "ORDER BY id FOR UPDATE",
         2, lp},
        /* ids for the orders, drawn now so that the inline providers can be asked
         * before the orders are written (unused ones are gaps, as any rollback's) */
        {"co_ids",
         "SELECT nextval(pg_get_serial_sequence('orders', 'id')) FROM "
         "generate_series(1, $1::int)",
         1, np}};
    PGresult *rs[2] = {NULL, NULL};
    shopd_rc_t rc = db_pipeline(c, qs, 2, rs);
    for (int q = 0; q < 2 && rc == SHOPD_OK; q++)
        rc = db_result_rc(rs[q]);
    if (rc == SHOPD_OK && (size_t)PQntuples(rs[1]) != n)
        rc = SHOPD_ERR;
    co_t **keep = NULL;
    size_t nk = 0;
    char *jo = NULL, *ji = NULL;
    if (rc != SHOPD_OK)
        goto out;
    for (size_t i = 0; i < nv; i++)
        t[i].stock = -1; /* not found: deleted since the cart was priced */
    for (int row = 0; row < PQntuples(rs[0]); row++) {
        set_take_t *e = take_find(t, nv, strtoull(PQgetvalue(rs[0], row, 0), NULL, 10));
        if (e)
            e->stock = atoi(PQgetvalue(rs[0], row, 1));
    }
    /* In arrival order, as the statements one by one: a cart named twice in this
     * batch is refused the second time, a checkout whose lines do not all fit in
     * what is left is short, and what a kept one takes counts for the later. A
     * cart that is an order already was refused by step 1 (the cart says so);
     * one that another process made an order since makes co_many fail on the
     * unique cart_ref, and the batch goes one by one (apply_simple), which
     * answers it cart_checked_out. No look-up of the carts here: prepared, its
     * generic plan made on a young orders table read all the store's orders. */
    keep = shopd_calloc(n, sizeof(*keep));
    for (size_t i = 0; i < n; i++) {
        co_t *co = simple[i];
        char ref[48];
        cart_ref(&co->cart, ref);
        bool ordered = false;
        for (size_t j = 0; !ordered && j < nk; j++) {
            char other[48];
            ordered = strcmp(cart_ref(&keep[j]->cart, other), ref) == 0;
        }
        if (ordered) {
            co->reply =
                api_fail(SHOPD_CONFLICT, "cart_checked_out", "this cart is already an order");
            continue;
        }
        size_t l = 0;
        for (; l < co->cart.n; l++) {
            set_take_t *e = take_find(t, nv, co->items[l].variant_id);
            if (e->stock < co->items[l].quantity)
                break;
            e->stock -= co->items[l].quantity;
        }
        if (l < co->cart.n) { /* give back what the fitting lines took */
            while (l-- > 0)
                take_find(t, nv, co->items[l].variant_id)->stock += co->items[l].quantity;
            co->short_stock = true;
            continue;
        }
        keep[nk++] = co;
    }
    if (nk == 0)
        goto out;
    /* A provider without I/O (payment.h) is asked now, with the order's id, so its
     * answer is written with the order: no second statement updating each order
     * and payment row. Asking it again, should this batch go the other way, is
     * harmless for the same reason. */
    order_pay_t *pays = shopd_calloc(nk, sizeof(*pays));
    size_t npay = 0;
    for (size_t j = 0; j < nk; j++) {
        co_t *co = keep[j];
        co->order_id = strtoull(PQgetvalue(rs[1], (int)j, 0), NULL, 10);
        if (co->provider->blocking)
            continue;
        order_pay_t *py = &pays[npay++];
        py->order_id = co->order_id;
        py->amount = co->total;
        snprintf(py->currency, sizeof(py->currency), "%s",
                 co->ctx->store ? co->ctx->store->currency : "");
        snprintf(py->email, sizeof(py->email), "%s", co->email);
        py->provider = co->provider;
    }
    order_pay_create(simple[0]->ctx->store_id, pays, npay);
    for (size_t j = 0, q = 0; j < nk; j++) {
        co_t *co = keep[j];
        if (co->provider->blocking)
            continue;
        co->pay = pays[q++];
        co->set_paid = true;
    }
    shopd_free(pays);
    set_json(keep, nk, &jo, &ji);
    snprintf(count, sizeof(count), "%zu", nk);
    const api_ctx_t *ctx = keep[0]->ctx;
    set_run_t s = {keep, nk, {sid, jo, ji, count, ctx->store ? ctx->store->currency : ""}};
    rc = db_tx(c, set_body, &s); /* a savepoint: on failure the batch goes one by one */
    if (rc != SHOPD_OK)          /* the savepoint undid it: nothing of this batch is an order */
        for (size_t j = 0; j < nk; j++)
            keep[j]->order_id = keep[j]->number = keep[j]->payment_id = 0,
            keep[j]->set_paid = false;
    if (rc != SHOPD_OK && rc != SHOPD_UNAVAILABLE && !s.retry)
        rc = SHOPD_AGAIN; /* (a retry: the outer db_tx sees the failure and runs it all again) */
out:
    free(jo);
    free(ji);
    shopd_free(keep);
    for (int q = 0; q < 2; q++)
        PQclear(rs[q]);
    shopd_free(vids);
    shopd_free(t);
    return rc;
}

/* Step 2 for checkout i, inside its savepoint. May run more than once. */
static shopd_rc_t
apply_one(db_conn_t *c, size_t i, void *arg)
{
    batch_t *b = arg;
    co_t *co = b->cos[i];
    net_reply_free(co->reply);
    co->reply = NULL;
    co->order_id = co->payment_id = co->number = 0;
    co->twin = NULL;
    co->short_stock = false;
    api_ctx_t *ctx = co->ctx;
    char sid[24];
    snprintf(sid, sizeof(sid), "%llu", (unsigned long long)ctx->store_id);
    if (co->keyed) {
        /* The key commits with the order or not at all. A second copy of this
         * request in the same batch finds the first one's row: it answers what
         * the first answers, once that is final. */
        for (size_t j = 0; j < i; j++)
            if (b->cos[j]->keyed && strcmp(b->cos[j]->key, co->key) == 0 &&
                memcmp(b->cos[j]->fp, co->fp, IDEM_FP_LEN) == 0 && b->cos[j]->order_id) {
                co->twin = b->cos[j];
                return SHOPD_CONFLICT;
            }
        idem_stored_t st = {0};
        idem_claim_rc_t ic = idem_pg_claim(c, ctx->store_id, co->key, co->fp, &st);
        if (ic == IDEM_UNAVAILABLE)
            return SHOPD_UNAVAILABLE;
        if (ic != IDEM_NEW) {
            co->reply = ic == IDEM_REPLAY     ? idem_reply_from_stored(&st)
                        : ic == IDEM_MISMATCH ? idem_mismatch_reply()
                                              : idem_in_flight_reply();
            idem_stored_clear(&st);
            return SHOPD_CONFLICT;
        }
    }

    co_params_t q;
    co_params(co, &q);
    const char *const *p = q.p;
    /* One round trip: the stock taken line by line in ascending variant id (the cart
     * keeps its lines sorted, one per variant; shopd_take_stock fails the statement
     * with SH001 when a line is short, which aborts the rest of the pipeline), then
     * the order with everything that goes with it. */
    size_t k = co->cart.n;
    db_query_t qs[CART_MAX_LINES + 1];
    PGresult *rs[CART_MAX_LINES + 1];
    char ids[CART_MAX_LINES][24], qty[CART_MAX_LINES][16];
    const char *tp[CART_MAX_LINES][3];
    for (size_t l = 0; l < k; l++) {
        snprintf(ids[l], sizeof(ids[l]), "%llu", (unsigned long long)co->items[l].variant_id);
        snprintf(qty[l], sizeof(qty[l]), "%d", co->items[l].quantity);
        tp[l][0] = sid;
        tp[l][1] = ids[l];
        tp[l][2] = qty[l];
        qs[l] = (db_query_t){"co_take", "SELECT shopd_take_stock($1, $2, $3)", 3, tp[l]};
        rs[l] = NULL;
    }
    qs[k] =
        (db_query_t){"co_order",
                     "WITH n AS (INSERT INTO order_counters (store_id, last_number) VALUES "
                     "($1, 1001) ON CONFLICT (store_id) DO UPDATE SET last_number = "
                     "order_counters.last_number + 1 RETURNING last_number), " CO_ORDER_INSERT("n")
                         CO_ORDER_TAIL "SELECT o.id, o.number, p.id FROM o, p",
                     21, p};
    rs[k] = NULL;
    shopd_rc_t rc = db_pipeline(c, qs, k + 1, rs);
    PGresult *r = rs[k];
    rs[k] = NULL;
    for (size_t l = 0; l < k; l++) {
        if (rs[l] && strcmp(db_sqlstate(rs[l]), "SH001") == 0)
            co->short_stock = true;
        PQclear(rs[l]);
    }
    co_params_free(&q);
    if (co->short_stock) {
        PQclear(r);
        return SHOPD_CONFLICT; /* answered after the batch, with the stock as it is then */
    }
    if (rc == SHOPD_OK)
        rc = db_result_rc(r);
    if (rc == SHOPD_OK && PQntuples(r) == 1) {
        co->order_id = strtoull(PQgetvalue(r, 0, 0), NULL, 10);
        co->number = strtoull(PQgetvalue(r, 0, 1), NULL, 10);
        co->payment_id = strtoull(PQgetvalue(r, 0, 2), NULL, 10);
    } else if (rc == SHOPD_CONFLICT) {
        /* orders (store_id, cart_ref): this cart became an order already. */
        co->reply = api_fail(SHOPD_CONFLICT, "cart_checked_out", "this cart is already an order");
    } else if (rc != SHOPD_UNAVAILABLE) {
        co->reply = api_db_error(ctx, r, "checkout");
    }
    PQclear(r);
    if (rc != SHOPD_OK)
        return rc;
    if (co->has_discount) {
        pricing_discount_why_t why = PRICING_DISCOUNT_OK;
        rc = pricing_discount_use(c, ctx->store_id, co->disc.id, co->order_id, co->user_id,
                                  co->email, &why);
        if (rc == SHOPD_CONFLICT)
            co->reply = api_fail_field(SHOPD_CONFLICT, "discount_used_up",
                                       "this code was used up by another order just now",
                                       "discount_code", "used up");
        if (rc != SHOPD_OK)
            return rc;
    }
    if (co->keyed) {
        /* The answer as it stands (payment pending), so a crash before the payment
         * step still replays the order; the final answer overwrites it. */
        net_reply_t *pending = checkout_answer(c, co, NULL);
        rc = idem_pg_save_reply(c, ctx->store_id, co->key, pending);
        net_reply_free(pending);
        /* A provider called after the commit (Stripe, on the blocking pool): until
         * its answer is kept, a retry is told 409 idempotency_in_flight, as Stripe
         * itself does, not the provisional answer. The hold outlasts the call (its
         * time limit, plus 5 s for the queue and the recording); a process that
         * dies meanwhile leaves it to expire, and the provisional answer is
         * replayed (the reconciliation settles the payment). */
        if (rc == SHOPD_OK && co->provider->blocking)
            rc = idem_pg_hold(c, ctx->store_id, co->key,
                              (int)(ctx->app->cfg->stripe_timeout_ms / 1000) + 5);
        if (rc != SHOPD_OK)
            return rc;
    }
    return SHOPD_OK;
}

/* Before the batch: a retry of a finished checkout replays its answer (its cart
 * is an order by now, so step 1 would refuse it). The claim is rolled back here
 * and made again in the order's transaction. */
static shopd_rc_t
precheck(db_conn_t *c, void *arg)
{
    co_t *co = arg;
    net_reply_free(co->reply);
    co->reply = NULL;
    idem_stored_t st = {0};
    idem_claim_rc_t ic = idem_pg_claim(c, co->ctx->store_id, co->key, co->fp, &st);
    if (ic == IDEM_UNAVAILABLE)
        return SHOPD_UNAVAILABLE;
    if (ic == IDEM_REPLAY)
        co->reply = idem_reply_from_stored(&st);
    else if (ic == IDEM_MISMATCH)
        co->reply = idem_mismatch_reply();
    else if (ic == IDEM_IN_FLIGHT)
        co->reply = idem_in_flight_reply();
    idem_stored_clear(&st);
    return SHOPD_AGAIN; /* roll back: nothing of this is kept */
}

/* Re-saves the final answers of the keyed checkouts of a batch. */
typedef struct resave_s {
    co_t **cos;
    size_t n;
} resave_t;

static shopd_rc_t
resave(db_conn_t *c, void *arg)
{
    resave_t *r = arg;
    for (size_t i = 0; i < r->n; i++) {
        co_t *co = r->cos[i];
        if (!co->keyed || co->order_id == 0 || co->twin || co->reply == NULL ||
            co->reply == API_LATER) /* a provider on the blocking pool: its hop keeps it */
            continue;
        shopd_rc_t rc = idem_pg_save_reply(c, co->ctx->store_id, co->key, co->reply);
        if (rc != SHOPD_OK)
            return rc;
    }
    return SHOPD_OK;
}

/* The batch's transaction: the one-statement checkouts in one pipeline, then each
 * of the others (a key or a discount code: more statements, which may fail) in a
 * savepoint of its own. Runs again whole after a serialization failure or a
 * deadlock (db_tx). */
typedef struct run_s {
    batch_t *b;
    shopd_rc_t *results;
    order_pay_t *pays; /* per checkout of b: its payment, when made in the transaction */
    bool *paid_inline;
} run_t;

typedef struct one_s {
    batch_t *b;
    size_t i;
} one_t;

static shopd_rc_t
one_body(db_conn_t *c, void *arg)
{
    one_t *o = arg;
    return apply_one(c, o->i, o->b);
}

static bool
is_simple(const co_t *co)
{
    return !co->keyed && !co->has_discount;
}

static shopd_rc_t
batch_body(db_conn_t *c, void *arg)
{
    run_t *run = arg;
    batch_t *b = run->b;
    co_t **simple = shopd_calloc(b->n, sizeof(*simple));
    size_t ns = 0;
    for (size_t i = 0; i < b->n; i++)
        if (is_simple(b->cos[i]))
            simple[ns++] = b->cos[i];
    shopd_rc_t rc = apply_set(c, simple, ns);
    if (rc == SHOPD_AGAIN)
        rc = apply_simple(c, simple, ns);
    shopd_free(simple);
    if (rc != SHOPD_OK)
        return rc;
    for (size_t i = 0; i < b->n; i++) {
        co_t *co = b->cos[i];
        if (is_simple(co)) {
            run->results[i] = co->order_id ? SHOPD_OK : SHOPD_CONFLICT;
            continue;
        }
        one_t o = {b, i};
        run->results[i] = db_tx(c, one_body, &o); /* a savepoint: it fails alone */
        if (run->results[i] == SHOPD_UNAVAILABLE)
            return SHOPD_UNAVAILABLE;
    }
    /* A provider without I/O (the test provider) is asked here, and its answer
     * recorded in the same transaction: one commit for the order and its payment.
     * One that calls out (Stripe) is asked after the commit, holding no lock. */
    order_pay_t *inl = shopd_calloc(b->n, sizeof(*inl));
    size_t *at = shopd_calloc(b->n, sizeof(*at));
    size_t k = 0;
    for (size_t i = 0; i < b->n; i++) {
        co_t *co = b->cos[i];
        run->paid_inline[i] = false;
        if (run->results[i] != SHOPD_OK || co->order_id == 0 || co->provider->blocking)
            continue;
        if (co->set_paid) { /* asked and recorded by apply_set */
            run->pays[i] = co->pay;
            run->paid_inline[i] = true;
            continue;
        }
        order_pay_t *py = &inl[k];
        memset(py, 0, sizeof(*py));
        py->order_id = co->order_id;
        py->payment_id = co->payment_id;
        py->number = co->number;
        py->amount = co->total;
        snprintf(py->currency, sizeof(py->currency), "%s",
                 co->ctx->store ? co->ctx->store->currency : "");
        snprintf(py->email, sizeof(py->email), "%s", co->email);
        py->provider = co->provider;
        at[k++] = i;
    }
    rc = SHOPD_OK;
    if (k) {
        order_pay_create(b->cos[0]->ctx->store_id, inl, k);
        rc = order_pay_record(c, b->cos[0]->ctx->store_id, inl, k);
        for (size_t j = 0; rc == SHOPD_OK && j < k; j++) {
            run->pays[at[j]] = inl[j];
            run->paid_inline[at[j]] = true;
        }
    }
    shopd_free(at);
    shopd_free(inl);
    return rc;
}

/* Takes the answers of b's checkouts that late_run may give (see late_t), pays
 * being the payments of its placed orders in batch order. NULL if none. */
static late_t *
late_take(batch_t *b, const order_pay_t *pays)
{
    late_t *lt = shopd_calloc(1, sizeof(*lt) + b->n * sizeof(lt->o[0]));
    lt->store_id = b->cos[0]->ctx->store_id;
    for (size_t i = 0, j = 0; i < b->n; i++) {
        co_t *co = b->cos[i];
        if (co->reply || co->twin)
            continue; /* as in the answers' loop of order_b_checkout */
        const order_pay_t *py = &pays[j++];
        if (co->keyed || py->provider->blocking)
            continue;
        lt->o[lt->n].later = api_later(co->ctx);
        lt->o[lt->n++].pay = *py;
        co->late = true;
        co->reply = API_LATER;
    }
    if (lt->n)
        return lt;
    shopd_free(lt);
    return NULL;
}

void
order_b_checkout(api_ctx_t *ctxs, size_t n, net_reply_t **replies)
{
    co_t **cos = shopd_calloc(n, sizeof(*cos));
    for (size_t i = 0; i < n; i++) {
        cos[i] = shopd_calloc(1, sizeof(*cos[i]));
        cos[i]->ctx = &ctxs[i];
    }
    db_conn_t *c = db_acquire(ctxs[0].app->db, 2000);
    batch_t b = {shopd_calloc(n, sizeof(co_t *)), 0};
    for (size_t i = 0; i < n; i++) {
        if (c == NULL) {
            cos[i]->reply = api_unavailable("the database");
            continue;
        }
        co_t *co = cos[i];
        const msg_str_t *k = &co->ctx->env->idem;
        if (k->n) {
            co->keyed = true;
            memcpy(co->key, k->p, k->n < IDEM_KEY_MAX ? k->n : IDEM_KEY_MAX);
            idem_fingerprint(co->ctx, co->fp);
            shopd_rc_t prc = db_tx(c, precheck, co);
            if (co->reply)
                continue; /* a replay, a mismatch or in flight */
            if (prc == SHOPD_UNAVAILABLE) {
                co->reply = api_unavailable("the database");
                continue;
            }
        }
    }
    if (c)
        prefetch(cos, n, c);
    tax_cache_t tc = {0};
    for (size_t i = 0; c && i < n; i++) {
        co_t *co = cos[i];
        if (co->reply)
            continue;
        prepare(co, c, &tc);
        if (co->ready)
            b.cos[b.n++] = cos[i];
    }
    if (b.n) {
        shopd_rc_t *results = shopd_calloc(b.n, sizeof(*results));
        uint64_t t0 = shopd_now_us();
        run_t run = {&b, results, shopd_calloc(b.n, sizeof(order_pay_t)),
                     shopd_calloc(b.n, sizeof(bool))};
        shopd_rc_t rc = db_tx(c, batch_body, &run);
        order_metrics_batch(b.n, shopd_now_us() - t0);
        if (rc != SHOPD_OK) {
            /* Nothing committed: each checkout says so, and may be sent again. */
            for (size_t i = 0; i < b.n; i++) {
                net_reply_free(b.cos[i]->reply);
                b.cos[i]->reply = api_unavailable("the database");
                b.cos[i]->order_id = 0;
            }
        }
        for (size_t i = 0; i < b.n; i++)
            if (b.cos[i]->short_stock && b.cos[i]->reply == NULL)
                b.cos[i]->reply = short_stock(c, b.cos[i]);
        /* Committed: retire the guest carts, create the payments, answer. */
        order_pay_t *pays = shopd_calloc(b.n, sizeof(*pays));
        order_pay_t *later = shopd_calloc(b.n, sizeof(*later)); /* made after the commit */
        size_t np = 0, nl = 0;
        size_t *later_at = shopd_calloc(b.n, sizeof(*later_at));
        late_t *lt = NULL;
        for (size_t i = 0; rc == SHOPD_OK && i < b.n; i++) {
            co_t *co = b.cos[i];
            if (results[i] != SHOPD_OK || co->order_id == 0) {
                if (co->reply == NULL && co->twin == NULL) {
                    char what[96];
                    snprintf(what, sizeof(what), "checkout failed rc=%d short=%d keyed=%d",
                             (int)results[i], (int)co->short_stock, (int)co->keyed);
                    co->reply = results[i] == SHOPD_UNAVAILABLE ? api_unavailable("the database")
                                                                : api_internal(co->ctx, what);
                }
                continue; /* a twin answers what its first copy answers (below) */
            }
            order_pay_t *py = &pays[np++];
            if (run.paid_inline[i]) {
                *py = run.pays[i];
                continue;
            }
            py->order_id = co->order_id;
            py->payment_id = co->payment_id;
            py->number = co->number;
            py->amount = co->total;
            snprintf(py->currency, sizeof(py->currency), "%s",
                     co->ctx->store ? co->ctx->store->currency : "");
            snprintf(py->email, sizeof(py->email), "%s", co->email);
            py->provider = co->provider;
            later[nl] = *py;
            later_at[nl++] = np - 1;
        }
        if (np) {
            retire_guest_carts(&b);
            catalog_changed(&ctxs[0]); /* the stock the public pages show moved */
            if (nl) {
                order_pay_apply(c, ctxs[0].store_id, later, nl);
                for (size_t j = 0; j < nl; j++)
                    pays[later_at[j]] = later[j];
            }
            lt = late_take(&b, pays);
            render_all(c, &b);
        }
        /* Handed to a read lane; when its mailbox is full, answered here. */
        if (lt && api_any_run(&ctxs[0], late_run, late_drop, lt) != SHOPD_OK)
            late_answer(c, lt);
        for (size_t i = 0, j = 0; rc == SHOPD_OK && i < b.n; i++) {
            co_t *co = b.cos[i];
            if (co->late) {
                j++; /* answered by late_run */
                continue;
            }
            if (co->reply || co->twin)
                continue; /* failed (answered above), or a twin (answered below) */
            order_pay_t *py = &pays[j++];
            /* A provider that does I/O (Stripe) answers after its call on the
             * blocking pool (order_pay_later); the others were called above. */
            co->reply = py->provider->blocking
                            ? order_pay_later(co->ctx, c, py, co->keyed ? co->key : NULL)
                            : checkout_answer(c, co, py);
        }
        /* Keyed checkouts keep their final answer; copies of the same request in
         * this batch get it too, as a replay. */
        resave_t rs = {b.cos, b.n};
        bool keyed = false;
        for (size_t i = 0; i < b.n; i++)
            keyed = keyed || (b.cos[i]->keyed && b.cos[i]->order_id && !b.cos[i]->twin);
        if (rc == SHOPD_OK && keyed && db_tx(c, resave, &rs) != SHOPD_OK)
            log_warn("final checkout answers not kept store=%llu (retries replay the pending one)",
                     (unsigned long long)ctxs[0].store_id);
        for (size_t i = 0; rc == SHOPD_OK && i < b.n; i++) {
            co_t *co = b.cos[i];
            if (co->twin == NULL || co->twin->reply == NULL)
                continue;
            net_reply_free(co->reply);
            if (co->twin->reply == API_LATER) { /* its payment is still being created */
                co->reply = idem_in_flight_reply();
                continue;
            }
            co->reply = net_reply_copy(co->twin->reply);
            net_reply_add_header(co->reply, "Idempotent-Replayed", "true");
        }
        shopd_free(later_at);
        shopd_free(later);
        shopd_free(pays);
        shopd_free(run.pays);
        shopd_free(run.paid_inline);
        shopd_free(results);
    }
    db_release(c);
    for (size_t i = 0; i < n; i++) {
        replies[i] = cos[i]->reply ? cos[i]->reply : api_internal(&ctxs[i], "checkout: no answer");
        json_decref(cos[i]->ship);
        json_decref(cos[i]->bill);
        free(cos[i]->rendered);
        shopd_free(cos[i]);
    }
    shopd_free(b.cos);
    shopd_free(cos);
}
