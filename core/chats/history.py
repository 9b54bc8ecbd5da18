"""Chats and their messages, as the API reads them: a key's reach (core/platform/tenants.py)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from core.platform.pagination import page, split_page
from core.platform.tables import chat_messages
from core.platform.tenants import reached


class ChatMessage(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    chat_id: str
    role: str
    author_id: str | None
    content: str
    model: str | None
    provider: str | None
    usage: dict[str, Any] | None
    job_id: uuid.UUID | None
    created_at: datetime
    #: Whose chat it is (an admin key's list may hold several tenants' chats of this id).
    tenant: str
    #: The documents an assistant reply was given (`ai_reply`'s `knowledge`): ``{"collection",
    #: "documents": [{"id", "chunk", "distance"}]}``, nearest first; null when none were asked for.
    knowledge: dict[str, Any] | None = None
    #: The message's id outside the farm: a customer's WhatsApp message id (null otherwise).
    external_id: str | None = None


def list_messages(
    conn: Connection, chat_id: str, limit: int, cursor: str | None, tenant: str | None = None
) -> tuple[list[ChatMessage], str | None]:
    """The messages of ``tenant``'s chat ``chat_id`` (None: of every tenant's chat of that id), newest
    first, a page at a time. Another tenant's chat reads as one that does not exist: no messages."""
    query = sa.select(chat_messages).where(chat_messages.c.chat_id == chat_id, reached(chat_messages, tenant))
    rows, next_cursor = split_page(
        conn.execute(page(query, chat_messages.c.created_at, chat_messages.c.id, limit, cursor)).all(), limit
    )
    return [ChatMessage(**dict(r._mapping)) for r in rows], next_cursor
