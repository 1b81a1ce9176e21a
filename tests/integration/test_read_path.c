/*
 * The catalog read path (issue 11): compact and lean list pages, gzip copies of
 * cached pages with their own ETags, hits answered on the I/O threads, and no
 * stale read after a write: in the writer's process at once, in another shopd
 * process sharing Redis within 1 s, and within the staleness bound when Redis is
 * lost (then a resync when it is back). Two real shopd processes, real
 * PostgreSQL and Redis.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>

#include <zlib.h>

#include "harness.h"
#include "shopd/common.h"

static th_server_t *srv, *srv2;
static long store;
static char *admin;
static long product; /* one of the 20, with 3 variants */

static th_resp_t
get(th_server_t *s, const char *path, const char *h1, const char *h2)
{
    char tenant[64];
    snprintf(tenant, sizeof(tenant), "X-Tenant-Id: %ld", store);
    const char *h[4] = {tenant, NULL, NULL, NULL};
    int n = 1;
    if (h1)
        h[n++] = h1;
    if (h2)
        h[n++] = h2;
    return th_req(s, "GET", path, h, NULL);
}

static th_resp_t
admin_req(th_server_t *s, const char *method, const char *path, const char *body)
{
    return th_store_req(s, store, admin, method, path, body);
}

/* A metric's value from /metrics ("name{labels}" as written), -1 if absent. */
static long
metric(th_server_t *s, const char *name)
{
    th_resp_t r = th_req(s, "GET", "/metrics", NULL, NULL);
    long v = -1;
    char want[160];
    snprintf(want, sizeof(want), "\n%s ", name);
    const char *p = r.body ? strstr(r.body, want) : NULL;
    if (p)
        v = atol(p + strlen(want));
    th_resp_free(&r);
    return v;
}

static long
price_of(th_server_t *s, long id, char *xcache, size_t n)
{
    char path[96];
    snprintf(path, sizeof(path), "/api/v1/products/%ld", id);
    th_resp_t r = get(s, path, NULL, NULL);
    assert_int_equal(r.status, 200);
    const char *xc = th_header(&r, "X-Cache");
    snprintf(xcache, n, "%s", xc ? xc : "");
    long p = (long)json_integer_value(json_object_get(r.json, "base_price"));
    th_resp_free(&r);
    return p;
}

static int
setup(void **state)
{
    (void)state;
    srv = th_start(NULL);
    srv2 = th_start(NULL); /* the same database and Redis: another process of the fleet */
    store = th_create_store(srv, th_slug("read"), NULL);
    admin = th_token(srv, "STORE_ADMIN", store);
    /* 20 products of 3 variants, named like a shop names them. */
    char sid[24];
    snprintf(sid, sizeof(sid), "%ld", store);
    const char *p[] = {sid, NULL};
    th_sql("INSERT INTO products (store_id, name, slug, description, base_price, status, brand)"
           " SELECT $1::bigint, 'Organic Cotton Tee ' || g, 'organic-cotton-tee-' || g,"
           " 'A soft tee.', 1900 + g * 100, 'active', 'Acme' FROM generate_series(1, 20) g",
           p);
    th_sql("INSERT INTO product_variants (store_id, product_id, sku, options, price, stock)"
           " SELECT $1::bigint, pr.id, 'TEE-' || pr.id || '-' || s,"
           " jsonb_build_object('Size', s), CASE WHEN s = 'XL' THEN pr.base_price + 500 END, 5"
           " FROM products pr, unnest(ARRAY['S', 'M', 'XL']) s WHERE pr.store_id = $1::bigint",
           p);
    product = atol(th_sql("SELECT min(id) FROM products WHERE store_id = $1::bigint", p));
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    free(admin);
    th_stop(srv2);
    th_stop(srv);
    return 0;
}

static size_t
gunzip(const char *in, size_t n, char *out, size_t cap)
{
    z_stream z;
    memset(&z, 0, sizeof(z));
    assert_int_equal(inflateInit2(&z, 15 + 16), Z_OK);
    z.next_in = (Bytef *)(uintptr_t)in;
    z.avail_in = (uInt)n;
    z.next_out = (Bytef *)out;
    z.avail_out = (uInt)cap;
    assert_int_equal(inflate(&z, Z_FINISH), Z_STREAM_END);
    size_t got = cap - z.avail_out;
    inflateEnd(&z);
    return got;
}

