/*
 * edge.c: the HTTP edge, on the I/O threads (never blocks): route a request,
 * check who is calling (JWT verification is one HMAC), check the body, read the
 * query, name the store (tenant cache), pack the msgpack envelope and hand it to
 * the actor its run class names (api_dispatch). The worker half of the
 * middleware (token still describes its user, token of this store) runs in
 * dispatch.c once the store is known.
 *
 * Also the public edge's limits and browser rules: every routed request but the
 * system endpoints spends its rate class's budgets (client address, signed-in
 * user or token, store; in-process GCRA, include/shopd/ratelimit.h), CORS
 * preflights are answered here from the store's allowed origins, and
 * api_on_reply adds the CORS headers to each answer just before it is
 * written, when the answer's store is known even if the edge did not know it.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "api_int.h"
#include "shopd/auth.h"
#include "shopd/catalog.h"
#include "shopd/idem.h"
#include "shopd/log.h"
#include "shopd/ratelimit.h"

/* ------------------------------------------------------------ edge (I/O thread) */

static bool
bearer_matches(const char *auth, const char *token)
{
    if (auth == NULL || strncasecmp(auth, "Bearer ", 7) != 0)
        return false;
    const char *given = auth + 7;
    while (*given == ' ')
        given++;
    return shopd_ct_equal(given, strlen(given), token, strlen(token));
}

static bool
is_json_type(const char *ct)
{
    if (ct == NULL)
        return false;
    while (*ct == ' ')
        ct++;
    if (strncasecmp(ct, "application/json", 16) != 0)
        return false;
    char c = ct[16];
    return c == '\0' || c == ';' || c == ' ';
}

static net_handled_t
answer(net_request_t *req, net_reply_t *r)
{
    net_respond(req, r);
    return NET_DONE;
}

/* The client's address for rate limits: the peer, or, when the peer is one of
 * the configured proxies, the last X-Forwarded-For entry (the one that proxy
 * added; earlier entries are whatever the client chose to send). */
static const char *
client_ip(app_t *app, net_request_t *req, char *buf, size_t n)
{
    const char *peer = net_req_remote(req);
    const char *list = app->cfg->trusted_proxies;
    size_t pl = strlen(peer);
    bool trusted = false;
    for (const char *p = list; p && *p && pl && !trusted;) {
        const char *e = strchr(p, ',');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        trusted = l == pl && memcmp(p, peer, l) == 0;
        p = e ? e + 1 : p + l;
    }
    const char *xff = trusted ? net_req_header(req, "X-Forwarded-For") : NULL;
    if (xff == NULL)
        return peer;
    const char *last = strrchr(xff, ',');
    last = last ? last + 1 : xff;
    while (*last == ' ')
        last++;
    size_t l = strcspn(last, " \t");
    if (l == 0 || l >= n)
        return peer;
    memcpy(buf, last, l);
    buf[l] = '\0';
    return buf;
}

/* The middleware, edge half (I/O thread; JWT verification is one HMAC): who is
 * calling, and may that role call this route at all? Fills caller and returns
 * NULL to go on, or the 401/403 reply. The other half runs in prepare() on the
 * worker, where the store is known: token store == resolved store, and the user
 * is not disabled. The platform token counts as a super admin without a user. */
static net_reply_t *
authenticate(app_t *app, net_request_t *req, const api_route_t *route, msg_caller_t *caller)
{
    const char *authz = net_req_header(req, "Authorization");
    const char *ptok = app->cfg->platform_token;
    bool have_ptok = ptok != NULL && ptok[0] != '\0';
    auth_jwt_rc_t jrc = AUTH_JWT_MALFORMED;
    bool sent = authz != NULL && strncasecmp(authz, "Bearer ", 7) == 0;

    if (route->access == API_PLATFORM && !have_ptok)
        return api_fail(SHOPD_FORBIDDEN, "forbidden",
                        "the platform API is disabled (no platform token configured)");
    if (have_ptok && bearer_matches(authz, ptok)) {
        caller->role = MSG_ROLE_PLATFORM;
    } else if (sent) {
        const char *t = authz + 7;
        while (*t == ' ')
            t++;
        msg_caller_t c = {0};
        jrc = auth_jwt_verify(t, strlen(t), &c);
        if (jrc == AUTH_JWT_OK)
            *caller = c;
    }
    int role = caller->role;
    switch (route->access) {
    case API_PUBLIC:
        return NULL; /* a bad token on a public route is ignored: the caller is anonymous */
    case API_PLATFORM:
        return role == MSG_ROLE_PLATFORM
                   ? NULL
                   : api_unauthenticated("a valid platform bearer token is required", sent);
    default:
        break;
    }
    if (role == MSG_ROLE_ANONYMOUS) {
        if (!sent)
            return api_unauthenticated("sign in: send Authorization: Bearer <access token>", false);
        return api_unauthenticated(jrc == AUTH_JWT_EXPIRED
                                       ? "the access token has expired; refresh it"
                                       : "the access token is invalid",
                                   true);
    }
    return api_role_allows(route->access, role)
               ? NULL
               : api_fail(SHOPD_FORBIDDEN, "forbidden", "your role may not call this endpoint");
}

