/*
 * net.h: the HTTP/1.1 edge. N I/O threads, each with its own event_base and a
 * SO_REUSEPORT listener on the same address, frame requests with http-parser
 * (keep-alive, pipelining one request at a time per connection), enforce the
 * limits (header size 431, body size 413, connection cap, idle and request
 * timeouts, unsent output per connection) and hand each complete request to
 * one callback on the I/O thread. A client that half-closes (shutdown
 * SHUT_WR) gets the answers to every complete request it sent, then a close.
 *
 * The callback either answers at once (net_respond) or takes a reply route
 * (net_req_defer) and returns; the answer then comes from any thread through
 * net_reply_post(), which queues it for the owning I/O thread and wakes that
 * thread with event_active. A reply whose client went away, or whose request
 * already timed out, is dropped.
 *
 * Every answer carries the security headers of a JSON API (nosniff, no
 * referrer, no framing) and, when the request sent Authorization and the
 * answer sets no Cache-Control of its own, Cache-Control: no-store; no
 * Server banner is sent.
 *
 * Also here: the router (pure, unit-tested), JSON error bodies, request
 * metrics in Prometheus text format.
 */
#ifndef SHOPD_NET_H
#define SHOPD_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shopd/common.h"

/* ---------------------------------------------------------------- replies */

/** A response. Owned by whoever holds it; net frees it after writing. */
typedef struct net_reply_s {
    int status; /**< HTTP status */
    char *body; /**< owned (shopd_malloc), may be NULL */
    size_t len;
    char *headers;            /**< owned extra header lines "Name: value\r\n...", may be NULL */
    const char *content_type; /**< static string or ct_owned; NULL means application/json */
    uint64_t store_id;        /**< for the access log; 0 if none */
    char *ct_owned; /**< owned copy content_type points at (net_reply_set_content_type), or NULL */
    /** Set: body is borrowed, not owned (a cached page shared by many answers). The
     *  HTTP edge hands it to libevent by reference (evbuffer_add_reference) and this
     *  is called with (body, len, body_ud) once libevent is done with the bytes;
     *  net_reply_free calls it when the body was never sent. Any thread. */
    void (*body_release)(const void *body, size_t len, void *ud);
    void *body_ud;
} net_reply_t;

net_reply_t *net_reply_new(int status);
void net_reply_free(net_reply_t *r);
/** Sets the body (copies). */
void net_reply_set_body(net_reply_t *r, const char *body, size_t len);
/** Sets a borrowed body: release(body, len, ud) is called exactly once, when the
 *  answer no longer needs the bytes (after the write, or when r is freed unsent). */
void net_reply_borrow_body(net_reply_t *r, const char *body, size_t len,
                           void (*release)(const void *body, size_t len, void *ud), void *ud);
/** True if a comma-separated Accept-Encoding value accepts gzip (gzip or x-gzip, or
 *  "*", without q=0). NULL: no. Pure. */
bool net_accepts_gzip(const char *accept_encoding);
/** Appends an extra header line (copies). */
void net_reply_add_header(net_reply_t *r, const char *name, const char *value);
/** Sets the Content-Type from a string that need not outlive the call (copied
 *  into r->ct_owned; NULL means application/json again). */
void net_reply_set_content_type(net_reply_t *r, const char *ct);
/** Replaces r's extra header lines with the len bytes at lines (copied), which
 *  must be whole "Name: value\r\n" lines as net_reply_add_header writes them
 *  (len 0: none). */
void net_reply_set_headers(net_reply_t *r, const char *lines, size_t len);
/** The value of header name among r's extra lines (case-insensitive), copied
 *  into buf (n bytes, truncated), or NULL when r has no such line. Pure. */
const char *net_reply_header(const net_reply_t *r, const char *name, char *buf, size_t n);
/** A new reply with r's status, Content-Type, extra header lines and body, all
 *  copied (the store id for the access log too); the caller owns it. Any thread. */
net_reply_t *net_reply_copy(const net_reply_t *r);

/** Copies the JSON text src[0..n) to dst without the whitespace between tokens
 *  (PostgreSQL's json_build_object writes `"id" : 1, ` and json_agg puts newlines
 *  between elements); strings are copied as they are. dst may equal src (the copy
 *  never runs ahead of the read); at most n bytes are written. Returns the new
 *  length. Pure, any thread. */
size_t net_json_compact(char *dst, const char *src, size_t n);

