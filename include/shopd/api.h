/*
 * api.h: the application: the route table (one row per endpoint: method,
 * path, name, who may call it, how it runs, its handler), the edge logic that
 * turns an HTTP request into an envelope for the right actor, and the handler
 * context that module code receives on a worker.
 *
 * Request path: I/O thread -> api_on_request (route, auth, body checks,
 * tenant from cache) -> act_send(store actor) -> worker -> api_actor_turn ->
 * route handler -> net_reply_post -> I/O thread.
 */
#ifndef SHOPD_API_H
#define SHOPD_API_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "shopd/actors.h"
#include "shopd/arena.h"
#include "shopd/config.h"
#include "shopd/db.h"
#include "shopd/kv.h"
#include "shopd/msg.h"
#include "shopd/net.h"
#include "shopd/store.h"

/** Everything a running shopd holds; one per process. */
typedef struct app_s {
    cfg_t *cfg;
    db_pool_t *db;
    act_system_t *actors;   /**< workers: store actors (lane 0) and their read lanes */
    act_system_t *blocking; /**< the blocking pool: its own threads, lanes per store */
    net_server_t *net;
    store_cache_t *stores;
    struct rl_table_s *limits; /**< the edge's request budgets (system module) */
    net_static_t *statics; /**< static mounts served before routing (pages module); may be NULL */
} app_t;

/** Per-worker state (from the actor runtime's worker_init). */
typedef struct api_worker_s {
    app_t *app;
    kv_conn_t *kv;
    int index;
    arena_t *spare_arena; /**< a reset arena kept for the next message (dispatcher only) */
} api_worker_t;

/** What a handler gets: the decoded envelope, the parsed JSON body (NULL if none),
 *  the store (for store-scoped routes) and the worker's connections. */
typedef struct api_ctx_s {
    app_t *app;
    api_worker_t *worker;
    const msg_env_t *env;
    json_t *body;
    uint64_t store_id;
    const store_snap_t *store;  /**< the resolved store, NULL on platform routes */
    const msg_caller_t *caller; /**< who is calling (role MSG_ROLE_ANONYMOUS if nobody) */
    /** The message's arena (never NULL in a handler): allocate from it, and register
     *  a PGresult or redisReply on it (arena_pgresult, arena_redis_reply) instead of
     *  clearing it on every path. The dispatcher owns it and frees it right after the
     *  reply is posted, so nothing in it may be kept past the handler, the reply
     *  included (api_json and api_raw_json copy). The handler's thread only. */
    arena_t *arena;
    /** The message being handled (dispatcher's; for api_later only). */
    act_msg_t *msg;
    /** The dispatcher's hold on the request's Idempotency-Key (Redis path,
     *  include/shopd/idem.h), NULL when there is none. Handlers leave it alone:
     *  the dispatcher stores the answer under it, and api_later carries it to
     *  api_later_answer. */
    struct idem_claim_s *idem;
} api_ctx_t;

/* ---- answers that come later ----
 * A handler may hand its answer to someone else: api_later takes the request's
 * reply route out of the message, the handler returns API_LATER, and exactly
 * one api_later_answer follows, from any thread. A client that left or timed
 * out in between is handled as for any reply: the edge drops the late answer. */
typedef struct api_later_s api_later_t;
extern net_reply_t api_later_sentinel;
/** What a handler returns once it called api_later (never posted). */
#define API_LATER (&api_later_sentinel)
/** Takes ctx's answer out of the dispatcher's hands. The handle is the caller's
 *  until api_later_answer. Handler thread. */
api_later_t *api_later(api_ctx_t *ctx);
/** Sends r (owned by the call) as the answer and frees l. Any thread. */
void api_later_answer(api_later_t *l, net_reply_t *r);

/** Slow work with an ordered ending: runs work(arg) on one of the store's
 *  blocking lanes (argon2, an outbound call), then then(ctx, arg) on the store's
 *  actor, in order with its other mutations; then's reply (or its own API_LATER)
 *  answers the request. then's ctx has the store, the caller, an arena and the
 *  worker's connections, no env or body: arg carries what it needs (owned by the
 *  pair: then frees it, or drop does when then cannot run because the store's
 *  mailbox is full; the client gets 503). Returns API_LATER for the handler to return, or a 503
 *  store_busy answer (arg not used) when the store's blocking queue is full.
 *  Handler thread. */
