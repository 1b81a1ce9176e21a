/*
 * images.c: the product image routes. An upload (a raw image body or
 * multipart/form-data) runs on the blocking pool: every file is sniffed,
 * checked, decoded, stripped and hashed before anything is written; then one
 * transaction checks the product (and variant), writes each object (under an
 * advisory lock per key, which the delete job takes too), inserts the rows and
 * their media.uploaded outbox rows. A request either stores all its files or
 * none of its rows (an object written before a failed COMMIT stays as an
 * unreferenced file: its name is its content, and nothing links to it).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "media_priv.h"
#include "shopd/catalog.h"
#include "shopd/log.h"

#define MEDIA_MAX_FILES 10

typedef struct up_file_s {
    const char *p; /* into the body, or buf */
    size_t n;
    char *buf; /* owned copy when the parser's pieces were not contiguous */
    size_t cap;
    media_type_t type;
    void *stored; /* the stripped original (g_malloc) */
    size_t slen;
    int w, h;
    char sha[65];
    char key[128];
    char url[512];
} up_file_t;

typedef struct up_s {
    api_ctx_t *ctx;
    up_file_t files[MEDIA_MAX_FILES];
    size_t nfiles;
    bool too_many;
    int cur; /* the part being read: -1 none, -2 a field, >=0 a file */
    char field[128];
    char fbuf[1024];
    size_t flen;
    bool field_over;
    char alt[1024], position[32], variant[32];
    bool have_alt, have_position, have_variant;
    const char *unknown; /* a field we do not take */
    char unknown_name[128];
    /* the transaction's answer */
    char product[24], sid[24];
    json_t *out;
} up_t;

static bool
id_param(const api_ctx_t *ctx, const char *name, char *buf)
{
    size_t n;
    const char *v = msg_param(ctx->env, name, &n);
    if (v == NULL || n == 0 || n > 18)
        return false;
    for (size_t i = 0; i < n; i++)
        if (v[i] < '0' || v[i] > '9')
            return false;
    memcpy(buf, v, n);
    buf[n] = '\0';
    return strtoull(buf, NULL, 10) > 0;
}

/* ---- multipart callbacks ---- */

static int
mp_begin(void *ud, const media_mp_part_t *part)
{
    up_t *u = ud;
    bool file = part->has_filename || strncasecmp(part->content_type, "image/", 6) == 0;
    if (file) {
        if (u->nfiles >= MEDIA_MAX_FILES) {
            u->too_many = true;
            return 1;
        }
        u->cur = (int)u->nfiles++;
        return 0;
    }
    u->cur = -2;
    u->flen = 0;
    u->field_over = false;
    snprintf(u->field, sizeof(u->field), "%s", part->name);
    if (strcmp(part->name, "alt") != 0 && strcmp(part->name, "position") != 0 &&
        strcmp(part->name, "variant_id") != 0) {
        snprintf(u->unknown_name, sizeof(u->unknown_name), "%s", part->name);
        u->unknown = u->unknown_name;
    }
    return 0;
}

static int
mp_data(void *ud, const char *at, size_t n)
{
    up_t *u = ud;
    if (u->cur == -2) {
        if (u->flen + n >= sizeof(u->fbuf)) {
            u->field_over = true;
            return 0;
        }
        memcpy(u->fbuf + u->flen, at, n);
        u->flen += n;
        return 0;
    }
    if (u->cur < 0)
        return 0;
    up_file_t *f = &u->files[u->cur];
    size_t limit = (size_t)u->ctx->app->cfg->media_max_bytes + 1; /* enough to know it is over */
    if (f->n >= limit)
        return 0;
    if (f->buf == NULL && (f->n == 0 || f->p + f->n == at)) {
        if (f->n == 0)
            f->p = at;
        f->n += n; /* contiguous in the body: no copy */
        return 0;
    }
    if (f->buf == NULL) { /* pieces from elsewhere: copy from here on */
        f->cap = f->n + n + 4096;
        f->buf = shopd_malloc(f->cap);
        memcpy(f->buf, f->p, f->n);
        f->p = f->buf;
    }
    if (f->n + n > f->cap) {
        f->cap = (f->n + n) * 2;
        f->buf = shopd_realloc(f->buf, f->cap);
        f->p = f->buf;
    }
    memcpy(f->buf + f->n, at, n);
    f->n += n;
    return 0;
}

