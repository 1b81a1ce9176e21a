/*
 * pool.c: the PostgreSQL connection pool and everything that runs on one
 * pooled connection: statements (prepared lazily, once per connection),
 * transactions with retry, pipelines, and the liveness handling that keeps a
 * lost server from ever crashing the process.
 *
 * The pool owns a fixed array of connections. Its mutex guards only the
 * in_use flags, the counters and the reconnect back-off; a connection's own
 * fields (PGconn, prepared-statement list, broken flag) belong to the thread
 * that borrowed it, and the mutex hand-off in acquire/release orders them.
 *
 * Savepoints of db_tx_batch are opened and closed lazily: the commands wait
 * in the connection's pending list and go out in one pipeline ahead of the
 * next statement (or the COMMIT), so an item of one statement stays one round
 * trip.
 *
 * A connection that fails is only marked broken where it failed; the repair
 * (PQreset) happens on the next db_acquire() so that the failing request
 * answers quickly and the reconnect cost lands on whoever needs the
 * connection next.
 */
#include "shopd/db.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "db/db_priv.h"
#include "shopd/log.h"

/* Retries of a transaction that failed with 40001 or 40P01 (so 1 + 3 attempts). */
#define DB_TX_RETRIES 3
/* After a failed (re)connect, acquires that would have to reconnect fail at once
 * for this long, so a down server does not park every worker in connect(). */
#define DB_RECONNECT_BACKOFF_US 250000
/* Savepoint commands waiting for the next statement (a batch item leaves at most three;
 * nested batches add more, and a full list is sent at once). */
#define DB_PENDING_MAX 8

/* One statement prepared on a connection: the server knows it by name; the
 * SQL text it was prepared with catches two callers using one name for
 * different SQL (a name or SQL built in a reused buffer can change behind the
 * same pointer, so only the text itself can say). */
typedef struct db_stmt_s {
    uint64_t name_hash;
    char *name;
    char *sql;
} db_stmt_t;

struct db_conn_s {
    db_pool_t *pool;
    PGconn *pg;       /* NULL until first connected */
    bool broken;      /* must be reset before use */
    bool fatal_seen;  /* the server sent FATAL while we were idle */
    bool in_use;      /* guarded by pool->mu */
    int tx_depth;     /* nesting of db_tx (savepoints below the outermost) */
    db_stmt_t *stmts; /* statements prepared on this server session */
    size_t nstmts, capstmts;
    char last_state[6];  /* SQLSTATE of the last failed statement, for db_tx's retry */
    bool retry_seen;     /* a statement failed with 40001/40P01 since db_tx last looked */
    char retry_state[6]; /* ... and which of the two */
    /* Transaction commands sent ahead of the next statement: the BEGIN of a db_tx
     * and the savepoint commands of nested ones and of batch items. */
    char pending[DB_PENDING_MAX][48];
    int npending;
    uint64_t pending_sent; /* counts sends of the pending list (a batch item's "did it open") */
    bool pending_failed;   /* a pending savepoint command failed: the transaction is lost */
};

struct db_pool_s {
    char *conninfo;
    int size;
    db_conn_t *conns;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* signalled when a connection is released */
    int in_use;
    int waiting; /* threads blocked in db_acquire now */
    uint64_t acquired, timeouts, resets;
    uint64_t retry_after_us; /* reconnect back-off deadline (monotonic) */
};

/* ---- shared helpers (db_priv.h) ---------------------------------------- */

static void
notice_to_log(void *arg, const PGresult *r)
{
    (void)arg;
    char line[512];
    db_first_line(PQresultErrorMessage(r), line, sizeof(line));
    /* Notices are advisory (e.g. "relation exists, skipping"); keep them out of
     * the normal log but reachable when debugging. */
    log_debug("msg=\"postgres notice\" text=\"%s\"", line);
}

PGconn *
db_connect(const char *conninfo)
{
    /* Later entries override earlier ones and the expanded dbname overrides
     * what precedes it, so these act as defaults that conninfo may replace. */
    const char *keys[] = {"connect_timeout", "fallback_application_name", "dbname", NULL};
    const char *vals[] = {DB_DEFAULT_CONNECT_TIMEOUT, "shopd", conninfo, NULL};
    PGconn *pg = PQconnectdbParams(keys, vals, 1);
    if (pg != NULL)
        PQsetNoticeReceiver(pg, notice_to_log, NULL);
    return pg;
}

void
db_first_line(const char *msg, char *out, size_t outlen)
{
    if (outlen == 0)
        return;
    if (msg == NULL)
        msg = "";
    size_t n = strcspn(msg, "\r\n");
    if (n >= outlen)
        n = outlen - 1;
    memcpy(out, msg, n);
    out[n] = '\0';
    /* Quotes would break the key="value" log format. */
    for (size_t i = 0; i < n; i++)
        if (out[i] == '"')
            out[i] = '\'';
}

/* ---- prepared-statement bookkeeping ------------------------------------ */

static uint64_t
fnv1a(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 0x100000001b3ULL;
    }
    return h;
}

/* A linear scan: a connection holds a few hundred statements at most and the
 * 64-bit hash compare is far cheaper than the round trip that follows. Only
 * the name is hashed (a few bytes); the SQL, often kilobytes, is not. */
