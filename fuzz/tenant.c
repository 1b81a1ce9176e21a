/*
 * libFuzzer driver: the pieces of the edge that read raw client strings: the
 * router (method + path), tenant naming from X-Tenant-Id / Host, id parsing,
 * and the query: canonical form (api_query_canon) and parameter decoding.
 * Input: fields separated by '\n'.
 */
#include <stdlib.h>
#include <string.h>

#include "shopd/api.h"
#include "shopd/search.h"

int
LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    char *s = malloc(size + 1);
    memcpy(s, data, size);
    s[size] = '\0';
    char *f[4] = {s, "", "", ""};
    for (int i = 1; i < 4; i++) {
        char *nl = strchr(f[i - 1], '\n');
        if (nl == NULL)
            break;
        *nl = '\0';
        f[i] = nl + 1;
    }

    char key[STORE_KEY_MAX];
    if (store_tenant_key(f[0][0] ? f[0] : NULL, f[1], "shop.test", key, sizeof(key)) == 0) {
        if (strlen(key) >= sizeof(key))
            abort();
        if (strncmp(key, "id:", 3) && strncmp(key, "slug:", 5) && strncmp(key, "domain:", 7))
            abort();
    }

    static net_route_t *routes;
    if (routes == NULL) {
        routes = calloc(api_nroutes, sizeof(*routes));
        for (size_t i = 0; i < api_nroutes; i++) {
            routes[i].method = api_routes[i].method;
            routes[i].pattern = api_routes[i].pattern;
        }
    }
    net_match_t m;
    net_match_rc_t rc = net_route_match(routes, api_nroutes, f[0], f[2], strlen(f[2]), &m);
    if (rc == NET_MATCH_OK) {
        if (m.route < 0 || (size_t)m.route >= api_nroutes)
            abort();
        for (size_t i = 0; i < m.nparams; i++)
            if (m.param_values[i] < f[2] ||
                m.param_values[i] + m.param_value_lens[i] > f[2] + strlen(f[2]))
                abort();
    }

    /* An id is 1..INT64_MAX or nothing. */
    uint64_t id;
    if (shopd_id_parse(f[0], strlen(f[0]), &id) && (id == 0 || id > (uint64_t)INT64_MAX))
        abort();
    long long ll;
    if (shopd_int_parse(f[0], -5, 100, &ll) && (ll < -5 || ll > 100))
        abort();

    /* The canonical query of the product list: declared names only, each once,
     * and canonical again when read back (idempotent). */
    static const char *const allowed[] = {"category", "status", "min_price", "max_price",
                                          "brand",    "q",      "sort",      "limit",
                                          "page",     "cursor", NULL};
    char *canon = NULL, *again = NULL;
    size_t cl = 0, al = 0;
    net_reply_t *bad = api_query_canon(allowed, f[3], strlen(f[3]), &canon, &cl);
    if (bad) {
        if (canon || bad->status != 400)
            abort();
        net_reply_free(bad);
    } else if (canon) {
        bad = api_query_canon(allowed, canon, cl, &again, &al);
        if (bad || al != cl || memcmp(canon, again, cl) != 0)
            abort();
    }
    /* The search route's query, with the attr.* family: canonical twice over,
     * and whatever the edge lets through, search_parse reads without harm (its
     * strings NUL-terminated within their bounds). */
    static const char *const search_allowed[] = {"q",         "category", "brand", "price_min",
                                                 "price_max", "in_stock", "sort",  "limit",
                                                 "cursor",    "attr.*",   NULL};
    char *sc = NULL, *sc2 = NULL;
    size_t scl = 0, sc2l = 0;
    bad = api_query_canon(search_allowed, f[3], strlen(f[3]), &sc, &scl);
    if (bad) {
        if (sc || bad->status != 400)
            abort();
        net_reply_free(bad);
    } else if (sc) {
        bad = api_query_canon(search_allowed, sc, scl, &sc2, &sc2l);
        if (bad || sc2l != scl || memcmp(sc, sc2, scl) != 0)
            abort();
        search_query_t sq;
        api_val_t sv = {0};
        search_parse(sc, scl, &sq, &sv);
        if (sv.n == 0 &&
            (strlen(sq.q) > SEARCH_MAX_Q || strlen(sq.brand) > SEARCH_MAX_VALUE ||
             sq.nattrs > SEARCH_MAX_ATTRS || sq.limit < 1 || sq.limit > SEARCH_MAX_LIMIT))
            abort();
        for (size_t i = 1; sv.n == 0 && i < sq.nattrs; i++)
            if (strcmp(sq.attrs[i - 1].name, sq.attrs[i].name) >= 0)
                abort();
    }
    shopd_free(sc);
    shopd_free(sc2);

    msg_env_t env;
    memset(&env, 0, sizeof(env));
    env.query.p = canon ? canon : f[3];
    env.query.n = canon ? cl : strlen(f[3]);
    char buf[64];
    const char *names[] = {"limit", "cursor", "page", "q", ""};
    for (size_t i = 0; i < 5; i++) {
        const char *v = api_query_param(&env, names[i], buf, sizeof(buf));
        if (v && strlen(v) >= sizeof(buf))
            abort();
    }
    shopd_free(canon);
    shopd_free(again);
    free(s);
    return 0;
}
