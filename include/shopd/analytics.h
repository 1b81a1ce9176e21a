/*
 * analytics.h: sales figures for store admins, answered from daily rollups
 * (sql/0011_analytics.sql) so a year costs O(days): the sales series
 * (GET /api/v1/admin/analytics/sales) and the best sellers
 * (GET /api/v1/admin/analytics/top-products).
 *
 * The rollups are kept off the checkout path: the jobs relay hands each batch
 * of outbox rows it marks relayed to analytics_relay_apply, in the same
 * transaction, so each order event moves the figures exactly once. A rebuild
 * (analytics_rebuild, the admin op analytics.rebuild) recomputes them from the
 * orders.
 */
#ifndef SHOPD_ANALYTICS_H
#define SHOPD_ANALYTICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shopd/api.h"

#define ANALYTICS_MAX_DAYS 1098   /**< longest from..to (three years of 366 days) */
#define ANALYTICS_DEFAULT_DAYS 30 /**< from..to when neither is given */
#define ANALYTICS_TOP_MAX 100     /**< top-products limit bound */
#define ANALYTICS_TOP_DEFAULT 10  /**< top-products limit when absent */
/** The jobs relay's advisory lock key (src/modules/jobs/relay.c); the rebuild
 *  takes it too (sql/0011), so a rebuild and a relay step never overlap. */
#define ANALYTICS_RELAY_LOCK "7417140001"

extern const api_module_t analytics_module;

/** Applies the rollup deltas of the outbox rows (sids[i], ids[i]) (PostgreSQL
 *  array literals, "{1,2}") inside c's open transaction: the relay calls it
 *  for the batch it is marking relayed, so the deltas commit (or roll back)
 *  with the marks. Rows of kinds that move no figure are skipped. The
 *  caller's thread. */
shopd_rc_t analytics_relay_apply(db_conn_t *c, const char *sids, const char *ids);

/** Recomputes the rollups of one store (store_id > 0) or of every store (0) in
 *  one transaction (db_tx) on c. *stores gets how many stores were rebuilt
 *  (0 with store_id > 0: no such store). OK, or the statement's result. */
shopd_rc_t analytics_rebuild(db_conn_t *c, uint64_t store_id, size_t *stores);

/** Reads a YYYY-MM-DD date (a real calendar day, years 1900..9999) into
 *  *days (days since 1970-01-01). Pure. */
bool analytics_date_parse(const char *s, long *days);

net_reply_t *analytics_h_sales(api_ctx_t *ctx);
net_reply_t *analytics_h_top_products(api_ctx_t *ctx);
/** POST /api/v1/admin/analytics/rebuild: the resolved store's rollups
 *  recomputed (analytics_rebuild); {stores, ms}. Blocking pool. */
net_reply_t *analytics_h_rebuild(api_ctx_t *ctx);

#endif
