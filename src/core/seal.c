/*
 * seal.c: AES-256-GCM sealing of secrets kept at rest (include/shopd/seal.h
 * has the format and the rotation scheme). It owns the process's key ring and
 * the key file of the embedded default; it knows no table: the modules that
 * keep secrets seal on write, open on read and re-seal their stale rows at
 * start-up.
 *
 * Opening treats its input as hostile (a row could have been edited in the
 * database): every length is checked before a byte is read, the base64 decoder
 * takes only its alphabet, and GCM's tag decides; on any failure the output is
 * wiped.
 */
#include "shopd/seal.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SEAL_KEY_LEN 32
#define SEAL_NONCE_LEN 12
#define SEAL_TAG_LEN 16
#define SEAL_PREFIX "seal1."
#define SEAL_PREFIX_LEN 6
#define SEAL_KID_LEN 8
/* prefix, kid, '.' */
#define SEAL_HEAD_LEN (SEAL_PREFIX_LEN + SEAL_KID_LEN + 1)

typedef struct seal_key_s {
    unsigned char key[SEAL_KEY_LEN];
    char kid[SEAL_KID_LEN + 1];
} seal_key_t;

struct seal_keys_s {
    seal_key_t cur;
    seal_key_t old;
    bool has_old;
};

/* ---------------------------------------------------------------- base64 */

static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* base64url without padding of n bytes into out (4 * ceil(n / 3) + 1 bytes). */
static void
b64_encode(const unsigned char *in, size_t n, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < n)
            v |= in[i + 2];
        out[o++] = b64url[(v >> 18) & 63];
        out[o++] = b64url[(v >> 12) & 63];
        if (i + 1 < n)
            out[o++] = b64url[(v >> 6) & 63];
        if (i + 2 < n)
            out[o++] = b64url[v & 63];
    }
    out[o] = '\0';
}

static int
b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-' || c == '+')
        return 62;
    if (c == '_' || c == '/')
        return 63;
    return -1;
}

/* Decodes n characters of base64 (either alphabet; '=' padding only at the
 * end) into out (cap bytes). The decoded length, or -1 on a character outside
 * the alphabet, a length no encoder makes, or more than cap bytes. */
static long
b64_decode(const char *in, size_t n, unsigned char *out, size_t cap)
{
    while (n > 0 && in[n - 1] == '=')
        n--;
    if (n % 4 == 1)
        return -1;
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64_value((unsigned char)in[i]);
        if (v < 0)
            return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o == cap)
                return -1;
            out[o++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    /* Bits left over must be zero: one text per byte string, as encoders make. */
    if (acc != 0)
        return -1;
    return (long)o;
}

/* ---------------------------------------------------------------- keys */

static int
key_set(seal_key_t *k, const char *b64, const char *name, char *err, size_t errlen)
{
    unsigned char raw[SEAL_KEY_LEN + 1];
    long n = b64_decode(b64, strlen(b64), raw, sizeof(raw));
    if (n != SEAL_KEY_LEN) {
        OPENSSL_cleanse(raw, sizeof(raw));
        snprintf(err, errlen, "%s must be the base64 of exactly 32 bytes (openssl rand -base64 32)",
                 name);
        return -1;
    }
    memcpy(k->key, raw, SEAL_KEY_LEN);
    OPENSSL_cleanse(raw, sizeof(raw));
    /* The id is a hash of the key, not the key's own bytes: it is stored beside
     * every sealed value and must tell nothing about the key. */
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_MD_CTX *h = EVP_MD_CTX_new();
    bool ok = h && EVP_DigestInit_ex(h, EVP_sha256(), NULL) &&
              EVP_DigestUpdate(h, "shopd-seal-kid", 14) &&
              EVP_DigestUpdate(h, k->key, SEAL_KEY_LEN) && EVP_DigestFinal_ex(h, md, &mdlen);
    EVP_MD_CTX_free(h);
    if (!ok) {
        snprintf(err, errlen, "%s: SHA-256 unavailable", name);
        return -1;
    }
    snprintf(k->kid, sizeof(k->kid), "%02x%02x%02x%02x", md[0], md[1], md[2], md[3]);
    return 0;
}

