/*
 * categories.c: the category tree of a store, kept as an adjacency list
 * (parent_id). Reads: the whole tree in one recursive query, nested here;
 * one category with its breadcrumb and children. Writes: create, rename,
 * reorder, move (refusing cycles: 409 category_cycle) and delete (refusing a
 * non-empty category unless ?move_to=<id>|root says where its children and
 * products go). The tree is at most CATALOG_MAX_DEPTH levels deep.
 *
 * Tree writes take a per-store advisory lock inside their transaction: the
 * store's actor already serializes them in one process, the lock keeps the
 * cycle and depth checks true when two processes serve one store.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catalog_priv.h"

#define CATEGORY_JSON(c)                                                                           \
    "json_build_object('id', " c ".id, 'parent_id', " c ".parent_id, 'name', " c ".name, "         \
    "'slug', " c ".slug, 'position', " c ".position, 'created_at', " c ".created_at, "             \
    "'updated_at', " c ".updated_at)"

#define TREE_LOCK "SELECT pg_advisory_xact_lock(hashtextextended('shopd.catalog.tree', $1::bigint))"

/* ------------------------------------------------------------ reads */

static net_reply_t *
tree(api_ctx_t *ctx)
{
    char sid[24];
    const char *p[1] = {cat_sid(ctx, sid)};
    net_reply_t *reply = NULL;
    db_conn_t *c = cat_acquire(ctx, &reply);
    if (c == NULL)
        return reply;
    /* One recursive query; rows come parents first, siblings by position. */
    PGresult *r = arena_pgresult(
        ctx->arena,
        db_exec(c, "cat_tree",
                "WITH RECURSIVE t AS ("
                " SELECT id, ARRAY[position::bigint, id] AS path, 1 AS depth FROM categories"
                " WHERE store_id = $1::bigint AND parent_id IS NULL"
                " UNION ALL"
                " SELECT k.id, t.path || ARRAY[k.position::bigint, k.id], t.depth + 1"
                " FROM categories k JOIN t ON k.store_id = $1::bigint AND k.parent_id = t.id"
                " WHERE t.depth < 64)"
                " SELECT c.id, c.parent_id, " CATEGORY_JSON(
                    "c") "::text, t.depth FROM t"
                         " JOIN categories c ON c.store_id = $1::bigint AND c.id = t.id ORDER BY "
                         "t.path",
                1, p));
    db_release(c);
    if (db_result_rc(r) != SHOPD_OK)
        return api_db_error(ctx, r, "category tree");
    json_t *roots = json_array();
    json_t *byid = json_object();
    for (int i = 0; i < PQntuples(r); i++) {
        json_t *node = json_loads(PQgetvalue(r, i, 2), 0, NULL);
        if (node == NULL)
            continue;
        json_object_set_new(node, "depth", json_integer(atoi(PQgetvalue(r, i, 3))));
        json_object_set_new(node, "children", json_array());
        json_t *parent = PQgetisnull(r, i, 1) ? NULL : json_object_get(byid, PQgetvalue(r, i, 1));
        json_array_append(parent ? json_object_get(parent, "children") : roots, node);
        json_object_set_new(byid, PQgetvalue(r, i, 0), node);
    }
    json_decref(byid);
    return api_json(SHOPD_OK,
                    json_pack("{s:o, s:i}", "data", roots, "max_depth", CATALOG_MAX_DEPTH));
}

net_reply_t *
catalog_h_category_tree(api_ctx_t *ctx)
{
    return cat_cached(ctx, tree);
}

