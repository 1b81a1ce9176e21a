/*
 * auth.c: the account endpoints: register, login (store and platform),
 * refresh with rotation and reuse detection, logout, /me, forgot and reset
 * password (its e-mail is an outbox row of the reset's own statement; the
 * jobs module delivers it).
 *
 * Every answer about credentials is the same whether or not the e-mail
 * exists (login: 401 invalid_credentials after a full argon2 verification
 * either way; forgot-password: always 202). Every query names the tenant:
 * the resolved store, or 0 / "store_id IS NULL" for the platform (users,
 * refresh tokens and password resets are keyed by store, sql/0005). The
 * handlers that run argon2 are of the blocking run class (routes.c): they run
 * on the blocking pool, so the tens of milliseconds per hash hold neither the
 * store's actor nor a worker.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "auth_int.h"
#include "shopd/cart.h"
#include "shopd/log.h"

/* ------------------------------------------------------------ shared helpers */

net_reply_t *
auth_rate_check(api_ctx_t *ctx, const char *what, const char *account, int buckets)
{
    const cfg_t *cfg = ctx->app->cfg;
    char key[160];
    int wait = 0;
    if ((buckets & AUTH_RL_IP) && ctx->env->ip.n > 0) {
        snprintf(key, sizeof(key), "rl:auth:%s:ip:%.*s", what, (int)ctx->env->ip.n, ctx->env->ip.p);
        wait = auth_rate_take(ctx->worker->kv, key, cfg->auth_rate_ip, 60);
    }
    if (wait == 0 && account && (buckets & AUTH_RL_ACCOUNT)) {
        char h[65];
        auth_sha256_hex(account, strlen(account), h);
        snprintf(key, sizeof(key), "rl:auth:%s:acct:%s", what, h);
        wait = auth_rate_take(ctx->worker->kv, key, cfg->auth_rate_account, 3600);
    }
    if (wait == 0)
        return NULL;
    char ra[16];
    snprintf(ra, sizeof(ra), "%d", wait);
    net_reply_t *r = api_fail(SHOPD_RATE_LIMITED, "rate_limited", "too many attempts; retry later");
    net_reply_add_header(r, "Retry-After", ra);
    return r;
}

/* "store:email" lower-cased: the account a rate limit counts. */
static void
account_key(char *out, size_t n, uint64_t store_id, const char *email)
{
    int k = snprintf(out, n, "%llu:", (unsigned long long)store_id);
    for (size_t i = 0; email && email[i] && (size_t)k + 1 < n; i++, k++)
        out[k] = (char)((email[i] >= 'A' && email[i] <= 'Z') ? email[i] + 32 : email[i]);
    out[k < (int)n ? k : (int)n - 1] = '\0';
}

/* A refresh token is "<store_id>.<64 hex secret>" (store 0: the platform).
 * /auth/refresh and /auth/logout are not store-scoped, so the token itself
 * names the tenant its row is keyed by; only the secret is hashed and stored,
 * and a changed prefix finds no row. */
#define REFRESH_MAX (20 + 1 + 64 + 1)

/* Splits a presented refresh token into its store id (decimal, as text) and
 * the hash of its secret. False if it is not of that shape (then it is
 * unknown, like a token no row matches). */
static bool
refresh_parse(const char *tok, char sid[24], char hash[65])
{
    const char *dot = strchr(tok, '.');
    uint64_t id;
    if (dot == NULL || strlen(dot + 1) != 64)
        return false;
    if (!(dot - tok == 1 && tok[0] == '0') && !shopd_id_parse(tok, (size_t)(dot - tok), &id))
        return false;
    snprintf(sid, 24, "%.*s", (int)(dot - tok), tok);
    auth_sha256_hex(dot + 1, 64, hash);
    return true;
}

/* Issues an access token and a new refresh token (in `family`, or a new one)
 * for a user of tenant sid (0: platform) whose JSON is user_json. The refresh
 * token goes in on c. */
