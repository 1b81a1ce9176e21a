/*
 * test_seal.c: secrets sealed at rest (src/core/seal.c): a round trip, the
 * format's bounds, every changed byte refused, another context or another key
 * refused, rotation (the old key opens, stale values are named), bad keys
 * refused at start, hostile input to seal_open, and the key file of the
 * embedded default.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "shopd/seal.h"

/* Two keys (base64 of 32 bytes), made with openssl rand -base64 32. */
#define KEY_A "q1Jx0S3E2g6zvC9m1Xn4a0p8Vb7uYt5rWc2dEf6gHi8="
#define KEY_B "Zm9vYmFyYmF6cXV4cXV1eGNvcmdlZ3JhdWx0Z2FycGw="
#define AAD "stripe_accounts.secret_key:42"
#define SECRET "sk_test_51HfakeFakeFakeFake0123456789abcdef"

static seal_keys_t *
ring(const char *cur, const char *old)
{
    char err[256] = "";
    seal_keys_t *k = seal_keys_new(cur, old, err, sizeof(err));
    assert_non_null(k);
    return k;
}

static void
test_round_trip(void **state)
{
    (void)state;
    seal_keys_t *k = ring(KEY_A, NULL);
    char *s1 = seal_seal(k, SECRET, AAD), *s2 = seal_seal(k, SECRET, AAD);
    assert_non_null(s1);
    assert_non_null(s2);
    /* The form: seal1.<kid>.<base64url>, and never the secret itself. */
    assert_true(seal_is_sealed(s1));
    assert_memory_equal(s1 + 6, seal_keys_kid(k), 8);
    assert_int_equal(s1[14], '.');
    assert_null(strstr(s1, "sk_test"));
    /* A random nonce per seal: the same secret seals differently each time. */
    assert_string_not_equal(s1, s2);
    char out[SEAL_MAX_PLAIN + 1];
    assert_int_equal(seal_open(k, s1, AAD, out, sizeof(out)), SHOPD_OK);
    assert_string_equal(out, SECRET);
    assert_int_equal(seal_open(k, s2, AAD, out, sizeof(out)), SHOPD_OK);
    assert_string_equal(out, SECRET);
    assert_false(seal_stale(k, s1));
    assert_true(seal_known(k, s1));
    /* Too small an output buffer: refused, not truncated. */
    char small[8] = "x";
    assert_int_equal(seal_open(k, s1, AAD, small, sizeof(small)), SHOPD_INVALID);
    assert_string_equal(small, "");
    shopd_free(s1);
    shopd_free(s2);

    /* The bounds: 0 and SEAL_MAX_PLAIN bytes seal; the longest fits SEAL_MAX_TEXT. */
    char big[SEAL_MAX_PLAIN + 2];
    memset(big, 'x', sizeof(big));
    big[SEAL_MAX_PLAIN] = '\0';
    char *s = seal_seal(k, big, AAD);
    assert_non_null(s);
    assert_int_equal(strlen(s), SEAL_MAX_TEXT);
    assert_int_equal(seal_open(k, s, AAD, out, sizeof(out)), SHOPD_OK);
    assert_string_equal(out, big);
    shopd_free(s);
    big[SEAL_MAX_PLAIN] = 'x';
    big[SEAL_MAX_PLAIN + 1] = '\0';
    assert_null(seal_seal(k, big, AAD));
    s = seal_seal(k, "", AAD);
    assert_non_null(s);
    assert_int_equal(seal_open(k, s, AAD, out, sizeof(out)), SHOPD_OK);
    assert_string_equal(out, "");
    shopd_free(s);
    seal_keys_free(k);
}

/* Every single changed character, every truncation: refused. */
static void
test_tamper(void **state)
{
    (void)state;
    seal_keys_t *k = ring(KEY_A, NULL);
    char *s = seal_seal(k, SECRET, AAD);
    size_t n = strlen(s);
    char out[SEAL_MAX_PLAIN + 1];
    static const char alpha[] = "Aa0-_+/=.";
    for (size_t i = 0; i < n; i++) {
        for (const char *a = alpha; *a; a++) {
            if (s[i] == *a)
                continue;
            char *t = shopd_strdup(s);
            t[i] = *a;
            strcpy(out, "junk");
            /* '+' for '-' and '/' for '_' decode alike: the same bytes, so it opens. */
            bool same = (s[i] == '-' && *a == '+') || (s[i] == '_' && *a == '/');
            assert_int_equal(seal_open(k, t, AAD, out, sizeof(out)),
                             same ? SHOPD_OK : SHOPD_INVALID);
            if (!same)
                assert_string_equal(out, "");
            shopd_free(t);
        }
    }
    for (size_t len = 0; len < n; len++) {
        char *t = shopd_strndup(s, len);
        assert_int_equal(seal_open(k, t, AAD, out, sizeof(out)), SHOPD_INVALID);
        shopd_free(t);
    }
    /* Another context (a column or a store): refused. */
    assert_int_equal(seal_open(k, s, "stripe_accounts.secret_key:43", out, sizeof(out)),
                     SHOPD_INVALID);
    assert_int_equal(seal_open(k, s, "stripe_accounts.webhook_secrets:42", out, sizeof(out)),
                     SHOPD_INVALID);
    shopd_free(s);
    seal_keys_free(k);
}

