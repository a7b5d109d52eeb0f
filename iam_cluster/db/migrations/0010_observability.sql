-- 0010_observability: the request that queued each job (one id greps a job's log lines end to end),
-- and an index that keeps the scrape-time "age of the oldest queued job" cheap on a long queue.

ALTER TABLE jobs ADD COLUMN request_id text;

CREATE INDEX jobs_queued_created_at_idx ON jobs (created_at) WHERE status = 'queued';
