-- 0003: the catalog and inventory: categories (an adjacency list), products,
-- variants, store-level attributes with their values, the values a product
-- chooses (input of variant generation) and the inventory ledger.
--
-- Every table keys on (store_id, id) and every reference between them is a
-- composite foreign key (store_id, x_id), so a row can never point at another
-- store's row; everything cascades from stores. The indexes follow the list
-- queries of src/modules/catalog/products.c (tests/integration/test_catalog_plan.c
-- checks with EXPLAIN that they are used).
CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE TABLE categories (
    store_id    bigint NOT NULL REFERENCES stores (id) ON DELETE CASCADE,
    id          bigint GENERATED ALWAYS AS IDENTITY,
    parent_id   bigint,
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    slug        text NOT NULL CHECK (slug ~ '^[a-z0-9]+(-[a-z0-9]+)*$' AND length(slug) <= 120),
    position    int NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (store_id, id),
    UNIQUE (store_id, slug),
    CHECK (parent_id IS NULL OR parent_id <> id),
    FOREIGN KEY (store_id, parent_id) REFERENCES categories (store_id, id)
);
CREATE INDEX categories_parent_idx ON categories (store_id, parent_id, position, id);

CREATE TABLE products (
    store_id    bigint NOT NULL REFERENCES stores (id) ON DELETE CASCADE,
    id          bigint GENERATED ALWAYS AS IDENTITY,
    category_id bigint,
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 300),
    slug        text NOT NULL CHECK (slug ~ '^[a-z0-9]+(-[a-z0-9]+)*$' AND length(slug) <= 120),
    description text NOT NULL DEFAULT '' CHECK (length(description) <= 20000),
    base_price  bigint NOT NULL CHECK (base_price >= 0),
    status      text NOT NULL DEFAULT 'draft' CHECK (status IN ('draft', 'active', 'archived')),
    brand       text CHECK (brand IS NULL OR length(brand) BETWEEN 1 AND 100),
    attributes  jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(attributes) = 'object'),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (store_id, id),
    UNIQUE (store_id, slug),
    FOREIGN KEY (store_id, category_id) REFERENCES categories (store_id, id)
);
-- Public listing (active only): newest, price, name; the cursor columns follow the sort.
CREATE INDEX products_active_id_idx ON products (store_id, id) WHERE status = 'active';
CREATE INDEX products_active_price_idx ON products (store_id, base_price, id) WHERE status = 'active';
CREATE INDEX products_active_name_idx ON products (store_id, name, id) WHERE status = 'active';
-- Admin listing (every status, or one status).
CREATE INDEX products_status_idx ON products (store_id, status, id);
CREATE INDEX products_price_idx ON products (store_id, base_price, id);
CREATE INDEX products_name_idx ON products (store_id, name, id);
-- Filters.
CREATE INDEX products_category_idx ON products (store_id, category_id, id);
CREATE INDEX products_brand_idx ON products (store_id, brand, id);
-- q: ILIKE '%word%' on name and description.
CREATE INDEX products_name_trgm_idx ON products USING gin (name gin_trgm_ops);
CREATE INDEX products_description_trgm_idx ON products USING gin (description gin_trgm_ops);

CREATE TABLE product_variants (
    store_id    bigint NOT NULL REFERENCES stores (id) ON DELETE CASCADE,
    id          bigint GENERATED ALWAYS AS IDENTITY,
    product_id  bigint NOT NULL,
    sku         text NOT NULL CHECK (length(sku) BETWEEN 1 AND 64),
    options     jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(options) = 'object'),
    price       bigint CHECK (price IS NULL OR price >= 0),
    stock       int NOT NULL DEFAULT 0 CHECK (stock >= 0),
    weight_g    int CHECK (weight_g IS NULL OR weight_g >= 0),
    barcode     text CHECK (barcode IS NULL OR length(barcode) BETWEEN 1 AND 64),
    position    int NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (store_id, id),
    UNIQUE (store_id, sku),
    -- One variant per combination: what makes variant generation idempotent.
    UNIQUE (store_id, product_id, options),
    FOREIGN KEY (store_id, product_id) REFERENCES products (store_id, id) ON DELETE CASCADE
);
CREATE INDEX product_variants_product_idx ON product_variants (store_id, product_id, position, id);

CREATE TABLE attributes (
    store_id    bigint NOT NULL REFERENCES stores (id) ON DELETE CASCADE,
    id          bigint GENERATED ALWAYS AS IDENTITY,
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    position    int NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (store_id, id),
    UNIQUE (store_id, name)
);

CREATE TABLE attribute_values (
    store_id     bigint NOT NULL REFERENCES stores (id) ON DELETE CASCADE,
    id           bigint GENERATED ALWAYS AS IDENTITY,
    attribute_id bigint NOT NULL,
    value        text NOT NULL CHECK (length(value) BETWEEN 1 AND 100),
    position     int NOT NULL DEFAULT 0,
    PRIMARY KEY (store_id, id),
    UNIQUE (store_id, attribute_id, value),
    FOREIGN KEY (store_id, attribute_id) REFERENCES attributes (store_id, id) ON DELETE CASCADE
);

-- The values a product offers (Size: S, M; Color: Red): the input of
-- POST /products/:id/variants/generate.
CREATE TABLE product_option_values (
    store_id    bigint NOT NULL REFERENCES stores (id) ON DELETE CASCADE,
    product_id  bigint NOT NULL,
    value_id    bigint NOT NULL,
    PRIMARY KEY (store_id, product_id, value_id),
    FOREIGN KEY (store_id, product_id) REFERENCES products (store_id, id) ON DELETE CASCADE,
    FOREIGN KEY (store_id, value_id) REFERENCES attribute_values (store_id, id) ON DELETE CASCADE
);
CREATE INDEX product_option_values_value_idx ON product_option_values (store_id, value_id);

-- The stock ledger: for every variant, stock = sum(delta) of its rows.
CREATE TABLE inventory_movements (
    store_id      bigint NOT NULL REFERENCES stores (id) ON DELETE CASCADE,
    id            bigint GENERATED ALWAYS AS IDENTITY,
    variant_id    bigint NOT NULL,
    delta         int NOT NULL CHECK (delta <> 0),
    reason        text NOT NULL CHECK (length(reason) BETWEEN 1 AND 200),
    actor_user_id bigint,
    order_id      bigint,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (store_id, id),
    FOREIGN KEY (store_id, variant_id) REFERENCES product_variants (store_id, id) ON DELETE CASCADE
);
CREATE INDEX inventory_movements_variant_idx ON inventory_movements (store_id, variant_id, id);
CREATE INDEX inventory_movements_order_idx ON inventory_movements (store_id, order_id) WHERE order_id IS NOT NULL;