/** Builds the error body of DESIGN.md:
 *  {"error":{"code":code,"message":message,"details":[{"field":f,"issue":i}...]}}
 *  fields/issues may be NULL when nfields is 0. Returns a shopd_malloc'd string. */
char *net_error_body(const char *code, const char *message, const char *const *fields,
                     const char *const *issues, size_t nfields, size_t *len);
/** New reply carrying an error body. */
net_reply_t *net_reply_error(int status, const char *code, const char *message);
/** Same with one field detail. */
net_reply_t *net_reply_error_field(int status, const char *code, const char *message,
                                   const char *field, const char *issue);
/** HTTP status for an internal status code (the one mapping, used at the edge). */
int net_status_for_rc(shopd_rc_t rc);
/** True if r answers with success (2xx or 304). */
bool net_reply_ok(const net_reply_t *r);
/** Reason phrase of an HTTP status ("Not Found"). */
const char *net_reason(int status);

/* ----------------------------------------------------------------- router */

#define NET_MAX_PARAMS 8

typedef struct net_route_s {
    const char *method;  /**< "GET", "POST", ... */
    const char *pattern; /**< "/api/v1/stores/:id"; ":name" segments capture */
} net_route_t;

typedef struct net_match_s {
    int route; /**< index into the table, or -1 */
    size_t nparams;
    const char *param_names[NET_MAX_PARAMS]; /**< point into the pattern (name without ':') */
    size_t param_name_lens[NET_MAX_PARAMS];
    const char *param_values[NET_MAX_PARAMS]; /**< point into the path */
    size_t param_value_lens[NET_MAX_PARAMS];
    char allow[128]; /**< for 405: "GET, POST" */
} net_match_t;

typedef enum net_match_rc_e {
    NET_MATCH_OK = 0,
    NET_MATCH_NOT_FOUND,
    NET_MATCH_BAD_METHOD
} net_match_rc_t;

/** Matches method + path against routes[0..n-1] (first match wins). path excludes
 *  the query string. HEAD matches a GET route. NOT_FOUND when no pattern matches
 *  the path; BAD_METHOD when a pattern matches but not the method (out->allow lists
 *  the table's methods). Pure. */
net_match_rc_t net_route_match(const net_route_t *routes, size_t n, const char *method,
                               const char *path, size_t pathlen, net_match_t *out);
/** The Allow header of a 405 for m (from a BAD_METHOD match) into out (n bytes,
 *  truncated at a whole method): m->allow with HEAD after GET, since HEAD is
 *  served wherever GET is. Pure. */
void net_route_allow(const net_match_t *m, char *out, size_t n);

/** An index of routes[0..n) by their literal first segments (the table is kept, not
 *  copied: it must outlive the index; at most 65535 routes). Built once at start. */
typedef struct net_router_s net_router_t;
net_router_t *net_router_new(const net_route_t *routes, size_t n);
/** Accepts NULL. */
void net_router_free(net_router_t *r);
/** net_route_match over the index: the same answer (route, captures, 405 Allow) for
 *  every request, reading only the routes that could match. Pure, any thread. */
net_match_rc_t net_router_match(const net_router_t *r, const char *method, const char *path,
                                size_t pathlen, net_match_t *out);

/* ----------------------------------------------------------------- server */

typedef struct net_server_s net_server_t;
typedef struct net_request_s net_request_t;

typedef enum net_handled_e { NET_DONE = 0, NET_DEFERRED = 1 } net_handled_t;

/** Called on the owning I/O thread for each complete request. Must either call
 *  net_respond() and return NET_DONE, or call net_req_defer() and return
 *  NET_DEFERRED (the answer then comes through net_reply_post). Must not block. */
typedef net_handled_t (*net_request_fn)(net_request_t *req, void *ud);
/** Called on the owning I/O thread just before an answer to a dispatched
 *  request is written (now or later, whatever thread built it), so the
 *  application can add headers that depend on the request and on state only
 *  the answer made known (CORS for a store resolved on a worker) or rewrite r.
 *  Not called for framing errors (431/413/400/408). Must not block. */
typedef void (*net_reply_fn)(net_request_t *req, net_reply_t *r, void *ud);

