-- Meeting insights (iam_cluster/insights/store.py).

-- name: insights_save
-- One row per meeting: a recomputation replaces the previous result.
INSERT INTO meeting_insights (meeting_id, status, insights, error, backend)
VALUES (%(meeting_id)s, %(status)s, %(insights)s, %(error)s, %(backend)s)
ON CONFLICT (meeting_id) DO UPDATE
SET status = EXCLUDED.status, insights = EXCLUDED.insights, error = EXCLUDED.error,
    backend = EXCLUDED.backend, computed_at = now()

-- name: insights_get
-- Owner-scoped: another user's meeting has no insights to show.
SELECT i.meeting_id, i.status, i.insights, i.error, i.backend, i.computed_at
FROM meeting_insights AS i JOIN meetings AS m ON m.id = i.meeting_id
WHERE i.meeting_id = %(id)s AND m.user_id = %(user_id)s
