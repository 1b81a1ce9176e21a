/*
 * shipping.c: shipping zones (a name and a set of countries; a country is in
 * at most one zone of a store) and their rates (flat, or a weight band
 * [min_weight_g, max_weight_g); free from free_above on), the admin routes
 * that edit them, and the table provider behind pricing_shipping_rates: the
 * seam (pricing_provider_t) where a carrier's API plugs in later.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pricing_priv.h"

#define WEIGHT_MAX 1000000000LL /* grams: 1000 t, beyond any parcel */

#define RATE_FIELDS(r)                                                                             \
    "'name', " r ".name, 'kind', " r ".kind, 'price', " r ".price, 'min_weight_g', " r             \
    ".min_weight_g, 'max_weight_g', " r ".max_weight_g, 'free_above', " r ".free_above"

#define RATE_JSON(r)                                                                               \
    "json_build_object('id', " r ".id, 'zone_id', " r                                              \
    ".zone_id, " RATE_FIELDS(r) ", "                                                               \
                                "'created_at', " r ".created_at, 'updated_at', " r ".updated_at)"

#define ZONE_JSON(z)                                                                               \
    "json_build_object('id', " z ".id, 'name', " z ".name, 'countries', (SELECT "                  \
    "coalesce(json_agg(zc.country ORDER BY zc.country), '[]') FROM shipping_zone_countries zc "    \
    "WHERE zc.store_id = " z ".store_id AND zc.zone_id = " z ".id), 'rates', (SELECT "             \
    "coalesce(json_agg(" RATE_JSON("r") " ORDER BY r.id), '[]') FROM shipping_rates r "            \
                                        "WHERE r.store_id = " z ".store_id AND r.zone_id = " z     \
                                        ".id), 'created_at', " z ".created_at, 'updated_at', " z   \
                                        ".updated_at)"

/* ------------------------------------------------------------ provider */

static shopd_rc_t
table_rates(db_conn_t *c, uint64_t store_id, const char *country, int64_t subtotal,
            int64_t weight_g, pricing_rate_t *out, size_t max, size_t *n)
{
    char s[24], sub[24], w[24], lim[24];
    *n = 0;
    if (max == 0)
        return SHOPD_OK;
    snprintf(sub, sizeof(sub), "%lld", (long long)subtotal);
    snprintf(w, sizeof(w), "%lld", (long long)weight_g);
    const char *p[5] = {pr_u64(store_id, s), country, sub, w, pr_u64(max, lim)};
    PGresult *r = db_exec(
        c, "pr_ship_rates",
        "SELECT r.id, r.name, CASE WHEN r.free_above IS NOT NULL AND $3::bigint >= r.free_above"
        " THEN 0 ELSE r.price END AS price, r.zone_id"
        " FROM shipping_zone_countries zc JOIN shipping_rates r"
        " ON r.store_id = zc.store_id AND r.zone_id = zc.zone_id"
        " WHERE zc.store_id = $1::bigint AND zc.country = $2"
        " AND (r.kind = 'flat' OR ($4::bigint >= r.min_weight_g"
        " AND (r.max_weight_g IS NULL OR $4::bigint < r.max_weight_g)))"
        " ORDER BY 3, r.id LIMIT $5::int",
        5, p);
    shopd_rc_t rc = db_result_rc(r);
    if (rc == SHOPD_OK) {
        int rows = PQntuples(r);
        for (int i = 0; i < rows && (size_t)i < max; i++) {
            pricing_rate_t *x = &out[i];
            x->id = strtoull(PQgetvalue(r, i, 0), NULL, 10);
            snprintf(x->name, sizeof(x->name), "%s", PQgetvalue(r, i, 1));
            x->price = strtoll(PQgetvalue(r, i, 2), NULL, 10);
            x->zone_id = strtoull(PQgetvalue(r, i, 3), NULL, 10);
            (*n)++;
        }
    }
    PQclear(r);
    return rc;
}