typedef struct net_config_s {
    const char *host;
    int port;
    int threads;
    bool flood_lane; /**< with 2+ threads, a flooding store's connections move to
                          thread 0 and the others' off it (src/net/http.c) */
    size_t max_body;
    size_t max_header;
    size_t max_output; /**< unsent answer bytes on a connection beyond which
                            its further (pipelined) requests wait */
    int max_conns;
    int idle_timeout_s;
    int request_timeout_ms;
    bool access_log;
    size_t nlabels;            /**< number of route labels for metrics */
    const char *const *labels; /**< label names (route names), index = label id */
    /** PEM certificate chain and private key files: serve HTTPS (TLS 1.2 and
     *  1.3 only, ALPN http/1.1, Strict-Transport-Security on every answer).
     *  NULL or "": plain HTTP. */
    const char *tls_cert;
    const char *tls_key;
    net_request_fn on_request;
    net_reply_fn on_reply; /**< may be NULL */
    /** May be NULL: the body limit of one request once its headers are in (the
     *  method and path are readable), for routes that take more than max_body
     *  (uploads); a value below max_body means max_body. I/O thread; must not
     *  block. */
    size_t (*body_cap)(const net_request_t *req, void *ud);
    void *ud;
} net_config_t;

/** Binds the listeners (one per thread, SO_REUSEPORT). NULL with a line in err on
 *  failure (e.g. address in use). Call evthread_use_pthreads() before. */
net_server_t *net_server_new(const net_config_t *cfg, char *err, size_t errlen);
/** Loads the TLS certificate and key again (SIGHUP): connections accepted from
 *  now on use the new ones, open connections keep theirs. On failure the old
 *  ones stay and err says why (-1). 0 without TLS. Any thread. */
int net_server_reload_tls(net_server_t *srv, char *err, size_t errlen);
/** Starts the I/O threads. 0 or -1. */
int net_server_start(net_server_t *srv);
/** Graceful stop, step 1: stop accepting; later responses say Connection: close;
 *  idle keep-alive connections are closed. Any thread. */
void net_server_drain(net_server_t *srv);
/** Requests in flight now (accepted, not yet answered). Any thread. */
uint64_t net_server_inflight(net_server_t *srv);
/** Step 2: stops the loops, closes every connection, joins the threads. */
void net_server_stop(net_server_t *srv);
void net_server_free(net_server_t *srv);
/* ---- another protocol on the same I/O threads (the admin protocol, admin.h) ----
 * A second listener is served by these threads' event bases; its answers come
 * back through the same per-thread reply queue (net_reply_post with the
 * thread's reply route) with NET_TOKEN_EXT set in the token, and go to the
 * thread's extension instead of an HTTP connection. */
#define NET_TOKEN_EXT (UINT64_C(1) << 63)

/** An extension of one I/O thread. Its callbacks run on that thread. */
typedef struct net_ext_s {
    /** An answer posted with NET_TOKEN_EXT in its token (reply owned by the call). */
    void (*on_reply)(void *ud, uint64_t token, net_reply_t *reply);
    /** net_server_drain reached this thread: stop accepting, close idle connections. */
    void (*on_drain)(void *ud);
    void *ud;
} net_ext_t;

/** Number of I/O threads. */
int net_server_threads(const net_server_t *srv);
/** Thread i's event base (for listeners and connections of an extension). Use it
 *  only from thread i once the server has started, or before net_server_start. */
struct event_base *net_server_base(net_server_t *srv, int i);
/** Thread i's reply route: the reply_to of net_reply_post for work it hands out. */
void *net_server_reply_to(net_server_t *srv, int i);
/** Installs thread i's extension (copied). Before net_server_start. */
void net_server_set_ext(net_server_t *srv, int i, const net_ext_t *ext);

/** Writes request metrics (Prometheus text) into a malloc'd buffer. Any thread. */
char *net_server_metrics(net_server_t *srv, size_t *len);

/* Request accessors: I/O thread only, valid until the request is answered. */
const char *net_req_method(const net_request_t *req);
/** Path without the query string (decoded form is not applied: raw bytes). */
const char *net_req_path(const net_request_t *req, size_t *len);
/** Query string without '?', "" if none. */
const char *net_req_query(const net_request_t *req, size_t *len);
/** Case-insensitive header lookup; NULL if absent. NUL-terminated. */
const char *net_req_header(const net_request_t *req, const char *name);
const char *net_req_body(const net_request_t *req, size_t *len);
/** The request id (from X-Request-Id if valid, else generated). */
const char *net_req_id(const net_request_t *req);
/** The client's IP address in text form ("127.0.0.1", "::1"); "" if unknown. */
const char *net_req_remote(const net_request_t *req);
/** Sets the metrics label (route index) and the store id for the access log. */
void net_req_set_label(net_request_t *req, int label);
void net_req_set_store(net_request_t *req, uint64_t store_id);

