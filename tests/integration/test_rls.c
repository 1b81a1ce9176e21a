/*
 * Row-level security, the second wall of tenant isolation (sql/0005), seen
 * with libpq directly as the restricted role shopd_app (SET ROLE from the
 * test database's owner): with app.store_id unset it sees no row of any
 * tenant table; set to store A it sees A's rows and nothing else; set to 0 it
 * sees the platform's users and tokens; and it cannot insert, update, move or
 * delete a row of store B. The tenant tables are read from the catalog (every
 * table with a store_id column), so a table added later without a policy
 * fails here. Two stores are seeded through the real server (stores, users,
 * logins: refresh tokens) and by SQL (catalog rows, password resets).
 *
 * Also here: sql/0005 applied by the migrator on a database that already has
 * users, refresh tokens and password resets backfills their store ids; and a
 * refresh token names its store ("<store_id>.<secret>"); the same
 * secret under another store's prefix is unknown.
 */
#include <dirent.h>
#include <libpq-fe.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "harness.h"
#include "shopd/db.h"

static th_server_t *srv;
static PGconn *pg;
static long store_a, store_b;
static char sa[24], sb[24];
static th_user_t ua, ub, root;

/* The tables sql/0001-0005 give a store_id: the catalog check below must find
 * at least these (and every other one it finds must be covered too). */
static const char *const expected[] = {"users",
                                       "refresh_tokens",
                                       "password_resets",
                                       "categories",
                                       "products",
                                       "product_variants",
                                       "attributes",
                                       "attribute_values",
                                       "product_option_values",
                                       "inventory_movements",
                                       NULL};

#define MAX_TABLES 64
static char tables[MAX_TABLES][64];
static size_t ntables;

/* The store column of a table ("users" has NULL for the platform). */
static const char *
store_col(const char *t)
{
    return strcmp(t, "users") == 0 ? "coalesce(store_id, 0)" : "store_id";
}

static PGresult *
q(const char *sql, int n, const char *const *params)
{
    return PQexecParams(pg, sql, n, NULL, params, NULL, NULL, 0);
}

static void
ok(const char *sql)
{
    PGresult *r = PQexec(pg, sql);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        fail_msg("%s: %s", sql, PQresultErrorMessage(r));
    PQclear(r);
}

static long
count(const char *sql)
{
    PGresult *r = PQexec(pg, sql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        fail_msg("%s: %s", sql, PQresultErrorMessage(r));
    long n = atol(PQgetvalue(r, 0, 0));
    PQclear(r);
    return n;
}

/* Starts a transaction as shopd_app with app.store_id = store (NULL: unset). */
static void
as_app(const char *store)
{
    ok("BEGIN");
    ok("SET LOCAL ROLE shopd_app");
    if (store) {
        const char *p[1] = {store};
        PGresult *r = q("SELECT set_config('app.store_id', $1, true)", 1, p);
        assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
        PQclear(r);
    }
}

/* Runs sql in a savepoint; returns its SQLSTATE ("" on success) in a static
 * buffer and, on success, the affected row count in *rows. */
static const char *
try_sql(const char *sql, long *rows)
{
    static char state[8];
    ok("SAVEPOINT t");
    PGresult *r = PQexec(pg, sql);
    ExecStatusType st = PQresultStatus(r);
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
        state[0] = '\0';
        if (rows)
            *rows = atol(PQcmdTuples(r));
        ok("RELEASE SAVEPOINT t");
    } else {
        const char *s = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        snprintf(state, sizeof(state), "%s", s ? s : "?");
        ok("ROLLBACK TO SAVEPOINT t");
    }
    PQclear(r);
    return state;
}

static void
seed_catalog(const char *sid)
{
    const char *p[1] = {sid};
    PGresult *r =
        q("WITH c AS (INSERT INTO categories (store_id, name, slug) VALUES ($1, 'Cat', 'cat') "
          "RETURNING id), "
          "p AS (INSERT INTO products (store_id, category_id, name, slug, base_price) "
          "SELECT $1, id, 'Prod', 'prod', 100 FROM c RETURNING id), "
          "v AS (INSERT INTO product_variants (store_id, product_id, sku) "
          "SELECT $1, id, 'sku-1' FROM p RETURNING id), "
          "a AS (INSERT INTO attributes (store_id, name) VALUES ($1, 'Size') RETURNING id), "
          "av AS (INSERT INTO attribute_values (store_id, attribute_id, value) "
          "SELECT $1, id, 'S' FROM a RETURNING id), "
          "o AS (INSERT INTO product_option_values (store_id, product_id, value_id) "
          "SELECT $1, p.id, av.id FROM p, av RETURNING 1), "
          "m AS (INSERT INTO inventory_movements (store_id, variant_id, delta, reason) "
          "SELECT $1, id, 5, 'seed' FROM v RETURNING 1) "
          "SELECT 1",
          1, p);
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        fail_msg("seed: %s", PQresultErrorMessage(r));
    PQclear(r);
}

