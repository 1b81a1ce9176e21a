/*
 * Lifecycle against the real binary: configuration errors (exit 2, one line),
 * /readyz following Redis down and back, a lost PostgreSQL connection costing
 * a 503 at most (never a crash), back-pressure from a full mailbox (503 +
 * Retry-After), and a graceful stop that finishes in-flight requests.
 *
 * In-flight work is made slow for real: the test takes an exclusive lock on
 * the stores table, so a store write waits inside PostgreSQL. The database is
 * this program's own (the harness makes one per program), so the lock stalls
 * no other test. Nothing here sleeps to let something happen: each step waits
 * for its condition (a lock waiter in pg_locks, a gauge in /metrics, a refused
 * connection), with timeouts that only guard against hangs.
 */
#include <arpa/inet.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <pthread.h>
#include <setjmp.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "harness.h"

static void
test_config_errors(void **state)
{
    char err[4096];
    const char *argv1[] = {"shopd", "serve", "--workers", "many", NULL};
    assert_int_equal(th_run_shopd(argv1, NULL, err, sizeof(err)), 2);
    assert_non_null(strstr(err, "not an integer"));
    assert_int_equal(strchr(err, '\n') - err, (long)strlen(err) - 1); /* one line */

    const char *argv2[] = {"shopd", "serve", NULL};
    const char *env2[] = {"SHOPD_LISTEN=nowhere", NULL};
    assert_int_equal(th_run_shopd(argv2, env2, err, sizeof(err)), 2);
    assert_non_null(strstr(err, "listen address"));

    const char *argv3[] = {"shopd", "--help", NULL};
    assert_int_equal(th_run_shopd(argv3, NULL, err, sizeof(err)), 0);
    assert_non_null(strstr(err, "SHOPD_DATABASE_URL"));
    assert_non_null(strstr(err, "--max-body"));

    const char *argv4[] = {"shopd", "frobnicate", NULL};
    assert_int_equal(th_run_shopd(argv4, NULL, err, sizeof(err)), 2);

    const char *argv5[] = {"shopd", "migrate", NULL};
    assert_int_equal(th_run_shopd(argv5, NULL, err, sizeof(err)), 0);
}

/* ---------------------------------------------------------------- readyz */

static pid_t redis_pid; /* killed by the group teardown if a test fails midway */

/* A private Redis on port (the same one again after a kill: shopd reconnects to
 * that address). Fails the test if it cannot be had. */
static pid_t
start_redis(int port)
{
    int pid = th_redis_start(port, NULL);
    if (pid < 0)
        fail_msg("redis-server did not start on %d", port);
    return redis_pid = pid;
}

/* The first start may pick another port if the free one was taken meanwhile. */
static pid_t
start_redis_anywhere(int *port)
{
    for (int i = 0; i < 5; i++) {
        *port = th_free_port();
        int pid = th_redis_start(*port, NULL);
        if (pid > 0)
            return redis_pid = pid;
    }
    fail_msg("redis-server did not start on any of 5 free ports");
    return -1;
}

static long
readyz(th_server_t *srv)
{
    th_resp_t r = th_req(srv, "GET", "/readyz", NULL, NULL);
    long s = r.status;
    th_resp_free(&r);
    return s;
}

static void
test_readyz_follows_redis(void **state)
{
    int rport;
    pid_t redis = start_redis_anywhere(&rport);
    char url[64];
    snprintf(url, sizeof(url), "SHOPD_REDIS_URL=redis://127.0.0.1:%d/0", rport);
    const char *env[] = {url, NULL};
    th_server_t *srv = th_start(env);
    assert_int_equal(readyz(srv), 200);

    kill(redis, SIGKILL);
    waitpid(redis, NULL, 0);
    th_resp_t r = th_req(srv, "GET", "/readyz", NULL, NULL);
    assert_int_equal(r.status, 503);
    assert_string_equal(json_string_value(json_object_get(r.json, "redis")), "unavailable");
    assert_string_equal(json_string_value(json_object_get(r.json, "postgres")), "ok");
    assert_non_null(th_header(&r, "Retry-After"));
    th_resp_free(&r);
    /* The server itself stays healthy. */
    r = th_req(srv, "GET", "/healthz", NULL, NULL);
    assert_int_equal(r.status, 200);
    th_resp_free(&r);

    redis = start_redis(rport);
    long s = 0;
    for (int i = 0; i < 40 && s != 200; i++) {
        s = readyz(srv);
        if (s != 200)
            usleep(100000);
    }
    assert_int_equal(s, 200);
    assert_int_equal(th_stop(srv), 0);
    kill(redis, SIGTERM);
    waitpid(redis, NULL, 0);
    redis_pid = 0;
}