/** Adds a header line to this request's answer, whenever and from wherever it
 *  comes (the edge's rate-limit budget). Up to 512 bytes in all per request;
 *  a line that does not fit is dropped (false). I/O thread only. */
bool net_req_add_header(net_request_t *req, const char *name, const char *value);
/** Same with ready header lines ("Name: value\r\n"..., len bytes), in one copy. */
bool net_req_add_header_lines(net_request_t *req, const char *lines, size_t len);
/** The application's mark on a request (0 when it arrives), read back in the
 *  net_reply_fn. I/O thread only. */
void net_req_set_tag(net_request_t *req, unsigned tag);
unsigned net_req_tag(const net_request_t *req);
/** Route label set by net_req_set_label, or -1. */
int net_req_label(const net_request_t *req);
/** Store id set by net_req_set_store, or 0. */
uint64_t net_req_store(const net_request_t *req);

/** Answers now. Takes ownership of reply. I/O thread only. */
void net_respond(net_request_t *req, net_reply_t *reply);
/** Gives the route for a later answer: *reply_to and *token go with the work. */
void net_req_defer(net_request_t *req, void **reply_to, uint64_t *token);
/** Queues reply for the request (reply_to, token). Any thread. Takes ownership; a
 *  reply for a request that is gone (client left, timed out) is freed unsent. */
void net_reply_post(void *reply_to, uint64_t token, net_reply_t *reply);

/* ----------------------------------------------------------- static files
 * Folders served under URL prefixes (static.c): GET and HEAD, Content-Type by
 * extension, a strong ETag with If-None-Match -> 304, the mount's
 * Cache-Control and Content-Security-Policy, a folder's index.html (a folder
 * URL without its '/' is redirected to it), and nothing outside the root: no
 * "..", no encoded separators or NUL, no symlink out (openat2 RESOLVE_BENEATH).
 * Files are read on the mounts' own reader threads, never on an I/O thread. */

/** One mount. */
typedef struct net_static_mount_s {
    const char *prefix;        /**< URL prefix without a trailing '/': "/docs" */
    const char *root;          /**< the folder on disk (or the file, with file) */
    bool file;                 /**< root is one file, served at exactly prefix */
    const char *cache_control; /**< Cache-Control of its answers; NULL: none */
    const char *csp;           /**< Content-Security-Policy; NULL: the edge's default */
    /** Content-addressed files (product media, named by their content's hash):
     *  the ETag is the file's name without its extension, not size + mtime. */
    bool name_etag;
} net_static_mount_t;

typedef struct net_static_s net_static_t;

/** The mounts (copied; the longest prefix wins) and threads reader threads,
 *  started now. A root that cannot be opened is logged and its URLs answer 404
 *  (the API does not need its pages). NULL if no thread could start. */
net_static_t *net_static_new(const net_static_mount_t *mounts, size_t n, int threads);
/** Takes no new read (503), finishes the queued ones (their answers are
 *  posted) and joins the readers. Before net_server_free. Idempotent. */
void net_static_stop(net_static_t *s);
/** Stops (as above) and frees. Accepts NULL. */
void net_static_free(net_static_t *s);
/** The mount that owns path (len bytes, no query), or NULL. Pure; any thread. */
const net_static_mount_t *net_static_find(const net_static_t *s, const char *path, size_t len);
/** Answers req from mount (a result of net_static_find): at once for a bad
 *  method or path, else later from a reader thread. I/O thread. */
net_handled_t net_static_serve(net_static_t *s, const net_static_mount_t *mount,
                               net_request_t *req);
/** The file below a mount that a URL path names: path (len bytes, what follows
 *  the prefix) percent-decoded into out (outsz bytes) as segments joined by '/',
 *  without a leading '/' ("" for the root). 0; -1 for a path no file has (a bad
 *  %-escape, an encoded '/' or '\', NUL or another control byte, a "." or ".."
 *  segment, too long); -2 for a dot file (not published). Pure. */
int net_static_path(const char *path, size_t len, char *out, size_t outsz);
/** Content-Type for a file name by its extension (application/octet-stream if
 *  unknown). Pure; the string is static. */
const char *net_static_type(const char *name);
/** True if an If-None-Match value (a list, or "*") matches etag (weak
 *  comparison, as RFC 9110 asks for If-None-Match). Pure. */
bool net_static_etag_match(const char *inm, const char *etag);

#endif
