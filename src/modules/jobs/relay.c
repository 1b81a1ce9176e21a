/*
 * relay.c: the pump, one thread per process. Every SHOPD_JOBS_POLL_MS it
 *  1. relays (if it is this step's leader: pg_try_advisory_xact_lock, so two
 *     processes never push the same rows at once): new outbox rows become jobs
 *     rows, marked relayed in the same transaction; due jobs (new ones and
 *     retries whose time came) are XADDed to their kind's stream and marked
 *     queued before COMMIT. A crash between XADD and COMMIT leaves the job
 *     ready, so the next step sends it again: twice, never zero times;
 *  2. reconciles now and then: jobs queued or running for far longer than the
 *     visibility timeout (their stream entry was lost: Redis wiped or failed
 *     over) go back to ready; and refreshes the counts for /metrics;
 *  3. consumes (SHOPD_JOBS_CONSUME): takes over entries idle past the
 *     visibility timeout (XAUTOCLAIM: a consumer died mid-job), reads new
 *     entries of every stream with XREADGROUP (BLOCK: this is also the wait),
 *     and hands each to the blocking pool (api_job_send), at most
 *     SHOPD_JOBS_INFLIGHT at a time. The runner (run.c) dedupes by the job row.
 * PostgreSQL is the record; with Redis down the outbox keeps filling and the
 * relay catches up when it returns.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "jobs_priv.h"
#include "shopd/analytics.h"
#include "shopd/log.h"

#define RELAY_BATCH 500
#define RELAY_LOCK ANALYTICS_RELAY_LOCK /* advisory lock key of the relay step */

/* noop: a job that does nothing, for measuring the machinery (outbox kind
 * jobs.noop; bench/jobs.sh). media: an image's renditions and deletions. */
static const char *const kinds[] = {"email", "webhook", "media", "noop"};
#define NKINDS (sizeof(kinds) / sizeof(kinds[0]))

static pthread_t pump;
static bool pump_running;
static atomic_bool pump_stop;
static char consumer[128];

const char *
jobs_consumer(void)
{
    return consumer;
}

/* ---- relay step ---- */

typedef struct relay_s {
    kv_conn_t *kv;
    size_t relayed, queued;
} relay_t;

/* Appends sep and v to buf (length len, capacity cap, kept NUL-terminated);
 * returns the new length. What does not fit is left out. */
static size_t
id_append(char *buf, size_t len, size_t cap, const char *sep, const char *v)
{
    size_t a = strlen(sep), b = strlen(v);
    if (len + a + b + 1 > cap)
        return len;
    memcpy(buf + len, sep, a);
    memcpy(buf + len + a, v, b);
    buf[len + a + b] = '\0';
    return len + a + b;
}

