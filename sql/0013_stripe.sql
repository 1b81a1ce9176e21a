-- 0013: Stripe payments (issue 13).
--
-- stripe_accounts: one row per store that uses Stripe. The secret key and the
-- webhook signing secrets are kept here and never leave the process except in
-- calls to Stripe: the admin API shows their last 4 characters only. api_base
-- is Stripe's unless the operator allowed another (the tests' fake Stripe).
-- is_default: checkouts that name no provider use Stripe.
CREATE TABLE stripe_accounts (
    store_id        bigint NOT NULL REFERENCES stores (id) ON DELETE CASCADE,
    secret_key      text NOT NULL CHECK (length(secret_key) BETWEEN 8 AND 255),
    webhook_secrets text[] NOT NULL DEFAULT '{}' CHECK (cardinality(webhook_secrets) <= 4),
    api_base        text NOT NULL DEFAULT 'https://api.stripe.com'
                    CHECK (length(api_base) BETWEEN 8 AND 255),
    is_default      boolean NOT NULL DEFAULT false,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (store_id)
);

-- Webhook events seen, by the provider's event id: inserted in the same
-- transaction as the event's effect, so a redelivery (Stripe delivers at least
-- once) finds the row and does nothing. An event about an order this process
-- cannot see yet (applied = false) is kept with what it says, and applied when
-- the payment's outcome is recorded.
CREATE TABLE webhook_events (
    store_id     bigint NOT NULL REFERENCES stores (id) ON DELETE CASCADE,
    provider     text NOT NULL,
    event_id     text NOT NULL CHECK (length(event_id) BETWEEN 1 AND 255),
    type         text NOT NULL,
    ref          text NOT NULL DEFAULT '',
    order_id     bigint,
    status       text NOT NULL DEFAULT '',
    decline_code text NOT NULL DEFAULT '',
    amount       bigint NOT NULL DEFAULT 0,
    applied      boolean NOT NULL DEFAULT false,
    received_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (store_id, provider, event_id)
);
CREATE INDEX webhook_events_unapplied_idx ON webhook_events (store_id, order_id)
    WHERE NOT applied;

-- The Idempotency-Key sent with the payment's creation, written before the
-- call (so a retry after a crash sends the same key and Stripe answers with
-- the same PaymentIntent), and the dispute flag charge.dispute.created sets.
ALTER TABLE payments ADD COLUMN idempotency_key text;
ALTER TABLE orders ADD COLUMN disputed boolean NOT NULL DEFAULT false;

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['stripe_accounts', 'webhook_events'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY tenant_isolation ON %I USING (store_id = app_store_id()) '
                       'WITH CHECK (store_id = app_store_id())', t);
        IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'shopd_app') THEN
            EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO shopd_app', t);
        END IF;
    END LOOP;
END
$$;
