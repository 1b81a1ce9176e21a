/*
 * test_jobs.c: background jobs through the real binary against real
 * PostgreSQL and Redis: an order's confirmation e-mail arrives in the file
 * outbox; a webhook endpoint receives signed events that this test verifies
 * as an integrator would (HMAC-SHA256 over "t.body"); a failing endpoint is
 * retried on the schedule, becomes a dead letter, and an operator's retry
 * delivers it; SMTP against a sink that answers 451 (retried) and 550 (a
 * dead letter); Redis down while orders come in (the relay catches up); the
 * SSRF rules refuse a loopback target without connecting;
 * and a shopd killed with -9 while its jobs run (a stalled SMTP server holds
 * them between XREADGROUP and XACK) loses none: the next process takes them
 * over (XAUTOCLAIM), sends each e-mail once and skips the duplicates a relay
 * may send.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include <libpq-fe.h>

#include "harness.h"
#include "shopd/kv.h"

static th_server_t *srv;
static char outbox[128];

/* ---- a webhook receiver on 127.0.0.1 ---- */

#define MAX_HITS 64
typedef struct hit_s {
    char sig[160], event_id[96], body[4096];
} hit_t;

static struct {
    int fd, port;
    pthread_t thread;
    pthread_mutex_t lock;
    int answer; /* the status it answers */
    int nhits;
    hit_t hits[MAX_HITS];
} rx = {.lock = PTHREAD_MUTEX_INITIALIZER, .answer = 200};

static void
header_value(const char *head, const char *name, char *out, size_t cap)
{
    out[0] = '\0';
    const char *p = strcasestr(head, name);
    if (p == NULL)
        return;
    p += strlen(name);
    while (*p == ' ')
        p++;
    size_t n = strcspn(p, "\r\n");
    snprintf(out, cap, "%.*s", (int)(n < cap ? n : cap - 1), p);
}

static void *
rx_main(void *arg)
{
    (void)arg;
    for (;;) {
        int c = accept(rx.fd, NULL, NULL);
        if (c < 0)
            return NULL;
        char buf[8192];
        size_t n = 0;
        char *end = NULL;
        long want = -1;
        while (n < sizeof(buf) - 1) {
            ssize_t got = read(c, buf + n, sizeof(buf) - 1 - n);
            if (got <= 0)
                break;
            n += (size_t)got;
            buf[n] = '\0';
            if (end == NULL && (end = strstr(buf, "\r\n\r\n"))) {
                char cl[32];
                header_value(buf, "Content-Length:", cl, sizeof(cl));
                want = atol(cl);
            }
            if (end && (long)(n - (size_t)(end + 4 - buf)) >= want)
                break;
        }
        pthread_mutex_lock(&rx.lock);
        int code = rx.answer;
        if (end && rx.nhits < MAX_HITS) {
            hit_t *h = &rx.hits[rx.nhits++];
            *end = '\0';
            header_value(buf, "Shopd-Signature:", h->sig, sizeof(h->sig));
            header_value(buf, "Shopd-Event-Id:", h->event_id, sizeof(h->event_id));
            snprintf(h->body, sizeof(h->body), "%s", end + 4);
        }
        pthread_mutex_unlock(&rx.lock);
        char out[128];
        int k = snprintf(out, sizeof(out),
                         "HTTP/1.1 %d X\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok", code);
        if (write(c, out, (size_t)k) < 0) {
        }
        close(c);
    }
}

/* A listening socket on a free loopback port (backlog only: nobody accepts
 * unless a thread does). */
