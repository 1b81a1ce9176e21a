/*
 * page.c: the product page (GET /api/v1/products/:id or :slug) read as rows and
 * rendered as JSON here. The product, its variants and its images with their
 * renditions come from one statement (a UNION ALL of four index reads: the product
 * with its category, its variants, its images joined to their renditions, its option
 * value ids), and the JSON is written in C: the same document CAT_PRODUCT_JSON
 * builds in PostgreSQL (same keys, same order, same values, same string escapes),
 * which is still what the write routes answer with.
 *
 * Why: CAT_PRODUCT_JSON is one correlated subquery per field (images, each image's
 * renditions, category, option values, variants, each variant's images) and a
 * json_build_object per object; on the uncached product page that made PostgreSQL
 * do the page at about a fifth of pgbench -S. Three index reads and no JSON
 * building in the database is what is left (bench/RESULTS.md has the figures).
 *
 * Rows come in no guaranteed order (a UNION ALL, a join): they are sorted here, as
 * the old statement's ORDER BYs did (variants and images by position then id,
 * renditions by format then width).
 */
#include <stdlib.h>
#include <string.h>

#include "catalog_priv.h"

/* Column 0 says what a row is; the columns after it by kind:
 *  product: 1 id, 2 category_id, 3 name, 4 slug, 5 description, 6 base_price, 7 status,
 *           8 brand, 9 attributes, 10 created_at, 11 updated_at, 12 category name,
 *           13 category slug
 *  variant: 1 id, 2 sku, 3 options, 4 price, 5 stock, 6 weight_g, 7 barcode, 8 position,
 *           9 created_at, 10 updated_at
 *  image:   1 id, 2 variant_id, 3 alt, 4 position, 5 state, 6 url, 7 width, 8 height,
 *           9 mime, 10 bytes, 11 sha256, 12 created_at, 13 updated_at, then its
 *           rendition or NULLs: 14 format, 15 width, 16 height, 17 bytes, 18 url
 *  option value: 1 value_id
 * (The option values were an array_agg(... ORDER BY) subquery of the product row: its
 * sort set up per call cost about a fifth of the statement in pgbench.)
 * Every column is text (a UNION needs one type per column; the text protocol sends
 * text anyway). */
#define PAGE_PRODUCT(where)                                                                        \
    "SELECT 0, p.id::text, p.category_id::text, p.name, p.slug, p.description, "                   \
    "p.base_price::text, p.status, p.brand, p.attributes::text, p.created_at::text, "              \
    "p.updated_at::text, c.name, c.slug, NULL, NULL, NULL, NULL, NULL FROM products p LEFT JOIN "  \
    "categories c ON c.store_id = p.store_id "                                                     \
    "AND c.id = p.category_id WHERE p.store_id = $1::bigint AND " where                            \
    " AND ($3::bool OR p.status = 'active')"
#define PAGE_CHILDREN(pid)                                                                         \
    " UNION ALL SELECT 1, v.id::text, v.sku, v.options::text, v.price::text, v.stock::text, "      \
    "v.weight_g::text, v.barcode, v.position::text, v.created_at::text, v.updated_at::text, "      \
    "NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL FROM product_variants v WHERE v.store_id = "   \
    "$1::bigint AND v.product_id = " pid " UNION ALL SELECT 2, i.id::text, i.variant_id::text, "   \
    "i.alt, i.position::text, i.state, i.url, i.width::text, i.height::text, i.mime, "             \
    "i.bytes::text, i.sha256, i.created_at::text, i.updated_at::text, r.format, r.width::text, "   \
    "r.height::text, r.bytes::text, r.url FROM product_images i LEFT JOIN "                        \
    "product_image_renditions r ON r.store_id = i.store_id AND r.image_id = i.id WHERE "           \
    "i.store_id = $1::bigint AND i.product_id = " pid                                              \
    " UNION ALL SELECT 3, o.value_id::text, NULL, "                                                \
    "NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, "   \
    "NULL FROM product_option_values o WHERE o.store_id = $1::bigint AND o.product_id = " pid

/* By id the children are read by the id given, whether or not the product is visible
 * to the caller: a hidden or missing product has no product row and the others are
 * dropped (a 404 costs two empty index reads more, and every other read one probe
 * less). By slug they are read by the visible product's id (an InitPlan each). */
const char catalog_page_id_sql[] = PAGE_PRODUCT("p.id = $2::bigint") PAGE_CHILDREN("$2::bigint");
const char catalog_page_slug_sql[] =
    PAGE_PRODUCT("p.slug = $2") PAGE_CHILDREN("(SELECT q.id FROM products q WHERE q.store_id = "
                                              "$1::bigint AND q.slug = $2 AND ($3::bool OR "
                                              "q.status = 'active'))");

const char catalog_product_json_sql[] =
    "SELECT " CAT_PRODUCT_JSON("p") "::text FROM products p WHERE p.store_id = $1::bigint AND "
                                    "p.id = $2::bigint";

/* ---- rows, sorted ---- */

typedef struct prow_s {
    long long pos, id, width; /* width: a rendition's (images) */
    const char *format;       /* a rendition's, "" for none */
    int row;
} prow_t;