static void
seed_reset(const char *sid, long uid)
{
    char u[24];
    snprintf(u, sizeof(u), "%ld", uid);
    const char *p[2] = {sid, u};
    PGresult *r = q("INSERT INTO password_resets (store_id, user_id, token_hash, expires_at) "
                    "VALUES ($1, $2, md5(random()::text), now() + interval '1 hour')",
                    2, p);
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        fail_msg("seed reset: %s", PQresultErrorMessage(r));
    PQclear(r);
}

static int
setup(void **state)
{
    (void)state;
    srv = th_start(NULL); /* applies the migrations */
    char s[64];
    snprintf(s, sizeof(s), "%s", th_slug("rls-a"));
    store_a = th_create_store(srv, s, NULL);
    snprintf(s, sizeof(s), "%s", th_slug("rls-b"));
    store_b = th_create_store(srv, s, NULL);
    snprintf(sa, sizeof(sa), "%ld", store_a);
    snprintf(sb, sizeof(sb), "%ld", store_b);
    ua = th_user_new(srv, "CUSTOMER", store_a); /* logins: one refresh token each */
    ub = th_user_new(srv, "CUSTOMER", store_b);
    root = th_user_new(srv, "SUPER_ADMIN", 0);

    pg = PQconnectdb(th_env("SHOPD_TEST_DATABASE_URL"));
    if (PQstatus(pg) != CONNECTION_OK)
        fail_msg("test database: %s", PQerrorMessage(pg));
    ok("SET client_min_messages = warning");
    seed_catalog(sa);
    seed_catalog(sb);
    seed_reset(sa, ua.id);
    seed_reset(sb, ub.id);

    PGresult *r =
        PQexec(pg, "SELECT c.relname FROM pg_class c "
                   "JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'public' "
                   "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'store_id' "
                   "AND NOT a.attisdropped "
                   "WHERE c.relkind IN ('r', 'p') AND c.relname <> 'stores' ORDER BY 1");
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    for (int i = 0; i < PQntuples(r) && ntables < MAX_TABLES; i++)
        snprintf(tables[ntables++], sizeof(tables[0]), "%s", PQgetvalue(r, i, 0));
    PQclear(r);
    return 0;
}

/* Before each test: out of whatever transaction a failed test left open (its
 * SET LOCAL ROLE would make the owner's counts of the next test wrong). */
static int
fresh(void **state)
{
    (void)state;
    if (PQtransactionStatus(pg) != PQTRANS_IDLE)
        PQclear(PQexec(pg, "ROLLBACK"));
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    th_user_free(&ua);
    th_user_free(&ub);
    th_user_free(&root);
    PQfinish(pg);
    if (srv == NULL)
        return -1;
    assert_int_equal(th_stop(srv), 0);
    return 0;
}

/* Every table with a store_id has RLS on and a policy; the known ones are among them. */
static void
test_every_tenant_table_has_a_policy(void **state)
{
    (void)state;
    for (const char *const *e = expected; *e; e++) {
        bool found = false;
        for (size_t i = 0; i < ntables; i++)
            found = found || strcmp(tables[i], *e) == 0;
        if (!found)
            fail_msg("tenant table %s has no store_id column", *e);
    }
    for (size_t i = 0; i < ntables; i++) {
        const char *p[1] = {tables[i]};
        PGresult *r = q("SELECT c.relrowsecurity, (SELECT count(*) FROM pg_policies "
                        "WHERE schemaname = 'public' AND tablename = c.relname) "
                        "FROM pg_class c WHERE c.oid = ('public.' || $1)::regclass",
                        1, p);
        assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
        if (PQgetvalue(r, 0, 0)[0] != 't' || atol(PQgetvalue(r, 0, 1)) < 1)
            fail_msg("table %s has a store_id but is not behind row-level security "
                     "(enabled=%s, policies=%s)",
                     tables[i], PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1));
        PQclear(r);
    }
}

