/*
 * http.h: shopbench's incremental HTTP/1.x response parser. It reads straight
 * from a libevent evbuffer (the bufferevent's input), consumes exactly one
 * response and leaves any following bytes in place. It understands the status
 * line, headers (kept for the scenario to look at), Content-Length bodies,
 * chunked bodies with trailers, bodies delimited by connection close, 1xx
 * interim responses, and responses that have no body (HEAD, 204, 304).
 *
 * One parser per connection; it is not shared between threads.
 */
#ifndef SHOPBENCH_HTTP_H
#define SHOPBENCH_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct evbuffer;

#define SB_HTTP_MAX_HEAD 8192       /**< bytes of status line + headers (and trailers) accepted */
#define SB_HTTP_MAX_HEADERS 64      /**< headers kept for lookup; more are parsed but dropped */
#define SB_HTTP_MAX_BODY (8u << 20) /**< body bytes kept for the scenario; the rest is counted */

typedef enum sb_http_rc_e {
    SB_HTTP_MORE = 0,   /**< need more bytes */
    SB_HTTP_DONE = 1,   /**< one complete response parsed */
    SB_HTTP_ERROR = -1, /**< malformed; see parser.error */
} sb_http_rc_t;

typedef struct sb_http_hdr_s {
    uint16_t name, name_len, value, value_len; /**< offsets into head[] */
} sb_http_hdr_t;

typedef struct sb_http_parser_s {
    int state;
    int status;      /**< 100..599 once the status line is read */
    int minor;       /**< HTTP/1.<minor> */
    bool keep_alive; /**< the connection may carry another request */
    bool chunked;
    bool no_body;                /**< set by sb_http_begin for HEAD */
    bool keep_body;              /**< collect the body into body */
    bool body_truncated;         /**< more than SB_HTTP_MAX_BODY arrived; the rest was dropped */
    int64_t content_length;      /**< -1 when absent */
    uint64_t remaining;          /**< bytes left in the body or current chunk */
    uint64_t body_len;           /**< decoded body bytes seen */
    struct evbuffer *body;       /**< kept body (keep_body), owned */
    bool body_nul;               /**< a NUL was appended to body by sb_http_body */
    char head[SB_HTTP_MAX_HEAD]; /**< header lines, NUL-separated */
    size_t head_len;
    size_t head_seen; /**< raw bytes of status line + headers, for the limit */
    int nhdr;
    sb_http_hdr_t hdr[SB_HTTP_MAX_HEADERS];
    const char *error; /**< static text when SB_HTTP_ERROR was returned */
} sb_http_parser_t;

/** Sets up p (allocates the body buffer). Returns 0 or -1 on out-of-memory. */
int sb_http_init(sb_http_parser_t *p);
/** Releases what sb_http_init took; p may be NULL. */
void sb_http_fini(sb_http_parser_t *p);
/** Prepares p for the response to the next request. head: the request was HEAD
 *  (no body follows whatever the headers say). keep_body: collect the body. */
void sb_http_begin(sb_http_parser_t *p, bool head, bool keep_body);
/** Consumes bytes of one response from in. On SB_HTTP_DONE, bytes after the
 *  response stay in `in`; call sb_http_begin before parsing the next one. */
sb_http_rc_t sb_http_parse(sb_http_parser_t *p, struct evbuffer *in);
/** The peer closed the connection. Returns true if that completes the current
 *  response (a body delimited by close), false if the response was cut short. */
bool sb_http_eof(sb_http_parser_t *p);
/** Value of the first header called name (case-insensitive), NUL-terminated,
 *  valid until the next sb_http_begin; NULL if absent. */
const char *sb_http_header(const sb_http_parser_t *p, const char *name);
/** The kept body as one contiguous NUL-terminated block (len in *len); valid
 *  until the next sb_http_begin. "" when nothing was kept. */
const char *sb_http_body(sb_http_parser_t *p, size_t *len);

#endif
