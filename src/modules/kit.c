/*
 * kit.c: what every handler shares to build its answer: replies from results
 * (the one rc -> status table is net_status_for_rc, at the edge), the 503 and
 * 500 answers, and body validation collecting every field issue into one 422.
 * The query (query.c) and database errors (dberr.c) are the rest of the kit.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

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
    net_reply_set_body(r, text, len);
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
