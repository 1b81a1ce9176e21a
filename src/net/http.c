/*
 * http.c: the HTTP/1.1 server. Owns the I/O threads (one event_base each,
 * memcached style), their SO_REUSEPORT listeners, the client connections and
 * their timeouts, the per-thread reply queues and the per-thread request
 * metrics. Request framing and the limits are in http_parse.c.
 *
 * Why not evhttp: libevent 2.1's evhttp answers an oversized header block
 * with 413 and an HTML body, cannot cap connections and cannot answer in the
 * JSON error format; framing on bufferevents with http-parser gives all of
 * that and one allocation-light path per request.
 *
 * A connection handles one request at a time: when a request is complete the
 * parser is paused (pipelined bytes wait in the input buffer), the request is
 * handed to the application, and parsing resumes once the answer is written.
 * Output is bounded too: while a connection's unsent answers exceed
 * max_output (a client pipelining without reading), its further requests are
 * not parsed; the write low-watermark callback resumes parsing once half of it
 * has drained. Its input is capped by the read high-watermark meanwhile, so a
 * connection holds at most about max_output + one answer + max input.
 *
 * End of input (a client's shutdown(SHUT_WR), nc -N) is not the end of the
 * connection: the request in flight and any complete requests still buffered
 * are answered, then the connection closes once its output is flushed.
 *
 * Replies from other threads arrive through net_reply_post(): a mutex-guarded
 * list per thread plus event_active() on a wake-up event; the thread drains the
 * whole list in one callback. Each deferred request is named by a token
 * (connection slot << 32 | generation); the generation moves on when the
 * request is answered, times out or its connection closes, so a late reply
 * finds a different generation and is dropped.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/thread.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "shopd/log.h"
#include "shopd/net.h"
#include "http_parse.h"

#define NET_LINGER_S 2

/* Statuses counted individually in /metrics; anything else is counted as "other". */
static const int metric_statuses[] = {200, 201, 204, 304, 400, 401, 403, 404, 405, 409,
                                      413, 415, 422, 429, 431, 500, 503, 504, 0};
#define NSTATUS (SHOPD_ARRAY_LEN(metric_statuses))
/* Latency histogram upper bounds in microseconds; the last bucket is +Inf. */
static const uint64_t hist_bounds_us[] = {100,    250,    500,     1000,    2500,
                                          5000,   10000,  25000,   50000,   100000,
                                          250000, 500000, 1000000, 2500000, 5000000};
#define NBUCKETS (SHOPD_ARRAY_LEN(hist_bounds_us) + 1)

typedef struct net_thread_s net_thread_t;

/* Fairness across stores on one I/O thread. A connection whose store has taken
 * well over its share of this thread's recent time (microseconds spent answering
 * its requests here: a cached page built into the output, an envelope packed, a
 * worker's answer written; not the workers' or PostgreSQL's time, which the
 * actor runtime's group cap shares), while other stores also send some, has its
 * events at a lower libevent priority: the loop serves every
 * ready connection of the other stores first, and the flooding store's the
 * moment none is ready, so nothing idles and no store starves (its count decays
 * and it is back at the normal priority). Cached pages are answered on this
 * thread, so without this one store's flood is every other store's queue.
 * Costs are per slot of a small direct-mapped table (two stores sharing a slot
 * share a sum: an approximation that errs towards treating them alike) and
 * halve every FAIR_WINDOW_US. */
#define FAIR_SLOTS 256
#define FAIR_WINDOW_US 10000
#define PRI_CONTROL 0 /* the reply queue's wake-up */
#define PRI_NORMAL 1
#define PRI_OVER 2 /* a connection of a store over its share */
#define NPRI 3
#define FAIR_MAX_OVER 4 /* low-priority callbacks between two polls */
typedef struct fair_s {
    uint32_t n[FAIR_SLOTS];
    uint64_t store[FAIR_SLOTS]; /* the store last charged to each slot */
    uint32_t total;
    uint32_t active; /* slots with n > 0 */
    uint64_t window_end_us;
    uint64_t flood_store;    /* the latest store found over its share on a busy thread */
    uint64_t flood_until_us; /* ... which counts as flooding until then */
} fair_t;

/* The flood lane. Priorities order one thread's loop, but the kernel still
 * shares the cores among threads: a light store's request that lands on an I/O
 * thread a flood keeps busy waits for that thread's next time slice, however
 * the loop orders it (B's p99 rose 9-12x under A's cached-page flood, while B
 * served by a second, mostly idle process stayed at 1.1-1.2x). So, with two I/O
 * threads or more, thread 0 is the flood lane: a connection whose store is over
 * its share of a busy thread moves there between two requests, and a connection
 * of another store moves off it while a flood is there, so the other threads
 * sleep between the light stores' requests and wake at once for them. A flooding
 * store is held to one thread while others send; alone it spreads back (rule 3
 * of lane_pick). A connection moves at most once per LANE_HOLD_US. */
#define LANE_HOLD_US 1000000
#define LANE_FLOOD_US 200000 /* how long a flood seen keeps its lane */

typedef struct reply_node_s {
    struct reply_node_s *next;
    uint64_t token;
    net_reply_t *reply;
    struct net_conn_s *adopt; /* instead of a reply: a connection moving here */
    evutil_socket_t fd;       /* ... and its socket */
} reply_node_t;

struct net_conn_s {
    net_thread_t *t;
    struct bufferevent *bev;
    net_framer_t fr; /* framing state and the current request */
    uint32_t slot;
    bool in_flight;    /* handed to the application, not answered yet */
    bool closing;      /* last response queued; free when flushed */
    bool lingering;    /* after an error: discard input until EOF or timeout */
    bool read_eof;     /* the client shut its sending side: answer what it sent, then close */
    bool out_blocked;  /* unsent output above max_output: further requests wait */
    uint8_t pri;       /* PRI_NORMAL or PRI_OVER (fair_t) */
    int8_t lane_to;    /* the thread it moves to once idle (-1: stays) */
    uint64_t flow;     /* the store of its latest request (0: none named yet) */
    uint64_t moved_us; /* when it last moved between threads (0: never) */
    struct event *timer;
    char peer[48]; /* the client's IP address, text form (rate limits, logs) */
};

typedef struct slot_s {
    net_conn_t *conn;
    uint32_t gen;
} slot_t;

struct net_thread_s {
    net_server_t *srv;
    int idx;
    pthread_t tid;
    struct event_base *base;
    struct evconnlistener *lst;
    struct event *wake;
    pthread_mutex_t qlock;
    reply_node_t *qhead, *qtail;
    bool stop_req, drain_req; /* guarded by qlock */
    slot_t *slots;
    size_t nslots, slots_cap;
    uint32_t *free_slots;
    size_t nfree, free_cap;
    uint64_t rng[2];
    net_ext_t ext; /* another protocol's callbacks (admin.c); zero if none */
    fair_t fair;
    uint64_t spread_after_us; /* the flood lane's next move back (lane_pick) */
    /* Its fairness table in brief, for the other threads' lane_pick. */
    _Atomic uint32_t pub_active;
    _Atomic uint64_t pub_lead;  /* the store with the most time here */
    _Atomic uint64_t pub_at_us; /* when: an idle thread stops publishing */
    /* Metrics: written only by this thread (relaxed load+store, no locked RMW
     * needed with a single writer), read by /metrics on any thread. */
    _Atomic uint64_t *counts; /* [(nlabels + 1) * NSTATUS] */
    _Atomic uint64_t hist[NBUCKETS];
    _Atomic uint64_t hist_sum_us;
    _Atomic uint64_t conns_open;
    _Atomic uint64_t fair_demoted; /* connections moved to PRI_OVER */
    _Atomic uint64_t lane_moves;   /* connections moved to another thread */
};

