/*
 * query.c: the URL query of a request, read once at the edge.
 *
 * api_query_canon turns the raw query into one canonical form before the
 * request leaves the I/O thread: only the parameters the route declares, each
 * at most once, sorted by name, values percent-decoded and re-encoded the same
 * way every time. Everything downstream (api_query_param in the handlers, the
 * catalog cache key) reads that form, so two spellings of one request share a
 * cache entry and two different requests can never share one: the defect this
 * replaces sorted raw pairs for the key while the handler took the first of a
 * repeated parameter.
 *
 * A route's list may end a name with '*' ("attr.*"): a family of parameters
 * (search's attr.color, attr.size). A name of the family is taken as sent,
 * so it must be spelled with unreserved bytes only (letters, digits, '-',
 * '.', '_', '~'): then its raw form is its canonical form and two spellings of
 * one name cannot slip past the repeat check.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shopd/api.h"

static int
hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* The next byte of application/x-www-form-urlencoded text at *p (before e),
 * advancing *p past it: '+' is a space, %XX a byte, a '%' not followed by two
 * hex digits stays as it is. Decoding byte by byte needs no buffer of its own. */
static unsigned char
next_decoded(const char **p, const char *e)
{
    const char *s = *p;
    if (*s == '+') {
        *p = s + 1;
        return ' ';
    }
    if (*s == '%' && e - s > 2 && hexval(s[1]) >= 0 && hexval(s[2]) >= 0) {
        *p = s + 3;
        return (unsigned char)(hexval(s[1]) * 16 + hexval(s[2]));
    }
    *p = s + 1;
    return (unsigned char)*s;
}

typedef struct pair_s {
    const char *name; /* points into the route's list, or into the query (a family) */
    size_t nlen;
    const char *val; /* raw, points into the query */
    size_t vlen;
} pair_t;

static int
pair_cmp(const void *a, const void *b)
{
    const pair_t *x = a, *y = b;
    int c = memcmp(x->name, y->name, x->nlen < y->nlen ? x->nlen : y->nlen);
    return c ? c : (x->nlen > y->nlen) - (x->nlen < y->nlen);
}

static bool
unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

/* The route's name for the key q[0..kl): an exact entry, or a family ("attr.*")
 * whose prefix the key extends (*family set). NULL when none fits. */
static const char *
allowed_name(const char *const *allowed, const char *q, size_t kl, bool *family)
{
    *family = false;
    for (const char *const *a = allowed; a && *a; a++) {
        size_t al = strlen(*a);
        if (al == kl && memcmp(*a, q, kl) == 0)
            return *a;
        if (al > 1 && (*a)[al - 1] == '*' && kl > al - 1 && memcmp(*a, q, al - 1) == 0) {
            *family = true;
            return *a;
        }
    }
    return NULL;
}

static net_reply_t *
bad_query(const char *field, const char *issue)
{
    return api_fail_field(SHOPD_BAD_REQUEST, "invalid_query",
                          "the query string is not valid for this endpoint", field, issue);
}

net_reply_t *
api_query_canon(const char *const *allowed, const char *q, size_t qlen, char **out, size_t *outlen)
{
    *out = NULL;
    *outlen = 0;
    pair_t pairs[API_MAX_QUERY];
    size_t np = 0;
    const char *end = q ? q + qlen : q;
    while (q && q < end) {
        const char *amp = memchr(q, '&', (size_t)(end - q));
        const char *pe = amp ? amp : end;
        if (pe == q) { /* "a=1&&b=2": an empty pair means nothing */
            q = pe + 1;
            continue;
        }
        const char *eq = memchr(q, '=', (size_t)(pe - q));
        const char *ke = eq ? eq : pe;
        size_t kl = (size_t)(ke - q);
        bool family;
        const char *name = allowed_name(allowed, q, kl, &family);
        char f[64];
        snprintf(f, sizeof(f), "%.*s", (int)(kl < 60 ? kl : 60), q);
        if (name == NULL)
            return bad_query(f, "unknown query parameter");
        size_t nlen = strlen(name);
        if (family) {
            if (kl > 64)
                return bad_query(f, "parameter name too long");
            for (size_t i = 0; i < kl; i++)
                if (!unreserved((unsigned char)q[i]))
                    return bad_query(f, "parameter name must be letters, digits, '-', '.', '_' "
                                        "or '~'");
            name = q;
            nlen = kl;
        }
        for (size_t i = 0; i < np; i++)
            if (pairs[i].nlen == nlen && memcmp(pairs[i].name, name, nlen) == 0)
                return bad_query(f, "given more than once");
        /* Distinct names: np reaches API_MAX_QUERY only through a family, or a list
         * that long (the route-table test refuses those). */
        if (np == API_MAX_QUERY)
            return bad_query(f, "too many query parameters");
        const char *v = eq ? eq + 1 : pe;
        pairs[np++] = (pair_t){name, nlen, v, (size_t)(pe - v)};
        q = pe + 1;
    }
    if (np == 0)
        return NULL;
    qsort(pairs, np, sizeof(pairs[0]), pair_cmp);
    size_t cap = 1;
    for (size_t i = 0; i < np; i++)
        cap += pairs[i].nlen + 2 + 3 * pairs[i].vlen;
    char *buf = shopd_malloc(cap);
    size_t o = 0;
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < np; i++) {
        size_t nl = pairs[i].nlen;
        if (i)
            buf[o++] = '&';
        memcpy(buf + o, pairs[i].name, nl);
        o += nl;
        buf[o++] = '=';
        const char *v = pairs[i].val, *ve = pairs[i].val + pairs[i].vlen;
        while (v < ve) {
            unsigned char c = next_decoded(&v, ve);
            if (unreserved(c)) {
                buf[o++] = (char)c;
            } else {
                buf[o++] = '%';
                buf[o++] = hex[c >> 4];
                buf[o++] = hex[c & 15];
            }
        }
    }
    buf[o] = '\0';
    *out = buf;
    *outlen = o;
    return NULL;
}

const char *
api_query_param(const msg_env_t *env, const char *name, char *buf, size_t buflen)
{
    const char *q = env->query.p, *end = env->query.p + env->query.n;
    size_t nl = strlen(name);
    while (q && q < end) {
        const char *amp = memchr(q, '&', (size_t)(end - q));
        const char *pe = amp ? amp : end;
        const char *eq = memchr(q, '=', (size_t)(pe - q));
        const char *ke = eq ? eq : pe;
        if ((size_t)(ke - q) == nl && memcmp(q, name, nl) == 0) {
            const char *v = eq ? eq + 1 : pe;
            /* A value longer than buf is cut; every caller's bounds are shorter than
             * its buffer, so a cut value always fails its validation. */
            size_t n = 0;
            while (v < pe && n + 1 < buflen)
                buf[n++] = (char)next_decoded(&v, pe);
            buf[n] = '\0';
            return buf;
        }
        q = pe + 1;
    }
    return NULL;
}
