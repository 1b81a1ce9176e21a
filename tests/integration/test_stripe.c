/*
 * test_stripe.c: Stripe payments end to end: the real shopd binary against
 * real PostgreSQL and Redis, and the fake Stripe (tests/fake_stripe, node) on
 * a free port as the store's api_base.
 *
 * Covered: the account settings (secrets shown as last 4 only), checkout
 * answers for every outcome the fake scripts (requires_payment_method,
 * succeeded, requires_action, decline, insufficient funds), every fault
 * (500, a stall past the timeout, malformed JSON, a 50 MiB body: the order
 * stays PENDING with its payment pending, nothing half-written, no
 * PaymentIntent twice, and the store's other checkouts keep flowing),
 * the sweeper settling them once Stripe is back (one PaymentIntent each),
 * Idempotency-Key retries (one PaymentIntent), webhooks (3 deliveries, two of
 * them concurrent: one PAID transition; forged, expired, changed-body and
 * missing signatures refused with nothing written; rotation; an event before
 * its order exists; out-of-order events never move an order back; another
 * store's event ignored), refunds and cancels through Stripe.
 */
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <jansson.h>

#include "harness.h"

#define SK "sk_test_fake0123456789abcd"
#define WHSEC "whsec_test0123456789wxyz"
#define WHSEC2 "whsec_rotated0123456789ab"

static th_server_t *srv;
static pid_t fake_pid;
static int fake_port;
static char fake_url[64];

/* ---- the fake Stripe ---- */

static void
fake_start(void)
{
    int out[2];
    assert_int_equal(pipe(out), 0);
    fake_pid = fork();
    assert_true(fake_pid >= 0);
    if (fake_pid == 0) {
        dup2(out[1], 1);
        close(out[0]);
        close(out[1]);
        execlp("node", "node", SHOPD_SOURCE_DIR "/tests/fake_stripe/fake_stripe.mjs", (char *)NULL);
        _exit(127);
    }
    close(out[1]);
    FILE *f = fdopen(out[0], "r");
    char line[64] = "";
    assert_non_null(fgets(line, sizeof(line), f));
    assert_int_equal(sscanf(line, "PORT %d", &fake_port), 1);
    fclose(f);
    snprintf(fake_url, sizeof(fake_url), "http://127.0.0.1:%d", fake_port);
}

static void
fake_stop(void)
{
    if (fake_pid > 0) {
        kill(fake_pid, SIGTERM);
        waitpid(fake_pid, NULL, 0);
        fake_pid = 0;
    }
}

static size_t
sink(char *p, size_t s, size_t n, void *ud)
{
    size_t len = s * n;
    char **buf = ud;
    size_t old = *buf ? strlen(*buf) : 0;
    *buf = realloc(*buf, old + len + 1);
    memcpy(*buf + old, p, len);
    (*buf)[old + len] = '\0';
    return len;
}

/* A JSON call to the fake's test side; the parsed answer (caller decrefs). */
static json_t *
fake(const char *method, const char *path, const char *body, ...)
{
    char url[256];
    snprintf(url, sizeof(url), "%s%s", fake_url, path);
    char *text = NULL;
    va_list ap;
    va_start(ap, body);
    char *b = NULL;
    if (body) {
        size_t need = (size_t)vsnprintf(NULL, 0, body, ap) + 1;
        va_end(ap);
        va_start(ap, body);
        b = malloc(need);
        vsnprintf(b, need, body, ap);
    }
    va_end(ap);
    CURL *h = curl_easy_init();
    struct curl_slist *hdr = curl_slist_append(NULL, "Content-Type: application/json");
    hdr = curl_slist_append(hdr, "Authorization: Bearer " SK);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
    if (b)
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, b);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, sink);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &text);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 60L);
    CURLcode cc = curl_easy_perform(h);
    curl_slist_free_all(hdr);
    curl_easy_cleanup(h);
    free(b);
    assert_int_equal(cc, CURLE_OK);
    json_t *j = json_loads(text ? text : "", 0, NULL);
    free(text);
    assert_non_null(j);
    return j;
}

static long
fake_creates(void)
{
    json_t *s = fake("GET", "/_stats", NULL);
    long n = (long)json_integer_value(json_object_get(s, "payment_intents"));
    json_decref(s);
    return n;
}

static long
fake_stat(const char *name)
{
    json_t *st = fake("GET", "/_stats", NULL);
    long n = (long)json_integer_value(json_object_get(st, name));
    json_decref(st);
    return n;
}

static void
fake_mode(const char *create, const char *refund)
{
    json_decref(fake("POST", "/_control", "{\"create\":\"%s\",\"refund\":\"%s\"}", create, refund));
}

/* ---- the shop ---- */

typedef struct shop_s {
    long id;
    char slug[64];
    th_user_t admin;
    long product, variant, rate;
} shop_t;

static th_resp_t
rq(long store, const char *token, const char *idem, const char *method, const char *path,
   const char *body)
{
    char tenant[64], auth[1024], key[300];
    const char *h[4] = {tenant, NULL, NULL, NULL};
    size_t n = 1;
    snprintf(tenant, sizeof(tenant), "X-Tenant-Id: %ld", store);
    if (token) {
        th_auth_header(auth, sizeof(auth), token);
        h[n++] = auth;
    }
    if (idem) {
        snprintf(key, sizeof(key), "Idempotency-Key: %s", idem);
        h[n++] = key;
    }
    return th_req(srv, method, path, h, body);
}

static long
jint(const json_t *o, const char *k)
{
    return (long)json_integer_value(json_object_get(o, k));
}

static const char *
jstr(const json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "";
}

static const char *
sqlf(const char *fmt, ...)
{
    char sql[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sql, sizeof(sql), fmt, ap);
    va_end(ap);
    return th_sql(sql, NULL);
}

static shop_t
shop_new(bool stripe)
{
    shop_t s = {0};
    snprintf(s.slug, sizeof(s.slug), "%s", th_slug("stripe"));
    s.id = th_create_store(srv, s.slug, NULL);
    s.admin = th_user_new(srv, "STORE_ADMIN", s.id);
    th_resp_t r = rq(s.id, s.admin.access, NULL, "POST", "/api/v1/products",
                     "{\"name\":\"Mug\",\"base_price\":1000,\"status\":\"active\"}");
    assert_int_equal(r.status, 201);
    s.product = jint(r.json, "id");
    th_resp_free(&r);
    char path[96];
    snprintf(path, sizeof(path), "/api/v1/products/%ld/variants", s.product);
    r = rq(s.id, s.admin.access, NULL, "POST", path,
           "{\"sku\":\"MUG-1\",\"options\":{\"c\":\"red\"},\"price\":1000}");
    assert_int_equal(r.status, 201);
    s.variant = jint(r.json, "id");
    th_resp_free(&r);
    snprintf(path, sizeof(path), "/api/v1/variants/%ld/inventory", s.variant);
    r = rq(s.id, s.admin.access, NULL, "PATCH", path, "{\"adjust\":100000,\"reason\":\"initial\"}");
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
    r = rq(s.id, s.admin.access, NULL, "POST", "/api/v1/admin/shipping-zones",
           "{\"name\":\"Germany\",\"countries\":[\"DE\"]}");
    assert_int_equal(r.status, 201);
    snprintf(path, sizeof(path), "/api/v1/admin/shipping-zones/%ld/rates", jint(r.json, "id"));
    th_resp_free(&r);
    r = rq(s.id, s.admin.access, NULL, "POST", path,
           "{\"name\":\"Standard\",\"kind\":\"flat\",\"price\":500}");
    assert_int_equal(r.status, 201);
    s.rate = jint(r.json, "id");
    th_resp_free(&r);
    if (stripe) {
        char body[512];
        snprintf(body, sizeof(body),
                 "{\"secret_key\":\"" SK "\",\"webhook_secrets\":[\"" WHSEC "\",\"" WHSEC2
                 "\"],\"api_base\":\"%s\",\"default\":true}",
                 fake_url);
        r = rq(s.id, s.admin.access, NULL, "PATCH", "/api/v1/admin/payments/stripe", body);
        assert_int_equal(r.status, 200);
        th_resp_free(&r);
    }
    return s;
}

/* A new guest cart with one mug; its id (static). */
static const char *
new_cart(shop_t *s)
{
    static __thread char id[128];
    char body[160], tenant[64];
    snprintf(body, sizeof(body), "{\"variant_id\":%ld,\"quantity\":1}", s->variant);
    snprintf(tenant, sizeof(tenant), "X-Tenant-Id: %ld", s->id);
    const char *h1[] = {tenant, NULL};
    th_resp_t r = th_req(srv, "POST", "/api/v1/cart/add", h1, body);
    assert_int_equal(r.status, 200);
    snprintf(id, sizeof(id), "%s", th_header(&r, "X-Cart-Id"));
    th_resp_free(&r);
    return id;
}

