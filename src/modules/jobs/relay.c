/*
 * relay.c: the pump, one thread per process. Every SHOPD_JOBS_POLL_MS it
 *  1. relays (if it is this step's leader: pg_try_advisory_xact_lock, so two
 *     processes never push the same rows at once): in one statement new outbox
 *     rows become jobs rows, inserted queued, the outbox rows are marked
 *     relayed and due retries marked queued; all of them are XADDed to their
 *     kind's stream before COMMIT. A crash between XADD and COMMIT rolls the
 *     step back, so the next step sends them again: twice, never zero times;
 *  2. reconciles now and then: jobs queued or running for far longer than the
 *     visibility timeout (their stream entry was lost: Redis wiped or failed
 *     over) go back to ready; and refreshes the counts for /metrics;
 *  3. consumes (SHOPD_JOBS_CONSUME): takes over entries idle past the
 *     visibility timeout (XAUTOCLAIM: a consumer died mid-job), reads new
 *     entries of every stream with XREADGROUP (BLOCK: this is also the wait,
 *     until the next step is due), takes the jobs of each read in one
 *     statement (run.c: the job row dedupes) and hands a store's taken jobs to
 *     its blocking lanes in chunks (api_job_send), at most SHOPD_JOBS_INFLIGHT
 *     jobs at a time.
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

#define RELAY_BATCH 500 /* outbox rows, and due retries, per step */
#define RELAY_BATCH_S "500"
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

    /* One statement: outbox rows -> jobs (an e-mail for a row with a template,
     * one delivery per subscribed endpoint for an order event, never for other
     * kinds: a password reset's token stays out of webhooks), inserted queued,
     * and due retries marked queued; all of them come back to be XADDed before
     * COMMIT (a failed XADD rolls the whole step back: nothing is relayed or
     * queued). Rows the step locks are named by ctid (a TID scan), never joined
     * back to their table. */
    const char *lim[] = {RELAY_BATCH_S};
    r = db_exec(
        c, "jobs_relay",
        "WITH o AS (SELECT ctid AS tid, store_id, id, kind, payload FROM outbox WHERE relayed_at "
        "IS NULL ORDER BY id LIMIT $1::int FOR UPDATE SKIP LOCKED), "
        "m AS (UPDATE outbox x SET relayed_at = now() WHERE x.ctid = ANY (ARRAY(SELECT tid FROM "
        "o))), "
        "e AS (INSERT INTO jobs (store_id, outbox_id, kind, state, queued_at) SELECT store_id, id, "
        "'email', 'queued', now() FROM o WHERE o.payload ? 'template' AND o.payload ? 'email' "
        "ON CONFLICT DO NOTHING RETURNING store_id, id, kind), "
        "w AS (INSERT INTO jobs (store_id, outbox_id, kind, endpoint_id, state, queued_at) SELECT "
        "o.store_id, o.id, 'webhook', we.id, 'queued', now() FROM o JOIN webhook_endpoints we ON "
        "we.store_id = o.store_id AND we.enabled AND (o.kind = ANY (we.events) OR '*' = "
        "ANY (we.events)) WHERE o.kind LIKE 'order.%' ON CONFLICT DO NOTHING RETURNING store_id, "
        "id, kind), "
        "i AS (INSERT INTO jobs (store_id, outbox_id, kind, state, queued_at) SELECT store_id, id, "
        "'media', 'queued', now() FROM o WHERE o.kind LIKE 'media.%' ON CONFLICT DO NOTHING "
        "RETURNING store_id, id, kind), "
        "n AS (INSERT INTO jobs (store_id, outbox_id, kind, state, queued_at) SELECT store_id, id, "
        "'noop', 'queued', now() FROM o WHERE o.kind = 'jobs.noop' ON CONFLICT DO NOTHING "
        "RETURNING store_id, id, kind), "
        "d AS (SELECT ctid AS tid FROM jobs WHERE state = 'ready' AND next_at <= now() ORDER BY "
        "next_at LIMIT $1::int FOR UPDATE SKIP LOCKED), "
        "q AS (UPDATE jobs SET state = 'queued', queued_at = now() WHERE ctid = ANY (ARRAY(SELECT "
        "tid FROM d)) RETURNING store_id, id, kind), "
        "x AS (SELECT * FROM e UNION ALL SELECT * FROM w UNION ALL SELECT * FROM i UNION ALL "
        "SELECT * FROM n UNION ALL SELECT * FROM q) "
        "SELECT a.n, a.s, a.i, x.store_id, x.id, x.kind FROM (SELECT count(*) AS n, "
        "coalesce(array_agg(store_id), '{}')::text AS s, coalesce(array_agg(id), '{}')::text AS i "
        "FROM o) a LEFT JOIN x ON true",
        1, lim);
    rc = db_result_rc(r);
    if (rc != SHOPD_OK || PQntuples(r) < 1) {
        PQclear(r);
        return rc == SHOPD_OK ? SHOPD_ERR : rc;
    }
    rl->relayed = strtoull(PQgetvalue(r, 0, 0), NULL, 10);
    /* The batch's order events move the sales rollups in this transaction:
     * marked relayed and counted together, so exactly once (sql/0011). */
    if (rl->relayed > 0)
        rc = analytics_relay_apply(c, PQgetvalue(r, 0, 1), PQgetvalue(r, 0, 2));
    int rows = PQntuples(r), n = 0;
    for (int k = 0; k < rows && rc == SHOPD_OK; k++) {
        if (PQgetisnull(r, k, 4))
            continue; /* the outbox rows alone: no job to send */
        char stream[64];
        snprintf(stream, sizeof(stream), JOBS_STREAM_PREFIX "%s", PQgetvalue(r, k, 5));
        const char *argv[] = {"XADD",
                              stream,
                              "MAXLEN",
                              "~",
                              JOBS_STREAM_MAXLEN,
                              "*",
                              "store",
                              PQgetvalue(r, k, 3),
                              "job",
                              PQgetvalue(r, k, 4)};
        kv_appendv(rl->kv, 10, argv, NULL);
        n++;
    }
    PQclear(r);
    bool sent = true;
    for (int k = 0; k < n; k++) {
        redisReply *x = kv_get_reply(rl->kv);
        if (x == NULL || x->type == REDIS_REPLY_ERROR)
            sent = false;
        if (x)
            freeReplyObject(x);
    }
    if (rc != SHOPD_OK)
        return rc;
    if (!sent) {
        /* Some entries may be in a stream already: rolled back, they are sent
         * again next step and the runner dedupes. */
        return SHOPD_UNAVAILABLE;
    }
    rl->queued = (size_t)n;
    return SHOPD_OK;
}

