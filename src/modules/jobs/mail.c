/*
 * mail.c: e-mail jobs: the templates (order confirmation, shipped, cancelled,
 * password reset, a webhook endpoint disabled), the message (MIME headers: encoded Subject, Date,
 * Message-ID), and the two mailers behind one call: SMTP over libcurl when
 * SHOPD_SMTP_URL is set, else the file outbox (one .eml per message in
 * SHOPD_OUTBOX_DIR, named after the job so a job that runs twice writes one
 * file). SMTP answers 5xx are permanent (a dead letter at once); anything else
 * that fails (4xx, a timeout, no connection) is retried.
 */
#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "jobs_priv.h"
#include "shopd/log.h"

/* ---- MIME helpers ---- */

static void
clean_line(const char *s, char *out, size_t cap)
{
    size_t k = 0;
    for (; s && *s && k + 1 < cap; s++)
        out[k++] = ((unsigned char)*s < 0x20 || *s == 0x7f) ? ' ' : *s;
    out[k] = '\0';
}

void
jobs_mime_header(const char *s, char *out, size_t cap)
{
    char clean[1024];
    clean_line(s, clean, sizeof(clean));
    bool ascii = true;
    for (const char *p = clean; *p; p++)
        ascii &= (unsigned char)*p < 0x80;
    if (ascii) {
        snprintf(out, cap, "%s", clean);
        return;
    }
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t n = strlen(clean), k = 0;
    k += (size_t)snprintf(out, cap, "=?UTF-8?B?");
    for (size_t i = 0; i < n && k + 5 < cap; i += 3) {
        unsigned v = (unsigned char)clean[i] << 16;
        if (i + 1 < n)
            v |= (unsigned char)clean[i + 1] << 8;
        if (i + 2 < n)
            v |= (unsigned char)clean[i + 2];
        out[k++] = b64[(v >> 18) & 63];
        out[k++] = b64[(v >> 12) & 63];
        out[k++] = i + 1 < n ? b64[(v >> 6) & 63] : '=';
        out[k++] = i + 2 < n ? b64[v & 63] : '=';
    }
    snprintf(out + k, cap > k ? cap - k : 0, "?=");
}

/* An address fit for a header and an SMTP envelope: one line, no brackets. */
static bool
address_ok(const char *a)
{
    if (a == NULL || *a == '\0' || strlen(a) > 254 || strchr(a, '@') == NULL)
        return false;
    for (; *a; a++)
        if ((unsigned char)*a <= 0x20 || *a == '<' || *a == '>' || *a == ',' || *a == 0x7f)
            return false;
    return true;
}

static void
money(char *out, size_t cap, long long minor, const char *cur)
{
    /* Two decimals except for the common zero-decimal currencies. */
    static const char *const zero[] = {"JPY", "KRW", "VND", "CLP", "ISK", "HUF", NULL};
    for (int i = 0; zero[i]; i++)
        if (strcmp(cur, zero[i]) == 0) {
            snprintf(out, cap, "%lld %s", minor, cur);
            return;
        }
    snprintf(out, cap, "%s%lld.%02lld %s", minor < 0 ? "-" : "", llabs(minor) / 100,
             llabs(minor) % 100, cur);
}

/* ---- the message ---- */

typedef struct buf_s {
    char *p;
    size_t n, cap;
} buf_t;

static void bput(buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void
bput(buf_t *b, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int w = vsnprintf(b->p + b->n, b->cap - b->n, fmt, ap);
        va_end(ap);
        if (w < 0)
            return;
        if (b->n + (size_t)w < b->cap) {
            b->n += (size_t)w;
            return;
        }
        b->cap = (b->n + (size_t)w + 1) * 2;
        b->p = realloc(b->p, b->cap);
        if (b->p == NULL)
            abort();
    }
}

