"""Frozen msgspec structs read from environment variables: the mechanism behind ``settings``.

A struct names its variables by ``env_prefix`` + the field's name in upper case, unless its
``env_names`` maps the field to others (first match wins). msgspec converts and validates the
strings (``strict=False``: "3" is 3, "true" is True); mapping fields collect every variable under
their prefix, tuple fields split on commas; a bad value is a ``ConfigError`` naming the variable.
"""

from __future__ import annotations

import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated

import msgspec

from iam_cluster.errors import ConfigError


def _dec_hook(kind: type, value):
    if kind is Path:
        return Path(value).expanduser()
    raise NotImplementedError(kind)


def env_names(cls: type, field: str) -> tuple[str, ...]:
    """The environment variables a settings field is read from, first match wins."""
    return getattr(cls, "env_names", {}).get(field) or (f"{cls.env_prefix}{field.upper()}",)


def _container(hint) -> type | None:
    """``dict`` or ``tuple`` when a field holds a mapping or a sequence (through Annotated/Optional)."""
    while typing.get_origin(hint) is Annotated:
        hint = typing.get_args(hint)[0]
    origin = typing.get_origin(hint)
    return origin if origin in (dict, tuple) else None


def from_env(cls: type, env: Mapping[str, str]):
    """An instance of the struct ``cls`` from the variables in ``env`` (defaults for the absent ones)."""
    hints = typing.get_type_hints(cls, include_extras=True)
    raw: dict[str, object] = {}
    for field in msgspec.structs.fields(cls):
        names = env_names(cls, field.name)
        kind = _container(hints[field.name])
        if kind is dict:
            prefix = names[0] + "_"
            found = {k[len(prefix):].lower(): v for k, v in env.items() if k.startswith(prefix) and v}
            if found:
                raw[field.name] = found
            continue
        value = next((env[n] for n in names if env.get(n)), None)
        if value is not None:
            raw[field.name] = [v.strip() for v in value.split(",") if v.strip()] if kind is tuple else value
    try:
        return msgspec.convert(raw, cls, strict=False, dec_hook=_dec_hook)
    except msgspec.ValidationError as exc:
        message, _, where = str(exc).partition(" - at `$.")
        field = where.split(".")[0].split("[")[0].rstrip("`")
        known = field in {f.name for f in msgspec.structs.fields(cls)}
        raise ConfigError(f"{env_names(cls, field)[0] if known else cls.__name__}: {message}") from None
