"""The `whatsapp_message` actor: runs outside the job's transaction, because it calls WhatsApp."""

from __future__ import annotations

import functools
from typing import Any

from core.engine.broker import redis_client
from core.messaging.send import Sender, WhatsAppMessagePayload, send_message
from core.platform.ratelimit import RateLimiter
from core.platform.settings import Settings
from core.providers.whatsapp import WhatsAppClient
from workers.handlers import JobContext, handler


@functools.cache
def _sender(settings: Settings) -> Sender:
    """One client and one rate limiter per worker process, built on the first send (never at import)."""
    client = WhatsAppClient.from_settings(settings)
    if client is None or settings.whatsapp_rate_per_s <= 0:
        return Sender(client, None)
    key = f"{settings.redis_namespace}:whatsapp:rate:{client.phone_number_id}"
    limiter = RateLimiter(redis_client(settings, socket_timeout=5), key, settings.whatsapp_rate_per_s)
    return Sender(client, limiter)


@handler("whatsapp_message", transactional=False)
def whatsapp_message(ctx: JobContext, payload: WhatsAppMessagePayload) -> dict[str, Any]:
    return send_message(ctx.claim, payload, ctx.settings, _sender(ctx.settings))
