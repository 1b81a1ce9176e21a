/*
 * payment.h: the payment provider interface. A store names its provider
 * (checkout's payment_provider, default "test"); the order module calls the
 * provider through this table only, so the Stripe provider (its own issue)
 * plugs in without a change here: create a payment for an order, confirm,
 * capture, cancel (void), refund, and parse + verify a webhook.
 *
 * Calls may be slow (an outbound HTTPS request): the order module makes them
 * after the checkout's transaction has committed, never while holding a row
 * lock, and a provider that does I/O is called from the blocking pool. The
 * test provider is synchronous and in-process.
 */
#ifndef SHOPD_PAYMENT_H
#define SHOPD_PAYMENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shopd/common.h"

/** What the provider says about a payment. */
typedef enum pay_status_e {
    PAY_PENDING = 0,     /**< created, the outcome comes later (a webhook, a retry) */
    PAY_REQUIRES_ACTION, /**< the customer must act (3-D Secure): see next_action */
    PAY_SUCCEEDED,
    PAY_FAILED, /**< declined: decline_code says why */
    PAY_CANCELLED,
} pay_status_t;

/** The name payments.status stores for s ("succeeded"...). */
const char *pay_status_name(pay_status_t s);

/** A payment to create for an order. */
typedef struct pay_request_s {
    uint64_t store_id;
    uint64_t order_id;
    uint64_t order_number;
    int64_t amount; /**< minor units */
    char currency[4];
    const char *email;
    /** Derived from (order, attempt) and stored before the call, so a retry after a
     *  crash reuses it and the provider never creates two payments. */
    const char *idempotency_key;
} pay_request_t;

typedef struct pay_result_s {
    pay_status_t status;
    char ref[128];           /**< the provider's id of the payment ("pi_..."), "" if none */
    char client_secret[160]; /**< for the client to continue (Stripe.js), "" if none */
    char decline_code[64];   /**< when FAILED: "card_declined", "insufficient_funds"... */
    char next_action[64];    /**< when REQUIRES_ACTION: what the client must do */
    char message[160];       /**< a human sentence for errors */
} pay_result_t;

typedef struct pay_refund_result_s {
    bool succeeded;
    bool pending;
    char ref[128];
    char message[160];
} pay_refund_result_t;

/** A webhook event, parsed and verified. */
typedef struct pay_event_s {
    char id[128];  /**< the provider's event id (deduplication) */
    char type[64]; /**< "payment_intent.succeeded"... */
    char ref[128]; /**< the payment it is about */
    pay_status_t status;
    uint64_t store_id, order_id; /**< from the payment's metadata, 0 if absent */
} pay_event_t;

typedef struct pay_provider_s {
    const char *name;
    /** Creates (and, where the provider can, confirms) the payment. SHOPD_OK with out
     *  filled (any status), or UNAVAILABLE (the provider could not be reached: the
     *  order stays PENDING and a retry with the same key settles it). */
    shopd_rc_t (*create)(const pay_request_t *req, pay_result_t *out);
    /** The payment's current state at the provider. */
    shopd_rc_t (*retrieve)(uint64_t store_id, const char *ref, pay_result_t *out);
    /** Captures an authorized payment (a provider that captures at once: OK). */
    shopd_rc_t (*capture)(uint64_t store_id, const char *ref, int64_t amount, pay_result_t *out);
    /** Voids an uncaptured payment or cancels a pending one. */
    shopd_rc_t (*cancel)(uint64_t store_id, const char *ref, pay_result_t *out);
    /** Refunds amount (minor units) of a captured payment; key as for create. */
    shopd_rc_t (*refund)(uint64_t store_id, const char *ref, int64_t amount,
                         const char *idempotency_key, pay_refund_result_t *out);
    /** Verifies a webhook's signature header against the store's secret (constant
     *  time) and parses it. SHOPD_OK, SHOPD_FORBIDDEN (bad signature, too old) or
     *  SHOPD_INVALID (not an event). NULL: the provider sends no webhooks. */
    shopd_rc_t (*webhook)(const char *payload, size_t len, const char *signature,
                          const char *secret, pay_event_t *out);
    /** True if calls do I/O (then they run on the blocking pool). */
    bool blocking;
} pay_provider_t;

/** The provider named name ("test"), or NULL. */
const pay_provider_t *pay_provider_find(const char *name);

/** The test provider, the default: synchronous and deterministic. By the order's
 *  e-mail: an address containing "+decline" is declined (decline_code
 *  "card_declined"), "+funds" declined with "insufficient_funds", "+pending"
 *  leaves the payment pending (settled later by the sweeper's timeout or a
 *  cancel), "+action" requires action; any other succeeds at once. Refunds
 *  succeed, except an amount of exactly 13 minor units, which fails. */
extern const pay_provider_t pay_test_provider;

#endif
