"""The dashboard's workers page: each worker alive, what it runs, and quieting one.

Read and written through core.engine.workers, the functions `GET /v1/workers` and
`POST /v1/workers/{id}/quiet` call. Workers are the farm's: every session sees them, a session of
one tenant sees its own tenant's jobs among those they run, and only a session whose key reaches
every tenant (admin) may quiet one, as only such a key may through the API.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, get, post
from litestar.datastructures import State
from litestar.params import FromPath
from litestar.response import Redirect, Template

from control_api.dashboard.pages import run
from control_api.dashboard.render import page
from control_api.dashboard.session import FRAGMENT, PageRefused, session_reach
from core.access.sessions import Session
from core.engine.jobs import utcnow
from core.engine.workers import list_workers, request_quiet
from core.platform.db import snapshot, transaction
from core.platform.settings import Settings

#: The longest reason the form takes (the API's limit).
MAX_REASON = 2000


def _workers(settings: Settings, reach: str | None) -> dict[str, Any]:
    with snapshot(settings) as conn:
        return {"workers": list_workers(conn, utcnow(), settings.worker_dead_after_s, reach)}


@get("/workers", name="dashboard_workers")
async def workers_page(request: Request[Any, Any, Any], state: State) -> Template:
    return page(request, "workers.html", **await run(_workers, state.settings, session_reach(request)))


@get("/workers/fragment", name="dashboard_workers_fragment", opt={FRAGMENT: True})
async def workers_fragment(request: Request[Any, Any, Any], state: State) -> Template:
    return page(request, "_workers.html", **await run(_workers, state.settings, session_reach(request)))


def _quiet(settings: Settings, worker_id: str, actor: str, reason: str) -> None:
    with transaction(settings) as conn:
        request_quiet(conn, worker_id, utcnow(), settings.worker_dead_after_s, actor=actor, reason=reason)


@post("/workers/{worker_id:str}/quiet", name="dashboard_worker_quiet")
async def quiet_worker(request: Request[Any, Any, Any], state: State, worker_id: FromPath[str]) -> Redirect:
    session: Session = request.state.dashboard_session
    if session.reach is not None:
        raise PageRefused(
            403,
            "Refused",
            "Workers run every tenant's jobs: quieting one needs a key holding admin.",
        )
    form = await request.form()
    reason = form.get("reason")
    if not isinstance(reason, str) or not reason.strip() or len(reason) > MAX_REASON:
        raise PageRefused(422, "Bad form", f"Give a reason (1 to {MAX_REASON} characters) for the audit log.")
    if len(worker_id) > 300:
        raise PageRefused(404, "Not found", "No such worker.")
    await run(_quiet, state.settings, worker_id, session.key_name, reason.strip())
    return Redirect("/dashboard/workers", status_code=303)
