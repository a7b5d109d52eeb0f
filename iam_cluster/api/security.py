"""Passwords (argon2id) and JWT access tokens; ``current_user`` resolves the caller of a request."""

from __future__ import annotations

import datetime as dt
import uuid

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from litestar import Request
from litestar.di import NamedDependency
from psycopg import AsyncConnection

from iam_cluster.api.errors import APIError
from iam_cluster.db.pool import struct_row
from iam_cluster.db.queries import QUERIES
from iam_cluster.db.rows import User
from iam_cluster.observability import context
from iam_cluster.settings import AuthSettings, Settings

_HASHER = PasswordHasher()  # argon2id with the library's current recommended parameters


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _HASHER.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def create_access_token(user_id: uuid.UUID, email: str, auth: AuthSettings, now: dt.datetime | None = None) -> str:
    """A short-lived access token with claims sub, email, type, iat, exp (and a unique jti)."""
    now = now or dt.datetime.now(dt.UTC)
    claims = {
        "sub": str(user_id), "email": email, "type": "access", "jti": uuid.uuid4().hex,
        "iat": int(now.timestamp()),
        "exp": int((now + dt.timedelta(minutes=auth.access_token_expire_minutes)).timestamp()),
    }
    return jwt.encode(claims, auth.jwt_secret_key, algorithm=auth.jwt_algorithm)


def decode_access_token(token: str, auth: AuthSettings) -> dict:
    """The claims of a valid, unexpired access token.

    Raises:
        APIError: ``invalid_token`` (401) for anything else, refresh tokens included.
    """
    try:
        claims = jwt.decode(token, auth.jwt_secret_key, algorithms=[auth.jwt_algorithm],
                            options={"require": ["sub", "exp", "iat", "type"]})
    except jwt.PyJWTError as exc:
        raise APIError("invalid_token", f"invalid access token: {exc}",
                       {"WWW-Authenticate": "Bearer"}) from exc
    if claims.get("type") != "access":
        raise APIError("invalid_token", "not an access token", {"WWW-Authenticate": "Bearer"})
    return claims


async def provide_current_user(request: Request, conn: NamedDependency[AsyncConnection], settings: NamedDependency[Settings]) -> User:
    """The active user named by the request's ``Authorization: Bearer`` access token."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise APIError("unauthorized", "missing bearer token", {"WWW-Authenticate": "Bearer"})
    claims = decode_access_token(token.strip(), settings.auth)
    try:
        user_id = uuid.UUID(claims["sub"])
    except ValueError as exc:
        raise APIError("invalid_token", "invalid subject") from exc
    async with conn.cursor(row_factory=struct_row(User)) as cur:
        await cur.execute(QUERIES["get_user_by_id"], {"id": user_id})
        user = await cur.fetchone()
    if user is None or not user.is_active:
        raise APIError("unauthorized", "user not found or inactive", {"WWW-Authenticate": "Bearer"})
    request.state.user_id = user.id  # the per-user rate limit reads it
    context.update(user_id=str(user.id))  # on every log line of this request
    return user
