/*
 * import.c: POST /api/v1/imports/products (products.import), the bulk load of a
 * catalog: up to CATALOG_IMPORT_MAX_ROWS products, each with its variants and
 * their initial stock, in one transaction on the store's actor. The admin
 * protocol's import.products cuts its rows into batches of this route, so
 * shopctl, shopbench seed and HTTP clients share one path.
 *
 * Why one statement and not products.create per row: a row per transaction is
 * a commit (an fsync) per product and a round trip per statement, about 600
 * rows/s; here a batch is three round trips (the shopd.bulk setting, the
 * insert, the commit) whatever its size, and the catalog version is bumped
 * once. Each product row is written once, with its search columns (sql/0021).
 *
 * Each bad row is reported with its reason and the others still go in: rows
 * are checked in C first (the same validation as products.create and
 * variants.create), then against each other (a slug or a SKU twice in the
 * batch), then against the store in the transaction: unknown category ids
 * before the insert, taken slugs and SKUs by the insert itself (ON CONFLICT DO
 * NOTHING). When the insert reports rows that hit a taken key (the store had
 * it, or another process serving the store took it meanwhile), the
 * transaction is rolled back, those rows are rejected and the others run
 * again, so nothing of a rejected row is ever written.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catalog_priv.h"

/* Attempts of a batch: the first finds the slugs and SKUs the store had, a
 * later one only those another writer took meanwhile (or a lost race on a key
 * the insert does not arbitrate); each rejects what it found and runs the rest. */
#define IMP_ATTEMPTS 3

typedef struct imp_row_s {
    cat_prod_input_t in;
    const char *category; /* a category slug (created when missing), or NULL */
    json_t *variants;     /* borrowed from the body, or NULL */
    json_t *err;          /* {index, code, message, details} once rejected */
} imp_row_t;

/* The JSON the insert reads: the products and variants of the rows not
 * rejected as records, and the category slugs they name. */
typedef struct imp_sql_s {
    char *cat_slugs, *products, *variants;
} imp_sql_t;

/* One batch, from the blocking lane (checked, its JSON built) to the store's
 * actor (written); owned by the pair (import_then or import_drop frees it). */
typedef struct imp_s {
    api_ctx_t *ctx; /* the handler's, then the actor's */
    json_t *body;   /* a reference: the rows' strings are borrowed from it */
    imp_row_t *rows;
    size_t n;
    char sid[24], uidbuf[24];
    const char *uid; /* uidbuf, or NULL (no user: a token) */
    imp_sql_t sql;   /* built for the rows valid so far; rebuilt after rejections */
    size_t built;    /* valid rows when sql was built */
    bool raced;      /* the insert hit a unique key another writer took meanwhile */
    bool again;      /* rows hit a taken slug or SKU: rejected now, the rest to run again */
    long long products, variants, categories;
} imp_t;

/* A key (slug or SKU) and the row it comes from, for the duplicate checks. */
typedef struct imp_key_s {
    const char *key;
    size_t row;
} imp_key_t;

static void
reject(imp_row_t *r, size_t index, const char *code, const char *message, json_t *details)
{
    if (r->err) {
        json_decref(details);
        return;
    }
    r->err = json_pack("{s:I,s:s,s:s,s:o}", "index", (json_int_t)index, "code", code, "message",
                       message, "details", details ? details : json_array());
}

static json_t *
one_detail(const char *field, const char *issue)
{
    return json_pack("[{s:s,s:s}]", "field", field, "issue", issue);
}

static json_t *
val_details(const api_val_t *v)
{
    json_t *d = json_array();
    for (size_t i = 0; i < v->n; i++)
        json_array_append_new(d,
                              json_pack("{s:s,s:s}", "field", v->fields[i], "issue", v->issues[i]));
    return d;
}

static int
key_cmp(const void *a, const void *b)
{
    const imp_key_t *x = a, *y = b;
    int c = strcmp(x->key, y->key);
    return c ? c : (x->row < y->row ? -1 : x->row > y->row);
}

