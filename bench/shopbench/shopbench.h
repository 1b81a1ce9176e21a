/*
 * shopbench.h: what shopbench's files share: the options, the scenario
 * interface (a table of per-connection state machines), the load engine that
 * drives them over libevent bufferevents, and the report writers.
 *
 * Threads: main parses options and starts one engine run at a time; each
 * engine worker thread owns an event_base, its connections and its stats.
 * Scenario callbacks run on worker threads; the `shared` object a scenario
 * builds in setup is read-only afterwards (or uses atomics, and says so).
 */
#ifndef SHOPBENCH_H
#define SHOPBENCH_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

#include "hist.h"
#include "http.h"

#define SB_MAX_EXTRA_HEADERS 16

/** Where requests go, resolved once in main. */
typedef struct sb_target_s {
    struct sockaddr_storage addr;
    socklen_t addrlen;
    char url[600];       /**< as given, without a trailing slash */
    char host[300];      /**< Host header value ("127.0.0.1:8080") */
    char base_path[256]; /**< "" or "/prefix" (no trailing slash), prepended to paths */
    bool loopback;       /**< the server runs on this machine */
} sb_target_t;

/* What `tenants` asks each store for. */
typedef enum sb_tenants_mode_e {
    SB_TENANTS_AUTO,   /* browse when the catalogs are seeded, else store */
    SB_TENANTS_STORE,  /* GET /api/v1/store */
    SB_TENANTS_BROWSE, /* the catalog browse mix */
} sb_tenants_mode_t;

typedef struct sb_opts_s {
    sb_target_t target;
    const char *scenario; /**< name in the scenario table */
    int threads;
    int conns;
    double duration_s;
    double warmup_s;
    double rate;        /**< total requests per second; 0 = closed loop */
    double timeout_s;   /**< a request unanswered this long is a timeout error */
    const char *tenant; /**< X-Tenant-Id for `store` */
    int stores;         /**< K for `tenants` and `seed` */
    double zipf_s;      /**< Zipf exponent for `tenants` */
    sb_tenants_mode_t tenants_mode;
    long stock;            /**< starting stock of the hot variant for `hot-stock` */
    const char *token;     /**< platform token for `seed` */
    int verify;            /**< stores checked after seeding */
    int products;          /**< seed: active products per store (0: stores only) */
    int variants;          /**< seed: variants per seeded product */
    bool seed_per_request; /**< seed: one object per API request, not the bulk import */
    const char *json_path;
    const char *plot_prefix;
    const char *md_path;                       /**< append one Markdown table row here */
    const char *label;                         /**< name of this run in reports */
    const char *build_type;                    /**< of the server under test, for the report */
    long max_errors;                           /**< exit 1 when failures exceed this */
    const char *headers[SB_MAX_EXTRA_HEADERS]; /**< -H "Name: value", sent on every request */
    int nheaders;
    char **argv; /**< the command line, for the report */
    int argc;
} sb_opts_t;

/** One request a scenario wants sent. The engine adds the request line, Host,
 *  the -H headers and Content-Length. */
typedef struct sb_req_s {
    const char *method; /**< static string; "GET" when left NULL */
    char path[1024];    /**< starting with '/', base path is prepended */
    char headers[2048]; /**< extra header lines, each ending in "\r\n" */
    size_t headers_len;
    const char *body; /**< borrowed from the scenario's state; may be NULL */
    size_t body_len;
    bool keep_body; /**< the scenario reads the response body */
} sb_req_t;

/** Appends one header line ("Name: value", without CRLF) to req. Lines that do
 *  not fit are dropped (and the scenario is wrong: 2 KB is plenty). */
