/*
 * report.c: what shopbench tells about a run: the human summary, the JSON
 * document with every figure and the machine it ran on, a Markdown table row
 * for results files, and gnuplot charts (latency by percentile; requests per
 * second over time). Runs on the main thread after the workers are joined.
 */
#include "shopbench.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <jansson.h>

#ifndef SHOPBENCH_SOURCE_DIR
#define SHOPBENCH_SOURCE_DIR "."
#endif

/* The percentiles every report shows, with their JSON keys. */
static const struct {
    double pct;
    const char *key;
    const char *label;
} pcts[] = {
    {50, "p50", "p50"}, {75, "p75", "p75"},       {90, "p90", "p90"},
    {99, "p99", "p99"}, {99.9, "p99_9", "p99.9"}, {99.99, "p99_99", "p99.99"},
};

static const char *
model_name(const sb_run_t *run)
{
    return run->rate > 0 ? "open" : "closed";
}

static void
fmt_us(char *buf, size_t len, double us)
{
    if (us < 1000)
        snprintf(buf, len, "%.0f us", us);
    else if (us < 1e6)
        snprintf(buf, len, "%.2f ms", us / 1e3);
    else
        snprintf(buf, len, "%.2f s", us / 1e6);
}

static void
fmt_bytes(char *buf, size_t len, double b)
{
    if (b < 1024)
        snprintf(buf, len, "%.0f B", b);
    else if (b < 1024 * 1024)
        snprintf(buf, len, "%.1f KiB", b / 1024);
    else if (b < 1024.0 * 1024 * 1024)
        snprintf(buf, len, "%.1f MiB", b / (1024 * 1024));
    else
        snprintf(buf, len, "%.2f GiB", b / (1024.0 * 1024 * 1024));
}

static double
req_rate(const sb_result_t *res)
{
    return res->measured_s > 0 ? (double)res->total.responses / res->measured_s : 0;
}

void
sb_report_text(FILE *out, const sb_opts_t *o, const sb_run_t *run, const sb_result_t *res)
{
    const sb_stats_t *s = &res->total;
    char a[32], b[32];
    fprintf(
        out,
        "shopbench %s on %s: %s loop, %d threads, %d connections, %.0f s after %.0f s warm-up\n",
        run->scn->name, o->target.url, model_name(run), run->threads, run->conns,
        (double)run->duration_us / 1e6, (double)run->warmup_us / 1e6);
    if (run->rate > 0)
        fprintf(out, "  target rate  %.0f req/s (one request every %.2f ms per connection)\n",
                run->rate, (double)run->conns * 1e3 / run->rate);
    fprintf(out, "  requests     %llu in %.2f s = %.1f req/s (%llu ok, %llu rejected)%s\n",
            (unsigned long long)s->responses, res->measured_s, req_rate(res),
            (unsigned long long)s->ok, (unsigned long long)s->rejected,
            res->interrupted ? "  [interrupted]" : "");
    fprintf(out, "  latency     ");
    for (size_t i = 0; i < sizeof(pcts) / sizeof(pcts[0]); i++) {
        if (pcts[i].pct == 75 || pcts[i].pct == 99.99)
            continue;
        fmt_us(a, sizeof(a), (double)sb_hist_percentile(s->hist, pcts[i].pct));
        fprintf(out, " %s %s ", pcts[i].label, a);
    }
    fmt_us(a, sizeof(a), (double)s->hist->max);
    fprintf(out, " max %s\n", s->responses ? a : "-");
    fmt_us(a, sizeof(a), sb_hist_mean(s->hist));
    fmt_us(b, sizeof(b), sb_hist_stddev(s->hist));
    fprintf(out, "               mean %s, stdev %s%s\n", a, b,
            run->rate > 0 ? ", measured from the scheduled send time" : "");
    fmt_bytes(a, sizeof(a), (double)s->bytes_in);
    fmt_bytes(b, sizeof(b), res->measured_s > 0 ? (double)s->bytes_in / res->measured_s : 0);
    fprintf(out, "  bytes        in %s (%s/s)", a, b);
    fmt_bytes(a, sizeof(a), (double)s->bytes_out);
    fprintf(out, ", out %s\n", a);
    fprintf(out, "  status      ");
    int shown = 0;
    for (int i = 0; i < 600; i++) {
        if (s->status[i] == 0)
            continue;
        fprintf(out, " %d: %llu", i, (unsigned long long)s->status[i]);
        shown++;
    }
    fprintf(out, "%s\n", shown ? "" : " none");
    fprintf(out, "  socket errs ");
#define SB_X_PRINT(name, help) fprintf(out, " " #name " %llu", (unsigned long long)s->err_##name);
    SB_SOCK_ERRORS(SB_X_PRINT)
#undef SB_X_PRINT
    fprintf(out, "\n  other        warm-up failures %llu, reconnects %llu",
            (unsigned long long)s->warm_failures, (unsigned long long)s->reconnects);
    if (s->unfinished)
        fprintf(out, ", unfinished %llu", (unsigned long long)s->unfinished);
    fprintf(out, "\n");
    if (s->behind)
        fprintf(out,
                "  behind       %llu requests scheduled in the window were never sent: the server "
                "(or this client: see its CPU) did not keep up with --rate %.0f\n",
                (unsigned long long)s->behind, run->rate);
    uint64_t failures = sb_failures(s);
    if (failures == 0 && s->responses > 0) {
        fprintf(out, "  result       OK, no failed requests\n");
    } else if (s->responses == 0) {
        fprintf(out, "  result       FAIL: no responses in the measured window (%llu failed)\n",
                (unsigned long long)failures);
    } else {
        fprintf(out, "  result       %s: %llu failed requests (--max-errors %ld)\n",
                (long)failures > o->max_errors ? "FAIL" : "OK", (unsigned long long)failures,
                o->max_errors);
    }
}

