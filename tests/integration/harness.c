/*
 * harness.c: the private database of a test program, spawning and stopping
 * shopd (the stop as a test case of its own), HTTP through libcurl, raw
 * sockets. See harness.h.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* program_invocation_short_name */
#endif
#include "harness.h"
#include "shopd/db.h"
#include "shopd/kv.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

extern char **environ;

const char *
th_env(const char *name)
{
    const char *v = getenv(name);
    if (v == NULL || *v == '\0') {
        fprintf(stderr, "integration tests need %s (run scripts/test.sh)\n", name);
        exit(1);
    }
    return v;
}

bool
th_in_ci(void)
{
    const char *ci = getenv("CI");
    return ci && (!strcasecmp(ci, "true") || !strcmp(ci, "1"));
}

void
th_skip_or_fail(const char *why)
{
    if (th_in_ci())
        fail_msg("cannot run in CI: %s", why);
    print_message("SKIPPED: %s\n", why);
    skip();
}

bool
th_wait_until(bool (*cond)(void *arg), void *arg, int timeout_ms)
{
    for (int waited = 0;; waited += 10) {
        if (cond(arg))
            return true;
        if (waited >= timeout_ms)
            return false;
        usleep(10000);
    }
}

/* ---- the program's own database ------------------------------------------------ */

static char admin_url[512];
static char private_db[64];
static pid_t private_db_owner;

/* url with its database name replaced by db (the path of a postgresql:// URL, or a
 * dbname= keyword appended to a key=value string). */
static void
url_with_db(const char *url, const char *db, char *out, size_t n)
{
    const char *scheme = strstr(url, "://");
    if (scheme == NULL) {
        snprintf(out, n, "%s dbname=%s", url, db);
        return;
    }
    const char *path = strchr(scheme + 3, '/');
    const char *query = strchr(scheme + 3, '?');
    if (path == NULL || (query && path > query))
        path = query ? query : url + strlen(url);
    const char *rest = query ? query : url + strlen(url);
    snprintf(out, n, "%.*s/%s%s", (int)(path - url), url, db, rest);
}

static bool
admin_exec(const char *url, const char *sql, char *err, size_t errlen)
{
    PGconn *c = PQconnectdb(url);
    bool ok = PQstatus(c) == CONNECTION_OK;
    if (ok) {
        PQclear(PQexec(c, "SET client_min_messages = warning"));
        PGresult *r = PQexec(c, sql);
        ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
        if (!ok)
            snprintf(err, errlen, "%s", PQresultErrorMessage(r));
        PQclear(r);
    } else {
        snprintf(err, errlen, "%s", PQerrorMessage(c));
    }
    PQfinish(c);
    return ok;
}

static void
drop_private_db(void)
{
    if (private_db[0] == '\0')
        return;
    char sql[128], err[512];
    snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s WITH (FORCE)", private_db);
    if (!admin_exec(admin_url, sql, err, sizeof(err)))
        fprintf(stderr, "harness: could not drop database %s: %s", private_db, err);
}

/* ---- the program's own Redis database -------------------------------------------- */

/* Store ids start at 1 in every private PostgreSQL database, so servers of two
 * programs sharing one Redis database would read each other's cached stores and
 * pages. Each program takes a Redis database of its own: a key
 * shopd-test:redis-db:N in the runner's database holds the owner's pid. 5 and 9
 * are left out: test_db_kv and test_auth use them by number. */
static char redis_host[256], redis_pw[256];
static int redis_port, redis_base_db, private_redis_db = -1;

static redisContext *
redis_admin(void)
{
    struct timeval tv = {5, 0};
    redisContext *c = redisConnectWithTimeout(redis_host, redis_port, tv);
    if (c == NULL || c->err) {
        fprintf(stderr, "harness: cannot reach Redis %s:%d: %s\n", redis_host, redis_port,
                c ? c->errstr : "out of memory");
        if (c)
            redisFree(c);
        return NULL;
    }
    redisReply *r = NULL;
    if (redis_pw[0])
        freeReplyObject(redisCommand(c, "AUTH %s", redis_pw));
    r = redisCommand(c, "SELECT %d", redis_base_db);
    freeReplyObject(r);
    return c;
}

