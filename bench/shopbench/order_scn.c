/*
 * order_scn.c: the cart and checkout scenarios of shopbench.
 *
 *   cart      each connection keeps one guest cart: add a random variant,
 *             change a line's quantity, read the cart (1:1:1)
 *   checkout  add one unit of a random variant to a fresh guest cart, then
 *             check it out (the seed stack's flow.lua, same shape)
 *   hot-sku   the same with one variant of --stock units: every cart buys one
 *             unit until it is sold out; then the run checks orders = stock
 *             taken, no oversell and the ledger identity
 *   mixed     browse 80% (the browse scenario's pages), cart 15%, checkout 5%
 *
 * Setup (main thread, with the platform token) makes product bench-cart with
 * SB_CART_VARIANTS variants of ample stock, bench-sku with one variant of
 * --stock, and a shipping zone for DE with a flat rate (or uses rate 1 when
 * the server has no shipping-zone routes).
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catalog_scn.h"
#include "order_scn.h"

#define SB_CART_VARIANTS 50

typedef struct orders_s {
    void *catalog; /* mixed: the browse scenario's shared state */
    char auth[600];
    long variants[SB_CART_VARIANTS];
    long hot; /* bench-sku's variant */
    long rate;
    char checkout_body[512];
    size_t checkout_len;
    _Atomic uint64_t orders;  /* checkouts answered 201 */
    _Atomic uint64_t refused; /* hot-sku: 409 insufficient_stock (add or checkout) */
    _Atomic bool sold_out;
} orders_t;

/* Per connection: where the flow stands. */
typedef struct oconn_s {
    int step;
    char cart[48];
    long line;         /* cart: the variant last added */
    bool browse;       /* mixed: this request is a browse page */
    bool checking_out; /* the request in flight is a checkout */
} oconn_t;

_Static_assert(sizeof(oconn_t) <= SB_ORDER_STATE_SIZE, "SB_ORDER_STATE_SIZE too small");

static long
product_with_variants(const sb_opts_t *o, orders_t *s, const char *slug, int n, long stock,
                      long *out, char *err, size_t errlen)
{
    char *resp = NULL, path[160], body[256];
    snprintf(path, sizeof(path), "/api/v1/products/%s", slug);
    int st = sb_http_do(o, o->tenant, "GET", path, s->auth, NULL, &resp);
    if (st == 404) {
        free(resp);
        snprintf(
            body, sizeof(body),
            "{\"name\":\"Bench %s\",\"slug\":\"%s\",\"base_price\":1000,\"status\":\"active\"}",
            slug, slug);
        sb_http_do(o, o->tenant, "POST", "/api/v1/products", s->auth, body, &resp);
        free(resp);
        st = sb_http_do(o, o->tenant, "GET", path, s->auth, NULL, &resp);
    }
    json_t *doc = st == 200 ? json_loads(resp, 0, NULL) : NULL;
    free(resp);
    long pid = (long)json_integer_value(json_object_get(doc, "id"));
    json_t *vs = json_object_get(doc, "variants");
    int have = (int)json_array_size(vs);
    for (int i = 0; i < n && i < have; i++)
        out[i] = (long)json_integer_value(json_object_get(json_array_get(vs, (size_t)i), "id"));
    json_decref(doc);
    if (pid == 0) {
        snprintf(err, errlen, "cannot create product %s (HTTP %d)", slug, st);
        return -1;
    }
    for (int i = have; i < n; i++) {
        snprintf(path, sizeof(path), "/api/v1/products/%ld/variants", pid);
        snprintf(body, sizeof(body), "{\"sku\":\"%s-%d\",\"options\":{\"n\":\"%d\"}}", slug, i, i);
        resp = NULL;
        st = sb_http_do(o, o->tenant, "POST", path, s->auth, body, &resp);
        json_t *v = st == 201 ? json_loads(resp, 0, NULL) : NULL;
        free(resp);
        out[i] = (long)json_integer_value(json_object_get(v, "id"));
        json_decref(v);
        if (out[i] == 0) {
            snprintf(err, errlen, "cannot create a variant of %s (HTTP %d)", slug, st);
            return -1;
        }
    }
    for (int i = 0; i < n; i++) {
        snprintf(path, sizeof(path), "/api/v1/variants/%ld/inventory", out[i]);
        snprintf(body, sizeof(body), "{\"set\":%ld,\"reason\":\"shopbench start\"}", stock);
        resp = NULL;
        st = sb_http_do(o, o->tenant, "PATCH", path, s->auth, body, &resp);
        free(resp);
        if (st != 200) {
            snprintf(err, errlen, "cannot set the stock of variant %ld (HTTP %d)", out[i], st);
            return -1;
        }
    }
    return pid;
}

