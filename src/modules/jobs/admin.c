/*
 * admin.c: operators' view of a store's dead letters (jobs whose retries ran
 * out or that failed for good): list, inspect, retry (back to ready with a
 * fresh count of attempts: the relay sends it again) and discard (kept, marked
 * discarded: nothing is deleted silently). Also the paging helpers the lists of
 * this module share ({data, limit, next_cursor}, newest first).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jobs_priv.h"

bool
jobs_id_param(const api_ctx_t *ctx, char *buf)
{
    size_t n;
    const char *p = msg_param(ctx->env, "id", &n);
    uint64_t id;
    if (p == NULL || !shopd_id_parse(p, n, &id))
        return false;
    snprintf(buf, 24, "%llu", (unsigned long long)id);
    return true;
}

bool
jobs_page(api_ctx_t *ctx, char *limit, char *cursor, net_reply_t **reply)
{
    api_val_t v = {0};
    char ls[16], cs[32];
    const char *li = api_query_param(ctx->env, "limit", ls, sizeof(ls));
    const char *cu = api_query_param(ctx->env, "cursor", cs, sizeof(cs));
    long n = 50;
    if (li) {
        char *end;
        n = strtol(li, &end, 10);
        if (*end || end == li || n < 1 || n > 100)
            api_val_add(&v, "limit", "must be from 1 to 100");
    }
    uint64_t c = 0;
    if (cu && !shopd_id_parse(cu, strlen(cu), &c))
        api_val_add(&v, "cursor", "must be a cursor from next_cursor");
    if (v.n) {
        *reply = api_val_reply(&v);
        return false;
    }
    snprintf(limit, 16, "%ld", n);
    if (c)
        snprintf(cursor, 24, "%llu", (unsigned long long)c);
    else
        cursor[0] = '\0';
    return true;
}

net_reply_t *
jobs_page_reply(api_ctx_t *ctx, PGresult *r, const char *limit, const char *what)
{
    if (db_result_rc(r) != SHOPD_OK) {
        net_reply_t *e = api_db_error(ctx, r, what);
        PQclear(r);
        return e;
    }
    int lim = atoi(limit), rows = PQntuples(r);
    json_t *items = json_array();
    for (int i = 0; i < rows && i < lim; i++)
        json_array_append_new(items, json_loads(PQgetvalue(r, i, 0), 0, NULL));
    json_t *out = json_pack("{s:o, s:i}", "data", items, "limit", lim);
    json_object_set_new(out, "next_cursor",
                        rows > lim ? json_string(PQgetvalue(r, lim - 1, 1)) : json_null());
    PQclear(r);
    return api_json(SHOPD_OK, out);
}

/* A dead letter as operators see it. The payload loses its secrets (a reset
 * token) before it leaves the database. */
#define DEAD_JSON                                                                                  \
    "json_build_object('id', j.id, 'kind', j.kind, 'state', j.state, 'event', o.kind, "            \
    "'outbox_id', j.outbox_id, 'endpoint_id', j.endpoint_id, 'attempts', j.attempts, "             \
    "'last_error', j.last_error, 'created_at', j.created_at, 'failed_at', j.finished_at)"

net_reply_t *
jobs_h_dead_list(api_ctx_t *ctx)
{
    char limit[16], cursor[24], sid[24], lim1[16], st[32];
    net_reply_t *reply = NULL;
    if (!jobs_page(ctx, limit, cursor, &reply))
        return reply;
    const char *state = api_query_param(ctx->env, "state", st, sizeof(st));
    if (state && strcmp(state, "dead") && strcmp(state, "discarded"))
        return api_fail_field(SHOPD_INVALID, "validation_failed", "the request has invalid fields",
                              "state", "must be dead or discarded");
    snprintf(sid, sizeof(sid), "%llu", (unsigned long long)ctx->store_id);
    snprintf(lim1, sizeof(lim1), "%d", atoi(limit) + 1);
    const char *p[] = {sid, cursor, lim1, state ? state : "dead"};
    db_conn_t *c = db_acquire(ctx->app->db, 2000);
    if (c == NULL)
        return api_unavailable("the database");
    PGresult *r = db_exec(c, "jobs_dead_list",
                          "SELECT " DEAD_JSON ", j.id FROM jobs j JOIN outbox o ON o.store_id = "
                          "j.store_id AND o.id = j.outbox_id WHERE j.store_id = $1 AND j.state = "
                          "$4 AND ($2 = '' OR j.id < nullif($2, '')::bigint) ORDER BY j.id DESC "
                          "LIMIT $3::int",
                          4, p);
    db_release(c);
    return jobs_page_reply(ctx, r, limit, "dead letters");
}

