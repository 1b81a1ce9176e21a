/*
 * config.c: the configuration table and its loader. Every setting is one row:
 * flag, environment variable, type, bounds, default, help. Defaults, then the
 * environment, then flags; each value is validated against its row, and the
 * first bad one ends loading with a single clear line.
 */
#include "shopd/config.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shopd/common.h"

extern char **environ;

typedef enum { CFG_INT, CFG_STR, CFG_BOOL } cfg_type_t;

typedef struct cfg_row_s {
    const char *flag;
    const char *env;
    cfg_type_t type;
    size_t off;
    long min, max;
    const char *def;
    const char *help;
} cfg_row_t;

#define O(f) offsetof(cfg_t, f)

/* One row per line: a table to read across. */
/* clang-format off */
static const cfg_row_t cfg_rows[] = {
    {"listen", "SHOPD_LISTEN", CFG_STR, O(listen), 0, 0, "127.0.0.1:8080", "address to serve HTTP on (host:port)"},
    {"io-threads", "SHOPD_IO_THREADS", CFG_INT, O(io_threads), 0, 256, "0", "HTTP I/O threads (0 = number of cores)"},
    {"io-flood-lane", "SHOPD_IO_FLOOD_LANE", CFG_BOOL, O(io_flood_lane), 0, 0, "true", "with 2+ I/O threads, move the connections of a store flooding a busy thread to thread 0 (false: connections stay where they were accepted)"},
    {"workers", "SHOPD_WORKERS", CFG_INT, O(workers), 0, 256, "0", "actor worker threads (0 = number of cores)"},
    {"blocking-threads", "SHOPD_BLOCKING_THREADS", CFG_INT, O(blocking_threads), 0, 256, "0", "threads of the blocking pool: argon2, later outbound calls (0 = number of cores)"},
    {"blocking-queue", "SHOPD_BLOCKING_QUEUE", CFG_INT, O(blocking_queue), 1, 1000000, "256", "queued blocking tasks per store lane (over: 503 Retry-After)"},
    {"blocking-nice", "SHOPD_BLOCKING_NICE", CFG_INT, O(blocking_nice), 0, 19, "10", "nice value of the blocking pool's threads (argon2 yields the CPU to workers and PostgreSQL)"},
    {"store-workers", "SHOPD_STORE_WORKERS", CFG_INT, O(store_workers), 0, 256, "0", "workers one store's actors may hold while other stores wait (0 = workers - 1, at least 1)"},
    {"read-batch", "SHOPD_READ_BATCH", CFG_INT, O(read_batch), 1, 10000, "1", "messages a read lane takes in one turn (small: other stores get turns sooner)"},
    {"read-pipeline", "SHOPD_READ_PIPELINE", CFG_INT, O(read_pipeline), 1, 256, "16", "requests of one batchable read route (product pages) a read lane's turn may take together, their statements in one pipeline"},
    {"database-url", "SHOPD_DATABASE_URL", CFG_STR, O(database_url), 0, 0, "postgresql://shopd@127.0.0.1:5432/shopd", "PostgreSQL connection URL"},
    {"redis-url", "SHOPD_REDIS_URL", CFG_STR, O(redis_url), 0, 0, "redis://127.0.0.1:6379/0", "Redis URL"},
    {"db-pool-size", "SHOPD_DB_POOL_SIZE", CFG_INT, O(db_pool_size), 0, 1000, "0", "PostgreSQL connections (0 = workers + blocking threads + 2)"},
    {"max-body", "SHOPD_MAX_BODY", CFG_INT, O(max_body), 1024, 1 << 30, "1048576", "largest request body in bytes (413 beyond)"},
    {"max-header", "SHOPD_MAX_HEADER", CFG_INT, O(max_header), 1024, 1 << 20, "16384", "largest request line + headers in bytes (431 beyond)"},
    {"max-output", "SHOPD_MAX_OUTPUT", CFG_INT, O(max_output), 4096, 1 << 30, "1048576", "unsent answer bytes per connection beyond which its pipelined requests wait"},
    {"max-conns", "SHOPD_MAX_CONNS", CFG_INT, O(max_conns), 1, 1000000, "10000", "open client connections at most (over: 503 and close)"},
    {"idle-timeout", "SHOPD_IDLE_TIMEOUT", CFG_INT, O(idle_timeout), 1, 86400, "60", "seconds an idle keep-alive connection is kept"},
    {"request-timeout", "SHOPD_REQUEST_TIMEOUT", CFG_INT, O(request_timeout), 10, 600000, "30000", "milliseconds before a request is answered 504"},
    {"mailbox-cap", "SHOPD_MAILBOX_CAP", CFG_INT, O(mailbox_cap), 1, 10000000, "4096", "queued messages per store actor (over: 503 Retry-After)"},
    {"actor-batch", "SHOPD_ACTOR_BATCH", CFG_INT, O(actor_batch), 1, 10000, "64", "messages an actor takes in one turn"},
    {"actor-idle-ms", "SHOPD_ACTOR_IDLE_MS", CFG_INT, O(actor_idle_ms), 10, 86400000, "60000", "an idle store actor is freed after this many ms"},
    {"shutdown-timeout", "SHOPD_SHUTDOWN_TIMEOUT", CFG_INT, O(shutdown_timeout), 0, 600000, "10000", "ms to finish in-flight work on SIGTERM"},
    {"platform-token", "SHOPD_PLATFORM_TOKEN", CFG_STR, O(platform_token), 0, 0, "", "bearer token for the platform API (empty: platform API disabled)"},
    {"base-domain", "SHOPD_BASE_DOMAIN", CFG_STR, O(base_domain), 0, 0, "localhost", "stores answer at <slug>.<base-domain>"},
    {"tenant-cache-ttl", "SHOPD_TENANT_CACHE_TTL", CFG_INT, O(tenant_cache_ttl), 0, 86400, "30", "seconds a store lookup stays cached"},
    {"migrate", "SHOPD_MIGRATE", CFG_BOOL, O(migrate), 0, 0, "true", "apply pending migrations at start"},
    {"sql-dir", "SHOPD_SQL_DIR", CFG_STR, O(sql_dir), 0, 0, SHOPD_SOURCE_DIR "/sql", "folder of numbered migrations"},
    {"log-level", "SHOPD_LOG_LEVEL", CFG_STR, O(log_level), 0, 0, "info", "debug, info, warn or error"},
    {"access-log", "SHOPD_ACCESS_LOG", CFG_BOOL, O(access_log), 0, 0, "true", "one log line per request"},
    {"jwt-keys", "SHOPD_JWT_KEYS", CFG_STR, O(jwt_keys), 0, 0, "", "access-token keys kid:secret,... (first signs, all verify; empty: random per process)"},
    {"secrets-key", "SHOPD_SECRETS_KEY", CFG_STR, O(secrets_key), 0, 0, "", "base64 of 32 bytes (openssl rand -base64 32): seals Stripe keys and webhook secrets at rest, AES-256-GCM (empty: the key in SHOPD_SECRETS_KEY_FILE)"},
    {"secrets-key-old", "SHOPD_SECRETS_KEY_OLD", CFG_STR, O(secrets_key_old), 0, 0, "", "the previous secrets key during a rotation: still opens, and rows under it are sealed again with SHOPD_SECRETS_KEY at start"},
    {"secrets-key-file", "SHOPD_SECRETS_KEY_FILE", CFG_STR, O(secrets_key_file), 0, 0, "secrets.key", "file holding the secrets key when SHOPD_SECRETS_KEY is empty (made once, mode 0600: demos and tests; production sets the key)"},
    {"outbox-dir", "SHOPD_OUTBOX_DIR", CFG_STR, O(outbox_dir), 0, 0, "outbox", "folder where outgoing e-mails are written, one file each"},
    {"jobs-poll-ms", "SHOPD_JOBS_POLL_MS", CFG_INT, O(jobs_poll_ms), 10, 60000, "200", "how often the jobs relay moves outbox rows and due retries into the job streams"},
    {"jobs-consume", "SHOPD_JOBS_CONSUME", CFG_BOOL, O(jobs_consume), 0, 0, "true", "this process runs jobs (false: it only relays; another process consumes)"},
    {"jobs-inflight", "SHOPD_JOBS_INFLIGHT", CFG_INT, O(jobs_inflight), 1, 100000, "32", "jobs this process runs at once on the blocking pool"},
    {"jobs-visibility-ms", "SHOPD_JOBS_VISIBILITY_MS", CFG_INT, O(jobs_visibility_ms), 100, 86400000, "300000", "a job taken this long ago and not finished is taken over (XAUTOCLAIM): its consumer is presumed dead"},
    {"jobs-retry-schedule", "SHOPD_JOBS_RETRY_SCHEDULE", CFG_STR, O(jobs_retry_schedule), 0, 0, "30,60,300,900,1800,3600,7200,14400,28800,43200", "seconds before each retry of a failed e-mail job (+-20% jitter); after the last, a dead letter"},
    {"webhook-retry-schedule", "SHOPD_WEBHOOK_RETRY_SCHEDULE", CFG_STR, O(webhook_retry_schedule), 0, 0, "60,300,1800,3600,7200,14400,28800,43200,86400,86400,86400", "seconds before each retry of a failed webhook delivery (about 3 days); after the last, a dead letter"},
    {"webhook-timeout-ms", "SHOPD_WEBHOOK_TIMEOUT_MS", CFG_INT, O(webhook_timeout_ms), 100, 120000, "10000", "whole-delivery time limit of one webhook POST"},
    {"webhook-disable-after", "SHOPD_WEBHOOK_DISABLE_AFTER", CFG_INT, O(webhook_disable_after), 1, 31536000, "259200", "seconds an endpoint may fail without a success before its last dead letter disables it (the store admins get an e-mail)"},
    {"webhook-allow-insecure", "SHOPD_WEBHOOK_ALLOW_INSECURE", CFG_BOOL, O(webhook_allow_insecure), 0, 0, "false", "allow http:// endpoints and loopback, private and link-local addresses (tests only)"},
    {"smtp-url", "SHOPD_SMTP_URL", CFG_STR, O(smtp_url), 0, 0, "", "smtp://[user:pass@]host:port or smtps://...: send e-mail over SMTP (empty: write each message into SHOPD_OUTBOX_DIR)"},
    {"smtp-tls", "SHOPD_SMTP_TLS", CFG_STR, O(smtp_tls), 0, 0, "required", "STARTTLS on smtp:// URLs: required, try or none"},
    {"smtp-timeout-ms", "SHOPD_SMTP_TIMEOUT_MS", CFG_INT, O(smtp_timeout_ms), 100, 600000, "30000", "whole-message time limit of one SMTP delivery"},
    {"mail-from", "SHOPD_MAIL_FROM", CFG_STR, O(mail_from), 0, 0, "shop@localhost", "envelope and From address of outgoing e-mail"},
    {"auth-rate-ip", "SHOPD_AUTH_RATE_IP", CFG_INT, O(auth_rate_ip), 0, 1000000, "100", "login/register/forgot/refresh attempts per minute per client address (0 = no limit)"},
    {"auth-rate-account", "SHOPD_AUTH_RATE_ACCOUNT", CFG_INT, O(auth_rate_account), 0, 1000000, "30", "login/register/forgot/refresh attempts per hour per account (0 = no limit)"},
    {"admin-listen", "SHOPD_ADMIN_LISTEN", CFG_STR, O(admin_listen), 0, 0, "127.0.0.1:8081", "address of the admin protocol (msgpack over TCP, docs/admin-protocol.md); empty: off"},
    {"admin-token", "SHOPD_ADMIN_TOKEN", CFG_STR, O(admin_token), 0, 0, "", "tokens accepted in the admin hello, tok,tok (several for rotation; a SUPER_ADMIN JWT is accepted too)"},
    {"admin-max-frame", "SHOPD_ADMIN_MAX_FRAME", CFG_INT, O(admin_max_frame), 1024, 1 << 30, "1048576", "largest admin frame in bytes (beyond: an error frame and close)"},
    {"admin-max-conns", "SHOPD_ADMIN_MAX_CONNS", CFG_INT, O(admin_max_conns), 1, 100000, "256", "open admin connections at most (over: an error frame and close)"},
    {"admin-idle-timeout", "SHOPD_ADMIN_IDLE_TIMEOUT", CFG_INT, O(admin_idle_timeout), 1, 86400, "300", "seconds an admin connection may sit idle with nothing in flight"},
    {"admin-tls-cert", "SHOPD_ADMIN_TLS_CERT", CFG_STR, O(admin_tls_cert), 0, 0, "", "PEM certificate (chain) file: the admin port speaks TLS 1.2+ (empty: plain TCP)"},
    {"admin-tls-key", "SHOPD_ADMIN_TLS_KEY", CFG_STR, O(admin_tls_key), 0, 0, "", "PEM private key file of the admin certificate"},
    {"trusted-proxies", "SHOPD_TRUSTED_PROXIES", CFG_STR, O(trusted_proxies), 0, 0, "", "proxy addresses (ip,ip) whose X-Forwarded-For names the client (rate limits)"},
    {"cart-ttl", "SHOPD_CART_TTL", CFG_INT, O(cart_ttl), 60, 31536000, "604800", "seconds a guest cart lives after its last change"},
    {"order-payment-timeout", "SHOPD_ORDER_PAYMENT_TIMEOUT", CFG_INT, O(order_payment_timeout), 1, 604800, "1800", "seconds an order may stay unpaid before the sweeper cancels it and returns its stock"},
    {"sweep-interval-ms", "SHOPD_SWEEP_INTERVAL_MS", CFG_INT, O(sweep_interval_ms), 10, 3600000, "10000", "how often the sweepers (unpaid orders, idempotency keys) look for due work"},
    {"stripe-any-base", "SHOPD_STRIPE_ANY_BASE", CFG_BOOL, O(stripe_any_base), 0, 0, "false", "a store's Stripe api_base may be any http(s) URL (a fake Stripe in tests); false: only https://api.stripe.com"},
    {"stripe-timeout-ms", "SHOPD_STRIPE_TIMEOUT_MS", CFG_INT, O(stripe_timeout_ms), 100, 120000, "15000", "ms one call to Stripe may take in all (beyond: the payment stays pending and is settled later)"},
    {"stripe-connect-ms", "SHOPD_STRIPE_CONNECT_MS", CFG_INT, O(stripe_connect_ms), 50, 60000, "3000", "ms to connect to Stripe"},
    {"stripe-reconcile-s", "SHOPD_STRIPE_RECONCILE_S", CFG_INT, O(stripe_reconcile_s), 1, 86400, "300", "seconds a Stripe payment may stay pending before the sweeper asks Stripe again (same Idempotency-Key: never a second PaymentIntent)"},
    {"rate-limit", "SHOPD_RATE_LIMIT", CFG_BOOL, O(rate_limit), 0, 0, "true", "request budgets on every route but /healthz, /readyz and /metrics (429 rate_limited beyond)"},
    {"rate-sync-ms", "SHOPD_RATE_SYNC_MS", CFG_INT, O(rate_sync_ms), 0, 60000, "200", "ms between syncs of the request budgets through Redis, shared by every process (0 = each process counts alone)"},
    {"rate-window", "SHOPD_RATE_WINDOW", CFG_INT, O(rate_window), 1, 86400, "60", "seconds the SHOPD_RATE_* budgets are counted over"},
    {"rate-reads-ip", "SHOPD_RATE_READS_IP", CFG_INT, O(rate[0][0]), 0, 1000000, "1200", "reads (GET) per window per client address (0 = no limit)"},
    {"rate-reads-user", "SHOPD_RATE_READS_USER", CFG_INT, O(rate[0][1]), 0, 1000000, "2400", "reads (GET) per window per signed-in user or API token (0 = no limit)"},
    {"rate-reads-store", "SHOPD_RATE_READS_STORE", CFG_INT, O(rate[0][2]), 0, 1000000, "30000", "reads (GET) per window per store (times its settings.rate_quota) (0 = no limit)"},
    {"rate-writes-ip", "SHOPD_RATE_WRITES_IP", CFG_INT, O(rate[1][0]), 0, 1000000, "300", "writes per window per client address (0 = no limit)"},
    {"rate-writes-user", "SHOPD_RATE_WRITES_USER", CFG_INT, O(rate[1][1]), 0, 1000000, "600", "writes per window per signed-in user or API token (0 = no limit)"},
    {"rate-writes-store", "SHOPD_RATE_WRITES_STORE", CFG_INT, O(rate[1][2]), 0, 1000000, "6000", "writes per window per store (times its settings.rate_quota) (0 = no limit)"},
    {"rate-checkout-ip", "SHOPD_RATE_CHECKOUT_IP", CFG_INT, O(rate[2][0]), 0, 1000000, "30", "checkout and payment calls per window per client address (0 = no limit)"},
    {"rate-checkout-user", "SHOPD_RATE_CHECKOUT_USER", CFG_INT, O(rate[2][1]), 0, 1000000, "30", "checkout and payment calls per window per signed-in user or API token (0 = no limit)"},
    {"rate-checkout-store", "SHOPD_RATE_CHECKOUT_STORE", CFG_INT, O(rate[2][2]), 0, 1000000, "3000", "checkout and payment calls per window per store (times its settings.rate_quota) (0 = no limit)"},
    {"rate-auth-ip", "SHOPD_RATE_AUTH_IP", CFG_INT, O(rate[3][0]), 0, 1000000, "300", "sign-in routes per window per client address (0 = no limit)"},
    {"rate-auth-user", "SHOPD_RATE_AUTH_USER", CFG_INT, O(rate[3][1]), 0, 1000000, "300", "sign-in routes per window per signed-in user or API token (0 = no limit)"},
    {"rate-auth-store", "SHOPD_RATE_AUTH_STORE", CFG_INT, O(rate[3][2]), 0, 1000000, "3000", "sign-in routes per window per store (times its settings.rate_quota) (0 = no limit)"},
    {"rate-admin-ip", "SHOPD_RATE_ADMIN_IP", CFG_INT, O(rate[4][0]), 0, 1000000, "600", "admin routes per window per client address (0 = no limit)"},
    {"rate-admin-user", "SHOPD_RATE_ADMIN_USER", CFG_INT, O(rate[4][1]), 0, 1000000, "600", "admin routes per window per signed-in user or API token (0 = no limit)"},
    {"rate-admin-store", "SHOPD_RATE_ADMIN_STORE", CFG_INT, O(rate[4][2]), 0, 1000000, "6000", "admin routes per window per store (times its settings.rate_quota) (0 = no limit)"},
    {"cors-origins", "SHOPD_CORS_ORIGINS", CFG_STR, O(cors_origins), 0, 0, "", "origins (https://app.example.com,https://*.example.com) allowed on routes no store names; stores list theirs in settings.cors_origins"},
    {"tls-cert", "SHOPD_TLS_CERT", CFG_STR, O(tls_cert), 0, 0, "", "PEM certificate chain file: serve HTTPS, TLS 1.2/1.3 (empty: plain HTTP); SIGHUP reloads it"},
    {"tls-key", "SHOPD_TLS_KEY", CFG_STR, O(tls_key), 0, 0, "", "PEM private key file of the TLS certificate"},
    {"media-dir", "SHOPD_MEDIA_DIR", CFG_STR, O(media_dir), 0, 0, "media", "folder of the local media storage (product images), served at /media/"},
    {"media-max-bytes", "SHOPD_MEDIA_MAX_BYTES", CFG_INT, O(media_max_bytes), 1024, 1 << 30, "10485760", "bytes of one uploaded image at most (413 payload_too_large beyond)"},
    {"media-max-pixels", "SHOPD_MEDIA_MAX_PIXELS", CFG_INT, O(media_max_pixels), 1, 2000000000, "50000000", "width x height of one uploaded image at most, read from its header before decoding (decompression bombs: 422)"},
    {"media-sizes", "SHOPD_MEDIA_SIZES", CFG_STR, O(media_sizes), 0, 0, "160,480,1024", "widths of the renditions made of every image (WebP and JPEG each)"},
    {"media-backend", "SHOPD_MEDIA_BACKEND", CFG_STR, O(media_backend), 0, 0, "local", "where media objects are stored: local (SHOPD_MEDIA_DIR) or s3"},
    {"s3-endpoint", "SHOPD_S3_ENDPOINT", CFG_STR, O(s3_endpoint), 0, 0, "", "S3 endpoint URL, e.g. http://127.0.0.1:9000 for an S3-compatible service (empty: AWS in SHOPD_S3_REGION)"},
    {"s3-bucket", "SHOPD_S3_BUCKET", CFG_STR, O(s3_bucket), 0, 0, "", "bucket of the media objects"},
    {"s3-region", "SHOPD_S3_REGION", CFG_STR, O(s3_region), 0, 0, "us-east-1", "region the requests are signed for (SigV4)"},
    {"s3-access-key", "SHOPD_S3_ACCESS_KEY", CFG_STR, O(s3_access_key), 0, 0, "", "access key id"},
    {"s3-secret-key", "SHOPD_S3_SECRET_KEY", CFG_STR, O(s3_secret_key), 0, 0, "", "secret access key"},
    {"s3-path-style", "SHOPD_S3_PATH_STYLE", CFG_BOOL, O(s3_path_style), 0, 0, "false", "path-style URLs (endpoint/bucket/key) instead of virtual-hosted (bucket.endpoint/key)"},
    {"s3-multipart-bytes", "SHOPD_S3_MULTIPART_BYTES", CFG_INT, O(s3_multipart_bytes), 1024, 1 << 30, "8388608", "objects larger than this are uploaded in parts of this size (S3 wants at least 5 MiB)"},
    {"s3-timeout-ms", "SHOPD_S3_TIMEOUT_MS", CFG_INT, O(s3_timeout_ms), 100, 600000, "30000", "whole-request time limit of one S3 request"},
    {"media-cdn-url", "SHOPD_MEDIA_CDN_URL", CFG_STR, O(media_cdn_url), 0, 0, "", "base URL of media links, e.g. https://cdn.example.com/ (empty: /media/ on this server)"},
    {"pages", "SHOPD_PAGES", CFG_BOOL, O(pages), 0, 0, "true", "serve /openapi.yaml, Swagger UI at /docs and the admin dashboard at /admin"},
    {"web-dir", "SHOPD_WEB_DIR", CFG_STR, O(web_dir), 0, 0, SHOPD_SOURCE_DIR "/web", "folder of the pages (admin/, docs/)"},
    {"docs-dir", "SHOPD_DOCS_DIR", CFG_STR, O(docs_dir), 0, 0, SHOPD_SOURCE_DIR "/docs", "folder of openapi.yaml, served at /openapi.yaml"},
    {"vendor-dir", "SHOPD_VENDOR_DIR", CFG_STR, O(vendor_dir), 0, 0, SHOPD_SOURCE_DIR "/tools/node/node_modules", "npm packages of the pages (swagger-ui-dist, uplot), installed by scripts/deps.sh"},
    {"cors-max-age", "SHOPD_CORS_MAX_AGE", CFG_INT, O(cors_max_age), 0, 86400, "600", "seconds a browser may cache a preflight answer"},
    {"page-cache-mb", "SHOPD_PAGE_CACHE_MB", CFG_INT, O(page_cache_mb), 0, 65536, "64", "MiB of public catalog pages (and their gzip copies) kept in process, answered on the I/O threads (0 = off)"},
    {"page-stale-ms", "SHOPD_PAGE_STALE_MS", CFG_INT, O(page_stale_ms), 50, 60000, "1000", "while the catalog version subscription (Redis pub/sub) is down, a page checked longer ago than this is checked again"},
};
/* clang-format on */