/* The checkout of cart (Idempotency-Key idem and provider may be NULL). */
static th_resp_t
checkout_cart(shop_t *s, const char *cart, const char *idem, const char *provider)
{
    char tenant[64], cid[160], key[300] = "";
    snprintf(tenant, sizeof(tenant), "X-Tenant-Id: %ld", s->id);
    snprintf(cid, sizeof(cid), "X-Cart-Id: %s", cart);
    if (idem)
        snprintf(key, sizeof(key), "Idempotency-Key: %s", idem);
    const char *h2[] = {tenant, cid, idem ? key : NULL, NULL};
    char co[700];
    snprintf(co, sizeof(co),
             "{\"email\":\"buyer@example.com\",%s%s%s\"shipping_address\":{\"name\":\"Ada\","
             "\"line1\":\"Str 1\",\"city\":\"Berlin\",\"postal_code\":\"10115\",\"country\":"
             "\"DE\"},\"shipping_rate_id\":%ld}",
             provider ? "\"payment_provider\":\"" : "", provider ? provider : "",
             provider ? "\"," : "", s->rate);
    return th_req(srv, "POST", "/api/v1/checkout", h2, co);
}

static th_resp_t
checkout_as(shop_t *s, const char *idem, const char *provider)
{
    return checkout_cart(s, new_cart(s), idem, provider);
}

static th_resp_t
checkout(shop_t *s)
{
    return checkout_as(s, NULL, NULL);
}

static long
order_of(const th_resp_t *r)
{
    json_t *o =
        r->status == 402 ? json_object_get(json_object_get(r->json, "error"), "order") : r->json;
    return jint(o, "id");
}

static const char *
order_status(shop_t *s, long order)
{
    return sqlf("SELECT status || '/' || payment_status FROM orders WHERE store_id = %ld AND id "
                "= %ld",
                s->id, order);
}

static const char *
pi_of(shop_t *s, long order)
{
    return sqlf("SELECT coalesce(provider_ref, '') FROM payments WHERE store_id = %ld AND "
                "order_id = %ld",
                s->id, order);
}

/* Sends a webhook through the fake: type about pi (order's metadata), signed
 * with secret, times deliveries; extra: more JSON fields. The fake's answer. */
static json_t *
hook(shop_t *s, const char *type, const char *pi, const char *secret, int times, bool concurrent,
     const char *extra)
{
    return fake("POST", "/_webhook",
                "{\"url\":\"%s/api/v1/payments/stripe/webhook/%s\",\"type\":\"%s\",\"pi\":\"%s\","
                "\"secret\":\"%s\",\"times\":%d,\"concurrent\":%s%s%s}",
                srv->url, s->slug, type, pi, secret, times, concurrent ? "true" : "false",
                extra ? "," : "", extra ? extra : "");
}

static long
hook_status(json_t *ans, size_t i)
{
    return (long)json_integer_value(json_array_get(json_object_get(ans, "statuses"), i));
}

/* ---- tests ---- */

static void
test_account_settings(void **state)
{
    (void)state;
    shop_t s = shop_new(false);
    th_resp_t r = rq(s.id, s.admin.access, NULL, "GET", "/api/v1/admin/payments/stripe", NULL);
    assert_int_equal(r.status, 404);
    assert_string_equal(th_error_code(&r), "stripe_not_configured");
    th_resp_free(&r);
    /* The first PATCH needs the key; bad values are refused field by field. */
    r = rq(s.id, s.admin.access, NULL, "PATCH", "/api/v1/admin/payments/stripe",
           "{\"default\":true}");
    assert_int_equal(r.status, 422);
    th_resp_free(&r);
    r = rq(s.id, s.admin.access, NULL, "PATCH", "/api/v1/admin/payments/stripe",
           "{\"secret_key\":\"pk_live_public\",\"webhook_secrets\":[\"nope\"],\"api_base\":"
           "\"ftp://x\",\"extra\":1}");
    assert_int_equal(r.status, 422);
    assert_string_equal(th_error_code(&r), "validation_failed");
    assert_non_null(strstr(r.body, "secret_key"));
    assert_non_null(strstr(r.body, "webhook_secrets"));
    assert_non_null(strstr(r.body, "api_base"));
    th_resp_free(&r);
    assert_string_equal(sqlf("SELECT count(*) FROM stripe_accounts WHERE store_id = %ld", s.id),
                        "0");
    char body[512];
    snprintf(body, sizeof(body),
             "{\"secret_key\":\"" SK "\",\"webhook_secrets\":[\"" WHSEC "\"],\"api_base\":\"%s\"}",
             fake_url);
    r = rq(s.id, s.admin.access, NULL, "PATCH", "/api/v1/admin/payments/stripe", body);
    assert_int_equal(r.status, 200);
    assert_string_equal(jstr(r.json, "secret_key_last4"), "abcd");
    assert_null(strstr(r.body, SK));
    assert_null(strstr(r.body, WHSEC));
    assert_string_equal(
        jstr(json_array_get(json_object_get(r.json, "webhook_secrets"), 0), "last4"), "wxyz");
    assert_false(json_is_true(json_object_get(r.json, "default")));
    th_resp_free(&r);
    /* A later PATCH changes what it names and keeps the key. */
    r = rq(s.id, s.admin.access, NULL, "PATCH", "/api/v1/admin/payments/stripe",
           "{\"default\":true}");
    assert_int_equal(r.status, 200);
    assert_true(json_is_true(json_object_get(r.json, "default")));
    assert_string_equal(jstr(r.json, "secret_key_last4"), "abcd");
    th_resp_free(&r);
    r = rq(s.id, s.admin.access, NULL, "GET", "/api/v1/admin/payments/stripe", NULL);
    assert_int_equal(r.status, 200);
    assert_null(strstr(r.body, SK));
    th_resp_free(&r);
    /* Customers may not see or change it. */
    th_user_t cu = th_user_new(srv, "CUSTOMER", s.id);
    r = rq(s.id, cu.access, NULL, "GET", "/api/v1/admin/payments/stripe", NULL);
    assert_int_equal(r.status, 403);
    th_resp_free(&r);
    /* The secret never reached the log. */
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "! grep -q '%s' %s", SK, srv->log_path);
    th_run(cmd);
    th_user_free(&cu);
    th_user_free(&s.admin);
}

static void
test_checkout_outcomes(void **state)
{
    (void)state;
    shop_t s = shop_new(true);
    long before = fake_creates();

    /* No payment method yet: the client confirms with the client_secret. */
    fake_mode("requires_payment_method", "succeed");
    th_resp_t r = checkout(&s);
    assert_int_equal(r.status, 201);
    json_t *pay = json_object_get(r.json, "payment");
    assert_string_equal(jstr(pay, "status"), "requires_action");
    assert_string_equal(jstr(pay, "next_action"), "confirm_payment");
    assert_non_null(strstr(jstr(pay, "client_secret"), "_secret_"));
    assert_string_equal(jstr(r.json, "payment_provider"), "stripe");
    long o1 = order_of(&r);
    th_resp_free(&r);
    assert_string_equal(order_status(&s, o1), "PENDING/requires_action");
    assert_int_equal(strncmp(pi_of(&s, o1), "pi_", 3), 0);
    /* The key was stored with the payment. */
    char want[96];
    snprintf(want, sizeof(want), "shopd-%ld-%ld-1", s.id, o1);
    assert_string_equal(sqlf("SELECT idempotency_key FROM payments WHERE store_id = %ld AND "
                             "order_id = %ld",
                             s.id, o1),
                        want);

    fake_mode("succeed", "succeed");
    r = checkout(&s);
    assert_int_equal(r.status, 201);
    assert_string_equal(jstr(json_object_get(r.json, "payment"), "status"), "succeeded");
    assert_string_equal(jstr(r.json, "status"), "PAID");
    long o2 = order_of(&r);
    th_resp_free(&r);
    assert_string_equal(order_status(&s, o2), "PAID/paid");

    fake_mode("action", "succeed");
    r = checkout(&s);
    assert_int_equal(r.status, 201);
    pay = json_object_get(r.json, "payment");
    assert_string_equal(jstr(pay, "status"), "requires_action");
    assert_string_equal(jstr(pay, "next_action"), "use_stripe_sdk");
    assert_true(strlen(jstr(pay, "client_secret")) > 10);
    th_resp_free(&r);

    fake_mode("decline", "succeed");
    r = checkout(&s);
    assert_int_equal(r.status, 402);
    assert_string_equal(th_error_code(&r), "payment_declined");
    assert_non_null(strstr(r.body, "generic_decline"));
    long o3 = order_of(&r);
    assert_true(o3 > 0);
    th_resp_free(&r);
    assert_string_equal(order_status(&s, o3), "PENDING/failed");
    assert_string_equal(sqlf("SELECT decline_code FROM payments WHERE store_id = %ld AND "
                             "order_id = %ld",
                             s.id, o3),
                        "generic_decline");

    fake_mode("insufficient_funds", "succeed");
    r = checkout(&s);
    assert_int_equal(r.status, 402);
    assert_non_null(strstr(r.body, "insufficient_funds"));
    th_resp_free(&r);

    /* The test provider is still there when named. */
    r = checkout_as(&s, NULL, "test");
    assert_int_equal(r.status, 201);
    assert_string_equal(jstr(r.json, "payment_provider"), "test");
    th_resp_free(&r);
    /* A store without Stripe cannot be asked for it. */
    shop_t plain = shop_new(false);
    r = checkout_as(&plain, NULL, "stripe");
    assert_int_equal(r.status, 422);
    th_resp_free(&r);
    assert_int_equal(fake_creates() - before, 5);
    th_user_free(&plain.admin);
    th_user_free(&s.admin);
}

typedef struct side_s {
    shop_t *s;
    int n, ok;
    long max_ms;
} side_t;

