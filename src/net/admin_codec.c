/*
 * admin_codec.c: the admin protocol's frames (admin.h): the length prefix, and
 * msgpack <-> JSON values. Pure functions, shared by the server (admin.c) and
 * shopctl, fuzzed by fuzz/admin.c.
 *
 * Why a reader of our own instead of msgpack_unpack: msgpack-c allocates an
 * array's or map's elements when it reads the count, before the bytes that
 * should hold them, so a 6-byte frame announcing 2^32 elements asks for 64
 * GiB. Here a count larger than the bytes left is refused before anything is
 * allocated (each element takes at least one byte), depth is bounded, and the
 * value lands directly in the JSON form the handlers and shopctl use.
 */
#include <msgpack.h>
#include <stdio.h>
#include <string.h>

#include "shopd/admin.h"
#include "shopd/common.h"

#define ADMIN_MAX_DEPTH 32

/* ------------------------------------------------------------ frames */

admin_frame_rc_t
admin_frame_check(const void *buf, size_t len, size_t max, size_t *body_len)
{
    const unsigned char *p = buf;
    if (len < ADMIN_HEADER)
        return ADMIN_FRAME_MORE;
    size_t n = ((size_t)p[0] << 24) | ((size_t)p[1] << 16) | ((size_t)p[2] << 8) | p[3];
    *body_len = n;
    if (n == 0 || n > max)
        return ADMIN_FRAME_TOO_BIG;
    return len - ADMIN_HEADER >= n ? ADMIN_FRAME_OK : ADMIN_FRAME_MORE;
}

void
admin_frame_header(uint32_t n, unsigned char out[ADMIN_HEADER])
{
    out[0] = (unsigned char)(n >> 24);
    out[1] = (unsigned char)(n >> 16);
    out[2] = (unsigned char)(n >> 8);
    out[3] = (unsigned char)n;
}

/* ------------------------------------------------------------ msgpack -> JSON */

typedef struct rd_s {
    const unsigned char *p, *end;
    char *err;
    size_t errlen;
} rd_t;

static json_t *
rd_fail(rd_t *r, const char *what)
{
    if (r->err[0] == '\0')
        snprintf(r->err, r->errlen, "%s", what);
    return NULL;
}

/* Reads an n-byte big-endian unsigned integer; false if the input ends first. */
static bool
rd_be(rd_t *r, size_t n, uint64_t *out)
{
    if ((size_t)(r->end - r->p) < n)
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = (v << 8) | r->p[i];
    r->p += n;
    *out = v;
    return true;
}

static json_t *rd_value(rd_t *r, int depth);

static json_t *
rd_str(rd_t *r, uint64_t n, bool bin)
{
    if ((uint64_t)(r->end - r->p) < n)
        return rd_fail(r, "truncated string");
    /* json_stringn refuses invalid UTF-8, which is what JSON text needs. */
    json_t *s = json_stringn((const char *)r->p, (size_t)n);
    if (s == NULL)
        return rd_fail(r, bin ? "binary that is not UTF-8 text" : "a string that is not UTF-8");
    r->p += n;
    return s;
}

static json_t *
rd_array(rd_t *r, uint64_t n, int depth)
{
    if (n > (uint64_t)(r->end - r->p))
        return rd_fail(r, "an array longer than the frame");
    json_t *a = json_array();
    for (uint64_t i = 0; i < n; i++) {
        json_t *v = rd_value(r, depth + 1);
        if (v == NULL) {
            json_decref(a);
            return NULL;
        }
        json_array_append_new(a, v);
    }
    return a;
}

