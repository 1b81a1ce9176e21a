/*
 * write.c: the cart writes of one actor turn (see cart.c's header comment for
 * the plan: parse, load each touched cart once, read the catalog once, apply
 * in arrival order, save the changed carts together).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cart_priv.h"
#include "shopd/log.h"
#include "shopd/pricing.h"

enum { OP_ADD, OP_SET, OP_DEL, OP_CLEAR, OP_DISC_SET, OP_DISC_DEL };

typedef struct slot_s {
    char owner[48]; /* "u<user id>" or "g<guest id>" */
    cart_t cart;
    bool dirty;
    bool fresh; /* a guest cart started in this turn */
    bool lost;  /* loading or saving failed: its requests answer 503 */
} slot_t;

typedef struct wreq_s {
    int op;
    uint64_t variant;
    int qty;
    char code[65];
    int slot; /* -1: answered already */
    net_reply_t *reply;
    cart_t *snap; /* the cart as this request left it */
} wreq_t;

typedef struct turn_s {
    api_ctx_t *ctxs;
    size_t n;
    wreq_t *reqs;
    slot_t *slots;
    size_t nslots;
    cart_item_t *info; /* catalog rows of every variant touched */
    size_t ninfo;
    db_conn_t *db; /* the turn's connection (one per turn: a second could starve the pool) */
} turn_t;

static int
op_of(const msg_env_t *env)
{
    static const char *const names[] = {"cart.add",   "cart.item_update",  "cart.item_delete",
                                        "cart.clear", "cart.discount_set", "cart.discount_delete"};
    for (int i = 0; i < (int)SHOPD_ARRAY_LEN(names); i++)
        if (env->type.n == strlen(names[i]) && memcmp(env->type.p, names[i], env->type.n) == 0)
            return i;
    return -1;
}

/* Validates the request; false with r->reply set when it is refused. */
static bool
parse(api_ctx_t *ctx, wreq_t *r)
{
    r->op = op_of(ctx->env);
    api_val_t v = {0};
    long long x;
    if (r->op == OP_ADD) {
        static const char *const allowed[] = {"variant_id", "quantity", NULL};
        api_val_only(&v, ctx->body, allowed);
        if (api_val_int(&v, ctx->body, "variant_id", 1, INT64_MAX, &x) == 1)
            r->variant = (uint64_t)x;
        else if (json_object_get(ctx->body, "variant_id") == NULL)
            api_val_add(&v, "variant_id", "is required");
        r->qty = 1;
        if (api_val_int(&v, ctx->body, "quantity", 1, CART_MAX_QTY, &x) == 1)
            r->qty = (int)x;
    } else if (r->op == OP_SET || r->op == OP_DEL) {
        size_t n;
        const char *p = msg_param(ctx->env, "id", &n);
        if (!shopd_id_parse(p, n, &r->variant)) {
            r->reply = api_fail(SHOPD_NOTFOUND, "cart_item_not_found", "no such line in the cart");
            return false;
        }
        if (r->op == OP_SET) {
            static const char *const allowed[] = {"quantity", NULL};
            api_val_only(&v, ctx->body, allowed);
            int got = api_val_int(&v, ctx->body, "quantity", 0, CART_MAX_QTY, &x);
            if (got == 1)
                r->qty = (int)x;
            else if (got == 0)
                api_val_add(&v, "quantity", "is required");
        }
    } else if (r->op == OP_DISC_SET) {
        static const char *const allowed[] = {"code", NULL};
        api_val_only(&v, ctx->body, allowed);
        const char *code = api_val_string(&v, ctx->body, "code", true, 1, 64);
        if (code)
            snprintf(r->code, sizeof(r->code), "%s", code);
    } else if (r->op < 0) {
        r->reply = api_internal(ctx, "not a cart write");
        return false;
    }
    if (v.n) {
        r->reply = api_val_reply(&v);
        return false;
    }
    return true;
}

static cart_item_t *
info_of(turn_t *t, uint64_t id)
{
    for (size_t i = 0; i < t->ninfo; i++)
        if (t->info[i].variant_id == id)
            return &t->info[i];
    return NULL;
}

static int
find_line(const cart_t *c, uint64_t id)
{
    for (size_t i = 0; i < c->n; i++)
        if (c->lines[i].variant_id == id)
            return (int)i;
    return -1;
}

