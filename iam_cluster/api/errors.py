"""Client errors mapped to HTTP in one place; tracebacks are logged for 5xx only."""

from __future__ import annotations

import logging

from litestar import Request, Response
from litestar.exceptions import HTTPException, NotAuthorizedException, NotFoundException, ValidationException

from iam_cluster.errors import IAMError, OptionsError

log = logging.getLogger("iam_cluster.api")

#: Error code -> HTTP status. Codes not listed are server errors (500).
STATUS = {
    "bad_request": 400, "invalid_value": 400, "invalid_characters": 400, "config": 400,
    "unauthorized": 401, "invalid_token": 401,
    "payment_required": 402, "quota_exceeded": 402,
    "forbidden": 403,
    "not_found": 404, "invalid_reference": 404, "model_not_found": 404,
    "request_timeout": 408,
    "conflict": 409, "idempotency_conflict": 409,
    "too_large": 413, "range_not_satisfiable": 416,
    "bad_archive": 422, "invalid_source": 422, "unsafe_member": 422, "archive_too_large": 413, "member_too_large": 413,
    "invalid_options": 422, "weak_password": 422,
    "unsupported_media": 415, "empty_media": 422, "truncated_media": 422, "too_short": 422, "too_long": 422,
    "rate_limited": 429,
    "database_unavailable": 503, "storage": 503, "unavailable": 503,
}


class APIError(IAMError):
    """Request failed."""

    def __init__(self, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.headers = headers or {}


def body(code: str, message: str, status: int, field: str | None = None) -> dict:
    error = {"code": code, "message": message, "status": status}
    return {"error": {**error, "field": field} if field else error}


def iam_error_handler(request: Request, exc: IAMError) -> Response:
    status = STATUS.get(exc.code, 500)
    if status >= 500:
        log.exception("request failed: %s %s", request.method, request.url.path, exc_info=exc)
    message = exc.message if status < 500 else "internal error"
    return Response(body(exc.code, message, status, getattr(exc, "field", None)), status_code=status,
                    headers=getattr(exc, "headers", None))


def invalid_options(request: Request, exc: ValidationException) -> Response:
    """A transcription request's body that does not decode: 422 ``invalid_options`` naming the field."""
    extra = exc.extra if isinstance(exc.extra, list) else []
    detail = next((e for e in extra if isinstance(e, dict) and e.get("source") == "body"), None)
    if detail is None:
        return http_error_handler(request, exc)
    key, message = detail.get("key"), str(detail.get("message", ""))
    error = OptionsError(key, message) if key and key != "data" else OptionsError.from_validation(message)
    return iam_error_handler(request, error)


def http_error_handler(request: Request, exc: HTTPException) -> Response:
    if isinstance(exc, NotFoundException) and "route_handler" not in request.scope:
        from iam_cluster.api import input_guard

        if input_guard.has_control(request.scope["path"]):  # a path parameter that fails its type (a uuid...)
            field = input_guard.path_field(request.app, request.scope["path"])
            return iam_error_handler(request, input_guard.ControlCharacters(field, next(
                c for c in request.scope["path"] if input_guard.has_control(c))))
    status = exc.status_code
    if isinstance(exc, ValidationException):
        code = "bad_request"
    elif isinstance(exc, NotAuthorizedException):
        code = "unauthorized"
    else:
        code = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
                405: "method_not_allowed", 413: "too_large", 429: "rate_limited"}.get(status, "error")
    if status >= 500:
        log.exception("request failed: %s %s", request.method, request.url.path, exc_info=exc)
    detail = exc.detail if status < 500 else "internal error"
    extra = {"details": exc.extra} if isinstance(exc, ValidationException) and exc.extra else {}
    field = next((e.get("key") for e in extra.get("details", ()) if isinstance(e, dict) and e.get("key")), None)
    return Response({**body(code, str(detail), status, field), **extra}, status_code=status, headers=exc.headers)


def unhandled_error_handler(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error: %s %s", request.method, request.url.path, exc_info=exc)
    return Response(body("internal", "internal error", 500), status_code=500)


def is_client_error(exc: BaseException) -> bool:
    """Whether ``exc`` answers a 4xx: the caller's mistake, not worth an error report."""
    if isinstance(exc, IAMError):
        return STATUS.get(exc.code, 500) < 500
    return isinstance(exc, HTTPException) and exc.status_code < 500


def dependency_down(request: Request, exc: Exception) -> Response:
    """PostgreSQL or Redis unreachable (or too slow): 503 at once, never a 500 after a long wait."""
    from redis.exceptions import RedisError

    code, what = ("unavailable", "Redis") if isinstance(exc, RedisError) else ("database_unavailable", "the database")
    log.error("%s is unavailable: %s %s: %s", what, request.method, request.url.path, exc)
    return Response(body(code, f"{what} is unavailable right now; retry shortly", 503), status_code=503,
                    headers={"Retry-After": "5"})


def _dependency_errors() -> dict:
    from psycopg import OperationalError
    from psycopg_pool import PoolTimeout
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    return {exc: dependency_down for exc in (PoolTimeout, OperationalError, RedisConnectionError, RedisTimeoutError)}


EXCEPTION_HANDLERS = {
    **_dependency_errors(),
    IAMError: iam_error_handler,
    HTTPException: http_error_handler,
    Exception: unhandled_error_handler,
}
