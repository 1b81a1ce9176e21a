/*
 * idem.c: Idempotency-Key (include/shopd/idem.h). Owns the request
 * fingerprint, the Redis records the dispatcher keeps per (store, key), and
 * the idempotency_keys table (sql/0009) that API_IDEM_SELF handlers write in
 * the transaction of their effect.
 *
 * Redis record, one string value under shopd:idem:<store>:<key>:
 *   'I' fp[32]                                  in flight
 *   'D' fp[32] u32 status u32 ctlen ct u32 hlen headers body...   done
 * (u32 little-endian; ctlen 0 means application/json). The in-flight mark is
 * set with NX, so of two concurrent first requests exactly one runs; the
 * answer overwrites it. Both live IDEM_TTL_S.
 */
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_int.h"
#include "shopd/idem.h"
#include "shopd/log.h"

struct idem_claim_s {
    app_t *app;
    uint64_t store_id;
    char rkey[320]; /* shopd:idem:<store>:<key> */
    size_t rkeylen;
    uint8_t fp[IDEM_FP_LEN];
    bool no_replay; /* API_IDEM_NO_REPLAY: never keep the answer */
};

bool
idem_key_valid(const char *key, size_t n)
{
    if (key == NULL || n < 1 || n > IDEM_KEY_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)key[i] < 0x20 || (unsigned char)key[i] > 0x7e)
            return false;
    return true;
}

bool
idem_method_mutates(const char *method)
{
    return method != NULL && (!strcmp(method, "POST") || !strcmp(method, "PATCH") ||
                              !strcmp(method, "PUT") || !strcmp(method, "DELETE"));
}

/* ------------------------------------------------------------ fingerprint */

/* One field: its length (8 bytes) then its bytes, so ("ab","c") and ("a","bc")
 * never hash alike. */
static void
fp_field(EVP_MD_CTX *md, const void *p, size_t n)
{
    uint8_t len[8];
    for (int i = 0; i < 8; i++)
        len[i] = (uint8_t)((uint64_t)n >> (8 * i));
    EVP_DigestUpdate(md, len, sizeof(len));
    if (n)
        EVP_DigestUpdate(md, p, n);
}

static void
fp_u64(EVP_MD_CTX *md, uint64_t v)
{
    uint8_t b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(v >> (8 * i));
    fp_field(md, b, sizeof(b));
}

void
idem_fingerprint(const api_ctx_t *ctx, uint8_t out[IDEM_FP_LEN])
{
    const msg_env_t *env = ctx->env;
    const char *method = "";
    if (ctx->msg && ctx->msg->type < api_nroutes)
        method = api_routes[ctx->msg->type].method;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (md == NULL) {
        log_error("idempotency: EVP_MD_CTX_new failed");
        abort(); /* as for any allocation failure */
    }
    EVP_DigestInit_ex(md, EVP_sha256(), NULL);
    fp_field(md, "shopd-idem-1", 12); /* a version, should the fields ever change */
    fp_field(md, method, strlen(method));
    fp_field(md, env->type.p, env->type.n);
    fp_u64(md, env->nparams);
    for (size_t i = 0; i < env->nparams; i++) {
        fp_field(md, env->param_names[i].p, env->param_names[i].n);
        fp_field(md, env->param_values[i].p, env->param_values[i].n);
    }
    fp_field(md, env->query.p, env->query.n);
    fp_field(md, env->body.p, env->body.n);
    const msg_caller_t *cl = ctx->caller ? ctx->caller : &env->caller;
    fp_u64(md, cl->user_id);
    fp_u64(md, (uint64_t)(int64_t)cl->role);
    fp_u64(md, cl->store_id);
    unsigned int n = 0;
    EVP_DigestFinal_ex(md, out, &n);
    EVP_MD_CTX_free(md);
}

/* ------------------------------------------------------------ answers */

net_reply_t *
idem_mismatch_reply(void)
{
    return api_fail(SHOPD_INVALID, "idempotency_mismatch",
                    "this Idempotency-Key was used for a different request (method, path, body "
                    "or caller); use a new key for a new request");
}

net_reply_t *
idem_in_flight_reply(void)
{
    net_reply_t *r = api_fail(SHOPD_CONFLICT, "idempotency_in_flight",
                              "a request with this Idempotency-Key is still being processed; "
                              "retry shortly");
    net_reply_add_header(r, "Retry-After", "1");
    return r;
}

