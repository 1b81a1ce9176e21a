/*
 * api.c: the edge and the dispatcher. On the I/O thread, api_on_request routes
 * a request, checks who is calling, checks the body, names the store, packs
 * the envelope and sends it to the store's actor. On a worker, api_actor_turn
 * unpacks each message of a turn, resolves unknown tenants (platform actor),
 * runs the route's handler and posts the reply back to the I/O thread.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "shopd/api.h"
#include "shopd/auth.h"
#include "shopd/catalog.h"
#include "shopd/log.h"


static net_route_t *net_routes; /* method + pattern of api_routes, for the router */

/* ---- run classes: which actor a message goes to ----
 * ordered: the store's actor (lane 0) on the workers; any: one of the store's
 * read lanes (1..workers) on the workers; blocking: one of the store's lanes
 * (1..half the pool) on the blocking pool. Lanes are picked round-robin, so a
 * store uses at most that many threads of each pool at once, and the run
 * queues, which take actors in turn, share the threads across stores. */
static _Atomic uint64_t lane_rr; /* relaxed: only spreads load, orders nothing */

static unsigned
read_lanes(const app_t *app)
{
    unsigned n = (unsigned)app->cfg->workers;
    return n < 1 ? 1 : n > ACT_MAX_LANES - 1 ? ACT_MAX_LANES - 1 : n;
}

static unsigned
blocking_lanes(const app_t *app)
{
    unsigned n = (unsigned)(app->cfg->blocking_threads + 1) / 2;
    return n < 1 ? 1 : n > ACT_MAX_LANES - 1 ? ACT_MAX_LANES - 1 : n;
}

/* Addresses m to store_id's actor for the route's run class and sends it there.
 * Same contract as act_send: on SHOPD_OK the runtime owns m. */
static shopd_rc_t
dispatch(app_t *app, act_msg_t *m, const api_route_t *route, uint64_t store_id)
{
    uint64_t rr = atomic_fetch_add_explicit(&lane_rr, 1, memory_order_relaxed);
    switch (route->run) {
    case API_ANY:
        m->store_id = ACT_ID(store_id, 1 + rr % read_lanes(app));
        return act_send(app->actors, m);
    case API_BLOCKING:
        m->store_id = ACT_ID(store_id, 1 + rr % blocking_lanes(app));
        return act_send(app->blocking, m);
    default:
        m->store_id = ACT_ID(store_id, 0);
        return act_send(app->actors, m);
    }
}

size_t
api_batch_for(uint64_t actor_id, void *ud)
{
    const app_t *app = ud;
    /* Lane 0 batches (the inventory batch handler commits a turn together); read
     * lanes take short turns so other stores' lanes get the worker back soon. */
    return ACT_LANE_OF(actor_id) == 0 ? (size_t)app->cfg->actor_batch : (size_t)app->cfg->read_batch;
}

size_t
api_blocking_batch_for(uint64_t actor_id, void *ud)
{
    return 1; /* each task is long: never hold a thread for two */
}
static const char **route_names;

/* Builds the router's view of the route table. Call once before the server starts. */
void
api_init(void)
{
    if (net_routes) return;
    net_routes = shopd_calloc(api_nroutes, sizeof(net_route_t));
    route_names = shopd_calloc(api_nroutes, sizeof(char *));
    for (size_t i = 0; i < api_nroutes; i++) {
        net_routes[i].method = api_routes[i].method;
        net_routes[i].pattern = api_routes[i].pattern;
        route_names[i] = api_routes[i].name;
    }
}

const char *const *
api_route_names(void)
{
    return route_names;
}

/* ------------------------------------------------------------ replies */

net_reply_t *
api_json(shopd_rc_t rc, json_t *v)
{
    net_reply_t *r = net_reply_new(net_status_for_rc(rc));
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(v);
    if (s) {
        net_reply_set_body(r, s, strlen(s));
        free(s);
    }
    return r;
}

net_reply_t *
api_raw_json(shopd_rc_t rc, const char *text, size_t len)
{
    net_reply_t *r = net_reply_new(net_status_for_rc(rc));
    net_reply_set_body(r, text, len);
    return r;
}

net_reply_t *
api_empty(shopd_rc_t rc)
{
    return net_reply_new(net_status_for_rc(rc));
}

