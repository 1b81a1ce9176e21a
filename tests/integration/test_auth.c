/*
 * Users and authentication against the real binary: register and login with
 * every validation error, tokens crafted here with OpenSSL HMAC (valid,
 * expired, tampered, alg none, other algorithms, unknown and rotated keys),
 * refresh rotation and reuse detection, logout, /me, forgot and reset
 * password through the outbox folder (single use, expiry), store staff
 * management and disabled users, stores created with their first admin,
 * super admins from the command line, and the rate limits (429 Retry-After).
 */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "harness.h"
#include "shopd/kv.h"

#define KEY_NEW "k2"
#define SECRET_NEW "second-secret-0123456789abcdef"
#define KEY_OLD "k1"
#define SECRET_OLD "first-secret-0123456789abcdef"

static th_server_t *srv;
static char outbox[128];
static long store_a, store_b;

static int
setup(void **state)
{
    snprintf(outbox, sizeof(outbox), "/tmp/shopd-outbox-%d", (int)getpid());
    static char ob[200];
    snprintf(ob, sizeof(ob), "SHOPD_OUTBOX_DIR=%s", outbox);
    const char *env[] = {"SHOPD_JWT_KEYS=" KEY_NEW ":" SECRET_NEW "," KEY_OLD ":" SECRET_OLD, ob,
                         "SHOPD_AUTH_RATE_IP=0", "SHOPD_AUTH_RATE_ACCOUNT=0", NULL};
    srv = th_start(env);
    char s[64];
    snprintf(s, sizeof(s), "%s", th_slug("auth-a"));
    store_a = th_create_store(srv, s, NULL);
    snprintf(s, sizeof(s), "%s", th_slug("auth-b"));
    store_b = th_create_store(srv, s, NULL);
    return 0;
}

static int
teardown(void **state)
{
    char cmd[200];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", outbox);
    if (system(cmd) != 0) {
    }
    if (srv == NULL)
        return -1;
    th_stop(srv); /* frees it: TH_STOP_TEST checked the exit status */
    return 0;
}

/* ---- requests ---- */

static th_resp_t
req(const char *method, const char *path, long store, const char *token, const char *body)
{
    char auth[1200], tenant[64];
    const char *h[3] = {NULL, NULL, NULL};
    int k = 0;
    if (token) {
        th_auth_header(auth, sizeof(auth), token);
        h[k++] = auth;
    }
    if (store) {
        snprintf(tenant, sizeof(tenant), "X-Tenant-Id: %ld", store);
        h[k++] = tenant;
    }
    return th_req(srv, method, path, h, body);
}

static long
status_of(const char *method, const char *path, long store, const char *token, const char *body)
{
    th_resp_t r = req(method, path, store, token, body);
    long s = r.status;
    th_resp_free(&r);
    return s;
}

static bool
has_issue(const th_resp_t *r, const char *field)
{
    json_t *d = json_object_get(json_object_get(r->json, "error"), "details");
    size_t i;
    json_t *x;
    json_array_foreach(
        d, i, x) if (!strcmp(json_string_value(json_object_get(x, "field")), field)) return true;
    return false;
}

static th_resp_t
login(long store, const char *email, const char *pw)
{
    char body[512];
    snprintf(body, sizeof(body), "{\"email\":\"%s\",\"password\":\"%s\"}", email, pw);
    return req("POST", store ? "/api/v1/auth/login" : "/api/v1/platform/auth/login", store, NULL,
               body);
}

static char *
field(const th_resp_t *r, const char *name)
{
    const char *v = json_string_value(json_object_get(r->json, name));
    assert_non_null(v);
    return strdup(v);
}

/* ---- tokens crafted here ---- */

static char *
claims(long uid, long store, const char *role, long long iat, long long exp)
{
    static char p[512];
    if (store)
        snprintf(p, sizeof(p),
                 "{\"sub\":\"%ld\",\"store_id\":%ld,\"role\":\"%s\",\"ver\":1,\"iat\":%lld,"
                 "\"exp\":%lld,\"jti\":\"t\"}",
                 uid, store, role, iat, exp);
    else
        snprintf(
            p, sizeof(p),
            "{\"sub\":\"%ld\",\"role\":\"%s\",\"ver\":1,\"iat\":%lld,\"exp\":%lld,\"jti\":\"t\"}",
            uid, role, iat, exp);
    return p;
}

/* ------------------------------------------------------------ tests */

