-- Webhooks (webhooks/, api/webhooks.py): endpoints, the signing secret, the delivery outbox and log.

-- name: webhook_outbox_endpoints
INSERT INTO webhook_deliveries (user_id, endpoint_id, url, event, event_id, payload)
SELECT user_id, id, url, %(event)s, %(event_id)s, %(payload)s
FROM webhook_endpoints
WHERE user_id = %(user_id)s AND active AND %(event)s = ANY(events)

-- name: webhook_outbox_callback
INSERT INTO webhook_deliveries (user_id, url, event, event_id, payload)
VALUES (%(user_id)s, %(url)s, %(event)s, %(event_id)s, %(payload)s)

-- name: webhook_ensure_secret
UPDATE users SET webhook_secret = coalesce(webhook_secret, %(secret)s)
WHERE id = %(user_id)s
RETURNING webhook_secret

-- name: webhook_rotate_secret
UPDATE users SET webhook_secret = %(secret)s WHERE id = %(user_id)s
RETURNING webhook_secret

-- name: webhook_wake
SELECT pg_notify(%(channel)s, '')

-- name: webhook_claim_due
-- Due deliveries for this deliverer: held for ``hold_seconds`` (another deliverer skips them meanwhile).
WITH due AS (
    SELECT id FROM webhook_deliveries
    WHERE status = 'pending' AND next_attempt_at <= now()
    ORDER BY next_attempt_at
    FOR UPDATE SKIP LOCKED
    LIMIT %(limit)s
)
UPDATE webhook_deliveries AS d
SET attempts = d.attempts + 1, next_attempt_at = now() + %(hold_seconds)s * interval '1 second'
FROM due, users AS u
WHERE d.id = due.id AND u.id = d.user_id
RETURNING d.*, u.webhook_secret AS secret

-- name: webhook_delivered
UPDATE webhook_deliveries
SET status = 'delivered', delivered_at = now(), last_status_code = %(status_code)s, last_error = NULL
WHERE id = %(id)s

-- name: webhook_retry_later
-- The next attempt after %(delay)s seconds, unless that is past the retry horizon: then failed for good.
UPDATE webhook_deliveries
SET status = CASE WHEN now() + %(delay)s * interval '1 second' > created_at + %(horizon)s * interval '1 second'
                  THEN 'failed' ELSE 'pending' END,
    next_attempt_at = now() + %(delay)s * interval '1 second',
    last_status_code = %(status_code)s, last_error = %(error)s
WHERE id = %(id)s
RETURNING status

-- name: webhook_endpoint_create
INSERT INTO webhook_endpoints (user_id, url, events)
VALUES (%(user_id)s, %(url)s, %(events)s)
RETURNING *

-- name: webhook_endpoint_list
SELECT * FROM webhook_endpoints WHERE user_id = %(user_id)s ORDER BY created_at DESC, id DESC

-- name: webhook_endpoint_update
UPDATE webhook_endpoints SET
    url = coalesce(%(url)s, url),
    events = coalesce(%(events)s, events),
    active = coalesce(%(active)s, active)
WHERE id = %(id)s AND user_id = %(user_id)s
RETURNING *

-- name: webhook_endpoint_delete
DELETE FROM webhook_endpoints WHERE id = %(id)s AND user_id = %(user_id)s
RETURNING id

-- name: webhook_delivery_list
SELECT id, endpoint_id, url, event, event_id, status, attempts, next_attempt_at, last_status_code,
       last_error, created_at, delivered_at
FROM webhook_deliveries
WHERE user_id = %(user_id)s
  AND (%(status)s::text IS NULL OR status = %(status)s)
  AND (%(event)s::text IS NULL OR event = %(event)s)
ORDER BY created_at DESC, id DESC
LIMIT %(limit)s

-- name: webhook_redeliver
-- A fresh delivery of the same event (same event id, so receivers still deduplicate) to the same URL.
INSERT INTO webhook_deliveries (user_id, endpoint_id, url, event, event_id, payload)
SELECT user_id, endpoint_id, url, event, event_id, payload
FROM webhook_deliveries
WHERE id = %(id)s AND user_id = %(user_id)s
RETURNING id, endpoint_id, url, event, event_id, status, attempts, next_attempt_at, last_status_code,
          last_error, created_at, delivered_at
