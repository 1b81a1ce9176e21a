/*
 * Run classes against the real binary: reads run on any worker and never wait
 * behind the store's actor; argon2 runs on the blocking pool and neither waits
 * for the actor nor holds it; a full blocking queue answers 503 with
 * Retry-After. The store's actor is held on purpose by a table lock that its
 * inventory write waits on (EXCLUSIVE lets plain reads through), so every
 * "while busy" below is a fact checked in pg_stat_activity, not a sleep.
 */
#include <libpq-fe.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "harness.h"

static PGconn *
pg(void)
{
    PGconn *c = PQconnectdb(th_env("SHOPD_TEST_DATABASE_URL"));
    assert_int_equal(PQstatus(c), CONNECTION_OK);
    return c;
}

static void
pg_ok(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK)
        fail_msg("%s: %s", sql, PQerrorMessage(c));
    PQclear(r);
}

/* Waits (up to 20 s, a hang guard) until some backend waits for a lock on
 * table `rel` (pg_locks: a lock not granted on that relation). */
static void
wait_for_lock_wait(PGconn *c, const char *rel)
{
    const char *like = rel;
    char sql[512];
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = '%s'::regclass", rel);
    for (int i = 0; i < 2000; i++) {
        PGresult *r = PQexec(c, sql);
        bool waiting = PQresultStatus(r) == PGRES_TUPLES_OK && atoi(PQgetvalue(r, 0, 0)) > 0;
        PQclear(r);
        if (waiting)
            return;
        usleep(10000);
    }
    PGresult *r = PQexec(
        c, "SELECT state, coalesce(wait_event_type, ''), left(query, 120) FROM pg_stat_activity"
           " WHERE backend_type = 'client backend'");
    for (int i = 0; PQresultStatus(r) == PGRES_TUPLES_OK && i < PQntuples(r); i++)
        fprintf(stderr, "  backend: %s | %s | %s\n", PQgetvalue(r, i, 0), PQgetvalue(r, i, 1),
                PQgetvalue(r, i, 2));
    PQclear(r);
    fail_msg("no backend started waiting on a lock for '%s'", like);
}

typedef struct call_s {
    th_server_t *srv;
    const char *method;
    char path[256];
    char body[512];
    const char *headers[4];
    long status;
    char code[64];
    volatile bool done;
} call_t;

static void *
call_thread(void *arg)
{
    call_t *c = arg;
    th_resp_t r = th_req(c->srv, c->method, c->path, c->headers, c->body[0] ? c->body : NULL);
    c->status = r.status;
    snprintf(c->code, sizeof(c->code), "%s", th_error_code(&r));
    th_resp_free(&r);
    c->done = true;
    return NULL;
}

static long
metric(th_server_t *srv, const char *name)
{
    th_resp_t r = th_req(srv, "GET", "/metrics", NULL, NULL);
    assert_int_equal(r.status, 200);
    char key[128];
    snprintf(key, sizeof(key), "\n%s ", name);
    const char *at = strstr(r.body, key);
    if (at == NULL)
        fail_msg("metric %s missing", name);
    long v = atol(at + strlen(key));
    th_resp_free(&r);
    return v;
}

/* A read of a store and a login to it are answered while the store's actor is
 * stuck in an inventory write; the write is answered once the lock goes. */