bool
idem_keeps(const net_reply_t *r)
{
    int s = r->status;
    if (s == net_status_for_rc(SHOPD_BAD_REQUEST) ||
        s == net_status_for_rc(SHOPD_UNAUTHENTICATED) || s == net_status_for_rc(SHOPD_FORBIDDEN) ||
        s == net_status_for_rc(SHOPD_RATE_LIMITED) || s == net_status_for_rc(SHOPD_UNAVAILABLE))
        return false;
    if (s != net_status_for_rc(SHOPD_INVALID) || r->body == NULL)
        return true;
    /* A 422 from validation did nothing; another 422 (a check constraint the
     * effect hit) is the answer the first run gave, and is kept. */
    json_t *doc = json_loadb(r->body, r->len, 0, NULL);
    const char *code = json_string_value(json_object_get(json_object_get(doc, "error"), "code"));
    bool keep = code == NULL || strcmp(code, "validation_failed") != 0;
    json_decref(doc);
    return keep;
}

net_reply_t *
idem_reply_from_stored(const idem_stored_t *s)
{
    net_reply_t *r = net_reply_new(s->status);
    if (s->body)
        net_reply_set_body(r, s->body, s->len);
    if (s->headers)
        net_reply_set_headers(r, s->headers, strlen(s->headers));
    if (s->content_type)
        net_reply_set_content_type(r, s->content_type);
    net_reply_add_header(r, "Idempotent-Replayed", "true");
    return r;
}

void
idem_stored_clear(idem_stored_t *s)
{
    if (s == NULL)
        return;
    shopd_free(s->content_type);
    shopd_free(s->headers);
    shopd_free(s->body);
    memset(s, 0, sizeof(*s));
}

/* ------------------------------------------------------------ Redis path */

static void
put_u32(char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (char)(uint8_t)(v >> (8 * i));
}

static uint32_t
get_u32(const char *p)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++)
        v |= (uint32_t)(uint8_t)p[i] << (8 * i);
    return v;
}

/* The done record of r (shopd_malloc'd, *n bytes). */
static char *
record_encode(const uint8_t fp[IDEM_FP_LEN], const net_reply_t *r, size_t *n)
{
    const char *ct = r->content_type ? r->content_type : "";
    size_t ctl = strlen(ct), hl = r->headers ? strlen(r->headers) : 0;
    size_t len = 1 + IDEM_FP_LEN + 4 + 4 + ctl + 4 + hl + r->len;
    char *b = shopd_malloc(len), *p = b;
    *p++ = 'D';
    memcpy(p, fp, IDEM_FP_LEN);
    p += IDEM_FP_LEN;
    put_u32(p, (uint32_t)r->status);
    p += 4;
    put_u32(p, (uint32_t)ctl);
    p += 4;
    memcpy(p, ct, ctl);
    p += ctl;
    put_u32(p, (uint32_t)hl);
    p += 4;
    if (hl)
        memcpy(p, r->headers, hl);
    p += hl;
    if (r->len)
        memcpy(p, r->body, r->len);
    *n = len;
    return b;
}

/* A number that can be an HTTP status at all (a record's sanity check). */
static bool
status_in_range(int s)
{
    return s >= 100 && s <= 599;
}

/* Reads a done record into out; false if it is not one (corrupt). */
static bool
record_decode(const char *b, size_t n, idem_stored_t *out)
{
    memset(out, 0, sizeof(*out));
    size_t off = 1 + IDEM_FP_LEN;
    if (n < off + 12 || b[0] != 'D')
        return false;
    out->status = (int)get_u32(b + off);
    uint32_t ctl = get_u32(b + off + 4);
    off += 8;
    if (ctl > n - off)
        return false;
    if (ctl)
        out->content_type = shopd_strndup(b + off, ctl);
    off += ctl;
    if (n - off < 4)
        goto bad;
    uint32_t hl = get_u32(b + off);
    off += 4;
    if (hl > n - off)
        goto bad;
    if (hl)
        out->headers = shopd_strndup(b + off, hl);
    off += hl;
    out->len = n - off;
    out->body = shopd_strndup(b + off, out->len);
    if (!status_in_range(out->status))
        goto bad;
    return true;
bad:
    idem_stored_clear(out);
    return false;
}

