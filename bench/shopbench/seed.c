/*
 * seed.c: `shopbench seed`, which creates the stores bench-000001..K that the
 * `tenants` scenario spreads its load over, through the platform API
 * (POST /api/v1/stores with the platform token). It reuses the load engine as
 * a finite run: a few connections pull store numbers from a shared counter
 * until none are left, so seeding 10 000 stores takes seconds, and an existing
 * store (409) counts as done, so seeding is safe to repeat. A sample of the
 * stores is then read back through the tenant API (GET /api/v1/store).
 *
 * With --products N it then fills each store's catalog (sb_seed_catalog,
 * below): by default through the bulk route POST /api/v1/imports/products,
 * one request per store (up to SEED_IMPORT_ROWS products each), its
 * categories named by slug in the rows; with --per-request through the
 * store API one object per request (a store admin, two categories, N
 * products, their variants), in two finite runs (stores first, then products
 * spread over every connection). Both are safe to repeat.
 *
 * The shared counters are atomics because any worker may take any store; the
 * run uses one worker thread, but nothing here depends on that.
 */
#include "shopbench.h"

#include <jansson.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define SEED_DEFAULT_CONNS 8

typedef struct seed_s {
    int k;             /* stores wanted */
    const int *sample; /* verify: store numbers to read back */
    int nsample;
    /* Relaxed: a ticket counter; each number goes to exactly one connection and
     * nothing else is published through it. */
    atomic_int next;
    /* Relaxed: tallies read by main after the workers are joined (join orders them). */
    atomic_int created, existed, failed, verified;
    pthread_mutex_t lock; /* guards first_error */
    char first_error[512];
} seed_t;

typedef struct seed_conn_s {
    int store;      /* store number of the request in flight */
    char body[192]; /* POST body; must outlive the request */
} seed_conn_t;

void
sb_store_slug(char *buf, size_t len, int i)
{
    snprintf(buf, len, "bench-%06d", i);
}

static void
note_error(seed_t *s, const char *fmt, int store, const sb_resp_t *r)
{
    pthread_mutex_lock(&s->lock);
    if (s->first_error[0] == '\0') {
        char slug[32];
        sb_store_slug(slug, sizeof(slug), store);
        if (r->status == 0) {
            snprintf(s->first_error, sizeof(s->first_error), fmt, slug, r->error);
        } else {
            size_t blen = 0;
            const char *body = sb_http_body(r->http, &blen);
            char status[256];
            snprintf(status, sizeof(status), "HTTP %d %.*s", r->status,
                     (int)(blen > 200 ? 200 : blen), body);
            snprintf(s->first_error, sizeof(s->first_error), fmt, slug, status);
        }
    }
    pthread_mutex_unlock(&s->lock);
}

static sb_next_t
create_next(sb_ctx_t *cx, void *state, sb_req_t *req)
{
    seed_t *s = cx->shared;
    seed_conn_t *c = state;
    int i = atomic_fetch_add_explicit(&s->next, 1, memory_order_relaxed);
    if (i > s->k)
        return SB_NEXT_DONE;
    c->store = i;
    char slug[32];
    sb_store_slug(slug, sizeof(slug), i);
    int n = snprintf(c->body, sizeof(c->body),
                     "{\"slug\":\"%s\",\"name\":\"Bench %06d\",\"currency\":\"USD\"}", slug, i);
    req->method = "POST";
    snprintf(req->path, sizeof(req->path), "/api/v1/stores");
    sb_req_header(req, "Authorization: Bearer %s", cx->opts->token);
    sb_req_header(req, "Content-Type: application/json");
    req->body = c->body;
    req->body_len = (size_t)n;
    req->keep_body = true;
    return SB_NEXT_SEND;
}

static bool
create_done(sb_ctx_t *cx, void *state, const sb_resp_t *r)
{
    seed_t *s = cx->shared;
    seed_conn_t *c = state;
    if (r->status == 201) {
        atomic_fetch_add_explicit(&s->created, 1, memory_order_relaxed);
        return true;
    }
    if (r->status == 409) {
        atomic_fetch_add_explicit(&s->existed, 1, memory_order_relaxed);
        return true;
    }
    atomic_fetch_add_explicit(&s->failed, 1, memory_order_relaxed);
    note_error(s, "creating %s: %s", c->store, r);
    return false;
}

