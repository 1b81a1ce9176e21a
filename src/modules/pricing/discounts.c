/*
 * discounts.c: discount codes (percent in basis points or a fixed amount;
 * minimum subtotal, validity window, total and per-customer limits), their
 * admin routes, and the three calls a checkout makes: find (does the code
 * apply to this cart now), use (record it inside the checkout's transaction)
 * and release (a cancelled order gives its use back).
 *
 * Limits under concurrency: pricing_discount_use locks the discount's row
 * (SELECT ... FOR UPDATE) before it counts anything, so every use of one code
 * waits for the one before it to commit or roll back and then sees it (READ
 * COMMITTED takes a fresh snapshot per statement); the increment itself is
 * conditional (used < usage_limit) as a last guard. Fifty checkouts racing for
 * a single-use code: one gets it, forty-nine get discount_used_up.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pricing_priv.h"

#define LIMIT_MAX 2147483647LL

#define DISC_FIELDS(d)                                                                             \
    "'code', " d ".code, 'kind', " d ".kind, 'value', " d ".value, 'min_subtotal', " d             \
    ".min_subtotal, 'starts_at', " d ".starts_at, 'ends_at', " d ".ends_at, 'usage_limit', " d     \
    ".usage_limit, 'per_customer_limit', " d ".per_customer_limit, 'active', " d ".active"

#define DISC_JSON(d)                                                                               \
    "json_build_object('id', " d ".id, " DISC_FIELDS(d) ", 'used', " d ".used, 'created_at', " d   \
                                                        ".created_at, 'updated_at', " d            \
                                                        ".updated_at)"

/* ------------------------------------------------------------ checkout calls */

shopd_rc_t
pricing_discount_find(db_conn_t *c, uint64_t store_id, const char *code, int64_t subtotal,
                      uint64_t user_id, const char *email, pricing_discount_t *out,
                      pricing_discount_why_t *why)
{
    char s[24], u[24];
    memset(out, 0, sizeof(*out));
    *why = PRICING_DISCOUNT_UNKNOWN;
    if (code == NULL || code[0] == '\0' || strlen(code) > 64)
        return SHOPD_OK;
    const char *p[4] = {pr_u64(store_id, s), code, pr_u64(user_id, u),
                        email && email[0] ? email : NULL};
    PGresult *r = db_exec(
        c, "pr_disc_find",
        "SELECT d.id, d.code, d.kind = 'percent', d.value, d.min_subtotal,"
        " NOT d.active OR coalesce(d.starts_at > now(), false),"
        " coalesce(d.ends_at <= now(), false),"
        " (d.usage_limit IS NOT NULL AND d.used >= d.usage_limit) OR"
        " (d.per_customer_limit IS NOT NULL AND ($3::bigint <> 0 OR $4::text IS NOT NULL) AND"
        " (SELECT count(*) FROM discount_uses x WHERE x.store_id = d.store_id"
        " AND x.discount_id = d.id AND (($3::bigint <> 0 AND x.user_id = $3::bigint)"
        " OR lower(x.email) = lower($4::text))) >= d.per_customer_limit)"
        " FROM discounts d WHERE d.store_id = $1::bigint AND lower(d.code) = lower($2)",
        4, p);
    shopd_rc_t rc = db_result_rc(r);
    if (rc == SHOPD_OK && PQntuples(r) == 1) {
        out->id = strtoull(PQgetvalue(r, 0, 0), NULL, 10);
        snprintf(out->code, sizeof(out->code), "%s", PQgetvalue(r, 0, 1));
        out->percent = PQgetvalue(r, 0, 2)[0] == 't';
        out->value = strtoll(PQgetvalue(r, 0, 3), NULL, 10);
        out->min_subtotal = strtoll(PQgetvalue(r, 0, 4), NULL, 10);
        if (PQgetvalue(r, 0, 5)[0] == 't')
            *why = PRICING_DISCOUNT_NOT_STARTED;
        else if (PQgetvalue(r, 0, 6)[0] == 't')
            *why = PRICING_DISCOUNT_EXPIRED;
        else if (PQgetvalue(r, 0, 7)[0] == 't')
            *why = PRICING_DISCOUNT_USED_UP;
        else if (subtotal < out->min_subtotal)
            *why = PRICING_DISCOUNT_MIN_SUBTOTAL;
        else
            *why = PRICING_DISCOUNT_OK;
    }
    PQclear(r);
    return rc;
}

