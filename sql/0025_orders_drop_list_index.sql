-- 0025: orders lose an index that repeated their primary key.
--
-- orders_list_idx (store_id, id DESC) holds the same keys as orders_pkey
-- (store_id, id): a btree is read backwards as cheaply as forwards, so the
-- newest-first order list and the foreign-key checks of order rows use the
-- primary key alike. The copy cost every placed order one more index insert
-- (orders had eight), inside the checkout batch's statement.
DROP INDEX orders_list_idx;
