/*
 * sigv4.h: a small AWS Signature Version 4 signer for tests only (never in
 * the server: shopd signs through libcurl's CURLOPT_AWS_SIGV4). Written from
 * the SigV4 specification, independently of libcurl, so that a request
 * libcurl signed can be signed again here and the two compared:
 *
 *   canonical request  METHOD \n URI \n QUERY \n HEADERS \n SIGNED \n PAYLOADHASH
 *   string to sign     AWS4-HMAC-SHA256 \n <x-amz-date> \n <scope> \n hex(SHA256(creq))
 *   signing key        HMAC(HMAC(HMAC(HMAC("AWS4" secret, yyyymmdd), region), service),
 *                      "aws4_request")
 *   signature          hex(HMAC(key, string to sign))
 *
 * URI: each path byte percent-encoded except the unreserved A-Z a-z 0-9 - . _ ~
 * and "/"; S3 encodes the decoded path once, other services encode the path as
 * sent once more (dot segments are not normalised: no vector used here has
 * them). QUERY: every name and value decoded, encoded again (uppercase hex),
 * sorted by name then value, "name=value" joined by "&" (a name without a
 * value keeps its "="). HEADERS: names lowercased, values trimmed with inner
 * runs of spaces made one, repeated names joined with ",", sorted by name.
 *
 * Static functions only: include it in the one test file that uses it.
 */
#ifndef SHOPD_TEST_SIGV4_H
#define SHOPD_TEST_SIGV4_H

#include <ctype.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct sv4_hdr_s {
    const char *name, *value;
} sv4_hdr_t;

/* A growing string (the canonical request can be long). */
typedef struct sv4_buf_s {
    char *p;
    size_t n, cap;
} sv4_buf_t;

static void
sv4_put(sv4_buf_t *b, const char *s, size_t n)
{
    if (b->n + n + 1 > b->cap) {
        b->cap = (b->n + n + 1) * 2;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

static void
sv4_puts(sv4_buf_t *b, const char *s)
{
    sv4_put(b, s, strlen(s));
}

static void
sv4_hex(const unsigned char *d, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
}

/* Lowercase hex SHA-256 of p (out: 65 bytes). */
static void
sv4_sha256_hex(const void *p, size_t n, char *out)
{
    unsigned char d[SHA256_DIGEST_LENGTH];
    SHA256(p, n, d);
    sv4_hex(d, sizeof(d), out);
}

static void
sv4_hmac(const void *key, size_t klen, const char *msg, unsigned char out[32])
{
    unsigned int len = 32;
    HMAC(EVP_sha256(), key, (int)klen, (const unsigned char *)msg, strlen(msg), out, &len);
}

static bool
sv4_unreserved(unsigned char c)
{
    return isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~';
}

/* Appends s (n bytes) percent-encoded; "/" kept when keep_slash. */
static void
sv4_encode(sv4_buf_t *b, const char *s, size_t n, bool keep_slash)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (sv4_unreserved(c) || (keep_slash && c == '/')) {
            sv4_put(b, (const char *)&c, 1);
        } else {
            char e[4];
            snprintf(e, sizeof(e), "%%%02X", c);
            sv4_put(b, e, 3);
        }
    }
}

static int
sv4_hexval(char c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/* Decodes %XX of s (n bytes) into out (at least n + 1); the decoded length. */
static size_t
sv4_decode(const char *s, size_t n, char *out)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%' && i + 2 < n && sv4_hexval(s[i + 1]) >= 0 && sv4_hexval(s[i + 2]) >= 0) {
            out[k++] = (char)(sv4_hexval(s[i + 1]) * 16 + sv4_hexval(s[i + 2]));
            i += 2;
        } else {
            out[k++] = s[i];
        }
    }
    out[k] = '\0';
    return k;
}

typedef struct sv4_param_s {
    char *name, *value; /* canonical (encoded) */
} sv4_param_t;

static int
sv4_param_cmp(const void *a, const void *b)
{
    const sv4_param_t *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c ? c : strcmp(x->value, y->value);
}

/* The canonical query of a raw query string (as in the request line, no "?"). */
static void
sv4_canonical_query(sv4_buf_t *out, const char *q)
{
    sv4_param_t ps[64];
    size_t np = 0;
    const char *p = q;
    while (p && *p && np < 64) {
        const char *amp = strchr(p, '&');
        size_t len = amp ? (size_t)(amp - p) : strlen(p);
        if (len > 0) {
            const char *eq = memchr(p, '=', len);
            size_t nl = eq ? (size_t)(eq - p) : len;
            const char *v = eq ? eq + 1 : p + len;
            size_t vl = eq ? len - nl - 1 : 0;
            char *dn = malloc(nl + 1), *dv = malloc(vl + 1);
            size_t dnl = sv4_decode(p, nl, dn), dvl = sv4_decode(v, vl, dv);
            sv4_buf_t en = {0}, ev = {0};
            sv4_encode(&en, dn, dnl, false);
            sv4_encode(&ev, dv, dvl, false);
            sv4_puts(&en, "");
            sv4_puts(&ev, "");
            ps[np].name = en.p;
            ps[np].value = ev.p;
            np++;
            free(dn);
            free(dv);
        }
        p = amp ? amp + 1 : NULL;
    }
    qsort(ps, np, sizeof(ps[0]), sv4_param_cmp);
    for (size_t i = 0; i < np; i++) {
        if (i)
            sv4_puts(out, "&");
        sv4_puts(out, ps[i].name);
        sv4_puts(out, "=");
        sv4_puts(out, ps[i].value);
        free(ps[i].name);
        free(ps[i].value);
    }
}

