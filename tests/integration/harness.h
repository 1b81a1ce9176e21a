/*
 * harness.h: what integration tests share: start the real shopd binary on a
 * free port against the PostgreSQL and Redis given by the test runner
 * (SHOPD_TEST_DATABASE_URL, SHOPD_TEST_REDIS_URL), speak HTTP to it with
 * libcurl, send raw bytes when a test needs malformed HTTP, and stop it.
 *
 * Set SHOPD_TEST_URL=http://host:port to aim the HTTP helpers at a server you
 * started yourself (for gdb); th_start then does not spawn one.
 */
#ifndef SHOPD_TEST_HARNESS_H
#define SHOPD_TEST_HARNESS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define TH_PLATFORM_TOKEN "test-platform-token-0123456789"
#define TH_BASE_DOMAIN "shop.test"

typedef struct th_server_s {
    pid_t pid;
    int port;
    char url[64];
    char log_path[256];
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
/** Sends SIGTERM, waits, returns the exit status (or -1), frees srv. */
int th_stop(th_server_t *srv);
/** Exit status of a finished shopd run with argv (for config errors): also captures
 *  stderr into err (NUL-terminated). */
int th_run_shopd(const char *const *argv, const char *const *extra_env, char *err, size_t errlen);

/** One request. headers: NULL-ended "Name: value" strings, may be NULL. body may be NULL. */
th_resp_t th_req(th_server_t *srv, const char *method, const char *path, const char *const *headers,
                 const char *body);
/** Same with the platform token added. */
th_resp_t th_platform(th_server_t *srv, const char *method, const char *path, const char *body);
/** A response header's value (copied into a static buffer), or NULL. */
const char *th_header(const th_resp_t *r, const char *name);
/** error.code of a JSON error body, or "" */
const char *th_error_code(const th_resp_t *r);
void th_resp_free(th_resp_t *r);

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
/** Writes "Authorization: Bearer <token>" into buf. */
void th_auth_header(char *buf, size_t n, const char *token);
/** Runs one SQL statement on the test database (text params, NULL-ended list may be
 *  NULL); returns the first column of the first row in a static buffer ("" if none).
 *  Asserts the statement succeeded. */
const char *th_sql(const char *sql, const char *const *params);
/** A fresh e-mail address, unique per call. */
const char *th_email(const char *prefix);

/** A free TCP port on 127.0.0.1. */
int th_free_port(void);
/** Reads an environment variable or aborts the test with a message. */
const char *th_env(const char *name);

#endif