net_reply_t *
jobs_h_dead_get(api_ctx_t *ctx)
{
    char sid[24], id[24];
    if (!jobs_id_param(ctx, id))
        return api_fail(SHOPD_NOTFOUND, "job_not_found", "no such dead letter");
    snprintf(sid, sizeof(sid), "%llu", (unsigned long long)ctx->store_id);
    const char *p[] = {sid, id};
    db_conn_t *c = db_acquire(ctx->app->db, 2000);
    if (c == NULL)
        return api_unavailable("the database");
    /* Inspect: the row, the event's payload, and a webhook's last deliveries. */
    PGresult *r =
        db_exec(c, "jobs_dead_get",
                "SELECT (" DEAD_JSON "::jsonb || jsonb_build_object('payload', o.payload - "
                "ARRAY['token', 'url'], "
                "'deliveries', coalesce((SELECT jsonb_agg(jsonb_build_object('attempt', d.attempt, "
                "'status_code', d.status_code, 'error', d.error, 'latency_ms', d.latency_ms, 'at', "
                "d.created_at) ORDER BY d.id) FROM webhook_deliveries d WHERE d.store_id = $1 AND "
                "d.job_id = j.id), '[]'::jsonb)))::text FROM jobs j JOIN outbox o ON o.store_id = "
                "j.store_id AND o.id = j.outbox_id WHERE j.store_id = $1 AND j.id = $2::bigint AND "
                "j.state IN ('dead', 'discarded')",
                2, p);
    db_release(c);
    net_reply_t *reply;
    if (db_result_rc(r) != SHOPD_OK)
        reply = api_db_error(ctx, r, "dead letter");
    else if (PQntuples(r) == 0)
        reply = api_fail(SHOPD_NOTFOUND, "job_not_found", "no such dead letter");
    else
        reply = api_raw_json(SHOPD_OK, PQgetvalue(r, 0, 0), (size_t)PQgetlength(r, 0, 0));
    PQclear(r);
    return reply;
}

/* Moves a dead (or discarded) letter to `to`; the answer is the row after. */
static net_reply_t *
dead_move(api_ctx_t *ctx, bool retry)
{
    char sid[24], id[24];
    if (!jobs_id_param(ctx, id))
        return api_fail(SHOPD_NOTFOUND, "job_not_found", "no such dead letter");
    snprintf(sid, sizeof(sid), "%llu", (unsigned long long)ctx->store_id);
    const char *p[] = {sid, id};
    db_conn_t *c = db_acquire(ctx->app->db, 2000);
    if (c == NULL)
        return api_unavailable("the database");
    /* A retry starts the schedule again (attempts 0, due now) and keeps the last
     * error until the next attempt replaces it; a discard only marks the row. */
    PGresult *r =
        retry ? db_exec(c, "jobs_dead_retry",
                        "WITH j AS (UPDATE jobs SET state = 'ready', attempts = 0, next_at = "
                        "now(), finished_at = NULL WHERE store_id = $1 AND id = $2::bigint AND "
                        "state IN ('dead', 'discarded') RETURNING *) SELECT " DEAD_JSON
                        "::text FROM j JOIN outbox o ON o.store_id = j.store_id AND o.id = "
                        "j.outbox_id",
                        2, p)
              : db_exec(c, "jobs_dead_discard",
                        "UPDATE jobs SET state = 'discarded' WHERE store_id = $1 AND id = "
                        "$2::bigint AND state = 'dead' RETURNING id",
                        2, p);
    db_release(c);
    net_reply_t *reply;
    if (db_result_rc(r) != SHOPD_OK)
        reply = api_db_error(ctx, r, "dead letter");
    else if (PQntuples(r) == 0)
        reply = api_fail(SHOPD_NOTFOUND, "job_not_found", "no such dead letter");
    else if (retry)
        reply = api_raw_json(SHOPD_OK, PQgetvalue(r, 0, 0), (size_t)PQgetlength(r, 0, 0));
    else
        reply = api_empty(SHOPD_NO_CONTENT);
    PQclear(r);
    return reply;
}

net_reply_t *
jobs_h_dead_retry(api_ctx_t *ctx)
{
    return dead_move(ctx, true);
}

net_reply_t *
jobs_h_dead_discard(api_ctx_t *ctx)
{
    return dead_move(ctx, false);
}
