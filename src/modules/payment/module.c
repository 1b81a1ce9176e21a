/*
 * module.c: the payment module: a store's Stripe account (GET/PATCH
 * /api/v1/admin/payments/stripe), Stripe's webhooks (POST
 * /api/v1/payments/stripe/webhook/:store) and the choice of a checkout's
 * provider.
 *
 * Secrets are written here and read back only into a pay_account_t for the
 * provider's calls; every answer shows their last 4 characters. They are
 * kept sealed (include/shopd/seal.h) with the store and the column as the
 * seal's context, so a dump of stripe_accounts holds no usable key and a value
 * copied into another store's row does not open. At start-up, rows kept in
 * plain text (before sealing) or under the previous key are sealed again
 * under the current one (pay_reseal_rows); reads take plain text too, so a
 * row written by an older process during a rolling deploy still works until
 * the next start seals it.
 *
 * A webhook runs on the store's actor (API_ORDERED), in order with the
 * store's checkouts, so it never races the recording of a checkout's own
 * answer from Stripe. Its event id is inserted into webhook_events in the
 * transaction that applies the event (pay_stripe_apply), so a redelivery, or
 * two deliveries at once, apply it once. An event about an order this
 * process cannot see (not committed yet, or another process's) is kept
 * unapplied and applied when the order's payment is recorded.
 */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "shopd/api.h"
#include "shopd/log.h"
#include "shopd/payment.h"
#include "shopd/seal.h"

#define STRIPE_DEFAULT_BASE "https://api.stripe.com"

/* The seal's context of a store's secret key and of its webhook secrets. */
static void
aad_key(char *out, size_t n, uint64_t store_id)
{
    snprintf(out, n, "stripe_accounts.secret_key:%llu", (unsigned long long)store_id);
}

static void
aad_hooks(char *out, size_t n, uint64_t store_id)
{
    snprintf(out, n, "stripe_accounts.webhook_secrets:%llu", (unsigned long long)store_id);
}

/* Opens the account's secrets (sealed text, or plain text from before sealing)
 * into out. false if one does not open (another key, a changed byte). */
static bool
open_secrets(uint64_t store_id, const char *key, const char *hooks_json, pay_account_t *out)
{
    char aad[96];
    aad_key(aad, sizeof(aad), store_id);
    bool ok = seal_open_or_plain(seal_process(), key, aad, out->secret_key,
                                 sizeof(out->secret_key)) == SHOPD_OK;
    aad_hooks(aad, sizeof(aad), store_id);
    json_t *a = json_loads(hooks_json, 0, NULL);
    size_t i;
    json_t *e;
    json_array_foreach(a, i, e)
    {
        if (out->nsecrets < PAY_MAX_WEBHOOK_SECRETS && json_is_string(e))
            ok = ok && seal_open_or_plain(seal_process(), json_string_value(e), aad,
                                          out->webhook_secrets[out->nsecrets++],
                                          sizeof(out->webhook_secrets[0])) == SHOPD_OK;
    }
    json_decref(a);
    return ok;
}

/* ---------------------------------------------------------------- accounts */

shopd_rc_t
pay_account_load(db_conn_t *c, const cfg_t *cfg, uint64_t store_id, const pay_provider_t *provider,
                 pay_account_t *out)
{
    memset(out, 0, sizeof(*out));
    out->store_id = store_id;
    if (cfg) {
        out->timeout_ms = cfg->stripe_timeout_ms;
        out->connect_ms = cfg->stripe_connect_ms;
    }
    if (provider != &pay_stripe_provider)
        return SHOPD_OK;
    char sid[24];
    snprintf(sid, sizeof(sid), "%llu", (unsigned long long)store_id);
    const char *p[] = {sid};
    PGresult *r =
        db_exec(c, "pay_account",
                "SELECT a.secret_key, a.api_base, array_to_json(a.webhook_secrets), "
                "coalesce(s.capture_method, 'automatic') FROM stripe_accounts a LEFT "
                "JOIN payment_settings s ON s.store_id = a.store_id WHERE a.store_id = $1",
                1, p);
    shopd_rc_t rc = db_result_rc(r);
    if (rc == SHOPD_OK && PQntuples(r) == 0)
        rc = SHOPD_NOTFOUND;
    if (rc == SHOPD_OK) {
        snprintf(out->api_base, sizeof(out->api_base), "%s", PQgetvalue(r, 0, 1));
        out->manual_capture = strcmp(PQgetvalue(r, 0, 3), "manual") == 0;
        if (!open_secrets(store_id, PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 2), out)) {
            /* Said once per call, without the value: an operator's key problem. */
            log_error("msg=\"stripe account secrets do not open (another SHOPD_SECRETS_KEY?)\" "
                      "store=%llu",
                      (unsigned long long)store_id);
            explicit_bzero(out, sizeof(*out));
            out->store_id = store_id;
            rc = SHOPD_ERR;
        }
    }
    PQclear(r);
    return rc;
}

