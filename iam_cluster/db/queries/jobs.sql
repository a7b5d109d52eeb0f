-- Job queue (queue/jobs.py owns every transition): enqueue, SKIP LOCKED claim, lease heartbeat,
-- guarded terminal transitions, cancel. The wake-up channel is a parameter (queue.jobs.CHANNEL).

-- name: enqueue_job
-- A queued job, its meeting marked queued, and a wake-up for workers (delivered at commit).
-- A replay with the same (user_id, idempotency_key) inserts nothing and returns no row.
WITH job AS (
    INSERT INTO jobs (user_id, meeting_id, options, idempotency_key, request_hash, max_attempts, callback_url)
    VALUES (%(user_id)s, %(meeting_id)s, %(options)s, %(idempotency_key)s, %(request_hash)s, %(max_attempts)s,
            %(callback_url)s)
    ON CONFLICT ON CONSTRAINT jobs_user_id_idempotency_key_key DO NOTHING
    RETURNING *
), meeting AS (
    UPDATE meetings SET processing_status = 'queued', processing_error = NULL,
                        processing_started_at = NULL, processing_completed_at = NULL
    WHERE id = %(meeting_id)s AND user_id = %(user_id)s AND EXISTS (SELECT 1 FROM job)
    RETURNING id
)
SELECT job.*, pg_notify(%(channel)s, job.id::text) AS notified FROM job

-- name: start_sync_job
-- A job for one synchronous request: processing at once under the serving API process's lease.
INSERT INTO jobs (user_id, kind, status, options, attempts, max_attempts, lease_owner, lease_expires_at, started_at)
VALUES (%(user_id)s, 'sync', 'processing', %(options)s, 1, 1, %(worker)s,
        now() + %(lease_seconds)s * interval '1 second', now())
RETURNING *

-- name: reap_sync_jobs
-- Synchronous jobs whose API process went away: failed, so their quota reservations can be released.
UPDATE jobs
SET status = 'failed', finished_at = now(), lease_owner = NULL, lease_expires_at = NULL,
    error_code = 'internal', error_message = 'the API process serving this request went away'
WHERE kind = 'sync' AND status = 'processing' AND lease_expires_at < now()
RETURNING *

-- name: list_user_jobs
-- The caller's jobs, newest first, optionally by status or meeting, keyset-paginated.
SELECT * FROM jobs
WHERE user_id = %(user_id)s
  AND (%(status)s::text IS NULL OR status = %(status)s)
  AND (%(meeting_id)s::uuid IS NULL OR meeting_id = %(meeting_id)s)
  AND (%(before_at)s::timestamptz IS NULL OR (created_at, id) < (%(before_at)s, %(before_id)s::uuid))
ORDER BY created_at DESC, id DESC
LIMIT %(limit)s

-- name: get_job
SELECT * FROM jobs WHERE id = %(id)s

-- name: get_user_job
SELECT * FROM jobs WHERE id = %(id)s AND user_id = %(user_id)s

-- name: get_job_by_idempotency_key
SELECT * FROM jobs WHERE user_id = %(user_id)s AND idempotency_key = %(idempotency_key)s

-- name: claim_job
-- The oldest runnable queued job, or a processing job whose worker let its lease expire.
WITH next AS (
    SELECT id FROM jobs
    WHERE kind = 'meeting'
      AND ((status = 'queued' AND run_after <= now())
           OR (status = 'processing' AND lease_expires_at < now()))
    ORDER BY run_after
    FOR UPDATE SKIP LOCKED
    LIMIT 1
)
UPDATE jobs AS j
SET status = 'processing',
    lease_owner = %(worker)s,
    lease_expires_at = now() + %(lease_seconds)s * interval '1 second',
    attempts = j.attempts + 1,
    started_at = now()
FROM next
WHERE j.id = next.id
RETURNING j.*