static void
test_register_and_login(void **state)
{
    char email[128], body[512], upper[128];
    snprintf(email, sizeof(email), "%s", th_email("reg"));
    snprintf(body, sizeof(body),
             "{\"email\":\"%s\",\"password\":\"correct horse 1\",\"name\":\"Ann\"}", email);
    th_resp_t r = req("POST", "/api/v1/auth/register", store_a, NULL, body);
    assert_int_equal(r.status, 201);
    assert_non_null(json_object_get(r.json, "access_token"));
    assert_non_null(json_object_get(r.json, "refresh_token"));
    assert_int_equal(json_integer_value(json_object_get(r.json, "expires_in")), 900);
    json_t *u = json_object_get(r.json, "user");
    assert_string_equal(json_string_value(json_object_get(u, "role")), "CUSTOMER");
    assert_int_equal(json_integer_value(json_object_get(u, "store_id")), store_a);
    assert_null(json_object_get(u, "password_hash"));
    char *tok = field(&r, "access_token");
    th_resp_free(&r);

    /* Duplicate, whatever the case of the e-mail. */
    for (size_t i = 0; i <= strlen(email); i++)
        upper[i] = (char)((email[i] >= 'a' && email[i] <= 'z') ? email[i] - 32 : email[i]);
    snprintf(body, sizeof(body), "{\"email\":\"%s\",\"password\":\"another pass 2\"}", upper);
    r = req("POST", "/api/v1/auth/register", store_a, NULL, body);
    assert_int_equal(r.status, 409);
    assert_string_equal(th_error_code(&r), "email_taken");
    th_resp_free(&r);
    /* The same e-mail in another store is another account. */
    r = req("POST", "/api/v1/auth/register", store_b, NULL, body);
    assert_int_equal(r.status, 201);
    th_resp_free(&r);

    /* Validation: weak, short, overlong passwords, bad e-mail, unknown field. */
    const char *bad[][2] = {
        {"{\"email\":\"x@example.com\",\"password\":\"short\"}", "password"},
        {"{\"email\":\"x@example.com\",\"password\":\"password123\"}", "password"},
        {"{\"email\":\"x@example.com\",\"password\":\"aaaaaaaaaaaa\"}", "password"},
        {"{\"email\":\"not-an-email\",\"password\":\"good password 1\"}", "email"},
        {"{\"password\":\"good password 1\"}", "email"},
        {"{\"email\":\"x@example.com\",\"password\":\"good password 1\",\"role\":\"STORE_ADMIN\"}",
         "role"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        r = req("POST", "/api/v1/auth/register", store_a, NULL, bad[i][0]);
        assert_int_equal(r.status, 422);
        assert_true(has_issue(&r, bad[i][1]));
        th_resp_free(&r);
    }
    char longpw[300];
    memset(longpw, 'x', 200);
    longpw[0] = 'A';
    longpw[200] = '\0';
    snprintf(body, sizeof(body), "{\"email\":\"long@example.com\",\"password\":\"%s\"}", longpw);
    r = req("POST", "/api/v1/auth/register", store_a, NULL, body);
    assert_int_equal(r.status, 422);
    assert_true(has_issue(&r, "password"));
    assert_non_null(strstr(r.body, "at most 128"));
    th_resp_free(&r);

    /* Login: right password, e-mail in another case; wrong password and unknown
     * e-mail get the very same answer. */
    r = login(store_a, upper, "correct horse 1");
    assert_int_equal(r.status, 200);
    assert_non_null(json_object_get(json_object_get(r.json, "user"), "last_login_at"));
    th_resp_free(&r);
    r = login(store_a, email, "wrong password 1");
    assert_int_equal(r.status, 401);
    assert_string_equal(th_error_code(&r), "invalid_credentials");
    char *msg1 = strdup(r.body);
    th_resp_free(&r);
    r = login(store_a, "nobody-here@example.com", "wrong password 1");
    assert_int_equal(r.status, 401);
    assert_string_equal(r.body, msg1);
    free(msg1);
    th_resp_free(&r);
    /* A store-A account does not exist in a third store. */
    char s[64];
    snprintf(s, sizeof(s), "%s", th_slug("auth-c"));
    long store_c = th_create_store(srv, s, NULL);
    r = login(store_c, email, "correct horse 1");
    assert_int_equal(r.status, 401);
    th_resp_free(&r);
    r = req("POST", "/api/v1/auth/login", store_a, NULL, "{\"email\":\"a@b.co\"}");
    assert_int_equal(r.status, 422);
    th_resp_free(&r);

    /* /me */
    r = req("GET", "/api/v1/me", store_a, tok, NULL);
    assert_int_equal(r.status, 200);
    assert_string_equal(json_string_value(json_object_get(r.json, "email")), email);
    assert_string_equal(json_string_value(json_object_get(r.json, "name")), "Ann");
    th_resp_free(&r);
    r = req("GET", "/api/v1/me", store_a, NULL, NULL);
    assert_int_equal(r.status, 401);
    assert_non_null(th_header(&r, "WWW-Authenticate"));
    th_resp_free(&r);
    r = req("GET", "/api/v1/me", store_b, tok, NULL);
    assert_int_equal(r.status, 403);
    assert_string_equal(th_error_code(&r), "forbidden");
    th_resp_free(&r);
    free(tok);
}

static void
test_crafted_tokens(void **state)
{
    th_user_t u = th_user_new(srv, "CUSTOMER", store_a);
    long long now = (long long)time(NULL);
    const char *hs256_new = "{\"alg\":\"HS256\",\"typ\":\"JWT\",\"kid\":\"" KEY_NEW "\"}";
    const char *hs256_old = "{\"alg\":\"HS256\",\"typ\":\"JWT\",\"kid\":\"" KEY_OLD "\"}";
    struct {
        const char *what;
        char *tok;
        long want;
    } cases[] = {
        {"server-issued", strdup(u.access), 200},
        {"crafted with the signing key",
         th_jwt_craft(hs256_new, claims(u.id, store_a, "CUSTOMER", now, now + 600), SECRET_NEW),
         200},
        {"signed with the older (verify-only) key",
         th_jwt_craft(hs256_old, claims(u.id, store_a, "CUSTOMER", now, now + 600), SECRET_OLD),
         200},
        {"expired within the clock skew",
         th_jwt_craft(hs256_new, claims(u.id, store_a, "CUSTOMER", now - 900, now - 10),
                      SECRET_NEW),
         200},
        {"expired",
         th_jwt_craft(hs256_new, claims(u.id, store_a, "CUSTOMER", now - 1000, now - 120),
                      SECRET_NEW),
         401},
        {"issued in the future",
         th_jwt_craft(hs256_new, claims(u.id, store_a, "CUSTOMER", now + 3600, now + 4000),
                      SECRET_NEW),
         401},
        {"alg none",
         th_jwt_craft("{\"alg\":\"none\",\"kid\":\"" KEY_NEW "\"}",
                      claims(u.id, store_a, "CUSTOMER", now, now + 600), NULL),
         401},
        {"alg none with a signature",
         th_jwt_craft("{\"alg\":\"none\",\"kid\":\"" KEY_NEW "\"}",
                      claims(u.id, store_a, "CUSTOMER", now, now + 600), SECRET_NEW),
         401},
        {"alg HS512",
         th_jwt_craft("{\"alg\":\"HS512\",\"kid\":\"" KEY_NEW "\"}",
                      claims(u.id, store_a, "CUSTOMER", now, now + 600), SECRET_NEW),
         401},
        {"alg RS256",
         th_jwt_craft("{\"alg\":\"RS256\",\"kid\":\"" KEY_NEW "\"}",
                      claims(u.id, store_a, "CUSTOMER", now, now + 600), SECRET_NEW),
         401},
        {"wrong secret",
         th_jwt_craft(hs256_new, claims(u.id, store_a, "CUSTOMER", now, now + 600),
                      "some-other-secret-0123456789"),
         401},
        {"unknown kid",
         th_jwt_craft("{\"alg\":\"HS256\",\"kid\":\"k9\"}",
                      claims(u.id, store_a, "CUSTOMER", now, now + 600), SECRET_NEW),
         401},
        {"no kid",
         th_jwt_craft("{\"alg\":\"HS256\"}", claims(u.id, store_a, "CUSTOMER", now, now + 600),
                      SECRET_NEW),
         401},
        {"super admin claim without a store",
         th_jwt_craft(hs256_new, claims(u.id, store_a, "SUPER_ADMIN", now, now + 600), SECRET_NEW),
         401},
        {"garbage", strdup("not.a.jwt"), 401},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        long s = status_of("GET", "/api/v1/me", store_a, cases[i].tok, NULL);
        if (s != cases[i].want)
            fail_msg("token %s: want %ld, got %ld", cases[i].what, cases[i].want, s);
        free(cases[i].tok);
    }

    /* Tampering: swap the payload of a valid token for one claiming STORE_ADMIN. */
    char *dot1 = strchr(u.access, '.'), *dot2 = strchr(dot1 + 1, '.');
    char pl[1024], forged[2048];
    th_b64url((const unsigned char *)claims(u.id, store_a, "STORE_ADMIN", now, now + 600),
              strlen(claims(u.id, store_a, "STORE_ADMIN", now, now + 600)), pl);
    snprintf(forged, sizeof(forged), "%.*s.%s%s", (int)(dot1 - u.access), u.access, pl, dot2);
    th_resp_t r = req("GET", "/api/v1/admin/users", store_a, forged, NULL);
    assert_int_equal(r.status, 401);
    assert_string_equal(th_error_code(&r), "unauthenticated");
    assert_non_null(strstr(th_header(&r, "WWW-Authenticate"), "invalid_token"));
    th_resp_free(&r);
    /* A customer token on a store-admin route. */
    assert_int_equal(status_of("GET", "/api/v1/admin/users", store_a, u.access, NULL), 403);
    /* A valid token for a user id that does not exist acts like a disabled user. */
    char *ghost =
        th_jwt_craft(hs256_new, claims(999999999, store_a, "CUSTOMER", now, now + 600), SECRET_NEW);
    assert_int_equal(status_of("GET", "/api/v1/me", store_a, ghost, NULL), 401);
    free(ghost);
    th_user_free(&u);
}

static void
test_refresh_rotation_and_reuse(void **state)
{
    th_user_t u = th_user_new(srv, "CUSTOMER", store_a);
    char body[256];
    snprintf(body, sizeof(body), "{\"refresh_token\":\"%s\"}", u.refresh);
    th_resp_t r = req("POST", "/api/v1/auth/refresh", 0, NULL, body);
    assert_int_equal(r.status, 200);
    char *r2 = field(&r, "refresh_token");
    char *a2 = field(&r, "access_token");
    assert_string_not_equal(r2, u.refresh);
    th_resp_free(&r);
    assert_int_equal(status_of("GET", "/api/v1/me", store_a, a2, NULL), 200);

    /* The rotated token again: refused, and the whole family is revoked. */
    r = req("POST", "/api/v1/auth/refresh", 0, NULL, body);
    assert_int_equal(r.status, 401);
    assert_string_equal(th_error_code(&r), "invalid_token");
    th_resp_free(&r);
    snprintf(body, sizeof(body), "{\"refresh_token\":\"%s\"}", r2);
    assert_int_equal(status_of("POST", "/api/v1/auth/refresh", 0, NULL, body), 401);

    /* A new login is a new family, untouched by the old one's revocation. */
    r = login(store_a, u.email, TH_PASSWORD);
    assert_int_equal(r.status, 200);
    char *r3 = field(&r, "refresh_token");
    th_resp_free(&r);
    snprintf(body, sizeof(body), "{\"refresh_token\":\"%s\"}", r3);
    r = req("POST", "/api/v1/auth/refresh", 0, NULL, body);
    assert_int_equal(r.status, 200);
    char *r4 = field(&r, "refresh_token");
    th_resp_free(&r);

    /* Logout revokes the family; logging out again is still 204. */
    snprintf(body, sizeof(body), "{\"refresh_token\":\"%s\"}", r4);
    assert_int_equal(status_of("POST", "/api/v1/auth/logout", 0, NULL, body), 204);
    assert_int_equal(status_of("POST", "/api/v1/auth/refresh", 0, NULL, body), 401);
    assert_int_equal(status_of("POST", "/api/v1/auth/logout", 0, NULL, body), 204);

    /* Unknown, expired, malformed. */
    assert_int_equal(
        status_of("POST", "/api/v1/auth/refresh", 0, NULL, "{\"refresh_token\":\"nope\"}"), 401);
    assert_int_equal(status_of("POST", "/api/v1/auth/refresh", 0, NULL, "{}"), 422);
    r = login(store_a, u.email, TH_PASSWORD);
    char *r5 = field(&r, "refresh_token");
    th_resp_free(&r);
    const char *p[] = {u.email, NULL};
    th_sql("UPDATE refresh_tokens SET expires_at = now() - interval '1 minute' "
           "WHERE user_id = (SELECT id FROM users WHERE email = $1) AND revoked_at IS NULL",
           p);
    snprintf(body, sizeof(body), "{\"refresh_token\":\"%s\"}", r5);
    assert_int_equal(status_of("POST", "/api/v1/auth/refresh", 0, NULL, body), 401);
    free(r2);
    free(a2);
    free(r3);
    free(r4);
    free(r5);
    th_user_free(&u);
}

/* The Reset-Tokens of every outbox message addressed to `to` (at most max, in
 * directory order); returns how many messages there are. */
static int
outbox_tokens(const char *to, char (*tokens)[80], int max)
{
    DIR *d = opendir(outbox);
    if (d == NULL)
        return 0;
    struct dirent *e;
    int found = 0;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue; /* also the server's temporary files, renamed when complete */
        char path[512], buf[4096];
        snprintf(path, sizeof(path), "%s/%s", outbox, e->d_name);
        FILE *f = fopen(path, "r");
        if (f == NULL)
            continue;
        size_t got = fread(buf, 1, sizeof(buf) - 1, f);
        buf[got] = '\0';
        fclose(f);
        char want[200];
        snprintf(want, sizeof(want), "To: %s\r\n", to);
        const char *t = strstr(buf, "Reset-Token: ");
        if (strstr(buf, want) && t) {
            assert_non_null(strstr(buf, "/reset-password?token="));
            if (found < max)
                snprintf(tokens[found], 80, "%.64s", t + 13);
            found++;
        }
    }
    closedir(d);
    return found;
}

