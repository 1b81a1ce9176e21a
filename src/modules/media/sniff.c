/*
 * sniff.c: what kind of image some bytes are, and which storage keys are
 * well formed. Pure functions: the upload handler trusts these over any
 * Content-Type, and the media job deletes only keys media_key_valid accepts.
 */
#include <string.h>

#include "shopd/media.h"

media_type_t
media_sniff(const void *v, size_t n)
{
    const unsigned char *p = v;
    if (n >= 3 && p[0] == 0xFF && p[1] == 0xD8 && p[2] == 0xFF)
        return MEDIA_JPEG;
    if (n >= 8 && memcmp(p, "\x89PNG\r\n\x1a\n", 8) == 0)
        return MEDIA_PNG;
    if (n >= 12 && memcmp(p, "RIFF", 4) == 0 && memcmp(p + 8, "WEBP", 4) == 0)
        return MEDIA_WEBP;
    /* ISO-BMFF: a box size, "ftyp", the major brand, then compatible brands. */
    if (n >= 16 && memcmp(p + 4, "ftyp", 4) == 0) {
        size_t box = (size_t)p[0] << 24 | (size_t)p[1] << 16 | (size_t)p[2] << 8 | p[3];
        if (box < 16 || box > n)
            box = n < 64 ? n : 64;
        for (size_t off = 8; off + 4 <= box; off += 4) {
            if (off == 12)
                continue; /* the minor version */
            if (memcmp(p + off, "avif", 4) == 0 || memcmp(p + off, "avis", 4) == 0)
                return MEDIA_AVIF;
        }
    }
    return MEDIA_UNKNOWN;
}

static const struct {
    const char *mime, *ext;
} types[] = {
    [MEDIA_JPEG] = {"image/jpeg", "jpg"},
    [MEDIA_PNG] = {"image/png", "png"},
    [MEDIA_WEBP] = {"image/webp", "webp"},
    [MEDIA_AVIF] = {"image/avif", "avif"},
};

const char *
media_type_mime(media_type_t t)
{
    return t > MEDIA_UNKNOWN && t <= MEDIA_AVIF ? types[t].mime : NULL;
}

const char *
media_type_ext(media_type_t t)
{
    return t > MEDIA_UNKNOWN && t <= MEDIA_AVIF ? types[t].ext : NULL;
}

media_type_t
media_type_of_key(const char *key)
{
    const char *dot = strrchr(key, '.');
    if (dot == NULL)
        return MEDIA_UNKNOWN;
    for (int t = MEDIA_JPEG; t <= MEDIA_AVIF; t++)
        if (strcmp(dot + 1, types[t].ext) == 0)
            return (media_type_t)t;
    return MEDIA_UNKNOWN;
}

bool
media_key_valid(const char *key, size_t n)
{
    size_t i = 0;
    if (n < 3 || n > 200 || key[i++] != 's')
        return false;
    size_t digits = 0;
    while (i < n && key[i] >= '0' && key[i] <= '9' && digits < 20)
        i++, digits++;
    if (digits == 0 || i >= n || key[i++] != '/')
        return false;
    size_t hex = 0;
    while (i < n && ((key[i] >= '0' && key[i] <= '9') || (key[i] >= 'a' && key[i] <= 'f')))
        i++, hex++;
    if (hex != 64 || i >= n)
        return false;
    if (key[i] == '_') { /* a rendition: _<width> */
        i++;
        size_t w = 0;
        while (i < n && key[i] >= '0' && key[i] <= '9' && w < 6)
            i++, w++;
        if (w == 0 || i >= n)
            return false;
    }
    if (key[i++] != '.')
        return false;
    for (int t = MEDIA_JPEG; t <= MEDIA_AVIF; t++) {
        size_t el = strlen(types[t].ext);
        if (n - i == el && memcmp(key + i, types[t].ext, el) == 0)
            return true;
    }
    return false;
}

static uint32_t
be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* JPEG: the first start-of-frame segment's dimensions. Walks the marker
 * segments by their lengths; never reads past n. */
static bool
jpeg_dims(const unsigned char *p, size_t n, uint32_t *w, uint32_t *h)
{
    size_t i = 2;
    while (i + 4 <= n) {
        if (p[i] != 0xFF)
            return false;
        unsigned char m = p[i + 1];
        if (m == 0xFF) { /* fill byte */
            i++;
            continue;
        }
        if (m == 0xD8 || m == 0x01 || (m >= 0xD0 && m <= 0xD7)) { /* no length */
            i += 2;
            continue;
        }
        size_t len = (size_t)p[i + 2] << 8 | p[i + 3];
        if (len < 2)
            return false;
        bool sof = m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC;
        if (sof) {
            if (len < 7 || i + 9 > n)
                return false;
            *h = (uint32_t)p[i + 5] << 8 | p[i + 6];
            *w = (uint32_t)p[i + 7] << 8 | p[i + 8];
            return true;
        }
        if (m == 0xDA || m == 0xD9) /* scan data or end before any frame */
            return false;
        i += 2 + len;
    }
    return false;
}

bool
media_header_dims(const void *v, size_t n, media_type_t t, uint32_t *w, uint32_t *h)
{
    const unsigned char *p = v;
    switch (t) {
    case MEDIA_PNG:
        /* The signature, then IHDR first (PNG 1.2 section 5.6). */
        if (n < 24 || memcmp(p + 12, "IHDR", 4) != 0)
            return false;
        *w = be32(p + 16);
        *h = be32(p + 20);
        return true;
    case MEDIA_JPEG:
        return jpeg_dims(p, n, w, h);
    case MEDIA_WEBP:
        if (n >= 30 && memcmp(p + 12, "VP8X", 4) == 0) {
            *w = 1 + ((uint32_t)p[24] | (uint32_t)p[25] << 8 | (uint32_t)p[26] << 16);
            *h = 1 + ((uint32_t)p[27] | (uint32_t)p[28] << 8 | (uint32_t)p[29] << 16);
            return true;
        }
        if (n >= 30 && memcmp(p + 12, "VP8 ", 4) == 0) {
            *w = ((uint32_t)p[26] | (uint32_t)p[27] << 8) & 0x3FFF;
            *h = ((uint32_t)p[28] | (uint32_t)p[29] << 8) & 0x3FFF;
            return true;
        }
        if (n >= 25 && memcmp(p + 12, "VP8L", 4) == 0) {
            uint32_t b = (uint32_t)p[21] | (uint32_t)p[22] << 8 | (uint32_t)p[23] << 16 |
                         (uint32_t)p[24] << 24;
            *w = 1 + (b & 0x3FFF);
            *h = 1 + ((b >> 14) & 0x3FFF);
            return true;
        }
        return false;
    default:
        return false; /* AVIF: libvips reads its header (media_img_original) */
    }
}
