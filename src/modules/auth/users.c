/*
 * users.c: store staff management for STORE_ADMINs (list, get, create,
 * update, disable the users of their own store) and the optional first
 * STORE_ADMIN of POST /api/v1/stores. Every query filters by the resolved
 * store id; a user of another store is simply not found.
 *
 * DELETE disables rather than removes: orders and history will point at
 * users, and a disabled account can be re-enabled with PATCH.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth_int.h"
#include "shopd/log.h"

/* A user id as the database can hold it (1..INT64_MAX); anything else is 404
 * (path) or 400 (cursor) without a query. */
static bool
digits(const char *p, size_t n)
{
    uint64_t id;
    return shopd_id_parse(p, n, &id);
}

/* The :id parameter as a C string, or NULL (then the answer is 404). */
static const char *
user_id_param(api_ctx_t *ctx, char *buf, size_t n)
{
    size_t len;
    const char *p = msg_param(ctx->env, "id", &len);
    if (p == NULL || !digits(p, len) || len >= n)
        return NULL;
    memcpy(buf, p, len);
    buf[len] = '\0';
    return buf;
}

static net_reply_t *
not_found(void)
{
    return api_fail(SHOPD_NOTFOUND, "user_not_found", "no such user in this store");
}

net_reply_t *
auth_h_users_list(api_ctx_t *ctx)
{
    api_val_t v = {0};
    char lbuf[32], cbuf[32], rbuf[32], sbuf[32], sid[24], lim[16];
    long limit = 50;
    const char *cursor = "0", *s;
    long long x;
    if ((s = api_query_param(ctx->env, "limit", lbuf, sizeof(lbuf)))) {
        if (shopd_int_parse(s, 1, 200, &x))
            limit = (long)x;
        else
            api_val_add(&v, "limit", "must be an integer from 1 to 200");
    }
    if ((s = api_query_param(ctx->env, "cursor", cbuf, sizeof(cbuf)))) {
        if (!digits(s, strlen(s)))
            api_val_add(&v, "cursor", "must be a cursor returned by a previous page");
        else
            cursor = s;
    }
    const char *role = api_query_param(ctx->env, "role", rbuf, sizeof(rbuf));
    if (role && strcmp(role, "CUSTOMER") && strcmp(role, "STORE_ADMIN"))
        api_val_add(&v, "role", "must be CUSTOMER or STORE_ADMIN");
    const char *status = api_query_param(ctx->env, "status", sbuf, sizeof(sbuf));
    if (status && strcmp(status, "active") && strcmp(status, "disabled"))
        api_val_add(&v, "status", "must be active or disabled");
    if (v.n)
        return api_val_reply(&v);

    snprintf(sid, sizeof(sid), "%llu", (unsigned long long)ctx->store_id);
    snprintf(lim, sizeof(lim), "%ld", limit);
    db_conn_t *c = db_acquire(ctx->app->db, 2000);
    if (c == NULL)
        return api_unavailable("the database");
    const char *p[5] = {sid, role, status, cursor, lim};
    PGresult *r = arena_pgresult(
        ctx->arena,
        db_exec(c, "auth_users_list",
                "WITH page AS (SELECT * FROM users WHERE store_id = $1::bigint "
                "AND ($2::text IS NULL OR role = $2) AND ($3::text IS NULL OR status = $3) "
                "AND id > $4::bigint ORDER BY id LIMIT $5::int) "
                "SELECT coalesce(json_agg(" AUTH_USER_JSON "::json ORDER BY id), '[]')::text, "
                "count(*), max(id) FROM page",
                5, p));
    db_release(c); /* r is the arena's now, and outlives the connection */
    if (db_result_rc(r) != SHOPD_OK)
        return api_db_error(ctx, r, "user list failed");
    json_t *data = json_loads(PQgetvalue(r, 0, 0), 0, NULL);
    bool full = atol(PQgetvalue(r, 0, 1)) == limit;
    return api_json(SHOPD_OK, json_pack("{s:o, s:i, s:o}", "data", data ? data : json_array(),
                                        "limit", (int)limit, "next_cursor",
                                        full ? json_string(PQgetvalue(r, 0, 2)) : json_null()));
}

