/*
 * addresses.c: the signed-in customer's saved addresses in this store
 * (/api/v1/me/addresses), the address check shared with the checkout's inline
 * addresses, and the loads the checkout snapshots an order's address from.
 *
 * A user has at most PRICING_MAX_ADDRESSES addresses and at most one default
 * shipping and one default billing address: setting a default clears the
 * user's other row in the same transaction (the partial unique indexes of
 * sql/0007 make any slip an error rather than two defaults). Every query names
 * the store and the user, so another customer's (or store's) address id is
 * simply not found.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pricing_priv.h"

#define PRICING_MAX_ADDRESSES 50

/* The fields an order snapshots, in the order of the header's contract. */
#define ADDR_FIELDS(a)                                                                             \
    "'name', " a ".name, 'line1', " a ".line1, 'line2', " a ".line2, 'city', " a ".city, "         \
    "'region', " a ".region, 'postal_code', " a ".postal_code, 'country', " a ".country, "         \
    "'phone', " a ".phone, 'company', " a ".company"

#define ADDR_JSON(a)                                                                               \
    "json_build_object('id', " a                                                                   \
    ".id, " ADDR_FIELDS(a) ", 'is_default_shipping', " a                                           \
                           ".is_default_shipping, 'is_default_billing', " a                        \
                           ".is_default_billing, 'created_at', " a ".created_at, 'updated_at', " a \
                           ".updated_at)"

typedef struct addr_field_s {
    const char *name;
    bool required;
    size_t max;
} addr_field_t;

static const addr_field_t addr_fields[] = {
    {"name", true, 200}, {"company", false, 200}, {"line1", true, 200},      {"line2", false, 200},
    {"city", true, 100}, {"region", false, 100},  {"postal_code", true, 20}, {"phone", false, 40},
};

static void
add_prefixed(api_val_t *v, const char *prefix, const char *field, const char *issue)
{
    char name[64];
    snprintf(name, sizeof(name), "%s%s", prefix, field);
    api_val_add(v, name, issue);
}

bool
pricing_address_check(api_val_t *v, json_t *addr, const char *prefix)
{
    size_t before = v->n;
    if (prefix == NULL)
        prefix = "";
    if (!json_is_object(addr)) {
        char name[64];
        size_t n = strlen(prefix);
        /* "shipping_address." names the object itself as "shipping_address" */
        snprintf(name, sizeof(name), "%.*s", (int)(n && prefix[n - 1] == '.' ? n - 1 : n), prefix);
        api_val_add(v, name[0] ? name : "body", "must be an object");
        return false;
    }
    const char *key;
    json_t *x;
    json_object_foreach(addr, key, x)
    {
        bool known = strcmp(key, "country") == 0;
        for (size_t i = 0; !known && i < SHOPD_ARRAY_LEN(addr_fields); i++)
            known = strcmp(key, addr_fields[i].name) == 0;
        if (!known)
            add_prefixed(v, prefix, key, "unknown field");
    }
    /* The kit's checks record plain field names: run them on the side and
     * carry their issues over under the prefixed names. */
    api_val_t tmp = {0};
    for (size_t i = 0; i < SHOPD_ARRAY_LEN(addr_fields); i++) {
        const addr_field_t *f = &addr_fields[i];
        api_val_string(&tmp, addr, f->name, f->required, f->required ? 1 : 0, f->max);
    }
    pr_val_country(&tmp, addr, "country", true);
    for (size_t i = 0; i < tmp.n; i++)
        add_prefixed(v, prefix, tmp.fields[i], tmp.issues[i]);
    return v->n == before;
}

