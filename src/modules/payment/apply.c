/*
 * apply.c: what Stripe says about an order's payment, written into the
 * order: the answer to the checkout's own call (pay_stripe_record) and
 * webhook events (pay_stripe_apply_pending), inside the caller's transaction.
 *
 * The rule that makes duplicates and reordering harmless: a payment never
 * leaves a terminal state (succeeded, cancelled), an order's payment_status
 * never leaves paid, refunded, partially_refunded or voided by way of a
 * payment event, and PENDING -> PAID happens once (the statement that makes it
 * reads the order's status under its row lock). "processing" (pending) never
 * replaces a more precise state, and an authorization (requires_capture: a
 * manual-capture store's payment waiting for its capture) moves only to
 * succeeded (captured) or cancelled (the hold released or expired). A success
 * for an order that was cancelled meanwhile is not applied: it writes an
 * outbox row (payment.refund_due) so the money goes back instead of being kept
 * silently, unless the order had been paid (and so refunded by its cancel)
 * before: then it is a late copy of the success already recorded.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shopd/api.h"
#include "shopd/log.h"
#include "shopd/payment.h"

static const char *
order_pay_status(pay_status_t s)
{
    switch (s) {
    case PAY_SUCCEEDED:
        return "paid";
    case PAY_FAILED:
        return "failed";
    case PAY_REQUIRES_ACTION:
        return "requires_action";
    case PAY_CANCELLED:
        return "voided";
    case PAY_PENDING:
        return "pending";
    case PAY_AUTHORIZED:
        return "authorized";
    }
    return "pending";
}

/* A payment state for order_id: guarded as the file's comment says. */
static shopd_rc_t
apply_status(db_conn_t *c, const char *sid, const char *oid, pay_status_t st, const char *ref,
             const char *decline, const char *note)
{
    const char *p[] = {
        sid, oid, pay_status_name(st), ref ? ref : "", decline ? decline : "", order_pay_status(st),
        note};
    PGresult *r = db_exec(
        c, "pay_apply_status",
        "WITH prev AS (SELECT status, payment_status FROM orders WHERE store_id = $1 AND id = $2 "
        "FOR UPDATE), "
        "p AS (UPDATE payments SET status = $3, provider_ref = coalesce(provider_ref, "
        "nullif($4, '')), decline_code = CASE WHEN $3 = 'failed' THEN nullif($5, '') ELSE "
        "decline_code END, updated_at = now() WHERE store_id = $1 AND order_id = $2 AND "
        "provider = 'stripe' AND status NOT IN ('succeeded', 'cancelled') AND NOT ($3 = "
        "'pending' AND status <> 'pending') AND NOT (status = 'requires_capture' AND $3 NOT IN "
        "('succeeded', 'cancelled')) AND NOT ($3 = 'succeeded' AND (SELECT status FROM "
        "prev) = 'CANCELLED') AND (provider_ref IS NULL OR $4 = '' OR provider_ref = $4) "
        "RETURNING id), "
        "o AS (UPDATE orders SET payment_status = $6, "
        "status = CASE WHEN $6 = 'paid' AND status = 'PENDING' THEN 'PAID' ELSE status END, "
        "paid_at = CASE WHEN $6 = 'paid' AND status = 'PENDING' THEN now() ELSE paid_at END, "
        "updated_at = now() WHERE store_id = $1 AND id = $2 AND EXISTS (SELECT 1 FROM p) AND "
        "payment_status NOT IN ('paid', 'refunded', 'partially_refunded', 'voided') RETURNING "
        "status), "
        "ev AS (INSERT INTO order_events (store_id, order_id, from_status, to_status, actor, note) "
        "SELECT $1, $2, 'PENDING', 'PAID', 'provider', $7 FROM o, prev WHERE o.status = 'PAID' "
        "AND prev.status = 'PENDING') "
        "INSERT INTO outbox (store_id, kind, payload) SELECT $1, 'payment.refund_due', "
        "json_build_object('order_id', $2::bigint, 'provider', 'stripe', 'provider_ref', $4) "
        "FROM prev WHERE $3 = 'succeeded' AND prev.status = 'CANCELLED' AND prev.payment_status "
        "NOT "
        "IN ('paid', 'refunded', 'partially_refunded') AND NOT EXISTS (SELECT 1 "
        "FROM outbox x WHERE x.store_id = $1 AND x.kind = 'payment.refund_due' AND (x.payload ->> "
        "'order_id') = $2::text)",
        7, p);
    shopd_rc_t rc = db_result_rc(r);
    PQclear(r);
    return rc;
}

/* charge.refunded: amount is the charge's refunded total at Stripe. What is
 * beyond the order's refunded_total was refunded elsewhere (a pending refund of
 * ours that Stripe completed, or the Stripe dashboard): the pending refunds
 * are marked succeeded when they make up exactly the difference, else one
 * refund row records it. */
