-- 0009: Idempotency-Key answers kept in PostgreSQL, for the routes whose
-- handler claims the key in the transaction of its own effect (API_IDEM_SELF:
-- checkout, payment, refund; include/shopd/idem.h). Ordinary routes keep their
-- keys in Redis. One row per (store, key), store 0 for platform routes (so no
-- foreign key to stores: there is no store 0; a deleted store's rows go with
-- the 24 h sweep). status 0 means claimed and not answered yet, which only the
-- claiming transaction can see: the row commits with its answer.
CREATE TABLE idempotency_keys (
    store_id bigint NOT NULL CHECK (store_id >= 0),
    key text NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
    fingerprint bytea NOT NULL CHECK (length(fingerprint) = 32),
    status int NOT NULL DEFAULT 0 CHECK (status = 0 OR status BETWEEN 100 AND 599),
    content_type text,
    headers text,
    body bytea,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (store_id, key)
);
-- The sweeper deletes the oldest first.
CREATE INDEX idempotency_keys_created_idx ON idempotency_keys (created_at);

ALTER TABLE idempotency_keys ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON idempotency_keys
    USING (store_id = app_store_id()) WITH CHECK (store_id = app_store_id());

DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'shopd_app') THEN
        GRANT SELECT, INSERT, UPDATE, DELETE ON idempotency_keys TO shopd_app;
    END IF;
END
$$;
