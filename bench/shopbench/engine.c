/*
 * engine.c: shopbench's load engine. N worker threads, each with its own
 * event_base, drive their share of the keep-alive connections through
 * bufferevents; one request is in flight per connection (no pipelining). A
 * connection is a small state machine (down -> connecting -> idle <-> busy,
 * or finished) around the scenario's next/on_response callbacks.
 *
 * Load models. Closed loop: a connection sends its next request as soon as the
 * previous one is answered, and latency runs from the actual send. Open loop
 * (--rate): connection i owns the send slots first_i + k * interval, where
 * interval = conns / rate and first_i staggers the connections evenly; a slot
 * is sent when it is due or, if the connection is still busy, as soon as it is
 * free, and latency always runs from the slot's scheduled time. A stalled
 * server therefore shows up as latency of every request that should have been
 * sent meanwhile (no coordinated omission), the way wrk2 measures.
 *
 * Accounting: a request belongs to the measured window when its scheduled (or,
 * closed loop, actual) send time lies in [warm-up end, end). Requests in flight
 * at the end are waited for, up to --timeout. Stats are per worker, merged by
 * the caller after join; nothing is shared between workers while they run
 * except the read-only run description and the stop flag.
 */
#include "shopbench.h"

#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

/* Relaxed everywhere: the flag carries no data with it; a worker that sees it
 * one tick late only runs 50 ms longer. */
atomic_bool sb_stop_requested;

#define TICK_US 50000        /* stop flag, deadline and timeout checks */
#define BACKOFF_MIN_US 10000 /* first retry after a failed connect */
#define BACKOFF_MAX_US 1000000
#define HIST_HIGHEST_US (3600ULL * 1000000) /* an hour; longer latencies are clamped */
#define WBUF_SIZE 16384                     /* request head; sized from sb_req_t + -H limit */

enum { C_DOWN, C_CONNECTING, C_IDLE, C_BUSY, C_FINISHED };

typedef struct sb_worker_s sb_worker_t;

typedef struct sb_conn_s {
    sb_worker_t *w;
    struct bufferevent *bev;
    struct event *timer; /* open-loop pacing, or reconnect back-off */
    int state;
    bool have_req;         /* req holds a request not yet answered */
    uint64_t sched_us;     /* latency origin of the current request */
    uint64_t sent_us;      /* when it was written (or connect began), for --timeout */
    uint64_t first_due_us; /* open loop: this connection's first slot */
    uint64_t slot;         /* open loop: next slot number */
    uint64_t backoff_us;
    uint64_t req_bytes;
    uint64_t resp_bytes;
    size_t in_seen; /* input bytes already added to resp_bytes */
    void *scn_state;
    sb_ctx_t cx;
    sb_req_t req;
    sb_http_parser_t http;
} sb_conn_t;

struct sb_worker_s {
    int idx;
    pthread_t th;
    const sb_run_t *run;
    struct event_base *base;
    struct event *tick;
    sb_conn_t **conns;
    int nconns;
    int busy;         /* connections in C_BUSY */
    int finished;     /* connections in C_FINISHED */
    bool stopping;    /* no new requests; waiting for in-flight ones */
    uint64_t stop_us; /* when stopping began */
    uint64_t t_start, t_measure, t_end;
    double interval_us; /* open loop: between slots of one connection */
    uint64_t rng;
    sb_stats_t stats;
    char *wbuf;
    int rc;
};

static void conn_connect(sb_conn_t *c);
static void conn_kick(sb_conn_t *c);

uint64_t
sb_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

uint64_t
sb_rand(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1DULL;
}

double
sb_rand01(uint64_t *s)
{
    return (double)(sb_rand(s) >> 11) * 0x1.0p-53;
}

void
sb_req_header(sb_req_t *req, const char *fmt, ...)
{
    size_t room = sizeof(req->headers) - req->headers_len;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(req->headers + req->headers_len, room, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n + 3 > room) {
        req->headers[req->headers_len] = '\0';
        return;
    }
    memcpy(req->headers + req->headers_len + n, "\r\n", 3);
    req->headers_len += (size_t)n + 2;
}

static void *
xcalloc(size_t n, size_t size)
{
    void *p = calloc(n, size);
    if (p == NULL) {
        fprintf(stderr, "shopbench: out of memory\n");
        abort();
    }
    return p;
}

/* ---- accounting ---- */

