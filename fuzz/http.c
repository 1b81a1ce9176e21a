/*
 * libFuzzer driver: HTTP request framing (src/net/http_parse.c), the code the
 * server runs on every byte a client sends. Input: raw bytes as read from a
 * socket, possibly several pipelined requests. Each input is framed twice:
 * in one piece and one byte at a time (as the slowest client would send it);
 * both must give the same requests and both refuse or neither, every request
 * must respect the limits and framing rules, and a refusal must be a 4xx.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "net/http_parse.h"

#define MAX_HEADER 2048
#define MAX_BODY 4096
#define MAX_REQUESTS 256

typedef struct outcome_s {
    size_t nreq;
    uint64_t hash[MAX_REQUESTS];
    int status; /* 0: input ended without a refusal */
} outcome_t;

static uint64_t
fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ s[i]) * 1099511628211ull;
    return (h ^ 0xff) * 1099511628211ull;
}

/* Checks what the server would hand to the application; returns its digest. */
static uint64_t
check_request(const net_request_t *q)
{
    if (q->method == NULL || q->method[0] == '\0')
        abort();
    if (q->url == NULL || q->url_len == 0 || strlen(q->url) != q->url_len)
        abort();
    if (q->url_len > MAX_HEADER || q->header_bytes > MAX_HEADER)
        abort();
    if (q->path_len > q->url_len)
        abort();
    if (q->body_len > MAX_BODY || (q->body_len && q->body == NULL))
        abort();
    if (q->nhdrs > NET_MAX_HEADERS)
        abort();
    size_t hosts = 0;
    const char *length = NULL, *coding = NULL;
    uint64_t h = fnv(1469598103934665603ull, q->method, strlen(q->method));
    h = fnv(h, q->url, q->url_len);
    for (size_t i = 0; i < q->nhdrs; i++) {
        if (q->hname[i] >= q->hlen || q->hval[i] == UINT32_MAX || q->hval[i] > q->hlen)
            abort();
        const char *name = q->hbuf + q->hname[i], *value = q->hbuf + q->hval[i];
        if (!strcasecmp(name, "Host"))
            hosts++;
        if (!strcasecmp(name, "Content-Length"))
            length = value;
        if (!strcasecmp(name, "Transfer-Encoding"))
            coding = value;
        h = fnv(fnv(h, name, strlen(name)), value, strlen(value));
    }
    if (hosts > 1 || (length && coding))
        abort();
    if (length && !coding && strtoull(length, NULL, 10) != q->body_len)
        abort();
    size_t ql, pl;
    const char *query = net_req_query(q, &ql);
    const char *path = net_req_path(q, &pl);
    if (pl != q->path_len || strlen(query) != ql || (ql && query != path + pl + 1))
        abort();
    return fnv(h, q->body ? q->body : "", q->body_len);
}

/* Frames data fed in pieces of at most step bytes (0: all at once). */
static void
frame(const uint8_t *data, size_t size, size_t step, outcome_t *o)
{
    net_framer_t f;
    memset(&f, 0, sizeof(f));
    memset(o, 0, sizeof(*o));
    net_framer_init(&f, MAX_HEADER, MAX_BODY);
    size_t off = 0;
    while (off < size && o->nreq < MAX_REQUESTS) {
        size_t n = step && size - off > step ? step : size - off;
        size_t used;
        net_frame_rc_t rc = net_framer_feed(&f, (const char *)data + off, n, &used);
        if (used > n)
            abort();
        off += used;
        if (rc == NET_FRAME_ERROR) {
            if (f.status != 400 && f.status != 413 && f.status != 431)
                abort();
            if (f.code == NULL || f.message == NULL)
                abort();
            o->status = f.status;
            break;
        }
        if (rc == NET_FRAME_REQUEST) {
            o->hash[o->nreq++] = check_request(&f.req);
            net_request_reset(&f.req); /* as the server does once it has answered */
            continue;
        }
        if (used != n)
            abort(); /* "more" takes every byte */
    }
    net_framer_free(&f);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static outcome_t whole, bytewise;
    frame(data, size, 0, &whole);
    frame(data, size, 1, &bytewise);
    /* Framing must not depend on how the bytes were split. Only the status of a
     * refusal may: the size limits see bytes when http-parser hands them over, so
     * a syntax error (400) beyond the limit can be found before the limit (431)
     * when the bytes come in one piece. */
    if (whole.nreq != bytewise.nreq || (whole.status != 0) != (bytewise.status != 0) ||
        memcmp(whole.hash, bytewise.hash, whole.nreq * sizeof(whole.hash[0])) != 0)
        abort();
    return 0;
}