static db_stmt_t *
stmt_find(db_conn_t *c, const char *name, uint64_t name_hash)
{
    for (size_t i = 0; i < c->nstmts; i++)
        if (c->stmts[i].name_hash == name_hash && strcmp(c->stmts[i].name, name) == 0)
            return &c->stmts[i];
    return NULL;
}

/* Whether sql is the text a statement was prepared with. A byte compare
 * rather than a stored hash of the text: strcmp runs many bytes a step where
 * FNV-1a takes one multiply a byte, and on a match (the common case) both read
 * the whole text, so this is what each execution pays instead of hashing its
 * SQL. */
static bool
same_sql(const char *prepared, const char *sql)
{
    return strcmp(prepared, sql) == 0;
}

static void
stmt_add(db_conn_t *c, const char *name, uint64_t name_hash, const char *sql)
{
    if (c->nstmts == c->capstmts) {
        c->capstmts = c->capstmts ? c->capstmts * 2 : 32;
        c->stmts = shopd_realloc(c->stmts, c->capstmts * sizeof(*c->stmts));
    }
    c->stmts[c->nstmts++] = (db_stmt_t){name_hash, shopd_strdup(name), shopd_strdup(sql)};
}

static void
stmt_remove(db_conn_t *c, db_stmt_t *s)
{
    shopd_free(s->name);
    shopd_free(s->sql);
    *s = c->stmts[--c->nstmts];
}

/* The server forgets prepared statements when the session ends; so do we. */
static void
stmt_forget_all(db_conn_t *c)
{
    for (size_t i = 0; i < c->nstmts; i++) {
        shopd_free(c->stmts[i].name);
        shopd_free(c->stmts[i].sql);
    }
    c->nstmts = 0;
}

/* ---- connection state --------------------------------------------------- */

static bool
state_is(const char *state, const char *want)
{
    return strcmp(state, want) == 0;
}

static bool
retryable(const char *state)
{
    return state_is(state, "40001") || state_is(state, "40P01");
}

/* Remembers that this statement's failure asks for the transaction to run again, so a
 * later statement's error (25P02, "transaction aborted") cannot hide it from db_tx. */
static void
note_failure(db_conn_t *c, const char *state)
{
    if (!retryable(state))
        return;
    c->retry_seen = true;
    snprintf(c->retry_state, sizeof(c->retry_state), "%s", state);
}

/* SQLSTATEs that mean the session is gone even if libpq has not noticed yet:
 * class 08 (connection exception) and 57P01..57P03 (shutdown, crash, not ready). */
static bool
state_means_lost(const char *state)
{
    return strncmp(state, "08", 2) == 0 || state_is(state, "57P01") || state_is(state, "57P02") ||
           state_is(state, "57P03");
}

static void
mark_broken(db_conn_t *c, const char *why)
{
    if (!c->broken) {
        char line[256];
        db_first_line(why, line, sizeof(line));
        log_warn("msg=\"postgres connection lost\" err=\"%s\"", line);
    }
    c->broken = true;
}

/* Common tail of every statement: a NULL result or a dead session marks the
 * connection broken and yields NULL; a failure records its SQLSTATE. */
static PGresult *
finish_result(db_conn_t *c, PGresult *r)
{
    if (r == NULL || PQstatus(c->pg) == CONNECTION_BAD) {
        mark_broken(c, PQerrorMessage(c->pg));
        PQclear(r);
        return NULL;
    }
    ExecStatusType st = PQresultStatus(r);
    if (st == PGRES_FATAL_ERROR || st == PGRES_NONFATAL_ERROR || st == PGRES_BAD_RESPONSE) {
        const char *state = db_sqlstate(r);
        snprintf(c->last_state, sizeof(c->last_state), "%s", state);
        note_failure(c, state);
        if (state_means_lost(state)) {
            mark_broken(c, PQresultErrorMessage(r));
            PQclear(r);
            return NULL;
        }
    }
    return r;
}

/* An idle session has nothing to say; if its socket is readable the server has
 * closed it (pg_terminate_backend, restart) or sent a FATAL. Catching that here
 * means the borrower gets a working connection instead of a first failure. */
static void
check_idle(db_conn_t *c)
{
    int fd = PQsocket(c->pg);
    if (fd < 0) {
        mark_broken(c, "no socket");
        return;
    }
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, 0) <= 0)
        return;
    if (!PQconsumeInput(c->pg)) {
        mark_broken(c, PQerrorMessage(c->pg));
        return;
    }
    /* Parsing what arrived runs the notice receiver (which flags a FATAL);
     * PQnotifies parses and drops notifications nobody listens for. */
    PGnotify *n;
    while ((n = PQnotifies(c->pg)) != NULL)
        PQfreemem(n);
    if (c->fatal_seen || PQstatus(c->pg) == CONNECTION_BAD)
        mark_broken(c, "closed by the server while idle");
}

/* Notices on pooled sessions. A FATAL that arrives while the session is idle
 * (pg_terminate_backend, shutdown) reaches libpq as a notice, before the EOF
 * that would tell libpq the session is gone; remember it. */