static sb_next_t
verify_next(sb_ctx_t *cx, void *state, sb_req_t *req)
{
    seed_t *s = cx->shared;
    seed_conn_t *c = state;
    int i = atomic_fetch_add_explicit(&s->next, 1, memory_order_relaxed);
    if (i >= s->nsample)
        return SB_NEXT_DONE;
    c->store = s->sample[i];
    char slug[32];
    sb_store_slug(slug, sizeof(slug), c->store);
    snprintf(req->path, sizeof(req->path), "/api/v1/store");
    sb_req_header(req, "X-Tenant-Id: %s", slug);
    req->keep_body = true;
    return SB_NEXT_SEND;
}

static bool
verify_done(sb_ctx_t *cx, void *state, const sb_resp_t *r)
{
    seed_t *s = cx->shared;
    seed_conn_t *c = state;
    if (r->status == 200) {
        char want[40];
        snprintf(want, sizeof(want), "\"bench-%06d\"", c->store);
        size_t blen = 0;
        const char *body = sb_http_body(r->http, &blen);
        if (strstr(body, want) != NULL) {
            atomic_fetch_add_explicit(&s->verified, 1, memory_order_relaxed);
            return true;
        }
        atomic_fetch_add_explicit(&s->failed, 1, memory_order_relaxed);
        note_error(s, "reading %s back: the body does not name the store: %s", c->store, r);
        return false;
    }
    atomic_fetch_add_explicit(&s->failed, 1, memory_order_relaxed);
    note_error(s, "reading %s back through GET /api/v1/store: %s", c->store, r);
    return false;
}

static const sb_scenario_t seed_create = {
    .name = "seed",
    .help = "create stores bench-000001..K",
    .state_size = sizeof(seed_conn_t),
    .next = create_next,
    .on_response = create_done,
};

static const sb_scenario_t seed_verify = {
    .name = "seed-verify",
    .help = "read a sample of the seeded stores back",
    .state_size = sizeof(seed_conn_t),
    .next = verify_next,
    .on_response = verify_done,
};

static void
seed_init(seed_t *s, int k)
{
    memset(s, 0, sizeof(*s));
    s->k = k;
    atomic_init(&s->next, 1);
    atomic_init(&s->created, 0);
    atomic_init(&s->existed, 0);
    atomic_init(&s->failed, 0);
    atomic_init(&s->verified, 0);
    pthread_mutex_init(&s->lock, NULL);
}

/* Reads the sample back; returns how many failed (or -1 if the run failed). */
static int
run_verify(const sb_opts_t *o, seed_t *s, int conns)
{
    atomic_store_explicit(&s->next, 0, memory_order_relaxed);
    atomic_store_explicit(&s->failed, 0, memory_order_relaxed);
    sb_run_t run = {.opts = o,
                    .scn = &seed_verify,
                    .shared = s,
                    .threads = 1,
                    .conns = conns < s->nsample ? conns : s->nsample,
                    .timeout_us = (uint64_t)(o->timeout_s * 1e6)};
    sb_result_t res;
    int rc = sb_run(&run, &res);
    int failed = atomic_load_explicit(&s->failed, memory_order_relaxed);
    int answered = atomic_load_explicit(&s->verified, memory_order_relaxed) + failed;
    sb_result_free(&res);
    if (rc < 0)
        return -1;
    /* Connections that never connected leave stores unchecked. */
    return failed + (s->nsample - answered);
}

int
sb_seed_check(const sb_opts_t *o, int k)
{
    seed_t s;
    seed_init(&s, k);
    int sample[2] = {1, k};
    s.sample = sample;
    s.nsample = k > 1 ? 2 : 1;
    int bad = run_verify(o, &s, 2);
    if (bad != 0) {
        fprintf(stderr,
                "shopbench: the stores bench-000001..bench-%06d are not all there (%s)\n"
                "  create them first: shopbench seed --stores %d %s\n",
                k, s.first_error[0] ? s.first_error : "the run failed", k, o->target.url);
    }
    pthread_mutex_destroy(&s.lock);
    return bad == 0 ? 0 : -1;
}

