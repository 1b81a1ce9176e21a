/*
 * http.c: the incremental HTTP/1.x response parser (see http.h). Lines are
 * found with evbuffer_search_eol and copied out once, so a response split
 * across any number of reads parses the same as one arriving whole; body bytes
 * are moved (kept) or drained without copying. Lenient where servers differ
 * harmlessly (bare LF line ends, reason phrase missing), strict where a
 * mistake would desynchronise the connection (bad Content-Length, conflicting
 * lengths, bad chunk sizes): then the connection is dropped and counted.
 */
#include "http.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>

enum {
    ST_STATUS,
    ST_HEADERS,
    ST_BODY_CL,
    ST_CHUNK_SIZE,
    ST_CHUNK_DATA,
    ST_CHUNK_CRLF,
    ST_TRAILERS,
    ST_BODY_CLOSE,
    ST_DONE,
};

/* Longest chunk-size line (with extensions) or trailer line we accept. */
#define LINE_MAX_SMALL 1024

int
sb_http_init(sb_http_parser_t *p)
{
    memset(p, 0, sizeof(*p));
    p->body = evbuffer_new();
    if (p->body == NULL)
        return -1;
    sb_http_begin(p, false, false);
    return 0;
}

void
sb_http_fini(sb_http_parser_t *p)
{
    if (p == NULL)
        return;
    if (p->body != NULL)
        evbuffer_free(p->body);
    p->body = NULL;
}

void
sb_http_begin(sb_http_parser_t *p, bool head, bool keep_body)
{
    p->state = ST_STATUS;
    p->status = 0;
    p->minor = 1;
    p->keep_alive = true;
    p->chunked = false;
    p->no_body = head;
    p->keep_body = keep_body;
    p->body_truncated = false;
    p->body_nul = false;
    p->content_length = -1;
    p->remaining = 0;
    p->body_len = 0;
    p->head_len = 0;
    p->head_seen = 0;
    p->nhdr = 0;
    p->error = NULL;
    size_t left = evbuffer_get_length(p->body);
    if (left > 0)
        evbuffer_drain(p->body, left);
}

static sb_http_rc_t
fail(sb_http_parser_t *p, const char *why)
{
    p->error = why;
    return SB_HTTP_ERROR;
}

/* Copies the next line (without its CRLF/LF) into buf and drains it.
 * Returns 1 with *len set, 0 when no full line is buffered yet, -1 when the
 * line is longer than cap - 1 bytes. *raw gets the bytes consumed. */
static int
take_line(struct evbuffer *in, char *buf, size_t cap, size_t *len, size_t *raw)
{
    size_t eol_len = 0;
    struct evbuffer_ptr ptr = evbuffer_search_eol(in, NULL, &eol_len, EVBUFFER_EOL_CRLF);
    if (ptr.pos < 0)
        return evbuffer_get_length(in) >= cap ? -1 : 0;
    size_t n = (size_t)ptr.pos;
    if (n >= cap)
        return -1;
    evbuffer_copyout(in, buf, n);
    buf[n] = '\0';
    evbuffer_drain(in, n + eol_len);
    *len = n;
    *raw = n + eol_len;
    return 1;
}

static int
parse_status(sb_http_parser_t *p, const char *s, size_t n)
{
    /* "HTTP/1.x SSS[ reason]" */
    if (n < 12 || strncmp(s, "HTTP/1.", 7) != 0 || !isdigit((unsigned char)s[7]) || s[8] != ' ')
        return -1;
    if (!isdigit((unsigned char)s[9]) || !isdigit((unsigned char)s[10]) ||
        !isdigit((unsigned char)s[11]))
        return -1;
    if (n > 12 && s[12] != ' ')
        return -1;
    p->minor = s[7] - '0';
    p->status = (s[9] - '0') * 100 + (s[10] - '0') * 10 + (s[11] - '0');
    if (p->status < 100 || p->status > 599)
        return -1;
    p->keep_alive = p->minor >= 1;
    return 0;
}

/* True if the comma-separated list v contains token tok (case-insensitive). */
static bool
has_token(const char *v, const char *tok)
{
    size_t tl = strlen(tok);
    while (*v) {
        while (*v == ' ' || *v == '\t' || *v == ',')
            v++;
        const char *start = v;
        while (*v && *v != ',')
            v++;
        const char *end = v;
        while (end > start && (end[-1] == ' ' || end[-1] == '\t'))
            end--;
        if ((size_t)(end - start) == tl && strncasecmp(start, tok, tl) == 0)
            return true;
    }
    return false;
}

/* True if the last coding in a Transfer-Encoding list is "chunked". */
static bool
last_is_chunked(const char *v)
{
    const char *last = strrchr(v, ',');
    last = last ? last + 1 : v;
    while (*last == ' ' || *last == '\t')
        last++;
    return strncasecmp(last, "chunked", 7) == 0 &&
           (last[7] == '\0' || last[7] == ' ' || last[7] == '\t');
}