static long
shipping_rate(const sb_opts_t *o, orders_t *s)
{
    char *resp = NULL;
    int st = sb_http_do(o, o->tenant, "POST", "/api/v1/admin/shipping-zones", s->auth,
                        "{\"name\":\"Bench DE\",\"countries\":[\"DE\"]}", &resp);
    json_t *z = st == 201 ? json_loads(resp, 0, NULL) : NULL;
    free(resp);
    long zone = (long)json_integer_value(json_object_get(z, "id"));
    json_decref(z);
    if (zone == 0) {
        /* Already there (a second run: a country is in one zone only), or no such routes. */
        resp = NULL;
        st = sb_http_do(o, o->tenant, "GET", "/api/v1/checkout/shipping-rates?country=DE", NULL,
                        NULL, &resp);
        json_t *r = st == 200 ? json_loads(resp, 0, NULL) : NULL;
        free(resp);
        long id = (long)json_integer_value(
            json_object_get(json_array_get(json_object_get(r, "rates"), 0), "id"));
        json_decref(r);
        return id;
    }
    char path[96];
    snprintf(path, sizeof(path), "/api/v1/admin/shipping-zones/%ld/rates", zone);
    resp = NULL;
    st = sb_http_do(o, o->tenant, "POST", path, s->auth,
                    "{\"name\":\"Bench flat\",\"kind\":\"flat\",\"price\":490}", &resp);
    json_t *r = st == 201 ? json_loads(resp, 0, NULL) : NULL;
    free(resp);
    long id = (long)json_integer_value(json_object_get(r, "id"));
    json_decref(r);
    return id;
}

int
sb_order_setup(const sb_opts_t *o, void **shared, char *err, size_t errlen)
{
    if (o->token == NULL || o->token[0] == '\0') {
        snprintf(err, errlen, "the cart scenarios create their products: give the platform token");
        return -1;
    }
    orders_t *s = calloc(1, sizeof(*s));
    snprintf(s->auth, sizeof(s->auth), "Authorization: Bearer %s", o->token);
    if (product_with_variants(o, s, "bench-cart", SB_CART_VARIANTS, 100000000, s->variants, err,
                              errlen) < 0 ||
        product_with_variants(o, s, "bench-sku", 1, o->stock, &s->hot, err, errlen) < 0)
        goto fail;
    s->rate = shipping_rate(o, s);
    if (s->rate == 0) {
        snprintf(err, errlen, "no shipping rate applies to DE in store %s", o->tenant);
        goto fail;
    }
    int n = snprintf(s->checkout_body, sizeof(s->checkout_body),
                     "{\"email\":\"bench@example.com\",\"shipping_address\":{\"name\":\"Bench\","
                     "\"line1\":\"Benchstr. 1\",\"city\":\"Berlin\",\"postal_code\":\"10115\","
                     "\"country\":\"DE\"},\"shipping_rate_id\":%ld}",
                     s->rate);
    s->checkout_len = (size_t)n;
    *shared = s;
    return 0;
fail:
    free(s);
    return -1;
}

int
sb_mixed_setup(const sb_opts_t *o, void **shared, char *err, size_t errlen)
{
    void *cat = NULL;
    if (sb_catalog_setup(o, &cat, err, errlen) != 0)
        return -1;
    if (sb_order_setup(o, shared, err, errlen) != 0) {
        sb_catalog_teardown(cat);
        return -1;
    }
    ((orders_t *)*shared)->catalog = cat;
    return 0;
}

void
sb_order_teardown(void *shared)
{
    orders_t *s = shared;
    if (s && s->catalog)
        sb_catalog_teardown(s->catalog);
    free(s);
}

