/*
 * kv.c: one synchronous hiredis connection per owning thread, and the rules
 * for when it is (re)connected. It owns the redisContext and the parsed URL.
 *
 * Connecting is lazy. Before a command is sent on an idle connection the
 * socket is polled: Redis never speaks unprompted outside pub/sub, so a
 * readable socket means the server closed it (CLIENT KILL, restart, timeout)
 * and we reconnect before sending instead of failing. A command that still
 * fails with an I/O error reconnects once and is sent again; a timeout is not
 * retried, since the server may be slow rather than gone and may have run it.
 */
#include "shopd/kv.h"

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "shopd/log.h"

/* Used when the caller passes 0. */
#define KV_DEFAULT_TIMEOUT_MS 2000

struct kv_conn_s {
    char host[256];
    int port;
    int db;
    char user[128];
    char password[256];
    unsigned timeout_ms;
    redisContext *ctx; /* NULL while disconnected */
    int pending;       /* appended commands whose replies are not read yet */
    bool pipe_failed;  /* the pipeline lost its connection; the rest are NULL */
    bool was_down;     /* log transitions only, not every failed attempt */
};

/* ---- URL ----------------------------------------------------------------- */

static int
hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* Copies s[0..n) into out, decoding %XX. Returns 0, or -1 if it does not fit
 * or an escape is malformed. */
static int
copy_decoded(const char *s, size_t n, char *out, size_t outlen)
{
    if (outlen == 0)
        return -1;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (ch == '%') {
            if (i + 2 >= n)
                return -1;
            int hi = hexval(s[i + 1]), lo = hexval(s[i + 2]);
            if (hi < 0 || lo < 0)
                return -1;
            ch = (char)(hi * 16 + lo);
            i += 2;
        }
        if (o + 1 >= outlen)
            return -1;
        out[o++] = ch;
    }
    out[o] = '\0';
    return 0;
}

/* Parses digits only (no sign, no spaces) within [lo, hi]. */
static int
parse_int(const char *s, size_t n, long lo, long hi, int *out)
{
    if (n == 0 || n > 9)
        return -1;
    long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    if (v < lo || v > hi)
        return -1;
    *out = (int)v;
    return 0;
}

/* redis://[[user]:password@]host[:port][/db], host may be [v6]. */
static int
parse_url_full(const char *url, char *host, size_t hostlen, int *port, int *db, char *user,
               size_t userlen, char *password, size_t pwlen)
{
    static const char scheme[] = "redis://";
    if (url == NULL || strncmp(url, scheme, sizeof(scheme) - 1) != 0)
        return -1;
    const char *p = url + sizeof(scheme) - 1;
    const char *end = p + strcspn(p, "/?#");
    if (*end == '?' || *end == '#')
        return -1; /* no query options are understood */

    if (userlen)
        user[0] = '\0';
    if (pwlen)
        password[0] = '\0';
    *port = 6379;
    *db = 0;

    const char *at = memchr(p, '@', (size_t)(end - p));
    if (at != NULL) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        if (colon != NULL) {
            if (copy_decoded(p, (size_t)(colon - p), user, userlen) != 0)
                return -1;
            if (copy_decoded(colon + 1, (size_t)(at - colon - 1), password, pwlen) != 0)
                return -1;
        } else if (copy_decoded(p, (size_t)(at - p), password, pwlen) != 0) {
            /* redis://secret@host: a bare userinfo is the password */
            return -1;
        }
        p = at + 1;
    }

    const char *hend, *portp = NULL;
    if (*p == '[') {
        const char *close = memchr(p, ']', (size_t)(end - p));
        if (close == NULL)
            return -1;
        if (copy_decoded(p + 1, (size_t)(close - p - 1), host, hostlen) != 0)
            return -1;
        hend = close + 1;
        if (hend < end && *hend != ':')
            return -1;
    } else {
        hend = memchr(p, ':', (size_t)(end - p));
        if (hend == NULL)
            hend = end;
        if (copy_decoded(p, (size_t)(hend - p), host, hostlen) != 0)
            return -1;
    }
    if (host[0] == '\0')
        return -1;
    if (hend < end && *hend == ':')
        portp = hend + 1;
    if (portp != NULL && parse_int(portp, (size_t)(end - portp), 1, 65535, port) != 0)
        return -1;

    if (*end == '/') {
        const char *d = end + 1;
        size_t dn = strlen(d);
        if (dn > 0 && parse_int(d, dn, 0, 1000000, db) != 0)
            return -1;
    }
    return 0;
}

