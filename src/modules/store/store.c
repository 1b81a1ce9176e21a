/*
 * store.c: the platform's store endpoints (create, list, get, update, delete;
 * run on the platform actor) and GET /api/v1/store (run on the store's own
 * actor, answered from the resolution snapshot without a query).
 *
 * PostgreSQL renders the JSON of a store (json_build_object), so a handler
 * passes text through instead of rebuilding it field by field.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shopd/api.h"
#include "shopd/auth.h"
#include "shopd/catalog.h"
#include "shopd/log.h"

#define STORE_JSON                                                                                 \
    "json_build_object('id', id, 'slug', slug, 'name', name, 'domain', domain, 'currency', "       \
    "currency, 'settings', settings, 'status', status, 'created_at', created_at, "                 \
    "'updated_at', updated_at)::text"

/* What GET /api/v1/store shows (no settings, no status). */
#define STORE_PUBLIC_JSON                                                                          \
    "json_build_object('id', id, 'slug', slug, 'name', name, 'currency', currency, "               \
    "'domain', domain)::text"

/* What a resolution snapshot holds (store_lookup reads the columns in order). */
#define STORE_SNAP_COLS                                                                            \
    "id, status, slug, name, currency, coalesce(domain, ''), " STORE_PUBLIC_JSON                   \
    ", coalesce(settings->'cors_origins', '[]'::jsonb)::text, "                                    \
    "coalesce(settings->>'rate_quota', '1')"

/* settings.cors_origins (a JSON array, validated when written) as the snapshot's
 * comma-separated list; an entry that is not a valid origin (a row written by
 * hand) is skipped, and one that does not fit ends the list. */
static void
snap_cors(store_snap_t *out, const char *json)
{
    json_t *a = json_loads(json, 0, NULL);
    size_t i, k = 0;
    json_t *v;
    json_array_foreach(a, i, v)
    {
        const char *o = json_string_value(v);
        size_t n = o ? strlen(o) : 0;
        if (o == NULL || !store_origin_valid(o, n))
            continue;
        if (k + n + 2 > sizeof(out->cors))
            break;
        if (k)
            out->cors[k++] = ',';
        memcpy(out->cors + k, o, n);
        k += n;
    }
    out->cors[k] = '\0';
    json_decref(a);
}

static const char *const reserved_slugs[] = {"www",      "api",    "admin", "app", "static",
                                             "platform", "status", "docs",  NULL};

static bool
digits_only(const char *p, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (p[i] < '0' || p[i] > '9')
            return false;
    return true;
}

shopd_rc_t
store_lookup(app_t *app, const char *key, store_snap_t *out)
{
    const char *sql;
    const char *name;
    const char *arg;
    if (strncmp(key, "id:", 3) == 0) {
        name = "store_by_id";
        sql = "SELECT " STORE_SNAP_COLS " FROM stores WHERE id = $1";
        arg = key + 3;
    } else if (strncmp(key, "slug:", 5) == 0) {
        name = "store_by_slug";
        sql = "SELECT " STORE_SNAP_COLS " FROM stores WHERE slug = $1";
        arg = key + 5;
    } else if (strncmp(key, "domain:", 7) == 0) {
        name = "store_by_domain";
        sql = "SELECT " STORE_SNAP_COLS " FROM stores WHERE domain = $1";
        arg = key + 7;
    } else {
        return SHOPD_NOTFOUND;
    }
    db_conn_t *c = db_acquire(app->db, 2000);
    if (c == NULL)
        return SHOPD_UNAVAILABLE;
    PGresult *r = db_exec(c, name, sql, 1, &arg);
    shopd_rc_t rc = db_result_rc(r);
    if (rc == SHOPD_OK) {
        if (PQntuples(r) == 0) {
            rc = SHOPD_NOTFOUND;
        } else {
            memset(out, 0, sizeof(*out));
            out->id = strtoull(PQgetvalue(r, 0, 0), NULL, 10);
            out->status =
                strcmp(PQgetvalue(r, 0, 1), "suspended") == 0 ? STORE_SUSPENDED : STORE_ACTIVE;
            snprintf(out->slug, sizeof(out->slug), "%s", PQgetvalue(r, 0, 2));
            snprintf(out->name, sizeof(out->name), "%s", PQgetvalue(r, 0, 3));
            snprintf(out->currency, sizeof(out->currency), "%s", PQgetvalue(r, 0, 4));
            snprintf(out->domain, sizeof(out->domain), "%s", PQgetvalue(r, 0, 5));
            int n = snprintf(out->public_json, sizeof(out->public_json), "%s", PQgetvalue(r, 0, 6));
            out->public_len = n < (int)sizeof(out->public_json) ? (size_t)n : 0;
            snap_cors(out, PQgetvalue(r, 0, 7));
            long q = strtol(PQgetvalue(r, 0, 8), NULL, 10);
            out->rate_quota = q >= 1 && q <= STORE_RATE_QUOTA_MAX ? (uint32_t)q : 1;
        }
    } else if (rc != SHOPD_UNAVAILABLE) {
        log_error("store lookup failed key=%s: %s", key, r ? PQresultErrorMessage(r) : "no result");
        rc = SHOPD_UNAVAILABLE;
    }
    PQclear(r);
    db_release(c);
    return rc;
}

