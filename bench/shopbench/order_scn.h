/*
 * order_scn.h: the cart and checkout scenarios of shopbench (order_scn.c),
 * listed in the table of scenarios.c.
 */
#ifndef SHOPBENCH_ORDER_SCN_H
#define SHOPBENCH_ORDER_SCN_H

#include "shopbench.h"

/** Per-connection state size of the order scenarios (checked in order_scn.c). */
#define SB_ORDER_STATE_SIZE 80

int sb_order_setup(const sb_opts_t *o, void **shared, char *err, size_t errlen);
int sb_mixed_setup(const sb_opts_t *o, void **shared, char *err, size_t errlen);
void sb_order_teardown(void *shared);
sb_next_t sb_cart_next(sb_ctx_t *cx, void *state, sb_req_t *req);
sb_next_t sb_checkout_next(sb_ctx_t *cx, void *state, sb_req_t *req);
sb_next_t sb_hot_sku_next(sb_ctx_t *cx, void *state, sb_req_t *req);
sb_next_t sb_mixed_next(sb_ctx_t *cx, void *state, sb_req_t *req);
bool sb_order_response(sb_ctx_t *cx, void *state, const sb_resp_t *resp);
int sb_order_verify(const sb_opts_t *o, void *shared, double seconds, FILE *out);

#endif
