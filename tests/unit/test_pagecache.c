/* The in-process page cache (src/modules/catalog/pagecache.c) without Redis: the
 * version table's rules (never back, unknown on doubt, epochs), pages' gzip copies
 * and ETags, replacement, CLOCK eviction within the byte budget, and references
 * that outlive eviction. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <zlib.h>

#include "modules/catalog/catalog_priv.h"
#include "shopd/config.h"

static cfg_t cfg;
static app_t app;

static int
setup(void **state)
{
    (void)state;
    cfg.page_cache_mb = 1; /* 64 KiB a shard */
    cfg.page_stale_ms = 1000;
    cfg.redis_url = NULL; /* no subscriber: the table is never "healthy" */
    app.cfg = &cfg;
    return catalog_pages_start(&app);
}

static int
teardown(void **state)
{
    (void)state;
    catalog_pages_stop(&app);
    catalog_pages_fini(&app);
    return 0;
}

static void
test_versions(void **state)
{
    (void)state;
    uint64_t v;
    assert_false(pc_version(7, &v));
    pc_version_bumped(7, 5);
    assert_true(pc_version(7, &v));
    assert_int_equal(v, 5);
    pc_version_bumped(7, 6); /* higher wins */
    assert_true(pc_version(7, &v));
    assert_int_equal(v, 6);
    pc_version_bumped(7, 4); /* lower: doubt, so unknown */
    assert_false(pc_version(7, &v));
    uint64_t e = pc_epoch();
    pc_version_learn(7, 9, e); /* an unknown store learns */
    assert_true(pc_version(7, &v));
    assert_int_equal(v, 9);
    pc_version_learn(7, 8, e); /* a GET that disagrees: unknown again */
    assert_false(pc_version(7, &v));
    pc_version_learn(7, 3, e + 1); /* read under another epoch: ignored */
    assert_false(pc_version(7, &v));
    assert_false(pc_sub_healthy());
    /* Many stores: the table grows and keeps each. */
    for (uint64_t s = 100; s < 1100; s++)
        pc_version_bumped(s, s * 2);
    for (uint64_t s = 100; s < 1100; s++) {
        assert_true(pc_version(s, &v));
        assert_int_equal(v, s * 2);
    }
}

static void
test_page_gzip_and_current(void **state)
{
    (void)state;
    char body[4000];
    for (size_t i = 0; i < sizeof(body); i++)
        body[i] = "{\"name\":\"Organic Cotton Tee\"},"[i % 30];
    pc_version_bumped(42, 3);
    pc_page_t *p = pc_page_new(42, 3, "shopd:cat:42:products.list?", "\"00000000000000ab\"", body,
                               sizeof(body));
    assert_true(pc_page_has_gzip(p));
    assert_string_equal(pc_page_etag(p, false), "\"00000000000000ab\"");
    assert_string_equal(pc_page_etag(p, true), "\"00000000000000ab-gz\"");
    size_t gl, il;
    const char *gz = pc_page_body(p, true, &gl);
    const char *id = pc_page_body(p, false, &il);
    assert_int_equal(il, sizeof(body));
    assert_memory_equal(id, body, il);
    assert_true(gl * 4 < il);
    /* The copy inflates to the page. */
    char out[sizeof(body)];
    z_stream z;
    memset(&z, 0, sizeof(z));
    assert_int_equal(inflateInit2(&z, 15 + 16), Z_OK);
    z.next_in = (Bytef *)(uintptr_t)gz;
    z.avail_in = (uInt)gl;
    z.next_out = (Bytef *)out;
    z.avail_out = sizeof(out);
    assert_int_equal(inflate(&z, Z_FINISH), Z_STREAM_END);
    assert_int_equal(sizeof(out) - z.avail_out, sizeof(body));
    inflateEnd(&z);
    assert_memory_equal(out, body, sizeof(body));

    pc_insert(p);
    pc_page_t *q = pc_lookup("shopd:cat:42:products.list?");
    assert_ptr_equal(q, p);
    /* No subscription: current while confirmed within page_stale_ms, and only under
     * the table's version. */
    assert_true(pc_page_current(q));
    pc_version_bumped(42, 4);
    assert_false(pc_page_current(q));
    pc_page_unref(q);
    assert_null(pc_lookup("shopd:cat:42:other?"));
    /* A small page has no gzip copy. */
    pc_page_t *s = pc_page_new(42, 4, "k-small", "\"0000000000000001\"", "{}", 2);
    assert_false(pc_page_has_gzip(s));
    assert_string_equal(pc_page_etag(s, true), "\"0000000000000001\"");
    pc_page_unref(s);
    pc_page_unref(p);
}

