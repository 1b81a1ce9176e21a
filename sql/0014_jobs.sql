-- 0014: background jobs fed by the transactional outbox (0008), outgoing
-- webhooks to integrators, and the order events that feed both.
--
-- PostgreSQL is the record, Redis Streams the transport. The relay turns each
-- outbox row into jobs (one per effect: an e-mail, one delivery per webhook
-- endpoint that subscribed to the event) in the transaction that marks the row
-- relayed, then pushes due jobs to their stream (XADD) and marks them queued in
-- the same step's transaction. A job's state says where it is:
--   ready     due at next_at (new, or waiting for its next retry)
--   queued    in its stream since queued_at, not taken yet
--   running   taken by a consumer at started_at (a crashed one's job is taken
--             over once started_at is older than the visibility timeout)
--   done      its effect happened (consumers skip a job that is done: the
--             dedupe of an at-least-once stream)
--   dead      retries used up or a permanent failure: a dead letter, kept
--             until an operator retries or discards it
--   discarded an operator gave up on it (kept, never deleted silently)
CREATE TABLE jobs (
    store_id     bigint NOT NULL REFERENCES stores (id) ON DELETE CASCADE,
    id           bigint GENERATED ALWAYS AS IDENTITY,
    outbox_id    bigint NOT NULL,
    kind         text NOT NULL CHECK (kind IN ('email', 'webhook', 'media')), -- media: 0010
    endpoint_id  bigint,
    state        text NOT NULL DEFAULT 'ready'
                 CHECK (state IN ('ready', 'queued', 'running', 'done', 'dead', 'discarded')),
    attempts     int NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_at      timestamptz NOT NULL DEFAULT now(),
    queued_at    timestamptz,
    started_at   timestamptz,
    finished_at  timestamptz,
    last_error   text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (store_id, id),
    FOREIGN KEY (store_id, outbox_id) REFERENCES outbox (store_id, id) ON DELETE CASCADE,
    -- one job per effect of an outbox row: a relay that runs twice adds nothing
    UNIQUE NULLS NOT DISTINCT (store_id, outbox_id, kind, endpoint_id)
);
-- The relay's and the reconciler's scans: only unfinished jobs.
CREATE INDEX jobs_due_idx ON jobs (next_at) WHERE state = 'ready';
CREATE INDEX jobs_open_idx ON jobs (state, queued_at) WHERE state IN ('queued', 'running');
CREATE INDEX jobs_dead_idx ON jobs (store_id, id) WHERE state = 'dead';

-- Endpoints of integrators. The secret signs deliveries (HMAC-SHA256) and is
-- shown once, in the answer that creates the endpoint.
CREATE TABLE webhook_endpoints (
    store_id    bigint NOT NULL REFERENCES stores (id) ON DELETE CASCADE,
    id          bigint GENERATED ALWAYS AS IDENTITY,
    url         text NOT NULL CHECK (length(url) BETWEEN 8 AND 2000),
    events      text[] NOT NULL CHECK (cardinality(events) BETWEEN 1 AND 32),
    secret      text NOT NULL,
    enabled     boolean NOT NULL DEFAULT true,
    description text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (store_id, id)
);

ALTER TABLE jobs ADD CONSTRAINT jobs_endpoint_fk FOREIGN KEY (store_id, endpoint_id)
    REFERENCES webhook_endpoints (store_id, id) ON DELETE CASCADE;

-- Every delivery attempt of a webhook, kept for the store admins (30 days).
CREATE TABLE webhook_deliveries (
    store_id     bigint NOT NULL REFERENCES stores (id) ON DELETE CASCADE,
    id           bigint GENERATED ALWAYS AS IDENTITY,
    endpoint_id  bigint NOT NULL,
    job_id       bigint NOT NULL,
    event_id     text NOT NULL,
    event_type   text NOT NULL,
    attempt      int NOT NULL,
    status_code  int,
    latency_ms   int NOT NULL DEFAULT 0,
    error        text,
    response     text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (store_id, id),
    FOREIGN KEY (store_id, endpoint_id) REFERENCES webhook_endpoints (store_id, id) ON DELETE CASCADE,
    FOREIGN KEY (store_id, job_id) REFERENCES jobs (store_id, id) ON DELETE CASCADE
);
CREATE INDEX webhook_deliveries_endpoint_idx ON webhook_deliveries (store_id, endpoint_id, id DESC);

-- Order state changes become outbox rows in the transaction that records them:
-- every path that writes order_events (transitions, cancels, the payment
-- provider's answer) is covered without each remembering to. The placement
-- itself (from_status NULL) has its own row from the checkout.
CREATE FUNCTION shopd_order_event_outbox() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.from_status IS NOT NULL AND NEW.from_status IS DISTINCT FROM NEW.to_status THEN
        INSERT INTO outbox (store_id, kind, payload)
        SELECT NEW.store_id, 'order.' || lower(NEW.to_status),
               jsonb_strip_nulls(jsonb_build_object(
                   'order_id', o.id, 'number', o.number, 'email', o.email,
                   'from', NEW.from_status, 'to', NEW.to_status,
                   'tracking_number', NEW.tracking_number,
                   'template', CASE NEW.to_status WHEN 'SHIPPED' THEN 'order_shipped'
                                                  WHEN 'CANCELLED' THEN 'order_cancelled' END))
        FROM orders o WHERE o.store_id = NEW.store_id AND o.id = NEW.order_id;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER order_events_outbox AFTER INSERT ON order_events
    FOR EACH ROW EXECUTE FUNCTION shopd_order_event_outbox();

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['jobs', 'webhook_endpoints', 'webhook_deliveries'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY tenant_isolation ON %I USING (store_id = app_store_id()) '
                       'WITH CHECK (store_id = app_store_id())', t);
        IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'shopd_app') THEN
            EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO shopd_app', t);
        END IF;
    END LOOP;
END
$$;