/* The lean, compact list; gzip from the cached copy, 4x smaller; ETag per coding. */
static void
test_gzip_and_etags(void **state)
{
    (void)state;
    const char *path = "/api/v1/products?limit=20";
    th_resp_t plain = get(srv, path, NULL, NULL);
    assert_int_equal(plain.status, 200);
    assert_int_equal(json_array_size(json_object_get(plain.json, "data")), 20);
    json_t *first = json_array_get(json_object_get(plain.json, "data"), 0);
    assert_int_equal(json_integer_value(json_object_get(first, "variant_count")), 3);
    assert_int_equal(json_integer_value(json_object_get(first, "price_max")),
                     json_integer_value(json_object_get(first, "price_min")) + 500);
    assert_null(strstr(plain.body, "\" : "));
    assert_null(th_header(&plain, "Content-Encoding"));
    assert_non_null(strstr(th_header(&plain, "Vary"), "Accept-Encoding"));
    char etag[64];
    snprintf(etag, sizeof(etag), "%s", th_header(&plain, "ETag"));

    th_resp_t gz = get(srv, path, "Accept-Encoding: gzip, deflate", NULL);
    assert_int_equal(gz.status, 200);
    assert_string_equal(th_header(&gz, "Content-Encoding"), "gzip");
    assert_string_equal(th_header(&gz, "X-Cache"), "hit");
    char gz_etag[64];
    snprintf(gz_etag, sizeof(gz_etag), "%s", th_header(&gz, "ETag"));
    assert_string_not_equal(gz_etag, etag);
    assert_non_null(strstr(gz_etag, "-gz\""));
    /* The same bytes once inflated, at least 4x fewer on the wire. */
    char *out = malloc(plain.len + 16);
    size_t n = gunzip(gz.body, gz.len, out, plain.len + 16);
    assert_int_equal(n, plain.len);
    assert_memory_equal(out, plain.body, n);
    free(out);
    printf("list page of 20: %zu bytes, %zu gzip (%.1fx)\n", plain.len, gz.len,
           (double)plain.len / (double)gz.len);
    if (plain.len < 4 * gz.len)
        fail_msg("gzip copy %zu bytes for %zu: less than 4x smaller", gz.len, plain.len);

    /* 304 for each representation on its own ETag, not on the other's. */
    char inm[96];
    snprintf(inm, sizeof(inm), "If-None-Match: %s", gz_etag);
    th_resp_t r = get(srv, path, "Accept-Encoding: gzip", inm);
    assert_int_equal(r.status, 304);
    assert_int_equal(r.len, 0);
    assert_string_equal(th_header(&r, "ETag"), gz_etag);
    th_resp_free(&r);
    r = get(srv, path, NULL, inm); /* identity asked, gzip's tag given: the page */
    assert_int_equal(r.status, 200);
    assert_int_equal(r.len, plain.len);
    th_resp_free(&r);
    snprintf(inm, sizeof(inm), "If-None-Match: %s", etag);
    r = get(srv, path, NULL, inm);
    assert_int_equal(r.status, 304);
    th_resp_free(&r);
    r = get(srv, path, "Accept-Encoding: gzip", inm);
    assert_int_equal(r.status, 200);
    assert_string_equal(th_header(&r, "Content-Encoding"), "gzip");
    th_resp_free(&r);
    r = get(srv, path, "Accept-Encoding: gzip;q=0", NULL); /* refused: identity */
    assert_int_equal(r.status, 200);
    assert_null(th_header(&r, "Content-Encoding"));
    assert_int_equal(r.len, plain.len);
    th_resp_free(&r);
    /* The other process builds its own gzip copy from the Redis entry: same tags. */
    r = get(srv2, path, "Accept-Encoding: gzip", NULL);
    assert_string_equal(th_header(&r, "ETag"), gz_etag);
    assert_int_equal(r.len, gz.len);
    th_resp_free(&r);
    th_resp_free(&gz);
    th_resp_free(&plain);
}

/* Anonymous and customers' hits never leave the I/O thread (a public page
 * answers a customer as it answers anyone); admins' GETs go to a worker. */