static bool
in_window(const sb_worker_t *w, uint64_t t)
{
    return t >= w->t_measure && t < w->t_end;
}

static void
timeline(sb_worker_t *w, uint64_t now, bool ok)
{
    if (w->stats.nsec == 0)
        return;
    size_t i = (size_t)((now - w->t_start) / 1000000u);
    if (i >= w->stats.nsec)
        i = w->stats.nsec - 1;
    if (ok)
        w->stats.sec_ok[i]++;
    else
        w->stats.sec_err[i]++;
}

enum {
#define SB_X_ENUM(name, help) E_##name,
    SB_SOCK_ERRORS(SB_X_ENUM)
#undef SB_X_ENUM
};

/* Counts a socket-level failure. With a request, it belongs where the request
 * was scheduled; without one (a failed connect), where it happened. */
static void
count_error(sb_conn_t *c, int kind, bool with_req)
{
    sb_worker_t *w = c->w;
    uint64_t now = sb_now_us();
    uint64_t t = with_req ? c->sched_us : now;
    timeline(w, now, false);
    if (t < w->t_measure) {
        w->stats.warm_failures++;
        return;
    }
    if (t >= w->t_end)
        return;
    switch (kind) {
#define SB_X_CASE(name, help)                                                                      \
    case E_##name:                                                                                 \
        w->stats.err_##name++;                                                                     \
        break;
        SB_SOCK_ERRORS(SB_X_CASE)
#undef SB_X_CASE
    }
}

static void
set_state(sb_conn_t *c, int st)
{
    if (c->state == C_BUSY)
        c->w->busy--;
    if (st == C_BUSY)
        c->w->busy++;
    if (st == C_FINISHED && c->state != C_FINISHED)
        c->w->finished++;
    c->state = st;
}

/* ---- connection life ---- */

static void
conn_drop(sb_conn_t *c)
{
    if (c->bev != NULL)
        bufferevent_free(c->bev);
    c->bev = NULL;
    c->in_seen = 0;
    if (c->state != C_FINISHED)
        set_state(c, C_DOWN);
}

static void
finish_conn(sb_conn_t *c)
{
    sb_worker_t *w = c->w;
    conn_drop(c);
    set_state(c, C_FINISHED);
    if (w->finished == w->nconns)
        event_base_loopbreak(w->base);
}

/* The in-flight request failed without a usable response. */
static void
request_failed(sb_conn_t *c, int kind, const char *why)
{
    count_error(c, kind, true);
    const sb_scenario_t *scn = c->w->run->scn;
    if (scn->on_response != NULL) {
        sb_resp_t r = {.status = 0, .error = why, .latency_us = sb_now_us() - c->sched_us};
        scn->on_response(&c->cx, c->scn_state, &r);
    }
    c->have_req = false;
    c->resp_bytes = 0;
}

/* Closes and, unless the run is ending, opens a fresh connection. */
static void
conn_reconnect(sb_conn_t *c)
{
    conn_drop(c);
    if (c->w->stopping)
        return;
    c->w->stats.reconnects++;
    conn_connect(c);
}

static void
connect_failed(sb_conn_t *c)
{
    sb_worker_t *w = c->w;
    count_error(c, E_connect, false);
    conn_drop(c);
    if (w->run->duration_us == 0) {
        /* Finite work (seed): the other connections take over what is left;
         * if none can connect, the run ends and the caller reports it. */
        finish_conn(c);
        return;
    }
    if (w->stopping)
        return;
    c->backoff_us = c->backoff_us ? c->backoff_us * 2 : BACKOFF_MIN_US;
    if (c->backoff_us > BACKOFF_MAX_US)
        c->backoff_us = BACKOFF_MAX_US;
    struct timeval tv = {(time_t)(c->backoff_us / 1000000u),
                         (suseconds_t)(c->backoff_us % 1000000u)};
    evtimer_add(c->timer, &tv);
}

static void
complete_response(sb_conn_t *c)
{
    sb_worker_t *w = c->w;
    uint64_t now = sb_now_us();
    int status = c->http.status;
    sb_resp_t r = {.status = status, .latency_us = now - c->sched_us, .http = &c->http};
    const sb_scenario_t *scn = w->run->scn;
    bool ok = scn->on_response ? scn->on_response(&c->cx, c->scn_state, &r)
                               : (status >= 200 && status < 300);
    timeline(w, now, ok);
    if (in_window(w, c->sched_us)) {
        sb_hist_record(w->stats.hist, r.latency_us);
        w->stats.responses++;
        w->stats.status[status]++;
        if (ok)
            w->stats.ok++;
        else
            w->stats.rejected++;
        w->stats.bytes_in += c->resp_bytes;
        w->stats.bytes_out += c->req_bytes;
    } else if (!ok && c->sched_us < w->t_measure) {
        w->stats.warm_failures++;
    }
    c->have_req = false;
    c->resp_bytes = 0;
    set_state(c, C_IDLE);
}

