"""Meeting pages: the list with search, a new meeting (upload, then live progress), the transcript."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from litestar import Request, get
from litestar.di import NamedDependency
from litestar.params import FromPath, QueryParameter
from litestar.response import Template
from psycopg import AsyncConnection

from iam_cluster.api import meetings as api
from iam_cluster.api.errors import APIError
from iam_cluster.db.queries import fetch_one
from iam_cluster.db.rows import User
from iam_cluster.web.render import page

PAGE_SIZE = 20
#: Speaker colours in the stylesheet (``spk-0`` ... ``spk-7``); more speakers reuse them, with their names.
COLOURS = 8
EXPORTS = ("json", "txt", "srt", "vtt", "rttm")


@get("/meetings")
async def meetings_page(
    request: Request, conn: NamedDependency[AsyncConnection], viewer: NamedDependency[User],
    q: Annotated[str | None, QueryParameter(max_length=200)] = None,
    offset: Annotated[int, QueryParameter(ge=0, le=1_000_000)] = 0,
) -> Template:
    found = await api.list_meetings.fn(conn=conn, current_user=viewer, q=q, limit=PAGE_SIZE, offset=offset)
    return page("meetings.html", request, meetings=found.items, total=found.total, q=q or "", offset=offset,
                page_size=PAGE_SIZE)


@get("/meetings/new")
async def new_meeting_page(request: Request, viewer: NamedDependency[User]) -> Template:
    return page("meeting_new.html", request)


def transcript_view(transcript: dict[str, Any] | None, names: dict[str, str]) -> dict[str, Any] | None:
    """What the transcript page shows: segments with their speaker's colour and name, and timed words."""
    if not transcript:
        return None
    labels = list(transcript.get("speakers") or [])
    colour = {label: i % COLOURS for i, label in enumerate(labels)}
    segments = [{
        "start": s["start"], "speaker": s.get("speaker"), "colour": colour.get(s.get("speaker"), "none"),
        "words": [(w["start"], w["word"]) for w in s.get("words") or ()], "text": s.get("text", ""),
    } for s in transcript.get("segments") or ()]
    speakers = [{"label": label, "name": names.get(label, ""), "colour": colour[label]} for label in labels]
    return {"segments": segments, "speakers": speakers, "names": {**{l: l for l in labels}, **names},
            "language": transcript.get("language"), "words": sum(len(s["words"]) for s in segments)}


@get("/meetings/{meeting_id:uuid}")
async def meeting_page(request: Request, conn: NamedDependency[AsyncConnection], viewer: NamedDependency[User],
                       meeting_id: FromPath[uuid.UUID]) -> Template:
    """The transcript (or the job's live progress); another user's meeting is a 404 like in the API."""
    row = await fetch_one(conn, "meetings_api_get", {"id": meeting_id, "user_id": viewer.id})
    if row is None:
        raise APIError("not_found", "meeting not found")
    whole = await fetch_one(conn, "meetings_api_whole", {"id": meeting_id, "user_id": viewer.id})
    row = {**row, "transcript": whole["transcript"] if whole else None}
    insights = await _insights(conn, meeting_id, viewer)
    return page("meeting.html", request, meeting=row, view=transcript_view(row["transcript"], row["speaker_names"]),
                exports=EXPORTS, insights=insights, title_slug=_slug(row["title"]))


async def _insights(conn: AsyncConnection, meeting_id: uuid.UUID, viewer: User) -> Any:
    """The meeting's stored insights, when they were computed and did not fail."""
    from iam_cluster.insights import store

    stored = await store.load(conn, meeting_id, viewer.id)
    return stored.insights if stored is not None and stored.status == "completed" else None


def _slug(title: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in title.lower()).strip("-")[:60] or "transcript"


handlers = [meetings_page, new_meeting_page, meeting_page]