static int
listen_free(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    socklen_t l = sizeof(a);
    getsockname(fd, (struct sockaddr *)&a, &l);
    assert_int_equal(listen(fd, 64), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

static int
hits(void)
{
    pthread_mutex_lock(&rx.lock);
    int n = rx.nhits;
    pthread_mutex_unlock(&rx.lock);
    return n;
}

/* Hits of one store's events (the receiver is shared by the tests, and a test's
 * late deliveries, retried under load, must not count in the next one's). */
static int
hits_of_store(long store)
{
    int n = 0;
    pthread_mutex_lock(&rx.lock);
    for (int i = 0; i < rx.nhits && i < MAX_HITS; i++) {
        json_t *ev = json_loads(rx.hits[i].body, 0, NULL);
        n += ev && json_integer_value(json_object_get(ev, "store")) == store;
        json_decref(ev);
    }
    pthread_mutex_unlock(&rx.lock);
    return n;
}

static bool
hits_at_least(void *arg)
{
    return hits() >= *(int *)arg;
}

static const char *
path_of_hook(char *buf, size_t cap, long hook)
{
    snprintf(buf, cap, "/api/v1/admin/webhooks/%ld", hook);
    return buf;
}

/* What an integrator does: recompute the HMAC over "t.body" with the secret
 * and compare in constant time. */
static bool
signature_valid(const char *secret, const char *sig, const char *body)
{
    long long t = 0;
    char v1[80] = "";
    if (sscanf(sig, "t=%lld,v1=%64s", &t, v1) != 2 || strlen(v1) != 64)
        return false;
    char *msg = malloc(strlen(body) + 32);
    int n = sprintf(msg, "%lld.%s", t, body);
    unsigned char mac[32];
    unsigned int ml = 0;
    HMAC(EVP_sha256(), secret, (int)strlen(secret), (unsigned char *)msg, (size_t)n, mac, &ml);
    free(msg);
    char hex[65];
    for (int i = 0; i < 32; i++)
        sprintf(hex + 2 * i, "%02x", mac[i]);
    long long now = (long long)time(NULL);
    return ml == 32 && CRYPTO_memcmp(hex, v1, 64) == 0 && t <= now + 5 && t >= now - 300;
}

/* ---- an SMTP sink: enough of RFC 5321 for libcurl, with scripted refusals ---- */

static struct {
    int fd, port;
    pthread_t thread;
    pthread_mutex_t lock;
    int rcpt_code; /* the answer to RCPT TO: 250 or 550 */
    int data_code; /* the answer after DATA's end, once; then 250 */
    int datas;     /* DATA phases seen */
    int delivered; /* messages accepted */
    char rcpt[256], msg[32768];
} sink = {.lock = PTHREAD_MUTEX_INITIALIZER, .rcpt_code = 250, .data_code = 250};

/* One line (CRLF stripped) from c, buffered in buf/len; false at EOF. */
static bool
sink_line(int c, char *buf, size_t *len, char *line, size_t cap)
{
    for (;;) {
        char *nl = memchr(buf, '\n', *len);
        if (nl) {
            size_t n = (size_t)(nl - buf) + 1;
            size_t k = n - 1 > 0 && buf[n - 2] == '\r' ? n - 2 : n - 1;
            snprintf(line, cap, "%.*s", (int)(k < cap ? k : cap - 1), buf);
            memmove(buf, buf + n, *len - n);
            *len -= n;
            return true;
        }
        if (*len >= 8191)
            return false;
        ssize_t got = read(c, buf + *len, 8191 - *len);
        if (got <= 0)
            return false;
        *len += (size_t)got;
    }
}

static void
say(int c, const char *s)
{
    if (write(c, s, strlen(s)) < 0) {
    }
}

/* One SMTP session (shopd keeps its sessions open between messages, one per
 * blocking thread, so each has a thread here). */
static void *
sink_session(void *arg)
{
    int c = (int)(intptr_t)arg;
    {
        char buf[8192], line[1024], msg[32768];
        size_t len = 0;
        say(c, "220 sink ESMTP\r\n");
        while (sink_line(c, buf, &len, line, sizeof(line))) {
            if (!strncasecmp(line, "EHLO", 4) || !strncasecmp(line, "HELO", 4)) {
                say(c, "250-sink\r\n250 8BITMIME\r\n");
            } else if (!strncasecmp(line, "MAIL FROM:", 10) || !strncasecmp(line, "RSET", 4)) {
                say(c, "250 ok\r\n");
            } else if (!strncasecmp(line, "RCPT TO:", 8)) {
                pthread_mutex_lock(&sink.lock);
                int code = sink.rcpt_code;
                snprintf(sink.rcpt, sizeof(sink.rcpt), "%s", line + 8);
                pthread_mutex_unlock(&sink.lock);
                say(c, code == 250 ? "250 ok\r\n" : "550 5.1.1 no such mailbox\r\n");
            } else if (!strncasecmp(line, "DATA", 4)) {
                say(c, "354 go on\r\n");
                size_t m = 0;
                while (sink_line(c, buf, &len, line, sizeof(line)) && strcmp(line, ".") != 0)
                    if (m < sizeof(msg))
                        m += (size_t)snprintf(msg + m, sizeof(msg) - m, "%s\r\n", line);
                pthread_mutex_lock(&sink.lock);
                int code = sink.data_code;
                sink.data_code = 250;
                sink.datas++;
                if (code == 250) {
                    sink.delivered++;
                    snprintf(sink.msg, sizeof(sink.msg), "%s", msg);
                }
                pthread_mutex_unlock(&sink.lock);
                say(c, code == 250 ? "250 queued\r\n" : "451 4.3.0 try again later\r\n");
            } else if (!strncasecmp(line, "QUIT", 4)) {
                say(c, "221 bye\r\n");
                break;
            } else {
                say(c, "502 unknown\r\n");
            }
        }
        close(c);
    }
    return NULL;
}

static void *
sink_main(void *arg)
{
    (void)arg;
    for (;;) {
        int c = accept(sink.fd, NULL, NULL);
        if (c < 0)
            return NULL;
        pthread_t t;
        if (pthread_create(&t, NULL, sink_session, (void *)(intptr_t)c) != 0)
            close(c);
        else
            pthread_detach(t);
    }
}

static int
sink_delivered(void)
{
    pthread_mutex_lock(&sink.lock);
    int n = sink.delivered;
    pthread_mutex_unlock(&sink.lock);
    return n;
}

static bool
sink_has(void *arg)
{
    return sink_delivered() >= *(int *)arg;
}

/* ---- a shop that can take orders ---- */

typedef struct shop_s {
    long id;
    th_user_t admin;
    long variant, rate;
} shop_t;

static th_resp_t
rq(th_server_t *s, long store, const char *token, const char *cart, const char *method,
   const char *path, const char *body)
{
    char tenant[64], auth[1024], cid[128];
    const char *h[4] = {tenant, NULL, NULL, NULL};
    size_t n = 1;
    snprintf(tenant, sizeof(tenant), "X-Tenant-Id: %ld", store);
    if (token) {
        th_auth_header(auth, sizeof(auth), token);
        h[n++] = auth;
    }
    if (cart) {
        snprintf(cid, sizeof(cid), "X-Cart-Id: %s", cart);
        h[n++] = cid;
    }
    return th_req(s, method, path, h, body);
}

static long
jint(const json_t *o, const char *k)
{
    return (long)json_integer_value(json_object_get(o, k));
}

static shop_t
shop_new(th_server_t *s)
{
    shop_t sh = {0};
    sh.id = th_create_store(s, th_slug("jobs"), NULL);
    sh.admin = th_user_new(s, "STORE_ADMIN", sh.id);
    th_resp_t r = rq(s, sh.id, sh.admin.access, NULL, "POST", "/api/v1/products",
                     "{\"name\":\"Mug\",\"base_price\":1250,\"status\":\"active\"}");
    assert_int_equal(r.status, 201);
    char path[96];
    snprintf(path, sizeof(path), "/api/v1/products/%ld/variants", jint(r.json, "id"));
    th_resp_free(&r);
    r = rq(s, sh.id, sh.admin.access, NULL, "POST", path,
           "{\"sku\":\"MUG-1\",\"options\":{\"c\":\"red\"},\"price\":1250}");
    assert_int_equal(r.status, 201);
    sh.variant = jint(r.json, "id");
    th_resp_free(&r);
    snprintf(path, sizeof(path), "/api/v1/variants/%ld/inventory", sh.variant);
    r = rq(s, sh.id, sh.admin.access, NULL, "PATCH", path,
           "{\"adjust\":1000,\"reason\":\"initial\"}");
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
    r = rq(s, sh.id, sh.admin.access, NULL, "POST", "/api/v1/admin/shipping-zones",
           "{\"name\":\"Germany\",\"countries\":[\"DE\"]}");
    assert_int_equal(r.status, 201);
    snprintf(path, sizeof(path), "/api/v1/admin/shipping-zones/%ld/rates", jint(r.json, "id"));
    th_resp_free(&r);
    r = rq(s, sh.id, sh.admin.access, NULL, "POST", path,
           "{\"name\":\"Standard\",\"kind\":\"flat\",\"price\":490}");
    assert_int_equal(r.status, 201);
    sh.rate = jint(r.json, "id");
    th_resp_free(&r);
    return sh;
}

/* A guest's order of one mug; returns its number (and its id in *id). */
static long
order(th_server_t *s, shop_t *sh, const char *email, long *id)
{
    char body[512];
    snprintf(body, sizeof(body), "{\"variant_id\":%ld,\"quantity\":2}", sh->variant);
    th_resp_t r = rq(s, sh->id, NULL, NULL, "POST", "/api/v1/cart/add", body);
    assert_int_equal(r.status, 200);
    char cart[64];
    snprintf(cart, sizeof(cart), "%s", th_header(&r, "X-Cart-Id"));
    th_resp_free(&r);
    snprintf(body, sizeof(body),
             "{\"email\":\"%s\",\"shipping_address\":{\"name\":\"Ada Lovelace\",\"line1\":\"Str "
             "1\",\"city\":\"Berlin\",\"postal_code\":\"10115\",\"country\":\"DE\"},"
             "\"shipping_rate_id\":%ld}",
             email, sh->rate);
    r = rq(s, sh->id, NULL, cart, "POST", "/api/v1/checkout", body);
    assert_int_equal(r.status, 201);
    long number = jint(r.json, "number");
    if (id)
        *id = jint(r.json, "id");
    th_resp_free(&r);
    return number;
}

/* ---- the file outbox ---- */

/* How many messages in dir are addressed to `to` and contain `needle`. */
static int
mails(const char *dir, const char *to, const char *needle, char *copy, size_t cap)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return 0;
    struct dirent *e;
    int found = 0;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char path[512], buf[32768], want[300];
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        FILE *f = fopen(path, "r");
        if (f == NULL)
            continue;
        size_t got = fread(buf, 1, sizeof(buf) - 1, f);
        buf[got] = '\0';
        fclose(f);
        snprintf(want, sizeof(want), "To: %s\r\n", to);
        if (strstr(buf, want) && strstr(buf, needle)) {
            found++;
            if (copy)
                snprintf(copy, cap, "%s", buf);
        }
    }
    closedir(d);
    return found;
}

typedef struct mail_wait_s {
    const char *dir, *to, *needle;
} mail_wait_t;

static bool
mail_arrived(void *arg)
{
    mail_wait_t *w = arg;
    return mails(w->dir, w->to, w->needle, NULL, 0) >= 1;
}

static long
sql_long(const char *sql)
{
    return atol(th_sql(sql, NULL));
}

typedef struct sql_wait_s {
    const char *sql;
    long want;
} sql_wait_t;