static void
read_cb(struct bufferevent *bev, void *arg)
{
    sb_conn_t *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    size_t len = evbuffer_get_length(in);
    c->resp_bytes += len - c->in_seen;
    if (c->state != C_BUSY) {
        /* Bytes nobody asked for: the connection is out of step. */
        count_error(c, E_parse, false);
        conn_reconnect(c);
        return;
    }
    sb_http_rc_t rc = sb_http_parse(&c->http, in);
    if (rc == SB_HTTP_MORE) {
        c->in_seen = evbuffer_get_length(in);
        return;
    }
    if (rc == SB_HTTP_ERROR) {
        request_failed(c, E_parse, c->http.error);
        conn_reconnect(c);
        return;
    }
    size_t left = evbuffer_get_length(in);
    c->resp_bytes -= left;
    bool keep = c->http.keep_alive;
    complete_response(c);
    if (!keep) {
        conn_reconnect(c);
    } else if (left > 0) {
        /* We never pipeline, so nothing may follow a response. */
        count_error(c, E_parse, false);
        conn_reconnect(c);
    } else {
        c->in_seen = 0;
        conn_kick(c);
    }
}

static void
event_cb(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    sb_conn_t *c = arg;
    if (what & BEV_EVENT_CONNECTED) {
        int one = 1;
        setsockopt(bufferevent_getfd(c->bev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        set_state(c, C_IDLE);
        c->backoff_us = 0;
        conn_kick(c);
        return;
    }
    if (c->state == C_CONNECTING) {
        connect_failed(c);
        return;
    }
    if (c->state == C_BUSY) {
        if ((what & BEV_EVENT_EOF) && sb_http_eof(&c->http)) {
            complete_response(c); /* body delimited by the close */
        } else if (what & BEV_EVENT_WRITING) {
            request_failed(c, E_write, "write failed");
        } else {
            request_failed(c, E_read,
                           (what & BEV_EVENT_EOF) ? "closed mid-response" : "read error");
        }
    }
    /* Idle: the server closed a keep-alive connection; just open another. */
    conn_reconnect(c);
}

static void
timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    sb_conn_t *c = arg;
    if (c->state == C_DOWN)
        conn_connect(c);
    else
        conn_kick(c);
}

static void
conn_connect(sb_conn_t *c)
{
    sb_worker_t *w = c->w;
    const sb_target_t *t = &w->run->opts->target;
    set_state(c, C_CONNECTING);
    c->in_seen = 0;
    c->sent_us = sb_now_us();
    c->bev = bufferevent_socket_new(w->base, -1, BEV_OPT_CLOSE_ON_FREE);
    if (c->bev == NULL) {
        connect_failed(c);
        return;
    }
    bufferevent_setcb(c->bev, read_cb, NULL, event_cb, c);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    if (bufferevent_socket_connect(c->bev, (const struct sockaddr *)&t->addr, (int)t->addrlen) < 0)
        connect_failed(c);
}

/* Writes c->req. The head goes through the worker's scratch buffer so the
 * bufferevent gets it in one piece. */
static void
send_request(sb_conn_t *c, uint64_t now)
{
    sb_worker_t *w = c->w;
    const sb_opts_t *o = w->run->opts;
    sb_req_t *r = &c->req;
    const char *method = r->method ? r->method : "GET";
    char *b = w->wbuf;
    size_t n = (size_t)snprintf(b, WBUF_SIZE, "%s %s%s HTTP/1.1\r\nHost: %s\r\n", method,
                                o->target.base_path, r->path, o->target.host);
    for (int i = 0; i < o->nheaders && n < WBUF_SIZE; i++)
        n += (size_t)snprintf(b + n, WBUF_SIZE - n, "%s\r\n", o->headers[i]);
    if (n + r->headers_len + 64 >= WBUF_SIZE) {
        /* Cannot happen with the limits main enforces; refuse rather than truncate. */
        request_failed(c, E_write, "request head too large");
        finish_conn(c);
        return;
    }
    memcpy(b + n, r->headers, r->headers_len);
    n += r->headers_len;
    bool has_body = r->body != NULL || strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0 ||
                    strcmp(method, "PATCH") == 0;
    if (has_body)
        n += (size_t)snprintf(b + n, WBUF_SIZE - n, "Content-Length: %zu\r\n", r->body_len);
    memcpy(b + n, "\r\n", 2);
    n += 2;
    const char *body = r->body;
    size_t body_len = r->body_len;
    if (body_len > 0 && n + body_len <= WBUF_SIZE) {
        memcpy(b + n, body, body_len);
        n += body_len;
        body_len = 0;
    }
    c->req_bytes = n + body_len;
    c->resp_bytes = 0;
    c->in_seen = 0;
    c->sent_us = now;
    sb_http_begin(&c->http, strcmp(method, "HEAD") == 0, r->keep_body);
    set_state(c, C_BUSY);

    /* Write straight to the socket while the bufferevent has nothing queued:
     * going through bufferevent_write would arm and disarm the write event
     * (two epoll_ctl calls) and send one loop iteration later. Only what the
     * socket does not take right away is queued. */
    size_t done = 0;
    if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0) {
        ssize_t wr = send(bufferevent_getfd(c->bev), b, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (wr < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            request_failed(c, E_write, "write failed");
            conn_reconnect(c);
            return;
        }
        done = wr > 0 ? (size_t)wr : 0;
    }
    if (done < n)
        bufferevent_write(c->bev, b + done, n - done);
    if (body_len > 0)
        bufferevent_write(c->bev, body, body_len);
}

/* An idle connection: send the next request if one is due. */
static void
conn_kick(sb_conn_t *c)
{
    sb_worker_t *w = c->w;
    if (c->state != C_IDLE || w->stopping)
        return;
    uint64_t now = sb_now_us();
    if (!c->have_req) {
        if (w->run->rate > 0) {
            uint64_t due = c->first_due_us + (uint64_t)((double)c->slot * w->interval_us);
            if (due >= w->t_end)
                return; /* this connection's slots are used up */
            if (now < due) {
                uint64_t wait = due - now;
                struct timeval tv = {(time_t)(wait / 1000000u), (suseconds_t)(wait % 1000000u)};
                evtimer_add(c->timer, &tv);
                return;
            }
            c->sched_us = due;
            c->slot++;
        } else if (now >= w->t_end) {
            return;
        }
        sb_req_t *r = &c->req;
        r->method = NULL;
        r->path[0] = '\0';
        r->headers[0] = '\0';
        r->headers_len = 0;
        r->body = NULL;
        r->body_len = 0;
        r->keep_body = false;
        if (w->run->scn->next(&c->cx, c->scn_state, r) == SB_NEXT_DONE) {
            finish_conn(c);
            return;
        }
        c->have_req = true;
    }
    if (w->run->rate <= 0)
        c->sched_us = now;
    send_request(c, now);
}

static void
begin_stop(sb_worker_t *w, uint64_t now)
{
    if (w->stopping)
        return;
    w->stopping = true;
    w->stop_us = now;
    for (int i = 0; i < w->nconns; i++) {
        sb_conn_t *c = w->conns[i];
        evtimer_del(c->timer);
        if (c->state != C_BUSY && c->state != C_FINISHED)
            conn_drop(c);
    }
}

static void
tick_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    sb_worker_t *w = arg;
    uint64_t now = sb_now_us();
    if (atomic_load_explicit(&sb_stop_requested, memory_order_relaxed)) {
        begin_stop(w, now);
        event_base_loopbreak(w->base);
        return;
    }
    if (w->run->duration_us > 0 && now >= w->t_end)
        begin_stop(w, now);
    uint64_t timeout = w->run->timeout_us;
    for (int i = 0; i < w->nconns; i++) {
        sb_conn_t *c = w->conns[i];
        if (c->state == C_BUSY && now - c->sent_us >= timeout) {
            request_failed(c, E_timeout, "timeout");
            conn_reconnect(c);
        } else if (c->state == C_CONNECTING && now - c->sent_us >= timeout) {
            /* A dropped SYN would otherwise wait for the kernel's minutes. */
            connect_failed(c);
        }
    }
    if (w->stopping && w->busy == 0)
        event_base_loopbreak(w->base);
}

