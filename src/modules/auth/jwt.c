/*
 * jwt.c: the signing keys and HS256 access tokens (sign and verify) with
 * OpenSSL's HMAC, plus role names and SHA-256 hex. Keys are loaded once at
 * start and only read afterwards, so the I/O threads verify without locks.
 *
 * Verification is strict: the header must name alg HS256 exactly (alg none
 * and every other algorithm are refused before any key is touched), kid must
 * name a loaded key, the signature is compared in constant time, and exp is
 * honoured with AUTH_CLOCK_SKEW_S of slack.
 */
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "shopd/auth.h"
#include "shopd/log.h"

#define MAX_KEYS 8

typedef struct auth_key_s {
    char kid[64];
    unsigned char secret[256];
    size_t len;
} auth_key_t;

static auth_key_t keys[MAX_KEYS];
static size_t nkeys;

int
auth_init(const cfg_t *cfg, char *err, size_t errlen)
{
    nkeys = 0;
    const char *s = cfg->jwt_keys ? cfg->jwt_keys : "";
    if (*s == '\0') {
        unsigned char r[32];
        if (shopd_random(r, sizeof(r)) != 0) {
            snprintf(err, errlen, "cannot make a random JWT key");
            return -1;
        }
        snprintf(keys[0].kid, sizeof(keys[0].kid), "ephemeral");
        memcpy(keys[0].secret, r, sizeof(r));
        keys[0].len = sizeof(r);
        nkeys = 1;
        log_warn(
            "SHOPD_JWT_KEYS is empty: using a random key; access tokens end with this process");
        return 0;
    }
    while (*s) {
        const char *end = strchr(s, ',');
        size_t n = end ? (size_t)(end - s) : strlen(s);
        const char *colon = memchr(s, ':', n);
        if (nkeys == MAX_KEYS) {
            snprintf(err, errlen, "invalid configuration: SHOPD_JWT_KEYS has more than %d keys",
                     MAX_KEYS);
            return -1;
        }
        if (colon == NULL || colon == s || (size_t)(colon - s) >= sizeof(keys[0].kid)) {
            snprintf(err, errlen,
                     "invalid configuration: SHOPD_JWT_KEYS entries must be kid:secret");
            return -1;
        }
        size_t sl = n - (size_t)(colon - s) - 1;
        if (sl < 16 || sl > sizeof(keys[0].secret)) {
            snprintf(err, errlen,
                     "invalid configuration: each SHOPD_JWT_KEYS secret must be 16 to 256 bytes");
            return -1;
        }
        auth_key_t *k = &keys[nkeys++];
        snprintf(k->kid, sizeof(k->kid), "%.*s", (int)(colon - s), s);
        memcpy(k->secret, colon + 1, sl);
        k->len = sl;
        s += n;
        if (*s == ',')
            s++;
    }
    if (nkeys == 0) {
        snprintf(err, errlen, "invalid configuration: SHOPD_JWT_KEYS has no key");
        return -1;
    }
    return 0;
}

void
auth_fini(void)
{
    memset(keys, 0, sizeof(keys));
    nkeys = 0;
}

static const char *const role_names[] = {
    [MSG_ROLE_CUSTOMER] = "CUSTOMER",
    [MSG_ROLE_STORE_ADMIN] = "STORE_ADMIN",
    [MSG_ROLE_SUPER_ADMIN] = "SUPER_ADMIN",
};

const char *
auth_role_name(int role)
{
    if (role < MSG_ROLE_CUSTOMER || role > MSG_ROLE_SUPER_ADMIN)
        return NULL;
    return role_names[role];
}

int
auth_role_parse(const char *name)
{
    for (int r = MSG_ROLE_CUSTOMER; r <= MSG_ROLE_SUPER_ADMIN; r++)
        if (name && strcmp(name, role_names[r]) == 0)
            return r;
    return MSG_ROLE_ANONYMOUS;
}

