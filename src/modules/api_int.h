/*
 * api_int.h: what the edge (edge.c), the dispatcher (dispatch.c), the system
 * endpoints (system.c) and the kit (kit.c) share and nobody else needs.
 */
#ifndef SHOPD_API_INT_H
#define SHOPD_API_INT_H

#include "shopd/api.h"

/** The router's view of api_routes (method + pattern), built by api_init. */
extern net_route_t *api_net_routes;
/* The index the edge matches requests with (net_router_match over api_net_routes). */
extern net_router_t *api_router;

/** Sends m to the actor of store_id that route's run class names (the store's
 *  actor, a read lane, a blocking lane). Same contract as act_send: on SHOPD_OK
 *  the runtime owns m; otherwise the caller still does. Any thread. */
shopd_rc_t api_dispatch(app_t *app, act_msg_t *m, const api_route_t *route, uint64_t store_id);

/** 401 unauthenticated with WWW-Authenticate (error="invalid_token" when a token
 *  was sent and refused). */
net_reply_t *api_unauthenticated(const char *msg, bool invalid);

/** If m is a timer message (api_timer_send), runs it on this worker (the store's
 *  actor) with arena, frees m and returns true; else false. */
bool api_timer_take(app_t *app, api_worker_t *ws, uint64_t store_id, act_msg_t *m, arena_t *arena);
/** The edge's start: the request budgets' table, the platform's CORS origins
 *  checked (SHOPD_CORS_ORIGINS), the route the preflight lookup uses. 0, or -1
 *  with one line in err. Before any thread runs (system module init). */
int api_edge_init(app_t *app, char *err, size_t errlen);
void api_edge_fini(app_t *app);
/** The edge's lines of /metrics (budget syncs) into buf (n bytes); their length. */
size_t api_edge_metrics(char *buf, size_t n);

#endif
