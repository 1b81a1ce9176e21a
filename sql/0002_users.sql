-- 0002: users (platform super admins have no store; store admins and customers
-- belong to exactly one), refresh tokens (stored hashed, grouped in families
-- for reuse detection) and password reset tokens (stored hashed, single use).
CREATE TABLE users (
    id             bigserial PRIMARY KEY,
    store_id       bigint REFERENCES stores(id) ON DELETE CASCADE,
    email          text NOT NULL CHECK (length(email) BETWEEN 3 AND 254),
    password_hash  text NOT NULL,
    role           text NOT NULL CHECK (role IN ('SUPER_ADMIN', 'STORE_ADMIN', 'CUSTOMER')),
    name           text NOT NULL DEFAULT '' CHECK (length(name) <= 200),
    status         text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    last_login_at  timestamptz,
    CHECK ((role = 'SUPER_ADMIN') = (store_id IS NULL))
);

-- E-mail is case-insensitive: unique per store, and unique among platform admins.
CREATE UNIQUE INDEX users_store_email_uq ON users (store_id, lower(email)) WHERE store_id IS NOT NULL;
CREATE UNIQUE INDEX users_platform_email_uq ON users (lower(email)) WHERE store_id IS NULL;
CREATE INDEX users_store_role_id_idx ON users (store_id, role, id);

CREATE TABLE refresh_tokens (
    id          bigserial PRIMARY KEY,
    user_id     bigint NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    family      text NOT NULL,
    token_hash  text NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz,   -- rotated: presenting it again is theft
    revoked_at  timestamptz
);
CREATE INDEX refresh_tokens_family_idx ON refresh_tokens (family);
CREATE INDEX refresh_tokens_user_idx ON refresh_tokens (user_id) WHERE revoked_at IS NULL;

CREATE TABLE password_resets (
    id          bigserial PRIMARY KEY,
    user_id     bigint NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    token_hash  text NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz
);
CREATE INDEX password_resets_user_idx ON password_resets (user_id);