bool
api_role_allows(int access, int role)
{
    switch (access) {
    case API_PUBLIC:
        return true;
    case API_PLATFORM:
        return role == MSG_ROLE_PLATFORM;
    case API_CUSTOMER:
        return role == MSG_ROLE_CUSTOMER || role == MSG_ROLE_STORE_ADMIN ||
               role == MSG_ROLE_SUPER_ADMIN || role == MSG_ROLE_PLATFORM;
    case API_STORE_ADMIN:
        return role == MSG_ROLE_STORE_ADMIN || role == MSG_ROLE_SUPER_ADMIN ||
               role == MSG_ROLE_PLATFORM;
    case API_SUPER_ADMIN:
        return role == MSG_ROLE_SUPER_ADMIN || role == MSG_ROLE_PLATFORM;
    default:
        return false;
    }
}

/* ------------------------------------------------------------ rate limits */

api_rate_t
api_rate_class(const api_route_t *r)
{
    if (r->rate != API_RATE_DEFAULT)
        return (api_rate_t)r->rate;
    if (r->access == API_STORE_ADMIN || r->access == API_SUPER_ADMIN || r->access == API_PLATFORM)
        return API_RATE_ADMIN;
    if (strcmp(r->method, "GET") == 0 || strcmp(r->method, "HEAD") == 0)
        return API_RATE_READS;
    return API_RATE_WRITES;
}

/* Budgets are kept in wall-clock microseconds: their TATs travel between
 * processes through Redis (rl_table_collect), so all must read one clock. */
static uint64_t
wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static const char *const rate_class_names[] = {"reads", "writes", "checkout", "auth", "admin"};
static const char *const rate_scope_names[] = {"client address", "user", "store"};

/* Appends v in decimal at p (no terminator) and returns the end; at most 20
 * bytes. The budget keys and the RateLimit lines are built with these rather
 * than snprintf, which was 85% of the budgets' cost per request (three calls,
 * ~1,500 instructions each; callgrind in bench/limits.sh). */
static char *
put_u64(char *p, uint64_t v)
{
    char tmp[20];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    while (n > 0)
        *p++ = tmp[--n];
    return p;
}

static char *
put_lit(char *p, const char *s, size_t n)
{
    memcpy(p, s, n);
    return p + n;
}
#define PUT_LIT(p, s) put_lit((p), (s), sizeof(s) - 1)

/* Spends one request of each budget route's class has for this caller, in the
 * order client address, user, store, and stops at the first one that is spent
 * (so a client refused on its own budget does not eat its store's). Adds the
 * RateLimit headers of the tightest budget to the request's answer, and
 * returns NULL to go on or the 429. I/O thread. */
static net_reply_t *
rate_check(app_t *app, net_request_t *req, const api_route_t *route, const msg_caller_t *caller,
           const store_snap_t *snap, const char *ip)
{
    const cfg_t *cfg = app->cfg;
    api_rate_t cls = api_rate_class(route);
    if (!cfg->rate_limit || cls == API_RATE_EXEMPT || app->limits == NULL)
        return NULL;
    int ci = (int)cls - 1;
    uint64_t now = wall_us(), period = (uint64_t)cfg->rate_window * 1000000u;
    rl_result_t best = {0}, res;
    int best_scope = -1;
    for (int scope = 0; scope < 3; scope++) {
        uint64_t limit = (uint64_t)cfg->rate[ci][scope];
        /* Keys: "i<class>:<address>", "u<class>:<store>:<user>" (or
         * "u<class>:platform"), "s<class>:<store>"; every process must spell them
         * alike, since their hashes name the budgets in Redis. */
        char key[96];
        char *k = key;
        *k++ = "ius"[scope];
        *k++ = (char)('0' + ci);
        *k++ = ':';
        if (scope == 0) {
            size_t il = strlen(ip);
            if (il > sizeof(key) - 4)
                continue;
            k = put_lit(k, ip, il);
        } else if (scope == 1) {
            if (caller->role == MSG_ROLE_ANONYMOUS)
                continue;
            /* The platform token has no user: it is one caller of its own. */
            if (caller->role == MSG_ROLE_PLATFORM) {
                k = PUT_LIT(k, "platform");
            } else {
                k = put_u64(k, caller->store_id);
                *k++ = ':';
                k = put_u64(k, caller->user_id);
            }
        } else {
            /* A store the edge has not cached yet (its first request in a TTL) is
             * not counted: the worker that looks it up fills the cache. */
            if (snap == NULL)
                continue;
            limit *= snap->rate_quota ? snap->rate_quota : 1;
            k = put_u64(k, snap->id);
        }
        if (limit == 0)
            continue;
        rl_table_take(app->limits, key, (size_t)(k - key), now, period,
                      (uint32_t)(limit > UINT32_MAX ? UINT32_MAX : limit), &res);
        if (best_scope < 0 || !res.allowed ||
            (uint64_t)res.remaining * best.limit < (uint64_t)best.remaining * res.limit) {
            best = res;
            best_scope = scope;
        }
        if (!res.allowed)
            break;
    }
    if (best_scope < 0)
        return NULL;
    /* 84 bytes of names and at most 5 x 20 digits. */
    char lines[200];
    char *l = lines;
    l = PUT_LIT(l, "RateLimit-Limit: ");
    l = put_u64(l, best.limit);
    l = PUT_LIT(l, "\r\nRateLimit-Remaining: ");
    l = put_u64(l, best.remaining);
    l = PUT_LIT(l, "\r\nRateLimit-Reset: ");
    l = put_u64(l, best.reset_s);
    l = PUT_LIT(l, "\r\nRateLimit-Policy: ");
    l = put_u64(l, best.limit);
    l = PUT_LIT(l, ";w=");
    l = put_u64(l, (uint64_t)cfg->rate_window);
    l = PUT_LIT(l, "\r\n");
    net_req_add_header_lines(req, lines, (size_t)(l - lines));
    if (best.allowed)
        return NULL;
    char v[16];
    char msg[160];
    snprintf(msg, sizeof(msg), "too many %s requests for this %s; retry in %u s",
             rate_class_names[ci], rate_scope_names[best_scope], best.retry_s);
    net_reply_t *r = api_fail(SHOPD_RATE_LIMITED, "rate_limited", msg);
    snprintf(v, sizeof(v), "%u", best.retry_s);
    net_reply_add_header(r, "Retry-After", v);
    return r;
}

