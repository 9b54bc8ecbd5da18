"""The dashboard's live stream, /dashboard/events: what changed, as Server-Sent Events, so the open
page re-reads the fragment concerned at once instead of waiting for its next poll.

The API's events stream (control_api/events.py) takes an API key; the dashboard holds a session
cookie, so this is its own route behind the session check, reading from the same process reader
(control_api/fanout.py) with the session's reach: its tenant's events, or every tenant's for a
session reaching every tenant with none chosen. Subscribing counts as listening, so those tenants'
events are recorded while a page is open, and JOBYARD_EVENTS_WINDOW_S after (core/events/log.py):
with every tenant shown, that is one event row per finished job of the farm meanwhile.

Each message names the change only, never its data: ``event: <type>`` and
``data: {"type", "subject", "job_type"}`` (a job event's subject is the job's id). The page fetches
what it shows through its fragments, with the reach they check. There is no replay: a page that
reconnects re-reads its fragments anyway. A stream ends after JOBYARD_EVENTS_STREAM_MAX_S, or as soon
as a keep-alive finds the session gone (logged out, expired, its key revoked); the browser's
EventSource then reconnects, or the page falls back to polling (static/dashboard.js).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
from litestar import Request, get
from litestar.background_tasks import BackgroundTask
from litestar.datastructures import State
from litestar.response import Stream

from control_api.dashboard.session import FRAGMENT, SESSION_COOKIE, find_live_session, session_reach
from control_api.events import KEEP_ALIVE, RETRY_MS, frame
from control_api.fanout import Fanout, Subscriber
from core.access.sessions import Session
from core.platform.settings import Settings


async def _messages(settings: Settings, fanout: Fanout, sub: Subscriber, token: str) -> AsyncIterator[bytes]:
    try:
        yield f"retry: {RETRY_MS}\n".encode() + frame("ready", {})
        ends = time.monotonic() + settings.events_stream_max_s
        while (left := ends - time.monotonic()) > 0:
            try:
                event = await asyncio.wait_for(sub.queue.get(), min(left, settings.events_keepalive_s))
            except TimeoutError:
                if await anyio.to_thread.run_sync(find_live_session, settings, token) is None:
                    return  # logged out, expired or revoked: the page's next fetch finds out
                yield KEEP_ALIVE
                continue
            if event is None:
                return  # too slow, or shutting down: the browser reconnects
            yield frame(
                event.type, {"type": event.type, "subject": event.subject, "job_type": event.job_type}
            )
    finally:
        fanout.unsubscribe(sub)


@get("/events", name="dashboard_events", opt={FRAGMENT: True})
async def dashboard_events(request: Request[Any, Any, Any], state: State) -> Stream:
    settings: Settings = state.settings
    fanout: Fanout = state.fanout
    session: Session = request.state.dashboard_session
    sub = await fanout.subscribe(
        session_reach(request), None, key_id=str(session.key_id), record_s=settings.events_window_s
    )
    return Stream(
        _messages(settings, fanout, sub, request.cookies.get(SESSION_COOKIE, "")),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        background=BackgroundTask(fanout.release, sub),
    )
