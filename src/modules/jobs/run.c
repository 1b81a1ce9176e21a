/*
 * run.c: jobs in batches. The pump reads stream entries and takes their jobs'
 * rows in one statement (jobs_take_batch): a row is taken if it is queued, or
 * running but taken by a consumer longer ago than the visibility timeout (that
 * consumer is presumed dead); the same statement reads what the runner needs
 * (the outbox row, and an e-mail's shop and order). Any other entry for a job
 * is a duplicate (the relay sent it twice, or it was claimed from a consumer
 * that finished after all): acknowledged and counted, nothing done. Each taken
 * job runs on one of its store's blocking lanes (jobs_run): the effect alone.
 * Its outcome (done, ready again at a later time: a retry with backoff and
 * jitter, or dead: a dead letter) joins a queue that one runner at a time
 * writes, whole, in one statement, then XACKs (group commit: while one batch is
 * written the next gathers). A crash anywhere leaves the entry pending and the
 * row queued or running, so nothing is lost: XAUTOCLAIM or the reconciler
 * brings it back.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jobs_priv.h"
#include "shopd/log.h"
#include "shopd/media.h"

jobs_stats_t jobs_stats;

/* The most outcomes one statement writes (the rest wait for the next). */
#define FINISH_BATCH 500

/* ---- PostgreSQL array literals ---- */

typedef struct lit_s {
    char *p;
    size_t n, cap;
} lit_t;

static void
lit_put(lit_t *l, const char *s, size_t k)
{
    if (l->n + k + 2 > l->cap) {
        l->cap = (l->n + k + 2) * 2;
        l->p = realloc(l->p, l->cap);
        if (l->p == NULL)
            abort();
    }
    memcpy(l->p + l->n, s, k);
    l->n += k;
    l->p[l->n] = '\0';
}

/* Adds one element: an id as is, text quoted with its quotes and backslashes
 * escaped (so an error line cannot break the literal). */
static void
lit_id(lit_t *l, uint64_t v)
{
    char b[24];
    int k = snprintf(b, sizeof(b), "%s%llu", l->n > 1 ? "," : "", (unsigned long long)v);
    lit_put(l, b, (size_t)k);
}

static void
lit_text(lit_t *l, const char *s)
{
    lit_put(l, l->n > 1 ? ",\"" : "\"", l->n > 1 ? 2 : 1);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            lit_put(l, "\\", 1);
        lit_put(l, s, 1);
    }
    lit_put(l, "\"", 1);
}

static void
lit_open(lit_t *l)
{
    *l = (lit_t){0};
    lit_put(l, "{", 1);
}

/* ---- the take, for a batch (the pump) ---- */

void
jobs_task_free(jobs_task_t *t)
{
    if (t == NULL)
        return;
    shopd_free(t->payload);
    shopd_free(t->facts);
    shopd_free(t);
}

static int
by_job(const void *a, const void *b)
{
    const jobs_task_t *x = *(jobs_task_t *const *)a, *y = *(jobs_task_t *const *)b;
    return x->job_id < y->job_id ? -1 : x->job_id > y->job_id;
}

/* The rows of the pairs ($1[k], $2[k]), named by ctid: a lateral probe of the
 * primary key per pair (a nested loop whatever the estimates), then a TID
 * scan. Neither a join against unnest() of the pairs (estimated at 100 rows,
 * it can become a sequential scan of the whole table) nor store_id = ANY and
 * id = ANY (the index probes every store with every id: 20 stores and 50 jobs
 * were 1,000 probes, 6.7 ms on 300,000 jobs). A row updated by someone else
 * meanwhile is skipped (its ctid no longer matches): taken by another consumer,
 * or put back by the reconciler, so not ours now.
 *
 * The statements naming pairs are planned at every execution (unnamed, not
 * prepared). A prepared statement keeps the generic plan it made at its sixth
 * run, and in a new database that is made while jobs and outbox hold a few
 * hundred rows: seen in a fresh cluster, the take kept a hash join over a
 * sequential scan of jobs (77 ms a take after 15 s of checkouts, a whole core
 * of PostgreSQL). Planned with its arrays as constants, the statement is costed
 * for the tables as they are and the batch as it is (about 0.2 ms). */
