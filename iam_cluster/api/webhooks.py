"""Webhook endpoints of an account (CRUD), its signing secret, the delivery log and redelivery.

Events: ``job.completed``, ``job.failed`` (cancelled jobs included), ``batch.completed``. Each
delivery is a JSON ``{id, type, created_at, data}`` POST signed with ``IAM-Signature`` (see
``iam_cluster.webhooks.signing.verify``); ``IAM-Event-Id`` is the same for every retry and every
target of one event, so a receiver can drop duplicates.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Literal

import anyio.to_thread
import msgspec
from litestar import Router, delete, get, patch, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_202_ACCEPTED
from psycopg import AsyncConnection

from iam_cluster.api.errors import APIError
from iam_cluster.db.queries import QUERIES, fetch_all, fetch_one
from iam_cluster.db.rows import User
from iam_cluster.settings import Settings
from iam_cluster.webhooks import CHANNEL, targets
from iam_cluster.webhooks.signing import new_secret

Event = Literal["job.completed", "job.failed", "batch.completed"]
Url = Annotated[str, msgspec.Meta(min_length=8, max_length=2000)]
Events = Annotated[tuple[Event, ...], msgspec.Meta(min_length=1, max_length=3)]


class EndpointCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    url: Url
    events: Events = ("job.completed", "job.failed", "batch.completed")


class EndpointUpdate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    url: Url | None = None
    events: Events | None = None
    active: bool | None = None


class EndpointOut(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    url: str
    events: list[str]
    active: bool
    created_at: dt.datetime
    updated_at: dt.datetime


class SecretOut(msgspec.Struct, kw_only=True):
    #: Verify each delivery's ``IAM-Signature`` with it (HMAC-SHA256 over ``"{t}.{body}"``).
    secret: str


class DeliveryOut(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    endpoint_id: uuid.UUID | None = None
    url: str
    event: str
    event_id: uuid.UUID
    status: str
    attempts: int
    next_attempt_at: dt.datetime
    last_status_code: int | None = None
    last_error: str | None = None
    created_at: dt.datetime
    delivered_at: dt.datetime | None = None


async def _safe(url: str, settings: Settings) -> str:
    try:
        await anyio.to_thread.run_sync(targets.check, url, settings.webhooks.allow_private)
    except targets.UnsafeTarget as exc:
        raise APIError("invalid_value", exc.message) from None
    return url


def _endpoint(row: dict | None) -> EndpointOut:
    if row is None:
        raise APIError("not_found", "webhook endpoint not found")
    return msgspec.convert(row, EndpointOut)


@post("/endpoints", status_code=HTTP_201_CREATED)
async def create_endpoint(conn: NamedDependency[AsyncConnection], current_user: NamedDependency[User],
                          settings: NamedDependency[Settings], data: JSONBody[EndpointCreate]) -> EndpointOut:
    """Register a URL for events (a public http(s) URL: private and metadata addresses are refused)."""
    row = await fetch_one(conn, "webhook_endpoint_create", {
        "user_id": current_user.id, "url": await _safe(data.url, settings), "events": list(data.events)})
    await fetch_one(conn, "webhook_ensure_secret", {"user_id": current_user.id, "secret": new_secret()})
    return _endpoint(row)


@get("/endpoints")
async def list_endpoints(conn: NamedDependency[AsyncConnection], current_user: NamedDependency[User]) -> list[EndpointOut]:
    """The caller's webhook endpoints."""
    return [_endpoint(r) for r in await fetch_all(conn, "webhook_endpoint_list", {"user_id": current_user.id})]


@patch("/endpoints/{endpoint_id:uuid}")
async def update_endpoint(conn: NamedDependency[AsyncConnection], current_user: NamedDependency[User],
                          settings: NamedDependency[Settings], endpoint_id: FromPath[uuid.UUID],
                          data: JSONBody[EndpointUpdate]) -> EndpointOut:
    """Change an endpoint's URL (checked like a new one), events, or turn it off and on."""
    url = await _safe(data.url, settings) if data.url is not None else None
    return _endpoint(await fetch_one(conn, "webhook_endpoint_update", {
        "id": endpoint_id, "user_id": current_user.id, "url": url,
        "events": list(data.events) if data.events is not None else None, "active": data.active}))


@delete("/endpoints/{endpoint_id:uuid}", status_code=204)
async def delete_endpoint(conn: NamedDependency[AsyncConnection], current_user: NamedDependency[User],
                          endpoint_id: FromPath[uuid.UUID]) -> None:
    """Remove an endpoint; no further event is sent to it."""
    if await fetch_one(conn, "webhook_endpoint_delete", {"id": endpoint_id, "user_id": current_user.id}) is None:
        raise APIError("not_found", "webhook endpoint not found")


@get("/secret")
async def get_secret(conn: NamedDependency[AsyncConnection], current_user: NamedDependency[User]) -> SecretOut:
    """The account's signing secret (created on first use)."""
    row = await fetch_one(conn, "webhook_ensure_secret", {"user_id": current_user.id, "secret": new_secret()})
    return SecretOut(secret=row["webhook_secret"])


@post("/secret/rotate", status_code=HTTP_200_OK, opt={"scope": "session"})
async def rotate_secret(conn: NamedDependency[AsyncConnection], current_user: NamedDependency[User]) -> SecretOut:
    """A new signing secret; deliveries from now on (retries included) are signed with it."""
    row = await fetch_one(conn, "webhook_rotate_secret", {"user_id": current_user.id, "secret": new_secret()})
    return SecretOut(secret=row["webhook_secret"])


@get("/deliveries")
async def list_deliveries(
    conn: NamedDependency[AsyncConnection], current_user: NamedDependency[User],
    status: Annotated[Literal["pending", "delivered", "failed"] | None, QueryParameter()] = None,
    event: Annotated[Event | None, QueryParameter()] = None,
    limit: Annotated[int, QueryParameter(ge=1, le=200)] = 50,
) -> list[DeliveryOut]:
    """The delivery log, newest first: every attempt's outcome is on its row."""
    rows = await fetch_all(conn, "webhook_delivery_list",
                           {"user_id": current_user.id, "status": status, "event": event, "limit": limit})
    return [msgspec.convert(r, DeliveryOut) for r in rows]


@post("/deliveries/{delivery_id:uuid}/redeliver", status_code=HTTP_202_ACCEPTED)
async def redeliver(conn: NamedDependency[AsyncConnection], current_user: NamedDependency[User],
                    delivery_id: FromPath[uuid.UUID]) -> DeliveryOut:
    """Send an event again (a new delivery of the same event id) to the same URL."""
    row = await fetch_one(conn, "webhook_redeliver", {"id": delivery_id, "user_id": current_user.id})
    if row is None:
        raise APIError("not_found", "delivery not found")
    await conn.execute(QUERIES["webhook_wake"], {"channel": CHANNEL})
    return msgspec.convert(row, DeliveryOut)


router = Router(path="/webhooks", route_handlers=[
    create_endpoint, list_endpoints, update_endpoint, delete_endpoint, get_secret, rotate_secret,
    list_deliveries, redeliver,
], tags=["webhooks"])