static json_t *
rd_map(rd_t *r, uint64_t n, int depth)
{
    /* Two bytes at least per pair. */
    if (n > (uint64_t)(r->end - r->p) / 2)
        return rd_fail(r, "a map longer than the frame");
    json_t *m = json_object();
    for (uint64_t i = 0; i < n; i++) {
        json_t *k = rd_value(r, depth + 1);
        if (k == NULL)
            goto fail;
        if (!json_is_string(k)) {
            json_decref(k);
            rd_fail(r, "a map key that is not a string");
            goto fail;
        }
        json_t *v = rd_value(r, depth + 1);
        if (v == NULL) {
            json_decref(k);
            goto fail;
        }
        /* Keys are compared as C strings: one with a NUL byte would alias another. */
        if (strlen(json_string_value(k)) != json_string_length(k) ||
            json_object_get(m, json_string_value(k)) != NULL) {
            json_decref(k);
            json_decref(v);
            rd_fail(r, "a repeated map key (or one holding a NUL byte)");
            goto fail;
        }
        json_object_set_new(m, json_string_value(k), v);
        json_decref(k);
    }
    return m;
fail:
    json_decref(m);
    return NULL;
}

static json_t *
rd_value(rd_t *r, int depth)
{
    if (depth > ADMIN_MAX_DEPTH)
        return rd_fail(r, "nested too deeply");
    if (r->p >= r->end)
        return rd_fail(r, "truncated value");
    unsigned char b = *r->p++;
    uint64_t n;
    if (b <= 0x7f)
        return json_integer(b);
    if (b >= 0xe0)
        return json_integer((int8_t)b);
    if ((b & 0xf0) == 0x80)
        return rd_map(r, b & 0x0f, depth);
    if ((b & 0xf0) == 0x90)
        return rd_array(r, b & 0x0f, depth);
    if ((b & 0xe0) == 0xa0)
        return rd_str(r, b & 0x1f, false);
    switch (b) {
    case 0xc0:
        return json_null();
    case 0xc2:
        return json_false();
    case 0xc3:
        return json_true();
    case 0xc4:
    case 0xc5:
    case 0xc6:
        if (!rd_be(r, (size_t)1 << (b - 0xc4), &n))
            return rd_fail(r, "truncated binary length");
        return rd_str(r, n, true);
    case 0xca: {
        if (!rd_be(r, 4, &n))
            return rd_fail(r, "truncated float");
        uint32_t u = (uint32_t)n;
        float f;
        memcpy(&f, &u, sizeof(f));
        json_t *v = json_real((double)f);
        return v ? v : rd_fail(r, "a float JSON cannot hold (NaN or infinity)");
    }
    case 0xcb: {
        if (!rd_be(r, 8, &n))
            return rd_fail(r, "truncated float");
        double d;
        memcpy(&d, &n, sizeof(d));
        json_t *v = json_real(d);
        return v ? v : rd_fail(r, "a float JSON cannot hold (NaN or infinity)");
    }
    case 0xcc:
    case 0xcd:
    case 0xce:
    case 0xcf:
        if (!rd_be(r, (size_t)1 << (b - 0xcc), &n))
            return rd_fail(r, "truncated integer");
        if (n > (uint64_t)INT64_MAX)
            return rd_fail(r, "an integer beyond int64");
        return json_integer((json_int_t)n);
    case 0xd0:
    case 0xd1:
    case 0xd2:
    case 0xd3: {
        size_t w = (size_t)1 << (b - 0xd0);
        if (!rd_be(r, w, &n))
            return rd_fail(r, "truncated integer");
        /* Sign-extend the w-byte two's complement value. */
        int64_t v = w == 8 ? (int64_t)n : (int64_t)(n << (64 - 8 * w)) >> (64 - 8 * w);
        return json_integer(v);
    }
    case 0xd9:
    case 0xda:
    case 0xdb:
        if (!rd_be(r, (size_t)1 << (b - 0xd9), &n))
            return rd_fail(r, "truncated string length");
        return rd_str(r, n, false);
    case 0xdc:
    case 0xdd:
        if (!rd_be(r, b == 0xdc ? 2 : 4, &n))
            return rd_fail(r, "truncated array length");
        return rd_array(r, n, depth);
    case 0xde:
    case 0xdf:
        if (!rd_be(r, b == 0xde ? 2 : 4, &n))
            return rd_fail(r, "truncated map length");
        return rd_map(r, n, depth);
    default:
        return rd_fail(r, "an extension type or reserved byte");
    }
}

