/*
 * Idempotency-Key on mutating routes, against the real binary (Redis path,
 * src/modules/idem.c and the dispatcher): a retry replays the first answer
 * byte for byte with Idempotent-Replayed: true on a platform route
 * (stores.create), a plain handler (products.create), a PATCH, a DELETE, a
 * batch handler (inventory.adjust) and an answer that comes later (a staff
 * password change: blocking pool, then the store's actor); the effect happens
 * once (rows counted); another body or another user under the same key is
 * 422 idempotency_mismatch and changes nothing; a validation failure is not
 * kept; concurrent retries of a slow route (register, argon2) give one effect;
 * malformed keys are 400; a key means nothing in another store; Redis down is
 * 503 and nothing runs.
 */
#include <curl/curl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "harness.h"

static th_server_t *srv;
static long store_a, store_b;
static char *admin_a, *admin_a2, *admin_b;

/* One request with an Idempotency-Key (key NULL: none). store 0: a platform
 * call with the platform token (token is then ignored). */
static th_resp_t
ireq(long store, const char *token, const char *method, const char *path, const char *body,
     const char *key)
{
    char tenant[64], auth[2048], idem[512];
    const char *h[4] = {NULL, NULL, NULL, NULL};
    size_t n = 0;
    if (store) {
        snprintf(tenant, sizeof(tenant), "X-Tenant-Id: %ld", store);
        h[n++] = tenant;
    }
    if (store == 0)
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", TH_PLATFORM_TOKEN);
    else if (token)
        th_auth_header(auth, sizeof(auth), token);
    if (store == 0 || token)
        h[n++] = auth;
    if (key) {
        /* curl drops a header written "Name:" with nothing after; "Name;" sends it empty. */
        if (key[0])
            snprintf(idem, sizeof(idem), "Idempotency-Key: %s", key);
        else
            snprintf(idem, sizeof(idem), "Idempotency-Key;");
        h[n++] = idem;
    }
    return th_req(srv, method, path, h, body);
}

static void
expect(th_resp_t *r, long status, const char *code)
{
    if (r->status != status)
        fail_msg("expected %ld, got %ld: %s", status, r->status, r->body);
    if (code && strcmp(th_error_code(r), code))
        fail_msg("expected code %s: %s", code, r->body);
}

static bool
replayed(const th_resp_t *r)
{
    const char *v = th_header(r, "Idempotent-Replayed");
    return v && !strcmp(v, "true");
}

/* second is first replayed: the same status, body bytes, Content-Type and
 * Location/ETag, plus Idempotent-Replayed: true (which first lacks). */
static void
expect_replay(const th_resp_t *first, const th_resp_t *second)
{
    assert_false(replayed(first));
    assert_true(replayed(second));
    assert_int_equal(second->status, first->status);
    assert_int_equal(second->len, first->len);
    assert_memory_equal(second->body, first->body, first->len);
    const char *names[] = {"Content-Type", "Location", "ETag"};
    for (size_t i = 0; i < 3; i++) {
        char a[512] = "", b[512] = "";
        const char *v = th_header(first, names[i]);
        snprintf(a, sizeof(a), "%s", v ? v : "(none)");
        v = th_header(second, names[i]);
        snprintf(b, sizeof(b), "%s", v ? v : "(none)");
        assert_string_equal(a, b);
    }
}

static long
count(const char *sql, const char *arg)
{
    const char *p[] = {arg, NULL};
    return atol(th_sql(sql, arg ? p : NULL));
}

/* A fresh key, unique per call; th_slug's buffer is reused by the next call,
 * so each key gets a buffer of its own (a ring long enough for one test). */
static const char *
key(const char *prefix)
{
    static char ring[16][96];
    static unsigned next;
    char *k = ring[next++ % 16];
    snprintf(k, 96, "%s", th_slug(prefix));
    return k;
}

static int
setup(void **state)
{
    curl_global_init(CURL_GLOBAL_ALL);
    srv = th_start(NULL);
    char slug[64];
    snprintf(slug, sizeof(slug), "%s", th_slug("idem-a"));
    store_a = th_create_store(srv, slug, NULL);
    snprintf(slug, sizeof(slug), "%s", th_slug("idem-b"));
    store_b = th_create_store(srv, slug, NULL);
    admin_a = th_token(srv, "STORE_ADMIN", store_a);
    admin_a2 = th_token(srv, "STORE_ADMIN", store_a);
    admin_b = th_token(srv, "STORE_ADMIN", store_b);
    return 0;
}

