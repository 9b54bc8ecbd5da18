"""/webhooks/whatsapp: Meta's verification handshake (GET) and signed notifications (POST).

Public routes (Meta holds no API key): the GET is checked against WHATSAPP_VERIFY_TOKEN, every POST
against its HMAC signature with WHATSAPP_APP_SECRET, before anything in it is read.
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
from core.errors import BadSignature, Forbidden, MalformedJson, WebhookNotConfigured
from core.messaging.webhook import SIGNATURE_HEADER, WebhookSummary, process, verify_signature
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
        sync_to_thread=False,
        summary="Meta's webhook verification handshake",
        media_type=MediaType.TEXT,
        responses={403: ResponseSpec(ErrorOut, description="Wrong hub.mode or hub.verify_token")},
        **PUBLIC,
    )
    def verify(self, request: Request[Any, Any, Any], state: State) -> str:
        expected = state.settings.whatsapp_verify_token
        if not expected:
            raise _not_configured("WHATSAPP_VERIFY_TOKEN")
        params = request.query_params
        given = params.get("hub.verify_token") or ""
        if params.get("hub.mode") != "subscribe" or not hmac.compare_digest(
            given.encode(), expected.encode()
        ):
            raise Forbidden("wrong hub.mode or hub.verify_token")
        return str(params.get("hub.challenge") or "")

    @post(
        "/",
        status_code=200,
        summary="WhatsApp notifications: delivery statuses and incoming messages",
        responses={401: ResponseSpec(ErrorOut, description="Missing or invalid X-Hub-Signature-256")},
        **PUBLIC,
    )
    async def receive(self, request: Request[Any, Any, Any], state: State) -> Response[dict[str, int]]:
        settings: Settings = state.settings
        secret = settings.whatsapp_app_secret
        if not secret:
            raise _not_configured("WHATSAPP_APP_SECRET")
        body = await request.body()  # the raw bytes: the signature covers them exactly
        if not verify_signature(secret, body, request.headers.get(SIGNATURE_HEADER)):
            log.warning("whatsapp_webhook_bad_signature", bytes=len(body))
            raise BadSignature(f"missing or invalid {SIGNATURE_HEADER}")
        try:
            data = msgspec.json.decode(body)
        except msgspec.DecodeError as exc:
            raise MalformedJson(f"the body is not valid JSON: {exc}") from None
        summary = await anyio.to_thread.run_sync(_apply, settings, data)
        counts = dataclasses.asdict(summary)
        log.info("whatsapp_webhook", **counts)
        return Response(counts)


def _apply(settings: Settings, data: Any) -> WebhookSummary:
    with transaction(settings) as conn:
        return process(conn, data)