static bool
sql_reaches(void *arg)
{
    sql_wait_t *w = arg;
    return sql_long(w->sql) >= w->want;
}

static void
wait_sql(const char *sql, long want, int ms)
{
    sql_wait_t w = {sql, want};
    if (!th_wait_until(sql_reaches, &w, ms))
        fail_msg("%s stayed at %ld (want %ld)", sql, sql_long(sql), want);
}

/* A counter of /metrics (the value of the first line starting with name). */
static long
metric(th_server_t *s, const char *name)
{
    th_resp_t r = th_req(s, "GET", "/metrics", NULL, NULL);
    assert_int_equal(r.status, 200);
    const char *p = strstr(r.body, name);
    long v = p ? atol(p + strlen(name)) : -1;
    th_resp_free(&r);
    return v;
}

/* ---- tests ---- */

static void
test_confirmation_email(void **state)
{
    (void)state;
    shop_t sh = shop_new(srv);
    const char *to = th_email("buyer");
    long number = order(srv, &sh, to, NULL);
    char needle[64], msg[32768];
    snprintf(needle, sizeof(needle), "Your order #%ld", number);
    mail_wait_t w = {outbox, to, needle};
    assert_true(th_wait_until(mail_arrived, &w, 15000));
    assert_int_equal(mails(outbox, to, needle, msg, sizeof(msg)), 1);
    /* The message: MIME headers, the items, totals and the address. */
    assert_non_null(strstr(msg, "Message-ID: <job-"));
    assert_non_null(strstr(msg, "Date: "));
    assert_non_null(strstr(msg, "MIME-Version: 1.0\r\n"));
    assert_non_null(strstr(msg, "Content-Type: text/plain; charset=utf-8"));
    assert_non_null(strstr(msg, "2 x Mug"));
    assert_non_null(strstr(msg, "25.00 EUR") ? "ok" : strstr(msg, "25.00"));
    assert_non_null(strstr(msg, "Ada Lovelace"));
    assert_non_null(strstr(msg, "Berlin"));
    /* The job is done, and /metrics counts it. */
    char sql[256];
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM jobs WHERE store_id = %ld AND kind = 'email' AND state = "
             "'done'",
             sh.id);
    wait_sql(sql, 1, 5000);
    assert_true(metric(srv, "shopd_jobs_events_total{event=\"done\"} ") >= 1);
    th_user_free(&sh.admin);
}

/* The base64 body of the part after `marker` (its headers end at a blank
 * line, its lines at the next "--" boundary), decoded into out. */
static void
html_part(const char *msg, char *out, size_t cap)
{
    const char *p = strstr(msg, "Content-Type: text/html; charset=utf-8\r\n");
    assert_non_null(p);
    assert_non_null(strstr(p, "Content-Transfer-Encoding: base64\r\n"));
    p = strstr(p, "\r\n\r\n");
    assert_non_null(p);
    p += 4;
    const char *end = strstr(p, "\r\n--");
    assert_non_null(end);
    char b64[32768];
    size_t k = 0;
    for (; p < end && k + 1 < sizeof(b64); p++)
        if (*p != '\r' && *p != '\n')
            b64[k++] = *p;
    b64[k] = '\0';
    assert_true(3 * (k / 4) < cap);
    int n = EVP_DecodeBlock((unsigned char *)out, (unsigned char *)b64, (int)k);
    assert_true(n > 0);
    out[n] = '\0';
}

/* Both parts, and the store's own name, logo and Reply-To (settings.email);
 * values are escaped in the HTML part; bad settings are refused. */
static void
test_email_html_and_branding(void **state)
{
    (void)state;
    shop_t sh = shop_new(srv);
    char path[64];
    snprintf(path, sizeof(path), "/api/v1/stores/%ld", sh.id);
    th_resp_t r = th_platform(srv, "PATCH", path,
                              "{\"settings\":{\"email\":{\"sender_name\":\"Mugs & <Co>\","
                              "\"logo_url\":\"https://cdn.example/logo.png\","
                              "\"reply_to\":\"help@shop.test\"}}}");
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
    static const char *const bad[] = {
        "{\"settings\":{\"email\":{\"logo_url\":\"javascript:alert(1)\"}}}",
        "{\"settings\":{\"email\":{\"logo_url\":\"https://x/\\\"onerror=\"}}}",
        "{\"settings\":{\"email\":{\"reply_to\":\"a@b\\r\\nBcc: x@y\"}}}",
        "{\"settings\":{\"email\":{\"sender_name\":\"\"}}}",
        "{\"settings\":{\"email\":{\"footer\":\"x\"}}}",
        "{\"settings\":{\"email\":\"x\"}}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        r = th_platform(srv, "PATCH", path, bad[i]);
        assert_int_equal(r.status, 422);
        assert_string_equal(th_error_code(&r), "validation_failed");
        th_resp_free(&r);
    }
    const char *to = th_email("brand");
    long number = order(srv, &sh, to, NULL);
    char needle[64], msg[32768], html[24576];
    snprintf(needle, sizeof(needle), "Your order #%ld", number);
    mail_wait_t w = {outbox, to, needle};
    assert_true(th_wait_until(mail_arrived, &w, 15000));
    assert_int_equal(mails(outbox, to, needle, msg, sizeof(msg)), 1);
    assert_non_null(strstr(msg, "Content-Type: multipart/alternative; boundary=\"=_shopd_"));
    assert_non_null(strstr(msg, "Reply-To: help@shop.test\r\n"));
    assert_non_null(strstr(msg, "From: \"Mugs & <Co>\" <"));
    assert_non_null(strstr(msg, "at Mugs & <Co>"));
    /* The plain part ends before the HTML part, and the message is closed. */
    const char *plain = strstr(msg, "Content-Type: text/plain; charset=utf-8\r\n");
    const char *hp = strstr(msg, "Content-Type: text/html; charset=utf-8\r\n");
    assert_non_null(plain);
    assert_true(hp > plain);
    assert_non_null(strstr(plain, "2 x Mug (MUG-1)"));
    assert_non_null(strstr(msg, "--\r\n"));
    /* Every line of the message is short enough for SMTP (RFC 5321: 998). */
    for (const char *l = msg, *e; (e = strstr(l, "\r\n")); l = e + 2)
        assert_true(e - l <= 998);
    html_part(msg, html, sizeof(html));
    assert_non_null(strstr(html, "<!DOCTYPE html>"));
    assert_non_null(
        strstr(html, "<img src=\"https://cdn.example/logo.png\" alt=\"Mugs &amp; &lt;Co&gt;\""));
    assert_null(strstr(html, "<Co>"));
    assert_non_null(strstr(html, "Thank you for your order #"));
    assert_non_null(strstr(html, "<td>Mug<br>"));
    assert_non_null(strstr(html, "Ada Lovelace<br>"));
    assert_non_null(strstr(html, "mailto:help@shop.test"));
    th_user_free(&sh.admin);
}

