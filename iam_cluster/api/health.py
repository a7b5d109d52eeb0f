"""Liveness (``/health``: the process is up) and readiness (``/ready``: PostgreSQL, Redis and storage answer)."""

from __future__ import annotations

import asyncio

import anyio.to_thread
from litestar import Response, get
from litestar.datastructures import State
from litestar.openapi.spec import Schema
from litestar.openapi.spec.enums import OpenAPIType

#: ``/ready``'s body, 200 or 503: ``{"status": "ok" | "unavailable", "checks": {name: "ok" | "error: ..."}}``.
READY = Schema(type=OpenAPIType.OBJECT, required=["status", "checks"], properties={
    "status": Schema(type=OpenAPIType.STRING, enum=["ok", "unavailable"]),
    "checks": Schema(type=OpenAPIType.OBJECT, additional_properties=Schema(type=OpenAPIType.STRING))})
#: Longest wait for any one dependency: a probe must answer quickly even when one hangs.
CHECK_TIMEOUT_S = 2.0


@get("/health", sync_to_thread=False, tags=["health"])
def health() -> dict:
    """Liveness: the process is up (no dependency is checked)."""
    return {"status": "ok"}


async def _postgres(state: State) -> None:
    async with state.pool.connection() as conn:  # the pool's own short timeout
        await conn.execute("SELECT 1")


async def _redis(state: State) -> None:
    await state.redis.ping()


async def _storage(state: State) -> None:
    await anyio.to_thread.run_sync(state.storage.check)


async def _check(probe, state: State) -> str:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_S + 0.5):
            await probe(state)
        return "ok"
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        return f"error: {type(exc).__name__}"


@get("/ready", tags=["health"], opt={"content": {200: {"application/json": READY}, 503: {"application/json": READY}}})
async def ready(state: State) -> Response:
    """Readiness: PostgreSQL, Redis and storage each answer (200), or which one does not (503)."""
    names = ("postgres", "redis", "storage")
    results = await asyncio.gather(*(_check(probe, state) for probe in (_postgres, _redis, _storage)))
    checks = dict(zip(names, results))
    ok = all(v == "ok" for v in checks.values())
    return Response({"status": "ok" if ok else "unavailable", "checks": checks}, status_code=200 if ok else 503)