/* The settings the edge reads (store_lookup): cors_origins, a list of origins
 * a browser storefront may call from (null or [] for none), and rate_quota,
 * the plan's multiplier of the store's request budgets. Other keys are the
 * store's own. */
static void
validate_edge_settings(api_val_t *v, json_t *st)
{
    json_t *co = json_object_get(st, "cors_origins");
    if (co && !json_is_null(co)) {
        size_t i, total = 0;
        json_t *o;
        if (!json_is_array(co) || json_array_size(co) > STORE_CORS_ORIGINS)
            api_val_add(v, "settings.cors_origins", "must be an array of at most 16 origins");
        else
            json_array_foreach(co, i, o)
            {
                const char *s = json_string_value(o);
                if (s == NULL || !store_origin_valid(s, strlen(s))) {
                    api_val_add(v, "settings.cors_origins",
                                "each entry must be an origin like https://shop.example.com or "
                                "https://*.example.com (lower case, no path, never *)");
                    break;
                }
                total += strlen(s) + 1;
            }
        if (total > STORE_CORS_MAX - 1)
            api_val_add(v, "settings.cors_origins", "the origins are too long together");
    }
    /* settings.timezone draws the days of the sales figures; the name is
     * checked against pg_timezone_names by sql/0011's trigger. */
    json_t *tz = json_object_get(st, "timezone");
    if (tz && !json_is_null(tz) &&
        (!json_is_string(tz) || json_string_length(tz) < 1 || json_string_length(tz) > 64))
        api_val_add(v, "settings.timezone",
                    "must be an IANA time zone name like Europe/Paris (or null for UTC)");
    json_t *q = json_object_get(st, "rate_quota");
    if (q && (!json_is_integer(q) || json_integer_value(q) < 1 ||
              json_integer_value(q) > STORE_RATE_QUOTA_MAX))
        api_val_add(v, "settings.rate_quota", "must be an integer from 1 to 1000");
}

/* Validates the writable fields of a store; NULL outputs mean "not given". */
typedef struct store_input_s {
    const char *slug, *name, *currency, *domain, *status;
    bool domain_given; /* domain present (maybe null: remove it) */
    char *settings;    /* JSON text, malloc'd by jansson */
    char domain_lc[254];
} store_input_t;

