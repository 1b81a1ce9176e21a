/*
 * admin.h: the admin protocol (docs/admin-protocol.md): msgpack frames over TCP
 * for operators and shopctl, on its own listener (SHOPD_ADMIN_LISTEN) served by
 * the HTTP server's I/O threads.
 *
 * A frame is a 4-byte big-endian length, then that many bytes holding one
 * msgpack map. The first frame is the hello {op:"hello", version:1, token};
 * then requests {id, op, args} and answers {id, ok:true, result} or
 * {id, ok:false, error:{code, message, details}}. A route operation (its op is
 * the route's name, "stores.list") is the same result-returning handler the
 * HTTP edge runs, reached through the same envelope, run class, authorization
 * and tenant rules (api_submit); its JSON answer is turned into msgpack.
 *
 * Two halves: the codec (pure, any thread, fuzzed: fuzz/admin.c; also linked
 * into shopctl) and the server (admin.c).
 */
#ifndef SHOPD_ADMIN_H
#define SHOPD_ADMIN_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ADMIN_VERSION 1
#define ADMIN_HEADER 4 /**< bytes of the length prefix */

/* ---------------------------------------------------------------- codec */

typedef enum admin_frame_rc_e {
    ADMIN_FRAME_MORE = 0, /**< not a whole frame yet */
    ADMIN_FRAME_OK,       /**< a whole frame: *body_len bytes after the header */
    ADMIN_FRAME_TOO_BIG,  /**< the header announces more than max bytes (or none) */
} admin_frame_rc_t;

/** Looks at the first len bytes of a stream: is a whole frame there? Sets
 *  *body_len to the announced length once the header is there (even when the
 *  body is not, and when it is too big). A zero length is TOO_BIG too: a frame
 *  holds a map, never nothing. Pure. */
admin_frame_rc_t admin_frame_check(const void *buf, size_t len, size_t max, size_t *body_len);

/** Writes the 4-byte header for a body of n bytes into out. Pure. */
void admin_frame_header(uint32_t n, unsigned char out[ADMIN_HEADER]);

/** Decodes one frame body (exactly n bytes of one msgpack value) into a JSON
 *  value (new reference) when it is a map with string keys whose values JSON can
 *  hold (no binary that is not UTF-8, no integer beyond int64, at most 32 levels
 *  deep). NULL otherwise, with one line in err. Pure. */
json_t *admin_decode(const void *buf, size_t n, char *err, size_t errlen);

/** Encodes v as msgpack (objects as maps, integers as ints, reals as floats):
 *  the bare value, shopd_malloc'd, the caller frees. Never fails. Pure. */
unsigned char *admin_encode(const json_t *v, size_t *len);

/** Same, into a new frame: header + body, shopd_malloc'd, the caller frees; *len is the
 *  whole frame's length. Never fails. Pure. */
unsigned char *admin_encode_frame(const json_t *v, size_t *len);

/** A request frame, read: id (any value, borrowed from the frame; JSON null if
 *  absent), op and args (an object; an empty one if absent). */
typedef struct admin_req_s {
    json_t *id;
    const char *op;
    json_t *args;
} admin_req_t;

/** Reads a decoded frame as a request: op a non-empty string, args absent or a
 *  map. -1 with a line in err otherwise. Borrowed: frame must outlive *out (the
 *  empty args made for an absent one are owned by out: admin_req_clear). Pure. */
int admin_req_read(json_t *frame, admin_req_t *out, char *err, size_t errlen);
void admin_req_clear(admin_req_t *req);

/** The answer frames: {id, ok:true, result} (id borrowed; result stolen; NULL: null) and
 *  {id, ok:false, error:{code, message, details}} (details stolen; NULL: []). */
json_t *admin_ok(json_t *id, json_t *result);
json_t *admin_err(json_t *id, const char *code, const char *message, json_t *details);

/* ---------------------------------------------------------------- server */

typedef struct admin_server_s admin_server_t;
typedef struct app_s app_t;

/** Binds the admin listener (app->cfg->admin_host:port) and gives it to each of
 *  app->net's I/O threads; NULL with a line in err when it cannot bind. Before
 *  net_server_start. */
admin_server_t *admin_server_new(app_t *app, char *err, size_t errlen);
/** Graceful stop, step 1: no new connections; idle ones close, busy ones close
 *  once their requests are answered. Any thread (each I/O thread does its own
 *  part when net_server_drain wakes it: call this before net_server_drain). */
void admin_server_drain(admin_server_t *srv);
/** Admin requests in flight now. Any thread. */
uint64_t admin_server_inflight(admin_server_t *srv);
/** Frees every connection and the listener. After net_server_stop (the I/O
 *  threads have ended), before net_server_free. NULL is fine. */
void admin_server_free(admin_server_t *srv);

/* ---------------------------------------------------------------- blocking ops */

/** The process operations that block (PostgreSQL, argon2) and have no HTTP
 *  twin (src/modules/admin_ops.c): one thread of their own, a bounded queue. */
typedef struct admin_tasks_s admin_tasks_t;

/** Starts the task thread. */
admin_tasks_t *admin_tasks_new(app_t *app);
/** Operation i's name and help (NULL past the last). Pure. */
const char *admin_tasks_help(size_t i, const char **help);
/** Queues op with a copy of args; its answer comes as net_reply_post(reply_to,
 *  token, reply). 0 queued, 1 the queue is full (or stopping), -1 no such op.
 *  Any thread. */
int admin_tasks_submit(admin_tasks_t *q, const char *op, json_t *args, void *reply_to,
                       uint64_t token);
/** Runs what is queued, stops and joins the thread, frees q. NULL is fine. */
void admin_tasks_free(admin_tasks_t *q);

#endif
