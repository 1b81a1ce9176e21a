/*
 * orders.c: the order state machine, order reads, transitions, customer
 * cancels, refunds, the unpaid-order sweeper and the shipping-rate quote.
 *
 * Writes run on the store's actor (run class ordered) and change state with a
 * conditional UPDATE (WHERE status = the state read), so the machine holds even
 * with two processes: a transition that lost a race answers 409.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "order_priv.h"
#include "shopd/catalog.h"
#include "shopd/idem.h"
#include "shopd/log.h"
#include "shopd/pricing.h"

static const char *const status_names[ORDER_NSTATUS] = {"PENDING", "PAID",      "PROCESSING",
                                                        "SHIPPED", "DELIVERED", "CANCELLED"};

int
order_status_parse(const char *s)
{
    for (int i = 0; s && i < ORDER_NSTATUS; i++)
        if (strcmp(s, status_names[i]) == 0)
            return i;
    return -1;
}

const char *
order_status_name(order_status_t s)
{
    return s < ORDER_NSTATUS ? status_names[s] : "PENDING";
}

bool
order_transition_allowed(order_status_t from, order_status_t to)
{
    if (to == ORDER_CANCELLED)
        return from == ORDER_PENDING || from == ORDER_PAID || from == ORDER_PROCESSING;
    return from != ORDER_CANCELLED && to == from + 1 && to <= ORDER_DELIVERED;
}

const char *
order_next_states(order_status_t from, char *buf, size_t n)
{
    size_t w = 0;
    buf[0] = '\0';
    for (int to = 0; to < ORDER_NSTATUS; to++)
        if (order_transition_allowed(from, (order_status_t)to))
            w += (size_t)snprintf(buf + w, w < n ? n - w : 0, "%s%s", w ? ", " : "",
                                  status_names[to]);
    if (w == 0)
        snprintf(buf, n, "none");
    return buf;
}

/* ---------------------------------------------------------------- reading */

/* An order's answer, written in C from rows: the order and its items, events,
 * payments and refunds, of any number of orders, in one statement of five index
 * ranges (a UNION ALL: kind k, the order, the row's id, then 25 columns as
 * text). It was one json_build_object per order with four json_agg subplans:
 * per batch of 22 checkouts 3.3 ms of execution plus 3-4 ms of planning against
 * about 1 ms and 0.8 ms this way, and the bytes are the same once compacted
 * (api_raw_json compacts either; int test_orders compares them). */
#define ORDER_NULLS_14                                                                             \
    ", NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL"
#define ORDER_NULLS_17 ORDER_NULLS_14 ", NULL, NULL, NULL"
#define ORDER_NULLS_19 ORDER_NULLS_17 ", NULL, NULL"
#define ORDER_ROWS_SQL(ids)                                                                        \
    "SELECT 0 AS k, o.id AS oid, o.id AS rid, o.id::text, o.number::text, o.status, "              \
    "o.payment_status, o.payment_provider, o.email, o.user_id::text, o.currency::text, "           \
    "o.prices_include_tax::text, o.subtotal::text, o.discount_total::text, "                       \
    "o.shipping_total::text, o.tax_total::text, o.total::text, o.refunded_total::text, "           \
    "o.discount_code, o.shipping_rate_id::text, o.shipping_name, o.shipping_address::text, "       \
    "o.billing_address::text, o.item_count::text, o.created_at::text, o.updated_at::text, "        \
    "o.paid_at::text, o.cancelled_at::text FROM orders o WHERE o.store_id = $1::bigint AND "       \
    "o.id " ids " AND ($3 = '' OR o.user_id = nullif($3, '')::bigint) "                            \
    "UNION ALL SELECT 1, i.order_id, i.id, i.id::text, i.variant_id::text, i.product_id::text, "   \
    "i.name, i.sku, i.options::text, i.unit_price::text, i.quantity::text, i.line_total::text, "   \
    "i.tax::text, i.refunded_quantity::text" ORDER_NULLS_14 " FROM order_items i "                 \
    "WHERE i.store_id = $1::bigint AND i.order_id " ids " "                                        \
    "UNION ALL SELECT 2, e.order_id, e.id, e.id::text, e.from_status, e.to_status, e.actor, "      \
    "e.actor_user_id::text, e.note, e.tracking_number, e.created_at::text" ORDER_NULLS_17          \
    " FROM order_events e WHERE e.store_id = $1::bigint AND e.order_id " ids " "                   \
    "UNION ALL SELECT 3, p.order_id, p.id, p.id::text, p.provider, p.status, p.amount::text, "     \
    "p.currency::text, p.provider_ref, p.decline_code, p.created_at::text" ORDER_NULLS_17          \
    " FROM payments p WHERE p.store_id = $1::bigint AND p.order_id " ids " "                       \
    "UNION ALL SELECT 4, r.order_id, r.id, r.id::text, r.amount::text, r.reason, r.status, "       \
    "r.restocked::text, r.created_at::text" ORDER_NULLS_19 " FROM refunds r "                      \
    "WHERE r.store_id = $1::bigint AND r.order_id " ids " ORDER BY 2, 1, 3"
/* One order by id: prepared, and a plain = keeps its generic plan as cheap as a
 * custom one (with = ANY of an array of unknown length PostgreSQL estimated the
 * generic plan dearer and planned every execution anew: 0.5 ms a GET). A batch
 * is planned each time: a generic plan made while the store had few orders kept
 * reading all of them for every batch. */
static const char order_rows1_sql[] = ORDER_ROWS_SQL("= $2::bigint");
static const char order_rows_sql[] = ORDER_ROWS_SQL("= ANY ($2::bigint[])");

/* How each column of a kind is written: 'n' as it is (numbers, JSON text), 's' a
 * string, 'b' a boolean, 't' a timestamp; then the names, in the answer's order. */
typedef struct order_shape_s {
    const char *kinds;
    const char *const *names;
} order_shape_t;

static const char *const order_names[] = {"id",
                                          "number",
                                          "status",
                                          "payment_status",
                                          "payment_provider",
                                          "email",
                                          "user_id",
                                          "currency",
                                          "prices_include_tax",
                                          "subtotal",
                                          "discount_total",
                                          "shipping_total",
                                          "tax_total",
                                          "total",
                                          "refunded_total",
                                          "discount_code",
                                          "shipping_rate_id",
                                          "shipping_name",
                                          "shipping_address",
                                          "billing_address",
                                          "item_count",
                                          "created_at",
                                          "updated_at",
                                          "paid_at",
                                          "cancelled_at"};
static const char *const item_names[] = {
    "id",         "variant_id", "product_id",        "name",
    "sku",        "options",    "unit_price",        "quantity",
    "line_total", "tax",        "restocked_quantity"};
static const char *const event_names[] = {
    "id", "from", "to", "actor", "actor_user_id", "note", "tracking_number", "at"};
static const char *const payment_names[] = {
    "id", "provider", "status", "amount", "currency", "provider_ref", "decline_code", "created_at"};
static const char *const refund_names[] = {"id",     "amount",    "reason",
                                           "status", "restocked", "created_at"};
static const order_shape_t order_shapes[] = {
    {"nnssssnsbnnnnnnsnsnnnttt"
     "t",
     order_names},
    {"nnnssnnnnnn", item_names},
    {"nsssnsst", event_names},
    {"nssnssst", payment_names},
    {"nnssbt", refund_names},
};

