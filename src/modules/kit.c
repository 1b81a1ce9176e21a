/*
 * kit.c: what every handler shares to build its answer: replies from results
 * (the one rc -> status table is net_status_for_rc, at the edge), the 503 and
 * 500 answers, body validation collecting every field issue into one 422, and
 * RFC 3339 times.
 * The query (query.c) and database errors (dberr.c) are the rest of the kit.
 */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "api_int.h"
#include "shopd/auth.h"
#include "shopd/catalog.h"
#include "shopd/log.h"

/* ------------------------------------------------------------ replies */

net_reply_t *
api_json(shopd_rc_t rc, json_t *v)
{
    net_reply_t *r = net_reply_new(net_status_for_rc(rc));
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(v);
    if (s) {
        net_reply_set_body(r, s, strlen(s));
        free(s);
    }
    return r;
}

net_reply_t *
api_raw_json(shopd_rc_t rc, const char *text, size_t len)
{
    net_reply_t *r = net_reply_new(net_status_for_rc(rc));
    /* Text from PostgreSQL's JSON functions is spaced out (about a tenth of a list
     * page's bytes): compacted here, once, so every such answer is compact. */
    r->body = shopd_malloc(len + 1);
    r->len = net_json_compact(r->body, text, len);
    r->body[r->len] = '\0';
    return r;
}

net_reply_t *
api_empty(shopd_rc_t rc)
{
    return net_reply_new(net_status_for_rc(rc));
}

net_reply_t *
api_fail(shopd_rc_t rc, const char *code, const char *message)
{
    return net_reply_error(net_status_for_rc(rc), code, message);
}

net_reply_t *
api_fail_field(shopd_rc_t rc, const char *code, const char *message, const char *field,
               const char *issue)
{
    return net_reply_error_field(net_status_for_rc(rc), code, message, field, issue);
}

bool
api_reply_ok(const net_reply_t *r)
{
    return net_reply_ok(r);
}

net_reply_t *
api_unavailable(const char *what)
{
    char msg[128];
    snprintf(msg, sizeof(msg), "%s is unavailable; retry shortly", what);
    net_reply_t *r = api_fail(SHOPD_UNAVAILABLE, "service_unavailable", msg);
    net_reply_add_header(r, "Retry-After", "1");
    return r;
}

net_reply_t *
api_internal(api_ctx_t *ctx, const char *what)
{
    log_error("internal error rid=%.*s store=%llu what=\"%s\"", (int)ctx->env->request_id.n,
              ctx->env->request_id.p, (unsigned long long)ctx->store_id, what);
    return api_fail(SHOPD_ERR, "internal_error", "internal error; the request id is in the logs");
}

/* ------------------------------------------------------------ validation */

void
api_val_add(api_val_t *v, const char *field, const char *issue)
{
    if (v->n >= API_MAX_ISSUES)
        return;
    snprintf(v->fields[v->n], sizeof(v->fields[0]), "%s", field);
    snprintf(v->issues[v->n], sizeof(v->issues[0]), "%s", issue);
    v->n++;
}

static size_t
utf8_len(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        if (((unsigned char)*s & 0xC0) != 0x80)
            n++;
    return n;
}

const char *
api_val_string(api_val_t *v, json_t *obj, const char *field, bool required, size_t minlen,
               size_t maxlen)
{
    json_t *x = json_object_get(obj, field);
    if (x == NULL || json_is_null(x)) {
        if (required)
            api_val_add(v, field, "is required");
        return NULL;
    }
    if (!json_is_string(x)) {
        api_val_add(v, field, "must be a string");
        return NULL;
    }
    const char *s = json_string_value(x);
    if (strlen(s) != json_string_length(x)) {
        api_val_add(v, field, "must not contain NUL characters");
        return NULL;
    }
    size_t n = utf8_len(s);
    if (n < minlen || n > maxlen) {
        char msg[96];
        snprintf(msg, sizeof(msg), "must be %zu to %zu characters long", minlen, maxlen);
        api_val_add(v, field, msg);
        return NULL;
    }
    return s;
}

