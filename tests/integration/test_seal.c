/*
 * test_seal.c: secrets sealed at rest (include/shopd/seal.h), against the
 * real binary and PostgreSQL. A store's Stripe secret key and webhook signing
 * secrets, and an outgoing-webhook endpoint's secret, are in the database only
 * in sealed form; they still work (a webhook signed with the secret is taken,
 * the account answers its last 4 characters); a sealed value moved to another
 * store's row or changed by one byte does not open (an error, no secret
 * shown); plain-text rows from before sealing are read and sealed at the next
 * start; a rotation (new key + SHOPD_SECRETS_KEY_OLD) re-seals every row
 * under the new key at start; a process started with a key that opens
 * nothing refuses to start. No answer, log line or /metrics shows a secret.
 */
#include <openssl/evp.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "harness.h"

#define SK "sk_test_sealme0123456789abcd"
#define WHSEC "whsec_sealone0123456789wxyz"
#define WHSEC2 "whsec_sealtwo0123456789ab"
/* The rotation's new key and one that opens nothing here. */
#define KEY_NEW "bmV3LXNlYWxpbmcta2V5LWZvci1yb3RhdGlvbi0hISE="
#define KEY_STRANGER "c3RyYW5nZXItc2VhbGluZy1rZXktbm90LW91cnMhISE="

/* Fixed so that the admin's token outlives a restart. */
#define JWT "SHOPD_JWT_KEYS=seal:test-seal-jwt-key-0123456789abcdef0123456789"

static th_server_t *srv;
static const char *const plain_env[] = {JWT, NULL};

typedef struct shop_s {
    long id;
    char slug[64];
    th_user_t admin;
} shop_t;

static shop_t
shop_new(void)
{
    shop_t s;
    snprintf(s.slug, sizeof(s.slug), "%s", th_slug("seal"));
    s.id = th_create_store(srv, s.slug, NULL);
    s.admin = th_user_new(srv, "STORE_ADMIN", s.id);
    return s;
}

static const char *
sqlf(const char *fmt, ...)
{
    char sql[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sql, sizeof(sql), fmt, ap);
    va_end(ap);
    return th_sql(sql, NULL);
}

static th_resp_t
req(const shop_t *s, const char *method, const char *path, const char *body)
{
    return th_store_req(srv, s->id, s->admin.access, method, path, body);
}

/* A Stripe webhook for s signed with secret now; the HTTP status. */
static long
webhook(const shop_t *s, const char *secret, const char *event_id)
{
    char body[512], sig[256], path[128], hdr[300];
    long long t = (long long)time(NULL);
    snprintf(body, sizeof(body),
             "{\"id\":\"%s\",\"type\":\"payment_intent.processing\",\"created\":%lld,\"data\":"
             "{\"object\":{\"id\":\"pi_seal_none\",\"object\":\"payment_intent\",\"status\":"
             "\"processing\",\"metadata\":{}}}}",
             event_id, t);
    char signed_text[600];
    int n = snprintf(signed_text, sizeof(signed_text), "%lld.%s", t, body);
    unsigned char mac[32];
    size_t maclen = 0;
    assert_non_null(EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, secret, strlen(secret),
                              (const unsigned char *)signed_text, (size_t)n, mac, sizeof(mac),
                              &maclen));
    int o = snprintf(sig, sizeof(sig), "t=%lld,v1=", t);
    for (size_t i = 0; i < maclen; i++)
        o += snprintf(sig + o, sizeof(sig) - (size_t)o, "%02x", mac[i]);
    snprintf(hdr, sizeof(hdr), "Stripe-Signature: %s", sig);
    snprintf(path, sizeof(path), "/api/v1/payments/stripe/webhook/%s", s->slug);
    const char *headers[] = {hdr, "Content-Type: application/json", NULL};
    th_resp_t r = th_req(srv, "POST", path, headers, body);
    long status = r.status;
    th_resp_free(&r);
    return status;
}

/* The account as the admin API shows it: 200 with the key's last 4 characters. */
static void
account_ok(const shop_t *s)
{
    th_resp_t r = req(s, "GET", "/api/v1/admin/payments/stripe", NULL);
    assert_int_equal(r.status, 200);
    assert_string_equal(json_string_value(json_object_get(r.json, "secret_key_last4")), "abcd");
    assert_null(strstr(r.body, SK));
    assert_null(strstr(r.body, "seal1."));
    th_resp_free(&r);
}