static bool
reply_ok(redisReply *r)
{
    return r && r->type == REDIS_REPLY_STATUS && !strcmp(r->str, "OK");
}

/* Takes database n if it is free or its owner is dead; true when it is ours. */
static bool
claim_redis_db(redisContext *c, int n)
{
    char key[64], me[16];
    snprintf(key, sizeof(key), "shopd-test:redis-db:%d", n);
    snprintf(me, sizeof(me), "%d", (int)getpid());
    redisReply *r = redisCommand(c, "SET %s %s NX EX 3600", key, me);
    bool ok = reply_ok(r);
    freeReplyObject(r);
    if (ok)
        return true;
    r = redisCommand(c, "GET %s", key);
    int owner = r && r->type == REDIS_REPLY_STRING ? atoi(r->str) : 0;
    freeReplyObject(r);
    if (owner <= 0 || (kill(owner, 0) == 0 || errno != ESRCH))
        return false;
    /* The owner died without releasing it: take over, unless someone else just did. */
    char was[16];
    snprintf(was, sizeof(was), "%d", owner);
    r = redisCommand(c, "EVAL %s 1 %s %s %s",
                     "if redis.call('GET', KEYS[1]) == ARGV[1] then "
                     "return redis.call('SET', KEYS[1], ARGV[2], 'EX', 3600) end return nil",
                     key, was, me);
    ok = reply_ok(r);
    freeReplyObject(r);
    return ok;
}

static void
release_redis_db(void)
{
    if (private_redis_db < 0)
        return;
    redisContext *c = redis_admin();
    if (c == NULL)
        return;
    freeReplyObject(redisCommand(c, "SELECT %d", private_redis_db));
    freeReplyObject(redisCommand(c, "FLUSHDB"));
    freeReplyObject(redisCommand(c, "SELECT %d", redis_base_db));
    char key[64];
    snprintf(key, sizeof(key), "shopd-test:redis-db:%d", private_redis_db);
    freeReplyObject(redisCommand(c, "DEL %s", key));
    redisFree(c);
    private_redis_db = -1;
}

static void
take_private_redis_db(void)
{
    const char *base = getenv("SHOPD_TEST_REDIS_URL");
    if (base == NULL || *base == '\0')
        return;
    if (kv_parse_url(base, redis_host, sizeof(redis_host), &redis_port, &redis_base_db, redis_pw,
                     sizeof(redis_pw)) != 0) {
        fprintf(stderr, "harness: cannot parse SHOPD_TEST_REDIS_URL %s\n", base);
        exit(1);
    }
    redisContext *c = redis_admin();
    if (c == NULL)
        exit(1);
    for (int n = 1; n < 16 && private_redis_db < 0; n++)
        if (n != 5 && n != 9 && n != redis_base_db && claim_redis_db(c, n))
            private_redis_db = n;
    if (private_redis_db < 0) {
        redisFree(c);
        fprintf(stderr, "harness: no free Redis database for this test program (all taken)\n");
        exit(1);
    }
    freeReplyObject(redisCommand(c, "SELECT %d", private_redis_db));
    freeReplyObject(redisCommand(c, "FLUSHDB")); /* whatever a dead owner left */
    redisFree(c);
    char url[600];
    if (redis_pw[0])
        snprintf(url, sizeof(url), "redis://:%s@%s:%d/%d", redis_pw, redis_host, redis_port,
                 private_redis_db);
    else
        snprintf(url, sizeof(url), "redis://%s:%d/%d", redis_host, redis_port, private_redis_db);
    setenv("SHOPD_TEST_ADMIN_REDIS_URL", base, 1);
    setenv("SHOPD_TEST_REDIS_URL", url, 1);
}

static void kill_leftover_servers(void);

/* At exit of the test program (not of a forked child): servers a failed test left
 * running are killed, then the private database is dropped. */
/* Redis servers th_redis_start started: killed at exit, so a test that failed
 * before stopping its own leaves none behind. */
#define TH_MAX_REDIS 16
static pid_t redis_pids[TH_MAX_REDIS];

/* True if pid is still our child (not reaped by its test, so not reused by
 * another process): its parent in /proc is us. */