const pay_provider_t *
pay_provider_for_store(db_conn_t *c, uint64_t store_id, const char *name)
{
    if (name && strcmp(name, "stripe") != 0)
        return pay_provider_find(name);
    char sid[24];
    snprintf(sid, sizeof(sid), "%llu", (unsigned long long)store_id);
    const char *p[] = {sid};
    PGresult *r = db_exec(c, "pay_stripe_default",
                          "SELECT is_default FROM stripe_accounts WHERE store_id = $1", 1, p);
    bool have = db_result_rc(r) == SHOPD_OK && PQntuples(r) == 1;
    bool dflt = have && PQgetvalue(r, 0, 0)[0] == 't';
    PQclear(r);
    if (name) /* "stripe": only once the store has an account */
        return have ? &pay_stripe_provider : NULL;
    return dflt ? &pay_stripe_provider : &pay_test_provider;
}

/* "…abcd": what a client may see of a secret. */
static json_t *
last4(const char *s)
{
    size_t n = strlen(s);
    return json_string(n >= 4 ? s + n - 4 : "");
}

static net_reply_t *
h_account_get(api_ctx_t *ctx)
{
    db_conn_t *c = db_acquire(ctx->app->db, 2000);
    if (c == NULL)
        return api_unavailable("the database");
    char sid[24];
    snprintf(sid, sizeof(sid), "%llu", (unsigned long long)ctx->store_id);
    const char *p[] = {sid};
    PGresult *r =
        db_exec(c, "pay_account_get",
                "SELECT a.secret_key, a.api_base, array_to_json(a.webhook_secrets), "
                "a.is_default, to_json(greatest(a.updated_at, s.updated_at)) #>> '{}', "
                "coalesce(s.capture_method, 'automatic') FROM stripe_accounts a LEFT "
                "JOIN payment_settings s ON s.store_id = a.store_id WHERE a.store_id = $1",
                1, p);
    arena_pgresult(ctx->arena, r);
    net_reply_t *reply;
    if (db_result_rc(r) != SHOPD_OK) {
        reply = api_db_error(ctx, r, "stripe account");
    } else if (PQntuples(r) == 0) {
        reply = api_fail(SHOPD_NOTFOUND, "stripe_not_configured",
                         "this store has no Stripe account yet");
    } else {
        /* The last 4 characters need the plain text: opened here, wiped below. */
        pay_account_t *acct = shopd_calloc(1, sizeof(*acct));
        if (!open_secrets(ctx->store_id, PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 2), acct)) {
            reply = api_internal(ctx, "stripe account secrets do not open");
        } else {
            json_t *secrets = json_array();
            for (size_t i = 0; i < acct->nsecrets; i++)
                json_array_append_new(secrets,
                                      json_pack("{s:o}", "last4", last4(acct->webhook_secrets[i])));
            reply = api_json(SHOPD_OK,
                             json_pack("{s:s, s:o, s:o, s:s, s:b, s:s, s:s}", "provider", "stripe",
                                       "secret_key_last4", last4(acct->secret_key),
                                       "webhook_secrets", secrets, "api_base", PQgetvalue(r, 0, 1),
                                       "default", PQgetvalue(r, 0, 3)[0] == 't', "capture_method",
                                       PQgetvalue(r, 0, 5), "updated_at", PQgetvalue(r, 0, 4)));
        }
        explicit_bzero(acct, sizeof(*acct));
        shopd_free(acct);
    }
    db_release(c);
    return reply;
}

