"""Who and what a log line is about (``request_id``, ``user_id``, ``job_id``), carried API → queue → worker → Serve.

One ``ContextVar`` holds a dict per request or job. ``scope()`` opens a fresh dict for a block;
``update()`` adds fields to the dict in force *in place*, so a field bound in a child task (Litestar
resolves dependencies in task groups) or a worker thread is seen by the whole request. Log records,
Sentry events and outgoing HTTP headers all read it.
"""

from __future__ import annotations

import contextvars
import re
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

_CONTEXT: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("iam_log_context", default=None)

#: Context fields sent along with calls to other services, and the HTTP headers that carry them.
HEADERS = {"request_id": "X-Request-ID", "job_id": "X-Job-ID", "user_id": "X-User-ID"}
#: What an incoming id may look like (anything else is replaced, so logs cannot be forged or bloated).
_VALID_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def current() -> dict[str, Any]:
    """The fields bound now (a copy); empty outside any scope."""
    ctx = _CONTEXT.get()
    return dict(ctx) if ctx else {}


def get(name: str) -> Any:
    """One bound field, or None."""
    ctx = _CONTEXT.get()
    return ctx.get(name) if ctx else None


@contextmanager
def scope(**fields: Any) -> Iterator[dict[str, Any]]:
    """Binds ``fields`` (on top of those in force) for the block; None values are left out."""
    ctx = {**(_CONTEXT.get() or {}), **{k: v for k, v in fields.items() if v is not None}}
    token = _CONTEXT.set(ctx)
    try:
        yield ctx
    finally:
        _CONTEXT.reset(token)


def update(**fields: Any) -> None:
    """Adds ``fields`` to the scope in force, visible to every task and thread sharing it.

    Outside any scope it opens one for the rest of the current context.
    """
    ctx = _CONTEXT.get()
    values = {k: v for k, v in fields.items() if v is not None}
    if ctx is None:
        _CONTEXT.set(values)
    else:
        ctx.update(values)


def new_request_id() -> str:
    return uuid.uuid4().hex


def valid_id(value: str | bytes | None) -> str | None:
    """``value`` when it is a plausible id (an incoming header), else None."""
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    return value if value and _VALID_ID.match(value) else None


def headers() -> dict[str, str]:
    """HTTP headers carrying the bound ids to another service (the worker's calls to Serve)."""
    ctx = _CONTEXT.get() or {}
    return {header: str(ctx[name]) for name, header in HEADERS.items() if ctx.get(name) is not None}


def from_headers(incoming: Mapping[str, str]) -> dict[str, str]:
    """The ids found in ``incoming`` headers (case-insensitive lookup), validated."""
    found = {}
    for name, header in HEADERS.items():
        value = valid_id(incoming.get(header) or incoming.get(header.lower()))
        if value is not None:
            found[name] = value
    return found
