/*
 * pg.c: the PostgreSQL search backend. One statement answers a search: the
 * matching products of the store (base, materialized once), the page of hits
 * under every filter, the total, and the facets, each facet counted under
 * every filter but its own (picking color=red still shows how many are blue).
 *
 * Matching. With q, full text first: websearch_to_tsquery in the store's
 * configuration (search_config, sql/0015) against products.search_doc, ranked
 * by ts_rank_cd with an exact name match above everything. When full text
 * finds nothing at all (a typo: "tshrit"), the same request is answered by
 * trigram word similarity against products.search_name ("tshirt" for
 * "T-Shirt"), ranked by that similarity; the answer says which ("match":
 * "fulltext" or "fuzzy"). The full-text statement says whether q matched
 * anything, so a typo costs a second statement and nothing else does.
 *
 * Pagination is keyset: (sort key, id) of the last hit, so ties (equal
 * scores, equal prices) are broken by id and pages never repeat or skip a
 * product. Scores are float8 computed the same way on every request, and
 * float8 text round-trips exactly, so a score cursor compares exactly.
 *
 * Every value is a parameter; the SQL text depends only on which filters are
 * present (never on their values), so nothing a caller sends is ever SQL.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shopd/search.h"

/* The similarity a fuzzy match needs (pg_trgm word_similarity, 0..1): "tshrit"
 * against "red tshirt" is 0.43; the extension's default of 0.6 misses it. */
#define SEARCH_FUZZY_THRESHOLD "0.4"

typedef struct sb_s {
    char *p;
    size_t n, cap;
} sb_t;

static void __attribute__((format(printf, 2, 3))) sb_printf(sb_t *b, const char *fmt, ...)
{
    va_list ap;
    for (;;) {
        va_start(ap, fmt);
        int k = vsnprintf(b->p ? b->p + b->n : NULL, b->p ? b->cap - b->n : 0, fmt, ap);
        va_end(ap);
        if (b->p && (size_t)k < b->cap - b->n) {
            b->n += (size_t)k;
            return;
        }
        b->cap = (b->cap + (size_t)k + 1) * 2;
        b->p = shopd_realloc(b->p, b->cap);
    }
}

#define MAX_PARAMS (8 + 2 * SEARCH_MAX_ATTRS)

typedef struct params_s {
    int n;
    const char *v[MAX_PARAMS];
    char num[MAX_PARAMS][32];
} params_t;

static int
param(params_t *ps, const char *v)
{
    ps->v[ps->n] = v;
    return ++ps->n;
}

static int
param_num(params_t *ps, long long v)
{
    snprintf(ps->num[ps->n], sizeof(ps->num[0]), "%lld", v);
    return param(ps, ps->num[ps->n]);
}

/* The filters as SQL over a base row b, one expression per facet kind. */
enum { F_CAT, F_BRAND, F_PRICE, F_STOCK, F_NKINDS };

typedef struct filters_s {
    char *kind[F_NKINDS];         /* NULL when absent */
    char *attr[SEARCH_MAX_ATTRS]; /* b.attrs contains name: [value] */
    int attr_name_param[SEARCH_MAX_ATTRS];
    size_t nattrs;
} filters_t;

static char *dupf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *
dupf(const char *fmt, ...)
{
    sb_t b = {0};
    va_list ap;
    va_start(ap, fmt);
    char tmp[512];
    vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    sb_printf(&b, "%s", tmp);
    return b.p;
}

static void
filters_build(const search_query_t *q, params_t *ps, filters_t *f)
{
    memset(f, 0, sizeof(*f));
    if (q->category_id)
        f->kind[F_CAT] = dupf("b.category_id IN (SELECT id FROM cats)");
    if (q->brand[0])
        f->kind[F_BRAND] = dupf("b.brand = $%d", param(ps, q->brand));
    if (q->price_min >= 0 && q->price_max >= 0) {
        int a = param_num(ps, q->price_min), z = param_num(ps, q->price_max);
        f->kind[F_PRICE] = dupf("b.base_price BETWEEN $%d::bigint AND $%d::bigint", a, z);
    } else if (q->price_min >= 0) {
        f->kind[F_PRICE] = dupf("b.base_price >= $%d::bigint", param_num(ps, q->price_min));
    } else if (q->price_max >= 0) {
        f->kind[F_PRICE] = dupf("b.base_price <= $%d::bigint", param_num(ps, q->price_max));
    }
    if (q->in_stock)
        f->kind[F_STOCK] = dupf("b.in_stock");
    for (size_t i = 0; i < q->nattrs; i++) {
        int k = param(ps, q->attrs[i].name), v = param(ps, q->attrs[i].value);
        f->attr_name_param[i] = k;
        f->attr[i] =
            dupf("b.attrs @> jsonb_build_object($%d::text, jsonb_build_array($%d::text))", k, v);
    }
    f->nattrs = q->nattrs;
}

