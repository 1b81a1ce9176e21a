-- 0017: drops the foreign keys from store_id to stores that a table's own
-- composite key already implies. Each table below also has a NOT NULL
-- (store_id, parent_id) key to a parent whose rows reference stores ON DELETE
-- CASCADE, so its store exists while it does and a store's deletion still
-- reaches it (through the parent). What the extra key cost: one check per
-- inserted row, each a KEY SHARE lock on the one stores row, taken by every
-- concurrent checkout and import of the store (a multixact on a hot row) —
-- the order statement wrote four of them per order (items, event, payment,
-- ledger), an import two per variant.
-- Kept: keys whose parent is users (a user's tenant is checked by its own rows),
-- and every table's key that is its only way to stores.
ALTER TABLE product_variants DROP CONSTRAINT product_variants_store_id_fkey;
ALTER TABLE attribute_values DROP CONSTRAINT attribute_values_store_id_fkey;
ALTER TABLE product_option_values DROP CONSTRAINT product_option_values_store_id_fkey;
ALTER TABLE inventory_movements DROP CONSTRAINT inventory_movements_store_id_fkey;
ALTER TABLE cart_items DROP CONSTRAINT cart_items_store_id_fkey;
ALTER TABLE order_items DROP CONSTRAINT order_items_store_id_fkey;
ALTER TABLE order_events DROP CONSTRAINT order_events_store_id_fkey;
ALTER TABLE payments DROP CONSTRAINT payments_store_id_fkey;
ALTER TABLE refunds DROP CONSTRAINT refunds_store_id_fkey;
ALTER TABLE jobs DROP CONSTRAINT jobs_store_id_fkey;
ALTER TABLE webhook_deliveries DROP CONSTRAINT webhook_deliveries_store_id_fkey;
