/*
 * The admin protocol against the real binary (docs/admin-protocol.md): the
 * hello (absent, wrong token, wrong version: one error frame, then close),
 * garbage and oversized frames, pipelined requests answered by id, a store
 * created over the admin port and seen over HTTP, tenant errors with the HTTP
 * API's codes, a STORE_ADMIN's token refused for platform operations, 100
 * connections at once, and shopctl run as a process: its output and exit codes.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "harness.h"
#include "shopd/admin.h"
#include "shopd/common.h"

#define ADMIN_TOKEN "adm-token-new"
#define ADMIN_TOKEN_OLD "adm-token-old"
#define MAX_FRAME 65536

static th_server_t *srv;
static int admin_port;
static char admin_addr[64];

static int
setup(void **state)
{
    static char listen[96], frame[64];
    admin_port = th_free_port();
    snprintf(admin_addr, sizeof(admin_addr), "127.0.0.1:%d", admin_port);
    snprintf(listen, sizeof(listen), "SHOPD_ADMIN_LISTEN=%s", admin_addr);
    snprintf(frame, sizeof(frame), "SHOPD_ADMIN_MAX_FRAME=%d", MAX_FRAME);
    /* A small body limit: import.products cuts its rows into batches of at most
     * half of it, so test_import_op sees several batches in one frame. */
    const char *env[] = {listen, "SHOPD_ADMIN_TOKEN=" ADMIN_TOKEN "," ADMIN_TOKEN_OLD, frame,
                         "SHOPD_MAX_BODY=16384", NULL};
    srv = th_start(env);
    return 0;
}

static int
teardown(void **state)
{
    if (srv == NULL)
        return -1;
    th_stop(srv);
    return 0;
}

/* ------------------------------------------------------------ a small client */

static int
dial(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)admin_port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    return fd;
}

static void
send_bytes(int fd, const void *p, size_t n)
{
    assert_int_equal(send(fd, p, n, MSG_NOSIGNAL), (ssize_t)n);
}

static void
send_json(int fd, json_t *v)
{
    size_t len;
    unsigned char *f = admin_encode_frame(v, &len);
    send_bytes(fd, f, len);
    shopd_free(f);
    json_decref(v);
}

static bool
read_n(int fd, unsigned char *p, size_t n)
{
    while (n > 0) {
        ssize_t r = recv(fd, p, n, 0);
        if (r <= 0)
            return false;
        p += r;
        n -= (size_t)r;
    }
    return true;
}

/* The next frame, or NULL at end of stream. */
static json_t *
read_json(int fd)
{
    unsigned char hdr[4];
    if (!read_n(fd, hdr, 4))
        return NULL;
    size_t n = 0;
    assert_int_not_equal(admin_frame_check(hdr, 4, 64u << 20, &n), ADMIN_FRAME_TOO_BIG);
    unsigned char *b = malloc(n);
    assert_true(read_n(fd, b, n));
    char err[128];
    json_t *v = admin_decode(b, n, err, sizeof(err));
    free(b);
    assert_non_null(v);
    return v;
}

/* True when the server closed the connection (no more bytes). */
static bool
closed_by_server(int fd)
{
    unsigned char c;
    return recv(fd, &c, 1, 0) == 0;
}

static const char *
err_code(json_t *answer)
{
    const char *c = json_string_value(json_object_get(json_object_get(answer, "error"), "code"));
    return c ? c : "";
}

static json_t *
hello_with(int fd, const char *token)
{
    send_json(fd,
              json_pack("{s:i,s:s,s:i,s:s}", "id", 0, "op", "hello", "version", 1, "token", token));
    return read_json(fd);
}

/* A connection that said hello with token. */
static int
session(const char *token)
{
    int fd = dial();
    json_t *h = hello_with(fd, token);
    assert_true(json_is_true(json_object_get(h, "ok")));
    json_decref(h);
    return fd;
}

/* One request and its answer (the next frame). */
static json_t *
ask(int fd, int id, const char *op, json_t *args)
{
    send_json(fd, json_pack("{s:i,s:s,s:o}", "id", id, "op", op, "args", args));
    json_t *a = read_json(fd);
    assert_non_null(a);
    assert_int_equal(json_integer_value(json_object_get(a, "id")), id);
    return a;
}

/* ------------------------------------------------------------ handshake */

static void
test_no_hello_closes(void **state)
{
    int fd = dial();
    send_json(fd, json_pack("{s:i,s:s}", "id", 1, "op", "stores.list"));
    json_t *a = read_json(fd);
    assert_false(json_is_true(json_object_get(a, "ok")));
    assert_string_equal(err_code(a), "hello_required");
    assert_true(closed_by_server(fd));
    json_decref(a);
    close(fd);
}

