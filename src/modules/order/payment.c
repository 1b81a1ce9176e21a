/*
 * payment.c: creating an order's payment with its provider after the
 * checkout committed, and recording what the provider said.
 *
 * The call happens outside every transaction (a provider that does I/O must
 * not hold row locks while it waits). Its idempotency key is derived from the
 * payment row ("<store>-<order>-<attempt>"), which committed before the call,
 * so a retry after a crash asks the provider for the same payment, never a
 * second one. The outcomes of a turn are recorded in one transaction.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "order_priv.h"
#include "shopd/idem.h"
#include "shopd/log.h"

typedef struct pay_batch_s {
    uint64_t store_id;
    order_pay_t *pays;
    size_t n;
} pay_batch_t;

const char *
order_pay_status(pay_status_t st)
{
    return st == PAY_SUCCEEDED         ? "paid"
           : st == PAY_FAILED          ? "failed"
           : st == PAY_REQUIRES_ACTION ? "requires_action"
           : st == PAY_CANCELLED       ? "voided"
           : st == PAY_AUTHORIZED      ? "authorized"
                                       : "pending";
}

/* All the outcomes of a turn in one statement, whatever their number: the
 * payments, their orders (PENDING -> PAID on success) and the events of the
 * orders paid. The rows are named by "id = ANY (ARRAY(SELECT ...))" as well as
 * by the join, so the planner probes the primary keys (see checkout.c). */
static shopd_rc_t
record(db_conn_t *c, void *arg)
{
    pay_batch_t *b = arg;
    char sid[24];
    snprintf(sid, sizeof(sid), "%llu", (unsigned long long)b->store_id);
    json_t *a = json_array();
    for (size_t i = 0; i < b->n; i++) {
        order_pay_t *p = &b->pays[i];
        if (p->rc != SHOPD_OK)
            continue; /* the provider was not reached: the payment stays pending */
        json_array_append_new(
            a, json_pack("{s:I, s:I, s:s, s:s, s:s, s:s}", "order_id", (json_int_t)p->order_id,
                         "payment_id", (json_int_t)p->payment_id, "status",
                         pay_status_name(p->result.status), "ref", p->result.ref, "decline",
                         p->result.decline_code, "order_pay", order_pay_status(p->result.status)));
    }
    shopd_rc_t rc = SHOPD_OK;
    if (json_array_size(a)) {
        char *js = json_dumps(a, JSON_COMPACT);
        const char *params[] = {sid, js};
        PGresult *r = db_exec(
            c, "pay_record_many",
            "WITH x AS (SELECT * FROM json_to_recordset($2::json) AS x (order_id bigint, "
            "payment_id bigint, status text, ref text, decline text, order_pay text)), "
            "p AS (UPDATE payments y SET status = x.status, provider_ref = nullif(x.ref, ''), "
            "decline_code = nullif(x.decline, ''), updated_at = now() FROM x WHERE y.store_id = "
            "$1 AND y.id = x.payment_id AND y.order_id = x.order_id AND y.id = ANY (ARRAY(SELECT "
            "payment_id FROM x))), "
            "o AS (UPDATE orders y SET payment_status = x.order_pay, status = CASE WHEN "
            "x.order_pay = 'paid' AND y.status = 'PENDING' THEN 'PAID' ELSE y.status END, "
            "paid_at = CASE WHEN x.order_pay = 'paid' AND y.status = 'PENDING' THEN now() ELSE "
            "y.paid_at END, updated_at = now() FROM x WHERE y.store_id = $1 AND y.id = x.order_id "
            "AND y.id = ANY (ARRAY(SELECT order_id FROM x)) RETURNING y.id, y.status, "
            "x.order_pay) "
            "INSERT INTO order_events (store_id, order_id, from_status, to_status, actor, note) "
            "SELECT $1, o.id, 'PENDING', 'PAID', 'provider', 'payment succeeded' FROM o WHERE "
            "o.status = 'PAID' AND o.order_pay = 'paid' ORDER BY o.id",
            2, params);
        rc = db_result_rc(r);
        PQclear(r);
        free(js);
    }
    json_decref(a);
    return rc;
}

void
order_pay_create(uint64_t store_id, order_pay_t *pays, size_t n)
{
    pay_account_t acct = {.store_id = store_id};
    for (size_t i = 0; i < n; i++) {
        order_pay_t *p = &pays[i];
        if (p->provider->blocking) {
            p->rc = SHOPD_AGAIN; /* order_pay_later's */
            continue;
        }
        char key[96];
        snprintf(key, sizeof(key), "shopd-%llu-%llu-1", (unsigned long long)store_id,
                 (unsigned long long)p->order_id);
        pay_request_t req = {.account = &acct,
                             .store_id = store_id,
                             .order_id = p->order_id,
                             .order_number = p->number,
                             .amount = p->amount,
                             .email = p->email,
                             .idempotency_key = key};
        snprintf(req.currency, sizeof(req.currency), "%s", p->currency);
        p->rc = p->provider->create(&req, &p->result);
        if (p->rc != SHOPD_OK)
            log_warn("payment not created store=%llu order=%llu provider=%s (stays pending)",
                     (unsigned long long)store_id, (unsigned long long)p->order_id,
                     p->provider->name);
    }
}

