"""Keyset pagination, newest first: an opaque cursor holds the last item's (created_at, id)."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from core.errors import BadCursor

#: Page size when the caller gives none, and the most a caller may ask for (API.md).
DEFAULT_LIMIT = 50
MAX_LIMIT = 500


def encode_cursor(created_at: datetime, item_id: uuid.UUID) -> str:
    raw = f"{created_at.isoformat()}|{item_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, item_id = raw.split("|", 1)
        created_at = datetime.fromisoformat(stamp)
        if created_at.tzinfo is None:
            raise ValueError("cursor time has no zone")
        return created_at, uuid.UUID(item_id)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadCursor(f"invalid cursor: {exc}") from None


def page(query: Any, created_col: Any, id_col: Any, limit: int, cursor: str | None) -> Any:
    """Order newest first and start after the cursor; fetch one extra row to know if more exist."""
    if cursor:
        created_at, item_id = decode_cursor(cursor)
        query = query.where(sa.tuple_(created_col, id_col) < sa.tuple_(created_at, item_id))
    return query.order_by(created_col.desc(), id_col.desc()).limit(limit + 1)


def split_page(
    rows: Sequence[Any], limit: int, created_key: str = "created_at"
) -> tuple[list[Any], str | None]:
    """Drop the extra row of ``page`` and make the next cursor; ``created_key`` names the time column."""
    if len(rows) <= limit:
        return list(rows), None
    rows = list(rows[:limit])
    last = rows[-1]._mapping
    return rows, encode_cursor(last[created_key], last["id"])