static bool
our_child(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return false;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *rp = strrchr(buf, ')'); /* "pid (comm) state ppid ..." */
    int ppid = 0;
    char state;
    return rp && sscanf(rp + 1, " %c %d", &state, &ppid) == 2 && ppid == (int)getpid();
}

static void
kill_leftover_redis(void)
{
    for (int i = 0; i < TH_MAX_REDIS; i++) {
        if (redis_pids[i] > 0 && our_child(redis_pids[i])) {
            kill(redis_pids[i], SIGKILL);
            waitpid(redis_pids[i], NULL, 0);
        }
        redis_pids[i] = 0;
    }
}

static void
harness_exit(void)
{
    if (getpid() != private_db_owner)
        return;
    kill_leftover_servers();
    kill_leftover_redis();
    drop_private_db();
    release_redis_db();
}

/* Runs before main(): creates shopd_<program>_<pid> and points SHOPD_TEST_DATABASE_URL
 * at it, so everything the program starts or queries uses it (see harness.h). */
__attribute__((constructor)) static void
create_private_db(void)
{
    private_db_owner = getpid();
    atexit(harness_exit);
    const char *base = getenv("SHOPD_TEST_DATABASE_URL");
    const char *shared = getenv("SHOPD_TEST_SHARED_DB");
    if (getenv("SHOPD_TEST_URL") != NULL || (shared && !strcmp(shared, "1")))
        return;
    take_private_redis_db();
    if (base == NULL || *base == '\0')
        return;
    char prog[40] = "";
    size_t k = 0;
    for (const char *p = program_invocation_short_name; *p && k + 1 < sizeof(prog); p++)
        prog[k++] = isalnum((unsigned char)*p) ? (char)tolower((unsigned char)*p) : '_';
    prog[k] = '\0';
    snprintf(private_db, sizeof(private_db), "shopd_%s_%d", prog, (int)getpid());
    snprintf(admin_url, sizeof(admin_url), "%s", base);
    char sql[256], err[512], url[600];
    snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s WITH (FORCE)", private_db);
    bool ok = admin_exec(admin_url, sql, err, sizeof(err));
    snprintf(sql, sizeof(sql), "CREATE DATABASE %s", private_db);
    ok = ok && admin_exec(admin_url, sql, err, sizeof(err));
    if (!ok) {
        fprintf(stderr, "harness: cannot create the test database %s: %s", private_db, err);
        private_db[0] = '\0';
        exit(1);
    }
    url_with_db(admin_url, private_db, url, sizeof(url));
    /* Like scripts/services.sh does for the shared database. */
    if (!admin_exec(url,
                    "DO $$ BEGIN IF EXISTS (SELECT FROM pg_available_extensions WHERE name = "
                    "'pg_trgm') THEN CREATE EXTENSION IF NOT EXISTS pg_trgm; END IF; END $$",
                    err, sizeof(err))) {
        fprintf(stderr, "harness: pg_trgm in %s: %s", private_db, err);
        exit(1);
    }
    setenv("SHOPD_TEST_ADMIN_DATABASE_URL", admin_url, 1);
    setenv("SHOPD_TEST_DATABASE_URL", url, 1);
}

/* ---- ports ----------------------------------------------------------------------- */

/* Binds a port picked by the kernel and keeps the socket: SO_REUSEPORT lets shopd
 * (same user, same option) bind it as well, while nobody else can take it, neither
 * another test's bind(0) nor an outgoing connection's ephemeral port nor a server
 * binding it with SO_REUSEADDR (which is why this socket does not set that), until
 * the socket is closed. Returns the fd, the port in *port. */
static int
reserve_port(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof(a);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    getsockname(fd, (struct sockaddr *)&a, &al);
    *port = ntohs(a.sin_port);
    return fd;
}

int
th_free_port(void)
{
    int port;
    close(reserve_port(&port));
    return port;
}