shopd_rc_t
pricing_discount_use(db_conn_t *c, uint64_t store_id, uint64_t discount_id, uint64_t order_id,
                     uint64_t user_id, const char *email, pricing_discount_why_t *why)
{
    char s[24], d[24], o[24], u[24];
    const char *p[5] = {pr_u64(store_id, s), pr_u64(discount_id, d), pr_u64(order_id, o),
                        pr_u64(user_id, u), email && email[0] ? email : NULL};
    shopd_rc_t rc;
    PGresult *r = NULL;
    *why = PRICING_DISCOUNT_OK;

    /* 1. The row lock: uses of this code queue here, one transaction at a time. */
    r = db_exec(c, "pr_disc_lock",
                "SELECT NOT d.active OR coalesce(d.starts_at > now(), false),"
                " coalesce(d.ends_at <= now(), false),"
                " d.usage_limit IS NOT NULL AND d.used >= d.usage_limit,"
                " d.per_customer_limit FROM discounts d"
                " WHERE d.store_id = $1::bigint AND d.id = $2::bigint FOR UPDATE",
                2, p);
    if ((rc = db_result_rc(r)) != SHOPD_OK)
        goto out;
    if (PQntuples(r) == 0) {
        *why = PRICING_DISCOUNT_UNKNOWN;
        rc = SHOPD_NOTFOUND;
        goto out;
    }
    if (PQgetvalue(r, 0, 0)[0] == 't' || PQgetvalue(r, 0, 1)[0] == 't' ||
        PQgetvalue(r, 0, 2)[0] == 't') {
        *why = PQgetvalue(r, 0, 0)[0] == 't'   ? PRICING_DISCOUNT_NOT_STARTED
               : PQgetvalue(r, 0, 1)[0] == 't' ? PRICING_DISCOUNT_EXPIRED
                                               : PRICING_DISCOUNT_USED_UP;
        rc = SHOPD_CONFLICT;
        goto out;
    }
    bool per_customer = !PQgetisnull(r, 0, 3) && (user_id != 0 || p[4] != NULL);
    long long per_limit = per_customer ? atoll(PQgetvalue(r, 0, 3)) : 0;
    PQclear(r);
    r = NULL;

    /* 2. The customer's own uses, counted after the lock, so they include every
     *    use committed before ours. */
    if (per_customer) {
        const char *pc[4] = {p[0], p[1], p[3], p[4]};
        r = db_exec(c, "pr_disc_customer_uses",
                    "SELECT count(*) FROM discount_uses x WHERE x.store_id = $1::bigint"
                    " AND x.discount_id = $2::bigint AND (($3::bigint <> 0 AND x.user_id = "
                    "$3::bigint) OR lower(x.email) = lower($4::text))",
                    4, pc);
        if ((rc = db_result_rc(r)) != SHOPD_OK)
            goto out;
        if (atoll(PQgetvalue(r, 0, 0)) >= per_limit) {
            *why = PRICING_DISCOUNT_USED_UP;
            rc = SHOPD_CONFLICT;
            goto out;
        }
        PQclear(r);
        r = NULL;
    }

    /* 3. The conditional increment and the use, in one statement. */
    r = db_exec(c, "pr_disc_use",
                "WITH d AS (UPDATE discounts SET used = used + 1 WHERE store_id = $1::bigint"
                " AND id = $2::bigint AND (usage_limit IS NULL OR used < usage_limit) RETURNING id)"
                " INSERT INTO discount_uses (store_id, discount_id, order_id, user_id, email)"
                " SELECT $1::bigint, d.id, $3::bigint, nullif($4::bigint, 0), $5 FROM d"
                " RETURNING id",
                5, p);
    if ((rc = db_result_rc(r)) != SHOPD_OK)
        goto out;
    if (PQntuples(r) == 0) {
        *why = PRICING_DISCOUNT_USED_UP;
        rc = SHOPD_CONFLICT;
    }
out:
    PQclear(r);
    return rc;
}

