-- 0020: product counts per store, category and status, kept by triggers in the
-- transaction of the edit, so the product list's total is one index lookup (a
-- few rows: one per category of the filter and status) instead of a count over
-- the store's products on every page (products.c uses it when the filter is
-- only status and category; a filter on price, brand or text still counts,
-- bounded by CATALOG_COUNT_CAP).
--
-- category_id 0 stands for "no category" (a primary key column cannot be
-- null). The triggers are statement-level with transition tables: a bulk
-- import of 100,000 products adds one aggregated upsert per (category, status)
-- instead of one per row. A delete only subtracts from rows that exist: when a
-- store is deleted its counts may go first (cascade order is not fixed), and an
-- upsert then would fail the foreign key of a store that is gone.
CREATE TABLE catalog_counts (
    store_id    bigint NOT NULL REFERENCES stores (id) ON DELETE CASCADE,
    category_id bigint NOT NULL,
    status      text NOT NULL,
    n           bigint NOT NULL,
    PRIMARY KEY (store_id, category_id, status)
);

CREATE FUNCTION catalog_counts_add() RETURNS trigger LANGUAGE plpgsql AS
$$
BEGIN
    INSERT INTO catalog_counts (store_id, category_id, status, n)
    SELECT store_id, coalesce(category_id, 0), status, count(*) FROM new_rows
     GROUP BY 1, 2, 3
    ON CONFLICT (store_id, category_id, status) DO UPDATE SET n = catalog_counts.n + EXCLUDED.n;
    RETURN NULL;
END
$$;

CREATE FUNCTION catalog_counts_sub() RETURNS trigger LANGUAGE plpgsql AS
$$
BEGIN
    UPDATE catalog_counts c SET n = c.n - d.k
      FROM (SELECT store_id, coalesce(category_id, 0) AS category_id, status, count(*) AS k
              FROM old_rows GROUP BY 1, 2, 3) d
     WHERE c.store_id = d.store_id AND c.category_id = d.category_id AND c.status = d.status;
    RETURN NULL;
END
$$;

-- An update moves a product between (category, status) pairs: subtract what
-- the old rows were, add what the new rows are; rows whose pair did not change
-- cancel out and are left alone.
CREATE FUNCTION catalog_counts_move() RETURNS trigger LANGUAGE plpgsql AS
$$
BEGIN
    WITH d AS (
        SELECT store_id, category_id, status, sum(k) AS k FROM (
            SELECT store_id, coalesce(category_id, 0) AS category_id, status, 1 AS k FROM new_rows
            UNION ALL
            SELECT store_id, coalesce(category_id, 0), status, -1 FROM old_rows) x
         GROUP BY 1, 2, 3 HAVING sum(k) <> 0)
    INSERT INTO catalog_counts (store_id, category_id, status, n)
    SELECT store_id, category_id, status, k FROM d
    ON CONFLICT (store_id, category_id, status) DO UPDATE SET n = catalog_counts.n + EXCLUDED.n;
    RETURN NULL;
END
$$;

CREATE TRIGGER catalog_counts_ins AFTER INSERT ON products
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION catalog_counts_add();
CREATE TRIGGER catalog_counts_del AFTER DELETE ON products
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION catalog_counts_sub();
CREATE TRIGGER catalog_counts_upd AFTER UPDATE ON products
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION catalog_counts_move();

-- The counts of the products already there.
INSERT INTO catalog_counts (store_id, category_id, status, n)
SELECT store_id, coalesce(category_id, 0), status, count(*) FROM products GROUP BY 1, 2, 3;

ALTER TABLE catalog_counts ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON catalog_counts USING (store_id = app_store_id())
    WITH CHECK (store_id = app_store_id());

DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'shopd_app') THEN
        GRANT SELECT, INSERT, UPDATE, DELETE ON catalog_counts TO shopd_app;
    END IF;
END
$$;