/* Every secret column of the database: sealed, under key id kid when given. */
static void
all_sealed(const char *kid)
{
    char like[32];
    snprintf(like, sizeof(like), "seal1.%s.%%", kid ? kid : "");
    if (!kid)
        snprintf(like, sizeof(like), "seal1.%%");
    const char *p[] = {like, NULL};
    assert_string_equal(
        th_sql("SELECT count(*) FROM stripe_accounts WHERE secret_key NOT LIKE $1 OR EXISTS "
               "(SELECT 1 FROM unnest(webhook_secrets) s WHERE s NOT LIKE $1)",
               p),
        "0");
    assert_string_equal(
        th_sql("SELECT count(*) FROM webhook_endpoints WHERE secret NOT LIKE $1", p), "0");
    /* And no plain secret anywhere in those tables' text. */
    assert_string_equal(sqlf("SELECT count(*) FROM stripe_accounts a WHERE a::text LIKE "
                             "'%%sk_test%%' OR a::text LIKE '%%whsec_%%'"),
                        "0");
    assert_string_equal(
        sqlf("SELECT count(*) FROM webhook_endpoints w WHERE w::text LIKE '%%whsec_%%'"), "0");
}

/* The key id the account of store is sealed under. */
static const char *
kid_of(long store)
{
    return sqlf("SELECT substr(secret_key, 7, 8) FROM stripe_accounts WHERE store_id = %ld", store);
}

/* Neither the server's log nor /metrics holds a secret. */
static void
nothing_leaked(const char *hook_secret)
{
    th_resp_t r = th_req(srv, "GET", "/metrics", NULL, NULL);
    assert_int_equal(r.status, 200);
    const char *secrets[] = {SK, WHSEC, WHSEC2, hook_secret, TH_SECRETS_KEY, KEY_NEW, "seal1."};
    for (size_t i = 0; i < sizeof(secrets) / sizeof(secrets[0]); i++) {
        assert_null(strstr(r.body, secrets[i]));
        char cmd[600];
        snprintf(cmd, sizeof(cmd), "! grep -qF -- '%s' %s", secrets[i], srv->log_path);
        th_run(cmd);
    }
    th_resp_free(&r);
}