/* The text of a string member, NULL when absent or null (SQL NULL). */
static const char *
str_of(json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

static json_t *
load_one(db_conn_t *c, const char *name, const char *sql, int np, const char *const *p,
         shopd_rc_t *rc)
{
    PGresult *r = db_exec(c, name, sql, np, p);
    json_t *out = NULL;
    *rc = db_result_rc(r);
    if (*rc == SHOPD_OK) {
        out = pr_json_col(r, 0, 0);
        if (out == NULL)
            *rc = PQntuples(r) == 0 ? SHOPD_NOTFOUND : SHOPD_ERR;
    }
    PQclear(r);
    return out;
}

json_t *
pricing_address_load(db_conn_t *c, uint64_t store_id, uint64_t user_id, uint64_t address_id,
                     shopd_rc_t *rc)
{
    char s[24], u[24], a[24];
    const char *p[3] = {pr_u64(store_id, s), pr_u64(user_id, u), pr_u64(address_id, a)};
    return load_one(c, "pr_addr_load",
                    "SELECT json_build_object(" ADDR_FIELDS(
                        "a") ")::text FROM addresses a"
                             " WHERE a.store_id = $1::bigint AND a.user_id = $2::bigint"
                             " AND a.id = $3::bigint",
                    3, p, rc);
}

json_t *
pricing_address_default(db_conn_t *c, uint64_t store_id, uint64_t user_id, bool billing,
                        shopd_rc_t *rc)
{
    char s[24], u[24];
    const char *p[2] = {pr_u64(store_id, s), pr_u64(user_id, u)};
    if (billing)
        return load_one(c, "pr_addr_def_billing",
                        "SELECT json_build_object(" ADDR_FIELDS(
                            "a") ")::text FROM addresses a"
                                 " WHERE a.store_id = $1::bigint AND a.user_id = $2::bigint"
                                 " AND a.is_default_billing",
                        2, p, rc);
    return load_one(c, "pr_addr_def_shipping",
                    "SELECT json_build_object(" ADDR_FIELDS(
                        "a") ")::text FROM addresses a"
                             " WHERE a.store_id = $1::bigint AND a.user_id = $2::bigint"
                             " AND a.is_default_shipping",
                    2, p, rc);
}

/* ------------------------------------------------------------ handlers */

static const pr_nf_t addr_nf = {"address_not_found", "no such address"};

static net_reply_t *
addr_not_found(void)
{
    return pr_not_found(&addr_nf);
}

/* The caller's user id as text, or NULL when the caller has no account in this
 * store (a super admin acting on it): addresses belong to the store's users. */
static const char *
own_user(const api_ctx_t *ctx, char *buf)
{
    const msg_caller_t *c = ctx->caller;
    if (c == NULL || c->user_id == 0 || c->store_id != ctx->store_id)
        return NULL;
    return pr_u64(c->user_id, buf);
}

static net_reply_t *
no_account(void)
{
    return api_fail(SHOPD_FORBIDDEN, "no_store_account",
                    "addresses belong to the store's own accounts; sign in as one");
}

net_reply_t *
pricing_h_address_list(api_ctx_t *ctx)
{
    char sid[24], uid[24];
    if (own_user(ctx, uid) == NULL)
        return no_account();
    const char *p[2] = {pr_sid(ctx, sid), uid};
    net_reply_t *reply = NULL;
    PGresult *r = pr_read(ctx, "pr_addr_list",
                          "SELECT json_build_object('data', coalesce(json_agg(" ADDR_JSON(
                              "a") " ORDER BY a.id), '[]'))::text FROM addresses a"
                                   " WHERE a.store_id = $1::bigint AND a.user_id = $2::bigint",
                          2, p, &reply);
    return reply ? reply : pr_row_reply(ctx, r, SHOPD_OK, "addresses", "address_not_found", "");
}

net_reply_t *
pricing_h_address_get(api_ctx_t *ctx)
{
    char sid[24], uid[24], id[24];
    if (own_user(ctx, uid) == NULL)
        return no_account();
    if (!pr_id_param(ctx, "id", id))
        return addr_not_found();
    const char *p[3] = {pr_sid(ctx, sid), uid, id};
    net_reply_t *reply = NULL;
    PGresult *r = pr_read(ctx, "pr_addr_get",
                          "SELECT " ADDR_JSON("a") "::text FROM addresses a"
                                                   " WHERE a.store_id = $1::bigint AND a.user_id "
                                                   "= $2::bigint AND a.id = $3::bigint",
                          3, p, &reply);
    return reply
               ? reply
               : pr_row_reply(ctx, r, SHOPD_OK, "address", "address_not_found", "no such address");
}

/* What a create or update writes, checked before the transaction. */
typedef struct addr_in_s {
    const char *sid, *uid, *id; /* id: NULL on create */
    json_t *addr;               /* the address fields (create: from the body) */
    int def_ship, def_bill;     /* -1 absent, 0 false, 1 true */
} addr_in_t;

static const char *const body_keys[] = {"name",
                                        "company",
                                        "line1",
                                        "line2",
                                        "city",
                                        "region",
                                        "postal_code",
                                        "country",
                                        "phone",
                                        "is_default_shipping",
                                        "is_default_billing",
                                        NULL};

/* Reads the two default flags of the body; the rest is the address. */
static void
read_flags(api_val_t *v, json_t *body, addr_in_t *in)
{
    bool b;
    in->def_ship = pr_val_bool(v, body, "is_default_shipping", &b) == 1 ? b : -1;
    in->def_bill = pr_val_bool(v, body, "is_default_billing", &b) == 1 ? b : -1;
}

static json_t *
without_flags(json_t *body)
{
    json_t *a = json_deep_copy(body);
    json_object_del(a, "is_default_shipping");
    json_object_del(a, "is_default_billing");
    return a;
}

/* Clears the user's other defaults that this write takes over. */
static bool
clear_defaults(api_ctx_t *ctx, db_conn_t *c, const addr_in_t *in, net_reply_t **reply)
{
    if (in->def_ship != 1 && in->def_bill != 1)
        return true;
    const char *p[5] = {in->sid, in->uid, in->def_ship == 1 ? "t" : "f",
                        in->def_bill == 1 ? "t" : "f", in->id ? in->id : "0"};
    return pr_exec(
               ctx, c, "pr_addr_clear",
               "UPDATE addresses SET is_default_shipping = is_default_shipping AND NOT $3::bool,"
               " is_default_billing = is_default_billing AND NOT $4::bool, updated_at = now()"
               " WHERE store_id = $1::bigint AND user_id = $2::bigint AND id <> $5::bigint"
               " AND (($3::bool AND is_default_shipping) OR ($4::bool AND is_default_billing))",
               5, p, reply) != NULL;
}

static shopd_rc_t
create_body(api_ctx_t *ctx, db_conn_t *c, void *arg, net_reply_t **reply)
{
    addr_in_t *in = arg;
    const char *p2[2] = {in->sid, in->uid};
    /* The user's row lock orders concurrent creates of one user (other
     * processes too), so the count below cannot be passed twice. */
    PGresult *r = pr_exec(ctx, c, "pr_addr_lock_user",
                          "SELECT 1 FROM users WHERE tenant_id = $1::bigint AND id = $2::bigint"
                          " FOR NO KEY UPDATE",
                          2, p2, reply);
    if (r == NULL)
        return SHOPD_ERR;
    if (PQntuples(r) == 0) {
        *reply = api_fail(SHOPD_NOTFOUND, "user_not_found", "no such user");
        return SHOPD_NOTFOUND;
    }
    r = pr_exec(
        ctx, c, "pr_addr_count",
        "SELECT count(*) FROM addresses WHERE store_id = $1::bigint AND user_id = $2::bigint", 2,
        p2, reply);
    if (r == NULL)
        return SHOPD_ERR;
    if (atoll(PQgetvalue(r, 0, 0)) >= PRICING_MAX_ADDRESSES) {
        *reply = api_fail(SHOPD_INVALID, "address_limit_reached",
                          "an account keeps at most 50 addresses; delete one first");
        return SHOPD_INVALID;
    }
    if (!clear_defaults(ctx, c, in, reply))
        return SHOPD_ERR;
    json_t *a = in->addr;
    const char *p[13] = {in->sid,
                         in->uid,
                         str_of(a, "name"),
                         str_of(a, "company"),
                         str_of(a, "line1"),
                         str_of(a, "line2"),
                         str_of(a, "city"),
                         str_of(a, "region"),
                         str_of(a, "postal_code"),
                         str_of(a, "country"),
                         str_of(a, "phone"),
                         in->def_ship == 1 ? "t" : "f",
                         in->def_bill == 1 ? "t" : "f"};
    return pr_exec_json(
        ctx, c, "pr_addr_insert",
        "INSERT INTO addresses AS a (store_id, user_id, name, company, line1, line2, city,"
        " region, postal_code, country, phone, is_default_shipping, is_default_billing)"
        " VALUES ($1::bigint, $2::bigint, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12::bool,"
        " $13::bool) RETURNING " ADDR_JSON("a") "::text",
        13, p, SHOPD_CREATED, reply);
}

net_reply_t *
pricing_h_address_create(api_ctx_t *ctx)
{
    char sid[24], uid[24];
    if (own_user(ctx, uid) == NULL)
        return no_account();
    api_val_t v = {0};
    addr_in_t in = {pr_sid(ctx, sid), uid, NULL, NULL, -1, -1};
    api_val_only(&v, ctx->body, body_keys);
    read_flags(&v, ctx->body, &in);
    in.addr = without_flags(ctx->body);
    pricing_address_check(&v, in.addr, "");
    net_reply_t *reply = v.n ? api_val_reply(&v) : pr_tx(ctx, create_body, &in);
    json_decref(in.addr);
    return reply;
}

static shopd_rc_t
update_body(api_ctx_t *ctx, db_conn_t *c, void *arg, net_reply_t **reply)
{
    addr_in_t *in = arg;
    const char *p3[3] = {in->sid, in->uid, in->id};
    PGresult *r = pr_exec(ctx, c, "pr_addr_current",
                          "SELECT json_build_object(" ADDR_FIELDS(
                              "a") ")::text FROM addresses a"
                                   " WHERE a.store_id = $1::bigint AND a.user_id = $2::bigint"
                                   " AND a.id = $3::bigint FOR UPDATE",
                          3, p3, reply);
    if (r == NULL)
        return SHOPD_ERR;
    json_t *cur = pr_json_col(r, 0, 0);
    if (cur == NULL) {
        *reply = addr_not_found();
        return SHOPD_NOTFOUND;
    }
    json_t *patch = without_flags(ctx->body);
    json_t *a = pr_merge(cur, patch);
    json_decref(cur);
    json_decref(patch);
    api_val_t v = {0};
    shopd_rc_t rc = SHOPD_ERR;
    if (!pricing_address_check(&v, a, "")) {
        *reply = api_val_reply(&v);
        rc = SHOPD_INVALID;
        goto out;
    }
    if (!clear_defaults(ctx, c, in, reply))
        goto out;
    const char *p[14] = {in->sid,
                         in->uid,
                         in->id,
                         str_of(a, "name"),
                         str_of(a, "company"),
                         str_of(a, "line1"),
                         str_of(a, "line2"),
                         str_of(a, "city"),
                         str_of(a, "region"),
                         str_of(a, "postal_code"),
                         str_of(a, "country"),
                         str_of(a, "phone"),
                         in->def_ship < 0 ? NULL
                         : in->def_ship   ? "t"
                                          : "f",
                         in->def_bill < 0 ? NULL
                         : in->def_bill   ? "t"
                                          : "f"};
    rc = pr_exec_json(
        ctx, c, "pr_addr_update",
        "UPDATE addresses AS a SET name = $4, company = $5, line1 = $6, line2 = $7,"
        " city = $8, region = $9, postal_code = $10, country = $11, phone = $12,"
        " is_default_shipping = coalesce($13::bool, is_default_shipping),"
        " is_default_billing = coalesce($14::bool, is_default_billing), updated_at = now()"
        " WHERE a.store_id = $1::bigint AND a.user_id = $2::bigint AND a.id = $3::bigint"
        " RETURNING " ADDR_JSON("a") "::text",
        14, p, SHOPD_OK, reply);
out:
    json_decref(a);
    return rc;
}

net_reply_t *
pricing_h_address_update(api_ctx_t *ctx)
{
    char sid[24], uid[24], id[24];
    if (own_user(ctx, uid) == NULL)
        return no_account();
    if (!pr_id_param(ctx, "id", id))
        return addr_not_found();
    api_val_t v = {0};
    addr_in_t in = {pr_sid(ctx, sid), uid, id, NULL, -1, -1};
    api_val_only(&v, ctx->body, body_keys);
    read_flags(&v, ctx->body, &in);
    if (v.n)
        return api_val_reply(&v);
    return pr_tx(ctx, update_body, &in);
}

net_reply_t *
pricing_h_address_delete(api_ctx_t *ctx)
{
    char sid[24], uid[24], id[24];
    if (own_user(ctx, uid) == NULL)
        return no_account();
    if (!pr_id_param(ctx, "id", id))
        return addr_not_found();
    const char *p[3] = {pr_sid(ctx, sid), uid, id};
    return pr_delete(ctx, "pr_addr_delete",
                     "DELETE FROM addresses WHERE store_id = $1::bigint AND user_id = $2::bigint"
                     " AND id = $3::bigint RETURNING id",
                     3, p, &addr_nf);
}
