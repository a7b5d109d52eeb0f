"""Passwords (argon2id) and JWT access tokens; ``current_user`` resolves the caller of a request."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
import uuid

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
import msgspec
from litestar import Request
from litestar.di import NamedDependency
from psycopg.rows import dict_row

from iam_cluster.api.errors import APIError
from iam_cluster.db.pool import convert_row, struct_row
from iam_cluster.db.queries import QUERIES
from iam_cluster.db.rows import User
from iam_cluster.observability import context
from iam_cluster.settings import AuthSettings, Settings
from iam_cluster.web.session import session_user, uses_session

_HASHER = PasswordHasher()  # argon2id with the library's current recommended parameters


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


#: zxcvbn's score (0-4) a new password must reach: 3 is "safely unguessable" by an online attack.
MIN_PASSWORD_SCORE = 3
#: The longest password zxcvbn scores (it raises past its default of 72 characters).
ZXCVBN_MAX_LENGTH = 100


def check_password(password: str, *user_inputs: str | None) -> None:
    """Refuse a guessable password (common, short, a keyboard walk, the email itself...).

    Raises:
        APIError: ``weak_password`` (422) naming the field, with zxcvbn's advice.
    """
    from zxcvbn import zxcvbn

    # zxcvbn refuses (ValueError) more than 72 characters; what it scores of a longer one is a floor
    verdict = zxcvbn(password[:ZXCVBN_MAX_LENGTH], user_inputs=[u for u in user_inputs if u],
                     max_length=ZXCVBN_MAX_LENGTH)
    if verdict["score"] < MIN_PASSWORD_SCORE:
        advice = " ".join(filter(None, [verdict["feedback"].get("warning"), *verdict["feedback"].get("suggestions", [])]))
        error = APIError("weak_password", f"this password is too easy to guess. {advice}".strip())
        error.field = "password"
        raise error


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


#: Every API key starts with this, then 8 visible characters (its ``prefix``), then the secret.
API_KEY_START = "iam_"
#: What an API key may be allowed to do; a signed-in user (access token) may do everything.
SCOPES = ("transcribe", "read", "billing")
#: A route's ``opt["scope"]`` naming this accepts access tokens only (never API keys).
SESSION_ONLY = "session"


class Principal(msgspec.Struct, frozen=True):
    """Who is calling: the user, and what the credential allows (None: everything)."""

    user: User
    scopes: frozenset[str] | None = None
    api_key_id: uuid.UUID | None = None


def new_api_key() -> tuple[str, str, bytes]:
    """A fresh key: ``(key shown once, visible prefix, SHA-256 stored)``.

    The secret part has 256 bits of entropy, so a fast hash is the right one (no stretching).
    """
    prefix = API_KEY_START + secrets.token_hex(4)
    key = f"{prefix}_{secrets.token_urlsafe(32)}"
    return key, prefix, hash_api_key(key)


def hash_api_key(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def bearer_token(request: Request) -> str:
    """The ``Authorization: Bearer`` credential, or 401."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise APIError("unauthorized", "missing bearer token", {"WWW-Authenticate": "Bearer"})
    return token.strip()


async def authenticate(token: str, pool, auth: AuthSettings) -> Principal:
    """The principal a bearer credential (an access token or an API key) stands for.

    Tokens are checked before a database connection is taken; the lookup holds one only briefly.

    Raises:
        APIError: ``invalid_token`` or ``unauthorized`` (401).
    """
    if token.startswith(API_KEY_START):
        return await _api_key_principal(token, pool)
    claims = decode_access_token(token, auth)
    try:
        user_id = uuid.UUID(claims["sub"])
    except ValueError as exc:
        raise APIError("invalid_token", "invalid subject") from exc
    async with pool.connection() as conn, conn.cursor(row_factory=struct_row(User)) as cur:
        await cur.execute(QUERIES["get_user_by_id"], {"id": user_id})
        user = await cur.fetchone()
    if user is None or not user.is_active:
        raise APIError("unauthorized", "user not found or inactive", {"WWW-Authenticate": "Bearer"})
    return Principal(user)


async def _api_key_principal(key: str, pool) -> Principal:
    refused = APIError("invalid_token", "invalid API key", {"WWW-Authenticate": "Bearer"})
    prefix = key[: len(API_KEY_START) + 8]
    async with pool.connection() as conn:
        async with conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(QUERIES["api_key_for_auth"], {"prefix": prefix})
            row = await cur.fetchone()
        if row is None or not hmac.compare_digest(bytes(row["key_hash"]), hash_api_key(key)):
            raise refused
        if row["revoked_at"] is not None or not row["is_active"]:
            raise refused
        if row["stale"]:
            await conn.execute(QUERIES["api_key_touch"], {"id": row["key_id"]})
            await conn.commit()
    user = convert_row(row, User)
    return Principal(user, frozenset(row["scopes"]), row["key_id"])


def required_scope(request: Request) -> str:
    """What a route asks of an API key: its ``opt["scope"]``; else ``read`` to look and
    ``opt["write_scope"]`` (default ``transcribe``) to act."""
    opt = request.route_handler.opt
    if opt.get("scope"):
        return opt["scope"]
    return "read" if request.method in ("GET", "HEAD") else opt.get("write_scope", "transcribe")


async def provide_current_user(request: Request, settings: NamedDependency[Settings]) -> User:
    """The active user behind the request's bearer credential (or web session), allowed what the route asks.

    Raises:
        APIError: 401 without a valid credential; 403 when an API key lacks the route's scope.
    """
    if uses_session(request):  # the web app's cookie session (CSRF-checked by web/protect.py)
        principal = Principal(await session_user(request, request.app.state.pool))
    else:
        principal = await authenticate(bearer_token(request), request.app.state.pool, settings.auth)
    needed = required_scope(request)
    if principal.scopes is not None and needed not in principal.scopes:
        what = "an access token (API keys cannot)" if needed == SESSION_ONLY else f"the {needed!r} scope"
        raise APIError("forbidden", f"this API key cannot do that: it needs {what}")
    request.state.user_id = principal.user.id  # the per-user rate limit reads it
    context.update(user_id=str(principal.user.id))  # on every log line of this request
    request.state.principal = principal
    return principal.user
