"""``create_app()``: the Litestar application, its lifespan (pool, Redis, storage) and routers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar, Router
from litestar.config.cors import CORSConfig
from litestar.di import Provide

from iam_cluster.api import (
    api_keys,
    auth,
    batches,
    billing_stripe,
    insights,
    jobs,
    meetings,
    messages,
    notifications,
    openai,
    users,
    webhooks,
    ws,
)
from iam_cluster.api import billing, meeting_media
from iam_cluster.api.deps import provide_conn, provide_redis, provide_settings, provide_storage
from iam_cluster.api.errors import EXCEPTION_HANDLERS
from iam_cluster.api.health import health, ready
from iam_cluster.api.input_guard import InputGuard
from iam_cluster.api.limits import RedisGate
from iam_cluster.api.openapi import asset_handlers, openapi_config
from iam_cluster.api.ratelimit import RateLimitMiddleware
from iam_cluster.api.security import provide_current_user
from iam_cluster.observability.asgi import api_observability
from iam_cluster.settings import Settings, get_settings
from iam_cluster.web import app as web

#: One router per resource module.
V1_ROUTERS = [
    auth.router,
    users.router,
    meetings.router,
    meeting_media.router,
    jobs.router,
    batches.router,
    api_keys.router,
    webhooks.router,
    insights.router,
    billing.router,
    billing_stripe.router,
]
V2_ROUTERS: list = [
    messages.router,
    notifications.router,
    ws.messages_ws,
]


def create_app(settings: Settings | None = None, runner=None) -> Litestar:
    """Build the API for ``settings`` (the environment's by default).

    ``runner`` serves the synchronous ``/v1/audio`` routes; by default ``make_runner(settings)``,
    built on the first such request.

    Raises:
        ConfigError: ``JWT_SECRET_KEY`` is missing or too short, or ``DATABASE_URL`` is missing.
    """
    settings = settings or get_settings()
    settings.auth.require_secret()
    settings.database.require_url()

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        from redis.asyncio import BlockingConnectionPool, Redis

        from iam_cluster.db.pool import make_pool
        from iam_cluster.storage import make_storage

        pool = make_pool(settings.database, name="requests")
        # Credentials are looked up on a pool of their own: the request's ``conn`` may be held already.
        auth_pool = make_pool(settings.database, max_size=settings.database.auth_pool_max, name="credentials")
        await pool.open(wait=False)
        await auth_pool.open(wait=False)
        r = settings.redis
        redis = Redis(connection_pool=BlockingConnectionPool.from_url(
            r.url, max_connections=r.max_connections, timeout=r.timeout_s, socket_timeout=r.timeout_s,
            socket_connect_timeout=r.timeout_s))
        app.state.update(settings=settings, pool=pool, auth_pool=auth_pool, redis=redis, redis_gate=RedisGate(r.timeout_s),
                         storage=make_storage(settings.storage), runner=runner)
        await ws.start_hub(app)  # this process's one Redis subscriber for the WebSocket events
        try:
            yield
        finally:
            await ws.stop_hub(app)
            await pool.close()
            await auth_pool.close()
            await redis.aclose()

    observability = api_observability(settings.observability)  # request ids, access lines, /metrics
    app = Litestar(
        route_handlers=[health, ready, *observability.route_handlers, *asset_handlers(), Router("/api/v1", route_handlers=V1_ROUTERS),
                        Router("/api/v2", route_handlers=V2_ROUTERS), openai.router, *web.handlers(settings)],
        lifespan=[lifespan],
        # request ids, access lines, /metrics; limits; control characters refused; the web app's CSRF checks
        # and page headers (after the guard, which replays the body it read)
        middleware=[*observability.middleware, RateLimitMiddleware(), InputGuard(), web.protection(settings)],
        template_config=web.template_config(),
        dependencies={
            "conn": Provide(provide_conn),
            "settings": Provide(provide_settings, sync_to_thread=False),
            "redis": Provide(provide_redis, sync_to_thread=False),
            "storage": Provide(provide_storage, sync_to_thread=False),
            "current_user": Provide(provide_current_user),
        },
        exception_handlers=EXCEPTION_HANDLERS,
        cors_config=CORSConfig(allow_origins=list(settings.api.cors_origins)) if settings.api.cors_origins else None,
        openapi_config=openapi_config(),
        request_max_body_size=settings.storage.max_upload_bytes,
        logging_config=None,  # Litestar leaves logging alone: observability.logging configures it
    )
    _allow_every_method(app)
    return app


def _allow_every_method(app: Litestar) -> None:
    """``OPTIONS`` answers ``Allow`` with every method of its path.

    Litestar's automatic OPTIONS handler reads the methods of the route object that created it: on a
    path whose handlers are registered one after another (``GET /me``, then ``PUT /me``) that is an
    earlier, partial route, and ``Allow`` leaves methods out. Its route is brought up to date here.
    """
    from litestar.routes import HTTPRoute

    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for handler in route.route_handlers:
            if handler.http_methods == {"OPTIONS"} and handler.fn.__name__ == "options_handler":
                for cell in handler.fn.__closure__ or ():
                    if isinstance(cell.cell_contents, HTTPRoute):
                        cell.cell_contents.methods = set(route.methods)


def serve_api(host: str = "127.0.0.1", port: int = 8080) -> None:
    """Run the API with uvicorn (``iam-cluster api``): structured logs, Sentry when configured."""
    import uvicorn

    from iam_cluster.api.errors import is_client_error
    from iam_cluster.observability.asgi import setup_api_process

    settings = get_settings()
    setup_api_process(settings.observability, is_expected=is_client_error)
    proxies = settings.api.trusted_proxies
    # X-Forwarded-* are believed only from the configured proxies (uvicorn would trust loopback).
    # log_config=None: uvicorn's loggers go through ours; the access line is our middleware's.
    uvicorn.run(create_app(settings), host=host, port=port, proxy_headers=bool(proxies),
                forwarded_allow_ips=list(proxies) if proxies else [], log_config=None, access_log=False,
                log_level=settings.observability.log_level.lower())