net_reply_t *
auth_h_users_get(api_ctx_t *ctx)
{
    char idb[24], sid[24];
    const char *id = user_id_param(ctx, idb, sizeof(idb));
    if (id == NULL)
        return not_found();
    snprintf(sid, sizeof(sid), "%llu", (unsigned long long)ctx->store_id);
    db_conn_t *c = db_acquire(ctx->app->db, 2000);
    if (c == NULL)
        return api_unavailable("the database");
    const char *p[2] = {id, sid};
    PGresult *r = arena_pgresult(
        ctx->arena, db_exec(c, "auth_users_get",
                            "SELECT " AUTH_USER_JSON
                            " FROM users WHERE id = $1::bigint AND store_id = $2::bigint",
                            2, p));
    db_release(c);
    if (db_result_rc(r) != SHOPD_OK)
        return api_db_error(ctx, r, "user get failed");
    if (PQntuples(r) == 0)
        return not_found();
    return api_raw_json(SHOPD_OK, PQgetvalue(r, 0, 0), (size_t)PQgetlength(r, 0, 0));
}

net_reply_t *
auth_h_users_create(api_ctx_t *ctx)
{
    static const char *const allowed[] = {"email", "password", "name", "role", NULL};
    api_val_t v = {0};
    char hash[AUTH_HASH_MAX], sid[24];

    api_val_only(&v, ctx->body, allowed);
    const char *email = api_val_string(&v, ctx->body, "email", true, 3, 254);
    if (email && !auth_email_valid(email))
        api_val_add(&v, "email", "must be an e-mail address like name@example.com");
    const char *pw = api_val_string(&v, ctx->body, "password", true, 0, 100000);
    const char *issue = pw ? auth_password_issue(pw, email) : NULL;
    if (issue)
        api_val_add(&v, "password", issue);
    const char *name = api_val_string(&v, ctx->body, "name", false, 0, 200);
    const char *role = api_val_string(&v, ctx->body, "role", false, 1, 20);
    if (role && strcmp(role, "CUSTOMER") && strcmp(role, "STORE_ADMIN"))
        api_val_add(&v, "role", "must be STORE_ADMIN or CUSTOMER");
    if (v.n)
        return api_val_reply(&v);
    if (auth_password_hash(pw, hash, sizeof(hash)) != 0)
        return api_internal(ctx, "password hash failed");

    snprintf(sid, sizeof(sid), "%llu", (unsigned long long)ctx->store_id);
    db_conn_t *c = db_acquire(ctx->app->db, 2000);
    if (c == NULL)
        return api_unavailable("the database");
    const char *p[5] = {sid, email, hash, role ? role : "STORE_ADMIN", name ? name : ""};
    PGresult *r = arena_pgresult(
        ctx->arena, db_exec(c, "auth_users_create",
                            "INSERT INTO users (store_id, email, password_hash, role, name) "
                            "VALUES ($1::bigint, $2, $3, $4, $5) RETURNING id, " AUTH_USER_JSON,
                            5, p));
    db_release(c);
    if (db_result_rc(r) != SHOPD_OK)
        return api_db_error(ctx, r, "user create failed");
    net_reply_t *reply =
        api_raw_json(SHOPD_CREATED, PQgetvalue(r, 0, 1), (size_t)PQgetlength(r, 0, 1));
    net_reply_add_header(reply, "Location",
                         arena_sprintf(ctx->arena, "/api/v1/admin/users/%s", PQgetvalue(r, 0, 0)));
    return reply;
}

/* Sets fields of a user of this store; status "disabled" also ends every refresh
 * session and drops the user from the active-user cache. */