/* ------------------------------------------------------------ CORS */

enum {
    EDGE_TAG_CORS = 1,      /* the request sent Origin: its answer gets CORS headers if allowed */
    EDGE_TAG_PREFLIGHT = 2, /* a preflight sent on as store.current to look its store up */
    EDGE_TAG_PREFLIGHT_DONE = 4, /* a preflight answered whole by preflight() */
};

static int store_current_route = -1; /* route index of GET /api/v1/store (api_edge_init) */

static const char cors_allow_headers[] =
    "Authorization, Content-Type, X-Tenant-Id, X-Cart-Id, Idempotency-Key, If-None-Match, "
    "X-Request-Id";
static const char cors_expose_headers[] =
    "ETag, RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset, RateLimit-Policy, Retry-After, "
    "Idempotent-Replayed, X-Request-Id, X-Cart-Id";

/* ------------------------------------------------------------ shared budgets */

/* One GCRA step of n requests on a budget's TAT in Redis (wall-clock us; Lua
 * numbers are doubles, exact to 2^53, about 285 years of microseconds). The key
 * lives as long as its debt plus a second. */
static const char sync_lua[] =
    "local now = tonumber(ARGV[1]) local n = tonumber(ARGV[2]) local iv = tonumber(ARGV[3]) "
    "local tat = tonumber(redis.call('GET', KEYS[1]) or '0') "
    "if tat < now then tat = now end "
    "tat = tat + n * iv "
    "redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', "
    "math.floor((tat - now) / 1000) + 1000) "
    "return tat";

static struct {
    app_t *app;
    pthread_t tid;
    bool running;
    bool stop; /* under lock */
    pthread_mutex_t lock;
    pthread_cond_t wake;
    _Atomic uint64_t synced;   /* budgets pushed to Redis and merged back */
    _Atomic uint64_t failures; /* syncs that found Redis unreachable or refusing */
} rl_sync = {.lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER};

/* One sync: every budget's requests since the last one go to Redis in one
 * pipeline, and the TATs it answers come back into the table. Redis down:
 * the budgets stay per process (fail open), with a log line per outage and a
 * metric. */