static shopd_rc_t
relay_body(db_conn_t *c, void *arg)
{
    relay_t *rl = arg;
    rl->relayed = rl->queued = 0;
    /* Bounded: a step that waits on a lock or a slow statement gives up and is
     * rolled back (the next step does its work), so the pump never hangs, and
     * neither does a stop that joins it (one did, in the analytics upsert,
     * under a loaded machine's crash test). */
    PGresult *r = db_exec(c, "jobs_lock",
                          "SELECT pg_try_advisory_xact_lock(" RELAY_LOCK "), "
                          "set_config('statement_timeout', '5s', true), "
                          "set_config('lock_timeout', '2s', true)",
                          0, NULL);
    shopd_rc_t rc = db_result_rc(r);
    bool leader = rc == SHOPD_OK && PQgetvalue(r, 0, 0)[0] == 't';
    PQclear(r);
    if (rc != SHOPD_OK || !leader)
        return rc; /* another process relays this step */

    /* Outbox rows -> jobs: an e-mail for a row with a template, one delivery per
     * subscribed endpoint for an order event (never for other kinds: a password
     * reset's token stays out of webhooks). */
    const char *lim[] = {"500"};
    r = db_exec(c, "jobs_expand",
                "WITH o AS (SELECT store_id, id, kind, payload FROM outbox WHERE relayed_at IS "
                "NULL ORDER BY id LIMIT $1::int FOR UPDATE SKIP LOCKED), "
                "m AS (UPDATE outbox x SET relayed_at = now() FROM o WHERE x.store_id = "
                "o.store_id AND x.id = o.id), "
                "e AS (INSERT INTO jobs (store_id, outbox_id, kind) SELECT store_id, id, 'email' "
                "FROM o WHERE o.payload ? 'template' AND o.payload ? 'email' "
                "ON CONFLICT DO NOTHING), "
                "w AS (INSERT INTO jobs (store_id, outbox_id, kind, endpoint_id) SELECT "
                "o.store_id, o.id, 'webhook', we.id FROM o JOIN webhook_endpoints we ON "
                "we.store_id = o.store_id AND we.enabled AND (o.kind = ANY (we.events) OR '*' = "
                "ANY (we.events)) WHERE o.kind LIKE 'order.%' ON CONFLICT DO NOTHING), "
                "i AS (INSERT INTO jobs (store_id, outbox_id, kind) SELECT store_id, id, 'media' "
                "FROM o WHERE o.kind LIKE 'media.%' ON CONFLICT DO NOTHING), "
                "n AS (INSERT INTO jobs (store_id, outbox_id, kind) SELECT store_id, id, 'noop' "
                "FROM o WHERE o.kind = 'jobs.noop' ON CONFLICT DO NOTHING) "
                "SELECT count(*), coalesce(array_agg(store_id), '{}')::text, "
                "coalesce(array_agg(id), '{}')::text FROM o",
                1, lim);
    rc = db_result_rc(r);
    if (rc == SHOPD_OK)
        rl->relayed = strtoull(PQgetvalue(r, 0, 0), NULL, 10);
    /* The batch's order events move the sales rollups in this transaction:
     * marked relayed and counted together, so exactly once (sql/0011). */
    if (rc == SHOPD_OK && rl->relayed > 0)
        rc = analytics_relay_apply(c, PQgetvalue(r, 0, 1), PQgetvalue(r, 0, 2));
    PQclear(r);
    if (rc != SHOPD_OK)
        return rc;

    /* Due jobs -> their streams. The rows stay locked until COMMIT, so a consumer
     * that reads an entry first waits on the row and then sees it queued. */
    r = db_exec(c, "jobs_due",
                "SELECT store_id, id, kind FROM jobs WHERE state = 'ready' AND next_at <= now() "
                "ORDER BY next_at LIMIT $1::int FOR UPDATE SKIP LOCKED",
                1, lim);
    rc = db_result_rc(r);
    int n = rc == SHOPD_OK ? PQntuples(r) : 0;
    if (n == 0) {
        PQclear(r);
        return rc;
    }
    for (int i = 0; i < n; i++) {
        char stream[64];
        snprintf(stream, sizeof(stream), JOBS_STREAM_PREFIX "%s", PQgetvalue(r, i, 2));
        const char *argv[] = {"XADD",
                              stream,
                              "MAXLEN",
                              "~",
                              JOBS_STREAM_MAXLEN,
                              "*",
                              "store",
                              PQgetvalue(r, i, 0),
                              "job",
                              PQgetvalue(r, i, 1)};
        kv_appendv(rl->kv, 10, argv, NULL);
    }
    /* Build the id lists for the UPDATE while the replies come back. */
    size_t cap = (size_t)n * 24 + 4;
    char *sids = shopd_malloc(cap), *jids = shopd_malloc(cap);
    size_t ls = 0, lj = 0;
    sids[ls++] = '{';
    jids[lj++] = '{';
    for (int i = 0; i < n; i++) {
        /* Ids are bigints (at most 20 characters): cap holds them all. */
        ls = id_append(sids, ls, cap, i ? "," : "", PQgetvalue(r, i, 0));
        lj = id_append(jids, lj, cap, i ? "," : "", PQgetvalue(r, i, 1));
    }
    ls = id_append(sids, ls, cap, "}", "");
    lj = id_append(jids, lj, cap, "}", "");
    PQclear(r);
    bool sent = true;
    for (int i = 0; i < n; i++) {
        redisReply *x = kv_get_reply(rl->kv);
        if (x == NULL || x->type == REDIS_REPLY_ERROR)
            sent = false;
        if (x)
            freeReplyObject(x);
    }
    if (!sent) {
        /* Some entries may be in a stream already: rolled back, they are sent
         * again next step and the runner dedupes. */
        shopd_free(sids);
        shopd_free(jids);
        return SHOPD_UNAVAILABLE;
    }
    const char *p[] = {sids, jids};
    r = db_exec(c, "jobs_queued",
                "UPDATE jobs j SET state = 'queued', queued_at = now() FROM unnest($1::bigint[], "
                "$2::bigint[]) AS u (s, i) WHERE j.store_id = u.s AND j.id = u.i",
                2, p);
    rc = db_result_rc(r);
    PQclear(r);
    shopd_free(sids);
    shopd_free(jids);
    if (rc == SHOPD_OK)
        rl->queued = (size_t)n;
    return rc;
}