typedef struct outbox_wait_s {
    const char *to;
    int want;
} outbox_wait_t;

static bool
outbox_has(void *arg)
{
    outbox_wait_t *w = arg;
    char tokens[8][80];
    return outbox_tokens(w->to, tokens, 8) >= w->want;
}

/* Waits for the n-th message to `to` and copies the token of one that is not in
 * old[0..n-2] into token. The messages are told apart by their tokens, so two
 * written in the same microsecond are no problem. */
static void
outbox_wait_new(const char *to, int n, char (*old)[80], char *token)
{
    outbox_wait_t w = {to, n};
    if (!th_wait_until(outbox_has, &w, 10000))
        fail_msg("no outbox message #%d to %s in %s within 10 s", n, to, outbox);
    char tokens[8][80];
    assert_int_equal(outbox_tokens(to, tokens, 8), n);
    for (int i = 0; i < n; i++) {
        bool seen = false;
        for (int k = 0; k < n - 1; k++)
            seen |= !strcmp(tokens[i], old[k]);
        if (!seen) {
            snprintf(token, 80, "%s", tokens[i]);
            return;
        }
    }
    fail_msg("message #%d to %s repeats an old token", n, to);
}

static void
test_forgot_and_reset(void **state)
{
    th_user_t u = th_user_new(srv, "CUSTOMER", store_a);
    char body[512], tok[80], tok2[80];

    snprintf(body, sizeof(body), "{\"email\":\"%s\"}", u.email);
    th_resp_t r = req("POST", "/api/v1/auth/forgot-password", store_a, NULL, body);
    assert_int_equal(r.status, 202);
    char *answer = strdup(r.body);
    th_resp_free(&r);
    char old[1][80];
    outbox_wait_new(u.email, 1, old, tok);
    snprintf(old[0], sizeof(old[0]), "%s", tok);
    /* Unknown e-mail, and a user of another store: the same answer, no message. */
    r = req("POST", "/api/v1/auth/forgot-password", store_a, NULL,
            "{\"email\":\"ghost-user@example.com\"}");
    assert_int_equal(r.status, 202);
    assert_string_equal(r.body, answer);
    th_resp_free(&r);
    r = req("POST", "/api/v1/auth/forgot-password", store_b, NULL, body);
    assert_int_equal(r.status, 202);
    th_resp_free(&r);
    free(answer);
    /* The messages are written before the 202 goes out, so none has been missed. */
    char none[1][80];
    assert_int_equal(outbox_tokens("ghost-user@example.com", none, 1), 0);
    assert_int_equal(outbox_tokens(u.email, none, 1), 1);

    /* Reset: weak password refused (token still good), then a good one. */
    snprintf(body, sizeof(body), "{\"token\":\"%s\",\"password\":\"short\"}", tok);
    assert_int_equal(status_of("POST", "/api/v1/auth/reset-password", store_a, NULL, body), 422);
    /* The token does not work in another store. */
    snprintf(body, sizeof(body), "{\"token\":\"%s\",\"password\":\"brand new pass 9\"}", tok);
    assert_int_equal(status_of("POST", "/api/v1/auth/reset-password", store_b, NULL, body), 400);
    assert_int_equal(status_of("POST", "/api/v1/auth/reset-password", store_a, NULL, body), 204);
    /* Single use. */
    r = req("POST", "/api/v1/auth/reset-password", store_a, NULL, body);
    assert_int_equal(r.status, 400);
    assert_string_equal(th_error_code(&r), "invalid_token");
    th_resp_free(&r);
    /* The old password is gone, the new one works, old refresh tokens are revoked. */
    r = login(store_a, u.email, TH_PASSWORD);
    assert_int_equal(r.status, 401);
    th_resp_free(&r);
    r = login(store_a, u.email, "brand new pass 9");
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
    snprintf(body, sizeof(body), "{\"refresh_token\":\"%s\"}", u.refresh);
    assert_int_equal(status_of("POST", "/api/v1/auth/refresh", 0, NULL, body), 401);

    /* Expiry: a token whose hour has passed is refused. */
    snprintf(body, sizeof(body), "{\"email\":\"%s\"}", u.email);
    assert_int_equal(status_of("POST", "/api/v1/auth/forgot-password", store_a, NULL, body), 202);
    outbox_wait_new(u.email, 2, old, tok2);
    assert_string_not_equal(tok, tok2);
    const char *p[] = {u.email, NULL};
    th_sql("UPDATE password_resets SET expires_at = now() - interval '1 second' "
           "WHERE user_id = (SELECT id FROM users WHERE email = $1)",
           p);
    snprintf(body, sizeof(body), "{\"token\":\"%s\",\"password\":\"another new pass 8\"}", tok2);
    assert_int_equal(status_of("POST", "/api/v1/auth/reset-password", store_a, NULL, body), 400);
    assert_int_equal(status_of("POST", "/api/v1/auth/reset-password", store_a, NULL,
                               "{\"token\":\"0000\",\"password\":\"another new pass 8\"}"),
                     400);
    th_user_free(&u);
}