struct net_server_s {
    net_config_t cfg;
    net_thread_t *threads;
    int nthreads;
    _Atomic int conns;         /* open connections, all threads (relaxed: a cap, not a fence) */
    _Atomic uint64_t inflight; /* requests accepted and not answered */
    _Atomic bool draining;
    _Atomic uint64_t rejected_conns;
    /* TLS: the context new connections take (NULL: plain HTTP). Swapped by
     * net_server_reload_tls under tls_lock; each SSL holds its own reference
     * to the context it was made from, so open connections keep theirs. */
    pthread_mutex_t tls_lock;
    SSL_CTX *tls_ctx;
    bool tls;
};

/* ------------------------------------------------------------ helpers */

static inline void
stat_add(_Atomic uint64_t *p, uint64_t v)
{
    /* Single writer (the owning thread): relaxed load + store is enough. */
    atomic_store_explicit(p, atomic_load_explicit(p, memory_order_relaxed) + v,
                          memory_order_relaxed);
}

/* ------------------------------------------------------------ fairness */

static uint32_t *
fair_slot(fair_t *f, uint64_t store_id)
{
    return &f->n[(store_id * UINT64_C(0x9e3779b97f4a7c15)) >> 56];
}

/* Halves every cost once a window has passed, and publishes the summary. */
static void
fair_decay(net_thread_t *t, uint64_t now)
{
    fair_t *f = &t->fair;
    if (now < f->window_end_us)
        return;
    f->total = f->active = 0;
    size_t lead = 0;
    for (size_t i = 0; i < FAIR_SLOTS; i++) {
        f->n[i] >>= 1;
        f->total += f->n[i];
        f->active += f->n[i] != 0;
        if (f->n[i] > f->n[lead])
            lead = i;
    }
    f->window_end_us = now + FAIR_WINDOW_US;
    atomic_store_explicit(&t->pub_active, f->active, memory_order_relaxed);
    atomic_store_explicit(&t->pub_lead, f->n[lead] ? f->store[lead] : 0, memory_order_relaxed);
    atomic_store_explicit(&t->pub_at_us, now, memory_order_relaxed);
}

/* Charges us microseconds of this thread to flow (0: nobody). */
static void
fair_charge(net_thread_t *t, uint64_t flow, uint64_t t0)
{
    if (flow == 0)
        return;
    uint64_t now = shopd_now_us();
    fair_t *f = &t->fair;
    fair_decay(t, now);
    uint32_t *n = fair_slot(f, flow);
    uint32_t us = (uint32_t)(now - t0 > 100000 ? 100000 : now - t0) + 1;
    f->store[n - f->n] = flow;
    if (*n == 0)
        f->active++;
    if (*n < UINT32_MAX / 4) {
        *n += us;
        f->total += us;
    }
}

static uint64_t
conns_of(net_thread_t *t)
{
    return atomic_load_explicit(&t->conns_open, memory_order_relaxed);
}

/* The thread c should move to once idle (the flood lane above), or -1. over:
 * its store is over its share of this thread. The rules:
 * 1. on another thread, a store over its share of a busy one goes to lane 0;
 * 2. on lane 0, a store not over its share leaves while a flood is there, for
 *    the other thread with the fewest connections;
 * 3. on lane 0 with no flood, a store leaves for a thread that serves nobody
 *    else and has fewer connections, one connection per FAIR_WINDOW_US (the
 *    counts lag the moves): a flood that ended spreads over the threads again.
 * A thread is busy when its recent time (halved every window, so about twice a
 * window's worth in a steady state) is a quarter or more of its wall time. */
static int
lane_pick(net_conn_t *c, uint64_t store_id, bool over, uint64_t now)
{
    net_thread_t *t = c->t;
    net_server_t *srv = t->srv;
    fair_t *f = &t->fair;
    if (srv->nthreads < 2 || srv->tls || !srv->cfg.flood_lane)
        return -1;
    bool flood = over && f->total >= FAIR_WINDOW_US / 2;
    if (flood) {
        f->flood_store = store_id;
        f->flood_until_us = now + LANE_FLOOD_US;
    }
    if (c->moved_us != 0 && now - c->moved_us < LANE_HOLD_US)
        return -1;
    if (t->idx != 0)
        return flood ? 0 : -1;
    if (over)
        return -1;
    int best = -1;
    if (f->flood_until_us > now && f->flood_store != store_id) {
        for (int i = 1; i < srv->nthreads; i++)
            if (best < 0 || conns_of(&srv->threads[i]) < conns_of(&srv->threads[best]))
                best = i;
        return best;
    }
    if (f->flood_until_us > now || now < t->spread_after_us)
        return -1;
    for (int i = 1; i < srv->nthreads; i++) {
        net_thread_t *o = &srv->threads[i];
        /* A thread publishes when it charges time; one silent for a while
         * has served nobody since (its counts would have decayed to 0). */
        uint32_t act =
            now > atomic_load_explicit(&o->pub_at_us, memory_order_relaxed) + LANE_FLOOD_US
                ? 0
                : atomic_load_explicit(&o->pub_active, memory_order_relaxed);
        bool only_us =
            act == 0 ||
            (act == 1 && atomic_load_explicit(&o->pub_lead, memory_order_relaxed) == store_id);
        if (only_us && conns_of(o) + 1 < conns_of(t) &&
            (best < 0 || conns_of(o) < conns_of(&srv->threads[best])))
            best = i;
    }
    if (best >= 0)
        t->spread_after_us = now + FAIR_WINDOW_US;
    return best;
}

/* c's request is of store_id: c moves to the priority its store's share calls
 * for (fair_t). Over its share means more than 3/4 of the thread's recent time
 * while other stores sent requests too: a flood (a flash sale, a scraper), not
 * the head of an ordinary popularity curve. A threshold relative to an even
 * split (1.5x, first tried) demoted the dozen most popular of 100 Zipf stores
 * all the time, and the re-polls that cost took 20% off the throughput of such
 * a mix (shopbench tenants, K = 100). A lone store is never over. */
static void
fair_place(net_conn_t *c, uint64_t store_id)
{
    fair_t *f = &c->t->fair;
    c->flow = store_id;
    uint64_t now = c->fr.req.start_us ? c->fr.req.start_us : shopd_now_us();
    fair_decay(c->t, now);
    uint32_t n = *fair_slot(f, store_id);
    uint8_t pri =
        f->active >= 2 && 4 * (uint64_t)n > 3 * (uint64_t)f->total ? PRI_OVER : PRI_NORMAL;
    /* Fails for a TLS connection (libevent sets priorities on socket
     * bufferevents only) and while one of its events is queued to run: it
     * stays as it is and the next request tries again. */
    if (pri != c->pri && bufferevent_priority_set(c->bev, pri) == 0) {
        c->pri = pri;
        if (pri == PRI_OVER)
            stat_add(&c->t->fair_demoted, 1);
    }
    c->lane_to = (int8_t)lane_pick(c, store_id, pri == PRI_OVER, now);
}