net_reply_t *api_blocking_then(api_ctx_t *ctx, void (*work)(void *arg),
                               net_reply_t *(*then)(api_ctx_t *ctx, void *arg),
                               void (*drop)(void *arg), void *arg);

/** The ordered ending alone: from a handler on any thread (a read lane, the
 *  blocking pool), runs then(ctx, arg) on the store's actor, whose reply answers
 *  the request (same ctx and arg rules as api_blocking_then). Returns API_LATER,
 *  or NULL when the store's mailbox is full (arg not used: the caller answers). */
net_reply_t *api_ordered_then(api_ctx_t *ctx, net_reply_t *(*then)(api_ctx_t *ctx, void *arg),
                              void (*drop)(void *arg), void *arg);

/** Work that follows an ordered step but needs no order itself: runs run(ctx,
 *  arg) on one of the store's read lanes (the `any` class), so the actor can go
 *  on with its mailbox. run answers by itself: arg carries the api_later handles
 *  it answers (taken by the caller), and run frees arg; drop frees it (answering
 *  every handle) when the message cannot run (shutdown). run's ctx is as for
 *  then. OK, or BUSY when the lane's mailbox is full (arg not used: the caller
 *  does the work itself). Any handler thread. */
shopd_rc_t api_any_run(api_ctx_t *ctx, void (*run)(api_ctx_t *ctx, void *arg),
                       void (*drop)(void *arg), void *arg);

/** A handler runs on a worker, inside the actor of the request's store (or the
 *  platform actor) and returns the reply (never NULL). */
typedef net_reply_t *(*api_handler_fn)(api_ctx_t *ctx);
/** An inline handler runs on the I/O thread; it must not block. */
typedef net_reply_t *(*api_inline_fn)(app_t *app, net_request_t *req);

/** Who may call a route. */
typedef enum api_access_e {
    API_PUBLIC = 0,  /**< anyone (a valid bearer token, if sent, still fills the caller) */
    API_PLATFORM,    /**< the platform token (Authorization: Bearer SHOPD_PLATFORM_TOKEN) */
    API_CUSTOMER,    /**< a signed-in user of the resolved store (any role), or a super admin */
    API_STORE_ADMIN, /**< a STORE_ADMIN of the resolved store, or a super admin */
    API_SUPER_ADMIN, /**< a platform SUPER_ADMIN */
} api_access_t;

/** Where a route's handler runs (the run class, a column of the route table).
 *  Whatever the class, a store's messages are queued per store (bounded: 503
 *  store_busy with Retry-After beyond) and the run queue takes turns across
 *  stores, so one store's flood cannot take every thread from the others. */
typedef enum api_run_e {
    /** On the store's actor (lane 0): one at a time, in arrival order, batchable.
     *  For mutations that need order: inventory, carts, orders, checkout. */
    API_ORDERED = 0,
    /** On any worker: a read lane of the store (lanes 1..workers), short turns
     *  (SHOPD_READ_BATCH), never behind the store's mutations. For reads. */
    API_ANY,
    /** On the blocking pool (its own threads, SHOPD_BLOCKING_THREADS): CPU-heavy
     *  or slow work (argon2, outbound calls), at most half the pool per store. */
    API_BLOCKING,
} api_run_t;

/** A route's rate class (the last column of the route table): which budgets
 *  of SHOPD_RATE_<CLASS>_{IP,USER,STORE} it spends. Every request of a limited
 *  route spends one unit of its class's per-client-address budget, of its
 *  signed-in user's (or the platform token's) and of its store's (raised by
 *  the store's settings.rate_quota); over any, 429 rate_limited. */