/* ---- worker ---- */

static void
stats_init(sb_stats_t *s, size_t nsec)
{
    memset(s, 0, sizeof(*s));
    s->hist = sb_hist_new(HIST_HIGHEST_US, 3);
    s->nsec = nsec;
    if (nsec > 0) {
        s->sec_ok = xcalloc(nsec, sizeof(uint64_t));
        s->sec_err = xcalloc(nsec, sizeof(uint64_t));
    }
}

static void
stats_fini(sb_stats_t *s)
{
    sb_hist_free(s->hist);
    free(s->sec_ok);
    free(s->sec_err);
    memset(s, 0, sizeof(*s));
}

static void
stats_add(sb_stats_t *dst, const sb_stats_t *src)
{
    sb_hist_merge(dst->hist, src->hist);
#define SB_X_ADD(name) dst->name += src->name;
    SB_COUNTERS(SB_X_ADD)
#undef SB_X_ADD
#define SB_X_ADD_ERR(name, help) dst->err_##name += src->err_##name;
    SB_SOCK_ERRORS(SB_X_ADD_ERR)
#undef SB_X_ADD_ERR
    for (int i = 0; i < 600; i++)
        dst->status[i] += src->status[i];
    for (size_t i = 0; i < dst->nsec && i < src->nsec; i++) {
        dst->sec_ok[i] += src->sec_ok[i];
        dst->sec_err[i] += src->sec_err[i];
    }
}

