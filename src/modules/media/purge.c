/*
 * purge.c: a deleted store's media objects. Deleting a store deletes its rows
 * at once (cascades), its outbox and jobs with them, so its objects cannot be
 * one of its own jobs: the stores' AFTER DELETE trigger (sql/0019) writes a
 * media_store_purges row in the deleting transaction instead, and this file
 * runs those rows like jobs. The ticker (media_tick, every
 * SHOPD_SWEEP_INTERVAL_MS) takes the due rows (SKIP LOCKED: one process each)
 * and sends each to the blocking pool (api_job_send on the deleted store's
 * lanes: never on the ticker, so a slow disk or S3 holds nothing), where
 * purge_run deletes every object under "s<store>/" (media_store_t.purge) and
 * then the row. A failure is retried on SHOPD_JOBS_RETRY_SCHEDULE; after the
 * last retry the row stays dead with its error (and a log line) for
 * operators. Only processes that run jobs (SHOPD_JOBS_CONSUME) run purges.
 * A row taken by a process that died before finishing is taken
 * again after SHOPD_JOBS_VISIBILITY_MS; a purge that runs twice finds nothing
 * the second time.
 *
 * What cannot leave an object behind: an upload locks its product (FOR SHARE)
 * before writing, and the renditions job its image, so a store deletion waits
 * for a write in flight and its purge comes after; a write that comes after
 * the deletion finds no row and writes nothing.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "media_priv.h"
#include "shopd/jobs.h"
#include "shopd/log.h"

#define PURGE_BATCH "16"

typedef struct purge_task_s {
    uint64_t store_id;
    int attempts;
} purge_task_t;

static double
jitter(void)
{
    char hex[9];
    shopd_random_hex(hex, 4);
    return (double)strtoul(hex, NULL, 16) / 4294967296.0;
}

static void
purge_run(api_ctx_t *ctx, void *arg)
{
    purge_task_t *t = arg;
    const cfg_t *cfg = ctx->app->cfg;
    char prefix[32], sid[24], att[16];
    snprintf(prefix, sizeof(prefix), "s%llu/", (unsigned long long)t->store_id);
    snprintf(sid, sizeof(sid), "%llu", (unsigned long long)t->store_id);
    snprintf(att, sizeof(att), "%d", t->attempts);
    shopd_rc_t rc = media_storage()->purge(prefix);
    db_conn_t *c = db_acquire(ctx->app->db, 5000);
    if (c == NULL) {
        /* The row stays running: taken again after the visibility timeout. */
        shopd_free(t);
        return;
    }
    PGresult *r;
    if (rc == SHOPD_OK) {
        const char *p[] = {sid, att};
        r = db_exec(c, "media_purge_done",
                    "DELETE FROM media_store_purges WHERE deleted_store_id = $1 AND state = "
                    "'running' AND attempts = $2::int",
                    2, p);
    } else {
        long long wait = jobs_backoff_ms(cfg->jobs_retry_schedule, t->attempts, jitter());
        char ms[24], err[128];
        snprintf(ms, sizeof(ms), "%lld", wait < 0 ? 0 : wait);
        snprintf(err, sizeof(err), "cannot delete the objects under %s (%s)", prefix,
                 shopd_rc_name(rc));
        if (wait < 0)
            log_warn("media: the purge of deleted store %s failed %d times, given up: %s", sid,
                     t->attempts, err);
        const char *p[] = {sid, att, wait < 0 ? "dead" : "ready", ms, err};
        r = db_exec(c, "media_purge_fail",
                    "UPDATE media_store_purges SET state = $3, last_error = $5, next_at = now() "
                    "+ $4::bigint * interval '1 millisecond' WHERE deleted_store_id = $1 AND "
                    "state = 'running' AND attempts = $2::int",
                    5, p);
    }
    PQclear(r);
    db_release(c);
    shopd_free(t);
}

static void
purge_drop(void *arg)
{
    /* Dropped at stop: the row stays running and is taken again later. */
    shopd_free(arg);
}

void
media_tick(app_t *app)
{
    /* Like jobs: a process told to run none (SHOPD_JOBS_CONSUME=false) leaves
     * purges to the ones that run them. */
    if (!app->cfg->jobs_consume)
        return;
    db_conn_t *c = db_acquire(app->db, 1000);
    if (c == NULL)
        return;
    char vis[24];
    snprintf(vis, sizeof(vis), "%d", app->cfg->jobs_visibility_ms);
    const char *p[] = {vis};
    PGresult *r = db_exec(
        c, "media_purge_take",
        "UPDATE media_store_purges SET state = 'running', attempts = attempts + 1, started_at = "
        "now() WHERE deleted_store_id IN (SELECT deleted_store_id FROM media_store_purges WHERE "
        "(state = 'ready' AND next_at <= now()) OR (state = 'running' AND started_at < now() - "
        "$1::int * interval '1 millisecond') ORDER BY next_at LIMIT " PURGE_BATCH
        " FOR UPDATE SKIP LOCKED) RETURNING deleted_store_id, attempts",
        1, p);
    int n = db_result_rc(r) == SHOPD_OK ? PQntuples(r) : 0;
    for (int i = 0; i < n; i++) {
        purge_task_t *t = shopd_malloc(sizeof(*t));
        t->store_id = strtoull(PQgetvalue(r, i, 0), NULL, 10);
        t->attempts = atoi(PQgetvalue(r, i, 1));
        if (api_job_send(app, t->store_id, purge_run, purge_drop, t) != SHOPD_OK) {
            /* The lane is full: back to ready, this take not counted. */
            const char *q[] = {PQgetvalue(r, i, 0)};
            PQclear(db_exec(c, "media_purge_untake",
                            "UPDATE media_store_purges SET state = 'ready', attempts = attempts "
                            "- 1 WHERE deleted_store_id = $1 AND state = 'running'",
                            1, q));
            shopd_free(t);
        }
    }
    PQclear(r);
    db_release(c);
}