typedef enum api_rate_e {
    /** Derived (so a row may leave the column out): routes for admins (store
     *  admin, super admin, platform) are admin; other GET and HEAD routes
     *  reads; the rest writes. */
    API_RATE_DEFAULT = 0,
    API_RATE_READS,
    API_RATE_WRITES,
    API_RATE_CHECKOUT,
    API_RATE_AUTH, /**< on top of the auth module's own per-account limits */
    API_RATE_ADMIN,
    API_RATE_EXEMPT, /**< never limited: /healthz, /readyz, /metrics */
} api_rate_t;
#define API_RATE_NCLASSES 5 /**< READS..ADMIN, index class - 1 in cfg_t.rate */

/** How a route runs. */
enum {
    API_STORE = 1 << 0,  /**< store-scoped: resolve the tenant first (X-Tenant-Id, Host) */
    API_INLINE = 1 << 1, /**< answered on the I/O thread */
    API_BODY = 1 << 2,   /**< expects a JSON object body */
    /** The dispatcher does not handle the Idempotency-Key of this mutating route:
     *  the handler does, in the transaction of its effect (idem_pg_claim and
     *  idem_pg_save in include/shopd/idem.h), so a crash can neither lose nor
     *  repeat the effect. For checkout, payment and refund. */
    API_IDEM_SELF = 1 << 3,
    /** The answer carries credentials (access and refresh tokens): under an
     *  Idempotency-Key a copy running at the same time is still refused (409
     *  idempotency_in_flight), but the answer is never kept, so no token is
     *  stored outside the client; a retry afterwards signs in again. */
    API_IDEM_NO_REPLAY = 1 << 4,
    /** A batch route whose messages of one turn may be gathered into one batch past
     *  other routes' messages (checkout: a turn where cart adds and checkouts
     *  alternate commits its checkouts together). A message is gathered only if no
     *  message it passes names the same cart (X-Cart-Id) or the same user, so it
     *  never overtakes a write to its own cart; the first one that would stops the
     *  gathering. Any other order is one the clients could have produced. */
    API_BATCH_GATHER = 1 << 5,
    /** A provider's webhook: the store is the path's :store parameter (an id or
     *  a slug, as X-Tenant-Id: the sender sends no tenant header), the body is
     *  passed as the bytes received (its signature covers them; no JSON check
     *  at the edge) and the Stripe-Signature header travels in env->sig. */
    API_SIGNED = 1 << 6,
    /** An upload: the body is passed as the bytes received (an image, or
     *  multipart/form-data; no JSON check at the edge) with its Content-Type in
     *  env->ct, and may be up to api_upload_cap bytes instead of SHOPD_MAX_BODY. */
    API_UPLOAD = 1 << 7,
    /** A public catalog page (served through cat_cached): the edge answers an
     *  anonymous GET of it on the I/O thread from the in-process page cache when it
     *  holds the current page (catalog_page_answer), without a worker. */
    API_PAGE = 1 << 8,
    /** An API_BLOCKING route whose requests of one store all run on the same one
     *  of its blocking lanes, one after the other in arrival order, so the
     *  ordered endings they send to the store's actor (api_ordered_then) keep
     *  that order: the batches of a bulk import, checked off the actor while it
     *  writes the one before. */
    API_ONE_LANE = 1 << 9,
};

/** A batch handler: the dispatcher hands it every consecutive message of one actor
 *  turn that targets the same route (1 <= n <= the turn's size: SHOPD_ACTOR_BATCH on
 *  the store's actor, SHOPD_READ_PIPELINE on a read lane), so it can commit
 *  them together (one transaction, one pipeline). It must set replies[i] for each
 *  ctxs[i] (never NULL); each request succeeds or fails on its own. */
typedef void (*api_batch_fn)(api_ctx_t *ctxs, size_t n, net_reply_t **replies);

typedef struct api_route_s {
    const char *method;
    const char *pattern;
    const char *name; /**< message type, metrics label, OpenAPI operationId */
    int access;       /**< api_access_t */
    int run;          /**< api_run_t */
    int flags;
    api_inline_fn inline_fn;
    api_handler_fn handler;
    api_batch_fn batch; /**< optional; used instead of handler when set */
    /** The query parameters the route reads (NULL-terminated; NULL: none). The
     *  edge refuses any other, a repeated one, or more than API_MAX_QUERY, with
     *  400 invalid_query, and hands the worker the query in one canonical form
     *  (sorted by name, values re-encoded), so a handler's reading and a cache
     *  key built from it can never disagree. */
    const char *const *query;
    /** api_rate_t; 0 (a row that stops at query): derived, see API_RATE_DEFAULT.
     *  Kept last so that rows written before it need no edit. */
    int rate;
} api_route_t;

