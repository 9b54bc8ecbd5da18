"""Logging in to the dashboard, and the check in front of every other dashboard route.

The login form takes an API key holding `ops` and sets a session cookie (HTTP-only, SameSite=Strict,
Secure over https, scoped to /dashboard); the key itself is never stored in the browser. Every form
that changes something carries the session's CSRF token (synchronizer pattern, compared in constant
time), and a POST whose Origin names another host is refused as well. The login form, which has no
session yet, is protected by a double-submit cookie of its own.

A session whose key holds admin reaches every tenant; it may narrow its pages to one tenant with the
selector in the header, which sets a cookie of the chosen tenant (a POST carrying the CSRF token).
Every page then reads with that tenant as its reach, as a login of that tenant's key would. A
session of one tenant has no choice: the cookie is ignored, and choosing another tenant answers 404.
"""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import quote, urlsplit

import anyio
from litestar import Request, get, post
from litestar.datastructures import Cookie, State
from litestar.exceptions import NotAuthorizedException
from litestar.params import FromQuery
from litestar.response import Redirect, Response, Template

from control_api.auth import authenticate, client_address
from control_api.dashboard.render import page
from control_api.errors import ApiError
from core.access.keys import ApiKey, known_tenants
from core.access.sessions import (
    DASHBOARD_SCOPE,
    DASHBOARD_SCOPES,
    Session,
    close_session,
    find_session,
    open_session,
)
from core.platform.db import transaction
from core.platform.settings import Settings
from core.platform.tenants import TENANT_SHAPE