static void
sync_once(kv_conn_t *kv, rl_pending_t **buf, size_t *cap, bool *down)
{
    rl_table_t *t = rl_sync.app->limits;
    uint64_t at = wall_us();
    size_t n = rl_table_collect(t, at, buf, cap);
    if (n == 0)
        return;
    char now[24];
    snprintf(now, sizeof(now), "%llu", (unsigned long long)at);
    for (size_t i = 0; i < n; i++) {
        rl_pending_t *p = &(*buf)[i];
        char key[32], cnt[16], iv[24];
        uint64_t step = p->limit ? p->period_us / p->limit : p->period_us;
        snprintf(key, sizeof(key), "rl:edge:%016llx", (unsigned long long)p->shared);
        snprintf(cnt, sizeof(cnt), "%u", p->n);
        snprintf(iv, sizeof(iv), "%llu", (unsigned long long)(step ? step : 1));
        const char *argv[] = {"EVAL", sync_lua, "1", key, now, cnt, iv};
        size_t lens[7];
        for (int a = 0; a < 7; a++)
            lens[a] = strlen(argv[a]);
        kv_appendv(kv, 7, argv, lens);
    }
    bool failed = false;
    for (size_t i = 0; i < n; i++) {
        redisReply *r = kv_get_reply(kv);
        if (r && r->type == REDIS_REPLY_INTEGER && r->integer > 0) {
            rl_table_merge(t, (*buf)[i].key, (uint64_t)r->integer);
            atomic_fetch_add_explicit(&rl_sync.synced, 1, memory_order_relaxed);
        } else {
            if (!failed && !*down)
                log_warn("rate budgets not shared (counting in this process only): %s",
                         r && r->str ? r->str : "redis unavailable");
            failed = true;
        }
        if (r)
            freeReplyObject(r);
    }
    if (failed)
        atomic_fetch_add_explicit(&rl_sync.failures, 1, memory_order_relaxed);
    else if (*down)
        log_info("rate budgets shared again through redis");
    *down = failed;
}

static void *
sync_main(void *arg)
{
    const cfg_t *cfg = rl_sync.app->cfg;
    kv_conn_t *kv = kv_conn_new(cfg->redis_url, 500);
    rl_pending_t *buf = NULL;
    size_t cap = 0;
    bool down = false;
    pthread_mutex_lock(&rl_sync.lock);
    while (!rl_sync.stop) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        uint64_t ns = (uint64_t)until.tv_nsec + (uint64_t)cfg->rate_sync_ms * 1000000u;
        until.tv_sec += (time_t)(ns / 1000000000u);
        until.tv_nsec = (long)(ns % 1000000000u);
        pthread_cond_timedwait(&rl_sync.wake, &rl_sync.lock, &until);
        if (rl_sync.stop)
            break;
        pthread_mutex_unlock(&rl_sync.lock);
        sync_once(kv, &buf, &cap, &down);
        pthread_mutex_lock(&rl_sync.lock);
    }
    pthread_mutex_unlock(&rl_sync.lock);
    shopd_free(buf);
    kv_conn_free(kv);
    return NULL;
}

size_t
api_edge_metrics(char *buf, size_t n)
{
    int k = snprintf(
        buf, n,
        "# HELP shopd_rate_synced_total Request budgets shared through Redis (pushed and merged "
        "back).\n# TYPE shopd_rate_synced_total counter\nshopd_rate_synced_total %llu\n"
        "# HELP shopd_rate_sync_failures_total Budget syncs that could not reach Redis (budgets "
        "then count in this process only).\n# TYPE shopd_rate_sync_failures_total "
        "counter\nshopd_rate_sync_failures_total %llu\n",
        (unsigned long long)atomic_load_explicit(&rl_sync.synced, memory_order_relaxed),
        (unsigned long long)atomic_load_explicit(&rl_sync.failures, memory_order_relaxed));
    return k > 0 && (size_t)k < n ? (size_t)k : 0;
}

int
api_edge_init(app_t *app, char *err, size_t errlen)
{
    for (size_t i = 0; i < api_nroutes; i++)
        if (strcmp(api_routes[i].name, "store.current") == 0)
            store_current_route = (int)i;
    const char *list = app->cfg->cors_origins;
    for (const char *p = list; p && *p;) {
        const char *e = strchr(p, ',');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (!store_origin_valid(p, l)) {
            snprintf(err, errlen,
                     "invalid configuration: SHOPD_CORS_ORIGINS entry '%.*s' is not an origin "
                     "like https://app.example.com or https://*.example.com",
                     (int)(l > 200 ? 200 : l), p);
            return -1;
        }
        p = e ? e + 1 : p + l;
    }
    app->limits = rl_table_new((size_t)1 << 17);
    rl_sync.app = app;
    rl_sync.stop = false;
    if (app->cfg->rate_limit && app->cfg->rate_sync_ms > 0) {
        if (pthread_create(&rl_sync.tid, NULL, sync_main, NULL) != 0) {
            snprintf(err, errlen, "cannot start the rate budget sync thread");
            return -1;
        }
        rl_sync.running = true;
    }
    return 0;
}

void
api_edge_fini(app_t *app)
{
    if (rl_sync.running) {
        pthread_mutex_lock(&rl_sync.lock);
        rl_sync.stop = true;
        pthread_cond_signal(&rl_sync.wake);
        pthread_mutex_unlock(&rl_sync.lock);
        pthread_join(rl_sync.tid, NULL);
        rl_sync.running = false;
    }
    rl_table_free(app->limits);
    app->limits = NULL;
}

/* The origins allowed for an answer of route about store_id (0: none known):
 * the store's own list, or the platform's for routes no store names. NULL
 * when the store is not in the cache (then nothing is allowed). */