uint64_t
sb_failures(const sb_stats_t *s)
{
    uint64_t n = s->rejected + s->warm_failures;
#define SB_X_SUM(name, help) n += s->err_##name;
    SB_SOCK_ERRORS(SB_X_SUM)
#undef SB_X_SUM
    return n;
}

/* What was left when the loop ended: requests still in flight, and open-loop
 * slots of the window that were never sent because the server lagged. */
static void
count_leftovers(sb_worker_t *w)
{
    uint64_t end = w->t_end;
    if (w->stopping && w->stop_us < end)
        end = w->stop_us;
    for (int i = 0; i < w->nconns; i++) {
        sb_conn_t *c = w->conns[i];
        if (c->state == C_BUSY && in_window(w, c->sched_us))
            w->stats.unfinished++;
        if (w->run->rate <= 0 || w->run->duration_us == 0)
            continue;
        if (c->have_req && c->state != C_BUSY && in_window(w, c->sched_us))
            w->stats.behind++;
        /* Slots k >= c->slot with due time in [t_measure, end). */
        double lo_k = ceil(((double)w->t_measure - (double)c->first_due_us) / w->interval_us);
        double hi_k = ceil(((double)end - (double)c->first_due_us) / w->interval_us);
        if (lo_k < (double)c->slot)
            lo_k = (double)c->slot;
        if (hi_k > lo_k)
            w->stats.behind += (uint64_t)(hi_k - lo_k);
    }
}

static void
conn_free(sb_conn_t *c)
{
    if (c == NULL)
        return;
    if (c->bev != NULL)
        bufferevent_free(c->bev);
    if (c->timer != NULL)
        event_free(c->timer);
    sb_http_fini(&c->http);
    free(c->scn_state);
    free(c);
}

static void *
worker_main(void *arg)
{
    sb_worker_t *w = arg;
    const sb_run_t *run = w->run;
    struct event_config *cfg = event_config_new();
    if (cfg == NULL)
        goto fail;
    /* Open loop measures from scheduled times, so late timers would show up as
     * latency: ask for timerfd precision instead of epoll's milliseconds. */
    if (run->rate > 0)
        event_config_set_flag(cfg, EVENT_BASE_FLAG_PRECISE_TIMER);
    w->base = event_base_new_with_config(cfg);
    event_config_free(cfg);
    if (w->base == NULL)
        goto fail;
    w->tick = event_new(w->base, -1, EV_PERSIST, tick_cb, w);
    if (w->tick == NULL)
        goto fail;
    struct timeval tick = {0, TICK_US};
    event_add(w->tick, &tick);

    for (int i = 0; i < w->nconns; i++) {
        sb_conn_t *c = w->conns[i];
        c->timer = evtimer_new(w->base, timer_cb, c);
        if (c->timer == NULL || sb_http_init(&c->http) < 0)
            goto fail;
        conn_connect(c);
    }
    /* Every connection may already have finished (nothing to do). */
    if (w->finished < w->nconns)
        event_base_dispatch(w->base);
    count_leftovers(w);
    return NULL;
fail:
    fprintf(stderr, "shopbench: worker %d could not set up its event loop\n", w->idx);
    w->rc = -1;
    return NULL;
}