/* Builds the child environment: ours, the test settings, then extra (later wins). */
static char **
child_env(int port, const char *const *extra)
{
    static char bufs[12][512];
    size_t n = 0, cap = 64;
    char **env = calloc(cap, sizeof(char *));
    /* Extra settings first: lookups take the first match, so they win. */
    for (const char *const *x = extra; x && *x; x++) {
        if (n + 2 >= cap)
            env = realloc(env, (cap *= 2) * sizeof(char *));
        env[n++] = (char *)*x;
    }
    for (char **e = environ; *e; e++) {
        if (!strncmp(*e, "SHOPD_", 6) && strncmp(*e, "SHOPD_TEST_", 11))
            continue;
        if (n + 16 >= cap)
            env = realloc(env, (cap *= 2) * sizeof(char *));
        env[n++] = *e;
    }
    snprintf(bufs[0], 512, "SHOPD_DATABASE_URL=%s", th_env("SHOPD_TEST_DATABASE_URL"));
    snprintf(bufs[1], 512, "SHOPD_REDIS_URL=%s", th_env("SHOPD_TEST_REDIS_URL"));
    snprintf(bufs[2], 512, "SHOPD_LISTEN=127.0.0.1:%d", port);
    snprintf(bufs[3], 512, "SHOPD_PLATFORM_TOKEN=%s", TH_PLATFORM_TOKEN);
    snprintf(bufs[4], 512, "SHOPD_BASE_DOMAIN=%s", TH_BASE_DOMAIN);
    snprintf(bufs[5], 512, "SHOPD_SQL_DIR=%s",
             getenv("SHOPD_SQL_DIR") ? getenv("SHOPD_SQL_DIR") : "sql");
    snprintf(bufs[6], 512, "SHOPD_IO_THREADS=2");
    snprintf(bufs[7], 512, "SHOPD_WORKERS=2");
    /* Every test server shares one Redis and the client address 127.0.0.1: a shared
     * per-address login bucket would make parallel tests flaky. Tests of the limits
     * set their own value (extra settings win). */
    snprintf(bufs[8], 512, "SHOPD_AUTH_RATE_IP=0");
    /* The admin listener is off unless a test asks for it on a port of its own:
     * its default port would be one for every test server at once. */
    snprintf(bufs[9], 512, "SHOPD_ADMIN_LISTEN=");
    /* Likewise the edge's budgets on every route (one address, thousands of
     * requests per suite): off unless a test of the limits turns them on. */
    snprintf(bufs[10], 512, "SHOPD_RATE_LIMIT=false");
    /* One sealing key for every test server: they share the database, and a
     * restarted server must open what the first one sealed. */
    snprintf(bufs[11], 512, "SHOPD_SECRETS_KEY=%s", TH_SECRETS_KEY);
    if (n + 13 >= cap)
        env = realloc(env, (cap *= 2) * sizeof(char *));
    for (int i = 0; i < 12; i++)
        env[n++] = bufs[i];
    env[n] = NULL;
    return env;
}

static th_server_t *servers; /* started and not yet freed by th_stop */

static bool
log_contains(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return false;
    char line[1024];
    bool found = false;
    while (!found && fgets(line, sizeof(line), f))
        found = strstr(line, needle) != NULL;
    fclose(f);
    return found;
}

static void
print_log_tail(const char *path)
{
    char cmd[320];
    snprintf(cmd, sizeof(cmd), "tail -n 30 %s >&2", path);
    if (system(cmd) != 0) {
    }
}

/* One attempt: 1 on success (srv filled), 0 when the port could not be bound (try
 * another), and the test fails on any other problem. */
