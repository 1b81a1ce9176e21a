/*
 * harness_auth.c: users and tokens for integration tests. Users are inserted
 * straight into PostgreSQL with a cheap argon2id hash (the server verifies
 * with the parameters stored in the hash, so test logins stay fast), then
 * sign in through the real login endpoint, so every token is a real one.
 */
#include "harness.h"

#include <argon2.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

static PGconn *pg;
static char cheap_hash[160];

static PGconn *
conn(void)
{
    if (pg == NULL) {
        pg = PQconnectdb(th_env("SHOPD_TEST_DATABASE_URL"));
        if (PQstatus(pg) != CONNECTION_OK)
            fail_msg("test database: %s", PQerrorMessage(pg));
        PQclear(PQexec(pg, "SET client_min_messages = warning"));
    }
    return pg;
}

const char *
th_sql(const char *sql, const char *const *params)
{
    static char out[4096];
    int n = 0;
    for (const char *const *p = params; p && *p; p++)
        n++;
    PGresult *r = PQexecParams(conn(), sql, n, NULL, params, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
        char msg[512];
        snprintf(msg, sizeof(msg), "%s", PQresultErrorMessage(r));
        PQclear(r);
        fail_msg("SQL failed: %s (%s)", msg, sql);
    }
    out[0] = '\0';
    if (st == PGRES_TUPLES_OK && PQntuples(r) > 0)
        snprintf(out, sizeof(out), "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    return out;
}

const char *
th_email(const char *prefix)
{
    static __thread char buf[128];
    static __thread unsigned seq;
    unsigned r = (unsigned)getpid() * 2654435761u ^ (unsigned)time(NULL) ^ (++seq * 40503u) ^
                 (unsigned)rand();
    snprintf(buf, sizeof(buf), "%s-%x-%u@test.example", prefix, r, seq);
    return buf;
}

void
th_auth_header(char *buf, size_t n, const char *token)
{
    snprintf(buf, n, "Authorization: Bearer %s", token);
}

th_user_t
th_user_new(th_server_t *srv, const char *role, long store_id)
{
    th_user_t u = {0};
    bool super = strcmp(role, "SUPER_ADMIN") == 0;
    if (cheap_hash[0] == '\0') {
        static const unsigned char salt[16] = "th-salt-0123456";
        if (argon2id_hash_encoded(1, 1024, 1, TH_PASSWORD, strlen(TH_PASSWORD), salt, sizeof(salt),
                                  32, cheap_hash, sizeof(cheap_hash)) != ARGON2_OK)
            fail_msg("argon2 failed");
    }
    snprintf(u.email, sizeof(u.email), "%s", th_email(super ? "super" : "user"));
    char sid[24];
    snprintf(sid, sizeof(sid), "%ld", super ? 0L : store_id);
    const char *p[] = {sid, u.email, cheap_hash, role, NULL};
    u.id = atol(th_sql("INSERT INTO users (store_id, email, password_hash, role, name) "
                       "VALUES (NULLIF($1::bigint, 0), $2, $3, $4, 'Test User') RETURNING id",
                       p));
    u.store_id = super ? 0 : store_id;
    char body[512], tenant[64];
    snprintf(body, sizeof(body), "{\"email\":\"%s\",\"password\":\"%s\"}", u.email, TH_PASSWORD);
    snprintf(tenant, sizeof(tenant), "X-Tenant-Id: %ld", store_id);
    const char *h[] = {tenant, NULL};
    th_resp_t r = super ? th_req(srv, "POST", "/api/v1/platform/auth/login", NULL, body)
                        : th_req(srv, "POST", "/api/v1/auth/login", h, body);
    if (r.status != 200)
        fail_msg("login of a %s test user: %ld %s", role, r.status, r.body);
    u.access = strdup(json_string_value(json_object_get(r.json, "access_token")));
    u.refresh = strdup(json_string_value(json_object_get(r.json, "refresh_token")));
    th_resp_free(&r);
    return u;
}

void
th_user_free(th_user_t *u)
{
    free(u->access);
    free(u->refresh);
    u->access = u->refresh = NULL;
}

char *
th_token(th_server_t *srv, const char *role, long store_id)
{
    th_user_t u = th_user_new(srv, role, store_id);
    free(u.refresh);
    return u.access;
}

/* ---- tokens crafted by tests ---- */

size_t
th_b64url(const unsigned char *in, size_t n, char *out)
{
    static const char tb[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0) |
                     (i + 2 < n ? in[i + 2] : 0);
        out[o++] = tb[v >> 18];
        out[o++] = tb[(v >> 12) & 63];
        if (i + 1 < n)
            out[o++] = tb[(v >> 6) & 63];
        if (i + 2 < n)
            out[o++] = tb[v & 63];
    }
    out[o] = '\0';
    return o;
}

char *
th_jwt_craft(const char *header, const char *payload, const char *secret)
{
    char *t = malloc(4096);
    size_t o = th_b64url((const unsigned char *)header, strlen(header), t);
    t[o++] = '.';
    o += th_b64url((const unsigned char *)payload, strlen(payload), t + o);
    unsigned char mac[32];
    unsigned int ml = 32;
    if (secret) {
        HMAC(EVP_sha256(), secret, (int)strlen(secret), (unsigned char *)t, o, mac, &ml);
        t[o++] = '.';
        th_b64url(mac, 32, t + o);
    } else {
        t[o++] = '.';
        t[o] = '\0';
    }
    return t;
}

th_resp_t
th_store_req(th_server_t *srv, long store, const char *token, const char *method, const char *path,
             const char *body)
{
    char tenant[64], auth[2048];
    const char *h[3] = {tenant, NULL, NULL};
    snprintf(tenant, sizeof(tenant), "X-Tenant-Id: %ld", store);
    if (token) {
        th_auth_header(auth, sizeof(auth), token);
        h[1] = auth;
    }
    return th_req(srv, method, path, h, body);
}
