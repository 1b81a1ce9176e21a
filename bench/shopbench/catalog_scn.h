/*
 * catalog_scn.h: the catalog scenarios of shopbench (catalog_scn.c), listed in
 * the table of scenarios.c.
 */
#ifndef SHOPBENCH_CATALOG_SCN_H
#define SHOPBENCH_CATALOG_SCN_H

#include "shopbench.h"

/** Products bench-product-1..N the catalog scenarios read (seeded if missing). */
#define SB_CATALOG_PRODUCTS 200
/** Variants the hot-stock scenario hammers. */
#define SB_HOT_VARIANTS 4

/** One blocking request (setup and verify paths only, main thread) with
 *  X-Tenant-Id: tenant and Connection: close; auth is a whole header line or
 *  NULL. Returns the status (0 on a socket error) and the body in *out
 *  (malloc'd, NUL-terminated; the caller frees it, also on failure). */
int sb_http_do(const sb_opts_t *o, const char *tenant, const char *method, const char *path,
               const char *auth, const char *body, char **out);

int sb_catalog_setup(const sb_opts_t *o, void **shared, char *err, size_t errlen);
void sb_catalog_teardown(void *shared);
sb_next_t sb_browse_next(sb_ctx_t *cx, void *state, sb_req_t *req);
/** browse's list pages with the platform token: uncached (admins bypass the cache). */
sb_next_t sb_admin_list_next(sb_ctx_t *cx, void *state, sb_req_t *req);
sb_next_t sb_stock_mix_next(sb_ctx_t *cx, void *state, sb_req_t *req);

/* hot-stock: one variant sold down to zero, then checked through the API. */
int sb_hot_setup(const sb_opts_t *o, void **shared, char *err, size_t errlen);
void sb_hot_teardown(void *shared);
sb_next_t sb_hot_next(sb_ctx_t *cx, void *state, sb_req_t *req);
bool sb_hot_response(sb_ctx_t *cx, void *state, const sb_resp_t *resp);
int sb_hot_verify(const sb_opts_t *o, void *shared, double seconds, FILE *out);
/** Per-connection state of hot-stock. */
typedef struct sb_hot_conn_s {
    unsigned n;
} sb_hot_conn_t;

#endif
