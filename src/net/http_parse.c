/*
 * http_parse.c: request framing (see http_parse.h) and the accessors that read
 * a framed request. Owns the http-parser callbacks, the header and body limits
 * and the framing rules; knows nothing of sockets, threads or timers, so the
 * fuzz driver runs exactly the code the server runs.
 */
#include "http_parse.h"

#include <limits.h>
#include <string.h>
#include <strings.h>

static void
buf_append(char **buf, size_t *len, size_t *cap, const char *at, size_t n)
{
    if (*len + n + 1 > *cap) {
        size_t nc = *cap ? *cap : 256;
        while (nc < *len + n + 1)
            nc *= 2;
        *buf = shopd_realloc(*buf, nc);
        *cap = nc;
    }
    memcpy(*buf + *len, at, n);
    *len += n;
    (*buf)[*len] = '\0';
}

void
net_request_reset(net_request_t *r)
{
    r->url_len = 0;
    r->path_len = 0;
    r->hlen = 0;
    r->nhdrs = 0;
    r->in_value = false;
    r->headers_done = false;
    r->header_bytes = 0;
    r->body_len = 0;
    r->rid[0] = '\0';
    r->label = -1;
    r->store_id = 0;
    r->keep_alive = true;
    r->xhdr_len = 0;
    r->xhdr[0] = '\0';
    r->tag = 0;
    r->method = "GET";
    if (r->url)
        r->url[0] = '\0';
    if (r->body)
        r->body[0] = '\0';
}

/* Records the answer for a framing error; the callback then returns -1. */
static int
frame_fail(net_framer_t *f, int status, const char *code, const char *message)
{
    f->status = status;
    f->code = code;
    f->message = message;
    return -1;
}

/* ------------------------------------------------------------ parser callbacks */

static int
on_message_begin(http_parser *p)
{
    net_framer_t *f = p->data;
    net_request_reset(&f->req);
    f->req.start_us = shopd_now_us();
    f->began = true;
    return 0;
}

static int
header_budget(net_framer_t *f, size_t n)
{
    f->req.header_bytes += n;
    if (f->req.header_bytes > f->max_header)
        return frame_fail(f, 431, "header_too_large", "request line and headers exceed the limit");
    return 0;
}

static int
on_url(http_parser *p, const char *at, size_t n)
{
    net_framer_t *f = p->data;
    if (header_budget(f, n))
        return -1;
    buf_append(&f->req.url, &f->req.url_len, &f->req.url_cap, at, n);
    return 0;
}

static int
on_header_field(http_parser *p, const char *at, size_t n)
{
    net_framer_t *f = p->data;
    net_request_t *q = &f->req;
    /* Trailers of a chunked body count against the budget but are dropped: the
     * application reads the header block only, which framing_rules checked. */
    if (q->headers_done)
        return header_budget(f, n);
    /* A name may arrive in pieces (one call per read): ": " and CRLF are
     * counted once, when the field starts. */
    bool starts = q->in_value || q->nhdrs == 0;
    if (header_budget(f, starts ? n + 4 : n))
        return -1;
    if (starts) {
        if (q->nhdrs == NET_MAX_HEADERS)
            return frame_fail(f, 431, "header_too_large",
                              "request line and headers exceed the limit");
        if (q->nhdrs > 0)
            buf_append(&q->hbuf, &q->hlen, &q->hcap, "", 1); /* end value */
        q->hname[q->nhdrs] = (uint32_t)q->hlen;
        q->hval[q->nhdrs] = UINT32_MAX;
        q->nhdrs++;
        q->in_value = false;
    }
    buf_append(&q->hbuf, &q->hlen, &q->hcap, at, n);
    return 0;
}

static int
on_header_value(http_parser *p, const char *at, size_t n)
{
    net_framer_t *f = p->data;
    net_request_t *q = &f->req;
    if (q->headers_done)
        return header_budget(f, n); /* a trailer: dropped */
    if (header_budget(f, n))
        return -1;
    if (!q->in_value) {
        buf_append(&q->hbuf, &q->hlen, &q->hcap, "", 1); /* end name */
        q->hval[q->nhdrs - 1] = (uint32_t)q->hlen;
        q->in_value = true;
    }
    buf_append(&q->hbuf, &q->hlen, &q->hcap, at, n);
    return 0;
}

/* The rules that keep a proxy in front of us and shopd agreeing on where a
 * request ends (request smuggling) and which store it names. http-parser 2.9
 * already refuses a second Content-Length and Transfer-Encoding with
 * Content-Length, but only outside its lenient modes; checking here keeps the
 * rule ours whatever the library version or flags. */
static int
framing_rules(net_framer_t *f)
{
    const net_request_t *q = &f->req;
    /* Headers that name the store or the caller: two of them would let a proxy
     * and shopd read different ones (the first wins here), so a second one is
     * refused like a second Host. */
    static const char *const single[] = {"X-Tenant-Id",   "Authorization", "Content-Type",
                                         "If-None-Match", "X-Cart-Id",     "Idempotency-Key"};
    size_t seen[sizeof(single) / sizeof(single[0])] = {0};
    size_t hosts = 0;
    const char *length = NULL;
    bool coding = false;
    for (size_t i = 0; i < q->nhdrs; i++) {
        const char *name = q->hbuf + q->hname[i];
        const char *value = q->hval[i] == UINT32_MAX ? "" : q->hbuf + q->hval[i];
        for (size_t k = 0; k < sizeof(single) / sizeof(single[0]); k++)
            if (strcasecmp(name, single[k]) == 0 && ++seen[k] > 1)
                return frame_fail(f, 400, "bad_request",
                                  "a header that may appear once appears twice");
        if (strcasecmp(name, "Host") == 0) {
            hosts++;
        } else if (strcasecmp(name, "Content-Length") == 0) {
            if (length && strcmp(length, value) != 0)
                return frame_fail(f, 400, "bad_request", "conflicting Content-Length headers");
            length = value;
        } else if (strcasecmp(name, "Transfer-Encoding") == 0) {
            coding = true;
        }
    }
    if (hosts > 1) /* RFC 9112 section 3.2 */
        return frame_fail(f, 400, "bad_request", "more than one Host header");
    if (coding && length) /* RFC 9112 section 6.3 */
        return frame_fail(f, 400, "bad_request", "Transfer-Encoding together with Content-Length");
    return 0;
}

