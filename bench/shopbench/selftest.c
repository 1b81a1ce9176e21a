/*
 * selftest.c: `shopbench selftest`, checks of the two pieces whose mistakes
 * would silently skew every figure: the response parser (each response fed
 * whole, split at every byte, and one byte at a time) and the histogram
 * (precision bound, percentiles, merge). Registered with CTest by
 * bench/CMakeLists.txt; prints one line per failure and a count at the end.
 */
#include "shopbench.h"

#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

static int failures;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            failures++;                                                                            \
            fprintf(stderr, "selftest: %s:%d: ", __FILE__, __LINE__);                              \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
        }                                                                                          \
    } while (0)

typedef struct resp_case_s {
    const char *name;
    const char *wire; /* bytes from the server */
    bool head;        /* the request was HEAD */
    int status;       /* 0: expect a parse error */
    const char *body; /* decoded body */
    bool keep_alive;
    bool needs_eof;       /* completes only when the server closes */
    const char *trailing; /* bytes that must be left in the buffer */
} resp_case_t;

static const resp_case_t cases[] = {
    {"content-length",
     "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello", false, 200,
     "hello", true, false, ""},
    {"chunked with ext and trailer",
     "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n"
     "0\r\nX-Trailer: 1\r\n\r\n",
     false, 200, "hello world", true, false, ""},
    {"chunked upper-case hex",
     "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nA\r\n0123456789\r\n0\r\n\r\n", false,
     200, "0123456789", true, false, ""},
    {"http/1.0 until close", "HTTP/1.0 200 OK\r\nServer: x\r\n\r\nbody until close", false, 200,
     "body until close", false, true, ""},
    {"interim 100 then 201",
     "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\n{}", false, 201,
     "{}", true, false, ""},
    {"204 ignores length", "HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n", false, 204, "",
     true, false, ""},
    {"connection close", "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
     false, 200, "ok", false, false, ""},
    {"1.0 keep-alive", "HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 2\r\n\r\nok",
     false, 200, "ok", true, false, ""},
    {"bare LF", "HTTP/1.1 404 Not Found\nContent-Length: 3\n\nnop", false, 404, "nop", true, false,
     ""},
    {"no reason phrase", "HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", false, 200, "", true, false,
     ""},
    {"HEAD has no body", "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", true, 200, "", true,
     false, ""},
    {"next response stays", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\naHTTP/1.1 200 OK\r\n",
     false, 200, "a", true, false, "HTTP/1.1 200 OK\r\n"},
    {"te overrides cl",
     "HTTP/1.1 200 OK\r\nContent-Length: 99\r\nTransfer-Encoding: "
     "chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n",
     false, 200, "x", false, false, ""},
    {"bad version", "HTTP/2 200 OK\r\n\r\n", false, 0, NULL, false, false, NULL},
    {"bad status", "HTTP/1.1 20x OK\r\n\r\n", false, 0, NULL, false, false, NULL},
    {"bad length", "HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n", false, 0, NULL, false, false,
     NULL},
    {"conflicting lengths", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
     false, 0, NULL, false, false, NULL},
    {"bad chunk size", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", false, 0,
     NULL, false, false, NULL},
    {"chunk without CRLF", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nxy\r\n",
     false, 0, NULL, false, false, NULL},
    {"header without colon", "HTTP/1.1 200 OK\r\nbroken\r\n\r\n", false, 0, NULL, false, false,
     NULL},
    {"folded header", "HTTP/1.1 200 OK\r\nA: b\r\n c\r\n\r\n", false, 0, NULL, false, false, NULL},
};

/* Feeds wire to a fresh parser in pieces of `step` bytes (0: all at once;
 * split > 0: two pieces cut there) and checks the outcome. */
