/*
 * test_analytics.c: the sales figures end to end through the real binary and
 * its jobs relay: checkouts, cancellations and refunds move the daily rollups
 * (once each, through the outbox); orders moved into the past by SQL and a
 * rebuild (shopctl analytics rebuild) put them on their days; the rollups kept
 * incrementally then equal both a rebuild and an aggregate written here
 * straight over orders and refunds. The two routes are checked against those
 * aggregates: day, week and month periods with zeros filled, the store's time
 * zone (23:30 UTC is the next day in Paris), top products by revenue and by
 * units, bad input, other tenants and customers refused.
 */
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "harness.h"

#define ADMIN_TOKEN "analytics-admin-token-0123456789"

static th_server_t *srv;
static char admin_addr[64];

typedef struct shop_s {
    long id;
    th_user_t admin;
    long p1, p2;   /* products */
    long v1a, v1b; /* variants of p1: 1500 and 700 */
    long v2;       /* the variant of p2: 4000 */
    long rate;     /* flat shipping to DE, 490 */
} shop_t;

static th_resp_t
rq(long store, const char *token, const char *cart, const char *method, const char *path,
   const char *body)
{
    char tenant[64], auth[1024], cid[128];
    const char *h[4] = {tenant, NULL, NULL, NULL};
    size_t n = 1;
    snprintf(tenant, sizeof(tenant), "X-Tenant-Id: %ld", store);
    if (token) {
        th_auth_header(auth, sizeof(auth), token);
        h[n++] = auth;
    }
    if (cart) {
        snprintf(cid, sizeof(cid), "X-Cart-Id: %s", cart);
        h[n++] = cid;
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

static long
new_product(shop_t *s, const char *name)
{
    char body[256];
    snprintf(body, sizeof(body), "{\"name\":\"%s\",\"base_price\":1000,\"status\":\"active\"}",
             name);
    th_resp_t r = rq(s->id, s->admin.access, NULL, "POST", "/api/v1/products", body);
    assert_int_equal(r.status, 201);
    long id = jint(r.json, "id");
    th_resp_free(&r);
    return id;
}

static long
new_variant(shop_t *s, long product, long price)
{
    static int seq;
    char body[256], path[96];
    int n = ++seq;
    snprintf(body, sizeof(body), "{\"sku\":\"AN-%d-%d\",\"options\":{\"n\":\"%d\"},\"price\":%ld}",
             getpid(), n, n, price);
    snprintf(path, sizeof(path), "/api/v1/products/%ld/variants", product);
    th_resp_t r = rq(s->id, s->admin.access, NULL, "POST", path, body);
    assert_int_equal(r.status, 201);
    long id = jint(r.json, "id");
    th_resp_free(&r);
    snprintf(path, sizeof(path), "/api/v1/variants/%ld/inventory", id);
    r = rq(s->id, s->admin.access, NULL, "PATCH", path, "{\"adjust\":500,\"reason\":\"initial\"}");
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
    return id;
}

static shop_t
shop_new(const char *prefix)
{
    shop_t s = {0};
    s.id = th_create_store(srv, th_slug(prefix), NULL);
    s.admin = th_user_new(srv, "STORE_ADMIN", s.id);
    s.p1 = new_product(&s, "Shirt");
    s.p2 = new_product(&s, "Jacket");
    s.v1a = new_variant(&s, s.p1, 1500);
    s.v1b = new_variant(&s, s.p1, 700);
    s.v2 = new_variant(&s, s.p2, 4000);
    th_resp_t r = rq(s.id, s.admin.access, NULL, "POST", "/api/v1/admin/shipping-zones",
                     "{\"name\":\"Germany\",\"countries\":[\"DE\"]}");
    assert_int_equal(r.status, 201);
    char path[96];
    snprintf(path, sizeof(path), "/api/v1/admin/shipping-zones/%ld/rates", jint(r.json, "id"));
    th_resp_free(&r);
    r = rq(s.id, s.admin.access, NULL, "POST", path,
           "{\"name\":\"Standard\",\"kind\":\"flat\",\"price\":490}");
    assert_int_equal(r.status, 201);
    s.rate = jint(r.json, "id");
    th_resp_free(&r);
    return s;
}

/* A guest buys qty of variant v without asserting (any thread): the order's
 * id, or 0 when a step failed. */
static long
buy_quiet(shop_t *s, long v, int qty)
{
    char body[512], cart[64];
    long id = 0;
    snprintf(body, sizeof(body), "{\"variant_id\":%ld,\"quantity\":%d}", v, qty);
    th_resp_t r = rq(s->id, NULL, NULL, "POST", "/api/v1/cart/add", body);
    const char *h = th_header(&r, "X-Cart-Id");
    snprintf(cart, sizeof(cart), "%s", h ? h : "");
    bool ok = r.status == 200 && cart[0];
    th_resp_free(&r);
    if (!ok)
        return 0;
    snprintf(body, sizeof(body),
             "{\"email\":\"buyer@example.com\",\"shipping_address\":{\"name\":\"Ada\",\"line1\":"
             "\"Str 1\",\"city\":\"Berlin\",\"postal_code\":\"10115\",\"country\":\"DE\"},"
             "\"shipping_rate_id\":%ld}",
             s->rate);
    r = rq(s->id, NULL, cart, "POST", "/api/v1/checkout", body);
    if (r.status == 201)
        id = jint(r.json, "id");
    th_resp_free(&r);
    return id;
}

/* A guest buys qa of variant a and qb of variant b (b 0: none); the order's id. */
static long
buy(shop_t *s, long a, int qa, long b, int qb)
{
    char body[512];
    snprintf(body, sizeof(body), "{\"variant_id\":%ld,\"quantity\":%d}", a, qa);
    th_resp_t r = rq(s->id, NULL, NULL, "POST", "/api/v1/cart/add", body);
    assert_int_equal(r.status, 200);
    char cart[64];
    snprintf(cart, sizeof(cart), "%s", th_header(&r, "X-Cart-Id"));
    th_resp_free(&r);
    if (b) {
        snprintf(body, sizeof(body), "{\"variant_id\":%ld,\"quantity\":%d}", b, qb);
        r = rq(s->id, NULL, cart, "POST", "/api/v1/cart/add", body);
        assert_int_equal(r.status, 200);
        th_resp_free(&r);
    }
    snprintf(body, sizeof(body),
             "{\"email\":\"buyer@example.com\",\"shipping_address\":{\"name\":\"Ada\",\"line1\":"
             "\"Str 1\",\"city\":\"Berlin\",\"postal_code\":\"10115\",\"country\":\"DE\"},"
             "\"shipping_rate_id\":%ld}",
             s->rate);
    r = rq(s->id, NULL, cart, "POST", "/api/v1/checkout", body);
    assert_int_equal(r.status, 201);
    assert_string_equal(jstr(r.json, "status"), "PAID");
    long id = jint(r.json, "id");
    th_resp_free(&r);
    return id;
}

static void
cancel(shop_t *s, long order)
{
    char path[96];
    /* A paid order: the admin's transition (the /cancel route is for pending
     * ones); the test provider refunds it at once. */
    snprintf(path, sizeof(path), "/api/v1/orders/%ld/transitions", order);
    th_resp_t r = rq(s->id, s->admin.access, NULL, "POST", path, "{\"to\":\"CANCELLED\"}");
    assert_int_equal(r.status, 200);
    assert_string_equal(jstr(r.json, "status"), "CANCELLED");
    th_resp_free(&r);
}

static void
refund(shop_t *s, long order, long amount)
{
    char path[96], body[64];
    snprintf(path, sizeof(path), "/api/v1/orders/%ld/refunds", order);
    snprintf(body, sizeof(body), "{\"amount\":%ld}", amount);
    th_resp_t r = rq(s->id, s->admin.access, NULL, "POST", path, body);
    assert_int_equal(r.status, 201);
    assert_string_equal(jstr(r.json, "status"), "succeeded");
    th_resp_free(&r);
}

/* Moves an order's placement to a moment in the past (the rollups keep the
 * old day until a rebuild). */
static void
backdate(shop_t *s, long order, const char *ts)
{
    char sid[24], oid[24];
    snprintf(sid, sizeof(sid), "%ld", s->id);
    snprintf(oid, sizeof(oid), "%ld", order);
    const char *p[] = {sid, oid, ts, NULL};
    th_sql("UPDATE orders SET created_at = $3::timestamptz WHERE store_id = $1::bigint AND id = "
           "$2::bigint",
           p);
}

static bool
relayed(void *arg)
{
    char sid[24];
    snprintf(sid, sizeof(sid), "%ld", *(long *)arg);
    const char *p[] = {sid, NULL};
    return strcmp(th_sql("SELECT count(*) FROM outbox WHERE store_id = $1::bigint AND relayed_at "
                         "IS NULL",
                         p),
                  "0") == 0;
}

/* Waits until the relay took every outbox row of the store (the rollups move
 * in the transaction that marks them). */
static void
wait_relayed(shop_t *s)
{
    assert_true(th_wait_until(relayed, &s->id, 15000));
}

/* The store's rollups as text, rows that sum to nothing left out. */
static char *
rollups(long store)
{
    char sid[24];
    snprintf(sid, sizeof(sid), "%ld", store);
    const char *p[] = {sid, NULL};
    const char *a = th_sql(
        "SELECT coalesce(string_agg(format('%s|%s|%s|%s|%s|%s|%s', currency, day, orders, revenue, "
        "items, refunds, refunded), ',' ORDER BY currency, day), '') FROM analytics_sales_daily "
        "WHERE store_id = $1::bigint AND (orders, revenue, items, refunds, refunded) <> (0, 0, 0, "
        "0, 0)",
        p);
    char *s1 = strdup(a);
    const char *b = th_sql(
        "SELECT coalesce(string_agg(format('%s|%s|%s|%s|%s', day, product_id, variant_id, units, "
        "revenue), ',' ORDER BY day, product_id, variant_id), '') FROM analytics_product_daily "
        "WHERE store_id = $1::bigint AND (units, revenue) <> (0, 0)",
        p);
    size_t n = strlen(s1) + strlen(b) + 4;
    char *out = malloc(n);
    snprintf(out, n, "%s / %s", s1, b);
    free(s1);
    return out;
}

/* The same figures aggregated here straight from orders, items and refunds:
 * orders not cancelled on their placement day, succeeded refunds on theirs,
 * in the store's time zone. */
static char *
truth(long store)
{
    char sid[24];
    snprintf(sid, sizeof(sid), "%ld", store);
    const char *p[] = {sid, NULL};
    const char *a = th_sql(
        "WITH z AS (SELECT coalesce(settings->>'timezone', 'UTC') tz FROM stores WHERE id = "
        "$1::bigint), t AS (SELECT o.currency c, (o.created_at AT TIME ZONE z.tz)::date d, 1 n, "
        "o.total rv, o.item_count it, 0 rf, 0 rd FROM orders o, z WHERE o.store_id = $1::bigint "
        "AND o.status <> 'CANCELLED' UNION ALL SELECT o.currency, (r.succeeded_at AT TIME ZONE "
        "z.tz)::date, 0, 0, 0, 1, r.amount FROM refunds r JOIN orders o ON o.store_id = "
        "r.store_id AND o.id = r.order_id, z WHERE r.store_id = $1::bigint AND r.status = "
        "'succeeded') SELECT coalesce(string_agg(format('%s|%s|%s|%s|%s|%s|%s', c, d, n, rv, it, "
        "rf, rd), ',' ORDER BY c, d), '') FROM (SELECT c, d, sum(n) n, sum(rv) rv, sum(it) it, "
        "sum(rf) rf, sum(rd) rd FROM t GROUP BY 1, 2) g",
        p);
    char *s1 = strdup(a);
    const char *b = th_sql(
        "WITH z AS (SELECT coalesce(settings->>'timezone', 'UTC') tz FROM stores WHERE id = "
        "$1::bigint) SELECT coalesce(string_agg(format('%s|%s|%s|%s|%s', d, product_id, "
        "variant_id, u, rv), ',' ORDER BY d, product_id, variant_id), '') FROM (SELECT "
        "(o.created_at AT TIME ZONE z.tz)::date d, i.product_id, i.variant_id, sum(i.quantity) u, "
        "sum(i.line_total) rv FROM orders o JOIN order_items i ON i.store_id = o.store_id AND "
        "i.order_id = o.id, z WHERE o.store_id = $1::bigint AND o.status <> 'CANCELLED' GROUP BY "
        "1, 2, 3) g",
        p);
    size_t n = strlen(s1) + strlen(b) + 4;
    char *out = malloc(n);
    snprintf(out, n, "%s / %s", s1, b);
    free(s1);
    return out;
}

static void
assert_rollups_true(long store)
{
    char *a = rollups(store), *b = truth(store);
    assert_string_equal(a, b);
    free(a);
    free(b);
}

/* Runs shopctl with args; its exit status, stdout in out. */
static int
shopctl(const char *args, char *out, size_t outn)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "SHOPD_ADMIN_TOKEN='%s' SHOPCTL_ADDR=%s '%s' %s 2>&1", ADMIN_TOKEN,
             admin_addr, th_env("SHOPCTL_BIN"), args);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t n = fread(out, 1, outn - 1, p);
    out[n] = '\0';
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static th_resp_t
sales(shop_t *s, const char *query)
{
    char path[256];
    snprintf(path, sizeof(path), "/api/v1/admin/analytics/sales%s%s", query ? "?" : "",
             query ? query : "");
    return rq(s->id, s->admin.access, NULL, "GET", path, NULL);
}

/* The data entry of period p (NULL if none). */
static json_t *
period(const th_resp_t *r, const char *p)
{
    json_t *d = json_object_get(r->json, "data"), *e;
    size_t i;
    json_array_foreach(d, i, e) if (strcmp(jstr(e, "period"), p) == 0) return e;
    return NULL;
}

/* One figure by SQL ($1: the store). */
static long
sql_long(const char *sql, long store)
{
    char sid[24];
    snprintf(sid, sizeof(sid), "%ld", store);
    const char *p[] = {sid, NULL};
    return atol(th_sql(sql, p));
}

/* ------------------------------------------------------------ tests */

/* Checkouts, backdating and a rebuild, then cancels and refunds kept
 * incrementally: the rollups equal the orders, a rebuild changes nothing, and
 * the routes answer what SQL says. */
static void
test_rollups_and_sales(void **state)
{
    (void)state;
    shop_t s = shop_new("an");
    long o1 = buy(&s, s.v1a, 2, s.v2, 1); /* 3000 + 4000 */
    long o2 = buy(&s, s.v1b, 3, 0, 0);    /* 2100 */
    long o3 = buy(&s, s.v2, 1, s.v1a, 1); /* 4000 + 1500 */
    long o4 = buy(&s, s.v1a, 1, 0, 0);    /* 1500, stays today */
    wait_relayed(&s);
    assert_rollups_true(s.id);

    /* Into the past by SQL: the rollups still say today until a rebuild. */
    backdate(&s, o1, "2026-11-02 10:00:00+00");
    backdate(&s, o2, "2026-11-03 10:00:00+00");
    backdate(&s, o3, "2026-10-30 12:00:00+00");
    char *a = rollups(s.id), *b = truth(s.id);
    assert_string_not_equal(a, b);
    free(a);
    free(b);
    char out[8192], args[128];
    snprintf(args, sizeof(args), "--json analytics rebuild --store %ld", s.id);
    assert_int_equal(shopctl(args, out, sizeof(out)), 0);
    assert_non_null(strstr(out, "\"stores\": 1"));
    assert_rollups_true(s.id);

    /* Kept incrementally from here: a paid order cancelled (it leaves its day
     * in the past and its automatic refund counts today), a partial refund,
     * and an order placed and cancelled today. */
    cancel(&s, o2);
    refund(&s, o1, 500);
    long o5 = buy(&s, s.v2, 2, 0, 0);
    cancel(&s, o5);
    wait_relayed(&s);
    assert_rollups_true(s.id);
    /* A rebuild of every store finds the same. */
    char *before = rollups(s.id);
    assert_int_equal(shopctl("analytics rebuild", out, sizeof(out)), 0);
    char *after = rollups(s.id);
    assert_string_equal(before, after);
    free(before);
    free(after);
    /* Unknown store: an error answer, exit 1. */
    assert_int_equal(shopctl("analytics rebuild --store 99999999", out, sizeof(out)), 1);
    assert_non_null(strstr(out, "store_not_found"));

    /* Days: 2026-10-26 .. today, every day present. */
    th_resp_t r = sales(&s, "from=2026-10-26&to=2026-11-08&interval=day");
    assert_int_equal(r.status, 200);
    assert_string_equal(jstr(r.json, "currency"), "USD");
    assert_string_equal(jstr(r.json, "timezone"), "UTC");
    assert_string_equal(jstr(r.json, "interval"), "day");
    assert_string_equal(jstr(r.json, "from"), "2026-10-26");
    assert_string_equal(jstr(r.json, "to"), "2026-11-08");
    assert_int_equal(json_array_size(json_object_get(r.json, "data")), 14);
    json_t *e = period(&r, "2026-10-30");
    assert_non_null(e);
    assert_int_equal(jint(e, "orders"), 1);
    assert_int_equal(jint(e, "items"), 2);
    char sql[512];
    snprintf(sql, sizeof(sql), "SELECT total FROM orders WHERE store_id = $1::bigint AND id = %ld",
             o3);
    long t3 = sql_long(sql, s.id);
    assert_int_equal(jint(e, "revenue"), t3);
    assert_int_equal(jint(e, "average_order_value"), t3);
    e = period(&r, "2026-11-03"); /* o2, cancelled: gone from its day */
    assert_int_equal(jint(e, "orders"), 0);
    assert_int_equal(jint(e, "revenue"), 0);
    e = period(&r, "2026-10-31"); /* a day without orders: zeros */
    assert_non_null(e);
    assert_int_equal(jint(e, "orders"), 0);
    assert_int_equal(jint(e, "average_order_value"), 0);
    json_t *tot = json_object_get(r.json, "totals");
    long want = sql_long("SELECT coalesce(sum(total), 0) FROM orders WHERE store_id = $1::bigint "
                         "AND status <> 'CANCELLED' AND (created_at AT TIME ZONE 'UTC')::date "
                         "BETWEEN '2026-10-26' AND '2026-11-08'",
                         s.id);
    assert_int_equal(jint(tot, "revenue"), want);
    assert_int_equal(jint(tot, "orders"), 2);  /* o1 and o3 */
    assert_int_equal(jint(tot, "refunds"), 0); /* the refunds happened today */
    th_resp_free(&r);

    /* Weeks (Monday first): 10-26 has o3, 11-02 has o1 (o2 cancelled). */
    r = sales(&s, "from=2026-10-28&to=2026-11-22&interval=week");
    assert_int_equal(r.status, 200);
    assert_int_equal(json_array_size(json_object_get(r.json, "data")), 4);
    assert_int_equal(jint(period(&r, "2026-10-26"), "orders"), 1);
    assert_int_equal(jint(period(&r, "2026-11-02"), "orders"), 1);
    assert_int_equal(jint(period(&r, "2026-11-09"), "orders"), 0);
    assert_int_equal(jint(period(&r, "2026-11-16"), "orders"), 0);
    th_resp_free(&r);

    /* Months up to today: the refunds (o2's and o5's automatic ones, o1's 500)
     * all today. */
    r = sales(&s, "from=2026-10-01&interval=month");
    assert_int_equal(r.status, 200);
    const char *to = jstr(r.json, "to");
    char today_month[16];
    snprintf(today_month, sizeof(today_month), "%.7s-01", to);
    assert_int_equal(jint(period(&r, "2026-10-01"), "orders"), 1);
    tot = json_object_get(r.json, "totals");
    assert_int_equal(jint(tot, "orders"), 3); /* o1, o3, o4 */
    assert_int_equal(jint(tot, "refunds"), 3);
    long refunded = sql_long("SELECT sum(amount) FROM refunds WHERE store_id = $1::bigint AND "
                             "status = 'succeeded'",
                             s.id);
    assert_int_equal(jint(tot, "refunded"), refunded);
    assert_int_equal(jint(period(&r, today_month), "refunds"), 3);
    long rev = sql_long("SELECT sum(total) FROM orders WHERE store_id = $1::bigint AND status <> "
                        "'CANCELLED'",
                        s.id);
    assert_int_equal(jint(tot, "revenue"), rev);
    assert_int_equal(jint(tot, "average_order_value"), (2 * rev + 3) / 6); /* round(rev / 3) */
    th_resp_free(&r);

    /* The default: the last 30 days up to today. */
    r = sales(&s, NULL);
    assert_int_equal(r.status, 200);
    assert_int_equal(json_array_size(json_object_get(r.json, "data")), 30);
    assert_int_equal(jint(json_object_get(r.json, "totals"), "orders"),
                     sql_long("SELECT count(*) FROM orders WHERE store_id = $1::bigint AND status "
                              "<> 'CANCELLED' AND (created_at AT TIME ZONE 'UTC')::date >= "
                              "(now() AT TIME ZONE 'UTC')::date - 29",
                              s.id));
    th_resp_free(&r);

    /* Top products over everything: p2 sold 1 (o1) + 1 (o3) = 8000 (o5
     * cancelled); p1 sold 2 + 1 + 1 = 4 units, 6000 (o2 cancelled). */
    r = rq(s.id, s.admin.access, NULL, "GET",
           "/api/v1/admin/analytics/top-products?from=2026-10-01", NULL);
    assert_int_equal(r.status, 200);
    json_t *d = json_object_get(r.json, "data");
    assert_int_equal(json_array_size(d), 2);
    assert_int_equal(jint(json_array_get(d, 0), "product_id"), s.p2);
    assert_string_equal(jstr(json_array_get(d, 0), "name"), "Jacket");
    assert_int_equal(jint(json_array_get(d, 0), "units"), 2);
    assert_int_equal(jint(json_array_get(d, 0), "revenue"), 8000);
    assert_int_equal(jint(json_array_get(d, 1), "product_id"), s.p1);
    assert_int_equal(jint(json_array_get(d, 1), "units"), 4);
    assert_int_equal(jint(json_array_get(d, 1), "revenue"), 6000);
    th_resp_free(&r);
    r = rq(s.id, s.admin.access, NULL, "GET",
           "/api/v1/admin/analytics/top-products?from=2026-10-01&by=units&limit=1", NULL);
    assert_int_equal(r.status, 200);
    d = json_object_get(r.json, "data");
    assert_int_equal(json_array_size(d), 1);
    assert_int_equal(jint(json_array_get(d, 0), "product_id"), s.p1);
    th_resp_free(&r);
    /* A range with only o3 (10-30): both products, one each. */
    r = rq(s.id, s.admin.access, NULL, "GET",
           "/api/v1/admin/analytics/top-products?from=2026-10-30&to=2026-10-30", NULL);
    d = json_object_get(r.json, "data");
    assert_int_equal(json_array_size(d), 2);
    assert_int_equal(jint(json_array_get(d, 0), "revenue"), 4000);
    assert_int_equal(jint(json_array_get(d, 1), "revenue"), 1500);
    th_resp_free(&r);
    (void)o4;
    th_user_free(&s.admin);
}

/* The store's time zone draws the days; changing it rebuilds the store. */
static void
test_timezone(void **state)
{
    (void)state;
    shop_t s = shop_new("antz");
    char path[64];
    snprintf(path, sizeof(path), "/api/v1/stores/%ld", s.id);
    th_resp_t r = th_platform(srv, "PATCH", path, "{\"settings\":{\"timezone\":\"Mars/Olympus\"}}");
    assert_int_equal(r.status, 422);
    assert_string_equal(th_error_code(&r), "validation_failed");
    assert_non_null(strstr(r.body, "settings.timezone"));
    th_resp_free(&r);
    r = th_platform(srv, "PATCH", path, "{\"settings\":{\"timezone\":42}}");
    assert_int_equal(r.status, 422);
    assert_non_null(strstr(r.body, "settings.timezone"));
    th_resp_free(&r);
    r = th_platform(srv, "PATCH", path, "{\"settings\":{\"timezone\":\"Europe/Paris\"}}");
    assert_int_equal(r.status, 200);
    th_resp_free(&r);

    long o = buy(&s, s.v2, 1, 0, 0);
    wait_relayed(&s);
    /* 23:30 UTC on the 15th is 00:30 on the 16th in Paris (UTC+1 in November). */
    backdate(&s, o, "2026-11-15 23:30:00+00");
    /* The HTTP twin of the admin op: super admins (and the platform token) only. */
    r = rq(s.id, s.admin.access, NULL, "POST", "/api/v1/admin/analytics/rebuild", NULL);
    assert_int_equal(r.status, 403);
    th_resp_free(&r);
    r = rq(s.id, TH_PLATFORM_TOKEN, NULL, "POST", "/api/v1/admin/analytics/rebuild", NULL);
    assert_int_equal(r.status, 200);
    assert_int_equal(jint(r.json, "stores"), 1);
    th_resp_free(&r);
    assert_rollups_true(s.id);
    r = sales(&s, "from=2026-11-15&to=2026-11-16");
    assert_int_equal(r.status, 200);
    assert_string_equal(jstr(r.json, "timezone"), "Europe/Paris");
    assert_int_equal(jint(period(&r, "2026-11-15"), "orders"), 0);
    assert_int_equal(jint(period(&r, "2026-11-16"), "orders"), 1);
    /* Only this store's figures (store A's orders of other tests are not here). */
    assert_int_equal(jint(json_object_get(r.json, "totals"), "orders"), 1);
    th_resp_free(&r);

    /* Back to UTC: the store is rebuilt in the PATCH, the order is on the 15th. */
    r = th_platform(srv, "PATCH", path, "{\"settings\":{\"timezone\":null}}");
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
    r = sales(&s, "from=2026-11-15&to=2026-11-16");
    assert_string_equal(jstr(r.json, "timezone"), "UTC");
    assert_int_equal(jint(period(&r, "2026-11-15"), "orders"), 1);
    assert_int_equal(jint(period(&r, "2026-11-16"), "orders"), 0);
    th_resp_free(&r);
    assert_rollups_true(s.id);

    /* Cancelled later: it leaves the 15th (the relay, from the order's day). */
    cancel(&s, o);
    wait_relayed(&s);
    assert_rollups_true(s.id);
    r = sales(&s, "from=2026-11-15&to=2026-11-16");
    assert_int_equal(jint(period(&r, "2026-11-15"), "orders"), 0);
    th_resp_free(&r);
    th_user_free(&s.admin);
}

/* Traffic from several threads (checkouts, cancellations) while rebuilds run
 * and a second shopd relaying the same outbox is killed with SIGKILL: once the
 * outbox is drained the rollups still equal the orders, so no delta was lost
 * or applied twice (a rebuild and a relay step never overlap, a rebuild nets
 * out what is in flight, a killed relay's batch rolls back whole). */
typedef struct traffic_s {
    shop_t *shop;
    int orders, failures;
} traffic_t;

static atomic_int traffic_running; /* threads not done yet (seq_cst: a plain flag) */

static void *
traffic(void *arg)
{
    traffic_t *t = arg;
    for (int i = 0; i < 8; i++) {
        long id = buy_quiet(t->shop, i % 2 ? t->shop->v1a : t->shop->v2, 1 + i % 3);
        if (id == 0) {
            t->failures++;
            continue;
        }
        t->orders++;
        if (i % 3 == 2) {
            char path[96];
            snprintf(path, sizeof(path), "/api/v1/orders/%ld/transitions", id);
            th_resp_t r = rq(t->shop->id, t->shop->admin.access, NULL, "POST", path,
                             "{\"to\":\"CANCELLED\"}");
            if (r.status != 200)
                t->failures++;
            th_resp_free(&r);
        }
    }
    atomic_fetch_sub(&traffic_running, 1);
    return NULL;
}

static void
test_concurrent_rebuild_and_crash(void **state)
{
    (void)state;
    shop_t s = shop_new("ancc");
    const char *env2[] = {"SHOPD_JOBS_POLL_MS=10", "SHOPD_OUTBOX_DIR=/tmp/test-analytics-outbox-2",
                          NULL};
    th_server_t *other = th_start(env2);
    enum { NT = 4 };
    pthread_t tid[NT];
    traffic_t t[NT];
    atomic_store(&traffic_running, NT);
    for (int i = 0; i < NT; i++) {
        t[i] = (traffic_t){.shop = &s};
        assert_int_equal(pthread_create(&tid[i], NULL, traffic, &t[i]), 0);
    }
    char sid[24], out[4096], args[96];
    snprintf(sid, sizeof(sid), "%ld", s.id);
    snprintf(args, sizeof(args), "analytics rebuild --store %ld", s.id);
    const char *p[] = {sid, NULL};
    /* Rebuilds for as long as the traffic lasts (at least 4). */
    int rebuilds = 0;
    while (rebuilds < 4 || atomic_load(&traffic_running) > 0) {
        assert_int_equal(shopctl(args, out, sizeof(out)), 0);
        th_sql("SELECT analytics_rebuild($1::bigint)", p);
        if (++rebuilds == 2)
            kill(other->pid, SIGKILL); /* mid-traffic, maybe mid-batch */
    }
    print_message("%d rebuilds during the traffic\n", rebuilds);
    for (int i = 0; i < NT; i++)
        pthread_join(tid[i], NULL);
    assert_int_equal(th_stop(other), 128 + SIGKILL);
    int orders = 0;
    for (int i = 0; i < NT; i++) {
        assert_int_equal(t[i].failures, 0);
        orders += t[i].orders;
    }
    assert_int_equal(orders, NT * 8);
    wait_relayed(&s);
    assert_rollups_true(s.id);
    th_resp_t r = sales(&s, NULL);
    assert_int_equal(jint(json_object_get(r.json, "totals"), "orders"),
                     sql_long("SELECT count(*) FROM orders WHERE store_id = $1::bigint AND status "
                              "<> 'CANCELLED'",
                              s.id));
    th_resp_free(&r);
    th_user_free(&s.admin);
    if (system("rm -rf /tmp/test-analytics-outbox-2") != 0)
        fprintf(stderr, "could not remove the second outbox\n");
}

/* Bad ranges and parameters get 422 with the field; strangers are refused. */
static void
test_bad_input_and_access(void **state)
{
    (void)state;
    long a = th_create_store(srv, th_slug("anx"), NULL);
    long b = th_create_store(srv, th_slug("any"), NULL);
    char *admin_a = th_token(srv, "STORE_ADMIN", a);
    char *admin_b = th_token(srv, "STORE_ADMIN", b);
    char *cust_a = th_token(srv, "CUSTOMER", a);
    static const struct {
        const char *q, *field;
    } bad[] = {
        {"/api/v1/admin/analytics/sales?from=2026-13-01", "from"},
        {"/api/v1/admin/analytics/sales?from=2026-02-29", "from"}, /* not a leap year */
        {"/api/v1/admin/analytics/sales?to=yesterday", "to"},
        {"/api/v1/admin/analytics/sales?from=2026-11-02&to=2026-11-01", "from"},
        {"/api/v1/admin/analytics/sales?from=2020-01-01&to=2026-01-01", "to"},
        {"/api/v1/admin/analytics/sales?from=2000-01-01", "to"}, /* to defaults to today */
        {"/api/v1/admin/analytics/sales?interval=year", "interval"},
        {"/api/v1/admin/analytics/top-products?limit=0", "limit"},
        {"/api/v1/admin/analytics/top-products?limit=101", "limit"},
        {"/api/v1/admin/analytics/top-products?by=price", "by"},
        {"/api/v1/admin/analytics/top-products?from=2026-1-1", "from"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        th_resp_t r = rq(a, admin_a, NULL, "GET", bad[i].q, NULL);
        if (r.status != 422)
            fail_msg("%s: %ld %s", bad[i].q, r.status, r.body);
        assert_string_equal(th_error_code(&r), "validation_failed");
        json_t *det = json_object_get(json_object_get(r.json, "error"), "details");
        assert_string_equal(jstr(json_array_get(det, 0), "field"), bad[i].field);
        th_resp_free(&r);
    }
    /* The longest range is fine: three years. */
    th_resp_t r =
        rq(a, admin_a, NULL, "GET",
           "/api/v1/admin/analytics/sales?from=2024-01-01&to=2026-12-31&interval=month", NULL);
    assert_int_equal(r.status, 200);
    assert_int_equal(json_array_size(json_object_get(r.json, "data")), 36);
    th_resp_free(&r);
    r = rq(a, admin_a, NULL, "GET", "/api/v1/admin/analytics/sales?period=day", NULL);
    assert_int_equal(r.status, 400);
    assert_string_equal(th_error_code(&r), "invalid_query");
    th_resp_free(&r);
    /* An empty store: zeros, every day. */
    r = rq(a, admin_a, NULL, "GET", "/api/v1/admin/analytics/sales?from=2026-11-01&to=2026-11-30",
           NULL);
    assert_int_equal(r.status, 200);
    assert_int_equal(json_array_size(json_object_get(r.json, "data")), 30);
    assert_int_equal(jint(json_object_get(r.json, "totals"), "orders"), 0);
    th_resp_free(&r);
    r = rq(a, admin_a, NULL, "GET", "/api/v1/admin/analytics/top-products", NULL);
    assert_int_equal(r.status, 200);
    assert_int_equal(json_array_size(json_object_get(r.json, "data")), 0);
    th_resp_free(&r);
    /* A customer, another store's admin, nobody. */
    const char *paths[] = {"/api/v1/admin/analytics/sales", "/api/v1/admin/analytics/top-products"};
    for (size_t i = 0; i < 2; i++) {
        r = rq(a, cust_a, NULL, "GET", paths[i], NULL);
        assert_int_equal(r.status, 403);
        th_resp_free(&r);
        r = rq(a, admin_b, NULL, "GET", paths[i], NULL);
        assert_int_equal(r.status, 403);
        th_resp_free(&r);
        r = rq(a, NULL, NULL, "GET", paths[i], NULL);
        assert_int_equal(r.status, 401);
        th_resp_free(&r);
    }
    free(admin_a);
    free(admin_b);
    free(cust_a);
}

static int
setup(void **state)
{
    (void)state;
    static char listen[96], outbox[128];
    snprintf(admin_addr, sizeof(admin_addr), "127.0.0.1:%d", th_free_port());
    snprintf(listen, sizeof(listen), "SHOPD_ADMIN_LISTEN=%s", admin_addr);
    snprintf(outbox, sizeof(outbox), "SHOPD_OUTBOX_DIR=/tmp/test-analytics-outbox-%d", getpid());
    const char *env[] = {listen, "SHOPD_ADMIN_TOKEN=" ADMIN_TOKEN, outbox, "SHOPD_JOBS_POLL_MS=50",
                         NULL};
    srv = th_start(env);
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf /tmp/test-analytics-outbox-%d", getpid());
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove the test outbox\n");
    if (srv == NULL)
        return -1;
    th_stop(srv);
    return 0;
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rollups_and_sales),
        cmocka_unit_test(test_timezone),
        cmocka_unit_test(test_concurrent_rebuild_and_crash),
        cmocka_unit_test(test_bad_input_and_access),
        TH_STOP_TEST,
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