/* ---------------------------------------------------------------- PostgreSQL loss */

static PGconn *locker; /* holds the lock on stores; a failed test may leave it */

static PGconn *
pg(void)
{
    if (locker) { /* left by a failed test: release its lock, or the next test hangs */
        PQfinish(locker);
        locker = NULL;
    }
    PGconn *c = PQconnectdb(th_env("SHOPD_TEST_DATABASE_URL"));
    assert_int_equal(PQstatus(c), CONNECTION_OK);
    return c;
}

static void
test_db_connection_loss(void **state)
{
    /* A distinct application_name, so only this server's connections are killed
     * (other tests share the database). */
    char url[600], app[64];
    snprintf(app, sizeof(app), "shopd-loss-%d", (int)getpid());
    const char *base = th_env("SHOPD_TEST_DATABASE_URL");
    snprintf(url, sizeof(url), "SHOPD_DATABASE_URL=%s%sapplication_name=%s", base,
             strchr(base, '?') ? "&" : "?", app);
    const char *env[] = {url, NULL};
    th_server_t *srv = th_start(env);
    th_resp_t r = th_platform(srv, "GET", "/api/v1/stores?limit=1", NULL);
    assert_int_equal(r.status, 200);
    th_resp_free(&r);

    /* Kill every backend of this database but ours: shopd's pool loses its connections. */
    PGconn *c = pg();
    const char *p[1] = {app};
    PGresult *res = PQexecParams(c,
                                 "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                 "WHERE datname = current_database() AND application_name = $1",
                                 1, NULL, p, NULL, NULL, 0);
    assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
    assert_true(atoi(PQgetvalue(res, 0, 0)) >= 1);
    PQclear(res);
    PQfinish(c);

    /* At most a 503 while reconnecting; never a dropped connection or a 500. */
    int ok = 0;
    for (int i = 0; i < 20; i++) {
        r = th_platform(srv, "GET", "/api/v1/stores?limit=1", NULL);
        if (r.status != 200 && r.status != 503)
            fail_msg("status %ld: %s", r.status, r.body);
        if (r.status == 200)
            ok++;
        th_resp_free(&r);
    }
    assert_true(ok >= 15);
    assert_int_equal(th_stop(srv), 0);
}

/* ---------------------------------------------------------------- in-flight work */

typedef struct call_s {
    th_server_t *srv;
    const char *method, *path, *body;
    long status;
    char code[64];
} call_t;

static void *
call_thread(void *arg)
{
    call_t *c = arg;
    th_resp_t r = th_platform(c->srv, c->method, c->path, c->body);
    c->status = r.status;
    snprintf(c->code, sizeof(c->code), "%s", th_error_code(&r));
    th_resp_free(&r);
    return NULL;
}

static void
lock_stores(PGconn *c)
{
    PGresult *r = PQexec(c, "BEGIN; LOCK TABLE stores IN ACCESS EXCLUSIVE MODE");
    assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
    locker = c;
}

static void
unlock_stores(PGconn *c)
{
    PGresult *r = PQexec(c, "COMMIT");
    PQclear(r);
    locker = NULL;
}

/* Sessions of this database waiting for a lock on stores. */
static int
stores_lock_waiters(PGconn *c)
{
    PGresult *r = PQexec(c, "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = "
                            "'stores'::regclass AND database = (SELECT oid FROM pg_database "
                            "WHERE datname = current_database())");
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    int n = atoi(PQgetvalue(r, 0, 0));
    PQclear(r);
    return n;
}

typedef struct waiters_s {
    PGconn *c;
    int want;
} waiters_t;

static bool
waiters_are(void *arg)
{
    waiters_t *w = arg;
    return stores_lock_waiters(w->c) == w->want;
}

/* Waits (10 s at most) until exactly n sessions wait for the lock on stores. */
static void
wait_lock_waiters(PGconn *c, int n)
{
    waiters_t w = {c, n};
    if (!th_wait_until(waiters_are, &w, 10000))
        fail_msg("want %d waiter(s) for the lock on stores, have %d", n, stores_lock_waiters(c));
}

static long metric(th_server_t *srv, const char *name);