static void
test_io_thread_hits(void **state)
{
    (void)state;
    const char *path = "/api/v1/products?limit=5&sort=price";
    th_resp_t r = get(srv, path, NULL, NULL);
    th_resp_free(&r);
    long before = metric(srv, "shopd_page_cache_hits_total{where=\"io\"}");
    long wbefore = metric(srv, "shopd_page_cache_hits_total{where=\"worker\"}");
    assert_true(before >= 0);
    for (int i = 0; i < 10; i++) {
        r = get(srv, path, NULL, NULL);
        assert_int_equal(r.status, 200);
        assert_string_equal(th_header(&r, "X-Cache"), "hit");
        th_resp_free(&r);
    }
    assert_int_equal(metric(srv, "shopd_page_cache_hits_total{where=\"io\"}"), before + 10);
    char *cust = th_token(srv, "CUSTOMER", store);
    r = th_store_req(srv, store, cust, "GET", path, NULL);
    assert_int_equal(r.status, 200);
    assert_string_equal(th_header(&r, "X-Cache"), "hit");
    th_resp_free(&r);
    free(cust);
    assert_int_equal(metric(srv, "shopd_page_cache_hits_total{where=\"io\"}"), before + 11);
    assert_int_equal(metric(srv, "shopd_page_cache_hits_total{where=\"worker\"}"), wbefore);
    /* A customer of another store reads the public page like anyone else. */
    long other = th_create_store(srv, th_slug("other"), NULL);
    char *stranger = th_token(srv, "CUSTOMER", other);
    r = th_store_req(srv, store, stranger, "GET", path, NULL);
    assert_int_equal(r.status, 200);
    assert_string_equal(th_header(&r, "X-Cache"), "hit");
    th_resp_free(&r);
    free(stranger);
    /* An admin's GET bypasses the cache (drafts are in it) on a worker. */
    char *adm = th_token(srv, "STORE_ADMIN", store);
    r = th_store_req(srv, store, adm, "GET", path, NULL);
    assert_int_equal(r.status, 200);
    const char *axc = th_header(&r, "X-Cache");
    assert_true(axc == NULL || strcmp(axc, "hit") != 0);
    th_resp_free(&r);
    free(adm);
    assert_int_equal(metric(srv, "shopd_page_cache_hits_total{where=\"io\"}"), before + 12);
    assert_int_equal(metric(srv, "shopd_catalog_version_subscription_up"), 1);
}

typedef struct {
    th_server_t *s;
    long id, want;
} seen_t;

static bool
price_seen(void *arg)
{
    seen_t *w = arg;
    char xc[32];
    return price_of(w->s, w->id, xc, sizeof(xc)) == w->want;
}

/* A write shows on the next GET in its process, and within 1 s in the other. */
static void
test_two_processes(void **state)
{
    (void)state;
    char xc[32], path[96], body[64];
    long old = price_of(srv, product, xc, sizeof(xc));
    for (int i = 0; i < 3; i++) {
        assert_int_equal(price_of(srv, product, xc, sizeof(xc)), old);
        assert_int_equal(price_of(srv2, product, xc, sizeof(xc)), old);
    }
    assert_string_equal(xc, "hit"); /* the other process holds the page */
    snprintf(path, sizeof(path), "/api/v1/products/%ld", product);
    snprintf(body, sizeof(body), "{\"base_price\":%ld}", old + 1);
    th_resp_t r = admin_req(srv, "PATCH", path, body);
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
    uint64_t t0 = shopd_now_us();
    assert_int_equal(price_of(srv, product, xc, sizeof(xc)), old + 1);
    seen_t w = {srv2, product, old + 1};
    assert_true(th_wait_until(price_seen, &w, 5000));
    uint64_t us = shopd_now_us() - t0;
    printf("the other process saw the write after %llu us\n", (unsigned long long)us);
    if (us >= 1000000)
        fail_msg("the other process served the old price for %llu us", (unsigned long long)us);
    /* The list too (price_min of the lean entry), in both. */
    r = get(srv2, "/api/v1/products?sort=price&limit=1", NULL, NULL);
    assert_int_equal(json_integer_value(json_object_get(
                         json_array_get(json_object_get(r.json, "data"), 0), "price_min")),
                     old + 1);
    th_resp_free(&r);
}

static bool
sub_down(void *arg)
{
    return metric(arg, "shopd_catalog_version_subscription_up") == 0;
}

static bool
sub_up(void *arg)
{
    return metric(arg, "shopd_catalog_version_subscription_up") == 1;
}

/* Redis lost: the other process's pages are checked again past 1 s (so the write
 * shows), and a restarted Redis brings a resync and caching back. */