static int
fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

static int
set_value(cfg_t *cfg, const cfg_row_t *row, const char *val, const char *src, char *err,
          size_t errlen)
{
    char *base = (char *)cfg + row->off;
    switch (row->type) {
    case CFG_INT: {
        char *end;
        errno = 0;
        long v = strtol(val, &end, 10);
        if (errno != 0 || end == val || *end != '\0')
            return fail(err, errlen, "invalid configuration: %s=%s is not an integer", src, val);
        if (v < row->min || v > row->max)
            return fail(err, errlen, "invalid configuration: %s=%s is out of range [%ld, %ld]", src,
                        val, row->min, row->max);
        *(int *)base = (int)v;
        return 0;
    }
    case CFG_BOOL:
        if (!strcmp(val, "1") || !strcasecmp(val, "true") || !strcasecmp(val, "yes") ||
            !strcasecmp(val, "on"))
            *(bool *)base = true;
        else if (!strcmp(val, "0") || !strcasecmp(val, "false") || !strcasecmp(val, "no") ||
                 !strcasecmp(val, "off"))
            *(bool *)base = false;
        else
            return fail(err, errlen, "invalid configuration: %s=%s is not a boolean", src, val);
        return 0;
    case CFG_STR:
        free(*(char **)base);
        *(char **)base = shopd_strdup(val);
        return 0;
    }
    return -1;
}

