/*
 * reply.c: response objects, the JSON error format of DESIGN.md, and the one
 * mapping from internal status codes to HTTP statuses.
 */
#include <jansson.h>
#include <string.h>
#include <strings.h>

#include "shopd/net.h"

net_reply_t *
net_reply_new(int status)
{
    net_reply_t *r = shopd_calloc(1, sizeof(*r));
    r->status = status;
    return r;
}

static void
drop_body(net_reply_t *r)
{
    if (r->body_release)
        r->body_release(r->body, r->len, r->body_ud);
    else
        shopd_free(r->body);
    r->body_release = NULL;
    r->body_ud = NULL;
    r->body = NULL;
    r->len = 0;
}

void
net_reply_free(net_reply_t *r)
{
    if (r == NULL)
        return;
    drop_body(r);
    shopd_free(r->headers);
    shopd_free(r->ct_owned);
    shopd_free(r);
}

void
net_reply_borrow_body(net_reply_t *r, const char *body, size_t len,
                      void (*release)(const void *body, size_t len, void *ud), void *ud)
{
    drop_body(r);
    r->body = (char *)body; /* never written through: body_release marks it borrowed */
    r->len = len;
    r->body_release = release;
    r->body_ud = ud;
}

bool
net_accepts_gzip(const char *ae)
{
    /* An explicit gzip (or x-gzip) decides; otherwise "*" does. */
    int gzip = -1, star = -1;
    for (const char *p = ae; p && *p;) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        const char *end = p + strcspn(p, ",");
        size_t nl = strcspn(p, ";, \t");
        bool is_gzip = (nl == 4 && strncasecmp(p, "gzip", 4) == 0) ||
                       (nl == 6 && strncasecmp(p, "x-gzip", 6) == 0);
        bool is_star = nl == 1 && *p == '*';
        if (is_gzip || is_star) {
            /* q=0 (0, 0.0, 0.000) refuses the coding; any other weight accepts it. */
            bool refused = false;
            for (const char *q = p + nl; q < end; q++) {
                if ((*q == 'q' || *q == 'Q') && q + 1 < end && q[1] == '=') {
                    const char *v = q + 2;
                    refused = v < end && *v == '0';
                    for (v++; refused && v < end && *v != ' ' && *v != ';'; v++)
                        refused = *v == '0' || *v == '.';
                    break;
                }
            }
            if (is_gzip)
                gzip = gzip == 1 ? 1 : !refused;
            else
                star = !refused;
        }
        p = end;
    }
    return gzip >= 0 ? gzip == 1 : star == 1;
}

void
net_reply_set_body(net_reply_t *r, const char *body, size_t len)
{
    drop_body(r);
    r->body = shopd_malloc(len + 1);
    memcpy(r->body, body, len);
    r->body[len] = '\0';
    r->len = len;
}

void
net_reply_add_header(net_reply_t *r, const char *name, const char *value)
{
    size_t old = r->headers ? strlen(r->headers) : 0;
    size_t add = strlen(name) + strlen(value) + 4;
    r->headers = shopd_realloc(r->headers, old + add + 1);
    snprintf(r->headers + old, add + 1, "%s: %s\r\n", name, value);
}

void
net_reply_set_content_type(net_reply_t *r, const char *ct)
{
    char *old = r->ct_owned;
    r->ct_owned = ct ? shopd_strdup(ct) : NULL;
    r->content_type = r->ct_owned;
    shopd_free(old); /* after the copy: ct may point into it */
}

void
net_reply_set_headers(net_reply_t *r, const char *lines, size_t len)
{
    char *old = r->headers;
    r->headers = len ? shopd_strndup(lines, len) : NULL;
    shopd_free(old);
}

const char *
net_reply_header(const net_reply_t *r, const char *name, char *buf, size_t n)
{
    size_t nl = strlen(name);
    for (const char *line = r->headers; line && *line;) {
        const char *end = strstr(line, "\r\n");
        size_t ll = end ? (size_t)(end - line) : strlen(line);
        if (ll > nl && line[nl] == ':' && strncasecmp(line, name, nl) == 0) {
            const char *v = line + nl + 1;
            while (v < line + ll && *v == ' ')
                v++;
            size_t vl = (size_t)(line + ll - v);
            if (n == 0)
                return buf;
            if (vl >= n)
                vl = n - 1;
            memcpy(buf, v, vl);
            buf[vl] = '\0';
            return buf;
        }
        line = end ? end + 2 : line + ll;
    }
    return NULL;
}

