/*
 * order_priv.h: what the order module's files share: checkout.c (the batched
 * checkout), orders.c (reads, transitions, cancel, refunds, the sweeper),
 * payment.c (calling the provider and recording its answer), capture.c (the
 * capture of a manual-capture store's authorized payment), module.c.
 */
#ifndef SHOPD_ORDER_PRIV_H
#define SHOPD_ORDER_PRIV_H

#include "shopd/cart.h"
#include "shopd/order.h"
#include "shopd/payment.h"

/** The JSON answers of orders ids[0..n) of a store, as they stand, in one
 *  statement: out[i] (malloc'd, caller frees; its length in lens[i]) for each
 *  one found, NULL for the others (and, when user_id is not 0, for another
 *  user's). *rc is the statement's result (UNAVAILABLE, ERR) or OK. The object:
 *  totals, addresses, items, events, payments, refunds, compact. */
void order_render_many(db_conn_t *c, uint64_t store_id, const uint64_t *ids, size_t n,
                       uint64_t user_id, char **out, size_t *lens, shopd_rc_t *rc);

/** The JSON text of order id (malloc'd, caller frees; *len set), or NULL with *rc
 *  (NOTFOUND, UNAVAILABLE, ERR). When user_id is not 0 the order must be that
 *  user's (else NOTFOUND). */
char *order_render(db_conn_t *c, uint64_t store_id, uint64_t order_id, uint64_t user_id,
                   size_t *len, shopd_rc_t *rc);

/** One payment to create after a checkout's commit, and its outcome. */
typedef struct order_pay_s {
    uint64_t order_id, payment_id, number;
    int64_t amount;
    char currency[4];
    char email[256];
    const pay_provider_t *provider;
    pay_result_t result;
    shopd_rc_t rc; /**< the provider call's */
} order_pay_t;

/** Creates each payment with its provider (the test provider is in-process) and
 *  records the outcomes in one transaction: payments rows, orders' payment_status,
 *  PENDING -> PAID with an event for the payments that succeeded. Payments of a
 *  blocking provider (Stripe) are skipped: order_pay_later creates them. */
shopd_rc_t order_pay_apply(db_conn_t *c, uint64_t store_id, order_pay_t *pays, size_t n);
/** The two halves of order_pay_apply: the provider calls (no transaction), and the
 *  statements recording their outcomes inside the caller's open transaction. A
 *  provider without I/O (payment.h: blocking false) is called from inside the
 *  checkout's own transaction, so its outcome commits with the order. */
void order_pay_create(uint64_t store_id, order_pay_t *pays, size_t n);
shopd_rc_t order_pay_record(db_conn_t *c, uint64_t store_id, order_pay_t *pays, size_t n);
/** What orders.payment_status becomes for a provider's answer ("paid", "failed",
 *  "requires_action", "voided", "authorized", "pending"). */
const char *order_pay_status(pay_status_t st);

/** For a blocking provider: writes the payment's provider idempotency key, then
 *  creates the payment on the blocking pool and, back on the store's actor,
 *  records the outcome (pay_stripe_record), answers the checkout with the order
 *  (as order_checkout_answer) and keeps that answer under the client's
 *  Idempotency-Key idem_key (NULL: none). Returns API_LATER, or the answer now
 *  (the payment left pending: the account could not be read, the pool is full).
 *  The store's actor. */
net_reply_t *order_pay_later(api_ctx_t *ctx, db_conn_t *c, const order_pay_t *py,
                             const char *idem_key);

/** A checkout's answer: the order (rendered, or read when rendered is NULL) with
 *  its payment's state; 402 payment_declined when py says it failed. */
net_reply_t *order_checkout_answer(db_conn_t *c, uint64_t store_id, uint64_t order_id,
                                   uint64_t number, const char *rendered, size_t rendered_len,
                                   const order_pay_t *py);

/** Cancels order id inside the caller's transaction: status CANCELLED with an event
 *  (actor "customer", "admin" or "system"), the stock of its items that was not
 *  restocked yet returned through the ledger, its discount use released. *paid is
 *  set when the payment had been captured (the caller refunds it after commit),
 *  *payment_ref to the payment's provider ref ("" if none) and *provider.
 *  OK, NOTFOUND, or CONFLICT with *from set (the state does not allow it). */
shopd_rc_t order_cancel_tx(db_conn_t *c, uint64_t store_id, uint64_t order_id,
                           uint64_t actor_user_id, const char *actor, const char *note,
                           bool only_pending, int *from, bool *paid, char *provider, size_t plen,
                           char *payment_ref, size_t rlen, int64_t *refundable);

/** Checkout counters for /metrics. */
void order_metrics_batch(size_t n, uint64_t commit_us);
size_t order_metrics(char *buf, size_t cap);

net_reply_t *order_h_shipping_rates(api_ctx_t *ctx);
void order_b_checkout(api_ctx_t *ctxs, size_t n, net_reply_t **replies);
net_reply_t *order_h_list(api_ctx_t *ctx);
net_reply_t *order_h_get(api_ctx_t *ctx);
/** POST /api/v1/orders/:id/capture (capture.c). */
net_reply_t *order_h_capture(api_ctx_t *ctx);
net_reply_t *order_h_transition(api_ctx_t *ctx);
net_reply_t *order_h_cancel(api_ctx_t *ctx);
net_reply_t *order_h_refund(api_ctx_t *ctx);
void order_tick(app_t *app);

#endif