static void *
side_checkouts(void *arg)
{
    side_t *d = arg;
    for (int i = 0; i < d->n; i++) {
        struct timeval a, b;
        gettimeofday(&a, NULL);
        th_resp_t r = checkout_as(d->s, NULL, "test");
        gettimeofday(&b, NULL);
        long ms = (b.tv_sec - a.tv_sec) * 1000 + (b.tv_usec - a.tv_usec) / 1000;
        if (ms > d->max_ms)
            d->max_ms = ms;
        d->ok += r.status == 201;
        th_resp_free(&r);
    }
    return NULL;
}

/* Stripe failing in every way: the order stays PENDING, its payment pending,
 * nothing half-written, no PaymentIntent made; checkouts of another store go on
 * meanwhile (the call holds no actor, no lock). */
static void
test_faults(void **state)
{
    (void)state;
    shop_t s = shop_new(true);
    shop_t other = shop_new(false);
    static const char *const modes[] = {"500", "malformed", "huge", "stall"};
    /* A stall of 4 s against shopd's 2 s timeout: a retry with the same key is
     * refused (409, in flight at the fake, as at Stripe) until it ends. */
    json_decref(fake("POST", "/_control", "{\"stall_ms\":4000}"));
    for (size_t m = 0; m < 4; m++) {
        fake_mode(modes[m], "succeed");
        long before = fake_creates();
        side_t side = {.s = &other, .n = 10};
        pthread_t t;
        pthread_create(&t, NULL, side_checkouts, &side);
        struct timeval a, b;
        gettimeofday(&a, NULL);
        th_resp_t r = checkout(&s);
        gettimeofday(&b, NULL);
        pthread_join(t, NULL);
        long ms = (b.tv_sec - a.tv_sec) * 1000 + (b.tv_usec - a.tv_usec) / 1000;
        print_message("fault %s: checkout answered %ld in %ld ms; other store: %d/%d ok, "
                      "slowest %ld ms\n",
                      modes[m], r.status, ms, side.ok, side.n, side.max_ms);
        assert_int_equal(r.status, 201);
        assert_string_equal(jstr(json_object_get(r.json, "payment"), "status"), "pending");
        long o = order_of(&r);
        th_resp_free(&r);
        assert_string_equal(order_status(&s, o), "PENDING/pending");
        assert_string_equal(pi_of(&s, o), "");
        assert_string_equal(sqlf("SELECT status FROM payments WHERE store_id = %ld AND order_id "
                                 "= %ld",
                                 s.id, o),
                            "pending");
        assert_int_equal(fake_creates(), before);
        assert_int_equal(side.ok, side.n);
        if (strcmp(modes[m], "stall") == 0) {
            assert_true(ms < 6000);          /* the timeout (2 s) and not the stall (30 s) */
            assert_true(side.max_ms < 1500); /* the other store did not wait on it */
        }
    }
    fake_mode("requires_payment_method", "succeed");
    th_user_free(&other.admin);
    th_user_free(&s.admin);
}

typedef struct rec_wait_s {
    long store;
    long n;
} rec_wait_t;

static bool
all_paid(void *arg)
{
    rec_wait_t *w = arg;
    return atol(sqlf("SELECT count(*) FROM orders WHERE store_id = %ld AND status = 'PAID'",
                     w->store)) == w->n;
}

/* The orders test_faults left PENDING: once Stripe answers again, the sweeper
 * asks it with each payment's first key and parameters: every order gets paid,
 * with exactly one PaymentIntent each. */
static void
test_reconcile(void **state)
{
    (void)state;
    long store = atol(sqlf("SELECT max(p.store_id) FROM payments p WHERE p.provider = 'stripe' "
                           "AND p.status = 'pending' AND p.provider_ref IS NULL"));
    assert_true(store > 0);
    long n = atol(sqlf("SELECT count(*) FROM orders WHERE store_id = %ld", store));
    assert_int_equal(n, 4);
    long before = fake_creates();
    fake_mode("succeed", "succeed");
    rec_wait_t w = {store, n};
    bool paid = th_wait_until(all_paid, &w, 30000);
    if (!paid) {
        char cmd[512];
        snprintf(cmd, sizeof(cmd),
                 "grep -i 'stripe\\|reconcil\\|payment\\|error' %s | tail -20 >&2", srv->log_path);
        if (system(cmd) != 0)
            print_message("no log lines\n");
        print_message("orders: %s\n",
                      sqlf("SELECT string_agg(o.status || ':' || p.status || ':' || "
                           "coalesce(p.idempotency_key, '-') || ':' || p.updated_at, ' ') FROM "
                           "orders o JOIN payments p ON p.store_id = o.store_id AND p.order_id = "
                           "o.id WHERE o.store_id = %ld",
                           store));
    }
    assert_true(paid);
    assert_int_equal(fake_creates() - before, 4);
    assert_string_equal(sqlf("SELECT count(DISTINCT provider_ref) FROM payments WHERE store_id = "
                             "%ld AND status = 'succeeded'",
                             store),
                        "4");
    assert_string_equal(sqlf("SELECT count(*) FROM order_events WHERE store_id = %ld AND "
                             "to_status = 'PAID'",
                             store),
                        "4");
    fake_mode("requires_payment_method", "succeed");
}

/* The same checkout sent 3 times with one Idempotency-Key: one order, one
 * PaymentIntent, the same answer. */
static void
test_idempotent_checkout(void **state)
{
    (void)state;
    shop_t s = shop_new(true);
    fake_mode("requires_payment_method", "succeed");
    long before = fake_creates();
    char key[64];
    snprintf(key, sizeof(key), "co-%d-%ld", getpid(), s.id);
    char cart[128];
    snprintf(cart, sizeof(cart), "%s", new_cart(&s));
    th_resp_t r1 = checkout_cart(&s, cart, key, NULL);
    assert_int_equal(r1.status, 201);
    long o = order_of(&r1);
    for (int i = 0; i < 2; i++) {
        th_resp_t r = checkout_cart(&s, cart, key, NULL);
        assert_int_equal(r.status, 201);
        assert_int_equal(order_of(&r), o);
        assert_string_equal(r.body, r1.body);
        assert_string_equal(th_header(&r, "Idempotent-Replayed"), "true");
        th_resp_free(&r);
    }
    th_resp_free(&r1);
    assert_int_equal(fake_creates() - before, 1);
    assert_string_equal(sqlf("SELECT count(*) FROM orders WHERE store_id = %ld", s.id), "1");
    th_user_free(&s.admin);
}

typedef struct slow_s {
    shop_t *s;
    const char *cart, *key;
    th_resp_t r;
} slow_t;

static void *
slow_checkout(void *arg)
{
    slow_t *x = arg;
    x->r = checkout_cart(x->s, x->cart, x->key, NULL);
    return NULL;
}

static bool
has_order(void *arg)
{
    shop_t *s = arg;
    return atol(sqlf("SELECT count(*) FROM orders WHERE store_id = %ld", s->id)) == 1;
}

/* A retry sent while the checkout's call to Stripe is still in flight: 409
 * idempotency_in_flight with Retry-After (Stripe's semantics), not the
 * provisional answer; once the first is answered, its final answer replays. */
static void
test_retry_in_flight(void **state)
{
    (void)state;
    shop_t s = shop_new(true);
    fake_mode("requires_payment_method", "succeed");
    json_decref(fake("POST", "/_control", "{\"delay_ms\":1500}"));
    long before = fake_creates();
    char key[64], cart[128];
    snprintf(key, sizeof(key), "inflight-%d-%ld", getpid(), s.id);
    snprintf(cart, sizeof(cart), "%s", new_cart(&s));
    slow_t a = {&s, cart, key, {0}};
    pthread_t t;
    pthread_create(&t, NULL, slow_checkout, &a);
    /* The order committed, its PaymentIntent not created yet. */
    assert_true(th_wait_until(has_order, &s, 10000));
    th_resp_t b = checkout_cart(&s, cart, key, NULL);
    assert_int_equal(b.status, 409);
    assert_string_equal(th_error_code(&b), "idempotency_in_flight");
    assert_string_equal(th_header(&b, "Retry-After"), "1");
    th_resp_free(&b);
    pthread_join(t, NULL);
    assert_int_equal(a.r.status, 201);
    assert_string_equal(jstr(json_object_get(a.r.json, "payment"), "status"), "requires_action");
    th_resp_t c = checkout_cart(&s, cart, key, NULL);
    assert_int_equal(c.status, 201);
    assert_string_equal(c.body, a.r.body);
    assert_string_equal(th_header(&c, "Idempotent-Replayed"), "true");
    th_resp_free(&c);
    th_resp_free(&a.r);
    json_decref(fake("POST", "/_control", "{\"delay_ms\":0}"));
    assert_int_equal(fake_creates() - before, 1);
    th_user_free(&s.admin);
}

