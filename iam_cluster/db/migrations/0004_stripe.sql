-- 0004_stripe: Stripe subscription state per user and the processed-once log of webhook events.

ALTER TABLE users
    ADD COLUMN stripe_subscription_id text,
    ADD COLUMN subscription_status    text;

-- One row per Stripe event id: a replayed webhook finds its id here and changes nothing.
CREATE TABLE stripe_events (
    id           text PRIMARY KEY,
    type         text NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    processed_at timestamptz
);