static void
put_line(cart_t *c, uint64_t id, int qty)
{
    int i = find_line(c, id);
    if (i >= 0) {
        if (qty > 0) {
            c->lines[i].quantity = qty;
            return;
        }
        memmove(&c->lines[i], &c->lines[i + 1], (c->n - (size_t)i - 1) * sizeof(c->lines[0]));
        c->n--;
        return;
    }
    if (qty <= 0 || c->n >= CART_MAX_LINES)
        return;
    size_t at = 0;
    while (at < c->n && c->lines[at].variant_id < id)
        at++;
    memmove(&c->lines[at + 1], &c->lines[at], (c->n - at) * sizeof(c->lines[0]));
    c->lines[at].variant_id = id;
    c->lines[at].quantity = qty;
    c->n++;
}

net_reply_t *
cart_insufficient(uint64_t variant, int available)
{
    json_t *d =
        json_pack("[{s:s, s:s, s:I, s:i}]", "field", "quantity", "issue", "more than is in stock",
                  "variant_id", (json_int_t)variant, "available", available < 0 ? 0 : available);
    json_t *e = json_pack("{s:{s:s, s:s, s:o}}", "error", "code", "insufficient_stock", "message",
                          "not enough stock for this quantity", "details", d);
    return api_json(SHOPD_CONFLICT, e);
}

/* Applies r to its slot's cart. */
static void
apply(turn_t *t, api_ctx_t *ctx, wreq_t *r)
{
    slot_t *s = &t->slots[r->slot];
    cart_t *c = &s->cart;
    if (r->op != OP_ADD && !c->exists && !s->dirty) {
        r->reply = api_fail(SHOPD_NOTFOUND, "cart_not_found", "there is no cart to change");
        return;
    }
    if (r->op == OP_ADD || r->op == OP_SET) {
        int have = find_line(c, r->variant);
        if (r->op == OP_SET && have < 0) {
            r->reply = api_fail(SHOPD_NOTFOUND, "cart_item_not_found", "no such line in the cart");
            return;
        }
        int want = r->op == OP_ADD ? r->qty + (have >= 0 ? c->lines[have].quantity : 0) : r->qty;
        cart_item_t *it = info_of(t, r->variant);
        if (want > 0) {
            if (it == NULL || !it->found || !it->active) {
                r->reply = api_fail(SHOPD_NOTFOUND, "variant_not_found",
                                    "no such variant is for sale in this store");
                return;
            }
            if (want > CART_MAX_QTY) {
                r->reply = api_fail_field(SHOPD_INVALID, "cart_limit_exceeded",
                                          "a line holds at most 999 units", "quantity",
                                          "at most 999 per line");
                return;
            }
            if (have < 0 && c->n >= CART_MAX_LINES) {
                r->reply = api_fail_field(SHOPD_INVALID, "cart_limit_exceeded",
                                          "a cart holds at most 100 lines", "variant_id",
                                          "at most 100 lines per cart");
                return;
            }
            if (want > it->stock) {
                r->reply = cart_insufficient(r->variant, it->stock);
                return;
            }
        }
        put_line(c, r->variant, want);
    } else if (r->op == OP_DEL) {
        if (find_line(c, r->variant) < 0) {
            r->reply = api_fail(SHOPD_NOTFOUND, "cart_item_not_found", "no such line in the cart");
            return;
        }
        put_line(c, r->variant, 0);
    } else if (r->op == OP_CLEAR) {
        c->n = 0;
        c->discount[0] = '\0';
    } else if (r->op == OP_DISC_SET) {
        int64_t subtotal = 0;
        for (size_t i = 0; i < c->n; i++) {
            cart_item_t *it = info_of(t, c->lines[i].variant_id);
            if (it && it->found)
                subtotal += it->unit_price * c->lines[i].quantity;
        }
        db_conn_t *db = t->db;
        if (db == NULL) {
            r->reply = api_unavailable("the database");
            return;
        }
        pricing_discount_t d;
        pricing_discount_why_t why = PRICING_DISCOUNT_UNKNOWN;
        shopd_rc_t rc = pricing_discount_find(db, ctx->store_id, r->code, subtotal,
                                              c->user ? c->user_id : 0, NULL, &d, &why);
        if (rc != SHOPD_OK) {
            r->reply = api_unavailable("the database");
            return;
        }
        if (why != PRICING_DISCOUNT_OK) {
            r->reply =
                api_fail_field(why == PRICING_DISCOUNT_UNKNOWN ? SHOPD_NOTFOUND : SHOPD_INVALID,
                               pricing_discount_code(why), "this code cannot be used", "code",
                               pricing_discount_code(why));
            return;
        }
        snprintf(c->discount, sizeof(c->discount), "%s", d.code[0] ? d.code : r->code);
    } else if (r->op == OP_DISC_DEL) {
        c->discount[0] = '\0';
    }
    s->dirty = true;
    r->snap = shopd_malloc(sizeof(*r->snap));
    *r->snap = *c;
}