static void
run_case(const resp_case_t *c, size_t step, size_t split)
{
    sb_http_parser_t *p = malloc(sizeof(*p));
    struct evbuffer *in = evbuffer_new();
    if (p == NULL || in == NULL || sb_http_init(p) < 0) {
        CHECK(0, "out of memory");
        free(p);
        if (in)
            evbuffer_free(in);
        return;
    }
    sb_http_begin(p, c->head, true);
    size_t len = strlen(c->wire), off = 0;
    sb_http_rc_t rc = SB_HTTP_MORE;
    while (rc == SB_HTTP_MORE && off < len) {
        size_t n = len - off;
        if (step > 0 && n > step)
            n = step;
        if (split > 0 && off < split && n > split - off)
            n = split - off;
        evbuffer_add(in, c->wire + off, n);
        off += n;
        rc = sb_http_parse(p, in);
    }
    if (rc == SB_HTTP_MORE && c->needs_eof && sb_http_eof(p))
        rc = SB_HTTP_DONE;
    if (c->status == 0) {
        CHECK(rc == SB_HTTP_ERROR, "%s (step %zu split %zu): want an error, got %d", c->name, step,
              split, rc);
    } else if (rc != SB_HTTP_DONE) {
        CHECK(0, "%s (step %zu split %zu): not complete (rc %d, %s)", c->name, step, split, rc,
              p->error ? p->error : "-");
    } else {
        /* Whatever was not fed yet belongs after this response. */
        if (off < len)
            evbuffer_add(in, c->wire + off, len - off);
        size_t blen;
        const char *body = sb_http_body(p, &blen);
        CHECK(p->status == c->status, "%s: status %d, want %d", c->name, p->status, c->status);
        CHECK(blen == strlen(c->body) && memcmp(body, c->body, blen) == 0,
              "%s (step %zu split %zu): body '%s', want '%s'", c->name, step, split, body, c->body);
        CHECK(p->keep_alive == c->keep_alive, "%s: keep_alive %d", c->name, p->keep_alive);
        size_t left = evbuffer_get_length(in);
        CHECK(left == strlen(c->trailing), "%s: %zu bytes left, want %zu", c->name, left,
              strlen(c->trailing));
    }
    sb_http_fini(p);
    free(p);
    evbuffer_free(in);
}

static void
test_parser(void)
{
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const resp_case_t *c = &cases[i];
        run_case(c, 0, 0);
        run_case(c, 1, 0);
        run_case(c, 7, 0);
        for (size_t s = 1; s < strlen(c->wire); s++)
            run_case(c, 0, s);
    }

    /* Header lookup, case-insensitive, value trimmed. */
    sb_http_parser_t *p = malloc(sizeof(*p));
    struct evbuffer *in = evbuffer_new();
    if (p == NULL || in == NULL || sb_http_init(p) < 0) {
        CHECK(0, "out of memory");
        free(p);
        if (in)
            evbuffer_free(in);
        return;
    }
    sb_http_begin(p, false, false);
    const char *w = "HTTP/1.1 200 OK\r\nContent-Type:  application/json \r\nX-A: 1\r\n"
                    "Content-Length: 0\r\n\r\n";
    evbuffer_add(in, w, strlen(w));
    CHECK(sb_http_parse(p, in) == SB_HTTP_DONE, "header case not complete");
    const char *ct = sb_http_header(p, "content-type");
    CHECK(ct && strcmp(ct, "application/json") == 0, "content-type '%s'", ct ? ct : "(null)");
    CHECK(sb_http_header(p, "x-b") == NULL, "x-b should be absent");

    /* A head larger than the limit is refused, not buffered forever. */
    sb_http_begin(p, false, false);
    evbuffer_add_printf(in, "HTTP/1.1 200 OK\r\n");
    for (int i = 0; i < 400; i++)
        evbuffer_add_printf(in, "X-Filler-%03d: %040d\r\n", i, i);
    CHECK(sb_http_parse(p, in) == SB_HTTP_ERROR, "oversized head accepted");

    /* A body is not kept unless asked for, but is still consumed. */
    evbuffer_drain(in, evbuffer_get_length(in));
    sb_http_begin(p, false, false);
    w = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc";
    evbuffer_add(in, w, strlen(w));
    CHECK(sb_http_parse(p, in) == SB_HTTP_DONE, "unkept body not complete");
    size_t blen;
    sb_http_body(p, &blen);
    CHECK(blen == 0 && p->body_len == 3 && evbuffer_get_length(in) == 0, "unkept body");
    sb_http_fini(p);
    free(p);
    evbuffer_free(in);
}

