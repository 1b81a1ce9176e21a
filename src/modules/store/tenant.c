/*
 * tenant.c: which store a request is for, and the in-process cache of those
 * answers. The I/O threads read the cache on every store-scoped request, the
 * workers fill it after a database lookup and clear a store's entries when
 * the store changes. Entries also expire (TTL), which bounds staleness when
 * another shopd process changed a store.
 */
#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "shopd/store.h"

#define NEGATIVE_TTL_US 5000000u

/* A store as the cache keeps it: the snapshot's fixed fields, then its strings
 * back to back, each NUL-terminated, in one allocation of just their size. A
 * store_snap_t is 3.6 KB of arrays sized for the longest name, domain, public
 * JSON and origin list; a typical store packs into a few hundred bytes, and its
 * entries under "slug:", "id:" and "domain:" keys share one packed copy (10,000
 * live stores cost 70 MB before, kept twice each). Unpacked into the caller's
 * store_snap_t by store_cache_get. Reference counted under the cache's write
 * lock (readers copy it out under the read lock, so nothing frees it meanwhile). */
typedef struct packed_s {
    uint32_t refs;
    int status;
    uint64_t id;
    uint32_t rate_quota;
    uint16_t len[6]; /* slug, name, currency, domain, public_json, cors */
    char data[];
} packed_t;

typedef struct entry_s {
    struct entry_s *next;
    packed_t *snap;
    uint64_t expires_us;
    char key[];
} entry_t;

static size_t
clen(const char *s, size_t cap)
{
    size_t n = strnlen(s, cap);
    return n < cap ? n : cap - 1;
}

static packed_t *
pack(const store_snap_t *s)
{
    size_t pl = s->public_len < sizeof(s->public_json) ? s->public_len : 0;
    size_t l[6] = {clen(s->slug, sizeof(s->slug)),
                   clen(s->name, sizeof(s->name)),
                   clen(s->currency, sizeof(s->currency)),
                   clen(s->domain, sizeof(s->domain)),
                   pl,
                   clen(s->cors, sizeof(s->cors))};
    const char *src[6] = {s->slug, s->name, s->currency, s->domain, s->public_json, s->cors};
    size_t total = 0;
    for (int i = 0; i < 6; i++)
        total += l[i] + 1;
    packed_t *p = shopd_malloc(sizeof(*p) + total);
    p->refs = 0;
    p->status = s->status;
    p->id = s->id;
    p->rate_quota = s->rate_quota;
    char *w = p->data;
    for (int i = 0; i < 6; i++) {
        p->len[i] = (uint16_t)l[i];
        memcpy(w, src[i], l[i]);
        w[l[i]] = '\0';
        w += l[i] + 1;
    }
    return p;
}

static void
unpack(const packed_t *p, store_snap_t *out)
{
    char *dst[6] = {out->slug, out->name, out->currency, out->domain, out->public_json, out->cors};
    const char *r = p->data;
    out->id = p->id;
    out->status = p->status;
    out->rate_quota = p->rate_quota;
    for (int i = 0; i < 6; i++) {
        memcpy(dst[i], r, (size_t)p->len[i] + 1);
        r += p->len[i] + 1;
    }
    out->public_len = p->len[4];
}

static void
packed_unref(packed_t *p)
{
    if (p && --p->refs == 0)
        shopd_free(p);
}

static void
entry_free(entry_t *e)
{
    packed_unref(e->snap);
    shopd_free(e);
}

struct store_cache_s {
    pthread_rwlock_t lock;
    entry_t **buckets;
    size_t nbuckets;
    size_t n;
    uint64_t ttl_us;
};

bool
store_slug_valid(const char *s, size_t n)
{
    if (n < 3 || n > 63)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
            return false;
    }
    return s[0] != '-' && s[n - 1] != '-';
}

bool
store_domain_valid(const char *s)
{
    size_t n = strlen(s), label = 0;
    if (n < 1 || n > 253 || s[0] == '.' || s[n - 1] == '.' || !strchr(s, '.'))
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '.') {
            if (label == 0 || s[i - 1] == '-')
                return false;
            label = 0;
            continue;
        }
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
            return false;
        if (label == 0 && c == '-')
            return false;
        if (++label > 63)
            return false;
    }
    return true;
}

