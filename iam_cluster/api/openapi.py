"""The OpenAPI document, made to match what the API answers, and its UI served offline.

Litestar derives paths, parameters, bodies and success responses from the handlers; ``document``
then gives every operation the error body this API really sends (``{"error": {"code", "message",
"status", ...}}``, OpenAI's shape under ``/v1``) for each status it can answer: those every route
shares (400 for a malformed parameter or a control character, 401/403 where a credential is
needed, 404 where a path names a resource, 413 for bodies, 429 and 503 on the API) and those a
handler declares with ``responses=errors(...)``. Authenticated operations carry the Bearer scheme
(an access token or an API key). Swagger UI's files come from the ``swagger-ui-py`` package, served
by the API under ``/docs/assets``: the page loads nothing from elsewhere.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from litestar import Litestar, Request, Router
from litestar.openapi import OpenAPIConfig, ResponseSpec
from litestar.openapi.plugins import (
    JsonRenderPlugin,
    SwaggerRenderPlugin,
    YamlRenderPlugin,
)
from litestar.openapi.spec import (
    Components,
    OpenAPIHeader,
    OpenAPIMediaType,
    OpenAPIResponse,
    Reference,
    Schema,
    SecurityScheme,
)
from litestar.openapi.spec.enums import OpenAPIFormat, OpenAPIType
from litestar.routes import HTTPRoute
from litestar.static_files import create_static_files_router

DOCS = "/docs"
ASSETS = f"{DOCS}/assets"
BEARER = "BearerAuth"
COOKIE = "SessionCookie"

#: Each error status with what it means here (a handler's ``errors({...})`` may say more).
MEANING = {
    400: "Malformed request: a parameter or body field of the wrong type or length, or a control character "
         "in a field (`invalid_characters`); `error.field` names the field.",
    401: "Missing, invalid or expired credential: send `Authorization: Bearer` with an access token or an API key.",
    402: "The plan's minutes for this month are spent (`quota_exceeded`).",
    403: "The API key lacks the scope this route needs, or the route takes an access token only.",
    404: "Not found, or not the caller's.",
    405: "Method not allowed on this path.",
    408: "The client stopped sending the upload (`request_timeout`).",
    409: "Conflicts with the resource's current state (`conflict`).",
    413: "The body is too large (`too_large`).",
    415: "The upload is not an audio or video file (`unsupported_media`).",
    416: "The byte range lies outside the file (`range_not_satisfiable`).",
    422: "Well-formed but refused: invalid options (`invalid_options`), a guessable password, or media that is "
         "empty, truncated, too short or too long.",
    429: "Too many requests: wait for `Retry-After` seconds (`rate_limited`).",
    503: "A dependency (PostgreSQL, Redis, Stripe) is unavailable right now: retry after `Retry-After` seconds.",
}
_RETRY_AFTER = {"Retry-After": OpenAPIHeader(schema=Schema(type=OpenAPIType.INTEGER),
                                             description="Seconds to wait before retrying")}


def errors(*statuses: int | dict[int, str]) -> dict[int, ResponseSpec]:
    """A handler's ``responses``: the error statuses it answers beyond those every route shares,
    as numbers or ``{status: description}``; ``document`` gives each the real error body."""
    found: dict[int, str] = {}
    for item in statuses:
        found.update(item if isinstance(item, dict) else {item: MEANING[item]})
    return {status: ResponseSpec(data_container=None, description=text) for status, text in found.items()}


def _static_dir() -> Path:
    import swagger_ui

    return Path(swagger_ui.__file__).parent / "static"


def openapi_config() -> OpenAPIConfig:
    """``/docs``: Swagger UI from local files; ``/docs/openapi.json`` and ``/docs/openapi.yaml``."""
    swagger = SwaggerRenderPlugin(
        path="/swagger", js_url=f"{ASSETS}/swagger-ui-bundle.js", css_url=f"{ASSETS}/swagger-ui.css",
        standalone_preset_js_url=f"{ASSETS}/swagger-ui-standalone-preset.js",
        favicon=f"<link rel='icon' type='image/png' href='{ASSETS}/favicon-32x32.png'>")
    return OpenAPIConfig(
        title="IAM Cluster", version="0.1.0", path=DOCS, use_handler_docstrings=True,
        description="Speech transcription: accounts, meetings and their recordings, transcription jobs, "
                    "transcripts, inbox, webhooks, billing, and an OpenAI-compatible `/v1/audio` API. "
                    "Errors are JSON `{\"error\": {\"code\", \"message\", \"status\", \"field\"?}}` "
                    "(OpenAI's shape under `/v1`).",
        render_plugins=[swagger, JsonRenderPlugin(), YamlRenderPlugin()],
        # the document is completed when first served, not on each app's creation (0.2 s apiece)
        openapi_router=Router(DOCS, route_handlers=[], include_in_schema=False, before_request=_complete_docs),
        components=Components(security_schemes={
            BEARER: SecurityScheme(type="http", scheme="bearer", description=(
                "An access token from `POST /api/v1/auth/login`, or an API key (`iam_...`) from "
                "`POST /api/v1/api-keys`; a key's scopes (transcribe, read, billing) bound what it may do.")),
            COOKIE: SecurityScheme(type="apiKey", security_scheme_in="cookie", name="iam_session", description=(
                "The web app's session cookie; unsafe requests made with it need the `X-CSRFToken` header.")),
        }),
    )


def asset_handlers() -> list:
    """Swagger UI's script, style and icon, served by the API itself."""
    return [create_static_files_router(ASSETS, directories=[_static_dir()], include_in_schema=False,
                                       name="docs-assets")]


