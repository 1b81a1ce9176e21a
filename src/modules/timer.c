/*
 * timer.c: timer messages and the ticker (the "timers" message kind).
 *
 * Sweepers that change a store's state (cancelling its unpaid orders and
 * returning their stock) must run on the store's actor, in order with its
 * checkouts, like any other mutation. So the ticker thread never touches a
 * store: every SHOPD_SWEEP_INTERVAL_MS it calls each module's tick hook, a
 * tick finds the stores with due work (one query over all stores) and sends
 * each a timer message with api_timer_send; the store's actor runs it in its
 * turn. Sweeps that touch no store's order (expired idempotency keys) run in
 * the tick itself.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "api_int.h"
#include "shopd/log.h"

#define MSG_TYPE_TIMER UINT32_C(0xfffffff2)
#define MSG_TYPE_JOB UINT32_C(0xfffffff3)
#define MSG_TYPE_CONTROL UINT32_C(0xfffffff4)

typedef struct timer_msg_s {
    void (*run)(api_ctx_t *ctx);
} timer_msg_t;

shopd_rc_t
api_timer_send(app_t *app, uint64_t store_id, void (*run)(api_ctx_t *ctx))
{
    timer_msg_t *t = shopd_malloc(sizeof(*t));
    t->run = run;
    act_msg_t *m = act_msg_new(MSG_TYPE_TIMER, ACT_ID(store_id, 0), (char *)t, sizeof(*t));
    /* No one waits for the answer: reply_to stays NULL and nothing is posted. */
    shopd_rc_t rc = act_send(app->actors, m);
    if (rc != SHOPD_OK)
        act_msg_free(m);
    return rc;
}

/* ---- the control kind: the process tells a store's actor to do something ---- */

typedef struct control_msg_s {
    api_control_t op;
} control_msg_t;

shopd_rc_t
api_control_send(app_t *app, uint64_t store_id, api_control_t op, void *reply_to, uint64_t token)
{
    if (store_id == 0 || store_id == ACT_PLATFORM_ID || op != API_CONTROL_FLUSH)
        return SHOPD_INVALID;
    control_msg_t *cm = shopd_malloc(sizeof(*cm));
    cm->op = op;
    act_msg_t *m = act_msg_new(MSG_TYPE_CONTROL, ACT_ID(store_id, 0), (char *)cm, sizeof(*cm));
    m->reply_to = reply_to;
    m->reply_token = token;
    shopd_rc_t rc = act_send(app->actors, m);
    if (rc != SHOPD_OK) {
        m->reply_to = NULL;
        act_msg_free(m);
    }
    return rc;
}

/* Runs a control message on the store's actor; the store is NULL when it does
 * not exist (deleted meanwhile, or never). */
static void
control_run(api_ctx_t *ctx, const control_msg_t *cm, act_msg_t *m)
{
    net_reply_t *r;
    if (ctx->store == NULL) {
        r = api_fail(SHOPD_NOTFOUND, "store_not_found", "no such store");
    } else {
        json_t *mods = json_array();
        for (size_t i = 0; i < api_nmodules; i++)
            if (api_modules[i]->flush) {
                api_modules[i]->flush(ctx);
                json_array_append_new(mods, json_string(api_modules[i]->name));
            }
        r = api_json(SHOPD_OK,
                     json_pack("{s:b,s:I,s:s,s:o}", "flushed", 1, "store_id",
                               (json_int_t)ctx->store_id, "op", "flush", "modules", mods));
        log_info("control op=flush store=%llu", (unsigned long long)ctx->store_id);
    }
    if (m->reply_to) {
        r->store_id = ctx->store_id;
        net_reply_post(m->reply_to, m->reply_token, r);
        m->reply_to = NULL;
    } else {
        net_reply_free(r);
    }
}

/* ---- the jobs kind: slow work of a store on its blocking lanes ---- */

typedef struct job_msg_s {
    void (*run)(api_ctx_t *ctx, void *arg);
    void (*drop)(void *arg);
    void *arg;
} job_msg_t;

static void
job_dropped(act_msg_t *m)
{
    job_msg_t *j = (job_msg_t *)m->data;
    if (j && j->drop)
        j->drop(j->arg);
}

static _Atomic uint64_t job_rr;

shopd_rc_t
api_job_send(app_t *app, uint64_t store_id, void (*run)(api_ctx_t *ctx, void *arg),
             void (*drop)(void *arg), void *arg)
{
    job_msg_t *j = shopd_malloc(sizeof(*j));
    *j = (job_msg_t){run, drop, arg};
    /* Lanes 1.. of the store on the blocking pool, as for a blocking route: a
     * store's jobs take at most its share of the pool. */
    unsigned lanes = (unsigned)(app->cfg->blocking_threads + 1) / 2;
    lanes = lanes < 1 ? 1 : lanes > ACT_MAX_LANES - 1 ? ACT_MAX_LANES - 1 : lanes;
    uint64_t rr = atomic_fetch_add_explicit(&job_rr, 1, memory_order_relaxed);
    act_msg_t *m =
        act_msg_new(MSG_TYPE_JOB, ACT_ID(store_id, 1 + rr % lanes), (char *)j, sizeof(*j));
    m->on_drop = job_dropped;
    shopd_rc_t rc = act_send(app->blocking, m);
    if (rc != SHOPD_OK) {
        m->on_drop = NULL;
        act_msg_free(m); /* frees j, not arg: the caller keeps it */
    }
    return rc;
}