/* RELIABILITY 2.1's bar at full size: 1,000 checkouts, each sent twice at
 * once and once more afterwards with one Idempotency-Key, from 8 threads ->
 * exactly 1,000 orders and 1,000 PaymentIntents at the fake. Under the
 * sanitizers (several times slower) 150; SHOPD_TEST_STRIPE_LOAD_N sets it. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define LOAD_DEFAULT 150
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define LOAD_DEFAULT 150
#endif
#endif
#ifndef LOAD_DEFAULT
#define LOAD_DEFAULT 1000
#endif
#define LOAD_THREADS 8
static int LOAD_N = LOAD_DEFAULT;

typedef struct load_s {
    shop_t *s;
    int first, step;
    int bad;
} load_t;

typedef struct one_s {
    shop_t *s;
    const char *cart, *key;
    th_resp_t r;
} one_t;

static void *
load_one(void *arg)
{
    one_t *o = arg;
    o->r = checkout_cart(o->s, o->cart, o->key, NULL);
    return NULL;
}

static void *
load_thread(void *arg)
{
    load_t *l = arg;
    for (int i = l->first; i < LOAD_N; i += l->step) {
        char cart[128], key[64];
        snprintf(cart, sizeof(cart), "%s", new_cart(l->s));
        snprintf(key, sizeof(key), "load-%d-%ld-%d", getpid(), l->s->id, i);
        one_t a = {l->s, cart, key, {0}}, b = {l->s, cart, key, {0}};
        pthread_t ta, tb;
        pthread_create(&ta, NULL, load_one, &a);
        pthread_create(&tb, NULL, load_one, &b);
        pthread_join(ta, NULL);
        pthread_join(tb, NULL);
        th_resp_t c = checkout_cart(l->s, cart, key, NULL);
        long oa = a.r.status == 201 ? order_of(&a.r) : 0,
             ob = b.r.status == 201 ? order_of(&b.r) : 0;
        /* The pair: both the order, or one of them told the first is in flight. */
        bool pair_ok = (oa || ob) && (oa == 0 || ob == 0 || oa == ob) &&
                       (a.r.status == 201 || a.r.status == 409) &&
                       (b.r.status == 201 || b.r.status == 409);
        if (!pair_ok || c.status != 201 || order_of(&c) != (oa ? oa : ob))
            l->bad++;
        th_resp_free(&a.r);
        th_resp_free(&b.r);
        th_resp_free(&c);
    }
    return NULL;
}

static void
test_load_retries(void **state)
{
    (void)state;
    const char *n = getenv("SHOPD_TEST_STRIPE_LOAD_N");
    if (n && atoi(n) > 0)
        LOAD_N = atoi(n);
    shop_t s = shop_new(true);
    fake_mode("requires_payment_method", "succeed");
    long before = fake_creates();
    load_t ls[LOAD_THREADS];
    pthread_t ts[LOAD_THREADS];
    struct timeval a, b;
    gettimeofday(&a, NULL);
    for (int i = 0; i < LOAD_THREADS; i++) {
        ls[i] = (load_t){.s = &s, .first = i, .step = LOAD_THREADS};
        pthread_create(&ts[i], NULL, load_thread, &ls[i]);
    }
    int bad = 0;
    for (int i = 0; i < LOAD_THREADS; i++) {
        pthread_join(ts[i], NULL);
        bad += ls[i].bad;
    }
    gettimeofday(&b, NULL);
    long ms = (b.tv_sec - a.tv_sec) * 1000 + (b.tv_usec - a.tv_usec) / 1000;
    long pis = fake_creates() - before;
    print_message("%d checkouts x 3 sends: %ld orders, %ld PaymentIntents, %d bad, %ld ms\n",
                  LOAD_N, atol(sqlf("SELECT count(*) FROM orders WHERE store_id = %ld", s.id)), pis,
                  bad, ms);
    assert_int_equal(bad, 0);
    assert_int_equal(atol(sqlf("SELECT count(*) FROM orders WHERE store_id = %ld", s.id)), LOAD_N);
    assert_int_equal(pis, LOAD_N);
    assert_int_equal(
        atol(sqlf("SELECT count(DISTINCT provider_ref) FROM payments WHERE store_id = %ld", s.id)),
        LOAD_N);
    th_user_free(&s.admin);
}

static void
test_webhooks(void **state)
{
    (void)state;
    shop_t s = shop_new(true);
    fake_mode("requires_payment_method", "succeed");
    th_resp_t r = checkout(&s);
    assert_int_equal(r.status, 201);
    long o = order_of(&r);
    th_resp_free(&r);
    char pi[128];
    snprintf(pi, sizeof(pi), "%s", pi_of(&s, o));
    const char *events0 = "SELECT count(*) FROM webhook_events WHERE store_id = %ld";

    /* Forged, expired, changed and missing signatures: 400, nothing written. */
    json_t *a = hook(&s, "payment_intent.succeeded", pi, "whsec_wrong0123456789", 1, false, NULL);
    assert_int_equal(hook_status(a, 0), 400);
    json_decref(a);
    a = hook(&s, "payment_intent.succeeded", pi, WHSEC, 1, false, "\"t_offset\":-301");
    assert_int_equal(hook_status(a, 0), 400);
    json_decref(a);
    a = hook(&s, "payment_intent.succeeded", pi, WHSEC, 1, false, "\"t_offset\":301");
    assert_int_equal(hook_status(a, 0), 400);
    json_decref(a);
    a = hook(&s, "payment_intent.succeeded", pi, WHSEC, 1, false, "\"sign_body\":\"{}\"");
    assert_int_equal(hook_status(a, 0), 400);
    json_decref(a);
    a = hook(&s, "payment_intent.succeeded", pi, WHSEC, 1, false, "\"header\":\"\"");
    assert_int_equal(hook_status(a, 0), 400);
    json_decref(a);
    a = hook(&s, "payment_intent.succeeded", pi, WHSEC, 1, false, "\"header\":\"t=1,v1=zz,v0=00\"");
    assert_int_equal(hook_status(a, 0), 400);
    json_decref(a);
    assert_string_equal(sqlf(events0, s.id), "0");
    assert_string_equal(order_status(&s, o), "PENDING/requires_action");

    /* Headers made by Stripe's own library (npm stripe, generateTestHeaderString):
     * another secret, an old timestamp or a changed body are refused... */
    a = hook(&s, "payment_intent.processing", pi, "whsec_other0123456789", 1, false,
             "\"signer\":\"stripe\"");
    assert_int_equal(hook_status(a, 0), 400);
    json_decref(a);
    a = hook(&s, "payment_intent.processing", pi, WHSEC, 1, false,
             "\"signer\":\"stripe\",\"t_offset\":-400");
    assert_int_equal(hook_status(a, 0), 400);
    json_decref(a);
    a = hook(&s, "payment_intent.processing", pi, WHSEC, 1, false,
             "\"signer\":\"stripe\",\"sign_body\":\"{\\\"id\\\":1}\"");
    assert_int_equal(hook_status(a, 0), 400);
    json_decref(a);
    assert_string_equal(sqlf(events0, s.id), "0");
    /* ...and a good one is accepted (processing: the order does not move). */
    a = hook(&s, "payment_intent.processing", pi, WHSEC, 1, false,
             "\"signer\":\"stripe\",\"apply\":false");
    assert_int_equal(hook_status(a, 0), 200);
    json_decref(a);
    assert_string_equal(sqlf(events0, s.id), "1");
    assert_string_equal(order_status(&s, o), "PENDING/requires_action");
    events0 = "SELECT count(*) - 1 FROM webhook_events WHERE store_id = %ld";

    /* Signed with the second (rotated) secret, delivered 3 times, two at once. */
    a = hook(&s, "payment_intent.succeeded", pi, WHSEC2, 2, true, "\"event_id\":\"evt_paid_1\"");
    assert_int_equal(hook_status(a, 0), 200);
    assert_int_equal(hook_status(a, 1), 200);
    json_decref(a);
    a = hook(&s, "payment_intent.succeeded", pi, WHSEC, 1, false, "\"event_id\":\"evt_paid_1\"");
    assert_int_equal(hook_status(a, 0), 200);
    assert_non_null(strstr(json_string_value(json_array_get(json_object_get(a, "bodies"), 0)),
                           "\"duplicate\":true"));
    json_decref(a);
    assert_string_equal(order_status(&s, o), "PAID/paid");
    assert_string_equal(sqlf("SELECT count(*) FROM order_events WHERE store_id = %ld AND "
                             "order_id = %ld AND to_status = 'PAID'",
                             s.id, o),
                        "1");
    assert_string_equal(sqlf("SELECT count(*) FROM outbox WHERE store_id = %ld AND kind = "
                             "'order.placed'",
                             s.id),
                        "1");
    assert_string_equal(sqlf(events0, s.id), "1");

    /* Late, out-of-order events never move it back. */
    a = hook(&s, "payment_intent.payment_failed", pi, WHSEC, 1, false, "\"apply\":false");
    assert_int_equal(hook_status(a, 0), 200);
    json_decref(a);
    a = hook(&s, "payment_intent.processing", pi, WHSEC, 1, false, "\"apply\":false");
    assert_int_equal(hook_status(a, 0), 200);
    json_decref(a);
    assert_string_equal(order_status(&s, o), "PAID/paid");
    assert_string_equal(
        sqlf("SELECT status FROM payments WHERE store_id = %ld AND order_id = %ld", s.id, o),
        "succeeded");

    /* Unknown types are acknowledged; a dispute flags the order. */
    a = hook(&s, "customer.created", pi, WHSEC, 1, false, NULL);
    assert_int_equal(hook_status(a, 0), 200);
    json_decref(a);
    a = hook(&s, "charge.dispute.created", pi, WHSEC, 1, false, NULL);
    assert_int_equal(hook_status(a, 0), 200);
    json_decref(a);
    assert_string_equal(
        sqlf("SELECT disputed FROM orders WHERE store_id = %ld AND id = %ld", s.id, o), "t");

    /* A failure for a fresh order: failed with its decline code. */
    r = checkout(&s);
    long o2 = order_of(&r);
    th_resp_free(&r);
    char pi2[128];
    snprintf(pi2, sizeof(pi2), "%s", pi_of(&s, o2));
    a = hook(&s, "payment_intent.payment_failed", pi2, WHSEC, 1, false,
             "\"decline_code\":\"expired_card\"");
    assert_int_equal(hook_status(a, 0), 200);
    json_decref(a);
    assert_string_equal(order_status(&s, o2), "PENDING/failed");
    assert_string_equal(sqlf("SELECT decline_code FROM payments WHERE store_id = %ld AND "
                             "order_id = %ld",
                             s.id, o2),
                        "expired_card");
    /* ...then the customer succeeds with another card. */
    a = hook(&s, "payment_intent.succeeded", pi2, WHSEC, 1, false, NULL);
    json_decref(a);
    assert_string_equal(order_status(&s, o2), "PAID/paid");

    /* Another store's event, signed with this store's secret: acknowledged, ignored. */
    char extra[256];
    snprintf(extra, sizeof(extra), "\"metadata\":{\"store_id\":\"%ld\",\"order_id\":\"%ld\"}",
             s.id + 100000, o2);
    a = hook(&s, "payment_intent.canceled", "pi_elsewhere", WHSEC, 1, false, extra);
    assert_int_equal(hook_status(a, 0), 200);
    assert_non_null(strstr(json_string_value(json_array_get(json_object_get(a, "bodies"), 0)),
                           "\"ignored\":true"));
    json_decref(a);
    assert_string_equal(order_status(&s, o2), "PAID/paid");
    /* An unknown store in the path: 404, as any store-scoped route. */
    th_resp_t x =
        th_req(srv, "POST", "/api/v1/payments/stripe/webhook/no-such-store-x", NULL, "{}");
    assert_int_equal(x.status, 404);
    th_resp_free(&x);
    th_user_free(&s.admin);
}