/* Row i (kind k) as one JSON object. */
static void
order_put_row(api_buf_t *b, const PGresult *r, int i, int k)
{
    const order_shape_t *sh = &order_shapes[k];
    api_buf_put(b, "{", 1);
    for (int f = 0; sh->kinds[f]; f++) {
        int col = 3 + f;
        if (f)
            api_buf_put(b, ",", 1);
        api_buf_json_str(b, sh->names[f]);
        api_buf_put(b, ":", 1);
        switch (sh->kinds[f]) {
        case 's':
            api_buf_pg_text(b, r, i, col);
            break;
        case 'b':
            api_buf_pg_bool(b, r, i, col);
            break;
        case 't':
            api_buf_pg_ts(b, r, i, col);
            break;
        default:
            api_buf_pg_raw(b, r, i, col);
        }
        if (k == 0 && f == 1) { /* after the number: its display name */
            api_buf_puts(b, ",\"name\":\"#");
            api_buf_pg_raw(b, r, i, col);
            api_buf_put(b, "\"", 1);
        }
    }
}

static const char *const child_keys[] = {NULL, "items", "events", "payments", "refunds"};

void
order_render_many(db_conn_t *c, uint64_t store_id, const uint64_t *ids, size_t n, uint64_t user_id,
                  char **out, size_t *lens, shopd_rc_t *rc)
{
    memset(out, 0, n * sizeof(*out));
    *rc = SHOPD_OK;
    if (n == 0)
        return;
    char sid[24], uid[24] = "";
    snprintf(sid, sizeof(sid), "%llu", (unsigned long long)store_id);
    if (user_id)
        snprintf(uid, sizeof(uid), "%llu", (unsigned long long)user_id);
    char *arr = shopd_malloc(n * 21 + 3), *w = arr;
    if (n > 1)
        *w++ = '{';
    for (size_t i = 0; i < n; i++)
        w += sprintf(w, "%s%llu", i ? "," : "", (unsigned long long)ids[i]);
    strcpy(w, n > 1 ? "}" : "");
    const char *p[] = {sid, arr, uid};
    PGresult *r = n == 1 ? db_exec(c, "order_rows1", order_rows1_sql, 3, p)
                         : db_exec(c, NULL, order_rows_sql, 3, p);
    shopd_free(arr);
    *rc = db_result_rc(r);
    int rows = *rc == SHOPD_OK ? PQntuples(r) : 0;
    for (int i = 0; i < rows;) {
        /* Rows come by order, the order's own (k 0) first; children of an order
         * not read (another user's) are skipped. */
        uint64_t oid = strtoull(PQgetvalue(r, i, 1), NULL, 10);
        int end = i;
        while (end < rows && strtoull(PQgetvalue(r, end, 1), NULL, 10) == oid)
            end++;
        size_t slot = n;
        for (size_t j = 0; j < n; j++)
            if (ids[j] == oid && out[j] == NULL)
                slot = j;
        if (slot == n || atoi(PQgetvalue(r, i, 0)) != 0) {
            i = end;
            continue;
        }
        api_buf_t b = {0};
        order_put_row(&b, r, i, 0);
        int at = i + 1;
        for (int k = 1; k <= 4; k++) {
            api_buf_printf(&b, ",\"%s\":[", child_keys[k]);
            for (bool first = true; at < end && atoi(PQgetvalue(r, at, 0)) == k; at++) {
                if (!first)
                    api_buf_put(&b, ",", 1);
                first = false;
                order_put_row(&b, r, at, k);
                api_buf_put(&b, "}", 1);
            }
            api_buf_put(&b, "]", 1);
        }
        api_buf_put(&b, "}", 1);
        /* malloc'd, as callers free it with free() */
        out[slot] = malloc(b.n + 1);
        memcpy(out[slot], b.p, b.n + 1);
        lens[slot] = b.n;
        shopd_free(b.p);
        i = end;
    }
    PQclear(r);
}

char *
order_render(db_conn_t *c, uint64_t store_id, uint64_t order_id, uint64_t user_id, size_t *len,
             shopd_rc_t *rc)
{
    char *out;
    order_render_many(c, store_id, &order_id, 1, user_id, &out, len, rc);
    if (*rc == SHOPD_OK && out == NULL)
        *rc = SHOPD_NOTFOUND;
    return out;
}

static bool
is_admin(const api_ctx_t *ctx)
{
    const msg_caller_t *c = ctx->caller;
    return c->role == MSG_ROLE_SUPER_ADMIN || c->role == MSG_ROLE_PLATFORM ||
           (c->role == MSG_ROLE_STORE_ADMIN && c->store_id == ctx->store_id);
}

static bool
order_id_param(const api_ctx_t *ctx, uint64_t *id)
{
    size_t n;
    const char *p = msg_param(ctx->env, "id", &n);
    return shopd_id_parse(p, n, id);
}

net_reply_t *
order_h_get(api_ctx_t *ctx)
{
    uint64_t id;
    if (!order_id_param(ctx, &id))
        return api_fail(SHOPD_NOTFOUND, "order_not_found", "no such order");
    db_conn_t *c = db_acquire(ctx->app->db, 2000);
    if (c == NULL)
        return api_unavailable("the database");
    size_t len;
    shopd_rc_t rc;
    char *text =
        order_render(c, ctx->store_id, id, is_admin(ctx) ? 0 : ctx->caller->user_id, &len, &rc);
    db_release(c);
    if (text == NULL)
        return rc == SHOPD_NOTFOUND ? api_fail(SHOPD_NOTFOUND, "order_not_found", "no such order")
                                    : api_unavailable("the database");
    net_reply_t *r = api_raw_json(SHOPD_OK, text, len);
    free(text);
    return r;
}

