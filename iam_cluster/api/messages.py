"""Inbox messages between users: folders, search, cursor pagination, per-side flags, bulk actions, stats.

Each side of a message sees only its own state: the recipient's read/starred/archived/deleted flags never
show up in the sender's view and vice versa (a sender's own message always reads as read). Bodies are
stored as given and only ever returned inside JSON.
"""

from __future__ import annotations

import base64
import datetime as dt
import uuid
from typing import Annotated, Any, Literal

import msgspec
from litestar import Request, Response, Router, delete, get, patch, post, put
from litestar.background_tasks import BackgroundTask
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.status_codes import HTTP_201_CREATED, HTTP_204_NO_CONTENT
from psycopg import AsyncConnection, sql
from psycopg.types.json import Jsonb
from redis.asyncio import Redis

from iam_cluster import events
from iam_cluster.api.errors import APIError
from iam_cluster.api.input_guard import FREE_TEXT
from iam_cluster.api.openapi import errors
from iam_cluster.api.limits import RedisDown, RedisGate, hit, unavailable
from iam_cluster.api.security import SESSION_ONLY
from iam_cluster.db.queries import QUERIES, fetch_all, fetch_one
from iam_cluster.db.rows import User
from iam_cluster.settings import Settings

#: Messages one user may send per window (``SEND_WINDOW_S`` seconds), counted in Redis.
SEND_LIMIT_PER_MINUTE = 30
SEND_WINDOW_S = 60
#: Most ids one bulk request may name.
BULK_MAX_IDS = 100

Subject = Annotated[str, msgspec.Meta(max_length=200)]
Body = Annotated[str, msgspec.Meta(min_length=1, max_length=10_000, pattern=r"\S", extra=FREE_TEXT)]
Email = Annotated[str, msgspec.Meta(min_length=3, max_length=320)]
Folder = Literal["inbox", "sent", "starred", "archived"]
BulkAction = Literal["read", "unread", "star", "unstar", "archive", "unarchive", "delete"]


# --- API types -----------------------------------------------------------------------------------

class MessageCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Exactly one of ``recipient_id`` and ``recipient_email``."""

    recipient_id: uuid.UUID | None = None
    recipient_email: Email | None = None
    subject: Subject = ""
    body: Body


class MessageUpdate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Flags of the caller's side; ``is_read`` applies to received messages only (a sent one is read)."""

    is_read: bool | None = None
    is_starred: bool | None = None
    is_archived: bool | None = None


class BulkRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    ids: Annotated[list[uuid.UUID], msgspec.Meta(min_length=1, max_length=BULK_MAX_IDS)]
    action: BulkAction


class BulkResult(msgspec.Struct, kw_only=True):
    action: str
    #: Messages whose state changed (ids that are not the caller's, or already in that state, are not counted).
    changed: int


