/*
 * attributes.c: store-level attribute definitions (Size, Color) and their
 * values (S, M, L; Red, Blue). Products choose values (option_value_ids) and
 * variant generation combines them. Deleting an attribute or a value removes
 * it from the products that chose it; existing variants keep their options.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catalog_priv.h"

#define VALUE_JSON(x)                                                                              \
    "json_build_object('id', " x ".id, 'attribute_id', " x ".attribute_id, 'value', " x            \
    ".value, 'position', " x ".position)"

#define ATTRIBUTE_JSON(a)                                                                          \
    "json_build_object('id', " a ".id, 'name', " a ".name, 'position', " a ".position, 'values',"  \
    " (SELECT coalesce(json_agg(" VALUE_JSON(                                                      \
        "x") " ORDER BY x.position, x.id), '[]') FROM attribute_values x"                          \
             " WHERE x.store_id = " a ".store_id AND x.attribute_id = " a ".id))"

static net_reply_t *
attr_not_found(void)
{
    return api_fail(SHOPD_NOTFOUND, "attribute_not_found", "no such attribute");
}

static net_reply_t *
value_not_found(void)
{
    return api_fail(SHOPD_NOTFOUND, "attribute_value_not_found", "no such attribute value");
}

/* Runs one statement for a handler (a write as its own transaction, cat_write_stmt):
 * not found (nf) when it returns no row, else the JSON of column 0 with result `ok`; bumps the
 * catalog version after a write. */
static net_reply_t *
run(api_ctx_t *ctx, const char *name, const char *sql, int np, const char *const *p, shopd_rc_t ok,
    bool write, net_reply_t *(*nf)(void))
{
    net_reply_t *reply = NULL;
    PGresult *r = NULL;
    if (write) {
        if ((reply = cat_write_stmt(ctx, name, name, sql, np, p, &r)) != NULL)
            return reply;
    } else {
        db_conn_t *c = cat_acquire(ctx, &reply);
        if (c == NULL)
            return reply;
        r = db_exec(c, name, sql, np, p);
        db_release(c);
    }
    if (db_result_rc(r) != SHOPD_OK) {
        reply = api_db_error(ctx, r, name);
    } else if (PQntuples(r) == 0 && (PQnfields(r) > 0 || strcmp(PQcmdTuples(r), "0") == 0)) {
        reply = nf(); /* a write that matched nothing committed nothing */
    } else {
        if (write)
            cat_bump(ctx);
        reply = ok == SHOPD_NO_CONTENT ? api_empty(SHOPD_NO_CONTENT) : cat_row_json(ok, r, 0);
    }
    PQclear(r);
    return reply;
}

static net_reply_t *
list(api_ctx_t *ctx)
{
    char sid[24];
    const char *p[1] = {cat_sid(ctx, sid)};
    return run(ctx, "attr_list",
               "SELECT json_build_object('data', coalesce(json_agg(" ATTRIBUTE_JSON(
                   "a") " ORDER BY a.position, a.id), '[]'))::text"
                        " FROM attributes a WHERE a.store_id = $1::bigint",
               1, p, SHOPD_OK, false, attr_not_found);
}

net_reply_t *
catalog_h_attribute_list(api_ctx_t *ctx)
{
    return cat_cached(ctx, list);
}

static net_reply_t *
get_one(api_ctx_t *ctx)
{
    char sid[24], id[24];
    if (!cat_id_param(ctx, "id", id))
        return attr_not_found();
    const char *p[2] = {cat_sid(ctx, sid), id};
    return run(
        ctx, "attr_get",
        "SELECT " ATTRIBUTE_JSON(
            "a") "::text FROM attributes a WHERE a.store_id = $1::bigint AND a.id = $2::bigint",
        2, p, SHOPD_OK, false, attr_not_found);
}

net_reply_t *
catalog_h_attribute_get(api_ctx_t *ctx)
{
    return cat_cached(ctx, get_one);
}

static net_reply_t *
values(api_ctx_t *ctx)
{
    char sid[24], id[24];
    if (!cat_id_param(ctx, "id", id))
        return attr_not_found();
    const char *p[2] = {cat_sid(ctx, sid), id};
    return run(ctx, "attr_values",
               "SELECT json_build_object('data', (SELECT coalesce(json_agg(" VALUE_JSON(
                   "x") " ORDER BY x.position, x.id), '[]')"
                        " FROM attribute_values x WHERE x.store_id = a.store_id AND x.attribute_id "
                        "= a.id))::text"
                        " FROM attributes a WHERE a.store_id = $1::bigint AND a.id = $2::bigint",
               2, p, SHOPD_OK, false, attr_not_found);
}

net_reply_t *
catalog_h_value_list(api_ctx_t *ctx)
{
    return cat_cached(ctx, values);
}

/* name/value + position; `values` (create only): initial values. */
static char *
validate(api_ctx_t *ctx, api_val_t *v, const char *field, bool create, bool with_values,
         const char **text, char pos[24])
{
    const char *allowed[] = {field, "position", with_values ? "values" : NULL, NULL};
    json_t *b = ctx->body;
    long long n;
    api_val_only(v, b, allowed);
    *text = api_val_string(v, b, field, create, 1, 100);
    pos[0] = '\0';
    if (api_val_int(v, b, "position", -1000000, 1000000, &n) == 1)
        snprintf(pos, 24, "%lld", n);
    json_t *vals = with_values ? json_object_get(b, "values") : NULL;
    if (vals == NULL || json_is_null(vals))
        return NULL;
    size_t i;
    json_t *x;
    bool ok = json_is_array(vals) && json_array_size(vals) <= 100;
    json_array_foreach(vals, i, x) if (!json_is_string(x) || json_string_length(x) < 1 ||
                                       json_string_length(x) > 100) ok = false;
    if (!ok) {
        api_val_add(v, "values", "must be an array of at most 100 strings of 1 to 100 characters");
        return NULL;
    }
    return json_dumps(vals, JSON_COMPACT);
}

