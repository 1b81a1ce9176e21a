/*
 * shopctl.c: the operators' command line for shopd's admin protocol
 * (docs/admin-protocol.md). One connection per run: hello, one request, its
 * answer printed as a table (or JSON with --json), exit status 0 ok, 1 an
 * error answer, 2 usage, 3 cannot connect or authenticate. The command line
 * itself is cli.c.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "cli.h"
#include "shopd/admin.h"
#include "shopd/common.h"

#define SHOPCTL_MAX_FRAME (64u << 20) /* answers can be long lists */

static volatile sig_atomic_t interrupted;
static SSL *tls; /* the connection's TLS session, NULL on plain TCP */

static void
on_sigint(int sig)
{
    interrupted = 1;
}

static int
dial(const char *host, int port, int timeout_s, char *err, size_t errlen)
{
    char ps[16];
    snprintf(ps, sizeof(ps), "%d", port);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
    int rc = getaddrinfo(host, ps, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "%s", gai_strerror(rc));
        return -1;
    }
    int fd = -1;
    for (struct addrinfo *a = res; a; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0)
            continue;
        struct timeval tv = {timeout_s, 0};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        if (connect(fd, a->ai_addr, a->ai_addrlen) == 0)
            break;
        snprintf(err, errlen, "%s", strerror(errno));
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    return fd;
}

/* TLS over the connected socket, checking the server's certificate against
 * ca (or the system's CAs) and the host or IP address dialled, unless insecure. */
static int
tls_start(int fd, const shopctl_opts_t *o, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL || !SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION))
        goto fail;
    if (!o->tls_insecure) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        if ((o->tls_ca ? SSL_CTX_load_verify_locations(ctx, o->tls_ca, NULL)
                       : SSL_CTX_set_default_verify_paths(ctx)) != 1)
            goto fail;
    }
    tls = SSL_new(ctx);
    SSL_CTX_free(ctx); /* the session holds its own reference */
    ctx = NULL;
    if (tls == NULL)
        goto fail;
    unsigned char ip[16];
    bool is_ip = inet_pton(AF_INET, o->host, ip) == 1 || inet_pton(AF_INET6, o->host, ip) == 1;
    if (!o->tls_insecure && !(is_ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(tls), o->host)
                                    : SSL_set1_host(tls, o->host)))
        goto fail;
    if (!is_ip)
        SSL_set_tlsext_host_name(tls, o->host);
    SSL_set_fd(tls, fd);
    if (SSL_connect(tls) == 1)
        return 0;
fail:
    if (tls && SSL_get_verify_result(tls) != X509_V_OK)
        snprintf(err, errlen, "TLS: %s", X509_verify_cert_error_string(SSL_get_verify_result(tls)));
    else
        snprintf(err, errlen, "TLS: %s",
                 ERR_reason_error_string(ERR_get_error()) ?: "handshake failed");
    SSL_CTX_free(ctx);
    return -1;
}

