"""The web app's cookie session: a random token in an HttpOnly cookie, only its hash in PostgreSQL.

Scripts never see a credential: the browser sends the cookie, pages and the REST API accept it
(``api/security.py`` falls back to it when a request has no ``Authorization`` header), and every
unsafe request made with it must carry the CSRF token (``web/protect.py``).
"""

from __future__ import annotations

import hashlib
import secrets
from urllib.parse import urlsplit

from litestar.connection import ASGIConnection
from litestar.datastructures import Cookie
from psycopg import AsyncConnection

from iam_cluster.api.errors import APIError
from iam_cluster.db.pool import struct_row
from iam_cluster.db.queries import QUERIES
from iam_cluster.db.rows import User
from iam_cluster.settings import Settings

#: The session cookie's name.
SESSION_COOKIE = "iam_session"


def hash_token(token: str) -> str:
    """Only this digest is stored: a leaked table cannot be replayed."""
    return hashlib.sha256(token.encode()).hexdigest()


def uses_session(connection: ASGIConnection) -> bool:
    """Whether this request authenticates with the session cookie (it has no Authorization header)."""
    return SESSION_COOKIE in connection.cookies and "authorization" not in connection.headers


def session_cookie(token: str, settings: Settings) -> Cookie:
    """The cookie that carries ``token``: HttpOnly, SameSite=Lax, Secure unless turned off."""
    return Cookie(key=SESSION_COOKIE, value=token, path="/", httponly=True, samesite="lax",
                  secure=settings.web.cookie_secure, max_age=settings.web.session_days * 86400)


def cleared_cookie(settings: Settings) -> Cookie:
    return Cookie(key=SESSION_COOKIE, value="", path="/", httponly=True, samesite="lax",
                  secure=settings.web.cookie_secure, max_age=0)


async def start_session(conn: AsyncConnection, user: User, settings: Settings, user_agent: str | None) -> str:
    """A new session for ``user``; returns the token for the cookie (256 random bits)."""
    token = secrets.token_urlsafe(32)
    await conn.execute(QUERIES["web_session_purge_expired"], {"user_id": user.id})
    await conn.execute(QUERIES["web_session_create"], {
        "user_id": user.id, "token_hash": hash_token(token), "user_agent": (user_agent or "")[:300] or None,
        "days": settings.web.session_days})
    return token


async def end_session(conn: AsyncConnection, token: str | None) -> None:
    if token:
        await conn.execute(QUERIES["web_session_delete"], {"token_hash": hash_token(token)})


async def user_of(conn: AsyncConnection, token: str | None) -> User | None:
    """The active user holding the session ``token``, if it is valid and unexpired."""
    if not token or len(token) > 100:
        return None
    async with conn.cursor(row_factory=struct_row(User)) as cur:
        await cur.execute(QUERIES["web_session_user"], {"token_hash": hash_token(token)})
        return await cur.fetchone()


async def session_user(request: ASGIConnection, pool) -> User:
    """The caller of a cookie-authenticated API request (the hook in ``api/security.py``); a pooled
    connection is held only for the lookup.

    Raises:
        APIError: ``unauthorized`` (401) when the session is unknown, expired or its user inactive.
    """
    async with pool.connection() as conn:
        user = await user_of(conn, request.cookies.get(SESSION_COOKIE))
    if user is None:
        raise APIError("unauthorized", "session expired or signed out: sign in again")
    return user


def same_origin(connection: ASGIConnection) -> bool:
    """The request's ``Origin`` names this server (a cookie-authenticated WebSocket must come from a page of ours)."""
    origin = connection.headers.get("origin")
    host = connection.headers.get("host")
    return bool(origin and host) and urlsplit(origin).netloc.lower() == host.lower()


async def socket_user_id(connection: ASGIConnection) -> str | None:
    """The user id of a WebSocket opened by one of our pages with the session cookie, else None."""
    if SESSION_COOKIE not in connection.cookies or not same_origin(connection):
        return None
    try:
        user = await session_user(connection, connection.app.state.auth_pool)
    except APIError:
        return None
    return str(user.id)