static int
mp_end(void *ud)
{
    up_t *u = ud;
    if (u->cur == -2 && !u->unknown) {
        char *dst = strcmp(u->field, "alt") == 0        ? u->alt
                    : strcmp(u->field, "position") == 0 ? u->position
                                                        : u->variant;
        size_t cap = dst == u->alt ? sizeof(u->alt) : sizeof(u->position);
        if (u->field_over || u->flen >= cap) {
            /* too long for any valid value: make it fail validation */
            snprintf(dst, cap, "%s", dst == u->alt ? "" : "x");
            if (dst == u->alt) {
                memset(u->alt, 'x', sizeof(u->alt) - 1);
                u->alt[sizeof(u->alt) - 1] = '\0';
            }
        } else {
            memcpy(dst, u->fbuf, u->flen);
            dst[u->flen] = '\0';
        }
        if (dst == u->alt)
            u->have_alt = true;
        else if (dst == u->position)
            u->have_position = true;
        else
            u->have_variant = true;
    }
    u->cur = -1;
    return 0;
}

static void
up_free(up_t *u)
{
    for (size_t i = 0; i < u->nfiles; i++) {
        shopd_free(u->files[i].buf);
        if (u->files[i].stored)
            media_img_free(u->files[i].stored);
    }
    json_decref(u->out);
}

/* ---- the transaction ---- */

static shopd_rc_t
up_tx(db_conn_t *c, void *arg)
{
    up_t *u = arg;
    json_decref(u->out);
    u->out = json_array();
    const char *p1[] = {u->sid, u->product};
    PGresult *r = db_exec(c, "media_product",
                          "SELECT coalesce((SELECT max(position) + 1 FROM product_images WHERE "
                          "store_id = $1 AND product_id = $2), 0) FROM products WHERE store_id = "
                          "$1 AND id = $2 FOR SHARE",
                          2, p1);
    shopd_rc_t rc = db_result_rc(r);
    if (rc != SHOPD_OK || PQntuples(r) == 0) {
        PQclear(r);
        return rc != SHOPD_OK ? rc : SHOPD_NOTFOUND;
    }
    long pos = u->have_position ? atol(u->position) : atol(PQgetvalue(r, 0, 0));
    PQclear(r);
    if (u->have_variant) {
        const char *p2[] = {u->sid, u->product, u->variant};
        r = db_exec(c, "media_variant",
                    "SELECT 1 FROM product_variants WHERE store_id = $1 AND product_id = $2 AND "
                    "id = $3::bigint",
                    3, p2);
        rc = db_result_rc(r);
        int n = rc == SHOPD_OK ? PQntuples(r) : 0;
        PQclear(r);
        if (rc != SHOPD_OK)
            return rc;
        if (n == 0)
            return SHOPD_INVALID;
    }
    const media_store_t *st = media_storage();
    for (size_t i = 0; i < u->nfiles; i++) {
        up_file_t *f = &u->files[i];
        const char *pl[] = {f->key};
        r = db_exec(c, "media_keylock", "SELECT pg_advisory_xact_lock(hashtextextended($1, 16))", 1,
                    pl);
        rc = db_result_rc(r);
        PQclear(r);
        if (rc != SHOPD_OK)
            return rc;
        if (st->put(f->key, f->stored, f->slen, media_type_mime(f->type)) != SHOPD_OK)
            return SHOPD_ERR;
        char ps[24], bytes[24], w[16], h[16];
        snprintf(ps, sizeof(ps), "%ld", pos + (long)i > 10000 ? 10000 : pos + (long)i);
        snprintf(bytes, sizeof(bytes), "%zu", f->slen);
        snprintf(w, sizeof(w), "%d", f->w);
        snprintf(h, sizeof(h), "%d", f->h);
        const char *pi[] = {u->sid,
                            u->product,
                            u->have_variant ? u->variant : NULL,
                            u->have_alt ? u->alt : "",
                            ps,
                            f->key,
                            f->sha,
                            media_type_mime(f->type),
                            bytes,
                            w,
                            h,
                            f->url};
        r = db_exec(c, "media_insert",
                    "WITH i AS (INSERT INTO product_images (store_id, product_id, variant_id, alt, "
                    "position, key, sha256, mime, bytes, width, height, url) VALUES ($1, $2, "
                    "$3::bigint, $4, $5::int, $6, $7, $8, $9::bigint, $10::int, $11::int, $12) "
                    "RETURNING *), "
                    "o AS (INSERT INTO outbox (store_id, kind, payload) SELECT store_id, "
                    "'media.uploaded', jsonb_build_object('image_id', id, 'key', key) FROM i) "
                    "SELECT " MEDIA_IMAGE_JSON("i") "::text FROM i",
                    12, pi);
        rc = db_result_rc(r);
        if (rc != SHOPD_OK) {
            log_warn("media: insert failed store=%s: %s", u->sid, PQresultErrorMessage(r));
            PQclear(r);
            return rc;
        }
        json_t *j = json_loads(PQgetvalue(r, 0, 0), 0, NULL);
        PQclear(r);
        json_array_append_new(u->out, j ? j : json_null());
    }
    return SHOPD_OK;
}

