-- 0012_batches: batch archives in the job API. A batch is an uploaded archive; each recording in it
-- became a meeting with an ordinary job (so the worker meters and bills it exactly once), or was
-- refused at intake with its error code.

CREATE TABLE batches (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id      uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name         text,
    options      jsonb NOT NULL DEFAULT '{}'::jsonb,
    total_items  integer NOT NULL CHECK (total_items >= 0),
    cancelled_at timestamptz,
    -- Set once, by whoever saw the last item end: the batch event is published exactly once.
    finished_at  timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX batches_user_id_created_at_idx ON batches (user_id, created_at DESC);

CREATE TABLE batch_items (
    batch_id      uuid NOT NULL REFERENCES batches (id) ON DELETE CASCADE,
    key           text NOT NULL,
    meeting_id    uuid REFERENCES meetings (id) ON DELETE SET NULL,
    job_id        uuid REFERENCES jobs (id) ON DELETE SET NULL,
    error_code    text,
    error_message text,
    duration_seconds double precision,
    PRIMARY KEY (batch_id, key)
);
CREATE INDEX batch_items_job_id_idx ON batch_items (job_id);
