"""/v1/events: a Server-Sent Events stream of the key's tenant's events, resumable with Last-Event-ID.

A stream subscribes to the process's reader (control_api/fanout.py) first, then replays from
Postgres what came after the client's cursor, then goes on with what the reader hands it; an event
met twice on that seam (replayed, and handed out live) is sent once, since every event's cursor is
compared with the last one sent. It opens with ``event: ready``, whose id is where it starts, so a
client that loses the stream before any event resumes from there too.

A cursor is honoured while its event is within JOBYARD_EVENTS_WINDOW_S: events are recorded for a
tenant only while somebody listens, so after that the client may have missed some. It is then told
so with ``event: reset`` (and the stream goes on from now): the client reads what it must again
(GET /v1/jobs) instead of trusting a gap. A ``ready`` id carries the time it was issued in its id
part (above every event's id), so it ages the same way.

A stream ends after JOBYARD_EVENTS_STREAM_MAX_S, and the client resumes on whichever process it
reaches: streams spread again over the processes after a restart or a scale-out.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

import anyio
import msgspec
import sqlalchemy as sa
from litestar import Controller, Request, get
from litestar.background_tasks import BackgroundTask
from litestar.datastructures import State
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import Example
from litestar.params import HeaderParameter, QueryParameter
from litestar.response import Stream

from control_api.auth import requires
from control_api.fanout import Fanout, Subscriber
from core.access.keys import ApiKey
from core.errors import BadCursor, Forbidden, InvalidInput
from core.events.log import LAST, Cursor, Event, body, format_cursor, now_cursor, parse_cursor, read_after
from core.platform.db import transaction
from core.platform.settings import Settings
from core.platform.tables import events
from core.platform.tables.events import EVENT_TYPES, STREAM_ONLY_EVENT_TYPES

#: Replayed events are read from Postgres this many at a time.
REPLAY_PAGE = 500
#: Milliseconds a client waits before reconnecting (the SSE ``retry`` field).
RETRY_MS = 2000
#: What a stream may ask for; without ``types`` it gets EVENT_TYPES (job.progress only when asked).
STREAM_TYPES = EVENT_TYPES + STREAM_ONLY_EVENT_TYPES


Types = Annotated[
    str | None,
    QueryParameter(
        description=f"Comma-separated event types (all but job.progress when absent): {', '.join(STREAM_TYPES)}.",
        examples=[Example(value="job.succeeded,job.dead")],
    ),
]
TenantParam = Annotated[
    str | None, QueryParameter(description="Another tenant's events: for a key holding admin only.")
]
ResumeParam = Annotated[
    str | None,
    QueryParameter(
        description="The id of the last event received, for clients that cannot set Last-Event-ID."
    ),
]
ResumeHeader = Annotated[
    str | None,
    HeaderParameter(name="Last-Event-ID", description="The id of the last event received: resume after it."),
]


def parse_types(types: str | None) -> frozenset[str]:
    """The event types asked for (absent: every type but the stream-only ones); InvalidInput naming
    the unknown ones."""
    asked = frozenset(t.strip() for t in (types or "").split(",") if t.strip())
    unknown = sorted(asked - set(STREAM_TYPES))
    if unknown:
        raise InvalidInput(
            details=[
                {"field": "types", "message": f"unknown event types {unknown}; known: {list(STREAM_TYPES)}"}
            ]
        )
    return asked or frozenset(EVENT_TYPES)


def resume_cursor(header: str | None, query: str | None) -> Cursor | None:
    """The cursor a client resumes from: Last-Event-ID, or the ``last_event_id`` parameter."""
    value = header or query
    if not value:
        return None
    try:
        return parse_cursor(value)
    except InvalidInput as exc:
        raise BadCursor(exc.message, code="bad_last_event_id") from None


def ready_cursor(xid: int) -> Cursor:
    """A stream's start: after every event of transactions before ``xid``, issued now."""
    return (xid, LAST - int(time.time()))


def _resumable(settings: Settings, cursor: Cursor) -> bool:
    """Whether events after ``cursor`` are all still there: its event (or its ``ready``) is within
    the window."""
    oldest = time.time() - settings.events_window_s
    if cursor[1] > LAST - 2**40:  # a ready cursor: its id part says when it was issued
        return LAST - cursor[1] >= oldest
    with transaction(settings) as conn:
        created_at = conn.execute(
            sa.select(events.c.created_at).where(events.c.xid == cursor[0], events.c.id == cursor[1])
        ).scalar_one_or_none()
    return created_at is not None and created_at.timestamp() >= oldest