net_reply_t *
order_h_list(api_ctx_t *ctx)
{
    api_val_t v = {0};
    char status[32], from[64], to[64], customer[260], q[260], limit_s[16], cursor_s[32];
    const char *st = api_query_param(ctx->env, "status", status, sizeof(status));
    const char *fr = api_query_param(ctx->env, "from", from, sizeof(from));
    const char *tu = api_query_param(ctx->env, "to", to, sizeof(to));
    const char *cu = api_query_param(ctx->env, "customer", customer, sizeof(customer));
    const char *qq = api_query_param(ctx->env, "q", q, sizeof(q));
    const char *li = api_query_param(ctx->env, "limit", limit_s, sizeof(limit_s));
    const char *cs = api_query_param(ctx->env, "cursor", cursor_s, sizeof(cursor_s));
    int64_t t_us;
    if (fr && !api_rfc3339(fr, &t_us))
        api_val_add(&v, "from", "must be an RFC 3339 date-time (2026-12-01T00:00:00Z)");
    if (tu && !api_rfc3339(tu, &t_us))
        api_val_add(&v, "to", "must be an RFC 3339 date-time (2026-12-01T00:00:00Z)");
    if (st && order_status_parse(st) < 0)
        api_val_add(&v, "status",
                    "must be one of PENDING, PAID, PROCESSING, SHIPPED, DELIVERED, CANCELLED");
    long limit = 20;
    if (li) {
        char *end;
        limit = strtol(li, &end, 10);
        if (*end || limit < 1 || limit > 100)
            api_val_add(&v, "limit", "must be from 1 to 100");
    }
    uint64_t cursor = 0;
    if (cs && !shopd_id_parse(cs, strlen(cs), &cursor))
        api_val_add(&v, "cursor", "must be a cursor from next_cursor");
    if (v.n)
        return api_val_reply(&v);
    char sid[24], uid[24] = "", lim[24], cur[24] = "";
    snprintf(sid, sizeof(sid), "%llu", (unsigned long long)ctx->store_id);
    if (!is_admin(ctx))
        snprintf(uid, sizeof(uid), "%llu", (unsigned long long)ctx->caller->user_id);
    snprintf(lim, sizeof(lim), "%ld", limit + 1);
    if (cursor)
        snprintf(cur, sizeof(cur), "%llu", (unsigned long long)cursor);
    const char *p[] = {sid,          uid,          st ? st : "", fr ? fr : "", tu ? tu : "",
                       cu ? cu : "", qq ? qq : "", lim,          cur};
    /* Summaries: no items or events (GET /orders/:id has them). The filters that
     * are not given compare with '' and fall away. */
    db_conn_t *c = db_acquire(ctx->app->db, 2000);
    if (c == NULL)
        return api_unavailable("the database");
    PGresult *r = db_exec(
        c, "order_list",
        "SELECT json_build_object('id', o.id, 'number', o.number, 'name', '#' || o.number, "
        "'status', o.status, 'payment_status', o.payment_status, 'email', o.email, 'user_id', "
        "o.user_id, 'currency', o.currency, 'total', o.total, 'item_count', o.item_count, "
        "'created_at', o.created_at), o.id FROM orders o WHERE o.store_id = $1 "
        "AND ($2 = '' OR o.user_id = nullif($2, '')::bigint) "
        "AND ($3 = '' OR o.status = $3) "
        "AND ($4 = '' OR o.created_at >= nullif($4, '')::timestamptz) "
        "AND ($5 = '' OR o.created_at < nullif($5, '')::timestamptz) "
        "AND ($6 = '' OR (CASE WHEN $6 ~ '^[0-9]{1,18}$' THEN o.user_id = $6::bigint "
        "ELSE lower(o.email) = lower($6) END)) "
        "AND ($7 = '' OR o.email ILIKE '%' || replace(replace(replace($7, '\\', '\\\\'), '%', "
        "'\\%'), '_', '\\_') || '%' OR ('#' || o.number) = $7 OR o.number::text = $7) "
        "AND ($9 = '' OR o.id < nullif($9, '')::bigint) "
        "ORDER BY o.id DESC LIMIT $8::int",
        9, p);
    db_release(c);
    shopd_rc_t rc = db_result_rc(r);
    if (rc != SHOPD_OK) {
        /* A date that PostgreSQL cannot read is the client's mistake. */
        const char *state = db_sqlstate(r);
        PQclear(r);
        if (strncmp(state, "22", 2) == 0)
            return api_fail_field(SHOPD_INVALID, "validation_failed",
                                  "the request has invalid fields", fr ? "from" : "to",
                                  "must be an RFC 3339 date-time");
        return api_unavailable("the database");
    }
    int rows = PQntuples(r);
    json_t *items = json_array();
    for (int i = 0; i < rows && i < limit; i++)
        json_array_append_new(items, json_loads(PQgetvalue(r, i, 0), 0, NULL));
    json_t *out = json_pack("{s:o, s:i}", "data", items, "limit", (int)limit);
    if (rows > limit)
        json_object_set_new(out, "next_cursor", json_string(PQgetvalue(r, (int)limit - 1, 1)));
    else
        json_object_set_new(out, "next_cursor", json_null());
    PQclear(r);
    return api_json(SHOPD_OK, out);
}

/* ---------------------------------------------------------------- cancelling */

shopd_rc_t
order_cancel_tx(db_conn_t *c, uint64_t store_id, uint64_t order_id, uint64_t actor_user_id,
                const char *actor, const char *note, bool only_pending, int *from, bool *paid,
                char *provider, size_t plen, char *payment_ref, size_t rlen, int64_t *refundable)
{
    char sid[24], oid[24], uid[24] = "";
    snprintf(sid, sizeof(sid), "%llu", (unsigned long long)store_id);
    snprintf(oid, sizeof(oid), "%llu", (unsigned long long)order_id);
    if (actor_user_id)
        snprintf(uid, sizeof(uid), "%llu", (unsigned long long)actor_user_id);
    const char *p1[] = {sid, oid};
    PGresult *r = db_exec(c, "order_lock",
                          "SELECT o.status, o.payment_status, o.payment_provider, "
                          "order_charged(o.store_id, o.id) - o.refunded_total, (SELECT "
                          "coalesce(p.provider_ref, '') FROM payments p "
                          "WHERE p.store_id = o.store_id AND p.order_id = o.id ORDER BY p.id DESC "
                          "LIMIT 1) FROM orders o WHERE o.store_id = $1 AND o.id = $2 FOR UPDATE",
                          2, p1);
    shopd_rc_t rc = db_result_rc(r);
    if (rc == SHOPD_OK && PQntuples(r) == 0)
        rc = SHOPD_NOTFOUND;
    if (rc != SHOPD_OK) {
        PQclear(r);
        return rc;
    }
    *from = order_status_parse(PQgetvalue(r, 0, 0));
    *paid = strcmp(PQgetvalue(r, 0, 1), "paid") == 0 ||
            strcmp(PQgetvalue(r, 0, 1), "partially_refunded") == 0;
    snprintf(provider, plen, "%s", PQgetvalue(r, 0, 2));
    *refundable = strtoll(PQgetvalue(r, 0, 3), NULL, 10);
    snprintf(payment_ref, rlen, "%s", PQgetisnull(r, 0, 4) ? "" : PQgetvalue(r, 0, 4));
    PQclear(r);
    if (*from < 0 || !order_transition_allowed((order_status_t)*from, ORDER_CANCELLED) ||
        (only_pending && *from != ORDER_PENDING))
        return SHOPD_CONFLICT;
    const char *p2[] = {sid, oid, uid, actor, note ? note : "", status_names[*from]};
    r = db_exec(
        c, "order_cancel",
        "WITH o AS (UPDATE orders SET status = 'CANCELLED', cancelled_at = now(), updated_at = "
        "now(), payment_status = CASE WHEN payment_status IN ('pending', 'requires_action', "
        "'authorized', 'failed') THEN 'voided' ELSE payment_status END WHERE store_id = $1 AND id "
        "= $2 AND "
        "status = $6 RETURNING id), "
        "x AS (SELECT i.variant_id, sum(i.quantity - i.refunded_quantity)::int AS q FROM "
        "order_items i, o WHERE i.store_id = $1 AND i.order_id = o.id GROUP BY i.variant_id "
        "HAVING sum(i.quantity - i.refunded_quantity) > 0), "
        "s AS (UPDATE product_variants v SET stock = v.stock + x.q, updated_at = now() FROM x "
        "WHERE v.store_id = $1 AND v.id = x.variant_id RETURNING v.id, x.q), "
        "m AS (INSERT INTO inventory_movements (store_id, variant_id, delta, reason, "
        "actor_user_id, order_id) SELECT $1, s.id, s.q, 'order cancelled', "
        "nullif($3, '')::bigint, $2 FROM s), "
        "ri AS (UPDATE order_items i SET refunded_quantity = i.quantity FROM o WHERE "
        "i.store_id = $1 AND i.order_id = o.id), "
        "pc AS (UPDATE payments p SET status = 'cancelled', updated_at = now() FROM o WHERE "
        "p.store_id = $1 AND p.order_id = o.id AND p.status IN ('pending', 'requires_action', "
        "'requires_capture')) "
        "INSERT INTO order_events (store_id, order_id, from_status, to_status, actor_user_id, "
        "actor, note) SELECT $1, o.id, $6, 'CANCELLED', nullif($3, '')::bigint, $4, "
        "nullif($5, '') FROM o RETURNING id",
        6, p2);
    rc = db_result_rc(r);
    if (rc == SHOPD_OK && PQntuples(r) == 0)
        rc = SHOPD_CONFLICT; /* the state moved since we read it */
    PQclear(r);
    if (rc == SHOPD_OK)
        rc = pricing_discount_release(c, store_id, order_id);
    return rc;
}

