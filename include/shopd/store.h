/*
 * store.h: stores (the tenants): tenant-key parsing from a request, the
 * in-process resolution cache shared by the I/O threads and the workers,
 * and the store API handlers (declared in api.h's route table).
 */
#ifndef SHOPD_STORE_H
#define SHOPD_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shopd/common.h"

typedef enum store_status_e { STORE_ACTIVE = 0, STORE_SUSPENDED = 1 } store_status_t;

#define STORE_CORS_MAX 1024       /**< bytes of a store's allowed origins, commas included */
#define STORE_CORS_ORIGINS 16     /**< origins a store may allow */
#define STORE_RATE_QUOTA_MAX 1000 /**< largest settings.rate_quota */

/** What the edge and the handlers need of a store, copied out of the cache. */
typedef struct store_snap_s {
    uint64_t id; /**< 0 in a negative entry: no such store */
    int status;  /**< store_status_t */
    char slug[64];
    char name[201 * 4];
    char currency[4];
    char domain[254];
    /** The public JSON of GET /api/v1/store, rendered once when the store is looked
     *  up (building it per request was a third of that request's instructions). */
    char public_json[1400];
    size_t public_len;
    /** settings.cors_origins, comma-separated ("" = no cross-origin caller). */
    char cors[STORE_CORS_MAX];
    /** settings.rate_quota: the store's budgets are SHOPD_RATE_*_STORE times this (>= 1). */
    uint32_t rate_quota;
} store_snap_t;

#define STORE_KEY_MAX 300

/** Builds the cache key naming the store a request is for: from the X-Tenant-Id header
 *  (digits -> "id:N", else "slug:S"), else from Host "<slug>.<base_domain>" -> "slug:S",
 *  else any other Host -> "domain:H" (lower-cased, port removed). base_domain may be
 *  NULL or "". Returns 0, or -1 when the request names no store (no header, no Host)
 *  or the value is malformed. Pure. */
int store_tenant_key(const char *x_tenant, const char *host, const char *base_domain, char *key,
                     size_t keylen);

/** True if s is a valid store slug: [a-z0-9-], 3-63 chars, no hyphen at either end. */
bool store_slug_valid(const char *s, size_t n);
/** True if code is an ISO 4217 currency code in use. */
bool store_currency_valid(const char *code);
/** True if s is a plausible DNS host name (lower case letters, digits, '-', '.'). */
bool store_domain_valid(const char *s);

/** True if s is an origin a store may allow: "http(s)://host[:port]" in lower
 *  case, no path; or with the host "*.example.com" (after the scheme) for
 *  every subdomain of a domain (never "*" alone: the allowed list is echoed, and "null" is never
 * allowed). Pure. */
bool store_origin_valid(const char *s, size_t n);
/** True if origin (a request's Origin header, compared case-insensitively)
 *  is one of list ("origin,origin", entries as store_origin_valid accepts);
 *  a wildcard entry (host "*.domain") matches any host ending in ".domain"
 *  with that scheme and no port. Pure. */
bool store_origin_allowed(const char *list, const char *origin);

typedef struct store_cache_s store_cache_t;

/** A cache of key -> snapshot with a TTL (seconds; 0 disables caching). Negative
 *  entries (id 0) live at most 5 seconds. Thread-safe (rwlock). */
store_cache_t *store_cache_new(unsigned ttl_s);
void store_cache_free(store_cache_t *c);
/** Copies the entry into *out if present and fresh. */
bool store_cache_get(store_cache_t *c, const char *key, store_snap_t *out);
/** Stores snap under key (and, for a positive entry, also under "id:N"). */
void store_cache_put(store_cache_t *c, const char *key, const store_snap_t *snap);
/** Drops every entry of store id, and every negative entry (a new or renamed store
 *  may now answer to a key that was unknown). */
void store_cache_invalidate(store_cache_t *c, uint64_t id);
/** Number of entries (for tests and metrics). */
size_t store_cache_size(store_cache_t *c);

/** The module descriptor (routes, start and stop hooks); listed in src/modules/routes.c. */
typedef struct api_module_s api_module_t;
extern const api_module_t store_module;

#endif
