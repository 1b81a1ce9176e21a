/*
 * module.c (pages): the static mounts of the pages: /openapi.yaml (the API
 * document as the repository has it), /docs (Swagger UI: web/docs with the
 * npm package swagger-ui-dist under /docs/vendor), /admin (the dashboard:
 * web/admin with uPlot under /admin/vendor/uplot). The npm packages are the
 * ones scripts/deps.sh installs into tools/node/node_modules; nothing is built
 * or copied.
 *
 * Caching: the pages' own files and the document are revalidated on every
 * load (no-cache + ETag: an edit shows at once, an unchanged file costs a 304);
 * the vendored packages change only with the lock file, so a browser keeps
 * them a day. Content-addressed files (media, named by their hash) would say
 * immutable.
 */
#include <stdio.h>
#include <string.h>

#include "shopd/log.h"
#include "shopd/pages.h"

#define PAGES_READERS 2 /* reader threads: reads are short; two cover one slow disk read */

const char pages_csp[] = "default-src 'none'; script-src 'self'; style-src 'self'; "
                         "img-src 'self' data:; connect-src 'self'; font-src 'self'; "
                         "base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

typedef enum { BASE_WEB, BASE_DOCS, BASE_VENDOR, BASE_MEDIA } pages_base_t;

/* One row per mount: a table to read across. */
/* clang-format off */
static const struct {
    const char *prefix;
    pages_base_t base;
    const char *sub; /* below the base folder */
    bool file;
    const char *cache_control;
    bool page; /* a page: pages_csp; else the edge's default (default-src 'none') */
} pages_mounts[] = {
    {"/openapi.yaml", BASE_DOCS, "openapi.yaml", true, "no-cache", false},
    {"/docs", BASE_WEB, "docs", false, "no-cache", true},
    {"/docs/vendor", BASE_VENDOR, "swagger-ui-dist", false, "public, max-age=86400", true},
    {"/admin", BASE_WEB, "admin", false, "no-cache", true},
    {"/admin/vendor/uplot", BASE_VENDOR, "uplot/dist", false, "public, max-age=86400", true},
    /* Product images of the local media storage (src/modules/media): named by
     * their content's hash, so immutable, and that hash is their ETag. */
    {"/media", BASE_MEDIA, "", false, "public, max-age=31536000, immutable", false},
};
/* clang-format on */

static int
pages_init(app_t *app, char *err, size_t errlen)
{
    const cfg_t *cfg = app->cfg;
    /* The media mount serves the local storage whatever SHOPD_PAGES says (the
     * media module made its folder before this runs); with S3 the images'
     * URLs point at the bucket instead. */
    bool media = strcmp(cfg->media_backend, "local") == 0;
    if (!cfg->pages && !media)
        return 0;
    size_t n = 0;
    net_static_mount_t mounts[SHOPD_ARRAY_LEN(pages_mounts)];
    char roots[SHOPD_ARRAY_LEN(pages_mounts)][4096];
    for (size_t k = 0; k < SHOPD_ARRAY_LEN(pages_mounts); k++) {
        bool is_media = pages_mounts[k].base == BASE_MEDIA;
        if (is_media ? !media : !cfg->pages)
            continue;
        size_t i = n++;
        const char *base = pages_mounts[k].base == BASE_WEB    ? cfg->web_dir
                           : pages_mounts[k].base == BASE_DOCS ? cfg->docs_dir
                           : is_media                          ? cfg->media_dir
                                                               : cfg->vendor_dir;
        int w = snprintf(roots[i], sizeof(roots[i]), "%s%s%s", base,
                         pages_mounts[k].sub[0] ? "/" : "", pages_mounts[k].sub);
        if (w < 0 || (size_t)w >= sizeof(roots[i])) {
            snprintf(err, errlen, "invalid configuration: the pages' folder %s is too long", base);
            return -1;
        }
        mounts[i] = (net_static_mount_t){.prefix = pages_mounts[k].prefix,
                                         .root = roots[i],
                                         .file = pages_mounts[k].file,
                                         .cache_control = pages_mounts[k].cache_control,
                                         .csp = pages_mounts[k].page ? pages_csp : NULL,
                                         .name_etag = is_media};
    }
    app->statics = net_static_new(mounts, n, PAGES_READERS);
    if (app->statics == NULL) {
        snprintf(err, errlen, "cannot start the static file readers");
        return -1;
    }
    return 0;
}

/* With the ticker, before the actors stop: reads in flight are answered, later
 * ones get 503 while the server drains. */
static void
pages_stop(app_t *app)
{
    net_static_stop(app->statics);
}

static void
pages_fini(app_t *app)
{
    net_static_free(app->statics);
    app->statics = NULL;
}

const api_module_t pages_module = {
    .name = "pages",
    .routes = NULL,
    .nroutes = 0,
    .init = pages_init,
    .fini = pages_fini,
    .stop = pages_stop,
};