static net_reply_t *
img_fail(media_img_rc_t rc, const char *err)
{
    switch (rc) {
    case MEDIA_IMG_UNSUPPORTED:
        return api_fail(SHOPD_UNSUPPORTED, "unsupported_media_type", err);
    case MEDIA_IMG_TOO_MANY_PIXELS:
        return api_fail_field(SHOPD_INVALID, "image_too_large", err, "file", "too many pixels");
    default:
        return api_fail_field(SHOPD_INVALID, "invalid_image", err, "file",
                              "truncated or not a readable image");
    }
}

static bool
all_digits(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n == 0 || n > max)
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

/* Checks alt, position and variant_id (from the form or the query). */
static net_reply_t *
up_validate(up_t *u)
{
    api_val_t v = {0};
    if (u->unknown)
        api_val_add(&v, u->unknown, "unknown field");
    if (u->have_alt) {
        json_t *o = json_pack("{s:s}", "alt", u->alt);
        if (o == NULL)
            api_val_add(&v, "alt", "must be UTF-8 text");
        else
            api_val_string(&v, o, "alt", false, 0, 500);
        json_decref(o);
    }
    if (u->have_position && (!all_digits(u->position, 5) || atol(u->position) > 10000))
        api_val_add(&v, "position", "must be an integer from 0 to 10000");
    if (u->have_variant && (!all_digits(u->variant, 18) || atoll(u->variant) <= 0))
        api_val_add(&v, "variant_id", "must be a positive integer");
    return v.n ? api_val_reply(&v) : NULL;
}

