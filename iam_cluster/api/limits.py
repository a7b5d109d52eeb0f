"""Limits kept in Redis: fixed-window request counters, per-account login back-off, concurrent uploads.

Every Redis call goes through a ``RedisGate``: a short timeout, and a circuit breaker that, once
Redis has failed, skips it for a few seconds, so a dead or hanging Redis costs requests nothing.
What happens then is each limit's choice: login, register and message sending fail closed (503
``unavailable``: without their counters they would be open to guessing and spam); the general
request budgets are counted in this process instead (the documented degraded mode: each API
process enforces them on its own until Redis is back), and upload slots go unlimited.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

from iam_cluster.api.errors import APIError

log = logging.getLogger("iam_cluster.api.limits")
T = TypeVar("T")
#: After a Redis failure, Redis is not asked again for this long.
BREAK_SECONDS = 5.0


class RedisDown(Exception):
    """Redis did not answer in time, or the breaker is open."""


class RedisGate:
    """Runs Redis calls with a timeout; after a failure, refuses at once for ``BREAK_SECONDS``.

    A call can also be late because this process is overloaded (its event loop runs behind, as
    under a burst of hundreds of requests on two cores): that is not Redis's fault, and switching
    limits off would be exactly wrong then. So the gate watches its own loop's lag, and a timeout
    while the loop lags gets one more, longer try instead of opening the breaker.
    """

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.open_until = 0.0
        self.lag = 0.0
        self._watcher: asyncio.Task | None = None
        self._last_warning = 0.0

    async def _watch(self, every: float = 0.1) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            await asyncio.sleep(every)
            self.lag = max(0.0, loop.time() - started - every)

    async def call(self, make: Callable[[], Awaitable[T]]) -> T:
        if self._watcher is None or self._watcher.done():
            self._watcher = asyncio.ensure_future(self._watch())
        if time.monotonic() < self.open_until:
            raise RedisDown("Redis is unavailable")
        try:
            try:
                async with asyncio.timeout(self.timeout):
                    return await make()
            except TimeoutError:
                if self.lag < self.timeout / 4:
                    raise
                async with asyncio.timeout(4 * self.timeout):  # we are slow, not Redis: wait longer
                    return await make()
        except Exception as exc:
            self.open_until = time.monotonic() + BREAK_SECONDS
            if time.monotonic() - self._last_warning > 30:
                self._last_warning = time.monotonic()
                log.warning("Redis unavailable (%s: %s); limits degraded for %.0f s", type(exc).__name__, exc,
                            BREAK_SECONDS)
            raise RedisDown(str(exc)) from exc


def unavailable(what: str) -> APIError:
    return APIError("unavailable", f"{what} is unavailable right now; retry shortly",
                    {"Retry-After": str(int(BREAK_SECONDS))})


async def hit(redis, prefix: str, limits: list[tuple[str, int]], window_s: int = 60,
              now: float | None = None) -> int | None:
    """Count one request against every ``(counter, limit)``; seconds to wait when one is spent, else None."""
    now = time.time() if now is None else now
    window = int(now // window_s)
    keys = [f"{prefix}rl:{name}:{window}" for name, _ in limits]
    pipe = redis.pipeline(transaction=True)
    for key in keys:
        pipe.incr(key)
        pipe.expire(key, window_s + 1)
    counts = (await pipe.execute())[::2]
    if any(count > limit for count, (_, limit) in zip(counts, limits)):
        return max(1, int((window + 1) * window_s - now + 0.999))
    return None


class LocalCounters:
    """Fixed-window counters in this process, kept beside Redis's: the request budgets while Redis
    is unavailable (each API process then enforces them on its own)."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.window = -1

    def hit(self, limits: list[tuple[str, int]], window_s: int = 60, now: float | None = None) -> int | None:
        now = time.time() if now is None else now
        window = int(now // window_s)
        if window != self.window:  # a new window: the old counts can go
            self.counts, self.window = {}, window
        over = False
        for name, limit in limits:
            self.counts[name] = self.counts.get(name, 0) + 1
            over = over or self.counts[name] > limit
        return max(1, int((window + 1) * window_s - now + 0.999)) if over else None


def _account(prefix: str, email: str) -> str:
    return f"{prefix}login-failures:{hashlib.sha256(email.strip().lower().encode()).hexdigest()[:32]}"


async def login_wait(gate: RedisGate, redis, prefix: str, email: str, free_failures: int) -> None:
    """Refuse a login for an account that failed too often lately: 429 for ``2**(n - free)`` seconds.

    Raises:
        APIError: ``rate_limited`` with ``Retry-After``, or ``unavailable`` when Redis is down.
    """
    try:
        failures, age = await gate.call(lambda: _failures(redis, _account(prefix, email)))
    except RedisDown:
        raise unavailable("signing in") from None
    if failures >= free_failures:
        delay = min(900, 2 ** (failures - free_failures + 1))
        if age < delay:
            raise APIError("rate_limited", "too many failed sign-ins for this account; retry later",
                           {"Retry-After": str(int(delay - age) + 1)})


async def _failures(redis, key: str) -> tuple[int, float]:
    count, last = await redis.hmget(key, "count", "last")
    return int(count or 0), time.time() - float(last or 0)


async def login_result(gate: RedisGate, redis, prefix: str, email: str, ok: bool) -> None:
    """Count a failed sign-in (kept 15 minutes after the last one), or clear the count on success."""
    key = _account(prefix, email)

    async def record() -> None:
        if ok:
            await redis.delete(key)
            return
        pipe = redis.pipeline(transaction=True)
        pipe.hincrby(key, "count", 1)
        pipe.hset(key, "last", time.time())
        pipe.expire(key, 900)
        await pipe.execute()

    with contextlib.suppress(RedisDown):
        await gate.call(record)


@contextlib.asynccontextmanager
async def upload_slot(gate: RedisGate, redis, prefix: str, user_id: uuid.UUID, most: int) -> AsyncIterator[None]:
    """Hold one of the user's ``most`` concurrent upload slots (429 when none is free).

    Without Redis uploads go on unlimited (slow clients are still cut off by the read timeout).
    """
    key = f"{prefix}uploads:{user_id}"

    async def take() -> int:
        pipe = redis.pipeline(transaction=True)
        pipe.incr(key)
        pipe.expire(key, 3600)  # a crashed process's slots come back within the hour
        return (await pipe.execute())[0]

    try:
        held = await gate.call(take)
    except RedisDown:
        yield
        return
    try:
        if held > most:
            raise APIError("rate_limited", f"at most {most} uploads at once per account; retry when one ends",
                           {"Retry-After": "5"})
        yield
    finally:
        with contextlib.suppress(RedisDown):
            await gate.call(lambda: redis.decr(key))
