/*
 * libFuzzer driver: the Stripe-Signature header parser and verifier
 * (pay_stripe_verify) and the event parser (pay_stripe_parse_event), which
 * read bytes from whoever posts to the webhook route. Input: the header, a
 * '\n', then the payload. Two secrets are configured; a fixed clock.
 */
#include <stdlib.h>
#include <string.h>

#include "shopd/payment.h"

int
LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    char *s = malloc(size + 1);
    memcpy(s, data, size);
    s[size] = '\0';
    char *nl = memchr(s, '\n', size);
    const char *payload = nl ? nl + 1 : "";
    size_t plen = nl ? size - (size_t)(nl + 1 - s) : 0;
    if (nl)
        *nl = '\0';
    static const char *const secrets[] = {"whsec_fuzz_one", "whsec_fuzz_two"};
    shopd_rc_t rc = pay_stripe_verify(s, payload, plen, secrets, 2, 1733097600, 300);
    if (rc != SHOPD_OK && rc != SHOPD_FORBIDDEN)
        abort();
    pay_event_t ev;
    if (pay_stripe_parse_event(payload, plen, &ev) == SHOPD_OK &&
        (strnlen(ev.id, sizeof(ev.id)) == sizeof(ev.id) || ev.id[0] == '\0'))
        abort();
    free(s);
    return 0;
}
