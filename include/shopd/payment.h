/*
 * payment.h: the payment provider interface. A store names its provider
 * (checkout's payment_provider, default "test"); the order module calls the
 * provider through this table only, so the Stripe provider (its own issue)
 * plugs in without a change here: create a payment for an order, confirm,
 * capture, cancel (void), refund, and parse + verify a webhook. Every call
 * gets the store's account (pay_account_t: keys, endpoint, timeouts), read on
 * the store's actor before the call, so a provider on the blocking pool needs
 * no database of its own.
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
    /** authorized, not captured (a manual-capture store): the order stays PENDING
     *  with payment_status "authorized" until a capture succeeds */
    PAY_AUTHORIZED,
} pay_status_t;

/** The name payments.status stores for s ("succeeded"...). */
const char *pay_status_name(pay_status_t s);

#define PAY_MAX_WEBHOOK_SECRETS 4

/** A store's account with a provider, as the provider's calls need it. Holds
 *  secrets: never logged, never sent to a client (the admin API shows their
 *  last 4 characters). Plain data, copied freely between threads. */
typedef struct pay_account_s {
    uint64_t store_id;
    char secret_key[256];
    char api_base[256]; /**< "https://api.stripe.com", or a fake's URL in tests */
    char webhook_secrets[PAY_MAX_WEBHOOK_SECRETS][256]; /**< several during rotation */
    size_t nsecrets;
    long timeout_ms, connect_ms;
    /** The store's payment_settings.capture_method is "manual": payments are only
     *  authorized at checkout and captured by POST /api/v1/orders/:id/capture. */
    bool manual_capture;
} pay_account_t;

/** A payment to create for an order. */
typedef struct pay_request_s {
    const pay_account_t *account;
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
    char ref[128]; /**< the payment it is about (a PaymentIntent id) */
    pay_status_t status;
    uint64_t store_id, order_id; /**< from the payment's metadata, 0 if absent */
    char decline_code[64];       /**< payment_failed: why */
    int64_t amount_refunded;     /**< charge.refunded: the charge's refunded total */
    int64_t created;             /**< the event's creation time (unix seconds) */
} pay_event_t;

typedef struct pay_provider_s {
    const char *name;
    /** Creates (and, where the provider can, confirms) the payment. SHOPD_OK with out
     *  filled (any status), or UNAVAILABLE (the provider could not be reached: the
     *  order stays PENDING and a retry with the same key settles it). */
    shopd_rc_t (*create)(const pay_request_t *req, pay_result_t *out);
    /** The payment's current state at the provider. */
    shopd_rc_t (*retrieve)(const pay_account_t *acct, const char *ref, pay_result_t *out);
    /** Captures amount (minor units, at most what was authorized) of an authorized
     *  payment, sending idempotency_key (stored before the call, so a retry never
     *  captures twice). out->status SUCCEEDED once captured. A provider that
     *  captures at once: OK. */
    shopd_rc_t (*capture)(const pay_account_t *acct, const char *ref, int64_t amount,
                          const char *idempotency_key, pay_result_t *out);
    /** Voids an uncaptured payment or cancels a pending one. */
    shopd_rc_t (*cancel)(const pay_account_t *acct, const char *ref, pay_result_t *out);
    /** Refunds amount (minor units) of a captured payment; key as for create. */
    shopd_rc_t (*refund)(const pay_account_t *acct, const char *ref, int64_t amount,
                         const char *idempotency_key, pay_refund_result_t *out);
    /** Verifies a webhook's signature header against the account's secrets
     *  (constant time, at unix time now) and parses it. SHOPD_OK, SHOPD_FORBIDDEN
     *  (bad signature, too old) or SHOPD_INVALID (not an event). NULL: the
     *  provider sends no webhooks. */
    shopd_rc_t (*webhook)(const pay_account_t *acct, const char *payload, size_t len,
                          const char *signature, int64_t now, pay_event_t *out);
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

/** Stripe (src/modules/payment/stripe.c): PaymentIntents over libcurl,
 *  form-encoded, to acct->api_base; blocking (call it from the blocking pool). */
extern const pay_provider_t pay_stripe_provider;

/** Stripe's signature tolerance: a webhook signed more than this many seconds
 *  before (or after) now is refused, as Stripe's own libraries do. */
#define PAY_STRIPE_TOLERANCE 300

/** Checks a Stripe-Signature header ("t=<unix>,v1=<hex>[,v1=<hex>...]", other
 *  schemes ignored) for payload: some v1 must be the hex HMAC-SHA256 of
 *  "<t>.<payload>" under one of secrets (compared in constant time), and t
 *  within tolerance seconds of now. SHOPD_OK or SHOPD_FORBIDDEN. Pure, any
 *  thread; never reads past header's NUL or payload + len. */
shopd_rc_t pay_stripe_verify(const char *header, const char *payload, size_t len,
                             const char *const *secrets, size_t nsecrets, int64_t now,
                             int64_t tolerance);

/** Parses a verified Stripe event (JSON text) into out. SHOPD_OK or
 *  SHOPD_INVALID. Pure. */
shopd_rc_t pay_stripe_parse_event(const char *payload, size_t len, pay_event_t *out);

typedef struct db_conn_s db_conn_t;
typedef struct cfg_s cfg_t;
/** Reads store_id's account with provider (its keys, endpoint; the call
 *  timeouts from cfg) into out. The test provider needs none (OK with only
 *  store_id set). SHOPD_OK, SHOPD_NOTFOUND (Stripe is not set up for the
 *  store) or SHOPD_UNAVAILABLE. The caller's thread (a store's actor). */
shopd_rc_t pay_account_load(db_conn_t *c, const cfg_t *cfg, uint64_t store_id,
                            const pay_provider_t *provider, pay_account_t *out);

/** The provider a checkout of store_id uses: name's ("test", "stripe"; Stripe
 *  only once the store has an account), or with name NULL the store's default
 *  (Stripe if its account says so, else the test provider). NULL: no such
 *  provider for this store. The store's actor. */
const pay_provider_t *pay_provider_for_store(db_conn_t *c, uint64_t store_id, const char *name);

/** Records the answer Stripe gave to the creation of order_id's payment, in the
 *  caller's transaction, never moving the payment or the order backwards (a
 *  webhook may have settled it first), then applies the webhook events kept
 *  for the order. OK or the statement's failure. */
shopd_rc_t pay_stripe_record(db_conn_t *c, uint64_t store_id, uint64_t order_id,
                             const pay_result_t *res);

/** Applies the webhook events kept unapplied for order_id (in the order they
 *  were received; duplicates were never kept), in the caller's transaction.
 *  *applied (may be NULL): some event was applied. */
shopd_rc_t pay_stripe_apply_pending(db_conn_t *c, uint64_t store_id, uint64_t order_id,
                                    bool *applied);

struct api_module_s;
/** The payment module: Stripe accounts, webhooks (src/modules/payment). */
extern const struct api_module_s payment_module;

#endif