/** The rate class of r, API_RATE_DEFAULT resolved (READS..EXEMPT). Pure. */
api_rate_t api_rate_class(const api_route_t *r);

#define API_MAX_QUERY 16 /**< query parameters per request */

/** A domain module, as the process sees it: its routes (run class, access and query
 *  parameters per route) and its start and stop hooks. Each module exports one
 *  (store_module, auth_module, catalog_module...); api_modules lists them in
 *  order, and main.c only walks that list. Settings stay rows of the one
 *  configuration table (src/core/config.c), so --help is still one table. */
typedef struct api_module_s {
    const char *name;
    const api_route_t *routes;
    size_t nroutes;
    /** At start, in list order, before any thread runs; 0, or -1 with one line
     *  in err (shopd then stops). May be NULL. */
    int (*init)(app_t *app, char *err, size_t errlen);
    /** At stop, in reverse order, after every thread has ended. May be NULL. */
    void (*fini)(app_t *app);
    /** Every SHOPD_SWEEP_INTERVAL_MS on the ticker thread (not a worker): finds due
     *  work (unpaid orders, expired keys) and sends each store that has some a
     *  timer message (api_timer_send), or does sweeps that need no order itself.
     *  May be NULL. */
    void (*tick)(app_t *app);
    /** Appends the module's Prometheus lines to buf (at most cap bytes); returns
     *  the bytes written. /metrics, any thread. May be NULL. */
    size_t (*metrics)(char *buf, size_t cap);
    /** Once everything runs (workers, blocking pool, HTTP), with the ticker:
     *  starts the module's own threads (the jobs relay). 0, or -1 (logged; shopd
     *  then stops). May be NULL. */
    int (*start)(app_t *app);
    /** At stop, with the ticker, before the actors stop: the module's threads
     *  end and send nothing more. May be NULL. */
    void (*stop)(app_t *app);
    /** The control API_CONTROL_FLUSH, on the store's actor (ctx->store set): drops
     *  what the module keeps of the store outside PostgreSQL (the tenant entry,
     *  cached pages here and, through the catalog version, in other processes).
     *  May be NULL. */
    void (*flush)(api_ctx_t *ctx);
} api_module_t;

/** Control operations on one store (MSG_KIND_CONTROL). */
typedef enum api_control_e {
    API_CONTROL_FLUSH = 1, /**< every module's flush hook */
} api_control_t;

/** The control message kind: sends store_id's actor (lane 0) op, which it runs
 *  in order after the mutations queued before it, so "flushed" means after
 *  them. The answer (200 {store_id, op, modules}; 404 store_not_found for a
 *  store that does not exist) is posted to reply_to with token when reply_to
 *  is not NULL. OK, BUSY (the mailbox is full) or UNAVAILABLE (stopping); on an
 *  error nothing is posted. Any thread. */
shopd_rc_t api_control_send(app_t *app, uint64_t store_id, api_control_t op, void *reply_to,
                            uint64_t token);

/** The timers message kind: sends store_id's actor a message that runs run(ctx)
 *  there, in order with the store's other mutations (ctx has the store, an arena
 *  and the worker's connections; no caller, no body, and nobody to answer).
 *  OK, or BUSY (the store's mailbox is full; the next tick tries again). Any thread. */
shopd_rc_t api_timer_send(app_t *app, uint64_t store_id, void (*run)(api_ctx_t *ctx));
/** The jobs message kind (MSG_KIND_JOB): runs run(ctx, arg) on one of
 *  store_id's blocking lanes (slow work: SMTP, an outgoing webhook), with the
 *  store, an arena and that thread's connections in ctx (no caller, no body,
 *  nobody to answer). arg belongs to the message: run frees it, or drop does
 *  when the message is dropped unhandled (at stop; the store is gone). OK, or
 *  BUSY (the lane's queue is full; arg not used). Any thread. */
