"""Inbox pages: folders, search, compose, one message; actions go to the REST API from ``inbox.js``."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from litestar import Request, get
from litestar.di import NamedDependency
from litestar.params import FromPath, QueryParameter
from litestar.response import Template
from psycopg import AsyncConnection

from iam_cluster.api import messages as api
from iam_cluster.db.queries import fetch_all
from iam_cluster.db.rows import User
from iam_cluster.web.render import page

FOLDERS = (("inbox", "Inbox"), ("starred", "Starred"), ("sent", "Sent"), ("archived", "Archived"))
PAGE_SIZE = 50
Folder = Annotated[api.Folder, QueryParameter()]
Search = Annotated[str | None, QueryParameter(max_length=200)]


async def _people(conn: AsyncConnection, items: list[api.MessageOut]) -> dict[uuid.UUID, dict[str, Any]]:
    """The correspondents of ``items`` by id (their email and name)."""
    ids = list({i for m in items for i in (m.sender_id, m.recipient_id) if i is not None})
    rows = await fetch_all(conn, "web_correspondents", {"ids": ids}) if ids else []
    return {r["id"]: r for r in rows}


async def _listing(request: Request, conn: AsyncConnection, viewer: User, folder: str, q: str | None,
                   cursor: str | None = None) -> dict[str, Any]:
    found = await api.list_messages.fn(conn=conn, current_user=viewer, folder=folder, unread=False, q=q,
                                       cursor=cursor, limit=PAGE_SIZE)
    return {"messages": found.items, "next_cursor": found.next_cursor, "people": await _people(conn, found.items),
            "folder": folder, "q": q or "", "unread": request.state.unread}


@get("/inbox")
async def inbox_page(request: Request, conn: NamedDependency[AsyncConnection], viewer: NamedDependency[User],
                     folder: Folder = "inbox", q: Search = None,
                     cursor: Annotated[str | None, QueryParameter(max_length=200)] = None) -> Template:
    listing = await _listing(request, conn, viewer, folder, q, cursor)
    return page("inbox.html", request, folders=FOLDERS, to=request.query_params.get("to", ""), **listing)


@get("/inbox/messages")
async def inbox_fragment(request: Request, conn: NamedDependency[AsyncConnection], viewer: NamedDependency[User],
                         folder: Folder = "inbox", q: Search = None) -> Template:
    """The message list alone, fetched by ``inbox.js`` when a message arrives or after an action."""
    return page("_messages.html", request, **await _listing(request, conn, viewer, folder, q))


@get("/inbox/{message_id:uuid}")
async def message_page(request: Request, conn: NamedDependency[AsyncConnection], viewer: NamedDependency[User],
                       message_id: FromPath[uuid.UUID]) -> Template:
    """One message; opening a received message marks it read."""
    message = await api.get_message.fn(conn=conn, current_user=viewer, message_id=message_id)
    if message.direction == "received" and not message.is_read:
        message = await api.update_message.fn(conn=conn, current_user=viewer, message_id=message_id,
                                              data=api.MessageUpdate(is_read=True))
        request.state.unread = max(0, request.state.unread - 1)
    return page("message.html", request, message=message, people=await _people(conn, [message]))


handlers = [inbox_page, inbox_fragment, message_page]