static void
test_unset_sees_nothing(void **state)
{
    (void)state;
    char sql[256];
    /* Never set in this session, then set and ended with its transaction ('' then). */
    for (int round = 0; round < 2; round++) {
        as_app(NULL);
        for (size_t i = 0; i < ntables; i++) {
            snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s", tables[i]);
            long n = count(sql);
            if (n != 0)
                fail_msg("round %d: app.store_id unset, shopd_app sees %ld rows of %s", round, n,
                         tables[i]);
        }
        ok("ROLLBACK");
        as_app(sa);
        ok("COMMIT");
    }
}

/* With app.store_id = sid: every row seen is of sid, and as many as the owner sees. */
static void
sees_only(const char *sid, bool expect_rows)
{
    char sql[256];
    long owner[MAX_TABLES];
    for (size_t i = 0; i < ntables; i++) {
        snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s WHERE %s = %s", tables[i],
                 store_col(tables[i]), sid);
        owner[i] = count(sql);
    }
    as_app(sid);
    for (size_t i = 0; i < ntables; i++) {
        snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s", tables[i]);
        long all = count(sql);
        snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s WHERE %s <> %s", tables[i],
                 store_col(tables[i]), sid);
        long other = count(sql);
        if (other != 0 || all != owner[i])
            fail_msg("app.store_id=%s: %s shows %ld rows (%ld of other stores), the owner sees "
                     "%ld of this store",
                     sid, tables[i], all, other, owner[i]);
        for (const char *const *e = expected; *e && expect_rows; e++)
            if (strcmp(*e, tables[i]) == 0 && all == 0)
                fail_msg("app.store_id=%s: no row of %s (seeded)", sid, tables[i]);
    }
    ok("ROLLBACK");
}

static void
test_store_sees_only_its_rows(void **state)
{
    (void)state;
    sees_only(sa, true);
    sees_only(sb, true);
}

static void
test_platform_sees_platform_users_only(void **state)
{
    (void)state;
    as_app("0");
    assert_true(count("SELECT count(*) FROM users") >= 1);
    assert_int_equal(count("SELECT count(*) FROM users WHERE store_id IS NOT NULL"), 0);
    assert_true(count("SELECT count(*) FROM refresh_tokens") >= 1);
    assert_int_equal(count("SELECT count(*) FROM products"), 0);
    ok("ROLLBACK");
}

static void
test_cannot_write_other_store(void **state)
{
    (void)state;
    char sql[8192]; /* room for any table name GCC cannot bound */
    long before[MAX_TABLES], rows;
    for (size_t i = 0; i < ntables; i++) {
        snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s WHERE %s = %s", tables[i],
                 store_col(tables[i]), sb);
        before[i] = count(sql);
    }
    as_app(sa);
    /* Insert rows that say store B: refused by the policy's WITH CHECK. */
    const char *inserts[] = {
        "INSERT INTO users (store_id, email, password_hash, role) "
        "VALUES (%s, 'rls-intruder@example.com', 'x', 'CUSTOMER')",
        "INSERT INTO categories (store_id, name, slug) VALUES (%s, 'Evil', 'evil')",
        "INSERT INTO products (store_id, name, slug, base_price) VALUES (%s, 'Evil', 'evil', 1)",
        "INSERT INTO attributes (store_id, name) VALUES (%s, 'Evil')", NULL};
    for (const char *const *f = inserts; *f; f++) {
        snprintf(sql, sizeof(sql), *f, sb);
        const char *st = try_sql(sql, NULL);
        if (strcmp(st, "42501") != 0)
            fail_msg("as store A, \"%s\" gave SQLSTATE '%s', not 42501", sql, st);
    }
    /* A's own insert works: the wall is the store, not the privilege. */
    snprintf(sql, sizeof(sql), "INSERT INTO attributes (store_id, name) VALUES (%s, 'Mine')", sa);
    assert_string_equal(try_sql(sql, NULL), "");
    /* Updates and deletes of B's rows find nothing. */
    for (size_t i = 0; i < ntables; i++) {
        snprintf(sql, sizeof(sql), "UPDATE %s SET store_id = store_id WHERE %s = %s", tables[i],
                 store_col(tables[i]), sb);
        const char *st = try_sql(sql, &rows);
        if (st[0] || rows != 0)
            fail_msg("as store A, \"%s\": SQLSTATE '%s', %ld rows", sql, st, rows);
        snprintf(sql, sizeof(sql), "DELETE FROM %s WHERE %s = %s", tables[i], store_col(tables[i]),
                 sb);
        st = try_sql(sql, &rows);
        if (st[0] || rows != 0)
            fail_msg("as store A, \"%s\": SQLSTATE '%s', %ld rows", sql, st, rows);
    }
    /* Moving one of A's rows to B is refused too. */
    snprintf(sql, sizeof(sql), "UPDATE attributes SET store_id = %s WHERE store_id = %s", sb, sa);
    assert_string_equal(try_sql(sql, NULL), "42501");
    snprintf(sql, sizeof(sql), "UPDATE users SET store_id = %s WHERE store_id = %s", sb, sa);
    assert_string_equal(try_sql(sql, NULL), "42501");
    ok("ROLLBACK");
    for (size_t i = 0; i < ntables; i++) {
        snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s WHERE %s = %s", tables[i],
                 store_col(tables[i]), sb);
        assert_int_equal(count(sql), before[i]);
    }
}

