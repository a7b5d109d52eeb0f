"""The API's observability: request ids and access lines, Litestar's Prometheus middleware, API metrics."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import Counter, Gauge

from iam_cluster.observability import context
from iam_cluster.observability.logging import get_logger
from iam_cluster.settings import ObservabilitySettings

log = get_logger("iam_cluster.api.access")

WEBSOCKET_CONNECTIONS = Gauge("iam_api_websocket_connections", "Open WebSocket connections")
WEBSOCKET_CONNECTIONS_OPENED = Counter("iam_api_websocket_connections_opened",
                                       "WebSocket connections accepted and authenticated")
RATE_LIMIT_REJECTIONS = Counter("iam_api_rate_limit_rejections", "Requests refused with 429, by the limit hit",
                                ["limit"])


class RequestContextMiddleware(ASGIMiddleware):
    """Binds a request id (the caller's ``X-Request-ID`` when valid, else a new one) for the request,
    echoes it in the response, and writes one access line per HTTP request."""

    scopes = (ScopeType.HTTP, ScopeType.WEBSOCKET)

    def __init__(self, access_log: bool = True) -> None:
        self.access_log = access_log

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        incoming = next((v for k, v in scope.get("headers", ()) if k == b"x-request-id"), None)
        request_id = context.valid_id(incoming) or context.new_request_id()
        header = (b"x-request-id", request_id.encode())
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", ()), header]}
            await send(message)

        with context.scope(request_id=request_id):
            if scope["type"] != ScopeType.HTTP or not self.access_log:
                await next_app(scope, receive, send_with_id if scope["type"] == ScopeType.HTTP else send)
                return
            start = time.perf_counter()
            try:
                await next_app(scope, receive, send_with_id)
            finally:
                log.info("request", method=scope["method"], path=scope["path"],
                         route=scope.get("path_template"), status=status,
                         duration_ms=round(1000 * (time.perf_counter() - start), 2))


@dataclass
class ApiObservability:
    """What ``create_app`` adds: middleware (outermost first) and route handlers (``/metrics``)."""

    middleware: list[Any] = field(default_factory=list)
    route_handlers: list[Any] = field(default_factory=list)


def api_observability(settings: ObservabilitySettings) -> ApiObservability:
    """Request ids and access lines always; with ``metrics_enabled``, requests by route template,
    method and status plus a latency histogram (Litestar's Prometheus integration) on ``/metrics``."""
    parts = ApiObservability(middleware=[RequestContextMiddleware(access_log=settings.access_log)])
    if settings.metrics_enabled:
        from litestar.plugins.prometheus import PrometheusConfig, PrometheusController

        class MetricsController(PrometheusController):
            path = "/metrics"
            include_in_schema = False

        config = PrometheusConfig(app_name="iam-api", prefix="iam_api", group_path=True,
                                  exclude=["^/metrics$"], scopes=[ScopeType.HTTP])
        parts.middleware.append(config.middleware)
        parts.route_handlers.append(MetricsController)
    return parts


def setup_api_process(settings: ObservabilitySettings, is_expected: Callable[[BaseException], bool]) -> None:
    """Logging and Sentry (with its Litestar integration) for an API process."""
    from iam_cluster.observability import setup

    integrations = []
    if settings.sentry_dsn:
        from sentry_sdk.integrations.litestar import LitestarIntegration
        from sentry_sdk.integrations.logging import ignore_logger

        integrations.append(LitestarIntegration())
        # The integration reports each failed request's exception; the error handlers' log line
        # about the same exception (logger "iam_cluster.api") would be a second event.
        ignore_logger("iam_cluster.api")
    setup(settings, "api", integrations, is_expected)