shopd_rc_t
order_pay_record(db_conn_t *c, uint64_t store_id, order_pay_t *pays, size_t n)
{
    pay_batch_t b = {store_id, pays, n};
    return record(c, &b);
}

shopd_rc_t
order_pay_apply(db_conn_t *c, uint64_t store_id, order_pay_t *pays, size_t n)
{
    order_pay_create(store_id, pays, n);
    size_t nsync = 0;
    for (size_t i = 0; i < n; i++)
        nsync += !pays[i].provider->blocking;
    if (nsync == 0)
        return SHOPD_OK;
    pay_batch_t b = {store_id, pays, n};
    shopd_rc_t rc = db_tx(c, record, &b);
    if (rc != SHOPD_OK)
        log_error("payment outcomes not recorded store=%llu n=%zu rc=%s",
                  (unsigned long long)store_id, n, shopd_rc_name(rc));
    return rc;
}

/* ---- a provider on the blocking pool ---- */

typedef struct pay_hop_s {
    pay_account_t acct;
    order_pay_t pay;
    char key[96];                    /* the provider's Idempotency-Key */
    char idem_key[IDEM_KEY_MAX + 1]; /* the client's, "" if none */
} pay_hop_t;

/* On a blocking lane: the call, holding no actor and no row lock. */
static void
hop_work(void *arg)
{
    pay_hop_t *h = arg;
    order_pay_t *p = &h->pay;
    pay_request_t req = {.account = &h->acct,
                         .store_id = h->acct.store_id,
                         .order_id = p->order_id,
                         .order_number = p->number,
                         .amount = p->amount,
                         .email = p->email,
                         .idempotency_key = h->key};
    snprintf(req.currency, sizeof(req.currency), "%s", p->currency);
    p->rc = p->provider->create(&req, &p->result);
    if (p->rc != SHOPD_OK)
        log_warn("payment not created store=%llu order=%llu provider=%s (stays pending)",
                 (unsigned long long)h->acct.store_id, (unsigned long long)p->order_id,
                 p->provider->name);
}

static void
hop_drop(void *arg)
{
    shopd_free(arg);
}

static shopd_rc_t
hop_record(db_conn_t *c, void *arg)
{
    pay_hop_t *h = arg;
    return pay_stripe_record(c, h->acct.store_id, h->pay.order_id, &h->pay.result);
}

typedef struct pay_save_s {
    uint64_t store_id;
    const char *key;
    net_reply_t *reply;
} pay_save_t;

static shopd_rc_t
hop_save(db_conn_t *c, void *arg)
{
    pay_save_t *s = arg;
    return idem_pg_save_reply(c, s->store_id, s->key, s->reply);
}

/* Back on the store's actor: record what the provider said, answer. */
static net_reply_t *
hop_then(api_ctx_t *ctx, void *arg)
{
    pay_hop_t *h = arg;
    net_reply_t *reply = NULL;
    db_conn_t *c = db_acquire(ctx->app->db, 2000);
    if (c == NULL) {
        /* The payment exists at the provider; its webhook or a retry records it. */
        shopd_free(h);
        return api_unavailable("the database");
    }
    if (h->pay.rc == SHOPD_OK && db_tx(c, hop_record, h) != SHOPD_OK) {
        log_error("payment outcome not recorded store=%llu order=%llu (the webhook settles it)",
                  (unsigned long long)h->acct.store_id, (unsigned long long)h->pay.order_id);
        h->pay.rc = SHOPD_UNAVAILABLE; /* answered as pending */
    }
    reply = order_checkout_answer(c, h->acct.store_id, h->pay.order_id, h->pay.number, NULL, 0,
                                  &h->pay);
    if (h->idem_key[0]) {
        pay_save_t sv = {h->acct.store_id, h->idem_key, reply};
        if (db_tx(c, hop_save, &sv) != SHOPD_OK)
            log_warn("final checkout answer not kept store=%llu order=%llu",
                     (unsigned long long)h->acct.store_id, (unsigned long long)h->pay.order_id);
    }
    db_release(c);
    shopd_free(h);
    return reply;
}

