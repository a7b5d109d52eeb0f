-- name: insert_meeting
INSERT INTO meetings (user_id, title, description, meeting_date)
VALUES (%(user_id)s, %(title)s, %(description)s, %(meeting_date)s)
RETURNING *

-- name: get_meeting
-- Owner-scoped: another user's meeting is simply not found.
SELECT * FROM meetings WHERE id = %(id)s AND user_id = %(user_id)s

-- name: search_meetings
-- Full-text search over title and transcript, best matches first.
SELECT m.*, ts_rank(m.search, q) AS rank
FROM meetings AS m, plainto_tsquery('simple', %(q)s) AS q
WHERE m.user_id = %(user_id)s AND m.search @@ q
ORDER BY rank DESC, m.created_at DESC
LIMIT %(limit)s