int
cfg_parse_listen(const char *s, char *host, size_t hostlen, int *port)
{
    const char *colon;
    size_t hl;
    if (s[0] == '[') {
        const char *rb = strchr(s, ']');
        if (rb == NULL || rb[1] != ':')
            return -1;
        hl = (size_t)(rb - s - 1);
        s++;
        colon = rb + 1;
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL)
            return -1;
        hl = (size_t)(colon - s);
    }
    if (hl == 0 || hl >= hostlen)
        return -1;
    char *end;
    errno = 0;
    long p = strtol(colon + 1, &end, 10);
    if (errno || end == colon + 1 || *end != '\0' || p < 0 || p > 65535)
        return -1;
    memcpy(host, s, hl);
    host[hl] = '\0';
    *port = (int)p;
    return 0;
}

static const char *
env_lookup(const char *name)
{
    size_t n = strlen(name);
    for (char **e = environ; e && *e; e++)
        if (strncmp(*e, name, n) == 0 && (*e)[n] == '=')
            return *e + n + 1;
    return NULL;
}

int
cfg_load(cfg_t *cfg, int argc, char **argv, int first, char *err, size_t errlen)
{
    memset(cfg, 0, sizeof(*cfg));
    for (size_t i = 0; i < SHOPD_ARRAY_LEN(cfg_rows); i++)
        if (set_value(cfg, &cfg_rows[i], cfg_rows[i].def, cfg_rows[i].flag, err, errlen) != 0)
            return -1;
    for (size_t i = 0; i < SHOPD_ARRAY_LEN(cfg_rows); i++) {
        const char *v = env_lookup(cfg_rows[i].env);
        if (v != NULL && set_value(cfg, &cfg_rows[i], v, cfg_rows[i].env, err, errlen) != 0)
            return -1;
    }
    for (int a = first; a < argc; a++) {
        const char *arg = argv[a];
        if (strncmp(arg, "--", 2) != 0)
            return fail(err, errlen, "invalid configuration: unexpected argument '%s'", arg);
        const char *name = arg + 2;
        const char *eq = strchr(name, '=');
        size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
        const cfg_row_t *row = NULL;
        bool negated = false;
        for (size_t i = 0; i < SHOPD_ARRAY_LEN(cfg_rows); i++) {
            if (strlen(cfg_rows[i].flag) == nlen && !strncmp(cfg_rows[i].flag, name, nlen)) {
                row = &cfg_rows[i];
                break;
            }
            if (cfg_rows[i].type == CFG_BOOL && nlen == strlen(cfg_rows[i].flag) + 3 &&
                !strncmp(name, "no-", 3) && !strncmp(name + 3, cfg_rows[i].flag, nlen - 3)) {
                row = &cfg_rows[i];
                negated = true;
                break;
            }
        }
        if (row == NULL)
            return fail(err, errlen, "invalid configuration: unknown flag '--%.*s' (see --help)",
                        (int)nlen, name);
        const char *val;
        if (eq) {
            val = eq + 1;
        } else if (row->type == CFG_BOOL) {
            val = negated ? "false" : "true";
        } else if (a + 1 < argc) {
            val = argv[++a];
        } else {
            return fail(err, errlen, "invalid configuration: --%s needs a value", row->flag);
        }
        char src[96];
        snprintf(src, sizeof(src), "--%s", row->flag);
        if (set_value(cfg, row, val, src, err, errlen) != 0)
            return -1;
    }

    if (cfg_parse_listen(cfg->listen, cfg->listen_host, sizeof(cfg->listen_host),
                         &cfg->listen_port) != 0)
        return fail(err, errlen, "invalid configuration: listen address '%s' is not host:port",
                    cfg->listen);
    if (cfg->admin_listen[0] != '\0' &&
        cfg_parse_listen(cfg->admin_listen, cfg->admin_host, sizeof(cfg->admin_host),
                         &cfg->admin_port) != 0)
        return fail(err, errlen,
                    "invalid configuration: admin listen address '%s' is not host:port",
                    cfg->admin_listen);
    if ((cfg->admin_tls_cert[0] == '\0') != (cfg->admin_tls_key[0] == '\0'))
        return fail(err, errlen,
                    "invalid configuration: SHOPD_ADMIN_TLS_CERT and SHOPD_ADMIN_TLS_KEY go "
                    "together");
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    if (cores < 1)
        cores = 1;
    if (cfg->io_threads == 0)
        cfg->io_threads = (int)cores;
    if (cfg->workers == 0)
        cfg->workers = (int)cores;
    if (cfg->blocking_threads == 0)
        cfg->blocking_threads = (int)cores;
    if (cfg->store_workers == 0)
        cfg->store_workers = cfg->workers > 1 ? cfg->workers - 1 : 1;
    if (cfg->db_pool_size == 0)
        cfg->db_pool_size = cfg->workers + cfg->blocking_threads + 2;
    if (strcmp(cfg->log_level, "debug") && strcmp(cfg->log_level, "info") &&
        strcmp(cfg->log_level, "warn") && strcmp(cfg->log_level, "error"))
        return fail(err, errlen,
                    "invalid configuration: log level '%s' is not debug, info, warn or error",
                    cfg->log_level);
    if (strncmp(cfg->database_url, "postgres", 8) != 0 && strchr(cfg->database_url, '=') == NULL)
        return fail(err, errlen,
                    "invalid configuration: database URL must start with postgresql://");
    if ((cfg->tls_cert[0] == '\0') != (cfg->tls_key[0] == '\0'))
        return fail(err, errlen,
                    "invalid configuration: SHOPD_TLS_CERT and SHOPD_TLS_KEY go together");
    if (strncmp(cfg->redis_url, "redis://", 8) != 0)
        return fail(err, errlen, "invalid configuration: Redis URL must start with redis://");
    return 0;
}

