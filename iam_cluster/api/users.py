"""The caller's own account (``/users/me``) and user records (own or, for admins, anyone's)."""

from __future__ import annotations

import uuid

import msgspec
from litestar import Router, get, put
from litestar.params import JSONBody, FromPath
from litestar.di import NamedDependency
from psycopg import AsyncConnection

from iam_cluster.api.auth import Email, FullName, UserOut
from iam_cluster.api.errors import APIError
from iam_cluster.api.openapi import errors
from iam_cluster.api.security import SESSION_ONLY
from iam_cluster.db.errors import Conflict, translate_errors
from iam_cluster.db.pool import struct_row
from iam_cluster.db.queries import QUERIES
from iam_cluster.db.rows import User


class UserUpdate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Fields left out (or null) keep their value."""

    full_name: FullName | None = None
    email: Email | None = None


@get("/me")
async def get_me(current_user: NamedDependency[User]) -> UserOut:
    """The caller's own account."""
    return UserOut.of(current_user)


@put("/me", responses=errors({409: "Another account holds this email."}))
async def update_me(data: JSONBody[UserUpdate], current_user: NamedDependency[User], conn: NamedDependency[AsyncConnection]) -> UserOut:
    """Change the caller's name or email; an email another account holds (in any case) is a 409."""
    try:
        with translate_errors():
            async with conn.cursor(row_factory=struct_row(User)) as cur:
                await cur.execute(QUERIES["update_user_profile"],
                                  {"id": current_user.id, "full_name": data.full_name, "email": data.email})
                user = await cur.fetchone()
    except Conflict as exc:
        raise APIError("conflict", "email already registered") from exc
    return UserOut.of(user)


@get("/{user_id:uuid}")
async def get_user(user_id: FromPath[uuid.UUID], current_user: NamedDependency[User], conn: NamedDependency[AsyncConnection]) -> UserOut:
    """A user's record: the caller's own, or anyone's for an admin; others read as 404 (no existence leak)."""
    if user_id != current_user.id and not current_user.is_admin:
        raise APIError("not_found", "user not found")
    async with conn.cursor(row_factory=struct_row(User)) as cur:
        await cur.execute(QUERIES["get_user_by_id"], {"id": user_id})
        user = await cur.fetchone()
    if user is None:
        raise APIError("not_found", "user not found")
    return UserOut.of(user)


router = Router(path="/users", route_handlers=[get_me, update_me, get_user], tags=["users"],
                opt={"write_scope": SESSION_ONLY})
