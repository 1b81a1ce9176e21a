/*
 * common.c: what every pricing handler shares: path ids, the write
 * transaction helper (db_tx, retried; one answer per attempt), reads,
 * PATCH-as-merge, field validators and the ISO 3166-1 list; and the shapes of
 * the admin routes (list, get, create, patch, delete by id), so the tax,
 * discount and shipping handlers give only their SQL, their fields' checks
 * and their 404.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pricing_priv.h"

/* The assigned ISO 3166-1 alpha-2 codes (249), two letters each, sorted, so a
 * lookup is a binary search over fixed-width entries. */
static const char countries[] = "ADAEAFAGAIALAMAOAQARASATAUAWAXAZ"
                                "BABBBDBEBFBGBHBIBJBLBMBNBOBQBRBSBTBVBWBYBZ"
                                "CACCCDCFCGCHCICKCLCMCNCOCRCUCVCWCXCYCZ"
                                "DEDJDKDMDODZ"
                                "ECEEEGEHERESET"
                                "FIFJFKFMFOFR"
                                "GAGBGDGEGFGGGHGIGLGMGNGPGQGRGSGTGUGWGY"
                                "HKHMHNHRHTHU"
                                "IDIEILIMINIOIQIRISIT"
                                "JEJMJOJP"
                                "KEKGKHKIKMKNKPKRKWKYKZ"
                                "LALBLCLILKLRLSLTLULVLY"
                                "MAMCMDMEMFMGMHMKMLMMMNMOMPMQMRMSMTMUMVMWMXMYMZ"
                                "NANCNENFNGNINLNONPNRNUNZ"
                                "OM"
                                "PAPEPFPGPHPKPLPMPNPRPSPTPWPY"
                                "QA"
                                "RERORSRURW"
                                "SASBSCSDSESGSHSISJSKSLSMSNSOSRSSSTSVSXSYSZ"
                                "TCTDTFTGTHTJTKTLTMTNTOTRTTTVTWTZ"
                                "UAUGUMUSUYUZ"
                                "VAVCVEVGVIVNVU"
                                "WFWS"
                                "YEYT"
                                "ZAZMZW";