int
sb_seed(sb_opts_t *o)
{
    if (o->token == NULL || o->token[0] == '\0') {
        fprintf(stderr,
                "shopbench: seed needs the platform token: --token T or SHOPD_PLATFORM_TOKEN\n");
        return 2;
    }
    int k = o->stores;
    int conns = o->conns > 0 ? o->conns : SEED_DEFAULT_CONNS;
    if (conns > k)
        conns = k;
    seed_t s;
    seed_init(&s, k);
    int code = 1;
    int *sample = NULL;

    uint64_t t0 = sb_now_us();
    sb_run_t run = {.opts = o,
                    .scn = &seed_create,
                    .shared = &s,
                    .threads = 1,
                    .conns = conns,
                    .timeout_us = (uint64_t)(o->timeout_s * 1e6)};
    sb_result_t res;
    int rc = sb_run(&run, &res);
    double secs = (double)(sb_now_us() - t0) / 1e6;
    uint64_t conn_errors = res.total.err_connect;
    sb_result_free(&res);
    if (rc < 0)
        goto out;
    int created = atomic_load_explicit(&s.created, memory_order_relaxed);
    int existed = atomic_load_explicit(&s.existed, memory_order_relaxed);
    int failed = atomic_load_explicit(&s.failed, memory_order_relaxed);
    int missing = k - created - existed - failed;
    printf("seed: %d stores on %s: %d created, %d already existed, %d failed", k, o->target.url,
           created, existed, failed);
    if (missing > 0)
        printf(", %d not attempted", missing);
    printf(" (%.2f s, %.0f stores/s)\n", secs, secs > 0 ? (created + existed) / secs : 0.0);
    if (conn_errors > 0 && missing > 0)
        fprintf(stderr, "shopbench: could not connect to %s\n", o->target.url);
    if (s.first_error[0])
        fprintf(stderr, "shopbench: first failure: %s\n", s.first_error);
    if (failed > 0 || missing > 0)
        goto out;

    /* Read back the first, the last and a random sample in between. */
    int n = o->verify < k ? o->verify : k;
    if (n < 1) {
        code = (o->products > 0 && sb_seed_catalog(o) < 0) ? 1 : 0;
        goto out;
    }
    sample = calloc((size_t)n, sizeof(int));
    if (sample == NULL)
        goto out;
    uint64_t rng = t0 | 1;
    sample[0] = 1;
    if (n > 1)
        sample[1] = k;
    for (int i = 2; i < n; i++)
        sample[i] = 1 + (int)(sb_rand01(&rng) * k);
    s.sample = sample;
    s.nsample = n;
    int bad = run_verify(o, &s, conns);
    printf("seed: verified %d of %d sampled stores through GET /api/v1/store\n",
           atomic_load_explicit(&s.verified, memory_order_relaxed), n);
    if (bad != 0) {
        if (s.first_error[0])
            fprintf(stderr, "shopbench: first failure: %s\n", s.first_error);
        goto out;
    }
    code = 0;
    if (o->products > 0 && sb_seed_catalog(o) < 0)
        code = 1;
out:
    free(sample);
    pthread_mutex_destroy(&s.lock);
    return code;
}

/* ------------------------------------------------------------------ catalogs */

/* Phase 1, one store per ticket: count its products (skip it when it has N),
 * create its admin (201 or 409), read the category tree and create the missing
 * bench-cat-1 and bench-cat-2. Phase 2, one product per ticket over the stores
 * phase 1 kept: create bench-product-j (on 409 read it back to learn its id and
 * how many variants it has), then its missing variants. Each step's answer
 * picks the next step in on_response; a failed step abandons its store or
 * product and is counted, so a repeat finishes the job. */

#define CAT_SEED_CATS 2
#define CATALOG_SEED_MAX_V 100 /* the server's CATALOG_MAX_VARIANTS */
static const char cat_admin_password[] = "bench-Admin-pass-4711";

enum { ST_IDLE, ST_COUNT, ST_ADMIN, ST_TREE, ST_CAT, ST_PCREATE, ST_PGET, ST_VARIANT };

typedef struct cat_seed_s {
    const sb_opts_t *o;
    int k, n, v;
    char auth[600];
    long (*cats)[CAT_SEED_CATS]; /* [store]: category ids found or made in phase 1 */
    int *todo;                   /* phase 2: stores (1-based) that need products */
    /* Relaxed: a slot counter in phase 1 (each index goes to one connection);
     * phase 2 reads it after phase 1's workers are joined (join orders it). */
    atomic_int ntodo;
    /* Relaxed: ticket counter and tallies, read by main after the join. */
    atomic_int next;
    atomic_int skipped, prepared, failed, admins, p_created, p_existed, v_created;
    pthread_mutex_t lock; /* guards first_error */
    char first_error[512];
} cat_seed_t;

typedef struct cat_conn_s {
    int step;
    int store, prod; /* store number (1-based) and product j of the work in hand */
    int cat;         /* ST_CAT: index of the category being created */
    int var;         /* ST_VARIANT: next variant number */
    long pid;
    char slug[32];
    char body[640]; /* POST body; must outlive the request */
} cat_conn_t;

