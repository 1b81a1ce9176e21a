/*
 * webhook.c: outgoing webhooks to integrators. Store admins register endpoints
 * (a URL, the event types it wants, a secret shown once); each order event
 * becomes one delivery job per subscribed endpoint (relay.c), and a delivery is
 * a POST of the event as JSON, signed like Stripe's scheme:
 *     Shopd-Signature: t=<unix time>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>
 * A receiver recomputes the HMAC over the raw body, compares in constant time
 * and rejects old timestamps; the event id (Shopd-Event-Id and "id" in the
 * body) is stable across retries, so receivers dedupe by it. Any answer other
 * than 2xx, a timeout or a refused connection is retried on
 * SHOPD_WEBHOOK_RETRY_SCHEDULE (about 3 days), then kept as a dead letter.
 * Every attempt is recorded (webhook_deliveries). An endpoint that failed for
 * SHOPD_WEBHOOK_DISABLE_AFTER (3 days) without a success is disabled when its
 * last job becomes a dead letter, and the store's admins get an e-mail.
 *
 * SSRF: only https, and the address actually connected to (checked after DNS,
 * in curl's opensocket callback) must be public: no loopback, private,
 * link-local, CGNAT or multicast targets; no redirects followed; answers read
 * up to 64 KiB, the whole delivery bounded by SHOPD_WEBHOOK_TIMEOUT_MS.
 * SHOPD_WEBHOOK_ALLOW_INSECURE lifts the scheme and address rules (tests).
 *
 * The endpoint's secret is kept sealed (include/shopd/seal.h, context
 * "webhook_endpoints.secret:<store>"): opened only to sign a delivery, shown
 * in plain text once, in the answer that creates the endpoint. Rows kept in
 * plain text from before sealing, or under the previous key, are sealed again
 * at start-up (jobs_reseal_rows).
 */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "jobs_priv.h"
#include "shopd/log.h"
#include "shopd/seal.h"

#define RESPONSE_KEEP 1024      /* bytes of an answer kept in the delivery row */
#define RESPONSE_MAX (64 << 10) /* bytes read at most */

static const char *const event_types[] = {"order.placed",
                                          "order.paid",
                                          "order.processing",
                                          "order.shipped",
                                          "order.delivered",
                                          "order.cancelled",
                                          "*",
                                          NULL};

void
jobs_sign(const char *secret, long long t, const char *body, size_t len, char *out)
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    char ts[24];
    int tl = snprintf(ts, sizeof(ts), "%lld.", t);
    /* A MAC context: the message is two pieces, the timestamp and the body. */
    EVP_MAC *m = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *c = m ? EVP_MAC_CTX_new(m) : NULL;
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string("digest", "SHA256", 0),
                           OSSL_PARAM_construct_end()};
    size_t ml = 0;
    if (c && EVP_MAC_init(c, (const unsigned char *)secret, strlen(secret), params) &&
        EVP_MAC_update(c, (const unsigned char *)ts, (size_t)tl) &&
        EVP_MAC_update(c, (const unsigned char *)body, len) &&
        EVP_MAC_final(c, mac, &ml, sizeof(mac)))
        maclen = (unsigned)ml;
    EVP_MAC_CTX_free(c);
    EVP_MAC_free(m);
    int k = snprintf(out, JOBS_SIG_MAX, "t=%lld,v1=", t);
    for (unsigned i = 0; i < maclen && k + 3 < JOBS_SIG_MAX; i++)
        k += snprintf(out + k, (size_t)(JOBS_SIG_MAX - k), "%02x", mac[i]);
}

/* ---- delivery ---- */

static bool
public_address(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET) {
        uint32_t a = ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr);
        return !((a >> 24) == 0 || (a >> 24) == 10 || (a >> 24) == 127 ||
                 (a >> 16) == 0xa9fe ||              /* 169.254/16 link-local */
                 (a >> 20) == 0xac1 ||               /* 172.16/12 */
                 (a >> 16) == 0xc0a8 ||              /* 192.168/16 */
                 (a >> 22) == (0x64400000u >> 22) || /* 100.64/10 CGNAT */
                 (a >> 28) >= 0xe);                  /* multicast, reserved */
    }
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (IN6_IS_ADDR_LOOPBACK(a) || IN6_IS_ADDR_UNSPECIFIED(a) || IN6_IS_ADDR_LINKLOCAL(a) ||
            IN6_IS_ADDR_SITELOCAL(a) || IN6_IS_ADDR_MULTICAST(a) || (a->s6_addr[0] & 0xfe) == 0xfc)
            return false;
        if (IN6_IS_ADDR_V4MAPPED(a)) {
            struct sockaddr_in v4 = {.sin_family = AF_INET};
            memcpy(&v4.sin_addr, a->s6_addr + 12, 4);
            return public_address((const struct sockaddr *)&v4);
        }
        return true;
    }
    return false;
}

