/*
 * stripe.c: the Stripe provider (payment.h): PaymentIntents, refunds and
 * webhook signatures.
 *
 * Calls are form-encoded POSTs and GETs over libcurl to the account's
 * api_base, made on the blocking pool only (the provider is `blocking`): one
 * curl handle per thread, kept between calls so its connection is reused
 * (keep-alive), freed when the thread ends. TLS verification is always on; redirects are never
 * followed; a call has a connect and a total timeout (SHOPD_STRIPE_*_MS) and an answer larger than
 * STRIPE_MAX_BODY is abandoned. Anything that is not a definite answer from Stripe (no connection,
 * a timeout, a 5xx, a 409 for a request in flight with the same key, malformed JSON, a body too
 * large) is SHOPD_UNAVAILABLE: the payment stays pending and a retry with the same Idempotency-Key,
 * or a webhook, settles it. Stripe answers a retried key with the first answer, so a retry never
 * creates a second PaymentIntent.
 *
 * Secrets (the secret key, webhook secrets) are never logged: log lines name
 * the store, the path and the HTTP status only.
 */
#include <ctype.h>
#include <curl/curl.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shopd/log.h"
#include "shopd/xfer.h"
#include "shopd/payment.h"

#define STRIPE_MAX_BODY (1024 * 1024) /* a PaymentIntent is a few KiB */
#define STRIPE_MAX_SIG_HEADER 4096
#define STRIPE_MAX_V1 8

/* ---------------------------------------------------------------- HTTP */

typedef struct buf_s {
    char *p;
    size_t n, cap;
    bool too_big;
} buf_t;

static size_t
on_body(char *data, size_t size, size_t nmemb, void *ud)
{
    buf_t *b = ud;
    size_t n = size * nmemb;
    if (b->n + n > STRIPE_MAX_BODY) {
        b->too_big = true;
        return 0; /* curl stops with CURLE_WRITE_ERROR */
    }
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + n + 1)
            cap *= 2;
        b->p = shopd_realloc(b->p, cap);
        b->cap = cap;
    }
    memcpy(b->p + b->n, data, n);
    b->n += n;
    b->p[b->n] = '\0';
    return n;
}

/* One call. SHOPD_OK with *status and *doc (the parsed JSON answer, caller
 * decrefs) when Stripe answered with JSON, SHOPD_UNAVAILABLE otherwise. */
static shopd_rc_t
stripe_call(const pay_account_t *a, const char *method, const char *path, const char *form,
            const char *idem_key, long *status, json_t **doc)
{
    *doc = NULL;
    *status = 0;
    CURL *h = xfer_handle(XFER_STRIPE);
    if (h == NULL)
        return SHOPD_UNAVAILABLE;
    char url[512], auth[300], idem[320];
    snprintf(url, sizeof(url), "%s%s", a->api_base, path);
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", a->secret_key);
    struct curl_slist *hdr = curl_slist_append(NULL, auth);
    hdr = curl_slist_append(hdr, "Stripe-Version: 2024-06-20");
    hdr = curl_slist_append(hdr, "Expect:");
    if (idem_key && idem_key[0]) {
        snprintf(idem, sizeof(idem), "Idempotency-Key: %s", idem_key);
        hdr = curl_slist_append(hdr, idem);
    }
    buf_t b = {0};
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, a->timeout_ms > 0 ? a->timeout_ms : 15000L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, a->connect_ms > 0 ? a->connect_ms : 3000L);
    curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)STRIPE_MAX_BODY);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "shopd");
    if (strcmp(method, "POST") == 0) {
        curl_easy_setopt(h, CURLOPT_POST, 1L);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, form ? form : "");
    }
    CURLcode cc = curl_easy_perform(h);
    curl_slist_free_all(hdr);
    shopd_rc_t rc = SHOPD_UNAVAILABLE;
    if (cc != CURLE_OK) {
        log_warn("stripe %s %s: %s%s store=%llu", method, path, curl_easy_strerror(cc),
                 b.too_big ? " (answer too large)" : "", (unsigned long long)a->store_id);
        goto done;
    }
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, status);
    json_t *j = b.p ? json_loadb(b.p, b.n, 0, NULL) : NULL;
    if (!json_is_object(j)) {
        log_warn("stripe %s %s: HTTP %ld without a JSON object store=%llu", method, path, *status,
                 (unsigned long long)a->store_id);
        json_decref(j);
        goto done;
    }
    /* A 5xx or a 409 (a request with this key still in flight at Stripe) is
     * no answer: retry later with the same key. */
    if (*status >= 500 || *status == 409 || *status == 429) {
        log_warn("stripe %s %s: HTTP %ld store=%llu (retried later)", method, path, *status,
                 (unsigned long long)a->store_id);
        json_decref(j);
        goto done;
    }
    *doc = j;
    rc = SHOPD_OK;
