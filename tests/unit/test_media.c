/*
 * test_media.c: the media module's pure parts: the multipart/form-data parser
 * (every split of a body into two pieces, and byte by byte, gives the same
 * parts as the whole body), its boundary reading and its refusals; type
 * sniffing; header dimensions; which storage keys are valid; the sizes list.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "modules/media/media_priv.h"
#include "shopd/media.h"

/* What the callbacks saw: names, filenames and bytes of each part. */
typedef struct seen_s {
    int parts, ended;
    char name[8][256], filename[8][256], ctype[8][256];
    char data[8][512];
    size_t len[8];
    int stop_at; /* begin returns 1 at this part (0: never) */
} seen_t;

static int
cb_begin(void *ud, const media_mp_part_t *p)
{
    seen_t *s = ud;
    if (s->parts >= 8)
        return 1;
    snprintf(s->name[s->parts], 256, "%s", p->name);
    snprintf(s->filename[s->parts], 256, "%s", p->filename);
    snprintf(s->ctype[s->parts], 256, "%s", p->content_type);
    s->len[s->parts] = 0;
    s->parts++;
    return s->stop_at && s->parts == s->stop_at ? 1 : 0;
}

static int
cb_data(void *ud, const char *at, size_t n)
{
    seen_t *s = ud;
    int i = s->parts - 1;
    assert_true(i >= 0);
    assert_true(s->len[i] + n < sizeof(s->data[i]));
    memcpy(s->data[i] + s->len[i], at, n);
    s->len[i] += n;
    return 0;
}

static int
cb_end(void *ud)
{
    ((seen_t *)ud)->ended++;
    return 0;
}

/* Parses body in pieces at the cut points (ascending, ncuts of them). */
static media_mp_rc_t
parse(const char *boundary, const char *body, size_t n, const size_t *cuts, size_t ncuts, seen_t *s)
{
    memset(s->name, 0, sizeof(s->name));
    s->parts = s->ended = 0;
    media_mp_cb_t cb = {cb_begin, cb_data, cb_end, s};
    media_mp_t p;
    media_mp_init(&p, boundary, &cb);
    size_t at = 0;
    for (size_t i = 0; i <= ncuts; i++) {
        size_t end = i < ncuts ? cuts[i] : n;
        if (media_mp_feed(&p, body + at, end - at) != MEDIA_MP_OK)
            return MEDIA_MP_ERROR;
        at = end;
    }
    return media_mp_finish(&p);
}

/* Part data that holds near-delimiters: CRLF, "--", the boundary without its CRLF. */
static const char body1[] =
    "ignored preamble\r\n"
    "--XyZ\r\n"
    "Content-Disposition: form-data; name=\"alt\"\r\n"
    "\r\n"
    "a \r\n-- b\r\n--XyY \r--XyZ? end\r\n"
    "--XyZ  \r\n"
    "content-disposition: form-data; name=\"file\"; filename=\"x \\\"q\\\".png\"\r\n"
    "Content-Type: image/png\r\n"
    "\r\n"
    "\x89PNG\r\n\x1a\n\r\r\n\r\n-"
    "\r\n--XyZ--\r\n"
    "epilogue --XyZ garbage";

static void
check_body1(const seen_t *s)
{
    assert_int_equal(s->parts, 2);
    assert_int_equal(s->ended, 2);
    assert_string_equal(s->name[0], "alt");
    assert_string_equal(s->filename[0], "");
    static const char d0[] = "a \r\n-- b\r\n--XyY \r--XyZ? end";
    assert_int_equal(s->len[0], sizeof(d0) - 1);
    assert_memory_equal(s->data[0], d0, sizeof(d0) - 1);
    assert_string_equal(s->name[1], "file");
    assert_string_equal(s->filename[1], "x \"q\".png");
    assert_string_equal(s->ctype[1], "image/png");
    static const char d1[] = "\x89PNG\r\n\x1a\n\r\r\n\r\n-";
    assert_int_equal(s->len[1], sizeof(d1) - 1);
    assert_memory_equal(s->data[1], d1, sizeof(d1) - 1);
}

