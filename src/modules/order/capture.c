/*
 * capture.c: POST /api/v1/orders/:id/capture: a store admin captures the
 * authorized payment of an order of a manual-capture store (payment_settings,
 * sql/0012), all of it or a part (Stripe releases the rest of the hold).
 *
 * Three steps, so the store's actor never waits on Stripe:
 *   1. on the actor, one transaction: the order is PENDING with its payment
 *      authorized (else 409 not_capturable), the amount at most what was
 *      authorized (else 422), and the capture's own Idempotency-Key
 *      ("shopd-<store>-<order>-capture-<payment>-<amount>") written before the
 *      call, so a retry, or a reconciliation after a crash, sends the same key
 *      and Stripe captures once;
 *   2. on the blocking pool: the capture at Stripe;
 *   3. on the actor again: the answer recorded like any other Stripe answer
 *      (pay_stripe_record: succeeded -> PAID with its event, never backwards,
 *      in order with the store's webhooks), and the order as the reply.
 * Stripe unreachable: 503, nothing moved; the admin retries (same key).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "order_priv.h"
#include "shopd/log.h"

typedef struct cap_hop_s {
    uint64_t store_id, order_id, payment_id;
    int64_t amount;
    char ref[128], key[128];
    pay_account_t acct;
    shopd_rc_t rc;
    pay_result_t res;
} cap_hop_t;

typedef struct cap_check_s {
    cap_hop_t *h;
    long long asked; /* 0: all of it */
    char status[16], payment_status[24], provider[32];
    int64_t authorized;
    bool found, have_payment;
} cap_check_t;

/* Step 1, in a transaction: reads the order and its latest payment under the
 * order's row lock and, when it may be captured, writes the capture key. */
static shopd_rc_t
cap_check(db_conn_t *c, void *arg)
{
    cap_check_t *k = arg;
    cap_hop_t *h = k->h;
    char sid[24], oid[24];
    snprintf(sid, sizeof(sid), "%llu", (unsigned long long)h->store_id);
    snprintf(oid, sizeof(oid), "%llu", (unsigned long long)h->order_id);
    const char *p[] = {sid, oid};
    PGresult *r = db_exec(c, "order_capture_read",
                          "SELECT o.status, o.payment_status, p.id, p.provider, "
                          "coalesce(p.provider_ref, ''), p.amount FROM orders o LEFT JOIN LATERAL "
                          "(SELECT * FROM payments x WHERE x.store_id = o.store_id AND x.order_id "
                          "= o.id ORDER BY x.id DESC LIMIT 1) p ON true WHERE o.store_id = $1 AND "
                          "o.id = $2 FOR UPDATE OF o",
                          2, p);
    shopd_rc_t rc = db_result_rc(r);
    if (rc != SHOPD_OK || PQntuples(r) == 0) {
        PQclear(r);
        return rc;
    }
    k->found = true;
    snprintf(k->status, sizeof(k->status), "%s", PQgetvalue(r, 0, 0));
    snprintf(k->payment_status, sizeof(k->payment_status), "%s", PQgetvalue(r, 0, 1));
    k->have_payment = !PQgetisnull(r, 0, 2);
    if (k->have_payment) {
        h->payment_id = strtoull(PQgetvalue(r, 0, 2), NULL, 10);
        snprintf(k->provider, sizeof(k->provider), "%s", PQgetvalue(r, 0, 3));
        snprintf(h->ref, sizeof(h->ref), "%s", PQgetvalue(r, 0, 4));
        k->authorized = strtoll(PQgetvalue(r, 0, 5), NULL, 10);
    }
    PQclear(r);
    if (strcmp(k->status, "PENDING") != 0 || strcmp(k->payment_status, "authorized") != 0 ||
        !k->have_payment || strcmp(k->provider, "stripe") != 0 || h->ref[0] == '\0')
        return SHOPD_CONFLICT;
    if (k->asked > k->authorized)
        return SHOPD_INVALID;
    h->amount = k->asked ? k->asked : k->authorized;
    snprintf(h->key, sizeof(h->key), "shopd-%llu-%llu-capture-%llu-%lld",
             (unsigned long long)h->store_id, (unsigned long long)h->order_id,
             (unsigned long long)h->payment_id, (long long)h->amount);
    char pid[24];
    snprintf(pid, sizeof(pid), "%llu", (unsigned long long)h->payment_id);
    const char *q[] = {sid, pid, h->key};
    r = db_exec(c, "order_capture_key",
                "UPDATE payments SET capture_key = $3, updated_at = now() WHERE store_id = $1 AND "
                "id = $2",
                3, q);
    rc = db_result_rc(r);
    PQclear(r);
    return rc;
}

/* Step 2, on the blocking pool. */
static void
cap_work(void *arg)
{
    cap_hop_t *h = arg;
    h->rc = pay_stripe_provider.capture(&h->acct, h->ref, h->amount, h->key, &h->res);
}

