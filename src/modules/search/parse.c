/*
 * parse.c: the search module's reading of its query, pure so that unit tests
 * can hold it to every rule (tests/unit/test_search.c): which parameters,
 * their bounds, the attr.<name> family, and the cursor's text form. The edge
 * (api_query_canon) has already refused unknown and repeated names; what is
 * left here is what the values mean.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shopd/search.h"

static int
hexv(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

bool
search_text_ok(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s, *e = p + n;
    while (p < e) {
        unsigned c = *p;
        size_t k;
        unsigned cp;
        if (c < 0x80) {
            if (c < 0x20 || c == 0x7f)
                return false;
            p++;
            continue;
        }
        if ((c & 0xe0) == 0xc0) {
            k = 1;
            cp = c & 0x1f;
        } else if ((c & 0xf0) == 0xe0) {
            k = 2;
            cp = c & 0x0f;
        } else if ((c & 0xf8) == 0xf0) {
            k = 3;
            cp = c & 0x07;
        } else {
            return false;
        }
        if ((size_t)(e - p) <= k)
            return false;
        for (size_t i = 1; i <= k; i++) {
            if ((p[i] & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (p[i] & 0x3f);
        }
        /* Overlong forms, surrogates and beyond U+10FFFF are not UTF-8. */
        if ((k == 1 && cp < 0x80) || (k == 2 && cp < 0x800) || (k == 3 && cp < 0x10000) ||
            (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff || (cp >= 0x80 && cp < 0xa0))
            return false;
        p += k + 1;
    }
    return true;
}

/* Percent-decodes v[0..n) into out (cap bytes, NUL-terminated). Returns the
 * decoded length, or (size_t)-1 when it does not fit. */
static size_t
decode(const char *v, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)v[i];
        if (c == '%' && i + 2 < n && hexv(v[i + 1]) >= 0 && hexv(v[i + 2]) >= 0) {
            c = (unsigned char)(hexv(v[i + 1]) * 16 + hexv(v[i + 2]));
            i += 2;
        } else if (c == '+') {
            c = ' ';
        }
        if (o + 1 >= cap)
            return (size_t)-1;
        out[o++] = (char)c;
    }
    out[o] = '\0';
    return o;
}

/* A decoded text value: 1..max bytes of clean UTF-8 into out, else an issue. */
static bool
text_value(api_val_t *v, const char *field, const char *raw, size_t rawlen, char *out, size_t max)
{
    char buf[1024];
    size_t n = decode(raw, rawlen, buf, sizeof(buf));
    char issue[96];
    if (n == (size_t)-1 || n > max || n == 0) {
        snprintf(issue, sizeof(issue), "must be 1 to %zu bytes long", max);
        api_val_add(v, field, issue);
        return false;
    }
    if (!search_text_ok(buf, n)) {
        api_val_add(v, field, "must be UTF-8 text without control characters");
        return false;
    }
    memcpy(out, buf, n + 1);
    return true;
}

static bool
int_value(const char *raw, size_t rawlen, long long min, long long max, long long *out)
{
    char buf[32];
    size_t n = decode(raw, rawlen, buf, sizeof(buf));
    return n != (size_t)-1 && shopd_int_parse(buf, min, max, out);
}

static const struct {
    const char *name;
    search_sort_t sort;
    char letter;
} sorts[] = {
    {"relevance", SEARCH_SORT_RELEVANCE, 'r'},
    {"price", SEARCH_SORT_PRICE, 'p'},
    {"-price", SEARCH_SORT_PRICE_DESC, 'd'},
    {"newest", SEARCH_SORT_NEWEST, 'n'},
};

static char
sort_letter(search_sort_t s)
{
    for (size_t i = 0; i < SHOPD_ARRAY_LEN(sorts); i++)
        if (sorts[i].sort == s)
            return sorts[i].letter;
    return '?';
}

bool
search_cursor_format(search_sort_t sort, const char *key, uint64_t id, char *out, size_t cap)
{
    size_t kl = strlen(key), o = 0;
    if (2 * kl + 24 > cap)
        return false;
    out[o++] = sort_letter(sort);
    for (size_t i = 0; i < kl; i++)
        o += (size_t)snprintf(out + o, cap - o, "%02x", (unsigned char)key[i]);
    snprintf(out + o, cap - o, ".%llu", (unsigned long long)id);
    return true;
}

bool
search_cursor_parse(search_sort_t sort, const char *s, char *key, size_t keycap, uint64_t *id)
{
    if (s[0] != sort_letter(sort))
        return false;
    s++;
    const char *dot = strchr(s, '.');
    if (dot == NULL || !shopd_id_parse(dot + 1, strlen(dot + 1), id))
        return false;
    size_t hl = (size_t)(dot - s);
    if (hl % 2 || hl / 2 + 1 > keycap)
        return false;
    for (size_t i = 0; i < hl; i += 2) {
        int a = hexv(s[i]), b = hexv(s[i + 1]);
        if (a < 0 || b < 0)
            return false;
        key[i / 2] = (char)(a * 16 + b);
    }
    key[hl / 2] = '\0';
    /* The key goes to PostgreSQL as a number of the sort's type: check it is one
     * here, so a forged cursor is a 422 and never a failed statement. */
    if (sort == SEARCH_SORT_NEWEST)
        return hl == 0;
    if (hl == 0 || strlen(key) != hl / 2)
        return false;
    if (sort == SEARCH_SORT_RELEVANCE) {
        /* What float8out writes, no more: strtod alone would take "0x1p1". */
        if (strspn(key, "0123456789.e-+") != strlen(key))
            return false;
        char *end;
        double d = strtod(key, &end);
        return *end == '\0' && d >= 0 && d < 10;
    }
    long long p;
    return shopd_int_parse(key, 0, INT64_MAX, &p);
}

