/*
 * media.h: product media: images uploaded to a product (and optionally one of
 * its variants), stored by a storage backend under content-addressed keys,
 * turned into renditions by the media job, and served at /media/<key>.
 *
 * Threads: uploads are decoded, hashed and written on the blocking pool (the
 * route's run class), renditions are made by the jobs machinery on the
 * blocking pool, lists and edits run like catalog writes. Nothing here runs
 * libvips on a store's actor or an I/O thread.
 */
#ifndef SHOPD_MEDIA_H
#define SHOPD_MEDIA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shopd/api.h"

/** JSON of a product_images row i with its renditions (PostgreSQL renders it;
 *  the catalog's product and variant JSON embed it). */
#define MEDIA_IMAGE_JSON(i)                                                                        \
    "json_build_object('id', " i ".id, 'product_id', " i ".product_id, 'variant_id', " i           \
    ".variant_id, 'alt', " i ".alt, 'position', " i ".position, 'state', " i ".state, 'url', " i   \
    ".url, 'width', " i ".width, 'height', " i ".height, 'mime', " i ".mime, 'bytes', " i          \
    ".bytes, 'sha256', " i ".sha256, 'created_at', " i ".created_at, 'updated_at', " i             \
    ".updated_at, 'renditions', (SELECT coalesce(json_agg(json_build_object('format', r.format, "  \
    "'width', r.width, 'height', r.height, 'bytes', r.bytes, 'url', r.url) ORDER BY r.format, "    \
    "r.width), '[]') FROM product_image_renditions r WHERE r.store_id = " i ".store_id AND "       \
    "r.image_id = " i ".id))"

/* ---- type sniffing (sniff.c, pure) ---- */
typedef enum media_type_e {
    MEDIA_UNKNOWN = 0,
    MEDIA_JPEG,
    MEDIA_PNG,
    MEDIA_WEBP,
    MEDIA_AVIF,
} media_type_t;

/** The image type the first bytes of p (n bytes) announce, whatever any header
 *  said: JPEG (FF D8 FF), PNG (its 8-byte signature), WebP (RIFF....WEBP), AVIF
 *  (an ISO-BMFF ftyp box with the brand avif or avis); MEDIA_UNKNOWN otherwise.
 *  Pure. */
media_type_t media_sniff(const void *p, size_t n);
/** The pixel dimensions t's header in p (n bytes) claims: PNG's IHDR, JPEG's
 *  first start-of-frame, WebP's VP8X/VP8/VP8L header. False when they cannot
 *  be read from these bytes (or for AVIF, left to libvips). Read before any
 *  decoding, so a file that claims too many pixels is refused unopened. Pure. */
bool media_header_dims(const void *p, size_t n, media_type_t t, uint32_t *w, uint32_t *h);
/** "image/jpeg"... for a known type, NULL for MEDIA_UNKNOWN. Pure. */
const char *media_type_mime(media_type_t t);
/** "jpg", "png", "webp", "avif" (the key's extension), NULL for MEDIA_UNKNOWN. */
const char *media_type_ext(media_type_t t);
/** The type of a key's extension ("....png" -> MEDIA_PNG), MEDIA_UNKNOWN if none. */
media_type_t media_type_of_key(const char *key);
/** True if key is one this storage may hold: "s<digits>/<64 hex>[_<w>].<ext>"
 *  with a known extension; nothing else (no "..", no second slash), so a key
 *  taken from a URL can never name a file outside the media folder. Pure. */
bool media_key_valid(const char *key, size_t n);

/* ---- multipart/form-data (multipart.c, pure, streaming) ---- */
#define MEDIA_MP_MAX_BOUNDARY 70  /**< RFC 2046 */
#define MEDIA_MP_MAX_HEADERS 4096 /**< bytes of one part's header block */
#define MEDIA_MP_MAX_PARTS 64

/** One part's headers as the parser read them (pointers valid during begin). */
typedef struct media_mp_part_s {
    char name[128];         /**< the form field's name ("" if none) */
    char filename[256];     /**< the file's name ("" if none: a plain field) */
    bool has_filename;      /**< a filename parameter was present (even empty) */
    char content_type[128]; /**< the part's Content-Type ("" if none) */
} media_mp_part_t;