const pricing_provider_t pricing_table_provider = {"table", table_rates};

/* Written once at start-up before any thread runs (pricing_set_provider), read
 * after: no synchronisation needed beyond the thread creation that follows. */
static const pricing_provider_t *provider = &pricing_table_provider;

const pricing_provider_t *
pricing_provider(void)
{
    return provider;
}

void
pricing_set_provider(const pricing_provider_t *p)
{
    provider = p ? p : &pricing_table_provider;
}

shopd_rc_t
pricing_shipping_rates(db_conn_t *c, uint64_t store_id, const char *country, int64_t subtotal,
                       int64_t weight_g, pricing_rate_t *out, size_t max, size_t *n)
{
    *n = 0;
    if (!pricing_country_valid(country))
        return SHOPD_OK; /* no zone can hold it */
    return provider->rates(c, store_id, country, subtotal, weight_g, out, max, n);
}

shopd_rc_t
pricing_shipping_rate(db_conn_t *c, uint64_t store_id, uint64_t rate_id, const char *country,
                      int64_t subtotal, int64_t weight_g, pricing_rate_t *out)
{
    /* A zone holds at most PRICING_MAX_RATES rates (the create route says so),
     * so the whole list for the cart fits and the id is in it if it applies. */
    pricing_rate_t all[PRICING_MAX_RATES];
    size_t n = 0;
    shopd_rc_t rc = pricing_shipping_rates(c, store_id, country, subtotal, weight_g, all,
                                           PRICING_MAX_RATES, &n);
    if (rc != SHOPD_OK)
        return rc;
    for (size_t i = 0; i < n; i++)
        if (all[i].id == rate_id) {
            *out = all[i];
            return SHOPD_OK;
        }
    return SHOPD_NOTFOUND;
}

bool
pricing_rules_apply(void)
{
    return provider == &pricing_table_provider;
}

static int64_t
opt_ll(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? -1 : strtoll(PQgetvalue(r, row, col), NULL, 10);
}

shopd_rc_t
pricing_shipping_rules(db_conn_t *c, uint64_t store_id, const char *country, pricing_rules_t *out)
{
    out->n = 0;
    if (!pricing_country_valid(country))
        return SHOPD_OK; /* no zone can hold it */
    char s[24], lim[24];
    const char *p[3] = {pr_u64(store_id, s), country, pr_u64(PRICING_MAX_RATES, lim)};
    PGresult *r = db_exec(c, "pr_ship_rules",
                          "SELECT r.id, r.name, r.price, r.zone_id, r.kind = 'weight',"
                          " r.min_weight_g, r.max_weight_g, r.free_above"
                          " FROM shipping_zone_countries zc JOIN shipping_rates r"
                          " ON r.store_id = zc.store_id AND r.zone_id = zc.zone_id"
                          " WHERE zc.store_id = $1::bigint AND zc.country = $2"
                          " ORDER BY r.id LIMIT $3::int",
                          3, p);
    shopd_rc_t rc = db_result_rc(r);
    for (int i = 0; rc == SHOPD_OK && i < PQntuples(r) && i < PRICING_MAX_RATES; i++) {
        pricing_rule_t *x = &out->r[out->n++];
        x->rate.id = strtoull(PQgetvalue(r, i, 0), NULL, 10);
        snprintf(x->rate.name, sizeof(x->rate.name), "%s", PQgetvalue(r, i, 1));
        x->rate.price = strtoll(PQgetvalue(r, i, 2), NULL, 10);
        x->rate.zone_id = strtoull(PQgetvalue(r, i, 3), NULL, 10);
        x->weight = PQgetvalue(r, i, 4)[0] == 't';
        x->min_weight_g = opt_ll(r, i, 5);
        x->max_weight_g = opt_ll(r, i, 6);
        x->free_above = opt_ll(r, i, 7);
    }
    PQclear(r);
    return rc;
}