static int
teardown(void **state)
{
    free(admin_a);
    free(admin_a2);
    free(admin_b);
    if (srv == NULL)
        return -1;
    th_stop(srv);
    curl_global_cleanup();
    return 0;
}

/* A platform route (store 0): one store for two requests; another body under
 * the key is refused and creates nothing. */
static void
test_stores_create(void **state)
{
    char slug[64], slug2[64], body[256];
    snprintf(slug, sizeof(slug), "%s", th_slug("idem-s"));
    snprintf(slug2, sizeof(slug2), "%s", th_slug("idem-s2"));
    snprintf(body, sizeof(body), "{\"slug\":\"%s\",\"name\":\"S\",\"currency\":\"USD\"}", slug);
    const char *k = key("store");
    th_resp_t a = ireq(0, NULL, "POST", "/api/v1/stores", body, k);
    expect(&a, 201, NULL);
    th_resp_t b = ireq(0, NULL, "POST", "/api/v1/stores", body, k);
    expect_replay(&a, &b);
    assert_int_equal(count("SELECT count(*) FROM stores WHERE slug = $1", slug), 1);
    th_resp_free(&b);

    snprintf(body, sizeof(body), "{\"slug\":\"%s\",\"name\":\"S\",\"currency\":\"USD\"}", slug2);
    b = ireq(0, NULL, "POST", "/api/v1/stores", body, k);
    expect(&b, 422, "idempotency_mismatch");
    assert_false(replayed(&b));
    assert_int_equal(count("SELECT count(*) FROM stores WHERE slug = $1", slug2), 0);
    th_resp_free(&b);
    th_resp_free(&a);
}

static void
test_products_create(void **state)
{
    char sa[24];
    snprintf(sa, sizeof(sa), "%ld", store_a);
    const char *k = key("prod");
    const char *body = "{\"name\":\"Idem Once\",\"base_price\":1200}";
    th_resp_t a = ireq(store_a, admin_a, "POST", "/api/v1/products", body, k);
    expect(&a, 201, NULL);
    for (int i = 0; i < 3; i++) {
        th_resp_t b = ireq(store_a, admin_a, "POST", "/api/v1/products", body, k);
        expect_replay(&a, &b);
        th_resp_free(&b);
    }
    assert_int_equal(count("SELECT count(*) FROM products WHERE store_id = $1::bigint AND name = "
                           "'Idem Once'",
                           sa),
                     1);

    /* Another body, same key: refused, nothing made. */
    th_resp_t b = ireq(store_a, admin_a, "POST", "/api/v1/products",
                       "{\"name\":\"Idem Other\",\"base_price\":1200}", k);
    expect(&b, 422, "idempotency_mismatch");
    th_resp_free(&b);
    assert_int_equal(count("SELECT count(*) FROM products WHERE store_id = $1::bigint AND name = "
                           "'Idem Other'",
                           sa),
                     0);

    /* Another admin of the same store, same key and body: never the first
     * admin's answer. */
    b = ireq(store_a, admin_a2, "POST", "/api/v1/products", body, k);
    expect(&b, 422, "idempotency_mismatch");
    assert_false(replayed(&b));
    th_resp_free(&b);

    /* Another method or route under the key: a mismatch too. */
    b = ireq(store_a, admin_a, "POST", "/api/v1/categories", "{\"name\":\"Idem Cat\"}", k);
    expect(&b, 422, "idempotency_mismatch");
    th_resp_free(&b);

    /* A validation failure is not kept: the corrected request runs. */
    const char *k2 = key("prod-val");
    const char *body2 = "{\"name\":\"Idem Twice\",\"base_price\":1200}";
    b = ireq(store_a, admin_a, "POST", "/api/v1/products", "{\"name\":\"\"}", k2);
    expect(&b, 422, "validation_failed");
    th_resp_free(&b);
    b = ireq(store_a, admin_a, "POST", "/api/v1/products", body2, k2);
    expect(&b, 201, NULL);
    assert_false(replayed(&b));
    th_resp_free(&b);
    assert_int_equal(count("SELECT count(*) FROM products WHERE store_id = $1::bigint AND name = "
                           "'Idem Twice'",
                           sa),
                     1);

    /* An auth refusal is not kept either. */
    const char *k3 = key("prod-auth");
    const char *body3 = "{\"name\":\"Idem Thrice\",\"base_price\":1200}";
    b = ireq(store_a, NULL, "POST", "/api/v1/products", body3, k3);
    expect(&b, 401, NULL);
    th_resp_free(&b);
    b = ireq(store_a, admin_a, "POST", "/api/v1/products", body3, k3);
    expect(&b, 201, NULL);
    assert_false(replayed(&b));
    th_resp_free(&b);
    th_resp_free(&a);
}

