-- 0003_billing: the usage ledger (one row per completed job) and quota reservations of queued jobs.

-- Rows outlive their job and meeting (no foreign keys there): what was billed stays billed.
CREATE TABLE usage_records (
    id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id            uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    job_id             uuid NOT NULL UNIQUE,
    meeting_id         uuid,
    audio_seconds      double precision NOT NULL CHECK (audio_seconds >= 0),
    billable_minutes   numeric(12, 1) NOT NULL CHECK (billable_minutes >= 0),
    model              text,
    cost               numeric(12, 4) NOT NULL CHECK (cost >= 0),
    created_at         timestamptz NOT NULL DEFAULT now(),
    -- Stripe usage sync: each row is reported once (billing/stripe_*).
    stripe_reported_at timestamptz,
    stripe_attempts    integer NOT NULL DEFAULT 0,
    stripe_last_error  text
);
CREATE INDEX usage_records_user_id_created_at_idx ON usage_records (user_id, created_at);
CREATE INDEX usage_records_unreported_idx ON usage_records (created_at) WHERE stripe_reported_at IS NULL;

-- Minutes held by a queued or running job: settled when it completes, released when it fails.
CREATE TABLE quota_reservations (
    job_id      uuid PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    minutes     numeric(12, 1) NOT NULL CHECK (minutes >= 0),
    created_at  timestamptz NOT NULL DEFAULT now(),
    settled_at  timestamptz,
    released_at timestamptz,
    CONSTRAINT quota_reservations_one_end_check CHECK (settled_at IS NULL OR released_at IS NULL)
);
CREATE INDEX quota_reservations_open_idx ON quota_reservations (user_id)
    WHERE settled_at IS NULL AND released_at IS NULL;