/* The refresh token says which store's row it is; another prefix finds none. */
static void
test_refresh_token_names_its_store(void **state)
{
    (void)state;
    char prefix[32], body[256];
    snprintf(prefix, sizeof(prefix), "%ld.", store_a);
    assert_int_equal(strncmp(ua.refresh, prefix, strlen(prefix)), 0);
    assert_int_equal(strncmp(root.refresh, "0.", 2), 0);
    /* Store A's secret presented as store B's (or the platform's): unknown. */
    const char *secret = strchr(ua.refresh, '.') + 1;
    snprintf(body, sizeof(body), "{\"refresh_token\":\"%ld.%s\"}", store_b, secret);
    th_resp_t r = th_req(srv, "POST", "/api/v1/auth/refresh", NULL, body);
    assert_int_equal(r.status, 401);
    th_resp_free(&r);
    snprintf(body, sizeof(body), "{\"refresh_token\":\"0.%s\"}", secret);
    r = th_req(srv, "POST", "/api/v1/auth/refresh", NULL, body);
    assert_int_equal(r.status, 401);
    th_resp_free(&r);
    /* Malformed prefixes are unknown tokens, not errors. */
    const char *bad[] = {"{\"refresh_token\":\"00.x\"}", "{\"refresh_token\":\"-1.x\"}",
                         "{\"refresh_token\":\".x\"}", NULL};
    for (const char *const *b = bad; *b; b++) {
        r = th_req(srv, "POST", "/api/v1/auth/refresh", NULL, *b);
        assert_int_equal(r.status, 401);
        th_resp_free(&r);
    }
    /* A logout with the wrong prefix ends nothing: the real token still refreshes. */
    snprintf(body, sizeof(body), "{\"refresh_token\":\"%ld.%s\"}", store_b, secret);
    r = th_req(srv, "POST", "/api/v1/auth/logout", NULL, body);
    assert_int_equal(r.status, 204);
    th_resp_free(&r);
    snprintf(body, sizeof(body), "{\"refresh_token\":\"%s\"}", ua.refresh);
    r = th_req(srv, "POST", "/api/v1/auth/refresh", NULL, body);
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
    snprintf(body, sizeof(body), "{\"refresh_token\":\"%s\"}", root.refresh);
    r = th_req(srv, "POST", "/api/v1/auth/refresh", NULL, body);
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
}

/* Copies the migrations of SHOPD_SQL_DIR whose names sort before `before`
 * (or from it on, when from is true) into dir. */
static void
copy_migrations(const char *dir, const char *before, bool from)
{
    const char *src = th_env("SHOPD_SQL_DIR");
    DIR *d = opendir(src);
    assert_non_null(d);
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t n = strlen(e->d_name);
        if (n < 5 || strcmp(e->d_name + n - 4, ".sql") != 0 ||
            (strcmp(e->d_name, before) < 0) == from)
            continue;
        char in[1024], out[1024], buf[8192];
        snprintf(in, sizeof(in), "%s/%s", src, e->d_name);
        snprintf(out, sizeof(out), "%s/%s", dir, e->d_name);
        FILE *fi = fopen(in, "r"), *fo = fopen(out, "w");
        assert_non_null(fi);
        assert_non_null(fo);
        size_t k;
        while ((k = fread(buf, 1, sizeof(buf), fi)) > 0)
            assert_int_equal(fwrite(buf, 1, k, fo), k);
        fclose(fi);
        assert_int_equal(fclose(fo), 0);
    }
    closedir(d);
}

/* 0001-0004 with data, then 0005 through the real migrator: every token row
 * gets its user's store (0 for the platform), and the new keys hold. */