static void
test_replace_and_evict(void **state)
{
    (void)state;
    char key[64], body[20000];
    /* Letters in a scrambled order: gzip shrinks them less than a repeated pattern. */
    for (size_t i = 0; i < sizeof(body); i++)
        body[i] = (char)('a' + (i * 2654435761u >> 7) % 26);
    /* Replacing a key drops the old page from the cache; a holder keeps it alive. */
    pc_page_t *a = pc_page_new(9, 1, "shopd:cat:9:x", "\"0000000000000009\"", body, 100);
    pc_insert(a);
    pc_page_t *held = pc_lookup("shopd:cat:9:x");
    pc_page_t *b = pc_page_new(9, 2, "shopd:cat:9:x", "\"000000000000000a\"", body, 200);
    pc_insert(b);
    pc_page_t *now = pc_lookup("shopd:cat:9:x");
    assert_ptr_equal(now, b);
    assert_int_equal(pc_page_version(held), 1); /* still readable */
    size_t len;
    pc_page_body(held, false, &len);
    assert_int_equal(len, 100);
    pc_page_unref(held);
    pc_page_unref(now);
    pc_page_unref(a);
    pc_page_unref(b);

    /* 200 pages of 20 KB (4 MB) into a 1 MiB cache: it evicts, stays within budget,
     * and what a reader holds survives its eviction. */
    pc_page_t *first =
        pc_page_new(10, 1, "shopd:cat:10:0", "\"0000000000000010\"", body, sizeof(body));
    pc_insert(first);
    pc_page_t *kept = pc_lookup("shopd:cat:10:0");
    assert_non_null(kept);
    for (int i = 1; i < 200; i++) {
        snprintf(key, sizeof(key), "shopd:cat:10:%d", i);
        pc_page_t *p = pc_page_new(10, 1, key, "\"0000000000000010\"", body, sizeof(body));
        pc_insert(p);
        pc_page_unref(p);
    }
    char m[4096];
    catalog_pages_metrics(m, sizeof(m));
    const char *ev = strstr(m, "\nshopd_page_cache_evictions_total ");
    const char *by = strstr(m, "\nshopd_page_cache_bytes ");
    assert_non_null(ev);
    assert_non_null(by);
    assert_true(atol(ev + strlen("\nshopd_page_cache_evictions_total ")) > 100);
    assert_true(atol(by + strlen("\nshopd_page_cache_bytes ")) <= 1024 * 1024);
    int found = 0;
    for (int i = 0; i < 200; i++) {
        snprintf(key, sizeof(key), "shopd:cat:10:%d", i);
        pc_page_t *p = pc_lookup(key);
        found += p != NULL;
        pc_page_unref(p);
    }
    assert_true(found > 10 && found < 60); /* about 1 MiB of 20 KB pages */
    pc_page_body(kept, false, &len);
    assert_int_equal(len, sizeof(body));
    pc_page_unref(kept);
    pc_page_unref(first);
}

/* Readers and writers at once (run under TSan by scripts/test.sh): lookups, inserts
 * that replace and evict, bumps, and references dropped on other threads. */
static void *
churn(void *arg)
{
    int id = (int)(intptr_t)arg;
    char key[64], body[3000];
    memset(body, 'a' + id, sizeof(body));
    for (int i = 0; i < 4000; i++) {
        snprintf(key, sizeof(key), "shopd:cat:%d:p%d", 500 + i % 7, i % 50);
        pc_page_t *p = pc_lookup(key);
        if (p) {
            size_t len;
            const char *b = pc_page_body(p, (i & 1) != 0, &len);
            assert_true(len > 0 && b != NULL);
            (void)pc_page_current(p);
            pc_page_unref(p);
        } else {
            uint64_t v = 0;
            (void)pc_version((uint64_t)(500 + i % 7), &v);
            p = pc_page_new((uint64_t)(500 + i % 7), v, key, "\"0000000000000abc\"", body,
                            sizeof(body) - (size_t)(i % 100));
            pc_insert(p);
            pc_page_unref(p);
        }
        if (i % 97 == 0)
            pc_version_bumped((uint64_t)(500 + i % 7), (uint64_t)i);
        if (i % 131 == 0)
            pc_version_learn((uint64_t)(500 + i % 7), (uint64_t)i, pc_epoch());
    }
    return NULL;
}

static void
test_concurrent(void **state)
{
    (void)state;
    pthread_t t[4];
    for (intptr_t i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&t[i], NULL, churn, (void *)i), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_versions),
        cmocka_unit_test(test_page_gzip_and_current),
        cmocka_unit_test(test_replace_and_evict),
        cmocka_unit_test(test_concurrent),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
