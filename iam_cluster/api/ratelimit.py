"""Fixed-window rate limits in Redis: per IP, per user, and a tighter per-IP budget for login/register."""

from __future__ import annotations

import asyncio
import json
import logging
import time

from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Receive, Scope, Send

from iam_cluster.api.errors import APIError
from iam_cluster.api.security import decode_access_token
from iam_cluster.observability.asgi import RATE_LIMIT_REJECTIONS
from iam_cluster.settings import Settings

log = logging.getLogger("iam_cluster.api.ratelimit")

#: Limits are requests per window (the settings say per minute).
WINDOW_S = 60
#: Paths where password guessing happens: they get ``auth_rate_limit_per_ip`` on top of the IP budget.
AUTH_PATHS = frozenset({"/api/v1/auth/login", "/api/v1/auth/register"})
#: A slow Redis must not stall the API: past this the request goes through unlimited.
REDIS_TIMEOUT_S = 0.5


def _client_ip(scope: Scope) -> str:
    client = scope.get("client")
    return client[0] if client else "unknown"


def _user_id(scope: Scope, settings: Settings) -> str | None:
    """The ``sub`` of a valid bearer access token (signature and expiry only: no database round trip)."""
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                return None
            try:
                return str(decode_access_token(token.strip(), settings.auth)["sub"])
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


async def hit(redis, prefix: str, limits: list[tuple[str, int]], now: float | None = None
              ) -> tuple[int, str] | None:
    """Count one request against every counter.

    Returns:
        ``(seconds to wait, kind of the limit passed: ip, auth or user)`` when a counter is over
        its limit, else None.
    """
    now = time.time() if now is None else now
    window = int(now // WINDOW_S)
    keys = [f"{prefix}rl:{name}:{window}" for name, _ in limits]
    pipe = redis.pipeline(transaction=True)
    for key in keys:
        pipe.incr(key)
        pipe.expire(key, WINDOW_S + 1)
    counts = (await pipe.execute())[::2]
    for count, (name, limit) in zip(counts, limits):
        if count > limit:
            return max(1, int((window + 1) * WINDOW_S - now + 0.999)), name.partition(":")[0]
    return None


class RateLimitMiddleware(ASGIMiddleware):
    """429 with ``Retry-After`` once a counter passes its limit; Redis trouble is logged and let through."""

    scopes = (ScopeType.HTTP,)

    def __init__(self) -> None:
        self._last_warning = 0.0

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        # Probes and docs are not limited; Stripe's webhook is authenticated by its signature.
        if not scope["path"].startswith("/api/") or scope["path"] == "/api/v1/billing/webhook":
            await next_app(scope, receive, send)
            return
        state = scope["app"].state
        settings: Settings = state.settings
        try:
            async with asyncio.timeout(REDIS_TIMEOUT_S):
                refused = await hit(state.redis, settings.redis.key_prefix, limits_for(scope, settings))
        except Exception as exc:  # noqa: BLE001 - counters are rebuildable; availability comes first
            refused = None
            if time.monotonic() - self._last_warning > 30:
                self._last_warning = time.monotonic()
                log.warning("rate limiting skipped: Redis unavailable (%s)", exc)
        if refused is None:
            await next_app(scope, receive, send)
            return
        retry_after, limit = refused
        RATE_LIMIT_REJECTIONS.labels(limit=limit).inc()
        payload = {"error": {"code": "rate_limited", "message": "too many requests; retry later", "status": 429,
                             "retry_after": retry_after}}
        content = json.dumps(payload).encode()
        await send({"type": "http.response.start", "status": 429, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(content)).encode()),
            (b"retry-after", str(retry_after).encode()),
        ]})
        await send({"type": "http.response.body", "body": content})
