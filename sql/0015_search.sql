-- 0015: product search (src/modules/search/pg.c): full text, typo tolerance,
-- facets and suggestions, all in PostgreSQL.
--
-- Three columns on products, kept by triggers in the transaction of the edit
-- (a product edit is searchable on the next request, no indexing lag):
--   search_doc   the tsvector: name (weight A); brand, SKUs and attribute
--                values (B); description (C), in the store's text-search
--                configuration (stores.settings.search_language, a name from
--                pg_ts_config such as 'english'; 'simple' when unset or unknown).
--   search_attrs the product's attributes and its variants' options as one
--                object of sorted arrays of text, {"color":["blue","red"]}:
--                what attr.<name> filters (containment, GIN) and the attribute
--                facets count.
--   search_name  lower-case name without punctuation ("T-Shirt" -> "tshirt"),
--                for trigram typo tolerance ("tshrit") and prefix suggestions.
-- Generated columns cannot read the variants or the store, hence triggers: on
-- products (before insert/update), on variants (a changed SKU or option set
-- touches its product) and on stores (a changed search_language re-indexes
-- the store's products). Stock is not indexed here: in_stock is read from the
-- variants at query time, so checkouts never write to products.
CREATE EXTENSION IF NOT EXISTS btree_gin;

ALTER TABLE products ADD COLUMN search_doc tsvector NOT NULL DEFAULT ''::tsvector;
ALTER TABLE products ADD COLUMN search_attrs jsonb NOT NULL DEFAULT '{}'::jsonb;
-- Collation "C": byte order, so one btree serves both LIKE 'prefix%' as a
-- range and ORDER BY search_name (suggestions stop after 8 rows of the index).
ALTER TABLE products ADD COLUMN search_name text COLLATE "C" NOT NULL DEFAULT '';

-- The text-search configuration of a store.
CREATE FUNCTION search_config(p_store bigint) RETURNS regconfig LANGUAGE sql STABLE PARALLEL SAFE AS
$$ SELECT coalesce((SELECT c.oid::regconfig FROM stores s JOIN pg_ts_config c
                     ON c.cfgname = s.settings->>'search_language' WHERE s.id = p_store),
                   'simple'::regconfig) $$;

-- A JSON value as text values: an array's scalar elements, a scalar itself,
-- nothing for objects and nulls.
CREATE FUNCTION search_values(v jsonb) RETURNS SETOF text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
$$ SELECT x FROM jsonb_array_elements(CASE jsonb_typeof(v) WHEN 'array' THEN v
                                          ELSE jsonb_build_array(v) END) e(x0),
              LATERAL (SELECT e.x0 #>> '{}' AS x) t
   WHERE jsonb_typeof(e.x0) IN ('string', 'number', 'boolean') AND x <> '' $$;

CREATE FUNCTION search_products_fill() RETURNS trigger LANGUAGE plpgsql AS
$$
DECLARE
    cfg regconfig := search_config(NEW.store_id);
    skus text;
    attr_text text;
BEGIN
    -- A new product has no variants yet: its own attributes are all there is
    -- (bulk inserts then cost one pass over the row, no lookups).
    IF TG_OP = 'INSERT' THEN
        SELECT coalesce(jsonb_object_agg(k, vals), '{}'::jsonb) INTO NEW.search_attrs
          FROM (SELECT e.key AS k, jsonb_agg(DISTINCT x ORDER BY x) AS vals
                  FROM jsonb_each(NEW.attributes) e, search_values(e.value) x
                 GROUP BY e.key) g;
    ELSE
        SELECT coalesce(jsonb_object_agg(k, vals), '{}'::jsonb) INTO NEW.search_attrs
          FROM (SELECT k, jsonb_agg(DISTINCT x ORDER BY x) AS vals
                  FROM (SELECT e.key AS k, x
                          FROM jsonb_each(NEW.attributes) e, search_values(e.value) x
                        UNION ALL
                        SELECT e.key, x
                          FROM product_variants v, jsonb_each(v.options) e, search_values(e.value) x
                         WHERE v.store_id = NEW.store_id AND v.product_id = NEW.id) a
                 GROUP BY k) g;
        SELECT string_agg(sku, ' ' ORDER BY id) INTO skus
          FROM product_variants WHERE store_id = NEW.store_id AND product_id = NEW.id;
    END IF;
    SELECT string_agg(x, ' ') INTO attr_text
      FROM jsonb_each(NEW.search_attrs) e, jsonb_array_elements_text(e.value) x;
    NEW.search_doc :=
        setweight(to_tsvector(cfg, NEW.name), 'A') ||
        setweight(to_tsvector(cfg, concat_ws(' ', NEW.brand, skus, attr_text)), 'B') ||
        setweight(to_tsvector(cfg, NEW.description), 'C');
    NEW.search_name := regexp_replace(lower(NEW.name), '[^[:alnum:][:space:]]+', '', 'g');
    RETURN NEW;
END
$$;

CREATE TRIGGER products_search_fill BEFORE INSERT OR UPDATE OF name, description, brand, attributes, search_doc
    ON products FOR EACH ROW EXECUTE FUNCTION search_products_fill();

-- A variant's SKU or options changed: its product's row is rewritten (search_doc
-- in the SET list fires the trigger above). Not on stock or price changes.
CREATE FUNCTION search_variants_touch() RETURNS trigger LANGUAGE plpgsql AS
$$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        UPDATE products SET search_doc = '' WHERE store_id = OLD.store_id AND id = OLD.product_id;
    END IF;
    IF TG_OP <> 'DELETE' AND (TG_OP = 'INSERT' OR NEW.product_id <> OLD.product_id) THEN
        UPDATE products SET search_doc = '' WHERE store_id = NEW.store_id AND id = NEW.product_id;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER product_variants_search_touch AFTER INSERT OR DELETE OR UPDATE OF sku, options, product_id
    ON product_variants FOR EACH ROW EXECUTE FUNCTION search_variants_touch();

CREATE FUNCTION search_stores_reindex() RETURNS trigger LANGUAGE plpgsql AS
$$
BEGIN
    IF NEW.settings->>'search_language' IS DISTINCT FROM OLD.settings->>'search_language' THEN
        UPDATE products SET search_doc = '' WHERE store_id = NEW.id;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER stores_search_reindex AFTER UPDATE OF settings ON stores
    FOR EACH ROW EXECUTE FUNCTION search_stores_reindex();

-- Fill what exists.
UPDATE products SET search_doc = '';

-- Full text and typo tolerance per store (btree_gin puts store_id in the GIN
-- key, so one store's matches never mean reading another's); attribute
-- containment; name prefixes for suggestions (search_name is "C": LIKE
-- 'abc%' is a range of the index and its order is the answer's; categories
-- use text_pattern_ops, they are few per store).
CREATE INDEX products_search_doc_idx ON products USING gin (store_id, search_doc) WHERE status = 'active';
CREATE INDEX products_search_name_trgm_idx ON products USING gin (store_id, search_name gin_trgm_ops)
    WHERE status = 'active';
CREATE INDEX products_search_attrs_idx ON products USING gin (search_attrs jsonb_path_ops)
    WHERE status = 'active';
CREATE INDEX products_search_prefix_idx ON products (store_id, search_name, id)
    WHERE status = 'active';
CREATE INDEX categories_search_prefix_idx ON categories (store_id, lower(name) text_pattern_ops);