static void
cat_fail(cat_seed_t *s, cat_conn_t *c, const char *what, const sb_resp_t *r)
{
    atomic_fetch_add_explicit(&s->failed, 1, memory_order_relaxed);
    pthread_mutex_lock(&s->lock);
    if (s->first_error[0] == '\0') {
        size_t blen = 0;
        const char *body = r->status ? sb_http_body(r->http, &blen) : "";
        snprintf(s->first_error, sizeof(s->first_error), "%s in %s: %s%d %.*s", what, c->slug,
                 r->status ? "HTTP " : "", r->status, (int)(blen > 200 ? 200 : blen),
                 r->status ? body : r->error);
    }
    pthread_mutex_unlock(&s->lock);
    c->step = ST_IDLE;
}

static json_t *
resp_json(const sb_resp_t *r)
{
    size_t len = 0;
    const char *body = sb_http_body(r->http, &len);
    return json_loadb(body, len, 0, NULL);
}

static sb_next_t
cat_prep_next(sb_ctx_t *cx, void *state, sb_req_t *req)
{
    cat_seed_t *s = cx->shared;
    cat_conn_t *c = state;
    if (c->step == ST_IDLE) {
        int i = atomic_fetch_add_explicit(&s->next, 1, memory_order_relaxed);
        if (i > s->k)
            return SB_NEXT_DONE;
        c->store = i;
        sb_store_slug(c->slug, sizeof(c->slug), i);
        c->step = ST_COUNT;
    }
    sb_req_header(req, "X-Tenant-Id: %s", c->slug);
    sb_req_header(req, "%s", s->auth);
    req->keep_body = true;
    int n = 0;
    switch (c->step) {
    case ST_COUNT:
        snprintf(req->path, sizeof(req->path), "/api/v1/products?limit=1");
        return SB_NEXT_SEND;
    case ST_ADMIN:
        snprintf(req->path, sizeof(req->path), "/api/v1/admin/users");
        n = snprintf(c->body, sizeof(c->body),
                     "{\"email\":\"admin@%s.test\",\"password\":\"%s\",\"role\":\"STORE_ADMIN\","
                     "\"name\":\"Bench Admin %06d\"}",
                     c->slug, cat_admin_password, c->store);
        break;
    case ST_TREE:
        snprintf(req->path, sizeof(req->path), "/api/v1/categories");
        return SB_NEXT_SEND;
    default: /* ST_CAT */
        snprintf(req->path, sizeof(req->path), "/api/v1/categories");
        n = snprintf(c->body, sizeof(c->body),
                     "{\"name\":\"Bench Category %d\",\"slug\":\"bench-cat-%d\"}", c->cat + 1,
                     c->cat + 1);
        break;
    }
    req->method = "POST";
    sb_req_header(req, "Content-Type: application/json");
    req->body = c->body;
    req->body_len = (size_t)n;
    return SB_NEXT_SEND;
}

/* The first category still missing, or CAT_SEED_CATS when the store has both. */
static int
cat_missing(const cat_seed_t *s, int store)
{
    int i = 0;
    while (i < CAT_SEED_CATS && s->cats[store][i] != 0)
        i++;
    return i;
}

static bool
cat_prep_done(sb_ctx_t *cx, void *state, const sb_resp_t *r)
{
    cat_seed_t *s = cx->shared;
    cat_conn_t *c = state;
    switch (c->step) {
    case ST_COUNT: {
        if (r->status != 200) {
            cat_fail(s, c, "counting products", r);
            return false;
        }
        json_t *doc = resp_json(r);
        long total = (long)json_integer_value(json_object_get(doc, "total"));
        json_decref(doc);
        if (total >= s->n) {
            atomic_fetch_add_explicit(&s->skipped, 1, memory_order_relaxed);
            c->step = ST_IDLE;
        } else {
            c->step = ST_ADMIN;
        }
        return true;
    }
    case ST_ADMIN:
        if (r->status != 201 && r->status != 409) {
            cat_fail(s, c, "creating the store admin", r);
            return false;
        }
        if (r->status == 201)
            atomic_fetch_add_explicit(&s->admins, 1, memory_order_relaxed);
        c->step = ST_TREE;
        return true;
    case ST_TREE: {
        if (r->status != 200) {
            cat_fail(s, c, "reading the category tree", r);
            return false;
        }
        json_t *doc = resp_json(r), *node;
        size_t i;
        json_array_foreach(json_object_get(doc, "data"), i, node)
        {
            int which = 0;
            const char *slug = json_string_value(json_object_get(node, "slug"));
            if (slug != NULL && sscanf(slug, "bench-cat-%d", &which) == 1 && which >= 1 &&
                which <= CAT_SEED_CATS)
                s->cats[c->store][which - 1] =
                    (long)json_integer_value(json_object_get(node, "id"));
        }
        json_decref(doc);
        break;
    }
    default: { /* ST_CAT */
        json_t *doc = r->status == 201 ? resp_json(r) : NULL;
        long id = (long)json_integer_value(json_object_get(doc, "id"));
        json_decref(doc);
        if (id == 0) {
            cat_fail(s, c, "creating a category", r);
            return false;
        }
        s->cats[c->store][c->cat] = id;
        break;
    }
    }
    c->cat = cat_missing(s, c->store);
    if (c->cat < CAT_SEED_CATS) {
        c->step = ST_CAT;
        return true;
    }
    s->todo[atomic_fetch_add_explicit(&s->ntodo, 1, memory_order_relaxed)] = c->store;
    atomic_fetch_add_explicit(&s->prepared, 1, memory_order_relaxed);
    c->step = ST_IDLE;
    return true;
}

