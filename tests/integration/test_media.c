/*
 * test_media.c: product images against the real binary, PostgreSQL and Redis:
 * raw and multipart uploads, type sniffing, the size and pixel limits, a
 * truncated file, EXIF stripped (checked in the stored bytes) with its
 * orientation applied, renditions made by the media job (sizes read back from
 * the stored files), serving with ETag/304, PATCH and DELETE (objects removed
 * by the job), another store's admin refused everywhere, and the renditions
 * job failing every attempt: the image failed, a dead letter for operators,
 * and ready after the cause is fixed and the letter retried.
 *
 * Test images are made here with libvips (the same library shopd links), and
 * the decompression bomb by hand: a valid PNG header claiming 50,000 x 50,000.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vips/vips.h>

#include <cmocka.h>

#include "harness.h"

static th_server_t *srv;
static char media_dir[256];
static const char *const *srv_env; /* the settings setup started srv with */
static long store_a, store_b;
static char *admin_a, *admin_b;

/* ---- images ---- */

/* A w x h sRGB image with a gradient (so encoders have something to encode),
 * saved as fmt ("png", "jpg", "webp"); orientation > 0 sets the EXIF tag.
 * Returns g_malloc'd bytes. */
static void *
make_image(int w, int h, const char *fmt, int orientation, size_t *len)
{
    VipsImage *x = NULL, *y = NULL, *rgb = NULL, *u8 = NULL;
    assert_int_equal(vips_xyz(&x, w, h, NULL), 0);
    assert_int_equal(vips_extract_band(x, &y, 0, NULL), 0);
    VipsImage *bands[3] = {y, y, y};
    assert_int_equal(vips_bandjoin(bands, &rgb, 3, NULL), 0);
    assert_int_equal(vips_cast_uchar(rgb, &u8, NULL), 0);
    if (orientation > 0) {
        vips_image_set_int(u8, "orientation", orientation);
        vips_image_set_string(u8, "exif-ifd0-Artist", "shopd test");
    }
    void *buf = NULL;
    int rc = -1;
    if (strcmp(fmt, "png") == 0)
        rc = vips_pngsave_buffer(u8, &buf, len, NULL);
    else if (strcmp(fmt, "jpg") == 0)
        rc = vips_jpegsave_buffer(u8, &buf, len, NULL);
    else
        rc = vips_webpsave_buffer(u8, &buf, len, NULL);
    assert_int_equal(rc, 0);
    g_object_unref(u8);
    g_object_unref(rgb);
    g_object_unref(y);
    g_object_unref(x);
    return buf;
}

/* CRC-32 as PNG chunks carry it (ISO 3309), bit by bit: a few bytes only. */
static uint32_t
crc32_png(const unsigned char *p, size_t n)
{
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
    }
    return c ^ 0xFFFFFFFFu;
}

/* A PNG whose header says 50,000 x 50,000 pixels (with a valid CRC), and a few
 * bytes of IDAT: what a decompression bomb starts like. */
static size_t
make_bomb(unsigned char *out)
{
    static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    size_t n = 0;
    memcpy(out, sig, 8);
    n = 8;
    unsigned char ihdr[17] = {'I', 'H', 'D', 'R'};
    uint32_t wh = 50000;
    for (int i = 0; i < 2; i++) {
        ihdr[4 + 4 * i] = (unsigned char)(wh >> 24);
        ihdr[5 + 4 * i] = (unsigned char)(wh >> 16);
        ihdr[6 + 4 * i] = (unsigned char)(wh >> 8);
        ihdr[7 + 4 * i] = (unsigned char)wh;
    }
    ihdr[12] = 8; /* bit depth */
    ihdr[13] = 2; /* RGB */
    out[n++] = 0, out[n++] = 0, out[n++] = 0, out[n++] = 13;
    memcpy(out + n, ihdr, 17);
    n += 17;
    uint32_t crc = crc32_png(ihdr, 17);
    out[n++] = (unsigned char)(crc >> 24), out[n++] = (unsigned char)(crc >> 16);
    out[n++] = (unsigned char)(crc >> 8), out[n++] = (unsigned char)crc;
    memcpy(out + n, "\0\0\0\0IEND\xae\x42\x60\x82", 12);
    return n + 12;
}

static bool
has_exif(const unsigned char *p, size_t n)
{
    /* An APP1 segment (FF E1) whose payload starts "Exif\0\0". */
    for (size_t i = 0; i + 10 < n; i++)
        if (p[i] == 0xFF && p[i + 1] == 0xE1 && memcmp(p + i + 4, "Exif\0\0", 6) == 0)
            return true;
    return false;
}

/* ---- requests ---- */