shopd_rc_t
pricing_discount_release(db_conn_t *c, uint64_t store_id, uint64_t order_id)
{
    char s[24], o[24];
    const char *p[2] = {pr_u64(store_id, s), pr_u64(order_id, o)};
    PGresult *r = db_exec(c, "pr_disc_release",
                          "WITH u AS (DELETE FROM discount_uses WHERE store_id = $1::bigint"
                          " AND order_id = $2::bigint RETURNING discount_id)"
                          " UPDATE discounts d SET used = d.used - 1 FROM u"
                          " WHERE d.store_id = $1::bigint AND d.id = u.discount_id AND d.used > 0",
                          2, p);
    shopd_rc_t rc = db_result_rc(r);
    PQclear(r);
    return rc;
}

/* ------------------------------------------------------------ handlers */

static const pr_nf_t disc_nf = {"discount_not_found", "no such discount"};

net_reply_t *
pricing_h_discount_list(api_ctx_t *ctx)
{
    return pr_list(ctx, "pr_disc_list",
                   "SELECT json_build_object('data', coalesce(json_agg(" DISC_JSON(
                       "d") " ORDER BY d.id), '[]'))::text"
                            " FROM discounts d WHERE d.store_id = $1::bigint",
                   "discounts", &disc_nf);
}

net_reply_t *
pricing_h_discount_get(api_ctx_t *ctx)
{
    return pr_get(ctx, "pr_disc_get",
                  "SELECT " DISC_JSON("d") "::text FROM discounts d"
                                           " WHERE d.store_id = $1::bigint AND d.id = "
                                           "$2::bigint",
                  "discount", &disc_nf);
}

static const char *const disc_keys[] = {"code",      "kind",    "value",       "min_subtotal",
                                        "starts_at", "ends_at", "usage_limit", "per_customer_limit",
                                        "active",    NULL};

typedef struct disc_in_s {
    const char *sid; /* create only: pr_patch passes the store itself */
    const char *code, *kind, *starts, *ends;
    char value[24], min_sub[24], limit[24], per[24]; /* "" = NULL */
    const char *active;
} disc_in_t;

static bool
code_valid(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > 64)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
              ch == '_' || ch == '-'))
            return false;
    }
    return true;
}

static const char *
val_time(api_val_t *v, json_t *b, const char *field, int64_t *us)
{
    const char *s = api_val_string(v, b, field, false, 1, 40);
    if (s != NULL && !api_rfc3339(s, us)) {
        api_val_add(v, field, "must be an RFC 3339 date-time (2026-12-01T00:00:00Z)");
        return NULL;
    }
    return s;
}

