/*
 * module.c: the auth module's descriptor: accounts, tokens and store staff,
 * and the signing keys it loads at start (auth_init) and frees at stop.
 */
#include "shopd/api.h"
#include "shopd/auth.h"

static const char *const q_users[] = {"limit", "cursor", "role", "status", NULL};

/* The platform token also passes API_SUPER_ADMIN. */
/* One row per line: a table to read across. */
/* clang-format off */
static const api_route_t auth_routes[] = {
    /* method, path, name, access, run class, flags, inline handler, worker handler, batch handler, query[, rate class] */
    {"POST", "/api/v1/auth/register", "auth.register", API_PUBLIC, API_BLOCKING, API_STORE | API_BODY | API_IDEM_NO_REPLAY, NULL, auth_h_register, NULL, NULL, API_RATE_AUTH},
    {"POST", "/api/v1/auth/login", "auth.login", API_PUBLIC, API_BLOCKING, API_STORE | API_BODY | API_IDEM_NO_REPLAY, NULL, auth_h_login, NULL, NULL, API_RATE_AUTH},
    {"POST", "/api/v1/platform/auth/login", "auth.platform_login", API_PUBLIC, API_BLOCKING, API_BODY | API_IDEM_NO_REPLAY, NULL, auth_h_platform_login, NULL, NULL, API_RATE_AUTH},
    {"POST", "/api/v1/auth/refresh", "auth.refresh", API_PUBLIC, API_ANY, API_BODY | API_IDEM_NO_REPLAY, NULL, auth_h_refresh, NULL, NULL, API_RATE_AUTH},
    {"POST", "/api/v1/auth/logout", "auth.logout", API_PUBLIC, API_ANY, API_BODY, NULL, auth_h_logout, NULL, NULL, API_RATE_AUTH},
    {"POST", "/api/v1/auth/forgot-password", "auth.forgot_password", API_PUBLIC, API_ANY, API_STORE | API_BODY, NULL, auth_h_forgot, NULL, NULL, API_RATE_AUTH},
    {"POST", "/api/v1/auth/reset-password", "auth.reset_password", API_PUBLIC, API_BLOCKING, API_STORE | API_BODY, NULL, auth_h_reset, NULL, NULL, API_RATE_AUTH},
    {"GET", "/api/v1/me", "me.get", API_CUSTOMER, API_ANY, API_STORE, NULL, auth_h_me, NULL, NULL},
    {"PATCH", "/api/v1/me", "me.update", API_CUSTOMER, API_BLOCKING, API_STORE | API_BODY, NULL, auth_h_me_update, NULL, NULL},
    {"GET", "/api/v1/admin/users", "users.list", API_STORE_ADMIN, API_ANY, API_STORE, NULL, auth_h_users_list, NULL, q_users},
    {"POST", "/api/v1/admin/users", "users.create", API_STORE_ADMIN, API_BLOCKING, API_STORE | API_BODY, NULL, auth_h_users_create, NULL, NULL},
    {"GET", "/api/v1/admin/users/:id", "users.get", API_STORE_ADMIN, API_ANY, API_STORE, NULL, auth_h_users_get, NULL, NULL},
    {"PATCH", "/api/v1/admin/users/:id", "users.update", API_STORE_ADMIN, API_ORDERED, API_STORE | API_BODY, NULL, auth_h_users_update, NULL, NULL},
    {"DELETE", "/api/v1/admin/users/:id", "users.delete", API_STORE_ADMIN, API_ORDERED, API_STORE, NULL, auth_h_users_delete, NULL, NULL},
};
/* clang-format on */

static int
auth_module_init(app_t *app, char *err, size_t errlen)
{
    return auth_init(app->cfg, err, errlen);
}

static void
auth_module_fini(app_t *app)
{
    auth_fini();
}

const api_module_t auth_module = {
    .name = "auth",
    .routes = auth_routes,
    .nroutes = SHOPD_ARRAY_LEN(auth_routes),
    .init = auth_module_init,
    .fini = auth_module_fini,
};
