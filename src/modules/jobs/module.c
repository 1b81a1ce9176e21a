/*
 * module.c: the jobs module's descriptor: its routes (webhook endpoints and
 * their deliveries, dead letters), its start (settings checked, libcurl set
 * up), the pump started with the ticker and stopped before the actors, the
 * retention sweep, and its lines of /metrics.
 */
#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jobs_priv.h"

static const char *const q_page[] = {"limit", "cursor", NULL};
static const char *const q_dead[] = {"limit", "cursor", "state", NULL};

/* One row per line: a table to read across. */
/* clang-format off */
static const api_route_t jobs_routes[] = {
    /* method, path, name, access, run class, flags, inline handler, worker handler, batch handler, query */
    {"GET", "/api/v1/admin/webhooks", "webhooks.list", API_STORE_ADMIN, API_ANY, API_STORE, NULL, jobs_h_hook_list, NULL, q_page},
    {"POST", "/api/v1/admin/webhooks", "webhooks.create", API_STORE_ADMIN, API_ORDERED, API_STORE | API_BODY, NULL, jobs_h_hook_create, NULL, NULL},
    {"GET", "/api/v1/admin/webhooks/:id", "webhooks.get", API_STORE_ADMIN, API_ANY, API_STORE, NULL, jobs_h_hook_get, NULL, NULL},
    {"PATCH", "/api/v1/admin/webhooks/:id", "webhooks.update", API_STORE_ADMIN, API_ORDERED, API_STORE | API_BODY, NULL, jobs_h_hook_update, NULL, NULL},
    {"DELETE", "/api/v1/admin/webhooks/:id", "webhooks.delete", API_STORE_ADMIN, API_ORDERED, API_STORE, NULL, jobs_h_hook_delete, NULL, NULL},
    {"GET", "/api/v1/admin/webhooks/:id/deliveries", "webhooks.deliveries", API_STORE_ADMIN, API_ANY, API_STORE, NULL, jobs_h_hook_deliveries, NULL, q_page},
    {"POST", "/api/v1/admin/webhooks/:id/replay", "webhooks.replay", API_STORE_ADMIN, API_ORDERED, API_STORE | API_BODY, NULL, jobs_h_hook_replay, NULL, NULL},
    {"GET", "/api/v1/admin/jobs/dead-letters", "jobs.dead_letters.list", API_STORE_ADMIN, API_ANY, API_STORE, NULL, jobs_h_dead_list, NULL, q_dead},
    {"GET", "/api/v1/admin/jobs/dead-letters/:id", "jobs.dead_letters.get", API_STORE_ADMIN, API_ANY, API_STORE, NULL, jobs_h_dead_get, NULL, NULL},
    {"POST", "/api/v1/admin/jobs/dead-letters/:id/retry", "jobs.dead_letters.retry", API_STORE_ADMIN, API_ORDERED, API_STORE, NULL, jobs_h_dead_retry, NULL, NULL},
    {"DELETE", "/api/v1/admin/jobs/dead-letters/:id", "jobs.dead_letters.discard", API_STORE_ADMIN, API_ORDERED, API_STORE, NULL, jobs_h_dead_discard, NULL, NULL},
};
/* clang-format on */

static int
jobs_init(app_t *app, char *err, size_t errlen)
{
    if (!jobs_schedule_valid(app->cfg->jobs_retry_schedule)) {
        snprintf(err, errlen,
                 "SHOPD_JOBS_RETRY_SCHEDULE must be 1 to 32 seconds 1..604800, s,s,...");
        return -1;
    }
    if (!jobs_schedule_valid(app->cfg->webhook_retry_schedule)) {
        snprintf(err, errlen,
                 "SHOPD_WEBHOOK_RETRY_SCHEDULE must be 1 to 32 seconds 1..604800, s,s,...");
        return -1;
    }
    if (jobs_mail_init(app, err, errlen) != 0)
        return -1;
    if (jobs_reseal_rows(app, err, errlen) != 0)
        return -1;
    /* Once, before any thread: libcurl's global state is not thread-safe to set up. */
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        snprintf(err, errlen, "libcurl did not initialise");
        return -1;
    }
    return 0;
}

static void
jobs_fini(app_t *app)
{
    (void)app;
    curl_global_cleanup();
}

/* Retention (the ticker, every SHOPD_SWEEP_INTERVAL_MS): delivery attempts and
 * finished jobs are kept 30 days, in bounded deletes; dead and discarded jobs
 * stay until an operator acts (nothing unfinished is ever deleted). */