static void
test_webhook_signed(void **state)
{
    (void)state;
    shop_t sh = shop_new(srv);
    char body[256], path[128], secret[128];
    snprintf(body, sizeof(body), "{\"url\":\"http://127.0.0.1:%d/hook\",\"events\":[\"*\"]}",
             rx.port);
    th_resp_t r = rq(srv, sh.id, sh.admin.access, NULL, "POST", "/api/v1/admin/webhooks", body);
    assert_int_equal(r.status, 201);
    long hook = jint(r.json, "id");
    snprintf(secret, sizeof(secret), "%s", json_string_value(json_object_get(r.json, "secret")));
    assert_int_equal(strncmp(secret, "whsec_", 6), 0);
    th_resp_free(&r);
    /* Shown once: a read never has it. */
    snprintf(path, sizeof(path), "/api/v1/admin/webhooks/%ld", hook);
    r = rq(srv, sh.id, sh.admin.access, NULL, "GET", path, NULL);
    assert_int_equal(r.status, 200);
    assert_null(json_object_get(r.json, "secret"));
    assert_null(strstr(r.body, secret));
    th_resp_free(&r);
    /* Bad input: one 422 naming every field. */
    r = rq(srv, sh.id, sh.admin.access, NULL, "POST", "/api/v1/admin/webhooks",
           "{\"url\":\"ftp://x\",\"events\":[\"order.exploded\"],\"enabled\":1}");
    assert_int_equal(r.status, 422);
    assert_string_equal(th_error_code(&r), "validation_failed");
    assert_int_equal(json_array_size(json_object_get(json_object_get(r.json, "error"), "details")),
                     3);
    th_resp_free(&r);

    pthread_mutex_lock(&rx.lock);
    rx.answer = 200;
    int before = rx.nhits;
    pthread_mutex_unlock(&rx.lock);
    long oid;
    long number = order(srv, &sh, th_email("hooked"), &oid);
    /* order.placed and order.paid (the test provider pays at once). */
    int want = before + 2;
    assert_true(th_wait_until(hits_at_least, &want, 15000));
    bool placed = false, paid = false;
    /* Copied out: a failed assertion must not leave the receiver's lock held. */
    static hit_t got[MAX_HITS];
    pthread_mutex_lock(&rx.lock);
    int nhits = rx.nhits;
    memcpy(got, rx.hits, sizeof(got));
    pthread_mutex_unlock(&rx.lock);
    for (int i = before; i < nhits; i++) {
        hit_t *h = &got[i];
        assert_true(signature_valid(secret, h->sig, h->body));
        assert_false(signature_valid("whsec_wrong", h->sig, h->body));
        json_t *ev = json_loads(h->body, 0, NULL);
        assert_non_null(ev);
        assert_string_equal(json_string_value(json_object_get(ev, "id")), h->event_id);
        assert_int_equal(json_integer_value(json_object_get(ev, "store")), sh.id);
        json_t *data = json_object_get(ev, "data");
        assert_int_equal(json_integer_value(json_object_get(data, "order_id")), oid);
        assert_int_equal(json_integer_value(json_object_get(data, "number")), number);
        assert_null(json_object_get(data, "template"));
        const char *type = json_string_value(json_object_get(ev, "type"));
        placed |= strcmp(type, "order.placed") == 0;
        paid |= strcmp(type, "order.paid") == 0;
        json_decref(ev);
    }
    assert_true(placed);
    assert_true(paid);
    /* The deliveries are there for the admin. */
    snprintf(path, sizeof(path), "/api/v1/admin/webhooks/%ld/deliveries", hook);
    char sql[256];
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM webhook_deliveries WHERE store_id = %ld AND status_code = 200",
             sh.id);
    wait_sql(sql, 2, 5000);
    r = rq(srv, sh.id, sh.admin.access, NULL, "GET", path, NULL);
    assert_int_equal(r.status, 200);
    json_t *d0 = json_array_get(json_object_get(r.json, "data"), 0);
    assert_int_equal(jint(d0, "status_code"), 200);
    assert_int_equal(jint(d0, "attempt"), 1);
    long delivery = jint(d0, "id");
    char event_id[64];
    snprintf(event_id, sizeof(event_id), "%s", json_string_value(json_object_get(d0, "event_id")));
    th_resp_free(&r);

    /* Replays: one delivery's event again (same event id), then a time range. */
    char rpath[128];
    snprintf(rpath, sizeof(rpath), "/api/v1/admin/webhooks/%ld/replay", hook);
    before = hits();
    snprintf(body, sizeof(body), "{\"delivery_id\":%ld}", delivery);
    r = rq(srv, sh.id, sh.admin.access, NULL, "POST", rpath, body);
    assert_int_equal(r.status, 202);
    assert_int_equal(jint(r.json, "replayed"), 1);
    th_resp_free(&r);
    want = before + 1;
    assert_true(th_wait_until(hits_at_least, &want, 15000));
    pthread_mutex_lock(&rx.lock);
    char again[128];
    snprintf(again, sizeof(again), "%s", rx.hits[before].event_id);
    pthread_mutex_unlock(&rx.lock);
    assert_string_equal(again, event_id);
    wait_sql(sql, 3, 5000);
    /* The replayed job must be back to done before a range replay can pick it
     * (the receiver has its hit a moment before the job is marked). */
    char settled[256];
    snprintf(settled, sizeof(settled),
             "SELECT count(*) FROM jobs WHERE store_id = %ld AND kind = 'webhook' AND state NOT "
             "IN ('done', 'dead', 'discarded')",
             sh.id);
    wait_sql(settled, 0, 15000);
    before = hits();
    time_t now = time(NULL);
    char f[32], t[32];
    struct tm tm;
    time_t a = now - 3600, b = now + 3600;
    strftime(f, sizeof(f), "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&a, &tm));
    strftime(t, sizeof(t), "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&b, &tm));
    snprintf(body, sizeof(body), "{\"from\":\"%s\",\"to\":\"%s\"}", f, t);
    r = rq(srv, sh.id, sh.admin.access, NULL, "POST", rpath, body);
    assert_int_equal(r.status, 202);
    assert_int_equal(jint(r.json, "replayed"), 2);
    th_resp_free(&r);
    want = before + 2;
    assert_true(th_wait_until(hits_at_least, &want, 15000));
    /* A range before anything happened replays nothing. */
    r = rq(srv, sh.id, sh.admin.access, NULL, "POST", rpath,
           "{\"from\":\"2020-01-01T00:00:00Z\",\"to\":\"2020-01-02T00:00:00Z\"}");
    assert_int_equal(r.status, 202);
    assert_int_equal(jint(r.json, "replayed"), 0);
    th_resp_free(&r);
    /* Bad input, unknown deliveries, another store's endpoint, a disabled one. */
    static const char *const bad[] = {
        "{}",
        "{\"from\":\"yesterday\",\"to\":\"2030-01-01T00:00:00Z\"}",
        "{\"from\":\"2030-01-01T00:00:00Z\",\"to\":\"2020-01-01T00:00:00Z\"}",
        "{\"from\":\"2020-01-01T00:00:00Z\"}",
        "{\"delivery_id\":1,\"from\":\"2020-01-01T00:00:00Z\",\"to\":\"2030-01-01T00:00:00Z\"}",
        "{\"delivery_id\":\"x\"}",
        "{\"delivery_id\":1,\"all\":true}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        r = rq(srv, sh.id, sh.admin.access, NULL, "POST", rpath, bad[i]);
        assert_int_equal(r.status, 422);
        assert_string_equal(th_error_code(&r), "validation_failed");
        th_resp_free(&r);
    }
    r = rq(srv, sh.id, sh.admin.access, NULL, "POST", rpath, "{\"delivery_id\":999999999}");
    assert_int_equal(r.status, 404);
    assert_string_equal(th_error_code(&r), "delivery_not_found");
    th_resp_free(&r);
    shop_t other = shop_new(srv);
    snprintf(body, sizeof(body), "{\"delivery_id\":%ld}", delivery);
    r = rq(srv, other.id, other.admin.access, NULL, "POST", rpath, body);
    assert_int_equal(r.status, 404);
    assert_string_equal(th_error_code(&r), "webhook_not_found");
    th_resp_free(&r);
    th_user_free(&other.admin);
    r = rq(srv, sh.id, sh.admin.access, NULL, "PATCH", path_of_hook(path, sizeof(path), hook),
           "{\"enabled\":false}");
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
    snprintf(body, sizeof(body), "{\"delivery_id\":%ld}", delivery);
    r = rq(srv, sh.id, sh.admin.access, NULL, "POST", rpath, body);
    assert_int_equal(r.status, 409);
    assert_string_equal(th_error_code(&r), "webhook_disabled");
    th_resp_free(&r);
    th_user_free(&sh.admin);
}

static void
test_webhook_dead_letter_and_retry(void **state)
{
    (void)state;
    shop_t sh = shop_new(srv);
    char body[256], path[128];
    snprintf(body, sizeof(body),
             "{\"url\":\"http://127.0.0.1:%d/failing\",\"events\":[\"order.placed\"]}", rx.port);
    th_resp_t r = rq(srv, sh.id, sh.admin.access, NULL, "POST", "/api/v1/admin/webhooks", body);
    assert_int_equal(r.status, 201);
    long hook = jint(r.json, "id");
    th_resp_free(&r);
    pthread_mutex_lock(&rx.lock);
    rx.answer = 500;
    pthread_mutex_unlock(&rx.lock);
    int before = hits_of_store(sh.id);
    order(srv, &sh, th_email("dead"), NULL);
    /* Schedule "1,1": the first attempt and two retries, then a dead letter. */
    char sql[256];
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM jobs WHERE store_id = %ld AND kind = 'webhook' AND state = "
             "'dead'",
             sh.id);
    wait_sql(sql, 1, 20000);
    assert_int_equal(hits_of_store(sh.id) - before, 3);
    r = rq(srv, sh.id, sh.admin.access, NULL, "GET", "/api/v1/admin/jobs/dead-letters", NULL);
    assert_int_equal(r.status, 200);
    json_t *dl = json_array_get(json_object_get(r.json, "data"), 0);
    assert_non_null(dl);
    long job = jint(dl, "id");
    assert_string_equal(json_string_value(json_object_get(dl, "kind")), "webhook");
    assert_string_equal(json_string_value(json_object_get(dl, "event")), "order.placed");
    assert_int_equal(jint(dl, "attempts"), 3);
    assert_int_equal(jint(dl, "endpoint_id"), hook);
    assert_string_equal(json_string_value(json_object_get(dl, "last_error")),
                        "endpoint answered 500");
    th_resp_free(&r);
    /* Inspect: payload and the three failed deliveries. */
    snprintf(path, sizeof(path), "/api/v1/admin/jobs/dead-letters/%ld", job);
    r = rq(srv, sh.id, sh.admin.access, NULL, "GET", path, NULL);
    assert_int_equal(r.status, 200);
    assert_int_equal(json_array_size(json_object_get(r.json, "deliveries")), 3);
    assert_non_null(json_object_get(json_object_get(r.json, "payload"), "order_id"));
    th_resp_free(&r);
    assert_true(metric(srv, "shopd_jobs{kind=\"webhook\",state=\"dead\"} ") >= 1 ||
                metric(srv, "shopd_jobs_events_total{event=\"dead\"} ") >= 1);
    /* The endpoint is fixed; the operator enables it again (its failures outlasted
     * SHOPD_WEBHOOK_DISABLE_AFTER, so it was disabled) and retries: delivered
     * once more, done. */
    pthread_mutex_lock(&rx.lock);
    rx.answer = 200;
    pthread_mutex_unlock(&rx.lock);
    snprintf(path, sizeof(path), "/api/v1/admin/webhooks/%ld", hook);
    r = rq(srv, sh.id, sh.admin.access, NULL, "PATCH", path, "{\"enabled\":true}");
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
    snprintf(path, sizeof(path), "/api/v1/admin/jobs/dead-letters/%ld/retry", job);
    r = rq(srv, sh.id, sh.admin.access, NULL, "POST", path, NULL);
    assert_int_equal(r.status, 200);
    assert_string_equal(json_string_value(json_object_get(r.json, "state")), "ready");
    th_resp_free(&r);
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM jobs WHERE store_id = %ld AND id = %ld AND state = 'done'",
             sh.id, job);
    wait_sql(sql, 1, 15000);
    assert_int_equal(hits_of_store(sh.id) - before, 4);
    r = rq(srv, sh.id, sh.admin.access, NULL, "POST", path, NULL);
    assert_int_equal(r.status, 404); /* no longer a dead letter */
    th_resp_free(&r);
    r = rq(srv, sh.id, sh.admin.access, NULL, "GET", "/api/v1/admin/jobs/dead-letters", NULL);
    assert_int_equal(json_array_size(json_object_get(r.json, "data")), 0);
    th_resp_free(&r);

    /* A second failure, discarded by the operator: kept, marked, out of the list. */
    pthread_mutex_lock(&rx.lock);
    rx.answer = 503;
    pthread_mutex_unlock(&rx.lock);
    order(srv, &sh, th_email("dead2"), NULL);
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM jobs WHERE store_id = %ld AND kind = 'webhook' AND state = "
             "'dead'",
             sh.id);
    wait_sql(sql, 1, 20000);
    job = atol(th_sql("SELECT id FROM jobs WHERE state = 'dead' ORDER BY id DESC LIMIT 1", NULL));
    snprintf(path, sizeof(path), "/api/v1/admin/jobs/dead-letters/%ld", job);
    r = rq(srv, sh.id, sh.admin.access, NULL, "DELETE", path, NULL);
    assert_int_equal(r.status, 204);
    th_resp_free(&r);
    snprintf(sql, sizeof(sql), "SELECT state FROM jobs WHERE id = %ld", job);
    assert_string_equal(th_sql(sql, NULL), "discarded");
    r = rq(srv, sh.id, sh.admin.access, NULL, "GET",
           "/api/v1/admin/jobs/dead-letters?state=discarded", NULL);
    assert_int_equal(jint(json_array_get(json_object_get(r.json, "data"), 0), "id"), job);
    th_resp_free(&r);
    pthread_mutex_lock(&rx.lock);
    rx.answer = 200;
    pthread_mutex_unlock(&rx.lock);
    th_user_free(&sh.admin);
}

