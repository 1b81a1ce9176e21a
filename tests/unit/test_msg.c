/* Envelope: round trip, zero-copy strings, and rejection of malformed input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <msgpack.h>

#include "shopd/msg.h"

static void
test_round_trip(void **state)
{
    msg_env_t in;
    memset(&in, 0, sizeof(in));
    in.type = msg_str("stores.get");
    in.request_id = msg_str("rid-123");
    in.store_id = 9007199254740993ull;
    in.caller.user_id = 5;
    in.caller.store_id = 9;
    in.caller.role = MSG_ROLE_STORE_ADMIN;
    in.param_names[0] = msg_str("id");
    in.param_values[0] = msg_str("42");
    in.nparams = 1;
    in.query = msg_str("limit=10&cursor=5");
    static const char body[] = "{\"name\":\"x\\u0000y\"}";
    in.body.p = body;
    in.body.n = sizeof(body) - 1;
    in.ip = msg_str("203.0.113.7");
    in.caller.ver = 3;
    in.kind = MSG_KIND_TIMER;
    in.tenant = msg_str("slug:acme");
    in.inm = msg_str("\"00ff\"");

    size_t len;
    char *buf = msg_encode(&in, &len);
    msg_env_t out;
    assert_int_equal(msg_decode(buf, len, &out), SHOPD_OK);
    assert_int_equal(out.type.n, 10);
    assert_memory_equal(out.type.p, "stores.get", 10);
    assert_memory_equal(out.request_id.p, "rid-123", 7);
    assert_true(out.store_id == 9007199254740993ull);
    assert_int_equal(out.caller.user_id, 5);
    assert_int_equal(out.caller.store_id, 9);
    assert_int_equal(out.caller.role, MSG_ROLE_STORE_ADMIN);
    assert_int_equal(out.caller.ver, 3);
    assert_int_equal(out.kind, MSG_KIND_TIMER);
    assert_int_equal(out.tenant.n, 9);
    assert_memory_equal(out.tenant.p, "slug:acme", 9);
    assert_int_equal(out.inm.n, 6);
    assert_memory_equal(out.inm.p, "\"00ff\"", 6);
    assert_int_equal(out.nparams, 1); /* typed fields, not fake path parameters */
    size_t n;
    const char *id = msg_param(&out, "id", &n);
    assert_non_null(id);
    assert_int_equal(n, 2);
    assert_memory_equal(id, "42", 2);
    assert_null(msg_param(&out, "nope", &n));
    assert_int_equal(out.query.n, strlen("limit=10&cursor=5"));
    assert_int_equal(out.body.n, sizeof(body) - 1);
    assert_memory_equal(out.body.p, body, sizeof(body) - 1);
    assert_int_equal(out.ip.n, strlen("203.0.113.7"));
    assert_memory_equal(out.ip.p, "203.0.113.7", out.ip.n);
    /* Strings point into the buffer (no copies to free). */
    assert_true(out.type.p >= buf && out.type.p < buf + len);
    free(buf);
}

static void
test_no_body(void **state)
{
    msg_env_t in, out;
    memset(&in, 0, sizeof(in));
    in.type = msg_str("healthz");
    size_t len;
    char *buf = msg_encode(&in, &len);
    assert_int_equal(msg_decode(buf, len, &out), SHOPD_OK);
    assert_int_equal(out.body.n, 0);
    assert_int_equal(out.nparams, 0);
    assert_int_equal(out.ip.n, 0); /* absent when unknown */
    free(buf);
}

static void
test_malformed(void **state)
{
    msg_env_t out;
    assert_int_equal(msg_decode("", 0, &out), SHOPD_INVALID);
    assert_int_equal(msg_decode("\x93\x01\x02\x03", 4, &out), SHOPD_INVALID); /* array */
    assert_int_equal(msg_decode("\x81\xa1t", 3, &out), SHOPD_INVALID);        /* truncated */

    /* A map without "t". */
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 1);
    msgpack_pack_str(&pk, 3);
    msgpack_pack_str_body(&pk, "rid", 3);
    msgpack_pack_str(&pk, 1);
    msgpack_pack_str_body(&pk, "x", 1);
    assert_int_equal(msg_decode(sb.data, sb.size, &out), SHOPD_INVALID);
    msgpack_sbuffer_clear(&sb);
    /* "sid" with the wrong type. */
    msgpack_pack_map(&pk, 2);
    msgpack_pack_str(&pk, 1);
    msgpack_pack_str_body(&pk, "t", 1);
    msgpack_pack_str(&pk, 1);
    msgpack_pack_str_body(&pk, "x", 1);
    msgpack_pack_str(&pk, 3);
    msgpack_pack_str_body(&pk, "sid", 3);
    msgpack_pack_str(&pk, 1);
    msgpack_pack_str_body(&pk, "1", 1);
    assert_int_equal(msg_decode(sb.data, sb.size, &out), SHOPD_INVALID);
    msgpack_sbuffer_clear(&sb);
    /* Trailing bytes after the map. */
    msgpack_pack_map(&pk, 1);
    msgpack_pack_str(&pk, 1);
    msgpack_pack_str_body(&pk, "t", 1);
    msgpack_pack_str(&pk, 1);
    msgpack_pack_str_body(&pk, "x", 1);
    msgpack_pack_nil(&pk);
    assert_int_equal(msg_decode(sb.data, sb.size, &out), SHOPD_INVALID);
    msgpack_sbuffer_destroy(&sb);
}

static void
test_huge_containers(void **state)
{
    msg_env_t out;
    /* Found by fuzz_msg: a map32 header claiming 2^32-1 entries made msgpack-c try to
     * allocate ~128 GiB before reading anything. Refused now, cheaply. */
    const char map32[] = "\xdf\xff\xff\xff\xff";
    assert_int_equal(msg_decode(map32, 5, &out), SHOPD_INVALID);
    const char arr32[] = "\x81\xa1t\xdd\x7f\xff\xff\xff";
    assert_int_equal(msg_decode(arr32, 8, &out), SHOPD_INVALID);
    /* A str32 longer than the buffer. */
    const char str32[] = "\x81\xa1t\xdb\x00\x10\x00\x00ab";
    assert_int_equal(msg_decode(str32, 10, &out), SHOPD_INVALID);
    /* 0xc1 is never valid. */
    assert_int_equal(msg_decode("\xc1", 1, &out), SHOPD_INVALID);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_no_body),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_huge_containers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
