/*
 * db_priv.h: helpers shared by the pool (pool.c) and the migration runner
 * (migrate.c) and by nothing else: opening a libpq connection with shopd's
 * defaults, and turning a libpq error into one log-safe line.
 */
#ifndef SHOPD_DB_PRIV_H
#define SHOPD_DB_PRIV_H

#include <libpq-fe.h>
#include <stddef.h>

/** Seconds libpq may spend connecting when conninfo does not say otherwise: a
 *  reconnect happens inside db_acquire(), so it must stay short. */
#define DB_DEFAULT_CONNECT_TIMEOUT "2"

/** Opens a blocking connection to conninfo (URL or key=value), adding
 *  connect_timeout and application_name when conninfo has none, and routing
 *  server notices to the debug log. Always returns a PGconn (check PQstatus);
 *  the caller PQfinish()es it. */
PGconn *db_connect(const char *conninfo);

/** Copies the first line of msg (a libpq error message) into out, without the
 *  trailing newline. Never fails; out is always terminated. */
void db_first_line(const char *msg, char *out, size_t outlen);

#endif
