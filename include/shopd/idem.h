/*
 * idem.h: Idempotency-Key on mutating routes, with Stripe's semantics. The
 * first answer to a (store, key) is kept for 24 h; a retry with the same
 * request gets it again byte for byte, plus Idempotent-Replayed: true; the
 * same key with another request (method, route, path parameters, query, body
 * or caller) is 422 idempotency_mismatch; a retry while the first still runs
 * is 409 idempotency_in_flight. Refusals that did nothing (400, 401, 403,
 * 422 validation_failed, 429, 503) are not kept, so a corrected retry runs.
 * Platform routes use store 0.
 *
 * Two stores of keys:
 * - Redis, for ordinary routes, handled by the dispatcher (idem_begin before
 *   the handler, idem_end with its answer): shopd:idem:<store>:<key>, set NX
 *   as "in flight" and overwritten with the answer. Redis down: 503, the
 *   mutation does not run without the guarantee. A Redis that loses its data
 *   (no AOF, a failover) forgets keys: a retry after that runs again.
 * - PostgreSQL, for routes flagged API_IDEM_SELF (checkout, payment, refund):
 *   the handler claims the key in the transaction of its effect
 *   (idem_pg_claim) and saves the answer in it before COMMIT (idem_pg_save),
 *   so the key and the effect commit or vanish together. In a db_tx body:
 *
 *       uint8_t fp[IDEM_FP_LEN];
 *       idem_fingerprint(ctx, fp);               (before the transaction)
 *       switch (idem_pg_claim(c, store, key, fp, &stored)) {
 *       case IDEM_NEW:      do the effect, build reply r, then
 *                           idem_pg_save_reply(c, store, key, r); return OK (commit)
 *       case IDEM_REPLAY:   answer idem_reply_from_stored(&stored); return non-OK (roll back)
 *       case IDEM_MISMATCH: answer idem_mismatch_reply(); roll back
 *       ...
 *       }
 *   Sweep with idem_pg_sweep(c, IDEM_TTL_S, 1000) from a periodic job.
 */
#ifndef SHOPD_IDEM_H
#define SHOPD_IDEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shopd/api.h"

#define IDEM_KEY_MAX 255 /**< longest Idempotency-Key, in bytes */
#define IDEM_TTL_S 86400 /**< how long a key and its answer are kept */
#define IDEM_FP_LEN 32   /**< SHA-256 */

/** True when key (n bytes) is 1..IDEM_KEY_MAX printable ASCII characters
 *  (0x20-0x7e). Pure. */
bool idem_key_valid(const char *key, size_t n);
/** True for the methods a key applies to: POST, PATCH, PUT, DELETE. Pure. */
bool idem_method_mutates(const char *method);

/** The request's fingerprint: SHA-256 over its method and route name, its path
 *  parameters, canonical query and raw body, and its caller (user id, role,
 *  store of the token), each length-prefixed so no two requests share one. A
 *  second user reusing a key therefore mismatches and never sees the first
 *  user's answer. Handler thread (reads ctx->env). */
void idem_fingerprint(const api_ctx_t *ctx, uint8_t out[IDEM_FP_LEN]);

/* ---- the dispatcher's path (Redis) ---- */

/** A key held for one request between idem_begin and idem_end. Opaque. */
typedef struct idem_claim_s idem_claim_t;

/** Before route's handler runs for ctx: when the route mutates, is not
 *  API_IDEM_SELF and the request has a key, claims it in Redis (ctx->worker's
 *  connection). Returns NULL to go on, with *out the claim (NULL when there is
 *  nothing to hold), or the answer to send instead of running the handler:
 *  the stored answer replayed, 409 idempotency_in_flight (Retry-After: 1),
 *  422 idempotency_mismatch, or 503 when Redis is unreachable. The caller owns
 *  the answer. Handler thread. */
net_reply_t *idem_begin(api_ctx_t *ctx, const api_route_t *route, idem_claim_t **out);

/** After the handler: keeps r (not consumed) under the claim for IDEM_TTL_S, or,
 *  for a refusal that did nothing, deletes the in-flight mark so a retry runs.
 *  kv is the calling thread's Redis connection, or NULL on a thread without one
 *  (a connection is then opened for the call). Frees c (NULL: nothing to do).
 *  Any thread. */
void idem_end(idem_claim_t *c, kv_conn_t *kv, const net_reply_t *r);

