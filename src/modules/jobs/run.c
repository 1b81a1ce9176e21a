/*
 * run.c: one stream entry on a blocking lane. The job's row decides: the entry
 * runs only if it takes the row (queued, or running but taken by a consumer
 * longer ago than the visibility timeout: that consumer is presumed dead).
 * Any other entry for the job is a duplicate (the relay sent it twice, or it was
 * claimed from a consumer that finished after all): acknowledged and counted,
 * nothing done. After the effect the row says done, ready again at a later
 * time (a retry, with backoff and jitter), or dead (a dead letter); then the
 * entry is XACKed. A crash anywhere leaves the entry pending and the row
 * queued or running, so nothing is lost: XAUTOCLAIM or the reconciler brings
 * it back.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jobs_priv.h"
#include "shopd/log.h"
#include "shopd/media.h"

jobs_stats_t jobs_stats;

void
jobs_drop(void *arg)
{
    /* The entry stays pending in its group; XAUTOCLAIM hands it out again. */
    shopd_free(arg);
    atomic_fetch_sub_explicit(&jobs_stats.inflight, 1, memory_order_relaxed);
    jobs_slot_freed();
}

static void
ack(api_ctx_t *ctx, const jobs_task_t *t)
{
    redisReply *x = kv_command(ctx->worker->kv, "XACK " JOBS_STREAM_PREFIX "%s " JOBS_GROUP " %s",
                               t->kind, t->entry);
    if (x)
        freeReplyObject(x);
}

static double
jitter(void)
{
    char hex[9];
    shopd_random_hex(hex, 4);
    return (double)strtoul(hex, NULL, 16) / 4294967296.0;
}

/* Writes the outcome into the job's row; false if the database could not be
 * told (the entry then stays pending and the job runs again later). */
static bool
finish(api_ctx_t *ctx, db_conn_t *c, const jobs_task_t *t, int attempts, shopd_rc_t rc,
       const char *err)
{
    char sid[24], jid[24], ms[24];
    snprintf(sid, sizeof(sid), "%llu", (unsigned long long)t->store_id);
    snprintf(jid, sizeof(jid), "%llu", (unsigned long long)t->job_id);
    PGresult *r;
    if (rc == SHOPD_OK) {
        const char *p[] = {sid, jid};
        /* The payload loses its secrets once they were delivered (a reset token
         * lives in the outbox only until its e-mail is sent). */
        r = db_exec(c, "jobs_done",
                    "WITH j AS (UPDATE jobs SET state = 'done', finished_at = now(), last_error = "
                    "NULL WHERE store_id = $1 AND id = $2 AND state = 'running' RETURNING "
                    "outbox_id, kind) "
                    "UPDATE outbox o SET payload = o.payload - ARRAY['token', 'url'] FROM j WHERE "
                    "o.store_id = $1 "
                    "AND o.id = j.outbox_id AND j.kind = 'email' AND o.payload ? 'token'",
                    2, p);
        atomic_fetch_add_explicit(&jobs_stats.done, 1, memory_order_relaxed);
    } else {
        const char *sched = strcmp(t->kind, "webhook") == 0 ? ctx->app->cfg->webhook_retry_schedule
                                                            : ctx->app->cfg->jobs_retry_schedule;
        long long wait = rc == SHOPD_AGAIN ? jobs_backoff_ms(sched, attempts, jitter()) : -1;
        snprintf(ms, sizeof(ms), "%lld", wait < 0 ? 0 : wait);
        const char *p[] = {sid, jid, wait < 0 ? "dead" : "ready", ms, err};
        r = db_exec(c, "jobs_fail",
                    "UPDATE jobs SET state = $3, last_error = left($5, 1000), next_at = now() + "
                    "$4::bigint * interval '1 millisecond', finished_at = CASE WHEN $3 = 'dead' "
                    "THEN now() END WHERE store_id = $1 AND id = $2 AND state = 'running'",
                    5, p);
        if (wait < 0) {
            atomic_fetch_add_explicit(&jobs_stats.dead, 1, memory_order_relaxed);
            log_warn("jobs: job %llu of store %llu (%s) is a dead letter after %d attempts: %s",
                     (unsigned long long)t->job_id, (unsigned long long)t->store_id, t->kind,
                     attempts, err);
            char at[16];
            snprintf(at, sizeof(at), "%d", attempts);
            const char *argv[] = {"XADD", JOBS_STREAM_DEAD, "MAXLEN",   "~",   JOBS_STREAM_MAXLEN,
                                  "*",    "store",          sid,        "job", jid,
                                  "kind", t->kind,          "attempts", at,    "error",
                                  err};
            redisReply *x = kv_commandv(ctx->worker->kv, 16, argv, NULL);
            if (x)
                freeReplyObject(x);
            if (rc == SHOPD_AGAIN && strcmp(t->kind, "webhook") == 0)
                jobs_webhook_dead(ctx, c, t->job_id);
        } else {
            atomic_fetch_add_explicit(&jobs_stats.retried, 1, memory_order_relaxed);
        }
    }
    bool ok = db_result_rc(r) == SHOPD_OK;
    PQclear(r);
    return ok;
}