static uint64_t
rng_next(net_thread_t *t)
{
    /* xorshift128+: request ids need uniqueness, not secrecy. */
    uint64_t s1 = t->rng[0];
    const uint64_t s0 = t->rng[1];
    t->rng[0] = s0;
    s1 ^= s1 << 23;
    t->rng[1] = s1 ^ s0 ^ (s1 >> 17) ^ (s0 >> 26);
    return t->rng[1] + s0;
}

static bool
valid_request_id(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++) {
        char c = s[n];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.' || c == ':'))
            return false;
        if (n >= 128)
            return false;
    }
    return n > 0;
}

/* ------------------------------------------------------------ slots */

static uint32_t
slot_alloc(net_thread_t *t, net_conn_t *c)
{
    uint32_t s;
    if (t->nfree > 0) {
        s = t->free_slots[--t->nfree];
    } else {
        if (t->nslots == t->slots_cap) {
            t->slots_cap = t->slots_cap ? t->slots_cap * 2 : 64;
            t->slots = shopd_realloc(t->slots, t->slots_cap * sizeof(slot_t));
        }
        s = (uint32_t)t->nslots++;
        t->slots[s].gen = 0;
    }
    t->slots[s].conn = c;
    return s;
}

static void
slot_release(net_thread_t *t, uint32_t s)
{
    t->slots[s].conn = NULL;
    t->slots[s].gen++;
    if (t->nfree == t->free_cap) {
        t->free_cap = t->free_cap ? t->free_cap * 2 : 64;
        t->free_slots = shopd_realloc(t->free_slots, t->free_cap * sizeof(uint32_t));
    }
    t->free_slots[t->nfree++] = s;
}

/* ------------------------------------------------------------ connections */

static void conn_parse(net_conn_t *c);
static void queue_push(net_thread_t *t, reply_node_t *n);
static bool conn_movable(net_conn_t *c);
static void conn_move(net_conn_t *c);
static void conn_read_cb(struct bufferevent *bev, void *arg);
static void conn_write_cb(struct bufferevent *bev, void *arg);
static void conn_event_cb(struct bufferevent *bev, short what, void *arg);
static void request_timeout_cb(evutil_socket_t fd, short what, void *arg);

static void
conn_free(net_conn_t *c)
{
    net_thread_t *t = c->t;
    net_server_t *srv = t->srv;
    if (c->in_flight) {
        /* The answer will find a new generation and be dropped. */
        c->in_flight = false;
        atomic_fetch_sub_explicit(&srv->inflight, 1, memory_order_relaxed);
    }
    slot_release(t, c->slot);
    if (c->timer)
        event_free(c->timer);
    bufferevent_free(c->bev);
    net_framer_free(&c->fr);
    shopd_free(c);
    atomic_fetch_sub_explicit(&srv->conns, 1, memory_order_relaxed);
    stat_add(&t->conns_open, (uint64_t)-1);
}

static int
status_index(int status)
{
    for (size_t i = 0; i + 1 < NSTATUS; i++)
        if (metric_statuses[i] == status)
            return (int)i;
    return (int)NSTATUS - 1;
}

static void
record_metrics(net_thread_t *t, int label, int status, uint64_t us)
{
    size_t nl = t->srv->cfg.nlabels;
    size_t row = (label >= 0 && (size_t)label < nl) ? (size_t)label : nl;
    stat_add(&t->counts[row * NSTATUS + (size_t)status_index(status)], 1);
    size_t b = 0;
    while (b < NBUCKETS - 1 && us > hist_bounds_us[b])
        b++;
    stat_add(&t->hist[b], 1);
    stat_add(&t->hist_sum_us, us);
}

/* The headers every answer carries. A JSON API is never a page to render or
 * frame: nosniff keeps a browser from reading an answer as script or HTML,
 * the CSP and X-Frame-Options forbid framing (clickjacking), and no referrer
 * leaks an API URL (it may carry a cart or a reset token) to another site. */
static const char security_headers[] =
    "X-Content-Type-Options: nosniff\r\nReferrer-Policy: no-referrer\r\n"
    "X-Frame-Options: DENY\r\n";
/* The default policy; an answer that is a page (static.c's mounts) sets its own,
 * which must still say frame-ancestors 'none'. */
static const char default_csp[] =
    "Content-Security-Policy: default-src 'none'; frame-ancestors 'none'\r\n";

static const char hsts_header[] =
    "Strict-Transport-Security: max-age=63072000; includeSubDomains\r\n";

/* True if the header lines in h ("Name: v\r\n"...) have one named name. */
static bool
has_header_line(const char *h, const char *name)
{
    size_t nl = strlen(name);
    for (const char *p = h; p && *p;) {
        if (strncasecmp(p, name, nl) == 0 && p[nl] == ':')
            return true;
        p = strstr(p, "\r\n");
        p = p ? p + 2 : NULL;
    }
    return false;
}

static size_t
put_str(char *p, const char *s, size_t n)
{
    memcpy(p, s, n);
    return n;
}

static size_t
put_dec(char *p, size_t v)
{
    char tmp[24];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        p[i] = tmp[n - 1 - i];
    return n;
}

/* The status line and the headers every answer has, assembled by hand into one
 * buffer and added once: printf's format parsing was a visible share of a cached
 * page's cost. A long Content-Type (set by a handler) takes the printf way. */
static void
put_status_line(struct evbuffer *out, const net_reply_t *r, const char *rid, bool close_after)
{
    const char *ct = r->content_type ? r->content_type : "application/json";
    const char *reason = net_reason(r->status);
    size_t ctl = strlen(ct), rl = strlen(reason), il = strlen(rid);
    char buf[512];
    if (ctl + rl + il > 256) {
        evbuffer_add_printf(out,
                            "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                            "X-Request-Id: %s\r\nConnection: %s\r\n",
                            r->status, reason, ct, r->len, rid,
                            close_after ? "close" : "keep-alive");
        return;
    }
    size_t o = put_str(buf, "HTTP/1.1 ", 9);
    o += put_dec(buf + o, (size_t)(r->status > 0 && r->status < 1000 ? r->status : 500));
    buf[o++] = ' ';
    o += put_str(buf + o, reason, rl);
    o += put_str(buf + o, "\r\nContent-Type: ", 16);
    o += put_str(buf + o, ct, ctl);
    o += put_str(buf + o, "\r\nContent-Length: ", 18);
    o += put_dec(buf + o, r->len);
    o += put_str(buf + o, "\r\nX-Request-Id: ", 16);
    o += put_str(buf + o, rid, il);
    if (close_after)
        o += put_str(buf + o, "\r\nConnection: close\r\n", 21);
    else
        o += put_str(buf + o, "\r\nConnection: keep-alive\r\n", 26);
    evbuffer_add(out, buf, o);
}

