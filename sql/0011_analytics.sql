-- 0011: analytics for store admins (src/modules/analytics): daily rollups per
-- store and per product variant, kept from the outbox, and the store's time
-- zone that draws the days.
--
-- What counts. An order counts from its placement (checkout) on the day it was
-- placed, unless it is cancelled: its cancellation takes it back out of that
-- same day (orders, revenue, items and its products' units and revenue). A
-- refund counts on the day it succeeded (refunds.succeeded_at), whatever its
-- order became: refunds/refunded are money given back, reported beside revenue.
-- Revenue is the order's total (after discounts, with shipping and tax); a
-- product's revenue is the sum of its line totals. Money in minor units, per
-- currency (a store has one, but an order keeps the one it was placed in).
--
-- How the rollups are kept. Not on the checkout path: the checkout's one
-- statement already writes seven tables. Every change that moves a figure
-- already writes an outbox row in its own transaction (order.placed from the
-- checkout, order.cancelled from the order_events trigger of 0014) or does so
-- now (refund.succeeded, the trigger below). The jobs relay marks a batch of
-- outbox rows relayed and, in the same transaction, calls analytics_apply for
-- that batch (one GROUP BY upsert per rollup table): a row is relayed once
-- (FOR UPDATE SKIP LOCKED under the relay's advisory lock), so its delta is
-- applied exactly once, or not at all if the transaction rolls back. Lag: one
-- relay interval (SHOPD_JOBS_POLL_MS). Deltas add, so the order in which
-- batches arrive never matters.
--
-- A rebuild (analytics_rebuild, shopctl analytics rebuild) recomputes a
-- store's rollups from its orders and refunds in one transaction, under the
-- relay's advisory lock so no batch commits meanwhile, less the deltas of the
-- outbox rows not relayed yet (the relay adds them next): so the rollups equal
-- the orders right after the next relay step, whatever was in flight. A store
-- whose settings.timezone changes is rebuilt in that update's transaction,
-- since its days move.

-- The rollup tables. Nothing references products: a product deleted later
-- keeps its history (the name it was sold under).
CREATE TABLE analytics_sales_daily (
    store_id  bigint NOT NULL REFERENCES stores (id) ON DELETE CASCADE,
    currency  char(3) NOT NULL,
    day       date NOT NULL,
    orders    bigint NOT NULL DEFAULT 0,
    revenue   bigint NOT NULL DEFAULT 0,
    items     bigint NOT NULL DEFAULT 0,
    refunds   bigint NOT NULL DEFAULT 0,
    refunded  bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (store_id, currency, day)
);

CREATE TABLE analytics_product_daily (
    store_id   bigint NOT NULL REFERENCES stores (id) ON DELETE CASCADE,
    currency   char(3) NOT NULL,
    day        date NOT NULL,
    product_id bigint NOT NULL,
    variant_id bigint NOT NULL,
    name       text NOT NULL,
    units      bigint NOT NULL DEFAULT 0,
    revenue    bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (store_id, currency, day, product_id, variant_id)
);

-- When a refund succeeded: the day it counts on. Set once, when its status
-- becomes succeeded (inserted so, or settled later), with the outbox row
-- that feeds the rollups in the same transaction.
ALTER TABLE refunds ADD COLUMN succeeded_at timestamptz;
UPDATE refunds SET succeeded_at = updated_at WHERE status = 'succeeded';

CREATE FUNCTION analytics_refund_succeeded() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status = 'succeeded' AND (TG_OP = 'INSERT' OR OLD.status IS DISTINCT FROM 'succeeded') THEN
        NEW.succeeded_at := coalesce(NEW.succeeded_at, now());
        -- No template and not order.*: the relay makes no e-mail or webhook of it.
        INSERT INTO outbox (store_id, kind, payload)
        VALUES (NEW.store_id, 'refund.succeeded',
                jsonb_build_object('refund_id', NEW.id, 'order_id', NEW.order_id, 'amount', NEW.amount));
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER refunds_analytics BEFORE INSERT OR UPDATE OF status ON refunds
    FOR EACH ROW EXECUTE FUNCTION analytics_refund_succeeded();

-- settings.timezone: an IANA name PostgreSQL knows (pg_timezone_names), UTC
-- when unset. A CHECK cannot read a catalog view, hence a trigger; the error
-- names stores_timezone_check, which src/modules/dberr.c answers as 422 on
-- settings.timezone.
CREATE FUNCTION analytics_timezone_valid(tz text) RETURNS boolean LANGUAGE sql STABLE AS
$$ SELECT tz IS NULL OR EXISTS (SELECT 1 FROM pg_timezone_names WHERE name = tz) $$;

CREATE FUNCTION analytics_stores_timezone_check() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.settings ? 'timezone' AND (jsonb_typeof(NEW.settings->'timezone') NOT IN ('string', 'null')
            OR NOT analytics_timezone_valid(NEW.settings->>'timezone')) THEN
        RAISE EXCEPTION 'unknown time zone %', NEW.settings->'timezone'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'stores_timezone_check',
                  TABLE = 'stores';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER stores_timezone_check BEFORE INSERT OR UPDATE OF settings ON stores
    FOR EACH ROW EXECUTE FUNCTION analytics_stores_timezone_check();

-- The store's time zone, UTC when unset.
CREATE FUNCTION analytics_timezone(p_store bigint) RETURNS text LANGUAGE sql STABLE AS
$$ SELECT coalesce((SELECT settings->>'timezone' FROM stores WHERE id = p_store), 'UTC') $$;

-- The deltas of a set of outbox rows (the relay's batch, or those a rebuild
-- finds unrelayed), one row per event and figure, not summed yet. Rows of
-- other kinds give nothing. The order's placement day is read from the order
-- (created_at never changes), so a cancellation lands on the placement's day.
CREATE FUNCTION analytics_sales_deltas(p_stores bigint[], p_ids bigint[])
RETURNS TABLE (store_id bigint, currency char(3), day date, orders bigint, revenue bigint,
               items bigint, refunds bigint, refunded bigint)
LANGUAGE sql STABLE AS $$
    WITH ob AS (SELECT x.store_id, x.kind, x.payload FROM unnest(p_stores, p_ids) AS u (s, i)
                JOIN outbox x ON x.store_id = u.s AND x.id = u.i
                WHERE x.kind IN ('order.placed', 'order.cancelled', 'refund.succeeded'))
    SELECT o.store_id, o.currency, (o.created_at AT TIME ZONE analytics_timezone(o.store_id))::date,
           sg.s, sg.s * o.total, sg.s * o.item_count, 0::bigint, 0::bigint
      FROM ob JOIN orders o ON o.store_id = ob.store_id AND o.id = (ob.payload->>'order_id')::bigint
      CROSS JOIN LATERAL (SELECT CASE ob.kind WHEN 'order.placed' THEN 1 ELSE -1 END::bigint AS s) sg
     WHERE ob.kind IN ('order.placed', 'order.cancelled')
    UNION ALL
    SELECT r.store_id, o.currency, (r.succeeded_at AT TIME ZONE analytics_timezone(r.store_id))::date,
           0, 0, 0, 1, r.amount
      FROM ob JOIN refunds r ON r.store_id = ob.store_id AND r.id = (ob.payload->>'refund_id')::bigint
      JOIN orders o ON o.store_id = r.store_id AND o.id = r.order_id
     WHERE ob.kind = 'refund.succeeded' AND r.succeeded_at IS NOT NULL
$$;

CREATE FUNCTION analytics_product_deltas(p_stores bigint[], p_ids bigint[])
RETURNS TABLE (store_id bigint, currency char(3), day date, product_id bigint, variant_id bigint,
               name text, units bigint, revenue bigint)
LANGUAGE sql STABLE AS $$
    SELECT o.store_id, o.currency, (o.created_at AT TIME ZONE analytics_timezone(o.store_id))::date,
           i.product_id, i.variant_id, i.name, sg.s * i.quantity, sg.s * i.line_total
      FROM unnest(p_stores, p_ids) AS u (s, id)
      JOIN outbox x ON x.store_id = u.s AND x.id = u.id
      CROSS JOIN LATERAL (SELECT CASE x.kind WHEN 'order.placed' THEN 1 ELSE -1 END::bigint AS s) sg
      JOIN orders o ON o.store_id = x.store_id AND o.id = (x.payload->>'order_id')::bigint
      JOIN order_items i ON i.store_id = o.store_id AND i.order_id = o.id
     WHERE x.kind IN ('order.placed', 'order.cancelled')
$$;

-- Adds the deltas of a batch of outbox rows to the rollups: one upsert per
-- table, summed first so each key appears once. The relay's transaction.
CREATE FUNCTION analytics_apply(p_stores bigint[], p_ids bigint[]) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO analytics_sales_daily AS a (store_id, currency, day, orders, revenue, items, refunds, refunded)
    SELECT d.store_id, d.currency, d.day, sum(d.orders), sum(d.revenue), sum(d.items),
           sum(d.refunds), sum(d.refunded)
      FROM analytics_sales_deltas(p_stores, p_ids) d GROUP BY 1, 2, 3
    ON CONFLICT (store_id, currency, day) DO UPDATE SET
        orders = a.orders + excluded.orders, revenue = a.revenue + excluded.revenue,
        items = a.items + excluded.items, refunds = a.refunds + excluded.refunds,
        refunded = a.refunded + excluded.refunded;
    INSERT INTO analytics_product_daily AS a (store_id, currency, day, product_id, variant_id, name, units, revenue)
    SELECT d.store_id, d.currency, d.day, d.product_id, d.variant_id, max(d.name), sum(d.units),
           sum(d.revenue)
      FROM analytics_product_deltas(p_stores, p_ids) d GROUP BY 1, 2, 3, 4, 5
    ON CONFLICT (store_id, currency, day, product_id, variant_id) DO UPDATE SET
        name = excluded.name, units = a.units + excluded.units, revenue = a.revenue + excluded.revenue;
END
$$;

-- What the rollups of p_store must hold once every outbox row is relayed:
-- its orders not cancelled and its succeeded refunds, aggregated straight
-- from the tables (also what the tests compare the rollups with).
CREATE FUNCTION analytics_sales_truth(p_store bigint)
RETURNS TABLE (currency char(3), day date, orders bigint, revenue bigint, items bigint,
               refunds bigint, refunded bigint)
LANGUAGE sql STABLE AS $$
    SELECT t.currency, t.day, sum(t.orders)::bigint, sum(t.revenue)::bigint, sum(t.items)::bigint,
           sum(t.refunds)::bigint, sum(t.refunded)::bigint
      FROM (SELECT o.currency, (o.created_at AT TIME ZONE analytics_timezone(p_store))::date AS day,
                   1 AS orders, o.total AS revenue, o.item_count AS items, 0 AS refunds, 0 AS refunded
              FROM orders o WHERE o.store_id = p_store AND o.status <> 'CANCELLED'
            UNION ALL
            SELECT o.currency, (r.succeeded_at AT TIME ZONE analytics_timezone(p_store))::date,
                   0, 0, 0, 1, r.amount
              FROM refunds r JOIN orders o ON o.store_id = r.store_id AND o.id = r.order_id
             WHERE r.store_id = p_store AND r.status = 'succeeded' AND r.succeeded_at IS NOT NULL) t
     GROUP BY 1, 2
$$;

-- Recomputes p_store's rollups (see the top of this file). Takes the relay's
-- advisory lock (7417140001, src/modules/jobs/relay.c) for the rest of the
-- transaction. The INSERTs each read one snapshot: the truth and the pending
-- deltas of the same moment.
CREATE FUNCTION analytics_rebuild(p_store bigint) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(7417140001);
    DELETE FROM analytics_sales_daily WHERE store_id = p_store;
    DELETE FROM analytics_product_daily WHERE store_id = p_store;
    -- Each INSERT reads the truth and the unrelayed rows in one snapshot. With
    -- the relay kept out no row becomes relayed meanwhile, and an order and its
    -- outbox row commit together, so an order committed between the two
    -- statements is in both the truth and the pending deltas of the second:
    -- it nets to nothing there and the relay adds it.
    INSERT INTO analytics_sales_daily (store_id, currency, day, orders, revenue, items, refunds, refunded)
    SELECT p_store, d.currency, d.day, sum(d.orders), sum(d.revenue), sum(d.items), sum(d.refunds),
           sum(d.refunded)
      FROM (SELECT * FROM analytics_sales_truth(p_store)
            UNION ALL
            SELECT x.currency, x.day, -x.orders, -x.revenue, -x.items, -x.refunds, -x.refunded
              FROM (SELECT array_agg(o.store_id) s, array_agg(o.id) i FROM outbox o
                     WHERE o.store_id = p_store AND o.relayed_at IS NULL
                       AND o.kind IN ('order.placed', 'order.cancelled', 'refund.succeeded')) q
              CROSS JOIN LATERAL analytics_sales_deltas(coalesce(q.s, '{}'), coalesce(q.i, '{}')) x) d
     GROUP BY 1, 2, 3;
    INSERT INTO analytics_product_daily (store_id, currency, day, product_id, variant_id, name, units, revenue)
    SELECT p_store, d.currency, d.day, d.product_id, d.variant_id, max(d.name), sum(d.units), sum(d.revenue)
      FROM (SELECT o.currency, (o.created_at AT TIME ZONE analytics_timezone(p_store))::date AS day,
                   i.product_id, i.variant_id, i.name, i.quantity::bigint AS units, i.line_total AS revenue
              FROM orders o JOIN order_items i ON i.store_id = o.store_id AND i.order_id = o.id
             WHERE o.store_id = p_store AND o.status <> 'CANCELLED'
            UNION ALL
            SELECT x.currency, x.day, x.product_id, x.variant_id, x.name, -x.units, -x.revenue
              FROM (SELECT array_agg(o.store_id) s, array_agg(o.id) i FROM outbox o
                     WHERE o.store_id = p_store AND o.relayed_at IS NULL
                       AND o.kind IN ('order.placed', 'order.cancelled')) q
              CROSS JOIN LATERAL analytics_product_deltas(coalesce(q.s, '{}'), coalesce(q.i, '{}')) x) d
     GROUP BY 1, 2, 3, 4, 5;
END
$$;

-- A store's days move with its time zone: rebuilt in the same transaction.
CREATE FUNCTION analytics_stores_timezone_moved() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF coalesce(NEW.settings->>'timezone', 'UTC') IS DISTINCT FROM coalesce(OLD.settings->>'timezone', 'UTC') THEN
        PERFORM analytics_rebuild(NEW.id);
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER stores_analytics_timezone AFTER UPDATE OF settings ON stores
    FOR EACH ROW EXECUTE FUNCTION analytics_stores_timezone_moved();

-- Fill what exists (orders placed before this migration; their outbox rows
-- may be relayed already, the rebuild accounts for those that are not).
SELECT analytics_rebuild(id) FROM stores;

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['analytics_sales_daily', 'analytics_product_daily'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY tenant_isolation ON %I USING (store_id = app_store_id()) '
                       'WITH CHECK (store_id = app_store_id())', t);
        IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'shopd_app') THEN
            EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO shopd_app', t);
        END IF;
    END LOOP;
END
$$;