static curl_socket_t
open_checked(void *ud, curlsocktype purpose, struct curl_sockaddr *addr)
{
    (void)ud;
    if (purpose != CURLSOCKTYPE_IPCXN || !public_address(&addr->addr))
        return CURL_SOCKET_BAD; /* the connection is refused before it is made */
    return socket(addr->family, addr->socktype, addr->protocol);
}

typedef struct answer_s {
    char keep[RESPONSE_KEEP + 1];
    size_t n, total;
} answer_t;

static size_t
answer_cb(char *p, size_t size, size_t nmemb, void *ud)
{
    answer_t *a = ud;
    size_t n = size * nmemb;
    if (a->n < RESPONSE_KEEP) {
        size_t k = n < RESPONSE_KEEP - a->n ? n : RESPONSE_KEEP - a->n;
        /* Printable ASCII only: the excerpt is for eyes, and text PostgreSQL
         * accepts whatever bytes the endpoint sent. */
        for (size_t i = 0; i < k; i++) {
            unsigned char ch = (unsigned char)p[i];
            a->keep[a->n + i] = (ch >= 0x20 && ch < 0x7f) || ch == '\n' ? (char)ch : '?';
        }
        a->n += k;
        a->keep[a->n] = '\0';
    }
    a->total += n;
    return a->total > RESPONSE_MAX ? 0 : n; /* 0 ends the transfer */
}

static bool
url_allowed(const app_t *app, const char *url)
{
    if (strncmp(url, "https://", 8) == 0)
        return true;
    return app->cfg->webhook_allow_insecure && strncmp(url, "http://", 7) == 0;
}

