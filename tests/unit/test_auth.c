/*
 * Auth's pure pieces: JWT sign/verify round trip, key rotation (kid), and
 * rejection of tampered, foreign-key and malformed tokens; password rules,
 * argon2id hash/verify; e-mail validation; role names.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "shopd/auth.h"

static void
load_keys(const char *keys)
{
    cfg_t cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.jwt_keys = (char *)keys;
    char err[256];
    assert_int_equal(auth_init(&cfg, err, sizeof(err)), 0);
}

static void
test_jwt_round_trip_and_rotation(void **state)
{
    char tok[AUTH_JWT_MAX], old[AUTH_JWT_MAX];
    msg_caller_t c;
    load_keys("old:0123456789abcdef-old");
    size_t n = auth_jwt_sign(42, 7, MSG_ROLE_STORE_ADMIN, old, sizeof(old));
    assert_true(n > 0);

    /* A new key in front: new tokens use it, old ones still verify. */
    load_keys("new:0123456789abcdef-new,old:0123456789abcdef-old");
    n = auth_jwt_sign(42, 7, MSG_ROLE_STORE_ADMIN, tok, sizeof(tok));
    memset(&c, 0, sizeof(c));
    assert_int_equal(auth_jwt_verify(tok, n, &c), AUTH_JWT_OK);
    assert_int_equal(c.user_id, 42);
    assert_int_equal(c.store_id, 7);
    assert_int_equal(c.role, MSG_ROLE_STORE_ADMIN);
    assert_int_equal(auth_jwt_verify(old, strlen(old), &c), AUTH_JWT_OK);

    /* The old key retired: its tokens are refused. */
    load_keys("new:0123456789abcdef-new");
    assert_int_equal(auth_jwt_verify(old, strlen(old), &c), AUTH_JWT_BAD_KEY);
    assert_int_equal(auth_jwt_verify(tok, n, &c), AUTH_JWT_OK);

    /* Super admins carry no store. */
    n = auth_jwt_sign(1, 0, MSG_ROLE_SUPER_ADMIN, tok, sizeof(tok));
    assert_int_equal(auth_jwt_verify(tok, n, &c), AUTH_JWT_OK);
    assert_int_equal(c.store_id, 0);
    assert_int_equal(c.role, MSG_ROLE_SUPER_ADMIN);

    /* One flipped character anywhere: refused. */
    for (size_t i = 0; i < n; i += 7) {
        char bad[AUTH_JWT_MAX];
        memcpy(bad, tok, n + 1);
        if (bad[i] == '.')
            continue;
        bad[i] = bad[i] == 'A' ? 'B' : 'A';
        assert_int_not_equal(auth_jwt_verify(bad, n, &c), AUTH_JWT_OK);
    }
    assert_int_equal(auth_jwt_verify("", 0, &c), AUTH_JWT_MALFORMED);
    assert_int_equal(auth_jwt_verify("a.b", 3, &c), AUTH_JWT_MALFORMED);
    assert_int_equal(auth_jwt_verify("a.b.c", 5, &c), AUTH_JWT_MALFORMED);
    /* {"alg":"none"} . {} . */
    assert_int_equal(auth_jwt_verify("eyJhbGciOiJub25lIn0.e30.", 24, &c), AUTH_JWT_BAD_ALG);
    auth_fini();
}

static void
test_bad_key_config(void **state)
{
    cfg_t cfg;
    char err[256];
    memset(&cfg, 0, sizeof(cfg));
    const char *bad[] = {"nokid", ":secret-0123456789abc", "k1:short", "k1:0123456789abcdef,",
                         NULL};
    for (const char **b = bad; *b; b++) {
        cfg.jwt_keys = (char *)*b;
        int rc = auth_init(&cfg, err, sizeof(err));
        if (strcmp(*b, "k1:0123456789abcdef,") == 0)
            assert_int_equal(rc, 0); /* a trailing comma is harmless */
        else
            assert_int_equal(rc, -1);
    }
    cfg.jwt_keys = "";
    assert_int_equal(auth_init(&cfg, err, sizeof(err)), 0); /* random key */
    auth_fini();
}

static void
test_passwords(void **state)
{
    assert_non_null(auth_password_issue("short", NULL));
    assert_non_null(auth_password_issue("password123", NULL));
    assert_non_null(auth_password_issue("zzzzzzzzzz", NULL));
    assert_non_null(auth_password_issue("me@example.com", "ME@example.com"));
    char longpw[200];
    memset(longpw, 'a', 129);
    longpw[0] = 'b';
    longpw[129] = '\0';
    assert_non_null(auth_password_issue(longpw, NULL));
    longpw[128] = '\0';
    assert_null(auth_password_issue(longpw, NULL));
    assert_null(auth_password_issue("correct horse battery", "x@y.z"));
    /* 8 characters of UTF-8 are 16 bytes but 8 characters: accepted. */
    assert_null(auth_password_issue(
        "\xc3\xa9\xc3\xa8\xc3\xaa\xc3\xab\xc3\xa0\xc3\xa2\xc3\xae\xc3\xaf", NULL));

    char h[AUTH_HASH_MAX], h2[AUTH_HASH_MAX];
    assert_int_equal(auth_password_hash("correct horse battery", h, sizeof(h)), 0);
    assert_int_equal(strncmp(h, "$argon2id$v=19$m=19456,t=2,p=1$", 31), 0);
    assert_true(auth_password_verify(h, "correct horse battery"));
    assert_false(auth_password_verify(h, "correct horse batterY"));
    /* Salted: the same password hashes differently. */
    assert_int_equal(auth_password_hash("correct horse battery", h2, sizeof(h2)), 0);
    assert_string_not_equal(h, h2);
    assert_false(
        auth_password_verify("$argon2i$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA", "x"));
    assert_false(auth_password_verify("garbage", "x"));
    assert_false(auth_password_verify(NULL, "x"));
}

static void
test_emails_and_roles(void **state)
{
    assert_true(auth_email_valid("a@b.co"));
    assert_true(auth_email_valid("First.Last+tag@sub.example.com"));
    assert_false(auth_email_valid("no-at.example.com"));
    assert_false(auth_email_valid("a@b"));
    assert_false(auth_email_valid("a@@b.co"));
    assert_false(auth_email_valid("a b@c.co"));
    assert_false(auth_email_valid("@b.co"));
    assert_false(auth_email_valid("a@b.co."));
    assert_string_equal(auth_role_name(MSG_ROLE_CUSTOMER), "CUSTOMER");
    assert_null(auth_role_name(MSG_ROLE_PLATFORM));
    assert_int_equal(auth_role_parse("SUPER_ADMIN"), MSG_ROLE_SUPER_ADMIN);
    assert_int_equal(auth_role_parse("super_admin"), MSG_ROLE_ANONYMOUS);
    char hex[65];
    auth_sha256_hex("abc", 3, hex);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_jwt_round_trip_and_rotation),
        cmocka_unit_test(test_bad_key_config),
        cmocka_unit_test(test_passwords),
        cmocka_unit_test(test_emails_and_roles),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