/* Checks row i of the body into im->rows[i]: the product as products.create
 * reads it, its variants as variants.create does (field names prefixed
 * variants[j].), each variant's options once per product. */
static void
check_row(imp_t *im, size_t i)
{
    imp_row_t *r = &im->rows[i];
    json_t *x = json_array_get(json_object_get(im->body, "rows"), i);
    if (!json_is_object(x)) {
        reject(r, i, "validation_failed", "a row must be a JSON object", NULL);
        return;
    }
    api_val_t v = {0};
    json_t *p = json_copy(x); /* shallow: the strings read stay owned by the body */
    json_object_del(p, "variants");
    json_object_del(p, "category");
    if (json_object_get(p, "option_value_ids")) {
        api_val_add(&v, "option_value_ids",
                    "not taken by the import: set it with PATCH /api/v1/products/:id");
        json_object_del(p, "option_value_ids");
    }
    cat_product_validate(&v, p, &r->in, true);
    json_decref(p);
    json_t *cat = json_object_get(x, "category");
    if (cat && !json_is_null(cat)) {
        r->category = json_string_value(cat);
        if (r->category == NULL || !cat_slug_valid(r->category)) {
            api_val_add(&v, "category",
                        "must be a category slug (created when the store has none)");
            r->category = NULL;
        } else if (r->in.category_given) {
            api_val_add(&v, "category", "give category or category_id, not both");
        }
    }
    json_t *vs = json_object_get(x, "variants");
    if (vs && !json_is_null(vs)) {
        if (!json_is_array(vs) || json_array_size(vs) > CATALOG_MAX_VARIANTS) {
            char issue[80];
            snprintf(issue, sizeof(issue), "must be a list of at most %d variants",
                     CATALOG_MAX_VARIANTS);
            api_val_add(&v, "variants", issue);
        } else {
            r->variants = vs;
        }
    }
    size_t nv = json_array_size(r->variants);
    char **opts = shopd_calloc(nv ? nv : 1, sizeof(char *));
    for (size_t j = 0; j < nv && v.n < API_MAX_ISSUES; j++) {
        json_t *vj = json_array_get(r->variants, j);
        char field[96];
        if (!json_is_object(vj)) {
            snprintf(field, sizeof(field), "variants[%zu]", j);
            api_val_add(&v, field, "must be a JSON object");
            continue;
        }
        api_val_t vv = {0};
        cat_var_input_t vin;
        cat_variant_validate(&vv, vj, &vin, true);
        for (size_t k = 0; k < vv.n; k++) {
            snprintf(field, sizeof(field), "variants[%zu].%s", j, vv.fields[k]);
            api_val_add(&v, field, vv.issues[k]);
        }
        free(vin.options);
        /* Options compare as jsonb does once keys are sorted (values are strings). */
        json_t *o = json_object_get(vj, "options");
        /* No options: "{}" (a json_object() made here would be lost). */
        opts[j] = json_is_object(o) ? json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS) : strdup("{}");
        for (size_t k = 0; k < j && opts[j]; k++) {
            if (opts[k] && !strcmp(opts[k], opts[j])) {
                snprintf(field, sizeof(field), "variants[%zu].options", j);
                api_val_add(&v, field, "another variant of this product has the same options");
                break;
            }
        }
    }
    for (size_t j = 0; j < nv; j++)
        free(opts[j]);
    shopd_free(opts);
    if (v.n)
        reject(r, i, "validation_failed", "the row has invalid fields", val_details(&v));
}