static sb_next_t
cat_prod_next(sb_ctx_t *cx, void *state, sb_req_t *req)
{
    cat_seed_t *s = cx->shared;
    cat_conn_t *c = state;
    if (c->step == ST_IDLE) {
        int t = atomic_fetch_add_explicit(&s->next, 1, memory_order_relaxed);
        if (t >= atomic_load_explicit(&s->ntodo, memory_order_relaxed) * s->n)
            return SB_NEXT_DONE;
        c->store = s->todo[t / s->n];
        c->prod = t % s->n + 1;
        sb_store_slug(c->slug, sizeof(c->slug), c->store);
        c->step = ST_PCREATE;
    }
    sb_req_header(req, "X-Tenant-Id: %s", c->slug);
    sb_req_header(req, "%s", s->auth);
    req->keep_body = true;
    int j = c->prod, n;
    if (c->step == ST_PGET) {
        snprintf(req->path, sizeof(req->path), "/api/v1/products/bench-product-%d", j);
        return SB_NEXT_SEND;
    }
    if (c->step == ST_PCREATE) {
        snprintf(req->path, sizeof(req->path), "/api/v1/products");
        n = snprintf(
            c->body, sizeof(c->body),
            "{\"name\":\"Bench Product %d\",\"slug\":\"bench-product-%d\",\"base_price\":%d,"
            "\"status\":\"active\",\"brand\":\"Brand %d\",\"category_id\":%ld,"
            "\"description\":\"A product of %s to benchmark the catalog, number %d.\"}",
            j, j, 100 * j, j % 10, s->cats[c->store][j % CAT_SEED_CATS], c->slug, j);
    } else { /* ST_VARIANT: distinct options, or the server sees the same variant twice */
        snprintf(req->path, sizeof(req->path), "/api/v1/products/%ld/variants", c->pid);
        n = snprintf(c->body, sizeof(c->body),
                     "{\"sku\":\"BENCH-%d-%d\",\"options\":{\"size\":\"S%d\"},\"stock\":1000,"
                     "\"price\":%d}",
                     j, c->var, c->var, 100 * j + c->var);
    }
    req->method = "POST";
    sb_req_header(req, "Content-Type: application/json");
    req->body = c->body;
    req->body_len = (size_t)n;
    return SB_NEXT_SEND;
}

static bool
cat_prod_done(sb_ctx_t *cx, void *state, const sb_resp_t *r)
{
    cat_seed_t *s = cx->shared;
    cat_conn_t *c = state;
    switch (c->step) {
    case ST_PCREATE: {
        if (r->status == 409) {
            atomic_fetch_add_explicit(&s->p_existed, 1, memory_order_relaxed);
            c->step = ST_PGET;
            return true;
        }
        json_t *doc = r->status == 201 ? resp_json(r) : NULL;
        c->pid = (long)json_integer_value(json_object_get(doc, "id"));
        json_decref(doc);
        if (c->pid == 0) {
            cat_fail(s, c, "creating a product", r);
            return false;
        }
        atomic_fetch_add_explicit(&s->p_created, 1, memory_order_relaxed);
        c->var = 1;
        break;
    }
    case ST_PGET: {
        json_t *doc = r->status == 200 ? resp_json(r) : NULL;
        c->pid = (long)json_integer_value(json_object_get(doc, "id"));
        c->var = 1 + (int)json_array_size(json_object_get(doc, "variants"));
        json_decref(doc);
        if (c->pid == 0) {
            cat_fail(s, c, "reading an existing product", r);
            return false;
        }
        break;
    }
    default: /* ST_VARIANT */
        if (r->status != 201 && r->status != 409) {
            cat_fail(s, c, "creating a variant", r);
            return false;
        }
        if (r->status == 201)
            atomic_fetch_add_explicit(&s->v_created, 1, memory_order_relaxed);
        c->var++;
        break;
    }
    c->step = c->var <= s->v ? ST_VARIANT : ST_IDLE;
    return true;
}

