/*
 * variants.c: product variants (CRUD and generation from the product's chosen
 * attribute values) and inventory: the batched stock endpoint and the ledger.
 *
 * Stock changes only through PATCH /variants/:id/inventory (and a variant's
 * initial stock), and each change writes an inventory_movements row in the same
 * statement, so stock always equals the sum of the variant's ledger.
 *
 * The inventory route is a batch route: the store's actor hands over every
 * queued adjustment of one turn; they run as one db_tx_batch (one transaction,
 * one commit for a burst on a hot SKU, a savepoint each pipelined with its
 * statement), so each succeeds or fails on its own. The guard is still the conditional UPDATE
 * (stock + delta >= 0), which holds even when two processes serve one store.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catalog_priv.h"
#include "shopd/log.h"

#define CAT_STR_(x) #x
#define CAT_STR(x) CAT_STR_(x)

#define VARIANT_SELECT                                                                             \
    "SELECT " CAT_VARIANT_JSON("v", "p") "::text FROM product_variants v JOIN products p"          \
                                         " ON p.store_id = v.store_id AND p.id = v.product_id"

static net_reply_t *
not_found(void)
{
    return api_fail(SHOPD_NOTFOUND, "variant_not_found", "no such variant");
}

static net_reply_t *
product_not_found(void)
{
    return api_fail(SHOPD_NOTFOUND, "product_not_found", "no such product");
}

/* ------------------------------------------------------------ reads */

static net_reply_t *
list(api_ctx_t *ctx)
{
    char sid[24], pid[24];
    if (!cat_id_param(ctx, "id", pid))
        return product_not_found();
    const char *p[3] = {cat_sid(ctx, sid), pid, cat_is_admin(ctx) ? "t" : "f"};
    net_reply_t *reply = NULL;
    db_conn_t *c = cat_acquire(ctx, &reply);
    if (c == NULL)
        return reply;
    PGresult *r =
        db_exec(c, "var_list",
                "SELECT json_build_object('data', (SELECT coalesce(json_agg(" CAT_VARIANT_JSON(
                    "v", "p") " ORDER BY v.position, v.id), '[]') FROM product_variants v"
                              " WHERE v.store_id = p.store_id AND v.product_id = p.id))::text"
                              " FROM products p WHERE p.store_id = $1::bigint AND p.id = $2::bigint"
                              " AND ($3::bool OR p.status = 'active')",
                3, p);
    reply = cat_one_row(ctx, r, "variant list", "product_not_found", "no such product");
    db_release(c);
    return reply;
}

net_reply_t *
catalog_h_variant_list(api_ctx_t *ctx)
{
    return cat_cached(ctx, list);
}

static net_reply_t *
get_one(api_ctx_t *ctx)
{
    char sid[24], id[24];
    if (!cat_id_param(ctx, "id", id))
        return not_found();
    const char *p[3] = {cat_sid(ctx, sid), id, cat_is_admin(ctx) ? "t" : "f"};
    net_reply_t *reply = NULL;
    db_conn_t *c = cat_acquire(ctx, &reply);
    if (c == NULL)
        return reply;
    PGresult *r = db_exec(c, "var_get",
                          VARIANT_SELECT " WHERE v.store_id = $1::bigint AND v.id = $2::bigint"
                                         " AND ($3::bool OR p.status = 'active')",
                          3, p);
    reply = cat_one_row(ctx, r, "variant get", "variant_not_found", "no such variant");
    db_release(c);
    return reply;
}

net_reply_t *
catalog_h_variant_get(api_ctx_t *ctx)
{
    return cat_cached(ctx, get_one);
}

net_reply_t *
catalog_h_variant_movements(api_ctx_t *ctx)
{
    char sid[24], id[24];
    if (!cat_id_param(ctx, "id", id))
        return not_found();
    const char *p[2] = {cat_sid(ctx, sid), id};
    net_reply_t *reply = NULL;
    db_conn_t *c = cat_acquire(ctx, &reply);
    if (c == NULL)
        return reply;
    PGresult *r = db_exec(
        c, "var_movements",
        "SELECT json_build_object('variant_id', v.id, 'stock', v.stock,"
        " 'ledger_sum', (SELECT coalesce(sum(delta), 0) FROM inventory_movements m"
        "  WHERE m.store_id = v.store_id AND m.variant_id = v.id),"
        " 'movements', (SELECT coalesce(json_agg(json_build_object('id', x.id, 'delta', x.delta,"
        "  'reason', x.reason, 'actor_user_id', x.actor_user_id, 'order_id', x.order_id,"
        "  'created_at', x.created_at) ORDER BY x.id DESC), '[]') FROM (SELECT * FROM "
        "inventory_movements m"
        "  WHERE m.store_id = v.store_id AND m.variant_id = v.id ORDER BY m.id DESC LIMIT 100) "
        "x))::text"
        " FROM product_variants v WHERE v.store_id = $1::bigint AND v.id = $2::bigint",
        2, p);
    reply = cat_one_row(ctx, r, "variant movements", "variant_not_found", "no such variant");
    db_release(c);
    return reply;
}

