"""Outbound messages: one row per send attempt, written before the provider call and completed after it.

A row still `pending` (the worker died during the call) or `unknown` (the call got no answer) means
the message may have gone out: the send is never repeated automatically. A human checks, then
resolves the row as sent or not sent (`resolve`), and redrives the job if it must go again.

A row is its job's tenant's: every read and change takes the caller's reach (core/platform/tenants.py),
and another tenant's row is not found, as one that never existed.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from core.engine.jobs import utcnow
from core.errors import NotResolvable
from core.platform.crypto import data_cipher, masked
from core.platform.pagination import page, split_page
from core.platform.tables import outbound_messages as om
from core.platform.tenants import DEFAULT_TENANT, reached

#: The call is about to be made, or was made and its outcome never recorded.
PENDING = "pending"
#: The call was made and no answer came back (timeout, dropped connection).
UNKNOWN = "unknown"
#: States in which the message certainly went out.
WENT_OUT = ("sent", "delivered", "read")
#: What the sealed recipient and the sealed `to` of the stored request body are bound to.
TO_CONTEXT = "outbound_messages.to"
BODY_TO_CONTEXT = "outbound_messages.body.to"
#: Delivery progress; a webhook never moves a message back down this order.
_RANK = {PENDING: 0, UNKNOWN: 0, "sent": 1, "failed": 2, "delivered": 2, "read": 3}


class OutboundMessage(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    job_id: uuid.UUID | None
    attempt: int
    channel: str
    #: The recipient, masked (``+44*******789``); find a number's messages with ``?to=``.
    to: str
    kind: str
    #: The request sent to WhatsApp, its recipient masked too.
    body: dict[str, Any]
    status: str
    provider_message_id: str | None
    error: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime
    sent_at: datetime | None
    delivered_at: datetime | None
    read_at: datetime | None
    #: Whose message it is: its job's tenant.
    tenant: str = DEFAULT_TENANT

    @classmethod
    def from_row(cls, row: Any) -> OutboundMessage:
        m = dict(row._mapping)
        del m["to_hash"], m["to_key_id"]
        m["to"] = masked(m.pop("to_sealed"), TO_CONTEXT)
        if isinstance(m["body"].get("to"), str):
            m["body"] = {**m["body"], "to": masked(m["body"]["to"], BODY_TO_CONTEXT)}
        return cls(**m)


def insert(
    conn: Connection,
    *,
    outbound_id: uuid.UUID,
    job_id: uuid.UUID,
    attempt: int,
    to: str,
    kind: str,
    body: dict[str, Any],
    status: str,
    tenant: str = DEFAULT_TENANT,
) -> None:
    now = utcnow()
    cipher = data_cipher()
    conn.execute(
        sa.insert(om).values(
            id=outbound_id,
            tenant=tenant,
            job_id=job_id,
            attempt=attempt,
            to_sealed=cipher.seal(to, TO_CONTEXT),
            to_hash=cipher.lookup_hash(to),
            to_key_id=cipher.key_id,
            kind=kind,
            # The request as sent, but the recipient sealed: Postgres never holds a number in clear.
            body={**body, "to": cipher.seal(body["to"], BODY_TO_CONTEXT)} if "to" in body else body,
            status=status,
            created_at=now,
            updated_at=now,
        )
    )


def earlier_attempts(conn: Connection, job_id: uuid.UUID, attempt: int) -> list[OutboundMessage]:
    """The rows earlier attempts of this job left, oldest first."""
    rows = conn.execute(
        sa.select(om).where(om.c.job_id == job_id, om.c.attempt < attempt).order_by(om.c.attempt)
    ).all()
    return [OutboundMessage.from_row(r) for r in rows]


def mark_sent(conn: Connection, outbound_id: uuid.UUID, provider_message_id: str) -> None:
    now = utcnow()
    conn.execute(
        sa.update(om)
        .where(om.c.id == outbound_id)
        .values(status="sent", provider_message_id=provider_message_id, sent_at=now, updated_at=now)
    )


def mark_unsent(conn: Connection, outbound_id: uuid.UUID, status: str, error: dict[str, Any]) -> None:
    """Record a definite failure (`failed`) or a call without an answer (`unknown`)."""
    conn.execute(
        sa.update(om).where(om.c.id == outbound_id).values(status=status, error=error, updated_at=utcnow())
    )


def apply_status(
    conn: Connection,
    provider_message_id: str,
    status: str,
    at: datetime,
    callback: str | None = None,
    error: Any = None,
    tenant: str | None = None,
) -> bool:
    """Apply a delivery status from a webhook to one of ``tenant``'s messages (any tenant's for
    None: the farm's own number); returns whether a message was found.

    The status only moves forward (a late `delivered` after `read` fills delivered_at only). A status
    for a row whose outcome was unknown (found by the outbound id we sent as callback data) settles
    it: the message did go out.
    """
    row = conn.execute(
        sa.select(om)
        .where(om.c.provider_message_id == provider_message_id, reached(om, tenant))
        .with_for_update()
    ).first()
    if row is None and callback:
        try:
            outbound_id = uuid.UUID(callback)
        except ValueError:
            return False
        row = conn.execute(
            sa.select(om)
            .where(om.c.id == outbound_id, om.c.status.in_((PENDING, UNKNOWN)), reached(om, tenant))
            .with_for_update()
        ).first()
    if row is None:
        return False
    values: dict[str, Any] = {"provider_message_id": provider_message_id, "updated_at": utcnow()}
    if status in ("sent", "delivered", "read"):
        values["sent_at"] = row.sent_at or at
    if status in ("delivered", "read"):
        values["delivered_at"] = row.delivered_at or at
    if status == "read":
        values["read_at"] = row.read_at or at
    if _RANK.get(status, -1) > _RANK.get(row.status, 0):
        values["status"] = status
        if status == "failed":
            values["error"] = {
                "code": "delivery_failed",
                "message": "WhatsApp reported the delivery failed",
                "details": error,
            }
    conn.execute(sa.update(om).where(om.c.id == row.id).values(**values))
    return True


def resolve(
    conn: Connection,
    outbound_id: uuid.UUID,
    *,
    sent: bool,
    actor: str,
    note: str | None,
    tenant: str | None = None,
) -> OutboundMessage | None:
    """A human's answer for a message whose outcome was unknown; None if there is no such message
    (of ``tenant``'s; None: any tenant's)."""
    row = conn.execute(
        sa.select(om).where(om.c.id == outbound_id, reached(om, tenant)).with_for_update()
    ).first()
    if row is None:
        return None
    if row.status not in (PENDING, UNKNOWN):
        raise NotResolvable(row.status)
    now = utcnow()
    verdict = {
        "code": "resolved_sent" if sent else "resolved_not_sent",
        "message": note or "",
        "by": actor,
        "previous": row.error,
    }
    values: dict[str, Any] = {"status": "sent" if sent else "failed", "error": verdict, "updated_at": now}
    if sent:
        values["sent_at"] = row.sent_at or now
    found = conn.execute(sa.update(om).where(om.c.id == outbound_id).values(**values).returning(*om.c)).one()
    return OutboundMessage.from_row(found)


def get(conn: Connection, outbound_id: uuid.UUID, tenant: str | None = None) -> OutboundMessage | None:
    row = conn.execute(sa.select(om).where(om.c.id == outbound_id, reached(om, tenant))).first()
    return OutboundMessage.from_row(row) if row is not None else None


def list_outbound(
    conn: Connection,
    *,
    job_id: uuid.UUID | None,
    to: str | None,
    status: str | None,
    limit: int,
    cursor: str | None,
    tenant: str | None = None,
) -> tuple[list[OutboundMessage], str | None]:
    """``tenant``'s messages (every tenant's for None), newest first."""
    query = sa.select(om).where(reached(om, tenant))
    if job_id is not None:
        query = query.where(om.c.job_id == job_id)
    if to is not None:
        # Under every key of the ring: rows written before a rotation reached them match too.
        query = query.where(om.c.to_hash.in_(data_cipher().lookup_hashes(to)))
    if status is not None:
        query = query.where(om.c.status == status)
    rows, next_cursor = split_page(
        conn.execute(page(query, om.c.created_at, om.c.id, limit, cursor)).all(), limit
    )
    return [OutboundMessage.from_row(r) for r in rows], next_cursor