static void
filters_free(filters_t *f)
{
    for (int i = 0; i < F_NKINDS; i++)
        shopd_free(f->kind[i]);
    for (size_t i = 0; i < f->nattrs; i++)
        shopd_free(f->attr[i]);
}

/* " AND ..." for every filter but the kind `except` (-1: none). With
 * per_attr, each attribute filter is waived for that attribute's own values
 * (the attribute facet, whose rows carry the attribute name in e.key). */
static void
where_but(sb_t *b, const filters_t *f, int except, bool per_attr)
{
    for (int i = 0; i < F_NKINDS; i++)
        if (i != except && f->kind[i])
            sb_printf(b, " AND %s", f->kind[i]);
    for (size_t i = 0; i < f->nattrs; i++) {
        if (per_attr)
            sb_printf(b, " AND (e.key = $%d OR %s)", f->attr_name_param[i], f->attr[i]);
        else
            sb_printf(b, " AND %s", f->attr[i]);
    }
}

/* Price bands of the price facet (minor units, lower bound included): band k
 * of width_bucket over these bounds is [bound k-1, bound k), 0 below the first
 * bound, 6 from the last. One pass over the matches, no join. */
#define SEARCH_PRICE_BOUNDS "ARRAY[1000, 2500, 5000, 10000, 25000, 50000]::bigint[]"

typedef enum match_e { MATCH_ALL, MATCH_FULLTEXT, MATCH_FUZZY } match_t;

