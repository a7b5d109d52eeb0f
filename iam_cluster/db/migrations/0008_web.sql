-- 0008_web: the web app's cookie sessions, and speakers' display names per meeting.

-- A browser session: the cookie holds a random token, only its SHA-256 is stored.
CREATE TABLE web_sessions (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash text NOT NULL UNIQUE,
    user_agent text,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
CREATE INDEX web_sessions_user_id_idx ON web_sessions (user_id);

-- {"SPEAKER_00": "Ada"}: names shown and exported instead of the engine's labels.
ALTER TABLE meetings ADD COLUMN speaker_names jsonb NOT NULL DEFAULT '{}'::jsonb;
