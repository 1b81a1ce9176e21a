/*
 * http_parse.h (private to src/net): request framing without sockets. A framer
 * turns bytes into one request at a time with http-parser, enforcing the header
 * and body limits and the framing rules; http.c feeds it from a connection's
 * input buffer, fuzz/http.c feeds it arbitrary bytes. Not thread-safe: a framer
 * belongs to one connection on one I/O thread.
 */
#ifndef SHOPD_NET_HTTP_PARSE_H
#define SHOPD_NET_HTTP_PARSE_H

#include <http_parser.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shopd/net.h"

#define NET_MAX_HEADERS 100

typedef struct net_conn_s net_conn_t;

/* One request: filled by the framer, then read through the net_req_* accessors.
 * The buffers are owned by the request and reused from one request to the next. */
struct net_request_s {
    net_conn_t *conn;   /* NULL outside a server (fuzzing) */
    const char *method; /* static string from http-parser */
    char *url;
    size_t url_len, url_cap;
    size_t path_len; /* bytes of url before '?' */
    char *hbuf;      /* "name\0value\0name\0value\0..." */
    size_t hlen, hcap;
    uint32_t hname[NET_MAX_HEADERS], hval[NET_MAX_HEADERS];
    size_t nhdrs;
    bool in_value;
    bool headers_done; /* past the header block: fields now are chunked trailers */
    size_t header_bytes;
    char *body;
    size_t body_len, body_cap;
    char rid[132];
    int label;
    uint64_t store_id;
    uint64_t start_us; /* first byte of the request */
    bool keep_alive;
    /* Header lines the application added for this request's answer
     * (net_req_add_header: rate-limit budget...), written after the reply's. */
    char xhdr[512];
    size_t xhdr_len;
    unsigned tag; /* the application's mark (net_req_set_tag) */
};

/** Framer state. Fields after the parser are results the caller reads. */
typedef struct net_framer_s {
    http_parser parser;
    net_request_t req;
    size_t max_header; /**< request line + headers, bytes (431 beyond) */
    size_t max_body;   /**< body bytes (413 beyond) */
    /** Optional: the body limit of one request, asked once its headers are in
     *  (a route that takes uploads allows more); never below max_body. */
    size_t (*body_cap)(const net_request_t *req, void *ud);
    void *body_cap_ud;
    size_t cur_max_body;  /**< the current request's limit */
    int status;           /**< 0, or the 4xx answer once framing failed */
    const char *code;     /**< error code for the answer (static) */
    const char *message;  /**< error message for the answer (static) */
    bool began;           /**< a request started during the last feed; caller clears */
    bool expect_continue; /**< the request asked for 100-continue; caller clears */
} net_framer_t;

typedef enum net_frame_rc_e {
    NET_FRAME_MORE = 0, /**< all bytes taken, no complete request yet */
    NET_FRAME_REQUEST,  /**< f->req holds a complete request */
    NET_FRAME_ERROR     /**< f->status, f->code, f->message say why; stop reading */
} net_frame_rc_t;

/** Prepares f (zeroed or fresh memory) for a new connection. */
void net_framer_init(net_framer_t *f, size_t max_header, size_t max_body);
/** Frees the request buffers. Accepts NULL. */
void net_framer_free(net_framer_t *f);
/** Feeds n bytes; *used says how many were taken. Stops right after a complete
 *  request (pipelined bytes are left for the next call, once that request is
 *  answered) or at the first framing error, after which the framer is dead. */
net_frame_rc_t net_framer_feed(net_framer_t *f, const char *at, size_t n, size_t *used);
/** Clears the request for the next one on the connection (buffers kept). */
void net_request_reset(net_request_t *r);

#endif
