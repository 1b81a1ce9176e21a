/*
 * common.c: what every catalog handler shares: the admin check, path ids,
 * integer validation, slugs, PostgreSQL error mapping by constraint name, and
 * the public response cache.
 *
 * The cache: every catalog write INCRs "shopd:cat:ver:<store>" after its commit.
 * A public GET reads that version and its entry in one pipelined round trip;
 * the entry ("<version>\n<etag>\n<body>") is served only if its version is the
 * current one, so a write makes every older page unreachable at once, without
 * scanning keys. A bump lost while Redis was down is remembered per store and
 * retried (see "stores whose version bump was lost"); entries also expire
 * (CAT_CACHE_TTL) as the last bound. When Redis is down the GET is simply
 * served uncached. A small per-worker in-process table in
 * front of Redis holds recent pages, so a hot page costs one GET of the version.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catalog_priv.h"
#include "shopd/log.h"

#define CAT_CACHE_TTL "300"

bool
cat_is_admin(const api_ctx_t *ctx)
{
    const msg_caller_t *c = ctx->caller;
    if (c == NULL)
        return false;
    if (c->role == MSG_ROLE_SUPER_ADMIN || c->role == MSG_ROLE_PLATFORM)
        return true;
    return c->role == MSG_ROLE_STORE_ADMIN && c->store_id == ctx->store_id;
}

bool
cat_id_param(const api_ctx_t *ctx, const char *name, char *buf)
{
    size_t n;
    const char *p = msg_param(ctx->env, name, &n);
    uint64_t id;
    if (!shopd_id_parse(p, n, &id))
        return false;
    memcpy(buf, p, n);
    buf[n] = '\0';
    return true;
}

const char *
cat_sid(const api_ctx_t *ctx, char *buf)
{
    snprintf(buf, 24, "%llu", (unsigned long long)ctx->store_id);
    return buf;
}

void
cat_slugify(const char *s, char *out, size_t n)
{
    size_t o = 0;
    bool dash = false;
    for (; *s && o + 1 < n; s++) {
        char ch = *s;
        if (ch >= 'A' && ch <= 'Z')
            ch = (char)(ch + 32);
        if ((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9')) {
            if (dash && o > 0 && o + 2 < n)
                out[o++] = '-';
            dash = false;
            out[o++] = ch;
        } else {
            dash = true;
        }
    }
    out[o] = '\0';
    if (o == 0)
        snprintf(out, n, "item");
}

bool
cat_slug_valid(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 120 || s[0] == '-' || s[n - 1] == '-')
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-';
        if (!ok || (ch == '-' && s[i + 1] == '-'))
            return false;
    }
    return true;
}

db_conn_t *
cat_acquire(api_ctx_t *ctx, net_reply_t **reply)
{
    db_conn_t *c = db_acquire(ctx->app->db, 2000);
    if (c == NULL)
        *reply = api_unavailable("the database");
    return c;
}

/* One attempt of a cat_tx: what the handler's body answered last. */
typedef struct cat_txrun_s {
    api_ctx_t *ctx;
    cat_tx_fn fn;
    void *arg;
    net_reply_t *reply;
} cat_txrun_t;

static shopd_rc_t
tx_body(db_conn_t *c, void *arg)
{
    cat_txrun_t *t = arg;
    /* A retried attempt forgets the answer of the one before. */
    net_reply_free(t->reply);
    t->reply = NULL;
    return t->fn(t->ctx, c, t->arg, &t->reply);
}

net_reply_t *
cat_tx(api_ctx_t *ctx, cat_tx_fn fn, void *arg)
{
    net_reply_t *reply = NULL;
    db_conn_t *c = cat_acquire(ctx, &reply);
    if (c == NULL)
        return reply;
    cat_txrun_t t = {ctx, fn, arg, NULL};
    shopd_rc_t rc = db_tx(c, tx_body, &t);
    db_release(c);
    if (rc == SHOPD_OK) {
        net_reply_free(t.reply); /* a body answers only when it fails */
        return NULL;
    }
    if (t.reply != NULL)
        return t.reply;
    /* The body was fine but the COMMIT was not, or the connection went. */
    if (rc == SHOPD_UNAVAILABLE)
        return api_unavailable("the database");
    if (rc == SHOPD_CONFLICT)
        return api_fail(SHOPD_CONFLICT, "conflict", "the change conflicts with existing data");
    return api_internal(ctx, "commit failed");
}