static void
pool_notice(void *arg, const PGresult *r)
{
    db_conn_t *c = arg;
    const char *sev = PQresultErrorField(r, PG_DIAG_SEVERITY_NONLOCALIZED);
    if (sev != NULL && (strcmp(sev, "FATAL") == 0 || strcmp(sev, "PANIC") == 0))
        c->fatal_seen = true;
    notice_to_log(NULL, r);
}

/* Opens c's session and hooks its notices. */
static void
conn_open(db_conn_t *c)
{
    c->pg = db_connect(c->pool->conninfo);
    if (c->pg != NULL)
        PQsetNoticeReceiver(c->pg, pool_notice, c);
}

/* Makes c usable: connects it the first time, resets it after a failure.
 * Returns 0, or -1 when PostgreSQL cannot be reached. Called by the borrower,
 * outside the pool mutex (connecting may take connect_timeout). */
static int
conn_ensure(db_conn_t *c)
{
    db_pool_t *pool = c->pool;
    if (c->pg != NULL && !c->broken)
        check_idle(c);
    if (c->pg != NULL && !c->broken && PQstatus(c->pg) == CONNECTION_OK)
        return 0;

    pthread_mutex_lock(&pool->mu);
    bool backing_off = shopd_now_us() < pool->retry_after_us;
    pthread_mutex_unlock(&pool->mu);
    if (backing_off)
        return -1;

    bool reset = c->pg != NULL;
    stmt_forget_all(c);
    c->tx_depth = 0;
    c->npending = 0;
    c->fatal_seen = false;
    if (reset) {
        PQreset(c->pg);
        /* A reset session must not inherit pipeline state from the lost one. */
        if (PQstatus(c->pg) == CONNECTION_OK && PQpipelineStatus(c->pg) != PQ_PIPELINE_OFF) {
            PQfinish(c->pg);
            conn_open(c);
        }
    } else {
        conn_open(c);
    }
    if (c->pg == NULL || PQstatus(c->pg) != CONNECTION_OK) {
        char line[256];
        db_first_line(c->pg ? PQerrorMessage(c->pg) : "out of memory", line, sizeof(line));
        log_warn("msg=\"postgres connect failed\" err=\"%s\"", line);
        c->broken = true;
        pthread_mutex_lock(&pool->mu);
        pool->retry_after_us = shopd_now_us() + DB_RECONNECT_BACKOFF_US;
        pthread_mutex_unlock(&pool->mu);
        return -1;
    }
    c->broken = false;
    pthread_mutex_lock(&pool->mu);
    if (reset)
        pool->resets++;
    pool->retry_after_us = 0;
    pthread_mutex_unlock(&pool->mu);
    if (reset)
        log_info("msg=\"postgres connection restored\"");
    return 0;
}

/* ---- pool ---------------------------------------------------------------- */

db_pool_t *
db_pool_new(const char *conninfo, int size, char *err, size_t errlen)
{
    if (conninfo == NULL || size < 1) {
        snprintf(err, errlen, "database pool: need a URL and a size >= 1");
        return NULL;
    }
    char *perr = NULL;
    PQconninfoOption *opts = PQconninfoParse(conninfo, &perr);
    if (opts == NULL) {
        char line[256];
        db_first_line(perr ? perr : "out of memory", line, sizeof(line));
        snprintf(err, errlen, "invalid database URL: %s", line);
        PQfreemem(perr);
        return NULL;
    }
    PQconninfoFree(opts);

    db_pool_t *pool = shopd_calloc(1, sizeof(*pool));
    pool->conninfo = shopd_strdup(conninfo);
    pool->size = size;
    pool->conns = shopd_calloc((size_t)size, sizeof(*pool->conns));
    for (int i = 0; i < size; i++)
        pool->conns[i].pool = pool;
    pthread_mutex_init(&pool->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    /* Timed waits against the monotonic clock: a wall-clock jump must not
     * stretch or cut short an acquire timeout. */
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&pool->cv, &ca);
    pthread_condattr_destroy(&ca);

    /* One eager connection: a wrong URL or a down server fails start-up with
     * one clear line instead of the first request. */
    db_conn_t *c = &pool->conns[0];
    conn_open(c);
    if (c->pg == NULL || PQstatus(c->pg) != CONNECTION_OK) {
        char line[256];
        db_first_line(c->pg ? PQerrorMessage(c->pg) : "out of memory", line, sizeof(line));
        snprintf(err, errlen, "cannot connect to PostgreSQL: %s", line);
        db_pool_free(pool);
        return NULL;
    }
    return pool;
}

void
db_pool_free(db_pool_t *pool)
{
    if (pool == NULL)
        return;
    if (pool->in_use > 0)
        log_error("msg=\"db pool freed with connections still borrowed\" in_use=%d", pool->in_use);
    for (int i = 0; i < pool->size; i++) {
        db_conn_t *c = &pool->conns[i];
        if (c->pg != NULL)
            PQfinish(c->pg);
        stmt_forget_all(c);
        shopd_free(c->stmts);
    }
    pthread_cond_destroy(&pool->cv);
    pthread_mutex_destroy(&pool->mu);
    shopd_free(pool->conns);
    shopd_free(pool->conninfo);
    shopd_free(pool);
}

/* Prefers a free connection that is already up, so a pool that is larger than
 * the load never opens its idle tail. Caller holds pool->mu. */
