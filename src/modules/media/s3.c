/*
 * s3.c: the S3 storage backend over libcurl. Requests are signed by libcurl
 * (CURLOPT_AWS_SIGV4 "aws:amz:<region>:s3") with the payload's SHA-256 given
 * in x-amz-content-sha256, which S3 requires and which libcurl then signs
 * as the payload hash instead of computing one (so the header and the
 * signature always agree). Endpoints: AWS (https://s3.<region>.amazonaws.com)
 * or any S3-compatible service (SHOPD_S3_ENDPOINT), virtual-hosted
 * (bucket.host/key) or path-style (host/bucket/key). Objects above
 * SHOPD_S3_MULTIPART_BYTES go up as a multipart upload (parts of that size;
 * aborted on failure, so no parts stay billed). A 5xx or a transport error is
 * retried three times with backoff (100, 400, 1600 ms); a 4xx is final.
 *
 * Threads: any (blocking pool): a curl handle per request, the settings
 * read-only after media_s3_init.
 */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "media_priv.h"
#include "shopd/log.h"

static struct {
    char endpoint[512]; /* scheme://host[:port], no slash at the end */
    char bucket[128];
    char region[64];
    char userpwd[512]; /* access:secret */
    bool path_style;
    size_t multipart;
    int timeout_ms;
} s3;

typedef struct buf_s {
    char *p;
    size_t n, cap, max;
} buf_t;

static size_t
grow_cb(char *d, size_t sz, size_t nm, void *ud)
{
    buf_t *b = ud;
    size_t n = sz * nm;
    if (b->max && b->n + n > b->max)
        return 0; /* more than we would ever keep: fail the transfer */
    if (b->n + n + 1 > b->cap) {
        b->cap = (b->n + n + 1) * 2;
        b->p = shopd_realloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
    b->p[b->n] = '\0';
    return n;
}

/* The URL of key (query appended as is, may be NULL or ""). */
static void
object_url(const char *key, const char *query, char *out, size_t cap)
{
    const char *q = query && query[0] ? "?" : "";
    if (s3.path_style) {
        snprintf(out, cap, "%s/%s/%s%s%s", s3.endpoint, s3.bucket, key, q, query ? query : "");
        return;
    }
    const char *host = strstr(s3.endpoint, "://");
    size_t scheme = host ? (size_t)(host - s3.endpoint) + 3 : 0;
    snprintf(out, cap, "%.*s%s.%s/%s%s%s", (int)scheme, s3.endpoint, s3.bucket,
             s3.endpoint + scheme, key, q, query ? query : "");
}

/* A query value in SigV4's canonical form (every byte but A-Z a-z 0-9 - . _ ~
 * percent-encoded, uppercase hex): libcurl 7.88 signs the query as written,
 * so a value sent any other way (an UploadId or a continuation token with
 * "+", "/" or "=") would be signed in a form S3 does not compute. False if it
 * does not fit. */
static bool
query_encode(const char *s, char *out, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t k = 0;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        bool plain = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                     c == '-' || c == '.' || c == '_' || c == '~';
        if (k + (plain ? 1 : 3) >= cap)
            return false;
        if (plain) {
            out[k++] = (char)c;
        } else {
            out[k++] = '%';
            out[k++] = hex[c >> 4];
            out[k++] = hex[c & 15];
        }
    }
    out[k] = '\0';
    return true;
}

void
media_s3_object_url(const char *key, char *out, size_t cap)
{
    object_url(key, NULL, out, cap);
}

/* One request, retried on 5xx and transport errors. Returns the HTTP status
 * (0: no answer after the retries); the answer's body in *ans when not NULL. */