static void
test_migration_backfills_existing_rows(void **state)
{
    (void)state;
    char dir[] = "/tmp/shopd-rls-mig-XXXXXX", schema[64], url[1024], sql[512], err[512];
    assert_non_null(mkdtemp(dir));
    snprintf(schema, sizeof(schema), "rls_mig_%d", (int)getpid());
    const char *db_url = th_env("SHOPD_TEST_DATABASE_URL");
    /* A schema of our own first on the search path; public after it for pg_trgm. */
    snprintf(url, sizeof(url), "%s%soptions=-csearch_path%%3D%s%%2Cpublic", db_url,
             strchr(db_url, '?') ? "&" : "?", schema);
    snprintf(sql, sizeof(sql), "DROP SCHEMA IF EXISTS %s CASCADE", schema);
    ok(sql);
    snprintf(sql, sizeof(sql), "CREATE SCHEMA %s", schema);
    ok(sql);

    copy_migrations(dir, "0005", false);
    assert_int_equal(db_migrate(url, dir, err, sizeof(err)), 4);
    PGconn *m = PQconnectdb(url);
    assert_int_equal(PQstatus(m), CONNECTION_OK);
    PGresult *r = PQexec(
        m, "INSERT INTO stores (id, slug, name, currency) VALUES (1, 'old-one', 'One', 'EUR'), "
           "(2, 'old-two', 'Two', 'EUR'); "
           "INSERT INTO users (id, store_id, email, password_hash, role) VALUES "
           "(1, 1, 'a@example.com', 'h', 'CUSTOMER'), (2, 2, 'b@example.com', 'h', 'STORE_ADMIN'), "
           "(3, NULL, 'root@example.com', 'h', 'SUPER_ADMIN'); "
           "INSERT INTO refresh_tokens (user_id, family, token_hash, expires_at) VALUES "
           "(1, 'f1', 'h1', now() + interval '1 day'), (2, 'f2', 'h2', now() + interval '1 day'), "
           "(3, 'f3', 'h3', now() + interval '1 day'); "
           "INSERT INTO password_resets (user_id, token_hash, expires_at) VALUES "
           "(1, 'r1', now() + interval '1 hour'), (3, 'r3', now() + interval '1 hour')");
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        fail_msg("seed 0004: %s", PQresultErrorMessage(r));
    PQclear(r);

    copy_migrations(dir, "0005", true);
    assert_true(db_migrate(url, dir, err, sizeof(err)) >= 1);
    r = PQexec(m, "SELECT (SELECT string_agg(user_id || ':' || store_id, ',' ORDER BY user_id) "
                  "FROM refresh_tokens), "
                  "(SELECT string_agg(user_id || ':' || store_id, ',' ORDER BY user_id) "
                  "FROM password_resets)");
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    assert_string_equal(PQgetvalue(r, 0, 0), "1:1,2:2,3:0");
    assert_string_equal(PQgetvalue(r, 0, 1), "1:1,3:0");
    PQclear(r);
    /* A token row of store 2 for store 1's user, or of the platform for a store
     * user, has no user to point at. */
    const char *bad[] = {"INSERT INTO refresh_tokens (store_id, user_id, family, token_hash, "
                         "expires_at) VALUES (2, 1, 'x', 'x1', now())",
                         "INSERT INTO password_resets (store_id, user_id, token_hash, expires_at) "
                         "VALUES (0, 1, 'x2', now())",
                         NULL};
    for (const char *const *b = bad; *b; b++) {
        r = PQexec(m, *b);
        const char *st = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        if (st == NULL || strcmp(st, "23503") != 0)
            fail_msg("%s: %s (want a foreign key violation)", *b, PQresultErrorMessage(r));
        PQclear(r);
    }
    PQfinish(m);

    snprintf(sql, sizeof(sql), "DROP SCHEMA %s CASCADE", schema);
    ok(sql);
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        char path[1024];
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        if (e->d_name[0] != '.')
            unlink(path);
    }
    if (d)
        closedir(d);
    rmdir(dir);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_every_tenant_table_has_a_policy, fresh),
        cmocka_unit_test_setup(test_unset_sees_nothing, fresh),
        cmocka_unit_test_setup(test_store_sees_only_its_rows, fresh),
        cmocka_unit_test_setup(test_platform_sees_platform_users_only, fresh),
        cmocka_unit_test_setup(test_cannot_write_other_store, fresh),
        cmocka_unit_test_setup(test_refresh_token_names_its_store, fresh),
        cmocka_unit_test_setup(test_migration_backfills_existing_rows, fresh),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
