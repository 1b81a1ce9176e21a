-- 0001: stores, the tenants. Every later tenant table carries store_id and
-- references stores(id) ON DELETE CASCADE.
CREATE TABLE stores (
    id          bigserial PRIMARY KEY,
    slug        text NOT NULL UNIQUE
                CHECK (slug ~ '^[a-z0-9]([a-z0-9-]*[a-z0-9])?$' AND length(slug) BETWEEN 3 AND 63),
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    domain      text UNIQUE CHECK (domain IS NULL OR (domain = lower(domain) AND length(domain) <= 253)),
    currency    char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    settings    jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(settings) = 'object'),
    status      text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX stores_status_id_idx ON stores (status, id);