/* What a found record (n bytes at b) says to a request with fingerprint fp. */
static net_reply_t *
answer_existing(api_ctx_t *ctx, const char *b, size_t n, const uint8_t fp[IDEM_FP_LEN])
{
    if (n < 1 + IDEM_FP_LEN || (b[0] != 'I' && b[0] != 'D'))
        return api_internal(ctx, "idempotency: unreadable record in Redis");
    if (b[0] == 'I')
        return idem_in_flight_reply();
    if (!shopd_ct_equal(b + 1, IDEM_FP_LEN, fp, IDEM_FP_LEN))
        return idem_mismatch_reply();
    idem_stored_t s;
    if (!record_decode(b, n, &s))
        return api_internal(ctx, "idempotency: unreadable record in Redis");
    net_reply_t *r = idem_reply_from_stored(&s);
    idem_stored_clear(&s);
    return r;
}

net_reply_t *
idem_begin(api_ctx_t *ctx, const api_route_t *route, idem_claim_t **out)
{
    *out = NULL;
    const msg_env_t *env = ctx->env;
    if (env->idem.n == 0 || !idem_method_mutates(route->method) || (route->flags & API_IDEM_SELF))
        return NULL;
    if (!idem_key_valid(env->idem.p, env->idem.n)) /* the edge refused these already */
        return api_fail(SHOPD_BAD_REQUEST, "invalid_idempotency_key",
                        "Idempotency-Key must be 1 to 255 printable ASCII characters");
    idem_claim_t *c = shopd_calloc(1, sizeof(*c));
    c->no_replay = (route->flags & API_IDEM_NO_REPLAY) != 0;
    c->app = ctx->app;
    c->store_id = ctx->store_id;
    int kl = snprintf(c->rkey, sizeof(c->rkey), "shopd:idem:%llu:%.*s",
                      (unsigned long long)ctx->store_id, (int)env->idem.n, env->idem.p);
    c->rkeylen = (size_t)kl;
    idem_fingerprint(ctx, c->fp);

    char mark[1 + IDEM_FP_LEN];
    mark[0] = 'I';
    memcpy(mark + 1, c->fp, IDEM_FP_LEN);
    char ttl[16];
    snprintf(ttl, sizeof(ttl), "%d", IDEM_TTL_S);
    const char *set[] = {"SET", c->rkey, mark, "NX", "EX", ttl};
    size_t setl[] = {3, c->rkeylen, sizeof(mark), 2, 2, strlen(ttl)};
    const char *get[] = {"GET", c->rkey};
    size_t getl[] = {3, c->rkeylen};
    kv_conn_t *kv = ctx->worker ? ctx->worker->kv : NULL;
    net_reply_t *answer = NULL;
    /* Twice at most: a record that expires between the failed SET and the GET
     * leaves the key free again. */
    for (int attempt = 0; attempt < 2 && answer == NULL; attempt++) {
        redisReply *rr = kv ? kv_commandv(kv, 6, set, setl) : NULL;
        if (rr == NULL || rr->type == REDIS_REPLY_ERROR) {
            if (rr)
                log_error("idempotency: SET failed: %s", rr->str);
            freeReplyObject(rr);
            answer = api_unavailable("Redis (idempotency keys)");
            break;
        }
        bool claimed = rr->type == REDIS_REPLY_STATUS;
        freeReplyObject(rr);
        if (claimed) {
            *out = c;
            return NULL;
        }
        rr = kv_commandv(kv, 2, get, getl);
        if (rr == NULL || rr->type == REDIS_REPLY_ERROR) {
            freeReplyObject(rr);
            answer = api_unavailable("Redis (idempotency keys)");
            break;
        }
        if (rr->type == REDIS_REPLY_STRING)
            answer = answer_existing(ctx, rr->str, rr->len, c->fp);
        freeReplyObject(rr);
    }
    shopd_free(c);
    return answer ? answer : idem_in_flight_reply();
}

