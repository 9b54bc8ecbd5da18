"""A tenant's WhatsApp assistant: whether it answers its customers, and how.

Set whole with PUT /v1/assistants/whatsapp (control_api/assistants.py). ``default``'s assistant
answers messages to the farm's own number; a tenant's, messages to the tenant's own number.

- ``handoff_words``: a customer message containing one of them, as a whole word (or words),
  compared case-insensitively, gets no automatic reply; its chat is flagged for a human instead.
  ``human`` matches "Human please!" and "a HUMAN?", not "humane" nor "inhuman".
- ``business_hours``: a time zone and windows per weekday; outside them nothing is answered
  automatically, except ``away_message`` when one is set (at most once a day per conversation).
  Absent: always open.
- Guardrails: a reply longer than ``max_reply_chars``, or containing one of ``forbidden_phrases``
  (case-insensitively, runs of spaces counted as one), is withheld: not stored, not sent, and its
  chat flagged with the reason.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime, time
from typing import Annotated, Literal

import msgspec
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Connection

from core.embeddings.knowledge import Knowledge
from core.engine.jobs import utcnow
from core.engine.timebounds import zone_named
from core.platform.tables import assistants

CHANNEL = "whatsapp"
DEFAULT_HANDOFF_WORDS = ("human", "agent", "person")
#: WhatsApp's own limit on a text message: no reply can be longer.
MAX_TEXT_CHARS = 4096
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
_WINDOW = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]|24):([0-5]\d)$")
Window = Annotated[str, msgspec.Meta(pattern=_WINDOW.pattern, description="HH:MM-HH:MM, e.g. 09:00-17:30")]
Word = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Phrase = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class BusinessHours(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    #: The IANA time zone the windows are in.
    timezone: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    #: Open windows per weekday (mon..sun); a day not named is closed all day.
    weekly: dict[Day, Annotated[list[Window], msgspec.Meta(max_length=8)]]
    #: Sent (as text) to a customer who writes outside the windows, at most once a day per
    #: conversation; absent: nothing is sent.
    away_message: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_TEXT_CHARS)] | None = None

    def __post_init__(self) -> None:
        try:
            zone_named(self.timezone)
        except ValueError as exc:
            raise ValueError(f"business_hours.timezone: {exc}") from None
        for day, windows in self.weekly.items():
            for window in windows:
                start, end = _bounds(window)
                if end is not None and start >= end:
                    raise ValueError(f"business_hours.weekly.{day}: {window} ends before it starts")


class AssistantIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    enabled: bool = True
    #: Given to the model before the conversation (the assistant's instructions).
    system_prompt: Annotated[str, msgspec.Meta(max_length=32_000)] | None = None
    #: The collection replies are grounded in (`ai_reply`'s RAG: the k nearest documents to the
    #: customer's message); null: none.
    knowledge: Knowledge | None = None
    #: Null: always open.
    business_hours: BusinessHours | None = None
    handoff_words: Annotated[list[Word], msgspec.Meta(max_length=100)] = msgspec.field(
        default_factory=lambda: list(DEFAULT_HANDOFF_WORDS)
    )
    max_reply_chars: Annotated[int, msgspec.Meta(ge=1, le=MAX_TEXT_CHARS)] = MAX_TEXT_CHARS
    forbidden_phrases: Annotated[list[Phrase], msgspec.Meta(max_length=200)] = msgspec.field(
        default_factory=list
    )

    def __post_init__(self) -> None:
        if any(not w.split() for w in self.handoff_words):
            raise ValueError("handoff_words: a word is only spaces")
        if any(not p.split() for p in self.forbidden_phrases):
            raise ValueError("forbidden_phrases: a phrase is only spaces")


class Assistant(AssistantIn, kw_only=True):
    """A tenant's assistant as the API shows it."""

    tenant: str
    channel: str
    created_at: datetime
    updated_at: datetime
    #: The API key that last set it.
    updated_by: uuid.UUID | None


