/*
 * dispatch.c: the dispatcher. api_dispatch sends a message to the actor of its
 * run class (the store's actor, a read lane, a blocking lane); api_actor_turn,
 * on a worker or a blocking thread, unpacks each message of a turn, resolves
 * unknown tenants (platform actor), runs the middleware's worker half, runs the
 * route's handler or batch handler and posts the reply to the I/O thread that
 * owns the connection.
 *
 * Each message that reaches its handler gets an arena (ctx->arena) for its
 * allocations and its PGresult/redisReply cleanups; it is reset or freed right
 * after that message's reply is posted. Each worker keeps one reset arena as a
 * spare, so a small request allocates no arena memory.
 */
#include <errno.h>
#include <stdatomic.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api_int.h"
#include "shopd/auth.h"
#include "shopd/catalog.h"
#include "shopd/idem.h"
#include "shopd/log.h"

net_route_t *api_net_routes; /* method + pattern of api_routes, for the router */
net_router_t *api_router;    /* their index: built once, read by every I/O thread */

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

shopd_rc_t
api_dispatch(app_t *app, act_msg_t *m, const api_route_t *route, uint64_t store_id)
{
    uint64_t rr = atomic_fetch_add_explicit(&lane_rr, 1, memory_order_relaxed);
    switch (route->run) {
    case API_ANY:
        m->store_id = ACT_ID(store_id, 1 + rr % read_lanes(app));
        return act_send(app->actors, m);
    case API_BLOCKING:
        m->store_id =
            ACT_ID(store_id, 1 + (route->flags & API_ONE_LANE ? 0 : rr % blocking_lanes(app)));
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
    return ACT_LANE_OF(actor_id) == 0 ? (size_t)app->cfg->actor_batch
                                      : (size_t)app->cfg->read_batch;
}

bool
api_more_for(uint64_t actor_id, const act_msg_t *first, const act_msg_t *next, size_t n, void *ud)
{
    const app_t *app = ud;
    if (ACT_LANE_OF(actor_id) == 0 || first->type >= api_nroutes || next->type != first->type)
        return false;
    return api_routes[first->type].batch != NULL && n < (size_t)app->cfg->read_pipeline;
}

uint64_t
api_store_of(uint64_t actor_id)
{
    return ACT_STORE_OF(actor_id);
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
    if (api_net_routes)
        return;
    api_net_routes = shopd_calloc(api_nroutes, sizeof(net_route_t));
    route_names = shopd_calloc(api_nroutes, sizeof(char *));
    for (size_t i = 0; i < api_nroutes; i++) {
        api_net_routes[i].method = api_routes[i].method;
        api_net_routes[i].pattern = api_routes[i].pattern;
        route_names[i] = api_routes[i].name;
    }
    api_router = net_router_new(api_net_routes, api_nroutes);
}

const char *const *
api_route_names(void)
{
    return route_names;
}

/* ------------------------------------------------------------ worker side */

/* The worker whose turn this thread runs (set by api_actor_turn): its Redis
 * connection stores a later answer under the request's Idempotency-Key when
 * api_later_answer is called from a turn. Other threads have none. */
static _Thread_local api_worker_t *turn_worker;

/* Keeps r under the request's key (if it holds one) before anyone sees it, so a
 * retry that follows the answer finds it. */
static void
idem_close(idem_claim_t **idem, const net_reply_t *r)
{
    if (*idem == NULL)
        return;
    idem_end(*idem, turn_worker ? turn_worker->kv : NULL, r);
    *idem = NULL;
}

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
        if (rc == SHOPD_NOTFOUND)
            memset(&snap, 0, sizeof(snap));
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
    shopd_rc_t rc = api_dispatch(app, m, &api_routes[m->type], snap.id);
    if (rc != SHOPD_OK) {
        net_reply_t *r =
            api_fail(SHOPD_BUSY, "store_busy", "too many requests are queued for this store");
        net_reply_add_header(r, "Retry-After", "1");
        post(m, r, snap.id);
        return false;
    }
    return true;
}

