/*
 * pages.h: the pages shopd serves besides its API (src/modules/pages/): the
 * OpenAPI document at /openapi.yaml, Swagger UI at /docs, the store admins'
 * dashboard at /admin, each a static mount (net_static_*, include/shopd/net.h)
 * read by the mounts' reader threads. The mount table is in module.c (one row
 * per mount: prefix, folder, Cache-Control, Content-Security-Policy); product
 * media is to be one more row.
 */
#ifndef SHOPD_PAGES_H
#define SHOPD_PAGES_H

#include "shopd/api.h"

/** The module: no routes; init builds the mounts into app->statics (from
 *  SHOPD_WEB_DIR, SHOPD_DOCS_DIR, SHOPD_VENDOR_DIR; SHOPD_PAGES=false: none),
 *  stop drains their readers, fini frees them. */
extern const api_module_t pages_module;

/** The Content-Security-Policy of the dashboard and of Swagger UI: scripts,
 *  styles, images and calls from this origin only (data: images for
 *  Swagger UI's icons), no framing, no plugins, no base or form elsewhere. */
extern const char pages_csp[];

#endif
