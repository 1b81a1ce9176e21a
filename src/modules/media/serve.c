/*
 * serve.c: GET /media/<key> for the local storage. Objects never change under
 * a key (it is their content's hash), so the answer may be kept for a year by
 * any cache, its ETag is the key's hash, and a client holding it gets a 304.
 * Only keys media_key_valid accepts are looked up: no path of the request ever
 * reaches the file system unchecked (no "..", no other folder).
 *
 * This is the media module's own small file server (the generic static-file
 * serving of /docs and /admin is being built at the same time elsewhere; the
 * two are to be unified).
 */
#include <stdio.h>
#include <string.h>

#include "media_priv.h"

net_reply_t *
media_h_serve(api_ctx_t *ctx)
{
    size_t sn, fn;
    const char *s = msg_param(ctx->env, "store", &sn);
    const char *f = msg_param(ctx->env, "file", &fn);
    char key[256];
    if (s == NULL || f == NULL || sn + fn + 2 > sizeof(key))
        return api_fail(SHOPD_NOTFOUND, "not_found", "no such media");
    snprintf(key, sizeof(key), "%.*s/%.*s", (int)sn, s, (int)fn, f);
    if (!media_key_valid(key, strlen(key)))
        return api_fail(SHOPD_NOTFOUND, "not_found", "no such media");
    /* The ETag: the hash in the name (a rendition's name adds its width). */
    const char *slash = strchr(key, '/');
    const char *dot = strrchr(key, '.');
    char etag[128];
    snprintf(etag, sizeof(etag), "\"%.*s\"", (int)(dot - slash - 1), slash + 1);
    static const char cache[] = "public, max-age=31536000, immutable";
    if (ctx->env->inm.n > 0) {
        /* If-None-Match: a list of tags or "*" (RFC 9110 section 13.1.2). */
        char inm[512];
        snprintf(inm, sizeof(inm), "%.*s", (int)(ctx->env->inm.n < 511 ? ctx->env->inm.n : 511),
                 ctx->env->inm.p);
        if (strstr(inm, etag) != NULL || strcmp(inm, "*") == 0) {
            net_reply_t *r = api_empty(SHOPD_NOT_MODIFIED);
            net_reply_add_header(r, "ETag", etag);
            net_reply_add_header(r, "Cache-Control", cache);
            return r;
        }
    }
    char *buf = NULL;
    size_t n = 0;
    shopd_rc_t rc = media_storage()->get(key, &buf, &n);
    if (rc == SHOPD_NOTFOUND)
        return api_fail(SHOPD_NOTFOUND, "not_found", "no such media");
    if (rc != SHOPD_OK)
        return api_internal(ctx, "media read failed");
    net_reply_t *r = api_raw_json(SHOPD_OK, buf, n);
    shopd_free(buf);
    net_reply_set_content_type(r, media_type_mime(media_type_of_key(key)));
    net_reply_add_header(r, "ETag", etag);
    net_reply_add_header(r, "Cache-Control", cache);
    return r;
}