static th_resp_t
upload(long store, const char *token, long product, const char *ctype, const void *body, size_t len,
       const char *query)
{
    char path[256], tenant[64], auth[2048], ct[256];
    snprintf(path, sizeof(path), "/api/v1/products/%ld/images%s%s", product, query ? "?" : "",
             query ? query : "");
    snprintf(tenant, sizeof(tenant), "X-Tenant-Id: %ld", store);
    th_auth_header(auth, sizeof(auth), token);
    snprintf(ct, sizeof(ct), "Content-Type: %s", ctype);
    const char *h[] = {tenant, auth, ct, NULL};
    return th_req_n(srv, "POST", path, h, body, len);
}

static long
product_new(long store, const char *token)
{
    char body[256];
    snprintf(body, sizeof(body), "{\"name\":\"%s\",\"base_price\":1500,\"status\":\"active\"}",
             th_slug("Pic"));
    th_resp_t r = th_store_req(srv, store, token, "POST", "/api/v1/products", body);
    assert_int_equal(r.status, 201);
    long id = (long)json_integer_value(json_object_get(r.json, "id"));
    th_resp_free(&r);
    return id;
}

static long
variant_new(long store, const char *token, long product)
{
    char body[256], path[128];
    snprintf(body, sizeof(body), "{\"sku\":\"%s\",\"stock\":3}", th_slug("SKU"));
    snprintf(path, sizeof(path), "/api/v1/products/%ld/variants", product);
    th_resp_t r = th_store_req(srv, store, token, "POST", path, body);
    assert_int_equal(r.status, 201);
    long id = (long)json_integer_value(json_object_get(r.json, "id"));
    th_resp_free(&r);
    return id;
}

static const char *
str(json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "";
}

static long
num(json_t *o, const char *k)
{
    return (long)json_integer_value(json_object_get(o, k));
}

static bool
stored(const char *key)
{
    char path[512];
    struct stat st;
    snprintf(path, sizeof(path), "%s/%s", media_dir, key);
    return stat(path, &st) == 0;
}

static unsigned char *
read_stored(const char *key, size_t *n)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", media_dir, key);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)sz + 1);
    assert_int_equal(fread(b, 1, (size_t)sz, f), (size_t)sz);
    fclose(f);
    *n = (size_t)sz;
    return b;
}

static long
count_rows(long store)
{
    char s[24];
    snprintf(s, sizeof(s), "%ld", store);
    const char *p[] = {s, NULL};
    return atol(th_sql("SELECT count(*) FROM product_images WHERE store_id = $1", p));
}

/* The image's JSON from the list once its state is not processing (20 s). */
static json_t *
wait_ready(long store, long product, long image)
{
    char path[128];
    snprintf(path, sizeof(path), "/api/v1/products/%ld/images", product);
    for (int i = 0; i < 200; i++) {
        th_resp_t r =
            th_store_req(srv, store, store == store_a ? admin_a : admin_b, "GET", path, NULL);
        assert_int_equal(r.status, 200);
        size_t k;
        json_t *img;
        json_array_foreach(json_object_get(r.json, "data"), k, img)
        {
            if (num(img, "id") == image && strcmp(str(img, "state"), "processing") != 0) {
                json_t *out = json_incref(img);
                th_resp_free(&r);
                return out;
            }
        }
        th_resp_free(&r);
        usleep(100000);
    }
    fail_msg("image %ld never left processing", image);
    return NULL;
}

/* ---- tests ---- */

