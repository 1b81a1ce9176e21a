/*
 * edge.c: the HTTP edge, on the I/O threads (never blocks): route a request,
 * check who is calling (JWT verification is one HMAC), check the body, read the
 * query, name the store (tenant cache), pack the msgpack envelope and hand it to
 * the actor its run class names (api_dispatch). The worker half of the
 * middleware (token still describes its user, token of this store) runs in
 * dispatch.c once the store is known.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api_int.h"
#include "shopd/auth.h"
#include "shopd/catalog.h"
#include "shopd/idem.h"
#include "shopd/log.h"

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

net_handled_t
api_on_request(net_request_t *req, void *ud)
{
    app_t *app = ud;
    size_t plen;
    const char *path = net_req_path(req, &plen);
    net_match_t m;
    net_match_rc_t mrc =
        net_route_match(api_net_routes, api_nroutes, net_req_method(req), path, plen, &m);
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
    net_reply_t *denied = authenticate(app, req, route, &env.caller);
    if (denied)
        return answer(req, denied);

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
    if (route->flags & API_BODY) {
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
    char key[STORE_KEY_MAX] = "";
    if ((route->flags & API_STORE) &&
        store_tenant_key(net_req_header(req, "X-Tenant-Id"), net_req_header(req, "Host"),
                         app->cfg->base_domain, key, sizeof(key)) != 0)
        return answer(req, api_fail(SHOPD_NOTFOUND, "store_not_found",
                                    "no store is named by X-Tenant-Id or Host"));
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
    call.idem = env.idem; /* checked above; never forwarded on a GET */
    call.request_id = msg_str(net_req_id(req));
    char ipbuf[64];
    call.ip = msg_str(client_ip(app, req, ipbuf, sizeof(ipbuf)));
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
