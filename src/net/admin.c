/*
 * admin.c: the admin protocol's server (admin.h, docs/admin-protocol.md). Owns
 * the admin listening socket, the admin connections and their pending
 * requests; runs on the HTTP server's I/O threads (net_server_base), each
 * thread accepting from its own dup of the one listening socket and keeping
 * the connections it accepted.
 *
 * Why one socket and not SO_REUSEPORT as for HTTP: a second shopd on the same
 * host would then share the admin port silently and get half of the operators'
 * commands; binding once fails loudly instead.
 *
 * A route operation becomes the envelope an HTTP request would (api_submit):
 * same route, same caller, same run class. Its answer comes back through the
 * thread's reply queue (net_reply_post) with NET_TOKEN_EXT set; the token also
 * carries the connection's slot and a per-thread sequence number that names
 * the request, so an answer for a connection that has gone (or a slot reused
 * by another) finds no pending entry and is dropped.
 *
 * Several requests may be in flight on a connection (pipelining, at most
 * ADMIN_MAX_PENDING); beyond, further frames wait in the input buffer, which
 * is bounded by the read high-watermark, so a client that floods is slowed
 * down by TCP rather than by memory.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "shopd/admin.h"
#include "shopd/api.h"
#include "shopd/auth.h"
#include "shopd/catalog.h"
#include "shopd/log.h"

#define ADMIN_MAX_PENDING 256
#define ADMIN_SEQ_BITS 40
#define ADMIN_SEQ_MASK ((UINT64_C(1) << ADMIN_SEQ_BITS) - 1)
#define ADMIN_SLOT_MAX (UINT32_C(1) << 22) /* slot bits 40..61, below NET_TOKEN_EXT */

#define TAIL_MAX_QUEUED 1024       /* lines posted to a stream and not yet sent; beyond: dropped */
#define TAIL_MAX_OUTPUT (1u << 20) /* unsent bytes on a streaming connection; beyond: dropped */

enum { TAIL_ACCESS = 1, TAIL_ADMIN = 2, TAIL_LOG = 4, TAIL_ALL = 7 };

typedef struct admin_thread_s admin_thread_t;

/* A subscriber of events.tail: in the server's list (subs_lock) from the
 * request until cancel or close, both on its own I/O thread, which alone frees
 * it. The tap (any thread, under subs_lock) posts each matching line to that
 * thread as a reply with the stream's token. */
typedef struct tail_sub_s {
    struct tail_sub_s *next;
    void *reply_to;
    uint64_t token;
    uint64_t store;           /* 0: every store */
    unsigned kinds;           /* TAIL_* */
    _Atomic int queued;       /* posted, not yet sent (relaxed: a bound, not a fence) */
    _Atomic uint64_t dropped; /* lines skipped at the bound (relaxed: a counter) */
} tail_sub_t;

/* import.products: one request whose rows are cut into batches, each submitted
 * as a products.import request (one transaction on the store's actor); their
 * answers are summed up here, and the one answer goes out when the last
 * batch's has come (or the connection went: then it is freed). */
typedef struct agg_s {
    json_t *id;
    size_t remaining; /* rows not answered yet */
    size_t imported, variants, categories;
    size_t inflight;  /* batches submitted and not answered */
    json_t *rejected; /* [{index, code, message, details}] */
    bool submitting;  /* still handing rows out: do not answer yet */
    uint64_t start_us;
    json_t *rows, *store; /* what is left to hand out: rows[next...] */
    size_t next, route;
} agg_t;

typedef struct pend_s {
    uint64_t seq;
    json_t *id; /* the client's id, echoed in the answer */
    uint64_t start_us;
    tail_sub_t *sub; /* a stream (events.tail): answers are its events; NULL otherwise */
    agg_t *agg;      /* a batch of import.products: its answer goes to agg; NULL otherwise */
    uint32_t index;  /* the batch's first row in agg */
    uint32_t count;  /* the batch's rows */
    char op[65];
} pend_t;

typedef struct admin_conn_s {
    admin_thread_t *t;
    struct bufferevent *bev;
    uint32_t slot;
    bool authed;
    bool closing;  /* last frame queued: free once the output is flushed */
    bool read_eof; /* the client shut its side: close after the last answer */
    msg_caller_t caller;
    char *jwt; /* the access token of the hello (NULL: an admin token), checked per request */
    char peer[48];
    pend_t *pend;
    size_t npend, pend_cap;
} admin_conn_t;

struct admin_thread_s {
    admin_server_t *srv;
    int idx;
    struct event_base *base;
    struct evconnlistener *lst;
    void *reply_to;
    admin_conn_t **slots;
    size_t nslots;
    uint32_t *free_slots;
    size_t nfree;
    uint64_t seq;        /* names each request of this thread (the low bits of its token) */
    struct event *sweep; /* once a second: requests older than the request timeout */
};

struct admin_server_s {
    app_t *app;
    int fd;
    int nthreads;
    admin_thread_t *threads;
    size_t max_frame;
    int max_conns;
    int idle_s;
    uint64_t request_timeout_us; /* SHOPD_REQUEST_TIMEOUT, as for HTTP */
    _Atomic int conns;           /* relaxed: a cap, not a fence */
    _Atomic uint64_t inflight;   /* relaxed: a gauge for the graceful stop */
    _Atomic uint64_t requests;   /* relaxed: a counter for stats */
    _Atomic bool draining;       /* relaxed: each thread also learns it through on_drain */
    SSL_CTX *tls;              /* NULL: plain TCP. Shared by the I/O threads (OpenSSL locks it). */
    admin_tasks_t *tasks;      /* the blocking process operations' thread */
    pthread_mutex_t subs_lock; /* guards subs; taken by the log tap on any thread */
    tail_sub_t *subs;
    _Atomic int nsubs; /* relaxed: lets the tap skip the lock when nobody listens */
};

/* ------------------------------------------------------------ connections */

static void conn_read_cb(struct bufferevent *bev, void *arg);
static void conn_write_cb(struct bufferevent *bev, void *arg);
static void conn_event_cb(struct bufferevent *bev, short what, void *arg);

static void tail_unsubscribe(admin_server_t *srv, tail_sub_t *sub);
static void send_frame(admin_conn_t *c, json_t *v);
static void agg_pump(admin_conn_t *c, agg_t *agg);

/* The answer (frame stolen) of the batch of count rows from index into agg:
 * its counts, its rejected rows renumbered from the import's first row; a
 * batch refused as a whole (503, a timeout) rejects each of its rows with
 * that error. */
static void
agg_record(agg_t *agg, uint32_t index, uint32_t count, json_t *answer)
{
    json_t *res = json_object_get(answer, "result");
    if (json_is_true(json_object_get(answer, "ok")) && json_is_object(res)) {
        agg->imported += (size_t)json_integer_value(json_object_get(res, "imported"));
        agg->variants += (size_t)json_integer_value(json_object_get(res, "variants"));
        agg->categories += (size_t)json_integer_value(json_object_get(res, "categories_created"));
        size_t i;
        json_t *r;
        json_array_foreach(json_object_get(res, "rejected"), i, r)
        {
            json_t *x = json_copy(r);
            json_object_set_new(
                x, "index",
                json_integer((json_int_t)index + json_integer_value(json_object_get(r, "index"))));
            json_array_append_new(agg->rejected, x);
        }
    } else {
        json_t *e = json_object_get(answer, "error");
        for (uint32_t k = 0; k < count; k++) {
            json_t *r =
                json_pack("{s:I,s:O,s:O,s:O}", "index", (json_int_t)index + k, "code",
                          json_object_get(e, "code"), "message", json_object_get(e, "message"),
                          "details", json_object_get(e, "details"));
            json_array_append_new(agg->rejected,
                                  r ? r : json_pack("{s:I}", "index", (json_int_t)index + k));
        }
    }
    json_decref(answer);
    agg->remaining -= count;
    agg->inflight--;
}