typedef struct gauge_s {
    th_server_t *srv;
    const char *name;
    long want;
} gauge_t;

static bool
gauge_is(void *arg)
{
    gauge_t *g = arg;
    return metric(g->srv, g->name) == g->want;
}

/* Waits (10 s at most) until the /metrics line `name` reads want. */
static void
wait_metric(th_server_t *srv, const char *name, long want)
{
    gauge_t g = {srv, name, want};
    if (!th_wait_until(gauge_is, &g, 10000))
        fail_msg("%s: want %ld, have %ld", name, want, metric(srv, name));
}

static void
test_mailbox_full(void **state)
{
    /* One worker: the stores list runs on one read lane of the platform. */
    static const char *const env[] = {"SHOPD_MAILBOX_CAP=2", "SHOPD_ACTOR_BATCH=1",
                                      "SHOPD_READ_BATCH=1", "SHOPD_WORKERS=1", NULL};
    th_server_t *srv = th_start(env);
    /* The /metrics request that reads the gauge is in flight itself. */
    long idle = metric(srv, "shopd_http_inflight");
    assert_true(idle >= 0);
    PGconn *c = pg();
    lock_stores(c);
    /* The platform actor runs the first request, which waits for the lock inside
     * PostgreSQL; the next two fill its mailbox (cap 2). Each step waits for its
     * condition, so the order is certain. */
    /* Static: if a step fails, the threads still finish later and write here. */
    static call_t calls[3];
    static pthread_t th[3];
    for (int i = 0; i < 3; i++) {
        calls[i] = (call_t){srv, "GET", "/api/v1/stores?limit=1", NULL, 0, ""};
        pthread_create(&th[i], NULL, call_thread, &calls[i]);
        if (i == 0)
            wait_lock_waiters(c, 1);
        wait_metric(srv, "shopd_http_inflight", idle + i + 1);
    }
    /* Now every further request is refused at once with 503 + Retry-After. */
    for (int i = 0; i < 3; i++) {
        th_resp_t r = th_platform(srv, "GET", "/api/v1/stores?limit=1", NULL);
        assert_int_equal(r.status, 503);
        assert_string_equal(th_error_code(&r), "store_busy");
        assert_non_null(th_header(&r, "Retry-After"));
        th_resp_free(&r);
    }
    unlock_stores(c);
    for (int i = 0; i < 3; i++) {
        pthread_join(th[i], NULL);
        if (calls[i].status != 200)
            fail_msg("queued request %d: %ld %s", i, calls[i].status, calls[i].code);
    }
    PQfinish(c);
    assert_int_equal(th_stop(srv), 0);
}

/* ---------------------------------------------------------------- connection limits */

static int
connect_to(th_server_t *srv)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)srv->port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    return fd;
}

static long
metric(th_server_t *srv, const char *name)
{
    th_resp_t r = th_req(srv, "GET", "/metrics", NULL, NULL);
    char key[128];
    snprintf(key, sizeof(key), "\n%s ", name);
    const char *p = strstr(r.body, key);
    long v = p ? atol(p + strlen(key)) : -1;
    th_resp_free(&r);
    return v;
}

/* Sends GET /metrics on an open keep-alive connection and returns the value of
 * the line `name` (-1 if missing). */
static long
metric_on(int fd, const char *name)
{
    static const char req[] = "GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n";
    assert_int_equal(send(fd, req, sizeof(req) - 1, MSG_NOSIGNAL), (ssize_t)(sizeof(req) - 1));
    char buf[65536];
    size_t got = 0;
    long clen = -1;
    const char *body = NULL;
    while (got + 1 < sizeof(buf)) {
        ssize_t n = recv(fd, buf + got, sizeof(buf) - got - 1, 0);
        assert_true(n > 0);
        got += (size_t)n;
        buf[got] = '\0';
        const char *end = strstr(buf, "\r\n\r\n");
        if (end == NULL)
            continue;
        const char *cl = strcasestr(buf, "\r\nContent-Length:");
        assert_non_null(cl);
        clen = atol(cl + 17);
        body = end + 4;
        if ((long)(buf + got - body) >= clen)
            break;
    }
    assert_non_null(body);
    char key[128];
    snprintf(key, sizeof(key), "\n%s ", name);
    const char *p = strstr(body, key);
    return p ? atol(p + strlen(key)) : -1;
}