static net_reply_t *
get_one(api_ctx_t *ctx)
{
    char sid[24], id[24];
    if (!cat_id_param(ctx, "id", id))
        return api_fail(SHOPD_NOTFOUND, "category_not_found", "no such category");
    const char *p[2] = {cat_sid(ctx, sid), id};
    net_reply_t *reply = NULL;
    db_conn_t *c = cat_acquire(ctx, &reply);
    if (c == NULL)
        return reply;
    PGresult *r = db_exec(
        c, "cat_get",
        "WITH RECURSIVE up AS ("
        " SELECT id, parent_id, 0 AS d FROM categories WHERE store_id = $1::bigint AND id = "
        "$2::bigint"
        " UNION ALL"
        " SELECT k.id, k.parent_id, u.d + 1 FROM categories k JOIN up u"
        " ON k.store_id = $1::bigint AND k.id = u.parent_id WHERE u.d < 64)"
        " SELECT (" CATEGORY_JSON(
            "c") "::jsonb || jsonb_build_object("
                 " 'depth', (SELECT count(*) FROM up),"
                 " 'breadcrumb', (SELECT json_agg(json_build_object('id', b.id, 'name', b.name, "
                 "'slug', b.slug)"
                 "  ORDER BY up.d DESC) FROM up JOIN categories b ON b.store_id = $1::bigint AND "
                 "b.id = up.id),"
                 " 'children', (SELECT coalesce(json_agg(" CATEGORY_JSON(
                     "k") " ORDER BY k.position, k.id), '[]')"
                          "  FROM categories k WHERE k.store_id = $1::bigint AND k.parent_id = "
                          "c.id)))::text"
                          " FROM categories c WHERE c.store_id = $1::bigint AND c.id = $2::bigint",
        2, p);
    reply = cat_one_row(ctx, r, "category get", "category_not_found", "no such category");
    db_release(c);
    return reply;
}

net_reply_t *
catalog_h_category_get(api_ctx_t *ctx)
{
    return cat_cached(ctx, get_one);
}

/* ------------------------------------------------------------ tree checks */

typedef struct tree_info_s {
    int parent_depth; /* 0: the parent does not exist */
    int height;       /* levels in the subtree of the moved category (1 = a leaf) */
    bool cycle;       /* the parent is the category or one of its descendants */
} tree_info_t;

/* Depth of `parent` and the subtree of `cat` ("0" = none). Inside the caller's tx. A failed
 * query's result is left in *err (the arena's: nobody clears it). */
static shopd_rc_t
tree_check(api_ctx_t *ctx, db_conn_t *c, const char *sid, const char *cat, const char *parent,
           tree_info_t *out, PGresult **err)
{
    const char *p[3] = {sid, cat, parent};
    PGresult *r = arena_pgresult(
        ctx->arena,
        db_exec(
            c, "cat_tree_check",
            "WITH RECURSIVE sub AS ("
            " SELECT id, 1 AS h FROM categories WHERE store_id = $1::bigint AND id = $2::bigint"
            " UNION ALL"
            " SELECT k.id, s.h + 1 FROM categories k JOIN sub s ON k.store_id = $1::bigint"
            " AND k.parent_id = s.id WHERE s.h < 64),"
            " up AS ("
            " SELECT id, parent_id, 1 AS d FROM categories WHERE store_id = $1::bigint AND id = "
            "$3::bigint"
            " UNION ALL"
            " SELECT k.id, k.parent_id, u.d + 1 FROM categories k JOIN up u ON k.store_id = "
            "$1::bigint"
            " AND k.id = u.parent_id WHERE u.d < 64)"
            " SELECT (SELECT count(*) FROM up), EXISTS (SELECT 1 FROM sub WHERE id = $3::bigint),"
            " coalesce((SELECT max(h) FROM sub), 1)",
            3, p));
    shopd_rc_t rc = db_result_rc(r);
    if (rc != SHOPD_OK) {
        *err = r;
        return rc;
    }
    out->parent_depth = atoi(PQgetvalue(r, 0, 0));
    out->cycle = PQgetvalue(r, 0, 1)[0] == 't';
    out->height = atoi(PQgetvalue(r, 0, 2));
    return rc;
}

static net_reply_t *
too_deep(const char *field)
{
    char msg[96];
    snprintf(msg, sizeof(msg), "categories nest at most %d levels deep", CATALOG_MAX_DEPTH);
    return api_fail_field(SHOPD_INVALID, "category_too_deep", msg, field, "too deep");
}

/* Checks that `parent` may take the subtree of `cat` (moved, or its children on a
 * delete: levels = -1): it exists, is not inside that subtree, and the result stays
 * within CATALOG_MAX_DEPTH. Returns the refusal, or NULL when the move is fine.
 * A failed query's result is left in *r (the arena's). */