/* payment_intent.succeeded before the order is visible: kept, then applied
 * when the checkout records its payment. */
static void
test_event_before_order(void **state)
{
    (void)state;
    shop_t s = shop_new(true);
    fake_mode("requires_payment_method", "succeed");
    /* The id the next order gets (tests of this program run one at a time). */
    long next = atol(th_sql("SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END "
                            "FROM orders_id_seq",
                            NULL));
    char extra[256];
    snprintf(extra, sizeof(extra),
             "\"event_id\":\"evt_early_%ld\",\"metadata\":{\"store_id\":\"%ld\",\"order_id\":"
             "\"%ld\"}",
             next, s.id, next);
    char pi[64];
    snprintf(pi, sizeof(pi), "pi_early_%ld", next);
    json_decref(fake("POST", "/_control", "{\"next_pi_id\":\"%s\"}", pi));
    json_t *a = hook(&s, "payment_intent.succeeded", pi, WHSEC, 1, false, extra);
    assert_int_equal(hook_status(a, 0), 200);
    json_decref(a);
    assert_string_equal(sqlf("SELECT applied FROM webhook_events WHERE store_id = %ld", s.id), "f");
    th_resp_t r = checkout(&s);
    assert_int_equal(r.status, 201);
    long o = order_of(&r);
    th_resp_free(&r);
    if (o != next) { /* another program took the id meanwhile: nothing to check */
        th_user_free(&s.admin);
        return;
    }
    assert_string_equal(order_status(&s, o), "PAID/paid");
    assert_string_equal(sqlf("SELECT applied FROM webhook_events WHERE store_id = %ld", s.id), "t");
    assert_string_equal(sqlf("SELECT count(*) FROM order_events WHERE store_id = %ld AND "
                             "order_id = %ld AND to_status = 'PAID'",
                             s.id, o),
                        "1");
    th_user_free(&s.admin);
}

static void
test_refunds_and_cancel(void **state)
{
    (void)state;
    shop_t s = shop_new(true);
    fake_mode("succeed", "succeed");
    th_resp_t r = checkout(&s);
    assert_int_equal(r.status, 201);
    long o = order_of(&r);
    long total = jint(r.json, "total");
    th_resp_free(&r);
    char pi[128], path[200];
    snprintf(pi, sizeof(pi), "%s", pi_of(&s, o));
    snprintf(path, sizeof(path), "/api/v1/orders/%ld/refunds", o);
    r = rq(s.id, s.admin.access, "rf-1", "POST", path, "{\"amount\":100,\"reason\":\"scratch\"}");
    assert_int_equal(r.status, 201);
    assert_string_equal(jstr(r.json, "status"), "succeeded");
    th_resp_free(&r);
    /* Replayed: the same answer, no second refund at Stripe. */
    r = rq(s.id, s.admin.access, "rf-1", "POST", path, "{\"amount\":100,\"reason\":\"scratch\"}");
    assert_int_equal(r.status, 201);
    th_resp_free(&r);
    json_t *st = fake("GET", "/_stats", NULL);
    assert_int_equal(json_integer_value(json_object_get(st, "refunds")), 1);
    json_decref(st);
    assert_string_equal(order_status(&s, o), "PAID/partially_refunded");
    /* Stripe's charge.refunded for it: nothing counted twice. */
    json_t *a = hook(&s, "charge.refunded", pi, WHSEC, 1, false, "\"amount_refunded\":100");
    assert_int_equal(hook_status(a, 0), 200);
    json_decref(a);
    assert_string_equal(
        sqlf("SELECT refunded_total FROM orders WHERE store_id = %ld AND id = %ld", s.id, o),
        "100");
    /* Stripe down during a refund: pending; its charge.refunded settles it. */
    fake_mode("succeed", "500");
    r = rq(s.id, s.admin.access, NULL, "POST", path, "{\"amount\":200}");
    assert_int_equal(r.status, 201);
    assert_string_equal(jstr(r.json, "status"), "pending");
    th_resp_free(&r);
    a = hook(&s, "charge.refunded", pi, WHSEC, 1, false, "\"amount_refunded\":300");
    assert_int_equal(hook_status(a, 0), 200);
    json_decref(a);
    assert_string_equal(sqlf("SELECT refunded_total || '/' || count(r.*) FROM orders o JOIN "
                             "refunds r ON r.store_id = o.store_id AND r.order_id = o.id AND "
                             "r.status = 'succeeded' WHERE o.store_id = %ld AND o.id = %ld "
                             "GROUP BY o.refunded_total",
                             s.id, o),
                        "300/2");
    /* A refund made in Stripe's dashboard: recorded as its own refund. */
    char extra[64];
    snprintf(extra, sizeof(extra), "\"amount_refunded\":%ld", total);
    a = hook(&s, "charge.refunded", pi, WHSEC, 1, false, extra);
    json_decref(a);
    assert_string_equal(order_status(&s, o), "PAID/refunded");

    /* Cancelling an unpaid order voids its PaymentIntent at Stripe. */
    fake_mode("requires_payment_method", "succeed");
    r = checkout(&s);
    long o2 = order_of(&r);
    th_resp_free(&r);
    snprintf(pi, sizeof(pi), "%s", pi_of(&s, o2));
    snprintf(path, sizeof(path), "/api/v1/orders/%ld/cancel", o2);
    r = rq(s.id, s.admin.access, NULL, "POST", path, NULL);
    assert_int_equal(r.status, 200);
    assert_string_equal(jstr(r.json, "status"), "CANCELLED");
    th_resp_free(&r);
    snprintf(path, sizeof(path), "/v1/payment_intents/%s", pi);
    json_t *p = fake("GET", path, NULL);
    assert_string_equal(jstr(p, "status"), "canceled");
    json_decref(p);
    /* A success arriving for the cancelled order: not PAID, a refund is due. */
    a = hook(&s, "payment_intent.succeeded", pi, WHSEC, 1, false, "\"apply\":false");
    assert_int_equal(hook_status(a, 0), 200);
    json_decref(a);
    assert_int_equal(strncmp(order_status(&s, o2), "CANCELLED/", 10), 0);
    assert_string_equal(sqlf("SELECT count(*) FROM outbox WHERE store_id = %ld AND kind = "
                             "'payment.refund_due'",
                             s.id),
                        "1");

    /* An admin cancelling a paid order: refunded at Stripe (on the blocking pool). */
    fake_mode("succeed", "succeed");
    r = checkout(&s);
    assert_int_equal(r.status, 201);
    long o3 = order_of(&r);
    th_resp_free(&r);
    st = fake("GET", "/_stats", NULL);
    long refunds_before = (long)json_integer_value(json_object_get(st, "refunds"));
    json_decref(st);
    snprintf(path, sizeof(path), "/api/v1/orders/%ld/transitions", o3);
    r = rq(s.id, s.admin.access, NULL, "POST", path, "{\"to\":\"CANCELLED\"}");
    assert_int_equal(r.status, 200);
    assert_string_equal(jstr(r.json, "status"), "CANCELLED");
    assert_string_equal(jstr(r.json, "payment_status"), "refunded");
    th_resp_free(&r);
    st = fake("GET", "/_stats", NULL);
    assert_int_equal(json_integer_value(json_object_get(st, "refunds")), refunds_before + 1);
    json_decref(st);
    fake_mode("requires_payment_method", "succeed");
    th_user_free(&s.admin);
}