typedef struct cancel_s {
    uint64_t store_id, order_id, user_id;
    const char *actor, *note;
    bool only_pending;
    int from;
    bool paid;
    char provider[32], ref[128];
    int64_t refundable;
} cancel_t;

static shopd_rc_t
cancel_body(db_conn_t *c, void *arg)
{
    cancel_t *k = arg;
    return order_cancel_tx(c, k->store_id, k->order_id, k->user_id, k->actor, k->note,
                           k->only_pending, &k->from, &k->paid, k->provider, sizeof(k->provider),
                           k->ref, sizeof(k->ref), &k->refundable);
}

/* After a cancel committed: void or refund at the provider (cancel_call, on the
 * blocking pool for a provider that does I/O), then record the refund
 * (cancel_record, on the store's actor). */
typedef struct cancel_hop_s {
    cancel_t k;
    pay_account_t acct;
    const pay_provider_t *pp;
    shopd_rc_t rc;
    pay_refund_result_t rr;
    bool refunded; /* a refund was asked for */
} cancel_hop_t;

static void
cancel_call(void *arg)
{
    cancel_hop_t *h = arg;
    cancel_t *k = &h->k;
    if (!k->paid) {
        pay_result_t res;
        h->pp->cancel(&h->acct, k->ref, &res);
        return;
    }
    if (k->refundable <= 0)
        return;
    char key[96];
    snprintf(key, sizeof(key), "shopd-%llu-%llu-cancel", (unsigned long long)k->store_id,
             (unsigned long long)k->order_id);
    h->refunded = true;
    h->rc = h->pp->refund(&h->acct, k->ref, k->refundable, key, &h->rr);
}

/* Fills h for k's provider; false when there is nothing to ask the provider. */
static bool
cancel_prepare(db_conn_t *c, app_t *app, cancel_t *k, cancel_hop_t *h)
{
    memset(h, 0, sizeof(*h));
    h->k = *k;
    h->pp = pay_provider_find(k->provider);
    if (h->pp == NULL || k->ref[0] == '\0')
        return false;
    return pay_account_load(c, app->cfg, k->store_id, h->pp, &h->acct) == SHOPD_OK;
}

static void
cancel_record(db_conn_t *c, cancel_hop_t *h)
{
    cancel_t *k = &h->k;
    if (!h->refunded)
        return;
    shopd_rc_t rc = h->rc;
    pay_refund_result_t *rr = &h->rr;
    char sid[24], oid[24], amt[24];
    snprintf(sid, sizeof(sid), "%llu", (unsigned long long)k->store_id);
    snprintf(oid, sizeof(oid), "%llu", (unsigned long long)k->order_id);
    snprintf(amt, sizeof(amt), "%lld", (long long)k->refundable);
    const char *st = rc == SHOPD_OK && rr->succeeded  ? "succeeded"
                     : rc == SHOPD_OK && !rr->pending ? "failed"
                                                      : "pending";
    const char *p[] = {sid, oid, amt, st, rr->ref};
    PGresult *r = db_exec(
        c, "order_cancel_refund",
        "WITH rf AS (INSERT INTO refunds (store_id, order_id, payment_id, amount, reason, status, "
        "restocked, provider_ref) SELECT $1, $2, p.id, $3, 'order cancelled', $4, true, "
        "nullif($5, '') FROM payments p WHERE p.store_id = $1 AND p.order_id = $2 AND p.status = "
        "'succeeded' ORDER BY p.id DESC LIMIT 1 RETURNING amount) "
        "UPDATE orders o SET refunded_total = o.refunded_total + rf.amount, payment_status = "
        "'refunded', updated_at = now() FROM rf WHERE o.store_id = $1 AND o.id = $2 AND $4 = "
        "'succeeded'",
        5, p);
    if (db_result_rc(r) != SHOPD_OK)
        log_error("refund of a cancelled order not recorded store=%s order=%s", sid, oid);
    PQclear(r);
}

static void
cancel_settle(db_conn_t *c, app_t *app, cancel_t *k)
{
    cancel_hop_t h;
    if (!cancel_prepare(c, app, k, &h))
        return;
    if (h.pp->blocking) {
        /* The sweeper has nobody to answer and may not wait on Stripe here: an
         * unpaid PaymentIntent left open costs nothing, and a success arriving
         * for the cancelled order is turned into payment.refund_due (apply.c). */
        log_info("order cancelled without voiding its payment at %s store=%llu order=%llu",
                 h.pp->name, (unsigned long long)k->store_id, (unsigned long long)k->order_id);
        return;
    }
    cancel_call(&h);
    cancel_record(c, &h);
}

static net_reply_t *
cancel_render(api_ctx_t *ctx, db_conn_t *c, uint64_t order_id)
{
    size_t len;
    shopd_rc_t rc;
    char *text = order_render(c, ctx->store_id, order_id, 0, &len, &rc);
    if (text == NULL)
        return api_internal(ctx, "cancelled order not readable");
    net_reply_t *r = api_raw_json(SHOPD_OK, text, len);
    free(text);
    return r;
}

/* Back on the store's actor after the provider's void or refund. */
static net_reply_t *
cancel_then(api_ctx_t *ctx, void *arg)
{
    cancel_hop_t *h = arg;
    db_conn_t *c = db_acquire(ctx->app->db, 2000);
    if (c == NULL) {
        shopd_free(h);
        return api_unavailable("the database");
    }
    cancel_record(c, h);
    net_reply_t *r = cancel_render(ctx, c, h->k.order_id);
    db_release(c);
    shopd_free(h);
    return r;
}

