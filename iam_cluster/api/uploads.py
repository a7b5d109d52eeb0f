"""Uploads: a request body streamed into storage under a size limit, then probed as media.

Two encodings are accepted everywhere an upload is: a raw body (the file's bytes; its name from
``?filename=`` or ``Content-Disposition``) and ``multipart/form-data`` with the file in the
``file`` field (what ``curl -F file=@a.wav`` and browser forms send) and small text fields beside
it. Either way the file goes to storage chunk by chunk as it arrives: it is never held in memory,
no database connection is held while it streams, and a client that stops sending is cut off.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from collections.abc import AsyncIterator, Callable
from urllib.parse import unquote

import anyio
import anyio.from_thread
import anyio.to_thread
import msgspec
import multipart
from litestar import Request
from litestar.openapi.spec import OpenAPIMediaType, Operation, RequestBody, Schema
from litestar.openapi.spec.enums import OpenAPIFormat, OpenAPIType

from iam_cluster.api.errors import APIError
from iam_cluster.api.input_guard import check_fields
from iam_cluster.errors import MediaError
from iam_cluster.settings import AudioSettings
from iam_cluster.storage import Storage, StoredObject

_UNSAFE = re.compile(r"[^A-Za-z0-9._ -]+")
#: Text fields of a multipart upload: at most this many, of this many bytes together.
MAX_FIELDS, MAX_FIELD_BYTES = 32, 64 * 1024


def upload_operation(fields: dict[str, Schema] | None = None, raw: bool = True,
                     json: Schema | None = None) -> type[Operation]:
    """An OpenAPI operation class documenting an upload body: the raw file and/or a form whose
    ``file`` field holds it, with ``fields`` beside it, or a JSON body of schema ``json`` (the
    handlers read the body themselves)."""
    binary = Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.BINARY)
    form = Schema(type=OpenAPIType.OBJECT, required=["file"],
                  properties={"file": Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.BINARY,
                                             description="the audio or video file"), **(fields or {})})
    content = {"multipart/form-data": OpenAPIMediaType(schema=form)}
    if raw:
        content["application/octet-stream"] = OpenAPIMediaType(schema=binary)
    if json is not None:
        content["application/json"] = OpenAPIMediaType(schema=json)

    @dataclass
    class UploadOperation(Operation):
        def __post_init__(self) -> None:
            self.request_body = RequestBody(content=content, required=True)

    return UploadOperation


class Received(msgspec.Struct):
    """An upload now in storage: its key, size and name, and the form's text fields."""

    key: str
    size: int
    filename: str | None
    fields: dict[str, list[str]]

    def field(self, name: str) -> str | None:
        values = self.fields.get(name)
        return values[-1] if values else None


def sanitise_filename(name: str | None) -> str | None:
    """The last path component, with only safe characters, at most 200 of them (None if nothing is left)."""
    if not name:
        return None
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = _UNSAFE.sub("_", name).strip(" .")[:200]
    return name or None


def extension(filename: str | None) -> str:
    if filename and "." in filename:
        ext = filename.rsplit(".", 1)[-1].lower()
        if re.fullmatch(r"[a-z0-9]{1,8}", ext):
            return ext
    return "bin"


async def receive_upload(request: Request, storage: Storage, key_for: Callable[[str | None], str], max_bytes: int,
                         read_timeout: float, query_name: str | None = None,
                         free_text: frozenset[str] = frozenset()) -> Received:
    """Stream the request's file into storage under ``key_for(filename)``; the form's text fields
    named in ``free_text`` may hold tab, LF and CR, other fields no control character at all.

    Raises:
        APIError: no file (400), over ``max_bytes`` (413), the client stalled (408), a malformed form,
            a control character in a text field (400 ``invalid_characters`` naming it).
    """
    body = _Body(request, read_timeout)
    ctype, options = multipart.parse_options_header(request.headers.get("content-type", ""))
    if ctype != "multipart/form-data":
        _, disposition = multipart.parse_options_header(request.headers.get("content-disposition", ""))
        name = sanitise_filename(query_name or unquote(disposition.get("filename", "")))
        stored = await _store(storage, key_for(name), body.chunks(), max_bytes)
        return Received(stored.key, stored.size, name, {})
    if not options.get("boundary"):
        raise APIError("bad_request", "multipart/form-data without a boundary")
    form = _Form(body, options["boundary"], max_bytes, free_text)
    segment = await form.fields_until_file()
    name = sanitise_filename(query_name or segment.filename)
    stored = await _store(storage, key_for(name), form.file_chunks(), max_bytes)
    try:
        await form.rest()
    except BaseException:
        await anyio.to_thread.run_sync(storage.delete, stored.key)
        raise
    return Received(stored.key, stored.size, name, form.fields)