/** True if an answer r is kept under its key (false for refusals that did
 *  nothing: 400, 401, 403, 429, 503 and 422 validation_failed). Pure. */
bool idem_keeps(const net_reply_t *r);

/* ---- the handler's path (PostgreSQL, API_IDEM_SELF routes) ---- */

/** An answer kept in idempotency_keys, as idem_pg_claim reads it back. */
typedef struct idem_stored_s {
    int status;         /**< HTTP status */
    char *content_type; /**< owned (shopd_malloc), NULL: application/json */
    char *headers;      /**< owned "Name: value\r\n" lines, NULL if none */
    char *body;         /**< owned, NUL-terminated for convenience, NULL if none */
    size_t len;         /**< body bytes */
} idem_stored_t;

/** Frees what s holds and zeroes it. Accepts NULL. */
void idem_stored_clear(idem_stored_t *s);

typedef enum idem_claim_rc_e {
    IDEM_NEW = 0,     /**< the key is ours: a row was inserted in the caller's transaction */
    IDEM_REPLAY,      /**< the same request was answered before: *out holds the answer */
    IDEM_MISMATCH,    /**< the key was used for another request: 422 idempotency_mismatch */
    IDEM_IN_FLIGHT,   /**< a committed claim without an answer (a caller forgot
                           idem_pg_save), or one held by idem_pg_hold: 409
                           idempotency_in_flight */
    IDEM_UNAVAILABLE, /**< the statement failed (connection lost, transaction
                           aborted, serialization failure: let db_tx retry) */
} idem_claim_rc_t;

/** Claims (store_id, key) for the request with fingerprint fp inside the
 *  caller's open transaction on c (db_tx). NEW: the row is inserted; it
 *  commits or rolls back with the caller's effect. A concurrent claimer of the
 *  same key blocks on the primary key until this transaction ends, then sees
 *  the saved answer (REPLAY or MISMATCH) or, after a rollback, claims it
 *  itself. out (may be NULL unless REPLAY matters) is filled on REPLAY only;
 *  clear it with idem_stored_clear. Thread holding c. */
idem_claim_rc_t idem_pg_claim(db_conn_t *c, uint64_t store_id, const char *key,
                              const uint8_t fp[IDEM_FP_LEN], idem_stored_t *out);

/** Saves the answer for a key claimed NEW by idem_pg_claim, in the same
 *  transaction, before COMMIT. status is an HTTP status (100-599) or a
 *  shopd_rc_t (turned into one with net_status_for_rc); content_type NULL means
 *  application/json. OK, or the statement's failure. Thread holding c. */
shopd_rc_t idem_pg_save(db_conn_t *c, uint64_t store_id, const char *key, int status,
                        const char *content_type, const char *body, size_t len);

/** Same with a whole reply (its status, Content-Type, header lines and body). */
shopd_rc_t idem_pg_save_reply(db_conn_t *c, uint64_t store_id, const char *key,
                              const net_reply_t *r);

/** Holds a key claimed NEW and answered (idem_pg_save) in the caller's open
 *  transaction as still in flight for seconds: meanwhile a retry gets 409
 *  idempotency_in_flight (IDEM_IN_FLIGHT) instead of that provisional answer.
 *  The next idem_pg_save of the key (the final answer) ends the hold; if none
 *  comes (the process died), the provisional answer is replayed once the hold
 *  expires. For answers that wait on an outbound call after the commit (a
 *  checkout's payment at Stripe). OK, or the statement's failure. */
shopd_rc_t idem_pg_hold(db_conn_t *c, uint64_t store_id, const char *key, int seconds);
/** A new reply (caller owns) from a stored answer: status, Content-Type,
 *  header lines and body as kept, plus Idempotent-Replayed: true. */
net_reply_t *idem_reply_from_stored(const idem_stored_t *s);

/** Deletes up to limit keys older than older_than_s seconds, of every store
 *  (a platform sweep, the one query here not scoped to one store). Returns the
 *  number deleted, or -1 if the statement failed. Call it outside a
 *  transaction, in a loop until it returns less than limit. Thread holding c. */
long idem_pg_sweep(db_conn_t *c, int older_than_s, int limit);

/** The answers of the two refusals, for the PostgreSQL path's callers. */
net_reply_t *idem_mismatch_reply(void);
net_reply_t *idem_in_flight_reply(void);

#endif