/* A slug or SKU used by an earlier accepted row of the batch rejects the later. */
static void
check_twins(imp_t *im, bool skus)
{
    size_t cap = 0, n = 0;
    for (size_t i = 0; i < im->n; i++)
        cap += skus ? json_array_size(im->rows[i].variants) : 1;
    imp_key_t *keys = shopd_malloc((cap ? cap : 1) * sizeof(*keys));
    for (size_t i = 0; i < im->n; i++) {
        imp_row_t *r = &im->rows[i];
        if (r->err)
            continue;
        if (!skus) {
            keys[n++] = (imp_key_t){r->in.slug, i};
            continue;
        }
        for (size_t j = 0; j < json_array_size(r->variants); j++)
            keys[n++] = (imp_key_t){
                json_string_value(json_object_get(json_array_get(r->variants, j), "sku")), i};
    }
    qsort(keys, n, sizeof(*keys), key_cmp);
    for (size_t k = 1; k < n; k++) {
        if (strcmp(keys[k].key, keys[k - 1].key) != 0)
            continue;
        imp_row_t *r = &im->rows[keys[k].row];
        if (keys[k].row == keys[k - 1].row) /* the store's unique key: one row may not either */
            reject(r, keys[k].row, "validation_failed", "the row has invalid fields",
                   one_detail("variants.sku", "repeated within this row"));
        else if (skus)
            reject(r, keys[k].row, "sku_taken", "an earlier row of this import uses this SKU",
                   one_detail("variants.sku", "used by an earlier row"));
        else
            reject(r, keys[k].row, "slug_taken", "an earlier row of this import uses this slug",
                   one_detail("slug", "used by an earlier row"));
    }
    shopd_free(keys);
}

static void
sql_free(imp_sql_t *s)
{
    free(s->cat_slugs);
    free(s->products);
    free(s->variants);
    memset(s, 0, sizeof(*s));
}

static void
set_str(json_t *o, const char *key, const char *s)
{
    if (s)
        json_object_set_new(o, key, json_string(s));
}

static void
build(const imp_t *im, imp_sql_t *s)
{
    json_t *cslugs = json_array(), *prods = json_array(), *vars = json_array();
    for (size_t i = 0; i < im->n; i++) {
        const imp_row_t *r = &im->rows[i];
        if (r->err)
            continue;
        const cat_prod_input_t *in = &r->in;
        if (r->category)
            json_array_append_new(cslugs, json_string(r->category));
        /* A field left out is NULL to json_to_recordset: nulls are not sent
         * (less JSON for PostgreSQL to read). */
        json_t *row = json_pack("{s:I,s:s,s:s,s:I}", "i", (json_int_t)i, "name", in->name, "slug",
                                in->slug, "base_price", (json_int_t)atoll(in->price));
        if (in->category[0])
            json_object_set_new(row, "category_id", json_integer(atoll(in->category)));
        set_str(row, "category", r->category);
        set_str(row, "description", in->description);
        set_str(row, "status", in->status);
        set_str(row, "brand", in->brand);
        if (in->attributes)
            json_object_set_new(row, "attributes", json_loads(in->attributes, 0, NULL));
        json_array_append_new(prods, row);
        for (size_t j = 0; j < json_array_size(r->variants); j++) {
            json_t *v = json_array_get(r->variants, j);
            json_t *o = json_object_get(v, "options");
            json_t *vr = json_pack("{s:I,s:s,s:I,s:O}", "i", (json_int_t)i, "slug", in->slug, "n",
                                   (json_int_t)j, "sku", json_object_get(v, "sku"));
            static const char *const copy[] = {"price", "stock", "weight_g", "barcode", "position"};
            for (size_t k = 0; k < SHOPD_ARRAY_LEN(copy); k++) {
                json_t *f = json_object_get(v, copy[k]);
                if (f && !json_is_null(f))
                    json_object_set(vr, copy[k], f);
            }
            if (json_is_object(o))
                json_object_set(vr, "options", o);
            json_array_append_new(vars, vr);
        }
    }
    s->cat_slugs = json_dumps(cslugs, JSON_COMPACT);
    s->products = json_dumps(prods, JSON_COMPACT);
    s->variants = json_dumps(vars, JSON_COMPACT);
    json_decref(cslugs);
    json_decref(prods);
    json_decref(vars);
}

static size_t
valid_rows(const imp_t *im)
{
    size_t n = 0;
    for (size_t i = 0; i < im->n; i++)
        n += im->rows[i].err == NULL;
    return n;
}

/* Rejects the rows whose category_id the store has not (inside the
 * transaction, before the insert). Only when a row gives one: a row naming its
 * category by slug has it made, and taken slugs and SKUs are found by the
 * insert itself (ON CONFLICT, below), not probed first. */