static void
test_me_update(void **state)
{
    th_user_t u = th_user_new(srv, "CUSTOMER", store_a);
    th_resp_t r = req("PATCH", "/api/v1/me", store_a, u.access, "{\"name\":\"New Name\"}");
    assert_int_equal(r.status, 200);
    assert_string_equal(json_string_value(json_object_get(r.json, "name")), "New Name");
    th_resp_free(&r);
    r = req("PATCH", "/api/v1/me", store_a, u.access, "{\"password\":\"next password 7\"}");
    assert_int_equal(r.status, 422);
    assert_true(has_issue(&r, "current_password"));
    th_resp_free(&r);
    r = req("PATCH", "/api/v1/me", store_a, u.access,
            "{\"password\":\"next password 7\",\"current_password\":\"wrong one 1\"}");
    assert_int_equal(r.status, 403);
    th_resp_free(&r);
    r = req("PATCH", "/api/v1/me", store_a, u.access, "{\"role\":\"STORE_ADMIN\"}");
    assert_int_equal(r.status, 422);
    th_resp_free(&r);
    r = req("PATCH", "/api/v1/me", store_a, u.access,
            "{\"password\":\"next password 7\",\"current_password\":\"" TH_PASSWORD "\"}");
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
    r = login(store_a, u.email, "next password 7");
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
    th_user_free(&u);
}