static void
agg_free(agg_t *agg)
{
    json_decref(agg->id);
    json_decref(agg->rejected);
    json_decref(agg->rows);
    json_decref(agg->store);
    shopd_free(agg);
}

/* Sends the answer once every row is in (c NULL: the connection has gone). */
static void
agg_maybe_finish(admin_conn_t *c, agg_t *agg)
{
    if (agg->remaining > 0 || agg->submitting)
        return;
    if (c)
        send_frame(
            c, admin_ok(agg->id,
                        json_pack("{s:I,s:I,s:I,s:O,s:I}", "imported", (json_int_t)agg->imported,
                                  "variants", (json_int_t)agg->variants, "categories_created",
                                  (json_int_t)agg->categories, "rejected", agg->rejected, "us",
                                  (json_int_t)(shopd_now_us() - agg->start_us))));
    agg_free(agg);
}

static void
conn_free(admin_conn_t *c)
{
    admin_thread_t *t = c->t;
    admin_server_t *srv = t->srv;
    for (size_t i = 0; i < c->npend; i++) {
        json_decref(c->pend[i].id);
        if (c->pend[i].sub) {
            tail_unsubscribe(srv, c->pend[i].sub);
            continue;
        }
        atomic_fetch_sub_explicit(&srv->inflight, 1, memory_order_relaxed);
        if (c->pend[i].agg) {
            /* The rows not handed out yet never will be: the last row in
             * flight frees the import. */
            agg_t *agg = c->pend[i].agg;
            agg->remaining -= c->pend[i].count + (json_array_size(agg->rows) - agg->next);
            agg->next = json_array_size(agg->rows);
            agg_maybe_finish(NULL, agg);
        }
    }
    shopd_free(c->pend);
    shopd_free(c->jwt);
    t->slots[c->slot] = NULL;
    t->free_slots[t->nfree++] = c->slot;
    bufferevent_free(c->bev);
    shopd_free(c);
    atomic_fetch_sub_explicit(&srv->conns, 1, memory_order_relaxed);
}

/* No more frames are read; the connection is freed once what it was sent has
 * been flushed (conn_write_cb), so a client reads its error frame, not a reset. */