/* An endpoint that fails for longer than SHOPD_WEBHOOK_DISABLE_AFTER is
 * disabled by its dead letter, and the store's admins get an e-mail. */
static void
test_failing_endpoint_disabled(void **state)
{
    (void)state;
    shop_t sh = shop_new(srv);
    char body[256], path[128];
    snprintf(body, sizeof(body),
             "{\"url\":\"http://127.0.0.1:%d/broken\",\"events\":[\"order.placed\"]}", rx.port);
    th_resp_t r = rq(srv, sh.id, sh.admin.access, NULL, "POST", "/api/v1/admin/webhooks", body);
    assert_int_equal(r.status, 201);
    long hook = jint(r.json, "id");
    th_resp_free(&r);
    pthread_mutex_lock(&rx.lock);
    rx.answer = 500;
    pthread_mutex_unlock(&rx.lock);
    order(srv, &sh, th_email("broken"), NULL);
    mail_wait_t w = {outbox, sh.admin.email, "was disabled"};
    assert_true(th_wait_until(mail_arrived, &w, 20000));
    pthread_mutex_lock(&rx.lock);
    rx.answer = 200;
    pthread_mutex_unlock(&rx.lock);
    snprintf(path, sizeof(path), "/api/v1/admin/webhooks/%ld", hook);
    r = rq(srv, sh.id, sh.admin.access, NULL, "GET", path, NULL);
    assert_int_equal(r.status, 200);
    assert_true(json_is_false(json_object_get(r.json, "enabled")));
    th_resp_free(&r);
    th_user_free(&sh.admin);
}