static void
add_req(sb_ctx_t *cx, oconn_t *c, sb_req_t *req, long variant, int qty, bool fresh)
{
    static __thread char body[96];
    req->method = "POST";
    snprintf(req->path, sizeof(req->path), "/api/v1/cart/add");
    sb_req_header(req, "X-Tenant-Id: %s", cx->opts->tenant);
    sb_req_header(req, "Content-Type: application/json");
    if (!fresh && c->cart[0])
        sb_req_header(req, "X-Cart-Id: %s", c->cart);
    int n = snprintf(body, sizeof(body), "{\"variant_id\":%ld,\"quantity\":%d}", variant, qty);
    req->body = body;
    req->body_len = (size_t)n;
}

static void
checkout_req(sb_ctx_t *cx, oconn_t *c, sb_req_t *req)
{
    orders_t *s = cx->shared;
    c->checking_out = true;
    req->method = "POST";
    snprintf(req->path, sizeof(req->path), "/api/v1/checkout");
    sb_req_header(req, "X-Tenant-Id: %s", cx->opts->tenant);
    sb_req_header(req, "Content-Type: application/json");
    sb_req_header(req, "X-Cart-Id: %s", c->cart);
    req->body = s->checkout_body;
    req->body_len = s->checkout_len;
}

static long
any_variant(sb_ctx_t *cx)
{
    orders_t *s = cx->shared;
    return s->variants[sb_rand(cx->rng) % SB_CART_VARIANTS];
}

/* checkout and hot-sku: add to a fresh cart, then check it out. */
static sb_next_t
flow_next(sb_ctx_t *cx, oconn_t *c, sb_req_t *req, long variant)
{
    if (c->step == 0)
        add_req(cx, c, req, variant, 1, true);
    else
        checkout_req(cx, c, req);
    return SB_NEXT_SEND;
}

sb_next_t
sb_checkout_next(sb_ctx_t *cx, void *state, sb_req_t *req)
{
    return flow_next(cx, state, req, any_variant(cx));
}

sb_next_t
sb_hot_sku_next(sb_ctx_t *cx, void *state, sb_req_t *req)
{
    orders_t *s = cx->shared;
    if (atomic_load_explicit(&s->sold_out, memory_order_relaxed))
        return SB_NEXT_DONE;
    return flow_next(cx, state, req, s->hot);
}

sb_next_t
sb_cart_next(sb_ctx_t *cx, void *state, sb_req_t *req)
{
    oconn_t *c = state;
    int step = c->cart[0] ? c->step % 3 : 0;
    if (step == 0) {
        c->line = any_variant(cx);
        add_req(cx, c, req, c->line, 1, false);
    } else if (step == 1) {
        static __thread char body[48];
        req->method = "PATCH";
        snprintf(req->path, sizeof(req->path), "/api/v1/cart/item/%ld", c->line);
        sb_req_header(req, "X-Tenant-Id: %s", cx->opts->tenant);
        sb_req_header(req, "Content-Type: application/json");
        sb_req_header(req, "X-Cart-Id: %s", c->cart);
        int n = snprintf(body, sizeof(body), "{\"quantity\":%d}", 1 + (int)(sb_rand(cx->rng) % 5));
        req->body = body;
        req->body_len = (size_t)n;
    } else {
        snprintf(req->path, sizeof(req->path), "/api/v1/cart");
        sb_req_header(req, "X-Tenant-Id: %s", cx->opts->tenant);
        sb_req_header(req, "X-Cart-Id: %s", c->cart);
    }
    return SB_NEXT_SEND;
}

sb_next_t
sb_mixed_next(sb_ctx_t *cx, void *state, sb_req_t *req)
{
    oconn_t *c = state;
    orders_t *s = cx->shared;
    /* A checkout under way finishes first; otherwise draw the next kind. */
    if (c->step == 1 && !c->browse)
        return flow_next(cx, c, req, 0);
    double x = sb_rand01(cx->rng);
    c->browse = x < 0.80;
    if (c->browse) {
        sb_ctx_t inner = *cx;
        inner.shared = s->catalog;
        return sb_browse_next(&inner, NULL, req);
    }
    if (x < 0.95) {
        c->step = 2; /* a cart request, not a checkout */
        return sb_cart_next(cx, c, req);
    }
    c->step = 0;
    return flow_next(cx, c, req, any_variant(cx));
}