typedef struct cat_stmt_s {
    const char *what, *name, *sql;
    int np;
    const char *const *p;
    PGresult *r;
} cat_stmt_t;

static shopd_rc_t
stmt_body(api_ctx_t *ctx, db_conn_t *c, void *arg, net_reply_t **reply)
{
    cat_stmt_t *s = arg;
    PQclear(s->r);
    s->r = db_exec(c, s->name, s->sql, s->np, s->p);
    shopd_rc_t rc = db_result_rc(s->r);
    if (rc != SHOPD_OK)
        *reply = api_db_error(ctx, s->r, s->what);
    return rc;
}

net_reply_t *
cat_write_stmt(api_ctx_t *ctx, const char *what, const char *name, const char *sql, int np,
               const char *const *p, PGresult **out)
{
    cat_stmt_t s = {what, name, sql, np, p, NULL};
    net_reply_t *reply = cat_tx(ctx, stmt_body, &s);
    if (reply != NULL) {
        PQclear(s.r);
        s.r = NULL;
    }
    *out = s.r;
    return reply;
}

net_reply_t *
cat_row_json(shopd_rc_t rc, PGresult *r, int col)
{
    return api_raw_json(rc, PQgetvalue(r, 0, col), (size_t)PQgetlength(r, 0, col));
}

net_reply_t *
cat_one_row(api_ctx_t *ctx, PGresult *r, const char *what, const char *nf_code,
            const char *nf_message)
{
    net_reply_t *reply;
    if (db_result_rc(r) != SHOPD_OK)
        reply = api_db_error(ctx, r, what);
    else if (PQntuples(r) == 0)
        reply = api_fail(SHOPD_NOTFOUND, nf_code, nf_message);
    else
        reply = cat_row_json(SHOPD_OK, r, 0);
    PQclear(r);
    return reply;
}

/* ------------------------------------------------------------ cache */

/* ---- stores whose version bump was lost ----
 * A write committed while Redis was down could not bump its store's version, so
 * the pages cached before it would come back with Redis, stale. The store is
 * remembered here until a bump succeeds; meanwhile its public pages are built
 * fresh and never served from or written to the cache. Any catalog request of
 * this process (and /readyz, which load balancers poll) retries the bumps, so
 * they land as soon as Redis answers again. A lost process loses the list;
 * the entries' TTL (CAT_CACHE_TTL) is the bound then. */
static pthread_mutex_t dirty_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t *dirty_ids; /* under dirty_lock */
static size_t dirty_n, dirty_cap;
/* Mirror of dirty_n read without the lock on every cached GET: relaxed is enough,
 * a reader that misses a store added this instant is ordered after nothing it
 * could have seen (the failed bump and its write are in another request). */
static _Atomic size_t dirty_count;

static bool
dirty_has(uint64_t store_id)
{
    if (atomic_load_explicit(&dirty_count, memory_order_relaxed) == 0)
        return false;
    bool found = false;
    pthread_mutex_lock(&dirty_lock);
    for (size_t i = 0; i < dirty_n && !found; i++)
        found = dirty_ids[i] == store_id;
    pthread_mutex_unlock(&dirty_lock);
    return found;
}

static void
dirty_add(uint64_t store_id)
{
    pthread_mutex_lock(&dirty_lock);
    bool found = false;
    for (size_t i = 0; i < dirty_n && !found; i++)
        found = dirty_ids[i] == store_id;
    if (!found) {
        if (dirty_n == dirty_cap) {
            dirty_cap = dirty_cap ? dirty_cap * 2 : 16;
            dirty_ids = shopd_realloc(dirty_ids, dirty_cap * sizeof(*dirty_ids));
        }
        dirty_ids[dirty_n++] = store_id;
        atomic_store_explicit(&dirty_count, dirty_n, memory_order_relaxed);
    }
    pthread_mutex_unlock(&dirty_lock);
}

