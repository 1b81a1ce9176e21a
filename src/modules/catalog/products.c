/*
 * products.c: products: the list (filters, sorts, keyset cursor or page, total
 * count; each product with its variants and category), one product by id or
 * slug, and create/update/delete. The public sees active products only; store
 * admins see every status.
 *
 * The list SQL is built here (catalog_list_sql) with only the filters asked
 * for, the status test as a literal so the partial "active" indexes apply, and
 * the page selected in a subquery before the per-product JSON is rendered.
 * Price filters and sorts use the product's base price.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catalog_priv.h"

/* ------------------------------------------------------------ list SQL */

static int
addp(catalog_sql_t *s, const char *v)
{
    s->params[s->nparams] = v;
    return ++s->nparams;
}

static int
addnum(catalog_sql_t *s, long long v)
{
    snprintf(s->buf[s->nparams], sizeof(s->buf[0]), "%lld", v);
    return addp(s, s->buf[s->nparams]);
}

const char catalog_descendants_sql[] =
    "WITH RECURSIVE sub AS (SELECT id, 1 AS d FROM categories WHERE store_id = $1::bigint AND id = "
    "$2::bigint"
    " UNION ALL SELECT k.id, sub.d + 1 FROM categories k JOIN sub ON k.store_id = $1::bigint"
    " AND k.parent_id = sub.id WHERE sub.d < 64)"
    " SELECT coalesce(array_agg(id), '{}')::text FROM sub";

/* One of the three status words, as a literal from this file (never the input). */
static const char *
w_status(const char *st)
{
    return !strcmp(st, "draft") ? "draft" : !strcmp(st, "archived") ? "archived" : "active";
}

void
catalog_list_sql(const catalog_filter_t *f, catalog_sql_t *s)
{
    memset(s, 0, sizeof(*s));
    api_buf_t w = {0}, with = {0};
    addnum(s, (long long)f->store_id);
    api_buf_printf(&w, "p.store_id = $1::bigint");
    if (!f->admin)
        api_buf_printf(&w, " AND p.status = 'active'");
    else if (f->status) /* one of three validated words: inlined so partial indexes match */
        api_buf_printf(&w, " AND p.status = '%s'", w_status(f->status));
    if (f->category_ids)
        api_buf_printf(&w, " AND p.category_id = ANY ($%d::bigint[])", addp(s, f->category_ids));
    if (f->min_price >= 0)
        api_buf_printf(&w, " AND p.base_price >= $%d::bigint", addnum(s, f->min_price));
    if (f->max_price >= 0)
        api_buf_printf(&w, " AND p.base_price <= $%d::bigint", addnum(s, f->max_price));
    if (f->brand)
        api_buf_printf(&w, " AND p.brand = $%d", addp(s, f->brand));
    if (f->q) {
        size_t n = strlen(f->q);
        s->pattern = shopd_malloc(2 * n + 3);
        size_t o = 0;
        s->pattern[o++] = '%';
        for (size_t i = 0; i < n; i++) {
            if (f->q[i] == '%' || f->q[i] == '_' || f->q[i] == '\\')
                s->pattern[o++] = '\\';
            s->pattern[o++] = f->q[i];
        }
        s->pattern[o++] = '%';
        s->pattern[o] = '\0';
        int k = addp(s, s->pattern);
        /* The matches are computed first, through the trigram indexes, then joined:
         * left to itself the planner may walk a sort index filtering every row with
         * ILIKE, hoping to fill the page early, which is a full scan for a rare word. */
        api_buf_printf(&with,
                       "WITH m AS MATERIALIZED (SELECT id FROM products WHERE store_id = $1::bigint"
                       " AND (name ILIKE $%d OR description ILIKE $%d)) ",
                       k, k);
    }
    const char *from = f->q ? "products p JOIN m ON m.id = p.id" : "products p";
    s->count_nparams = s->nparams;
    api_buf_t cq = {0};
    if (f->q == NULL && f->min_price < 0 && f->max_price < 0 && f->brand == NULL) {
        /* Only status and category: the counts kept by triggers (sql/0020) answer
         * exactly, whatever the store's size, from one row per category. */
        api_buf_printf(
            &cq, "SELECT coalesce(sum(n), 0) FROM catalog_counts WHERE store_id = $1::bigint");
        if (!f->admin || f->status)
            api_buf_printf(&cq, " AND status = '%s'", !f->admin ? "active" : w_status(f->status));
        if (f->category_ids)
            api_buf_printf(&cq, " AND category_id = ANY ($2::bigint[])");
        s->count_exact = true;
    } else {
        /* Counting stops past CATALOG_COUNT_CAP: an exact count of most of a big store
         * would read all of it on every page. The ORDER BY makes the bounded count walk
         * an id index instead of reading the table until the cap is reached. */
        api_buf_printf(
            &cq, "%sSELECT count(*) FROM (SELECT 1 FROM %s WHERE %s ORDER BY p.id LIMIT %d) c",
            with.p ? with.p : "", from, w.p, CATALOG_COUNT_CAP + 1);
    }
    s->count_sql = cq.p;

    const char *order, *key;
    bool desc = f->sort == CATALOG_SORT_NEWEST || f->sort == CATALOG_SORT_PRICE_DESC ||
                f->sort == CATALOG_SORT_NAME_DESC;
    switch (f->sort) {
    case CATALOG_SORT_PRICE_ASC:
        order = "base_price, id";
        key = "base_price";
        break;
    case CATALOG_SORT_PRICE_DESC:
        order = "base_price DESC, id DESC";
        key = "base_price";
        break;
    case CATALOG_SORT_NAME_ASC:
        order = "name, id";
        key = "name";
        break;
    case CATALOG_SORT_NAME_DESC:
        order = "name DESC, id DESC";
        key = "name";
        break;
    default:
        order = "id DESC";
        key = NULL;
        break;
    }
    if (f->cursor_id) {
        int ki = addnum(s, (long long)f->cursor_id);
        if (key == NULL) {
            api_buf_printf(&w, " AND p.id < $%d::bigint", ki);
        } else {
            s->cursor_key = shopd_strdup(f->cursor_key ? f->cursor_key : "");
            int kk = addp(s, s->cursor_key);
            api_buf_printf(&w, " AND (p.%s, p.id) %s ($%d::%s, $%d::bigint)", key, desc ? "<" : ">",
                           kk, strcmp(key, "name") ? "bigint" : "text", ki);
        }
    }
    /* The limit is written into the SQL (1..CATALOG_MAX_LIMIT: a few shapes more)
     * and so is an offset of 0 (the cursor pages): with LIMIT and OFFSET as
     * parameters PostgreSQL cannot cost a generic plan, so it re-plans the page
     * for every execution (a custom plan: 0.6 ms of planning for 0.2 ms of work,
     * measured); with them as constants the prepared statement keeps its generic
     * plan (2.5x the page's throughput in pgbench). Page mode keeps its offset a
     * parameter: each page number would be a statement of its own. */
    char lim[48];
    if (f->offset > 0)
        snprintf(lim, sizeof(lim), "LIMIT %d OFFSET $%d::int", f->limit, addnum(s, f->offset));
    else
        snprintf(lim, sizeof(lim), "LIMIT %d", f->limit);
    api_buf_t q = {0};
    if (f->expand_variants)
        api_buf_printf(
            &q,
            "%sSELECT " CAT_PRODUCT_JSON("p") "::text, %s::text, p.id FROM ("
                                              "SELECT p.* FROM %s WHERE %s ORDER BY p.%s "
                                              "%s) p ORDER BY p.%s",
            with.p ? with.p : "", key ? key : "p.id", from, w.p, order, lim, order);
    else /* the page's rows first (only the columns shown), then one summary of each
          * row's variants */
        api_buf_printf(
            &q,
            "%sSELECT p.slug, %s::text, p.id, " CAT_PRODUCT_LEAN_COLS(
                "p", "vs") " FROM (SELECT p.id, p.slug, p.name, p.base_price, p.store_id "
                           "FROM %s WHERE %s ORDER BY p.%s %s) p " CAT_VARIANT_SUMMARY(
                               "p") " ORDER BY p.%s",
            with.p ? with.p : "", key ? key : "p.id", from, w.p, order, lim, order);
    s->page_sql = q.p;
    shopd_free(w.p);
    shopd_free(with.p);
}