net_reply_t *
media_h_upload(api_ctx_t *ctx)
{
    net_reply_t *reply = NULL;
    up_t *u = shopd_calloc(1, sizeof(*u));
    u->ctx = ctx;
    u->cur = -1;
    const cfg_t *cfg = ctx->app->cfg;
    if (!id_param(ctx, "id", u->product)) {
        reply = api_fail(SHOPD_NOTFOUND, "product_not_found", "no such product");
        goto out;
    }
    snprintf(u->sid, sizeof(u->sid), "%llu", (unsigned long long)ctx->store_id);

    char ct[512];
    snprintf(ct, sizeof(ct), "%.*s", (int)(ctx->env->ct.n < 511 ? ctx->env->ct.n : 511),
             ctx->env->ct.p ? ctx->env->ct.p : "");
    char boundary[MEDIA_MP_MAX_BOUNDARY + 1];
    if (media_mp_boundary(ct, strlen(ct), boundary)) {
        media_mp_cb_t cb = {mp_begin, mp_data, mp_end, u};
        media_mp_t *mp = shopd_malloc(sizeof(*mp));
        media_mp_init(mp, boundary, &cb);
        media_mp_rc_t prc = media_mp_feed(mp, ctx->env->body.p, ctx->env->body.n);
        if (prc == MEDIA_MP_OK)
            prc = media_mp_finish(mp);
        char why[128];
        snprintf(why, sizeof(why), "malformed multipart body: %s", mp->err ? mp->err : "?");
        shopd_free(mp);
        if (u->too_many) {
            reply =
                api_fail_field(SHOPD_INVALID, "validation_failed", "the request has invalid fields",
                               "file", "at most 10 files per request");
            goto out;
        }
        if (prc != MEDIA_MP_OK) {
            reply = api_fail_field(SHOPD_INVALID, "validation_failed", why, "body",
                                   "truncated or malformed multipart/form-data");
            goto out;
        }
    } else if (strncasecmp(ct, "image/", 6) == 0) {
        u->nfiles = 1;
        u->files[0].p = ctx->env->body.p;
        u->files[0].n = ctx->env->body.n;
        char buf[1024];
        if (api_query_param(ctx->env, "alt", u->alt, sizeof(u->alt)))
            u->have_alt = true;
        /* Longer than any valid value: kept as "x", which validation refuses. */
        if (api_query_param(ctx->env, "position", buf, sizeof(buf))) {
            memcpy(u->position, strlen(buf) < sizeof(u->position) ? buf : "x",
                   strlen(buf) < sizeof(u->position) ? strlen(buf) + 1 : 2);
            u->have_position = true;
        }
        if (api_query_param(ctx->env, "variant_id", buf, sizeof(buf))) {
            memcpy(u->variant, strlen(buf) < sizeof(u->variant) ? buf : "x",
                   strlen(buf) < sizeof(u->variant) ? strlen(buf) + 1 : 2);
            u->have_variant = true;
        }
    } else {
        reply = api_fail(SHOPD_UNSUPPORTED, "unsupported_media_type",
                         "send an image (Content-Type: image/*) or multipart/form-data");
        goto out;
    }
    if ((reply = up_validate(u)) != NULL)
        goto out;
    if (u->nfiles == 0 || (u->nfiles == 1 && u->files[0].n == 0)) {
        reply = api_fail_field(SHOPD_INVALID, "validation_failed", "the request has invalid fields",
                               "file", "required: an image file");
        goto out;
    }
    /* Everything checked and prepared before anything is written. */
    for (size_t i = 0; i < u->nfiles; i++) {
        up_file_t *f = &u->files[i];
        if (f->n > (size_t)cfg->media_max_bytes) {
            char msg[128];
            snprintf(msg, sizeof(msg), "an image may have at most %d bytes", cfg->media_max_bytes);
            reply = api_fail(SHOPD_TOO_LARGE, "payload_too_large", msg);
            goto out;
        }
        f->type = media_sniff(f->p, f->n);
        if (f->type == MEDIA_UNKNOWN || !media_vips_has(f->type)) {
            reply = api_fail(SHOPD_UNSUPPORTED, "unsupported_media_type",
                             "the file is not a JPEG, PNG, WebP or AVIF image");
            goto out;
        }
        char err[512];
        uint32_t hw, hh;
        if (media_header_dims(f->p, f->n, f->type, &hw, &hh)) {
            if (hw == 0 || hh == 0) {
                reply = img_fail(MEDIA_IMG_CORRUPT, "the image header says it has no pixels");
                goto out;
            }
            if ((uint64_t)hw * hh > (uint64_t)cfg->media_max_pixels) {
                snprintf(err, sizeof(err),
                         "the image is %u x %u pixels; at most %d pixels are allowed", hw, hh,
                         cfg->media_max_pixels);
                reply = img_fail(MEDIA_IMG_TOO_MANY_PIXELS, err);
                goto out;
            }
        } else if (f->type != MEDIA_AVIF) {
            reply = img_fail(MEDIA_IMG_CORRUPT, "the image header cannot be read");
            goto out;
        }
        media_img_rc_t irc =
            media_img_original(f->p, f->n, f->type, cfg->media_max_pixels, &f->stored, &f->slen,
                               &f->w, &f->h, err, sizeof(err));
        if (irc != MEDIA_IMG_OK) {
            reply = img_fail(irc, err);
            goto out;
        }
        media_sha256_hex(f->stored, f->slen, f->sha);
        char sid[24], sha[65];
        memcpy(sid, u->sid, sizeof(sid));
        memcpy(sha, f->sha, sizeof(sha));
        snprintf(f->key, sizeof(f->key), "s%s/%s.%s", sid, sha, media_type_ext(f->type));
        media_url(cfg, f->key, f->url, sizeof(f->url));
    }

    db_conn_t *c = db_acquire(ctx->app->db, 2000);
    if (c == NULL) {
        reply = api_unavailable("the database");
        goto out;
    }
    shopd_rc_t rc = db_tx(c, up_tx, u);
    db_release(c);
    if (rc == SHOPD_NOTFOUND) {
        reply = api_fail(SHOPD_NOTFOUND, "product_not_found", "no such product");
    } else if (rc == SHOPD_INVALID) {
        reply = api_fail_field(SHOPD_INVALID, "validation_failed", "the request has invalid fields",
                               "variant_id", "no such variant of this product");
    } else if (rc == SHOPD_UNAVAILABLE) {
        reply = api_unavailable("the database");
    } else if (rc != SHOPD_OK) {
        reply = api_internal(ctx, "image upload failed");
    } else {
        catalog_changed(ctx);
        reply = api_json(SHOPD_CREATED, json_pack("{s:O}", "data", u->out));
    }
out:
    up_free(u);
    shopd_free(u);
    return reply;
}