/* Writes the response for the current request and moves the connection on.
 * hook: the request was dispatched (not a framing error), so the application's
 * net_reply_fn sees the answer first. */
static void
conn_send(net_conn_t *c, net_reply_t *r, bool force_close, bool hook)
{
    net_thread_t *t = c->t;
    net_server_t *srv = t->srv;
    net_request_t *q = &c->fr.req;
    struct evbuffer *out = bufferevent_get_output(c->bev);
    bool close_after = force_close || !q->keep_alive ||
                       atomic_load_explicit(&srv->draining, memory_order_relaxed) ||
                       (c->read_eof && evbuffer_get_length(bufferevent_get_input(c->bev)) == 0);

    if (q->rid[0] == '\0')
        snprintf(q->rid, sizeof(q->rid), "%016llx", (unsigned long long)rng_next(t));
    if (r->store_id && !q->store_id)
        q->store_id = r->store_id;
    if (hook && srv->cfg.on_reply)
        srv->cfg.on_reply(q, r, srv->cfg.ud);

    put_status_line(out, r, q->rid, close_after);
    evbuffer_add(out, security_headers, sizeof(security_headers) - 1);
    if (!has_header_line(r->headers, "Content-Security-Policy"))
        evbuffer_add(out, default_csp, sizeof(default_csp) - 1);
    /* Only over TLS: HSTS on plain HTTP is ignored by browsers, and would pin
     * a host that may not serve HTTPS. */
    if (srv->tls)
        evbuffer_add(out, hsts_header, sizeof(hsts_header) - 1);
    if (r->headers)
        evbuffer_add(out, r->headers, strlen(r->headers));
    if (q->xhdr_len)
        evbuffer_add(out, q->xhdr, q->xhdr_len);
    /* An answer to a request that carried credentials is someone's own data: no
     * shared or browser cache keeps it, unless the route chose its policy. */
    if (hook && net_req_header(q, "Authorization") != NULL &&
        !has_header_line(r->headers, "Cache-Control"))
        evbuffer_add(out, "Cache-Control: no-store\r\n", 25);
    evbuffer_add(out, "\r\n", 2);
    if (r->len && strcmp(q->method, "HEAD") != 0) {
        if (r->body_release) {
            /* A cached page: libevent sends it from where it is and releases it
             * once written; the reply no longer owns a release to call. */
            evbuffer_add_reference(out, r->body, r->len, r->body_release, r->body_ud);
            r->body_release = NULL;
            r->body = NULL;
        } else {
            evbuffer_add(out, r->body, r->len);
        }
    }

    uint64_t us = shopd_now_us() - q->start_us;
    record_metrics(t, q->label, r->status, us);
    if (srv->cfg.access_log)
        log_info("access method=%s path=\"%.*s\" status=%d us=%llu store=%llu rid=%s", q->method,
                 (int)(q->path_len > 512 ? 512 : q->path_len), q->url ? q->url : "", r->status,
                 (unsigned long long)us, (unsigned long long)q->store_id, q->rid);
    net_reply_free(r);

    if (c->in_flight) {
        c->in_flight = false;
        atomic_fetch_sub_explicit(&srv->inflight, 1, memory_order_relaxed);
    }
    t->slots[c->slot].gen++;
    if (c->timer)
        evtimer_del(c->timer);

    if (close_after) {
        c->closing = true;
        /* The write callback frees the connection once the output is flushed. */
        bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
        return;
    }
    net_request_reset(q);
}

/* Answers a framing error (431, 413, 400) and closes after a short linger, so
 * the client reads the answer instead of a reset. */
static void
conn_fail(net_conn_t *c, int status, const char *code, const char *message)
{
    net_reply_t *r = net_reply_error(status, code, message);
    if (c->fr.req.start_us == 0)
        c->fr.req.start_us = shopd_now_us();
    c->lingering = true;
    conn_send(c, r, true, false);
}

static void
dispatch(net_conn_t *c)
{
    net_thread_t *t = c->t;
    net_server_t *srv = t->srv;
    net_request_t *q = &c->fr.req;

    const char *rid = net_req_header(q, "X-Request-Id");
    if (rid && valid_request_id(rid))
        snprintf(q->rid, sizeof(q->rid), "%s", rid);
    else
        snprintf(q->rid, sizeof(q->rid), "%016llx", (unsigned long long)rng_next(t));

    c->in_flight = true;
    atomic_fetch_add_explicit(&srv->inflight, 1, memory_order_relaxed);
    uint64_t t0 = shopd_now_us();
    srv->cfg.on_request(q, srv->cfg.ud);
    fair_charge(t, c->flow, t0);
}

/* ------------------------------------------------------------ I/O callbacks */

/* Starts the whole-request timer of a request whose first byte just arrived:
 * the read timeout alone restarts with every byte, so a client trickling one
 * byte a second (slowloris) would hold the connection forever. */
static void
request_begun(net_conn_t *c)
{
    if (c->timer == NULL)
        c->timer = evtimer_new(c->t->base, request_timeout_cb, c);
    struct timeval tv = {c->t->srv->cfg.idle_timeout_s, 0};
    evtimer_add(c->timer, &tv);
}

/* End of input and nothing left to answer: close once the output is flushed. */
static void
conn_finish(net_conn_t *c)
{
    if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0) {
        conn_free(c);
        return;
    }
    c->closing = true;
    bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
}

/* Frames and dispatches the buffered requests one at a time until one is in
 * flight, the input runs out, the output is over its bound or the connection
 * closes. At end of input with nothing left to answer it closes the connection
 * (c may be freed on return: callers must not touch c afterwards). */
static void
conn_parse(net_conn_t *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    struct evbuffer *out = bufferevent_get_output(c->bev);
    size_t max_output = c->t->srv->cfg.max_output;
    net_framer_t *f = &c->fr;
    while (!c->in_flight && !c->closing) {
        if (evbuffer_get_length(out) > max_output) {
            /* Back-pressure: leave the next request unread until the client has
             * taken half of what is waiting (conn_write_cb). */
            c->out_blocked = true;
            bufferevent_setwatermark(c->bev, EV_WRITE, max_output / 2, 0);
            return;
        }
        if (evbuffer_get_length(in) == 0)
            break;
        struct evbuffer_iovec v;
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
            break;
        size_t n;
        net_frame_rc_t rc = net_framer_feed(f, v.iov_base, v.iov_len, &n);
        evbuffer_drain(in, n);
        if (f->began) {
            f->began = false;
            request_begun(c);
        }
        if (f->expect_continue) {
            f->expect_continue = false;
            evbuffer_add(out, "HTTP/1.1 100 Continue\r\n\r\n", 25);
        }
        if (rc == NET_FRAME_ERROR) {
            conn_fail(c, f->status, f->code, f->message);
            return;
        }
        if (rc == NET_FRAME_REQUEST) {
            dispatch(c);
            continue;
        }
        if (n < v.iov_len)
            break; /* should not happen without an error */
    }
    /* A partial request at end of input is dropped with the connection. */
    if (c->read_eof && !c->in_flight && !c->closing)
        conn_finish(c);
}

