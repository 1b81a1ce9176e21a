/*
 * common.c: what every catalog handler shares: the admin check, path ids,
 * integer validation, slugs, PostgreSQL error mapping by constraint name, and
 * the public response cache.
 *
 * The cache: every catalog write INCRs "shopd:cat:ver:<store>" after its commit
 * and publishes the new version (one script, bump()). Pages are kept under the
 * version they were built at, in two levels: in process (pagecache.c: shared by
 * every thread, answered on the I/O threads for anonymous callers, with a gzip
 * copy) and in Redis ("<version>\n<etag>\n<body>", for the other processes). A
 * page is served only if its version is the current one, so a write makes every
 * older page unreachable at once, without scanning keys. The current version
 * comes from the in-process table while its subscription is healthy, else from
 * Redis (one pipelined round trip with the page). A bump lost while Redis was
 * down is remembered per store and retried (see "stores whose version bump was
 * lost"); entries also expire (CAT_CACHE_TTL_S) as the last bound. When Redis is
 * down the GET is served uncached.
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catalog_priv.h"
#include "shopd/log.h"

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

/* INCR and PUBLISH in one script: one round trip, and no process can see the new
 * version in Redis without the message being on its way. The new version is
 * applied to this process's table at once (its next GET must see the write). */
static bool
bump(kv_conn_t *kv, uint64_t store_id)
{
    static const char script[] = "local v = redis.call('INCR', KEYS[1]) "
                                 "redis.call('PUBLISH', ARGV[1], ARGV[2] .. ' ' .. v) return v";
    redisReply *r = kv ? kv_command(kv, "EVAL %s 1 shopd:cat:ver:%llu %s %llu", script,
                                    (unsigned long long)store_id, pc_channel_name(),
                                    (unsigned long long)store_id)
                       : NULL;
    bool ok = r != NULL && r->type == REDIS_REPLY_INTEGER;
    if (ok)
        pc_version_bumped(store_id, (uint64_t)r->integer);
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
cache_key(uint64_t store_id, const msg_env_t *e)
{
    /* Built with memcpy: it runs for every hit on the I/O thread. */
    size_t cap = 64 + e->type.n + e->query.n;
    for (size_t i = 0; i < e->nparams; i++)
        cap += e->param_values[i].n + 1;
    char *k = shopd_malloc(cap);
    size_t o = 10;
    memcpy(k, "shopd:cat:", 10);
    char digits[24];
    size_t nd = 0;
    do {
        digits[nd++] = (char)('0' + store_id % 10);
        store_id /= 10;
    } while (store_id);
    while (nd)
        k[o++] = digits[--nd];
    k[o++] = ':';
    memcpy(k + o, e->type.p, e->type.n);
    o += e->type.n;
    for (size_t i = 0; i < e->nparams; i++) {
        k[o++] = ':';
        memcpy(k + o, e->param_values[i].p, e->param_values[i].n);
        o += e->param_values[i].n;
    }
    k[o++] = '?';
    if (e->query.n)
        memcpy(k + o, e->query.p, e->query.n);
    o += e->query.n;
    k[o] = '\0';
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
inm_matches(msg_str_t inm, const char *etag)
{
    if (inm.p == NULL || inm.n == 0)
        return false;
    if (inm.n == 1 && inm.p[0] == '*')
        return true;
    return memmem(inm.p, inm.n, etag, strlen(etag)) != NULL;
}

static bool
wants_gzip(const msg_env_t *e)
{
    return e->ae.n == 4 && memcmp(e->ae.p, "gzip", 4) == 0;
}

static void
release_page(const void *body, size_t len, void *ud)
{
    (void)body;
    (void)len;
    pc_page_unref(ud);
}

/* The answer from page p: 304 if the client has this representation, else its
 * body, borrowed (the answer holds a reference until libevent has sent it). Every
 * header in one block: this runs on the I/O thread for each hit. */
static net_reply_t *
page_reply(pc_page_t *p, const msg_env_t *e, uint64_t store_id, const char *state)
{
    bool gz = wants_gzip(e) && pc_page_has_gzip(p);
    const char *etag = pc_page_etag(p, gz);
    bool match = inm_matches(e->inm, etag);
    net_reply_t *r = api_empty(match ? SHOPD_NOT_MODIFIED : SHOPD_OK);
    if (!match) {
        size_t len;
        const char *body = pc_page_body(p, gz, &len);
        pc_page_ref(p);
        net_reply_borrow_body(r, body, len, release_page, p);
    }
    /* Revalidate every time: the version makes a changed page visible at once. The
     * store is named by X-Tenant-Id or Host, not the URL alone, so a shared cache in
     * front of shopd must key on them (and on the coding). */
    char h[256];
    int n = snprintf(h, sizeof(h),
                     "ETag: %s\r\nCache-Control: public, no-cache\r\n"
                     "Vary: X-Tenant-Id, Host, Accept-Encoding\r\nX-Cache: %s\r\n%s",
                     etag, state, gz && !match ? "Content-Encoding: gzip\r\n" : "");
    net_reply_set_headers(r, h, (size_t)n < sizeof(h) ? (size_t)n : sizeof(h) - 1);
    r->store_id = store_id;
    return r;
}

net_reply_t *
catalog_page_answer(const msg_env_t *env)
{
    if (dirty_has(env->store_id))
        return NULL;
    char *key = cache_key(env->store_id, env);
    pc_page_t *p = pc_lookup(key);
    shopd_free(key);
    net_reply_t *r = NULL;
    if (p && pc_page_current(p)) {
        pc_count(PC_HIT_IO);
        r = page_reply(p, env, env->store_id, "hit");
    }
    pc_page_unref(p);
    return r;
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

/* A Redis reply of GET shopd:cat:ver:<store> as a version (missing: 0). */
static bool
version_of(const redisReply *r, uint64_t *ver)
{
    if (r == NULL || r->type == REDIS_REPLY_ERROR)
        return false;
    *ver = 0;
    if (r->type == REDIS_REPLY_STRING) {
        char buf[32];
        snprintf(buf, sizeof(buf), "%.*s", (int)(r->len < 31 ? r->len : 31), r->str);
        *ver = strtoull(buf, NULL, 10);
    }
    return true;
}

/* Everything cat_cache_end frees on the way out. */
static void
cache_state_free(cat_cache_t *st)
{
    pc_page_unref(st->local);
    free_reply(st->rv);
    free_reply(st->re);
    shopd_free(st->key);
    memset(st, 0, sizeof(*st));
}

net_reply_t *
cat_cache_begin(api_ctx_t *ctx, cat_cache_t *st)
{
    memset(st, 0, sizeof(*st));
    if (cat_is_admin(ctx)) {
        st->mode = CAT_CACHE_ADMIN;
        return NULL;
    }
    kv_conn_t *kv = ctx->worker ? ctx->worker->kv : NULL;
    catalog_cache_recover(kv);
    if (dirty_has(ctx->store_id)) {
        /* A write of this store is not yet reflected in its version: what the caches
         * hold may predate it. Build the page, do not cache it. */
        st->mode = CAT_CACHE_BYPASS;
        return NULL;
    }
    st->mode = CAT_CACHE_FILL;
    const msg_env_t *e = ctx->env;
    st->key = cache_key(ctx->store_id, e);
    uint64_t epoch = pc_epoch(); /* before any version is read */
    net_reply_t *out = NULL;
    pc_page_t *fresh_page = NULL;

    /* 1. In process: current by the table, or confirmed by Redis recently. */
    st->local = pc_lookup(st->key);
    if (st->local && pc_page_current(st->local)) {
        pc_count(PC_HIT_WORKER);
        out = page_reply(st->local, e, ctx->store_id, "hit");
        goto done;
    }
    /* 2. The version: the table's while the subscription is healthy, else Redis's,
     * asked in one round trip with the page itself. */
    st->have_ver = pc_sub_healthy() && pc_version(ctx->store_id, &st->ver);
    if (st->have_ver) {
        st->re = kv ? kv_command(kv, "GET %s", st->key) : NULL;
        st->redis_ok = st->re != NULL && st->re->type != REDIS_REPLY_ERROR;
    } else if (kv &&
               kv_append(kv, "GET shopd:cat:ver:%llu", (unsigned long long)ctx->store_id) == 0) {
        bool both = kv_append(kv, "GET %s", st->key) == 0;
        st->rv = kv_get_reply(kv);
        st->re = both ? kv_get_reply(kv) : NULL;
        st->redis_ok =
            version_of(st->rv, &st->ver) && st->re != NULL && st->re->type != REDIS_REPLY_ERROR;
        if (st->redis_ok) {
            st->have_ver = true;
            pc_version_learn(ctx->store_id, st->ver, epoch);
            if (st->local && pc_page_version(st->local) == st->ver) {
                pc_page_checked(st->local); /* Redis says it is still the current page */
                pc_count(PC_HIT_WORKER);
                out = page_reply(st->local, e, ctx->store_id, "hit");
                goto done;
            }
        }
    }
    char verbuf[24], etag[24];
    snprintf(verbuf, sizeof(verbuf), "%llu", (unsigned long long)st->ver);
    const char *body;
    size_t len;
    /* 3. Redis's copy, built by another process (or before this one started). */
    if (st->redis_ok && entry_parse(st->re, verbuf, etag, &body, &len)) {
        fresh_page = pc_page_new(ctx->store_id, st->ver, st->key, etag, body, len);
        pc_insert(fresh_page);
        pc_count(PC_HIT_WORKER);
        out = page_reply(fresh_page, e, ctx->store_id, "hit");
        goto done;
    }
    /* 4. To be built by the caller (cat_cache_end). */
    return NULL;
done:
    pc_page_unref(fresh_page);
    cache_state_free(st);
    return out;
}

net_reply_t *
cat_cache_end(api_ctx_t *ctx, cat_cache_t *st, net_reply_t *fresh)
{
    if (st->mode == CAT_CACHE_ADMIN) {
        net_reply_add_header(fresh, "Cache-Control", "private, no-store");
        /* The same URL answers differently per store: say so on every page. */
        net_reply_add_header(fresh, "Vary", "X-Tenant-Id, Host");
        return fresh;
    }
    if (st->mode == CAT_CACHE_BYPASS) {
        net_reply_add_header(fresh, "Cache-Control", "no-cache");
        net_reply_add_header(fresh, "Vary", "X-Tenant-Id, Host");
        net_reply_add_header(fresh, "X-Cache", "bypass");
        return fresh;
    }
    /* Built here. Kept only under a version known to be current (the table's or
     * Redis's); with Redis down it is answered and forgotten. */
    pc_count(PC_MISS);
    net_reply_t *out = NULL;
    pc_page_t *fresh_page = NULL;
    if (fresh->status != net_status_for_rc(SHOPD_OK)) { /* only a plain success is cached */
        out = fresh;
        goto done;
    }
    char verbuf[24], etag[24];
    snprintf(verbuf, sizeof(verbuf), "%llu", (unsigned long long)st->ver);
    const char *body = fresh->body ? fresh->body : "";
    etag_of(body, fresh->len, etag);
    fresh_page = pc_page_new(ctx->store_id, st->ver, st->key, etag, body, fresh->len);
    kv_conn_t *kv = ctx->worker ? ctx->worker->kv : NULL;
    if (st->redis_ok && kv) {
        size_t hl = strlen(verbuf) + strlen(etag) + 2;
        char *val = shopd_malloc(hl + fresh->len + 1);
        snprintf(val, hl + 1, "%s\n%s\n", verbuf, etag);
        if (fresh->len)
            memcpy(val + hl, body, fresh->len);
        char ttl[16];
        snprintf(ttl, sizeof(ttl), "%d", CAT_CACHE_TTL_S);
        const char *argv[5] = {"SET", st->key, val, "EX", ttl};
        size_t argl[5] = {3, strlen(st->key), hl + fresh->len, 2, strlen(ttl)};
        free_reply(kv_commandv(kv, 5, argv, argl));
        shopd_free(val);
    }
    if (st->have_ver)
        pc_insert(fresh_page);
    out = page_reply(fresh_page, ctx->env, ctx->store_id, "miss");
    net_reply_free(fresh);
done:
    pc_page_unref(fresh_page);
    cache_state_free(st);
    return out;
}

net_reply_t *
cat_cached(api_ctx_t *ctx, net_reply_t *(*fn)(api_ctx_t *ctx))
{
    cat_cache_t st;
    net_reply_t *r = cat_cache_begin(ctx, &st);
    return r ? r : cat_cache_end(ctx, &st, fn(ctx));
}