static const sb_scenario_t seed_cat_prep = {
    .name = "seed-stores-catalog",
    .help = "count products, create the admin and categories of each store",
    .state_size = sizeof(cat_conn_t),
    .next = cat_prep_next,
    .on_response = cat_prep_done,
};

static const sb_scenario_t seed_cat_products = {
    .name = "seed-products",
    .help = "create products and variants",
    .state_size = sizeof(cat_conn_t),
    .next = cat_prod_next,
    .on_response = cat_prod_done,
};

/* One finite run of scn over conns connections; -1 if it could not start. */
static int
cat_run(const sb_opts_t *o, const sb_scenario_t *scn, cat_seed_t *s, int conns)
{
    atomic_store_explicit(&s->next, scn == &seed_cat_prep ? 1 : 0, memory_order_relaxed);
    sb_run_t run = {.opts = o,
                    .scn = scn,
                    .shared = s,
                    .threads = 1,
                    .conns = conns < 1 ? 1 : conns,
                    .timeout_us = (uint64_t)(o->timeout_s * 1e6)};
    sb_result_t res;
    int rc = sb_run(&run, &res);
    sb_result_free(&res);
    return rc;
}

/* ------------------------------------------------------------------ bulk import */

/* One ticket = one POST /api/v1/imports/products: a run of products of one
 * store (all N when they fit in a body). A product that exists answers
 * slug_taken and counts as existing, so a repeat is cheap and changes
 * nothing; its missing variants are not filled in (--per-request does that). */

#define SEED_IMPORT_ROWS 1000         /* the route's bound */
#define SEED_IMPORT_BODY (240u << 10) /* the body buffer of a connection */

typedef struct imp_seed_s {
    int k, n, v, per; /* per: products per request */
    int chunks;       /* requests per store */
    char auth[600];
    /* Relaxed: ticket counter and tallies, read by main after the join. */
    atomic_int next;
    atomic_int created, existed, variants, failed;
    pthread_mutex_t lock; /* guards first_error */
    char first_error[512];
} imp_seed_t;

typedef struct imp_conn_s {
    char slug[32];
    int first, count; /* the products of the request in flight */
    char body[SEED_IMPORT_BODY];
} imp_conn_t;

static sb_next_t
imp_next(sb_ctx_t *cx, void *state, sb_req_t *req)
{
    imp_seed_t *s = cx->shared;
    imp_conn_t *c = state;
    int t = atomic_fetch_add_explicit(&s->next, 1, memory_order_relaxed);
    if (t >= s->k * s->chunks)
        return SB_NEXT_DONE;
    int store = t / s->chunks + 1;
    c->first = (t % s->chunks) * s->per + 1;
    c->count = s->n - c->first + 1 < s->per ? s->n - c->first + 1 : s->per;
    sb_store_slug(c->slug, sizeof(c->slug), store);
    size_t n = 0, cap = sizeof(c->body);
    n += (size_t)snprintf(c->body + n, cap - n, "{\"rows\":[");
    for (int j = c->first; j < c->first + c->count && n < cap; j++) {
        n += (size_t)snprintf(
            c->body + n, cap - n,
            "%s{\"name\":\"Bench Product %d\",\"slug\":\"bench-product-%d\",\"base_price\":%d,"
            "\"status\":\"active\",\"brand\":\"Brand %d\",\"category\":\"bench-cat-%d\","
            "\"description\":\"A product of %s to benchmark the catalog, number %d.\","
            "\"variants\":[",
            j > c->first ? "," : "", j, j, 100 * j, j % 10, j % CAT_SEED_CATS + 1, c->slug, j);
        for (int v = 1; v <= s->v && n < cap; v++)
            n += (size_t)snprintf(c->body + n, cap - n,
                                  "%s{\"sku\":\"BENCH-%d-%d\",\"options\":{\"size\":\"S%d\"},"
                                  "\"stock\":1000,\"price\":%d}",
                                  v > 1 ? "," : "", j, v, v, 100 * j + v);
        if (n < cap)
            n += (size_t)snprintf(c->body + n, cap - n, "]}");
    }
    if (n < cap)
        n += (size_t)snprintf(c->body + n, cap - n, "]}");
    if (n >= cap) /* sb_seed_catalog sized per so that this cannot happen */
        return SB_NEXT_DONE;
    req->method = "POST";
    snprintf(req->path, sizeof(req->path), "/api/v1/imports/products");
    sb_req_header(req, "X-Tenant-Id: %s", c->slug);
    sb_req_header(req, "%s", s->auth);
    sb_req_header(req, "Content-Type: application/json");
    req->body = c->body;
    req->body_len = n;
    req->keep_body = true;
    return SB_NEXT_SEND;
}

