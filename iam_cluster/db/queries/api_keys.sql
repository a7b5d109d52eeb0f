-- API keys (api/api_keys.py, api/security.py): stored as SHA-256 hashes, found by their visible prefix.

-- name: api_key_for_auth
-- The key and its user in one round trip; ``stale`` says last_used_at is worth writing again.
SELECT k.id AS key_id, k.key_hash, k.scopes, k.revoked_at,
       k.last_used_at IS NULL OR k.last_used_at < now() - interval '60 seconds' AS stale, u.*
FROM api_keys AS k JOIN users AS u ON u.id = k.user_id
WHERE k.prefix = %(prefix)s

-- name: api_key_touch
UPDATE api_keys SET last_used_at = now() WHERE id = %(id)s

-- name: api_key_create
INSERT INTO api_keys (user_id, name, prefix, key_hash, scopes)
VALUES (%(user_id)s, %(name)s, %(prefix)s, %(key_hash)s, %(scopes)s)
RETURNING id, name, prefix, scopes, created_at, last_used_at, revoked_at

-- name: api_key_list
SELECT id, name, prefix, scopes, created_at, last_used_at, revoked_at
FROM api_keys WHERE user_id = %(user_id)s
ORDER BY created_at DESC, id DESC

-- name: api_key_revoke
UPDATE api_keys SET revoked_at = coalesce(revoked_at, now())
WHERE id = %(id)s AND user_id = %(user_id)s
RETURNING id, name, prefix, scopes, created_at, last_used_at, revoked_at
