/*
 * router.c: method + path matching against a route table. Patterns are split
 * on '/'; a segment starting with ':' captures one non-empty path segment.
 * First match wins. net_route_match scans the table; net_router_match (what the
 * edge uses) reads only the routes that share the path's literal first segments
 * (an index built once), with the same answers: the scan was 2.6% of a cached
 * page's CPU (bench/read.sh perf).
 *
 * HEAD is served by the GET route of a path (RFC 9110 section 9.3.2: same
 * status and headers, no body; http.c leaves the body out).
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "shopd/net.h"

/* Matches path against pattern; fills captures into out. */
static bool
match_pattern(const char *pattern, const char *path, size_t pathlen, net_match_t *out)
{
    const char *p = pattern, *s = path, *end = path + pathlen;
    out->nparams = 0;
    while (*p && s < end) {
        if (*p != '/' || *s != '/')
            return false;
        p++;
        s++;
        const char *pseg = p;
        while (*p && *p != '/')
            p++;
        size_t plen = (size_t)(p - pseg);
        const char *sseg = s;
        while (s < end && *s != '/')
            s++;
        size_t slen = (size_t)(s - sseg);
        if (plen > 0 && pseg[0] == ':') {
            if (slen == 0 || out->nparams >= NET_MAX_PARAMS)
                return false;
            out->param_names[out->nparams] = pseg + 1;
            out->param_name_lens[out->nparams] = plen - 1;
            out->param_values[out->nparams] = sseg;
            out->param_value_lens[out->nparams] = slen;
            out->nparams++;
        } else if (plen != slen || memcmp(pseg, sseg, plen) != 0) {
            return false;
        }
    }
    return *p == '\0' && s == end;
}

/* The match over the candidates idx[0..n) (indices into routes, in table order;
 * idx NULL: every route), first match wins; the same for a scan and the index. */
static net_match_rc_t
match_in(const net_route_t *routes, const uint16_t *idx, size_t n, const char *method,
         const char *path, size_t pathlen, net_match_t *out)
{
    bool path_seen = false;
    bool head = strcmp(method, "HEAD") == 0;
    net_match_t tmp;
    out->route = -1;
    out->nparams = 0;
    out->allow[0] = '\0';
    for (size_t k = 0; k < n; k++) {
        size_t i = idx ? idx[k] : k;
        if (!match_pattern(routes[i].pattern, path, pathlen, &tmp))
            continue;
        if (strcmp(routes[i].method, method) == 0 ||
            (head && strcmp(routes[i].method, "GET") == 0)) {
            *out = tmp;
            out->route = (int)i;
            out->allow[0] = '\0';
            return NET_MATCH_OK;
        }
        if (!strstr(out->allow, routes[i].method)) {
            size_t used = strlen(out->allow);
            snprintf(out->allow + used, sizeof(out->allow) - used, "%s%s", path_seen ? ", " : "",
                     routes[i].method);
        }
        path_seen = true;
    }
    return path_seen ? NET_MATCH_BAD_METHOD : NET_MATCH_NOT_FOUND;
}

net_match_rc_t
net_route_match(const net_route_t *routes, size_t n, const char *method, const char *path,
                size_t pathlen, net_match_t *out)
{
    /* A trailing slash is not a different resource ("/stores/" == "/stores"). */
    if (pathlen > 1 && path[pathlen - 1] == '/')
        pathlen--;
    return match_in(routes, NULL, n, method, path, pathlen, out);
}

/* ---- the literal-prefix index ----
 * A route can only match a path with as many segments, so every route that matches a
 * path shares its first ROUTER_DEPTH segments (fewer if it has fewer), unless one of
 * those is a parameter. Routes are kept in buckets by that literal prefix, and the
 * routes with a parameter in it in a list every lookup also reads; candidates are
 * merged in table order, so the first match and the 405's Allow are the scan's. */
#define ROUTER_DEPTH 3

typedef struct router_bucket_s {
    uint64_t hash;
    const char *key; /* points into a pattern */
    size_t keylen;
    uint16_t *idx; /* table order */
    size_t n;
} router_bucket_t;

struct net_router_s {
    const net_route_t *routes;
    size_t nroutes;
    router_bucket_t *b; /* open addressing, nb a power of two */
    size_t nb;
    uint16_t *wild; /* routes with a parameter in their prefix */
    size_t nwild;
};