SESSION_COOKIE = "jobyard_session"
LOGIN_COOKIE = "jobyard_login_csrf"
#: The tenant an admin session narrows its pages to (absent: every tenant).
TENANT_COOKIE = "jobyard_tenant"
#: The hidden field every dashboard form sends back.
CSRF_FIELD = "csrf_token"
COOKIE_PATH = "/dashboard"
LOGIN_PATH = "/dashboard/login"
#: Route opt of the few dashboard routes reachable without a session (the login form).
PUBLIC = "dashboard_public"
#: Route opt of the fragments the pages poll: no header, so no list of tenants to read.
FRAGMENT = "dashboard_fragment"
#: Route opt of the few POSTs that change no job and that a view-only (`ops:read`) session may send:
#: logging out and choosing the tenant its pages show.
VIEW_ONLY_OK = "dashboard_view_only_ok"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class PageRefused(Exception):
    """A dashboard request that must not go through; shown to the user as an error page."""

    def __init__(self, status_code: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status_code, self.title, self.message = status_code, title, message


def _secure(request: Request[Any, Any, Any], settings: Settings) -> bool:
    # The scheme is the connection's, or a trusted proxy's X-Forwarded-Proto (control_api/forwarded.py).
    return settings.dashboard_secure_cookie == "always" or request.url.scheme == "https"


def _cookie(request: Request[Any, Any, Any], name: str, value: str, max_age: int, path: str) -> Cookie:
    settings: Settings = request.app.state.settings
    return Cookie(
        key=name,
        value=value,
        max_age=max_age,
        path=path,
        httponly=True,
        samesite="strict",
        secure=_secure(request, settings),
    )


def safe_next(target: str | None) -> str:
    # Only a dashboard path: never another site (//evil.example, https://...), never the login itself.
    if not target or not target.startswith(COOKIE_PATH) or target.startswith(LOGIN_PATH):
        return COOKIE_PATH
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return COOKIE_PATH
    return target


def _check_origin(request: Request[Any, Any, Any]) -> None:
    origin = request.headers.get("origin")
    if origin and origin != "null" and urlsplit(origin).netloc != request.headers.get("host"):
        raise PageRefused(403, "Refused", "This form was sent from another site.")


def find_live_session(settings: Settings, token: str) -> Session | None:
    """The session of a cookie's token, if still live (a transaction of its own)."""
    with transaction(settings) as conn:
        return find_session(conn, token)


_lookup = find_live_session


def _lookup_with_tenants(settings: Settings, token: str) -> tuple[Session | None, list[str] | None]:
    """The session, and for one reaching every tenant the tenants its header's selector lists."""
    with transaction(settings) as conn:
        session = find_session(conn, token)
        tenants = known_tenants(conn) if session is not None and session.reach is None else None
    return session, tenants


def chosen_tenant(value: str | None) -> str | None:
    """The tenant a cookie or a form names, or None for every tenant ('' or absent); raises
    ValueError for anything that is not a tenant's name (core.platform.tenants.TENANT_SHAPE)."""
    if not value:
        return None
    if not TENANT_SHAPE.fullmatch(value):
        raise ValueError(value)
    return value


def _reach(request: Request[Any, Any, Any], session: Session) -> str | None:
    """What the request's pages see: the session's own tenant, or for a session reaching every
    tenant the one chosen in the header (a cookie that is not a tenant's name is ignored)."""
    if session.reach is not None:
        return session.reach
    try:
        return chosen_tenant(request.cookies.get(TENANT_COOKIE))
    except ValueError:
        return None


async def require_session(request: Request[Any, Any, Any]) -> Response[Any] | None:
    """Before every dashboard route: a live session (else off to the login form), and for anything
    but a read, the session's CSRF token in the form."""
    if request.route_handler.opt.get(PUBLIC):
        return None
    settings: Settings = request.app.state.settings
    token = request.cookies.get(SESSION_COOKIE)
    session, tenants = None, None
    if token and (request.method not in _SAFE_METHODS or request.route_handler.opt.get(FRAGMENT)):
        session = await anyio.to_thread.run_sync(_lookup, settings, token)
    elif token:  # a page with the header: its tenant selector lists the tenants
        session, tenants = await anyio.to_thread.run_sync(_lookup_with_tenants, settings, token)
    if session is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        if request.method not in _SAFE_METHODS:
            target = COOKIE_PATH
        return Redirect(f"{LOGIN_PATH}?next={quote(target, safe='')}", status_code=303)
    request.state.dashboard_session = session
    request.state.dashboard_reach = _reach(request, session)
    request.state.dashboard_tenants = tenants
    if request.method not in _SAFE_METHODS:
        _check_origin(request)
        form = await request.form()
        sent = form.get(CSRF_FIELD)
        if not isinstance(sent, str) or not secrets.compare_digest(sent, session.csrf_token):
            raise PageRefused(
                403,
                "Form expired",
                "This form could not be verified (its CSRF token is missing or stale). "
                "Reload the page and try again.",
            )
        if not session.can_act and not request.route_handler.opt.get(VIEW_ONLY_OK):
            raise PageRefused(
                403,
                "View only",
                f"This login's API key holds {DASHBOARD_SCOPES[1]!r}: it sees every page and changes "
                f"nothing. Actions need a key with {DASHBOARD_SCOPE!r}.",
            )
    return None


def session_reach(request: Request[Any, Any, Any]) -> str | None:
    """The tenant the request's pages see, or None: every tenant (its key holds admin, and no tenant
    is chosen in the header)."""
    reach: str | None = request.state.dashboard_reach
    return reach


def _login_form(request: Request[Any, Any, Any], target: str, error: str | None, status: int) -> Template:
    token = secrets.token_urlsafe(32)
    response = page(request, "login.html", status, login_token=token, next=target, error=error)
    response.cookies.append(_cookie(request, LOGIN_COOKIE, token, 3600, LOGIN_PATH))
    return response


@get("/login", opt={PUBLIC: True}, name="dashboard_login")
async def login_form(request: Request[Any, Any, Any], next: FromQuery[str | None] = None) -> Response[Any]:
    """The login form; straight on when the session is still good."""
    token = request.cookies.get(SESSION_COOKIE)
    settings: Settings = request.app.state.settings
    if token and await anyio.to_thread.run_sync(_lookup, settings, token) is not None:
        return Redirect(safe_next(next), status_code=303)
    return _login_form(request, safe_next(next), None, 200)


def _open(settings: Settings, key: ApiKey) -> tuple[str, Session]:
    with transaction(settings) as conn:
        return open_session(conn, key, settings.dashboard_session_ttl_s)


async def _login_key(request: Request[Any, Any, Any], secret: str) -> ApiKey | tuple[int, str]:
    """The key behind a login, or why not. The same path as the API's keys (control_api/auth.py):
    a malformed key is refused unread, bad keys are remembered, and failures spend the client
    address's budget, so the form is no faster a way to guess keys than the API."""
    try:
        key = await authenticate(request.app.state, client_address(request), secret)
    except ApiError as exc:  # 429: this address failed too often; 503: too many lookups at once
        return exc.status_code, f"{exc.detail[:1].upper()}{exc.detail[1:]}."
    except NotAuthorizedException:
        return 401, "That API key is unknown, revoked or expired."
    if not set(DASHBOARD_SCOPES) & set(key.scopes):
        return 401, (
            f"That API key lacks the {DASHBOARD_SCOPE!r} scope (or {DASHBOARD_SCOPES[1]!r}, to look without "
            "acting) the dashboard needs."
        )
    return key


@post("/login", opt={PUBLIC: True}, name="dashboard_login_submit")
async def login(request: Request[Any, Any, Any], state: State) -> Response[Any]:
    form = await request.form()
    _check_origin(request)
    sent, expected = form.get(CSRF_FIELD), request.cookies.get(LOGIN_COOKIE)
    target = safe_next(form.get("next") if isinstance(form.get("next"), str) else None)
    if not isinstance(sent, str) or not expected or not secrets.compare_digest(sent, expected):
        return _login_form(request, target, "The form expired; please log in again.", 403)
    secret = form.get("api_key")
    if not isinstance(secret, str) or not secret.strip():
        return _login_form(request, target, "Enter an API key.", 422)
    key = await _login_key(request, secret.strip())
    if isinstance(key, tuple):
        status, message = key
        return _login_form(request, target, message, status)
    token, _ = await anyio.to_thread.run_sync(_open, state.settings, key)
    ttl = int(state.settings.dashboard_session_ttl_s)
    return Redirect(
        target,
        status_code=303,
        cookies=[
            _cookie(request, SESSION_COOKIE, token, ttl, COOKIE_PATH),
            _cookie(request, LOGIN_COOKIE, "", 0, LOGIN_PATH),
            # A new session starts on every tenant it reaches, whatever the last one chose.
            _cookie(request, TENANT_COOKIE, "", 0, COOKIE_PATH),
        ],
    )


def _close(settings: Settings, token: str) -> None:
    with transaction(settings) as conn:
        close_session(conn, token)


@post("/logout", name="dashboard_logout", opt={VIEW_ONLY_OK: True})
async def logout(request: Request[Any, Any, Any], state: State) -> Response[Any]:
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        await anyio.to_thread.run_sync(_close, state.settings, token)
    return Redirect(
        LOGIN_PATH,
        status_code=303,
        cookies=[
            _cookie(request, SESSION_COOKIE, "", 0, COOKIE_PATH),
            _cookie(request, TENANT_COOKIE, "", 0, COOKIE_PATH),
        ],
    )


@post("/tenant", name="dashboard_tenant", opt={VIEW_ONLY_OK: True})
async def choose_tenant(request: Request[Any, Any, Any], state: State) -> Response[Any]:
    """The header's selector: narrow the session's pages to one tenant, or ('') show every tenant.
    Only a session reaching every tenant chooses; for another, any tenant but its own is not found."""
    form = await request.form()
    session: Session = request.state.dashboard_session
    value, target = form.get("tenant"), form.get("next")
    target = safe_next(target if isinstance(target, str) else None)
    try:
        if value is not None and not isinstance(value, str):
            raise ValueError(value)
        tenant = chosen_tenant(value)
    except ValueError:
        shown = value[:80] if isinstance(value, str) else "that"
        raise PageRefused(
            400,
            "Not a tenant",
            f"{shown!r} is not a tenant's name: 1-63 lower-case letters, digits and inner hyphens.",
        ) from None
    if session.reach is not None:
        if tenant not in (None, session.reach):
            raise PageRefused(404, "Not found", f"No tenant {tenant!r} for this session.")
        return Redirect(target, status_code=303)
    ttl = int(state.settings.dashboard_session_ttl_s)
    cookie = _cookie(request, TENANT_COOKIE, tenant or "", ttl if tenant else 0, COOKIE_PATH)
    return Redirect(target, status_code=303, cookies=[cookie])