static void
dirty_remove(uint64_t store_id)
{
    pthread_mutex_lock(&dirty_lock);
    for (size_t i = 0; i < dirty_n; i++)
        if (dirty_ids[i] == store_id) {
            dirty_ids[i] = dirty_ids[--dirty_n];
            break;
        }
    atomic_store_explicit(&dirty_count, dirty_n, memory_order_relaxed);
    pthread_mutex_unlock(&dirty_lock);
}

static bool
bump(kv_conn_t *kv, uint64_t store_id)
{
    redisReply *r =
        kv ? kv_command(kv, "INCR shopd:cat:ver:%llu", (unsigned long long)store_id) : NULL;
    bool ok = r != NULL && r->type == REDIS_REPLY_INTEGER;
    if (r)
        freeReplyObject(r);
    return ok;
}

void
catalog_cache_recover(kv_conn_t *kv)
{
    if (kv == NULL || atomic_load_explicit(&dirty_count, memory_order_relaxed) == 0)
        return;
    pthread_mutex_lock(&dirty_lock);
    size_t n = dirty_n;
    uint64_t *ids = shopd_malloc((n ? n : 1) * sizeof(*ids));
    if (n)
        memcpy(ids, dirty_ids, n * sizeof(*ids));
    pthread_mutex_unlock(&dirty_lock);
    for (size_t i = 0; i < n; i++) {
        if (!bump(kv, ids[i]))
            break; /* still down: try again on the next request */
        dirty_remove(ids[i]);
        log_info("catalog version bumped after a Redis outage store=%llu",
                 (unsigned long long)ids[i]);
    }
    shopd_free(ids);
}

bool
catalog_cache_dirty(uint64_t store_id)
{
    return dirty_has(store_id);
}

void
cat_bump(api_ctx_t *ctx)
{
    kv_conn_t *kv = ctx->worker ? ctx->worker->kv : NULL;
    if (bump(kv, ctx->store_id)) {
        if (dirty_has(ctx->store_id))
            dirty_remove(ctx->store_id);
        return;
    }
    dirty_add(ctx->store_id);
    log_warn("catalog version bump failed store=%llu; its pages bypass the cache until Redis "
             "answers again",
             (unsigned long long)ctx->store_id);
}

void
catalog_changed(api_ctx_t *ctx)
{
    cat_bump(ctx);
}

net_reply_t *
catalog_cached(api_ctx_t *ctx, net_reply_t *(*fn)(api_ctx_t *ctx))
{
    return cat_cached(ctx, fn);
}

/* Route name, path parameters, then the query. The edge has already put the
 * query in its canonical form (api_query_canon: declared parameters only, each
 * once, sorted, re-encoded), exactly what the handler reads, so the key names
 * the page the handler would build and nothing else. */
static char *
cache_key(const api_ctx_t *ctx)
{
    const msg_env_t *e = ctx->env;
    size_t cap = 64 + e->type.n + e->query.n;
    for (size_t i = 0; i < e->nparams; i++)
        cap += e->param_values[i].n + 1;
    char *k = shopd_malloc(cap);
    int o = snprintf(k, cap, "shopd:cat:%llu:%.*s", (unsigned long long)ctx->store_id,
                     (int)e->type.n, e->type.p);
    for (size_t i = 0; i < e->nparams; i++) {
        o += snprintf(k + o, cap - (size_t)o, ":%.*s", (int)e->param_values[i].n,
                      e->param_values[i].p);
    }
    snprintf(k + o, cap - (size_t)o, "?%.*s", (int)e->query.n, e->query.p ? e->query.p : "");
    return k;
}

static uint64_t
fnv1a(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ULL;
    }
    return h;
}

uint64_t
cat_hash(const char *s)
{
    return fnv1a(s, strlen(s));
}

static void
etag_of(const char *body, size_t len, char out[24])
{
    snprintf(out, 24, "\"%016llx\"", (unsigned long long)fnv1a(body, len));
}

static bool
inm_matches(const api_ctx_t *ctx, const char *etag)
{
    const char *p = ctx->env->inm.p;
    size_t n = ctx->env->inm.n;
    if (p == NULL || n == 0)
        return false;
    if (n == 1 && p[0] == '*')
        return true;
    return memmem(p, n, etag, strlen(etag)) != NULL;
}