static db_conn_t *
pick_free(db_pool_t *pool)
{
    db_conn_t *fallback = NULL;
    for (int i = 0; i < pool->size; i++) {
        db_conn_t *c = &pool->conns[i];
        if (c->in_use)
            continue;
        if (c->pg != NULL && !c->broken)
            return c;
        if (fallback == NULL)
            fallback = c;
    }
    return fallback;
}

static void
give_back(db_conn_t *c)
{
    db_pool_t *pool = c->pool;
    pthread_mutex_lock(&pool->mu);
    c->in_use = false;
    pool->in_use--;
    pthread_cond_signal(&pool->cv);
    pthread_mutex_unlock(&pool->mu);
}

db_conn_t *
db_acquire(db_pool_t *pool, unsigned timeout_ms)
{
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }

    pthread_mutex_lock(&pool->mu);
    db_conn_t *c;
    while ((c = pick_free(pool)) == NULL) {
        pool->waiting++;
        int rc = pthread_cond_timedwait(&pool->cv, &pool->mu, &deadline);
        pool->waiting--;
        if (rc == ETIMEDOUT) {
            c = pick_free(pool);
            break;
        }
    }
    if (c == NULL) {
        pool->timeouts++;
        pthread_mutex_unlock(&pool->mu);
        return NULL;
    }
    c->in_use = true;
    pool->in_use++;
    pthread_mutex_unlock(&pool->mu);

    if (conn_ensure(c) != 0) {
        give_back(c);
        return NULL;
    }
    pthread_mutex_lock(&pool->mu);
    pool->acquired++;
    pthread_mutex_unlock(&pool->mu);
    return c;
}

void
db_release(db_conn_t *c)
{
    if (c == NULL)
        return;
    if (c->pg != NULL && !c->broken) {
        if (PQpipelineStatus(c->pg) != PQ_PIPELINE_OFF) {
            mark_broken(c, "released in pipeline mode");
        } else {
            switch (PQtransactionStatus(c->pg)) {
            case PQTRANS_IDLE:
                break;
            case PQTRANS_INTRANS:
            case PQTRANS_INERROR: {
                /* The next borrower must start outside any transaction. */
                PGresult *r = finish_result(c, PQexec(c->pg, "ROLLBACK"));
                if (r != NULL && PQresultStatus(r) != PGRES_COMMAND_OK)
                    mark_broken(c, "rollback on release failed");
                PQclear(r);
                break;
            }
            default:
                /* A command still in flight: only a new session is clean. */
                mark_broken(c, "released with a command in progress");
                break;
            }
        }
    }
    c->tx_depth = 0;
    c->npending = 0;
    give_back(c);
}

PGconn *
db_pg(db_conn_t *c)
{
    return c ? c->pg : NULL;
}

void
db_pool_stats(db_pool_t *pool, db_pool_stats_t *out)
{
    pthread_mutex_lock(&pool->mu);
    out->size = pool->size;
    out->in_use = pool->in_use;
    out->waiting = pool->waiting;
    out->acquired = pool->acquired;
    out->timeouts = pool->timeouts;
    out->resets = pool->resets;
    pthread_mutex_unlock(&pool->mu);
}

/* ---- statements ---------------------------------------------------------- */

static bool
usable(db_conn_t *c)
{
    return c != NULL && c->pg != NULL && !c->broken;
}

/* Runs a named statement, preparing it first on this session if needed.
 * Returns the raw libpq result (finish_result is applied by the caller). */
static PGresult *
exec_named(db_conn_t *c, const char *name, const char *sql, int nparams, const char *const *params)
{
    uint64_t nh = fnv1a(name);
    for (int attempt = 0;; attempt++) {
        db_stmt_t *s = stmt_find(c, name, nh);
        if (s != NULL && !same_sql(s->sql, sql)) {
            /* Two call sites share a name: running the other SQL would be a
             * silent wrong answer, so run this one unprepared and shout. */
            log_error("msg=\"prepared statement name reused for different SQL\" name=%s", name);
            return PQexecParams(c->pg, sql, nparams, NULL, params, NULL, NULL, 0);
        }
        if (s == NULL) {
            PGresult *p = PQprepare(c->pg, name, sql, nparams, NULL);
            if (p == NULL || PQresultStatus(p) != PGRES_COMMAND_OK)
                return p;
            PQclear(p);
            stmt_add(c, name, nh, sql);
        }
        PGresult *r = PQexecPrepared(c->pg, name, nparams, params, NULL, NULL, 0);
        if (r == NULL || attempt > 0 || PQresultStatus(r) != PGRES_FATAL_ERROR)
            return r;
        /* The session lost the statement (someone ran DEALLOCATE or DISCARD
         * through db_pg) or a schema change altered its result type. Outside a
         * transaction one fresh prepare is safe; inside, the error stands. */
        const char *state = db_sqlstate(r);
        bool lost = state_is(state, "26000");
        bool stale =
            state_is(state, "0A000") && strstr(PQresultErrorMessage(r), "cached plan") != NULL;
        if ((!lost && !stale) || PQtransactionStatus(c->pg) != PQTRANS_IDLE)
            return r;
        PQclear(r);
        s = stmt_find(c, name, nh);
        if (s != NULL)
            stmt_remove(c, s);
        if (stale) {
            char *quoted = PQescapeIdentifier(c->pg, name, strlen(name));
            if (quoted == NULL)
                return NULL;
            char sqlbuf[512];
            snprintf(sqlbuf, sizeof(sqlbuf), "DEALLOCATE %s", quoted);
            PQfreemem(quoted);
            PQclear(PQexec(c->pg, sqlbuf));
        }
    }
}