static void
validate_input(api_ctx_t *ctx, api_val_t *v, store_input_t *in, bool create)
{
    static const char *const allowed[] = {"slug",     "name",   "currency", "domain",
                                          "settings", "status", NULL};
    json_t *b = ctx->body;
    memset(in, 0, sizeof(*in));
    api_val_only(v, b, allowed);

    in->slug = api_val_string(v, b, "slug", create, 3, 63);
    if (in->slug) {
        if (!store_slug_valid(in->slug, strlen(in->slug))) {
            api_val_add(
                v, "slug",
                "must be 3-63 characters of a-z, 0-9 and '-', not starting or ending with '-'");
            in->slug = NULL;
        } else {
            if (digits_only(in->slug, strlen(in->slug)))
                api_val_add(v, "slug",
                            "must contain a letter (all digits would read as a store id)");
            for (const char *const *r = reserved_slugs; *r; r++)
                if (strcmp(*r, in->slug) == 0)
                    api_val_add(v, "slug", "is reserved");
        }
    }
    in->name = api_val_string(v, b, "name", create, 1, 200);
    in->currency = api_val_string(v, b, "currency", create, 3, 3);
    if (in->currency && !store_currency_valid(in->currency))
        api_val_add(v, "currency", "must be an ISO 4217 code in upper case, like USD");

    json_t *d = json_object_get(b, "domain");
    if (d) {
        in->domain_given = true;
        if (!json_is_null(d)) {
            const char *s = api_val_string(v, b, "domain", false, 4, 253);
            if (s) {
                size_t i = 0;
                for (; s[i] && i < sizeof(in->domain_lc) - 1; i++)
                    in->domain_lc[i] = (char)((s[i] >= 'A' && s[i] <= 'Z') ? s[i] + 32 : s[i]);
                in->domain_lc[i] = '\0';
                const char *base = ctx->app->cfg->base_domain;
                size_t bl = strlen(base), dl = strlen(in->domain_lc);
                if (!store_domain_valid(in->domain_lc))
                    api_val_add(v, "domain", "must be a host name like shop.example.com");
                else if (bl && (strcmp(in->domain_lc, base) == 0 ||
                                (dl > bl && in->domain_lc[dl - bl - 1] == '.' &&
                                 strcmp(in->domain_lc + dl - bl, base) == 0)))
                    api_val_add(v, "domain", "must not be under the platform's base domain");
                else
                    in->domain = in->domain_lc;
            }
        }
    }
    json_t *st = json_object_get(b, "settings");
    if (st) {
        if (!json_is_object(st)) {
            api_val_add(v, "settings", "must be a JSON object");
        } else {
            validate_edge_settings(v, st);
            in->settings = json_dumps(st, JSON_COMPACT);
        }
    }
    in->status = api_val_string(v, b, "status", false, 1, 20);
    if (in->status && strcmp(in->status, "active") && strcmp(in->status, "suspended"))
        api_val_add(v, "status", "must be active or suspended");
}