static void
test_reads_and_logins_do_not_wait_for_the_actor(void **state)
{
    static const char *const env[] = {"SHOPD_REQUEST_TIMEOUT=15000", NULL};
    th_server_t *srv = th_start(env);
    long store = th_create_store(srv, th_slug("run"), NULL);
    th_user_t admin = th_user_new(srv, "STORE_ADMIN", store);
    char tenant[64], auth[1024];
    snprintf(tenant, sizeof(tenant), "X-Tenant-Id: %ld", store);
    th_auth_header(auth, sizeof(auth), admin.access);
    const char *h[] = {tenant, auth, NULL};
    th_resp_t r =
        th_req(srv, "POST", "/api/v1/products", h, "{\"name\":\"Lock Mug\",\"base_price\":500}");
    assert_int_equal(r.status, 201);
    long pid = (long)json_integer_value(json_object_get(r.json, "id"));
    th_resp_free(&r);
    char path[128], body[256];
    snprintf(path, sizeof(path), "/api/v1/products/%ld/variants", pid);
    r = th_req(srv, "POST", path, h, "{\"sku\":\"LOCK-1\",\"stock\":10}");
    assert_int_equal(r.status, 201);
    long vid = (long)json_integer_value(json_object_get(r.json, "id"));
    th_resp_free(&r);

    PGconn *c = pg();
    pg_ok(c, "BEGIN");
    pg_ok(c, "LOCK TABLE product_variants IN EXCLUSIVE MODE"); /* reads pass, writes wait */

    call_t w = {.srv = srv, .method = "PATCH", .headers = {tenant, auth, NULL}};
    snprintf(w.path, sizeof(w.path), "/api/v1/variants/%ld/inventory", vid);
    snprintf(w.body, sizeof(w.body), "{\"adjust\":-1,\"reason\":\"sale\"}");
    pthread_t wt;
    pthread_create(&wt, NULL, call_thread, &w);
    wait_for_lock_wait(c, "product_variants");

    /* The actor of this store is now inside that write. Reads go on. */
    r = th_req(srv, "GET", "/api/v1/products?limit=5", h, NULL);
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
    snprintf(path, sizeof(path), "/api/v1/variants/%ld", vid);
    r = th_req(srv, "GET", path, h, NULL);
    assert_int_equal(r.status, 200);
    assert_int_equal(json_integer_value(json_object_get(r.json, "stock")), 10);
    th_resp_free(&r);
    r = th_req(srv, "GET", "/api/v1/me", h, NULL);
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
    /* A login (argon2 on the blocking pool) too. */
    long tasks = metric(srv, "shopd_blocking_tasks_total");
    snprintf(body, sizeof(body), "{\"email\":\"%s\",\"password\":\"%s\"}", admin.email,
             TH_PASSWORD);
    const char *th[] = {tenant, NULL};
    r = th_req(srv, "POST", "/api/v1/auth/login", th, body);
    assert_int_equal(r.status, 200);
    assert_non_null(json_string_value(json_object_get(r.json, "access_token")));
    th_resp_free(&r);
    /* The pool counts a task after its answer is posted: wait for the count. */
    for (int i = 0; i < 2000 && metric(srv, "shopd_blocking_tasks_total") < tasks + 1; i++)
        usleep(10000);
    assert_true(metric(srv, "shopd_blocking_tasks_total") >= tasks + 1);
    assert_false(w.done); /* all of that while the write still waits */

    pg_ok(c, "COMMIT");
    pthread_join(wt, NULL);
    assert_int_equal(w.status, 200);
    r = th_req(srv, "GET", path, h, NULL);
    assert_int_equal(json_integer_value(json_object_get(r.json, "stock")), 9);
    th_resp_free(&r);
    PQfinish(c);
    th_user_free(&admin);
    assert_int_equal(th_stop(srv), 0);
}

/* One blocking thread, one queued task per lane: a login held in the database
 * fills the pool, the next waits in the queue, the one after is refused at once
 * with 503 store_busy and Retry-After; once the lock goes, both held ones are
 * answered. */
static void
test_full_blocking_queue_is_503(void **state)
{
    static const char *const env[] = {"SHOPD_BLOCKING_THREADS=1", "SHOPD_BLOCKING_QUEUE=1", NULL};
    th_server_t *srv = th_start(env);
    long store = th_create_store(srv, th_slug("blk"), NULL);
    th_user_t u = th_user_new(srv, "CUSTOMER", store);
    char tenant[64], body[256];
    snprintf(tenant, sizeof(tenant), "X-Tenant-Id: %ld", store);
    snprintf(body, sizeof(body), "{\"email\":\"%s\",\"password\":\"%s\"}", u.email, TH_PASSWORD);

    PGconn *c = pg();
    pg_ok(c, "BEGIN");
    pg_ok(c, "LOCK TABLE users IN ACCESS EXCLUSIVE MODE");
    call_t a = {.srv = srv, .method = "POST", .headers = {tenant, NULL}};
    snprintf(a.path, sizeof(a.path), "/api/v1/auth/login");
    snprintf(a.body, sizeof(a.body), "%s", body);
    call_t b = a;
    pthread_t ta, tb;
    pthread_create(&ta, NULL, call_thread, &a);
    wait_for_lock_wait(c, "users");
    pthread_create(&tb, NULL, call_thread, &b);
    for (int i = 0; i < 2000 && metric(srv, "shopd_blocking_queued") < 1; i++)
        usleep(10000);
    assert_int_equal(metric(srv, "shopd_blocking_queued"), 1);

    const char *h[] = {tenant, NULL};
    th_resp_t r = th_req(srv, "POST", "/api/v1/auth/login", h, body);
    assert_int_equal(r.status, 503);
    assert_string_equal(th_error_code(&r), "store_busy");
    assert_non_null(th_header(&r, "Retry-After"));
    th_resp_free(&r);
    assert_true(metric(srv, "shopd_blocking_rejected_total") >= 1);
    /* Reads of the same store are not in that queue. */
    r = th_req(srv, "GET", "/api/v1/store", h, NULL);
    assert_int_equal(r.status, 200);
    th_resp_free(&r);

    pg_ok(c, "COMMIT");
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    assert_int_equal(a.status, 200);
    assert_int_equal(b.status, 200);
    PQfinish(c);
    th_user_free(&u);
    assert_int_equal(th_stop(srv), 0);
}