/* The text of an order's confirmation: items, totals, the shipping address. */
static shopd_rc_t
order_text(db_conn_t *c, uint64_t store_id, uint64_t order_id, buf_t *b, char *err, size_t errlen)
{
    char sid[24], oid[24];
    snprintf(sid, sizeof(sid), "%llu", (unsigned long long)store_id);
    snprintf(oid, sizeof(oid), "%llu", (unsigned long long)order_id);
    const char *p[] = {sid, oid};
    PGresult *r =
        db_exec(c, "jobs_order_mail",
                "SELECT o.currency, o.subtotal, o.discount_total, o.shipping_total, o.tax_total, "
                "o.total, coalesce(o.shipping_address::text, 'null'), coalesce((SELECT "
                "json_agg(json_build_object('name', i.name, 'sku', i.sku, 'quantity', "
                "i.quantity, 'line_total', i.line_total) ORDER BY i.id)::text FROM order_items i "
                "WHERE i.store_id = $1 AND i.order_id = o.id), '[]') FROM orders o "
                "WHERE o.store_id = $1 AND o.id = $2",
                2, p);
    shopd_rc_t rc = db_result_rc(r);
    if (rc != SHOPD_OK || PQntuples(r) != 1) {
        snprintf(err, errlen, rc != SHOPD_OK ? "database unavailable" : "order not found");
        PQclear(r);
        return rc != SHOPD_OK ? SHOPD_AGAIN : SHOPD_INVALID;
    }
    const char *cur = PQgetvalue(r, 0, 0);
    char m[64];
    json_t *items = json_loads(PQgetvalue(r, 0, 7), 0, NULL);
    size_t i;
    json_t *it;
    bput(b, "Items:\r\n");
    json_array_foreach(items, i, it)
    {
        money(m, sizeof(m), json_integer_value(json_object_get(it, "line_total")), cur);
        char name[300];
        clean_line(json_string_value(json_object_get(it, "name")), name, sizeof(name));
        bput(b, "  %lld x %s (%s)  %s\r\n",
             (long long)json_integer_value(json_object_get(it, "quantity")), name,
             json_string_value(json_object_get(it, "sku")) ?: "", m);
    }
    json_decref(items);
    static const char *const labels[] = {"Subtotal", "Discount", "Shipping", "Tax", "Total"};
    bput(b, "\r\n");
    for (int k = 0; k < 5; k++) {
        money(m, sizeof(m), strtoll(PQgetvalue(r, 0, 1 + k), NULL, 10), cur);
        bput(b, "%-9s %s\r\n", labels[k], m);
    }
    json_t *addr = json_loads(PQgetvalue(r, 0, 6), JSON_DECODE_ANY, NULL);
    if (json_is_object(addr)) {
        bput(b, "\r\nShipping to:\r\n");
        static const char *const keys[] = {"name", "line1",  "line2",   "postal_code",
                                           "city", "region", "country", NULL};
        for (int k = 0; keys[k]; k++) {
            const char *v = json_string_value(json_object_get(addr, keys[k]));
            char line[300];
            if (v && *v) {
                clean_line(v, line, sizeof(line));
                bput(b, "  %s\r\n", line);
            }
        }
    }
    json_decref(addr);
    PQclear(r);
    return SHOPD_OK;
}

/* Renders the template a payload names into the message's text. */
static shopd_rc_t
render(api_ctx_t *ctx, db_conn_t *c, json_t *pl, char *subject, size_t slen, buf_t *b, char *err,
       size_t errlen)
{
    const char *tpl = json_string_value(json_object_get(pl, "template"));
    const store_snap_t *s = ctx->store;
    const char *shop = s ? s->name : "the shop";
    long long number = json_integer_value(json_object_get(pl, "number"));
    uint64_t order_id = (uint64_t)json_integer_value(json_object_get(pl, "order_id"));
    if (tpl == NULL) {
        snprintf(err, errlen, "no template");
        return SHOPD_INVALID;
    }
    if (strcmp(tpl, "order_confirmation") == 0) {
        snprintf(subject, slen, "Your order #%lld at %.120s", number, shop);
        bput(b, "Thank you for your order #%lld at %s.\r\n\r\n", number, shop);
        shopd_rc_t rc = order_text(c, ctx->store_id, order_id, b, err, errlen);
        if (rc != SHOPD_OK)
            return rc;
        bput(b, "\r\nWe will write again when it ships.\r\n");
    } else if (strcmp(tpl, "order_shipped") == 0) {
        const char *tn = json_string_value(json_object_get(pl, "tracking_number"));
        char track[200];
        clean_line(tn, track, sizeof(track));
        snprintf(subject, slen, "Your order #%lld from %.120s has shipped", number, shop);
        bput(b, "Your order #%lld from %s is on its way.\r\n", number, shop);
        if (tn)
            bput(b, "\r\nTracking number: %s\r\n", track);
    } else if (strcmp(tpl, "order_cancelled") == 0) {
        snprintf(subject, slen, "Your order #%lld at %.120s was cancelled", number, shop);
        bput(b,
             "Your order #%lld at %s was cancelled. Any payment taken is refunded to the "
             "original payment method.\r\n",
             number, shop);
    } else if (strcmp(tpl, "webhook_disabled") == 0) {
        char url[600];
        clean_line(json_string_value(json_object_get(pl, "endpoint_url")), url, sizeof(url));
        snprintf(subject, slen, "A webhook endpoint of %.120s was disabled", shop);
        bput(b,
             "The webhook endpoint %s (id %lld) failed every delivery for too long and was "
             "disabled.\r\n\r\nIts failed deliveries are dead letters: fix the endpoint, "
             "enable it again (PATCH /api/v1/admin/webhooks/%lld) and retry them "
             "(POST /api/v1/admin/jobs/dead-letters/{id}/retry).\r\n",
             url, (long long)json_integer_value(json_object_get(pl, "endpoint_id")),
             (long long)json_integer_value(json_object_get(pl, "endpoint_id")));
    } else if (strcmp(tpl, "password_reset") == 0) {
        const char *token = json_string_value(json_object_get(pl, "token"));
        const char *url = json_string_value(json_object_get(pl, "url"));
        if (token == NULL || url == NULL) {
            snprintf(err, errlen, "reset token missing");
            return SHOPD_INVALID;
        }
        snprintf(subject, slen, "Reset your password at %.120s", shop);
        bput(b,
             "Someone asked to reset the password of your account at %s.\r\n\r\n"
             "Choose a new password here (the link works once, for one hour):\r\n"
             "%s\r\n\r\n"
             "If it was not you, ignore this message.\r\n\r\nReset-Token: %s\r\n",
             shop, url, token);
    } else {
        snprintf(err, errlen, "unknown template %.64s", tpl);
        return SHOPD_INVALID;
    }
    return SHOPD_OK;
}

/* ---- mailers ---- */

static shopd_rc_t
file_send(app_t *app, uint64_t store_id, uint64_t job_id, const char *msg, size_t len, char *err,
          size_t errlen)
{
    const char *dir = app->cfg->outbox_dir;
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "outbox folder: %s", strerror(errno));
        return SHOPD_AGAIN;
    }
    char tmp[1024], fin[1024];
    snprintf(tmp, sizeof(tmp), "%s/.%llu-%llu.tmp", dir, (unsigned long long)store_id,
             (unsigned long long)job_id);
    snprintf(fin, sizeof(fin), "%s/%llu-%llu.eml", dir, (unsigned long long)store_id,
             (unsigned long long)job_id);
    /* Written whole under a temporary name, then renamed: a reader never sees
     * half a message, and a job run twice leaves one file. */
    FILE *f = fopen(tmp, "w");
    if (f == NULL) {
        snprintf(err, errlen, "outbox file: %s", strerror(errno));
        return SHOPD_AGAIN;
    }
    size_t w = fwrite(msg, 1, len, f);
    int bad = ferror(f) || w != len;
    if (fclose(f) != 0 || bad || rename(tmp, fin) != 0) {
        unlink(tmp);
        snprintf(err, errlen, "outbox write failed");
        return SHOPD_AGAIN;
    }
    return SHOPD_OK;
}

typedef struct upload_s {
    const char *p;
    size_t left;
} upload_t;

static size_t
upload_cb(char *out, size_t size, size_t nmemb, void *ud)
{
    upload_t *u = ud;
    size_t n = size * nmemb < u->left ? size * nmemb : u->left;
    memcpy(out, u->p, n);
    u->p += n;
    u->left -= n;
    return n;
}

static shopd_rc_t
smtp_send(app_t *app, const char *to, const char *msg, size_t len, char *err, size_t errlen)
{
    CURL *h = curl_easy_init();
    if (h == NULL) {
        snprintf(err, errlen, "curl init failed");
        return SHOPD_AGAIN;
    }
    char from[300], rcpt[300];
    snprintf(from, sizeof(from), "<%s>", app->cfg->mail_from);
    snprintf(rcpt, sizeof(rcpt), "<%s>", to);
    struct curl_slist *rcpts = curl_slist_append(NULL, rcpt);
    upload_t u = {msg, len};
    const char *tls = app->cfg->smtp_tls;
    curl_easy_setopt(h, CURLOPT_URL, app->cfg->smtp_url);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "smtp,smtps");
    curl_easy_setopt(h, CURLOPT_USE_SSL,
                     strcmp(tls, "none") == 0  ? (long)CURLUSESSL_NONE
                     : strcmp(tls, "try") == 0 ? (long)CURLUSESSL_TRY
                                               : (long)CURLUSESSL_ALL);
    curl_easy_setopt(h, CURLOPT_MAIL_FROM, from);
    curl_easy_setopt(h, CURLOPT_MAIL_RCPT, rcpts);
    curl_easy_setopt(h, CURLOPT_READFUNCTION, upload_cb);
    curl_easy_setopt(h, CURLOPT_READDATA, &u);
    curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)app->cfg->smtp_timeout_ms);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)app->cfg->smtp_timeout_ms);
    CURLcode cc = curl_easy_perform(h);
    long code = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
    curl_slist_free_all(rcpts);
    curl_easy_cleanup(h);
    if (cc == CURLE_OK)
        return SHOPD_OK;
    snprintf(err, errlen, "smtp: %s (reply %ld)", curl_easy_strerror(cc), code);
    /* 5xx: the server refused for good (no such mailbox, policy); retrying the
     * same message would be refused again. */
    return code >= 500 && code < 600 ? SHOPD_INVALID : SHOPD_AGAIN;
}

int
jobs_mail_init(app_t *app, char *err, size_t errlen)
{
    const char *tls = app->cfg->smtp_tls;
    if (strcmp(tls, "required") && strcmp(tls, "try") && strcmp(tls, "none")) {
        snprintf(err, errlen, "SHOPD_SMTP_TLS must be required, try or none");
        return -1;
    }
    const char *u = app->cfg->smtp_url;
    if (u[0] && strncmp(u, "smtp://", 7) && strncmp(u, "smtps://", 8)) {
        snprintf(err, errlen, "SHOPD_SMTP_URL must start with smtp:// or smtps://");
        return -1;
    }
    if (!address_ok(app->cfg->mail_from)) {
        snprintf(err, errlen, "SHOPD_MAIL_FROM is not an e-mail address");
        return -1;
    }
    return 0;
}

shopd_rc_t
jobs_mail_job(api_ctx_t *ctx, db_conn_t *c, uint64_t job_id, const char *payload, char *err,
              size_t errlen)
{
    json_t *pl = json_loads(payload, 0, NULL);
    const char *to = json_string_value(json_object_get(pl, "email"));
    char subject[600], subj[1200], date[64], host[64] = "localhost";
    buf_t text = {0}, msg = {0};
    shopd_rc_t rc;
    if (!address_ok(to)) {
        snprintf(err, errlen, "no valid recipient");
        rc = SHOPD_INVALID;
        goto out;
    }
    rc = render(ctx, c, pl, subject, sizeof(subject), &text, err, errlen);
    if (rc != SHOPD_OK)
        goto out;
    jobs_mime_header(subject, subj, sizeof(subj));
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);
    const char *at = strchr(ctx->app->cfg->mail_from, '@');
    if (at && at[1])
        snprintf(host, sizeof(host), "%s", at + 1);
    char name[300];
    jobs_mime_header(ctx->store ? ctx->store->name : "shopd", name, sizeof(name));
    bput(&msg,
         "From: %s <%s>\r\nTo: %s\r\nSubject: %s\r\nDate: %s\r\n"
         "Message-ID: <job-%llu-%llu@%s>\r\nMIME-Version: 1.0\r\n"
         "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n%s",
         name, ctx->app->cfg->mail_from, to, subj, date, (unsigned long long)ctx->store_id,
         (unsigned long long)job_id, host, text.p ? text.p : "");
    if (ctx->app->cfg->smtp_url[0])
        rc = smtp_send(ctx->app, to, msg.p, msg.n, err, errlen);
    else
        rc = file_send(ctx->app, ctx->store_id, job_id, msg.p, msg.n, err, errlen);
out:
    free(text.p);
    free(msg.p);
    json_decref(pl);
    return rc;
}