net_reply_t *
store_h_create(api_ctx_t *ctx)
{
    api_val_t v = {0};
    store_input_t in;
    net_reply_t *reply = NULL;
    db_conn_t *c = NULL;
    PGresult *r = NULL;

    /* The optional first STORE_ADMIN ("admin": {...}) is taken out of the body first. */
    auth_admin_input_t adm;
    auth_store_admin_take(ctx, &v, &adm);
    validate_input(ctx, &v, &in, true);
    if (v.n) {
        reply = api_val_reply(&v);
        goto out;
    }
    c = db_acquire(ctx->app->db, 2000);
    if (c == NULL) {
        reply = api_unavailable("the database");
        goto out;
    }
    const char *params[9] = {in.slug,   in.name,   in.currency, in.domain, in.settings,
                             in.status, adm.email, adm.hash,    adm.name};
    if (adm.given)
        /* One statement, so the store and its first admin exist together or not at all. */
        r = db_exec(
            c, "store_create_admin",
            "WITH s AS (INSERT INTO stores (slug, name, currency, domain, settings, status) "
            "VALUES ($1, $2, $3, $4, coalesce($5::jsonb, '{}'::jsonb), coalesce($6, 'active')) "
            "RETURNING *), a AS (INSERT INTO users (store_id, email, password_hash, role, name) "
            "SELECT id, $7, $8, 'STORE_ADMIN', $9 FROM s RETURNING id, email, role) "
            "SELECT id, ((" STORE_JSON ")::jsonb || jsonb_build_object('admin', "
            "(SELECT json_build_object('id', a.id, 'email', a.email, 'role', a.role) FROM "
            "a)))::text FROM s",
            9, params);
    else
        r = db_exec(
            c, "store_create",
            "INSERT INTO stores (slug, name, currency, domain, settings, status) "
            "VALUES ($1, $2, $3, $4, coalesce($5::jsonb, '{}'::jsonb), coalesce($6, 'active')) "
            "RETURNING id, " STORE_JSON,
            6, params);
    if (db_result_rc(r) != SHOPD_OK) {
        reply = api_db_error(ctx, r, "store write");
        goto out;
    }
    store_cache_invalidate(ctx->app->stores, strtoull(PQgetvalue(r, 0, 0), NULL, 10));
    reply = api_raw_json(SHOPD_CREATED, PQgetvalue(r, 0, 1), (size_t)PQgetlength(r, 0, 1));
    char loc[64];
    snprintf(loc, sizeof(loc), "/api/v1/stores/%s", PQgetvalue(r, 0, 0));
    net_reply_add_header(reply, "Location", loc);
out:
    PQclear(r);
    db_release(c);
    free(in.settings);
    return reply;
}

net_reply_t *
store_h_list(api_ctx_t *ctx)
{
    api_val_t v = {0};
    char lbuf[32], cbuf[32], pbuf[32], sbuf[32];
    long limit = 20, page = 0;
    const char *cursor = "0";
    const char *s;
    long long x;
    uint64_t cid;
    if ((s = api_query_param(ctx->env, "limit", lbuf, sizeof(lbuf)))) {
        if (shopd_int_parse(s, 1, 100, &x))
            limit = (long)x;
        else
            api_val_add(&v, "limit", "must be an integer from 1 to 100");
    }
    if ((s = api_query_param(ctx->env, "cursor", cbuf, sizeof(cbuf)))) {
        if (!shopd_id_parse(s, strlen(s), &cid))
            api_val_add(&v, "cursor", "must be a cursor returned by a previous page");
        else
            cursor = s;
    }
    if ((s = api_query_param(ctx->env, "page", pbuf, sizeof(pbuf)))) {
        if (shopd_int_parse(s, 1, 1000000, &x))
            page = (long)x;
        else
            api_val_add(&v, "page", "must be an integer from 1 to 1000000");
    }
    const char *status = api_query_param(ctx->env, "status", sbuf, sizeof(sbuf));
    if (status && strcmp(status, "active") && strcmp(status, "suspended"))
        api_val_add(&v, "status", "must be active or suspended");
    if (v.n)
        return api_val_reply(&v);

    db_conn_t *c = db_acquire(ctx->app->db, 2000);
    if (c == NULL)
        return api_unavailable("the database");
    char lim[24], off[24];
    snprintf(lim, sizeof(lim), "%ld", limit);
    snprintf(off, sizeof(off), "%ld", page > 0 ? (page - 1) * limit : 0);
    const char *p_page[4] = {status, cursor, lim, off};
    const char *p_count[1] = {status};
    db_query_t qs[2] = {
        {"store_list",
         "WITH page AS (SELECT * FROM stores WHERE ($1::text IS NULL OR status = $1) AND id > "
         "$2::bigint "
         "ORDER BY id LIMIT $3::int OFFSET $4::int) "
         "SELECT coalesce(json_agg(" STORE_JSON
         "::json ORDER BY id), '[]')::text, count(*), max(id) FROM page",
         4, p_page},
        {"store_count", "SELECT count(*) FROM stores WHERE ($1::text IS NULL OR status = $1)", 1,
         p_count},
    };
    PGresult *res[2] = {NULL, NULL};
    /* One round trip for the page and the total. */
    shopd_rc_t rc = db_pipeline(c, qs, 2, res);
    net_reply_t *reply;
    if (rc != SHOPD_OK) {
        reply = rc == SHOPD_UNAVAILABLE ? api_unavailable("the database")
                                        : api_internal(ctx, "store list failed");
    } else {
        long got = atol(PQgetvalue(res[0], 0, 1));
        json_t *data = json_loads(PQgetvalue(res[0], 0, 0), 0, NULL);
        json_t *doc = json_pack("{s:o, s:I, s:i}", "data", data ? data : json_array(), "total",
                                (json_int_t)atoll(PQgetvalue(res[1], 0, 0)), "limit", (int)limit);
        if (got == limit && page == 0)
            json_object_set_new(doc, "next_cursor", json_string(PQgetvalue(res[0], 0, 2)));
        else
            json_object_set_new(doc, "next_cursor", json_null());
        if (page > 0)
            json_object_set_new(doc, "page", json_integer(page));
        reply = api_json(SHOPD_OK, doc);
    }
    PQclear(res[0]);
    PQclear(res[1]);
    db_release(c);
    return reply;
}

