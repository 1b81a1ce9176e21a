/*
 * routes.c: the list of modules. Each domain module exports one descriptor
 * (api_module_t: its routes with run class, access and query parameters, its
 * start and stop hooks); the route table that the router, the access check, the
 * metrics labels and the OpenAPI test follow is the modules' routes one after
 * another, assembled here before main runs (so the server, the unit tests and
 * the fuzzers all see the same table). Adding a module is one line below.
 * Keep docs/openapi.yaml in step (tests/unit/test_openapi.c checks).
 */
#include <stdlib.h>
#include <string.h>

#include "shopd/analytics.h"
#include "shopd/api.h"
#include "shopd/auth.h"
#include "shopd/cart.h"
#include "shopd/catalog.h"
#include "shopd/jobs.h"
#include "shopd/media.h"
#include "shopd/order.h"
#include "shopd/pages.h"
#include "shopd/payment.h"
#include "shopd/pricing.h"
#include "shopd/search.h"
#include "shopd/store.h"

const api_module_t *const api_modules[] = {
    &api_system_module, &store_module, &auth_module,    &catalog_module, &pricing_module,
    &cart_module,       &order_module, &payment_module, &jobs_module,    &search_module,
    &analytics_module,  &media_module, &pages_module};
const size_t api_nmodules = SHOPD_ARRAY_LEN(api_modules);

const api_route_t *api_routes;
size_t api_nroutes;

/* Runs before main (and before any test's or fuzzer's code): concatenates the
 * modules' routes. Never freed: it lives as long as the process, like the
 * static table it replaces. */
static void __attribute__((constructor)) assemble_routes(void)
{
    size_t n = 0;
    for (size_t i = 0; i < api_nmodules; i++)
        n += api_modules[i]->nroutes;
    api_route_t *t = calloc(n, sizeof(*t));
    if (t == NULL)
        abort();
    size_t k = 0;
    for (size_t i = 0; i < api_nmodules; i++) {
        if (api_modules[i]->nroutes) /* a module may have none (pages) */
            memcpy(t + k, api_modules[i]->routes, api_modules[i]->nroutes * sizeof(*t));
        k += api_modules[i]->nroutes;
    }
    api_routes = t;
    api_nroutes = n;
}