static void
test_mp_whole_and_every_split(void **state)
{
    (void)state;
    seen_t s = {0};
    size_t n = sizeof(body1) - 1;
    assert_int_equal(parse("XyZ", body1, n, NULL, 0, &s), MEDIA_MP_OK);
    check_body1(&s);
    /* Every cut into two pieces, and every cut into three around it. */
    for (size_t c = 0; c <= n; c++) {
        size_t cuts[2] = {c, c + 3 <= n ? c + 3 : n};
        assert_int_equal(parse("XyZ", body1, n, cuts, 1, &s), MEDIA_MP_OK);
        check_body1(&s);
        assert_int_equal(parse("XyZ", body1, n, cuts, 2, &s), MEDIA_MP_OK);
        check_body1(&s);
    }
    /* A byte at a time. */
    size_t cuts[sizeof(body1)];
    for (size_t i = 0; i < n; i++)
        cuts[i] = i + 1;
    assert_int_equal(parse("XyZ", body1, n, cuts, n - 1, &s), MEDIA_MP_OK);
    check_body1(&s);
}

static void
test_mp_refusals(void **state)
{
    (void)state;
    seen_t s = {0};
    /* Truncated anywhere before the closing delimiter: an error at finish. */
    size_t n = sizeof(body1) - 1;
    const char *close = strstr(body1, "\r\n--XyZ--");
    for (size_t cut = 0; cut < (size_t)(close - body1) + 8; cut++)
        assert_int_equal(parse("XyZ", body1, cut, NULL, 0, &s), MEDIA_MP_ERROR);
    (void)n;
    /* A part without Content-Disposition, junk after a delimiter, no parts. */
    static const char *bad[] = {
        "--b\r\nContent-Type: text/plain\r\n\r\nx\r\n--b--",
        "--b\r\nContent-Disposition: attachment\r\n\r\nx\r\n--b--",
        "--bjunk\r\nContent-Disposition: form-data; name=a\r\n\r\nx\r\n--b--",
        "--b\r\nno colon here\r\n\r\nx\r\n--b--",
        "--b-x",
        "",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(parse("b", bad[i], strlen(bad[i]), NULL, 0, &s), MEDIA_MP_ERROR);
    /* An empty form is fine; the header budget is enforced. */
    assert_int_equal(parse("b", "--b--", 5, NULL, 0, &s), MEDIA_MP_OK);
    assert_int_equal(s.parts, 0);
    static char big[MEDIA_MP_MAX_HEADERS + 200];
    int k = snprintf(big, sizeof(big), "--b\r\nContent-Disposition: form-data; name=\"");
    memset(big + k, 'a', MEDIA_MP_MAX_HEADERS);
    assert_int_equal(parse("b", big, strlen(big), NULL, 0, &s), MEDIA_MP_ERROR);
    /* A callback that says stop stops the parse. */
    s.stop_at = 2;
    assert_int_equal(parse("XyZ", body1, sizeof(body1) - 1, NULL, 0, &s), MEDIA_MP_ERROR);
    s.stop_at = 0;
}

static void
test_mp_boundary(void **state)
{
    (void)state;
    char b[MEDIA_MP_MAX_BOUNDARY + 1];
    const char *ct = "multipart/form-data; boundary=----WebKitFormBoundary7MA4";
    assert_true(media_mp_boundary(ct, strlen(ct), b));
    assert_string_equal(b, "----WebKitFormBoundary7MA4");
    ct = "Multipart/Form-Data;charset=utf-8; BOUNDARY=\"a b'c\"";
    assert_true(media_mp_boundary(ct, strlen(ct), b));
    assert_string_equal(b, "a b'c");
    static const char *bad[] = {
        "multipart/form-data",
        "multipart/form-data; boundary=",
        "multipart/form-dataX; boundary=a",
        "multipart/mixed; boundary=a",
        "multipart/form-data; boundary=\"a\rb\"",
        "multipart/form-data; boundary=\"ends with space \"",
        "multipart/form-data; boundary="
        "12345678901234567890123456789012345678901234567890123456789012345678901",
        "image/png",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_false(media_mp_boundary(bad[i], strlen(bad[i]), b));
}

static void
test_sniff_and_dims(void **state)
{
    (void)state;
    static const unsigned char png[] = {0x89, 'P', 'N',  'G',  '\r', '\n', 0x1a, '\n', 0,    0,
                                        0,    13,  'I',  'H',  'D',  'R',  0,    0,    0xC3, 0x50,
                                        0,    0,   0xC3, 0x50, 8,    2,    0,    0,    0};
    uint32_t w = 0, h = 0;
    assert_int_equal(media_sniff(png, sizeof(png)), MEDIA_PNG);
    assert_true(media_header_dims(png, sizeof(png), MEDIA_PNG, &w, &h));
    assert_int_equal(w, 50000);
    assert_int_equal(h, 50000);
    assert_false(media_header_dims(png, 20, MEDIA_PNG, &w, &h));
    /* JPEG: SOI, an APP0, then SOF0 with 480 x 640. */
    static const unsigned char jpg[] = {0xFF, 0xD8, 0xFF, 0xE0, 0, 4,    'J', 'F', 0xFF, 0xC0, 0,
                                        17,   8,    2,    0x80, 1, 0xE0, 3,   1,   2,    3};
    assert_int_equal(media_sniff(jpg, sizeof(jpg)), MEDIA_JPEG);
    assert_true(media_header_dims(jpg, sizeof(jpg), MEDIA_JPEG, &w, &h));
    assert_int_equal(w, 480);
    assert_int_equal(h, 640);
    assert_false(media_header_dims(jpg, 10, MEDIA_JPEG, &w, &h));
    static const unsigned char webp[30] = {'R', 'I', 'F', 'F', 0,   0,   0,  0,  'W', 'E',
                                           'B', 'P', 'V', 'P', '8', 'X', 10, 0,  0,   0,
                                           0,   0,   0,   0,   99,  0,   0,  49, 0,   0};
    assert_int_equal(media_sniff(webp, sizeof(webp)), MEDIA_WEBP);
    assert_true(media_header_dims(webp, sizeof(webp), MEDIA_WEBP, &w, &h));
    assert_int_equal(w, 100);
    assert_int_equal(h, 50);
    static const unsigned char avif[] = {0,   0,   0,   28,  'f', 't', 'y', 'p', 'm', 'i',
                                         'f', '1', 0,   0,   0,   0,   'm', 'i', 'f', '1',
                                         'a', 'v', 'i', 'f', 'm', 'i', 'a', 'f'};
    assert_int_equal(media_sniff(avif, sizeof(avif)), MEDIA_AVIF);
    assert_int_equal(media_sniff("GIF89a......", 12), MEDIA_UNKNOWN);
    assert_int_equal(media_sniff("<svg xmlns=", 11), MEDIA_UNKNOWN);
    assert_int_equal(media_sniff("", 0), MEDIA_UNKNOWN);
    assert_string_equal(media_type_mime(MEDIA_WEBP), "image/webp");
    assert_null(media_type_mime(MEDIA_UNKNOWN));
}

static void
test_keys(void **state)
{
    (void)state;
    char k[200];
    const char *hex = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    snprintf(k, sizeof(k), "s12/%s.png", hex);
    assert_true(media_key_valid(k, strlen(k)));
    assert_int_equal(media_type_of_key(k), MEDIA_PNG);
    snprintf(k, sizeof(k), "s12/%s_480.webp", hex);
    assert_true(media_key_valid(k, strlen(k)));
    static const char *bad[] = {"s12/../../etc/passwd", "s/abc.png", "12/abc.png", "s1/x.png",
                                "s1//etc/passwd"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_false(media_key_valid(bad[i], strlen(bad[i])));
    snprintf(k, sizeof(k), "s12/%s.gif", hex);
    assert_false(media_key_valid(k, strlen(k)));
    snprintf(k, sizeof(k), "s12/%s.png/x", hex);
    assert_false(media_key_valid(k, strlen(k)));
    snprintf(k, sizeof(k), "s12/%s_.png", hex);
    assert_false(media_key_valid(k, strlen(k)));
    snprintf(k, sizeof(k), "s12/%.63sX.png", hex); /* not hex */
    assert_false(media_key_valid(k, strlen(k)));
}

static void
test_sizes(void **state)
{
    (void)state;
    int s[16];
    assert_int_equal(media_parse_sizes("160,480,1024", s, 16), 3);
    assert_int_equal(s[2], 1024);
    assert_int_equal(media_parse_sizes("480,160", s, 16), -1);
    assert_int_equal(media_parse_sizes("160,,480", s, 16), -1);
    assert_int_equal(media_parse_sizes("8", s, 16), -1);
    assert_int_equal(media_parse_sizes("", s, 16), -1);
    assert_int_equal(media_parse_sizes("160,", s, 16), -1);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mp_whole_and_every_split),
        cmocka_unit_test(test_mp_refusals),
        cmocka_unit_test(test_mp_boundary),
        cmocka_unit_test(test_sniff_and_dims),
        cmocka_unit_test(test_keys),
        cmocka_unit_test(test_sizes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