/* A query integer in min..max, or def when absent; false (an issue recorded)
 * when it is not one. */
static bool
query_int(api_ctx_t *ctx, api_val_t *v, const char *name, long min, long max, long def, long *out)
{
    char buf[32];
    const char *s = api_query_param(ctx->env, name, buf, sizeof(buf));
    *out = def;
    if (s == NULL)
        return true;
    char *end;
    errno = 0;
    long n = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || errno != 0 || n < min || n > max) {
        char issue[96];
        snprintf(issue, sizeof(issue), "must be an integer from %ld to %ld", min, max);
        api_val_add(v, name, issue);
        return false;
    }
    *out = n;
    return true;
}

/* GET /admin/inventory/low-stock: the variants a store admin should restock,
 * those of draft and active products (archived ones are not sold) with stock
 * at or below threshold, lowest stock first. One read of the store's variants
 * (its primary key range); no cache: an admin expects the stock as it is. */
net_reply_t *
catalog_h_low_stock(api_ctx_t *ctx)
{
    api_val_t v = {0};
    long threshold, limit;
    query_int(ctx, &v, "threshold", 0, 1000000000, 5, &threshold);
    query_int(ctx, &v, "limit", 1, 200, 50, &limit);
    if (v.n)
        return api_val_reply(&v);
    char sid[24], th[24], lim[24];
    snprintf(th, sizeof(th), "%ld", threshold);
    snprintf(lim, sizeof(lim), "%ld", limit);
    const char *p[3] = {cat_sid(ctx, sid), th, lim};
    net_reply_t *reply = NULL;
    db_conn_t *c = cat_acquire(ctx, &reply);
    if (c == NULL)
        return reply;
    PGresult *r = db_exec(
        c, "var_low_stock",
        "SELECT json_build_object('threshold', $2::int, 'limit', $3::int, 'data',"
        " coalesce(json_agg(json_build_object('variant_id', x.id, 'product_id', x.product_id,"
        " 'product_name', x.name, 'product_status', x.status, 'sku', x.sku, 'options', x.options,"
        " 'stock', x.stock) ORDER BY x.stock, x.id), '[]'))::text FROM ("
        "SELECT v.id, v.product_id, p.name, p.status, v.sku, v.options, v.stock"
        " FROM product_variants v JOIN products p ON p.store_id = v.store_id AND p.id = "
        "v.product_id"
        " WHERE v.store_id = $1::bigint AND v.stock <= $2::int AND p.status <> 'archived'"
        " ORDER BY v.stock, v.id LIMIT $3::int) x",
        3, p);
    reply = cat_one_row(ctx, r, "low stock", "variant_not_found", "no such variant");
    db_release(c);
    return reply;
}

/* ------------------------------------------------------------ writes */