static void
test_wrong_key(void **state)
{
    (void)state;
    seal_keys_t *a = ring(KEY_A, NULL), *b = ring(KEY_B, NULL);
    assert_string_not_equal(seal_keys_kid(a), seal_keys_kid(b));
    char *s = seal_seal(a, SECRET, AAD);
    char out[SEAL_MAX_PLAIN + 1];
    assert_int_equal(seal_open(b, s, AAD, out, sizeof(out)), SHOPD_INVALID);
    assert_false(seal_known(b, s));
    assert_true(seal_stale(b, s));
    /* B's id written over A's: B's key tries and GCM refuses. */
    memcpy(s + 6, seal_keys_kid(b), 8);
    assert_true(seal_known(b, s));
    assert_int_equal(seal_open(b, s, AAD, out, sizeof(out)), SHOPD_INVALID);
    assert_int_equal(seal_open(a, s, AAD, out, sizeof(out)), SHOPD_INVALID);
    shopd_free(s);
    seal_keys_free(a);
    seal_keys_free(b);
}

static void
test_rotation(void **state)
{
    (void)state;
    seal_keys_t *a = ring(KEY_A, NULL);
    seal_keys_t *ba = ring(KEY_B, KEY_A); /* B new, A old */
    char *old = seal_seal(a, SECRET, AAD);
    char out[SEAL_MAX_PLAIN + 1];
    assert_int_equal(seal_open(ba, old, AAD, out, sizeof(out)), SHOPD_OK);
    assert_string_equal(out, SECRET);
    assert_true(seal_known(ba, old));
    assert_true(seal_stale(ba, old)); /* to seal again under B */
    char *fresh = seal_seal(ba, out, AAD);
    assert_memory_equal(fresh + 6, seal_keys_kid(ba), 8);
    assert_false(seal_stale(ba, fresh));
    /* After the rotation A alone no longer opens what B sealed. */
    assert_int_equal(seal_open(a, fresh, AAD, out, sizeof(out)), SHOPD_INVALID);
    /* Plain text from before sealing: stale, and read as is. */
    assert_true(seal_stale(ba, SECRET));
    assert_false(seal_known(ba, SECRET));
    assert_int_equal(seal_open(ba, SECRET, AAD, out, sizeof(out)), SHOPD_INVALID);
    assert_int_equal(seal_open_or_plain(ba, SECRET, AAD, out, sizeof(out)), SHOPD_OK);
    assert_string_equal(out, SECRET);
    assert_int_equal(seal_open_or_plain(ba, old, AAD, out, sizeof(out)), SHOPD_OK);
    assert_string_equal(out, SECRET);
    shopd_free(old);
    shopd_free(fresh);
    seal_keys_free(a);
    seal_keys_free(ba);
}

static void
test_bad_keys(void **state)
{
    (void)state;
    char err[256];
    static const char *const bad[] = {
        "",
        "not base64 at all!",
        "q1Jx0S3E2g6zvC9m1Xn4a0p8Vb7uYt5rWc2dEf6gHg==",    /* 31 bytes */
        "q1Jx0S3E2g6zvC9m1Xn4a0p8Vb7uYt5rWc2dEf6gHi8xyz0", /* 35 bytes */
        "q1Jx0S3E2g6zvC9m1Xn4a0p8Vb7uYt5rWc2dEf6gHi8=\n",  /* a stray newline */
        "q1Jx0S3E2g6zvC9m1Xn4a0p8Vb7uYt5rWc2dEf6gH",       /* an impossible length */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        assert_null(seal_keys_new(bad[i], NULL, err, sizeof(err)));
        assert_non_null(strstr(err, "SHOPD_SECRETS_KEY"));
        assert_null(seal_keys_new(KEY_A, bad[i][0] ? bad[i] : "x", err, sizeof(err)));
    }
    assert_null(seal_keys_new(KEY_A, KEY_A, err, sizeof(err)));
    assert_non_null(strstr(err, "same key"));
    assert_null(seal_keys_new(NULL, NULL, err, sizeof(err)));
    /* The URL alphabet and no padding: the same key as the standard form. */
    seal_keys_t *std = ring(KEY_A, NULL);
    seal_keys_t *url = ring("q1Jx0S3E2g6zvC9m1Xn4a0p8Vb7uYt5rWc2dEf6gHi8", NULL);
    assert_string_equal(seal_keys_kid(std), seal_keys_kid(url));
    seal_keys_free(std);
    seal_keys_free(url);
    seal_keys_free(NULL);
}