static shopd_rc_t
apply_refunded(db_conn_t *c, const char *sid, const char *oid, int64_t amount)
{
    char amt[24];
    snprintf(amt, sizeof(amt), "%lld", (long long)amount);
    const char *p[] = {sid, oid, amt};
    PGresult *r = db_exec(
        c, "pay_apply_refunded",
        "WITH o AS (SELECT refunded_total FROM orders WHERE store_id = $1 AND id = $2 FOR UPDATE), "
        "d AS (SELECT $3::bigint - o.refunded_total AS delta FROM o WHERE $3::bigint > "
        "o.refunded_total), "
        "pend AS (UPDATE refunds r SET status = 'succeeded', updated_at = now() FROM d WHERE "
        "r.store_id = $1 AND r.order_id = $2 AND r.status = 'pending' AND (SELECT sum(amount) "
        "FROM refunds x WHERE x.store_id = $1 AND x.order_id = $2 AND x.status = 'pending') = "
        "d.delta RETURNING r.id), "
        "ins AS (INSERT INTO refunds (store_id, order_id, payment_id, amount, reason, status) "
        "SELECT $1, $2, p.id, d.delta, 'refunded at Stripe', 'succeeded' FROM d, payments p "
        "WHERE p.store_id = $1 AND p.order_id = $2 AND p.status = 'succeeded' AND NOT EXISTS "
        "(SELECT 1 FROM pend) ORDER BY p.id DESC LIMIT 1 RETURNING id) "
        "UPDATE orders SET refunded_total = refunded_total + d.delta, payment_status = CASE WHEN "
        "refunded_total + d.delta >= order_charged(store_id, id) THEN 'refunded' ELSE "
        "'partially_refunded' END, "
        "updated_at = now() FROM d WHERE store_id = $1 AND id = $2 AND (EXISTS (SELECT 1 FROM "
        "pend) OR EXISTS (SELECT 1 FROM ins))",
        3, p);
    shopd_rc_t rc = db_result_rc(r);
    PQclear(r);
    return rc;
}

static pay_status_t
status_named(const char *s)
{
    static const pay_status_t all[] = {PAY_PENDING, PAY_REQUIRES_ACTION, PAY_SUCCEEDED,
                                       PAY_FAILED,  PAY_CANCELLED,       PAY_AUTHORIZED};
    for (size_t i = 0; i < SHOPD_ARRAY_LEN(all); i++)
        if (strcmp(pay_status_name(all[i]), s) == 0)
            return all[i];
    return PAY_PENDING;
}

shopd_rc_t
pay_stripe_apply_pending(db_conn_t *c, uint64_t store_id, uint64_t order_id, bool *applied)
{
    char sid[24], oid[24];
    snprintf(sid, sizeof(sid), "%llu", (unsigned long long)store_id);
    snprintf(oid, sizeof(oid), "%llu", (unsigned long long)order_id);
    if (applied)
        *applied = false;
    const char *p[] = {sid, oid};
    /* Only once the order exists (it may be another process's, not committed). */
    PGresult *r = db_exec(
        c, "pay_pending_events",
        "WITH u AS (UPDATE webhook_events e SET applied = true WHERE e.store_id = $1 AND "
        "e.provider = 'stripe' AND e.order_id = $2 AND NOT e.applied AND EXISTS (SELECT 1 FROM "
        "orders o WHERE o.store_id = $1 AND o.id = $2) RETURNING e.type, e.ref, e.status, "
        "e.decline_code, e.amount, e.received_at) SELECT * FROM u ORDER BY received_at",
        2, p);
    shopd_rc_t rc = db_result_rc(r);
    int n = rc == SHOPD_OK ? PQntuples(r) : 0;
    for (int i = 0; rc == SHOPD_OK && i < n; i++) {
        const char *type = PQgetvalue(r, i, 0), *ref = PQgetvalue(r, i, 1);
        if (strcmp(type, "charge.refunded") == 0) {
            rc = apply_refunded(c, sid, oid, strtoll(PQgetvalue(r, i, 4), NULL, 10));
        } else if (strncmp(type, "charge.dispute.", 15) == 0) {
            const char *q[] = {sid, oid};
            PGresult *d = db_exec(c, "pay_dispute",
                                  "UPDATE orders SET disputed = true, updated_at = now() WHERE "
                                  "store_id = $1 AND id = $2",
                                  2, q);
            rc = db_result_rc(d);
            PQclear(d);
        } else if (strncmp(type, "payment_intent.", 15) == 0) {
            rc = apply_status(c, sid, oid, status_named(PQgetvalue(r, i, 2)), ref,
                              PQgetvalue(r, i, 3), type);
        } /* other types: acknowledged, nothing to do */
    }
    if (applied)
        *applied = n > 0;
    PQclear(r);
    return rc;
}

shopd_rc_t
pay_stripe_record(db_conn_t *c, uint64_t store_id, uint64_t order_id, const pay_result_t *res)
{
    char sid[24], oid[24];
    snprintf(sid, sizeof(sid), "%llu", (unsigned long long)store_id);
    snprintf(oid, sizeof(oid), "%llu", (unsigned long long)order_id);
    shopd_rc_t rc =
        apply_status(c, sid, oid, res->status, res->ref, res->decline_code, "payment succeeded");
    if (rc == SHOPD_OK && res->ref[0]) {
        /* The PaymentIntent's id is known from now on, even when a webhook moved the
         * payment on first (the guarded update above then changed nothing). */
        const char *p[] = {sid, oid, res->ref};
        PGresult *r = db_exec(c, "pay_set_ref",
                              "UPDATE payments SET provider_ref = $3 WHERE store_id = $1 AND "
                              "order_id = $2 AND provider = 'stripe' AND provider_ref IS NULL",
                              3, p);
        rc = db_result_rc(r);
        PQclear(r);
    }
    if (rc == SHOPD_OK)
        rc = pay_stripe_apply_pending(c, store_id, order_id, NULL);
    return rc;
}