net_reply_t *
order_pay_later(api_ctx_t *ctx, db_conn_t *c, const order_pay_t *py, const char *idem_key)
{
    pay_hop_t *h = shopd_calloc(1, sizeof(*h));
    h->pay = *py;
    snprintf(h->idem_key, sizeof(h->idem_key), "%s", idem_key ? idem_key : "");
    snprintf(h->key, sizeof(h->key), "shopd-%llu-%llu-1", (unsigned long long)ctx->store_id,
             (unsigned long long)py->order_id);
    shopd_rc_t rc = pay_account_load(c, ctx->app->cfg, ctx->store_id, py->provider, &h->acct);
    /* The key is written (committed) before the call: a retry after a crash reads
     * it back and Stripe answers with the PaymentIntent it made the first time. */
    if (rc == SHOPD_OK) {
        char sid[24], pid[24];
        snprintf(sid, sizeof(sid), "%llu", (unsigned long long)ctx->store_id);
        snprintf(pid, sizeof(pid), "%llu", (unsigned long long)py->payment_id);
        const char *p[] = {sid, pid, h->key};
        PGresult *r = db_exec(c, "pay_key",
                              "UPDATE payments SET idempotency_key = $3 WHERE store_id = $1 AND "
                              "id = $2",
                              3, p);
        rc = db_result_rc(r);
        PQclear(r);
    }
    net_reply_t *busy = NULL;
    if (rc == SHOPD_OK) {
        net_reply_t *r = api_blocking_then(ctx, hop_work, hop_then, hop_drop, h);
        if (r == API_LATER)
            return r;
        busy = r; /* the blocking queue is full: h was not used */
    }
    log_warn("payment not started store=%llu order=%llu provider=%s (stays pending)",
             (unsigned long long)ctx->store_id, (unsigned long long)py->order_id,
             py->provider->name);
    net_reply_free(busy);
    h->pay.rc = SHOPD_UNAVAILABLE;
    net_reply_t *reply =
        order_checkout_answer(c, ctx->store_id, py->order_id, py->number, NULL, 0, &h->pay);
    if (h->idem_key[0]) {
        pay_save_t sv = {ctx->store_id, h->idem_key, reply};
        db_tx(c, hop_save, &sv);
    }
    shopd_free(h);
    return reply;
}

/* ---- metrics ---- */

static _Atomic uint64_t m_batches, m_checkouts, m_commit_us, m_max_batch;
static _Atomic uint64_t m_hist[6]; /* batch sizes: 1, 2-4, 5-16, 17-64, 65-256, more */

void
order_metrics_batch(size_t n, uint64_t commit_us)
{
    atomic_fetch_add_explicit(&m_batches, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&m_checkouts, n, memory_order_relaxed);
    atomic_fetch_add_explicit(&m_commit_us, commit_us, memory_order_relaxed);
    uint64_t max = atomic_load_explicit(&m_max_batch, memory_order_relaxed);
    while (n > max && !atomic_compare_exchange_weak_explicit(
                          &m_max_batch, &max, n, memory_order_relaxed, memory_order_relaxed))
        ;
    int b = n <= 1 ? 0 : n <= 4 ? 1 : n <= 16 ? 2 : n <= 64 ? 3 : n <= 256 ? 4 : 5;
    atomic_fetch_add_explicit(&m_hist[b], 1, memory_order_relaxed);
}

size_t
order_metrics(char *buf, size_t cap)
{
    static const char *const le[] = {"1", "4", "16", "64", "256", "+Inf"};
    uint64_t cum = 0;
    size_t n = 0;
    int w = snprintf(buf, cap,
                     "# HELP shopd_checkout_batch_size Checkouts committed per actor turn.\n"
                     "# TYPE shopd_checkout_batch_size histogram\n");
    n = w > 0 && (size_t)w < cap ? (size_t)w : cap;
    for (int i = 0; i < 6 && n < cap; i++) {
        cum += atomic_load_explicit(&m_hist[i], memory_order_relaxed);
        w = snprintf(buf + n, cap - n, "shopd_checkout_batch_size_bucket{le=\"%s\"} %llu\n", le[i],
                     (unsigned long long)cum);
        n += w > 0 && (size_t)w < cap - n ? (size_t)w : cap - n;
    }
    if (n < cap) {
        w = snprintf(
            buf + n, cap - n,
            "shopd_checkout_batch_size_sum %llu\nshopd_checkout_batch_size_count %llu\n"
            "# HELP shopd_checkout_batch_size_max Largest checkout batch so far.\n"
            "# TYPE shopd_checkout_batch_size_max gauge\nshopd_checkout_batch_size_max %llu\n"
            "# HELP shopd_checkout_commit_seconds_total Time in checkout batch transactions.\n"
            "# TYPE shopd_checkout_commit_seconds_total counter\n"
            "shopd_checkout_commit_seconds_total %.6f\n",
            (unsigned long long)atomic_load(&m_checkouts),
            (unsigned long long)atomic_load(&m_batches),
            (unsigned long long)atomic_load(&m_max_batch), (double)atomic_load(&m_commit_us) / 1e6);
        n += w > 0 && (size_t)w < cap - n ? (size_t)w : cap - n;
    }
    return n;
}