static void
test_redis_lost(void **state)
{
    (void)state;
    char dir[] = "/tmp/shopd-read-redis-XXXXXX";
    assert_non_null(mkdtemp(dir));
    int port = th_free_port();
    int redis = th_redis_start(port, dir);
    assert_true(redis > 0);
    char url[80];
    snprintf(url, sizeof(url), "SHOPD_REDIS_URL=redis://127.0.0.1:%d/0", port);
    const char *env[] = {url, NULL};
    th_server_t *a = th_start(env), *b = th_start(env);
    assert_true(th_wait_until(sub_up, a, 5000));
    assert_true(th_wait_until(sub_up, b, 5000));
    /* A token of its own: sessions live in this Redis. */
    char *a_admin = th_token(a, "STORE_ADMIN", store);
    char xc[32], path[96], body[64];
    long old = price_of(a, product, xc, sizeof(xc));
    for (int i = 0; i < 3; i++)
        assert_int_equal(price_of(b, product, xc, sizeof(xc)), old);
    assert_string_equal(xc, "hit");
    long resyncs = metric(b, "shopd_catalog_version_resyncs_total");

    kill(redis, SIGKILL); /* no save, no goodbye */
    waitpid(redis, NULL, 0);
    assert_true(th_wait_until(sub_down, b, 5000));
    snprintf(path, sizeof(path), "/api/v1/products/%ld", product);
    snprintf(body, sizeof(body), "{\"base_price\":%ld}", old + 7);
    th_resp_t r = th_store_req(a, store, a_admin, "PATCH", path, body);
    assert_int_equal(r.status, 200); /* PostgreSQL took it; the bump is lost */
    th_resp_free(&r);
    uint64_t t0 = shopd_now_us();
    assert_int_equal(price_of(a, product, xc, sizeof(xc)), old + 7);
    assert_string_equal(xc, "bypass");
    seen_t w = {b, product, old + 7};
    assert_true(th_wait_until(price_seen, &w, 5000));
    uint64_t us = shopd_now_us() - t0;
    printf("with Redis down the other process saw the write after %llu us\n",
           (unsigned long long)us);
    if (us >= 1500000) /* page_stale_ms (1 s) past its last check, plus a poll */
        fail_msg("stale for %llu us with Redis down", (unsigned long long)us);

    /* Redis back (empty: its counters were lost): a resync, and caching resumes. */
    redis = th_redis_start(port, dir);
    assert_true(redis > 0);
    assert_true(th_wait_until(sub_up, b, 5000));
    assert_true(metric(b, "shopd_catalog_version_resyncs_total") > resyncs);
    assert_int_equal(price_of(a, product, xc, sizeof(xc)), old + 7); /* replays the bump */
    for (int i = 0; i < 3; i++)
        assert_int_equal(price_of(b, product, xc, sizeof(xc)), old + 7);
    assert_string_equal(xc, "hit");
    /* And a write after the outage reaches b through pub/sub again. */
    snprintf(body, sizeof(body), "{\"base_price\":%ld}", old + 8);
    r = th_store_req(a, store, a_admin, "PATCH", path, body);
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
    w.want = old + 8;
    t0 = shopd_now_us();
    assert_true(th_wait_until(price_seen, &w, 5000));
    assert_true(shopd_now_us() - t0 < 1000000);

    free(a_admin);
    assert_int_equal(th_stop(a), 0);
    assert_int_equal(th_stop(b), 0);
    kill(redis, SIGTERM);
    waitpid(redis, NULL, 0);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

/* The lean entry is rendered by shopd itself: names with quotes, backslashes, control
 * characters and UTF-8 come back as they were stored. */
/* Fairness on the I/O thread: with one I/O thread, store A sends five cached
 * page requests for each of store B's, so A takes over 3/4 of the thread's
 * time and its connections go to the low priority (counted in /metrics),
 * while every request of both stores is still answered, and B's from cache. */
static void
test_fair_io_thread(void **state)
{
    (void)state;
    const char *env[] = {"SHOPD_IO_THREADS=1", NULL};
    th_server_t *s = th_start(env);
    long b = th_create_store(s, th_slug("fairb"), NULL);
    char ta[64], tb[64];
    snprintf(ta, sizeof(ta), "X-Tenant-Id: %ld", store);
    snprintf(tb, sizeof(tb), "X-Tenant-Id: %ld", b);
    const char *ha[] = {ta, NULL}, *hb[] = {tb, NULL};
    assert_int_equal(metric(s, "shopd_http_fair_demotions_total"), 0);
    int hits_b = 0;
    for (int i = 0; i < 60; i++) {
        th_resp_t r = th_req(s, "GET", "/api/v1/products", hb, NULL);
        assert_int_equal(r.status, 200);
        hits_b += th_header(&r, "X-Cache") && !strcmp(th_header(&r, "X-Cache"), "hit");
        th_resp_free(&r);
        for (int k = 0; k < 5; k++) {
            r = th_req(s, "GET", "/api/v1/products", ha, NULL);
            assert_int_equal(r.status, 200);
            th_resp_free(&r);
        }
    }
    assert_true(hits_b >= 50);
    assert_true(metric(s, "shopd_http_fair_demotions_total") > 0);
    assert_int_equal(th_stop(s), 0);
}

/* A keep-alive client: one connection, one request at a time. */
static int
ka_open(th_server_t *s)
{
    int fd = th_connect(s);
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    return fd;
}

/* GET path of store tenant on fd, with the bearer token if not NULL; the status,
 * and the body into body (NUL-ended, up to cap - 1 bytes kept). -1 if the
 * connection failed. */
static int
ka_req(int fd, long tenant, const char *path, const char *token, char *body, size_t cap)
{
    char req[1024], buf[65536];
    int n = snprintf(
        req, sizeof(req), "GET %s HTTP/1.1\r\nHost: t\r\nX-Tenant-Id: %ld\r\n%s%s%s\r\n", path,
        tenant, token ? "Authorization: Bearer " : "", token ? token : "", token ? "\r\n" : "");
    if (send(fd, req, (size_t)n, MSG_NOSIGNAL) != n)
        return -1;
    size_t got = 0;
    char *end = NULL;
    while (!(end = memmem(buf, got, "\r\n\r\n", 4))) {
        ssize_t k = recv(fd, buf + got, sizeof(buf) - got - 1, 0);
        if (k <= 0)
            return -1;
        got += (size_t)k;
    }
    buf[got] = '\0';
    const char *cl = strcasestr(buf, "\r\nContent-Length:");
    size_t len = cl ? (size_t)atol(cl + 17) : 0, head = (size_t)(end + 4 - buf);
    if (head + len > sizeof(buf) - 1)
        return -1;
    while (got < head + len) {
        ssize_t k = recv(fd, buf + got, sizeof(buf) - got - 1, 0);
        if (k <= 0)
            return -1;
        got += (size_t)k;
    }
    size_t keep = len < cap - 1 ? len : cap - 1;
    memcpy(body, buf + head, keep);
    body[keep] = '\0';
    return atoi(buf + 9);
}

static int
ka_get(int fd, long tenant, const char *path, char *body, size_t cap)
{
    return ka_req(fd, tenant, path, NULL, body, cap);
}

typedef struct flood_s {
    th_server_t *s;
    long tenant;
    _Atomic bool stop;
    _Atomic long ok, bad;
} flood_t;

static void *
flood_main(void *arg)
{
    flood_t *f = arg;
    int fd = ka_open(f->s);
    char body[64];
    while (!atomic_load(&f->stop)) {
        if (ka_get(fd, f->tenant, "/api/v1/products", body, sizeof(body)) == 200)
            atomic_fetch_add(&f->ok, 1);
        else
            atomic_fetch_add(&f->bad, 1);
    }
    close(fd);
    return NULL;
}

/* One flood: with two I/O threads (the lane on or off), store A floods cached
 * pages over six keep-alive connections while a new store B sends over three.
 * Every answer of both stores must be right on the same connections: B's page,
 * byte for byte, before, during and after any move. Returns the moves counted. */
static long
flood_run(bool lane)
{
    const char *env[] = {"SHOPD_IO_THREADS=2", lane ? NULL : "SHOPD_IO_FLOOD_LANE=false", NULL};
    th_server_t *s = th_start(env);
    long b = th_create_store(s, th_slug("laneb"), NULL);
    char *b_admin = th_token(s, "STORE_ADMIN", b);
    th_resp_t r = th_store_req(s, b, b_admin, "POST", "/api/v1/products",
                               "{\"name\":\"Lane B\",\"base_price\":1234,\"status\":\"active\"}");
    assert_int_equal(r.status, 201);
    th_resp_free(&r);
    free(b_admin);
    assert_int_equal(metric(s, "shopd_http_lane_moves_total"), 0);

    int fb[3];
    static char first[65536], page[65536];
    for (int i = 0; i < 3; i++)
        fb[i] = ka_open(s);
    assert_int_equal(ka_get(fb[0], b, "/api/v1/products", first, sizeof(first)), 200);
    assert_non_null(strstr(first, "Lane B"));

    flood_t f = {.s = s, .tenant = store};
    pthread_t th[6];
    for (int i = 0; i < 6; i++)
        assert_int_equal(pthread_create(&th[i], NULL, flood_main, &f), 0);
    long b_ok = 0, moves = 0;
    uint64_t t0 = shopd_now_us();
    while (shopd_now_us() - t0 < (lane ? 6000000u : 1500000u)) {
        for (int i = 0; i < 3; i++) {
            assert_int_equal(ka_get(fb[i], b, "/api/v1/products", page, sizeof(page)), 200);
            assert_string_equal(page, first);
            b_ok++;
        }
        moves = metric(s, "shopd_http_lane_moves_total");
        if (moves > 0 && shopd_now_us() - t0 > 1500000)
            break;
        if (moves == 0 && b_ok % 300 == 0) {
            /* The kernel may have put every connection of A on one thread and every
             * one of B on the other (nothing to move): B takes new connections. */
            for (int i = 0; i < 3; i++) {
                close(fb[i]);
                fb[i] = ka_open(s);
            }
        }
        usleep(2000);
    }
    atomic_store(&f.stop, true);
    for (int i = 0; i < 6; i++)
        pthread_join(th[i], NULL);
    moves = metric(s, "shopd_http_lane_moves_total");
    assert_int_equal(atomic_load(&f.bad), 0);
    assert_true(atomic_load(&f.ok) > 100);
    assert_true(b_ok > 10);
    /* After the flood, B's connections still answer (wherever they are now). */
    for (int i = 0; i < 3; i++) {
        assert_int_equal(ka_get(fb[i], b, "/api/v1/products", page, sizeof(page)), 200);
        assert_string_equal(page, first);
        close(fb[i]);
    }
    assert_int_equal(th_stop(s), 0);
    return moves;
}

/* The flood lane: whichever thread a connection was accepted on, A takes most of
 * a busy thread and connections move between the threads (counted in /metrics)
 * between two requests, answers unharmed; with SHOPD_IO_FLOOD_LANE=false nothing
 * moves under the same flood. */
static void
test_flood_lane(void **state)
{
    (void)state;
    assert_true(flood_run(true) > 0);
    assert_int_equal(flood_run(false), 0);
}

/* ---- product pages read in one pipeline (catalog_b_product_get) ---- */

#define PP_KEYS 48
#define PP_LISTS 16
#define PP_CAP 16384
typedef struct pp_case_s {
    char path[400];
    bool as_admin;
    int status;
    char body[PP_CAP];
} pp_case_t;

typedef struct pp_s {
    th_server_t *s;
    const char *admin; /* a STORE_ADMIN's token of s (each server signs its own) */
    pp_case_t *cases;  /* the clients pick among cases[lo..ncases) */
    size_t lo, ncases;
    _Atomic long ok, bad;
    _Atomic bool stop;
} pp_t;

static void *
pp_main(void *arg)
{
    pp_t *p = arg;
    int fd = ka_open(p->s);
    static _Thread_local char body[PP_CAP];
    unsigned seed = (unsigned)(uintptr_t)&body;
    while (!atomic_load(&p->stop)) {
        const pp_case_t *c = &p->cases[p->lo + rand_r(&seed) % (p->ncases - p->lo)];
        int st = ka_req(fd, store, c->path, c->as_admin ? p->admin : NULL, body, sizeof(body));
        if (st == c->status && strcmp(body, c->body) == 0) {
            atomic_fetch_add(&p->ok, 1);
        } else {
            if (atomic_fetch_add(&p->bad, 1) < 3)
                fprintf(stderr, "pipelined page %s (admin %d): %d %.200s, want %d %.200s\n",
                        c->path, (int)c->as_admin, st, body, c->status, c->body);
        }
    }
    close(fd);
    return NULL;
}

/* Runs 12 clients on p's cases for rounds x 250 ms, a catalog write that changes
 * no page after each round (the public pages miss again). */
static void
pp_run(pp_t *p, int rounds)
{
    atomic_store(&p->stop, false);
    pthread_t th[12];
    for (int i = 0; i < 12; i++)
        assert_int_equal(pthread_create(&th[i], NULL, pp_main, p), 0);
    for (int round = 0; round < rounds; round++) {
        usleep(250000);
        char body[96];
        snprintf(body, sizeof(body), "{\"name\":\"PP Category %d-%d\"}", (int)p->lo, round);
        th_resp_t r = th_store_req(p->s, store, p->admin, "POST", "/api/v1/categories", body);
        assert_int_equal(r.status, 201);
        th_resp_free(&r);
    }
    atomic_store(&p->stop, true);
    for (int i = 0; i < 12; i++)
        pthread_join(th[i], NULL);
}

/* The product pages and list pages of a read lane's turn are read in pipelines.
 * With one worker (one read lane per store) and 12 keep-alive clients, turns hold
 * many pages: ids and slugs, lists with every kind of query (a category, sorts,
 * pages, a cursor, a search, expanded variants, drafts, refusals), the store
 * admin's view and the public one (misses, hits and, after each catalog write,
 * pages built while the store's version moves), a draft only the admin sees,
 * another store's product and keys that name nothing. Every answer must be the
 * one the same request gets alone, byte for byte. */
static void
test_pipelined_pages(void **state)
{
    (void)state;
    const char *env[] = {"SHOPD_WORKERS=1", NULL};
    th_server_t *s = th_start(env);
    char sid[24];
    snprintf(sid, sizeof(sid), "%ld", store);
    const char *p1[] = {sid, NULL};
    th_sql("INSERT INTO products (store_id, name, slug, base_price, status)"
           " VALUES ($1::bigint, 'Hidden Draft', 'hidden-draft-pp', 500, 'draft')"
           " ON CONFLICT DO NOTHING",
           p1);
    long draft = atol(th_sql(
        "SELECT id FROM products WHERE store_id = $1::bigint AND slug = 'hidden-draft-pp'", p1));
    char *s_admin = th_token(s, "STORE_ADMIN", store);
    long other = th_create_store(s, th_slug("ppother"), NULL);
    char *o_admin = th_token(s, "STORE_ADMIN", other);
    th_resp_t r = th_store_req(s, other, o_admin, "POST", "/api/v1/products",
                               "{\"name\":\"Not Yours\",\"base_price\":99,\"status\":\"active\"}");
    assert_int_equal(r.status, 201);
    long foreign = (long)json_integer_value(json_object_get(r.json, "id"));
    th_resp_free(&r);
    free(o_admin);
    r = th_store_req(s, store, s_admin, "POST", "/api/v1/categories", "{\"name\":\"PP Tees\"}");
    assert_int_equal(r.status, 201);
    long cat = (long)json_integer_value(json_object_get(r.json, "id"));
    th_resp_free(&r);
    char cats[24];
    snprintf(cats, sizeof(cats), "%ld", cat);
    const char *p2[] = {sid, cats, NULL};
    th_sql("UPDATE products SET category_id = $2::bigint WHERE store_id = $1::bigint"
           " AND slug IN ('organic-cotton-tee-3', 'organic-cotton-tee-4', 'organic-cotton-tee-9')",
           p2);
    /* The rows changed under the catalog: a write bumps the store's version. */
    r = th_store_req(s, store, s_admin, "POST", "/api/v1/categories", "{\"name\":\"PP Bump\"}");
    assert_int_equal(r.status, 201);
    th_resp_free(&r);
    r = get(s, "/api/v1/products?limit=3&sort=price", NULL, NULL);
    assert_int_equal(r.status, 200);
    char cursor[256];
    snprintf(cursor, sizeof(cursor), "%s",
             json_string_value(json_object_get(r.json, "next_cursor")));
    th_resp_free(&r);

    pp_case_t *cases = calloc(2 * (PP_KEYS + PP_LISTS), sizeof(*cases));
    size_t n = 0;
    for (int i = 0; i < PP_KEYS; i++) {
        char key[64];
        if (i < 20)
            snprintf(key, sizeof(key), "%ld", product + i);
        else if (i < 36)
            snprintf(key, sizeof(key), "organic-cotton-tee-%d", i - 19);
        else if (i == 36)
            snprintf(key, sizeof(key), "%ld", draft);
        else if (i == 37)
            snprintf(key, sizeof(key), "hidden-draft-pp");
        else if (i == 38)
            snprintf(key, sizeof(key), "%ld", foreign);
        else if (i == 39)
            snprintf(key, sizeof(key), "999999999999");
        else if (i == 40)
            snprintf(key, sizeof(key), "no-such-product");
        else if (i == 41)
            snprintf(key, sizeof(key), "Bad%%20Slug");
        else
            snprintf(key, sizeof(key), "%ld", product + (i % 20));
        for (int a = 0; a < 2; a++) {
            pp_case_t *c = &cases[n++];
            snprintf(c->path, sizeof(c->path), "/api/v1/products/%s", key);
            c->as_admin = a == 1;
        }
    }
    size_t lists = n;
    for (int i = 0; i < PP_LISTS; i++) {
        char q[128];
        static const char *const qs[] = {
            "limit=5",
            "limit=3&sort=price",
            "limit=3&sort=-name",
            "page=2&limit=4",
            "limit=10&category=%ld",
            "category=999999999",
            "expand=variants&limit=2",
            "status=draft",
            "limit=0",
            "q=tee&limit=3",
            "min_price=2500&max_price=3000",
            "limit=3&sort=price&cursor=%s",
            "sort=name&limit=7&category=%ld",
            "limit=2&sort=-price&page=3",
            "brand=Acme&limit=4",
            "limit=20",
        };
        if (strstr(qs[i], "%ld"))
            snprintf(q, sizeof(q), qs[i], cat);
        else if (strstr(qs[i], "%s"))
            snprintf(q, sizeof(q), qs[i], cursor);
        else
            snprintf(q, sizeof(q), "%s", qs[i]);
        for (int a = 0; a < 2; a++) {
            pp_case_t *c = &cases[n++];
            snprintf(c->path, sizeof(c->path), "/api/v1/products?%s", q);
            c->as_admin = a == 1;
        }
    }
    /* What each request answers alone, on an idle server. */
    int fd = ka_open(s);
    for (size_t i = 0; i < n; i++) {
        cases[i].status = ka_req(fd, store, cases[i].path, cases[i].as_admin ? s_admin : NULL,
                                 cases[i].body, sizeof(cases[i].body));
        assert_true(cases[i].status == 200 || cases[i].status == 403 || cases[i].status == 404 ||
                    cases[i].status == 422);
    }
    close(fd);
    assert_int_equal(cases[2 * 36].status, 404); /* the draft, to the public */
    assert_int_equal(cases[2 * 36 + 1].status, 200);
    assert_int_equal(cases[2 * 38 + 1].status, 404);    /* another store's product */
    assert_int_equal(cases[lists + 2 * 4].status, 200); /* the category's list */
    assert_non_null(strstr(cases[lists + 2 * 4].body, "\"total\":3,"));
    assert_int_equal(cases[lists + 2 * 7].status, 403); /* drafts, to the public */
    assert_int_equal(cases[lists + 2 * 7 + 1].status, 200);
    assert_non_null(strstr(cases[lists + 2 * 7 + 1].body, "hidden-draft-pp"));
    assert_int_equal(cases[lists + 2 * 8].status, 422);
    assert_int_equal(cases[lists + 2 * 11].status, 200); /* the cursor's next page */

    /* Product pages and lists mixed, then lists alone. */
    pp_t pp = {.s = s, .admin = s_admin, .cases = cases, .ncases = n};
    pp_run(&pp, 6);
    long piped = metric(s, "shopd_catalog_pages_pipelined_total");
    assert_true(piped > 0);
    pp.lo = lists;
    pp_run(&pp, 3);
    assert_true(metric(s, "shopd_catalog_pages_pipelined_total") > piped);
    assert_int_equal(atomic_load(&pp.bad), 0);
    assert_true(atomic_load(&pp.ok) > 500);
    assert_int_equal(th_stop(s), 0);
    free(cases);
    free(s_admin);
}

static void
test_lean_names(void **state)
{
    (void)state;
    const char *name = "Tee \"Deluxe\" \\ 2\t\u00e9\u2713";
    json_t *b = json_pack("{s:s, s:i, s:s}", "name", name, "base_price", 777, "status", "active");
    char *body = json_dumps(b, JSON_COMPACT);
    json_decref(b);
    th_resp_t r = admin_req(srv, "POST", "/api/v1/products", body);
    free(body);
    assert_int_equal(r.status, 201);
    th_resp_free(&r);
    r = get(srv, "/api/v1/products?limit=1", NULL, NULL); /* newest first */
    assert_int_equal(r.status, 200);
    json_t *first = json_array_get(json_object_get(r.json, "data"), 0);
    assert_string_equal(json_string_value(json_object_get(first, "name")), name);
    assert_int_equal(json_integer_value(json_object_get(first, "price_min")), 777);
    assert_true(json_is_false(json_object_get(first, "in_stock")));
    assert_int_equal(json_integer_value(json_object_get(first, "variant_count")), 0);
    th_resp_free(&r);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gzip_and_etags),
        cmocka_unit_test(test_io_thread_hits),
        cmocka_unit_test(test_two_processes),
        cmocka_unit_test(test_redis_lost),
        cmocka_unit_test(test_lean_names),
        cmocka_unit_test(test_fair_io_thread),
        cmocka_unit_test(test_flood_lane),
        cmocka_unit_test(test_pipelined_pages),
        TH_STOP_TEST,
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