/* The message's arena: the worker's spare if it has one (reset, its first chunk
 * kept), else a new one. A turn may hold several at once (a batch). */
static arena_t *
arena_take(api_worker_t *ws)
{
    if (ws == NULL || ws->spare_arena == NULL)
        return arena_new(0);
    arena_t *a = ws->spare_arena;
    ws->spare_arena = NULL;
    return a;
}

/* Done with a message's arena: run its cleanups (PQclear...) and keep it as the
 * worker's spare, or free it if the worker has one. */
static void
arena_give_back(api_worker_t *ws, arena_t *a)
{
    if (ws != NULL && ws->spare_arena == NULL) {
        arena_reset(a);
        ws->spare_arena = a;
    } else {
        arena_free(a);
    }
}

/* ---- answers that come later, and the blocking-then-actor hop ---- */

net_reply_t api_later_sentinel; /* its address is API_LATER */

struct api_later_s {
    void *reply_to;
    uint64_t token;
    uint64_t store_id;
    idem_claim_t *idem; /* the request's key, answered with it */
};

api_later_t *
api_later(api_ctx_t *ctx)
{
    api_later_t *l = shopd_calloc(1, sizeof(*l));
    l->reply_to = ctx->msg->reply_to;
    l->token = ctx->msg->reply_token;
    l->store_id = ctx->store_id;
    l->idem = ctx->idem;
    ctx->idem = NULL;
    ctx->msg->reply_to = NULL; /* the dispatcher posts nothing for it now */
    return l;
}

void
api_later_answer(api_later_t *l, net_reply_t *r)
{
    r->store_id = l->store_id;
    idem_close(&l->idem, r);
    if (l->reply_to)
        net_reply_post(l->reply_to, l->token, r);
    else
        net_reply_free(r);
    shopd_free(l);
}

/* The types of the dispatcher's own messages (never route indexes). */
#define MSG_TYPE_RUN UINT32_C(0xffffffef)  /* on a read lane: run run, which answers */
#define MSG_TYPE_WORK UINT32_C(0xfffffff0) /* on a blocking lane: run work */
#define MSG_TYPE_THEN UINT32_C(0xfffffff1) /* on the store's actor: run then */

typedef struct hop_s {
    api_later_t *later;
    void (*work)(void *arg);
    net_reply_t *(*then)(api_ctx_t *ctx, void *arg);
    void (*run)(api_ctx_t *ctx, void *arg); /* MSG_TYPE_RUN: answers by itself */
    void (*drop)(void *arg);
    void *arg;
    uint64_t store_id;
    msg_caller_t caller;
    store_snap_t snap;
    bool have_store;
} hop_t;

/* A hop left in a mailbox at stop: its client is told, its argument freed. */
static void
hop_dropped(act_msg_t *m)
{
    hop_t *h = (hop_t *)m->data;
    if (h == NULL)
        return;
    if (h->later) {
        net_reply_t *r =
            api_fail(SHOPD_UNAVAILABLE, "shutting_down", "the server is shutting down");
        net_reply_add_header(r, "Retry-After", "1");
        api_later_answer(h->later, r);
        h->later = NULL;
    }
    if (h->drop)
        h->drop(h->arg);
}

/* A hop from ctx's handler: who it runs for and what, not yet sent. */
static hop_t *
hop_new(const api_ctx_t *ctx, const hop_t *what)
{
    hop_t *h = shopd_calloc(1, sizeof(*h));
    *h = *what;
    h->store_id = ctx->store_id;
    h->caller = *ctx->caller;
    h->have_store = ctx->store != NULL;
    if (ctx->store)
        h->snap = *ctx->store;
    return h;
}

