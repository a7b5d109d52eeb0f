"""structlog for every process: JSON lines in production, readable console in development.

The project's structlog lines at info and debug (an access line per request among them) are
rendered and written straight to the stream: the hot path. Warnings and errors, plain ``logging``
calls, and uvicorn's and Ray's loggers go through one stdlib handler (where Sentry's logging
integration sees them) whose formatter ends with the same processors. Either way a line carries
the bound context (``request_id``, ``user_id``, ``job_id``) and the service's name, with secrets
masked (``redact``).
"""

from __future__ import annotations

import logging
import sys
from datetime import datetime, timezone
from typing import Any, TextIO

import msgspec
import structlog

from iam_cluster.observability import context
from iam_cluster.observability.redact import redact_event_dict
from iam_cluster.settings import ObservabilitySettings

#: Loggers of libraries that install their own stderr handlers: theirs are replaced by ours.
THIRD_PARTY = ("uvicorn", "uvicorn.error", "uvicorn.access", "ray", "ray.serve", "ray.data")

_handler: logging.Handler | None = None
#: Bumped by every (re)configuration, so loggers bound before it bind again.
_generation = 0


class _Logger:
    """A structlog logger bound once per configuration (binding on every call costs)."""

    __slots__ = ("_name", "_bound", "_generation")

    def __init__(self, name: str) -> None:
        self._name, self._bound, self._generation = name, None, -1

    def __reduce__(self):  # pickled with the classes that hold it (Ray ships deployments so)
        return _Logger, (self._name,)

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("_"):  # never a logging method; and unset slots must not recurse
            raise AttributeError(attr)
        if self._generation != _generation:
            self._bound, self._generation = structlog.get_logger(self._name).bind(), _generation
        return getattr(self._bound, attr)


def get_logger(name: str) -> Any:
    """A structlog logger: ``log.info("job completed", audio_s=12.5)``."""
    return _Logger(name)


def _merge_context(logger: Any, method: str, event_dict: dict) -> dict:
    bound = context.current()  # a copy: another thread of the request may add to it meanwhile
    if bound:
        for key, value in bound.items():
            event_dict.setdefault(key, value)
    return event_dict


#: structlog method names that are not level names.
_LEVELS = {"warn": "warning", "exception": "error", "fatal": "critical", "msg": "info"}


def _stamper(service: str):
    """The project's lines, in one step: time, level, service, logger, then the bound context and
    the call's own fields (which win), keys in reading order."""

    def stamp(logger: Any, method: str, event_dict: dict) -> dict:
        line = {"timestamp": datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"),
                "level": _LEVELS.get(method, method), "service": service,
                "logger": getattr(logger, "name", None), "event": event_dict.get("event")}
        line.update(context.current())
        line.update(event_dict)
        return line

    return stamp


def _add_service(service: str):
    def add(logger: Any, method: str, event_dict: dict) -> dict:
        event_dict.setdefault("service", service)
        return event_dict

    return add


#: Keys a JSON line starts with, for people reading raw lines.
_FIRST = ("timestamp", "level", "service", "logger", "event")


def _order(logger: Any, method: str, event_dict: dict) -> dict:
    if event_dict.get("message") == event_dict.get("event"):  # a stdlib record formatted before us
        del event_dict["message"]
    return {**{k: event_dict[k] for k in _FIRST if k in event_dict}, **event_dict}


def _dumps(obj: Any, **_: Any) -> str:
    return msgspec.json.encode(obj, enc_hook=str).decode()


def resolve_format(log_format: str, stream: TextIO) -> str:
    """``json`` or ``console``; ``auto`` picks console on a terminal."""
    if log_format == "auto":
        return "console" if getattr(stream, "isatty", lambda: False)() else "json"
    return log_format


