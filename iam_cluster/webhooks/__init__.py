"""Webhooks: job and batch events posted to the account's endpoints and per-job callback URLs.

``outbox.record`` writes one delivery row per target inside the transaction that ends the job, so
an event exists exactly when its job ended; ``deliver.Deliverer`` (a thread of every worker) posts
due rows with an HMAC-SHA256 signature (``signing``) to targets checked against SSRF (``targets``),
retrying with exponential backoff for a day. The rows are also the delivery log the API shows.
"""

#: The events a client can subscribe to.
EVENTS = ("job.completed", "job.failed", "batch.completed")
#: The wake-up channel of the deliverers (payload: nothing; they look for due rows).
CHANNEL = "iam_webhooks"
