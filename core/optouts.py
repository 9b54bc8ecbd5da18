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

from core.crypto import data_cipher, mask_phones_in
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
    #: The number in full: the list is for `ops`, who must know whom not to message.
    address: str
    source: str
    reason: str | None
    created_at: datetime


def _from_row(row: Any) -> OptOut:
    m = row._mapping
    return OptOut(
        channel=m["channel"],
        address=data_cipher().open(m["address_sealed"]),
        source=m["source"],
        reason=m["reason"],
        created_at=m["created_at"],
    )


def _is(address: str, channel: str) -> sa.ColumnElement[bool]:
    return sa.and_(
        opt_outs.c.channel == channel, opt_outs.c.address_hash == data_cipher().lookup_hash(address)
    )


def add_opt_out(
    conn: Connection, address: str, source: Source, reason: str | None = None, channel: str = CHANNEL
) -> tuple[OptOut, bool]:
    """Record an opt-out (kept as first recorded if it exists); returns it and whether it is new."""
    cipher = data_cipher()
    row = conn.execute(
        pg_insert(opt_outs)
        .values(
            channel=channel,
            address_hash=cipher.lookup_hash(address),
            address_sealed=cipher.seal(address),
            source=source,
            reason=mask_phones_in(reason) if reason else reason,
            created_at=utcnow(),
        )
        .on_conflict_do_nothing(index_elements=[opt_outs.c.channel, opt_outs.c.address_hash])
        .returning(*opt_outs.c)
    ).first()
    if row is not None:
        return _from_row(row), True
    existing = conn.execute(sa.select(opt_outs).where(_is(address, channel))).one()
    return _from_row(existing), False


def remove_opt_out(conn: Connection, address: str, channel: str = CHANNEL) -> bool:
    done = conn.execute(sa.delete(opt_outs).where(_is(address, channel)))
    return done.rowcount == 1


def is_opted_out(conn: Connection, address: str, channel: str = CHANNEL) -> bool:
    """Found by the number's keyed hash: the check never needs the number in clear in Postgres."""
    return conn.execute(sa.select(sa.literal(1)).where(_is(address, channel))).first() is not None


def get_opt_out(conn: Connection, address: str, channel: str = CHANNEL) -> OptOut | None:
    row = conn.execute(sa.select(opt_outs).where(_is(address, channel))).first()
    return _from_row(row) if row is not None else None


def list_opt_outs(
    conn: Connection, limit: int, cursor: str | None, channel: str = CHANNEL
) -> tuple[list[OptOut], str | None]:
    """Newest first; the cursor holds the last item's (created_at, number hash), never the number."""
    query = sa.select(opt_outs).where(opt_outs.c.channel == channel)
    if cursor:
        created_at, address_hash = _decode(cursor)
        query = query.where(
            sa.tuple_(opt_outs.c.created_at, opt_outs.c.address_hash) < sa.tuple_(created_at, address_hash)
        )
    rows = conn.execute(
        query.order_by(opt_outs.c.created_at.desc(), opt_outs.c.address_hash.desc()).limit(limit + 1)
    ).all()
    items = [_from_row(r) for r in rows[:limit]]
    next_cursor = None
    if len(rows) > limit:
        last = rows[limit - 1]
        next_cursor = _encode(last.created_at, last.address_hash)
    return items, next_cursor


def _encode(created_at: datetime, address_hash: str) -> str:
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{address_hash}".encode()).decode().rstrip("=")


def _decode(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, address_hash = raw.split("|", 1)
        created_at = datetime.fromisoformat(stamp)
        if created_at.tzinfo is None:
            raise ValueError("cursor time has no zone")
        return created_at, address_hash
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadCursor(f"invalid cursor: {exc}") from None