static bool
base_ok(const cfg_t *cfg, const char *b)
{
    if (strcmp(b, STRIPE_DEFAULT_BASE) == 0)
        return true;
    if (!cfg->stripe_any_base)
        return false;
    if (strncmp(b, "https://", 8) != 0 && strncmp(b, "http://", 7) != 0)
        return false;
    for (const char *p = b; *p; p++)
        if (*p <= ' ' || *p == '?' || *p == '#' || *p == '"' || (unsigned char)*p >= 0x7f)
            return false;
    return b[strlen(b) - 1] != '/';
}

static bool
secret_ok(const char *s, const char *prefix)
{
    if (strncmp(s, prefix, strlen(prefix)) != 0)
        return false;
    for (const char *p = s; *p; p++)
        if (!(*p >= '0' && *p <= '9') && !(*p >= 'a' && *p <= 'z') && !(*p >= 'A' && *p <= 'Z') &&
            *p != '_')
            return false;
    return true;
}

static net_reply_t *
h_account_set(api_ctx_t *ctx)
{
    api_val_t v = {0};
    static const char *const allowed[] = {"secret_key", "webhook_secrets", "api_base",
                                          "default",    "capture_method",  NULL};
    api_val_only(&v, ctx->body, allowed);
    const char *key = api_val_string(&v, ctx->body, "secret_key", false, 8, SEAL_MAX_PLAIN);
    if (key && !secret_ok(key, "sk_") && !secret_ok(key, "rk_"))
        api_val_add(&v, "secret_key", "must be a Stripe secret key (sk_... or rk_...)");
    const char *base = api_val_string(&v, ctx->body, "api_base", false, 8, 200);
    if (base && !base_ok(ctx->app->cfg, base))
        api_val_add(&v, "api_base",
                    ctx->app->cfg->stripe_any_base
                        ? "must be an http(s) URL without a trailing slash"
                        : "must be " STRIPE_DEFAULT_BASE);
    json_t *ws = json_object_get(ctx->body, "webhook_secrets");
    char *ws_text = NULL;
    if (ws && !json_is_null(ws)) {
        bool ok = json_is_array(ws) && json_array_size(ws) <= PAY_MAX_WEBHOOK_SECRETS;
        size_t i;
        json_t *e;
        json_array_foreach(ws, i, e)
        {
            const char *s = json_string_value(e);
            ok =
                ok && s && strlen(s) >= 12 && strlen(s) <= SEAL_MAX_PLAIN && secret_ok(s, "whsec_");
        }
        if (!ok)
            api_val_add(&v, "webhook_secrets",
                        "must be at most 4 signing secrets (whsec_..., at most 128 characters)");
    }
    json_t *d = json_object_get(ctx->body, "default");
    if (d && !json_is_boolean(d))
        api_val_add(&v, "default", "must be true or false");
    const char *capture = api_val_string(&v, ctx->body, "capture_method", false, 1, 16);
    if (capture && strcmp(capture, "automatic") != 0 && strcmp(capture, "manual") != 0)
        api_val_add(&v, "capture_method", "must be automatic or manual");
    if (v.n)
        return api_val_reply(&v);
    /* Sealed before anything is written: the plain text never reaches the
     * database, not even as a statement parameter. */
    char aad[96], *key_sealed = NULL;
    net_reply_t *reply = NULL;
    if (key) {
        aad_key(aad, sizeof(aad), ctx->store_id);
        if ((key_sealed = seal_seal(seal_process(), key, aad)) == NULL)
            return api_internal(ctx, "secret key not sealed");
    }
    if (ws && !json_is_null(ws)) {
        aad_hooks(aad, sizeof(aad), ctx->store_id);
        json_t *sealed = json_array();
        size_t i;
        json_t *e;
        json_array_foreach(ws, i, e)
        {
            char *one = seal_seal(seal_process(), json_string_value(e), aad);
            if (one == NULL)
                break;
            json_array_append_new(sealed, json_string(one));
            shopd_free(one);
        }
        if (json_array_size(sealed) == json_array_size(ws))
            ws_text = json_dumps(sealed, JSON_COMPACT);
        json_decref(sealed);
        if (ws_text == NULL) {
            shopd_free(key_sealed);
            return api_internal(ctx, "webhook secrets not sealed");
        }
    }
    db_conn_t *c = db_acquire(ctx->app->db, 2000);
    if (c == NULL) {
        free(ws_text);
        shopd_free(key_sealed);
        return api_unavailable("the database");
    }
    char sid[24];
    snprintf(sid, sizeof(sid), "%llu", (unsigned long long)ctx->store_id);
    const char *p[] = {sid,
                       key_sealed ? key_sealed : "",
                       ws_text ? ws_text : "",
                       base ? base : "",
                       d ? (json_is_true(d) ? "t" : "f") : "",
                       capture ? capture : ""};
    /* One statement: the first PATCH needs the key; later ones change what they
     * name and keep the rest (the row to insert carries the kept key too: its
     * checks run before the conflict is found). The capture method has its own
     * row (payment_settings, 0012), written by the same statement: it applies to
     * payments created from then on (authorized ones still wait for a capture). */
    PGresult *r = db_exec(
        c, "pay_account_set",
        "WITH ps AS (INSERT INTO payment_settings (store_id, capture_method) SELECT $1, $6 WHERE "
        "$6 <> '' AND ($2 <> '' OR EXISTS (SELECT 1 FROM stripe_accounts WHERE store_id = $1)) "
        "ON CONFLICT (store_id) DO UPDATE SET capture_method = EXCLUDED.capture_method, "
        "updated_at = now()) "
        "INSERT INTO stripe_accounts AS a (store_id, secret_key, webhook_secrets, api_base, "
        "is_default) SELECT $1, coalesce(nullif($2, ''), (SELECT secret_key FROM stripe_accounts "
        "WHERE store_id = $1)), coalesce(ARRAY(SELECT json_array_elements_text(nullif($3, "
        "'')::json)), '{}'), coalesce(nullif($4, ''), '" STRIPE_DEFAULT_BASE "'), "
        "coalesce(nullif($5, '')::boolean, false) WHERE $2 <> '' OR EXISTS (SELECT 1 FROM "
        "stripe_accounts WHERE store_id = $1) "
        "ON CONFLICT (store_id) DO UPDATE SET secret_key = coalesce(nullif($2, ''), "
        "a.secret_key), webhook_secrets = CASE WHEN $3 = '' THEN a.webhook_secrets ELSE "
        "EXCLUDED.webhook_secrets END, api_base = coalesce(nullif($4, ''), a.api_base), "
        "is_default = coalesce(nullif($5, '')::boolean, a.is_default), updated_at = now() "
        "RETURNING store_id",
        6, p);
    free(ws_text);
    shopd_free(key_sealed);
    if (db_result_rc(r) != SHOPD_OK)
        reply = api_db_error(ctx, r, "stripe account");
    else if (PQntuples(r) == 0)
        reply = api_fail_field(SHOPD_INVALID, "validation_failed", "the request has invalid fields",
                               "secret_key", "is required the first time");
    PQclear(r);
    db_release(c);
    return reply ? reply : h_account_get(ctx);
}