static int
prow_cmp(const void *a, const void *b)
{
    const prow_t *x = a, *y = b;
    if (x->pos != y->pos)
        return x->pos < y->pos ? -1 : 1;
    if (x->id != y->id)
        return x->id < y->id ? -1 : 1;
    int f = strcmp(x->format, y->format); /* "jpeg", "webp": one order in every collation */
    if (f)
        return f;
    return x->width < y->width ? -1 : x->width > y->width;
}

static long long
num(const PGresult *r, int i, int col)
{
    return PQgetisnull(r, i, col) ? 0 : strtoll(PQgetvalue(r, i, col), NULL, 10);
}

/* The image whose rendition rows are imgs[g..end) (one row with NULLs when it has none). */
static void
put_image(api_buf_t *b, const PGresult *r, const prow_t *imgs, int g, int end, const char *pid)
{
    int i = imgs[g].row;
    api_buf_puts(b, "{\"id\":");
    api_buf_pg_raw(b, r, i, 1);
    api_buf_puts(b, ",\"product_id\":");
    api_buf_puts(b, pid);
    api_buf_puts(b, ",\"variant_id\":");
    api_buf_pg_raw(b, r, i, 2);
    api_buf_puts(b, ",\"alt\":");
    api_buf_pg_text(b, r, i, 3);
    api_buf_puts(b, ",\"position\":");
    api_buf_pg_raw(b, r, i, 4);
    api_buf_puts(b, ",\"state\":");
    api_buf_pg_text(b, r, i, 5);
    api_buf_puts(b, ",\"url\":");
    api_buf_pg_text(b, r, i, 6);
    api_buf_puts(b, ",\"width\":");
    api_buf_pg_raw(b, r, i, 7);
    api_buf_puts(b, ",\"height\":");
    api_buf_pg_raw(b, r, i, 8);
    api_buf_puts(b, ",\"mime\":");
    api_buf_pg_text(b, r, i, 9);
    api_buf_puts(b, ",\"bytes\":");
    api_buf_pg_raw(b, r, i, 10);
    api_buf_puts(b, ",\"sha256\":");
    api_buf_pg_text(b, r, i, 11);
    api_buf_puts(b, ",\"created_at\":");
    api_buf_pg_ts(b, r, i, 12);
    api_buf_puts(b, ",\"updated_at\":");
    api_buf_pg_ts(b, r, i, 13);
    api_buf_puts(b, ",\"renditions\":[");
    bool first = true;
    for (int k = g; k < end; k++) {
        int j = imgs[k].row;
        if (PQgetisnull(r, j, 14))
            continue;
        api_buf_puts(b, first ? "{\"format\":" : ",{\"format\":");
        first = false;
        api_buf_pg_text(b, r, j, 14);
        api_buf_puts(b, ",\"width\":");
        api_buf_pg_raw(b, r, j, 15);
        api_buf_puts(b, ",\"height\":");
        api_buf_pg_raw(b, r, j, 16);
        api_buf_puts(b, ",\"bytes\":");
        api_buf_pg_raw(b, r, j, 17);
        api_buf_puts(b, ",\"url\":");
        api_buf_pg_text(b, r, j, 18);
        api_buf_put(b, "}", 1);
    }
    api_buf_puts(b, "]}");
}

/* The images among imgs[0..n) of variant vid ("" = all of them), as a JSON array. */
static void
put_images(api_buf_t *b, const PGresult *r, const prow_t *imgs, int n, const char *vid,
           const char *pid)
{
    api_buf_put(b, "[", 1);
    bool first = true;
    for (int g = 0, end; g < n; g = end) {
        for (end = g + 1; end < n && imgs[end].id == imgs[g].id; end++)
            ;
        int i = imgs[g].row;
        if (*vid && (PQgetisnull(r, i, 2) || strcmp(PQgetvalue(r, i, 2), vid)))
            continue;
        if (!first)
            api_buf_put(b, ",", 1);
        first = false;
        put_image(b, r, imgs, g, end, pid);
    }
    api_buf_put(b, "]", 1);
}

static void
put_variant(api_buf_t *b, const PGresult *r, int i, int prow, const prow_t *imgs, int nimg)
{
    const char *pid = PQgetvalue(r, prow, 1);
    api_buf_puts(b, "{\"id\":");
    api_buf_pg_raw(b, r, i, 1);
    api_buf_puts(b, ",\"product_id\":");
    api_buf_puts(b, pid);
    api_buf_puts(b, ",\"sku\":");
    api_buf_pg_text(b, r, i, 2);
    api_buf_puts(b, ",\"options\":");
    api_buf_pg_raw(b, r, i, 3);
    api_buf_puts(b, ",\"price\":"); /* coalesce(v.price, p.base_price) */
    if (PQgetisnull(r, i, 4))
        api_buf_pg_raw(b, r, prow, 6);
    else
        api_buf_pg_raw(b, r, i, 4);
    api_buf_puts(b, ",\"price_override\":");
    api_buf_pg_raw(b, r, i, 4);
    api_buf_puts(b, ",\"stock\":");
    api_buf_pg_raw(b, r, i, 5);
    api_buf_puts(b, ",\"weight_g\":");
    api_buf_pg_raw(b, r, i, 6);
    api_buf_puts(b, ",\"barcode\":");
    api_buf_pg_text(b, r, i, 7);
    api_buf_puts(b, ",\"position\":");
    api_buf_pg_raw(b, r, i, 8);
    api_buf_puts(b, ",\"created_at\":");
    api_buf_pg_ts(b, r, i, 9);
    api_buf_puts(b, ",\"updated_at\":");
    api_buf_pg_ts(b, r, i, 10);
    api_buf_puts(b, ",\"images\":");
    put_images(b, r, imgs, nimg, PQgetvalue(r, i, 1), pid);
    api_buf_put(b, "}", 1);
}

