/*
 * taxes.c: tax rates by country and optional region (the region's row wins,
 * the country-wide row is the fallback, none means 0), the store's tax
 * settings kept in stores.settings (prices_include_tax, tax_shipping), their
 * admin routes, and pricing_tax_for, which the checkout reads both through.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pricing_priv.h"

#define TAX_FIELDS(t)                                                                              \
    "'country', " t ".country, 'region', " t ".region, 'rate_bps', " t ".rate_bps, 'name', " t     \
    ".name"

#define TAX_JSON(t)                                                                                \
    "json_build_object('id', " t                                                                   \
    ".id, " TAX_FIELDS(t) ", 'created_at', " t ".created_at, 'updated_at', " t ".updated_at)"

/* A setting counts as true only when it is the JSON value true: stores.settings
 * is free-form (PATCH /stores/:id may put anything there). */
#define SETTINGS_JSON(s)                                                                           \
    "json_build_object('prices_include_tax', coalesce(" s                                          \
    ".settings->'prices_include_tax' = 'true'::jsonb, false), 'tax_shipping', coalesce(" s         \
    ".settings->'tax_shipping' = 'true'::jsonb, false))"

shopd_rc_t
pricing_tax_for(db_conn_t *c, uint64_t store_id, const char *country, const char *region,
                pricing_tax_t *out)
{
    char s[24];
    const char *p[3] = {pr_u64(store_id, s), country, region && region[0] ? region : NULL};
    memset(out, 0, sizeof(*out));
    PGresult *r =
        db_exec(c, "pr_tax_for",
                "SELECT coalesce((SELECT t.rate_bps FROM tax_rates t WHERE t.store_id = s.id"
                " AND t.country = $2 AND (t.region IS NULL OR lower(t.region) = lower($3))"
                " ORDER BY t.region IS NULL LIMIT 1), 0),"
                " coalesce(s.settings->'prices_include_tax' = 'true'::jsonb, false),"
                " coalesce(s.settings->'tax_shipping' = 'true'::jsonb, false)"
                " FROM stores s WHERE s.id = $1::bigint",
                3, p);
    shopd_rc_t rc = db_result_rc(r);
    if (rc == SHOPD_OK && PQntuples(r) == 0)
        rc = SHOPD_ERR; /* the checkout's own store vanished */
    if (rc == SHOPD_OK) {
        out->bps = atoi(PQgetvalue(r, 0, 0));
        out->inclusive = PQgetvalue(r, 0, 1)[0] == 't';
        out->on_shipping = PQgetvalue(r, 0, 2)[0] == 't';
    }
    PQclear(r);
    return rc;
}

/* ------------------------------------------------------------ handlers */

static const pr_nf_t tax_nf = {"tax_rate_not_found", "no such tax rate"};

net_reply_t *
pricing_h_tax_list(api_ctx_t *ctx)
{
    return pr_list(ctx, "pr_tax_list",
                   "SELECT json_build_object('data', coalesce(json_agg(" TAX_JSON(
                       "t") " ORDER BY t.country, t.region NULLS FIRST, t.id), '[]'))::text"
                            " FROM tax_rates t WHERE t.store_id = $1::bigint",
                   "tax rates", &tax_nf);
}

static const char *const tax_keys[] = {"country", "region", "rate_bps", "name", NULL};

typedef struct tax_in_s {
    const char *sid; /* create only: pr_patch passes the store itself */
    const char *country, *region, *name;
    char bps[24];
} tax_in_t;

static void
tax_validate(api_val_t *v, json_t *b, void *arg)
{
    tax_in_t *in = arg;
    api_val_only(v, b, tax_keys);
    in->country = pr_val_country(v, b, "country", true);
    in->region = api_val_string(v, b, "region", false, 1, 100);
    in->name = api_val_string(v, b, "name", true, 1, 100);
    pr_val_int_text(v, b, "rate_bps", 0, 10000, true, in->bps);
}

static shopd_rc_t
tax_create_body(api_ctx_t *ctx, db_conn_t *c, void *arg, net_reply_t **reply)
{
    tax_in_t *in = arg;
    const char *p[5] = {in->sid, in->country, in->region, in->bps, in->name};
    return pr_exec_json(
        ctx, c, "pr_tax_insert",
        "INSERT INTO tax_rates AS t (store_id, country, region, rate_bps, name)"
        " VALUES ($1::bigint, $2, $3, $4::int, $5) RETURNING " TAX_JSON("t") "::text",
        5, p, SHOPD_CREATED, reply);
}