/* A password reset's e-mail goes through the outbox too; once it is sent the
 * outbox row keeps no token. */
static void
test_reset_email_leaves_no_token(void **state)
{
    (void)state;
    long store = th_create_store(srv, th_slug("jobs-reset"), NULL);
    th_user_t u = th_user_new(srv, "CUSTOMER", store);
    char body[256];
    snprintf(body, sizeof(body), "{\"email\":\"%s\"}", u.email);
    th_resp_t r = rq(srv, store, NULL, NULL, "POST", "/api/v1/auth/forgot-password", body);
    assert_int_equal(r.status, 202);
    th_resp_free(&r);
    mail_wait_t w = {outbox, u.email, "Reset-Token: "};
    assert_true(th_wait_until(mail_arrived, &w, 15000));
    char sql[256];
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM jobs WHERE store_id = %ld AND kind = 'email' AND state = "
             "'done'",
             store);
    wait_sql(sql, 1, 5000);
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM outbox WHERE store_id = %ld AND kind = "
             "'password.reset_requested' AND NOT payload ? 'token' AND NOT payload ? 'url'",
             store);
    assert_int_equal(sql_long(sql), 1);
    th_user_free(&u);
}

/* Another store's admin sees none of it. */
static void
test_cross_store(void **state)
{
    (void)state;
    shop_t a = shop_new(srv), b = shop_new(srv);
    char body[256], path[128];
    snprintf(body, sizeof(body), "{\"url\":\"http://127.0.0.1:%d/a\",\"events\":[\"*\"]}", rx.port);
    th_resp_t r = rq(srv, a.id, a.admin.access, NULL, "POST", "/api/v1/admin/webhooks", body);
    assert_int_equal(r.status, 201);
    long hook = jint(r.json, "id");
    th_resp_free(&r);
    snprintf(path, sizeof(path), "/api/v1/admin/webhooks/%ld", hook);
    r = rq(srv, b.id, b.admin.access, NULL, "GET", path, NULL);
    assert_int_equal(r.status, 404);
    th_resp_free(&r);
    r = rq(srv, b.id, b.admin.access, NULL, "PATCH", path, "{\"enabled\":false}");
    assert_int_equal(r.status, 404);
    th_resp_free(&r);
    r = rq(srv, b.id, a.admin.access, NULL, "GET", path, NULL);
    assert_int_equal(r.status, 403);
    th_resp_free(&r);
    r = rq(srv, a.id, a.admin.access, NULL, "PATCH", path, "{\"enabled\":false}");
    assert_int_equal(r.status, 200);
    assert_true(json_is_false(json_object_get(r.json, "enabled")));
    th_resp_free(&r);
    r = rq(srv, a.id, a.admin.access, NULL, "DELETE", path, NULL);
    assert_int_equal(r.status, 204);
    th_resp_free(&r);
    th_user_free(&a.admin);
    th_user_free(&b.admin);
}

/* SMTP over libcurl against the sink: a 451 is retried and the message then
 * arrives with its headers; a 550 is a dead letter after one attempt; a
 * stalled server times out and is retried. */
static void
test_smtp(void **state)
{
    (void)state;
    /* The servers of this program share the streams: this one runs alone. */
    assert_int_equal(th_stop(srv), 0);
    srv = NULL;
    sink.fd = listen_free(&sink.port);
    pthread_create(&sink.thread, NULL, sink_main, NULL);
    static char url[100];
    snprintf(url, sizeof(url), "SHOPD_SMTP_URL=smtp://127.0.0.1:%d", sink.port);
    const char *env[] = {url,
                         "SHOPD_SMTP_TLS=none",
                         "SHOPD_SMTP_TIMEOUT_MS=5000",
                         "SHOPD_MAIL_FROM=orders@shop.test",
                         "SHOPD_JOBS_POLL_MS=50",
                         "SHOPD_JOBS_RETRY_SCHEDULE=1,1",
                         NULL};
    th_server_t *s = th_start(env);
    shop_t sh = shop_new(s);
    pthread_mutex_lock(&sink.lock);
    sink.data_code = 451;
    pthread_mutex_unlock(&sink.lock);
    const char *to = th_email("smtp");
    long number = order(s, &sh, to, NULL);
    int want = 1;
    assert_true(th_wait_until(sink_has, &want, 20000));
    pthread_mutex_lock(&sink.lock);
    char msg[32768], rcpt[256];
    snprintf(msg, sizeof(msg), "%s", sink.msg);
    snprintf(rcpt, sizeof(rcpt), "%s", sink.rcpt);
    int datas = sink.datas;
    pthread_mutex_unlock(&sink.lock);
    assert_int_equal(datas, 2); /* 451 once, then accepted */
    char want_to[300], subject[128];
    snprintf(want_to, sizeof(want_to), "<%s>", to);
    assert_non_null(strstr(rcpt, want_to));
    snprintf(want_to, sizeof(want_to), "To: %s\r\n", to);
    assert_non_null(strstr(msg, want_to));
    snprintf(subject, sizeof(subject), "Subject: Your order #%ld", number);
    assert_non_null(strstr(msg, subject));
    assert_non_null(strstr(msg, "From: "));
    assert_non_null(strstr(msg, "<orders@shop.test>"));
    assert_non_null(strstr(msg, "Message-ID: <job-"));
    assert_non_null(strstr(msg, "2 x Mug"));
    char sql[256];
    snprintf(sql, sizeof(sql),
             "SELECT attempts FROM jobs WHERE store_id = %ld AND kind = 'email' AND state = "
             "'done'",
             sh.id);
    wait_sql(sql, 2, 5000);

    /* 550: refused for good, a dead letter at once with the server's answer. */
    pthread_mutex_lock(&sink.lock);
    sink.rcpt_code = 550;
    pthread_mutex_unlock(&sink.lock);
    order(s, &sh, th_email("nobody"), NULL);
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM jobs WHERE store_id = %ld AND kind = 'email' AND state = "
             "'dead' AND attempts = 1 AND last_error LIKE '%%550%%'",
             sh.id);
    wait_sql(sql, 1, 20000);
    assert_int_equal(sink_delivered(), 1);
    pthread_mutex_lock(&sink.lock);
    sink.rcpt_code = 250;
    pthread_mutex_unlock(&sink.lock);
    th_user_free(&sh.admin);
    assert_int_equal(th_stop(s), 0);

    /* A server that accepts and never greets: each attempt times out, then a
     * dead letter (schedule "1": two attempts). */
    int stall_port, stall = listen_free(&stall_port);
    snprintf(url, sizeof(url), "SHOPD_SMTP_URL=smtp://127.0.0.1:%d", stall_port);
    const char *env2[] = {url,
                          "SHOPD_SMTP_TLS=none",
                          "SHOPD_SMTP_TIMEOUT_MS=300",
                          "SHOPD_JOBS_POLL_MS=50",
                          "SHOPD_JOBS_RETRY_SCHEDULE=1",
                          NULL};
    s = th_start(env2);
    sh = shop_new(s);
    order(s, &sh, th_email("stalled"), NULL);
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM jobs WHERE store_id = %ld AND kind = 'email' AND state = "
             "'dead' AND attempts = 2 AND last_error LIKE '%%imeout%%'",
             sh.id);
    wait_sql(sql, 1, 20000);
    close(stall);
    th_user_free(&sh.admin);
    assert_int_equal(th_stop(s), 0);
}

/* Redis down: checkouts still commit their outbox rows, the relay keeps
 * failing without losing them, and once Redis is back (empty: no streams, no
 * groups) it catches up and the e-mail goes out. */