net_reply_t *
api_fail(shopd_rc_t rc, const char *code, const char *message)
{
    return net_reply_error(net_status_for_rc(rc), code, message);
}

net_reply_t *
api_fail_field(shopd_rc_t rc, const char *code, const char *message, const char *field, const char *issue)
{
    return net_reply_error_field(net_status_for_rc(rc), code, message, field, issue);
}

bool
api_reply_ok(const net_reply_t *r)
{
    return net_reply_ok(r);
}

net_reply_t *
api_unavailable(const char *what)
{
    char msg[128];
    snprintf(msg, sizeof(msg), "%s is unavailable; retry shortly", what);
    net_reply_t *r = api_fail(SHOPD_UNAVAILABLE, "service_unavailable", msg);
    net_reply_add_header(r, "Retry-After", "1");
    return r;
}

net_reply_t *
api_internal(api_ctx_t *ctx, const char *what)
{
    log_error("internal error rid=%.*s store=%llu what=\"%s\"", (int)ctx->env->request_id.n,
              ctx->env->request_id.p, (unsigned long long)ctx->store_id, what);
    return api_fail(SHOPD_ERR, "internal_error", "internal error; the request id is in the logs");
}

/* ------------------------------------------------------------ validation */

void
api_val_add(api_val_t *v, const char *field, const char *issue)
{
    if (v->n >= API_MAX_ISSUES) return;
    snprintf(v->fields[v->n], sizeof(v->fields[0]), "%s", field);
    snprintf(v->issues[v->n], sizeof(v->issues[0]), "%s", issue);
    v->n++;
}

static size_t
utf8_len(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        if (((unsigned char)*s & 0xC0) != 0x80) n++;
    return n;
}

const char *
api_val_string(api_val_t *v, json_t *obj, const char *field, bool required, size_t minlen,
               size_t maxlen)
{
    json_t *x = json_object_get(obj, field);
    if (x == NULL || json_is_null(x)) {
        if (required) api_val_add(v, field, "is required");
        return NULL;
    }
    if (!json_is_string(x)) {
        api_val_add(v, field, "must be a string");
        return NULL;
    }
    const char *s = json_string_value(x);
    if (strlen(s) != json_string_length(x)) {
        api_val_add(v, field, "must not contain NUL characters");
        return NULL;
    }
    size_t n = utf8_len(s);
    if (n < minlen || n > maxlen) {
        char msg[96];
        snprintf(msg, sizeof(msg), "must be %zu to %zu characters long", minlen, maxlen);
        api_val_add(v, field, msg);
        return NULL;
    }
    return s;
}

void
api_val_only(api_val_t *v, json_t *obj, const char *const *allowed)
{
    const char *key;
    json_t *val;
    json_object_foreach(obj, key, val) {
        bool ok = false;
        for (const char *const *a = allowed; *a && !ok; a++) ok = strcmp(*a, key) == 0;
        if (!ok) api_val_add(v, key, "unknown field");
    }
}

net_reply_t *
api_val_reply(const api_val_t *v)
{
    const char *f[API_MAX_ISSUES], *i[API_MAX_ISSUES];
    for (size_t k = 0; k < v->n; k++) {
        f[k] = v->fields[k];
        i[k] = v->issues[k];
    }
    net_reply_t *r = api_empty(SHOPD_INVALID);
    r->body = net_error_body("validation_failed", "the request has invalid fields", f, i, v->n,
                             &r->len);
    return r;
}

/* ------------------------------------------------------------ edge (I/O thread) */

static bool
bearer_matches(const char *auth, const char *token)
{
    if (auth == NULL || strncasecmp(auth, "Bearer ", 7) != 0) return false;
    const char *given = auth + 7;
    while (*given == ' ') given++;
    return shopd_ct_equal(given, strlen(given), token, strlen(token));
}

static bool
is_json_type(const char *ct)
{
    if (ct == NULL) return false;
    while (*ct == ' ') ct++;
    if (strncasecmp(ct, "application/json", 16) != 0) return false;
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
    if (xff == NULL) return peer;
    const char *last = strrchr(xff, ',');
    last = last ? last + 1 : xff;
    while (*last == ' ') last++;
    size_t l = strcspn(last, " \t");
    if (l == 0 || l >= n) return peer;
    memcpy(buf, last, l);
    buf[l] = '\0';
    return buf;
}