/* The search statement for q under match m (parameters into ps). */
static char *
search_sql(const search_query_t *q, match_t m, params_t *ps)
{
    sb_t s = {0};
    filters_t f;
    /* $1 the store, $2 q (NULL without one), $3 the limit. */
    int lim = param_num(ps, q->limit);
    int cat = q->category_id ? param_num(ps, (long long)q->category_id) : 0;
    filters_build(q, ps, &f);

    sb_printf(&s, "WITH RECURSIVE tq AS (SELECT websearch_to_tsquery(search_config($1::bigint), "
                  "coalesce($2, '')) AS q,"
                  " regexp_replace(lower(coalesce($2, '')), '[^[:alnum:][:space:]]+', '', 'g')"
                  " AS s)");
    if (cat)
        sb_printf(&s,
                  ", cats(id, d) AS (SELECT id, 1 FROM categories WHERE store_id = $1::bigint"
                  " AND id = $%d::bigint UNION ALL SELECT k.id, cats.d + 1 FROM categories k"
                  " JOIN cats ON k.store_id = $1::bigint AND k.parent_id = cats.id"
                  " WHERE cats.d < 64)",
                  cat);
    const char *score, *match;
    switch (m) {
    case MATCH_FULLTEXT:
        score = "((lower(p.name) = lower($2))::int + ts_rank_cd(p.search_doc, tq.q, 32))::float8";
        /* The query again rather than tq.q: an expression of parameters is an
         * index condition of the GIN scan; a column of tq would need a join. */
        match = " AND p.search_doc @@ websearch_to_tsquery(search_config($1::bigint), $2)";
        break;
    case MATCH_FUZZY:
        /* The best matching word first, then the closest whole name: "tshrit"
         * is as near a word of "Red T-Shirt Deluxe" as of "T-Shirt". */
        score = "(word_similarity(tq.s, p.search_name) + similarity(tq.s, p.search_name))::float8";
        match = " AND regexp_replace(lower($2), '[^[:alnum:][:space:]]+', '', 'g') <%"
                " p.search_name";
        break;
    default:
        score = "0::float8";
        match = "";
        break;
    }
    /* in_stock: few matches probe the variants index each; the whole store
     * (no q) reads the store's variants in stock once into a hash instead. */
    const char *stock =
        m == MATCH_ALL ? "p.id IN (SELECT v.product_id FROM product_variants v WHERE v.store_id"
                         " = $1::bigint AND v.stock > 0)"
                       : "EXISTS (SELECT 1 FROM product_variants v WHERE v.store_id ="
                         " p.store_id AND v.product_id = p.id AND v.stock > 0)";
    sb_printf(&s,
              ", base AS MATERIALIZED (SELECT p.id, p.category_id, p.brand, p.base_price,"
              " p.search_attrs AS attrs, %s AS in_stock, %s AS score FROM products p CROSS JOIN tq"
              " WHERE p.store_id = $1::bigint AND p.status = 'active'%s)",
              stock, score, match);

    const char *order, *key;
    switch (q->sort) {
    case SEARCH_SORT_PRICE:
        order = "base_price, id";
        key = "base_price";
        break;
    case SEARCH_SORT_PRICE_DESC:
        order = "base_price DESC, id DESC";
        key = "base_price";
        break;
    case SEARCH_SORT_NEWEST:
        order = "id DESC";
        key = NULL;
        break;
    default:
        order = "score DESC, id DESC";
        key = "score";
        break;
    }
    sb_printf(&s,
              ", page AS (SELECT b.id, b.in_stock, b.score, b.base_price, %s::text AS k"
              " FROM base b WHERE true",
              key ? key : "''");
    where_but(&s, &f, -1, false);
    if (q->has_cursor) {
        int ci = param_num(ps, (long long)q->cursor_id);
        if (key == NULL) {
            sb_printf(&s, " AND b.id < $%d::bigint", ci);
        } else {
            int ck = param(ps, q->cursor_key);
            bool asc = q->sort == SEARCH_SORT_PRICE;
            sb_printf(&s, " AND (b.%s, b.id) %s ($%d::%s, $%d::bigint)", key, asc ? ">" : "<", ck,
                      q->sort == SEARCH_SORT_RELEVANCE ? "float8" : "bigint", ci);
        }
    }
    sb_printf(&s, " ORDER BY %s LIMIT $%d::int)", order, lim);

    /* Hits, rendered for the page only. The snippet escapes the description
     * before ts_headline marks it, so the only markup in it is <mark>. */
    const char *snippet =
        m == MATCH_FULLTEXT
            ? "nullif(ts_headline(search_config($1::bigint), replace(replace(replace(p.description,"
              " '&', '&amp;'), '<', '&lt;'), '>', '&gt;'), tq.q, 'MaxWords=24, MinWords=8,"
              " MaxFragments=1, StartSel=<mark>, StopSel=</mark>'), '')"
            : "NULL::text";
    /* The same order over the page's alias g, and its reverse (the last hit). */
    const char *g_order, *g_last;
    switch (q->sort) {
    case SEARCH_SORT_PRICE:
        g_order = "g.base_price, g.id";
        g_last = "g.base_price DESC, g.id DESC";
        break;
    case SEARCH_SORT_PRICE_DESC:
        g_order = "g.base_price DESC, g.id DESC";
        g_last = "g.base_price, g.id";
        break;
    case SEARCH_SORT_NEWEST:
        g_order = "g.id DESC";
        g_last = "g.id";
        break;
    default:
        g_order = "g.score DESC, g.id DESC";
        g_last = "g.score, g.id";
        break;
    }
    sb_printf(&s,
              " SELECT json_build_object('data', (SELECT coalesce(json_agg(json_build_object("
              "'id', p.id, 'name', p.name, 'slug', p.slug, 'brand', p.brand, 'base_price',"
              " p.base_price, 'category_id', p.category_id, 'attributes', p.attributes,"
              " 'in_stock', g.in_stock, 'score', round(g.score::numeric, 6), 'snippet', %s)"
              " ORDER BY %s), '[]') FROM page g JOIN products p ON p.store_id = $1::bigint"
              " AND p.id = g.id CROSS JOIN tq)",
              snippet, g_order);

    /* Total and facets. */
    sb_printf(&s, ", 'total', (SELECT count(*) FROM base b WHERE true");
    where_but(&s, &f, -1, false);
    sb_printf(&s,
              "), 'facets', json_build_object('brand', (SELECT coalesce(json_agg("
              "json_build_object('value', t.brand, 'count', t.n) ORDER BY t.n DESC, t.brand),"
              " '[]') FROM (SELECT b.brand, count(*) AS n FROM base b WHERE b.brand IS NOT NULL");
    where_but(&s, &f, F_BRAND, false);
    sb_printf(&s, " GROUP BY b.brand ORDER BY n DESC, b.brand LIMIT 50) t)");
    sb_printf(&s,
              ", 'category', (SELECT coalesce(json_agg(json_build_object('id', c.id, 'name',"
              " c.name, 'slug', c.slug, 'count', t.n) ORDER BY t.n DESC, c.id), '[]') FROM"
              " (SELECT b.category_id, count(*) AS n FROM base b WHERE b.category_id IS NOT NULL");
    where_but(&s, &f, F_CAT, false);
    sb_printf(&s, " GROUP BY b.category_id ORDER BY n DESC, b.category_id LIMIT 50) t JOIN"
                  " categories c ON c.store_id = $1::bigint AND c.id = t.category_id)");
    sb_printf(&s, ", 'price', (SELECT coalesce(json_agg(json_build_object('min', "
                  "coalesce((" SEARCH_PRICE_BOUNDS ")[t.k], 0), 'max', (" SEARCH_PRICE_BOUNDS
                  ")[t.k + 1], 'count', t.n) ORDER BY t.k),"
                  " '[]') FROM (SELECT width_bucket(b.base_price, " SEARCH_PRICE_BOUNDS ") AS k,"
                  " count(*) AS n FROM base b WHERE true");
    where_but(&s, &f, F_PRICE, false);
    sb_printf(&s, " GROUP BY 1) t)");
    sb_printf(&s, ", 'in_stock', (SELECT count(*) FROM base b WHERE b.in_stock");
    where_but(&s, &f, F_STOCK, false);
    sb_printf(&s, ")");
    /* Attribute values: the 50 values of each name that cover the most
     * products, for the 50 names that cover the most. */
    sb_printf(&s,
              ", 'attributes', (SELECT coalesce(json_object_agg(t.k, t.vals), '{}') FROM"
              " (SELECT u.k, json_agg(json_build_object('value', u.x, 'count', u.n)"
              " ORDER BY u.n DESC, u.x) AS vals, sum(u.n) AS covered FROM (SELECT e.key AS k,"
              " x, count(*) AS n, row_number() OVER (PARTITION BY e.key ORDER BY count(*) DESC,"
              " x) AS rn FROM base b CROSS JOIN LATERAL jsonb_each(b.attrs) e CROSS JOIN LATERAL"
              " jsonb_array_elements_text(e.value) x WHERE true");
    where_but(&s, &f, -1, true);
    sb_printf(&s, " GROUP BY e.key, x) u WHERE u.rn <= 50 GROUP BY u.k ORDER BY covered DESC, u.k"
                  " LIMIT 50) t)))::text");
    /* The last hit of a full page, for next_cursor. */
    sb_printf(&s,
              ", (SELECT count(*) FROM page), (SELECT k FROM page g ORDER BY %s LIMIT 1),"
              " (SELECT id FROM page g ORDER BY %s LIMIT 1), EXISTS (SELECT 1 FROM base)",
              g_last, g_last);
    filters_free(&f);
    return s.p;
}

