-- 0016: a job kind that does nothing ('noop'), fed by outbox rows of kind
-- 'jobs.noop': the relay, the streams, the consumers and the bookkeeping
-- alone, so bench/jobs.sh can measure the machinery end to end.
ALTER TABLE jobs DROP CONSTRAINT jobs_kind_check;
ALTER TABLE jobs ADD CONSTRAINT jobs_kind_check CHECK (kind IN ('email', 'webhook', 'media', 'noop'));