static net_reply_t *
unauthenticated(const char *msg, bool invalid)
{
    net_reply_t *r = api_fail(SHOPD_UNAUTHENTICATED, "unauthenticated", msg);
    net_reply_add_header(r, "WWW-Authenticate",
                         invalid ? "Bearer realm=\"shopd\", error=\"invalid_token\"" : "Bearer realm=\"shopd\"");
    return r;
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
        return api_fail(SHOPD_FORBIDDEN, "forbidden", "the platform API is disabled (no platform token configured)");
    if (have_ptok && bearer_matches(authz, ptok)) {
        caller->role = MSG_ROLE_PLATFORM;
    } else if (sent) {
        const char *t = authz + 7;
        while (*t == ' ') t++;
        msg_caller_t c = {0};
        jrc = auth_jwt_verify(t, strlen(t), &c);
        if (jrc == AUTH_JWT_OK) *caller = c;
    }
    int role = caller->role;
    switch (route->access) {
    case API_PUBLIC:
        return NULL; /* a bad token on a public route is ignored: the caller is anonymous */
    case API_PLATFORM:
        return role == MSG_ROLE_PLATFORM ? NULL : unauthenticated("a valid platform bearer token is required", sent);
    default:
        break;
    }
    if (role == MSG_ROLE_ANONYMOUS) {
        if (!sent) return unauthenticated("sign in: send Authorization: Bearer <access token>", false);
        return unauthenticated(jrc == AUTH_JWT_EXPIRED ? "the access token has expired; refresh it"
                                                       : "the access token is invalid",
                               true);
    }
    bool ok;
    switch (route->access) {
    case API_CUSTOMER:
        ok = role == MSG_ROLE_CUSTOMER || role == MSG_ROLE_STORE_ADMIN || role == MSG_ROLE_SUPER_ADMIN ||
             role == MSG_ROLE_PLATFORM;
        break;
    case API_STORE_ADMIN:
        ok = role == MSG_ROLE_STORE_ADMIN || role == MSG_ROLE_SUPER_ADMIN || role == MSG_ROLE_PLATFORM;
        break;
    case API_SUPER_ADMIN:
        ok = role == MSG_ROLE_SUPER_ADMIN || role == MSG_ROLE_PLATFORM;
        break;
    default:
        ok = false;
    }
    return ok ? NULL : api_fail(SHOPD_FORBIDDEN, "forbidden", "your role may not call this endpoint");
}