/* A staff password change hashes on the blocking pool and writes on the store's
 * actor (api_blocking_then). The write is held inside PostgreSQL by a lock on
 * refresh_tokens (a password change revokes the user's sessions); by then the
 * hash is done (the pool counted it), the store's next mutation waits in its
 * mailbox behind the write, and reads go on. Once the lock goes, both are
 * answered and the new password works. */
static void
test_password_change_hops_pool_then_actor(void **state)
{
    th_server_t *srv = th_start(NULL);
    long store = th_create_store(srv, th_slug("hop"), NULL);
    th_user_t admin = th_user_new(srv, "STORE_ADMIN", store);
    th_user_t cust = th_user_new(srv, "CUSTOMER", store);
    char path[128], body[256];
    th_resp_t r = th_store_req(srv, store, admin.access, "POST", "/api/v1/products",
                               "{\"name\":\"Hop Mug\",\"base_price\":500}");
    assert_int_equal(r.status, 201);
    long pid = (long)json_integer_value(json_object_get(r.json, "id"));
    th_resp_free(&r);
    snprintf(path, sizeof(path), "/api/v1/products/%ld/variants", pid);
    r = th_store_req(srv, store, admin.access, "POST", path, "{\"sku\":\"HOP-1\",\"stock\":10}");
    assert_int_equal(r.status, 201);
    long vid = (long)json_integer_value(json_object_get(r.json, "id"));
    th_resp_free(&r);

    PGconn *c = pg();
    pg_ok(c, "BEGIN");
    pg_ok(c, "LOCK TABLE refresh_tokens IN EXCLUSIVE MODE");
    char tenant[64], auth[1024];
    snprintf(tenant, sizeof(tenant), "X-Tenant-Id: %ld", store);
    th_auth_header(auth, sizeof(auth), admin.access);
    long tasks = metric(srv, "shopd_blocking_tasks_total");
    call_t u = {.srv = srv, .method = "PATCH", .headers = {tenant, auth, NULL}};
    snprintf(u.path, sizeof(u.path), "/api/v1/admin/users/%ld", cust.id);
    snprintf(u.body, sizeof(u.body), "{\"password\":\"Hop-new-passw0rd\"}");
    pthread_t ut;
    pthread_create(&ut, NULL, call_thread, &u);
    wait_for_lock_wait(c, "refresh_tokens"); /* the write, on the store's actor, waits */
    assert_true(metric(srv, "shopd_blocking_tasks_total") >= tasks + 1); /* the hash is done */

    call_t w = {.srv = srv, .method = "PATCH", .headers = {tenant, auth, NULL}};
    snprintf(w.path, sizeof(w.path), "/api/v1/variants/%ld/inventory", vid);
    snprintf(w.body, sizeof(w.body), "{\"adjust\":-1}");
    pthread_t wt;
    pthread_create(&wt, NULL, call_thread, &w);
    for (int i = 0; i < 2000 && metric(srv, "shopd_mailbox_depth") < 1; i++)
        usleep(10000);
    assert_true(metric(srv, "shopd_mailbox_depth") >= 1); /* queued behind the write */
    snprintf(path, sizeof(path), "/api/v1/variants/%ld", vid);
    r = th_store_req(srv, store, admin.access, "GET", path, NULL);
    assert_int_equal(r.status, 200); /* reads go on */
    th_resp_free(&r);
    assert_false(u.done);
    assert_false(w.done);

    pg_ok(c, "COMMIT");
    pthread_join(ut, NULL);
    pthread_join(wt, NULL);
    assert_int_equal(u.status, 200);
    assert_int_equal(w.status, 200);
    snprintf(body, sizeof(body), "{\"email\":\"%s\",\"password\":\"Hop-new-passw0rd\"}",
             cust.email);
    r = th_store_req(srv, store, NULL, "POST", "/api/v1/auth/login", body);
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
    PQfinish(c);
    th_user_free(&admin);
    th_user_free(&cust);
    assert_int_equal(th_stop(srv), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reads_and_logins_do_not_wait_for_the_actor),
        cmocka_unit_test(test_full_blocking_queue_is_503),
        cmocka_unit_test(test_password_change_hops_pool_then_actor),
        TH_STOP_TEST,
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