/* Length of the first ROUTER_DEPTH segments of s[0..n); *param: one starts with ':'. */
static size_t
prefix_len(const char *s, size_t n, bool *param)
{
    size_t i = 0;
    int segs = 0;
    *param = false;
    while (i < n && segs < ROUTER_DEPTH) {
        if (s[i] != '/')
            break;
        i++;
        segs++;
        if (i < n && s[i] == ':')
            *param = true;
        while (i < n && s[i] != '/')
            i++;
    }
    return i;
}

static uint64_t
prefix_hash(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ULL;
    }
    return h;
}

static router_bucket_t *
bucket_find(const net_router_t *r, uint64_t h, const char *key, size_t keylen)
{
    for (size_t k = h & (r->nb - 1);; k = (k + 1) & (r->nb - 1)) {
        router_bucket_t *b = &r->b[k];
        if (b->key == NULL ||
            (b->hash == h && b->keylen == keylen && memcmp(b->key, key, keylen) == 0))
            return b;
    }
}

net_router_t *
net_router_new(const net_route_t *routes, size_t n)
{
    net_router_t *r = shopd_calloc(1, sizeof(*r));
    r->routes = routes;
    r->nroutes = n;
    r->nb = 16;
    while (r->nb < 2 * n + 2)
        r->nb *= 2;
    r->b = shopd_calloc(r->nb, sizeof(*r->b));
    r->wild = shopd_calloc(n ? n : 1, sizeof(*r->wild));
    for (size_t i = 0; i < n; i++) {
        const char *p = routes[i].pattern;
        bool param;
        size_t kl = prefix_len(p, strlen(p), &param);
        if (param) {
            r->wild[r->nwild++] = (uint16_t)i;
            continue;
        }
        uint64_t h = prefix_hash(p, kl);
        router_bucket_t *b = bucket_find(r, h, p, kl);
        if (b->key == NULL)
            *b = (router_bucket_t){h, p, kl, NULL, 0};
        b->idx = shopd_realloc(b->idx, (b->n + 1) * sizeof(*b->idx));
        b->idx[b->n++] = (uint16_t)i;
    }
    return r;
}

void
net_router_free(net_router_t *r)
{
    if (r == NULL)
        return;
    for (size_t i = 0; i < r->nb; i++)
        shopd_free(r->b[i].idx);
    shopd_free(r->b);
    shopd_free(r->wild);
    shopd_free(r);
}

net_match_rc_t
net_router_match(const net_router_t *r, const char *method, const char *path, size_t pathlen,
                 net_match_t *out)
{
    if (pathlen > 1 && path[pathlen - 1] == '/')
        pathlen--;
    bool param;
    size_t kl = prefix_len(path, pathlen, &param);
    const router_bucket_t *b = bucket_find(r, prefix_hash(path, kl), path, kl);
    size_t nb = b->key ? b->n : 0;
    if (r->nwild == 0)
        return match_in(r->routes, b->idx, nb, method, path, pathlen, out);
    /* Merge the bucket and the wild list in table order (both are sorted). */
    uint16_t stack[256];
    uint16_t *idx = nb + r->nwild <= 256 ? stack : shopd_malloc((nb + r->nwild) * sizeof(*idx));
    size_t i = 0, j = 0, k = 0;
    while (i < nb || j < r->nwild)
        idx[k++] = j == r->nwild || (i < nb && b->idx[i] < r->wild[j]) ? b->idx[i++] : r->wild[j++];
    net_match_rc_t rc = match_in(r->routes, idx, k, method, path, pathlen, out);
    if (idx != stack)
        shopd_free(idx);
    return rc;
}

void
net_route_allow(const net_match_t *m, char *out, size_t n)
{
    size_t used = 0;
    out[0] = '\0';
    for (const char *p = m->allow; *p && used + 1 < n;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        int w = snprintf(out + used, n - used, "%s%.*s", used ? ", " : "", (int)len, p);
        if (w < 0 || (size_t)w >= n - used)
            break;
        used += (size_t)w;
        if (len == 3 && !memcmp(p, "GET", 3) && !strstr(m->allow, "HEAD")) {
            w = snprintf(out + used, n - used, ", HEAD");
            if (w < 0 || (size_t)w >= n - used)
                break;
            used += (size_t)w;
        }
        p += len;
        while (*p == ',' || *p == ' ')
            p++;
    }
}
