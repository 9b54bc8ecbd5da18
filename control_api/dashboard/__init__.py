"""The ops dashboard at /dashboard: server-rendered pages, every asset served from this package (it
works with no internet), logged in with an API key holding `ops` (see session.py).

No page has inline script or inline event handlers, so a Content-Security-Policy of `script-src
'self'` holds; the few bits of behaviour (refreshing, select all) are in static/dashboard.js.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy.exc
from litestar import Request, Response, Router
from litestar.datastructures import CacheControlHeader
from litestar.exceptions import HTTPException
from litestar.static_files import create_static_files_router

from control_api.dashboard import deadletters, jobs, live, pages, queues, session, workers
from control_api.dashboard.render import STATIC, STATIC_PATH, page, template_config
from control_api.dashboard.session import PageRefused
from control_api.errors import status_of, unexpected
from core.errors import JobyardError

__all__ = ["dashboard_routers", "template_config"]

#: Route opts that take the dashboard out of API-key authentication; its own check is session.py's.
SESSION_AUTH: dict[str, Any] = {"exclude_from_auth": True, "auth": "session"}
PUBLIC_AUTH: dict[str, Any] = {"exclude_from_auth": True, "auth": "public"}


def _refused(request: Request[Any, Any, Any], exc: PageRefused) -> Response[Any]:
    return page(request, "error.html", exc.status_code, title=exc.title, message=exc.message)


#: The heading of a core error's page, by its status (which is the API's: control_api/errors.py).
_TITLES = {400: "Bad link", 404: "Not found", 409: "Conflict", 422: "Bad form", 503: "Unavailable"}


def _core_error(request: Request[Any, Any, Any], exc: JobyardError) -> Response[Any]:
    status = status_of(exc)
    if status is None:  # a job failure met by a request is a bug: the API's 500
        return unexpected(request, exc)
    message = exc.message[:1].upper() + exc.message[1:]
    return page(request, "error.html", status, title=_TITLES.get(status, "Error"), message=f"{message}.")


def _http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    return page(request, "error.html", exc.status_code, title="Error", message=exc.detail)


def _database_down(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    return page(
        request,
        "error.html",
        503,
        title="Postgres is unavailable",
        message="The dashboard reads Postgres; try again.",
    )


def dashboard_routers() -> list[Router]:
    pages_router = Router(
        path="/dashboard",
        route_handlers=[
            session.login_form,
            session.login,
            session.logout,
            session.choose_tenant,
            pages.overview,
            pages.overview_fragment,
            pages.job_page,
            pages.job_fragment,
            pages.workflow_page,
            pages.schedules,
            pages.set_enabled,
            pages.audit,
            pages.action_done,
            deadletters.dead_letters,
            deadletters.preview,
            deadletters.apply,
            jobs.jobs_page,
            jobs.preview,
            jobs.apply,
            jobs.act,
            queues.pause_queue,
            queues.resume_queue,
            workers.workers_page,
            workers.workers_fragment,
            workers.quiet_worker,
            live.dashboard_events,
        ],
        before_request=session.require_session,
        exception_handlers={
            PageRefused: _refused,
            JobyardError: _core_error,
            HTTPException: _http_error,
            sqlalchemy.exc.OperationalError: _database_down,
            sqlalchemy.exc.InterfaceError: _database_down,
        },
        opt=SESSION_AUTH,
        include_in_schema=False,
    )
    static_router = create_static_files_router(
        path=STATIC_PATH,
        directories=[STATIC],
        opt=PUBLIC_AUTH,
        include_in_schema=False,
        # URLs carry a content hash (render.static_url), so a long cache is safe.
        cache_control=CacheControlHeader(max_age=86400),
    )
    return [pages_router, static_router]