/* One relay step; true when it moved a whole batch (more may be waiting: the
 * next step runs at once instead of after the poll interval). */
static bool
relay_step(app_t *app, kv_conn_t *kv)
{
    db_conn_t *c = db_acquire(app->db, 1000);
    if (c == NULL) {
        atomic_fetch_add_explicit(&jobs_stats.relay_errors, 1, memory_order_relaxed);
        return false;
    }
    relay_t rl = {.kv = kv};
    shopd_rc_t rc = db_tx(c, relay_body, &rl);
    db_release(c);
    if (rc != SHOPD_OK) {
        atomic_fetch_add_explicit(&jobs_stats.relay_errors, 1, memory_order_relaxed);
        return false;
    }
    atomic_fetch_add_explicit(&jobs_stats.relayed, rl.relayed, memory_order_relaxed);
    atomic_fetch_add_explicit(&jobs_stats.queued, rl.queued, memory_order_relaxed);
    return rl.relayed >= RELAY_BATCH || rl.queued >= RELAY_BATCH;
}

/* ---- reconcile and counts ---- */

/* The tables every order writes, while they are young. PostgreSQL keeps the
 * plan a statement made on its first runs (prepared statements, PL/pgSQL, and
 * the foreign-key checks' own queries) until the table is analyzed again, and
 * autovacuum looks at a database about once a minute. In a new database the
 * first plans are made on tables of a few pages, where a sequential scan is the
 * cheapest way to find one row, and kept while the table grows a hundredfold:
 * in a fresh benchmark cluster, every foreign-key check of a checkout batch
 * scanned orders. So a table whose size has doubled since it was last analyzed
 * (and has 8 pages at least) is analyzed here: the plans that depend on it are
 * made again, for its size. Past the first minutes a doubling is rare, and
 * autovacuum's own analyze comes first. */
static void
analyze_young(db_conn_t *c)
{
    PGresult *r = db_exec(
        c, "jobs_young_tables",
        "SELECT c.relname FROM pg_class c WHERE c.oid = ANY (ARRAY['orders', 'order_items', "
        "'order_events', 'payments', 'inventory_movements', 'outbox', 'jobs']::regclass[]) AND "
        "pg_relation_size(c.oid) / 8192 >= greatest(8, 2 * c.relpages)",
        0, NULL);
    for (int i = 0; db_result_rc(r) == SHOPD_OK && i < PQntuples(r); i++) {
        char sql[96];
        snprintf(sql, sizeof(sql), "ANALYZE %s", PQgetvalue(r, i, 0));
        PGresult *a = db_exec(c, NULL, sql, 0, NULL);
        if (db_result_rc(a) != SHOPD_OK)
            log_warn("jobs: %s failed: %s", sql, db_sqlstate(a));
        PQclear(a);
    }
    PQclear(r);
}

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
    /* The open states only, each through its partial index: done and discarded
     * jobs are kept for 30 days, and counting them meant a scan of the whole
     * table every second (70 ms at 870k jobs, on the database the checkouts
     * wait for). The totals of what finished are in shopd_jobs_events_total. */
    r = db_exec(c, "jobs_counts",
                "SELECT kind, 'ready' AS state, count(*) FROM jobs WHERE state = 'ready' GROUP BY "
                "kind UNION ALL SELECT kind, state, count(*) FROM jobs WHERE state IN ('queued', "
                "'running') GROUP BY kind, state UNION ALL SELECT kind, 'dead', count(*) FROM jobs "
                "WHERE state = 'dead' GROUP BY kind ORDER BY 1, 2",
                0, NULL);
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
    analyze_young(c);
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