/* ---------------------------------------------------------------- webhooks */

static net_reply_t *
refused(const char *code, const char *message)
{
    return api_fail(SHOPD_BAD_REQUEST, code, message);
}

typedef struct wh_s {
    uint64_t store_id;
    const pay_event_t *ev;
    bool duplicate, applied;
} wh_t;

static shopd_rc_t
wh_body(db_conn_t *c, void *arg)
{
    wh_t *w = arg;
    const pay_event_t *ev = w->ev;
    char sid[24], oid[24] = "", amt[24];
    snprintf(sid, sizeof(sid), "%llu", (unsigned long long)w->store_id);
    if (ev->order_id)
        snprintf(oid, sizeof(oid), "%llu", (unsigned long long)ev->order_id);
    snprintf(amt, sizeof(amt), "%lld", (long long)ev->amount_refunded);
    const char *p[] = {
        sid, ev->id, ev->type, ev->ref, oid, pay_status_name(ev->status), ev->decline_code, amt};
    /* The event's order: by its metadata, else by the PaymentIntent's id. */
    PGresult *r = db_exec(
        c, "pay_wh_insert",
        "INSERT INTO webhook_events (store_id, provider, event_id, type, ref, order_id, status, "
        "decline_code, amount) SELECT $1, 'stripe', $2, $3, $4, coalesce((SELECT o.id FROM "
        "orders o WHERE o.store_id = $1 AND o.id = nullif($5, '')::bigint), (SELECT p.order_id "
        "FROM payments p WHERE p.store_id = $1 AND p.provider = 'stripe' AND p.provider_ref = $4 "
        "AND $4 <> '' LIMIT 1), nullif($5, '')::bigint), $6, $7, $8::bigint "
        "ON CONFLICT DO NOTHING RETURNING order_id",
        8, p);
    shopd_rc_t rc = db_result_rc(r);
    if (rc == SHOPD_OK && PQntuples(r) == 0)
        w->duplicate = true;
    uint64_t order_id = rc == SHOPD_OK && PQntuples(r) == 1 && !PQgetisnull(r, 0, 0)
                            ? strtoull(PQgetvalue(r, 0, 0), NULL, 10)
                            : 0;
    PQclear(r);
    if (rc != SHOPD_OK || w->duplicate || order_id == 0)
        return rc;
    return pay_stripe_apply_pending(c, w->store_id, order_id, &w->applied);
}

