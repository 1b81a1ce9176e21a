/*
 * test_search.c: the search module's pure parts: reading its query
 * (search_parse, search_parse_prefix), the cursor's text form, the UTF-8
 * check, and the attr.* family in api_query_canon (src/modules/query.c).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "shopd/search.h"

static search_query_t q;
static api_val_t v;

/* Parses s; returns the number of issues. */
static size_t
parse(const char *s)
{
    memset(&v, 0, sizeof(v));
    search_parse(s, s ? strlen(s) : 0, &q, &v);
    return v.n;
}

static bool
issue_on(const char *field)
{
    for (size_t i = 0; i < v.n; i++)
        if (!strcmp(v.fields[i], field))
            return true;
    return false;
}

static void
test_defaults(void **state)
{
    (void)state;
    assert_int_equal(parse(NULL), 0);
    assert_string_equal(q.q, "");
    assert_int_equal(q.limit, SEARCH_DEFAULT_LIMIT);
    assert_int_equal(q.sort, SEARCH_SORT_RELEVANCE);
    assert_true(q.price_min == -1 && q.price_max == -1);
    assert_false(q.in_stock);
    assert_false(q.has_cursor);
    assert_int_equal(q.nattrs, 0);
}

static void
test_values(void **state)
{
    (void)state;
    assert_int_equal(parse("attr.size=M&attr.color=red&brand=A%20B%26C&category=7&in_stock=true&"
                           "limit=5&price_max=900&price_min=100&q=t%C3%A9e%20shirt&sort=-price"),
                     0);
    assert_string_equal(q.q, "t\xc3\xa9"
                             "e shirt");
    assert_string_equal(q.brand, "A B&C");
    assert_int_equal(q.category_id, 7);
    assert_true(q.in_stock);
    assert_int_equal(q.limit, 5);
    assert_int_equal(q.price_min, 100);
    assert_int_equal(q.price_max, 900);
    assert_int_equal(q.sort, SEARCH_SORT_PRICE_DESC);
    assert_int_equal(q.nattrs, 2);
    assert_string_equal(q.attrs[0].name, "color"); /* sorted by name */
    assert_string_equal(q.attrs[0].value, "red");
    assert_string_equal(q.attrs[1].name, "size");
    assert_int_equal(parse("in_stock=false"), 0);
    assert_false(q.in_stock);
}

