-- 0006_clients: what machine clients need: API keys, webhooks (endpoints, signing secret, a delivery
-- outbox that is also the delivery log), per-job callbacks, and synchronous jobs without a meeting
-- (the OpenAI-compatible endpoint), metered and quota-checked like any job.

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
