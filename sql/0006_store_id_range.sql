-- 0006: store ids stay below 2^56. The actor runtime keys a store's actors by
-- (lane << 56 | store id) (include/shopd/actors.h), so a store id must fit in 56
-- bits; 7.2e16 stores is far beyond any deployment, and this makes it a rule.
ALTER SEQUENCE stores_id_seq MAXVALUE 72057594037927935;
ALTER TABLE stores ADD CONSTRAINT stores_id_range CHECK (id BETWEEN 1 AND 72057594037927935);