int
kv_parse_url(const char *url, char *host, size_t hostlen, int *port, int *db, char *password,
             size_t pwlen)
{
    char user[128];
    return parse_url_full(url, host, hostlen, port, db, user, sizeof(user), password, pwlen);
}

/* ---- connection ---------------------------------------------------------- */

kv_conn_t *
kv_conn_new(const char *url, unsigned timeout_ms)
{
    kv_conn_t *kv = shopd_calloc(1, sizeof(*kv));
    if (parse_url_full(url, kv->host, sizeof(kv->host), &kv->port, &kv->db, kv->user,
                       sizeof(kv->user), kv->password, sizeof(kv->password)) != 0) {
        shopd_free(kv);
        return NULL;
    }
    kv->timeout_ms = timeout_ms ? timeout_ms : KV_DEFAULT_TIMEOUT_MS;
    return kv;
}

static void
kv_disconnect(kv_conn_t *kv)
{
    if (kv->ctx != NULL)
        redisFree(kv->ctx);
    kv->ctx = NULL;
}

void
kv_conn_free(kv_conn_t *kv)
{
    if (kv == NULL)
        return;
    kv_disconnect(kv);
    /* The password lived here; do not leave it in freed memory. */
    explicit_bzero(kv->password, sizeof(kv->password));
    shopd_free(kv);
}

static void
note_down(kv_conn_t *kv, const char *why)
{
    if (!kv->was_down)
        log_warn("msg=\"redis unreachable\" host=%s port=%d err=\"%s\"", kv->host, kv->port, why);
    kv->was_down = true;
}

