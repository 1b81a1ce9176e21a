/*
 * bare_server.c: shopd-bare, the "bare libevent server" that shopd's HTTP
 * numbers are compared with. It has shopd's I/O shape and nothing else: N
 * threads, each with its own event_base and evhttp accepting on its own
 * SO_REUSEPORT socket bound to the same port (the kernel spreads connections
 * over them), and every request answered 200 with the same ~2 KB JSON body
 * over HTTP/1.1 keep-alive. The gap between it and shopd on GET /api/v1/store
 * is what routing, tenant lookup, actors and JSON cost.
 *
 * Usage: shopd-bare [-p port] [-t threads] [-h host]. Port 0 picks a free
 * port; the first line on stdout says which. SIGINT/SIGTERM stop it cleanly:
 * main waits for the signal with sigwait and wakes each loop through its own
 * eventfd (no thread touches another's event_base).
 */
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/util.h>

typedef struct bare_thread_s {
    int idx;
    pthread_t th;
    evutil_socket_t listen_fd; /* owned by http once accepted on */
    int wake_fd;               /* eventfd: main writes, this loop stops */
    struct event_base *base;
    struct evhttp *http;
    struct event *wake;
    uint64_t served; /* written by this thread only; read after join */
} bare_thread_t;

/* The response body, built once and sent by reference (never copied). */
static char *bare_body;
static size_t bare_body_len;

/* size bytes in all (at least the document's head plus its closing), so a cached
 * shopd page can be compared with a bare server sending as many bytes. */
static void
bare_build_body(size_t size)
{
    if (size < 400)
        size = 400;
    bare_body = malloc(size + 1);
    if (bare_body == NULL)
        abort();
    /* Shaped like a store document so serialisation-sized work is comparable. */
    int n = snprintf(bare_body, size + 1,
                     "{\"id\":\"0b9f6d2e-3c1a-4e7b-9a55-6f1d2c8e4a10\",\"slug\":\"demo\","
                     "\"name\":\"Demo Store\",\"currency\":\"USD\",\"status\":\"active\","
                     "\"timezone\":\"UTC\",\"locale\":\"en-US\",\"created_at\":"
                     "\"2026-01-01T00:00:00Z\",\"updated_at\":\"2026-01-01T00:00:00Z\","
                     "\"settings\":{\"tax_inclusive\":false,\"weight_unit\":\"kg\"},"
                     "\"padding\":\"");
    while ((size_t)n < size - 3)
        bare_body[n++] = 'x';
    memcpy(bare_body + n, "\"}\n", 4);
    bare_body_len = (size_t)n + 3;
}

static void
bare_handle(struct evhttp_request *req, void *arg)
{
    bare_thread_t *t = arg;
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
    evbuffer_add_reference(evhttp_request_get_output_buffer(req), bare_body, bare_body_len, NULL,
                           NULL);
    evhttp_send_reply(req, HTTP_OK, "OK", NULL);
    t->served++;
}

static void
bare_wake(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    bare_thread_t *t = arg;
    uint64_t v;
    if (read(fd, &v, sizeof(v)) < 0) { /* nothing to do: we stop either way */
    }
    event_base_loopbreak(t->base);
}

static void *
bare_thread_main(void *arg)
{
    bare_thread_t *t = arg;
    event_base_dispatch(t->base);
    return NULL;
}