bool
pricing_country_valid(const char *s)
{
    if (s == NULL || s[0] < 'A' || s[0] > 'Z' || s[1] < 'A' || s[1] > 'Z' || s[2] != '\0')
        return false;
    size_t lo = 0, hi = (sizeof(countries) - 1) / 2;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int d = memcmp(s, countries + 2 * mid, 2);
        if (d == 0)
            return true;
        if (d < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return false;
}

bool
pr_id_param(const api_ctx_t *ctx, const char *name, char *buf)
{
    size_t n;
    const char *p = msg_param(ctx->env, name, &n);
    uint64_t id;
    if (p == NULL || !shopd_id_parse(p, n, &id))
        return false;
    memcpy(buf, p, n);
    buf[n] = '\0';
    return true;
}

const char *
pr_u64(uint64_t n, char *buf)
{
    snprintf(buf, 24, "%llu", (unsigned long long)n);
    return buf;
}

const char *
pr_sid(const api_ctx_t *ctx, char *buf)
{
    return pr_u64(ctx->store_id, buf);
}

/* One attempt of a pr_tx: the body's answer and result, last attempt only. */
typedef struct pr_txrun_s {
    api_ctx_t *ctx;
    pr_tx_fn fn;
    void *arg;
    net_reply_t *reply;
    shopd_rc_t body_rc;
} pr_txrun_t;

static shopd_rc_t
tx_body(db_conn_t *c, void *arg)
{
    pr_txrun_t *t = arg;
    net_reply_free(t->reply); /* a retried attempt forgets the answer of the one before */
    t->reply = NULL;
    t->body_rc = t->fn(t->ctx, c, t->arg, &t->reply);
    return t->body_rc;
}

net_reply_t *
pr_tx(api_ctx_t *ctx, pr_tx_fn fn, void *arg)
{
    db_conn_t *c = db_acquire(ctx->app->db, 2000);
    if (c == NULL)
        return api_unavailable("the database");
    pr_txrun_t t = {ctx, fn, arg, NULL, SHOPD_ERR};
    shopd_rc_t rc = db_tx(c, tx_body, &t);
    db_release(c);
    if (rc == SHOPD_OK)
        return t.reply ? t.reply : api_empty(SHOPD_NO_CONTENT);
    if (t.body_rc != SHOPD_OK && t.reply != NULL)
        return t.reply; /* the body refused: its own answer */
    /* The body was fine but the COMMIT was not, or the connection went. */
    net_reply_free(t.reply);
    if (rc == SHOPD_UNAVAILABLE)
        return api_unavailable("the database");
    if (rc == SHOPD_CONFLICT)
        return api_fail(SHOPD_CONFLICT, "conflict", "the change conflicts with existing data");
    return api_internal(ctx, "commit failed");
}

PGresult *
pr_read(api_ctx_t *ctx, const char *name, const char *sql, int np, const char *const *p,
        net_reply_t **reply)
{
    db_conn_t *c = db_acquire(ctx->app->db, 2000);
    if (c == NULL) {
        *reply = api_unavailable("the database");
        return NULL;
    }
    PGresult *r = arena_pgresult(ctx->arena, db_exec(c, name, sql, np, p));
    db_release(c);
    return r;
}

net_reply_t *
pr_not_found(const pr_nf_t *nf)
{
    return api_fail(SHOPD_NOTFOUND, nf->code, nf->message);
}

net_reply_t *
pr_json_reply(PGresult *r, shopd_rc_t ok)
{
    return api_raw_json(ok, PQgetvalue(r, 0, 0), (size_t)PQgetlength(r, 0, 0));
}

net_reply_t *
pr_row_reply(api_ctx_t *ctx, PGresult *r, shopd_rc_t ok, const char *what, const char *nf_code,
             const char *nf_message)
{
    if (db_result_rc(r) != SHOPD_OK)
        return api_db_error(ctx, r, what);
    if (PQntuples(r) == 0)
        return api_fail(SHOPD_NOTFOUND, nf_code, nf_message);
    return pr_json_reply(r, ok);
}

PGresult *
pr_exec(api_ctx_t *ctx, db_conn_t *c, const char *name, const char *sql, int np,
        const char *const *p, net_reply_t **reply)
{
    PGresult *r = arena_pgresult(ctx->arena, db_exec(c, name, sql, np, p));
    if (db_result_rc(r) != SHOPD_OK) {
        *reply = api_db_error(ctx, r, name);
        return NULL;
    }
    return r;
}

shopd_rc_t
pr_exec_json(api_ctx_t *ctx, db_conn_t *c, const char *name, const char *sql, int np,
             const char *const *p, shopd_rc_t ok, net_reply_t **reply)
{
    PGresult *r = pr_exec(ctx, c, name, sql, np, p, reply);
    if (r == NULL)
        return SHOPD_ERR;
    *reply = pr_json_reply(r, ok);
    return SHOPD_OK;
}

typedef struct pr_del_s {
    const char *name, *sql;
    int np;
    const char *const *p;
    const pr_nf_t *nf;
} pr_del_t;

static shopd_rc_t
del_body(api_ctx_t *ctx, db_conn_t *c, void *arg, net_reply_t **reply)
{
    pr_del_t *d = arg;
    PGresult *r = pr_exec(ctx, c, d->name, d->sql, d->np, d->p, reply);
    if (r == NULL)
        return SHOPD_ERR;
    if (PQntuples(r) == 0) {
        *reply = pr_not_found(d->nf);
        return SHOPD_NOTFOUND;
    }
    *reply = api_empty(SHOPD_NO_CONTENT);
    return SHOPD_OK;
}

net_reply_t *
pr_delete(api_ctx_t *ctx, const char *name, const char *sql, int np, const char *const *p,
          const pr_nf_t *nf)
{
    pr_del_t d = {name, sql, np, p, nf};
    return pr_tx(ctx, del_body, &d);
}

/* ------------------------------------------------------------ route shapes */

net_reply_t *
pr_list(api_ctx_t *ctx, const char *name, const char *sql, const char *what, const pr_nf_t *nf)
{
    char sid[24];
    const char *p[1] = {pr_sid(ctx, sid)};
    net_reply_t *reply = NULL;
    PGresult *r = pr_read(ctx, name, sql, 1, p, &reply);
    return reply ? reply : pr_row_reply(ctx, r, SHOPD_OK, what, nf->code, "");
}

net_reply_t *
pr_get(api_ctx_t *ctx, const char *name, const char *sql, const char *what, const pr_nf_t *nf)
{
    char sid[24], id[24];
    if (!pr_id_param(ctx, "id", id))
        return pr_not_found(nf);
    const char *p[2] = {pr_sid(ctx, sid), id};
    net_reply_t *reply = NULL;
    PGresult *r = pr_read(ctx, name, sql, 2, p, &reply);
    return reply ? reply : pr_row_reply(ctx, r, SHOPD_OK, what, nf->code, nf->message);
}

net_reply_t *
pr_delete_id(api_ctx_t *ctx, const char *name, const char *sql, const pr_nf_t *nf)
{
    char sid[24], id[24];
    if (!pr_id_param(ctx, "id", id))
        return pr_not_found(nf);
    const char *p[2] = {pr_sid(ctx, sid), id};
    return pr_delete(ctx, name, sql, 2, p, nf);
}

net_reply_t *
pr_create(api_ctx_t *ctx, pr_validate_fn validate, void *in, pr_tx_fn body)
{
    api_val_t v = {0};
    validate(&v, ctx->body, in);
    return v.n ? api_val_reply(&v) : pr_tx(ctx, body, in);
}

/* One pr_patch: the route's description, the resource's struct, the row. */
typedef struct pr_patchrun_s {
    const pr_patch_t *d;
    void *in;
    const char *sid, *id;
} pr_patchrun_t;

static shopd_rc_t
patch_body(api_ctx_t *ctx, db_conn_t *c, void *arg, net_reply_t **reply)
{
    pr_patchrun_t *t = arg;
    const pr_patch_t *d = t->d;
    const char *p[2 + PR_PATCH_MAXP] = {t->sid, t->id};
    PGresult *r = pr_exec(ctx, c, d->cur_name, d->cur_sql, 2, p, reply);
    if (r == NULL)
        return SHOPD_ERR;
    json_t *cur = pr_json_col(r, 0, 0);
    if (cur == NULL) {
        *reply = pr_not_found(d->nf);
        return SHOPD_NOTFOUND;
    }
    json_t *m = pr_merge(cur, ctx->body);
    json_decref(cur);
    api_val_t v = {0};
    shopd_rc_t rc;
    d->validate(&v, m, t->in);
    if (v.n) {
        *reply = api_val_reply(&v);
        rc = SHOPD_INVALID;
    } else {
        int np = 2 + d->params(t->in, p + 2);
        rc = pr_exec_json(ctx, c, d->upd_name, d->upd_sql, np, p, SHOPD_OK, reply);
    }
    json_decref(m); /* in's strings pointed into m: nothing reads them past here */
    return rc;
}

net_reply_t *
pr_patch(api_ctx_t *ctx, const pr_patch_t *d, void *in)
{
    char sid[24], id[24];
    if (!pr_id_param(ctx, "id", id))
        return pr_not_found(d->nf);
    /* Unknown fields are refused before the stored row is read. */
    api_val_t v = {0};
    api_val_only(&v, ctx->body, d->keys);
    if (v.n)
        return api_val_reply(&v);
    pr_patchrun_t t = {d, in, pr_sid(ctx, sid), id};
    return pr_tx(ctx, patch_body, &t);
}

json_t *
pr_merge(json_t *cur, json_t *patch)
{
    json_t *m = json_deep_copy(cur);
    json_object_update(m, patch);
    return m;
}

json_t *
pr_json_col(PGresult *r, int row, int col)
{
    if (r == NULL || PQntuples(r) <= row || PQgetisnull(r, row, col))
        return NULL;
    json_t *j = json_loads(PQgetvalue(r, row, col), 0, NULL);
    if (j != NULL && !json_is_object(j)) {
        json_decref(j);
        return NULL;
    }
    return j;
}

int
pr_val_int(api_val_t *v, json_t *obj, const char *field, long long min, long long max,
           long long *out)
{
    json_t *x = json_object_get(obj, field);
    if (x == NULL || json_is_null(x))
        return 0;
    if (!json_is_integer(x)) {
        api_val_add(v, field, "must be an integer");
        return -1;
    }
    long long n = (long long)json_integer_value(x);
    if (n < min || n > max) {
        char msg[96];
        snprintf(msg, sizeof(msg), "must be from %lld to %lld", min, max);
        api_val_add(v, field, msg);
        return -1;
    }
    *out = n;
    return 1;
}

int
pr_val_bool(api_val_t *v, json_t *obj, const char *field, bool *out)
{
    json_t *x = json_object_get(obj, field);
    if (x == NULL || json_is_null(x))
        return 0;
    if (!json_is_boolean(x)) {
        api_val_add(v, field, "must be true or false");
        return -1;
    }
    *out = json_is_true(x);
    return 1;
}

int
pr_val_int_text(api_val_t *v, json_t *obj, const char *field, long long min, long long max,
                bool required, char *buf)
{
    long long x;
    int got = pr_val_int(v, obj, field, min, max, &x);
    buf[0] = '\0';
    if (got == 1)
        snprintf(buf, 24, "%lld", x);
    else if (got == 0 && required)
        api_val_add(v, field, "is required");
    return got;
}

const char *
pr_opt(const char *s)
{
    return s[0] ? s : NULL;
}

const char *
pr_val_country(api_val_t *v, json_t *obj, const char *field, bool required)
{
    json_t *x = json_object_get(obj, field);
    if (x == NULL || json_is_null(x)) {
        if (required)
            api_val_add(v, field, "is required");
        return NULL;
    }
    const char *s = json_string_value(x);
    if (!pricing_country_valid(s)) {
        api_val_add(v, field, "must be an ISO 3166-1 alpha-2 code (upper case, e.g. DE)");
        return NULL;
    }
    return s;
}