void
auth_sha256_hex(const char *s, size_t n, char out[65])
{
    unsigned char d[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)s, n, d);
    static const char hx[] = "0123456789abcdef";
    for (int i = 0; i < SHA256_DIGEST_LENGTH; i++) {
        out[2 * i] = hx[d[i] >> 4];
        out[2 * i + 1] = hx[d[i] & 15];
    }
    out[64] = '\0';
}

/* ---------------------------------------------------------------- base64url */

static size_t
b64url_encode(const unsigned char *in, size_t n, char *out)
{
    static const char tb[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0, i = 0;
    for (; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = tb[v >> 18];
        out[o++] = tb[(v >> 12) & 63];
        out[o++] = tb[(v >> 6) & 63];
        out[o++] = tb[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[o++] = tb[v >> 18];
        out[o++] = tb[(v >> 12) & 63];
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[o++] = tb[v >> 18];
        out[o++] = tb[(v >> 12) & 63];
        out[o++] = tb[(v >> 6) & 63];
    }
    out[o] = '\0';
    return o;
}

static int
b64val(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

/* Decodes unpadded base64url; returns the length or -1 (bad character, bad length,
 * or more than cap bytes). */
static long
b64url_decode(const char *in, size_t n, unsigned char *out, size_t cap)
{
    if (n % 4 == 1)
        return -1;
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64val(in[i]);
        if (v < 0)
            return -1;
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o == cap)
                return -1;
            out[o++] = (unsigned char)(acc >> bits);
        }
    }
    /* Non-zero padding bits would let one signature have several spellings. */
    if (bits > 0 && (acc & ((1u << bits) - 1)) != 0)
        return -1;
    return (long)o;
}

/* ---------------------------------------------------------------- sign / verify */

static void
hmac256(const auth_key_t *k, const char *data, size_t n, unsigned char mac[32])
{
    unsigned int len = 32;
    HMAC(EVP_sha256(), k->secret, (int)k->len, (const unsigned char *)data, n, mac, &len);
}

size_t
auth_jwt_sign(uint64_t user_id, uint64_t store_id, int role, char *out, size_t outlen)
{
    return auth_jwt_sign_ver(user_id, store_id, role, 1, out, outlen);
}

size_t
auth_jwt_sign_ver(uint64_t user_id, uint64_t store_id, int role, uint32_t ver, char *out,
                  size_t outlen)
{
    char hdr[160], pl[384], jti[33];
    time_t now = time(NULL);
    shopd_random_hex(jti, 16);
    const auth_key_t *k = &keys[0];
    int hn =
        snprintf(hdr, sizeof(hdr), "{\"alg\":\"HS256\",\"typ\":\"JWT\",\"kid\":\"%s\"}", k->kid);
    int pn;
    if (store_id)
        pn = snprintf(pl, sizeof(pl),
                      "{\"sub\":\"%llu\",\"store_id\":%llu,\"role\":\"%s\",\"ver\":%u,\"iat\":%"
                      "lld,\"exp\":%lld,\"jti\":\"%s\"}",
                      (unsigned long long)user_id, (unsigned long long)store_id,
                      auth_role_name(role), ver, (long long)now, (long long)now + AUTH_ACCESS_TTL_S,
                      jti);
    else
        pn = snprintf(pl, sizeof(pl),
                      "{\"sub\":\"%llu\",\"role\":\"%s\",\"ver\":%u,\"iat\":%lld,\"exp\":%lld,"
                      "\"jti\":\"%s\"}",
                      (unsigned long long)user_id, auth_role_name(role), ver, (long long)now,
                      (long long)now + AUTH_ACCESS_TTL_S, jti);
    size_t need = ((size_t)hn + (size_t)pn) * 4 / 3 + 4 + 2 + 44;
    if (need > outlen)
        return 0;
    size_t o = b64url_encode((unsigned char *)hdr, (size_t)hn, out);
    out[o++] = '.';
    o += b64url_encode((unsigned char *)pl, (size_t)pn, out + o);
    unsigned char mac[32];
    hmac256(k, out, o, mac);
    out[o++] = '.';
    o += b64url_encode(mac, sizeof(mac), out + o);
    return o;
}