/* Checks a whole discount (a create body, or the stored one with a PATCH over it). */
static void
disc_validate(api_val_t *v, json_t *b, void *arg)
{
    disc_in_t *in = arg;
    int64_t t0 = 0, t1 = 0;
    bool active = true;
    api_val_only(v, b, disc_keys);
    in->code = api_val_string(v, b, "code", true, 1, 64);
    if (in->code && !code_valid(in->code)) {
        api_val_add(v, "code", "must be 1 to 64 of A-Z, a-z, 0-9, _ and -");
        in->code = NULL;
    }
    in->kind = api_val_string(v, b, "kind", true, 1, 16);
    if (in->kind && strcmp(in->kind, "percent") != 0 && strcmp(in->kind, "fixed") != 0) {
        api_val_add(v, "kind", "must be percent or fixed");
        in->kind = NULL;
    }
    bool percent = in->kind && strcmp(in->kind, "percent") == 0;
    pr_val_int_text(v, b, "value", 1, percent ? 10000 : PRICING_MONEY_MAX, true, in->value);
    pr_val_int_text(v, b, "min_subtotal", 0, PRICING_MONEY_MAX, false, in->min_sub);
    pr_val_int_text(v, b, "usage_limit", 1, LIMIT_MAX, false, in->limit);
    pr_val_int_text(v, b, "per_customer_limit", 1, LIMIT_MAX, false, in->per);
    in->starts = val_time(v, b, "starts_at", &t0);
    in->ends = val_time(v, b, "ends_at", &t1);
    if (in->starts && in->ends && t1 <= t0)
        api_val_add(v, "ends_at", "must be after starts_at");
    pr_val_bool(v, b, "active", &active);
    in->active = active ? "t" : "f";
}

static shopd_rc_t
disc_create_body(api_ctx_t *ctx, db_conn_t *c, void *arg, net_reply_t **reply)
{
    disc_in_t *in = arg;
    const char *p[10] = {
        in->sid,    in->code, in->kind,          in->value,       pr_opt(in->min_sub),
        in->starts, in->ends, pr_opt(in->limit), pr_opt(in->per), in->active};
    return pr_exec_json(
        ctx, c, "pr_disc_insert",
        "INSERT INTO discounts AS d (store_id, code, kind, value, min_subtotal, starts_at, ends_at,"
        " usage_limit, per_customer_limit, active) VALUES ($1::bigint, $2, $3, $4::bigint,"
        " coalesce($5::bigint, 0), $6::timestamptz, $7::timestamptz, $8::int, $9::int, $10::bool)"
        " RETURNING " DISC_JSON("d") "::text",
        10, p, SHOPD_CREATED, reply);
}

net_reply_t *
pricing_h_discount_create(api_ctx_t *ctx)
{
    char sid[24];
    disc_in_t in = {.sid = pr_sid(ctx, sid)};
    return pr_create(ctx, disc_validate, &in, disc_create_body);
}

static int
disc_params(const void *arg, const char **p)
{
    const disc_in_t *in = arg;
    const char *mine[9] = {in->code,   in->kind, in->value,         pr_opt(in->min_sub),
                           in->starts, in->ends, pr_opt(in->limit), pr_opt(in->per),
                           in->active};
    memcpy(p, mine, sizeof(mine));
    return 9;
}

static const pr_patch_t disc_patch = {
    .keys = disc_keys,
    .nf = &disc_nf,
    .cur_name = "pr_disc_current",
    .cur_sql = "SELECT json_build_object(" DISC_FIELDS("d") ")::text FROM discounts d"
                                                            " WHERE d.store_id = $1::bigint AND "
                                                            "d.id = $2::bigint FOR UPDATE",
    .upd_name = "pr_disc_update",
    .upd_sql = "UPDATE discounts AS d SET code = $3, kind = $4, value = $5::bigint,"
               " min_subtotal = coalesce($6::bigint, 0), starts_at = $7::timestamptz,"
               " ends_at = $8::timestamptz, usage_limit = $9::int, per_customer_limit = $10::int,"
               " active = $11::bool, updated_at = now()"
               " WHERE d.store_id = $1::bigint AND d.id = $2::bigint"
               " RETURNING " DISC_JSON("d") "::text",
    .validate = disc_validate,
    .params = disc_params,
};

net_reply_t *
pricing_h_discount_update(api_ctx_t *ctx)
{
    disc_in_t in = {0};
    return pr_patch(ctx, &disc_patch, &in);
}

net_reply_t *
pricing_h_discount_delete(api_ctx_t *ctx)
{
    return pr_delete_id(ctx, "pr_disc_delete",
                        "DELETE FROM discounts WHERE store_id = $1::bigint AND id = $2::bigint"
                        " RETURNING id",
                        &disc_nf);
}