seal_keys_t *
seal_keys_new(const char *cur_b64, const char *old_b64, char *err, size_t errlen)
{
    seal_keys_t *k = shopd_calloc(1, sizeof(*k));
    if (cur_b64 == NULL || key_set(&k->cur, cur_b64, "SHOPD_SECRETS_KEY", err, errlen) != 0)
        goto fail;
    if (old_b64 && old_b64[0]) {
        if (key_set(&k->old, old_b64, "SHOPD_SECRETS_KEY_OLD", err, errlen) != 0)
            goto fail;
        if (strcmp(k->old.kid, k->cur.kid) == 0) {
            snprintf(err, errlen, "SHOPD_SECRETS_KEY_OLD is the same key as SHOPD_SECRETS_KEY");
            goto fail;
        }
        k->has_old = true;
    }
    return k;
fail:
    seal_keys_free(k);
    return NULL;
}

void
seal_keys_free(seal_keys_t *k)
{
    if (k == NULL)
        return;
    OPENSSL_cleanse(k, sizeof(*k));
    shopd_free(k);
}

const char *
seal_keys_kid(const seal_keys_t *k)
{
    return k->cur.kid;
}

/* ---------------------------------------------------------------- seal, open */

char *
seal_seal(const seal_keys_t *k, const char *plain, const char *aad)
{
    size_t n = strlen(plain);
    if (k == NULL || n > SEAL_MAX_PLAIN)
        return NULL;
    unsigned char buf[SEAL_NONCE_LEN + SEAL_MAX_PLAIN + SEAL_TAG_LEN];
    char *out = NULL;
    int len = 0;
    EVP_CIPHER_CTX *c = NULL;
    if (shopd_random(buf, SEAL_NONCE_LEN) != 0)
        goto done;
    c = EVP_CIPHER_CTX_new();
    if (c == NULL || !EVP_EncryptInit_ex(c, EVP_aes_256_gcm(), NULL, k->cur.key, buf) ||
        !EVP_EncryptUpdate(c, NULL, &len, (const unsigned char *)aad, (int)strlen(aad)) ||
        !EVP_EncryptUpdate(c, buf + SEAL_NONCE_LEN, &len, (const unsigned char *)plain, (int)n) ||
        !EVP_EncryptFinal_ex(c, buf + SEAL_NONCE_LEN + n, &len) ||
        !EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, SEAL_TAG_LEN, buf + SEAL_NONCE_LEN + n))
        goto done;
    size_t raw = SEAL_NONCE_LEN + n + SEAL_TAG_LEN;
    out = shopd_malloc(SEAL_HEAD_LEN + 4 * ((raw + 2) / 3) + 1);
    memcpy(out, SEAL_PREFIX, SEAL_PREFIX_LEN);
    memcpy(out + SEAL_PREFIX_LEN, k->cur.kid, SEAL_KID_LEN);
    out[SEAL_HEAD_LEN - 1] = '.';
    b64_encode(buf, raw, out + SEAL_HEAD_LEN);
done:
    EVP_CIPHER_CTX_free(c);
    OPENSSL_cleanse(buf, sizeof(buf));
    return out;
}

bool
seal_is_sealed(const char *text)
{
    return strncmp(text, SEAL_PREFIX, SEAL_PREFIX_LEN) == 0;
}

/* The key named by text's kid, or NULL. text has the prefix. */
static const seal_key_t *
key_for(const seal_keys_t *k, const char *text)
{
    if (strnlen(text, SEAL_HEAD_LEN) < SEAL_HEAD_LEN || text[SEAL_HEAD_LEN - 1] != '.')
        return NULL;
    const char *kid = text + SEAL_PREFIX_LEN;
    if (memcmp(kid, k->cur.kid, SEAL_KID_LEN) == 0)
        return &k->cur;
    if (k->has_old && memcmp(kid, k->old.kid, SEAL_KID_LEN) == 0)
        return &k->old;
    return NULL;
}

bool
seal_stale(const seal_keys_t *k, const char *text)
{
    return !seal_is_sealed(text) || key_for(k, text) != &k->cur;
}

bool
seal_known(const seal_keys_t *k, const char *text)
{
    return seal_is_sealed(text) && key_for(k, text) != NULL;
}

