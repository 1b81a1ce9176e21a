/*
 * common.c: allocation wrappers (abort on exhaustion), clocks, constant-time
 * compare and randomness shared by every module.
 */
#include "shopd/common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

const char *
shopd_rc_name(shopd_rc_t rc)
{
    switch (rc) {
    case SHOPD_OK:
        return "ok";
    case SHOPD_ERR:
        return "error";
    case SHOPD_AGAIN:
        return "again";
    case SHOPD_NOTFOUND:
        return "not_found";
    case SHOPD_BUSY:
        return "busy";
    case SHOPD_CONFLICT:
        return "conflict";
    case SHOPD_INVALID:
        return "invalid";
    case SHOPD_FORBIDDEN:
        return "forbidden";
    case SHOPD_UNAVAILABLE:
        return "unavailable";
    case SHOPD_CREATED:
        return "created";
    case SHOPD_ACCEPTED:
        return "accepted";
    case SHOPD_NO_CONTENT:
        return "no_content";
    case SHOPD_NOT_MODIFIED:
        return "not_modified";
    case SHOPD_UNAUTHENTICATED:
        return "unauthenticated";
    case SHOPD_BAD_REQUEST:
        return "bad_request";
    case SHOPD_RATE_LIMITED:
        return "rate_limited";
    case SHOPD_UNSUPPORTED:
        return "unsupported";
    case SHOPD_NOT_ALLOWED:
        return "not_allowed";
    case SHOPD_PAYMENT_FAILED:
        return "payment_failed";
    case SHOPD_TOO_LARGE:
        return "too_large";
    }
    return "unknown";
}

static void
oom(size_t n)
{
    /* Nothing sensible can continue without memory; say so once and stop. */
    fprintf(stderr, "shopd: out of memory allocating %zu bytes\n", n);
    abort();
}

void *
shopd_malloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (p == NULL)
        oom(n);
    return p;
}

void *
shopd_calloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (p == NULL)
        oom(n * size);
    return p;
}

void *
shopd_realloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (q == NULL)
        oom(n);
    return q;
}

char *
shopd_strdup(const char *s)
{
    return shopd_strndup(s, strlen(s));
}

char *
shopd_strndup(const char *s, size_t n)
{
    char *p = shopd_malloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

void
shopd_free(void *p)
{
    free(p);
}

uint64_t
shopd_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

uint64_t
shopd_wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

bool
shopd_ct_equal(const void *a, size_t alen, const void *b, size_t blen)
{
    const unsigned char *x = a, *y = b;
    unsigned char diff = (unsigned char)(alen != blen);
    /* Walk the expected length (b) whatever a is, so the time taken does not
     * depend on how long a matching prefix is. */
    for (size_t i = 0; i < blen; i++) {
        unsigned char xa = i < alen ? x[i] : 0;
        diff |= (unsigned char)(xa ^ y[i]);
    }
    return diff == 0;
}

int
shopd_random(void *buf, size_t n)
{
    unsigned char *p = buf;
    while (n > 0) {
        ssize_t got = getrandom(p, n, 0);
        if (got < 0)
            return -1;
        p += got;
        n -= (size_t)got;
    }
    return 0;
}

void
shopd_random_hex(char *out, size_t nbytes)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char tmp[64];
    size_t done = 0;
    while (done < nbytes) {
        size_t chunk = nbytes - done > sizeof(tmp) ? sizeof(tmp) : nbytes - done;
        if (shopd_random(tmp, chunk) != 0)
            abort();
        for (size_t i = 0; i < chunk; i++) {
            out[2 * (done + i)] = hex[tmp[i] >> 4];
            out[2 * (done + i) + 1] = hex[tmp[i] & 15];
        }
        done += chunk;
    }
    out[2 * nbytes] = '\0';
}

bool
shopd_id_parse(const char *s, size_t n, uint64_t *out)
{
    if (s == NULL || n == 0 || n > 19)
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (uint64_t)(s[i] - '0'); /* 19 digits fit in uint64_t */
    }
    if (v == 0 || v > (uint64_t)INT64_MAX)
        return false;
    *out = v;
    return true;
}

bool
shopd_int_parse(const char *s, long long min, long long max, long long *out)
{
    if (s == NULL)
        return false;
    const char *p = s;
    bool neg = *p == '-';
    if (neg)
        p++;
    if (*p == '\0')
        return false;
    unsigned long long v = 0, lim = neg ? (unsigned long long)INT64_MAX + 1
                                        : (unsigned long long)INT64_MAX;
    for (; *p; p++) {
        if (*p < '0' || *p > '9')
            return false;
        unsigned d = (unsigned)(*p - '0');
        if (v > (lim - d) / 10)
            return false; /* would pass the int64 range */
        v = v * 10 + d;
    }
    long long x =
        neg ? (v == (unsigned long long)INT64_MAX + 1 ? INT64_MIN : -(long long)v) : (long long)v;
    if (x < min || x > max)
        return false;
    *out = x;
    return true;
}