def _error_schemas() -> dict[str, Schema]:
    string, integer = Schema(type=OpenAPIType.STRING), Schema(type=OpenAPIType.INTEGER)
    detail = Schema(type=OpenAPIType.OBJECT, required=["code", "message", "status"], properties={
        "code": Schema(type=OpenAPIType.STRING, description="stable machine-readable code, e.g. `not_found`"),
        "message": string, "status": integer,
        "field": Schema(type=OpenAPIType.STRING, description="the field at fault, when one is"),
        "retry_after": integer,
    })
    error = Schema(type=OpenAPIType.OBJECT, required=["error"], properties={
        "error": detail,
        "details": Schema(type=OpenAPIType.ARRAY, items=Schema(type=OpenAPIType.OBJECT),
                          description="each validation failure: message, key, source"),
    }, description="Every error this API answers.")
    nullable = Schema(one_of=[string, Schema(type=OpenAPIType.NULL)])
    openai = Schema(type=OpenAPIType.OBJECT, required=["error"], properties={
        "error": Schema(type=OpenAPIType.OBJECT, required=["message", "type", "param", "code"], properties={
            "message": string, "type": string, "param": nullable, "code": nullable}),
    }, description="An error of the OpenAI-compatible routes, in OpenAI's shape.")
    return {"Error": error, "OpenAIError": openai}


async def _complete_docs(request: Request) -> None:
    document(request.app)


#: What ``input_guard`` lets through, as patterns: no control character; in free text, tab, LF and CR.
NO_CONTROLS = r"^[^\x00-\x1F\x7F-\x9F]*$"
FREE_TEXT_ONLY = r"^[^\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F]*$"
#: String formats whose values cannot hold a control character anyway.
_FORMATTED = {OpenAPIFormat.UUID, OpenAPIFormat.DATE_TIME, OpenAPIFormat.DATE, OpenAPIFormat.BINARY, "uuid",
              "date-time", "date", "binary"}


def _restricted(schema: Any, free_text: frozenset[str], name: str | None = None) -> Any:
    """``schema`` with ``input_guard``'s rule stated on every free string in it (a copy where changed)."""
    if not isinstance(schema, Schema):
        return schema
    changes: dict[str, Any] = {}
    if schema.properties:
        changes["properties"] = {k: _restricted(v, free_text, k) for k, v in schema.properties.items()}
    for key in ("one_of", "any_of", "all_of"):
        if getattr(schema, key):
            # Litestar writes ``tuple[X, ...]``'s items as ``oneOf: [X, {}]``: the ``{}`` (anything) is not so
            kept = [s for s in getattr(schema, key) if s != Schema()] or getattr(schema, key)
            changes[key] = [_restricted(s, free_text, name) for s in kept]
    if isinstance(schema.items, Schema):
        changes["items"] = _restricted(schema.items, free_text, name)
    if isinstance(schema.additional_properties, Schema):
        changes["additional_properties"] = _restricted(schema.additional_properties, free_text, name)
    types = schema.type if isinstance(schema.type, list) else [schema.type]
    if OpenAPIType.STRING in types and schema.format not in _FORMATTED and not schema.enum and schema.const is None:
        rule = FREE_TEXT_ONLY if name in free_text else NO_CONTROLS
        if schema.pattern is None:
            changes["pattern"] = rule
        elif rule not in str(schema.all_of):
            changes["all_of"] = [*(changes.get("all_of") or schema.all_of or []), Schema(pattern=rule)]
    return dataclasses.replace(schema, **changes) if changes else schema


