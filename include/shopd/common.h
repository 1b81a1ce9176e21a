/*
 * common.h: what every shopd module shares: the internal status codes, the
 * allocation wrappers that abort on out-of-memory (one place, as Redis does),
 * clocks and small string helpers.
 *
 * Status codes are turned into HTTP statuses once, at the edge (net/), never
 * inside business logic.
 */
#ifndef SHOPD_COMMON_H
#define SHOPD_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/** Internal result of an operation, and of a handler's answer. 0 and above are
 *  kinds of success (an answer may say "created" or "nothing to send"), below 0
 *  kinds of failure. The HTTP edge turns each into a status through one table
 *  (net_status_for_rc); domain code never names an HTTP status. */
typedef enum shopd_rc_e {
    SHOPD_NOT_MODIFIED = 4, /**< the client's copy is current (304) */
    SHOPD_NO_CONTENT = 3,   /**< done, nothing to send (204) */
    SHOPD_ACCEPTED = 2,     /**< taken, done later or not said (202) */
    SHOPD_CREATED = 1,      /**< a new resource (201) */
    SHOPD_OK = 0,
    SHOPD_ERR = -1,             /**< unexpected internal error (500) */
    SHOPD_AGAIN = -2,           /**< not ready yet; try later */
    SHOPD_NOTFOUND = -3,        /**< the thing does not exist (404) */
    SHOPD_BUSY = -4,            /**< back-pressure: a queue is full (503 + Retry-After) */
    SHOPD_CONFLICT = -5,        /**< unique or state conflict (409) */
    SHOPD_INVALID = -6,         /**< validation failed (422) */
    SHOPD_FORBIDDEN = -7,       /**< caller may not do this (403) */
    SHOPD_UNAVAILABLE = -8,     /**< a backend (PostgreSQL, Redis) is unreachable (503) */
    SHOPD_UNAUTHENTICATED = -9, /**< no valid credentials (401) */
    SHOPD_BAD_REQUEST = -10,    /**< the request cannot be read (400) */
    SHOPD_RATE_LIMITED = -11,   /**< over a rate limit (429) */
    SHOPD_UNSUPPORTED = -12,    /**< a media type the endpoint does not take (415) */
    SHOPD_NOT_ALLOWED = -13,    /**< the method is not allowed here (405) */
    SHOPD_PAYMENT_FAILED = -14, /**< the payment was declined (402) */
    SHOPD_TOO_LARGE = -15,      /**< a part of the request is over its size limit (413) */
} shopd_rc_t;

/** Short stable name of a status code ("ok", "busy", ...). Never NULL. */
const char *shopd_rc_name(shopd_rc_t rc);

/* Allocation: these never return NULL; on exhaustion they log one line and abort(). */
void *shopd_malloc(size_t n);
void *shopd_calloc(size_t n, size_t size);
void *shopd_realloc(void *p, size_t n);
char *shopd_strdup(const char *s);
char *shopd_strndup(const char *s, size_t n);
void shopd_free(void *p);

/** Monotonic clock in microseconds (CLOCK_MONOTONIC). Any thread. */
uint64_t shopd_now_us(void);
/** Wall clock in microseconds since the epoch. Any thread. */
uint64_t shopd_wall_us(void);

/** Constant-time comparison of two byte strings; lengths may differ (then false,
 *  after a full-length pass so timing does not reveal the prefix). */
bool shopd_ct_equal(const void *a, size_t alen, const void *b, size_t blen);

/** Fill buf with n cryptographically random bytes (getrandom). Returns 0 or -1. */
int shopd_random(void *buf, size_t n);

/** Lower-case hex of n random bytes into out (2n+1 bytes incl. NUL). */
void shopd_random_hex(char *out, size_t nbytes);

/** Parses a database id: 1 to 19 ASCII digits (no sign, no spaces) whose value is
 *  1..INT64_MAX, the range of a PostgreSQL bigint. s need not be NUL-terminated.
 *  Returns true and sets *out, or false for anything else (an id that cannot
 *  exist: the caller answers 404, or 400 for a malformed cursor, without asking
 *  the database). Any thread. */
bool shopd_id_parse(const char *s, size_t n, uint64_t *out);

/** Parses a decimal integer (optional leading '-', digits only) within
 *  [min, max]; false on anything else, overflow included. s is NUL-terminated. */
bool shopd_int_parse(const char *s, long long min, long long max, long long *out);

#define SHOPD_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define SHOPD_UNUSED(x) (void)(x)

#endif