static void
imp_fail(imp_seed_t *s, const imp_conn_t *c, int count, const char *what, const sb_resp_t *r)
{
    atomic_fetch_add_explicit(&s->failed, count, memory_order_relaxed);
    pthread_mutex_lock(&s->lock);
    if (s->first_error[0] == '\0') {
        size_t blen = 0;
        const char *body = r->status ? sb_http_body(r->http, &blen) : "";
        snprintf(s->first_error, sizeof(s->first_error), "%s in %s: %s%d %.*s", what, c->slug,
                 r->status ? "HTTP " : "", r->status, (int)(blen > 300 ? 300 : blen),
                 r->status ? body : r->error);
    }
    pthread_mutex_unlock(&s->lock);
}

static bool
imp_done(sb_ctx_t *cx, void *state, const sb_resp_t *r)
{
    imp_seed_t *s = cx->shared;
    imp_conn_t *c = state;
    json_t *doc = r->status == 200 ? resp_json(r) : NULL;
    if (doc == NULL) {
        imp_fail(s, c, c->count, "importing products", r);
        return false;
    }
    int created = (int)json_integer_value(json_object_get(doc, "imported"));
    int existed = 0, other = 0;
    size_t i;
    json_t *x;
    json_array_foreach(json_object_get(doc, "rejected"), i, x)
    {
        const char *code = json_string_value(json_object_get(x, "code"));
        if (code != NULL && !strcmp(code, "slug_taken"))
            existed++;
        else
            other++;
    }
    int variants = (int)json_integer_value(json_object_get(doc, "variants"));
    json_decref(doc);
    atomic_fetch_add_explicit(&s->created, created, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->existed, existed, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->variants, variants, memory_order_relaxed);
    if (other > 0) {
        imp_fail(s, c, other, "a rejected row", r);
        return false;
    }
    return true;
}

static const sb_scenario_t seed_import = {
    .name = "seed-import",
    .help = "bulk-load each store's products with their variants",
    .state_size = sizeof(imp_conn_t),
    .next = imp_next,
    .on_response = imp_done,
};

static int
seed_catalog_import(const sb_opts_t *o)
{
    imp_seed_t s;
    memset(&s, 0, sizeof(s));
    s.k = o->stores;
    s.n = o->products;
    s.v = o->variants;
    /* A product and its variants take under 320 + 100 bytes per variant. */
    s.per = (int)(SEED_IMPORT_BODY / (320u + 100u * (unsigned)s.v));
    if (s.per > SEED_IMPORT_ROWS)
        s.per = SEED_IMPORT_ROWS;
    if (s.per > s.n)
        s.per = s.n;
    s.chunks = (s.n + s.per - 1) / s.per;
    snprintf(s.auth, sizeof(s.auth), "Authorization: Bearer %s", o->token);
    atomic_init(&s.next, 0);
    atomic_init(&s.created, 0);
    atomic_init(&s.existed, 0);
    atomic_init(&s.variants, 0);
    atomic_init(&s.failed, 0);
    pthread_mutex_init(&s.lock, NULL);
    int conns = o->conns > 0 ? o->conns : SEED_DEFAULT_CONNS;
    long tickets = (long)s.k * s.chunks;
    uint64_t t0 = sb_now_us();
    sb_run_t run = {.opts = o,
                    .scn = &seed_import,
                    .shared = &s,
                    .threads = 1,
                    .conns = tickets < conns ? (int)tickets : conns,
                    .timeout_us = (uint64_t)(o->timeout_s * 1e6)};
    sb_result_t res;
    int rc = sb_run(&run, &res);
    sb_result_free(&res);
    double secs = (double)(sb_now_us() - t0) / 1e6;
    int created = atomic_load_explicit(&s.created, memory_order_relaxed);
    int existed = atomic_load_explicit(&s.existed, memory_order_relaxed);
    int failed = atomic_load_explicit(&s.failed, memory_order_relaxed);
    printf("seed: products: %d created, %d already existed, %d variants created, %d failed "
           "(%.2f s, %.0f products/s, %ld import requests of up to %d products)\n",
           created, existed, atomic_load_explicit(&s.variants, memory_order_relaxed), failed, secs,
           secs > 0 ? created / secs : 0.0, tickets, s.per);
    long want = (long)s.k * s.n;
    if (rc == 0 && failed == 0 && created + existed < want) {
        fprintf(stderr, "shopbench: %ld products were not reached (could not connect?)\n",
                want - created - existed);
        failed = 1;
    }
    if (s.first_error[0])
        fprintf(stderr, "shopbench: first failure: %s\n", s.first_error);
    pthread_mutex_destroy(&s.lock);
    return rc == 0 && failed == 0 ? 0 : -1;
}