void
cat_variant_validate(api_val_t *v, json_t *b, cat_var_input_t *in, bool create)
{
    static const char *const allowed[] = {"sku",      "options", "price",    "stock",
                                          "weight_g", "barcode", "position", NULL};
    long long n;
    memset(in, 0, sizeof(*in));
    api_val_only(v, b, allowed);
    in->sku = api_val_string(v, b, "sku", create, 1, 64);
    json_t *o = json_object_get(b, "options");
    if (o && !json_is_null(o)) {
        const char *k;
        json_t *x;
        bool ok = json_is_object(o) && json_object_size(o) <= 10;
        json_object_foreach(o, k, x)
        {
            if (!json_is_string(x) || json_string_length(x) < 1 || json_string_length(x) > 100 ||
                strlen(k) < 1 || strlen(k) > 100)
                ok = false;
        }
        if (!ok)
            api_val_add(v, "options",
                        "must be an object of at most 10 option names to string values");
        else
            in->options = json_dumps(o, JSON_COMPACT);
    }
    if (json_object_get(b, "price")) {
        in->price_given = true;
        if (api_val_int(v, b, "price", 0, INT64_MAX / 2, &n) == 1)
            snprintf(in->price, sizeof(in->price), "%lld", n);
    }
    if (json_object_get(b, "stock")) {
        if (!create)
            api_val_add(v, "stock", "change stock with PATCH /api/v1/variants/:id/inventory");
        else if (api_val_int(v, b, "stock", 0, 1000000000, &n) == 1)
            snprintf(in->stock, sizeof(in->stock), "%lld", n);
    }
    if (json_object_get(b, "weight_g")) {
        in->weight_given = true;
        if (api_val_int(v, b, "weight_g", 0, 100000000, &n) == 1)
            snprintf(in->weight, sizeof(in->weight), "%lld", n);
    }
    if (json_object_get(b, "barcode")) {
        in->barcode_given = true;
        in->barcode = api_val_string(v, b, "barcode", false, 1, 64);
    }
    if (api_val_int(v, b, "position", -1000000, 1000000, &n) == 1)
        snprintf(in->pos, sizeof(in->pos), "%lld", n);
}

static const char *
actor_id(const api_ctx_t *ctx, char *buf)
{
    if (ctx->caller == NULL || ctx->caller->user_id == 0)
        return NULL;
    snprintf(buf, 24, "%llu", (unsigned long long)ctx->caller->user_id);
    return buf;
}

/* A variant create: its parameters and, once it ran, the new row. */
typedef struct var_create_s {
    const char *const *p;  /* var_create's 10 parameters */
    const char *const *pc; /* var_create_why's 3 */
    PGresult *r;
} var_create_t;

static shopd_rc_t
create_tx(api_ctx_t *ctx, db_conn_t *c, void *arg, net_reply_t **reply)
{
    var_create_t *w = arg;
    PQclear(w->r);
    /* The initial stock is the variant's first ledger row, in the same statement. */
    w->r = db_exec(
        c, "var_create",
        "WITH v AS (INSERT INTO product_variants (store_id, product_id, sku, options, price, "
        "stock, weight_g, barcode, position)"
        " SELECT $1::bigint, p.id, $3, coalesce($4::jsonb, '{}'::jsonb), $5::bigint, "
        "coalesce($6::int, 0), $7::int, $8,"
        " coalesce($9::int, 0) FROM products p WHERE p.store_id = $1::bigint AND p.id = $2::bigint"
        " AND (SELECT count(*) FROM product_variants w WHERE w.store_id = $1::bigint AND "
        "w.product_id = $2::bigint) < " CAT_STR(
            CATALOG_MAX_VARIANTS) " RETURNING *),"
                                  " m AS (INSERT INTO inventory_movements (store_id, variant_id, "
                                  "delta, reason, actor_user_id)"
                                  " SELECT store_id, id, stock, 'initial stock', $10::bigint FROM "
                                  "v WHERE stock > 0)"
                                  " SELECT v.id, " CAT_VARIANT_JSON(
                                      "v", "p") "::text FROM v JOIN products p ON p.store_id = "
                                                "v.store_id AND p.id = v.product_id",
        10, w->p);
    shopd_rc_t rc = db_result_rc(w->r);
    if (rc != SHOPD_OK) {
        *reply = api_db_error(ctx, w->r, "variant create");
        return rc;
    }
    if (PQntuples(w->r) > 0)
        return SHOPD_OK;
    /* Nothing inserted: say why. */
    PGresult *r = db_exec(
        c, "var_create_why",
        "SELECT 1 FROM products WHERE store_id = $1::bigint AND id = $2::bigint AND $3::int > 0", 3,
        w->pc);
    rc = db_result_rc(r);
    if (rc != SHOPD_OK)
        *reply = api_db_error(ctx, r, "variant create");
    else if (PQntuples(r) == 0)
        *reply = product_not_found();
    else
        *reply = api_fail(SHOPD_INVALID, "too_many_variants",
                          "a product has at most " CAT_STR(CATALOG_MAX_VARIANTS) " variants");
    PQclear(r);
    return rc != SHOPD_OK ? rc : SHOPD_INVALID;
}