static void
conn_read_cb(struct bufferevent *bev, void *arg)
{
    net_conn_t *c = arg;
    if (c->lingering) {
        evbuffer_drain(bufferevent_get_input(bev), evbuffer_get_length(bufferevent_get_input(bev)));
        return;
    }
    conn_parse(c);
}

static void
conn_write_cb(struct bufferevent *bev, void *arg)
{
    net_conn_t *c = arg;
    if (c->lane_to >= 0 && conn_movable(c)) {
        conn_move(c); /* the answer is out and no request began: c goes */
        return;
    }
    if (c->out_blocked) {
        /* Drained to the low watermark set in conn_parse: resume. */
        c->out_blocked = false;
        bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
        conn_parse(c);
        return;
    }
    if (!c->closing || evbuffer_get_length(bufferevent_get_output(bev)) > 0)
        return;
    if (c->lingering) {
        /* Half-close and keep reading (discarding) briefly, so unread request bytes
         * do not turn our answer into a connection reset on the client. */
        shutdown(bufferevent_getfd(bev), SHUT_WR);
        struct evbuffer *in = bufferevent_get_input(bev);
        evbuffer_drain(in, evbuffer_get_length(in)); /* may have hit the read watermark */
        struct timeval tv = {NET_LINGER_S, 0};
        bufferevent_set_timeouts(bev, &tv, NULL);
        bufferevent_enable(bev, EV_READ);
        c->closing = false; /* now waiting for EOF or timeout */
        c->in_flight = false;
        return;
    }
    conn_free(c);
}

static void
conn_event_cb(struct bufferevent *bev, short what, void *arg)
{
    net_conn_t *c = arg;
    if (what & BEV_EVENT_CONNECTED)
        return; /* a TLS handshake completed: requests follow */
    if ((what & BEV_EVENT_TIMEOUT) && (what & BEV_EVENT_READING) &&
        (c->in_flight || c->out_blocked) && !c->lingering) {
        /* Idle timer fired while the application works on a request, or while
         * answers wait for the client to read them (the write timeout watches
         * that client): keep waiting. */
        bufferevent_enable(bev, EV_READ);
        return;
    }
    if ((what & BEV_EVENT_EOF) && !(what & BEV_EVENT_ERROR)) {
        /* The client shut its sending side (libevent has stopped reading). */
        c->read_eof = true;
        if (c->lingering) {
            /* After an error answer: nothing more to discard. Free now, or once
             * the answer is flushed (conn_write_cb, without lingering). */
            if (!c->closing) {
                conn_free(c);
                return;
            }
            c->lingering = false;
            return;
        }
        if (c->closing)
            return;    /* the last answer is being flushed */
        conn_parse(c); /* answers what was read, then closes */
        return;
    }
    conn_free(c);
}

static void
request_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    net_conn_t *c = arg;
    if (!c->in_flight) {
        /* Still receiving the request (see on_message_begin). */
        if (!c->closing && !c->lingering)
            conn_fail(c, 408, "request_timeout", "the request did not arrive in time");
        return;
    }
    conn_send(c, net_reply_error(504, "request_timeout", "the request took too long"), false, true);
    if (!c->closing)
        conn_parse(c);
}

/* c, whose bufferevent is made, starts to be served by t. */
static void
conn_attach(net_thread_t *t, net_conn_t *c)
{
    net_server_t *srv = t->srv;
    c->t = t;
    c->slot = slot_alloc(t, c);
    stat_add(&t->conns_open, 1);
    struct timeval idle = {srv->cfg.idle_timeout_s, 0};
    bufferevent_set_timeouts(c->bev, &idle, &idle);
    /* Bound what one connection may buffer while its request is being handled. */
    bufferevent_setwatermark(c->bev, EV_READ, 0, srv->cfg.max_header + srv->cfg.max_body + 4096);
    bufferevent_setcb(c->bev, conn_read_cb, conn_write_cb, conn_event_cb, c);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
}

/* True if c may leave its thread now: between two requests, nothing buffered
 * either way, no timer of a half-received request running. */
static bool
conn_movable(net_conn_t *c)
{
    return c->lane_to >= 0 && c->lane_to != c->t->idx && !c->in_flight && !c->closing &&
           !c->lingering && !c->read_eof && !c->out_blocked &&
           evbuffer_get_length(bufferevent_get_output(c->bev)) == 0 &&
           evbuffer_get_length(bufferevent_get_input(c->bev)) == 0 &&
           !(c->timer && evtimer_pending(c->timer, NULL));
}

/* Hands c's socket to the thread of c->lane_to (lane_pick), which adopts it in
 * its wake_cb; the bufferevent and timer of this thread's base go. The socket
 * is registered with neither loop meanwhile: the new one's poll reports bytes
 * that arrived in between. */
static void
conn_move(net_conn_t *c)
{
    net_thread_t *from = c->t, *to = &from->srv->threads[c->lane_to];
    evutil_socket_t fd = bufferevent_getfd(c->bev);
    /* Without a socket, freeing the bufferevent (CLOSE_ON_FREE) leaves it open. */
    if (fd < 0 || bufferevent_setfd(c->bev, -1) != 0) {
        c->lane_to = -1;
        return;
    }
    bufferevent_free(c->bev);
    c->bev = NULL;
    if (c->timer) {
        event_free(c->timer);
        c->timer = NULL;
    }
    slot_release(from, c->slot);
    stat_add(&from->conns_open, (uint64_t)-1);
    stat_add(&from->lane_moves, 1);
    c->t = to;
    c->lane_to = -1;
    c->pri = PRI_NORMAL;
    c->moved_us = shopd_now_us();
    reply_node_t *n = shopd_calloc(1, sizeof(*n));
    n->adopt = c;
    n->fd = fd;
    queue_push(to, n);
}

/* The end of a move: c (c->t == t) is served here from now on, unless the
 * server drains (it was idle: it just closes). */