static void
test_raw_upload_renditions_and_serving(void **state)
{
    (void)state;
    long p = product_new(store_a, admin_a);
    /* The public product page, cached before the upload: every image change
     * (the upload, then the job's renditions) must show through the cache. */
    char ppath[128];
    snprintf(ppath, sizeof(ppath), "/api/v1/products/%ld", p);
    th_resp_t r = th_store_req(srv, store_a, NULL, "GET", ppath, NULL);
    assert_int_equal(r.status, 200);
    assert_int_equal(json_array_size(json_object_get(r.json, "images")), 0);
    th_resp_free(&r);
    r = th_store_req(srv, store_a, NULL, "GET", ppath, NULL);
    assert_string_equal(th_header(&r, "X-Cache"), "hit");
    th_resp_free(&r);
    size_t len;
    void *png = make_image(64, 48, "png", 0, &len);
    r = upload(store_a, admin_a, p, "image/png", png, len, "alt=front");
    g_free(png);
    assert_int_equal(r.status, 201);
    json_t *img = json_array_get(json_object_get(r.json, "data"), 0);
    assert_string_equal(str(img, "state"), "processing");
    assert_string_equal(str(img, "mime"), "image/png");
    assert_string_equal(str(img, "alt"), "front");
    assert_int_equal(num(img, "width"), 64);
    assert_int_equal(num(img, "height"), 48);
    long id = num(img, "id");
    char key[256];
    const char *url = str(img, "url");
    assert_true(strncmp(url, "/media/", 7) == 0);
    snprintf(key, sizeof(key), "%s", url + 7);
    assert_true(stored(key));
    th_resp_free(&r);
    r = th_store_req(srv, store_a, NULL, "GET", ppath, NULL);
    assert_int_equal(json_array_size(json_object_get(r.json, "images")), 1);
    th_resp_free(&r);

    /* The job: WebP and JPEG at 16 and 32 px, and 1024 capped at the original's 64. */
    json_t *ready = wait_ready(store_a, p, id);
    assert_string_equal(str(ready, "state"), "ready");
    json_t *rends = json_object_get(ready, "renditions");
    assert_int_equal(json_array_size(rends), 6);
    size_t k;
    json_t *x;
    int seen16 = 0, seen64 = 0;
    json_array_foreach(rends, k, x)
    {
        long w = num(x, "width"), h = num(x, "height");
        assert_true(w == 16 || w == 32 || w == 64);
        assert_int_equal(h, w * 48 / 64);
        const char *ru = str(x, "url");
        size_t n;
        unsigned char *b = read_stored(ru + 7, &n);
        VipsImage *v = vips_image_new_from_buffer(b, n, "", NULL);
        assert_non_null(v);
        assert_int_equal(vips_image_get_width(v), w); /* the stored file, not the row */
        assert_int_equal(vips_image_get_height(v), h);
        g_object_unref(v);
        free(b);
        if (strcmp(str(x, "format"), "webp") == 0)
            assert_true(strstr(ru, ".webp") != NULL);
        seen16 += w == 16;
        seen64 += w == 64;
    }
    assert_int_equal(seen16, 2);
    assert_int_equal(seen64, 2);

    /* Served: type, immutable caching, a strong ETag and 304. */
    const char *ru = str(json_array_get(rends, 0), "url");
    char rurl[256];
    snprintf(rurl, sizeof(rurl), "%s", ru);
    r = th_req(srv, "GET", rurl, NULL, NULL);
    assert_int_equal(r.status, 200);
    assert_string_equal(th_header(&r, "Cache-Control"), "public, max-age=31536000, immutable");
    const char *ct = th_header(&r, "Content-Type");
    assert_true(strcmp(ct, "image/webp") == 0 || strcmp(ct, "image/jpeg") == 0);
    char etag[128];
    snprintf(etag, sizeof(etag), "%s", th_header(&r, "ETag"));
    assert_true(etag[0] == '"' && strlen(etag) > 60);
    th_resp_free(&r);
    char inm[200];
    snprintf(inm, sizeof(inm), "If-None-Match: %s", etag);
    const char *h[] = {inm, NULL};
    r = th_req(srv, "GET", rurl, h, NULL);
    assert_int_equal(r.status, 304);
    assert_int_equal(r.len, 0);
    th_resp_free(&r);
    /* The original too, as PNG. */
    char ourl[300];
    snprintf(ourl, sizeof(ourl), "/media/%s", key);
    r = th_req(srv, "GET", ourl, NULL, NULL);
    assert_int_equal(r.status, 200);
    assert_string_equal(th_header(&r, "Content-Type"), "image/png");
    th_resp_free(&r);
    /* No way out of the folder (an encoded separator is refused outright), no
     * object that is being written (temporary files are dot files), nothing
     * that is not there. */
    const char *bad[] = {"/media/s1/..%2F..%2Fetc%2Fpasswd", "/media/..%2f..%2fetc/passwd",
                         "/media/s1/abc.png", "/media/x/y", "/media/s1/.x.tmp-1"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        r = th_req(srv, "GET", bad[i], NULL, NULL);
        if (r.status != 404 && r.status != 400)
            fail_msg("%s: %ld", bad[i], r.status);
        assert_null(strstr(r.body, "root:"));
        th_resp_free(&r);
    }

    /* The product's public JSON (cached twice before) carries the image with
     * its renditions: the job bumped the catalog version. */
    r = th_store_req(srv, store_a, NULL, "GET", ppath, NULL);
    assert_int_equal(r.status, 200);
    json_t *imgs = json_object_get(r.json, "images");
    assert_int_equal(json_array_size(imgs), 1);
    assert_int_equal(json_array_size(json_object_get(json_array_get(imgs, 0), "renditions")), 6);
    char main_url[600];
    snprintf(main_url, sizeof(main_url), "%s",
             json_string_value(json_object_get(json_array_get(imgs, 0), "url")));
    th_resp_free(&r);
    /* The lean list shows it as the product's main image, renditions included. */
    r = th_store_req(srv, store_a, NULL, "GET", "/api/v1/products?limit=100", NULL);
    assert_int_equal(r.status, 200);
    json_t *main = NULL;
    size_t ei;
    json_t *e;
    json_array_foreach(json_object_get(r.json, "data"), ei, e)
    {
        if (json_integer_value(json_object_get(e, "id")) == p)
            main = json_object_get(e, "image");
    }
    assert_non_null(main);
    assert_string_equal(json_string_value(json_object_get(main, "url")), main_url);
    assert_string_equal(json_string_value(json_object_get(main, "state")), "ready");
    assert_int_equal(json_array_size(json_object_get(main, "renditions")), 6);
    th_resp_free(&r);
    json_decref(ready);
}

