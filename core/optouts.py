"""Opt-outs: recipients who asked not to be messaged, by API or by writing STOP. Checked before every send."""

from __future__ import annotations

import base64
import re
from datetime import datetime
from typing import Any, Literal

import msgspec
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Connection

from core.jobs import utcnow
from core.models import opt_outs
from core.pagination import BadCursor

#: E.164: a plus, a country code that does not start with 0, at most 15 digits in all.
E164_PATTERN = r"^\+[1-9][0-9]{6,14}$"
_E164 = re.compile(E164_PATTERN)
#: Whole messages that mean "stop messaging me", compared case-insensitively with spaces collapsed.
STOP_WORDS = frozenset({"stop", "stop all", "stopall", "unsubscribe"})

CHANNEL = "whatsapp"
Source = Literal["api", "webhook"]


def is_e164(number: str) -> bool:
    return bool(_E164.match(number))


def e164(number: str) -> str:
    """``number`` as E.164; a WhatsApp id (the digits without the plus) is accepted too."""
    candidate = number.strip()
    if candidate.isdigit():
        candidate = "+" + candidate
    if not is_e164(candidate):
        raise ValueError(f"{number!r} is not an E.164 number like +14155550100")
    return candidate


def is_stop_request(text: str) -> bool:
    """Whether an incoming message asks us to stop (STOP, Stop all, unsubscribe...), and nothing else."""
    return " ".join(text.split()).casefold().strip(".!") in STOP_WORDS


class OptOut(msgspec.Struct, kw_only=True):
    channel: str
    address: str
    source: str
    reason: str | None
    created_at: datetime


def _from_row(row: Any) -> OptOut:
    m = row._mapping
    return OptOut(
        channel=m["channel"],
        address=m["address"],
        source=m["source"],
        reason=m["reason"],
        created_at=m["created_at"],
    )


def add_opt_out(
    conn: Connection, address: str, source: Source, reason: str | None = None, channel: str = CHANNEL
) -> tuple[OptOut, bool]:
    """Record an opt-out (kept as first recorded if it exists); returns it and whether it is new."""
    row = conn.execute(
        pg_insert(opt_outs)
        .values(channel=channel, address=address, source=source, reason=reason, created_at=utcnow())
        .on_conflict_do_nothing(index_elements=[opt_outs.c.channel, opt_outs.c.address])
        .returning(*opt_outs.c)
    ).first()
    if row is not None:
        return _from_row(row), True
    existing = conn.execute(
        sa.select(opt_outs).where(opt_outs.c.channel == channel, opt_outs.c.address == address)
    ).one()
    return _from_row(existing), False


def remove_opt_out(conn: Connection, address: str, channel: str = CHANNEL) -> bool:
    done = conn.execute(
        sa.delete(opt_outs).where(opt_outs.c.channel == channel, opt_outs.c.address == address)
    )
    return done.rowcount == 1


def is_opted_out(conn: Connection, address: str, channel: str = CHANNEL) -> bool:
    found = conn.execute(
        sa.select(sa.literal(1)).where(opt_outs.c.channel == channel, opt_outs.c.address == address)
    ).first()
    return found is not None


def list_opt_outs(
    conn: Connection, limit: int, cursor: str | None, channel: str = CHANNEL
) -> tuple[list[OptOut], str | None]:
    """Newest first; the cursor holds the last item's (created_at, address)."""
    query = sa.select(opt_outs).where(opt_outs.c.channel == channel)
    if cursor:
        created_at, address = _decode(cursor)
        query = query.where(
            sa.tuple_(opt_outs.c.created_at, opt_outs.c.address) < sa.tuple_(created_at, address)
        )
    rows = conn.execute(
        query.order_by(opt_outs.c.created_at.desc(), opt_outs.c.address.desc()).limit(limit + 1)
    ).all()
    items = [_from_row(r) for r in rows[:limit]]
    next_cursor = _encode(items[-1].created_at, items[-1].address) if len(rows) > limit else None
    return items, next_cursor


def _encode(created_at: datetime, address: str) -> str:
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{address}".encode()).decode().rstrip("=")


def _decode(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, address = raw.split("|", 1)
        created_at = datetime.fromisoformat(stamp)
        if created_at.tzinfo is None:
            raise ValueError("cursor time has no zone")
        return created_at, address
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadCursor(f"invalid cursor: {exc}") from None
