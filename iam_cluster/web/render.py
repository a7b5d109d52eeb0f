"""Templates (Jinja, autoescaped) and the helpers every page uses: versioned static URLs, time formats."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from litestar import Request
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import Template
from litestar.template.config import TemplateConfig

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"


def clock(seconds: float | None) -> str:
    """``1:02:03`` or ``2:03``."""
    if seconds is None:
        return ""
    whole = int(seconds)
    h, m, s = whole // 3600, whole // 60 % 60, whole % 60
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def when(value: dt.datetime | None) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC") if value else ""


def size(num: int | None) -> str:
    if not num:
        return ""
    for unit in ("B", "KB", "MB"):
        if num < 1024:
            return f"{num:.0f} {unit}"
        num /= 1024
    return f"{num:.1f} GB"


def _configure(engine: JinjaTemplateEngine) -> None:
    env = engine.engine
    env.filters.update(clock=clock, when=when, size=size)
    env.trim_blocks = env.lstrip_blocks = True


def template_config() -> TemplateConfig:
    return TemplateConfig(directory=TEMPLATES, engine=JinjaTemplateEngine, engine_callback=_configure)


def page(name: str, request: Request, status_code: int = 200, **context: Any) -> Template:
    """The page ``name`` with ``context`` plus what the layout needs (who is signed in, where we are)."""
    context.setdefault("viewer", getattr(request.state, "viewer", None))
    context.setdefault("unread", getattr(request.state, "unread", 0))
    return Template(template_name=name, context={"path": request.url.path, **context}, status_code=status_code)