static shopd_rc_t
cap_record(db_conn_t *c, void *arg)
{
    cap_hop_t *h = arg;
    if (h->res.status == PAY_SUCCEEDED) {
        char sid[24], pid[24], amt[24];
        snprintf(sid, sizeof(sid), "%llu", (unsigned long long)h->store_id);
        snprintf(pid, sizeof(pid), "%llu", (unsigned long long)h->payment_id);
        snprintf(amt, sizeof(amt), "%lld", (long long)h->amount);
        const char *p[] = {sid, pid, amt};
        PGresult *r = db_exec(c, "order_capture_amount",
                              "UPDATE payments SET captured_amount = $3::bigint WHERE store_id = "
                              "$1 AND id = $2",
                              3, p);
        shopd_rc_t rc = db_result_rc(r);
        PQclear(r);
        if (rc != SHOPD_OK)
            return rc;
    }
    return pay_stripe_record(c, h->store_id, h->order_id, &h->res);
}

static net_reply_t *
cap_render(api_ctx_t *ctx, db_conn_t *c, uint64_t order_id)
{
    size_t len;
    shopd_rc_t rc;
    char *text = order_render(c, ctx->store_id, order_id, 0, &len, &rc);
    if (text == NULL)
        return api_internal(ctx, "captured order not readable");
    net_reply_t *r = api_raw_json(SHOPD_OK, text, len);
    free(text);
    return r;
}

/* Step 3, back on the store's actor. */
static net_reply_t *
cap_then(api_ctx_t *ctx, void *arg)
{
    cap_hop_t *h = arg;
    net_reply_t *reply = NULL;
    if (h->rc != SHOPD_OK) {
        log_warn("capture not done at Stripe store=%llu order=%llu (the admin retries)",
                 (unsigned long long)h->store_id, (unsigned long long)h->order_id);
        reply = api_unavailable("Stripe");
        goto out;
    }
    db_conn_t *c = db_acquire(ctx->app->db, 2000);
    if (c == NULL) {
        /* Captured at Stripe, not recorded here: payment_intent.succeeded records it. */
        reply = api_unavailable("the database");
        goto out;
    }
    if (db_tx(c, cap_record, h) != SHOPD_OK) {
        log_error("capture not recorded store=%llu order=%llu (the webhook records it)",
                  (unsigned long long)h->store_id, (unsigned long long)h->order_id);
        reply = api_internal(ctx, "capture not recorded");
    } else if (h->res.status != PAY_SUCCEEDED) {
        /* Stripe answered, but with something else than a capture (the hold
         * expired, or was cancelled): recorded above, said here. */
        char msg[160];
        snprintf(msg, sizeof(msg), "Stripe did not capture the payment (it is %s)",
                 pay_status_name(h->res.status));
        reply = api_fail(SHOPD_CONFLICT, "not_capturable", msg);
    } else {
        reply = cap_render(ctx, c, h->order_id);
    }
    db_release(c);
out:
    explicit_bzero(&h->acct, sizeof(h->acct));
    shopd_free(h);
    return reply;
}

static void
cap_drop(void *arg)
{
    cap_hop_t *h = arg;
    explicit_bzero(&h->acct, sizeof(h->acct));
    shopd_free(h);
}

net_reply_t *
order_h_capture(api_ctx_t *ctx)
{
    uint64_t id;
    size_t n;
    const char *ip = msg_param(ctx->env, "id", &n);
    if (!shopd_id_parse(ip, n, &id))
        return api_fail(SHOPD_NOTFOUND, "order_not_found", "no such order");
    api_val_t v = {0};
    static const char *const allowed[] = {"amount", NULL};
    api_val_only(&v, ctx->body, allowed);
    long long asked = 0;
    api_val_int(&v, ctx->body, "amount", 1, INT64_MAX / 2, &asked);
    if (v.n)
        return api_val_reply(&v);
    db_conn_t *c = db_acquire(ctx->app->db, 2000);
    if (c == NULL)
        return api_unavailable("the database");
    cap_hop_t *h = shopd_calloc(1, sizeof(*h));
    h->store_id = ctx->store_id;
    h->order_id = id;
    cap_check_t k = {.h = h, .asked = asked};
    net_reply_t *reply = NULL;
    shopd_rc_t rc = db_tx(c, cap_check, &k);
    if (rc == SHOPD_OK && !k.found) {
        reply = api_fail(SHOPD_NOTFOUND, "order_not_found", "no such order");
    } else if (rc == SHOPD_CONFLICT) {
        char msg[200];
        snprintf(msg, sizeof(msg),
                 "only a PENDING order with an authorized Stripe payment can be captured; this "
                 "one is %s with payment %s",
                 k.status, k.payment_status);
        reply = api_fail(SHOPD_CONFLICT, "not_capturable", msg);
    } else if (rc == SHOPD_INVALID) {
        char issue[96];
        snprintf(issue, sizeof(issue), "must be at most the authorized %lld",
                 (long long)k.authorized);
        reply = api_fail_field(SHOPD_INVALID, "validation_failed", "the request has invalid fields",
                               "amount", issue);
    } else if (rc != SHOPD_OK) {
        reply = rc == SHOPD_UNAVAILABLE ? api_unavailable("the database")
                                        : api_internal(ctx, "capture failed");
    } else if (pay_account_load(c, ctx->app->cfg, ctx->store_id, &pay_stripe_provider, &h->acct) !=
               SHOPD_OK) {
        reply = api_unavailable("the store's Stripe account");
    }
    db_release(c);
    if (reply) {
        cap_drop(h);
        return reply;
    }
    reply = api_blocking_then(ctx, cap_work, cap_then, cap_drop, h);
    if (reply != API_LATER)
        cap_drop(h); /* the pool is full: answered busy, nothing asked of Stripe */
    return reply;
}