static void
conn_close_soon(admin_conn_t *c)
{
    c->closing = true;
    bufferevent_disable(c->bev, EV_READ);
    bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
    if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
        bufferevent_trigger(c->bev, EV_WRITE,
                            BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
}

static void
send_frame(admin_conn_t *c, json_t *v)
{
    size_t len;
    unsigned char *f = admin_encode_frame(v, &len);
    evbuffer_add(bufferevent_get_output(c->bev), f, len);
    shopd_free(f);
    json_decref(v);
}

static void
send_error(admin_conn_t *c, json_t *id, const char *code, const char *message)
{
    send_frame(c, admin_err(id ? id : json_null(), code, message, NULL));
}

/* ------------------------------------------------------------ answers */

/* The answer frame for a handler's reply: its JSON body as the result, or the
 * error object of a failure (the HTTP API's codes). */
static json_t *
answer_for(json_t *id, const net_reply_t *r)
{
    json_t *body = NULL;
    if (r->len > 0) {
        bool json =
            r->content_type == NULL || strncmp(r->content_type, "application/json", 16) == 0;
        body = json ? json_loadb(r->body, r->len, JSON_DECODE_ANY, NULL) : NULL;
        if (body == NULL)
            body = json_stringn(r->body, r->len); /* text (NULL if not UTF-8: no result) */
    }
    if (net_reply_ok(r))
        return admin_ok(id, body);
    json_t *e = json_object_get(body, "error");
    const char *code = json_string_value(json_object_get(e, "code"));
    const char *msg = json_string_value(json_object_get(e, "message"));
    json_t *details = json_object_get(e, "details");
    json_t *out = admin_err(id, code ? code : "error", msg ? msg : net_reason(r->status),
                            json_is_array(details) ? json_incref(details) : NULL);
    json_decref(body);
    return out;
}

static void conn_parse(admin_conn_t *c);

static void
finish_request(admin_conn_t *c, size_t i, const net_reply_t *r)
{
    admin_server_t *srv = c->t->srv;
    pend_t p = c->pend[i];
    c->pend[i] = c->pend[--c->npend];
    atomic_fetch_sub_explicit(&srv->inflight, 1, memory_order_relaxed);
    if (srv->app->cfg->access_log)
        log_info("admin op=%s status=%d us=%llu peer=%s", p.op, r->status,
                 (unsigned long long)(shopd_now_us() - p.start_us), c->peer);
    send_frame(c, answer_for(p.id, r));
    json_decref(p.id);
}

/* An answer from a worker (net_ext_t.on_reply), on this thread. */
static void
on_reply(void *ud, uint64_t token, net_reply_t *r)
{
    admin_thread_t *t = ud;
    uint32_t slot = (uint32_t)((token & ~NET_TOKEN_EXT) >> ADMIN_SEQ_BITS);
    uint64_t seq = token & ADMIN_SEQ_MASK;
    admin_conn_t *c = slot < t->nslots ? t->slots[slot] : NULL;
    size_t i = 0;
    while (c && i < c->npend && c->pend[i].seq != seq)
        i++;
    if (c == NULL || i == c->npend || c->closing) {
        net_reply_free(r); /* its connection has gone */
        return;
    }
    if (c->pend[i].sub) {
        /* One line of a stream: the request stays pending until cancel. */
        tail_sub_t *sub = c->pend[i].sub;
        atomic_fetch_sub_explicit(&sub->queued, 1, memory_order_relaxed);
        if (evbuffer_get_length(bufferevent_get_output(c->bev)) > TAIL_MAX_OUTPUT) {
            /* The client does not read: drop, count, keep memory bounded. */
            atomic_fetch_add_explicit(&sub->dropped, 1, memory_order_relaxed);
            net_reply_free(r);
            return;
        }
        json_t *ev = json_pack("{s:s%}", "line", r->body ? r->body : "", r->body ? r->len : 0);
        if (ev == NULL) /* not UTF-8: a log line with a client's bytes in it */
            ev = json_pack("{s:s}", "line", "(a line that is not UTF-8)");
        send_frame(c, json_pack("{s:O,s:b,s:o}", "id", c->pend[i].id, "more", 1, "event", ev));
        net_reply_free(r);
        return;
    }
    bool was_full = c->npend >= ADMIN_MAX_PENDING;
    if (c->pend[i].agg) {
        pend_t p = c->pend[i];
        c->pend[i] = c->pend[--c->npend];
        atomic_fetch_sub_explicit(&t->srv->inflight, 1, memory_order_relaxed);
        agg_record(p.agg, p.index, p.count, answer_for(p.id, r));
        json_decref(p.id);
        agg_pump(c, p.agg);
    } else {
        finish_request(c, i, r);
    }
    net_reply_free(r);
    if (c->npend == 0 &&
        (c->read_eof || atomic_load_explicit(&t->srv->draining, memory_order_relaxed))) {
        conn_close_soon(c);
        return;
    }
    if (was_full)
        conn_parse(c); /* frames waited for a free pending entry */
}

/* ------------------------------------------------------------ events.tail */

static unsigned
line_kind(const char *line, size_t len)
{
    /* "... level=info access method=..." and "... level=info admin op=...". */
    const char *lv = memmem(line, len, " level=", 7);
    const char *sp = lv ? memchr(lv + 7, ' ', len - (size_t)(lv + 7 - line)) : NULL;
    size_t rest = sp ? len - (size_t)(sp + 1 - line) : 0;
    if (sp && rest >= 7 && memcmp(sp + 1, "access ", 7) == 0)
        return TAIL_ACCESS;
    if (sp && rest >= 9 && memcmp(sp + 1, "admin op=", 9) == 0)
        return TAIL_ADMIN;
    return TAIL_LOG;
}

/* The log tap (log_set_tap): any thread. Never logs. */
static void
admin_tap(void *ud, log_level_t lvl, const char *line, size_t len)
{
    admin_server_t *srv = ud;
    if (atomic_load_explicit(&srv->nsubs, memory_order_relaxed) == 0)
        return;
    unsigned kind = line_kind(line, len);
    pthread_mutex_lock(&srv->subs_lock);
    for (tail_sub_t *s = srv->subs; s; s = s->next) {
        if (!(s->kinds & kind))
            continue;
        if (s->store) {
            char needle[40];
            int nl = snprintf(needle, sizeof(needle), " store=%llu ", (unsigned long long)s->store);
            if (memmem(line, len, needle, (size_t)nl) == NULL)
                continue;
        }
        if (atomic_load_explicit(&s->queued, memory_order_relaxed) >= TAIL_MAX_QUEUED) {
            atomic_fetch_add_explicit(&s->dropped, 1, memory_order_relaxed);
            continue;
        }
        atomic_fetch_add_explicit(&s->queued, 1, memory_order_relaxed);
        net_reply_t *r = net_reply_new(200);
        net_reply_set_body(r, line, len);
        r->content_type = "text/plain";
        net_reply_post(s->reply_to, s->token, r);
    }
    pthread_mutex_unlock(&srv->subs_lock);
}

static void
tail_unsubscribe(admin_server_t *srv, tail_sub_t *sub)
{
    pthread_mutex_lock(&srv->subs_lock);
    for (tail_sub_t **pp = &srv->subs; *pp; pp = &(*pp)->next) {
        if (*pp == sub) {
            *pp = sub->next;
            break;
        }
    }
    atomic_fetch_sub_explicit(&srv->nsubs, 1, memory_order_relaxed);
    pthread_mutex_unlock(&srv->subs_lock);
    shopd_free(sub);
}

/* Ends stream i of c with its final frame. */
static void
tail_end(admin_conn_t *c, size_t i, const char *why)
{
    pend_t p = c->pend[i];
    c->pend[i] = c->pend[--c->npend];
    uint64_t dropped = atomic_load_explicit(&p.sub->dropped, memory_order_relaxed);
    tail_unsubscribe(c->t->srv, p.sub);
    send_frame(
        c, admin_ok(p.id, json_pack("{s:s,s:I}", "ended", why, "dropped", (json_int_t)dropped)));
    json_decref(p.id);
}

static pend_t *pend_add(admin_conn_t *c, uint64_t seq, json_t *id, const char *op);

/* events.tail {store?, kinds?}: the log lines of this process as they are
 * written (access lines, admin lines, the rest), until cancel. */
static void
op_tail(admin_conn_t *c, const admin_req_t *rq)
{
    admin_thread_t *t = c->t;
    admin_server_t *srv = t->srv;
    unsigned kinds = 0;
    uint64_t store = 0;
    json_t *k = json_object_get(rq->args, "kinds"), *st = json_object_get(rq->args, "store");
    const char *key;
    json_t *x;
    json_object_foreach(rq->args, key, x)
    {
        if (strcmp(key, "kinds") && strcmp(key, "store")) {
            send_frame(
                c, admin_err(rq->id, "validation_failed", "the request has invalid fields",
                             json_pack("[{s:s,s:s}]", "field", key, "issue", "unknown argument")));
            return;
        }
    }
    if (json_is_string(k))
        k = json_pack("[s]", json_string_value(k));
    else
        json_incref(k);
    size_t i;
    json_array_foreach(k, i, x)
    {
        const char *n = json_string_value(x);
        unsigned bit = !n                     ? 0
                       : !strcmp(n, "access") ? TAIL_ACCESS
                       : !strcmp(n, "admin")  ? TAIL_ADMIN
                       : !strcmp(n, "log")    ? TAIL_LOG
                                              : 0;
        if (bit == 0) {
            json_decref(k);
            send_frame(c, admin_err(rq->id, "validation_failed", "the request has invalid fields",
                                    json_pack("[{s:s,s:s}]", "field", "kinds", "issue",
                                              "each must be access, admin or log")));
            return;
        }
        kinds |= bit;
    }
    bool bad_kinds = k != NULL && !json_is_array(k);
    json_decref(k);
    if (bad_kinds) {
        send_frame(c, admin_err(rq->id, "validation_failed", "the request has invalid fields",
                                json_pack("[{s:s,s:s}]", "field", "kinds", "issue",
                                          "must be a list of access, admin, log")));
        return;
    }
    if (json_is_integer(st) && json_integer_value(st) > 0) {
        store = (uint64_t)json_integer_value(st);
    } else if (st != NULL) {
        /* A slug is known here only when the tenant cache has it (a store in use). */
        store_snap_t snap;
        char sbuf[256], ckey[STORE_KEY_MAX];
        bool ok = json_is_string(st) && json_string_length(st) < sizeof(sbuf);
        if (ok) {
            memcpy(sbuf, json_string_value(st), json_string_length(st) + 1);
            ok = store_tenant_key(sbuf, NULL, NULL, ckey, sizeof(ckey)) == 0;
        }
        if (ok && !strncmp(ckey, "id:", 3))
            store = strtoull(ckey + 3, NULL, 10);
        else if (ok && store_cache_get(srv->app->stores, ckey, &snap) && snap.id)
            store = snap.id;
        if (store == 0) {
            send_frame(c,
                       admin_err(rq->id, "validation_failed", "the request has invalid fields",
                                 json_pack("[{s:s,s:s}]", "field", "store", "issue",
                                           "must be a store id (or the slug of a store in use)")));
            return;
        }
    }
    for (size_t j = 0; j < c->npend; j++) {
        if (json_equal(c->pend[j].id, rq->id)) {
            send_error(c, rq->id, "invalid_request", "a request with this id is in flight");
            return;
        }
    }
    tail_sub_t *sub = shopd_calloc(1, sizeof(*sub));
    uint64_t seq = ++t->seq & ADMIN_SEQ_MASK;
    sub->reply_to = t->reply_to;
    sub->token = NET_TOKEN_EXT | ((uint64_t)c->slot << ADMIN_SEQ_BITS) | seq;
    sub->store = store;
    sub->kinds = kinds ? kinds : TAIL_ALL;
    pend_t *p = pend_add(c, seq, rq->id, rq->op);
    p->sub = sub;
    send_frame(c, json_pack("{s:O,s:b,s:{s:b}}", "id", rq->id, "more", 1, "event", "started", 1));
    pthread_mutex_lock(&srv->subs_lock);
    sub->next = srv->subs;
    srv->subs = sub;
    atomic_fetch_add_explicit(&srv->nsubs, 1, memory_order_relaxed);
    pthread_mutex_unlock(&srv->subs_lock);
}

/* cancel {id}: ends the stream of that id with its final frame. */
static void
op_cancel(admin_conn_t *c, const admin_req_t *rq)
{
    for (size_t i = 0; i < c->npend; i++) {
        if (c->pend[i].sub && json_equal(c->pend[i].id, rq->id)) {
            tail_end(c, i, "cancelled");
            return;
        }
    }
    send_error(c, rq->id, "not_found", "no stream with this id on this connection");
}

/* ------------------------------------------------------------ hello */

static const char *
role_name(int role)
{
    switch (role) {
    case MSG_ROLE_PLATFORM:
        return "platform";
    case MSG_ROLE_SUPER_ADMIN:
        return "SUPER_ADMIN";
    case MSG_ROLE_STORE_ADMIN:
        return "STORE_ADMIN";
    case MSG_ROLE_CUSTOMER:
        return "CUSTOMER";
    default:
        return "anonymous";
    }
}

/* One of the configured tokens (comma-separated)? Every one is compared, in
 * constant time each, so the answer's timing does not say which one matched
 * nor how much of one did. */
static bool
admin_token_ok(const char *list, const char *tok, size_t toklen)
{
    bool ok = false;
    for (const char *p = list; p && *p;) {
        const char *e = strchr(p, ',');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l > 0 && shopd_ct_equal(p, l, tok, toklen))
            ok = true;
        p = e ? e + 1 : p + l;
    }
    return ok;
}