static void
test_wrong_token_and_version(void **state)
{
    int fd = dial();
    json_t *a = hello_with(fd, "not-the-token");
    assert_string_equal(err_code(a), "unauthenticated");
    assert_true(closed_by_server(fd));
    json_decref(a);
    close(fd);

    /* A prefix of a configured token is not that token. */
    fd = dial();
    a = hello_with(fd, "adm-token");
    assert_string_equal(err_code(a), "unauthenticated");
    json_decref(a);
    close(fd);

    fd = dial();
    send_json(fd, json_pack("{s:s,s:i,s:s}", "op", "hello", "version", 2, "token", ADMIN_TOKEN));
    a = read_json(fd);
    assert_string_equal(err_code(a), "unsupported_version");
    assert_true(closed_by_server(fd));
    json_decref(a);
    close(fd);

    /* Both tokens of a rotation are accepted. */
    fd = session(ADMIN_TOKEN_OLD);
    a = ask(fd, 5, "ping", json_object());
    assert_true(json_is_true(json_object_get(json_object_get(a, "result"), "pong")));
    json_decref(a);
    close(fd);
}

static void
test_garbage_and_oversize(void **state)
{
    /* Bytes that are no msgpack map: one error frame, then close. */
    int fd = dial();
    const unsigned char junk[] = {0, 0, 0, 5, 'h', 'e', 'l', 'l', 'o'};
    send_bytes(fd, junk, sizeof(junk));
    json_t *a = read_json(fd);
    assert_string_equal(err_code(a), "malformed_frame");
    assert_true(closed_by_server(fd));
    json_decref(a);
    close(fd);

    /* A header announcing more than the maximum, even after a good hello. */
    fd = session(ADMIN_TOKEN);
    unsigned char big[4];
    admin_frame_header(MAX_FRAME + 1, big);
    send_bytes(fd, big, 4);
    a = read_json(fd);
    assert_string_equal(err_code(a), "frame_too_large");
    assert_true(closed_by_server(fd));
    json_decref(a);
    close(fd);

    /* After the hello a bad frame is answered and the connection stays. */
    fd = session(ADMIN_TOKEN);
    const unsigned char arr[] = {0, 0, 0, 1, 0x90}; /* an empty array, not a map */
    send_bytes(fd, arr, sizeof(arr));
    a = read_json(fd);
    assert_string_equal(err_code(a), "malformed_frame");
    json_decref(a);
    a = ask(fd, 9, "ping", json_object());
    assert_true(json_is_true(json_object_get(a, "ok")));
    json_decref(a);
    close(fd);
}

/* ------------------------------------------------------------ operations */

static void
test_pipelined_by_id(void **state)
{
    int fd = session(ADMIN_TOKEN);
    /* Five requests in one write; answers may come in any order, each with its id. */
    const char *slug = th_slug("pipe");
    json_t *reqs[] = {
        json_pack("{s:i,s:s,s:{}}", "id", 11, "op", "stores.list", "args"),
        json_pack("{s:s,s:s,s:{s:s,s:s,s:s}}", "id", "create", "op", "stores.create", "args",
                  "slug", slug, "name", "Pipe", "currency", "EUR"),
        json_pack("{s:i,s:s}", "id", 13, "op", "ping"),
        json_pack("{s:i,s:s,s:{s:s}}", "id", 14, "op", "stores.get", "args", "id", "no-such-store"),
        json_pack("{s:i,s:s}", "id", 15, "op", "no.such.op"),
    };
    size_t total = 0;
    unsigned char buf[4096];
    for (size_t i = 0; i < 5; i++) {
        size_t len;
        unsigned char *f = admin_encode_frame(reqs[i], &len);
        memcpy(buf + total, f, len);
        total += len;
        shopd_free(f);
        json_decref(reqs[i]);
    }
    send_bytes(fd, buf, total);
    bool seen[5] = {false};
    for (int n = 0; n < 5; n++) {
        json_t *a = read_json(fd);
        assert_non_null(a);
        json_t *id = json_object_get(a, "id");
        if (json_is_string(id)) {
            assert_string_equal(json_string_value(id), "create");
            assert_true(json_is_true(json_object_get(a, "ok")));
            assert_string_equal(
                json_string_value(json_object_get(json_object_get(a, "result"), "slug")), slug);
            seen[1] = true;
        } else {
            json_int_t v = json_integer_value(id);
            if (v == 11) {
                assert_true(json_is_array(json_object_get(json_object_get(a, "result"), "data")));
            } else if (v == 13) {
                assert_true(json_is_true(json_object_get(a, "ok")));
            } else if (v == 14) {
                assert_string_equal(err_code(a), "store_not_found");
            } else {
                assert_int_equal(v, 15);
                assert_string_equal(err_code(a), "unknown_op");
            }
            seen[v == 11 ? 0 : v - 11] = true;
        }
        json_decref(a);
    }
    for (int i = 0; i < 5; i++)
        assert_true(seen[i]);
    close(fd);

    /* The store the admin port created is there over HTTP. */
    char path[128];
    snprintf(path, sizeof(path), "/api/v1/stores/%s", slug);
    th_resp_t r = th_platform(srv, "GET", path, NULL);
    assert_int_equal(r.status, 200);
    assert_string_equal(json_string_value(json_object_get(r.json, "name")), "Pipe");
    th_resp_free(&r);
}

