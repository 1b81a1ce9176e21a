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

/** A stream entry handed to the blocking pool: which job, where to XACK, and
 *  what the pump's batched take (one statement per read) returned for it, so
 *  the runner needs no statement of its own to start. */
typedef struct jobs_task_s {
    uint64_t store_id, job_id;
    char kind[16];  /**< email, webhook, media, noop: the stream is JOBS_STREAM_PREFIX kind */
    char entry[48]; /**< the stream entry id */
    /* filled by the take (jobs_take_batch) */
    int attempts; /**< this attempt's number (the take counted it) */
    uint64_t outbox_id, endpoint_id;
    long long created; /**< the outbox row's creation (epoch seconds) */
    char okind[64];    /**< the outbox row's kind (order.placed, media.render...) */
    char *payload;     /**< the outbox row's payload (malloc'd) */
    char *facts;       /**< e-mail jobs: JOBS_MAIL_FACTS as JSON text (malloc'd), else NULL */
} jobs_task_t;

/** Frees a task and its strings (NULL is fine). */
void jobs_task_free(jobs_task_t *t);

/** Taken jobs of one store that one blocking task runs one after the other
 *  (api_job_send's arg): their outcomes are then written together. */
typedef struct jobs_chunk_s {
    size_t n;
    jobs_task_t *ts[];
} jobs_chunk_t;

/* What an e-mail needs from PostgreSQL, read for a whole batch of jobs by the
 * take statement (one statement per batch, not two per job): the shop (its
 * name and settings.email) and, for an order confirmation, the order's totals,
 * address and lines. An SQL expression over j (jobs) and o (outbox). */
#define JOBS_MAIL_FACTS                                                                            \
    "json_build_object('shop', (SELECT json_build_object('name', s.name, 'email', "                \
    "coalesce(s.settings->'email', '{}')) FROM stores s WHERE s.id = j.store_id), 'order', "       \
    "CASE WHEN o.payload->>'template' = 'order_confirmation' AND o.payload->>'order_id' ~ "        \
    "'^[0-9]{1,18}$' THEN (SELECT json_build_object('currency', x.currency, 'subtotal', "          \
    "x.subtotal, 'discount_total', x.discount_total, 'shipping_total', x.shipping_total, "         \
    "'tax_total', x.tax_total, 'total', x.total, 'shipping_address', x.shipping_address, "         \
    "'items', coalesce((SELECT json_agg(json_build_object('name', i.name, 'sku', i.sku, "          \
    "'quantity', i.quantity, 'line_total', i.line_total) ORDER BY i.id) FROM order_items i "       \
    "WHERE i.store_id = x.store_id AND i.order_id = x.id), '[]')) FROM orders x WHERE "            \
    "x.store_id = j.store_id AND x.id = (o.payload->>'order_id')::bigint) END)::text"

/** The consumer name of this process in every group (host-pid-random). */
const char *jobs_consumer(void);

/* relay.c: the pump thread */
int jobs_pump_start(app_t *app);
void jobs_pump_stop(app_t *app);

/** A job ended (its slot of SHOPD_JOBS_INFLIGHT is free): wakes the pump if it
 *  waits for room. Any thread. */
void jobs_slot_freed(void);

/* run.c: one chunk of jobs on a blocking lane (api_job_send's run and drop) */
void jobs_run(api_ctx_t *ctx, void *arg);
void jobs_drop(void *arg);
/** The pump's take of a batch of stream entries (ts[0..n-1], one statement):
 *  each entry whose job it takes is filled in and kept (taken[i] true); the
 *  others are duplicates (done, dead, gone with its store, or another consumer
 *  has it). OK, or an error (nothing taken: the entries stay pending). */
shopd_rc_t jobs_take_batch(db_conn_t *c, int visibility_ms, jobs_task_t **ts, size_t n,
                           bool *taken);
/** Hands taken jobs the blocking pool refused back (queued again, the take's
 *  attempt uncounted): their entries stay pending and XAUTOCLAIM brings them
 *  back. One statement. */
void jobs_untake(db_conn_t *c, jobs_task_t **ts, size_t n);

/* Outcome of an effect: SHOPD_OK (done), SHOPD_AGAIN (retry later),
 * SHOPD_INVALID (permanent: a dead letter now). err gets a line for last_error. */

/* mail.c */
/** Sends the e-mail of a job from its payload and facts (JOBS_MAIL_FACTS, read
 *  by the take): no statement. */
shopd_rc_t jobs_mail_job(api_ctx_t *ctx, uint64_t job_id, const char *payload, const char *facts,
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
    _Atomic uint64_t relayed;        /**< outbox rows turned into jobs */
    _Atomic uint64_t queued;         /**< XADDs (retries and re-queues included) */
    _Atomic uint64_t done;           /**< jobs finished */
    _Atomic uint64_t retried;        /**< failures scheduled for a retry */
    _Atomic uint64_t dead;           /**< jobs that became dead letters */
    _Atomic uint64_t duplicates;     /**< stream entries of a job already taken or done */
    _Atomic uint64_t claimed;        /**< entries taken over with XAUTOCLAIM */
    _Atomic uint64_t requeued;       /**< stale jobs re-queued by the reconciler */
    _Atomic uint64_t relay_errors;   /**< relay steps that failed (Redis or PostgreSQL down) */
    _Atomic uint64_t take_batches;   /**< take statements (each takes a batch of entries) */
    _Atomic uint64_t finish_batches; /**< outcome-writing statements (each writes a batch) */
    _Atomic long inflight;           /**< tasks on the blocking pool now */
} jobs_stats_t;
extern jobs_stats_t jobs_stats;
/** Replaces the per kind and state counts (relay thread, every few seconds). */
void jobs_counts_set(const char (*kinds)[16], const char (*states)[16], const long long *n,
                     size_t k);
size_t jobs_metrics(char *buf, size_t cap);

#endif
