-- 0008: carts of signed-in users, orders with their items, events, payments
-- and refunds, the per-store order number counter, and the outbox that the
-- jobs issue drains (the confirmation e-mail row is written by the checkout
-- transaction now).
--
-- Guest carts live in Redis (src/modules/cart); a signed-in user's cart is a
-- row here, so it follows the user across devices and survives Redis.
--
-- An order is born PENDING in the checkout's transaction together with its
-- stock decrements and ledger rows (inventory_movements.order_id names it),
-- its discount use (discount_uses, 0007), an outbox row and its payment row.
-- orders.cart_ref is unique per store: a cart (a guest cart's id, or a user
-- cart's row id) can become at most one order, with or without an
-- Idempotency-Key, so a double click never buys twice.
CREATE TABLE carts (
    store_id    bigint NOT NULL REFERENCES stores (id) ON DELETE CASCADE,
    id          bigint GENERATED ALWAYS AS IDENTITY,
    user_id     bigint NOT NULL,
    discount_code text CHECK (discount_code IS NULL OR length(discount_code) BETWEEN 1 AND 64),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (store_id, id),
    UNIQUE (store_id, user_id),
    FOREIGN KEY (store_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);

CREATE TABLE cart_items (
    store_id    bigint NOT NULL REFERENCES stores (id) ON DELETE CASCADE,
    cart_id     bigint NOT NULL,
    variant_id  bigint NOT NULL,
    quantity    int NOT NULL CHECK (quantity BETWEEN 1 AND 999),
    added_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (store_id, cart_id, variant_id),
    FOREIGN KEY (store_id, cart_id) REFERENCES carts (store_id, id) ON DELETE CASCADE
    -- no foreign key to the variant: a variant deleted after it was added shows
    -- as unavailable in the cart and blocks checkout with a clear error.
);

-- Order numbers per store (#1001, #1002...): one row per store, taken with
-- UPDATE ... RETURNING in the checkout transaction.
CREATE TABLE order_counters (
    store_id    bigint PRIMARY KEY REFERENCES stores (id) ON DELETE CASCADE,
    last_number bigint NOT NULL
);

CREATE TABLE orders (
    store_id          bigint NOT NULL REFERENCES stores (id) ON DELETE CASCADE,
    id                bigint GENERATED ALWAYS AS IDENTITY,
    number            bigint NOT NULL,
    user_id           bigint,
    email             text NOT NULL CHECK (length(email) BETWEEN 3 AND 254),
    status            text NOT NULL DEFAULT 'PENDING'
                      CHECK (status IN ('PENDING', 'PAID', 'PROCESSING', 'SHIPPED', 'DELIVERED', 'CANCELLED')),
    payment_status    text NOT NULL DEFAULT 'pending'
                      CHECK (payment_status IN ('pending', 'requires_action', 'paid', 'failed',
                                                'voided', 'refunded', 'partially_refunded')),
    payment_provider  text NOT NULL,
    currency          char(3) NOT NULL,
    prices_include_tax boolean NOT NULL DEFAULT false,
    subtotal          bigint NOT NULL CHECK (subtotal >= 0),
    discount_total    bigint NOT NULL DEFAULT 0 CHECK (discount_total >= 0),
    shipping_total    bigint NOT NULL DEFAULT 0 CHECK (shipping_total >= 0),
    tax_total         bigint NOT NULL DEFAULT 0 CHECK (tax_total >= 0),
    total             bigint NOT NULL CHECK (total >= 0),
    refunded_total    bigint NOT NULL DEFAULT 0 CHECK (refunded_total >= 0 AND refunded_total <= total),
    discount_code     text,
    discount_id       bigint,
    shipping_rate_id  bigint,
    shipping_name     text,
    shipping_address  jsonb NOT NULL,
    billing_address   jsonb NOT NULL,
    cart_ref          text NOT NULL,
    item_count        int NOT NULL CHECK (item_count > 0),
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    paid_at           timestamptz,
    cancelled_at      timestamptz,
    PRIMARY KEY (store_id, id),
    UNIQUE (store_id, number),
    UNIQUE (store_id, cart_ref)
);
CREATE INDEX orders_list_idx ON orders (store_id, id DESC);
CREATE INDEX orders_status_idx ON orders (store_id, status, id DESC);
CREATE INDEX orders_user_idx ON orders (store_id, user_id, id DESC) WHERE user_id IS NOT NULL;
CREATE INDEX orders_email_idx ON orders (store_id, lower(email), id DESC);
-- The sweeper: unpaid orders past the payment timeout.
CREATE INDEX orders_pending_idx ON orders (created_at, store_id) WHERE status = 'PENDING';

CREATE TABLE order_items (
    store_id    bigint NOT NULL REFERENCES stores (id) ON DELETE CASCADE,
    order_id    bigint NOT NULL,
    id          bigint GENERATED ALWAYS AS IDENTITY,
    variant_id  bigint NOT NULL,
    product_id  bigint NOT NULL,
    name        text NOT NULL,
    sku         text NOT NULL,
    options     jsonb NOT NULL DEFAULT '{}'::jsonb,
    unit_price  bigint NOT NULL CHECK (unit_price >= 0),
    quantity    int NOT NULL CHECK (quantity > 0),
    line_total  bigint NOT NULL CHECK (line_total >= 0),
    tax         bigint NOT NULL DEFAULT 0 CHECK (tax >= 0),
    refunded_quantity int NOT NULL DEFAULT 0 CHECK (refunded_quantity >= 0 AND refunded_quantity <= quantity),
    PRIMARY KEY (store_id, id),
    FOREIGN KEY (store_id, order_id) REFERENCES orders (store_id, id) ON DELETE CASCADE
);
CREATE INDEX order_items_order_idx ON order_items (store_id, order_id, id);

CREATE TABLE order_events (
    store_id        bigint NOT NULL REFERENCES stores (id) ON DELETE CASCADE,
    order_id        bigint NOT NULL,
    id              bigint GENERATED ALWAYS AS IDENTITY,
    from_status     text,
    to_status       text NOT NULL,
    actor_user_id   bigint,
    actor           text NOT NULL DEFAULT 'customer'
                    CHECK (actor IN ('customer', 'admin', 'system', 'provider')),
    note            text CHECK (note IS NULL OR length(note) <= 1000),
    tracking_number text CHECK (tracking_number IS NULL OR length(tracking_number) <= 100),
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (store_id, id),
    FOREIGN KEY (store_id, order_id) REFERENCES orders (store_id, id) ON DELETE CASCADE
);
CREATE INDEX order_events_order_idx ON order_events (store_id, order_id, id);

CREATE TABLE payments (
    store_id      bigint NOT NULL REFERENCES stores (id) ON DELETE CASCADE,
    id            bigint GENERATED ALWAYS AS IDENTITY,
    order_id      bigint NOT NULL,
    provider      text NOT NULL,
    status        text NOT NULL DEFAULT 'pending'
                  CHECK (status IN ('pending', 'requires_action', 'succeeded', 'failed', 'cancelled')),
    amount        bigint NOT NULL CHECK (amount >= 0),
    currency      char(3) NOT NULL,
    provider_ref  text,
    decline_code  text,
    attempt       int NOT NULL DEFAULT 1,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (store_id, id),
    UNIQUE (store_id, order_id, attempt),
    FOREIGN KEY (store_id, order_id) REFERENCES orders (store_id, id) ON DELETE CASCADE
);
CREATE UNIQUE INDEX payments_provider_ref_uq ON payments (store_id, provider, provider_ref)
    WHERE provider_ref IS NOT NULL;

CREATE TABLE refunds (
    store_id      bigint NOT NULL REFERENCES stores (id) ON DELETE CASCADE,
    id            bigint GENERATED ALWAYS AS IDENTITY,
    order_id      bigint NOT NULL,
    payment_id    bigint NOT NULL,
    amount        bigint NOT NULL CHECK (amount > 0),
    reason        text NOT NULL DEFAULT '' CHECK (length(reason) <= 500),
    status        text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'succeeded', 'failed')),
    restocked     boolean NOT NULL DEFAULT false,
    provider_ref  text,
    actor_user_id bigint,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (store_id, id),
    FOREIGN KEY (store_id, order_id) REFERENCES orders (store_id, id) ON DELETE CASCADE,
    FOREIGN KEY (store_id, payment_id) REFERENCES payments (store_id, id) ON DELETE CASCADE
);
CREATE INDEX refunds_order_idx ON refunds (store_id, order_id, id);

-- The transactional outbox: written in the same transaction as the change it
-- announces; the jobs relay (a later issue) moves rows into Redis Streams.
CREATE TABLE outbox (
    store_id      bigint NOT NULL REFERENCES stores (id) ON DELETE CASCADE,
    id            bigint GENERATED ALWAYS AS IDENTITY,
    kind          text NOT NULL CHECK (length(kind) BETWEEN 1 AND 100),
    payload       jsonb NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    relayed_at    timestamptz,
    PRIMARY KEY (store_id, id)
);
CREATE INDEX outbox_pending_idx ON outbox (id) WHERE relayed_at IS NULL;

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['carts', 'cart_items', 'order_counters', 'orders', 'order_items',
                             'order_events', 'payments', 'refunds', 'outbox'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY tenant_isolation ON %I USING (store_id = app_store_id()) '
                       'WITH CHECK (store_id = app_store_id())', t);
        IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'shopd_app') THEN
            EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO shopd_app', t);
        END IF;
    END LOOP;
END
$$;

-- Takes n units of a variant or fails the statement: SQLSTATE SH001 when the stock
-- is short. A checkout pipelines one call per line (ascending variant id) with the
-- order's insert, so a short line aborts what follows and the checkout's savepoint
-- rolls it all back: one round trip per checkout, never a partial order. The
-- decrement is conditional (stock >= n) whatever process runs it.
CREATE FUNCTION shopd_take_stock(p_store bigint, p_variant bigint, p_n int) RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
    left_over int;
BEGIN
    UPDATE product_variants SET stock = stock - p_n, updated_at = now()
     WHERE store_id = p_store AND id = p_variant AND stock >= p_n
    RETURNING stock INTO left_over;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'insufficient stock for variant %', p_variant USING ERRCODE = 'SH001';
    END IF;
    RETURN left_over;
END
$$;