static net_reply_t *
check_new_parent(api_ctx_t *ctx, db_conn_t *c, const char *sid, const char *cat, const char *parent,
                 const char *field, int levels, const char *cycle_msg, PGresult **r)
{
    tree_info_t ti;
    if (tree_check(ctx, c, sid, cat, parent, &ti, r) != SHOPD_OK)
        return api_db_error(ctx, *r, "tree check");
    if (ti.parent_depth == 0)
        return api_fail_field(SHOPD_INVALID, "validation_failed", "the request has invalid fields",
                              field, "no such category");
    if (ti.cycle)
        return api_fail_field(SHOPD_CONFLICT, "category_cycle", cycle_msg, field,
                              "is the category or one of its descendants");
    if (ti.parent_depth + ti.height + levels > CATALOG_MAX_DEPTH)
        return too_deep(field);
    return NULL;
}

/* First statement of every tree write: the per-store advisory lock (see the top). */
static shopd_rc_t
lock_tree(api_ctx_t *ctx, db_conn_t *c, const char *sid, net_reply_t **reply)
{
    PGresult *r = arena_pgresult(ctx->arena, db_exec(c, "cat_tree_lock", TREE_LOCK, 1, &sid));
    shopd_rc_t rc = db_result_rc(r);
    if (rc != SHOPD_OK)
        *reply = api_db_error(ctx, r, "tree lock");
    return rc;
}

/* A refusal decided inside a tree write: roll back and answer it. */
static shopd_rc_t
refuse(net_reply_t **reply, net_reply_t *why)
{
    *reply = why;
    return SHOPD_INVALID; /* any non-OK status rolls back; the reply says what */
}

/* A failed statement inside a tree write: roll back and answer it. */
static shopd_rc_t
failed(api_ctx_t *ctx, PGresult *r, const char *what, net_reply_t **reply)
{
    shopd_rc_t rc = db_result_rc(r);
    *reply = api_db_error(ctx, r, what);
    return rc;
}

/* ------------------------------------------------------------ writes */

typedef struct cat_input_s {
    const char *name, *slug;
    char slugbuf[128];
    bool parent_given; /* parent_id present (null = root) */
    char parent[24];   /* "" for null */
    bool pos_given;
    char pos[24];
} cat_input_t;

static void
validate(api_ctx_t *ctx, api_val_t *v, cat_input_t *in, bool create)
{
    static const char *const allowed[] = {"name", "slug", "parent_id", "position", NULL};
    json_t *b = ctx->body;
    memset(in, 0, sizeof(*in));
    api_val_only(v, b, allowed);
    in->name = api_val_string(v, b, "name", create, 1, 200);
    in->slug = api_val_string(v, b, "slug", false, 1, 120);
    if (in->slug && !cat_slug_valid(in->slug)) {
        api_val_add(v, "slug", "must be lower-case letters, digits and single '-' between them");
        in->slug = NULL;
    }
    if (create && in->slug == NULL && in->name) {
        cat_slugify(in->name, in->slugbuf, sizeof(in->slugbuf));
        in->slug = in->slugbuf;
    }
    json_t *pj = json_object_get(b, "parent_id");
    if (pj) {
        long long pid;
        in->parent_given = true;
        if (!json_is_null(pj) && api_val_int(v, b, "parent_id", 1, INT64_MAX, &pid) == 1)
            snprintf(in->parent, sizeof(in->parent), "%lld", pid);
    }
    long long pos;
    if (api_val_int(v, b, "position", -1000000, 1000000, &pos) == 1) {
        in->pos_given = true;
        snprintf(in->pos, sizeof(in->pos), "%lld", pos);
    }
}

/* What a category write works on and, once it ran, its result row (the arena's: a
 * retried transaction just overwrites it, the failed attempt's result goes with the
 * message). */
typedef struct cat_write_s {
    const cat_input_t *in;
    const char *sid, *id, *move_to;
    bool to_root;
    PGresult *r;
} cat_write_t;