async def _store(storage: Storage, key: str, chunks: AsyncIterator[bytes], max_bytes: int) -> StoredObject:
    """``storage.put_stream`` in a worker thread, fed from the event loop one chunk at a time."""

    async def next_chunk() -> bytes | None:
        return await anext(chunks, None)

    def feed():
        while (chunk := anyio.from_thread.run(next_chunk)) is not None:
            yield chunk

    return await anyio.to_thread.run_sync(storage.put_stream, key, feed(), max_bytes)


class _Body:
    """The request body, chunk by chunk, each chunk awaited at most ``timeout`` seconds."""

    def __init__(self, request: Request, timeout: float) -> None:
        self.stream = request.stream()
        self.timeout = timeout

    async def chunks(self) -> AsyncIterator[bytes]:
        while True:
            try:
                with anyio.fail_after(self.timeout):
                    chunk = await anext(self.stream, None)
            except TimeoutError:
                raise APIError("request_timeout", f"no data from the client for {self.timeout:.0f} s") from None
            if chunk is None:
                return
            if chunk:
                yield chunk


class _Form:
    """A streaming ``multipart/form-data`` reader: text fields kept (bounded), the file passed on."""

    def __init__(self, body: _Body, boundary: str, max_bytes: int, free_text: frozenset[str]) -> None:
        self.source = body.chunks()
        self.parser = multipart.PushMultipartParser(boundary, max_segment_count=MAX_FIELDS + 1,
                                                    max_segment_size=max_bytes)
        self.pending: list = []
        self.fields: dict[str, list[str]] = {}
        self.field_bytes = 0
        self.seen_file = False
        self.free_text = free_text

    async def _event(self):
        while not self.pending:
            if self.parser.closed:
                return StopAsyncIteration
            chunk = await anext(self.source, b"")
            try:
                self.pending.extend(self.parser.parse(chunk))
            except multipart.ParserLimitReached as exc:
                raise APIError("too_large", f"upload form too large: {exc}") from None
            except multipart.MultipartError as exc:
                raise APIError("bad_request", f"malformed multipart/form-data: {exc}") from None
            if not chunk and not self.pending and not self.parser.closed:
                raise APIError("bad_request", "the multipart/form-data body ended early")
        return self.pending.pop(0)

    async def _text(self, segment) -> None:
        value = bytearray()
        while (event := await self._event()) is not None and event is not StopAsyncIteration:
            value += event
            self.field_bytes += len(event)
            if self.field_bytes > MAX_FIELD_BYTES:
                raise APIError("too_large", f"form fields over {MAX_FIELD_BYTES} bytes")
        text = value.decode("utf-8", "replace")
        check_fields([(segment.name, text)], self.free_text)
        self.fields.setdefault(segment.name, []).append(text)

    async def fields_until_file(self):
        """Read text fields up to the ``file`` field; returns its segment (filename, type)."""
        while (event := await self._event()) is not StopAsyncIteration:
            if isinstance(event, multipart.MultipartSegment):
                check_fields([(event.name, "")])
                if event.name == "file":
                    self.seen_file = True
                    return event
                await self._text(event)
        raise APIError("bad_request", "the form has no 'file' field")

    async def file_chunks(self) -> AsyncIterator[bytes]:
        while (event := await self._event()) is not None and event is not StopAsyncIteration:
            yield bytes(event)

    async def rest(self) -> None:
        """Text fields after the file; a second file is refused."""
        while (event := await self._event()) is not StopAsyncIteration:
            if isinstance(event, multipart.MultipartSegment):
                if event.name == "file":
                    raise APIError("bad_request", "send one file per upload")
                await self._text(event)


#: Below this many stored bytes per second of declared duration a file cannot hold sound: even the
#: leanest speech codecs need several hundred (a 3.5-hour FLAC of digital silence is about 30 KB).
MIN_BYTES_PER_SECOND = 100


def probe_stored(storage: Storage, key: str, label: str, size: int, audio: AudioSettings):
    """Probe an upload's header and refuse, before any job exists, what a worker would only refuse
    after decoding hours of it: too long (422 ``too_long``), or too small to hold any sound for its
    declared length (422 ``empty_media``).

    Raises:
        MediaError: with its code.
    """
    from iam_cluster.pipeline.decode import probe

    with storage.local_path(key) as path:
        info = probe(path, name=label)
    if info.duration is not None:
        if info.duration > audio.max_duration_s:
            raise MediaError(label, f"{info.duration / 60:.0f} minutes is longer than the "
                                    f"{audio.max_duration_s / 60:.0f} minutes accepted", "too_long")
        if info.duration >= 60 and size / info.duration < MIN_BYTES_PER_SECOND:
            raise MediaError(label, f"{size} bytes cannot hold {info.duration / 60:.0f} minutes of sound: "
                                    "the recording is silent", "empty_media")
    return info
