/*
 * main.c: shopbench's command line. It parses options and the target URL,
 * picks the scenario from the table, runs it through the engine and hands the
 * merged result to the reports. The exit code makes it usable as a CI smoke
 * test: 0 when the run completed and no more than --max-errors requests
 * failed; 1 when more failed, nothing was answered or the run was interrupted;
 * 2 for usage errors and runs that could not start.
 */
#include "shopbench.h"

#include <arpa/inet.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

static void
usage(FILE *out)
{
    fprintf(
        out,
        "usage: shopbench [options] URL [SCENARIO]   run a scenario (default: store)\n"
        "       shopbench seed [options] URL         create stores bench-000001..K (and\n"
        "                                            their catalogs with --products N)\n"
        "       shopbench --list                     list the scenarios\n"
        "       shopbench selftest                   check the response parser and histogram\n"
        "\n"
        "  -t, --threads N      worker threads, each with its own event loop (default: cores)\n"
        "  -c, --connections N  keep-alive connections in total (default 64; seed: 8)\n"
        "  -d, --duration S     seconds measured (default 10)\n"
        "  -w, --warmup S       seconds of load before measuring starts (default 1)\n"
        "  -R, --rate R         open loop: R requests/s in total on fixed schedules, latency\n"
        "                       from the scheduled send time (default: closed loop)\n"
        "      --timeout S      a request unanswered for S seconds is an error (default 5)\n"
        "  -H, --header 'N: V'  add a header to every request (repeatable, up to %d)\n"
        "      --tenant SLUG    X-Tenant-Id for `store` (default demo)\n"
        "  -k, --stores K       stores for `tenants` and `seed` (default 100)\n"
        "      --zipf S         Zipf exponent of store popularity for `tenants` (default 1.0)\n"
        "      --tenants-mode M `tenants`: store (GET /api/v1/store), browse (the catalog\n"
        "                       mix; the catalogs must be seeded) or auto (default: browse\n"
        "                       when bench-000001 and bench-K have products)\n"
        "      --stock N        starting stock of the hot variant for `hot-stock` (default 20000)\n"
        "      --token T        platform token for `seed` (default $SHOPD_PLATFORM_TOKEN)\n"
        "      --verify N       stores read back after seeding (default 20)\n"
        "      --products N     seed: N active products per store in 2 categories, bulk\n"
        "                       loaded (POST /api/v1/imports/products; default 0: stores only)\n"
        "      --variants V     seed: variants per product (default 1)\n"
        "      --per-request    seed: one API request per object (a store admin, categories,\n"
        "                       products, variants), the slow path measured against the bulk one\n"
        "      --json FILE      write every figure and the machine as JSON\n"
        "      --md FILE        append a Markdown table row to FILE\n"
        "      --plot PREFIX    write PREFIX-latency.png and PREFIX-rate.png (gnuplot)\n"
        "      --label TEXT     name of this run in the reports (default: the scenario)\n"
        "      --build-type T   build type of the server under test, for the reports\n"
        "      --max-errors N   exit 1 when more than N requests fail (default 0)\n"
        "      --list           list the scenarios\n"
        "      --help           this text\n"
        "\n"
        "example: shopbench -c 64 -d 10 http://127.0.0.1:8080 store\n",
        SB_MAX_EXTRA_HEADERS);
}

static void
on_signal(int sig)
{
    (void)sig;
    /* Relaxed: see sb_stop_requested; an atomic store is async-signal-safe. */
    atomic_store_explicit(&sb_stop_requested, true, memory_order_relaxed);
}

static bool
parse_long(const char *s, long lo, long hi, long *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

static bool
parse_double(const char *s, double lo, double hi, double *out)
{
    char *end;
    double v = strtod(s, &end);
    if (*s == '\0' || *end != '\0' || !(v >= lo && v <= hi))
        return false;
    *out = v;
    return true;
}

static bool
is_loopback(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
        return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    }
    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
        return IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr) || IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr);
    }
    return false;
}