/* ---- list, edit, delete ---- */

net_reply_t *
media_h_list(api_ctx_t *ctx)
{
    char pid[24], sid[24];
    if (!id_param(ctx, "id", pid))
        return api_fail(SHOPD_NOTFOUND, "product_not_found", "no such product");
    snprintf(sid, sizeof(sid), "%llu", (unsigned long long)ctx->store_id);
    db_conn_t *c = db_acquire(ctx->app->db, 2000);
    if (c == NULL)
        return api_unavailable("the database");
    const char *p[] = {sid, pid};
    PGresult *r = db_exec(
        c, "media_list",
        "SELECT json_build_object('data', (SELECT coalesce(json_agg(" MEDIA_IMAGE_JSON(
            "i") " ORDER BY i.position, i.id), '[]') FROM product_images i WHERE i.store_id = $1 "
                 "AND i.product_id = $2))::text FROM products WHERE store_id = $1 AND id = $2",
        2, p);
    db_release(c);
    net_reply_t *reply;
    if (db_result_rc(r) != SHOPD_OK)
        reply = api_db_error(ctx, r, "list images");
    else if (PQntuples(r) == 0)
        reply = api_fail(SHOPD_NOTFOUND, "product_not_found", "no such product");
    else
        reply = api_raw_json(SHOPD_OK, PQgetvalue(r, 0, 0), (size_t)PQgetlength(r, 0, 0));
    PQclear(r);
    return reply;
}