PGresult *
db_exec(db_conn_t *c, const char *name, const char *sql, int nparams, const char *const *params)
{
    if (!usable(c))
        return NULL;
    if (c->npending > 0) {
        /* Savepoint commands are waiting: send them with this statement, one round trip. */
        db_query_t q = {name, sql, nparams, params};
        PGresult *r = NULL;
        db_pipeline(c, &q, 1, &r);
        return r;
    }
    c->last_state[0] = '\0';
    PGresult *r = name ? exec_named(c, name, sql, nparams, params)
                       : PQexecParams(c->pg, sql, nparams, NULL, params, NULL, NULL, 0);
    return finish_result(c, r);
}

const char *
db_sqlstate(const PGresult *r)
{
    const char *s = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    return s ? s : "";
}

shopd_rc_t
db_result_rc(const PGresult *r)
{
    if (r == NULL)
        return SHOPD_UNAVAILABLE;
    switch (PQresultStatus(r)) {
    case PGRES_COMMAND_OK:
    case PGRES_TUPLES_OK:
    case PGRES_SINGLE_TUPLE:
    case PGRES_EMPTY_QUERY:
    case PGRES_PIPELINE_SYNC:
        return SHOPD_OK;
    case PGRES_FATAL_ERROR:
        break;
    default:
        return SHOPD_ERR;
    }
    const char *s = db_sqlstate(r);
    /* No SQLSTATE means libpq produced the error itself: the connection failed. */
    if (s[0] == '\0' || state_means_lost(s))
        return SHOPD_UNAVAILABLE;
    if (state_is(s, "23505") || state_is(s, "23P01") || state_is(s, "40001") ||
        state_is(s, "40P01"))
        return SHOPD_CONFLICT;
    if (state_is(s, "23503"))
        return SHOPD_NOTFOUND;
    if (strncmp(s, "22", 2) == 0 || state_is(s, "23514") || state_is(s, "23502"))
        return SHOPD_INVALID;
    return SHOPD_ERR;
}

/* Runs a command that takes no parameters and returns its status. */
static shopd_rc_t
simple_cmd(db_conn_t *c, const char *sql)
{
    PGresult *r = db_exec(c, NULL, sql, 0, NULL);
    shopd_rc_t rc = db_result_rc(r);
    PQclear(r);
    return rc;
}

shopd_rc_t
db_ping(db_conn_t *c)
{
    PGresult *r = db_exec(c, NULL, "SELECT 1", 0, NULL);
    shopd_rc_t rc = db_result_rc(r) == SHOPD_OK ? SHOPD_OK : SHOPD_UNAVAILABLE;
    PQclear(r);
    return rc;
}

/* ---- pipelines ----------------------------------------------------------- */

/* What each sent item of a pipeline is, so results can be matched in order. */
typedef struct db_pitem_s {
    int query;    /* index into qs */
    bool prepare; /* a PQsendPrepare for qs[query] rather than its execution */
} db_pitem_t;

/* Reads the results of one pipelined item: exactly one result then NULL. */
static PGresult *
pipeline_take(db_conn_t *c, bool *lost)
{
    PGresult *r = PQgetResult(c->pg), *extra;
    if (r == NULL) {
        *lost = true;
        return NULL;
    }
    while ((extra = PQgetResult(c->pg)) != NULL) {
        /* Not expected for plain statements; keep the last, like PQexec. */
        PQclear(r);
        r = extra;
        if (PQstatus(c->pg) == CONNECTION_BAD)
            break;
    }
    if (PQstatus(c->pg) == CONNECTION_BAD)
        *lost = true;
    return r;
}

