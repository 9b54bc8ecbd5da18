"""The `whatsapp_message` job type: a template or text message sent at most once, honouring opt-outs
and the recipient's quiet hours.

The send is an effect outside Postgres, so it cannot commit with the job's success. Instead each
attempt writes its outbound row as `pending` and commits *before* calling WhatsApp, then records the
answer. An attempt that finds a `pending` or `unknown` row from an earlier attempt knows a send may
already have happened (the worker died mid-call) and stops with `unknown_outcome` for a human to
decide: at most once, then ask. A row already `sent` means only the job's success was lost; that
attempt succeeds without sending again.

A cancel asked while the job runs (``POST /v1/jobs/{id}/cancel``) stops it before its outbound row is
written (``still_ours``), with nothing sent. Once the row is written the send is handed to WhatsApp
and is not aborted (the client is not one a cancel aborts: a send cut off midway could not be known
sent or unsent); the job then ends as the send does.

A job sends in its tenant's name: through the tenant's own number and token when it has one
(core/messaging/numbers.py, read on every send, so a changed token is used from the next send on),
through the farm's otherwise; its outbound row is its tenant's, and the opt-outs that bind it are
its tenant's (and, through the farm's number, the farm number's: core/messaging/optouts.py).
"""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

import msgspec
import sqlalchemy as sa
import structlog
from dramatiq.middleware.time_limit import TimeLimitExceeded
from sqlalchemy.engine import Connection

from core.engine.broker import redis_client
from core.engine.declare import JobContext, job_type
from core.engine.job_types import Preload, get_job_type
from core.engine.jobs import JobStatus, utcnow
from core.engine.lifecycle import Claim
from core.engine.retry import error_record
from core.errors import (
    ClaimLost,
    DataKeyUnknown,
    JobCancelled,
    JobFailure,
    PermanentError,
    Postponed,
    SealedValueError,
    UnknownOutcomeError,
)
from core.messaging import outbound
from core.messaging.conversations import window_closed
from core.messaging.numbers import WhatsAppNumber, tenant_number, unopenable_message
from core.messaging.optouts import E164_PATTERN, binding, is_opted_out
from core.messaging.quiet_hours import next_allowed, parse_quiet_hours, zone
from core.messaging.webhook import WHATSAPP_MESSAGE_ID_PATTERN
from core.platform.crypto import mask_phone
from core.platform.db import transaction
from core.platform.ratelimit import RateLimiter
from core.platform.settings import Settings
from core.platform.tables import jobs
from core.platform.tenants import DEFAULT_TENANT

if TYPE_CHECKING:
    # Imported where a client is built (with httpx and tenacity): the API and the workers of the other
    # queues load this job type too, and never send.
    from core.providers.whatsapp import WhatsAppClient

log = structlog.get_logger(__name__)

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=512)]
LanguageCode = Annotated[str, msgspec.Meta(min_length=2, max_length=20)]


class Language(msgspec.Struct, forbid_unknown_fields=True):
    """The Cloud API's own form, `{"code": "en_US"}`; a plain `"en_US"` is accepted too."""

    code: LanguageCode