static void
test_sniffing(void **state)
{
    (void)state;
    long p = product_new(store_a, admin_a);
    size_t len;
    void *png = make_image(20, 10, "png", 0, &len);
    /* Declared JPEG, is PNG: stored as PNG. */
    th_resp_t r = upload(store_a, admin_a, p, "image/jpeg", png, len, NULL);
    g_free(png);
    assert_int_equal(r.status, 201);
    json_t *img = json_array_get(json_object_get(r.json, "data"), 0);
    assert_string_equal(str(img, "mime"), "image/png");
    assert_true(strstr(str(img, "url"), ".png") != NULL);
    th_resp_free(&r);
    /* Text declared PNG: 415 whatever the header said. */
    long before = count_rows(store_a);
    const char text[] = "hello, I am not an image at all, just some text\n";
    r = upload(store_a, admin_a, p, "image/png", text, sizeof(text) - 1, NULL);
    assert_int_equal(r.status, 415);
    assert_string_equal(th_error_code(&r), "unsupported_media_type");
    th_resp_free(&r);
    /* A JSON body is not an upload either. */
    r = upload(store_a, admin_a, p, "application/json", "{}", 2, NULL);
    assert_int_equal(r.status, 415);
    th_resp_free(&r);
    assert_int_equal(count_rows(store_a), before);
}

static void
test_limits_truncated_and_bomb(void **state)
{
    (void)state;
    long p = product_new(store_a, admin_a);
    long before = count_rows(store_a);
    /* Over SHOPD_MEDIA_MAX_BYTES (200000 here): 413 payload_too_large. */
    size_t big = 200001;
    unsigned char *b = calloc(1, big);
    memcpy(b, "\xff\xd8\xff\xe0", 4);
    th_resp_t r = upload(store_a, admin_a, p, "image/jpeg", b, big, NULL);
    assert_int_equal(r.status, 413);
    assert_string_equal(th_error_code(&r), "payload_too_large");
    th_resp_free(&r);
    free(b);

    /* Truncated: the first half of a real PNG: 422, nothing stored. */
    size_t len;
    unsigned char *png = make_image(300, 200, "png", 0, &len);
    r = upload(store_a, admin_a, p, "image/png", png, len / 2, NULL);
    assert_int_equal(r.status, 422);
    assert_string_equal(th_error_code(&r), "invalid_image");
    th_resp_free(&r);
    g_free(png);
    unsigned char *jpg = make_image(300, 200, "jpg", 0, &len);
    r = upload(store_a, admin_a, p, "image/jpeg", jpg, len / 2, NULL);
    assert_int_equal(r.status, 422);
    th_resp_free(&r);
    g_free(jpg);

    /* 50,000 x 50,000 in a 57-byte PNG: refused from its header. */
    unsigned char bomb[128];
    size_t bn = make_bomb(bomb);
    r = upload(store_a, admin_a, p, "image/png", bomb, bn, NULL);
    assert_int_equal(r.status, 422);
    if (strcmp(th_error_code(&r), "image_too_large") != 0)
        fail_msg("bomb: %s", r.body);
    th_resp_free(&r);
    assert_int_equal(count_rows(store_a), before);
}

static void
test_exif_stripped_orientation_applied(void **state)
{
    (void)state;
    long p = product_new(store_a, admin_a);
    size_t len;
    /* 40 x 20 with orientation 6 (rotate 90 clockwise to view). */
    unsigned char *jpg = make_image(40, 20, "jpg", 6, &len);
    assert_true(has_exif(jpg, len)); /* the test's own premise */
    th_resp_t r = upload(store_a, admin_a, p, "image/jpeg", jpg, len, NULL);
    g_free(jpg);
    assert_int_equal(r.status, 201);
    json_t *img = json_array_get(json_object_get(r.json, "data"), 0);
    assert_int_equal(num(img, "width"), 20);
    assert_int_equal(num(img, "height"), 40);
    size_t n;
    unsigned char *b = read_stored(str(img, "url") + 7, &n);
    assert_true(n > 100);
    assert_false(has_exif(b, n));
    assert_null(memmem(b, n, "shopd test", 10));
    free(b);
    th_resp_free(&r);
}