static shopd_rc_t
check_categories(imp_t *im, db_conn_t *c, net_reply_t **reply)
{
    json_t *ids = json_array();
    for (size_t i = 0; i < im->n; i++)
        if (!im->rows[i].err && im->rows[i].in.category[0])
            json_array_append_new(ids, json_string(im->rows[i].in.category));
    if (json_array_size(ids) == 0) {
        json_decref(ids);
        return SHOPD_OK;
    }
    char *text = json_dumps(ids, JSON_COMPACT);
    json_decref(ids);
    const char *p[2] = {im->sid, text};
    PGresult *r =
        db_exec(c, "imp_check_cats",
                "SELECT id::text FROM categories WHERE store_id = $1::bigint"
                " AND id = ANY (ARRAY(SELECT json_array_elements_text($2::json)::bigint))",
                2, p);
    free(text);
    shopd_rc_t rc = db_result_rc(r);
    if (rc != SHOPD_OK) {
        *reply = api_db_error(im->ctx, r, "product import check");
        PQclear(r);
        return rc;
    }
    json_t *found = json_object();
    for (int t = 0; t < PQntuples(r); t++)
        json_object_set_new(found, PQgetvalue(r, t, 0), json_true());
    for (size_t i = 0; i < im->n; i++) {
        imp_row_t *row = &im->rows[i];
        if (!row->err && row->in.category[0] && !json_object_get(found, row->in.category))
            reject(row, i, "validation_failed", "the row has invalid fields",
                   one_detail("category_id", "no such category"));
    }
    json_decref(found);
    PQclear(r);
    return SHOPD_OK;
}

/* Rejects the rows listed in a JSON array of row indexes (the insert's
 * conflicts); returns how many it rejected. */
static size_t
reject_listed(imp_t *im, const char *list, bool skus)
{
    json_t *a = json_loads(list, 0, NULL);
    size_t k;
    json_t *x;
    size_t n = 0;
    json_array_foreach(a, k, x)
    {
        json_int_t i = json_integer_value(x);
        if (i < 0 || (size_t)i >= im->n || im->rows[i].err)
            continue;
        if (skus)
            reject(&im->rows[i], (size_t)i, "sku_taken", "another variant uses this SKU",
                   one_detail("variants.sku", "already taken"));
        else
            reject(&im->rows[i], (size_t)i, "slug_taken", "another product uses this slug",
                   one_detail("slug", "already taken"));
        n++;
    }
    json_decref(a);
    return n;
}

/* The batch in one statement: missing categories first (named by their slug),
 * then the products in row order, each with its search columns computed here
 * from its own fields and its variants (sql/0021: search_attrs_of,
 * search_doc_of, search_name_of, the functions the trigger uses), then their
 * variants joined by slug (unique in the store), then the initial stock of
 * each as its first ledger row, so stock = sum(delta). shopd.bulk, on for this
 * transaction only, tells the search triggers the rows are indexed already:
 * each product row is written once, not inserted and then re-indexed.
 *
 * Taken slugs and SKUs: ON CONFLICT DO NOTHING on the two unique keys (the
 * index itself answers, whatever the planner thinks of a store that grew since
 * its statistics; a per-key probe before the insert, planned for a store of
 * "one row", scanned the whole store for every key). The statement returns the
 * rows that conflicted; when there are any, the transaction is rolled back,
 * those rows are rejected, and the rest run again: nothing of a rejected row
 * is ever written. The categories the store had are read beside the new ones:
 * a statement's CTEs all see the snapshot from before it (so a category slug
 * another writer made while the statement ran resolves to nothing: the batch
 * runs again too). */