static int
write_all(int fd, const unsigned char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = tls ? SSL_write(tls, p, (int)n) : send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int
read_all(int fd, unsigned char *p, size_t n)
{
    while (n > 0) {
        ssize_t r = tls ? SSL_read(tls, p, (int)n) : recv(fd, p, n, 0);
        if (r < 0 && errno == EINTR && !tls)
            continue;
        if (r <= 0)
            return -1;
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

static int
send_json(int fd, const json_t *v)
{
    size_t len;
    unsigned char *f = admin_encode_frame(v, &len);
    int rc = write_all(fd, f, len);
    shopd_free(f);
    return rc;
}

/* The next frame, decoded; NULL with a line in err. */
static json_t *
read_frame(int fd, char *err, size_t errlen)
{
    unsigned char hdr[ADMIN_HEADER];
    if (read_all(fd, hdr, sizeof(hdr)) != 0) {
        snprintf(err, errlen, "the server closed the connection%s",
                 errno == EAGAIN ? " (timed out waiting for the answer)" : "");
        return NULL;
    }
    size_t n = 0;
    if (admin_frame_check(hdr, sizeof(hdr), SHOPCTL_MAX_FRAME, &n) == ADMIN_FRAME_TOO_BIG) {
        snprintf(err, errlen, "the server sent a frame of %zu bytes", n);
        return NULL;
    }
    unsigned char *body = malloc(n);
    if (body == NULL || read_all(fd, body, n) != 0) {
        free(body);
        snprintf(err, errlen, "the server closed the connection in the middle of a frame");
        return NULL;
    }
    json_t *v = admin_decode(body, n, err, errlen);
    free(body);
    return v;
}

/* Sends {id, op, args} and returns the answer with that id. */
static json_t *
call(int fd, long id, const char *op, json_t *args, char *err, size_t errlen)
{
    json_t *req = json_pack("{s:I,s:s,s:O}", "id", (json_int_t)id, "op", op, "args", args);
    int rc = send_json(fd, req);
    json_decref(req);
    if (rc != 0) {
        snprintf(err, errlen, "cannot send: %s", strerror(errno));
        return NULL;
    }
    for (;;) {
        json_t *a = read_frame(fd, err, errlen);
        if (a == NULL)
            return NULL;
        json_t *aid = json_object_get(a, "id");
        if (json_is_integer(aid) && json_integer_value(aid) == id)
            return a;
        if (json_is_null(aid) || aid == NULL) {
            return a; /* a connection-level error frame */
        }
        json_decref(a);
    }
}

static void
print_error(const json_t *answer, bool as_json)
{
    json_t *e = json_object_get(answer, "error");
    const char *code = json_string_value(json_object_get(e, "code"));
    const char *msg = json_string_value(json_object_get(e, "message"));
    fprintf(stderr, "shopctl: error: %s: %s\n", code ? code : "?", msg ? msg : "");
    json_t *d;
    size_t i;
    json_array_foreach(json_object_get(e, "details"), i, d)
    {
        const char *f = json_string_value(json_object_get(d, "field"));
        const char *is = json_string_value(json_object_get(d, "issue"));
        if (f && is)
            fprintf(stderr, "  %s: %s\n", f, is);
    }
    if (as_json) {
        json_t *doc = json_pack("{s:O}", "error", e ? e : json_null());
        json_dumpf(doc, stdout, JSON_INDENT(2));
        fputc('\n', stdout);
        json_decref(doc);
    }
}

/* After unknown_op: the server's operation nearest to what was typed. */
static void
suggest(int fd, const char *op)
{
    char err[256];
    json_t *args = json_object();
    json_t *a = call(fd, 2, "ops", args, err, sizeof(err));
    json_decref(args);
    json_t *list = json_object_get(a, "result");
    size_t n = json_array_size(list);
    const char **names = calloc(n + 1, sizeof(*names));
    for (size_t i = 0; i < n; i++)
        names[i] = json_string_value(json_object_get(json_array_get(list, i), "op"));
    const char *near = n ? shopctl_nearest(op, names, n) : NULL;
    if (near)
        fprintf(stderr, "shopctl: did you mean '%s'? (shopctl ops lists them)\n", near);
    free(names);
    json_decref(a);
}

/* Follows a stream (events.tail): prints each event's line until the server
 * ends it or Ctrl-C, which sends cancel and waits for the final frame. */
static int
follow(int fd, const shopctl_opts_t *o)
{
    char err[512];
    json_t *req = json_pack("{s:i,s:s,s:O}", "id", 1, "op", o->op, "args", o->args);
    int rc = send_json(fd, req);
    json_decref(req);
    if (rc != 0) {
        fprintf(stderr, "shopctl: cannot send: %s\n", strerror(errno));
        return SHOPCTL_CONNECT;
    }
    struct sigaction sa = {.sa_handler = on_sigint};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    bool cancelled = false;
    for (;;) {
        if (interrupted && !cancelled) {
            json_t *c = json_pack("{s:i,s:s}", "id", 1, "op", "cancel");
            send_json(fd, c);
            json_decref(c);
            cancelled = true;
        }
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int n = tls && SSL_pending(tls) > 0 ? 1 : poll(&p, 1, 200);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            continue;
        json_t *a = read_frame(fd, err, sizeof(err));
        if (a == NULL) {
            fprintf(stderr, "shopctl: %s\n", err);
            return SHOPCTL_CONNECT;
        }
        if (json_is_true(json_object_get(a, "more"))) {
            json_t *ev = json_object_get(a, "event");
            const char *line = json_string_value(json_object_get(ev, "line"));
            if (o->json) {
                json_dumpf(ev, stdout, JSON_COMPACT);
                fputc('\n', stdout);
            } else if (line) {
                printf("%s\n", line);
            }
            fflush(stdout);
            json_decref(a);
            continue;
        }
        int st = SHOPCTL_OK;
        if (json_is_true(json_object_get(a, "ok"))) {
            json_t *res = json_object_get(a, "result");
            json_int_t dropped = json_integer_value(json_object_get(res, "dropped"));
            if (dropped > 0)
                fprintf(stderr, "shopctl: %lld lines were dropped (the terminal was too slow)\n",
                        (long long)dropped);
            if (!cancelled)
                fprintf(stderr, "shopctl: the stream ended: %s\n",
                        json_string_value(json_object_get(res, "ended")));
        } else {
            print_error(a, o->json);
            st = SHOPCTL_ERROR;
        }
        json_decref(a);
        return st;
    }
}

/* ------------------------------------------------------------ import */

#define IMPORT_WINDOW 3 /* import.products requests in flight on the connection */
/* Rows per request: one batch of the server (CATALOG_IMPORT_MAX_ROWS). */
#define IMPORT_CHUNK 1000
#define IMPORT_CHUNK_BYTES (600u << 10) /* and at most this much JSON: under the 1 MiB frame */
#define IMPORT_MAX_COLS 64

static bool
ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

static void
reject(json_t *rejected, long line, const char *code, const char *message, json_t *details)
{
    json_array_append_new(rejected, json_pack("{s:I,s:s,s:s,s:o}", "line", (json_int_t)line, "code",
                                              code, "message", message, "details",
                                              details ? json_incref(details) : json_array()));
}

static void
progress(size_t done, size_t total, uint64_t t0)
{
    double secs = (double)(shopd_now_us() - t0) / 1e6;
    double rate = secs > 0 ? (double)done / secs : 0;
    int width = 30, fill = total ? (int)((double)width * (double)done / (double)total) : width;
    char bar[64];
    for (int i = 0; i < width; i++)
        bar[i] = i < fill ? '#' : '.';
    bar[width] = '\0';
    double eta = rate > 0 ? (double)(total - done) / rate : 0;
    fprintf(stderr, "\r[%s] %zu/%zu rows  %.0f rows/s  ETA %.0fs ", bar, done, total, rate, eta);
}

/* shopctl import products: the rows of the file go in import.products requests
 * of up to IMPORT_CHUNK rows, IMPORT_WINDOW in flight on the one connection
 * (answers come back by id, in any order); the server loads each in batches of
 * one transaction on the store's actor. */
static int
import_rows(int fd, const shopctl_opts_t *o)
{
    char err[512];
    FILE *f = fopen(o->import_file, "r");
    if (f == NULL) {
        fprintf(stderr, "shopctl: cannot read %s: %s\n", o->import_file, strerror(errno));
        return SHOPCTL_USAGE;
    }
    bool csv = !ends_with(o->import_file, ".jsonl") && !ends_with(o->import_file, ".json") &&
               !ends_with(o->import_file, ".ndjson");
    /* The rows, read first: the total makes the progress bar and ETA honest. */
    json_t *rows = json_array(), *rejected = json_array();
    char *line = NULL, *header[IMPORT_MAX_COLS], *hline = NULL;
    size_t cap = 0;
    int ncols = 0;
    long lineno = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, f)) > 0) {
        lineno++;
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            line[--n] = '\0';
        if (n == 0)
            continue;
        json_t *args = NULL;
        if (csv && hline == NULL) {
            hline = strdup(line);
            ncols = shopctl_csv_split(hline, header, IMPORT_MAX_COLS);
            if (ncols <= 0) {
                fprintf(stderr, "shopctl: %s: the header row is not CSV\n", o->import_file);
                goto usage;
            }
            continue;
        }
        if (csv) {
            char *cells[IMPORT_MAX_COLS];
            int nc = shopctl_csv_split(line, cells, IMPORT_MAX_COLS);
            if (nc != ncols) {
                snprintf(err, sizeof(err), "%d fields where the header has %d", nc, ncols);
                reject(rejected, lineno, "malformed_row", err, NULL);
                continue;
            }
            args = shopctl_csv_row(header, cells, nc, err, sizeof(err));
        } else {
            json_error_t je;
            args = json_loads(line, 0, &je);
            if (args && !json_is_object(args)) {
                json_decref(args);
                args = NULL;
            }
            snprintf(err, sizeof(err), "not a JSON object (%s)", args ? "" : je.text);
        }
        if (args == NULL) {
            reject(rejected, lineno, "malformed_row", err, NULL);
            continue;
        }
        json_object_update(args, o->args); /* the store */
        json_array_append_new(rows,
                              json_pack("{s:I,s:o}", "line", (json_int_t)lineno, "args", args));
    }
    free(line);
    fclose(f);
    f = NULL;

    size_t total = json_array_size(rows), next = 0, inflight = 0, done = 0, imported = 0;
    size_t malformed = json_array_size(rejected); /* refused here, never sent */
    bool tty = isatty(STDERR_FILENO) && !o->json;
    uint64_t t0 = shopd_now_us(), shown = 0;
    int status = SHOPCTL_OK;
    json_t *chunks = json_object(); /* request id -> [first row, rows] */
    json_int_t nextid = 1;
    while (next < total || inflight > 0) {
        while (inflight < IMPORT_WINDOW && next < total) {
            size_t first = next, bytes = 0;
            json_t *batch = json_array();
            while (next < total && json_array_size(batch) < IMPORT_CHUNK) {
                json_t *args = json_object_get(json_array_get(rows, next), "args");
                size_t len = json_dumpb(args, NULL, 0, JSON_COMPACT) + 1;
                if (json_array_size(batch) > 0 && bytes + len > IMPORT_CHUNK_BYTES)
                    break;
                bytes += len;
                json_t *row = json_copy(args);
                json_object_del(row, "store"); /* the request names it once */
                json_array_append_new(batch, row);
                next++;
            }
            json_t *a = json_copy(o->args);
            json_object_set_new(a, "rows", batch);
            char key[32];
            snprintf(key, sizeof(key), "%lld", (long long)nextid);
            json_object_set_new(chunks, key,
                                json_pack("[I,I]", (json_int_t)first, (json_int_t)(next - first)));
            json_t *req = json_pack("{s:I,s:s,s:o}", "id", nextid++, "op", o->op, "args", a);
            int rc = send_json(fd, req);
            json_decref(req);
            if (rc != 0) {
                fprintf(stderr, "\nshopctl: cannot send: %s\n", strerror(errno));
                status = SHOPCTL_CONNECT;
                goto out;
            }
            inflight++;
        }
        json_t *a = read_frame(fd, err, sizeof(err));
        if (a == NULL) {
            fprintf(stderr, "\nshopctl: %s\n", err);
            status = SHOPCTL_CONNECT;
            goto out;
        }
        char key[32];
        snprintf(key, sizeof(key), "%lld", (long long)json_integer_value(json_object_get(a, "id")));
        json_t *chunk = json_object_get(chunks, key);
        if (chunk == NULL) {
            json_decref(a);
            continue; /* not one of ours */
        }
        size_t first = (size_t)json_integer_value(json_array_get(chunk, 0));
        size_t count = (size_t)json_integer_value(json_array_get(chunk, 1));
        inflight--;
        done += count;
        json_t *res = json_object_get(a, "result");
        if (json_is_true(json_object_get(a, "ok"))) {
            imported += (size_t)json_integer_value(json_object_get(res, "imported"));
            size_t i;
            json_t *r;
            json_array_foreach(json_object_get(res, "rejected"), i, r)
            {
                size_t idx = first + (size_t)json_integer_value(json_object_get(r, "index"));
                const char *code = json_string_value(json_object_get(r, "code"));
                const char *msg = json_string_value(json_object_get(r, "message"));
                reject(rejected,
                       (long)json_integer_value(json_object_get(json_array_get(rows, idx), "line")),
                       code ? code : "?", msg ? msg : "", json_object_get(r, "details"));
            }
        } else {
            /* The request failed as a whole: each of its rows is refused with it. */
            json_t *e = json_object_get(a, "error");
            const char *code = json_string_value(json_object_get(e, "code"));
            const char *msg = json_string_value(json_object_get(e, "message"));
            for (size_t k = 0; k < count; k++)
                reject(rejected,
                       (long)json_integer_value(
                           json_object_get(json_array_get(rows, first + k), "line")),
                       code ? code : "?", msg ? msg : "", json_object_get(e, "details"));
        }
        json_object_del(chunks, key);
        json_decref(a);
        if (tty && shopd_now_us() - shown > 100000) {
            progress(done, total, t0);
            shown = shopd_now_us();
        }
    }
    if (tty) {
        progress(done, total, t0);
        fputc('\n', stderr);
    }
    double secs = (double)(shopd_now_us() - t0) / 1e6;
    size_t nrej = json_array_size(rejected);
    if (o->json) {
        json_t *doc = json_pack("{s:I,s:O,s:f}", "imported", (json_int_t)imported, "rejected",
                                rejected, "seconds", secs);
        json_dumpf(doc, stdout, JSON_INDENT(2));
        fputc('\n', stdout);
        json_decref(doc);
    } else {
        printf("imported %zu of %zu rows in %.1f s (%.0f rows/s)\n", imported, total + malformed,
               secs, secs > 0 ? (double)done / secs : 0.0);
        if (nrej)
            printf("rejected %zu rows:\n", nrej);
        size_t i;
        json_t *r;
        json_array_foreach(rejected, i, r)
        {
            if (i == 50) {
                printf("  ... and %zu more (--json lists every one)\n", nrej - 50);
                break;
            }
            printf("  line %lld: %s: %s", (long long)json_integer_value(json_object_get(r, "line")),
                   json_string_value(json_object_get(r, "code")),
                   json_string_value(json_object_get(r, "message")));
            size_t j;
            json_t *d;
            json_array_foreach(json_object_get(r, "details"), j, d)
            {
                printf("%s%s: %s", j ? "; " : " (", json_string_value(json_object_get(d, "field")),
                       json_string_value(json_object_get(d, "issue")));
                if (j + 1 == json_array_size(json_object_get(r, "details")))
                    printf(")");
            }
            printf("\n");
        }
    }
    status = nrej ? SHOPCTL_ERROR : SHOPCTL_OK;
out:
    json_decref(chunks);
    free(hline);
    json_decref(rows);
    json_decref(rejected);
    return status;
usage:
    free(line);
    free(hline);
    if (f)
        fclose(f);
    json_decref(rows);
    json_decref(rejected);
    return SHOPCTL_USAGE;
}

