/*
 * module.c: the media module's descriptor: product image routes, the media
 * server, libvips and the storage started before any thread runs, and the
 * sweep of deleted stores' objects (purge.c).
 */
#include <stdio.h>

#include "media_priv.h"

static const char *const q_upload[] = {"alt", "position", "variant_id", NULL};

/* One row per line: a table to read across. */
/* clang-format off */
static const api_route_t media_routes[] = {
    /* method, path, name, access, run class, flags, inline handler, worker handler, batch handler, query */
    {"GET", "/api/v1/products/:id/images", "images.list", API_STORE_ADMIN, API_ANY, API_STORE, NULL, media_h_list, NULL, NULL},
    {"POST", "/api/v1/products/:id/images", "images.upload", API_STORE_ADMIN, API_BLOCKING, API_STORE | API_UPLOAD, NULL, media_h_upload, NULL, q_upload},
    {"PATCH", "/api/v1/products/:id/images/:image_id", "images.update", API_STORE_ADMIN, API_ORDERED, API_STORE | API_BODY, NULL, media_h_update, NULL, NULL},
    {"DELETE", "/api/v1/products/:id/images/:image_id", "images.delete", API_STORE_ADMIN, API_ORDERED, API_STORE, NULL, media_h_delete, NULL, NULL},
};
/* clang-format on */

static int
media_init(app_t *app, char *err, size_t errlen)
{
    int sizes[16];
    if (media_parse_sizes(app->cfg->media_sizes, sizes, 16) < 0) {
        snprintf(
            err, errlen,
            "SHOPD_MEDIA_SIZES must be 1 to 16 ascending widths from 16 to 8192 (\"160,480\")");
        return -1;
    }
    if (media_storage_init(app->cfg, err, errlen) != 0)
        return -1;
    return media_vips_init(err, errlen);
}

const api_module_t media_module = {
    .name = "media",
    .routes = media_routes,
    .nroutes = SHOPD_ARRAY_LEN(media_routes),
    .init = media_init,
    .fini = NULL,
    .tick = media_tick,
};