void
idem_end(idem_claim_t *c, kv_conn_t *kv, const net_reply_t *r)
{
    if (c == NULL)
        return;
    kv_conn_t *own = NULL;
    if (kv == NULL)
        kv = own = kv_conn_new(c->app->cfg->redis_url, 1000);
    redisReply *rr = NULL;
    if (!c->no_replay && idem_keeps(r)) {
        size_t n;
        char *rec = record_encode(c->fp, r, &n);
        char ttl[16];
        snprintf(ttl, sizeof(ttl), "%d", IDEM_TTL_S);
        const char *argv[] = {"SET", c->rkey, rec, "EX", ttl};
        size_t argl[] = {3, c->rkeylen, n, 2, strlen(ttl)};
        rr = kv ? kv_commandv(kv, 5, argv, argl) : NULL;
        shopd_free(rec);
    } else {
        const char *argv[] = {"DEL", c->rkey};
        size_t argl[] = {3, c->rkeylen};
        rr = kv ? kv_commandv(kv, 2, argv, argl) : NULL;
    }
    /* The effect happened and its answer goes out anyway; a retry now finds the
     * in-flight mark (409) until it expires. Say so loudly. */
    if (rr == NULL || rr->type == REDIS_REPLY_ERROR)
        log_error("idempotency: could not record the answer for store %llu (%s)",
                  (unsigned long long)c->store_id, rr ? rr->str : "Redis unreachable");
    freeReplyObject(rr);
    kv_conn_free(own);
    shopd_free(c);
}

/* ------------------------------------------------------------ PostgreSQL path */

static const char hexd[] = "0123456789abcdef";

static char *
to_hex(const void *p, size_t n)
{
    const uint8_t *b = p;
    char *h = shopd_malloc(2 * n + 1);
    for (size_t i = 0; i < n; i++) {
        h[2 * i] = hexd[b[i] >> 4];
        h[2 * i + 1] = hexd[b[i] & 15];
    }
    h[2 * n] = '\0';
    return h;
}