char *
catalog_page_render(const PGresult *r, size_t *len)
{
    int n = PQntuples(r), prow = -1, nvar = 0, nimg = 0, nopt = 0;
    if (n == 0 || PQnfields(r) < 19)
        return NULL;
    prow_t *vars = shopd_malloc(sizeof(prow_t) * (size_t)n);
    prow_t *imgs = shopd_malloc(sizeof(prow_t) * (size_t)n);
    prow_t *opts = shopd_malloc(sizeof(prow_t) * (size_t)n);
    for (int i = 0; i < n; i++) {
        char k = PQgetvalue(r, i, 0)[0];
        if (k == '0')
            prow = i;
        else if (k == '1')
            vars[nvar++] = (prow_t){num(r, i, 8), num(r, i, 1), 0, "", i};
        else if (k == '2')
            imgs[nimg++] = (prow_t){num(r, i, 4), num(r, i, 1), num(r, i, 15),
                                    PQgetisnull(r, i, 14) ? "" : PQgetvalue(r, i, 14), i};
        else if (k == '3')
            opts[nopt++] = (prow_t){0, num(r, i, 1), 0, "", i};
    }
    char *out = NULL;
    if (prow < 0)
        goto done;
    qsort(vars, (size_t)nvar, sizeof(prow_t), prow_cmp);
    qsort(imgs, (size_t)nimg, sizeof(prow_t), prow_cmp);
    qsort(opts, (size_t)nopt, sizeof(prow_t), prow_cmp);
    api_buf_t b = {0};
    const char *pid = PQgetvalue(r, prow, 1);
    api_buf_puts(&b, "{\"id\":");
    api_buf_puts(&b, pid);
    api_buf_puts(&b, ",\"category_id\":");
    api_buf_pg_raw(&b, r, prow, 2);
    api_buf_puts(&b, ",\"name\":");
    api_buf_pg_text(&b, r, prow, 3);
    api_buf_puts(&b, ",\"slug\":");
    api_buf_pg_text(&b, r, prow, 4);
    api_buf_puts(&b, ",\"description\":");
    api_buf_pg_text(&b, r, prow, 5);
    api_buf_puts(&b, ",\"base_price\":");
    api_buf_pg_raw(&b, r, prow, 6);
    api_buf_puts(&b, ",\"status\":");
    api_buf_pg_text(&b, r, prow, 7);
    api_buf_puts(&b, ",\"brand\":");
    api_buf_pg_text(&b, r, prow, 8);
    api_buf_puts(&b, ",\"attributes\":");
    api_buf_pg_raw(&b, r, prow, 9);
    api_buf_puts(&b, ",\"created_at\":");
    api_buf_pg_ts(&b, r, prow, 10);
    api_buf_puts(&b, ",\"updated_at\":");
    api_buf_pg_ts(&b, r, prow, 11);
    api_buf_puts(&b, ",\"images\":");
    put_images(&b, r, imgs, nimg, "", pid);
    api_buf_puts(&b, ",\"category\":");
    if (PQgetisnull(r, prow, 13)) { /* categories.slug is NOT NULL: no category row */
        api_buf_put(&b, "null", 4);
    } else {
        api_buf_puts(&b, "{\"id\":");
        api_buf_pg_raw(&b, r, prow, 2);
        api_buf_puts(&b, ",\"name\":");
        api_buf_pg_text(&b, r, prow, 12);
        api_buf_puts(&b, ",\"slug\":");
        api_buf_pg_text(&b, r, prow, 13);
        api_buf_put(&b, "}", 1);
    }
    api_buf_puts(&b, ",\"option_value_ids\":[");
    for (int o = 0; o < nopt; o++) {
        if (o)
            api_buf_put(&b, ",", 1);
        api_buf_pg_raw(&b, r, opts[o].row, 1);
    }
    api_buf_puts(&b, "],\"variants\":[");
    for (int v = 0; v < nvar; v++) {
        if (v)
            api_buf_put(&b, ",", 1);
        put_variant(&b, r, vars[v].row, prow, imgs, nimg);
    }
    api_buf_puts(&b, "]}");
    out = b.p;
    *len = b.n;
done:
    shopd_free(vars);
    shopd_free(imgs);
    shopd_free(opts);
    return out;
}