shopd_rc_t
jobs_webhook_job(api_ctx_t *ctx, db_conn_t *c, uint64_t job_id, uint64_t outbox_id,
                 uint64_t endpoint_id, int attempt, const char *event_type, const char *payload,
                 long long created, char *err, size_t errlen)
{
    char sid[24], eid[24], jid[24];
    snprintf(sid, sizeof(sid), "%llu", (unsigned long long)ctx->store_id);
    snprintf(eid, sizeof(eid), "%llu", (unsigned long long)endpoint_id);
    snprintf(jid, sizeof(jid), "%llu", (unsigned long long)job_id);
    const char *p[] = {sid, eid};
    PGresult *r = db_exec(c, "jobs_hook_endpoint",
                          "SELECT url, secret, enabled FROM webhook_endpoints WHERE store_id = $1 "
                          "AND id = $2",
                          2, p);
    if (db_result_rc(r) != SHOPD_OK || PQntuples(r) != 1) {
        bool gone = db_result_rc(r) == SHOPD_OK;
        PQclear(r);
        snprintf(err, errlen, gone ? "endpoint deleted" : "database unavailable");
        return gone ? SHOPD_INVALID : SHOPD_AGAIN;
    }
    char *url = shopd_strdup(PQgetvalue(r, 0, 0)), secret[SEAL_MAX_PLAIN + 1], aad[80];
    bool enabled = PQgetvalue(r, 0, 2)[0] == 't';
    jobs_hook_aad(aad, sizeof(aad), ctx->store_id);
    bool opened = seal_open_or_plain(seal_process(), PQgetvalue(r, 0, 1), aad, secret,
                                     sizeof(secret)) == SHOPD_OK;
    PQclear(r);

    char event_id[64];
    snprintf(event_id, sizeof(event_id), "evt_%s_%llu", sid, (unsigned long long)outbox_id);
    json_t *data = json_loads(payload, 0, NULL);
    json_object_del(data, "template");
    json_t *ev = json_pack("{s:s, s:s, s:I, s:I, s:o}", "id", event_id, "type", event_type,
                           "created", (json_int_t)created, "store", (json_int_t)ctx->store_id,
                           "data", data ? data : json_object());
    char *body = json_dumps(ev, JSON_COMPACT);
    json_decref(ev);

    shopd_rc_t rc = SHOPD_AGAIN;
    long code = 0;
    answer_t ans = {.n = 0};
    uint64_t t0 = shopd_now_us();
    if (!enabled) {
        snprintf(err, errlen, "endpoint disabled");
        rc = SHOPD_INVALID;
    } else if (!opened) {
        /* Retried, not dropped: the operator may restart with the right key. */
        snprintf(err, errlen, "endpoint secret does not open (SHOPD_SECRETS_KEY?)");
        rc = SHOPD_AGAIN;
    } else if (!url_allowed(ctx->app, url)) {
        snprintf(err, errlen, "endpoint URL not allowed (https only)");
        rc = SHOPD_INVALID;
    } else {
        char sig[JOBS_SIG_MAX], h1[160], h2[200], h3[120], h4[120];
        jobs_sign(secret, (long long)time(NULL), body, strlen(body), sig);
        snprintf(h1, sizeof(h1), "Shopd-Signature: %s", sig);
        snprintf(h2, sizeof(h2), "Shopd-Event-Id: %s", event_id);
        snprintf(h3, sizeof(h3), "Shopd-Event-Type: %s", event_type);
        snprintf(h4, sizeof(h4), "Shopd-Delivery-Attempt: %d", attempt);
        struct curl_slist *hs = curl_slist_append(NULL, "Content-Type: application/json");
        hs = curl_slist_append(hs, "User-Agent: shopd-webhooks/1");
        hs = curl_slist_append(hs, "Expect:");
        hs = curl_slist_append(hs, h1);
        hs = curl_slist_append(hs, h2);
        hs = curl_slist_append(hs, h3);
        hs = curl_slist_append(hs, h4);
        CURL *h = curl_easy_init();
        curl_easy_setopt(h, CURLOPT_URL, url);
        curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR,
                         ctx->app->cfg->webhook_allow_insecure ? "http,https" : "https");
        curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
        curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)ctx->app->cfg->webhook_timeout_ms);
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, hs);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, answer_cb);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, &ans);
        if (!ctx->app->cfg->webhook_allow_insecure)
            curl_easy_setopt(h, CURLOPT_OPENSOCKETFUNCTION, open_checked);
        CURLcode cc = curl_easy_perform(h);
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
        curl_easy_cleanup(h);
        curl_slist_free_all(hs);
        if (cc == CURLE_OK && code >= 200 && code < 300)
            rc = SHOPD_OK;
        else if (cc == CURLE_OK || (cc == CURLE_WRITE_ERROR && code))
            snprintf(err, errlen, "endpoint answered %ld", code);
        else
            snprintf(err, errlen, "delivery failed: %s", curl_easy_strerror(cc));
    }
    char at[16], st[16], lat[24];
    snprintf(at, sizeof(at), "%d", attempt);
    snprintf(st, sizeof(st), "%ld", code);
    snprintf(lat, sizeof(lat), "%llu", (unsigned long long)((shopd_now_us() - t0) / 1000));
    const char *dp[] = {sid,
                        eid,
                        jid,
                        event_id,
                        event_type,
                        at,
                        code ? st : NULL,
                        lat,
                        rc == SHOPD_OK ? NULL : err,
                        ans.n ? ans.keep : NULL};
    r = db_exec(c, "jobs_hook_delivery",
                "INSERT INTO webhook_deliveries (store_id, endpoint_id, job_id, event_id, "
                "event_type, attempt, status_code, latency_ms, error, response) VALUES ($1, $2, "
                "$3, $4, $5, $6, $7, $8, left($9, 1000), $10)",
                10, dp);
    if (db_result_rc(r) != SHOPD_OK)
        log_warn("jobs: delivery of job %s not recorded: %s", jid, db_sqlstate(r));
    PQclear(r);
    free(body);
    shopd_free(url);
    OPENSSL_cleanse(secret, sizeof(secret));
    return rc;
}