static net_reply_t *
h_webhook(api_ctx_t *ctx)
{
    const msg_env_t *env = ctx->env;
    if (env->sig.n == 0 || env->sig.n > 4096)
        return refused("invalid_signature", "the Stripe-Signature header is missing");
    if (env->body.n == 0)
        return refused("invalid_event", "the body is empty");
    db_conn_t *c = db_acquire(ctx->app->db, 2000);
    if (c == NULL)
        return api_unavailable("the database");
    pay_account_t acct;
    net_reply_t *reply = NULL;
    shopd_rc_t rc = pay_account_load(c, ctx->app->cfg, ctx->store_id, &pay_stripe_provider, &acct);
    if (rc == SHOPD_UNAVAILABLE) {
        reply = api_unavailable("the database");
        goto out;
    }
    if (rc != SHOPD_OK || acct.nsecrets == 0) {
        /* Said the same way as a bad signature: nothing to learn about the store. */
        reply = refused("invalid_signature", "the signature does not match");
        goto out;
    }
    char sig[4097];
    snprintf(sig, sizeof(sig), "%.*s", (int)env->sig.n, env->sig.p);
    pay_event_t ev;
    rc =
        pay_stripe_provider.webhook(&acct, env->body.p, env->body.n, sig, (int64_t)time(NULL), &ev);
    if (rc == SHOPD_FORBIDDEN) {
        log_warn("stripe webhook refused: bad or expired signature store=%llu",
                 (unsigned long long)ctx->store_id);
        reply = refused("invalid_signature", "the signature does not match");
        goto out;
    }
    if (rc != SHOPD_OK) {
        reply = refused("invalid_event", "the body is not a Stripe event");
        goto out;
    }
    if (ev.store_id != 0 && ev.store_id != ctx->store_id) {
        /* Signed with this store's secret but about another store's payment. */
        reply = api_json(SHOPD_OK, json_pack("{s:b, s:b}", "received", 1, "ignored", 1));
        goto out;
    }
    wh_t w = {.store_id = ctx->store_id, .ev = &ev};
    rc = db_tx(c, wh_body, &w);
    if (rc != SHOPD_OK) {
        /* Not acknowledged: Stripe delivers it again. */
        reply = rc == SHOPD_UNAVAILABLE ? api_unavailable("the database")
                                        : api_internal(ctx, "webhook not recorded");
        goto out;
    }
    reply = api_json(SHOPD_OK, json_pack("{s:b, s:b}", "received", 1, "duplicate", w.duplicate));
out:
    db_release(c);
    return reply;
}