static void
test_staff_and_disabled_users(void **state)
{
    th_user_t admin = th_user_new(srv, "STORE_ADMIN", store_a);
    char body[512], path[96], email[128];
    snprintf(email, sizeof(email), "%s", th_email("staff"));
    snprintf(body, sizeof(body),
             "{\"email\":\"%s\",\"password\":\"staff password 1\",\"name\":\"Staff\"}", email);
    th_resp_t r = req("POST", "/api/v1/admin/users", store_a, admin.access, body);
    assert_int_equal(r.status, 201);
    long id = (long)json_integer_value(json_object_get(r.json, "id"));
    assert_string_equal(json_string_value(json_object_get(r.json, "role")), "STORE_ADMIN");
    assert_non_null(th_header(&r, "Location"));
    th_resp_free(&r);
    r = req("POST", "/api/v1/admin/users", store_a, admin.access, body);
    assert_int_equal(r.status, 409);
    th_resp_free(&r);
    r = req("POST", "/api/v1/admin/users", store_a, admin.access,
            "{\"email\":\"x@y.co\",\"password\":\"staff password 1\",\"role\":\"SUPER_ADMIN\"}");
    assert_int_equal(r.status, 422);
    assert_true(has_issue(&r, "role"));
    th_resp_free(&r);

    r = req("GET", "/api/v1/admin/users?role=STORE_ADMIN&limit=200", store_a, admin.access, NULL);
    assert_int_equal(r.status, 200);
    bool seen = false;
    size_t i;
    json_t *x;
    json_array_foreach(json_object_get(r.json, "data"), i, x)
    {
        assert_int_equal(json_integer_value(json_object_get(x, "store_id")), store_a);
        assert_string_equal(json_string_value(json_object_get(x, "role")), "STORE_ADMIN");
        if (json_integer_value(json_object_get(x, "id")) == id)
            seen = true;
    }
    assert_true(seen);
    th_resp_free(&r);
    assert_int_equal(status_of("GET", "/api/v1/admin/users?limit=0", store_a, admin.access, NULL),
                     422);

    snprintf(path, sizeof(path), "/api/v1/admin/users/%ld", id);
    r = req("GET", path, store_a, admin.access, NULL);
    assert_int_equal(r.status, 200);
    assert_string_equal(json_string_value(json_object_get(r.json, "email")), email);
    th_resp_free(&r);
    r = req("PATCH", path, store_a, admin.access, "{\"name\":\"Renamed\"}");
    assert_int_equal(r.status, 200);
    assert_string_equal(json_string_value(json_object_get(r.json, "name")), "Renamed");
    th_resp_free(&r);
    /* Store B's admin cannot see or touch a store-A user (and its token is for B). */
    th_user_t other = th_user_new(srv, "STORE_ADMIN", store_b);
    assert_int_equal(status_of("GET", path, store_b, other.access, NULL), 404);
    assert_int_equal(status_of("DELETE", path, store_b, other.access, NULL), 404);
    assert_int_equal(status_of("GET", path, store_a, other.access, NULL), 403);
    th_user_free(&other);

    /* The new staff member signs in, then is disabled: the access token stops
     * working at once, login says disabled, refresh is refused. */
    r = login(store_a, email, "staff password 1");
    assert_int_equal(r.status, 200);
    char *staff_tok = field(&r, "access_token"), *staff_ref = field(&r, "refresh_token");
    th_resp_free(&r);
    assert_int_equal(status_of("GET", "/api/v1/admin/users", store_a, staff_tok, NULL), 200);
    assert_int_equal(status_of("DELETE", path, store_a, admin.access, NULL), 204);
    r = req("GET", "/api/v1/admin/users", store_a, staff_tok, NULL);
    assert_int_equal(r.status, 401);
    th_resp_free(&r);
    r = login(store_a, email, "staff password 1");
    assert_int_equal(r.status, 403);
    assert_string_equal(th_error_code(&r), "account_disabled");
    th_resp_free(&r);
    snprintf(body, sizeof(body), "{\"refresh_token\":\"%s\"}", staff_ref);
    assert_int_equal(status_of("POST", "/api/v1/auth/refresh", 0, NULL, body), 401);
    /* Re-enabled: signs in again. */
    r = req("PATCH", path, store_a, admin.access, "{\"status\":\"active\"}");
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
    r = login(store_a, email, "staff password 1");
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
    /* Demoted to customer: the admin token from before stops working at once. */
    r = login(store_a, email, "staff password 1");
    char *staff_tok2 = field(&r, "access_token");
    th_resp_free(&r);
    snprintf(path, sizeof(path), "/api/v1/admin/users/%ld", id);
    assert_int_equal(status_of("PATCH", path, store_a, admin.access, "{\"role\":\"CUSTOMER\"}"),
                     200);
    assert_int_equal(status_of("GET", "/api/v1/admin/users", store_a, staff_tok2, NULL), 401);
    r = login(store_a, email, "staff password 1");
    assert_int_equal(r.status, 200);
    assert_string_equal(json_string_value(json_object_get(json_object_get(r.json, "user"), "role")),
                        "CUSTOMER");
    th_resp_free(&r);
    free(staff_tok2);
    /* An admin cannot disable themself. */
    snprintf(path, sizeof(path), "/api/v1/admin/users/%ld", admin.id);
    assert_int_equal(status_of("DELETE", path, store_a, admin.access, NULL), 409);
    assert_int_equal(status_of("PATCH", path, store_a, admin.access, "{\"status\":\"disabled\"}"),
                     422);
    assert_int_equal(status_of("GET", "/api/v1/admin/users/abc", store_a, admin.access, NULL), 404);
    free(staff_tok);
    free(staff_ref);
    th_user_free(&admin);
}