shopd_rc_t api_job_send(app_t *app, uint64_t store_id, void (*run)(api_ctx_t *ctx, void *arg),
                        void (*drop)(void *arg), void *arg);
/** Starts the ticker thread that calls the modules' tick hooks, then the
 *  modules' start hooks; 0 or -1. */
int api_ticker_start(app_t *app);
/** Stops the modules' threads (stop hooks, reverse order) and joins the
 *  ticker (before the actors stop). */
void api_ticker_stop(void);

extern const api_module_t *const api_modules[];
extern const size_t api_nmodules;
/** The system endpoints (/healthz, /readyz, /metrics). */
extern const api_module_t api_system_module;

/** The route table: every module's routes in list order, assembled before main
 *  runs. A message's type is its route's index here. Read-only. */
extern const api_route_t *api_routes;
extern size_t api_nroutes;

/** Builds the router's view of the route table; call once before serving. */
void api_init(void);
/** Route names indexed like api_routes (metrics labels). After api_init. */
const char *const *api_route_names(void);

/** The body limit of an upload route's request: twice SHOPD_MEDIA_MAX_BYTES
 *  plus 64 KiB (a multipart body's headers), so a file just over the per-file
 *  limit still reaches the handler and gets its 413 payload_too_large. Pure. */
size_t api_upload_cap(const cfg_t *cfg);
/** The body_cap hook given to the HTTP server (ud = app_t *): api_upload_cap for
 *  the upload routes, 0 (the server's SHOPD_MAX_BODY) for the others. I/O thread. */
size_t api_body_cap(const net_request_t *req, void *ud);
/** The net_request_fn given to the HTTP server (ud = app_t *). */
net_handled_t api_on_request(net_request_t *req, void *ud);
/** A request from any front end (the HTTP edge, the admin protocol), its caller
 *  already authenticated, its body (if any) already known to be a JSON object.
 *  Everything points at the front end's memory and is read before api_submit
 *  returns. */
typedef struct api_call_s {
    size_t route; /**< index into api_routes (not an inline route) */
    msg_caller_t caller;
    /** The tenant key (store_tenant_key) of a store-scoped route, "" or NULL: none. */
    const char *tenant_key;
    size_t nparams; /**< path parameters, names as in the route's pattern */
    msg_str_t param_names[MSG_MAX_PARAMS];
    msg_str_t param_values[MSG_MAX_PARAMS];
    const char *query; /**< raw query string (k=v&...), may be NULL */
    size_t query_len;
    msg_str_t body, inm, cart, idem, request_id, ip, sig, ct;
    msg_str_t ae;   /**< "gzip" if the answer may be gzip-encoded, else "" */
    void *reply_to; /**< where the answer goes: net_reply_post(reply_to, token, ...) */
    uint64_t token;
} api_call_t;

/** True if a caller with role (msg_role_t) may call a route with access
 *  (api_access_t): the one table of who may call what. Pure. */
bool api_role_allows(int access, int role);

/** The edge's common tail: names the store (tenant cache; the platform actor looks
 *  up an unknown one), reads the query, packs the envelope and hands it to the
 *  actor its run class names. Returns NULL when the answer will come through
 *  net_reply_post(c->reply_to, c->token), or the answer now (the caller owns it:
 *  no such store, a suspended store, a bad query, a full mailbox). Does not check
 *  who is calling: the front end did (api_role_allows). *store_id (may be NULL)
 *  gets the store when the cache named it (0 otherwise), for the access log.
 *  I/O thread (never blocks). */
net_reply_t *api_submit(app_t *app, const api_call_t *c, uint64_t *store_id);

/** The net_reply_fn given to the HTTP server (ud = app_t *): CORS headers for
 *  the answer's store, and the answer of a preflight that waited for its store
 *  to be looked up. I/O thread. */