net_reply_t *
auth_issue(api_ctx_t *ctx, db_conn_t *c, shopd_rc_t rc, uint64_t uid, uint64_t sid, int role,
           uint32_t ver, const char *family, const char *user_json)
{
    char secret[65], refresh[REFRESH_MAX], hash[65], fam[33], id[24], store[24];
    shopd_random_hex(secret, 32);
    auth_sha256_hex(secret, 64, hash);
    snprintf(refresh, sizeof(refresh), "%llu.%s", (unsigned long long)sid, secret);
    if (family == NULL) {
        shopd_random_hex(fam, 16);
        family = fam;
    }
    snprintf(id, sizeof(id), "%llu", (unsigned long long)uid);
    snprintf(store, sizeof(store), "%llu", (unsigned long long)sid);
    const char *p[4] = {id, family, hash, store};
    PGresult *r =
        db_exec(c, "auth_refresh_insert",
                "INSERT INTO refresh_tokens (store_id, user_id, family, token_hash, expires_at) "
                "VALUES ($4::bigint, $1::bigint, $2, $3, now() + interval '30 days')",
                4, p);
    if (db_result_rc(r) != SHOPD_OK) {
        net_reply_t *e = api_db_error(ctx, r, "refresh insert failed");
        PQclear(r);
        return e;
    }
    PQclear(r);
    char jwt[AUTH_JWT_MAX];
    if (auth_jwt_sign_ver(uid, sid, role, ver, jwt, sizeof(jwt)) == 0)
        return api_internal(ctx, "jwt too long");
    json_t *user = user_json ? json_loads(user_json, 0, NULL) : NULL;
    json_t *doc = json_pack("{s:s, s:s, s:i, s:s, s:o}", "access_token", jwt, "token_type",
                            "Bearer", "expires_in", AUTH_ACCESS_TTL_S, "refresh_token", refresh,
                            "user", user ? user : json_null());
    return api_json(rc, doc);
}

/* A hash to verify against when the e-mail is unknown, so the answer takes as
 * long as for a wrong password and says nothing about who has an account. */
static char dummy_hash[AUTH_HASH_MAX];
static pthread_once_t dummy_once = PTHREAD_ONCE_INIT;

static void
make_dummy(void)
{
    char pw[33];
    shopd_random_hex(pw, 16);
    if (auth_password_hash(pw, dummy_hash, sizeof(dummy_hash)) != 0)
        dummy_hash[0] = '\0';
}

static const char *const login_fields[] = {"email", "password", NULL};

/* Login shared by the store and platform endpoints; store_id 0 = platform. *user_id is
 * set to the signed-in user on success. */
static net_reply_t *
login(api_ctx_t *ctx, uint64_t store_id, uint64_t *user_id)
{
    api_val_t v = {0};
    net_reply_t *reply = NULL;
    db_conn_t *c = NULL;
    PGresult *r = NULL;
    char acct[400], sid[24];

    api_val_only(&v, ctx->body, login_fields);
    const char *email = api_val_string(&v, ctx->body, "email", true, 1, 254);
    const char *pw = api_val_string(&v, ctx->body, "password", true, 1, 4 * AUTH_PASSWORD_MAX);
    account_key(acct, sizeof(acct), store_id, email);
    if ((reply = auth_rate_check(ctx, store_id ? "login" : "plogin", email ? acct : NULL,
                                 AUTH_RL_IP | AUTH_RL_ACCOUNT)))
        goto out;
    if (v.n) {
        reply = api_val_reply(&v);
        goto out;
    }
    c = db_acquire(ctx->app->db, 2000);
    if (c == NULL) {
        reply = api_unavailable("the database");
        goto out;
    }
    snprintf(sid, sizeof(sid), "%llu", (unsigned long long)store_id);
    const char *p[2] = {sid, email};
    r = store_id ? db_exec(c, "auth_login_store",
                           "SELECT id, password_hash, role, status, token_version FROM users "
                           "WHERE store_id = $1::bigint AND lower(email) = lower($2)",
                           2, p)
                 : db_exec(c, "auth_login_platform",
                           "SELECT id, password_hash, role, status, token_version FROM users "
                           "WHERE store_id IS NULL AND $1::bigint = 0 AND lower(email) = lower($2)",
                           2, p);
    if (db_result_rc(r) != SHOPD_OK) {
        reply = api_db_error(ctx, r, "login lookup failed");
        goto out;
    }
    bool found = PQntuples(r) == 1;
    if (!found)
        pthread_once(&dummy_once, make_dummy);
    bool ok = auth_password_verify(found ? PQgetvalue(r, 0, 1) : dummy_hash, pw) && found;
    if (!ok) {
        reply = api_fail(SHOPD_UNAUTHENTICATED, "invalid_credentials",
                         "the e-mail or password is wrong");
        goto out;
    }
    if (strcmp(PQgetvalue(r, 0, 3), "active") != 0) {
        reply = api_fail(SHOPD_FORBIDDEN, "account_disabled", "this account is disabled");
        goto out;
    }
    uint64_t uid = strtoull(PQgetvalue(r, 0, 0), NULL, 10);
    int role = auth_role_parse(PQgetvalue(r, 0, 2));
    uint32_t ver = (uint32_t)strtoul(PQgetvalue(r, 0, 4), NULL, 10);
    PQclear(r);
    char uidb[24];
    snprintf(uidb, sizeof(uidb), "%llu", (unsigned long long)uid);
    const char *pu[2] = {uidb, sid};
    r = db_exec(
        c, "auth_login_touch",
        "UPDATE users SET last_login_at = now() WHERE tenant_id = $2::bigint AND id = $1::bigint "
        "RETURNING " AUTH_USER_JSON,
        2, pu);
    if (db_result_rc(r) != SHOPD_OK || PQntuples(r) != 1) {
        reply = api_db_error(ctx, r, "login update failed");
        goto out;
    }
    reply = auth_issue(ctx, c, SHOPD_OK, uid, store_id, role, ver, NULL, PQgetvalue(r, 0, 0));
    *user_id = uid;
out:
    PQclear(r);
    db_release(c);
    return reply;
}