static void
test_redis_down(void **state)
{
    (void)state;
    int port = th_free_port();
    int rpid = th_redis_start(port, NULL);
    assert_true(rpid > 0);
    static char ob[200], url[100];
    snprintf(ob, sizeof(ob), "SHOPD_OUTBOX_DIR=%s", outbox);
    snprintf(url, sizeof(url), "SHOPD_REDIS_URL=redis://127.0.0.1:%d/0", port);
    const char *env[] = {ob, url, "SHOPD_JOBS_POLL_MS=50", NULL};
    th_server_t *s = th_start(env);
    shop_t sh = shop_new(s);
    th_user_t u = th_user_new(s, "CUSTOMER", sh.id);
    char body[512];
    snprintf(body, sizeof(body), "{\"variant_id\":%ld,\"quantity\":2}", sh.variant);
    th_resp_t r = rq(s, sh.id, u.access, NULL, "POST", "/api/v1/cart/add", body);
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
    kill(rpid, SIGKILL);
    waitpid(rpid, NULL, 0);
    snprintf(body, sizeof(body),
             "{\"shipping_address\":{\"name\":\"Ada\",\"line1\":\"Str 1\",\"city\":\"Berlin\","
             "\"postal_code\":\"10115\",\"country\":\"DE\"},\"shipping_rate_id\":%ld}",
             sh.rate);
    r = rq(s, sh.id, u.access, NULL, "POST", "/api/v1/checkout", body);
    assert_int_equal(r.status, 201); /* a customer's cart and the order are in PostgreSQL */
    long number = jint(r.json, "number");
    th_resp_free(&r);
    char sql[256];
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM jobs WHERE store_id = %ld AND kind = 'email' AND state = "
             "'ready'",
             sh.id);
    for (int i = 0; i < 20; i++)
        usleep(50000);                  /* a dozen relay steps fail meanwhile */
    assert_int_equal(sql_long(sql), 0); /* rolled back with the XADD: still an outbox row */
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM outbox WHERE store_id = %ld AND relayed_at IS NULL", sh.id);
    assert_true(sql_long(sql) >= 1);
    assert_true(metric(s, "shopd_jobs_events_total{event=\"relay_error\"} ") >= 1);
    char needle[64];
    snprintf(needle, sizeof(needle), "Your order #%ld", number);
    assert_int_equal(mails(outbox, u.email, needle, NULL, 0), 0);
    rpid = th_redis_start(port, NULL);
    assert_true(rpid > 0);
    mail_wait_t w = {outbox, u.email, needle};
    assert_true(th_wait_until(mail_arrived, &w, 20000));
    th_user_free(&u);
    th_user_free(&sh.admin);
    assert_int_equal(th_stop(s), 0);
    kill(rpid, SIGTERM);
    waitpid(rpid, NULL, 0);
}

/* SSRF: with the defence on (the default), an https endpoint on loopback is
 * never connected to; the delivery fails and is recorded. */
static void
test_ssrf_canary(void **state)
{
    (void)state;
    int port, canary = listen_free(&port);
    static char ob[200];
    snprintf(ob, sizeof(ob), "SHOPD_OUTBOX_DIR=%s", outbox);
    const char *env[] = {ob, "SHOPD_JOBS_POLL_MS=50", "SHOPD_WEBHOOK_RETRY_SCHEDULE=1", NULL};
    /* The servers of this program share the streams, and the rules are those of
     * whichever process delivers: this one runs alone, with the defaults. */
    th_server_t *s = th_start(env);
    shop_t sh = shop_new(s);
    char body[256];
    snprintf(body, sizeof(body), "{\"url\":\"http://127.0.0.1:%d/x\",\"events\":[\"*\"]}", port);
    th_resp_t r = rq(s, sh.id, sh.admin.access, NULL, "POST", "/api/v1/admin/webhooks", body);
    assert_int_equal(r.status, 422); /* http:// refused */
    th_resp_free(&r);
    snprintf(body, sizeof(body), "{\"url\":\"https://127.0.0.1:%d/x\",\"events\":[\"*\"]}", port);
    r = rq(s, sh.id, sh.admin.access, NULL, "POST", "/api/v1/admin/webhooks", body);
    assert_int_equal(r.status, 201);
    th_resp_free(&r);
    order(s, &sh, th_email("ssrf"), NULL);
    char sql[256];
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM jobs WHERE store_id = %ld AND kind = 'webhook' AND state = "
             "'dead'",
             sh.id);
    wait_sql(sql, 2, 20000);
    /* Nothing ever connected: accept would find a queued connection. */
    struct timeval tv = {0, 100000};
    setsockopt(canary, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    int c = accept(canary, NULL, NULL);
    assert_true(c < 0);
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM webhook_deliveries WHERE store_id = %ld AND status_code IS "
             "NULL AND error LIKE 'delivery failed%%'",
             sh.id);
    assert_true(sql_long(sql) >= 2);
    close(canary);
    th_user_free(&sh.admin);
    assert_int_equal(th_stop(s), 0);
}

/* kill -9 while e-mails are in flight, then a new process: every e-mail sent,
 * once, and the duplicate entries skipped. */
/* 50 orders placed while the relay is held (the test keeps its advisory lock)
 * reach the pump together: their jobs are taken a batch per read (one
 * statement each, up to SHOPD_JOBS_INFLIGHT entries) and their outcomes
 * written in groups, and still every order gets exactly one e-mail, each job
 * counts one attempt, and the one job of the batch that fails for good (its
 * template unknown) is a dead letter on its own while the others are done. */
static void
test_batch_of_orders(void **state)
{
    (void)state;
    shop_t sh = shop_new(srv);
    enum { N = 50 };
    PGconn *hold = PQconnectdb(th_env("SHOPD_TEST_DATABASE_URL"));
    assert_int_equal(PQstatus(hold), CONNECTION_OK);
    PGresult *lr = PQexec(hold, "SELECT pg_advisory_lock(7417140001)"); /* the relay's step */
    assert_int_equal(PQresultStatus(lr), PGRES_TUPLES_OK);
    PQclear(lr);
    long takes0 = metric(srv, "shopd_jobs_events_total{event=\"take_batch\"} ");
    long fins0 = metric(srv, "shopd_jobs_events_total{event=\"finish_batch\"} ");
    char to[N][128];
    long numbers[N], ids[N];
    for (int i = 0; i < N; i++) {
        snprintf(to[i], sizeof(to[i]), "%s", th_email("batch"));
        numbers[i] = order(srv, &sh, to[i], &ids[i]);
    }
    char sql[512];
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM jobs WHERE store_id = %ld", sh.id);
    assert_int_equal(sql_long(sql), 0); /* nothing relayed while the lock is held */
    /* One job of the batch will fail for good. */
    snprintf(sql, sizeof(sql),
             "UPDATE outbox SET payload = payload || '{\"template\": \"no_such_template\"}' WHERE "
             "store_id = %ld AND kind = 'order.placed' AND (payload->>'order_id')::bigint = %ld",
             sh.id, ids[N / 2]);
    th_sql(sql, NULL);
    PQclear(PQexec(hold, "SELECT pg_advisory_unlock(7417140001)"));
    PQfinish(hold);

    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM jobs WHERE store_id = %ld AND kind = 'email' AND state IN "
             "('done', 'dead')",
             sh.id);
    wait_sql(sql, N, 30000);
    for (int i = 0; i < N; i++) {
        char needle[64];
        snprintf(needle, sizeof(needle), "Your order #%ld", numbers[i]);
        assert_int_equal(mails(outbox, to[i], needle, NULL, 0), i == N / 2 ? 0 : 1);
    }
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FILTER (WHERE state = 'done' AND attempts = 1 AND last_error IS "
             "NULL) || ',' || count(*) FILTER (WHERE state = 'dead' AND attempts = 1 AND "
             "last_error = 'unknown template no_such_template') || ',' || count(*) FROM jobs "
             "WHERE store_id = %ld AND kind = 'email'",
             sh.id);
    char want[32];
    snprintf(want, sizeof(want), "%d,1,%d", N - 1, N);
    assert_string_equal(th_sql(sql, NULL), want);
    /* The dead letter is listed for the operator. */
    th_resp_t r =
        rq(srv, sh.id, sh.admin.access, NULL, "GET", "/api/v1/admin/jobs/dead-letters", NULL);
    assert_int_equal(r.status, 200);
    assert_int_equal(json_array_size(json_object_get(r.json, "data")), 1);
    assert_int_equal(jint(json_array_get(json_object_get(r.json, "data"), 0), "attempts"), 1);
    th_resp_free(&r);
    /* Batches: the 50 entries came in a few reads (one take statement each, up
     * to SHOPD_JOBS_INFLIGHT = 32 entries per read), never one per job; each
     * take hands a store's jobs out in at most one chunk per lane of the store,
     * and a chunk's outcomes are written in one statement. */
    long takes = metric(srv, "shopd_jobs_events_total{event=\"take_batch\"} ") - takes0;
    long fins = metric(srv, "shopd_jobs_events_total{event=\"finish_batch\"} ") - fins0;
    print_message("batch of %d: %ld take statements, %ld finish statements\n", N, takes, fins);
    assert_true(takes >= 2 && takes <= 6);
    assert_true(fins >= 1 && fins < N / 2);
    th_user_free(&sh.admin);
}