static void
test_store_with_first_admin(void **state)
{
    char *super = th_token(srv, "SUPER_ADMIN", 0);
    char slug[64], body[512], email[128];
    snprintf(slug, sizeof(slug), "%s", th_slug("first"));
    snprintf(email, sizeof(email), "%s", th_email("owner"));
    /* Invalid admin: nothing is created, the slug stays free. */
    snprintf(body, sizeof(body),
             "{\"slug\":\"%s\",\"name\":\"First\",\"currency\":\"USD\",\"admin\":{\"email\":\"%s\","
             "\"password\":\"weak\"}}",
             slug, email);
    th_resp_t r = req("POST", "/api/v1/stores", 0, super, body);
    assert_int_equal(r.status, 422);
    assert_true(has_issue(&r, "admin.password"));
    th_resp_free(&r);
    snprintf(body, sizeof(body),
             "{\"slug\":\"%s\",\"name\":\"First\",\"currency\":\"USD\",\"admin\":{\"email\":\"%s\","
             "\"password\":\"owner password 1\",\"name\":\"Owner\"}}",
             slug, email);
    r = req("POST", "/api/v1/stores", 0, super, body);
    assert_int_equal(r.status, 201);
    long sid = (long)json_integer_value(json_object_get(r.json, "id"));
    json_t *adm = json_object_get(r.json, "admin");
    assert_string_equal(json_string_value(json_object_get(adm, "role")), "STORE_ADMIN");
    th_resp_free(&r);
    r = login(sid, email, "owner password 1");
    assert_int_equal(r.status, 200);
    assert_string_equal(json_string_value(json_object_get(json_object_get(r.json, "user"), "role")),
                        "STORE_ADMIN");
    th_resp_free(&r);
    /* Only super admins (and the platform token) create stores. */
    char *admin = th_token(srv, "STORE_ADMIN", sid);
    snprintf(body, sizeof(body), "{\"slug\":\"%s-x\",\"name\":\"X\",\"currency\":\"USD\"}", slug);
    assert_int_equal(status_of("POST", "/api/v1/stores", 0, admin, body), 403);
    assert_int_equal(status_of("POST", "/api/v1/stores", 0, NULL, body), 401);
    free(admin);
    free(super);
}