static shopd_rc_t
pipeline_run(db_conn_t *c, const db_query_t *qs, size_t n, PGresult **results)
{
    for (size_t i = 0; i < n; i++)
        results[i] = NULL;
    if (!usable(c))
        return SHOPD_UNAVAILABLE;
    if (n == 0)
        return SHOPD_OK;

    shopd_rc_t rc = SHOPD_OK;
    db_pitem_t *items = shopd_calloc(2 * n, sizeof(*items));
    uint64_t *new_name = shopd_calloc(n, sizeof(*new_name));
    size_t nitems = 0;
    bool lost = false;
    c->last_state[0] = '\0';

    if (!PQenterPipelineMode(c->pg)) {
        mark_broken(c, "cannot enter pipeline mode");
        rc = SHOPD_UNAVAILABLE;
        goto out;
    }
    /* Send everything, then one sync: one round trip. Outside an explicit
     * transaction the statements share one implicit transaction up to the sync,
     * so a failure undoes the earlier ones too. Blocking mode is fine for the
     * small batches used here; a huge pipeline could fill both socket buffers. */
    for (size_t i = 0; i < n; i++) {
        const db_query_t *q = &qs[i];
        int ok;
        if (q->name != NULL) {
            uint64_t nh = fnv1a(q->name);
            db_stmt_t *s = stmt_find(c, q->name, nh);
            const char *prepared = s ? s->sql : NULL; /* the text the name stands for */
            /* A name new to the session may come twice in one pipeline: the
             * first prepares it, with its own text. */
            for (size_t j = 0; j < i && prepared == NULL; j++)
                if (new_name[j] == nh && qs[j].name && strcmp(qs[j].name, q->name) == 0)
                    prepared = qs[j].sql;
            if (prepared != NULL && !same_sql(prepared, q->sql)) {
                log_error("msg=\"prepared statement name reused for different SQL\" name=%s",
                          q->name);
                ok = PQsendQueryParams(c->pg, q->sql, q->nparams, NULL, q->params, NULL, NULL, 0);
            } else {
                if (prepared == NULL) {
                    if (!PQsendPrepare(c->pg, q->name, q->sql, q->nparams, NULL))
                        goto send_failed;
                    items[nitems++] = (db_pitem_t){(int)i, true};
                    new_name[i] = nh;
                }
                ok = PQsendQueryPrepared(c->pg, q->name, q->nparams, q->params, NULL, NULL, 0);
            }
        } else {
            ok = PQsendQueryParams(c->pg, q->sql, q->nparams, NULL, q->params, NULL, NULL, 0);
        }
        items[nitems++] = (db_pitem_t){(int)i, false};
        if (!ok)
            goto send_failed;
    }
    if (!PQpipelineSync(c->pg))
        goto send_failed;

    for (size_t k = 0; k < nitems && !lost; k++) {
        PGresult *r = pipeline_take(c, &lost);
        if (r == NULL)
            break;
        const db_query_t *q = &qs[items[k].query];
        ExecStatusType st = PQresultStatus(r);
        if (items[k].prepare) {
            if (st == PGRES_COMMAND_OK) {
                stmt_add(c, q->name, new_name[items[k].query], q->sql);
                PQclear(r);
            } else {
                /* Keep the prepare's error: it explains why the execution that
                 * follows was aborted. */
                PQclear(results[items[k].query]);
                results[items[k].query] = r;
            }
            continue;
        }
        if (results[items[k].query] != NULL) {
            PQclear(r); /* the failed prepare already says what went wrong */
        } else {
            results[items[k].query] = r;
        }
    }
    if (!lost) {
        PGresult *sync = PQgetResult(c->pg);
        if (sync == NULL || PQresultStatus(sync) != PGRES_PIPELINE_SYNC)
            lost = true;
        PQclear(sync);
    }
    if (lost || !PQexitPipelineMode(c->pg)) {
        mark_broken(c, PQerrorMessage(c->pg));
        rc = SHOPD_UNAVAILABLE;
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        shopd_rc_t one = db_result_rc(results[i]);
        if (one != SHOPD_OK)
            note_failure(c, db_sqlstate(results[i]));
        if (one != SHOPD_OK) {
            if (results[i] != NULL && c->last_state[0] == '\0')
                snprintf(c->last_state, sizeof(c->last_state), "%s", db_sqlstate(results[i]));
            /* PIPELINE_ABORTED entries follow the real failure; report that one. */
            if (rc == SHOPD_OK)
                rc = one;
        }
    }
    goto out;

send_failed:
    /* A send that fails leaves the protocol state unknown: start a new session. */
    mark_broken(c, PQerrorMessage(c->pg));
    rc = SHOPD_UNAVAILABLE;
out:
    if (rc == SHOPD_UNAVAILABLE) {
        /* Statements prepared in a pipeline that never completed are unknown to
         * the next session anyway; results of a lost pipeline are meaningless. */
        for (size_t i = 0; i < n; i++) {
            PQclear(results[i]);
            results[i] = NULL;
        }
    }
    shopd_free(new_name);
    shopd_free(items);
    return rc;
}

shopd_rc_t
db_pipeline(db_conn_t *c, const db_query_t *qs, size_t n, PGresult **results)
{
    if (!usable(c) || c->npending == 0)
        return pipeline_run(c, qs, n, results);
    /* The pending savepoint commands go first, in the same round trip. If one fails,
     * the statements behind it come back aborted and the batch that queued it is lost. */
    size_t np = (size_t)c->npending;
    db_query_t *all = shopd_calloc(np + n, sizeof(*all));
    PGresult **res = shopd_calloc(np + n, sizeof(*res));
    for (size_t i = 0; i < np; i++)
        all[i] = (db_query_t){NULL, c->pending[i], 0, NULL};
    for (size_t i = 0; i < n; i++)
        all[np + i] = qs[i];
    c->npending = 0;
    c->pending_sent++;
    shopd_rc_t rc = pipeline_run(c, all, np + n, res);
    for (size_t i = 0; i < np; i++) {
        if (rc != SHOPD_UNAVAILABLE && db_result_rc(res[i]) != SHOPD_OK) {
            if (!c->pending_failed)
                log_error("msg=\"savepoint command failed\" sql=\"%s\" sqlstate=%s", all[i].sql,
                          db_sqlstate(res[i]));
            c->pending_failed = true;
        }
        PQclear(res[i]);
    }
    for (size_t i = 0; i < n; i++)
        results[i] = res[np + i];
    shopd_free(res);
    shopd_free(all);
    return rc;
}

