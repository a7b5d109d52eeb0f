"""Named SQL queries, loaded once from ``queries/*.sql`` (``-- name: NAME`` headers)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from importlib import resources
from types import MappingProxyType

_HEADER = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.MULTILINE)


def parse_queries(text: str, source: str = "<string>") -> dict[str, str]:
    """Split one file into ``{name: sql}``.

    Each query starts at a ``-- name: NAME`` line and runs to the next one; comment lines right
    after the header describe the query and are dropped, as is a trailing semicolon.

    Raises:
        ValueError: SQL before the first header, an empty query, or a name given twice.
    """
    parts = _HEADER.split(text)
    if parts[0].strip() and not all(line.lstrip().startswith("--") or not line.strip()
                                    for line in parts[0].splitlines()):
        raise ValueError(f"{source}: SQL before the first '-- name:' header")
    queries: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2]):
        lines = body.strip().splitlines()
        while lines and lines[0].lstrip().startswith("--"):
            lines.pop(0)
        sql = "\n".join(lines).strip().rstrip(";").strip()
        if not sql:
            raise ValueError(f"{source}: query {name!r} is empty")
        if name in queries:
            raise ValueError(f"{source}: query {name!r} defined twice")
        queries[name] = sql
    return queries


def load_queries(files: Iterable[tuple[str, str]]) -> Mapping[str, str]:
    """Merge ``(source, text)`` pairs into one read-only mapping; a name may appear only once."""
    merged: dict[str, str] = {}
    for source, text in files:
        for name, sql in parse_queries(text, source).items():
            if name in merged:
                raise ValueError(f"{source}: query {name!r} already defined in another file")
            merged[name] = sql
    return MappingProxyType(merged)


def _package_files() -> list[tuple[str, str]]:
    folder = resources.files("iam_cluster.db") / "queries"
    files = sorted((f for f in folder.iterdir() if f.name.endswith(".sql")), key=lambda f: f.name)
    return [(f"queries/{f.name}", f.read_text(encoding="utf-8")) for f in files]


#: Every named query of the package: ``QUERIES["get_user_by_email"]``.
QUERIES: Mapping[str, str] = load_queries(_package_files())


async def fetch_one(conn, name: str, params: dict) -> dict | None:
    """Run the named query on an async connection; its first row as a dict (or None)."""
    from psycopg.rows import dict_row

    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(QUERIES[name], params)
        return await cur.fetchone()


async def fetch_all(conn, name: str, params: dict) -> list[dict]:
    """Run the named query on an async connection; all rows as dicts."""
    from psycopg.rows import dict_row

    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(QUERIES[name], params)
        return await cur.fetchall()
