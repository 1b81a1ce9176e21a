/*
 * seed.c: `shopbench seed`, which creates the stores bench-000001..K that the
 * `tenants` scenario spreads its load over, through the platform API
 * (POST /api/v1/stores with the platform token). It reuses the load engine as
 * a finite run: a few connections pull store numbers from a shared counter
 * until none are left, so seeding 10 000 stores takes seconds, and an existing
 * store (409) counts as done, so seeding is safe to repeat. A sample of the
 * stores is then read back through the tenant API (GET /api/v1/store).
 *
 * The shared counters are atomics because any worker may take any store; the
 * run uses one worker thread, but nothing here depends on that.
 */
#include "shopbench.h"

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
        code = 0;
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
out:
    free(sample);
    pthread_mutex_destroy(&s.lock);
    return code;
}
