"""Control characters refused at the boundary, once for every route: 400 naming the field.

A NUL or another control character in a name, an email, an id or a parameter is never meant and
breaks what comes after (PostgreSQL refuses NUL in text: a 500 there, or a log line split in two).
``InputGuard`` checks, before a handler runs, every path parameter, every query parameter (names
and values), every string of a JSON body (keys included) and every field of a web form; the
streamed multipart uploads check their text fields as they arrive (``uploads.receive_upload``
calls ``check_fields``). Free-text fields (a message's body, a meeting's description, a prompt:
their type carries ``FREE_TEXT``) may hold tab, line feed and carriage return; nothing else may.

The error is raised inside the route, so each part of the service answers in its own shape: the
REST API's ``{"error": {"code": "invalid_characters", "field", ...}}``, OpenAI's with ``param``.
"""

from __future__ import annotations

import functools
import io
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl

import msgspec
import multipart
from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from iam_cluster.api.errors import APIError

#: ``msgspec.Meta(extra=FREE_TEXT)`` marks a free-text field: tab, LF and CR are allowed in it.
FREE_TEXT = {"free_text": True}
#: C0 controls, DEL and C1 controls.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
#: The same, less tab, line feed and carriage return.
_CONTROL_IN_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
#: Largest JSON or form body read here (every such body of this API is far smaller).
MAX_BODY_BYTES = 1024 * 1024
_FORMS = ("application/x-www-form-urlencoded", "multipart/form-data")


class ControlCharacters(APIError):
    """A string field holds a control character (400 ``invalid_characters``, naming the field)."""

    def __init__(self, field: str, char: str, free_text: bool = False) -> None:
        allowed = " (tab, line feed and carriage return are allowed)" if free_text else ""
        super().__init__("invalid_characters",
                         f"{field}: control character U+{ord(char):04X} is not allowed{allowed}")
        self.field = field


def check_text(field: str, value: str, free_text: bool = False) -> None:
    """Raises ``ControlCharacters`` when ``value`` holds a control character not allowed in ``field``."""
    found = (_CONTROL_IN_TEXT if free_text else _CONTROL).search(value)
    if found:
        raise ControlCharacters(field, found.group(), free_text)


def check_fields(fields: Iterable[tuple[str, str]], free_text: frozenset[str] = frozenset()) -> None:
    """Checks ``(name, value)`` pairs: a name never holds a control character, a value only those
    its field allows."""
    for name, value in fields:
        check_text(_printable(name), name)
        check_text(name, value, name in free_text)


def check_json(value: Any, free_text: frozenset[str] = frozenset(), path: str = "") -> None:
    """Checks every string (and every key) of a decoded JSON document; a string is free text when
    the key it sits under is in ``free_text``."""
    if isinstance(value, str):
        check_text(path or "body", value, path.rsplit(".", 1)[-1] in free_text)
    elif isinstance(value, dict):
        for key, item in value.items():
            check_text(f"{path}.{_printable(key)}" if path else _printable(key), key)
            check_json(item, free_text, f"{path}.{key}" if path else key)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            check_json(item, free_text, f"{path}[{i}]")