static void
test_super_admin_cli_and_platform_login(void **state)
{
    char email[128], cmd[1024];
    snprintf(email, sizeof(email), "%s", th_email("root"));
    snprintf(cmd, sizeof(cmd),
             "printf 'root password 1\\n' | SHOPD_DATABASE_URL='%s' SHOPD_SQL_DIR='%s' '%s' "
             "create-super-admin "
             "--email '%s' --password-stdin >/dev/null 2>&1",
             th_env("SHOPD_TEST_DATABASE_URL"),
             getenv("SHOPD_SQL_DIR") ? getenv("SHOPD_SQL_DIR") : "sql", th_env("SHOPD_BIN"), email);
    assert_int_equal(system(cmd), 0);
    /* Weak password: refused with exit 2. */
    snprintf(cmd, sizeof(cmd),
             "printf 'short\\n' | SHOPD_DATABASE_URL='%s' '%s' create-super-admin --email '%s' "
             "--password-stdin >/dev/null 2>&1",
             th_env("SHOPD_TEST_DATABASE_URL"), th_env("SHOPD_BIN"), email);
    int st = system(cmd);
    assert_int_equal(WEXITSTATUS(st), 2);

    th_resp_t r = login(0, email, "root password 1");
    assert_int_equal(r.status, 200);
    json_t *u = json_object_get(r.json, "user");
    assert_string_equal(json_string_value(json_object_get(u, "role")), "SUPER_ADMIN");
    assert_true(json_is_null(json_object_get(u, "store_id")));
    char *tok = field(&r, "access_token");
    th_resp_free(&r);
    assert_int_equal(status_of("GET", "/api/v1/stores?limit=1", 0, tok, NULL), 200);
    r = login(0, email, "wrong password 1");
    assert_int_equal(r.status, 401);
    th_resp_free(&r);
    /* A store user cannot use the platform login. */
    th_user_t c = th_user_new(srv, "STORE_ADMIN", store_a);
    r = login(0, c.email, TH_PASSWORD);
    assert_int_equal(r.status, 401);
    th_resp_free(&r);
    th_user_free(&c);
    free(tok);
}