/* The reply for a public page: 304 if the client has it, else the body. */
static net_reply_t *
public_reply(const api_ctx_t *ctx, const char *body, size_t len, const char *etag,
             const char *state)
{
    net_reply_t *r;
    if (inm_matches(ctx, etag)) {
        r = api_empty(SHOPD_NOT_MODIFIED);
    } else {
        r = api_empty(SHOPD_OK);
        net_reply_set_body(r, body, len);
    }
    net_reply_add_header(r, "ETag", etag);
    /* Revalidate every time: the version makes a changed page visible at once. */
    net_reply_add_header(r, "Cache-Control", "public, no-cache");
    /* The store is named by these headers, not the URL alone: a shared cache in
     * front of shopd must not hand one store's page to another. */
    net_reply_add_header(r, "Vary", "X-Tenant-Id, Host");
    net_reply_add_header(r, "X-Cache", state);
    return r;
}

/* ---- the in-process layer: per worker thread, so no locks ----
 * A direct-mapped table of recent pages with the catalog version they were built
 * under. Redis still says which version is current (pages are never served on
 * local say-so); when the local copy is current, only the small version key
 * crosses the wire. Freed by the thread-key destructor when a worker exits. */
#define LC_SLOTS 256
#define LC_MAX_BODY (256 * 1024)

typedef struct lc_entry_s {
    uint64_t hash;
    char *key;
    char ver[32];
    char etag[24];
    char *body;
    size_t len;
    uint64_t born_us; /* expires like the Redis entry (CAT_CACHE_TTL) */
} lc_entry_t;

static pthread_key_t lc_key;
static pthread_once_t lc_once = PTHREAD_ONCE_INIT;

static void
lc_destroy(void *p)
{
    lc_entry_t *t = p;
    for (size_t i = 0; t && i < LC_SLOTS; i++) {
        shopd_free(t[i].key);
        shopd_free(t[i].body);
    }
    shopd_free(t);
}

static void
lc_init(void)
{
    if (pthread_key_create(&lc_key, lc_destroy) != 0)
        abort();
}

/* This thread's slot for key (the entry may hold another key or be empty). */
static lc_entry_t *
lc_slot(const char *key, uint64_t *hash)
{
    pthread_once(&lc_once, lc_init);
    lc_entry_t *t = pthread_getspecific(lc_key);
    if (t == NULL) {
        t = shopd_calloc(LC_SLOTS, sizeof(*t));
        pthread_setspecific(lc_key, t);
    }
    *hash = fnv1a(key, strlen(key));
    return &t[*hash % LC_SLOTS];
}

static void
lc_put(lc_entry_t *e, uint64_t hash, const char *key, const char *ver, const char *etag,
       const char *body, size_t len)
{
    if (len > LC_MAX_BODY)
        return;
    shopd_free(e->key);
    shopd_free(e->body);
    e->hash = hash;
    e->key = shopd_strdup(key);
    snprintf(e->ver, sizeof(e->ver), "%s", ver);
    snprintf(e->etag, sizeof(e->etag), "%s", etag);
    e->body = shopd_malloc(len + 1);
    memcpy(e->body, body, len);
    e->body[len] = '\0';
    e->len = len;
    e->born_us = shopd_now_us();
}

/* Parses a Redis entry "<version>\n<etag>\n<body>"; true if it is of version ver. */
static bool
entry_parse(const redisReply *re, const char *ver, char etag[24], const char **body, size_t *len)
{
    if (re == NULL || re->type != REDIS_REPLY_STRING)
        return false;
    const char *nl1 = memchr(re->str, '\n', re->len);
    const char *nl2 = nl1 ? memchr(nl1 + 1, '\n', re->len - (size_t)(nl1 + 1 - re->str)) : NULL;
    if (nl2 == NULL || (size_t)(nl1 - re->str) != strlen(ver) ||
        memcmp(re->str, ver, strlen(ver)) != 0 || nl2 - nl1 - 1 >= 24)
        return false;
    snprintf(etag, 24, "%.*s", (int)(nl2 - nl1 - 1), nl1 + 1);
    *body = nl2 + 1;
    *len = re->len - (size_t)(nl2 + 1 - re->str);
    return true;
}

static void
free_reply(redisReply *r)
{
    if (r)
        freeReplyObject(r);
}