/* The first frame. Anything but a good hello: one error frame, then close. */
static void
hello(admin_conn_t *c, const admin_req_t *rq)
{
    app_t *app = c->t->srv->app;
    if (strcmp(rq->op, "hello") != 0) {
        send_error(c, rq->id, "hello_required",
                   "the first frame must be {op:\"hello\", version:1, token}");
        conn_close_soon(c);
        return;
    }
    /* hello's fields may sit at the top level (the documented form) or in args. */
    json_t *src = json_object_size(rq->args) ? rq->args : NULL;
    json_t *ver = src ? json_object_get(src, "version") : NULL;
    json_t *tok = src ? json_object_get(src, "token") : NULL;
    if (!json_is_integer(ver) || json_integer_value(ver) != ADMIN_VERSION) {
        send_error(c, rq->id, "unsupported_version",
                   "this server speaks version 1 of the admin protocol");
        conn_close_soon(c);
        return;
    }
    msg_caller_t who = {0};
    const char *t = json_string_value(tok);
    size_t tl = t ? json_string_length(tok) : 0;
    if (t && tl > 0 && admin_token_ok(app->cfg->admin_token, t, tl)) {
        who.role = MSG_ROLE_PLATFORM;
    } else if (t && tl > 0 && auth_jwt_verify(t, tl, &who) == AUTH_JWT_OK &&
               (who.role == MSG_ROLE_SUPER_ADMIN || who.role == MSG_ROLE_STORE_ADMIN)) {
        /* An admin's access token: each command is then checked as over HTTP
         * (the worker also checks the user still has that role), and the token
         * itself again before each request, so the session ends with it. */
        c->jwt = shopd_malloc(tl + 1);
        memcpy(c->jwt, t, tl + 1);
    } else {
        send_error(c, rq->id, "unauthenticated",
                   "the token is not an admin token nor an admin's access token");
        conn_close_soon(c);
        return;
    }
    c->authed = true;
    c->caller = who;
    json_t *res = json_pack("{s:i,s:s,s:s}", "version", ADMIN_VERSION, "server", "shopd", "role",
                            role_name(who.role));
    if (who.store_id)
        json_object_set_new(res, "store_id", json_integer((json_int_t)who.store_id));
    send_frame(c, admin_ok(rq->id, res));
}

/* ------------------------------------------------------------ process ops */

static bool
platform_caller(const admin_conn_t *c)
{
    return c->caller.role == MSG_ROLE_PLATFORM || c->caller.role == MSG_ROLE_SUPER_ADMIN;
}

/* The Prometheus text of /metrics as a map: "name{labels}" -> number. */
static json_t *
op_stats(admin_conn_t *c)
{
    admin_server_t *srv = c->t->srv;
    app_t *app = srv->app;
    json_t *m = json_object();
    size_t len;
    char *text = net_server_metrics(app->net, &len);
    for (char *line = text; line && *line;) {
        char *nl = strchr(line, '\n');
        if (nl)
            *nl = '\0';
        char *sp = strrchr(line, ' ');
        if (line[0] != '#' && sp && sp != line) {
            *sp = '\0';
            char *end;
            double v = strtod(sp + 1, &end);
            if (end != sp + 1)
                json_object_set_new(m, line,
                                    v == (double)(long long)v ? json_integer((json_int_t)v)
                                                              : json_real(v));
        }
        line = nl ? nl + 1 : NULL;
    }
    shopd_free(text);
    act_stats_t a, b;
    act_system_stats(app->actors, &a);
    act_system_stats(app->blocking, &b);
    json_t *out = json_pack(
        "{s:o,s:{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:i},s:{s:I,s:I,s:I,s:I,s:i},s:{s:i,s:I,s:I}}",
        "http", m, "actors", "live", (json_int_t)a.actors, "queued", (json_int_t)a.queued,
        "max_depth", (json_int_t)a.max_depth, "processed", (json_int_t)a.processed, "turns",
        (json_int_t)a.turns, "rejected", (json_int_t)a.rejected, "reclaimed",
        (json_int_t)a.reclaimed, "busy_workers", (json_int_t)a.busy_workers, "workers", a.workers,
        "blocking", "queued", (json_int_t)b.queued, "processed", (json_int_t)b.processed,
        "rejected", (json_int_t)b.rejected, "busy_workers", (json_int_t)b.busy_workers, "workers",
        b.workers, "admin", "connections", atomic_load_explicit(&srv->conns, memory_order_relaxed),
        "inflight", (json_int_t)atomic_load_explicit(&srv->inflight, memory_order_relaxed),
        "requests", (json_int_t)atomic_load_explicit(&srv->requests, memory_order_relaxed));
    return out;
}

static void
config_row(void *ud, const char *flag, const char *env, const char *value)
{
    json_array_append_new(ud,
                          json_pack("{s:s,s:s,s:s}", "setting", flag, "env", env, "value", value));
}

/* Operations that are not routes (answered here, on the I/O thread), and the
 * friendly names of route operations with a fixed argument. */
typedef struct alias_s {
    const char *op, *route;
    const char *key, *value; /* an argument set to a fixed value, or NULL */
    const char *from;        /* an argument renamed to "store", or NULL */
    const char *help;
} alias_t;

/* clang-format off */
static const alias_t aliases[] = {
    {"stores.suspend", "stores.update", "status", "suspended", NULL, "suspend a store {id}"},
    {"stores.resume", "stores.update", "status", "active", NULL, "make a suspended store active again {id}"},
    {"tenant.resolve", "store.current", NULL, NULL, "key", "the store a key names {key: id, slug or host name}, as the edge resolves it"},
};
/* clang-format on */

static const char *const process_ops[][2] = {
    {"hello", "the handshake {version:1, token} (first frame only)"},
    {"ping", "answers {pong:true}"},
    {"ops", "every operation, with the arguments it takes"},
    {"stats", "the /metrics figures as a map, actor and admin counters"},
    {"config.show", "every setting and its value (secrets redacted)"},
    {"events.tail", "a stream of this process's log lines {store?, kinds?: [access, admin, log]}"},
    {"cancel", "ends the stream whose id this frame carries"},
    {"import.products",
     "bulk load {store, rows: [product with variants]}: batches of products.import, one answer"},
};

/* The route's path parameters (":id" segments of its pattern), in order. */
static size_t
route_params(const api_route_t *r, msg_str_t *names, size_t max)
{
    size_t n = 0;
    for (const char *p = strchr(r->pattern, ':'); p && n < max; p = strchr(p, ':')) {
        p++;
        size_t l = strcspn(p, "/");
        names[n].p = p;
        names[n].n = l;
        n++;
        p += l;
    }
    return n;
}

static const char *
access_name(int access)
{
    static const char *const names[] = {"public", "platform", "customer", "store_admin",
                                        "super_admin"};
    return access >= 0 && access <= API_SUPER_ADMIN ? names[access] : "?";
}

static json_t *
route_op_info(const char *op, const api_route_t *r, const alias_t *alias)
{
    const char *help = alias ? alias->help : NULL;
    json_t *args = json_array();
    if (r->flags & API_STORE)
        json_array_append_new(args, json_string(alias && alias->from ? alias->from : "store"));
    msg_str_t names[MSG_MAX_PARAMS];
    size_t n = route_params(r, names, MSG_MAX_PARAMS);
    for (size_t i = 0; i < n; i++)
        json_array_append_new(args, json_stringn(names[i].p, names[i].n));
    for (const char *const *q = r->query; q && *q; q++)
        json_array_append_new(args, json_string(*q));
    if (r->flags & API_BODY)
        json_array_append_new(args, json_string("...body fields"));
    char http[160];
    snprintf(http, sizeof(http), "%s %s", r->method, r->pattern);
    json_t *o = json_pack("{s:s,s:o,s:s,s:s}", "op", op, "args", args, "access",
                          access_name(r->access), "http", http);
    if (help)
        json_object_set_new(o, "help", json_string(help));
    return o;
}