net_reply_t *
catalog_h_variant_create(api_ctx_t *ctx)
{
    api_val_t v = {0};
    cat_var_input_t in;
    char sid[24], pid[24], uid[24], cap[24];
    net_reply_t *reply = NULL;
    memset(&in, 0, sizeof(in));
    if (!cat_id_param(ctx, "id", pid)) {
        reply = product_not_found();
        goto out;
    }
    cat_variant_validate(&v, ctx->body, &in, true);
    if (v.n) {
        reply = api_val_reply(&v);
        goto out;
    }
    snprintf(cap, sizeof(cap), "%d", CATALOG_MAX_VARIANTS);
    const char *p[10] = {cat_sid(ctx, sid),
                         pid,
                         in.sku,
                         in.options,
                         in.price[0] ? in.price : NULL,
                         in.stock[0] ? in.stock : NULL,
                         in.weight[0] ? in.weight : NULL,
                         in.barcode,
                         in.pos[0] ? in.pos : NULL,
                         actor_id(ctx, uid)};
    const char *pc[3] = {sid, pid, cap};
    var_create_t w = {p, pc, NULL};
    if ((reply = cat_tx(ctx, create_tx, &w)) == NULL) {
        cat_bump(ctx);
        reply = cat_row_json(SHOPD_CREATED, w.r, 1);
        char loc[64];
        snprintf(loc, sizeof(loc), "/api/v1/variants/%s", PQgetvalue(w.r, 0, 0));
        net_reply_add_header(reply, "Location", loc);
    }
    PQclear(w.r);
out:
    free(in.options);
    return reply;
}

net_reply_t *
catalog_h_variant_update(api_ctx_t *ctx)
{
    api_val_t v = {0};
    cat_var_input_t in;
    char sid[24], id[24];
    net_reply_t *reply = NULL;
    PGresult *r = NULL;
    memset(&in, 0, sizeof(in));
    if (!cat_id_param(ctx, "id", id)) {
        reply = not_found();
        goto out;
    }
    cat_variant_validate(&v, ctx->body, &in, false);
    if (v.n) {
        reply = api_val_reply(&v);
        goto out;
    }
    const char *p[11] = {cat_sid(ctx, sid),
                         id,
                         in.sku,
                         in.options,
                         in.price_given ? "t" : "f",
                         in.price[0] ? in.price : NULL,
                         in.weight_given ? "t" : "f",
                         in.weight[0] ? in.weight : NULL,
                         in.barcode_given ? "t" : "f",
                         in.barcode,
                         in.pos[0] ? in.pos : NULL};
    reply = cat_write_stmt(
        ctx, "variant update", "var_update",
        "WITH v AS (UPDATE product_variants SET sku = coalesce($3, sku), options = "
        "coalesce($4::jsonb, options),"
        " price = CASE WHEN $5::bool THEN $6::bigint ELSE price END,"
        " weight_g = CASE WHEN $7::bool THEN $8::int ELSE weight_g END,"
        " barcode = CASE WHEN $9::bool THEN $10 ELSE barcode END,"
        " position = coalesce($11::int, position), updated_at = now()"
        " WHERE store_id = $1::bigint AND id = $2::bigint RETURNING *)"
        " SELECT " CAT_VARIANT_JSON(
            "v",
            "p") "::text FROM v JOIN products p ON p.store_id = v.store_id AND p.id = v.product_id",
        11, p, &r);
    if (reply != NULL)
        goto out;
    if (PQntuples(r) == 0) {
        reply = not_found();
        goto out;
    }
    cat_bump(ctx);
    reply = cat_row_json(SHOPD_OK, r, 0);
out:
    PQclear(r);
    free(in.options);
    return reply;
}

net_reply_t *
catalog_h_variant_delete(api_ctx_t *ctx)
{
    char sid[24], id[24];
    if (!cat_id_param(ctx, "id", id))
        return not_found();
    const char *p[2] = {cat_sid(ctx, sid), id};
    PGresult *r = NULL;
    net_reply_t *reply = cat_write_stmt(
        ctx, "variant delete", "var_delete",
        "DELETE FROM product_variants WHERE store_id = $1::bigint AND id = $2::bigint", 2, p, &r);
    if (reply != NULL)
        return reply;
    if (strcmp(PQcmdTuples(r), "0") == 0) {
        reply = not_found();
    } else {
        cat_bump(ctx);
        reply = api_empty(SHOPD_NO_CONTENT);
    }
    PQclear(r);
    return reply;
}

/* ------------------------------------------------------------ generation */

