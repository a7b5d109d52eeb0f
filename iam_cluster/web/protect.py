"""CSRF checks and security headers for the web app and for cookie-authenticated API calls.

Litestar's ``CSRFMiddleware`` (a signed double-submit token: an HttpOnly cookie, and the same token
in a form field or the ``X-CSRFToken`` header) guards every unsafe request that a browser could be
tricked into sending with our cookies: every page route, and any API request authenticated by the
session cookie. API clients that send ``Authorization`` carry no ambient credential and are not
checked, so the machine API is unchanged.
"""

from __future__ import annotations

import hashlib
import hmac

from litestar.config.csrf import CSRFConfig
from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.middleware.csrf import CSRFMiddleware
from litestar.datastructures import MutableScopeHeaders
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from iam_cluster.settings import Settings
from iam_cluster.web.session import SESSION_COOKIE

#: Paths of the machine API and the probes: bearer-authenticated or public, no CSRF unless a cookie is used.
API_PREFIXES = ("/api/", "/v1/", "/health", "/ready", "/docs", "/schema")
CSRF_HEADER = "x-csrftoken"
CSRF_COOKIE = "iam_csrf"
#: No inline script or style anywhere: scripts and styles come from our own static files.
CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'self'", "script-src 'self'", "style-src 'self'", "img-src 'self' data:",
    "media-src 'self'", "connect-src 'self'", "font-src 'self'", "object-src 'none'", "base-uri 'none'",
    "form-action 'self'", "frame-ancestors 'none'",
])
PAGE_HEADERS = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
]


def csrf_config(settings: Settings) -> CSRFConfig:
    """The CSRF cookie (HttpOnly: pages hand the token to their scripts in a meta tag)."""
    secret = hmac.new(settings.auth.require_secret().encode(), b"iam-web-csrf", hashlib.sha256).hexdigest()
    return CSRFConfig(secret=secret, cookie_name=CSRF_COOKIE, header_name=CSRF_HEADER, cookie_httponly=True,
                      cookie_secure=settings.web.cookie_secure, cookie_samesite="lax")


def is_api(path: str) -> bool:
    return path.startswith(API_PREFIXES) or path in {"/health", "/ready"}


def needs_csrf(scope: Scope) -> bool:
    """Page routes always; API routes when the session cookie (and no Authorization header) authenticates."""
    if not is_api(scope["path"]):
        return True
    names = {name for name, _ in scope.get("headers", ())}
    if b"authorization" in names:
        return False
    cookies = b"; ".join(value for name, value in scope.get("headers", ()) if name == b"cookie")
    return f"{SESSION_COOKIE}=".encode() in cookies


class WebProtection(ASGIMiddleware):
    """Runs Litestar's CSRF middleware where ``needs_csrf`` says, and adds security headers to pages."""

    scopes = (ScopeType.HTTP,)

    def __init__(self, settings: Settings) -> None:
        self.config = csrf_config(settings)

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        if not is_api(scope["path"]):
            send = _with_headers(send)
        if needs_csrf(scope):
            await CSRFMiddleware(next_app, self.config)(scope, receive, send)
        else:
            await next_app(scope, receive, send)


def _with_headers(send: Send) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = MutableScopeHeaders.from_message(message)
            for name, value in PAGE_HEADERS:
                if name.decode() not in headers:
                    headers.add(name.decode(), value.decode())
        await send(message)

    return wrapped
