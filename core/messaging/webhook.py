"""What WhatsApp tells us by webhook: delivery statuses of our messages, users writing STOP, and
customers' messages (``inbound``: the assistant stores them in the customer's conversation and may
answer them, core/assistant/inbound.py).

Meta signs each POST with the app secret: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw
body>`. Nothing is acted on in a body whose signature does not match.

Which app secret: that of the number each change was sent to (``metadata.phone_number_id``). A
tenant's own number (core/messaging/numbers.py) is checked with the tenant's app secret, and its
changes reach only that tenant: statuses settle its outbound messages, a STOP opts the writer out
of its messages. Any other number is the farm's own, checked with JOBYARD_WHATSAPP_APP_SECRET; its
statuses reach any tenant's messages sent through it, and a STOP is recorded for ``default``, which
binds every send through the farm's number. A body naming several numbers must be signed with the
app secret of each (one Meta app serving them all): a body signed with tenant A's secret that names
tenant B's number is refused whole.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy.engine import Connection

from core.engine.jobs import utcnow
from core.messaging import outbound
from core.messaging.numbers import PHONE_NUMBER_ID, WhatsAppNumber, numbers_by_id
from core.messaging.optouts import add_opt_out, e164, is_stop_request
from core.platform.crypto import mask_phone

log = structlog.get_logger(__name__)

SIGNATURE_HEADER = "X-Hub-Signature-256"
_PREFIX = "sha256="


def signature(secret: str, body: bytes) -> str:
    """The header value Meta sends for ``body``."""
    return _PREFIX + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_signature(secret: str, body: bytes, header: str | None) -> bool:
    """Whether ``header`` signs ``body`` with ``secret`` (constant-time)."""
    if not header or not header.startswith(_PREFIX):
        return False
    return hmac.compare_digest(signature(secret, body).encode(), header.strip().lower().encode())


@dataclass
class WebhookSummary:
    statuses: int = 0  # delivery statuses applied to our outbound messages
    unknown_statuses: int = 0  # statuses for messages we have no row for (sent by another system)
    opt_outs: int = 0  # STOP messages recorded as opt-outs


#: How late Meta may deliver a message (it retries a webhook for up to 7 days): an older timestamp,
#: or one in the future, is not believed, and the farm's clock at receipt stands for it.
BELIEVED_DELAY = timedelta(days=7)
#: A WhatsApp message id (``wamid.`` and base64); a message whose id is not one is not stored.
WHATSAPP_MESSAGE_ID_PATTERN = r"^[A-Za-z0-9._=:+/-]{1,180}$"
MESSAGE_ID = re.compile(WHATSAPP_MESSAGE_ID_PATTERN[1:-1])
#: WhatsApp's own limit on a text message; a longer body (forged or not) is cut here.
MAX_TEXT_CHARS = 4096


@dataclass(frozen=True, slots=True)
class Inbound:
    """A customer's message to a business number, from a verified webhook body."""

    number: WhatsAppNumber
    #: WhatsApp's id of the message: a webhook retried by Meta carries the same one.
    message_id: str
    #: The customer, E.164.
    customer: str
    #: The message's type as WhatsApp names it (text, button, image...).
    kind: str
    #: Its words (text and quick-reply buttons, at most MAX_TEXT_CHARS); None for other types.
    text: str | None
    #: When the customer wrote it (Meta's timestamp, unless implausible: the farm's clock then).
    at: datetime
    #: A STOP: recorded as an opt-out, never answered.
    stop: bool


def inbound(routed: Routed) -> list[Inbound]:
    """The customers' messages of a verified body, in order; a message without a WhatsApp id or a
    sender that is a phone number is left out."""
    now = utcnow()
    found = []
    for number, value in routed:
        for message in _dicts(value.get("messages")):
            message_id, kind = message.get("id"), message.get("type")
            try:
                customer = e164(str(message.get("from", "")))
            except ValueError:
                continue
            if (
                not isinstance(message_id, str)
                or not MESSAGE_ID.fullmatch(message_id)
                or not isinstance(kind, str)
            ):
                continue
            text = _text(message)
            at = _when(message.get("timestamp"))
            if not now - BELIEVED_DELAY <= at <= now:
                at = now
            found.append(
                Inbound(
                    number=number,
                    message_id=message_id,
                    customer=customer,
                    kind=kind[:32],
                    text=text[:MAX_TEXT_CHARS] if text is not None else None,
                    at=at,
                    stop=_is_stop(message),
                )
            )
    return found


