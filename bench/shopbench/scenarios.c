/*
 * scenarios.c: the scenario table. Each row names a workload, says in one
 * line what it measures, and gives the per-connection state machine (next
 * request, judge the response). Rows whose endpoints shopd does not serve yet
 * stay in the table with `missing` set, so `--list` shows the plan and running
 * them fails with a clear message instead of measuring 404s.
 *
 * `tenants` spreads requests over the bench stores; when their catalogs were
 * seeded it sends the browse mix of catalog_scn.c to the chosen store.
 *
 * A scenario's shared data (built in setup on the main thread) is read-only
 * while workers run; per-connection state is zeroed memory owned by the engine.
 */
#include "shopbench.h"
#include "catalog_scn.h"
#include "order_scn.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- store / healthz: one fixed request ---- */

static sb_next_t
store_next(sb_ctx_t *cx, void *state, sb_req_t *req)
{
    (void)state;
    snprintf(req->path, sizeof(req->path), "/api/v1/store");
    sb_req_header(req, "X-Tenant-Id: %s", cx->opts->tenant);
    return SB_NEXT_SEND;
}

static sb_next_t
healthz_next(sb_ctx_t *cx, void *state, sb_req_t *req)
{
    (void)cx;
    (void)state;
    snprintf(req->path, sizeof(req->path), "/healthz");
    return SB_NEXT_SEND;
}

/* ---- tenants: Zipf-skewed store popularity ---- */

typedef struct tenants_s {
    int k;
    double *cdf;  /* cdf[i]: probability of ranks 1..i+1; cdf[k-1] == 1 */
    int products; /* > 0: browse mode over bench-product-1..products of each store */
} tenants_t;

/* Products the store has (the list's total), 0 when it has none or cannot say. */
static long
tenants_products(const sb_opts_t *o, int store)
{
    char slug[32], *body = NULL;
    sb_store_slug(slug, sizeof(slug), store);
    long total = 0;
    if (sb_http_do(o, slug, "GET", "/api/v1/products?limit=1", NULL, NULL, &body) == 200) {
        const char *p = body ? strstr(body, "\"total\":") : NULL;
        if (p != NULL)
            total = atol(p + 8);
    }
    free(body);
    return total;
}