/* Finds or makes the slot for ctx's cart; -1 with r->reply set when there is none. */
static int
slot_for(turn_t *t, api_ctx_t *ctx, wreq_t *r)
{
    char owner[48];
    if (cart_caller_is_user(ctx)) {
        snprintf(owner, sizeof(owner), "u%llu", (unsigned long long)ctx->caller->user_id);
    } else if (ctx->env->cart.n && cart_guest_id_valid(ctx->env->cart.p, ctx->env->cart.n)) {
        snprintf(owner, sizeof(owner), "g%.*s", (int)ctx->env->cart.n, ctx->env->cart.p);
    } else if (r->op == OP_ADD) {
        owner[0] = 'g';
        shopd_random_hex(owner + 1, CART_ID_LEN / 2);
    } else {
        r->reply = api_fail(SHOPD_NOTFOUND, "cart_not_found",
                            "there is no cart: send X-Cart-Id or sign in");
        return -1;
    }
    for (size_t i = 0; i < t->nslots; i++)
        if (strcmp(t->slots[i].owner, owner) == 0)
            return (int)i;
    slot_t *s = &t->slots[t->nslots];
    memset(s, 0, sizeof(*s));
    snprintf(s->owner, sizeof(s->owner), "%s", owner);
    if (owner[0] == 'u') {
        s->cart.user = true;
        s->cart.user_id = ctx->caller->user_id;
    } else {
        snprintf(s->cart.guest_id, sizeof(s->cart.guest_id), "%.32s", owner + 1);
    }
    return (int)t->nslots++;
}

/* Loads every slot: guests in one pipeline, users one query each. */
static void
load(turn_t *t, db_conn_t *db)
{
    kv_conn_t *kv = t->ctxs[0].worker->kv;
    uint64_t store = t->ctxs[0].store_id;
    size_t asked = 0;
    for (size_t i = 0; i < t->nslots; i++) {
        slot_t *s = &t->slots[i];
        if (s->cart.user)
            continue;
        char key[96];
        cart_guest_key(store, s->cart.guest_id, key, sizeof(key));
        if (kv_append(kv, "HGETALL %s", key) != 0)
            s->lost = true;
        else
            asked++;
    }
    for (size_t i = 0; i < t->nslots; i++) {
        slot_t *s = &t->slots[i];
        if (s->cart.user) {
            if (db == NULL || cart_load_user(db, store, s->cart.user_id, &s->cart) != SHOPD_OK)
                s->lost = true;
            continue;
        }
        if (s->lost || asked == 0)
            continue;
        redisReply *rep = kv_get_reply(kv);
        asked--;
        if (cart_parse_guest(rep, &s->cart) != SHOPD_OK)
            s->lost = true;
        if (rep)
            freeReplyObject(rep);
        /* A cart that became an order starts over under a new id. */
        if (s->cart.ordered) {
            memset(&s->cart, 0, sizeof(s->cart));
            shopd_random_hex(s->cart.guest_id, CART_ID_LEN / 2);
            s->fresh = true;
        }
    }
}