def _closed_structs(app: Litestar) -> set[str]:
    """Names of the request structs that refuse unknown fields (``forbid_unknown_fields``): their
    schemas get ``additionalProperties: false``."""
    import msgspec

    names: set[str] = set()

    def walk(info: Any, seen: set) -> None:
        if isinstance(info, msgspec.inspect.StructType):
            if info.cls in seen:
                return
            seen.add(info.cls)
            if info.forbid_unknown_fields:
                names.add(info.cls.__name__)
            for field in info.fields:
                walk(field.type, seen)
        for attr in ("type", "item_type", "value_type"):
            if isinstance(getattr(info, attr, None), msgspec.inspect.Type):
                walk(getattr(info, attr), seen)
        for t in getattr(info, "types", ()) or getattr(info, "item_types", ()):
            walk(t, seen)

    for route in app.routes:
        for handler in getattr(route, "route_handlers", ()):
            params = getattr(handler, "parsed_fn_signature", None)
            if params is not None and "data" in params.parameters:
                try:
                    walk(msgspec.inspect.type_info(params.parameters["data"].annotation), set())
                except (TypeError, ValueError):
                    continue
    return names


def _free_text_names(app: Litestar) -> frozenset[str]:
    """Every field name a request body marks free text (the guard decides by the key, as this does)."""
    from iam_cluster.api.input_guard import free_text_fields

    names: set[str] = set()
    for route in app.routes:
        for handler in getattr(route, "route_handlers", ()):
            params = getattr(handler, "parsed_fn_signature", None)
            if params is not None and "data" in params.parameters:
                names |= free_text_fields(params.parameters["data"].annotation)
            names |= set(handler.opt.get("free_text", ()))
    return frozenset(names)


def document(app: Litestar):
    """The app's OpenAPI document, completed in place the first time (``/docs`` serves it so)."""
    openapi = app.openapi_schema
    if getattr(openapi, "_iam_documented", False):
        return openapi
    openapi._iam_documented = True  # Litestar builds the object once per app and caches it
    free_text = _free_text_names(app)
    schemas = {k: _restricted(v, free_text) for k, v in (openapi.components.schemas or {}).items()}
    for name in _closed_structs(app) & set(schemas):
        schemas[name] = dataclasses.replace(schemas[name], additional_properties=False)
    openapi.components.schemas = {**schemas, **_error_schemas()}
    for route in app.routes:
        if not isinstance(route, HTTPRoute) or route.path_format not in (openapi.paths or {}):
            continue
        item = openapi.paths[route.path_format]
        for handler in route.route_handlers:
            if not handler.resolve_include_in_schema():
                continue
            for method in handler.http_methods:
                operation = getattr(item, method.lower(), None)
                if operation is not None:
                    _complete(operation, handler, route)
                    _state_the_guard(operation, free_text)
    return openapi


def _complete(operation: Any, handler: Any, route: HTTPRoute) -> None:
    params = handler.parsed_fn_signature.parameters
    api = route.path.startswith(("/api/", "/v1/"))
    authenticated = "current_user" in params
    statuses = {400}
    if api:
        statuses |= {429, 503}
    if authenticated:
        statuses |= {401, 403}
    if route.path_parameters:
        statuses.add(404)
    if "data" in params or handler.opt.get("upload"):
        statuses.add(413)
    responses = operation.responses or {}
    for status in sorted(statuses | {int(s) for s in responses if s[0] in "45"}):
        known = responses.get(str(status))
        description = known.description if known is not None and known.description else MEANING.get(status, "")
        name = "OpenAIError" if route.path.startswith("/v1/") else "Error"
        responses[str(status)] = OpenAPIResponse(
            description=description,
            content={"application/json": OpenAPIMediaType(schema=Reference(f"#/components/schemas/{name}"))},
            headers=_RETRY_AFTER if status in (429, 503) else None)
    for status, content in (handler.opt.get("content") or {}).items():
        current = responses.get(str(status))
        responses[str(status)] = OpenAPIResponse(description=current.description if current else "", content={
            media: OpenAPIMediaType(schema=schema) for media, schema in content.items()})
    operation.responses = dict(sorted(responses.items()))
    if authenticated:
        operation.security = [{BEARER: []}, {COOKIE: []}]
    if not operation.description:
        operation.description = operation.summary


def _state_the_guard(operation: Any, free_text: frozenset[str]) -> None:
    """The guard's rule on the operation's query and path parameters and on its request body."""
    for parameter in operation.parameters or ():
        if getattr(parameter, "param_in", None) in ("query", "path"):
            parameter.schema = _restricted(parameter.schema, frozenset())
    body = operation.request_body
    if body is not None and not isinstance(body, Reference):
        body.content = {media: dataclasses.replace(m, schema=_restricted(m.schema, free_text))
                        for media, m in body.content.items()}


#: Schemas for ``opt["content"]``: any JSON object, text, a binary file.
OBJECT = Schema(type=OpenAPIType.OBJECT)
TEXT = Schema(type=OpenAPIType.STRING)
BINARY = Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.BINARY)