shopd_rc_t
seal_open(const seal_keys_t *k, const char *text, const char *aad, char *out, size_t outlen)
{
    shopd_rc_t rc = SHOPD_INVALID;
    unsigned char buf[SEAL_NONCE_LEN + SEAL_MAX_PLAIN + SEAL_TAG_LEN];
    unsigned char plain[SEAL_MAX_PLAIN];
    EVP_CIPHER_CTX *c = NULL;
    if (outlen == 0)
        return SHOPD_INVALID;
    out[0] = '\0';
    if (k == NULL || !seal_is_sealed(text))
        return SHOPD_INVALID;
    const seal_key_t *key = key_for(k, text);
    if (key == NULL)
        return SHOPD_INVALID;
    const char *body = text + SEAL_HEAD_LEN;
    size_t blen = strnlen(body, SEAL_MAX_TEXT + 1);
    if (blen > SEAL_MAX_TEXT - SEAL_HEAD_LEN)
        return SHOPD_INVALID;
    long raw = b64_decode(body, blen, buf, sizeof(buf));
    if (raw < SEAL_NONCE_LEN + SEAL_TAG_LEN)
        goto done;
    size_t n = (size_t)raw - SEAL_NONCE_LEN - SEAL_TAG_LEN;
    if (n + 1 > outlen)
        goto done;
    int len = 0;
    c = EVP_CIPHER_CTX_new();
    if (c == NULL || !EVP_DecryptInit_ex(c, EVP_aes_256_gcm(), NULL, key->key, buf) ||
        !EVP_DecryptUpdate(c, NULL, &len, (const unsigned char *)aad, (int)strlen(aad)) ||
        !EVP_DecryptUpdate(c, plain, &len, buf + SEAL_NONCE_LEN, (int)n) ||
        !EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, SEAL_TAG_LEN, buf + SEAL_NONCE_LEN + n) ||
        EVP_DecryptFinal_ex(c, plain + len, &len) <= 0)
        goto done;
    /* A NUL inside would make the secret shorter than what was sealed. */
    if (memchr(plain, '\0', n) != NULL)
        goto done;
    memcpy(out, plain, n);
    out[n] = '\0';
    rc = SHOPD_OK;
done:
    EVP_CIPHER_CTX_free(c);
    OPENSSL_cleanse(buf, sizeof(buf));
    OPENSSL_cleanse(plain, sizeof(plain));
    return rc;
}

shopd_rc_t
seal_open_or_plain(const seal_keys_t *k, const char *text, const char *aad, char *out,
                   size_t outlen)
{
    if (seal_is_sealed(text))
        return seal_open(k, text, aad, out, outlen);
    size_t n = strlen(text);
    if (outlen == 0 || n + 1 > outlen) {
        if (outlen)
            out[0] = '\0';
        return SHOPD_INVALID;
    }
    memcpy(out, text, n + 1);
    return SHOPD_OK;
}

/* ---------------------------------------------------------------- key file */

int
seal_key_file(const char *path, char *out, size_t outlen, char *err, size_t errlen)
{
    int rc = -1;
    char text[128];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT) {
        /* O_EXCL: two processes starting at once make one file; the loser reads it. */
        unsigned char raw[SEAL_KEY_LEN];
        if (shopd_random(raw, sizeof(raw)) != 0) {
            snprintf(err, errlen, "no random bytes for a new secrets key");
            return -1;
        }
        b64_encode(raw, sizeof(raw), text);
        OPENSSL_cleanse(raw, sizeof(raw));
        int w = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (w >= 0) {
            size_t n = strlen(text);
            bool ok = write(w, text, n) == (ssize_t)n && write(w, "\n", 1) == 1 && fsync(w) == 0;
            close(w);
            if (!ok) {
                unlink(path);
                snprintf(err, errlen, "cannot write the secrets key file %s", path);
                goto done;
            }
        } else if (errno != EEXIST) {
            snprintf(err, errlen, "cannot create the secrets key file %s: %s", path,
                     strerror(errno));
            goto done;
        }
        fd = open(path, O_RDONLY | O_CLOEXEC);
    }
    if (fd < 0) {
        snprintf(err, errlen, "cannot read the secrets key file %s: %s", path, strerror(errno));
        goto done;
    }
    ssize_t got = read(fd, text, sizeof(text) - 1);
    close(fd);
    if (got <= 0) {
        snprintf(err, errlen, "the secrets key file %s is empty", path);
        goto done;
    }
    text[got] = '\0';
    text[strcspn(text, "\r\n")] = '\0';
    if (strlen(text) + 1 > outlen) {
        snprintf(err, errlen, "the secrets key file %s holds no key", path);
        goto done;
    }
    memcpy(out, text, strlen(text) + 1);
    rc = 0;
done:
    OPENSSL_cleanse(text, sizeof(text));
    return rc;
}

/* ---------------------------------------------------------------- process */

static seal_keys_t *process_keys;

const seal_keys_t *
seal_process(void)
{
    return process_keys;
}

void
seal_process_set(seal_keys_t *k)
{
    seal_keys_free(process_keys);
    process_keys = k;
}
