"""The `ai_reply` actor: parse, reply through the provider chain in the job's transaction, return."""

from __future__ import annotations

from typing import Any

from core.chats.ai_reply import AiReplyPayload, reply
from core.providers.llm import chain_for
from workers.handlers import JobContext, handler


@handler("ai_reply")
def ai_reply(ctx: JobContext, payload: AiReplyPayload) -> dict[str, Any]:
    return reply(ctx.conn, payload, chain_for(ctx.settings), ctx.claim.job_id)