class MessageOut(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    sender_id: uuid.UUID | None
    recipient_id: uuid.UUID
    subject: str
    body: str
    #: "received" or "sent": which side of the message the caller is.
    direction: str
    is_read: bool
    is_starred: bool
    is_archived: bool
    created_at: dt.datetime


class MessagePage(msgspec.Struct, kw_only=True):
    items: list[MessageOut]
    #: Pass as ``cursor`` for the next (older) page; null on the last page.
    next_cursor: str | None
    limit: int


class MessageStats(msgspec.Struct, kw_only=True):
    #: Received messages not deleted by the caller.
    total: int
    unread: int
    starred: int
    archived: int
    sent: int


# --- helpers -------------------------------------------------------------------------------------

def _not_found() -> APIError:
    return APIError("not_found", "message not found")


def _out(row: dict[str, Any]) -> MessageOut:
    return MessageOut(id=row["id"], sender_id=row["sender_id"], recipient_id=row["recipient_id"],
                      subject=row["subject"], body=row["body"],
                      direction="received" if row["incoming"] else "sent",
                      is_read=row["is_read"], is_starred=row["is_starred"], is_archived=row["is_archived"],
                      created_at=row["created_at"])


def encode_cursor(created_at: dt.datetime, message_id: uuid.UUID) -> str:
    raw = msgspec.json.encode([created_at.isoformat(), str(message_id)])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[dt.datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at, mid = msgspec.json.decode(raw, type=tuple[dt.datetime, uuid.UUID])
    except (ValueError, msgspec.DecodeError) as exc:
        raise APIError("bad_request", "invalid cursor") from exc
    if at.tzinfo is None:
        raise APIError("bad_request", "invalid cursor")
    return at, mid


def _like(q: str) -> str:
    """An ILIKE pattern matching ``q`` anywhere, its wildcards taken literally."""
    escaped = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


async def _check_send_rate(gate: RedisGate, redis, prefix: str, user_id: uuid.UUID) -> None:
    """Counts one send against the caller's budget; 429 with ``Retry-After`` once it is spent.

    Without Redis sending fails closed (503): the budget is what keeps the inbox free of floods.
    """
    try:
        retry_after = await gate.call(
            lambda: hit(redis, prefix, [(f"send:{user_id}", SEND_LIMIT_PER_MINUTE)], SEND_WINDOW_S))
    except RedisDown:
        raise unavailable("sending messages") from None
    if retry_after is not None:
        raise APIError("rate_limited", f"at most {SEND_LIMIT_PER_MINUTE} messages per {SEND_WINDOW_S} s; "
                                       "retry later", {"Retry-After": str(retry_after)})


async def _recipient(conn: AsyncConnection, data: MessageCreate) -> dict[str, Any]:
    if (data.recipient_id is None) == (data.recipient_email is None):
        raise APIError("bad_request", "give exactly one of recipient_id and recipient_email")
    if data.recipient_id is not None:
        row = await fetch_one(conn, "get_user_by_id", {"id": data.recipient_id})
    else:
        row = await fetch_one(conn, "get_user_by_email", {"email": data.recipient_email})
    # Inactive accounts answer like unknown ones: no way to probe which accounts exist.
    if row is None or not row["is_active"]:
        raise APIError("not_found", "recipient not found")
    return row


async def _publish_new_message(redis, prefix: str, recipient_id: uuid.UUID, message: dict,
                               notification: dict) -> None:
    """Live events for the recipient, sent once the request's transaction has committed."""
    await events.publish(redis, prefix, recipient_id, "new_message", message)
    await events.publish(redis, prefix, recipient_id, "notification", notification)


async def _set_flag(conn: AsyncConnection, user_id: uuid.UUID, ids: list[uuid.UUID],
                    flag: Literal["starred", "archived"], value: bool) -> int:
    """Sets the caller's side of ``flag`` on ``ids``; counts the messages whose flag changed."""
    query = sql.SQL(QUERIES["messages_set_flag"]).format(
        recipient_flag=sql.Identifier(f"recipient_{flag}"), sender_flag=sql.Identifier(f"sender_{flag}"))
    cur = await conn.execute(query, {"user_id": user_id, "ids": ids, "value": value})
    return len(await cur.fetchall())


async def _set_read(conn: AsyncConnection, user_id: uuid.UUID, ids: list[uuid.UUID], read: bool) -> int:
    return len(await fetch_all(conn, "messages_set_read", {"user_id": user_id, "ids": ids, "read": read}))


async def _delete(conn: AsyncConnection, user_id: uuid.UUID, ids: list[uuid.UUID]) -> int:
    changed = await fetch_all(conn, "messages_delete_side", {"user_id": user_id, "ids": ids})
    if changed:
        done = [r["id"] for r in changed]
        await fetch_all(conn, "messages_purge", {"ids": done})
    return len(changed)


# --- routes --------------------------------------------------------------------------------------

@get("/")
async def list_messages(
    conn: NamedDependency[AsyncConnection], current_user: NamedDependency[User],
    folder: Annotated[Folder, QueryParameter()] = "inbox",
    unread: Annotated[bool, QueryParameter(description="received and unread only")] = False,
    q: Annotated[str | None, QueryParameter(max_length=200, description="text in subject or body")] = None,
    cursor: Annotated[str | None, QueryParameter(max_length=200)] = None,
    limit: Annotated[int, QueryParameter(ge=1, le=100)] = 20,
) -> MessagePage:
    """The caller's messages in ``folder``, newest first (archived ones leave inbox and sent)."""
    cursor_at, cursor_id = decode_cursor(cursor) if cursor else (None, None)
    rows = await fetch_all(conn, "messages_list", {
        "user_id": current_user.id, "folder": folder, "unread": unread,
        "q": _like(q) if q is not None and q.strip() else None,
        "cursor_at": cursor_at, "cursor_id": cursor_id, "limit": limit + 1})
    items = [_out(r) for r in rows[:limit]]
    next_cursor = encode_cursor(items[-1].created_at, items[-1].id) if len(rows) > limit else None
    return MessagePage(items=items, next_cursor=next_cursor, limit=limit)


@post("/", status_code=HTTP_201_CREATED, responses=errors({404: "No such recipient."}))
async def send_message(
    request: Request, conn: NamedDependency[AsyncConnection], current_user: NamedDependency[User],
    settings: NamedDependency[Settings], redis: NamedDependency[Redis], data: JSONBody[MessageCreate],
) -> Response[MessageOut]:
    """Sends a message (201); the recipient gets a notification and live ``new_message``/``notification``."""
    prefix = settings.redis.key_prefix
    await _check_send_rate(request.app.state.redis_gate, redis, prefix, current_user.id)
    recipient = await _recipient(conn, data)
    if recipient["id"] == current_user.id:
        raise APIError("bad_request", "you cannot send a message to yourself")
    row = await fetch_one(conn, "messages_create", {"sender_id": current_user.id, "recipient_id": recipient["id"],
                                               "subject": data.subject, "body": data.body})
    payload = {"message_id": str(row["id"]), "sender_id": str(current_user.id),
               "sender_email": current_user.email, "subject": row["subject"]}
    note = await fetch_one(conn, "messages_notify", {"user_id": recipient["id"], "kind": "new_message",
                                                "payload": Jsonb(payload)})
    message_event = {**payload, "id": str(row["id"]), "recipient_id": str(recipient["id"]),
                     "created_at": row["created_at"].isoformat()}
    note_event = {"id": str(note["id"]), "kind": note["kind"], "payload": payload,
                  "created_at": note["created_at"].isoformat()}
    out = MessageOut(id=row["id"], sender_id=row["sender_id"], recipient_id=row["recipient_id"],
                     subject=row["subject"], body=row["body"], direction="sent", is_read=True,
                     is_starred=False, is_archived=False, created_at=row["created_at"])
    return Response(out, status_code=HTTP_201_CREATED, background=BackgroundTask(
        _publish_new_message, redis, prefix, recipient["id"], message_event, note_event))


@get("/stats/summary")
async def message_stats(conn: NamedDependency[AsyncConnection], current_user: NamedDependency[User]) -> MessageStats:
    """Counts of the caller's messages: received, unread, starred, archived, sent."""
    row = await fetch_one(conn, "messages_stats", {"user_id": current_user.id})
    return MessageStats(**row)


@put("/bulk")
async def bulk_action(conn: NamedDependency[AsyncConnection], current_user: NamedDependency[User],
                      data: JSONBody[BulkRequest]) -> BulkResult:
    """Applies ``action`` to the caller's side of ``ids``; ids that are not theirs are ignored."""
    ids = list(dict.fromkeys(data.ids))
    user_id = current_user.id
    match data.action:
        case "read" | "unread":
            changed = await _set_read(conn, user_id, ids, data.action == "read")
        case "star" | "unstar":
            changed = await _set_flag(conn, user_id, ids, "starred", data.action == "star")
        case "archive" | "unarchive":
            changed = await _set_flag(conn, user_id, ids, "archived", data.action == "archive")
        case "delete":
            changed = await _delete(conn, user_id, ids)
    return BulkResult(action=data.action, changed=changed)


@get("/{message_id:uuid}")
async def get_message(conn: NamedDependency[AsyncConnection], current_user: NamedDependency[User],
                      message_id: FromPath[uuid.UUID]) -> MessageOut:
    """One message; reading it does not mark it read (PATCH ``is_read`` does)."""
    row = await fetch_one(conn, "messages_get", {"id": message_id, "user_id": current_user.id})
    if row is None:
        raise _not_found()
    return _out(row)


@patch("/{message_id:uuid}")
async def update_message(conn: NamedDependency[AsyncConnection], current_user: NamedDependency[User],
                         message_id: FromPath[uuid.UUID], data: JSONBody[MessageUpdate]) -> MessageOut:
    """Set the caller's side of a message's flags (read, starred, archived)."""
    params = {"id": message_id, "user_id": current_user.id}
    row = await fetch_one(conn, "messages_get", params)
    if row is None:
        raise _not_found()
    ids = [message_id]
    if data.is_read is not None and row["incoming"]:
        await _set_read(conn, current_user.id, ids, data.is_read)
    if data.is_starred is not None:
        await _set_flag(conn, current_user.id, ids, "starred", data.is_starred)
    if data.is_archived is not None:
        await _set_flag(conn, current_user.id, ids, "archived", data.is_archived)
    return _out(await fetch_one(conn, "messages_get", params))


@delete("/{message_id:uuid}", status_code=HTTP_204_NO_CONTENT)
async def delete_message(conn: NamedDependency[AsyncConnection], current_user: NamedDependency[User],
                         message_id: FromPath[uuid.UUID]) -> None:
    """Deletes the message on the caller's side; the row goes once both sides deleted it."""
    if not await _delete(conn, current_user.id, [message_id]):
        raise _not_found()


router = Router(path="/messages", route_handlers=[
    list_messages, send_message, message_stats, bulk_action, get_message, update_message, delete_message,
], tags=["messages"], opt={"write_scope": SESSION_ONLY})
