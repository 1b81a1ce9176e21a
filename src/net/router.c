/*
 * router.c: method + path matching against a route table. Patterns are split
 * on '/'; a segment starting with ':' captures one non-empty path segment.
 * Linear scan, first match wins: the table is small and the scan is cheaper
 * than building a trie for it (measure before changing).
 *
 * HEAD is served by the GET route of a path (RFC 9110 section 9.3.2: same
 * status and headers, no body; http.c leaves the body out).
 */
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

net_match_rc_t
net_route_match(const net_route_t *routes, size_t n, const char *method, const char *path,
                size_t pathlen, net_match_t *out)
{
    bool path_seen = false;
    bool head = strcmp(method, "HEAD") == 0;
    net_match_t tmp;
    out->route = -1;
    out->nparams = 0;
    out->allow[0] = '\0';
    /* A trailing slash is not a different resource ("/stores/" == "/stores"). */
    if (pathlen > 1 && path[pathlen - 1] == '/')
        pathlen--;
    for (size_t i = 0; i < n; i++) {
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