static const char *const match_names[] = {"all", "fulltext", "fuzzy"};

/* One search as a read-only transaction: its settings are local to it (JIT
 * off: compiling these plans costs more than running them; the fuzzy
 * threshold), so nothing leaks into the pooled connection. Full text first;
 * when q matches nothing at all, the fuzzy statement in the same transaction. */
typedef struct run_s {
    const search_query_t *q;
    const char *sid;
    match_t m;
    PGresult *res; /* the answer, or the failed statement */
} run_t;

static shopd_rc_t
run_statement(db_conn_t *c, run_t *x)
{
    params_t ps = {0};
    param(&ps, x->sid);
    param(&ps, x->q->q[0] ? x->q->q : NULL);
    char *sql = search_sql(x->q, x->m, &ps);
    PQclear(x->res);
    /* Unnamed: the SQL text varies with the filters present, and a plan made
     * for the values at hand suits a search better than a generic one. */
    x->res = db_exec(c, NULL, sql, ps.n, ps.v);
    shopd_free(sql);
    return db_result_rc(x->res);
}

static shopd_rc_t
run_tx(db_conn_t *c, void *arg)
{
    run_t *x = arg;
    PQclear(x->res);
    x->res = db_exec(c, "search_settings",
                     "SELECT set_config('jit', 'off', true),"
                     " set_config('pg_trgm.word_similarity_threshold', '" SEARCH_FUZZY_THRESHOLD
                     "', true)",
                     0, NULL);
    shopd_rc_t rc = db_result_rc(x->res);
    if (rc != SHOPD_OK)
        return rc;
    x->m = x->q->q[0] ? MATCH_FULLTEXT : MATCH_ALL;
    if ((rc = run_statement(c, x)) != SHOPD_OK)
        return rc;
    if (x->m == MATCH_FULLTEXT && PQgetvalue(x->res, 0, 4)[0] != 't') {
        x->m = MATCH_FUZZY;
        rc = run_statement(c, x);
    }
    return rc;
}