/* "Red Wine" -> "RED-WINE" appended to sku (bounded by cap). */
static void
sku_part(char *sku, size_t cap, const char *s)
{
    char tmp[128];
    cat_slugify(s, tmp, sizeof(tmp));
    size_t o = strlen(sku);
    if (o && o + 1 < cap)
        sku[o++] = '-';
    for (const char *t = tmp; *t && o + 1 < cap; t++)
        sku[o++] = (char)(*t >= 'a' && *t <= 'z' ? *t - 32 : *t);
    sku[o] = '\0';
}

/* A generation: the product and, once it ran, the variant list and the counts. */
typedef struct var_gen_s {
    const char *sid, *pid;
    PGresult *r; /* the product's variants after the insert */
    long created;
    long long combos;
} var_gen_t;

static shopd_rc_t
generate_tx(api_ctx_t *ctx, db_conn_t *c, void *arg, net_reply_t **reply)
{
    var_gen_t *w = arg;
    const char *sid = w->sid, *pid = w->pid;
    const char *p[2] = {sid, pid};
    PGresult *r = NULL, *sel = NULL;
    json_t *rows = NULL;
    char *rows_text = NULL;
    shopd_rc_t rc = SHOPD_INVALID; /* a refusal unless a statement says otherwise */
    PQclear(w->r);
    w->r = NULL;
    r = db_exec(
        c, "var_gen_product",
        "SELECT slug FROM products WHERE store_id = $1::bigint AND id = $2::bigint FOR UPDATE", 2,
        p);
    if (db_result_rc(r) != SHOPD_OK) {
        *reply = api_db_error(ctx, r, "variant generate");
        goto failed;
    }
    if (PQntuples(r) == 0) {
        *reply = product_not_found();
        goto out;
    }
    char base[41] = "";
    sku_part(base, sizeof(base), PQgetvalue(r, 0, 0));
    sel = db_exec(c, "var_gen_values",
                  "SELECT a.id, a.name, av.value FROM product_option_values o"
                  " JOIN attribute_values av ON av.store_id = o.store_id AND av.id = o.value_id"
                  " JOIN attributes a ON a.store_id = av.store_id AND a.id = av.attribute_id"
                  " WHERE o.store_id = $1::bigint AND o.product_id = $2::bigint"
                  " ORDER BY a.position, a.id, av.position, av.id",
                  2, p);
    if (db_result_rc(sel) != SHOPD_OK) {
        *reply = api_db_error(ctx, sel, "variant generate");
        rc = db_result_rc(sel);
        goto out;
    }
    int nrow = PQntuples(sel);
    if (nrow == 0) {
        *reply = api_fail_field(SHOPD_INVALID, "no_options",
                                "the product has no attribute values to combine",
                                "option_value_ids", "set them on the product first");
        goto out;
    }
    /* Group rows by attribute: start[k] .. start[k+1]-1 are attribute k's values. */
    int start[65], nattr = 0;
    long long combos = 1;
    for (int i = 0; i < nrow && nattr < 64; i++) {
        if (i == 0 || strcmp(PQgetvalue(sel, i, 0), PQgetvalue(sel, i - 1, 0)))
            start[nattr++] = i;
    }
    start[nattr] = nrow;
    for (int k = 0; k < nattr && combos <= CATALOG_MAX_VARIANTS; k++)
        combos *= start[k + 1] - start[k];
    if (combos > CATALOG_MAX_VARIANTS) {
        char msg[128];
        snprintf(msg, sizeof(msg), "the chosen values make more than %d combinations",
                 CATALOG_MAX_VARIANTS);
        *reply = api_fail(SHOPD_INVALID, "too_many_variants", msg);
        goto out;
    }
    /* Odometer over the attributes: one row per combination. */
    rows = json_array();
    int idx[64] = {0};
    for (long long n = 0; n < combos; n++) {
        json_t *opts = json_object();
        char sku[65];
        snprintf(sku, sizeof(sku), "%s", base);
        for (int k = 0; k < nattr; k++) {
            int row = start[k] + idx[k];
            json_object_set_new(opts, PQgetvalue(sel, row, 1),
                                json_string(PQgetvalue(sel, row, 2)));
            sku_part(sku, sizeof(sku), PQgetvalue(sel, row, 2));
        }
        json_array_append_new(
            rows, json_pack("{s:s, s:o, s:I}", "sku", sku, "options", opts, "pos", (json_int_t)n));
        for (int k = nattr - 1; k >= 0; k--) {
            if (++idx[k] < start[k + 1] - start[k])
                break;
            idx[k] = 0;
        }
    }
    rows_text = json_dumps(rows, JSON_COMPACT);
    const char *pg[3] = {sid, pid, rows_text};
    PQclear(r);
    /* Existing combinations stay untouched (ON CONFLICT on the options key); a SKU
     * already used elsewhere in the store gets the product id appended. */
    r = db_exec(
        c, "var_gen_insert",
        "WITH ins AS (INSERT INTO product_variants (store_id, product_id, sku, options, position)"
        " SELECT $1::bigint, $2::bigint, CASE WHEN EXISTS (SELECT 1 FROM product_variants w"
        "  WHERE w.store_id = $1::bigint AND w.sku = x.sku) THEN left(x.sku, 50) || '-' || $2 ELSE "
        "x.sku END,"
        " x.options, x.pos FROM jsonb_to_recordset($3::jsonb) AS x(sku text, options jsonb, pos "
        "int)"
        " ON CONFLICT (store_id, product_id, options) DO NOTHING RETURNING 1)"
        " SELECT (SELECT count(*) FROM ins),"
        " (SELECT count(*) FROM product_variants WHERE store_id = $1::bigint AND product_id = "
        "$2::bigint)",
        3, pg);
    if (db_result_rc(r) != SHOPD_OK) {
        *reply = api_db_error(ctx, r, "variant generate");
        goto failed;
    }
    long created = atol(PQgetvalue(r, 0, 0));
    /* count(*) ran on the statement's snapshot: add what this statement inserted. */
    long total = atol(PQgetvalue(r, 0, 1)) + created;
    if (total > CATALOG_MAX_VARIANTS) {
        char msg[128];
        snprintf(msg, sizeof(msg), "a product has at most %d variants", CATALOG_MAX_VARIANTS);
        *reply = api_fail(SHOPD_INVALID, "too_many_variants", msg);
        goto out;
    }
    PQclear(r);
    r = db_exec(
        c, "var_list_admin",
        "SELECT json_build_object('data', (SELECT coalesce(json_agg(" CAT_VARIANT_JSON(
            "v", "p") " ORDER BY v.position, v.id), '[]') FROM product_variants v"
                      " WHERE v.store_id = p.store_id AND v.product_id = p.id))::text"
                      " FROM products p WHERE p.store_id = $1::bigint AND p.id = $2::bigint",
        2, p);
    if (db_result_rc(r) != SHOPD_OK || PQntuples(r) != 1) {
        *reply = api_db_error(ctx, r, "variant generate");
        goto failed;
    }
    w->r = r;
    r = NULL;
    w->created = created;
    w->combos = combos;
    rc = SHOPD_OK;
    goto out;
failed:
    rc = db_result_rc(r);
    if (rc == SHOPD_OK)
        rc = SHOPD_ERR;
out:
    PQclear(r);
    PQclear(sel);
    json_decref(rows);
    free(rows_text);
    return rc;
}