static shopd_rc_t
create_tx(api_ctx_t *ctx, db_conn_t *c, void *arg, net_reply_t **reply)
{
    cat_write_t *w = arg;
    const cat_input_t *in = w->in;
    w->r = NULL;
    shopd_rc_t rc = lock_tree(ctx, c, w->sid, reply);
    if (rc != SHOPD_OK)
        return rc;
    if (in->parent[0]) {
        tree_info_t ti;
        PGresult *r = NULL;
        if (tree_check(ctx, c, w->sid, "0", in->parent, &ti, &r) != SHOPD_OK)
            return failed(ctx, r, "tree check", reply);
        if (ti.parent_depth == 0)
            return refuse(reply, api_fail_field(SHOPD_INVALID, "validation_failed",
                                                "the request has invalid fields", "parent_id",
                                                "no such category"));
        if (ti.parent_depth + 1 > CATALOG_MAX_DEPTH)
            return refuse(reply, too_deep("parent_id"));
    }
    const char *p[5] = {w->sid, in->parent[0] ? in->parent : NULL, in->name, in->slug,
                        in->pos_given ? in->pos : NULL};
    w->r = arena_pgresult(
        ctx->arena, db_exec(c, "cat_create",
                            "INSERT INTO categories (store_id, parent_id, name, slug, position)"
                            " VALUES ($1::bigint, $2::bigint, $3, $4, coalesce($5::int, 0))"
                            " RETURNING id, " CATEGORY_JSON("categories") "::text",
                            5, p));
    if (db_result_rc(w->r) != SHOPD_OK)
        return failed(ctx, w->r, "category create", reply);
    return SHOPD_OK;
}

net_reply_t *
catalog_h_category_create(api_ctx_t *ctx)
{
    api_val_t v = {0};
    cat_input_t in;
    char sid[24];
    validate(ctx, &v, &in, true);
    if (v.n)
        return api_val_reply(&v);
    cat_write_t w = {.in = &in, .sid = cat_sid(ctx, sid)};
    net_reply_t *reply = cat_tx(ctx, create_tx, &w);
    if (reply == NULL) {
        cat_bump(ctx);
        reply = cat_row_json(SHOPD_CREATED, w.r, 1);
        char loc[64];
        snprintf(loc, sizeof(loc), "/api/v1/categories/%s", PQgetvalue(w.r, 0, 0));
        net_reply_add_header(reply, "Location", loc);
    }
    return reply;
}

static shopd_rc_t
update_tx(api_ctx_t *ctx, db_conn_t *c, void *arg, net_reply_t **reply)
{
    cat_write_t *w = arg;
    const cat_input_t *in = w->in;
    w->r = NULL;
    shopd_rc_t rc = lock_tree(ctx, c, w->sid, reply);
    if (rc != SHOPD_OK)
        return rc;
    if (in->parent[0]) {
        PGresult *r = NULL;
        net_reply_t *no =
            check_new_parent(ctx, c, w->sid, w->id, in->parent, "parent_id", 0,
                             "a category cannot move under itself or one of its descendants", &r);
        if (no != NULL) {
            rc = r != NULL ? db_result_rc(r) : SHOPD_INVALID;
            *reply = no;
            return rc == SHOPD_OK ? SHOPD_INVALID : rc;
        }
    }
    const char *p[7] = {w->sid,
                        w->id,
                        in->name,
                        in->slug,
                        in->parent_given ? "t" : "f",
                        in->parent[0] ? in->parent : NULL,
                        in->pos_given ? in->pos : NULL};
    w->r = arena_pgresult(
        ctx->arena,
        db_exec(c, "cat_update",
                "UPDATE categories SET name = coalesce($3, name), slug = coalesce($4, slug),"
                " parent_id = CASE WHEN $5::bool THEN $6::bigint ELSE parent_id END,"
                " position = coalesce($7::int, position), updated_at = now()"
                " WHERE store_id = $1::bigint AND id = $2::bigint"
                " RETURNING " CATEGORY_JSON("categories") "::text",
                7, p));
    if (db_result_rc(w->r) != SHOPD_OK)
        return failed(ctx, w->r, "category update", reply);
    if (PQntuples(w->r) == 0)
        return refuse(reply, api_fail(SHOPD_NOTFOUND, "category_not_found", "no such category"));
    return SHOPD_OK;
}

net_reply_t *
catalog_h_category_update(api_ctx_t *ctx)
{
    api_val_t v = {0};
    cat_input_t in;
    char sid[24], id[24];
    if (!cat_id_param(ctx, "id", id))
        return api_fail(SHOPD_NOTFOUND, "category_not_found", "no such category");
    validate(ctx, &v, &in, false);
    if (v.n)
        return api_val_reply(&v);
    cat_write_t w = {.in = &in, .sid = cat_sid(ctx, sid), .id = id};
    net_reply_t *reply = cat_tx(ctx, update_tx, &w);
    if (reply == NULL) {
        cat_bump(ctx);
        reply = cat_row_json(SHOPD_OK, w.r, 0);
    }
    return reply;
}

