"""The `unread_count` actor: parse, apply in the job's transaction, return the count."""

from __future__ import annotations

from typing import Any

from core.chats.unread import UnreadCountPayload, apply_unread, apply_unread_many
from workers.batching import BatchContext, batch_handler
from workers.handlers import JobContext, handler


@handler("unread_count")
def unread_count(ctx: JobContext, payload: UnreadCountPayload) -> dict[str, Any]:
    return apply_unread(ctx.conn, payload)


@batch_handler("unread_count")
def unread_count_batch(ctx: BatchContext, payloads: list[UnreadCountPayload]) -> list[dict[str, Any]]:
    return apply_unread_many(ctx.conn, payloads)
