/*
 * libFuzzer driver: the multipart/form-data parser (media_mp_*), which reads
 * upload bodies from store admins, and the pure readers of untrusted image
 * bytes next to it (media_sniff, media_header_dims, media_key_valid).
 * Input: a Content-Type line, a '\n', then the body. The body is parsed whole
 * and again in pieces of sizes taken from its own bytes; both parses must see
 * the same parts with the same bytes and end the same way (the parser claims
 * any split gives the same result), or the driver aborts.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "shopd/media.h"

typedef struct trace_s {
    uint64_t h; /* FNV-1a over every event and byte */
    size_t parts, bytes;
} trace_t;

static void
mix(trace_t *t, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        t->h ^= b[i];
        t->h *= 1099511628211ull;
    }
}

static int
on_begin(void *ud, const media_mp_part_t *part)
{
    trace_t *t = ud;
    t->parts++;
    mix(t, "B", 1);
    mix(t, part->name, strlen(part->name));
    mix(t, "/", 1);
    mix(t, part->filename, strlen(part->filename));
    mix(t, "/", 1);
    mix(t, part->content_type, strlen(part->content_type));
    return 0;
}

static int
on_data(void *ud, const char *at, size_t n)
{
    trace_t *t = ud;
    if (n == 0)
        abort(); /* the parser promises no empty pieces */
    t->bytes += n;
    mix(t, at, n); /* pieces are concatenated: the split cannot show */
    return 0;
}

static int
on_end(void *ud)
{
    mix(ud, "E", 1);
    return 0;
}

static int
run(const char *boundary, const char *body, size_t n, const unsigned char *steps, size_t nsteps,
    trace_t *t)
{
    memset(t, 0, sizeof(*t));
    t->h = 1469598103934665603ull;
    media_mp_cb_t cb = {on_begin, on_data, on_end, t};
    media_mp_t p;
    media_mp_init(&p, boundary, &cb);
    size_t at = 0, k = 0;
    while (at < n) {
        size_t piece = steps ? 1 + steps[k++ % nsteps] % 17 : n;
        if (piece > n - at)
            piece = n - at;
        if (media_mp_feed(&p, body + at, piece) != MEDIA_MP_OK)
            return -1;
        at += piece;
    }
    return media_mp_finish(&p) == MEDIA_MP_OK ? 0 : -1;
}

int
LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    const char *s = (const char *)data;
    const char *nl = memchr(s, '\n', size);
    size_t ctlen = nl ? (size_t)(nl - s) : size;
    const char *body = nl ? nl + 1 : "";
    size_t blen = nl ? size - ctlen - 1 : 0;

    uint32_t w, h;
    media_type_t ty = media_sniff(body, blen);
    if (media_header_dims(body, blen, ty, &w, &h) && ty == MEDIA_UNKNOWN)
        abort();
    (void)media_key_valid(body, blen < 300 ? blen : 300);

    char boundary[MEDIA_MP_MAX_BOUNDARY + 1];
    if (!media_mp_boundary(s, ctlen, boundary))
        return 0;
    if (strlen(boundary) == 0 || strlen(boundary) > MEDIA_MP_MAX_BOUNDARY)
        abort();
    trace_t whole, split;
    int a = run(boundary, body, blen, NULL, 0, &whole);
    int b = run(boundary, body, blen, data, size, &split);
    /* An error may stop the two runs at different points only if it is the
     * same error position; with no callback refusing, they must agree fully. */
    if (a != b)
        abort();
    if (a == 0 && (whole.h != split.h || whole.parts != split.parts || whole.bytes != split.bytes))
        abort();
    return 0;
}