/* Runs a setup command (AUTH, SELECT) on a fresh context; true on +OK. */
static bool
setup_cmd(kv_conn_t *kv, int argc, const char **argv, const char *what)
{
    redisReply *r = redisCommandArgv(kv->ctx, argc, argv, NULL);
    bool ok = r != NULL && r->type == REDIS_REPLY_STATUS;
    if (!ok) {
        const char *why =
            r ? (r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply") : kv->ctx->errstr;
        log_error("msg=\"redis %s failed\" host=%s port=%d err=\"%s\"", what, kv->host, kv->port,
                  why);
    }
    if (r != NULL)
        freeReplyObject(r);
    return ok;
}

static int
kv_connect(kv_conn_t *kv)
{
    struct timeval tv = {(time_t)(kv->timeout_ms / 1000),
                         (suseconds_t)(kv->timeout_ms % 1000) * 1000};
    kv->ctx = redisConnectWithTimeout(kv->host, kv->port, tv);
    if (kv->ctx == NULL || kv->ctx->err) {
        note_down(kv, kv->ctx ? kv->ctx->errstr : "out of memory");
        goto fail;
    }
    if (redisSetTimeout(kv->ctx, tv) != REDIS_OK) {
        note_down(kv, kv->ctx->errstr);
        goto fail;
    }
    /* Keepalive finds a peer that vanished without a FIN (host down). */
    redisEnableKeepAlive(kv->ctx);
    if (kv->password[0] != '\0') {
        /* AUTH user pass (Redis 6 ACL) when the URL names a user, else AUTH pass. */
        const char *argv[3] = {"AUTH", kv->user, kv->password};
        if (kv->user[0] == '\0')
            argv[1] = kv->password;
        if (!setup_cmd(kv, kv->user[0] ? 3 : 2, argv, "AUTH"))
            goto fail;
    }
    if (kv->db != 0) {
        char dbs[16];
        snprintf(dbs, sizeof(dbs), "%d", kv->db);
        const char *argv[2] = {"SELECT", dbs};
        if (!setup_cmd(kv, 2, argv, "SELECT"))
            goto fail;
    }
    if (kv->was_down)
        log_info("msg=\"redis reachable again\" host=%s port=%d", kv->host, kv->port);
    kv->was_down = false;
    return 0;
fail:
    kv_disconnect(kv);
    return -1;
}

/* True when the idle socket has something to say: EOF, an error, or data. */
static bool
idle_socket_dead(kv_conn_t *kv)
{
    if (kv->ctx->obuf != NULL && kv->ctx->obuf[0] != '\0')
        return false; /* not idle */
    struct pollfd p = {.fd = kv->ctx->fd, .events = POLLIN | POLLRDHUP};
    return poll(&p, 1, 0) > 0;
}

/* Reads and drops replies of a pipeline the caller abandoned, so the next
 * command's reply is its own. */
static void
drain_pending(kv_conn_t *kv)
{
    if (kv->pending > 0 && kv->ctx != NULL && !kv->pipe_failed) {
        log_warn("msg=\"redis pipeline abandoned with unread replies\" pending=%d", kv->pending);
        while (kv->pending > 0) {
            void *r = NULL;
            if (redisGetReply(kv->ctx, &r) != REDIS_OK) {
                kv_disconnect(kv);
                break;
            }
            freeReplyObject(r);
            kv->pending--;
        }
    }
    kv->pending = 0;
    kv->pipe_failed = false;
}

/* Gets a connection ready for a new command (or pipeline). 0 or -1. */
static int
kv_ready(kv_conn_t *kv)
{
    drain_pending(kv);
    if (kv->ctx != NULL && (kv->ctx->err || idle_socket_dead(kv)))
        kv_disconnect(kv);
    if (kv->ctx == NULL)
        return kv_connect(kv);
    return 0;
}

/* After a failed round trip: whether sending the command again is sensible. */
static bool
worth_retry(kv_conn_t *kv, int saved_errno)
{
    if (kv->ctx == NULL)
        return false;
    if (kv->ctx->err == REDIS_ERR_EOF)
        return true;
    if (kv->ctx->err == REDIS_ERR_IO)
        return saved_errno != EAGAIN && saved_errno != EWOULDBLOCK && saved_errno != EINPROGRESS;
    return false;
}

redisReply *
kv_command(kv_conn_t *kv, const char *fmt, ...)
{
    redisReply *r = NULL;
    for (int attempt = 0; attempt < 2; attempt++) {
        if (kv_ready(kv) != 0)
            return NULL;
        va_list ap;
        va_start(ap, fmt);
        r = redisvCommand(kv->ctx, fmt, ap);
        va_end(ap);
        if (r != NULL)
            return r;
        int saved = errno;
        bool retry = worth_retry(kv, saved);
        note_down(kv, kv->ctx->errstr);
        kv_disconnect(kv);
        if (!retry)
            break;
    }
    return NULL;
}

redisReply *
kv_commandv(kv_conn_t *kv, int argc, const char **argv, const size_t *argvlen)
{
    for (int attempt = 0; attempt < 2; attempt++) {
        if (kv_ready(kv) != 0)
            return NULL;
        redisReply *r = redisCommandArgv(kv->ctx, argc, argv, argvlen);
        if (r != NULL)
            return r;
        int saved = errno;
        bool retry = worth_retry(kv, saved);
        note_down(kv, kv->ctx->errstr);
        kv_disconnect(kv);
        if (!retry)
            break;
    }
    return NULL;
}

int
kv_append(kv_conn_t *kv, const char *fmt, ...)
{
    if (kv->pending == 0 && kv_ready(kv) != 0)
        return -1;
    if (kv->ctx == NULL || kv->pipe_failed)
        return -1;
    va_list ap;
    va_start(ap, fmt);
    int rc = redisvAppendCommand(kv->ctx, fmt, ap);
    va_end(ap);
    if (rc != REDIS_OK)
        return -1;
    kv->pending++;
    return 0;
}

int
kv_appendv(kv_conn_t *kv, int argc, const char **argv, const size_t *argvlen)
{
    if (kv->pending == 0 && kv_ready(kv) != 0)
        return -1;
    if (kv->ctx == NULL || kv->pipe_failed)
        return -1;
    if (redisAppendCommandArgv(kv->ctx, argc, argv, argvlen) != REDIS_OK)
        return -1;
    kv->pending++;
    return 0;
}

redisReply *
kv_get_reply(kv_conn_t *kv)
{
    if (kv->pending == 0)
        return NULL;
    kv->pending--;
    if (kv->pipe_failed || kv->ctx == NULL) {
        if (kv->pending == 0)
            kv->pipe_failed = false;
        return NULL;
    }
    void *r = NULL;
    if (redisGetReply(kv->ctx, &r) != REDIS_OK) {
        /* No retry: earlier commands of the batch may already have run. */
        note_down(kv, kv->ctx->errstr);
        kv_disconnect(kv);
        kv->pipe_failed = kv->pending > 0;
        return NULL;
    }
    return r;
}

shopd_rc_t
kv_ping(kv_conn_t *kv)
{
    redisReply *r = kv_command(kv, "PING");
    shopd_rc_t rc = (r != NULL && r->type == REDIS_REPLY_STATUS && strcmp(r->str, "PONG") == 0)
                        ? SHOPD_OK
                        : SHOPD_UNAVAILABLE;
    if (r != NULL)
        freeReplyObject(r);
    return rc;
}