/* The :id path parameter: a numeric id or a slug. */
static const char *
id_param(api_ctx_t *ctx, char *buf, size_t buflen, bool *numeric)
{
    size_t n;
    const char *p = msg_param(ctx->env, "id", &n);
    if (p == NULL || n >= buflen)
        return NULL;
    memcpy(buf, p, n);
    buf[n] = '\0';
    /* All digits is an id; one past the bigint range cannot exist (404, no query). */
    uint64_t id;
    *numeric = digits_only(buf, n);
    if (*numeric && !shopd_id_parse(buf, n, &id))
        return NULL;
    if (!*numeric && !store_slug_valid(buf, n))
        return NULL;
    return buf;
}

net_reply_t *
store_h_get(api_ctx_t *ctx)
{
    char idb[80];
    bool numeric;
    const char *id = id_param(ctx, idb, sizeof(idb), &numeric);
    if (id == NULL)
        return api_fail(SHOPD_NOTFOUND, "store_not_found", "no such store");
    db_conn_t *c = db_acquire(ctx->app->db, 2000);
    if (c == NULL)
        return api_unavailable("the database");
    PGresult *r = numeric
                      ? db_exec(c, "store_get_id",
                                "SELECT " STORE_JSON " FROM stores WHERE id = $1::bigint", 1, &id)
                      : db_exec(c, "store_get_slug",
                                "SELECT " STORE_JSON " FROM stores WHERE slug = $1", 1, &id);
    net_reply_t *reply;
    shopd_rc_t rc = db_result_rc(r);
    if (rc != SHOPD_OK)
        reply = rc == SHOPD_UNAVAILABLE ? api_unavailable("the database")
                                        : api_internal(ctx, "store get failed");
    else if (PQntuples(r) == 0)
        reply = api_fail(SHOPD_NOTFOUND, "store_not_found", "no such store");
    else
        reply = api_raw_json(SHOPD_OK, PQgetvalue(r, 0, 0), (size_t)PQgetlength(r, 0, 0));
    PQclear(r);
    db_release(c);
    return reply;
}

