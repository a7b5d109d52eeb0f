-- Refresh tokens: opaque strings stored as SHA-256 hashes, rotated on use, revoked by family.

-- name: insert_refresh_token
INSERT INTO refresh_tokens (user_id, token_hash, family, expires_at)
VALUES (%(user_id)s, %(token_hash)s, %(family)s, now() + make_interval(days => %(expire_days)s))
RETURNING id

-- name: get_refresh_token_for_update
-- Locks the row so that two concurrent refreshes with one token cannot both rotate it.
SELECT id, user_id, family, revoked_at, expires_at <= now() AS expired
FROM refresh_tokens
WHERE token_hash = %(token_hash)s
FOR UPDATE

-- name: rotate_refresh_token
UPDATE refresh_tokens
SET revoked_at = now(), replaced_by = %(replaced_by)s
WHERE id = %(id)s

-- name: revoke_refresh_family
-- Every still-valid token of one login: logout, or a reused token (theft detection).
UPDATE refresh_tokens
SET revoked_at = now()
WHERE family = %(family)s AND revoked_at IS NULL
