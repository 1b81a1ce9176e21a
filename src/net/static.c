/*
 * static.c: static files under URL prefixes (mounts): the pages (/docs,
 * /admin, /openapi.yaml) and, later, product media. Owns the mount table, the
 * URL-to-file rule (net_static_path, pure) and a small pool of reader threads.
 *
 * Why reader threads and not a cache filled at start: media files are written
 * while shopd runs and can be large, so the tree cannot be read once; and a
 * read of a file that is not in the page cache blocks, which an I/O thread
 * must never do. The I/O thread only matches the prefix, checks the path and
 * queues a job; a reader opens, stats and reads the file and posts the answer
 * with net_reply_post, like any worker. Small trees (the pages) are then served
 * from the kernel's page cache, at one open + fstat + read per request.
 *
 * Containment: the URL path is decoded once and refused when it holds a NUL,
 * a control byte, an encoded '/' or '\', or a "." / ".." segment; dot files
 * are not served. The file is then opened relative to the mount's root with
 * openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS), so neither ".." nor a
 * symlink can leave the root, checked by the kernel at open time (no window
 * between a check and the open). Kernels without openat2 (before 5.6) get an
 * open followed by a check of /proc/self/fd's link against the root's real
 * path.
 *
 * Validators: a strong ETag made of the file's size, modification time (ns)
 * and inode: a rewrite changes its mtime, a rename-over its inode, so two
 * different contents never share one. If-None-Match answers 304 without
 * reading the file.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "shopd/log.h"
#include "shopd/net.h"

#define STATIC_QUEUE_MAX 1024              /* queued reads (over: 503) */
#define STATIC_FILE_MAX ((off_t)256 << 20) /* largest file served, bytes */

typedef struct mount_s {
    net_static_mount_t m; /* strings owned (copies) */
    size_t plen;
    int root_fd;     /* O_PATH of the folder (-1: missing: every request 404) */
    char *real_root; /* its real path, for the fallback check */
} mount_t;

typedef struct job_s {
    struct job_s *next;
    const mount_t *mount;
    char *rel;      /* decoded path below the root, "" for the root itself */
    char *location; /* the URL path + "/" for a folder's redirect (raw bytes) */
    char *inm;      /* If-None-Match, or NULL */
    bool slash;     /* the URL ended with '/' */
    void *reply_to;
    uint64_t token;
} job_t;

struct net_static_s {
    mount_t *mounts; /* longest prefix first */
    size_t n;
    pthread_t *tids;
    int nthreads, started;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    job_t *head, *tail; /* under lock */
    size_t queued;      /* under lock */
    bool stopping;      /* under lock: take no new job; readers finish the queue and exit */
};

/* ------------------------------------------------------------ pure parts */

static int
hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int
net_static_path(const char *path, size_t len, char *out, size_t outsz)
{
    size_t o = 0;
    size_t i = 0;
    if (outsz == 0)
        return -1;
    while (i < len) {
        if (path[i] == '/') {
            i++;
            continue; /* empty segments ("//") collapse */
        }
        /* One segment, decoded into out[seg..o). */
        size_t seg = o;
        if (seg > 0) {
            if (o + 1 >= outsz)
                return -1;
            out[o++] = '/';
            seg = o;
        }
        while (i < len && path[i] != '/') {
            unsigned char c = (unsigned char)path[i];
            if (c == '%') {
                int h = i + 2 < len ? hexval(path[i + 1]) : -1;
                int l = i + 2 < len ? hexval(path[i + 2]) : -1;
                if (h < 0 || l < 0)
                    return -1;
                c = (unsigned char)(h * 16 + l);
                /* A decoded separator would be a segment the first pass never saw. */
                if (c == '/' || c == '\\')
                    return -1;
                i += 3;
            } else {
                i++;
            }
            if (c < 0x20 || c == 0x7f)
                return -1; /* NUL and control bytes: never in a file we serve */
            if (o + 1 >= outsz)
                return -1;
            out[o++] = (char)c;
        }
        size_t sl = o - seg;
        if ((sl == 1 && out[seg] == '.') || (sl == 2 && out[seg] == '.' && out[seg + 1] == '.'))
            return -1;
        if (out[seg] == '.')
            return -2; /* dot files (.git, .env): not published */
    }
    out[o] = '\0';
    return 0;
}