static int
on_headers_complete(http_parser *p)
{
    net_framer_t *f = p->data;
    net_request_t *q = &f->req;
    if (q->nhdrs > 0) {
        if (!q->in_value) { /* a header name with no value */
            buf_append(&q->hbuf, &q->hlen, &q->hcap, "", 1);
            q->hval[q->nhdrs - 1] = (uint32_t)q->hlen;
        }
        buf_append(&q->hbuf, &q->hlen, &q->hcap, "", 1);
    }
    q->headers_done = true;
    q->method = http_method_str((enum http_method)p->method);
    q->keep_alive = http_should_keep_alive(p) != 0;
    if (framing_rules(f) != 0)
        return -1;
    f->cur_max_body = f->max_body;
    if (f->body_cap) {
        /* The path is known only once the URL is complete: the hook reads it. */
        const char *qm = q->url ? memchr(q->url, '?', q->url_len) : NULL;
        q->path_len = qm ? (size_t)(qm - q->url) : q->url_len;
        size_t cap = f->body_cap(q, f->body_cap_ud);
        if (cap > f->cur_max_body)
            f->cur_max_body = cap;
    }
    if (p->content_length != ULLONG_MAX && p->content_length > f->cur_max_body)
        return frame_fail(f, 413, "body_too_large", "request body exceeds the limit");
    const char *expect = net_req_header(q, "Expect");
    if (expect && strcasecmp(expect, "100-continue") == 0 && p->content_length > 0)
        f->expect_continue = true;
    return 0;
}

static int
on_body(http_parser *p, const char *at, size_t n)
{
    net_framer_t *f = p->data;
    net_request_t *q = &f->req;
    if (q->body_len + n > f->cur_max_body)
        return frame_fail(f, 413, "body_too_large", "request body exceeds the limit");
    buf_append(&q->body, &q->body_len, &q->body_cap, at, n);
    return 0;
}

static int
on_message_complete(http_parser *p)
{
    net_framer_t *f = p->data;
    net_request_t *q = &f->req;
    const char *qm = q->url ? memchr(q->url, '?', q->url_len) : NULL;
    q->path_len = qm ? (size_t)(qm - q->url) : q->url_len;
    /* Stop here: the rest of the input (pipelined requests) waits for the answer. */
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings parser_settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* ------------------------------------------------------------ framer */

void
net_framer_init(net_framer_t *f, size_t max_header, size_t max_body)
{
    http_parser_init(&f->parser, HTTP_REQUEST);
    f->parser.data = f;
    f->max_header = max_header;
    f->max_body = f->cur_max_body = max_body;
    f->body_cap = NULL;
    f->body_cap_ud = NULL;
    f->status = 0;
    f->code = f->message = NULL;
    f->began = f->expect_continue = false;
    net_request_reset(&f->req);
}

void
net_framer_free(net_framer_t *f)
{
    if (f == NULL)
        return;
    shopd_free(f->req.url);
    shopd_free(f->req.hbuf);
    shopd_free(f->req.body);
    f->req.url = f->req.hbuf = f->req.body = NULL;
    f->req.url_cap = f->req.hcap = f->req.body_cap = 0;
}

net_frame_rc_t
net_framer_feed(net_framer_t *f, const char *at, size_t n, size_t *used)
{
    *used = 0;
    if (f->status)
        return NET_FRAME_ERROR;
    *used = http_parser_execute(&f->parser, &parser_settings, at, n);
    enum http_errno e = HTTP_PARSER_ERRNO(&f->parser);
    if (f->status)
        return NET_FRAME_ERROR; /* a callback refused the request */
    if (e == HPE_PAUSED) {
        http_parser_pause(&f->parser, 0);
        return NET_FRAME_REQUEST;
    }
    if (e == HPE_HEADER_OVERFLOW) {
        frame_fail(f, 431, "header_too_large", "request line and headers exceed the limit");
        return NET_FRAME_ERROR;
    }
    if (e != HPE_OK) {
        frame_fail(f, 400, "bad_request", http_errno_description(e));
        return NET_FRAME_ERROR;
    }
    return NET_FRAME_MORE;
}

/* ------------------------------------------------------------ request API */

const char *
net_req_method(const net_request_t *req)
{
    return req->method;
}

const char *
net_req_path(const net_request_t *req, size_t *len)
{
    *len = req->path_len;
    return req->url ? req->url : "";
}

const char *
net_req_query(const net_request_t *req, size_t *len)
{
    if (req->path_len < req->url_len) {
        *len = req->url_len - req->path_len - 1;
        return req->url + req->path_len + 1;
    }
    *len = 0;
    return "";
}

const char *
net_req_header(const net_request_t *req, const char *name)
{
    for (size_t i = 0; i < req->nhdrs; i++)
        if (req->hval[i] != UINT32_MAX && strcasecmp(req->hbuf + req->hname[i], name) == 0)
            return req->hbuf + req->hval[i];
    return NULL;
}

const char *
net_req_body(const net_request_t *req, size_t *len)
{
    *len = req->body_len;
    return req->body ? req->body : "";
}