/* ---------------------------------------------------------------- reconciliation */

/* A payment left pending (Stripe was down or slow, a webhook lost): asked
 * about again on the blocking pool. One never created is created again with
 * the key and parameters of the first try, so Stripe answers with the
 * PaymentIntent it made then, or makes the only one. */
typedef struct rec_s {
    pay_account_t acct;
    uint64_t order_id, number;
    int64_t amount;
    char currency[4], ref[128], key[96];
    shopd_rc_t rc;
    pay_result_t res;
} rec_t;

static void
rec_work(void *arg)
{
    rec_t *r = arg;
    if (r->ref[0]) {
        r->rc = pay_stripe_provider.retrieve(&r->acct, r->ref, &r->res);
        return;
    }
    pay_request_t req = {.account = &r->acct,
                         .store_id = r->acct.store_id,
                         .order_id = r->order_id,
                         .order_number = r->number,
                         .amount = r->amount,
                         .idempotency_key = r->key};
    snprintf(req.currency, sizeof(req.currency), "%s", r->currency);
    r->rc = pay_stripe_provider.create(&req, &r->res);
}

static shopd_rc_t
rec_record(db_conn_t *c, void *arg)
{
    rec_t *r = arg;
    return pay_stripe_record(c, r->acct.store_id, r->order_id, &r->res);
}

static net_reply_t *
rec_then(api_ctx_t *ctx, void *arg)
{
    rec_t *r = arg;
    if (r->rc == SHOPD_OK) {
        db_conn_t *c = db_acquire(ctx->app->db, 2000);
        if (c == NULL || db_tx(c, rec_record, r) != SHOPD_OK)
            log_warn("reconciled payment not recorded store=%llu order=%llu",
                     (unsigned long long)ctx->store_id, (unsigned long long)r->order_id);
        db_release(c);
    }
    shopd_free(r);
    return api_empty(SHOPD_NO_CONTENT); /* nobody waits for it */
}

/* On the store's actor: up to 20 stale payments, each marked as asked (so the
 * next sweeps leave it alone for a period) and sent to the blocking pool. */
static void
reconcile_store(api_ctx_t *ctx)
{
    db_conn_t *c = db_acquire(ctx->app->db, 2000);
    if (c == NULL)
        return;
    pay_account_t acct;
    if (pay_account_load(c, ctx->app->cfg, ctx->store_id, &pay_stripe_provider, &acct) !=
        SHOPD_OK) {
        db_release(c);
        return;
    }
    char sid[24], secs[24];
    snprintf(sid, sizeof(sid), "%llu", (unsigned long long)ctx->store_id);
    snprintf(secs, sizeof(secs), "%d", ctx->app->cfg->stripe_reconcile_s);
    const char *p[] = {sid, secs};
    PGresult *r = db_exec(
        c, "pay_reconcile",
        "WITH due AS (SELECT p.id FROM payments p JOIN orders o ON o.store_id = p.store_id AND "
        "o.id = p.order_id WHERE p.store_id = $1 AND p.provider = 'stripe' AND p.status IN "
        "('pending', 'requires_action') AND o.status = 'PENDING' AND p.idempotency_key IS NOT "
        "NULL AND p.updated_at < now() - make_interval(secs => $2::int) ORDER BY p.id LIMIT 20 "
        "FOR UPDATE OF p SKIP LOCKED) "
        "UPDATE payments p SET updated_at = now() FROM due, orders o WHERE p.store_id = $1 AND "
        "p.id = due.id AND o.store_id = $1 AND o.id = p.order_id RETURNING p.order_id, o.number, "
        "p.amount, p.currency, coalesce(p.provider_ref, ''), p.idempotency_key",
        2, p);
    if (db_result_rc(r) != SHOPD_OK)
        log_warn("stripe reconciliation: payments not read store=%s", sid);
    int n = db_result_rc(r) == SHOPD_OK ? PQntuples(r) : 0;
    for (int i = 0; i < n; i++) {
        rec_t *x = shopd_calloc(1, sizeof(*x));
        x->acct = acct;
        x->order_id = strtoull(PQgetvalue(r, i, 0), NULL, 10);
        x->number = strtoull(PQgetvalue(r, i, 1), NULL, 10);
        x->amount = strtoll(PQgetvalue(r, i, 2), NULL, 10);
        snprintf(x->currency, sizeof(x->currency), "%s", PQgetvalue(r, i, 3));
        snprintf(x->ref, sizeof(x->ref), "%s", PQgetvalue(r, i, 4));
        snprintf(x->key, sizeof(x->key), "%s", PQgetvalue(r, i, 5));
        net_reply_t *busy = api_blocking_then(ctx, rec_work, rec_then, shopd_free, x);
        if (busy != API_LATER) { /* the pool is full: the next sweep tries again */
            net_reply_free(busy);
            shopd_free(x);
        }
    }
    if (n)
        log_info("stripe reconciliation store=%s payments=%d", sid, n);
    PQclear(r);
    db_release(c);
}