shopd_rc_t
pricing_rules_rate(const pricing_rules_t *rules, uint64_t rate_id, int64_t subtotal,
                   int64_t weight_g, pricing_rate_t *out)
{
    for (size_t i = 0; i < rules->n; i++) {
        const pricing_rule_t *x = &rules->r[i];
        if (x->rate.id != rate_id)
            continue;
        /* As table_rates' WHERE: a band with no lower bound holds nothing (NULL). */
        if (x->weight && (x->min_weight_g < 0 || weight_g < x->min_weight_g ||
                          (x->max_weight_g >= 0 && weight_g >= x->max_weight_g)))
            return SHOPD_NOTFOUND;
        *out = x->rate;
        if (x->free_above >= 0 && subtotal >= x->free_above)
            out->price = 0;
        return SHOPD_OK;
    }
    return SHOPD_NOTFOUND;
}

/* ------------------------------------------------------------ zones */

static const pr_nf_t zone_nf = {"shipping_zone_not_found", "no such shipping zone"};
static const pr_nf_t rate_nf = {"shipping_rate_not_found", "no such shipping rate"};

net_reply_t *
pricing_h_zone_list(api_ctx_t *ctx)
{
    return pr_list(ctx, "pr_zone_list",
                   "SELECT json_build_object('data', coalesce(json_agg(" ZONE_JSON(
                       "z") " ORDER BY z.id), '[]'))::text"
                            " FROM shipping_zones z WHERE z.store_id = $1::bigint",
                   "zones", &zone_nf);
}

net_reply_t *
pricing_h_zone_get(api_ctx_t *ctx)
{
    return pr_get(ctx, "pr_zone_get",
                  "SELECT " ZONE_JSON("z") "::text FROM shipping_zones z"
                                           " WHERE z.store_id = $1::bigint AND z.id = $2::bigint",
                  "zone", &zone_nf);
}

typedef struct zone_in_s {
    const char *sid, *id; /* id NULL on create */
    const char *name;
    char *countries; /* JSON array text (malloc'd by jansson), NULL: unchanged */
} zone_in_t;

static void
zone_validate(api_val_t *v, json_t *b, bool create, zone_in_t *in)
{
    static const char *const allowed[] = {"name", "countries", NULL};
    api_val_only(v, b, allowed);
    in->name = api_val_string(v, b, "name", create, 1, 100);
    json_t *cs = json_object_get(b, "countries");
    if (cs == NULL || json_is_null(cs)) {
        if (create)
            api_val_add(v, "countries", "is required");
        return;
    }
    if (!json_is_array(cs) || json_array_size(cs) < 1 || json_array_size(cs) > 249) {
        api_val_add(v, "countries", "must be an array of 1 to 249 ISO 3166-1 alpha-2 codes");
        return;
    }
    size_t i, j;
    json_t *x;
    json_array_foreach(cs, i, x)
    {
        char field[32];
        snprintf(field, sizeof(field), "countries[%zu]", i);
        if (!json_is_string(x) || !pricing_country_valid(json_string_value(x))) {
            api_val_add(v, field, "must be an ISO 3166-1 alpha-2 code (upper case, e.g. DE)");
            continue;
        }
        for (j = 0; j < i; j++)
            if (json_equal(x, json_array_get(cs, j))) {
                api_val_add(v, field, "is listed twice");
                break;
            }
    }
    if (v->n == 0)
        in->countries = json_dumps(cs, JSON_COMPACT);
}

/* Puts the zone's countries in place; 409 country_in_other_zone naming those
 * another zone holds (the primary key (store_id, country) guards the race). */
