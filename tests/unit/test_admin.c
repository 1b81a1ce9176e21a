/*
 * The admin protocol's codec (src/net/admin_codec.c) and shopctl's command line
 * (tools/shopctl/cli.c): frame cutting and its limits, msgpack <-> JSON both
 * ways and the inputs refused, request reading, argument parsing, suggestions
 * and the table printer.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <msgpack.h>

#include "cli.h"
#include "shopd/admin.h"
#include "shopd/common.h"

static void
test_frame_check(void **state)
{
    unsigned char b[8] = {0, 0, 0, 3, 0x80, 0, 0, 0};
    size_t n = 99;
    assert_int_equal(admin_frame_check(b, 3, 100, &n), ADMIN_FRAME_MORE);
    assert_int_equal(admin_frame_check(b, 4, 100, &n), ADMIN_FRAME_MORE);
    assert_int_equal(n, 3);
    assert_int_equal(admin_frame_check(b, 6, 100, &n), ADMIN_FRAME_MORE);
    assert_int_equal(admin_frame_check(b, 7, 100, &n), ADMIN_FRAME_OK);
    assert_int_equal(admin_frame_check(b, 8, 100, &n), ADMIN_FRAME_OK);
    /* Beyond the maximum, and an empty frame: refused from the header alone. */
    assert_int_equal(admin_frame_check(b, 4, 2, &n), ADMIN_FRAME_TOO_BIG);
    admin_frame_header(0x01020304, b);
    assert_memory_equal(b, "\x01\x02\x03\x04", 4);
    assert_int_equal(admin_frame_check(b, 4, 1u << 20, &n), ADMIN_FRAME_TOO_BIG);
    assert_int_equal(n, 0x01020304);
    admin_frame_header(0, b);
    assert_int_equal(admin_frame_check(b, 4, 100, &n), ADMIN_FRAME_TOO_BIG);
}

static void
test_round_trip(void **state)
{
    json_t *v =
        json_pack("{s:i,s:s,s:{s:I,s:I,s:f,s:b,s:n,s:[s,i,{}]},s:s%}", "id", 7, "op", "stores.list",
                  "args", "big", (json_int_t)INT64_MAX, "neg", (json_int_t)-1234567890123LL, "real",
                  2.5, "t", 1, "nil", "list", "a", -5, "nul", "a\0b", (size_t)3);
    size_t len, n;
    unsigned char *f = admin_encode_frame(v, &len);
    assert_int_equal(admin_frame_check(f, len, len, &n), ADMIN_FRAME_OK);
    assert_int_equal(n + ADMIN_HEADER, len);
    char err[128];
    json_t *back = admin_decode(f + ADMIN_HEADER, n, err, sizeof(err));
    assert_non_null(back);
    assert_true(json_equal(v, back));
    json_decref(back);
    shopd_free(f);
    json_decref(v);
}

/* Frames written by msgpack-c itself (the encodings another client would use). */
static void
test_decode_msgpack_c(void **state)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 4);
    msgpack_pack_str_with_body(&pk, "u8", 2);
    msgpack_pack_uint8(&pk, 200);
    msgpack_pack_str_with_body(&pk, "i16", 3);
    msgpack_pack_int16(&pk, -300);
    msgpack_pack_str_with_body(&pk, "f32", 3);
    msgpack_pack_float(&pk, 0.5f);
    msgpack_pack_str_with_body(&pk, "bin", 3);
    msgpack_pack_bin_with_body(&pk, "txt", 3);
    char err[128];
    json_t *v = admin_decode(sb.data, sb.size, err, sizeof(err));
    assert_non_null(v);
    assert_int_equal(json_integer_value(json_object_get(v, "u8")), 200);
    assert_int_equal(json_integer_value(json_object_get(v, "i16")), -300);
    assert_true(json_real_value(json_object_get(v, "f32")) == 0.5);
    assert_string_equal(json_string_value(json_object_get(v, "bin")), "txt");
    json_decref(v);
    msgpack_sbuffer_destroy(&sb);
}

static void
refused(const char *bytes, size_t n, const char *why)
{
    char err[128];
    json_t *v = admin_decode(bytes, n, err, sizeof(err));
    if (v != NULL)
        fail_msg("decoded %s", why);
    assert_true(err[0] != '\0');
}

