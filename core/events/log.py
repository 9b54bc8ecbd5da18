"""Events in the order their transactions committed, and an event as a caller sees it.

Event ids come from a sequence, so a transaction can commit an event with a smaller id after a
reader has passed it. Readers therefore go by (xid, id), the writing transaction's id first, and
read only events of transactions older than every transaction still running (the snapshot's xmin):
those are all committed or gone, and any event still to come has a larger xid. A cursor is that
pair, written ``"<xid>-<id>"`` (the SSE ``id`` of an event, the ``Last-Event-ID`` of a resuming client).

A tenant's events are only recorded while somebody listens (an enabled webhook endpoint, or a stream
open within JOBYARD_EVENTS_WINDOW_S: ``keep_recording``); a farm nobody listens to writes none.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Connection

from core.engine.job_types import shown_payload
from core.engine.jobs import Job, utcnow
from core.errors import InvalidInput
from core.platform.tables import event_consumers, events

#: The channel the event triggers notify (migration 0024), once per tenant per transaction.
CHANNEL = "jobyard_events"
#: The largest id: a cursor ``(xid, LAST)`` is after every event of transaction ``xid``.
LAST = 2**63 - 1

Cursor = tuple[int, int]

_HORIZON = sa.text("pg_snapshot_xmin(pg_current_snapshot())::text::bigint")


@dataclass(frozen=True, slots=True)
class Event:
    id: int
    xid: int
    tenant: str
    type: str
    subject: str
    #: A job event's job type (null for the others).
    job_type: str | None
    data: dict[str, Any]
    created_at: datetime

    @property
    def cursor(self) -> Cursor:
        return (self.xid, self.id)

    @property
    def sse_id(self) -> str:
        return format_cursor(self.cursor)


def format_cursor(cursor: Cursor) -> str:
    return f"{cursor[0]}-{cursor[1]}"


def parse_cursor(value: str) -> Cursor:
    """A cursor from ``"<xid>-<id>"``; InvalidInput for anything else."""
    xid, sep, event_id = value.strip().partition("-")
    if not (sep and xid.isdigit() and event_id.isdigit() and len(xid) < 20 and len(event_id) < 20):
        raise InvalidInput("Last-Event-ID is not an event id of this farm (expected <number>-<number>)")
    cursor = (int(xid), int(event_id))
    if max(cursor) > LAST:
        raise InvalidInput("Last-Event-ID is out of range")
    return cursor


def now_cursor(conn: Connection) -> Cursor:
    """A cursor before every event still to commit and after every event already readable."""
    xmin: int = conn.execute(sa.select(_HORIZON)).scalar_one()
    return (xmin - 1, LAST)


def read_after(
    conn: Connection,
    cursor: Cursor,
    *,
    tenants: Sequence[str] | None = None,
    types: Sequence[str] | None = None,
    limit: int = 1000,
) -> list[Event]:
    """Committed events after ``cursor`` in (xid, id) order, of ``tenants`` (None: every tenant) and
    ``types`` (None: every type); at most ``limit``. Reading again from the last one's cursor
    misses nothing and repeats nothing."""
    cond = [sa.tuple_(events.c.xid, events.c.id) > sa.tuple_(*cursor), events.c.xid < _HORIZON]
    if tenants is not None:
        cond.append(events.c.tenant.in_(list(tenants)))
    if types is not None:
        cond.append(events.c.type.in_(list(types)))
    rows = conn.execute(sa.select(events).where(*cond).order_by(events.c.xid, events.c.id).limit(limit)).all()
    return [Event(**r._mapping) for r in rows]


def keep_recording(conn: Connection, tenant: str, window_s: float) -> None:
    """Record ``tenant``'s events for at least ``window_s`` from now (an open stream calls it
    again before that runs out)."""
    until = utcnow() + timedelta(seconds=window_s)
    stmt = insert(event_consumers).values(tenant=tenant, until=until)
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=[event_consumers.c.tenant],
            set_={"until": sa.func.greatest(event_consumers.c.until, stmt.excluded.until)},
        )
    )


def job_of(event: Event) -> Job:
    """The job of a job event as ``GET /v1/jobs/{id}`` showed it when the event happened."""
    row = event.data
    fields = {name: row.get(name) for name in Job.__struct_fields__ if name in row}
    if row.get("progress_at") is not None:
        fields["progress"] = {
            "fraction": row.get("progress_fraction"),
            "message": row.get("progress_message"),
            "updated_at": row["progress_at"],
        }
    fields["payload"] = shown_payload(row["type"], row["payload"])
    if isinstance(row.get("error"), dict):
        fields["error"] = {k: v for k, v in row["error"].items() if k != "traceback"}
    return msgspec.convert(fields, Job, strict=False)


def body(event: Event) -> dict[str, Any]:
    """The event as callers get it, by webhook and stream: ``{"type", "timestamp", "data"}``; a job
    event's data is the job, a message's its status, a counter's its new value."""
    data: Any = msgspec.to_builtins(job_of(event)) if event.type.startswith("job.") else event.data
    return {"type": event.type, "timestamp": msgspec.to_builtins(event.created_at), "data": data}