static net_reply_t *
pg_search(api_ctx_t *ctx, const search_query_t *q)
{
    db_conn_t *c = db_acquire(ctx->app->db, 2000);
    if (c == NULL)
        return api_unavailable("database");
    char sid[24];
    snprintf(sid, sizeof(sid), "%llu", (unsigned long long)ctx->store_id);
    run_t x = {.q = q, .sid = sid};
    net_reply_t *reply;
    if (db_tx(c, run_tx, &x) != SHOPD_OK || db_result_rc(x.res) != SHOPD_OK) {
        reply = x.res && db_result_rc(x.res) != SHOPD_OK ? api_db_error(ctx, x.res, "search")
                                                         : api_unavailable("database");
        goto done;
    }
    PGresult *r = x.res;
    sb_t b = {0};
    const char *json = PQgetvalue(r, 0, 0);
    size_t jl = (size_t)PQgetlength(r, 0, 0);
    /* Splice match, limit and next_cursor into PostgreSQL's object. */
    sb_printf(&b, "%.*s, \"match\": \"%s\", \"limit\": %d, \"next_cursor\": ", (int)(jl - 1), json,
              match_names[x.m], q->limit);
    char cur[200];
    if (atoi(PQgetvalue(r, 0, 1)) == q->limit && !PQgetisnull(r, 0, 3)) {
        uint64_t id = 0;
        shopd_id_parse(PQgetvalue(r, 0, 3), (size_t)PQgetlength(r, 0, 3), &id);
        if (search_cursor_format(q->sort, PQgetvalue(r, 0, 2), id, cur, sizeof(cur)))
            sb_printf(&b, "\"%s\"}", cur);
        else
            sb_printf(&b, "null}");
    } else {
        sb_printf(&b, "null}");
    }
    reply = api_raw_json(SHOPD_OK, b.p, b.n);
    shopd_free(b.p);
done:
    PQclear(x.res);
    db_release(c);
    return reply;
}

/* Prefix suggestions: names whose normalized form (search_name: lower case,
 * no punctuation, collation "C") starts with the normalized prefix: a range
 * of the (store_id, search_name, id) index, read in its order, 8 rows; the
 * categories likewise on lower(name) (text_pattern_ops). The pattern is made here with the
 * LIKE metacharacters escaped, and the statement is unnamed so the planner
 * sees the pattern's fixed prefix and scans the index as a range. */
static net_reply_t *
pg_suggest(api_ctx_t *ctx, const char *prefix)
{
    char pat[2 * 100 + 2], cpat[2 * 100 + 2];
    size_t o = 0, co = 0;
    for (const char *s = prefix; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch >= 'A' && ch <= 'Z')
            ch = (unsigned char)(ch - 'A' + 'a');
        /* Categories keep their punctuation in lower(name); products drop it. */
        if (ch == '%' || ch == '_' || ch == '\\')
            cpat[co++] = '\\';
        cpat[co++] = (char)ch;
        if (ch < 0x80 &&
            !((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == ' ' || ch == '\t'))
            continue;
        pat[o++] = (char)ch;
    }
    pat[o++] = '%';
    pat[o] = '\0';
    cpat[co++] = '%';
    cpat[co] = '\0';
    db_conn_t *c = db_acquire(ctx->app->db, 2000);
    if (c == NULL)
        return api_unavailable("database");
    char sid[24], lim[8];
    snprintf(sid, sizeof(sid), "%llu", (unsigned long long)ctx->store_id);
    snprintf(lim, sizeof(lim), "%d", SEARCH_SUGGEST_LIMIT);
    const char *p[4] = {sid, o > 1 ? pat : NULL, cpat, lim};
    PGresult *r = db_exec(
        c, NULL,
        "SELECT json_build_object('products', (SELECT coalesce(json_agg("
        "json_build_object('id', t.id, 'name', t.name, 'slug', t.slug) ORDER BY t.search_name,"
        " t.id), '[]') FROM (SELECT id, name, slug, search_name FROM products WHERE store_id ="
        " $1::bigint AND status = 'active' AND search_name LIKE lower($2) ORDER BY search_name,"
        " id LIMIT $4::int) t), 'categories', (SELECT coalesce(json_agg(json_build_object('id',"
        " t.id, 'name', t.name, 'slug', t.slug) ORDER BY lower(t.name), t.id), '[]') FROM (SELECT"
        " id, name, slug FROM categories WHERE store_id = $1::bigint AND lower(name) LIKE"
        " lower($3) ORDER BY lower(name), id LIMIT $4::int) t))::text",
        4, p);
    net_reply_t *reply;
    if (db_result_rc(r) != SHOPD_OK)
        reply = api_db_error(ctx, r, "search suggest");
    else
        reply = api_raw_json(SHOPD_OK, PQgetvalue(r, 0, 0), (size_t)PQgetlength(r, 0, 0));
    PQclear(r);
    db_release(c);
    return reply;
}

const search_backend_t search_pg_backend = {
    .name = "postgresql",
    .search = pg_search,
    .suggest = pg_suggest,
};