net_reply_t *
catalog_h_variant_generate(api_ctx_t *ctx)
{
    char sid[24], pid[24];
    if (!cat_id_param(ctx, "id", pid))
        return product_not_found();
    var_gen_t w = {.sid = cat_sid(ctx, sid), .pid = pid};
    net_reply_t *reply = cat_tx(ctx, generate_tx, &w);
    if (reply != NULL)
        return reply;
    if (w.created)
        cat_bump(ctx);
    json_t *doc = json_loads(PQgetvalue(w.r, 0, 0), 0, NULL);
    if (doc == NULL)
        doc = json_object();
    json_object_set_new(doc, "created", json_integer(w.created));
    json_object_set_new(doc, "combinations", json_integer(w.combos));
    reply = api_json(w.created ? SHOPD_CREATED : SHOPD_OK, doc);
    PQclear(w.r);
    return reply;
}

/* ------------------------------------------------------------ inventory (batch) */

typedef struct inv_item_s {
    net_reply_t *reply; /* set when the item failed (validation, not found, conflict...) */
    bool set;           /* {"set": n} rather than {"adjust": d} */
    char id[24], amount[24], uid[24];
    const char *reason;
    char stock[24], delta[24], movement[24]; /* the outcome, before commit */
    bool done;
} inv_item_t;

