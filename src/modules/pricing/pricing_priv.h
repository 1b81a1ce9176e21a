/*
 * pricing_priv.h: what the pricing handlers share (common.c): path ids, the
 * write transaction helper, one-statement reads, PATCH as "merge into the
 * stored object, then validate the whole", field validators, RFC 3339 times,
 * the admin routes' shapes (pr_list, pr_get, pr_create, pr_patch,
 * pr_delete_id: a resource supplies its SQL, its checks and its 404), and the
 * handlers the route table (module.c) names.
 */
#ifndef SHOPD_PRICING_PRIV_H
#define SHOPD_PRICING_PRIV_H

#include <stdbool.h>
#include <stdint.h>

#include "shopd/api.h"
#include "shopd/pricing.h"

/** Path parameter `name` as a positive id; its decimal text goes to buf[24]. */
bool pr_id_param(const api_ctx_t *ctx, const char *name, char *buf);
/** The store id as text (buf[24]). */
const char *pr_sid(const api_ctx_t *ctx, char *buf);
/** Decimal text of n into buf[24]. */
const char *pr_u64(uint64_t n, char *buf);

/** The body of a pricing write: runs inside db_tx on the handler's thread, and
 *  again after a deadlock or serialization failure, so it starts from nothing
 *  each time (pr_tx frees the answer an earlier attempt left). It sets *reply
 *  to its answer, a success or a failure, and returns OK to commit or the
 *  failure to roll back. */
typedef shopd_rc_t (*pr_tx_fn)(api_ctx_t *ctx, db_conn_t *c, void *arg, net_reply_t **reply);
/** Runs fn as one transaction on a connection it borrows and returns; the
 *  answer to send (fn's once committed; a 503/409/500 when the COMMIT or the
 *  connection failed after fn succeeded). */
net_reply_t *pr_tx(api_ctx_t *ctx, pr_tx_fn fn, void *arg);
/** One read statement on a borrowed connection, the result registered on the
 *  arena; NULL with *reply set (503) when no connection is free. */
PGresult *pr_read(api_ctx_t *ctx, const char *name, const char *sql, int np, const char *const *p,
                  net_reply_t **reply);
/** The answer to a one-row JSON query (column 0): the statement's error, 404
 *  (nf_code) without a row, else the JSON with result ok. */
net_reply_t *pr_row_reply(api_ctx_t *ctx, PGresult *r, shopd_rc_t ok, const char *what,
                          const char *nf_code, const char *nf_message);
/** Runs one statement inside the transaction (result on the arena). On failure
 *  *reply is the api_db_error answer and NULL is returned. */
PGresult *pr_exec(api_ctx_t *ctx, db_conn_t *c, const char *name, const char *sql, int np,
                  const char *const *p, net_reply_t **reply);
/** A resource's 404 (tax_rate_not_found, "no such tax rate"): what a bad path id
 *  and a missing row both answer. */
typedef struct pr_nf_s {
    const char *code, *message;
} pr_nf_t;
/** The 404 answer nf names. */
net_reply_t *pr_not_found(const pr_nf_t *nf);

/** The answer ok carrying the JSON text in row 0, column 0 of r. */
net_reply_t *pr_json_reply(PGresult *r, shopd_rc_t ok);
/** pr_exec, then the JSON of its first row (column 0) as the answer ok: for an
 *  INSERT or UPDATE ... RETURNING the object. SHOPD_ERR (*reply the error) if
 *  the statement failed, else SHOPD_OK. */
shopd_rc_t pr_exec_json(api_ctx_t *ctx, db_conn_t *c, const char *name, const char *sql, int np,
                        const char *const *p, shopd_rc_t ok, net_reply_t **reply);

/** A DELETE of one row (sql ends in RETURNING; its parameters name the store first)
 *  as one transaction: 204, or nf's answer when no row matched. */
net_reply_t *pr_delete(api_ctx_t *ctx, const char *name, const char *sql, int np,
                       const char *const *p, const pr_nf_t *nf);

/* ---- the admin routes' shapes: a resource's handlers supply its SQL and checks ---- */

/** GET of a store-wide list: sql takes the store id ($1) and yields one row, one
 *  JSON column (an aggregate, so never no row; nf's code stands there anyway). */
net_reply_t *pr_list(api_ctx_t *ctx, const char *name, const char *sql, const char *what,
                     const pr_nf_t *nf);
/** GET by the path id: sql takes the store id ($1) and the id ($2) and yields the
 *  JSON (column 0) of one row; a bad id or no row is nf's 404. */
net_reply_t *pr_get(api_ctx_t *ctx, const char *name, const char *sql, const char *what,
                    const pr_nf_t *nf);
/** DELETE by the path id: sql takes the store id ($1) and the id ($2) and ends in
 *  RETURNING; 204, or nf's 404 for a bad id or no row. */
net_reply_t *pr_delete_id(api_ctx_t *ctx, const char *name, const char *sql, const pr_nf_t *nf);

/** Checks a whole object (a create body, or the stored one with a PATCH over it)
 *  and fills in (the resource's own struct) with its statement parameters,
 *  which may point into obj. Every issue is recorded in v. */
