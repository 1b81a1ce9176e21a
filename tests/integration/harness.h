/*
 * harness.h: what integration tests share: start the real shopd binary on a
 * free port against the PostgreSQL and Redis given by the test runner
 * (SHOPD_TEST_DATABASE_URL, SHOPD_TEST_REDIS_URL), speak HTTP to it with
 * libcurl, send raw bytes when a test needs malformed HTTP, and stop it.
 *
 * Set SHOPD_TEST_URL=http://host:port to aim the HTTP helpers at a server you
 * started yourself (for gdb); th_start then does not spawn one.
 *
 * A database of its own: before main() runs, the harness creates the database
 * shopd_<program>_<pid> on the server of SHOPD_TEST_DATABASE_URL, points
 * SHOPD_TEST_DATABASE_URL at it (so th_start, th_sql and any getenv see it) and
 * drops it at exit. Test programs running in parallel therefore never see each
 * other's rows or locks. The URL given by the runner stays in
 * SHOPD_TEST_ADMIN_DATABASE_URL. Redis likewise: the program takes a Redis
 * database number of its own (not 5 or 9, which tests use by number), points
 * SHOPD_TEST_REDIS_URL at it and flushes and frees it at exit (the runner's URL
 * stays in SHOPD_TEST_ADMIN_REDIS_URL); store ids start at 1 in every private
 * database, so a shared Redis would mix up the programs' cached stores. Neither
 * is done when SHOPD_TEST_URL is set (an external server has its own database)
 * or SHOPD_TEST_SHARED_DB=1.
 *
 * Stopping as a test: with cmocka 1.1.5 a failed assertion in a group teardown
 * prints "GROUP TEARDOWN" failed and the program still exits 0, so a check
 * there can never fail. Put TH_STOP_TEST last in the test list instead:
 *
 *     const struct CMUnitTest tests[] = {
 *         cmocka_unit_test(test_something),
 *         TH_STOP_TEST,   // stops every server still running; each must exit 0
 *     };
 *
 * The group teardown may still call th_stop(srv) (it then only frees srv and
 * returns the status the stop test saw), so it cleans up when setup failed.
 * Servers a failed test left running are killed when the program exits.
 *
 * Ports: th_start keeps the server's port bound (SO_REUSEPORT, which shopd also
 * sets) from before the server starts until th_stop, so no other test or
 * outgoing connection can take it in between; if shopd still cannot bind, it
 * retries on another port.
 */
#ifndef SHOPD_TEST_HARNESS_H
#define SHOPD_TEST_HARNESS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define TH_PLATFORM_TOKEN "test-platform-token-0123456789"
/** The SHOPD_SECRETS_KEY of every test server (base64 of 32 bytes). */
#define TH_SECRETS_KEY "dGVzdC1zZWFsaW5nLWtleS1vZi0zMi1ieXRlcyEhISE="
#define TH_BASE_DOMAIN "shop.test"

typedef struct th_server_s {
    pid_t pid;
    int port;
    char url[64];
    char log_path[256];
    /* Harness-private from here on. */
    int reserve_fd; /* keeps the port taken until the server stops (-1: none) */
    bool stopped;   /* stopped by th_test_stop_all; exit_status holds the result */
    int exit_status;
    struct th_server_s *next; /* list of started servers */
} th_server_t;

typedef struct th_resp_s {
    long status;
    char *body;
    size_t len;
    char *headers; /* raw header block */
    json_t *json;  /* parsed body, NULL if not JSON */
} th_resp_t;

/** Starts shopd with the test databases plus extra "NAME=value" settings (NULL-ended,
 *  may be NULL). Waits until /healthz answers. Aborts the test on failure. */
th_server_t *th_start(const char *const *extra_env);
/** Sends SIGTERM, waits, returns the exit status (128 + signal if killed by one, -1 if it
 *  did not stop within 15 s and had to be killed), frees srv. On a server that
 *  th_test_stop_all already stopped: returns the status seen then and frees srv.
 *  A non-zero status keeps the server's log and prints its path and last lines. */
int th_stop(th_server_t *srv);
/** A test case (use it through TH_STOP_TEST, last in the list): stops every server
 *  th_start started and nobody stopped yet, and fails unless each exited 0 (a crash,
 *  a hang on SIGTERM or a LeakSanitizer report all count). */
void th_test_stop_all(void **state);
#define TH_STOP_TEST cmocka_unit_test(th_test_stop_all)
/** Exit status of a finished shopd run with argv (for config errors): also captures
 *  stderr into err (NUL-terminated). */
int th_run_shopd(const char *const *argv, const char *const *extra_env, char *err, size_t errlen);

/** One request. headers: NULL-ended "Name: value" strings, may be NULL. body may be NULL. */
th_resp_t th_req(th_server_t *srv, const char *method, const char *path, const char *const *headers,
                 const char *body);
/** th_req with a body of blen bytes (binary: an image, a multipart body). */
th_resp_t th_req_n(th_server_t *srv, const char *method, const char *path,
                   const char *const *headers, const char *body, size_t blen);
