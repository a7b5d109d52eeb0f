"""Sentry error reporting, on when ``SENTRY_DSN`` is set: scrubbed events tagged with the job's ids."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable
from typing import Any

from iam_cluster import __version__
from iam_cluster.observability import context
from iam_cluster.observability.redact import MASK, redact
from iam_cluster.settings import ObservabilitySettings

#: Request headers dropped from events (credentials, signatures, session cookies).
DROPPED_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key",
                             "stripe-signature", "idempotency-key"})


def init_sentry(settings: ObservabilitySettings, service: str, integrations: Iterable[Any] = (),
                is_expected: Callable[[BaseException], bool] | None = None) -> bool:
    """Starts the Sentry SDK for this process when ``settings.sentry_dsn`` is set.

    Args:
        settings: DSN, environment, release, traces sample rate.
        service: ``api``, ``worker`` or ``serve``: a tag on every event.
        integrations: Extra integrations (the API passes Litestar's).
        is_expected: Exceptions for which it is true are not reported (client errors, 4xx).

    Returns:
        Whether Sentry was started.
    """
    if not settings.sentry_dsn:
        return False
    import sentry_sdk
    from sentry_sdk.integrations.logging import LoggingIntegration

    sentry_sdk.init(
        dsn=settings.sentry_dsn,
        release=settings.release or f"iam-cluster@{__version__}",
        environment=settings.environment,
        **_collect_no_personal_data(),
        max_request_body_size="never",  # uploads are audio; JSON bodies may hold passwords
        traces_sample_rate=settings.sentry_traces_sample_rate or None,
        before_send=functools.partial(scrub_event, is_expected=is_expected),
        before_breadcrumb=scrub_breadcrumb,
        integrations=[LoggingIntegration(level=logging.INFO, event_level=logging.ERROR), *integrations],
    )
    sentry_sdk.set_tag("service", service)
    return True


def _collect_no_personal_data() -> dict:
    """No user identity, bodies or frame variables: ``data_collection`` on SDKs that have it
    (2.75+, where ``send_default_pii`` is deprecated), ``send_default_pii=False`` before."""
    import inspect

    from sentry_sdk.consts import ClientConstructor

    # Frames' locals may hold tokens, passwords or samples: ``stack_frame_variables`` where
    # ``data_collection`` exists, ``include_local_variables`` where it still does (removed in 3.0).
    params = inspect.signature(ClientConstructor.__init__).parameters
    options: dict = (
        {"data_collection": {"user_info": False, "http_bodies": [], "stack_frame_variables": False}}
        if "data_collection" in params else {"send_default_pii": False}
    )
    if "include_local_variables" in params:
        options["include_local_variables"] = False
    return options


def scrub_event(event: dict, hint: dict | None, is_expected: Callable[[BaseException], bool] | None = None
                ) -> dict | None:
    """``before_send``: drops expected errors; strips bodies, credentials and tokens; adds the ids.

    Runs in the thread that captured the event, so the bound context is the failing request's or job's.
    """
    exc_info = (hint or {}).get("exc_info")
    if is_expected is not None and exc_info and exc_info[1] is not None and is_expected(exc_info[1]):
        return None
    request = event.get("request")
    if isinstance(request, dict):
        for key in ("data", "cookies", "env"):
            request.pop(key, None)
        headers = request.get("headers")
        if isinstance(headers, dict):
            request["headers"] = {k: (MASK if k.lower() in DROPPED_HEADERS else v) for k, v in headers.items()}
        if "token" in str(request.get("query_string") or "").lower():  # the WebSocket's ?token=
            request["query_string"] = MASK
    tags = event.setdefault("tags", {})
    for key, value in context.current().items():
        if key in context.HEADERS:
            tags.setdefault(key, str(value))
    return redact(event)


def scrub_breadcrumb(crumb: dict, hint: dict | None) -> dict:
    """``before_breadcrumb``: breadcrumbs (log lines, HTTP calls) get the same masking as events."""
    return redact(crumb)


def close_sentry() -> None:
    """Flushes and stops the SDK (tests; process exit does this by itself)."""
    import sentry_sdk

    client = sentry_sdk.get_client()
    if client.is_active():
        client.close(timeout=2.0)