net_reply_t *
catalog_h_attribute_create(api_ctx_t *ctx)
{
    api_val_t v = {0};
    const char *name;
    char pos[24], sid[24];
    char *vals = validate(ctx, &v, "name", true, true, &name, pos);
    if (v.n) {
        free(vals);
        return api_val_reply(&v);
    }
    const char *p[4] = {cat_sid(ctx, sid), name, pos[0] ? pos : NULL, vals};
    /* One statement: the attribute and its first values together or not at all. */
    net_reply_t *r = run(
        ctx, "attr_create",
        "WITH a AS (INSERT INTO attributes (store_id, name, position) VALUES ($1::bigint, $2, "
        "coalesce($3::int, 0))"
        " RETURNING *),"
        " x AS (INSERT INTO attribute_values (store_id, attribute_id, value, position)"
        " SELECT a.store_id, a.id, e.value, e.ord::int - 1 FROM a,"
        " jsonb_array_elements_text(coalesce($4::jsonb, '[]')) WITH ORDINALITY AS e(value, ord)"
        " RETURNING *)"
        " SELECT json_build_object('id', a.id, 'name', a.name, 'position', a.position, 'values',"
        " (SELECT coalesce(json_agg(" VALUE_JSON(
            "x") " ORDER BY x.position, x.id), '[]') FROM x))::text FROM a",
        4, p, SHOPD_CREATED, true, attr_not_found);
    free(vals);
    return r;
}

net_reply_t *
catalog_h_attribute_update(api_ctx_t *ctx)
{
    api_val_t v = {0};
    const char *name;
    char pos[24], sid[24], id[24];
    if (!cat_id_param(ctx, "id", id))
        return attr_not_found();
    validate(ctx, &v, "name", false, false, &name, pos);
    if (v.n)
        return api_val_reply(&v);
    const char *p[4] = {cat_sid(ctx, sid), id, name, pos[0] ? pos : NULL};
    return run(ctx, "attr_update",
               "WITH a AS (UPDATE attributes SET name = coalesce($3, name), position = "
               "coalesce($4::int, position)"
               " WHERE store_id = $1::bigint AND id = $2::bigint RETURNING *)"
               " SELECT " ATTRIBUTE_JSON("a") "::text FROM a",
               4, p, SHOPD_OK, true, attr_not_found);
}

net_reply_t *
catalog_h_attribute_delete(api_ctx_t *ctx)
{
    char sid[24], id[24];
    if (!cat_id_param(ctx, "id", id))
        return attr_not_found();
    const char *p[2] = {cat_sid(ctx, sid), id};
    return run(ctx, "attr_delete",
               "DELETE FROM attributes WHERE store_id = $1::bigint AND id = $2::bigint", 2, p,
               SHOPD_NO_CONTENT, true, attr_not_found);
}

net_reply_t *
catalog_h_value_create(api_ctx_t *ctx)
{
    api_val_t v = {0};
    const char *value;
    char pos[24], sid[24], id[24];
    if (!cat_id_param(ctx, "id", id))
        return attr_not_found();
    validate(ctx, &v, "value", true, false, &value, pos);
    if (v.n)
        return api_val_reply(&v);
    const char *p[4] = {cat_sid(ctx, sid), id, value, pos[0] ? pos : NULL};
    return run(
        ctx, "attr_value_create",
        "WITH x AS (INSERT INTO attribute_values (store_id, attribute_id, value, position)"
        " SELECT a.store_id, a.id, $3, coalesce($4::int, (SELECT count(*) FROM attribute_values w"
        "  WHERE w.store_id = a.store_id AND w.attribute_id = a.id)::int)"
        " FROM attributes a WHERE a.store_id = $1::bigint AND a.id = $2::bigint RETURNING *)"
        " SELECT " VALUE_JSON("x") "::text FROM x",
        4, p, SHOPD_CREATED, true, attr_not_found);
}

net_reply_t *
catalog_h_value_update(api_ctx_t *ctx)
{
    api_val_t v = {0};
    const char *value;
    char pos[24], sid[24], id[24], vid[24];
    if (!cat_id_param(ctx, "id", id) || !cat_id_param(ctx, "value_id", vid))
        return value_not_found();
    validate(ctx, &v, "value", false, false, &value, pos);
    if (v.n)
        return api_val_reply(&v);
    const char *p[5] = {cat_sid(ctx, sid), id, vid, value, pos[0] ? pos : NULL};
    return run(ctx, "attr_value_update",
               "WITH x AS (UPDATE attribute_values SET value = coalesce($4, value), position = "
               "coalesce($5::int, position)"
               " WHERE store_id = $1::bigint AND attribute_id = $2::bigint AND id = $3::bigint "
               "RETURNING *)"
               " SELECT " VALUE_JSON("x") "::text FROM x",
               5, p, SHOPD_OK, true, value_not_found);
}

net_reply_t *
catalog_h_value_delete(api_ctx_t *ctx)
{
    char sid[24], id[24], vid[24];
    if (!cat_id_param(ctx, "id", id) || !cat_id_param(ctx, "value_id", vid))
        return value_not_found();
    const char *p[3] = {cat_sid(ctx, sid), id, vid};
    return run(ctx, "attr_value_delete",
               "DELETE FROM attribute_values WHERE store_id = $1::bigint AND attribute_id = "
               "$2::bigint AND id = $3::bigint",
               3, p, SHOPD_NO_CONTENT, true, value_not_found);
}
