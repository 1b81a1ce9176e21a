/*
 * Pricing against the real binary and real PostgreSQL: addresses (CRUD,
 * validation, defaults switching, the 50 cap, other customers' and other
 * stores' ids not found), shipping zones and rates, tax rates and settings,
 * discount codes (CRUD, validation, case-insensitive uniqueness), role and
 * tenant walls on every resource; then the functions of include/shopd/pricing.h
 * on a pool of our own (linked in from shopd_core, as test_db_tx does): rates
 * for a country, weight and subtotal, tax with region fallback, discount find
 * (window, minimum, limits), use and release, address loads, and 50
 * concurrent transactions racing for a single-use code: exactly one wins.
 */
#include <curl/curl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "harness.h"
#include "shopd/db.h"
#include "shopd/pricing.h"

static th_server_t *srv;
static long store_a, store_b;
static char *admin_a, *admin_b, *cust_b;
static th_user_t cust_a, cust_a2;

static th_resp_t
rq(long store, const char *token, const char *method, const char *path, const char *body)
{
    return th_store_req(srv, store, token, method, path, body);
}

static th_resp_t
rqf(long store, const char *token, const char *method, const char *body, const char *fmt, ...)
{
    char path[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(path, sizeof(path), fmt, ap);
    va_end(ap);
    return rq(store, token, method, path, body);
}

static long
jint(json_t *o, const char *k)
{
    return (long)json_integer_value(json_object_get(o, k));
}

static const char *
jstr(json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

static bool
jtrue(json_t *o, const char *k)
{
    return json_is_true(json_object_get(o, k));
}

/* Asserts the status (and the error code when code is not NULL), frees r. */
static void
expect_free(th_resp_t r, long status, const char *code)
{
    if (r.status != status)
        fail_msg("expected %ld, got %ld: %s", status, r.status, r.body);
    if (code && strcmp(th_error_code(&r), code))
        fail_msg("expected code %s: %s", code, r.body);
    th_resp_free(&r);
}

static bool
has_issue(const th_resp_t *r, const char *field)
{
    json_t *d = json_object_get(json_object_get(r->json, "error"), "details");
    size_t i;
    json_t *x;
    json_array_foreach(d, i, x)
    {
        if (!strcmp(json_string_value(json_object_get(x, "field")), field))
            return true;
    }
    return false;
}

/* A 422 validation_failed naming every field of the NULL-ended list. */
static void
expect_invalid(th_resp_t r, ...)
{
    if (r.status != 422 || strcmp(th_error_code(&r), "validation_failed"))
        fail_msg("expected 422 validation_failed, got %ld: %s", r.status, r.body);
    va_list ap;
    va_start(ap, r);
    for (const char *f = va_arg(ap, const char *); f; f = va_arg(ap, const char *))
        if (!has_issue(&r, f))
            fail_msg("no issue for %s: %s", f, r.body);
    va_end(ap);
    th_resp_free(&r);
}

/* POST and return the new id (asserts 201). */
static long
create(long store, const char *token, const char *path, const char *body)
{
    th_resp_t r = rq(store, token, "POST", path, body);
    if (r.status != 201)
        fail_msg("POST %s %s: %ld %s", path, body, r.status, r.body);
    long id = jint(r.json, "id");
    th_resp_free(&r);
    return id;
}

static int
setup(void **state)
{
    curl_global_init(CURL_GLOBAL_ALL);
    srv = th_start(NULL);
    char slug[64];
    snprintf(slug, sizeof(slug), "%s", th_slug("price-a"));
    store_a = th_create_store(srv, slug, NULL);
    snprintf(slug, sizeof(slug), "%s", th_slug("price-b"));
    store_b = th_create_store(srv, slug, NULL);
    admin_a = th_token(srv, "STORE_ADMIN", store_a);
    admin_b = th_token(srv, "STORE_ADMIN", store_b);
    cust_b = th_token(srv, "CUSTOMER", store_b);
    cust_a = th_user_new(srv, "CUSTOMER", store_a);
    cust_a2 = th_user_new(srv, "CUSTOMER", store_a);
    return 0;
}

static int
teardown(void **state)
{
    free(admin_a);
    free(admin_b);
    free(cust_b);
    th_user_free(&cust_a);
    th_user_free(&cust_a2);
    if (srv == NULL)
        return -1;
    th_stop(srv);
    return 0;
}

#define ADDR                                                                                       \
    "\"name\":\"Ada Lovelace\",\"line1\":\"1 Main St\",\"city\":\"London\",\"postal_code\":\"N1 "  \
    "9GU\""

/* ------------------------------------------------------------ addresses */

static void
test_address_crud_and_validation(void **state)
{
    const char *me = cust_a.access;
    th_resp_t r =
        rq(store_a, me, "POST", "/api/v1/me/addresses",
           "{" ADDR ",\"country\":\"GB\",\"line2\":\"Flat 2\",\"phone\":\"+44 20 7946 0000\"}");
    assert_int_equal(r.status, 201);
    long a1 = jint(r.json, "id");
    assert_string_equal(jstr(r.json, "country"), "GB");
    assert_string_equal(jstr(r.json, "line2"), "Flat 2");
    assert_true(json_is_null(json_object_get(r.json, "region")));
    assert_false(jtrue(r.json, "is_default_shipping"));
    th_resp_free(&r);

    /* validation: required fields, a country that is not one, unknown fields,
     * lengths, types; nothing written */
    expect_invalid(rq(store_a, me, "POST", "/api/v1/me/addresses",
                      "{\"line1\":\"x\",\"country\":\"XX\",\"city\":\"\",\"postal_code\":"
                      "\"123456789012345678901\","
                      "\"nickname\":\"home\",\"is_default_billing\":\"yes\",\"phone\":5}"),
                   "name", "country", "city", "postal_code", "nickname", "is_default_billing",
                   "phone", NULL);
    expect_invalid(rq(store_a, me, "POST", "/api/v1/me/addresses", "{" ADDR ",\"country\":\"gb\"}"),
                   "country", NULL);
    expect_invalid(rq(store_a, me, "POST", "/api/v1/me/addresses", "{" ADDR "}"), "country", NULL);
    r = rq(store_a, me, "GET", "/api/v1/me/addresses", NULL);
    assert_int_equal(r.status, 200);
    assert_int_equal(json_array_size(json_object_get(r.json, "data")), 1);
    th_resp_free(&r);

    /* partial update keeps the rest; a required field cannot be cleared */
    r = rqf(store_a, me, "PATCH", "{\"city\":\"Cambridge\",\"line2\":null}",
            "/api/v1/me/addresses/%ld", a1);
    assert_int_equal(r.status, 200);
    assert_string_equal(jstr(r.json, "city"), "Cambridge");
    assert_string_equal(jstr(r.json, "name"), "Ada Lovelace");
    assert_true(json_is_null(json_object_get(r.json, "line2")));
    th_resp_free(&r);
    expect_invalid(rqf(store_a, me, "PATCH", "{\"name\":null}", "/api/v1/me/addresses/%ld", a1),
                   "name", NULL);
    expect_invalid(rqf(store_a, me, "PATCH", "{\"id\":5}", "/api/v1/me/addresses/%ld", a1), "id",
                   NULL);
    r = rqf(store_a, me, "GET", NULL, "/api/v1/me/addresses/%ld", a1);
    assert_int_equal(r.status, 200);
    assert_string_equal(jstr(r.json, "city"), "Cambridge");
    th_resp_free(&r);

    /* another customer of the store, a customer of another store: not found */
    expect_free(rqf(store_a, cust_a2.access, "GET", NULL, "/api/v1/me/addresses/%ld", a1), 404,
                "address_not_found");
    expect_free(
        rqf(store_a, cust_a2.access, "PATCH", "{\"city\":\"X\"}", "/api/v1/me/addresses/%ld", a1),
        404, "address_not_found");
    expect_free(rqf(store_a, cust_a2.access, "DELETE", NULL, "/api/v1/me/addresses/%ld", a1), 404,
                "address_not_found");
    expect_free(rqf(store_b, cust_b, "GET", NULL, "/api/v1/me/addresses/%ld", a1), 404,
                "address_not_found");
    expect_free(rqf(store_b, cust_b, "PATCH", "{\"city\":\"X\"}", "/api/v1/me/addresses/%ld", a1),
                404, "address_not_found");
    expect_free(rqf(store_b, cust_b, "DELETE", NULL, "/api/v1/me/addresses/%ld", a1), 404,
                "address_not_found");
    r = rq(store_a, cust_a2.access, "GET", "/api/v1/me/addresses", NULL);
    assert_int_equal(json_array_size(json_object_get(r.json, "data")), 0);
    th_resp_free(&r);
    /* a token of store A on store B: the middleware's 403 */
    expect_free(rq(store_b, me, "GET", "/api/v1/me/addresses", NULL), 403, "forbidden");

    expect_free(rqf(store_a, me, "DELETE", NULL, "/api/v1/me/addresses/%ld", a1), 204, NULL);
    expect_free(rqf(store_a, me, "GET", NULL, "/api/v1/me/addresses/%ld", a1), 404,
                "address_not_found");
    expect_free(rq(store_a, me, "GET", "/api/v1/me/addresses/99999999999", NULL), 404,
                "address_not_found");
}

static bool
flag_of(long id, const char *flag)
{
    th_resp_t r = rqf(store_a, cust_a.access, "GET", NULL, "/api/v1/me/addresses/%ld", id);
    assert_int_equal(r.status, 200);
    bool b = jtrue(r.json, flag);
    th_resp_free(&r);
    return b;
}

static void
test_address_defaults(void **state)
{
    const char *me = cust_a.access;
    long a = create(
        store_a, me, "/api/v1/me/addresses",
        "{" ADDR ",\"country\":\"DE\",\"is_default_shipping\":true,\"is_default_billing\":true}");
    long b = create(store_a, me, "/api/v1/me/addresses",
                    "{" ADDR ",\"country\":\"FR\",\"is_default_shipping\":true}");
    /* b took the shipping default from a; a keeps billing */
    assert_false(flag_of(a, "is_default_shipping"));
    assert_true(flag_of(b, "is_default_shipping"));
    assert_true(flag_of(a, "is_default_billing"));
    assert_false(flag_of(b, "is_default_billing"));
    /* PATCH takes the billing default over */
    expect_free(
        rqf(store_a, me, "PATCH", "{\"is_default_billing\":true}", "/api/v1/me/addresses/%ld", b),
        200, NULL);
    assert_false(flag_of(a, "is_default_billing"));
    assert_true(flag_of(b, "is_default_billing"));
    /* and a PATCH of other fields leaves the flags alone */
    expect_free(rqf(store_a, me, "PATCH", "{\"company\":\"ACME\"}", "/api/v1/me/addresses/%ld", b),
                200, NULL);
    assert_true(flag_of(b, "is_default_shipping"));
    /* clearing a default leaves the user without one */
    expect_free(
        rqf(store_a, me, "PATCH", "{\"is_default_shipping\":false}", "/api/v1/me/addresses/%ld", b),
        200, NULL);
    assert_false(flag_of(a, "is_default_shipping"));
    assert_false(flag_of(b, "is_default_shipping"));
    /* another customer's default is theirs: setting one does not touch ours */
    create(store_a, cust_a2.access, "/api/v1/me/addresses",
           "{" ADDR ",\"country\":\"DE\",\"is_default_billing\":true}");
    assert_true(flag_of(b, "is_default_billing"));
    char sid[24], uid[24];
    snprintf(sid, sizeof(sid), "%ld", store_a);
    snprintf(uid, sizeof(uid), "%ld", cust_a.id);
    const char *p[] = {sid, uid, NULL};
    assert_string_equal(th_sql("SELECT count(*) FROM addresses WHERE store_id = $1 AND user_id = $2"
                               " AND is_default_billing",
                               p),
                        "1");
}

static void
test_address_limit(void **state)
{
    th_user_t u = th_user_new(srv, "CUSTOMER", store_a);
    for (int i = 0; i < 50; i++)
        create(store_a, u.access, "/api/v1/me/addresses", "{" ADDR ",\"country\":\"IT\"}");
    expect_free(
        rq(store_a, u.access, "POST", "/api/v1/me/addresses", "{" ADDR ",\"country\":\"IT\"}"), 422,
        "address_limit_reached");
    th_resp_t r = rq(store_a, u.access, "GET", "/api/v1/me/addresses", NULL);
    assert_int_equal(json_array_size(json_object_get(r.json, "data")), 50);
    th_resp_free(&r);
    th_user_free(&u);
}

/* ------------------------------------------------------------ shipping */

static void
test_zones_and_rates(void **state)
{
    th_resp_t r = rq(store_a, admin_a, "POST", "/api/v1/admin/shipping-zones",
                     "{\"name\":\"EU\",\"countries\":[\"FR\",\"DE\"]}");
    assert_int_equal(r.status, 201);
    long eu = jint(r.json, "id");
    json_t *cs = json_object_get(r.json, "countries");
    assert_int_equal(json_array_size(cs), 2);
    assert_string_equal(json_string_value(json_array_get(cs, 0)), "DE"); /* sorted */
    assert_int_equal(json_array_size(json_object_get(r.json, "rates")), 0);
    th_resp_free(&r);

    /* a country in one zone only; names unique; validation */
    r = rq(store_a, admin_a, "POST", "/api/v1/admin/shipping-zones",
           "{\"name\":\"World\",\"countries\":[\"US\",\"FR\"]}");
    assert_int_equal(r.status, 409);
    assert_string_equal(th_error_code(&r), "country_in_other_zone");
    assert_non_null(strstr(r.body, "FR"));
    th_resp_free(&r);
    expect_free(rq(store_a, admin_a, "POST", "/api/v1/admin/shipping-zones",
                   "{\"name\":\"EU\",\"countries\":[\"US\"]}"),
                409, "zone_name_taken");
    expect_invalid(rq(store_a, admin_a, "POST", "/api/v1/admin/shipping-zones",
                      "{\"countries\":[\"XX\",\"US\",\"US\"],\"color\":1}"),
                   "name", "countries[0]", "countries[2]", "color", NULL);
    expect_invalid(rq(store_a, admin_a, "POST", "/api/v1/admin/shipping-zones",
                      "{\"name\":\"Empty\",\"countries\":[]}"),
                   "countries", NULL);
    /* the refused zone left nothing behind: US is still free */
    long us = create(store_a, admin_a, "/api/v1/admin/shipping-zones",
                     "{\"name\":\"US\",\"countries\":[\"US\"]}");

    /* rates */
    char path[128];
    snprintf(path, sizeof(path), "/api/v1/admin/shipping-zones/%ld/rates", eu);
    r = rq(store_a, admin_a, "POST", path,
           "{\"name\":\"Standard\",\"kind\":\"flat\",\"price\":500,\"free_above\":5000}");
    assert_int_equal(r.status, 201);
    long flat = jint(r.json, "id");
    assert_int_equal(jint(r.json, "zone_id"), eu);
    assert_int_equal(jint(r.json, "free_above"), 5000);
    assert_true(json_is_null(json_object_get(r.json, "min_weight_g")));
    th_resp_free(&r);
    long band = create(store_a, admin_a, path,
                       "{\"name\":\"Light\",\"kind\":\"weight\",\"price\":300,\"min_weight_g\":0,"
                       "\"max_weight_g\":1000}");
    expect_invalid(rq(store_a, admin_a, "POST", path,
                      "{\"name\":\"X\",\"kind\":\"flat\",\"price\":1,\"min_weight_g\":10}"),
                   "min_weight_g", NULL);
    expect_invalid(rq(store_a, admin_a, "POST", path,
                      "{\"name\":\"X\",\"kind\":\"weight\",\"price\":1,\"min_weight_g\":10,"
                      "\"max_weight_g\":10}"),
                   "max_weight_g", NULL);
    expect_invalid(
        rq(store_a, admin_a, "POST", path, "{\"name\":\"X\",\"kind\":\"weight\",\"price\":1}"),
        "min_weight_g", NULL);
    expect_invalid(
        rq(store_a, admin_a, "POST", path,
           "{\"name\":\"\",\"kind\":\"air\",\"price\":-1,\"free_above\":\"5\",\"eta\":2}"),
        "name", "kind", "price", "free_above", "eta", NULL);

    /* PATCH merges, then checks the whole rate */
    r = rqf(store_a, admin_a, "PATCH", "{\"price\":600}", "/api/v1/admin/shipping-rates/%ld", flat);
    assert_int_equal(r.status, 200);
    assert_int_equal(jint(r.json, "price"), 600);
    assert_int_equal(jint(r.json, "free_above"), 5000);
    assert_string_equal(jstr(r.json, "name"), "Standard");
    th_resp_free(&r);
    expect_invalid(rqf(store_a, admin_a, "PATCH", "{\"max_weight_g\":0}",
                       "/api/v1/admin/shipping-rates/%ld", band),
                   "max_weight_g", NULL);
    expect_invalid(rqf(store_a, admin_a, "PATCH", "{\"kind\":\"flat\"}",
                       "/api/v1/admin/shipping-rates/%ld", band),
                   "min_weight_g", "max_weight_g", NULL);
    r = rqf(store_a, admin_a, "PATCH",
            "{\"kind\":\"flat\",\"min_weight_g\":null,\"max_weight_g\":null}",
            "/api/v1/admin/shipping-rates/%ld", band);
    assert_int_equal(r.status, 200);
    assert_string_equal(jstr(r.json, "kind"), "flat");
    th_resp_free(&r);
    expect_invalid(
        rqf(store_a, admin_a, "PATCH", "{\"zone_id\":1}", "/api/v1/admin/shipping-rates/%ld", band),
        "zone_id", NULL);

    r = rqf(store_a, admin_a, "GET", NULL, "/api/v1/admin/shipping-zones/%ld", eu);
    assert_int_equal(r.status, 200);
    assert_int_equal(json_array_size(json_object_get(r.json, "rates")), 2);
    th_resp_free(&r);
    r = rq(store_a, admin_a, "GET", path, NULL);
    assert_int_equal(r.status, 200);
    assert_int_equal(json_array_size(json_object_get(r.json, "data")), 2);
    th_resp_free(&r);
    r = rq(store_a, admin_a, "GET", "/api/v1/admin/shipping-zones", NULL);
    assert_int_equal(r.status, 200);
    assert_int_equal(json_array_size(json_object_get(r.json, "data")), 2);
    th_resp_free(&r);

    /* zone countries replaced: FR freed for another zone */
    r = rqf(store_a, admin_a, "PATCH", "{\"countries\":[\"DE\",\"AT\"]}",
            "/api/v1/admin/shipping-zones/%ld", eu);
    assert_int_equal(r.status, 200);
    assert_string_equal(json_string_value(json_array_get(json_object_get(r.json, "countries"), 0)),
                        "AT");
    th_resp_free(&r);
    expect_free(rqf(store_a, admin_a, "PATCH", "{\"countries\":[\"US\"]}",
                    "/api/v1/admin/shipping-zones/%ld", eu),
                409, "country_in_other_zone");
    expect_free(rqf(store_a, admin_a, "PATCH", "{\"countries\":[\"US\"]}",
                    "/api/v1/admin/shipping-zones/%ld", us),
                200, NULL); /* its own country: no conflict */
    long fr = create(store_a, admin_a, "/api/v1/admin/shipping-zones",
                     "{\"name\":\"France\",\"countries\":[\"FR\"]}");

    /* store B sees none of it */
    expect_free(rqf(store_b, admin_b, "GET", NULL, "/api/v1/admin/shipping-zones/%ld", eu), 404,
                "shipping_zone_not_found");
    expect_free(rqf(store_b, admin_b, "PATCH", "{\"name\":\"Mine\"}",
                    "/api/v1/admin/shipping-zones/%ld", eu),
                404, "shipping_zone_not_found");
    expect_free(rqf(store_b, admin_b, "DELETE", NULL, "/api/v1/admin/shipping-zones/%ld", eu), 404,
                "shipping_zone_not_found");
    expect_free(rqf(store_b, admin_b, "GET", NULL, "/api/v1/admin/shipping-zones/%ld/rates", eu),
                404, "shipping_zone_not_found");
    expect_free(rqf(store_b, admin_b, "POST", "{\"name\":\"X\",\"kind\":\"flat\",\"price\":1}",
                    "/api/v1/admin/shipping-zones/%ld/rates", eu),
                404, "shipping_zone_not_found");
    expect_free(
        rqf(store_b, admin_b, "PATCH", "{\"price\":1}", "/api/v1/admin/shipping-rates/%ld", flat),
        404, "shipping_rate_not_found");
    expect_free(rqf(store_b, admin_b, "DELETE", NULL, "/api/v1/admin/shipping-rates/%ld", flat),
                404, "shipping_rate_not_found");
    r = rq(store_b, admin_b, "GET", "/api/v1/admin/shipping-zones", NULL);
    assert_int_equal(json_array_size(json_object_get(r.json, "data")), 0);
    th_resp_free(&r);
    /* store B may use the same countries and names */
    create(store_b, admin_b, "/api/v1/admin/shipping-zones",
           "{\"name\":\"EU\",\"countries\":[\"DE\"]}");
    /* customers may not administer */
    expect_free(rq(store_a, cust_a.access, "GET", "/api/v1/admin/shipping-zones", NULL), 403,
                "forbidden");
    expect_free(rqf(store_a, cust_a.access, "PATCH", "{\"price\":1}",
                    "/api/v1/admin/shipping-rates/%ld", flat),
                403, "forbidden");

    /* deletes: a rate, then a zone with its rates and countries */
    expect_free(rqf(store_a, admin_a, "DELETE", NULL, "/api/v1/admin/shipping-rates/%ld", band),
                204, NULL);
    expect_free(rqf(store_a, admin_a, "DELETE", NULL, "/api/v1/admin/shipping-rates/%ld", band),
                404, "shipping_rate_not_found");
    expect_free(rqf(store_a, admin_a, "DELETE", NULL, "/api/v1/admin/shipping-zones/%ld", eu), 204,
                NULL);
    expect_free(
        rqf(store_a, admin_a, "PATCH", "{\"price\":1}", "/api/v1/admin/shipping-rates/%ld", flat),
        404, "shipping_rate_not_found");
    expect_free(rqf(store_a, admin_a, "DELETE", NULL, "/api/v1/admin/shipping-zones/%ld", us), 204,
                NULL);
    expect_free(rqf(store_a, admin_a, "DELETE", NULL, "/api/v1/admin/shipping-zones/%ld", fr), 204,
                NULL);
}

/* ------------------------------------------------------------ taxes */

static void
test_tax_rates_and_settings(void **state)
{
    th_resp_t r = rq(store_a, admin_a, "POST", "/api/v1/admin/tax-rates",
                     "{\"country\":\"DE\",\"rate_bps\":1900,\"name\":\"MwSt\"}");
    assert_int_equal(r.status, 201);
    long de = jint(r.json, "id");
    assert_true(json_is_null(json_object_get(r.json, "region")));
    assert_int_equal(jint(r.json, "rate_bps"), 1900);
    th_resp_free(&r);
    create(store_a, admin_a, "/api/v1/admin/tax-rates",
           "{\"country\":\"US\",\"region\":\"CA\",\"rate_bps\":725,\"name\":\"CA sales tax\"}");
    expect_free(rq(store_a, admin_a, "POST", "/api/v1/admin/tax-rates",
                   "{\"country\":\"DE\",\"rate_bps\":700,\"name\":\"reduced\"}"),
                409, "tax_rate_exists");
    expect_free(rq(store_a, admin_a, "POST", "/api/v1/admin/tax-rates",
                   "{\"country\":\"US\",\"region\":\"ca\",\"rate_bps\":700,\"name\":\"again\"}"),
                409, "tax_rate_exists");
    expect_invalid(rq(store_a, admin_a, "POST", "/api/v1/admin/tax-rates",
                      "{\"country\":\"de\",\"rate_bps\":10001,\"region\":\"\",\"vat\":true}"),
                   "country", "rate_bps", "region", "name", "vat", NULL);
    r = rqf(store_a, admin_a, "PATCH", "{\"rate_bps\":2000}", "/api/v1/admin/tax-rates/%ld", de);
    assert_int_equal(r.status, 200);
    assert_int_equal(jint(r.json, "rate_bps"), 2000);
    assert_string_equal(jstr(r.json, "name"), "MwSt");
    th_resp_free(&r);
    expect_invalid(
        rqf(store_a, admin_a, "PATCH", "{\"country\":\"XX\"}", "/api/v1/admin/tax-rates/%ld", de),
        "country", NULL);
    r = rq(store_a, admin_a, "GET", "/api/v1/admin/tax-rates", NULL);
    assert_int_equal(r.status, 200);
    assert_int_equal(json_array_size(json_object_get(r.json, "data")), 2);
    th_resp_free(&r);
    /* store B: nothing of A's */
    r = rq(store_b, admin_b, "GET", "/api/v1/admin/tax-rates", NULL);
    assert_int_equal(json_array_size(json_object_get(r.json, "data")), 0);
    th_resp_free(&r);
    expect_free(
        rqf(store_b, admin_b, "PATCH", "{\"rate_bps\":1}", "/api/v1/admin/tax-rates/%ld", de), 404,
        "tax_rate_not_found");
    expect_free(rqf(store_b, admin_b, "DELETE", NULL, "/api/v1/admin/tax-rates/%ld", de), 404,
                "tax_rate_not_found");
    expect_free(rq(store_a, cust_a.access, "GET", "/api/v1/admin/tax-rates", NULL), 403,
                "forbidden");
    expect_free(rqf(store_a, admin_a, "DELETE", NULL, "/api/v1/admin/tax-rates/%ld", de), 204,
                NULL);
    expect_free(
        rqf(store_a, admin_a, "PATCH", "{\"rate_bps\":1}", "/api/v1/admin/tax-rates/%ld", de), 404,
        "tax_rate_not_found");

    /* settings */
    r = rq(store_a, admin_a, "GET", "/api/v1/admin/tax-settings", NULL);
    assert_int_equal(r.status, 200);
    assert_false(jtrue(r.json, "prices_include_tax"));
    assert_false(jtrue(r.json, "tax_shipping"));
    th_resp_free(&r);
    r = rq(store_a, admin_a, "PATCH", "/api/v1/admin/tax-settings",
           "{\"prices_include_tax\":true}");
    assert_int_equal(r.status, 200);
    assert_true(jtrue(r.json, "prices_include_tax"));
    assert_false(jtrue(r.json, "tax_shipping"));
    th_resp_free(&r);
    expect_invalid(rq(store_a, admin_a, "PATCH", "/api/v1/admin/tax-settings",
                      "{\"tax_shipping\":\"yes\",\"currency\":\"EUR\"}"),
                   "tax_shipping", "currency", NULL);
    /* kept in stores.settings under its own keys, beside the others */
    char path[64];
    snprintf(path, sizeof(path), "/api/v1/stores/%ld", store_a);
    r = th_platform(srv, "GET", path, NULL);
    assert_true(jtrue(json_object_get(r.json, "settings"), "prices_include_tax"));
    th_resp_free(&r);
    r = rq(store_b, admin_b, "GET", "/api/v1/admin/tax-settings", NULL);
    assert_false(jtrue(r.json, "prices_include_tax"));
    th_resp_free(&r);
    expect_free(rq(store_a, cust_a.access, "PATCH", "/api/v1/admin/tax-settings",
                   "{\"tax_shipping\":true}"),
                403, "forbidden");
    expect_free(rq(store_a, admin_a, "PATCH", "/api/v1/admin/tax-settings",
                   "{\"prices_include_tax\":false}"),
                200, NULL);
}

/* ------------------------------------------------------------ discounts */

static void
test_discounts_crud(void **state)
{
    th_resp_t r = rq(store_a, admin_a, "POST", "/api/v1/admin/discounts",
                     "{\"code\":\"SUMMER10\",\"kind\":\"percent\",\"value\":1000}");
    assert_int_equal(r.status, 201);
    long id = jint(r.json, "id");
    assert_int_equal(jint(r.json, "used"), 0);
    assert_int_equal(jint(r.json, "min_subtotal"), 0);
    assert_true(jtrue(r.json, "active"));
    assert_true(json_is_null(json_object_get(r.json, "usage_limit")));
    th_resp_free(&r);
    expect_free(rq(store_a, admin_a, "POST", "/api/v1/admin/discounts",
                   "{\"code\":\"summer10\",\"kind\":\"fixed\",\"value\":100}"),
                409, "discount_code_taken");
    expect_invalid(
        rq(store_a, admin_a, "POST", "/api/v1/admin/discounts",
           "{\"code\":\"has space\",\"kind\":\"bogo\",\"value\":0,\"usage_limit\":0,"
           "\"per_customer_limit\":-1,\"starts_at\":\"tomorrow\",\"active\":1,\"stack\":true}"),
        "code", "kind", "value", "usage_limit", "per_customer_limit", "starts_at", "active",
        "stack", NULL);
    expect_invalid(rq(store_a, admin_a, "POST", "/api/v1/admin/discounts",
                      "{\"code\":\"P\",\"kind\":\"percent\",\"value\":10001}"),
                   "value", NULL);
    expect_invalid(
        rq(store_a, admin_a, "POST", "/api/v1/admin/discounts",
           "{\"code\":\"W\",\"kind\":\"fixed\",\"value\":5,\"starts_at\":\"2027-01-02T00:00:00Z\","
           "\"ends_at\":\"2027-01-01T00:00:00+00:00\"}"),
        "ends_at", NULL);
    expect_invalid(
        rq(store_a, admin_a, "POST", "/api/v1/admin/discounts",
           "{\"code\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\","
           "\"kind\":\"fixed\",\"value\":5}"),
        "code", NULL);

    /* PATCH merges with the stored discount and checks the whole */
    r = rqf(store_a, admin_a, "PATCH",
            "{\"starts_at\":\"2026-01-01T00:00:00Z\",\"ends_at\":\"2099-01-01T00:00:00Z\","
            "\"usage_limit\":100,\"min_subtotal\":2500}",
            "/api/v1/admin/discounts/%ld", id);
    assert_int_equal(r.status, 200);
    assert_int_equal(jint(r.json, "usage_limit"), 100);
    assert_int_equal(jint(r.json, "value"), 1000);
    assert_non_null(jstr(r.json, "starts_at"));
    th_resp_free(&r);
    expect_invalid(rqf(store_a, admin_a, "PATCH", "{\"ends_at\":\"2025-01-01T00:00:00Z\"}",
                       "/api/v1/admin/discounts/%ld", id),
                   "ends_at", NULL);
    expect_invalid(
        rqf(store_a, admin_a, "PATCH", "{\"value\":20000}", "/api/v1/admin/discounts/%ld", id),
        "value", NULL);
    r = rqf(store_a, admin_a, "PATCH", "{\"kind\":\"fixed\",\"value\":20000,\"active\":false}",
            "/api/v1/admin/discounts/%ld", id);
    assert_int_equal(r.status, 200);
    assert_string_equal(jstr(r.json, "kind"), "fixed");
    assert_false(jtrue(r.json, "active"));
    /* the PATCH round-tripped the stored times unchanged */
    assert_non_null(strstr(jstr(r.json, "ends_at"), "2099-01-01"));
    th_resp_free(&r);
    expect_invalid(
        rqf(store_a, admin_a, "PATCH", "{\"used\":0}", "/api/v1/admin/discounts/%ld", id), "used",
        NULL);
    r = rqf(store_a, admin_a, "GET", NULL, "/api/v1/admin/discounts/%ld", id);
    assert_int_equal(r.status, 200);
    assert_string_equal(jstr(r.json, "code"), "SUMMER10");
    th_resp_free(&r);
    r = rq(store_a, admin_a, "GET", "/api/v1/admin/discounts", NULL);
    assert_int_equal(json_array_size(json_object_get(r.json, "data")), 1);
    th_resp_free(&r);

    /* store B: not found, and its own SUMMER10 is allowed */
    expect_free(rqf(store_b, admin_b, "GET", NULL, "/api/v1/admin/discounts/%ld", id), 404,
                "discount_not_found");
    expect_free(rqf(store_b, admin_b, "PATCH", "{\"value\":1}", "/api/v1/admin/discounts/%ld", id),
                404, "discount_not_found");
    expect_free(rqf(store_b, admin_b, "DELETE", NULL, "/api/v1/admin/discounts/%ld", id), 404,
                "discount_not_found");
    create(store_b, admin_b, "/api/v1/admin/discounts",
           "{\"code\":\"SUMMER10\",\"kind\":\"fixed\",\"value\":100}");
    expect_free(rq(store_a, cust_a.access, "GET", "/api/v1/admin/discounts", NULL), 403,
                "forbidden");
    expect_free(rq(store_a, cust_a.access, "POST", "/api/v1/admin/discounts",
                   "{\"code\":\"MINE\",\"kind\":\"fixed\",\"value\":100}"),
                403, "forbidden");

    expect_free(rqf(store_a, admin_a, "DELETE", NULL, "/api/v1/admin/discounts/%ld", id), 204,
                NULL);
    expect_free(rqf(store_a, admin_a, "GET", NULL, "/api/v1/admin/discounts/%ld", id), 404,
                "discount_not_found");
}

/* ------------------------------------------------------------ pricing.h against PostgreSQL */

static db_pool_t *pool;

static void
test_db_shipping_rates(void **state)
{
    long z = create(store_a, admin_a, "/api/v1/admin/shipping-zones",
                    "{\"name\":\"Japan\",\"countries\":[\"JP\"]}");
    char path[128];
    snprintf(path, sizeof(path), "/api/v1/admin/shipping-zones/%ld/rates", z);
    long flat =
        create(store_a, admin_a, path,
               "{\"name\":\"Standard\",\"kind\":\"flat\",\"price\":1000,\"free_above\":10000}");
    long light = create(store_a, admin_a, path,
                        "{\"name\":\"Light\",\"kind\":\"weight\",\"price\":300,\"min_weight_g\":0,"
                        "\"max_weight_g\":500}");
    long heavy =
        create(store_a, admin_a, path,
               "{\"name\":\"Heavy\",\"kind\":\"weight\",\"price\":800,\"min_weight_g\":500}");

    pool = th_pool_new(50);
    db_conn_t *c = db_acquire(pool, 2000);
    assert_non_null(c);
    pricing_rate_t out[PRICING_MAX_RATES];
    size_t n = 99;
    assert_int_equal(
        pricing_shipping_rates(c, store_a, "JP", 5000, 200, out, PRICING_MAX_RATES, &n), SHOPD_OK);
    assert_int_equal(n, 2); /* the light band and the flat rate, cheapest first */
    assert_int_equal(out[0].id, light);
    assert_int_equal(out[0].price, 300);
    assert_string_equal(out[0].name, "Light");
    assert_int_equal(out[0].zone_id, z);
    assert_int_equal(out[1].id, flat);
    assert_int_equal(out[1].price, 1000);
    /* 500 g is the heavy band's (bands are [min, max)) */
    assert_int_equal(
        pricing_shipping_rates(c, store_a, "JP", 5000, 500, out, PRICING_MAX_RATES, &n), SHOPD_OK);
    assert_int_equal(n, 2);
    assert_int_equal(out[0].id, heavy);
    assert_int_equal(out[0].price, 800);
    /* from free_above on the flat rate costs 0 and comes first */
    assert_int_equal(
        pricing_shipping_rates(c, store_a, "JP", 10000, 200, out, PRICING_MAX_RATES, &n), SHOPD_OK);
    assert_int_equal(n, 2);
    assert_int_equal(out[0].id, flat);
    assert_int_equal(out[0].price, 0);
    assert_int_equal(pricing_shipping_rates(c, store_a, "JP", 9999, 200, out, 1, &n), SHOPD_OK);
    assert_int_equal(n, 1); /* max respected */
    /* no zone for the country, not a country, another store: none */
    assert_int_equal(
        pricing_shipping_rates(c, store_a, "KR", 5000, 200, out, PRICING_MAX_RATES, &n), SHOPD_OK);
    assert_int_equal(n, 0);
    assert_int_equal(
        pricing_shipping_rates(c, store_a, "J'", 5000, 200, out, PRICING_MAX_RATES, &n), SHOPD_OK);
    assert_int_equal(n, 0);
    assert_int_equal(
        pricing_shipping_rates(c, store_b, "JP", 5000, 200, out, PRICING_MAX_RATES, &n), SHOPD_OK);
    assert_int_equal(n, 0);

    pricing_rate_t one;
    assert_int_equal(pricing_shipping_rate(c, store_a, flat, "JP", 20000, 5000, &one), SHOPD_OK);
    assert_int_equal(one.price, 0);
    assert_int_equal(pricing_shipping_rate(c, store_a, light, "JP", 100, 499, &one), SHOPD_OK);
    assert_int_equal(one.price, 300);
    assert_int_equal(pricing_shipping_rate(c, store_a, light, "JP", 100, 500, &one),
                     SHOPD_NOTFOUND);
    assert_int_equal(pricing_shipping_rate(c, store_a, flat, "DE", 100, 10, &one), SHOPD_NOTFOUND);
    assert_int_equal(pricing_shipping_rate(c, store_b, flat, "JP", 100, 10, &one), SHOPD_NOTFOUND);
    assert_int_equal(pricing_shipping_rate(c, store_a, 99999999, "JP", 100, 10, &one),
                     SHOPD_NOTFOUND);
    assert_string_equal(pricing_provider()->name, "table");
    db_release(c);
}

static void
test_db_tax_for(void **state)
{
    create(store_a, admin_a, "/api/v1/admin/tax-rates",
           "{\"country\":\"US\",\"rate_bps\":500,\"name\":\"federal-ish\"}");
    create(store_a, admin_a, "/api/v1/admin/tax-rates",
           "{\"country\":\"FR\",\"rate_bps\":2000,\"name\":\"TVA\"}");
    expect_free(rq(store_a, admin_a, "PATCH", "/api/v1/admin/tax-settings",
                   "{\"prices_include_tax\":true,\"tax_shipping\":true}"),
                200, NULL);
    db_conn_t *c = db_acquire(pool, 2000);
    pricing_tax_t t;
    /* US/CA (from the tax test) has its own row; other regions fall back */
    assert_int_equal(pricing_tax_for(c, store_a, "US", "ca", &t), SHOPD_OK);
    assert_int_equal(t.bps, 725);
    assert_true(t.inclusive);
    assert_true(t.on_shipping);
    assert_int_equal(pricing_tax_for(c, store_a, "US", "NY", &t), SHOPD_OK);
    assert_int_equal(t.bps, 500);
    assert_int_equal(pricing_tax_for(c, store_a, "US", NULL, &t), SHOPD_OK);
    assert_int_equal(t.bps, 500);
    assert_int_equal(pricing_tax_for(c, store_a, "US", "", &t), SHOPD_OK);
    assert_int_equal(t.bps, 500);
    assert_int_equal(pricing_tax_for(c, store_a, "FR", "Paris", &t), SHOPD_OK);
    assert_int_equal(t.bps, 2000);
    assert_int_equal(pricing_tax_for(c, store_a, "JP", NULL, &t), SHOPD_OK);
    assert_int_equal(t.bps, 0);
    assert_int_equal(pricing_tax_for(c, store_b, "FR", NULL, &t), SHOPD_OK);
    assert_int_equal(t.bps, 0);
    assert_false(t.inclusive);
    assert_false(t.on_shipping);
    db_release(c);
    expect_free(rq(store_a, admin_a, "PATCH", "/api/v1/admin/tax-settings",
                   "{\"prices_include_tax\":false,\"tax_shipping\":false}"),
                200, NULL);
}

typedef struct use_s {
    uint64_t store, discount, order, user;
    const char *email;
    pricing_discount_why_t why;
} use_t;

static shopd_rc_t
use_body(db_conn_t *c, void *arg)
{
    use_t *u = arg;
    return pricing_discount_use(c, u->store, u->discount, u->order, u->user, u->email, &u->why);
}

/* One use in a transaction of its own, as a checkout would. */
static shopd_rc_t
use_once(uint64_t discount, uint64_t order, uint64_t user, const char *email,
         pricing_discount_why_t *why)
{
    db_conn_t *c = db_acquire(pool, 2000);
    use_t u = {(uint64_t)store_a, discount, order, user, email, PRICING_DISCOUNT_OK};
    shopd_rc_t rc = db_tx(c, use_body, &u);
    db_release(c);
    *why = u.why;
    return rc;
}

static pricing_discount_why_t
find(long store, const char *code, int64_t subtotal, uint64_t user, const char *email,
     pricing_discount_t *d)
{
    db_conn_t *c = db_acquire(pool, 2000);
    pricing_discount_why_t why = PRICING_DISCOUNT_OK;
    assert_int_equal(pricing_discount_find(c, store, code, subtotal, user, email, d, &why),
                     SHOPD_OK);
    db_release(c);
    return why;
}

static void
test_db_discounts(void **state)
{
    pricing_discount_t d;
    create(store_a, admin_a, "/api/v1/admin/discounts",
           "{\"code\":\"Later\",\"kind\":\"percent\",\"value\":500,\"starts_at\":\"2099-01-01T00:"
           "00:00Z\"}");
    create(store_a, admin_a, "/api/v1/admin/discounts",
           "{\"code\":\"Gone\",\"kind\":\"percent\",\"value\":500,\"starts_at\":\"2000-01-01T00:00:"
           "00Z\","
           "\"ends_at\":\"2001-01-01T00:00:00Z\"}");
    create(store_a, admin_a, "/api/v1/admin/discounts",
           "{\"code\":\"Off\",\"kind\":\"percent\",\"value\":500,\"active\":false}");
    long min =
        create(store_a, admin_a, "/api/v1/admin/discounts",
               "{\"code\":\"Min5000\",\"kind\":\"fixed\",\"value\":700,\"min_subtotal\":5000,"
               "\"starts_at\":\"2000-01-01T00:00:00Z\",\"ends_at\":\"2099-01-01T00:00:00Z\"}");
    assert_int_equal(find(store_a, "LATER", 9000, 0, NULL, &d), PRICING_DISCOUNT_NOT_STARTED);
    assert_int_equal(find(store_a, "gone", 9000, 0, NULL, &d), PRICING_DISCOUNT_EXPIRED);
    assert_int_equal(find(store_a, "off", 9000, 0, NULL, &d), PRICING_DISCOUNT_NOT_STARTED);
    assert_int_equal(find(store_a, "nope", 9000, 0, NULL, &d), PRICING_DISCOUNT_UNKNOWN);
    assert_int_equal(find(store_a, "", 9000, 0, NULL, &d), PRICING_DISCOUNT_UNKNOWN);
    assert_int_equal(find(store_a, "min5000", 4999, 0, NULL, &d), PRICING_DISCOUNT_MIN_SUBTOTAL);
    assert_int_equal(find(store_a, "MIN5000", 5000, 0, NULL, &d), PRICING_DISCOUNT_OK);
    assert_int_equal(d.id, min);
    assert_string_equal(d.code, "Min5000");
    assert_false(d.percent);
    assert_int_equal(d.value, 700);
    assert_int_equal(d.min_subtotal, 5000);
    assert_int_equal(pricing_discount_amount(&d, 5000), 700);
    assert_int_equal(find(store_b, "Min5000", 9000, 0, NULL, &d), PRICING_DISCOUNT_UNKNOWN);

    /* a use is refused for a code not usable now, and for another store */
    pricing_discount_why_t why;
    long later = atol(th_sql("SELECT id FROM discounts WHERE code = 'Later'", NULL));
    assert_int_equal(use_once(later, 1, 0, "x@example.com", &why), SHOPD_CONFLICT);
    assert_int_equal(why, PRICING_DISCOUNT_NOT_STARTED);

    /* total limit: one use, then used up; released, usable again */
    long once = create(store_a, admin_a, "/api/v1/admin/discounts",
                       "{\"code\":\"ONCE\",\"kind\":\"fixed\",\"value\":100,\"usage_limit\":1}");
    assert_int_equal(use_once(once, 101, cust_a.id, NULL, &why), SHOPD_OK);
    assert_int_equal(find(store_a, "once", 1000, 0, NULL, &d), PRICING_DISCOUNT_USED_UP);
    assert_int_equal(use_once(once, 102, cust_a2.id, NULL, &why), SHOPD_CONFLICT);
    assert_int_equal(why, PRICING_DISCOUNT_USED_UP);
    th_resp_t r = rqf(store_a, admin_a, "GET", NULL, "/api/v1/admin/discounts/%ld", once);
    assert_int_equal(jint(r.json, "used"), 1);
    th_resp_free(&r);
    db_conn_t *c = db_acquire(pool, 2000);
    assert_int_equal(pricing_discount_release(c, store_b, 101), SHOPD_OK); /* not B's: nothing */
    assert_int_equal(pricing_discount_release(c, store_a, 101), SHOPD_OK);
    assert_int_equal(pricing_discount_release(c, store_a, 101), SHOPD_OK); /* twice: no-op */
    db_release(c);
    assert_int_equal(find(store_a, "once", 1000, 0, NULL, &d), PRICING_DISCOUNT_OK);
    r = rqf(store_a, admin_a, "GET", NULL, "/api/v1/admin/discounts/%ld", once);
    assert_int_equal(jint(r.json, "used"), 0);
    th_resp_free(&r);

    /* per-customer limit: by user id, and by e-mail (case-insensitive) for guests */
    long per =
        create(store_a, admin_a, "/api/v1/admin/discounts",
               "{\"code\":\"PER1\",\"kind\":\"percent\",\"value\":1000,\"per_customer_limit\":1}");
    assert_int_equal(use_once(per, 201, cust_a.id, NULL, &why), SHOPD_OK);
    assert_int_equal(find(store_a, "per1", 1000, cust_a.id, NULL, &d), PRICING_DISCOUNT_USED_UP);
    assert_int_equal(find(store_a, "per1", 1000, cust_a2.id, NULL, &d), PRICING_DISCOUNT_OK);
    assert_int_equal(use_once(per, 202, cust_a.id, NULL, &why), SHOPD_CONFLICT);
    assert_int_equal(why, PRICING_DISCOUNT_USED_UP);
    assert_int_equal(use_once(per, 203, 0, "Guest@Example.com", &why), SHOPD_OK);
    assert_int_equal(find(store_a, "per1", 1000, 0, "guest@example.com", &d),
                     PRICING_DISCOUNT_USED_UP);
    assert_int_equal(use_once(per, 204, 0, "GUEST@example.com", &why), SHOPD_CONFLICT);
    assert_int_equal(find(store_a, "per1", 1000, 0, "other@example.com", &d), PRICING_DISCOUNT_OK);
    /* an order uses one code once */
    assert_int_equal(use_once(min, 203, 0, "z@example.com", &why), SHOPD_CONFLICT);
    r = rqf(store_a, admin_a, "GET", NULL, "/api/v1/admin/discounts/%ld", min);
    assert_int_equal(jint(r.json, "used"), 0); /* the failed use left nothing */
    th_resp_free(&r);
}

/* 50 checkouts, one use: each thread its own connection and transaction. */
typedef struct racer_s {
    pthread_barrier_t *go;
    uint64_t discount, order, user;
    shopd_rc_t rc;
    pricing_discount_why_t why;
} racer_t;

static void *
racer(void *arg)
{
    racer_t *r = arg;
    db_conn_t *c = db_acquire(pool, 10000);
    use_t u = {(uint64_t)store_a,  r->discount,        r->order, 0,
               "race@example.com", PRICING_DISCOUNT_OK};
    if (c == NULL) {
        r->rc = SHOPD_UNAVAILABLE;
        pthread_barrier_wait(r->go);
        return NULL;
    }
    pthread_barrier_wait(r->go);
    r->rc = db_tx(c, use_body, &u);
    r->why = u.why;
    db_release(c);
    return NULL;
}

/* Runs n racers on discount id (orders from order0, as user: 0 for guests with one
 * e-mail); returns how many got the use, failing on anything but used up. */
static int
race(long id, int n, uint64_t order0, uint64_t user)
{
    pthread_t t[64];
    racer_t rs[64];
    pthread_barrier_t go;
    assert_true(n <= 64);
    pthread_barrier_init(&go, NULL, (unsigned)n);
    for (int i = 0; i < n; i++) {
        rs[i] = (racer_t){&go,  (uint64_t)id, order0 + (uint64_t)i,
                          user, SHOPD_ERR,    PRICING_DISCOUNT_OK};
        pthread_create(&t[i], NULL, racer, &rs[i]);
    }
    int ok = 0, used_up = 0;
    for (int i = 0; i < n; i++) {
        pthread_join(t[i], NULL);
        if (rs[i].rc == SHOPD_OK)
            ok++;
        else if (rs[i].rc == SHOPD_CONFLICT && rs[i].why == PRICING_DISCOUNT_USED_UP)
            used_up++;
        else
            fail_msg("racer %d: %s (why %d)", i, shopd_rc_name(rs[i].rc), rs[i].why);
    }
    pthread_barrier_destroy(&go);
    assert_int_equal(ok + used_up, n);
    return ok;
}

static void
expect_used(long id, const char *used)
{
    char sid[24], did[24];
    snprintf(sid, sizeof(sid), "%ld", store_a);
    snprintf(did, sizeof(did), "%ld", id);
    const char *p[] = {sid, did, NULL};
    assert_string_equal(th_sql("SELECT used FROM discounts WHERE store_id = $1 AND id = $2", p),
                        used);
    assert_string_equal(
        th_sql("SELECT count(*) FROM discount_uses WHERE store_id = $1 AND discount_id = $2", p),
        used);
}

static void
test_db_single_use_race(void **state)
{
    /* 50 checkouts, one use in all: exactly one wins */
    long id = create(store_a, admin_a, "/api/v1/admin/discounts",
                     "{\"code\":\"RACE\",\"kind\":\"fixed\",\"value\":500,\"usage_limit\":1}");
    assert_int_equal(race(id, 50, 5000, 0), 1);
    expect_used(id, "1");
    /* one customer's 20 checkouts at once on a once-per-customer code: one wins */
    long per = create(store_a, admin_a, "/api/v1/admin/discounts",
                      "{\"code\":\"RACE-PER\",\"kind\":\"fixed\",\"value\":500,"
                      "\"per_customer_limit\":1}");
    assert_int_equal(race(per, 20, 6000, (uint64_t)cust_a2.id), 1);
    expect_used(per, "1");
}

static void
test_db_addresses(void **state)
{
    th_user_t u = th_user_new(srv, "CUSTOMER", store_a);
    long a = create(
        store_a, u.access, "/api/v1/me/addresses",
        "{" ADDR ",\"country\":\"GB\",\"region\":\"Greater London\",\"is_default_shipping\":true}");
    db_conn_t *c = db_acquire(pool, 2000);
    shopd_rc_t rc = SHOPD_ERR;
    json_t *j = pricing_address_load(c, store_a, u.id, a, &rc);
    assert_int_equal(rc, SHOPD_OK);
    assert_non_null(j);
    assert_string_equal(jstr(j, "name"), "Ada Lovelace");
    assert_string_equal(jstr(j, "region"), "Greater London");
    assert_string_equal(jstr(j, "country"), "GB");
    assert_null(json_object_get(j, "id")); /* the snapshot, not the row */
    assert_true(json_is_null(json_object_get(j, "line2")));
    json_decref(j);
    assert_null(pricing_address_load(c, store_a, cust_a.id, a, &rc));
    assert_int_equal(rc, SHOPD_NOTFOUND);
    assert_null(pricing_address_load(c, store_b, u.id, a, &rc));
    assert_int_equal(rc, SHOPD_NOTFOUND);
    j = pricing_address_default(c, store_a, u.id, false, &rc);
    assert_int_equal(rc, SHOPD_OK);
    assert_string_equal(jstr(j, "postal_code"), "N1 9GU");
    json_decref(j);
    assert_null(pricing_address_default(c, store_a, u.id, true, &rc));
    assert_int_equal(rc, SHOPD_NOTFOUND);

    /* the shared check with a prefix, as the checkout's inline addresses use it */
    api_val_t v = {0};
    json_t *bad = json_pack("{s:s, s:s, s:i}", "name", "X", "country", "ZZ", "zip", 1);
    assert_false(pricing_address_check(&v, bad, "shipping_address."));
    bool seen_country = false, seen_zip = false, seen_line1 = false;
    for (size_t i = 0; i < v.n; i++) {
        seen_country |= strcmp(v.fields[i], "shipping_address.country") == 0;
        seen_zip |= strcmp(v.fields[i], "shipping_address.zip") == 0;
        seen_line1 |= strcmp(v.fields[i], "shipping_address.line1") == 0;
    }
    assert_true(seen_country && seen_zip && seen_line1);
    json_decref(bad);
    api_val_t v2 = {0};
    json_t *str = json_string("1 Main St");
    assert_false(pricing_address_check(&v2, str, "billing_address."));
    assert_string_equal(v2.fields[0], "billing_address");
    json_decref(str);
    db_release(c);
    db_pool_free(pool);
    pool = NULL;
    th_user_free(&u);
}

/* Deleting a store takes its pricing rows with it (every table cascades). */
static void
test_store_delete_cascades(void **state)
{
    char slug[64];
    snprintf(slug, sizeof(slug), "%s", th_slug("price-c"));
    long sc = th_create_store(srv, slug, NULL);
    char *admin = th_token(srv, "STORE_ADMIN", sc);
    th_user_t u = th_user_new(srv, "CUSTOMER", sc);
    create(sc, u.access, "/api/v1/me/addresses", "{" ADDR ",\"country\":\"GB\"}");
    long z = create(sc, admin, "/api/v1/admin/shipping-zones",
                    "{\"name\":\"EU\",\"countries\":[\"DE\"]}");
    char path[128];
    snprintf(path, sizeof(path), "/api/v1/admin/shipping-zones/%ld/rates", z);
    create(sc, admin, path, "{\"name\":\"S\",\"kind\":\"flat\",\"price\":1}");
    create(sc, admin, "/api/v1/admin/tax-rates",
           "{\"country\":\"DE\",\"rate_bps\":1900,\"name\":\"V\"}");
    long d = create(sc, admin, "/api/v1/admin/discounts",
                    "{\"code\":\"C\",\"kind\":\"fixed\",\"value\":1}");
    char sid[24], did[24];
    snprintf(sid, sizeof(sid), "%ld", sc);
    snprintf(did, sizeof(did), "%ld", d);
    const char *p[] = {sid, did, NULL};
    th_sql("INSERT INTO discount_uses (store_id, discount_id, order_id) VALUES ($1, $2, 1)", p);
    snprintf(path, sizeof(path), "/api/v1/stores/%ld", sc);
    th_resp_t r = th_platform(srv, "DELETE", path, NULL);
    assert_int_equal(r.status, 204);
    th_resp_free(&r);
    const char *ps[] = {sid, NULL};
    assert_string_equal(
        th_sql("SELECT (SELECT count(*) FROM addresses WHERE store_id = $1) +"
               " (SELECT count(*) FROM shipping_zones WHERE store_id = $1) +"
               " (SELECT count(*) FROM shipping_zone_countries WHERE store_id = $1) +"
               " (SELECT count(*) FROM shipping_rates WHERE store_id = $1) +"
               " (SELECT count(*) FROM tax_rates WHERE store_id = $1) +"
               " (SELECT count(*) FROM discounts WHERE store_id = $1) +"
               " (SELECT count(*) FROM discount_uses WHERE store_id = $1)",
               ps),
        "0");
    free(admin);
    th_user_free(&u);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_address_crud_and_validation),
        cmocka_unit_test(test_address_defaults),
        cmocka_unit_test(test_address_limit),
        cmocka_unit_test(test_zones_and_rates),
        cmocka_unit_test(test_tax_rates_and_settings),
        cmocka_unit_test(test_discounts_crud),
        cmocka_unit_test(test_db_shipping_rates),
        cmocka_unit_test(test_db_tax_for),
        cmocka_unit_test(test_db_discounts),
        cmocka_unit_test(test_db_single_use_race),
        cmocka_unit_test(test_db_addresses),
        cmocka_unit_test(test_store_delete_cascades),
        TH_STOP_TEST,
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