size_t
net_json_compact(char *dst, const char *src, size_t n)
{
    /* Valid JSON has whitespace only between tokens or inside strings; inside a
     * string a quote is escaped by an odd run of backslashes, so one bit of
     * "after a backslash" is all the state needed. */
    size_t o = 0;
    bool in_str = false, esc = false;
    for (size_t i = 0; i < n; i++) {
        char ch = src[i];
        if (in_str) {
            if (esc)
                esc = false;
            else if (ch == '\\')
                esc = true;
            else if (ch == '"')
                in_str = false;
        } else if (ch == ' ' || ch == '\n' || ch == '\r' || ch == '\t') {
            continue;
        } else if (ch == '"') {
            in_str = true;
        }
        dst[o++] = ch;
    }
    return o;
}

net_reply_t *
net_reply_copy(const net_reply_t *r)
{
    net_reply_t *c = net_reply_new(r->status);
    if (r->body)
        net_reply_set_body(c, r->body, r->len);
    if (r->headers)
        net_reply_set_headers(c, r->headers, strlen(r->headers));
    if (r->ct_owned)
        net_reply_set_content_type(c, r->ct_owned);
    else
        c->content_type = r->content_type; /* static: shared as it is */
    c->store_id = r->store_id;
    return c;
}

char *
net_error_body(const char *code, const char *message, const char *const *fields,
               const char *const *issues, size_t nfields, size_t *len)
{
    json_t *details = json_array();
    for (size_t i = 0; i < nfields; i++)
        json_array_append_new(details,
                              json_pack("{s:s, s:s}", "field", fields[i], "issue", issues[i]));
    json_t *root = json_pack("{s:{s:s, s:s, s:o}}", "error", "code", code, "message", message,
                             "details", details);
    char *s = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    /* json_dumps allocates with malloc; hand back our own copy so callers free uniformly. */
    size_t n = strlen(s);
    char *out = shopd_strndup(s, n);
    free(s);
    *len = n;
    return out;
}

static net_reply_t *
error_reply(int status, const char *code, const char *message, const char *field, const char *issue)
{
    net_reply_t *r = net_reply_new(status);
    r->body = net_error_body(code, message, field ? &field : NULL, issue ? &issue : NULL,
                             field ? 1 : 0, &r->len);
    return r;
}

net_reply_t *
net_reply_error(int status, const char *code, const char *message)
{
    return error_reply(status, code, message, NULL, NULL);
}

net_reply_t *
net_reply_error_field(int status, const char *code, const char *message, const char *field,
                      const char *issue)
{
    return error_reply(status, code, message, field, issue);
}

int
net_status_for_rc(shopd_rc_t rc)
{
    /* The one place a result becomes an HTTP status (the admin protocol will keep
     * the result itself and its error code). */
    switch (rc) {
    case SHOPD_NOT_MODIFIED:
        return 304;
    case SHOPD_NO_CONTENT:
        return 204;
    case SHOPD_ACCEPTED:
        return 202;
    case SHOPD_CREATED:
        return 201;
    case SHOPD_OK:
        return 200;
    case SHOPD_NOTFOUND:
        return 404;
    case SHOPD_BUSY:
        return 503;
    case SHOPD_CONFLICT:
        return 409;
    case SHOPD_INVALID:
        return 422;
    case SHOPD_FORBIDDEN:
        return 403;
    case SHOPD_UNAVAILABLE:
        return 503;
    case SHOPD_AGAIN:
        return 503;
    case SHOPD_UNAUTHENTICATED:
        return 401;
    case SHOPD_BAD_REQUEST:
        return 400;
    case SHOPD_RATE_LIMITED:
        return 429;
    case SHOPD_UNSUPPORTED:
        return 415;
    case SHOPD_NOT_ALLOWED:
        return 405;
    case SHOPD_PAYMENT_FAILED:
        return 402;
    case SHOPD_TOO_LARGE:
        return 413;
    case SHOPD_ERR:
        return 500;
    }
    return 500;
}

bool
net_reply_ok(const net_reply_t *r)
{
    return r != NULL && r->status >= 200 && r->status < 400;
}

const char *
net_reason(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 301:
        return "Moved Permanently";
    case 304:
        return "Not Modified";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 411:
        return "Length Required";
    case 413:
        return "Content Too Large";
    case 415:
        return "Unsupported Media Type";
    case 422:
        return "Unprocessable Content";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    }
    return "Unknown";
}