#define PAIRS_WHERE(t)                                                                             \
    t ".ctid = ANY (ARRAY(SELECT x.ctid FROM unnest($1::bigint[], $2::bigint[]) AS u (s, i) "      \
      "CROSS JOIN LATERAL (SELECT ctid FROM jobs WHERE store_id = u.s AND id = u.i) AS x))"

shopd_rc_t
jobs_take_batch(db_conn_t *c, int visibility_ms, jobs_task_t **ts, size_t n, bool *taken)
{
    for (size_t i = 0; i < n; i++)
        taken[i] = false;
    if (n == 0)
        return SHOPD_OK;
    /* Sorted by job so a row maps back to its entry; of two entries of one job
     * in the batch, the second is a duplicate. */
    jobs_task_t **sorted = shopd_malloc(n * sizeof(*sorted));
    memcpy(sorted, ts, n * sizeof(*sorted));
    qsort(sorted, n, sizeof(*sorted), by_job);
    lit_t sids, jids;
    lit_open(&sids);
    lit_open(&jids);
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && sorted[i]->job_id == sorted[i - 1]->job_id)
            continue;
        lit_id(&sids, sorted[i]->store_id);
        lit_id(&jids, sorted[i]->job_id);
    }
    lit_put(&sids, "}", 1);
    lit_put(&jids, "}", 1);
    char vis[24];
    snprintf(vis, sizeof(vis), "%d", visibility_ms);
    const char *p[] = {sids.p, jids.p, vis};
    PGresult *r = db_exec(
        c, NULL /* planned each time: see PAIRS_WHERE */,
        "WITH j AS (UPDATE jobs j SET state = 'running', started_at = now(), attempts = attempts + "
        "1 WHERE " PAIRS_WHERE(
            "j") " AND (j.state = 'queued' OR (j.state = 'running' AND "
                 "j.started_at < now() - $3::int * interval '1 millisecond')) RETURNING "
                 "j.store_id, j.id, "
                 "j.kind, j.attempts, j.outbox_id, j.endpoint_id) "
                 "SELECT j.id, j.kind, j.attempts, j.outbox_id, j.endpoint_id, o.kind, "
                 "o.payload::text, "
                 "extract(epoch FROM o.created_at)::bigint, CASE WHEN j.kind = 'email' "
                 "THEN " JOBS_MAIL_FACTS
                 " END FROM j JOIN outbox o ON o.store_id = j.store_id AND o.id = j.outbox_id",
        3, p);
    atomic_fetch_add_explicit(&jobs_stats.take_batches, 1, memory_order_relaxed);
    shopd_rc_t rc = db_result_rc(r);
    if (rc != SHOPD_OK)
        log_warn("jobs: take of %zu jobs failed: %s", n, db_sqlstate(r));
    int rows = rc == SHOPD_OK ? PQntuples(r) : 0;
    for (int k = 0; k < rows; k++) {
        jobs_task_t key = {.job_id = strtoull(PQgetvalue(r, k, 0), NULL, 10)}, *kp = &key;
        jobs_task_t **hit = bsearch(&kp, sorted, n, sizeof(*sorted), by_job);
        if (hit == NULL)
            continue; /* cannot happen: the statement names only these ids */
        while (hit > sorted && hit[-1]->job_id == key.job_id)
            hit--; /* the first entry of the job takes it */
        jobs_task_t *t = *hit;
        snprintf(t->kind, sizeof(t->kind), "%s", PQgetvalue(r, k, 1));
        t->attempts = atoi(PQgetvalue(r, k, 2));
        t->outbox_id = strtoull(PQgetvalue(r, k, 3), NULL, 10);
        t->endpoint_id = strtoull(PQgetvalue(r, k, 4), NULL, 10);
        snprintf(t->okind, sizeof(t->okind), "%s", PQgetvalue(r, k, 5));
        t->payload = shopd_strdup(PQgetvalue(r, k, 6));
        t->created = strtoll(PQgetvalue(r, k, 7), NULL, 10);
        t->facts = PQgetisnull(r, k, 8) ? NULL : shopd_strdup(PQgetvalue(r, k, 8));
        for (size_t i = 0; i < n; i++)
            if (ts[i] == t)
                taken[i] = true;
    }
    PQclear(r);
    shopd_free(sids.p);
    shopd_free(jids.p);
    shopd_free(sorted);
    return rc;
}