/** Same with the platform token added. */
th_resp_t th_platform(th_server_t *srv, const char *method, const char *path, const char *body);
/** A response header's value (copied into a static buffer), or NULL. */
const char *th_header(const th_resp_t *r, const char *name);
/** error.code of a JSON error body, or "" */
const char *th_error_code(const th_resp_t *r);
void th_resp_free(th_resp_t *r);

/** A new TCP connection to the server (asserts it connects); the caller closes it. */
int th_connect(th_server_t *srv);
/** Sends raw bytes on a new connection and reads until the server closes or
 *  timeout_ms passes. Returns bytes read into out (NUL-terminated). */
size_t th_raw(th_server_t *srv, const char *bytes, size_t len, char *out, size_t outcap,
              int timeout_ms);

/** A fresh slug like "<prefix>-<random>" valid for stores (unique per call). */
const char *th_slug(const char *prefix);
/** Creates a store through the platform API; returns its id (asserts 201). */
long th_create_store(th_server_t *srv, const char *slug, const char *extra_json_fields);

/* ---- users and tokens (harness_auth.c) ---- */
#define TH_PASSWORD "th-Password-4711"

/** A user made by th_user_new: id, e-mail, and a fresh access + refresh token
 *  (malloc'd). Its password is TH_PASSWORD. */
typedef struct th_user_s {
    long id;
    long store_id; /* 0 for a super admin */
    char email[128];
    char *access;
    char *refresh;
} th_user_t;

/** Creates a user with role "CUSTOMER", "STORE_ADMIN" or "SUPER_ADMIN" (store_id is
 *  ignored for super admins) directly in PostgreSQL, then signs in through the API.
 *  Asserts on failure. */
th_user_t th_user_new(th_server_t *srv, const char *role, long store_id);
void th_user_free(th_user_t *u);
/** A malloc'd access token of a freshly created user with that role in that store. */
char *th_token(th_server_t *srv, const char *role, long store_id);
/** base64url without padding of n bytes into out (room for 4n/3 + 4). Returns its length. */
size_t th_b64url(const unsigned char *in, size_t n, char *out);
/** A JWT made by hand: header and payload JSON as given, signed HS256 with secret
 *  (NULL: an empty signature). malloc'd; the caller frees. For tests of forged,
 *  expired and malformed tokens. */
char *th_jwt_craft(const char *header, const char *payload, const char *secret);
/** One request to a store: X-Tenant-Id: store, and the bearer token when not NULL. */
th_resp_t th_store_req(th_server_t *srv, long store, const char *token, const char *method,
                       const char *path, const char *body);
/** Writes "Authorization: Bearer <token>" into buf. */
void th_auth_header(char *buf, size_t n, const char *token);
/** Runs one SQL statement on the test database (text params, NULL-ended list may be
 *  NULL); returns the first column of the first row in a static buffer ("" if none).
 *  Asserts the statement succeeded. */
const char *th_sql(const char *sql, const char *const *params);
/** A fresh e-mail address, unique per call. */
const char *th_email(const char *prefix);

/** Runs a shell command with its output in a file; fails the test with the output's
 *  last 60 lines when it exits non-zero (a red smoke test says what failed). */
void th_run(const char *cmd);

/* ---- direct database access for tests of src/db (harness.c) ---- */
typedef struct db_pool_s db_pool_t;
typedef struct db_conn_s db_conn_t;
/** A pool of size connections to SHOPD_TEST_DATABASE_URL; asserts it opened. */
db_pool_t *th_pool_new(int size);
/** Runs sql (no parameters) on c and asserts it succeeded. */
void th_exec_ok(db_conn_t *c, const char *sql);
/** First column of the single row sql returns, as an integer; asserts the query worked. */
long th_query_long(db_conn_t *c, const char *sql);

/** A free TCP port on 127.0.0.1 (free now; nothing holds it: th_start does not use it). */
int th_free_port(void);
/** Starts a private redis-server on 127.0.0.1:port (persistent in dir when dir is
 *  not NULL: a restart brings its data back), its output to /dev/null, and waits
 *  until that very process answers (INFO's process_id, so another server that
 *  took the port meanwhile is never mistaken for it). Returns its pid, or -1 if
 *  it exited (the port was taken) or did not answer within 10 s. One still running
 *  when the program exits (a test failed before stopping it) is killed then. */
int th_redis_start(int port, const char *dir);
/** Reads an environment variable or exits the program (status 1) with a message: a
 *  missing prerequisite is a failure, never a skip. */
const char *th_env(const char *name);
/** True when running in CI (CI=true or CI=1): every prerequisite is required there. */
bool th_in_ci(void);
/** For a test that cannot run in this setting: in CI it fails with why; elsewhere it
 *  prints "SKIPPED: why" and skips the test (cmocka counts a skip as a pass, so keep
 *  it for settings a developer chose, such as SHOPD_TEST_URL, never for a missing
 *  prerequisite: use th_env for those). */
void th_skip_or_fail(const char *why);
/** Polls cond(arg) every 10 ms until it returns true or timeout_ms passes; returns
 *  whether it became true. For waiting on a condition instead of sleeping; give
 *  timeouts that only guard against hangs (seconds, not milliseconds). */
bool th_wait_until(bool (*cond)(void *arg), void *arg, int timeout_ms);

#endif
