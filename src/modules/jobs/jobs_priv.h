/*
 * jobs_priv.h: what the files of the jobs module share: the pump (relay.c),
 * the job runner (run.c), the mailer (mail.c), webhook delivery and the
 * endpoints' routes (webhook.c), the dead-letter routes (admin.c).
 */
#ifndef SHOPD_JOBS_PRIV_H
#define SHOPD_JOBS_PRIV_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "shopd/api.h"
#include "shopd/jobs.h"

/* One stream per job kind; the dead letters' stream is for eyes (XRANGE), the
 * jobs rows in PostgreSQL are the record operators act on. */
#define JOBS_STREAM_PREFIX "shopd:jobs:"
#define JOBS_STREAM_DEAD "shopd:jobs:dead"
#define JOBS_GROUP "shopd"
#define JOBS_STREAM_MAXLEN "100000"

/** A stream entry handed to the blocking pool: which job, and where to XACK. */
typedef struct jobs_task_s {
    uint64_t store_id, job_id;
    char kind[16];  /**< email, webhook, noop: the stream is JOBS_STREAM_PREFIX kind */
    char entry[48]; /**< the stream entry id */
} jobs_task_t;

/** The consumer name of this process in every group (host-pid-random). */
const char *jobs_consumer(void);

/* relay.c: the pump thread */
int jobs_pump_start(app_t *app);
void jobs_pump_stop(app_t *app);

/** A job ended (its slot of SHOPD_JOBS_INFLIGHT is free): wakes the pump if it
 *  waits for room. Any thread. */
void jobs_slot_freed(void);

/* run.c: one task on a blocking lane (api_job_send's run and drop) */
void jobs_run(api_ctx_t *ctx, void *arg);
void jobs_drop(void *arg);

/* Outcome of an effect: SHOPD_OK (done), SHOPD_AGAIN (retry later),
 * SHOPD_INVALID (permanent: a dead letter now). err gets a line for last_error. */

/* mail.c */
shopd_rc_t jobs_mail_job(api_ctx_t *ctx, db_conn_t *c, uint64_t job_id, const char *payload,
                         char *err, size_t errlen);
int jobs_mail_init(app_t *app, char *err, size_t errlen);

/* webhook.c */
shopd_rc_t jobs_webhook_job(api_ctx_t *ctx, db_conn_t *c, uint64_t job_id, uint64_t outbox_id,
                            uint64_t endpoint_id, int attempt, const char *event_type,
                            const char *payload, long long created, char *err, size_t errlen);
/** After a webhook job became a dead letter: if its endpoint has failed for
 *  SHOPD_WEBHOOK_DISABLE_AFTER without a success, disables it and writes an
 *  e-mail to each of the store's admins into the outbox (one statement). */
void jobs_webhook_dead(api_ctx_t *ctx, db_conn_t *c, uint64_t job_id);
net_reply_t *jobs_h_hook_list(api_ctx_t *ctx);
net_reply_t *jobs_h_hook_create(api_ctx_t *ctx);
/** The seal's context of store_id's webhook endpoint secrets. */
void jobs_hook_aad(char *out, size_t n, uint64_t store_id);
/** Start-up: seals again the endpoint secrets kept in plain text or under the
 *  previous key (compare-and-set per row). -1 with err if one is sealed under a
 *  key this process lacks (started with the wrong SHOPD_SECRETS_KEY). */
int jobs_reseal_rows(app_t *app, char *err, size_t errlen);
net_reply_t *jobs_h_hook_get(api_ctx_t *ctx);
net_reply_t *jobs_h_hook_update(api_ctx_t *ctx);
net_reply_t *jobs_h_hook_delete(api_ctx_t *ctx);
net_reply_t *jobs_h_hook_deliveries(api_ctx_t *ctx);
net_reply_t *jobs_h_hook_replay(api_ctx_t *ctx);

/* admin.c */
net_reply_t *jobs_h_dead_list(api_ctx_t *ctx);
net_reply_t *jobs_h_dead_get(api_ctx_t *ctx);
net_reply_t *jobs_h_dead_retry(api_ctx_t *ctx);
net_reply_t *jobs_h_dead_discard(api_ctx_t *ctx);
/** A list's limit and cursor from the query (limit 1..100, default 50; cursor an
 *  id): false with *reply set on a bad value. */
bool jobs_page(api_ctx_t *ctx, char *limit, char *cursor, net_reply_t **reply);
/** The {data, limit, next_cursor} answer of a page query whose first column is
 *  each row's JSON and second its id (one more row than limit was asked for). */
net_reply_t *jobs_page_reply(api_ctx_t *ctx, PGresult *r, const char *limit, const char *what);
/** Path parameter :id as text in buf (24 bytes), false when it is not an id. */
bool jobs_id_param(const api_ctx_t *ctx, char *buf);

/* counters for /metrics (relaxed: monotonic, read for display only) */
typedef struct jobs_stats_s {
    _Atomic uint64_t relayed;      /**< outbox rows turned into jobs */
    _Atomic uint64_t queued;       /**< XADDs (retries and re-queues included) */
    _Atomic uint64_t done;         /**< jobs finished */
    _Atomic uint64_t retried;      /**< failures scheduled for a retry */
    _Atomic uint64_t dead;         /**< jobs that became dead letters */
    _Atomic uint64_t duplicates;   /**< stream entries of a job already taken or done */
    _Atomic uint64_t claimed;      /**< entries taken over with XAUTOCLAIM */
    _Atomic uint64_t requeued;     /**< stale jobs re-queued by the reconciler */
    _Atomic uint64_t relay_errors; /**< relay steps that failed (Redis or PostgreSQL down) */
    _Atomic long inflight;         /**< tasks on the blocking pool now */
} jobs_stats_t;
extern jobs_stats_t jobs_stats;
/** Replaces the per kind and state counts (relay thread, every few seconds). */
void jobs_counts_set(const char (*kinds)[16], const char (*states)[16], const long long *n,
                     size_t k);
size_t jobs_metrics(char *buf, size_t cap);

#endif