net_handled_t
api_on_request(net_request_t *req, void *ud)
{
    app_t *app = ud;
    size_t plen;
    const char *path = net_req_path(req, &plen);
    net_match_t m;
    net_match_rc_t mrc = net_route_match(net_routes, api_nroutes, net_req_method(req), path, plen, &m);
    if (mrc == NET_MATCH_NOT_FOUND)
        return answer(req, api_fail(SHOPD_NOTFOUND, "not_found", "no such endpoint"));
    if (mrc == NET_MATCH_BAD_METHOD) {
        net_reply_t *r = api_fail(SHOPD_NOT_ALLOWED, "method_not_allowed", "method not allowed on this endpoint");
        char allow[sizeof(m.allow) + 8];
        net_route_allow(&m, allow, sizeof(allow));
        net_reply_add_header(r, "Allow", allow);
        return answer(req, r);
    }
    const api_route_t *route = &api_routes[m.route];
    net_req_set_label(req, m.route);

    msg_env_t env;
    memset(&env, 0, sizeof(env));
    net_reply_t *denied = authenticate(app, req, route, &env.caller);
    if (denied) return answer(req, denied);

    if (route->flags & API_INLINE) return answer(req, route->inline_fn(app, req));

    size_t blen;
    const char *body = net_req_body(req, &blen);
    if (route->flags & API_BODY) {
        if (!is_json_type(net_req_header(req, "Content-Type")))
            return answer(req, api_fail(SHOPD_UNSUPPORTED, "unsupported_media_type", "send the body as Content-Type: application/json"));
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
            return answer(req, api_fail_field(SHOPD_INVALID, "validation_failed", "the request has invalid fields", "body", "must be a JSON object"));
        env.body.p = body;
        env.body.n = blen;
    }

    uint64_t target = ACT_PLATFORM_ID;
    char key[STORE_KEY_MAX];
    if (route->flags & API_STORE) {
        if (store_tenant_key(net_req_header(req, "X-Tenant-Id"), net_req_header(req, "Host"),
                             app->cfg->base_domain, key, sizeof(key)) != 0)
            return answer(req, api_fail(SHOPD_NOTFOUND, "store_not_found", "no store is named by X-Tenant-Id or Host"));
        store_snap_t snap;
        if (store_cache_get(app->stores, key, &snap)) {
            if (snap.id == 0) return answer(req, api_fail(SHOPD_NOTFOUND, "store_not_found", "no such store"));
            net_req_set_store(req, snap.id);
            if (snap.status == STORE_SUSPENDED)
                return answer(req, api_fail(SHOPD_FORBIDDEN, "store_suspended", "this store is suspended"));
            target = snap.id;
            env.store_id = snap.id;
        } else {
            /* Unknown here: the platform actor looks it up and forwards the message. */
            env.tenant = msg_str(key);
        }
    }
    for (size_t i = 0; i < m.nparams && env.nparams < MSG_MAX_PARAMS; i++, env.nparams++) {
        env.param_names[env.nparams].p = m.param_names[i];
        env.param_names[env.nparams].n = m.param_name_lens[i];
        env.param_values[env.nparams].p = m.param_values[i];
        env.param_values[env.nparams].n = m.param_value_lens[i];
    }
    /* Conditional GETs: the catalog cache answers 304 on a matching ETag. */
    env.inm = msg_str(net_req_header(req, "If-None-Match"));
    env.type = msg_str(route->name);
    env.request_id = msg_str(net_req_id(req));
    size_t qlen, clen;
    char *canon;
    const char *rawq = net_req_query(req, &qlen);
    net_reply_t *bad = api_query_canon(route->query, rawq, qlen, &canon, &clen);
    if (bad) return answer(req, bad);
    env.query.p = canon;
    env.query.n = clen;
    char ipbuf[64];
    env.ip = msg_str(client_ip(app, req, ipbuf, sizeof(ipbuf)));

    size_t len;
    char *data = msg_encode(&env, &len);
    shopd_free(canon);
    act_msg_t *msg = act_msg_new((uint32_t)m.route, target, data, len);
    net_req_defer(req, &msg->reply_to, &msg->reply_token);
    /* A store not yet known here goes to the platform actor, which looks it up
     * and forwards the message to the actor its run class names. */
    shopd_rc_t rc = target == ACT_PLATFORM_ID && (route->flags & API_STORE) ? act_send(app->actors, msg)
                                                                           : dispatch(app, msg, route, target);
    if (rc != SHOPD_OK) {
        act_msg_free(msg);
        net_reply_t *r = rc == SHOPD_BUSY
                             ? api_fail(SHOPD_BUSY, "store_busy", "too many requests are queued for this store")
                             : api_fail(SHOPD_UNAVAILABLE, "shutting_down", "the server is shutting down");
        net_reply_add_header(r, "Retry-After", "1");
        net_respond(req, r);
        return NET_DONE;
    }
    return NET_DEFERRED;
}

/* ------------------------------------------------------------ worker side */

static void
post(act_msg_t *m, net_reply_t *r, uint64_t store_id)
{
    r->store_id = store_id;
    if (m->reply_to)
        net_reply_post(m->reply_to, m->reply_token, r);
    else
        net_reply_free(r);
}

/* Platform actor: finds the store a message names, caches the answer and forwards
 * the message to that store's actor. Returns true if m was forwarded (not ours now). */