static void
test_tenant_rules_and_validation(void **state)
{
    int fd = session(ADMIN_TOKEN);
    /* A store-scoped operation names its store; unknown -> the HTTP code. */
    json_t *a = ask(fd, 1, "products.list", json_pack("{s:s}", "store", "nope-nope"));
    assert_string_equal(err_code(a), "store_not_found");
    json_decref(a);
    a = ask(fd, 2, "products.list", json_object());
    assert_string_equal(err_code(a), "validation_failed");
    json_decref(a);
    /* An argument the operation does not take is refused, not ignored. */
    a = ask(fd, 3, "stores.list", json_pack("{s:s}", "colour", "red"));
    assert_string_equal(err_code(a), "validation_failed");
    json_decref(a);
    /* Body validation is the handler's: the same 422 as over HTTP. */
    a = ask(fd, 4, "stores.create", json_pack("{s:s}", "slug", "X"));
    assert_string_equal(err_code(a), "validation_failed");
    assert_true(json_array_size(json_object_get(json_object_get(a, "error"), "details")) > 0);
    json_decref(a);

    /* Suspend and resume: the store's API follows. */
    const char *slug = th_slug("susp");
    long id = th_create_store(srv, slug, NULL);
    a = ask(fd, 5, "stores.suspend", json_pack("{s:I}", "id", (json_int_t)id));
    assert_string_equal(json_string_value(json_object_get(json_object_get(a, "result"), "status")),
                        "suspended");
    json_decref(a);
    th_resp_t r = th_store_req(srv, id, NULL, "GET", "/api/v1/store", NULL);
    assert_int_equal(r.status, 403);
    assert_string_equal(th_error_code(&r), "store_suspended");
    th_resp_free(&r);
    a = ask(fd, 6, "products.list", json_pack("{s:I}", "store", (json_int_t)id));
    assert_string_equal(err_code(a), "store_suspended");
    json_decref(a);
    a = ask(fd, 7, "stores.resume", json_pack("{s:s}", "id", slug));
    assert_true(json_is_true(json_object_get(a, "ok")));
    json_decref(a);
    r = th_store_req(srv, id, NULL, "GET", "/api/v1/store", NULL);
    assert_int_equal(r.status, 200);
    th_resp_free(&r);

    /* tenant.resolve: by slug, and by host name as the edge reads Host. */
    char host[128];
    snprintf(host, sizeof(host), "%s.%s", slug, TH_BASE_DOMAIN);
    const char *keys[] = {slug, host};
    for (int k = 0; k < 2; k++) {
        a = ask(fd, 20 + k, "tenant.resolve", json_pack("{s:s}", "key", keys[k]));
        assert_true(json_is_true(json_object_get(a, "ok")));
        assert_string_equal(
            json_string_value(json_object_get(json_object_get(a, "result"), "slug")), slug);
        json_decref(a);
    }
    a = ask(fd, 22, "tenant.resolve", json_pack("{s:s}", "key", "unknown.example.org"));
    assert_string_equal(err_code(a), "store_not_found");
    json_decref(a);
    /* cache.flush: a control message to the store's actor, which runs every
     * module's flush hook and then answers: a cached catalog page is rebuilt
     * (its store's version moved) and the tenant entry read again. */
    r = th_store_req(srv, id, NULL, "GET", "/api/v1/products", NULL);
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
    r = th_store_req(srv, id, NULL, "GET", "/api/v1/products", NULL);
    assert_string_equal(th_header(&r, "X-Cache"), "hit");
    th_resp_free(&r);
    a = ask(fd, 23, "cache.flush", json_pack("{s:s}", "store", slug));
    json_t *fres = json_object_get(a, "result");
    assert_true(json_is_true(json_object_get(fres, "flushed")));
    assert_int_equal(json_integer_value(json_object_get(fres, "store_id")), id);
    json_t *mods = json_object_get(fres, "modules");
    int seen = 0;
    for (size_t i = 0; i < json_array_size(mods); i++) {
        const char *mn = json_string_value(json_array_get(mods, i));
        seen |= (!strcmp(mn, "store") ? 1 : 0) | (!strcmp(mn, "catalog") ? 2 : 0);
    }
    assert_int_equal(seen, 3);
    json_decref(a);
    r = th_store_req(srv, id, NULL, "GET", "/api/v1/products", NULL);
    assert_int_equal(r.status, 200);
    assert_string_equal(th_header(&r, "X-Cache"), "miss");
    th_resp_free(&r);
    /* By id and by host name too; an unknown store is 404, a missing one 422. */
    a = ask(fd, 25, "cache.flush", json_pack("{s:I}", "store", (json_int_t)id));
    assert_true(json_is_true(json_object_get(json_object_get(a, "result"), "flushed")));
    json_decref(a);
    a = ask(fd, 26, "cache.flush", json_pack("{s:s}", "store", host));
    assert_true(json_is_true(json_object_get(json_object_get(a, "result"), "flushed")));
    json_decref(a);
    a = ask(fd, 27, "cache.flush", json_pack("{s:s}", "store", "no-such-store-anywhere"));
    assert_string_equal(err_code(a), "store_not_found");
    json_decref(a);
    a = ask(fd, 24, "cache.flush", json_object());
    assert_string_equal(err_code(a), "validation_failed");
    json_decref(a);

    /* actors: the read lane products.list just used is listed with its turns. */
    a = ask(fd, 40, "products.list", json_pack("{s:I}", "store", (json_int_t)id));
    assert_true(json_is_true(json_object_get(a, "ok")));
    json_decref(a);
    a = ask(fd, 41, "actors.get", json_pack("{s:I}", "store", (json_int_t)id));
    json_t *lanes = json_object_get(json_object_get(a, "result"), "actors");
    assert_true(json_array_size(lanes) >= 1);
    bool read_lane = false;
    size_t li;
    json_t *lane;
    json_array_foreach(lanes, li, lane)
    {
        assert_int_equal(json_integer_value(json_object_get(lane, "store")), id);
        if (!strcmp(json_string_value(json_object_get(lane, "kind")), "read") &&
            json_integer_value(json_object_get(lane, "turns")) >= 1)
            read_lane = true;
    }
    assert_true(read_lane);
    json_decref(a);
    a = ask(fd, 42, "actors.list", json_pack("{s:i}", "limit", 1));
    assert_int_equal(json_array_size(json_object_get(json_object_get(a, "result"), "actors")), 1);
    assert_true(json_integer_value(json_object_get(json_object_get(a, "result"), "total")) >= 2);
    json_decref(a);

    /* Blocking process operations (their own thread). */
    a = ask(fd, 30, "migrations.status", json_object());
    json_t *mig = json_object_get(a, "result");
    assert_true(json_array_size(json_object_get(mig, "applied")) >= 6);
    assert_int_equal(json_array_size(json_object_get(mig, "pending")), 0);
    json_decref(a);
    const char *email = th_email("super");
    a = ask(fd, 31, "users.create-super-admin",
            json_pack("{s:s,s:s}", "email", email, "password", "Sturdy-pass-4711"));
    assert_true(json_is_true(json_object_get(a, "ok")));
    json_int_t uid = json_integer_value(json_object_get(json_object_get(a, "result"), "id"));
    assert_true(uid > 0);
    json_decref(a);
    a = ask(fd, 32, "users.create-super-admin",
            json_pack("{s:s,s:s}", "email", email, "password", "Sturdy-pass-4711"));
    assert_string_equal(err_code(a), "email_taken");
    json_decref(a);
    a = ask(fd, 33, "users.create-super-admin",
            json_pack("{s:s,s:s}", "email", th_email("weak"), "password", "aaaaaaaaaa"));
    assert_string_equal(err_code(a), "validation_failed");
    json_decref(a);
    a = ask(fd, 34, "users.disable", json_pack("{s:I}", "id", uid));
    assert_string_equal(json_string_value(json_object_get(json_object_get(a, "result"), "status")),
                        "disabled");
    json_decref(a);
    char idbuf[32];
    snprintf(idbuf, sizeof(idbuf), "%lld", (long long)uid);
    assert_string_equal(
        th_sql("SELECT status FROM users WHERE id = $1::bigint", (const char *[]){idbuf, NULL}),
        "disabled");
    a = ask(fd, 35, "users.enable", json_pack("{s:s}", "id", idbuf));
    assert_true(json_is_true(json_object_get(a, "ok")));
    json_decref(a);
    a = ask(fd, 36, "users.enable", json_pack("{s:i}", "id", 987654321));
    assert_string_equal(err_code(a), "user_not_found");
    json_decref(a);

    /* Process operations. */
    a = ask(fd, 8, "stats", json_object());
    json_t *res = json_object_get(a, "result");
    assert_true(json_is_object(json_object_get(res, "http")));
    assert_true(json_integer_value(json_object_get(json_object_get(res, "admin"), "connections")) >=
                1);
    json_decref(a);
    a = ask(fd, 9, "config.show", json_object());
    char *dump = json_dumps(json_object_get(a, "result"), 0);
    assert_null(strstr(dump, ADMIN_TOKEN));
    assert_null(strstr(dump, TH_PLATFORM_TOKEN));
    assert_non_null(strstr(dump, "admin-listen"));
    free(dump);
    json_decref(a);
    a = ask(fd, 10, "ops", json_object());
    dump = json_dumps(json_object_get(a, "result"), 0);
    assert_non_null(strstr(dump, "\"inventory.adjust\""));
    assert_non_null(strstr(dump, "\"stores.suspend\""));
    free(dump);
    json_decref(a);
    close(fd);
}

