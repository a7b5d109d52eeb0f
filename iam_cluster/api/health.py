"""Liveness (``/health``: the process is up) and readiness (``/ready``: PostgreSQL and Redis answer)."""

from __future__ import annotations

from litestar import Response, get
from litestar.datastructures import State


@get("/health", sync_to_thread=False, tags=["health"])
def health() -> dict:
    return {"status": "ok"}


@get("/ready", tags=["health"])
async def ready(state: State) -> Response:
    checks: dict[str, str] = {}
    try:
        async with state.pool.connection() as conn:  # the pool's own short timeout
            await conn.execute("SELECT 1")
        checks["postgres"] = "ok"
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        checks["postgres"] = f"error: {type(exc).__name__}"
    try:
        await state.redis.ping()
        checks["redis"] = "ok"
    except Exception as exc:  # noqa: BLE001
        checks["redis"] = f"error: {type(exc).__name__}"
    ok = all(v == "ok" for v in checks.values())
    return Response({"status": "ok" if ok else "unavailable", "checks": checks}, status_code=200 if ok else 503)