void
jobs_webhook_dead(api_ctx_t *ctx, db_conn_t *c, uint64_t job_id)
{
    char sid[24], jid[24], after[24];
    snprintf(sid, sizeof(sid), "%llu", (unsigned long long)ctx->store_id);
    snprintf(jid, sizeof(jid), "%llu", (unsigned long long)job_id);
    snprintf(after, sizeof(after), "%d", ctx->app->cfg->webhook_disable_after);
    const char *p[] = {sid, jid, after};
    /* "Failing for" is measured from the first attempt after the last success. */
    PGresult *r = db_exec(
        c, "jobs_hook_disable",
        "WITH j AS (SELECT endpoint_id FROM jobs WHERE store_id = $1 AND id = $2::bigint), "
        "ok AS (SELECT max(d.created_at) AS t FROM webhook_deliveries d, j WHERE d.store_id = $1 "
        "AND d.endpoint_id = j.endpoint_id AND d.status_code BETWEEN 200 AND 299), "
        "f AS (SELECT min(d.created_at) AS t FROM webhook_deliveries d, j WHERE d.store_id = $1 "
        "AND d.endpoint_id = j.endpoint_id AND d.created_at > coalesce((SELECT t FROM ok), "
        "'-infinity')), "
        "w AS (UPDATE webhook_endpoints e SET enabled = false, updated_at = now() FROM j WHERE "
        "e.store_id = $1 AND e.id = j.endpoint_id AND e.enabled AND (SELECT t FROM f) < now() - "
        "$3::int * interval '1 second' RETURNING e.id, e.url) "
        "INSERT INTO outbox (store_id, kind, payload) SELECT $1, 'webhook.endpoint_disabled', "
        "jsonb_build_object('email', u.email, 'template', 'webhook_disabled', 'endpoint_id', "
        "w.id, 'endpoint_url', w.url) FROM w, users u WHERE u.store_id = $1 AND u.role = "
        "'STORE_ADMIN' AND u.status = 'active'",
        3, p);
    if (db_result_rc(r) == SHOPD_OK && atoi(PQcmdTuples(r)) > 0)
        log_warn("jobs: a webhook endpoint of store %s was disabled after failing too long", sid);
    else if (db_result_rc(r) != SHOPD_OK)
        log_warn("jobs: endpoint check after dead letter %s failed: %s", jid, db_sqlstate(r));
    PQclear(r);
}

/* ---- endpoints: admin routes ---- */

#define HOOK_JSON                                                                                  \
    "json_build_object('id', w.id, 'url', w.url, 'events', to_json(w.events), 'enabled', "         \
    "w.enabled, 'description', w.description, 'created_at', w.created_at, 'updated_at', "          \
    "w.updated_at)"

/* Reads url, events, enabled, description from the body (all required on create). */
typedef struct hook_in_s {
    const char *url, *description;
    char events[1024]; /* a PostgreSQL text[] literal, "" when absent */
    int enabled;       /* -1 absent */
    bool has_description;
} hook_in_t;

static void
hook_read(api_ctx_t *ctx, api_val_t *v, hook_in_t *in, bool create)
{
    static const char *const allowed[] = {"url", "events", "enabled", "description", NULL};
    api_val_only(v, ctx->body, allowed);
    in->url = api_val_string(v, ctx->body, "url", create, 8, 2000);
    if (in->url) {
        bool ok = url_allowed(ctx->app, in->url);
        for (const char *p = in->url; *p; p++)
            ok &= (unsigned char)*p > 0x20 && *p != 0x7f && *p != '"' && *p != '\\';
        if (!ok)
            api_val_add(v, "url",
                        ctx->app->cfg->webhook_allow_insecure ? "must be an http(s) URL"
                                                              : "must be an https URL");
    }
    in->description = api_val_string(v, ctx->body, "description", false, 0, 500);
    in->has_description = json_object_get(ctx->body, "description") != NULL;
    json_t *en = json_object_get(ctx->body, "enabled");
    in->enabled = -1;
    if (en && !json_is_boolean(en))
        api_val_add(v, "enabled", "must be a boolean");
    else if (en)
        in->enabled = json_is_true(en);
    json_t *evs = json_object_get(ctx->body, "events");
    in->events[0] = '\0';
    if (evs == NULL) {
        if (create)
            api_val_add(v, "events", "is required");
        return;
    }
    if (!json_is_array(evs) || json_array_size(evs) < 1 || json_array_size(evs) > 16) {
        api_val_add(v, "events", "must be an array of 1 to 16 event types");
        return;
    }
    size_t i, k = 0;
    json_t *e;
    k += (size_t)snprintf(in->events, sizeof(in->events), "{");
    json_array_foreach(evs, i, e)
    {
        const char *s = json_string_value(e);
        bool known = false;
        for (int t = 0; s && event_types[t]; t++)
            known |= strcmp(s, event_types[t]) == 0;
        if (!known) {
            api_val_add(v, "events",
                        "must name order.placed, order.paid, order.processing, order.shipped, "
                        "order.delivered, order.cancelled or *");
            return;
        }
        k += (size_t)snprintf(in->events + k, sizeof(in->events) - k, "%s\"%s\"", i ? "," : "", s);
    }
    snprintf(in->events + k, sizeof(in->events) - k, "}");
}