static int
tenants_setup(const sb_opts_t *o, void **shared, char *err, size_t errlen)
{
    if (o->stores < 1) {
        snprintf(err, errlen, "--stores must be at least 1");
        return -1;
    }
    if (o->zipf_s < 0) {
        snprintf(err, errlen, "--zipf must not be negative");
        return -1;
    }
    tenants_t *t = calloc(1, sizeof(*t));
    double *cdf = calloc((size_t)o->stores, sizeof(double));
    if (t == NULL || cdf == NULL) {
        free(t);
        free(cdf);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    double sum = 0;
    for (int i = 0; i < o->stores; i++) {
        sum += 1.0 / pow((double)(i + 1), o->zipf_s);
        cdf[i] = sum;
    }
    for (int i = 0; i < o->stores; i++)
        cdf[i] /= sum;
    cdf[o->stores - 1] = 1.0;
    t->k = o->stores;
    t->cdf = cdf;
    /* Browse mode when `seed --products N` filled the catalogs: the first and the
     * last store both have products (a catalog seeded for fewer stores than K
     * would answer 404 for product pages). N: the smaller of the two totals. */
    if (o->tenants_mode != SB_TENANTS_STORE) {
        long first = tenants_products(o, 1);
        long last = o->stores > 1 ? tenants_products(o, o->stores) : first;
        long n = first < last ? first : last;
        t->products = n > 0 ? (int)(n < 1000000 ? n : 1000000) : 0;
    }
    if (o->tenants_mode == SB_TENANTS_BROWSE && t->products == 0) {
        free(cdf);
        free(t);
        snprintf(err, errlen,
                 "--tenants-mode browse: bench-000001 or bench-%06d has no products "
                 "(seed the catalogs with `shopbench seed --products N` first)",
                 o->stores);
        return -1;
    }
    if (t->products > 0)
        printf("tenants: browse mode: list pages 60%%, product pages 30%%, searches 10%% over "
               "bench-product-1..%d of each store\n",
               t->products);
    else
        printf("tenants: store mode: GET /api/v1/store%s\n",
               o->tenants_mode == SB_TENANTS_STORE
                   ? ""
                   : " (no seeded products in bench-000001 and bench-K)");
    fflush(stdout);
    *shared = t;
    return 0;
}

static void
tenants_teardown(void *shared)
{
    tenants_t *t = shared;
    if (t == NULL)
        return;
    free(t->cdf);
    free(t);
}

/* Rank 1..k drawn with probability proportional to 1/rank^s. */
static int
tenants_pick(const tenants_t *t, uint64_t *rng)
{
    double u = sb_rand01(rng);
    int lo = 0, hi = t->k - 1;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        if (t->cdf[mid] > u)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo + 1;
}

static sb_next_t
tenants_next(sb_ctx_t *cx, void *state, sb_req_t *req)
{
    (void)state;
    const tenants_t *t = cx->shared;
    char slug[32];
    sb_store_slug(slug, sizeof(slug), tenants_pick(t, cx->rng));
    sb_req_header(req, "X-Tenant-Id: %s", slug);
    if (t->products == 0) {
        snprintf(req->path, sizeof(req->path), "/api/v1/store");
        return SB_NEXT_SEND;
    }
    /* The browse mix of catalog_scn.c, over the pages this store has. */
    unsigned n = (unsigned)t->products;
    unsigned pages = (n + 19) / 20;
    uint64_t r = sb_rand(cx->rng);
    unsigned kind = (unsigned)(r % 10);
    r /= 10;
    if (kind < 6) /* a list page */
        snprintf(req->path, sizeof(req->path), "/api/v1/products?limit=20&page=%u&sort=%s",
                 1 + (unsigned)(r % pages), (r / pages) % 2 ? "price" : "newest");
    else if (kind < 9) /* a product page */
        snprintf(req->path, sizeof(req->path), "/api/v1/products/bench-product-%u",
                 1 + (unsigned)(r % n));
    else /* a search */
        snprintf(req->path, sizeof(req->path), "/api/v1/products?q=product+%u",
                 1 + (unsigned)(r % (n < 20 ? n : 20)));
    return SB_NEXT_SEND;
}

/* ---- login: the cost of argon2id per sign-in ---- */

/* run.sh's demo customer; the server must run with SHOPD_AUTH_RATE_IP=0 and
 * SHOPD_AUTH_RATE_ACCOUNT=0, or the rate limits answer 429 after a few tries. */
static const char login_body[] =
    "{\"email\":\"customer@demo.test\",\"password\":\"demo-customer-pass-1\"}";

static sb_next_t
login_next(sb_ctx_t *cx, void *state, sb_req_t *req)
{
    (void)state;
    req->method = "POST";
    snprintf(req->path, sizeof(req->path), "/api/v1/auth/login");
    sb_req_header(req, "X-Tenant-Id: %s", cx->opts->tenant);
    sb_req_header(req, "Content-Type: application/json");
    req->body = login_body;
    req->body_len = sizeof(login_body) - 1;
    return SB_NEXT_SEND;
}

/* ---- the table ---- */

static const sb_scenario_t scenarios[] = {
    {
        .name = "store",
        .help = "GET /api/v1/store for one tenant (X-Tenant-Id: --tenant, default demo)",
        .next = store_next,
    },
    {
        .name = "healthz",
        .help = "GET /healthz: the HTTP stack alone, no tenant lookup",
        .next = healthz_next,
    },
    {
        .name = "tenants",
        .help = "--stores K tenants bench-000001.. with Zipf(--zipf 1.0) popularity: the browse "
                "mix when `seed --products N` filled their catalogs, else GET /api/v1/store "
                "(seed them first)",
        .flags = SB_SCN_NEEDS_STORES,
        .setup = tenants_setup,
        .teardown = tenants_teardown,
        .next = tenants_next,
    },
    {
        .name = "browse",
        .help = "catalog: list pages 60%, product pages 30%, searches 10% in --tenant (seeds "
                "bench-product-1..200 with --token if missing)",
        .setup = sb_catalog_setup,
        .teardown = sb_catalog_teardown,
        .next = sb_browse_next,
    },
    {
        .name = "admin-list",
        .help = "uncached product lists: browse's list pages in --tenant with the platform token "
                "(admins bypass the catalog cache; needs --token, seeds like browse)",
        .setup = sb_catalog_setup,
        .teardown = sb_catalog_teardown,
        .next = sb_admin_list_next,
    },
    {
        .name = "login",
        .help = "customer login: POST /api/v1/auth/login as run.sh's demo customer (argon2id "
                "dominates; run shopd with SHOPD_AUTH_RATE_IP=0 SHOPD_AUTH_RATE_ACCOUNT=0)",
        .next = login_next,
    },
    {
        .name = "hot-stock",
        .help = "every connection takes 1 from one variant (--stock, default 20000) until it "
                "is sold out, then checks: none oversold, ledger = stock (needs --token; use -w 0)",
        .setup = sb_hot_setup,
        .teardown = sb_hot_teardown,
        .next = sb_hot_next,
        .on_response = sb_hot_response,
        .verify = sb_hot_verify,
    },
    {
        .name = "stock-mix",
        .help = "4 hot variants: 50% stock adjustments -1/+1 (batched per actor turn), 50% "
                "reads (needs --token)",
        .state_size = sizeof(sb_hot_conn_t),
        .setup = sb_catalog_setup,
        .teardown = sb_catalog_teardown,
        .next = sb_stock_mix_next,
    },
    {
        .name = "cart",
        .help = "guest carts: add a line, change its quantity, read the cart (needs --token)",
        .state_size = SB_ORDER_STATE_SIZE,
        .setup = sb_order_setup,
        .teardown = sb_order_teardown,
        .next = sb_cart_next,
        .on_response = sb_order_response,
        .verify = sb_order_verify,
    },
    {
        .name = "checkout",
        .help = "add one unit to a fresh guest cart, then check it out (batched per store; "
                "needs --token)",
        .state_size = SB_ORDER_STATE_SIZE,
        .setup = sb_order_setup,
        .teardown = sb_order_teardown,
        .next = sb_checkout_next,
        .on_response = sb_order_response,
        .verify = sb_order_verify,
    },
    {
        .name = "hot-sku",
        .help = "flash sale: every cart buys one unit of one variant (--stock) until sold out, "
                "then checks orders = stock taken, no oversell, ledger = stock (-w 0, --token)",
        .state_size = SB_ORDER_STATE_SIZE,
        .setup = sb_order_setup,
        .teardown = sb_order_teardown,
        .next = sb_hot_sku_next,
        .on_response = sb_order_response,
        .verify = sb_order_verify,
    },
    {
        .name = "mixed",
        .help = "browse 80% (the browse pages), cart 15%, checkout 5% in --tenant (needs --token)",
        .state_size = SB_ORDER_STATE_SIZE,
        .setup = sb_mixed_setup,
        .teardown = sb_order_teardown,
        .next = sb_mixed_next,
        .on_response = sb_order_response,
        .verify = sb_order_verify,
    },
};

const sb_scenario_t *
sb_scenario_find(const char *name)
{
    for (size_t i = 0; i < sizeof(scenarios) / sizeof(scenarios[0]); i++) {
        if (strcmp(scenarios[i].name, name) == 0)
            return &scenarios[i];
    }
    return NULL;
}

void
sb_scenarios_print(FILE *out)
{
    fprintf(out, "scenarios (shopbench [options] URL SCENARIO):\n");
    for (size_t i = 0; i < sizeof(scenarios) / sizeof(scenarios[0]); i++) {
        const sb_scenario_t *s = &scenarios[i];
        fprintf(out, "  %-10s %s%s\n", s->name, s->missing ? "[not yet available] " : "", s->help);
    }
    fprintf(out,
            "  %-10s create stores bench-000001..K for `tenants` (shopbench seed --stores K URL)\n",
            "seed");
}
