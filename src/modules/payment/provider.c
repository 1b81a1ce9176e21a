/*
 * provider.c: the provider registry and the test provider (see payment.h for
 * its magic values). The test provider keeps no state: a payment's reference
 * encodes what it needs ("test_<store>_<order>_<status>"), so retrieve and
 * cancel answer the same in every process and after a restart.
 */
#include <stdio.h>
#include <string.h>

#include "shopd/payment.h"

const char *
pay_status_name(pay_status_t s)
{
    switch (s) {
    case PAY_PENDING:
        return "pending";
    case PAY_REQUIRES_ACTION:
        return "requires_action";
    case PAY_SUCCEEDED:
        return "succeeded";
    case PAY_FAILED:
        return "failed";
    case PAY_CANCELLED:
        return "cancelled";
    case PAY_AUTHORIZED:
        return "requires_capture";
    }
    return "pending";
}

static void
test_outcome(const char *email, pay_result_t *out)
{
    if (email && strstr(email, "+decline")) {
        out->status = PAY_FAILED;
        snprintf(out->decline_code, sizeof(out->decline_code), "card_declined");
        snprintf(out->message, sizeof(out->message), "the card was declined");
    } else if (email && strstr(email, "+funds")) {
        out->status = PAY_FAILED;
        snprintf(out->decline_code, sizeof(out->decline_code), "insufficient_funds");
        snprintf(out->message, sizeof(out->message), "the card has insufficient funds");
    } else if (email && strstr(email, "+pending")) {
        out->status = PAY_PENDING;
    } else if (email && strstr(email, "+action")) {
        out->status = PAY_REQUIRES_ACTION;
        snprintf(out->next_action, sizeof(out->next_action), "use_stripe_sdk");
    } else {
        out->status = PAY_SUCCEEDED;
    }
}

static shopd_rc_t
test_create(const pay_request_t *req, pay_result_t *out)
{
    memset(out, 0, sizeof(*out));
    test_outcome(req->email, out);
    snprintf(out->ref, sizeof(out->ref), "test_%llu_%llu_%s", (unsigned long long)req->store_id,
             (unsigned long long)req->order_id, pay_status_name(out->status));
    if (out->status == PAY_REQUIRES_ACTION || out->status == PAY_PENDING)
        snprintf(out->client_secret, sizeof(out->client_secret), "%s_secret", out->ref);
    return SHOPD_OK;
}

static shopd_rc_t
test_retrieve(const pay_account_t *acct, const char *ref, pay_result_t *out)
{
    (void)acct;
    memset(out, 0, sizeof(*out));
    snprintf(out->ref, sizeof(out->ref), "%s", ref);
    const char *tail = strrchr(ref, '_');
    out->status = PAY_PENDING;
    if (tail && strcmp(tail + 1, "succeeded") == 0)
        out->status = PAY_SUCCEEDED;
    else if (tail && strcmp(tail + 1, "failed") == 0)
        out->status = PAY_FAILED;
    return SHOPD_OK;
}

static shopd_rc_t
test_capture(const pay_account_t *acct, const char *ref, int64_t amount, const char *key,
             pay_result_t *out)
{
    (void)amount;
    (void)key;
    shopd_rc_t rc = test_retrieve(acct, ref, out);
    out->status = PAY_SUCCEEDED;
    return rc;
}

static shopd_rc_t
test_cancel(const pay_account_t *acct, const char *ref, pay_result_t *out)
{
    shopd_rc_t rc = test_retrieve(acct, ref, out);
    out->status = PAY_CANCELLED;
    return rc;
}

static shopd_rc_t
test_refund(const pay_account_t *acct, const char *ref, int64_t amount, const char *key,
            pay_refund_result_t *out)
{
    (void)acct;
    memset(out, 0, sizeof(*out));
    if (amount == 13) {
        snprintf(out->message, sizeof(out->message), "the test provider fails refunds of 13");
        return SHOPD_OK;
    }
    out->succeeded = true;
    snprintf(out->ref, sizeof(out->ref), "re_%s_%s", ref, key ? key : "");
    return SHOPD_OK;
}

const pay_provider_t pay_test_provider = {
    .name = "test",
    .create = test_create,
    .retrieve = test_retrieve,
    .capture = test_capture,
    .cancel = test_cancel,
    .refund = test_refund,
    .webhook = NULL,
    .blocking = false,
};

static const pay_provider_t *const providers[] = {&pay_test_provider, &pay_stripe_provider};

const pay_provider_t *
pay_provider_find(const char *name)
{
    for (size_t i = 0; i < SHOPD_ARRAY_LEN(providers); i++)
        if (name && strcmp(providers[i]->name, name) == 0)
            return providers[i];
    return NULL;
}
