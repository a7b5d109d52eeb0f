"""API keys for machine clients: create (the key is shown once), list, revoke.

Keys are managed with an access token only (an API key cannot mint or revoke keys). A key is sent
as ``Authorization: Bearer iam_...`` wherever an access token is accepted, and by the
OpenAI-compatible routes; its scopes (transcribe, read, billing) bound what it may do.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Literal

import msgspec
from litestar import Router, delete, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_201_CREATED
from psycopg import AsyncConnection

from iam_cluster.api.errors import APIError
from iam_cluster.api.security import SESSION_ONLY, new_api_key
from iam_cluster.db.queries import fetch_all, fetch_one
from iam_cluster.db.rows import User

Scope = Literal["transcribe", "read", "billing"]


class ApiKeyCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=100, pattern=r"\S")]
    scopes: Annotated[tuple[Scope, ...], msgspec.Meta(min_length=1, max_length=3)] = ("transcribe", "read")


class ApiKeyOut(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    name: str
    #: The visible start of the key, to tell keys apart.
    prefix: str
    scopes: list[str]
    created_at: dt.datetime
    last_used_at: dt.datetime | None = None
    revoked_at: dt.datetime | None = None


class ApiKeyCreated(ApiKeyOut, kw_only=True):
    #: The whole key: shown this once, never stored, never shown again.
    key: str


@post("/", status_code=HTTP_201_CREATED)
async def create_api_key(conn: NamedDependency[AsyncConnection], current_user: NamedDependency[User],
                         data: JSONBody[ApiKeyCreate]) -> ApiKeyCreated:
    """A new API key; its secret is in this answer only."""
    key, prefix, digest = new_api_key()
    row = await fetch_one(conn, "api_key_create", {"user_id": current_user.id, "name": data.name.strip(),
                                                   "prefix": prefix, "key_hash": digest,
                                                   "scopes": sorted(set(data.scopes))})
    return ApiKeyCreated(**row, key=key)


@get("/")
async def list_api_keys(conn: NamedDependency[AsyncConnection], current_user: NamedDependency[User]) -> list[ApiKeyOut]:
    """The caller's keys (revoked ones included, marked), newest first."""
    return [ApiKeyOut(**row) for row in await fetch_all(conn, "api_key_list", {"user_id": current_user.id})]


@delete("/{key_id:uuid}", status_code=200)
async def revoke_api_key(conn: NamedDependency[AsyncConnection], current_user: NamedDependency[User],
                         key_id: FromPath[uuid.UUID]) -> ApiKeyOut:
    """Revoke a key at once; it is refused from the next request on."""
    row = await fetch_one(conn, "api_key_revoke", {"id": key_id, "user_id": current_user.id})
    if row is None:
        raise APIError("not_found", "API key not found")
    return ApiKeyOut(**row)


router = Router(path="/api-keys", route_handlers=[create_api_key, list_api_keys, revoke_api_key],
                tags=["api keys"], opt={"scope": SESSION_ONLY})
