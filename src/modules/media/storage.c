/*
 * storage.c: the media storage backends behind media_store_t. The local one
 * (the default) keeps each object as a file SHOPD_MEDIA_DIR/<key>: written to
 * a temporary file in the same folder, flushed, then renamed over the name, so
 * a reader (or /media/) sees the whole object or none, never a partial one.
 * Keys are content-addressed, so a rename over an existing file replaces it
 * with the same bytes.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "media_priv.h"
#include "shopd/log.h"

static char local_dir[1024] = "media";
static bool use_s3;

void
media_local_path(const char *dir, const char *key, char *out, size_t cap)
{
    snprintf(out, cap, "%s/%s", dir, key);
}

static shopd_rc_t
local_put(const char *key, const void *p, size_t n, const char *mime)
{
    (void)mime;
    char path[1400], tmp[3000], folder[1400];
    media_local_path(local_dir, key, path, sizeof(path));
    snprintf(folder, sizeof(folder), "%s", path);
    char *slash = strrchr(folder, '/');
    if (slash)
        *slash = '\0';
    if ((mkdir(local_dir, 0755) != 0 && errno != EEXIST) ||
        (mkdir(folder, 0755) != 0 && errno != EEXIST)) {
        log_error("media: cannot create %s: %s", folder, strerror(errno));
        return SHOPD_ERR;
    }
    char rnd[17];
    shopd_random_hex(rnd, 8);
    /* A dot file beside it: the /media mount never serves dot files, so no
     * client can read an object while it is being written. */
    snprintf(tmp, sizeof(tmp), "%s/.%s.tmp-%s", folder, slash ? slash + 1 : path, rnd);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) {
        log_error("media: cannot create %s: %s", tmp, strerror(errno));
        return SHOPD_ERR;
    }
    const char *b = p;
    size_t left = n;
    while (left > 0) {
        ssize_t w = write(fd, b, left);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            goto fail;
        b += w;
        left -= (size_t)w;
    }
    if (fsync(fd) != 0)
        goto fail;
    close(fd);
    fd = -1;
    if (rename(tmp, path) != 0)
        goto fail;
    return SHOPD_OK;
fail:
    log_error("media: cannot write %s: %s", path, strerror(errno));
    if (fd >= 0)
        close(fd);
    unlink(tmp);
    return SHOPD_ERR;
}

static shopd_rc_t
local_get(const char *key, char **out, size_t *n)
{
    char path[1400];
    media_local_path(local_dir, key, path, sizeof(path));
    *out = NULL;
    *n = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? SHOPD_NOTFOUND : SHOPD_ERR;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return SHOPD_ERR;
    }
    char *buf = shopd_malloc((size_t)st.st_size + 1);
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    if (got != (size_t)st.st_size) {
        shopd_free(buf);
        return SHOPD_ERR;
    }
    *out = buf;
    *n = got;
    return SHOPD_OK;
}

static shopd_rc_t
local_del(const char *key)
{
    char path[1400];
    media_local_path(local_dir, key, path, sizeof(path));
    if (unlink(path) != 0 && errno != ENOENT) {
        log_error("media: cannot delete %s: %s", path, strerror(errno));
        return SHOPD_ERR;
    }
    return SHOPD_OK;
}

/* The folder of prefix ("s<digits>/") and every file in it: objects, and the
 * dot files of writes that never finished. shopd makes no subfolders, so one
 * there is left and the purge fails (and is retried, then a dead row). */
static shopd_rc_t
local_purge(const char *prefix)
{
    size_t pl = strlen(prefix);
    if (pl < 3 || prefix[0] != 's' || prefix[pl - 1] != '/' ||
        strspn(prefix + 1, "0123456789") != pl - 2)
        return SHOPD_INVALID;
    char dir[1400], path[1700];
    snprintf(dir, sizeof(dir), "%s/%.*s", local_dir, (int)(pl - 1), prefix);
    DIR *d = opendir(dir);
    if (d == NULL) {
        if (errno == ENOENT)
            return SHOPD_OK;
        log_error("media: cannot open %s: %s", dir, strerror(errno));
        return SHOPD_ERR;
    }
    shopd_rc_t rc = SHOPD_OK;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        if (unlink(path) != 0 && errno != ENOENT) {
            log_error("media: cannot delete %s: %s", path, strerror(errno));
            rc = SHOPD_ERR;
        }
    }
    closedir(d);
    if (rc == SHOPD_OK && rmdir(dir) != 0 && errno != ENOENT) {
        log_error("media: cannot delete %s: %s", dir, strerror(errno));
        rc = SHOPD_ERR;
    }
    return rc;
}

static const media_store_t local_store = {
    .name = "local",
    .put = local_put,
    .get = local_get,
    .del = local_del,
    .purge = local_purge,
};

int
media_storage_init(const cfg_t *cfg, char *err, size_t errlen)
{
    if (cfg->media_dir == NULL || cfg->media_dir[0] == '\0' ||
        strlen(cfg->media_dir) >= sizeof(local_dir) - 300) {
        snprintf(err, errlen, "SHOPD_MEDIA_DIR must be a folder name of at most 700 bytes");
        return -1;
    }
    snprintf(local_dir, sizeof(local_dir), "%s", cfg->media_dir);
    if (strcmp(cfg->media_backend, "s3") == 0) {
        use_s3 = true;
        return media_s3_init(cfg, err, errlen);
    }
    if (strcmp(cfg->media_backend, "local") != 0) {
        snprintf(err, errlen, "SHOPD_MEDIA_BACKEND must be local or s3");
        return -1;
    }
    /* Made now, not on first use: the /media mount (src/modules/pages) opens
     * it once, when the server starts. */
    if (mkdir(local_dir, 0755) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "SHOPD_MEDIA_DIR %s: %s", local_dir, strerror(errno));
        return -1;
    }
    return 0;
}

const media_store_t *
media_storage(void)
{
    return use_s3 ? &media_s3_store : &local_store;
}

const char *
media_storage_dir(void)
{
    return local_dir;
}

void
media_url(const cfg_t *cfg, const char *key, char *out, size_t cap)
{
    if (use_s3 && !(cfg->media_cdn_url && cfg->media_cdn_url[0])) {
        media_s3_object_url(key, out, cap); /* the bucket itself */
        return;
    }
    const char *base = cfg->media_cdn_url && cfg->media_cdn_url[0] ? cfg->media_cdn_url : "/media/";
    size_t bl = strlen(base);
    snprintf(out, cap, "%s%s%s", base, bl && base[bl - 1] == '/' ? "" : "/", key);
}