static long
make_product(long store, const char *token, const char *name)
{
    char body[256];
    snprintf(body, sizeof(body), "{\"name\":\"%s\",\"base_price\":500}", name);
    th_resp_t r = ireq(store, token, "POST", "/api/v1/products", body, NULL);
    expect(&r, 201, NULL);
    long id = (long)json_integer_value(json_object_get(r.json, "id"));
    th_resp_free(&r);
    return id;
}

static void
test_patch_and_delete(void **state)
{
    long id = make_product(store_a, admin_a, "Idem Patch");
    char path[128], ids[24];
    snprintf(path, sizeof(path), "/api/v1/products/%ld", id);
    snprintf(ids, sizeof(ids), "%ld", id);
    const char *k = key("patch");
    th_resp_t a = ireq(store_a, admin_a, "PATCH", path, "{\"name\":\"Idem Patched\"}", k);
    expect(&a, 200, NULL);
    /* Changed by someone else in between: the replay is still the first answer. */
    th_resp_t x = ireq(store_a, admin_a, "PATCH", path, "{\"name\":\"Idem Later\"}", NULL);
    expect(&x, 200, NULL);
    th_resp_free(&x);
    th_resp_t b = ireq(store_a, admin_a, "PATCH", path, "{\"name\":\"Idem Patched\"}", k);
    expect_replay(&a, &b);
    th_resp_free(&b);
    assert_string_equal(
        th_sql("SELECT name FROM products WHERE id = $1::bigint", (const char *[]){ids, NULL}),
        "Idem Later"); /* the replay wrote nothing */
    th_resp_free(&a);

    const char *kd = key("delete");
    a = ireq(store_a, admin_a, "DELETE", path, NULL, kd);
    expect(&a, 204, NULL);
    b = ireq(store_a, admin_a, "DELETE", path, NULL, kd);
    expect_replay(&a, &b); /* 204 again, not 404 */
    th_resp_free(&b);
    b = ireq(store_a, admin_a, "DELETE", path, NULL, NULL);
    expect(&b, 404, NULL); /* without the key: the product is gone */
    th_resp_free(&b);
    th_resp_free(&a);
}

static long
make_variant(long product, const char *sku)
{
    char path[128], body[256];
    snprintf(path, sizeof(path), "/api/v1/products/%ld/variants", product);
    snprintf(body, sizeof(body), "{\"sku\":\"%s\",\"stock\":0,\"options\":{\"n\":\"%s\"}}", sku,
             sku);
    th_resp_t r = ireq(store_a, admin_a, "POST", path, body, NULL);
    expect(&r, 201, NULL);
    long id = (long)json_integer_value(json_object_get(r.json, "id"));
    th_resp_free(&r);
    return id;
}

typedef struct call_s {
    long store;
    const char *token;
    const char *method;
    char path[256];
    char body[512];
    const char *key;
    bool no_replay; /* the route never keeps its answer */
    th_resp_t resp;
} call_t;

static void *
call_thread(void *arg)
{
    call_t *c = arg;
    c->resp = ireq(c->store, c->token, c->method, c->path, c->body, c->key);
    return NULL;
}

/* Sends n copies of c at once; returns how many answered with status want and
 * were not replays (the requests that ran), and checks that every other one
 * was 409 idempotency_in_flight or a replay of the same answer. */
static int
burst(const call_t *c, int n, long want)
{
    call_t cs[16];
    pthread_t t[16];
    assert_true(n <= 16);
    for (int i = 0; i < n; i++) {
        cs[i] = *c;
        pthread_create(&t[i], NULL, call_thread, &cs[i]);
    }
    for (int i = 0; i < n; i++)
        pthread_join(t[i], NULL);
    int ran = 0;
    const th_resp_t *first = NULL;
    for (int i = 0; i < n; i++)
        if (cs[i].resp.status == want && !replayed(&cs[i].resp)) {
            ran++;
            first = &cs[i].resp;
        }
    for (int i = 0; i < n; i++) {
        th_resp_t *r = &cs[i].resp;
        if (r == first)
            continue;
        if (r->status == 409 && c->no_replay && strcmp(th_error_code(r), "email_taken") == 0) {
            continue; /* never kept (API_IDEM_NO_REPLAY): a later copy ran, and found the account */
        } else if (r->status == 409) {
            assert_string_equal(th_error_code(r), "idempotency_in_flight");
            assert_string_equal(th_header(r, "Retry-After"), "1");
        } else if (first) {
            expect_replay(first, r);
        } else {
            fail_msg("unexpected answer %ld: %s", r->status, r->body);
        }
    }
    for (int i = 0; i < n; i++)
        th_resp_free(&cs[i].resp);
    return ran;
}

