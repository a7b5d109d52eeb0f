-- The web app (web/): cookie sessions and speakers' names. Every query is scoped to its user.

-- name: web_session_create
INSERT INTO web_sessions (user_id, token_hash, user_agent, expires_at)
VALUES (%(user_id)s, %(token_hash)s, %(user_agent)s, now() + make_interval(days => %(days)s))
RETURNING id

-- name: web_session_user
-- The active user holding an unexpired session.
SELECT u.*
FROM web_sessions AS s
JOIN users AS u ON u.id = s.user_id
WHERE s.token_hash = %(token_hash)s AND s.expires_at > now() AND u.is_active

-- name: web_session_delete
DELETE FROM web_sessions WHERE token_hash = %(token_hash)s

-- name: web_session_purge_expired
-- Run at each sign-in: a user's expired sessions go.
DELETE FROM web_sessions WHERE user_id = %(user_id)s AND expires_at <= now()

-- name: meeting_audio
SELECT audio_file_url, audio_file_size, audio_format, original_filename
FROM meetings WHERE id = %(id)s AND user_id = %(user_id)s

-- name: meeting_speaker_names_set
UPDATE meetings SET speaker_names = %(names)s
WHERE id = %(id)s AND user_id = %(user_id)s
RETURNING speaker_names

-- name: web_correspondents
-- Emails and names of the users on the other side of the caller's listed messages.
SELECT id, email, full_name FROM users WHERE id = ANY(%(ids)s)