/* Hostile text: nothing opens, nothing crashes, out is always "". */
static void
test_hostile(void **state)
{
    (void)state;
    seal_keys_t *k = ring(KEY_A, NULL);
    char kid[9];
    snprintf(kid, sizeof(kid), "%s", seal_keys_kid(k));
    char buf[1200];
    const char *fixed[] = {"",
                           "seal1",
                           "seal1.",
                           "seal1.00000000",
                           "seal1.00000000.",
                           "seal1.zzzzzzzz.AAAA",
                           "seal1..........",
                           "SEAL1.00000000.AAAA"};
    char out[SEAL_MAX_PLAIN + 1];
    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
        assert_int_equal(seal_open(k, fixed[i], AAD, out, sizeof(out)), SHOPD_INVALID);
    /* The right id with bodies of every length 0..1000: short, odd, too long. */
    for (size_t len = 0; len <= 1000; len += 1) {
        int n = snprintf(buf, sizeof(buf), "seal1.%s.", kid);
        memset(buf + n, len % 2 ? 'A' : '_', len);
        buf[n + len] = '\0';
        strcpy(out, "junk");
        assert_int_equal(seal_open(k, buf, AAD, out, sizeof(out)), SHOPD_INVALID);
        assert_string_equal(out, "");
    }
    /* Characters outside the alphabet, a NUL-free high byte. */
    snprintf(buf, sizeof(buf), "seal1.%s.%s", kid, "AAAA\xff\xfe===AAAA");
    assert_int_equal(seal_open(k, buf, AAD, out, sizeof(out)), SHOPD_INVALID);
    assert_int_equal(seal_open(NULL, buf, AAD, out, sizeof(out)), SHOPD_INVALID);
    assert_int_equal(seal_open(k, buf, AAD, out, 0), SHOPD_INVALID);
    seal_keys_free(k);
}

static void
test_key_file(void **state)
{
    (void)state;
    char dir[] = "/tmp/seal-test-XXXXXX", path[64], key1[128], key2[128], err[256];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/secrets.key", dir);
    assert_int_equal(seal_key_file(path, key1, sizeof(key1), err, sizeof(err)), 0);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    /* Kept: the second start reads the same key. */
    assert_int_equal(seal_key_file(path, key2, sizeof(key2), err, sizeof(err)), 0);
    assert_string_equal(key1, key2);
    seal_keys_t *k = seal_keys_new(key1, NULL, err, sizeof(err));
    assert_non_null(k);
    seal_keys_free(k);
    /* A file with no key in it: refused when the ring is made. */
    FILE *f = fopen(path, "w");
    fputs("short\n", f);
    fclose(f);
    assert_int_equal(seal_key_file(path, key2, sizeof(key2), err, sizeof(err)), 0);
    assert_null(seal_keys_new(key2, NULL, err, sizeof(err)));
    unlink(path);
    char missing[80];
    snprintf(missing, sizeof(missing), "%s/no/such/dir/key", dir);
    assert_int_equal(seal_key_file(missing, key2, sizeof(key2), err, sizeof(err)), -1);
    rmdir(dir);
}

/* What another implementation of the format made (Python's cryptography,
 * tests/unit/seal_vector.py) opens here, and only under its context. */
static void
test_interop(void **state)
{
    (void)state;
    char cmd[512], line[512] = "";
    snprintf(cmd, sizeof(cmd), "python3 %s/tests/unit/seal_vector.py '%s' '%s' '%s'",
             SHOPD_SOURCE_DIR, KEY_B, AAD, SECRET);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    bool got = fgets(line, sizeof(line), p) != NULL;
    int rc = pclose(p);
    if (WEXITSTATUS(rc) == 3)
        skip(); /* no python3-cryptography here */
    assert_true(got);
    line[strcspn(line, "\n")] = '\0';
    seal_keys_t *k = ring(KEY_B, KEY_A);
    char out[SEAL_MAX_PLAIN + 1];
    assert_int_equal(seal_open(k, line, AAD, out, sizeof(out)), SHOPD_OK);
    assert_string_equal(out, SECRET);
    assert_int_equal(seal_open(k, line, "other", out, sizeof(out)), SHOPD_INVALID);
    seal_keys_free(k);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip), cmocka_unit_test(test_tamper),
        cmocka_unit_test(test_wrong_key),  cmocka_unit_test(test_rotation),
        cmocka_unit_test(test_bad_keys),   cmocka_unit_test(test_hostile),
        cmocka_unit_test(test_key_file),   cmocka_unit_test(test_interop),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