/* Appends a header value trimmed, inner runs of blanks made one space. */
static void
sv4_trim_value(sv4_buf_t *b, const char *v)
{
    while (*v == ' ' || *v == '\t')
        v++;
    bool space = false;
    for (; *v; v++) {
        if (*v == ' ' || *v == '\t') {
            space = true;
            continue;
        }
        if (space)
            sv4_puts(b, " ");
        space = false;
        sv4_put(b, v, 1);
    }
}

/* True if name (lowercased) is in the ";"-separated list signed. */
static bool
sv4_listed(const char *signed_names, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = signed_names; p && *p;) {
        const char *e = strchr(p, ';');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == n && strncasecmp(p, name, n) == 0)
            return true;
        p = e ? e + 1 : NULL;
    }
    return false;
}

static int
sv4_name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/*
 * The canonical request of a request as sent: method, the request target's
 * path and query (raw, as in the request line; query without "?", may be ""),
 * its headers (nh of them, names in any case; repeated names allowed), the
 * headers to sign (";"-separated; NULL: all of them, and *signed_out gets the
 * list) and the payload hash. s3: S3's URI rule (encode once). Returns a
 * malloc'd string.
 */
static char *
sv4_canonical(const char *method, const char *path, const char *query, const sv4_hdr_t *h,
              size_t nh, const char *signed_names, const char *payload_hash, bool s3,
              char **signed_out)
{
    sv4_buf_t b = {0};
    sv4_puts(&b, method);
    sv4_puts(&b, "\n");
    if (s3) {
        char *d = malloc(strlen(path) + 1);
        size_t dl = sv4_decode(path, strlen(path), d);
        sv4_encode(&b, d, dl, true);
        free(d);
    } else {
        sv4_encode(&b, path, strlen(path), true);
    }
    sv4_puts(&b, "\n");
    sv4_canonical_query(&b, query ? query : "");
    sv4_puts(&b, "\n");
    /* Distinct lowercase names to sign, sorted. */
    char *names[64];
    size_t nn = 0;
    for (size_t i = 0; i < nh && nn < 64; i++) {
        char low[128];
        snprintf(low, sizeof(low), "%s", h[i].name);
        for (char *c = low; *c; c++)
            *c = (char)tolower((unsigned char)*c);
        if (signed_names && !sv4_listed(signed_names, low))
            continue;
        bool dup = false;
        for (size_t k = 0; k < nn; k++)
            dup = dup || strcmp(names[k], low) == 0;
        if (!dup)
            names[nn++] = strdup(low);
    }
    qsort(names, nn, sizeof(names[0]), sv4_name_cmp);
    sv4_buf_t sl = {0};
    sv4_puts(&sl, "");
    for (size_t k = 0; k < nn; k++) {
        sv4_puts(&b, names[k]);
        sv4_puts(&b, ":");
        bool first = true;
        for (size_t i = 0; i < nh; i++) {
            if (strcasecmp(h[i].name, names[k]) != 0)
                continue;
            if (!first)
                sv4_puts(&b, ",");
            first = false;
            sv4_trim_value(&b, h[i].value);
        }
        sv4_puts(&b, "\n");
        if (k)
            sv4_puts(&sl, ";");
        sv4_puts(&sl, names[k]);
        free(names[k]);
    }
    sv4_puts(&b, "\n");
    sv4_puts(&b, sl.p);
    sv4_puts(&b, "\n");
    sv4_puts(&b, payload_hash);
    if (signed_out)
        *signed_out = sl.p;
    else
        free(sl.p);
    return b.p;
}

/* The string to sign of a canonical request at amz_date ("20150830T123600Z"). */
static char *
sv4_string_to_sign(const char *creq, const char *amz_date, const char *region, const char *service)
{
    char h[65];
    sv4_sha256_hex(creq, strlen(creq), h);
    sv4_buf_t b = {0};
    sv4_puts(&b, "AWS4-HMAC-SHA256\n");
    sv4_puts(&b, amz_date);
    sv4_puts(&b, "\n");
    sv4_put(&b, amz_date, 8);
    sv4_puts(&b, "/");
    sv4_puts(&b, region);
    sv4_puts(&b, "/");
    sv4_puts(&b, service);
    sv4_puts(&b, "/aws4_request\n");
    sv4_puts(&b, h);
    return b.p;
}

/* The signature (out: 65 bytes) of a string to sign. */
static void
sv4_signature(const char *secret, const char *amz_date, const char *region, const char *service,
              const char *sts, char *out)
{
    char k0[256], day[9];
    snprintf(k0, sizeof(k0), "AWS4%s", secret);
    snprintf(day, sizeof(day), "%.8s", amz_date);
    unsigned char kd[32], kr[32], ks[32], kc[32], sig[32];
    sv4_hmac(k0, strlen(k0), day, kd);
    sv4_hmac(kd, 32, region, kr);
    sv4_hmac(kr, 32, service, ks);
    sv4_hmac(ks, 32, "aws4_request", kc);
    sv4_hmac(kc, 32, sts, sig);
    sv4_hex(sig, 32, out);
}

/* The Authorization header value of a signed request (malloc'd). */
static char *
sv4_authorization(const char *access, const char *amz_date, const char *region, const char *service,
                  const char *signed_names, const char *signature)
{
    size_t n = strlen(access) + strlen(region) + strlen(service) + strlen(signed_names) + 200;
    char *out = malloc(n);
    snprintf(out, n,
             "AWS4-HMAC-SHA256 Credential=%s/%.8s/%s/%s/aws4_request, SignedHeaders=%s, "
             "Signature=%s",
             access, amz_date, region, service, signed_names, signature);
    return out;
}

#endif