static void
conn_adopt(net_thread_t *t, net_conn_t *c, evutil_socket_t fd)
{
    net_server_t *srv = t->srv;
    c->bev = bufferevent_socket_new(t->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (c->bev == NULL || atomic_load_explicit(&srv->draining, memory_order_relaxed)) {
        if (c->bev == NULL)
            evutil_closesocket(fd);
        else
            bufferevent_free(c->bev);
        net_framer_free(&c->fr);
        shopd_free(c);
        atomic_fetch_sub_explicit(&srv->conns, 1, memory_order_relaxed);
        return;
    }
    conn_attach(t, c);
}

static void
accept_cb(struct evconnlistener *lst, evutil_socket_t fd, struct sockaddr *sa, int salen, void *arg)
{
    net_thread_t *t = arg;
    net_server_t *srv = t->srv;
    int prev = atomic_fetch_add_explicit(&srv->conns, 1, memory_order_relaxed);
    if (prev >= srv->cfg.max_conns) {
        atomic_fetch_sub_explicit(&srv->conns, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&srv->rejected_conns, 1, memory_order_relaxed);
        if (srv->tls) {
            /* A plain-text answer means nothing to a TLS client: just close. */
            evutil_closesocket(fd);
            return;
        }
        static const char busy[] =
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
            "Retry-After: 1\r\nConnection: close\r\nContent-Length: 81\r\n\r\n"
            "{\"error\":{\"code\":\"too_many_connections\",\"message\":\"try "
            "again\",\"details\":[]}}";
        ssize_t w = send(fd, busy, sizeof(busy) - 1, MSG_NOSIGNAL);
        (void)w;
        evutil_closesocket(fd);
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    net_conn_t *c = shopd_calloc(1, sizeof(*c));
    c->t = t;
    c->pri = PRI_NORMAL;
    c->lane_to = -1;
    c->fr.req.conn = c;
    if (sa && sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((struct sockaddr_in *)sa)->sin_addr, c->peer, sizeof(c->peer));
    else if (sa && sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)sa)->sin6_addr, c->peer, sizeof(c->peer));
    if (srv->tls) {
        pthread_mutex_lock(&srv->tls_lock);
        SSL *ssl = SSL_new(srv->tls_ctx);
        pthread_mutex_unlock(&srv->tls_lock);
        if (ssl == NULL) {
            evutil_closesocket(fd);
            shopd_free(c);
            atomic_fetch_sub_explicit(&srv->conns, 1, memory_order_relaxed);
            return;
        }
        /* CLOSE_ON_FREE: freeing the bufferevent frees the SSL and closes fd. */
        c->bev = bufferevent_openssl_socket_new(t->base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                                BEV_OPT_CLOSE_ON_FREE);
        /* A client that closes without close_notify (most do) is an end of input,
         * not an error. */
        bufferevent_openssl_set_allow_dirty_shutdown(c->bev, 1);
    } else {
        c->bev = bufferevent_socket_new(t->base, fd, BEV_OPT_CLOSE_ON_FREE);
    }
    net_framer_init(&c->fr, srv->cfg.max_header, srv->cfg.max_body);
    c->fr.body_cap = srv->cfg.body_cap;
    c->fr.body_cap_ud = srv->cfg.ud;
    conn_attach(t, c);
}

/* ------------------------------------------------------------ reply queue */

static void
drain_thread(net_thread_t *t)
{
    /* Close (not just disable) the listener: new connections are refused at once
     * instead of waiting in a backlog nobody will accept from. */
    if (t->lst) {
        evconnlistener_free(t->lst);
        t->lst = NULL;
    }
    for (size_t i = 0; i < t->nslots; i++) {
        net_conn_t *c = t->slots[i].conn;
        if (c && !c->in_flight && !c->closing && !c->lingering &&
            evbuffer_get_length(bufferevent_get_output(c->bev)) == 0 &&
            evbuffer_get_length(bufferevent_get_input(c->bev)) == 0)
            conn_free(c);
    }
}

static void
wake_cb(evutil_socket_t fd, short what, void *arg)
{
    net_thread_t *t = arg;
    pthread_mutex_lock(&t->qlock);
    reply_node_t *list = t->qhead;
    t->qhead = t->qtail = NULL;
    bool stop = t->stop_req, drain = t->drain_req;
    t->drain_req = false;
    pthread_mutex_unlock(&t->qlock);

    while (list) {
        reply_node_t *n = list;
        list = n->next;
        if (n->adopt) {
            conn_adopt(t, n->adopt, n->fd);
            shopd_free(n);
            continue;
        }
        if ((n->token & NET_TOKEN_EXT) && t->ext.on_reply) {
            t->ext.on_reply(t->ext.ud, n->token, n->reply);
            shopd_free(n);
            continue;
        }
        uint32_t s = (uint32_t)(n->token >> 32), gen = (uint32_t)n->token;
        net_conn_t *c = s < t->nslots && t->slots[s].gen == gen ? t->slots[s].conn : NULL;
        if (c && c->in_flight) {
            uint64_t t0 = shopd_now_us();
            conn_send(c, n->reply, false, true);
            fair_charge(t, c->flow, t0);
            if (!c->closing)
                conn_parse(c);
        } else {
            net_reply_free(n->reply);
        }
        shopd_free(n);
    }
    if (drain) {
        drain_thread(t);
        if (t->ext.on_drain)
            t->ext.on_drain(t->ext.ud);
    }
    if (stop)
        event_base_loopbreak(t->base);
}

static void
queue_push(net_thread_t *t, reply_node_t *n)
{
    n->next = NULL;
    pthread_mutex_lock(&t->qlock);
    bool was_empty = t->qhead == NULL;
    if (t->qtail)
        t->qtail->next = n;
    else
        t->qhead = n;
    t->qtail = n;
    pthread_mutex_unlock(&t->qlock);
    /* Only the poster that made the list non-empty needs to wake the loop; the
     * callback takes the whole list. */
    if (was_empty)
        event_active(t->wake, EV_READ, 0);
}

void
net_reply_post(void *reply_to, uint64_t token, net_reply_t *reply)
{
    reply_node_t *n = shopd_calloc(1, sizeof(*n));
    n->token = token;
    n->reply = reply;
    queue_push(reply_to, n);
}

/* ------------------------------------------------------------ request API */

const char *
net_req_id(const net_request_t *req)
{
    return req->rid;
}

const char *
net_req_remote(const net_request_t *req)
{
    return req->conn->peer;
}

void
net_req_set_label(net_request_t *req, int label)
{
    req->label = label;
}

void
net_req_set_store(net_request_t *req, uint64_t store_id)
{
    req->store_id = store_id;
    if (store_id != 0 && req->conn != NULL && req->conn->bev != NULL)
        fair_place(req->conn, store_id);
}

bool
net_req_add_header(net_request_t *req, const char *name, const char *value)
{
    size_t room = sizeof(req->xhdr) - req->xhdr_len;
    int n = snprintf(req->xhdr + req->xhdr_len, room, "%s: %s\r\n", name, value);
    if (n < 0 || (size_t)n >= room) {
        req->xhdr[req->xhdr_len] = '\0';
        return false;
    }
    req->xhdr_len += (size_t)n;
    return true;
}

bool
net_req_add_header_lines(net_request_t *req, const char *lines, size_t len)
{
    if (len >= sizeof(req->xhdr) - req->xhdr_len)
        return false;
    memcpy(req->xhdr + req->xhdr_len, lines, len);
    req->xhdr_len += len;
    req->xhdr[req->xhdr_len] = '\0';
    return true;
}

void
net_req_set_tag(net_request_t *req, unsigned tag)
{
    req->tag = tag;
}

unsigned
net_req_tag(const net_request_t *req)
{
    return req->tag;
}

int
net_req_label(const net_request_t *req)
{
    return req->label;
}

uint64_t
net_req_store(const net_request_t *req)
{
    return req->store_id;
}

void
net_respond(net_request_t *req, net_reply_t *reply)
{
    net_conn_t *c = req->conn;
    conn_send(c, reply, false, true);
    /* The caller (dispatch, from conn_parse) resumes parsing. */
}