static void
test_multipart(void **state)
{
    (void)state;
    long p = product_new(store_a, admin_a);
    long v = variant_new(store_a, admin_a, p);
    size_t l1, l2;
    void *f1 = make_image(30, 30, "png", 0, &l1);
    void *f2 = make_image(31, 17, "webp", 0, &l2);
    const char *bd = "----shopdBoundary7MA4YWxk";
    size_t cap = l1 + l2 + 4096, n = 0;
    char *body = malloc(cap);
    n += (size_t)snprintf(body + n, cap - n,
                          "preamble\r\n--%s\r\nContent-Disposition: form-data; name=\"alt\"\r\n\r\n"
                          "two views\r\n--%s\r\nContent-Disposition: form-data; "
                          "name=\"variant_id\"\r\n\r\n%ld\r\n--%s\r\nContent-Disposition: "
                          "form-data; name=\"file\"; filename=\"a.png\"\r\nContent-Type: "
                          "image/png\r\n\r\n",
                          bd, bd, v, bd);
    memcpy(body + n, f1, l1);
    n += l1;
    n += (size_t)snprintf(body + n, cap - n,
                          "\r\n--%s\r\nContent-Disposition: form-data; name=\"file\"; "
                          "filename=\"b.webp\"\r\nContent-Type: application/octet-stream\r\n\r\n",
                          bd);
    memcpy(body + n, f2, l2);
    n += l2;
    size_t full_len_before_close = n;
    n += (size_t)snprintf(body + n, cap - n, "\r\n--%s--\r\n", bd);
    char ct[128];
    snprintf(ct, sizeof(ct), "multipart/form-data; boundary=%s", bd);
    th_resp_t r = upload(store_a, admin_a, p, ct, body, n, NULL);
    assert_int_equal(r.status, 201);
    json_t *data = json_object_get(r.json, "data");
    assert_int_equal(json_array_size(data), 2);
    assert_string_equal(str(json_array_get(data, 0), "mime"), "image/png");
    assert_string_equal(str(json_array_get(data, 1), "mime"), "image/webp");
    assert_int_equal(num(json_array_get(data, 1), "width"), 31);
    assert_string_equal(str(json_array_get(data, 0), "alt"), "two views");
    assert_int_equal(num(json_array_get(data, 0), "variant_id"), v);
    assert_int_equal(num(json_array_get(data, 1), "position"),
                     num(json_array_get(data, 0), "position") + 1);
    th_resp_free(&r);

    /* Without its closing delimiter: 422, and neither file is stored. */
    long before = count_rows(store_a);
    r = upload(store_a, admin_a, p, ct, body, full_len_before_close, NULL);
    assert_int_equal(r.status, 422);
    th_resp_free(&r);
    /* An unknown field and a bad variant: 422 naming them, nothing stored. */
    char *b2 = malloc(cap);
    size_t m = (size_t)snprintf(b2, cap,
                                "--%s\r\nContent-Disposition: form-data; name=\"colour\"\r\n\r\n"
                                "red\r\n--%s\r\nContent-Disposition: form-data; name=\"file\"; "
                                "filename=\"a.png\"\r\n\r\n",
                                bd, bd);
    memcpy(b2 + m, f1, l1);
    m += l1;
    m += (size_t)snprintf(b2 + m, cap - m, "\r\n--%s--\r\n", bd);
    r = upload(store_a, admin_a, p, ct, b2, m, NULL);
    assert_int_equal(r.status, 422);
    assert_non_null(strstr(r.body, "colour"));
    th_resp_free(&r);
    long other = product_new(store_a, admin_a);
    long ov = variant_new(store_a, admin_a, other);
    char q[64];
    snprintf(q, sizeof(q), "variant_id=%ld", ov);
    r = upload(store_a, admin_a, p, "image/png", f1, l1, q);
    assert_int_equal(r.status, 422);
    assert_non_null(strstr(r.body, "variant_id"));
    th_resp_free(&r);
    assert_int_equal(count_rows(store_a), before);
    free(b2);
    free(body);
    g_free(f1);
    g_free(f2);
}

