/*
 * config.h: shopd's configuration. One declarative table (config.c) gives each
 * setting its environment variable, command-line flag, type, bounds, default
 * and help line; --help is printed from the same table. Flags override the
 * environment, which overrides defaults.
 */
#ifndef SHOPD_CONFIG_H
#define SHOPD_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

typedef struct cfg_s {
    char *listen;          /**< "host:port" */
    char listen_host[256]; /**< parsed from listen */
    int listen_port;
    int io_threads;     /**< 0 in the table means "number of cores", resolved by cfg_load */
    bool io_flood_lane; /**< the flood lane of the I/O threads (net_config_t.flood_lane) */
    int workers;
    int blocking_threads; /**< threads of the blocking pool */
    int blocking_queue;   /**< queued tasks per blocking lane of a store */
    int blocking_nice;    /**< nice value of the blocking threads */
    int store_workers;    /**< workers one store may hold while other stores wait */
    int read_batch;       /**< messages per turn of a read lane */
    int read_pipeline;    /**< requests of one batch read route per turn, one pipeline */
    char *database_url;
    char *redis_url;
    int db_pool_size;
    int max_body;   /**< bytes */
    int max_header; /**< bytes of request line + headers */
    int max_output; /**< unsent answer bytes per connection before parsing pauses */
    int max_conns;
    int idle_timeout;    /**< seconds a keep-alive connection may sit idle */
    int request_timeout; /**< milliseconds before a request is answered 504 */
    int mailbox_cap;
    int actor_batch;
    int actor_idle_ms;
    int shutdown_timeout; /**< milliseconds to drain on SIGTERM */
    char *platform_token;
    char *base_domain;    /**< "shop.example.com": <slug>.shop.example.com resolves the store */
    int tenant_cache_ttl; /**< seconds */
    bool migrate;         /**< apply migrations at start */
    char *sql_dir;
    char *log_level;
    bool access_log;
    char *jwt_keys;               /**< "kid:secret,kid:secret": the first signs, all verify */
    char *outbox_dir;             /**< outgoing e-mail is written here, one file per message */
    char *secrets_key;            /**< base64 of 32 bytes: seals secrets at rest (seal.h) */
    char *secrets_key_old;        /**< the previous key during a rotation ("" = none) */
    char *secrets_key_file;       /**< kept or made here when secrets_key is "" */
    int jobs_poll_ms;             /**< ms between relay steps */
    bool jobs_consume;            /**< run jobs here (false: relay only) */
    int jobs_inflight;            /**< jobs run at once on the blocking pool */
    int jobs_visibility_ms;       /**< a job taken longer ago than this is taken over */
    char *jobs_retry_schedule;    /**< "s,s,...": pauses before e-mail retries */
    char *webhook_retry_schedule; /**< "s,s,...": pauses before webhook retries */
    int webhook_timeout_ms;       /**< one delivery's time limit */
    bool webhook_allow_insecure;  /**< http:// and private targets allowed (tests) */
    int webhook_disable_after;    /**< seconds failing before a dead letter disables the endpoint */
    char *smtp_url;               /**< "" = the file outbox */
    char *smtp_tls;               /**< required, try or none */
    int smtp_timeout_ms;
    char *mail_from;
    int auth_rate_ip; /**< auth attempts per minute per client address and endpoint (0 = off) */
    int auth_rate_account; /**< auth attempts per hour per account and endpoint (0 = off) */
    char *trusted_proxies; /**< "ip,ip": peers whose X-Forwarded-For names the client */
    char *admin_listen;    /**< "host:port" of the admin protocol; "" = off */
    char admin_host[256];  /**< parsed from admin_listen */
    int admin_port;
    char *admin_token;         /**< "tok,tok": accepted in the admin hello (rotation); "" = none */
    int admin_max_frame;       /**< bytes of one admin frame (beyond: an error frame and close) */
    int admin_max_conns;       /**< open admin connections at most */
    int admin_idle_timeout;    /**< seconds an admin connection may sit idle */
    char *admin_tls_cert;      /**< PEM certificate chain: TLS on the admin port ("" = plain TCP) */
    char *admin_tls_key;       /**< PEM private key of admin_tls_cert */
    int cart_ttl;              /**< seconds a guest cart lives after its last write */
    int order_payment_timeout; /**< seconds an order may stay unpaid before it is cancelled */
    int sweep_interval_ms;     /**< how often the sweepers look for due work */
    bool stripe_any_base;      /**< a store's Stripe api_base may be any http(s) URL (tests) */
    int stripe_timeout_ms;     /**< total time of one call to Stripe */
    int stripe_connect_ms;     /**< connect time of one call to Stripe */
    int stripe_reconcile_s;    /**< a Stripe payment pending this long is asked about again */
    bool rate_limit;           /**< the edge's request budgets on (false: none, tests) */
    int rate_window;           /**< seconds every budget below is counted over */
    int rate_sync_ms;          /**< ms between budget syncs through Redis (0: per process only) */
    /** Requests per window by rate class (api_rate_t - 1: reads, writes, checkout,
     *  auth, admin) and budget (0 per client address, 1 per user or token, 2 per
     *  store before its quota); 0 = that budget off. */
    int rate[5][3];
    char *cors_origins;   /**< "origin,origin": allowed for routes with no store */
    int cors_max_age;     /**< seconds a browser may keep a preflight answer */
    char *tls_cert;       /**< PEM certificate chain: serve HTTPS ("" = plain HTTP) */
    char *tls_key;        /**< PEM private key of tls_cert */
    char *media_dir;      /**< local media storage folder (served at /media/) */
    int media_max_bytes;  /**< bytes of one uploaded file (413 payload_too_large beyond) */
    int media_max_pixels; /**< width x height of one upload at most (decompression bombs) */
    char *media_sizes;    /**< "w,w,...": rendition widths */
    char *media_cdn_url;  /**< base URL of media links ("" = /media/ here, or the bucket) */
    char *media_backend;  /**< "local" or "s3" */
    char *s3_endpoint;    /**< scheme://host[:port] ("" = AWS for s3_region) */
    char *s3_bucket;
    char *s3_region;
    char *s3_access_key;
    char *s3_secret_key;    /**< secret: redacted in config.show */
    bool s3_path_style;     /**< host/bucket/key instead of bucket.host/key */
    int s3_multipart_bytes; /**< objects above go up in parts of this size */
    int s3_timeout_ms;      /**< one S3 request, whole */
    bool pages;             /**< serve /openapi.yaml, /docs and /admin */
    char *web_dir;          /**< the pages' folder (admin/, docs/) */
    char *docs_dir;         /**< the folder of openapi.yaml */
    char *vendor_dir;       /**< npm packages the pages use (swagger-ui-dist, uplot) */
    int page_cache_mb;      /**< bytes (MiB) of the in-process catalog page cache (0: off) */
    int page_stale_ms;      /**< how old a cached page's last version check may be while the
                                 catalog version subscription is down */
} cfg_t;

/** Loads defaults, then environment (envp may be NULL: use environ), then flags from
 *  argv[first..argc-1]. On error writes one line into err and returns -1 (the caller
 *  prints it and exits 2). Unknown flags, bad numbers, out-of-range values and a
 *  malformed listen address are errors. */
int cfg_load(cfg_t *cfg, int argc, char **argv, int first, char *err, size_t errlen);
/** Frees strings held by cfg. */
void cfg_free(cfg_t *cfg);
/** Prints every setting: flag, environment variable, default and help. */
void cfg_usage(FILE *out);

/** Calls fn once per setting, in table order, with its flag, environment variable
 *  and current value as text; secrets (tokens, keys, passwords in URLs) are given
 *  as "(redacted)" (or "" when empty). For config.show. */
void cfg_visit(const cfg_t *cfg,
               void (*fn)(void *ud, const char *flag, const char *env, const char *value),
               void *ud);

/** Parses "host:port" or "[v6]:port" into host and port. Returns 0 or -1. */
int cfg_parse_listen(const char *s, char *host, size_t hostlen, int *port);

#endif
