-- 0022: the analytics rollups of the relay plan as index probes, whatever the
-- statistics say.
--
-- analytics_apply runs for every relay batch (a few hundred outbox rows) and
-- reads, for each row, one outbox row, one order, its store and its items by
-- key. PL/pgSQL keeps the plans of its statements for the life of the
-- connection. In a new database the first plans are made while the tables are
-- nearly empty and before autovacuum has analyzed them: seen with a fresh
-- cluster, the product rollup kept a plan that read all of a store's order
-- items by store_id alone for every outbox row (quadratic: 12 s of the
-- database's time in a 15 s checkout run, and half the checkout rate). For a
-- batch named by its keys the only good plan is nested loops of index probes,
-- so the function plans without sequential scans, hash or merge joins. The
-- settings hold only while it runs (its SET clause); the rebuild path, which
-- reads whole stores, keeps the defaults.
ALTER FUNCTION analytics_apply(bigint[], bigint[])
    SET enable_seqscan = off
    SET enable_hashjoin = off
    SET enable_mergejoin = off;

-- And each step names the key it probes (LATERAL, OFFSET 0: not flattened into
-- a join the planner may reorder): the batch's outbox rows, then each row's
-- order by its primary key, then that order's items by (store_id, order_id).
-- Left to itself the planner joined the items to the batch by store_id alone
-- and filtered them by order afterwards. Same rows out as 0011's versions.
CREATE OR REPLACE FUNCTION analytics_sales_deltas(p_stores bigint[], p_ids bigint[])
RETURNS TABLE (store_id bigint, currency char(3), day date, orders bigint, revenue bigint,
               items bigint, refunds bigint, refunded bigint)
LANGUAGE sql STABLE AS $$
    WITH ob AS MATERIALIZED (
        SELECT x.store_id, x.kind, x.payload FROM unnest(p_stores, p_ids) AS u (s, i)
        CROSS JOIN LATERAL (SELECT x.store_id, x.kind, x.payload FROM outbox x
                             WHERE x.store_id = u.s AND x.id = u.i
                               AND x.kind IN ('order.placed', 'order.cancelled', 'refund.succeeded')
                            OFFSET 0) x)
    SELECT o.store_id, o.currency, (o.created_at AT TIME ZONE analytics_zone(st.settings))::date,
           sg.s, sg.s * o.total, sg.s * o.item_count, 0::bigint, 0::bigint
      FROM ob
      CROSS JOIN LATERAL (SELECT o.store_id, o.currency, o.created_at, o.total, o.item_count
                            FROM orders o
                           WHERE o.store_id = ob.store_id AND o.id = (ob.payload->>'order_id')::bigint
                          OFFSET 0) o
      CROSS JOIN LATERAL (SELECT st.settings FROM stores st WHERE st.id = o.store_id OFFSET 0) st
      CROSS JOIN LATERAL (SELECT CASE ob.kind WHEN 'order.placed' THEN 1 ELSE -1 END::bigint AS s) sg
     WHERE ob.kind IN ('order.placed', 'order.cancelled')
    UNION ALL
    SELECT r.store_id, o.currency, (r.succeeded_at AT TIME ZONE analytics_zone(st.settings))::date,
           0, 0, 0, 1, r.amount
      FROM ob
      CROSS JOIN LATERAL (SELECT r.store_id, r.order_id, r.amount, r.succeeded_at FROM refunds r
                           WHERE r.store_id = ob.store_id AND r.id = (ob.payload->>'refund_id')::bigint
                          OFFSET 0) r
      CROSS JOIN LATERAL (SELECT o.currency FROM orders o
                           WHERE o.store_id = r.store_id AND o.id = r.order_id OFFSET 0) o
      CROSS JOIN LATERAL (SELECT st.settings FROM stores st WHERE st.id = r.store_id OFFSET 0) st
     WHERE ob.kind = 'refund.succeeded' AND r.succeeded_at IS NOT NULL
$$;

CREATE OR REPLACE FUNCTION analytics_product_deltas(p_stores bigint[], p_ids bigint[])
RETURNS TABLE (store_id bigint, currency char(3), day date, product_id bigint, variant_id bigint,
               name text, units bigint, revenue bigint)
LANGUAGE sql STABLE AS $$
    SELECT o.store_id, o.currency, (o.created_at AT TIME ZONE analytics_zone(st.settings))::date,
           i.product_id, i.variant_id, i.name, sg.s * i.quantity, sg.s * i.line_total
      FROM unnest(p_stores, p_ids) AS u (s, id)
      CROSS JOIN LATERAL (SELECT x.store_id, x.kind, x.payload FROM outbox x
                           WHERE x.store_id = u.s AND x.id = u.id
                             AND x.kind IN ('order.placed', 'order.cancelled')
                          OFFSET 0) x
      CROSS JOIN LATERAL (SELECT CASE x.kind WHEN 'order.placed' THEN 1 ELSE -1 END::bigint AS s) sg
      CROSS JOIN LATERAL (SELECT o.store_id, o.id, o.currency, o.created_at FROM orders o
                           WHERE o.store_id = x.store_id AND o.id = (x.payload->>'order_id')::bigint
                          OFFSET 0) o
      CROSS JOIN LATERAL (SELECT st.settings FROM stores st WHERE st.id = o.store_id OFFSET 0) st
      CROSS JOIN LATERAL (SELECT i.product_id, i.variant_id, i.name, i.quantity, i.line_total
                            FROM order_items i
                           WHERE i.store_id = o.store_id AND i.order_id = o.id OFFSET 0) i
$$;