void
db_pipeline_apart(db_conn_t *c, const db_query_t *qs, size_t n, PGresult **results)
{
    if (db_pipeline(c, qs, n, results) == SHOPD_OK)
        return;
    for (size_t i = 0; i < n; i++) {
        if (results[i] == NULL || PQresultStatus(results[i]) == PGRES_PIPELINE_ABORTED) {
            PQclear(results[i]);
            results[i] = db_exec(c, qs[i].name, qs[i].sql, qs[i].nparams, qs[i].params);
        }
    }
}

/* Sends the pending savepoint commands now (nothing else to carry them). */
static shopd_rc_t
pending_flush(db_conn_t *c)
{
    if (c->npending == 0)
        return SHOPD_OK;
    shopd_rc_t rc = db_pipeline(c, NULL, 0, NULL);
    return c->pending_failed && rc == SHOPD_OK ? SHOPD_ERR : rc;
}

static void
pending_add(db_conn_t *c, const char *verb, const char *sp)
{
    if (c->npending == DB_PENDING_MAX)
        pending_flush(c);
    snprintf(c->pending[c->npending++], sizeof(c->pending[0]), "%s%s%s", verb, sp[0] ? " " : "",
             sp);
}

/* True while db_tx's BEGIN waits for the transaction's first statement. */
static bool
begin_pending(const db_conn_t *c)
{
    return c->npending > 0 && strcmp(c->pending[0], "BEGIN") == 0;
}

/* The transaction status once pending savepoint commands count: a failed item's
 * ROLLBACK TO still waiting makes libpq say INERROR though the transaction is fine,
 * so it is sent first. */
static PGTransactionStatusType
tx_status(db_conn_t *c)
{
    if (c->npending > 0 && PQtransactionStatus(c->pg) == PQTRANS_INERROR)
        pending_flush(c);
    if (!usable(c))
        return PQTRANS_UNKNOWN;
    /* A BEGIN not yet sent is a transaction all the same (db_tx). */
    if (begin_pending(c))
        return PQTRANS_INTRANS;
    return PQtransactionStatus(c->pg);
}

/* ---- transactions -------------------------------------------------------- */

/* A db_tx inside a transaction becomes a savepoint, so helpers that use db_tx
 * compose. No retry here: a serialization failure aborts the whole outer
 * transaction, and only the outermost db_tx can run it again. */
static shopd_rc_t
tx_nested(db_conn_t *c, db_tx_fn fn, void *arg)
{
    char sp[64];
    snprintf(sp, sizeof(sp), "shopd_sp_%d", ++c->tx_depth);
    /* Opened and released lazily (pending commands), like a batch item's: the
     * commands share the round trip of the next statement. */
    pending_add(c, "SAVEPOINT", sp);
    uint64_t sent = c->pending_sent;
    shopd_rc_t rc = fn(c, arg);
    if (!usable(c)) {
        rc = SHOPD_UNAVAILABLE;
    } else if (c->pending_sent == sent) {
        c->npending--; /* fn sent nothing: the savepoint was never opened */
    } else if (rc == SHOPD_OK && tx_status(c) != PQTRANS_INERROR) {
        pending_add(c, "RELEASE SAVEPOINT", sp);
    } else {
        char state[6], sql[96];
        memcpy(state, c->last_state, sizeof(state));
        if (rc == SHOPD_OK)
            rc = SHOPD_ERR; /* fn swallowed a failed statement */
        /* Whatever is pending closes savepoints inside sp, which this undoes anyway. */
        c->npending = 0;
        snprintf(sql, sizeof(sql), "ROLLBACK TO SAVEPOINT %s", sp);
        shopd_rc_t rb = simple_cmd(c, sql);
        if (rb == SHOPD_UNAVAILABLE)
            rc = rb;
        /* Keep the inner failure visible to an outer db_tx's retry check. */
        memcpy(c->last_state, state, sizeof(state));
    }
    c->tx_depth--;
    return rc;
}

