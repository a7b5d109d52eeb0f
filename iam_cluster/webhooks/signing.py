"""Signatures of webhook deliveries: HMAC-SHA256 over ``"{timestamp}.{body}"`` with the account's secret.

Each delivery carries ``IAM-Signature: t=<unix seconds>,v1=<hex digest>``. A receiver verifies it
with ``verify`` (or the same three lines in any language) and refuses old timestamps, which stops
replays of a captured request.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

HEADER = "IAM-Signature"
#: Signatures older (or newer) than this are refused by ``verify``.
TOLERANCE_S = 300


class InvalidSignature(ValueError):
    """The signature header is missing, malformed, stale, or does not match the body."""


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The ``IAM-Signature`` header value for ``body`` sent now (or at ``timestamp``)."""
    t = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


def verify(secret: str, header: str | None, body: bytes, tolerance: float = TOLERANCE_S,
           now: float | None = None) -> int:
    """Check a delivery's signature; returns its timestamp.

    Args:
        secret: the account's signing secret (``GET /api/v1/webhooks/secret``).
        header: the ``IAM-Signature`` header as received.
        body: the raw request body as received (before any JSON parsing).

    Raises:
        InvalidSignature: with the reason.
    """
    if not header:
        raise InvalidSignature(f"no {HEADER} header")
    parts = dict(item.split("=", 1) for item in header.split(",") if "=" in item)
    try:
        t = int(parts["t"])
    except (KeyError, ValueError):
        raise InvalidSignature("no timestamp in the signature header") from None
    if abs((time.time() if now is None else now) - t) > tolerance:
        raise InvalidSignature("the signature's timestamp is too old")
    expected = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, parts.get("v1", "")):
        raise InvalidSignature("the signature does not match the body")
    return t