static net_reply_t *
cancel_answer(api_ctx_t *ctx, db_conn_t *c, cancel_t *k, shopd_rc_t rc)
{
    if (rc == SHOPD_NOTFOUND)
        return api_fail(SHOPD_NOTFOUND, "order_not_found", "no such order");
    if (rc == SHOPD_CONFLICT) {
        char next[96], msg[200];
        snprintf(msg, sizeof(msg), "a %s order cannot be cancelled here; allowed next: %s",
                 k->from >= 0 ? status_names[k->from] : "?",
                 k->from >= 0 ? order_next_states((order_status_t)k->from, next, sizeof(next))
                              : "none");
        return api_fail_field(SHOPD_CONFLICT, "invalid_transition", msg, "to", next);
    }
    if (rc != SHOPD_OK)
        return rc == SHOPD_UNAVAILABLE ? api_unavailable("the database")
                                       : api_internal(ctx, "cancel failed");
    catalog_changed(ctx);
    cancel_hop_t *h = shopd_calloc(1, sizeof(*h));
    bool call = cancel_prepare(c, ctx->app, k, h);
    if (call && h->pp->blocking) {
        /* Stripe: the call on the blocking pool, the answer after it. */
        net_reply_t *later = api_blocking_then(ctx, cancel_call, cancel_then, shopd_free, h);
        if (later == API_LATER)
            return later;
        net_reply_free(later); /* the pool is full: answered without the void */
    } else if (call) {
        cancel_call(h);
        cancel_record(c, h);
    }
    shopd_free(h);
    return cancel_render(ctx, c, k->order_id);
}

net_reply_t *
order_h_cancel(api_ctx_t *ctx)
{
    uint64_t id;
    if (!order_id_param(ctx, &id))
        return api_fail(SHOPD_NOTFOUND, "order_not_found", "no such order");
    db_conn_t *c = db_acquire(ctx->app->db, 2000);
    if (c == NULL)
        return api_unavailable("the database");
    /* A customer cancels only their own order: check it is theirs first. */
    if (!is_admin(ctx)) {
        size_t len;
        shopd_rc_t rc;
        char *mine = order_render(c, ctx->store_id, id, ctx->caller->user_id, &len, &rc);
        free(mine);
        if (mine == NULL) {
            db_release(c);
            return rc == SHOPD_NOTFOUND
                       ? api_fail(SHOPD_NOTFOUND, "order_not_found", "no such order")
                       : api_unavailable("the database");
        }
    }
    cancel_t k = {.store_id = ctx->store_id,
                  .order_id = id,
                  .user_id = ctx->caller->user_id,
                  .actor = is_admin(ctx) ? "admin" : "customer",
                  .note = "cancelled by the customer",
                  .only_pending = true,
                  .from = -1};
    shopd_rc_t rc = db_tx(c, cancel_body, &k);
    net_reply_t *r = cancel_answer(ctx, c, &k, rc);
    db_release(c);
    return r;
}

/* ---------------------------------------------------------------- transitions */

typedef struct trans_s {
    uint64_t store_id, order_id, user_id;
    int to, from;
    const char *note, *tracking;
} trans_t;

static shopd_rc_t
trans_body(db_conn_t *c, void *arg)
{
    trans_t *t = arg;
    char sid[24], oid[24], uid[24] = "";
    snprintf(sid, sizeof(sid), "%llu", (unsigned long long)t->store_id);
    snprintf(oid, sizeof(oid), "%llu", (unsigned long long)t->order_id);
    if (t->user_id)
        snprintf(uid, sizeof(uid), "%llu", (unsigned long long)t->user_id);
    const char *p1[] = {sid, oid};
    PGresult *r =
        db_exec(c, "order_status",
                "SELECT status FROM orders WHERE store_id = $1 AND id = $2 FOR UPDATE", 2, p1);
    shopd_rc_t rc = db_result_rc(r);
    if (rc == SHOPD_OK && PQntuples(r) == 0)
        rc = SHOPD_NOTFOUND;
    if (rc == SHOPD_OK)
        t->from = order_status_parse(PQgetvalue(r, 0, 0));
    PQclear(r);
    if (rc != SHOPD_OK)
        return rc;
    if (t->from < 0 || !order_transition_allowed((order_status_t)t->from, (order_status_t)t->to))
        return SHOPD_CONFLICT;
    const char *p2[] = {sid,
                        oid,
                        status_names[t->from],
                        status_names[t->to],
                        uid,
                        t->note ? t->note : "",
                        t->tracking ? t->tracking : ""};
    r = db_exec(
        c, "order_transition",
        "WITH o AS (UPDATE orders SET status = $4, updated_at = now(), "
        "paid_at = CASE WHEN $4 = 'PAID' THEN now() ELSE paid_at END, "
        "payment_status = CASE WHEN $4 = 'PAID' THEN 'paid' ELSE payment_status END "
        "WHERE store_id = $1 AND id = $2 AND status = $3 RETURNING id) "
        "INSERT INTO order_events (store_id, order_id, from_status, to_status, "
        "actor_user_id, actor, note, tracking_number) SELECT $1, o.id, $3, $4, "
        "nullif($5, '')::bigint, 'admin', nullif($6, ''), nullif($7, '') FROM o RETURNING id",
        7, p2);
    rc = db_result_rc(r);
    if (rc == SHOPD_OK && PQntuples(r) == 0)
        rc = SHOPD_CONFLICT;
    PQclear(r);
    return rc;
}

net_reply_t *
order_h_transition(api_ctx_t *ctx)
{
    uint64_t id;
    if (!order_id_param(ctx, &id))
        return api_fail(SHOPD_NOTFOUND, "order_not_found", "no such order");
    api_val_t v = {0};
    static const char *const allowed[] = {"to", "note", "tracking_number", NULL};
    api_val_only(&v, ctx->body, allowed);
    const char *to = api_val_string(&v, ctx->body, "to", true, 1, 32);
    const char *note = api_val_string(&v, ctx->body, "note", false, 0, 1000);
    const char *tracking = api_val_string(&v, ctx->body, "tracking_number", false, 1, 100);
    int tos = to ? order_status_parse(to) : -1;
    if (to && tos < 0)
        api_val_add(&v, "to", "must be one of PAID, PROCESSING, SHIPPED, DELIVERED, CANCELLED");
    if (v.n)
        return api_val_reply(&v);
    db_conn_t *c = db_acquire(ctx->app->db, 2000);
    if (c == NULL)
        return api_unavailable("the database");
    net_reply_t *reply;
    if (tos == ORDER_CANCELLED) {
        cancel_t k = {.store_id = ctx->store_id,
                      .order_id = id,
                      .user_id = ctx->caller->user_id,
                      .actor = "admin",
                      .note = note,
                      .from = -1};
        shopd_rc_t rc = db_tx(c, cancel_body, &k);
        reply = cancel_answer(ctx, c, &k, rc);
        db_release(c);
        return reply;
    }
    trans_t t = {ctx->store_id, id, ctx->caller->user_id, tos, -1, note, tracking};
    shopd_rc_t rc = db_tx(c, trans_body, &t);
    if (rc == SHOPD_OK) {
        size_t len;
        char *text = order_render(c, ctx->store_id, id, 0, &len, &rc);
        reply = text ? api_raw_json(SHOPD_OK, text, len) : api_internal(ctx, "order not readable");
        free(text);
    } else if (rc == SHOPD_NOTFOUND) {
        reply = api_fail(SHOPD_NOTFOUND, "order_not_found", "no such order");
    } else if (rc == SHOPD_CONFLICT) {
        char next[96], msg[200];
        order_next_states((order_status_t)(t.from < 0 ? 0 : t.from), next, sizeof(next));
        snprintf(msg, sizeof(msg), "a %s order cannot move to %s; allowed next: %s",
                 t.from >= 0 ? status_names[t.from] : "?", status_names[tos], next);
        reply = api_fail_field(SHOPD_CONFLICT, "invalid_transition", msg, "to", next);
    } else {
        reply = rc == SHOPD_UNAVAILABLE ? api_unavailable("the database")
                                        : api_internal(ctx, "transition failed");
    }
    db_release(c);
    return reply;
}