/* ISO 4217 codes in use (2024), sorted for bsearch. */
static const char *const currencies[] = {
    "AED", "AFN", "ALL", "AMD", "ANG", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT",
    "BGN", "BHD", "BIF", "BMD", "BND", "BOB", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD", "CAD",
    "CDF", "CHF", "CLP", "CNY", "COP", "CRC", "CUP", "CVE", "CZK", "DJF", "DKK", "DOP", "DZD",
    "EGP", "ERN", "ETB", "EUR", "FJD", "FKP", "GBP", "GEL", "GHS", "GIP", "GMD", "GNF", "GTQ",
    "GYD", "HKD", "HNL", "HTG", "HUF", "IDR", "ILS", "INR", "IQD", "IRR", "ISK", "JMD", "JOD",
    "JPY", "KES", "KGS", "KHR", "KMF", "KPW", "KRW", "KWD", "KYD", "KZT", "LAK", "LBP", "LKR",
    "LRD", "LSL", "LYD", "MAD", "MDL", "MGA", "MKD", "MMK", "MNT", "MOP", "MRU", "MUR", "MVR",
    "MWK", "MXN", "MYR", "MZN", "NAD", "NGN", "NIO", "NOK", "NPR", "NZD", "OMR", "PAB", "PEN",
    "PGK", "PHP", "PKR", "PLN", "PYG", "QAR", "RON", "RSD", "RUB", "RWF", "SAR", "SBD", "SCR",
    "SDG", "SEK", "SGD", "SHP", "SLE", "SOS", "SRD", "SSP", "STN", "SVC", "SYP", "SZL", "THB",
    "TJS", "TMT", "TND", "TOP", "TRY", "TTD", "TWD", "TZS", "UAH", "UGX", "USD", "UYU", "UZS",
    "VES", "VND", "VUV", "WST", "XAF", "XCD", "XOF", "XPF", "YER", "ZAR", "ZMW", "ZWL"};