/* Extension -> Content-Type; text types say their charset, since nosniff
 * keeps the browser from guessing. */
static const struct {
    const char *ext;
    const char *type;
} mime_types[] = {
    {"html", "text/html; charset=utf-8"},
    {"htm", "text/html; charset=utf-8"},
    {"css", "text/css; charset=utf-8"},
    {"js", "text/javascript; charset=utf-8"},
    {"mjs", "text/javascript; charset=utf-8"},
    {"json", "application/json"},
    {"map", "application/json"},
    {"yaml", "application/yaml; charset=utf-8"},
    {"yml", "application/yaml; charset=utf-8"},
    {"txt", "text/plain; charset=utf-8"},
    {"md", "text/markdown; charset=utf-8"},
    {"xml", "application/xml"},
    {"svg", "image/svg+xml"},
    {"png", "image/png"},
    {"jpg", "image/jpeg"},
    {"jpeg", "image/jpeg"},
    {"gif", "image/gif"},
    {"webp", "image/webp"},
    {"avif", "image/avif"},
    {"ico", "image/x-icon"},
    {"woff", "font/woff"},
    {"woff2", "font/woff2"},
    {"ttf", "font/ttf"},
    {"pdf", "application/pdf"},
    {"wasm", "application/wasm"},
};

const char *
net_static_type(const char *name)
{
    const char *slash = strrchr(name, '/');
    const char *base = slash ? slash + 1 : name;
    const char *dot = strrchr(base, '.');
    if (dot && dot != base)
        for (size_t i = 0; i < SHOPD_ARRAY_LEN(mime_types); i++)
            if (strcasecmp(dot + 1, mime_types[i].ext) == 0)
                return mime_types[i].type;
    return "application/octet-stream";
}

bool
net_static_etag_match(const char *inm, const char *etag)
{
    if (inm == NULL)
        return false;
    size_t el = strlen(etag);
    for (const char *p = inm; *p;) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        if (*p == '\0')
            break;
        if (*p == '*')
            return true;
        /* If-None-Match compares weakly (RFC 9110 13.1.2): W/ is ignored. */
        if (p[0] == 'W' && p[1] == '/')
            p += 2;
        const char *e = p;
        if (*e == '"') {
            e = strchr(e + 1, '"');
            e = e ? e + 1 : p + strlen(p);
        } else {
            while (*e && *e != ',')
                e++;
        }
        if ((size_t)(e - p) == el && memcmp(p, etag, el) == 0)
            return true;
        p = e;
    }
    return false;
}

/* ------------------------------------------------------------ reader side */

/* Opens rel below dirfd, never leaving it. -1 with errno (EXDEV, ELOOP or
 * EACCES for an escape, ENOENT...). */
static int
open_beneath(int dirfd, const char *real_root, const char *rel)
{
    struct open_how how = {.flags = O_RDONLY | O_CLOEXEC | O_NOCTTY,
                           .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS};
    int fd = (int)syscall(SYS_openat2, dirfd, rel[0] ? rel : ".", &how, sizeof(how));
    if (fd >= 0 || errno != ENOSYS)
        return fd;
    /* No openat2: open, then make sure where it landed is under the root. */
    fd = openat(dirfd, rel[0] ? rel : ".", O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return -1;
    char link[64], real[4096];
    snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, real, sizeof(real) - 1);
    size_t rl = strlen(real_root);
    if (n < 0 || (size_t)n < rl || memcmp(real, real_root, rl) != 0 ||
        ((size_t)n > rl && real[rl] != '/' && !(rl == 1 && real_root[0] == '/'))) {
        close(fd);
        errno = EXDEV;
        return -1;
    }
    return fd;
}