static const char *
allowed_origins(app_t *app, const api_route_t *route, uint64_t store_id, store_snap_t *snap)
{
    if (route == NULL || !(route->flags & API_STORE))
        return app->cfg->cors_origins;
    char key[32];
    snprintf(key, sizeof(key), "id:%llu", (unsigned long long)store_id);
    if (store_id == 0 || !store_cache_get(app->stores, key, snap) || snap->id == 0)
        return NULL;
    return snap->cors;
}

/* Turns r into the preflight's answer: 204 with the CORS grant, or 403. */
static void
preflight_reply(app_t *app, net_request_t *req, net_reply_t *r, const char *list,
                const char *allow_methods)
{
    const char *origin = net_req_header(req, "Origin");
    shopd_free(r->headers);
    r->headers = NULL;
    shopd_free(r->body);
    r->body = NULL;
    r->len = 0;
    r->content_type = NULL;
    if (!store_origin_allowed(list, origin)) {
        r->status = net_status_for_rc(SHOPD_FORBIDDEN);
        r->body = net_error_body("cors_origin_denied", "this origin may not call this API", NULL,
                                 NULL, 0, &r->len);
        net_reply_add_header(r, "Vary", "Origin");
        return;
    }
    char age[16];
    snprintf(age, sizeof(age), "%d", app->cfg->cors_max_age);
    r->status = net_status_for_rc(SHOPD_NO_CONTENT);
    net_reply_add_header(r, "Access-Control-Allow-Origin", origin);
    net_reply_add_header(r, "Access-Control-Allow-Methods", allow_methods);
    net_reply_add_header(r, "Access-Control-Allow-Headers", cors_allow_headers);
    net_reply_add_header(r, "Access-Control-Max-Age", age);
    net_reply_add_header(r, "Vary",
                         "Origin, Access-Control-Request-Method, Access-Control-Request-Headers");
}

/* The methods a preflight may grant on a path: those of its routes, HEAD with GET. */
static void
path_methods(const char *path, size_t plen, char *out, size_t n)
{
    net_match_t m;
    out[0] = '\0';
    if (net_router_match(api_router, "OPTIONS", path, plen, &m) == NET_MATCH_BAD_METHOD)
        net_route_allow(&m, out, n);
}

/* A CORS preflight (OPTIONS with Origin and Access-Control-Request-Method): the
 * browser asks whether a call from its page's origin may be sent. Answered here
 * from the allowed origins of the store the request names (Host; a preflight
 * never carries X-Tenant-Id's value, only its name) or the platform's list; a
 * store not in the cache yet is looked up by sending the preflight on as
 * GET /api/v1/store (answered from the snapshot the lookup makes), whose answer
 * api_on_reply turns into the preflight's. Not rate-limited: a browser caches
 * the answer for Access-Control-Max-Age. */
static net_handled_t
preflight(app_t *app, net_request_t *req, const char *path, size_t plen, const char *want)
{
    net_match_t m;
    net_req_set_tag(req, EDGE_TAG_PREFLIGHT_DONE);
    if (net_router_match(api_router, want, path, plen, &m) != NET_MATCH_OK)
        return answer(req, api_fail(SHOPD_NOTFOUND, "not_found", "no such endpoint"));
    const api_route_t *route = &api_routes[m.route];
    net_req_set_label(req, m.route);
    char methods[160];
    path_methods(path, plen, methods, sizeof(methods));
    net_reply_t *r = api_empty(SHOPD_NO_CONTENT);
    char key[STORE_KEY_MAX];
    if (!(route->flags & API_STORE) ||
        store_tenant_key(net_req_header(req, "X-Tenant-Id"), net_req_header(req, "Host"),
                         app->cfg->base_domain, key, sizeof(key)) != 0) {
        /* No store named: the platform's list (a storefront that names its store
         * with X-Tenant-Id is served from an origin the operator allows). */
        preflight_reply(app, req, r, app->cfg->cors_origins, methods);
        return answer(req, r);
    }
    store_snap_t snap;
    if (store_cache_get(app->stores, key, &snap)) {
        preflight_reply(app, req, r, snap.id ? snap.cors : "", methods);
        return answer(req, r);
    }
    net_reply_free(r);
    if (store_current_route < 0)
        return answer(req, api_fail(SHOPD_FORBIDDEN, "cors_origin_denied",
                                    "this origin may not call this API"));
    msg_env_t env;
    memset(&env, 0, sizeof(env));
    env.tenant = msg_str(key);
    env.type = msg_str(api_routes[store_current_route].name);
    env.request_id = msg_str(net_req_id(req));
    size_t len;
    char *data = msg_encode(&env, &len);
    act_msg_t *msg = act_msg_new((uint32_t)store_current_route, ACT_PLATFORM_ID, data, len);
    net_req_defer(req, &msg->reply_to, &msg->reply_token);
    net_req_set_tag(req, EDGE_TAG_PREFLIGHT);
    if (act_send(app->actors, msg) != SHOPD_OK) {
        act_msg_free(msg);
        net_req_set_tag(req, EDGE_TAG_PREFLIGHT_DONE);
        net_reply_t *busy =
            api_fail(SHOPD_BUSY, "store_busy", "too many requests are queued for this store");
        net_reply_add_header(busy, "Retry-After", "1");
        return answer(req, busy);
    }
    return NET_DEFERRED;
}