static void
jobs_tick(app_t *app)
{
    db_conn_t *c = db_acquire(app->db, 1000);
    if (c == NULL)
        return;
    static const char *const sweeps[][2] = {
        {"jobs_sweep_deliveries",
         "DELETE FROM webhook_deliveries WHERE (store_id, id) IN (SELECT store_id, id FROM "
         "webhook_deliveries WHERE created_at < now() - interval '30 days' LIMIT 1000)"},
        {"jobs_sweep_done",
         "DELETE FROM jobs WHERE (store_id, id) IN (SELECT store_id, id FROM jobs WHERE state = "
         "'done' AND finished_at < now() - interval '30 days' LIMIT 1000)"},
    };
    for (size_t i = 0; i < SHOPD_ARRAY_LEN(sweeps); i++)
        for (int round = 0; round < 10; round++) {
            PGresult *r = db_exec(c, sweeps[i][0], sweeps[i][1], 0, NULL);
            bool more = db_result_rc(r) == SHOPD_OK && atoi(PQcmdTuples(r)) == 1000;
            PQclear(r);
            if (!more)
                break;
        }
    db_release(c);
}

/* ---- /metrics ---- */

static pthread_mutex_t counts_lock = PTHREAD_MUTEX_INITIALIZER;
static char c_kind[32][16], c_state[32][16];
static long long c_n[32];
static size_t c_len;

void
jobs_counts_set(const char (*kinds)[16], const char (*states)[16], const long long *n, size_t k)
{
    pthread_mutex_lock(&counts_lock);
    c_len = k > 32 ? 32 : k;
    for (size_t i = 0; i < c_len; i++) {
        memcpy(c_kind[i], kinds[i], 16);
        memcpy(c_state[i], states[i], 16);
        c_n[i] = n[i];
    }
    pthread_mutex_unlock(&counts_lock);
}

#define LOAD(f) ((unsigned long long)atomic_load_explicit(&jobs_stats.f, memory_order_relaxed))

size_t
jobs_metrics(char *buf, size_t cap)
{
    size_t k = 0;
#define PUT(...)                                                                                   \
    do {                                                                                           \
        int w_ = snprintf(buf + k, cap > k ? cap - k : 0, __VA_ARGS__);                            \
        if (w_ > 0)                                                                                \
            k = k + (size_t)w_ < cap ? k + (size_t)w_ : cap;                                       \
    } while (0)
    PUT("# HELP shopd_jobs Open jobs by kind and state (all stores; refreshed about once a "
        "second).\n"
        "# TYPE shopd_jobs gauge\n");
    pthread_mutex_lock(&counts_lock);
    for (size_t i = 0; i < c_len; i++)
        PUT("shopd_jobs{kind=\"%s\",state=\"%s\"} %lld\n", c_kind[i], c_state[i], c_n[i]);
    pthread_mutex_unlock(&counts_lock);
    PUT("# HELP shopd_jobs_events_total What this process's relay and consumers did.\n"
        "# TYPE shopd_jobs_events_total counter\n"
        "shopd_jobs_events_total{event=\"relayed\"} %llu\n"
        "shopd_jobs_events_total{event=\"queued\"} %llu\n"
        "shopd_jobs_events_total{event=\"done\"} %llu\n"
        "shopd_jobs_events_total{event=\"retried\"} %llu\n"
        "shopd_jobs_events_total{event=\"dead\"} %llu\n"
        "shopd_jobs_events_total{event=\"duplicate\"} %llu\n"
        "shopd_jobs_events_total{event=\"claimed\"} %llu\n"
        "shopd_jobs_events_total{event=\"requeued\"} %llu\n"
        "shopd_jobs_events_total{event=\"relay_error\"} %llu\n"
        "shopd_jobs_events_total{event=\"take_batch\"} %llu\n"
        "shopd_jobs_events_total{event=\"finish_batch\"} %llu\n"
        "# HELP shopd_jobs_inflight Jobs running on this process's blocking pool.\n"
        "# TYPE shopd_jobs_inflight gauge\nshopd_jobs_inflight %ld\n",
        LOAD(relayed), LOAD(queued), LOAD(done), LOAD(retried), LOAD(dead), LOAD(duplicates),
        LOAD(claimed), LOAD(requeued), LOAD(relay_errors), LOAD(take_batches), LOAD(finish_batches),
        atomic_load_explicit(&jobs_stats.inflight, memory_order_relaxed));
#undef PUT
    return k;
}

const api_module_t jobs_module = {
    .name = "jobs",
    .routes = jobs_routes,
    .nroutes = SHOPD_ARRAY_LEN(jobs_routes),
    .init = jobs_init,
    .fini = jobs_fini,
    .tick = jobs_tick,
    .metrics = jobs_metrics,
    .start = jobs_pump_start,
    .stop = jobs_pump_stop,
};