static const char imp_insert_sql[] =
    "WITH r AS (SELECT * FROM json_to_recordset($2::json) AS r(i int, category_id bigint,"
    "  category text, name text, slug text, description text, base_price bigint, status text,"
    "  brand text, attributes jsonb)),"
    " x AS (SELECT * FROM json_to_recordset($3::json) AS x(i int, slug text, n int, sku text,"
    "  options jsonb, price bigint, stock int, weight_g int, barcode text, position int)),"
    " c AS (INSERT INTO categories (store_id, name, slug)"
    "  SELECT DISTINCT $1::bigint, s, s FROM json_array_elements_text($4::json) s"
    "  ON CONFLICT (store_id, slug) DO NOTHING RETURNING id, slug),"
    " ac AS (SELECT id, slug FROM c UNION ALL SELECT id, slug FROM categories"
    "  WHERE store_id = $1::bigint"
    "  AND slug = ANY (ARRAY(SELECT json_array_elements_text($4::json)))),"
    " d0 AS (SELECT r.i, r.category_id, r.category, r.name, r.slug,"
    "  coalesce(r.description, '') AS descr, r.base_price, coalesce(r.status, 'draft') AS status,"
    "  r.brand, coalesce(r.attributes, '{}'::jsonb) AS attrs, xs.skus,"
    "  coalesce(xs.opts, '[]'::jsonb) AS opts"
    "  FROM r LEFT JOIN (SELECT slug, string_agg(sku, ' ' ORDER BY n) AS skus,"
    "   jsonb_agg(coalesce(options, '{}'::jsonb) ORDER BY n) AS opts FROM x GROUP BY slug) xs"
    "  ON xs.slug = r.slug),"
    /* search_attrs_of once per distinct pair of attributes and option sets
     * (products of a catalog mostly share their sizes and colours: about a
     * tenth of the statement's time when each row had its call). Both
     * MATERIALIZED: a subquery pulled up into its caller would evaluate the
     * call per row of the join, or twice a row in p. */
    " sa AS MATERIALIZED (SELECT attrs, opts, search_attrs_of(attrs, opts) AS sattrs"
    "  FROM (SELECT DISTINCT attrs, opts FROM d0) u),"
    " d AS MATERIALIZED (SELECT d0.*, sa.sattrs FROM d0 JOIN sa"
    "  ON sa.attrs = d0.attrs AND sa.opts = d0.opts),"
    " p AS (INSERT INTO products (store_id, category_id, name, slug, description, base_price,"
    "  status, brand, attributes, search_doc, search_attrs, search_name)"
    "  SELECT $1::bigint, coalesce(d.category_id, ac.id), d.name, d.slug, d.descr, d.base_price,"
    "  d.status, d.brand, d.attrs,"
    "  search_doc_of((SELECT search_config($1::bigint)), d.name, d.brand, d.descr, d.skus,"
    "  d.sattrs), d.sattrs, search_name_of(d.name)"
    "  FROM d LEFT JOIN ac ON ac.slug = d.category ORDER BY d.i"
    "  ON CONFLICT (store_id, slug) DO NOTHING RETURNING id, slug),"
    " v AS (INSERT INTO product_variants (store_id, product_id, sku, options, price, stock,"
    "  weight_g, barcode, position)"
    "  SELECT $1::bigint, p.id, x.sku, coalesce(x.options, '{}'::jsonb), x.price,"
    "  coalesce(x.stock, 0), x.weight_g, x.barcode, coalesce(x.position, x.n)"
    "  FROM x JOIN p ON p.slug = x.slug ORDER BY p.id, x.n"
    "  ON CONFLICT (store_id, sku) DO NOTHING RETURNING store_id, id, stock, sku),"
    " m AS (INSERT INTO inventory_movements (store_id, variant_id, delta, reason, actor_user_id)"
    "  SELECT store_id, id, stock, 'initial stock', $5::bigint FROM v WHERE stock > 0)"
    /* The conflicts, looked for only when a count falls short. */
    " SELECT (SELECT count(*) FROM p), (SELECT count(*) FROM v), (SELECT count(*) FROM c),"
    "  CASE WHEN (SELECT count(*) FROM p) < (SELECT count(*) FROM r) THEN"
    "  (SELECT json_agg(r.i) FROM r LEFT JOIN p ON p.slug = r.slug WHERE p.slug IS NULL) END,"
    "  CASE WHEN (SELECT count(*) FROM v) < (SELECT count(*) FROM x) THEN"
    "  (SELECT json_agg(DISTINCT x.i) FROM x JOIN p ON p.slug = x.slug"
    "   LEFT JOIN v ON v.sku = x.sku WHERE v.sku IS NULL) END,"
    /* A category another process made meanwhile: c skipped it, ac cannot see it. */
    "  (SELECT count(*) FROM d LEFT JOIN ac ON ac.slug = d.category"
    "   WHERE d.category IS NOT NULL AND ac.id IS NULL)";