static void
test_store_admin_jwt(void **state)
{
    long store = th_create_store(srv, th_slug("jwt"), NULL);
    char *tok = th_token(srv, "STORE_ADMIN", store);
    int fd = session(tok);
    /* Platform operations: forbidden, as over HTTP. */
    json_t *a = ask(fd, 1, "stores.list", json_object());
    assert_string_equal(err_code(a), "forbidden");
    json_decref(a);
    a = ask(fd, 2, "stats", json_object());
    assert_string_equal(err_code(a), "forbidden");
    json_decref(a);
    a = ask(fd, 5, "users.disable", json_pack("{s:i}", "id", 1));
    assert_string_equal(err_code(a), "forbidden");
    json_decref(a);
    /* Its own store: fine; another store: forbidden by the worker's check. */
    a = ask(fd, 3, "users.list", json_pack("{s:I}", "store", (json_int_t)store));
    assert_true(json_is_true(json_object_get(a, "ok")));
    json_decref(a);
    long other = th_create_store(srv, th_slug("jwt2"), NULL);
    a = ask(fd, 4, "users.list", json_pack("{s:I}", "store", (json_int_t)other));
    assert_string_equal(err_code(a), "forbidden");
    json_decref(a);
    close(fd);
    /* A customer's token does not open an admin session. */
    char *ctok = th_token(srv, "CUSTOMER", store);
    fd = dial();
    a = hello_with(fd, ctok);
    assert_string_equal(err_code(a), "unauthenticated");
    json_decref(a);
    close(fd);
    free(ctok);
    free(tok);
}