void
api_on_reply(net_request_t *req, net_reply_t *r, void *ud)
{
    app_t *app = ud;
    unsigned tag = net_req_tag(req);
    if (tag & EDGE_TAG_PREFLIGHT_DONE)
        return;
    /* Every answer varies by Origin, whether or not this request sent one: a
     * shared cache must not hand an answer made for no origin (no CORS
     * headers) to the page of an allowed one, nor the reverse. */
    if (!(tag & EDGE_TAG_PREFLIGHT))
        net_req_add_header_lines(req, "Vary: Origin\r\n", 14);
    if (tag == 0)
        return;
    int label = net_req_label(req);
    const api_route_t *route =
        label >= 0 && (size_t)label < api_nroutes ? &api_routes[label] : NULL;
    uint64_t sid = r->store_id ? r->store_id : net_req_store(req);
    store_snap_t snap;
    if (tag & EDGE_TAG_PREFLIGHT) {
        /* The store lookup answered (store.current): an error (no such store,
         * database down) stays the answer; a store makes the preflight's. */
        if (!net_reply_ok(r))
            return;
        size_t plen;
        const char *path = net_req_path(req, &plen);
        char methods[160];
        path_methods(path, plen, methods, sizeof(methods));
        const char *list = allowed_origins(app, route, sid, &snap);
        preflight_reply(app, req, r, list ? list : "", methods);
        return;
    }
    const char *origin = net_req_header(req, "Origin");
    const char *list = allowed_origins(app, route, sid, &snap);
    if (list == NULL || !store_origin_allowed(list, origin))
        return;
    net_reply_add_header(r, "Access-Control-Allow-Origin", origin);
    net_reply_add_header(r, "Access-Control-Expose-Headers", cors_expose_headers);
}

/* ------------------------------------------------------------ the request path */

size_t
api_upload_cap(const cfg_t *cfg)
{
    return 2 * (size_t)cfg->media_max_bytes + 65536;
}

size_t
api_body_cap(const net_request_t *req, void *ud)
{
    app_t *app = ud;
    size_t plen;
    const char *path = net_req_path(req, &plen);
    net_match_t m;
    if (net_route_match(api_net_routes, api_nroutes, net_req_method(req), path, plen, &m) !=
        NET_MATCH_OK)
        return 0;
    return (api_routes[m.route].flags & API_UPLOAD) ? api_upload_cap(app->cfg) : 0;
}