void
jobs_untake(db_conn_t *c, jobs_task_t **ts, size_t n)
{
    if (n == 0)
        return;
    lit_t sids, jids;
    lit_open(&sids);
    lit_open(&jids);
    for (size_t i = 0; i < n; i++) {
        lit_id(&sids, ts[i]->store_id);
        lit_id(&jids, ts[i]->job_id);
    }
    lit_put(&sids, "}", 1);
    lit_put(&jids, "}", 1);
    const char *p[] = {sids.p, jids.p};
    PGresult *r =
        db_exec(c, NULL /* planned each time: see PAIRS_WHERE */,
                "UPDATE jobs j SET state = 'queued', attempts = greatest(attempts - 1, 0) "
                "WHERE " PAIRS_WHERE("j") " AND j.state = 'running'",
                2, p);
    PQclear(r);
    shopd_free(sids.p);
    shopd_free(jids.p);
}

/* ---- the finish, in groups (a runner) ---- */

/* A job's outcome, waiting to be written. */
typedef struct outcome_s {
    struct outcome_s *next;
    uint64_t store_id, job_id;
    char kind[16], entry[48];
    int attempts;
    const char *state; /* done, ready or dead */
    long long wait_ms; /* ready: until the retry */
    bool hook_dead;    /* a webhook whose retries ran out: check its endpoint */
    char err[512];
} outcome_t;

/* Outcomes not written yet, and whether a runner is writing (it writes until
 * the queue is empty, so an outcome queued while it writes is never left). */
static pthread_mutex_t fin_lock = PTHREAD_MUTEX_INITIALIZER;
static outcome_t *fin_head, **fin_tail = &fin_head;
static bool fin_busy;

static void
outcome_free(outcome_t *o)
{
    shopd_free(o);
    atomic_fetch_sub_explicit(&jobs_stats.inflight, 1, memory_order_relaxed);
    jobs_slot_freed();
}

static double
jitter(void)
{
    char hex[9];
    shopd_random_hex(hex, 4);
    return (double)strtoul(hex, NULL, 16) / 4294967296.0;
}

/* XACKs the entries of a written batch: one XACK per kind, pipelined. */
static void
ack_all(kv_conn_t *kv, outcome_t *list, size_t n)
{
    const char **argv = shopd_malloc((n + 3) * sizeof(*argv));
    int sent = 0;
    static const char *const kinds[] = {"email", "webhook", "media", "noop"};
    char streams[4][64];
    for (int k = 0; k < 4; k++) {
        int argc = 3;
        for (outcome_t *o = list; o; o = o->next)
            if (strcmp(o->kind, kinds[k]) == 0)
                argv[argc++] = o->entry;
        if (argc == 3)
            continue;
        snprintf(streams[k], sizeof(streams[k]), JOBS_STREAM_PREFIX "%s", kinds[k]);
        argv[0] = "XACK";
        argv[1] = streams[k];
        argv[2] = JOBS_GROUP;
        kv_appendv(kv, argc, argv, NULL);
        sent++;
    }
    for (int i = 0; i < sent; i++) {
        redisReply *x = kv_get_reply(kv);
        if (x)
            freeReplyObject(x);
    }
    shopd_free(argv);
}

/* Writes one batch of outcomes in one statement, then acknowledges their
 * entries; what became a dead letter is also added to the dead letters'
 * stream. If the statement fails nothing is acknowledged: the entries stay
 * pending and the jobs run again later. Frees the list. */
