"""Dependencies shared by the routes: a transaction per request, Redis, storage, settings."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager

from litestar.datastructures import State
from psycopg import AsyncConnection

from iam_cluster.db.errors import translate_errors
from iam_cluster.settings import Settings


async def provide_conn(state: State) -> AsyncGenerator[AsyncConnection, None]:
    """A pooled connection inside one transaction: the request's writes commit together or not at all."""
    async with transaction(state.pool) as conn:
        yield conn


@asynccontextmanager
async def transaction(pool) -> AsyncIterator[AsyncConnection]:
    """A short transaction on a pooled connection, for routes that must not hold one throughout
    (uploads stream for minutes; transcriptions run for seconds)."""
    async with pool.connection() as conn:
        with translate_errors():
            async with conn.transaction():
                yield conn


def provide_settings(state: State) -> Settings:
    return state.settings


def provide_redis(state: State):
    return state.redis


def provide_storage(state: State):
    return state.storage
