"""/webhooks/whatsapp: Meta's verification handshake (GET) and signed notifications (POST).

Public routes (Meta holds no API key). The GET is checked against WHATSAPP_VERIFY_TOKEN or a
tenant's own verify token. Every POST is checked against its HMAC signature with the app secret of
the number it was sent to (a tenant's own number: the tenant's app secret; the farm's: the farm's
WHATSAPP_APP_SECRET) before anything in it is acted on (core/messaging/webhook.py).
"""

from __future__ import annotations

import dataclasses
import hmac
from typing import Any

import anyio
import msgspec
import structlog
from litestar import Controller, Request, Response, get, post
from litestar.datastructures import State
from litestar.enums import MediaType
from litestar.openapi.datastructures import ResponseSpec

from control_api.auth import PUBLIC
from control_api.schemas import ErrorOut
from core.assistant.inbound import Received, receive
from core.engine.jobs import publish_after_commit
from core.errors import BadSignature, Forbidden, MalformedJson, SealedValueError, WebhookNotConfigured
from core.messaging.numbers import farm_number, verify_tokens
from core.messaging.webhook import (
    SIGNATURE_HEADER,
    Routed,
    WebhookSummary,
    inbound,
    process,
    route,
    signers,
    verify_signature,
)
from core.platform.db import transaction
from core.platform.settings import Settings

log = structlog.get_logger(__name__)


def _not_configured(setting: str) -> WebhookNotConfigured:
    return WebhookNotConfigured(f"{setting} is not set, so the WhatsApp webhook is off")


class WhatsAppWebhookController(Controller):
    path = "/webhooks/whatsapp"
    tags = ["webhooks"]

    @get(
        "/",
        sync_to_thread=True,
        summary="Meta's webhook verification handshake",
        media_type=MediaType.TEXT,
        responses={403: ResponseSpec(ErrorOut, description="Wrong hub.mode or hub.verify_token")},
        **PUBLIC,
    )
    def verify(self, request: Request[Any, Any, Any], state: State) -> str:
        settings: Settings = state.settings
        params = request.query_params
        given = (params.get("hub.verify_token") or "").encode()
        farms = settings.whatsapp_verify_token
        matched = bool(farms) and hmac.compare_digest(given, (farms or "").encode())
        if not matched:
            # A handshake names no number: every tenant's own verify token is accepted too, each
            # compared in constant time (the farm's alone needs no database).
            with transaction(settings) as conn:
                tenants = verify_tokens(conn)
            if not farms and not tenants:
                raise _not_configured("WHATSAPP_VERIFY_TOKEN")
            for token in tenants:
                matched |= hmac.compare_digest(given, token.encode())
        if params.get("hub.mode") != "subscribe" or not matched:
            raise Forbidden("wrong hub.mode or hub.verify_token")
        return str(params.get("hub.challenge") or "")

    @post(
        "/",
        status_code=200,
        summary="WhatsApp notifications: delivery statuses and customers' messages",
        responses={401: ResponseSpec(ErrorOut, description="Missing or invalid X-Hub-Signature-256")},
        **PUBLIC,
    )
    async def receive(self, request: Request[Any, Any, Any], state: State) -> Response[dict[str, int]]:
        settings: Settings = state.settings
        farm = farm_number(settings)
        body = await request.body()  # the raw bytes: the signature covers them exactly
        data: Any = None
        bad_json: msgspec.DecodeError | None = None
        try:
            data = msgspec.json.decode(body)
        except msgspec.DecodeError as exc:
            bad_json = exc
        # Which numbers the body names decides whose app secret must have signed it; nothing in it
        # is acted on before every one of them checks out.
        routed: Routed = await anyio.to_thread.run_sync(_route, settings, data) if bad_json is None else []
        for number in signers(routed, farm):
            if not number.app_secret:
                raise _not_configured("WHATSAPP_APP_SECRET")
            if not verify_signature(number.app_secret, body, request.headers.get(SIGNATURE_HEADER)):
                log.warning("whatsapp_webhook_bad_signature", bytes=len(body), tenant=number.tenant)
                raise BadSignature(f"missing or invalid {SIGNATURE_HEADER}")
        if bad_json is not None:
            raise MalformedJson(f"the body is not valid JSON: {bad_json}")
        summary, received = await anyio.to_thread.run_sync(_apply, settings, routed)
        if received.publications:
            await anyio.to_thread.run_sync(publish_after_commit, state.broker, received.publications)
        counts = {
            **dataclasses.asdict(summary),
            "messages": received.messages,
            "auto_replies": received.replies,
            "handoffs": received.handoffs,
        }
        log.info("whatsapp_webhook", **counts)
        return Response(counts)


def _route(settings: Settings, data: Any) -> Routed:
    try:
        with transaction(settings) as conn:
            return route(conn, farm_number(settings), data)
    except SealedValueError as exc:
        log.error("whatsapp_number_unopenable", error=str(exc))
        raise WebhookNotConfigured(
            "a tenant's WhatsApp secrets are sealed under a data key this process does not hold"
        ) from None


def _apply(settings: Settings, routed: Routed) -> tuple[WebhookSummary, Received]:
    """Statuses and STOPs, then the customers' messages stored and answered (core/assistant/inbound.py),
    in one transaction: a webhook Meta delivers again finds every message stored, and does nothing twice."""
    with transaction(settings) as conn:
        return process(conn, routed), receive(conn, inbound(routed))