net_reply_t *
auth_h_login(api_ctx_t *ctx)
{
    uint64_t uid = 0;
    net_reply_t *r = login(ctx, ctx->store_id, &uid);
    /* A guest cart sent along (X-Cart-Id) merges into the user's, on the store's
     * actor, before the answer goes out: the client's next cart read sees it. */
    if (uid && api_reply_ok(r) && ctx->env->cart.n)
        return cart_login_merge(ctx, uid, r);
    return r;
}

net_reply_t *
auth_h_platform_login(api_ctx_t *ctx)
{
    uint64_t uid;
    return login(ctx, 0, &uid);
}

net_reply_t *
auth_h_register(api_ctx_t *ctx)
{
    static const char *const allowed[] = {"email", "password", "name", NULL};
    api_val_t v = {0};
    net_reply_t *reply = NULL;
    db_conn_t *c = NULL;
    PGresult *r = NULL;
    char acct[400], hash[AUTH_HASH_MAX], sid[24];

    if ((reply = auth_rate_check(ctx, "register", NULL, AUTH_RL_IP)))
        return reply;
    api_val_only(&v, ctx->body, allowed);
    const char *email = api_val_string(&v, ctx->body, "email", true, 3, 254);
    if (email && !auth_email_valid(email)) {
        api_val_add(&v, "email", "must be an e-mail address like name@example.com");
        email = NULL;
    }
    const char *pw = api_val_string(&v, ctx->body, "password", true, 0, 100000);
    const char *issue = pw ? auth_password_issue(pw, email) : NULL;
    if (issue)
        api_val_add(&v, "password", issue);
    const char *name = api_val_string(&v, ctx->body, "name", false, 0, 200);
    if (v.n)
        return api_val_reply(&v);
    account_key(acct, sizeof(acct), ctx->store_id, email);
    if ((reply = auth_rate_check(ctx, "register", acct, AUTH_RL_ACCOUNT)))
        return reply;

    if (auth_password_hash(pw, hash, sizeof(hash)) != 0)
        return api_internal(ctx, "password hash failed");
    c = db_acquire(ctx->app->db, 2000);
    if (c == NULL)
        return api_unavailable("the database");
    snprintf(sid, sizeof(sid), "%llu", (unsigned long long)ctx->store_id);
    const char *p[4] = {sid, email, hash, name ? name : ""};
    r = db_exec(c, "auth_register",
                "INSERT INTO users (store_id, email, password_hash, role, name) "
                "VALUES ($1::bigint, $2, $3, 'CUSTOMER', $4) RETURNING id, " AUTH_USER_JSON
                ", token_version",
                4, p);
    if (db_result_rc(r) != SHOPD_OK) {
        reply = api_db_error(ctx, r, "register failed");
        goto out;
    }
    reply = auth_issue(ctx, c, SHOPD_CREATED, strtoull(PQgetvalue(r, 0, 0), NULL, 10),
                       ctx->store_id, MSG_ROLE_CUSTOMER,
                       (uint32_t)strtoul(PQgetvalue(r, 0, 2), NULL, 10), NULL, PQgetvalue(r, 0, 1));
out:
    PQclear(r);
    db_release(c);
    return reply;
}

