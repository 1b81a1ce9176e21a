-- 0023: the retention sweeps find what they delete through an index.
--
-- The ticker runs the two 30-day sweeps of the jobs module every
-- SHOPD_SWEEP_INTERVAL_MS. Without an index on the dates they filter on, each
-- run read the whole table to find that nothing was old enough: at about
-- 100,000 finished jobs (a few minutes of checkout load, one confirmation
-- e-mail an order) that was 29 ms of PostgreSQL a tick, growing with the
-- table. The done index is partial: open jobs have their own indexes and the
-- sweep never deletes them.
CREATE INDEX jobs_done_finished_idx ON jobs (finished_at) WHERE state = 'done';
CREATE INDEX webhook_deliveries_created_idx ON webhook_deliveries (created_at);
