-- 0021: a bulk import writes each product row once, its search columns
-- already computed from its variants, instead of twice (its insert, then the
-- re-index of 0018's statement trigger once its variants are in: a second
-- version of the row in every product index, two trigram GINs among them, and
-- the catalog counts' update trigger on top).
--
-- The search columns of 0015 are now computed by three functions, so the
-- trigger and src/modules/catalog/import.c (which calls them for a batch in its
-- INSERT ... SELECT) cannot drift apart:
--   search_attrs_of(attributes, options)  options: a JSON array of the
--       variants' option objects (NULL: none);
--   search_doc_of(cfg, name, brand, description, skus, search_attrs)  skus: the
--       variants' SKUs in id order, space-separated (NULL: none);
--   search_name_of(name).
-- What they compute is what 0015's trigger computed, term for term (the same
-- text in the same order, so the same tsvector positions).
--
-- shopd.bulk: a transaction-local setting (set_config('shopd.bulk', 'on',
-- true)) that import.c alone sets, in the transaction of one batch. While it
-- is on, an INSERT into products keeps the search columns it was given (the
-- import's), and an INSERT into product_variants does not re-index the
-- products (they were indexed with these very variants, in the same
-- statement). Updates and deletes are re-indexed as always. A writer that sets
-- it must write the search columns itself: a product inserted under it without
-- them is not found by search until its next edit.
CREATE FUNCTION search_attrs_of(attributes jsonb, options jsonb) RETURNS jsonb
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
$$ SELECT coalesce(jsonb_object_agg(k, vals), '{}'::jsonb)
     FROM (SELECT a.k, jsonb_agg(DISTINCT x ORDER BY x) AS vals
             FROM (SELECT e.key AS k, e.value AS v FROM jsonb_each(attributes) e
                   UNION ALL
                   SELECT e.key, e.value
                     FROM jsonb_array_elements(options) o, jsonb_each(o.value) e) a,
                  search_values(a.v) x
            GROUP BY a.k) g $$;

-- STABLE, not IMMUTABLE: concat_ws is.
CREATE FUNCTION search_doc_of(cfg regconfig, name text, brand text, description text, skus text,
                              attrs jsonb) RETURNS tsvector
    LANGUAGE sql STABLE PARALLEL SAFE AS
$$ SELECT setweight(to_tsvector(cfg, name), 'A') ||
          setweight(to_tsvector(cfg, concat_ws(' ', brand, skus,
                    (SELECT string_agg(x, ' ')
                       FROM jsonb_each(attrs) e, jsonb_array_elements_text(e.value) x))), 'B') ||
          setweight(to_tsvector(cfg, description), 'C') $$;

CREATE FUNCTION search_name_of(name text) RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
$$ SELECT regexp_replace(lower(name), '[^[:alnum:][:space:]]+', '', 'g') $$;

CREATE OR REPLACE FUNCTION search_products_fill() RETURNS trigger LANGUAGE plpgsql AS
$$
DECLARE
    skus text;
    opts jsonb;
BEGIN
    IF TG_OP = 'INSERT' AND current_setting('shopd.bulk', true) = 'on' THEN
        RETURN NEW; -- the import computed the search columns (see the top of 0021)
    END IF;
    -- A new product has no variants yet: its own attributes are all there is.
    IF TG_OP = 'UPDATE' THEN
        SELECT string_agg(sku, ' ' ORDER BY id), jsonb_agg(options ORDER BY id) INTO skus, opts
          FROM product_variants WHERE store_id = NEW.store_id AND product_id = NEW.id;
    END IF;
    NEW.search_attrs := search_attrs_of(NEW.attributes, opts);
    NEW.search_doc := search_doc_of(search_config(NEW.store_id), NEW.name, NEW.brand,
                                    NEW.description, skus, NEW.search_attrs);
    NEW.search_name := search_name_of(NEW.name);
    RETURN NEW;
END
$$;

CREATE OR REPLACE FUNCTION search_variants_touch_rows() RETURNS trigger LANGUAGE plpgsql AS
$$
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF current_setting('shopd.bulk', true) = 'on' THEN
            RETURN NULL; -- the import indexed their products with them (see the top of 0021)
        END IF;
        UPDATE products p SET search_doc = ''
          FROM (SELECT DISTINCT store_id, product_id FROM new_rows) n
         WHERE p.store_id = n.store_id AND p.id = n.product_id;
    ELSE
        UPDATE products p SET search_doc = ''
          FROM (SELECT DISTINCT store_id, product_id FROM old_rows) o
         WHERE p.store_id = o.store_id AND p.id = o.product_id;
    END IF;
    RETURN NULL;
END
$$;