/* ---- the machine ---- */

/* First line of a command's output, trimmed; NULL if it failed or said nothing. */
static char *
command_line(const char *cmd)
{
    FILE *p = popen(cmd, "r");
    if (p == NULL)
        return NULL;
    char buf[256];
    char *line = fgets(buf, sizeof(buf), p);
    int st = pclose(p);
    if (line == NULL || st != 0)
        return NULL;
    buf[strcspn(buf, "\r\n")] = '\0';
    return buf[0] ? strdup(buf) : NULL;
}

/* Value of the first "key : value" line in a /proc file; NULL if absent. */
static char *
proc_value(const char *path, const char *key)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return NULL;
    char line[512];
    char *out = NULL;
    size_t klen = strlen(key);
    while (fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, key, klen) != 0)
            continue;
        char *v = strchr(line + klen, ':');
        if (v == NULL)
            continue;
        v++;
        while (isspace((unsigned char)*v))
            v++;
        v[strcspn(v, "\r\n")] = '\0';
        out = strdup(v);
        break;
    }
    fclose(f);
    return out;
}

static json_t *
machine_json(const sb_opts_t *o)
{
    json_t *m = json_object();
    char *cpu = proc_value("/proc/cpuinfo", "model name");
    json_object_set_new(m, "cpu", cpu ? json_string(cpu) : json_null());
    free(cpu);
    json_object_set_new(m, "cores", json_integer(sysconf(_SC_NPROCESSORS_ONLN)));
    char *mem = proc_value("/proc/meminfo", "MemTotal");
    json_object_set_new(m, "memory_mb",
                        mem ? json_integer(strtoll(mem, NULL, 10) / 1024) : json_null());
    free(mem);
    struct utsname u;
    if (uname(&u) == 0) {
        char k[600];
        snprintf(k, sizeof(k), "%s %s %s", u.sysname, u.release, u.machine);
        json_object_set_new(m, "kernel", json_string(k));
    }
    json_object_set_new(m, "libevent", json_string(event_get_version()));
    json_object_set_new(m, "server_on_same_host", json_boolean(o->target.loopback));
    json_object_set_new(m, "build_type", o->build_type ? json_string(o->build_type) : json_null());
    char *commit =
        command_line("git -C '" SHOPBENCH_SOURCE_DIR "' rev-parse --short HEAD 2>/dev/null");
    json_object_set_new(m, "git_commit", commit ? json_string(commit) : json_null());
    free(commit);
    if (commit != NULL) {
        char *dirty = command_line("git -C '" SHOPBENCH_SOURCE_DIR
                                   "' status --porcelain --untracked-files=no 2>/dev/null");
        json_object_set_new(m, "git_dirty", json_boolean(dirty != NULL));
        free(dirty);
    }
    return m;
}