void
catalog_sql_free(catalog_sql_t *s)
{
    if (s == NULL)
        return;
    shopd_free(s->page_sql);
    shopd_free(s->count_sql);
    shopd_free(s->pattern);
    shopd_free(s->cursor_key);
    s->page_sql = s->count_sql = s->pattern = s->cursor_key = NULL;
}

/* ------------------------------------------------------------ list */

static const struct {
    const char *name;
    int sort;
} sorts[] = {
    {"newest", CATALOG_SORT_NEWEST},     {"price", CATALOG_SORT_PRICE_ASC},
    {"-price", CATALOG_SORT_PRICE_DESC}, {"name", CATALOG_SORT_NAME_ASC},
    {"-name", CATALOG_SORT_NAME_DESC},
};

static int
hexv(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Cursor: "<id>" (newest) or "<hex of the sort value>.<id>". */
static bool
parse_cursor(const char *s, int sort, char *key, size_t keycap, uint64_t *id)
{
    const char *dot = strrchr(s, '.');
    const char *ids = dot ? dot + 1 : s;
    if ((sort == CATALOG_SORT_NEWEST) != (dot == NULL))
        return false;
    if (!shopd_id_parse(ids, strlen(ids), id))
        return false;
    if (dot) {
        size_t hl = (size_t)(dot - s);
        if (hl % 2 || hl / 2 + 1 > keycap)
            return false;
        for (size_t i = 0; i < hl; i += 2) {
            int a = hexv(s[i]), b = hexv(s[i + 1]);
            if (a < 0 || b < 0)
                return false;
            key[i / 2] = (char)(a * 16 + b);
        }
        key[hl / 2] = '\0';
        if (strlen(key) != hl / 2)
            return false;
        long long price;
        if ((sort == CATALOG_SORT_PRICE_ASC || sort == CATALOG_SORT_PRICE_DESC) &&
            !shopd_int_parse(key, INT64_MIN, INT64_MAX, &price))
            return false;
    }
    return true;
}

static bool
parse_ll(const char *s, long long min, long long max, long long *out)
{
    return shopd_int_parse(s, min, max, out);
}

/* Row i of a lean page (CAT_PRODUCT_LEAN_COLS: slug, key, id, name, price_min,
 * price_max, in_stock, variant_count, image) as its JSON entry. Numbers come as PostgreSQL's
 * decimal text, a slug is [a-z0-9-] by its CHECK, so only the name needs escaping. */
static void
lean_entry(api_buf_t *b, const PGresult *r, int i)
{
    api_buf_printf(b, "{\"id\":%s,\"slug\":\"%s\",\"name\":", PQgetvalue(r, i, 2),
                   PQgetvalue(r, i, 0));
    api_buf_json_str(b, PQgetvalue(r, i, 3));
    /* The image is PostgreSQL's JSON (URLs and alt text escaped there). */
    api_buf_printf(b,
                   ",\"price_min\":%s,\"price_max\":%s,\"in_stock\":%s,\"image\":%s,"
                   "\"variant_count\":%s}",
                   PQgetvalue(r, i, 4), PQgetvalue(r, i, 5),
                   PQgetvalue(r, i, 6)[0] == 't' ? "true" : "false",
                   PQgetisnull(r, i, 8) ? "null" : PQgetvalue(r, i, 8), PQgetvalue(r, i, 7));
}

/* One connection for the pages a batch must build (ctxs[at[0..nb)]); NULL when
 * there are none, or when none can be had: then each of them is answered 503. */
static db_conn_t *
batch_acquire(api_ctx_t *ctxs, const size_t *at, size_t nb, net_reply_t **fresh)
{
    if (nb == 0)
        return NULL;
    db_conn_t *c = cat_acquire(&ctxs[at[0]], &fresh[at[0]]);
    for (size_t j = 1; c == NULL && j < nb; j++)
        fresh[at[j]] = api_unavailable("the database");
    return c;
}

/* One list request as it goes: its parameters (f points into the buffers), the
 * category's descendants once read, and its two statements. */
typedef struct list_req_s {
    catalog_filter_t f;
    char b_cat[32], b_st[32], b_min[32], b_max[32], b_brand[512], b_q[512], b_sort[32], b_lim[32],
        b_cur[2600], b_page[32], b_exp[32];
    char ckey[1300]; /* a name sort key: up to 300 characters of UTF-8 */
    const char *category;
    long long page;
    char sid[24];
    const char *cparams[2];
    char *cat_ids;
    catalog_sql_t sql;
    char pname[24], cname[24];
} list_req_t;

/* Reads and checks the query into q; the refusal, or NULL. */
static net_reply_t *
list_parse(api_ctx_t *ctx, list_req_t *q)
{
    api_val_t v = {0};
    memset(q, 0, sizeof(*q));
    q->f = (catalog_filter_t){.store_id = ctx->store_id,
                              .admin = cat_is_admin(ctx),
                              .min_price = -1,
                              .max_price = -1,
                              .limit = 20};
    const char *s;
    long long n;
    if ((s = api_query_param(ctx->env, "category", q->b_cat, sizeof(q->b_cat)))) {
        if (parse_ll(s, 1, INT64_MAX, &n))
            q->category = s;
        else
            api_val_add(&v, "category", "must be a category id");
    }
    if ((s = api_query_param(ctx->env, "status", q->b_st, sizeof(q->b_st)))) {
        if (strcmp(s, "draft") && strcmp(s, "active") && strcmp(s, "archived"))
            api_val_add(&v, "status", "must be draft, active or archived");
        else if (!q->f.admin && strcmp(s, "active"))
            return api_fail_field(SHOPD_FORBIDDEN, "forbidden",
                                  "only store admins see products that are not active", "status",
                                  "admins only");
        else
            q->f.status = s;
    }
    if ((s = api_query_param(ctx->env, "min_price", q->b_min, sizeof(q->b_min))) &&
        !parse_ll(s, 0, INT64_MAX, &q->f.min_price))
        api_val_add(&v, "min_price", "must be a non-negative integer (minor units)");
    if ((s = api_query_param(ctx->env, "max_price", q->b_max, sizeof(q->b_max))) &&
        !parse_ll(s, 0, INT64_MAX, &q->f.max_price))
        api_val_add(&v, "max_price", "must be a non-negative integer (minor units)");
    if (q->f.min_price >= 0 && q->f.max_price >= 0 && q->f.min_price > q->f.max_price)
        api_val_add(&v, "max_price", "must not be below min_price");
    if ((s = api_query_param(ctx->env, "brand", q->b_brand, sizeof(q->b_brand)))) {
        if (*s == '\0' || strlen(s) > 400)
            api_val_add(&v, "brand", "must be 1 to 100 characters long");
        else
            q->f.brand = s;
    }
    if ((s = api_query_param(ctx->env, "q", q->b_q, sizeof(q->b_q)))) {
        size_t ql = strlen(s);
        if (ql < 2 || ql > 100)
            api_val_add(&v, "q", "must be 2 to 100 characters long");
        else
            q->f.q = s;
    }
    if ((s = api_query_param(ctx->env, "sort", q->b_sort, sizeof(q->b_sort)))) {
        size_t i;
        for (i = 0; i < sizeof(sorts) / sizeof(sorts[0]); i++)
            if (!strcmp(sorts[i].name, s))
                break;
        if (i == sizeof(sorts) / sizeof(sorts[0]))
            api_val_add(&v, "sort", "must be newest, price, -price, name or -name");
        else
            q->f.sort = sorts[i].sort;
    }
    if ((s = api_query_param(ctx->env, "limit", q->b_lim, sizeof(q->b_lim)))) {
        if (parse_ll(s, 1, CATALOG_MAX_LIMIT, &n))
            q->f.limit = (int)n;
        else
            api_val_add(&v, "limit", "must be an integer from 1 to 100");
    }
    if ((s = api_query_param(ctx->env, "page", q->b_page, sizeof(q->b_page))) &&
        !parse_ll(s, 1, 100000, &q->page))
        api_val_add(&v, "page", "must be an integer from 1 to 100000");
    if ((s = api_query_param(ctx->env, "cursor", q->b_cur, sizeof(q->b_cur)))) {
        if (q->page)
            api_val_add(&v, "cursor", "cannot be combined with page");
        else if (!parse_cursor(s, q->f.sort, q->ckey, sizeof(q->ckey), &q->f.cursor_id))
            api_val_add(&v, "cursor", "must be a next_cursor returned with the same sort");
        else
            q->f.cursor_key = q->ckey;
    }
    if ((s = api_query_param(ctx->env, "expand", q->b_exp, sizeof(q->b_exp)))) {
        if (strcmp(s, "variants"))
            api_val_add(&v, "expand", "must be variants");
        else
            q->f.expand_variants = true;
    }
    if (v.n)
        return api_val_reply(&v);
    if (q->page)
        q->f.offset = (long)((q->page - 1) * q->f.limit);
    return NULL;
}

/* The statement that reads the category's descendants (q->category set). */
static db_query_t
list_cat_query(api_ctx_t *ctx, list_req_t *q)
{
    q->cparams[0] = cat_sid(ctx, q->sid);
    q->cparams[1] = q->category;
    return (db_query_t){"prod_list_cats", catalog_descendants_sql, 2, q->cparams};
}

/* Takes the descendants' result into q->f; the error answer, or NULL. */
static net_reply_t *
list_cat_take(api_ctx_t *ctx, list_req_t *q, PGresult *cr)
{
    if (db_result_rc(cr) != SHOPD_OK)
        return api_db_error(ctx, cr, "product list categories");
    q->f.category_ids = q->cat_ids = shopd_strdup(PQgetvalue(cr, 0, 0));
    return NULL;
}

/* The page and the count of q (qs[0], qs[1]). Prepared under a name made from the
 * SQL text: the shapes are few (which filters, which sort, cursor or not, lean or
 * expanded; every value is a parameter), so each connection plans each shape once
 * instead of on every request. */
static void
list_queries(list_req_t *q, db_query_t *qs)
{
    catalog_list_sql(&q->f, &q->sql);
    snprintf(q->pname, sizeof(q->pname), "pl_%016llx",
             (unsigned long long)cat_hash(q->sql.page_sql));
    snprintf(q->cname, sizeof(q->cname), "pc_%016llx",
             (unsigned long long)cat_hash(q->sql.count_sql));
    qs[0] = (db_query_t){q->pname, q->sql.page_sql, q->sql.nparams, q->sql.params};
    qs[1] = (db_query_t){q->cname, q->sql.count_sql, q->sql.count_nparams, q->sql.params};
}

/* The answer for the page and the count of q (res[0], res[1]; the caller's). */
static net_reply_t *
list_render(api_ctx_t *ctx, const list_req_t *q, PGresult **res)
{
    const catalog_filter_t *f = &q->f;
    if (db_result_rc(res[0]) != SHOPD_OK || db_result_rc(res[1]) != SHOPD_OK)
        return api_db_error(ctx, db_result_rc(res[0]) != SHOPD_OK ? res[0] : res[1],
                            "product list");
    api_buf_t b = {0};
    int rows = PQntuples(res[0]);
    api_buf_put(&b, "{\"data\":[", 9);
    for (int i = 0; i < rows; i++) {
        if (i)
            api_buf_put(&b, ",", 1);
        if (f->expand_variants)
            api_buf_put(&b, PQgetvalue(res[0], i, 0), (size_t)PQgetlength(res[0], i, 0));
        else
            lean_entry(&b, res[0], i);
    }
    long total = atol(PQgetvalue(res[1], 0, 0));
    bool capped = !q->sql.count_exact && total > CATALOG_COUNT_CAP;
    api_buf_printf(&b, "],\"total\":%ld,\"total_capped\":%s,\"limit\":%d,\"next_cursor\":",
                   capped ? (long)CATALOG_COUNT_CAP : total, capped ? "true" : "false", f->limit);
    if (rows == f->limit && q->page == 0) {
        api_buf_put(&b, "\"", 1);
        if (f->sort != CATALOG_SORT_NEWEST) {
            const char *k = PQgetvalue(res[0], rows - 1, 1);
            for (; *k; k++)
                api_buf_printf(&b, "%02x", (unsigned char)*k);
            api_buf_put(&b, ".", 1);
        }
        api_buf_printf(&b, "%s\"", PQgetvalue(res[0], rows - 1, 2));
    } else {
        api_buf_put(&b, "null", 4);
    }
    if (q->page)
        api_buf_printf(&b, ",\"page\":%lld", q->page);
    api_buf_put(&b, "}", 1);
    net_reply_t *reply = api_raw_json(SHOPD_OK, b.p, b.n);
    shopd_free(b.p);
    return reply;
}

static void
list_req_free(list_req_t *q)
{
    catalog_sql_free(&q->sql);
    shopd_free(q->cat_ids);
    q->cat_ids = NULL;
}

/* Runs q on c: the descendants if it names a category, then the page and the count
 * in one round trip. */
static net_reply_t *
list_run(api_ctx_t *ctx, db_conn_t *c, list_req_t *q)
{
    net_reply_t *reply = NULL;
    if (q->category) {
        db_query_t cq = list_cat_query(ctx, q);
        PGresult *cr = db_exec(c, cq.name, cq.sql, cq.nparams, cq.params);
        reply = list_cat_take(ctx, q, cr);
        PQclear(cr);
        if (reply)
            return reply;
    }
    db_query_t qs[2];
    list_queries(q, qs);
    PGresult *res[2] = {NULL, NULL};
    (void)db_pipeline(c, qs, 2, res); /* list_render looks at each result */
    reply = list_render(ctx, q, res);
    PQclear(res[0]);
    PQclear(res[1]);
    return reply;
}

static net_reply_t *
list(api_ctx_t *ctx)
{
    list_req_t *q = shopd_malloc(sizeof(*q));
    net_reply_t *reply = list_parse(ctx, q);
    db_conn_t *c = reply ? NULL : cat_acquire(ctx, &reply);
    if (c)
        reply = list_run(ctx, c, q);
    db_release(c);
    list_req_free(q);
    shopd_free(q);
    return reply;
}

net_reply_t *
catalog_h_product_list(api_ctx_t *ctx)
{
    return cat_cached(ctx, list);
}

/* The list pages of one read-lane turn, as catalog_b_product_get does the product
 * pages: hits first, then the descendants of every category asked for in one
 * pipeline, then the page and the count of every list to build in another. */
void
catalog_b_product_list(api_ctx_t *ctxs, size_t n, net_reply_t **replies)
{
    if (n == 1) {
        replies[0] = catalog_h_product_list(&ctxs[0]);
        return;
    }
    cat_cache_t *st = shopd_calloc(n, sizeof(*st));
    list_req_t *lq = shopd_calloc(n, sizeof(*lq));
    net_reply_t **fresh = shopd_calloc(n, sizeof(*fresh));
    size_t *at = shopd_calloc(n, sizeof(*at)), *cat_at = shopd_calloc(n, sizeof(*cat_at));
    db_query_t *qs = shopd_calloc(2 * n, sizeof(*qs));
    PGresult **rs = shopd_calloc(2 * n, sizeof(*rs));
    size_t nb = 0, nc = 0;
    for (size_t i = 0; i < n; i++) {
        replies[i] = cat_cache_begin(&ctxs[i], &st[i]);
        if (replies[i] == NULL && (fresh[i] = list_parse(&ctxs[i], &lq[i])) == NULL)
            at[nb++] = i;
    }
    db_conn_t *c = batch_acquire(ctxs, at, nb, fresh);
    if (c == NULL)
        nb = 0;
    /* 1. The categories' descendants. */
    for (size_t j = 0; j < nb; j++) {
        if (lq[at[j]].category) {
            qs[nc] = list_cat_query(&ctxs[at[j]], &lq[at[j]]);
            cat_at[nc++] = at[j];
        }
    }
    if (nc)
        db_pipeline_apart(c, qs, nc, rs);
    for (size_t j = 0; j < nc; j++) {
        fresh[cat_at[j]] = list_cat_take(&ctxs[cat_at[j]], &lq[cat_at[j]], rs[j]);
        PQclear(rs[j]);
        rs[j] = NULL;
    }
    /* 2. The pages and their counts, of those still to build. */
    size_t nq = 0;
    for (size_t j = 0; j < nb; j++)
        if (fresh[at[j]] == NULL)
            at[nq++] = at[j];
    for (size_t j = 0; j < nq; j++)
        list_queries(&lq[at[j]], &qs[2 * j]);
    if (nq)
        db_pipeline_apart(c, qs, 2 * nq, rs);
    for (size_t j = 0; nq > 1 && j < nq; j++)
        pc_count(PC_PIPELINED);
    for (size_t j = 0; j < nq; j++) {
        fresh[at[j]] = list_render(&ctxs[at[j]], &lq[at[j]], &rs[2 * j]);
        PQclear(rs[2 * j]);
        PQclear(rs[2 * j + 1]);
    }
    db_release(c);
    for (size_t i = 0; i < n; i++) {
        list_req_free(&lq[i]);
        if (replies[i] == NULL)
            replies[i] = cat_cache_end(&ctxs[i], &st[i], fresh[i]);
    }
    shopd_free(rs);
    shopd_free(qs);
    shopd_free(cat_at);
    shopd_free(at);
    shopd_free(fresh);
    shopd_free(lq);
    shopd_free(st);
}

/* ------------------------------------------------------------ one product */

/* The key of a product page request: its id or slug in idb, numeric saying which.
 * NULL when it is fine, else the 404 for a key that names nothing. */
typedef struct page_key_s {
    char sid[24], idb[128];
    bool numeric;
    const char *params[3];
} page_key_t;

static net_reply_t *
page_key(api_ctx_t *ctx, page_key_t *k)
{
    size_t n;
    const char *p = msg_param(ctx->env, "id", &n);
    if (p == NULL || n == 0 || n >= sizeof(k->idb))
        return api_fail(SHOPD_NOTFOUND, "product_not_found", "no such product");
    memcpy(k->idb, p, n);
    k->idb[n] = '\0';
    k->numeric = strspn(k->idb, "0123456789") == n && n <= 18;
    if (!k->numeric && !cat_slug_valid(k->idb))
        return api_fail(SHOPD_NOTFOUND, "product_not_found", "no such product");
    k->params[0] = cat_sid(ctx, k->sid);
    k->params[1] = k->idb;
    k->params[2] = cat_is_admin(ctx) ? "t" : "f";
    return NULL;
}

/* The page's rows are rendered here (page.c), which reads timestamps in DateStyle
 * ISO: a server set to another style gets the page built by PostgreSQL as before
 * (CAT_PRODUCT_JSON). */
static bool
page_in_c(db_conn_t *c)
{
    const char *ds = PQparameterStatus(db_pg(c), "DateStyle");
    return ds && !strncmp(ds, "ISO", 3);
}

/* One statement per key: "id = $2 OR slug = $3" prepared once gets a generic plan
 * that ORs two index scans (a bitmap) on every call, for one row. */
static db_query_t
page_query(const page_key_t *k)
{
    return k->numeric ? (db_query_t){"prod_page_id", catalog_page_id_sql, 3, k->params}
                      : (db_query_t){"prod_page_slug", catalog_page_slug_sql, 3, k->params};
}

/* The answer for the rows of page_query (r is the caller's). */
static net_reply_t *
page_answer(api_ctx_t *ctx, PGresult *r)
{
    char *json = NULL;
    size_t len = 0;
    net_reply_t *reply;
    if (db_result_rc(r) != SHOPD_OK)
        reply = api_db_error(ctx, r, "product get");
    else if ((json = catalog_page_render(r, &len)) == NULL)
        reply = api_fail(SHOPD_NOTFOUND, "product_not_found", "no such product");
    else
        reply = api_raw_json(SHOPD_OK, json, len);
    shopd_free(json);
    return reply;
}

/* The page built by PostgreSQL (a server whose DateStyle is not ISO). */
static net_reply_t *
page_sql(api_ctx_t *ctx, db_conn_t *c, const page_key_t *k)
{
    PGresult *r =
        k->numeric
            ? db_exec(c, "prod_get_id",
                      "SELECT " CAT_PRODUCT_JSON("p") "::text FROM products p WHERE p.store_id = "
                                                      "$1::bigint AND p.id = $2::bigint"
                                                      " AND ($3::bool OR p.status = 'active')",
                      3, k->params)
            : db_exec(c, "prod_get_slug",
                      "SELECT " CAT_PRODUCT_JSON("p") "::text FROM products p WHERE p.store_id = "
                                                      "$1::bigint AND p.slug = $2"
                                                      " AND ($3::bool OR p.status = 'active')",
                      3, k->params);
    return cat_one_row(ctx, r, "product get", "product_not_found", "no such product");
}

static net_reply_t *
get_one(api_ctx_t *ctx)
{
    page_key_t k;
    net_reply_t *reply = page_key(ctx, &k);
    if (reply)
        return reply;
    db_conn_t *c = cat_acquire(ctx, &reply);
    if (c == NULL)
        return reply;
    if (page_in_c(c)) {
        db_query_t q = page_query(&k);
        PGresult *r = db_exec(c, q.name, q.sql, q.nparams, q.params);
        reply = page_answer(ctx, r);
        PQclear(r);
    } else {
        reply = page_sql(ctx, c, &k);
    }
    db_release(c);
    return reply;
}

net_reply_t *
catalog_h_product_get(api_ctx_t *ctx)
{
    return cat_cached(ctx, get_one);
}

/* The product pages of one read-lane turn (SHOPD_READ_BATCH): hits answered from
 * the caches one by one, then the statements of every page to build sent in one
 * pipeline, so n pages cost PostgreSQL and this worker one round trip and one
 * wake-up instead of n (db_pipeline_apart: each page's statement stands alone). */
void
catalog_b_product_get(api_ctx_t *ctxs, size_t n, net_reply_t **replies)
{
    if (n == 1) {
        replies[0] = catalog_h_product_get(&ctxs[0]);
        return;
    }
    cat_cache_t *st = shopd_calloc(n, sizeof(*st));
    page_key_t *keys = shopd_calloc(n, sizeof(*keys));
    net_reply_t **fresh = shopd_calloc(n, sizeof(*fresh));
    size_t *at = shopd_calloc(n, sizeof(*at)); /* the pages to build */
    db_query_t *qs = shopd_calloc(n, sizeof(*qs));
    PGresult **rs = shopd_calloc(n, sizeof(*rs));
    size_t nb = 0, nq = 0;
    for (size_t i = 0; i < n; i++) {
        replies[i] = cat_cache_begin(&ctxs[i], &st[i]);
        if (replies[i] == NULL && (fresh[i] = page_key(&ctxs[i], &keys[i])) == NULL)
            at[nb++] = i;
    }
    db_conn_t *c = batch_acquire(ctxs, at, nb, fresh);
    if (c == NULL)
        nb = 0;
    if (nb && !page_in_c(c)) {
        for (size_t j = 0; j < nb; j++)
            fresh[at[j]] = page_sql(&ctxs[at[j]], c, &keys[at[j]]);
        nb = 0;
    }
    for (size_t j = 0; j < nb; j++)
        qs[nq++] = page_query(&keys[at[j]]);
    if (nq)
        db_pipeline_apart(c, qs, nq, rs);
    for (size_t j = 0; nq > 1 && j < nq; j++)
        pc_count(PC_PIPELINED);
    for (size_t j = 0; j < nq; j++) {
        fresh[at[j]] = page_answer(&ctxs[at[j]], rs[j]);
        PQclear(rs[j]);
    }
    db_release(c);
    for (size_t i = 0; i < n; i++)
        if (replies[i] == NULL)
            replies[i] = cat_cache_end(&ctxs[i], &st[i], fresh[i]);
    shopd_free(rs);
    shopd_free(qs);
    shopd_free(at);
    shopd_free(fresh);
    shopd_free(keys);
    shopd_free(st);
}

/* ------------------------------------------------------------ writes */

void
cat_product_validate(api_val_t *v, json_t *b, cat_prod_input_t *in, bool create)
{
    static const char *const allowed[] = {
        "name",  "slug",        "description", "base_price",       "status",
        "brand", "category_id", "attributes",  "option_value_ids", NULL};
    memset(in, 0, sizeof(*in));
    api_val_only(v, b, allowed);
    in->name = api_val_string(v, b, "name", create, 1, 300);
    in->slug = api_val_string(v, b, "slug", false, 1, 120);
    if (in->slug && !cat_slug_valid(in->slug)) {
        api_val_add(v, "slug", "must be lower-case letters, digits and single '-' between them");
        in->slug = NULL;
    }
    if (create && in->slug == NULL && in->name) {
        cat_slugify(in->name, in->slugbuf, sizeof(in->slugbuf));
        in->slug = in->slugbuf;
    }
    in->description = api_val_string(v, b, "description", false, 0, 20000);
    long long price;
    int pr = api_val_int(v, b, "base_price", 0, INT64_MAX / 2, &price);
    if (pr == 1)
        snprintf(in->price, sizeof(in->price), "%lld", price);
    else if (pr == 0 && create)
        api_val_add(v, "base_price", "is required");
    in->status = api_val_string(v, b, "status", false, 1, 20);
    if (in->status && strcmp(in->status, "draft") && strcmp(in->status, "active") &&
        strcmp(in->status, "archived"))
        api_val_add(v, "status", "must be draft, active or archived");
    if (json_object_get(b, "brand")) {
        in->brand_given = true;
        in->brand = api_val_string(v, b, "brand", false, 1, 100);
    }
    if (json_object_get(b, "category_id")) {
        long long cid;
        in->category_given = true;
        if (api_val_int(v, b, "category_id", 1, INT64_MAX, &cid) == 1)
            snprintf(in->category, sizeof(in->category), "%lld", cid);
    }
    json_t *a = json_object_get(b, "attributes");
    if (a && !json_is_null(a)) {
        if (!json_is_object(a))
            api_val_add(v, "attributes", "must be a JSON object");
        else
            in->attributes = json_dumps(a, JSON_COMPACT);
    }
    json_t *ov = json_object_get(b, "option_value_ids");
    if (ov && !json_is_null(ov)) {
        size_t i;
        json_t *x;
        if (!json_is_array(ov) || json_array_size(ov) > 200) {
            api_val_add(v, "option_value_ids",
                        "must be an array of at most 200 attribute value ids");
            return;
        }
        in->value_ids = shopd_malloc(json_array_size(ov) * 21 + 3);
        size_t o = 0;
        in->value_ids[o++] = '{';
        json_array_foreach(ov, i, x)
        {
            if (!json_is_integer(x) || json_integer_value(x) < 1) {
                api_val_add(v, "option_value_ids", "must be an array of attribute value ids");
                break;
            }
            o += (size_t)sprintf(in->value_ids + o, "%s%lld", i ? "," : "",
                                 (long long)json_integer_value(x));
        }
        in->value_ids[o++] = '}';
        in->value_ids[o] = '\0';
    }
}

void
cat_product_input_free(cat_prod_input_t *in)
{
    free(in->attributes);
    shopd_free(in->value_ids);
}

/* Replaces the product's chosen attribute values (inside the caller's tx). */
static PGresult *
set_values(db_conn_t *c, const char *sid, const char *pid, const char *ids)
{
    const char *p[3] = {sid, pid, ids};
    return db_exec(
        c, "prod_set_values",
        "WITH d AS (DELETE FROM product_option_values WHERE store_id = $1::bigint AND product_id = "
        "$2::bigint"
        " AND value_id <> ALL ($3::bigint[]))"
        " INSERT INTO product_option_values (store_id, product_id, value_id)"
        " SELECT DISTINCT $1::bigint, $2::bigint, unnest($3::bigint[]) ON CONFLICT DO NOTHING",
        3, p);
}

static PGresult *
product_json(db_conn_t *c, const char *sid, const char *pid)
{
    const char *p[2] = {sid, pid};
    return db_exec(c, "prod_json", catalog_product_json_sql, 2, p);
}

/* A product write: its input and, once it ran, the product read back. */
typedef struct prod_write_s {
    const cat_prod_input_t *in;
    const char *sid;
    char pid[24];
    PGresult *r;
} prod_write_t;

/* Sets option values if given and reads the product back, inside the write's tx. */
static shopd_rc_t
finish_write(api_ctx_t *ctx, db_conn_t *c, prod_write_t *w, net_reply_t **reply)
{
    if (w->in->value_ids) {
        PGresult *r = set_values(c, w->sid, w->pid, w->in->value_ids);
        shopd_rc_t rc = db_result_rc(r);
        if (rc != SHOPD_OK)
            *reply = api_db_error(ctx, r, "product option values");
        PQclear(r);
        if (rc != SHOPD_OK)
            return rc;
    }
    w->r = product_json(c, w->sid, w->pid);
    shopd_rc_t rc = db_result_rc(w->r);
    if (rc != SHOPD_OK || PQntuples(w->r) != 1) {
        *reply = api_db_error(ctx, w->r, "product read back");
        return rc != SHOPD_OK ? rc : SHOPD_ERR;
    }
    return SHOPD_OK;
}

static shopd_rc_t
create_tx(api_ctx_t *ctx, db_conn_t *c, void *arg, net_reply_t **reply)
{
    prod_write_t *w = arg;
    const cat_prod_input_t *in = w->in;
    PQclear(w->r);
    w->r = NULL;
    const char *p[9] = {w->sid,          in->category[0] ? in->category : NULL,
                        in->name,        in->slug,
                        in->description, in->price,
                        in->status,      in->brand,
                        in->attributes};
    PGresult *r = db_exec(c, "prod_create",
                          "INSERT INTO products (store_id, category_id, name, slug, description, "
                          "base_price, status, brand, attributes)"
                          " VALUES ($1::bigint, $2::bigint, $3, $4, coalesce($5, ''), $6::bigint, "
                          "coalesce($7, 'draft'), $8,"
                          " coalesce($9::jsonb, '{}'::jsonb)) RETURNING id",
                          9, p);
    shopd_rc_t rc = db_result_rc(r);
    if (rc != SHOPD_OK) {
        *reply = api_db_error(ctx, r, "product create");
        PQclear(r);
        return rc;
    }
    snprintf(w->pid, sizeof(w->pid), "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    return finish_write(ctx, c, w, reply);
}

net_reply_t *
catalog_h_product_create(api_ctx_t *ctx)
{
    api_val_t v = {0};
    cat_prod_input_t in;
    char sid[24];
    net_reply_t *reply = NULL;
    cat_product_validate(&v, ctx->body, &in, true);
    if (v.n) {
        reply = api_val_reply(&v);
        goto out;
    }
    prod_write_t w = {.in = &in, .sid = cat_sid(ctx, sid)};
    if ((reply = cat_tx(ctx, create_tx, &w)) == NULL) {
        cat_bump(ctx);
        reply = cat_row_json(SHOPD_CREATED, w.r, 0);
        char loc[64];
        snprintf(loc, sizeof(loc), "/api/v1/products/%s", w.pid);
        net_reply_add_header(reply, "Location", loc);
    }
    PQclear(w.r);
out:
    cat_product_input_free(&in);
    return reply;
}

static shopd_rc_t
update_tx(api_ctx_t *ctx, db_conn_t *c, void *arg, net_reply_t **reply)
{
    prod_write_t *w = arg;
    const cat_prod_input_t *in = w->in;
    PQclear(w->r);
    w->r = NULL;
    const char *p[12] = {w->sid,
                         w->pid,
                         in->category_given ? "t" : "f",
                         in->category[0] ? in->category : NULL,
                         in->name,
                         in->slug,
                         in->description,
                         in->price[0] ? in->price : NULL,
                         in->status,
                         in->brand_given ? "t" : "f",
                         in->brand,
                         in->attributes};
    PGresult *r = db_exec(
        c, "prod_update",
        "UPDATE products SET category_id = CASE WHEN $3::bool THEN $4::bigint ELSE category_id END,"
        " name = coalesce($5, name), slug = coalesce($6, slug), description = coalesce($7, "
        "description),"
        " base_price = coalesce($8::bigint, base_price), status = coalesce($9, status),"
        " brand = CASE WHEN $10::bool THEN $11 ELSE brand END,"
        " attributes = coalesce($12::jsonb, attributes), updated_at = now()"
        " WHERE store_id = $1::bigint AND id = $2::bigint RETURNING id",
        12, p);
    shopd_rc_t rc = db_result_rc(r);
    if (rc != SHOPD_OK)
        *reply = api_db_error(ctx, r, "product update");
    else if (PQntuples(r) == 0)
        *reply = api_fail(SHOPD_NOTFOUND, "product_not_found", "no such product");
    bool found = rc == SHOPD_OK && PQntuples(r) > 0;
    PQclear(r);
    if (rc != SHOPD_OK)
        return rc;
    if (!found)
        return SHOPD_NOTFOUND;
    return finish_write(ctx, c, w, reply);
}

net_reply_t *
catalog_h_product_update(api_ctx_t *ctx)
{
    api_val_t v = {0};
    cat_prod_input_t in;
    char sid[24];
    net_reply_t *reply = NULL;
    prod_write_t w = {.in = &in, .sid = cat_sid(ctx, sid)};
    memset(&in, 0, sizeof(in));
    if (!cat_id_param(ctx, "id", w.pid)) {
        reply = api_fail(SHOPD_NOTFOUND, "product_not_found", "no such product");
        goto out;
    }
    cat_product_validate(&v, ctx->body, &in, false);
    if (v.n) {
        reply = api_val_reply(&v);
        goto out;
    }
    if ((reply = cat_tx(ctx, update_tx, &w)) == NULL) {
        cat_bump(ctx);
        reply = cat_row_json(SHOPD_OK, w.r, 0);
    }
    PQclear(w.r);
out:
    cat_product_input_free(&in);
    return reply;
}

net_reply_t *
catalog_h_product_delete(api_ctx_t *ctx)
{
    char sid[24], pid[24];
    if (!cat_id_param(ctx, "id", pid))
        return api_fail(SHOPD_NOTFOUND, "product_not_found", "no such product");
    const char *p[2] = {cat_sid(ctx, sid), pid};
    PGresult *r = NULL;
    net_reply_t *reply = cat_write_stmt(
        ctx, "product delete", "prod_delete",
        "DELETE FROM products WHERE store_id = $1::bigint AND id = $2::bigint", 2, p, &r);
    if (reply != NULL)
        return reply;
    if (strcmp(PQcmdTuples(r), "0") == 0) {
        reply = api_fail(SHOPD_NOTFOUND, "product_not_found", "no such product");
    } else {
        cat_bump(ctx);
        reply = api_empty(SHOPD_NO_CONTENT);
    }
    PQclear(r);
    return reply;
}