static void
test_hist(void)
{
    sb_hist_t *h = sb_hist_new(3600ULL * 1000000, 3);
    CHECK(h->sub_count == 2048, "sub_count %u", h->sub_count);

    /* Every value lands in a counter no wider than 1/1024 of it. */
    uint64_t rng = 12345;
    for (int i = 0; i < 200000; i++) {
        uint64_t v = sb_rand(&rng) % (3600ULL * 1000000);
        uint64_t lo = sb_hist_lowest_equiv(h, v), hi = sb_hist_highest_equiv(h, v);
        CHECK(lo <= v && v <= hi, "%llu not in [%llu, %llu]", (unsigned long long)v,
              (unsigned long long)lo, (unsigned long long)hi);
        if (v >= 2048)
            CHECK((double)(hi - lo + 1) / (double)v <= 1.0 / 1024, "range of %llu too wide",
                  (unsigned long long)v);
        else
            CHECK(lo == v && hi == v, "small value %llu not exact", (unsigned long long)v);
        if (failures > 10)
            break;
    }

    /* 1..100000 once each: percentiles within 0.1%. */
    for (uint64_t v = 1; v <= 100000; v++)
        sb_hist_record(h, v);
    double want[] = {50, 90, 99, 99.9};
    for (size_t i = 0; i < 4; i++) {
        double got = (double)sb_hist_percentile(h, want[i]);
        double exp = want[i] * 1000;
        CHECK(got >= exp * 0.999 && got <= exp * 1.001, "p%g = %.0f, want ~%.0f", want[i], got,
              exp);
    }
    CHECK(sb_hist_percentile(h, 100) == 100000, "max");
    CHECK(h->min == 1 && h->total == 100000, "min/total");
    double mean = sb_hist_mean(h);
    CHECK(mean > 50000.4 && mean < 50000.6, "mean %f", mean);

    /* Merging two halves equals recording everything in one. */
    sb_hist_t *a = sb_hist_new(3600ULL * 1000000, 3), *b = sb_hist_new(3600ULL * 1000000, 3);
    for (uint64_t v = 1; v <= 100000; v++)
        sb_hist_record(v % 2 ? a : b, v);
    CHECK(sb_hist_merge(a, b) == 0, "merge refused");
    for (size_t i = 0; i < 4; i++)
        CHECK(sb_hist_percentile(a, want[i]) == sb_hist_percentile(h, want[i]), "merged p%g",
              want[i]);
    CHECK(a->total == h->total && a->max == h->max && a->min == h->min, "merged totals");
    sb_hist_t *other = sb_hist_new(1000, 2);
    CHECK(sb_hist_merge(a, other) < 0, "merge of different geometry accepted");

    /* Small exact values and clamping. */
    sb_hist_reset(h);
    sb_hist_record(h, 1);
    sb_hist_record(h, 2);
    sb_hist_record(h, 3);
    CHECK(sb_hist_percentile(h, 50) == 2, "p50 of 1,2,3 = %llu",
          (unsigned long long)sb_hist_percentile(h, 50));
    sb_hist_record(h, 99999ULL * 1000000);
    CHECK(h->clamped == 1 && h->max == 99999ULL * 1000000, "clamp");
    sb_hist_free(h);
    sb_hist_free(a);
    sb_hist_free(b);
    sb_hist_free(other);
    sb_hist_free(NULL);
}

int
sb_selftest(void)
{
    test_parser();
    test_hist();
    if (failures) {
        fprintf(stderr, "selftest: %d failures\n", failures);
        return 1;
    }
    printf("selftest: ok (%zu parser cases at every split, histogram)\n",
           sizeof(cases) / sizeof(cases[0]));
    return 0;
}