/* ---------------------------------------------------------------- refunds */

typedef struct refund_s {
    uint64_t store_id, order_id, user_id;
    int64_t amount;
    const char *reason;
    json_t *restock; /* [{item_id, quantity}] or NULL */
    uint64_t refund_id;
    char provider[32], ref[128];
    int64_t refundable;
    bool not_paid, bad_item;
    /* Idempotency-Key: claimed in the refund's transaction */
    const char *key;
    uint8_t fp[IDEM_FP_LEN];
    net_reply_t *replay;
} refund_t;

static shopd_rc_t
refund_body(db_conn_t *c, void *arg)
{
    refund_t *f = arg;
    f->not_paid = f->bad_item = false;
    f->refund_id = 0;
    net_reply_free(f->replay);
    f->replay = NULL;
    if (f->key) {
        idem_stored_t st = {0};
        idem_claim_rc_t ic = idem_pg_claim(c, f->store_id, f->key, f->fp, &st);
        if (ic == IDEM_UNAVAILABLE)
            return SHOPD_UNAVAILABLE;
        if (ic != IDEM_NEW) {
            f->replay = ic == IDEM_REPLAY     ? idem_reply_from_stored(&st)
                        : ic == IDEM_MISMATCH ? idem_mismatch_reply()
                                              : idem_in_flight_reply();
            idem_stored_clear(&st);
            return SHOPD_AGAIN;
        }
    }
    char sid[24], oid[24], amt[24], uid[24] = "";
    snprintf(sid, sizeof(sid), "%llu", (unsigned long long)f->store_id);
    snprintf(oid, sizeof(oid), "%llu", (unsigned long long)f->order_id);
    snprintf(amt, sizeof(amt), "%lld", (long long)f->amount);
    if (f->user_id)
        snprintf(uid, sizeof(uid), "%llu", (unsigned long long)f->user_id);
    const char *p1[] = {sid, oid};
    /* What may still be refunded: what was charged (the total, or less after a
     * partial capture: order_charged, sql/0012) less the refunds that did not fail. */
    PGresult *r = db_exec(
        c, "refund_lock",
        "SELECT o.payment_status, o.payment_provider, order_charged(o.store_id, o.id) - (SELECT "
        "coalesce(sum(amount), 0) "
        "FROM refunds r WHERE r.store_id = o.store_id AND r.order_id = o.id AND r.status <> "
        "'failed'), (SELECT coalesce(p.provider_ref, '') FROM payments p WHERE p.store_id = "
        "o.store_id AND p.order_id = o.id AND p.status = 'succeeded' ORDER BY p.id DESC LIMIT 1) "
        "FROM orders o WHERE o.store_id = $1 AND o.id = $2 FOR UPDATE",
        2, p1);
    shopd_rc_t rc = db_result_rc(r);
    if (rc == SHOPD_OK && PQntuples(r) == 0)
        rc = SHOPD_NOTFOUND;
    if (rc != SHOPD_OK) {
        PQclear(r);
        return rc;
    }
    const char *ps = PQgetvalue(r, 0, 0);
    f->not_paid = strcmp(ps, "paid") != 0 && strcmp(ps, "partially_refunded") != 0;
    snprintf(f->provider, sizeof(f->provider), "%s", PQgetvalue(r, 0, 1));
    f->refundable = strtoll(PQgetvalue(r, 0, 2), NULL, 10);
    snprintf(f->ref, sizeof(f->ref), "%s", PQgetisnull(r, 0, 3) ? "" : PQgetvalue(r, 0, 3));
    PQclear(r);
    if (f->not_paid || f->amount > f->refundable)
        return SHOPD_CONFLICT;
    char *restock = f->restock ? json_dumps(f->restock, JSON_COMPACT) : strdup("[]");
    const char *p2[] = {sid, oid, amt, f->reason ? f->reason : "", uid, restock};
    r = db_exec(
        c, "refund_insert",
        /* The items to restock are checked here and restocked only once the provider
         * confirmed the refund (refund_settle): a refused refund returns nothing. */
        "WITH x AS (SELECT * FROM json_to_recordset($6::json) AS x (item_id bigint, quantity "
        "int)), "
        "it AS (SELECT i.id FROM order_items i JOIN x ON i.id = x.item_id WHERE i.store_id = $1 "
        "AND i.order_id = $2 AND i.refunded_quantity + x.quantity <= i.quantity), "
        "rf AS (INSERT INTO refunds (store_id, order_id, payment_id, amount, reason, restocked, "
        "actor_user_id) SELECT $1, $2, p.id, $3, $4, (SELECT count(*) FROM x) > 0, "
        "nullif($5, '')::bigint FROM payments p WHERE p.store_id = $1 AND p.order_id = $2 AND "
        "p.status = 'succeeded' AND (SELECT count(*) FROM it) = (SELECT count(*) FROM x) "
        "ORDER BY p.id DESC LIMIT 1 RETURNING id) "
        "SELECT (SELECT id FROM rf), (SELECT count(*) FROM it), (SELECT count(*) FROM x)",
        6, p2);
    free(restock);
    rc = db_result_rc(r);
    if (rc == SHOPD_OK) {
        if (strcmp(PQgetvalue(r, 0, 1), PQgetvalue(r, 0, 2)) != 0) {
            f->bad_item = true; /* an item not of this order, or restocked past its quantity */
            rc = SHOPD_INVALID;
        } else if (PQgetisnull(r, 0, 0)) {
            f->not_paid = true;
            rc = SHOPD_CONFLICT;
        } else {
            f->refund_id = strtoull(PQgetvalue(r, 0, 0), NULL, 10);
        }
    }
    PQclear(r);
    return rc;
}

/* A refund committed as pending, on its way to the provider and back. */
typedef struct refund_hop_s {
    const pay_provider_t *pp;
    pay_account_t acct;
    uint64_t order_id, refund_id, user_id;
    int64_t amount;
    char ref[128], pkey[96];
    char idem_key[IDEM_KEY_MAX + 1]; /* the client's Idempotency-Key, "" if none */
    char *restock;                   /* JSON text, malloc'd */
    shopd_rc_t prc;
    pay_refund_result_t rr;
} refund_hop_t;

static void
refund_hop_free(void *arg)
{
    refund_hop_t *h = arg;
    if (h == NULL)
        return;
    free(h->restock);
    shopd_free(h);
}

/* The provider's call (on the blocking pool for one that does I/O). */
static void
refund_call(void *arg)
{
    refund_hop_t *h = arg;
    h->prc = h->pp->refund(&h->acct, h->ref, h->amount, h->pkey, &h->rr);
}

/* Records the provider's answer (the refund, the restock, the order's totals)
 * and keeps the answer under the client's key. The store's actor. */