void
api_val_only(api_val_t *v, json_t *obj, const char *const *allowed)
{
    const char *key;
    json_t *val;
    json_object_foreach(obj, key, val)
    {
        bool ok = false;
        for (const char *const *a = allowed; *a && !ok; a++)
            ok = strcmp(*a, key) == 0;
        if (!ok)
            api_val_add(v, key, "unknown field");
    }
}

net_reply_t *
api_val_reply(const api_val_t *v)
{
    const char *f[API_MAX_ISSUES], *i[API_MAX_ISSUES];
    for (size_t k = 0; k < v->n; k++) {
        f[k] = v->fields[k];
        i[k] = v->issues[k];
    }
    net_reply_t *r = api_empty(SHOPD_INVALID);
    r->body =
        net_error_body("validation_failed", "the request has invalid fields", f, i, v->n, &r->len);
    return r;
}

net_reply_t *
api_unauthenticated(const char *msg, bool invalid)
{
    net_reply_t *r = api_fail(SHOPD_UNAUTHENTICATED, "unauthenticated", msg);
    net_reply_add_header(r, "WWW-Authenticate",
                         invalid ? "Bearer realm=\"shopd\", error=\"invalid_token\""
                                 : "Bearer realm=\"shopd\"");
    return r;
}

int
api_val_int(api_val_t *v, json_t *obj, const char *field, long long min, long long max,
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

/* ---- RFC 3339 times ---- */

static bool
digits(const char *s, int n, int *out)
{
    int x = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        x = x * 10 + (s[i] - '0');
    }
    *out = x;
    return true;
}

bool
api_rfc3339(const char *s, int64_t *us)
{
    int Y, M, D, h, m, sec, oh = 0, om = 0;
    if (s == NULL || strlen(s) < 20 || strlen(s) > 40)
        return false;
    if (!digits(s, 4, &Y) || s[4] != '-' || !digits(s + 5, 2, &M) || s[7] != '-' ||
        !digits(s + 8, 2, &D) || (s[10] != 'T' && s[10] != 't') || !digits(s + 11, 2, &h) ||
        s[13] != ':' || !digits(s + 14, 2, &m) || s[16] != ':' || !digits(s + 17, 2, &sec))
        return false;
    static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (Y % 4 == 0 && Y % 100 != 0) || Y % 400 == 0;
    if (Y < 1 || M < 1 || M > 12 || D < 1 || D > mdays[M - 1] || (M == 2 && D == 29 && !leap) ||
        h > 23 || m > 59 || sec > 59)
        return false;
    const char *p = s + 19;
    int64_t frac = 0;
    if (*p == '.') {
        int nd = 0;
        for (p++; *p >= '0' && *p <= '9'; p++, nd++)
            if (nd < 6)
                frac = frac * 10 + (*p - '0');
        if (nd == 0)
            return false;
        for (; nd < 6; nd++)
            frac *= 10;
    }
    int sign = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        sign = *p == '+' ? 1 : -1;
        if (!digits(p + 1, 2, &oh) || p[3] != ':' || !digits(p + 4, 2, &om) || oh > 23 || om > 59)
            return false;
        p += 6;
    } else {
        return false;
    }
    if (*p != '\0')
        return false;
    struct tm tm = {0};
    tm.tm_year = Y - 1900;
    tm.tm_mon = M - 1;
    tm.tm_mday = D;
    tm.tm_hour = h;
    tm.tm_min = m;
    tm.tm_sec = sec;
    int64_t t = (int64_t)timegm(&tm) - sign * (oh * 3600 + om * 60);
    *us = t * 1000000 + frac;
    return true;
}

/* ------------------------------------------------------------ text buffer */