/** What the parser calls: begin with a part's headers, data with its bytes (in
 *  order, possibly in many pieces; pieces point into the fed buffers when the
 *  bytes are there, so one feed of a whole body gives pointers into it), end
 *  when the part is complete. A nonzero return stops the parse (error). */
typedef struct media_mp_cb_s {
    int (*begin)(void *ud, const media_mp_part_t *part);
    int (*data)(void *ud, const char *at, size_t n);
    int (*end)(void *ud);
    void *ud;
} media_mp_cb_t;

typedef enum media_mp_rc_e {
    MEDIA_MP_OK = 0,    /**< fed; more may follow (or done, see media_mp_finish) */
    MEDIA_MP_ERROR = -1 /**< malformed (or a callback said stop); the parser is dead */
} media_mp_rc_t;

typedef struct media_mp_s {
    char delim[MEDIA_MP_MAX_BOUNDARY + 4]; /**< "\r\n--" boundary */
    size_t dlen;
    int state;
    size_t match; /**< bytes of delim matched so far */
    char tail[2]; /**< the two bytes after a delimiter ("--" or CRLF) */
    size_t ntail;
    char hbuf[MEDIA_MP_MAX_HEADERS + 1];
    size_t hlen;
    size_t parts;
    const char *err; /**< why it failed (static) */
    media_mp_cb_t cb;
} media_mp_t;

/** Reads the boundary parameter of a multipart/form-data Content-Type into out
 *  (size MEDIA_MP_MAX_BOUNDARY + 1); false when ct is not multipart/form-data
 *  or its boundary is missing or not RFC 2046's (1 to 70 bchars). Pure. */
bool media_mp_boundary(const char *ct, size_t ctlen, char *out);
/** Prepares p for a body with this boundary (from media_mp_boundary). */
void media_mp_init(media_mp_t *p, const char *boundary, const media_mp_cb_t *cb);
/** Feeds the next n bytes of the body (any split: a byte at a time gives the
 *  same parts as the whole body at once). */
media_mp_rc_t media_mp_feed(media_mp_t *p, const char *at, size_t n);
/** After the last byte: OK if the closing delimiter was seen, else ERROR
 *  (truncated body). */
media_mp_rc_t media_mp_finish(media_mp_t *p);

/* ---- storage (storage.c) ---- */
/** A storage backend: put/get/delete of whole objects by key. Thread-safe. */
typedef struct media_store_s {
    const char *name;
    /** Stores n bytes under key (replacing: same key, same bytes). OK or ERR. */
    shopd_rc_t (*put)(const char *key, const void *p, size_t n, const char *mime);
    /** Reads the object: *out (shopd_malloc'd, caller frees) and *n. OK,
     *  NOTFOUND or ERR. */
    shopd_rc_t (*get)(const char *key, char **out, size_t *n);
    /** Deletes the object; OK also when it was not there. */
    shopd_rc_t (*del)(const char *key);
    /** Deletes every object under prefix ("s<store>/": a deleted store's);
     *  OK when none is left (also when there was none). */
    shopd_rc_t (*purge)(const char *prefix);
} media_store_t;

/** The configured backend (local disk under SHOPD_MEDIA_DIR). After init. */
const media_store_t *media_storage(void);
/** The URL a client fetches key at: SHOPD_MEDIA_CDN_URL + key, or /media/key. */
void media_url(const cfg_t *cfg, const char *key, char *out, size_t cap);
/** The local backend's file path of key under dir. */
void media_local_path(const char *dir, const char *key, char *out, size_t cap);

/* ---- the media job (job.c): called by the jobs runner ---- */
/** Runs one media job: kind is its outbox row's kind (media.uploaded: make
 *  the renditions of payload's image_id and set it ready; media.deleted: delete
 *  payload's keys that no row of the store names any more). SHOPD_OK, AGAIN
 *  (retry later) or INVALID (a dead letter now), with a line in err. On the
 *  job's last failure the image is marked failed by media_job_dead. Blocking
 *  pool. */
shopd_rc_t media_job(api_ctx_t *ctx, db_conn_t *c, const char *kind, const char *payload, char *err,
                     size_t errlen);
/** After a media job became a dead letter: marks its image failed. */
void media_job_dead(api_ctx_t *ctx, db_conn_t *c, const char *kind, const char *payload);

/** The module (routes, libvips start-up). */
extern const api_module_t media_module;

#endif