static void
inv_validate(api_ctx_t *ctx, inv_item_t *it)
{
    static const char *const allowed[] = {"set", "adjust", "reason", NULL};
    api_val_t v = {0};
    json_t *b = ctx->body;
    long long n = 0;
    if (!cat_id_param(ctx, "id", it->id)) {
        it->reply = not_found();
        return;
    }
    api_val_only(&v, b, allowed);
    bool has_set = json_object_get(b, "set") != NULL,
         has_adj = json_object_get(b, "adjust") != NULL;
    if (has_set == has_adj) {
        api_val_add(&v, has_set ? "adjust" : "set", "give exactly one of set and adjust");
    } else if (has_set) {
        it->set = true;
        if (api_val_int(&v, b, "set", 0, 1000000000, &n) == 1)
            snprintf(it->amount, sizeof(it->amount), "%lld", n);
        else if (v.n == 0)
            api_val_add(&v, "set", "must be an integer from 0 to 1000000000");
    } else {
        if (api_val_int(&v, b, "adjust", -1000000000, 1000000000, &n) == 1 && n != 0)
            snprintf(it->amount, sizeof(it->amount), "%lld", n);
        else if (v.n == 0 || n == 0)
            api_val_add(&v, "adjust", "must be a non-zero integer");
    }
    it->reason = api_val_string(&v, b, "reason", false, 1, 200);
    if (it->reason == NULL)
        it->reason = it->set ? "set" : "adjustment";
    actor_id(ctx, it->uid);
    if (v.n)
        it->reply = api_val_reply(&v);
}

#define INV_SET_SQL                                                                                \
    "WITH o AS (SELECT id, stock FROM product_variants WHERE store_id = $1::bigint AND id = "      \
    "$2::bigint FOR UPDATE),"                                                                      \
    " u AS (UPDATE product_variants v SET stock = $3::int, updated_at = now() FROM o"              \
    " WHERE v.store_id = $1::bigint AND v.id = o.id RETURNING v.id, v.stock, $3::int - o.stock "   \
    "AS delta),"                                                                                   \
    " m AS (INSERT INTO inventory_movements (store_id, variant_id, delta, reason, actor_user_id)"  \
    " SELECT $1::bigint, id, delta, $4, $5::bigint FROM u WHERE delta <> 0 RETURNING id)"          \
    " SELECT u.stock, u.delta, (SELECT id FROM m) FROM u"

#define INV_ADJUST_SQL                                                                             \
    "WITH u AS (UPDATE product_variants SET stock = stock + $3::int, updated_at = now()"           \
    " WHERE store_id = $1::bigint AND id = $2::bigint AND stock + $3::int >= 0 RETURNING id, "     \
    "stock),"                                                                                      \
    " m AS (INSERT INTO inventory_movements (store_id, variant_id, delta, reason, actor_user_id)"  \
    " SELECT $1::bigint, id, $3::int, $4, $5::bigint FROM u RETURNING id)"                         \
    " SELECT u.stock, $3::int, (SELECT id FROM m) FROM u"

/* The batch as db_tx_batch sees it: item k is items[todo[k]], the ones that passed
 * validation. */
typedef struct inv_batch_s {
    api_ctx_t *ctxs;
    inv_item_t *items;
    size_t *todo;
    const char *sid;
} inv_batch_t;

/* One adjustment, inside its own savepoint of the batch's transaction (db_tx_batch
 * sends the savepoint commands with the statement: one round trip). Returns OK when
 * the change was made, else the refusal or failure, with it->reply set. A retried batch
 * runs it again: it starts by forgetting the last attempt's outcome. */