net_reply_t *
api_blocking_then(api_ctx_t *ctx, void (*work)(void *arg),
                  net_reply_t *(*then)(api_ctx_t *ctx, void *arg), void (*drop)(void *arg),
                  void *arg)
{
    hop_t *h = hop_new(ctx, &(hop_t){.work = work, .then = then, .drop = drop, .arg = arg});
    /* The answer route moves into h before the send: once sent, h belongs to the
     * blocking thread (act_send publishes it with the mailbox link). */
    h->later = api_later(ctx);
    act_msg_t *m = act_msg_new(MSG_TYPE_WORK, 0, (char *)h, sizeof(*h));
    m->on_drop = hop_dropped;
    uint64_t rr = atomic_fetch_add_explicit(&lane_rr, 1, memory_order_relaxed);
    m->store_id = ACT_ID(ctx->store_id, 1 + rr % blocking_lanes(ctx->app));
    if (act_send(ctx->app->blocking, m) == SHOPD_OK)
        return API_LATER;
    /* Refused: give the answer route back, and answer 503 the normal way. */
    ctx->msg->reply_to = h->later->reply_to;
    ctx->msg->reply_token = h->later->token;
    ctx->idem = h->later->idem;
    shopd_free(h->later);
    m->data = NULL; /* h is still ours */
    act_msg_free(m);
    shopd_free(h);
    net_reply_t *r =
        api_fail(SHOPD_BUSY, "store_busy", "too many requests are queued for this store");
    net_reply_add_header(r, "Retry-After", "1");
    return r;
}

net_reply_t *
api_ordered_then(api_ctx_t *ctx, net_reply_t *(*then)(api_ctx_t *ctx, void *arg),
                 void (*drop)(void *arg), void *arg)
{
    hop_t *h = hop_new(ctx, &(hop_t){.then = then, .drop = drop, .arg = arg});
    h->later = api_later(ctx);
    act_msg_t *m = act_msg_new(MSG_TYPE_THEN, ACT_ID(ctx->store_id, 0), (char *)h, sizeof(*h));
    m->on_drop = hop_dropped;
    if (act_send(ctx->app->actors, m) == SHOPD_OK)
        return API_LATER;
    ctx->msg->reply_to = h->later->reply_to;
    ctx->msg->reply_token = h->later->token;
    shopd_free(h->later);
    m->data = NULL;
    act_msg_free(m);
    shopd_free(h);
    return NULL;
}

shopd_rc_t
api_any_run(api_ctx_t *ctx, void (*run)(api_ctx_t *ctx, void *arg), void (*drop)(void *arg),
            void *arg)
{
    hop_t *h = hop_new(ctx, &(hop_t){.run = run, .drop = drop, .arg = arg});
    uint64_t rr = atomic_fetch_add_explicit(&lane_rr, 1, memory_order_relaxed);
    act_msg_t *m = act_msg_new(MSG_TYPE_RUN, ACT_ID(ctx->store_id, 1 + rr % read_lanes(ctx->app)),
                               (char *)h, sizeof(*h));
    m->on_drop = hop_dropped;
    if (act_send(ctx->app->actors, m) == SHOPD_OK)
        return SHOPD_OK;
    m->data = NULL; /* h, and arg, are still the caller's */
    act_msg_free(m);
    shopd_free(h);
    return SHOPD_BUSY;
}