static void
test_many_connections(void **state)
{
    enum { N = 100 };
    int fds[N];
    for (int i = 0; i < N; i++) {
        fds[i] = dial();
        send_json(fds[i],
                  json_pack("{s:s,s:i,s:s}", "op", "hello", "version", 1, "token", ADMIN_TOKEN));
        send_json(fds[i], json_pack("{s:i,s:s}", "id", i, "op", "stores.list"));
    }
    for (int i = 0; i < N; i++) {
        json_t *h = read_json(fds[i]);
        assert_true(json_is_true(json_object_get(h, "ok")));
        json_decref(h);
        json_t *a = read_json(fds[i]);
        assert_int_equal(json_integer_value(json_object_get(a, "id")), i);
        assert_true(json_is_true(json_object_get(a, "ok")));
        json_decref(a);
    }
    for (int i = 0; i < N; i++)
        close(fds[i]);
}

static int open_stream_fd = -1; /* left open: the server must stop with it (TH_STOP_TEST) */

static void
test_tail_and_cancel(void **state)
{
    int fd = session(ADMIN_TOKEN);
    send_json(fd, json_pack("{s:s,s:s,s:{s:[s]}}", "id", "t1", "op", "events.tail", "args", "kinds",
                            "access"));
    json_t *a = read_json(fd);
    assert_true(json_is_true(json_object_get(a, "more")));
    assert_true(json_is_true(json_object_get(json_object_get(a, "event"), "started")));
    json_decref(a);

    const char *hdr[] = {"X-Request-Id: tail-probe-4711", NULL};
    th_resp_t r = th_req(srv, "GET", "/healthz", hdr, NULL);
    th_resp_free(&r);
    /* Lines of other tests' requests may come first; ours arrives. */
    bool seen = false;
    for (int i = 0; i < 50 && !seen; i++) {
        a = read_json(fd);
        assert_non_null(a);
        assert_string_equal(json_string_value(json_object_get(a, "id")), "t1");
        assert_true(json_is_true(json_object_get(a, "more")));
        const char *line = json_string_value(json_object_get(json_object_get(a, "event"), "line"));
        assert_non_null(line);
        assert_non_null(strstr(line, " access ")); /* kinds: access only */
        seen = strstr(line, "rid=tail-probe-4711") != NULL;
        json_decref(a);
    }
    assert_true(seen);

    /* An unknown stream id, then the real one: its final frame ends it. */
    send_json(fd, json_pack("{s:s,s:s}", "id", "nope", "op", "cancel"));
    send_json(fd, json_pack("{s:s,s:s}", "id", "t1", "op", "cancel"));
    bool ended = false, refused = false;
    for (int i = 0; i < 50 && !ended; i++) {
        a = read_json(fd);
        const char *id = json_string_value(json_object_get(a, "id"));
        if (!strcmp(id, "nope")) {
            assert_string_equal(err_code(a), "not_found");
            refused = true;
        } else if (!json_is_true(json_object_get(a, "more"))) {
            assert_true(json_is_true(json_object_get(a, "ok")));
            assert_string_equal(
                json_string_value(json_object_get(json_object_get(a, "result"), "ended")),
                "cancelled");
            ended = true;
        }
        json_decref(a);
    }
    assert_true(ended && refused);
    /* Nothing more for t1; the connection goes on. */
    a = ask(fd, 77, "ping", json_object());
    assert_true(json_is_true(json_object_get(a, "ok")));
    json_decref(a);

    a = ask(fd, 78, "events.tail", json_pack("{s:s}", "kinds", "weird"));
    assert_string_equal(err_code(a), "validation_failed");
    json_decref(a);
    close(fd);

    /* A stream left open when the server stops: ended by the server, exit 0. */
    open_stream_fd = session(ADMIN_TOKEN);
    send_json(open_stream_fd, json_pack("{s:i,s:s}", "id", 1, "op", "events.tail"));
    a = read_json(open_stream_fd);
    assert_true(json_is_true(json_object_get(a, "more")));
    json_decref(a);
}

/* import.products: the rows cut into batches of products.import (about six
 * here: SHOPD_MAX_BODY is 16 KiB), one answer for all, the rejected rows
 * numbered in the whole import; each row with a variant and its stock. */
/* The jobs and webhook routes are operations too: a store's endpoints made,
 * read, replayed and removed, and its dead letters listed, over the admin port. */