static shopd_rc_t
save_users(db_conn_t *c, void *arg)
{
    turn_t *t = arg;
    char sid[24];
    snprintf(sid, sizeof(sid), "%llu", (unsigned long long)t->ctxs[0].store_id);
    for (size_t i = 0; i < t->nslots; i++) {
        slot_t *s = &t->slots[i];
        if (!s->cart.user || !s->dirty || s->lost)
            continue;
        char uid[24];
        snprintf(uid, sizeof(uid), "%llu", (unsigned long long)s->cart.user_id);
        char *vs = shopd_malloc(s->cart.n * 21 + 3), *qs = shopd_malloc(s->cart.n * 5 + 3);
        char *a = vs, *b = qs;
        *a++ = '{';
        *b++ = '{';
        for (size_t k = 0; k < s->cart.n; k++) {
            a +=
                sprintf(a, "%s%llu", k ? "," : "", (unsigned long long)s->cart.lines[k].variant_id);
            b += sprintf(b, "%s%d", k ? "," : "", s->cart.lines[k].quantity);
        }
        strcpy(a, "}");
        strcpy(b, "}");
        const char *p[] = {sid, uid, s->cart.discount, vs, qs};
        PGresult *r = db_exec(
            c, "cart_save",
            "WITH c AS (INSERT INTO carts (store_id, user_id, discount_code) "
            "VALUES ($1, $2, nullif($3, '')) ON CONFLICT (store_id, user_id) DO UPDATE SET "
            "discount_code = EXCLUDED.discount_code, updated_at = now() RETURNING id), "
            "d AS (DELETE FROM cart_items i USING c WHERE i.store_id = $1 AND i.cart_id = c.id "
            "AND NOT (i.variant_id = ANY ($4::bigint[]))) "
            "INSERT INTO cart_items (store_id, cart_id, variant_id, quantity) "
            "SELECT $1, c.id, x.v, x.q FROM c, unnest($4::bigint[], $5::int[]) AS x (v, q) "
            "ON CONFLICT (store_id, cart_id, variant_id) DO UPDATE SET quantity = "
            "EXCLUDED.quantity",
            5, p);
        shopd_free(vs);
        shopd_free(qs);
        shopd_rc_t rc = db_result_rc(r);
        PQclear(r);
        if (rc != SHOPD_OK)
            return rc;
    }
    return SHOPD_OK;
}

static void
save_guests(turn_t *t)
{
    kv_conn_t *kv = t->ctxs[0].worker->kv;
    uint64_t store = t->ctxs[0].store_id;
    char ttl[24];
    snprintf(ttl, sizeof(ttl), "%d", t->ctxs[0].app->cfg->cart_ttl);
    size_t *expect = shopd_calloc(t->nslots ? t->nslots : 1, sizeof(*expect));
    /* One pipeline for every guest cart of the turn; each cart is a MULTI/EXEC so a
     * reader never sees it between its DEL and its HSET. */
    for (size_t i = 0; i < t->nslots; i++) {
        slot_t *s = &t->slots[i];
        if (s->cart.user || !s->dirty || s->lost)
            continue;
        char key[96];
        cart_guest_key(store, s->cart.guest_id, key, sizeof(key));
        size_t argc = 2 + 2 * s->cart.n + (s->cart.discount[0] ? 2 : 0);
        const char **argv = shopd_malloc(argc * sizeof(*argv));
        size_t *lens = shopd_malloc(argc * sizeof(*lens));
        char(*bufs)[2][24] = shopd_malloc((s->cart.n + 1) * sizeof(*bufs));
        size_t k = 0;
        argv[k++] = "HSET";
        argv[k++] = key;
        for (size_t l = 0; l < s->cart.n; l++) {
            snprintf(bufs[l][0], 24, "v%llu", (unsigned long long)s->cart.lines[l].variant_id);
            snprintf(bufs[l][1], 24, "%d", s->cart.lines[l].quantity);
            argv[k++] = bufs[l][0];
            argv[k++] = bufs[l][1];
        }
        if (s->cart.discount[0]) {
            argv[k++] = "d";
            argv[k++] = s->cart.discount;
        }
        for (size_t x = 0; x < k; x++)
            lens[x] = strlen(argv[x]);
        int bad = kv_append(kv, "MULTI") | kv_append(kv, "DEL %s", key);
        expect[i] = 3; /* MULTI, DEL, EXEC */
        if (k > 2) {   /* an empty cart without a code is just deleted */
            bad |= kv_appendv(kv, (int)k, argv, lens) | kv_append(kv, "EXPIRE %s %s", key, ttl);
            expect[i] = 5;
        }
        bad |= kv_append(kv, "EXEC");
        shopd_free(argv);
        shopd_free(lens);
        shopd_free(bufs);
        if (bad)
            s->lost = true;
    }
    bool gone = false; /* the connection failed: every later reply is missing */
    for (size_t i = 0; i < t->nslots; i++) {
        slot_t *s = &t->slots[i];
        for (size_t x = 0; x < expect[i]; x++) {
            redisReply *rep = gone ? NULL : kv_get_reply(kv);
            gone = gone || rep == NULL;
            if (rep == NULL || rep->type == REDIS_REPLY_ERROR ||
                (x == expect[i] - 1 && rep->type != REDIS_REPLY_ARRAY))
                s->lost = true;
            if (rep)
                freeReplyObject(rep);
        }
    }
    shopd_free(expect);
}