static void
relay_step(app_t *app, kv_conn_t *kv)
{
    db_conn_t *c = db_acquire(app->db, 1000);
    if (c == NULL) {
        atomic_fetch_add_explicit(&jobs_stats.relay_errors, 1, memory_order_relaxed);
        return;
    }
    relay_t rl = {.kv = kv};
    shopd_rc_t rc = db_tx(c, relay_body, &rl);
    db_release(c);
    if (rc != SHOPD_OK) {
        atomic_fetch_add_explicit(&jobs_stats.relay_errors, 1, memory_order_relaxed);
        return;
    }
    atomic_fetch_add_explicit(&jobs_stats.relayed, rl.relayed, memory_order_relaxed);
    atomic_fetch_add_explicit(&jobs_stats.queued, rl.queued, memory_order_relaxed);
}

/* ---- reconcile and counts ---- */

static void
reconcile(app_t *app)
{
    db_conn_t *c = db_acquire(app->db, 1000);
    if (c == NULL)
        return;
    /* Twice the visibility timeout: XAUTOCLAIM gets its chance first; this is for
     * entries Redis no longer has. A job sent twice is deduped by the runner. */
    char ms[24];
    snprintf(ms, sizeof(ms), "%d", app->cfg->jobs_visibility_ms * 2);
    const char *p[] = {ms};
    PGresult *r =
        db_exec(c, "jobs_reconcile",
                "UPDATE jobs SET state = 'ready', next_at = now() WHERE (state = 'queued' AND "
                "queued_at < now() - $1::int * interval '1 millisecond') OR (state = 'running' "
                "AND started_at < now() - $1::int * interval '1 millisecond')",
                1, p);
    if (db_result_rc(r) == SHOPD_OK)
        atomic_fetch_add_explicit(&jobs_stats.requeued, strtoull(PQcmdTuples(r), NULL, 10),
                                  memory_order_relaxed);
    PQclear(r);
    r = db_exec(c, "jobs_counts",
                "SELECT kind, state, count(*) FROM jobs GROUP BY kind, state ORDER BY 1, 2", 0,
                NULL);
    if (db_result_rc(r) == SHOPD_OK) {
        int n = PQntuples(r);
        if (n > 32)
            n = 32;
        char k[32][16], s[32][16];
        long long cnt[32];
        for (int i = 0; i < n; i++) {
            snprintf(k[i], 16, "%s", PQgetvalue(r, i, 0));
            snprintf(s[i], 16, "%s", PQgetvalue(r, i, 1));
            cnt[i] = strtoll(PQgetvalue(r, i, 2), NULL, 10);
        }
        jobs_counts_set((const char(*)[16])k, (const char(*)[16])s, cnt, (size_t)n);
    }
    PQclear(r);
    db_release(c);
}

/* ---- consume ---- */

static void
ensure_groups(kv_conn_t *kv)
{
    for (size_t i = 0; i < NKINDS; i++) {
        /* From the start of the stream ("0"), so entries added before the group
         * existed are not skipped; BUSYGROUP (it exists) is the usual answer. */
        redisReply *x = kv_command(
            kv, "XGROUP CREATE " JOBS_STREAM_PREFIX "%s " JOBS_GROUP " 0 MKSTREAM", kinds[i]);
        if (x)
            freeReplyObject(x);
    }
}