static shopd_rc_t
import_tx(api_ctx_t *ctx, db_conn_t *c, void *arg, net_reply_t **reply)
{
    imp_t *im = arg;
    im->products = im->variants = im->categories = 0;
    shopd_rc_t rc = check_categories(im, c, reply);
    if (rc != SHOPD_OK || valid_rows(im) == 0)
        return rc;
    /* Plans this connection cached while the catalog was small (the foreign-key
     * checks' above all: planned once per connection, kept until the table is
     * analyzed) may scan what is now a large table, once per inserted row: a
     * pooled connection that served the first products of a store checked each
     * variant's product with a scan of the store's products, 2-5x the time of
     * the whole batch, until autovacuum's ANALYZE. Dropping them costs a few
     * plannings a batch; what is planned again sees the table's real size. */
    PGresult *r = db_exec(c, NULL, "DISCARD PLANS", 0, NULL);
    rc = db_result_rc(r);
    PQclear(r);
    if (rc != SHOPD_OK) {
        *reply = api_internal(ctx, "product import: DISCARD PLANS failed");
        return rc;
    }
    r = db_exec(c, "imp_bulk", "SELECT set_config('shopd.bulk', 'on', true)", 0, NULL);
    rc = db_result_rc(r);
    if (rc != SHOPD_OK) {
        *reply = api_db_error(ctx, r, "product import");
        PQclear(r);
        return rc;
    }
    PQclear(r);
    size_t valid = valid_rows(im);
    if (im->sql.products == NULL || im->built != valid) { /* rows rejected since it was built */
        sql_free(&im->sql);
        build(im, &im->sql);
        im->built = valid;
    }
    const char *p[5] = {im->sid, im->sql.products, im->sql.variants, im->sql.cat_slugs, im->uid};
    r = db_exec(c, "imp_insert", imp_insert_sql, 5, p);
    rc = db_result_rc(r);
    if (rc == SHOPD_CONFLICT)
        im->raced = true; /* a unique key the insert does not arbitrate (a lost race) */
    if (rc != SHOPD_OK) {
        *reply = api_db_error(ctx, r, "product import");
        PQclear(r);
        return rc;
    }
    size_t taken = 0;
    if (!PQgetisnull(r, 0, 3))
        taken += reject_listed(im, PQgetvalue(r, 0, 3), false);
    if (!PQgetisnull(r, 0, 4))
        taken += reject_listed(im, PQgetvalue(r, 0, 4), true);
    if (taken > 0 || atoll(PQgetvalue(r, 0, 5)) > 0) {
        /* Rows of this attempt hit a taken key, or a category slug that another
         * writer made while it ran: undo it all, run the rest again (the next
         * attempt's snapshot sees that category). */
        im->again = true;
        PQclear(r);
        return SHOPD_CONFLICT;
    }
    im->products = atoll(PQgetvalue(r, 0, 0));
    im->variants = atoll(PQgetvalue(r, 0, 1));
    im->categories = atoll(PQgetvalue(r, 0, 2));
    PQclear(r);
    return SHOPD_OK;
}

static void
imp_free(imp_t *im)
{
    if (im == NULL)
        return;
    for (size_t i = 0; i < im->n; i++) {
        cat_product_input_free(&im->rows[i].in);
        json_decref(im->rows[i].err);
    }
    shopd_free(im->rows);
    sql_free(&im->sql);
    json_decref(im->body);
    shopd_free(im);
}

static void
import_drop(void *arg)
{
    imp_free(arg);
}