net_reply_t *
pricing_h_tax_create(api_ctx_t *ctx)
{
    char sid[24];
    tax_in_t in = {.sid = pr_sid(ctx, sid)};
    return pr_create(ctx, tax_validate, &in, tax_create_body);
}

static int
tax_params(const void *arg, const char **p)
{
    const tax_in_t *in = arg;
    p[0] = in->country;
    p[1] = in->region;
    p[2] = in->bps;
    p[3] = in->name;
    return 4;
}

static const pr_patch_t tax_patch = {
    .keys = tax_keys,
    .nf = &tax_nf,
    .cur_name = "pr_tax_current",
    .cur_sql = "SELECT json_build_object(" TAX_FIELDS("t") ")::text FROM tax_rates t"
                                                           " WHERE t.store_id = $1::bigint AND "
                                                           "t.id = $2::bigint FOR UPDATE",
    .upd_name = "pr_tax_update",
    .upd_sql = "UPDATE tax_rates AS t SET country = $3, region = $4, rate_bps = $5::int, name = $6,"
               " updated_at = now() WHERE t.store_id = $1::bigint AND t.id = $2::bigint"
               " RETURNING " TAX_JSON("t") "::text",
    .validate = tax_validate,
    .params = tax_params,
};

net_reply_t *
pricing_h_tax_update(api_ctx_t *ctx)
{
    tax_in_t in = {0};
    return pr_patch(ctx, &tax_patch, &in);
}

net_reply_t *
pricing_h_tax_delete(api_ctx_t *ctx)
{
    return pr_delete_id(ctx, "pr_tax_delete",
                        "DELETE FROM tax_rates WHERE store_id = $1::bigint AND id = $2::bigint"
                        " RETURNING id",
                        &tax_nf);
}

/* ---- settings ---- */

net_reply_t *
pricing_h_tax_settings_get(api_ctx_t *ctx)
{
    char sid[24];
    const char *p[1] = {pr_sid(ctx, sid)};
    net_reply_t *reply = NULL;
    PGresult *r = pr_read(
        ctx, "pr_tax_settings",
        "SELECT " SETTINGS_JSON("s") "::text FROM stores s WHERE s.id = $1::bigint", 1, p, &reply);
    return reply
               ? reply
               : pr_row_reply(ctx, r, SHOPD_OK, "tax settings", "store_not_found", "no such store");
}

static shopd_rc_t
settings_body(api_ctx_t *ctx, db_conn_t *c, void *arg, net_reply_t **reply)
{
    const char *const *p = arg;
    PGresult *r = pr_exec(ctx, c, "pr_tax_settings_update",
                          "UPDATE stores s SET settings = settings || $2::jsonb, updated_at = now()"
                          " WHERE s.id = $1::bigint RETURNING " SETTINGS_JSON("s") "::text",
                          2, p, reply);
    if (r == NULL)
        return SHOPD_ERR;
    *reply = pr_row_reply(ctx, r, SHOPD_OK, "tax settings", "store_not_found", "no such store");
    return SHOPD_OK;
}

net_reply_t *
pricing_h_tax_settings_update(api_ctx_t *ctx)
{
    static const char *const allowed[] = {"prices_include_tax", "tax_shipping", NULL};
    api_val_t v = {0};
    bool b;
    api_val_only(&v, ctx->body, allowed);
    json_t *set = json_object();
    for (size_t i = 0; allowed[i]; i++)
        if (pr_val_bool(&v, ctx->body, allowed[i], &b) == 1)
            json_object_set_new(set, allowed[i], json_boolean(b));
    net_reply_t *reply;
    if (v.n) {
        reply = api_val_reply(&v);
    } else {
        char sid[24];
        char *text = json_dumps(set, JSON_COMPACT);
        const char *p[2] = {pr_sid(ctx, sid), text};
        reply = pr_tx(ctx, settings_body, (void *)p);
        free(text);
        /* The resolution snapshot carries no settings today; dropping it keeps
         * this true if it ever does (the next request looks the store up). */
        if (api_reply_ok(reply))
            store_cache_invalidate(ctx->app->stores, ctx->store_id);
    }
    json_decref(set);
    return reply;
}