static int
cmp_code(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

bool
store_currency_valid(const char *code)
{
    if (code == NULL || strlen(code) != 3)
        return false;
    return bsearch(&code, currencies, SHOPD_ARRAY_LEN(currencies), sizeof(currencies[0]),
                   cmp_code) != NULL;
}

/* A host an origin may name: a DNS name, "localhost", or a dotted IPv4 address. */
static bool
origin_host_valid(const char *h, size_t n)
{
    char buf[254];
    if (n == 0 || n >= sizeof(buf))
        return false;
    memcpy(buf, h, n);
    buf[n] = '\0';
    if (strcmp(buf, "localhost") == 0)
        return true;
    size_t digits = strspn(buf, "0123456789.");
    if (digits == n)
        return n >= 7 && n <= 15;
    return store_domain_valid(buf);
}

bool
store_origin_valid(const char *s, size_t n)
{
    size_t sl;
    if (n > 200)
        return false;
    if (n > 8 && memcmp(s, "https://", 8) == 0)
        sl = 8;
    else if (n > 7 && memcmp(s, "http://", 7) == 0)
        sl = 7;
    else
        return false;
    const char *h = s + sl, *end = s + n;
    if (end - h > 2 && h[0] == '*' && h[1] == '.') {
        /* A wildcard names a registrable-looking domain (two labels at least),
         * so a host "*.com" cannot open a store to every site. */
        const char *d = h + 2;
        size_t dl = (size_t)(end - d);
        return memchr(d, '.', dl) != NULL && origin_host_valid(d, dl) && memchr(d, ':', dl) == NULL;
    }
    const char *colon = memchr(h, ':', (size_t)(end - h));
    size_t hl = colon ? (size_t)(colon - h) : (size_t)(end - h);
    if (!origin_host_valid(h, hl))
        return false;
    if (colon) {
        size_t pl = (size_t)(end - colon - 1);
        if (pl == 0 || pl > 5 || strspn(colon + 1, "0123456789") < pl)
            return false;
        long port = strtol(colon + 1, NULL, 10);
        if (port < 1 || port > 65535 || colon[1] == '0')
            return false;
    }
    return true;
}

bool
store_origin_allowed(const char *list, const char *origin)
{
    if (list == NULL || origin == NULL || origin[0] == '\0')
        return false;
    size_t on = strlen(origin);
    for (const char *p = list; *p;) {
        const char *e = strchr(p, ',');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        const char *star = l > 3 ? memchr(p, '*', l) : NULL;
        if (star == NULL) {
            if (l == on && strncasecmp(p, origin, l) == 0)
                return true;
        } else {
            /* A wildcard (host "*.domain"): same scheme, then a host of at least one more
             * label ending in ".domain", and no port. */
            size_t pre = (size_t)(star - p), suf = l - pre - 1; /* suf = ".domain" */
            if (on > pre + suf && strncasecmp(origin, p, pre) == 0 &&
                strncasecmp(origin + on - suf, star + 1, suf) == 0) {
                const char *label = origin + pre;
                size_t ll = on - pre - suf;
                bool ok = ll > 0;
                for (size_t i = 0; i < ll && ok; i++) {
                    char c = (char)tolower((unsigned char)label[i]);
                    ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.';
                }
                if (ok && label[0] != '.' && label[0] != '-')
                    return true;
            }
        }
        p = e ? e + 1 : p + l;
    }
    return false;
}

int
store_tenant_key(const char *x_tenant, const char *host, const char *base_domain, char *key,
                 size_t keylen)
{
    if (x_tenant && *x_tenant) {
        size_t n = strlen(x_tenant);
        bool digits = n > 0;
        for (size_t i = 0; i < n && digits; i++)
            digits = isdigit((unsigned char)x_tenant[i]);
        if (digits) {
            /* An id past the bigint range names no store: refused here, never a
             * database round trip. */
            uint64_t id;
            if (!shopd_id_parse(x_tenant, n, &id))
                return -1;
            snprintf(key, keylen, "id:%llu", (unsigned long long)id);
            return 0;
        }
        if (!store_slug_valid(x_tenant, n))
            return -1;
        snprintf(key, keylen, "slug:%s", x_tenant);
        return 0;
    }
    if (host == NULL || *host == '\0')
        return -1;

    /* Lower-case the host and drop the port ("Shop.Example.com:8080"). */
    char h[256];
    size_t n = 0;
    if (host[0] == '[')
        return -1; /* an IPv6 literal names no store */
    for (; host[n] && host[n] != ':'; n++) {
        if (n >= sizeof(h) - 1)
            return -1;
        h[n] = (char)tolower((unsigned char)host[n]);
    }
    h[n] = '\0';
    if (n > 0 && h[n - 1] == '.')
        h[--n] = '\0'; /* absolute form "shop.example.com." */
    if (n == 0)
        return -1;

    if (base_domain && *base_domain) {
        size_t bl = strlen(base_domain);
        if (n > bl + 1 && h[n - bl - 1] == '.' && strcasecmp(h + n - bl, base_domain) == 0) {
            size_t sl = n - bl - 1;
            if (!store_slug_valid(h, sl))
                return -1;
            snprintf(key, keylen, "slug:%.*s", (int)sl, h);
            return 0;
        }
        if (strcasecmp(h, base_domain) == 0)
            return -1; /* the bare platform domain */
    }
    if (!store_domain_valid(h))
        return -1;
    snprintf(key, keylen, "domain:%s", h);
    return 0;
}

/* ------------------------------------------------------------ cache */

static uint64_t
hash_key(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

store_cache_t *
store_cache_new(unsigned ttl_s)
{
    store_cache_t *c = shopd_calloc(1, sizeof(*c));
    pthread_rwlock_init(&c->lock, NULL);
    c->nbuckets = 1024;
    c->buckets = shopd_calloc(c->nbuckets, sizeof(entry_t *));
    c->ttl_us = (uint64_t)ttl_s * 1000000u;
    return c;
}

void
store_cache_free(store_cache_t *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; i < c->nbuckets; i++) {
        entry_t *e = c->buckets[i];
        while (e) {
            entry_t *n = e->next;
            entry_free(e);
            e = n;
        }
    }
    shopd_free(c->buckets);
    pthread_rwlock_destroy(&c->lock);
    shopd_free(c);
}

bool
store_cache_get(store_cache_t *c, const char *key, store_snap_t *out)
{
    bool hit = false;
    uint64_t now = shopd_now_us();
    pthread_rwlock_rdlock(&c->lock);
    for (entry_t *e = c->buckets[hash_key(key) & (c->nbuckets - 1)]; e; e = e->next) {
        if (strcmp(e->key, key) == 0) {
            if (e->expires_us > now) {
                unpack(e->snap, out);
                hit = true;
            }
            break;
        }
    }
    pthread_rwlock_unlock(&c->lock);
    return hit;
}

static void
grow(store_cache_t *c)
{
    size_t nb = c->nbuckets * 2;
    entry_t **b = shopd_calloc(nb, sizeof(entry_t *));
    for (size_t i = 0; i < c->nbuckets; i++) {
        entry_t *e = c->buckets[i];
        while (e) {
            entry_t *n = e->next;
            size_t j = hash_key(e->key) & (nb - 1);
            e->next = b[j];
            b[j] = e;
            e = n;
        }
    }
    shopd_free(c->buckets);
    c->buckets = b;
    c->nbuckets = nb;
}

/* Caller holds the write lock; the entry takes a reference to snap. */
static void
put_locked(store_cache_t *c, const char *key, packed_t *snap, uint64_t expires)
{
    entry_t **slot = &c->buckets[hash_key(key) & (c->nbuckets - 1)];
    snap->refs++;
    for (entry_t *e = *slot; e; e = e->next) {
        if (strcmp(e->key, key) == 0) {
            packed_unref(e->snap);
            e->snap = snap;
            e->expires_us = expires;
            return;
        }
    }
    size_t kl = strlen(key);
    entry_t *e = shopd_malloc(sizeof(*e) + kl + 1);
    memcpy(e->key, key, kl + 1);
    e->snap = snap;
    e->expires_us = expires;
    e->next = *slot;
    *slot = e;
    if (++c->n > c->nbuckets)
        grow(c);
}

/* Drops expired entries so a scan of unknown hosts cannot grow the cache without
 * bound; caller holds the write lock. Runs when the table doubles its size. */
static void
sweep_locked(store_cache_t *c, uint64_t now)
{
    for (size_t i = 0; i < c->nbuckets; i++) {
        entry_t **pp = &c->buckets[i];
        while (*pp) {
            entry_t *e = *pp;
            if (e->expires_us <= now) {
                *pp = e->next;
                entry_free(e);
                c->n--;
            } else {
                pp = &e->next;
            }
        }
    }
}

void
store_cache_put(store_cache_t *c, const char *key, const store_snap_t *snap)
{
    if (c->ttl_us == 0)
        return;
    uint64_t now = shopd_now_us();
    uint64_t ttl =
        snap->id ? c->ttl_us : (c->ttl_us < NEGATIVE_TTL_US ? c->ttl_us : NEGATIVE_TTL_US);
    packed_t *p = pack(snap); /* outside the lock: it copies a few KB at most */
    pthread_rwlock_wrlock(&c->lock);
    if (c->n >= c->nbuckets - 1)
        sweep_locked(c, now);
    p->refs = 1; /* ours until the puts below hold theirs */
    put_locked(c, key, p, now + ttl);
    if (snap->id) {
        char idkey[32];
        snprintf(idkey, sizeof(idkey), "id:%llu", (unsigned long long)snap->id);
        if (strcmp(idkey, key) != 0)
            put_locked(c, idkey, p, now + ttl);
    }
    packed_unref(p);
    pthread_rwlock_unlock(&c->lock);
}

void
store_cache_invalidate(store_cache_t *c, uint64_t id)
{
    pthread_rwlock_wrlock(&c->lock);
    for (size_t i = 0; i < c->nbuckets; i++) {
        entry_t **pp = &c->buckets[i];
        while (*pp) {
            entry_t *e = *pp;
            if (e->snap->id == id || e->snap->id == 0) {
                *pp = e->next;
                entry_free(e);
                c->n--;
            } else {
                pp = &e->next;
            }
        }
    }
    pthread_rwlock_unlock(&c->lock);
}

size_t
store_cache_size(store_cache_t *c)
{
    pthread_rwlock_rdlock(&c->lock);
    size_t n = c->n;
    pthread_rwlock_unlock(&c->lock);
    return n;
}
