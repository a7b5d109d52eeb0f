"""Fixed-window rate limits in Redis: per IP, per user or API key, and a tighter per-IP budget for
login/register. The client's IP is the socket's peer unless a trusted proxy (``TRUSTED_PROXIES``)
forwarded the request: uvicorn rewrites it only for those."""

from __future__ import annotations

import json
import logging

from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Receive, Scope, Send

from iam_cluster.api.errors import APIError
from iam_cluster.api.limits import BREAK_SECONDS, LocalCounters, RedisDown, hit
from iam_cluster.api.security import API_KEY_START, decode_access_token
from iam_cluster.observability.asgi import RATE_LIMIT_REJECTIONS
from iam_cluster.settings import Settings

log = logging.getLogger("iam_cluster.api.ratelimit")

#: Limits are requests per window (the settings say per minute).
WINDOW_S = 60
#: Paths where password guessing happens: they get ``auth_rate_limit_per_ip`` on top of the IP budget.
AUTH_PATHS = frozenset({"/api/v1/auth/login", "/api/v1/auth/register"})


def _client_ip(scope: Scope) -> str:
    client = scope.get("client")
    return client[0] if client else "unknown"


def _user_id(scope: Scope, settings: Settings) -> str | None:
    """Whose budget a request spends: the ``sub`` of a valid access token (signature and expiry only,
    no database round trip), or an API key's visible prefix (checked by the route)."""
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            token = token.strip()
            if scheme.lower() != "bearer" or not token:
                return None
            if token.startswith(API_KEY_START):
                return "key-" + token[: len(API_KEY_START) + 8]
            try:
                return str(decode_access_token(token, settings.auth)["sub"])
            except APIError:
                return None  # the route answers 401; the IP budget still counts it
    return None


def limits_for(scope: Scope, settings: Settings) -> list[tuple[str, int]]:
    """``(counter name, limit)`` pairs that apply to this request."""
    ip = _client_ip(scope)
    limits = [(f"ip:{ip}", settings.api.rate_limit_per_ip)]
    if scope["path"] in AUTH_PATHS:
        limits.append((f"auth:{ip}", settings.api.auth_rate_limit_per_ip))
    user = _user_id(scope, settings)
    if user is not None:
        limits.append((f"user:{user}", settings.api.rate_limit_per_user))
    return limits


class RateLimitMiddleware(ASGIMiddleware):
    """429 with ``Retry-After`` once a counter passes its limit.

    Without Redis (down, or hanging: see ``limits.RedisGate``) sign-in and registration answer 503,
    since their budgets are what stops password guessing; every other route goes on unlimited.
    """

    scopes = (ScopeType.HTTP,)

    def __init__(self) -> None:
        self.local = LocalCounters()

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        # Probes and docs are not limited; Stripe's webhook is authenticated by its signature.
        if not scope["path"].startswith(("/api/", "/v1/")) or scope["path"] == "/api/v1/billing/webhook":
            await next_app(scope, receive, send)
            return
        state = scope["app"].state
        settings: Settings = state.settings
        limits = limits_for(scope, settings)
        # Counted here too, always: should Redis fail mid-window, this process's budgets already
        # hold what it admitted in the window (a fresh count would admit the limit a second time).
        local_retry_after = self.local.hit(limits, WINDOW_S)
        try:
            retry_after = await state.redis_gate.call(
                lambda: hit(state.redis, settings.redis.key_prefix, limits, WINDOW_S))
        except RedisDown:
            if scope["path"] in AUTH_PATHS:
                await _refuse(send, 503, "unavailable", "signing in is unavailable right now; retry shortly",
                              int(BREAK_SECONDS))
                return
            # The documented degraded mode: this process's own counts decide until Redis is back.
            retry_after = local_retry_after
        if retry_after is None:
            await next_app(scope, receive, send)
            return
        RATE_LIMIT_REJECTIONS.inc()
        await _refuse(send, 429, "rate_limited", "too many requests; retry later", retry_after)


async def _refuse(send: Send, status: int, code: str, message: str, retry_after: int) -> None:
    payload = {"error": {"code": code, "message": message, "status": status, "retry_after": retry_after}}
    content = json.dumps(payload).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(content)).encode()),
        (b"retry-after", str(retry_after).encode()),
    ]})
    await send({"type": "http.response.body", "body": content})