static net_reply_t *
row_reply(api_ctx_t *ctx, PGresult *r, shopd_rc_t ok, const char *what)
{
    net_reply_t *reply;
    if (db_result_rc(r) != SHOPD_OK)
        reply = api_db_error(ctx, r, what);
    else if (PQntuples(r) == 0)
        reply = api_fail(SHOPD_NOTFOUND, "webhook_not_found", "no such webhook endpoint");
    else if (ok == SHOPD_NO_CONTENT)
        reply = api_empty(SHOPD_NO_CONTENT);
    else
        reply = api_raw_json(ok, PQgetvalue(r, 0, 0), (size_t)PQgetlength(r, 0, 0));
    PQclear(r);
    return reply;
}

static PGresult *
run1(api_ctx_t *ctx, const char *name, const char *sql, int n, const char *const *p,
     net_reply_t **unavailable)
{
    db_conn_t *c = db_acquire(ctx->app->db, 2000);
    if (c == NULL) {
        *unavailable = api_unavailable("the database");
        return NULL;
    }
    PGresult *r = db_exec(c, name, sql, n, p);
    db_release(c);
    return r;
}

net_reply_t *
jobs_h_hook_list(api_ctx_t *ctx)
{
    char limit[16], cursor[24], sid[24], lim1[16];
    net_reply_t *reply = NULL;
    if (!jobs_page(ctx, limit, cursor, &reply))
        return reply;
    snprintf(sid, sizeof(sid), "%llu", (unsigned long long)ctx->store_id);
    snprintf(lim1, sizeof(lim1), "%d", atoi(limit) + 1);
    const char *p[] = {sid, cursor, lim1};
    PGresult *r = run1(ctx, "jobs_hook_list",
                       "SELECT " HOOK_JSON ", w.id FROM webhook_endpoints w WHERE w.store_id = $1 "
                       "AND ($2 = '' OR w.id < nullif($2, '')::bigint) ORDER BY w.id DESC LIMIT "
                       "$3::int",
                       3, p, &reply);
    return reply ? reply : jobs_page_reply(ctx, r, limit, "webhooks");
}

net_reply_t *
jobs_h_hook_create(api_ctx_t *ctx)
{
    api_val_t v = {0};
    hook_in_t in;
    hook_read(ctx, &v, &in, true);
    if (v.n)
        return api_val_reply(&v);
    char sid[24], secret[80], hex[65], aad[80];
    snprintf(sid, sizeof(sid), "%llu", (unsigned long long)ctx->store_id);
    shopd_random_hex(hex, 32);
    snprintf(secret, sizeof(secret), "whsec_%s", hex);
    jobs_hook_aad(aad, sizeof(aad), ctx->store_id);
    char *sealed = seal_seal(seal_process(), secret, aad);
    if (sealed == NULL)
        return api_internal(ctx, "webhook secret not sealed");
    const char *p[] = {sid,   in.url, in.events, in.enabled == 0 ? "false" : "true", in.description,
                       sealed};
    net_reply_t *reply = NULL;
    PGresult *r = run1(ctx, "jobs_hook_create",
                       "WITH w AS (INSERT INTO webhook_endpoints (store_id, url, events, enabled, "
                       "description, secret) VALUES ($1, $2, $3::text[], $4::boolean, $5, $6) "
                       "RETURNING *) SELECT " HOOK_JSON "::text FROM w",
                       6, p, &reply);
    shopd_free(sealed);
    if (reply == NULL && db_result_rc(r) == SHOPD_OK && PQntuples(r) == 1) {
        /* The secret is in this answer only (added here, never read back from
         * the database): later reads never show it. */
        json_t *o = json_loads(PQgetvalue(r, 0, 0), 0, NULL);
        PQclear(r);
        if (o == NULL)
            reply = api_internal(ctx, "webhook create");
        else {
            json_object_set_new(o, "secret", json_string(secret));
            reply = api_json(SHOPD_CREATED, o);
        }
    }
    OPENSSL_cleanse(secret, sizeof(secret));
    return reply ? reply : row_reply(ctx, r, SHOPD_CREATED, "webhook create");
}

void
jobs_hook_aad(char *out, size_t n, uint64_t store_id)
{
    snprintf(out, n, "webhook_endpoints.secret:%llu", (unsigned long long)store_id);
}