/* ------------------------------------------------------------ refresh / logout */

typedef struct refresh_tx_s {
    api_ctx_t *ctx;
    const char *hash;
    const char *store;  /* the tenant the token names, as text */
    net_reply_t *reply; /* set when the outcome is an error */
    uint64_t uid, sid;
    int role;
    char family[64];
    char *user_json;
} refresh_tx_t;

static net_reply_t *
invalid_refresh(void)
{
    return api_fail(SHOPD_UNAUTHENTICATED, "invalid_token",
                    "the refresh token is invalid, expired or revoked");
}

static shopd_rc_t
refresh_tx(db_conn_t *c, void *arg)
{
    refresh_tx_t *t = arg;
    /* db_tx may run this again after a deadlock: start from nothing. */
    if (t->reply)
        net_reply_free(t->reply);
    shopd_free(t->user_json);
    t->reply = NULL;
    t->user_json = NULL;
    const char *p[2] = {t->hash, t->store};
    PGresult *r =
        db_exec(c, "auth_refresh_lock",
                "SELECT rt.id, rt.user_id, rt.family, rt.used_at IS NOT NULL, "
                "rt.revoked_at IS NOT NULL OR rt.expires_at < now(), u.status, u.role, "
                "u.tenant_id, " AUTH_USER_JSON_U ", u.token_version FROM refresh_tokens rt "
                "JOIN users u ON u.tenant_id = rt.store_id AND u.id = rt.user_id "
                "WHERE rt.store_id = $2::bigint AND rt.token_hash = $1 FOR UPDATE OF rt",
                2, p);
    shopd_rc_t rc = db_result_rc(r);
    if (rc != SHOPD_OK)
        goto out;
    if (PQntuples(r) != 1) {
        t->reply = invalid_refresh();
        goto out;
    }
    snprintf(t->family, sizeof(t->family), "%s", PQgetvalue(r, 0, 2));
    if (PQgetvalue(r, 0, 3)[0] == 't') {
        /* A rotated token came back: someone holds a copy. End the whole family. */
        const char *pf[2] = {t->family, t->store};
        PGresult *x = db_exec(c, "auth_refresh_revoke_family",
                              "UPDATE refresh_tokens SET revoked_at = now() "
                              "WHERE store_id = $2::bigint AND family = $1 AND revoked_at IS NULL",
                              2, pf);
        rc = db_result_rc(x);
        PQclear(x);
        log_warn("refresh token reuse: family revoked user=%s rid=%.*s", PQgetvalue(r, 0, 1),
                 (int)t->ctx->env->request_id.n, t->ctx->env->request_id.p);
        t->reply = api_fail(
            SHOPD_UNAUTHENTICATED, "invalid_token",
            "the refresh token was already used; every session of this login is now revoked");
        goto out;
    }
    if (PQgetvalue(r, 0, 4)[0] == 't' || strcmp(PQgetvalue(r, 0, 5), "active") != 0) {
        t->reply = invalid_refresh();
        goto out;
    }
    t->uid = strtoull(PQgetvalue(r, 0, 1), NULL, 10);
    t->role = auth_role_parse(PQgetvalue(r, 0, 6));
    t->sid = strtoull(PQgetvalue(r, 0, 7), NULL, 10);
    char acct[32];
    snprintf(acct, sizeof(acct), "user:%llu", (unsigned long long)t->uid);
    if ((t->reply = auth_rate_check(t->ctx, "refresh", acct, AUTH_RL_ACCOUNT))) {
        rc = SHOPD_BUSY; /* roll back: nothing was used */
        goto out;
    }
    const char *pi[2] = {PQgetvalue(r, 0, 0), t->store};
    PGresult *x = db_exec(c, "auth_refresh_use",
                          "UPDATE refresh_tokens SET used_at = now() "
                          "WHERE store_id = $2::bigint AND id = $1::bigint",
                          2, pi);
    rc = db_result_rc(x);
    PQclear(x);
    if (rc != SHOPD_OK)
        goto out;
    t->user_json = shopd_strdup(PQgetvalue(r, 0, 8));
    /* The new token of the family is inserted by auth_issue, inside this transaction. */
    t->reply =
        auth_issue(t->ctx, c, SHOPD_OK, t->uid, t->sid, t->role,
                   (uint32_t)strtoul(PQgetvalue(r, 0, 9), NULL, 10), t->family, t->user_json);
    if (!api_reply_ok(t->reply))
        rc = SHOPD_ERR;
out:
    PQclear(r);
    return rc;
}