static int
hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Hex text (as encode(x, 'hex') gives) into a new buffer; NULL if malformed. */
static char *
from_hex(const char *h, size_t hl, size_t *n)
{
    if (hl % 2)
        return NULL;
    char *b = shopd_malloc(hl / 2 + 1);
    for (size_t i = 0; i < hl / 2; i++) {
        int hi = hexval(h[2 * i]), lo = hexval(h[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            shopd_free(b);
            return NULL;
        }
        b[i] = (char)(hi << 4 | lo);
    }
    b[hl / 2] = '\0';
    *n = hl / 2;
    return b;
}

idem_claim_rc_t
idem_pg_claim(db_conn_t *c, uint64_t store_id, const char *key, const uint8_t fp[IDEM_FP_LEN],
              idem_stored_t *out)
{
    char sid[24];
    snprintf(sid, sizeof(sid), "%llu", (unsigned long long)store_id);
    char *fph = to_hex(fp, IDEM_FP_LEN);
    const char *p[] = {sid, key, fph};
    idem_claim_rc_t rc = IDEM_UNAVAILABLE;
    if (out)
        memset(out, 0, sizeof(*out));
    /* Twice at most: a row the sweeper deletes between the conflict and the
     * read leaves the key free again. */
    for (int attempt = 0; attempt < 2; attempt++) {
        /* ON CONFLICT DO NOTHING waits for a concurrent inserter of the same key
         * to commit or roll back, then inserts or reports the conflict. */
        PGresult *r = db_exec(c, "idem_claim",
                              "INSERT INTO idempotency_keys (store_id, key, fingerprint) "
                              "VALUES ($1, $2, decode($3, 'hex')) "
                              "ON CONFLICT (store_id, key) DO NOTHING RETURNING 1",
                              3, p);
        if (db_result_rc(r) != SHOPD_OK) {
            PQclear(r);
            break;
        }
        bool inserted = PQntuples(r) == 1;
        PQclear(r);
        if (inserted) {
            rc = IDEM_NEW;
            break;
        }
        r = db_exec(c, "idem_read",
                    "SELECT fingerprint = decode($3, 'hex'), status, content_type, headers, "
                    "encode(body, 'hex'), coalesce(held_until > now(), false) FROM "
                    "idempotency_keys WHERE store_id = $1 AND key = $2",
                    3, p);
        if (db_result_rc(r) != SHOPD_OK) {
            PQclear(r);
            break;
        }
        if (PQntuples(r) == 0) {
            PQclear(r);
            continue;
        }
        int status = atoi(PQgetvalue(r, 0, 1));
        if (strcmp(PQgetvalue(r, 0, 0), "t") != 0) {
            rc = IDEM_MISMATCH;
        } else if (status == 0 || PQgetvalue(r, 0, 5)[0] == 't') {
            rc = IDEM_IN_FLIGHT;
        } else {
            rc = IDEM_REPLAY;
            if (out) {
                out->status = status;
                if (!PQgetisnull(r, 0, 2))
                    out->content_type = shopd_strdup(PQgetvalue(r, 0, 2));
                if (!PQgetisnull(r, 0, 3) && PQgetlength(r, 0, 3) > 0)
                    out->headers = shopd_strdup(PQgetvalue(r, 0, 3));
                if (!PQgetisnull(r, 0, 4)) {
                    out->body =
                        from_hex(PQgetvalue(r, 0, 4), (size_t)PQgetlength(r, 0, 4), &out->len);
                    if (out->body == NULL) {
                        idem_stored_clear(out);
                        rc = IDEM_UNAVAILABLE;
                    }
                }
            }
        }
        PQclear(r);
        break;
    }
    shopd_free(fph);
    return rc;
}

static shopd_rc_t
pg_save(db_conn_t *c, uint64_t store_id, const char *key, int status, const char *content_type,
        const char *headers, const char *body, size_t len)
{
    char sid[24], st[16];
    snprintf(sid, sizeof(sid), "%llu", (unsigned long long)store_id);
    if (status < 100) /* a result, not yet an HTTP status */
        status = net_status_for_rc((shopd_rc_t)status);
    snprintf(st, sizeof(st), "%d", status);
    char *bh = to_hex(body ? body : "", body ? len : 0);
    const char *p[] = {sid, key, st, content_type, headers, bh};
    PGresult *r = db_exec(c, "idem_save",
                          "UPDATE idempotency_keys SET status = $3, content_type = $4, "
                          "headers = $5, body = decode($6, 'hex'), held_until = NULL "
                          "WHERE store_id = $1 AND key = $2",
                          6, p);
    shopd_rc_t rc = db_result_rc(r);
    if (rc == SHOPD_OK && strcmp(PQcmdTuples(r), "1") != 0)
        rc = SHOPD_NOTFOUND; /* never claimed in this transaction */
    PQclear(r);
    shopd_free(bh);
    return rc;
}

shopd_rc_t
idem_pg_hold(db_conn_t *c, uint64_t store_id, const char *key, int seconds)
{
    char sid[24], secs[24];
    snprintf(sid, sizeof(sid), "%llu", (unsigned long long)store_id);
    snprintf(secs, sizeof(secs), "%d", seconds);
    const char *p[] = {sid, key, secs};
    PGresult *r = db_exec(c, "idem_hold",
                          "UPDATE idempotency_keys SET held_until = now() + make_interval(secs => "
                          "$3::int) WHERE store_id = $1 AND key = $2 AND status <> 0",
                          3, p);
    shopd_rc_t rc = db_result_rc(r);
    if (rc == SHOPD_OK && strcmp(PQcmdTuples(r), "1") != 0)
        rc = SHOPD_NOTFOUND; /* not claimed and answered in this transaction */
    PQclear(r);
    return rc;
}

shopd_rc_t
idem_pg_save(db_conn_t *c, uint64_t store_id, const char *key, int status, const char *content_type,
             const char *body, size_t len)
{
    return pg_save(c, store_id, key, status, content_type, NULL, body, len);
}

shopd_rc_t
idem_pg_save_reply(db_conn_t *c, uint64_t store_id, const char *key, const net_reply_t *r)
{
    return pg_save(c, store_id, key, r->status, r->content_type, r->headers, r->body, r->len);
}

long
idem_pg_sweep(db_conn_t *c, int older_than_s, int limit)
{
    char age[16], lim[16];
    snprintf(age, sizeof(age), "%d", older_than_s);
    snprintf(lim, sizeof(lim), "%d", limit);
    const char *p[] = {age, lim};
    /* Across stores on purpose: expiry is the platform's housekeeping. Bounded
     * by limit so one call holds few row locks; created_at is indexed. */
    PGresult *r = db_exec(c, "idem_sweep",
                          "DELETE FROM idempotency_keys WHERE (store_id, key) IN "
                          "(SELECT store_id, key FROM idempotency_keys "
                          "WHERE created_at < now() - make_interval(secs => $1::int) "
                          "ORDER BY created_at LIMIT $2::int)",
                          2, p);
    long n = db_result_rc(r) == SHOPD_OK ? atol(PQcmdTuples(r)) : -1;
    PQclear(r);
    return n;
}
