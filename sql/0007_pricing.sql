-- 0007: what a checkout prices a cart with: customers' saved addresses,
-- shipping zones (lists of countries) and their rates, tax rates by country
-- and region, and discount codes with the record of their uses
-- (src/modules/pricing, include/shopd/pricing.h).
--
-- As everywhere: store_id leads every key, references between tenant rows are
-- composite (store_id, x_id), everything cascades from stores, and each table
-- gets the tenant_isolation policy of 0005. discount_uses.order_id is a plain
-- bigint: the orders table arrives with 0008 (the checkout), which may add the
-- foreign key then.

CREATE TABLE addresses (
    store_id            bigint NOT NULL REFERENCES stores (id) ON DELETE CASCADE,
    id                  bigint GENERATED ALWAYS AS IDENTITY,
    user_id             bigint NOT NULL,
    name                text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    company             text CHECK (company IS NULL OR length(company) <= 200),
    line1               text NOT NULL CHECK (length(line1) BETWEEN 1 AND 200),
    line2               text CHECK (line2 IS NULL OR length(line2) <= 200),
    city                text NOT NULL CHECK (length(city) BETWEEN 1 AND 100),
    region              text CHECK (region IS NULL OR length(region) <= 100),
    postal_code         text NOT NULL CHECK (length(postal_code) BETWEEN 1 AND 20),
    country             text NOT NULL CHECK (country ~ '^[A-Z]{2}$'),
    phone               text CHECK (phone IS NULL OR length(phone) <= 40),
    is_default_shipping boolean NOT NULL DEFAULT false,
    is_default_billing  boolean NOT NULL DEFAULT false,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (store_id, id),
    -- A customer of this very store (users.tenant_id is its store, 0005).
    FOREIGN KEY (store_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX addresses_user_idx ON addresses (store_id, user_id, id);
-- At most one default of each kind per user: the handler clears the old one in
-- the same transaction; these make a bug or a race an error, not two defaults.
CREATE UNIQUE INDEX addresses_default_shipping_uq ON addresses (store_id, user_id) WHERE is_default_shipping;
CREATE UNIQUE INDEX addresses_default_billing_uq ON addresses (store_id, user_id) WHERE is_default_billing;

CREATE TABLE shipping_zones (
    store_id    bigint NOT NULL REFERENCES stores (id) ON DELETE CASCADE,
    id          bigint GENERATED ALWAYS AS IDENTITY,
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (store_id, id),
    CONSTRAINT shipping_zones_name_uq UNIQUE (store_id, name)
);

-- A country is in at most one zone of a store: the key says so
-- (shipping_zone_countries_pkey -> 409 country_in_other_zone).
CREATE TABLE shipping_zone_countries (
    store_id    bigint NOT NULL,
    zone_id     bigint NOT NULL,
    country     text NOT NULL CHECK (country ~ '^[A-Z]{2}$'),
    PRIMARY KEY (store_id, country),
    FOREIGN KEY (store_id, zone_id) REFERENCES shipping_zones (store_id, id) ON DELETE CASCADE
);
CREATE INDEX shipping_zone_countries_zone_idx ON shipping_zone_countries (store_id, zone_id);

-- kind 'flat': price whatever the weight; kind 'weight': a band
-- min_weight_g <= weight < max_weight_g (no max: no upper bound). free_above:
-- from this subtotal on the rate costs 0.
CREATE TABLE shipping_rates (
    store_id     bigint NOT NULL,
    id           bigint GENERATED ALWAYS AS IDENTITY,
    zone_id      bigint NOT NULL,
    name         text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    kind         text NOT NULL CHECK (kind IN ('flat', 'weight')),
    price        bigint NOT NULL CHECK (price >= 0),
    min_weight_g bigint CHECK (min_weight_g IS NULL OR min_weight_g >= 0),
    max_weight_g bigint,
    free_above   bigint CHECK (free_above IS NULL OR free_above >= 0),
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (store_id, id),
    FOREIGN KEY (store_id, zone_id) REFERENCES shipping_zones (store_id, id) ON DELETE CASCADE,
    CONSTRAINT shipping_rates_band_check CHECK (
        (kind = 'flat' AND min_weight_g IS NULL AND max_weight_g IS NULL) OR
        (kind = 'weight' AND min_weight_g IS NOT NULL AND (max_weight_g IS NULL OR max_weight_g > min_weight_g)))
);
CREATE INDEX shipping_rates_zone_idx ON shipping_rates (store_id, zone_id, id);

-- region NULL: the whole country (the fallback when no row names the region).
CREATE TABLE tax_rates (
    store_id    bigint NOT NULL REFERENCES stores (id) ON DELETE CASCADE,
    id          bigint GENERATED ALWAYS AS IDENTITY,
    country     text NOT NULL CHECK (country ~ '^[A-Z]{2}$'),
    region      text CHECK (region IS NULL OR length(region) BETWEEN 1 AND 100),
    rate_bps    int NOT NULL CHECK (rate_bps BETWEEN 0 AND 10000),
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (store_id, id)
);
-- Unique per (store, country, region), regions compared without case and the
-- country-wide row (NULL) counted once.
CREATE UNIQUE INDEX tax_rates_region_uq ON tax_rates (store_id, country, lower(coalesce(region, '')));

CREATE TABLE discounts (
    store_id           bigint NOT NULL REFERENCES stores (id) ON DELETE CASCADE,
    id                 bigint GENERATED ALWAYS AS IDENTITY,
    code               text NOT NULL CHECK (code ~ '^[A-Za-z0-9_-]{1,64}$'),
    kind               text NOT NULL CHECK (kind IN ('percent', 'fixed')),
    value              bigint NOT NULL,
    min_subtotal       bigint NOT NULL DEFAULT 0 CHECK (min_subtotal >= 0),
    starts_at          timestamptz,
    ends_at            timestamptz,
    usage_limit        int CHECK (usage_limit IS NULL OR usage_limit >= 1),
    per_customer_limit int CHECK (per_customer_limit IS NULL OR per_customer_limit >= 1),
    used               int NOT NULL DEFAULT 0 CHECK (used >= 0),
    active             boolean NOT NULL DEFAULT true,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (store_id, id),
    CONSTRAINT discounts_value_check CHECK (
        (kind = 'percent' AND value BETWEEN 1 AND 10000) OR (kind = 'fixed' AND value >= 1)),
    CONSTRAINT discounts_window_check CHECK (starts_at IS NULL OR ends_at IS NULL OR ends_at > starts_at)
);
-- Codes are case-insensitive: SUMMER and summer are one code.
CREATE UNIQUE INDEX discounts_code_uq ON discounts (store_id, lower(code));

-- One row per order that used a code (an order uses at most one); released
-- (deleted, used decremented) when the order is cancelled.
CREATE TABLE discount_uses (
    store_id    bigint NOT NULL,
    id          bigint GENERATED ALWAYS AS IDENTITY,
    discount_id bigint NOT NULL,
    order_id    bigint NOT NULL,
    user_id     bigint,
    email       text CHECK (email IS NULL OR length(email) <= 254),
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (store_id, id),
    CONSTRAINT discount_uses_order_uq UNIQUE (store_id, order_id),
    FOREIGN KEY (store_id, discount_id) REFERENCES discounts (store_id, id) ON DELETE CASCADE
);
CREATE INDEX discount_uses_user_idx ON discount_uses (store_id, discount_id, user_id);
CREATE INDEX discount_uses_email_idx ON discount_uses (store_id, discount_id, lower(email));

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['addresses', 'shipping_zones', 'shipping_zone_countries',
                             'shipping_rates', 'tax_rates', 'discounts', 'discount_uses'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY tenant_isolation ON %I USING (store_id = app_store_id()) '
                       'WITH CHECK (store_id = app_store_id())', t);
    END LOOP;
END
$$;

DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'shopd_app') THEN
        GRANT SELECT, INSERT, UPDATE, DELETE ON addresses, shipping_zones, shipping_zone_countries,
            shipping_rates, tax_rates, discounts, discount_uses TO shopd_app;
    END IF;
END
$$;
