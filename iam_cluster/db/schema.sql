-- The whole schema as one file, for reading: equal to what migrations/ produce (a test checks it).
-- Change the schema by adding a migration, then update this file to match.

-- Kept by iam_cluster.db.migrate: one row per applied migration.
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    text PRIMARY KEY,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- Every table with an updated_at column keeps it current through this trigger function.
CREATE FUNCTION set_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END;
$$;

CREATE TABLE users (
    id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    email              text NOT NULL CHECK (email <> ''),
    password_hash      text NOT NULL,
    full_name          text,
    is_active          boolean NOT NULL DEFAULT true,
    is_admin           boolean NOT NULL DEFAULT false,
    tier               text NOT NULL DEFAULT 'free',
    stripe_customer_id text UNIQUE,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);
-- Emails are unique whatever their case; lookups use lower(email) to hit this index.
CREATE UNIQUE INDEX users_email_lower_key ON users (lower(email));
CREATE TRIGGER users_set_updated_at BEFORE UPDATE ON users
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

CREATE TABLE refresh_tokens (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash  text NOT NULL UNIQUE,
    -- All tokens of one login share a family; a reused token revokes its whole family.
    family      uuid NOT NULL,
    expires_at  timestamptz NOT NULL,
    revoked_at  timestamptz,
    replaced_by uuid REFERENCES refresh_tokens (id) ON DELETE SET NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX refresh_tokens_user_id_idx ON refresh_tokens (user_id);
CREATE INDEX refresh_tokens_family_idx ON refresh_tokens (family);

CREATE TABLE meetings (
    id                       uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id                  uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    title                    text NOT NULL,
    description              text,
    meeting_date             timestamptz,
    duration_seconds         double precision CHECK (duration_seconds >= 0),
    audio_file_url           text,
    audio_file_size          bigint CHECK (audio_file_size >= 0),
    audio_format             text,
    original_filename        text,
    transcription_text       text,
    segments                 jsonb,
    processing_status        text NOT NULL DEFAULT 'none'
        CHECK (processing_status IN ('none', 'queued', 'processing', 'completed', 'failed')),
    processing_started_at    timestamptz,
    processing_completed_at  timestamptz,
    processing_error         text,
    model_used               text,
    provider_used            text,
    language_detected        text,
    transcription_confidence real,
    transcription_cost       numeric(12, 6) CHECK (transcription_cost >= 0),
    -- 'simple' keeps words as spoken (no stemming): transcripts come in many languages.
    search                   tsvector GENERATED ALWAYS AS (
        to_tsvector('simple', coalesce(title, '') || ' ' || coalesce(transcription_text, ''))
    ) STORED,
    created_at               timestamptz NOT NULL DEFAULT now(),
    updated_at               timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX meetings_user_id_created_at_idx ON meetings (user_id, created_at DESC);
CREATE INDEX meetings_search_idx ON meetings USING gin (search);
CREATE TRIGGER meetings_set_updated_at BEFORE UPDATE ON meetings
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

CREATE TABLE jobs (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id          uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    meeting_id       uuid NOT NULL REFERENCES meetings (id) ON DELETE CASCADE,
    status           text NOT NULL DEFAULT 'queued'
        CHECK (status IN ('queued', 'processing', 'completed', 'failed')),
    options          jsonb NOT NULL DEFAULT '{}'::jsonb,
    -- A replayed request with the same key returns the same job; request_hash detects a changed body.
    idempotency_key  text,
    request_hash     text,
    attempts         integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_attempts     integer NOT NULL DEFAULT 3 CHECK (max_attempts >= 1),
    run_after        timestamptz NOT NULL DEFAULT now(),
    lease_owner      text,
    lease_expires_at timestamptz,
    error_code       text,
    error_message    text,
    progress         real NOT NULL DEFAULT 0 CHECK (progress >= 0 AND progress <= 1),
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    finished_at      timestamptz,
    CONSTRAINT jobs_user_id_idempotency_key_key UNIQUE (user_id, idempotency_key),
    CONSTRAINT jobs_idempotency_request_hash_check CHECK (idempotency_key IS NULL OR request_hash IS NOT NULL)
);
-- The claim query: oldest runnable queued job, FOR UPDATE SKIP LOCKED.
CREATE INDEX jobs_queued_run_after_idx ON jobs (status, run_after) WHERE status = 'queued';
-- The reaper: processing jobs whose lease has expired.
CREATE INDEX jobs_processing_lease_idx ON jobs (lease_expires_at) WHERE status = 'processing';
CREATE INDEX jobs_meeting_id_created_at_idx ON jobs (meeting_id, created_at DESC);
CREATE INDEX jobs_user_id_created_at_idx ON jobs (user_id, created_at DESC);
CREATE TRIGGER jobs_set_updated_at BEFORE UPDATE ON jobs
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

CREATE TABLE messages (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    sender_id         uuid REFERENCES users (id) ON DELETE SET NULL,
    recipient_id      uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    subject           text NOT NULL DEFAULT '',
    body              text NOT NULL,
    -- Each side reads and deletes independently; the row goes when both sides have deleted it.
    read_at           timestamptz,
    sender_deleted    boolean NOT NULL DEFAULT false,
    recipient_deleted boolean NOT NULL DEFAULT false,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    -- Starred and archived, per side (0002; after updated_at, where ALTER TABLE put them).
    sender_starred     boolean NOT NULL DEFAULT false,
    sender_archived    boolean NOT NULL DEFAULT false,
    recipient_starred  boolean NOT NULL DEFAULT false,
    recipient_archived boolean NOT NULL DEFAULT false
);
CREATE INDEX messages_recipient_id_created_at_idx ON messages (recipient_id, created_at DESC)
    WHERE NOT recipient_deleted;
CREATE INDEX messages_sender_id_created_at_idx ON messages (sender_id, created_at DESC)
    WHERE NOT sender_deleted;
CREATE INDEX messages_recipient_starred_idx ON messages (recipient_id, created_at DESC)
    WHERE recipient_starred AND NOT recipient_deleted;
CREATE INDEX messages_recipient_archived_idx ON messages (recipient_id, created_at DESC)
    WHERE recipient_archived AND NOT recipient_deleted;
CREATE INDEX messages_sender_starred_idx ON messages (sender_id, created_at DESC)
    WHERE sender_starred AND NOT sender_deleted;
CREATE INDEX messages_sender_archived_idx ON messages (sender_id, created_at DESC)
    WHERE sender_archived AND NOT sender_deleted;
CREATE TRIGGER messages_set_updated_at BEFORE UPDATE ON messages
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

CREATE TABLE notifications (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind       text NOT NULL,
    payload    jsonb NOT NULL DEFAULT '{}'::jsonb,
    read_at    timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX notifications_user_id_created_at_idx ON notifications (user_id, created_at DESC);
CREATE INDEX notifications_unread_idx ON notifications (user_id) WHERE read_at IS NULL;

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

-- 0004_stripe (appended: ALTER TABLE keeps the column order the migrations give).
ALTER TABLE users
    ADD COLUMN stripe_subscription_id text,
    ADD COLUMN subscription_status    text;

CREATE TABLE stripe_events (
    id           text PRIMARY KEY,
    type         text NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    processed_at timestamptz
);

-- 0005_one_path (appended: ALTER TABLE keeps the column order the migrations give).
ALTER TABLE jobs DROP CONSTRAINT jobs_status_check;
ALTER TABLE jobs ADD CONSTRAINT jobs_status_check
    CHECK (status IN ('queued', 'processing', 'completed', 'failed', 'cancelled'));
ALTER TABLE jobs ADD COLUMN cancel_requested_at timestamptz;
ALTER TABLE meetings DROP CONSTRAINT meetings_processing_status_check;
ALTER TABLE meetings ADD CONSTRAINT meetings_processing_status_check
    CHECK (processing_status IN ('none', 'queued', 'processing', 'completed', 'failed', 'cancelled'));
ALTER TABLE meetings ADD COLUMN transcript jsonb;
ALTER TABLE meetings DROP COLUMN segments;

-- 0006_clients (appended: ALTER TABLE keeps the column order the migrations give).

ALTER TABLE users ADD COLUMN webhook_secret text;

CREATE TABLE api_keys (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id      uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name         text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    -- The visible start of the key ("iam_" and 8 characters), unique, to find it without a scan.
    prefix       text NOT NULL UNIQUE,
    -- SHA-256 of the whole key; the key itself is shown once and never stored.
    key_hash     bytea NOT NULL,
    scopes       text[] NOT NULL
        CHECK (cardinality(scopes) > 0 AND scopes <@ ARRAY['transcribe', 'read', 'billing']::text[]),
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at   timestamptz
);
CREATE INDEX api_keys_user_id_idx ON api_keys (user_id, created_at DESC);

-- Synchronous jobs run in the API process (or on the Serve cluster) for one request: no meeting.
ALTER TABLE jobs ALTER COLUMN meeting_id DROP NOT NULL;
ALTER TABLE jobs ADD COLUMN kind text NOT NULL DEFAULT 'meeting' CHECK (kind IN ('meeting', 'sync'));
ALTER TABLE jobs ADD CONSTRAINT jobs_kind_meeting_check CHECK ((kind = 'meeting') = (meeting_id IS NOT NULL));
ALTER TABLE jobs ADD COLUMN callback_url text;

CREATE TABLE webhook_endpoints (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    url        text NOT NULL CHECK (length(url) <= 2000),
    events     text[] NOT NULL
        CHECK (cardinality(events) > 0
               AND events <@ ARRAY['job.completed', 'job.failed', 'batch.completed']::text[]),
    active     boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_endpoints_user_id_idx ON webhook_endpoints (user_id);
CREATE TRIGGER webhook_endpoints_set_updated_at BEFORE UPDATE ON webhook_endpoints
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- One row per (event, target): written in the transaction that ends the job, delivered by workers.
CREATE TABLE webhook_deliveries (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id          uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    endpoint_id      uuid REFERENCES webhook_endpoints (id) ON DELETE SET NULL,
    url              text NOT NULL,
    event            text NOT NULL,
    -- The same for every target of one event: receivers deduplicate on it.
    event_id         uuid NOT NULL,
    payload          jsonb NOT NULL,
    status           text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts         integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    last_status_code integer,
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    delivered_at     timestamptz,
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_user_id_idx ON webhook_deliveries (user_id, created_at DESC);
CREATE TRIGGER webhook_deliveries_set_updated_at BEFORE UPDATE ON webhook_deliveries
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- 0007_insights
-- Written by the worker in the job's final transaction, or again on demand; a failed computation
-- keeps its error here while the transcript itself completes.
CREATE TABLE meeting_insights (
    meeting_id  uuid PRIMARY KEY REFERENCES meetings (id) ON DELETE CASCADE,
    status      text NOT NULL CHECK (status IN ('completed', 'failed')),
    insights    jsonb,
    error       text,
    -- 'offline' or 'llm:MODEL': where the summary and action items came from.
    backend     text,
    computed_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT meeting_insights_result_check CHECK ((status = 'completed') = (insights IS NOT NULL))
);

-- 0008_web (appended: ALTER TABLE keeps the column order the migrations give).
CREATE TABLE web_sessions (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash text NOT NULL UNIQUE,
    user_agent text,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
CREATE INDEX web_sessions_user_id_idx ON web_sessions (user_id);
ALTER TABLE meetings ADD COLUMN speaker_names jsonb NOT NULL DEFAULT '{}'::jsonb;

-- 0009_meeting_cards
CREATE VIEW meeting_cards AS
SELECT id, user_id, title, description, meeting_date, duration_seconds, audio_file_url, audio_file_size,
       audio_format, original_filename, processing_status, processing_started_at, processing_completed_at,
       processing_error, model_used, provider_used, language_detected, transcription_confidence,
       transcription_cost, speaker_names, created_at, updated_at
FROM meetings;

-- 0010_observability (appended: ALTER TABLE keeps the column order the migrations give).
ALTER TABLE jobs ADD COLUMN request_id text;
-- Metrics scrapes: the age of the oldest queued job without reading the queue.
CREATE INDEX jobs_queued_created_at_idx ON jobs (created_at) WHERE status = 'queued';

-- 0011_mailbox
CREATE VIEW mailbox AS
SELECT m.id, m.sender_id, m.recipient_id, m.subject, m.body, m.created_at,
       m.recipient_id AS owner_id, true AS incoming, m.read_at IS NOT NULL AS is_read,
       m.recipient_starred AS is_starred, m.recipient_archived AS is_archived
FROM messages AS m
WHERE NOT m.recipient_deleted
UNION ALL
SELECT m.id, m.sender_id, m.recipient_id, m.subject, m.body, m.created_at,
       m.sender_id AS owner_id, false AS incoming, true AS is_read,
       m.sender_starred AS is_starred, m.sender_archived AS is_archived
FROM messages AS m
WHERE NOT m.sender_deleted AND m.sender_id IS DISTINCT FROM m.recipient_id;

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