def _start(settings: Settings, asked: Cursor | None) -> tuple[Cursor, bool]:
    """Where the stream starts, and whether the client must be told to reset."""
    if asked is not None and _resumable(settings, asked):
        return asked, False
    with transaction(settings) as conn:
        xid, _ = now_cursor(conn)
    return ready_cursor(xid), asked is not None


class StreamedEvent(msgspec.Struct, kw_only=True):
    """One message of the stream as an SSE client reads it: the OpenAPI schema of each message, not
    of the body as a whole. ``data`` is JSON: ``{}`` for ``ready``, ``{"reason"}`` for ``reset``, and
    ``{"type", "timestamp", "data"}`` for an event."""

    event: str
    data: str
    id: str | None = None
    retry: int | None = None


#: Sent when a stream has nothing to say: a comment line without the blank line that would end a
#: message, so no client takes it for an (empty) event.
KEEP_ALIVE = b": keep-alive\n"


def frame(event: str, data: dict[str, Any], event_id: str | None = None) -> bytes:
    """One message; the data is one line of JSON, so it needs no splitting."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def _message(event: Event) -> bytes:
    return frame(event.type, body(event), event.sse_id)


def _replay(settings: Settings, cursor: Cursor, tenant: str, types: frozenset[str] | None) -> list[Event]:
    wanted = sorted(types) if types is not None else None
    with transaction(settings) as conn:
        return read_after(conn, cursor, tenants=[tenant], types=wanted, limit=REPLAY_PAGE)


async def stream_events(
    settings: Settings, fanout: Fanout, sub: Subscriber, asked: Cursor | None
) -> AsyncIterator[bytes]:
    """The stream's messages; it unsubscribes when they end or the client leaves (the response's
    background task does too, for a generator left suspended)."""
    try:
        async for message in _messages(settings, sub, asked):
            yield message
    finally:
        fanout.unsubscribe(sub)


async def _messages(settings: Settings, sub: Subscriber, asked: Cursor | None) -> AsyncIterator[bytes]:
    start, reset = await anyio.to_thread.run_sync(_start, settings, asked)
    yield f"retry: {RETRY_MS}\n".encode() + frame("ready", {}, format_cursor(start))
    if reset:
        yield frame("reset", {"reason": "the events after Last-Event-ID are older than the window"})
    last = start
    while True:  # the replay, page by page
        page = await anyio.to_thread.run_sync(_replay, settings, last, sub.tenant, sub.types)
        for event in page:
            yield _message(event)
            last = event.cursor
        if len(page) < REPLAY_PAGE:
            break
    ends = time.monotonic() + settings.events_stream_max_s
    while (left := ends - time.monotonic()) > 0:  # live, until the client resumes elsewhere
        try:
            live = await asyncio.wait_for(sub.queue.get(), min(left, settings.events_keepalive_s))
        except TimeoutError:
            yield KEEP_ALIVE
            continue
        if live is None:
            return  # too slow, or shutting down: the client resumes from its last event
        if live.cursor > last:
            yield _message(live)
            last = live.cursor


class EventsController(Controller):
    path = "/v1/events"
    tags = ["events"]

    @get(
        "/",
        guards=[requires("jobs:read")],
        summary="Stream events (Server-Sent Events)",
        description=(
            "A `text/event-stream` of the key's tenant's events (an admin key may name another with "
            "`tenant`): `ready` first (its id is where the stream starts), then each event as "
            '`id: <cursor>`, `event: <type>`, `data: {"type", "timestamp", "data"}`, with a '
            "keep-alive comment when quiet. Resume with the `Last-Event-ID` header (or "
            "`last_event_id`); a cursor older than JOBYARD_EVENTS_WINDOW_S is answered with "
            "`event: reset` and the stream goes on from now. A stream ends after JOBYARD_EVENTS_STREAM_MAX_S; "
            "the client resumes."
        ),
        responses={
            200: ResponseSpec(
                StreamedEvent, description="The stream, one message at a time", media_type="text/event-stream"
            ),
        },
    )
    async def stream(
        self,
        request: Request[ApiKey, Any, Any],
        state: State,
        types: Types = None,
        tenant: TenantParam = None,
        last_event_id: ResumeParam = None,
        last_event_id_header: ResumeHeader = None,
    ) -> Stream:
        key = request.user
        if tenant is not None and key.reach is not None and tenant != key.tenant:
            raise Forbidden("only a key holding admin streams another tenant's events")
        wanted = parse_types(types)
        asked = resume_cursor(last_event_id_header, last_event_id)
        settings: Settings = state.settings
        fanout: Fanout = state.fanout
        sub = await fanout.subscribe(
            tenant or key.tenant, wanted, key_id=str(key.id), record_s=settings.events_window_s
        )
        return Stream(
            stream_events(settings, fanout, sub, asked),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
            background=BackgroundTask(fanout.release, sub),
        )
