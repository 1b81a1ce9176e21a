/*
 * job.c: the media job kind, run by the jobs machinery (src/modules/jobs/run.c)
 * on the blocking pool, from the outbox rows the image routes and the 0010
 * trigger write in the transactions of their changes:
 *   media.uploaded  make the renditions of one image (SHOPD_MEDIA_SIZES, WebP
 *                   and JPEG each, never wider than the original), record them
 *                   and set the image ready;
 *   media.deleted   delete the objects of a deleted image that no row of its
 *                   store still names (two images of the same bytes share them).
 * Both take the advisory lock of each key they write or delete, as the upload
 * does, so a delete never removes an object that a concurrent upload is about
 * to reference. A job may run twice (at-least-once): both kinds are idempotent.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "media_priv.h"
#include "shopd/catalog.h"
#include "shopd/log.h"

static shopd_rc_t
lock_key(db_conn_t *c, const char *key)
{
    const char *p[] = {key};
    PGresult *r =
        db_exec(c, "media_keylock", "SELECT pg_advisory_xact_lock(hashtextextended($1, 16))", 1, p);
    shopd_rc_t rc = db_result_rc(r);
    PQclear(r);
    return rc;
}

typedef struct rend_s {
    char key[160], url[512];
    int w, h;
    bool webp;
    void *buf;
    size_t len;
} rend_t;

typedef struct made_s {
    const char *sid, *iid;
    rend_t *r;
    size_t n;
} made_t;

static shopd_rc_t
record_tx(db_conn_t *c, void *arg)
{
    made_t *m = arg;
    const media_store_t *st = media_storage();
    /* The image row held first: deleting it (or its store) waits until the
     * renditions are recorded, so its objects, or the store's purge, come
     * after; an image deleted already gets no objects written. */
    const char *pi[] = {m->sid, m->iid};
    PGresult *r =
        db_exec(c, "media_image_hold",
                "SELECT 1 FROM product_images WHERE store_id = $1 AND id = $2 FOR SHARE", 2, pi);
    shopd_rc_t hold = db_result_rc(r);
    int there = hold == SHOPD_OK ? PQntuples(r) : 0;
    PQclear(r);
    if (hold != SHOPD_OK || there == 0)
        return hold;
    for (size_t i = 0; i < m->n; i++) {
        rend_t *x = &m->r[i];
        shopd_rc_t rc = lock_key(c, x->key);
        if (rc != SHOPD_OK)
            return rc;
        if (st->put(x->key, x->buf, x->len, x->webp ? "image/webp" : "image/jpeg") != SHOPD_OK)
            return SHOPD_AGAIN;
        char w[16], h[16], b[24];
        snprintf(w, sizeof(w), "%d", x->w);
        snprintf(h, sizeof(h), "%d", x->h);
        snprintf(b, sizeof(b), "%zu", x->len);
        const char *p[] = {m->sid, m->iid, x->webp ? "webp" : "jpeg", w, h, b, x->key, x->url};
        PGresult *r = db_exec(
            c, "media_rendition",
            "INSERT INTO product_image_renditions (store_id, image_id, format, width, height, "
            "bytes, key, url) SELECT $1, $2, $3, $4::int, $5::int, $6::bigint, $7, $8 WHERE "
            "EXISTS (SELECT 1 FROM product_images WHERE store_id = $1 AND id = $2) ON CONFLICT "
            "(store_id, image_id, format, width) DO UPDATE SET height = EXCLUDED.height, bytes = "
            "EXCLUDED.bytes, key = EXCLUDED.key, url = EXCLUDED.url",
            8, p);
        rc = db_result_rc(r);
        PQclear(r);
        if (rc != SHOPD_OK)
            return rc;
    }
    const char *p[] = {m->sid, m->iid};
    r = db_exec(c, "media_ready",
                "UPDATE product_images SET state = 'ready', updated_at = now() WHERE "
                "store_id = $1 AND id = $2",
                2, p);
    shopd_rc_t rc = db_result_rc(r);
    PQclear(r);
    return rc;
}