-- name: heartbeat_job
-- Extends the lease only while this worker still owns the job; progress never goes backwards.
-- The row comes back (with cancel_requested_at) while the lease is held.
UPDATE jobs
SET lease_expires_at = now() + %(lease_seconds)s * interval '1 second',
    progress = greatest(progress, coalesce(%(progress)s::real, progress))
WHERE id = %(id)s AND status = 'processing' AND lease_owner = %(worker)s
RETURNING *

-- name: complete_job
UPDATE jobs
SET status = 'completed', progress = 1, finished_at = now(), lease_owner = NULL,
    lease_expires_at = NULL, error_code = NULL, error_message = NULL
WHERE id = %(id)s AND status = 'processing' AND lease_owner = %(worker)s
RETURNING *

-- name: fail_job
-- Failed for good (``cancelled`` when the failure is a cancellation).
UPDATE jobs
SET status = CASE WHEN %(code)s::text = 'cancelled' THEN 'cancelled' ELSE 'failed' END,
    finished_at = now(), lease_owner = NULL, lease_expires_at = NULL,
    error_code = %(code)s, error_message = %(message)s
WHERE id = %(id)s AND status = 'processing' AND lease_owner = %(worker)s
RETURNING *

-- name: retry_job
-- Back to the queue after retry_base * 2^(attempts-1) seconds, or failed once attempts are spent;
-- the reason is kept either way.
UPDATE jobs
SET status = CASE WHEN attempts >= max_attempts THEN 'failed' ELSE 'queued' END,
    run_after = CASE WHEN attempts >= max_attempts THEN run_after
                     ELSE now() + %(retry_base)s * power(2, attempts - 1) * interval '1 second' END,
    finished_at = CASE WHEN attempts >= max_attempts THEN now() END,
    lease_owner = NULL, lease_expires_at = NULL,
    error_code = %(code)s, error_message = %(message)s
WHERE id = %(id)s AND status = 'processing' AND lease_owner = %(worker)s
RETURNING *

-- name: cancel_job
-- A queued job ends now; a running one is flagged and its worker stops at the next window.
UPDATE jobs
SET status = CASE WHEN status = 'queued' THEN 'cancelled' ELSE status END,
    finished_at = CASE WHEN status = 'queued' THEN now() ELSE finished_at END,
    error_code = CASE WHEN status = 'queued' THEN 'cancelled' ELSE error_code END,
    error_message = CASE WHEN status = 'queued' THEN 'cancelled by its owner' ELSE error_message END,
    cancel_requested_at = coalesce(cancel_requested_at, now())
WHERE id = %(id)s AND user_id = %(user_id)s AND status IN ('queued', 'processing')
RETURNING *

-- name: meeting_for_job
SELECT * FROM meetings WHERE id = %(meeting_id)s

-- name: mark_meeting_processing
-- Only while the job is still held by this worker, so a stale worker cannot reopen a meeting.
UPDATE meetings
SET processing_status = 'processing', processing_started_at = now(), processing_error = NULL
WHERE id = %(meeting_id)s
  AND EXISTS (SELECT 1 FROM jobs WHERE id = %(job_id)s AND status = 'processing' AND lease_owner = %(worker)s)

-- name: write_meeting_results
UPDATE meetings
SET transcription_text = %(text)s,
    transcript = %(transcript)s,
    language_detected = %(language)s,
    transcription_confidence = %(confidence)s,
    model_used = %(model)s,
    provider_used = %(provider)s,
    duration_seconds = %(duration)s,
    processing_status = 'completed',
    processing_completed_at = now(),
    processing_error = NULL
WHERE id = %(meeting_id)s

-- name: write_meeting_status
-- After a failure, a cancellation or a retry (status queued); the reason is shown to the user.
UPDATE meetings
SET processing_status = %(status)s,
    processing_error = %(error)s,
    processing_completed_at = CASE WHEN %(status)s::text IN ('failed', 'cancelled') THEN now()
                                   ELSE processing_completed_at END
WHERE id = %(meeting_id)s