net_handled_t
api_on_request(net_request_t *req, void *ud)
{
    app_t *app = ud;
    size_t plen;
    const char *path = net_req_path(req, &plen);
    const char *origin = net_req_header(req, "Origin");
    if (origin != NULL) {
        const char *want = net_req_header(req, "Access-Control-Request-Method");
        if (want != NULL && strcmp(net_req_method(req), "OPTIONS") == 0)
            return preflight(app, req, path, plen, want);
        net_req_set_tag(req, EDGE_TAG_CORS);
    }
    /* Static mounts (the pages, later media) before the route table: a prefix
     * owns every path below it. They spend the client address's reads budget. */
    const net_static_mount_t *mount = net_static_find(app->statics, path, plen);
    if (mount != NULL) {
        static const api_route_t static_route = {
            .method = "GET", .name = "static", .rate = API_RATE_READS};
        msg_caller_t anon = {0};
        char ipb[64];
        net_reply_t *limited =
            rate_check(app, req, &static_route, &anon, NULL, client_ip(app, req, ipb, sizeof(ipb)));
        if (limited)
            return answer(req, limited);
        return net_static_serve(app->statics, mount, req);
    }
    net_match_t m;
    net_match_rc_t mrc = net_router_match(api_router, net_req_method(req), path, plen, &m);
    if (mrc == NET_MATCH_NOT_FOUND)
        return answer(req, api_fail(SHOPD_NOTFOUND, "not_found", "no such endpoint"));
    if (mrc == NET_MATCH_BAD_METHOD) {
        net_reply_t *r = api_fail(SHOPD_NOT_ALLOWED, "method_not_allowed",
                                  "method not allowed on this endpoint");
        char allow[sizeof(m.allow) + 8];
        net_route_allow(&m, allow, sizeof(allow));
        net_reply_add_header(r, "Allow", allow);
        return answer(req, r);
    }
    const api_route_t *route = &api_routes[m.route];
    net_req_set_label(req, m.route);

    msg_env_t env;
    memset(&env, 0, sizeof(env));
    char ipbuf[64];
    const char *ip = client_ip(app, req, ipbuf, sizeof(ipbuf));
    net_reply_t *denied = authenticate(app, req, route, &env.caller);
    if (denied) {
        /* Refused callers spend budgets too (a flood of bad tokens is a flood),
         * before the store is looked at, so 401 and 403 keep their precedence
         * over store_not_found. */
        net_reply_t *limited = rate_check(app, req, route, &env.caller, NULL, ip);
        if (limited) {
            net_reply_free(denied);
            return answer(req, limited);
        }
        return answer(req, denied);
    }

    /* The budgets before anything else is read (a malformed body spends them too).
     * The store's budget needs its snapshot: a store not cached here yet (its first
     * request in a TTL) is not counted; the worker that looks it up fills the cache. */
    char key[STORE_KEY_MAX] = "";
    if (route->flags & API_SIGNED) {
        /* The store is named by the path (a webhook's sender knows no tenant header). */
        char name[STORE_KEY_MAX] = "";
        for (size_t i = 0; i < m.nparams; i++)
            if (m.param_name_lens[i] == 5 && memcmp(m.param_names[i], "store", 5) == 0 &&
                m.param_value_lens[i] < sizeof(name))
                snprintf(name, sizeof(name), "%.*s", (int)m.param_value_lens[i], m.param_values[i]);
        if (name[0] == '\0' || store_tenant_key(name, NULL, NULL, key, sizeof(key)) != 0)
            return answer(req, api_fail(SHOPD_NOTFOUND, "store_not_found", "no such store"));
    } else if ((route->flags & API_STORE) &&
               store_tenant_key(net_req_header(req, "X-Tenant-Id"), net_req_header(req, "Host"),
                                app->cfg->base_domain, key, sizeof(key)) != 0)
        return answer(req, api_fail(SHOPD_NOTFOUND, "store_not_found",
                                    "no store is named by X-Tenant-Id or Host"));
    store_snap_t snap;
    bool have_snap = key[0] && store_cache_get(app->stores, key, &snap) && snap.id != 0;
    net_reply_t *limited = rate_check(app, req, route, &env.caller, have_snap ? &snap : NULL, ip);
    if (limited)
        return answer(req, limited);

    if (route->flags & API_INLINE)
        return answer(req, route->inline_fn(app, req));

    /* Idempotency-Key: checked on the methods it applies to, and not even
     * forwarded on a GET or HEAD (a read is idempotent by itself). */
    const char *idem = net_req_header(req, "Idempotency-Key");
    if (idem && idem_method_mutates(route->method)) {
        if (!idem_key_valid(idem, strlen(idem)))
            return answer(req, api_fail(SHOPD_BAD_REQUEST, "invalid_idempotency_key",
                                        "Idempotency-Key must be 1 to 255 printable ASCII "
                                        "characters"));
        env.idem = msg_str(idem);
    }

    size_t blen;
    const char *body = net_req_body(req, &blen);
    if (route->flags & (API_SIGNED | API_UPLOAD)) {
        env.body.p = body;
        env.body.n = blen;
    } else if (route->flags & API_BODY) {
        if (!is_json_type(net_req_header(req, "Content-Type")))
            return answer(req, api_fail(SHOPD_UNSUPPORTED, "unsupported_media_type",
                                        "send the body as Content-Type: application/json"));
        json_error_t jerr;
        json_t *doc = blen ? json_loadb(body, blen, JSON_REJECT_DUPLICATES, &jerr) : NULL;
        if (doc == NULL) {
            char msg[256];
            if (blen == 0)
                snprintf(msg, sizeof(msg), "the request body is empty; send a JSON object");
            else
                snprintf(msg, sizeof(msg), "malformed JSON at line %d column %d: %s", jerr.line,
                         jerr.column, jerr.text);
            return answer(req, api_fail(SHOPD_BAD_REQUEST, "malformed_json", msg));
        }
        bool obj = json_is_object(doc);
        json_decref(doc);
        if (!obj)
            return answer(req, api_fail_field(SHOPD_INVALID, "validation_failed",
                                              "the request has invalid fields", "body",
                                              "must be a JSON object"));
        env.body.p = body;
        env.body.n = blen;
    }

    api_call_t call;
    memset(&call, 0, sizeof(call));
    call.route = (size_t)m.route;
    call.caller = env.caller;
    call.tenant_key = key;
    for (size_t i = 0; i < m.nparams && call.nparams < MSG_MAX_PARAMS; i++, call.nparams++) {
        call.param_names[call.nparams].p = m.param_names[i];
        call.param_names[call.nparams].n = m.param_name_lens[i];
        call.param_values[call.nparams].p = m.param_values[i];
        call.param_values[call.nparams].n = m.param_value_lens[i];
    }
    call.query = net_req_query(req, &call.query_len);
    call.body = env.body;
    /* Conditional GETs: the catalog cache answers 304 on a matching ETag. */
    call.inm = msg_str(net_req_header(req, "If-None-Match"));
    call.cart = msg_str(net_req_header(req, "X-Cart-Id"));
    /* Only pages have a compressed copy; nothing else looks at it. */
    if ((route->flags & API_PAGE) && net_accepts_gzip(net_req_header(req, "Accept-Encoding")))
        call.ae = msg_str("gzip");
    call.idem = env.idem; /* checked above; never forwarded on a GET */
    call.request_id = msg_str(net_req_id(req));
    call.ip = msg_str(ip);
    if (route->flags & API_SIGNED)
        call.sig = msg_str(net_req_header(req, "Stripe-Signature"));
    if (route->flags & API_UPLOAD)
        call.ct = msg_str(net_req_header(req, "Content-Type"));
    net_req_defer(req, &call.reply_to, &call.token);
    uint64_t sid = 0;
    net_reply_t *now = api_submit(app, &call, &sid);
    if (sid)
        net_req_set_store(req, sid);
    if (now == NULL)
        return NET_DEFERRED;
    net_respond(req, now);
    return NET_DONE;
}

