"""Customers' WhatsApp conversations: one per (tenant, business number, customer), and WhatsApp's
24-hour customer service window.

WhatsApp lets a business send free-form text to a customer only within 24 hours of the customer's
last message to that business number; outside it only an approved template goes out. The webhook
records each customer's last inbound message here (``touch``), and every text send checks it
(``window_closed``, from core/messaging/send.py) with the farm's clock (``utcnow``, which
JOBYARD_CLOCK_OFFSET_S moves).

The customer's number is personal data: the row holds its keyed hash (found under any key of the
ring) and the number sealed, as an opt-out does; `jobyard data-key rotate` moves both. The chat the
conversation's messages are stored in is named ``wa:<16 random hex digits>``: its name says nothing
of who the customer is (nor a run of digits the log and audit maskers would take for a number).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Connection

from core.engine.jobs import utcnow
from core.platform.crypto import data_cipher
from core.platform.tables import whatsapp_conversations as wc

#: WhatsApp's customer service window: free-form messages within this long of the customer's last.
SERVICE_WINDOW = timedelta(hours=24)
#: What a conversation's customer number is sealed for (AES-GCM associated data).
CUSTOMER_CONTEXT = "whatsapp_conversations.customer"
#: How a conversation's chat id starts (the channel); a random id follows.
CHAT_PREFIX = "wa:"


@dataclass(frozen=True, slots=True)
class Conversation:
    tenant: str
    phone_number_id: str
    chat_id: str
    last_inbound_at: datetime
    away_sent_at: datetime | None
    #: Whether the customer's message that found it made it.
    created: bool = False


def _is(tenant: str, phone_number_id: str, customer: str) -> sa.ColumnElement[bool]:
    return sa.and_(
        wc.c.tenant == tenant,
        wc.c.phone_number_id == phone_number_id,
        wc.c.customer_hash.in_(data_cipher().lookup_hashes(customer)),
    )


def _conversation(row: sa.Row[object], created: bool = False) -> Conversation:
    m = row._mapping
    return Conversation(
        tenant=m["tenant"],
        phone_number_id=m["phone_number_id"],
        chat_id=m["chat_id"],
        last_inbound_at=m["last_inbound_at"],
        away_sent_at=m["away_sent_at"],
        created=created,
    )


def find(conn: Connection, tenant: str, phone_number_id: str, customer: str) -> Conversation | None:
    """``tenant``'s conversation of ``customer`` (E.164) with the business number, or None."""
    row = conn.execute(sa.select(wc).where(_is(tenant, phone_number_id, customer)).limit(1)).first()
    return _conversation(row) if row is not None else None


def touch(conn: Connection, tenant: str, phone_number_id: str, customer: str, at: datetime) -> Conversation:
    """The conversation, made if it is new, with ``at`` as the customer's last message (a later one
    already recorded stays: a webhook retried late does not move the window back)."""
    found = conn.execute(
        sa.update(wc)
        .where(_is(tenant, phone_number_id, customer))
        .values(last_inbound_at=sa.func.greatest(wc.c.last_inbound_at, at))
        .returning(*wc.c)
    ).first()
    if found is not None:
        return _conversation(found)
    ring = data_cipher()
    made = conn.execute(
        pg_insert(wc)
        .values(
            tenant=tenant,
            phone_number_id=phone_number_id,
            customer_hash=ring.lookup_hash(customer),
            customer_sealed=ring.seal(customer, CUSTOMER_CONTEXT),
            customer_key_id=ring.key_id,
            chat_id=CHAT_PREFIX + secrets.token_hex(8),
            last_inbound_at=at,
            created_at=utcnow(),
        )
        .on_conflict_do_nothing(index_elements=[wc.c.tenant, wc.c.phone_number_id, wc.c.customer_hash])
        .returning(*wc.c)
    ).first()
    if made is not None:
        return _conversation(made, created=True)
    # The customer's first message delivered twice at once: the other delivery made it.
    return touch(conn, tenant, phone_number_id, customer, at)


def by_chat(conn: Connection, tenant: str, chat_id: str) -> tuple[Conversation, str] | None:
    """The conversation stored in ``tenant``'s chat, with its customer's number in clear, or None.
    SealedValueError when the number is sealed under a key this process does not hold."""
    row = conn.execute(sa.select(wc).where(wc.c.tenant == tenant, wc.c.chat_id == chat_id)).first()
    if row is None:
        return None
    return _conversation(row), data_cipher().open(row.customer_sealed, CUSTOMER_CONTEXT)


def window_closed(
    conn: Connection, tenant: str, phone_number_id: str, customer: str, *, required: bool
) -> str | None:
    """Why a free-form message to ``customer`` may not go out now, or None when it may.

    Closed when the customer's last message is more than 24 hours old on the farm's clock. A
    recipient who never wrote (no conversation) is closed only when ``required`` (the send says it
    answers a customer's message): other sends to such numbers go out as before, and WhatsApp itself
    refuses what it does not allow."""
    found = find(conn, tenant, phone_number_id, customer)
    if found is None:
        return "the recipient has not written to this business number" if required else None
    now = utcnow()
    if now - found.last_inbound_at <= SERVICE_WINDOW:
        return None
    hours = (now - found.last_inbound_at).total_seconds() / 3600
    return (
        f"the recipient last wrote {hours:.1f} hours ago; WhatsApp allows free-form text only within "
        "24 hours of the customer's last message: send a template instead"
    )


def mark_away_sent(conn: Connection, conversation: Conversation, at: datetime) -> bool:
    """Record an away message for the conversation unless one went out in the last day; whether
    this one may go."""
    done = conn.execute(
        sa.update(wc)
        .where(
            wc.c.tenant == conversation.tenant,
            wc.c.chat_id == conversation.chat_id,
            sa.or_(wc.c.away_sent_at.is_(None), wc.c.away_sent_at < at - timedelta(days=1)),
        )
        .values(away_sent_at=at)
    )
    return done.rowcount == 1
