"""The web app's shell: who is signed in, sign up / in / out, error pages, and the router of every page."""

from __future__ import annotations

from urllib.parse import quote

import msgspec
from litestar import Request, Response, Router, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromQuery
from litestar.exceptions import HTTPException
from litestar.response import Redirect, Template
from litestar.static_files import create_static_files_router
from litestar.datastructures import CacheControlHeader
from psycopg import AsyncConnection

from iam_cluster.api import limits, ratelimit
from iam_cluster.api.auth import RegisterRequest, check_login, create_user
from iam_cluster.api.errors import STATUS, APIError, iam_error_handler
from iam_cluster.api.input_guard import ControlCharacters
from iam_cluster.db.queries import fetch_one
from iam_cluster.db.rows import User
from iam_cluster.errors import IAMError
from iam_cluster.settings import Settings
from iam_cluster.web import account, inbox, meetings
from iam_cluster.web.render import STATIC, page
from iam_cluster.web.session import SESSION_COOKIE, cleared_cookie, end_session, session_cookie, start_session, user_of


class SignInRequired(IAMError):
    """Sign in to see this page."""

    code = "unauthorized"


async def provide_viewer(request: Request, conn: NamedDependency[AsyncConnection]) -> User:
    """The signed-in user of a page (and the inbox badge's count); anyone else is sent to sign in."""
    user = await user_of(conn, request.cookies.get(SESSION_COOKIE))
    if user is None:
        raise SignInRequired()
    stats = await fetch_one(conn, "messages_stats", {"user_id": user.id})
    request.state.viewer, request.state.unread = user, stats["unread"] if stats else 0
    return user


def safe_next(target: str | None) -> str:
    """Only a path of this site: never ``//elsewhere`` or a full URL (no open redirect)."""
    if target and target.startswith("/") and not target.startswith(("//", "/\\")):
        return target
    return "/meetings"


async def _over_budget(request: Request, settings: Settings) -> int | None:
    """Counts a sign-in attempt against the per-IP budget the API's login shares; seconds to wait if spent.

    Raises:
        APIError: ``unavailable`` (503) without Redis: the budgets are what stops password guessing.
    """
    state, ip = request.app.state, request.client.host if request.client else "unknown"
    try:
        return await state.redis_gate.call(lambda: limits.hit(
            state.redis, settings.redis.key_prefix, [(f"auth:{ip}", settings.api.auth_rate_limit_per_ip)],
            ratelimit.WINDOW_S))
    except limits.RedisDown:
        raise limits.unavailable("signing in") from None


async def _signed_in(conn: AsyncConnection, request: Request, user: User, settings: Settings, target: str) -> Redirect:
    token = await start_session(conn, user, settings, request.headers.get("user-agent"))
    return Redirect(safe_next(target), status_code=303, cookies=[session_cookie(token, settings)])


@get("/", name="home")
async def home(request: Request, conn: NamedDependency[AsyncConnection]) -> Redirect:
    user = await user_of(conn, request.cookies.get(SESSION_COOKIE))
    return Redirect("/meetings" if user else "/login")


@get("/login")
async def login_page(request: Request, next: FromQuery[str | None] = None) -> Template:  # noqa: A002
    return page("login.html", request, next=safe_next(next))


@post("/login")
async def login(request: Request, conn: NamedDependency[AsyncConnection], settings: NamedDependency[Settings]) -> Response:
    form = await request.form()
    email, target = str(form.get("email", ""))[:254], safe_next(form.get("next"))
    if (wait := await _over_budget(request, settings)) is not None:
        return page("login.html", request, 429, email=email, next=target,
                    error=f"Too many sign-in attempts. Try again in {wait} seconds.")
    try:
        user = await check_login(request, conn, settings, email, str(form.get("password", ""))[:128])
    except APIError as exc:
        return page("login.html", request, STATUS.get(exc.code, 400), email=email, next=target,
                    error=exc.message[:1].upper() + exc.message[1:] + ".")
    return await _signed_in(conn, request, user, settings, target)


@get("/signup")
async def signup_page(request: Request) -> Template:
    return page("signup.html", request)


@post("/signup")
async def signup(request: Request, conn: NamedDependency[AsyncConnection], settings: NamedDependency[Settings]) -> Response:
    form = await request.form()
    fields = {k: str(form.get(k, "")).strip() for k in ("email", "full_name")}
    if (wait := await _over_budget(request, settings)) is not None:
        return page("signup.html", request, 429, **fields, error=f"Too many attempts. Try again in {wait} seconds.")
    try:
        data = msgspec.convert({"email": fields["email"], "password": str(form.get("password", "")),
                                "full_name": fields["full_name"] or None}, RegisterRequest)
        user = await create_user(conn, data)
    except msgspec.ValidationError as exc:
        message = "Enter a valid email address." if "email" in str(exc) else "Choose a password of 8 to 128 characters."
        return page("signup.html", request, 400, **fields, error=message)
    except APIError as exc:
        message = "That email is already registered. Sign in instead?" if exc.code == "conflict" else exc.message
        return page("signup.html", request, STATUS.get(exc.code, 400), **fields, error=message)
    return await _signed_in(conn, request, user, settings, "/meetings/new")


@post("/logout")
async def logout(request: Request, conn: NamedDependency[AsyncConnection], settings: NamedDependency[Settings]) -> Redirect:
    await end_session(conn, request.cookies.get(SESSION_COOKIE))
    return Redirect("/login", status_code=303, cookies=[cleared_cookie(settings)])


def _error_page(request: Request, exc: Exception) -> Response:
    """Pages answer errors as pages: sign-in redirects, a 404 page for what is not the viewer's."""
    if isinstance(exc, SignInRequired):
        return Redirect(f"/login?next={quote(request.url.path)}")
    if isinstance(exc, ControlCharacters):  # a crafted request (no browser sends them): JSON naming the field
        return iam_error_handler(request, exc)
    if isinstance(exc, HTTPException):
        status, message = exc.status_code, str(exc.detail)
    elif isinstance(exc, IAMError):
        status, message = STATUS.get(exc.code, 500), exc.message
    else:
        status, message = 500, "internal error"
    if status >= 500:
        from iam_cluster.api.errors import log

        log.exception("page failed: %s", request.url.path, exc_info=exc)
        message = "Something went wrong on our side."
    name = "not_found.html" if status == 404 else "error.html"
    return page(name, request, status, status=status, message=message)


def web_handlers() -> list:
    """Every page, and the static files, under ``/``."""
    pages = Router("/", route_handlers=[
        home, login_page, login, signup_page, signup, logout,
        *meetings.handlers, *inbox.handlers, *account.handlers,
    ], dependencies={"viewer": Provide(provide_viewer)}, exception_handlers={IAMError: _error_page, HTTPException: _error_page, Exception: _error_page},
        include_in_schema=False)
    static = create_static_files_router("/static", directories=[STATIC], include_in_schema=False,
                                        cache_control=CacheControlHeader(no_cache=True))
    return [pages, static]