static net_reply_t *
update_user(api_ctx_t *ctx, const char *id, const char *name, const char *role, const char *status,
            const char *hash, shopd_rc_t ok_rc)
{
    char sid[24];
    snprintf(sid, sizeof(sid), "%llu", (unsigned long long)ctx->store_id);
    db_conn_t *c = db_acquire(ctx->app->db, 2000);
    if (c == NULL)
        return api_unavailable("the database");
    const char *p[6] = {id, sid, name, role, status, hash};
    PGresult *r = arena_pgresult(
        ctx->arena,
        db_exec(c, "auth_users_update",
                "WITH u AS (UPDATE users SET name = coalesce($3, name), role = coalesce($4, role), "
                "status = coalesce($5, status), password_hash = coalesce($6, password_hash), "
                "updated_at = now() WHERE id = $1::bigint AND store_id = $2::bigint RETURNING *), "
                "x AS (UPDATE refresh_tokens SET revoked_at = now() WHERE store_id = $2::bigint "
                "AND revoked_at IS NULL AND user_id IN (SELECT id FROM u WHERE status = 'disabled' "
                "OR $6::text IS NOT NULL)) "
                "SELECT " AUTH_USER_JSON " FROM u",
                6, p));
    db_release(c);
    if (db_result_rc(r) != SHOPD_OK)
        return api_db_error(ctx, r, "user update failed");
    if (PQntuples(r) == 0)
        return not_found();
    auth_user_forget(strtoull(id, NULL, 10));
    if (ok_rc == SHOPD_NO_CONTENT)
        return api_empty(SHOPD_NO_CONTENT);
    return api_raw_json(SHOPD_OK, PQgetvalue(r, 0, 0), (size_t)PQgetlength(r, 0, 0));
}

static bool
is_self(api_ctx_t *ctx, const char *id)
{
    return strtoull(id, NULL, 10) == ctx->caller->user_id;
}

/* A password change of a staff update: hashed on the blocking pool, then written
 * on the store's actor like every other user update (api_blocking_then). */
typedef struct pw_update_s {
    char id[24];
    char *name, *role, *status, *pw;
    char hash[AUTH_HASH_MAX];
    int hash_rc;
} pw_update_t;

static void
pw_update_free(pw_update_t *u)
{
    shopd_free(u->name);
    shopd_free(u->role);
    shopd_free(u->status);
    if (u->pw) {
        explicit_bzero(u->pw, strlen(u->pw));
        shopd_free(u->pw);
    }
    explicit_bzero(u->hash, sizeof(u->hash));
    shopd_free(u);
}

static void
pw_update_drop(void *arg)
{
    pw_update_free(arg);
}

static char *
dup_or_null(const char *s)
{
    return s ? shopd_strdup(s) : NULL;
}

static void
pw_update_hash(void *arg)
{
    pw_update_t *u = arg;
    u->hash_rc = auth_password_hash(u->pw, u->hash, sizeof(u->hash));
}

static net_reply_t *
pw_update_write(api_ctx_t *ctx, void *arg)
{
    pw_update_t *u = arg;
    net_reply_t *r = u->hash_rc != 0
                         ? api_internal(ctx, "password hash failed")
                         : update_user(ctx, u->id, u->name, u->role, u->status, u->hash, SHOPD_OK);
    pw_update_free(u);
    return r;
}

