"""The audit log: who redrove or discarded which dead letters, when, why, and with what effect."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from core.engine.jobs import utcnow
from core.errors import AuditEntryNotFound
from core.platform.crypto import mask_phones_deep, mask_phones_in
from core.platform.pagination import page, split_page
from core.platform.tables import audit_log
from core.platform.tenants import reached


class AuditEntry(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    at: datetime
    #: The API key's name, or "cli:<os user>" for the jobyard command.
    actor: str
    action: str
    #: What the action was asked to act on: {"ids": [...]} or {"filter": {...}}.
    selection: dict[str, Any]
    reason: str
    counts: dict[str, int]
    payload_patch: dict[str, Any] | None
    #: The tenant whose jobs the action reached; null: an admin's action across tenants.
    tenant: str | None = None


def record(
    conn: Connection,
    *,
    tenant: str | None = None,
    actor: str,
    action: str,
    selection: dict[str, Any],
    reason: str,
    counts: dict[str, int],
    payload_patch: dict[str, Any] | None = None,
) -> uuid.UUID:
    """Write one audit row in the caller's transaction and return its id."""
    entry_id = uuid.uuid4()
    conn.execute(
        sa.insert(audit_log).values(
            id=entry_id,
            at=utcnow(),
            actor=actor,
            action=action,
            # Kept for good and read by every ops key: a number someone typed in appears masked.
            selection=mask_phones_deep(selection),
            reason=mask_phones_in(reason),
            counts=counts,
            # SQL NULL, not a JSON null, when there is no patch.
            payload_patch=sa.null() if payload_patch is None else mask_phones_deep(payload_patch),
            tenant=tenant,
        )
    )
    return entry_id


def list_audit(
    conn: Connection, limit: int, cursor: str | None, tenant: str | None = None
) -> tuple[list[AuditEntry], str | None]:
    """Audit entries, newest first, a page at a time: ``tenant``'s (every tenant's for None)."""
    query = page(
        sa.select(audit_log).where(reached(audit_log, tenant)), audit_log.c.at, audit_log.c.id, limit, cursor
    )
    rows, next_cursor = split_page(conn.execute(query).all(), limit, created_key="at")
    return [AuditEntry(**dict(r._mapping)) for r in rows], next_cursor


def get_entry(conn: Connection, entry_id: uuid.UUID, tenant: str | None = None) -> AuditEntry:
    row = conn.execute(
        sa.select(audit_log).where(audit_log.c.id == entry_id, reached(audit_log, tenant))
    ).first()
    if row is None:
        raise AuditEntryNotFound(f"no audit entry {entry_id}")
    return AuditEntry(**dict(row._mapping))