int
main(int argc, char **argv)
{
    shopctl_opts_t o;
    char err[512];
    int status = SHOPCTL_ERROR, fd = -1;
    json_t *hello = NULL, *ans = NULL;
    signal(SIGPIPE, SIG_IGN); /* a server that closes is an error line, not a silent death */
    const char *tok = getenv("SHOPD_ADMIN_TOKEN");
    if (tok == NULL || *tok == '\0')
        tok = getenv("SHOPCTL_TOKEN");
    int rc = shopctl_parse(argc, argv, getenv("SHOPCTL_ADDR"), tok, &o, err, sizeof(err));
    if (rc != 0) {
        fprintf(stderr, "shopctl: %s\n", err);
        return SHOPCTL_USAGE;
    }
    if (o.help) {
        if (shopctl_help(stdout, o.topic) == 0)
            return SHOPCTL_OK;
        const char *names[64];
        const char *near = shopctl_nearest(o.topic, names, shopctl_verb_names(names, 64));
        fprintf(stderr, "shopctl: no command '%s'%s%s%s\n", o.topic, near ? "; did you mean '" : "",
                near ? near : "", near ? "'?" : "");
        return SHOPCTL_USAGE;
    }
    if (o.token == NULL) {
        fprintf(stderr, "shopctl: no token: give --token or set SHOPD_ADMIN_TOKEN\n");
        status = SHOPCTL_CONNECT;
        goto out;
    }
    fd = dial(o.host, o.port, o.timeout_s, err, sizeof(err));
    if (fd < 0) {
        fprintf(stderr, "shopctl: cannot connect to %s:%d: %s\n", o.host, o.port, err);
        status = SHOPCTL_CONNECT;
        goto out;
    }
    if (o.tls && tls_start(fd, &o, err, sizeof(err)) != 0) {
        fprintf(stderr, "shopctl: cannot connect to %s:%d: %s\n", o.host, o.port, err);
        status = SHOPCTL_CONNECT;
        goto out;
    }
    hello = json_pack("{s:i,s:s,s:i,s:s}", "id", 0, "op", "hello", "version", ADMIN_VERSION,
                      "token", o.token);
    if (send_json(fd, hello) != 0) {
        fprintf(stderr, "shopctl: cannot connect to %s:%d: %s\n", o.host, o.port, strerror(errno));
        status = SHOPCTL_CONNECT;
        goto out;
    }
    json_decref(hello);
    hello = read_frame(fd, err, sizeof(err));
    if (hello == NULL || !json_is_true(json_object_get(hello, "ok"))) {
        json_t *e = json_object_get(hello, "error");
        const char *m = json_string_value(json_object_get(e, "message"));
        fprintf(stderr, "shopctl: cannot authenticate to %s:%d: %s\n", o.host, o.port, m ? m : err);
        status = SHOPCTL_CONNECT;
        goto out;
    }
    if (o.import_file) {
        status = import_rows(fd, &o);
        goto out;
    }
    if (!strcmp(o.op, "events.tail")) {
        status = follow(fd, &o);
        goto out;
    }
    long seq = 1;
again:
    ans = call(fd, seq++, o.op, o.args, err, sizeof(err));
    if (ans == NULL) {
        fprintf(stderr, "shopctl: %s\n", err);
        status = SHOPCTL_CONNECT;
        goto out;
    }
    if (json_is_true(json_object_get(ans, "ok"))) {
        json_t *res = json_object_get(ans, "result");
        if (o.msgpack) {
            /* The result alone, one msgpack value (for scripts in other languages). */
            size_t len;
            unsigned char *m = admin_encode(res, &len);
            fwrite(m, 1, len, stdout);
            shopd_free(m);
        } else if (o.json) {
            json_dumpf(res, stdout, JSON_INDENT(2) | JSON_ENCODE_ANY);
            fputc('\n', stdout);
        } else {
            if (o.watch_s && isatty(STDOUT_FILENO))
                fputs("\033[H\033[2J", stdout); /* a refreshing screen, like watch(1) */
            shopctl_print(stdout, res);
        }
        status = SHOPCTL_OK;
        if (o.watch_s) {
            fflush(stdout);
            json_decref(ans);
            ans = NULL;
            struct sigaction sa = {.sa_handler = on_sigint};
            sigaction(SIGINT, &sa, NULL);
            for (int t = 0; t < o.watch_s * 10 && !interrupted; t++)
                usleep(100000);
            if (!interrupted)
                goto again;
        }
        goto out;
    }
    print_error(ans, o.json);
    const char *code = json_string_value(json_object_get(json_object_get(ans, "error"), "code"));
    if (code && !strcmp(code, "unknown_op"))
        suggest(fd, o.op);
    status = SHOPCTL_ERROR;
out:
    json_decref(ans);
    json_decref(hello);
    json_decref(o.args);
    if (tls) {
        SSL_shutdown(tls);
        SSL_free(tls);
    }
    if (fd >= 0)
        close(fd);
    return status;
}
