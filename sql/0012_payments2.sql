-- 0012: manual capture (issue 13, second part).
--
-- Numbered 0012 but written after 0013-0015: on a fresh database it runs
-- before 0013 creates stripe_accounts, so it touches only tables of 0001-0008
-- and its own (it must hold in either order: a database that already has 0015
-- applies it last).
--
-- payment_settings: how a store's payments are taken, one row per store that
-- changed the default. capture_method 'manual': Stripe authorizes at checkout
-- (the PaymentIntent is created with capture_method=manual) and a store admin
-- captures later (POST /api/v1/orders/:id/capture), all or part of it, or the
-- hold is released when the order is cancelled.
CREATE TABLE payment_settings (
    store_id       bigint NOT NULL REFERENCES stores (id) ON DELETE CASCADE,
    capture_method text NOT NULL DEFAULT 'automatic'
                   CHECK (capture_method IN ('automatic', 'manual')),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (store_id)
);

-- An authorized payment: payments.status 'requires_capture' (Stripe's name),
-- orders.payment_status 'authorized'; the order stays PENDING until the
-- capture succeeds (then PAID, as an automatic payment's success does).
ALTER TABLE payments DROP CONSTRAINT payments_status_check;
ALTER TABLE payments ADD CONSTRAINT payments_status_check
    CHECK (status IN ('pending', 'requires_action', 'requires_capture', 'succeeded', 'failed',
                      'cancelled'));
ALTER TABLE orders DROP CONSTRAINT orders_payment_status_check;
ALTER TABLE orders ADD CONSTRAINT orders_payment_status_check
    CHECK (payment_status IN ('pending', 'requires_action', 'authorized', 'paid', 'failed',
                              'voided', 'refunded', 'partially_refunded'));

-- The capture's own Idempotency-Key, written before the call to Stripe (a
-- retry after a crash sends the same key: never two captures), and what was
-- captured (a partial capture releases the rest of the hold).
ALTER TABLE payments ADD COLUMN capture_key text;
ALTER TABLE payments ADD COLUMN captured_amount bigint CHECK (captured_amount >= 0);

ALTER TABLE payment_settings ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON payment_settings USING (store_id = app_store_id())
    WITH CHECK (store_id = app_store_id());
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'shopd_app') THEN
        GRANT SELECT, INSERT, UPDATE, DELETE ON payment_settings TO shopd_app;
    END IF;
END
$$;

-- An answer kept for an Idempotency-Key while its request still waits on an
-- outbound call (a checkout's PaymentIntent at Stripe): held_until says till
-- when a retry is told 409 idempotency_in_flight (Stripe's semantics) instead
-- of the provisional answer; the final answer clears it. A process that died
-- during the call leaves the hold to expire, and the provisional answer (the
-- order, its payment pending) is replayed from then on.
ALTER TABLE idempotency_keys ADD COLUMN held_until timestamptz;

-- What an order's customer was charged: the captured amount of its succeeded
-- payment when a partial capture took less than the total, else the total.
-- Refunds (the API's, a cancel's, Stripe's charge.refunded) are bounded by it,
-- and an order is "refunded" once it is all given back.
CREATE FUNCTION order_charged(p_store bigint, p_order bigint) RETURNS bigint
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT coalesce((SELECT p.captured_amount FROM payments p WHERE p.store_id = p_store AND
                     p.order_id = p_order AND p.status = 'succeeded' AND
                     p.captured_amount IS NOT NULL ORDER BY p.id DESC LIMIT 1),
                    (SELECT o.total FROM orders o WHERE o.store_id = p_store AND o.id = p_order))
$$;