def _when(value: Any) -> datetime:
    try:
        return datetime.fromtimestamp(int(value), UTC)
    except (TypeError, ValueError, OverflowError):
        return utcnow()


#: A change's value, with the number it was sent to.
Routed = list[tuple[WhatsAppNumber, dict[str, Any]]]


def phone_number_id(value: dict[str, Any]) -> str | None:
    """The number a change was sent to: ``metadata.phone_number_id``."""
    metadata = value.get("metadata")
    found = metadata.get("phone_number_id") if isinstance(metadata, dict) else None
    # Meta's ids are digits; anything else names no tenant's number (and reaches no query).
    return found if isinstance(found, str) and PHONE_NUMBER_ID.fullmatch(found) else None


def route(conn: Connection, farm: WhatsAppNumber, data: Any) -> Routed:
    """Each change of a (not yet verified) body with its number: a tenant's own, or else the farm's.
    One query, whatever the body names. SealedValueError when a tenant's secrets do not open."""
    values = _values(data)
    tenants = numbers_by_id(conn, {n for v in values if (n := phone_number_id(v)) is not None})
    return [(tenants.get(phone_number_id(v) or "", farm), v) for v in values]


def signers(routed: Routed, farm: WhatsAppNumber) -> list[WhatsAppNumber]:
    """The numbers whose app secret must each have signed the body: every number named (the farm's
    for a body that names none)."""
    found: dict[str | None, WhatsAppNumber] = {}
    for number, _ in routed:
        found.setdefault(number.tenant, number)
    return list(found.values()) or [farm]


def process(conn: Connection, routed: Routed) -> WebhookSummary:
    """Apply every status and STOP message of a verified webhook body, each in its number's tenant;
    other content is ignored."""
    summary = WebhookSummary()
    for number, value in routed:
        for status in _dicts(value.get("statuses")):
            message_id, state = status.get("id"), status.get("status")
            if not isinstance(message_id, str) or state not in ("sent", "delivered", "read", "failed"):
                continue
            found = outbound.apply_status(
                conn,
                message_id,
                state,
                _when(status.get("timestamp")),
                callback=status.get("biz_opaque_callback_data"),
                error=status.get("errors"),
                tenant=number.tenant,
            )
            if found:
                summary.statuses += 1
            else:
                summary.unknown_statuses += 1
        for message in _dicts(value.get("messages")):
            if _is_stop(message):
                try:
                    writer = e164(str(message.get("from", "")))
                except ValueError:
                    log.warning("whatsapp_stop_from_bad_number")
                    continue
                _, created = add_opt_out(
                    conn, writer, "webhook", reason=f"wrote {_text(message)!r}", tenant=number.owner
                )
                summary.opt_outs += 1
                log.info(
                    "whatsapp_opt_out",
                    to=mask_phone(writer),
                    new=created,
                    source="webhook",
                    tenant=number.owner,
                )
    return summary


def _is_stop(message: dict[str, Any]) -> bool:
    text = _text(message)
    return text is not None and is_stop_request(text)


def _text(message: dict[str, Any]) -> str | None:
    """The words of a text message, or of a quick-reply button (e.g. a template's "Stop promotions")."""
    kind = message.get("type")
    part = message.get(kind) if isinstance(kind, str) else None
    if kind == "text" and isinstance(part, dict):
        return str(part.get("body", ""))
    if kind == "button" and isinstance(part, dict):
        return str(part.get("text", ""))
    return None


def _values(data: Any) -> list[dict[str, Any]]:
    if not isinstance(data, dict):
        return []
    return [
        change["value"]
        for entry in _dicts(data.get("entry"))
        for change in _dicts(entry.get("changes"))
        if isinstance(change.get("value"), dict)
    ]


def _dicts(items: Any) -> list[dict[str, Any]]:
    return [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []
