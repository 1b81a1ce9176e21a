/*
 * mail.c: e-mail jobs: the data of each template (order confirmation,
 * shipped, cancelled, password reset, a webhook endpoint disabled; the store's
 * settings.email gives the shop's name, logo and Reply-To), the message (a
 * multipart/alternative of the plain text and the HTML part rendered from the
 * templates in templates/email, built into the binary; MIME headers: encoded
 * Subject, Date, Message-ID), and the two mailers behind one call: SMTP over
 * libcurl when SHOPD_SMTP_URL is set, else the file outbox (one .eml per
 * message in SHOPD_OUTBOX_DIR, named after the job so a job that runs twice
 * writes one file). SMTP answers 5xx are permanent (a dead letter at once);
 * anything else that fails (4xx, a timeout, no connection) is retried.
 */
#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "jobs_priv.h"
#include "shopd/log.h"
#include "shopd/xfer.h"

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
    /* Whole 4-character groups only, so a cut word still decodes. */
    char enc[4 * (sizeof(clean) + 2) / 3 + 1];
    size_t m = (size_t)EVP_EncodeBlock((unsigned char *)enc, (const unsigned char *)clean,
                                       (int)strlen(clean));
    size_t room = cap > 13 ? (cap - 13) / 4 * 4 : 0; /* "=?UTF-8?B?" "?=" NUL */
    snprintf(out, cap, "=?UTF-8?B?%.*s?=", (int)(m < room ? m : room), enc);
}

/* A display name for From (RFC 5322 phrase): RFC 2047-encoded when it is
 * not ASCII, else a quoted string, so "Mugs & <Co>" cannot read as an
 * address. */
static void
phrase(const char *s, char *out, size_t cap)
{
    char enc[600];
    jobs_mime_header(s, enc, sizeof(enc));
    if (strncmp(enc, "=?UTF-8?B?", 10) == 0) {
        snprintf(out, cap, "%s", enc);
        return;
    }
    size_t k = 0;
    out[k++] = '"';
    for (const char *p = enc; *p && k + 3 < cap; p++) {
        if (*p == '"' || *p == '\\')
            out[k++] = '\\';
        out[k++] = *p;
    }
    out[k++] = '"';
    out[k] = '\0';
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

/* The order's lines, totals and shipping address (facts.order, read by the
 * take) into data (for the order confirmation's templates), money already
 * formatted in its currency. */
static shopd_rc_t
order_data(json_t *facts, json_t *data, char *err, size_t errlen)
{
    json_t *o = json_object_get(facts, "order");
    const char *cur = json_string_value(json_object_get(o, "currency"));
    if (!json_is_object(o) || cur == NULL) {
        snprintf(err, errlen, "order not found");
        return SHOPD_INVALID;
    }
    char m[64];
    json_t *items = json_deep_copy(json_object_get(o, "items"));
    size_t i;
    json_t *it;
    json_array_foreach(items, i, it)
    {
        money(m, sizeof(m), json_integer_value(json_object_get(it, "line_total")), cur);
        json_object_set_new(it, "line_total", json_string(m));
    }
    json_object_set_new(data, "items", json_is_array(items) ? items : json_array());
    if (!json_is_array(items))
        json_decref(items);
    static const char *const labels[] = {"Subtotal", "Discount", "Shipping", "Tax", "Total"};
    static const char *const keys[] = {"subtotal", "discount_total", "shipping_total", "tax_total",
                                       "total"};
    json_t *totals = json_array();
    for (int k = 0; k < 5; k++) {
        long long v = json_integer_value(json_object_get(o, keys[k]));
        if (v == 0 && (k == 1 || k == 3))
            continue; /* no discount, no tax: no line */
        money(m, sizeof(m), v, cur);
        json_array_append_new(totals, json_pack("{s:s, s:s}", "label", labels[k], "amount", m));
    }
    json_object_set_new(data, "totals", totals);
    json_t *addr = json_object_get(o, "shipping_address");
    if (json_is_object(addr)) {
        static const char *const akeys[] = {"name", "line1",  "line2",   "postal_code",
                                            "city", "region", "country", NULL};
        json_t *lines = json_array();
        for (int k = 0; akeys[k]; k++) {
            const char *v = json_string_value(json_object_get(addr, akeys[k]));
            if (v && *v)
                json_array_append_new(lines, json_pack("{s:s}", "line", v));
        }
        json_object_set_new(data, "address", json_pack("{s:o}", "lines", lines));
    }
    return SHOPD_OK;
}

/* The store's e-mail settings (facts.shop.email: sender_name, logo_url,
 * reply_to) over its name: what every template shows of the shop. */
static shopd_rc_t
shop_data(json_t *facts, json_t *data, char *reply_to, size_t rlen, char *err, size_t errlen)
{
    json_t *shop = json_object_get(facts, "shop");
    const char *sname = json_string_value(json_object_get(shop, "name"));
    if (sname == NULL) {
        snprintf(err, errlen, "store not found");
        return SHOPD_INVALID;
    }
    json_t *em = json_object_get(shop, "email");
    const char *name = json_string_value(json_object_get(em, "sender_name"));
    json_object_set_new(data, "shop", json_string(name && *name ? name : sname));
    const char *logo = json_string_value(json_object_get(em, "logo_url"));
    if (logo && *logo)
        json_object_set_new(data, "logo_url", json_string(logo));
    const char *rt = json_string_value(json_object_get(em, "reply_to"));
    reply_to[0] = '\0';
    if (address_ok(rt)) {
        snprintf(reply_to, rlen, "%s", rt);
        json_object_set_new(data, "reply_to", json_string(rt));
    }
    return SHOPD_OK;
}

/* The data of the template a payload names: the shop, then what the template
 * shows (the payload's own fields, and the order for a confirmation). */
static shopd_rc_t
template_data(json_t *facts, json_t *pl, const char *tpl, json_t *data, char *reply_to, size_t rlen,
              char *err, size_t errlen)
{
    static const char *const known[] = {"order_confirmation", "order_shipped",  "order_cancelled",
                                        "webhook_disabled",   "password_reset", NULL};
    bool ok = false;
    for (int i = 0; known[i]; i++)
        ok |= strcmp(known[i], tpl) == 0;
    if (!ok) {
        snprintf(err, errlen, "unknown template %.64s", tpl);
        return SHOPD_INVALID;
    }
    static const char *const fields[] = {
        "number", "tracking_number", "endpoint_url", "endpoint_id", "url", "token", NULL};
    for (int i = 0; fields[i]; i++) {
        json_t *v = json_object_get(pl, fields[i]);
        if (v)
            json_object_set(data, fields[i], v);
    }
    if (strcmp(tpl, "password_reset") == 0 && (!json_is_string(json_object_get(pl, "token")) ||
                                               !json_is_string(json_object_get(pl, "url")))) {
        snprintf(err, errlen, "reset token missing");
        return SHOPD_INVALID;
    }
    shopd_rc_t rc = shop_data(facts, data, reply_to, rlen, err, errlen);
    if (rc == SHOPD_OK && strcmp(tpl, "order_confirmation") == 0)
        rc = order_data(facts, data, err, errlen);
    return rc;
}

/* Renders one part of the template tpl: "<tpl>.txt" (its first line is
 * "Subject: ...") or "<tpl>.html" (inside layout.html). malloc'd, NULL when a
 * template is missing or malformed. */
static char *
render_part(const char *tpl, const char *ext, json_t *data)
{
    char name[96];
    snprintf(name, sizeof(name), "%s.%s", tpl, ext);
    const char *t = jobs_template(name);
    if (t == NULL)
        return NULL;
    bool html = strcmp(ext, "html") == 0;
    char *part = jobs_tpl_render(t, data, html);
    if (part == NULL || !html)
        return part;
    const char *layout = jobs_template("layout.html");
    json_object_set_new(data, "content", json_string(part));
    free(part);
    char *whole = layout ? jobs_tpl_render(layout, data, true) : NULL;
    json_object_del(data, "content");
    return whole;
}

/* s with every line ended by CRLF (the templates are kept with LF). */
static void
put_crlf(buf_t *b, const char *s)
{
    for (const char *p = s; *p; p++) {
        if (*p == '\n' && (p == s || p[-1] != '\r'))
            bput(b, "\r\n");
        else
            bput(b, "%c", *p);
    }
}

/* s base64-encoded in lines of 76 characters (RFC 2045), each ended by CRLF:
 * 57 bytes a line. */
static void
put_base64(buf_t *b, const char *s, size_t n)
{
    char line[77];
    for (size_t i = 0; i < n; i += 57) {
        int w = EVP_EncodeBlock((unsigned char *)line, (const unsigned char *)s + i,
                                (int)(n - i < 57 ? n - i : 57));
        bput(b, "%.*s\r\n", w, line);
    }
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
    /* The thread's own handle: its SMTP session stays open for the next
     * message (RSET, not a new TCP and TLS handshake and EHLO each time). */
    CURL *h = xfer_handle(XFER_SMTP);
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
jobs_mail_job(api_ctx_t *ctx, uint64_t job_id, const char *payload, const char *facts_text,
              char *err, size_t errlen)
{
    json_t *pl = json_loads(payload, 0, NULL);
    json_t *facts = facts_text ? json_loads(facts_text, 0, NULL) : NULL;
    json_t *data = json_object();
    const char *to = json_string_value(json_object_get(pl, "email"));
    const char *tpl = json_string_value(json_object_get(pl, "template"));
    char subj[1200], date[64], host[64] = "localhost", reply_to[256] = "", name[700];
    char *text = NULL, *html = NULL;
    buf_t msg = {0};
    shopd_rc_t rc;
    if (!address_ok(to)) {
        snprintf(err, errlen, "no valid recipient");
        rc = SHOPD_INVALID;
        goto out;
    }
    if (tpl == NULL) {
        snprintf(err, errlen, "no template");
        rc = SHOPD_INVALID;
        goto out;
    }
    rc = template_data(facts, pl, tpl, data, reply_to, sizeof(reply_to), err, errlen);
    if (rc != SHOPD_OK)
        goto out;
    text = render_part(tpl, "txt", data);
    if (text == NULL || strncmp(text, "Subject: ", 9) != 0 || strchr(text, '\n') == NULL) {
        snprintf(err, errlen, "template %.64s.txt is missing or malformed", tpl);
        rc = SHOPD_INVALID;
        goto out;
    }
    /* The text's first line is the subject; the rest is the plain part. */
    char *nl = strchr(text, '\n');
    *nl = '\0';
    json_object_set_new(data, "subject", json_string(text + 9));
    jobs_mime_header(text + 9, subj, sizeof(subj));
    html = render_part(tpl, "html", data);
    if (html == NULL) {
        snprintf(err, errlen, "template %.64s.html is missing or malformed", tpl);
        rc = SHOPD_INVALID;
        goto out;
    }
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);
    const char *at = strchr(ctx->app->cfg->mail_from, '@');
    if (at && at[1])
        snprintf(host, sizeof(host), "%s", at + 1);
    phrase(json_string_value(json_object_get(data, "shop")), name, sizeof(name));
    /* The boundary cannot occur in either part: the text part's lines never
     * start with "--=_", and the HTML part is base64. */
    char boundary[64];
    snprintf(boundary, sizeof(boundary), "=_shopd_%llu_%llu", (unsigned long long)ctx->store_id,
             (unsigned long long)job_id);
    bput(&msg, "From: %s <%s>\r\nTo: %s\r\n", name, ctx->app->cfg->mail_from, to);
    if (reply_to[0])
        bput(&msg, "Reply-To: %s\r\n", reply_to);
    bput(&msg,
         "Subject: %s\r\nDate: %s\r\nMessage-ID: <job-%llu-%llu@%s>\r\nMIME-Version: 1.0\r\n"
         "Content-Type: multipart/alternative; boundary=\"%s\"\r\n\r\n"
         "--%s\r\nContent-Type: text/plain; charset=utf-8\r\n"
         "Content-Transfer-Encoding: 8bit\r\n\r\n",
         subj, date, (unsigned long long)ctx->store_id, (unsigned long long)job_id, host, boundary,
         boundary);
    put_crlf(&msg, nl + 1);
    bput(&msg,
         "\r\n--%s\r\nContent-Type: text/html; charset=utf-8\r\n"
         "Content-Transfer-Encoding: base64\r\n\r\n",
         boundary);
    put_base64(&msg, html, strlen(html));
    bput(&msg, "--%s--\r\n", boundary);
    if (ctx->app->cfg->smtp_url[0])
        rc = smtp_send(ctx->app, to, msg.p, msg.n, err, errlen);
    else
        rc = file_send(ctx->app, ctx->store_id, job_id, msg.p, msg.n, err, errlen);
out:
    free(text);
    free(html);
    free(msg.p);
    json_decref(data);
    json_decref(facts);
    json_decref(pl);
    return rc;
}

const char *
jobs_template(const char *name)
{
    struct embed_file_s {
        const char *name, *text;
    };
    extern const struct embed_file_s jobs_mail_templates[];
    for (const struct embed_file_s *f = jobs_mail_templates; f->name; f++)
        if (strcmp(f->name, name) == 0)
            return f->text;
    return NULL;
}