static shopd_rc_t
zone_countries(api_ctx_t *ctx, db_conn_t *c, const zone_in_t *in, const char *zone,
               net_reply_t **reply)
{
    if (in->countries == NULL)
        return SHOPD_OK;
    const char *p[3] = {in->sid, zone, in->countries};
    PGresult *r = pr_exec(ctx, c, "pr_zone_taken",
                          "SELECT string_agg(country, ', ' ORDER BY country) FROM "
                          "shipping_zone_countries WHERE store_id = $1::bigint AND zone_id <> "
                          "$2::bigint AND country IN (SELECT jsonb_array_elements_text($3::jsonb))",
                          3, p, reply);
    if (r == NULL)
        return SHOPD_ERR;
    if (!PQgetisnull(r, 0, 0)) {
        char issue[128];
        snprintf(issue, sizeof(issue), "in another zone: %.100s", PQgetvalue(r, 0, 0));
        *reply = api_fail_field(SHOPD_CONFLICT, "country_in_other_zone",
                                "a country can be in one shipping zone only", "countries", issue);
        return SHOPD_CONFLICT;
    }
    if (pr_exec(ctx, c, "pr_zone_clear",
                "DELETE FROM shipping_zone_countries WHERE store_id = $1::bigint AND zone_id = "
                "$2::bigint",
                2, p, reply) == NULL)
        return SHOPD_ERR;
    if (pr_exec(ctx, c, "pr_zone_fill",
                "INSERT INTO shipping_zone_countries (store_id, zone_id, country)"
                " SELECT $1::bigint, $2::bigint, jsonb_array_elements_text($3::jsonb)",
                3, p, reply) == NULL)
        return SHOPD_ERR;
    return SHOPD_OK;
}

static shopd_rc_t
zone_answer(api_ctx_t *ctx, db_conn_t *c, const char *sid, const char *zone, shopd_rc_t ok,
            net_reply_t **reply)
{
    const char *p[2] = {sid, zone};
    PGresult *r =
        pr_exec(ctx, c, "pr_zone_get",
                "SELECT " ZONE_JSON("z") "::text FROM shipping_zones z"
                                         " WHERE z.store_id = $1::bigint AND z.id = $2::bigint",
                2, p, reply);
    if (r == NULL)
        return SHOPD_ERR;
    *reply = pr_row_reply(ctx, r, ok, "zone", "shipping_zone_not_found", "no such shipping zone");
    return SHOPD_OK;
}

static shopd_rc_t
zone_create_body(api_ctx_t *ctx, db_conn_t *c, void *arg, net_reply_t **reply)
{
    zone_in_t *in = arg;
    const char *p[2] = {in->sid, in->name};
    PGresult *r = pr_exec(ctx, c, "pr_zone_insert",
                          "INSERT INTO shipping_zones (store_id, name) VALUES ($1::bigint, $2)"
                          " RETURNING id",
                          2, p, reply);
    if (r == NULL)
        return SHOPD_ERR;
    const char *zone = PQgetvalue(r, 0, 0);
    shopd_rc_t rc = zone_countries(ctx, c, in, zone, reply);
    return rc != SHOPD_OK ? rc : zone_answer(ctx, c, in->sid, zone, SHOPD_CREATED, reply);
}

net_reply_t *
pricing_h_zone_create(api_ctx_t *ctx)
{
    char sid[24];
    api_val_t v = {0};
    zone_in_t in = {pr_sid(ctx, sid), NULL, NULL, NULL};
    zone_validate(&v, ctx->body, true, &in);
    net_reply_t *reply = v.n ? api_val_reply(&v) : pr_tx(ctx, zone_create_body, &in);
    free(in.countries);
    return reply;
}

static shopd_rc_t
zone_update_body(api_ctx_t *ctx, db_conn_t *c, void *arg, net_reply_t **reply)
{
    zone_in_t *in = arg;
    const char *p[3] = {in->sid, in->id, in->name};
    PGresult *r = pr_exec(ctx, c, "pr_zone_update",
                          "UPDATE shipping_zones SET name = coalesce($3, name), updated_at = now()"
                          " WHERE store_id = $1::bigint AND id = $2::bigint RETURNING id",
                          3, p, reply);
    if (r == NULL)
        return SHOPD_ERR;
    if (PQntuples(r) == 0) {
        *reply = pr_not_found(&zone_nf);
        return SHOPD_NOTFOUND;
    }
    shopd_rc_t rc = zone_countries(ctx, c, in, in->id, reply);
    return rc != SHOPD_OK ? rc : zone_answer(ctx, c, in->sid, in->id, SHOPD_OK, reply);
}

