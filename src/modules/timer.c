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

bool
api_timer_take(app_t *app, api_worker_t *ws, uint64_t store_id, act_msg_t *m, arena_t *arena)
{
    if (m->type != MSG_TYPE_TIMER)
        return false;
    timer_msg_t *t = (timer_msg_t *)m->data;
    char key[32];
    snprintf(key, sizeof(key), "id:%llu", (unsigned long long)store_id);
    store_snap_t snap;
    bool have = store_cache_get(app->stores, key, &snap) && snap.id != 0;
    if (!have && store_lookup(app, key, &snap) == SHOPD_OK) {
        store_cache_put(app->stores, key, &snap);
        have = true;
    }
    if (have) {
        msg_env_t env;
        memset(&env, 0, sizeof(env));
        env.kind = MSG_KIND_TIMER;
        env.store_id = store_id;
        env.type = msg_str("timer");
        api_ctx_t ctx = {.app = app,
                         .worker = ws,
                         .env = &env,
                         .store_id = store_id,
                         .store = &snap,
                         .caller = &env.caller,
                         .arena = arena,
                         .msg = m};
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
    return 0;
}

void
api_ticker_stop(void)
{
    if (!ticker_running)
        return;
    pthread_mutex_lock(&ticker_lock);
    ticker_stop = true;
    pthread_cond_signal(&ticker_cond);
    pthread_mutex_unlock(&ticker_lock);
    pthread_join(ticker, NULL);
    ticker_running = false;
}
