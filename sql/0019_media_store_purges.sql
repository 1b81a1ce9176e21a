-- 0019: a deleted store's media objects are deleted too, in the background.
--
-- Deleting a store deletes its rows at once (ON DELETE CASCADE), its outbox
-- and jobs among them, so its objects (local "s<store>/" folder, or the S3
-- keys under that prefix) cannot be one of its own jobs, and 0010's image
-- trigger skips a store being deleted. Instead the stores' AFTER DELETE
-- trigger below writes one row here in the deleting transaction (so no store
-- deletion, whatever its path, is ever without one), and the media module's
-- sweep (src/modules/media/purge.c) runs it on the blocking pool: deletes
-- every object under the prefix, then deletes the row; a failure is retried on
-- SHOPD_JOBS_RETRY_SCHEDULE, and after the last retry the row stays 'dead'
-- with its error for operators. A row taken ('running') by a process that died
-- is taken again after SHOPD_JOBS_VISIBILITY_MS.
--
-- Not a tenant table: its rows are about stores that no longer exist, read
-- by a sweep that works for no store, so (like stores itself) no row-level
-- security, and the column is deleted_store_id, not store_id (the name
-- tests/integration/test_rls.c and test_stores.c take for a tenant's rows).
-- No key to stores: the store is gone. Store ids are never reused (bigserial),
-- so a prefix can only ever be that deleted store's.
CREATE TABLE media_store_purges (
    deleted_store_id bigint PRIMARY KEY,
    state            text NOT NULL DEFAULT 'ready' CHECK (state IN ('ready', 'running', 'dead')),
    attempts         int NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_at          timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX media_store_purges_due_idx ON media_store_purges (next_at) WHERE state = 'ready';

CREATE FUNCTION stores_deleted_media() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO media_store_purges (deleted_store_id) VALUES (OLD.id)
    ON CONFLICT (deleted_store_id) DO UPDATE SET state = 'ready', attempts = 0, next_at = now();
    RETURN OLD;
END
$$;
CREATE TRIGGER stores_deleted_media AFTER DELETE ON stores
    FOR EACH ROW EXECUTE FUNCTION stores_deleted_media();

DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'shopd_app') THEN
        GRANT SELECT, INSERT, UPDATE, DELETE ON media_store_purges TO shopd_app;
    END IF;
END
$$;
