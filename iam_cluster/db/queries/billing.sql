-- Billing (billing/ledger.py, billing/quotas.py, api/billing.py): usage ledger and quota reservations.

-- name: billing_lock_user
-- Serialises quota checks and ledger writes of one user (reserve and settle take it first).
SELECT id, tier FROM users WHERE id = %(user_id)s FOR UPDATE

-- name: billing_usage_summary
-- This month's (UTC) ledger figures, all-time minutes and the minutes held by open reservations.
SELECT
    coalesce(sum(u.billable_minutes) FILTER (WHERE u.created_at >= %(month_start)s), 0) AS month_minutes,
    coalesce(sum(u.cost) FILTER (WHERE u.created_at >= %(month_start)s), 0) AS month_cost,
    count(*) FILTER (WHERE u.created_at >= %(month_start)s) AS month_jobs,
    coalesce(sum(u.billable_minutes), 0) AS total_minutes,
    (SELECT coalesce(sum(r.minutes), 0) FROM quota_reservations AS r
     WHERE r.user_id = %(user_id)s AND r.settled_at IS NULL AND r.released_at IS NULL) AS reserved_minutes
FROM usage_records AS u
WHERE u.user_id = %(user_id)s

-- name: billing_reserve
INSERT INTO quota_reservations (job_id, user_id, minutes)
VALUES (%(job_id)s, %(user_id)s, %(minutes)s)
ON CONFLICT (job_id) DO NOTHING

-- name: billing_insert_usage
-- Unique per job: a second write for the same job inserts nothing (and returns no row).
INSERT INTO usage_records (user_id, job_id, meeting_id, audio_seconds, billable_minutes, model, cost)
VALUES (%(user_id)s, %(job_id)s, %(meeting_id)s, %(audio_seconds)s, %(billable_minutes)s, %(model)s, %(cost)s)
ON CONFLICT (job_id) DO NOTHING
RETURNING id

-- name: billing_settle
UPDATE quota_reservations SET settled_at = now()
WHERE job_id = %(job_id)s AND settled_at IS NULL AND released_at IS NULL

-- name: billing_release
UPDATE quota_reservations SET released_at = now()
WHERE job_id = %(job_id)s AND settled_at IS NULL AND released_at IS NULL