net_reply_t *
pricing_h_zone_update(api_ctx_t *ctx)
{
    char sid[24], id[24];
    if (!pr_id_param(ctx, "id", id))
        return pr_not_found(&zone_nf);
    api_val_t v = {0};
    zone_in_t in = {pr_sid(ctx, sid), id, NULL, NULL};
    zone_validate(&v, ctx->body, false, &in);
    net_reply_t *reply = v.n ? api_val_reply(&v) : pr_tx(ctx, zone_update_body, &in);
    free(in.countries);
    return reply;
}

net_reply_t *
pricing_h_zone_delete(api_ctx_t *ctx)
{
    return pr_delete_id(ctx, "pr_zone_delete",
                        "DELETE FROM shipping_zones WHERE store_id = $1::bigint AND id = $2::bigint"
                        " RETURNING id",
                        &zone_nf);
}

/* ------------------------------------------------------------ rates */

net_reply_t *
pricing_h_rate_list(api_ctx_t *ctx)
{
    return pr_get(ctx, "pr_rate_list",
                  "SELECT json_build_object('data', (SELECT coalesce(json_agg(" RATE_JSON(
                      "r") " ORDER BY r.id), '[]') FROM shipping_rates r"
                           " WHERE r.store_id = z.store_id AND r.zone_id = z.id))::text"
                           " FROM shipping_zones z WHERE z.store_id = $1::bigint"
                           " AND z.id = $2::bigint",
                  "rates", &zone_nf);
}

/* The text parameters of a whole rate object (validated), for INSERT or UPDATE. */
typedef struct rate_in_s {
    const char *sid, *id; /* create only (pr_patch passes the rate itself): the zone */
    const char *name, *kind;
    char price[24], minw[24], maxw[24], free[24]; /* "" = NULL */
} rate_in_t;

static const char *const rate_keys[] = {"name",         "kind",       "price", "min_weight_g",
                                        "max_weight_g", "free_above", NULL};

/* Checks a whole rate (a create body, or the stored rate with a PATCH over it). */
static void
rate_validate(api_val_t *v, json_t *b, void *arg)
{
    rate_in_t *in = arg;
    long long x, minw = -1;
    api_val_only(v, b, rate_keys);
    in->name = api_val_string(v, b, "name", true, 1, 100);
    in->kind = api_val_string(v, b, "kind", true, 1, 16);
    if (in->kind && strcmp(in->kind, "flat") != 0 && strcmp(in->kind, "weight") != 0) {
        api_val_add(v, "kind", "must be flat or weight");
        in->kind = NULL;
    }
    in->minw[0] = in->maxw[0] = '\0';
    pr_val_int_text(v, b, "price", 0, PRICING_MONEY_MAX, true, in->price);
    pr_val_int_text(v, b, "free_above", 0, PRICING_MONEY_MAX, false, in->free);
    bool weight = in->kind && strcmp(in->kind, "weight") == 0;
    bool flat = in->kind && strcmp(in->kind, "flat") == 0;
    int got = pr_val_int(v, b, "min_weight_g", 0, WEIGHT_MAX, &minw);
    if (got == 1 && flat)
        api_val_add(v, "min_weight_g", "applies to kind weight only");
    else if (got == 1)
        snprintf(in->minw, 24, "%lld", minw);
    else if (got == 0 && weight)
        api_val_add(v, "min_weight_g", "is required for kind weight");
    got = pr_val_int(v, b, "max_weight_g", 1, WEIGHT_MAX, &x);
    if (got == 1 && flat)
        api_val_add(v, "max_weight_g", "applies to kind weight only");
    else if (got == 1 && minw >= 0 && x <= minw)
        api_val_add(v, "max_weight_g", "must be above min_weight_g");
    else if (got == 1)
        snprintf(in->maxw, 24, "%lld", x);
}