net_reply_t *
media_h_update(api_ctx_t *ctx)
{
    char pid[24], iid[24], sid[24];
    if (!id_param(ctx, "id", pid) || !id_param(ctx, "image_id", iid))
        return api_fail(SHOPD_NOTFOUND, "image_not_found", "no such image");
    snprintf(sid, sizeof(sid), "%llu", (unsigned long long)ctx->store_id);
    api_val_t v = {0};
    static const char *const allowed[] = {"alt", "position", "variant_id", NULL};
    api_val_only(&v, ctx->body, allowed);
    const char *alt = api_val_string(&v, ctx->body, "alt", false, 0, 500);
    long long pos = 0, var = 0;
    int hp = api_val_int(&v, ctx->body, "position", 0, 10000, &pos);
    json_t *jv = json_object_get(ctx->body, "variant_id");
    bool var_given = jv != NULL, var_null = json_is_null(jv);
    if (var_given && !var_null && api_val_int(&v, ctx->body, "variant_id", 1, INT64_MAX, &var) < 0)
        var_given = false;
    if (v.n)
        return api_val_reply(&v);
    char ps[24], vs[24];
    snprintf(ps, sizeof(ps), "%lld", pos);
    snprintf(vs, sizeof(vs), "%lld", var);
    const char *p[] = {sid,
                       pid,
                       iid,
                       alt,
                       hp == 1 ? ps : NULL,
                       var_given ? "t" : "f",
                       var_given && !var_null ? vs : NULL};
    db_conn_t *c = db_acquire(ctx->app->db, 2000);
    if (c == NULL)
        return api_unavailable("the database");
    /* The variant must be one of this product's: checked in the statement, so
     * nothing changes when it is not. */
    PGresult *r = db_exec(
        c, "media_update",
        "WITH ok AS (SELECT ($6 = 'f' OR $7::bigint IS NULL OR EXISTS (SELECT 1 FROM "
        "product_variants WHERE store_id = $1 AND product_id = $2 AND id = $7::bigint)) AS v), "
        "u AS (UPDATE product_images i SET alt = coalesce($4, alt), position = "
        "coalesce($5::int, position), variant_id = CASE WHEN $6 = 't' THEN $7::bigint ELSE "
        "variant_id END, updated_at = now() FROM ok WHERE ok.v AND i.store_id = $1 AND "
        "i.product_id = $2 AND i.id = $3 RETURNING i.*) "
        "SELECT (SELECT v FROM ok), (SELECT " MEDIA_IMAGE_JSON("u") "::text FROM u)",
        7, p);
    db_release(c);
    net_reply_t *reply;
    if (db_result_rc(r) != SHOPD_OK)
        reply = api_db_error(ctx, r, "update image");
    else if (PQgetvalue(r, 0, 0)[0] != 't')
        reply = api_fail_field(SHOPD_INVALID, "validation_failed", "the request has invalid fields",
                               "variant_id", "no such variant of this product");
    else if (PQgetisnull(r, 0, 1))
        reply = api_fail(SHOPD_NOTFOUND, "image_not_found", "no such image");
    else {
        catalog_changed(ctx);
        reply = api_raw_json(SHOPD_OK, PQgetvalue(r, 0, 1), (size_t)PQgetlength(r, 0, 1));
    }
    PQclear(r);
    return reply;
}

net_reply_t *
media_h_delete(api_ctx_t *ctx)
{
    char pid[24], iid[24], sid[24];
    if (!id_param(ctx, "id", pid) || !id_param(ctx, "image_id", iid))
        return api_fail(SHOPD_NOTFOUND, "image_not_found", "no such image");
    snprintf(sid, sizeof(sid), "%llu", (unsigned long long)ctx->store_id);
    db_conn_t *c = db_acquire(ctx->app->db, 2000);
    if (c == NULL)
        return api_unavailable("the database");
    /* One statement (its own transaction): the row goes and the trigger of 0010
     * writes the media.deleted outbox row that removes the objects. */
    const char *p[] = {sid, pid, iid};
    PGresult *r = db_exec(c, "media_delete",
                          "DELETE FROM product_images WHERE store_id = $1 AND product_id = $2 AND "
                          "id = $3",
                          3, p);
    db_release(c);
    net_reply_t *reply;
    if (db_result_rc(r) != SHOPD_OK)
        reply = api_db_error(ctx, r, "delete image");
    else if (strcmp(PQcmdTuples(r), "0") == 0)
        reply = api_fail(SHOPD_NOTFOUND, "image_not_found", "no such image");
    else {
        catalog_changed(ctx);
        reply = api_empty(SHOPD_NO_CONTENT);
    }
    PQclear(r);
    return reply;
}