static void
test_jobs_and_webhook_ops(void **state)
{
    (void)state;
    int fd = session(ADMIN_TOKEN);
    long id = th_create_store(srv, th_slug("hooks"), NULL);
    json_t *a = ask(fd, 1, "webhooks.create",
                    json_pack("{s:I,s:s,s:[s]}", "store", (json_int_t)id, "url",
                              "https://hooks.example.com/in", "events", "order.placed"));
    assert_true(json_is_true(json_object_get(a, "ok")));
    json_t *res = json_object_get(a, "result");
    json_int_t hook = json_integer_value(json_object_get(res, "id"));
    assert_true(hook > 0);
    assert_int_equal(strncmp(json_string_value(json_object_get(res, "secret")), "whsec_", 6), 0);
    json_decref(a);
    a = ask(fd, 2, "webhooks.list", json_pack("{s:I}", "store", (json_int_t)id));
    json_t *data = json_object_get(json_object_get(a, "result"), "data");
    assert_int_equal(json_array_size(data), 1);
    assert_null(json_object_get(json_array_get(data, 0), "secret"));
    json_decref(a);
    a = ask(fd, 3, "webhooks.replay",
            json_pack("{s:I,s:I,s:s,s:s}", "store", (json_int_t)id, "id", hook, "from",
                      "2020-01-01T00:00:00Z", "to", "2030-01-01T00:00:00Z"));
    assert_int_equal(json_integer_value(json_object_get(json_object_get(a, "result"), "replayed")),
                     0);
    json_decref(a);
    a = ask(fd, 4, "webhooks.replay", json_pack("{s:I,s:I}", "store", (json_int_t)id, "id", hook));
    assert_string_equal(err_code(a), "validation_failed");
    json_decref(a);
    a = ask(fd, 5, "jobs.dead_letters.list", json_pack("{s:I}", "store", (json_int_t)id));
    assert_true(json_is_array(json_object_get(json_object_get(a, "result"), "data")));
    json_decref(a);
    a = ask(fd, 6, "jobs.dead_letters.retry",
            json_pack("{s:I,s:I}", "store", (json_int_t)id, "id", (json_int_t)999999999));
    assert_string_equal(err_code(a), "job_not_found");
    json_decref(a);
    a = ask(fd, 7, "webhooks.delete", json_pack("{s:I,s:I}", "store", (json_int_t)id, "id", hook));
    assert_true(json_is_true(json_object_get(a, "ok")));
    json_decref(a);
    a = ask(fd, 8, "webhooks.get", json_pack("{s:I,s:I}", "store", (json_int_t)id, "id", hook));
    assert_string_equal(err_code(a), "webhook_not_found");
    json_decref(a);
    close(fd);
}

static void
test_import_op(void **state)
{
    const char *slug = th_slug("imp");
    long store = th_create_store(srv, slug, NULL);
    int fd = session(ADMIN_TOKEN);
    json_t *rows = json_array();
    for (int i = 0; i < 600; i++) {
        char name[64], sku[64];
        snprintf(name, sizeof(name), "B%d", i);
        snprintf(sku, sizeof(sku), "S%d", i);
        json_array_append_new(rows, json_pack("{s:s,s:i,s:[{s:s,s:i}]}", "name", name, "base_price",
                                              100 + i, "variants", "sku", sku, "stock", 1 + i % 3));
    }
    json_array_append_new(rows, json_pack("{s:s,s:s}", "name", "Bad", "base_price", "free"));
    json_array_append_new(rows, json_string("not a map"));
    json_t *a = ask(fd, 1, "import.products", json_pack("{s:s,s:o}", "store", slug, "rows", rows));
    json_t *res = json_object_get(a, "result");
    assert_int_equal(json_integer_value(json_object_get(res, "imported")), 600);
    assert_int_equal(json_integer_value(json_object_get(res, "variants")), 600);
    json_t *rej = json_object_get(res, "rejected");
    assert_int_equal(json_array_size(rej), 2);
    bool bad_price = false, not_map = false;
    size_t i;
    json_t *r;
    json_array_foreach(rej, i, r)
    {
        json_int_t idx = json_integer_value(json_object_get(r, "index"));
        assert_string_equal(json_string_value(json_object_get(r, "code")), "validation_failed");
        bad_price |= idx == 600;
        not_map |= idx == 601;
    }
    assert_true(bad_price && not_map);
    json_decref(a);
    char sid[32];
    snprintf(sid, sizeof(sid), "%ld", store);
    assert_string_equal(th_sql("SELECT count(*) FROM products WHERE store_id = $1::bigint",
                               (const char *[]){sid, NULL}),
                        "600");
    assert_string_equal(
        th_sql("SELECT sum(stock) FROM product_variants WHERE store_id = $1::bigint",
               (const char *[]){sid, NULL}),
        "1200");
    assert_string_equal(th_sql("SELECT sum(delta) FROM inventory_movements WHERE store_id = "
                               "$1::bigint",
                               (const char *[]){sid, NULL}),
                        "1200");
    /* The store is required, rows bounded. */
    a = ask(fd, 2, "import.products", json_pack("{s:[{s:s}]}", "rows", "name", "x"));
    assert_string_equal(err_code(a), "validation_failed");
    json_decref(a);
    a = ask(fd, 3, "import.products", json_pack("{s:s,s:[]}", "store", slug, "rows"));
    assert_string_equal(err_code(a), "validation_failed");
    json_decref(a);
    close(fd);
}

/* ------------------------------------------------------------ shopctl */

/* Runs shopctl with args (a shell-quoted string) and the given token; returns
 * its exit status, stdout in out and stderr in err. */