void
cart_b_write(api_ctx_t *ctxs, size_t n, net_reply_t **replies)
{
    turn_t t = {.ctxs = ctxs, .n = n};
    t.reqs = shopd_calloc(n, sizeof(*t.reqs));
    t.slots = shopd_calloc(n, sizeof(*t.slots));
    for (size_t i = 0; i < n; i++) {
        wreq_t *r = &t.reqs[i];
        r->slot = parse(&ctxs[i], r) ? slot_for(&t, &ctxs[i], r) : -1;
    }
    db_conn_t *db = db_acquire(ctxs[0].app->db, 2000);
    t.db = db;
    load(&t, db);
    /* The catalog rows of every line of every cart, and of every variant asked for. */
    size_t cap = n;
    for (size_t i = 0; i < t.nslots; i++)
        cap += t.slots[i].cart.n;
    uint64_t *ids = shopd_calloc(cap ? cap : 1, sizeof(*ids));
    size_t nid = 0;
    for (size_t i = 0; i < t.nslots; i++)
        for (size_t l = 0; l < t.slots[i].cart.n; l++)
            ids[nid++] = t.slots[i].cart.lines[l].variant_id;
    for (size_t i = 0; i < n; i++)
        if (t.reqs[i].slot >= 0 && t.reqs[i].variant)
            ids[nid++] = t.reqs[i].variant;
    t.info = shopd_calloc(nid ? nid : 1, sizeof(*t.info));
    t.ninfo = nid;
    bool catalog_ok = db && cart_price_ids(db, ctxs[0].store_id, ids, nid, t.info) == SHOPD_OK;
    shopd_free(ids);
    for (size_t i = 0; i < n; i++) {
        wreq_t *r = &t.reqs[i];
        if (r->slot < 0)
            continue;
        if (!catalog_ok || t.slots[r->slot].lost) {
            r->reply = api_unavailable(db ? "the cart store" : "the database");
            r->slot = -1;
            continue;
        }
        apply(&t, &ctxs[i], r);
    }
    bool users = false;
    for (size_t i = 0; i < t.nslots; i++)
        users = users || (t.slots[i].cart.user && t.slots[i].dirty && !t.slots[i].lost);
    if (users && db_tx(db, save_users, &t) != SHOPD_OK)
        for (size_t i = 0; i < t.nslots; i++)
            if (t.slots[i].cart.user)
                t.slots[i].lost = true;
    save_guests(&t);
    for (size_t i = 0; i < n; i++) {
        wreq_t *r = &t.reqs[i];
        if (r->reply == NULL && r->slot >= 0 && t.slots[r->slot].lost)
            r->reply = api_unavailable("the cart store");
        if (r->reply == NULL && r->snap) {
            cart_item_t *items = shopd_calloc(r->snap->n ? r->snap->n : 1, sizeof(*items));
            for (size_t l = 0; l < r->snap->n; l++) {
                cart_item_t *it = info_of(&t, r->snap->lines[l].variant_id);
                if (it)
                    items[l] = *it;
                items[l].variant_id = r->snap->lines[l].variant_id;
                items[l].quantity = r->snap->lines[l].quantity;
            }
            r->snap->exists = true;
            r->reply = api_json(SHOPD_OK, cart_view(&ctxs[i], db, r->snap, items));
            if (!r->snap->user)
                net_reply_add_header(r->reply, "X-Cart-Id", r->snap->guest_id);
            shopd_free(items);
        }
        if (r->reply == NULL)
            r->reply = api_internal(&ctxs[i], "cart write left no answer");
        replies[i] = r->reply;
        shopd_free(r->snap);
    }
    db_release(db);
    shopd_free(t.info);
    shopd_free(t.slots);
    shopd_free(t.reqs);
}