static const char *
refresh_param(api_ctx_t *ctx, api_val_t *v)
{
    static const char *const allowed[] = {"refresh_token", NULL};
    api_val_only(v, ctx->body, allowed);
    return api_val_string(v, ctx->body, "refresh_token", true, 1, REFRESH_MAX - 1);
}

net_reply_t *
auth_h_refresh(api_ctx_t *ctx)
{
    api_val_t v = {0};
    net_reply_t *reply;
    if ((reply = auth_rate_check(ctx, "refresh", NULL, AUTH_RL_IP)))
        return reply;
    const char *tok = refresh_param(ctx, &v);
    if (v.n)
        return api_val_reply(&v);
    char hash[65], sid[24];
    if (!refresh_parse(tok, sid, hash))
        return invalid_refresh();
    db_conn_t *c = db_acquire(ctx->app->db, 2000);
    if (c == NULL)
        return api_unavailable("the database");
    refresh_tx_t t = {.ctx = ctx, .hash = hash, .store = sid};
    shopd_rc_t rc = db_tx(c, refresh_tx, &t);
    db_release(c);
    shopd_free(t.user_json);
    if (t.reply) {
        /* Committed with an error reply (reuse revocation) or rolled back with one. */
        if (rc != SHOPD_OK && api_reply_ok(t.reply)) {
            net_reply_free(t.reply);
            return api_unavailable("the database");
        }
        return t.reply;
    }
    return rc == SHOPD_UNAVAILABLE ? api_unavailable("the database")
                                   : api_internal(ctx, "refresh failed");
}

net_reply_t *
auth_h_logout(api_ctx_t *ctx)
{
    api_val_t v = {0};
    const char *tok = refresh_param(ctx, &v);
    if (v.n)
        return api_val_reply(&v);
    char hash[65], sid[24];
    /* Unknown tokens get 204 too: logging out twice is not an error. */
    if (!refresh_parse(tok, sid, hash))
        return api_empty(SHOPD_NO_CONTENT);
    db_conn_t *c = db_acquire(ctx->app->db, 2000);
    if (c == NULL)
        return api_unavailable("the database");
    const char *p[2] = {hash, sid};
    PGresult *r =
        db_exec(c, "auth_logout",
                "UPDATE refresh_tokens SET revoked_at = now() WHERE store_id = $2::bigint "
                "AND revoked_at IS NULL AND family = (SELECT family FROM refresh_tokens "
                "WHERE store_id = $2::bigint AND token_hash = $1)",
                2, p);
    net_reply_t *reply = db_result_rc(r) == SHOPD_OK ? api_empty(SHOPD_NO_CONTENT)
                                                     : api_db_error(ctx, r, "logout failed");
    PQclear(r);
    db_release(c);
    return reply;
}

/* ------------------------------------------------------------ /me */

/* The tenant of the caller's own account, as text: the resolved store for its
 * customers and admins (the middleware has checked the token belongs to it),
 * 0 for a platform super admin looking at a store. */
static void
me_tenant(api_ctx_t *ctx, char out[24])
{
    uint64_t sid = ctx->caller->role == MSG_ROLE_SUPER_ADMIN ? 0 : ctx->store_id;
    snprintf(out, 24, "%llu", (unsigned long long)sid);
}

net_reply_t *
auth_h_me(api_ctx_t *ctx)
{
    char id[24], sid[24];
    snprintf(id, sizeof(id), "%llu", (unsigned long long)ctx->caller->user_id);
    me_tenant(ctx, sid);
    db_conn_t *c = db_acquire(ctx->app->db, 2000);
    if (c == NULL)
        return api_unavailable("the database");
    const char *p[2] = {id, sid};
    PGresult *r = db_exec(c, "auth_me",
                          "SELECT " AUTH_USER_JSON
                          " FROM users WHERE tenant_id = $2::bigint AND id = $1::bigint",
                          2, p);
    net_reply_t *reply;
    if (db_result_rc(r) != SHOPD_OK)
        reply = api_db_error(ctx, r, "me failed");
    else if (PQntuples(r) == 0)
        reply = api_fail(SHOPD_NOTFOUND, "user_not_found", "no such user");
    else
        reply = api_raw_json(SHOPD_OK, PQgetvalue(r, 0, 0), (size_t)PQgetlength(r, 0, 0));
    PQclear(r);
    db_release(c);
    return reply;
}