void
jobs_run(api_ctx_t *ctx, void *arg)
{
    jobs_task_t *t = arg;
    db_conn_t *c = db_acquire(ctx->app->db, 5000);
    if (c == NULL)
        goto out; /* pending: taken over later */
    char sid[24], jid[24], vis[24];
    snprintf(sid, sizeof(sid), "%llu", (unsigned long long)t->store_id);
    snprintf(jid, sizeof(jid), "%llu", (unsigned long long)t->job_id);
    snprintf(vis, sizeof(vis), "%d", ctx->app->cfg->jobs_visibility_ms);
    const char *p[] = {sid, jid, vis};
    PGresult *r = db_exec(
        c, "jobs_take",
        "WITH j AS (UPDATE jobs SET state = 'running', started_at = now(), attempts = attempts + "
        "1 WHERE store_id = $1 AND id = $2 AND (state = 'queued' OR (state = 'running' AND "
        "started_at < now() - $3::int * interval '1 millisecond')) RETURNING kind, attempts, "
        "outbox_id, endpoint_id) "
        "SELECT j.kind, j.attempts, j.outbox_id, j.endpoint_id, o.kind, o.payload::text, "
        "extract(epoch FROM o.created_at)::bigint FROM j JOIN outbox o ON o.store_id = $1 AND "
        "o.id = j.outbox_id",
        3, p);
    shopd_rc_t rc = db_result_rc(r);
    if (rc != SHOPD_OK) {
        PQclear(r);
        goto out; /* pending: taken over later */
    }
    if (PQntuples(r) == 0) {
        /* Done, dead, gone with its store, or another consumer has it now. */
        PQclear(r);
        atomic_fetch_add_explicit(&jobs_stats.duplicates, 1, memory_order_relaxed);
        ack(ctx, t);
        goto out;
    }
    int attempts = atoi(PQgetvalue(r, 0, 1));
    char err[512] = "";
    char okind[64] = "";
    if (strcmp(PQgetvalue(r, 0, 0), "noop") == 0) {
        rc = SHOPD_OK; /* the machinery alone: bench/jobs.sh */
    } else if (strcmp(PQgetvalue(r, 0, 0), "email") == 0) {
        rc = jobs_mail_job(ctx, c, t->job_id, PQgetvalue(r, 0, 5), err, sizeof(err));
    } else if (strcmp(PQgetvalue(r, 0, 0), "media") == 0) {
        snprintf(okind, sizeof(okind), "%s", PQgetvalue(r, 0, 4));
        rc = media_job(ctx, c, okind, PQgetvalue(r, 0, 5), err, sizeof(err));
        if (rc != SHOPD_OK && rc != SHOPD_AGAIN)
            media_job_dead(ctx, c, okind, PQgetvalue(r, 0, 5));
        else if (rc == SHOPD_AGAIN && jobs_backoff_ms(ctx->app->cfg->jobs_retry_schedule,
                                                      atoi(PQgetvalue(r, 0, 1)), 0.5) < 0)
            media_job_dead(ctx, c, okind, PQgetvalue(r, 0, 5)); /* its last attempt */
    } else {
        rc = jobs_webhook_job(ctx, c, t->job_id, strtoull(PQgetvalue(r, 0, 2), NULL, 10),
                              strtoull(PQgetvalue(r, 0, 3), NULL, 10), attempts,
                              PQgetvalue(r, 0, 4), PQgetvalue(r, 0, 5),
                              strtoll(PQgetvalue(r, 0, 6), NULL, 10), err, sizeof(err));
    }
    PQclear(r);
    if (finish(ctx, c, t, attempts, rc, err[0] ? err : "failed"))
        ack(ctx, t);
out:
    db_release(c);
    jobs_drop(t);
}

/* ---- the retry schedule ---- */

bool
jobs_schedule_valid(const char *s)
{
    if (s == NULL || *s == '\0')
        return false;
    int n = 0;
    while (*s) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < 1 || v > 604800 || ++n > 32)
            return false;
        s = end;
        if (*s == ',' && s[1] != '\0')
            s++;
        else if (*s != '\0')
            return false;
    }
    return true;
}

long long
jobs_backoff_ms(const char *s, int attempt, double r)
{
    if (!jobs_schedule_valid(s) || attempt < 1)
        return -1;
    for (int i = 1;; i++) {
        char *end;
        long v = strtol(s, &end, 10);
        if (i == attempt) {
            /* +-20 %: retries of jobs that failed together spread out. */
            double f = 0.8 + 0.4 * (r < 0 ? 0 : r >= 1 ? 0.999999 : r);
            return (long long)((double)v * 1000.0 * f);
        }
        s = end;
        if (*s != ',')
            return -1;
        s++;
    }
}