static bool
resolve_and_forward(app_t *app, act_msg_t *m, msg_env_t *env)
{
    char key[STORE_KEY_MAX];
    snprintf(key, sizeof(key), "%.*s", (int)env->tenant.n, env->tenant.p ? env->tenant.p : "");
    store_snap_t snap;
    if (!store_cache_get(app->stores, key, &snap)) {
        shopd_rc_t rc = store_lookup(app, key, &snap);
        if (rc == SHOPD_UNAVAILABLE) {
            post(m, api_unavailable("the database"), 0);
            return false;
        }
        if (rc == SHOPD_NOTFOUND) memset(&snap, 0, sizeof(snap));
        store_cache_put(app->stores, key, &snap);
    }
    if (snap.id == 0) {
        post(m, api_fail(SHOPD_NOTFOUND, "store_not_found", "no such store"), 0);
        return false;
    }
    if (snap.status == STORE_SUSPENDED) {
        post(m, api_fail(SHOPD_FORBIDDEN, "store_suspended", "this store is suspended"), snap.id);
        return false;
    }
    /* Re-pack with the store id and without the tenant key, then forward. */
    msg_env_t fwd = *env;
    fwd.tenant = msg_str(NULL);
    fwd.store_id = snap.id;
    size_t len;
    char *data = msg_encode(&fwd, &len);
    shopd_free(m->data);
    m->data = data;
    m->len = len;
    shopd_rc_t rc = dispatch(app, m, &api_routes[m->type], snap.id);
    if (rc != SHOPD_OK) {
        net_reply_t *r = api_fail(SHOPD_BUSY, "store_busy", "too many requests are queued for this store");
        net_reply_add_header(r, "Retry-After", "1");
        post(m, r, snap.id);
        return false;
    }
    return true;
}

/* One message of a turn, decoded and ready for its handler. */
typedef struct prepared_s {
    act_msg_t *m;
    const api_route_t *route;
    msg_env_t env;
    store_snap_t snap;
    api_ctx_t ctx;
} prepared_t;

/* Decodes m and resolves its store. Returns false if m was answered or forwarded
 * here (nothing left to do), true if it waits for its handler in p. */
static bool
prepare(app_t *app, api_worker_t *ws, uint64_t store_id, act_msg_t *m, prepared_t *p)
{
    p->m = m;
    if (m->type >= api_nroutes || msg_decode(m->data, m->len, &p->env) != SHOPD_OK) {
        log_error("undecodable message type=%u store=%llu", m->type, (unsigned long long)store_id);
        post(m, api_fail(SHOPD_ERR, "internal_error", "undecodable message"), store_id);
        act_msg_free(m);
        return false;
    }
    msg_env_t *env = &p->env;
    p->route = &api_routes[m->type];
    bool have_store = false;
    if (p->route->flags & API_STORE) {
        if (env->store_id == 0) {
            if (!resolve_and_forward(app, m, env)) act_msg_free(m);
            return false;
        }
        char key[32];
        snprintf(key, sizeof(key), "id:%llu", (unsigned long long)env->store_id);
        if (!store_cache_get(app->stores, key, &p->snap)) {
            shopd_rc_t rc = store_lookup(app, key, &p->snap);
            if (rc != SHOPD_OK) {
                post(m, rc == SHOPD_UNAVAILABLE ? api_unavailable("the database")
                                                : api_fail(SHOPD_NOTFOUND, "store_not_found", "no such store"),
                     env->store_id);
                act_msg_free(m);
                return false;
            }
            store_cache_put(app->stores, key, &p->snap);
        }
        have_store = true;
    }
    /* The middleware, worker half: a store user's token is good for its own store
     * only, and it must still describe its user (active, same role, same store,
     * same token version: auth_user_current), so a demoted, disabled or re-keyed
     * user's old tokens, and tokens with claims the user never had, stop working. */
    msg_caller_t *cl = &env->caller;
    bool store_user = cl->role == MSG_ROLE_CUSTOMER || cl->role == MSG_ROLE_STORE_ADMIN;
    bool user = store_user || cl->role == MSG_ROLE_SUPER_ADMIN;
    if (have_store && store_user && cl->store_id != env->store_id) {
        if (p->route->access != API_PUBLIC) {
            post(m, api_fail(SHOPD_FORBIDDEN, "forbidden", "this token belongs to another store"), env->store_id);
            act_msg_free(m);
            return false;
        }
        memset(cl, 0, sizeof(*cl)); /* public route: act as an anonymous caller */
        user = false;
    }
    if (user && cl->user_id) {
        bool unavailable;
        if (!auth_user_current(app->db, cl, &unavailable)) {
            if (unavailable) {
                post(m, api_unavailable("the database"), env->store_id);
                act_msg_free(m);
                return false;
            }
            if (p->route->access != API_PUBLIC) {
                post(m, unauthenticated("this account is disabled or its role changed; sign in again", true),
                     env->store_id);
                act_msg_free(m);
                return false;
            }
            memset(cl, 0, sizeof(*cl));
        }
    }
    p->ctx = (api_ctx_t){.app = app,
                         .worker = ws,
                         .env = env,
                         .body = env->body.n ? json_loadb(env->body.p, env->body.n, 0, NULL) : NULL,
                         .store_id = env->store_id,
                         .store = have_store ? &p->snap : NULL,
                         .caller = &env->caller};
    return true;
}