/* A dispatcher message (MSG_TYPE_WORK, _THEN or _RUN); consumes m. */
static void
run_hop(app_t *app, api_worker_t *ws, act_msg_t *m)
{
    hop_t *h = (hop_t *)m->data;
    if (m->type == MSG_TYPE_WORK) {
        h->work(h->arg);
        m->type = MSG_TYPE_THEN;
        m->store_id = ACT_ID(h->store_id, 0);
        if (act_send(app->actors, m) == SHOPD_OK)
            return;
        /* The store's mailbox is full: say so; the work's result goes with arg. */
        net_reply_t *r =
            api_fail(SHOPD_BUSY, "store_busy", "too many requests are queued for this store");
        net_reply_add_header(r, "Retry-After", "1");
        api_later_answer(h->later, r);
        h->drop(h->arg);
        act_msg_free(m);
        return;
    }
    msg_env_t env;
    memset(&env, 0, sizeof(env));
    env.store_id = h->store_id;
    env.caller = h->caller;
    api_ctx_t ctx = {.app = app,
                     .worker = ws,
                     .env = &env,
                     .store_id = h->store_id,
                     .store = h->have_store ? &h->snap : NULL,
                     .caller = &env.caller,
                     .arena = arena_take(ws),
                     .msg = m};
    if (m->type == MSG_TYPE_RUN) { /* the answers are run's to give (api_later_answer) */
        h->run(&ctx, h->arg);
        arena_give_back(ws, ctx.arena);
        act_msg_free(m);
        return;
    }
    m->reply_to = h->later->reply_to; /* then may take it again with api_later */
    m->reply_token = h->later->token;
    ctx.idem = h->later->idem;
    shopd_free(h->later);
    h->later = NULL;
    net_reply_t *r = h->then(&ctx, h->arg);
    if (r != API_LATER) {
        idem_close(&ctx.idem, r);
        post(m, r, h->store_id);
    }
    arena_give_back(ws, ctx.arena);
    act_msg_free(m);
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
    if (m->type == MSG_TYPE_WORK || m->type == MSG_TYPE_THEN || m->type == MSG_TYPE_RUN) {
        run_hop(app, ws, m);
        return false;
    }
    if (m->type > MSG_TYPE_THEN) {
        arena_t *a = arena_take(ws);
        bool timer = api_timer_take(app, ws, store_id, m, a);
        arena_give_back(ws, a);
        if (timer)
            return false;
    }
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
            if (!resolve_and_forward(app, m, env))
                act_msg_free(m);
            return false;
        }
        char key[32];
        snprintf(key, sizeof(key), "id:%llu", (unsigned long long)env->store_id);
        if (!store_cache_get(app->stores, key, &p->snap)) {
            shopd_rc_t rc = store_lookup(app, key, &p->snap);
            if (rc != SHOPD_OK) {
                post(m,
                     rc == SHOPD_UNAVAILABLE
                         ? api_unavailable("the database")
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
            post(m, api_fail(SHOPD_FORBIDDEN, "forbidden", "this token belongs to another store"),
                 env->store_id);
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
                post(m,
                     api_unauthenticated(
                         "this account is disabled or its role changed; sign in again", true),
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
                         .caller = &env->caller,
                         .arena = arena_take(ws),
                         .msg = m};
    return true;
}

static void
finish(prepared_t *p, net_reply_t *r)
{
    json_decref(p->ctx.body);
    if (r != API_LATER) { /* else the handler's api_later handle answers */
        idem_close(&p->ctx.idem, r);
        post(p->m, r, p->env.store_id);
    }
    /* The reply is posted and owns copies of what it says: the arena can go. */
    arena_give_back(p->ctx.worker, p->ctx.arena);
    act_msg_free(p->m);
}

/* True if gathering ps[j] into the batch that starts at ps[i] would move it past a
 * message (not yet handled) of the same cart or the same user. */
static bool
overtakes_own(const prepared_t *ps, const bool *done, size_t i, size_t j)
{
    const msg_env_t *e = &ps[j].env;
    for (size_t x = i + 1; x < j; x++) {
        if (done[x] || ps[x].route == ps[j].route)
            continue;
        const msg_env_t *o = &ps[x].env;
        if (e->cart.n && o->cart.n == e->cart.n && memcmp(o->cart.p, e->cart.p, e->cart.n) == 0)
            return true;
        if (e->caller.user_id && o->caller.user_id == e->caller.user_id &&
            o->caller.store_id == e->caller.store_id)
            return true;
    }
    return false;
}

void
api_actor_turn(act_worker_t *w, uint64_t store_id, act_msg_t **msgs, size_t n, void *ud)
{
    app_t *app = ud;
    api_worker_t *ws = act_worker_state(w);
    prepared_t *ps = shopd_calloc(n, sizeof(*ps));
    size_t np = 0;
    turn_worker = ws;
    for (size_t i = 0; i < n; i++) {
        if (!prepare(app, ws, ACT_STORE_OF(store_id), msgs[i], &ps[np]))
            continue;
        /* Idempotency-Key, once the store and caller are known and before the
         * handler: a replay, a mismatch, a request in flight or Redis down is
         * answered here and the handler never runs. Two messages of one turn
         * with the same key: the second finds the first's mark (409). */
        net_reply_t *r = idem_begin(&ps[np].ctx, ps[np].route, &ps[np].ctx.idem);
        if (r) {
            finish(&ps[np], r);
            continue;
        }
        np++;
    }
    /* ctx.env/store point into ps[]; fix them now that ps no longer moves. */
    for (size_t i = 0; i < np; i++) {
        ps[i].ctx.env = &ps[i].env;
        ps[i].ctx.caller = &ps[i].env.caller;
        if (ps[i].ctx.store)
            ps[i].ctx.store = &ps[i].snap;
    }
    bool *done = shopd_calloc(np ? np : 1, sizeof(*done));
    size_t *idx = shopd_calloc(np ? np : 1, sizeof(*idx));
    for (size_t i = 0; i < np; i++) {
        if (done[i])
            continue;
        const api_route_t *route = ps[i].route;
        if (route->batch == NULL) {
            finish(&ps[i], route->handler(&ps[i].ctx));
            done[i] = true;
            continue;
        }
        /* Consecutive messages for the same batch route go to the handler together;
         * an API_BATCH_GATHER route also takes later ones past other messages that
         * do not touch the same cart or user (see api.h). */
        size_t k = 0;
        idx[k++] = i;
        bool gather = (route->flags & API_BATCH_GATHER) != 0, passed = false;
        for (size_t j = i + 1; j < np; j++) {
            if (done[j])
                continue;
            if (ps[j].route != route) {
                if (!gather)
                    break;
                passed = true;
                continue;
            }
            if (passed && overtakes_own(ps, done, i, j))
                break;
            idx[k++] = j;
        }
        api_ctx_t *ctxs = shopd_malloc(k * sizeof(*ctxs));
        net_reply_t **replies = shopd_calloc(k, sizeof(*replies));
        for (size_t x = 0; x < k; x++)
            ctxs[x] = ps[idx[x]].ctx;
        route->batch(ctxs, k, replies);
        for (size_t x = 0; x < k; x++) /* api_later on a batch ctx takes its key along */
            ps[idx[x]].ctx.idem = ctxs[x].idem;
        for (size_t x = 0; x < k; x++) {
            finish(&ps[idx[x]],
                   replies[x] ? replies[x] : api_fail(SHOPD_ERR, "internal_error", "no reply"));
            done[idx[x]] = true;
        }
        shopd_free(ctxs);
        shopd_free(replies);
    }
    shopd_free(idx);
    shopd_free(done);
    shopd_free(ps);
    turn_worker = NULL;
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

void *
api_blocking_worker_init(int index, void *ud)
{
    app_t *app = ud;
    /* Argon2 is pure CPU: at a lower priority it takes the cores only when the
     * workers and PostgreSQL (whose commits a checkout waits for) leave them idle,
     * so a burst of logins slows logins, not the store's stock writes. Linux
     * applies a nice value per thread. */
    if (app->cfg->blocking_nice > 0 &&
        setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), app->cfg->blocking_nice) != 0)
        log_warn("blocking pool thread %d: setpriority failed: %s", index, strerror(errno));
    return api_worker_init(index, ud);
}

void
api_worker_fini(void *wstate, void *ud)
{
    api_worker_t *ws = wstate;
    if (ws == NULL)
        return;
    arena_free(ws->spare_arena);
    kv_conn_free(ws->kv);
    shopd_free(ws);
}