static net_reply_t *
refund_record(api_ctx_t *ctx, db_conn_t *c, refund_hop_t *h)
{
    net_reply_t *reply;
    const char *st = h->prc == SHOPD_OK && h->rr.succeeded  ? "succeeded"
                     : h->prc == SHOPD_OK && !h->rr.pending ? "failed"
                                                            : "pending";
    char sid[24], oid[24], rid[24], uid_s[24];
    snprintf(sid, sizeof(sid), "%llu", (unsigned long long)ctx->store_id);
    snprintf(oid, sizeof(oid), "%llu", (unsigned long long)h->order_id);
    snprintf(rid, sizeof(rid), "%llu", (unsigned long long)h->refund_id);
    snprintf(uid_s, sizeof(uid_s), "%llu", (unsigned long long)h->user_id);
    const char *p[] = {sid, oid, rid, st, h->rr.ref, h->restock, h->user_id ? uid_s : ""};
    PGresult *r = db_exec(
        c, "refund_settle",
        "WITH rf AS (UPDATE refunds SET status = $4, provider_ref = nullif($5, ''), updated_at = "
        "now() WHERE store_id = $1 AND id = $3 AND status = 'pending' RETURNING amount), "
        "x AS (SELECT * FROM json_to_recordset($6::json) AS x (item_id bigint, quantity int) "
        "WHERE $4 = 'succeeded'), "
        "it AS (UPDATE order_items i SET refunded_quantity = i.refunded_quantity + x.quantity "
        "FROM x WHERE i.store_id = $1 AND i.order_id = $2 AND i.id = x.item_id AND "
        "i.refunded_quantity + x.quantity <= i.quantity RETURNING i.variant_id, x.quantity), "
        "s AS (UPDATE product_variants v SET stock = v.stock + it.quantity, updated_at = now() "
        "FROM it WHERE v.store_id = $1 AND v.id = it.variant_id AND v.id = ANY (ARRAY(SELECT "
        "variant_id FROM it)) RETURNING v.id, it.quantity), " /* probes, not a scan: checkout.c */
        "m AS (INSERT INTO inventory_movements (store_id, variant_id, delta, reason, "
        "actor_user_id, order_id) SELECT $1, s.id, s.quantity, 'refund restock', "
        "nullif($7, '')::bigint, $2 FROM s), "
        "o AS (UPDATE orders o SET refunded_total = o.refunded_total + rf.amount, "
        "payment_status = CASE WHEN o.refunded_total + rf.amount >= order_charged(o.store_id, "
        "o.id) "
        "THEN 'refunded' ELSE "
        "'partially_refunded' END, updated_at = now() FROM rf WHERE o.store_id = $1 AND o.id = "
        "$2 AND $4 = 'succeeded' RETURNING o.id) "
        "SELECT json_build_object('id', r.id, 'order_id', r.order_id, 'amount', r.amount, "
        "'reason', r.reason, 'status', CASE WHEN EXISTS (SELECT 1 FROM rf) THEN $4 ELSE r.status "
        "END, 'restocked', r.restocked, 'created_at', r.created_at) "
        "FROM refunds r WHERE r.store_id = $1 AND r.id = $3",
        7, p);
    if (db_result_rc(r) == SHOPD_OK && PQntuples(r) == 1)
        reply = api_raw_json(SHOPD_CREATED, PQgetvalue(r, 0, 0), (size_t)PQgetlength(r, 0, 0));
    else
        reply = api_internal(ctx, "refund not recorded");
    if (strcmp(h->restock, "[]") != 0 && strcmp(st, "succeeded") == 0)
        catalog_changed(ctx); /* restocked */
    PQclear(r);
    /* The key was claimed with the refund row; its answer is the settled refund. A
     * crash before this line leaves the claim without an answer: retries are told
     * the refund is in flight, and the admin sees the pending refund on the order. */
    if (h->idem_key[0] && idem_pg_save_reply(c, ctx->store_id, h->idem_key, reply) != SHOPD_OK)
        log_warn("refund answer not kept store=%llu refund=%llu", (unsigned long long)ctx->store_id,
                 (unsigned long long)h->refund_id);
    return reply;
}

static net_reply_t *
refund_then(api_ctx_t *ctx, void *arg)
{
    refund_hop_t *h = arg;
    db_conn_t *c = db_acquire(ctx->app->db, 2000);
    if (c == NULL) {
        refund_hop_free(h);
        return api_unavailable("the database");
    }
    net_reply_t *reply = refund_record(ctx, c, h);
    db_release(c);
    refund_hop_free(h);
    return reply;
}

net_reply_t *
order_h_refund(api_ctx_t *ctx)
{
    uint64_t id;
    if (!order_id_param(ctx, &id))
        return api_fail(SHOPD_NOTFOUND, "order_not_found", "no such order");
    api_val_t v = {0};
    static const char *const allowed[] = {"amount", "reason", "restock_items", NULL};
    api_val_only(&v, ctx->body, allowed);
    long long amount = 0;
    if (api_val_int(&v, ctx->body, "amount", 1, INT64_MAX, &amount) == 0)
        api_val_add(&v, "amount", "is required");
    const char *reason = api_val_string(&v, ctx->body, "reason", false, 0, 500);
    json_t *rs = json_object_get(ctx->body, "restock_items");
    if (rs && !json_is_null(rs)) {
        size_t i;
        json_t *e;
        if (!json_is_array(rs) || json_array_size(rs) > 100)
            api_val_add(&v, "restock_items", "must be an array of {item_id, quantity}");
        else
            json_array_foreach(rs, i, e)
            {
                long long x;
                if (!json_is_object(e) || json_object_size(e) != 2 ||
                    api_val_int(&v, e, "item_id", 1, INT64_MAX, &x) != 1 ||
                    api_val_int(&v, e, "quantity", 1, CART_MAX_QTY, &x) != 1) {
                    api_val_add(&v, "restock_items", "each entry is {item_id, quantity}");
                    break;
                }
            }
    } else {
        rs = NULL;
    }
    if (v.n)
        return api_val_reply(&v);
    db_conn_t *c = db_acquire(ctx->app->db, 2000);
    if (c == NULL)
        return api_unavailable("the database");
    refund_t f = {.store_id = ctx->store_id,
                  .order_id = id,
                  .user_id = ctx->caller->user_id,
                  .amount = amount,
                  .reason = reason,
                  .restock = rs};
    char key[IDEM_KEY_MAX + 1];
    if (ctx->env->idem.n) {
        snprintf(key, sizeof(key), "%.*s", (int)ctx->env->idem.n, ctx->env->idem.p);
        f.key = key;
        idem_fingerprint(ctx, f.fp);
    }
    shopd_rc_t rc = db_tx(c, refund_body, &f);
    net_reply_t *reply = NULL;
    if (f.replay) {
        db_release(c);
        return f.replay;
    }
    if (rc == SHOPD_NOTFOUND)
        reply = api_fail(SHOPD_NOTFOUND, "order_not_found", "no such order");
    else if (rc == SHOPD_CONFLICT && f.not_paid)
        reply = api_fail(SHOPD_CONFLICT, "order_not_paid", "only a paid order can be refunded");
    else if (rc == SHOPD_CONFLICT) {
        char msg[160];
        snprintf(msg, sizeof(msg), "at most %lld can still be refunded", (long long)f.refundable);
        reply = api_fail_field(SHOPD_CONFLICT, "refund_exceeds_payment", msg, "amount",
                               "more than what is left to refund");
    } else if (rc == SHOPD_INVALID)
        reply = api_fail_field(SHOPD_INVALID, "validation_failed", "the request has invalid fields",
                               "restock_items", "an item of this order, at most its quantity");
    else if (rc != SHOPD_OK)
        reply = rc == SHOPD_UNAVAILABLE ? api_unavailable("the database")
                                        : api_internal(ctx, "refund failed");
    if (reply) {
        db_release(c);
        return reply;
    }
    /* Committed as pending: now ask the provider (on the blocking pool for one
     * that does I/O), then record its answer (refund_record). */
    refund_hop_t *h = shopd_calloc(1, sizeof(*h));
    h->pp = pay_provider_find(f.provider);
    h->order_id = id;
    h->refund_id = f.refund_id;
    h->user_id = ctx->caller->user_id;
    h->amount = amount;
    h->prc = SHOPD_ERR;
    snprintf(h->ref, sizeof(h->ref), "%s", f.ref);
    snprintf(h->pkey, sizeof(h->pkey), "shopd-%llu-refund-%llu", (unsigned long long)ctx->store_id,
             (unsigned long long)f.refund_id);
    if (f.key)
        snprintf(h->idem_key, sizeof(h->idem_key), "%s", f.key);
    h->restock = rs ? json_dumps(rs, JSON_COMPACT) : strdup("[]");
    if (h->pp && pay_account_load(c, ctx->app->cfg, ctx->store_id, h->pp, &h->acct) != SHOPD_OK)
        h->pp = NULL; /* no account: the refund stays pending */
    if (h->pp && h->pp->blocking) {
        reply = api_blocking_then(ctx, refund_call, refund_then, refund_hop_free, h);
        if (reply == API_LATER) {
            db_release(c);
            return reply;
        }
        net_reply_free(reply); /* the pool is full: the refund stays pending */
        h->pp = NULL;
        h->prc = SHOPD_UNAVAILABLE;
        h->rr.pending = true;
    } else if (h->pp) {
        refund_call(h);
    }
    reply = refund_record(ctx, c, h);
    refund_hop_free(h);
    db_release(c);
    return reply;
}