done:
    shopd_free(b.p);
    return rc;
}

static const char *
jstr(json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "";
}

static void
copy(char *dst, size_t n, const char *src)
{
    snprintf(dst, n, "%s", src ? src : "");
}

/* A PaymentIntent's state as the order module sees it. */
static void
pi_result(json_t *pi, pay_result_t *out)
{
    const char *st = jstr(pi, "status");
    copy(out->ref, sizeof(out->ref), jstr(pi, "id"));
    copy(out->client_secret, sizeof(out->client_secret), jstr(pi, "client_secret"));
    if (strcmp(st, "succeeded") == 0) {
        out->status = PAY_SUCCEEDED;
        out->client_secret[0] = '\0'; /* nothing left for the client to do */
    } else if (strcmp(st, "canceled") == 0) {
        out->status = PAY_CANCELLED;
    } else if (strcmp(st, "requires_action") == 0) {
        out->status = PAY_REQUIRES_ACTION;
        json_t *na = json_object_get(pi, "next_action");
        copy(out->next_action, sizeof(out->next_action),
             jstr(na, "type")[0] ? jstr(na, "type") : "use_stripe_sdk");
    } else if (strcmp(st, "requires_payment_method") == 0 ||
               strcmp(st, "requires_confirmation") == 0) {
        json_t *err = json_object_get(pi, "last_payment_error");
        if (json_is_object(err)) { /* a failed attempt returns here */
            out->status = PAY_FAILED;
            copy(out->decline_code, sizeof(out->decline_code),
                 jstr(err, "decline_code")[0] ? jstr(err, "decline_code") : jstr(err, "code"));
            copy(out->message, sizeof(out->message), jstr(err, "message"));
        } else { /* the client confirms with Stripe.js and the client_secret */
            out->status = PAY_REQUIRES_ACTION;
            copy(out->next_action, sizeof(out->next_action), "confirm_payment");
        }
    } else if (strcmp(st, "requires_capture") == 0) {
        /* Authorized (capture_method=manual): nothing left for the client. */
        out->status = PAY_AUTHORIZED;
        out->client_secret[0] = '\0';
    } else { /* processing: the outcome comes by webhook */
        out->status = PAY_PENDING;
    }
}

/* A 4xx with Stripe's error object: a decline (card_error) is an answer; the
 * rest (a bad key, a parameter Stripe refused) is logged and left pending. */
static shopd_rc_t
error_result(const pay_account_t *a, const char *what, long status, json_t *doc, pay_result_t *out)
{
    json_t *err = json_object_get(doc, "error");
    if (strcmp(jstr(err, "type"), "card_error") == 0 || status == 402) {
        out->status = PAY_FAILED;
        const char *dc = jstr(err, "decline_code");
        copy(out->decline_code, sizeof(out->decline_code),
             dc[0] ? dc : (jstr(err, "code")[0] ? jstr(err, "code") : "card_declined"));
        copy(out->message, sizeof(out->message),
             jstr(err, "message")[0] ? jstr(err, "message") : "the card was declined");
        json_t *pi = json_object_get(err, "payment_intent");
        if (json_is_object(pi))
            copy(out->ref, sizeof(out->ref), jstr(pi, "id"));
        return SHOPD_OK;
    }
    log_error("stripe %s refused: HTTP %ld type=%s code=%s store=%llu", what, status,
              jstr(err, "type"), jstr(err, "code"), (unsigned long long)a->store_id);
    return SHOPD_UNAVAILABLE;
}