void
api_buf_put(api_buf_t *b, const char *s, size_t len)
{
    if (b->n + len + 1 > b->cap) {
        b->cap = (b->n + len + 1) * 2;
        b->p = shopd_realloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, s, len);
    b->n += len;
    b->p[b->n] = '\0';
}

void
api_buf_puts(api_buf_t *b, const char *s)
{
    api_buf_put(b, s, strlen(s));
}

void
api_buf_printf(api_buf_t *b, const char *fmt, ...)
{
    va_list ap;
    for (;;) {
        va_start(ap, fmt);
        int k = vsnprintf(b->p ? b->p + b->n : NULL, b->p ? b->cap - b->n : 0, fmt, ap);
        va_end(ap);
        if (k < 0)
            return;
        if (b->p && (size_t)k < b->cap - b->n) {
            b->n += (size_t)k;
            return;
        }
        b->cap = (b->cap + (size_t)k + 1) * 2;
        b->p = shopd_realloc(b->p, b->cap);
    }
}

void
api_buf_json_str(api_buf_t *b, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    api_buf_put(b, "\"", 1);
    const char *run = s;
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch >= 0x20 && ch != '"' && ch != '\\')
            continue;
        api_buf_put(b, run, (size_t)(s - run));
        run = s + 1;
        const char *e = ch == '"'    ? "\\\""
                        : ch == '\\' ? "\\\\"
                        : ch == '\b' ? "\\b"
                        : ch == '\f' ? "\\f"
                        : ch == '\n' ? "\\n"
                        : ch == '\r' ? "\\r"
                        : ch == '\t' ? "\\t"
                                     : NULL;
        if (e)
            api_buf_puts(b, e);
        else
            api_buf_put(b, (char[]){'\\', 'u', '0', '0', hex[ch >> 4], hex[ch & 15]}, 6);
    }
    api_buf_put(b, run, (size_t)(s - run));
    api_buf_put(b, "\"", 1);
}

/* A column of row i of r: its text as it is (a number, or JSON text: jsonb, built
 * arrays), or null. */
void
api_buf_pg_raw(api_buf_t *b, const PGresult *r, int i, int col)
{
    if (PQgetisnull(r, i, col))
        api_buf_put(b, "null", 4);
    else
        api_buf_put(b, PQgetvalue(r, i, col), (size_t)PQgetlength(r, i, col));
}

void
api_buf_pg_text(api_buf_t *b, const PGresult *r, int i, int col)
{
    if (PQgetisnull(r, i, col))
        api_buf_put(b, "null", 4);
    else
        api_buf_json_str(b, PQgetvalue(r, i, col));
}

void
api_buf_pg_bool(api_buf_t *b, const PGresult *r, int i, int col)
{
    if (PQgetisnull(r, i, col))
        api_buf_put(b, "null", 4);
    else if (PQgetvalue(r, i, col)[0] == 't')
        api_buf_put(b, "true", 4);
    else
        api_buf_put(b, "false", 5);
}

/* A timestamptz column, text in DateStyle ISO ("2026-12-02 05:19:52.5+00"), as JSON
 * writes it (XSD: "2026-12-02T05:19:52.5+00:00"): a T for the space, and minutes on
 * an offset of whole hours. The session's time zone is the same either way. */
void
api_buf_pg_ts(api_buf_t *b, const PGresult *r, int i, int col)
{
    const char *s = PQgetvalue(r, i, col);
    const char *sp = strchr(s, ' ');
    if (PQgetisnull(r, i, col) || sp == NULL) { /* null, or "infinity" as it is */
        api_buf_pg_text(b, r, i, col);
        return;
    }
    api_buf_put(b, "\"", 1);
    api_buf_put(b, s, (size_t)(sp - s));
    api_buf_put(b, "T", 1);
    const char *t = sp + 1, *tz = t + strcspn(t, "+-");
    api_buf_put(b, t, strlen(t));
    if (*tz && strchr(tz, ':') == NULL)
        api_buf_put(b, ":00", 3);
    api_buf_put(b, "\"", 1);
}