static void
test_sealing(void **state)
{
    (void)state;
    srv = th_start(plain_env);
    shop_t a = shop_new(), b = shop_new();
    char body[512];
    snprintf(body, sizeof(body),
             "{\"secret_key\":\"" SK "\",\"webhook_secrets\":[\"" WHSEC "\",\"" WHSEC2 "\"]}");
    th_resp_t r = req(&a, "PATCH", "/api/v1/admin/payments/stripe", body);
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
    r = req(&b, "PATCH", "/api/v1/admin/payments/stripe", body);
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
    /* A secret longer than a sealed column can hold: refused, field named. */
    char longkey[200] = "sk_test_";
    memset(longkey + 8, 'x', 150);
    longkey[158] = '\0';
    snprintf(body, sizeof(body), "{\"secret_key\":\"%s\"}", longkey);
    r = req(&a, "PATCH", "/api/v1/admin/payments/stripe", body);
    assert_int_equal(r.status, 422);
    assert_non_null(strstr(r.body, "secret_key"));
    th_resp_free(&r);

    /* An endpoint's secret: shown once, kept sealed. */
    r = req(&a, "POST", "/api/v1/admin/webhooks",
            "{\"url\":\"https://example.com/hook\",\"events\":[\"order.paid\"]}");
    assert_int_equal(r.status, 201);
    char hook_secret[128];
    snprintf(hook_secret, sizeof(hook_secret), "%s",
             json_string_value(json_object_get(r.json, "secret")));
    assert_int_equal(strncmp(hook_secret, "whsec_", 6), 0);
    long hook = (long)json_integer_value(json_object_get(r.json, "id"));
    th_resp_free(&r);
    char path[128];
    snprintf(path, sizeof(path), "/api/v1/admin/webhooks/%ld", hook);
    r = req(&a, "GET", path, NULL);
    assert_int_equal(r.status, 200);
    assert_null(strstr(r.body, hook_secret));
    assert_null(strstr(r.body, "seal1."));
    th_resp_free(&r);

    all_sealed(NULL);
    char kid1[16];
    snprintf(kid1, sizeof(kid1), "%s", kid_of(a.id));
    assert_int_equal(strlen(kid1), 8);
    account_ok(&a);
    /* The sealed secrets still sign: both webhook secrets verify, another does not. */
    assert_int_equal(webhook(&a, WHSEC, "evt_seal_1"), 200);
    assert_int_equal(webhook(&a, WHSEC2, "evt_seal_2"), 200);
    assert_int_equal(webhook(&a, "whsec_someone0123456789else", "evt_seal_3"), 400);

    /* A's sealed key moved into B's row: bound to A, it does not open for B. */
    sqlf("UPDATE stripe_accounts SET secret_key = (SELECT secret_key FROM stripe_accounts "
         "WHERE store_id = %ld) WHERE store_id = %ld RETURNING 1",
         a.id, b.id);
    r = req(&b, "GET", "/api/v1/admin/payments/stripe", NULL);
    assert_int_equal(r.status, 500);
    assert_null(strstr(r.body, SK));
    th_resp_free(&r);
    assert_int_equal(webhook(&b, WHSEC, "evt_seal_b1"), 400);
    /* One changed character in A's own row: refused the same way. */
    char saved[300];
    snprintf(saved, sizeof(saved), "%s",
             sqlf("SELECT secret_key FROM stripe_accounts WHERE store_id = %ld", a.id));
    sqlf("UPDATE stripe_accounts SET secret_key = overlay(secret_key placing CASE WHEN "
         "substr(secret_key, 30, 1) = 'A' THEN 'B' ELSE 'A' END from 30 for 1) WHERE store_id = "
         "%ld RETURNING 1",
         a.id);
    r = req(&a, "GET", "/api/v1/admin/payments/stripe", NULL);
    assert_int_equal(r.status, 500);
    th_resp_free(&r);
    sqlf("UPDATE stripe_accounts SET secret_key = '%s' WHERE store_id = %ld RETURNING 1", saved,
         a.id);
    account_ok(&a);
    /* B back to a key of its own (a PATCH seals it for B). */
    r = req(&b, "PATCH", "/api/v1/admin/payments/stripe", "{\"secret_key\":\"" SK "\"}");
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
    account_ok(&b);

    /* Rows in plain text (as before sealing): read as they are... */
    sqlf("UPDATE stripe_accounts SET secret_key = '" SK "', webhook_secrets = ARRAY['" WHSEC
         "'] WHERE store_id = %ld RETURNING 1",
         a.id);
    sqlf("UPDATE webhook_endpoints SET secret = 'whsec_plainendpoint0123' WHERE store_id = %ld "
         "RETURNING 1",
         a.id);
    account_ok(&a);
    assert_int_equal(webhook(&a, WHSEC, "evt_seal_4"), 200);
    nothing_leaked(hook_secret);
    assert_int_equal(th_stop(srv), 0);

    /* ...and sealed by the next start. */
    srv = th_start(plain_env);
    all_sealed(kid1);
    account_ok(&a);
    assert_int_equal(webhook(&a, WHSEC, "evt_seal_5"), 200);
    nothing_leaked(hook_secret);
    assert_int_equal(th_stop(srv), 0);

    /* Rotation: the new key with the old one beside it. Every row is sealed
     * again under the new key at start, and everything still opens. */
    const char *rotate[] = {JWT, "SHOPD_SECRETS_KEY=" KEY_NEW,
                            "SHOPD_SECRETS_KEY_OLD=" TH_SECRETS_KEY, NULL};
    srv = th_start(rotate);
    char kid2[16];
    snprintf(kid2, sizeof(kid2), "%s", kid_of(a.id));
    assert_string_not_equal(kid1, kid2);
    all_sealed(kid2);
    account_ok(&a);
    account_ok(&b);
    assert_int_equal(webhook(&a, WHSEC, "evt_seal_6"), 200);
    nothing_leaked(hook_secret);
    assert_int_equal(th_stop(srv), 0);

    /* A process with a key that opens none of it refuses to start, saying why
     * (the old key alone, after the rotation, is such a key). */
    char err[4096];
    const char *argv[] = {"shopd", "serve", NULL};
    const char *stranger[] = {"SHOPD_SECRETS_KEY=" KEY_STRANGER, NULL};
    assert_int_equal(th_run_shopd(argv, stranger, err, sizeof(err)), 1);
    assert_non_null(strstr(err, "sealed under a key"));
    assert_null(strstr(err, SK));
    assert_int_equal(th_run_shopd(argv, NULL, err, sizeof(err)), 1);
    assert_non_null(strstr(err, "sealed under a key"));
    /* A key that is not 32 bytes of base64: refused at start. */
    const char *bad[] = {"SHOPD_SECRETS_KEY=too-short", NULL};
    assert_int_equal(th_run_shopd(argv, bad, err, sizeof(err)), 1);
    assert_non_null(strstr(err, "SHOPD_SECRETS_KEY must be the base64 of exactly 32 bytes"));
    assert_string_equal(kid_of(a.id), kid2); /* nothing was rewritten */

    /* The new key alone (the old one dropped): serves. */
    const char *only_new[] = {JWT, "SHOPD_SECRETS_KEY=" KEY_NEW, NULL};
    srv = th_start(only_new);
    account_ok(&a);
    assert_int_equal(webhook(&a, WHSEC, "evt_seal_7"), 200);
    nothing_leaked(hook_secret);
    th_user_free(&a.admin);
    th_user_free(&b.admin);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sealing),
        TH_STOP_TEST,
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