/* Parses a base64url JSON object part. */
static json_t *
part_json(const char *p, size_t n)
{
    unsigned char buf[AUTH_JWT_MAX];
    long len = b64url_decode(p, n, buf, sizeof(buf));
    if (len <= 0)
        return NULL;
    json_t *j = json_loadb((const char *)buf, (size_t)len, JSON_REJECT_DUPLICATES, NULL);
    if (j && !json_is_object(j)) {
        json_decref(j);
        return NULL;
    }
    return j;
}

auth_jwt_rc_t
auth_jwt_verify(const char *token, size_t len, msg_caller_t *caller)
{
    auth_jwt_rc_t rc = AUTH_JWT_MALFORMED;
    json_t *hdr = NULL, *pl = NULL;
    if (len == 0 || len > AUTH_JWT_MAX)
        return AUTH_JWT_MALFORMED;
    const char *d1 = memchr(token, '.', len);
    if (d1 == NULL)
        return AUTH_JWT_MALFORMED;
    const char *d2 = memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - token));
    if (d2 == NULL)
        return AUTH_JWT_MALFORMED;
    const char *sig = d2 + 1;
    size_t siglen = len - (size_t)(sig - token);

    hdr = part_json(token, (size_t)(d1 - token));
    if (hdr == NULL)
        goto out;
    const char *alg = json_string_value(json_object_get(hdr, "alg"));
    if (alg == NULL || strcmp(alg, "HS256") != 0) {
        rc = AUTH_JWT_BAD_ALG;
        goto out;
    }
    const char *kid = json_string_value(json_object_get(hdr, "kid"));
    const auth_key_t *k = NULL;
    for (size_t i = 0; kid && i < nkeys && k == NULL; i++)
        if (strcmp(keys[i].kid, kid) == 0)
            k = &keys[i];
    if (k == NULL) {
        rc = AUTH_JWT_BAD_KEY;
        goto out;
    }
    unsigned char given[64], mac[32];
    long gl = b64url_decode(sig, siglen, given, sizeof(given));
    hmac256(k, token, (size_t)(d2 - token), mac);
    if (gl != 32 || !shopd_ct_equal(given, 32, mac, 32)) {
        rc = AUTH_JWT_BAD_SIG;
        goto out;
    }
    pl = part_json(d1 + 1, (size_t)(d2 - d1 - 1));
    rc = AUTH_JWT_BAD_CLAIMS;
    if (pl == NULL)
        goto out;
    json_t *exp = json_object_get(pl, "exp"), *iat = json_object_get(pl, "iat");
    const char *sub = json_string_value(json_object_get(pl, "sub"));
    int role = auth_role_parse(json_string_value(json_object_get(pl, "role")));
    json_t *sid = json_object_get(pl, "store_id");
    json_t *ver = json_object_get(pl, "ver");
    if (!json_is_integer(exp) || !json_is_integer(iat) || sub == NULL || role == MSG_ROLE_ANONYMOUS)
        goto out;
    /* ver: the user's token version when it was signed; the middleware refuses it
     * once the user's role, status, store or password has changed since. */
    if (!json_is_integer(ver) || json_integer_value(ver) < 1 ||
        json_integer_value(ver) > UINT32_MAX)
        goto out;
    uint64_t uid;
    if (!shopd_id_parse(sub, strlen(sub), &uid))
        goto out;
    /* A super admin has no store; everyone else must have one. */
    if (role == MSG_ROLE_SUPER_ADMIN ? sid != NULL
                                     : (!json_is_integer(sid) || json_integer_value(sid) <= 0))
        goto out;
    long long now = (long long)time(NULL);
    if (json_integer_value(iat) > now + AUTH_CLOCK_SKEW_S)
        goto out;
    if (json_integer_value(exp) + AUTH_CLOCK_SKEW_S < now) {
        rc = AUTH_JWT_EXPIRED;
        goto out;
    }
    caller->user_id = uid;
    caller->store_id = sid ? (uint64_t)json_integer_value(sid) : 0;
    caller->role = role;
    caller->ver = (uint32_t)json_integer_value(ver);
    rc = AUTH_JWT_OK;
out:
    json_decref(hdr);
    json_decref(pl);
    return rc;
}