static void
payment_tick(app_t *app)
{
    db_conn_t *c = db_acquire(app->db, 1000);
    if (c == NULL)
        return;
    char secs[24];
    snprintf(secs, sizeof(secs), "%d", app->cfg->stripe_reconcile_s);
    const char *p[] = {secs};
    PGresult *r = db_exec(c, "pay_reconcile_stores",
                          "SELECT DISTINCT store_id FROM payments WHERE provider = 'stripe' AND "
                          "status IN ('pending', 'requires_action') AND idempotency_key IS NOT "
                          "NULL AND updated_at < now() - make_interval(secs => $1::int) LIMIT 1000",
                          1, p);
    if (db_result_rc(r) != SHOPD_OK)
        log_warn("stripe reconciliation: stores not read");
    int rows = db_result_rc(r) == SHOPD_OK ? PQntuples(r) : 0;
    for (int i = 0; i < rows; i++)
        api_timer_send(app, strtoull(PQgetvalue(r, i, 0), NULL, 10), reconcile_store);
    PQclear(r);
    db_release(c);
}

/* Start-up: every account whose secrets are plain text (kept from before
 * sealing) or sealed under SHOPD_SECRETS_KEY_OLD is sealed again under the
 * current key. Each row is updated only if it still holds what was read, so a
 * PATCH from another process meanwhile is never overwritten. A value sealed
 * under a key this process does not have is fatal: the process was started
 * with the wrong SHOPD_SECRETS_KEY, and serving would fail every payment. */