class _Output:
    """structlog's logger. A rendered line (info, debug) is written straight to the stream, under
    the stdlib handler's lock so lines never interleave; warnings and errors arrive as stdlib
    arguments and go through stdlib logging, where Sentry's logging integration sees them."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._stdlib = logging.getLogger(name)

    def _write(self, line: str) -> None:
        handler = _handler
        if handler is None:  # logging was reset under a logger still in use
            return
        with handler.lock:
            handler.stream.write(line + "\n")
            handler.stream.flush()

    debug = info = msg = _write

    def _forward(self, level: int, *args: Any, **kwargs: Any) -> None:
        self._stdlib.log(level, *args, **kwargs)

    def warning(self, *args: Any, **kwargs: Any) -> None:
        self._forward(logging.WARNING, *args, **kwargs)

    def error(self, *args: Any, **kwargs: Any) -> None:
        self._forward(logging.ERROR, *args, **kwargs)

    def critical(self, *args: Any, **kwargs: Any) -> None:
        self._forward(logging.CRITICAL, *args, **kwargs)

    warn = warning
    exception = fatal = error


_outputs: dict[str, _Output] = {}


def _output_for(name: str | None = None, *args: Any) -> _Output:
    name = name or "iam_cluster"
    output = _outputs.get(name)
    if output is None:
        output = _outputs[name] = _Output(name)
    return output


def _finish(render: list):
    """Last processor: info and debug are rendered here; warnings and errors go to stdlib logging."""
    def finish(logger: Any, method: str, event_dict: dict):
        if method in ("debug", "info", "msg"):
            for processor in render:
                event_dict = processor(logger, method, event_dict)
            return event_dict
        return structlog.stdlib.ProcessorFormatter.wrap_for_formatter(logger, method, event_dict)

    return finish


def configure_logging(settings: ObservabilitySettings, service: str, stream: TextIO | None = None) -> None:
    """Routes all logging of this process through structlog (idempotent; the last call wins).

    Args:
        settings: Format (``json``/``console``/``auto``) and level.
        service: ``api``, ``worker``, ``serve``...: written into every line.
        stream: Where lines go; default the process's real stderr (under Ray Serve, ``sys.stderr``
            may be a logger of Ray's own).
    """
    global _handler
    stream = stream or sys.__stderr__ or sys.stderr
    as_json = resolve_format(settings.log_format, stream) == "json"
    level = logging.getLevelName(settings.log_level.upper())
    if not isinstance(level, int):
        level = logging.INFO
    renderer = (structlog.processors.JSONRenderer(serializer=_dumps) if as_json
                else structlog.dev.ConsoleRenderer(colors=getattr(stream, "isatty", lambda: False)()))
    render = [*([structlog.processors.format_exc_info] if as_json else []), redact_event_dict, renderer]
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[_merge_context, structlog.stdlib.add_log_level, structlog.stdlib.add_logger_name,
                           structlog.stdlib.ExtraAdder(), structlog.processors.TimeStamper(fmt="iso", utc=True),
                           _add_service(service)],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    *([_order] if as_json else []), *render],
    )
    structlog.configure(
        processors=[_stamper(service), _finish(render)],
        logger_factory=_output_for,
        wrapper_class=structlog.make_filtering_bound_logger(level),
        cache_logger_on_first_use=False,  # ``get_logger``'s loggers cache per configuration instead
    )
    _bump()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    if _handler is not None:
        root.removeHandler(_handler)
    for existing in list(root.handlers):  # a basicConfig() made before us
        if type(existing) is logging.StreamHandler:
            root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    _handler = handler
    _route_third_party(handler)


def _route_third_party(handler: logging.Handler) -> None:
    """uvicorn's and Ray's loggers: their console handlers give way to ours (files are kept)."""
    for name in THIRD_PARTY:
        logger = logging.getLogger(name)
        logger.setLevel(logging.NOTSET)  # an embedded uvicorn may have set its own; ours governs
        logger.disabled = False
        for existing in list(logger.handlers):
            if type(existing) is logging.StreamHandler:
                logger.removeHandler(existing)
        if not logger.propagate and handler not in logger.handlers:
            logger.addHandler(handler)


def library_defaults() -> None:
    """Until a process configures logging, structlog calls are plain stdlib records (library use,
    tests): the event is the message, the fields and bound context ride along as ``extra``."""
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            _merge_context,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.stdlib.render_to_log_kwargs,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    _bump()


def _bump() -> None:
    global _generation
    _generation += 1


def reset_logging() -> None:
    """Undoes ``configure_logging`` (tests)."""
    global _handler
    if _handler is not None:
        logging.getLogger().removeHandler(_handler)
        for name in THIRD_PARTY:
            logging.getLogger(name).removeHandler(_handler)
        _handler = None
    structlog.reset_defaults()
    library_defaults()


if not structlog.is_configured():
    library_defaults()
