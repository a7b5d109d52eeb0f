-- 0005_one_path: cancellable jobs, and the whole transcript stored with its meeting.

-- A queued job is cancelled at once; a running one when its worker next reports progress.
ALTER TABLE jobs DROP CONSTRAINT jobs_status_check;
ALTER TABLE jobs ADD CONSTRAINT jobs_status_check
    CHECK (status IN ('queued', 'processing', 'completed', 'failed', 'cancelled'));
ALTER TABLE jobs ADD COLUMN cancel_requested_at timestamptz;

ALTER TABLE meetings DROP CONSTRAINT meetings_processing_status_check;
ALTER TABLE meetings ADD CONSTRAINT meetings_processing_status_check
    CHECK (processing_status IN ('none', 'queued', 'processing', 'completed', 'failed', 'cancelled'));

-- The transcript as the engine made it (language and its probability, speakers, confidences,
-- speech duration, model, options), served as stored. Older rows kept only their segments.
ALTER TABLE meetings ADD COLUMN transcript jsonb;
UPDATE meetings
SET transcript = CASE WHEN jsonb_typeof(segments) = 'object' THEN segments ELSE jsonb_build_object(
        'source', id::text, 'duration', coalesce(duration_seconds, 0),
        'language', coalesce(language_detected, ''), 'language_probability', 0,
        'model', coalesce(model_used, ''), 'segments', segments) END
WHERE segments IS NOT NULL;
ALTER TABLE meetings DROP COLUMN segments;