static void
test_decode_refuses(void **state)
{
    refused("\x90", 1, "an array at the top");
    refused("\xa1x", 2, "a string at the top");
    refused("", 0, "nothing");
    refused("\x81\xa1x", 3, "a map missing its value");
    refused("\x81\x01\x02", 3, "an integer key");
    refused("\x82\xa1x\x01\xa1x\x02", 7, "a repeated key");
    refused("\x81\xa1x\xc1", 4, "the reserved byte");
    refused("\x81\xa1x\xd4\x01\x02", 6, "an extension type");
    refused("\x81\xa1x\xcf\xff\xff\xff\xff\xff\xff\xff\xff", 12, "an integer beyond int64");
    refused("\x81\xa1x\xa2\xff\xfe", 6, "a string that is not UTF-8");
    refused("\x81\xa1x\xc4\x02\xff\xfe", 7, "binary that is not UTF-8");
    refused("\x80\x80", 2, "bytes after the map");
    refused("\x81\xa1x\xcb\x7f\xf8\0\0\0\0\0\0", 12, "NaN");
    /* A count far beyond the bytes there: refused before any allocation. */
    refused("\x81\xa1x\xdd\xff\xff\xff\xff", 8, "an array of 2^32 elements");
    refused("\xdf\xff\xff\xff\xff", 5, "a map of 2^32 pairs");
    /* Deeper than 32 levels. */
    char deep[80];
    deep[0] = (char)0x81;
    deep[1] = (char)0xa1;
    deep[2] = 'x';
    size_t n = 3;
    for (int i = 0; i < 40; i++)
        deep[n++] = (char)0x91;
    deep[n++] = 0x01;
    refused(deep, n, "40 nested arrays");
}

static void
test_req_read(void **state)
{
    char err[128];
    admin_req_t rq;
    json_t *f = json_pack("{s:s,s:s,s:{s:i}}", "id", "x", "op", "stores.get", "args", "id", 4);
    assert_int_equal(admin_req_read(f, &rq, err, sizeof(err)), 0);
    assert_string_equal(rq.op, "stores.get");
    assert_string_equal(json_string_value(rq.id), "x");
    assert_int_equal(json_integer_value(json_object_get(rq.args, "id")), 4);
    admin_req_clear(&rq);
    json_decref(f);

    f = json_pack("{s:s}", "op", "ping");
    assert_int_equal(admin_req_read(f, &rq, err, sizeof(err)), 0);
    assert_true(json_is_null(rq.id));
    assert_int_equal(json_object_size(rq.args), 0);
    admin_req_clear(&rq);
    json_decref(f);

    f = json_pack("{s:i}", "op", 3);
    assert_int_equal(admin_req_read(f, &rq, err, sizeof(err)), -1);
    admin_req_clear(&rq);
    json_decref(f);
    f = json_pack("{s:s,s:[]}", "op", "x", "args");
    assert_int_equal(admin_req_read(f, &rq, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "args"));
    admin_req_clear(&rq);
    json_decref(f);

    json_t *id = json_integer(3);
    json_t *e = admin_err(id, "store_not_found", "no such store", NULL);
    json_decref(id); /* borrowed: the answer holds its own reference */
    assert_false(json_is_true(json_object_get(e, "ok")));
    assert_string_equal(json_string_value(json_object_get(json_object_get(e, "error"), "code")),
                        "store_not_found");
    assert_true(json_is_array(json_object_get(json_object_get(e, "error"), "details")));
    json_decref(e);
}

/* ------------------------------------------------------------ shopctl */

static int
parse(shopctl_opts_t *o, char *err, const char *first, ...)
{
    char *argv[32] = {"shopctl"};
    int argc = 1;
    va_list ap;
    va_start(ap, first);
    for (const char *a = first; a && argc < 31; a = va_arg(ap, const char *))
        argv[argc++] = (char *)a;
    va_end(ap);
    return shopctl_parse(argc, argv, NULL, "envtok", o, err, 256);
}