/* Stream entries read in one go, taken in one statement, then handed out. */
typedef struct batch_s {
    jobs_task_t **ts;
    size_t n, cap;
} batch_t;

/* Adds one stream entry ([id, [field, value...]]) to the batch; it holds a
 * slot of SHOPD_JOBS_INFLIGHT from now on. */
static void
collect_entry(kv_conn_t *kv, batch_t *b, const char *kind, const redisReply *e)
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
    if (b->n == b->cap) {
        b->cap = b->cap ? b->cap * 2 : 64;
        b->ts = realloc(b->ts, b->cap * sizeof(*b->ts));
        if (b->ts == NULL)
            abort();
    }
    b->ts[b->n++] = t;
    atomic_fetch_add_explicit(&jobs_stats.inflight, 1, memory_order_relaxed);
}

static void
task_drop(jobs_task_t *t)
{
    jobs_task_free(t);
    atomic_fetch_sub_explicit(&jobs_stats.inflight, 1, memory_order_relaxed);
}

static int
by_store(const void *a, const void *b)
{
    const jobs_task_t *x = *(jobs_task_t *const *)a, *y = *(jobs_task_t *const *)b;
    return x->store_id < y->store_id ? -1 : x->store_id > y->store_id;
}

/* Takes the batch's jobs in one statement and hands each taken one to its
 * store's blocking lanes; the duplicates are acknowledged (one XACK per kind).
 * If the take fails the entries stay pending (XAUTOCLAIM brings them back). */
static void
dispatch_batch(app_t *app, kv_conn_t *kv, batch_t *b)
{
    if (b->n == 0)
        return;
    bool *taken = shopd_calloc(b->n, sizeof(*taken));
    db_conn_t *c = db_acquire(app->db, 1000);
    shopd_rc_t rc = c ? jobs_take_batch(c, app->cfg->jobs_visibility_ms, b->ts, b->n, taken)
                      : SHOPD_UNAVAILABLE;
    jobs_task_t **refused = shopd_malloc(b->n * sizeof(*refused));
    size_t nref = 0;
    if (rc == SHOPD_OK) {
        for (size_t k = 0; k < NKINDS; k++) {
            char stream[64];
            snprintf(stream, sizeof(stream), JOBS_STREAM_PREFIX "%s", kinds[k]);
            const char **argv = shopd_malloc((b->n + 3) * sizeof(*argv));
            int argc = 3;
            argv[0] = "XACK";
            argv[1] = stream;
            argv[2] = JOBS_GROUP;
            for (size_t i = 0; i < b->n; i++)
                if (!taken[i] && strcmp(b->ts[i]->kind, kinds[k]) == 0)
                    argv[argc++] = b->ts[i]->entry;
            if (argc > 3) {
                /* Done, dead, gone with its store, or another consumer has it now. */
                atomic_fetch_add_explicit(&jobs_stats.duplicates, (uint64_t)(argc - 3),
                                          memory_order_relaxed);
                redisReply *x = kv_commandv(kv, argc, argv, NULL);
                if (x)
                    freeReplyObject(x);
            }
            shopd_free(argv);
        }
    }
    /* The taken jobs of each store in chunks, one per lane of the store at
     * most (api_job_send spreads its messages over the lanes): a chunk runs
     * its jobs in turn and writes their outcomes in one statement. */
    size_t nt = 0;
    for (size_t i = 0; i < b->n; i++) {
        if (taken[i])
            b->ts[nt++] = b->ts[i];
        else
            task_drop(b->ts[i]);
    }
    qsort(b->ts, nt, sizeof(*b->ts), by_store);
    unsigned lanes = (unsigned)(app->cfg->blocking_threads + 1) / 2; /* as api_job_send */
    lanes = lanes < 1 ? 1 : lanes;
    for (size_t i = 0; i < nt;) {
        size_t j = i;
        while (j < nt && b->ts[j]->store_id == b->ts[i]->store_id)
            j++;
        size_t per = (j - i + lanes - 1) / lanes;
        for (size_t k = i; k < j; k += per) {
            size_t m = j - k < per ? j - k : per;
            jobs_chunk_t *ch = shopd_malloc(sizeof(*ch) + m * sizeof(ch->ts[0]));
            ch->n = m;
            memcpy(ch->ts, b->ts + k, m * sizeof(ch->ts[0]));
            if (api_job_send(app, ch->ts[0]->store_id, jobs_run, jobs_drop, ch) != SHOPD_OK) {
                /* the lane's queue is full */
                memcpy(refused + nref, ch->ts, m * sizeof(ch->ts[0]));
                nref += m;
                shopd_free(ch);
            }
        }
        i = j;
    }
    if (nref > 0 && c)
        jobs_untake(c, refused, nref);
    for (size_t i = 0; i < nref; i++)
        task_drop(refused[i]);
    if (nref > 0)
        jobs_slot_freed();
    db_release(c);
    shopd_free(refused);
    shopd_free(taken);
    b->n = 0;
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

/* Reads wait until a quarter of the slots are free: entries then come in
 * batches (one take statement each), not one per freed slot. */
static long
room_mark(app_t *app)
{
    long cap = app->cfg->jobs_inflight, q = cap / 4 > 0 ? cap / 4 : 1;
    return cap - q;
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
    if (atomic_load_explicit(&jobs_stats.inflight, memory_order_relaxed) > room_mark(app))
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
autoclaim(app_t *app, kv_conn_t *kv, batch_t *b)
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
                collect_entry(kv, b, kinds[k], x->element[1]->element[i]);
            }
        } else if (x && x->type == REDIS_REPLY_ERROR && strstr(x->str, "NOGROUP")) {
            ensure_groups(kv);
        }
        if (x)
            freeReplyObject(x);
    }
}

