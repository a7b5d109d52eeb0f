-- Stripe: customers, subscription state from webhooks, processed-once events, usage reporting.

-- name: stripe_lock_user
-- The caller's row, locked so concurrent requests create at most one customer.
SELECT id, email, full_name, stripe_customer_id FROM users WHERE id = %(id)s FOR UPDATE

-- name: stripe_set_customer
UPDATE users SET stripe_customer_id = %(customer_id)s WHERE id = %(id)s

-- name: stripe_record_event
-- Returns the id only the first time an event is seen.
INSERT INTO stripe_events (id, type) VALUES (%(id)s, %(type)s)
ON CONFLICT (id) DO NOTHING
RETURNING id

-- name: stripe_mark_event_processed
UPDATE stripe_events SET processed_at = now() WHERE id = %(id)s

-- name: stripe_set_subscription
-- Tier, status and subscription of the user owning a Stripe customer.
UPDATE users
SET tier = %(tier)s, subscription_status = %(status)s, stripe_subscription_id = %(subscription_id)s
WHERE stripe_customer_id = %(customer_id)s
RETURNING id

-- name: stripe_set_subscription_status
-- Only the status (invoice paid / payment failed).
UPDATE users SET subscription_status = %(status)s
WHERE stripe_customer_id = %(customer_id)s
RETURNING id

-- name: stripe_claim_unreported_usage
-- Unreported ledger rows of users with a Stripe customer, oldest first; concurrent syncs skip each other's rows.
SELECT r.id, r.billable_minutes, u.stripe_customer_id
FROM usage_records AS r
JOIN users AS u ON u.id = r.user_id
WHERE r.stripe_reported_at IS NULL AND u.stripe_customer_id IS NOT NULL
ORDER BY r.created_at, r.id
LIMIT %(batch)s
FOR UPDATE OF r SKIP LOCKED

-- name: stripe_usage_reported
UPDATE usage_records
SET stripe_reported_at = now(), stripe_attempts = stripe_attempts + 1, stripe_last_error = NULL
WHERE id = %(id)s

-- name: stripe_usage_failed
UPDATE usage_records
SET stripe_attempts = stripe_attempts + 1, stripe_last_error = %(error)s
WHERE id = %(id)s
