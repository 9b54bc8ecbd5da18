"""The delivery log of webhook endpoints, and the redrive of dead deliveries.

A redrive works as the dead-letter queue's does: it names the deliveries (ids, or a filter), may be
a dry run that only counts them, must give a reason, and leaves an audit entry. A redriven delivery
starts again with all its tries, keeping its ``webhook-id``, so a receiver that did get it before
(its answer was lost) recognises the repeat. Deliveries to a disabled endpoint are redriven too and
wait for it to be enabled; the answer counts them.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from core.engine import audit
from core.engine.jobs import utcnow
from core.errors import BadCursor
from core.events.log import CHANNEL
from core.platform.tables import webhook_deliveries, webhook_endpoints
from core.platform.tenants import reached

DeliveryStatus = Literal["pending", "delivered", "dead"]


class Delivery(msgspec.Struct, kw_only=True):
    """One event to one endpoint, as the delivery log shows it."""

    id: int
    endpoint_id: uuid.UUID
    #: The Standard Webhooks ``webhook-id`` it is sent with: the same on every try and redrive.
    webhook_id: str
    event_id: int
    type: str
    #: What the event is about: a job's id, or a message's job, or "chat/user" of a counter.
    subject: str
    status: str
    attempts: int
    #: When the next try is due (pending deliveries only).
    next_attempt_at: datetime | None
    last_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    last_duration_ms: int | None
    created_at: datetime
    delivered_at: datetime | None
    redriven_at: datetime | None
    redriven_by: uuid.UUID | None
    tenant: str

    @classmethod
    def from_row(cls, row: Any) -> Delivery:
        m = dict(row._mapping)
        if m["status"] != "pending":
            m["next_attempt_at"] = None
        m.pop("leased_until", None)
        return cls(webhook_id=f"msg_{m['event_id']}", **m)


class DeliveryFilter(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Which deliveries: every field optional, all given ones must match."""

    endpoint: uuid.UUID | None = None
    status: DeliveryStatus | None = None
    type: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    #: Made at or after / before these times.
    since: datetime | None = None
    until: datetime | None = None


def _where(f: DeliveryFilter, tenant: str | None) -> list[sa.ColumnElement[bool]]:
    d = webhook_deliveries.c
    cond = [reached(webhook_deliveries, tenant)]
    if f.endpoint is not None:
        cond.append(d.endpoint_id == f.endpoint)
    if f.status is not None:
        cond.append(d.status == f.status)
    if f.type is not None:
        cond.append(d.type == f.type)
    if f.since is not None:
        cond.append(d.created_at >= f.since)
    if f.until is not None:
        cond.append(d.created_at < f.until)
    return cond


def list_deliveries(
    conn: Connection, f: DeliveryFilter, tenant: str | None, limit: int, cursor: str | None
) -> tuple[list[Delivery], str | None]:
    """Newest first; the cursor is the last id shown."""
    d = webhook_deliveries.c
    cond = _where(f, tenant)
    if cursor is not None:
        if not cursor.isdigit() or len(cursor) > 19:
            raise BadCursor("not a cursor of this list")
        cond.append(d.id < int(cursor))
    rows = conn.execute(
        sa.select(webhook_deliveries).where(*cond).order_by(d.id.desc()).limit(limit + 1)
    ).all()
    more = len(rows) > limit
    items = [Delivery.from_row(r) for r in rows[:limit]]
    return items, str(items[-1].id) if more else None


class RedriveResult(msgspec.Struct):
    matched: int
    redriven: int
    #: Of those, the ones waiting for their endpoint to be enabled again.
    waiting_on_disabled: int
    audit_id: uuid.UUID | None
    preview: list[Delivery]


#: Deliveries shown in a redrive's answer.
PREVIEW = 20


def redrive(
    conn: Connection,
    *,
    ids: list[int] | None,
    f: DeliveryFilter | None,
    tenant: str | None,
    reason: str,
    dry_run: bool,
    actor: str,
    key_id: uuid.UUID | None,
) -> RedriveResult:
    """Send the selected dead deliveries again from their first try (or, as a dry run, count them)."""
    d = webhook_deliveries.c
    cond = [*_where(f or DeliveryFilter(), tenant), d.status == "dead"]
    if ids is not None:
        cond.append(d.id.in_(ids))
    selected = sa.select(d.id).where(*cond)
    disabled = sa.select(webhook_endpoints.c.id).where(~webhook_endpoints.c.enabled)
    matched, on_disabled = conn.execute(
        sa.select(sa.func.count(), sa.func.count().filter(d.endpoint_id.in_(disabled))).where(*cond)
    ).one()
    preview = conn.execute(sa.select(webhook_deliveries).where(*cond).order_by(d.id).limit(PREVIEW)).all()
    if dry_run or matched == 0:
        return RedriveResult(matched, 0, on_disabled, None, [Delivery.from_row(r) for r in preview])
    now = utcnow()
    redriven = conn.execute(
        sa.update(webhook_deliveries)
        .where(d.id.in_(selected))
        .values(
            status="pending",
            attempts=0,
            next_attempt_at=now,
            leased_until=None,
            redriven_at=now,
            redriven_by=key_id,
        )
    ).rowcount
    selection: dict[str, Any] = (
        {"ids": ids} if ids is not None else {"filter": msgspec.to_builtins(f or DeliveryFilter())}
    )
    audit_id = audit.record(
        conn,
        tenant=tenant,
        actor=actor,
        action="webhook_deliveries.redrive",
        selection=selection,
        reason=reason,
        counts={"matched": matched, "redriven": redriven, "waiting_on_disabled": on_disabled},
    )
    conn.execute(sa.select(sa.func.pg_notify(CHANNEL, "")))
    return RedriveResult(matched, redriven, on_disabled, audit_id, [Delivery.from_row(r) for r in preview])