static int
pay_reseal_rows(app_t *app, char *err, size_t errlen)
{
    const seal_keys_t *k = seal_process();
    if (k == NULL)
        return 0;
    db_conn_t *c = db_acquire(app->db, 5000);
    if (c == NULL) {
        log_warn("msg=\"stripe secrets not re-sealed: no database connection\"");
        return 0;
    }
    int status = 0, done = 0;
    char like[32];
    snprintf(like, sizeof(like), "seal1.%s.%%", seal_keys_kid(k));
    const char *p[] = {like};
    PGresult *r = db_exec(c, "pay_reseal_scan",
                          "SELECT store_id, secret_key, array_to_json(webhook_secrets) FROM "
                          "stripe_accounts WHERE secret_key NOT LIKE $1 OR EXISTS (SELECT 1 FROM "
                          "unnest(webhook_secrets) s WHERE s NOT LIKE $1)",
                          1, p);
    if (db_result_rc(r) != SHOPD_OK) {
        log_warn("msg=\"stripe secrets not re-sealed: scan failed\"");
        goto out;
    }
    for (int i = 0; i < PQntuples(r); i++) {
        uint64_t sid = strtoull(PQgetvalue(r, i, 0), NULL, 10);
        const char *key = PQgetvalue(r, i, 1), *hooks = PQgetvalue(r, i, 2);
        json_t *a = json_loads(hooks, 0, NULL);
        bool unknown = seal_is_sealed(key) && !seal_known(k, key);
        size_t j;
        json_t *e;
        json_array_foreach(a, j, e) unknown |= json_is_string(e) &&
                                               seal_is_sealed(json_string_value(e)) &&
                                               !seal_known(k, json_string_value(e));
        json_decref(a);
        if (unknown) {
            snprintf(err, errlen,
                     "the Stripe secrets of store %llu are sealed under a key that is neither "
                     "SHOPD_SECRETS_KEY (kid %s) nor SHOPD_SECRETS_KEY_OLD",
                     (unsigned long long)sid, seal_keys_kid(k));
            status = -1;
            goto out;
        }
        pay_account_t *acct = shopd_calloc(1, sizeof(*acct));
        char aad[96], *nkey = NULL, *nhooks = NULL;
        if (!open_secrets(sid, key, hooks, acct)) {
            log_error("msg=\"stripe account secrets do not open (changed in the database?)\" "
                      "store=%llu",
                      (unsigned long long)sid);
            goto next;
        }
        aad_key(aad, sizeof(aad), sid);
        nkey = seal_seal(k, acct->secret_key, aad);
        aad_hooks(aad, sizeof(aad), sid);
        json_t *sealed = json_array();
        for (size_t h = 0; h < acct->nsecrets; h++) {
            char *one = seal_seal(k, acct->webhook_secrets[h], aad);
            if (one)
                json_array_append_new(sealed, json_string(one));
            shopd_free(one);
        }
        if (nkey && json_array_size(sealed) == acct->nsecrets)
            nhooks = json_dumps(sealed, JSON_COMPACT);
        json_decref(sealed);
        if (nhooks) {
            const char *u[] = {PQgetvalue(r, i, 0), nkey, nhooks, key, hooks};
            PGresult *w =
                db_exec(c, "pay_reseal_row",
                        "UPDATE stripe_accounts SET secret_key = $2, webhook_secrets = "
                        "ARRAY(SELECT json_array_elements_text($3::json)) WHERE store_id = $1 AND "
                        "secret_key = $4 AND array_to_json(webhook_secrets)::text = $5",
                        5, u);
            if (db_result_rc(w) == SHOPD_OK && atoi(PQcmdTuples(w)) == 1)
                done++;
            PQclear(w);
        }
    next:
        free(nhooks);
        shopd_free(nkey);
        explicit_bzero(acct, sizeof(*acct));
        shopd_free(acct);
    }
    if (done)
        log_info("msg=\"stripe secrets sealed under the current key\" accounts=%d kid=%s", done,
                 seal_keys_kid(k));
out:
    PQclear(r);
    db_release(c);
    return status;
}

static int
payment_init(app_t *app, char *err, size_t errlen)
{
    if (pay_reseal_rows(app, err, errlen) != 0)
        return -1;
    /* Before any thread: curl's global state is not thread-safe to set up. */
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        snprintf(err, errlen, "libcurl could not be initialised");
        return -1;
    }
    return 0;
}

static void
payment_fini(app_t *app)
{
    (void)app;
    curl_global_cleanup();
}

/* One row per line: a table to read across. */
/* clang-format off */
static const api_route_t payment_routes[] = {
    /* method, path, name, access, run class, flags, inline handler, worker handler, batch handler, query */
    {"GET", "/api/v1/admin/payments/stripe", "payments.stripe_account_get", API_STORE_ADMIN, API_ANY, API_STORE, NULL, h_account_get, NULL, NULL},
    {"PATCH", "/api/v1/admin/payments/stripe", "payments.stripe_account_set", API_STORE_ADMIN, API_ORDERED, API_STORE | API_BODY, NULL, h_account_set, NULL, NULL},
    {"POST", "/api/v1/payments/stripe/webhook/:store", "payments.stripe_webhook", API_PUBLIC, API_ORDERED, API_STORE | API_SIGNED, NULL, h_webhook, NULL, NULL},
};
/* clang-format on */

const api_module_t payment_module = {
    .name = "payment",
    .routes = payment_routes,
    .nroutes = SHOPD_ARRAY_LEN(payment_routes),
    .init = payment_init,
    .fini = payment_fini,
    .tick = payment_tick,
};