static void
finish(prepared_t *p, net_reply_t *r)
{
    json_decref(p->ctx.body);
    post(p->m, r, p->env.store_id);
    act_msg_free(p->m);
}

void
api_actor_turn(act_worker_t *w, uint64_t store_id, act_msg_t **msgs, size_t n, void *ud)
{
    app_t *app = ud;
    api_worker_t *ws = act_worker_state(w);
    prepared_t *ps = shopd_calloc(n, sizeof(*ps));
    size_t np = 0;
    for (size_t i = 0; i < n; i++)
        if (prepare(app, ws, ACT_STORE_OF(store_id), msgs[i], &ps[np])) np++;
    /* ctx.env/store point into ps[]; fix them now that ps no longer moves. */
    for (size_t i = 0; i < np; i++) {
        ps[i].ctx.env = &ps[i].env;
        ps[i].ctx.caller = &ps[i].env.caller;
        if (ps[i].ctx.store) ps[i].ctx.store = &ps[i].snap;
    }
    for (size_t i = 0; i < np;) {
        const api_route_t *route = ps[i].route;
        if (route->batch == NULL) {
            finish(&ps[i], route->handler(&ps[i].ctx));
            i++;
            continue;
        }
        /* Consecutive messages for the same batch route go to the handler together. */
        size_t j = i + 1;
        while (j < np && ps[j].route == route) j++;
        size_t k = j - i;
        api_ctx_t *ctxs = shopd_malloc(k * sizeof(*ctxs));
        net_reply_t **replies = shopd_calloc(k, sizeof(*replies));
        for (size_t x = 0; x < k; x++) ctxs[x] = ps[i + x].ctx;
        route->batch(ctxs, k, replies);
        for (size_t x = 0; x < k; x++)
            finish(&ps[i + x], replies[x] ? replies[x] : api_fail(SHOPD_ERR, "internal_error", "no reply"));
        shopd_free(ctxs);
        shopd_free(replies);
        i = j;
    }
    shopd_free(ps);
}

void *
api_worker_init(int index, void *ud)
{
    app_t *app = ud;
    api_worker_t *ws = shopd_calloc(1, sizeof(*ws));
    ws->app = app;
    ws->index = index;
    ws->kv = kv_conn_new(app->cfg->redis_url, 1000);
    return ws;
}

void
api_worker_fini(void *wstate, void *ud)
{
    api_worker_t *ws = wstate;
    if (ws == NULL) return;
    kv_conn_free(ws->kv);
    shopd_free(ws);
}

/* ------------------------------------------------------------ system endpoints */

net_reply_t *
api_healthz(app_t *app, net_request_t *req)
{
    static const char ok[] = "{\"status\":\"ok\"}";
    return api_raw_json(SHOPD_OK, ok, sizeof(ok) - 1);
}

net_reply_t *
api_readyz(api_ctx_t *ctx)
{
    shopd_rc_t pg = SHOPD_UNAVAILABLE, rd;
    db_conn_t *c = db_acquire(ctx->app->db, 1000);
    if (c) {
        pg = db_ping(c);
        db_release(c);
    }
    rd = kv_ping(ctx->worker->kv);
    if (rd == SHOPD_OK) catalog_cache_recover(ctx->worker->kv);
    bool ok = pg == SHOPD_OK && rd == SHOPD_OK;
    net_reply_t *r = api_json(ok ? SHOPD_OK : SHOPD_UNAVAILABLE,
                              json_pack("{s:s, s:s, s:s}", "status", ok ? "ready" : "not_ready",
                                        "postgres", pg == SHOPD_OK ? "ok" : "unavailable",
                                        "redis", rd == SHOPD_OK ? "ok" : "unavailable"));
    if (!ok) net_reply_add_header(r, "Retry-After", "1");
    return r;
}