static int
attr_cmp(const void *a, const void *b)
{
    return strcmp(((const search_attr_t *)a)->name, ((const search_attr_t *)b)->name);
}

void
search_parse(const char *query, size_t len, search_query_t *out, api_val_t *v)
{
    memset(out, 0, sizeof(*out));
    out->price_min = out->price_max = -1;
    out->limit = SEARCH_DEFAULT_LIMIT;
    const char *cursor = NULL, *end = query ? query + len : NULL;
    size_t cursor_len = 0;
    long long n;
    for (const char *p = query; p && p < end;) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *pe = amp ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(pe - p));
        const char *ke = eq ? eq : pe;
        const char *val = eq ? eq + 1 : pe;
        size_t kl = (size_t)(ke - p), vl = (size_t)(pe - val);
#define IS(name) (kl == strlen(name) && memcmp(p, name, kl) == 0)
        if (kl == 0) {
            /* nothing: "a=1&&b=2" */
        } else if (IS("q")) {
            text_value(v, "q", val, vl, out->q, SEARCH_MAX_Q);
        } else if (IS("category")) {
            if (int_value(val, vl, 1, INT64_MAX, &n))
                out->category_id = (uint64_t)n;
            else
                api_val_add(v, "category", "must be a category id");
        } else if (IS("brand")) {
            text_value(v, "brand", val, vl, out->brand, SEARCH_MAX_VALUE);
        } else if (IS("price_min")) {
            if (!int_value(val, vl, 0, INT64_MAX, &out->price_min))
                api_val_add(v, "price_min", "must be a non-negative integer (minor units)");
        } else if (IS("price_max")) {
            if (!int_value(val, vl, 0, INT64_MAX, &out->price_max))
                api_val_add(v, "price_max", "must be a non-negative integer (minor units)");
        } else if (IS("in_stock")) {
            if (vl == 4 && memcmp(val, "true", 4) == 0)
                out->in_stock = true;
            else if (!(vl == 5 && memcmp(val, "false", 5) == 0))
                api_val_add(v, "in_stock", "must be true or false");
        } else if (IS("sort")) {
            size_t i;
            for (i = 0; i < SHOPD_ARRAY_LEN(sorts); i++)
                if (strlen(sorts[i].name) == vl && memcmp(sorts[i].name, val, vl) == 0)
                    break;
            if (i == SHOPD_ARRAY_LEN(sorts))
                api_val_add(v, "sort", "must be relevance, price, -price or newest");
            else
                out->sort = sorts[i].sort;
        } else if (IS("limit")) {
            if (int_value(val, vl, 1, SEARCH_MAX_LIMIT, &n))
                out->limit = (int)n;
            else
                api_val_add(v, "limit", "must be an integer from 1 to 100");
        } else if (IS("cursor")) {
            cursor = val;
            cursor_len = vl;
        } else if (kl > 5 && memcmp(p, "attr.", 5) == 0) {
            char field[SEARCH_MAX_NAME + 8];
            snprintf(field, sizeof(field), "%.*s",
                     (int)(kl < SEARCH_MAX_NAME ? kl : SEARCH_MAX_NAME), p);
            if (out->nattrs == SEARCH_MAX_ATTRS) {
                api_val_add(v, field, "at most 8 attribute filters");
            } else if (kl - 5 > SEARCH_MAX_NAME) {
                api_val_add(v, field, "attribute name too long");
            } else {
                search_attr_t *a = &out->attrs[out->nattrs];
                memcpy(a->name, p + 5, kl - 5);
                a->name[kl - 5] = '\0';
                if (text_value(v, field, val, vl, a->value, SEARCH_MAX_VALUE))
                    out->nattrs++;
            }
        } else {
            char field[64];
            snprintf(field, sizeof(field), "%.*s", (int)(kl < 60 ? kl : 60), p);
            api_val_add(v, field, "unknown query parameter");
        }
#undef IS
        p = pe + 1;
    }
    if (out->price_min >= 0 && out->price_max >= 0 && out->price_min > out->price_max)
        api_val_add(v, "price_max", "must not be below price_min");
    if (cursor) {
        char buf[200];
        size_t cl = decode(cursor, cursor_len, buf, sizeof(buf));
        out->has_cursor = true;
        if (cl == (size_t)-1 || !search_cursor_parse(out->sort, buf, out->cursor_key,
                                                     sizeof(out->cursor_key), &out->cursor_id))
            api_val_add(v, "cursor", "must be a next_cursor returned with the same sort");
    }
    qsort(out->attrs, out->nattrs, sizeof(out->attrs[0]), attr_cmp);
}

void
search_parse_prefix(const char *query, size_t len, char *out, size_t cap, api_val_t *v)
{
    out[0] = '\0';
    const char *end = query ? query + len : NULL;
    for (const char *p = query; p && p < end;) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *pe = amp ? amp : end;
        if (pe - p >= 2 && p[0] == 'q' && p[1] == '=')
            text_value(v, "q", p + 2, (size_t)(pe - p - 2), out, cap - 1 < 100 ? cap - 1 : 100);
        p = pe + 1;
    }
    if (out[0] == '\0' && v->n == 0)
        api_val_add(v, "q", "required");
}
