-- 0005: the store id in every key of the auth tables, and row-level security
-- on every tenant table as a second wall behind the application's own
-- "WHERE store_id = $1".
--
-- Keys. users.store_id stays NULL for platform super admins (0002's CHECK
-- ties that to the role, and stores(id) has no row 0 to point at). A stored
-- generated column users.tenant_id = coalesce(store_id, 0) names the tenant
-- of every user, 0 for the platform, with UNIQUE (tenant_id, id). Refresh
-- tokens and password resets get store_id NOT NULL (0 for a platform user's
-- rows), backfilled from their user, and reference their user by
-- (store_id, user_id) -> users (tenant_id, id): a token row can never point
-- at a user of another store, and a platform token row only at a platform
-- user. Their keys become (store_id, id) and (store_id, token_hash), so every
-- lookup names the store (auth.c: a refresh token carries its store id in
-- front, "<store_id>.<secret>", because /auth/refresh is not store-scoped).
-- Moving a user to another store with live tokens fails on that foreign key
-- (no ON UPDATE action); revoke or delete the tokens first.
--
-- Row-level security. Each tenant table gets one policy: a row is visible
-- and writable only when its store id equals app.store_id, read with
-- current_setting('app.store_id', true); unset (NULL, or '' after a SET LOCAL
-- ended) matches nothing, '0' is the platform's users and tokens. The policies
-- apply to every role except the tables' owner and superusers: shopd itself
-- connects as the owner today and is not subject to them (its first wall is
-- the store_id filter in every query). The role shopd_app (NOLOGIN; grant it
-- to a login role, or SET ROLE) gets the DML a server needs; a deployment
-- that runs shopd or tools under it must set app.store_id in each transaction
-- (SET LOCAL app.store_id = '42', or set_config('app.store_id', '42', true)).
-- stores itself, the tenant root that requests are resolved against, has no
-- policy. tests/integration/test_rls.c checks that every table with a
-- store_id column is covered, so a later migration cannot forget one.

ALTER TABLE users ADD COLUMN tenant_id bigint GENERATED ALWAYS AS (coalesce(store_id, 0)) STORED;
ALTER TABLE users ADD CONSTRAINT users_tenant_id_uq UNIQUE (tenant_id, id);

-- refresh_tokens
ALTER TABLE refresh_tokens ADD COLUMN store_id bigint;
UPDATE refresh_tokens rt SET store_id = u.tenant_id FROM users u WHERE u.id = rt.user_id;
ALTER TABLE refresh_tokens ALTER COLUMN store_id SET NOT NULL;
ALTER TABLE refresh_tokens DROP CONSTRAINT refresh_tokens_user_id_fkey;
ALTER TABLE refresh_tokens DROP CONSTRAINT refresh_tokens_pkey;
ALTER TABLE refresh_tokens DROP CONSTRAINT refresh_tokens_token_hash_key;
ALTER TABLE refresh_tokens ADD PRIMARY KEY (store_id, id);
ALTER TABLE refresh_tokens ADD CONSTRAINT refresh_tokens_token_hash_key UNIQUE (store_id, token_hash);
ALTER TABLE refresh_tokens ADD CONSTRAINT refresh_tokens_user_fkey
    FOREIGN KEY (store_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE;
DROP INDEX refresh_tokens_family_idx;
DROP INDEX refresh_tokens_user_idx;
CREATE INDEX refresh_tokens_family_idx ON refresh_tokens (store_id, family);
CREATE INDEX refresh_tokens_user_idx ON refresh_tokens (store_id, user_id) WHERE revoked_at IS NULL;

-- password_resets
ALTER TABLE password_resets ADD COLUMN store_id bigint;
UPDATE password_resets pr SET store_id = u.tenant_id FROM users u WHERE u.id = pr.user_id;
ALTER TABLE password_resets ALTER COLUMN store_id SET NOT NULL;
ALTER TABLE password_resets DROP CONSTRAINT password_resets_user_id_fkey;
ALTER TABLE password_resets DROP CONSTRAINT password_resets_pkey;
ALTER TABLE password_resets DROP CONSTRAINT password_resets_token_hash_key;
ALTER TABLE password_resets ADD PRIMARY KEY (store_id, id);
ALTER TABLE password_resets ADD CONSTRAINT password_resets_token_hash_key UNIQUE (store_id, token_hash);
ALTER TABLE password_resets ADD CONSTRAINT password_resets_user_fkey
    FOREIGN KEY (store_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE;
DROP INDEX password_resets_user_idx;
CREATE INDEX password_resets_user_idx ON password_resets (store_id, user_id);

-- The store a session works for, or NULL when unset (then no policy matches).
CREATE FUNCTION app_store_id() RETURNS bigint LANGUAGE sql STABLE PARALLEL SAFE AS
$$ SELECT nullif(current_setting('app.store_id', true), '')::bigint $$;

ALTER TABLE users ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON users
    USING (coalesce(store_id, 0) = app_store_id()) WITH CHECK (coalesce(store_id, 0) = app_store_id());

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['refresh_tokens', 'password_resets', 'categories', 'products',
                             'product_variants', 'attributes', 'attribute_values',
                             'product_option_values', 'inventory_movements'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY tenant_isolation ON %I USING (store_id = app_store_id()) '
                       'WITH CHECK (store_id = app_store_id())', t);
    END LOOP;
END
$$;

-- The restricted application role. Roles belong to the cluster, not the
-- database: create it once, and only if this migration may (without
-- CREATEROLE the policies still hold for every non-owner role).
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'shopd_app') THEN
        BEGIN
            CREATE ROLE shopd_app NOLOGIN;
        EXCEPTION
            WHEN insufficient_privilege THEN
                RAISE NOTICE 'role shopd_app not created (no CREATEROLE); the policies still apply to non-owner roles';
                RETURN;
            WHEN duplicate_object OR unique_violation THEN
                NULL; -- another database of the cluster created it just now
        END;
    END IF;
    GRANT USAGE ON SCHEMA public TO shopd_app;
    GRANT SELECT ON stores TO shopd_app;
    GRANT SELECT, INSERT, UPDATE, DELETE ON users, refresh_tokens, password_resets, categories,
        products, product_variants, attributes, attribute_values, product_option_values,
        inventory_movements TO shopd_app;
    GRANT USAGE ON SEQUENCE users_id_seq, refresh_tokens_id_seq, password_resets_id_seq TO shopd_app;
END
$$;