static net_reply_t *
static_error(int status, const char *code, const char *message)
{
    return net_reply_error(status, code, message);
}

/* The answer to one job. Reader thread. */
static net_reply_t *
serve(const job_t *j)
{
    const mount_t *mt = j->mount;
    int fd = -1, dfd = -1;
    net_reply_t *r = NULL;
    char *body = NULL;
    char name[4096];
    struct stat st;

    if (mt->root_fd < 0)
        return static_error(404, "not_found", "no such file");
    if (mt->m.file)
        fd = open(mt->m.root, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    else
        fd = open_beneath(mt->root_fd, mt->real_root, j->rel);
    if (fd < 0 || fstat(fd, &st) != 0) {
        r = static_error(404, "not_found", "no such file");
        goto out;
    }
    snprintf(name, sizeof(name), "%s", mt->m.file ? mt->m.root : j->rel);
    if (S_ISDIR(st.st_mode)) {
        if (!j->slash) {
            /* Relative links in the folder's index.html resolve against the
             * folder only when its URL ends with '/'. */
            r = net_reply_new(301);
            net_reply_add_header(r, "Location", j->location);
            goto out;
        }
        dfd = fd;
        fd = open_beneath(dfd, mt->real_root, "index.html");
        if (fd < 0 || fstat(fd, &st) != 0) {
            r = static_error(404, "not_found", "no such file");
            goto out;
        }
        snprintf(name, sizeof(name), "index.html");
    }
    if (!S_ISREG(st.st_mode)) {
        r = static_error(404, "not_found", "no such file");
        goto out;
    }
    if (st.st_size > STATIC_FILE_MAX) {
        log_error("static file too large to serve mount=%s path=%s size=%lld", mt->m.prefix, j->rel,
                  (long long)st.st_size);
        r = static_error(500, "internal_error", "the file is too large to serve");
        goto out;
    }
    char etag[160];
    const char *base = strrchr(name, '/') ? strrchr(name, '/') + 1 : name;
    const char *dot = strrchr(base, '.');
    if (mt->m.name_etag && dot && dot > base && (size_t)(dot - base) < sizeof(etag) - 3)
        snprintf(etag, sizeof(etag), "\"%.*s\"", (int)(dot - base), base);
    else
        snprintf(etag, sizeof(etag), "\"%llx-%llx%09lx-%llx\"", (unsigned long long)st.st_size,
                 (unsigned long long)st.st_mtim.tv_sec, (unsigned long)st.st_mtim.tv_nsec,
                 (unsigned long long)st.st_ino);
    if (net_static_etag_match(j->inm, etag)) {
        r = net_reply_new(304);
    } else {
        size_t len = (size_t)st.st_size, got = 0;
        body = shopd_malloc(len + 1);
        while (got < len) {
            ssize_t k = pread(fd, body + got, len - got, (off_t)got);
            if (k < 0 && errno == EINTR)
                continue;
            if (k <= 0)
                break;
            got += (size_t)k;
        }
        if (got != len) {
            /* Shrunk or unreadable while we read it: a retry sees the new file. */
            log_warn("static file read short mount=%s path=%s", mt->m.prefix, j->rel);
            r = static_error(503, "unavailable", "the file changed while it was read; retry");
            net_reply_add_header(r, "Retry-After", "1");
            goto out;
        }
        body[len] = '\0';
        r = net_reply_new(200);
        r->body = body;
        r->len = len;
        body = NULL;
        r->content_type = net_static_type(name);
    }
    char lm[64];
    struct tm tm;
    gmtime_r(&st.st_mtim.tv_sec, &tm);
    strftime(lm, sizeof(lm), "%a, %d %b %Y %H:%M:%S GMT", &tm);
    net_reply_add_header(r, "ETag", etag);
    net_reply_add_header(r, "Last-Modified", lm);
out:
    if (r && mt->m.cache_control && r->status < 400)
        net_reply_add_header(r, "Cache-Control", mt->m.cache_control);
    if (r && mt->m.csp)
        net_reply_add_header(r, "Content-Security-Policy", mt->m.csp);
    shopd_free(body);
    if (fd >= 0)
        close(fd);
    if (dfd >= 0)
        close(dfd);
    return r;
}

static void
job_free(job_t *j)
{
    if (j == NULL)
        return;
    shopd_free(j->rel);
    shopd_free(j->location);
    shopd_free(j->inm);
    shopd_free(j);
}

static void *
reader_main(void *arg)
{
    net_static_t *s = arg;
    pthread_mutex_lock(&s->lock);
    for (;;) {
        while (s->head == NULL && !s->stopping)
            pthread_cond_wait(&s->cond, &s->lock);
        job_t *j = s->head;
        if (j == NULL)
            break; /* stopping, and the queue is done */
        s->head = j->next;
        if (s->head == NULL)
            s->tail = NULL;
        s->queued--;
        pthread_mutex_unlock(&s->lock);
        net_reply_post(j->reply_to, j->token, serve(j));
        job_free(j);
        pthread_mutex_lock(&s->lock);
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

/* ------------------------------------------------------------ the table */

static int
by_prefix_len(const void *a, const void *b)
{
    const mount_t *x = a, *y = b;
    return x->plen < y->plen ? 1 : x->plen > y->plen ? -1 : 0;
}

net_static_t *
net_static_new(const net_static_mount_t *mounts, size_t n, int threads)
{
    net_static_t *s = shopd_calloc(1, sizeof(*s));
    s->mounts = shopd_calloc(n ? n : 1, sizeof(mount_t));
    s->n = n;
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cond, NULL);
    for (size_t i = 0; i < n; i++) {
        mount_t *m = &s->mounts[i];
        m->m.prefix = shopd_strdup(mounts[i].prefix);
        m->m.root = shopd_strdup(mounts[i].root);
        m->m.file = mounts[i].file;
        m->m.name_etag = mounts[i].name_etag;
        m->m.cache_control = mounts[i].cache_control ? shopd_strdup(mounts[i].cache_control) : NULL;
        m->m.csp = mounts[i].csp ? shopd_strdup(mounts[i].csp) : NULL;
        m->plen = strlen(m->m.prefix);
        /* A missing folder is not fatal: the API serves without its pages
         * (npm tools not installed yet); those URLs answer 404. */
        m->root_fd = open(m->m.root, (m->m.file ? O_RDONLY : O_PATH | O_DIRECTORY) | O_CLOEXEC);
        m->real_root = m->root_fd >= 0 ? realpath(m->m.root, NULL) : NULL;
        if (m->root_fd < 0 || m->real_root == NULL)
            log_warn("static mount %s: %s: %s (its URLs answer 404)", m->m.prefix, m->m.root,
                     strerror(errno));
    }
    qsort(s->mounts, n, sizeof(mount_t), by_prefix_len);
    s->nthreads = threads < 1 ? 1 : threads;
    s->tids = shopd_calloc((size_t)s->nthreads, sizeof(pthread_t));
    for (; s->started < s->nthreads; s->started++)
        if (pthread_create(&s->tids[s->started], NULL, reader_main, s) != 0)
            break;
    if (s->started == 0) {
        net_static_free(s);
        return NULL;
    }
    return s;
}

void
net_static_stop(net_static_t *s)
{
    if (s == NULL)
        return;
    pthread_mutex_lock(&s->lock);
    s->stopping = true;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
    for (int i = 0; i < s->started; i++)
        pthread_join(s->tids[i], NULL);
    s->started = 0;
}

void
net_static_free(net_static_t *s)
{
    if (s == NULL)
        return;
    net_static_stop(s);
    for (job_t *j = s->head; j;) { /* none: the readers finish the queue */
        job_t *next = j->next;
        job_free(j);
        j = next;
    }
    for (size_t i = 0; i < s->n; i++) {
        mount_t *m = &s->mounts[i];
        if (m->root_fd >= 0)
            close(m->root_fd);
        free(m->real_root); /* realpath's malloc */
        shopd_free((char *)m->m.prefix);
        shopd_free((char *)m->m.root);
        shopd_free((char *)m->m.cache_control);
        shopd_free((char *)m->m.csp);
    }
    shopd_free(s->mounts);
    shopd_free(s->tids);
    pthread_cond_destroy(&s->cond);
    pthread_mutex_destroy(&s->lock);
    shopd_free(s);
}

const net_static_mount_t *
net_static_find(const net_static_t *s, const char *path, size_t len)
{
    for (size_t i = 0; s && i < s->n; i++) {
        const mount_t *m = &s->mounts[i];
        if (len < m->plen || memcmp(path, m->m.prefix, m->plen) != 0)
            continue;
        if (len == m->plen || (!m->m.file && path[m->plen] == '/'))
            return &m->m;
    }
    return NULL;
}

net_handled_t
net_static_serve(net_static_t *s, const net_static_mount_t *mount, net_request_t *req)
{
    const mount_t *mt = (const mount_t *)mount; /* m is the first member */
    const char *method = net_req_method(req);
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        net_reply_t *r =
            net_reply_error(405, "method_not_allowed", "method not allowed on this endpoint");
        net_reply_add_header(r, "Allow", "GET, HEAD");
        net_respond(req, r);
        return NET_DONE;
    }
    size_t plen;
    const char *path = net_req_path(req, &plen);
    char rel[1024];
    int prc = mt->m.file ? 0 : net_static_path(path + mt->plen, plen - mt->plen, rel, sizeof(rel));
    if (mt->m.file)
        rel[0] = '\0';
    if (prc != 0) {
        net_respond(req, prc == -2 ? net_reply_error(404, "not_found", "no such file")
                                   : net_reply_error(400, "invalid_path",
                                                     "the path is not a file name this server "
                                                     "serves (encoded separators, dot segments, "
                                                     "control bytes)"));
        return NET_DONE;
    }
    job_t *j = shopd_calloc(1, sizeof(*j));
    j->mount = mt;
    j->rel = shopd_strdup(rel);
    j->slash = plen > 0 && path[plen - 1] == '/';
    size_t qlen;
    const char *q = net_req_query(req, &qlen);
    j->location = shopd_malloc(plen + qlen + 3);
    memcpy(j->location, path, plen);
    j->location[plen] = '/';
    if (qlen)
        j->location[plen + 1] = '?';
    memcpy(j->location + plen + 1 + (qlen ? 1 : 0), q, qlen);
    j->location[plen + 1 + (qlen ? 1 + qlen : 0)] = '\0';
    const char *inm = net_req_header(req, "If-None-Match");
    j->inm = inm ? shopd_strdup(inm) : NULL;
    net_req_defer(req, &j->reply_to, &j->token);

    pthread_mutex_lock(&s->lock);
    bool refuse = s->stopping || s->queued >= STATIC_QUEUE_MAX;
    if (!refuse) {
        if (s->tail)
            s->tail->next = j;
        else
            s->head = j;
        s->tail = j;
        s->queued++;
        pthread_cond_signal(&s->cond);
    }
    pthread_mutex_unlock(&s->lock);
    if (refuse) {
        job_free(j);
        net_reply_t *r = net_reply_error(503, "busy", "too many file reads are queued; retry");
        net_reply_add_header(r, "Retry-After", "1");
        net_respond(req, r);
        return NET_DONE;
    }
    return NET_DEFERRED;
}