static void
write_batch(api_ctx_t *ctx, outcome_t *list, size_t n)
{
    db_conn_t *c = db_acquire(ctx->app->db, 5000);
    lit_t sids, jids, states, waits, errs;
    lit_open(&sids);
    lit_open(&jids);
    lit_open(&states);
    lit_open(&waits);
    lit_open(&errs);
    for (outcome_t *o = list; o; o = o->next) {
        lit_id(&sids, o->store_id);
        lit_id(&jids, o->job_id);
        lit_text(&states, o->state);
        lit_id(&waits, (uint64_t)(o->wait_ms < 0 ? 0 : o->wait_ms));
        lit_text(&errs, o->err);
    }
    lit_t *all[] = {&sids, &jids, &states, &waits, &errs};
    for (int i = 0; i < 5; i++)
        lit_put(all[i], "}", 1);
    /* Counted before the write, as one job's outcome always was: whoever sees
     * the row done sees the counter too. */
    for (outcome_t *o = list; o; o = o->next)
        atomic_fetch_add_explicit(strcmp(o->state, "done") == 0    ? &jobs_stats.done
                                  : strcmp(o->state, "ready") == 0 ? &jobs_stats.retried
                                                                   : &jobs_stats.dead,
                                  1, memory_order_relaxed);
    PGresult *r = NULL;
    if (c) {
        const char *p[] = {sids.p, jids.p, states.p, waits.p, errs.p};
        /* The payload loses its secrets once they were delivered (a reset token
         * lives in the outbox only until its e-mail is sent). */
        r = db_exec(
            c, NULL /* planned each time: see PAIRS_WHERE */,
            "WITH u AS (SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], "
            "$4::bigint[], $5::text[]) AS u (s, i, st, ms, err)), "
            "j AS (UPDATE jobs j SET state = u.st, last_error = CASE WHEN u.st = 'done' THEN NULL "
            "ELSE left(u.err, 1000) END, finished_at = CASE WHEN u.st = 'ready' THEN NULL ELSE "
            "now() END, next_at = CASE WHEN u.st = 'done' THEN j.next_at ELSE now() + u.ms * "
            "interval '1 millisecond' END FROM u WHERE " PAIRS_WHERE(
                "j") " AND j.store_id = u.s "
                     "AND j.id = u.i AND j.state = 'running' RETURNING j.store_id, j.id, j.kind, "
                     "j.state, "
                     "j.outbox_id), "
                     "t AS (UPDATE outbox o SET payload = o.payload - ARRAY['token', 'url'] FROM j "
                     "WHERE "
                     "o.store_id = j.store_id AND o.id = j.outbox_id AND j.kind = 'email' AND "
                     "j.state = 'done' AND o.payload ? 'token') "
                     "SELECT id FROM j WHERE state = 'dead'",
            5, p);
        atomic_fetch_add_explicit(&jobs_stats.finish_batches, 1, memory_order_relaxed);
    }
    bool ok = db_result_rc(r) == SHOPD_OK;
    if (!ok)
        log_warn("jobs: writing %zu outcomes failed (%s): they run again later", n,
                 c ? db_sqlstate(r) : "no database connection");
    if (ok) {
        ack_all(ctx->worker->kv, list, n);
        for (outcome_t *o = list; o; o = o->next) {
            if (strcmp(o->state, "dead") != 0)
                continue;
            bool wrote = false; /* the row was still running: it is a dead letter now */
            for (int k = 0; k < PQntuples(r) && !wrote; k++)
                wrote = strtoull(PQgetvalue(r, k, 0), NULL, 10) == o->job_id;
            if (!wrote)
                continue;
            log_warn("jobs: job %llu of store %llu (%s) is a dead letter after %d attempts: %s",
                     (unsigned long long)o->job_id, (unsigned long long)o->store_id, o->kind,
                     o->attempts, o->err);
            char sid[24], jid[24], at[16];
            snprintf(sid, sizeof(sid), "%llu", (unsigned long long)o->store_id);
            snprintf(jid, sizeof(jid), "%llu", (unsigned long long)o->job_id);
            snprintf(at, sizeof(at), "%d", o->attempts);
            const char *argv[] = {"XADD", JOBS_STREAM_DEAD, "MAXLEN",   "~",   JOBS_STREAM_MAXLEN,
                                  "*",    "store",          sid,        "job", jid,
                                  "kind", o->kind,          "attempts", at,    "error",
                                  o->err};
            redisReply *x = kv_commandv(ctx->worker->kv, 16, argv, NULL);
            if (x)
                freeReplyObject(x);
            if (o->hook_dead) {
                api_ctx_t hc = *ctx; /* the dead job's store, not the writer's */
                hc.store_id = o->store_id;
                hc.store = NULL;
                jobs_webhook_dead(&hc, c, o->job_id);
            }
        }
    }
    PQclear(r);
    db_release(c);
    for (int i = 0; i < 5; i++)
        shopd_free(all[i]->p);
    while (list) {
        outcome_t *next = list->next;
        outcome_free(list);
        list = next;
    }
}

/* Queues a chunk's outcomes (list, linked); the runner that finds nobody
 * writing writes every outcome queued until there is none (its lane waits
 * meanwhile: the write is the work all lanes share). */
