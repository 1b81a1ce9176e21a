/*
 * system.c: the system endpoints: /healthz and /metrics (answered on the I/O
 * thread) and /readyz (on a worker: it asks PostgreSQL and Redis).
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api_int.h"
#include "shopd/auth.h"
#include "shopd/catalog.h"
#include "shopd/log.h"

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
    if (rd == SHOPD_OK)
        catalog_cache_recover(ctx->worker->kv);
    bool ok = pg == SHOPD_OK && rd == SHOPD_OK;
    net_reply_t *r = api_json(ok ? SHOPD_OK : SHOPD_UNAVAILABLE,
                              json_pack("{s:s, s:s, s:s}", "status", ok ? "ready" : "not_ready",
                                        "postgres", pg == SHOPD_OK ? "ok" : "unavailable", "redis",
                                        rd == SHOPD_OK ? "ok" : "unavailable"));
    if (!ok)
        net_reply_add_header(r, "Retry-After", "1");
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
    char extra[8192];
    int n = snprintf(
        extra, sizeof(extra),
        "# HELP shopd_actors Live store actors.\n# TYPE shopd_actors gauge\nshopd_actors %llu\n"
        "# HELP shopd_mailbox_depth Messages queued in all mailboxes.\n# TYPE shopd_mailbox_depth "
        "gauge\nshopd_mailbox_depth %llu\n"
        "# HELP shopd_mailbox_depth_max Deepest mailbox now.\n# TYPE shopd_mailbox_depth_max "
        "gauge\nshopd_mailbox_depth_max %llu\n"
        "# HELP shopd_actor_messages_total Messages handled.\n# TYPE shopd_actor_messages_total "
        "counter\nshopd_actor_messages_total %llu\n"
        "# HELP shopd_actor_turns_total Actor turns (handler calls).\n# TYPE "
        "shopd_actor_turns_total counter\nshopd_actor_turns_total %llu\n"
        "# HELP shopd_mailbox_rejected_total Sends refused on a full mailbox.\n# TYPE "
        "shopd_mailbox_rejected_total counter\nshopd_mailbox_rejected_total %llu\n"
        "# HELP shopd_workers_busy Workers running a turn.\n# TYPE shopd_workers_busy "
        "gauge\nshopd_workers_busy %llu\n"
        "# HELP shopd_workers Worker threads.\n# TYPE shopd_workers gauge\nshopd_workers %d\n"
        "# HELP shopd_db_pool_size PostgreSQL connections in the pool.\n# TYPE shopd_db_pool_size "
        "gauge\nshopd_db_pool_size %d\n"
        "# HELP shopd_db_pool_in_use PostgreSQL connections lent out.\n# TYPE shopd_db_pool_in_use "
        "gauge\nshopd_db_pool_in_use %d\n"
        "# HELP shopd_db_pool_waiting Threads waiting for a PostgreSQL connection.\n# TYPE "
        "shopd_db_pool_waiting gauge\nshopd_db_pool_waiting %d\n"
        "# HELP shopd_db_pool_timeouts_total Acquires that gave up.\n# TYPE "
        "shopd_db_pool_timeouts_total counter\nshopd_db_pool_timeouts_total %llu\n"
        "# HELP shopd_db_reconnects_total Reconnects after a lost connection.\n# TYPE "
        "shopd_db_reconnects_total counter\nshopd_db_reconnects_total %llu\n"
        "# HELP shopd_tenant_cache_entries Cached store lookups.\n# TYPE "
        "shopd_tenant_cache_entries gauge\nshopd_tenant_cache_entries %zu\n"
        "# HELP shopd_blocking_tasks_total Tasks run by the blocking pool.\n# TYPE "
        "shopd_blocking_tasks_total counter\nshopd_blocking_tasks_total %llu\n"
        "# HELP shopd_blocking_queued Tasks waiting for the blocking pool.\n# TYPE "
        "shopd_blocking_queued gauge\nshopd_blocking_queued %llu\n"
        "# HELP shopd_blocking_busy Blocking threads running a task.\n# TYPE shopd_blocking_busy "
        "gauge\nshopd_blocking_busy %llu\n"
        "# HELP shopd_blocking_rejected_total Tasks refused on a full queue.\n# TYPE "
        "shopd_blocking_rejected_total counter\nshopd_blocking_rejected_total %llu\n"
        "# HELP shopd_blocking_threads Threads of the blocking pool.\n# TYPE "
        "shopd_blocking_threads gauge\nshopd_blocking_threads %d\n",
        (unsigned long long)as.actors, (unsigned long long)as.queued,
        (unsigned long long)as.max_depth, (unsigned long long)as.processed,
        (unsigned long long)as.turns, (unsigned long long)as.rejected,
        (unsigned long long)as.busy_workers, as.workers, ds.size, ds.in_use, ds.waiting,
        (unsigned long long)ds.timeouts, (unsigned long long)ds.resets,
        store_cache_size(app->stores), (unsigned long long)bs.processed,
        (unsigned long long)bs.queued, (unsigned long long)bs.busy_workers,
        (unsigned long long)bs.rejected, bs.workers);
    if (n > 0 && (size_t)n < sizeof(extra))
        n += (int)api_edge_metrics(extra + n, sizeof(extra) - (size_t)n);
    for (size_t i = 0; i < api_nmodules; i++)
        if (api_modules[i]->metrics && (size_t)n < sizeof(extra))
            n += (int)api_modules[i]->metrics(extra + n, sizeof(extra) - (size_t)n);
    net_reply_t *r = api_empty(SHOPD_OK);
    r->body = shopd_realloc(text, len + (size_t)n + 1);
    memcpy(r->body + len, extra, (size_t)n);
    r->body[len + (size_t)n] = '\0';
    r->len = len + (size_t)n;
    r->content_type = "text/plain; version=0.0.4";
    return r;
}

/* One row per line: a table to read across. */
/* clang-format off */
static const api_route_t system_routes[] = {
    /* method, path, name, access, run class, flags, inline handler, worker handler, batch handler, query, rate class */
    {"GET", "/healthz", "healthz", API_PUBLIC, API_ANY, API_INLINE, api_healthz, NULL, NULL, NULL, API_RATE_EXEMPT},
    {"GET", "/readyz", "readyz", API_PUBLIC, API_ANY, 0, NULL, api_readyz, NULL, NULL, API_RATE_EXEMPT},
    {"GET", "/metrics", "metrics", API_PUBLIC, API_ANY, API_INLINE, api_metrics, NULL, NULL, NULL, API_RATE_EXEMPT},
};
/* clang-format on */

const api_module_t api_system_module = {
    .name = "system",
    .routes = system_routes,
    .nroutes = SHOPD_ARRAY_LEN(system_routes),
    .init = api_edge_init,
    .fini = api_edge_fini,
};
