-- 0024: order state changes become outbox rows once per statement, not once
-- per row.
--
-- A batch of checkouts writes all its orders' events in one INSERT (PENDING,
-- then PAID for an inline provider). The row trigger of 0014 then ran its own
-- INSERT ... SELECT once for every PAID event: measured in a checkout run,
-- 11,869 nested statements at 0.06 ms, 14% of the batch statement's time. The
-- statement trigger reads the new events as a transition table and writes
-- their outbox rows in one INSERT, in event order (the order the row trigger
-- wrote them in). The order of each event is read by its key (LATERAL, OFFSET
-- 0): PL/pgSQL keeps the plan, and a batch is always a few probes of orders,
-- never a reason to read the table.
CREATE OR REPLACE FUNCTION shopd_order_events_outbox() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO outbox (store_id, kind, payload)
    SELECT e.store_id, 'order.' || lower(e.to_status),
           jsonb_strip_nulls(jsonb_build_object(
               'order_id', o.id, 'number', o.number, 'email', o.email,
               'from', e.from_status, 'to', e.to_status,
               'tracking_number', e.tracking_number,
               'template', CASE e.to_status WHEN 'SHIPPED' THEN 'order_shipped'
                                            WHEN 'CANCELLED' THEN 'order_cancelled' END))
    FROM new_events e,
         LATERAL (SELECT o.id, o.number, o.email FROM orders o
                  WHERE o.store_id = e.store_id AND o.id = e.order_id OFFSET 0) o
    WHERE e.from_status IS NOT NULL AND e.from_status IS DISTINCT FROM e.to_status
    ORDER BY e.id;
    RETURN NULL;
END
$$;

DROP TRIGGER order_events_outbox ON order_events;
DROP FUNCTION shopd_order_event_outbox();
CREATE TRIGGER order_events_outbox AFTER INSERT ON order_events
    REFERENCING NEW TABLE AS new_events
    FOR EACH STATEMENT EXECUTE FUNCTION shopd_order_events_outbox();
