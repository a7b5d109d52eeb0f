"""Stored insights: one ``meeting_insights`` row per meeting, written by the worker or on demand."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Literal

import msgspec

from iam_cluster.db.errors import translate_errors
from iam_cluster.db.pool import convert_row
from iam_cluster.db.queries import QUERIES, fetch_one
from iam_cluster.insights.service import Outcome
from iam_cluster.insights.types import Insights


class StoredInsights(msgspec.Struct, kw_only=True):
    """A row of ``meeting_insights``."""

    meeting_id: uuid.UUID
    status: Literal["completed", "failed"]
    insights: Insights | None = None
    error: str | None = None
    backend: str | None = None
    computed_at: dt.datetime


def _dumps(obj) -> str:
    return msgspec.json.encode(obj).decode("utf-8")


def _params(meeting_id: uuid.UUID, outcome: Outcome) -> dict:
    from psycopg.types.json import Jsonb

    # msgspec writes the structs (and would write a stray NaN as null, which JSONB accepts).
    doc = Jsonb(outcome.insights, dumps=_dumps) if outcome.insights is not None else None
    return {"meeting_id": meeting_id, "status": outcome.status, "insights": doc, "error": outcome.error,
            "backend": outcome.backend}


def save(conn, meeting_id: uuid.UUID, outcome: Outcome) -> None:
    """Stores the outcome as the meeting's insights (sync connection, e.g. the worker's transaction)."""
    with translate_errors():
        conn.execute(QUERIES["insights_save"], _params(meeting_id, outcome))


async def save_async(conn, meeting_id: uuid.UUID, outcome: Outcome) -> None:
    """Stores the outcome as the meeting's insights (async connection, the API's)."""
    with translate_errors():
        await conn.execute(QUERIES["insights_save"], _params(meeting_id, outcome))


async def load(conn, meeting_id: uuid.UUID, user_id: uuid.UUID) -> StoredInsights | None:
    """The meeting's stored insights when the meeting is ``user_id``'s, else None."""
    row = await fetch_one(conn, "insights_get", {"id": meeting_id, "user_id": user_id})
    return convert_row(row, StoredInsights) if row is not None else None