class Template(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: Name
    language: LanguageCode | Language
    #: Passed through as the Cloud API's `template.components` (header/body/button parameters; a
    #: template has a header, a body and at most ten buttons).
    components: Annotated[list[dict[str, Any]], msgspec.Meta(max_length=20)] | None = None


class WhatsAppMessagePayload(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    to: Annotated[str, msgspec.Meta(pattern=E164_PATTERN, description="E.164, e.g. +14155550100")]
    template: Template | None = None
    text: Annotated[str, msgspec.Meta(min_length=1, max_length=4096)] | None = None
    #: The recipient's IANA time zone for quiet hours; JOBYARD_DEFAULT_TIMEZONE when absent.
    timezone: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None = None
    respect_quiet_hours: bool = True
    #: The customer's WhatsApp message this answers (its id, ``wamid....``): WhatsApp shows the
    #: reply quoting it, and a text send then needs the customer's 24-hour service window open even
    #: when the farm has no conversation with them.
    in_reply_to: Annotated[str, msgspec.Meta(pattern=WHATSAPP_MESSAGE_ID_PATTERN)] | None = None

    def __post_init__(self) -> None:
        if (self.template is None) == (self.text is None):
            raise ValueError("give exactly one of payload.template and payload.text")
        if self.timezone is not None:
            try:
                zone(self.timezone)
            except ValueError as exc:
                raise ValueError(f"payload.timezone: {exc}") from None


@job_type(
    "whatsapp_message",
    payload=WhatsAppMessagePayload,
    # It calls WhatsApp: never across an open transaction (see send_message).
    transactional=False,
    max_retries=5,
    min_backoff_s=5.0,
    max_backoff_s=600.0,
    timeout_s=60.0,
    # A campaign far above the number's rate waits its turn many times; each wait is free.
    max_rate_limit_waits=50,
    description="Send a WhatsApp template or text message once, honouring opt-outs and quiet hours.",
    sealed_fields=("to",),
    # The client (httpx, tenacity), imported by the first send: at boot in the processes that send.
    resources=(Preload("core.providers.whatsapp"),),
)
def whatsapp_message(ctx: JobContext, payload: WhatsAppMessagePayload) -> dict[str, Any]:
    return send_message(ctx.claim, payload, ctx.settings)


WHATSAPP_MESSAGE = get_job_type("whatsapp_message")


def request_body(payload: WhatsAppMessagePayload, outbound_id: uuid.UUID) -> dict[str, Any]:
    """The Cloud API's JSON for the payload. The outbound id rides along as callback data, so a
    delivery status can settle a send whose answer was lost."""
    body: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": payload.to,
        "biz_opaque_callback_data": str(outbound_id),
    }
    if payload.in_reply_to is not None:
        body["context"] = {"message_id": payload.in_reply_to}
    if payload.template is not None:
        t = payload.template
        language = t.language.code if isinstance(t.language, Language) else t.language
        template: dict[str, Any] = {"name": t.name, "language": {"code": language}}
        if t.components:
            template["components"] = t.components
        body.update(type="template", template=template)
    else:
        body.update(type="text", text={"body": payload.text})
    return body


@dataclass(frozen=True, slots=True)
class Sender:
    """What a worker process sends with: the client (None in dry-run mode) and the shared rate limit."""

    client: WhatsAppClient | None
    limiter: RateLimiter | None


def _with_limiter(settings: Settings, client: WhatsAppClient | None) -> Sender:
    """The client with the rate limit of its number, shared by every worker process (a Redis key
    per phone number id: each tenant's number has its own)."""
    if client is None or settings.whatsapp_rate_per_s <= 0:
        return Sender(client, None)
    key = f"{settings.redis_namespace}:whatsapp:rate:{client.phone_number_id}"
    limiter = RateLimiter(redis_client(settings, socket_timeout=5), key, settings.whatsapp_rate_per_s)
    return Sender(client, limiter)


@functools.cache
def sender(settings: Settings) -> Sender:
    """The farm's number: one client and one rate limiter per worker process, built on the first
    send (never at import)."""
    from core.providers.whatsapp import WhatsAppClient

    return _with_limiter(settings, WhatsAppClient.from_settings(settings))


#: Tenant numbers' senders kept per process (their connections stay open between sends).
TENANT_SENDERS = 256


@functools.lru_cache(maxsize=TENANT_SENDERS)
def _tenant_sender(settings: Settings, phone_number_id: str, token: str) -> Sender:
    """A tenant number's sender, keyed by its token too: a changed token makes a new client on the
    next send, and the old one is dropped."""
    from core.providers.whatsapp import WhatsAppClient

    client = WhatsAppClient(
        token=token,
        phone_number_id=phone_number_id,
        base_url=settings.whatsapp_api_base_url,
        version=settings.whatsapp_api_version,
    )
    return _with_limiter(settings, client)


def sender_for(settings: Settings, number: WhatsAppNumber | None) -> Sender:
    """What a job sends with: its tenant's own number, or the farm's (None)."""
    if number is None or not number.phone_number_id or not number.token:
        return sender(settings)
    return _tenant_sender(settings, number.phone_number_id, number.token)


def _number_of(conn: Connection, tenant: str) -> WhatsAppNumber | None:
    """The tenant's own number, or None (the farm's). DataKeyUnknown (retried) when its secrets are
    sealed under a key this process does not hold: the message must not go out through another number."""
    try:
        return tenant_number(conn, tenant)
    except SealedValueError as exc:
        message = unopenable_message(tenant, exc)
        log.error("whatsapp_number_unopenable", tenant=tenant, detail=message)
        raise DataKeyUnknown(message) from None


def send_message(claim: Claim, payload: WhatsAppMessagePayload, settings: Settings) -> dict[str, Any]:
    """Run one attempt of a `whatsapp_message` job in short transactions of its own (never across the call)."""
    with transaction(settings) as conn:
        already = _earlier_attempts(conn, claim)
        if already is not None:
            return already
        number = _number_of(conn, claim.tenant)
        if is_opted_out(conn, payload.to, tenants=binding(claim.tenant, through_farm_number=number is None)):
            raise PermanentError(f"{mask_phone(payload.to)} opted out of WhatsApp messages", code="opted_out")
        if payload.text is not None:
            _check_service_window(conn, payload, number, settings)
    sender = sender_for(settings, number)
    if payload.respect_quiet_hours:
        _check_quiet_hours(payload, settings)
    kind = "template" if payload.template is not None else "text"
    if sender.client is None:
        return _dry_run(claim, payload, settings, kind)
    if sender.limiter is not None:
        sender.limiter.acquire()

    with transaction(settings) as conn:
        still_ours(conn, claim)
        outbound_id = uuid.uuid4()
        body = request_body(payload, outbound_id)
        outbound.insert(
            conn,
            outbound_id=outbound_id,
            job_id=claim.job_id,
            attempt=claim.attempt,
            to=payload.to,
            kind=kind,
            body=body,
            status=outbound.PENDING,
            tenant=claim.tenant,
        )
    # Committed: from here on a crash leaves the row pending, and no later attempt sends again.
    try:
        sent = sender.client.send(body)
    except UnknownOutcomeError as exc:
        _record_unsent(settings, outbound_id, outbound.UNKNOWN, exc)
        raise
    except JobFailure as exc:  # a definite answer: it was not sent
        _record_unsent(settings, outbound_id, "failed", exc)
        raise
    except (Exception, TimeLimitExceeded) as exc:  # anything else mid-call: it may have gone out
        _record_unsent(settings, outbound_id, outbound.UNKNOWN, exc)
        raise UnknownOutcomeError(
            f"the send was interrupted ({exc!r}); the message may have been sent"
        ) from exc
    with transaction(settings) as conn:
        outbound.mark_sent(conn, outbound_id, sent.message_id)
    log.info(
        "whatsapp_sent",
        outbound_id=str(outbound_id),
        provider_message_id=sent.message_id,
        tenant=claim.tenant,
        number="farm" if number is None else "tenant",
    )
    return {"outbound_id": str(outbound_id), "status": "sent", "provider_message_id": sent.message_id}


def _earlier_attempts(conn: Connection, claim: Claim) -> dict[str, Any] | None:
    """The result if an earlier attempt sent the message; UnknownOutcomeError if one may have."""
    earlier = outbound.earlier_attempts(conn, claim.job_id, claim.attempt)
    for row in earlier:
        if row.status in outbound.WENT_OUT:
            log.warning("whatsapp_already_sent", outbound_id=str(row.id), attempt=row.attempt)
            return {
                "outbound_id": str(row.id),
                "status": "sent",
                "provider_message_id": row.provider_message_id,
            }
    for row in earlier:
        if row.status in (outbound.PENDING, outbound.UNKNOWN):
            raise UnknownOutcomeError(
                f"attempt {row.attempt} may have sent this message (outbound message {row.id} is {row.status}); "
                "it is not sent again. Check with the recipient, resolve it with "
                f"POST /v1/outbound-messages/{row.id}/resolve, then redrive the job if it must go."
            )
    return None


def _check_service_window(
    conn: Connection, payload: WhatsAppMessagePayload, number: WhatsAppNumber | None, settings: Settings
) -> None:
    """PermanentError ``outside_service_window`` for free-form text WhatsApp would not deliver: the
    window is the business number's (a tenant's own, or the farm's, whose conversations are
    ``default``'s) with the recipient (core/messaging/conversations.py)."""
    if number is None:
        tenant, phone_number_id = DEFAULT_TENANT, settings.whatsapp_phone_number_id or ""
    else:
        tenant, phone_number_id = number.owner, number.phone_number_id or ""
    why = window_closed(conn, tenant, phone_number_id, payload.to, required=payload.in_reply_to is not None)
    if why is not None:
        raise PermanentError(f"{mask_phone(payload.to)}: {why}", code="outside_service_window")


def _check_quiet_hours(payload: WhatsAppMessagePayload, settings: Settings) -> None:
    tz = zone(payload.timezone or settings.default_timezone)
    window = parse_quiet_hours(settings.quiet_hours)
    now = utcnow()
    until = next_allowed(now, tz, window)
    if until is not None:
        raise Postponed(
            until,
            f"quiet hours ({window}) at {now.astimezone(tz):%H:%M} {tz.key}; "
            f"postponed to {until.astimezone(tz):%Y-%m-%d %H:%M} {tz.key}",
        )


def _dry_run(claim: Claim, payload: WhatsAppMessagePayload, settings: Settings, kind: str) -> dict[str, Any]:
    outbound_id = uuid.uuid4()
    body = request_body(payload, outbound_id)
    with transaction(settings) as conn:
        still_ours(conn, claim)
        outbound.insert(
            conn,
            outbound_id=outbound_id,
            job_id=claim.job_id,
            attempt=claim.attempt,
            to=payload.to,
            kind=kind,
            body=body,
            status="dry_run",
            tenant=claim.tenant,
        )
    log.warning(
        "whatsapp_dry_run",
        detail="DRY RUN: WHATSAPP_TOKEN is not set, so nothing was sent to WhatsApp",
        outbound_id=str(outbound_id),
        to=mask_phone(payload.to),
    )
    return {"outbound_id": str(outbound_id), "status": "dry_run", "provider_message_id": None}


def still_ours(conn: Connection, claim: Claim) -> None:
    """Lock the job row and check this worker still holds the claim, so a run that recovery already
    gave to another worker cannot start a send, and that nobody asked to cancel the job: a cancel
    committed before this lock stops the job with nothing sent (JobCancelled); one that comes after
    waits for the outbound row, and the send it then finds handed over is not aborted."""
    held = conn.execute(
        sa.select(jobs.c.id, jobs.c.cancel_requested_at)
        .where(
            jobs.c.id == claim.job_id, jobs.c.status == JobStatus.RUNNING, jobs.c.attempts == claim.attempt
        )
        .with_for_update()
    ).first()
    if held is None:
        raise ClaimLost(str(claim.job_id))
    if held.cancel_requested_at is not None:
        raise JobCancelled("the job was cancelled before its message was handed to WhatsApp")


def _record_unsent(settings: Settings, outbound_id: uuid.UUID, status: str, exc: BaseException) -> None:
    error = {k: v for k, v in error_record(exc).items() if k != "traceback"}
    # If this write fails too, the row stays pending: the next attempt still refuses to send.
    with transaction(settings) as conn:
        outbound.mark_unsent(conn, outbound_id, status, error)