/* ---------------------------------------------------------------- merge at login */

typedef struct merge_s {
    uint64_t user_id;
    char guest_id[CART_ID_LEN + 1];
    net_reply_t *reply;
} merge_t;

static void
merge_drop(void *arg)
{
    merge_t *m = arg;
    net_reply_free(m->reply);
    shopd_free(m);
}

/* On the store's actor. */
static net_reply_t *
merge_then(api_ctx_t *ctx, void *arg)
{
    merge_t *m = arg;
    net_reply_t *reply = m->reply;
    slot_t *s = shopd_calloc(2, sizeof(*s)); /* [0] the user's, [1] the guest's */
    turn_t t = {.ctxs = ctx, .n = 1, .slots = s, .nslots = 1};
    s[0].cart.user = true;
    s[0].cart.user_id = m->user_id;
    snprintf(s[1].cart.guest_id, sizeof(s[1].cart.guest_id), "%s", m->guest_id);
    char key[96];
    cart_guest_key(ctx->store_id, m->guest_id, key, sizeof(key));
    db_conn_t *db = db_acquire(ctx->app->db, 2000);
    redisReply *r = kv_command(ctx->worker->kv, "HGETALL %s", key);
    bool ok = db && cart_parse_guest(r, &s[1].cart) == SHOPD_OK && !s[1].cart.ordered &&
              cart_load_user(db, ctx->store_id, m->user_id, &s[0].cart) == SHOPD_OK;
    if (r)
        freeReplyObject(r);
    if (ok && s[1].cart.n > 0) {
        uint64_t ids[2 * CART_MAX_LINES];
        size_t nid = 0;
        for (int k = 0; k < 2; k++)
            for (size_t l = 0; l < s[k].cart.n; l++)
                ids[nid++] = s[k].cart.lines[l].variant_id;
        t.info = shopd_calloc(nid, sizeof(*t.info));
        t.ninfo = nid;
        ok = cart_price_ids(db, ctx->store_id, ids, nid, t.info) == SHOPD_OK;
        for (size_t l = 0; ok && l < s[1].cart.n; l++) {
            const cart_line_t *g = &s[1].cart.lines[l];
            cart_item_t *it = info_of(&t, g->variant_id);
            if (it == NULL || !it->found || !it->active)
                continue; /* gone from the catalog: nothing to keep */
            int have = find_line(&s[0].cart, g->variant_id);
            int want = g->quantity + (have >= 0 ? s[0].cart.lines[have].quantity : 0);
            if (want > it->stock)
                want = it->stock;
            if (want > CART_MAX_QTY)
                want = CART_MAX_QTY;
            if (want > 0 && (have >= 0 || s[0].cart.n < CART_MAX_LINES))
                put_line(&s[0].cart, g->variant_id, want);
        }
        if (s[0].cart.discount[0] == '\0')
            memcpy(s[0].cart.discount, s[1].cart.discount, sizeof(s[0].cart.discount));
        s[0].dirty = true;
        if (ok && db_tx(db, save_users, &t) == SHOPD_OK) {
            redisReply *d = kv_command(ctx->worker->kv, "DEL %s", key);
            if (d)
                freeReplyObject(d);
        } else {
            ok = false;
        }
        shopd_free(t.info);
    }
    if (!ok)
        log_warn("guest cart not merged at login store=%llu user=%llu (both carts kept)",
                 (unsigned long long)ctx->store_id, (unsigned long long)m->user_id);
    db_release(db);
    shopd_free(s);
    shopd_free(m);
    return reply;
}

net_reply_t *
cart_login_merge(api_ctx_t *ctx, uint64_t user_id, net_reply_t *login_reply)
{
    const msg_str_t *id = &ctx->env->cart;
    if (!cart_guest_id_valid(id->p, id->n))
        return login_reply;
    merge_t *m = shopd_calloc(1, sizeof(*m));
    m->user_id = user_id;
    memcpy(m->guest_id, id->p, id->n);
    m->reply = login_reply;
    net_reply_t *r = api_ordered_then(ctx, merge_then, merge_drop, m);
    if (r != NULL)
        return r;
    shopd_free(m); /* the store's mailbox is full: sign in without the merge */
    log_warn("guest cart not merged at login: store busy store=%llu",
             (unsigned long long)ctx->store_id);
    return login_reply;
}