json_t *
admin_decode(const void *buf, size_t n, char *err, size_t errlen)
{
    char dummy[8];
    if (err == NULL || errlen == 0) {
        err = dummy;
        errlen = sizeof(dummy);
    }
    err[0] = '\0';
    rd_t r = {.p = buf, .end = (const unsigned char *)buf + n, .err = err, .errlen = errlen};
    if (n == 0 || ((r.p[0] & 0xf0) != 0x80 && r.p[0] != 0xde && r.p[0] != 0xdf)) {
        snprintf(err, errlen, "a frame must hold one msgpack map");
        return NULL;
    }
    json_t *v = rd_value(&r, 0);
    if (v && r.p != r.end) {
        json_decref(v);
        snprintf(err, errlen, "bytes after the map in the frame");
        return NULL;
    }
    return v;
}

/* ------------------------------------------------------------ JSON -> msgpack */

static void
pack(msgpack_packer *pk, const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        msgpack_pack_map(pk, json_object_size(v));
        const char *k;
        json_t *x;
        json_object_foreach((json_t *)v, k, x)
        {
            size_t kl = strlen(k);
            msgpack_pack_str(pk, kl);
            msgpack_pack_str_body(pk, k, kl);
            pack(pk, x);
        }
        break;
    }
    case JSON_ARRAY:
        msgpack_pack_array(pk, json_array_size(v));
        for (size_t i = 0; i < json_array_size(v); i++)
            pack(pk, json_array_get(v, i));
        break;
    case JSON_STRING:
        msgpack_pack_str(pk, json_string_length(v));
        msgpack_pack_str_body(pk, json_string_value(v), json_string_length(v));
        break;
    case JSON_INTEGER:
        msgpack_pack_int64(pk, json_integer_value(v));
        break;
    case JSON_REAL:
        msgpack_pack_double(pk, json_real_value(v));
        break;
    case JSON_TRUE:
        msgpack_pack_true(pk);
        break;
    case JSON_FALSE:
        msgpack_pack_false(pk);
        break;
    case JSON_NULL:
        msgpack_pack_nil(pk);
        break;
    }
}

/* Encodes v after room bytes left free at the start of the buffer. */
static unsigned char *
encode(const json_t *v, size_t room, size_t *len)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    pack(&pk, v);
    unsigned char *out = shopd_malloc(room + sb.size);
    memcpy(out + room, sb.data, sb.size);
    *len = room + sb.size;
    msgpack_sbuffer_destroy(&sb);
    return out;
}

unsigned char *
admin_encode(const json_t *v, size_t *len)
{
    return encode(v, 0, len);
}

unsigned char *
admin_encode_frame(const json_t *v, size_t *len)
{
    unsigned char *out = encode(v, ADMIN_HEADER, len);
    admin_frame_header((uint32_t)(*len - ADMIN_HEADER), out);
    return out;
}

/* ------------------------------------------------------------ requests, answers */

int
admin_req_read(json_t *frame, admin_req_t *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    json_t *id = json_object_get(frame, "id");
    out->id = id ? id : json_null();
    json_t *op = json_object_get(frame, "op");
    if (!json_is_string(op) || json_string_length(op) == 0 || json_string_length(op) > 64) {
        snprintf(err, errlen, "op must be a string of 1 to 64 characters");
        return -1;
    }
    out->op = json_string_value(op);
    json_t *args = json_object_get(frame, "args");
    if (args != NULL && !json_is_object(args) && !json_is_null(args)) {
        snprintf(err, errlen, "args must be a map");
        return -1;
    }
    if (json_is_object(args)) {
        out->args = json_incref(args);
    } else {
        out->args = json_object();
    }
    return 0;
}

void
admin_req_clear(admin_req_t *req)
{
    if (req == NULL)
        return;
    json_decref(req->args);
    req->args = NULL;
}

json_t *
admin_ok(json_t *id, json_t *result)
{
    return json_pack("{s:O?,s:b,s:o}", "id", id, "ok", 1, "result", result ? result : json_null());
}

json_t *
admin_err(json_t *id, const char *code, const char *message, json_t *details)
{
    return json_pack("{s:O?,s:b,s:{s:s,s:s,s:o}}", "id", id, "ok", 0, "error", "code", code,
                     "message", message, "details", details ? details : json_array());
}
