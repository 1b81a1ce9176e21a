/*
 * catalog_scn.c: the catalog scenarios. `browse` reads like a shopper: list
 * pages (newest or by price), product pages by slug and searches, all public
 * and served through shopd's catalog cache; `admin-list` sends the same list
 * pages with the platform token, which bypasses the cache. `stock-mix` is a
 * flash sale on the inventory path: half the requests adjust the stock of
 * SB_HOT_VARIANTS hot variants by -1/+1 (alternating per connection, so stock
 * stays level) through the batched PATCH /api/v1/variants/:id/inventory, half
 * read them back.
 *
 * Setup (main thread, blocking sockets) makes sure the --tenant store has the
 * products bench-product-1..SB_CATALOG_PRODUCTS, each active with one variant
 * of a large stock, creating what is missing with the platform token (--token
 * or $SHOPD_PLATFORM_TOKEN; shopd accepts it for store-admin routes). The
 * shared data built there is read-only while the workers run.
 */
#include "catalog_scn.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

typedef struct catalog_s {
    long hot[SB_HOT_VARIANTS]; /* variant ids */
    char auth[600];            /* "Authorization: Bearer ..." */
} catalog_t;

int
sb_http_do(const sb_opts_t *o, const char *tenant, const char *method, const char *path,
           const char *auth, const char *body, char **out)
{
    *out = NULL;
    int fd = socket(o->target.addr.ss_family, SOCK_STREAM, 0);
    if (fd < 0)
        return 0;
    struct timeval tv = {.tv_sec = 10};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (connect(fd, (const struct sockaddr *)&o->target.addr, o->target.addrlen) != 0) {
        close(fd);
        return 0;
    }
    size_t blen = body ? strlen(body) : 0;
    char *req = NULL;
    int n =
        asprintf(&req,
                 "%s %s%s HTTP/1.1\r\nHost: %s\r\nX-Tenant-Id: %s\r\n%s%s%sConnection: close\r\n"
                 "Content-Length: %zu\r\n\r\n%s",
                 method, o->target.base_path, path, o->target.host, tenant, auth ? auth : "",
                 auth ? "\r\n" : "", body ? "Content-Type: application/json\r\n" : "", blen,
                 body ? body : "");
    if (n < 0) {
        close(fd);
        return 0;
    }
    for (size_t sent = 0; sent < (size_t)n;) {
        ssize_t w = send(fd, req + sent, (size_t)n - sent, MSG_NOSIGNAL);
        if (w <= 0)
            break;
        sent += (size_t)w;
    }
    free(req);
    size_t cap = 8192, got = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (got + 4096 > cap)
            buf = realloc(buf, cap *= 2);
        ssize_t r = recv(fd, buf + got, cap - got - 1, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    buf[got] = '\0';
    int status = 0;
    if (sscanf(buf, "HTTP/1.1 %d", &status) != 1)
        status = 0;
    const char *b = strstr(buf, "\r\n\r\n");
    *out = strdup(b ? b + 4 : "");
    free(buf);
    return status;
}

/* sb_http_do in the --tenant store. */
static int
http_do(const sb_opts_t *o, const char *method, const char *path, const char *auth,
        const char *body, char **out)
{
    return sb_http_do(o, o->tenant, method, path, auth, body, out);
}

/* The id of the first variant of product bench-product-i, creating the product and
 * the variant if needed. Returns 0 with a message in err on failure. */
static long
ensure_product(const sb_opts_t *o, const catalog_t *c, int i, char *err, size_t errlen)
{
    char path[128], body[512], *resp = NULL;
    long vid = 0;
    snprintf(path, sizeof(path), "/api/v1/products/bench-product-%d", i);
    int st = http_do(o, "GET", path, c->auth, NULL, &resp);
    if (st == 404) {
        free(resp);
        snprintf(body, sizeof(body),
                 "{\"name\":\"Bench Product "
                 "%d\",\"slug\":\"bench-product-%d\",\"base_price\":%d,\"status\":\"active\","
                 "\"brand\":\"Brand %d\",\"description\":\"A product to benchmark the catalog, "
                 "number %d.\"}",
                 i, i, 100 * i, i % 10, i);
        st = http_do(o, "POST", "/api/v1/products", c->auth, body, &resp);
        if (st != 201)
            goto fail;
        free(resp);
        st = http_do(o, "GET", path, c->auth, NULL, &resp);
    }
    if (st != 200)
        goto fail;
    json_t *doc = json_loads(resp, 0, NULL);
    json_t *v = json_array_get(json_object_get(doc, "variants"), 0);
    long pid = (long)json_integer_value(json_object_get(doc, "id"));
    vid = v ? (long)json_integer_value(json_object_get(v, "id")) : 0;
    json_decref(doc);
    free(resp);
    if (vid == 0) {
        char vpath[128];
        snprintf(vpath, sizeof(vpath), "/api/v1/products/%ld/variants", pid);
        snprintf(body, sizeof(body), "{\"sku\":\"BENCH-%d\",\"stock\":1000000}", i);
        st = http_do(o, "POST", vpath, c->auth, body, &resp);
        if (st != 201)
            goto fail;
        doc = json_loads(resp, 0, NULL);
        vid = (long)json_integer_value(json_object_get(doc, "id"));
        json_decref(doc);
        free(resp);
    }
    return vid;
fail:
    snprintf(err, errlen, "seeding bench-product-%d in store %s: HTTP %d %.200s", i, o->tenant, st,
             resp ? resp : "");
    free(resp);
    return 0;
}

int
sb_catalog_setup(const sb_opts_t *o, void **shared, char *err, size_t errlen)
{
    if (o->token == NULL || o->token[0] == '\0') {
        snprintf(err, errlen,
                 "the catalog scenarios seed products: give the platform token (--token or "
                 "$SHOPD_PLATFORM_TOKEN)");
        return -1;
    }
    catalog_t *c = calloc(1, sizeof(*c));
    snprintf(c->auth, sizeof(c->auth), "Authorization: Bearer %s", o->token);
    /* Products are created in order, so when the last one is there only the hot
     * ones are read: a setup of a few requests, which matters when another
     * process loads the same store meanwhile (bench/runclass.sh). */
    char path[128], *resp = NULL;
    snprintf(path, sizeof(path), "/api/v1/products/bench-product-%d", SB_CATALOG_PRODUCTS);
    int last = http_do(o, "GET", path, c->auth, NULL, &resp);
    free(resp);
    int upto = last == 200 ? SB_HOT_VARIANTS : SB_CATALOG_PRODUCTS;
    for (int i = 1; i <= upto; i++) {
        long vid = ensure_product(o, c, i, err, errlen);
        if (vid == 0) {
            free(c);
            return -1;
        }
        if (i <= SB_HOT_VARIANTS)
            c->hot[i - 1] = vid;
    }
    *shared = c;
    return 0;
}

void
sb_catalog_teardown(void *shared)
{
    free(shared);
}

sb_next_t
sb_browse_next(sb_ctx_t *cx, void *state, sb_req_t *req)
{
    (void)state;
    uint64_t r = sb_rand(cx->rng);
    unsigned kind = (unsigned)(r % 10);
    r /= 10;
    if (kind < 6) /* a list page */
        snprintf(req->path, sizeof(req->path), "/api/v1/products?limit=20&page=%u&sort=%s",
                 1 + (unsigned)(r % 10), (r / 10) % 2 ? "price" : "newest");
    else if (kind < 9) /* a product page */
        snprintf(req->path, sizeof(req->path), "/api/v1/products/bench-product-%u",
                 1 + (unsigned)(r % SB_CATALOG_PRODUCTS));
    else /* a search */
        snprintf(req->path, sizeof(req->path), "/api/v1/products?q=product+%u",
                 1 + (unsigned)(r % 20));
    sb_req_header(req, "X-Tenant-Id: %s", cx->opts->tenant);
    return SB_NEXT_SEND;
}

/* The list pages of browse as the platform token reads them: shopd treats it as
 * a store admin, who sees drafts too, so every page bypasses the catalog cache
 * and runs the list query (issue 10's "uncached product list"). */
sb_next_t
sb_admin_list_next(sb_ctx_t *cx, void *state, sb_req_t *req)
{
    (void)state;
    const catalog_t *c = cx->shared;
    uint64_t r = sb_rand(cx->rng);
    snprintf(req->path, sizeof(req->path), "/api/v1/products?limit=20&page=%u&sort=%s",
             1 + (unsigned)(r % 10), (r / 10) % 2 ? "price" : "newest");
    sb_req_header(req, "X-Tenant-Id: %s", cx->opts->tenant);
    sb_req_header(req, "%s", c->auth);
    return SB_NEXT_SEND;
}

static const char adjust_down[] = "{\"adjust\":-1,\"reason\":\"shopbench\"}";
static const char adjust_up[] = "{\"adjust\":1,\"reason\":\"shopbench\"}";

sb_next_t
sb_stock_mix_next(sb_ctx_t *cx, void *state, sb_req_t *req)
{
    const catalog_t *c = cx->shared;
    sb_hot_conn_t *hc = state;
    long vid = c->hot[sb_rand(cx->rng) % SB_HOT_VARIANTS];
    sb_req_header(req, "X-Tenant-Id: %s", cx->opts->tenant);
    if (hc->n++ % 2 == 0) {
        snprintf(req->path, sizeof(req->path), "/api/v1/variants/%ld", vid);
        return SB_NEXT_SEND;
    }
    /* Writes alternate -1 / +1 on each connection: the stock stays level. */
    bool down = (hc->n / 2) % 2 == 0;
    req->method = "PATCH";
    snprintf(req->path, sizeof(req->path), "/api/v1/variants/%ld/inventory", vid);
    sb_req_header(req, "%s", c->auth);
    sb_req_header(req, "Content-Type: application/json");
    req->body = down ? adjust_down : adjust_up;
    req->body_len = down ? sizeof(adjust_down) - 1 : sizeof(adjust_up) - 1;
    return SB_NEXT_SEND;
}

/* ---------------------------------------------------------------- hot-stock */

/* Every connection decrements one variant by 1 until the server says
 * insufficient_stock; then the run checks through the API that exactly the
 * starting stock was taken, that it never went negative and that the ledger
 * sums to the stock. This is the per-store actor's single-writer path under
 * the worst contention: one row. */
typedef struct hot_s {
    catalog_t cat;
    long vid;
    _Atomic uint64_t taken;   /* 200 answers */
    _Atomic uint64_t refused; /* 409 insufficient_stock answers */
    _Atomic bool sold_out;
    double msgs0, turns0; /* actor counters before the run */
} hot_t;

static double
metric_value(const sb_opts_t *o, const char *name)
{
    char *body = NULL;
    double v = -1;
    if (http_do(o, "GET", "/metrics", NULL, NULL, &body) == 200) {
        char key[128];
        snprintf(key, sizeof(key), "\n%s ", name);
        const char *p = strstr(body, key);
        if (p)
            v = atof(p + strlen(key));
    }
    free(body);
    return v;
}

int
sb_hot_setup(const sb_opts_t *o, void **shared, char *err, size_t errlen)
{
    if (o->token == NULL || o->token[0] == '\0') {
        snprintf(err, errlen,
                 "hot-stock creates its product: give the platform token (--token or "
                 "$SHOPD_PLATFORM_TOKEN)");
        return -1;
    }
    hot_t *h = calloc(1, sizeof(*h));
    snprintf(h->cat.auth, sizeof(h->cat.auth), "Authorization: Bearer %s", o->token);
    char *resp = NULL, body[256], path[128];
    int st = http_do(o, "GET", "/api/v1/products/bench-hot", h->cat.auth, NULL, &resp);
    if (st == 404) {
        free(resp);
        st = http_do(o, "POST", "/api/v1/products", h->cat.auth,
                     "{\"name\":\"Bench "
                     "Hot\",\"slug\":\"bench-hot\",\"base_price\":999,\"status\":\"active\"}",
                     &resp);
        free(resp);
        st = http_do(o, "GET", "/api/v1/products/bench-hot", h->cat.auth, NULL, &resp);
    }
    json_t *doc = st == 200 ? json_loads(resp, 0, NULL) : NULL;
    long pid = (long)json_integer_value(json_object_get(doc, "id"));
    h->vid = (long)json_integer_value(
        json_object_get(json_array_get(json_object_get(doc, "variants"), 0), "id"));
    json_decref(doc);
    free(resp);
    resp = NULL;
    if (pid == 0) {
        snprintf(err, errlen, "cannot create product bench-hot in store %s (HTTP %d)", o->tenant,
                 st);
        goto fail;
    }
    if (h->vid == 0) {
        snprintf(path, sizeof(path), "/api/v1/products/%ld/variants", pid);
        st = http_do(o, "POST", path, h->cat.auth, "{\"sku\":\"BENCH-HOT\",\"stock\":0}", &resp);
        doc = st == 201 ? json_loads(resp, 0, NULL) : NULL;
        h->vid = (long)json_integer_value(json_object_get(doc, "id"));
        json_decref(doc);
        free(resp);
        resp = NULL;
        if (h->vid == 0) {
            snprintf(err, errlen, "cannot create the bench-hot variant (HTTP %d)", st);
            goto fail;
        }
    }
    snprintf(path, sizeof(path), "/api/v1/variants/%ld/inventory", h->vid);
    snprintf(body, sizeof(body), "{\"set\":%ld,\"reason\":\"shopbench hot-stock start\"}",
             o->stock);
    st = http_do(o, "PATCH", path, h->cat.auth, body, &resp);
    free(resp);
    if (st != 200) {
        snprintf(err, errlen, "cannot set the stock of variant %ld (HTTP %d)", h->vid, st);
        goto fail;
    }
    h->msgs0 = metric_value(o, "shopd_actor_messages_total");
    h->turns0 = metric_value(o, "shopd_actor_turns_total");
    *shared = h;
    return 0;
fail:
    free(h);
    return -1;
}

void
sb_hot_teardown(void *shared)
{
    free(shared);
}

static const char take_one[] = "{\"adjust\":-1,\"reason\":\"shopbench hot-stock\"}";

sb_next_t
sb_hot_next(sb_ctx_t *cx, void *state, sb_req_t *req)
{
    hot_t *h = cx->shared;
    /* relaxed: a hint to stop; the server's answers are the truth. */
    if (atomic_load_explicit(&h->sold_out, memory_order_relaxed))
        return SB_NEXT_DONE;
    req->method = "PATCH";
    snprintf(req->path, sizeof(req->path), "/api/v1/variants/%ld/inventory", h->vid);
    sb_req_header(req, "X-Tenant-Id: %s", cx->opts->tenant);
    sb_req_header(req, "%s", h->cat.auth);
    sb_req_header(req, "Content-Type: application/json");
    req->body = take_one;
    req->body_len = sizeof(take_one) - 1;
    return SB_NEXT_SEND;
}

bool
sb_hot_response(sb_ctx_t *cx, void *state, const sb_resp_t *resp)
{
    hot_t *h = cx->shared;
    if (resp->status == 200) {
        atomic_fetch_add_explicit(&h->taken, 1, memory_order_relaxed);
        return true;
    }
    if (resp->status == 409) { /* insufficient_stock: sold out, as expected at the end */
        atomic_fetch_add_explicit(&h->refused, 1, memory_order_relaxed);
        atomic_store_explicit(&h->sold_out, true, memory_order_relaxed);
        return true;
    }
    return false;
}

int
sb_hot_verify(const sb_opts_t *o, void *shared, double seconds, FILE *out)
{
    hot_t *h = shared;
    char path[128], *resp = NULL;
    snprintf(path, sizeof(path), "/api/v1/variants/%ld/movements", h->vid);
    int st = http_do(o, "GET", path, h->cat.auth, NULL, &resp);
    json_t *doc = st == 200 ? json_loads(resp, 0, NULL) : NULL;
    free(resp);
    if (doc == NULL) {
        fprintf(out, "  hot-stock    cannot read %s (HTTP %d)\n", path, st);
        return -1;
    }
    long stock = (long)json_integer_value(json_object_get(doc, "stock"));
    long ledger = (long)json_integer_value(json_object_get(doc, "ledger_sum"));
    json_decref(doc);
    uint64_t taken = atomic_load(&h->taken), refused = atomic_load(&h->refused);
    double msgs = metric_value(o, "shopd_actor_messages_total") - h->msgs0;
    double turns = metric_value(o, "shopd_actor_turns_total") - h->turns0;
    bool ok = stock >= 0 && (long)taken == o->stock - stock && ledger == stock &&
              (!atomic_load(&h->sold_out) || stock == 0);
    fprintf(
        out,
        "  hot-stock    started %ld, taken %llu (%.0f decrements/s), refused %llu, stock now %ld, "
        "ledger sum %ld: %s\n",
        o->stock, (unsigned long long)taken, seconds > 0 ? (double)taken / seconds : 0.0,
        (unsigned long long)refused, stock, ledger,
        ok ? "OK (no oversell, ledger = stock)" : "FAILED");
    if (turns > 0)
        fprintf(out,
                "  batching     %.0f actor messages in %.0f turns: %.1f per turn on average "
                "(all of shopd, this run)\n",
                msgs, turns, msgs / turns);
    return ok ? 0 : -1;
}