net_reply_t *
auth_h_users_update(api_ctx_t *ctx)
{
    static const char *const allowed[] = {"name", "role", "status", "password", NULL};
    api_val_t v = {0};
    char idb[24];
    const char *id = user_id_param(ctx, idb, sizeof(idb));
    if (id == NULL)
        return not_found();
    api_val_only(&v, ctx->body, allowed);
    const char *name = api_val_string(&v, ctx->body, "name", false, 0, 200);
    const char *role = api_val_string(&v, ctx->body, "role", false, 1, 20);
    if (role && strcmp(role, "CUSTOMER") && strcmp(role, "STORE_ADMIN"))
        api_val_add(&v, "role", "must be STORE_ADMIN or CUSTOMER");
    const char *status = api_val_string(&v, ctx->body, "status", false, 1, 20);
    if (status && strcmp(status, "active") && strcmp(status, "disabled"))
        api_val_add(&v, "status", "must be active or disabled");
    const char *pw = api_val_string(&v, ctx->body, "password", false, 0, 100000);
    const char *issue = pw ? auth_password_issue(pw, NULL) : NULL;
    if (issue)
        api_val_add(&v, "password", issue);
    if (is_self(ctx, id) &&
        ((status && strcmp(status, "active")) || (role && strcmp(role, "STORE_ADMIN"))))
        api_val_add(&v, status ? "status" : "role",
                    "cannot be changed on your own account (ask another admin)");
    if (v.n)
        return api_val_reply(&v);
    if (pw == NULL)
        return update_user(ctx, id, name, role, status, NULL, SHOPD_OK);
    /* argon2 must not hold the store's actor: hash on the blocking pool, write here after. */
    pw_update_t *u = shopd_calloc(1, sizeof(*u));
    snprintf(u->id, sizeof(u->id), "%s", id);
    u->name = dup_or_null(name);
    u->role = dup_or_null(role);
    u->status = dup_or_null(status);
    u->pw = shopd_strdup(pw);
    net_reply_t *r = api_blocking_then(ctx, pw_update_hash, pw_update_write, pw_update_drop, u);
    if (r != API_LATER)
        pw_update_free(u);
    return r;
}

net_reply_t *
auth_h_users_delete(api_ctx_t *ctx)
{
    char idb[24];
    const char *id = user_id_param(ctx, idb, sizeof(idb));
    if (id == NULL)
        return not_found();
    if (is_self(ctx, id))
        return api_fail(SHOPD_CONFLICT, "cannot_disable_self",
                        "you cannot disable your own account");
    return update_user(ctx, id, NULL, NULL, "disabled", NULL, SHOPD_NO_CONTENT);
}

void
auth_store_admin_take(api_ctx_t *ctx, api_val_t *v, auth_admin_input_t *out)
{
    static const char *const allowed[] = {"email", "password", "name", NULL};
    memset(out, 0, sizeof(*out));
    json_t *a = json_object_get(ctx->body, "admin");
    if (a == NULL)
        return;
    json_incref(a);
    json_object_del(ctx->body, "admin");
    if (!json_is_object(a)) {
        api_val_add(v, "admin", "must be an object {email, password, name}");
        goto out;
    }
    api_val_t sub = {0};
    api_val_only(&sub, a, allowed);
    const char *email = api_val_string(&sub, a, "email", true, 3, 254);
    if (email && !auth_email_valid(email)) {
        api_val_add(&sub, "email", "must be an e-mail address like name@example.com");
        email = NULL;
    }
    const char *pw = api_val_string(&sub, a, "password", true, 0, 100000);
    const char *issue = pw ? auth_password_issue(pw, email) : NULL;
    if (issue)
        api_val_add(&sub, "password", issue);
    const char *name = api_val_string(&sub, a, "name", false, 0, 200);
    for (size_t i = 0; i < sub.n; i++) {
        char f[80];
        snprintf(f, sizeof(f), "admin.%s", sub.fields[i]);
        api_val_add(v, f, sub.issues[i]);
    }
    if (sub.n)
        goto out;
    if (auth_password_hash(pw, out->hash, sizeof(out->hash)) != 0) {
        api_val_add(v, "admin.password", "could not be hashed");
        goto out;
    }
    snprintf(out->email, sizeof(out->email), "%s", email);
    snprintf(out->name, sizeof(out->name), "%s", name ? name : "");
    out->given = true;
out:
    json_decref(a);
}