static long
request(const char *method, const char *url, const void *body, size_t blen, const char *mime,
        buf_t *ans)
{
    char sha[65], hsha[96], sigv4[96];
    media_sha256_hex(body ? body : "", body ? blen : 0, sha);
    snprintf(hsha, sizeof(hsha), "x-amz-content-sha256: %s", sha);
    snprintf(sigv4, sizeof(sigv4), "aws:amz:%s:s3", s3.region);
    long status = 0;
    for (int attempt = 0; attempt < 4; attempt++) {
        if (attempt > 0)
            usleep((useconds_t)(100000u << (2 * (attempt - 1)))); /* 100, 400, 1600 ms */
        CURL *h = curl_easy_init();
        if (h == NULL)
            return 0;
        struct curl_slist *hs = curl_slist_append(NULL, hsha);
        char ct[160];
        if (mime) {
            snprintf(ct, sizeof(ct), "Content-Type: %s", mime);
            hs = curl_slist_append(hs, ct);
        }
        buf_t tmp = {0};
        tmp.max = 1 << 30;
        curl_easy_setopt(h, CURLOPT_URL, url);
        curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
        curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)s3.timeout_ms);
        curl_easy_setopt(h, CURLOPT_AWS_SIGV4, sigv4);
        curl_easy_setopt(h, CURLOPT_USERPWD, s3.userpwd);
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, hs);
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, grow_cb);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, &tmp);
        if (strcmp(method, "GET") != 0 && strcmp(method, "DELETE") != 0) {
            curl_easy_setopt(h, CURLOPT_POSTFIELDS, body ? body : "");
            curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(body ? blen : 0));
        }
        CURLcode cc = curl_easy_perform(h);
        status = 0;
        if (cc == CURLE_OK)
            curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
        curl_slist_free_all(hs);
        curl_easy_cleanup(h);
        if (cc == CURLE_OK && status < 500) {
            if (ans) {
                shopd_free(ans->p);
                *ans = tmp;
            } else {
                shopd_free(tmp.p);
            }
            return status;
        }
        log_warn("media s3: %s %s: %s (attempt %d)", method, url,
                 cc != CURLE_OK ? curl_easy_strerror(cc) : "server error", attempt + 1);
        shopd_free(tmp.p);
    }
    return status;
}

/* The text between <tag> and </tag> in xml, into out; false if absent. */
static bool
xml_value(const char *xml, const char *tag, char *out, size_t cap)
{
    char open[64], close[64];
    snprintf(open, sizeof(open), "<%s>", tag);
    snprintf(close, sizeof(close), "</%s>", tag);
    const char *a = xml ? strstr(xml, open) : NULL;
    const char *b = a ? strstr(a, close) : NULL;
    if (a == NULL || b == NULL)
        return false;
    a += strlen(open);
    if ((size_t)(b - a) >= cap)
        return false;
    memcpy(out, a, (size_t)(b - a));
    out[b - a] = '\0';
    return true;
}

/* The ETag header is what CompleteMultipartUpload wants; s3rver and S3 also
 * send it in the body of UploadPart only as a header, so it is read there. */
static long
put_part(const char *url, const void *p, size_t n, char *etag, size_t cap)
{
    char sha[65], hsha[96], sigv4[96];
    media_sha256_hex(p, n, sha);
    snprintf(hsha, sizeof(hsha), "x-amz-content-sha256: %s", sha);
    snprintf(sigv4, sizeof(sigv4), "aws:amz:%s:s3", s3.region);
    long status = 0;
    for (int attempt = 0; attempt < 4; attempt++) {
        if (attempt > 0)
            usleep((useconds_t)(100000u << (2 * (attempt - 1))));
        CURL *h = curl_easy_init();
        struct curl_slist *hs = curl_slist_append(NULL, hsha);
        /* Else libcurl adds application/x-www-form-urlencoded (a POSTFIELDS
         * body) after signing: sent unsigned. S3 ignores a part's type; this
         * one is at least signed like every other header. */
        hs = curl_slist_append(hs, "Content-Type: application/octet-stream");
        buf_t hdr = {0}, body = {0};
        hdr.max = body.max = 1 << 20;
        curl_easy_setopt(h, CURLOPT_URL, url);
        curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, "PUT");
        curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)s3.timeout_ms);
        curl_easy_setopt(h, CURLOPT_AWS_SIGV4, sigv4);
        curl_easy_setopt(h, CURLOPT_USERPWD, s3.userpwd);
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, hs);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, p);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)n);
        curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, grow_cb);
        curl_easy_setopt(h, CURLOPT_HEADERDATA, &hdr);
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, grow_cb);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, &body);
        CURLcode cc = curl_easy_perform(h);
        status = 0;
        if (cc == CURLE_OK)
            curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
        curl_slist_free_all(hs);
        curl_easy_cleanup(h);
        bool done = cc == CURLE_OK && status < 500;
        if (done && status == 200) {
            etag[0] = '\0';
            for (char *l = hdr.p; l && *l;) {
                char *eol = strstr(l, "\r\n");
                if (strncasecmp(l, "ETag:", 5) == 0 && eol) {
                    char *v = l + 5;
                    while (*v == ' ')
                        v++;
                    snprintf(etag, cap, "%.*s", (int)(eol - v), v);
                }
                l = eol ? eol + 2 : NULL;
            }
        }
        shopd_free(hdr.p);
        shopd_free(body.p);
        if (done)
            return status;
    }
    return status;
}