net_reply_t *
auth_h_me_update(api_ctx_t *ctx)
{
    static const char *const allowed[] = {"name", "password", "current_password", NULL};
    api_val_t v = {0};
    net_reply_t *reply = NULL;
    db_conn_t *c = NULL;
    PGresult *r = NULL;
    char id[24], sid[24], hash[AUTH_HASH_MAX];

    api_val_only(&v, ctx->body, allowed);
    const char *name = api_val_string(&v, ctx->body, "name", false, 0, 200);
    const char *pw = api_val_string(&v, ctx->body, "password", false, 0, 100000);
    const char *cur =
        api_val_string(&v, ctx->body, "current_password", pw != NULL, 1, 4 * AUTH_PASSWORD_MAX);
    const char *issue = pw ? auth_password_issue(pw, NULL) : NULL;
    if (issue)
        api_val_add(&v, "password", issue);
    if (v.n)
        return api_val_reply(&v);

    snprintf(id, sizeof(id), "%llu", (unsigned long long)ctx->caller->user_id);
    me_tenant(ctx, sid);
    c = db_acquire(ctx->app->db, 2000);
    if (c == NULL)
        return api_unavailable("the database");
    const char *p1[2] = {id, sid};
    if (pw) {
        r = db_exec(
            c, "auth_me_hash",
            "SELECT password_hash FROM users WHERE tenant_id = $2::bigint AND id = $1::bigint", 2,
            p1);
        if (db_result_rc(r) != SHOPD_OK || PQntuples(r) != 1) {
            reply = api_db_error(ctx, r, "me lookup failed");
            goto out;
        }
        if (!auth_password_verify(PQgetvalue(r, 0, 0), cur)) {
            reply = api_fail_field(SHOPD_FORBIDDEN, "wrong_password",
                                   "the current password is wrong", "current_password", "is wrong");
            goto out;
        }
        PQclear(r);
        r = NULL;
        if (auth_password_hash(pw, hash, sizeof(hash)) != 0) {
            reply = api_internal(ctx, "password hash failed");
            goto out;
        }
    }
    const char *p[4] = {id, name, pw ? hash : NULL, sid};
    /* A new password ends every refresh session: whoever knew the old one is out. */
    r = db_exec(
        c, "auth_me_update",
        "WITH x AS (UPDATE refresh_tokens SET revoked_at = now() "
        "WHERE $3::text IS NOT NULL AND store_id = $4::bigint AND user_id = $1::bigint "
        "AND revoked_at IS NULL) "
        "UPDATE users SET name = coalesce($2, name), password_hash = coalesce($3, password_hash), "
        "updated_at = now() WHERE tenant_id = $4::bigint AND id = $1::bigint "
        "RETURNING " AUTH_USER_JSON,
        4, p);
    if (db_result_rc(r) != SHOPD_OK || PQntuples(r) != 1) {
        reply = api_db_error(ctx, r, "me update failed");
    } else {
        /* A new password retires every access token of the user (token_version),
         * this one included: seen here at once, elsewhere within AUTH_USER_CACHE_S. */
        auth_user_forget(ctx->caller->user_id);
        reply = api_raw_json(SHOPD_OK, PQgetvalue(r, 0, 0), (size_t)PQgetlength(r, 0, 0));
    }
out:
    PQclear(r);
    db_release(c);
    return reply;
}

/* ------------------------------------------------------------ password reset */