static void
test_patch_delete_and_objects(void **state)
{
    (void)state;
    long p = product_new(store_a, admin_a);
    long v = variant_new(store_a, admin_a, p);
    size_t len;
    void *png = make_image(50, 40, "png", 0, &len);
    th_resp_t r = upload(store_a, admin_a, p, "image/png", png, len, NULL);
    g_free(png);
    assert_int_equal(r.status, 201);
    json_t *img = json_array_get(json_object_get(r.json, "data"), 0);
    long id = num(img, "id");
    char key[256];
    snprintf(key, sizeof(key), "%s", str(img, "url") + 7);
    th_resp_free(&r);
    json_t *ready = wait_ready(store_a, p, id);
    char rkey[256];
    snprintf(rkey, sizeof(rkey), "%s",
             str(json_array_get(json_object_get(ready, "renditions"), 0), "url") + 7);
    json_decref(ready);
    assert_true(stored(rkey));

    char path[160], body[128];
    snprintf(path, sizeof(path), "/api/v1/products/%ld/images/%ld", p, id);
    snprintf(body, sizeof(body), "{\"alt\":\"side\",\"position\":7,\"variant_id\":%ld}", v);
    r = th_store_req(srv, store_a, admin_a, "PATCH", path, body);
    assert_int_equal(r.status, 200);
    assert_string_equal(str(r.json, "alt"), "side");
    assert_int_equal(num(r.json, "position"), 7);
    assert_int_equal(num(r.json, "variant_id"), v);
    th_resp_free(&r);
    /* The variant's JSON has it now. */
    char vpath[128];
    snprintf(vpath, sizeof(vpath), "/api/v1/variants/%ld", v);
    r = th_store_req(srv, store_a, NULL, "GET", vpath, NULL);
    assert_int_equal(r.status, 200);
    assert_int_equal(json_array_size(json_object_get(r.json, "images")), 1);
    th_resp_free(&r);
    r = th_store_req(srv, store_a, admin_a, "PATCH", path, "{\"position\":-1}");
    assert_int_equal(r.status, 422);
    th_resp_free(&r);
    r = th_store_req(srv, store_a, admin_a, "PATCH", path, "{\"variant_id\":null}");
    assert_int_equal(r.status, 200);
    assert_true(json_is_null(json_object_get(r.json, "variant_id")));
    th_resp_free(&r);

    r = th_store_req(srv, store_a, admin_a, "DELETE", path, NULL);
    assert_int_equal(r.status, 204);
    th_resp_free(&r);
    r = th_store_req(srv, store_a, admin_a, "DELETE", path, NULL);
    assert_int_equal(r.status, 404);
    th_resp_free(&r);
    /* The media.deleted job removes both objects. */
    for (int i = 0; i < 200 && (stored(key) || stored(rkey)); i++)
        usleep(100000);
    assert_false(stored(key));
    assert_false(stored(rkey));

    /* Deleting the product deletes its images' objects too. */
    png = make_image(33, 33, "png", 0, &len);
    r = upload(store_a, admin_a, p, "image/png", png, len, NULL);
    g_free(png);
    assert_int_equal(r.status, 201);
    snprintf(key, sizeof(key), "%s",
             str(json_array_get(json_object_get(r.json, "data"), 0), "url") + 7);
    th_resp_free(&r);
    assert_true(stored(key));
    snprintf(path, sizeof(path), "/api/v1/products/%ld", p);
    r = th_store_req(srv, store_a, admin_a, "DELETE", path, NULL);
    assert_true(r.status == 204 || r.status == 200);
    th_resp_free(&r);
    for (int i = 0; i < 200 && stored(key); i++)
        usleep(100000);
    assert_false(stored(key));
}

static void
test_cross_tenant(void **state)
{
    (void)state;
    long p = product_new(store_a, admin_a);
    size_t len;
    void *png = make_image(24, 24, "png", 0, &len);
    th_resp_t r = upload(store_a, admin_a, p, "image/png", png, len, NULL);
    assert_int_equal(r.status, 201);
    long id = num(json_array_get(json_object_get(r.json, "data"), 0), "id");
    th_resp_free(&r);
    long before = count_rows(store_a), before_b = count_rows(store_b);
    /* B's admin, on B: A's product is not there. */
    r = upload(store_b, admin_b, p, "image/png", png, len, NULL);
    assert_int_equal(r.status, 404);
    th_resp_free(&r);
    char path[160];
    snprintf(path, sizeof(path), "/api/v1/products/%ld/images", p);
    r = th_store_req(srv, store_b, admin_b, "GET", path, NULL);
    assert_int_equal(r.status, 404);
    th_resp_free(&r);
    snprintf(path, sizeof(path), "/api/v1/products/%ld/images/%ld", p, id);
    r = th_store_req(srv, store_b, admin_b, "PATCH", path, "{\"alt\":\"mine\"}");
    assert_int_equal(r.status, 404);
    th_resp_free(&r);
    r = th_store_req(srv, store_b, admin_b, "DELETE", path, NULL);
    assert_int_equal(r.status, 404);
    th_resp_free(&r);
    /* B's admin token on A: refused. */
    r = upload(store_a, admin_b, p, "image/png", png, len, NULL);
    assert_true(r.status == 401 || r.status == 403);
    th_resp_free(&r);
    r = th_store_req(srv, store_a, admin_b, "DELETE", path, NULL);
    assert_true(r.status == 401 || r.status == 403);
    th_resp_free(&r);
    /* A customer of A: not an admin. */
    char *cust = th_token(srv, "CUSTOMER", store_a);
    r = upload(store_a, cust, p, "image/png", png, len, NULL);
    assert_int_equal(r.status, 403);
    th_resp_free(&r);
    free(cust);
    g_free(png);
    assert_int_equal(count_rows(store_a), before);
    assert_int_equal(count_rows(store_b), before_b);
    const char *sp[] = {NULL};
    (void)sp;
}