static shopd_rc_t
multipart_put(const char *key, const void *p, size_t n, const char *mime)
{
    char url[3200];
    /* "uploads=", not "uploads": libcurl 7.88 signs the query as written, and
     * SigV4's canonical form of a parameter without a value has the "="
     * (found by the aws4 cross-check in tests/s3). Parameters below are also
     * written in their canonical (sorted) order for the same reason. */
    object_url(key, "uploads=", url, sizeof(url));
    buf_t ans = {0};
    long st = request("POST", url, "", 0, mime, &ans);
    char upload_id[512], uid[1600];
    if (st != 200 || !xml_value(ans.p, "UploadId", upload_id, sizeof(upload_id)) ||
        !query_encode(upload_id, uid, sizeof(uid))) {
        log_error("media s3: cannot start a multipart upload of %s (status %ld)", key, st);
        shopd_free(ans.p);
        return SHOPD_ERR;
    }
    shopd_free(ans.p);
    size_t nparts = (n + s3.multipart - 1) / s3.multipart;
    size_t cap = 128 + nparts * 160;
    char *xml = shopd_malloc(cap);
    size_t xl = (size_t)snprintf(xml, cap, "<CompleteMultipartUpload>");
    shopd_rc_t rc = SHOPD_OK;
    for (size_t i = 0; i < nparts; i++) {
        char q[1700], etag[128] = "";
        snprintf(q, sizeof(q), "partNumber=%zu&uploadId=%s", i + 1, uid);
        object_url(key, q, url, sizeof(url));
        size_t off = i * s3.multipart, len = n - off < s3.multipart ? n - off : s3.multipart;
        if (put_part(url, (const char *)p + off, len, etag, sizeof(etag)) != 200 || !etag[0]) {
            rc = SHOPD_ERR;
            break;
        }
        xl += (size_t)snprintf(xml + xl, cap - xl,
                               "<Part><PartNumber>%zu</PartNumber><ETag>%s</ETag></Part>", i + 1,
                               etag);
    }
    char q[1700];
    snprintf(q, sizeof(q), "uploadId=%s", uid);
    object_url(key, q, url, sizeof(url));
    if (rc == SHOPD_OK) {
        xl += (size_t)snprintf(xml + xl, cap - xl, "</CompleteMultipartUpload>");
        buf_t done = {0};
        st = request("POST", url, xml, xl, "application/xml", &done);
        /* S3 may answer 200 with an <Error> body to a CompleteMultipartUpload. */
        if (st != 200 || (done.p && strstr(done.p, "<Error>")))
            rc = SHOPD_ERR;
        shopd_free(done.p);
    }
    if (rc != SHOPD_OK) {
        request("DELETE", url, NULL, 0, NULL, NULL); /* abort: drop the parts */
        log_error("media s3: multipart upload of %s failed", key);
    }
    shopd_free(xml);
    return rc;
}

static shopd_rc_t
s3_put(const char *key, const void *p, size_t n, const char *mime)
{
    if (n > s3.multipart)
        return multipart_put(key, p, n, mime);
    char url[1400];
    object_url(key, NULL, url, sizeof(url));
    long st = request("PUT", url, p, n, mime, NULL);
    if (st != 200) {
        log_error("media s3: PUT %s: status %ld", key, st);
        return SHOPD_ERR;
    }
    return SHOPD_OK;
}

static shopd_rc_t
s3_get(const char *key, char **out, size_t *n)
{
    char url[1400];
    object_url(key, NULL, url, sizeof(url));
    buf_t ans = {0};
    long st = request("GET", url, NULL, 0, NULL, &ans);
    *out = NULL;
    *n = 0;
    if (st == 200) {
        *out = ans.p ? ans.p : shopd_calloc(1, 1);
        *n = ans.n;
        return SHOPD_OK;
    }
    shopd_free(ans.p);
    return st == 404 ? SHOPD_NOTFOUND : SHOPD_ERR;
}

static shopd_rc_t
s3_del(const char *key)
{
    char url[1400];
    object_url(key, NULL, url, sizeof(url));
    long st = request("DELETE", url, NULL, 0, NULL, NULL);
    return st == 204 || st == 200 || st == 404 ? SHOPD_OK : SHOPD_ERR;
}

/* xml (n bytes) with the five predefined entities decoded, into out. */
static void
xml_text(const char *xml, size_t n, char *out, size_t cap)
{
    static const char *const ent[][2] = {
        {"&amp;", "&"}, {"&lt;", "<"}, {"&gt;", ">"}, {"&quot;", "\""}, {"&apos;", "'"}};
    size_t k = 0;
    for (size_t i = 0; i < n && k + 1 < cap;) {
        size_t e = 0;
        while (xml[i] == '&' && e < 5 && strncmp(xml + i, ent[e][0], strlen(ent[e][0])) != 0)
            e++;
        if (xml[i] == '&' && e < 5) {
            out[k++] = ent[e][1][0];
            i += strlen(ent[e][0]);
        } else {
            out[k++] = xml[i++];
        }
    }
    out[k] = '\0';
}