/* Appends k=v (v percent-encoded) to a form of cap bytes. */
static void
form_add(char *f, size_t cap, const char *k, const char *v)
{
    size_t n = strlen(f);
    int w = snprintf(f + n, cap - n, "%s%s=", n ? "&" : "", k);
    if (w < 0 || (size_t)w >= cap - n)
        return;
    n += (size_t)w;
    for (const unsigned char *p = (const unsigned char *)v; *p && n + 4 < cap; p++) {
        if (isalnum(*p) || *p == '-' || *p == '_' || *p == '.' || *p == '~')
            f[n++] = (char)*p;
        else
            n += (size_t)snprintf(f + n, cap - n, "%%%02X", *p);
    }
    f[n] = '\0';
}

static shopd_rc_t
stripe_create(const pay_request_t *req, pay_result_t *out)
{
    memset(out, 0, sizeof(*out));
    const pay_account_t *a = req->account;
    if (a == NULL || a->secret_key[0] == '\0')
        return SHOPD_UNAVAILABLE;
    char form[1024] = "", num[32], cur[4];
    snprintf(num, sizeof(num), "%lld", (long long)req->amount);
    form_add(form, sizeof(form), "amount", num);
    for (int i = 0; i < 3 && req->currency[i]; i++)
        cur[i] = (char)tolower((unsigned char)req->currency[i]);
    cur[3] = '\0';
    form_add(form, sizeof(form), "currency", cur);
    form_add(form, sizeof(form), "automatic_payment_methods[enabled]", "true");
    if (a->manual_capture)
        form_add(form, sizeof(form), "capture_method", "manual");
    snprintf(num, sizeof(num), "%llu", (unsigned long long)req->store_id);
    form_add(form, sizeof(form), "metadata[store_id]", num);
    snprintf(num, sizeof(num), "%llu", (unsigned long long)req->order_id);
    form_add(form, sizeof(form), "metadata[order_id]", num);
    snprintf(num, sizeof(num), "%llu", (unsigned long long)req->order_number);
    form_add(form, sizeof(form), "metadata[order_number]", num);
    long status;
    json_t *doc;
    shopd_rc_t rc =
        stripe_call(a, "POST", "/v1/payment_intents", form, req->idempotency_key, &status, &doc);
    if (rc != SHOPD_OK)
        return rc;
    if (status / 100 == 2)
        pi_result(doc, out);
    else
        rc = error_result(a, "payment_intents.create", status, doc, out);
    json_decref(doc);
    return rc;
}

/* A call about one PaymentIntent (retrieve, capture, cancel). */
static shopd_rc_t
pi_call(const pay_account_t *a, const char *method, const char *ref, const char *verb,
        const char *form, const char *idem_key, pay_result_t *out)
{
    memset(out, 0, sizeof(*out));
    if (a == NULL || ref == NULL || ref[0] == '\0' || strpbrk(ref, "/?#&% ") != NULL)
        return SHOPD_INVALID;
    char path[256];
    snprintf(path, sizeof(path), "/v1/payment_intents/%s%s", ref, verb);
    long status;
    json_t *doc;
    shopd_rc_t rc = stripe_call(a, method, path, form, idem_key, &status, &doc);
    if (rc != SHOPD_OK)
        return rc;
    if (status / 100 == 2)
        pi_result(doc, out);
    else
        rc = error_result(a, path, status, doc, out);
    json_decref(doc);
    return rc;
}

static shopd_rc_t
stripe_retrieve(const pay_account_t *a, const char *ref, pay_result_t *out)
{
    return pi_call(a, "GET", ref, "", NULL, NULL, out);
}

static shopd_rc_t
stripe_capture(const pay_account_t *a, const char *ref, int64_t amount, const char *key,
               pay_result_t *out)
{
    char form[64] = "", num[32];
    snprintf(num, sizeof(num), "%lld", (long long)amount);
    form_add(form, sizeof(form), "amount_to_capture", num);
    return pi_call(a, "POST", ref, "/capture", form, key, out);
}

static shopd_rc_t
stripe_cancel(const pay_account_t *a, const char *ref, pay_result_t *out)
{
    return pi_call(a, "POST", ref, "/cancel", "", NULL, out);
}