static shopd_rc_t
inv_apply(db_conn_t *c, size_t k, void *arg)
{
    inv_batch_t *b = arg;
    api_ctx_t *ctx = &b->ctxs[b->todo[k]];
    inv_item_t *it = &b->items[b->todo[k]];
    net_reply_free(it->reply);
    it->reply = NULL;
    it->done = false;
    const char *p[5] = {b->sid, it->id, it->amount, it->reason, it->uid[0] ? it->uid : NULL};
    PGresult *r = it->set ? db_exec(c, "inv_set", INV_SET_SQL, 5, p)
                          : db_exec(c, "inv_adjust", INV_ADJUST_SQL, 5, p);
    shopd_rc_t rc = db_result_rc(r);
    if (rc == SHOPD_OK && PQntuples(r) == 1) {
        snprintf(it->stock, sizeof(it->stock), "%s", PQgetvalue(r, 0, 0));
        snprintf(it->delta, sizeof(it->delta), "%s", PQgetvalue(r, 0, 1));
        snprintf(it->movement, sizeof(it->movement), "%s",
                 PQgetisnull(r, 0, 2) ? "" : PQgetvalue(r, 0, 2));
        it->done = true;
    } else if (rc != SHOPD_OK) {
        it->reply = api_db_error(ctx, r, "inventory");
    } else {
        /* No row: either no such variant, or the guard refused the change. */
        PGresult *e = db_exec(
            c, "inv_exists",
            "SELECT stock FROM product_variants WHERE store_id = $1::bigint AND id = $2::bigint", 2,
            p);
        rc = db_result_rc(e);
        if (rc == SHOPD_OK && PQntuples(e) == 1) {
            char msg[128];
            snprintf(msg, sizeof(msg), "not enough stock: %s in stock, adjustment %s",
                     PQgetvalue(e, 0, 0), it->amount);
            it->reply = api_fail_field(SHOPD_CONFLICT, "insufficient_stock", msg, "adjust",
                                       "would make stock negative");
            rc = SHOPD_CONFLICT;
        } else if (rc == SHOPD_OK) {
            it->reply = not_found();
            rc = SHOPD_NOTFOUND;
        } else if (rc != SHOPD_UNAVAILABLE) {
            it->reply = api_db_error(ctx, e, "inventory");
        }
        PQclear(e);
    }
    PQclear(r);
    return rc;
}

void
catalog_b_inventory(api_ctx_t *ctxs, size_t n, net_reply_t **replies)
{
    inv_item_t *items = shopd_calloc(n, sizeof(*items));
    size_t *todo = shopd_calloc(n, sizeof(*todo));
    char sid[24];
    size_t ntodo = 0;
    for (size_t i = 0; i < n; i++) {
        inv_validate(&ctxs[i], &items[i]);
        if (items[i].reply == NULL)
            todo[ntodo++] = i;
    }
    net_reply_t *fail = NULL;      /* set when the whole batch is lost */
    shopd_rc_t fail_rc = SHOPD_OK; /* and why: UNAVAILABLE is worth a retry */
    if (ntodo) {
        inv_batch_t b = {ctxs, items, todo, cat_sid(&ctxs[0], sid)};
        db_conn_t *c = cat_acquire(&ctxs[0], &fail);
        shopd_rc_t rc = c ? db_tx_batch(c, ntodo, inv_apply, &b, NULL) : SHOPD_UNAVAILABLE;
        db_release(c);
        /* Not committed: UNAVAILABLE (the connection went) and CONFLICT (deadlocks or
         * serialization failures past the retries) are worth a retry, the rest is ours. */
        if (rc != SHOPD_OK && fail == NULL)
            fail = rc == SHOPD_UNAVAILABLE || rc == SHOPD_CONFLICT
                       ? api_unavailable("the database")
                       : api_internal(&ctxs[0], "inventory batch failed");
        if (fail)
            fail_rc = rc == SHOPD_OK || rc == SHOPD_CONFLICT ? SHOPD_UNAVAILABLE : rc;
    }
    bool changed = false;
    for (size_t i = 0; i < n; i++) {
        inv_item_t *it = &items[i];
        if (it->reply) {
            replies[i] = it->reply;
            /* The batch failed after this item had failed on its own: keep its own answer. */
            continue;
        }
        if (fail) {
            bool retry = fail_rc == SHOPD_UNAVAILABLE;
            replies[i] = api_fail(retry ? SHOPD_UNAVAILABLE : SHOPD_ERR,
                                  retry ? "service_unavailable" : "internal_error",
                                  "the inventory change was not saved; retry");
            if (retry)
                net_reply_add_header(replies[i], "Retry-After", "1");
            continue;
        }
        changed = changed || strcmp(it->delta, "0") != 0;
        char body[192];
        int len = snprintf(body, sizeof(body),
                           "{\"variant_id\":%s,\"stock\":%s,\"delta\":%s,\"movement_id\":%s}",
                           it->id, it->stock, it->delta, it->movement[0] ? it->movement : "null");
        replies[i] = api_raw_json(SHOPD_OK, body, (size_t)len);
    }
    net_reply_free(fail);
    if (changed)
        cat_bump(&ctxs[0]);
    shopd_free(todo);
    shopd_free(items);
}