static void
test_connection_cap_and_cleanup(void **state)
{
    /* 20 idle connections and one that reads /metrics fill the cap of 21. */
    static const char *const env[] = {"SHOPD_MAX_CONNS=21", NULL};
    th_server_t *srv = th_start(env);
    int fds[20];
    for (int i = 0; i < 20; i++)
        fds[i] = connect_to(srv);
    int probe = connect_to(srv);
    /* Wait until the server has accepted all 21 (accepting is asynchronous). */
    long open = -1;
    for (int i = 0; i < 1000 && open != 21; i++) {
        open = metric_on(probe, "shopd_http_connections");
        if (open != 21)
            usleep(10000);
    }
    assert_int_equal(open, 21);
    /* The next one is refused with a JSON 503. */
    int extra = connect_to(srv);
    char buf[512] = "";
    ssize_t n = recv(extra, buf, sizeof(buf) - 1, 0);
    assert_true(n > 0);
    buf[n] = '\0';
    assert_non_null(strstr(buf, "503"));
    assert_non_null(strstr(buf, "too_many_connections"));
    close(extra);
    assert_int_equal(metric_on(probe, "shopd_http_connections_rejected_total"), 1);
    for (int i = 0; i < 20; i++)
        close(fds[i]);
    close(probe);
    /* Closed connections are forgotten: the count returns to just ours. */
    wait_metric(srv, "shopd_http_connections", 1);
    assert_int_equal(th_stop(srv), 0);
}

static void
test_request_timeout(void **state)
{
    static const char *const env[] = {"SHOPD_REQUEST_TIMEOUT=300", NULL};
    th_server_t *srv = th_start(env);
    long idle = metric(srv, "shopd_http_inflight");
    PGconn *c = pg();
    lock_stores(c);
    th_resp_t r = th_platform(srv, "GET", "/api/v1/stores?limit=1", NULL);
    assert_int_equal(r.status, 504);
    assert_string_equal(th_error_code(&r), "request_timeout");
    th_resp_free(&r);
    /* The timed-out query still waits for the lock: release it and wait until the
     * query has run and the late answer is back (nothing in flight but /metrics).
     * The late answer is dropped; the server keeps serving. */
    assert_int_equal(stores_lock_waiters(c), 1);
    unlock_stores(c);
    wait_lock_waiters(c, 0);
    wait_metric(srv, "shopd_http_inflight", idle);
    PQfinish(c);
    r = th_platform(srv, "GET", "/api/v1/stores?limit=1", NULL);
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
    assert_int_equal(th_stop(srv), 0);
}

static void
test_graceful_shutdown(void **state)
{
    th_server_t *srv = th_start(NULL);
    PGconn *c = pg();
    lock_stores(c);
    char body[256];
    snprintf(body, sizeof(body), "{\"slug\":\"%s\",\"name\":\"In Flight\",\"currency\":\"USD\"}",
             th_slug("inflight"));
    call_t call = {srv, "POST", "/api/v1/stores", body, 0, ""};
    pthread_t t;
    pthread_create(&t, NULL, call_thread, &call);
    wait_lock_waiters(c, 1); /* the INSERT now waits for the lock */

    pid_t pid = srv->pid;
    kill(pid, SIGTERM);
    /* It stops accepting: soon a new connection is refused (10 s at most). */
    long s = 200;
    for (int i = 0; i < 1000 && s != 0; i++) {
        th_resp_t r = th_req(srv, "GET", "/healthz", NULL, NULL);
        s = r.status;
        th_resp_free(&r);
        if (s != 0)
            usleep(10000);
    }
    assert_int_equal(s, 0);
    /* Still in PostgreSQL, waiting: the stop did not cut it short. */
    assert_int_equal(stores_lock_waiters(c), 1);

    unlock_stores(c);
    pthread_join(t, NULL);
    assert_int_equal(call.status, 201); /* the in-flight request finished */
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    srv->pid = 0;
    th_stop(srv);
    PQfinish(c);
}

static int
group_teardown(void **state)
{
    if (redis_pid > 0) {
        kill(redis_pid, SIGKILL);
        waitpid(redis_pid, NULL, 0);
    }
    return 0;
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_readyz_follows_redis),
        cmocka_unit_test(test_db_connection_loss),
        cmocka_unit_test(test_mailbox_full),
        cmocka_unit_test(test_connection_cap_and_cleanup),
        cmocka_unit_test(test_request_timeout),
        cmocka_unit_test(test_graceful_shutdown),
    };
    return cmocka_run_group_tests(tests, NULL, group_teardown);
}
