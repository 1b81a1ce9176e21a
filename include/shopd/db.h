/*
 * db.h: PostgreSQL access: a fixed-size libpq connection pool, prepared
 * statements prepared lazily per connection, the transaction helpers (db_tx
 * with retry on serialization failures and deadlocks, nesting as savepoints;
 * db_tx_batch, one transaction of independent items with a savepoint each),
 * pipeline mode for several statements in one round trip, and the migration
 * runner. Every write goes through db_tx or db_tx_batch: no caller issues
 * BEGIN/COMMIT itself.
 *
 * A connection that breaks is reset on its next acquire; while PostgreSQL is
 * down, db_acquire() returns NULL and callers answer 503. Nothing here aborts
 * the process at run time.
 *
 * Threads: the pool is shared (mutex + condvar); a db_conn_t is used by one
 * thread between db_acquire() and db_release().
 */
#ifndef SHOPD_DB_H
#define SHOPD_DB_H

#include <libpq-fe.h>
#include <stddef.h>
#include <stdint.h>

#include "shopd/common.h"

typedef struct db_pool_s db_pool_t;
typedef struct db_conn_s db_conn_t;

/** Creates a pool of `size` connections to conninfo (a libpq URL or key=value string).
 *  Connects one connection eagerly to fail fast; the rest connect on demand.
 *  Returns NULL and writes one line to err if PostgreSQL cannot be reached. */
db_pool_t *db_pool_new(const char *conninfo, int size, char *err, size_t errlen);
/** Closes every connection. Connections must have been released. Accepts NULL. */
void db_pool_free(db_pool_t *pool);

/** Borrows a connection, waiting up to timeout_ms for one to be free. Returns NULL when
 *  none frees up in time or PostgreSQL is unreachable (the caller answers 503). */
db_conn_t *db_acquire(db_pool_t *pool, unsigned timeout_ms);
/** Returns a connection to its pool. An open transaction is rolled back. Accepts NULL. */
void db_release(db_conn_t *c);
/** The underlying libpq connection (for things this module does not wrap). */
PGconn *db_pg(db_conn_t *c);

/** Runs a statement with text parameters (NULL entries are SQL NULL). If name is not
 *  NULL the statement is prepared once per connection under that name and then
 *  executed; otherwise it is run with PQexecParams. Returns the result (caller frees
 *  with PQclear), or NULL if the connection broke (the connection is marked for reset). */
PGresult *db_exec(db_conn_t *c, const char *name, const char *sql, int nparams,
                  const char *const *params);

/** Maps a result to a status: OK for COMMAND_OK/TUPLES_OK; CONFLICT for unique
 *  violations (23505) and exclusion/serialization failures; INVALID for data and
 *  check errors (22xxx, 23514, 23502); NOTFOUND for foreign-key violations (23503);
 *  UNAVAILABLE for a NULL result or a lost connection; ERR otherwise. */
shopd_rc_t db_result_rc(const PGresult *r);
/** SQLSTATE of a failed result, or "" */
const char *db_sqlstate(const PGresult *r);

/** A transaction body. It runs on the thread that holds c and may run more than once
 *  (see db_tx), so it must start from nothing each time: free or overwrite whatever an
 *  earlier attempt left in arg. */
typedef shopd_rc_t (*db_tx_fn)(db_conn_t *c, void *arg);

/** Runs fn(c, arg) inside BEGIN ... COMMIT on the borrowed connection c (the calling
 *  thread's, between db_acquire and db_release). fn's non-OK result rolls back and is
 *  returned; OK means COMMIT succeeded (a transaction in which a statement failed is
 *  never reported as committed, even if fn returned OK).
 *
 *  Retry: when any statement of an attempt failed with a serialization failure (40001)
 *  or a deadlock (40P01), the attempt is rolled back and fn runs again from the start,
 *  up to 3 more times with a jittered pause; then the CONFLICT is returned.
 *
 *  Nesting: called while a db_tx (or db_tx_batch) is open on c, it becomes a savepoint:
 *  fn's failure rolls back to it and is returned, the outer transaction goes on. No retry
 *  happens at that level: a serialization failure aborts the whole outer transaction,
 *  whose db_tx then runs everything again.
 *
 *  Round trips: BEGIN, SAVEPOINT and RELEASE are not sent on their own but with the
 *  next statement (or the COMMIT), so fn runs before the server has seen the BEGIN: a
 *  lost connection shows as fn's first statement failing (SHOPD_UNAVAILABLE). */