void
net_req_defer(net_request_t *req, void **reply_to, uint64_t *token)
{
    net_conn_t *c = req->conn;
    net_thread_t *t = c->t;
    *reply_to = t;
    *token = ((uint64_t)c->slot << 32) | t->slots[c->slot].gen;
    if (c->timer == NULL)
        c->timer = evtimer_new(t->base, request_timeout_cb, c);
    int ms = t->srv->cfg.request_timeout_ms;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(c->timer, &tv);
}

/* ------------------------------------------------------------ extensions */

int
net_server_threads(const net_server_t *srv)
{
    return srv->nthreads;
}

struct event_base *
net_server_base(net_server_t *srv, int i)
{
    return srv->threads[i].base;
}

void *
net_server_reply_to(net_server_t *srv, int i)
{
    return &srv->threads[i];
}

void
net_server_set_ext(net_server_t *srv, int i, const net_ext_t *ext)
{
    srv->threads[i].ext = *ext;
}

/* ------------------------------------------------------------ server */

static void *
thread_main(void *arg)
{
    net_thread_t *t = arg;
    event_base_dispatch(t->base);
    return NULL;
}

/* ALPN: HTTP/1.1 is all this server speaks; a client offering only h2 is refused. */
static int
alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
            unsigned int inlen, void *arg)
{
    static const unsigned char h11[] = "\x08http/1.1";
    unsigned char *sel;
    if (SSL_select_next_proto(&sel, outlen, h11, sizeof(h11) - 1, in, inlen) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

/* A server context from the PEM files: TLS 1.2 and 1.3 only, forward-secret
 * AEAD suites for 1.2 (1.3's are all of that kind), no renegotiation, no
 * compression, the server's suite order. NULL with the reason in err. */
static SSL_CTX *
tls_ctx_new(const char *cert, const char *key, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL)
        goto fail;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE);
    if (SSL_CTX_set_cipher_list(ctx, "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!SHA1") != 1)
        goto fail;
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
        snprintf(err, errlen, "cannot load the TLS certificate %s: %s", cert,
                 ERR_reason_error_string(ERR_get_error()));
        goto out;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        snprintf(err, errlen,
                 "cannot load the TLS key %s (or it does not match the certificate): %s", key,
                 ERR_reason_error_string(ERR_get_error()));
        goto out;
    }
    SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
    ERR_clear_error();
    return ctx;
fail:
    snprintf(err, errlen, "cannot set up TLS: %s", ERR_reason_error_string(ERR_get_error()));
out:
    ERR_clear_error();
    SSL_CTX_free(ctx);
    return NULL;
}

int
net_server_reload_tls(net_server_t *srv, char *err, size_t errlen)
{
    if (!srv->tls)
        return 0;
    SSL_CTX *ctx = tls_ctx_new(srv->cfg.tls_cert, srv->cfg.tls_key, err, errlen);
    if (ctx == NULL)
        return -1;
    pthread_mutex_lock(&srv->tls_lock);
    SSL_CTX *old = srv->tls_ctx;
    srv->tls_ctx = ctx;
    pthread_mutex_unlock(&srv->tls_lock);
    SSL_CTX_free(old); /* drops our reference; open connections hold theirs */
    return 0;
}

net_server_t *
net_server_new(const net_config_t *cfg, char *err, size_t errlen)
{
    net_server_t *srv = shopd_calloc(1, sizeof(*srv));
    srv->cfg = *cfg;
    srv->nthreads = cfg->threads;
    srv->threads = shopd_calloc((size_t)cfg->threads, sizeof(net_thread_t));
    pthread_mutex_init(&srv->tls_lock, NULL);
    if (cfg->tls_cert && cfg->tls_cert[0]) {
        srv->tls_ctx = tls_ctx_new(cfg->tls_cert, cfg->tls_key, err, errlen);
        if (srv->tls_ctx == NULL)
            goto fail;
        srv->tls = true;
    }

    struct sockaddr_storage ss;
    int sslen = sizeof(ss);
    char addr[300];
    if (strchr(cfg->host, ':'))
        snprintf(addr, sizeof(addr), "[%s]:%d", cfg->host, cfg->port);
    else
        snprintf(addr, sizeof(addr), "%s:%d", cfg->host, cfg->port);
    if (evutil_parse_sockaddr_port(addr, (struct sockaddr *)&ss, &sslen) != 0) {
        snprintf(err, errlen, "cannot listen on %s: not an IP address", addr);
        goto fail;
    }
    for (int i = 0; i < cfg->threads; i++) {
        net_thread_t *t = &srv->threads[i];
        t->srv = srv;
        t->idx = i;
        pthread_mutex_init(&t->qlock, NULL);
        shopd_random(t->rng, sizeof(t->rng));
        t->rng[0] |= 1;
        t->counts = shopd_calloc((cfg->nlabels + 1) * NSTATUS, sizeof(_Atomic uint64_t));
        /* After FAIR_MAX_OVER callbacks of the low priority (connections of a
         * store over its share) the loop polls again, so a request of another
         * store that arrived meanwhile waits for a few of them, not for every
         * ready one (libevent otherwise runs a whole priority queue in a row). */
        struct event_config *ecfg = event_config_new();
        if (ecfg)
            event_config_set_max_dispatch_interval(ecfg, NULL, FAIR_MAX_OVER, PRI_OVER);
        t->base = ecfg ? event_base_new_with_config(ecfg) : event_base_new();
        if (ecfg)
            event_config_free(ecfg);
        if (t->base == NULL) {
            snprintf(err, errlen, "cannot create an event base");
            goto fail;
        }
        /* Before any event exists: new events take the middle one, PRI_NORMAL. */
        if (event_base_priority_init(t->base, NPRI) != 0) {
            snprintf(err, errlen, "cannot set event priorities");
            goto fail;
        }
        t->wake = event_new(t->base, -1, EV_PERSIST | EV_READ, wake_cb, t);
        event_priority_set(t->wake, PRI_CONTROL);
        event_add(t->wake, NULL);
        t->lst = evconnlistener_new_bind(t->base, accept_cb, t,
                                         LEV_OPT_REUSEABLE | LEV_OPT_REUSEABLE_PORT |
                                             LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC,
                                         1024, (struct sockaddr *)&ss, sslen);
        if (t->lst == NULL) {
            snprintf(err, errlen, "cannot listen on %s: %s", addr, strerror(errno));
            goto fail;
        }
    }
    return srv;
fail:
    net_server_free(srv);
    return NULL;
}

int
net_server_start(net_server_t *srv)
{
    for (int i = 0; i < srv->nthreads; i++)
        if (pthread_create(&srv->threads[i].tid, NULL, thread_main, &srv->threads[i]) != 0)
            return -1;
    return 0;
}

static void
post_control(net_thread_t *t, bool drain, bool stop)
{
    pthread_mutex_lock(&t->qlock);
    t->drain_req |= drain;
    t->stop_req |= stop;
    pthread_mutex_unlock(&t->qlock);
    event_active(t->wake, EV_READ, 0);
}

void
net_server_drain(net_server_t *srv)
{
    atomic_store_explicit(&srv->draining, true, memory_order_relaxed);
    for (int i = 0; i < srv->nthreads; i++)
        post_control(&srv->threads[i], true, false);
}

uint64_t
net_server_inflight(net_server_t *srv)
{
    return atomic_load_explicit(&srv->inflight, memory_order_relaxed);
}