/* A second server with tight limits on its own Redis database. */
static void
test_rate_limits(void **state)
{
    char url[300], env_url[320];
    snprintf(url, sizeof(url), "%s", th_env("SHOPD_TEST_REDIS_URL"));
    char *slash = strrchr(url, '/');
    if (slash && slash > url + 8)
        *slash = '\0';
    strcat(url, "/9");
    kv_conn_t *kv = kv_conn_new(url, 2000);
    redisReply *rr = kv_command(kv, "FLUSHDB");
    assert_non_null(rr);
    freeReplyObject(rr);
    kv_conn_free(kv);
    snprintf(env_url, sizeof(env_url), "SHOPD_REDIS_URL=%s", url);
    const char *env[] = {env_url, "SHOPD_AUTH_RATE_IP=5", "SHOPD_AUTH_RATE_ACCOUNT=2",
                         "SHOPD_TRUSTED_PROXIES=10.9.9.9,127.0.0.1", NULL};
    th_server_t *main_srv = srv;
    srv = th_start(env);

    /* Per account: the third attempt on one e-mail within the hour. */
    for (int i = 0; i < 2; i++) {
        th_resp_t r = login(store_a, "victim@example.com", "guess password 1");
        assert_int_equal(r.status, 401);
        th_resp_free(&r);
    }
    th_resp_t r = login(store_a, "victim@example.com", "guess password 1");
    assert_int_equal(r.status, 429);
    assert_string_equal(th_error_code(&r), "rate_limited");
    assert_true(atoi(th_header(&r, "Retry-After")) >= 1);
    th_resp_free(&r);
    /* Per address: 5 per minute on login, whatever the e-mail (3 used above). */
    for (int i = 0; i < 2; i++) {
        r = login(store_a, th_email("spray"), "guess password 1");
        assert_int_equal(r.status, 401);
        th_resp_free(&r);
    }
    r = login(store_a, th_email("spray"), "guess password 1");
    assert_int_equal(r.status, 429);
    assert_non_null(th_header(&r, "Retry-After"));
    th_resp_free(&r);

    /* Behind a trusted proxy, each client behind it has its own bucket. */
    for (int client = 1; client <= 2; client++) {
        char xff[96], body[256];
        snprintf(xff, sizeof(xff), "X-Forwarded-For: 6.6.6.6, 198.51.100.%d", client);
        char tenant[64];
        snprintf(tenant, sizeof(tenant), "X-Tenant-Id: %ld", store_a);
        const char *h[] = {tenant, xff, NULL};
        for (int i = 0; i < 5; i++) {
            snprintf(body, sizeof(body), "{\"email\":\"%s\",\"password\":\"guess password 1\"}",
                     th_email("xff"));
            r = th_req(srv, "POST", "/api/v1/auth/login", h, body);
            assert_int_equal(r.status, 401);
            th_resp_free(&r);
        }
        r = th_req(srv, "POST", "/api/v1/auth/login", h, body);
        assert_int_equal(r.status, 429);
        th_resp_free(&r);
    }

    /* Register, forgot-password and refresh have their own buckets. */
    const char *paths[] = {"/api/v1/auth/register", "/api/v1/auth/forgot-password",
                           "/api/v1/auth/refresh"};
    for (size_t p = 0; p < 3; p++) {
        long last = 0;
        for (int i = 0; i < 6; i++) {
            char body[256];
            if (p == 2)
                snprintf(body, sizeof(body), "{\"refresh_token\":\"nope-%d\"}", i);
            else
                snprintf(body, sizeof(body), "{\"email\":\"%s\",\"password\":\"x\"}",
                         th_email("rl"));
            last = status_of("POST", paths[p], p == 2 ? 0 : store_a, NULL, body);
            if (i < 5)
                assert_int_not_equal(last, 429);
        }
        if (last != 429)
            fail_msg("%s: 6th attempt got %ld, want 429", paths[p], last);
    }
    th_server_t *limited = srv;
    srv = main_srv; /* first: a failed stop must not leave the teardown a freed server */
    assert_int_equal(th_stop(limited), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_register_and_login),
        cmocka_unit_test(test_crafted_tokens),
        cmocka_unit_test(test_refresh_rotation_and_reuse),
        cmocka_unit_test(test_forgot_and_reset),
        cmocka_unit_test(test_me_update),
        cmocka_unit_test(test_staff_and_disabled_users),
        cmocka_unit_test(test_store_with_first_admin),
        cmocka_unit_test(test_super_admin_cli_and_platform_login),
        cmocka_unit_test(test_rate_limits),
        TH_STOP_TEST, /* last: the server must exit 0 on SIGTERM */
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
