"""The webhook outbox: delivery rows written in the transaction that ends a job (or a batch)."""

from __future__ import annotations

import datetime as dt
import uuid

import psycopg
from psycopg.types.json import Jsonb

from iam_cluster.db.errors import translate_errors
from iam_cluster.db.queries import QUERIES
from iam_cluster.webhooks import CHANNEL, EVENTS
from iam_cluster.webhooks.signing import new_secret


def statements(user_id: uuid.UUID, event: str, data: dict, callback_url: str | None = None) -> list[tuple[str, dict]]:
    """The named queries that queue ``event`` for the user's active endpoints subscribed to it and
    for ``callback_url``, create the account's signing secret if it has none, and wake the deliverers.

    Run them inside the transaction that makes the event true (``record`` on a blocking connection,
    ``record_async`` on the API's): the deliverers are woken at its commit.
    """
    if event not in EVENTS:
        raise ValueError(f"unknown webhook event {event!r}")
    event_id = uuid.uuid4()
    payload = {"id": str(event_id), "type": event, "created_at": dt.datetime.now(dt.UTC).isoformat(),
               "data": data}
    params = {"user_id": user_id, "event": event, "event_id": event_id, "payload": Jsonb(payload),
              "url": callback_url, "secret": new_secret(), "channel": CHANNEL}
    names = ["webhook_outbox_endpoints", *(["webhook_outbox_callback"] if callback_url else []),
             "webhook_ensure_secret", "webhook_wake"]
    return [(name, params) for name in names]


def record(conn: psycopg.Connection, user_id: uuid.UUID, event: str, data: dict,
           callback_url: str | None = None) -> None:
    """Queue an event on a blocking connection (see ``statements``)."""
    with translate_errors():
        for name, params in statements(user_id, event, data, callback_url):
            conn.execute(QUERIES[name], params)


async def record_async(conn: psycopg.AsyncConnection, user_id: uuid.UUID, event: str, data: dict,
                       callback_url: str | None = None) -> None:
    """Queue an event on an async connection (see ``statements``)."""
    with translate_errors():
        for name, params in statements(user_id, event, data, callback_url):
            await conn.execute(QUERIES[name], params)


def job_event(job, links_base: str = "/api/v1") -> tuple[str, dict]:
    """The webhook event of a job that ended: ``job.completed`` or ``job.failed`` and its data."""
    event = "job.completed" if job.status == "completed" else "job.failed"
    data = {"job": {"id": str(job.id), "status": job.status, "kind": job.kind,
                    "meeting_id": str(job.meeting_id) if job.meeting_id else None,
                    "error_code": job.error_code, "error_message": job.error_message,
                    "created_at": job.created_at.isoformat(),
                    "finished_at": job.finished_at.isoformat() if job.finished_at else None}}
    if job.meeting_id:
        data["links"] = {"meeting": f"{links_base}/meetings/{job.meeting_id}",
                         "transcript": f"{links_base}/meetings/{job.meeting_id}/transcript"}
    return event, data


def batch_event(batch: dict, links_base: str = "/api/v1") -> tuple[str, dict]:
    """The webhook event of a batch whose last job ended: ``batch.completed`` and its data.

    ``batch`` is the batch's row with its items' counts by state (the ``batch_get`` query).
    """
    counts = {k: batch[k] for k in ("queued", "processing", "completed", "failed", "cancelled")}
    url = f"{links_base}/batches/{batch['id']}"
    data = {"batch": {"id": str(batch["id"]), "name": batch["name"],
                      "status": "cancelled" if batch["cancelled_at"] else "completed",
                      "total": batch["total_items"], "counts": counts,
                      "created_at": batch["created_at"].isoformat(),
                      "finished_at": batch["finished_at"].isoformat() if batch["finished_at"] else None},
            "links": {"batch": url, "items": f"{url}/items", "results": f"{url}/results"}}
    return "batch.completed", data
