-- 0018: a statement's new or deleted variants re-index each of their products
-- once, not once per variant. The row trigger of 0015 rewrote the product row
-- (every product index, the two trigram GINs among them) for each variant: an
-- import of 1,000 products with 3 variants each rewrote 3,000 product rows in
-- its one statement; now 1,000. Transition tables cannot go with a column list,
-- so an UPDATE of a variant's SKU, options or product (rare: not stock, not
-- price) keeps 0015's row trigger.
DROP TRIGGER product_variants_search_touch ON product_variants;

CREATE FUNCTION search_variants_touch_rows() RETURNS trigger LANGUAGE plpgsql AS
$$
BEGIN
    IF TG_OP = 'INSERT' THEN
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

CREATE TRIGGER product_variants_search_insert AFTER INSERT ON product_variants
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION search_variants_touch_rows();
CREATE TRIGGER product_variants_search_delete AFTER DELETE ON product_variants
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION search_variants_touch_rows();
CREATE TRIGGER product_variants_search_touch AFTER UPDATE OF sku, options, product_id
    ON product_variants FOR EACH ROW EXECUTE FUNCTION search_variants_touch();