/* The store's snapshot from the tenant cache, else PostgreSQL. */
static bool
store_of(app_t *app, uint64_t store_id, store_snap_t *snap)
{
    char key[32];
    snprintf(key, sizeof(key), "id:%llu", (unsigned long long)store_id);
    if (store_cache_get(app->stores, key, snap) && snap->id != 0)
        return true;
    if (store_lookup(app, key, snap) == SHOPD_OK) {
        store_cache_put(app->stores, key, snap);
        return true;
    }
    return false;
}

/* The context a message of these kinds runs with: the store (NULL when it does
 * not exist), an arena and the worker's connections; no caller, no body. */
static api_ctx_t
kind_ctx(app_t *app, api_worker_t *ws, uint64_t store_id, act_msg_t *m, arena_t *arena,
         msg_env_t *env, int kind, const char *type, const store_snap_t *store)
{
    memset(env, 0, sizeof(*env));
    env->kind = kind;
    env->store_id = store_id;
    env->type = msg_str(type);
    return (api_ctx_t){.app = app,
                       .worker = ws,
                       .env = env,
                       .store_id = store_id,
                       .store = store,
                       .caller = &env->caller,
                       .arena = arena,
                       .msg = m};
}

bool
api_timer_take(app_t *app, api_worker_t *ws, uint64_t store_id, act_msg_t *m, arena_t *arena)
{
    if (m->type != MSG_TYPE_TIMER && m->type != MSG_TYPE_JOB && m->type != MSG_TYPE_CONTROL)
        return false;
    store_id = ACT_STORE_OF(store_id);
    store_snap_t snap;
    msg_env_t env;
    if (m->type == MSG_TYPE_CONTROL) {
        /* The tenant entry may be stale (that may be why we are flushing): ask
         * PostgreSQL whether the store still exists. */
        char key[32];
        snprintf(key, sizeof(key), "id:%llu", (unsigned long long)store_id);
        bool have = store_lookup(app, key, &snap) == SHOPD_OK;
        api_ctx_t ctx = kind_ctx(app, ws, store_id, m, arena, &env, MSG_KIND_CONTROL, "control",
                                 have ? &snap : NULL);
        control_run(&ctx, (const control_msg_t *)m->data, m);
        act_msg_free(m);
        return true;
    }
    bool have = store_of(app, store_id, &snap);
    if (m->type == MSG_TYPE_JOB) {
        /* A store deleted since (its jobs went with it) or unreachable: run
         * anyway with store NULL; the job reads its row and finds it or not. */
        job_msg_t *j = (job_msg_t *)m->data;
        api_ctx_t ctx =
            kind_ctx(app, ws, store_id, m, arena, &env, MSG_KIND_JOB, "job", have ? &snap : NULL);
        j->run(&ctx, j->arg);
        act_msg_free(m);
        return true;
    }
    timer_msg_t *t = (timer_msg_t *)m->data;
    if (have) {
        api_ctx_t ctx = kind_ctx(app, ws, store_id, m, arena, &env, MSG_KIND_TIMER, "timer", &snap);
        t->run(&ctx);
    }
    act_msg_free(m);
    return true;
}

/* ---- the ticker ---- */

static pthread_t ticker;
static pthread_mutex_t ticker_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t ticker_cond = PTHREAD_COND_INITIALIZER;
static bool ticker_stop, ticker_running;
static app_t *ticker_app; /* the start hooks ran (some may have failed): stop hooks run */

static void *
ticker_main(void *arg)
{
    app_t *app = arg;
    pthread_mutex_lock(&ticker_lock);
    while (!ticker_stop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        long ms = app->cfg->sweep_interval_ms;
        ts.tv_sec += ms / 1000;
        ts.tv_nsec += (ms % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&ticker_cond, &ticker_lock, &ts);
        if (ticker_stop)
            break;
        pthread_mutex_unlock(&ticker_lock);
        for (size_t i = 0; i < api_nmodules; i++)
            if (api_modules[i]->tick)
                api_modules[i]->tick(app);
        pthread_mutex_lock(&ticker_lock);
    }
    pthread_mutex_unlock(&ticker_lock);
    return NULL;
}

int
api_ticker_start(app_t *app)
{
    ticker_stop = false;
    if (pthread_create(&ticker, NULL, ticker_main, app) != 0)
        return -1;
    ticker_running = true;
    ticker_app = app; /* stop hooks accept a module that did not start */
    for (size_t i = 0; i < api_nmodules; i++)
        if (api_modules[i]->start && api_modules[i]->start(app) != 0) {
            log_error("cannot start: module %s", api_modules[i]->name);
            return -1;
        }
    return 0;
}

void
api_ticker_stop(void)
{
    if (!ticker_running)
        return;
    if (ticker_app)
        for (size_t i = api_nmodules; i-- > 0;)
            if (api_modules[i]->stop)
                api_modules[i]->stop(ticker_app);
    ticker_app = NULL;
    pthread_mutex_lock(&ticker_lock);
    ticker_stop = true;
    pthread_cond_signal(&ticker_cond);
    pthread_mutex_unlock(&ticker_lock);
    pthread_join(ticker, NULL);
    ticker_running = false;
}