static const char *const server_env[] = {
    "SHOPD_STRIPE_ANY_BASE=true", "SHOPD_STRIPE_TIMEOUT_MS=2000", "SHOPD_STRIPE_RECONCILE_S=3",
    "SHOPD_SWEEP_INTERVAL_MS=200", NULL};

/* ---- kill -9 during checkout load ---- */

#define KILL_THREADS 8
#define KILL_PER_THREAD 40

typedef struct kill_load_s {
    shop_t *s;
    int t;
    char carts[KILL_PER_THREAD][128], keys[KILL_PER_THREAD][64];
    long status[KILL_PER_THREAD], order[KILL_PER_THREAD];
    int sent;
} kill_load_t;

static _Atomic bool killed;

static void *
kill_load(void *arg)
{
    kill_load_t *l = arg;
    char body[160], tenant[64];
    snprintf(body, sizeof(body), "{\"variant_id\":%ld,\"quantity\":1}", l->s->variant);
    snprintf(tenant, sizeof(tenant), "X-Tenant-Id: %ld", l->s->id);
    const char *h[] = {tenant, NULL};
    for (int i = 0; i < KILL_PER_THREAD && !killed; i++) {
        /* No assertion here: the server may die under this request. */
        th_resp_t c = th_req(srv, "POST", "/api/v1/cart/add", h, body);
        bool ok = c.status == 200 && th_header(&c, "X-Cart-Id");
        if (ok)
            snprintf(l->carts[i], sizeof(l->carts[i]), "%s", th_header(&c, "X-Cart-Id"));
        th_resp_free(&c);
        if (!ok)
            break;
        snprintf(l->keys[i], sizeof(l->keys[i]), "kill-%d-%ld-%d-%d", getpid(), l->s->id, l->t, i);
        l->sent = i + 1;
        th_resp_t r = checkout_cart(l->s, l->carts[i], l->keys[i], NULL);
        l->status[i] = r.status;
        l->order[i] = r.status == 201 ? order_of(&r) : 0;
        th_resp_free(&r);
    }
    return NULL;
}

typedef struct settled_s {
    shop_t *s;
} settled_t;

static bool
all_settled(void *arg)
{
    settled_t *x = arg;
    return atol(sqlf("SELECT count(*) FROM payments WHERE store_id = %ld AND provider_ref IS NULL",
                     x->s->id)) == 0;
}

/* kill -9 while checkouts wait on a slow Stripe, restart, every client retries
 * with its key: each order has exactly its one PaymentIntent (the fake counts
 * none twice per order), those the crash cut off are settled by the
 * reconciliation with the key written before the call, every key answers its
 * one order, and nothing is half-written (items, payment, stock). */
static void
test_kill_during_checkout(void **state)
{
    (void)state;
    shop_t s = shop_new(true);
    fake_mode("requires_payment_method", "succeed");
    json_decref(fake("POST", "/_control", "{\"delay_ms\":200}"));
    long pis0 = fake_creates(), dup0 = fake_stat("dup_orders");
    static kill_load_t ls[KILL_THREADS];
    pthread_t ts[KILL_THREADS];
    killed = false;
    for (int i = 0; i < KILL_THREADS; i++) {
        memset(&ls[i], 0, sizeof(ls[i]));
        ls[i].s = &s;
        ls[i].t = i;
        pthread_create(&ts[i], NULL, kill_load, &ls[i]);
    }
    usleep(4000 * 1000);
    killed = true;
    kill(srv->pid, SIGKILL);
    for (int i = 0; i < KILL_THREADS; i++)
        pthread_join(ts[i], NULL);
    assert_int_equal(th_stop(srv), 128 + SIGKILL);
    json_decref(fake("POST", "/_control", "{\"delay_ms\":0}"));
    srv = th_start(server_env);
    long orphans = atol(sqlf("SELECT count(*) FROM payments WHERE store_id = %ld AND "
                             "provider_ref IS NULL",
                             s.id));

    /* Every client retries what got no answer, with its key, until answered
     * (409 idempotency_in_flight while the dead process's hold lasts). */
    int sent = 0, cut = 0;
    for (int t = 0; t < KILL_THREADS; t++) {
        kill_load_t *l = &ls[t];
        for (int i = 0; i < l->sent; i++, sent++) {
            if (l->status[i] == 201)
                continue;
            cut++;
            th_resp_t r = {0};
            for (int tries = 0; tries < 100; tries++) {
                r = checkout_cart(&s, l->carts[i], l->keys[i], NULL);
                if (r.status != 409 && r.status != 503 && r.status != 0)
                    break;
                th_resp_free(&r);
                usleep(200 * 1000);
            }
            assert_int_equal(r.status, 201);
            l->order[i] = order_of(&r);
            th_resp_free(&r);
        }
    }
    long orders = atol(sqlf("SELECT count(*) FROM orders WHERE store_id = %ld", s.id));
    print_message("kill -9 under load: %d checkouts sent, %d cut off and retried, %ld "
                  "committed without a PaymentIntent id at the restart, %ld orders\n",
                  sent, cut, orphans, orders);
    assert_true(cut > 0); /* the kill did land mid-load */
    /* Each key is one order, and every order is some key's. */
    assert_int_equal(orders, sent);
    for (int t = 0; t < KILL_THREADS; t++)
        for (int i = 0; i < ls[t].sent; i++)
            for (int u = t; u < KILL_THREADS; u++)
                for (int j = u == t ? i + 1 : 0; j < ls[u].sent; j++)
                    assert_true(ls[t].order[i] != ls[u].order[j]);
    /* The payments the crash cut off (no PaymentIntent id yet) are settled. */
    settled_t x = {&s};
    assert_true(th_wait_until(all_settled, &x, 30000));
    assert_int_equal(fake_creates() - pis0, orders);
    assert_int_equal(fake_stat("dup_orders"), dup0);
    assert_int_equal(atol(sqlf("SELECT count(DISTINCT provider_ref) FROM payments WHERE store_id "
                               "= %ld",
                               s.id)),
                     orders);
    /* Nothing half-written: one payment and one item per order, the stock
     * taken exactly once per order, every order in a state it can be in. */
    assert_string_equal(sqlf("SELECT count(*) FROM orders o WHERE o.store_id = %ld AND ((SELECT "
                             "count(*) FROM payments p WHERE p.store_id = o.store_id AND "
                             "p.order_id = o.id) <> 1 OR (SELECT coalesce(sum(quantity), 0) FROM "
                             "order_items i WHERE i.store_id = o.store_id AND i.order_id = o.id) "
                             "<> 1 OR o.item_count <> 1 OR o.status NOT IN ('PENDING', 'PAID'))",
                             s.id),
                        "0");
    assert_int_equal(atol(sqlf("SELECT stock FROM product_variants WHERE store_id = %ld AND id = "
                               "%ld",
                               s.id, s.variant)),
                     100000 - orders);
    th_user_free(&s.admin);
}

static int
setup(void **state)
{
    (void)state;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    fake_start();
    srv = th_start(server_env);
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    fake_stop();
    return 0;
}

static const char *
fake_pi_status(const char *pi)
{
    static char out[64];
    char path[200];
    snprintf(path, sizeof(path), "/v1/payment_intents/%s", pi);
    json_t *j = fake("GET", path, NULL);
    snprintf(out, sizeof(out), "%s", jstr(j, "status"));
    json_decref(j);
    return out;
}

/* A manual-capture store: checkout authorizes (PaymentIntent with
 * capture_method=manual), the order waits PENDING/authorized; the admin
 * captures all or part (its own Idempotency-Key, once at Stripe), the order is
 * PAID once; a cancel releases the hold; events never move it back. */