int
jobs_reseal_rows(app_t *app, char *err, size_t errlen)
{
    const seal_keys_t *k = seal_process();
    if (k == NULL)
        return 0;
    db_conn_t *c = db_acquire(app->db, 5000);
    if (c == NULL) {
        log_warn("msg=\"webhook secrets not re-sealed: no database connection\"");
        return 0;
    }
    int status = 0, done = 0;
    char like[32];
    snprintf(like, sizeof(like), "seal1.%s.%%", seal_keys_kid(k));
    const char *p[] = {like};
    PGresult *r = db_exec(c, "jobs_reseal_scan",
                          "SELECT store_id, id, secret FROM webhook_endpoints WHERE secret NOT "
                          "LIKE $1",
                          1, p);
    if (db_result_rc(r) != SHOPD_OK) {
        log_warn("msg=\"webhook secrets not re-sealed: scan failed\"");
        goto out;
    }
    for (int i = 0; i < PQntuples(r); i++) {
        uint64_t sid = strtoull(PQgetvalue(r, i, 0), NULL, 10);
        const char *old = PQgetvalue(r, i, 2);
        if (seal_is_sealed(old) && !seal_known(k, old)) {
            snprintf(err, errlen,
                     "the secret of webhook endpoint %s of store %llu is sealed under a key "
                     "that is neither SHOPD_SECRETS_KEY (kid %s) nor SHOPD_SECRETS_KEY_OLD",
                     PQgetvalue(r, i, 1), (unsigned long long)sid, seal_keys_kid(k));
            status = -1;
            goto out;
        }
        char plain[SEAL_MAX_PLAIN + 1], aad[80];
        jobs_hook_aad(aad, sizeof(aad), sid);
        char *sealed = seal_open_or_plain(k, old, aad, plain, sizeof(plain)) == SHOPD_OK
                           ? seal_seal(k, plain, aad)
                           : NULL;
        OPENSSL_cleanse(plain, sizeof(plain));
        if (sealed == NULL) {
            log_error("msg=\"webhook endpoint secret does not open (changed in the database?)\" "
                      "store=%llu endpoint=%s",
                      (unsigned long long)sid, PQgetvalue(r, i, 1));
            continue;
        }
        const char *u[] = {PQgetvalue(r, i, 0), PQgetvalue(r, i, 1), sealed, old};
        PGresult *w = db_exec(c, "jobs_reseal_row",
                              "UPDATE webhook_endpoints SET secret = $3 WHERE store_id = $1 AND "
                              "id = $2 AND secret = $4",
                              4, u);
        if (db_result_rc(w) == SHOPD_OK && atoi(PQcmdTuples(w)) == 1)
            done++;
        PQclear(w);
        shopd_free(sealed);
    }
    if (done)
        log_info("msg=\"webhook secrets sealed under the current key\" endpoints=%d kid=%s", done,
                 seal_keys_kid(k));
out:
    PQclear(r);
    db_release(c);
    return status;
}

net_reply_t *
jobs_h_hook_get(api_ctx_t *ctx)
{
    char sid[24], id[24];
    if (!jobs_id_param(ctx, id))
        return api_fail(SHOPD_NOTFOUND, "webhook_not_found", "no such webhook endpoint");
    snprintf(sid, sizeof(sid), "%llu", (unsigned long long)ctx->store_id);
    const char *p[] = {sid, id};
    net_reply_t *reply = NULL;
    PGresult *r = run1(ctx, "jobs_hook_get",
                       "SELECT " HOOK_JSON "::text FROM webhook_endpoints w WHERE w.store_id = $1 "
                       "AND w.id = $2::bigint",
                       2, p, &reply);
    return reply ? reply : row_reply(ctx, r, SHOPD_OK, "webhook");
}

net_reply_t *
jobs_h_hook_update(api_ctx_t *ctx)
{
    char sid[24], id[24];
    if (!jobs_id_param(ctx, id))
        return api_fail(SHOPD_NOTFOUND, "webhook_not_found", "no such webhook endpoint");
    api_val_t v = {0};
    hook_in_t in;
    hook_read(ctx, &v, &in, false);
    if (v.n)
        return api_val_reply(&v);
    snprintf(sid, sizeof(sid), "%llu", (unsigned long long)ctx->store_id);
    const char *en = in.enabled < 0 ? NULL : in.enabled ? "true" : "false";
    const char *p[] = {sid,
                       id,
                       in.url,
                       in.events[0] ? in.events : NULL,
                       en,
                       in.description,
                       in.has_description ? "t" : "f"};
    net_reply_t *reply = NULL;
    PGresult *r = run1(
        ctx, "jobs_hook_update",
        "WITH w AS (UPDATE webhook_endpoints SET url = coalesce($3, url), events = "
        "coalesce($4::text[], events), enabled = coalesce($5::boolean, enabled), description = "
        "CASE WHEN $7 = 't' THEN $6 ELSE description END, updated_at = now() WHERE store_id = $1 "
        "AND id = $2::bigint RETURNING *) SELECT " HOOK_JSON "::text FROM w",
        7, p, &reply);
    return reply ? reply : row_reply(ctx, r, SHOPD_OK, "webhook update");
}