void api_on_reply(net_request_t *req, net_reply_t *r, void *ud);
/** The act_handler_fn given to the actor runtime (ud = app_t *). */
void api_actor_turn(act_worker_t *w, uint64_t store_id, act_msg_t **msgs, size_t n, void *ud);
void *api_worker_init(int index, void *ud);
/** The worker_init of the blocking pool: api_worker_init at nice SHOPD_BLOCKING_NICE. */
void *api_blocking_worker_init(int index, void *ud);
/** The act_batch_fn of the workers' runtime: lane 0 (the store's actor) takes up to
 *  SHOPD_ACTOR_BATCH messages a turn, read lanes SHOPD_READ_BATCH (ud = app_t *). */
size_t api_batch_for(uint64_t actor_id, void *ud);
/** The act_more_fn of the workers' runtime: a read lane's turn that began with a
 *  request of a batch route (product pages) goes on taking the requests of that
 *  route queued behind it, up to SHOPD_READ_PIPELINE, since its batch handler
 *  reads them in one pipeline; any other turn stops at api_batch_for. */
bool api_more_for(uint64_t actor_id, const act_msg_t *first, const act_msg_t *next, size_t n,
                  void *ud);
/** The act_group_fn of both runtimes: an actor's store (fairness is per store). */
uint64_t api_store_of(uint64_t actor_id);
/** The act_batch_fn of the blocking pool: one task per turn. */
size_t api_blocking_batch_for(uint64_t actor_id, void *ud);
void api_worker_fini(void *wstate, void *ud);

/* ---- reply helpers for handlers ----
 * A handler answers with a result (shopd_rc_t: SHOPD_OK, SHOPD_CREATED,
 * SHOPD_NOTFOUND, ...), an error code and message, or a body; it never names an
 * HTTP status. net_status_for_rc is the one table that turns a result into one.
 * The reply returned belongs to the caller (the dispatcher posts it). */
/** An answer with a JSON value (reference stolen): usually rc is SHOPD_OK or
 *  SHOPD_CREATED; a failure rc sends the value as it is (e.g. /readyz's 503). */
net_reply_t *api_json(shopd_rc_t rc, json_t *v);
/** Same with JSON text produced elsewhere (e.g. by PostgreSQL), sent compacted
 *  (net_json_compact): text must be JSON. */
net_reply_t *api_raw_json(shopd_rc_t rc, const char *text, size_t len);
/** An answer without a body: SHOPD_NO_CONTENT, SHOPD_NOT_MODIFIED, SHOPD_ACCEPTED... */
net_reply_t *api_empty(shopd_rc_t rc);
/** A failure: rc (< 0), a stable error code ("product_not_found") and a message. */
net_reply_t *api_fail(shopd_rc_t rc, const char *code, const char *message);
/** Same with one field detail. */
net_reply_t *api_fail_field(shopd_rc_t rc, const char *code, const char *message, const char *field,
                            const char *issue);
/** True if r is a success answer (any rc >= 0). */
bool api_reply_ok(const net_reply_t *r);
/** The answer for a failed statement (r may be NULL), from the one constraint table
 *  in src/modules/dberr.c: a named constraint gives its code and field (409
 *  slug_taken...), a lost connection 503, other conflicts 409, check violations
 *  422, the rest 500 with a log line naming what and the request id. */
net_reply_t *api_db_error(api_ctx_t *ctx, PGresult *r, const char *what);
/** The error code the constraint table gives constraint, or NULL (for tests). */
const char *api_constraint_code(const char *constraint);
/** 503 when PostgreSQL or Redis is unreachable, with Retry-After. */
net_reply_t *api_unavailable(const char *what);
/** 500 with a log line carrying the request id. */
net_reply_t *api_internal(api_ctx_t *ctx, const char *what);

/* ---- validation: collects field problems into one 422 ---- */
#define API_MAX_ISSUES 16
typedef struct api_val_s {
    size_t n;
    char fields[API_MAX_ISSUES][64];
    char issues[API_MAX_ISSUES][128];
} api_val_t;
void api_val_add(api_val_t *v, const char *field, const char *issue);
/** A string field: required or not, length bounds in characters (UTF-8 code points).
 *  Returns the string, or NULL (absent or invalid; an issue is recorded if invalid or
 *  required). Records "must be a string" for other types. */