shopd_rc_t
db_tx(db_conn_t *c, db_tx_fn fn, void *arg)
{
    if (!usable(c))
        return SHOPD_UNAVAILABLE;
    PGTransactionStatusType ts = tx_status(c);
    if (ts == PQTRANS_INTRANS)
        return tx_nested(c, fn, arg);
    if (ts != PQTRANS_IDLE)
        return SHOPD_ERR;

    for (int attempt = 0;; attempt++) {
        c->npending = 0;
        c->pending_failed = false;
        /* BEGIN goes out with the transaction's first statement (pending). */
        pending_add(c, "BEGIN", "");
        c->last_state[0] = '\0';
        c->retry_seen = false;
        shopd_rc_t rc = fn(c, arg);
        if (!usable(c))
            return SHOPD_UNAVAILABLE;

        char state[6];
        if (rc == SHOPD_OK && tx_status(c) == PQTRANS_INERROR) {
            /* COMMIT of a failed transaction "succeeds" as ROLLBACK; never
             * report that as success. */
            log_error("msg=\"transaction function returned ok after a failed statement\" "
                      "sqlstate=%s",
                      c->last_state);
            rc = SHOPD_ERR;
        }
        if (rc == SHOPD_OK && c->pending_failed)
            rc = SHOPD_ERR;
        if (rc == SHOPD_OK) {
            /* Pending savepoint releases ride along with the COMMIT. */
            PGresult *r = db_exec(c, NULL, "COMMIT", 0, NULL);
            rc = db_result_rc(r);
            if (rc == SHOPD_OK && strcmp(PQcmdStatus(r), "COMMIT") != 0)
                rc = SHOPD_ERR;
            if (rc == SHOPD_OK && c->pending_failed)
                rc = SHOPD_ERR;
            PQclear(r);
            if (rc == SHOPD_OK || !usable(c))
                return rc;
            /* A failed COMMIT (e.g. SERIALIZABLE's 40001) has ended the transaction. */
            memcpy(state, c->last_state, sizeof(state));
            if (PQtransactionStatus(c->pg) != PQTRANS_IDLE &&
                simple_cmd(c, "ROLLBACK") == SHOPD_UNAVAILABLE)
                return SHOPD_UNAVAILABLE;
        } else {
            memcpy(state, c->last_state, sizeof(state));
            /* fn sent nothing: the BEGIN never left, there is nothing to end. */
            bool opened = !begin_pending(c);
            c->npending = 0; /* savepoints of this transaction: the ROLLBACK ends them all */
            if (opened && simple_cmd(c, "ROLLBACK") == SHOPD_UNAVAILABLE)
                return SHOPD_UNAVAILABLE;
        }
        /* A deadlock or serialization failure anywhere in the attempt, even one fn
         * reported as a later statement's error, asks for a fresh run. */
        if (!retryable(state) && c->retry_seen)
            memcpy(state, c->retry_state, sizeof(state));
        if (!retryable(state) || attempt >= DB_TX_RETRIES) {
            memcpy(c->last_state, state, sizeof(state));
            return retryable(state) && rc != SHOPD_UNAVAILABLE ? SHOPD_CONFLICT : rc;
        }
        /* Jitter so two deadlocked peers do not collide again in lock step. */
        usleep((useconds_t)(1000 * (attempt + 1) + shopd_now_us() % 2000));
        log_debug("msg=\"retrying transaction\" sqlstate=%s attempt=%d", state, attempt + 2);
    }
}

/* ---- batches ------------------------------------------------------------- */

typedef struct db_batch_s {
    size_t n;
    db_item_fn fn;
    void *arg;
    shopd_rc_t *results;
} db_batch_t;

/* The body of a batch's transaction: each item under savepoint shopd_sp_<depth>,
 * opened and closed lazily (pending commands) so the commands share the round trip
 * of the item's first statement. Returns OK unless the batch as a whole is lost;
 * an item's failure is only its result. */
static shopd_rc_t
batch_body(db_conn_t *c, void *arg)
{
    db_batch_t *b = arg;
    if (b->results != NULL)
        for (size_t i = 0; i < b->n; i++)
            b->results[i] = SHOPD_ERR;
    for (size_t i = 0; i < b->n; i++) {
        char sp[32];
        snprintf(sp, sizeof(sp), "shopd_sp_%d", ++c->tx_depth);
        pending_add(c, "SAVEPOINT", sp);
        uint64_t sent = c->pending_sent;
        bool retry_before = c->retry_seen;
        c->retry_seen = false;
        shopd_rc_t rc = b->fn(c, i, b->arg);
        c->tx_depth--;
        if (!usable(c))
            return SHOPD_UNAVAILABLE;
        if (c->pending_failed)
            return SHOPD_ERR;
        if (c->retry_seen) {
            /* The whole transaction must run again, every item from scratch. */
            memcpy(c->last_state, c->retry_state, sizeof(c->last_state));
            return SHOPD_CONFLICT;
        }
        c->retry_seen = retry_before;
        if (c->pending_sent == sent) {
            /* The item sent nothing: its savepoint was never opened; drop it and keep
             * the previous item's close waiting. */
            c->npending--;
        } else {
            if (rc == SHOPD_OK && PQtransactionStatus(c->pg) == PQTRANS_INERROR) {
                log_error("msg=\"batch item returned ok after a failed statement\" sqlstate=%s",
                          c->last_state);
                rc = SHOPD_ERR;
            }
            if (rc != SHOPD_OK)
                pending_add(c, "ROLLBACK TO SAVEPOINT", sp);
            pending_add(c, "RELEASE SAVEPOINT", sp);
        }
        if (b->results != NULL)
            b->results[i] = rc;
    }
    /* A last failed item leaves the transaction aborted until its ROLLBACK TO is sent. */
    if (tx_status(c) == PQTRANS_INERROR || c->pending_failed)
        return usable(c) ? SHOPD_ERR : SHOPD_UNAVAILABLE;
    return SHOPD_OK;
}

shopd_rc_t
db_tx_batch(db_conn_t *c, size_t n, db_item_fn fn, void *arg, shopd_rc_t *results)
{
    if (n == 0)
        return SHOPD_OK;
    db_batch_t b = {n, fn, arg, results};
    shopd_rc_t rc = db_tx(c, batch_body, &b);
    if (rc != SHOPD_OK && results != NULL)
        for (size_t i = 0; i < n; i++)
            results[i] = rc;
    return rc;
}
