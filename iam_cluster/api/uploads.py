"""Uploads: request bodies streamed into storage under a size limit, then probed as media."""

from __future__ import annotations

import re
from typing import Any

import anyio
import anyio.from_thread
import anyio.to_thread
from litestar import Request

from iam_cluster.storage import Storage

_UNSAFE = re.compile(r"[^A-Za-z0-9._ -]+")


def sanitise_filename(name: str | None) -> str | None:
    """The last path component, with only safe characters, at most 200 of them (None if nothing is left)."""
    if not name:
        return None
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = _UNSAFE.sub("_", name).strip(" .")[:200]
    return name or None


def filename_of(request: Request, query_name: str | None) -> str | None:
    if query_name:
        return sanitise_filename(query_name)
    header = request.headers.get("content-disposition", "")
    match = re.search(r"filename\*\s*=\s*[^']*'[^']*'([^;]+)", header) or re.search(
        r'filename\s*=\s*"([^"]*)"', header) or re.search(r"filename\s*=\s*([^;\s]+)", header)
    if not match:
        return None
    from urllib.parse import unquote

    return sanitise_filename(unquote(match.group(1)))


def extension(filename: str | None) -> str:
    if filename and "." in filename:
        ext = filename.rsplit(".", 1)[-1].lower()
        if re.fullmatch(r"[a-z0-9]{1,8}", ext):
            return ext
    return "bin"


async def store_stream(storage: Storage, key: str, request: Request, max_bytes: int) -> Any:
    """Streams the request body into storage from a worker thread, one chunk at a time."""
    stream = request.stream()

    async def next_chunk() -> bytes | None:
        try:
            return await stream.__anext__()
        except StopAsyncIteration:
            return None

    def chunks():
        while (chunk := anyio.from_thread.run(next_chunk)) is not None:
            yield chunk

    return await anyio.to_thread.run_sync(storage.put_stream, key, chunks(), max_bytes)


def probe_stored(storage: Storage, key: str, label: str):
    from iam_cluster.pipeline.decode import probe

    with storage.local_path(key) as path:
        return probe(path, name=label)
