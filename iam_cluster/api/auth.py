"""Accounts: register, login, rotating refresh tokens (with reuse detection) and logout."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import secrets
import uuid
from typing import Annotated

import anyio.to_thread
import msgspec
from litestar import Request, Response, Router, post
from litestar.params import JSONBody
from litestar.di import NamedDependency
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_204_NO_CONTENT
from psycopg import AsyncConnection
from psycopg.rows import dict_row

from iam_cluster.api import limits
from iam_cluster.api.errors import APIError, body
from iam_cluster.api.openapi import errors
from iam_cluster.api.security import check_password, create_access_token, hash_password, verify_password
from iam_cluster.db.errors import Conflict, translate_errors
from iam_cluster.db.pool import struct_row
from iam_cluster.db.queries import QUERIES
from iam_cluster.db.rows import User
from iam_cluster.settings import Settings

#: Deliberately loose: one "@", a dot in the domain, no whitespace; delivery is the real check.
Email = Annotated[str, msgspec.Meta(min_length=3, max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]
Password = Annotated[str, msgspec.Meta(min_length=8, max_length=128)]
FullName = Annotated[str, msgspec.Meta(max_length=200)]
RefreshToken = Annotated[str, msgspec.Meta(min_length=1, max_length=512)]

_BAD_CREDENTIALS = "invalid email or password"
_BAD_REFRESH = "invalid refresh token"


class RegisterRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    email: Email
    password: Password
    full_name: FullName | None = None


class LoginRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    email: Annotated[str, msgspec.Meta(max_length=254)]
    password: Annotated[str, msgspec.Meta(max_length=128)]


class RefreshRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    refresh_token: RefreshToken


class UserOut(msgspec.Struct, kw_only=True):
    """A user as the API shows it: never the password hash."""

    id: uuid.UUID
    email: str
    full_name: str | None = None
    is_active: bool = True
    is_admin: bool = False
    tier: str = "free"
    created_at: dt.datetime
    updated_at: dt.datetime

    @classmethod
    def of(cls, user: User) -> UserOut:
        return cls(id=user.id, email=user.email, full_name=user.full_name, is_active=user.is_active,
                   is_admin=user.is_admin, tier=user.tier, created_at=user.created_at, updated_at=user.updated_at)


class TokenPair(msgspec.Struct, kw_only=True):
    access_token: str
    refresh_token: str
    token_type: str = "bearer"
    #: Seconds until the access token expires.
    expires_in: int


def hash_refresh_token(token: str) -> str:
    """Only this digest is stored: a leaked table cannot be replayed (the token has 256 random bits)."""
    return hashlib.sha256(token.encode()).hexdigest()


@functools.cache
def _dummy_hash() -> str:
    # Verified against when the email is unknown so both failures take the same time.
    return hash_password(secrets.token_urlsafe(16))


async def get_user_by_email(conn: AsyncConnection, email: str) -> User | None:
    async with conn.cursor(row_factory=struct_row(User)) as cur:
        await cur.execute(QUERIES["get_user_by_email"], {"email": email})
        return await cur.fetchone()


async def issue_tokens(conn: AsyncConnection, user: User, settings: Settings, family: uuid.UUID | None = None,
                       ) -> tuple[TokenPair, uuid.UUID]:
    """A new access token and a new refresh token (in ``family``, a new one for a login); returns its row id."""
    refresh = secrets.token_urlsafe(32)
    cur = await conn.execute(QUERIES["insert_refresh_token"], {
        "user_id": user.id, "token_hash": hash_refresh_token(refresh), "family": family or uuid.uuid4(),
        "expire_days": settings.auth.refresh_token_expire_days,
    })
    (token_id,) = await cur.fetchone()
    pair = TokenPair(access_token=create_access_token(user.id, user.email, settings.auth), refresh_token=refresh,
                     expires_in=settings.auth.access_token_expire_minutes * 60)
    return pair, token_id


def _refused(message: str = _BAD_REFRESH) -> Response:
    # Returned rather than raised: the request's transaction must commit a family revocation.
    return Response(body("invalid_token", message, 401), status_code=401, headers={"WWW-Authenticate": "Bearer"})


async def create_user(conn: AsyncConnection, data: RegisterRequest) -> User:
    """A new account (the API's register and the web app's sign-up).

    Raises:
        APIError: ``conflict`` (409) when the email is already registered (in any case), ``weak_password``
            (422) for a guessable password.
    """
    check_password(data.password, data.email, data.full_name)
    password_hash = await anyio.to_thread.run_sync(hash_password, data.password)  # argon2 is slow on purpose
    params = {"email": data.email, "password_hash": password_hash, "full_name": data.full_name,
              "is_admin": False, "tier": "free"}
    try:
        with translate_errors():
            async with conn.cursor(row_factory=struct_row(User)) as cur:
                await cur.execute(QUERIES["insert_user"], params)
                return await cur.fetchone()
    except Conflict as exc:
        raise APIError("conflict", "email already registered") from exc


async def check_login(request: Request, conn: AsyncConnection, settings: Settings, email: str, password: str) -> User:
    """The active user with this email and password (the API's login and the web app's sign-in).

    After ``LOGIN_FREE_FAILURES`` failed sign-ins an account must wait before the next try (1, 2,
    4... seconds, up to 15 minutes; 429 with ``Retry-After``), whichever address they come from.

    Raises:
        APIError: ``unauthorized`` (401), the same for an unknown email and a wrong password;
            ``rate_limited`` (429) while the account must wait.
    """
    state = request.app.state
    prefix, free = settings.redis.key_prefix, settings.api.login_free_failures
    await limits.login_wait(state.redis_gate, state.redis, prefix, email, free)
    user = await get_user_by_email(conn, email)
    ok = await anyio.to_thread.run_sync(verify_password, user.password_hash if user else _dummy_hash(), password)
    good = user is not None and ok and user.is_active
    await limits.login_result(state.redis_gate, state.redis, prefix, email, good)
    if not good:
        raise APIError("unauthorized", _BAD_CREDENTIALS, {"WWW-Authenticate": "Bearer"})
    return user


@post("/register", status_code=HTTP_201_CREATED, responses=errors({409: "The email is already registered.", 422: "The password is too easy to guess (`weak_password`)."}))
async def register(data: JSONBody[RegisterRequest], conn: NamedDependency[AsyncConnection]) -> UserOut:
    """Create an account; an email already registered (in any case) is a 409 ``conflict``, a
    guessable password a 422 ``weak_password``."""
    return UserOut.of(await create_user(conn, data))


@post("/login", status_code=HTTP_200_OK, responses=errors({401: "Wrong email or password.", 429: "Too many failed sign-ins: wait `Retry-After` seconds."}))
async def login(request: Request, data: JSONBody[LoginRequest], conn: NamedDependency[AsyncConnection],
                settings: NamedDependency[Settings]) -> TokenPair:
    """Exchange email and password for an access token and a refresh token (see ``check_login``)."""
    user = await check_login(request, conn, settings, data.email, data.password)
    pair, _ = await issue_tokens(conn, user, settings)
    return pair


@post("/refresh", status_code=HTTP_200_OK, responses=errors({401: "Unknown, expired or already used refresh token."}))
async def refresh(data: JSONBody[RefreshRequest], conn: NamedDependency[AsyncConnection], settings: NamedDependency[Settings]) -> Response[TokenPair]:
    """Rotate a refresh token: new access and refresh tokens, the old one revoked.

    A token presented again after rotation or revocation means it leaked: it is refused and its
    whole family (every token descended from the same login) is revoked.
    """
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(QUERIES["get_refresh_token_for_update"], {"token_hash": hash_refresh_token(data.refresh_token)})
        row = await cur.fetchone()
    if row is None or row["expired"]:
        return _refused()
    if row["revoked_at"] is not None:
        await conn.execute(QUERIES["revoke_refresh_family"], {"family": row["family"]})
        return _refused("refresh token already used: its session has been revoked")
    async with conn.cursor(row_factory=struct_row(User)) as cur:
        await cur.execute(QUERIES["get_user_by_id"], {"id": row["user_id"]})
        user = await cur.fetchone()
    if user is None or not user.is_active:
        await conn.execute(QUERIES["revoke_refresh_family"], {"family": row["family"]})
        return _refused()
    pair, new_id = await issue_tokens(conn, user, settings, family=row["family"])
    await conn.execute(QUERIES["rotate_refresh_token"], {"id": row["id"], "replaced_by": new_id})
    return Response(pair, status_code=HTTP_200_OK)


@post("/logout", status_code=HTTP_204_NO_CONTENT)
async def logout(data: JSONBody[RefreshRequest], conn: NamedDependency[AsyncConnection]) -> None:
    """Revoke the given refresh token and every token of its session; unknown tokens are ignored."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(QUERIES["get_refresh_token_for_update"], {"token_hash": hash_refresh_token(data.refresh_token)})
        row = await cur.fetchone()
    if row is not None:
        await conn.execute(QUERIES["revoke_refresh_family"], {"family": row["family"]})


router = Router(path="/auth", route_handlers=[register, login, refresh, logout], tags=["auth"])
