/*
 * media_priv.h: what the files of the media module share: the storage's
 * start-up, the libvips work (image.c) and the handlers (images.c).
 */
#ifndef SHOPD_MEDIA_PRIV_H
#define SHOPD_MEDIA_PRIV_H

#include <stdbool.h>
#include <stddef.h>

#include "shopd/media.h"

int media_storage_init(const cfg_t *cfg, char *err, size_t errlen);
/* s3.c */
extern const media_store_t media_s3_store;
int media_s3_init(const cfg_t *cfg, char *err, size_t errlen);
/** The bucket URL of key (virtual-hosted or path-style, as configured). */
void media_s3_object_url(const char *key, char *out, size_t cap);
const char *media_storage_dir(void);

/* purge.c: a deleted store's objects (sql/0019), from the ticker */
void media_tick(app_t *app);

/* image.c: libvips, on the blocking pool only */
int media_vips_init(char *err, size_t errlen);
void media_vips_fini(void);
/** True if libvips here can read and write t (AVIF needs libheif with AV1). */
bool media_vips_has(media_type_t t);

typedef enum media_img_rc_e {
    MEDIA_IMG_OK = 0,
    MEDIA_IMG_UNSUPPORTED,     /**< not an image type we take (415) */
    MEDIA_IMG_TOO_MANY_PIXELS, /**< its header claims more than SHOPD_MEDIA_MAX_PIXELS */
    MEDIA_IMG_CORRUPT,         /**< truncated or undecodable (422) */
} media_img_rc_t;

/** The stored original of an upload: in (n bytes, sniffed as t) decoded with
 *  its dimensions checked from the header first (w * h <= max_pixels), turned
 *  upright by its EXIF orientation, re-encoded as t with every metadata block
 *  stripped. *out (g_malloc'd: free with media_img_free), *outlen, *w, *h. */
media_img_rc_t media_img_original(const void *in, size_t n, media_type_t t, long long max_pixels,
                                  void **out, size_t *outlen, int *w, int *h, char *err,
                                  size_t errlen);
/** A rendition of an original: at most width pixels wide (never enlarged), as
 *  WebP (webp true) or JPEG. 0 or -1 with err. */
int media_img_rendition(const void *in, size_t n, int width, bool webp, void **out, size_t *outlen,
                        int *w, int *h, char *err, size_t errlen);
void media_img_free(void *p);

/** Lowercase hex SHA-256 of p (out: 65 bytes). */
void media_sha256_hex(const void *p, size_t n, char *out);

/** The rendition widths of SHOPD_MEDIA_SIZES (ascending, at most 16); the count,
 *  or -1 when the list is malformed. Pure. */
int media_parse_sizes(const char *s, int *out, int cap);

/* images.c: the routes */
net_reply_t *media_h_upload(api_ctx_t *ctx);
net_reply_t *media_h_list(api_ctx_t *ctx);
net_reply_t *media_h_update(api_ctx_t *ctx);
net_reply_t *media_h_delete(api_ctx_t *ctx);

#endif