typedef void (*pr_validate_fn)(api_val_t *v, json_t *obj, void *in);
/** POST: validate the body into in, then run body(in) as one transaction; the
 *  422 when validation recorded anything. */
net_reply_t *pr_create(api_ctx_t *ctx, pr_validate_fn validate, void *in, pr_tx_fn body);

/** The most UPDATE parameters a pr_patch_t's params may add after $1 and $2. */
#define PR_PATCH_MAXP 14
/** PATCH of one row by the path id, as "lock the stored object, merge the body
 *  over it, validate the whole, write it back". */
typedef struct pr_patch_s {
    const char *const *keys; /**< the fields a body may name (NULL-terminated) */
    const pr_nf_t *nf;       /**< a bad id or a missing row */
    /** $1 store, $2 id: the stored fields as one JSON object, FOR UPDATE. */
    const char *cur_name, *cur_sql;
    /** $1 store, $2 id, then params' own: UPDATE ... RETURNING the object's JSON. */
    const char *upd_name, *upd_sql;
    pr_validate_fn validate;
    /** Puts the UPDATE's parameters from $3 on into p (validated in); returns how
     *  many (at most PR_PATCH_MAXP). */
    int (*params)(const void *in, const char **p);
} pr_patch_t;
/** Runs d for the path id: a bad id is d->nf's 404, an unknown field a 422
 *  before the row is read, then one transaction (200 with the object, 404,
 *  422, or the database's error). in is the resource's struct validate fills. */
net_reply_t *pr_patch(api_ctx_t *ctx, const pr_patch_t *d, void *in);

/** For PATCH: a copy of cur (the stored object as the API shows it) with every
 *  key of patch laid over it (new reference). Validating the result as a whole
 *  keeps cross-field rules (a band's max above its min, ends after starts)
 *  true whichever fields a PATCH sends. */
json_t *pr_merge(json_t *cur, json_t *patch);
/** Loads column 0 of row 0 of r as a JSON object (new reference), NULL if absent. */
json_t *pr_json_col(PGresult *r, int row, int col);

/** Integer field: 0 absent or null, 1 valid (*out set), -1 invalid (recorded). */
int pr_val_int(api_val_t *v, json_t *obj, const char *field, long long min, long long max,
               long long *out);
/** Boolean field: 0 absent or null, 1 valid (*out set), -1 invalid (recorded). */
int pr_val_bool(api_val_t *v, json_t *obj, const char *field, bool *out);
/** A country field: required or not; must be an assigned alpha-2 code. */
const char *pr_val_country(api_val_t *v, json_t *obj, const char *field, bool required);
/** Integer field as statement text: buf[24] gets its decimal text when valid,
 *  "" otherwise (absent, null or invalid); absent or null records "is required"
 *  when required. Returns as pr_val_int. */
int pr_val_int_text(api_val_t *v, json_t *obj, const char *field, long long min, long long max,
                    bool required, char *buf);
/** NULL for "" (an absent optional parameter), else s. */
const char *pr_opt(const char *s);

/* ---- handlers (module.c's route table) ---- */
net_reply_t *pricing_h_address_list(api_ctx_t *ctx);
net_reply_t *pricing_h_address_create(api_ctx_t *ctx);
net_reply_t *pricing_h_address_get(api_ctx_t *ctx);
net_reply_t *pricing_h_address_update(api_ctx_t *ctx);
net_reply_t *pricing_h_address_delete(api_ctx_t *ctx);

net_reply_t *pricing_h_zone_list(api_ctx_t *ctx);
net_reply_t *pricing_h_zone_create(api_ctx_t *ctx);
net_reply_t *pricing_h_zone_get(api_ctx_t *ctx);
net_reply_t *pricing_h_zone_update(api_ctx_t *ctx);
net_reply_t *pricing_h_zone_delete(api_ctx_t *ctx);
net_reply_t *pricing_h_rate_list(api_ctx_t *ctx);
net_reply_t *pricing_h_rate_create(api_ctx_t *ctx);
net_reply_t *pricing_h_rate_update(api_ctx_t *ctx);
net_reply_t *pricing_h_rate_delete(api_ctx_t *ctx);

net_reply_t *pricing_h_tax_list(api_ctx_t *ctx);
net_reply_t *pricing_h_tax_create(api_ctx_t *ctx);
net_reply_t *pricing_h_tax_update(api_ctx_t *ctx);
net_reply_t *pricing_h_tax_delete(api_ctx_t *ctx);
net_reply_t *pricing_h_tax_settings_get(api_ctx_t *ctx);
net_reply_t *pricing_h_tax_settings_update(api_ctx_t *ctx);

net_reply_t *pricing_h_discount_list(api_ctx_t *ctx);
net_reply_t *pricing_h_discount_create(api_ctx_t *ctx);
net_reply_t *pricing_h_discount_get(api_ctx_t *ctx);
net_reply_t *pricing_h_discount_update(api_ctx_t *ctx);
net_reply_t *pricing_h_discount_delete(api_ctx_t *ctx);

#endif