net_reply_t *
jobs_h_hook_delete(api_ctx_t *ctx)
{
    char sid[24], id[24];
    if (!jobs_id_param(ctx, id))
        return api_fail(SHOPD_NOTFOUND, "webhook_not_found", "no such webhook endpoint");
    snprintf(sid, sizeof(sid), "%llu", (unsigned long long)ctx->store_id);
    const char *p[] = {sid, id};
    net_reply_t *reply = NULL;
    /* Its deliveries and pending jobs go with it: the admin asked for that. */
    PGresult *r = run1(ctx, "jobs_hook_delete",
                       "DELETE FROM webhook_endpoints WHERE store_id = $1 AND id = $2::bigint "
                       "RETURNING id",
                       2, p, &reply);
    return reply ? reply : row_reply(ctx, r, SHOPD_NO_CONTENT, "webhook delete");
}

net_reply_t *
jobs_h_hook_deliveries(api_ctx_t *ctx)
{
    char sid[24], id[24], limit[16], cursor[24], lim1[16];
    net_reply_t *reply = NULL;
    if (!jobs_id_param(ctx, id))
        return api_fail(SHOPD_NOTFOUND, "webhook_not_found", "no such webhook endpoint");
    if (!jobs_page(ctx, limit, cursor, &reply))
        return reply;
    snprintf(sid, sizeof(sid), "%llu", (unsigned long long)ctx->store_id);
    snprintf(lim1, sizeof(lim1), "%d", atoi(limit) + 1);
    const char *p[] = {sid, id, cursor, lim1};
    PGresult *r =
        run1(ctx, "jobs_hook_deliveries",
             "SELECT json_build_object('id', d.id, 'job_id', d.job_id, 'event_id', d.event_id, "
             "'event_type', d.event_type, 'attempt', d.attempt, 'status_code', d.status_code, "
             "'latency_ms', d.latency_ms, 'error', d.error, 'response', d.response, 'created_at', "
             "d.created_at), d.id, w.id FROM webhook_endpoints w LEFT JOIN webhook_deliveries d ON "
             "d.store_id = w.store_id AND d.endpoint_id = w.id AND ($3 = '' OR d.id < nullif($3, "
             "'')::bigint) WHERE w.store_id = $1 AND w.id = $2::bigint ORDER BY d.id DESC LIMIT "
             "$4::int",
             4, p, &reply);
    if (reply)
        return reply;
    if (db_result_rc(r) == SHOPD_OK && PQntuples(r) == 0) {
        PQclear(r);
        return api_fail(SHOPD_NOTFOUND, "webhook_not_found", "no such webhook endpoint");
    }
    /* The LEFT JOIN gives one all-NULL row for an endpoint with no deliveries. */
    if (db_result_rc(r) == SHOPD_OK && PQntuples(r) == 1 && PQgetisnull(r, 0, 1)) {
        PQclear(r);
        return api_json(SHOPD_OK,
                        json_pack("{s:[], s:i, s:n}", "data", "limit", atoi(limit), "next_cursor"));
    }
    return jobs_page_reply(ctx, r, limit, "deliveries");
}

/* POST /api/v1/admin/webhooks/:id/replay: sends again what an endpoint was
 * sent (done, dead or discarded jobs): one delivery's event
 * ({"delivery_id": N}) or every event made in a time range ({"from", "to"},
 * RFC 3339, to exclusive; at most 10,000 jobs per call: ask again for more). Each job
 * starts its retry schedule again and goes out at the relay's next step with its
 * event id unchanged (receivers dedupe by Shopd-Event-Id). A disabled endpoint
 * is enabled first (409 otherwise: its jobs would fail at once). */
