-- name: insert_user
INSERT INTO users (email, password_hash, full_name, is_admin, tier)
VALUES (%(email)s, %(password_hash)s, %(full_name)s, %(is_admin)s, %(tier)s)
RETURNING *

-- name: get_user_by_id
SELECT * FROM users WHERE id = %(id)s

-- name: get_user_by_email
-- Case-insensitive, through the unique index on lower(email).
SELECT * FROM users WHERE lower(email) = lower(%(email)s)

-- name: update_user_profile
-- Fields left NULL keep their value.
UPDATE users
SET full_name = coalesce(%(full_name)s, full_name),
    email = coalesce(%(email)s, email)
WHERE id = %(id)s
RETURNING *