static json_t *
op_ops(void)
{
    json_t *a = json_array();
    for (size_t i = 0; i < SHOPD_ARRAY_LEN(process_ops); i++)
        json_array_append_new(a, json_pack("{s:s,s:[],s:s,s:s}", "op", process_ops[i][0], "args",
                                           "access", "admin", "help", process_ops[i][1]));
    const char *help;
    for (size_t i = 0; admin_tasks_help(i, &help); i++)
        json_array_append_new(a, json_pack("{s:s,s:[],s:s,s:s}", "op", admin_tasks_help(i, &help),
                                           "args", "access", "admin", "help", help));
    for (size_t i = 0; i < api_nroutes; i++)
        if (!(api_routes[i].flags & API_INLINE))
            json_array_append_new(a, route_op_info(api_routes[i].name, &api_routes[i], NULL));
    for (size_t i = 0; i < SHOPD_ARRAY_LEN(aliases); i++)
        for (size_t r = 0; r < api_nroutes; r++)
            if (!strcmp(api_routes[r].name, aliases[i].route))
                json_array_append_new(a, route_op_info(aliases[i].op, &api_routes[r], &aliases[i]));
    return a;
}

/* ------------------------------------------------------------ route ops */

/* A scalar argument as text (strings as they are, integers and booleans
 * written out); false for anything else. */
static bool
arg_text(json_t *v, char *buf, size_t n)
{
    if (json_is_string(v))
        return (size_t)snprintf(buf, n, "%s", json_string_value(v)) < n;
    if (json_is_integer(v))
        return (size_t)snprintf(buf, n, "%lld", (long long)json_integer_value(v)) < n;
    if (json_is_boolean(v))
        return (size_t)snprintf(buf, n, "%s", json_is_true(v) ? "true" : "false") < n;
    return false;
}

