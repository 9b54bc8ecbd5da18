"""Opt-outs: recipients who asked not to be messaged, by API or by writing STOP. Checked before every send.

Each tenant has its own: a recipient who wrote STOP to shop-a's number may still hear from shop-b. A
STOP written to the farm's own number is recorded for ``default`` and binds every send through the
farm's number, whatever its tenant (the recipient cannot tell the tenants sharing it apart); see
``binding``.
"""

from __future__ import annotations

import base64
import re
import threading
import time
from datetime import datetime
from typing import Any, Literal

import msgspec
import sqlalchemy as sa
import structlog
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Connection

from core.engine.jobs import utcnow
from core.errors import BadCursor, DataKeyUnknown, SealedValueError
from core.platform.crypto import data_cipher, key_label, mask_phone, mask_phones_in
from core.platform.tables import opt_outs
from core.platform.tenants import DEFAULT_TENANT, reached

#: E.164: a plus, a country code that does not start with 0, at most 15 digits in all.
E164_PATTERN = r"^\+[1-9][0-9]{6,14}$"
_E164 = re.compile(E164_PATTERN)
#: Whole messages that mean "stop messaging me", compared case-insensitively with spaces collapsed.
STOP_WORDS = frozenset({"stop", "stop all", "stopall", "unsubscribe"})

log = structlog.get_logger(__name__)

CHANNEL = "whatsapp"
#: What an opt-out's sealed number is bound to (AES-GCM associated data).
OPT_OUT_CONTEXT = "opt_outs.address"
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
    #: The tenant whose messages the recipient refused.
    tenant: str
    channel: str
    #: The number in full: the list is for `ops`, who must know whom not to message. ``+***`` when
    #: it was sealed with a data key this process does not hold.
    address: str
    source: str
    reason: str | None
    created_at: datetime
    #: The data key the number is hashed and sealed under (`jobyard data-key rotate` moves it).
    key_id: str


def _from_row(row: Any) -> OptOut:
    m = row._mapping
    try:
        address = data_cipher().open(m["address_sealed"], OPT_OUT_CONTEXT)
    except SealedValueError:
        address = mask_phone(m["address_sealed"])
    return OptOut(
        tenant=m["tenant"],
        channel=m["channel"],
        address=address,
        source=m["source"],
        reason=m["reason"],
        created_at=m["created_at"],
        key_id=m["address_key_id"],
    )


def _is(address: str, tenants: str | tuple[str, ...] | None, channel: str) -> sa.ColumnElement[bool]:
    """The number's rows for these tenants (every tenant's for None), whichever key of the ring
    hashed them (during a rotation, both)."""
    if isinstance(tenants, tuple):
        whose: sa.ColumnElement[bool] = opt_outs.c.tenant.in_(tenants)
    else:
        whose = reached(opt_outs, tenants)
    return sa.and_(
        whose,
        opt_outs.c.channel == channel,
        opt_outs.c.address_hash.in_(data_cipher().lookup_hashes(address)),
    )


def binding(tenant: str, through_farm_number: bool) -> tuple[str, ...]:
    """The tenants whose opt-outs a send of ``tenant``'s binds: its own, and when it goes through
    the farm's own number, the opt-outs recorded for that number (``default``'s) too."""
    return (tenant, DEFAULT_TENANT) if through_farm_number and tenant != DEFAULT_TENANT else (tenant,)


def add_opt_out(
    conn: Connection,
    address: str,
    source: Source,
    reason: str | None = None,
    channel: str = CHANNEL,
    *,
    tenant: str = DEFAULT_TENANT,
) -> tuple[OptOut, bool]:
    """Record ``tenant``'s opt-out (kept as first recorded if it exists); returns it and whether it is new."""
    existing = conn.execute(sa.select(opt_outs).where(_is(address, tenant, channel)).limit(1)).first()
    if existing is not None:
        return _from_row(existing), False
    cipher = data_cipher()
    row = conn.execute(
        pg_insert(opt_outs)
        .values(
            tenant=tenant,
            channel=channel,
            address_hash=cipher.lookup_hash(address),
            address_key_id=cipher.key_id,
            address_sealed=cipher.seal(address, OPT_OUT_CONTEXT),
            source=source,
            reason=mask_phones_in(reason) if reason else reason,
            created_at=utcnow(),
        )
        .on_conflict_do_nothing(
            index_elements=[opt_outs.c.tenant, opt_outs.c.channel, opt_outs.c.address_hash]
        )
        .returning(*opt_outs.c)
    ).first()
    if row is not None:
        return _from_row(row), True
    existing = conn.execute(sa.select(opt_outs).where(_is(address, tenant, channel)).limit(1)).one()
    return _from_row(existing), False


def remove_opt_out(conn: Connection, address: str, channel: str = CHANNEL, *, tenant: str) -> bool:
    """Remove ``tenant``'s opt-out of the number; whether there was one."""
    done = conn.execute(sa.delete(opt_outs).where(_is(address, tenant, channel)))
    return done.rowcount >= 1