static shopd_rc_t
rate_create_body(api_ctx_t *ctx, db_conn_t *c, void *arg, net_reply_t **reply)
{
    rate_in_t *in = arg;
    const char *p2[2] = {in->sid, in->id};
    /* The zone's row lock orders concurrent creates, so the cap holds. */
    PGresult *r = pr_exec(ctx, c, "pr_rate_zone_lock",
                          "SELECT (SELECT count(*) FROM shipping_rates r WHERE r.store_id = "
                          "z.store_id AND r.zone_id = z.id) FROM shipping_zones z"
                          " WHERE z.store_id = $1::bigint AND z.id = $2::bigint FOR UPDATE",
                          2, p2, reply);
    if (r == NULL)
        return SHOPD_ERR;
    if (PQntuples(r) == 0) {
        *reply = pr_not_found(&zone_nf);
        return SHOPD_NOTFOUND;
    }
    if (atoll(PQgetvalue(r, 0, 0)) >= PRICING_MAX_RATES) {
        *reply =
            api_fail(SHOPD_INVALID, "rate_limit_reached", "a shipping zone holds at most 32 rates");
        return SHOPD_INVALID;
    }
    const char *p[8] = {in->sid,   in->id,           in->name,         in->kind,
                        in->price, pr_opt(in->minw), pr_opt(in->maxw), pr_opt(in->free)};
    return pr_exec_json(
        ctx, c, "pr_rate_insert",
        "INSERT INTO shipping_rates AS r (store_id, zone_id, name, kind, price,"
        " min_weight_g, max_weight_g, free_above) VALUES ($1::bigint, $2::bigint, $3, $4,"
        " $5::bigint, $6::bigint, $7::bigint, $8::bigint) RETURNING " RATE_JSON("r") "::text",
        8, p, SHOPD_CREATED, reply);
}

net_reply_t *
pricing_h_rate_create(api_ctx_t *ctx)
{
    char sid[24], id[24];
    if (!pr_id_param(ctx, "id", id))
        return pr_not_found(&zone_nf);
    rate_in_t in = {.sid = pr_sid(ctx, sid), .id = id};
    return pr_create(ctx, rate_validate, &in, rate_create_body);
}

static int
rate_params(const void *arg, const char **p)
{
    const rate_in_t *in = arg;
    p[0] = in->name;
    p[1] = in->kind;
    p[2] = in->price;
    p[3] = pr_opt(in->minw);
    p[4] = pr_opt(in->maxw);
    p[5] = pr_opt(in->free);
    return 6;
}

static const pr_patch_t rate_patch = {
    .keys = rate_keys,
    .nf = &rate_nf,
    .cur_name = "pr_rate_current",
    .cur_sql = "SELECT json_build_object(" RATE_FIELDS("r") ")::text FROM shipping_rates r"
                                                            " WHERE r.store_id = $1::bigint AND "
                                                            "r.id = $2::bigint FOR UPDATE",
    .upd_name = "pr_rate_update",
    .upd_sql = "UPDATE shipping_rates AS r SET name = $3, kind = $4, price = $5::bigint,"
               " min_weight_g = $6::bigint, max_weight_g = $7::bigint, free_above = $8::bigint,"
               " updated_at = now() WHERE r.store_id = $1::bigint AND r.id = $2::bigint"
               " RETURNING " RATE_JSON("r") "::text",
    .validate = rate_validate,
    .params = rate_params,
};

net_reply_t *
pricing_h_rate_update(api_ctx_t *ctx)
{
    rate_in_t in = {0};
    return pr_patch(ctx, &rate_patch, &in);
}

net_reply_t *
pricing_h_rate_delete(api_ctx_t *ctx)
{
    return pr_delete_id(ctx, "pr_rate_delete",
                        "DELETE FROM shipping_rates WHERE store_id = $1::bigint AND id = $2::bigint"
                        " RETURNING id",
                        &rate_nf);
}