net_reply_t *
auth_h_forgot(api_ctx_t *ctx)
{
    static const char *const allowed[] = {"email", NULL};
    api_val_t v = {0};
    net_reply_t *reply = NULL;
    char acct[400], sid[24];

    api_val_only(&v, ctx->body, allowed);
    const char *email = api_val_string(&v, ctx->body, "email", true, 1, 254);
    account_key(acct, sizeof(acct), ctx->store_id, email);
    if ((reply = auth_rate_check(ctx, "forgot", email ? acct : NULL, AUTH_RL_IP | AUTH_RL_ACCOUNT)))
        return reply;
    if (v.n)
        return api_val_reply(&v);

    db_conn_t *c = db_acquire(ctx->app->db, 2000);
    if (c == NULL)
        return api_unavailable("the database");
    char token[65], hash[65], host[400], url[600];
    shopd_random_hex(token, 32);
    auth_sha256_hex(token, 64, hash);
    snprintf(sid, sizeof(sid), "%llu", (unsigned long long)ctx->store_id);
    const store_snap_t *s = ctx->store;
    if (s->domain[0])
        snprintf(host, sizeof(host), "%s", s->domain);
    else
        snprintf(host, sizeof(host), "%s.%s", s->slug, ctx->app->cfg->base_domain);
    snprintf(url, sizeof(url), "https://%s/reset-password?token=%s", host, token);
    const char *p[5] = {sid, email, hash, token, url};
    /* The reset and its e-mail in one statement: the outbox row commits with the
     * token or not at all, and the jobs module sends it (the token leaves the
     * row once the message is out). Nobody to write to: nothing is inserted,
     * and the answer is the same. */
    PGresult *r = db_exec(
        c, "auth_forgot",
        "WITH u AS (SELECT id, email FROM users WHERE store_id = $1::bigint "
        "AND lower(email) = lower($2) AND status = 'active'), "
        "i AS (INSERT INTO password_resets (store_id, user_id, token_hash, expires_at) "
        "SELECT $1::bigint, id, $3, now() + interval '1 hour' FROM u RETURNING user_id), "
        "o AS (INSERT INTO outbox (store_id, kind, payload) SELECT $1::bigint, "
        "'password.reset_requested', jsonb_build_object('email', u.email, 'user_id', u.id, "
        "'template', 'password_reset', 'token', $4::text, 'url', $5::text) FROM i JOIN u ON "
        "u.id = i.user_id) "
        "SELECT i.user_id FROM i",
        5, p);
    if (db_result_rc(r) != SHOPD_OK) {
        reply = api_db_error(ctx, r, "forgot failed");
    } else {
        reply = api_json(
            SHOPD_ACCEPTED,
            json_pack("{s:s}", "message",
                      "if an account with this e-mail exists, a reset link is on its way"));
    }
    PQclear(r);
    db_release(c);
    return reply;
}

net_reply_t *
auth_h_reset(api_ctx_t *ctx)
{
    static const char *const allowed[] = {"token", "password", NULL};
    api_val_t v = {0};
    char hash[AUTH_HASH_MAX], th[65], sid[24];

    api_val_only(&v, ctx->body, allowed);
    const char *tok = api_val_string(&v, ctx->body, "token", true, 1, 256);
    const char *pw = api_val_string(&v, ctx->body, "password", true, 0, 100000);
    const char *issue = pw ? auth_password_issue(pw, NULL) : NULL;
    if (issue)
        api_val_add(&v, "password", issue);
    if (v.n)
        return api_val_reply(&v);
    if (auth_password_hash(pw, hash, sizeof(hash)) != 0)
        return api_internal(ctx, "password hash failed");
    auth_sha256_hex(tok, strlen(tok), th);
    snprintf(sid, sizeof(sid), "%llu", (unsigned long long)ctx->store_id);
    db_conn_t *c = db_acquire(ctx->app->db, 2000);
    if (c == NULL)
        return api_unavailable("the database");
    const char *p[3] = {th, sid, hash};
    /* One statement: use the token, set the password, end every refresh session. */
    PGresult *r = db_exec(
        c, "auth_reset",
        "WITH t AS (UPDATE password_resets SET used_at = now() WHERE store_id = $2::bigint "
        "AND token_hash = $1 AND used_at IS NULL AND expires_at > now() RETURNING user_id), "
        "u AS (UPDATE users SET password_hash = $3, updated_at = now() "
        "WHERE store_id = $2::bigint AND id = (SELECT user_id FROM t) RETURNING id), "
        "x AS (UPDATE refresh_tokens SET revoked_at = now() "
        "WHERE store_id = $2::bigint AND user_id = (SELECT user_id FROM t) AND revoked_at IS NULL) "
        "SELECT id FROM u",
        3, p);
    net_reply_t *reply;
    if (db_result_rc(r) != SHOPD_OK)
        reply = api_db_error(ctx, r, "reset failed");
    else if (PQntuples(r) == 0)
        reply =
            api_fail_field(SHOPD_BAD_REQUEST, "invalid_token",
                           "the reset token is invalid, used or expired", "token", "is invalid");
    else {
        auth_user_forget(strtoull(PQgetvalue(r, 0, 0), NULL, 10));
        reply = api_empty(SHOPD_NO_CONTENT);
    }
    PQclear(r);
    db_release(c);
    return reply;
}
