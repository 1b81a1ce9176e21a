/* Tenant naming: X-Tenant-Id, subdomain of the base domain, custom domains; the cache. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "shopd/store.h"

static const char *
key(const char *hdr, const char *host, const char *base)
{
    static char buf[STORE_KEY_MAX];
    if (store_tenant_key(hdr, host, base, buf, sizeof(buf)) != 0)
        return NULL;
    return buf;
}

static void
test_header(void **state)
{
    assert_string_equal(key("demo", "whatever.example", "shop.test"), "slug:demo");
    assert_string_equal(key("42", NULL, NULL), "id:42");
    assert_null(key("0", NULL, NULL));
    assert_null(key("Bad_Slug", NULL, NULL));
    assert_null(key("ab", NULL, NULL));
    assert_null(key("-abc", NULL, NULL));
}

static void
test_subdomain(void **state)
{
    assert_string_equal(key(NULL, "demo.shop.test", "shop.test"), "slug:demo");
    assert_string_equal(key(NULL, "Demo.Shop.Test:8080", "shop.test"), "slug:demo");
    assert_string_equal(key("", "acme-co.shop.test.", "shop.test"), "slug:acme-co");
    assert_null(key(NULL, "shop.test", "shop.test"));     /* bare base domain */
    assert_null(key(NULL, "a.b.shop.test", "shop.test")); /* nested: not a slug */
    assert_null(key(NULL, "x_y.shop.test", "shop.test"));
}

static void
test_custom_domain(void **state)
{
    assert_string_equal(key(NULL, "www.acme.com", "shop.test"), "domain:www.acme.com");
    assert_string_equal(key(NULL, "WWW.ACME.COM:443", "shop.test"), "domain:www.acme.com");
    assert_string_equal(key(NULL, "acme.com", NULL), "domain:acme.com");
    assert_null(key(NULL, "localhost", "shop.test")); /* no dot: not a store domain */
    assert_null(key(NULL, "[::1]:8080", "shop.test"));
    assert_null(key(NULL, "", "shop.test"));
    assert_null(key(NULL, NULL, "shop.test"));
    assert_null(key(NULL, "bad host.com", "shop.test"));
}

static void
test_validators(void **state)
{
    assert_true(store_slug_valid("abc", 3));
    assert_true(store_slug_valid("a-1", 3));
    assert_false(store_slug_valid("abc-", 4));
    assert_false(store_slug_valid("ABC", 3));
    assert_true(store_currency_valid("USD"));
    assert_true(store_currency_valid("EUR"));
    assert_true(store_currency_valid("JPY"));
    assert_false(store_currency_valid("usd"));
    assert_false(store_currency_valid("XXX"));
    assert_false(store_currency_valid("US"));
    assert_true(store_domain_valid("shop.example.com"));
    assert_false(store_domain_valid("-a.com"));
    assert_false(store_domain_valid("a..com"));
}

static void
test_cache(void **state)
{
    store_cache_t *c = store_cache_new(30);
    store_snap_t s = {.id = 7, .status = STORE_ACTIVE}, out;
    strcpy(s.slug, "demo");
    store_cache_put(c, "slug:demo", &s);
    assert_true(store_cache_get(c, "slug:demo", &out));
    assert_int_equal(out.id, 7);
    assert_true(store_cache_get(c, "id:7", &out)); /* also indexed by id */
    store_snap_t neg = {0};
    store_cache_put(c, "slug:ghost", &neg);
    assert_true(store_cache_get(c, "slug:ghost", &out));
    assert_int_equal(out.id, 0);
    store_cache_invalidate(c, 7);
    assert_false(store_cache_get(c, "slug:demo", &out));
    assert_false(store_cache_get(c, "id:7", &out));
    assert_false(store_cache_get(c, "slug:ghost", &out)); /* negatives dropped too */
    /* Growth keeps every entry reachable. */
    for (int i = 1; i <= 5000; i++) {
        char k[32];
        store_snap_t x = {.id = (uint64_t)i};
        snprintf(k, sizeof(k), "slug:s%05d", i);
        store_cache_put(c, k, &x);
    }
    assert_true(store_cache_get(c, "slug:s04999", &out));
    assert_int_equal(out.id, 4999);

    /* Every field comes back as it went in (the cache keeps a packed copy, shared
     * by the store's keys), the longest values included, and a new put of a key
     * replaces what both keys of the store see only for that key's entry. */
    store_snap_t big = {.id = 9, .status = STORE_SUSPENDED, .rate_quota = 3};
    strcpy(big.slug, "big-store");
    memset(big.name, 'n', sizeof(big.name) - 1);
    big.name[sizeof(big.name) - 1] = '\0';
    strcpy(big.currency, "EUR");
    memset(big.domain, 'd', sizeof(big.domain) - 1);
    big.domain[sizeof(big.domain) - 1] = '\0';
    memset(big.public_json, 'j', sizeof(big.public_json) - 1);
    big.public_len = sizeof(big.public_json) - 1;
    memset(big.cors, 'c', sizeof(big.cors) - 1);
    big.cors[sizeof(big.cors) - 1] = '\0';
    store_cache_put(c, "domain:shop.example", &big);
    const char *keys[] = {"domain:shop.example", "id:9"};
    for (int k = 0; k < 2; k++) {
        memset(&out, 0x5a, sizeof(out));
        assert_true(store_cache_get(c, keys[k], &out));
        assert_int_equal(out.id, 9);
        assert_int_equal(out.status, STORE_SUSPENDED);
        assert_int_equal(out.rate_quota, 3);
        assert_string_equal(out.slug, big.slug);
        assert_string_equal(out.name, big.name);
        assert_string_equal(out.currency, "EUR");
        assert_string_equal(out.domain, big.domain);
        assert_string_equal(out.cors, big.cors);
        assert_int_equal(out.public_len, big.public_len);
        assert_memory_equal(out.public_json, big.public_json, big.public_len);
    }
    strcpy(big.name, "Renamed");
    big.public_len = 2;
    memcpy(big.public_json, "{}", 3);
    store_cache_put(c, "id:9", &big);
    assert_true(store_cache_get(c, "id:9", &out));
    assert_string_equal(out.name, "Renamed");
    assert_int_equal(out.public_len, 2);
    assert_true(store_cache_get(c, "domain:shop.example", &out));
    assert_int_equal(out.name[0], 'n'); /* its own entry: refreshed by its own put */
    store_cache_invalidate(c, 9);
    assert_false(store_cache_get(c, "id:9", &out));
    assert_false(store_cache_get(c, "domain:shop.example", &out));
    store_cache_free(c);

    store_cache_t *off = store_cache_new(0); /* TTL 0: caching disabled */
    store_cache_put(off, "slug:demo", &s);
    assert_false(store_cache_get(off, "slug:demo", &out));
    store_cache_free(off);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_header),        cmocka_unit_test(test_subdomain),
        cmocka_unit_test(test_custom_domain), cmocka_unit_test(test_validators),
        cmocka_unit_test(test_cache),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
