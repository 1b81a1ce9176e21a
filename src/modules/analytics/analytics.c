/*
 * analytics.c: the analytics handlers (sales series, top products), the
 * relay's hook that applies a batch's deltas, and the rebuild. Every figure
 * is read from the daily rollups of sql/0011_analytics.sql (what counts and
 * why is written there), so a request costs O(days in the range), never
 * O(orders). Reads run on any worker (API_ANY).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shopd/analytics.h"
#include "shopd/log.h"

/* ---------------------------------------------------------------- dates */

/* Days from 1970-01-01 to y-m-d of the proleptic Gregorian calendar. */
static long
days_from_civil(long y, long m, long d)
{
    y -= m <= 2;
    long era = (y >= 0 ? y : y - 399) / 400;
    long yoe = y - era * 400;
    long doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    long doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

bool
analytics_date_parse(const char *s, long *days)
{
    static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (s == NULL || strlen(s) != 10 || s[4] != '-' || s[7] != '-')
        return false;
    for (int i = 0; i < 10; i++)
        if (i != 4 && i != 7 && (s[i] < '0' || s[i] > '9'))
            return false;
    long y = atol(s), m = atol(s + 5), d = atol(s + 8);
    if (y < 1900 || m < 1 || m > 12 || d < 1)
        return false;
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (d > mdays[m - 1] + (m == 2 && leap))
        return false;
    *days = days_from_civil(y, m, d);
    return true;
}

/* ---------------------------------------------------------------- the range */

/* The query's from, to and the handler's own checks. from and to are "" when
 * absent (the statement then takes the last ANALYTICS_DEFAULT_DAYS days of
 * the store's calendar, or today as to). */
typedef struct range_s {
    char from[16], to[16];
} range_t;

static bool
range_read(api_ctx_t *ctx, api_val_t *v, range_t *rg)
{
    char fb[32], tb[32];
    const char *f = api_query_param(ctx->env, "from", fb, sizeof(fb));
    const char *t = api_query_param(ctx->env, "to", tb, sizeof(tb));
    long fd = 0, td = 0;
    bool fok = f && analytics_date_parse(f, &fd), tok = t && analytics_date_parse(t, &td);
    rg->from[0] = rg->to[0] = '\0';
    if (f && !fok)
        api_val_add(v, "from", "must be a date YYYY-MM-DD");
    else if (f)
        snprintf(rg->from, sizeof(rg->from), "%s", f);
    if (t && !tok)
        api_val_add(v, "to", "must be a date YYYY-MM-DD");
    else if (t)
        snprintf(rg->to, sizeof(rg->to), "%s", t);
    return v->n == 0;
}

/* A defaulted bound is only known in the statement (today in the store's
 * time zone), so the order and span checks are made there and reported in
 * the first column: ok, order (from after to) or span (too long). */
static net_reply_t *
range_fail(const char *state)
{
    api_val_t v = {0};
    if (strcmp(state, "order") == 0)
        api_val_add(&v, "from", "must not be after to");
    else
        api_val_add(&v, "to", "the range is at most 1098 days (three years)");
    return api_val_reply(&v);
}

/* The store's currency and time zone, and the range: the CTE "ok" with
 * currency, tz, f, t and st (the check's state) ($1 store, $2 from, $3 to,
 * $5 the longest span). */
#define ANALYTICS_RANGE_CTE                                                                        \
    "s AS (SELECT st.currency, analytics_timezone(st.id) AS tz FROM stores st WHERE st.id = "      \
    "$1::bigint), "                                                                                \
    "b AS (SELECT s.currency, s.tz, x.t, coalesce(nullif($2, '')::date, x.t - 29) AS f FROM s, "   \
    "LATERAL (SELECT coalesce(nullif($3, '')::date, (now() AT TIME ZONE s.tz)::date) AS t) x), "   \
    "ok AS (SELECT b.*, CASE WHEN b.f > b.t THEN 'order' WHEN b.t - b.f + 1 > $5::int THEN "       \
    "'span' ELSE 'ok' END AS st FROM b) "

/* The figures of a period (or the totals) as JSON, from sums o, rv, it, rf, rd. */
#define ANALYTICS_FIGURES(p)                                                                       \
    "'orders', " p "o, 'revenue', " p "rv, 'items', " p "it, 'average_order_value', CASE WHEN " p  \
    "o > 0 THEN round(" p "rv / " p "o)::bigint ELSE 0 END, 'refunds', " p "rf, 'refunded', " p    \
    "rd"

static net_reply_t *
answer(api_ctx_t *ctx, PGresult *r, const char *what)
{
    net_reply_t *reply;
    if (db_result_rc(r) != SHOPD_OK)
        reply = api_db_error(ctx, r, what);
    else if (PQntuples(r) != 1)
        reply = api_fail(SHOPD_NOTFOUND, "store_not_found", "no such store");
    else if (strcmp(PQgetvalue(r, 0, 0), "ok") != 0)
        reply = range_fail(PQgetvalue(r, 0, 0));
    else
        reply = api_raw_json(SHOPD_OK, PQgetvalue(r, 0, 1), (size_t)PQgetlength(r, 0, 1));
    PQclear(r);
    return reply;
}

/* ---------------------------------------------------------------- sales */

net_reply_t *
analytics_h_sales(api_ctx_t *ctx)
{
    api_val_t v = {0};
    range_t rg;
    char ib[16];
    range_read(ctx, &v, &rg);
    const char *iv = api_query_param(ctx->env, "interval", ib, sizeof(ib));
    if (iv == NULL)
        iv = "day";
    else if (strcmp(iv, "day") && strcmp(iv, "week") && strcmp(iv, "month"))
        api_val_add(&v, "interval", "must be day, week or month");
    if (v.n)
        return api_val_reply(&v);
    char sid[24], maxd[16];
    snprintf(sid, sizeof(sid), "%llu", (unsigned long long)ctx->store_id);
    snprintf(maxd, sizeof(maxd), "%d", ANALYTICS_MAX_DAYS);
    const char *p[] = {sid, rg.from, rg.to, iv, maxd};
    db_conn_t *c = db_acquire(ctx->app->db, 2000);
    if (c == NULL)
        return api_unavailable("the database");
    /* Every period of the range, zeros where nothing sold; a period is named by
     * its first day (weeks start on Monday), which may be before from: its
     * figures still count only the days from..to. */
    PGresult *r = db_exec(
        c, "analytics_sales",
        "WITH " ANALYTICS_RANGE_CTE ", "
        "pr AS (SELECT g::date AS period FROM ok, generate_series(date_trunc($4, ok.f::timestamp), "
        "ok.t::timestamp, ('1 ' || $4)::interval) g WHERE ok.st = 'ok'), "
        "ro AS (SELECT date_trunc($4, a.day::timestamp)::date AS period, sum(a.orders) o, "
        "sum(a.revenue) rv, sum(a.items) it, sum(a.refunds) rf, sum(a.refunded) rd FROM "
        "analytics_sales_daily a, ok WHERE ok.st = 'ok' AND a.store_id = $1::bigint AND "
        "a.currency = ok.currency AND a.day BETWEEN ok.f AND ok.t GROUP BY 1), "
        "d AS (SELECT pr.period, coalesce(ro.o, 0) o, coalesce(ro.rv, 0) rv, coalesce(ro.it, 0) "
        "it, coalesce(ro.rf, 0) rf, coalesce(ro.rd, 0) rd FROM pr LEFT JOIN ro USING (period)) "
        "SELECT ok.st, json_build_object('currency', ok.currency, 'timezone', ok.tz, 'interval', "
        "$4, 'from', ok.f, 'to', ok.t, 'totals', (SELECT json_build_object(" ANALYTICS_FIGURES(
            "t.") ") FROM (SELECT coalesce(sum(o), 0) o, coalesce(sum(rv), 0) rv, "
                  "coalesce(sum(it), 0) it, coalesce(sum(rf), 0) rf, coalesce(sum(rd), 0) rd "
                  "FROM d) t), 'data', (SELECT coalesce(json_agg(json_build_object('period', "
                  "d.period, " ANALYTICS_FIGURES("d.") ") ORDER BY d.period), '[]') FROM d)) "
                                                       "FROM ok",
        5, p);
    db_release(c);
    return answer(ctx, r, "analytics sales");
}

/* ---------------------------------------------------------------- top products */

net_reply_t *
analytics_h_top_products(api_ctx_t *ctx)
{
    api_val_t v = {0};
    range_t rg;
    char lb[16], bb[16];
    range_read(ctx, &v, &rg);
    const char *li = api_query_param(ctx->env, "limit", lb, sizeof(lb));
    const char *by = api_query_param(ctx->env, "by", bb, sizeof(bb));
    long limit = ANALYTICS_TOP_DEFAULT;
    if (li) {
        char *end;
        limit = strtol(li, &end, 10);
        if (*end || end == li || limit < 1 || limit > ANALYTICS_TOP_MAX)
            api_val_add(&v, "limit", "must be from 1 to 100");
    }
    if (by == NULL)
        by = "revenue";
    else if (strcmp(by, "revenue") && strcmp(by, "units"))
        api_val_add(&v, "by", "must be revenue or units");
    if (v.n)
        return api_val_reply(&v);
    char sid[24], maxd[16], lim[16];
    snprintf(sid, sizeof(sid), "%llu", (unsigned long long)ctx->store_id);
    snprintf(maxd, sizeof(maxd), "%d", ANALYTICS_MAX_DAYS);
    snprintf(lim, sizeof(lim), "%ld", limit);
    const char *p[] = {sid, rg.from, rg.to, by, maxd, lim};
    db_conn_t *c = db_acquire(ctx->app->db, 2000);
    if (c == NULL)
        return api_unavailable("the database");
    /* Per product over its variants; a product whose orders were all cancelled
     * (units back to 0) is not a best seller. The name is the product's today,
     * or one it was sold under if it was deleted (max: one hashed pass, no
     * sort per product). The cost is the rollup rows in range: days times the
     * variants sold each day. */
    PGresult *r = db_exec(
        c, "analytics_top",
        "WITH " ANALYTICS_RANGE_CTE ", "
        "t AS (SELECT a.product_id, sum(a.units) units, sum(a.revenue) revenue, "
        "max(a.name) AS sold_name, row_number() OVER (ORDER BY "
        "CASE WHEN $4 = 'units' THEN sum(a.units) ELSE sum(a.revenue) END DESC, CASE WHEN $4 = "
        "'units' THEN sum(a.revenue) ELSE sum(a.units) END DESC, a.product_id) AS rank FROM "
        "analytics_product_daily a, ok WHERE ok.st = 'ok' AND a.store_id = $1::bigint AND "
        "a.currency = ok.currency AND a.day BETWEEN ok.f AND ok.t GROUP BY a.product_id HAVING "
        "sum(a.units) > 0 ORDER BY rank LIMIT $6::int) "
        "SELECT ok.st, json_build_object('currency', ok.currency, 'timezone', ok.tz, 'from', "
        "ok.f, 'to', ok.t, 'by', $4, 'data', (SELECT coalesce(json_agg(json_build_object("
        "'product_id', t.product_id, 'name', coalesce(pd.name, t.sold_name), 'units', t.units, "
        "'revenue', t.revenue) ORDER BY t.rank), '[]') FROM t LEFT JOIN products pd ON "
        "pd.store_id = $1::bigint AND pd.id = t.product_id)) FROM ok",
        6, p);
    db_release(c);
    return answer(ctx, r, "analytics top products");
}

/* ---------------------------------------------------------------- upkeep */

shopd_rc_t
analytics_relay_apply(db_conn_t *c, const char *sids, const char *ids)
{
    const char *p[] = {sids, ids};
    PGresult *r =
        db_exec(c, "analytics_apply", "SELECT analytics_apply($1::bigint[], $2::bigint[])", 2, p);
    shopd_rc_t rc = db_result_rc(r);
    PQclear(r);
    return rc;
}

typedef struct rebuild_s {
    const char *store; /* "" for every store */
    size_t n;
} rebuild_t;

static shopd_rc_t
rebuild_body(db_conn_t *c, void *arg)
{
    rebuild_t *rb = arg;
    const char *p[] = {rb->store};
    /* In id order, so two rebuilds of every store take the stores' locks in
     * one order. */
    PGresult *r = db_exec(c, "analytics_rebuild",
                          "SELECT count(analytics_rebuild(id)) FROM (SELECT id FROM stores WHERE "
                          "$1 = '' OR id = nullif($1, '')::bigint ORDER BY id) s",
                          1, p);
    shopd_rc_t rc = db_result_rc(r);
    rb->n = rc == SHOPD_OK ? strtoull(PQgetvalue(r, 0, 0), NULL, 10) : 0;
    PQclear(r);
    return rc;
}

shopd_rc_t
analytics_rebuild(db_conn_t *c, uint64_t store_id, size_t *stores)
{
    char sid[24] = "";
    if (store_id)
        snprintf(sid, sizeof(sid), "%llu", (unsigned long long)store_id);
    rebuild_t rb = {.store = sid};
    shopd_rc_t rc = db_tx(c, rebuild_body, &rb);
    *stores = rc == SHOPD_OK ? rb.n : 0;
    return rc;
}

net_reply_t *
analytics_h_rebuild(api_ctx_t *ctx)
{
    db_conn_t *c = db_acquire(ctx->app->db, 2000);
    if (c == NULL)
        return api_unavailable("the database");
    uint64_t t0 = shopd_now_us();
    size_t n = 0;
    shopd_rc_t rc = analytics_rebuild(c, ctx->store_id, &n);
    db_release(c);
    if (rc == SHOPD_UNAVAILABLE)
        return api_unavailable("the database");
    if (rc != SHOPD_OK)
        return api_internal(ctx, "analytics rebuild");
    if (n == 0)
        return api_fail(SHOPD_NOTFOUND, "store_not_found", "no such store");
    return api_json(SHOPD_OK, json_pack("{s:I,s:I}", "stores", (json_int_t)n, "ms",
                                        (json_int_t)((shopd_now_us() - t0) / 1000)));
}