/* Restarts srv with env (the signing key of tokens is the server's own, so
 * the admins get fresh ones). */
static void
restart(const char *const *env)
{
    assert_int_equal(th_stop(srv), 0);
    srv = th_start(env);
    free(admin_a);
    free(admin_b);
    admin_a = th_token(srv, "STORE_ADMIN", store_a);
    admin_b = th_token(srv, "STORE_ADMIN", store_b);
}

/* The image's JSON once its state is want (20 s). */
static json_t *
wait_state(long store, long product, long image, const char *want)
{
    char path[128];
    snprintf(path, sizeof(path), "/api/v1/products/%ld/images", product);
    for (int i = 0; i < 200; i++) {
        th_resp_t r = th_store_req(srv, store, admin_a, "GET", path, NULL);
        assert_int_equal(r.status, 200);
        size_t k;
        json_t *img;
        json_array_foreach(json_object_get(r.json, "data"), k, img)
        {
            if (num(img, "id") == image && strcmp(str(img, "state"), want) == 0) {
                json_t *out = json_incref(img);
                th_resp_free(&r);
                return out;
            }
        }
        th_resp_free(&r);
        usleep(100000);
    }
    fail_msg("image %ld never became %s", image, want);
    return NULL;
}

/*
 * The renditions job failing every attempt, for real: the stored original is
 * taken away before any attempt runs (a server that relays jobs but runs none
 * takes the upload, then one that runs them starts), so each attempt finds no
 * original. After the retries of SHOPD_JOBS_RETRY_SCHEDULE=1,1 (three
 * attempts) the image is failed in the API and the job is a dead letter in the
 * operators' list, with its error and the image in its payload. With the
 * original back, retrying the dead letter makes the image ready with its
 * renditions.
 */
static void
test_renditions_dead_letter_and_retry(void **state)
{
    (void)state;
    /* 1. Jobs relayed but not run. */
    const char **env = (const char **)srv_env;
    env[6] = "SHOPD_JOBS_CONSUME=false";
    restart(srv_env);
    env[6] = NULL;
    long p = product_new(store_a, admin_a);
    size_t len;
    void *png = make_image(40, 30, "png", 0, &len);
    th_resp_t r = upload(store_a, admin_a, p, "image/png", png, len, NULL);
    g_free(png);
    assert_int_equal(r.status, 201);
    json_t *img = json_array_get(json_object_get(r.json, "data"), 0);
    long id = num(img, "id");
    assert_string_equal(str(img, "state"), "processing");
    char key[256], orig[512], away[560];
    snprintf(key, sizeof(key), "%s", str(img, "url") + 7);
    th_resp_free(&r);
    snprintf(orig, sizeof(orig), "%s/%s", media_dir, key);
    snprintf(away, sizeof(away), "%s.away", orig);
    /* Its job exists and waits in the stream (relayed), unrun. */
    char sid[24], iid[24];
    snprintf(sid, sizeof(sid), "%ld", store_a);
    snprintf(iid, sizeof(iid), "%ld", id);
    const char *jp[] = {sid, iid, NULL};
    const char *job_of_image =
        "SELECT j.id || ' ' || j.state || ' ' || j.attempts FROM jobs j JOIN outbox o ON "
        "o.store_id = j.store_id AND o.id = j.outbox_id WHERE j.store_id = $1 AND o.kind = "
        "'media.uploaded' AND o.payload->>'image_id' = $2";
    char row[128] = "";
    for (int i = 0; i < 200; i++) {
        snprintf(row, sizeof(row), "%s", th_sql(job_of_image, jp));
        if (strstr(row, " queued "))
            break;
        usleep(100000);
    }
    long job = atol(row);
    if (job <= 0 || strstr(row, " queued 0") == NULL)
        fail_msg("the upload's job is not queued unrun: \"%s\"", row);
    /* The cause: the original is gone from the storage. */
    assert_int_equal(rename(orig, away), 0);

    /* 2. A server that runs jobs: three attempts, then a dead letter. */
    restart(srv_env);
    json_t *failed = wait_state(store_a, p, id, "failed");
    assert_int_equal(json_array_size(json_object_get(failed, "renditions")), 0);
    json_decref(failed);
    /* The product's JSON says so too (the catalog's cache was told). */
    char ppath[128];
    snprintf(ppath, sizeof(ppath), "/api/v1/products/%ld", p);
    r = th_store_req(srv, store_a, admin_a, "GET", ppath, NULL);
    assert_int_equal(r.status, 200);
    assert_string_equal(str(json_array_get(json_object_get(r.json, "images"), 0), "state"),
                        "failed");
    th_resp_free(&r);

    /* Operators see it: the store's dead letters, and the letter itself. */
    json_t *letter = NULL;
    for (int i = 0; i < 100 && letter == NULL; i++) {
        r = th_store_req(srv, store_a, admin_a, "GET", "/api/v1/admin/jobs/dead-letters", NULL);
        assert_int_equal(r.status, 200);
        size_t k;
        json_t *x;
        json_array_foreach(json_object_get(r.json, "data"), k, x)
        {
            if (num(x, "id") == job)
                letter = json_incref(x);
        }
        th_resp_free(&r);
        if (letter == NULL)
            usleep(100000);
    }
    if (letter == NULL)
        fail_msg("job %ld is not among the dead letters (%s)", job, th_sql(job_of_image, jp));
    assert_string_equal(str(letter, "kind"), "media");
    assert_string_equal(str(letter, "event"), "media.uploaded");
    assert_string_equal(str(letter, "state"), "dead");
    assert_int_equal(num(letter, "attempts"), 3);
    assert_non_null(strstr(str(letter, "last_error"), "cannot read the original"));
    assert_non_null(strstr(str(letter, "last_error"), key));
    json_decref(letter);
    char dpath[160];
    snprintf(dpath, sizeof(dpath), "/api/v1/admin/jobs/dead-letters/%ld", job);
    r = th_store_req(srv, store_a, admin_a, "GET", dpath, NULL);
    assert_int_equal(r.status, 200);
    assert_int_equal(num(json_object_get(r.json, "payload"), "image_id"), id);
    th_resp_free(&r);
    /* Another store's admin does not see it. */
    r = th_store_req(srv, store_b, admin_b, "GET", dpath, NULL);
    assert_int_equal(r.status, 404);
    th_resp_free(&r);

    /* 3. The cause fixed, the letter retried: ready, with its renditions. */
    assert_int_equal(rename(away, orig), 0);
    snprintf(dpath, sizeof(dpath), "/api/v1/admin/jobs/dead-letters/%ld/retry", job);
    r = th_store_req(srv, store_a, admin_a, "POST", dpath, NULL);
    assert_int_equal(r.status, 200);
    assert_string_equal(str(r.json, "state"), "ready");
    th_resp_free(&r);
    json_t *ready = wait_state(store_a, p, id, "ready");
    /* 16 and 32 wide, and 40 (the original's width, 1024 never enlarges), as
     * WebP and JPEG: six, each stored. */
    json_t *rends = json_object_get(ready, "renditions");
    assert_int_equal(json_array_size(rends), 6);
    size_t k;
    json_t *x;
    json_array_foreach(rends, k, x)
    {
        assert_true(num(x, "width") == 16 || num(x, "width") == 32 || num(x, "width") == 40);
        assert_true(stored(str(x, "url") + 7));
    }
    json_decref(ready);
    /* Done, and no longer a dead letter. */
    assert_non_null(strstr(th_sql(job_of_image, jp), " done "));
    snprintf(dpath, sizeof(dpath), "/api/v1/admin/jobs/dead-letters/%ld", job);
    r = th_store_req(srv, store_a, admin_a, "GET", dpath, NULL);
    assert_int_equal(r.status, 404);
    th_resp_free(&r);
}