net_reply_t *
api_metrics(app_t *app, net_request_t *req)
{
    size_t len;
    char *text = net_server_metrics(app->net, &len);
    act_stats_t as, bs;
    act_system_stats(app->actors, &as);
    act_system_stats(app->blocking, &bs);
    db_pool_stats_t ds;
    db_pool_stats(app->db, &ds);
    char extra[4096];
    int n = snprintf(extra, sizeof(extra),
                     "# HELP shopd_actors Live store actors.\n# TYPE shopd_actors gauge\nshopd_actors %llu\n"
                     "# HELP shopd_mailbox_depth Messages queued in all mailboxes.\n# TYPE shopd_mailbox_depth gauge\nshopd_mailbox_depth %llu\n"
                     "# HELP shopd_mailbox_depth_max Deepest mailbox now.\n# TYPE shopd_mailbox_depth_max gauge\nshopd_mailbox_depth_max %llu\n"
                     "# HELP shopd_actor_messages_total Messages handled.\n# TYPE shopd_actor_messages_total counter\nshopd_actor_messages_total %llu\n"
                     "# HELP shopd_actor_turns_total Actor turns (handler calls).\n# TYPE shopd_actor_turns_total counter\nshopd_actor_turns_total %llu\n"
                     "# HELP shopd_mailbox_rejected_total Sends refused on a full mailbox.\n# TYPE shopd_mailbox_rejected_total counter\nshopd_mailbox_rejected_total %llu\n"
                     "# HELP shopd_workers_busy Workers running a turn.\n# TYPE shopd_workers_busy gauge\nshopd_workers_busy %llu\n"
                     "# HELP shopd_workers Worker threads.\n# TYPE shopd_workers gauge\nshopd_workers %d\n"
                     "# HELP shopd_db_pool_size PostgreSQL connections in the pool.\n# TYPE shopd_db_pool_size gauge\nshopd_db_pool_size %d\n"
                     "# HELP shopd_db_pool_in_use PostgreSQL connections lent out.\n# TYPE shopd_db_pool_in_use gauge\nshopd_db_pool_in_use %d\n"
                     "# HELP shopd_db_pool_timeouts_total Acquires that gave up.\n# TYPE shopd_db_pool_timeouts_total counter\nshopd_db_pool_timeouts_total %llu\n"
                     "# HELP shopd_db_reconnects_total Reconnects after a lost connection.\n# TYPE shopd_db_reconnects_total counter\nshopd_db_reconnects_total %llu\n"
                     "# HELP shopd_tenant_cache_entries Cached store lookups.\n# TYPE shopd_tenant_cache_entries gauge\nshopd_tenant_cache_entries %zu\n"
                     "# HELP shopd_blocking_tasks_total Tasks run by the blocking pool.\n# TYPE shopd_blocking_tasks_total counter\nshopd_blocking_tasks_total %llu\n"
                     "# HELP shopd_blocking_queued Tasks waiting for the blocking pool.\n# TYPE shopd_blocking_queued gauge\nshopd_blocking_queued %llu\n"
                     "# HELP shopd_blocking_busy Blocking threads running a task.\n# TYPE shopd_blocking_busy gauge\nshopd_blocking_busy %llu\n"
                     "# HELP shopd_blocking_rejected_total Tasks refused on a full queue.\n# TYPE shopd_blocking_rejected_total counter\nshopd_blocking_rejected_total %llu\n"
                     "# HELP shopd_blocking_threads Threads of the blocking pool.\n# TYPE shopd_blocking_threads gauge\nshopd_blocking_threads %d\n",
                     (unsigned long long)as.actors, (unsigned long long)as.queued,
                     (unsigned long long)as.max_depth, (unsigned long long)as.processed,
                     (unsigned long long)as.turns, (unsigned long long)as.rejected,
                     (unsigned long long)as.busy_workers, as.workers, ds.size, ds.in_use,
                     (unsigned long long)ds.timeouts, (unsigned long long)ds.resets,
                     store_cache_size(app->stores), (unsigned long long)bs.processed,
                     (unsigned long long)bs.queued, (unsigned long long)bs.busy_workers,
                     (unsigned long long)bs.rejected, bs.workers);
    net_reply_t *r = api_empty(SHOPD_OK);
    r->body = shopd_realloc(text, len + (size_t)n + 1);
    memcpy(r->body + len, extra, (size_t)n + 1);
    r->len = len + (size_t)n;
    r->content_type = "text/plain; version=0.0.4";
    return r;
}
