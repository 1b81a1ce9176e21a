/*
 * Pure pieces of the catalog module: the product list SQL builder (filters,
 * literal status for the partial indexes, keyset cursor clauses, ILIKE
 * escaping, parameter numbering shared by the page and the count) and slugs.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "modules/catalog/catalog_priv.h"

static catalog_filter_t
base(void)
{
    return (catalog_filter_t){.store_id = 42, .min_price = -1, .max_price = -1, .limit = 20};
}

static void
test_public_newest(void **state)
{
    catalog_filter_t f = base();
    catalog_sql_t s;
    catalog_list_sql(&f, &s);
    assert_non_null(strstr(s.page_sql, "p.status = 'active'"));
    /* Nothing but status: the total is the kept count (sql/0020), exact. */
    assert_string_equal(s.count_sql, "SELECT coalesce(sum(n), 0) FROM catalog_counts WHERE "
                                     "store_id = $1::bigint AND status = 'active'");
    assert_true(s.count_exact);
    /* The lean entry by default: columns (rendered in C), no JSON built by PostgreSQL
     * but the main image's (only for a product that has one), and only the shown
     * columns of the page's rows. */
    assert_non_null(strstr(s.page_sql, "AS in_stock"));
    const char *img = strstr(s.page_sql, "(SELECT json_build_object('url', mi.url");
    assert_non_null(img);
    assert_ptr_equal(strstr(s.page_sql, "json_build_object"), img + strlen("(SELECT "));
    assert_non_null(strstr(img, "FROM product_images mi WHERE mi.store_id = p.store_id AND "
                                "mi.product_id = p.id ORDER BY mi.position, mi.id LIMIT 1)"));
    assert_null(strstr(s.page_sql, "p.*"));
    /* The limit and a zero offset are constants, so the prepared statement keeps
     * a generic plan instead of being re-planned on every execution. */
    assert_non_null(strstr(s.page_sql, "ORDER BY p.id DESC LIMIT 20)"));
    assert_null(strstr(s.page_sql, "OFFSET"));
    assert_int_equal(s.count_nparams, 1);
    assert_int_equal(s.nparams, 1);
    assert_string_equal(s.params[0], "42");
    catalog_sql_free(&s);
    catalog_sql_free(&s); /* twice is harmless */

    /* Page mode: the offset stays a parameter (a statement per page number
     * would pile up on every connection). */
    f.offset = 40;
    catalog_list_sql(&f, &s);
    assert_non_null(strstr(s.page_sql, "ORDER BY p.id DESC LIMIT 20 OFFSET $2::int)"));
    assert_int_equal(s.nparams, 2);
    assert_string_equal(s.params[1], "40");
    catalog_sql_free(&s);
}

static void
test_admin_filters_and_cursor(void **state)
{
    catalog_filter_t f = base();
    f.admin = true;
    f.status = "draft";
    f.category_ids = "{3,4}";
    f.min_price = 100;
    f.max_price = 900;
    f.brand = "Acme";
    f.sort = CATALOG_SORT_PRICE_DESC;
    f.cursor_key = "500";
    f.cursor_id = 77;
    catalog_sql_t s;
    catalog_list_sql(&f, &s);
    assert_non_null(strstr(s.page_sql, "p.status = 'draft'"));
    assert_non_null(strstr(s.page_sql, "p.category_id = ANY ($2::bigint[])"));
    assert_non_null(strstr(s.page_sql, "p.base_price >= $3::bigint"));
    assert_non_null(strstr(s.page_sql, "p.base_price <= $4::bigint"));
    assert_non_null(strstr(s.page_sql, "p.brand = $5"));
    assert_non_null(strstr(s.page_sql, "(p.base_price, p.id) < ($7::bigint, $6::bigint)"));
    assert_null(strstr(s.count_sql, "p.id) <")); /* the count ignores the cursor */
    assert_non_null(strstr(s.count_sql, "p.status = 'draft'"));
    assert_false(s.count_exact); /* price and brand: counted, bounded */
    assert_int_equal(s.count_nparams, 5);
    assert_int_equal(s.nparams, 7);
    assert_string_equal(s.params[5], "77");
    assert_string_equal(s.params[6], "500");
    catalog_sql_free(&s);

    f = base();
    f.admin = true; /* every status: no status test at all */
    f.sort = CATALOG_SORT_NAME_ASC;
    f.cursor_key = "Mug";
    f.cursor_id = 5;
    catalog_list_sql(&f, &s);
    assert_null(strstr(s.page_sql, "p.status ="));
    assert_non_null(strstr(s.page_sql, "(p.name, p.id) > ($3::text, $2::bigint)"));
    assert_null(strstr(s.count_sql, "status"));
    catalog_sql_free(&s);

    /* A category and its descendants: the kept counts of those categories. */
    f = base();
    f.category_ids = "{3,4}";
    f.expand_variants = true;
    catalog_list_sql(&f, &s);
    assert_true(s.count_exact);
    assert_non_null(strstr(s.count_sql, "category_id = ANY ($2::bigint[])"));
    assert_int_equal(s.count_nparams, 2);
    assert_non_null(strstr(s.page_sql, "'variants'"));
    catalog_sql_free(&s);
}

static void
test_q_is_escaped_and_materialized(void **state)
{
    catalog_filter_t f = base();
    f.q = "100%_a\\b";
    catalog_sql_t s;
    catalog_list_sql(&f, &s);
    assert_string_equal(s.params[1], "%100\\%\\_a\\\\b%");
    assert_non_null(strstr(s.page_sql, "WITH m AS MATERIALIZED"));
    assert_non_null(strstr(s.page_sql, "JOIN m ON m.id = p.id"));
    assert_non_null(strstr(s.count_sql, "JOIN m ON m.id = p.id"));
    assert_non_null(strstr(s.count_sql, "LIMIT 10001"));
    catalog_sql_free(&s);
}

static void
test_slugs(void **state)
{
    char out[64];
    cat_slugify("Red Wine!", out, sizeof(out));
    assert_string_equal(out, "red-wine");
    cat_slugify("  T-Shirts -- XL ", out, sizeof(out));
    assert_string_equal(out, "t-shirts-xl");
    cat_slugify("\xc3\xa9t\xc3\xa9", out, sizeof(out)); /* non-ASCII dropped */
    assert_string_equal(out, "t");
    cat_slugify("!!!", out, sizeof(out));
    assert_string_equal(out, "item");
    cat_slugify("abcdefghij", out, 5);
    assert_string_equal(out, "abcd");
    assert_true(cat_slug_valid("a"));
    assert_true(cat_slug_valid("t-shirts-2"));
    assert_false(cat_slug_valid(""));
    assert_false(cat_slug_valid("-a"));
    assert_false(cat_slug_valid("a-"));
    assert_false(cat_slug_valid("a--b"));
    assert_false(cat_slug_valid("A"));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_public_newest),
        cmocka_unit_test(test_admin_filters_and_cursor),
        cmocka_unit_test(test_q_is_escaped_and_materialized),
        cmocka_unit_test(test_slugs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