/* Stores one header line (already without CRLF) and applies what it means for
 * framing. Returns 0 or -1 (p->error set). */
static int
add_header(sb_http_parser_t *p, const char *line, size_t n)
{
    if (line[0] == ' ' || line[0] == '\t') {
        p->error = "obsolete header line folding";
        return -1;
    }
    const char *colon = memchr(line, ':', n);
    if (colon == NULL || colon == line) {
        p->error = "header line without a name";
        return -1;
    }
    size_t name_len = (size_t)(colon - line);
    for (size_t i = 0; i < name_len; i++) {
        if (line[i] == ' ' || line[i] == '\t') {
            p->error = "whitespace in a header name";
            return -1;
        }
    }
    const char *v = colon + 1;
    const char *end = line + n;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    size_t value_len = (size_t)(end - v);

    /* Keep it for sb_http_header: "name\0value\0". Headers beyond the table or
     * the buffer are still interpreted below, just not kept. */
    size_t need = name_len + 1 + value_len + 1;
    char *name_s, *value_s;
    char scratch[SB_HTTP_MAX_HEAD];
    if (p->nhdr < SB_HTTP_MAX_HEADERS && p->head_len + need <= sizeof(p->head)) {
        name_s = p->head + p->head_len;
        p->hdr[p->nhdr].name = (uint16_t)p->head_len;
        p->hdr[p->nhdr].name_len = (uint16_t)name_len;
        p->hdr[p->nhdr].value = (uint16_t)(p->head_len + name_len + 1);
        p->hdr[p->nhdr].value_len = (uint16_t)value_len;
        p->nhdr++;
        p->head_len += need;
    } else {
        name_s = scratch;
    }
    memcpy(name_s, line, name_len);
    name_s[name_len] = '\0';
    value_s = name_s + name_len + 1;
    memcpy(value_s, v, value_len);
    value_s[value_len] = '\0';

    if (strcasecmp(name_s, "content-length") == 0) {
        if (value_len == 0 || value_len > 18) {
            p->error = "bad Content-Length";
            return -1;
        }
        int64_t cl = 0;
        for (size_t i = 0; i < value_len; i++) {
            if (!isdigit((unsigned char)value_s[i])) {
                p->error = "bad Content-Length";
                return -1;
            }
            cl = cl * 10 + (value_s[i] - '0');
        }
        if (p->content_length >= 0 && p->content_length != cl) {
            p->error = "conflicting Content-Length headers";
            return -1;
        }
        if (p->content_length != -2)
            p->content_length = cl; /* -2: Transfer-Encoding wins */
    } else if (strcasecmp(name_s, "transfer-encoding") == 0) {
        p->chunked = last_is_chunked(value_s);
        if (!p->chunked)
            p->content_length = -2; /* delimited by close (RFC 9112 6.3) */
    } else if (strcasecmp(name_s, "connection") == 0) {
        if (has_token(value_s, "close"))
            p->keep_alive = false;
        else if (has_token(value_s, "keep-alive"))
            p->keep_alive = true;
    }
    return 0;
}

/* Headers are complete: decide how the body is delimited. */
static sb_http_rc_t
end_of_head(sb_http_parser_t *p)
{
    if (p->status < 200) {
        if (p->status == 101)
            return fail(p, "unexpected 101 Switching Protocols");
        /* Interim response (100 Continue, 103 Early Hints): the real one follows. */
        bool head = p->no_body, keep = p->keep_body;
        sb_http_begin(p, head, keep);
        return SB_HTTP_MORE;
    }
    if (p->no_body || p->status == 204 || p->status == 304) {
        p->state = ST_DONE;
        return SB_HTTP_DONE;
    }
    if (p->chunked) {
        /* Transfer-Encoding overrides Content-Length; such a message must not
         * be followed by another on the same connection. */
        if (p->content_length >= 0)
            p->keep_alive = false;
        p->state = ST_CHUNK_SIZE;
        return SB_HTTP_MORE;
    }
    if (p->content_length >= 0) {
        p->remaining = (uint64_t)p->content_length;
        p->state = p->remaining ? ST_BODY_CL : ST_DONE;
        return p->remaining ? SB_HTTP_MORE : SB_HTTP_DONE;
    }
    p->keep_alive = false;
    p->state = ST_BODY_CLOSE;
    return SB_HTTP_MORE;
}

/* Moves (keep_body) or drops n buffered body bytes. */
static void
take_body(sb_http_parser_t *p, struct evbuffer *in, size_t n)
{
    size_t keep = 0;
    if (p->keep_body) {
        size_t have = evbuffer_get_length(p->body);
        keep = have < SB_HTTP_MAX_BODY ? SB_HTTP_MAX_BODY - have : 0;
        if (keep > n)
            keep = n;
        if (keep)
            evbuffer_remove_buffer(in, p->body, keep);
        if (keep < n)
            p->body_truncated = true;
    }
    if (n > keep)
        evbuffer_drain(in, n - keep);
    p->body_len += n;
}