/* Every object under prefix: ListObjectsV2 pages (1000 keys each) by prefix,
 * each listed object deleted. A key under the prefix that is not a media key
 * (nothing shopd wrote) is left, and logged. */
static shopd_rc_t
s3_purge(const char *prefix)
{
    char pfx[300], token[1024] = "", tok[3100], q[3600], url[5200];
    if (!query_encode(prefix, pfx, sizeof(pfx)))
        return SHOPD_INVALID;
    size_t pl = strlen(prefix);
    shopd_rc_t rc = SHOPD_OK;
    for (;;) {
        /* In canonical order (sorted, encoded): libcurl signs it as written. */
        if (token[0]) {
            if (!query_encode(token, tok, sizeof(tok)))
                return SHOPD_ERR;
            snprintf(q, sizeof(q), "continuation-token=%s&list-type=2&prefix=%s", tok, pfx);
        } else {
            snprintf(q, sizeof(q), "list-type=2&prefix=%s", pfx);
        }
        if (s3.path_style) {
            snprintf(url, sizeof(url), "%s/%s?%s", s3.endpoint, s3.bucket, q);
        } else {
            const char *host = strstr(s3.endpoint, "://");
            size_t scheme = host ? (size_t)(host - s3.endpoint) + 3 : 0;
            snprintf(url, sizeof(url), "%.*s%s.%s/?%s", (int)scheme, s3.endpoint, s3.bucket,
                     s3.endpoint + scheme, q);
        }
        buf_t ans = {0};
        long st = request("GET", url, NULL, 0, NULL, &ans);
        if (st != 200 || ans.p == NULL) {
            log_error("media s3: cannot list %s (status %ld)", prefix, st);
            shopd_free(ans.p);
            return SHOPD_ERR;
        }
        for (const char *a = strstr(ans.p, "<Key>"); a; a = strstr(a, "<Key>")) {
            a += 5;
            const char *b = strstr(a, "</Key>");
            if (b == NULL)
                break;
            char key[1024];
            xml_text(a, (size_t)(b - a), key, sizeof(key));
            a = b + 6;
            if (strncmp(key, prefix, pl) != 0 || !media_key_valid(key, strlen(key))) {
                log_warn("media s3: %s is under %s but not a media key: left", key, prefix);
                continue;
            }
            if (s3_del(key) != SHOPD_OK)
                rc = SHOPD_ERR;
        }
        char next[1024];
        bool more = strstr(ans.p, "<IsTruncated>true</IsTruncated>") != NULL &&
                    xml_value(ans.p, "NextContinuationToken", next, sizeof(next));
        if (more)
            xml_text(next, strlen(next), token, sizeof(token));
        shopd_free(ans.p);
        if (!more)
            return rc;
    }
}

const media_store_t media_s3_store = {
    .name = "s3",
    .put = s3_put,
    .get = s3_get,
    .del = s3_del,
    .purge = s3_purge,
};

int
media_s3_init(const cfg_t *cfg, char *err, size_t errlen)
{
    if (cfg->s3_bucket[0] == '\0' || cfg->s3_access_key[0] == '\0' ||
        cfg->s3_secret_key[0] == '\0') {
        snprintf(err, errlen,
                 "SHOPD_MEDIA_BACKEND=s3 needs SHOPD_S3_BUCKET, SHOPD_S3_ACCESS_KEY and "
                 "SHOPD_S3_SECRET_KEY");
        return -1;
    }
    if (cfg->s3_endpoint[0])
        snprintf(s3.endpoint, sizeof(s3.endpoint), "%s", cfg->s3_endpoint);
    else
        snprintf(s3.endpoint, sizeof(s3.endpoint), "https://s3.%s.amazonaws.com", cfg->s3_region);
    size_t el = strlen(s3.endpoint);
    while (el > 0 && s3.endpoint[el - 1] == '/')
        s3.endpoint[--el] = '\0';
    if (strncmp(s3.endpoint, "http://", 7) != 0 && strncmp(s3.endpoint, "https://", 8) != 0) {
        snprintf(err, errlen, "SHOPD_S3_ENDPOINT must be an http:// or https:// URL");
        return -1;
    }
    snprintf(s3.bucket, sizeof(s3.bucket), "%s", cfg->s3_bucket);
    snprintf(s3.region, sizeof(s3.region), "%s", cfg->s3_region);
    snprintf(s3.userpwd, sizeof(s3.userpwd), "%s:%s", cfg->s3_access_key, cfg->s3_secret_key);
    s3.path_style = cfg->s3_path_style;
    s3.multipart = (size_t)cfg->s3_multipart_bytes;
    s3.timeout_ms = cfg->s3_timeout_ms;
    return 0;
}
