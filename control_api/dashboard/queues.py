"""Dashboard queue pause and resume: the buttons of the overview's queue table.

They call core.engine.pauses' functions, the API's and `jobyard queues`', with the same audit entry
(the actor is the API key's name). A queue is the whole farm's: a session whose key reaches one
tenant only gets a 403 page, as its key would from the API. The session layer (session.py) already
refused a view-only session's POST and checked the form's CSRF token.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from litestar import Request, post
from litestar.datastructures import State
from litestar.params import FromPath
from litestar.response import Redirect

from control_api.dashboard.pages import run
from control_api.dashboard.session import PageRefused
from core.access.sessions import Session
from core.engine.pauses import QueueChange, pause, resume
from core.platform.settings import Settings

#: As the API's: a reason says something, and fits in the audit log.
MAX_REASON = 2000


def _farm_session(request: Request[Any, Any, Any]) -> Session:
    session: Session = request.state.dashboard_session
    if session.reach is not None:  # the key reaches one tenant (admin keys: None)
        raise PageRefused(
            403,
            "Every tenant's queue",
            "Pausing a queue stops every tenant's jobs on it: it needs a login with a key holding admin.",
        )
    return session


def _reason(form: Any, *, required: bool) -> str:
    reason = str(form.get("reason") or "").strip()
    if required and not reason:
        raise PageRefused(422, "Reason needed", "Say why the queue is paused; the audit log keeps it.")
    if len(reason) > MAX_REASON:
        raise PageRefused(422, "Reason too long", f"A reason has at most {MAX_REASON} characters.")
    return reason


def _landing(change: QueueChange) -> Redirect:
    """The change's audit entry, or the overview when nothing changed (it already was so)."""
    if change.audit_id is None:
        return Redirect("/dashboard/", status_code=303)
    return Redirect(f"/dashboard/actions/{change.audit_id}", status_code=303)


def _change(
    settings: Settings, broker: Any, change: Callable[..., QueueChange], queue: str, actor: str, reason: str
) -> QueueChange:
    return change(settings, broker.client, queue, actor=actor, reason=reason)


async def _act(
    request: Request[Any, Any, Any], state: State, queue: str, change: Callable[..., QueueChange]
) -> Redirect:
    session = _farm_session(request)
    reason = _reason(await request.form(), required=change is pause)
    done = await run(_change, state.settings, state.broker, change, queue, session.key_name, reason)
    return _landing(done)


@post("/queues/{queue:str}/pause", name="dashboard_queue_pause")
async def pause_queue(request: Request[Any, Any, Any], state: State, queue: FromPath[str]) -> Redirect:
    return await _act(request, state, queue, pause)


@post("/queues/{queue:str}/resume", name="dashboard_queue_resume")
async def resume_queue(request: Request[Any, Any, Any], state: State, queue: FromPath[str]) -> Redirect:
    return await _act(request, state, queue, resume)