int
sb_run(const sb_run_t *run, sb_result_t *res)
{
    int threads = run->threads < 1 ? 1 : run->threads;
    if (threads > run->conns)
        threads = run->conns;
    memset(res, 0, sizeof(*res));
    size_t nsec = 0;
    if (run->duration_us > 0)
        nsec = (size_t)((run->warmup_us + run->duration_us + 999999u) / 1000000u) + 1;

    struct timeval wall;
    gettimeofday(&wall, NULL);
    res->wall_start = (double)wall.tv_sec + (double)wall.tv_usec / 1e6;
    uint64_t t_start = sb_now_us();
    uint64_t t_measure = t_start + run->warmup_us;
    uint64_t t_end = run->duration_us ? t_measure + run->duration_us : UINT64_MAX;
    uint64_t seed = (uint64_t)wall.tv_usec * 0x9E3779B97F4A7C15ULL ^ (uint64_t)getpid();

    sb_worker_t *ws = xcalloc((size_t)threads, sizeof(*ws));
    for (int k = 0; k < threads; k++) {
        sb_worker_t *w = &ws[k];
        w->idx = k;
        w->run = run;
        w->t_start = t_start;
        w->t_measure = t_measure;
        w->t_end = t_end;
        w->rng = (seed + (uint64_t)k * 0x9E3779B97F4A7C15ULL) | 1;
        w->wbuf = xcalloc(1, WBUF_SIZE);
        w->interval_us = run->rate > 0 ? (double)run->conns * 1e6 / run->rate : 0;
        stats_init(&w->stats, nsec);
        w->nconns = run->conns / threads + (k < run->conns % threads ? 1 : 0);
        w->conns = xcalloc((size_t)w->nconns, sizeof(*w->conns));
        for (int j = 0; j < w->nconns; j++) {
            sb_conn_t *c = xcalloc(1, sizeof(*c));
            int global = k + j * threads;
            c->w = w;
            c->state = C_DOWN;
            c->first_due_us = run->rate > 0 ? t_start + (uint64_t)(global * 1e6 / run->rate) : 0;
            if (run->scn->state_size)
                c->scn_state = xcalloc(1, run->scn->state_size);
            c->cx = (sb_ctx_t){.opts = run->opts,
                               .shared = run->shared,
                               .rng = &w->rng,
                               .worker = k,
                               .conn = global};
            w->conns[j] = c;
        }
    }
    int started = 0, rc = 0;
    for (; started < threads; started++) {
        if (pthread_create(&ws[started].th, NULL, worker_main, &ws[started]) != 0) {
            fprintf(stderr, "shopbench: cannot start thread: %s\n", strerror(errno));
            atomic_store_explicit(&sb_stop_requested, true, memory_order_relaxed);
            rc = -1;
            break;
        }
    }
    for (int k = 0; k < started; k++)
        pthread_join(ws[k].th, NULL);

    uint64_t t_done = sb_now_us();
    res->interrupted = atomic_load_explicit(&sb_stop_requested, memory_order_relaxed);
    uint64_t end = t_done < t_end ? t_done : t_end;
    res->measured_s = end > t_measure ? (double)(end - t_measure) / 1e6 : 0;
    /* A run that lasted its whole window is reported as exactly that long; one whose
     * connections all finished early (finite scenarios like hot-stock) as measured. */
    if (run->duration_us > 0 && !res->interrupted && t_done >= t_end)
        res->measured_s = (double)run->duration_us / 1e6;
    stats_init(&res->total, nsec);
    for (int k = 0; k < threads; k++) {
        sb_worker_t *w = &ws[k];
        if (w->rc != 0)
            rc = -1;
        stats_add(&res->total, &w->stats);
        for (int j = 0; j < w->nconns; j++)
            conn_free(w->conns[j]);
        if (w->tick != NULL)
            event_free(w->tick);
        if (w->base != NULL)
            event_base_free(w->base);
        free(w->conns);
        free(w->wbuf);
        stats_fini(&w->stats);
    }
    free(ws);
    return rc;
}

void
sb_result_free(sb_result_t *res)
{
    if (res == NULL)
        return;
    stats_fini(&res->total);
}