static void
test_manual_capture(void **state)
{
    (void)state;
    shop_t s = shop_new(true);
    fake_mode("succeed", "succeed");
    th_resp_t r = rq(s.id, s.admin.access, NULL, "PATCH", "/api/v1/admin/payments/stripe",
                     "{\"capture_method\":\"sometimes\"}");
    assert_int_equal(r.status, 422);
    assert_non_null(strstr(r.body, "capture_method"));
    th_resp_free(&r);
    r = rq(s.id, s.admin.access, NULL, "GET", "/api/v1/admin/payments/stripe", NULL);
    assert_string_equal(jstr(r.json, "capture_method"), "automatic");
    th_resp_free(&r);
    r = rq(s.id, s.admin.access, NULL, "PATCH", "/api/v1/admin/payments/stripe",
           "{\"capture_method\":\"manual\"}");
    assert_int_equal(r.status, 200);
    assert_string_equal(jstr(r.json, "capture_method"), "manual");
    assert_string_equal(jstr(r.json, "secret_key_last4"), "abcd"); /* the rest kept */
    th_resp_free(&r);

    long manual0 = fake_stat("manual"), captures0 = fake_stat("captures");
    r = checkout(&s);
    assert_int_equal(r.status, 201);
    assert_string_equal(jstr(json_object_get(r.json, "payment"), "status"), "requires_capture");
    long o = order_of(&r);
    th_resp_free(&r);
    assert_int_equal(fake_stat("manual"), manual0 + 1);
    assert_string_equal(order_status(&s, o), "PENDING/authorized");
    char pi[128];
    snprintf(pi, sizeof(pi), "%s", pi_of(&s, o));
    assert_string_equal(fake_pi_status(pi), "requires_capture");
    long total = atol(sqlf("SELECT total FROM orders WHERE store_id = %ld AND id = %ld", s.id, o));

    /* Customers may not capture; bad amounts are refused; nothing moves. */
    char path[96], body[96];
    snprintf(path, sizeof(path), "/api/v1/orders/%ld/capture", o);
    th_user_t cu = th_user_new(srv, "CUSTOMER", s.id);
    r = rq(s.id, cu.access, NULL, "POST", path, "{}");
    assert_int_equal(r.status, 403);
    th_resp_free(&r);
    snprintf(body, sizeof(body), "{\"amount\":%ld}", total + 1);
    r = rq(s.id, s.admin.access, NULL, "POST", path, body);
    assert_int_equal(r.status, 422);
    assert_non_null(strstr(r.body, "amount"));
    th_resp_free(&r);
    r = rq(s.id, s.admin.access, NULL, "POST", path, "{\"amount\":0,\"extra\":1}");
    assert_int_equal(r.status, 422);
    th_resp_free(&r);
    /* A late processing or requires_action event: never back from authorized. */
    json_decref(hook(&s, "payment_intent.processing", pi, WHSEC, 1, false, "\"apply\":false"));
    json_decref(hook(&s, "payment_intent.requires_action", pi, WHSEC, 1, false, "\"apply\":false"));
    assert_string_equal(order_status(&s, o), "PENDING/authorized");
    assert_string_equal(
        sqlf("SELECT status FROM payments WHERE store_id = %ld AND order_id = %ld", s.id, o),
        "requires_capture");
    assert_int_equal(fake_stat("captures"), captures0);

    /* A partial capture: PAID once, what was captured and its key kept. */
    snprintf(body, sizeof(body), "{\"amount\":%ld}", total - 200);
    r = rq(s.id, s.admin.access, NULL, "POST", path, body);
    assert_int_equal(r.status, 200);
    assert_string_equal(jstr(r.json, "status"), "PAID");
    assert_string_equal(jstr(r.json, "payment_status"), "paid");
    th_resp_free(&r);
    assert_int_equal(fake_stat("captures"), captures0 + 1);
    assert_string_equal(fake_pi_status(pi), "succeeded");
    char want[160];
    snprintf(want, sizeof(want), "%ld|shopd-%ld-%ld-capture-", total - 200, s.id, o);
    assert_non_null(strstr(sqlf("SELECT captured_amount || '|' || capture_key FROM payments "
                                "WHERE store_id = %ld AND order_id = %ld",
                                s.id, o),
                           want));
    /* Again: refused, nothing asked of Stripe; Stripe's own success event (twice)
     * adds no second PAID. */
    r = rq(s.id, s.admin.access, NULL, "POST", path, "{}");
    assert_int_equal(r.status, 409);
    assert_string_equal(th_error_code(&r), "not_capturable");
    th_resp_free(&r);
    assert_int_equal(fake_stat("captures"), captures0 + 1);
    json_decref(hook(&s, "payment_intent.succeeded", pi, WHSEC, 2, true, NULL));
    assert_string_equal(order_status(&s, o), "PAID/paid");
    assert_string_equal(sqlf("SELECT count(*) FROM order_events WHERE store_id = %ld AND "
                             "order_id = %ld AND to_status = 'PAID'",
                             s.id, o),
                        "1");

    /* Refunds are bounded by what was captured, not by the total; all of it
     * given back is "refunded". */
    snprintf(path, sizeof(path), "/api/v1/orders/%ld/refunds", o);
    snprintf(body, sizeof(body), "{\"amount\":%ld}", total - 199);
    r = rq(s.id, s.admin.access, NULL, "POST", path, body);
    assert_int_equal(r.status, 409);
    assert_string_equal(th_error_code(&r), "refund_exceeds_payment");
    th_resp_free(&r);
    snprintf(body, sizeof(body), "{\"amount\":%ld}", total - 200);
    r = rq(s.id, s.admin.access, NULL, "POST", path, body);
    assert_int_equal(r.status, 201);
    assert_string_equal(jstr(r.json, "status"), "succeeded");
    th_resp_free(&r);
    assert_string_equal(order_status(&s, o), "PAID/refunded");

    /* A second authorized order, cancelled: the hold is released at Stripe. */
    long cancels0 = fake_stat("cancels");
    r = checkout(&s);
    assert_int_equal(r.status, 201);
    long o2 = order_of(&r);
    th_resp_free(&r);
    char pi2[128];
    snprintf(pi2, sizeof(pi2), "%s", pi_of(&s, o2));
    /* amount_capturable_updated (Stripe's event for the authorization) keeps it authorized. */
    json_decref(hook(&s, "payment_intent.amount_capturable_updated", pi2, WHSEC, 1, false, NULL));
    assert_string_equal(order_status(&s, o2), "PENDING/authorized");
    snprintf(path, sizeof(path), "/api/v1/orders/%ld/cancel", o2);
    r = rq(s.id, s.admin.access, NULL, "POST", path, NULL);
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
    assert_string_equal(order_status(&s, o2), "CANCELLED/voided");
    assert_int_equal(fake_stat("cancels"), cancels0 + 1);
    assert_string_equal(fake_pi_status(pi2), "canceled");
    snprintf(path, sizeof(path), "/api/v1/orders/%ld/capture", o2);
    r = rq(s.id, s.admin.access, NULL, "POST", path, "{}");
    assert_int_equal(r.status, 409);
    th_resp_free(&r);
    /* A success arriving for the cancelled order does not revive it. */
    json_decref(hook(&s, "payment_intent.succeeded", pi2, WHSEC, 1, false, "\"apply\":false"));
    assert_string_equal(order_status(&s, o2), "CANCELLED/voided");

    /* A third, captured whole with no amount; Stripe down at the capture first:
     * 503, nothing moved, and the retry (same key) captures once. */
    r = checkout(&s);
    long o3 = order_of(&r);
    th_resp_free(&r);
    json_decref(fake("POST", "/_control", "{\"capture\":\"500\"}"));
    snprintf(path, sizeof(path), "/api/v1/orders/%ld/capture", o3);
    r = rq(s.id, s.admin.access, NULL, "POST", path, "{}");
    assert_int_equal(r.status, 503);
    th_resp_free(&r);
    assert_string_equal(order_status(&s, o3), "PENDING/authorized");
    json_decref(fake("POST", "/_control", "{\"capture\":\"succeed\"}"));
    long captures1 = fake_stat("captures");
    r = rq(s.id, s.admin.access, NULL, "POST", path, "{}");
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
    assert_int_equal(fake_stat("captures"), captures1 + 1);
    assert_string_equal(order_status(&s, o3), "PAID/paid");
    long total3 =
        atol(sqlf("SELECT total FROM orders WHERE store_id = %ld AND id = %ld", s.id, o3));
    assert_int_equal(atol(sqlf("SELECT captured_amount FROM payments WHERE store_id = %ld AND "
                               "order_id = %ld",
                               s.id, o3)),
                     total3);

    /* Back to automatic: the next checkout is paid at once. */
    r = rq(s.id, s.admin.access, NULL, "PATCH", "/api/v1/admin/payments/stripe",
           "{\"capture_method\":\"automatic\"}");
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
    r = checkout(&s);
    assert_int_equal(r.status, 201);
    assert_string_equal(order_status(&s, order_of(&r)), "PAID/paid");
    th_resp_free(&r);
    fake_mode("requires_payment_method", "succeed");
    th_user_free(&cu);
    th_user_free(&s.admin);
}

/* ---- every (order state, payment event) pair ---- */

enum {
    S_PENDING,
    S_ACTION,
    S_FAILED,
    S_AUTHORIZED,
    S_PAID,
    S_PROCESSING,
    S_SHIPPED,
    S_DELIVERED,
    S_CANCELLED,
    S_CANCELLED_REFUNDED,
    S_N
};
static const char *const state_names[S_N] = {
    "PENDING/pending",  "PENDING/requires_action", "PENDING/failed", "PENDING/authorized",
    "PAID/paid",        "PROCESSING/paid",         "SHIPPED/paid",   "DELIVERED/paid",
    "CANCELLED/voided", "CANCELLED/refunded"};

enum {
    E_SUCCEEDED,
    E_FAILED,
    E_CANCELED,
    E_ACTION,
    E_PROCESSING,
    E_CAPTURABLE,
    E_REFUNDED_FULL,
    E_REFUNDED_PART,
    E_DISPUTE,
    E_UNKNOWN,
    E_N
};
static const char *const event_types[E_N] = {
    "payment_intent.succeeded",  "payment_intent.payment_failed",
    "payment_intent.canceled",   "payment_intent.requires_action",
    "payment_intent.processing", "payment_intent.amount_capturable_updated",
    "charge.refunded",           "charge.refunded",
    "charge.dispute.created",    "customer.created"};

/* What one event does to an order in one state: its state after ("=": the
 * same), and the rows it adds: order events (each with its outbox row, by the
 * trigger of 0014), refunds, payment.refund_due outbox rows. */
typedef struct cell_s {
    const char *after;
    int events, refunds, refund_due;
} cell_t;

#define SAME                                                                                       \
    {                                                                                              \
        "=", 0, 0, 0                                                                               \
    }
#define PAID_NOW                                                                                   \
    {                                                                                              \
        "PAID/paid", 1, 0, 0                                                                       \
    }