static int
setup(void **state)
{
    (void)state;
    if (VIPS_INIT("test_media") != 0)
        return -1;
    snprintf(media_dir, sizeof(media_dir), "/tmp/shopd-media-test-%d", (int)getpid());
    static char md[300];
    snprintf(md, sizeof(md), "SHOPD_MEDIA_DIR=%s", media_dir);
    /* The last slot stays NULL; the dead-letter test puts a setting in it. */
    static const char *env[] = {md,
                                "SHOPD_MEDIA_MAX_BYTES=200000",
                                "SHOPD_MEDIA_SIZES=16,32,1024",
                                "SHOPD_JOBS_POLL_MS=50",
                                "SHOPD_JOBS_RETRY_SCHEDULE=1,1",
                                "SHOPD_RATE_LIMIT=false",
                                NULL,
                                NULL};
    srv_env = env;
    srv = th_start(env);
    store_a = th_create_store(srv, th_slug("media-a"), NULL);
    store_b = th_create_store(srv, th_slug("media-b"), NULL);
    admin_a = th_token(srv, "STORE_ADMIN", store_a);
    admin_b = th_token(srv, "STORE_ADMIN", store_b);
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    free(admin_a);
    free(admin_b);
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", media_dir);
    if (system(cmd) != 0) {
    }
    return 0;
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_raw_upload_renditions_and_serving),
        cmocka_unit_test(test_sniffing),
        cmocka_unit_test(test_limits_truncated_and_bomb),
        cmocka_unit_test(test_exif_stripped_orientation_applied),
        cmocka_unit_test(test_multipart),
        cmocka_unit_test(test_patch_delete_and_objects),
        cmocka_unit_test(test_cross_tenant),
        cmocka_unit_test(test_renditions_dead_letter_and_retry),
        TH_STOP_TEST,
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
