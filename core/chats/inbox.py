"""Chats as an inbox: messages that came from outside the farm (a customer's WhatsApp message),
stored once however often they are delivered, and chats flagged for a human.

A flag (``needs_human``: a reason and a time) says ops must look at the chat: the customer asked for
a person, or a reply was withheld by the assistant's guardrails. The first reason stands until ops
clear it (a later one does not overwrite it); clearing is audited by the caller.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Connection

from core.chats.unread import UnreadCountPayload, apply_unread, ensure_chat
from core.engine.jobs import utcnow
from core.platform.tables import chat_messages, chats
from core.platform.tenants import reached

#: The reader whose unread count an inbound message bumps: the business's inbox
#: (GET /v1/unread?user_id=inbox lists the conversations with unread customer messages).
INBOX_USER = "inbox"
#: Who wrote an inbound message: the chat's customer (the chat says which one; never the number).
CUSTOMER = "customer"
#: The longest reason a flag keeps.
MAX_REASON = 500


class NeedsHuman(msgspec.Struct, kw_only=True):
    reason: str
    since: datetime


class Chat(msgspec.Struct, kw_only=True):
    id: str
    tenant: str
    created_at: datetime
    #: Set when ops must look at the chat (a customer asked for a person, a reply was withheld).
    needs_human: NeedsHuman | None


def _chat(row: Any) -> Chat:
    m = row._mapping
    flag = None
    if m["needs_human_at"] is not None:
        flag = NeedsHuman(reason=m["needs_human_reason"] or "", since=m["needs_human_at"])
    return Chat(id=m["id"], tenant=m["tenant"], created_at=m["created_at"], needs_human=flag)


def store_inbound(conn: Connection, tenant: str, chat_id: str, external_id: str, content: str) -> bool:
    """Store a customer's message in ``tenant``'s chat and bump the inbox's unread count; False (and
    nothing done) when the message was stored before (a webhook delivered again)."""
    ensure_chat(conn, tenant, chat_id)
    stored = conn.execute(
        pg_insert(chat_messages)
        .values(
            id=uuid.uuid4(),
            chat_id=chat_id,
            tenant=tenant,
            role="user",
            author_id=CUSTOMER,
            content=content,
            external_id=external_id,
            created_at=utcnow(),
        )
        .on_conflict_do_nothing(
            index_elements=[chat_messages.c.tenant, chat_messages.c.chat_id, chat_messages.c.external_id],
            index_where=chat_messages.c.external_id.isnot(None),
        )
        .returning(chat_messages.c.id)
    ).first()
    if stored is None:
        return False
    apply_unread(conn, tenant, UnreadCountPayload(chat_id=chat_id, user_id=INBOX_USER))
    return True


def flag(conn: Connection, tenant: str, chat_id: str, reason: str) -> None:
    """Flag ``tenant``'s chat for a human, unless it is flagged already (the first reason stands)."""
    ensure_chat(conn, tenant, chat_id)
    conn.execute(
        sa.update(chats)
        .where(chats.c.id == chat_id, chats.c.tenant == tenant, chats.c.needs_human_at.is_(None))
        .values(needs_human_reason=reason[:MAX_REASON], needs_human_at=utcnow())
    )


def clear_flag(conn: Connection, tenant: str | None, chat_id: str) -> list[Chat]:
    """Clear the flag of the chat ``chat_id`` of ``tenant`` (None: of every tenant's chat of that id);
    the chats that were flagged, as they were."""
    old = chats.alias("old")
    rows = conn.execute(
        sa.update(chats)
        .where(
            chats.c.id == chat_id,
            reached(chats, tenant),
            chats.c.needs_human_at.isnot(None),
            old.c.id == chats.c.id,
            old.c.tenant == chats.c.tenant,
        )
        .values(needs_human_reason=None, needs_human_at=None)
        .returning(old.c.id, old.c.tenant, old.c.created_at, old.c.needs_human_reason, old.c.needs_human_at)
    ).all()
    return [_chat(r) for r in rows]


def get_chats(conn: Connection, chat_id: str, tenant: str | None) -> list[Chat]:
    """The chat ``chat_id`` of ``tenant`` (None: every tenant's chat of that id)."""
    rows = conn.execute(
        sa.select(chats).where(chats.c.id == chat_id, reached(chats, tenant)).order_by(chats.c.tenant)
    ).all()
    return [_chat(r) for r in rows]


def flagged(conn: Connection, tenant: str | None, limit: int) -> list[Chat]:
    """The first ``limit`` chats flagged for a human that ``tenant`` reaches, longest waiting first
    (ops work from the top; a cleared flag makes room for the next)."""
    rows = conn.execute(
        sa.select(chats)
        .where(chats.c.needs_human_at.isnot(None), reached(chats, tenant))
        .order_by(chats.c.needs_human_at, chats.c.tenant, chats.c.id)
        .limit(limit)
    ).all()
    return [_chat(r) for r in rows]
