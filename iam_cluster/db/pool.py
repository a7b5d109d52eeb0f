"""The API's async connection pool and msgspec row factories."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

import msgspec
from psycopg import Cursor
from psycopg.rows import BaseRowFactory, RowMaker
from psycopg_pool import AsyncConnectionPool

from iam_cluster.settings import DatabaseSettings

T = TypeVar("T")


class Pool(AsyncConnectionPool):
    """A pool that tells a dead database from a busy one.

    A request waits up to ``timeout`` for a connection while the database is merely busy; when no
    connection is free and the pool's attempts to open one have failed since its last success (the
    database is unreachable), it waits only ``down_timeout`` before the 503, so a dead database
    never stalls every route.
    """

    def __init__(self, *args: Any, down_timeout: float, **kwargs: Any) -> None:
        self.down_timeout = down_timeout
        self._errors_at_last_success = 0
        super().__init__(*args, configure=self._connected, **kwargs)

    async def _connected(self, conn) -> None:
        self._errors_at_last_success = self.get_stats().get("connections_errors", 0)

    def connection(self, timeout: float | None = None):
        if timeout is None:
            stats = self.get_stats()
            if stats.get("pool_available", 0) == 0 and stats.get("connections_errors", 0) > self._errors_at_last_success:
                timeout = min(self.timeout, self.down_timeout)
        return super().connection(timeout)


def make_pool(settings: DatabaseSettings, max_size: int | None = None, **kwargs: Any) -> Pool:
    """An async pool, not yet open: open it in the application's lifespan (``await pool.open()``).

    Args:
        settings: URL, pool bounds and timeouts.
        max_size: instead of ``settings.pool_max`` (the credentials pool's ``auth_pool_max``).
        **kwargs: passed on to ``AsyncConnectionPool`` (``name``, ``configure``...).
    """
    max_size = max_size or settings.pool_max
    return Pool(settings.require_url(), min_size=min(settings.pool_min, max_size), max_size=max_size,
                timeout=settings.pool_timeout_s, down_timeout=settings.down_timeout_s, open=False,
                kwargs={"connect_timeout": max(1, round(settings.connect_timeout_s))}, **kwargs)


def struct_row(cls: type[T]) -> BaseRowFactory[T]:
    """A psycopg row factory that converts each row into the msgspec struct ``cls``.

    Columns are matched to fields by name; extra columns (``rank``, a generated ``search``) are
    ignored, and values are validated by ``msgspec.convert`` (a wrong type raises
    ``msgspec.ValidationError`` naming the field).

    Example:
        async with conn.cursor(row_factory=struct_row(User)) as cur:
            user = await (await cur.execute(QUERIES["get_user_by_id"], {"id": uid})).fetchone()
    """
    fields = {f.name for f in msgspec.structs.fields(cls)}

    def factory(cursor: Cursor[Any]) -> RowMaker[T]:
        desc = cursor.description
        if desc is None:
            return _no_result
        names = [c.name for c in desc]
        keep = [(i, n) for i, n in enumerate(names) if n in fields]

        def make_row(values: Sequence[Any]) -> T:
            return msgspec.convert({n: values[i] for i, n in keep}, cls)

        return make_row

    return factory


def convert_row(row: dict[str, Any], cls: type[T]) -> T:
    """One ``dict_row`` result as the struct ``cls`` (fields it does not know are dropped)."""
    names = {f.name for f in msgspec.structs.fields(cls)}
    return msgspec.convert({k: v for k, v in row.items() if k in names}, cls)


def _no_result(values: Sequence[Any]) -> Any:
    raise TypeError("the statement returned no rows to convert")