#define PAID_ROW(st)                                                                               \
    {                                                                                              \
        SAME, SAME, SAME, SAME, SAME, SAME, {st "/refunded", 0, 1, 0},                             \
            {st "/partially_refunded", 0, 1, 0}, SAME, SAME                                        \
    }

/* clang-format off */
static const cell_t table[S_N][E_N] = {
    /*                       succeeded  payment_failed           canceled                  requires_action                processing capturable                 refunded full/part  dispute unknown */
    [S_PENDING]          = {PAID_NOW, {"PENDING/failed",0,0,0}, {"PENDING/voided",0,0,0}, {"PENDING/requires_action",0,0,0}, SAME, {"PENDING/authorized",0,0,0}, SAME, SAME, SAME, SAME},
    [S_ACTION]           = {PAID_NOW, {"PENDING/failed",0,0,0}, {"PENDING/voided",0,0,0}, SAME,                            SAME, {"PENDING/authorized",0,0,0}, SAME, SAME, SAME, SAME},
    [S_FAILED]           = {PAID_NOW, SAME,                     {"PENDING/voided",0,0,0}, {"PENDING/requires_action",0,0,0}, SAME, {"PENDING/authorized",0,0,0}, SAME, SAME, SAME, SAME},
    [S_AUTHORIZED]       = {PAID_NOW, SAME,                     {"PENDING/voided",0,0,0}, SAME,                            SAME, SAME,                         SAME, SAME, SAME, SAME},
    [S_PAID]             = PAID_ROW("PAID"),
    [S_PROCESSING]       = PAID_ROW("PROCESSING"),
    [S_SHIPPED]          = PAID_ROW("SHIPPED"),
    [S_DELIVERED]        = PAID_ROW("DELIVERED"),
    [S_CANCELLED]        = {{"=",0,0,1}, SAME, SAME, SAME, SAME, SAME, SAME, SAME, SAME, SAME},
    [S_CANCELLED_REFUNDED] = {SAME, SAME, SAME, SAME, SAME, SAME, SAME, SAME, SAME, SAME},
};
/* clang-format on */

static void
transition(shop_t *s, long o, const char *to)
{
    char path[96], body[128];
    snprintf(path, sizeof(path), "/api/v1/orders/%ld/transitions", o);
    snprintf(body, sizeof(body), "{\"to\":\"%s\"%s}", to,
             strcmp(to, "SHIPPED") == 0 ? ",\"tracking_number\":\"TRK1\"" : "");
    th_resp_t r = rq(s->id, s->admin.access, NULL, "POST", path, body);
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
}

/* A new order of s (automatic) or m (manual capture) in state st. */
static long
order_in(shop_t *s, shop_t *m, int st, shop_t **which)
{
    static const char *const create[S_N] = {
        [S_PENDING] = "processing",   [S_ACTION] = "requires_payment_method",
        [S_FAILED] = "decline",       [S_AUTHORIZED] = "succeed",
        [S_PAID] = "succeed",         [S_PROCESSING] = "succeed",
        [S_SHIPPED] = "succeed",      [S_DELIVERED] = "succeed",
        [S_CANCELLED] = "processing", [S_CANCELLED_REFUNDED] = "succeed"};
    *which = st == S_AUTHORIZED ? m : s;
    fake_mode(create[st], "succeed");
    th_resp_t r = checkout(*which);
    assert_int_equal(r.status, st == S_FAILED ? 402 : 201);
    long o = order_of(&r);
    th_resp_free(&r);
    if (st >= S_PROCESSING && st <= S_DELIVERED)
        transition(s, o, "PROCESSING");
    if (st >= S_SHIPPED && st <= S_DELIVERED)
        transition(s, o, "SHIPPED");
    if (st == S_DELIVERED)
        transition(s, o, "DELIVERED");
    if (st == S_CANCELLED_REFUNDED)
        transition(s, o, "CANCELLED"); /* paid: refunded at Stripe */
    if (st == S_CANCELLED) {
        char path[96];
        snprintf(path, sizeof(path), "/api/v1/orders/%ld/cancel", o);
        th_resp_t c = rq(s->id, s->admin.access, NULL, "POST", path, NULL);
        assert_int_equal(c.status, 200);
        th_resp_free(&c);
    }
    assert_string_equal(order_status(*which, o), state_names[st]);
    return o;
}

static int
rank(const char *status)
{
    static const char *const order[] = {"PENDING", "PAID",      "PROCESSING",
                                        "SHIPPED", "DELIVERED", "CANCELLED"};
    for (int i = 0; i < 6; i++)
        if (strncmp(status, order[i], strlen(order[i])) == 0 && status[strlen(order[i])] == '/')
            return i;
    return -1;
}

static void
test_state_event_table(void **state)
{
    (void)state;
    shop_t s = shop_new(true), m = shop_new(true);
    th_resp_t r = rq(m.id, m.admin.access, NULL, "PATCH", "/api/v1/admin/payments/stripe",
                     "{\"capture_method\":\"manual\"}");
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
    const char *counts = "SELECT (SELECT count(*) FROM order_events WHERE store_id = %ld AND "
                         "order_id = %ld) || '|' || (SELECT count(*) FROM refunds WHERE store_id = "
                         "%ld AND order_id = %ld) || '|' || (SELECT count(*) FROM outbox WHERE "
                         "store_id = %ld AND kind = 'payment.refund_due' AND payload ->> "
                         "'order_id' = '%ld') || '|' || (SELECT count(*) FROM outbox WHERE "
                         "store_id = %ld AND kind LIKE 'order.%%' AND payload ->> 'order_id' = "
                         "'%ld')";
    for (int st = 0; st < S_N; st++) {
        for (int ev = 0; ev < E_N; ev++) {
            shop_t *w;
            long o = order_in(&s, &m, st, &w);
            char pi[128], before[64], extra[160];
            snprintf(pi, sizeof(pi), "%s", pi_of(w, o));
            snprintf(before, sizeof(before), "%s", order_status(w, o));
            int e0, f0, d0, x0, e1, f1, d1, x1;
            assert_int_equal(sscanf(sqlf(counts, w->id, o, w->id, o, w->id, o, w->id, o),
                                    "%d|%d|%d|%d", &e0, &f0, &d0, &x0),
                             4);
            long total =
                atol(sqlf("SELECT total FROM orders WHERE store_id = %ld AND id = %ld", w->id, o));
            snprintf(extra, sizeof(extra), "\"apply\":false,\"event_id\":\"evt_t%d_%d_%ld\"%s%ld",
                     st, ev, o,
                     ev == E_REFUNDED_FULL || ev == E_REFUNDED_PART ? ",\"amount_refunded\":" : "",
                     ev == E_REFUNDED_FULL   ? total
                     : ev == E_REFUNDED_PART ? 100L
                                             : 0L);
            if (ev != E_REFUNDED_FULL && ev != E_REFUNDED_PART)
                extra[strlen(extra) - 1] = '\0'; /* the stray 0 */
            json_t *a = hook(w, event_types[ev], pi, WHSEC, 1, false, extra);
            const cell_t *want = &table[st][ev];
            print_message("%-24s x %-42s -> %s\n", state_names[st], event_types[ev],
                          strcmp(want->after, "=") ? want->after : before);
            assert_int_equal(hook_status(a, 0), 200);
            json_decref(a);
            const char *after = order_status(w, o);
            assert_string_equal(after, strcmp(want->after, "=") ? want->after : before);
            /* Never backwards; never out of CANCELLED. */
            assert_true(rank(after) >= rank(before));
            assert_int_equal(sscanf(sqlf(counts, w->id, o, w->id, o, w->id, o, w->id, o),
                                    "%d|%d|%d|%d", &e1, &f1, &d1, &x1),
                             4);
            assert_int_equal(e1 - e0, want->events);
            assert_int_equal(x1 - x0, want->events); /* each event its outbox row */
            assert_int_equal(f1 - f0, want->refunds);
            assert_int_equal(d1 - d0, want->refund_due);
            /* The event is kept once, applied (its order exists); a dispute flags the order. */
            assert_string_equal(sqlf("SELECT count(*) || '/' || bool_and(applied) FROM "
                                     "webhook_events WHERE store_id = %ld AND event_id = "
                                     "'evt_t%d_%d_%ld'",
                                     w->id, st, ev, o),
                                "1/true");
            assert_string_equal(
                sqlf("SELECT disputed FROM orders WHERE store_id = %ld AND id = %ld", w->id, o),
                ev == E_DISPUTE ? "t" : "f");
        }
    }
    fake_mode("requires_payment_method", "succeed");
    th_user_free(&s.admin);
    th_user_free(&m.admin);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_account_settings),
        cmocka_unit_test(test_checkout_outcomes),
        cmocka_unit_test(test_faults),
        cmocka_unit_test(test_reconcile),
        cmocka_unit_test(test_idempotent_checkout),
        cmocka_unit_test(test_retry_in_flight),
        cmocka_unit_test(test_load_retries),
        cmocka_unit_test(test_webhooks),
        cmocka_unit_test(test_event_before_order),
        cmocka_unit_test(test_refunds_and_cancel),
        cmocka_unit_test(test_manual_capture),
        cmocka_unit_test(test_state_event_table),
        cmocka_unit_test(test_kill_during_checkout),
        TH_STOP_TEST,
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
