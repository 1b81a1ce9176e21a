/*
 * guard.c: the two checks the auth endpoints and the middleware lean on:
 * token-bucket rate limits in Redis, and the "is this user still active"
 * cache behind the disabled-user check.
 *
 * The bucket is one Redis hash {tokens, ts} updated by a Lua script, so the
 * read-refill-take is atomic across every shopd process sharing Redis. Time
 * comes from Redis (TIME) so processes with skewed clocks agree.
 *
 * The user cache is a small direct-mapped table under a mutex holding what the
 * database said of a user (status, role, store, token version); every request
 * compares it with its own token's claims. A change is seen at once in the
 * process that made it (auth_user_forget) and within AUTH_USER_CACHE_S seconds
 * in every other process (the entries expire; the token version in the
 * database makes sure no stale token is accepted again after that).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shopd/auth.h"
#include "shopd/db.h"
#include "shopd/log.h"

/* KEYS[1] bucket; ARGV: capacity, refill per second. Returns 0 (taken) or the
 * whole seconds until one token is back. */
static const char bucket_lua[] =
    "local cap = tonumber(ARGV[1]) local rate = tonumber(ARGV[2]) "
    "local t = redis.call('TIME') local now = tonumber(t[1]) + tonumber(t[2]) / 1e6 "
    "local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts') "
    "local tokens = tonumber(b[1]) or cap local ts = tonumber(b[2]) or now "
    "tokens = math.min(cap, tokens + math.max(0, now - ts) * rate) "
    "local wait = 0 "
    "if tokens >= 1 then tokens = tokens - 1 else wait = math.ceil((1 - tokens) / rate) end "
    "redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now)) "
    "redis.call('EXPIRE', KEYS[1], math.ceil(cap / rate) + 1) "
    "return wait";

int
auth_rate_take(kv_conn_t *kv, const char *key, int burst, int period_s)
{
    if (burst <= 0 || period_s <= 0 || kv == NULL)
        return 0;
    char cap[24], rate[48];
    snprintf(cap, sizeof(cap), "%d", burst);
    snprintf(rate, sizeof(rate), "%.9f", (double)burst / period_s);
    const char *argv[] = {"EVAL", bucket_lua, "1", key, cap, rate};
    size_t lens[6];
    for (int i = 0; i < 6; i++)
        lens[i] = strlen(argv[i]);
    redisReply *r = kv_commandv(kv, 6, argv, lens);
    int wait = 0;
    if (r == NULL || r->type != REDIS_REPLY_INTEGER) {
        /* Fail open: a lost Redis must not stop every login. */
        log_warn("rate limit check failed key=%s: %s", key,
                 r && r->str ? r->str : "redis unavailable");
    } else {
        wait = r->integer > 0 ? (int)r->integer : 0;
    }
    if (r)
        freeReplyObject(r);
    return wait;
}

#define ACTIVE_SLOTS 4096
#define ACTIVE_TTL_US ((uint64_t)AUTH_USER_CACHE_S * 1000000u)

/* What the database said of a user: the cache holds facts, never a verdict, so
 * each request compares them with its own token's claims. */
typedef struct active_ent_s {
    uint64_t user_id;
    uint64_t expires_us;
    bool found;
    bool active;
    int role;
    uint64_t store_id; /* the tenant looked up in (the claim); 0 for the platform */
    uint32_t ver;
} active_ent_t;

static active_ent_t active_tab[ACTIVE_SLOTS];
static pthread_mutex_t active_lock = PTHREAD_MUTEX_INITIALIZER;

void
auth_user_forget(uint64_t user_id)
{
    pthread_mutex_lock(&active_lock);
    active_ent_t *e = &active_tab[user_id % ACTIVE_SLOTS];
    if (e->user_id == user_id)
        e->user_id = 0;
    pthread_mutex_unlock(&active_lock);
}

static bool
claims_hold(const active_ent_t *e, const msg_caller_t *c)
{
    return e->found && e->active && e->role == c->role && e->store_id == c->store_id &&
           e->ver == c->ver;
}

bool
auth_user_current(db_pool_t *db, const msg_caller_t *c, bool *unavailable)
{
    *unavailable = false;
    uint64_t now = shopd_now_us();
    pthread_mutex_lock(&active_lock);
    active_ent_t e = active_tab[c->user_id % ACTIVE_SLOTS];
    pthread_mutex_unlock(&active_lock);
    /* An entry answers only for the tenant it was looked up in. */
    if (e.user_id == c->user_id && e.store_id == c->store_id && e.expires_us > now)
        return claims_hold(&e, c);

    db_conn_t *conn = db_acquire(db, 2000);
    if (conn == NULL) {
        *unavailable = true;
        return false;
    }
    /* Looked up in the tenant the token claims (0: platform): a user of another
     * store, or one moved away since, is not found, so its claims do not hold. */
    char id[24], sid[24];
    snprintf(id, sizeof(id), "%llu", (unsigned long long)c->user_id);
    snprintf(sid, sizeof(sid), "%llu", (unsigned long long)c->store_id);
    const char *p[2] = {id, sid};
    PGresult *r = db_exec(conn, "auth_user_status",
                          "SELECT status, role, tenant_id, token_version FROM users "
                          "WHERE tenant_id = $2::bigint AND id = $1::bigint",
                          2, p);
    bool ok = false;
    if (db_result_rc(r) != SHOPD_OK) {
        *unavailable = true;
    } else {
        active_ent_t fresh = {
            .user_id = c->user_id, .expires_us = now + ACTIVE_TTL_US, .store_id = c->store_id};
        if (PQntuples(r) == 1) {
            fresh.found = true;
            fresh.active = strcmp(PQgetvalue(r, 0, 0), "active") == 0;
            fresh.role = auth_role_parse(PQgetvalue(r, 0, 1));
            fresh.store_id = strtoull(PQgetvalue(r, 0, 2), NULL, 10);
            fresh.ver = (uint32_t)strtoul(PQgetvalue(r, 0, 3), NULL, 10);
        }
        pthread_mutex_lock(&active_lock);
        active_tab[c->user_id % ACTIVE_SLOTS] = fresh;
        pthread_mutex_unlock(&active_lock);
        ok = claims_hold(&fresh, c);
    }
    PQclear(r);
    db_release(conn);
    return ok;
}