/* ---------------------------------------------------------------- the sweeper */

/* On the store's actor: cancels this store's orders left unpaid too long. An
 * authorized payment (a manual-capture store) is not unpaid: it waits for the
 * store's capture, or for Stripe to release the hold (payment_intent.canceled
 * after 7 days voids it). */
static void
sweep_store(api_ctx_t *ctx)
{
    db_conn_t *c = db_acquire(ctx->app->db, 2000);
    if (c == NULL)
        return;
    char sid[24], secs[24];
    snprintf(sid, sizeof(sid), "%llu", (unsigned long long)ctx->store_id);
    snprintf(secs, sizeof(secs), "%d", ctx->app->cfg->order_payment_timeout);
    const char *p[] = {sid, secs};
    PGresult *r =
        db_exec(c, "order_overdue",
                "SELECT id FROM orders WHERE store_id = $1 AND status = 'PENDING' AND "
                "payment_status <> 'authorized' AND created_at < now() - make_interval(secs => "
                "$2::int) ORDER BY id LIMIT 100",
                2, p);
    int rows = db_result_rc(r) == SHOPD_OK ? PQntuples(r) : 0;
    for (int i = 0; i < rows; i++) {
        cancel_t k = {.store_id = ctx->store_id,
                      .order_id = strtoull(PQgetvalue(r, i, 0), NULL, 10),
                      .actor = "system",
                      .note = "not paid in time",
                      .only_pending = true,
                      .from = -1};
        if (db_tx(c, cancel_body, &k) == SHOPD_OK) {
            catalog_changed(ctx);
            cancel_settle(c, ctx->app, &k);
        }
    }
    if (rows)
        log_info("sweeper cancelled unpaid orders store=%s n=%d", sid, rows);
    PQclear(r);
    db_release(c);
}

void
order_tick(app_t *app)
{
    db_conn_t *c = db_acquire(app->db, 1000);
    if (c == NULL)
        return;
    char secs[24];
    snprintf(secs, sizeof(secs), "%d", app->cfg->order_payment_timeout);
    const char *p[] = {secs};
    PGresult *r = db_exec(c, "order_overdue_stores",
                          "SELECT DISTINCT store_id FROM orders WHERE status = 'PENDING' AND "
                          "payment_status <> 'authorized' AND created_at < now() - "
                          "make_interval(secs => $1::int) LIMIT 1000",
                          1, p);
    int rows = db_result_rc(r) == SHOPD_OK ? PQntuples(r) : 0;
    for (int i = 0; i < rows; i++)
        api_timer_send(app, strtoull(PQgetvalue(r, i, 0), NULL, 10), sweep_store);
    PQclear(r);
    /* Idempotency keys past 24 h (checkout, refunds): no store's order involved. */
    for (int i = 0; i < 10 && idem_pg_sweep(c, IDEM_TTL_S, 1000) == 1000; i++)
        ;
    db_release(c);
}

/* ---------------------------------------------------------------- shipping quote */

net_reply_t *
order_h_shipping_rates(api_ctx_t *ctx)
{
    char country[8];
    const char *cc = api_query_param(ctx->env, "country", country, sizeof(country));
    if (cc == NULL || strlen(cc) != 2 || cc[0] < 'A' || cc[0] > 'Z' || cc[1] < 'A' || cc[1] > 'Z')
        return api_fail_field(SHOPD_INVALID, "validation_failed", "the request has invalid fields",
                              "country", "an ISO 3166-1 alpha-2 code like DE is required");
    db_conn_t *c = db_acquire(ctx->app->db, 2000);
    if (c == NULL)
        return api_unavailable("the database");
    cart_t *cart = arena_calloc(ctx->arena, 1, sizeof(*cart));
    cart_item_t *items = arena_calloc(ctx->arena, CART_MAX_LINES, sizeof(*items));
    shopd_rc_t rc = cart_load(ctx, c, cart);
    if (rc == SHOPD_OK && cart->ordered)
        cart->n = 0;
    if (rc == SHOPD_OK)
        rc = cart_price(c, ctx->store_id, cart, items);
    int64_t subtotal = 0, weight = 0;
    for (size_t i = 0; rc == SHOPD_OK && i < cart->n; i++)
        if (items[i].found && items[i].active) {
            subtotal += items[i].unit_price * items[i].quantity;
            weight += items[i].weight_g * items[i].quantity;
        }
    pricing_rate_t rates[PRICING_MAX_RATES];
    size_t n = 0;
    if (rc == SHOPD_OK)
        rc = pricing_shipping_rates(c, ctx->store_id, cc, subtotal, weight, rates,
                                    PRICING_MAX_RATES, &n);
    db_release(c);
    if (rc != SHOPD_OK)
        return api_unavailable("the database");
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a,
                              json_pack("{s:I, s:s, s:I, s:I}", "id", (json_int_t)rates[i].id,
                                        "name", rates[i].name, "price", (json_int_t)rates[i].price,
                                        "zone_id", (json_int_t)rates[i].zone_id));
    return api_json(SHOPD_OK,
                    json_pack("{s:s, s:s, s:I, s:I, s:o}", "country", cc, "currency",
                              ctx->store ? ctx->store->currency : "", "subtotal",
                              (json_int_t)subtotal, "weight_g", (json_int_t)weight, "rates", a));
}