static void
iso_date(char *buf, size_t len, double epoch)
{
    time_t t = (time_t)epoch;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void
spectrum_json(double pct, uint64_t value, void *arg)
{
    json_array_append_new(arg, json_pack("[f, I]", pct, (json_int_t)value));
}

int
sb_report_json(const sb_opts_t *o, const sb_run_t *run, const sb_result_t *res)
{
    const sb_stats_t *s = &res->total;
    char date[64];
    iso_date(date, sizeof(date), res->wall_start);
    json_t *root = json_object();
    json_object_set_new(root, "tool", json_string("shopbench"));
    json_object_set_new(root, "label", json_string(o->label ? o->label : run->scn->name));
    json_object_set_new(root, "scenario", json_string(run->scn->name));
    json_object_set_new(root, "url", json_string(o->target.url));
    json_object_set_new(root, "date", json_string(date));
    json_object_set_new(root, "machine", machine_json(o));

    json_t *cfg = json_object();
    json_object_set_new(cfg, "model", json_string(model_name(run)));
    json_object_set_new(cfg, "threads", json_integer(run->threads));
    json_object_set_new(cfg, "connections", json_integer(run->conns));
    json_object_set_new(cfg, "duration_s", json_real((double)run->duration_us / 1e6));
    json_object_set_new(cfg, "warmup_s", json_real((double)run->warmup_us / 1e6));
    json_object_set_new(cfg, "rate", run->rate > 0 ? json_real(run->rate) : json_null());
    json_object_set_new(cfg, "timeout_s", json_real((double)run->timeout_us / 1e6));
    json_object_set_new(cfg, "tenant", json_string(o->tenant));
    json_object_set_new(cfg, "stores", json_integer(o->stores));
    json_object_set_new(cfg, "zipf_s", json_real(o->zipf_s));
    json_t *hdrs = json_array();
    for (int i = 0; i < o->nheaders; i++)
        json_array_append_new(hdrs, json_string(o->headers[i]));
    json_object_set_new(cfg, "headers", hdrs);
    json_t *argv = json_array();
    for (int i = 0; i < o->argc; i++)
        json_array_append_new(argv, json_string(o->argv[i]));
    json_object_set_new(cfg, "argv", argv);
    json_object_set_new(root, "config", cfg);

    json_t *r = json_object();
    json_object_set_new(r, "requests", json_integer((json_int_t)s->responses));
    json_object_set_new(r, "ok", json_integer((json_int_t)s->ok));
    json_object_set_new(r, "rejected", json_integer((json_int_t)s->rejected));
    json_object_set_new(r, "failures", json_integer((json_int_t)sb_failures(s)));
    json_object_set_new(r, "measured_s", json_real(res->measured_s));
    json_object_set_new(r, "requests_per_s", json_real(req_rate(res)));
    json_object_set_new(r, "interrupted", json_boolean(res->interrupted));
    json_t *lat = json_object();
    json_object_set_new(lat, "unit", json_string("us"));
    for (size_t i = 0; i < sizeof(pcts) / sizeof(pcts[0]); i++)
        json_object_set_new(lat, pcts[i].key,
                            json_integer((json_int_t)sb_hist_percentile(s->hist, pcts[i].pct)));
    json_object_set_new(lat, "min", json_integer(s->responses ? (json_int_t)s->hist->min : 0));
    json_object_set_new(lat, "max", json_integer((json_int_t)s->hist->max));
    json_object_set_new(lat, "mean", json_real(sb_hist_mean(s->hist)));
    json_object_set_new(lat, "stdev", json_real(sb_hist_stddev(s->hist)));
    json_t *spec = json_array();
    sb_hist_spectrum(s->hist, 5, spectrum_json, spec);
    json_object_set_new(lat, "spectrum", spec);
    json_object_set_new(r, "latency", lat);
    json_t *st = json_object();
    for (int i = 0; i < 600; i++) {
        if (s->status[i] == 0)
            continue;
        char k[16];
        snprintf(k, sizeof(k), "%d", i);
        json_object_set_new(st, k, json_integer((json_int_t)s->status[i]));
    }
    json_object_set_new(r, "status", st);
    json_t *se = json_object();
#define SB_X_JSON(name, help)                                                                      \
    json_object_set_new(se, #name, json_integer((json_int_t)s->err_##name));
    SB_SOCK_ERRORS(SB_X_JSON)
#undef SB_X_JSON
    json_object_set_new(r, "socket_errors", se);
#define SB_X_JSON(name) json_object_set_new(r, #name, json_integer((json_int_t)s->name));
    SB_COUNTERS(SB_X_JSON)
#undef SB_X_JSON
    json_t *tl_ok = json_array(), *tl_err = json_array();
    for (size_t i = 0; i < s->nsec; i++) {
        json_array_append_new(tl_ok, json_integer((json_int_t)s->sec_ok[i]));
        json_array_append_new(tl_err, json_integer((json_int_t)s->sec_err[i]));
    }
    json_object_set_new(r, "per_second_ok", tl_ok);
    json_object_set_new(r, "per_second_failed", tl_err);
    json_object_set_new(root, "results", r);

    int rc = json_dump_file(root, o->json_path, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(root);
    if (rc != 0) {
        fprintf(stderr, "shopbench: cannot write %s\n", o->json_path);
        return -1;
    }
    return 0;
}

int
sb_report_md(const sb_opts_t *o, const sb_run_t *run, const sb_result_t *res)
{
    const sb_stats_t *s = &res->total;
    FILE *f = fopen(o->md_path, "a");
    if (f == NULL) {
        fprintf(stderr, "shopbench: cannot append to %s\n", o->md_path);
        return -1;
    }
    char p50[32], p99[32], p999[32], mx[32], model[64];
    fmt_us(p50, sizeof(p50), (double)sb_hist_percentile(s->hist, 50));
    fmt_us(p99, sizeof(p99), (double)sb_hist_percentile(s->hist, 99));
    fmt_us(p999, sizeof(p999), (double)sb_hist_percentile(s->hist, 99.9));
    fmt_us(mx, sizeof(mx), (double)s->hist->max);
    if (run->rate > 0)
        snprintf(model, sizeof(model), "open %.0f/s", run->rate);
    else
        snprintf(model, sizeof(model), "closed");
    /* | run | scenario | model | threads x conns | req/s | p50 | p99 | p99.9 | max | failures | */
    fprintf(f, "| %s | %s | %s | %dx%d | %.0f | %s | %s | %s | %s | %llu |\n",
            o->label ? o->label : run->scn->name, run->scn->name, model, run->threads, run->conns,
            req_rate(res), p50, p99, p999, mx, (unsigned long long)sb_failures(s));
    fclose(f);
    return 0;
}

/* ---- gnuplot ---- */

static bool
have_program(const char *name)
{
    const char *path = getenv("PATH");
    if (path == NULL)
        return false;
    char *dup = strdup(path);
    bool found = false;
    for (char *save = NULL, *dir = strtok_r(dup, ":", &save); dir && !found;
         dir = strtok_r(NULL, ":", &save)) {
        char full[4096];
        snprintf(full, sizeof(full), "%s/%s", dir, name);
        found = access(full, X_OK) == 0;
    }
    free(dup);
    return found;
}

typedef struct plot_pts_s {
    FILE *f;
} plot_pts_t;

static void
spectrum_plot(double pct, uint64_t value, void *arg)
{
    plot_pts_t *p = arg;
    if (pct >= 100.0)
        return; /* 1/(1-p) is infinite: the max is in the title */
    fprintf(p->f, "%.6f %.6f %.3f\n", pct, 1.0 / (1.0 - pct / 100.0), (double)value / 1e3);
}

/* Quotes s for a gnuplot string (single quotes, doubled inside). */
static void
gp_quote(FILE *f, const char *s)
{
    fputc('\'', f);
    for (; *s; s++) {
        if (*s == '\'')
            fputc('\'', f);
        fputc(*s, f);
    }
    fputc('\'', f);
}

int
sb_report_plot(const sb_opts_t *o, const sb_run_t *run, const sb_result_t *res)
{
    const sb_stats_t *s = &res->total;
    if (!have_program("gnuplot")) {
        fprintf(stderr, "shopbench: gnuplot is not installed; skipped the charts "
                        "(apt-get install gnuplot-nox)\n");
        return 0;
    }
    if (s->responses == 0) {
        fprintf(stderr, "shopbench: no responses, no charts\n");
        return 0;
    }
    FILE *g = popen("gnuplot", "w");
    if (g == NULL) {
        fprintf(stderr, "shopbench: cannot run gnuplot\n");
        return -1;
    }
    const char *label = o->label ? o->label : run->scn->name;
    char title[512], out[4096];
    snprintf(title, sizeof(title), "%s: %s loop, %d connections, %.0f req/s, max %.2f ms", label,
             model_name(run), run->conns, req_rate(res), (double)s->hist->max / 1e3);

    fprintf(g, "$lat << EOD\n");
    plot_pts_t pp = {g};
    sb_hist_spectrum(s->hist, 5, spectrum_plot, &pp);
    fprintf(g, "EOD\n$rate << EOD\n");
    /* Whole seconds of the run; the last timeline slot only holds stragglers
     * of the drain. The row repeated at x = n closes the last step. */
    size_t nfull = (size_t)((run->warmup_us + run->duration_us + 999999u) / 1000000u);
    if (nfull > s->nsec)
        nfull = s->nsec;
    for (size_t i = 0; i <= nfull && nfull > 0; i++) {
        size_t j = i < nfull ? i : nfull - 1;
        fprintf(g, "%zu %llu %llu\n", i, (unsigned long long)s->sec_ok[j],
                (unsigned long long)s->sec_err[j]);
    }
    fprintf(g, "EOD\n");

    fprintf(g, "set terminal pngcairo size 1000,560 noenhanced\n");
    snprintf(out, sizeof(out), "%s-latency.png", o->plot_prefix);
    fprintf(g, "set output ");
    gp_quote(g, out);
    fprintf(g, "\nset title ");
    gp_quote(g, title);
    fprintf(g, "\nset logscale x\nset grid\nset key top left\n"
               "set xlabel 'percentile'\nset ylabel 'latency (ms)'\n"
               /* Tic labels are formats to gnuplot too: '%%%%' prints one '%'. */
               "set xtics ('0%%%%' 1, '90%%%%' 10, '99%%%%' 100, '99.9%%%%' 1000, "
               "'99.99%%%%' 10000, '99.999%%%%' 100000, '99.9999%%%%' 1000000)\n"
               "plot $lat using 2:3 with lines lw 2 title ");
    gp_quote(g, label);
    fprintf(g, "\n");

    snprintf(out, sizeof(out), "%s-rate.png", o->plot_prefix);
    fprintf(g, "reset\nset output ");
    gp_quote(g, out);
    fprintf(g, "\nset title ");
    gp_quote(g, title);
    fprintf(g, "\nset grid\nset key top left\nset xlabel 'seconds since start'\n"
               "set ylabel 'responses per second'\nset yrange [0:*]\n");
    if (run->warmup_us > 0)
        fprintf(g,
                "set arrow from %.3f, graph 0 to %.3f, graph 1 nohead dt 2\n"
                "set label 'warm-up ends' at %.3f, graph 0.95 offset 0.5,0\n",
                (double)run->warmup_us / 1e6, (double)run->warmup_us / 1e6,
                (double)run->warmup_us / 1e6);
    fprintf(g, "plot $rate using 1:2 with steps lw 2 title 'ok', "
               "$rate using 1:3 with steps lw 2 title 'failed'\n");
    int st = pclose(g);
    if (st != 0) {
        fprintf(stderr, "shopbench: gnuplot failed (status %d)\n", st);
        return -1;
    }
    fprintf(stderr, "shopbench: wrote %s-latency.png and %s-rate.png\n", o->plot_prefix,
            o->plot_prefix);
    return 0;
}