/* Appends name=value to a query string, percent-encoding what is not unreserved. */
static void
query_add(char *q, size_t cap, size_t *len, const char *name, const char *value)
{
    static const char hex[] = "0123456789ABCDEF";
    const char *parts[2] = {name, value};
    if (*len > 0 && *len + 1 < cap)
        q[(*len)++] = '&';
    for (int k = 0; k < 2; k++) {
        if (k == 1 && *len + 1 < cap)
            q[(*len)++] = '=';
        for (const unsigned char *s = (const unsigned char *)parts[k]; *s && *len + 3 < cap; s++) {
            if ((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
                *s == '-' || *s == '_' || *s == '.' || *s == '~') {
                q[(*len)++] = (char)*s;
            } else {
                q[(*len)++] = '%';
                q[(*len)++] = hex[*s >> 4];
                q[(*len)++] = hex[*s & 15];
            }
        }
    }
    q[*len] = '\0';
}

/* The tenant key for a store named by an operator: an id or a slug (as
 * X-Tenant-Id), or a host name (as Host: a subdomain of the base domain or a
 * store's own domain). */
static bool
store_key_of(app_t *app, const char *s, char *key, size_t n)
{
    if (strchr(s, '.'))
        return store_tenant_key(NULL, s, app->cfg->base_domain, key, n) == 0;
    return store_tenant_key(s, NULL, NULL, key, n) == 0;
}

typedef struct vals_s {
    json_t *details; /* [{field, issue}] */
} vals_t;

static void
vals_add(vals_t *v, const char *field, const char *issue)
{
    if (v->details == NULL)
        v->details = json_array();
    json_array_append_new(v->details, json_pack("{s:s,s:s}", "field", field, "issue", issue));
}

static pend_t *
pend_add(admin_conn_t *c, uint64_t seq, json_t *id, const char *op)
{
    if (c->npend == c->pend_cap) {
        c->pend_cap = c->pend_cap ? c->pend_cap * 2 : 8;
        c->pend = shopd_realloc(c->pend, c->pend_cap * sizeof(pend_t));
    }
    pend_t *p = &c->pend[c->npend++];
    memset(p, 0, sizeof(*p));
    p->seq = seq;
    p->id = json_incref(id);
    p->start_us = shopd_now_us();
    snprintf(p->op, sizeof(p->op), "%s", op);
    return p;
}

/* An answer now: to the client, or into agg for a batch of an import. */
static void
deliver(admin_conn_t *c, agg_t *agg, uint32_t index, uint32_t count, json_t *answer)
{
    if (agg)
        agg_record(agg, index, count, answer);
    else
        send_frame(c, answer);
}

/* Turns args into the HTTP twin's request (store, path parameters, query,
 * body), submits it, and either answers now or records it as pending (agg:
 * the request is the batch of count rows from index of an import, answered
 * into agg). */
static void
route_op(admin_conn_t *c, const admin_req_t *rq, size_t ri, const alias_t *alias, agg_t *agg,
         uint32_t index, uint32_t count)
{
    admin_thread_t *t = c->t;
    admin_server_t *srv = t->srv;
    app_t *app = srv->app;
    const api_route_t *r = &api_routes[ri];
    json_t *rest = json_copy(rq->args);
    char *body = NULL;
    vals_t v = {0};
    char key[STORE_KEY_MAX] = "";
    char pvals[MSG_MAX_PARAMS][128];
    char query[2048] = "";
    size_t qlen = 0;
    api_call_t call;
    memset(&call, 0, sizeof(call));

    if (!api_role_allows(r->access, c->caller.role)) {
        deliver(c, agg, index, count,
                admin_err(rq->id, "forbidden", "your role may not call this operation", NULL));
        goto out;
    }
    if (alias && alias->key)
        json_object_set_new(rest, alias->key, json_string(alias->value));
    if (alias && alias->from) {
        json_t *k = json_object_get(rest, alias->from);
        if (k == NULL)
            vals_add(&v, alias->from, "required");
        else
            json_object_set(rest, "store", k);
        json_object_del(rest, alias->from);
    }
    if (r->flags & API_STORE) {
        char sbuf[256];
        json_t *s = json_object_get(rest, "store");
        if (s == NULL)
            vals_add(&v, "store", "required: the store's id or slug");
        else if (!arg_text(s, sbuf, sizeof(sbuf)) || !store_key_of(app, sbuf, key, sizeof(key)))
            vals_add(&v, "store", "must be a store id, slug or host name");
        json_object_del(rest, "store");
    }
    call.nparams = route_params(r, call.param_names, MSG_MAX_PARAMS);
    for (size_t i = 0; i < call.nparams; i++) {
        char name[64];
        snprintf(name, sizeof(name), "%.*s", (int)call.param_names[i].n, call.param_names[i].p);
        json_t *a = json_object_get(rest, name);
        pvals[i][0] = '\0';
        if (a == NULL)
            vals_add(&v, name, "required");
        else if (!arg_text(a, pvals[i], sizeof(pvals[i])) || pvals[i][0] == '\0' ||
                 strchr(pvals[i], '/'))
            vals_add(&v, name, "must be a non-empty string or an integer");
        call.param_values[i] = msg_str(pvals[i]);
        json_object_del(rest, name);
    }
    for (const char *const *q = r->query; q && *q; q++) {
        json_t *a = json_object_get(rest, *q);
        char val[512];
        if (a == NULL)
            continue;
        if (!arg_text(a, val, sizeof(val)))
            vals_add(&v, *q, "must be a string, an integer or a boolean");
        else if (qlen + strlen(*q) + 3 * strlen(val) + 2 >= sizeof(query))
            vals_add(&v, *q, "too long");
        else
            query_add(query, sizeof(query), &qlen, *q, val);
        json_object_del(rest, *q);
    }
    if (r->flags & API_BODY) {
        /* The body is what is left, or args.body when it is all that is left. */
        json_t *b = json_object_get(rest, "body");
        json_t *doc = json_object_size(rest) == 1 && json_is_object(b) ? b : rest;
        body = json_dumps(doc, JSON_COMPACT);
        if (body && strlen(body) > (size_t)app->cfg->max_body) {
            /* The HTTP edge's limit holds here too: the handlers were sized for it. */
            deliver(c, agg, index, count,
                    admin_err(rq->id, "body_too_large", "the body is larger than SHOPD_MAX_BODY",
                              NULL));
            goto out;
        }
    } else {
        const char *k;
        json_t *x;
        json_object_foreach(rest, k, x)
        {
            vals_add(&v, k, "unknown argument");
        }
    }
    if (v.details) {
        deliver(
            c, agg, index, count,
            admin_err(rq->id, "validation_failed", "the request has invalid fields", v.details));
        v.details = NULL;
        goto out;
    }

    uint64_t seq = ++t->seq & ADMIN_SEQ_MASK;
    char rid[64];
    snprintf(rid, sizeof(rid), "admin-%d-%llu", t->idx, (unsigned long long)seq);
    call.route = ri;
    call.caller = c->caller;
    call.tenant_key = key;
    call.query = query;
    call.query_len = qlen;
    call.body = msg_str(body);
    call.request_id = msg_str(rid);
    call.ip = msg_str(c->peer);
    call.reply_to = t->reply_to;
    call.token = NET_TOKEN_EXT | ((uint64_t)c->slot << ADMIN_SEQ_BITS) | seq;
    net_reply_t *now = api_submit(app, &call, NULL);
    if (now) {
        deliver(c, agg, index, count, answer_for(rq->id, now));
        net_reply_free(now);
        goto out;
    }
    pend_t *p = pend_add(c, seq, rq->id, rq->op);
    p->agg = agg;
    p->index = index;
    p->count = count;
    atomic_fetch_add_explicit(&srv->inflight, 1, memory_order_relaxed);
out:
    json_decref(v.details);
    free(body); /* json_dumps allocates with malloc */
    json_decref(rest);
}

/* ------------------------------------------------------------ import.products */

#define IMPORT_MAX_ROWS 5000
/* Batches of one import in flight: the store's lane checks one while its actor
 * writes the other. */
#define IMPORT_WINDOW 2

/* import.products {store, rows: [products.create bodies with variants]}: the
 * rows cut into batches of products.import (its validation, its access, its
 * run class: checked on the store's blocking lane, one transaction per batch
 * on the store's actor), one answer for all: {imported, variants,
 * categories_created, rejected: [{index, code, message, details}], us}. */
static void
op_import(admin_conn_t *c, const admin_req_t *rq)
{
    json_t *rows = json_object_get(rq->args, "rows"), *store = json_object_get(rq->args, "store");
    const char *k;
    json_t *x;
    json_t *details = json_array();
    json_object_foreach(rq->args, k, x)
    {
        if (strcmp(k, "rows") && strcmp(k, "store"))
            json_array_append_new(details,
                                  json_pack("{s:s,s:s}", "field", k, "issue", "unknown argument"));
    }
    if (store == NULL)
        json_array_append_new(details, json_pack("{s:s,s:s}", "field", "store", "issue",
                                                 "required: the store's id or slug"));
    if (!json_is_array(rows) || json_array_size(rows) == 0 ||
        json_array_size(rows) > IMPORT_MAX_ROWS)
        json_array_append_new(details, json_pack("{s:s,s:s}", "field", "rows", "issue",
                                                 "must be a list of 1 to 5000 products"));
    size_t ri = 0;
    while (ri < api_nroutes && strcmp(api_routes[ri].name, "products.import") != 0)
        ri++;
    if (json_array_size(details) > 0 || ri == api_nroutes) {
        send_frame(
            c, admin_err(rq->id, "validation_failed", "the request has invalid fields", details));
        return;
    }
    json_decref(details);
    agg_t *agg = shopd_calloc(1, sizeof(*agg));
    agg->id = json_incref(rq->id);
    agg->rejected = json_array();
    agg->remaining = json_array_size(rows);
    agg->start_us = shopd_now_us();
    agg->rows = json_incref(rows);
    agg->store = json_incref(store);
    agg->route = ri;
    agg_pump(c, agg);
}

/* Hands out batches until IMPORT_WINDOW are in flight, then answers once the
 * last is in; each answer calls it again. A batch takes rows while it holds at
 * most CATALOG_IMPORT_MAX_ROWS and its body stays under half SHOPD_MAX_BODY
 * (a row alone bigger than that goes alone and is refused body_too_large). */
static void
agg_pump(admin_conn_t *c, agg_t *agg)
{
    size_t n = json_array_size(agg->rows);
    size_t budget = (size_t)c->t->srv->app->cfg->max_body / 2;
    agg->submitting = true;
    while (agg->next < n && agg->inflight < IMPORT_WINDOW) {
        size_t first = agg->next, bytes = 64;
        json_t *batch = json_array();
        while (agg->next < n && json_array_size(batch) < CATALOG_IMPORT_MAX_ROWS) {
            json_t *x = json_array_get(agg->rows, agg->next);
            size_t len = json_dumpb(x, NULL, 0, JSON_COMPACT) + 1;
            if (json_array_size(batch) > 0 && bytes + len > budget)
                break;
            bytes += len;
            json_array_append(batch, x);
            agg->next++;
        }
        json_t *args = json_pack("{s:O,s:o}", "store", agg->store, "rows", batch);
        admin_req_t req = {.id = json_null(), .op = "products.import", .args = args};
        agg->inflight++;
        route_op(c, &req, agg->route, NULL, agg, (uint32_t)first, (uint32_t)(agg->next - first));
        json_decref(args);
    }
    agg->submitting = false;
    agg_maybe_finish(c, agg);
}

/* ------------------------------------------------------------ frames */

static void
handle_frame(admin_conn_t *c, const unsigned char *p, size_t n)
{
    char err[160];
    admin_req_t rq = {0};
    json_t *f = admin_decode(p, n, err, sizeof(err));
    if (f == NULL) {
        send_error(c, NULL, "malformed_frame", err);
        if (!c->authed)
            conn_close_soon(c);
        return;
    }
    /* A hello carries version and token at the top level: read them as its args. */
    json_t *op = json_object_get(f, "op");
    if (json_is_string(op) && !strcmp(json_string_value(op), "hello") &&
        json_object_get(f, "args") == NULL) {
        json_t *args = json_deep_copy(f);
        json_object_del(args, "id");
        json_object_del(args, "op");
        json_object_set_new(f, "args", args);
    }
    if (admin_req_read(f, &rq, err, sizeof(err)) != 0) {
        send_error(c, rq.id, "invalid_request", err);
        if (!c->authed)
            conn_close_soon(c);
        goto out;
    }
    atomic_fetch_add_explicit(&c->t->srv->requests, 1, memory_order_relaxed);
    if (!c->authed) {
        hello(c, &rq);
        goto out;
    }
    if (!strcmp(rq.op, "hello")) {
        send_error(c, rq.id, "invalid_request", "already said hello on this connection");
        goto out;
    }
    msg_caller_t now;
    if (c->jwt && auth_jwt_verify(c->jwt, strlen(c->jwt), &now) != AUTH_JWT_OK) {
        send_error(c, rq.id, "unauthenticated",
                   "the access token of this session has expired; connect again with a new one");
        conn_close_soon(c);
        goto out;
    }
    if (!strcmp(rq.op, "ping")) {
        send_frame(c, admin_ok(rq.id, json_pack("{s:b}", "pong", 1)));
        goto out;
    }
    if (!strcmp(rq.op, "import.products")) {
        op_import(c, &rq);
        goto out;
    }
    if (!strcmp(rq.op, "cancel")) {
        op_cancel(c, &rq);
        goto out;
    }
    if (!strcmp(rq.op, "events.tail")) {
        if (!platform_caller(c))
            send_error(c, rq.id, "forbidden", "your role may not call this operation");
        else
            op_tail(c, &rq);
        goto out;
    }
    if (!strcmp(rq.op, "ops")) {
        send_frame(c, admin_ok(rq.id, op_ops()));
        goto out;
    }
    if (!strcmp(rq.op, "stats") || !strcmp(rq.op, "config.show")) {
        if (!platform_caller(c)) {
            send_error(c, rq.id, "forbidden", "your role may not call this operation");
            goto out;
        }
        json_t *res = json_array();
        if (!strcmp(rq.op, "stats")) {
            json_decref(res);
            res = op_stats(c);
        } else {
            cfg_visit(c->t->srv->app->cfg, config_row, res);
        }
        send_frame(c, admin_ok(rq.id, res));
        goto out;
    }
    const char *help;
    for (size_t i = 0; admin_tasks_help(i, &help); i++) {
        if (strcmp(admin_tasks_help(i, &help), rq.op) != 0)
            continue;
        if (!platform_caller(c)) {
            send_error(c, rq.id, "forbidden", "your role may not call this operation");
            goto out;
        }
        admin_thread_t *t = c->t;
        uint64_t seq = ++t->seq & ADMIN_SEQ_MASK;
        uint64_t token = NET_TOKEN_EXT | ((uint64_t)c->slot << ADMIN_SEQ_BITS) | seq;
        if (admin_tasks_submit(t->srv->tasks, rq.op, rq.args, t->reply_to, token) != 0) {
            send_error(c, rq.id, "admin_busy", "too many blocking admin operations are queued");
            goto out;
        }
        pend_add(c, seq, rq.id, rq.op);
        atomic_fetch_add_explicit(&t->srv->inflight, 1, memory_order_relaxed);
        goto out;
    }
    for (size_t i = 0; i < SHOPD_ARRAY_LEN(aliases); i++) {
        if (strcmp(rq.op, aliases[i].op) != 0)
            continue;
        for (size_t r = 0; r < api_nroutes; r++)
            if (!strcmp(api_routes[r].name, aliases[i].route)) {
                route_op(c, &rq, r, &aliases[i], NULL, 0, 0);
                goto out;
            }
    }
    for (size_t r = 0; r < api_nroutes; r++) {
        if (!(api_routes[r].flags & API_INLINE) && !strcmp(api_routes[r].name, rq.op)) {
            route_op(c, &rq, r, NULL, NULL, 0, 0);
            goto out;
        }
    }
    char msg[160];
    snprintf(msg, sizeof(msg), "no operation '%s' (op \"ops\" lists them)", rq.op);
    send_error(c, rq.id, "unknown_op", msg);
out:
    admin_req_clear(&rq);
    json_decref(f);
}

/* Reads whole frames until the input runs out, the connection closes or too
 * many requests are in flight (on_reply resumes). */
static void
conn_parse(admin_conn_t *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    size_t max = c->t->srv->max_frame;
    while (!c->closing && c->npend < ADMIN_MAX_PENDING) {
        unsigned char hdr[ADMIN_HEADER];
        size_t have = evbuffer_get_length(in), n = 0;
        if (have < ADMIN_HEADER)
            break;
        evbuffer_copyout(in, hdr, ADMIN_HEADER);
        if (admin_frame_check(hdr, ADMIN_HEADER, max, &n) == ADMIN_FRAME_TOO_BIG) {
            char msg[128];
            snprintf(msg, sizeof(msg), "a frame of %zu bytes; at most %zu are accepted", n, max);
            send_error(c, NULL, n ? "frame_too_large" : "malformed_frame",
                       n ? msg : "a frame of 0 bytes");
            conn_close_soon(c);
            return;
        }
        if (have < ADMIN_HEADER + n)
            break;
        unsigned char *p = evbuffer_pullup(in, (ssize_t)(ADMIN_HEADER + n));
        handle_frame(c, p + ADMIN_HEADER, n);
        evbuffer_drain(in, ADMIN_HEADER + n);
    }
    if (c->read_eof && !c->closing && c->npend == 0)
        conn_close_soon(c);
}

static void
conn_read_cb(struct bufferevent *bev, void *arg)
{
    admin_conn_t *c = arg;
    if (c->closing) {
        evbuffer_drain(bufferevent_get_input(bev), evbuffer_get_length(bufferevent_get_input(bev)));
        return;
    }
    conn_parse(c);
}

static void
conn_write_cb(struct bufferevent *bev, void *arg)
{
    admin_conn_t *c = arg;
    if (c->closing && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
        conn_free(c);
}

static void
conn_event_cb(struct bufferevent *bev, short what, void *arg)
{
    admin_conn_t *c = arg;
    if (what & BEV_EVENT_CONNECTED)
        return; /* the TLS handshake is done */
    if ((what & BEV_EVENT_TIMEOUT) && (what & BEV_EVENT_READING) && !c->closing) {
        if (c->npend > 0) {
            bufferevent_enable(bev, EV_READ); /* idle only while nothing is in flight */
            return;
        }
        send_error(c, NULL, "idle_timeout", "the connection was idle too long");
        conn_close_soon(c);
        return;
    }
    if ((what & BEV_EVENT_EOF) && !(what & BEV_EVENT_ERROR) && !c->closing) {
        c->read_eof = true;
        conn_parse(c); /* answers what was read, then closes */
        return;
    }
    conn_free(c);
}

static void
accept_cb(struct evconnlistener *lst, evutil_socket_t fd, struct sockaddr *sa, int salen, void *arg)
{
    admin_thread_t *t = arg;
    admin_server_t *srv = t->srv;
    int prev = atomic_fetch_add_explicit(&srv->conns, 1, memory_order_relaxed);
    if ((prev >= srv->max_conns || t->nslots >= ADMIN_SLOT_MAX) && srv->tls) {
        /* No TLS session for a refusal: a plain frame would be noise to the client. */
        atomic_fetch_sub_explicit(&srv->conns, 1, memory_order_relaxed);
        evutil_closesocket(fd);
        return;
    }
    if (prev >= srv->max_conns || t->nslots >= ADMIN_SLOT_MAX) {
        atomic_fetch_sub_explicit(&srv->conns, 1, memory_order_relaxed);
        json_t *e = admin_err(json_null(), "too_many_connections", "try again later", NULL);
        size_t len;
        unsigned char *f = admin_encode_frame(e, &len);
        ssize_t w = send(fd, f, len, MSG_NOSIGNAL);
        (void)w;
        shopd_free(f);
        json_decref(e);
        evutil_closesocket(fd);
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    admin_conn_t *c = shopd_calloc(1, sizeof(*c));
    c->t = t;
    if (sa && sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((struct sockaddr_in *)sa)->sin_addr, c->peer, sizeof(c->peer));
    else if (sa && sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)sa)->sin6_addr, c->peer, sizeof(c->peer));
    if (t->nfree > 0) {
        c->slot = t->free_slots[--t->nfree];
    } else {
        t->slots = shopd_realloc(t->slots, (t->nslots + 1) * sizeof(*t->slots));
        t->free_slots = shopd_realloc(t->free_slots, (t->nslots + 1) * sizeof(*t->free_slots));
        c->slot = (uint32_t)t->nslots++;
    }
    t->slots[c->slot] = c;
    SSL *ssl = srv->tls ? SSL_new(srv->tls) : NULL;
    c->bev = ssl ? bufferevent_openssl_socket_new(t->base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                                  BEV_OPT_CLOSE_ON_FREE)
                 : bufferevent_socket_new(t->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (ssl)
        bufferevent_openssl_set_allow_dirty_shutdown(c->bev, 1); /* a client's plain close */
    struct timeval idle = {srv->idle_s, 0};
    bufferevent_set_timeouts(c->bev, &idle, &idle);
    bufferevent_setwatermark(c->bev, EV_READ, 0, srv->max_frame + ADMIN_HEADER + 4096);
    bufferevent_setcb(c->bev, conn_read_cb, conn_write_cb, conn_event_cb, c);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
}

/* Answers request_timeout for requests the workers have not answered in time
 * (as HTTP answers 504), so no request is pending forever; a late answer then
 * finds no pending entry and is dropped. Streams have no deadline. */
static void
sweep_cb(evutil_socket_t fd, short what, void *arg)
{
    admin_thread_t *t = arg;
    admin_server_t *srv = t->srv;
    uint64_t now = shopd_now_us();
    for (size_t s = 0; s < t->nslots; s++) {
        admin_conn_t *c = t->slots[s];
        if (c == NULL || c->closing)
            continue;
        bool was_full = c->npend >= ADMIN_MAX_PENDING;
        for (size_t i = c->npend; i-- > 0;) {
            pend_t *p = &c->pend[i];
            /* A batch of an import is not cut short: its answer is what tells
             * which rows were written (a batch refused at the timeout could
             * still commit on the store's actor afterwards). */
            if (p->sub || p->agg || now - p->start_us < srv->request_timeout_us)
                continue;
            pend_t q = *p;
            c->pend[i] = c->pend[--c->npend];
            atomic_fetch_sub_explicit(&srv->inflight, 1, memory_order_relaxed);
            json_t *e = admin_err(q.id, "request_timeout", "the request took too long", NULL);
            if (q.agg) {
                agg_record(q.agg, q.index, q.count, e);
                agg_pump(c, q.agg);
            } else {
                send_frame(c, e);
            }
            json_decref(q.id);
        }
        if (was_full && c->npend < ADMIN_MAX_PENDING)
            conn_parse(c);
    }
}

/* net_server_drain reached this thread. */
static void
on_drain(void *ud)
{
    admin_thread_t *t = ud;
    if (t->lst) {
        evconnlistener_free(t->lst);
        t->lst = NULL;
    }
    for (size_t i = 0; i < t->nslots; i++) {
        admin_conn_t *c = t->slots[i];
        if (c == NULL || c->closing)
            continue;
        for (size_t j = c->npend; j-- > 0;)
            if (c->pend[j].sub)
                tail_end(c, j, "the server is stopping");
        if (c->npend == 0)
            conn_close_soon(c);
    }
}

/* ------------------------------------------------------------ server */

admin_server_t *
admin_server_new(app_t *app, char *err, size_t errlen)
{
    cfg_t *cfg = app->cfg;
    admin_server_t *srv = shopd_calloc(1, sizeof(*srv));
    srv->app = app;
    srv->fd = -1;
    srv->max_frame = (size_t)cfg->admin_max_frame;
    srv->max_conns = cfg->admin_max_conns;
    srv->idle_s = cfg->admin_idle_timeout;
    srv->request_timeout_us = (uint64_t)cfg->request_timeout * 1000u;
    srv->nthreads = net_server_threads(app->net);
    pthread_mutex_init(&srv->subs_lock, NULL);
    srv->tasks = admin_tasks_new(app);

    struct sockaddr_storage ss;
    int sslen = sizeof(ss);
    char addr[300];
    if (strchr(cfg->admin_host, ':'))
        snprintf(addr, sizeof(addr), "[%s]:%d", cfg->admin_host, cfg->admin_port);
    else
        snprintf(addr, sizeof(addr), "%s:%d", cfg->admin_host, cfg->admin_port);
    if (evutil_parse_sockaddr_port(addr, (struct sockaddr *)&ss, &sslen) != 0) {
        snprintf(err, errlen, "cannot listen on %s (admin): not an IP address", addr);
        goto fail;
    }
    if (cfg->admin_tls_cert[0] != '\0') {
        srv->tls = SSL_CTX_new(TLS_server_method());
        if (srv->tls == NULL || !SSL_CTX_set_min_proto_version(srv->tls, TLS1_2_VERSION) ||
            SSL_CTX_use_certificate_chain_file(srv->tls, cfg->admin_tls_cert) != 1 ||
            SSL_CTX_use_PrivateKey_file(srv->tls, cfg->admin_tls_key, SSL_FILETYPE_PEM) != 1 ||
            SSL_CTX_check_private_key(srv->tls) != 1) {
            char e[256];
            ERR_error_string_n(ERR_get_error(), e, sizeof(e));
            snprintf(err, errlen, "admin TLS: cannot use certificate %s with key %s: %s",
                     cfg->admin_tls_cert, cfg->admin_tls_key, e);
            goto fail;
        }
    }
    srv->fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (srv->fd < 0 || setsockopt(srv->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        bind(srv->fd, (struct sockaddr *)&ss, (socklen_t)sslen) != 0 || listen(srv->fd, 128) != 0) {
        snprintf(err, errlen, "cannot listen on %s (admin): %s", addr, strerror(errno));
        goto fail;
    }
    srv->threads = shopd_calloc((size_t)srv->nthreads, sizeof(admin_thread_t));
    for (int i = 0; i < srv->nthreads; i++) {
        admin_thread_t *t = &srv->threads[i];
        t->srv = srv;
        t->idx = i;
        t->base = net_server_base(app->net, i);
        t->reply_to = net_server_reply_to(app->net, i);
        /* Every thread accepts from the same socket (its own descriptor of it):
         * whichever loop wakes first takes the connection. */
        int fd = fcntl(srv->fd, F_DUPFD_CLOEXEC, 0);
        t->lst = fd < 0 ? NULL
                        : evconnlistener_new(t->base, accept_cb, t,
                                             LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 0, fd);
        if (t->lst == NULL) {
            if (fd >= 0)
                close(fd);
            snprintf(err, errlen, "cannot listen on %s (admin): %s", addr, strerror(errno));
            goto fail;
        }
        t->sweep = event_new(t->base, -1, EV_PERSIST, sweep_cb, t);
        struct timeval sec = {1, 0};
        event_add(t->sweep, &sec);
        net_ext_t ext = {.on_reply = on_reply, .on_drain = on_drain, .ud = t};
        net_server_set_ext(app->net, i, &ext);
    }
    log_set_tap(admin_tap, srv);
    return srv;
fail:
    admin_server_free(srv);
    return NULL;
}

void
admin_server_drain(admin_server_t *srv)
{
    if (srv)
        atomic_store_explicit(&srv->draining, true, memory_order_relaxed);
}

uint64_t
admin_server_inflight(admin_server_t *srv)
{
    return srv ? atomic_load_explicit(&srv->inflight, memory_order_relaxed) : 0;
}

void
admin_server_free(admin_server_t *srv)
{
    if (srv == NULL)
        return;
    log_set_tap(NULL, NULL);
    admin_tasks_free(srv->tasks); /* its late answers land in queues net_server_free empties */
    for (int i = 0; srv->threads && i < srv->nthreads; i++) {
        admin_thread_t *t = &srv->threads[i];
        net_ext_t none = {0};
        net_server_set_ext(srv->app->net, i, &none);
        for (size_t s = 0; s < t->nslots; s++)
            if (t->slots[s])
                conn_free(t->slots[s]);
        if (t->lst)
            evconnlistener_free(t->lst);
        if (t->sweep)
            event_free(t->sweep);
        shopd_free(t->slots);
        shopd_free(t->free_slots);
    }
    shopd_free(srv->threads);
    if (srv->fd >= 0)
        close(srv->fd);
    SSL_CTX_free(srv->tls);
    pthread_mutex_destroy(&srv->subs_lock);
    shopd_free(srv);
}
