"""Meeting insights over HTTP: read what the worker stored, or recompute from the stored transcript."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Literal

import anyio.to_thread
import msgspec
from litestar import Router, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_200_OK
from psycopg import AsyncConnection

from iam_cluster.api.errors import APIError
from iam_cluster.api.openapi import errors
from iam_cluster.db.pool import convert_row
from iam_cluster.db.queries import fetch_one
from iam_cluster.db.rows import Meeting, User
from iam_cluster.insights import service, store
from iam_cluster.insights.types import Insights
from iam_cluster.pipeline.types import Transcript
from iam_cluster.settings import Settings


class InsightsRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Overrides of the server's defaults for one recomputation; all optional."""

    summary_sentences: Annotated[int, msgspec.Meta(ge=1, le=50)] | None = None
    keywords: Annotated[int, msgspec.Meta(ge=0, le=100)] | None = None
    timeline_seconds: Annotated[float, msgspec.Meta(ge=5, le=3600)] | None = None
    #: Use the configured chat endpoint (when the server has one) for the abstract and action items.
    abstractive: bool | None = None


class InsightsOut(msgspec.Struct, kw_only=True):
    meeting_id: uuid.UUID
    status: Literal["completed", "failed"]
    #: ``offline``, or ``llm:MODEL`` when the chat endpoint wrote the abstract and action items.
    backend: str | None = None
    error: str | None = None
    computed_at: dt.datetime
    insights: Insights | None = None


def _out(row: store.StoredInsights) -> InsightsOut:
    return InsightsOut(meeting_id=row.meeting_id, status=row.status, backend=row.backend, error=row.error,
                       computed_at=row.computed_at, insights=row.insights)


async def _meeting(conn: AsyncConnection, meeting_id: uuid.UUID, user: User) -> Meeting:
    row = await fetch_one(conn, "meetings_api_whole", {"id": meeting_id, "user_id": user.id})
    if row is None:
        raise APIError("not_found", "meeting not found")
    return convert_row(row, Meeting)


@get("/{meeting_id:uuid}/insights", responses=errors({409: "No transcript, or no insights computed yet."}))
async def get_insights(conn: NamedDependency[AsyncConnection], current_user: NamedDependency[User],
                       meeting_id: FromPath[uuid.UUID]) -> InsightsOut:
    """The meeting's insights as last computed (by its transcription job or a POST here)."""
    row = await store.load(conn, meeting_id, current_user.id)
    if row is not None:
        return _out(row)
    meeting = await _meeting(conn, meeting_id, current_user)
    if meeting.processing_status != "completed":
        raise APIError("conflict", f"no transcript yet: processing status is {meeting.processing_status!r}")
    raise APIError("conflict", "no insights have been computed for this meeting: POST here to compute them")


@post("/{meeting_id:uuid}/insights", status_code=HTTP_200_OK, responses=errors({409: "No transcript yet."}))
async def compute_insights(conn: NamedDependency[AsyncConnection], current_user: NamedDependency[User],
                           settings: NamedDependency[Settings], meeting_id: FromPath[uuid.UUID],
                           data: JSONBody[InsightsRequest | None] = None) -> InsightsOut:
    """Computes the insights again from the stored transcript (no re-transcription) and stores them."""
    data = data or InsightsRequest()
    meeting = await _meeting(conn, meeting_id, current_user)
    if meeting.processing_status != "completed" or meeting.transcript is None:
        raise APIError("conflict", f"no transcript yet: processing status is {meeting.processing_status!r}")
    transcript = msgspec.convert(meeting.transcript, Transcript)
    options = service.options_from(settings.insights, summary_sentences=data.summary_sentences,
                                   keywords=data.keywords, timeline_seconds=data.timeline_seconds,
                                   abstractive=data.abstractive)
    enabled = msgspec.structs.replace(settings.insights, enabled=True)  # asked for explicitly
    outcome = await anyio.to_thread.run_sync(lambda: service.compute(transcript, enabled, options=options))
    await store.save_async(conn, meeting_id, outcome)
    row = await store.load(conn, meeting_id, current_user.id)
    return _out(row)


async def attach_to_export(conn: AsyncConnection, meeting_id: uuid.UUID, user: User, doc: str) -> str:
    """The transcript's JSON export with an ``insights`` field, when completed insights are stored."""
    row = await store.load(conn, meeting_id, user.id)
    if row is None or row.insights is None:
        return doc
    fields = msgspec.json.decode(doc)
    fields["insights"] = row.insights
    return msgspec.json.format(msgspec.json.encode(fields), indent=2).decode("utf-8") + "\n"


router = Router(path="/meetings", route_handlers=[get_insights, compute_insights], tags=["insights"])