void
net_server_stop(net_server_t *srv)
{
    for (int i = 0; i < srv->nthreads; i++)
        post_control(&srv->threads[i], false, true);
    for (int i = 0; i < srv->nthreads; i++)
        if (srv->threads[i].tid)
            pthread_join(srv->threads[i].tid, NULL);
    for (int i = 0; i < srv->nthreads; i++) {
        net_thread_t *t = &srv->threads[i];
        srv->threads[i].tid = 0;
        for (size_t s = 0; s < t->nslots; s++)
            if (t->slots[s].conn)
                conn_free(t->slots[s].conn);
    }
}

void
net_server_free(net_server_t *srv)
{
    if (srv == NULL)
        return;
    for (int i = 0; i < srv->nthreads; i++) {
        net_thread_t *t = &srv->threads[i];
        for (size_t s = 0; s < t->nslots; s++)
            if (t->slots[s].conn)
                conn_free(t->slots[s].conn);
        reply_node_t *n = t->qhead;
        while (n) {
            reply_node_t *next = n->next;
            if (n->adopt) {
                evutil_closesocket(n->fd);
                net_framer_free(&n->adopt->fr);
                shopd_free(n->adopt);
            }
            net_reply_free(n->reply);
            shopd_free(n);
            n = next;
        }
        if (t->lst)
            evconnlistener_free(t->lst);
        if (t->wake)
            event_free(t->wake);
        if (t->base)
            event_base_free(t->base);
        pthread_mutex_destroy(&t->qlock);
        shopd_free(t->slots);
        shopd_free(t->free_slots);
        shopd_free(t->counts);
    }
    shopd_free(srv->threads);
    SSL_CTX_free(srv->tls_ctx);
    pthread_mutex_destroy(&srv->tls_lock);
    shopd_free(srv);
}

/* ------------------------------------------------------------ metrics */

static void
mbuf_printf(char **buf, size_t *len, size_t *cap, const char *fmt, ...)
{
    va_list ap;
    for (;;) {
        va_start(ap, fmt);
        int n = vsnprintf(*buf + *len, *cap - *len, fmt, ap);
        va_end(ap);
        if (n >= 0 && (size_t)n < *cap - *len) {
            *len += (size_t)n;
            return;
        }
        *cap *= 2;
        *buf = shopd_realloc(*buf, *cap);
    }
}

char *
net_server_metrics(net_server_t *srv, size_t *lenp)
{
    size_t cap = 8192, len = 0;
    char *buf = shopd_malloc(cap);
    buf[0] = '\0';
    size_t nl = srv->cfg.nlabels;

    mbuf_printf(&buf, &len, &cap,
                "# HELP shopd_http_requests_total HTTP requests answered, by route and status.\n"
                "# TYPE shopd_http_requests_total counter\n");
    for (size_t l = 0; l <= nl; l++) {
        for (size_t s = 0; s < NSTATUS; s++) {
            uint64_t v = 0;
            for (int i = 0; i < srv->nthreads; i++)
                v += atomic_load_explicit(&srv->threads[i].counts[l * NSTATUS + s],
                                          memory_order_relaxed);
            if (v == 0)
                continue;
            const char *route = l < nl ? srv->cfg.labels[l] : "unmatched";
            if (metric_statuses[s])
                mbuf_printf(&buf, &len, &cap,
                            "shopd_http_requests_total{route=\"%s\",status=\"%d\"} %llu\n", route,
                            metric_statuses[s], (unsigned long long)v);
            else
                mbuf_printf(&buf, &len, &cap,
                            "shopd_http_requests_total{route=\"%s\",status=\"other\"} %llu\n",
                            route, (unsigned long long)v);
        }
    }
    mbuf_printf(&buf, &len, &cap,
                "# HELP shopd_http_request_duration_seconds Time from first byte to answer.\n"
                "# TYPE shopd_http_request_duration_seconds histogram\n");
    uint64_t cum = 0, sum = 0;
    for (size_t b = 0; b < NBUCKETS; b++) {
        for (int i = 0; i < srv->nthreads; i++)
            cum += atomic_load_explicit(&srv->threads[i].hist[b], memory_order_relaxed);
        if (b < NBUCKETS - 1)
            mbuf_printf(&buf, &len, &cap,
                        "shopd_http_request_duration_seconds_bucket{le=\"%g\"} %llu\n",
                        (double)hist_bounds_us[b] / 1e6, (unsigned long long)cum);
        else
            mbuf_printf(&buf, &len, &cap,
                        "shopd_http_request_duration_seconds_bucket{le=\"+Inf\"} %llu\n",
                        (unsigned long long)cum);
    }
    for (int i = 0; i < srv->nthreads; i++)
        sum += atomic_load_explicit(&srv->threads[i].hist_sum_us, memory_order_relaxed);
    mbuf_printf(&buf, &len, &cap, "shopd_http_request_duration_seconds_sum %.6f\n",
                (double)sum / 1e6);
    mbuf_printf(&buf, &len, &cap, "shopd_http_request_duration_seconds_count %llu\n",
                (unsigned long long)cum);
    mbuf_printf(
        &buf, &len, &cap,
        "# HELP shopd_http_connections Open client connections.\n"
        "# TYPE shopd_http_connections gauge\nshopd_http_connections %d\n"
        "# HELP shopd_http_connections_rejected_total Connections refused at the cap.\n"
        "# TYPE shopd_http_connections_rejected_total "
        "counter\nshopd_http_connections_rejected_total %llu\n"
        "# HELP shopd_http_inflight Requests being handled.\n"
        "# TYPE shopd_http_inflight gauge\nshopd_http_inflight %llu\n",
        atomic_load_explicit(&srv->conns, memory_order_relaxed),
        (unsigned long long)atomic_load_explicit(&srv->rejected_conns, memory_order_relaxed),
        (unsigned long long)atomic_load_explicit(&srv->inflight, memory_order_relaxed));
    uint64_t demoted = 0;
    for (int i = 0; i < srv->nthreads; i++)
        demoted += atomic_load_explicit(&srv->threads[i].fair_demoted, memory_order_relaxed);
    uint64_t moves = 0;
    for (int i = 0; i < srv->nthreads; i++)
        moves += atomic_load_explicit(&srv->threads[i].lane_moves, memory_order_relaxed);
    mbuf_printf(&buf, &len, &cap,
                "# HELP shopd_http_lane_moves_total Connections moved between I/O threads: "
                "to the flood lane (thread 0) when their store took most of a busy thread's "
                "time, or off it.\n"
                "# TYPE shopd_http_lane_moves_total counter\n"
                "shopd_http_lane_moves_total %llu\n",
                (unsigned long long)moves);
    mbuf_printf(&buf, &len, &cap,
                "# HELP shopd_http_fair_demotions_total Times a connection's events went to the "
                "low priority because its store took over 3/4 of its I/O "
                "thread's time.\n"
                "# TYPE shopd_http_fair_demotions_total counter\n"
                "shopd_http_fair_demotions_total %llu\n",
                (unsigned long long)demoted);
    *lenp = len;
    return buf;
}