static int
parse_chunk_size(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    int digits = 0;
    for (; isxdigit((unsigned char)*s); s++, digits++) {
        if (digits >= 15)
            return -1; /* 2^60 bytes is plenty; refuse overflow */
        int d = isdigit((unsigned char)*s) ? *s - '0' : (tolower((unsigned char)*s) - 'a' + 10);
        v = v * 16 + (uint64_t)d;
    }
    if (digits == 0)
        return -1;
    while (*s == ' ' || *s == '\t')
        s++;
    if (*s != '\0' && *s != ';')
        return -1;
    *out = v;
    return 0;
}

sb_http_rc_t
sb_http_parse(sb_http_parser_t *p, struct evbuffer *in)
{
    char line[SB_HTTP_MAX_HEAD];
    size_t n, raw;
    int r;

    for (;;) {
        switch (p->state) {
        case ST_STATUS:
        case ST_HEADERS:
        case ST_TRAILERS: {
            if (p->head_seen >= SB_HTTP_MAX_HEAD)
                return fail(p, "response head too large");
            r = take_line(in, line, SB_HTTP_MAX_HEAD - p->head_seen, &n, &raw);
            if (r < 0)
                return fail(p, "response head too large");
            if (r == 0)
                return SB_HTTP_MORE;
            p->head_seen += raw;
            if (p->state == ST_STATUS) {
                if (n == 0 && p->head_seen == raw) {
                    /* Tolerate a stray empty line before the status line. */
                    p->head_seen = 0;
                    continue;
                }
                if (parse_status(p, line, n) < 0)
                    return fail(p, "bad status line");
                p->state = ST_HEADERS;
            } else if (p->state == ST_HEADERS) {
                if (n == 0) {
                    sb_http_rc_t rc = end_of_head(p);
                    if (rc != SB_HTTP_MORE || p->state == ST_DONE)
                        return rc;
                } else if (add_header(p, line, n) < 0) {
                    return SB_HTTP_ERROR;
                }
            } else if (n == 0) {
                p->state = ST_DONE;
                return SB_HTTP_DONE;
            }
            break;
        }
        case ST_BODY_CL:
        case ST_CHUNK_DATA: {
            size_t avail = evbuffer_get_length(in);
            if (avail == 0)
                return SB_HTTP_MORE;
            size_t take = avail < p->remaining ? avail : (size_t)p->remaining;
            take_body(p, in, take);
            p->remaining -= take;
            if (p->remaining > 0)
                return SB_HTTP_MORE;
            if (p->state == ST_BODY_CL) {
                p->state = ST_DONE;
                return SB_HTTP_DONE;
            }
            p->state = ST_CHUNK_CRLF;
            break;
        }
        case ST_CHUNK_SIZE: {
            r = take_line(in, line, LINE_MAX_SMALL, &n, &raw);
            if (r < 0)
                return fail(p, "chunk size line too long");
            if (r == 0)
                return SB_HTTP_MORE;
            uint64_t size;
            if (parse_chunk_size(line, &size) < 0)
                return fail(p, "bad chunk size");
            if (size == 0) {
                p->state = ST_TRAILERS;
            } else {
                p->remaining = size;
                p->state = ST_CHUNK_DATA;
            }
            break;
        }
        case ST_CHUNK_CRLF:
            r = take_line(in, line, LINE_MAX_SMALL, &n, &raw);
            if (r < 0)
                return fail(p, "missing CRLF after chunk");
            if (r == 0)
                return SB_HTTP_MORE;
            if (n != 0)
                return fail(p, "missing CRLF after chunk");
            p->state = ST_CHUNK_SIZE;
            break;
        case ST_BODY_CLOSE: {
            size_t avail = evbuffer_get_length(in);
            if (avail)
                take_body(p, in, avail);
            return SB_HTTP_MORE;
        }
        case ST_DONE:
        default:
            return SB_HTTP_DONE;
        }
    }
}

bool
sb_http_eof(sb_http_parser_t *p)
{
    if (p->state == ST_BODY_CLOSE) {
        p->state = ST_DONE;
        return true;
    }
    return p->state == ST_DONE;
}

const char *
sb_http_header(const sb_http_parser_t *p, const char *name)
{
    for (int i = 0; i < p->nhdr; i++) {
        if (strcasecmp(p->head + p->hdr[i].name, name) == 0)
            return p->head + p->hdr[i].value;
    }
    return NULL;
}

const char *
sb_http_body(sb_http_parser_t *p, size_t *len)
{
    size_t have = evbuffer_get_length(p->body);
    if (!p->body_nul) {
        evbuffer_add(p->body, "", 1);
        p->body_nul = true;
    } else {
        have--;
    }
    *len = have;
    return (const char *)evbuffer_pullup(p->body, -1);
}