/* inventory.adjust has a batch handler: each reply of a turn is kept. */
static void
test_inventory_batch(void **state)
{
    long p = make_product(store_a, admin_a, "Idem Inv");
    long v = make_variant(p, th_slug("IDEM-INV"));
    char path[128], vs[24];
    snprintf(path, sizeof(path), "/api/v1/variants/%ld/inventory", v);
    snprintf(vs, sizeof(vs), "%ld", v);
    const char *k = key("inv");
    th_resp_t a = ireq(store_a, admin_a, "PATCH", path, "{\"adjust\":5}", k);
    expect(&a, 200, NULL);
    th_resp_t b = ireq(store_a, admin_a, "PATCH", path, "{\"adjust\":5}", k);
    expect_replay(&a, &b);
    th_resp_free(&b);
    th_resp_free(&a);
    const char *stock = "SELECT stock FROM product_variants WHERE id = $1::bigint";
    const char *moves = "SELECT count(*) FROM inventory_movements WHERE variant_id = $1::bigint";
    assert_int_equal(count(stock, vs), 5);
    assert_int_equal(count(moves, vs), 1);

    /* Twelve copies at once, most of them in one actor turn of the batch
     * handler: one movement. */
    call_t c = {.store = store_a, .token = admin_a, .method = "PATCH", .key = key("inv-burst")};
    snprintf(c.path, sizeof(c.path), "%s", path);
    snprintf(c.body, sizeof(c.body), "{\"adjust\":2}");
    assert_int_equal(burst(&c, 12, 200), 1);
    assert_int_equal(count(stock, vs), 7);
    assert_int_equal(count(moves, vs), 2);
}

/* Concurrent retries of a slow route (argon2 on the blocking pool): one user. */
static void
test_concurrent_register(void **state)
{
    const char *email = th_email("idem-reg");
    call_t c = {.store = store_a, .method = "POST", .key = key("reg"), .no_replay = true};
    snprintf(c.path, sizeof(c.path), "/api/v1/auth/register");
    snprintf(c.body, sizeof(c.body), "{\"email\":\"%s\",\"password\":\"%s\"}", email, TH_PASSWORD);
    assert_int_equal(burst(&c, 8, 201), 1);
    assert_int_equal(count("SELECT count(*) FROM users WHERE email = $1", email), 1);
    /* Its answer carries tokens, so it is never kept (API_IDEM_NO_REPLAY): once it
     * is done, a retry runs again, finds the account and creates nothing. */
    th_resp_t r = ireq(store_a, NULL, "POST", c.path, c.body, c.key);
    assert_int_equal(r.status, 409);
    assert_false(replayed(&r));
    th_resp_free(&r);
    assert_int_equal(count("SELECT count(*) FROM users WHERE email = $1", email), 1);
}

/* A staff password change answers later (hash on the blocking pool, write on the
 * store's actor): that answer is kept too, and the replay hashes nothing. */
static void
test_later_answer(void **state)
{
    th_user_t u = th_user_new(srv, "CUSTOMER", store_a);
    char path[128], ids[24];
    snprintf(path, sizeof(path), "/api/v1/admin/users/%ld", u.id);
    snprintf(ids, sizeof(ids), "%ld", u.id);
    const char *k = key("pw");
    const char *body = "{\"password\":\"Idem-new-passw0rd\"}";
    th_resp_t a = ireq(store_a, admin_a, "PATCH", path, body, k);
    expect(&a, 200, NULL);
    char hash[512];
    snprintf(hash, sizeof(hash), "%s",
             th_sql("SELECT password_hash FROM users WHERE id = $1::bigint",
                    (const char *[]){ids, NULL}));
    th_resp_t b = ireq(store_a, admin_a, "PATCH", path, body, k);
    expect_replay(&a, &b);
    th_resp_free(&b);
    /* argon2 salts each hash: a second run would have changed it. */
    assert_string_equal(th_sql("SELECT password_hash FROM users WHERE id = $1::bigint",
                               (const char *[]){ids, NULL}),
                        hash);
    th_resp_free(&a);
    th_user_free(&u);
}