static void
finish(api_ctx_t *ctx, outcome_t *list)
{
    if (list == NULL)
        return;
    pthread_mutex_lock(&fin_lock);
    *fin_tail = list;
    while (list->next)
        list = list->next;
    fin_tail = &list->next;
    if (fin_busy) {
        pthread_mutex_unlock(&fin_lock);
        return;
    }
    fin_busy = true;
    for (;;) {
        outcome_t *head = fin_head;
        if (head == NULL) {
            fin_busy = false;
            pthread_mutex_unlock(&fin_lock);
            return;
        }
        /* At most FINISH_BATCH; the rest stay queued for the next round. */
        size_t n = 1;
        outcome_t *last = head;
        while (last->next && n < FINISH_BATCH) {
            last = last->next;
            n++;
        }
        fin_head = last->next;
        if (fin_head == NULL)
            fin_tail = &fin_head;
        last->next = NULL;
        pthread_mutex_unlock(&fin_lock);
        write_batch(ctx, head, n);
        pthread_mutex_lock(&fin_lock);
    }
}

void
jobs_drop(void *arg)
{
    /* The entries stay pending in their group and the rows running: after the
     * visibility timeout XAUTOCLAIM hands them out again, as after a crash. */
    jobs_chunk_t *ch = arg;
    for (size_t i = 0; i < ch->n; i++) {
        jobs_task_free(ch->ts[i]);
        atomic_fetch_sub_explicit(&jobs_stats.inflight, 1, memory_order_relaxed);
    }
    shopd_free(ch);
    jobs_slot_freed();
}

/* Runs one job's effect; its outcome, to be written. */
static outcome_t *
run_one(api_ctx_t *ctx, jobs_task_t *t)
{
    char err[512] = "";
    shopd_rc_t rc;
    db_conn_t *c = NULL;
    if (strcmp(t->kind, "noop") == 0) {
        rc = SHOPD_OK; /* the machinery alone: bench/jobs.sh */
    } else if (strcmp(t->kind, "email") == 0) {
        rc = jobs_mail_job(ctx, t->job_id, t->payload, t->facts, err, sizeof(err));
    } else if ((c = db_acquire(ctx->app->db, 5000)) == NULL) {
        rc = SHOPD_AGAIN;
        snprintf(err, sizeof(err), "database unavailable");
    } else if (strcmp(t->kind, "media") == 0) {
        rc = media_job(ctx, c, t->okind, t->payload, err, sizeof(err));
        if (rc != SHOPD_OK && rc != SHOPD_AGAIN)
            media_job_dead(ctx, c, t->okind, t->payload);
        else if (rc == SHOPD_AGAIN &&
                 jobs_backoff_ms(ctx->app->cfg->jobs_retry_schedule, t->attempts, 0.5) < 0)
            media_job_dead(ctx, c, t->okind, t->payload); /* its last attempt */
    } else {
        rc = jobs_webhook_job(ctx, c, t->job_id, t->outbox_id, t->endpoint_id, t->attempts,
                              t->okind, t->payload, t->created, err, sizeof(err));
    }
    db_release(c);
    outcome_t *o = shopd_calloc(1, sizeof(*o));
    o->store_id = t->store_id;
    o->job_id = t->job_id;
    o->attempts = t->attempts;
    snprintf(o->kind, sizeof(o->kind), "%s", t->kind);
    snprintf(o->entry, sizeof(o->entry), "%s", t->entry);
    snprintf(o->err, sizeof(o->err), "%s", err[0] ? err : "failed");
    if (rc == SHOPD_OK) {
        o->state = "done";
    } else {
        const char *sched = strcmp(t->kind, "webhook") == 0 ? ctx->app->cfg->webhook_retry_schedule
                                                            : ctx->app->cfg->jobs_retry_schedule;
        o->wait_ms = rc == SHOPD_AGAIN ? jobs_backoff_ms(sched, t->attempts, jitter()) : -1;
        o->state = o->wait_ms < 0 ? "dead" : "ready";
        o->hook_dead = o->wait_ms < 0 && rc == SHOPD_AGAIN && strcmp(t->kind, "webhook") == 0;
    }
    return o;
}

void
jobs_run(api_ctx_t *ctx, void *arg)
{
    jobs_chunk_t *ch = arg;
    outcome_t *head = NULL, **tail = &head;
    for (size_t i = 0; i < ch->n; i++) {
        *tail = run_one(ctx, ch->ts[i]);
        tail = &(*tail)->next;
        jobs_task_free(ch->ts[i]);
    }
    shopd_free(ch);
    finish(ctx, head); /* the slots are freed once the outcomes are written */
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