_CONFIG_FIELDS = tuple(f for f in AssistantIn.__struct_fields__ if f != "enabled")


def _view(row: sa.Row[object]) -> Assistant:
    m = row._mapping
    return msgspec.convert(
        {
            **m["config"],
            "enabled": m["enabled"],
            "tenant": m["tenant"],
            "channel": m["channel"],
            "created_at": m["created_at"],
            "updated_at": m["updated_at"],
            "updated_by": m["updated_by"],
        },
        Assistant,
    )


def set_assistant(
    conn: Connection, tenant: str, data: AssistantIn, *, by: uuid.UUID | None
) -> tuple[Assistant, bool]:
    """Set ``tenant``'s assistant whole; returns it and whether it is new."""
    now = utcnow()
    config = msgspec.to_builtins(data)
    values = {
        "enabled": data.enabled,
        "config": {k: config[k] for k in _CONFIG_FIELDS},
        "updated_at": now,
        "updated_by": by,
    }
    key = sa.and_(assistants.c.tenant == tenant, assistants.c.channel == CHANNEL)
    existed = conn.execute(sa.select(assistants.c.tenant).where(key).with_for_update()).first()
    row = conn.execute(
        pg_insert(assistants)
        .values(tenant=tenant, channel=CHANNEL, created_at=now, **values)
        .on_conflict_do_update(index_elements=[assistants.c.tenant, assistants.c.channel], set_=values)
        .returning(*assistants.c)
    ).one()
    return _view(row), existed is None


def get_assistant(conn: Connection, tenant: str) -> Assistant | None:
    row = conn.execute(
        sa.select(assistants).where(assistants.c.tenant == tenant, assistants.c.channel == CHANNEL)
    ).first()
    return _view(row) if row is not None else None


def delete_assistant(conn: Connection, tenant: str) -> Assistant | None:
    row = conn.execute(
        sa.delete(assistants)
        .where(assistants.c.tenant == tenant, assistants.c.channel == CHANNEL)
        .returning(*assistants.c)
    ).first()
    return _view(row) if row is not None else None


# -- what the assistant decides ------------------------------------------------------------------


def _words(text: str) -> str:
    return " ".join(text.split()).casefold()


def handoff_word(words: list[str], text: str) -> str | None:
    """The first of ``words`` that ``text`` holds as a whole word (or run of words), ignoring case
    and spacing; None when none does."""
    folded = _words(text)
    for word in words:
        pattern = r"(?<!\w)" + r"\s+".join(re.escape(w) for w in _words(word).split()) + r"(?!\w)"
        if re.search(pattern, folded):
            return word
    return None


def breach(assistant: AssistantIn, reply: str) -> str | None:
    """Why the guardrails withhold ``reply``, or None when it may go."""
    if not reply.strip():
        return "the reply is empty"
    if len(reply) > assistant.max_reply_chars:
        return f"the reply has {len(reply)} characters, more than max_reply_chars {assistant.max_reply_chars}"
    folded = _words(reply)
    for phrase in assistant.forbidden_phrases:
        if _words(phrase) in folded:
            return f"the reply contains the forbidden phrase {phrase!r}"
    return None


def _bounds(window: str) -> tuple[time, time | None]:
    found = _WINDOW.match(window)
    if found is None:
        raise ValueError(f"{window!r} is not HH:MM-HH:MM")
    h1, m1, h2, m2 = (int(g) for g in found.groups())
    if h2 == 24 and m2 != 0:
        raise ValueError(f"{window!r} ends after 24:00")
    return time(h1, m1), (None if h2 == 24 else time(h2, m2))


def is_open(hours: BusinessHours | None, at: datetime) -> bool:
    """Whether ``at`` falls in the business hours (always, without any)."""
    if hours is None:
        return True
    local = at.astimezone(zone_named(hours.timezone))
    for window in hours.weekly.get(DAYS[local.weekday()], []):  # type: ignore[call-overload]
        start, end = _bounds(window)
        if start <= local.time() and (end is None or local.time() < end):
            return True
    return False