static int
shopctl(const char *token, const char *args, char *out, size_t outn, char *err, size_t errn)
{
    char cmd[2048], ep[] = "/tmp/shopctl-err-XXXXXX";
    int efd = mkstemp(ep);
    assert_true(efd >= 0);
    close(efd);
    snprintf(cmd, sizeof(cmd), "SHOPD_ADMIN_TOKEN='%s' SHOPCTL_ADDR=%s '%s' %s 2>%s", token,
             admin_addr, th_env("SHOPCTL_BIN"), args, ep);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t n = fread(out, 1, outn - 1, p);
    out[n] = '\0';
    int st = pclose(p);
    FILE *e = fopen(ep, "r");
    n = e ? fread(err, 1, errn - 1, e) : 0;
    err[n] = '\0';
    if (e)
        fclose(e);
    unlink(ep);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void
test_shopctl(void **state)
{
    char out[65536], err[4096], args[512];
    const char *slug = th_slug("ctl");
    snprintf(args, sizeof(args), "store create slug=%s name='Ctl Shop' currency=EUR", slug);
    assert_int_equal(shopctl(ADMIN_TOKEN, args, out, sizeof(out), err, sizeof(err)), 0);
    assert_non_null(strstr(out, slug));

    /* The table: a header line, then the store's row. */
    assert_int_equal(shopctl(ADMIN_TOKEN, "stores limit=100", out, sizeof(out), err, sizeof(err)),
                     0);
    assert_true(strncmp(out, "ID", 2) == 0);
    assert_non_null(strstr(out, slug));
    assert_non_null(strstr(out, "Ctl Shop"));

    /* --json: one JSON document. */
    snprintf(args, sizeof(args), "--json store get %s", slug);
    assert_int_equal(shopctl(ADMIN_TOKEN, args, out, sizeof(out), err, sizeof(err)), 0);
    json_t *doc = json_loads(out, 0, NULL);
    assert_non_null(doc);
    assert_string_equal(json_string_value(json_object_get(doc, "slug")), slug);
    json_decref(doc);

    /* --msgpack: the result as one msgpack value. */
    assert_int_equal(shopctl(ADMIN_TOKEN, "--msgpack ping", out, sizeof(out), err, sizeof(err)), 0);
    char derr[128];
    doc = admin_decode(out, strlen(out), derr, sizeof(derr));
    assert_non_null(doc);
    assert_true(json_is_true(json_object_get(doc, "pong")));
    json_decref(doc);

    /* Typed values (k:=json) reach the handler as JSON. */
    snprintf(args, sizeof(args), "stores.update id=%s settings:='{\"theme\":\"dark\"}'", slug);
    assert_int_equal(shopctl(ADMIN_TOKEN, args, out, sizeof(out), err, sizeof(err)), 0);
    assert_string_equal(th_sql("SELECT settings->>'theme' FROM stores WHERE slug = $1",
                               (const char *[]){slug, NULL}),
                        "dark");

    /* 1: an error answer, one clear line on stderr. */
    assert_int_equal(
        shopctl(ADMIN_TOKEN, "store get no-such-store", out, sizeof(out), err, sizeof(err)), 1);
    assert_non_null(strstr(err, "store_not_found"));
    assert_int_equal(shopctl(ADMIN_TOKEN, "stores.lst", out, sizeof(out), err, sizeof(err)), 1);
    assert_non_null(strstr(err, "did you mean 'stores.list'"));

    /* 2: usage, with the nearest command. */
    assert_int_equal(shopctl(ADMIN_TOKEN, "storse", out, sizeof(out), err, sizeof(err)), 2);
    assert_non_null(strstr(err, "did you mean 'stores'"));
    assert_int_equal(shopctl(ADMIN_TOKEN, "store get", out, sizeof(out), err, sizeof(err)), 2);
    assert_int_equal(shopctl(ADMIN_TOKEN, "--bogus ping", out, sizeof(out), err, sizeof(err)), 2);
    assert_int_equal(shopctl(ADMIN_TOKEN, "help store create", out, sizeof(out), err, sizeof(err)),
                     0);
    assert_non_null(strstr(out, "example"));

    /* import products: the API's validation per row, refused rows listed with reasons. */
    char file[] = "/tmp/shopctl-import-XXXXXX.jsonl";
    int ifd = mkstemps(file, 6);
    assert_true(ifd >= 0);
    FILE *imp = fdopen(ifd, "w");
    for (int i = 0; i < 20; i++)
        fprintf(imp, "{\"name\":\"Imported %d\",\"base_price\":%d}\n", i, 100 + i);
    fprintf(imp, "{\"name\":\"Bad\",\"base_price\":\"cheap\"}\nnot json\n");
    fclose(imp);
    snprintf(args, sizeof(args), "import products --store %s %s", slug, file);
    assert_int_equal(shopctl(ADMIN_TOKEN, args, out, sizeof(out), err, sizeof(err)), 1);
    assert_non_null(strstr(out, "imported 20 of 22 rows"));
    assert_non_null(strstr(out, "line 21: validation_failed"));
    assert_non_null(strstr(out, "base_price"));
    assert_non_null(strstr(out, "line 22: malformed_row"));
    unlink(file);
    assert_string_equal(th_sql("SELECT count(*) FROM products p JOIN stores s ON s.id = p.store_id "
                               "WHERE s.slug = $1 AND p.name LIKE 'Imported %'",
                               (const char *[]){slug, NULL}),
                        "20");

    /* 3: cannot authenticate, cannot connect. */
    assert_int_equal(shopctl("wrong", "ping", out, sizeof(out), err, sizeof(err)), 3);
    assert_non_null(strstr(err, "cannot authenticate"));
    snprintf(args, sizeof(args), "--addr 127.0.0.1:%d ping", th_free_port());
    assert_int_equal(shopctl(ADMIN_TOKEN, args, out, sizeof(out), err, sizeof(err)), 3);
    assert_non_null(strstr(err, "cannot connect"));
}

/* TLS on the admin port: shopctl checks the certificate (our CA: ok; the
 * system's: refused) and a plain client gets nowhere. */
static void
test_tls(void **state)
{
    char dir[] = "/tmp/shopd-admin-tls-XXXXXX", cmd[1024];
    assert_non_null(mkdtemp(dir));
    snprintf(cmd, sizeof(cmd),
             "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 "
             "-addext subjectAltName=IP:127.0.0.1 -keyout %s/key.pem -out %s/cert.pem",
             dir, dir);
    th_run(cmd);
    int port = th_free_port();
    static char listen[96], cert[128], key[128];
    snprintf(listen, sizeof(listen), "SHOPD_ADMIN_LISTEN=127.0.0.1:%d", port);
    snprintf(cert, sizeof(cert), "SHOPD_ADMIN_TLS_CERT=%s/cert.pem", dir);
    snprintf(key, sizeof(key), "SHOPD_ADMIN_TLS_KEY=%s/key.pem", dir);
    const char *env[] = {listen, cert, key, "SHOPD_ADMIN_TOKEN=" ADMIN_TOKEN, NULL};
    th_server_t *tsrv = th_start(env);

    char out[8192], err[2048], args[512];
    snprintf(args, sizeof(args), "--addr tls://127.0.0.1:%d --tls-ca %s/cert.pem stores", port,
             dir);
    assert_int_equal(shopctl(ADMIN_TOKEN, args, out, sizeof(out), err, sizeof(err)), 0);
    assert_true(strncmp(out, "ID", 2) == 0 || strstr(out, "(none)") != NULL);
    snprintf(args, sizeof(args), "--addr 127.0.0.1:%d --tls-insecure ping", port);
    assert_int_equal(shopctl(ADMIN_TOKEN, args, out, sizeof(out), err, sizeof(err)), 0);
    /* Not signed by a CA the system trusts. */
    snprintf(args, sizeof(args), "--addr tls://127.0.0.1:%d ping", port);
    assert_int_equal(shopctl(ADMIN_TOKEN, args, out, sizeof(out), err, sizeof(err)), 3);
    assert_non_null(strstr(err, "TLS"));
    /* Plain TCP to a TLS port. */
    snprintf(args, sizeof(args), "--addr 127.0.0.1:%d --timeout 5 ping", port);
    assert_int_equal(shopctl(ADMIN_TOKEN, args, out, sizeof(out), err, sizeof(err)), 3);

    assert_int_equal(th_stop(tsrv), 0);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    th_run(cmd);
}

/* The connection cap (an error frame, then close) and the idle timeout, on a
 * server of their own with small limits. */
static void
test_limits(void **state)
{
    int saved = admin_port;
    static char listen[96];
    admin_port = th_free_port();
    snprintf(listen, sizeof(listen), "SHOPD_ADMIN_LISTEN=127.0.0.1:%d", admin_port);
    const char *env[] = {listen, "SHOPD_ADMIN_TOKEN=" ADMIN_TOKEN, "SHOPD_ADMIN_MAX_CONNS=2",
                         "SHOPD_ADMIN_IDLE_TIMEOUT=1", NULL};
    th_server_t *lsrv = th_start(env);
    int a = session(ADMIN_TOKEN), b = session(ADMIN_TOKEN);
    int c = dial();
    json_t *f = read_json(c);
    assert_string_equal(err_code(f), "too_many_connections");
    assert_true(closed_by_server(c));
    json_decref(f);
    close(c);
    /* Idle for more than a second: told why, then closed. */
    f = read_json(a);
    assert_string_equal(err_code(f), "idle_timeout");
    assert_true(closed_by_server(a));
    json_decref(f);
    close(a);
    close(b);
    /* Both slots are free again. */
    a = session(ADMIN_TOKEN);
    close(a);
    assert_int_equal(th_stop(lsrv), 0);
    admin_port = saved;
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        /* First, and its last stream stays open (never read) through every other
         * test: the log tap under load, its bound, and a stop with a stream open. */
        cmocka_unit_test(test_tail_and_cancel),
        cmocka_unit_test(test_no_hello_closes),
        cmocka_unit_test(test_wrong_token_and_version),
        cmocka_unit_test(test_garbage_and_oversize),
        cmocka_unit_test(test_pipelined_by_id),
        cmocka_unit_test(test_tenant_rules_and_validation),
        cmocka_unit_test(test_store_admin_jwt),
        cmocka_unit_test(test_many_connections),
        cmocka_unit_test(test_import_op),
        cmocka_unit_test(test_jobs_and_webhook_ops),
        cmocka_unit_test(test_shopctl),
        cmocka_unit_test(test_tls),
        cmocka_unit_test(test_limits),
        TH_STOP_TEST,
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