static const char *
field(const redisReply *fields, const char *name)
{
    if (fields == NULL || fields->type != REDIS_REPLY_ARRAY)
        return NULL;
    for (size_t i = 0; i + 1 < fields->elements; i += 2)
        if (fields->element[i]->type == REDIS_REPLY_STRING &&
            strcmp(fields->element[i]->str, name) == 0 &&
            fields->element[i + 1]->type == REDIS_REPLY_STRING)
            return fields->element[i + 1]->str;
    return NULL;
}

/* Hands one stream entry ([id, [field, value...]]) to the blocking pool. An
 * entry the pool refuses stays pending: XAUTOCLAIM brings it back later. */
static void
dispatch_entry(app_t *app, kv_conn_t *kv, const char *kind, const redisReply *e)
{
    if (e == NULL || e->type != REDIS_REPLY_ARRAY || e->elements < 2 ||
        e->element[0]->type != REDIS_REPLY_STRING)
        return;
    const char *sid = field(e->element[1], "store"), *jid = field(e->element[1], "job");
    uint64_t s, j;
    if (sid == NULL || jid == NULL || !shopd_id_parse(sid, strlen(sid), &s) ||
        !shopd_id_parse(jid, strlen(jid), &j)) {
        /* Not ours (written by hand?): acknowledged so it cannot block the group. */
        log_warn("jobs: malformed entry %s in %s dropped", e->element[0]->str, kind);
        redisReply *x = kv_command(kv, "XACK " JOBS_STREAM_PREFIX "%s " JOBS_GROUP " %s", kind,
                                   e->element[0]->str);
        if (x)
            freeReplyObject(x);
        return;
    }
    jobs_task_t *t = shopd_calloc(1, sizeof(*t));
    t->store_id = s;
    t->job_id = j;
    snprintf(t->kind, sizeof(t->kind), "%s", kind);
    snprintf(t->entry, sizeof(t->entry), "%s", e->element[0]->str);
    atomic_fetch_add_explicit(&jobs_stats.inflight, 1, memory_order_relaxed);
    if (api_job_send(app, s, jobs_run, jobs_drop, t) != SHOPD_OK)
        jobs_drop(t);
}

/* The pump waits here while every slot is taken, until a job ends: with a
 * plain sleep of the poll interval a full pool ran at most SHOPD_JOBS_INFLIGHT
 * jobs per interval (160/s by default). */
static pthread_mutex_t room_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t room_cond = PTHREAD_COND_INITIALIZER;

void
jobs_slot_freed(void)
{
    pthread_mutex_lock(&room_lock);
    pthread_cond_signal(&room_cond);
    pthread_mutex_unlock(&room_lock);
}

static void
wait_for_room(app_t *app, int ms)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += ms / 1000;
    until.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&room_lock);
    /* Checked under the lock: a job that ended before the wait has signalled
     * in vain, but then there is room and no wait. */
    if (atomic_load_explicit(&jobs_stats.inflight, memory_order_relaxed) >= app->cfg->jobs_inflight)
        pthread_cond_timedwait(&room_cond, &room_lock, &until);
    pthread_mutex_unlock(&room_lock);
}

static long
free_slots(app_t *app)
{
    long busy = atomic_load_explicit(&jobs_stats.inflight, memory_order_relaxed);
    return app->cfg->jobs_inflight - busy;
}

static void
autoclaim(app_t *app, kv_conn_t *kv)
{
    for (size_t k = 0; k < NKINDS; k++) {
        long room = free_slots(app);
        if (room <= 0)
            return;
        redisReply *x =
            kv_command(kv, "XAUTOCLAIM " JOBS_STREAM_PREFIX "%s " JOBS_GROUP " %s %d 0-0 COUNT %ld",
                       kinds[k], consumer, app->cfg->jobs_visibility_ms, room);
        if (x && x->type == REDIS_REPLY_ARRAY && x->elements >= 2 &&
            x->element[1]->type == REDIS_REPLY_ARRAY) {
            for (size_t i = 0; i < x->element[1]->elements; i++) {
                atomic_fetch_add_explicit(&jobs_stats.claimed, 1, memory_order_relaxed);
                dispatch_entry(app, kv, kinds[k], x->element[1]->element[i]);
            }
        } else if (x && x->type == REDIS_REPLY_ERROR && strstr(x->str, "NOGROUP")) {
            ensure_groups(kv);
        }
        if (x)
            freeReplyObject(x);
    }
}