static shopd_rc_t
stripe_refund(const pay_account_t *a, const char *ref, int64_t amount, const char *key,
              pay_refund_result_t *out)
{
    memset(out, 0, sizeof(*out));
    if (a == NULL || ref == NULL || ref[0] == '\0')
        return SHOPD_INVALID;
    char form[512] = "", num[32];
    form_add(form, sizeof(form), "payment_intent", ref);
    snprintf(num, sizeof(num), "%lld", (long long)amount);
    form_add(form, sizeof(form), "amount", num);
    long status;
    json_t *doc;
    shopd_rc_t rc = stripe_call(a, "POST", "/v1/refunds", form, key, &status, &doc);
    if (rc != SHOPD_OK) {
        out->pending = true;
        return rc;
    }
    if (status / 100 == 2) {
        const char *st = jstr(doc, "status");
        copy(out->ref, sizeof(out->ref), jstr(doc, "id"));
        out->succeeded = strcmp(st, "succeeded") == 0;
        out->pending = strcmp(st, "pending") == 0 || strcmp(st, "requires_action") == 0;
        if (!out->succeeded && !out->pending)
            copy(out->message, sizeof(out->message), "Stripe refused the refund");
    } else {
        json_t *err = json_object_get(doc, "error");
        copy(out->message, sizeof(out->message),
             jstr(err, "message")[0] ? jstr(err, "message") : "Stripe refused the refund");
        log_warn("stripe refund refused: HTTP %ld code=%s store=%llu", status, jstr(err, "code"),
                 (unsigned long long)a->store_id);
    }
    json_decref(doc);
    return SHOPD_OK;
}

/* ---------------------------------------------------------------- webhooks */

static int
hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

shopd_rc_t
pay_stripe_verify(const char *header, const char *payload, size_t len, const char *const *secrets,
                  size_t nsecrets, int64_t now, int64_t tolerance)
{
    if (header == NULL || payload == NULL || nsecrets == 0)
        return SHOPD_FORBIDDEN;
    size_t hlen = strnlen(header, STRIPE_MAX_SIG_HEADER + 1);
    if (hlen == 0 || hlen > STRIPE_MAX_SIG_HEADER)
        return SHOPD_FORBIDDEN;
    /* Split into items: t once, up to STRIPE_MAX_V1 v1 signatures (32 bytes each). */
    int64_t t = -1;
    char tstr[24] = "";
    unsigned char v1[STRIPE_MAX_V1][32];
    size_t nv1 = 0;
    const char *p = header, *end = header + hlen;
    while (p < end) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *item_end = comma ? comma : end;
        while (p < item_end && (*p == ' ' || *p == '\t'))
            p++;
        const char *eq = memchr(p, '=', (size_t)(item_end - p));
        if (eq != NULL) {
            size_t klen = (size_t)(eq - p);
            const char *v = eq + 1;
            size_t vlen = (size_t)(item_end - v);
            while (vlen && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
                vlen--;
            if (klen == 1 && p[0] == 't' && t < 0) {
                if (vlen == 0 || vlen > 15)
                    return SHOPD_FORBIDDEN;
                int64_t x = 0;
                for (size_t i = 0; i < vlen; i++) {
                    if (v[i] < '0' || v[i] > '9')
                        return SHOPD_FORBIDDEN;
                    x = x * 10 + (v[i] - '0');
                }
                t = x;
                memcpy(tstr, v, vlen);
                tstr[vlen] = '\0';
            } else if (klen == 2 && p[0] == 'v' && p[1] == '1' && vlen == 64 &&
                       nv1 < STRIPE_MAX_V1) {
                bool ok = true;
                for (size_t i = 0; i < 32 && ok; i++) {
                    int hi = hexval((unsigned char)v[2 * i]),
                        lo = hexval((unsigned char)v[2 * i + 1]);
                    ok = hi >= 0 && lo >= 0;
                    if (ok) /* hi is -1 for a non-hex digit: never shifted */
                        v1[nv1][i] = (unsigned char)((unsigned)hi << 4 | (unsigned)lo);
                }
                if (ok)
                    nv1++;
            } /* v0 and unknown schemes: ignored, as Stripe's libraries do */
        }
        p = comma ? comma + 1 : end;
    }
    if (t < 0 || nv1 == 0)
        return SHOPD_FORBIDDEN;
    if (t < now - tolerance || t > now + tolerance)
        return SHOPD_FORBIDDEN;
    bool match = false;
    size_t tl = strlen(tstr);
    unsigned char *signed_payload = shopd_malloc(tl + 1 + len + 1);
    memcpy(signed_payload, tstr, tl);
    signed_payload[tl] = '.';
    memcpy(signed_payload + tl + 1, payload, len);
    for (size_t s = 0; s < nsecrets; s++) {
        if (secrets[s] == NULL || secrets[s][0] == '\0')
            continue;
        unsigned char mac[EVP_MAX_MD_SIZE];
        unsigned int maclen = 0;
        if (HMAC(EVP_sha256(), secrets[s], (int)strlen(secrets[s]), signed_payload, tl + 1 + len,
                 mac, &maclen) == NULL ||
            maclen != 32)
            continue;
        /* Every pair is compared, in constant time, whatever matched before. */
        for (size_t i = 0; i < nv1; i++)
            match |= CRYPTO_memcmp(mac, v1[i], 32) == 0;
    }
    shopd_free(signed_payload);
    return match ? SHOPD_OK : SHOPD_FORBIDDEN;
}

