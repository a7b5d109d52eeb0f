"""Observability: structured logs, Prometheus metrics and Sentry, shared by the API, the worker and Serve.

Each process calls ``setup(settings, service)`` once at start; the rest is context (``context``)
and metrics its code updates.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from iam_cluster.settings import ObservabilitySettings


def setup(settings: ObservabilitySettings, service: str, integrations: Iterable[Any] = (),
          is_expected: Callable[[BaseException], bool] | None = None) -> None:
    """Structured logging and (when a DSN is set) Sentry for this process.

    Args:
        settings: The observability settings.
        service: ``api``, ``worker`` or ``serve``, written into every log line and Sentry event.
        integrations: Extra Sentry integrations.
        is_expected: Exceptions not worth reporting to Sentry (client errors).
    """
    from iam_cluster.observability.logging import configure_logging
    from iam_cluster.observability.sentry import init_sentry

    configure_logging(settings, service)
    init_sentry(settings, service, integrations, is_expected)


def setup_from_env(service: str) -> None:
    """``setup`` with the environment's settings (Serve replicas, which get no settings object)."""
    from iam_cluster.settings import get_settings

    setup(get_settings().observability, service)