/* http://host[:port][/base]. Resolves the host once. Returns 0 or -1 (message printed). */
static int
parse_url(const char *url, sb_target_t *t)
{
    if (strncmp(url, "http://", 7) != 0) {
        fprintf(stderr, "shopbench: only http:// URLs are supported: %s\n", url);
        return -1;
    }
    const char *hp = url + 7;
    size_t hplen = strcspn(hp, "/?#");
    const char *path = hp + hplen;
    if (hplen == 0 || hplen >= sizeof(t->host)) {
        fprintf(stderr, "shopbench: bad host in %s\n", url);
        return -1;
    }
    char host[300], port[16] = "80";
    memcpy(t->host, hp, hplen);
    t->host[hplen] = '\0';
    if (hp[0] == '[') {
        const char *close = memchr(hp, ']', hplen);
        if (close == NULL)
            goto bad;
        size_t n = (size_t)(close - hp - 1);
        memcpy(host, hp + 1, n);
        host[n] = '\0';
        if (close + 1 < hp + hplen) {
            if (close[1] != ':')
                goto bad;
            snprintf(port, sizeof(port), "%.*s", (int)(hp + hplen - close - 2), close + 2);
        }
    } else {
        const char *colon = memchr(hp, ':', hplen);
        size_t n = colon ? (size_t)(colon - hp) : hplen;
        memcpy(host, hp, n);
        host[n] = '\0';
        if (colon)
            snprintf(port, sizeof(port), "%.*s", (int)(hp + hplen - colon - 1), colon + 1);
    }
    long pn;
    if (!parse_long(port, 1, 65535, &pn))
        goto bad;
    if (*path == '?' || *path == '#')
        goto bad;
    size_t plen = strlen(path);
    while (plen > 0 && path[plen - 1] == '/')
        plen--;
    if (plen >= sizeof(t->base_path))
        goto bad;
    memcpy(t->base_path, path, plen);
    t->base_path[plen] = '\0';
    snprintf(t->url, sizeof(t->url), "http://%s%s", t->host, t->base_path);

    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *ai = NULL;
    int rc = getaddrinfo(host, port, &hints, &ai);
    if (rc != 0 || ai == NULL) {
        fprintf(stderr, "shopbench: cannot resolve %s: %s\n", host, gai_strerror(rc));
        return -1;
    }
    memcpy(&t->addr, ai->ai_addr, ai->ai_addrlen);
    t->addrlen = ai->ai_addrlen;
    t->loopback = is_loopback(&t->addr);
    freeaddrinfo(ai);
    return 0;
bad:
    fprintf(stderr, "shopbench: bad URL %s (want http://host[:port][/prefix])\n", url);
    return -1;
}

/* Every connection is a descriptor: lift the soft limit towards the hard one
 * when the default (often 1024) is too small, rather than fail to connect. */
static void
raise_fd_limit(int conns)
{
    struct rlimit rl;
    rlim_t want = (rlim_t)conns + 64;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= want)
        return;
    rl.rlim_cur = want < rl.rlim_max ? want : rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur < want)
        fprintf(stderr,
                "shopbench: only %llu file descriptors allowed for %d connections "
                "(ulimit -n)\n",
                (unsigned long long)rl.rlim_cur, conns);
}

enum {
    OPT_TIMEOUT = 256,
    OPT_TENANT,
    OPT_ZIPF,
    OPT_STOCK,
    OPT_TOKEN,
    OPT_VERIFY,
    OPT_TENANTS_MODE,
    OPT_PRODUCTS,
    OPT_PER_REQUEST,
    OPT_VARIANTS,
    OPT_JSON,
    OPT_MD,
    OPT_PLOT,
    OPT_LABEL,
    OPT_BUILD_TYPE,
    OPT_MAX_ERRORS,
    OPT_LIST,
    OPT_HELP,
};

