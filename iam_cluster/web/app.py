"""What the API application mounts for the web app: its pages, templates and protection middleware."""

from __future__ import annotations

from litestar.template.config import TemplateConfig

from iam_cluster.settings import Settings
from iam_cluster.web.protect import WebProtection
from iam_cluster.web.render import template_config as _template_config


def handlers(settings: Settings) -> list:
    """The pages and static files (none when ``WEB_ENABLED=false``)."""
    if not settings.web.enabled:
        return []
    from iam_cluster.web.pages import web_handlers

    return web_handlers()


def protection(settings: Settings) -> WebProtection:
    """CSRF checks for pages and cookie-authenticated API calls, security headers for pages."""
    return WebProtection(settings)


def template_config() -> TemplateConfig:
    return _template_config()
