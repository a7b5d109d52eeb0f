"""The API's observability: request ids and access lines, Litestar's Prometheus middleware, API metrics."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.plugins.prometheus import PrometheusMiddleware
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import Counter, Gauge

from iam_cluster.observability import context
from iam_cluster.observability.logging import get_logger
from iam_cluster.settings import ObservabilitySettings

log = get_logger("iam_cluster.api.access")

WEBSOCKET_CONNECTIONS = Gauge("iam_api_websocket_connections", "Open WebSocket connections")
WEBSOCKET_CONNECTIONS_OPENED = Counter("iam_api_websocket_connections_opened",
                                       "WebSocket connections accepted and authenticated")
RATE_LIMIT_REJECTIONS = Counter("iam_api_rate_limit_rejections", "Requests refused with 429 by a rate limit")


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


class RouteMetricsMiddleware(PrometheusMiddleware):
    """Litestar's Prometheus middleware (same metrics, labels and semantics) with the children of
    each label set cached, so a request costs a dict lookup and a few updates, not label lookups."""

    _children: ClassVar[dict[tuple, tuple]] = {}

    def _for(self, method: str, path: str, status: int) -> tuple:
        key = (method, path, status)
        children = self._children.get(key)
        if children is None:
            labels = {"method": method, "path": path, "status_code": status, "app_name": self._config.app_name}
            values = list(labels.values())
            children = self._children[key] = (
                self.requests_in_progress(labels).labels(*values), self.request_count(labels).labels(*values),
                self.request_time(labels).labels(*values), self.requests_error_count(labels).labels(*values))
        return children

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method, path = scope["method"], scope.get("path_template") or scope["path"]
        start, done, status = time.perf_counter(), 0.0, 200

        async def timed_send(message: Message) -> None:
            nonlocal done, status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                done = time.perf_counter()
            await send(message)

        in_progress = self._for(method, path, 200)[0]  # labelled as Litestar's: status 200 until the end
        in_progress.inc()
        try:
            await self.app(scope, receive, timed_send)
        except BaseException:
            status = 500
            raise
        finally:
            in_progress.dec()
            _, count, latency, errors = self._for(method, path, status)
            count.inc()
            latency.observe((done or time.perf_counter()) - start)
            if status >= 500:
                errors.inc()


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

        config = PrometheusConfig(app_name="iam-api", prefix="iam_api", group_path=True, exclude=["^/metrics$"],
                                  scopes=[ScopeType.HTTP], middleware_class=RouteMetricsMiddleware)
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