def _printable(name: str) -> str:
    """A field name fit for a message: control characters escaped."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", name)


@functools.cache
def free_text_fields(annotation: Any) -> frozenset[str]:
    """The names of the fields marked ``FREE_TEXT`` anywhere in ``annotation`` (a struct, a union...)."""
    try:
        info = msgspec.inspect.type_info(annotation)
    except (TypeError, ValueError):
        return frozenset()
    names: set[str] = set()
    _collect(info, names, set())
    return frozenset(names)


def _is_free(info: msgspec.inspect.Type) -> bool:
    if isinstance(info, msgspec.inspect.Metadata):
        return bool((info.extra or {}).get("free_text")) or _is_free(info.type)
    if isinstance(info, msgspec.inspect.UnionType):
        return any(_is_free(t) for t in info.types)
    return False


def _collect(info: msgspec.inspect.Type, names: set[str], seen: set[type]) -> None:
    inspect = msgspec.inspect
    if isinstance(info, inspect.StructType):
        if info.cls in seen:
            return
        seen.add(info.cls)
        for field in info.fields:
            if _is_free(field.type):
                names.add(field.encode_name)
            _collect(field.type, names, seen)
    elif isinstance(info, inspect.Metadata):
        _collect(info.type, names, seen)
    elif isinstance(info, inspect.UnionType):
        for t in info.types:
            _collect(t, names, seen)
    elif isinstance(info, (inspect.ListType, inspect.SetType, inspect.FrozenSetType, inspect.VarTupleType)):
        _collect(info.item_type, names, seen)
    elif isinstance(info, inspect.TupleType):
        for t in info.item_types:
            _collect(t, names, seen)
    elif isinstance(info, inspect.DictType):
        _collect(info.value_type, names, seen)


def path_field(app: Any, path: str) -> str:
    """The path parameter a request path's first control character falls in, by the routes' templates
    (a segment that fails its type, e.g. a uuid, matches no route): ``"path"`` if none fits."""
    segments = path.strip("/").split("/")
    bad = next((i for i, s in enumerate(segments) if _CONTROL.search(s)), None)
    if bad is None:
        return "path"
    for route in app.routes:
        template = route.path.strip("/").split("/")
        if len(template) != len(segments) or not template[bad].startswith("{"):
            continue
        if all(t.startswith("{") or t == s for t, s in zip(template, segments)):
            return template[bad].strip("{}").split(":", 1)[0]
    return "path"


def has_control(text: str) -> bool:
    return _CONTROL.search(text) is not None


class InputGuard(ASGIMiddleware):
    """Checks path and query parameters, JSON bodies (routes that take ``data``) and web forms
    (routes that read ``request.form()``; upload routes, ``opt["upload"]``, check their own streamed
    forms) before the handler runs."""

    scopes = (ScopeType.HTTP,)

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        handler = scope.get("route_handler")
        for name, value in (scope.get("path_params") or {}).items():
            if isinstance(value, str):
                check_text(name, value)
        query = scope.get("query_string", b"").decode("utf-8", "replace")
        check_fields(parse_qsl(query, keep_blank_values=True))
        kind = _body_kind(scope, handler)
        if kind is not None:
            body, receive = await _buffer(receive)
            if kind == "json":
                try:
                    document = msgspec.json.decode(body) if body else None
                except msgspec.DecodeError:
                    document = None  # Litestar refuses it with its own 400
                data = handler.parsed_fn_signature.parameters["data"].annotation
                check_json(document, free_text_fields(data))
            else:
                check_fields(_form_fields(_header(scope, b"content-type"), body))
        await next_app(scope, receive, send)


def _header(scope: Scope, name: bytes) -> str:
    return next((v.decode("latin-1") for k, v in scope.get("headers", ()) if k == name), "")


def _body_kind(scope: Scope, handler: Any) -> str | None:
    """``"json"`` for a route whose handler takes ``data``; the form's content type for a form sent to
    a route that is not an upload; else None (no body, or one the route streams itself)."""
    if handler is None or scope.get("method") in ("GET", "HEAD", "OPTIONS"):
        return None
    if "data" in handler.parsed_fn_signature.parameters:
        return "json"
    ctype = _header(scope, b"content-type").split(";", 1)[0].strip().lower()
    if ctype in _FORMS and not handler.opt.get("upload"):
        return ctype
    return None


async def _buffer(receive: Receive) -> tuple[bytes, Receive]:
    """The whole body (at most ``MAX_BODY_BYTES``, else 413), and a ``receive`` that replays it."""
    messages: list[Message] = []
    body = bytearray()
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            break
        body += message.get("body", b"")
        if len(body) > MAX_BODY_BYTES:
            raise APIError("too_large", f"request bodies of this route are at most {MAX_BODY_BYTES} bytes")
        if not message.get("more_body", False):
            break

    async def replay() -> Message:
        return messages.pop(0) if messages else await receive()

    return bytes(body), replay


def _form_fields(content_type: str, body: bytes) -> list[tuple[str, str]]:
    """A web form's text fields (urlencoded or multipart); a malformed form is left to the route."""
    ctype, options = multipart.parse_options_header(content_type)
    if ctype == "application/x-www-form-urlencoded":
        return parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
    try:
        parts = list(multipart.MultipartParser(io.BytesIO(body), options.get("boundary", "")))
    except (multipart.MultipartError, ValueError):
        return []
    return [(p.name or "", p.value) for p in parts if p.filename is None]