void sb_req_header(sb_req_t *req, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/** What a scenario learns about a finished request. */
typedef struct sb_resp_s {
    int status;        /**< 0: no response (socket error, timeout, parse error) */
    const char *error; /**< for status 0: what went wrong */
    uint64_t latency_us;
    sb_http_parser_t *http; /**< headers and kept body (status != 0) */
} sb_resp_t;

/** Per-connection view handed to scenario callbacks. */
typedef struct sb_ctx_s {
    const sb_opts_t *opts;
    void *shared;  /**< what the scenario's setup built */
    uint64_t *rng; /**< the worker's generator: use sb_rand / sb_rand01 */
    int worker;
    int conn; /**< global connection index, 0..conns-1 */
} sb_ctx_t;

typedef enum sb_next_e {
    SB_NEXT_SEND, /**< req is filled: send it */
    SB_NEXT_DONE, /**< this connection has nothing more to do (finite scenarios) */
} sb_next_t;

enum {
    SB_SCN_NEEDS_STORES = 1 << 0, /**< bench-000001..K must exist: checked before the run */
};

/** A scenario: a row of the table in scenarios.c. */
typedef struct sb_scenario_s {
    const char *name;
    const char *help;    /**< one line for --list */
    const char *missing; /**< non-NULL: cannot run yet; says which endpoint is missing */
    int flags;
    size_t state_size; /**< per-connection state, zeroed before first use */
    /** Once, on the main thread, before the run: validate options, build *shared.
     *  Returns 0, or -1 with a message in err. May be NULL. */
    int (*setup)(const sb_opts_t *o, void **shared, char *err, size_t errlen);
    /** Frees what setup built. May be NULL. */
    void (*teardown)(void *shared);
    /** Fills req with the connection's next request. Worker thread. */
    sb_next_t (*next)(sb_ctx_t *cx, void *state, sb_req_t *req);
    /** Sees every finished request (status 0 on failure) and says whether it
     *  succeeded. NULL: any 2xx succeeds. Worker thread. */
    bool (*on_response)(sb_ctx_t *cx, void *state, const sb_resp_t *resp);
    /** After the run, on the main thread: check the server's state (invariants) and
     *  print what was found. Returns 0, or -1 to fail the run (exit 1). May be NULL. */
    int (*verify)(const sb_opts_t *o, void *shared, double seconds, FILE *out);
} sb_scenario_t;

/** Finds a scenario by name; NULL if unknown. */
const sb_scenario_t *sb_scenario_find(const char *name);
/** Prints the table for --list. */
void sb_scenarios_print(FILE *out);

/* ---- engine ---- */

/** Socket-level failures, written once (memcached-style X-macro). */
#define SB_SOCK_ERRORS(X)                                                                          \
    X(connect, "could not connect")                                                                \
    X(read, "connection failed or closed before the response was complete")                        \
    X(write, "could not send")                                                                     \
    X(timeout, "no complete response within --timeout")                                            \
    X(parse, "malformed response")

/** The plain counters of sb_stats_t, for merging and reports. */
#define SB_COUNTERS(X)                                                                             \
    X(responses)                                                                                   \
    X(ok)                                                                                          \
    X(rejected) X(warm_failures) X(bytes_in) X(bytes_out) X(reconnects) X(unfinished) X(behind)

typedef struct sb_stats_s {
    sb_hist_t *hist;      /**< latency of measured responses, microseconds */
    uint64_t responses;   /**< measured responses (any status) */
    uint64_t ok;          /**< of which the scenario accepted */
    uint64_t rejected;    /**< of which it did not (non-2xx by default) */
    uint64_t status[600]; /**< measured responses by status code */
#define SB_X_FIELD(name, help) uint64_t err_##name;
    SB_SOCK_ERRORS(SB_X_FIELD)
#undef SB_X_FIELD
    uint64_t warm_failures; /**< failures of any kind during warm-up */
    uint64_t bytes_in;      /**< response bytes of measured responses */
    uint64_t bytes_out;     /**< request bytes of measured requests */
    uint64_t reconnects;    /**< connections re-opened (server closed, or after an error) */
    uint64_t unfinished;    /**< measured requests still in flight when the run stopped */
    uint64_t behind;        /**< open loop: scheduled in the window but never sent */
    size_t nsec;            /**< timeline length, seconds since the run started */
    uint64_t *sec_ok;       /**< successes completed in each second (warm-up included) */
    uint64_t *sec_err;      /**< failures in each second */
} sb_stats_t;

/** One engine run. */
typedef struct sb_run_s {
    const sb_opts_t *opts;
    const sb_scenario_t *scn;
    void *shared;
    int threads;
    int conns;
    uint64_t warmup_us;
    uint64_t duration_us; /**< 0: until every connection's scenario says DONE */
    double rate;          /**< 0: closed loop */
    uint64_t timeout_us;
} sb_run_t;

typedef struct sb_result_s {
    sb_stats_t total;  /**< merged over workers */
    double measured_s; /**< length of the measured window actually run */
    double wall_start; /**< epoch seconds when the run started */
    bool interrupted;  /**< stopped early by SIGINT/SIGTERM */
} sb_result_t;

/** Set by the signal handler; the workers notice it within 100 ms. */
extern atomic_bool sb_stop_requested;

/** Runs the load and fills res (free with sb_result_free). Returns 0, or -1 if
 *  the run could not start (message on stderr). */
int sb_run(const sb_run_t *run, sb_result_t *res);
void sb_result_free(sb_result_t *res);
/** Every failed request: rejected responses, socket errors, warm-up failures. */
uint64_t sb_failures(const sb_stats_t *s);

/** xorshift64* step; state must be non-zero. */
uint64_t sb_rand(uint64_t *state);
/** Uniform double in [0, 1). */
double sb_rand01(uint64_t *state);
/** Monotonic microseconds. */
uint64_t sb_now_us(void);

/* ---- seed (seed.c) ---- */

/** `shopbench seed`: creates bench-000001..K and verifies a sample. Returns the
 *  process exit code. */
int sb_seed(sb_opts_t *o);
/** Checks that bench-<first> and bench-<last> answer GET /api/v1/store. Returns
 *  0, or -1 after printing what is wrong. */
int sb_seed_check(const sb_opts_t *o, int k);
/** `seed --products N`: gives each of bench-000001..K a store admin, two
 *  categories and N active products bench-product-1..N with o->variants
 *  variants each. Stores that already have N products are skipped. Returns 0,
 *  or -1 after printing what failed. */
int sb_seed_catalog(const sb_opts_t *o);
/** Writes the slug of store i (1-based) into buf: "bench-000042". */
void sb_store_slug(char *buf, size_t len, int i);

/* ---- reports (report.c) ---- */

/** Human summary on out. */
void sb_report_text(FILE *out, const sb_opts_t *o, const sb_run_t *run, const sb_result_t *res);
/** Writes the JSON report to o->json_path. Returns 0 or -1 (message on stderr). */
int sb_report_json(const sb_opts_t *o, const sb_run_t *run, const sb_result_t *res);
/** Appends a Markdown table row to o->md_path. Returns 0 or -1. */
int sb_report_md(const sb_opts_t *o, const sb_run_t *run, const sb_result_t *res);
/** Writes o->plot_prefix-latency.png and -rate.png with gnuplot, or says why
 *  not. Returns 0 or -1. */
int sb_report_plot(const sb_opts_t *o, const sb_run_t *run, const sb_result_t *res);

/* ---- self-test (selftest.c) ---- */

/** `shopbench selftest`: parser and histogram checks. Returns the exit code. */
int sb_selftest(void);

#endif