static int
start_once(th_server_t *srv, const char *const *extra_env)
{
    srv->reserve_fd = reserve_port(&srv->port);
    /* A server given a TLS certificate speaks HTTPS (th_req then does not verify
     * the certificate: tests make their own). */
    bool tls = false;
    for (const char *const *x = extra_env; x && *x; x++)
        tls |= strncmp(*x, "SHOPD_TLS_CERT=", 15) == 0 && (*x)[15] != '\0';
    snprintf(srv->url, sizeof(srv->url), "%s://127.0.0.1:%d", tls ? "https" : "http", srv->port);
    snprintf(srv->log_path, sizeof(srv->log_path), "/tmp/shopd-test-%d-%d.log", (int)getpid(),
             srv->port);
    char **env = child_env(srv->port, extra_env);
    const char *bin = th_env("SHOPD_BIN");
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(srv->log_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        char *argv[] = {(char *)bin, "serve", NULL};
        execve(bin, argv, env);
        _exit(127);
    }
    free(env);
    srv->pid = pid;
    for (int i = 0; i < 400; i++) { /* up to 20 s: a hang guard (ASan, migrations) */
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            srv->pid = 0;
            close(srv->reserve_fd);
            srv->reserve_fd = -1;
            if (log_contains(srv->log_path, "cannot listen on"))
                return 0;
            print_log_tail(srv->log_path);
            fail_msg("shopd exited at start (status %d)", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
        }
        th_resp_t r = th_req(srv, "GET", "/healthz", NULL, NULL);
        long s = r.status;
        th_resp_free(&r);
        if (s == 200)
            return 1;
        usleep(50000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    srv->pid = 0;
    print_log_tail(srv->log_path);
    fail_msg("shopd did not answer /healthz within 20 s (log: %s)", srv->log_path);
    return 0;
}

th_server_t *
th_start(const char *const *extra_env)
{
    th_server_t *srv = calloc(1, sizeof(*srv));
    srv->reserve_fd = -1;
    const char *ext = getenv("SHOPD_TEST_URL");
    if (ext) {
        snprintf(srv->url, sizeof(srv->url), "%s", ext);
        srv->pid = 0;
        return srv;
    }
    /* The port is held from before shopd starts until it stops, so a bind failure
     * means something outside the harness took it: retry on another one. */
    for (int attempt = 0; attempt < 5; attempt++) {
        if (start_once(srv, extra_env)) {
            srv->next = servers;
            servers = srv;
            return srv;
        }
        fprintf(stderr, "harness: shopd could not bind port %d, retrying\n", srv->port);
    }
    fail_msg("shopd could not bind a port in 5 attempts (log: %s)", srv->log_path);
    return NULL;
}

static void
kill_leftover_servers(void)
{
    for (th_server_t *s = servers; s; s = s->next)
        if (!s->stopped && s->pid > 0) {
            fprintf(stderr,
                    "harness: killing shopd on port %d, left running by a failed test (log: %s)\n",
                    s->port, s->log_path);
            kill(s->pid, SIGKILL);
            waitpid(s->pid, NULL, 0);
            s->pid = 0;
        }
}

/* SIGTERM, wait up to 15 s, else SIGKILL. Returns the exit status as th_stop does. */
static int
stop_process(th_server_t *srv)
{
    int status = -1;
    if (srv->pid > 0) {
        kill(srv->pid, SIGTERM);
        int st;
        for (int i = 0; i < 300; i++) {
            if (waitpid(srv->pid, &st, WNOHANG) == srv->pid) {
                status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
                break;
            }
            usleep(50000);
        }
        if (status == -1) {
            kill(srv->pid, SIGKILL);
            waitpid(srv->pid, &st, 0);
        }
        if (status == 0) {
            unlink(srv->log_path);
        } else {
            fprintf(stderr, "harness: shopd on port %d stopped with status %d (log: %s):\n",
                    srv->port, status, srv->log_path);
            print_log_tail(srv->log_path);
        }
        srv->pid = 0;
    } else {
        /* An external server (SHOPD_TEST_URL), or one the test stopped itself
         * (setting pid to 0) after checking its exit status. */
        status = 0;
    }
    if (srv->reserve_fd >= 0)
        close(srv->reserve_fd);
    srv->reserve_fd = -1;
    srv->stopped = true;
    srv->exit_status = status;
    return status;
}

int
th_stop(th_server_t *srv)
{
    if (srv == NULL)
        return -1;
    int status = srv->stopped ? srv->exit_status : stop_process(srv);
    for (th_server_t **pp = &servers; *pp; pp = &(*pp)->next)
        if (*pp == srv) {
            *pp = srv->next;
            break;
        }
    free(srv);
    return status;
}

void
th_test_stop_all(void **state)
{
    (void)state;
    int failed = 0, stopped = 0;
    char first[400] = "";
    for (th_server_t *s = servers; s; s = s->next) {
        if (s->stopped)
            continue;
        stopped++;
        int st = stop_process(s);
        if (st != 0 && failed++ == 0)
            snprintf(first, sizeof(first), "shopd on port %d exited %d (log: %s)", s->port, st,
                     s->log_path);
    }
    print_message("stopped %d server(s)\n", stopped);
    if (failed)
        fail_msg("%d server(s) did not stop cleanly; first: %s", failed, first);
}

int
th_run_shopd(const char *const *argv, const char *const *extra_env, char *err, size_t errlen)
{
    int pipefd[2];
    assert_int_equal(pipe(pipefd), 0);
    char **env = child_env(th_free_port(), extra_env);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(pipefd[1], 2);
        dup2(pipefd[1], 1);
        close(pipefd[0]);
        execve(th_env("SHOPD_BIN"), (char *const *)argv, env);
        _exit(127);
    }
    free(env);
    close(pipefd[1]);
    size_t got = 0;
    ssize_t n;
    char sink[4096];
    /* Read to the end (discarding what does not fit) so the child never dies of SIGPIPE. */
    while ((n = got + 1 < errlen ? read(pipefd[0], err + got, errlen - got - 1)
                                 : read(pipefd[0], sink, sizeof(sink))) > 0)
        if (got + 1 < errlen)
            got += (size_t)n;
    err[got] = '\0';
    close(pipefd[0]);
    int st;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

typedef struct grow_s {
    char *p;
    size_t n;
} grow_t;

static size_t
grow_cb(char *data, size_t size, size_t nmemb, void *arg)
{
    grow_t *g = arg;
    size_t add = size * nmemb;
    g->p = realloc(g->p, g->n + add + 1);
    memcpy(g->p + g->n, data, add);
    g->n += add;
    g->p[g->n] = '\0';
    return add;
}

/* What no answer may carry (OWASP API8, issue 18): connection URLs, the test
 * secrets, the source tree's paths and file:line marks, PostgreSQL's error
 * text and sanitizer or crash reports. Every answer th_req reads in every
 * integration test is scanned, so a leak anywhere fails the test that saw it.
 * Secrets at rest too: the sealing key, any sealed value ("seal1."), a Stripe
 * secret key (answers show its last 4 characters only). */
static const char *const leak_marks[] = {"postgresql://",
                                         "postgres://",
                                         "redis://",
                                         TH_PLATFORM_TOKEN,
                                         TH_PASSWORD,
                                         TH_SECRETS_KEY,
                                         "seal1.",
                                         "sk_test_",
                                         "ERROR:  ",
                                         "syntax error at or near",
                                         "violates ",
                                         "duplicate key value",
                                         "PGRES_",
                                         "AddressSanitizer",
                                         "runtime error:",
                                         "Segmentation fault",
                                         "backtrace",
#ifdef SHOPD_SOURCE_DIR
                                         SHOPD_SOURCE_DIR "/",
#endif
                                         NULL};

/* The first leak in text (n bytes), or NULL: a mark above, or "<name>.c:<digit>". */
static const char *
leak_in(const char *text, size_t n, const char **mark)
{
    for (const char *const *m = leak_marks; *m; m++) {
        const char *hit = memmem(text, n, *m, strlen(*m));
        if (hit) {
            *mark = *m;
            return hit;
        }
    }
    for (const char *p = text; (p = memmem(p, n - (size_t)(p - text), ".c:", 3)) != NULL; p++) {
        if ((size_t)(p - text) + 3 < n && p[3] >= '0' && p[3] <= '9' && p > text &&
            (isalnum((unsigned char)p[-1]) || p[-1] == '_')) {
            *mark = "a source file:line";
            return p;
        }
    }
    return NULL;
}

static void
leak_check(const char *method, const char *path, const char *text, size_t n)
{
    const char *mark;
    const char *hit = text ? leak_in(text, n, &mark) : NULL;
    if (hit == NULL)
        return;
    size_t off = (size_t)(hit - text), from = off > 60 ? off - 60 : 0;
    fail_msg("%s %s: the answer leaks %s: ...%.*s...", method, path, mark,
             (int)(n - from > 160 ? 160 : n - from), text + from);
}

th_resp_t
th_req(th_server_t *srv, const char *method, const char *path, const char *const *headers,
       const char *body)
{
    return th_req_n(srv, method, path, headers, body, body ? strlen(body) : 0);
}

th_resp_t
th_req_n(th_server_t *srv, const char *method, const char *path, const char *const *headers,
         const char *body, size_t blen)
{
    th_resp_t r = {0};
    grow_t b = {0}, h = {0};
    CURL *curl = curl_easy_init();
    char url[1024];
    snprintf(url, sizeof(url), "%s%s", srv->url, path);
    if (strncmp(srv->url, "https:", 6) == 0) {
        curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, grow_cb);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, grow_cb);
    curl_easy_setopt(curl, CURLOPT_HEADERDATA, &h);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT, 30L);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    struct curl_slist *sl = NULL;
    bool has_ct = false;
    for (const char *const *x = headers; x && *x; x++) {
        sl = curl_slist_append(sl, *x);
        if (!strncasecmp(*x, "Content-Type:", 13))
            has_ct = true;
    }
    if (body) {
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, (long)blen);
        if (!has_ct)
            sl = curl_slist_append(sl, "Content-Type: application/json");
    }
    if (!strcmp(method, "HEAD"))
        curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, sl);
    CURLcode cc = curl_easy_perform(curl);
    if (cc == CURLE_OK)
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &r.status);
    curl_slist_free_all(sl);
    curl_easy_cleanup(curl);
    r.body = b.p ? b.p : strdup("");
    r.len = b.n;
    r.headers = h.p ? h.p : strdup("");
    r.json = r.len ? json_loadb(r.body, r.len, 0, NULL) : NULL;
    leak_check(method, path, r.headers, strlen(r.headers));
    leak_check(method, path, r.body, r.len);
    return r;
}