shopd_rc_t db_tx(db_conn_t *c, db_tx_fn fn, void *arg);

/** One item of a batch: item i of db_tx_batch, run inside its own savepoint. Returns OK to
 *  keep what it did, anything else to undo it (that status becomes results[i]). Like a
 *  db_tx_fn it may run more than once: a retried batch runs every item again from scratch,
 *  so it must reset whatever an earlier attempt left in arg for item i. */
typedef shopd_rc_t (*db_item_fn)(db_conn_t *c, size_t i, void *arg);

/** Runs n independent items in one transaction (one COMMIT for all), each inside its own
 *  savepoint, so each succeeds or fails alone: a failing item (its non-OK status, or a
 *  statement of it that failed) is rolled back to its savepoint and reported in results[i],
 *  while the others commit. The savepoint commands are pipelined with the item's first
 *  statement (and the last release with the COMMIT): an item of one statement costs one
 *  round trip, as without savepoints. Statements must go through db_exec or db_pipeline
 *  (not raw libpq on db_pg) for that.
 *
 *  A serialization failure or deadlock in any item rolls the whole batch back and runs
 *  every item again (the retry of db_tx, same limits). Inside an open db_tx the batch is a
 *  savepoint of that transaction and is not retried on its own.
 *
 *  Returns OK when the transaction committed: results[i] (may be NULL if the caller keeps
 *  outcomes in arg) then says which items took effect. Otherwise nothing was committed,
 *  every results[i] is set to the returned status: UNAVAILABLE (connection lost),
 *  CONFLICT (retries used up), ERR (COMMIT or a savepoint command failed). n == 0 is OK
 *  and touches nothing. Same thread rules as db_tx. */
shopd_rc_t db_tx_batch(db_conn_t *c, size_t n, db_item_fn fn, void *arg, shopd_rc_t *results);

/** One statement of a pipeline. */
typedef struct db_query_s {
    const char *name; /**< prepared-statement name, or NULL for an unnamed statement */
    const char *sql;
    int nparams;
    const char *const *params;
} db_query_t;

/** Sends n statements in libpq pipeline mode (one round trip) and stores each result
 *  in results[i] (caller PQclears each; entries may be NULL after a failure).
 *  Returns OK if every statement succeeded, else the status of the first failure. */
shopd_rc_t db_pipeline(db_conn_t *c, const db_query_t *qs, size_t n, PGresult **results);

/** db_pipeline for statements that do not belong together (the reads of several
 *  requests): one round trip, and a statement that came back aborted because one
 *  before it failed runs again on its own, so each result is its own statement's.
 *  Outside a transaction only. Every results[i] is set (caller PQclears each). */
void db_pipeline_apart(db_conn_t *c, const db_query_t *qs, size_t n, PGresult **results);

/** SELECT 1 on the connection; OK or UNAVAILABLE. */
shopd_rc_t db_ping(db_conn_t *c);

/** Pool usage for /metrics. Any thread. */
typedef struct db_pool_stats_s {
    int size;
    int in_use;
    int waiting;       /**< threads waiting in db_acquire now */
    uint64_t acquired; /**< successful acquires so far */
    uint64_t timeouts; /**< acquires that gave up */
    uint64_t resets;   /**< reconnects after a lost connection */
} db_pool_stats_t;
void db_pool_stats(db_pool_t *pool, db_pool_stats_t *out);

/** Applies every sql/NNNN_name.sql file in sql_dir whose version is not yet in
 *  schema_migrations, in order, each in its own transaction, recording it there.
 *  A session advisory lock keeps two processes from migrating at once.
 *  Returns the number applied (>= 0), or -1 with one line in err. */
int db_migrate(const char *conninfo, const char *sql_dir, char *err, size_t errlen);

#endif