/* Keeps the cart id, moves the flow, counts orders. */
bool
sb_order_response(sb_ctx_t *cx, void *state, const sb_resp_t *resp)
{
    oconn_t *c = state;
    orders_t *s = cx->shared;
    if (resp->status == 0)
        return false;
    const char *id = sb_http_header(resp->http, "X-Cart-Id");
    bool checkout = c->checking_out;
    c->checking_out = false;
    if (id && !checkout)
        snprintf(c->cart, sizeof(c->cart), "%s", id);
    if (c->browse)
        return resp->status == 200 || resp->status == 304;
    if (resp->status == 409 && strcmp(cx->opts->scenario, "hot-sku") == 0) {
        atomic_fetch_add_explicit(&s->refused, 1, memory_order_relaxed);
        atomic_store_explicit(&s->sold_out, true, memory_order_relaxed);
        c->step = 0;
        return true;
    }
    if (checkout) {
        c->step = 0;
        if (resp->status == 201) {
            atomic_fetch_add_explicit(&s->orders, 1, memory_order_relaxed);
            return true;
        }
        return false;
    }
    if (strcmp(cx->opts->scenario, "cart") == 0 || c->step != 0)
        c->step++;
    else if (resp->status == 200)
        c->step = 1; /* added: check out next (a failed add starts over) */
    return resp->status >= 200 && resp->status < 300;
}

static double
orders_in_store(const sb_opts_t *o, orders_t *s)
{
    char *resp = NULL;
    int st = sb_http_do(o, o->tenant, "GET", "/metrics", NULL, NULL, &resp);
    (void)st;
    (void)s;
    double v = -1;
    const char *p = resp ? strstr(resp, "\nshopd_checkout_batch_size_sum ") : NULL;
    if (p)
        v = atof(p + strlen("\nshopd_checkout_batch_size_sum "));
    const char *q = resp ? strstr(resp, "\nshopd_checkout_batch_size_count ") : NULL;
    double batches = q ? atof(q + strlen("\nshopd_checkout_batch_size_count ")) : 0;
    if (v > 0 && batches > 0)
        printf("  batching     %.0f checkouts committed in %.0f transactions: %.1f per commit "
               "(all of shopd, since it started)\n",
               v, batches, v / batches);
    free(resp);
    return v;
}

int
sb_order_verify(const sb_opts_t *o, void *shared, double seconds, FILE *out)
{
    orders_t *s = shared;
    uint64_t orders = atomic_load(&s->orders);
    fprintf(out, "  checkouts    %llu orders (%.0f checkouts/s)\n", (unsigned long long)orders,
            seconds > 0 ? (double)orders / seconds : 0.0);
    orders_in_store(o, s);
    if (strcmp(o->scenario, "hot-sku") != 0)
        return 0;
    char path[128], *resp = NULL;
    snprintf(path, sizeof(path), "/api/v1/variants/%ld/movements", s->hot);
    int st = sb_http_do(o, o->tenant, "GET", path, s->auth, NULL, &resp);
    json_t *doc = st == 200 ? json_loads(resp, 0, NULL) : NULL;
    free(resp);
    if (doc == NULL) {
        fprintf(out, "  hot-sku      cannot read %s (HTTP %d)\n", path, st);
        return -1;
    }
    long stock = (long)json_integer_value(json_object_get(doc, "stock"));
    long ledger = (long)json_integer_value(json_object_get(doc, "ledger_sum"));
    json_decref(doc);
    bool ok = stock >= 0 && (long)orders == o->stock - stock && ledger == stock &&
              (!atomic_load(&s->sold_out) || stock == 0);
    fprintf(out,
            "  hot-sku      started %ld, %llu orders, refused %llu, stock now %ld, ledger sum %ld: "
            "%s\n",
            o->stock, (unsigned long long)orders, (unsigned long long)atomic_load(&s->refused),
            stock, ledger,
            ok ? "OK (orders = stock taken, no oversell, ledger = stock)" : "FAILED");
    return ok ? 0 : -1;
}