static uint64_t
meta_id(json_t *obj, const char *k)
{
    const char *s = json_string_value(json_object_get(json_object_get(obj, "metadata"), k));
    if (s == NULL || s[0] < '1' || s[0] > '9' || strlen(s) > 19)
        return 0;
    for (const char *q = s; *q; q++)
        if (*q < '0' || *q > '9')
            return 0;
    return strtoull(s, NULL, 10);
}

shopd_rc_t
pay_stripe_parse_event(const char *payload, size_t len, pay_event_t *out)
{
    memset(out, 0, sizeof(*out));
    json_t *ev = json_loadb(payload, len, 0, NULL);
    json_t *obj = json_object_get(json_object_get(ev, "data"), "object");
    const char *id = jstr(ev, "id"), *type = jstr(ev, "type");
    if (!json_is_object(obj) || id[0] == '\0' || type[0] == '\0' || strlen(id) >= sizeof(out->id) ||
        strlen(type) >= sizeof(out->type)) {
        json_decref(ev);
        return SHOPD_INVALID;
    }
    copy(out->id, sizeof(out->id), id);
    copy(out->type, sizeof(out->type), type);
    out->created = json_integer_value(json_object_get(ev, "created"));
    out->store_id = meta_id(obj, "store_id");
    out->order_id = meta_id(obj, "order_id");
    out->status = PAY_PENDING;
    if (strncmp(type, "payment_intent.", 15) == 0) {
        pay_result_t r = {0};
        pi_result(obj, &r);
        copy(out->ref, sizeof(out->ref), r.ref);
        out->status = r.status;
        copy(out->decline_code, sizeof(out->decline_code), r.decline_code);
        if (strcmp(type, "payment_intent.payment_failed") == 0) {
            out->status = PAY_FAILED;
            if (out->decline_code[0] == '\0')
                copy(out->decline_code, sizeof(out->decline_code), "card_declined");
        }
    } else if (strcmp(type, "charge.refunded") == 0) {
        copy(out->ref, sizeof(out->ref), jstr(obj, "payment_intent"));
        out->amount_refunded = json_integer_value(json_object_get(obj, "amount_refunded"));
        out->status = PAY_SUCCEEDED;
    } else if (strncmp(type, "charge.dispute.", 15) == 0) {
        copy(out->ref, sizeof(out->ref), jstr(obj, "payment_intent"));
    }
    json_decref(ev);
    return SHOPD_OK;
}

static shopd_rc_t
stripe_webhook(const pay_account_t *a, const char *payload, size_t len, const char *signature,
               int64_t now, pay_event_t *out)
{
    const char *secrets[PAY_MAX_WEBHOOK_SECRETS];
    size_t n = a ? a->nsecrets : 0;
    for (size_t i = 0; i < n && i < PAY_MAX_WEBHOOK_SECRETS; i++)
        secrets[i] = a->webhook_secrets[i];
    shopd_rc_t rc =
        pay_stripe_verify(signature, payload, len, secrets, n, now, PAY_STRIPE_TOLERANCE);
    if (rc != SHOPD_OK)
        return rc;
    return pay_stripe_parse_event(payload, len, out);
}

const pay_provider_t pay_stripe_provider = {
    .name = "stripe",
    .create = stripe_create,
    .retrieve = stripe_retrieve,
    .capture = stripe_capture,
    .cancel = stripe_cancel,
    .refund = stripe_refund,
    .webhook = stripe_webhook,
    .blocking = true,
};