static const struct option long_opts[] = {
    {"threads", required_argument, NULL, 't'},
    {"connections", required_argument, NULL, 'c'},
    {"duration", required_argument, NULL, 'd'},
    {"warmup", required_argument, NULL, 'w'},
    {"rate", required_argument, NULL, 'R'},
    {"header", required_argument, NULL, 'H'},
    {"stores", required_argument, NULL, 'k'},
    {"timeout", required_argument, NULL, OPT_TIMEOUT},
    {"tenant", required_argument, NULL, OPT_TENANT},
    {"zipf", required_argument, NULL, OPT_ZIPF},
    {"tenants-mode", required_argument, NULL, OPT_TENANTS_MODE},
    {"stock", required_argument, NULL, OPT_STOCK},
    {"token", required_argument, NULL, OPT_TOKEN},
    {"verify", required_argument, NULL, OPT_VERIFY},
    {"products", required_argument, NULL, OPT_PRODUCTS},
    {"per-request", no_argument, NULL, OPT_PER_REQUEST},
    {"variants", required_argument, NULL, OPT_VARIANTS},
    {"json", required_argument, NULL, OPT_JSON},
    {"md", required_argument, NULL, OPT_MD},
    {"plot", required_argument, NULL, OPT_PLOT},
    {"label", required_argument, NULL, OPT_LABEL},
    {"build-type", required_argument, NULL, OPT_BUILD_TYPE},
    {"max-errors", required_argument, NULL, OPT_MAX_ERRORS},
    {"list", no_argument, NULL, OPT_LIST},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

/* Parses argv into o. Returns -1 to continue, or an exit code. */
static int
parse_args(int argc, char **argv, sb_opts_t *o, const char **url, bool *seed)
{
    long l;
    double d;
    int first = 1;
    *seed = false;
    if (argc > 1 && strcmp(argv[1], "seed") == 0) {
        *seed = true;
        first = 2;
    }
    optind = first;
    int ch;
    while ((ch = getopt_long(argc, argv, "t:c:d:w:R:H:k:", long_opts, NULL)) != -1) {
        const char *bad = NULL;
        switch (ch) {
        case 't':
            if (!parse_long(optarg, 1, 1024, &l))
                bad = "--threads wants 1..1024";
            o->threads = (int)l;
            break;
        case 'c':
            if (!parse_long(optarg, 1, 1000000, &l))
                bad = "--connections wants 1..1000000";
            o->conns = (int)l;
            break;
        case 'd':
            if (!parse_double(optarg, 0.001, 86400 * 7, &d))
                bad = "--duration wants seconds > 0";
            o->duration_s = d;
            break;
        case 'w':
            if (!parse_double(optarg, 0, 86400, &d))
                bad = "--warmup wants seconds >= 0";
            o->warmup_s = d;
            break;
        case 'R':
            if (!parse_double(optarg, 0.001, 1e9, &d))
                bad = "--rate wants requests/s > 0";
            o->rate = d;
            break;
        case 'H':
            if (o->nheaders >= SB_MAX_EXTRA_HEADERS)
                bad = "too many -H headers";
            else if (strchr(optarg, ':') == NULL || strlen(optarg) > 512 ||
                     strpbrk(optarg, "\r\n") != NULL)
                bad = "-H wants 'Name: value' (at most 512 bytes)";
            else
                o->headers[o->nheaders++] = optarg;
            break;
        case 'k':
            if (!parse_long(optarg, 1, 9999999, &l))
                bad = "--stores wants 1..9999999";
            o->stores = (int)l;
            break;
        case OPT_TIMEOUT:
            if (!parse_double(optarg, 0.001, 3600, &d))
                bad = "--timeout wants seconds > 0";
            o->timeout_s = d;
            break;
        case OPT_TENANT:
            if (optarg[0] == '\0' || strlen(optarg) > 200 || strpbrk(optarg, "\r\n") != NULL)
                bad = "--tenant wants a store slug";
            o->tenant = optarg;
            break;
        case OPT_STOCK:
            if (!parse_long(optarg, 1, 100000000, &l))
                bad = "--stock wants 1..100000000";
            o->stock = l;
            break;
        case OPT_ZIPF:
            if (!parse_double(optarg, 0, 10, &d))
                bad = "--zipf wants 0..10";
            o->zipf_s = d;
            break;
        case OPT_TENANTS_MODE:
            if (strcmp(optarg, "auto") == 0)
                o->tenants_mode = SB_TENANTS_AUTO;
            else if (strcmp(optarg, "store") == 0)
                o->tenants_mode = SB_TENANTS_STORE;
            else if (strcmp(optarg, "browse") == 0)
                o->tenants_mode = SB_TENANTS_BROWSE;
            else
                bad = "--tenants-mode wants auto, store or browse";
            break;
        case OPT_TOKEN:
            if (strpbrk(optarg, "\r\n") != NULL)
                bad = "--token must be one line";
            o->token = optarg;
            break;
        case OPT_VERIFY:
            if (!parse_long(optarg, 0, 1000000, &l))
                bad = "--verify wants 0..1000000";
            o->verify = (int)l;
            break;
        case OPT_PRODUCTS:
            if (!parse_long(optarg, 0, 1000000, &l))
                bad = "--products wants 0..1000000";
            o->products = (int)l;
            break;
        case OPT_PER_REQUEST:
            o->seed_per_request = true;
            break;
        case OPT_VARIANTS:
            if (!parse_long(optarg, 0, 100, &l))
                bad = "--variants wants 0..100";
            o->variants = (int)l;
            break;
        case OPT_JSON:
            o->json_path = optarg;
            break;
        case OPT_MD:
            o->md_path = optarg;
            break;
        case OPT_PLOT:
            o->plot_prefix = optarg;
            break;
        case OPT_LABEL:
            o->label = optarg;
            break;
        case OPT_BUILD_TYPE:
            o->build_type = optarg;
            break;
        case OPT_MAX_ERRORS:
            if (!parse_long(optarg, 0, __LONG_MAX__, &l))
                bad = "--max-errors wants a count >= 0";
            o->max_errors = l;
            break;
        case OPT_LIST:
            sb_scenarios_print(stdout);
            return 0;
        case OPT_HELP:
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
        if (bad != NULL) {
            fprintf(stderr, "shopbench: %s (got '%s')\n", bad, optarg);
            return 2;
        }
    }
    int npos = argc - optind;
    if (npos == 1 && !*seed && strcmp(argv[optind], "selftest") == 0)
        return sb_selftest();
    if (npos < 1 || npos > (*seed ? 1 : 2)) {
        usage(stderr);
        return 2;
    }
    *url = argv[optind];
    if (!*seed && npos == 2)
        o->scenario = argv[optind + 1];
    return -1;
}

int
main(int argc, char **argv)
{
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    sb_opts_t o = {
        .scenario = "store",
        .threads = cores > 0 ? (int)cores : 1,
        .conns = 0, /* 0: the default for the mode, chosen below */
        .duration_s = 10,
        .warmup_s = 1,
        .timeout_s = 5,
        .tenant = "demo",
        .stores = 100,
        .zipf_s = 1.0,
        .stock = 20000,
        .token = getenv("SHOPD_PLATFORM_TOKEN"),
        .verify = 20,
        .variants = 1,
        .argc = argc,
        .argv = argv,
    };
    const char *url = NULL;
    bool seed;
    int code = parse_args(argc, argv, &o, &url, &seed);
    if (code >= 0)
        return code;
    if (parse_url(url, &o.target) < 0)
        return 2;

    struct sigaction sa = {.sa_handler = on_signal, .sa_flags = SA_RESETHAND};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    /* A server closing a connection must not kill us on the next write. */
    signal(SIGPIPE, SIG_IGN);

    if (seed)
        return sb_seed(&o);
    if (o.conns == 0)
        o.conns = 64;
    raise_fd_limit(o.conns);

    const sb_scenario_t *scn = sb_scenario_find(o.scenario);
    if (scn == NULL) {
        fprintf(stderr, "shopbench: unknown scenario '%s'\n", o.scenario);
        sb_scenarios_print(stderr);
        return 2;
    }
    if (scn->missing != NULL) {
        fprintf(stderr, "shopbench: scenario '%s' is not available yet: %s\n", scn->name,
                scn->missing);
        return 2;
    }
    void *shared = NULL;
    char err[256];
    if (scn->setup != NULL && scn->setup(&o, &shared, err, sizeof(err)) < 0) {
        fprintf(stderr, "shopbench: %s: %s\n", scn->name, err);
        return 2;
    }
    code = 1;
    if ((scn->flags & SB_SCN_NEEDS_STORES) && sb_seed_check(&o, o.stores) < 0)
        goto out;

    sb_run_t run = {
        .opts = &o,
        .scn = scn,
        .shared = shared,
        .threads = o.threads < o.conns ? o.threads : o.conns,
        .conns = o.conns,
        .warmup_us = (uint64_t)(o.warmup_s * 1e6),
        .duration_us = (uint64_t)(o.duration_s * 1e6),
        .rate = o.rate,
        .timeout_us = (uint64_t)(o.timeout_s * 1e6),
    };
    fprintf(stderr, "shopbench: %s on %s for %.0f s (+%.0f s warm-up), %d connections...\n",
            scn->name, o.target.url, o.duration_s, o.warmup_s, o.conns);
    sb_result_t res;
    if (sb_run(&run, &res) < 0) {
        sb_result_free(&res);
        code = 2;
        goto out;
    }
    sb_report_text(stdout, &o, &run, &res);
    fflush(stdout);
    int report_rc = 0;
    if (o.json_path != NULL && sb_report_json(&o, &run, &res) < 0)
        report_rc = -1;
    if (o.md_path != NULL && sb_report_md(&o, &run, &res) < 0)
        report_rc = -1;
    if (o.plot_prefix != NULL && sb_report_plot(&o, &run, &res) < 0)
        report_rc = -1;
    uint64_t failures = sb_failures(&res.total);
    code =
        (failures > (uint64_t)o.max_errors || res.total.responses == 0 || res.interrupted) ? 1 : 0;
    if (scn->verify != NULL && scn->verify(&o, shared, res.measured_s, stdout) < 0)
        code = 1;
    if (report_rc < 0 && code == 0)
        code = 2;
    sb_result_free(&res);
out:
    if (scn->teardown != NULL)
        scn->teardown(shared);
    return code;
}