/* A listening socket on ai with SO_REUSEPORT, so every thread can have one. */
static evutil_socket_t
bare_listen(const struct sockaddr *sa, socklen_t len)
{
    evutil_socket_t fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0 || bind(fd, sa, len) < 0 ||
        listen(fd, 4096) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

/* Sets up thread t: its socket (already bound), base, evhttp and wake event. */
static int
bare_thread_init(bare_thread_t *t)
{
    t->base = event_base_new();
    if (t->base == NULL)
        return -1;
    t->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (t->wake_fd < 0)
        return -1;
    t->wake = event_new(t->base, t->wake_fd, EV_READ, bare_wake, t);
    if (t->wake == NULL || event_add(t->wake, NULL) < 0)
        return -1;
    t->http = evhttp_new(t->base);
    if (t->http == NULL)
        return -1;
    evhttp_set_gencb(t->http, bare_handle, t);
    evhttp_set_timeout(t->http, 60);
    if (evhttp_accept_socket_with_handle(t->http, t->listen_fd) == NULL)
        return -1;
    t->listen_fd = -1; /* evhttp closes it when freed */
    return 0;
}

static void
bare_thread_fini(bare_thread_t *t)
{
    if (t->http != NULL)
        evhttp_free(t->http);
    if (t->wake != NULL)
        event_free(t->wake);
    if (t->wake_fd >= 0)
        close(t->wake_fd);
    if (t->listen_fd >= 0)
        close(t->listen_fd);
    if (t->base != NULL)
        event_base_free(t->base);
}

static void
bare_usage(FILE *out)
{
    fprintf(out, "usage: shopd-bare [-p port] [-t threads] [-h host] [-b bytes]\n"
                 "  -p port     port to listen on (default 8080; 0 picks a free one)\n"
                 "  -t threads  I/O threads, one event_base + evhttp each (default: cores)\n"
                 "  -h host     address to bind (default 127.0.0.1)\n"
                 "  -b, --body-size bytes\n"
                 "              body size (default 2048, at least 400, at most 16 MiB)\n"
                 "Every request is answered 200 with the same JSON body.\n");
}

int
main(int argc, char **argv)
{
    const char *host = "127.0.0.1";
    long port = 8080;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    long nthreads = cores > 0 ? cores : 1;
    int ch;
    long body_size = 2048;
    static const struct option longs[] = {{"help", no_argument, NULL, 'H'},
                                          {"body-size", required_argument, NULL, 'b'},
                                          {NULL, 0, NULL, 0}};
    while ((ch = getopt_long(argc, argv, "p:t:h:b:", longs, NULL)) != -1) {
        char *end = NULL;
        switch (ch) {
        case 'p':
            port = strtol(optarg, &end, 10);
            if (*end || port < 0 || port > 65535) {
                fprintf(stderr, "shopd-bare: bad port %s\n", optarg);
                return 2;
            }
            break;
        case 't':
            nthreads = strtol(optarg, &end, 10);
            if (*end || nthreads < 1 || nthreads > 1024) {
                fprintf(stderr, "shopd-bare: -t wants 1..1024\n");
                return 2;
            }
            break;
        case 'h':
            host = optarg;
            break;
        case 'b':
            body_size = strtol(optarg, &end, 10);
            if (*end || body_size < 400 || body_size > 16L * 1024 * 1024) {
                fprintf(stderr, "shopd-bare: --body-size wants 400..16777216\n");
                return 2;
            }
            break;
        case 'H':
            bare_usage(stdout);
            return 0;
        default:
            bare_usage(stderr);
            return 2;
        }
    }
    if (optind != argc) {
        bare_usage(stderr);
        return 2;
    }
    bare_build_body((size_t)body_size);

    /* Signals go to main's sigwait only; the threads inherit the mask. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    signal(SIGPIPE, SIG_IGN);

    int code = 1;
    int started = 0;
    struct addrinfo *ai = NULL;
    bare_thread_t *ts = calloc((size_t)nthreads, sizeof(*ts));
    if (ts == NULL)
        goto out;
    for (long i = 0; i < nthreads; i++) {
        ts[i].idx = (int)i;
        ts[i].listen_fd = -1;
        ts[i].wake_fd = -1;
    }

    char portstr[8];
    snprintf(portstr, sizeof(portstr), "%ld", port);
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
    int gai = getaddrinfo(host, portstr, &hints, &ai);
    if (gai != 0) {
        fprintf(stderr, "shopd-bare: cannot resolve %s: %s\n", host, gai_strerror(gai));
        goto out;
    }
    struct sockaddr_storage addr;
    socklen_t addrlen = ai->ai_addrlen;
    memcpy(&addr, ai->ai_addr, addrlen);
    for (long i = 0; i < nthreads; i++) {
        ts[i].listen_fd = bare_listen((struct sockaddr *)&addr, addrlen);
        if (ts[i].listen_fd < 0) {
            fprintf(stderr, "shopd-bare: cannot listen on %s:%ld: %s\n", host, port,
                    strerror(errno));
            goto out;
        }
        if (i == 0 && port == 0) {
            /* The others must join the port the kernel picked for the first. */
            if (getsockname(ts[0].listen_fd, (struct sockaddr *)&addr, &addrlen) < 0)
                goto out;
            port = ntohs(addr.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&addr)->sin6_port
                                                    : ((struct sockaddr_in *)&addr)->sin_port);
        }
        if (bare_thread_init(&ts[i]) < 0) {
            fprintf(stderr, "shopd-bare: cannot set up thread %ld\n", i);
            goto out;
        }
    }
    for (; started < nthreads; started++) {
        if (pthread_create(&ts[started].th, NULL, bare_thread_main, &ts[started]) != 0) {
            fprintf(stderr, "shopd-bare: cannot start thread %d\n", started);
            goto out;
        }
    }
    printf("shopd-bare: listening on http://%s%s%s:%ld with %ld threads, %zu-byte body\n",
           strchr(host, ':') ? "[" : "", host, strchr(host, ':') ? "]" : "", port, nthreads,
           bare_body_len);
    fflush(stdout);

    int sig = 0;
    sigwait(&stop, &sig);
    code = 0;
out:
    for (int i = 0; i < started; i++) {
        uint64_t one = 1;
        if (write(ts[i].wake_fd, &one, sizeof(one)) < 0)
            fprintf(stderr, "shopd-bare: cannot wake thread %d\n", i);
    }
    uint64_t served = 0;
    for (int i = 0; i < started; i++) {
        pthread_join(ts[i].th, NULL);
        served += ts[i].served;
    }
    if (ts != NULL) {
        for (long i = 0; i < nthreads; i++)
            bare_thread_fini(&ts[i]);
    }
    free(ts);
    free(bare_body);
    if (ai != NULL)
        freeaddrinfo(ai);
    if (code == 0) {
        printf("shopd-bare: stopped after %llu requests\n", (unsigned long long)served);
        fflush(stdout);
    }
    return code;
}