static void
test_refusals(void **state)
{
    (void)state;
    static const struct {
        const char *query, *field;
    } bad[] = {
        {"q=", "q"},
        {"q=%00", "q"},
        {"q=a%0Ab", "q"},
        {"q=%FF", "q"},
        {"q=%C0%AF", "q"},    /* overlong '/' */
        {"q=%ED%A0%80", "q"}, /* a surrogate */
        {"q=%E2%82", "q"},    /* cut short */
        {"brand=", "brand"},
        {"category=0", "category"},
        {"category=x", "category"},
        {"price_min=-5", "price_min"},
        {"price_max=1.5", "price_max"},
        {"price_min=9&price_max=3", "price_max"},
        {"in_stock=1", "in_stock"},
        {"sort=name", "sort"},
        {"limit=0", "limit"},
        {"limit=101", "limit"},
        {"cursor=", "cursor"},
        {"cursor=p31.1", "cursor"}, /* a price cursor under relevance */
        {"sort=price&cursor=p2d31.1", "cursor"},
        {"sort=price&cursor=px1.1", "cursor"},
        {"cursor=r3078313170.1", "cursor"}, /* "0x1p" is no float8 text */
        {"cursor=r6e616e.1", "cursor"},     /* nan */
        {"sort=newest&cursor=n31.1", "cursor"},
        {"attr.color=", "attr.color"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (parse(bad[i].query) == 0 || !issue_on(bad[i].field))
            fail_msg("%s: want an issue on %s", bad[i].query, bad[i].field);
    }
    char big[1024];
    memcpy(big, "q=", 2);
    memset(big + 2, 'a', 201);
    big[203] = '\0';
    assert_int_equal(parse(big), 1);
    big[202] = '\0'; /* 200 bytes: fits */
    assert_int_equal(parse(big), 0);
    assert_int_equal(strlen(q.q), 200);
    assert_int_equal(
        parse("attr.a=1&attr.b=1&attr.c=1&attr.d=1&attr.e=1&attr.f=1&attr.g=1&attr.h=1&"
              "attr.i=1"),
        1);
}

static void
test_cursor(void **state)
{
    (void)state;
    char c[200], key[64];
    uint64_t id;
    assert_true(search_cursor_format(SEARCH_SORT_RELEVANCE, "1.0607927", 42, c, sizeof(c)));
    assert_true(search_cursor_parse(SEARCH_SORT_RELEVANCE, c, key, sizeof(key), &id));
    assert_string_equal(key, "1.0607927");
    assert_int_equal(id, 42);
    assert_false(search_cursor_parse(SEARCH_SORT_PRICE, c, key, sizeof(key), &id));
    assert_true(search_cursor_format(SEARCH_SORT_NEWEST, "", 7, c, sizeof(c)));
    assert_string_equal(c, "n.7");
    assert_true(search_cursor_parse(SEARCH_SORT_NEWEST, c, key, sizeof(key), &id));
    assert_int_equal(id, 7);
    assert_true(search_cursor_format(SEARCH_SORT_PRICE, "1500", 3, c, sizeof(c)));
    assert_string_equal(c, "p31353030.3");
    assert_int_equal(parse("sort=price&cursor=p31353030.3"), 0);
    assert_true(q.has_cursor);
    assert_string_equal(q.cursor_key, "1500");
    assert_int_equal(q.cursor_id, 3);
    assert_false(search_cursor_format(SEARCH_SORT_PRICE, "1500", 3, c, 10)); /* no room */
}

static void
test_prefix(void **state)
{
    (void)state;
    char out[128];
    memset(&v, 0, sizeof(v));
    search_parse_prefix("q=T-Sh", 6, out, sizeof(out), &v);
    assert_int_equal(v.n, 0);
    assert_string_equal(out, "T-Sh");
    memset(&v, 0, sizeof(v));
    search_parse_prefix(NULL, 0, out, sizeof(out), &v);
    assert_int_equal(v.n, 1);
    memset(&v, 0, sizeof(v));
    search_parse_prefix("q=%01", 5, out, sizeof(out), &v);
    assert_int_equal(v.n, 1);
}

static void
test_text_ok(void **state)
{
    (void)state;
    assert_true(search_text_ok("plain", 5));
    assert_true(search_text_ok("\xe2\x9c\x93", 3));
    assert_true(search_text_ok("\xf0\x9f\x91\x95", 4));
    assert_false(search_text_ok("\x7f", 1));
    assert_false(search_text_ok("\xc2\x85", 2));         /* a C1 control */
    assert_false(search_text_ok("\xf4\x90\x80\x80", 4)); /* beyond U+10FFFF */
}

/* The attr.* family in the edge's canonical query. */
static void
test_query_family(void **state)
{
    (void)state;
    static const char *const allowed[] = {"q", "attr.*", NULL};
    char *out = NULL;
    size_t n;
    const char *s = "q=x&attr.size=M&attr.color=red%20dark";
    assert_null(api_query_canon(allowed, s, strlen(s), &out, &n));
    assert_string_equal(out, "attr.color=red%20dark&attr.size=M&q=x");
    shopd_free(out);
    static const char *const refused[] = {
        "attr.color=a&attr.color=b", /* repeated */
        "attr.co%6Cor=a",            /* a name must be spelled plainly */
        "attr.=a",                   /* the family's prefix alone */
        "attr=a",
        "attribute.x=a",
    };
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        net_reply_t *r = api_query_canon(allowed, refused[i], strlen(refused[i]), &out, &n);
        if (r == NULL)
            fail_msg("%s: accepted", refused[i]);
        assert_int_equal(r->status, 400);
        assert_null(out);
        net_reply_free(r);
    }
    /* A family cannot grow past the cap. */
    char many[1024] = "";
    for (int i = 0; i < API_MAX_QUERY + 1; i++) {
        char p[32];
        snprintf(p, sizeof(p), "%sattr.a%d=1", i ? "&" : "", i);
        strcat(many, p);
    }
    net_reply_t *r = api_query_canon(allowed, many, strlen(many), &out, &n);
    assert_non_null(r);
    assert_int_equal(r->status, 400);
    net_reply_free(r);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),     cmocka_unit_test(test_values),
        cmocka_unit_test(test_refusals),     cmocka_unit_test(test_cursor),
        cmocka_unit_test(test_prefix),       cmocka_unit_test(test_text_ok),
        cmocka_unit_test(test_query_family),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
