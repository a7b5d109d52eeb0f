-- Meetings API (api/meetings.py): every query is scoped to the calling user.

-- name: meetings_api_create
INSERT INTO meetings (user_id, title, description, meeting_date)
VALUES (%(user_id)s, %(title)s, %(description)s, %(meeting_date)s)
RETURNING *

-- name: meetings_api_list
-- Newest first; ``total`` counts every match, not only this page.
SELECT m.*, count(*) OVER () AS total
FROM meetings AS m
WHERE m.user_id = %(user_id)s
ORDER BY m.created_at DESC, m.id DESC
LIMIT %(limit)s OFFSET %(offset)s

-- name: meetings_api_search
-- Full-text search on the generated ``search`` column (GIN), best matches first.
SELECT m.*, ts_rank(m.search, q) AS rank, count(*) OVER () AS total
FROM meetings AS m, plainto_tsquery('simple', %(q)s) AS q
WHERE m.user_id = %(user_id)s AND m.search @@ q
ORDER BY rank DESC, m.created_at DESC, m.id DESC
LIMIT %(limit)s OFFSET %(offset)s

-- name: meetings_api_get
-- The polling query: the meeting and its latest job in one round trip.
SELECT m.*,
       j.id AS job_id, j.status AS job_status, j.progress AS job_progress,
       j.error_code AS job_error_code, j.error_message AS job_error_message,
       j.attempts AS job_attempts, j.created_at AS job_created_at,
       j.started_at AS job_started_at, j.finished_at AS job_finished_at
FROM meetings AS m
LEFT JOIN LATERAL (
    SELECT * FROM jobs
    WHERE jobs.meeting_id = m.id
    ORDER BY jobs.created_at DESC, jobs.id DESC
    LIMIT 1
) AS j ON true
WHERE m.id = %(id)s AND m.user_id = %(user_id)s

-- name: meetings_api_lock
-- The meeting, locked until the request's transaction ends (upload and transcribe serialise on it),
-- with whether a queued or processing job holds it.
SELECT m.*,
       EXISTS (
           SELECT 1 FROM jobs
           WHERE jobs.meeting_id = m.id AND jobs.status IN ('queued', 'processing')
       ) AS job_active
FROM meetings AS m
WHERE m.id = %(id)s AND m.user_id = %(user_id)s
FOR UPDATE OF m

-- name: meetings_api_update
-- Only the fields flagged ``set_*`` change.
UPDATE meetings SET
    title = CASE WHEN %(set_title)s THEN %(title)s ELSE title END,
    description = CASE WHEN %(set_description)s THEN %(description)s ELSE description END,
    meeting_date = CASE WHEN %(set_meeting_date)s THEN %(meeting_date)s::timestamptz ELSE meeting_date END
WHERE id = %(id)s AND user_id = %(user_id)s
RETURNING *

-- name: meetings_api_delete
DELETE FROM meetings WHERE id = %(id)s AND user_id = %(user_id)s
RETURNING id, audio_file_url

-- name: meetings_api_set_audio
-- New audio: the transcript of the old one no longer applies.
UPDATE meetings SET
    audio_file_url = %(key)s,
    audio_file_size = %(size)s,
    audio_format = %(format)s,
    original_filename = %(filename)s,
    duration_seconds = %(duration)s,
    transcription_text = NULL,
    transcript = NULL,
    processing_status = 'none',
    processing_started_at = NULL,
    processing_completed_at = NULL,
    processing_error = NULL,
    language_detected = NULL,
    transcription_confidence = NULL
WHERE id = %(id)s AND user_id = %(user_id)s
RETURNING *