net_reply_t *
api_submit(app_t *app, const api_call_t *c, uint64_t *store_id)
{
    const api_route_t *route = &api_routes[c->route];
    msg_env_t env;
    memset(&env, 0, sizeof(env));
    env.caller = c->caller;
    if (store_id)
        *store_id = 0;
    uint64_t target = ACT_PLATFORM_ID;
    if (route->flags & API_STORE) {
        const char *key = c->tenant_key ? c->tenant_key : "";
        if (key[0] == '\0')
            return api_fail(SHOPD_NOTFOUND, "store_not_found", "no store is named");
        store_snap_t snap;
        if (store_cache_get(app->stores, key, &snap)) {
            if (snap.id == 0)
                return api_fail(SHOPD_NOTFOUND, "store_not_found", "no such store");
            if (store_id)
                *store_id = snap.id;
            if (snap.status == STORE_SUSPENDED)
                return api_fail(SHOPD_FORBIDDEN, "store_suspended", "this store is suspended");
            target = snap.id;
            env.store_id = snap.id;
        } else {
            /* Unknown here: the platform actor looks it up and forwards the message. */
            env.tenant = msg_str(key);
        }
    }
    for (size_t i = 0; i < c->nparams && env.nparams < MSG_MAX_PARAMS; i++, env.nparams++) {
        env.param_names[env.nparams] = c->param_names[i];
        env.param_values[env.nparams] = c->param_values[i];
    }
    env.body = c->body;
    env.inm = c->inm;
    env.cart = c->cart;
    env.idem = c->idem;
    env.sig = c->sig;
    env.ct = c->ct;
    env.type = msg_str(route->name);
    env.request_id = c->request_id;
    env.ip = c->ip;
    size_t clen;
    char *canon;
    net_reply_t *bad = api_query_canon(route->query, c->query, c->query_len, &canon, &clen);
    if (bad)
        return bad;
    env.query.p = canon;
    env.query.n = clen;
    env.ae = c->ae;
    /* A public page the in-process cache holds, current: answered here, on the I/O
     * thread, to anonymous callers and to customers. A customer's token was
     * verified at the edge (signature, expiry); on a public route the worker
     * treats a token of another store, or of a user since disabled, as no token
     * at all (dispatch.c), so a public page answers a customer exactly as it
     * answers anyone, and the worker's look-up of the user is skipped for it. A
     * revoked token still fails on every route that is not public. Admins never
     * read cached pages (they see drafts). */
    bool page_caller = c->caller.role == MSG_ROLE_ANONYMOUS || c->caller.role == MSG_ROLE_CUSTOMER;
    if ((route->flags & API_PAGE) && env.store_id != 0 && page_caller) {
        net_reply_t *hit = catalog_page_answer(&env);
        if (hit) {
            shopd_free(canon);
            return hit;
        }
    }

    size_t len;
    char *data = msg_encode(&env, &len);
    shopd_free(canon);
    act_msg_t *msg = act_msg_new((uint32_t)c->route, target, data, len);
    msg->reply_to = c->reply_to;
    msg->reply_token = c->token;
    /* A store not yet known here goes to the platform actor, which looks it up
     * and forwards the message to the actor its run class names. */
    shopd_rc_t rc = target == ACT_PLATFORM_ID && (route->flags & API_STORE)
                        ? act_send(app->actors, msg)
                        : api_dispatch(app, msg, route, target);
    if (rc != SHOPD_OK) {
        act_msg_free(msg);
        net_reply_t *r =
            rc == SHOPD_BUSY
                ? api_fail(SHOPD_BUSY, "store_busy", "too many requests are queued for this store")
                : api_fail(SHOPD_UNAVAILABLE, "shutting_down", "the server is shutting down");
        net_reply_add_header(r, "Retry-After", "1");
        return r;
    }
    return NULL;
}
