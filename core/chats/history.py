"""Chats and their messages, as the API reads them."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from core.platform.pagination import page, split_page
from core.platform.tables import chat_messages


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


def list_messages(
    conn: Connection, chat_id: str, limit: int, cursor: str | None
) -> tuple[list[ChatMessage], str | None]:
    query = sa.select(chat_messages).where(chat_messages.c.chat_id == chat_id)
    rows, next_cursor = split_page(
        conn.execute(page(query, chat_messages.c.created_at, chat_messages.c.id, limit, cursor)).all(), limit
    )
    return [ChatMessage(**dict(r._mapping)) for r in rows], next_cursor
