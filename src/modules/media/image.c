/*
 * image.c: the libvips work of the media module, on the blocking pool only.
 *
 * Memory stays bounded: the operation cache is off (every call decodes
 * afresh; nothing stays behind between jobs), each pipeline runs on one
 * thread (the blocking pool already runs many at once), renditions decode
 * with shrink-on-load (vips_thumbnail), and an upload's pixel count is read
 * from its header and checked before a single pixel is decoded (a 40-byte
 * PNG claiming 50,000 x 50,000 pixels would otherwise ask for 10 GB).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vips/vips.h>

#include <openssl/evp.h>

#include "media_priv.h"

int
media_vips_init(char *err, size_t errlen)
{
    if (VIPS_INIT("shopd") != 0) {
        snprintf(err, errlen, "libvips: %s", vips_error_buffer());
        return -1;
    }
    vips_cache_set_max(0);
    vips_cache_set_max_mem(0);
    vips_concurrency_set(1);
    return 0;
}

void
media_vips_fini(void)
{
    /* vips_shutdown is left out on purpose: it is not safe while any thread
     * that ever ran libvips could still touch it, and the process ends next. */
}

bool
media_vips_has(media_type_t t)
{
    switch (t) {
    case MEDIA_JPEG:
        return vips_type_find("VipsOperation", "jpegload_buffer") != 0;
    case MEDIA_PNG:
        return vips_type_find("VipsOperation", "pngload_buffer") != 0;
    case MEDIA_WEBP:
        return vips_type_find("VipsOperation", "webpload_buffer") != 0;
    case MEDIA_AVIF:
        return vips_type_find("VipsOperation", "heifload_buffer") != 0 &&
               vips_type_find("VipsOperation", "heifsave_buffer") != 0;
    default:
        return false;
    }
}

static void
take_error(char *err, size_t errlen, const char *what)
{
    const char *b = vips_error_buffer();
    size_t bl = strlen(b);
    while (bl > 0 && b[bl - 1] == '\n')
        bl--;
    snprintf(err, errlen, "%s: %.*s", what, (int)(bl > 300 ? 300 : bl), b);
    vips_error_clear();
}

/* Saves img as type t with metadata stripped. 0 or -1. */
static int
save(VipsImage *img, media_type_t t, void **out, size_t *outlen)
{
    switch (t) {
    case MEDIA_JPEG:
        return vips_jpegsave_buffer(img, out, outlen, "strip", TRUE, "Q", 90, NULL);
    case MEDIA_PNG:
        return vips_pngsave_buffer(img, out, outlen, "strip", TRUE, NULL);
    case MEDIA_WEBP:
        return vips_webpsave_buffer(img, out, outlen, "strip", TRUE, "Q", 85, NULL);
    case MEDIA_AVIF:
        return vips_heifsave_buffer(img, out, outlen, "strip", TRUE, "compression",
                                    VIPS_FOREIGN_HEIF_COMPRESSION_AV1, NULL);
    default:
        return -1;
    }
}

media_img_rc_t
media_img_original(const void *in, size_t n, media_type_t t, long long max_pixels, void **out,
                   size_t *outlen, int *w, int *h, char *err, size_t errlen)
{
    media_img_rc_t rc = MEDIA_IMG_CORRUPT;
    VipsImage *img = NULL, *up = NULL;
    *out = NULL;
    *outlen = 0;
    if (!media_vips_has(t)) {
        snprintf(err, errlen, "this server cannot read %s images", media_type_ext(t));
        return MEDIA_IMG_UNSUPPORTED;
    }
    /* Opening reads the header only; pixels come when something asks for them.
     * fail_on truncated: a cut-off file is an error, not a grey bottom half. */
    img = vips_image_new_from_buffer(in, n, "", "fail_on", VIPS_FAIL_ON_TRUNCATED, NULL);
    if (img == NULL) {
        take_error(err, errlen, "cannot read the image");
        goto out;
    }
    long long px = (long long)vips_image_get_width(img) * vips_image_get_height(img);
    if (px > max_pixels) {
        snprintf(err, errlen, "the image is %d x %d pixels; at most %lld pixels are allowed",
                 vips_image_get_width(img), vips_image_get_height(img), max_pixels);
        rc = MEDIA_IMG_TOO_MANY_PIXELS;
        goto out;
    }
    /* Orientation first (the EXIF tag goes with the rest of the metadata). */
    if (vips_autorot(img, &up, NULL) != 0) {
        take_error(err, errlen, "cannot decode the image");
        goto out;
    }
    if (save(up, t, out, outlen) != 0) {
        take_error(err, errlen, "cannot decode the image");
        goto out;
    }
    *w = vips_image_get_width(up);
    *h = vips_image_get_height(up);
    rc = MEDIA_IMG_OK;
out:
    if (up)
        g_object_unref(up);
    if (img)
        g_object_unref(img);
    if (rc != MEDIA_IMG_OK && *out) {
        g_free(*out);
        *out = NULL;
    }
    vips_thread_shutdown();
    return rc;
}

int
media_img_rendition(const void *in, size_t n, int width, bool webp, void **out, size_t *outlen,
                    int *w, int *h, char *err, size_t errlen)
{
    int rc = -1;
    VipsImage *thumb = NULL, *flat = NULL;
    *out = NULL;
    /* Height unbounded: the width decides; SIZE_DOWN never enlarges. */
    if (vips_thumbnail_buffer((void *)in, n, &thumb, width, "height", VIPS_MAX_COORD, "size",
                              VIPS_SIZE_DOWN, NULL) != 0) {
        take_error(err, errlen, "cannot resize the image");
        goto out;
    }
    VipsImage *src = thumb;
    if (!webp && vips_image_hasalpha(thumb)) {
        /* JPEG has no alpha: flatten on white rather than libvips' black. */
        VipsArrayDouble *bg = vips_array_double_newv(1, 255.0);
        int f = vips_flatten(thumb, &flat, "background", bg, NULL);
        vips_area_unref(VIPS_AREA(bg));
        if (f != 0) {
            take_error(err, errlen, "cannot flatten the image");
            goto out;
        }
        src = flat;
    }
    if (save(src, webp ? MEDIA_WEBP : MEDIA_JPEG, out, outlen) != 0) {
        take_error(err, errlen, "cannot encode the rendition");
        goto out;
    }
    *w = vips_image_get_width(src);
    *h = vips_image_get_height(src);
    rc = 0;
out:
    if (flat)
        g_object_unref(flat);
    if (thumb)
        g_object_unref(thumb);
    vips_thread_shutdown();
    return rc;
}

void
media_img_free(void *p)
{
    g_free(p);
}

void
media_sha256_hex(const void *p, size_t n, char *out)
{
    unsigned char md[32];
    unsigned int mdl = 0;
    EVP_Digest(p, n, md, &mdl, EVP_sha256(), NULL);
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

int
media_parse_sizes(const char *s, int *out, int cap)
{
    int n = 0;
    if (s == NULL || *s == '\0')
        return -1;
    while (*s) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < 16 || v > 8192 || n >= cap)
            return -1;
        if (n > 0 && v <= out[n - 1])
            return -1; /* ascending, no repeats */
        out[n++] = (int)v;
        s = end;
        if (*s == ',' && s[1] != '\0')
            s++;
        else if (*s != '\0')
            return -1;
    }
    return n;
}
