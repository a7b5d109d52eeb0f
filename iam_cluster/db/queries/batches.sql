-- name: batch_create
INSERT INTO batches (user_id, name, options, total_items)
VALUES (%(user_id)s, %(name)s, %(options)s, %(total_items)s)
RETURNING *;

-- name: batch_item_add
INSERT INTO batch_items (batch_id, key, meeting_id, job_id, error_code, error_message, duration_seconds)
VALUES (%(batch_id)s, %(key)s, %(meeting_id)s, %(job_id)s, %(error_code)s, %(error_message)s, %(duration)s);

-- name: batch_get
-- The caller's batch with its items' counts by state (refused at intake counts as failed).
SELECT b.*,
       count(*) FILTER (WHERE j.status = 'queued') AS queued,
       count(*) FILTER (WHERE j.status = 'processing') AS processing,
       count(*) FILTER (WHERE j.status = 'completed') AS completed,
       count(*) FILTER (WHERE j.status = 'failed' OR i.error_code IS NOT NULL) AS failed,
       count(*) FILTER (WHERE j.status = 'cancelled') AS cancelled,
       coalesce(sum(i.duration_seconds) FILTER (WHERE j.status = 'completed'), 0) AS completed_seconds
FROM batches AS b
LEFT JOIN batch_items AS i ON i.batch_id = b.id
LEFT JOIN jobs AS j ON j.id = i.job_id
WHERE b.id = %(id)s AND b.user_id = %(user_id)s
GROUP BY b.id;

-- name: batch_items
SELECT i.key, i.meeting_id, i.job_id, i.duration_seconds,
       coalesce(j.status, 'failed') AS status,
       coalesce(i.error_code, j.error_code) AS error_code,
       coalesce(i.error_message, j.error_message) AS error_message
FROM batch_items AS i
JOIN batches AS b ON b.id = i.batch_id
LEFT JOIN jobs AS j ON j.id = i.job_id
WHERE i.batch_id = %(id)s AND b.user_id = %(user_id)s
ORDER BY i.key
LIMIT %(limit)s OFFSET %(offset)s;

-- name: batch_results
-- Completed items of the caller's batch with their transcripts (for the results bundle).
SELECT i.key, m.transcript, m.speaker_names
FROM batch_items AS i
JOIN batches AS b ON b.id = i.batch_id
JOIN jobs AS j ON j.id = i.job_id AND j.status = 'completed'
JOIN meetings AS m ON m.id = i.meeting_id
WHERE i.batch_id = %(id)s AND b.user_id = %(user_id)s
ORDER BY i.key;

-- name: batch_active_jobs
SELECT j.id FROM batch_items AS i JOIN jobs AS j ON j.id = i.job_id
WHERE i.batch_id = %(id)s AND j.status IN ('queued', 'processing');

-- name: batch_mark_cancelled
UPDATE batches SET cancelled_at = coalesce(cancelled_at, now())
WHERE id = %(id)s AND user_id = %(user_id)s
RETURNING id;

-- name: batch_finish_if_done
-- Marks the batch of this job finished once none of its jobs is active; returns it only to the one
-- caller that set it (so the batch event goes out exactly once).
UPDATE batches AS b SET finished_at = now()
WHERE b.id = (SELECT batch_id FROM batch_items WHERE job_id = %(job_id)s LIMIT 1)
  AND b.finished_at IS NULL
  AND NOT EXISTS (SELECT 1 FROM batch_items AS i JOIN jobs AS j ON j.id = i.job_id
                  WHERE i.batch_id = b.id AND j.status IN ('queued', 'processing'))
RETURNING b.id, b.user_id, b.total_items;

-- name: batch_lock_of_job
-- Locks the batch of this job (if any) so that two workers ending its last two jobs at once check,
-- one after the other, whether anything is left (and one of them sees that nothing is).
SELECT b.id FROM batches AS b JOIN batch_items AS i ON i.batch_id = b.id
WHERE i.job_id = %(job_id)s
FOR UPDATE OF b;

-- name: batch_finish_if_empty
-- Marks a batch with no job to run (every member refused at intake) finished at once.
UPDATE batches AS b SET finished_at = now()
WHERE b.id = %(id)s AND b.finished_at IS NULL
  AND NOT EXISTS (SELECT 1 FROM batch_items AS i WHERE i.batch_id = b.id AND i.job_id IS NOT NULL)
RETURNING b.id, b.user_id, b.total_items;
