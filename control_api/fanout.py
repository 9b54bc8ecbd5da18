"""One reader of the events log per API process, handing each event to the streams and waiters that
asked for it.

Every open stream (GET /v1/events) and waiting request (GET /v1/jobs/{id}?wait=) subscribes here
instead of polling Postgres itself: one LISTEN connection on ``jobyard_events`` wakes the reader,
which runs ONE ``read_after`` for every tenant with a subscriber in this process and puts each event
on the queues of the subscribers it concerns. Events of a transaction become readable only once
every older transaction has ended (core/events/log.py), so while anybody subscribes the reader also
reads every ``TICK_S`` without a notification. Every API process listens, so any of them serves any
client.

A subscriber's queue is bounded: one that is full (a client that does not read) is closed, and its
stream ends; the client resumes with Last-Event-ID and catches up from Postgres, so nothing is lost
and a slow client costs no memory. While a tenant has an open stream, its events are recorded
(``keep_recording``) for the window from now, renewed every quarter window. A subscriber of every
tenant (the dashboard of a session reaching every tenant, control_api/dashboard/live.py) keeps every
tenant the farm knows by name recorded, renewed alike (a tenant named since is taken in then).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter, defaultdict
from collections.abc import Collection
from dataclasses import dataclass, field

import anyio
import psycopg
import structlog

from core.access.keys import known_tenants
from core.errors import TooManyRequests
from core.events.log import CHANNEL, Cursor, Event, keep_recording, now_cursor, read_after
from core.platform.db import session_options, transaction
from core.platform.settings import Settings

log = structlog.get_logger(__name__)

#: How often the reader reads while anybody subscribes, notified or not.
TICK_S = 0.5
#: Events waiting for one subscriber before it is closed as too slow.
QUEUE_SIZE = 1000
#: The most events one read takes; a fuller page is followed by another read at once.
PAGE = 1000
#: How long stopping waits for the reader and the LISTEN connection to end.
STOP_S = 5.0
#: The LISTEN connection's reconnection delays grow to this.
MAX_BACKOFF_S = 10.0
#: The key of ``recording`` for a subscriber of every tenant (no tenant's name has a star).
EVERY_TENANT = "*"


@dataclass(eq=False)
class Subscriber:
    """What one stream or waiter gets: ``tenant``'s events (None: every tenant's, the dashboard of a
    session reaching every tenant) of ``types`` (None: all), of ``subject`` (None: any). ``None`` on
    the queue means the subscription ended (too slow, or shutting down)."""

    tenant: str | None
    types: frozenset[str] | None
    subject: str | None = None
    key_id: str | None = None
    queue: asyncio.Queue[Event | None] = field(default_factory=lambda: asyncio.Queue(QUEUE_SIZE))
    closed: bool = False

    def wants(self, event: Event) -> bool:
        return (
            (self.tenant is None or event.tenant == self.tenant)
            and (self.types is None or event.type in self.types)
            and (self.subject is None or event.subject == self.subject)
        )

    def offer(self, event: Event | None) -> None:
        """Queue ``event``; end the subscription instead when it is None or the queue is full."""
        if self.closed:
            return
        if event is not None and not self.queue.full():
            self.queue.put_nowait(event)
            return
        self.closed = True
        if self.queue.full():
            self.queue.get_nowait()  # room for the end mark: the stream ends and the client resumes
        self.queue.put_nowait(None)


class Fanout:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.subscribers: set[Subscriber] = set()
        self.streams_of_key: Counter[str] = Counter()
        #: Where the reader is: every event up to it was handed out. None while nobody subscribes.
        self.cursor: Cursor | None = None
        #: Until when (monotonic) each tenant's events are surely recorded, as this process last set it.
        self.recording: dict[str, float] = {}
        self.wake = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []
        self.stopping = False

    async def start(self) -> None:
        self.tasks = [asyncio.create_task(self._listen()), asyncio.create_task(self._read_loop())]

    async def stop(self) -> None:
        self.stopping = True
        self.wake.set()
        for task in self.tasks:
            task.cancel()
        _, pending = await asyncio.wait(self.tasks, timeout=STOP_S)
        if pending:
            log.warning("events_fanout_stop_timeout", tasks=len(pending))
        for sub in list(self.subscribers):
            sub.offer(None)

    async def subscribe(
        self,
        tenant: str | None,
        types: Collection[str] | None,
        *,
        subject: str | None = None,
        key_id: str | None = None,
        record_s: float,
    ) -> Subscriber:
        """A subscription of the events after the reader's position; ``tenant``'s events are
        recorded for ``record_s`` from now at least, before this returns. A stream (``key_id``) counts
        against its key's cap: TooManyRequests past it."""
        if key_id is not None:
            if self.streams_of_key[key_id] >= self.settings.events_streams_per_key:
                raise TooManyRequests(
                    f"this API key holds {self.streams_of_key[key_id]} open events streams on this process, "
                    "its limit (JOBYARD_EVENTS_STREAMS_PER_KEY); close one first",
                    code="too_many_streams",
                    retry_after=5,
                )
            self.streams_of_key[key_id] += 1
        sub = Subscriber(tenant, frozenset(types) if types is not None else None, subject, key_id)
        self.subscribers.add(sub)
        try:
            await self._record(tenant, record_s)
            if self.cursor is None:
                # Placed before the caller reads anything: what it reads next covers every event
                # up to here, and the reader hands it every event after.
                cursor = await anyio.to_thread.run_sync(self._now)
                if self.cursor is None:
                    self.cursor = cursor
        except BaseException:
            self.unsubscribe(sub)
            raise
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        if sub in self.subscribers:
            self.subscribers.discard(sub)
            self._forget_key(sub)
        if not self.subscribers:
            self.cursor = None

    async def release(self, sub: Subscriber) -> None:
        """``unsubscribe`` for a response's background task, on the event loop: Litestar runs a
        plain function there in a thread."""
        self.unsubscribe(sub)

    def _forget_key(self, sub: Subscriber) -> None:
        if sub.key_id is not None:
            self.streams_of_key[sub.key_id] -= 1
            if self.streams_of_key[sub.key_id] <= 0:
                del self.streams_of_key[sub.key_id]

    async def _record(self, tenant: str | None, seconds: float) -> None:
        """Make sure ``tenant``'s events (None: every tenant the farm knows by name) are recorded
        ``seconds`` from now (a write only when this process has not already made sure of longer)."""
        needed = time.monotonic() + seconds
        mark = tenant or EVERY_TENANT
        if self.recording.get(mark, 0.0) >= needed:
            return

        def run() -> None:
            with transaction(self.settings) as conn:
                for name in [tenant] if tenant is not None else known_tenants(conn):
                    keep_recording(conn, name, seconds)

        await anyio.to_thread.run_sync(run)
        self.recording[mark] = max(needed, self.recording.get(mark, 0.0))

    def _now(self) -> Cursor:
        with transaction(self.settings) as conn:
            return now_cursor(conn)

    async def _listen(self) -> None:
        """Hold the LISTEN connection, waking the reader on each notification; reconnect on failure."""
        backoff = 0.5
        while not self.stopping:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self.settings.database_url or "",
                    autocommit=True,
                    options=session_options(self.settings),
                    application_name="jobyard-events",
                )
                async with conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    backoff = 0.5
                    self.wake.set()  # events may have come while nobody listened
                    async for _ in conn.notifies():
                        self.wake.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("events_listen_failed", error=str(exc), retry_in_s=backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_S)

    async def _read_loop(self) -> None:
        last_renewal = time.monotonic()
        while not self.stopping:  # a flag too: a cancellation that meets a wake-up may be lost
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(TICK_S):
                    await self.wake.wait()
            self.wake.clear()
            if not self.subscribers:
                continue
            try:
                if time.monotonic() - last_renewal >= self.settings.events_window_s / 4:
                    last_renewal = time.monotonic()
                    await self._renew()
                await self._read()
            except Exception as exc:
                log.warning("events_read_failed", error=str(exc))
                await asyncio.sleep(TICK_S)

    async def _renew(self) -> None:
        """Keep recording every tenant with an open stream for the window from now."""
        for tenant in {s.tenant for s in self.subscribers if s.key_id is not None}:
            self.recording.pop(tenant or EVERY_TENANT, None)
            await self._record(tenant, self.settings.events_window_s)

    async def _read(self) -> None:
        """Read what the subscribers' tenants committed since the reader's position, and hand it out."""
        while self.cursor is not None and self.subscribers:
            named = {s.tenant for s in self.subscribers}
            cursor, tenants = self.cursor, None if None in named else sorted(t for t in named if t)

            def run(cursor: Cursor = cursor, tenants: list[str] | None = tenants) -> list[Event]:
                with transaction(self.settings) as conn:
                    return read_after(conn, cursor, tenants=tenants, limit=PAGE)

            events = await anyio.to_thread.run_sync(run)
            if self.cursor != cursor:  # everybody left meanwhile (and maybe came back): read again
                continue
            of_tenant: dict[str | None, list[Subscriber]] = defaultdict(list)
            for sub in self.subscribers:
                of_tenant[sub.tenant].append(sub)
            for event in events:
                for sub in of_tenant[event.tenant] + of_tenant[None]:
                    if sub.wants(event):
                        sub.offer(event)
            if events:
                self.cursor = events[-1].cursor
            if len(events) < PAGE:
                return