void
cfg_free(cfg_t *cfg)
{
    if (cfg == NULL)
        return;
    for (size_t i = 0; i < SHOPD_ARRAY_LEN(cfg_rows); i++) {
        if (cfg_rows[i].type == CFG_STR) {
            char **p = (char **)((char *)cfg + cfg_rows[i].off);
            free(*p);
            *p = NULL;
        }
    }
}

/* Settings whose values are secrets, and the URLs whose password is hidden. */
static bool
cfg_secret(const char *flag)
{
    return !strcmp(flag, "platform-token") || !strcmp(flag, "jwt-keys") ||
           !strcmp(flag, "admin-token") || !strcmp(flag, "secrets-key") ||
           !strcmp(flag, "secrets-key-old") || !strcmp(flag, "s3-secret-key");
}

void
cfg_visit(const cfg_t *cfg,
          void (*fn)(void *ud, const char *flag, const char *env, const char *value), void *ud)
{
    for (size_t i = 0; i < SHOPD_ARRAY_LEN(cfg_rows); i++) {
        const cfg_row_t *r = &cfg_rows[i];
        const char *base = (const char *)cfg + r->off;
        char buf[512];
        switch (r->type) {
        case CFG_INT:
            snprintf(buf, sizeof(buf), "%d", *(const int *)base);
            break;
        case CFG_BOOL:
            snprintf(buf, sizeof(buf), "%s", *(const bool *)base ? "true" : "false");
            break;
        case CFG_STR: {
            const char *v = *(char *const *)base ? *(char *const *)base : "";
            if (cfg_secret(r->flag) && v[0] != '\0') {
                snprintf(buf, sizeof(buf), "(redacted)");
                break;
            }
            /* scheme://user:password@host: the password goes, the rest stays. */
            const char *scheme = strstr(v, "://");
            const char *at = scheme ? strchr(scheme + 3, '@') : NULL;
            const char *colon = at ? memchr(scheme + 3, ':', (size_t)(at - scheme - 3)) : NULL;
            if (colon)
                snprintf(buf, sizeof(buf), "%.*s:(redacted)%s", (int)(colon - v), v, at);
            else
                snprintf(buf, sizeof(buf), "%s", v);
            break;
        }
        }
        fn(ud, r->flag, r->env, buf);
    }
}

void
cfg_usage(FILE *out)
{
    fprintf(out, "usage: shopd [serve|migrate|create-super-admin] [--flag value ...]\n"
                 "\n"
                 "commands:\n"
                 "  serve     run the HTTP server (default)\n"
                 "  migrate   apply pending database migrations and exit\n"
                 "  create-super-admin --email E --password-stdin\n"
                 "            create a platform admin (password read from stdin) and exit\n"
                 "\n"
                 "settings (flag, environment variable, default):\n");
    for (size_t i = 0; i < SHOPD_ARRAY_LEN(cfg_rows); i++) {
        const cfg_row_t *r = &cfg_rows[i];
        const char *shown = r->def;
        if (r->type == CFG_STR && r->def[0] == '\0')
            shown = "(empty)";
        fprintf(out, "  --%-18s %-24s %s\n  %-20s %-24s default: %s\n", r->flag, r->env, r->help,
                "", "", shown);
    }
}