net_reply_t *
store_h_update(api_ctx_t *ctx)
{
    char idb[80];
    bool numeric;
    api_val_t v = {0};
    store_input_t in;
    net_reply_t *reply = NULL;
    db_conn_t *c = NULL;
    PGresult *r = NULL;

    memset(&in, 0, sizeof(in));
    const char *id = id_param(ctx, idb, sizeof(idb), &numeric);
    if (id == NULL) {
        reply = api_fail(SHOPD_NOTFOUND, "store_not_found", "no such store");
        goto out;
    }
    validate_input(ctx, &v, &in, false);
    if (v.n) {
        reply = api_val_reply(&v);
        goto out;
    }
    c = db_acquire(ctx->app->db, 2000);
    if (c == NULL) {
        reply = api_unavailable("the database");
        goto out;
    }
    const char *params[9] = {
        numeric ? id : NULL,         numeric ? NULL : id, in.slug,     in.name,  in.currency,
        in.domain_given ? "t" : "f", in.domain,           in.settings, in.status};
    r = db_exec(
        c, "store_update",
        "UPDATE stores SET slug = coalesce($3, slug), name = coalesce($4, name), "
        "currency = coalesce($5, currency), "
        "domain = CASE WHEN $6::bool THEN $7 ELSE domain END, "
        "settings = CASE WHEN $8::jsonb IS NULL THEN settings ELSE settings || $8::jsonb END, "
        "status = coalesce($9, status), updated_at = now() "
        "WHERE (id = $1::bigint OR slug = $2::text) "
        "RETURNING id, " STORE_JSON,
        9, params);
    if (db_result_rc(r) != SHOPD_OK) {
        reply = api_db_error(ctx, r, "store write");
        goto out;
    }
    if (PQntuples(r) == 0) {
        reply = api_fail(SHOPD_NOTFOUND, "store_not_found", "no such store");
        goto out;
    }
    /* Other I/O threads must not keep routing to the old slug, domain or status. */
    store_cache_invalidate(ctx->app->stores, strtoull(PQgetvalue(r, 0, 0), NULL, 10));
    if (in.settings) {
        /* settings.search_language re-indexes the store's products (sql/0015):
         * cached search answers of the old language must go too. */
        api_ctx_t sc = *ctx;
        sc.store_id = strtoull(PQgetvalue(r, 0, 0), NULL, 10);
        catalog_changed(&sc);
    }
    reply = api_raw_json(SHOPD_OK, PQgetvalue(r, 0, 1), (size_t)PQgetlength(r, 0, 1));
out:
    PQclear(r);
    db_release(c);
    free(in.settings);
    return reply;
}

net_reply_t *
store_h_delete(api_ctx_t *ctx)
{
    char idb[80];
    bool numeric;
    const char *id = id_param(ctx, idb, sizeof(idb), &numeric);
    if (id == NULL)
        return api_fail(SHOPD_NOTFOUND, "store_not_found", "no such store");
    db_conn_t *c = db_acquire(ctx->app->db, 2000);
    if (c == NULL)
        return api_unavailable("the database");
    const char *params[2] = {numeric ? id : NULL, numeric ? NULL : id};
    PGresult *r = db_exec(
        c, "store_delete",
        "DELETE FROM stores WHERE (id = $1::bigint OR slug = $2::text) RETURNING id", 2, params);
    net_reply_t *reply;
    if (db_result_rc(r) != SHOPD_OK) {
        reply = api_db_error(ctx, r, "store write");
    } else if (PQntuples(r) == 0) {
        reply = api_fail(SHOPD_NOTFOUND, "store_not_found", "no such store");
    } else {
        store_cache_invalidate(ctx->app->stores, strtoull(PQgetvalue(r, 0, 0), NULL, 10));
        reply = api_empty(SHOPD_NO_CONTENT);
    }
    PQclear(r);
    db_release(c);
    return reply;
}

net_reply_t *
store_h_current(api_ctx_t *ctx)
{
    const store_snap_t *s = ctx->store;
    if (s->public_len > 0)
        return api_raw_json(SHOPD_OK, s->public_json, s->public_len);
    /* Rendered JSON did not fit the snapshot (very long name): build it here. */
    json_t *doc = json_pack("{s:I, s:s, s:s, s:s, s:o}", "id", (json_int_t)s->id, "slug", s->slug,
                            "name", s->name, "currency", s->currency, "domain",
                            s->domain[0] ? json_string(s->domain) : json_null());
    return api_json(SHOPD_OK, doc);
}