/* Reads new entries of every stream into b, waiting up to ms for one. */
static void
read_new(app_t *app, kv_conn_t *kv, batch_t *b, int ms)
{
    long room = free_slots(app);
    if (atomic_load_explicit(&jobs_stats.inflight, memory_order_relaxed) > room_mark(app)) {
        wait_for_room(app, ms);
        return;
    }
    char count[24], block[24];
    snprintf(count, sizeof(count), "%ld", room);
    snprintf(block, sizeof(block), "%d", ms < 1 ? 1 : ms); /* BLOCK 0 would wait for ever */
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
        usleep((useconds_t)ms * 1000); /* Redis down: wait, retry */
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
                collect_entry(kv, b, kind, st->element[1]->element[e]);
        }
    }
    freeReplyObject(x);
}

/* Consumes until the deadline (at least one read): the relay then runs again.
 * A read that returns entries does not end the wait, so a pump whose slots
 * free one by one (a backlog) runs its relay step once per poll interval,
 * not once per job. */
static void
consume_until(app_t *app, kv_conn_t *kv, batch_t *b, uint64_t deadline)
{
    do {
        uint64_t now = shopd_now_us();
        int ms = now >= deadline ? 1 : (int)((deadline - now + 999) / 1000);
        read_new(app, kv, b, ms);
        dispatch_batch(app, kv, b);
    } while (shopd_now_us() < deadline && !atomic_load_explicit(&pump_stop, memory_order_acquire));
}

static void *
pump_main(void *arg)
{
    app_t *app = arg;
    kv_conn_t *kv = kv_conn_new(app->cfg->redis_url, (unsigned)app->cfg->jobs_poll_ms + 3000);
    if (kv == NULL)
        return NULL;
    ensure_groups(kv);
    batch_t b = {0};
    uint64_t last_slow = 0;
    while (!atomic_load_explicit(&pump_stop, memory_order_acquire)) {
        uint64_t t0 = shopd_now_us();
        bool more = relay_step(app, kv);
        uint64_t now = shopd_now_us();
        /* The slow part about once a second (or each visibility period, if shorter). */
        uint64_t every =
            (uint64_t)(app->cfg->jobs_visibility_ms < 1000 ? app->cfg->jobs_visibility_ms : 1000) *
            1000;
        if (now - last_slow >= every) {
            last_slow = now;
            reconcile(app);
            if (app->cfg->jobs_consume) {
                autoclaim(app, kv, &b);
                dispatch_batch(app, kv, &b);
            }
        }
        uint64_t deadline = more ? now : t0 + (uint64_t)app->cfg->jobs_poll_ms * 1000;
        if (app->cfg->jobs_consume)
            consume_until(app, kv, &b, deadline);
        else if (!more)
            usleep((useconds_t)app->cfg->jobs_poll_ms * 1000);
    }
    free(b.ts);
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