static void
test_bad_keys(void **state)
{
    char longkey[300];
    memset(longkey, 'k', 256);
    longkey[256] = '\0';
    /* DEL and control characters are refused by the HTTP parser already (400
     * bad_request); the others reach the key check. */
    const char *bad[] = {"", longkey, "caf\xc3\xa9", "a\x7fz", "a\x01z"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        th_resp_t r = ireq(store_a, admin_a, "POST", "/api/v1/products",
                           "{\"name\":\"Idem Bad\",\"base_price\":1}", bad[i]);
        expect(&r, 400, i < 3 ? "invalid_idempotency_key" : NULL);
        th_resp_free(&r);
    }
    char sa[24];
    snprintf(sa, sizeof(sa), "%ld", store_a);
    assert_int_equal(count("SELECT count(*) FROM products WHERE store_id = $1::bigint AND name = "
                           "'Idem Bad'",
                           sa),
                     0);
    /* 255 characters, spaces and punctuation included, are fine. */
    memset(longkey, 'k', 255);
    longkey[255] = '\0';
    longkey[3] = ' ';
    longkey[7] = '~';
    longkey[0] = 'A' + (char)(getpid() % 26); /* fresh per run */
    th_resp_t r =
        ireq(store_a, admin_a, "POST", "/api/v1/categories", "{\"name\":\"Idem Long\"}", longkey);
    expect(&r, 201, NULL);
    th_resp_free(&r);
    /* A GET ignores the header, whatever it holds. */
    r = ireq(store_a, admin_a, "GET", "/api/v1/products", NULL, "");
    expect(&r, 200, NULL);
    assert_false(replayed(&r));
    th_resp_free(&r);
}

/* A key is scoped to its store: the same key in store B is a new request. */
static void
test_store_scope(void **state)
{
    const char *k = key("scope");
    const char *body = "{\"name\":\"Idem Scope\",\"base_price\":700}";
    th_resp_t a = ireq(store_a, admin_a, "POST", "/api/v1/products", body, k);
    expect(&a, 201, NULL);
    th_resp_t b = ireq(store_b, admin_b, "POST", "/api/v1/products", body, k);
    expect(&b, 201, NULL);
    assert_false(replayed(&b));
    th_resp_free(&a);
    th_resp_free(&b);
    char sb[24];
    snprintf(sb, sizeof(sb), "%ld", store_b);
    assert_int_equal(count("SELECT count(*) FROM products WHERE store_id = $1::bigint AND name = "
                           "'Idem Scope'",
                           sb),
                     1);
}

/* Redis unreachable: a keyed mutation is refused with 503 and does nothing (it
 * would run without the guarantee); one without a key still works. */
static void
test_redis_down(void **state)
{
    if (getenv("SHOPD_TEST_URL")) {
        th_skip_or_fail("needs a server of its own (SHOPD_TEST_URL is set)");
        return;
    }
    int port = th_free_port();
    int rpid = th_redis_start(port, NULL);
    assert_true(rpid > 0);
    char url[128];
    snprintf(url, sizeof(url), "SHOPD_REDIS_URL=redis://127.0.0.1:%d/0", port);
    const char *env[] = {url, NULL};
    th_server_t *s2 = th_start(env);
    th_server_t *keep = srv;
    srv = s2;
    char *tok = th_token(srv, "STORE_ADMIN", store_a);
    const char *body = "{\"name\":\"Idem NoRedis\",\"base_price\":1}";
    th_resp_t r = ireq(store_a, tok, "POST", "/api/v1/products", body, key("nor"));
    expect(&r, 201, NULL); /* Redis is up: works */
    th_resp_free(&r);
    kill(rpid, SIGKILL);
    waitpid(rpid, NULL, 0);
    r = ireq(store_a, tok, "POST", "/api/v1/products", body, key("nor"));
    expect(&r, 503, NULL);
    th_resp_free(&r);
    char sa[24];
    snprintf(sa, sizeof(sa), "%ld", store_a);
    assert_int_equal(count("SELECT count(*) FROM products WHERE store_id = $1::bigint AND name = "
                           "'Idem NoRedis'",
                           sa),
                     1);
    free(tok);
    srv = keep;
    assert_int_equal(th_stop(s2), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stores_create),
        cmocka_unit_test(test_products_create),
        cmocka_unit_test(test_patch_and_delete),
        cmocka_unit_test(test_inventory_batch),
        cmocka_unit_test(test_concurrent_register),
        cmocka_unit_test(test_later_answer),
        cmocka_unit_test(test_bad_keys),
        cmocka_unit_test(test_store_scope),
        cmocka_unit_test(test_redis_down),
        TH_STOP_TEST, /* last: every server must exit 0 on SIGTERM */
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