/* Reads new entries of every stream, waiting up to the poll interval. */
static void
read_new(app_t *app, kv_conn_t *kv)
{
    long room = free_slots(app);
    if (room <= 0) {
        wait_for_room(app, app->cfg->jobs_poll_ms);
        return;
    }
    char count[24], block[24];
    snprintf(count, sizeof(count), "%ld", room);
    snprintf(block, sizeof(block), "%d", app->cfg->jobs_poll_ms);
    /* One read over every kind's stream: "STREAMS s1 s2 ... > > ...". */
    char streams[NKINDS][64];
    const char *argv[9 + 2 * NKINDS] = {"XREADGROUP", "GROUP", JOBS_GROUP, consumer, "COUNT",
                                        count,        "BLOCK", block,      "STREAMS"};
    int argc = 9;
    for (size_t k = 0; k < NKINDS; k++) {
        snprintf(streams[k], sizeof(streams[k]), JOBS_STREAM_PREFIX "%s", kinds[k]);
        argv[argc++] = streams[k];
    }
    for (size_t k = 0; k < NKINDS; k++)
        argv[argc++] = ">";
    redisReply *x = kv_commandv(kv, argc, argv, NULL);
    if (x == NULL) {
        usleep((useconds_t)app->cfg->jobs_poll_ms * 1000); /* Redis down: wait, retry */
        return;
    }
    if (x->type == REDIS_REPLY_ERROR && strstr(x->str, "NOGROUP"))
        ensure_groups(kv); /* Redis was wiped: the groups come back */
    if (x->type == REDIS_REPLY_ARRAY) {
        for (size_t i = 0; i < x->elements; i++) {
            redisReply *st = x->element[i];
            if (st->type != REDIS_REPLY_ARRAY || st->elements < 2 ||
                st->element[0]->type != REDIS_REPLY_STRING)
                continue;
            const char *kind = st->element[0]->str + strlen(JOBS_STREAM_PREFIX);
            for (size_t e = 0; e < st->element[1]->elements; e++)
                dispatch_entry(app, kv, kind, st->element[1]->element[e]);
        }
    }
    freeReplyObject(x);
}

static void *
pump_main(void *arg)
{
    app_t *app = arg;
    kv_conn_t *kv = kv_conn_new(app->cfg->redis_url, (unsigned)app->cfg->jobs_poll_ms + 3000);
    if (kv == NULL)
        return NULL;
    ensure_groups(kv);
    uint64_t last_slow = 0;
    while (!atomic_load_explicit(&pump_stop, memory_order_acquire)) {
        relay_step(app, kv);
        uint64_t now = shopd_now_us();
        /* The slow part about once a second (or each visibility period, if shorter). */
        uint64_t every =
            (uint64_t)(app->cfg->jobs_visibility_ms < 1000 ? app->cfg->jobs_visibility_ms : 1000) *
            1000;
        if (now - last_slow >= every) {
            last_slow = now;
            reconcile(app);
            if (app->cfg->jobs_consume)
                autoclaim(app, kv);
        }
        if (app->cfg->jobs_consume)
            read_new(app, kv);
        else
            usleep((useconds_t)app->cfg->jobs_poll_ms * 1000);
    }
    kv_conn_free(kv);
    return NULL;
}

int
jobs_pump_start(app_t *app)
{
    char host[64] = "shopd", rnd[9];
    gethostname(host, sizeof(host) - 1);
    host[sizeof(host) - 1] = '\0';
    shopd_random_hex(rnd, 4);
    snprintf(consumer, sizeof(consumer), "%s-%d-%s", host, (int)getpid(), rnd);
    atomic_store_explicit(&pump_stop, false, memory_order_release);
    if (pthread_create(&pump, NULL, pump_main, app) != 0)
        return -1;
    pump_running = true;
    return 0;
}

void
jobs_pump_stop(app_t *app)
{
    (void)app;
    if (!pump_running)
        return;
    /* release: the pump sees the flag at its next step (within one poll) */
    atomic_store_explicit(&pump_stop, true, memory_order_release);
    pthread_join(pump, NULL);
    pump_running = false;
}