net_reply_t *
cat_cached(api_ctx_t *ctx, net_reply_t *(*fn)(api_ctx_t *ctx))
{
    if (cat_is_admin(ctx)) {
        net_reply_t *r = fn(ctx);
        net_reply_add_header(r, "Cache-Control", "private, no-store");
        /* The same URL answers differently per store: say so on every page. */
        net_reply_add_header(r, "Vary", "X-Tenant-Id, Host");
        return r;
    }
    kv_conn_t *kv = ctx->worker ? ctx->worker->kv : NULL;
    catalog_cache_recover(kv);
    if (dirty_has(ctx->store_id)) {
        /* A write of this store is not yet reflected in its version: what Redis
         * holds may predate it. Build the page, do not cache it. */
        net_reply_t *r = fn(ctx);
        net_reply_add_header(r, "Cache-Control", "no-cache");
        net_reply_add_header(r, "Vary", "X-Tenant-Id, Host");
        net_reply_add_header(r, "X-Cache", "bypass");
        return r;
    }
    char *key = cache_key(ctx);
    uint64_t hash;
    lc_entry_t *local = lc_slot(key, &hash);
    /* Our key, and young enough: a version counter reset (Redis lost its data) or a
     * bump lost while Redis was down cannot keep a stale page longer than the TTL. */
    bool mine = local->key && local->hash == hash && strcmp(local->key, key) == 0 &&
                shopd_now_us() - local->born_us < (uint64_t)atoi(CAT_CACHE_TTL) * 1000000u;
    char ver[32] = "0", etag[24];
    const char *body;
    size_t len;
    bool redis_ok = false;
    net_reply_t *out = NULL;
    redisReply *rv = NULL, *re = NULL;

    /* One round trip: the version, plus the page unless a local copy may do. */
    int queued = 0;
    if (kv && kv_append(kv, "GET shopd:cat:ver:%llu", (unsigned long long)ctx->store_id) == 0) {
        queued = 1;
        if (!mine && kv_append(kv, "GET %s", key) == 0)
            queued = 2;
    }
    if (queued)
        rv = kv_get_reply(kv);
    if (queued == 2)
        re = kv_get_reply(kv);
    if (rv && rv->type != REDIS_REPLY_ERROR &&
        (queued == 1 || (re && re->type != REDIS_REPLY_ERROR))) {
        redis_ok = true;
        if (rv->type == REDIS_REPLY_STRING)
            snprintf(ver, sizeof(ver), "%.*s", (int)rv->len, rv->str);
    }
    if (redis_ok && mine && strcmp(local->ver, ver) == 0) {
        out = public_reply(ctx, local->body, local->len, local->etag, "hit");
    } else if (redis_ok) {
        if (mine)
            re = kv_command(kv, "GET %s", key); /* the local copy is stale */
        if (entry_parse(re, ver, etag, &body, &len)) {
            lc_put(local, hash, key, ver, etag, body, len);
            out = public_reply(ctx, body, len, etag, "hit");
        }
    }
    free_reply(rv);
    free_reply(re);
    if (out == NULL) {
        net_reply_t *fresh = fn(ctx);
        if (fresh->status !=
            net_status_for_rc(SHOPD_OK)) { /* only a plain success page is cached */
            out = fresh;
        } else {
            body = fresh->body ? fresh->body : "";
            etag_of(body, fresh->len, etag);
            if (redis_ok) {
                size_t hl = strlen(ver) + strlen(etag) + 2;
                char *val = shopd_malloc(hl + fresh->len + 1);
                snprintf(val, hl + 1, "%s\n%s\n", ver, etag);
                if (fresh->len)
                    memcpy(val + hl, body, fresh->len);
                const char *argv[5] = {"SET", key, val, "EX", CAT_CACHE_TTL};
                size_t argl[5] = {3, strlen(key), hl + fresh->len, 2, strlen(CAT_CACHE_TTL)};
                free_reply(kv_commandv(kv, 5, argv, argl));
                shopd_free(val);
                lc_put(local, hash, key, ver, etag, body, fresh->len);
            }
            out = public_reply(ctx, body, fresh->len, etag, "miss");
            net_reply_free(fresh);
        }
    }
    shopd_free(key);
    return out;
}