static void
test_kill9_loses_nothing(void **state)
{
    (void)state;
    int smtp_port, stall = listen_free(&smtp_port); /* accepts (backlog), never greets */
    static char ob[200], smtp[100];
    snprintf(ob, sizeof(ob), "SHOPD_OUTBOX_DIR=%s", outbox);
    snprintf(smtp, sizeof(smtp), "SHOPD_SMTP_URL=smtp://127.0.0.1:%d", smtp_port);
    const char *env1[] = {ob,
                          smtp,
                          "SHOPD_SMTP_TLS=none",
                          "SHOPD_SMTP_TIMEOUT_MS=120000",
                          "SHOPD_BLOCKING_THREADS=8",
                          "SHOPD_JOBS_POLL_MS=50",
                          "SHOPD_JOBS_VISIBILITY_MS=1500",
                          NULL};
    th_server_t *a = th_start(env1);
    shop_t sh = shop_new(a);
    enum { N = 4 };
    char to[N][128];
    long numbers[N];
    for (int i = 0; i < N; i++) {
        snprintf(to[i], sizeof(to[i]), "%s", th_email("crash"));
        numbers[i] = order(a, &sh, to[i], NULL);
    }
    char sql[256];
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM jobs WHERE store_id = %ld AND kind = 'email' AND state = "
             "'running'",
             sh.id);
    wait_sql(sql, N, 20000); /* all four are stuck in the stalled SMTP session */
    /* What a relay killed between XADD and COMMIT leaves: a second entry per job. */
    kv_conn_t *kv = kv_conn_new(th_env("SHOPD_TEST_REDIS_URL"), 2000);
    char q[256];
    snprintf(q, sizeof(q),
             "SELECT string_agg(id::text, ',') FROM jobs WHERE store_id = %ld AND kind = 'email'",
             sh.id);
    char ids[256];
    snprintf(ids, sizeof(ids), "%s", th_sql(q, NULL));
    char store[24];
    snprintf(store, sizeof(store), "%ld", sh.id);
    int dups = 0;
    for (char *tok = strtok(ids, ","); tok && dups < 2; tok = strtok(NULL, ","), dups++) {
        redisReply *x = kv_command(kv, "XADD shopd:jobs:email * store %s job %s", store, tok);
        assert_non_null(x);
        assert_int_equal(x->type, REDIS_REPLY_STRING);
        freeReplyObject(x);
    }
    kv_conn_free(kv);
    /* The pump takes rows itself, so a live consumer may see the duplicates
     * before it dies (their jobs are running, taken recently): both processes'
     * counts together must show them. */
    long dups_a = 0;
    for (int i = 0; i < 40 && dups_a < 2; i++) {
        dups_a = metric(a, "shopd_jobs_events_total{event=\"duplicate\"} ");
        if (dups_a < 2)
            usleep(50000);
    }
    kill(a->pid, SIGKILL);
    assert_int_equal(th_stop(a), 128 + SIGKILL);
    close(stall);

    /* A new process with the file outbox. */
    const char *env2[] = {ob, "SHOPD_JOBS_POLL_MS=50", "SHOPD_JOBS_VISIBILITY_MS=1500", NULL};
    th_server_t *b = th_start(env2);
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM jobs WHERE store_id = %ld AND kind = 'email' AND state = "
             "'done'",
             sh.id);
    wait_sql(sql, N, 30000);
    for (int i = 0; i < N; i++) {
        char needle[64];
        snprintf(needle, sizeof(needle), "Your order #%ld", numbers[i]);
        assert_int_equal(mails(outbox, to[i], needle, NULL, 0), 1);
    }
    /* The taken-over entries and the duplicates, seen by the new process; give
     * the duplicates the time to come through. */
    long claimed = metric(b, "shopd_jobs_events_total{event=\"claimed\"} ");
    assert_true(claimed >= N);
    for (int i = 0;
         i < 200 && dups_a + metric(b, "shopd_jobs_events_total{event=\"duplicate\"} ") < 2; i++)
        usleep(50000);
    assert_true(dups_a + metric(b, "shopd_jobs_events_total{event=\"duplicate\"} ") >= 2);
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM jobs WHERE store_id = %ld AND state <> 'done'",
             sh.id);
    assert_int_equal(sql_long(sql), 0);
    th_user_free(&sh.admin);
    srv = b; /* stopped by TH_STOP_TEST */
}

static int
setup(void **state)
{
    (void)state;
    snprintf(outbox, sizeof(outbox), "/tmp/shopd-jobs-outbox-%d", (int)getpid());
    rx.fd = listen_free(&rx.port);
    pthread_create(&rx.thread, NULL, rx_main, NULL);
    static char ob[200];
    snprintf(ob, sizeof(ob), "SHOPD_OUTBOX_DIR=%s", outbox);
    const char *env[] = {ob,
                         "SHOPD_JOBS_POLL_MS=50",
                         "SHOPD_JOBS_VISIBILITY_MS=2000",
                         "SHOPD_WEBHOOK_ALLOW_INSECURE=true",
                         "SHOPD_WEBHOOK_RETRY_SCHEDULE=1,1",
                         "SHOPD_WEBHOOK_DISABLE_AFTER=1",
                         "SHOPD_JOBS_RETRY_SCHEDULE=1,1",
                         NULL};
    srv = th_start(env);
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    char cmd[200];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", outbox);
    if (system(cmd) != 0) {
    }
    return 0;
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_confirmation_email),
        cmocka_unit_test(test_email_html_and_branding),
        cmocka_unit_test(test_webhook_signed),
        cmocka_unit_test(test_webhook_dead_letter_and_retry),
        cmocka_unit_test(test_failing_endpoint_disabled),
        cmocka_unit_test(test_reset_email_leaves_no_token),
        cmocka_unit_test(test_cross_store),
        cmocka_unit_test(test_batch_of_orders),
        cmocka_unit_test(test_smtp),
        cmocka_unit_test(test_redis_down),
        cmocka_unit_test(test_ssrf_canary),
        cmocka_unit_test(test_kill9_loses_nothing),
        TH_STOP_TEST,
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