static shopd_rc_t
uploaded(api_ctx_t *ctx, db_conn_t *c, json_t *payload, char *err, size_t errlen)
{
    const cfg_t *cfg = ctx->app->cfg;
    json_t *jid = json_object_get(payload, "image_id");
    if (!json_is_integer(jid)) {
        snprintf(err, errlen, "media.uploaded without an image_id");
        return SHOPD_INVALID;
    }
    char sid[24], iid[24];
    snprintf(sid, sizeof(sid), "%llu", (unsigned long long)ctx->store_id);
    snprintf(iid, sizeof(iid), "%lld", (long long)json_integer_value(jid));
    const char *p[] = {sid, iid};
    PGresult *r =
        db_exec(c, "media_job_image",
                "SELECT key, sha256 FROM product_images WHERE store_id = $1 AND id = $2", 2, p);
    shopd_rc_t rc = db_result_rc(r);
    if (rc != SHOPD_OK || PQntuples(r) == 0) {
        PQclear(r);
        if (rc != SHOPD_OK)
            snprintf(err, errlen, "database unavailable");
        return rc == SHOPD_OK ? SHOPD_OK : SHOPD_AGAIN; /* deleted meanwhile: nothing to do */
    }
    char key[160], sha[65];
    snprintf(key, sizeof(key), "%s", PQgetvalue(r, 0, 0));
    snprintf(sha, sizeof(sha), "%s", PQgetvalue(r, 0, 1));
    PQclear(r);

    char *orig = NULL;
    size_t olen = 0;
    if (media_storage()->get(key, &orig, &olen) != SHOPD_OK) {
        snprintf(err, errlen, "cannot read the original %s", key);
        return SHOPD_AGAIN;
    }
    int sizes[16];
    int ns = media_parse_sizes(cfg->media_sizes, sizes, 16);
    rend_t rs[32];
    size_t n = 0;
    rc = SHOPD_OK;
    for (int fmt = 0; fmt < 2 && rc == SHOPD_OK; fmt++) {
        int last_w = 0;
        for (int i = 0; i < ns; i++) {
            rend_t *x = &rs[n];
            memset(x, 0, sizeof(*x));
            x->webp = fmt == 0;
            if (media_img_rendition(orig, olen, sizes[i], x->webp, &x->buf, &x->len, &x->w, &x->h,
                                    err, errlen) != 0) {
                rc = SHOPD_AGAIN;
                break;
            }
            if (x->w == last_w) { /* the original is narrower: one rendition at its width */
                media_img_free(x->buf);
                continue;
            }
            last_w = x->w;
            snprintf(x->key, sizeof(x->key), "s%s/%s_%d.%s", sid, sha, x->w,
                     x->webp ? "webp" : "jpg");
            media_url(cfg, x->key, x->url, sizeof(x->url));
            n++;
        }
    }
    shopd_free(orig);
    if (rc == SHOPD_OK) {
        made_t m = {sid, iid, rs, n};
        rc = db_tx(c, record_tx, &m);
        if (rc != SHOPD_OK) {
            snprintf(err, errlen, "cannot record the renditions (%s)", shopd_rc_name(rc));
            rc = SHOPD_AGAIN;
        } else {
            catalog_changed(ctx); /* cached product pages show the renditions now */
        }
    }
    for (size_t i = 0; i < n; i++)
        media_img_free(rs[i].buf);
    return rc;
}

typedef struct del_s {
    const char *sid, *key;
} del_t;

static shopd_rc_t
delete_tx(db_conn_t *c, void *arg)
{
    del_t *d = arg;
    shopd_rc_t rc = lock_key(c, d->key);
    if (rc != SHOPD_OK)
        return rc;
    const char *p[] = {d->sid, d->key};
    PGresult *r = db_exec(c, "media_key_used",
                          "SELECT EXISTS (SELECT 1 FROM product_images WHERE store_id = $1 AND key "
                          "= $2) OR EXISTS (SELECT 1 FROM product_image_renditions WHERE store_id "
                          "= $1 AND key = $2)",
                          2, p);
    rc = db_result_rc(r);
    bool used = rc == SHOPD_OK && PQgetvalue(r, 0, 0)[0] == 't';
    PQclear(r);
    if (rc != SHOPD_OK || used)
        return rc;
    return media_storage()->del(d->key) == SHOPD_OK ? SHOPD_OK : SHOPD_AGAIN;
}

static shopd_rc_t
deleted(api_ctx_t *ctx, db_conn_t *c, json_t *payload, char *err, size_t errlen)
{
    char sid[24];
    snprintf(sid, sizeof(sid), "%llu", (unsigned long long)ctx->store_id);
    char prefix[32];
    snprintf(prefix, sizeof(prefix), "s%s/", sid);
    json_t *keys = json_object_get(payload, "keys");
    size_t i;
    json_t *k;
    json_array_foreach(keys, i, k)
    {
        const char *key = json_string_value(k);
        /* Only this store's keys: a payload can never reach another's objects. */
        if (key == NULL || !media_key_valid(key, strlen(key)) ||
            strncmp(key, prefix, strlen(prefix)) != 0)
            continue;
        del_t d = {sid, key};
        shopd_rc_t rc = db_tx(c, delete_tx, &d);
        if (rc != SHOPD_OK) {
            snprintf(err, errlen, "cannot delete %s (%s)", key, shopd_rc_name(rc));
            return SHOPD_AGAIN;
        }
    }
    return SHOPD_OK;
}

shopd_rc_t
media_job(api_ctx_t *ctx, db_conn_t *c, const char *kind, const char *payload, char *err,
          size_t errlen)
{
    json_t *j = json_loads(payload, 0, NULL);
    if (j == NULL) {
        snprintf(err, errlen, "unreadable payload");
        return SHOPD_INVALID;
    }
    shopd_rc_t rc;
    if (strcmp(kind, "media.uploaded") == 0) {
        rc = uploaded(ctx, c, j, err, errlen);
    } else if (strcmp(kind, "media.deleted") == 0) {
        rc = deleted(ctx, c, j, err, errlen);
    } else {
        snprintf(err, errlen, "unknown media event %s", kind);
        rc = SHOPD_INVALID;
    }
    json_decref(j);
    return rc;
}

void
media_job_dead(api_ctx_t *ctx, db_conn_t *c, const char *kind, const char *payload)
{
    if (strcmp(kind, "media.uploaded") != 0)
        return;
    json_t *j = json_loads(payload, 0, NULL);
    json_t *jid = json_object_get(j, "image_id");
    if (json_is_integer(jid)) {
        char sid[24], iid[24];
        snprintf(sid, sizeof(sid), "%llu", (unsigned long long)ctx->store_id);
        snprintf(iid, sizeof(iid), "%lld", (long long)json_integer_value(jid));
        const char *p[] = {sid, iid};
        PQclear(db_exec(c, "media_failed",
                        "UPDATE product_images SET state = 'failed', updated_at = now() WHERE "
                        "store_id = $1 AND id = $2 AND state = 'processing'",
                        2, p));
        catalog_changed(ctx);
    }
    json_decref(j);
}
