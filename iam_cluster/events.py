"""Live events fan out through Redis pub/sub: any API process delivers them to its sockets.

One channel per user (``{prefix}events:{user_id}``); a message is JSON ``{"type", "data"}``.
Events are a convenience on top of PostgreSQL, never the record: a client that was offline
fetches what it missed through the REST endpoints.
"""

from __future__ import annotations

import uuid

import msgspec

#: The event types a client may receive.
EVENT_TYPES = frozenset(
    {"new_message", "notification", "job_progress", "job_completed", "job_failed", "job_cancelled", "batch_completed",
     "typing",
     "presence"}
)


def channel(prefix: str, user_id: uuid.UUID | str) -> str:
    return f"{prefix}events:{user_id}"


def encode(event_type: str, data: dict) -> bytes:
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {event_type!r}")
    return msgspec.json.encode({"type": event_type, "data": data})


async def publish(redis, prefix: str, user_id: uuid.UUID | str, event_type: str, data: dict) -> int:
    """Publish from async code (the API); returns how many subscribers got it."""
    return await redis.publish(channel(prefix, user_id), encode(event_type, data))


def publish_sync(redis, prefix: str, user_id: uuid.UUID | str, event_type: str, data: dict) -> int:
    """Publish from blocking code (the worker) with a ``redis.Redis`` client."""
    return redis.publish(channel(prefix, user_id), encode(event_type, data))


def batch_completed(row: dict) -> dict:
    """Data of the ``batch_completed`` event: the batch and how many recordings it held."""
    return {"batch_id": str(row["id"]), "total": row["total_items"]}