def is_opted_out(
    conn: Connection, address: str, channel: str = CHANNEL, *, tenants: tuple[str, ...] = (DEFAULT_TENANT,)
) -> bool:
    """Whether the number opted out of any of ``tenants``' messages (``binding`` says which).
    Found by the number's keyed hash: the check never needs the number in clear in Postgres.

    Raises DataKeyUnknown when some opt-outs are hashed under a key this process does not hold: it
    cannot tell whether the number is among them, and a send must not guess.
    """
    require_opt_out_keys(conn)
    return conn.execute(sa.select(sa.literal(1)).where(_is(address, tenants, channel))).first() is not None


def get_opt_out(conn: Connection, address: str, channel: str = CHANNEL, *, tenant: str) -> OptOut | None:
    """``tenant``'s opt-out of the number, or None."""
    row = conn.execute(sa.select(opt_outs).where(_is(address, tenant, channel)).limit(1)).first()
    return _from_row(row) if row is not None else None


# -- the keys the opt-outs are under -----------------------------------------------------------

#: How long a process trusts its read of which keys the opt-outs are hashed under. A new key id
#: appears only when a process with another key records an opt-out, or a rotation runs: a few
#: seconds of lag, for one cheap query per process every few seconds instead of one per send.
KEY_IDS_CACHE_S = 5.0
# The distinct key ids, one index probe per key id (a loose index scan), not a scan of opt_outs.
_KEY_IDS = sa.text(
    """
    WITH RECURSIVE k(id) AS (
        (SELECT address_key_id FROM opt_outs ORDER BY address_key_id LIMIT 1)
        UNION ALL
        SELECT (SELECT address_key_id FROM opt_outs WHERE address_key_id > k.id
                ORDER BY address_key_id LIMIT 1)
        FROM k WHERE k.id IS NOT NULL
    )
    SELECT id FROM k WHERE id IS NOT NULL
    """
)
_key_ids: dict[str, tuple[float, frozenset[str]]] = {}
_key_ids_lock = threading.Lock()


def opt_out_key_ids(conn: Connection) -> frozenset[str]:
    """The key ids the opt-outs are hashed under, read at most every KEY_IDS_CACHE_S per database."""
    database = conn.engine.url.render_as_string(hide_password=True)
    now = time.monotonic()
    with _key_ids_lock:
        cached = _key_ids.get(database)
    if cached is not None and cached[0] > now:
        return cached[1]
    found = frozenset(conn.execute(_KEY_IDS).scalars())
    with _key_ids_lock:
        _key_ids[database] = (now + KEY_IDS_CACHE_S, found)
    return found


def require_opt_out_keys(conn: Connection) -> None:
    """DataKeyUnknown unless this process holds every key the opt-outs are hashed under."""
    held = data_cipher().key_ids
    missing = sorted(opt_out_key_ids(conn) - held)
    if not missing:
        return
    missing_labels = [key_label(k) for k in missing]
    held_labels = [key_label(k) for k in sorted(held)]
    message = (
        f"opt-outs are hashed under data key {', '.join(missing_labels)}, which this process does not "
        f"hold (it holds {', '.join(held_labels)}): it cannot tell whether the recipient wrote STOP, so "
        "it sends nothing. Give every process that key (JOBYARD_DATA_KEY, or JOBYARD_DATA_KEYS_OLD for "
        "a retired one) and restart it; the job is retried."
    )
    log.error("data_key_unknown", missing_keys=missing_labels, held_keys=held_labels, detail=message)
    raise DataKeyUnknown(message)


def list_opt_outs(
    conn: Connection, limit: int, cursor: str | None, channel: str = CHANNEL, *, tenant: str | None = None
) -> tuple[list[OptOut], str | None]:
    """``tenant``'s opt-outs (every tenant's for None), newest first; the cursor holds the last
    item's (created_at, number hash, tenant), never the number."""
    oo = opt_outs.c
    query = sa.select(opt_outs).where(oo.channel == channel, reached(opt_outs, tenant))
    if cursor:
        created_at, address_hash, after_tenant = _decode(cursor)
        if after_tenant is None:  # a cursor from before tenants
            query = query.where(
                sa.tuple_(oo.created_at, oo.address_hash) < sa.tuple_(created_at, address_hash)
            )
        else:
            query = query.where(
                sa.tuple_(oo.created_at, oo.address_hash, oo.tenant)
                < sa.tuple_(created_at, address_hash, after_tenant)
            )
    rows = conn.execute(
        query.order_by(oo.created_at.desc(), oo.address_hash.desc(), oo.tenant.desc()).limit(limit + 1)
    ).all()
    items = [_from_row(r) for r in rows[:limit]]
    next_cursor = None
    if len(rows) > limit:
        last = rows[limit - 1]
        next_cursor = _encode(last.created_at, last.address_hash, last.tenant)
    return items, next_cursor


def _encode(created_at: datetime, address_hash: str, tenant: str) -> str:
    raw = f"{created_at.isoformat()}|{address_hash}|{tenant}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode(cursor: str) -> tuple[datetime, str, str | None]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, address_hash, *rest = raw.split("|", 2)
        created_at = datetime.fromisoformat(stamp)
        if created_at.tzinfo is None:
            raise ValueError("cursor time has no zone")
        return created_at, address_hash, rest[0] if rest else None
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadCursor(f"invalid cursor: {exc}") from None