static void
test_cli_parse(void **state)
{
    shopctl_opts_t o;
    char err[256];
    assert_int_equal(parse(&o, err, "stores", NULL), 0);
    assert_string_equal(o.op, "stores.list");
    assert_string_equal(o.token, "envtok");
    assert_int_equal(o.port, 8081);
    json_decref(o.args);

    assert_int_equal(parse(&o, err, "--addr", "tcp://10.0.0.2:9000", "--token=abc", "--json",
                           "store", "create", "slug=acme", "name=Acme Ltd", "admin:={\"x\":1}",
                           NULL),
                     0);
    assert_string_equal(o.host, "10.0.0.2");
    assert_int_equal(o.port, 9000);
    assert_string_equal(o.token, "abc");
    assert_true(o.json);
    assert_string_equal(o.op, "stores.create");
    assert_string_equal(json_string_value(json_object_get(o.args, "name")), "Acme Ltd");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(o.args, "admin"), "x")), 1);
    json_decref(o.args);

    /* Positional arguments of a verb, then k=v. */
    assert_int_equal(parse(&o, err, "store", "suspend", "acme", NULL), 0);
    assert_string_equal(o.op, "stores.suspend");
    assert_string_equal(json_string_value(json_object_get(o.args, "id")), "acme");
    json_decref(o.args);
    assert_int_equal(parse(&o, err, "users", "acme", "role=CUSTOMER", NULL), 0);
    assert_string_equal(json_string_value(json_object_get(o.args, "store")), "acme");
    json_decref(o.args);

    /* Any operation by name; k:=json is typed. */
    assert_int_equal(parse(&o, err, "inventory.adjust", "store=7", "id=3", "delta:=-2", NULL), 0);
    assert_string_equal(o.op, "inventory.adjust");
    assert_int_equal(json_integer_value(json_object_get(o.args, "delta")), -2);
    assert_true(json_is_string(json_object_get(o.args, "store")));
    json_decref(o.args);

    /* Usage errors. */
    assert_int_equal(parse(&o, err, "store", "get", NULL), SHOPCTL_USAGE);
    assert_non_null(strstr(err, "usage: shopctl store get"));
    assert_int_equal(parse(&o, err, "storez", NULL), SHOPCTL_USAGE);
    assert_non_null(strstr(err, "did you mean 'stores'"));
    assert_int_equal(parse(&o, err, "--addr", "nohost", "ping", NULL), SHOPCTL_USAGE);
    assert_int_equal(parse(&o, err, "--json=1", "ping", NULL), SHOPCTL_USAGE);
    assert_int_equal(parse(&o, err, "--timeout", "0", "ping", NULL), SHOPCTL_USAGE);
    assert_int_equal(parse(&o, err, "--wat", NULL), SHOPCTL_USAGE);
    assert_int_equal(parse(&o, err, "ping", "novalue", NULL), SHOPCTL_USAGE);
    assert_int_equal(parse(&o, err, "ping", "x:={bad", NULL), SHOPCTL_USAGE);
    assert_non_null(strstr(err, "not JSON"));

    /* help */
    assert_int_equal(parse(&o, err, "help", "store", "create", NULL), 0);
    assert_true(o.help);
    assert_string_equal(o.topic, "store create");
    assert_int_equal(parse(&o, err, NULL), 0);
    assert_true(o.help);
    assert_null(o.topic);
}

static void
test_cli_nearest(void **state)
{
    static const char *const names[] = {"stores.list", "stores.get", "products.list", "ping"};
    assert_string_equal(shopctl_nearest("stores.lst", names, 4), "stores.list");
    assert_string_equal(shopctl_nearest("pnig", names, 4), "ping");
    assert_string_equal(shopctl_nearest("product.list", names, 4), "products.list");
    assert_null(shopctl_nearest("completely-else", names, 4));
}

static void
test_cli_print(void **state)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    json_t *v = json_pack("{s:[{s:i,s:s},{s:i,s:s,s:n}],s:i}", "data", "id", 1, "slug", "a", "id",
                          22, "slug", "bbbb", "domain", "total", 2);
    shopctl_print(f, v);
    fclose(f);
    assert_string_equal(buf, "ID  SLUG  DOMAIN\n"
                             "1   a     -\n"
                             "22  bbbb  -\n"
                             "\n"
                             "total  2\n");
    free(buf);
    json_decref(v);
}

static void
test_cli_csv(void **state)
{
    char line[] = "plain,\"with, comma\",\"say \"\"hi\"\"\",,12\r\n";
    char *f[8];
    assert_int_equal(shopctl_csv_split(line, f, 8), 5);
    assert_string_equal(f[0], "plain");
    assert_string_equal(f[1], "with, comma");
    assert_string_equal(f[2], "say \"hi\"");
    assert_string_equal(f[3], "");
    assert_string_equal(f[4], "12");
    char open_quote[] = "a,\"never closed";
    assert_int_equal(shopctl_csv_split(open_quote, f, 8), -1);

    char *header[] = {"name", "base_price:=", "brand"};
    char *cells[] = {"Mug", "1200", ""};
    char err[128];
    json_t *row = shopctl_csv_row(header, cells, 3, err, sizeof(err));
    assert_non_null(row);
    assert_string_equal(json_string_value(json_object_get(row, "name")), "Mug");
    assert_int_equal(json_integer_value(json_object_get(row, "base_price")), 1200);
    assert_null(json_object_get(row, "brand")); /* empty: left out */
    json_decref(row);
    char *bad[] = {"Mug", "twelve", ""};
    assert_null(shopctl_csv_row(header, bad, 3, err, sizeof(err)));
    assert_non_null(strstr(err, "base_price"));

    shopctl_opts_t o;
    assert_int_equal(parse(&o, err, "import", "products", "--store", "acme", "p.csv", NULL), 0);
    assert_string_equal(o.import_file, "p.csv");
    assert_string_equal(o.op, "import.products");
    assert_string_equal(json_string_value(json_object_get(o.args, "store")), "acme");
    json_decref(o.args);
    assert_int_equal(parse(&o, err, "import", "products", "p.csv", NULL), SHOPCTL_USAGE);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_frame_check),      cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_decode_msgpack_c), cmocka_unit_test(test_decode_refuses),
        cmocka_unit_test(test_req_read),         cmocka_unit_test(test_cli_parse),
        cmocka_unit_test(test_cli_nearest),      cmocka_unit_test(test_cli_print),
        cmocka_unit_test(test_cli_csv),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