int
sb_seed_catalog(const sb_opts_t *o)
{
    if (!o->seed_per_request && o->products > 0 && o->variants <= CATALOG_SEED_MAX_V)
        return seed_catalog_import(o);
    cat_seed_t s;
    memset(&s, 0, sizeof(s));
    s.o = o;
    s.k = o->stores;
    s.n = o->products;
    s.v = o->variants;
    snprintf(s.auth, sizeof(s.auth), "Authorization: Bearer %s", o->token);
    atomic_init(&s.next, 0);
    atomic_init(&s.ntodo, 0);
    atomic_init(&s.skipped, 0);
    atomic_init(&s.prepared, 0);
    atomic_init(&s.failed, 0);
    atomic_init(&s.admins, 0);
    atomic_init(&s.p_created, 0);
    atomic_init(&s.p_existed, 0);
    atomic_init(&s.v_created, 0);
    pthread_mutex_init(&s.lock, NULL);
    s.cats = calloc((size_t)s.k + 1, sizeof(*s.cats));
    s.todo = calloc((size_t)s.k + 1, sizeof(int));
    int rc = -1;
    if (s.cats == NULL || s.todo == NULL)
        goto out;
    int conns = o->conns > 0 ? o->conns : SEED_DEFAULT_CONNS;

    uint64_t t0 = sb_now_us();
    if (cat_run(o, &seed_cat_prep, &s, conns < s.k ? conns : s.k) < 0)
        goto out;
    double t1 = (double)(sb_now_us() - t0) / 1e6;
    int failed = atomic_load_explicit(&s.failed, memory_order_relaxed);
    int skipped = atomic_load_explicit(&s.skipped, memory_order_relaxed);
    int ntodo = atomic_load_explicit(&s.ntodo, memory_order_relaxed);
    printf("seed: catalogs: %d stores already had %d products, %d prepared (%d admins created, "
           "2 categories each), %d failed (%.2f s)\n",
           skipped, s.n, ntodo, atomic_load_explicit(&s.admins, memory_order_relaxed), failed, t1);
    fflush(stdout);
    if (failed == 0 && skipped + ntodo < s.k) {
        fprintf(stderr, "shopbench: %d stores were not reached (could not connect?)\n",
                s.k - skipped - ntodo);
        failed = 1;
    }
    if (failed == 0 && ntodo > 0) {
        uint64_t t2 = sb_now_us();
        long tickets = (long)ntodo * s.n;
        if (cat_run(o, &seed_cat_products, &s, tickets < conns ? (int)tickets : conns) < 0)
            goto out;
        double secs = (double)(sb_now_us() - t2) / 1e6;
        int created = atomic_load_explicit(&s.p_created, memory_order_relaxed);
        int existed = atomic_load_explicit(&s.p_existed, memory_order_relaxed);
        int vcreated = atomic_load_explicit(&s.v_created, memory_order_relaxed);
        failed = atomic_load_explicit(&s.failed, memory_order_relaxed);
        printf("seed: products: %d created, %d already existed, %d variants created, %d failed "
               "(%.2f s, %.0f products/s, %.0f requests/s)\n",
               created, existed, vcreated, failed, secs, secs > 0 ? created / secs : 0.0,
               secs > 0 ? (created + existed + vcreated) / secs : 0.0);
        if (failed == 0 && created + existed < tickets) {
            fprintf(stderr, "shopbench: %ld products were not reached (could not connect?)\n",
                    tickets - created - existed);
            failed = 1;
        }
    }
    if (s.first_error[0])
        fprintf(stderr, "shopbench: first failure: %s\n", s.first_error);
    rc = failed == 0 ? 0 : -1;
out:
    free(s.cats);
    free(s.todo);
    pthread_mutex_destroy(&s.lock);
    return rc;
}