const char *api_val_string(api_val_t *v, json_t *obj, const char *field, bool required,
                           size_t minlen, size_t maxlen);
/** An integer field: 0 when absent or null, 1 when valid (*out set), -1 when invalid
 *  (an issue is recorded: not an integer, or outside min..max). */
int api_val_int(api_val_t *v, json_t *obj, const char *field, long long min, long long max,
                long long *out);
/** Records "unknown field" for every key of obj not in allowed (NULL-terminated). */
void api_val_only(api_val_t *v, json_t *obj, const char *const *allowed);
/** The 422 validation_failed reply for v (v->n > 0). */
net_reply_t *api_val_reply(const api_val_t *v);
/** Parses an RFC 3339 date-time ("2026-12-01T20:28:16Z", fraction and offset
 *  allowed) into microseconds since the epoch: false for anything else (so a
 *  word PostgreSQL would read, like "yesterday", never reaches a query). Pure. */
bool api_rfc3339(const char *s, int64_t *us);

/** Value of a query parameter (URL-decoded into buf), or NULL. */
const char *api_query_param(const msg_env_t *env, const char *name, char *buf, size_t buflen);
/** The edge's reading of a raw query (qlen bytes at q, may be NULL) for a route
 *  that accepts the parameters in allowed (NULL-terminated, or NULL for none):
 *  NULL and, in *out (malloc'd, caller frees; NULL when the query is empty), the
 *  canonical query: pairs sorted by name, values re-encoded (unreserved bytes as
 *  they are, the rest %XX). Or a 400 invalid_query reply naming the parameter
 *  that is unknown or repeated (*out stays NULL). Any thread. */
net_reply_t *api_query_canon(const char *const *allowed, const char *q, size_t qlen, char **out,
                             size_t *outlen);

/* ---- handlers (modules) ---- */
net_reply_t *api_healthz(app_t *app, net_request_t *req);
net_reply_t *api_metrics(app_t *app, net_request_t *req);
net_reply_t *api_readyz(api_ctx_t *ctx);

net_reply_t *store_h_create(api_ctx_t *ctx);
net_reply_t *store_h_list(api_ctx_t *ctx);
net_reply_t *store_h_get(api_ctx_t *ctx);
net_reply_t *store_h_update(api_ctx_t *ctx);
net_reply_t *store_h_delete(api_ctx_t *ctx);
net_reply_t *store_h_current(api_ctx_t *ctx);
/** Looks a tenant key up in PostgreSQL (platform actor). OK, NOTFOUND or UNAVAILABLE. */
shopd_rc_t store_lookup(app_t *app, const char *key, store_snap_t *out);

/* ------------------------------------------------------------ text buffer */

/** A growing NUL-terminated text buffer, for SQL and for JSON written in C from
 *  rows (the catalog's pages, orders). Zero-initialised is empty; the caller frees p. */
typedef struct api_buf_s {
    char *p;
    size_t n, cap;
} api_buf_t;
void api_buf_put(api_buf_t *b, const char *s, size_t len);
void api_buf_puts(api_buf_t *b, const char *s);
void api_buf_printf(api_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/** s as a JSON string, escaped as PostgreSQL's escape_json does (so JSON written
 *  in C matches the bytes json_build_object wrote): \b \f \n \r \t \" \\ by
 *  name, other control characters as \u00xx, everything else (UTF-8) as it is. */
void api_buf_json_str(api_buf_t *b, const char *s);
/** Column col of row i as JSON, null when NULL: its text as it is (numbers, JSON
 *  text), as a string, as true/false, or (a timestamptz in DateStyle ISO) as
 *  PostgreSQL's to_json writes it. */
void api_buf_pg_raw(api_buf_t *b, const PGresult *r, int i, int col);
void api_buf_pg_text(api_buf_t *b, const PGresult *r, int i, int col);
void api_buf_pg_bool(api_buf_t *b, const PGresult *r, int i, int col);
void api_buf_pg_ts(api_buf_t *b, const PGresult *r, int i, int col);

#endif