th_resp_t
th_platform(th_server_t *srv, const char *method, const char *path, const char *body)
{
    const char *h[] = {"Authorization: Bearer " TH_PLATFORM_TOKEN, NULL};
    return th_req(srv, method, path, h, body);
}

const char *
th_header(const th_resp_t *r, const char *name)
{
    static __thread char val[512];
    size_t nl = strlen(name);
    for (const char *p = r->headers; p && *p;) {
        const char *eol = strstr(p, "\r\n");
        if (eol == NULL)
            break;
        if ((size_t)(eol - p) > nl && !strncasecmp(p, name, nl) && p[nl] == ':') {
            const char *v = p + nl + 1;
            while (*v == ' ')
                v++;
            snprintf(val, sizeof(val), "%.*s", (int)(eol - v), v);
            return val;
        }
        p = eol + 2;
    }
    return NULL;
}

const char *
th_error_code(const th_resp_t *r)
{
    json_t *c = json_object_get(json_object_get(r->json, "error"), "code");
    return json_is_string(c) ? json_string_value(c) : "";
}

void
th_resp_free(th_resp_t *r)
{
    free(r->body);
    free(r->headers);
    json_decref(r->json);
    memset(r, 0, sizeof(*r));
}

int
th_connect(th_server_t *srv)
{
    int port = srv->port;
    if (port == 0)
        sscanf(srv->url, "http://127.0.0.1:%d", &port);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    return fd;
}