static shopd_rc_t
delete_tx(api_ctx_t *ctx, db_conn_t *c, void *arg, net_reply_t **reply)
{
    cat_write_t *w = arg;
    const char *sid = w->sid, *id = w->id, *move_to = w->move_to;
    shopd_rc_t rc = lock_tree(ctx, c, sid, reply);
    if (rc != SHOPD_OK)
        return rc;
    const char *p2[2] = {sid, id};
    PGresult *r = arena_pgresult(
        ctx->arena, db_exec(c, "cat_del_counts",
                            "SELECT (SELECT count(*) FROM categories WHERE store_id = $1::bigint "
                            "AND parent_id = $2::bigint),"
                            " (SELECT count(*) FROM products WHERE store_id = $1::bigint AND "
                            "category_id = $2::bigint)"
                            " FROM categories WHERE store_id = $1::bigint AND id = $2::bigint",
                            2, p2));
    if (db_result_rc(r) != SHOPD_OK)
        return failed(ctx, r, "category delete", reply);
    if (PQntuples(r) == 0)
        return refuse(reply, api_fail(SHOPD_NOTFOUND, "category_not_found", "no such category"));
    bool nonempty = atol(PQgetvalue(r, 0, 0)) > 0 || atol(PQgetvalue(r, 0, 1)) > 0;
    if (nonempty && move_to == NULL)
        return refuse(reply, api_fail(SHOPD_CONFLICT, "category_not_empty",
                                      "the category has children or products; say where they go "
                                      "with ?move_to=<category id> or ?move_to=root"));
    if (nonempty) {
        if (!w->to_root) {
            /* The children's subtrees hang one level lower than the deleted category's. */
            r = NULL;
            net_reply_t *no = check_new_parent(
                ctx, c, sid, id, move_to, "move_to", -1,
                "the children cannot move under the deleted category or its descendants", &r);
            if (no != NULL) {
                rc = r != NULL ? db_result_rc(r) : SHOPD_INVALID;
                *reply = no;
                return rc == SHOPD_OK ? SHOPD_INVALID : rc;
            }
        }
        const char *p3[3] = {sid, id, w->to_root ? NULL : move_to};
        r = arena_pgresult(
            ctx->arena,
            db_exec(c, "cat_del_move",
                    "WITH k AS (UPDATE categories SET parent_id = $3::bigint, updated_at = now()"
                    " WHERE store_id = $1::bigint AND parent_id = $2::bigint RETURNING 1)"
                    " UPDATE products SET category_id = $3::bigint, updated_at = now()"
                    " WHERE store_id = $1::bigint AND category_id = $2::bigint",
                    3, p3));
        if (db_result_rc(r) != SHOPD_OK)
            return failed(ctx, r, "category delete", reply);
    }
    r = arena_pgresult(
        ctx->arena,
        db_exec(c, "cat_delete",
                "DELETE FROM categories WHERE store_id = $1::bigint AND id = $2::bigint", 2, p2));
    if (db_result_rc(r) != SHOPD_OK)
        return failed(ctx, r, "category delete", reply);
    return SHOPD_OK;
}

net_reply_t *
catalog_h_category_delete(api_ctx_t *ctx)
{
    char sid[24], id[24], mbuf[32];
    if (!cat_id_param(ctx, "id", id))
        return api_fail(SHOPD_NOTFOUND, "category_not_found", "no such category");
    const char *move_to = api_query_param(ctx->env, "move_to", mbuf, sizeof(mbuf));
    bool to_root = move_to && strcmp(move_to, "root") == 0;
    if (move_to && !to_root) {
        uint64_t t;
        if (!shopd_id_parse(move_to, strlen(move_to), &t))
            return api_fail_field(SHOPD_INVALID, "validation_failed",
                                  "the request has invalid fields", "move_to",
                                  "must be a category id or root");
    }
    cat_write_t w = {.sid = cat_sid(ctx, sid), .id = id, .move_to = move_to, .to_root = to_root};
    net_reply_t *reply = cat_tx(ctx, delete_tx, &w);
    if (reply == NULL) {
        cat_bump(ctx);
        reply = api_empty(SHOPD_NO_CONTENT);
    }
    return reply;
}