net_reply_t *
jobs_h_hook_replay(api_ctx_t *ctx)
{
    char sid[24], id[24], did[24] = "";
    if (!jobs_id_param(ctx, id))
        return api_fail(SHOPD_NOTFOUND, "webhook_not_found", "no such webhook endpoint");
    static const char *const allowed[] = {"delivery_id", "from", "to", NULL};
    api_val_t v = {0};
    api_val_only(&v, ctx->body, allowed);
    long long delivery = 0;
    int has_delivery = api_val_int(&v, ctx->body, "delivery_id", 1, INT64_MAX, &delivery);
    const char *from = api_val_string(&v, ctx->body, "from", false, 1, 64);
    const char *to = api_val_string(&v, ctx->body, "to", false, 1, 64);
    int64_t f_us = 0, t_us = 0;
    if (from && !api_rfc3339(from, &f_us))
        api_val_add(&v, "from", "must be an RFC 3339 date-time (2026-12-01T00:00:00Z)");
    if (to && !api_rfc3339(to, &t_us))
        api_val_add(&v, "to", "must be an RFC 3339 date-time (2026-12-01T00:00:00Z)");
    if (has_delivery == 1 && (from || to))
        api_val_add(&v, "delivery_id", "give either delivery_id or from and to, not both");
    else if (has_delivery == 0 && (from == NULL || to == NULL) && v.n == 0)
        api_val_add(&v, from ? "to" : "from", "is required (or give delivery_id)");
    else if (has_delivery == 0 && v.n == 0 && t_us <= f_us)
        api_val_add(&v, "to", "must be after from");
    if (v.n)
        return api_val_reply(&v);
    snprintf(sid, sizeof(sid), "%llu", (unsigned long long)ctx->store_id);
    if (has_delivery == 1)
        snprintf(did, sizeof(did), "%lld", delivery);
    const char *p[] = {sid, id, did, from ? from : "", to ? to : ""};
    net_reply_t *reply = NULL;
    PGresult *r = run1(
        ctx, "jobs_hook_replay",
        "WITH w AS (SELECT id, enabled FROM webhook_endpoints WHERE store_id = $1 AND id = "
        "$2::bigint), pick AS (SELECT j.id FROM jobs j JOIN w ON w.enabled AND j.endpoint_id = "
        "w.id WHERE j.store_id = $1 AND j.kind = 'webhook' AND j.state IN ('done', 'dead', "
        "'discarded') AND CASE WHEN $3 <> '' THEN j.id = (SELECT d.job_id FROM "
        "webhook_deliveries d WHERE d.store_id = $1 AND d.endpoint_id = w.id AND d.id = "
        "nullif($3, '')::bigint) ELSE j.outbox_id IN (SELECT o.id FROM outbox o WHERE "
        "o.store_id = $1 AND o.created_at >= nullif($4, '')::timestamptz AND o.created_at < "
        "nullif($5, '')::timestamptz) END ORDER BY j.id LIMIT 10000), "
        "j AS (UPDATE jobs SET state = 'ready', attempts = 0, next_at = now(), finished_at = "
        "NULL FROM pick WHERE jobs.store_id = $1 AND jobs.id = pick.id RETURNING jobs.id) "
        "SELECT (SELECT count(*) FROM w), coalesce((SELECT enabled FROM w), false), (SELECT "
        "count(*) FROM j), CASE WHEN $3 = '' THEN true ELSE EXISTS (SELECT 1 FROM "
        "webhook_deliveries d WHERE d.store_id = $1 AND d.endpoint_id = $2::bigint AND d.id = "
        "nullif($3, '')::bigint) END",
        5, p, &reply);
    if (reply)
        return reply;
    if (db_result_rc(r) != SHOPD_OK)
        reply = api_db_error(ctx, r, "webhook endpoint");
    else if (strcmp(PQgetvalue(r, 0, 0), "0") == 0)
        reply = api_fail(SHOPD_NOTFOUND, "webhook_not_found", "no such webhook endpoint");
    else if (PQgetvalue(r, 0, 1)[0] != 't')
        reply = api_fail(SHOPD_CONFLICT, "webhook_disabled",
                         "the endpoint is disabled: enable it (PATCH enabled: true) first");
    else if (PQgetvalue(r, 0, 3)[0] != 't')
        reply = api_fail(SHOPD_NOTFOUND, "delivery_not_found", "no such delivery of this endpoint");
    else
        reply = api_json(SHOPD_ACCEPTED,
                         json_pack("{s:I}", "replayed", (json_int_t)atoll(PQgetvalue(r, 0, 2))));
    PQclear(r);
    return reply;
}