size_t
th_raw(th_server_t *srv, const char *bytes, size_t len, char *out, size_t outcap, int timeout_ms)
{
    int fd = th_connect(srv);
    size_t sent = 0;
    while (sent < len) {
        ssize_t w = send(fd, bytes + sent, len - sent, MSG_NOSIGNAL);
        if (w <= 0)
            break; /* the server may answer and close before reading everything */
        sent += (size_t)w;
    }
    size_t got = 0;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    while (got + 1 < outcap && poll(&p, 1, timeout_ms) > 0) {
        ssize_t n = recv(fd, out + got, outcap - got - 1, 0);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    out[got] = '\0';
    close(fd);
    return got;
}

const char *
th_slug(const char *prefix)
{
    static __thread char buf[64];
    static __thread unsigned seq;
    unsigned r = (unsigned)getpid() * 2654435761u ^ (unsigned)time(NULL) ^ (++seq * 40503u);
    snprintf(buf, sizeof(buf), "%s-%x-%u", prefix, r, seq);
    return buf;
}

long
th_create_store(th_server_t *srv, const char *slug, const char *extra)
{
    char body[1024];
    snprintf(body, sizeof(body), "{\"slug\":\"%s\",\"name\":\"Store %s\",\"currency\":\"USD\"%s%s}",
             slug, slug, extra ? "," : "", extra ? extra : "");
    th_resp_t r = th_platform(srv, "POST", "/api/v1/stores", body);
    if (r.status != 201)
        fail_msg("create store %s: %ld %s", slug, r.status, r.body);
    long id = (long)json_integer_value(json_object_get(r.json, "id"));
    th_resp_free(&r);
    return id;
}

int
th_redis_start(int port, const char *dir)
{
    char ps[16];
    snprintf(ps, sizeof(ps), "%d", port);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        /* Not on our stdout/stderr: a redis left behind must not hold the test
         * runner's pipe open. */
        int devnull = open("/dev/null", O_WRONLY);
        dup2(devnull, 1);
        dup2(devnull, 2);
        if (dir)
            execlp("redis-server", "redis-server", "--port", ps, "--bind", "127.0.0.1", "--dir",
                   dir, "--dbfilename", "dump.rdb", "--save", "", "--appendonly", "no",
                   (char *)NULL);
        else
            execlp("redis-server", "redis-server", "--port", ps, "--bind", "127.0.0.1", "--save",
                   "", "--appendonly", "no", (char *)NULL);
        _exit(127);
    }
    char cmd[160], want[64];
    snprintf(cmd, sizeof(cmd), "redis-cli -p %d info server 2>/dev/null", port);
    snprintf(want, sizeof(want), "process_id:%d", (int)pid);
    for (int i = 0; i < 400; i++) {
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid)
            return -1; /* it exited: the port was taken */
        FILE *p = popen(cmd, "r");
        bool ours = false;
        char line[256];
        while (p && fgets(line, sizeof(line), p))
            if (strncmp(line, want, strlen(want)) == 0 &&
                (line[strlen(want)] == '\r' || line[strlen(want)] == '\n'))
                ours = true;
        if (p)
            pclose(p);
        if (ours) {
            for (int k = 0; k < TH_MAX_REDIS; k++) {
                /* a free slot, or one whose process has gone (its test stopped it) */
                if (redis_pids[k] <= 0 || !our_child(redis_pids[k])) {
                    redis_pids[k] = pid;
                    break;
                }
            }
            return (int)pid;
        }
        usleep(25000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return -1;
}

db_pool_t *
th_pool_new(int size)
{
    char err[256] = "";
    db_pool_t *pool = db_pool_new(th_env("SHOPD_TEST_DATABASE_URL"), size, err, sizeof(err));
    if (pool == NULL)
        print_error("db_pool_new: %s\n", err);
    assert_non_null(pool);
    return pool;
}

void
th_exec_ok(db_conn_t *c, const char *sql)
{
    PGresult *r = db_exec(c, NULL, sql, 0, NULL);
    if (db_result_rc(r) != SHOPD_OK)
        print_error("%s: %s\n", sql, r ? PQresultErrorMessage(r) : "(no result)");
    assert_int_equal(db_result_rc(r), SHOPD_OK);
    PQclear(r);
}

long
th_query_long(db_conn_t *c, const char *sql)
{
    PGresult *r = db_exec(c, NULL, sql, 0, NULL);
    assert_int_equal(db_result_rc(r), SHOPD_OK);
    assert_int_equal(PQntuples(r), 1);
    long v = atol(PQgetvalue(r, 0, 0));
    PQclear(r);
    return v;
}

void
th_run(const char *cmd)
{
    char out[64], full[1400];
    snprintf(out, sizeof(out), "/tmp/shopd-th-run-%d.txt", (int)getpid());
    snprintf(full, sizeof(full), "{ %s ; } >%s 2>&1", cmd, out);
    int rc = system(full);
    if (rc != 0) {
        snprintf(full, sizeof(full), "tail -n 60 %s >&2", out);
        if (system(full) != 0) {
        } /* showing the output is best effort */
    }
    unlink(out);
    if (rc != 0)
        fail_msg("'%s' exited %d", cmd, rc);
}
