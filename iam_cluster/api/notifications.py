"""Notifications: one row per event a user should know about (new messages, finished or failed jobs)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any

import msgspec
from litestar import Router, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, QueryParameter
from litestar.status_codes import HTTP_200_OK
from psycopg import AsyncConnection
from psycopg.rows import dict_row

from iam_cluster.api.errors import APIError
from iam_cluster.api.security import SESSION_ONLY
from iam_cluster.db.queries import QUERIES
from iam_cluster.db.rows import User


class NotificationOut(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    kind: str
    payload: dict[str, Any]
    is_read: bool
    read_at: dt.datetime | None
    created_at: dt.datetime


class NotificationPage(msgspec.Struct, kw_only=True):
    items: list[NotificationOut]
    #: Every notification matching the filter, not only this page.
    total: int
    #: The caller's unread notifications, whatever the filter.
    unread: int
    limit: int
    offset: int


class ReadAllResult(msgspec.Struct, kw_only=True):
    changed: int


async def _all(conn: AsyncConnection, name: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(QUERIES[name], params)
        return await cur.fetchall()


def _out(row: dict[str, Any]) -> NotificationOut:
    return NotificationOut(id=row["id"], kind=row["kind"], payload=row["payload"] or {},
                           is_read=row["read_at"] is not None, read_at=row["read_at"],
                           created_at=row["created_at"])


@get("/")
async def list_notifications(
    conn: NamedDependency[AsyncConnection], current_user: NamedDependency[User],
    unread: Annotated[bool, QueryParameter(description="unread only")] = False,
    limit: Annotated[int, QueryParameter(ge=1, le=100)] = 20,
    offset: Annotated[int, QueryParameter(ge=0, le=1_000_000)] = 0,
) -> NotificationPage:
    """The caller's notifications, newest first."""
    rows = await _all(conn, "notifications_list", {"user_id": current_user.id, "unread": unread,
                                                   "limit": limit, "offset": offset})
    (count,) = await _all(conn, "notifications_unread_count", {"user_id": current_user.id})
    return NotificationPage(items=[_out(r) for r in rows], total=rows[0]["total"] if rows else 0,
                            unread=count["unread"], limit=limit, offset=offset)


@post("/read-all", status_code=HTTP_200_OK)
async def read_all(conn: NamedDependency[AsyncConnection], current_user: NamedDependency[User]) -> ReadAllResult:
    """Mark every notification of the caller read."""
    rows = await _all(conn, "notifications_read_all", {"user_id": current_user.id})
    return ReadAllResult(changed=len(rows))


@post("/{notification_id:uuid}/read", status_code=HTTP_200_OK)
async def read_one(conn: NamedDependency[AsyncConnection], current_user: NamedDependency[User],
                   notification_id: FromPath[uuid.UUID]) -> NotificationOut:
    """Mark one notification read."""
    rows = await _all(conn, "notifications_read", {"id": notification_id, "user_id": current_user.id})
    if not rows:
        raise APIError("not_found", "notification not found")
    return _out(rows[0])


router = Router(path="/notifications", route_handlers=[list_notifications, read_all, read_one],
                tags=["notifications"], opt={"write_scope": SESSION_ONLY})