/* {imported, variants, categories_created, rejected}: the batch's answer. */
static net_reply_t *
import_answer(const imp_t *im)
{
    json_t *rejected = json_array();
    for (size_t i = 0; i < im->n; i++)
        if (im->rows[i].err)
            json_array_append(rejected, im->rows[i].err);
    return api_json(SHOPD_OK, json_pack("{s:I,s:I,s:I,s:o}", "imported", (json_int_t)im->products,
                                        "variants", (json_int_t)im->variants, "categories_created",
                                        (json_int_t)im->categories, "rejected", rejected));
}

/* The ordered half, on the store's actor: the batch's transaction (run again
 * without the rows an attempt found taken), the catalog version, the answer. */
static net_reply_t *
import_then(api_ctx_t *ctx, void *arg)
{
    imp_t *im = arg;
    im->ctx = ctx;
    net_reply_t *reply = NULL;
    for (int attempt = 1; attempt <= IMP_ATTEMPTS; attempt++) {
        im->raced = im->again = false;
        reply = cat_tx(ctx, import_tx, im);
        if (reply == NULL || !(im->raced || im->again) || attempt == IMP_ATTEMPTS)
            break;
        net_reply_free(reply);
        reply = NULL;
        im->products = im->variants = im->categories = 0; /* rolled back */
        if (valid_rows(im) == 0)
            break; /* every row is rejected: nothing left to write */
    }
    if (reply == NULL) {
        if (im->products > 0)
            cat_bump(ctx); /* once per batch */
        reply = import_answer(im);
    } /* else the batch failed as a whole: nothing of it was written */
    imp_free(im);
    return reply;
}

/* The route's handler runs on the store's blocking lane (products.import is
 * API_BLOCKING | API_ONE_LANE): the body is read, every row checked and the
 * insert's JSON built there, then the transaction goes to the store's actor
 * (api_ordered_then), in order with its other mutations. So while the actor
 * waits for PostgreSQL to write one batch, the lane reads and checks the next
 * (an admin import keeps two batches in flight); one lane per store keeps the
 * batches of an import in the order they came. */
net_reply_t *
catalog_h_product_import(api_ctx_t *ctx)
{
    static const char *const allowed[] = {"rows", NULL};
    api_val_t v = {0};
    json_t *rows = json_object_get(ctx->body, "rows");
    api_val_only(&v, ctx->body, allowed);
    if (!json_is_array(rows) || json_array_size(rows) == 0 ||
        json_array_size(rows) > CATALOG_IMPORT_MAX_ROWS) {
        char issue[80];
        snprintf(issue, sizeof(issue), "must be a list of 1 to %d products",
                 CATALOG_IMPORT_MAX_ROWS);
        api_val_add(&v, "rows", issue);
    }
    if (v.n)
        return api_val_reply(&v);
    imp_t *im = shopd_calloc(1, sizeof(*im));
    im->ctx = ctx;
    im->body = json_incref(ctx->body);
    im->n = json_array_size(rows);
    cat_sid(ctx, im->sid);
    if (ctx->caller && ctx->caller->user_id) {
        snprintf(im->uidbuf, sizeof(im->uidbuf), "%llu", (unsigned long long)ctx->caller->user_id);
        im->uid = im->uidbuf;
    }
    im->rows = shopd_calloc(im->n, sizeof(*im->rows));
    for (size_t i = 0; i < im->n; i++)
        check_row(im, i);
    check_twins(im, false);
    check_twins(im, true);
    size_t valid = valid_rows(im);
    if (valid == 0) {
        net_reply_t *reply = import_answer(im);
        imp_free(im);
        return reply;
    }
    build(im, &im->sql);
    im->built = valid;
    im->ctx = NULL; /* the handler's ctx ends here; import_then sets the actor's */
    net_reply_t *reply = api_ordered_then(ctx, import_then, import_drop, im);
    if (reply == NULL) {
        imp_free(im);
        reply = api_fail(SHOPD_BUSY, "store_busy", "too many requests are queued for this store");
        net_reply_add_header(reply, "Retry-After", "1");
    }
    return reply;
}
